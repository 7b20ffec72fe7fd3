"""Execute the notebooks and save them with their outputs.

    python notebooks/run.py report             # notebooks/report.ipynb: the nine ablation sweeps, run or re-used
    python notebooks/run.py theory             # notebooks/theory.ipynb
    python notebooks/run.py all --smoke        # both, every sweep tiny; written to a temporary folder
    python notebooks/run.py all --rerun        # run every sweep again instead of re-using it

notebooks/<name>.py (a jupytext percent script) is the notebook: its cells are what runs. They are
combined with notebooks/<name>.ipynb (jupytext's pairing) only for its cell ids, so a cell keeps its
id from run to run. Executed from the repository root. A sweep is re-used when its folder
(<report dir>/<name>, default outputs/report/<name>) holds a finished sweep of the expected size.

The flags reach the notebook kernel as environment variables, which also work on their own (for a
notebook opened in Jupyter): --smoke is VISIONLAB_SMOKE=1, --rerun VISIONLAB_RERUN=1, --report-dir
VISIONLAB_REPORT_DIR; each flag's default is its variable. --smoke runs every sweep tiny (64 images,
5 % validation, 1 epoch, seed 0) into a temporary folder and writes the executed notebooks to
another one unless --out says where, so that smoke outputs never replace the committed notebooks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from visionlab.report.notebook import env_flag  # how the kernel reads the same variables

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAMES = ("report", "theory")
FORMAT = "py:percent"
FLAG_VARIABLES = ("VISIONLAB_SMOKE", "VISIONLAB_RERUN", "VISIONLAB_REPORT_DIR")  # set from the flags, never inherited


def load(name: str, folder: Path = HERE) -> nbformat.NotebookNode:
    """The notebook `name`: the cells of <folder>/<name>.py, with the cell ids (and, where a cell's
    source is unchanged, the outputs) of the paired <folder>/<name>.ipynb.

    Args:
        name: report or theory.
        folder: where the pair lives.
    """
    nb = jupytext.read(folder / f"{name}.py", fmt=FORMAT)
    paired = folder / f"{name}.ipynb"
    if paired.is_file():
        nb = combine_inputs_with_outputs(nb, nbformat.read(paired, as_version=4), fmt=FORMAT)
    return nb


def execute(nb: nbformat.NotebookNode, env: dict[str, str], timeout: int | None = None) -> None:
    """Run every cell in a fresh python3 kernel started in the repository root with `env`.

    Args:
        nb: the notebook, filled with outputs in place.
        env: the kernel's environment.
        timeout: seconds per cell (None: no limit; a sweep cell may run a whole sweep).

    Raises:
        CellExecutionError: a cell raised (the notebook holds the outputs up to it).
    """
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(REPO)}}
    )
    client.execute(env=env)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python notebooks/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "notebook", nargs="?", default="all", choices=(*NAMES, "all"), help="which notebook to execute (default: all)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        default=env_flag("VISIONLAB_SMOKE"),
        help="every sweep tiny, into a temporary folder (default: VISIONLAB_SMOKE)",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        default=env_flag("VISIONLAB_RERUN"),
        help="run every sweep again instead of re-using it (default: VISIONLAB_RERUN)",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=os.environ.get("VISIONLAB_REPORT_DIR") or None,
        help="the sweeps' folder (default: VISIONLAB_REPORT_DIR, else outputs/report; with --smoke a temporary folder)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the executed notebooks (default: notebooks/, with --smoke a temporary folder)",
    )
    parser.add_argument("--timeout", type=int, default=0, help="seconds per cell (default 0: no limit)")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[list[str], Path, dict[str, str]]:
    """What to run, where the executed notebooks go and the kernel's environment.

    A smoke run gets temporary folders for what the flags leave unsaid, one for the sweeps of all
    its notebooks (theory.ipynb then re-uses report.ipynb's init sweep) and one for the notebooks.

    Args:
        args: parse_args's result.
    """
    names = list(NAMES) if args.notebook == "all" else [args.notebook]
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="visionlab-notebooks-")) if args.smoke else HERE
    report_dir = args.report_dir
    if report_dir is None and args.smoke:
        report_dir = Path(tempfile.mkdtemp(prefix="visionlab-smoke-"))
    env = {k: v for k, v in os.environ.items() if k not in FLAG_VARIABLES}
    env.update(VISIONLAB_SMOKE="1" if args.smoke else "0", VISIONLAB_RERUN="1" if args.rerun else "0")
    if report_dir is not None:
        env["VISIONLAB_REPORT_DIR"] = str(Path(report_dir).expanduser().resolve())
    # matplotlib's inline backend: plt.show() embeds the figure as PNG (with agg it embedded nothing,
    # and theory's vanishing/exploding-gradient figure was missing from the stored notebook)
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return names, Path(out), env


def main(argv: list[str] | None = None) -> int:
    """Execute the notebooks; returns the exit code (1: a cell failed, nothing written for that notebook)."""
    args = parse_args(argv)
    names, out, env = plan(args)
    if "VISIONLAB_REPORT_DIR" in env:
        print(f"sweeps in {env['VISIONLAB_REPORT_DIR']}")
    for name in names:
        nb = load(name)
        start = time.perf_counter()
        print(f"executing {name} ({'smoke' if args.smoke else 'full'}) ...", flush=True)
        try:
            execute(nb, env, args.timeout or None)
        except CellExecutionError as e:
            print(f"error: {name} failed after {time.perf_counter() - start:.0f} s:\n{e}", file=sys.stderr)
            return 1
        nbformat.validate(nb)
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / f"{name}.ipynb")
        print(f"wrote {out / f'{name}.ipynb'} (executed in {(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
