"""ImageDataModule, what every `data` option shares: read a source, split a stratified validation set,
decode images once (kept in memory when they fit) and serve uint8 CHW batches. Normalisation lives in
the model; the options themselves are in data/options.py."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from visionlab.config.values import check_loader_values
from visionlab.data.dataset import ImageDataset
from visionlab.data.decoding import Decoder
from visionlab.data.images import INTERPOLATIONS, MAX_PIXELS, load_image
from visionlab.data.items import Items
from visionlab.data.problems import DataError, Problems
from visionlab.data.split import case_variants, sort_classes, stratified_split, stratified_subset

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


class ImageDataModule(pl.LightningDataModule):
    """What every `data` option shares: split, subset, decoding, in-memory cache and loaders. The
    options (ChallengeDataModule, FolderDataModule, FashionMNISTDataModule) add their own keys and
    readers. `classes` is given when predicting with a trained model (its class names, from the
    checkpoint); when training they come from the labels.

    The keyword defaults serve a direct Python user; the YAML sets them (conf/_bases/data.yaml, each
    option's file for its own keys), and tests/test_datamodule.py holds these to it.

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
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        on_bad_image: str = "error",
        cache: str | bool = "auto",
        max_pixels: int | None = MAX_PIXELS,
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
        if interpolation not in INTERPOLATIONS:
            raise DataError(f"data.interpolation={interpolation!r} must be one of {list(INTERPOLATIONS)}.")
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

    def decode(
        self, items: Items, what: str, keep_rows: bool = False, problems: Problems | None = None
    ) -> tuple[Items, list, list[int]]:
        """Decode every image once (data/decoding.py): the readable items, their images and their
        positions in `items`; skipped images are added to self.skipped."""
        decoder = Decoder(self.image_size, self.interpolation, self.max_pixels, self.cache, self.on_bad_image == "skip")
        decoded = decoder.decode(items, what, keep_rows, problems)
        self.skipped += decoded.skipped
        return decoded.items, decoded.images, decoded.positions

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

    def _learn_classes(self, labels: list[str]) -> None:
        """The class names from the training labels (unless given: predicting), at least two."""
        if self.classes is None:
            self.classes = sort_classes(labels)
            variants = case_variants(labels)
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

    def _split(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(training, validation) indices: stratified, then cut to data.subset and data.eval_subset."""
        train_idx, val_idx = stratified_split(labels, self.val_fraction, self.seed)
        if self.subset:
            train_idx = train_idx[stratified_subset(labels[train_idx], int(self.subset), self.seed)]
        if self.eval_subset and len(val_idx) > self.eval_subset:
            val_idx = val_idx[stratified_subset(labels[val_idx], self.eval_subset, self.seed)]
        return train_idx, val_idx

    def _setup_fit(self, problems: Problems) -> None:
        items = self.read_train(problems)
        self._learn_classes(items.labels)
        labels = self.label_indices(items.labels, "The training data")
        train_idx, val_idx = self._split(labels)
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
                else load_image(ds.images[i], self.image_size, self.interpolation, self.max_pixels)
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
