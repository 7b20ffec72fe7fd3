"""The report's tables: per setting (results.csv: mean, std, min and max over seeds) with pandas'
groupby, and its Markdown (results.md) with to_markdown."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from visionlab.report.runs import FAILED, natural_key

STATUS_ORDER = ("completed", "diverged", "interrupted", FAILED)
SPREAD = ("final_train_err", "final_val_err", "gen_gap", "test_err")  # mean and std over seeds


def status_summary(statuses: pd.Series) -> str:
    """`completed`, or counts when mixed: `completed 1, diverged 1`."""
    counts = statuses.value_counts()
    order = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts.index) - set(STATUS_ORDER))
    return order[0] if len(order) == 1 else ", ".join(f"{s} {counts[s]}" for s in order)


def settings_table(per_run: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per setting, sorted by mean best val err (settings without one last, ties by the
    settings' order in per_run). Failed runs count in n_runs and status, not in the metrics.

    Args:
        per_run: runs.runs_frame's table.
        keys: the differing keys (one column each).
    """
    metrics = per_run.copy()
    metrics.loc[metrics["status"] == FAILED, ["best_val_err", "best_epoch", *SPREAD]] = math.nan
    metrics["best_epoch"] = metrics["best_epoch"].astype(float)
    # seeds, not runs: two runs of one seed (a sweep re-run, a repeated job) replicate nothing. A run
    # whose seed is unknown counts as its own.
    seeds = metrics["seed"].astype(object).where(metrics["seed"].notna(), "run:" + metrics["run"].astype(str))
    metrics["_measured_seed"] = seeds.where(metrics["best_val_err"].notna())
    spec = {k: (k, "first") for k in keys}
    spec.update(
        n_runs=("run", "size"),
        n_seeds=("_measured_seed", "nunique"),
        **{f"best_val_err_{f}": ("best_val_err", f) for f in ("mean", "std", "min", "max")},
        **{f"best_epoch_{f}": ("best_epoch", f) for f in ("mean", "min", "max")},
        **{f"{c}_{f}": (c, f) for c in SPREAD for f in ("mean", "std")},
        params=("params", "mean"),
        wall_time_s_mean=("wall_time_s", "mean"),
        status=("status", status_summary),
    )
    table = metrics.groupby("setting", sort=False).agg(**spec).reset_index()
    table["params"] = pd.to_numeric(table["params"]).round().astype("Int64")
    return table.sort_values("best_val_err_mean", kind="stable", na_position="last").reset_index(drop=True)


def _pm(mean, std, digits=4) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if pd.notna(std) else f"{mean:.{digits}f}"


def _epochs(lo, hi) -> str:
    return "" if pd.isna(lo) else (f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}")


def markdown_table(settings: pd.DataFrame, keys: list[str]) -> str:
    """The settings table as Markdown, cells as they read best (mean ± std, epoch ranges)."""
    view = settings[keys or ["setting"]].astype(str)
    view["best val err"] = [_pm(m, s) for m, s in zip(settings["best_val_err_mean"], settings["best_val_err_std"])]
    view["n seeds"] = [f"{s}" + (f"/{n}" if n != s else "") for s, n in zip(settings["n_seeds"], settings["n_runs"])]
    view["best epoch"] = [_epochs(lo, hi) for lo, hi in zip(settings["best_epoch_min"], settings["best_epoch_max"])]
    view["final train err"] = [
        _pm(m, s) for m, s in zip(settings["final_train_err_mean"], settings["final_train_err_std"])
    ]
    view["gap (val − train)"] = [_pm(m, s) for m, s in zip(settings["gen_gap_mean"], settings["gen_gap_std"])]
    view["params"] = settings["params"].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}")
    view["wall time (s)"] = settings["wall_time_s_mean"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    view["status"] = settings["status"]
    view = view.apply(lambda col: col.str.replace("|", "\\|").str.replace("\n", " "))
    # stralign=None: cells unpadded, as typed (a table that greps as `| true |`)
    return view.to_markdown(index=False, stralign=None, disable_numparse=True)


def markdown_report(sweep_dir: Path, settings: pd.DataFrame, per_run: pd.DataFrame, keys: list[str]) -> str:
    """results.md: what was swept, the settings table and how to read it, failed runs' errors."""
    seeds = sorted({str(s) for s in per_run["seed"].dropna()}, key=natural_key)
    out = [
        f"# Sweep report: {Path(sweep_dir).name}",
        "",
        f"{len(per_run)} runs, {len(settings)} settings"
        + (f", swept: {', '.join(keys)}" if keys else "")
        + (f", seeds: {', '.join(seeds)}" if len(seeds) > 1 else "")
        + ".",
        "",
        markdown_table(settings, keys),
        "",
        "Best val err: mean ± sample std over seeds (min/max in results.csv); n seeds: runs with a "
        "validation error (of all runs where they differ). Best epoch: range over seeds, epochs "
        "counted from 1. Gap: final val err − final train err. Wall time: mean per run. "
        "Failed runs count in status only.",
    ]
    failed = per_run[per_run["status"] == FAILED]
    if len(failed):
        out += ["", "## Failed runs", ""] + [
            f"- `{r.run}`: {str(r.error).replace(chr(10), ' ') or 'no error recorded'}" for r in failed.itertuples()
        ]
    return "\n".join(out) + "\n"
