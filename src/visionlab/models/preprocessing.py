"""What a model's images go through before it sees them, resolved once per run (as timm's
resolve_data_config does for its models) and stored in the run's checkpoint, from which predict,
export and the accuracy curve read it back: the side every image is resized to, the PIL filter that
resizes it, and the per-channel mean and std the model normalises with."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

KEYS = ("image_size", "interpolation", "mean", "std")  # in the checkpoint's `visionlab` info, top level
# data.image_size=null / data.interpolation=null with a scratch network: the demo data's own size.
SCRATCH = {"image_size": 28, "interpolation": "bilinear"}


def resolve_preprocessing(
    model: Mapping, data: Mapping, channel_stats: Callable[[], tuple[list[float], list[float]]] | None = None
) -> dict:
    """The run's preprocessing, {image_size, interpolation, mean, std}.

    Args:
        model: the model group's config; a pretrained backbone (model.name) brings what it was trained
            with.
        data: the data group's config: its image_size and interpolation win where set (not null).
        channel_stats: the training images' per-channel mean and std (the datamodule's), for a
            network without a backbone's statistics; not given (the data not read yet): mean and std
            are None for such a network.
    """
    pretrained = _pretrained(model["name"]) if model.get("name") else {}
    resolved = {
        key: data.get(key) if data.get(key) is not None else pretrained.get(key, SCRATCH[key])
        for key in ("image_size", "interpolation")
    }
    if pretrained:
        mean, std = list(pretrained["mean"]), list(pretrained["std"])  # not the cached lists
    else:
        mean, std = channel_stats() if channel_stats is not None else (None, None)
    return {**resolved, "mean": mean, "std": std}


def stored_preprocessing(info: Mapping) -> dict:
    """The preprocessing a checkpoint's model was trained with, from its `visionlab` info (checkpoints
    of every version hold these four keys)."""
    return {key: info[key] for key in KEYS}


@functools.lru_cache(maxsize=8)
def _pretrained(name: str) -> dict:
    """mean, std, input size and interpolation from timm's pretrained config of `name`, read from timm's
    registry (no model built); a name the registry has no config for is built, so that an unknown name
    fails here with timm's own message, as before."""
    import timm

    registered = timm.models.get_pretrained_cfg(name)
    if registered is not None:
        cfg = registered.to_dict()
    else:
        cfg = timm.create_model(name, pretrained=False, num_classes=0).pretrained_cfg or {}
    return {
        "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
        "image_size": int(cfg.get("input_size", (3, 224, 224))[-1]),
        "interpolation": cfg.get("interpolation", "bicubic"),
    }
