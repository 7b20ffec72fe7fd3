"""Readers: a challenge download (CSV + image folder) or a class-per-folder tree -> ids, images
(paths or arrays) and label names (Fashion-MNIST's idx files: data/fashion_mnist.py). Every failure
names the file, column or key, and says how to fix it."""

from __future__ import annotations

import errno
import logging
import os
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from visionlab.errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_LISTED = 20  # how many offending entries one error message lists


# PIL's own bomb check is a process-wide warning/error pair; load_image checks data.max_pixels instead,
# from the header, so that the limit is a config key and an oversized file is skipped like a broken one.
Image.MAX_IMAGE_PIXELS = None
MAX_PIXELS = 150_000_000  # data.max_pixels' default: above real photos (100 MP cameras), below a 200 MP bomb

# Cells that mean "no value" in exported tables. Only in label columns: an id is a file name ("nan.png"
# is one), and "NA" stays a label, as a class may be called that.
MISSING_MARKERS = {"nan", "-nan", "none", "null", "<na>"}


class DataError(InputError):
    """Bad input. The message names the file, column or key, and the fix."""


class ImageTooLarge(ValueError):
    """An image whose header promises more pixels than data.max_pixels (never decoded)."""


class Problems:
    """Every problem found in one pass over the input, grouped by kind (each group names the file or
    key and the fix), raised together as one DataError so that one run tells the user everything."""

    def __init__(self):
        self.groups: list[str] = []

    def add(self, message: str) -> None:
        self.groups.append(message)

    def __bool__(self) -> bool:
        return bool(self.groups)

    @contextmanager
    def collecting(self):
        """A DataError raised inside (a problem that stops reading this part) joins the others."""
        try:
            yield
        except DataError as e:
            self.add(str(e))

    def raise_if_any(self) -> None:
        if len(self.groups) == 1:
            raise DataError(self.groups[0])
        if self.groups:
            raise DataError(
                f"{len(self.groups)} kinds of problem with the input data, each with its fix:\n"
                + "\n".join(f"[{i}] {g}" for i, g in enumerate(self.groups, 1))
            )


def report(problems: Problems | None, message: str) -> None:
    """Add to `problems`, or raise at once where the caller collects none."""
    if problems is None:
        raise DataError(message)
    problems.add(message)


@dataclass(frozen=True)
class Unusable:
    """In place of an image path: an id with no file that may be opened (missing, unsafe, a broken
    link) and why. Never opened; reported, or skipped like an unreadable image."""

    reason: str


def _other_delimiter(columns) -> str | None:
    """';', tab or '|' when a single parsed column holds one of them: the file uses that separator."""
    if len(columns) != 1:
        return None
    return next((d for d in (";", "\t", "|") if d in str(columns[0])), None)


def listing(entries: list[str], limit: int = MAX_LISTED) -> str:
    shown = "\n".join(f"  - {e}" for e in entries[:limit])
    more = f"\n  ... and {len(entries) - limit} more" if len(entries) > limit else ""
    return shown + more


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


# ----------------------------------------------------------------------------- CSV tables


