"""Sweep naming (run folders named by the swept overrides), unique output folders, the sweep summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from helpers import REPO

from visionlab.commands import resolvers
from visionlab.runs import folder, summary
from visionlab.runs.naming import run_name, safe_name, swept_keys

SWEEP_ARGV = ["train.py", "-m", "model.bn=true,false", "optimizer=sgd,adam", "data.subset=64", "trainer.max_epochs=1"]


def test_swept_keys_from_the_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", SWEEP_ARGV)
    assert swept_keys() == {"model.bn", "optimizer"}
    monkeypatch.setattr(sys, "argv", ["train.py", "model.bn=false", "data.subset=64"])
    assert swept_keys() == set()


def test_swept_keys_skip_flag_values_and_read_sweeper_params(monkeypatch):
    argv = ["-cn", "train", "--config-dir", "a,b", "-m", "+extra=1,2", "~seed", "optimizer.lr=range(1,3)"]
    assert swept_keys(argv=argv) == {"extra", "optimizer.lr"}
    assert swept_keys({"model.bn": "true,false", "seed": "1"}, argv=[]) == {"model.bn"}


def test_run_name_uses_the_swept_values_as_typed(monkeypatch):
    monkeypatch.setattr(sys, "argv", SWEEP_ARGV)
    # Hydra hands each job its overrides with Python-style booleans.
    task = ["model.bn=True", "optimizer=sgd", "data.subset=64", "trainer.max_epochs=1"]
    assert run_name(task) == "model.bn=true,optimizer=sgd"
    assert (
        run_name(["model.bn=False", "optimizer=adam", "data.subset=64", "trainer.max_epochs=1"])
        == "model.bn=false,optimizer=adam"
    )


def test_run_name_without_a_sweep_lists_all_overrides(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "model.bn=false", "data.subset=64"])
    assert run_name(["model.bn=False", "data.subset=64", "hydra.verbose=true"]) == "model.bn=false,data.subset=64"
    assert run_name([]) == "default"


def test_run_name_from_sweeper_params(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "+experiment=x"])
    assert run_name(["model.pool=avg", "seed=3"], {"model.pool": "max,avg"}) == "model.pool=avg"


def test_run_names_are_safe_folder_names(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "data.root=/a/b,c\\d"])
    assert run_name(["data.root=/a/b"]) == "data.root=_a_b"
    assert "/" not in run_name(["data.root=c\\d"]) and "\\" not in run_name(["data.root=c\\d"])
    assert safe_name("") == "default"
    assert safe_name("a\x00b") == "ab"


def test_long_names_are_shortened_and_stay_distinct():
    a, b = "x" * 300 + "1", "x" * 300 + "2"
    na, nb = safe_name(a), safe_name(b)
    assert len(na) == len(nb) == 180
    assert na != nb
    assert safe_name(a) == na  # deterministic: a rerun finds the same folder
    assert safe_name("short") == "short"


def test_run_uid_differs_between_runs_and_is_stable_within_one():
    from hydra import compose, initialize_config_dir

    resolvers.register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        a = compose("train", return_hydra_config=True)
        b = compose("train", return_hydra_config=True)
        dir_a, dir_b = str(a.hydra.run.dir), str(b.hydra.run.dir)
        assert dir_a.startswith("outputs/train/runs/") and dir_b.startswith("outputs/train/runs/")
        assert dir_a != dir_b  # even within the same second
        assert str(a.hydra.run.dir) == dir_a  # resolving again gives the same folder
        assert str(a.hydra.sweep.dir).startswith("outputs/train/multiruns/")
        assert str(a.hydra.sweep.dir)[-6:] == dir_a[-6:]


# ----------------------------------------------------------------------------- summary


def write_run(sweep_dir: Path, name: str, **result) -> None:
    (sweep_dir / name).mkdir(parents=True)
    folder.write_result(sweep_dir / name, {"run": name, **result})


def test_summary_orders_by_job_and_reports_failures(tmp_path):
    write_run(tmp_path, "b", job=1, status="completed", best_val_err=0.25, wall_time_s=3.0, history=[{"epoch": 0}])
    write_run(tmp_path, "a", job=2, status="failed", error="DataError: boom")
    write_run(tmp_path, "c", job=0, status="completed", best_val_err=0.5, wall_time_s=1.0)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "result.json").write_text("{not json")
    df = summary.write_summary(tmp_path)
    saved = pd.read_csv(tmp_path / "summary.csv")
    assert list(saved["run"]) == ["c", "b", "a", "d"]
    assert list(saved["status"]) == ["completed", "completed", "failed", "unreadable"]
    assert saved.loc[2, "error"] == "DataError: boom"
    assert "history" not in saved.columns
    assert list(saved.columns[: len(summary.SUMMARY_COLUMNS)]) == summary.SUMMARY_COLUMNS
    table = summary.format_table(df)
    lines = table.splitlines()
    assert lines[0].split() == [
        "run",
        "status",
        "best_val_err",
        "best_epoch",
        "final_train_err",
        "test_err",
        "wall_time_s",
    ]
    assert "0.2500" in lines[2] and "0.5000" in lines[1]


def test_summary_of_an_empty_sweep(tmp_path):
    df = summary.write_summary(tmp_path)
    assert df.empty and list(df.columns) == summary.SUMMARY_COLUMNS
    assert (tmp_path / "summary.csv").is_file()
