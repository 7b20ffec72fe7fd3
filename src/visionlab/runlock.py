"""One process per run folder: an exclusive flock on <run>/.lock, with the holder's pid written in it.
The kernel drops the lock when its holder exits, however it exits (kill -9 included), so a lock can
never be left stuck; a second process on the same folder (two resume= of one run) is refused."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from visionlab.errors import InputError

LOCK_FILE = ".lock"


class RunFolderInUse(InputError):
    """Another process trains in this run folder."""


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "(still starting)"
            os.close(self.fd)
            raise RunFolderInUse(
                f"run folder {run_dir} is in use by process {holder} (another train.py in it, e.g. "
                f"a resume= of the same run). Wait for it to end, or stop it (kill {holder}), and "
                "try again."
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock; the file stays (removing it would race a new holder)
            self.fd = None
