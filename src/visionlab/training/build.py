"""Build a run's parts from its composed config: the datamodule, the classifier (given the optimizer
and scheduler), the trainer with its callbacks and loggers; every group through visionlab.config.groups,
so a misspelt key fails naming it. train.py trains with them, predict.py and export.py rebuild a
checkpoint's classifier with build_classifier."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from visionlab.config import groups
from visionlab.data.datamodule import ImageDataModule
from visionlab.data.transforms import build_transforms
from visionlab.models import ImageClassifier
from visionlab.models.preprocessing import resolve_preprocessing
from visionlab.runs.checkpoints import AtomicCheckpointIO

log = logging.getLogger(__name__)

BUILT_GROUPS = ("data", "model", "optimizer", "scheduler")  # instantiated from their _target_ (visionlab.config.groups)


def as_dict(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def choice(group: str) -> str | None:
    """The option chosen for `group` (`cnn` for model=cnn), for messages; None outside train.py."""
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def check_group_keys(cfg: DictConfig) -> None:
    """Every built group's keys against its target, before any data is read: a misspelt key in a YAML
    file fails at once, naming it."""
    for group in BUILT_GROUPS:
        groups.check_keys(cfg.get(group), group, choice(group))


def build_datamodule(cfg: DictConfig, classes: list[str] | None = None, train: bool = True) -> ImageDataModule:
    data = as_dict(cfg.data)
    preprocessing = resolve_preprocessing(cfg.model, data)
    data.update(image_size=preprocessing["image_size"], interpolation=preprocessing["interpolation"])
    augmentation = as_dict(cfg.augmentation)
    # augmentation.batched: the transforms run on whole batches in the trainer (visionlab.data.batch_augment)
    transform = build_transforms(augmentation.get("transforms")) if train and not augmentation.get("batched") else None
    return groups.build(data, "data", choice("data"), train_transform=transform, classes=classes)


def build_classifier(
    cfg: DictConfig, classes: list[str], image_size: int, mean, std, load_weights: bool = True, info: dict | None = None
) -> ImageClassifier:
    """The model group's builder, given the optimizer and scheduler partials (scheduler=none: None)."""
    scheduler = cfg.get("scheduler") or {}
    return groups.build(
        cfg.model,
        "model",
        choice("model"),
        num_classes=len(classes),
        image_size=image_size,
        optimizer=groups.build(cfg.optimizer, "optimizer", choice("optimizer")),
        scheduler=groups.build(scheduler, "scheduler", choice("scheduler")) if "_target_" in scheduler else None,
        mean=mean,
        std=std,
        info=info,
        load_weights=load_weights,
    )


def build_trainer(cfg: DictConfig, has_val: bool) -> pl.Trainer:
    callbacks = []
    for node in (cfg.get("callbacks") or {}).values():
        if node is None:
            continue
        cb = instantiate(node)
        if not has_val and isinstance(cb, EarlyStopping):
            log.info("No validation split (data.val_fraction=0): early stopping is off.")
            continue
        if not has_val and isinstance(cb, ModelCheckpoint) and cb.monitor:
            cb = instantiate(node, monitor="epoch", mode="max")  # best.ckpt = the latest epoch
        callbacks.append(cb)
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values() if node is not None]
    extra = {} if has_val else {"limit_val_batches": 0}  # no validation loop over an empty split
    if cfg.model.get("sync_bn"):
        extra["sync_batchnorm"] = _sync_bn_possible(cfg)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # whole files or none (visionlab.runs.checkpoints)
    return trainer


def _sync_bn_possible(cfg: DictConfig) -> bool:
    """torch's SyncBatchNorm runs on GPUs only: on CPU processes each keeps its own statistics."""
    if str(cfg.trainer.get("accelerator")) == "cpu" or not torch.cuda.is_available():
        log.warning(
            "model.sync_bn=true needs GPUs (torch's SyncBatchNorm has no CPU kernel): each process "
            "keeps its own BatchNorm statistics."
        )
        return False
    return True


def flat_hparams(cfg: DictConfig) -> dict:
    """Config values TensorBoard's HPARAMS tab can show: group choices plus every leaf value."""
    flat = {}
    if HydraConfig.initialized():
        flat.update(
            {
                f"{k}": v
                for k, v in HydraConfig.get().runtime.choices.items()
                if not str(k).startswith("hydra") and v is not None
            }
        )
    for group in ("data", "model", "optimizer", "scheduler"):
        for key, value in _leaves(as_dict(cfg.get(group)), group):
            flat[key] = value
    flat["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    flat["seed"] = cfg.get("seed")
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in flat.items()}


def _leaves(node, prefix):
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("_target_", "_partial_"):
                yield from _leaves(v, f"{prefix}.{k}")
    else:
        yield prefix, node
