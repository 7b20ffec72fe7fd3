"""The notebooks: each committed .ipynb holds the cells of its paired jupytext script (notebooks/<name>.py),
its runner (notebooks/run.py) plans where things go, and both notebooks execute headless through the
runner in smoke mode (--smoke: every sweep tiny, into temporary folders), so the committed notebooks
and outputs/report are never touched."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import forkserver
import pytest
from helpers import cli_env

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ABLATIONS = ("bn", "depth", "dropout", "activation", "output", "pooling", "optimizer", "augmentation", "init")
PREMADE = ABLATIONS[1:]  # the smoke sweeps made before the notebook runs (smoke_run); it runs bn itself
SECTION_CELLS = ("run", "figures", "table", "facts", "seeds")
THEORY_SWEEP_CELLS = ("helpers", "run", "figures", "table", "seeds")


def load_runner():
    spec = importlib.util.spec_from_file_location("_notebooks_run", NOTEBOOKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def outputs_of(nb, cell_id: str) -> list:
    cell = next((c for c in nb.cells if c.id == cell_id), None)
    assert cell is not None, f"no cell {cell_id!r}"
    return cell.get("outputs", [])


def mime_count(outputs: list, mime: str) -> int:
    return sum(mime in o.get("data", {}) for o in outputs)


def text_of(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs)


# ----------------------------------------------------------------------------- the committed pair


@pytest.mark.parametrize("name", ["report", "theory"])
def test_committed_notebook_matches_its_script(name):
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert sources(committed) == sources(script), (
        f"notebooks/{name}.ipynb is out of date with notebooks/{name}.py: run `jupytext --sync notebooks/{name}.py` "
        f"(keeps the outputs of unchanged cells) or `python notebooks/run.py {name}` (see notebooks/README.md)"
    )
    # the jupytext header pairs them, on both sides
    assert script.metadata["jupytext"]["formats"] == committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    ids = [c.id for c in committed.cells]
    assert len(ids) == len(set(ids))


def test_committed_notebooks_keep_their_cell_ids_and_outputs():
    report = nbformat.read(NOTEBOOKS / "report.ipynb", as_version=4)
    for name in ABLATIONS:
        for cell in SECTION_CELLS:
            outputs_of(report, f"{name}-{cell}")  # the id exists
        # executed with the real sweeps: figures and table embedded
        assert mime_count(outputs_of(report, f"{name}-figures"), "image/png") == 2, name
        assert mime_count(outputs_of(report, f"{name}-table"), "text/markdown") == 1, name
    theory = nbformat.read(NOTEBOOKS / "theory.ipynb", as_version=4)
    for cell in THEORY_SWEEP_CELLS:
        outputs_of(theory, f"theory-init-sweep-{cell}")
    assert mime_count(outputs_of(theory, "theory-init-sweep-figures"), "image/png") == 2


# ----------------------------------------------------------------------------- the runner


def test_runner_plans_smoke_runs_away_from_the_committed_notebooks(monkeypatch):
    run = load_runner()
    for var in ("VISIONLAB_SMOKE", "VISIONLAB_RERUN", "VISIONLAB_REPORT_DIR"):
        monkeypatch.delenv(var, raising=False)

    names, out, env = run.plan(run.parse_args(["all", "--smoke"]))
    assert names == ["report", "theory"]
    assert out != NOTEBOOKS and out.is_dir() and not any(out.iterdir())
    report_dir = Path(env["VISIONLAB_REPORT_DIR"])
    assert report_dir.is_dir() and REPO not in report_dir.parents  # one temporary folder for both notebooks
    assert env["VISIONLAB_SMOKE"] == "1" and env["VISIONLAB_RERUN"] == "0"
    out.rmdir(), report_dir.rmdir()

    names, out, env = run.plan(run.parse_args(["theory", "--rerun"]))
    assert names == ["theory"] and out == NOTEBOOKS
    assert env["VISIONLAB_SMOKE"] == "0" and env["VISIONLAB_RERUN"] == "1" and "VISIONLAB_REPORT_DIR" not in env


def test_runner_flags_default_to_the_environment(monkeypatch, tmp_path):
    run = load_runner()
    monkeypatch.setenv("VISIONLAB_SMOKE", "1")
    monkeypatch.setenv("VISIONLAB_REPORT_DIR", str(tmp_path / "sweeps"))
    names, out, env = run.plan(run.parse_args(["report", "--out", str(tmp_path / "out")]))
    assert names == ["report"] and out == tmp_path / "out"
    assert env["VISIONLAB_SMOKE"] == "1" and env["VISIONLAB_REPORT_DIR"] == str((tmp_path / "sweeps").resolve())


def test_runner_runs_the_script_with_the_committed_ids(tmp_path):
    """The .py is the notebook: an edited or new cell runs as written; the .ipynb gives the ids."""
    run = load_runner()
    for suffix in (".py", ".ipynb"):
        shutil.copy(NOTEBOOKS / f"theory{suffix}", tmp_path / f"theory{suffix}")
    script = tmp_path / "theory.py"
    script.write_text(script.read_text(encoding="utf-8") + '\n# %%\nprint("a new cell")\n', encoding="utf-8")
    nb = run.load("theory", tmp_path)
    committed = nbformat.read(NOTEBOOKS / "theory.ipynb", as_version=4)
    assert sources(nb)[:-1] == sources(committed) and nb.cells[-1].source == 'print("a new cell")'
    assert [c.id for c in nb.cells[:-1]] == [c.id for c in committed.cells]


# ----------------------------------------------------------------------------- smoke execution


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """`python notebooks/run.py all --smoke` into a temporary folder (sweeps under <it>/sweeps). Eight of
    the nine smoke sweeps are made first, each by the command the notebook runs (AblationSweeps.sweep_args,
    forked from the worker's preloaded server: the imports once, not eight times); the notebook re-uses
    them and runs the first one, bn, itself, so both ways of a section's run cell execute."""
    from visionlab.report.notebook import AblationSweeps

    tmp = tmp_path_factory.mktemp("notebooks").resolve()
    start = time.perf_counter()
    sweeps = AblationSweeps(repo=REPO, report_dir=tmp / "sweeps", smoke=True)
    for name in PREMADE:
        cmd = [sys.executable, str(REPO / "train.py"), *sweeps.sweep_args(name)]
        made = forkserver.run(cmd, cwd=REPO, env=cli_env(), timeout=600, capture_output=True, text=True)
        assert made.returncode == 0 and sweeps.why_not_reusable(name) is None, (
            f"{' '.join(cmd)}: exit {made.returncode}\n{made.stdout[-3000:]}\n{made.stderr[-5000:]}"
        )
    proc = subprocess.run(
        [
            sys.executable,
            str(NOTEBOOKS / "run.py"),
            "all",
            "--smoke",
            "--out",
            str(tmp / "out"),
            "--report-dir",
            str(tmp / "sweeps"),
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=1800,
        env=cli_env(),
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    print(f"both notebooks executed in smoke mode in {time.perf_counter() - start:.0f} s")
    return tmp


def executed(tmp: Path, name: str):
    nb = nbformat.read(tmp / "out" / f"{name}.ipynb", as_version=4)
    errors = [
        (c.id, o.get("ename"), o.get("evalue"))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "every code cell ran"
    return nb


@pytest.mark.slow
def test_report_notebook_smoke(smoke_run):
    nb = executed(smoke_run, "report")
    setup = text_of(outputs_of(nb, "setup"))
    assert str(smoke_run / "sweeps") in setup and "smoke" in setup
    for name in ABLATIONS:  # the notebook ran the one sweep not made before it, and re-used the others
        ran = text_of(outputs_of(nb, f"{name}-run"))
        assert ("Re-using the finished sweep" in ran, "Running (" in ran) == (name in PREMADE, name not in PREMADE), ran
    for name in ABLATIONS:
        sweep = smoke_run / "sweeps" / name
        assert (sweep / "summary.csv").is_file() and (sweep / "results.csv").is_file(), name
        assert mime_count(outputs_of(nb, f"{name}-figures"), "image/png") == 2, f"{name}: val_err + errors figures"
        assert mime_count(outputs_of(nb, f"{name}-table"), "text/markdown") == 1, f"{name}: results table"
        facts = text_of(outputs_of(nb, f"{name}-facts"))
        assert "best:" in facts and "SMOKE MODE" in facts, name
        seeds = outputs_of(nb, f"{name}-seeds")
        assert mime_count(seeds, "text/markdown") == 1, f"{name}: per-seed table"
        assert "| setting | seed 0 |" in seeds[0]["data"]["text/markdown"], name
    summary = outputs_of(nb, "summary-table")
    assert mime_count(summary, "text/html") == 1
    assert "9 sweeps" in text_of(summary) and "notebook executed in" in text_of(summary)
    # The executed copy embeds the figures, so it shows them without outputs/ (git-ignored): two curves
    # per sweep, and under each table the best run's confusion matrix (a link to it was a broken image).
    confusions = [name for name in ABLATIONS if (smoke_run / "sweeps" / name / "confusion_matrix.png").is_file()]
    assert confusions, "no smoke sweep wrote a confusion matrix"
    for name in ABLATIONS:
        assert mime_count(outputs_of(nb, f"{name}-table"), "image/png") == (name in confusions), name
    assert sum(mime_count(c.get("outputs", []), "image/png") for c in nb.cells) == 2 * len(ABLATIONS) + len(confusions)


@pytest.mark.slow
def test_theory_notebook_smoke(smoke_run):
    nb = executed(smoke_run, "theory")
    assert (smoke_run / "sweeps" / "init" / "summary.csv").is_file()
    # the same sweep folder as the report's, so the report's init sweep is re-used
    assert "Re-using the finished sweep" in text_of(outputs_of(nb, "theory-init-sweep-run"))
    assert mime_count(outputs_of(nb, "theory-init-sweep-figures"), "image/png") == 2
    assert mime_count(outputs_of(nb, "theory-init-sweep-table"), "text/markdown") == 1
    assert mime_count(outputs_of(nb, "theory-init-sweep-seeds"), "text/markdown") == 1


def test_theory_notebook_embeds_its_gradient_figure(smoke_run):
    for nb in (executed(smoke_run, "theory"), nbformat.read(NOTEBOOKS / "theory.ipynb", as_version=4)):
        assert mime_count(outputs_of(nb, "theory-12"), "image/png") == 1  # executed, and as committed


def test_no_notebook_links_an_image_outside_itself():
    for name in ("report", "theory"):
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                assert "](confusion_matrix.png)" not in out.get("data", {}).get("text/markdown", ""), cell.get("id")
