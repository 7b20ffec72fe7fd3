"""experiment=search (hydra-optuna-sweeper, the search extra): the study in the sweep folder, trials
that diverge or fail ranked last instead of crashing the study, a killed search resumed in its
folder, and the report's optimisation history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import forkserver
import optuna
import pandas as pd
import pytest
from helpers import REPO, compose_cfg, describe, run_user, user_env
from omegaconf import OmegaConf

from visionlab.report import main as report_main
from visionlab.runs import search, sweep
from visionlab.runs.folder import read_result

# The real search experiment with a test search space (tests/conf: search_space=diverging): a log-scale
# lr from 1e-4 to 1e6 (leaky ReLU, no BN, plain SGD: large rates diverge) and a pooling choice whose
# second value is invalid (those trials fail). Sampler seed 0 draws completed, diverged and failed trials.
SEARCH = [
    "-m",
    "-cd",
    str(REPO / "tests" / "conf"),
    "experiment=search",
    "search_space=diverging",
    "hydra.sweeper.sampler.seed=0",
    "data.subset=32",
    "data.val_fraction=0.02",
    "data.solution=null",
    "trainer.max_epochs=1",
    "data.batch_size=8",
    "model.bn=false",
    "model.activation=leaky_relu",
    "optimizer=sgd",
    "threads=1",
]


def test_search_experiment_composes_the_optuna_sweeper():
    cfg = compose_cfg("train", ["experiment=search"])
    assert cfg.search.trials == 20
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        hcfg = compose("train", overrides=["experiment=search"], return_hydra_config=True)
    sweeper = hcfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler._target_.endswith("TPESampler")
    assert sweeper.direction == "minimize" and sweeper.max_failure_rate == 1.0
    assert set(sweeper.params) == {
        "optimizer.lr",
        "optimizer.weight_decay",
        "model.dropout",
        "model.channels",
        "model.block_convs",
        "augmentation",
    }
    assert sweeper.params["optimizer.lr"].startswith("tag(log")
    assert OmegaConf.to_container(sweeper)["storage"] == "sqlite:///${hydra.sweep.dir}/optuna.db"  # in the sweep folder


def test_trial_names_carry_the_trial_number_and_short_floats(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "experiment=search"])
    monkeypatch.delenv("VISIONLAB_SWEPT_KEYS", raising=False)
    monkeypatch.setenv(search.TRIAL_OFFSET_ENV, "7")
    params = {"optimizer.lr": "tag(log, interval(1e-4, 1))", "model.block_convs": "choice(1,2)"}
    name = search.trial_name(["optimizer.lr=0.00029943411457129874", "model.block_convs=2", "data.subset=9"], params, 2)
    assert name == "trial=9,optimizer.lr=0.000299,model.block_convs=2"


def make_study(path: Path, states: list[str]):
    study = optuna.create_study(study_name="search", storage=search.storage_url(path))
    for i, state in enumerate(states):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        if state == "complete":
            study.tell(trial, float(i))
        elif state == "fail":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study


def test_trials_left_counts_finished_trials_and_never_creates_a_study(tmp_path):
    assert search.trials_left(search.storage_url(tmp_path), "search", 5) == 5
    assert not (tmp_path / search.STUDY_FILE).exists()
    make_study(tmp_path, ["complete", "fail", "running", "complete"])
    assert search.trials_left(search.storage_url(tmp_path), "search", 5) == 2  # the running one runs again
    assert search.trials_left(search.storage_url(tmp_path), "search", 2) == 0


def test_resuming_marks_killed_trials_interrupted(tmp_path, monkeypatch):
    make_study(tmp_path, ["complete", "running"])
    monkeypatch.delenv(search.TRIAL_OFFSET_ENV, raising=False)
    config = OmegaConf.create({"hydra": {"sweeper": {"storage": search.storage_url(tmp_path), "study_name": "search"}}})
    sweep.SearchStudy().on_multirun_start(config)
    trials = search.open_study(search.storage_url(tmp_path)).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert trials[1].user_attrs[search.INTERRUPTED] is True
    assert os.environ[search.TRIAL_OFFSET_ENV] == "2"  # the next trial is number 2
    assert search.trials_left(search.storage_url(tmp_path), "search", 3) == 2


def wait_for(predicate, timeout: float, proc) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the search ended before it could be killed:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.5)
    pytest.fail("timed out")


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A 6-trial search killed (SIGKILL) after its second trial finished, then the same command pointed
    at its folder."""
    cwd = tmp_path_factory.mktemp("search")
    proc = forkserver.popen(
        [sys.executable, str(REPO / "train.py"), *SEARCH, "search.trials=6"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
    )
    try:

        def two_done():  # read the trials' result.json: opening the study now would race its creation
            results = [read_result(p.parent) for p in (cwd / "outputs").glob("train/multiruns/*/*/result.json")]
            return sum(r.get("status") in ("completed", "diverged", "failed") for r in results) >= 2

        wait_for(two_done, 300, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    [sweep] = list((cwd / "outputs" / "train" / "multiruns").iterdir())
    before = search.open_study(search.storage_url(sweep)).trials
    resumed = run_user([*SEARCH, "search.trials=6", f"hydra.sweep.dir={sweep}"], cwd, timeout=600)
    return sweep, before, resumed


@pytest.mark.slow
def test_killed_search_resumes_in_its_folder_and_accounts_for_every_trial(killed_and_resumed):
    sweep, before, resumed = killed_and_resumed
    assert resumed.returncode == 0, describe(resumed)
    study = search.open_study(search.storage_url(sweep))
    finished = [t for t in study.trials if search.finished(t)]
    assert len(finished) == 6  # the study's total, over both sessions
    assert [t.number for t in study.trials[: len(before)]] == [t.number for t in before]  # the old trials kept
    interrupted = [t for t in study.trials if t.user_attrs.get(search.INTERRUPTED)]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in interrupted)
    assert len(study.trials) == 6 + len(interrupted)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)  # none NaN, none crashed
    summary = pd.read_csv(sweep / "summary.csv")
    statuses = set(summary["status"])
    assert {"completed", "diverged", "failed"} <= statuses, summary[["run", "status"]]
    values = {t.number: t.value for t in finished}
    for _, row in summary.iterrows():  # each trial's folder has its number; its value is its best val err
        number = int(row["run"].split(",")[0].removeprefix("trial="))
        if number in values:
            expected = 1.0 if pd.isna(row["best_val_err"]) else row["best_val_err"]
            assert values[number] == pytest.approx(expected)
    best = min(values.values())
    assert best < 1.0
    assert "Best value" in resumed.stdout + resumed.stderr


@pytest.mark.slow
def test_report_on_a_search_folder_shows_history_and_best_parameters(killed_and_resumed, capsys):
    sweep, _, _ = killed_and_resumed
    assert report_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert (sweep / "search_history.png").stat().st_size > 0
    trials = pd.read_csv(sweep / "search_trials.csv")
    assert {"trial", "state", "value", "best_so_far", "optimizer.lr", "model.pool"} <= set(trials.columns)
    assert trials["best_so_far"].dropna().is_monotonic_decreasing
    assert "Best parameters: " in out and "optimizer.lr=" in out and "python train.py " in out


def test_optuna_logs_carry_no_colour_codes_off_a_terminal(killed_and_resumed):
    _, _, resumed = killed_and_resumed
    assert "Using an existing study" in resumed.stderr  # Optuna's own line, as plain text
    assert "\x1b[" not in resumed.stderr and "\x1b[" not in resumed.stdout
