"""Loggers that keep what a run already wrote when the run is resumed into its own folder."""

from __future__ import annotations

import csv

from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.loggers import CSVLogger as _CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv on start; this one reads its header and
    appends after its rows (a new metric later rewrites the file with the wider header, rows kept)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
                self.metrics_keys = next(csv.reader(fh), [])


SPLITS = ("train/", "val/", "test/")


class CSVLogger(_CSVLogger):
    """pytorch_lightning's CSVLogger, but one row per epoch, and `python train.py resume=<run>` appends
    to the run's metrics.csv instead of replacing it with the resumed epochs only.

    Lightning logs an epoch in three calls (the learning rate at its first step, the validation
    metrics, then the training metrics, last): they are merged into one row, written when the
    training metrics arrive. The row's step is the epoch, as in TensorBoard."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._row: dict = {}
        self._row_step: int | None = None

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self._row.update(metrics)
        if any(k.startswith(SPLITS) for k in metrics):  # the classifier logs at step = epoch (the lr monitor not)
            self._row_step = step
        if any(k.startswith(("train/", "test/")) for k in metrics):  # the epoch (or the test) is complete
            self._write_row()

    def _write_row(self) -> None:
        if self._row:
            super().log_metrics(self._row, self._row_step)
        self._row, self._row_step = {}, None

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._write_row()  # an epoch cut short keeps what it logged
        super().finalize(status)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def mlflow_store(output_dir, experiment: str = "visionlab") -> str:
    """logger=mlflow's tracking URI: one SQLite store beside the run folder (a sweep's jobs share
    <sweep>/mlflow.db), made ready under a file lock. Parallel jobs would otherwise both create its
    schema (alembic: "Online migration expected to match one row") or the experiment at once."""
    import fcntl
    from pathlib import Path

    folder = Path(str(output_dir)).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with open(folder / ".mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)  # creates and migrates the schema once
        if client.get_experiment_by_name(experiment) is None:
            client.create_experiment(experiment)
    return uri
