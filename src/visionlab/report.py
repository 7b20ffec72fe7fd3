"""Sweep report: error curves and a results table for one Hydra multirun folder.

    python -m visionlab.report outputs/train/multiruns/<stamp>_<token> [--out DIR]

Reads every run's scalars from its TensorBoard event files (tensorboard's own reader) and its
result.json (status, parameter count, wall time, error). Runs are labelled by the values of the
keys that differ between runs (read from the run folder names, `model.bn=true,seed=0`); `seed` is
replication, so runs differing only in seed form one setting, shown as the mean over seeds with a
min-max band (plots) and mean +- sample std (table).

Writes train_err.png, val_err.png, errors.png, results.csv, results.md and runs.csv, and
confusion_matrix.png: the best run's validation confusion matrix (read back from its events).
Epochs are numbered from 1 everywhere in the report (TensorBoard's step 0 is epoch 1).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from visionlab.errors import InputError
from visionlab.search_report import is_search, write_search_report
from visionlab.sweep import RESULT_FILE, read_result


EVENTS_GLOB = "events.out.tfevents.*"
SEED_KEY = "seed"
TRAIN_TAG, VAL_TAG, TEST_TAG = "train/err", "val/err", "test/err"
ERR_LABEL = "error (1 - accuracy)"
FAILED = "failed"
NOT_PLOTTED = {FAILED}
MISSING = "-"  # value shown for a key a run's name does not mention


class NotASweepDir(InputError):
    """The path given is not a sweep folder (no run folders with event files or result.json)."""


# ----------------------------------------------------------------------------- run names


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets/braces/parentheses and quotes: `a=[1,2],b=3` -> 2 parts."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_run_name(name: str) -> dict[str, str] | None:
    """`model.channels=[32,64],seed=0` -> {'model.channels': '[32,64]', 'seed': '0'}; None when a
    part is not `key=value` (a name that is not made of overrides)."""
    out = {}
    for part in split_top_level(name):
        key, eq, value = part.partition("=")
        key = key.strip().lstrip("+~")
        if not eq or not key or any(c in key for c in "[]{}()'\""):
            return None
        out[key] = value
    return out


def _hydra_overrides(run_dir: Path) -> dict[str, str] | None:
    """The job's overrides from .hydra/overrides.yaml (fallback for names that do not parse)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        items = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:
        return None
    out = {}
    for item in items or []:
        key, eq, value = str(item).partition("=")
        if not eq or key.startswith("hydra"):
            continue
        out[key.lstrip("+~")] = value.lower() if value in ("True", "False") else value
    return out


def _natural_key(value: str):
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def swept_keys(overrides: list[dict[str, str]]) -> list[str]:
    """Keys whose value differs across runs, in the order they first appear; seed excluded."""
    keys: list[str] = []
    for ov in overrides:
        keys += [k for k in ov if k not in keys]
    return [k for k in keys if k != SEED_KEY and len({ov.get(k, MISSING) for ov in overrides}) > 1]


def _short_names(keys: list[str]) -> dict[str, str]:
    """`model.bn` -> `bn` where the last component is unambiguous among the keys."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def setting_labels(names: list[str]) -> tuple[list[str], list[str]]:
    """Labels for run folder names: the values of the swept keys (seed aside). One swept key: its
    value (`true`); several: `bn=true, optimizer=sgd`. Returns (labels, swept keys)."""
    parsed = [parse_run_name(n) for n in names]
    if any(p is None for p in parsed):
        return list(names), []
    return _labels_from(parsed, names)


def _labels_from(parsed: list[dict[str, str]], names: list[str]) -> tuple[list[str], list[str]]:
    keys = swept_keys(parsed)
    if not keys:  # one setting (possibly several seeds): name it by what it is
        common = [f"{k}={v}" for k, v in parsed[0].items() if k != SEED_KEY] if parsed else []
        return [",".join(common) or "all runs"] * len(names), []
    if len(keys) == 1:
        return [p.get(keys[0], MISSING) for p in parsed], keys
    short = _short_names(keys)
    return [", ".join(f"{short[k]}={p.get(k, MISSING)}" for k in keys) for p in parsed], keys


# ----------------------------------------------------------------------------- reading runs


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / RESULT_FILE).is_file() or any(path.glob(EVENTS_GLOB)))


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in Path(sweep_dir).iterdir() if not p.name.startswith(".") and is_run_dir(p))


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run's event files: tag -> [(step, value)], one value per step (the
    latest written, so a resumed run's repeated epochs count once), sorted by step."""
    if not any(Path(run_dir).glob(EVENTS_GLOB)):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        by_step = {}
        for ev in sorted(acc.Scalars(tag), key=lambda e: e.wall_time):
            by_step[int(ev.step)] = float(ev.value)
        out[tag] = sorted(by_step.items())
    return out


