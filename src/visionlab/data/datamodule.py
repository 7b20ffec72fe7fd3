"""LightningDataModule: read a source, split a stratified validation set, decode images once
(kept in memory when they fit) and serve uint8 CHW batches. Normalisation lives in the model."""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from visionlab.config.values import check_loader_values
from visionlab.data import fashion_mnist, sources
from visionlab.data.sources import DataError, Items, Problems, Unusable, listing

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("error", "skip")
# data.image_size's bound: above any real classifier's input (ImageNet models take 224-600 px); a typo
# such as 100000 would otherwise surface as every image "failing to read" (a 30 GB array each).
MAX_IMAGE_SIZE = 4096


def check_image_size(image_size, batch_size) -> None:
    """data.image_size is a sane number of pixels a side, and one batch of it fits in memory."""
    if image_size is None or int(image_size) < 1:
        raise DataError(f"data.image_size={image_size!r} must be a positive number of pixels.")
    size = int(image_size)
    if size > MAX_IMAGE_SIZE:
        raise DataError(
            f"data.image_size={size} is beyond {MAX_IMAGE_SIZE} pixels a side: each image would be "
            f"{size}x{size}x3 = {size * size * 3 / 1e9:.1f} GB in memory. Set data.image_size to the side "
            "the model should see (28-512 for most challenges)."
        )
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    batch = size * size * 3 * int(batch_size)
    if batch > memory:
        raise DataError(
            f"data.image_size={size} with data.batch_size={batch_size}: one batch is {batch / 1e9:.1f} GB, "
            f"more than this machine's {memory / 1e9:.1f} GB of memory. Lower data.image_size or data.batch_size."
        )


def case_variants(labels: list[str]) -> list[str]:
    """Label spellings that differ only in case (or Unicode form), each group as "'Shirt' (40) / 'shirt' (3)"."""
    counts = Counter(labels)
    groups: dict[str, list[str]] = {}
    for label in counts:
        groups.setdefault(unicodedata.normalize("NFC", label).casefold(), []).append(label)
    return [
        " / ".join(f"{v!r} ({counts[v]})" for v in sorted(spellings, key=lambda v: (-counts[v], v)))
        for spellings in groups.values()
        if len(spellings) > 1
    ]


