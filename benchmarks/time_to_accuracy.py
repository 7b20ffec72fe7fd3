"""Time to accuracy of a preset on the official 10k Fashion-MNIST test split, in seconds and in units
that transfer between machines.

    python benchmarks/time_to_accuracy.py experiment=leaderboard [more train.py overrides]
        [--out DIR] [--reference-steps 200] [--thresholds 0.90,0.92,0.93]
        [--against 'OTHER PRESET'] [--seeds 0,1,2] [--test-images N]

First, in the same process, the fixed reference: the plain PyTorch loop of ../shared/BASELINES.md
(benchmarks/throughput.py's: the 94k scratch CNN, fp32, batch 128, in-memory tensors) for
--reference-steps steps after a short warm-up, giving the machine's reference img/s; it is measured
again after the run, and the mean of the two is used (a warning says when they differ by > 20 %:
a neighbour's load changed meanwhile). Then the preset
trains through the real framework (the composed train config, visionlab.commands.train.run) with a callback
that scores the model on the 10k split at every epoch end and leaves its own time out of the
training time. Every time is also given as reference images: seconds x reference img/s, i.e. how
many images the reference loop trains in that time (a machine twice as fast halves the seconds and
keeps the reference images). Prints time-to-each-threshold (or "not reached") and writes curve.csv
and curve.png to --out (default outputs/benchmarks/time_to_accuracy/<time>/), the run in run/.

A threshold near a recipe's final accuracy is crossed, or not, by the luck of the seed (the fast
preset's three seeds ended at 0.9216, 0.9187 and 0.9193: 0.92 once). --seeds trains every preset
once per seed, the presets alternating within each seed, and adds seeds.csv: per preset and
threshold, how many seeds got there and the median time (a seed that never got there counts as
slower than any that did, so the median exists when at least half got there).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # throughput.py, the reference loop
from throughput import data as reference_data  # noqa: E402
from throughput import plain_loop

REPO = Path(__file__).resolve().parents[1]
BATCH = 128


def reference_img_s(steps: int) -> float:
    """The plain loop's training img/s on this machine now (after an untimed 4-batch warm-up)."""
    images, labels = reference_data(steps * BATCH, 28)
    plain_loop("cnn", images[: 4 * BATCH], labels[: 4 * BATCH], 28, BATCH, "32")
    return plain_loop("cnn", images, labels, 28, BATCH, "32")


def train(overrides: list[str], run_dir: Path, curve_raw: Path, test_images: int | None) -> tuple[float, dict]:
    """visionlab.commands.train.run on the composed config with the 10k callback; returns (start time, result.json)."""
    import json

    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from visionlab.commands.resolvers import register_resolvers
    from visionlab.commands.train import run

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"])
    with open_dict(cfg):
        cfg.callbacks = cfg.callbacks or {}
        cfg.callbacks.test_curve = {
            "_target_": "visionlab.training.curve.AccuracyCurve",
            "output": str(curve_raw),
            "images": test_images,
        }
    start = time.time()
    run(cfg)
    return start, json.loads((run_dir / "result.json").read_text())


def curve_table(raw: Path, start: float, ref_img_s: float) -> pd.DataFrame:
    df = pd.read_csv(raw)
    df["train_time_s"] = (df["epoch_end_unix"] - df["excluded_s"] - start).round(2)
    df["reference_mimages"] = (df["train_time_s"] * ref_img_s / 1e6).round(4)
    return df[["epoch", "train_time_s", "reference_mimages", "test_acc"]]


def label(threshold: float) -> str:
    """0.90 as "0.90", 0.935 as "0.935": two decimals unless the threshold has more."""
    return f"{threshold:.2f}" if round(threshold, 2) == threshold else f"{threshold:g}"


def time_to(df: pd.DataFrame, threshold: float):
    reached = df[df["test_acc"] >= threshold]
    return None if reached.empty else reached.iloc[0]


