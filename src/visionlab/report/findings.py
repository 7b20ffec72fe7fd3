"""What a finished ablation sweep measured, in words and numbers that hold whatever the results are.

The notebooks print these under every sweep (report.ipynb, theory.ipynb's init section), so that
each number their prose quotes is printed by an output cell: the settings ranked by mean best
validation error (facts_lines), the per-seed values and paired differences the "in every seed"
claims rest on (per_seed_table, per_seed_markdown), and one summary row per sweep (summary_row).
Input: a sweep's results.csv (one row per setting, best first) and runs.csv (one row per run), as
visionlab.report.build_report writes them.
"""

from __future__ import annotations

import pandas as pd

from visionlab.report.runs import natural_key

CHANCE = 0.9  # error of a constant guess among 10 balanced classes
DONE = ("completed", "diverged")  # a run that ended either way is a result


def scored_settings(settings: pd.DataFrame) -> pd.DataFrame:
    """The settings with a mean best val err, best first (results.csv's order), renumbered from 0."""
    return settings[settings["best_val_err_mean"].notna()].reset_index(drop=True)


def seed_range(row, minmax: bool = True) -> str:
    """`mean ± std [min–max]` of a results.csv row's best val err (`mean (1 seed)` for one seed).

    Args:
        row: one row of results.csv.
        minmax: append the `[min–max]` over seeds.
    """
    if row["n_seeds"] < 2:
        return f"{row['best_val_err_mean']:.4f} (1 seed)"
    text = f"{row['best_val_err_mean']:.4f} ± {row['best_val_err_std']:.4f}"
    return text + (f" [{row['best_val_err_min']:.4f}–{row['best_val_err_max']:.4f}]" if minmax else "")


def facts_lines(
    settings: pd.DataFrame, runs: pd.DataFrame, smoke: bool = False, written_for: str | None = None
) -> list[str]:
    """A factual summary of one sweep: every setting's range, best and worst, what the seeds say.

    Args:
        settings: the sweep's results.csv.
        runs: the sweep's runs.csv.
        smoke: the sweep is a smoke run (says so; the written analysis is about the real sweep).
        written_for: the best setting of the sweep the notebook's analysis was written from; a
            line says whether this sweep's best is the same (not in smoke mode).
    """
    scored = scored_settings(settings)
    n_seeds = int(settings["n_seeds"].max()) if len(settings) else 0
    out = [
        f"{len(runs)} runs, {len(settings)} settings, {n_seeds} seed(s) each"
        + ("  [SMOKE MODE: 64 images, 1 epoch; the analysis below is about the real sweep]" if smoke else ""),
        "best val err = the lowest validation error over the epochs; mean ± sample std over seeds [min–max]",
        "",
    ]
    if scored.empty:
        return out + ["No setting has a validation error."]
    best, worst = scored.iloc[0], scored.iloc[-1]
    width = max(len(str(s)) for s in scored["setting"])
    for i, row in scored.iterrows():
        tag = "best " if i == 0 else ("worst" if i == len(scored) - 1 else "     ")
        note = "  <- no better than a constant guess (error 0.90)" if row["best_val_err_min"] >= CHANCE - 0.02 else ""
        out.append(f"  {tag} {str(row['setting']):<{width}}  {seed_range(row)}{note}")
    gap = worst["best_val_err_mean"] - best["best_val_err_mean"]
    out += [
        "",
        f"best: {best['setting']}; worst: {worst['setting']}; gap worst - best = {gap:.4f} ({100 * gap:.1f} points)",
    ]
    out += (
        seed_lines(scored, runs)
        if n_seeds >= 2
        else ["one seed: no seed spread measured, so no difference here is established"]
    )
    out += run_status_lines(runs)
    if written_for is not None and not smoke:
        same = str(best["setting"]) == written_for
        out += [
            "",
            f"The analysis below was written from a run whose best setting was {written_for}: "
            + ("the same here." if same else f"NOTE: the best here is {best['setting']}; re-read the analysis."),
        ]
    return out


