"""Issue 20, items 7 and 8 (part): what predict and the data readers must not do silently. A checkpoint
of other classes, symlinked test images, predict's temporary files, a read-only output folder, a full
disk, an absurd data.image_size, a folder named like an image, NFD file names, labels differing only
in case, a solution label that is no class."""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import build_challenge, predict_inproc, write_image

from visionlab.commands.predict import CheckpointError
from visionlab.data import ChallengeDataModule, DataError, sources
from visionlab.errors import InputError


def make_dm(ch, **kwargs) -> ChallengeDataModule:
    args = dict(root=str(ch.root), id_col=ch.id_col, label_col=ch.label_col, image_size=16, batch_size=8)
    args.update(kwargs)
    return ChallengeDataModule(**args)


def no_images(*args, **kwargs):
    raise AssertionError("an image was read")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------------------------- 1: a checkpoint of other classes


def test_checkpoint_of_other_classes_is_refused_where_the_classes_are_known(trained, tmp_path, monkeypatch):
    _, ckpt = trained  # cat, dog, frog
    other = build_challenge(tmp_path / "other", classes=("ant", "bee", "cow"), n_per_class=1, n_test_per_class=1)
    data = ["data.root=" + str(other.root)]
    monkeypatch.setattr(sources, "load_image", no_images)  # refused before any image is read
    # the training CSV's labels
    with pytest.raises(CheckpointError) as err:
        predict_inproc(ckpt, tmp_path / "a.csv", data)
    message = one_line(err)
    for needle in ("'ant'", "'cat'", str(other.root / "train.csv"), "only in the data", "data.root="):
        assert needle in message, (needle, message)
    # no training CSV: a solution file's labels
    (other.root / "train.csv").unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(other.solution))) as err:
        predict_inproc(ckpt, tmp_path / "b.csv", data + ["data.solution=solution.csv"])
    assert "'bee'" in one_line(err) and "'dog'" in str(err.value)
    monkeypatch.undo()
    # classes that cannot be known (the sample submission's column holds the placeholder 'ant'): no word
    out = predict_inproc(ckpt, tmp_path / "c.csv", data)
    assert set(pd.read_csv(out, dtype=str)[other.label_col]) <= {"cat", "dog", "frog"}
    # a solution that names some of the classes only is no other challenge
    pd.DataFrame({other.id_col: other.test_ids, other.label_col: ["cat", "dog", "cat"]}).to_csv(
        other.solution, index=False
    )
    predict_inproc(ckpt, tmp_path / "d.csv", data + ["data.solution=solution.csv"])


# ----------------------------------------------------------------------------- 2: symlinked test images


def test_test_images_linked_from_elsewhere_are_named_never_dropped(tmp_path):
    """No sample submission: the test ids are the folder's files. 15 of 20 are links pointing out of
    it: refused (a folder from anyone must not read the rest of the disk), and named, where they used
    to be left out without a word (15 of 20 rows missing from the submission)."""
    ch = build_challenge(tmp_path / "c", n_per_class=1, n_test_per_class=0)
    (ch.root / "sample_submission.csv").unlink()
    store = tmp_path / "store"  # the real files live out of the test folder
    store.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        target = (store if i >= 5 else ch.root / "test") / f"t{i:02d}.png"
        write_image(target, "png_L", (100, 100, 100), (12, 12), rng)
        if i >= 5:
            os.symlink(target, ch.root / "test" / target.name)
    os.symlink(store / "gone.png", ch.root / "test" / "dangling.png")
    with pytest.raises(DataError) as info:
        make_dm(ch, classes=["cat", "dog", "frog"]).setup("predict")
    message = str(info.value)
    assert "16 id(s)" in message and "'dangling.png': missing: a link to nothing" in message
    assert "'t19.png': refused: a link that points outside the image folder" in message
    assert "data.on_bad_image=skip" in message
    dm = make_dm(ch, classes=["cat", "dog", "frog"], on_bad_image="skip")
    dm.setup("predict")
    assert len(dm.test_items) == 21 and len(dm.skipped) == 16  # every row kept, the refused predicted from black


# ----------------------------------------------------------------------------- 3: predict's temporary files


def test_predict_cleans_only_its_own_dead_temporaries_of_the_file_it_writes(trained, tmp_path):
    _, ckpt = trained
    dead = dead_pid()
    users = [tmp_path / f".submission.csv.{dead}.tmp", tmp_path / f".other.csv.{dead}.tmp"]  # a user's own
    for path in users:
        path.write_text("keep")
    ours_other_file = tmp_path / f".other.csv.visionlab-{dead}.tmp"  # predict's, but of another file
    ours_other_file.write_text("")
    stale = tmp_path / f".submission.csv.visionlab-{dead}.tmp"
    stale.write_text("")
    predict_inproc(ckpt, tmp_path / "submission.csv")
    assert all(p.read_text() == "keep" for p in users) and ours_other_file.exists()
    assert not stale.exists()


# ----------------------------------------------------------------------------- 4: a read-only output folder


