"""Faults: runs interrupted for real and resumed, concurrent sweeps, sweep jobs that fail or diverge,
atomic and non-destructive submission writing, checkpoints that would run code on load."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import forkserver
import pandas as pd
import pytest
import torch
from helpers import (
    REPO,
    assert_user_error,
    challenge_overrides,
    describe,
    predict_inproc,
    run_user,
    train_inproc,
    user_env,
)

from visionlab.commands.predict import CheckpointError, load_checkpoint, write_atomically
from visionlab.errors import InputError

EPOCHS = 6
RUN = ["data.subset=256", f"trainer.max_epochs={EPOCHS}", "data.solution=null", "data.val_fraction=0.05"]


# ----------------------------------------------------------------------------- interrupt + resume


def runs_in(cwd: Path) -> list[Path]:
    base = cwd / "outputs" / "train" / "runs"
    return sorted(base.iterdir()) if base.is_dir() else []


def interrupt_training(cwd: Path, sig: int, extra: list[str] = ()) -> dict:
    """Start a real training run, wait until epoch 2 is logged and checkpointed, send `sig`."""
    cmd = [sys.executable, str(REPO / "train.py")] + RUN + list(extra)
    stderr = open(cwd / "stderr.txt", "w")
    # SIGINT as a terminal's Ctrl-C meets it (forkserver.popen: KeyboardInterrupt, even under a shell's
    # background job, `.ci/run &`, which passes it on ignored)
    proc = forkserver.popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=user_env())
    seen = []
    timer = threading.Timer(180, proc.kill)  # never hang the suite
    timer.start()
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(f"epoch 2/{EPOCHS}"):  # printed once epoch 2 is over and checkpointed
                proc.send_signal(sig)
                break
        seen.append(proc.stdout.read())
        proc.wait(timeout=120)
    finally:
        timer.cancel()
        stderr.close()
    out = "".join(seen)
    assert f"epoch 2/{EPOCHS}" in out, out[-3000:] + (cwd / "stderr.txt").read_text()[-3000:]
    [run_dir] = runs_in(cwd)
    result = json.loads((run_dir / "result.json").read_text())
    return {
        "returncode": proc.returncode,
        "run_dir": run_dir,
        "stdout": out,
        "result": result,
        "stderr": (cwd / "stderr.txt").read_text(),
    }


def val_err_steps(run_dir: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert "val/err" in acc.Tags()["scalars"], acc.Tags()
    return [e.step for e in acc.Scalars("val/err")]


SIGNALS = ["SIGKILL", "SIGINT", "SIGTERM"]


@pytest.fixture(scope="module")
def interrupted(request, tmp_path_factory):
    """One real run per signal (indirect parameter), shared by the tests below."""
    cwd = tmp_path_factory.mktemp(f"interrupt_{request.param}")
    info = interrupt_training(cwd, getattr(signal, request.param))
    info.update(signal=request.param, cwd=cwd)
    return info


@pytest.mark.slow
@pytest.mark.parametrize("interrupted", SIGNALS, indirect=True)
def test_interrupted_run_resumes_in_its_own_folder(interrupted):
    cwd, run_dir = interrupted["cwd"], interrupted["run_dir"]
    assert interrupted["result"]["status"] != "completed", interrupted["result"]  # really cut short
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    config = run_dir / ".hydra" / "config.yaml"
    config_before = config.read_bytes()

    proc = run_user([f"resume={run_dir}"], cwd)
    assert proc.returncode == 0, describe(proc)

    assert runs_in(cwd) == [run_dir], "resume started a new run folder"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed", result
    assert result["epochs"] == EPOCHS, result
    assert [h["epoch"] for h in result["history"]] == list(range(EPOCHS))
    assert sorted(val_err_steps(run_dir)) == list(range(EPOCHS))  # every epoch, once
    assert config.read_bytes() == config_before


@pytest.mark.slow
def test_csv_logger_keeps_the_epochs_before_a_kill_when_resumed(tmp_path):
    """Lightning's CSVLogger deletes metrics.csv when a run is resumed into its folder; ours appends."""
    info = interrupt_training(tmp_path, signal.SIGKILL, extra=["logger=csv"])
    run_dir = info["run_dir"]
    val_epochs = lambda: sorted(pd.read_csv(run_dir / "metrics.csv").dropna(subset=["val/err"])["step"])  # noqa: E731
    before = val_epochs()
    assert before[:2] == [0, 1], before  # flushed every epoch: the kill lost nothing
    proc = run_user([f"resume={run_dir}"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert val_epochs() == list(range(EPOCHS))  # every epoch, once


@pytest.mark.slow
@pytest.mark.parametrize(
    "interrupted",
    [
        "SIGKILL",
        "SIGINT",
        "SIGTERM",
    ],
    indirect=True,
)
def test_interrupted_run_exits_non_zero_and_is_recorded_as_interrupted(interrupted):
    """A shell script (`python train.py && python predict.py ...`) or a scheduler must see that the run
    did not finish. SIGKILL cannot be handled: the run stays `running` until resumed."""
    assert interrupted["returncode"] != 0, interrupted["stdout"][-2000:]
    expected = "running" if interrupted["signal"] == "SIGKILL" else "interrupted"
    assert interrupted["result"]["status"] == expected
    assert "Traceback" not in interrupted["stderr"]


@pytest.mark.slow
@pytest.mark.parametrize("interrupted", ["SIGINT", "SIGTERM"], indirect=True)
def test_interrupted_run_says_where_it_is_and_how_to_continue(interrupted):
    run_dir, out = interrupted["run_dir"], interrupted["stdout"]
    assert out.startswith(f"Run folder: {run_dir}\n") or f"\nRun folder: {run_dir}\n" in out[:2000], out[:2000]
    assert f"Interrupted. Continue with: python train.py resume={run_dir}\n" in out, out[-2000:]


@pytest.fixture(scope="module")
def resume_not_a_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("resume_bad")
    target = cwd / "just_a_folder"
    target.mkdir()
    (target / "notes.txt").write_text("not a run")
    proc = run_user([f"resume={target}"], cwd, timeout=120)
    return proc, cwd, target


@pytest.mark.slow
def test_resume_of_a_folder_that_is_not_a_run_creates_nothing(resume_not_a_run):
    proc, cwd, target = resume_not_a_run
    assert proc.returncode != 0
    assert f"resume='{target}' is not a training run's folder" in proc.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["just_a_folder"]  # no outputs/
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_resume_of_a_folder_that_is_not_a_run_is_a_clean_user_error(resume_not_a_run):
    proc, _, target = resume_not_a_run
    assert_user_error(proc, f"resume='{target}'", ".hydra/config.yaml")


def test_result_counts_every_trained_epoch_when_the_test_set_is_labelled(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)  # has solution.csv: the run is tested after fit
    # lr=0: val/err never improves, so best.ckpt is epoch 1 while 3 epochs are trained
    result = train_inproc(
        tmp_path / "run",
        challenge_overrides(ch)
        + ["data.solution=solution.csv", "trainer.max_epochs=3", "optimizer=sgd", "optimizer.lr=0.0"],
    )
    assert result["status"] == "completed" and result["best_epoch"] == 1
    assert "test_err" in result
    assert result["epochs"] == 3, result
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]


# ----------------------------------------------------------------------------- sweeps


def sweep_dirs(cwd: Path) -> list[Path]:
    base = cwd / "outputs" / "train" / "multiruns"
    return sorted(base.iterdir()) if base.is_dir() else []


@pytest.mark.slow
def test_two_sweeps_started_together_get_their_own_folders_and_summaries(tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "model.bn=true,false",
        "data.subset=32",
        "trainer.max_epochs=1",
        "data.solution=null",
        "data.val_fraction=0.02",
    ]
    procs = [
        forkserver.popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=user_env())
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"{out[-2000:]}\n{err[-3000:]}"
    dirs = sweep_dirs(tmp_path)
    assert len(dirs) == 2, dirs
    printed = {
        line.split(":", 1)[1].strip()
        for out, _ in outs
        for line in out.splitlines()
        if line.startswith("Sweep directory:")
    }
    assert printed == {str(d.relative_to(tmp_path)) for d in dirs}
    for d in dirs:
        summary = pd.read_csv(d / "summary.csv")
        assert sorted(summary["run"]) == ["model.bn=false", "model.bn=true"], summary
        assert list(summary["status"]) == ["completed", "completed"], summary
        assert all(Path(r).parent == d for r in summary["run_dir"])
        for run in summary["run"]:
            assert json.loads((d / run / "result.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_sweep_records_failed_and_diverged_jobs_and_goes_on(tmp_path):
    """Job 0 raises (an invalid activation), job 1 diverges (NaN loss: all-ones weights, no BN, SGD
    lr=10, leaky ReLU so that the units cannot die before overflowing), job 2 still runs to the end
    (with ReLU the loss blows up to ~1e15 but stays finite: that is not a divergence)."""
    proc = run_user(
        [
            "-m",
            "model.activation=not_an_activation,leaky_relu,relu",
            "model.init=ones",
            "model.bn=false",
            "optimizer=sgd",
            "optimizer.lr=10",
            "data.batch_size=8",
            "data.subset=32",
            "trainer.max_epochs=1",
            "data.solution=null",
            "data.val_fraction=0.02",
        ],
        tmp_path,
    )
    assert proc.returncode != 0, describe(proc)  # a job failed: the sweep went on, but says so in its exit code
    assert "error: 1 of 3 jobs failed: model.activation=not_an_activation" in proc.stderr, describe(proc)
    assert "Traceback" not in proc.stderr
    [d] = sweep_dirs(tmp_path)
    summary = pd.read_csv(d / "summary.csv").set_index("run")
    assert list(summary.index) == [
        "model.activation=not_an_activation",
        "model.activation=leaky_relu",
        "model.activation=relu",
    ]
    failed = summary.loc["model.activation=not_an_activation"]
    assert failed["status"] == "failed"
    assert "model.activation='not_an_activation'" in failed["error"] and "relu" in failed["error"]
    diverged = summary.loc["model.activation=leaky_relu"]
    assert diverged["status"] == "diverged"
    history = json.loads((d / "model.activation=leaky_relu" / "result.json").read_text())["history"]
    assert any(h["train/loss"] != h["train/loss"] for h in history), history  # a NaN loss: it really diverged
    assert summary.loc["model.activation=relu", "status"] == "completed"


# ----------------------------------------------------------------------------- predict: writing the submission


def test_predict_never_overwrites_a_submission_unless_asked(trained, tmp_path):
    ch, ckpt = trained
    out = tmp_path / "submission.csv"
    out.write_text("precious,hand-made\n")
    with pytest.raises(InputError, match=f"(?s){re.escape(str(out))} exists.*overwrite=true"):
        predict_inproc(ckpt, out)
    assert out.read_text() == "precious,hand-made\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]  # no temp file left either
    predict_inproc(ckpt, out, ["overwrite=true"])
    table = pd.read_csv(out, dtype=str)
    assert list(table[ch.id_col]) == ch.test_ids
    assert set(table[ch.label_col]) <= set(ch.classes)


class PartialWriteCrash(RuntimeError):
    pass


def crash_after_partial_write(self, path, *args, **kwargs):
    with open(path, "w") as fh:
        fh.write("image_id,label\nimg_1,c")  # half a file, then the process "dies"
    raise PartialWriteCrash("disk full")


@pytest.mark.parametrize("existing", [False, True])
def test_submission_write_is_atomic(tmp_path, monkeypatch, existing):
    final = tmp_path / "submission.csv"
    if existing:
        final.write_text("image_id,label\nold,1\n")
    df = pd.DataFrame({"image_id": ["a", "b"], "label": ["x", "y"]})
    monkeypatch.setattr(pd.DataFrame, "to_csv", crash_after_partial_write)
    with pytest.raises(PartialWriteCrash):
        write_atomically(df, final, overwrite=True)
    if existing:  # the previous submission is intact
        assert final.read_text() == "image_id,label\nold,1\n"
        assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]
    else:
        assert list(tmp_path.iterdir()) == []  # neither the final name nor a temp file
    monkeypatch.undo()
    write_atomically(df, final, overwrite=True)
    assert pd.read_csv(final).equals(df)
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


# ----------------------------------------------------------------------------- checkpoints that run code


MARKER_ENV = "VL_TEST_PWNED_MARKER"


class RunsCodeOnLoad:
    """Unpickling this calls os.system: a checkpoint holding it would run a command when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(path: Path, marker: Path, trained_ckpt: Path | None = None) -> Path:
    ckpt = torch.load(trained_ckpt, map_location="cpu", weights_only=True) if trained_ckpt else {"state_dict": {}}
    ckpt["visionlab"] = dict(ckpt.get("visionlab", {}), payload=RunsCodeOnLoad(marker))
    torch.save(ckpt, path)
    return path


def test_checkpoint_that_would_run_code_is_refused(trained, tmp_path):
    _, good = trained
    marker = tmp_path / "PWNED"
    path = evil_checkpoint(tmp_path / "evil.ckpt", marker, good)
    with pytest.raises(CheckpointError, match=f"ckpt='{re.escape(str(path))}'"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"ckpt='{re.escape(str(path))}'"):
        predict_inproc(path, tmp_path / "submission.csv")
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert not (tmp_path / "submission.csv").exists()


@pytest.mark.slow
def test_predict_cli_refuses_a_checkpoint_that_would_run_code(trained, tmp_path):
    _, good = trained
    marker = tmp_path / "PWNED"
    path = evil_checkpoint(tmp_path / "evil.ckpt", marker, good)
    proc = run_user([f"ckpt={path}", f"output={tmp_path / 'sub.csv'}"], tmp_path, script="predict.py", timeout=120)
    assert_user_error(proc, f"ckpt='{path}'")
    assert not marker.exists()
    assert not (tmp_path / "sub.csv").exists()


def test_refusal_of_a_code_running_checkpoint_says_why(tmp_path):
    path = evil_checkpoint(tmp_path / "evil.ckpt", tmp_path / "PWNED")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "system" in message or "code" in message, message
    assert not message.rstrip(").").endswith("set to `False`"), message


@pytest.mark.slow
def test_last_checkpoint_is_the_last_epoch_even_without_a_new_best(tmp_path):
    """Lightning's save_last writes last.ckpt only with a new best; resume= needs the true last epoch."""
    import torch

    proc = forkserver.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "data.subset=200",
            "data.val_fraction=0.05",
            "trainer.max_epochs=4",
            "optimizer=sgd",
            "optimizer.lr=0.0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (ckpts,) = tmp_path.glob("outputs/train/runs/*/checkpoints")
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 3
    assert (ckpts / "best.ckpt").is_file()
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_ctrl_c_still_works_after_an_interrupted_run_in_the_same_process(tmp_path, monkeypatch):
    """Lightning ignores SIGINT while it shuts down after a Ctrl-C, then its teardown puts the handler
    back (checked with Lightning 2.6): a notebook, or a sweep run in one process, must stay
    interruptible after an interrupted run. A guard: if a Lightning release stops restoring it,
    this fails."""
    from visionlab.models.classifier import ImageClassifier

    def ctrl_c(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(ImageClassifier, "training_step", ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        train_inproc(tmp_path / "run", ["data.subset=100", "trainer.max_epochs=1"])
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before
