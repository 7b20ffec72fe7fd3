"""Lightning's chatter that tells a user nothing about their run (an advertisement, hardware they
did not ask for, internal steps, a deprecation inside Lightning itself), left out of the terminal
and train.log unless the config says verbose=true."""

from __future__ import annotations

import logging
import warnings

CHATTER = (
    "💡 Tip",
    "GPU available:",
    "TPU available:",
    "Loading `train_dataloader` to estimate",
    "Restoring states from the checkpoint",
    "Loaded model weights from the checkpoint",
    # Logged from inside Lightning's SIGTERM handler: when the signal lands while stdout is being
    # written, the handler's write is re-entrant and logging prints a "Logging error" traceback. Our
    # own "Interrupted. Continue with: ..." line says it instead.
    "Received SIGTERM",
    # The end of a run at its planned length: our epoch lines say `epoch 10/10` already, and this one
    # came before the last of them, glued to a live bar. Early stopping's and max_time's reasons stay.
    "`Trainer.fit` stopped: `max_epochs=",
    "`Trainer.fit` stopped: `max_steps=",
)
LIGHTNING_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "pytorch_lightning.trainer.connectors.signal_connector",
)


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(c) or c in message[:80] for c in CHATTER)


_FILTER = _DropChatter()


def quiet_lightning(verbose: bool = False) -> None:
    """Silence (or, verbose=True, let through again) the chatter; called at the start of every run
    and sweep job, since Hydra sets logging up afresh for each job."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeFilter(_FILTER)
        if not verbose:
            logger.addFilter(_FILTER)
    if not verbose:  # Lightning's own use of torch's old pytree API, not the user's code
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
