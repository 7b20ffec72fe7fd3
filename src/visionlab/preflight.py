"""Checks of a composed config that need neither the data nor the model: the entry points run them
before the seconds of importing Lightning and loading images, so a typo fails at once, in one line.
Also the clean-up of the folder Hydra made for a run that stopped at such a check."""

from __future__ import annotations

import shutil
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from visionlab.budget import check_budget
from visionlab.errors import ConfigError, InputError

NO_GPU = "no CUDA GPU visible; use trainer.accelerator=auto or cpu"
NON_NEGATIVE = ("lr", "weight_decay", "momentum")


def check_data_root(cfg: DictConfig) -> None:
    data = cfg.get("data")
    if data is None or "root" not in data.keys():  # (`in data` is False for a ??? value)
        return
    if OmegaConf.is_missing(data, "root"):
        raise ConfigError("data.root is not set: give the folder of your challenge download, data.root=DIR.")
    root = data.get("root")
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise InputError(
            f"data.root={str(root)!r} is not a folder. Give the folder of your challenge download "
            "(the other data paths are relative to it)."
        )


def check_accelerator(cfg: DictConfig) -> None:
    accelerator = str((cfg.get("trainer") or {}).get("accelerator") or "").lower()
    if accelerator in ("gpu", "cuda"):
        import torch  # only when a GPU is asked for

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator}: {NO_GPU}.")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_training_values(cfg: DictConfig) -> None:
    """Values torch would reject with a traceback naming no key, after the data has loaded."""
    epochs = cfg.trainer.get("max_epochs")
    # -1: Lightning's "until stopped" (early stopping); 0 would record an untrained model as completed
    if epochs is not None and (
        not isinstance(epochs, int) or isinstance(epochs, bool) or (epochs < 1 and epochs != -1)
    ):
        raise ConfigError(
            f"trainer.max_epochs={epochs!r} must be a whole number of epochs, at least 1 (or -1: until "
            "early stopping ends it)."
        )
    for key in NON_NEGATIVE:
        value = (cfg.get("optimizer") or {}).get(key)
        if value is not None and (not _number(value) or value < 0):
            raise ConfigError(
                f"optimizer.{key}={value!r} must be a number of at least 0"
                f"{', e.g. optimizer.lr=0.001' if key == 'lr' else ''}."
            )


def check_loader_values(batch_size, num_workers, max_pixels, error: type[InputError] = ConfigError) -> None:
    """data.batch_size / num_workers / max_pixels: whole numbers torch and PIL would take badly."""
    for key, value, least in (
        ("batch_size", batch_size, 1),
        ("num_workers", num_workers, 0),
        ("max_pixels", 1 if max_pixels is None else max_pixels, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise error(
                f"data.{key}={value!r} must be a whole number of at least {least}"
                f"{' (or null: no limit)' if key == 'max_pixels' else ''}."
            )


def check_pretrained(cfg: DictConfig) -> None:
    """model.pretrained=true with no local weights: the hub must be reachable or the weights cached."""
    model = cfg.get("model") or {}
    if model.get("arch") == "timm" and model.get("pretrained") and not model.get("weights"):
        from visionlab.models.backbones import check_download_possible  # imports timm: only when asked

        check_download_possible(str(model.get("name")))


def check_train(cfg: DictConfig) -> None:
    check_training_values(cfg)
    data = cfg.get("data") or {}
    check_loader_values(data.get("batch_size", 1), data.get("num_workers", 0), data.get("max_pixels"))
    check_budget(cfg)
    check_accelerator(cfg)
    check_data_root(cfg)
    check_pretrained(cfg)


def check_predict(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise InputError(
            "no checkpoint given. Usage: python predict.py ckpt=PATH (or ckpt=[a.ckpt,b.ckpt]); "
            "training prints the path of its best.ckpt."
        )
    paths = list(cfg.ckpt) if isinstance(cfg.ckpt, (list, ListConfig)) else [cfg.ckpt]
    for path in paths:
        if not Path(str(path)).expanduser().exists():
            raise InputError(
                f"ckpt={str(path)!r} does not exist. Give the path that training printed "
                "(…/checkpoints/best.ckpt, or its run folder)."
            )
    output = cfg.get("output")
    if output and Path(str(output)).exists() and not cfg.get("overwrite"):
        raise InputError(f"{output} exists and is kept. Choose another output=FILE, or pass overwrite=true.")
    if cfg.get("data") is not None and cfg.data.get("root") is not None:
        check_data_root(cfg)
    if str(cfg.get("device")) == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda: no CUDA GPU visible; use device=auto or cpu.")


def single_run() -> bool:
    """A plain run (not a sweep job, whose errors are recorded in its sweep's summary instead)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def discard_unused_run_dir(cfg: DictConfig) -> Path | None:
    """Remove the folder Hydra made for a single run that stopped before training (nothing in it but
    Hydra's config record, the log and a failed result.json). A resumed run's folder is never
    touched, nor one holding checkpoints or a submission. Returns the folder removed."""
    from hydra.core.hydra_config import HydraConfig

    if not single_run() or cfg.get("resume"):
        return None
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    kept = {".hydra", ".lock", "result.json", f"{HydraConfig.get().job.name}.log"}
    if not run_dir.is_dir() or any(p.name not in kept for p in run_dir.iterdir()):
        return None
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir
