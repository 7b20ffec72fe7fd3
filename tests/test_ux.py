"""Issue #11's usability items: the report on sweeps with failed jobs, paths Hydra cannot parse,
where a run is, one message per error, quick checks, quiet logs, debug presets, lean checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from test_report import make_run, valid_png, PNGS
from visionlab import report


# ----------------------------------------------------------------------------- 1. the report


def _bare_result(run_dir: Path, **result) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps(result))


def test_report_on_a_sweep_with_a_job_that_failed_before_its_model_was_built(tmp_path, capsys):
    """A job that failed on a bad config value has no parameter count; one that diverged in its
    first epoch has only NaNs. Both are rows of the table, marked, and every file is written."""
    sweep = tmp_path / "sweep"
    make_run(sweep, "model.activation=relu", "completed", [(0.6, 0.5), (0.4, 0.3)])
    _bare_result(sweep / "model.activation=bogus", run="model.activation=bogus", status="failed",
                 error="ConfigError: model.activation='bogus' is not one of [...]", wall_time_s=1.0)
    _bare_result(sweep / "model.activation=tanh", run="model.activation=tanh", status="diverged", params=100,
                 wall_time_s=float("nan"), epochs=1, history=[{"epoch": 0, "train/err": math.nan,
                                                               "val/err": math.nan}])
    assert report.main([str(sweep)]) == 0
    capsys.readouterr()
    for png in PNGS:
        valid_png(sweep / png)
    md = (sweep / "results.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["bogus"].rstrip(" |").endswith("failed")
    assert rows["tanh"].rstrip(" |").endswith("diverged")
    assert "nan" not in md.lower()  # missing values are blank cells
    res = pd.read_csv(sweep / "results.csv", dtype={"setting": str}).set_index("setting")
    assert res.loc["bogus", "status"] == "failed" and res.loc["tanh", "status"] == "diverged"
    assert len(pd.read_csv(sweep / "runs.csv")) == 3


def test_report_writes_no_file_when_the_table_cannot_be_made(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    make_run(sweep, "a=1", "completed", [(0.6, 0.5)])
    make_run(sweep, "a=2", "completed", [(0.6, 0.4)])

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(report, "markdown_report", broken)
    with pytest.raises(RuntimeError):
        report.build_report(sweep)
    assert sorted(p.name for p in sweep.iterdir()) == ["a=1", "a=2"]
