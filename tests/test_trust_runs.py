"""Checkpoints and run folders you can trust (issue 20, items 1-4): a stored config never runs code,
a folder's best.ckpt is always its own run's, checkpoints and records are written whole or not at
all, and a second sweep into a sweep folder touches nothing of the first."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import challenge_overrides, compose_cfg, predict_inproc, run_user, train_inproc

from visionlab.config.trust import UntrustedConfigError
from visionlab.runs.checkpoints import CheckpointWriteError
from visionlab.runs.folder import EarlierRun, RunLock, read_result


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cli_run(small_run, tmp_path_factory):
    """A run folder as the command line makes it (its .hydra/config.yaml with the interpolations)."""
    ch, _ = small_run
    folder = tmp_path_factory.mktemp("cli") / "run"
    proc = run_user(challenge_overrides(ch) + ["trainer.max_epochs=1", f"hydra.run.dir={folder}"], folder.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def small_run(trained):
    """(challenge, run folder) of one epoch on a 3-class challenge of 12 images (conftest's, read-only)."""
    ch, ckpt = trained
    return ch, ckpt.parents[1]


# ----------------------------------------------------------------------------- 1. stored configs are data


class OpensFile:
    """Pickled, it calls open(marker, "w") when unpickled: what pandas.read_pickle / numpy.load would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payloads(tmp: Path, marker: Path) -> dict[str, object]:
    """Values for a config key that run code (here: create `marker`) when Hydra instantiates them."""
    pickled = tmp / "evil.pkl"
    pickled.write_bytes(pickle.dumps(OpensFile(marker)))
    npy = tmp / "evil.npy"
    np.save(npy, np.array([OpensFile(marker)], dtype=object), allow_pickle=True)
    source = tmp / "source.txt"
    source.write_text("x")
    return {
        "sympy": {
            "_target_": "builtins.float",
            "_args_": [{"_target_": "sympy.sympify", "_args_": [f"__import__('os').system('touch {marker}')*0"]}],
        },
        "read_pickle": {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(pickled)},
        "numpy_load": {"_target_": "numpy.load", "file": str(npy), "allow_pickle": True},
        "open": {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
        "copyfile": {"_target_": "shutil.copyfile", "src": str(source), "dst": str(marker)},
        "resolver": "${oc.create:'{_target_: builtins.open, file: " + str(marker) + ", mode: w}'}",
    }


PAYLOADS = ["sympy", "read_pickle", "numpy_load", "open", "copyfile", "resolver"]


def poisoned_checkpoint(run_dir: Path, tmp: Path, payload: str, key: str) -> tuple[Path, Path]:
    """A copy of the run's best.ckpt whose stored config holds the payload at `key` (group.name)."""
    marker = tmp / "PWNED"
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    group, name = key.split(".")
    ckpt["visionlab"]["config"][group][name] = payloads(tmp, marker)[payload]
    path = tmp / "poisoned.ckpt"
    torch.save(ckpt, path)  # still passes torch.load(weights_only=True): it is all plain data
    return path, marker


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("key", ["model.dropout", "data.batch_size", "optimizer.lr"])
def test_predict_never_builds_what_a_checkpoint_config_names(small_run, tmp_path, payload, key):
    ch, run_dir = small_run
    ckpt, marker = poisoned_checkpoint(run_dir, tmp_path, payload, key)
    with pytest.raises(UntrustedConfigError) as info:
        predict_inproc(ckpt, tmp_path / "submission.csv")
    assert not marker.exists(), "the stored config ran code"
    assert str(ckpt) in str(info.value) and key in str(info.value)
    assert not (tmp_path / "submission.csv").exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_export_never_builds_what_a_checkpoint_config_names(small_run, tmp_path, payload):
    from visionlab.commands.export import run

    ch, run_dir = small_run
    ckpt, marker = poisoned_checkpoint(run_dir, tmp_path, payload, "model.dropout")
    with pytest.raises(UntrustedConfigError, match="model.dropout"):
        run(compose_cfg("export", [f"paths.output_dir={tmp_path / 'export'}", f"ckpt={ckpt}", "format=torchscript"]))
    assert not marker.exists(), "the stored config ran code"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_resume_never_builds_what_a_run_folder_config_names(cli_run, tmp_path, payload):
    folder = tmp_path / "run"
    shutil.copytree(cli_run, folder)
    marker = tmp_path / "PWNED"
    config_file = folder / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["model"]["dropout"] = payloads(tmp_path, marker)[payload]
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(UntrustedConfigError) as info:
        train_inproc(folder, [f"resume={folder}"])
    assert not marker.exists(), "the stored config ran code"
    assert str(config_file) in str(info.value) and "model.dropout" in str(info.value)


def test_resume_from_the_command_line_refuses_a_run_folder_config_that_runs_code(cli_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(cli_run, folder)
    marker = tmp_path / "PWNED"
    config_file = folder / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["model"]["dropout"] = payloads(tmp_path, marker)["sympy"]
    config_file.write_text(yaml.safe_dump(config))
    proc = run_user([f"resume={folder}"], tmp_path)
    assert not marker.exists(), "the stored config ran code"
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"error: {config_file}: model.dropout._target_='builtins.float'" in proc.stderr


def test_a_stored_weights_package_outside_the_known_ones_is_not_imported(small_run, tmp_path):
    ch, run_dir = small_run
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["visionlab"]["config"]["model"]["weights"] = "package:antigravity"  # importing it opens a browser
    torch.save(ckpt, tmp_path / "weights.ckpt")
    with pytest.raises(UntrustedConfigError, match="model.weights='package:antigravity'"):
        predict_inproc(tmp_path / "weights.ckpt", tmp_path / "submission.csv")


def test_an_old_option_name_in_a_stored_config_is_never_a_path(small_run, tmp_path):
    ch, run_dir = small_run
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    config = ckpt["visionlab"]["config"]
    config["model"] = {"arch": "../../../../tmp/x", "channels": [8]}  # the pre-_target_ form names a YAML file
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(Exception, match="model.arch='../../../../tmp/x' is not one of"):
        predict_inproc(tmp_path / "old.ckpt", tmp_path / "submission.csv")


# ----------------------------------------------------------------------------- 2. one best.ckpt, the run's own


def test_training_into_a_folder_that_holds_a_run_is_refused_and_touches_nothing(small_run, tmp_path):
    ch, run_dir = small_run
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    before = {p.relative_to(folder): digest(p) for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    proc = run_user(challenge_overrides(ch) + ["trainer.max_epochs=1", f"hydra.run.dir={folder}"], tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert f"{folder} already holds a finished run" in line and "kept as it is" in line
    after = {p.relative_to(folder): digest(p) for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    assert {k: v for k, v in after.items() if k in before} == before  # nothing of the earlier run changed
    assert not list(folder.glob("checkpoints/best-v*.ckpt"))


def test_a_moved_run_resumed_from_the_start_writes_the_runs_one_best_ckpt(cli_run, tmp_path):
    folder = tmp_path / "moved"
    shutil.copytree(cli_run, folder)  # moved (copied) elsewhere
    (folder / "checkpoints" / "last.ckpt").unlink()  # killed before its first last.ckpt: resume starts over
    old = digest(folder / "checkpoints" / "best.ckpt")
    proc = run_user([f"resume={folder}", "trainer.max_epochs=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert digest(folder / "checkpoints" / "best.ckpt") != old, "best.ckpt is still the earlier training's"


def test_refused_run_folder_names_unfinished_runs_and_the_resume(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "result.json").write_text(json.dumps({"status": "running"}))
    (tmp_path / ".lock").write_text("999999999\n")  # no such process: the run was killed
    with pytest.raises(EarlierRun, match=r"an unfinished run \(status interrupted\).*resume=") as info:
        from visionlab.runs.folder import refuse_earlier_run

        refuse_earlier_run(tmp_path)
    assert not info.value.finished


# ----------------------------------------------------------------------------- 3. whole files or none


def fail_during_second_epochs_checkpoint(monkeypatch, make_error):
    """torch.save writes half a file, then fails, from the 2nd epoch's checkpoints on."""
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2 and not isinstance(f, (str, Path)) and hasattr(f, "write") and "epoch" in obj:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise make_error()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_keeps_the_last_good_checkpoint_and_says_where(make_challenge, tmp_path, monkeypatch):
    ch = make_challenge(n_per_class=4)
    folder = tmp_path / "run"
    fail_during_second_epochs_checkpoint(monkeypatch, lambda: OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(CheckpointWriteError) as info:
        train_inproc(folder, challenge_overrides(ch) + ["trainer.max_epochs=3", "callbacks.early_stopping=null"])
    message = str(info.value)
    assert str(folder / "checkpoints") in message and "disk is full" in message and "kept" in message
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0  # the first epoch's, whole
    assert not [p.name for p in (folder / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert read_result(folder)["status"] == "failed"


def test_a_crash_while_a_checkpoint_moves_into_place_keeps_the_previous_one(make_challenge, tmp_path, monkeypatch):
    """The run folder on another filesystem than the temp dir, as a run folder on a network share or
    a second disk: Lightning's own save wrote to /tmp and copied across, so a kill during the copy
    left a truncated last.ckpt under its final name."""
    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or os.stat(other_fs).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a temp dir on another filesystem than the test folder (/dev/shm)")
    monkeypatch.setattr(tempfile, "tempdir", str(other_fs))
    ch = make_challenge(n_per_class=4)
    folder = tmp_path / "run"
    real_copyfile, calls = shutil.copyfile, {"n": 0}

    def dies_while_copying(src, dst, *args, **kwargs):  # kill -9 in the middle of the copy
        if str(dst).endswith("last.ckpt"):
            calls["n"] += 1
            if calls["n"] > 1:
                Path(dst).write_bytes(Path(src).read_bytes()[:100])
                raise KeyboardInterrupt
        return real_copyfile(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", dies_while_copying)
    try:
        train_inproc(folder, challenge_overrides(ch) + ["trainer.max_epochs=3", "callbacks.early_stopping=null"])
    except (KeyboardInterrupt, SystemExit):
        pass  # the process "died" in the copy: what it leaves is what counts
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)  # whole
    assert last["epoch"] >= 0


def test_records_are_written_whole_and_a_killed_runs_record_reads_interrupted(tmp_path, monkeypatch):
    from visionlab.runs.folder import write_result

    write_result(tmp_path, {"status": "running"})
    (tmp_path / ".lock").write_text(f"{os.getpid()}\n")
    assert read_result(tmp_path)["status"] == "running"  # its process lives
    (tmp_path / ".lock").write_text("999999999\n")
    assert read_result(tmp_path)["status"] == "interrupted"  # killed: nobody holds the folder

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", lambda fd: full_disk(None))
    with pytest.raises(OSError):
        write_result(tmp_path, {"status": "completed"})
    assert json.loads((tmp_path / "result.json").read_text()) == {"status": "running"}  # the last whole one
    assert [p.name for p in tmp_path.iterdir()] and not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


# ----------------------------------------------------------------------------- 4. sweeps into one folder


def sweep(ch, sweep_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    return run_user(
        ["-m", "model.bn=true,false"]
        + challenge_overrides(ch)
        + ["trainer.max_epochs=1", "threads=1", f"hydra.sweep.dir={sweep_dir}"],
        cwd,
    )


@pytest.mark.slow
def test_a_sweep_run_again_into_its_folder_skips_finished_jobs_and_refuses_busy_ones(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)
    sweep_dir = tmp_path / "sweep"
    first = sweep(ch, sweep_dir, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    jobs = [sweep_dir / "model.bn=true", sweep_dir / "model.bn=false"]
    files = {
        p: digest(p) for job in jobs for p in job.rglob("*") if p.is_file() and p.name != ".lock" and p.suffix != ".log"
    }
    logs = {p: p.read_text() for job in jobs for p in job.glob("*.log")}
    busy = RunLock(jobs[0])  # e.g. a resume= of that job running meanwhile
    try:
        again = sweep(ch, sweep_dir, tmp_path)
    finally:
        busy.release()
    assert again.returncode != 0, again.stderr[-3000:]  # the sweep went on, and says what it refused
    output = again.stdout + again.stderr
    assert f"Refused {jobs[0]}" in output and "in use by process" in output
    assert "error: 1 job(s) refused, their folders left as they were: model.bn=true: run folder" in again.stderr
    assert f"Skipped {jobs[1]}" in output
    assert {p: digest(p) for p in files if p.is_file()} == files  # every file of the first sweep as it was
    assert all(p.read_text().startswith(text) for p, text in logs.items())  # the logs only appended to
    assert not list(sweep_dir.glob("*/checkpoints/best-v*.ckpt"))


def test_a_second_sweep_into_a_busy_sweep_folder_writes_nothing(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)
    sweep_dir = tmp_path / "sweep"
    job = sweep_dir / "model.bn=true" / ".hydra"
    job.mkdir(parents=True)
    records = {sweep_dir / "multirun.yaml": "first sweep\n", job / "config.yaml": "first job\n"}
    for path, text in records.items():
        path.write_text(text)
    first = RunLock(sweep_dir)  # the first sweep, still running
    try:
        proc = sweep(ch, sweep_dir, tmp_path)
    finally:
        first.release()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert f"sweep folder {sweep_dir} is in use by another sweep (process {os.getpid()})" in line
    assert {p: p.read_text() for p in records} == records
    assert sorted(p.name for p in (sweep_dir / "model.bn=true").iterdir()) == [".hydra"]
