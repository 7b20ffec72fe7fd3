"""The scratch CNN: every knob combination gives (B, num_classes) scores, gradients flow, init
schemes do what they say, and bad settings are refused with the key's name."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from visionlab.models.cnn import ACTIVATIONS, HEADS, POOLS, build_cnn
from visionlab.models.init import SCHEMES, apply_init

CHANNELS = ([8], [8, 16], [8, 16, 32])


def weights(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("image_size", [28, 32])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("pool", POOLS)
def test_output_shape_grid(pool, head, image_size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, image_size, image_size)
    for bn, activation, channels in itertools.product((True, False), ACTIVATIONS, CHANNELS):
        model = build_cnn(
            num_classes=5, image_size=image_size, channels=channels, bn=bn, pool=pool, head=head, activation=activation
        )
        model.train()
        out = model(x)
        assert out.shape == (2, 5), (bn, activation, channels)
        assert torch.isfinite(out).all()
        model.eval()
        with torch.no_grad():
            assert model(x[:1]).shape == (1, 5)
        n_conv = sum(isinstance(m, nn.Conv2d) for m in model.features.modules())
        assert n_conv == len(channels)
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == bn


def test_grid_knobs_change_the_network():
    a = build_cnn(4, channels=[8, 16], pool="max", head="flatten")
    b = build_cnn(4, channels=[8, 16], pool="max", head="gap")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(a) > n(b)  # flatten's linear layer sees 7*7*16 inputs, gap's 16
    assert n(build_cnn(4, channels=[8, 16], pool="none", head="flatten", image_size=28)) > n(a)
    assert n(build_cnn(4, channels=[8, 16], pool="max", head="flatten", image_size=32)) > n(a)


def test_block_convs_stack_convs_at_the_same_resolution():
    one, two = build_cnn(4, channels=[8, 16], block_convs=1), build_cnn(4, channels=[8, 16], block_convs=2)
    convs = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert len(convs(one)) == 2 and len(convs(two)) == 4
    assert [c.in_channels for c in convs(two)] == [3, 8, 8, 16]
    assert two(torch.randn(2, 3, 28, 28)).shape == (2, 4)
    strided = build_cnn(4, channels=[8, 16], block_convs=2, pool="stride")
    assert [c.stride for c in convs(strided)] == [
        (1, 1),
        (2, 2),
        (1, 1),
        (2, 2),
    ]  # the last conv of a block downsamples
    assert strided.features(torch.randn(1, 3, 28, 28)).shape[-1] == 7


def test_in_channels():
    model = build_cnn(3, in_channels=1, channels=[8], image_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("head", HEADS)
def test_gradients_reach_the_first_conv(activation, head):
    torch.manual_seed(0)
    model = build_cnn(4, channels=[8, 16, 32], activation=activation, head=head, image_size=28, dropout=0.0)
    x, y = torch.randn(4, 3, 28, 28), torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(model(x), y).backward()
    grad = model.features[0][0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("scheme,value", [("zeros", 0.0), ("ones", 1.0)])
def test_constant_init(scheme, value):
    model = build_cnn(3, channels=[8, 16], head="flatten", bn=False, init=scheme)
    layers = weights(model)
    assert len(layers) == 3
    for m in layers:
        assert (m.weight == value).all()
        assert (m.bias == value).all()


def test_constant_init_leaves_batchnorm_alone():
    model = build_cnn(3, channels=[8, 16], bn=True, init="zeros")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all((m.weight == 1).all() and (m.bias == 0).all() for m in bns)
    assert all((m.weight == 0).all() for m in weights(model))


def test_zeros_init_gives_identical_units():
    model = build_cnn(3, channels=[8], bn=False, init="zeros", dropout=0.0)
    x = torch.randn(2, 3, 28, 28)
    out = model(x)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "normal", "uniform"])
def test_random_inits_differ_from_default(scheme):
    torch.manual_seed(0)
    default = build_cnn(3, channels=[8, 16], init="default")
    torch.manual_seed(0)
    other = build_cnn(3, channels=[8, 16], init=scheme)
    for a, b in zip(weights(default), weights(other)):
        assert a.weight.shape == b.weight.shape
        assert not torch.equal(a.weight, b.weight)
        assert b.weight.abs().sum() > 0
    std = torch.cat([m.weight.flatten() for m in weights(other)[:1]]).std()
    if scheme == "normal":
        assert 0.005 < std < 0.02  # N(0, 0.01)
    if scheme == "kaiming":  # std = sqrt(2 / fan_in), fan_in = 3*3*3
        assert abs(std - (2 / 27) ** 0.5) < 0.1


def test_default_init_is_pytorch_init():
    torch.manual_seed(0)
    a = build_cnn(3, channels=[8], bn=False)
    torch.manual_seed(0)
    b = build_cnn(3, channels=[8], bn=False, init="default")
    for m, n in zip(weights(a), weights(b)):
        assert torch.equal(m.weight, n.weight)
    assert apply_init(a, "default") is a
    assert set(SCHEMES) >= {"default", "zeros", "ones", "xavier", "kaiming"}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(activation="swish"), "model.activation"),
        (dict(pool="median"), "model.pool"),
        (dict(head="mlp"), "model.head"),
        (dict(channels=[]), "model.channels"),
        (dict(dropout=1.0), "model.dropout"),
        (dict(dropout=-0.1), "model.dropout"),
        (dict(init="he"), "model.init"),
        (dict(block_convs=0), "model.block_convs"),
    ],
)
def test_bad_knob_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_cnn(3, **kwargs)


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("bn", [True, False])
def test_too_many_downsampling_blocks(pool, bn):
    with pytest.raises(ValueError, match="downsampling blocks"):
        build_cnn(3, channels=[8] * 6, pool=pool, bn=bn, image_size=28)


def test_too_many_downsampling_blocks_is_an_error_at_build_time():
    # Whatever the message, a net that cannot fit the image must be refused when built, not when trained.
    with pytest.raises((ValueError, RuntimeError)):
        build_cnn(3, channels=[8] * 6, pool="max", bn=False, image_size=28)


def test_strided_net_down_to_one_pixel_with_bn():
    model = build_cnn(3, channels=[8] * 5, pool="stride", bn=True, image_size=28)  # 28-14-7-4-2-1
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 3)


def test_strided_net_down_to_one_pixel_without_bn():
    model = build_cnn(3, channels=[8] * 6, pool="stride", bn=False, image_size=28)
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 3)


def test_building_does_not_touch_batchnorm_statistics():
    model = build_cnn(3, channels=[8, 16], bn=True)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_batches_tracked == 0
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))
