"""Class names and the stratified split and subset of the labelled images."""

from __future__ import annotations

import unicodedata
from collections import Counter

import numpy as np


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
