"""CSV tables (training labels, sample submission, solution) read as strings and checked: columns
present, ids unique, labels present; every problem names the file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from visionlab.data.problems import MAX_LISTED, DataError, Problems, listing

# Cells that mean "no value" in exported tables. Only in label columns: an id is a file name ("nan.png"
# is one), and "NA" stays a label, as a class may be called that.
MISSING_MARKERS = {"nan", "-nan", "none", "null", "<na>"}


def _other_delimiter(columns) -> str | None:
    """';', tab or '|' when a single parsed column holds one of them: the file uses that separator."""
    if len(columns) != 1:
        return None
    return next((d for d in (";", "\t", "|") if d in str(columns[0])), None)


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
    df = _load(path, id_col, label_col, what)
    wanted = [(id_col, id_key)] + ([(label_col, label_key)] if label_col is not None else [])
    for col, key in wanted:
        if col not in df.columns:
            raise DataError(_missing_column(df, path, col, key, what))
    if df.empty:
        raise DataError(f"{what} {path} has a header but no rows: it lists no images.")
    own = Problems() if problems is None else None
    found = own if problems is None else problems
    drop = _bad_ids(df, path, id_col, what, found)
    if label_col is not None:
        drop |= _bad_labels(df, path, label_col, what, found)
    if own is not None:
        own.raise_if_any()
    return df.drop(index=sorted(drop)).reset_index(drop=True) if drop else df


def _load(path: Path, id_col: str, label_col: str | None, what: str) -> pd.DataFrame:
    """The CSV's cells as stripped strings, its header's names stripped."""
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
    return df.apply(lambda col: col.str.strip())


def _missing_column(df: pd.DataFrame, path: Path, col: str, key: str, what: str) -> str:
    """Why `col` is not among the columns: another separator than commas, or another name."""
    sep = _other_delimiter(df.columns)
    if sep:  # the columns are fine, the separator is not: renaming a column would not help
        return (
            f"{what} {path} has no column {col!r} (its columns: {list(df.columns)}): it is "
            f"{sep!r}-separated, and CSV files are read comma-separated. Save it with commas, e.g. "
            f"python -c \"import pandas as p; f='{path}'; p.read_csv(f, sep={sep!r}, dtype=str)"
            f'.to_csv(f, index=False)". (Set {key}=<column> only where the column has another name.)'
        )
    return f"{what} {path} has no column {col!r} (its columns: {list(df.columns)}). Set {key}=<one of those>."


def _bad_ids(df: pd.DataFrame, path: Path, id_col: str, what: str, found: Problems) -> set:
    """The rows to leave out for their id (empty, or a repeat of an earlier row's), reported to `found`."""
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
    return drop


def _bad_labels(df: pd.DataFrame, path: Path, label_col: str, what: str, found: Problems) -> set:
    """The rows to leave out for their label (empty, or a missing-value marker), reported to `found`."""
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
    return set(missing + marked)


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