def seed_lines(scored: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What the seeds say about each setting against the best: as good in some seed, worse in every
    seed with overlapping ranges, or outside the best's range. Same seed = same validation split,
    training subset and batch order: compared per seed."""
    best = scored.iloc[0]
    per_seed = runs.pivot_table(index="seed", columns="setting", values="best_val_err", aggfunc="first")
    tied, overlapping = [], []
    for _, row in scored.iloc[1:].iterrows():
        diffs = (per_seed[row["setting"]] - per_seed[best["setting"]]).dropna()
        text = (
            f"{row['setting']} (+{row['best_val_err_mean'] - best['best_val_err_mean']:.4f}; "
            f"per seed {', '.join(f'{d:+.4f}' for d in diffs)})"
        )
        if len(diffs) and (diffs <= 0).any():
            tied.append(text)
        elif row["best_val_err_min"] <= best["best_val_err_max"]:
            overlapping.append(text)
    out = []
    if tied:
        out.append(f"within the seed spread (as good as {best['setting']} in at least one seed): " + "; ".join(tied))
    if overlapping:
        out.append(
            f"worse than {best['setting']} in every seed, but the seed ranges overlap: " + "; ".join(overlapping)
        )
    if not tied and not overlapping:
        out.append(
            f"every other setting is worse than {best['setting']} in every seed, and the seed ranges do not overlap"
        )
    return out


def run_status_lines(runs: pd.DataFrame) -> list[str]:
    """The runs that diverged (NaN loss) and those that did not finish."""
    diverged = runs[runs["status"] == "diverged"]
    unfinished = runs[~runs["status"].isin(DONE)]
    out = [
        "diverged runs (NaN loss): "
        + (
            ", ".join(f"{r.setting} seed {r.seed} (stopped after epoch {r.epochs})" for r in diverged.itertuples())
            or "none"
        )
    ]
    if len(unfinished):
        out.append(
            "runs that did not finish: "
            + ", ".join(f"{r.setting} seed {r.seed}: {r.status}" for r in unfinished.itertuples())
        )
    return out


def seed_name(value) -> str:
    """A seed as typed: 1 for 1, 1.0 (pandas reads a column with gaps as floats) or "1"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else str(value)


def per_seed_table(settings: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Every setting's best val err in each seed, its difference to the best setting in that seed,
    and its rank among the settings in that seed: the paired comparison (same seed = same data
    split, subset and batch order) behind a claim such as "lower in every seed".

    Args:
        settings: the sweep's results.csv (gives the row order and the best setting).
        runs: the sweep's runs.csv.

    Returns:
        One row per setting (results.csv's order, index `setting`) and, per seed s, the columns
        `seed s` (best val err), `diff seed s` (minus the best setting's, same seed; NaN where
        either is missing) and `rank seed s` (1 = lowest error of that seed; ties share the rank).
    """
    order = [str(s) for s in settings["setting"]]
    values = (
        runs.assign(setting=runs["setting"].astype(str), seed=runs["seed"].map(seed_name))
        .groupby(["setting", "seed"])["best_val_err"]
        .first()
        .unstack("seed")
        .reindex(order)
    )
    seeds = sorted(values.columns, key=natural_key)
    scored = scored_settings(settings)
    best = str(scored.iloc[0]["setting"]) if len(scored) else None
    table = pd.DataFrame(index=pd.Index(order, name="setting"))
    for s in seeds:
        table[f"seed {s}"] = values[s]
    for s in seeds:
        table[f"diff seed {s}"] = values[s] - values.loc[best, s] if best is not None else float("nan")
    for s in seeds:
        table[f"rank seed {s}"] = values[s].rank(method="min").astype("Int64")
    return table


def per_seed_markdown(table: pd.DataFrame, best: str) -> str:
    """per_seed_table as Markdown: the values per seed, then the differences to `best` and the
    ranks, one cell each, listed in seed order ("+1.9, +2.5"; differences in points, 0.01 = 1; n/a
    where a seed has no value).

    Args:
        table: per_seed_table's frame.
        best: the best setting's name (the differences' reference), for the column header.
    """
    seeds = [c[len("seed ") :] for c in table.columns if c.startswith("seed ")]

    def joined(row, prefix, fmt) -> str:
        return ", ".join("n/a" if pd.isna(row[f"{prefix} {s}"]) else fmt(row[f"{prefix} {s}"]) for s in seeds)

    view = pd.DataFrame({"setting": table.index.astype(str)})
    for s in seeds:
        view[f"seed {s}"] = ["" if pd.isna(v) else f"{v:.4f}" for v in table[f"seed {s}"]]
    view[f"vs {best}, per seed (points)"] = [
        joined(r, "diff seed", lambda d: f"{100 * d:+.1f}") for _, r in table.iterrows()
    ]
    view["rank per seed"] = [joined(r, "rank seed", lambda k: f"{k}") for _, r in table.iterrows()]
    view = view.apply(lambda col: col.str.replace("|", "\\|"))
    return view.to_markdown(index=False, stralign=None, disable_numparse=True)


def summary_row(name: str, settings: pd.DataFrame, runs: pd.DataFrame) -> dict:
    """One row of the report's summary table: the sweep's best and worst setting, the gap, the
    diverged runs and the training time.

    Args:
        name: the ablation's name (`bn`, `depth`, ...).
        settings: the sweep's results.csv.
        runs: the sweep's runs.csv.
    """
    scored = scored_settings(settings)
    best, worst = scored.iloc[0], scored.iloc[-1]
    return {
        "ablation": name,
        "best setting": best["setting"],
        "best val err": seed_range(best, minmax=False),
        "worst setting": worst["setting"],
        "worst val err": seed_range(worst, minmax=False),
        "gap (points)": round(100 * (worst["best_val_err_mean"] - best["best_val_err_mean"]), 1),
        "diverged runs": int((runs["status"] == "diverged").sum()),
        "training time (min)": round(runs["wall_time_s"].sum() / 60, 1),
    }
