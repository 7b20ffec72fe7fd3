"""The fast residual CNN: the ResNet-9 shape of the fastest CIFAR-10 training recipes (Page 2018,
"How to train your ResNet"; Jordan's airbench), sized for small images.

Each stage convolves, then halves the resolution at once (max pool) and normalises after the pool,
so that every further conv of the stage runs on a quarter of the pixels: at 28 px and the same
widths it costs 60% of the multiply-adds of experiment=leaderboard's VGG-style `model=cnn` (70 M vs
117 M per image; 2 convs per block at full resolution there) and trains 1.3x as many images per
second on a 2-core CPU (bf16), which is what time to accuracy pays for."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from visionlab.errors import ConfigError
from visionlab.models.cnn import ACTIVATIONS, CNN
from visionlab.models.init import apply_init


def conv_bn(c_in: int, c_out: int, activation: str) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), ACTIVATIONS[activation]()]


class Residual(nn.Sequential):
    """x + f(x): the block's convs learn a correction, so depth does not slow the first epochs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def build_resnet(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 28,
    channels: Sequence[int] = (64, 128, 256),
    stem: int = 0,
    block_convs: int = 2,
    residual: bool = True,
    activation: str = "gelu",
    dropout: float = 0.0,
    init: str = "default",
) -> CNN:
    """[stem conv] -> per entry of `channels`: conv -> max pool 2 -> BN -> activation -> `block_convs`
    more convs at the pooled resolution (a residual branch when `residual`) -> global max pool ->
    dropout -> linear.

    Args:
        num_classes: the classifier's outputs.
        in_channels, image_size: the input images (channels, side in pixels).
        channels: one stage per entry, its width; each stage halves the resolution.
        stem: width of a conv at full resolution before the first stage (0: none).
        block_convs: convs after each stage's pool (0: one conv per stage).
        residual: add the stage's pooled input to their output (ResNet-9); false: a plain chain.
        activation: one of models.cnn.ACTIVATIONS (GELU by default, as airbench).
        dropout: before the classifier.
        init: a models.init scheme (default keeps PyTorch's).
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={activation!r} is not one of {list(ACTIVATIONS)}.")
    if not channels:
        raise ConfigError("model.channels must list at least one stage, e.g. [64,128,256].")
    if int(block_convs) < 0 or int(stem) < 0:
        raise ConfigError(f"model.block_convs={block_convs} and model.stem={stem} must be 0 or more.")
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout={dropout} must be in [0, 1).")
    if image_size >> len(channels) < 1:
        raise ConfigError(
            f"{len(channels)} stages halve a {image_size}px image to nothing; use fewer model.channels "
            "or a larger data.image_size."
        )
    layers: list[nn.Module] = []
    c_prev = in_channels
    if stem:
        layers += conv_bn(c_prev, int(stem), activation)
        c_prev = int(stem)
    for c in map(int, channels):
        # conv, then pool, then BN: normalising the pooled map is 4x cheaper and what airbench does
        layers += [nn.Conv2d(c_prev, c, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c)]
        layers.append(ACTIVATIONS[activation]())
        block = [m for _ in range(int(block_convs)) for m in conv_bn(c, c, activation)]
        if block:
            layers.append(Residual(*block) if residual else nn.Sequential(*block))
        c_prev = c
    head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_prev, num_classes))
    return apply_init(CNN(nn.Sequential(*layers), head), init)  # CNN: features then head, as model=cnn
