"""A run folder: who holds it (its lock), what it holds (result.json) and whether a new run may start in it.

One process per run folder: an exclusive flock on <run>/.lock, with the holder's pid written in it.
The kernel drops the lock when its holder exits, however it exits (kill -9 included), so a lock can
never be left stuck; a second process on the same folder (two resume= of one run) is refused. A new
run into a folder that holds an earlier run's record (hydra.run.dir= an old run, a sweep re-run into
its folder) is refused too: its checkpoints are that run's, and predict would take them for the new."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from visionlab.errors import InputError
from visionlab.runs.atomic import pid_alive, write_bytes_atomically

LOCK_FILE = ".lock"


class RunFolderInUse(InputError):
    """Another process trains in this run folder (or sweeps into this sweep folder)."""

    def __init__(self, message: str, holder: str = "?"):
        super().__init__(message)
        self.holder = holder


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "(still starting)"
            os.close(self.fd)
            self.fd = None
            raise RunFolderInUse(
                f"run folder {run_dir} is in use by process {holder} (another train.py in it, e.g. "
                f"a resume= of the same run). Wait for it to end, or stop it (kill {holder}), and "
                "try again.",
                holder,
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock; the file stays (removing it would race a new holder)
            self.fd = None


def folder_in_use(run_dir: Path) -> bool:
    """Whether a live process holds `run_dir` (the pid its lock file names). Reads only: trying the
    lock itself could, for an instant, refuse a run that is starting."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text().strip()
    except OSError:
        return False
    return text.isdigit() and pid_alive(int(text))


class EarlierRun(InputError):
    """The folder holds an earlier run; `finished` when that run completed (a re-run sweep skips it)."""

    def __init__(self, message: str, record: dict, finished: bool):
        super().__init__(message)
        self.record, self.finished = record, finished


def refuse_earlier_run(run_dir: Path, lock: RunLock | None = None) -> None:
    """Raise EarlierRun when `run_dir` holds a run's record or checkpoints (to be called holding its lock)."""
    run_dir = Path(run_dir)
    record = read_result(run_dir)
    if record.get("status") == "running" and lock is not None:  # its writer is gone: we hold the folder
        record["status"] = "interrupted"
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    if not record and not checkpoints:
        return
    status = record.get("status") or "unrecorded"
    finished = status in ("completed", "diverged")
    what = f"a finished run (status {status}" if finished else f"an unfinished run (status {status}"
    if record.get("best_val_err") is not None:
        what += f", best val err {float(record['best_val_err']):.4f}"
    what += f"; {', '.join(checkpoints)})" if checkpoints else ")"
    fix = (
        f"Predict it: python predict.py 'ckpt=\"{run_dir}\"'; to train again, use another folder (or remove this one)."
        if finished
        else f"Continue it: python train.py 'resume={run_dir}', or remove the folder to start over."
    )
    raise EarlierRun(f"{run_dir} already holds {what}, kept as it is. {fix}", record, finished)


RESULT_FILE = "result.json"


def write_result(run_dir: Path, result: dict) -> None:
    write_bytes_atomically(Path(run_dir) / RESULT_FILE, json.dumps(result, indent=2, default=str).encode())


def read_result(run_dir: Path) -> dict:
    """A run's result.json; {} when it has none, status 'unreadable' when it cannot be read. A record
    that says `running` while no process holds the run's folder is a run that was killed: `interrupted`."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return {}
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"run": path.parent.name, "status": "unreadable", "error": f"{RESULT_FILE}: {e}"}
    if isinstance(result, dict) and result.get("status") == "running" and not folder_in_use(path.parent):
        result["status"] = "interrupted"
    return result if isinstance(result, dict) else {"run": path.parent.name, "status": "unreadable"}


def check_run_dir(path) -> Path:
    """A finished or interrupted training run's folder (it holds the run's own .hydra/config.yaml)."""
    run_dir = Path(str(path)).expanduser()
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ValueError(
            f"resume={path!r} is not a training run's folder (no .hydra/config.yaml in it). Give the "
            "folder a run printed, e.g. outputs/train/runs/<time>_<token>."
        )
    return run_dir
