"""The report's part for a search folder (experiment=search): the optimisation history (each trial's
value, the best so far) and the best parameters, read from the study stored in the folder.
`python -m visionlab.report SWEEP_DIR` calls it when the folder holds optuna.db."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from visionlab.runs.search import INTERRUPTED, STUDY_FILE, StudyFileError, open_study, storage_url  # noqa: E402


def is_search(sweep_dir: Path) -> bool:
    return (Path(sweep_dir) / STUDY_FILE).is_file()


def trials_table(study) -> pd.DataFrame:
    """One row per trial: number, state (interrupted: killed with its search), value, best so far, params."""
    rows, best = [], math.inf
    for t in study.trials:
        state = INTERRUPTED if t.user_attrs.get(INTERRUPTED) else t.state.name.lower()
        value = t.value if t.value is not None and math.isfinite(t.value) else None
        if value is not None:
            best = min(best, value)
        rows.append(
            {
                "trial": t.number,
                "state": state,
                "value": value,
                "best_so_far": None if math.isinf(best) else best,
                **t.params,
            }
        )
    return pd.DataFrame(rows)


def plot_history(df: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    done = df[df["value"].notna()]
    ax.scatter(done["trial"], done["value"], s=22, color="tab:blue", label="trial: best val err", zorder=3)
    ax.step(done["trial"], done["best_so_far"], where="post", color="tab:red", label="best so far")
    others = df[df["value"].isna()]
    if len(others):  # failed / interrupted trials have no value: marked along the top
        top = max(1.0, float(done["value"].max()) if len(done) else 1.0)
        ax.scatter(
            others["trial"], [top] * len(others), marker="x", color="grey", label="no value (failed/interrupted)"
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("best val error (1.0: diverged or failed)")
    ax.set_title("Optimisation history")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def best_lines(study) -> list[str]:
    done = [t for t in study.trials if t.value is not None and math.isfinite(t.value)]
    if not done:
        return ["No trial has finished with a value yet."]
    best = min(done, key=lambda t: t.value)
    params = " ".join(shlex.quote(f"{k}={v}") for k, v in best.params.items())
    return [
        f"Best trial: {best.number}, best val err {best.value:.4f}, of {len(study.trials)} trials",
        f"Best parameters: {params}",
        f"  retrain with them: python train.py {params}",
    ]


def write_search_report(sweep_dir: Path, out_dir: Path | None = None) -> tuple[dict[str, Path], list[str]]:
    """search_history.png and search_trials.csv; returns their paths and the lines to print."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        study = open_study(storage_url(sweep_dir))
    except StudyFileError as e:  # the runs' part of the report stands; the search part says why it is missing
        return {}, [f"No search part: {e}"]
    if study is None:
        return {}, [f"{sweep_dir / STUDY_FILE} holds no single study to report."]
    df = trials_table(study)
    paths = {"search_history": out_dir / "search_history.png", "search_trials": out_dir / "search_trials.csv"}
    plot_history(df, paths["search_history"])
    df.to_csv(paths["search_trials"], index=False)
    return paths, best_lines(study)
