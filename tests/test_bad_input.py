"""Bad input: unreadable or escaping image files, awkward image modes, broken CSVs, degenerate splits
and unusable checkpoints or test sets for predict. Each is refused before training with an error that
names the file / row / column / key and the fix, or (data.on_bad_image=skip) skipped and counted."""

from __future__ import annotations

import collections
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import (
    assert_user_error,
    build_challenge,
    challenge_overrides,
    compose_cfg,
    describe,
    predict_inproc,
    run_user,
    train_inproc,
    write_image,
)
from PIL import Image

from visionlab.commands.predict import CheckpointError, load_checkpoint
from visionlab.data import ChallengeDataModule, DataError
from visionlab.errors import InputError


def make_dm(ch, **kwargs) -> ChallengeDataModule:
    args = dict(root=str(ch.root), id_col=ch.id_col, label_col=ch.label_col, image_size=16)
    args.update(kwargs)
    return ChallengeDataModule(**args)


def add_rows(ch, rows: list[tuple[str, str]]) -> None:
    with open(ch.root / "train.csv", "a", encoding="utf-8") as fh:
        for image_id, label in rows:
            fh.write(f"{image_id},{label}\n")


def add_broken_images(ch, folder: str = "train") -> list[str]:
    """A text file named .png, a JPEG and a PNG cut in half: their file names."""
    d = ch.root / folder
    (d / "notes.png").write_text("id,label\nthis is a CSV, not an image\n")
    rng = np.random.default_rng(1)
    write_image(d / "cut.jpg", "jpg", (200, 30, 30), (40, 40), rng)
    write_image(d / "cut_rgba.png", "png_RGBA", (200, 30, 30), (40, 40), rng)
    for name in ("cut.jpg", "cut_rgba.png"):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    return ["notes.png", "cut.jpg", "cut_rgba.png"]


def checkpoints_under(path: Path) -> list[Path]:
    return sorted(Path(path).rglob("*.ckpt"))


# ----------------------------------------------------------------------------- unreadable image files


@pytest.mark.slow
def test_unreadable_images_are_all_listed_before_training(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)
    bad = add_broken_images(ch)
    add_rows(ch, [("notes.png", "cat"), ("cut", "dog"), ("cut_rgba.png", "frog")])  # "cut": id without extension
    proc = run_user(challenge_overrides(ch) + ["data.val_fraction=0", "trainer.max_epochs=1"], tmp_path)
    message = assert_user_error(
        proc,
        "3 training image(s) cannot be read",
        "data.on_bad_image=skip",
        *(str(ch.root / "train" / name) for name in bad),
    )
    assert "UnidentifiedImageError" in message and "truncated" in message.lower()
    assert "epoch 1/" not in proc.stdout
    assert checkpoints_under(tmp_path) == []


def test_unreadable_images_in_both_splits_are_listed_in_one_error(make_challenge):
    ch = make_challenge(n_per_class=4)
    add_broken_images(ch)
    # class 'bird' has two images, both unreadable: the stratified split puts one on each side
    add_rows(ch, [("notes.png", "bird"), ("cut.jpg", "bird")])
    with pytest.raises(DataError) as err:
        make_dm(ch, val_fraction=0.5).setup("fit")
    assert "notes.png" in str(err.value) and "cut.jpg" in str(err.value), str(err.value)


