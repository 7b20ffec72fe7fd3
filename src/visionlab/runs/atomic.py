"""Files written whole or not at all: a temporary file in the target's own folder (a rename is atomic
only within one filesystem), fsync'ed, then renamed over the target. A temporary file left by a
writer that was killed carries its pid and is removed by the next writer of the same target."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from visionlab.errors import InputError


def temporary_for(path: Path) -> Path:
    """`.<name>.visionlab-<pid>.tmp`: a name only this project writes, so that the clean-up of a killed
    writer's file can never take a user's own `.<x>.<digits>.tmp`."""
    return path.with_name(f".{path.name}.visionlab-{os.getpid()}.tmp")


def refuse_kept(path: Path, overwrite: bool) -> None:
    """An output file that exists is the user's: kept unless overwrite=true."""
    if Path(path).exists() and not overwrite:
        raise InputError(f"{path} exists and is kept. Choose another output=FILE, or pass overwrite=true.")


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that exists: where a folder still to be made would go."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which is then fsync'ed and renamed over `path`
    (and the folder fsync'ed). On any failure the temporary file goes and `path` stays as it was; the
    error is the caller's to word (a checkpoint, a record, a submission)."""
    path = Path(path)
    remove_dead_temporaries(path)
    tmp = temporary_for(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """A small record (result.json, summary.csv): whole or not at all, as the checkpoints."""
    replace_atomically(path, lambda tmp: tmp.write_bytes(data))


def fsync_folder(folder: Path) -> None:
    """The rename itself survives a power cut once its folder is synced (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_dead_temporaries(path: Path) -> None:
    """Temp files of `path` left by a writer that was killed (`.<name>.visionlab-<pid>.tmp`, pid dead)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.visionlab-(\d+)\.tmp")
    for tmp in path.parent.glob(f".{path.name}.visionlab-*.tmp"):
        match = pattern.fullmatch(tmp.name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