def _history_series(result: dict, tag: str) -> list[tuple[int, float]]:
    out = []
    for i, h in enumerate(result.get("history") or []):
        if isinstance(h, dict) and h.get(tag) is not None:
            out.append((int(h.get("epoch", i)), float(h[tag])))
    return out


def _seed_of(run_dir: Path, overrides: dict[str, str] | None):
    if overrides and SEED_KEY in overrides:
        return overrides[SEED_KEY]
    path = run_dir / ".hydra" / "config.yaml"
    if path.is_file():
        try:
            from omegaconf import OmegaConf

            return OmegaConf.load(path).get(SEED_KEY)
        except Exception:
            return None
    return None


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(series):
    return [(s, v) for s, v in series if math.isfinite(v)]


def load_run(run_dir: Path) -> dict:
    """One run: its scalars (events, else result.json's history), status and per-run metrics.
    Series are [(epoch, value)] with epochs numbered from 1."""
    result = read_result(run_dir)
    scalars = read_scalars(run_dir)
    series = {}
    for tag in (TRAIN_TAG, VAL_TAG):
        raw = scalars.get(tag) or _history_series(result, tag)
        series[tag] = [(step + 1, v) for step, v in raw]
    train, val = _finite(series[TRAIN_TAG]), _finite(series[VAL_TAG])
    run = {"run": run_dir.name, "run_dir": str(run_dir), "status": result.get("status") or "unknown",
           "series": series, "source": "events" if scalars else ("result.json" if result else "none")}
    if val:
        best_epoch, best = min(val, key=lambda sv: (sv[1], sv[0]))
        run.update(best_val_err=best, best_epoch=best_epoch, final_val_err=val[-1][1])
    else:
        run.update(best_val_err=math.nan, best_epoch=math.nan, final_val_err=math.nan)
    run["final_train_err"] = train[-1][1] if train else math.nan
    common = sorted(set(dict(train)) & set(dict(val)))
    run["gen_gap"] = dict(val)[common[-1]] - dict(train)[common[-1]] if common else math.nan
    test = _finite(scalars.get(TEST_TAG, []))
    run["test_err"] = test[-1][1] if test else _num(result.get("test_err"))
    run["epochs"] = len(series[TRAIN_TAG]) or _num(result.get("epochs"))
    run["params"] = _num(result.get("params"))
    run["wall_time_s"] = _num(result.get("wall_time_s"))
    run["error"] = result.get("error") or ""
    return run


def load_sweep(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    """All runs of a sweep, labelled by setting. Raises NotASweepDir."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NotASweepDir(f"{sweep_dir}: not a directory. Expected a sweep folder "
                           "(outputs/train/multiruns/<stamp>_<token>) holding one folder per run.")
    run_dirs = find_run_dirs(sweep_dir)
    if not run_dirs:
        raise NotASweepDir(_not_a_sweep_message(sweep_dir))
    runs = [load_run(d) for d in run_dirs]
    parsed = [parse_run_name(d.name) for d in run_dirs]
    if any(p is None for p in parsed):  # names that are not overrides: try Hydra's record of them
        parsed = [_hydra_overrides(d) for d in run_dirs]
    if any(p is None for p in parsed):
        labels, keys = [d.name for d in run_dirs], []
        parsed = [{} for _ in run_dirs]
    else:
        labels, keys = _labels_from(parsed, [d.name for d in run_dirs])
    for run, label, ov, d in zip(runs, labels, parsed, run_dirs):
        run["setting"] = label
        run["overrides"] = ov
        run["seed"] = _seed_of(d, ov)
    return runs, keys


def _not_a_sweep_message(path: Path) -> str:
    msg = (f"{path} is not a sweep folder: expected run folders (one per job, named by its swept "
           f"overrides, e.g. 'model.bn=true/') holding TensorBoard event files or {RESULT_FILE}.")
    if any(path.glob(EVENTS_GLOB)) or (path / RESULT_FILE).is_file():
        msg += f"\n  {path} looks like a single run; pass the sweep folder that contains it."
    else:
        nested = [p for p in sorted(path.iterdir()) if p.is_dir() and find_run_dirs(p)][:5]
        if nested:
            msg += "\n  It contains sweep folders; pass one of them, e.g.\n    " + "\n    ".join(map(str, nested))
    return msg


# ----------------------------------------------------------------------------- tables


def _stat(values, fn):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan
    if fn == "std":
        return float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
    return float(getattr(np, fn)(vals))


STATUS_ORDER = ("completed", "diverged", "interrupted", FAILED)


def _status_summary(statuses: list[str]) -> str:
    """`completed`, or counts when mixed: `completed 1, diverged 1`."""
    order = list(STATUS_ORDER) + sorted(set(statuses) - set(STATUS_ORDER))
    counts = [(s, statuses.count(s)) for s in order if s in statuses]
    if len(counts) == 1:
        return counts[0][0]
    return ", ".join(f"{s} {n}" for s, n in counts)


def settings_table(runs: list[dict], keys: list[str]) -> pd.DataFrame:
    """One row per setting, sorted by mean best val err (settings without one last). Failed runs
    count in n_runs and status, not in the metrics."""
    rows = []
    for label in sorted({r["setting"] for r in runs}, key=_label_key(runs)):
        group = [r for r in runs if r["setting"] == label]
        used = [r for r in group if r["status"] not in NOT_PLOTTED]
        best = [r["best_val_err"] for r in used if math.isfinite(r["best_val_err"])]
        row = {"setting": label}
        row.update({k: group[0]["overrides"].get(k, MISSING) for k in keys})
        row.update({
            "n_runs": len(group), "n_seeds": len(best),
            "best_val_err_mean": _stat(best, "mean"), "best_val_err_std": _stat(best, "std"),
            "best_val_err_min": _stat(best, "min"), "best_val_err_max": _stat(best, "max"),
        })
        for col in ("best_epoch",):
            vals = [r[col] for r in used]
            row.update({f"{col}_mean": _stat(vals, "mean"), f"{col}_min": _stat(vals, "min"),
                        f"{col}_max": _stat(vals, "max")})
        for col in ("final_train_err", "final_val_err", "gen_gap", "test_err"):
            vals = [r[col] for r in used]
            row.update({f"{col}_mean": _stat(vals, "mean"), f"{col}_std": _stat(vals, "std")})
        row["params"] = _stat([r["params"] for r in group], "mean")
        row["wall_time_s_mean"] = _stat([r["wall_time_s"] for r in group], "mean")
        row["status"] = _status_summary([r["status"] for r in group])
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values("best_val_err_mean", kind="stable", na_position="last").reset_index(drop=True)


def runs_table(runs: list[dict], keys: list[str]) -> pd.DataFrame:
    cols = ["status", "best_val_err", "best_epoch", "final_train_err", "final_val_err", "gen_gap",
            "test_err", "epochs", "params", "wall_time_s", "error", "source", "run_dir"]
    rows = []
    for r in sorted(runs, key=lambda r: (_label_key(runs)(r["setting"]), _natural_key(str(r["seed"])))):
        row = {"run": r["run"], "setting": r["setting"], "seed": r["seed"]}
        row.update({k: r["overrides"].get(k, MISSING) for k in keys})
        row.update({c: r[c] for c in cols})
        rows.append(row)
    return pd.DataFrame(rows)


def _label_key(runs: list[dict]):
    """Sort settings by their swept values, numbers numerically (lr 0.001 < 0.01 < 0.1)."""
    by_label = {r["setting"]: r["overrides"] for r in runs}

    def key(label):
        ov = by_label.get(label) or {}
        return tuple(_natural_key(v) for k, v in ov.items() if k != SEED_KEY), label
    return key


def _real(v) -> float:
    """A table cell as a float; NaN for a missing value (None, NaN, or pandas' NA of an Int64
    column: a failed run has no parameter count, and math.isfinite(pd.NA) raises)."""
    return math.nan if v is None or pd.isna(v) else float(v)


def _fmt(v, digits=4) -> str:
    v = _real(v)
    return "" if not math.isfinite(v) else f"{v:.{digits}f}"


def _pm(mean, std, digits=4) -> str:
    mean, std = _real(mean), _real(std)
    if not math.isfinite(mean):
        return ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def _epoch_range(lo, hi) -> str:
    lo, hi = _real(lo), _real(hi)
    if not math.isfinite(lo):
        return ""
    return f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}"


def _md_escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, keys: list[str]) -> str:
    first = keys or ["setting"]
    header = first + ["best val err", "n seeds", "best epoch", "final train err", "gap (val − train)",
                      "params", "wall time (s)", "status"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * len(first) + ["---:"] * 7 + ["---"]) + "|"]
    for _, r in df.iterrows():
        cells = [_md_escape(r[k]) for k in first] + [
            _pm(r["best_val_err_mean"], r["best_val_err_std"]),
            f"{r['n_seeds']}" + (f"/{r['n_runs']}" if r["n_runs"] != r["n_seeds"] else ""),
            _epoch_range(r["best_epoch_min"], r["best_epoch_max"]),
            _pm(r["final_train_err_mean"], r["final_train_err_std"]),
            _pm(r["gen_gap_mean"], r["gen_gap_std"]),
            "" if not math.isfinite(_real(r["params"])) else f"{_real(r['params']):,.0f}",
            _fmt(r["wall_time_s_mean"], 1),
            _md_escape(r["status"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(sweep_dir: Path, df: pd.DataFrame, runs: list[dict], keys: list[str]) -> str:
    seeds = sorted({str(r["seed"]) for r in runs if r["seed"] is not None}, key=_natural_key)
    out = [f"# Sweep report: {Path(sweep_dir).name}", "",
           f"{len(runs)} runs, {len(df)} settings"
           + (f", swept: {', '.join(keys)}" if keys else "")
           + (f", seeds: {', '.join(seeds)}" if len(seeds) > 1 else "") + ".", "",
           markdown_table(df, keys), "",
           "Best val err: mean ± sample std over seeds (min/max in results.csv); n seeds: runs with a "
           "validation error (of all runs where they differ). Best epoch: range over seeds, epochs "
           "counted from 1. Gap: final val err − final train err. Wall time: mean per run. "
           "Failed runs count in status only."]
    failed = [r for r in runs if r["status"] == FAILED]
    if failed:
        out += ["", "## Failed runs", ""] + [f"- `{r['run']}`: {_md_escape(r['error']) or 'no error recorded'}"
                                             for r in failed]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- plots


def colour_map(labels: list[str]) -> dict[str, tuple]:
    """One fixed colour per setting (by sorted label position), shared by every figure."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    if len(labels) > 20:
        return {lab: colormaps["viridis"](i / max(1, len(labels) - 1)) for i, lab in enumerate(labels)}
    return {lab: cmap(i) for i, lab in enumerate(labels)}


def curve_stats(runs: list[dict], tag: str):
    """Per-epoch mean, min and max over the runs that have a finite value at that epoch."""
    by_epoch: dict[int, list[float]] = {}
    for r in runs:
        for e, v in _finite(r["series"][tag]):
            by_epoch.setdefault(e, []).append(v)
    epochs = np.array(sorted(by_epoch))
    vals = [by_epoch[e] for e in epochs]
    return (epochs, np.array([np.mean(v) for v in vals]), np.array([min(v) for v in vals]),
            np.array([max(v) for v in vals]))


def _epoch_ticks(ax, max_epoch: int) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    max_epoch = max(1, int(max_epoch))
    if max_epoch <= 15:
        ticks = list(range(1, max_epoch + 1))
    else:
        step = next(s for s in (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9) if max_epoch / s <= 12)
        ticks = [1] + list(range(step, max_epoch + 1, step))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    pad = 0.25 if max_epoch <= 15 else max_epoch * 0.02
    ax.set_xlim(1 - pad, max_epoch + pad)


class SweepPlotter:
    def __init__(self, runs: list[dict], keys: list[str]):
        self.keys = keys
        order = sorted({r["setting"] for r in runs}, key=_label_key(runs))
        self.colours = colour_map(order)  # all settings, failed ones too: stable colours
        self.groups = []
        for label in order:
            group = [r for r in runs if r["setting"] == label and r["status"] not in NOT_PLOTTED]
            group = [r for r in group if _finite(r["series"][TRAIN_TAG]) or _finite(r["series"][VAL_TAG])]
            if group:
                self.groups.append((label, group))
        self.n_seeds = max((len(g) for _, g in self.groups), default=0)
        self.max_epoch = max((e for _, g in self.groups for r in g for tag in (TRAIN_TAG, VAL_TAG)
                              for e, _ in _finite(r["series"][tag])), default=1)
        self.markers = self.max_epoch <= 30

    @property
    def knob(self) -> str:
        return ", ".join(self.keys) if self.keys else ""

    def legend_label(self, label: str, group: list[dict]) -> str:
        diverged = sum(r["status"] == "diverged" for r in group)
        if diverged:
            label += " (diverged)" if diverged == len(group) else f" (diverged {diverged}/{len(group)})"
        return label

    def subtitle(self, band=True) -> str:
        if self.n_seeds < 2:
            return ""
        sizes = {len(g) for _, g in self.groups}
        seeds = f"{self.n_seeds} seeds" if len(sizes) == 1 else f"up to {self.n_seeds} seeds"
        return f"mean over {seeds}" + (", shaded: min–max" if band else "")

    def figure(self, width=7.5, height=4.8):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
        return fig, fig.add_subplot()

    def draw(self, ax, tag: str, label_lines=True, linestyle="-", band=True):
        for label, group in self.groups:
            epochs, mean, lo, hi = curve_stats(group, tag)
            if not len(epochs):
                continue
            colour = self.colours[label]
            ax.plot(epochs, mean, linestyle=linestyle, color=colour, lw=2,
                    marker="o" if self.markers else None, ms=4,
                    label=self.legend_label(label, group) if label_lines else None)
            if band and len(group) > 1:
                ax.fill_between(epochs, lo, hi, color=colour, alpha=0.18, lw=0)
            for r in group:  # mark where a diverged run stops
                pts = _finite(r["series"][tag])
                if r["status"] == "diverged" and pts:
                    ax.plot(*pts[-1], marker="X", ms=10, color=colour, mec="black", mew=0.8, ls="none")

    def finish(self, ax, title: str, legend=True, band=True):
        sub = self.subtitle(band)
        ax.set_title(title + (f"\n{sub}" if sub else ""), fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ERR_LABEL)
        ax.grid(alpha=0.3)
        _epoch_ticks(ax, self.max_epoch)
        if not self.groups:
            ax.text(0.5, 0.5, "no runs with data to plot", ha="center", va="center", transform=ax.transAxes)
        elif legend:
            self._legend(ax)

    def _legend(self, ax, extra: list | None = None):
        """One legend below the axes, never over the curves or their labels; `extra` handles (the
        train/validation line styles) follow the settings."""
        handles, labels = ax.get_legend_handles_labels()
        if any(r["status"] == "diverged" for _, g in self.groups for r in g):
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], marker="X", ms=9, color="0.5", mec="black", mew=0.8, ls="none"))
            labels.append("diverged: last value")
        for h in extra or []:
            handles.append(h)
            labels.append(h.get_label())
        ncol = max(1, min(len(handles), 4 if max(map(len, labels), default=0) < 24 else 2))
        return ax.figure.legend(handles, labels, loc="outside lower center", ncol=ncol, title=self.knob or None,
                                fontsize=9, title_fontsize=9, frameon=False)

    def title(self, what: str) -> str:
        return f"{what} by {self.knob}" if self.knob else what

    def legend_height(self) -> float:
        """Inches to add below the plot for the legend's rows (up to 4 entries a row)."""
        return 0.5 + 0.22 * math.ceil((len(self.groups) + 3) / 4) if self.groups else 0.0

    def single(self, tag: str, what: str, path: Path) -> Path:
        fig, ax = self.figure(height=4.8 + self.legend_height())
        self.draw(ax, tag)
        self.finish(ax, self.title(what))
        fig.savefig(path)
        return path

    def combined(self, path: Path) -> Path:
        fig = self.combined_figure()
        fig.savefig(path)
        return path

    def combined_figure(self):
        from matplotlib.lines import Line2D

        fig, ax = self.figure(8.5, 5.2 + self.legend_height())
        self.draw(ax, TRAIN_TAG, linestyle="-", band=False)
        self.draw(ax, VAL_TAG, label_lines=False, linestyle="--", band=False)
        self.finish(ax, self.title("Train (solid) and validation (dashed) error"), legend=False, band=False)
        if self.groups:
            self._legend(ax, extra=[Line2D([], [], color="0.3", lw=2, ls="-", label="train"),
                                    Line2D([], [], color="0.3", lw=2, ls="--", label="validation")])
        return fig


