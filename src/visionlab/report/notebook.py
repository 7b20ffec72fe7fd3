"""The notebooks' sweeps: run an ablation preset's sweep (or re-use a finished one) and show it.

report.ipynb and theory.ipynb both use one AblationSweeps, so they run and re-use a sweep in
exactly the same way: the same folder (outputs/report/<name>), whichever notebook runs first. The
notebook kernel reads its settings from the environment, because that is what reaches a kernel
started by notebooks/run.py (its flags set these variables) or by Jupyter:

    VISIONLAB_SMOKE=1        every sweep tiny (64 images, 5 % validation, 1 epoch, seed 0) into a
                             temporary folder, never touching outputs/report
    VISIONLAB_RERUN=1        run every sweep again instead of re-using it
    VISIONLAB_REPORT_DIR=D   the sweeps' folder (default outputs/report; the tests use it)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from visionlab.config.groups import PROJECT_DIR
from visionlab.report.findings import DONE, facts_lines, per_seed_markdown, per_seed_table, scored_settings, summary_row
from visionlab.report.runs import split_top_level

SEEDS = (0, 1, 2, 3)  # the real sweeps' seeds: four, so that a difference can be weighed against their spread
SMOKE_SEEDS = (0,)
SMOKE_OVERRIDES = ("data.subset=64", "data.val_fraction=0.05", "trainer.max_epochs=1")


def env_flag(name: str, environ=None) -> bool:
    """True when the variable is set to anything but empty, 0, false or no.

    Args:
        name: the variable.
        environ: where to look (default os.environ).
    """
    value = (environ if environ is not None else os.environ).get(name, "")
    return value.strip().lower() not in ("", "0", "false", "no")


def find_repo(start: Path | None = None) -> Path:
    """The checkout: the first folder up from `start` holding train.py and the ablation presets;
    else the installed package's project folder. (A notebook's working directory is wherever
    Jupyter or the runner started its kernel.)

    Args:
        start: where to look from (default the working directory).
    """
    start = Path(start) if start is not None else Path.cwd()
    for d in (start, *start.parents):
        if (d / "train.py").is_file() and (d / "conf" / "experiment" / "ablation").is_dir():
            return d
    return PROJECT_DIR


def _display(obj) -> None:
    from IPython.display import display  # only inside a notebook kernel: not a dependency of the package

    display(obj)


CONFUSION_LINK = "![](confusion_matrix.png)"  # results.md's picture, beside it in the sweep folder


@dataclass
class AblationSweeps:
    """The ablation sweeps of one notebook session.

    Args:
        repo: the checkout (train.py runs there; the presets are read from its conf/).
        report_dir: one folder per sweep, <report_dir>/<name>.
        smoke: tiny sweeps (SMOKE_OVERRIDES, seed 0 only).
        rerun: run every sweep again instead of re-using a finished one.
    """

    repo: Path
    report_dir: Path
    smoke: bool = False
    rerun: bool = False
    sweep_seconds: dict[str, float] = field(default_factory=dict)  # wall time of the sweeps run in this session

    @classmethod
    def from_env(cls, environ=None, cwd: Path | None = None) -> AblationSweeps:
        """The session the environment asks for (module docstring); a smoke session without
        VISIONLAB_REPORT_DIR gets a new temporary folder.

        Args:
            environ: the variables (default os.environ).
            cwd: where to look for the checkout from (default the working directory).
        """
        environ = environ if environ is not None else os.environ
        repo = find_repo(cwd)
        smoke = env_flag("VISIONLAB_SMOKE", environ)
        if environ.get("VISIONLAB_REPORT_DIR"):
            report_dir = Path(environ["VISIONLAB_REPORT_DIR"]).expanduser().resolve()
        elif smoke:
            report_dir = Path(tempfile.mkdtemp(prefix="visionlab-smoke-"))
        else:
            report_dir = repo / "outputs" / "report"
        return cls(repo=repo, report_dir=report_dir, smoke=smoke, rerun=env_flag("VISIONLAB_RERUN", environ))

    @property
    def seeds(self) -> tuple[int, ...]:
        return SMOKE_SEEDS if self.smoke else SEEDS

    def describe(self) -> str:
        """Where the sweeps go and how they run, for the notebook's setup cell."""
        return "\n".join(
            [
                f"repository: {self.repo}",
                f"sweeps in:  {self.report_dir}" + ("  (smoke mode: temporary folder)" if self.smoke else ""),
                f"seeds: {list(self.seeds)}"
                + (f"; smoke overrides: {' '.join(SMOKE_OVERRIDES)}" if self.smoke else "")
                + ("; VISIONLAB_RERUN=1: every sweep runs again" if self.rerun else ""),
            ]
        )

    def shown_path(self, path: Path) -> str:
        """`path` relative to the checkout where it is inside it (shorter commands and messages)."""
        try:
            return str(Path(path).relative_to(self.repo))
        except ValueError:
            return str(path)

    def sweep_dir(self, name: str) -> Path:
        return self.report_dir / name

    def sweep_args(self, name: str) -> list[str]:
        """train.py's arguments for the ablation `name` (conf/experiment/ablation/<name>.yaml)."""
        args = [
            "-m",
            f"experiment=ablation/{name}",
            f"hydra.sweep.dir={self.shown_path(self.sweep_dir(name))}",
            "seed=" + ",".join(str(s) for s in self.seeds),
        ]
        return args + (list(SMOKE_OVERRIDES) if self.smoke else [])

    def sweep_command(self, name: str) -> str:
        return "python train.py " + " ".join(self.sweep_args(name))

    def preset_grid(self, name: str) -> dict[str, list[str]]:
        """The preset's swept keys and their values (its hydra.sweeper.params), as typed."""
        cfg = OmegaConf.load(self.repo / "conf" / "experiment" / "ablation" / f"{name}.yaml")
        return {str(k): [v.strip() for v in split_top_level(str(v))] for k, v in cfg.hydra.sweeper.params.items()}

    def expected_runs(self, name: str) -> int:
        """The number of runs of a complete sweep: the preset's grid times the seeds."""
        n = len(self.seeds)
        for values in self.preset_grid(name).values():
            n *= len(values)
        return n

    def why_not_reusable(self, name: str) -> str | None:
        """None when the sweep folder holds a finished sweep of the expected size, else the reason."""
        summary = self.sweep_dir(name) / "summary.csv"
        if not summary.is_file():
            return f"no {self.shown_path(summary)}"
        df = pd.read_csv(summary)
        if len(df) != self.expected_runs(name):
            return f"summary.csv lists {len(df)} runs, expected {self.expected_runs(name)}"
        unfinished = df[~df["status"].isin(DONE)]
        if len(unfinished):
            return f"{len(unfinished)} run(s) neither completed nor diverged: " + ", ".join(
                unfinished["run"].astype(str)
            )
        return None

    def run_sweep(self, name: str) -> pd.DataFrame:
        """Run the ablation sweep (or re-use a finished one); returns its summary.csv.

        Raises:
            RuntimeError: the sweep failed (with the end of its log).
        """
        out = self.sweep_dir(name)
        why = "VISIONLAB_RERUN=1" if self.rerun else self.why_not_reusable(name)
        if why is None:
            df = pd.read_csv(out / "summary.csv")
            print(
                f"Re-using the finished sweep in {self.shown_path(out)}: {len(df)} runs, "
                f"{(df['status'] == 'completed').sum()} completed, {(df['status'] == 'diverged').sum()} diverged; "
                f"{df['wall_time_s'].sum() / 60:.1f} min of training in all.  (VISIONLAB_RERUN=1 runs it again.)"
            )
            return df
        if out.exists():  # a partial or stale sweep: start clean
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        log = out.parent / f"{name}.log"
        print(f"Running ({why}): {self.sweep_command(name)}\n  log: {self.shown_path(log)}", flush=True)
        start = time.perf_counter()
        with open(log, "w", encoding="utf-8") as fh:
            proc = subprocess.run(
                [sys.executable, "train.py", *self.sweep_args(name)],
                cwd=self.repo,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        self.sweep_seconds[name] = time.perf_counter() - start
        text = log.read_text(encoding="utf-8", errors="replace")
        if proc.returncode != 0 or not (out / "summary.csv").is_file():
            raise RuntimeError(f"the sweep exited with {proc.returncode}; the end of {log}:\n{text[-4000:]}")
        print(f"Finished in {self.sweep_seconds[name] / 60:.1f} min.")
        tail = text[text.rfind("Sweep summary") :]
        print(tail.split("Plots and a results table")[0].rstrip())
        return pd.read_csv(out / "summary.csv")

    def show_figures(self, name: str, *figures: str) -> dict[str, Path]:
        """build_report on the sweep folder, then display (and so embed) its figures.

        Args:
            name: the ablation.
            figures: build_report's figure names (default val_err and errors).
        """
        from IPython.display import Image

        from visionlab.report import build_report

        paths = build_report(self.sweep_dir(name))
        for fig in figures or ("val_err", "errors"):
            _display(Image(filename=str(paths[fig])))
        return paths

    def table_markdown(self, name: str) -> str:
        """results.md without its title line (it names the folder) and without its link to
        confusion_matrix.png: a link into the sweep folder is a broken image in the stored notebook."""
        md = (self.sweep_dir(name) / "results.md").read_text(encoding="utf-8")
        md = md.split("\n", 1)[1].strip() if md.startswith("# ") else md
        return "\n".join(line for line in md.splitlines() if line.strip() != CONFUSION_LINK).strip()

    def show_table(self, name: str) -> None:
        """The results table, then the best run's confusion matrix embedded as PNG (where there is one)."""
        from IPython.display import Image, Markdown

        _display(Markdown(self.table_markdown(name)))
        confusion = self.sweep_dir(name) / "confusion_matrix.png"
        if confusion.is_file():
            _display(Image(data=confusion.read_bytes(), format="png"))

    def read_results(self, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """results.csv (one row per setting, best first) and runs.csv (one row per run)."""
        settings = pd.read_csv(self.sweep_dir(name) / "results.csv", dtype={"setting": str})
        runs = pd.read_csv(self.sweep_dir(name) / "runs.csv", dtype={"setting": str, "run": str})
        return settings, runs

    def facts(self, name: str, written_for: str | None = None) -> None:
        """Print findings.facts_lines for the sweep (see there)."""
        print("\n".join(facts_lines(*self.read_results(name), smoke=self.smoke, written_for=written_for)))

    def seeds_markdown(self, name: str) -> str:
        """The per-seed table of the sweep (findings.per_seed_table) as Markdown, with how to read it."""
        settings, runs = self.read_results(name)
        scored = scored_settings(settings)
        if scored.empty:
            return "No setting has a validation error."
        best = str(scored.iloc[0]["setting"])
        return (
            per_seed_markdown(per_seed_table(settings, runs), best) + "\n\n"
            "Best val err of every run, by seed. The same seed means the same validation split, training "
            f"subset and batch order, so settings compare seed by seed: vs {best} is the difference to "
            "the best setting in the same seed (in points: 0.01 = 1 point); rank 1 is the lowest error of "
            "that seed."
        )

    def show_seeds(self, name: str) -> None:
        from IPython.display import Markdown

        _display(Markdown(self.seeds_markdown(name)))

    def summary(self, names) -> pd.DataFrame:
        """One row per sweep (findings.summary_row), indexed by the ablation's name."""
        return pd.DataFrame([summary_row(n, *self.read_results(n)) for n in names]).set_index("ablation")

    def summary_lines(self, names, table: pd.DataFrame) -> list[str]:
        """The totals under the summary table: runs, training time, sweeps run in this session."""
        lines = [
            f"{len(table)} sweeps, {sum(len(self.read_results(n)[1]) for n in names)} runs, "
            f"{table['training time (min)'].sum():.0f} min of training in all (sum of the runs' wall times)"
        ]
        if self.sweep_seconds:
            lines.append(
                f"sweeps run in this session: {', '.join(self.sweep_seconds)} "
                f"({sum(self.sweep_seconds.values()) / 60:.1f} min wall time)"
            )
        return lines
