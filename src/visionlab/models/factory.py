"""The `model` config group -> a network and the preprocessing it expects."""

from __future__ import annotations

from visionlab.errors import ConfigError

import functools
from collections.abc import Mapping

from torch import nn

from visionlab.models.backbones import build_timm, preprocessing
from visionlab.models.cnn import build_cnn

ARCHS = ("cnn", "timm")


def build_net(model_cfg: Mapping, num_classes: int, image_size: int, load_weights: bool = True) -> nn.Module:
    """load_weights=False builds the bare architecture (predict fills it from a checkpoint)."""
    cfg = dict(model_cfg)
    arch = cfg.pop("arch", "cnn")
    if arch == "cnn":
        return build_cnn(num_classes=num_classes, image_size=image_size, **cfg)
    if arch == "timm":
        if not load_weights:
            cfg.update(pretrained=False, weights=None)
        return build_timm(num_classes=num_classes, **cfg)
    raise ConfigError(f"model.arch={arch!r} is not one of {ARCHS}.")


def default_preprocessing(model_cfg: Mapping) -> dict | None:
    """What a pretrained backbone was trained with (mean, std, size, interpolation); None for the
    scratch CNN, whose mean and std come from the training data."""
    if model_cfg.get("arch", "cnn") != "timm":
        return None
    return dict(_timm_preprocessing(model_cfg["name"]))


@functools.lru_cache(maxsize=8)
def _timm_preprocessing(name: str) -> dict:
    """Building the model to read its pretrained config is not free: once per name per process."""
    import timm

    return preprocessing(timm.create_model(name, pretrained=False, num_classes=0))
