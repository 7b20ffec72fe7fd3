"""The scratch CNN: every knob of the ablation study is an argument (and a `model.*` config key)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from visionlab.errors import ConfigError
from visionlab.models.init import apply_init

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
POOLS = ("max", "avg", "stride", "none")
HEADS = ("flatten", "gap", "conv")


def conv_block(
    c_in: int, c_out: int, bn: bool, activation: str, pool: str, kernel_size: int, convs: int = 1
) -> nn.Sequential:
    """`convs` x (conv -> [BN] -> activation), then [pool]. pool='stride' downsamples with the last
    conv's own stride 2."""
    layers: list[nn.Module] = []
    for i in range(convs):
        stride = 2 if pool == "stride" and i == convs - 1 else 1
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel_size, stride, kernel_size // 2, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(ACTIVATIONS[activation]())
    if pool == "max":
        layers.append(nn.MaxPool2d(2))
    elif pool == "avg":
        layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    def __init__(self, features: nn.Sequential, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_cnn(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 28,
    channels: Sequence[int] = (32, 64, 128),
    bn: bool = True,
    dropout: float = 0.3,
    activation: str = "relu",
    pool: str = "max",
    head: str = "gap",
    init: str = "default",
    kernel_size: int = 3,
    block_convs: int = 1,
) -> CNN:
    """One conv block per entry of `channels` (a longer list adds blocks), each `block_convs` convs
    deep (VGG style: more layers at the same resolution), then a head:

    - `flatten`: flatten the last feature map -> dropout -> linear (parameters grow with image size)
    - `gap`: global average pool -> dropout -> linear
    - `conv`: dropout -> 1x1 conv to class scores -> global average pool (fully convolutional)
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={activation!r} is not one of {list(ACTIVATIONS)}.")
    if pool not in POOLS:
        raise ConfigError(f"model.pool={pool!r} is not one of {POOLS}.")
    if head not in HEADS:
        raise ConfigError(f"model.head={head!r} is not one of {HEADS}.")
    if not channels:
        raise ConfigError("model.channels must list at least one conv block, e.g. [32,64,128].")
    if int(block_convs) < 1:
        raise ConfigError(f"model.block_convs={block_convs} must be at least 1 (convs per block).")
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout={dropout} must be in [0, 1).")
    widths = [in_channels, *[int(c) for c in channels]]
    blocks = [conv_block(a, b, bn, activation, pool, kernel_size, int(block_convs)) for a, b in zip(widths, widths[1:])]
    features = nn.Sequential(*blocks)
    features.eval()  # a dry run for the output size: eval mode leaves BatchNorm statistics alone
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError:
        out = torch.zeros(0, 0, 0, 0)
    features.train()
    if out.ndim != 4 or out.shape[-1] < 1 or out.shape[-2] < 1:
        raise ConfigError(
            f"{len(channels)} downsampling blocks leave nothing of a {image_size}px image; "
            "use fewer model.channels, model.pool=none, or a larger data.image_size."
        )
    c = widths[-1]
    if head == "flatten":
        classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(out[0].numel(), num_classes))
    elif head == "gap":
        classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes)
        )
    else:
        classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Conv2d(c, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
    return apply_init(CNN(features, classifier), init)
