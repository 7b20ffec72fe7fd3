"""Checkpoint files a run can trust.

best.ckpt for prediction: the model's weights (the EMA ones where an EMA is kept) and the run's
config, without the optimizer, scheduler and callback state that only resuming needs (last.ckpt
keeps those). For Adam that state is twice the model's size. One best.ckpt per run, always the
run's own: never best-v1.ckpt beside a stale one.

Every checkpoint is written whole or not at all: to a temporary file in its own folder, fsync'ed,
then renamed over the old one. Lightning's own save goes through a temporary file in /tmp (fsspec's
transaction) whose final move is a copy when the run folder is on another filesystem: a kill -9 or a
full disk then left a truncated last.ckpt under its final name, the previous good one lost."""

from __future__ import annotations

import errno
from pathlib import Path
from weakref import proxy

import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from visionlab.errors import InputError
from visionlab.runs.atomic import replace_atomically

RESUME_ONLY = ("optimizer_states", "lr_schedulers", "callbacks")


class CheckpointWriteError(InputError):
    """A checkpoint could not be written (full disk, read-only folder); the previous one is kept."""


class WeightsCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint whose files carry no optimizer/scheduler/callback state. Unlike
    save_weights_only=True, the callbacks' on_save_checkpoint still runs first, so an EMA callback
    still puts its averaged weights into the state dict. It never adds a version suffix: a file of
    the same name in the folder is an older state of this run (a resume, a restart), replaced."""

    def __init__(self, *args, **kwargs):
        kwargs["enable_version_counter"] = False  # also for run folders whose stored config predates it
        super().__init__(*args, **kwargs)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        for key in RESUME_ONLY:
            checkpoint.pop(key, None)
        trainer.strategy.save_checkpoint(checkpoint, filepath)
        trainer.strategy.barrier("WeightsCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer for local folders, made atomic: temp file beside the target,
    fsync, rename, fsync of the folder. A failed write removes its temp file and names the folder;
    the previous checkpoint of that name stays as it was."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)

        try:
            replace_atomically(path, save)
        except OSError as e:
            why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            kept = f"the previous {path.name} is kept" if path.is_file() else f"no {path.name} was written"
            raise CheckpointWriteError(
                f"cannot write a checkpoint into {path.parent}: {why}; {kept}. Free space there (or give the run "
                "another folder) and continue with resume=."
            ) from None
