"""A sweep's summary: every job's result.json in one table (summary.csv, the terminal's closing table),
its best job, and the jobs it refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from visionlab.runs.atomic import write_bytes_atomically
from visionlab.runs.folder import RESULT_FILE, read_result

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = [
    "run",
    "status",
    "best_val_err",
    "best_epoch",
    "final_train_err",
    "test_err",
    "epochs",
    "wall_time_s",
    "params",
    "checkpoint",
    "skipped_images",
    "error",
    "overrides",
]


def collect_results(sweep_dir: Path) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: `train.py --help` imports this module

    from visionlab.runs.search import STUDY_FILE, summary_in_trial_order

    rows = [read_result(path.parent) for path in sorted(Path(sweep_dir).glob(f"*/{RESULT_FILE}"))]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=SUMMARY_COLUMNS)
    if "job" in df:
        df = df.sort_values("job", kind="stable")
    for col in SUMMARY_COLUMNS:
        if col not in df:
            df[col] = None
    df = df[SUMMARY_COLUMNS + [c for c in df.columns if c not in SUMMARY_COLUMNS and c != "history"]]
    if (Path(sweep_dir) / STUDY_FILE).is_file():  # experiment=search: the study's trial order and states
        df = summary_in_trial_order(df, sweep_dir)
    return df


def format_table(df: pd.DataFrame) -> str:
    import pandas as pd

    columns = ["run", "status", "best_val_err", "best_epoch", "final_train_err", "test_err", "wall_time_s"]
    if "study_state" in df:  # experiment=search: what the Optuna study holds for each trial, beside its status
        columns.insert(2, "study_state")
    view = df[columns].copy()
    for col in ("best_val_err", "final_train_err", "test_err"):
        view[col] = view[col].map(lambda v: "" if v is None or pd.isna(v) else f"{float(v):.4f}")
    view["wall_time_s"] = view["wall_time_s"].map(lambda v: "" if v is None or pd.isna(v) else f"{float(v):.0f}")
    return view.to_string(index=False)


def best_job(df: pd.DataFrame):
    """The completed job with the lowest best val error (a row of the summary), None when no job has one."""
    import pandas as pd

    done = df[(df["status"] == "completed") & pd.to_numeric(df["best_val_err"], errors="coerce").notna()]
    done = done[done["checkpoint"].fillna("").astype(str) != ""]
    if done.empty:
        return None
    return done.loc[pd.to_numeric(done["best_val_err"]).idxmin()]


def write_summary(sweep_dir: Path) -> pd.DataFrame:
    df = collect_results(sweep_dir)
    write_bytes_atomically(Path(sweep_dir) / "summary.csv", df.to_csv(index=False).encode())
    return df


REFUSED_DIR = ".refused"  # <sweep>/.refused/<job>: why a job of this sweep was refused (train._skip_job)


def record_refusal(job_dir: Path, reason: str) -> None:
    """A refused job's folder holds another run's record, which stays as it is: the refusal goes beside."""
    folder = Path(job_dir).parent / REFUSED_DIR
    folder.mkdir(exist_ok=True)
    write_bytes_atomically(folder / Path(job_dir).name, reason.encode())


def take_refusals(sweep_dir: Path) -> dict[str, str]:
    """The jobs this sweep refused, {job: reason}; the records are removed once read."""
    folder = Path(sweep_dir) / REFUSED_DIR
    if not folder.is_dir():
        return {}
    refused = {p.name: p.read_text() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}
    shutil.rmtree(folder, ignore_errors=True)
    return refused
