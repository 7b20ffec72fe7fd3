#!/usr/bin/env python3
"""Build the bundled ``data/demo`` challenge from real Fashion-MNIST images.

The demo is a small, stratified draw from the official Fashion-MNIST splits:

* ``train/``: 9,233 images from the official 60k training split,
* ``test/``:  484 images from the official 10k test split,

with per-class counts given by the largest-remainder method (ties broken by
class index), each split drawn with its own ``numpy.random.default_rng(0)``.
The output is byte-for-byte reproducible.

Source data, in order of preference:

1. ``--source DIR``: a directory holding the four original idx ``.gz`` files;
2. Debian's ``dataset-fashion-mnist`` package (``visionlab.data.fashion_mnist.DEBIAN_DIR``);
3. ``torchvision.datasets.FashionMNIST(root=<cache dir>, download=True)``.

Usage::

    python scripts/make_demo.py            # refuses to touch a non-empty data/demo
    python scripts/make_demo.py --force    # rebuild and replace data/demo
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from visionlab.data import fashion_mnist
from visionlab.data.sources import DataError

CLASS_NAMES = fashion_mnist.CLASSES
DEBIAN_DIR = fashion_mnist.DEBIAN_DIR
OFFICIAL_SIZES = fashion_mnist.SIZES

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "data" / "demo"
N_TRAIN = 9_233
N_TEST = 484
SEED = 0


# --------------------------------------------------------------------------- idx


def load_idx_dir(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load both official splits from a directory of idx files (visionlab's reader checks them)."""
    return {split: fashion_mnist.read_split(directory, split) for split in fashion_mnist.FILES}


