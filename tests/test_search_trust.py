"""experiment=search after a kill or a damaged study file (issue 20, item 6): summary.csv in the study's
trial order with the study's states (a killed trial never `running`), and an empty, non-SQLite or
corrupt optuna.db refused in one line before the sweeper opens it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import assert_user_error, describe, run_user
from test_search import SEARCH

from visionlab.report.search import write_search_report
from visionlab.runs import search
from visionlab.runs.folder import RunLock
from visionlab.runs.summary import write_summary

optuna.logging.set_verbosity(optuna.logging.WARNING)


def resume(sweep: Path, trials: int, cwd: Path) -> subprocess.CompletedProcess:
    """The search command given its folder, as the README says to continue a killed search."""
    return run_user([*SEARCH, f"search.trials={trials}", f"hydra.sweep.dir={sweep}"], cwd, timeout=300)


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory) -> Path:
    """A real 2-trial search (tests/conf search_space=diverging, seed 0: trial 0 trains, trial 1 fails)."""
    cwd = tmp_path_factory.mktemp("search_trust")
    sweep = cwd / "sweep"
    proc = resume(sweep, 2, cwd)
    assert proc.returncode == 0, describe(proc)
    assert len(search.open_study(search.storage_url(sweep)).trials) == 2
    return sweep


def copy_of(sweep: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sweep"
    shutil.copytree(sweep, out, ignore=shutil.ignore_patterns(".lock"))
    return out


def damage(db: Path, how: str) -> None:
    if how == "empty":
        db.write_bytes(b"")
    elif how == "text":
        db.write_text("not a database\n")
    elif how == "corrupt":  # bytes overwritten past the header
        data = bytearray(db.read_bytes())
        data[200::7] = b"Z" * len(data[200::7])
        db.write_bytes(bytes(data))
    elif how == "cut short":  # a copy that stopped half-way
        os.truncate(db, db.stat().st_size // 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how, says",
    [
        ("empty", "is empty (0 bytes)"),
        ("text", "is not an SQLite database"),
        ("corrupt", "is a corrupt SQLite database"),
    ],
)
def test_resume_refuses_an_unreadable_study_file_in_one_line(two_trials, tmp_path, how, says):
    sweep = copy_of(two_trials, tmp_path)
    db = sweep / search.STUDY_FILE
    damage(db, how)
    before = {p.name: p.stat().st_mtime_ns for p in sweep.iterdir()}
    damaged = db.read_bytes()
    proc = resume(sweep, 4, tmp_path)
    message = assert_user_error(proc, str(db), says, "Restore optuna.db", f"remove {db}", "not in the study")
    assert len(message.strip().splitlines()) == 1, describe(proc)  # one line, nothing after it
    # refused before the sweeper opened it: no new study in the file, no trial run, nothing rewritten
    assert db.read_bytes() == damaged
    assert {p.name: p.stat().st_mtime_ns for p in sweep.iterdir() if p.name != ".lock"} == before


def test_a_study_file_cut_short_is_named_corrupt_and_the_report_says_so(two_trials, tmp_path):
    sweep = copy_of(two_trials, tmp_path)
    db = sweep / search.STUDY_FILE
    damage(db, "cut short")

    paths, lines = write_search_report(sweep)
    assert paths == {} and len(lines) == 1 and str(db) in lines[0] and "corrupt" in lines[0]
    with pytest.raises(search.StudyFileError, match="is a corrupt SQLite database"):
        search.open_study(search.storage_url(sweep))
    with pytest.raises(SystemExit, match=r"^error: .*optuna\.db is a corrupt SQLite database"):
        search.trials_left(search.storage_url(sweep), "search", 4)  # the n_trials resolver: one line too


def add_trial(study, number: int, sweep: Path, *, state: str, job: int) -> Path:
    """A trial of the study and its folder as a job leaves it: result.json (`running` when killed)."""
    distributions = study.trials[0].distributions
    trial = study.ask(fixed_distributions=distributions)
    assert trial.number == number
    values = {k: trial.params[k] for k in distributions}
    if state == "complete":
        study.tell(trial, 0.5)
    name = f"trial={number},optimizer.lr={values['optimizer.lr']:.3g},model.pool={values['model.pool']}"
    folder = sweep / name
    folder.mkdir()
    record = {
        "run": name,
        "job": job,
        "overrides": " ".join(f"{k}={v}" for k, v in values.items()) + " experiment=search",
        "status": "completed" if state == "complete" else "running",
        "best_val_err": 0.5 if state == "complete" else None,
        "run_dir": str(folder),
    }
    (folder / "result.json").write_text(json.dumps(record))
    return folder


@pytest.mark.slow
def test_resumed_search_summary_lists_trials_in_order_and_the_killed_one_interrupted(two_trials, tmp_path):
    """A search killed in its third trial (job 2): the study holds it `running`, its folder's record says
    running, and its .lock names a pid that is alive again (another process's now: pids are reused) but
    no process holds the lock. Resumed to 5 trials, it runs trials 3 and 4 as jobs 0 and 1."""
    sweep = copy_of(two_trials, tmp_path)
    study = search.open_study(search.storage_url(sweep))
    killed = add_trial(study, 2, sweep, state="running", job=2)
    (killed / ".lock").write_text(f"{os.getpid()}\n")  # a live pid, no flock
    proc = resume(sweep, 4, tmp_path)
    assert proc.returncode == 0, describe(proc)
    summary = pd.read_csv(sweep / "summary.csv")
    rows = [(run.split(",")[0], status) for run, status in zip(summary["run"], summary["status"])]
    assert [run for run, _ in rows] == [f"trial={n}" for n in range(5)], rows  # not by job: 0, 3, 1, 4, 2
    assert rows[2] == ("trial=2", "interrupted"), rows  # never `running`: no process holds its folder
    assert list(summary["trial"]) == [0, 1, 2, 3, 4]
    assert list(summary["study_state"]) == ["complete", "complete", "interrupted", "complete", "complete"]


def test_summary_of_a_killed_search_before_its_resume(two_trials, tmp_path):
    """write_summary on a search folder as a kill leaves it (the resume of one job writes it so): rows in
    trial number order (9 before 10, a job number from another session not mixed in); a trial the study
    holds `running` is `running` only while a process holds its folder; a trial with no folder gets a
    row; a folder of an earlier study (same number, other values) says it is not in the study."""
    sweep = copy_of(two_trials, tmp_path)
    study = search.open_study(search.storage_url(sweep))
    for number in range(2, 10):
        add_trial(study, number, sweep, state="complete", job=number % 3)
    shutil.rmtree(next(sweep.glob("trial=5,*")))  # its job never wrote a record
    # trial 10's folder is gone too; in its place, a folder of an earlier study: trial 3 with other values
    stray = add_trial(study, 10, sweep, state="complete", job=0).rename(
        sweep / "trial=3,optimizer.lr=1e+03,model.pool=max"
    )
    record = json.loads((stray / "result.json").read_text())
    record.update(run=stray.name, overrides="optimizer.lr=1000.0 model.pool=max experiment=search")
    (stray / "result.json").write_text(json.dumps(record))
    killed = add_trial(study, 11, sweep, state="running", job=1)
    (killed / ".lock").write_text(f"{os.getpid()}\n")  # a live pid (reused), no flock: killed

    df = write_summary(sweep)
    summary = pd.read_csv(sweep / "summary.csv")
    numbers = [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    order = [run.split(",")[0] for run in summary["run"]]
    assert order == [f"trial={n}" for n in numbers], order  # not by job number, nor trial=10 before trial=2
    assert summary.iloc[-1]["status"] == "interrupted", summary[["run", "status"]]  # never `running`
    assert list(summary["trial"]) == numbers and list(df["trial"]) == numbers
    assert summary.loc[3, "study_state"] == "complete" and summary.loc[3, "run"] != stray.name
    assert summary.loc[4, "run"] == stray.name and summary.loc[4, "study_state"] == search.NOT_IN_STUDY
    for row, number in ((6, 5), (11, 10)):  # no folder: a row all the same, with the study's state
        assert summary.loc[row, "run"] == f"trial={number}" and summary.loc[row, "study_state"] == "complete"
    assert summary.loc[12, "status"] == "interrupted" and summary.loc[12, "study_state"] == "interrupted"

    lock = RunLock(killed)  # a process runs trial 11 after all (one search, one study)
    try:
        summary = write_summary(sweep)
        assert summary.iloc[-1]["status"] == "running" and summary.iloc[-1]["study_state"] == "running"
    finally:
        lock.release()


def test_the_sweeps_closing_table_shows_the_studys_state(tmp_path):
    from visionlab.runs.summary import format_table

    df = pd.DataFrame(
        {
            "run": ["trial=0,x=1", "trial=1,x=2"],
            "status": ["completed", "interrupted"],
            "trial": [0, 1],
            "study_state": ["complete", "interrupted"],
            **{c: [None, None] for c in ("best_val_err", "best_epoch", "final_train_err", "test_err", "wall_time_s")},
        }
    )
    lines = format_table(df).splitlines()
    assert lines[0].split()[:3] == ["run", "status", "study_state"]
    assert lines[2].split()[:3] == ["trial=1,x=2", "interrupted", "interrupted"]
