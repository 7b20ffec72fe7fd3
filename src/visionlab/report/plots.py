"""The report's pictures: error curves per setting (mean over seeds, min-max band) and the best run's
validation confusion matrix, read back from its TensorBoard events."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from visionlab.report.runs import EVENTS_GLOB, FAILED, TRAIN_TAG, VAL_TAG, finite, setting_order

ERR_LABEL = "error (1 - accuracy)"
NOT_PLOTTED = {FAILED}


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
        for e, v in finite(r["series"][tag]):
            by_epoch.setdefault(e, []).append(v)
    epochs = np.array(sorted(by_epoch))
    vals = [by_epoch[e] for e in epochs]
    return (
        epochs,
        np.array([np.mean(v) for v in vals]),
        np.array([min(v) for v in vals]),
        np.array([max(v) for v in vals]),
    )


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
        order = setting_order(runs)
        self.colours = colour_map(order)  # all settings, failed ones too: stable colours
        self.groups = []
        for label in order:
            group = [r for r in runs if r["setting"] == label and r["status"] not in NOT_PLOTTED]
            group = [r for r in group if finite(r["series"][TRAIN_TAG]) or finite(r["series"][VAL_TAG])]
            if group:
                self.groups.append((label, group))
        self.n_seeds = max((len(g) for _, g in self.groups), default=0)
        self.max_epoch = max(
            (e for _, g in self.groups for r in g for tag in (TRAIN_TAG, VAL_TAG) for e, _ in finite(r["series"][tag])),
            default=1,
        )
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
            ax.plot(
                epochs,
                mean,
                linestyle=linestyle,
                color=colour,
                lw=2,
                marker="o" if self.markers else None,
                ms=4,
                label=self.legend_label(label, group) if label_lines else None,
            )
            if band and len(group) > 1:
                ax.fill_between(epochs, lo, hi, color=colour, alpha=0.18, lw=0)
            for r in group:  # mark where a diverged run stops
                pts = finite(r["series"][tag])
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
        return ax.figure.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=ncol,
            title=self.knob or None,
            fontsize=9,
            title_fontsize=9,
            frameon=False,
        )

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
            self._legend(
                ax,
                extra=[
                    Line2D([], [], color="0.3", lw=2, ls="-", label="train"),
                    Line2D([], [], color="0.3", lw=2, ls="--", label="validation"),
                ],
            )
        return fig


def write_plots(runs: list[dict], keys: list[str], out_dir: Path) -> dict[str, Path]:
    p = SweepPlotter(runs, keys)
    return {
        "train_err": p.single(TRAIN_TAG, "Training error", out_dir / "train_err.png"),
        "val_err": p.single(VAL_TAG, "Validation error", out_dir / "val_err.png"),
        "errors": p.combined(out_dir / "errors.png"),
    }


# ----------------------------------------------------------------------------- the best run's confusion matrix

CONFUSION_TAG = "images/confusion_matrix_val"  # logged by visionlab.training.interpret.Interpretation


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
