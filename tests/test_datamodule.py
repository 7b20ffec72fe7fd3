"""ChallengeDataModule: stratified split and subset, classes from the data, caching, batches."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from visionlab.data import ChallengeDataModule, DataError
from visionlab.data.split import sort_classes, stratified_split, stratified_subset


def labels_of(counts: dict[int, int], seed: int = 0) -> np.ndarray:
    labels = np.concatenate([np.full(n, c) for c, n in counts.items()])
    return np.random.default_rng(seed).permutation(labels)


# ----------------------------------------------------------------------------- split / subset


def test_stratified_split_proportions():
    labels = labels_of({0: 100, 1: 50, 2: 30, 3: 20})
    keep, held = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(keep, held)) == 0
    assert sorted(np.concatenate([keep, held])) == list(range(len(labels)))
    assert Counter(labels[held].tolist()) == {0: 20, 1: 10, 2: 6, 3: 4}


def test_stratified_split_is_deterministic_per_seed():
    labels = labels_of({0: 40, 1: 40, 2: 40})
    a = stratified_split(labels, 0.25, seed=1)
    b = stratified_split(labels, 0.25, seed=1)
    c = stratified_split(labels, 0.25, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert Counter(labels[a[1]].tolist()) == Counter(labels[c[1]].tolist())


def test_stratified_split_small_classes():
    labels = np.array([0] * 10 + [1] * 2 + [2])
    keep, held = stratified_split(labels, 0.1, seed=0)
    held_counts, keep_counts = Counter(labels[held].tolist()), Counter(labels[keep].tolist())
    assert held_counts[0] == 1 and keep_counts[0] == 9
    assert held_counts[1] == 1 and keep_counts[1] == 1  # a class of two keeps one on each side
    assert held_counts[2] == 0 and keep_counts[2] == 1  # a single image stays in training
    keep, held = stratified_split(labels, 0.0, seed=0)
    assert len(held) == 0 and len(keep) == len(labels)


def test_stratified_subset_size_and_proportions():
    labels = labels_of({0: 500, 1: 300, 2: 200})
    idx = stratified_subset(labels, 100, seed=0)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert Counter(labels[idx].tolist()) == {0: 50, 1: 30, 2: 20}
    np.testing.assert_array_equal(idx, stratified_subset(labels, 100, seed=0))
    assert not np.array_equal(idx, stratified_subset(labels, 100, seed=5))
    np.testing.assert_array_equal(stratified_subset(labels, 5000, seed=0), np.arange(len(labels)))


def test_stratified_subset_keeps_every_class():
    labels = labels_of({0: 990, 1: 5, 2: 5})
    idx = stratified_subset(labels, 50, seed=0)
    assert len(idx) == 50
    counts = Counter(labels[idx].tolist())
    assert counts[1] >= 1 and counts[2] >= 1 and counts[0] >= 45


def test_sort_classes():
    assert sort_classes(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert sort_classes(["dog", "cat", "Zebra"]) == ["Zebra", "cat", "dog"]
    assert sort_classes(["1", "b", "10"]) == ["1", "10", "b"]


# ----------------------------------------------------------------------------- the datamodule


def make_dm(ch, **kwargs) -> ChallengeDataModule:
    args = dict(
        root=str(ch.root),
        id_col=ch.id_col,
        label_col=ch.label_col,
        image_size=16,
        batch_size=8,
        val_fraction=0.25,
        seed=0,
        solution="solution.csv",
    )
    args.update(kwargs)
    return ChallengeDataModule(**args)


def test_classes_and_label_indices_come_from_the_data(make_challenge):
    ch = make_challenge(classes=("zebra", "ant", "moth"), n_per_class=4)
    dm = make_dm(ch, val_fraction=0.0)
    dm.setup("fit")
    assert dm.classes == ["ant", "moth", "zebra"]
    assert dm.val_set is None
    # Every training image carries the index of its own label name.
    names = [dm.classes[i] for i in dm.train_set.labels]
    assert Counter(names) == Counter(ch.train_labels)
    assert sorted(zip(names)) == sorted(zip(ch.train_labels))


def test_split_is_stratified_and_seeded(make_challenge):
    ch = make_challenge(n_per_class=8)
    dm = make_dm(ch)
    dm.setup("fit")
    assert len(dm.train_set) == 18 and len(dm.val_set) == 6
    assert Counter(dm.val_set.labels.tolist()) == {0: 2, 1: 2, 2: 2}
    again = make_dm(ch)
    again.setup("fit")
    for a, b in zip(dm.val_set.images, again.val_set.images):
        np.testing.assert_array_equal(a, b)


def test_subset_is_stratified(make_challenge):
    ch = make_challenge(n_per_class=10)
    dm = make_dm(ch, subset=9, val_fraction=0.2)
    dm.setup("fit")
    assert len(dm.train_set) == 9
    assert Counter(dm.train_set.labels.tolist()) == {0: 3, 1: 3, 2: 3}
    assert len(dm.val_set) == 6  # the subset does not shrink validation


def test_class_with_a_single_image_still_splits(make_challenge):
    ch = make_challenge(counts={"cat": 6, "dog": 6, "frog": 1})
    dm = make_dm(ch, val_fraction=0.34)
    dm.setup("fit")
    assert dm.classes == ["cat", "dog", "frog"]
    frog = dm.classes.index("frog")
    assert (dm.train_set.labels == frog).sum() == 1
    assert (dm.val_set.labels == frog).sum() == 0
    assert len(dm.val_set) == 4


def test_single_class_is_refused(make_challenge):
    ch = make_challenge(classes=("only",), n_per_class=4)
    with pytest.raises(DataError, match="single class"):
        make_dm(ch).setup("fit")


@pytest.mark.parametrize("cache", [True, False])
def test_cache_and_batches(make_challenge, cache):
    ch = make_challenge(n_per_class=4)
    dm = make_dm(ch, cache=cache, batch_size=4, image_size=12)
    dm.setup("fit")
    images = dm.train_set.images
    if cache:
        assert all(isinstance(a, np.ndarray) and a.shape == (12, 12, 3) and a.dtype == np.uint8 for a in images)
    else:
        assert all(isinstance(a, Path) for a in images)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        x, y = next(iter(loader))
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 12, 12) and 1 <= x.shape[0] <= 4
        assert y.dtype == torch.int64 and ((y >= 0) & (y < 3)).all()
    total = sum(len(y) for _, y in dm.train_dataloader())
    assert total == len(dm.train_set) == 9


def test_augmentation_is_applied_to_training_only(make_challenge):
    ch = make_challenge(n_per_class=4)

    def whiten(image):
        return {"image": np.full_like(image, 255)}

    dm = make_dm(ch, train_transform=whiten, val_fraction=0.25)
    dm.setup()
    x, _ = next(iter(dm.train_dataloader()))
    assert (x == 255).all()
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        x, _ = next(iter(loader))
        assert not (x == 255).all()


def test_test_set_order_and_labels(make_challenge):
    ch = make_challenge()
    dm = make_dm(ch)
    dm.setup("fit")
    dm.setup("test")
    assert dm.test_items.ids == ch.test_ids
    assert dm.has_test_labels
    assert [dm.classes[i] for i in dm.test_set.labels] == ch.test_labels
    x, y = next(iter(dm.test_dataloader()))
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 16, 16)


def test_predict_with_given_classes_and_unknown_test_labels(make_challenge):
    ch = make_challenge()
    dm = make_dm(ch, classes=["cat", "dog", "frog", "owl"])
    dm.setup("predict")
    assert dm.classes == ["cat", "dog", "frog", "owl"]
    assert dm.test_items.ids == ch.test_ids
    dm = make_dm(ch, classes=["cat", "dog"])  # the solution names a class the model does not know
    dm.setup("predict")
    assert not dm.has_test_labels


def test_unknown_training_label_with_given_classes(make_challenge):
    ch = make_challenge()
    with pytest.raises(DataError, match=r"not trained on: \['frog'\]"):
        make_dm(ch, classes=["cat", "dog"]).setup("fit")


def test_bad_image_error_and_skip(make_challenge):
    ch = make_challenge(n_per_class=4)
    victim = ch.root / "train" / sorted(p.name for p in (ch.root / "train").iterdir())[0]
    victim.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"(?s){victim.stem}.*data.on_bad_image=skip"):
        make_dm(ch, val_fraction=0.0).setup("fit")
    dm = make_dm(ch, val_fraction=0.0, on_bad_image="skip")
    dm.setup("fit")
    assert len(dm.train_set) == 11 and len(dm.skipped) == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(subset=0), "data.subset"),
        (dict(image_size=0), "image_size"),
        (dict(interpolation="cubic"), "interpolation"),
        (dict(on_bad_image="ignore"), "on_bad_image"),
    ],
)
def test_bad_settings_are_refused(tmp_path, kwargs, match):
    with pytest.raises(DataError, match=match):
        ChallengeDataModule(root=str(tmp_path), **kwargs)


def test_channel_stats(make_challenge):
    ch = make_challenge(n_per_class=4)
    dm = make_dm(ch, val_fraction=0.0)
    dm.setup("fit")
    mean, std = dm.channel_stats()
    pixels = np.stack(dm.train_set.images).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-6)


# ----------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    "target,yaml",
    [
        ("ImageDataModule", "_bases/data"),
        ("ChallengeDataModule", "data/challenge"),
        ("FolderDataModule", "data/folder"),
        ("FashionMNISTDataModule", "data/fashion_mnist"),
    ],
)
def test_python_defaults_are_those_of_the_yaml(target, yaml):
    """The YAML is the one place of the data defaults: a class's own keyword defaults may not say otherwise."""
    import inspect

    import visionlab.data
    from visionlab.config.groups import CONF_DIR, option_node

    cls = getattr(visionlab.data, target)
    config = option_node(CONF_DIR / f"{yaml}.yaml")
    own = inspect.signature(cls.__dict__["__init__"]).parameters.values()
    defaults = {p.name: p.default for p in own if p.default is not p.empty and p.name in config}
    assert defaults, f"{target} has no keyword default that {yaml}.yaml sets"
    yaml_values = {k: config[k] for k in defaults if k != "seed"}  # seed: ${seed}, the run's
    assert {k: defaults[k] for k in yaml_values} == yaml_values
