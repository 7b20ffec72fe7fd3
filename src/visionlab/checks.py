"""Config values checked before any data is read, so that a bad one is refused in one line naming
its key and the fix, instead of a torch traceback after the data has loaded."""

from __future__ import annotations

from omegaconf import DictConfig

from visionlab.errors import ConfigError

NON_NEGATIVE = ("lr", "weight_decay", "momentum")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_train_config(cfg: DictConfig) -> None:
    epochs = cfg.trainer.get("max_epochs")
    # -1: Lightning's "until stopped" (early stopping); 0 would record an untrained model as completed
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or (epochs < 1 and epochs != -1)):
        raise ConfigError(f"trainer.max_epochs={epochs!r} must be a whole number of epochs, at least 1 (or -1: until "
                          "early stopping ends it).")
    for key in NON_NEGATIVE:
        value = (cfg.get("optimizer") or {}).get(key)
        if value is not None and (not _number(value) or value < 0):
            raise ConfigError(f"optimizer.{key}={value!r} must be a number of at least 0"
                              f"{', e.g. optimizer.lr=0.001' if key == 'lr' else ''}.")
