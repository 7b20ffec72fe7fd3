"""Issue #12 part 5: augmentation.batched=true runs the augmentation group's transforms on whole
batches in torch (the per-image loader was slower than the CNN's training, see the pipeline benchmark)."""

from __future__ import annotations

import pytest
import torch
from helpers import REPO, train_inproc
from omegaconf import OmegaConf

from visionlab.data.batch_augment import BatchAugment
from visionlab.errors import ConfigError


def batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(8, 3, 28, 28, dtype=torch.uint8)
    x[:, :, 6:22, 9:19] = torch.randint(60, 255, (8, 3, 16, 10), generator=g, dtype=torch.uint8)  # a garment
    return x


def group(name: str) -> list[dict]:
    return OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "augmentation" / f"{name}.yaml"))["transforms"]


def test_transforms_that_do_not_fire_leave_the_batch_exactly_as_it_was():
    transforms = [dict(t, p=0.0) for t in group("basic") + group("light_erase")]
    x = batch()
    assert torch.equal(BatchAugment(transforms)(x), x)


def test_a_certain_flip_is_the_mirror_image():
    x = batch()
    assert torch.equal(BatchAugment([{"_target_": "albumentations.HorizontalFlip", "p": 1.0}])(x), x.flip(3))


def test_a_translation_moves_the_garment_and_leaves_black_behind():
    x = batch()
    shift = {
        "_target_": "albumentations.Affine",
        "translate_percent": {"x": [0.25, 0.25], "y": [0.0, 0.0]},
        "border_mode": 0,
        "fill": 0,
        "p": 1.0,
    }
    y = BatchAugment([shift])(x)
    assert torch.equal(y[..., 7:26], x[..., 0:19]) or torch.equal(y[..., 0:19], x[..., 7:26])  # 7 px = 0.25 x 28


def test_basic_changes_most_images_each_in_its_own_way_and_keeps_the_range():
    torch.manual_seed(0)
    x = batch().repeat(4, 1, 1, 1)  # 32 copies of 8 images
    y = BatchAugment(group("basic"))(x)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    changed = (y != x).flatten(1).any(1)
    assert changed.float().mean() > 0.8  # each of 3 transforms fires with p=0.7: 97 % change
    assert not torch.equal(y[:8], y[8:16])  # the same image, augmented differently


def test_erasing_blanks_one_rectangle_of_the_given_area():
    torch.manual_seed(0)
    x = torch.full((64, 3, 28, 28), 200, dtype=torch.uint8)
    erase = {"_target_": "albumentations.Erasing", "scale": [0.1, 0.2], "ratio": [1.0, 1.0], "fill": 0, "p": 1.0}
    y = BatchAugment([erase])(x)
    area = (y[:, 0] == 0).flatten(1).float().mean(1)
    assert ((area > 0.08) & (area < 0.23)).all(), area


def test_a_transform_without_a_batched_form_is_refused_naming_the_key():
    with pytest.raises(
        ConfigError, match=r"augmentation.batched=true has no batched form of 'CoarseDropout'.*batched=false"
    ):
        BatchAugment(group("strong"))


def test_a_run_with_batched_augmentation_trains_on_augmented_batches(tmp_path):
    """The loader serves plain images (no per-image transform) and the training steps get augmented ones."""
    from visionlab.commands import train

    seen = {}
    original = train.fit_and_test

    def spy(trainer, model, dm, ckpt_path, result):
        seen["transform"] = dm.train_transform
        seen["callbacks"] = [type(cb).__name__ for cb in trainer.callbacks]
        original(trainer, model, dm, ckpt_path, result)

    train.fit_and_test = spy
    try:
        result = train_inproc(
            tmp_path / "run",
            [
                "augmentation=basic",
                "augmentation.batched=true",
                "data.subset=300",
                "trainer.max_epochs=1",
                "callbacks.interpretation=null",
            ],
        )
    finally:
        train.fit_and_test = original
    assert result["status"] == "completed"
    assert seen["transform"] is None and seen["callbacks"][0] == "BatchAugmentation"
