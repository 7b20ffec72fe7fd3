"""Readers: a challenge download (CSV + image folder) or a class-per-folder tree -> ids, images
(paths or arrays) and label names (Fashion-MNIST's idx files: data/fashion_mnist.py). Every failure
names the file, column or key, and says how to fix it. The parts: tables (CSV), folders (ids ->
files), images (decoding), problems (errors), items (what is read)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from visionlab.data.folders import IMAGE_EXTENSIONS, ImageFolderIndex, folder_class_names, nfc
from visionlab.data.images import ImageTooLarge, load_image
from visionlab.data.items import Items, Unusable
from visionlab.data.problems import DataError, Problems, listing
from visionlab.data.tables import label_names, read_table

# The readers, what they return and raise, and the parts callers reach as `sources.<name>`: one image
# read (load_image), the classes a source names without reading images (label_names, folder_class_names).
__all__ = [
    "DataError",
    "ImageTooLarge",
    "Items",
    "Problems",
    "Unusable",
    "challenge_test",
    "challenge_train",
    "folder_class_names",
    "folder_train",
    "label_names",
    "load_image",
]

log = logging.getLogger(__name__)


def challenge_train(
    root: Path,
    train_csv: str,
    train_dir: str,
    id_col: str,
    label_col: str,
    problems: Problems | None = None,
    skip: bool = False,
) -> Items:
    """The training CSV's rows and their images. Rows with problems are reported (to `problems` when
    given, else raised) and left out; images that cannot be used are Unusable (see resolve_all)."""
    own = Problems() if problems is None else None
    found = own if problems is None else problems
    df = read_table(root / train_csv, id_col, label_col, "Training CSV (data.train_csv)", problems=found)
    index = ImageFolderIndex(root / train_dir, "Training image folder (data.train_dir)", "data.train_dir")
    ids = df[id_col].tolist()
    paths = index.resolve_all(ids, f"training CSV {root / train_csv}", "data.train_dir", found, skip)
    if own is not None:
        own.raise_if_any()
    return Items(ids, paths, df[label_col].tolist())


def challenge_test(
    root: Path,
    test_dir: str,
    sample_submission: str | None,
    id_col: str,
    solution: str | None = None,
    label_col: str = "label",
    problems: Problems | None = None,
    skip: bool = False,
) -> tuple[Items, pd.DataFrame | None]:
    """The test images in the sample submission's order (or sorted file names without one, also when
    the sample submission file is absent), their labels where a solution file exists, and the sample
    submission table itself."""
    own = Problems() if problems is None else None
    found = own if problems is None else problems
    index = ImageFolderIndex(root / test_dir, "Test image folder (data.test_dir)", "data.test_dir")
    sample = None
    if sample_submission and not (root / sample_submission).exists():
        log.warning(
            "No sample submission %s (data.sample_submission): the test ids are the image files of %s, "
            "sorted, and the submission's columns are %r and %r (data.id_col, data.label_col).",
            root / sample_submission,
            root / test_dir,
            id_col,
            label_col,
        )
        sample_submission = None
    if sample_submission:
        sample = read_table(
            root / sample_submission, id_col, None, "Sample submission (data.sample_submission)", problems=found
        )
        ids = sample[id_col].tolist()
        paths = index.resolve_all(ids, f"sample submission {root / sample_submission}", "data.test_dir", found, skip)
    else:
        ids = index.image_files()
        if not ids:
            raise DataError(f"Test image folder {root / test_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        # dangling links, special files, folders named like an image: named (or skipped), never dropped
        paths = index.resolve_all(ids, f"test image folder {root / test_dir}", "data.test_dir", found, skip)
    labels = None
    if solution and (root / solution).is_file():
        with found.collecting():
            sol = read_table(root / solution, id_col, label_col, "Solution file (data.solution)", problems=found)
            truth = {nfc(k): v for k, v in zip(sol[id_col], sol[label_col])}  # ids as the file names: NFC or NFD
            missing = [i for i in ids if nfc(i) not in truth]
            if missing:
                raise DataError(
                    f"Solution file {root / solution} has no label for {len(missing)} test id(s):\n{listing(missing)}"
                )
            labels = [truth[nfc(i)] for i in ids]
    if own is not None:
        own.raise_if_any()
    return Items(ids, paths, labels), sample


def folder_train(root: Path, train_dir: str, problems: Problems | None = None, skip: bool = False) -> Items:
    """One sub-folder per class: <train_dir>/<class name>/<image>. Entries named like images that
    cannot be used (dangling links, ...) are reported (to `problems` when given, else raised) unless
    `skip`: then they are Unusable, left out like unreadable images."""
    base = root / train_dir
    if not base.is_dir():
        raise DataError(
            f"Training folder (data.train_dir) {base} does not exist. For data=folder it must "
            "hold one sub-folder per class."
        )
    ids, paths, labels = [], [], []
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        index = ImageFolderIndex(class_dir, "Class folder", "data.train_dir")
        names = index.image_files()
        found = index.resolve_all(names, f"class folder {class_dir}", "data.train_dir", problems, skip)
        for name, path in zip(names, found):
            ids.append(f"{class_dir.name}/{name}")
            paths.append(path)
            labels.append(class_dir.name)
    if not ids:
        raise DataError(
            f"Training folder {base} has no class sub-folders with images in them. Layout for "
            "data=folder: <train_dir>/<class name>/<image file>."
        )
    return Items(ids, paths, labels)
