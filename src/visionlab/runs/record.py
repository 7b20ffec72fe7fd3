"""A training run's record while it runs: `with RunRecord(folder, ...) as record:` holds the folder's
lock, keeps result.json from `running` to how the run ended (completed, diverged, failed, interrupted),
adds the wall time (a resumed run's earlier time included) and releases the folder at the end. A run
killed outright still shows up in its sweep's summary: the `running` record is written first."""

from __future__ import annotations

import logging
import shlex
import time
import traceback
from pathlib import Path

from visionlab.errors import InputError
from visionlab.runs.folder import RunLock, read_result, refuse_earlier_run, write_result
from visionlab.runs.summary import write_summary

log = logging.getLogger(__name__)

WORST_ERR = 1.0  # an error rate cannot be worse


class RunRecord:
    """The record of one training run in `out_dir`.

    Args:
        out_dir: the run folder (made if missing).
        main: whether this process keeps the record (under DDP every rank trains; rank 0 records).
        resume: the run continues an earlier one in the same folder (its record is `previous`).
        sweep_job: a job of a sweep: a failure is recorded and the sweep goes on with its other jobs.
        fields: what the record says from the start (job number, overrides).

    Raises:
        RunFolderInUse: another process holds the folder.
        EarlierRun: the folder holds another run's record or checkpoints (a new run never trains over it).
    """

    def __init__(self, out_dir: Path, main: bool, resume: bool, sweep_job: bool, fields: dict | None = None):
        self.out_dir, self.main, self.resume, self.sweep_job = Path(out_dir), main, resume, sweep_job
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # one process per run folder (DDP's other ranks work under rank 0's hold), taken before anything in
        # it is read or written; then a folder holding another run's record is never trained over
        self.lock = RunLock(self.out_dir) if main else None
        try:
            if main and not resume:
                refuse_earlier_run(self.out_dir, self.lock)
        except InputError:
            self.release()
            raise
        self.previous = read_result(self.out_dir) if resume else {}  # kept when a resume fails
        self.result = {"run": self.out_dir.name, **(fields or {}), "status": "running", "run_dir": str(self.out_dir)}
        self.start = time.time()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> RunRecord:
        self.start = time.time()
        if self.main:
            write_result(self.out_dir, self.result)  # a run killed outright still shows up in its sweep's summary
            if not self.sweep_job:
                print(f"Run folder: {self.out_dir}", flush=True)
        return self

    def __exit__(self, kind, error, tb) -> bool:
        result = self.result
        if kind is not None and issubclass(kind, (KeyboardInterrupt, SystemExit)):
            result["status"] = "interrupted"  # Lightning ends Ctrl-C with exit(1) and SIGTERM with a code-less exit
        elif kind is not None:
            result["status"], result["error"] = "failed", f"{kind.__name__}: {error}"
            if self.sweep_job:  # the sweep goes on with its other jobs
                log.error("Run failed: %s", error if isinstance(error, InputError) else traceback.format_exc())
        self._close()
        if kind is not None and issubclass(kind, SystemExit):
            raise SystemExit(error.code or 143) from None
        return kind is not None and issubclass(kind, Exception) and self.sweep_job

    def _close(self) -> None:
        result = self.result
        if result["status"] == "running":  # Ctrl-C / SIGTERM end Lightning's fit with SystemExit
            result["status"] = "interrupted"
        if result["status"] == "interrupted" and self.main:
            print(f"Interrupted. Continue with: python train.py {shlex.quote(f'resume={self.out_dir}')}", flush=True)
        result["wall_time_s"] = round(time.time() - self.start, 1) + float(self.previous.get("wall_time_s") or 0.0)
        if result["status"] == "failed" and self.previous.get("status") not in (None, "unreadable"):
            log.warning(
                "The resume failed; %s keeps its earlier record (status %s).",
                self.out_dir / "result.json",
                self.previous["status"],
            )
            self.result = self.previous
        if self.main:
            write_result(self.out_dir, self.result)
            if self.resume and (self.out_dir.parent / "multirun.yaml").is_file():
                write_summary(self.out_dir.parent)  # the resumed job's sweep summary is current again
        self.release()

    @property
    def kept_new(self) -> bool:
        """Whether the record is this run's (not the earlier one a failed resume kept)."""
        return self.result is not self.previous

    def best_val_err(self) -> float:
        """The run's best val error; the worst error rate when there is none (diverged at once, failed,
        no validation split), finite so that a sweeper ranks the run last instead of crashing on NaN
        (hydra-optuna-sweeper, issue 2237)."""
        best = self.result.get("best_val_err")
        return WORST_ERR if best is None else float(best)
