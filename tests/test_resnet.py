"""model=resnet: the fast residual CNN gives (B, num_classes) scores at any depth and size, its
residual branch adds, its cost is what the module docstring claims, and bad settings are refused
with the key's name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionlab.errors import ConfigError
from visionlab.models.cnn import build_cnn
from visionlab.models.resnet import Residual, build_resnet


def conv_macs(net: nn.Module, size: int) -> int:
    """Multiply-adds of every conv for one image (hooks read each conv's output size)."""
    total = 0

    def hook(m, _inp, out):
        nonlocal total
        total += out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("block_convs,residual,stem", [(0, True, 0), (1, True, 0), (2, True, 16), (2, False, 0)])
def test_scores_and_gradients_at_every_shape(size, block_convs, residual, stem):
    torch.manual_seed(0)
    net = build_resnet(7, image_size=size, channels=[8, 16, 32], block_convs=block_convs, residual=residual, stem=stem)
    x = torch.randn(4, 3, size, size)
    out = net(x)
    assert out.shape == (4, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert convs == 3 * (1 + block_convs) + (1 if stem else 0)
    assert sum(isinstance(m, Residual) for m in net.modules()) == (3 if residual and block_convs else 0)


def test_the_residual_branch_adds_its_input():
    """With the branch's last BN scaled to zero the block is the identity: x + 0."""
    block = build_resnet(3, channels=[8], block_convs=2).features[-1]
    assert isinstance(block, Residual)
    nn.init.zeros_(block[-2].weight)  # the last BatchNorm's scale
    block.eval()
    x = torch.randn(2, 8, 14, 14)
    torch.testing.assert_close(block(x), x)


def test_costs_60_percent_of_the_leaderboards_vgg_at_28px():
    vgg = build_cnn(10, image_size=28, channels=[64, 128, 256], block_convs=2)
    res = build_resnet(10, image_size=28, channels=[64, 128, 256], block_convs=2)
    assert (conv_macs(res, 28), conv_macs(vgg, 28)) == (69_774_336, 116_960_256)  # 0.60x
    assert sum(p.numel() for p in res.parameters()) == 1_923_914


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"activation": "swish"}, "model.activation"),
        ({"channels": []}, "model.channels"),
        ({"block_convs": -1}, "model.block_convs"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"channels": [8, 8, 8, 8, 8, 8], "image_size": 28}, "model.channels"),
        ({"init": "glorot"}, "model.init"),
    ],
)
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_resnet(10, **kwargs)
