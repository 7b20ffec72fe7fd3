"""Checks on the committed demo challenge in ``data/demo`` (built by scripts/make_demo.py)."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from visionlab.data import fashion_mnist

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
CLASS_NAMES = list(fashion_mnist.CLASSES)
N_TRAIN, N_TEST = 9_233, 484
# Largest-remainder counts for a balanced 10-class source (6,000 / 1,000 per class).
TRAIN_PER_CLASS = {923, 924}
TEST_PER_CLASS = {48, 49}


def read_csv(name: str) -> list[dict[str, str]]:
    with open(DEMO / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def header(name: str) -> list[str]:
    with open(DEMO / name, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


@pytest.fixture(scope="module")
def train_rows():
    return read_csv("train.csv")


@pytest.fixture(scope="module")
def solution_rows():
    return read_csv("solution.csv")


@pytest.fixture(scope="module")
def sample_rows():
    return read_csv("sample_submission.csv")


@pytest.fixture(scope="module")
def provenance_rows():
    return read_csv("provenance.csv")


def test_layout_and_headers():
    for name in ("train.csv", "sample_submission.csv", "solution.csv", "provenance.csv", "README.md"):
        assert (DEMO / name).is_file(), name
    for name in ("train.csv", "sample_submission.csv", "solution.csv"):
        assert header(name) == ["image_id", "label"], name
    assert header("provenance.csv") == ["image_id", "split", "original_index"]


def test_counts_and_ids(train_rows, solution_rows):
    assert [r["image_id"] for r in train_rows] == [f"train_{i:05d}" for i in range(N_TRAIN)]
    assert [r["image_id"] for r in solution_rows] == [f"test_{i:05d}" for i in range(N_TEST)]


@pytest.mark.parametrize("split,csv_name", [("train", "train.csv"), ("test", "solution.csv")])
def test_every_id_has_its_png_and_nothing_else(split, csv_name):
    ids = {r["image_id"] for r in read_csv(csv_name)}
    assert not any(i.endswith(".png") for i in ids), "ids must not carry an extension"
    files = set(os.listdir(DEMO / split))
    assert files == {f"{i}.png" for i in ids}


def test_class_names_and_balance(train_rows, solution_rows):
    train_counts = Counter(r["label"] for r in train_rows)
    test_counts = Counter(r["label"] for r in solution_rows)
    assert sorted(train_counts) == sorted(CLASS_NAMES)
    assert sorted(test_counts) == sorted(CLASS_NAMES)
    assert set(train_counts.values()) <= TRAIN_PER_CLASS
    assert set(test_counts.values()) <= TEST_PER_CLASS
    assert sum(train_counts.values()) == N_TRAIN
    assert sum(test_counts.values()) == N_TEST


def test_labels_not_in_blocks(train_rows):
    labels = [r["label"] for r in train_rows[:100]]
    assert len(set(labels)) == len(CLASS_NAMES)


def test_no_train_test_overlap(train_rows, solution_rows):
    train_ids = {r["image_id"] for r in train_rows}
    test_ids = {r["image_id"] for r in solution_rows}
    assert not train_ids & test_ids


def test_sample_submission_matches_solution(sample_rows, solution_rows):
    assert [r["image_id"] for r in sample_rows] == [r["image_id"] for r in solution_rows]
    assert {r["label"] for r in sample_rows} == {CLASS_NAMES[0]}


def test_provenance(train_rows, solution_rows, provenance_rows):
    ids = [r["image_id"] for r in train_rows] + [r["image_id"] for r in solution_rows]
    assert [r["image_id"] for r in provenance_rows] == ids
    for split, size in (("train", 60_000), ("test", 10_000)):
        rows = [r for r in provenance_rows if r["split"] == split]
        idx = [int(r["original_index"]) for r in rows]
        assert all(r["image_id"].startswith(f"{split}_") for r in rows)
        assert len(set(idx)) == len(idx), f"duplicate {split} original_index"
        assert all(0 <= i < size for i in idx)


def test_png_format():
    from PIL import Image

    for path in (DEMO / "train" / "train_00000.png", DEMO / "test" / "test_00483.png"):
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.mode == "L"
            assert im.size == (28, 28)


# ------------------------------------------------------------------ slow: vs. idx

needs_idx = pytest.mark.skipif(
    not fashion_mnist.has_files(fashion_mnist.DEBIAN_DIR),
    reason=f"Fashion-MNIST idx files not in {fashion_mnist.DEBIAN_DIR}",
)


@pytest.mark.slow
@needs_idx
@pytest.mark.parametrize("split,csv_name", [("train", "train.csv"), ("test", "solution.csv")])
def test_pixels_and_labels_match_original(split, csv_name, provenance_rows):
    from PIL import Image

    images, labels = fashion_mnist.read_split(fashion_mnist.DEBIAN_DIR, split)
    assert images.shape == (fashion_mnist.SIZES[split], 28, 28)
    label_of = {r["image_id"]: r["label"] for r in read_csv(csv_name)}
    rows = [r for r in provenance_rows if r["split"] == split]

    # Every label agrees with the official label of the recorded original image.
    for r in rows:
        assert label_of[r["image_id"]] == CLASS_NAMES[labels[int(r["original_index"])]]

    # Pixels of a spread of images are identical to the originals.
    for r in rows[:: max(1, len(rows) // 25)]:
        with Image.open(DEMO / split / f"{r['image_id']}.png") as im:
            pixels = np.asarray(im)
        np.testing.assert_array_equal(pixels, images[int(r["original_index"])], err_msg=r["image_id"])