def write_plots(runs: list[dict], keys: list[str], out_dir: Path) -> dict[str, Path]:
    p = SweepPlotter(runs, keys)
    return {
        "train_err": p.single(TRAIN_TAG, "Training error", out_dir / "train_err.png"),
        "val_err": p.single(VAL_TAG, "Validation error", out_dir / "val_err.png"),
        "errors": p.combined(out_dir / "errors.png"),
    }


# ----------------------------------------------------------------------------- the best run's confusion matrix

CONFUSION_TAG = "images/confusion_matrix_val"  # logged by visionlab.interpret.Interpretation


def best_run(runs: list[dict]) -> dict | None:
    """The completed run with the lowest best val err (None when no run has one)."""
    done = [r for r in runs if r["status"] == "completed" and math.isfinite(r["best_val_err"])]
    return min(done, key=lambda r: (r["best_val_err"], r["run"])) if done else None


def read_image(run_dir: Path, tag: str) -> bytes | None:
    """The latest PNG a run logged under `tag`, as written (None when it logged none)."""
    if not any(Path(run_dir).glob(EVENTS_GLOB)):
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 1, "tensors": 1})
    acc.Reload()
    if tag not in acc.Tags().get("images", []):
        return None
    return acc.Images(tag)[-1].encoded_image_string


