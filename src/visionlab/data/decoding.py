"""A reader's Items decoded once, in threads: every image validated, kept as an array when they fit in
memory (else its path, decoded again per item); unreadable ones reported all together, or skipped."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from visionlab.data.images import load_image
from visionlab.data.items import Items, Unusable
from visionlab.data.problems import Problems, listing, report

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    """The readable items, their images (arrays, or paths when not cached), their positions in the
    items given, and "id: reason" of each image skipped (data.on_bad_image=skip)."""

    items: Items
    images: list
    positions: list[int]
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decoder:
    """data.image_size, interpolation, max_pixels and cache ("auto": when they fit, True, False);
    skip: data.on_bad_image=skip."""

    image_size: int
    interpolation: str
    max_pixels: int | None
    cache: str | bool
    skip: bool

    def cache_fits(self, n: int) -> bool:
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

    def decode(self, items: Items, what: str, keep_rows: bool = False, problems: Problems | None = None) -> Decoded:
        """Decode every image once (validating it). Bad files are reported all together (to `problems`
        when given), or skipped with data.on_bad_image=skip, as are Unusable ids (missing, unsafe: never
        opened); keep_rows: replaced by a black image instead, so that a submission still has a row for
        every test id."""
        decoded = self._load_all(items)
        bad = [
            describe(items, i, err)
            for i, (_, err) in enumerate(decoded)
            if err and (self.skip or not isinstance(items.images[i], Unusable))
        ]
        if bad and not self.skip:
            report(
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
            if keep_rows:
                blank = np.zeros((self.image_size, self.image_size, 3), np.uint8)
                decoded = [(blank, None) if err else (image, err) for image, err in decoded]
        good = [i for i, (_, err) in enumerate(decoded) if not err]
        if len(good) < len(items):
            items, decoded = items.take(good), [decoded[i] for i in good]
        return Decoded(items, [image for image, _ in decoded], good, bad if self.skip else [])

    def _load_all(self, items: Items) -> list[tuple[object, str | None]]:
        """(image or path, None) or (None, why not) per item, decoded in threads."""
        keep = self.cache_fits(len(items))

        def load(src):
            if isinstance(src, Unusable):  # reported by the reader already, unless skipped
                return None, src.reason
            try:
                arr = load_image(src, self.image_size, self.interpolation, self.max_pixels)
                return (arr if keep else src), None
            except Exception as e:  # PIL raises many types for broken files
                return None, f"{type(e).__name__}: {e}"

        workers = min(8, (os.cpu_count() or 2) * 2)
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(load, items.images, chunksize=64))


def describe(items: Items, i: int, err: str) -> str:
    """One bad image for a message: its id, its file (or 'array'), and why."""
    source = items.images[i]
    if isinstance(source, Unusable):
        return f"{items.ids[i]}: {err}"
    return f"{items.ids[i]} ({'array' if isinstance(source, np.ndarray) else source}): {err}"
