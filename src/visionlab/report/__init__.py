"""Sweep report: error curves and a results table for one Hydra multirun folder.

    python -m visionlab.report outputs/train/multiruns/<stamp>_<token> [--out DIR]

runs.py reads each run (TensorBoard events, result.json) and labels it by the keys that differ
between runs (seed is replication: runs differing only in seed are one setting, shown as the mean
over seeds with a min-max band in plots and mean +- sample std in tables); tables.py aggregates
them; plots.py draws them. Writes train_err.png, val_err.png, errors.png, results.csv (per
setting), results.md, runs.csv (per run) and confusion_matrix.png (the best run's validation
confusion matrix); for experiment=search also the search part (visionlab.report.search). Epochs
are numbered from 1 everywhere (TensorBoard's step 0 is epoch 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visionlab.report.plots import SweepPlotter, best_run, write_confusion, write_plots
from visionlab.report.runs import NotASweepDir, load_run, load_sweep, runs_frame, setting_labels, split_top_level
from visionlab.report.tables import markdown_report, settings_table
from visionlab.runs.naming import parse_run_name

__all__ = [
    "NotASweepDir",
    "SweepPlotter",
    "build_report",
    "load_run",
    "load_sweep",
    "main",
    "parse_run_name",
    "setting_labels",
    "split_top_level",
    "write_plots",
]


def build_report(sweep_dir, out_dir=None) -> dict[str, Path]:
    """Write the plots and tables of a sweep.

    Args:
        sweep_dir: the sweep folder.
        out_dir: where to write; default: the sweep folder.

    Returns:
        {name: path} of what was written.

    Raises:
        NotASweepDir: before anything is written.
    """
    sweep_dir = Path(sweep_dir)
    runs, keys = load_sweep(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    per_run = runs_frame(runs, keys)
    settings = settings_table(per_run, keys)
    md = markdown_report(sweep_dir, settings, per_run, keys)  # before any file is written: no half a report
    paths = write_plots(runs, keys, out)
    paths["results_csv"] = out / "results.csv"
    settings.to_csv(paths["results_csv"], index=False)
    best = best_run(runs)
    if best is not None:
        md += "\n" + best_run_line(best) + "\n"
    confusion = write_confusion(runs, out)
    if confusion:
        paths["confusion_matrix"], best = confusion
        md += (
            f"\n## Confusion matrix of the best run\n\n`{best['run']}` (best val err "
            f"{best['best_val_err']:.4f}), validation images, best checkpoint:\n\n![](confusion_matrix.png)\n"
        )
    paths["results_md"] = out / "results.md"
    paths["results_md"].write_text(md, encoding="utf-8")
    paths["runs_csv"] = out / "runs.csv"
    per_run.to_csv(paths["runs_csv"], index=False)
    return paths


def best_run_line(best: dict) -> str:
    """`Best run: ...`: the run with the lowest val error, its checkpoint and the command to submit it."""
    ckpt = Path(best["run_dir"]) / "checkpoints" / "best.ckpt"
    return (
        f"Best run: `{best['run']}` (best val err {best['best_val_err']:.4f}), checkpoint `{ckpt}`; "
        f"submission: `python predict.py 'ckpt=\"{ckpt}\"'`"
    )


def main(argv: list[str] | None = None) -> int:
    """python -m visionlab.report SWEEP_DIR [--out DIR]; returns the exit code (2: not a sweep folder)."""
    parser = argparse.ArgumentParser(
        prog="python -m visionlab.report",
        description="Error curves and a results table for a sweep folder (outputs/train/multiruns/...).",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder, holding one folder per run")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    args = parser.parse_args(argv)
    try:
        paths = build_report(args.sweep_dir, args.out)
    except NotASweepDir as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    search_lines = []
    from visionlab.report.search import is_search, write_search_report  # matplotlib's Agg backend, optuna

    if is_search(args.sweep_dir):  # experiment=search: optimisation history and best parameters too
        search_paths, search_lines = write_search_report(args.sweep_dir, args.out)
        paths = {**paths, **search_paths}
    print("Wrote:")
    for path in paths.values():
        print(f"  {path}")
    md = paths["results_md"].read_text(encoding="utf-8")
    print("\n" + "\n".join(line for line in md.splitlines() if line.startswith("|")))
    best = [line for line in md.splitlines() if line.startswith("Best run: ")]
    if best:
        print("\n" + best[0].replace("`", ""))
    if search_lines:
        print("\n" + "\n".join(search_lines))
    return 0
