"""Lightning callbacks of our own: a progress display that suits terminals and log files alike."""

from __future__ import annotations

import sys
import time

from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar


class EpochLinePrinter(ProgressBar):
    """One line per epoch (for logs, CI and notebooks, where a live bar prints garbage)."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    # The module finalises an epoch's metrics in its own on_train_epoch_end, which Lightning calls
    # after the callbacks' one: so the line is printed when the next epoch (or training) starts/ends.
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._print(trainer, pl_module)
        self._start = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._seconds = time.time() - self._start
        self._pending = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._print(trainer, pl_module)

    def _print(self, trainer, pl_module) -> None:
        if not (self._enabled and getattr(self, "_pending", False) and getattr(pl_module, "history", None)):
            return
        self._pending = False
        last = pl_module.history[-1]
        parts = [f"{k} {last[k]:.4f}" for k in ("train/loss", "train/err", "val/loss", "val/err") if k in last]
        print(f"epoch {last['epoch'] + 1}/{trainer.max_epochs}  " + "  ".join(parts) + f"  ({self._seconds:.1f}s)",
              flush=True)


def progress_bar(refresh_rate: int = 10) -> ProgressBar:
    """A live tqdm bar on a terminal, one line per epoch otherwise."""
    return TQDMProgressBar(refresh_rate=refresh_rate) if sys.stdout.isatty() else EpochLinePrinter()