def load_torchvision(cache_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fallback: download (or reuse) Fashion-MNIST via torchvision."""
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise SystemExit(
            "Fashion-MNIST idx files not found and torchvision is not installed; "
            "pass --source DIR pointing at the four idx .gz files."
        ) from exc
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = FashionMNIST(root=str(cache_dir), train=train, download=True)
        images = ds.data.numpy().astype(np.uint8, copy=False)
        labels = ds.targets.numpy().astype(np.uint8)
        out[split] = (images, labels)
    return out


def load_source(source: Path | None, cache_dir: Path) -> tuple[dict, str]:
    if source is not None:
        if not fashion_mnist.has_files(source):
            raise SystemExit(
                f"--source {source}: missing idx files; expected "
                f"{', '.join(n + '.gz' for pair in fashion_mnist.FILES.values() for n in pair)}"
            )
        return load_idx_dir(source), f"idx files in {source}"
    if fashion_mnist.has_files(DEBIAN_DIR):
        return load_idx_dir(DEBIAN_DIR), f"idx files in {DEBIAN_DIR}"
    return load_torchvision(cache_dir), f"torchvision download cached in {cache_dir}"


def validate(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for split, (images, labels) in data.items():
        n = OFFICIAL_SIZES[split]
        if images.shape != (n, 28, 28) or labels.shape != (n,):
            raise SystemExit(
                f"{split}: unexpected shapes images={images.shape} labels={labels.shape}; "
                f"expected ({n}, 28, 28) and ({n},)"
            )
        if labels.max() >= len(CLASS_NAMES):
            raise SystemExit(f"{split}: label {int(labels.max())} out of range")


# ---------------------------------------------------------------------- drawing


def largest_remainder(class_counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` proportionally to ``class_counts`` (Hamilton's method).

    Exact integer arithmetic; leftover units go to the largest remainders,
    ties broken by lower class index.
    """
    class_counts = np.asarray(class_counts, dtype=np.int64)
    n = int(class_counts.sum())
    numer = class_counts * total
    quota = numer // n
    remainder = numer % n
    leftover = total - int(quota.sum())
    order = sorted(range(len(class_counts)), key=lambda c: (-int(remainder[c]), c))
    for c in order[:leftover]:
        quota[c] += 1
    return quota


def stratified_draw(labels: np.ndarray, total: int, seed: int) -> np.ndarray:
    """Return original indices of a stratified draw, in shuffled (id) order."""
    rng = np.random.default_rng(seed)
    n_classes = len(CLASS_NAMES)
    counts = np.bincount(labels, minlength=n_classes)
    quotas = largest_remainder(counts, total)
    chosen = []
    for c in range(n_classes):
        pool = np.flatnonzero(labels == c)  # ascending original indices
        chosen.append(np.sort(rng.choice(pool, size=int(quotas[c]), replace=False)))
    picked = np.concatenate(chosen)
    return picked[rng.permutation(len(picked))]


# ---------------------------------------------------------------------- writing


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def readme_text(train_quota: np.ndarray, test_quota: np.ndarray) -> str:
    rows = "\n".join(
        f"| {i} | {name} | {int(train_quota[i])} | {int(test_quota[i])} |" for i, name in enumerate(CLASS_NAMES)
    )
    return f"""# Demo challenge: Fashion-MNIST subset

A small image-classification challenge bundled with visionlab so the framework
can be tried end to end without downloading anything. The images are real
Fashion-MNIST images (28x28, 8-bit grayscale PNG), 10 classes.

## Layout

| Path | Contents |
|------|----------|
| `train/<id>.png` | {N_TRAIN:,} training images, ids `train_00000` .. `train_{N_TRAIN - 1:05d}` |
| `test/<id>.png` | {N_TEST:,} test images, ids `test_00000` .. `test_{N_TEST - 1:05d}` |
| `train.csv` | `image_id,label`: training labels as class names |
| `sample_submission.csv` | `image_id,label`: every test id in order, label is a placeholder (`{CLASS_NAMES[0]}`) |
| `solution.csv` | `image_id,label`: true test labels; only scoring reads it |
| `provenance.csv` | `image_id,split,original_index`: where each image came from |

Ids in the CSVs carry no file extension.

## How it was drawn

Generated by `scripts/make_demo.py`; rebuild it (byte-identical) with

    python scripts/make_demo.py --force

(`--force` is needed because the script refuses to overwrite a non-empty
`data/demo`.)

* Training images are a stratified draw of {N_TRAIN:,} of the 60,000 images of the
  official Fashion-MNIST training split; test images a stratified draw of
  {N_TEST} of the 10,000 images of the official test split.
* Per-class counts follow the largest-remainder method (ties to the lower
  class index).
* Each split is drawn with its own `numpy.random.default_rng({SEED})`: for each
  class in index order, `rng.choice(..., replace=False)` over that class's
  original indices; the drawn images are then shuffled with
  `rng.permutation` and numbered in that order, so labels are not in blocks.
* `provenance.csv` gives, for every id, the split (`train` / `test`) and the
  0-based index of the image in the official idx file
  (`train-images-idx3-ubyte` / `t10k-images-idx3-ubyte`).

| Index | Class | Train | Test |
|------:|-------|------:|-----:|
{rows}
| | **Total** | **{int(train_quota.sum()):,}** | **{int(test_quota.sum())}** |

## Credit and licence

Fashion-MNIST: Han Xiao, Kashif Rasul, Roland Vollgraf. *Fashion-MNIST: a Novel
Image Dataset for Benchmarking Machine Learning Algorithms.* arXiv:1708.07747,
2017. Zalando Research, <https://github.com/zalandoresearch/fashion-mnist>.

Fashion-MNIST is released under the MIT licence:

    The MIT License (MIT) Copyright (c) 2017 Zalando SE

The images in this directory are a subset of Fashion-MNIST and are
redistributed under the same licence.
"""


def build(data: dict, dest: Path) -> None:
    """Write the whole demo into ``dest`` (an existing, empty directory)."""
    train_images, train_labels = data["train"]
    test_images, test_labels = data["test"]
    n_classes = len(CLASS_NAMES)

    train_idx = stratified_draw(train_labels, N_TRAIN, SEED)
    test_idx = stratified_draw(test_labels, N_TEST, SEED)
    train_ids = [f"train_{i:05d}" for i in range(len(train_idx))]
    test_ids = [f"test_{i:05d}" for i in range(len(test_idx))]

    for sub, ids, idx, images in (
        ("train", train_ids, train_idx, train_images),
        ("test", test_ids, test_idx, test_images),
    ):
        (dest / sub).mkdir()
        for image_id, original in zip(ids, idx):
            (dest / sub / f"{image_id}.png").write_bytes(png_bytes(images[original]))

    write_csv(
        dest / "train.csv",
        ["image_id", "label"],
        ((i, CLASS_NAMES[train_labels[o]]) for i, o in zip(train_ids, train_idx)),
    )
    write_csv(
        dest / "sample_submission.csv",
        ["image_id", "label"],
        ((i, CLASS_NAMES[0]) for i in test_ids),
    )
    write_csv(
        dest / "solution.csv",
        ["image_id", "label"],
        ((i, CLASS_NAMES[test_labels[o]]) for i, o in zip(test_ids, test_idx)),
    )
    write_csv(
        dest / "provenance.csv",
        ["image_id", "split", "original_index"],
        [(i, "train", int(o)) for i, o in zip(train_ids, train_idx)]
        + [(i, "test", int(o)) for i, o in zip(test_ids, test_idx)],
    )
    train_quota = np.bincount(train_labels[train_idx], minlength=n_classes)
    test_quota = np.bincount(test_labels[test_idx], minlength=n_classes)
    (dest / "README.md").write_text(readme_text(train_quota, test_quota), encoding="utf-8")


def install(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` into place as ``out``, replacing any old copy."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "visionlab" / "fashion-mnist"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="directory with the four Fashion-MNIST idx .gz files "
        f"(default: {DEBIAN_DIR} if present, else download via torchvision)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="torchvision download directory for the fallback (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace the output directory if it is not empty")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    if out.exists():
        if not out.is_dir():
            raise SystemExit(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not args.force:
            raise SystemExit(f"{out} is not empty; pass --force to replace it")

    try:
        data, where = load_source(args.source, args.cache_dir)
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    validate(data)
    print(f"source: {where}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        build(data, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_files = sum(1 for _ in out.rglob("*") if _.is_file())
    print(f"wrote {n_files} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
