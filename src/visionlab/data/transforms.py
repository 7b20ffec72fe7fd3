"""Albumentations pipelines built from the `augmentation` config group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import albumentations as A
from hydra.utils import instantiate


def build_transforms(transforms: Sequence[Mapping] | None) -> A.Compose | None:
    """A list of `_target_: albumentations.X` entries -> one Compose (None when the list is empty).
    Normalisation is not here: the model normalises, so checkpoints carry it to predict."""
    if not transforms:
        return None
    return A.Compose([instantiate(t) for t in transforms])


def tta_views(image_size: int) -> list[A.Compose | None]:
    """Test-time augmentation: the image itself, its mirror, and small shifts."""
    shift = 1.0 / max(image_size, 1) * max(1, image_size // 14)
    return [
        None,
        A.Compose([A.HorizontalFlip(p=1.0)]),
        A.Compose([A.Affine(translate_percent={"x": shift, "y": 0.0}, p=1.0, border_mode=0, fill=0)]),
        A.Compose([A.Affine(translate_percent={"x": -shift, "y": 0.0}, p=1.0, border_mode=0, fill=0)]),
    ]
