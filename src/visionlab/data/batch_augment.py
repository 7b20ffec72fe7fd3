"""augmentation.batched=true: the augmentation group's albumentations transforms applied to whole
uint8 training batches with torch, instead of image by image in the loader. Per image,
albumentations costs ~0.2 ms a transform in Python: `augmentation=basic` fed ~1,300 img/s, less
than the scratch CNN trains (README, Benchmarks); a batch takes one affine resampling for every
geometric transform together plus a few tensor operations.

Same kinds and ranges, each transform applied to an image with its own probability p; not the
same pixels as albumentations (the colour changes run in a fixed order, hue is a rotation of the
YIQ chroma plane). Supported: Rotate, Affine (translate_percent, scale, rotate), HorizontalFlip,
ColorJitter, Erasing; geometric ones with border_mode 0 and fill 0 (black borders)."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from visionlab.errors import ConfigError

GEOMETRIC = ("Rotate", "Affine", "HorizontalFlip")
SUPPORTED = GEOMETRIC + ("ColorJitter", "Erasing")
# YIQ: hue is the angle in the (I, Q) plane
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def _range(value, around: float = 0.0) -> tuple[float, float]:
    """albumentations' ranges: a number v is (around - v, around + v); a pair is itself."""
    if isinstance(value, (list, tuple)):
        return float(value[0]), float(value[1])
    return around - float(value), around + float(value)


def _uniform(n: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return torch.rand(n) * (high - low) + low


class BatchAugment:
    """Callable on a uint8 batch (B, C, H, W); returns a new uint8 batch."""

    def __init__(self, transforms: list[dict]):
        self.steps = []
        for t in transforms:
            t = dict(t)
            name = str(t.pop("_target_", "")).rsplit(".", 1)[-1]
            if name not in SUPPORTED:
                raise ConfigError(
                    f"augmentation.batched=true has no batched form of {name or t!r}; it supports {list(SUPPORTED)}. "
                    "Set augmentation.batched=false for this augmentation."
                )
            if name in ("Rotate", "Affine") and (t.get("border_mode", 0) != 0 or t.get("fill", 0) != 0):
                raise ConfigError(
                    f"augmentation.batched=true pads {name} with black only (border_mode 0, fill 0); "
                    "set augmentation.batched=false for other borders."
                )
            self.steps.append((name, t))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self._geometric(x.float(), [(n, t) for n, t in self.steps if n in GEOMETRIC])
        for name, t in self.steps:
            if name == "ColorJitter":
                out = self._color(out, t)
            elif name == "Erasing":
                out = self._erase(out, t)
        return out.clamp_(0, 255).round_().to(torch.uint8)

    @staticmethod
    def _geometric(x: torch.Tensor, steps) -> torch.Tensor:
        """Every geometric step as one affine map per image, resampled once (bilinear, black outside)."""
        if not steps:
            return x
        b = x.shape[0]
        angle, scale, flip = torch.zeros(b), torch.ones(b), torch.ones(b)
        shift = torch.zeros(b, 2)
        for name, t in steps:
            on = torch.rand(b) < float(t.get("p", 0.5))
            if name == "HorizontalFlip":
                flip = torch.where(on, -flip, flip)
            elif name == "Rotate":
                angle += on * _uniform(b, _range(t.get("limit", 90)))
            else:  # Affine
                if t.get("rotate") is not None:
                    angle += on * _uniform(b, _range(t["rotate"]))
                if t.get("scale") is not None:
                    scale *= torch.where(on, _uniform(b, _range(t["scale"], 1.0)), torch.ones(b))
                moves = t.get("translate_percent") or {}
                if not isinstance(moves, dict):
                    moves = {"x": moves, "y": moves}
                for axis, key in enumerate(("x", "y")):
                    if moves.get(key) is not None:
                        shift[:, axis] += on * _uniform(b, _range(moves[key])) * 2  # grid units span 2
        rad = angle * math.pi / 180
        cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
        # output -> input coordinates: flip, then the inverse rotation and scale, then the inverse shift
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, -shift[:, 0]], 1), torch.stack([sin * flip, cos, -shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def _color(x: torch.Tensor, t: dict) -> torch.Tensor:
        b = x.shape[0]
        on = (torch.rand(b) < float(t.get("p", 0.5))).view(b, 1, 1, 1)
        y = x
        if t.get("brightness"):
            y = y * _uniform(b, _range(t["brightness"], 1.0)).clamp_min(0).view(b, 1, 1, 1)
        grey = (y * RGB_TO_YIQ[0].view(1, 3, 1, 1)).sum(1, keepdim=True) if x.shape[1] == 3 else y
        if t.get("contrast"):
            factor = _uniform(b, _range(t["contrast"], 1.0)).clamp_min(0).view(b, 1, 1, 1)
            y = (y - grey.mean((2, 3), keepdim=True)) * factor + grey.mean((2, 3), keepdim=True)
        if x.shape[1] == 3 and t.get("saturation"):
            grey = (y * RGB_TO_YIQ[0].view(1, 3, 1, 1)).sum(1, keepdim=True)
            y = (y - grey) * _uniform(b, _range(t["saturation"], 1.0)).clamp_min(0).view(b, 1, 1, 1) + grey
        if x.shape[1] == 3 and t.get("hue"):
            turn = _uniform(b, _range(t["hue"])) * 2 * math.pi
            rot = torch.zeros(b, 3, 3)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2] = torch.cos(turn), -torch.sin(turn)
            rot[:, 2, 1], rot[:, 2, 2] = torch.sin(turn), torch.cos(turn)
            mix = YIQ_TO_RGB @ rot @ RGB_TO_YIQ  # (B, 3, 3)
            y = torch.einsum("bij,bjhw->bihw", mix, y)
        return torch.where(on, y.clamp(0, 255), x)

    @staticmethod
    def _erase(x: torch.Tensor, t: dict) -> torch.Tensor:
        """One rectangle per chosen image (area and aspect ratio as torchvision's RandomErasing),
        filled with noise (fill=random) or a value."""
        b, c, h, w = x.shape
        on = torch.rand(b) < float(t.get("p", 0.5))
        area = _uniform(b, tuple(t.get("scale", (0.02, 0.33)))) * h * w
        low, high = t.get("ratio", (0.3, 3.3))
        ratio = torch.exp(_uniform(b, (math.log(low), math.log(high))))
        eh = (area * ratio).sqrt().round().clamp(1, h)
        ew = (area / ratio).sqrt().round().clamp(1, w)
        top = (torch.rand(b) * (h - eh + 1)).floor()
        left = (torch.rand(b) * (w - ew + 1)).floor()
        rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
        mask = (
            (rows >= top.view(b, 1, 1))
            & (rows < (top + eh).view(b, 1, 1))
            & (cols >= left.view(b, 1, 1))
            & (cols < (left + ew).view(b, 1, 1))
            & on.view(b, 1, 1)
        ).unsqueeze(1)
        fill = t.get("fill", 0)
        value = torch.randint(0, 256, x.shape).float() if fill == "random" else torch.full_like(x, float(fill))
        return torch.where(mask, value, x)


class BatchAugmentation(pl.Callback):
    """Augments each training batch in place before the training step sees it (and before the
    interpretation callback shows the first one: put it first)."""

    def __init__(self, transforms: list[dict]):
        self.augment = BatchAugment(transforms)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        x = batch[0]
        x.copy_(self.augment(x.cpu()).to(x.device))
