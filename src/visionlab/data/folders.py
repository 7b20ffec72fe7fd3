"""Image folders: ids resolved to files inside one folder, safely (nothing outside it, nothing that is
not a regular file), and the class folders of a class-per-folder tree."""

from __future__ import annotations

import errno
import os
import unicodedata
from pathlib import Path, PurePosixPath

from visionlab.data.items import Unusable
from visionlab.data.problems import DataError, Problems, listing, report

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageFolderIndex:
    """Resolves ids (with or without extension, optionally in sub-folders) to files inside one
    folder, refusing anything that would leave it (absolute paths, '..', symlinks pointing out: a
    challenge folder from anyone must not read the rest of the disk) and anything that is not a
    regular file (FIFOs, devices, folders). Links inside the folder are followed. A refused entry is
    named in the error (or skipped with data.on_bad_image=skip), never dropped without a word. Names
    match under Unicode normalisation (NFC): a CSV's 'café.png' finds the file that macOS wrote
    decomposed (NFD)."""

    def __init__(self, directory: Path, what: str, key: str):
        if not directory.is_dir():
            raise DataError(
                f"{what} {directory} does not exist or is not a folder. Set {key}=<folder> "
                "(relative to data.root) to where the images are."
            )
        self.directory = directory
        self.real = directory.resolve()
        self.files: list[str] = []  # regular files (or links to them), as named on disk
        # name -> the name on disk: every entry under its own name and, where that differs, its NFC form
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, list[str]] = {}
        self.special: dict[str, str] = {}  # FIFOs, sockets, devices: never opened
        self.folders: dict[str, str] = {}  # sub-folders, also those named like an image (x.png/)
        self.broken: dict[str, str] = {}  # links that loop or point to nothing: reported like missing files
        self.broken_names: dict[str, str] = {}  # name (and NFC form) -> the name on disk
        self.links: set[str] = set()  # entries that are symbolic links: where they point is checked per use
        with os.scandir(directory) as it:
            for entry in it:
                if entry.is_symlink() and (reason := _broken_link(entry.path)):
                    self.broken[entry.name] = reason
                    _add_name(self.broken_names, entry.name)
                    continue
                if entry.is_dir():
                    _add_name(self.folders, entry.name)
                    continue
                if not entry.is_file():
                    _add_name(self.special, entry.name)
                    continue
                if entry.is_symlink():
                    self.links.add(entry.name)
                self.files.append(entry.name)
                _add_name(self.by_name, entry.name)
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in IMAGE_EXTENSIONS:
                    for key_ in dict.fromkeys((stem, nfc(stem))):
                        self.by_stem.setdefault(key_, []).append(entry.name)

    @staticmethod
    def _lookup(names: dict[str, str], name: str) -> str | None:
        """The entry of `names` that id `name` means: itself, or with an image extension (`x` -> `x.png`),
        under its own spelling first, then under NFC."""
        for form in dict.fromkeys((name, nfc(name))):
            if form in names:
                return names[form]
        for form in dict.fromkeys((name, nfc(name))):
            for key_, found in names.items():
                stem, ext = os.path.splitext(key_)
                if stem == form and ext.lower() in IMAGE_EXTENSIONS:
                    return found
        return None

    def _file(self, name: str) -> tuple[str | None, str | None]:
        """(the regular file that `name` means, None), (None, why not) or (None, None) when none."""
        for form in dict.fromkeys((name, nfc(name))):
            if form in self.by_name:
                return self.by_name[form], None
        for form in dict.fromkeys((name, nfc(name))):
            found = list(dict.fromkeys(self.by_stem.get(form, ())))
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                return None, f"ambiguous: several files are named {name}.* ({found}); give the extension"
        return None, None

    def resolve(self, image_id: str) -> tuple[Path | None, str | None]:
        """(path, None) or (None, reason)."""
        pure = PurePosixPath(image_id.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or (len(image_id) > 1 and image_id[1] == ":"):
            return None, "refused: resolves outside the image folder"
        name = str(pure)
        found, reason = self._file(name)
        if reason:
            return None, reason
        if found is None:
            broken = self._lookup(self.broken_names, name)
            if broken is not None:
                return None, self.broken[broken]
            special = self._lookup(self.special, name)
            if special is not None:
                link = os.path.islink(self.directory / special)
                return None, (
                    "refused: a link to something that is not a regular file (a FIFO, socket or device)"
                    if link
                    else "refused: not a regular file (a FIFO, socket or device)"
                )
            if self._lookup(self.folders, name) is not None:
                return None, "is a folder, not an image"
            if "/" not in name:
                return None, "missing: no such file"
            # an id in a sub-folder
            base = self.directory / name
            found = next((name + ext for ext in ("",) + IMAGE_EXTENSIONS if Path(f"{base}{ext}").is_file()), None)
            if found is None:  # is_file: no FIFOs
                if base.is_dir():
                    return None, "is a folder, not an image"
                if base.is_symlink() and (why := _broken_link(str(base))):
                    return None, why
                return None, "missing: no such file"
        path = self.directory / found
        if "/" not in found and found not in self.links:  # a regular file of the folder itself: inside
            return path, None
        if not self.inside(path):
            return None, "refused: a link that points outside the image folder"
        return path, None

    def inside(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.real)
        except (OSError, RuntimeError):
            return False

    def resolve_all(
        self, ids: list[str], what: str, key: str, problems: Problems | None = None, skip: bool = False
    ) -> list[Path | Unusable]:
        """A path per id, or Unusable(reason). The unusable ones are reported (to `problems`, else
        raised) unless `skip`: then the caller leaves them out like unreadable images."""
        paths, bad, seen = [], [], {}
        for image_id in ids:
            path, reason = self.resolve(image_id)
            if not reason and path in seen:
                reason = f"the same file ({path.name}) as {seen[path]!r}, an image listed more than once"
                if skip:  # the first listing of the file keeps it: nothing to skip
                    report(problems, f"{what}: {image_id!r}: {reason}. Each image must be listed once.")
            elif not reason:
                seen[path] = image_id
            if reason:
                bad.append(f"{image_id!r}: {reason}")
            paths.append(Unusable(reason) if reason else path)
        if bad and not skip:
            report(
                problems,
                f"{len(bad)} id(s) of {what} have no usable image in {self.directory}:\n{listing(bad)}\n"
                f"Check {key} and that the files exist inside that folder, or set data.on_bad_image=skip "
                "to do without them.",
            )
        return paths

    def image_files(self) -> list[str]:
        """The folder's entries named like images, sorted: its image files, and the links pointing out,
        dangling links, link loops, special files and folders named like an image, which resolve()
        then names as unusable: none is left out without a word."""
        names = set(self.files) | set(self.broken) | set(self.special.values()) | set(self.folders.values())
        return sorted(n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)


def nfc(name: str) -> str:
    """A file name in Unicode's composed form (NFC): macOS writes names decomposed (NFD), CSVs hold NFC."""
    return unicodedata.normalize("NFC", name)


def _add_name(names: dict[str, str], name: str) -> None:
    """Index `name` under itself and under its NFC form (an exact name always wins over a normalised one)."""
    names[name] = name
    names.setdefault(nfc(name), name)


def _broken_link(path: str) -> str | None:
    """Why a symbolic link cannot be followed (a loop, no target), or None when it can."""
    try:
        os.stat(path)
    except OSError as e:
        return "missing: a symbolic link loop" if e.errno == errno.ELOOP else "missing: a link to nothing (dangling)"
    return None


def folder_class_names(root: Path, train_dir: str) -> set[str] | None:
    """data=folder's classes: the sub-folders of <train_dir> that hold an image file (None: no such folder)."""
    base = root / train_dir
    if not base.is_dir():
        return None
    try:
        return {
            d.name
            for d in base.iterdir()
            if d.is_dir() and any(os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS for f in os.listdir(d))
        } or None
    except OSError:
        return None
