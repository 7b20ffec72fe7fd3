"""Every augmentation option in conf/augmentation builds an albumentations pipeline that keeps uint8 HxWx3."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from omegaconf import OmegaConf

from visionlab.data.transforms import build_transforms, tta_views

CONF = Path(__file__).resolve().parents[1] / "conf" / "augmentation"
OPTIONS = sorted(p.stem for p in CONF.glob("*.yaml"))


def load(name: str):
    return OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"), resolve=True).get("transforms")


def test_options_exist():
    assert {"none", "rotate", "translate", "color", "basic", "strong"} <= set(OPTIONS)


def test_none_gives_none():
    assert build_transforms(load("none")) is None
    assert build_transforms(None) is None


@pytest.mark.parametrize("name", [o for o in OPTIONS if o != "none"])
@pytest.mark.parametrize("size", [28, 33])
def test_augmentation_keeps_shape_and_dtype(name, size):
    transform = build_transforms(load(name))
    assert isinstance(transform, A.Compose)
    assert len(transform.transforms) == len(load(name))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    changed = False
    for _ in range(10):
        out = transform(image=image)["image"]
        assert out.shape == (size, size, 3)
        assert out.dtype == np.uint8
        changed |= not np.array_equal(out, image)
    assert changed, f"{name} never changed the image in 10 draws"


def test_tta_views_keep_shape():
    image = np.random.default_rng(0).integers(0, 256, size=(28, 28, 3), dtype=np.uint8)
    views = tta_views(28)
    assert views[0] is None
    for view in views[1:]:
        out = view(image=image)["image"]
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image)
    np.testing.assert_array_equal(views[1](image=image)["image"], image[:, ::-1])
