"""Config values a run cannot use are refused at once, in one line naming the key (issue 20, item 8),
and the workers of a joblib sweep end with it when it is killed (issue 20, item 5)."""

from __future__ import annotations

import collections
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    REPO,
    assert_user_error,
    build_challenge,
    challenge_overrides,
    compose_cfg,
    describe,
    run_user,
    train_inproc,
    user_env,
)
from omegaconf import OmegaConf

from visionlab.errors import ConfigError, InputError


def check_train(overrides: list[str]) -> None:
    from visionlab.commands.preflight import check_train

    check_train(compose_cfg("train", overrides))


# ----------------------------------------------------------------------------- value types


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["seed=abc"], "seed='abc' must be a whole number, e.g. seed=0"),
        (["model.dropout=0.2x"], "model.dropout='0.2x' must be a number (cnn_classifier takes dropout: float)"),
        (["model.dropout=true"], "model.dropout=True must be a number"),
        (
            ["data.subset=abc"],
            "data.subset='abc' must be a whole number (ChallengeDataModule takes subset: int | None)",
        ),
        (["data.subset=2.5"], "data.subset=2.5 must be a whole number"),
        (["data.val_fraction=a"], "data.val_fraction='a' must be a number"),
        (["model=resnet", "model.label_smoothing=x"], "model.label_smoothing='x' must be a number"),
        (["optimizer=rmsprop", "optimizer.alpha=x"], "optimizer.alpha='x' must be a number (RMSprop takes alpha"),
        (["scheduler=step", "scheduler.step_size=1.5"], "scheduler.step_size=1.5 must be a whole number (StepLR"),
        (["scheduler=cosine", "scheduler.warmup_epochs=x"], "scheduler.warmup_epochs='x' must be a number"),
        (["trainer.log_every_n_steps=abc"], "trainer.log_every_n_steps='abc' must be a whole number (Trainer"),
        (["threads=abc"], "threads='abc' must be a positive number"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_before_anything_is_imported_or_read(overrides, message):
    with pytest.raises(ConfigError) as err:
        check_train(overrides)
    assert message in str(err.value), str(err.value)


def test_the_type_check_reads_signatures_without_importing_them():
    code = (
        "import sys; from visionlab.config.values import target_numbers; "
        "n = target_numbers('pytorch_lightning.Trainer'); d = target_numbers('visionlab.data.ChallengeDataModule'); "
        "o = target_numbers('torch.optim.SGD'); "
        "assert n['max_epochs'][0] == 'int' and d['subset'][0] == 'int' and o['momentum'][0] == 'number', (n, d, o); "
        "assert not {'torch', 'pytorch_lightning'} & set(sys.modules), 'imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=user_env(), timeout=60)
    assert proc.returncode == 0, describe(proc)


def test_every_shipped_option_passes_the_type_check():
    from visionlab.commands.preflight import check_epochs_end, check_value_types

    conf = REPO / "conf"
    options = [
        f"{group}={path.relative_to(conf / group).with_suffix('').as_posix()}"
        for group in ("data", "model", "optimizer", "scheduler", "trainer", "debug", "tune", "experiment")
        for path in sorted((conf / group).rglob("*.yaml"))
    ]
    assert len(options) > 40
    for option in options:
        extra = ["data.root=/tmp"] if option in ("data=challenge", "data=folder") else []
        cfg = compose_cfg("train", [option, *extra])
        check_value_types(cfg)
        check_epochs_end(cfg)


def test_a_bad_subset_fails_in_one_line_and_leaves_no_run_folder(tmp_path):
    proc = run_user(["data.subset=abc"], tmp_path, timeout=120)
    assert_user_error(proc, "data.subset='abc' must be a whole number")
    assert "Data:" not in proc.stdout  # before the data
    assert list((tmp_path / "outputs" / "train" / "runs").glob("*")) == []


# ----------------------------------------------------------------------------- epochs


def test_endless_epochs_without_a_validation_split_are_refused_naming_both_keys():
    with pytest.raises(ConfigError) as err:
        check_train(["trainer.max_epochs=-1", "data.val_fraction=0"])
    assert "trainer.max_epochs=-1" in str(err.value) and "data.val_fraction=0" in str(err.value)
    assert "never end" in str(err.value)
    check_train(["trainer.max_epochs=-1"])  # early stopping ends it
    check_train(["trainer.max_epochs=-1", "data.val_fraction=0", "trainer.max_time=00:00:01:00"])  # so does time
    check_train(["trainer.max_epochs=-1", "data.val_fraction=0", "budget=1m"])


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """A run folder of 2 trained epochs (in-process), with the .hydra/config.yaml resume= reads."""
    base = tmp_path_factory.mktemp("trust_config_run")
    ch = build_challenge(base / "challenge", n_per_class=4)
    overrides = challenge_overrides(ch) + ["trainer.max_epochs=2", "data.val_fraction=0.25"]
    run_dir = base / "run"
    result = train_inproc(run_dir, overrides)
    assert result["status"] == "completed" and result["epochs"] == 2, result
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(
        compose_cfg("train", overrides + [f"paths.output_dir={run_dir}", "logger=csv"]), run_dir / ".hydra/config.yaml"
    )
    return base, run_dir


def test_resume_with_fewer_epochs_than_trained_is_refused_naming_both(two_epoch_run):
    base, run_dir = two_epoch_run
    before = {p: p.read_bytes() for p in [run_dir / "result.json", *sorted((run_dir / "checkpoints").iterdir())]}
    proc = run_user([f"resume={run_dir}", "trainer.max_epochs=1"], base, timeout=120)
    assert_user_error(proc, "trainer.max_epochs=1 is below the 2 epochs", str(run_dir), "above 2")
    assert {p: p.read_bytes() for p in before} == before


def test_resume_counts_the_epochs_of_last_ckpt_when_the_record_has_none(two_epoch_run, tmp_path, monkeypatch):
    """A run killed outright: its result.json says running, with no epochs; last.ckpt knows."""
    from visionlab.commands.resume import resume_config

    _, trained = two_epoch_run
    run_dir = tmp_path / "killed"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    saved = OmegaConf.load(trained / ".hydra/config.yaml")
    saved.trainer.max_epochs = 1
    saved.paths.output_dir = str(run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(saved, run_dir / ".hydra/config.yaml")
    (run_dir / "result.json").write_text(json.dumps({"run": "killed", "status": "running"}))
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=1 \(its config\) is below the 2 epochs"):
        resume_config(compose_cfg("train", [f"paths.output_dir={run_dir}", f"resume={run_dir}"]))
    saved.trainer.max_epochs = 3  # more than trained: continues
    OmegaConf.save(saved, run_dir / ".hydra/config.yaml")
    resumed = resume_config(compose_cfg("train", [f"paths.output_dir={run_dir}", f"resume={run_dir}"]))
    assert resumed.ckpt_path == str(run_dir / "checkpoints" / "last.ckpt")


# ----------------------------------------------------------------------------- ckpt_path


class Anything:  # pickled by reference: torch's safe loader refuses it
    pass


def _pickle(d: Path) -> Path:
    (d / "model.pkl").write_bytes(pickle.dumps({"model": Anything()}, protocol=2))
    return d / "model.pkl"


def _text(d: Path) -> Path:
    (d / "notes.ckpt").write_text("epoch,loss\n1,0.5\n")
    return d / "notes.ckpt"


def _state_dict(d: Path) -> Path:
    torch.save(collections.OrderedDict(weight=torch.zeros(3)), d / "weights.pth")
    return d / "weights.pth"


def _weights_only(d: Path) -> Path:  # a best.ckpt: no optimizer state to continue from
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.5.0", "epoch": 1}, d / "best.ckpt")
    return d / "best.ckpt"


@pytest.mark.parametrize(
    "make,match",
    [
        (_pickle, "is not a loadable checkpoint: (a Python pickle|refused for safety: it holds pickled)"),
        (_text, "is not a loadable checkpoint: not a torch file at all"),
        (_state_dict, "is not a Lightning training checkpoint"),
        (_weights_only, "holds the weights only"),
        (lambda d: d / "nope.ckpt", "does not exist"),
    ],
)
def test_ckpt_path_that_cannot_start_training_is_named(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(InputError, match=f"ckpt_path='{re.escape(str(path))}' {match}"):
        check_train([f"ckpt_path={path}"])


# ----------------------------------------------------------------------------- output folder


def test_output_folder_that_cannot_be_made_or_written_is_named(tmp_path, monkeypatch):
    from visionlab.commands.preflight import output_folder_problem

    monkeypatch.chdir(tmp_path)
    assert output_folder_problem([]) is None
    (tmp_path / "blocker").write_text("a file where a folder must be")
    problem = output_folder_problem([f"hydra.run.dir={tmp_path}/blocker/run"])
    assert problem and f"{tmp_path}/blocker is a file, not a folder" in problem and "hydra.run.dir=DIR" in problem
    problem = output_folder_problem(["-m", "seed=1,2", f"hydra.sweep.dir={tmp_path}/blocker/sweep_" + "${now:%H}"])
    assert problem and "blocker is a file" in problem and "hydra.sweep.dir=DIR" in problem
    assert output_folder_problem([f"hydra.run.dir={tmp_path}/blocker/run", "--cfg", "job"]) is None  # writes nothing
    # read-only (being root, a chmod'ed folder stays writable to this test: os.access stands in for it)
    (tmp_path / "outputs").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path / "outputs" and real_access(p, mode))
    problem = output_folder_problem([])
    assert problem and f"{tmp_path}/outputs is read-only" in problem and "outputs/train/runs" in problem


def test_unwritable_output_folder_fails_in_one_line(tmp_path):
    (tmp_path / "outputs").write_text("a file where the outputs folder must be")
    proc = run_user(["trainer.max_epochs=1"], tmp_path, timeout=120)
    assert_user_error(proc, f"cannot make the output folder {tmp_path}/outputs/train/runs", "is a file, not a folder")


# ----------------------------------------------------------------------------- threads


def test_threads_above_the_cores_are_capped_with_a_warning(monkeypatch, caplog):
    from visionlab.runs import parallel

    monkeypatch.setattr(parallel, "cores", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="visionlab.runs.parallel"):
        assert parallel.threads_per_job(64) == 2
    [record] = [r for r in caplog.records if r.name == "visionlab.runs.parallel"]
    assert "threads=64 is more than the 2 cores" in record.getMessage()
    assert "\n" not in record.getMessage()
    caplog.clear()
    assert parallel.threads_per_job(2) == 2 and parallel.threads_per_job(None) is None
    assert not caplog.records
    # a job run by joblib in the sweep's own process (n_jobs=1) watches nothing
    assert not parallel.in_joblib_worker({"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher"})


# ----------------------------------------------------------------------------- a killed joblib sweep


def _stat(pid: int):
    """(state, parent pid, start time) of a process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), fields[19]


def _descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every process below `root`."""
    children: dict[int, list] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            found[pid] = start
            todo.append(pid)
    return found


def _alive(procs: dict[int, str]) -> dict[int, str]:
    """Those still running (a zombie is gone; a reused pid is another process)."""
    return {pid: start for pid, start in procs.items() if (s := _stat(pid)) and s[0] != "Z" and s[2] == start}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_a_killed_joblib_sweep_leaves_no_worker_behind(tmp_path):
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "seed=0,1", "data.subset=200", "trainer.max_epochs=50"]
    # 3 workers for 2 jobs: loky starts them all, one idle, which never runs any code of ours
    cmd += ["threads=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "logger=csv"]
    log = tmp_path / "sweep.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=user_env(), start_new_session=True
        )
    seen: dict[int, str] = {}
    try:
        deadline = time.time() + 240
        while True:  # both jobs training (past apply_threads): each printed its first epoch
            seen.update(_descendants(proc.pid))
            records = [json.loads(p.read_text()) for p in tmp_path.glob("outputs/train/multiruns/*/*/result.json")]
            if sum(r.get("status") == "running" for r in records) == 2 and log.read_text().count("epoch 1/50") >= 2:
                break
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        seen.update(_descendants(proc.pid))
        workers = [pid for pid in seen if "LokyProcess" in _cmdline(pid)]
        assert len(workers) == 3, {pid: _cmdline(pid) for pid in seen}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while _alive(seen) and time.time() < deadline:
            time.sleep(0.25)
        left = _alive(seen)
        assert not left, {pid: _cmdline(pid) for pid in left}
    finally:
        for pid in _alive(seen):
            os.kill(pid, signal.SIGKILL)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