def read_table(
    path: Path,
    id_col: str,
    label_col: str | None,
    what: str,
    id_key: str = "data.id_col",
    label_key: str = "data.label_col",
    problems: Problems | None = None,
) -> pd.DataFrame:
    """Read a CSV as strings: BOM and surrounding whitespace stripped, columns checked, ids unique,
    labels present. A problem that stops the reading is raised; problems of some rows are reported
    all together (to `problems` when given) and those rows left out."""
    if not path.is_file():
        raise DataError(
            f"{what} {path} does not exist. Set the key that names it (relative to data.root) or place the file there."
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{what} {path} is empty: it needs a header row with the columns "
            f"'{id_col}'{'' if label_col is None else f' and {label_col!r}'} and one row per image."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not a readable CSV file ({e}). Save it as UTF-8 CSV.") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda col: col.str.strip())
    wanted = [(id_col, id_key)] + ([(label_col, label_key)] if label_col is not None else [])
    for col, key in wanted:
        if col not in df.columns:
            sep = _other_delimiter(df.columns)
            if sep:  # the columns are fine, the separator is not: renaming a column would not help
                raise DataError(
                    f"{what} {path} has no column {col!r} (its columns: {list(df.columns)}): it is "
                    f"{sep!r}-separated, and CSV files are read comma-separated. Save it with commas, e.g. "
                    f"python -c \"import pandas as p; f='{path}'; p.read_csv(f, sep={sep!r}, dtype=str)"
                    f'.to_csv(f, index=False)". (Set {key}=<column> only where the column has another name.)'
                )
            raise DataError(
                f"{what} {path} has no column {col!r} (its columns: {list(df.columns)}). Set {key}=<one of those>."
            )
    if df.empty:
        raise DataError(f"{what} {path} has a header but no rows: it lists no images.")
    own = Problems() if problems is None else None
    found = own if problems is None else problems
    drop = set()
    empty = df.index[df[id_col] == ""].tolist()
    if empty:
        found.add(
            f"{what} {path}: column {id_col!r} is empty in data row(s) "
            f"{[i + 2 for i in empty[:MAX_LISTED]]} (line numbers). Fill in or delete those rows."
        )
        drop.update(empty)
    named = df[id_col][df[id_col] != ""]
    dup = named[named.duplicated(keep=False)]
    if len(dup):
        lines = [f"{v!r} on lines {[i + 2 for i in dup.index[dup == v]]}" for v in dict.fromkeys(dup)]
        found.add(
            f"{what} {path}: {len(set(dup))} id(s) in column {id_col!r} appear more than once:\n"
            f"{listing(lines)}\nEach image must be listed once."
        )
        drop.update(dup.index[dup.duplicated(keep="first")])
    if label_col is not None:
        missing = df.index[df[label_col] == ""].tolist()
        if missing:
            found.add(
                f"{what} {path}: column {label_col!r} is empty on line(s) "
                f"{[i + 2 for i in missing[:MAX_LISTED]]}. Every training image needs a label."
            )
        marked = df.index[df[label_col].str.lower().isin(MISSING_MARKERS)].tolist()
        if marked:
            values = sorted(set(df.loc[marked, label_col]))
            found.add(
                f"{what} {path}: column {label_col!r} holds a missing-value marker ({', '.join(values)}) on "
                f"line(s) {[i + 2 for i in marked[:MAX_LISTED]]}, not a class. Every training image needs a "
                "label: fill in or delete those rows (or rename the class, if it really is one)."
            )
        drop.update(missing + marked)
    if own is not None:
        own.raise_if_any()
    return df.drop(index=sorted(drop)).reset_index(drop=True) if drop else df


# ----------------------------------------------------------------------------- image folders


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


# ----------------------------------------------------------------------------- readers


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


def label_names(path: Path, id_col: str, label_col: str, what: str) -> set[str] | None:
    """The label values of a labelled CSV (training CSV, solution file), or None where the file is
    absent or cannot be read as one (a predict that does not need it must not fail on it)."""
    if not path.is_file():
        return None
    try:
        df = read_table(path, id_col, label_col, what, problems=Problems())  # rows with problems left out
    except DataError:
        return None
    return set(df[label_col]) or None


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


# ----------------------------------------------------------------------------- decoding


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16-bit and float scaled, transparency composited on black,
    palette / CMYK / grayscale converted, EXIF rotation applied."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        if img.mode != "F" or arr.max() > 1.0:
            arr = arr / 257.0 if arr.max() > 255 else arr
        else:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB") if img.mode != "RGB" else img


INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "area": Image.BOX,
}


def load_image(source, size: int, interpolation: str = "bilinear", max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """A path or an array -> size x size x 3 uint8 RGB. Raises OSError/ValueError on a bad file, and
    ImageTooLarge, from the header alone, when it has more than max_pixels (None: no limit)."""
    if isinstance(source, np.ndarray):
        arr = source if source.ndim == 3 else source[..., None]
        arr = arr[..., :3]  # drop an alpha channel
        img = Image.fromarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr)
    else:
        img = Image.open(source)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageTooLarge(
                f"{img.width}x{img.height} = {img.width * img.height / 1e6:.0f} megapixels, more than "
                f"data.max_pixels={max_pixels} (a decompression bomb?); if the image is real, raise "
                "data.max_pixels"
            )
        if img.format == "JPEG" and img.mode in ("RGB", "L"):
            img.draft(img.mode, (size, size))  # decode big JPEGs at reduced scale: much faster
        img.load()
        img = to_rgb(img)
    if img.size != (size, size):
        img = img.resize((size, size), INTERPOLATIONS[interpolation])
    return np.array(img, dtype=np.uint8)
