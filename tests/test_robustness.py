"""Issue #10: nothing lost, nothing cryptic. Resume with typed overrides and a record a failed resume
leaves alone; one process per run folder; one error listing every input problem; skip that skips
missing files too; no sample submission; symlink loops; other CSV delimiters; config values checked
before data loads; predict's output checked before predicting; why a checkpoint is unloadable;
decompression bombs; temporary files of killed predicts."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import (
    REPO,
    assert_user_error,
    build_challenge,
    challenge_overrides,
    describe,
    predict_inproc,
    run_user,
    train_inproc,
    write_image,
)

from visionlab.commands.predict import CheckpointError, load_checkpoint, write_atomically
from visionlab.data import ChallengeDataModule, DataError, sources
from visionlab.errors import InputError
from visionlab.runs.folder import LOCK_FILE, RunFolderInUse, RunLock


def make_dm(ch, **kwargs) -> ChallengeDataModule:
    args = dict(root=str(ch.root), id_col=ch.id_col, label_col=ch.label_col, image_size=16)
    args.update(kwargs)
    return ChallengeDataModule(**args)


def add_rows(ch, rows, csv: str = "train.csv") -> None:
    with open(ch.root / csv, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(",".join(row) + "\n")


def checkpoints_under(path: Path) -> list[Path]:
    return sorted(Path(path).rglob("*.ckpt"))


# ----------------------------------------------------------------------------- 1, 2: resume and the run folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real one-epoch run of train.py on a small challenge: (challenge, run folder)."""
    base = tmp_path_factory.mktemp("robust_run")
    ch = build_challenge(base / "challenge", n_per_class=4)
    proc = run_user(challenge_overrides(ch) + ["trainer.max_epochs=1", "data.val_fraction=0.25"], base)
    assert proc.returncode == 0, describe(proc)
    [run_dir] = list((base / "outputs" / "train" / "runs").iterdir())
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"
    return ch, run_dir


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the trained run (resuming changes a run)."""
    _, run_dir = trained_run
    return Path(shutil.copytree(run_dir, tmp_path / "outputs" / "train" / "runs" / run_dir.name))


@pytest.mark.slow
def test_resume_with_overrides_keeps_their_types(run_copy, tmp_path):
    """The README's `resume=<run> trainer.max_epochs=N` and an optimizer.lr override: typed, not strings."""
    config = (run_copy / ".hydra" / "config.yaml").read_bytes()
    proc = run_user([f"resume={run_copy}", "trainer.max_epochs=2", "optimizer.lr=0.001"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert "TypeError" not in proc.stderr
    result = json.loads((run_copy / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs"] == 2, result
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    assert (run_copy / ".hydra" / "config.yaml").read_bytes() == config


@pytest.mark.slow
@pytest.mark.parametrize(
    "override,needle",
    [
        ("optimizer.lr=-1", "optimizer.lr=-1"),  # refused before training
        ("model.activation=not_an_activation", "model.activation"),  # fails while building the model
    ],
)
def test_a_failed_resume_leaves_the_earlier_record_as_it_was(run_copy, tmp_path, override, needle):
    before = json.loads((run_copy / "result.json").read_text())
    proc = run_user([f"resume={run_copy}", override], tmp_path)
    assert_user_error(proc, needle)
    after = json.loads((run_copy / "result.json").read_text())
    assert after == before
    assert after["status"] == "completed"


def hold_lock_in_child(run_dir: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from visionlab.runs.folder import RunLock; RunLock(sys.argv[1]); "
        "print('held', flush=True); time.sleep(300)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    assert child.stdout.readline().strip() == "held"
    return child


@pytest.mark.slow
def test_a_run_folder_is_held_by_one_process_and_a_kill_9_frees_it(run_copy, tmp_path):
    before = (run_copy / "result.json").read_bytes()
    child = hold_lock_in_child(run_copy)
    try:
        proc = run_user([f"resume={run_copy}", "trainer.max_epochs=2"], tmp_path)
        assert_user_error(proc, f"run folder {run_copy} is in use by process {child.pid}")
        assert "epoch 2/" not in proc.stdout
        assert (run_copy / "result.json").read_bytes() == before
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lock = RunLock(run_copy)  # the kill left nothing stuck
    assert (run_copy / LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()


def test_run_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    first = RunLock(tmp_path)
    with pytest.raises(RunFolderInUse, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path)
    first.release()
    RunLock(tmp_path).release()


def test_training_refuses_a_run_folder_another_process_holds(tmp_path):
    ch = build_challenge(tmp_path / "challenge", n_per_class=2)
    (tmp_path / "run").mkdir()
    child = hold_lock_in_child(tmp_path / "run")
    try:
        with pytest.raises(RunFolderInUse, match=str(child.pid)):
            train_inproc(tmp_path / "run", challenge_overrides(ch) + ["trainer.max_epochs=1"])
        assert not (tmp_path / "run" / "result.json").exists()  # nothing written by the refused run
    finally:
        child.kill()
        child.wait()


# ----------------------------------------------------------------------------- 3: missing-value labels


@pytest.mark.parametrize("marker", ["NaN", "nan", "None", "null"])
def test_missing_value_label_is_refused_like_an_empty_one(make_challenge, marker):
    ch = make_challenge(n_per_class=2)
    write_image(ch.root / "train" / "extra.png", "png_L", (9, 9, 9), (8, 8), np.random.default_rng(0))
    add_rows(ch, [("extra.png", marker)])
    with pytest.raises(DataError, match=f"(?s)'{ch.label_col}'.*{marker}.*line\\(s\\) \\[8\\]"):
        make_dm(ch, val_fraction=0.0).setup("fit")


def test_ids_that_look_like_missing_values_stay_file_names(tmp_path):
    (tmp_path / "train").mkdir()
    for name in ("nan", "NA", "null"):
        write_image(tmp_path / "train" / f"{name}.png", "png_L", (9, 9, 9), (8, 8), np.random.default_rng(0))
    (tmp_path / "train.csv").write_text("image_id,label\nnan,a\nNA,NA\nnull,b\n")
    items = sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    assert items.ids == ["nan", "NA", "null"] and items.labels == ["a", "NA", "b"]


# ----------------------------------------------------------------------------- 4, 5: one pass; skip that skips


def messy_challenge(base: Path):
    """Training: a missing file, an id that escapes the folder, two unreadable images, a NaN label;
    test: a sample submission id without a file and an unreadable test image."""
    ch = build_challenge(base / "challenge", n_per_class=4, solution=False)
    (ch.root / "train" / "notes.png").write_text("not an image")
    (ch.root / "train" / "cut.jpg").write_bytes((ch.root / "test" / "test_0000.jpg").read_bytes()[:100])
    write_image(ch.root / "train" / "unlabelled.png", "png_L", (9, 9, 9), (8, 8), np.random.default_rng(0))
    add_rows(
        ch,
        [
            ("gone.png", "cat"),
            ("../outside.png", "dog"),
            ("notes.png", "frog"),
            ("cut.jpg", "cat"),
            ("unlabelled.png", "NaN"),
        ],
    )
    (ch.root / "test" / "broken.png").write_text("not an image either")
    add_rows(ch, [("ghost.jpg", "cat"), ("broken.png", "cat")], csv="sample_submission.csv")
    return ch


NEEDLES = [
    "'gone.png': missing",
    "'../outside.png': refused",
    "notes.png",
    "cut.jpg",
    "'class'",
    "NaN",
    "'ghost.jpg': missing",
    "broken.png",
    "data.on_bad_image=skip",
]


@pytest.mark.slow
def test_every_problem_of_every_kind_in_one_error_before_training(tmp_path):
    ch = messy_challenge(tmp_path)
    proc = run_user(challenge_overrides(ch) + ["trainer.max_epochs=1"], tmp_path)
    message = assert_user_error(proc, *NEEDLES)
    assert "5 kinds of problem" in message, message
    assert "epoch 1/" not in proc.stdout
    assert checkpoints_under(tmp_path) == []


def test_one_pass_lists_training_and_test_problems_together(tmp_path):
    ch = messy_challenge(tmp_path)
    with pytest.raises(DataError) as err:
        make_dm(ch).setup(None)
    for needle in NEEDLES:
        assert needle in str(err.value), needle


def test_skip_leaves_out_missing_and_unsafe_ids_too_and_keeps_test_rows(tmp_path):
    ch = messy_challenge(tmp_path)
    # the NaN label is a CSV problem, not an image one: skip does not hide it
    with pytest.raises(DataError, match="NaN"):
        make_dm(ch, on_bad_image="skip").setup(None)
    lines = (ch.root / "train.csv").read_text().splitlines()
    (ch.root / "train.csv").write_text("\n".join(line for line in lines if not line.endswith("NaN")) + "\n")
    result = train_inproc(
        tmp_path / "run", challenge_overrides(ch) + ["trainer.max_epochs=1", "data.on_bad_image=skip"]
    )
    assert result["status"] == "completed"
    assert result["skipped_images"] == 4 + 2, (
        result
    )  # train: missing, escaping, 2 unreadable; test: missing, unreadable
    out = predict_inproc(
        tmp_path / "run" / "checkpoints" / "best.ckpt", tmp_path / "sub.csv", ["data.on_bad_image=skip"]
    )
    table = pd.read_csv(out, dtype=str)
    assert list(table[ch.id_col]) == ch.test_ids + ["ghost.jpg", "broken.png"]  # every row kept
    assert set(table[ch.label_col]) <= set(ch.classes)


# ----------------------------------------------------------------------------- 6: no sample submission


def test_challenge_without_sample_submission_trains_and_predicts(tmp_path, caplog):
    ch = build_challenge(tmp_path / "challenge", n_per_class=4, solution=False)
    ch.sample_submission.unlink()
    with caplog.at_level(logging.WARNING):
        result = train_inproc(tmp_path / "run", challenge_overrides(ch) + ["trainer.max_epochs=1"])
    assert result["status"] == "completed"
    assert "No sample submission" in caplog.text and "sorted" in caplog.text
    out = predict_inproc(tmp_path / "run" / "checkpoints" / "best.ckpt", tmp_path / "sub.csv")
    table = pd.read_csv(out, dtype=str)
    assert list(table.columns) == [ch.id_col, ch.label_col]
    assert list(table[ch.id_col]) == sorted(os.listdir(ch.root / "test"))


# ----------------------------------------------------------------------------- 7: symlink loops, dangling links


def test_symlink_loops_and_dangling_links_are_missing_files(make_challenge):
    ch = make_challenge(n_per_class=2)
    train = ch.root / "train"
    os.symlink(train / "loop_b.png", train / "loop_a.png")
    os.symlink(train / "loop_a.png", train / "loop_b.png")
    os.symlink(train / "nowhere.png", train / "dangling.png")
    os.symlink(train / "dir_loop", train / "dir_loop")  # named by no row: listing the folder must survive it
    make_dm(ch, val_fraction=0.0).setup("fit")
    add_rows(ch, [("loop_a.png", "cat"), ("dangling", "dog")])
    with pytest.raises(DataError) as err:
        make_dm(ch, val_fraction=0.0).setup("fit")
    assert "'loop_a.png': missing: a symbolic link loop" in str(err.value)
    assert "'dangling': missing: a link to nothing" in str(err.value)
    dm = make_dm(ch, val_fraction=0.0, on_bad_image="skip")
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.skipped) == 2


# ----------------------------------------------------------------------------- 8: other delimiters


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_with_another_delimiter_is_named_as_the_problem(make_challenge, sep):
    ch = make_challenge(n_per_class=2)
    path = ch.root / "train.csv"
    path.write_text(path.read_text().replace(",", sep))
    with pytest.raises(DataError) as err:
        make_dm(ch, val_fraction=0.0).setup("fit")
    message = str(err.value)
    assert f"it is {sep!r}-separated" in message and "Save it with commas" in message, message
    fix = message.split("e.g. ", 1)[1].split(". (Set", 1)[0]  # the command it offers works
    subprocess.run(["bash", "-c", fix], check=True)
    dm = make_dm(ch, val_fraction=0.0)
    dm.setup("fit")
    assert len(dm.train_set) == 6


# ----------------------------------------------------------------------------- 9: config values


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.lr=-1", "optimizer.lr"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay"),
        ("data.batch_size=0", "data.batch_size"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
    ],
)
def test_bad_config_values_are_refused_naming_the_key_before_data_loads(tmp_path, override, key):
    # data.root does not exist: a check that ran after the data loads would complain about data.root
    args = ["data=challenge", f"data.root={tmp_path / 'no_such_download'}", override]
    with pytest.raises(InputError, match=key.replace(".", r"\.")) as err:
        train_inproc(tmp_path / "run", args)
    assert "data.root" not in str(err.value)
    assert checkpoints_under(tmp_path) == []


@pytest.mark.slow
def test_negative_learning_rate_is_a_one_line_error(tmp_path):
    proc = run_user(["optimizer.lr=-1", "data.subset=64"], tmp_path, timeout=120)
    assert_user_error(proc, "optimizer.lr=-1")


# ----------------------------------------------------------------------------- 10, 13: predict's output


def no_predicting(*args, **kwargs):
    raise AssertionError("predicted before checking the output")


@pytest.mark.parametrize("overwrite", ["true", "false"])
def test_output_that_is_a_folder_is_refused_before_predicting(trained, tmp_path, monkeypatch, overwrite):
    _, ckpt = trained
    monkeypatch.setattr("visionlab.commands.predict.predict_probabilities", no_predicting)
    folder = tmp_path / "existing"
    folder.mkdir()
    with pytest.raises(InputError, match=f"output='{folder}' is a folder.*submission.csv"):
        predict_inproc(ckpt, folder, [f"overwrite={overwrite}"])
    assert list(folder.iterdir()) == []


def test_existing_output_is_refused_before_predicting(trained, tmp_path, monkeypatch):
    _, ckpt = trained
    monkeypatch.setattr("visionlab.commands.predict.predict_probabilities", no_predicting)
    out = tmp_path / "submission.csv"
    out.write_text("mine\n")
    with pytest.raises(InputError, match="exists and is kept"):
        predict_inproc(ckpt, out)
    assert out.read_text() == "mine\n"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_of_killed_predicts_are_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".submission.csv.visionlab-{dead_pid()}.tmp"
        stale.write_bytes(b"")
        live = tmp_path / f".submission.csv.visionlab-{sleeper.pid}.tmp"  # a predict still writing
        live.write_bytes(b"")
        mine = tmp_path / ".notes.tmp"  # not ours: no pid in the name
        mine.write_text("keep")
        # a user's own files of the shape .<x>.<digits>.tmp, one beside the submission's name: not ours
        users = [tmp_path / f".other.csv.{dead_pid()}.tmp", tmp_path / f".submission.csv.{dead_pid()}.tmp"]
        for path in users:
            path.write_text("keep")
        write_atomically(pd.DataFrame({"a": [1]}), tmp_path / "submission.csv", overwrite=False)
        assert not stale.exists()
        assert live.exists() and mine.read_text() == "keep"
        assert all(path.read_text() == "keep" for path in users)
        assert (tmp_path / "submission.csv").is_file()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.slow
def test_predict_killed_mid_write_leaves_nothing_the_next_run_keeps(trained, tmp_path):
    """kill -9 between writing the temporary file and renaming it: the next predict cleans up."""
    _, ckpt = trained
    out = tmp_path / "sub.csv"
    code = (
        f"import os, pandas as pd, sys; sys.path[:0] = [{str(REPO / 'tests')!r}]\n"
        "from visionlab.commands import predict\n"
        "def die(self, path, *a, **k):\n"
        "    open(path, 'w').close(); os.kill(os.getpid(), 9)\n"
        "pd.DataFrame.to_csv = die\n"
        "from helpers import predict_inproc\n"
        f"predict_inproc({str(ckpt)!r}, __import__('pathlib').Path({str(out)!r}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".sub.csv."), leftovers
    predict_inproc(ckpt, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]


# ----------------------------------------------------------------------------- 11: why a checkpoint cannot load


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def _empty(d):
    (d / "x.ckpt").write_bytes(b"")


def _truncated(d):
    torch.save({"state_dict": {"w": torch.zeros(100)}}, d / "whole.ckpt")
    data = (d / "whole.ckpt").read_bytes()
    (d / "x.ckpt").write_bytes(data[: len(data) // 2])


def _random(d):
    (d / "x.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))


def _text(d):
    (d / "x.ckpt").write_text("<html>404 Not Found</html>\n")


def _code(d):
    torch.save({"state_dict": {}, "payload": RunsCode()}, d / "x.ckpt")


def _pickle(d):
    import pickle

    (d / "x.ckpt").write_bytes(pickle.dumps({"state_dict": {}}))


@pytest.mark.parametrize(
    "make,says",
    [
        (_empty, "the file is empty (0 bytes)"),
        (_truncated, "cut short or damaged"),
        (_random, "not a torch file at all"),
        (_text, "not a torch file at all (it starts with the text '<html>404 Not Found</html>')"),
        (_code, "refused for safety: it holds pickled Python objects (posix.system) that would run code"),
        (_pickle, "a Python pickle, not a file written by torch.save: refused for safety"),
    ],
)
def test_unloadable_checkpoint_says_which_case_in_full(tmp_path, make, says):
    make(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "x.ckpt")
    message = str(err.value)
    assert says in message, message
    assert "Re-running" not in message and ".." not in message.replace(str(tmp_path), ""), message


def test_unloadable_weights_file_says_which_case(tmp_path):
    from visionlab.models.backbones import read_state_dict

    _text(tmp_path)
    with pytest.raises(InputError, match="not a torch file at all"):
        read_state_dict(tmp_path / "x.ckpt")


# ----------------------------------------------------------------------------- 12: decompression bombs


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A real greyscale PNG of width x height black pixels, compressed row by row (a few hundred KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png", 20_000, 10_000)  # 200 megapixels


def test_decompression_bomb_is_refused_from_its_header(bomb):
    assert bomb.stat().st_size < 1_000_000
    start = time.perf_counter()
    with pytest.raises(sources.ImageTooLarge, match="200 megapixels.*data.max_pixels"):
        sources.load_image(bomb, 16)
    assert time.perf_counter() - start < 1.0  # never decoded


def test_decompression_bomb_in_a_challenge_is_refused_or_skipped(make_challenge, bomb):
    ch = make_challenge(n_per_class=2)
    shutil.copy(bomb, ch.root / "train" / "bomb.png")
    add_rows(ch, [("bomb.png", "cat")])
    with pytest.raises(DataError, match="(?s)bomb.png.*data.max_pixels"):
        make_dm(ch, val_fraction=0.0).setup("fit")
    dm = make_dm(ch, val_fraction=0.0, on_bad_image="skip")
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.skipped) == 1


def test_max_pixels_is_a_key_and_real_photos_pass(tmp_path):
    from PIL import Image

    Image.new("L", (1000, 1000), 7).save(tmp_path / "photo.png")
    assert sources.load_image(tmp_path / "photo.png", 8).shape == (8, 8, 3)  # default limit: far above
    with pytest.raises(sources.ImageTooLarge, match="data.max_pixels=999999"):
        sources.load_image(tmp_path / "photo.png", 8, max_pixels=999_999)
    with pytest.raises(DataError, match="data.max_pixels"):
        ChallengeDataModule(root=str(tmp_path), max_pixels=0)
