"""Progress that suits terminals and log files alike: a live bar with the running loss and the last
val error on a terminal, and everywhere one lasting line per finished epoch (also written to the
run's train.log) and a closing test line when the test labels are known. Epochs count from 1 on the
bar and in the lines, as best_epoch does in result.json."""

from __future__ import annotations

import logging
import sys
import time

from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import convert_inf

EPOCH_KEYS = ("train/loss", "train/err", "val/loss", "val/err")


def epoch_line(record: dict, max_epochs: int | None, seconds: float) -> str:
    """`epoch 3/10  train/loss 0.41  …  (2.1s)` from one entry of the classifier's history."""
    parts = [f"{k} {record[k]:.4f}" for k in EPOCH_KEYS if k in record]
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    return f"epoch {record['epoch'] + 1}{total}  " + "  ".join(parts) + f"  ({seconds:.1f}s)"


def final_test_line(metrics: dict) -> str | None:
    if "test/err" not in metrics:
        return None
    loss = f"  test/loss {float(metrics['test/loss']):.4f}" if "test/loss" in metrics else ""
    return f"test{loss}  test/err {float(metrics['test/err']):.4f}"


def _to_log_files(line: str) -> None:
    """The line into the run's train.log (Hydra's file handler) without printing it a second time."""
    record = logging.LogRecord("visionlab.progress", logging.INFO, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class _EpochLines:
    """The lines both displays share. The classifier adds an epoch's record in its own
    on_train_epoch_end, which Lightning calls after the callbacks' one: so an epoch's line is written
    when the next epoch starts, or when training ends."""

    def _reset_clock(self) -> None:
        self._start, self._seconds, self._pending = time.time(), 0.0, False

    def _epoch_done(self) -> None:
        self._seconds, self._pending = time.time() - self._start, True

    def _flush_epoch(self, trainer, pl_module) -> None:
        history = getattr(pl_module, "history", None)
        if getattr(self, "_pending", False) and history:
            self._pending = False
            self._emit(epoch_line(history[-1], trainer.max_epochs, self._seconds))

    def _emit_test(self, trainer) -> None:
        line = final_test_line(trainer.callback_metrics)
        if line and not trainer.sanity_checking:
            self._emit(line)

    def _emit(self, line: str) -> None:
        if self.is_enabled:
            self._write(job_prefix() + line)
            _to_log_files(line)


def job_prefix() -> str:
    """`[model.bn=true] ` for a job of a parallel sweep (hydra/launcher=joblib), whose lines interleave
    with its neighbours' on the terminal; "" elsewhere (each job's train.log is its own anyway)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    hydra = HydraConfig.get()
    if "joblib" not in str(hydra.launcher.get("_target_", "")) or hydra.mode is None or hydra.mode.name != "MULTIRUN":
        return ""
    return f"[{hydra.sweep.subdir}] "


class EpochLinePrinter(_EpochLines, ProgressBar):
    """One line per epoch and no live bar (logs, CI, notebooks, where a bar prints garbage)."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._reset_clock()

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _write(self, line: str) -> None:
        print(line, flush=True)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._flush_epoch(trainer, pl_module)
        self._start = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_done()

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush_epoch(trainer, pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._emit_test(trainer)


class EpochBar(_EpochLines, TQDMProgressBar):
    """Lightning's tqdm bar, counting epochs from 1, with the epoch lines written above it."""

    def __init__(self, refresh_rate: int = 10):
        super().__init__(refresh_rate=refresh_rate)
        self._reset_clock()

    def _write(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._flush_epoch(trainer, pl_module)
        # Lightning's own hook, but the epoch counted from 1 (it would draw "Epoch 0" first)
        bar = self.train_progress_bar
        bar.reset(total=convert_inf(self.total_train_batches))
        bar.initial = 0
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        bar.set_description(f"Epoch {trainer.current_epoch + 1}{total}")
        self._start = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._epoch_done()

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush_epoch(trainer, pl_module)
        super().on_train_end(trainer, pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        super().on_test_end(trainer, pl_module)
        self._emit_test(trainer)

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        for key in ("v_num", "step"):  # 'step' is the epoch number we log for TensorBoard's x-axis
            metrics.pop(key, None)
        return metrics


def progress_bar(refresh_rate: int = 10) -> ProgressBar:
    """A live bar on a terminal, one line per epoch otherwise."""
    return EpochBar(refresh_rate=refresh_rate) if sys.stdout.isatty() else EpochLinePrinter()