def sort_classes(names) -> list[str]:
    """Class names in a stable order: numerically when they are all integers, else alphabetically."""
    names = set(names)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) indices with `fraction` of every class held out. A class with a single image
    stays whole in `keep`; every class with two or more keeps at least one image on each side."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = 0 if len(idx) < 2 or fraction <= 0 else min(len(idx) - 1, max(1, round(fraction * len(idx))))
        held.extend(idx[:n_held])
        keep.extend(idx[n_held:])
    return np.sort(np.array(keep, dtype=int)), np.sort(np.array(held, dtype=int))


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` indices drawn class-proportionally (largest remainder), at least one per class."""
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed + 1)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(labels)
    take = np.maximum(np.floor(quota).astype(int), 1)
    for i in np.argsort(-(quota - np.floor(quota))):
        if take.sum() >= size:
            break
        take[i] += 1
    while take.sum() > size and take.max() > 1:  # rare classes raised to one image: pay from the largest
        take[np.argmax(take)] -= 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, np.minimum(take, counts))]
    return np.sort(np.concatenate(chosen))


class ImageDataset(Dataset):
    """uint8 HxWx3 images (decoded in memory, or decoded per item) -> (uint8 3xHxW tensor, label)."""

    def __init__(
        self,
        images,
        labels: np.ndarray | None,
        image_size: int,
        interpolation: str,
        transform=None,
        max_pixels: int | None = sources.MAX_PIXELS,
    ):
        self.images, self.labels, self.transform = images, labels, transform
        self.image_size, self.interpolation, self.max_pixels = image_size, interpolation, max_pixels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        if not isinstance(image, np.ndarray) or image.shape != (self.image_size, self.image_size, 3):
            image = sources.load_image(image, self.image_size, self.interpolation, self.max_pixels)
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return x, (-1 if self.labels is None else int(self.labels[i]))


class ImageDataModule(pl.LightningDataModule):
    """What every `data` option shares: split, subset, decoding, in-memory cache and loaders. The
    options (ChallengeDataModule, FolderDataModule, FashionMNISTDataModule) add their own keys and
    readers. `classes` is given when predicting with a trained model (its class names, from the
    checkpoint); when training they come from the labels.

    Args:
        root: the data folder (data.root).
        id_col, label_col: the submission's columns.
        image_size, interpolation: every image is resized to image_size x image_size with this PIL filter.
        val_fraction: the stratified validation split's share of the labelled images (0: none).
        subset: train on this many images (stratified); None: all.
        eval_subset: at most this many validation and test images (the debug presets).
        batch_size, num_workers: the loaders'.
        seed: the split's and the subset's.
        on_bad_image: "error" (list every unreadable image and stop) or "skip".
        cache: keep decoded images in memory: "auto" (when they fit), True or False.
        max_pixels: refuse images above this many pixels from their header (None: no limit).
        train_transform: the augmentation pipeline (train.py builds it from the augmentation group).
        classes: the class names, when predicting.
    """

    def __init__(
        self,
        root: str | None,
        id_col: str = "image_id",
        label_col: str = "label",
        image_size: int = 64,
        interpolation: str = "bilinear",
        val_fraction: float = 0.1,
        subset: int | None = None,
        eval_subset: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        on_bad_image: str = "error",
        cache: str | bool = "auto",
        max_pixels: int | None = sources.MAX_PIXELS,
        train_transform=None,
        classes: list[str] | None = None,
    ):
        super().__init__()
        if on_bad_image not in ON_BAD_IMAGE:
            raise DataError(f"data.on_bad_image={on_bad_image!r} must be one of {ON_BAD_IMAGE}.")
        if not 0 <= val_fraction < 1:
            raise DataError(f"data.val_fraction={val_fraction} must be in [0, 1).")
        if subset is not None and int(subset) < 1:
            raise DataError(f"data.subset={subset} must be a positive number of images (or null for all).")
        check_loader_values(batch_size, num_workers, max_pixels, error=DataError)
        check_image_size(image_size, batch_size)  # before any image is read
        if interpolation not in sources.INTERPOLATIONS:
            raise DataError(f"data.interpolation={interpolation!r} must be one of {list(sources.INTERPOLATIONS)}.")
        self.root = Path(os.path.expanduser(str(root))) if root not in (None, "???") else None
        self.id_col, self.label_col = id_col, label_col
        self.image_size, self.interpolation = int(image_size), interpolation
        self.val_fraction, self.subset, self.seed = val_fraction, subset, seed
        self.eval_subset = int(eval_subset) if eval_subset else None  # debug presets: decode no more than they use
        self.batch_size, self.num_workers = batch_size, num_workers
        self.on_bad_image, self.cache = on_bad_image, cache
        self.max_pixels = max_pixels
        self.train_transform = train_transform
        self.classes = list(classes) if classes is not None else None
        self.skipped: list[str] = []  # "id: reason" of bad images skipped (data.on_bad_image=skip)
        self.train_set = self.val_set = self.test_set = None
        self.test_items: Items | None = None
        self.sample = None  # the sample submission, when the option has one

    def _require_root(self) -> None:
        if self.root is None:
            raise DataError("data.root is not set: give the folder of your download, data.root=DIR.")

    # ------------------------------------------------------------------ reading (each option's own)
    def read_train(self, problems: Problems | None = None) -> Items:
        raise NotImplementedError

    def read_test(self, problems: Problems | None = None) -> Items:
        raise NotImplementedError

    def has_test_images(self) -> bool:
        """Whether there is a test set to check before training (a challenge may come without one yet)."""
        return (self.root / self.test_dir).is_dir()

    def known_classes(self) -> tuple[set[str] | None, str, bool]:
        """What can be known of the data's classes without reading an image: (names, where from,
        whether they are all the classes). All of them come from the training labels; a solution file's
        labels (the test labels) are some of them. (None, "", False): nothing can be known. Never from
        a sample submission: its label column may hold placeholders."""
        return None, "", False

    def train_labels_source(self) -> str:
        return "the training labels"

    def test_labels_source(self) -> str:
        return "the test split"

    def _cache_fits(self, n: int) -> bool:
        if self.cache in (True, "true", "always"):
            return True
        if self.cache in (False, "false", "never"):
            return False
        need = n * self.image_size * self.image_size * 3
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30
        return need < min(0.5 * available, 8 << 30)

    def decode(
        self, items: Items, what: str, keep_rows: bool = False, problems: Problems | None = None
    ) -> tuple[Items, list, list[int]]:
        """Decode every image once (validating it), keep arrays when they fit in memory. Bad files are
        reported all together (to `problems` when given), or skipped with data.on_bad_image=skip, as are
        Unusable ids (missing, unsafe: never opened); keep_rows: replaced by a black image instead, so that
        a submission still has a row for every test id. Returns the readable items, their images and
        their positions in `items`."""
        keep = self._cache_fits(len(items))

        def load(src):
            if isinstance(src, Unusable):  # reported by the reader already, unless skipped
                return None, src.reason
            try:
                arr = sources.load_image(src, self.image_size, self.interpolation, self.max_pixels)
                return (arr if keep else src), None
            except Exception as e:  # PIL raises many types for broken files
                return None, f"{type(e).__name__}: {e}"

        workers = min(8, (os.cpu_count() or 2) * 2)
        with ThreadPoolExecutor(workers) as pool:
            decoded = list(pool.map(load, items.images, chunksize=64))
        skip = self.on_bad_image == "skip"
        bad = [
            self._describe(items, i, err)
            for i, (_, err) in enumerate(decoded)
            if err and (skip or not isinstance(items.images[i], Unusable))
        ]
        if bad and not skip:
            sources.report(
                problems,
                f"{len(bad)} {what} image(s) cannot be read as images:\n{listing(bad)}\n"
                "Remove or replace them, or set data.on_bad_image=skip to do without them.",
            )
        elif bad:
            log.warning(
                "Skipping %d unreadable or missing %s image(s) (data.on_bad_image=skip)%s:\n%s",
                len(bad),
                what,
                "; their rows are predicted from a black image" if keep_rows else "",
                listing(bad),
            )
            self.skipped += bad
            if keep_rows:
                blank = np.zeros((self.image_size, self.image_size, 3), np.uint8)
                decoded = [(blank, None) if err else (image, err) for image, err in decoded]
        good = [i for i, (_, err) in enumerate(decoded) if not err]
        if len(good) < len(items):
            items, decoded = items.take(good), [decoded[i] for i in good]
        return items, [image for image, _ in decoded], good

    @staticmethod
    def _describe(items: Items, i: int, err: str) -> str:
        source = items.images[i]
        if isinstance(source, Unusable):
            return f"{items.ids[i]}: {err}"
        return f"{items.ids[i]} ({'array' if isinstance(source, np.ndarray) else source}): {err}"

    def label_indices(self, labels: list[str], what: str) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(labels) - set(lookup))
        if unknown:
            raise DataError(
                f"{what} has label(s) the model was not trained on: {unknown[:20]}. Known classes: {self.classes}."
            )
        return np.array([lookup[label] for label in labels], dtype=np.int64)

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """stage None: training and test data in one pass, so that one error lists every problem of both."""
        problems = Problems()
        if stage in (None, "fit", "validate") and self.train_set is None:
            with problems.collecting():
                self._setup_fit(problems)
        if stage in (None, "test", "predict") and self.test_set is None:
            with problems.collecting():
                self._setup_test(problems)
        problems.raise_if_any()

    def _setup_fit(self, problems: Problems) -> None:
        items = self.read_train(problems)
        if self.classes is None:
            self.classes = sort_classes(items.labels)
            variants = case_variants(items.labels)
            if variants:
                log.warning(
                    "Labels that differ only in case are separate classes: %s (images each) in %s. If each "
                    "pair is one class, write it one way.",
                    "; ".join(variants),
                    self.train_labels_source(),
                )
        if len(self.classes) < 2:
            raise DataError(
                f"The training labels name a single class ({self.classes}); a classifier needs at "
                f"least two. Check data.label_col={self.label_col!r}."
            )
        labels = self.label_indices(items.labels, "The training data")
        train_idx, val_idx = stratified_split(labels, self.val_fraction, self.seed)
        if self.subset:
            train_idx = train_idx[stratified_subset(labels[train_idx], int(self.subset), self.seed)]
        if self.eval_subset and len(val_idx) > self.eval_subset:
            val_idx = val_idx[stratified_subset(labels[val_idx], self.eval_subset, self.seed)]
        # Both splits are decoded in one pass, so that one error lists every unreadable file.
        chosen = np.concatenate([train_idx, val_idx]).astype(int)
        kept_items, images, kept = self.decode(items.take(chosen), "training", problems=problems)
        if problems:
            return  # the splits below would only add noise to what the error already says
        in_train = np.array(kept, dtype=int) < len(train_idx)
        kept_labels = self.label_indices(kept_items.labels, "train") if kept else np.zeros(0, np.int64)
        skipped = " after skipping unreadable images" if self.skipped else ""
        if not in_train.any():
            raise DataError(f"The training split is empty{skipped}: lower data.val_fraction or add images.")
        if self.val_fraction > 0 and in_train.all():
            raise DataError(
                f"data.val_fraction={self.val_fraction} leaves no validation image{skipped} (every class "
                "has a single usable image). Add images or set data.val_fraction=0."
            )
        self.train_set = ImageDataset(
            [images[i] for i in np.flatnonzero(in_train)],
            kept_labels[in_train],
            self.image_size,
            self.interpolation,
            self.train_transform,
            self.max_pixels,
        )
        if not in_train.all():
            self.val_set = ImageDataset(
                [images[i] for i in np.flatnonzero(~in_train)],
                kept_labels[~in_train],
                self.image_size,
                self.interpolation,
                max_pixels=self.max_pixels,
            )
        log.info(
            "Data: %d training / %d validation images, %d classes, %dx%d px",
            len(self.train_set),
            0 if self.val_set is None else len(self.val_set),
            len(self.classes),
            self.image_size,
            self.image_size,
        )

    def _setup_test(self, problems: Problems) -> None:
        items = self.read_test(problems)
        if self.eval_subset and len(items) > self.eval_subset:
            items = items.take(np.arange(self.eval_subset))
        items, images, _ = self.decode(items, "test", keep_rows=True, problems=problems)
        self.test_items = items
        labels = None
        if items.labels is not None and self.classes is not None:
            known = set(self.classes)
            unknown = sorted(set(items.labels) - known)
            if unknown:
                log.warning(
                    "The test labels of %s hold label(s) that are not one of the classes: %s (the classes: %s); "
                    "the test set is not scored (no test error, no accuracy). Correct those labels there.",
                    self.test_labels_source(),
                    ", ".join(repr(u) for u in unknown[:20]),
                    ", ".join(self.classes[:20]) + (", ..." if len(self.classes) > 20 else ""),
                )
            labels = self.label_indices(items.labels, "The test labels") if not unknown else None
        self.test_set = ImageDataset(images, labels, self.image_size, self.interpolation, max_pixels=self.max_pixels)

    @property
    def has_test_labels(self) -> bool:
        return self.test_set is not None and self.test_set.labels is not None

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std (0-1 scale) of up to 2,000 training images."""
        ds = self.train_set
        n = min(len(ds), 2000)
        idx = np.random.default_rng(self.seed).choice(len(ds), n, replace=False)
        batch = np.stack(
            [
                ds.images[i]
                if isinstance(ds.images[i], np.ndarray) and ds.images[i].shape[-1] == 3
                else sources.load_image(ds.images[i], self.image_size, self.interpolation, self.max_pixels)
                for i in idx
            ]
        )
        pixels = batch.reshape(-1, 3).astype(np.float64) / 255.0
        return pixels.mean(0).tolist(), np.maximum(pixels.std(0), 1e-3).tolist()

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            pin_memory=self.on_cuda(),
        )

    def on_cuda(self) -> bool:
        """Whether the attached trainer trains on a CUDA device: then batches are pinned, so that
        Lightning's copy to the GPU (non_blocking on CUDA) overlaps with compute."""
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def _eval_loader(self, dataset) -> DataLoader:
        """Evaluation sees every image exactly once, also under DDP: Lightning's own distributed sampler
        pads the ranks to equal length with repeated images, which would skew the epoch's loss and error."""
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return self._loader(dataset, shuffle=False, sampler=sampler)

    def val_dataloader(self):
        return [] if self.val_set is None else self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class ChallengeDataModule(ImageDataModule):
    """data=challenge (and demo): a training CSV of ids and labels, image folders, a sample submission.

    Args:
        root: the download's folder; the other paths are relative to it.
        train_csv: the training labels (id_col, label_col).
        train_dir, test_dir: the image folders.
        sample_submission: the submission's format and test ids; None: the test folder's files, sorted.
        solution: a CSV with the test labels, if known (test error, predict's accuracy).
        **common: ImageDataModule's keys.
    """

    def __init__(
        self,
        root: str | None = ".",
        train_csv: str = "train.csv",
        train_dir: str = "train",
        test_dir: str = "test",
        sample_submission: str | None = "sample_submission.csv",
        solution: str | None = None,
        **common,
    ):
        super().__init__(root, **common)
        self._require_root()
        self.train_csv, self.train_dir, self.test_dir = train_csv, train_dir, test_dir
        self.sample_submission, self.solution = sample_submission, solution

    def known_classes(self) -> tuple[set[str] | None, str, bool]:
        train = self.root / self.train_csv
        names = sources.label_names(train, self.id_col, self.label_col, "Training CSV (data.train_csv)")
        if names is not None:
            return names, f"the labels of training CSV {train}", True
        if self.solution:
            solution = self.root / self.solution
            names = sources.label_names(solution, self.id_col, self.label_col, "Solution file (data.solution)")
            if names is not None:
                return names, f"the labels of solution file {solution}", False
        return None, "", False

    def train_labels_source(self) -> str:
        return f"training CSV {self.root / self.train_csv}"

    def test_labels_source(self) -> str:
        return f"solution file {self.root / self.solution} (data.solution)"

    def read_train(self, problems: Problems | None = None) -> Items:
        return sources.challenge_train(
            self.root,
            self.train_csv,
            self.train_dir,
            self.id_col,
            self.label_col,
            problems,
            skip=self.on_bad_image == "skip",
        )

    def read_test(self, problems: Problems | None = None) -> Items:
        items, self.sample = sources.challenge_test(
            self.root,
            self.test_dir,
            self.sample_submission,
            self.id_col,
            self.solution,
            self.label_col,
            problems,
            skip=self.on_bad_image == "skip",
        )
        return items


class FolderDataModule(ImageDataModule):
    """data=folder: one sub-folder per class, <root>/<train_dir>/<class name>/<image>; test images in
    <root>/<test_dir>.

    Args:
        root: the data folder.
        train_dir, test_dir: relative to root.
        **common: ImageDataModule's keys.
    """

    def __init__(self, root: str | None, train_dir: str = "train", test_dir: str = "test", **common):
        super().__init__(root, **common)
        self._require_root()
        self.train_dir, self.test_dir = train_dir, test_dir

    def known_classes(self) -> tuple[set[str] | None, str, bool]:
        names = sources.folder_class_names(self.root, self.train_dir)
        return names, f"the class folders of {self.root / self.train_dir}", names is not None

    def train_labels_source(self) -> str:
        return f"the class folders of {self.root / self.train_dir}"

    def read_train(self, problems: Problems | None = None) -> Items:
        return sources.folder_train(self.root, self.train_dir, problems, skip=self.on_bad_image == "skip")

    def read_test(self, problems: Problems | None = None) -> Items:
        items, _ = sources.challenge_test(
            self.root, self.test_dir, None, self.id_col, problems=problems, skip=self.on_bad_image == "skip"
        )
        return items


class FashionMNISTDataModule(ImageDataModule):
    """data=fashion_mnist: the full 60k / 10k Fashion-MNIST from its idx files (data/fashion_mnist.py).

    Args:
        root: a folder holding the idx files; None: Debian's dataset-fashion-mnist package.
        download: fetch them with torchvision when no copy is found (needs the internet).
        **common: ImageDataModule's keys.
    """

    def __init__(self, root: str | None = None, download: bool = False, **common):
        super().__init__(root, **common)
        self.download = download

    def known_classes(self) -> tuple[set[str] | None, str, bool]:
        return set(fashion_mnist.CLASSES), "Fashion-MNIST's ten classes", True

    def read_train(self, problems: Problems | None = None) -> Items:
        return fashion_mnist.read(None if self.root is None else str(self.root), "train", self.download)

    def read_test(self, problems: Problems | None = None) -> Items:
        return fashion_mnist.read(None if self.root is None else str(self.root), "test", self.download)

    def has_test_images(self) -> bool:
        return True  # the official test split