@pytest.mark.parametrize("inside", ["", "new/sub"])
def test_read_only_output_folder_is_refused_before_loading(trained, tmp_path, monkeypatch, inside):
    _, ckpt = trained
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    real_access = os.access

    def access(path, mode, *args, **kwargs):  # root ignores the mode bits; a read-only mount does not
        if Path(path).absolute() == folder and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr("visionlab.commands.predict.load_checkpoint", no_images)
    out = folder / inside / "submission.csv"
    try:
        with pytest.raises(InputError) as err:
            predict_inproc(ckpt, out)
    finally:
        folder.chmod(0o755)
    message = one_line(err)
    assert str(folder) in message and "read-only" in message and "output=" in message, message
    assert list(folder.iterdir()) == []


# ----------------------------------------------------------------------------- 5: a full disk


def test_full_disk_names_the_file_removes_the_temporary_and_keeps_the_submission(trained, tmp_path, monkeypatch):
    _, ckpt = trained
    out = tmp_path / "submission.csv"
    out.write_text("filename,class\nold,cat\n")

    def disk_full(self, path, *args, **kwargs):
        with open(path, "w") as fh:
            fh.write("filename,cl")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(InputError) as err:
        predict_inproc(ckpt, out, ["overwrite=true"])
    message = one_line(err)
    assert str(out) in message and "disk is full" in message, message
    assert out.read_text() == "filename,class\nold,cat\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]  # no temporary left


# ----------------------------------------------------------------------------- 6: data.image_size


@pytest.mark.parametrize(
    "kwargs,needles",
    [
        (dict(image_size=100000), ["data.image_size=100000", "4096"]),
        (dict(image_size=4000, batch_size=10**6), ["data.image_size=4000", "data.batch_size=1000000"]),
    ],
)
def test_absurd_image_size_is_refused_naming_the_key_before_reading_images(tmp_path, monkeypatch, kwargs, needles):
    ch = build_challenge(tmp_path / "c", n_per_class=2, n_test_per_class=1)
    monkeypatch.setattr(sources, "load_image", no_images)
    with pytest.raises(DataError) as err:
        make_dm(ch, **kwargs).setup(None)
    message = one_line(err)
    for needle in needles:
        assert needle in message, message


# ----------------------------------------------------------------------------- 7: folders and NFD names


def test_folder_named_like_an_image_is_named_and_nfd_file_names_are_found(tmp_path):
    ch = build_challenge(tmp_path / "c", n_per_class=1, n_test_per_class=1)
    test = ch.root / "test"
    name = "caf\u00e9.png"  # the CSV's NFC
    write_image(test / unicodedata.normalize("NFD", name), "png_L", (90, 90, 90), (12, 12), np.random.default_rng(0))
    assert not (test / name).exists()  # Linux keeps both forms apart
    sample = pd.read_csv(ch.sample_submission, dtype=str)
    rows = pd.DataFrame({ch.id_col: [name], ch.label_col: "cat"})
    pd.concat([sample, rows]).to_csv(ch.sample_submission, index=False)
    dm = make_dm(ch, classes=["cat", "dog", "frog"])
    dm.setup("predict")
    assert dm.test_items.ids[-1] == name and len(dm.test_set) == len(sample) + 1  # the NFD file found
    (test / "x.png").mkdir()
    pd.concat([sample, rows, pd.DataFrame({ch.id_col: ["x.png"], ch.label_col: "cat"})]).to_csv(
        ch.sample_submission, index=False
    )
    with pytest.raises(DataError, match=r"'x\.png': is a folder, not an image"):
        make_dm(ch, classes=["cat", "dog", "frog"]).setup("predict")
    # no sample submission: the ids are the files on disk (NFD), a solution file in NFC labels them
    ch.sample_submission.unlink()
    (test / "x.png").rmdir()
    truth = pd.DataFrame({ch.id_col: sorted(p.name for p in test.iterdir()), ch.label_col: "dog"})
    truth[ch.id_col] = truth[ch.id_col].map(lambda n: unicodedata.normalize("NFC", n))
    truth.to_csv(ch.solution, index=False)
    dm = make_dm(ch, classes=["cat", "dog", "frog"], solution="solution.csv")
    dm.setup("predict")
    assert dm.has_test_labels and len(dm.test_set) == len(truth)


# ----------------------------------------------------------------------------- 8, 9: labels


def test_labels_differing_only_in_case_are_warned_about(tmp_path, caplog):
    ch = build_challenge(tmp_path / "c", classes=("shirt", "Shirt", "dog"), counts={"shirt": 3, "Shirt": 5})
    with caplog.at_level(logging.WARNING, logger="visionlab.data.datamodule"):
        make_dm(ch, val_fraction=0.0).setup("fit")
    lines = [r.getMessage() for r in caplog.records if "'shirt'" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], caplog.text
    assert "'Shirt' (5)" in lines[0] and "'shirt' (3)" in lines[0], lines[0]


def test_solution_label_that_is_no_class_is_warned_about(tmp_path, caplog):
    ch = build_challenge(tmp_path / "c", n_per_class=2, n_test_per_class=1)
    truth = pd.read_csv(ch.solution, dtype=str)
    truth.loc[0, ch.label_col] = "kat"
    truth.to_csv(ch.solution, index=False)
    dm = make_dm(ch, val_fraction=0.0, solution="solution.csv")
    with caplog.at_level(logging.WARNING, logger="visionlab.data.datamodule"):
        dm.setup(None)
    assert not dm.has_test_labels
    assert "'kat'" in caplog.text and str(ch.solution) in caplog.text, caplog.text
