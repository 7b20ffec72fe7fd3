"""Fashion-MNIST, defined once: its class names, where Debian installs it, its idx file names and the
idx reader. data=fashion_mnist, scripts/make_demo.py (which builds data/demo from it) and the tests
all read it from here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from visionlab.data.items import Items
from visionlab.data.problems import DataError

# Label i of the idx files is CLASSES[i] (Zalando's order).
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
# split -> (images, labels) file names, without the .gz that the original downloads carry
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SIZES = {"train": 60_000, "test": 10_000}  # the official splits
UBYTE = 0x08  # the idx type code of unsigned bytes, the only type Fashion-MNIST uses


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """An idx file (gzipped or not) of unsigned bytes as an array, checked against its header.

    Args:
        path: the file; read with gzip when its name ends in .gz.
        ndim: the dimensions it must have (3 for images, 1 for labels).

    Raises:
        DataError: naming the file, when it cannot be read, its magic number is not that of `ndim`
            unsigned-byte dimensions, or its payload does not match the header's shape.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"Cannot read idx file {path}: {e}. Re-install or re-download Fashion-MNIST.") from None
    magic = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 + 4 * ndim or magic != (UBYTE << 8) + ndim:
        raise DataError(
            f"{path} is not an idx file of {ndim}-dimensional unsigned bytes (magic number {magic} != "
            f"{(UBYTE << 8) + ndim}). Re-install or re-download Fashion-MNIST."
        )
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape, dtype=np.int64)):
        raise DataError(
            f"{path}: idx payload has {len(raw) - header} bytes, its header's shape {shape} needs "
            f"{int(np.prod(shape, dtype=np.int64))} (cut short?). Re-install or re-download Fashion-MNIST."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _file(directory: Path, name: str) -> Path:
    """`name`.gz where it exists, else `name` (torchvision also unpacks them); .gz when neither does,
    so that the error names the original download's file."""
    return next((p for p in (directory / f"{name}.gz", directory / name) if p.is_file()), directory / f"{name}.gz")


def has_files(directory: Path) -> bool:
    """Whether `directory` holds all four idx files (gzipped or not)."""
    return all(_file(Path(directory), name).is_file() for pair in FILES.values() for name in pair)


def read_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28), labels (N,)) of one split, both uint8.

    Args:
        directory: the folder holding the idx files.
        split: "train" or "test".
    """
    images_name, labels_name = FILES[split]
    images = read_idx(_file(Path(directory), images_name), 3)
    labels = read_idx(_file(Path(directory), labels_name), 1)
    if len(images) != len(labels) or (len(labels) and labels.max() >= len(CLASSES)):
        raise DataError(
            f"{directory}: the {split} idx files disagree ({len(images)} images, {len(labels)} labels, "
            f"largest label {int(labels.max()) if len(labels) else None}). Re-install or re-download "
            "Fashion-MNIST."
        )
    return images, labels


def find_dir(root: str | None, download: bool) -> Path:
    """Where the idx files are: data.root (or its FashionMNIST/raw, torchvision's layout), Debian's
    package, or torchvision's download into data.root (default data/fashion_mnist).

    Args:
        root: data.root, or None.
        download: data.download: fetch with torchvision when no copy is found.
    """
    candidates = ([Path(root)] if root else []) + [DEBIAN_DIR]
    for candidate in candidates:
        for sub in (candidate, candidate / "FashionMNIST" / "raw"):
            if _file(sub, FILES["train"][0]).is_file():
                return sub
    if not download:
        raise DataError(
            f"Fashion-MNIST idx files not found in {[str(c) for c in candidates]}. Install Debian's "
            "dataset-fashion-mnist package, or set data.download=true (needs the internet)."
        )
    from torchvision.datasets import FashionMNIST

    target = Path(root or "data/fashion_mnist")
    FashionMNIST(str(target), train=True, download=True)
    FashionMNIST(str(target), train=False, download=True)
    return target / "FashionMNIST" / "raw"


def read(root: str | None, split: str, download: bool = False) -> Items:
    """One split as Items: ids `<split>_00000`..., the images as arrays, labels as class names.

    Args:
        root: data.root, or None for Debian's copy (or a download, with download=True).
        split: "train" or "test".
        download: data.download.
    """
    images, labels = read_split(find_dir(root, download), split)
    ids = [f"{split}_{i:05d}" for i in range(len(images))]
    return Items(ids, list(images), [CLASSES[i] for i in labels])
