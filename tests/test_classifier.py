"""ImageClassifier: each output's loss trains, probabilities are probabilities, divergence is caught,
and a Lightning fit logs per-epoch train/val loss and error against the epoch number."""

from __future__ import annotations

import csv
import functools
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visionlab.models import ImageClassifier, build_cnn
from visionlab.models.classifier import OUTPUTS

NUM_CLASSES = 3
# Lightning warns that modules log without a logger in the logger-less trainers below.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You called `self.log:UserWarning"),
    pytest.mark.filterwarnings("ignore:`training_step` returned `None`:UserWarning"),
]


def fixed_batch(n: int = 12, size: int = 12, seed: int = 0):
    """uint8 images whose class is their dominant colour channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = torch.randint(0, 60, (n, 3, size, size), generator=g, dtype=torch.int64)
    x[torch.arange(n), y] += 150
    return x.to(torch.uint8), y


def make_classifier(
    output: str = "softmax", lr: float = 1e-2, net: nn.Module | None = None, **kwargs
) -> ImageClassifier:
    torch.manual_seed(0)
    net = net or build_cnn(NUM_CLASSES, channels=[8, 16], image_size=12, dropout=0.0)
    return ImageClassifier(
        net,
        NUM_CLASSES,
        optimizer=functools.partial(torch.optim.Adam, lr=lr),
        output=output,
        mean=(0.3, 0.3, 0.3),
        std=(0.25, 0.25, 0.25),
        **kwargs,
    )


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_loss_is_finite_and_decreases(output):
    model = make_classifier(output)
    x, y = fixed_batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model.loss(model(x), y)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 2 / 3


def test_mse_losses_use_one_hot_targets():
    model = make_classifier("linear_mse")
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert model.loss(logits, torch.tensor([0, 2])).item() == pytest.approx(0.0)
    assert model.loss(logits, torch.tensor([1, 2])).item() == pytest.approx(2 / 6)
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])  # mixup-style probability targets
    assert model.loss(logits, soft).item() == pytest.approx(0.5 / 6)


def test_label_smoothing_changes_the_loss():
    x, y = fixed_batch()
    plain, smooth = make_classifier("softmax"), make_classifier("softmax", label_smoothing=0.2)
    with torch.no_grad():
        assert not math.isclose(plain.loss(plain(x), y).item(), smooth.loss(smooth(x), y).item())


def test_label_smoothing_is_applied_once_to_mixup_targets():
    """timm's Mixup smooths the targets it mixes (it is given model.label_smoothing): the loss must not
    smooth them a second time, but still smooths class indices."""
    x, y = fixed_batch()
    model = make_classifier("softmax", label_smoothing=0.2)
    with torch.no_grad():
        logits = model(x)
    soft = torch.full((len(y), NUM_CLASSES), 0.2 / NUM_CLASSES)
    soft[torch.arange(len(y)), y] += 0.8  # what Mixup makes of y with lam=1 and smoothing 0.2
    cross_entropy = -(soft * logits.log_softmax(1)).sum(1).mean()
    assert model.loss(logits, soft).item() == pytest.approx(cross_entropy.item(), rel=1e-6)
    assert model.loss(logits, y).item() == pytest.approx(cross_entropy.item(), rel=1e-6)


def test_unknown_output_is_refused():
    with pytest.raises(ValueError, match="model.output"):
        make_classifier("tanh")


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_probabilities_sum_to_one_and_keep_the_argmax(output):
    model = make_classifier(output)
    logits = torch.randn(64, NUM_CLASSES) * 3
    logits[logits.max(1).values <= 0] += 5.0  # all-negative rows: see the linear_mse test below
    p = model.probabilities(logits)
    assert p.shape == logits.shape
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(64))
    assert torch.equal(p.argmax(1), logits.argmax(1))


def test_linear_mse_probabilities_with_all_negative_scores():
    model = make_classifier("linear_mse")
    logits = torch.tensor([[-1.0, -0.2, -3.0]])
    p = model.probabilities(logits)
    torch.testing.assert_close(p.sum(1), torch.ones(1))
    assert p.argmax(1).item() == 1


def test_forward_normalises_uint8_input():
    model = make_classifier()
    x, _ = fixed_batch(4)
    torch.testing.assert_close(model(x), model.net((x.float() - model.mean) / model.std))
    assert model.mean.shape == (1, 3, 1, 1)
    torch.testing.assert_close(model.mean.flatten(), torch.full((3,), 0.3 * 255))


# ----------------------------------------------------------------------------- with a Trainer


def loaders(n: int = 12, batch_size: int = 4):
    x, y = fixed_batch(n)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=batch_size, shuffle=True), DataLoader(ds, batch_size=batch_size)


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    args = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    args.update(kwargs)
    return pl.Trainer(**args)


class NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, NUM_CLASSES)

    def forward(self, x):
        return self.linear(x.mean((2, 3))) * float("nan")


def test_nan_loss_marks_diverged_and_stops(tmp_path):
    model = make_classifier(net=NaNNet())
    before = model.net.linear.weight.detach().clone()
    train, val = loaders()
    t = trainer(tmp_path, max_epochs=5)
    t.fit(model, train, val)
    assert model.diverged
    assert t.current_epoch <= 1  # stopped early, not after 5 epochs
    assert torch.equal(model.net.linear.weight, before)  # no NaN update was applied


def test_healthy_training_is_not_diverged(tmp_path):
    model = make_classifier()
    train, val = loaders()
    trainer(tmp_path, max_epochs=1).fit(model, train, val)
    assert not model.diverged
    assert [h["epoch"] for h in model.history] == [0]
    assert {"train/loss", "train/err", "val/loss", "val/err"} <= set(model.history[0])


def test_fast_dev_run(tmp_path):
    model = make_classifier()
    train, val = loaders()
    trainer(tmp_path, fast_dev_run=True).fit(model, train, val)
    assert not model.diverged
    assert len(model.history) == 1 and math.isfinite(model.history[0]["train/loss"])


def test_fit_logs_epoch_metrics_at_epoch_steps(tmp_path):
    model = make_classifier()
    train, val = loaders()
    t = trainer(tmp_path, max_epochs=3, logger=CSVLogger(tmp_path, name="", version=""))
    t.fit(model, train, val)
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for key in ("train/loss", "train/err", "val/loss", "val/err"):
        logged = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        assert [s for s, _ in logged] == [0, 1, 2], key  # x-axis = epoch number, once per epoch
        assert all(math.isfinite(v) for _, v in logged)
        if key.endswith("err"):
            assert all(0.0 <= v <= 1.0 for _, v in logged)
    # The logged values are the epoch means the module keeps in its history.
    history = {h["epoch"]: h for h in model.history}
    for r in rows:
        if r.get("train/loss"):
            assert float(r["train/loss"]) == pytest.approx(history[int(r["step"])]["train/loss"], rel=1e-5)
    assert sorted(history) == [0, 1, 2]


def test_epoch_loss_is_weighted_by_batch_size(tmp_path):
    model = make_classifier(lr=0.0)
    x, y = fixed_batch(7)
    val = DataLoader(TensorDataset(x, y), batch_size=3)
    t = trainer(tmp_path, max_epochs=1)
    t.validate(model, val, verbose=False)
    # Batches of 3, 3 and 1: the logged loss must equal the loss over all 7 images at once.
    model.eval()
    with torch.no_grad():
        expected = model.loss(model(x), y).item()
        expected_err = 1 - (model(x).argmax(1) == y).float().mean().item()
    logged = t.callback_metrics
    assert float(logged["val/loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(logged["val/err"]) == pytest.approx(expected_err, abs=1e-6)


def test_eval_flip_averages_the_mirror_image_outside_training_only():
    """model.eval_flip: validation, test and predict score each image and its mirror image; training
    sees the plain forward (the augmentation already flips)."""
    model = make_classifier(eval_flip=True)
    x, _ = fixed_batch(4)
    z = (x.float() - model.mean) / model.std
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), (model.net(z) + model.net(z.flip(-1))) / 2)
        assert not torch.allclose(model(x), model.net(z))  # the mirror image changes the scores
    model.train()
    torch.testing.assert_close(model(x), model.net(z))
