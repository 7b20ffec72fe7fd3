"""best.ckpt for prediction: the model's weights (the EMA ones where an EMA is kept) and the run's
config, without the optimizer, scheduler and callback state that only resuming needs (last.ckpt
keeps those). For Adam that state is twice the model's size."""

from __future__ import annotations

from weakref import proxy

from pytorch_lightning.callbacks import ModelCheckpoint

RESUME_ONLY = ("optimizer_states", "lr_schedulers", "callbacks")


class WeightsCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint whose files carry no optimizer/scheduler/callback state. Unlike
    save_weights_only=True, the callbacks' on_save_checkpoint still runs first, so an EMA callback
    still puts its averaged weights into the state dict."""

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