@pytest.mark.slow
def test_skipped_images_are_warned_about_and_counted_in_result_and_sweep_summary(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)
    add_broken_images(ch)
    add_rows(ch, [("notes.png", "cat"), ("cut.jpg", "dog"), ("cut_rgba", "frog")])
    proc = run_user(["-m", "data.on_bad_image=skip"] + challenge_overrides(ch) + ["trainer.max_epochs=1"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert "Traceback" not in proc.stderr
    assert "unreadable" in proc.stdout + proc.stderr and "data.on_bad_image=skip" in proc.stdout + proc.stderr
    [sweep] = list((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    [result_file] = list(sweep.glob("*/result.json"))
    result = json.loads(result_file.read_text())
    assert result["status"] == "completed" and result["skipped_images"] == 3, result
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["skipped_images"]) == [3]


# ----------------------------------------------------------------------------- image modes and sizes


def write_mode_zoo(d: Path, colour, rng, tag: str) -> list[str]:
    """One image of every awkward kind, roughly `colour`: their file names."""
    w, h = 30, 22
    rgb = np.clip(np.array(colour) + rng.integers(-15, 16, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    names = []

    def save(name, image, **kw):
        image.save(d / f"{tag}_{name}", **kw)
        names.append(f"{tag}_{name}")

    save("cmyk.jpg", img.convert("CMYK"))
    save("grey16.png", Image.fromarray(np.asarray(img.convert("L"), np.uint16) * 257))
    import cv2  # 48-bit RGB PNG: PIL cannot write one

    cv2.imwrite(str(d / f"{tag}_rgb16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    names.append(f"{tag}_rgb16.png")
    save("rgba.png", img.convert("RGBA"))
    save("la.png", img.convert("LA"))
    save("palette.png", img.convert("P"))
    save("palette_transparent.png", img.convert("P"), transparency=0)
    save("palette.gif", img.convert("P"))
    save("grey.jpg", img.convert("L"))
    save("bilevel.png", img.convert("1"))
    save("tiff.tif", img)
    return names


@pytest.mark.slow
def test_every_image_mode_and_very_large_images_train_end_to_end(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=2)  # already mixes JPEG, L, RGBA, P and I;16 PNGs
    rng = np.random.default_rng(0)
    rows = []
    for name, colour in zip(ch.classes, [(220, 40, 40), (40, 200, 40), (40, 40, 220)]):
        rows += [(f, name) for f in write_mode_zoo(ch.root / "train", colour, rng, name)]
    big = np.zeros((4000, 6000, 3), np.uint8)
    big[..., 0] = 220
    Image.fromarray(big).save(ch.root / "train" / "huge.jpg", quality=80)
    Image.fromarray(big).convert("L").save(ch.root / "train" / "huge_grey.png", compress_level=1)
    rows += [("huge.jpg", "cat"), ("huge_grey", "cat")]
    add_rows(ch, rows)
    n_images = len(pd.read_csv(ch.root / "train.csv"))
    assert n_images == 6 + 11 * 3 + 2

    proc = run_user(challenge_overrides(ch) + ["trainer.max_epochs=1"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    [run_dir] = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs"] == 1, result
    assert result["skipped_images"] == 0
    data_line = next(line for line in proc.stdout.splitlines() if "training /" in line)
    n_train, n_val = (int(x) for x in data_line.split("Data: ")[1].split(" validation")[0].split(" training / "))
    assert n_train + n_val == n_images, data_line


# ----------------------------------------------------------------------------- ids that escape the folder or are missing


@pytest.mark.slow
def test_ids_outside_the_folder_are_refused_unread_and_missing_ones_listed(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)
    outside = tmp_path / "outside"
    outside.mkdir()
    write_image(outside / "secret.png", "png_L", (10, 10, 10), (20, 20), np.random.default_rng(0))
    os.mkfifo(outside / "pipe.png")  # opening it for reading would block: the run would hang
    os.symlink(outside / "secret.png", ch.root / "train" / "link_out.png")
    os.symlink(outside / "pipe.png", ch.root / "train" / "link_pipe.png")
    bad = {
        "../../etc/passwd": "refused",
        "/etc/passwd": "refused",
        str(outside / "secret.png"): "refused",
        "../outside/secret.png": "refused",
        "link_out.png": "refused",
        "link_pipe": "refused",
        "gone.png": "missing",
        "gone": "missing",
    }
    add_rows(ch, [(i, "cat") for i in bad])
    proc = run_user(challenge_overrides(ch) + ["trainer.max_epochs=1"], tmp_path, timeout=120)
    message = assert_user_error(proc, f"{len(bad)} id(s) of training CSV {ch.root / 'train.csv'}", "data.train_dir")
    for image_id, reason in bad.items():
        assert f"{image_id!r}: {reason}" in message, image_id
    assert checkpoints_under(tmp_path) == []


def test_non_regular_file_in_the_image_folder_is_refused_not_read(make_challenge):
    ch = make_challenge(n_per_class=2)
    fifo = ch.root / "train" / "pipe.png"
    os.mkfifo(fifo)
    add_rows(ch, [("pipe.png", "cat")])
    outcome = {}

    def setup():
        try:
            make_dm(ch, val_fraction=0.0).setup("fit")
            outcome["ok"] = True
        except Exception as e:  # noqa: BLE001 - inspected below
            outcome["error"] = e

    thread = threading.Thread(target=setup, daemon=True)
    thread.start()
    thread.join(5)  # a 6-image setup takes well under a second
    hung = thread.is_alive()
    if hung:  # open the write end once so that the blocked reader gets EOF and the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
    assert not hung, "data setup blocked reading a FIFO"
    assert isinstance(outcome.get("error"), DataError) and "pipe.png" in str(outcome["error"]), outcome


# ----------------------------------------------------------------------------- CSV problems


def write_csv(path: Path, text: str, bom: bool = False) -> None:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())


def test_csv_with_bom_and_whitespace_reads_clean(make_challenge):
    ch = make_challenge(n_per_class=3)
    lines = (ch.root / "train.csv").read_text().splitlines()
    padded = ["  filename  ,   class "] + [" , ".join(f"  {cell}\t" for cell in line.split(",")) for line in lines[1:]]
    write_csv(ch.root / "train.csv", "\r\n".join(padded) + "\r\n", bom=True)
    dm = make_dm(ch, val_fraction=0.0)
    dm.setup("fit")
    assert dm.classes == ["cat", "dog", "frog"]
    assert len(dm.train_set) == 9


@pytest.mark.parametrize(
    "header,key,missing",
    [
        ("name,class", "data.id_col", "filename"),
        ("filename,category", "data.label_col", "class"),
        ("filename;class", "data.id_col", "filename"),  # semicolon-separated export
    ],
)
def test_wrong_column_names_error_lists_the_columns(make_challenge, header, key, missing):
    ch = make_challenge(n_per_class=2)
    body = (ch.root / "train.csv").read_text().split("\n", 1)[1]
    sep = ";" if ";" in header else ","
    write_csv(ch.root / "train.csv", header + "\n" + body.replace(",", sep))
    with pytest.raises(DataError) as err:
        make_dm(ch).setup("fit")
    message = str(err.value)
    columns = [c for c in header.split(",")] if sep == "," else [header]
    assert str(ch.root / "train.csv") in message
    assert f"no column {missing!r}" in message and str(columns) in message and f"Set {key}=" in message, message


def test_duplicated_ids_are_listed_with_line_numbers(make_challenge):
    ch = make_challenge(n_per_class=3)
    lines = (ch.root / "train.csv").read_text().splitlines()
    a, b = lines[1].split(",")[0], lines[2].split(",")[0]
    lines += [f"{a},dog", f"{b} ,cat", f"{a},frog"]  # line 11, 12, 13 (header is line 1)
    write_csv(ch.root / "train.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        make_dm(ch).setup("fit")
    message = str(err.value)
    assert "2 id(s)" in message and str(ch.root / "train.csv") in message
    assert f"{a!r} on lines [2, 11, 13]" in message and f"{b!r} on lines [3, 12]" in message, message


def test_same_image_listed_with_and_without_extension_is_a_duplicate(make_challenge):
    ch = make_challenge(n_per_class=3)
    with_ext = next(i for i in ch.train_ids if "." in i)
    add_rows(
        ch, [(with_ext.rsplit(".", 1)[0], "frog" if ch.train_labels[ch.train_ids.index(with_ext)] != "frog" else "cat")]
    )
    with pytest.raises(DataError, match="more than once"):
        make_dm(ch).setup("fit")


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("filename,class\n", "has a header but no rows"),
        ("\ufefffilename,class\r\n", "has a header but no rows"),
    ],
)
def test_empty_and_header_only_csv(make_challenge, text, match):
    ch = make_challenge(n_per_class=2)
    (ch.root / "train.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match) as err:
        make_dm(ch).setup("fit")
    assert str(ch.root / "train.csv") in str(err.value)


@pytest.mark.parametrize("form", ["names", "integers"])
def test_labels_as_names_or_integers_train_and_come_back_in_the_same_form(tmp_path, form):
    classes = ("cat", "dog", "frog") if form == "names" else ("3", "12", "7")
    ch = build_challenge(tmp_path / "challenge", classes=classes, n_per_class=4)
    # placeholder values in the sample submission's label column, of the label form
    write_csv(ch.sample_submission, "filename,class\n" + "".join(f"{i},{classes[0]}\n" for i in ch.test_ids))
    train_inproc(tmp_path / "run", challenge_overrides(ch) + ["trainer.max_epochs=1"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["visionlab"]["classes"] == (["cat", "dog", "frog"] if form == "names" else ["3", "7", "12"])
    out = predict_inproc(tmp_path / "run" / "checkpoints" / "best.ckpt", tmp_path / "sub.csv")
    raw = out.read_text().splitlines()
    assert raw[0] == "filename,class"
    ids, labels = zip(*(line.split(",") for line in raw[1:]))
    assert list(ids) == ch.test_ids
    assert set(labels) <= set(classes), labels  # e.g. "12", never "12.0" or a class index


# ----------------------------------------------------------------------------- degenerate splits


def test_class_with_a_single_image_trains(tmp_path):
    ch = build_challenge(tmp_path / "challenge", n_per_class=4, counts={"cat": 1})
    dm = make_dm(ch, val_fraction=0.25)
    dm.setup("fit")
    cat = dm.classes.index("cat")
    assert list(dm.train_set.labels).count(cat) == 1 and cat not in list(dm.val_set.labels)
    result = train_inproc(
        tmp_path / "run", challenge_overrides(ch) + ["data.val_fraction=0.25", "trainer.max_epochs=1"]
    )
    assert result["status"] == "completed", result


def test_validation_fraction_that_leaves_nothing_is_refused(tmp_path):
    ch = build_challenge(tmp_path / "challenge", n_per_class=1)
    with pytest.raises(DataError, match=r"data.val_fraction=0.2 leaves no validation image.*data.val_fraction=0"):
        make_dm(ch, val_fraction=0.2).setup("fit")


@pytest.mark.parametrize("subset", [0, -5])
def test_subset_that_selects_nothing_is_refused(make_challenge, subset):
    ch = make_challenge(n_per_class=2)
    with pytest.raises(DataError, match=rf"data.subset={subset} must be a positive number"):
        make_dm(ch, subset=subset)


@pytest.mark.parametrize("split", ["validation", "training"])
def test_split_left_empty_by_skipped_images_is_a_clear_error(tmp_path, split):
    ch = build_challenge(tmp_path / "challenge", n_per_class=3, solution=False)
    probe = make_dm(ch, val_fraction=0.34, cache=False)
    probe.setup("fit")
    for path in (probe.val_set if split == "validation" else probe.train_set).images:
        Path(path).write_text("not an image")
    with pytest.raises(InputError, match=f"(?i){split}"):
        train_inproc(
            tmp_path / "run",
            challenge_overrides(ch) + ["data.val_fraction=0.34", "data.on_bad_image=skip", "trainer.max_epochs=2"],
        )
    assert checkpoints_under(tmp_path / "run") == []


def test_bad_test_image_is_refused_before_training(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)
    add_broken_images(ch, "test")
    with open(ch.sample_submission, "a") as fh:
        fh.write("notes.png,cat\n")
    with pytest.raises(DataError, match="notes.png"):
        train_inproc(tmp_path / "run", challenge_overrides(ch) + ["trainer.max_epochs=1"])
    assert checkpoints_under(tmp_path / "run") == []  # nothing trained


# ----------------------------------------------------------------------------- predict


def _missing(d: Path) -> Path:
    return d / "nope" / "best.ckpt"


def _folder(d: Path) -> Path:
    (d / "run" / "checkpoints").mkdir(parents=True)  # a run folder whose checkpoint is gone
    return d / "run"


def _random_bytes(d: Path) -> Path:
    (d / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    return d / "random.ckpt"


def _state_dict(d: Path) -> Path:
    torch.save(collections.OrderedDict(weight=torch.zeros(3, 3), bias=torch.zeros(3)), d / "model.pth")
    return d / "model.pth"


def _lightning_without_visionlab(d: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, d / "other.ckpt")
    return d / "other.ckpt"


def _empty_file(d: Path) -> Path:
    (d / "empty.ckpt").write_bytes(b"")  # e.g. a copy or a save cut short by a full disk
    return d / "empty.ckpt"


@pytest.mark.parametrize(
    "make,match",
    [
        (_missing, "does not exist"),
        (_folder, r"is a folder with no checkpoints/best.ckpt in it or in its jobs' folders"),
        (_random_bytes, "is not a loadable checkpoint"),
        (_state_dict, "is not a visionlab training checkpoint.*python train.py"),
        (_lightning_without_visionlab, "is not a visionlab training checkpoint"),
        (_empty_file, "is not a loadable checkpoint"),
    ],
)
def test_unusable_checkpoint_is_named(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=f"(?s)ckpt='{re.escape(str(path))}' {match}"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"ckpt='{re.escape(str(path))}'"):
        predict_inproc(path, tmp_path / "submission.csv")
    assert not (tmp_path / "submission.csv").exists()


def test_test_images_of_other_modes_and_sizes_go_through_the_stored_preprocessing(trained, tmp_path):
    ch, ckpt = trained
    root = tmp_path / "new_test"
    (root / "test").mkdir(parents=True)
    rng = np.random.default_rng(3)
    names = write_mode_zoo(root / "test", (40, 200, 40), rng, "t")
    Image.new("RGB", (6000, 4000), (220, 40, 40)).save(root / "test" / "huge.jpg")
    names.append("huge.jpg")
    write_csv(root / "sample.csv", "filename,class\n" + "".join(f"{n},cat\n" for n in names))
    out = predict_inproc(ckpt, tmp_path / "sub.csv", [f"data.root={root}", "data.sample_submission=sample.csv"])
    table = pd.read_csv(out, dtype=str)
    assert list(table["filename"]) == names
    assert set(table["class"]) <= set(ch.classes)


def test_sample_submission_ids_missing_from_the_test_folder_are_listed(trained, tmp_path):
    ch, ckpt = trained
    lines = ch.sample_submission.read_text().splitlines()
    root = tmp_path / "copy"
    root.mkdir()
    (root / "test").symlink_to(ch.root / "test")
    write_csv(root / "sample_submission.csv", "\n".join(lines + ["ghost_1.jpg,cat", "ghost_2,cat"]) + "\n")
    with pytest.raises(DataError) as err:
        predict_inproc(ckpt, tmp_path / "sub.csv", [f"data.root={root}"])
    message = str(err.value)
    assert "2 id(s) of sample submission" in message and str(root / "sample_submission.csv") in message
    assert "'ghost_1.jpg': missing" in message and "'ghost_2': missing" in message and "data.test_dir" in message
    assert not (tmp_path / "sub.csv").exists()


# ----------------------------------------------------------------------------- mandatory keys left out


def test_predict_without_ckpt_is_a_user_error(tmp_path):
    from visionlab.commands.predict import run

    cfg = compose_cfg("predict", [f"paths.output_dir={tmp_path}", "data_group=null"])
    with pytest.raises(InputError, match="ckpt"):
        run(cfg)


def test_train_without_data_root_names_data_root(tmp_path):
    with pytest.raises(InputError) as err:
        train_inproc(tmp_path / "run", ["data=challenge", "trainer.max_epochs=1"])
    assert "data.root" in str(err.value) and "???" not in str(err.value), str(err.value)
