"""The notebooks: committed sources match their generators, and both execute headless (nbclient) in
smoke mode (VISIONLAB_SMOKE=1: every sweep tiny, into a temporary folder) from copies in tmp_path,
so the committed notebooks and outputs/report are never touched."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ABLATIONS = ("bn", "depth", "dropout", "activation", "output", "pooling", "optimizer", "augmentation", "init")
CELL_TIMEOUT = 600


def load_generator(name: str):
    """notebooks/<name>.py as a module (make_theory imports make_report from its own folder)."""
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        spec = importlib.util.spec_from_file_location(f"_nbgen_{name}", NOTEBOOKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(NOTEBOOKS))


def sources(nb) -> list[tuple[str, str, str]]:
    return [(c.id, c.cell_type, c.source) for c in nb.cells]


@pytest.mark.parametrize("generator, notebook", [("make_report", "report.ipynb"), ("make_theory", "theory.ipynb")])
def test_committed_notebook_matches_its_generator(generator, notebook):
    built = load_generator(generator).build()
    committed = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    assert sources(committed) == sources(built), (
        f"notebooks/{notebook} is out of date: regenerate it with python notebooks/{generator}.py "
        "(see notebooks/README.md)")


def outputs_of(nb, cell_id: str) -> list:
    cell = next((c for c in nb.cells if c.id == cell_id), None)
    assert cell is not None, f"no cell {cell_id!r}"
    return cell.get("outputs", [])


def mime_count(outputs: list, mime: str) -> int:
    return sum(mime in o.get("data", {}) for o in outputs)


def execute_smoke(name: str, tmp_path: Path, monkeypatch, cwd: Path):
    """Execute a copy of notebooks/<name> in smoke mode, sweeps under tmp_path/sweeps; returns it."""
    copy = tmp_path / name
    shutil.copy(NOTEBOOKS / name, copy)
    monkeypatch.setenv("VISIONLAB_SMOKE", "1")
    monkeypatch.setenv("VISIONLAB_REPORT_DIR", str(tmp_path / "sweeps"))
    monkeypatch.delenv("VISIONLAB_RERUN", raising=False)
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(copy, as_version=4)
    start = time.perf_counter()
    # Raises CellExecutionError (with the cell and its traceback) on the first failing cell.
    nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    print(f"{name} executed in smoke mode in {time.perf_counter() - start:.0f} s")
    nbformat.write(nb, copy)
    errors = [(c.id, o.get("ename"), o.get("evalue")) for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    return nb


@pytest.mark.slow
def test_report_notebook_smoke(tmp_path, monkeypatch):
    nb = execute_smoke("report.ipynb", tmp_path, monkeypatch, cwd=REPO)
    setup = "".join(o.get("text", "") for o in outputs_of(nb, "setup"))
    assert str(tmp_path / "sweeps") in setup and "smoke" in setup
    for name in ABLATIONS:
        sweep = tmp_path / "sweeps" / name
        assert (sweep / "summary.csv").is_file() and (sweep / "results.csv").is_file(), name
        assert mime_count(outputs_of(nb, f"{name}-figures"), "image/png") == 2, f"{name}: val_err + errors figures"
        assert mime_count(outputs_of(nb, f"{name}-table"), "text/markdown") == 1, f"{name}: results table"
        facts = "".join(o.get("text", "") for o in outputs_of(nb, f"{name}-facts"))
        assert "best:" in facts and "SMOKE MODE" in facts, name
    summary = outputs_of(nb, "summary-table")
    assert mime_count(summary, "text/html") == 1
    # The executed copy embeds the figures, so it shows them without outputs/ (git-ignored).
    saved = nbformat.read(tmp_path / "report.ipynb", as_version=4)
    assert sum(mime_count(c.get("outputs", []), "image/png") for c in saved.cells) == 2 * len(ABLATIONS)


@pytest.mark.slow
def test_theory_notebook_smoke(tmp_path, monkeypatch):
    nb = execute_smoke("theory.ipynb", tmp_path, monkeypatch, cwd=NOTEBOOKS)
    assert (tmp_path / "sweeps" / "init" / "summary.csv").is_file()
    assert mime_count(outputs_of(nb, "theory-init-sweep-figures"), "image/png") == 2
    assert mime_count(outputs_of(nb, "theory-init-sweep-table"), "text/markdown") == 1