def write_confusion(runs: list[dict], out: Path) -> tuple[Path, dict] | None:
    """The best run's validation confusion matrix (best.ckpt's weights), read back from its events."""
    best = best_run(runs)
    png = read_image(Path(best["run_dir"]), CONFUSION_TAG) if best else None
    if png is None:
        return None
    path = out / "confusion_matrix.png"
    path.write_bytes(png)
    return path, best


# ----------------------------------------------------------------------------- entry points


def build_report(sweep_dir, out_dir=None) -> dict[str, Path]:
    """Write plots and tables for a sweep; returns {name: path}. Raises NotASweepDir."""
    sweep_dir = Path(sweep_dir)
    runs, keys = load_sweep(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_table(runs, keys)
    per_run = runs_table(runs, keys)
    for df, cols in ((settings, ("params",)), (per_run, ("params", "best_epoch", "epochs"))):
        for col in cols:
            df[col] = pd.to_numeric(df[col]).round().astype("Int64")
    md = markdown_report(sweep_dir, settings, runs, keys)  # before any file is written: no half a report
    paths = write_plots(runs, keys, out)
    paths["results_csv"] = out / "results.csv"
    settings.to_csv(paths["results_csv"], index=False)
    md = markdown_report(sweep_dir, settings, runs, keys)
    confusion = write_confusion(runs, out)
    if confusion:
        paths["confusion_matrix"], best = confusion
        md += (f"\n## Confusion matrix of the best run\n\n`{best['run']}` (best val err "
               f"{_fmt(best['best_val_err'])}), validation images, best checkpoint:\n\n![](confusion_matrix.png)\n")
    paths["results_md"] = out / "results.md"
    paths["results_md"].write_text(md, encoding="utf-8")
    paths["runs_csv"] = out / "runs.csv"
    per_run.to_csv(paths["runs_csv"], index=False)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m visionlab.report",
        description="Error curves and a results table for a sweep folder (outputs/train/multiruns/...).")
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder, holding one folder per run")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    args = parser.parse_args(argv)
    try:
        paths = build_report(args.sweep_dir, args.out)
    except NotASweepDir as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    search_lines = []
    if is_search(args.sweep_dir):  # experiment=search: optimisation history and best parameters too
        search_paths, search_lines = write_search_report(args.sweep_dir, args.out)
        paths = {**paths, **search_paths}
    print("Wrote:")
    for path in paths.values():
        print(f"  {path}")
    md = paths["results_md"].read_text(encoding="utf-8")
    table = "\n".join(line for line in md.splitlines() if line.startswith("|"))
    print(f"\n{table}")
    if search_lines:
        print("\n" + "\n".join(search_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
