"""What the readers hand on: Items (ids, images, labels) and Unusable, an id's stand-in for an image
that must not be opened."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unusable:
    """In place of an image path: an id with no file that may be opened (missing, unsafe, a broken
    link) and why. Never opened; reported, or skipped like an unreadable image."""

    reason: str


@dataclass
class Items:
    """What a reader found: one id per image, the image as a file path or an HxW(xC) uint8 array,
    and the label NAME of each (None where the labels are unknown)."""

    ids: list[str]
    images: list
    labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index) -> "Items":
        index = list(index)
        return Items(
            [self.ids[i] for i in index],
            [self.images[i] for i in index],
            None if self.labels is None else [self.labels[i] for i in index],
        )