def plot(df: pd.DataFrame, thresholds, ref_img_s: float, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(df["train_time_s"], df["test_acc"], marker="o", ms=3)
    for t in thresholds:
        ax.axhline(t, color="grey", lw=0.7, ls="--")
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel("accuracy, official 10k test split")
    ax.set_title(title, fontsize=9)
    top = ax.secondary_xaxis("top", functions=(lambda s: s * ref_img_s / 1e6, lambda m: m * 1e6 / ref_img_s))
    top.set_xlabel(f"million reference images (reference: {ref_img_s:.0f} img/s)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(overrides: list[str], out: Path, args, ref_before: float) -> tuple[pd.DataFrame, float]:
    """Train one preset into `out` (run/, curve.csv, curve.png), measure the reference again after it,
    print its figures; returns its curve and the reference after it."""
    import torch

    start, result = train(overrides, out / "run", out / "run" / "test_curve_raw.csv", args.test_images)
    # measured again after the run: a machine whose load changed meanwhile shows it here
    after = reference_img_s(args.reference_steps)
    ref = (ref_before + after) / 2
    print(
        f"reference after the run: {after:.0f} img/s; normalised with their mean, {ref:.0f} img/s"
        + (
            f" (WARNING: they differ by {abs(after - ref_before) / ref:.0%}: the machine's load changed; the "
            "normalised figures are approximate)"
            if abs(after - ref_before) > 0.2 * ref
            else ""
        ),
        flush=True,
    )
    df = curve_table(out / "run" / "test_curve_raw.csv", start, ref)
    df.to_csv(out / "curve.csv", index=False)
    title = f"{' '.join(overrides) or 'defaults'}; {torch.get_num_threads()} threads, reference {ref:.0f} img/s"
    plot(df, args.thresholds, ref, title, out / "curve.png")
    print(
        f"preset: {' '.join(overrides) or '(defaults)'}; status {result.get('status')}, "
        f"wall time {result.get('wall_time_s')} s (with the evaluations on "
        f"{'the 10k split' if args.test_images is None else f'{args.test_images} test images'}: {df.shape[0]} of "
        "them, left out below)"
    )
    print(df.to_string(index=False))
    for t in args.thresholds:
        row = time_to(df, t)
        if row is None:
            print(f"time-to-{label(t)}: not reached (best {df['test_acc'].max():.4f} in {len(df)} epochs)")
        else:
            print(
                f"time-to-{label(t)}: {row['train_time_s']:.1f} s = {row['reference_mimages']:.3f} M reference images "
                f"(epoch {int(row['epoch'])}, accuracy {row['test_acc']:.4f})"
            )
    print(f"curve: {out / 'curve.csv'}, {out / 'curve.png'}", flush=True)
    return df, after


def curve_row(name: str, df: pd.DataFrame, thresholds) -> dict:
    """One run's figures: final accuracy, the whole run and time-to-each-threshold (None: not reached)."""
    row = {
        "preset": name,
        "final_acc": float(df["test_acc"].iloc[-1]),
        "run_mref": float(df["reference_mimages"].iloc[-1]),
    }
    for t in thresholds:
        hit = time_to(df, t)
        row[f"to_{label(t)}_s"] = None if hit is None else float(hit["train_time_s"])
        row[f"to_{label(t)}_mref"] = None if hit is None else float(hit["reference_mimages"])
    return row


def median_reached(values: pd.Series) -> float | None:
    """The median of the seeds' times, a seed that never got there counting as slower than all that
    did: None when fewer than half got there."""
    median = values.astype(float).fillna(float("inf")).median()
    return None if median == float("inf") else float(median)


def summarise_seeds(runs: pd.DataFrame, thresholds, path: Path) -> None:
    """seeds.csv: every (preset, seed) run, then per preset its median row (seed "median") with the
    number of seeds that reached each threshold and, for the presets after the first, the ratio of
    the medians to the first preset's."""
    presets = list(dict.fromkeys(runs["preset"]))
    medians = []
    for preset in presets:
        mine = runs[runs["preset"] == preset]
        row = {"preset": preset, "seed": "median", "final_acc": float(mine["final_acc"].median())}
        row["run_mref"] = float(mine["run_mref"].median())
        for t in thresholds:
            col = f"to_{label(t)}_mref"
            row[col] = median_reached(mine[col])
            row[f"to_{label(t)}_reached"] = f"{int(mine[col].notna().sum())}/{len(mine)}"
        medians.append(row)
    for row in medians:
        for t in thresholds:
            base, value = medians[0][f"to_{label(t)}_mref"], row[f"to_{label(t)}_mref"]
            row[f"to_{label(t)}_ratio"] = None if base is None or value is None else round(value / base, 3)
    table = pd.concat([runs, pd.DataFrame(medians)], ignore_index=True)
    table.to_csv(path, index=False)
    print("\nper seed, then the median over seeds (time-to-threshold in M reference images; 'k/n': seeds that")
    print("got there; ratio: the median over the first preset's median):")
    for row in medians:
        finals = ", ".join(f"{a:.4f}" for a in runs[runs["preset"] == row["preset"]]["final_acc"])
        print(f"  {row['preset']}: final accuracy {finals}")
        for t in thresholds:
            value, ratio = row[f"to_{label(t)}_mref"], row[f"to_{label(t)}_ratio"]
            print(
                f"    time-to-{label(t)}: reached by {row[f'to_{label(t)}_reached']} seeds, median "
                + ("not reached" if value is None else f"{value:.3f} M reference images")
                + ("" if ratio is None or row is medians[0] else f" ({ratio:.3f}x the first preset's)")
            )
    print(f"seeds: {path}", flush=True)


def compare(names: list[str], curves: list[pd.DataFrame], thresholds, path: Path) -> None:
    """Each preset's time-to-threshold in reference images, and its ratio to the first preset's. Where
    the first preset never reached a threshold, its whole run bounds the ratio: "<0.540"."""
    rows = [curve_row(name, df, thresholds) for name, df in zip(names, curves)]
    for row in rows:
        for t in thresholds:
            base, mine = rows[0][f"to_{label(t)}_mref"], row[f"to_{label(t)}_mref"]
            if mine is None:
                row[f"to_{label(t)}_ratio"] = None
            elif base is not None:
                row[f"to_{label(t)}_ratio"] = f"{mine / base:.3f}"
            else:  # the first preset did not get there in its whole run
                row[f"to_{label(t)}_ratio"] = f"<{mine / rows[0]['run_mref']:.3f}"
    table = pd.DataFrame(rows)
    table.to_csv(path, index=False)
    print("\ncomparison (ratio: time-to-threshold in reference images / the first preset's; '<r': the first")
    print("preset never got there, r is the ratio to its whole run):")
    print(table.to_string(index=False))
    print(f"comparison: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. experiment=leaderboard")
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="OVERRIDES",
        help="another preset to measure first, in the same process, as one quoted string of overrides "
        "(repeatable), e.g. --against 'experiment=leaderboard trainer.max_epochs=25'; adds comparison.csv",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reference-steps", type=int, default=200, help="steps of the reference loop (batch 128)")
    parser.add_argument(
        "--thresholds",
        type=lambda s: [float(t) for t in s.split(",")],
        default=[0.90, 0.92, 0.93],
        help="accuracies to time, comma-separated (default 0.90,0.92,0.93)",
    )
    parser.add_argument(
        "--seeds",
        type=lambda s: [int(t) for t in s.split(",")],
        default=None,
        help="train every preset once per seed, comma-separated (e.g. 0,1,2), and add seeds.csv",
    )
    parser.add_argument(
        "--test-images",
        type=int,
        default=None,
        metavar="N",
        help="score on the split's first N images only (default: all 10,000); for a quick check that the "
        "benchmark runs (its tests), never for a figure to quote",
    )
    args = parser.parse_args()
    out = args.out or REPO / "outputs" / "benchmarks" / "time_to_accuracy" / datetime.now().strftime(
        "%Y-%m-%d_%H-%M-%S"
    )
    out.mkdir(parents=True, exist_ok=True)

    from visionlab.runs.parallel import apply_threads

    presets = [a.split() for a in args.against] + [args.overrides]
    # the thread count the runs will use (threads= among the overrides, else the cores), for the reference too
    given = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("threads=")), None)
    threads = apply_threads(None if given in (None, "null") else int(given), None)
    ref = reference_img_s(args.reference_steps)
    print(
        f"reference: plain PyTorch loop (BASELINES.md scratch CNN, fp32, batch {BATCH}), {args.reference_steps} "
        f"steps, {threads} threads: {ref:.0f} img/s",
        flush=True,
    )
    if args.seeds:
        rows = []
        for seed in args.seeds:  # presets alternate within each seed: a slow drift in load hits all alike
            for i, preset in enumerate(presets):
                print(f"\n=== seed {seed}, preset {i + 1} of {len(presets)}: {' '.join(preset)}", flush=True)
                folder = out / (f"preset{i + 1}" if len(presets) > 1 else "") / f"seed{seed}"
                df, ref = measure([*preset, f"seed={seed}"], folder, args, ref)
                rows.append(curve_row(" ".join(preset), df, args.thresholds) | {"seed": seed})
        summarise_seeds(pd.DataFrame(rows), args.thresholds, out / "seeds.csv")
        return
    if len(presets) == 1:  # one preset: its run/, curve.csv and curve.png directly in --out
        measure(presets[0], out, args, ref)
        return
    curves = []
    for i, preset in enumerate(presets):
        print(f"\n=== preset {i + 1} of {len(presets)}: {' '.join(preset)}", flush=True)
        df, ref = measure(preset, out / f"preset{i + 1}", args, ref)
        curves.append(df)
    compare([" ".join(p) for p in presets], curves, args.thresholds, out / "comparison.csv")


if __name__ == "__main__":
    main()
