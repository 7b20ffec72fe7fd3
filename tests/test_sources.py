"""Readers in visionlab.data.sources: challenge CSV + folder, class-per-folder tree, Fashion-MNIST idx
files, and image decoding to size x size x 3 uint8."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import write_image
from PIL import Image

from visionlab.data import fashion_mnist, sources
from visionlab.data.sources import DataError


def small_png(path: Path, colour=(10, 20, 30), size=(6, 5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_text(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


# ----------------------------------------------------------------------------- challenge CSV + folder


def test_challenge_reader_with_custom_columns_and_mixed_formats(make_challenge):
    ch = make_challenge(n_per_class=8)
    items = sources.challenge_train(ch.root, "train.csv", "train", "filename", "class")
    assert items.ids == ch.train_ids  # CSV order kept
    assert items.labels == ch.train_labels
    assert len(items) == 24
    for image_id, path in zip(items.ids, items.images):
        assert path.is_file()
        assert path.parent == ch.root / "train"
        assert path.stem == Path(image_id).stem
        if Path(image_id).suffix:  # an id with extension names exactly that file
            assert path.name == image_id
    assert {p.suffix for p in items.images} == {".jpg", ".png"}
    assert any("." not in i for i in items.ids) and any(i.endswith((".jpg", ".png")) for i in items.ids)


def test_bom_and_whitespace_are_stripped(tmp_path):
    small_png(tmp_path / "train" / "a.png")
    small_png(tmp_path / "train" / "b.jpg")
    write_text(tmp_path / "train.csv", "  filename ,  class \n  a.png ,  cat  \nb , dog\n", bom=True)
    items = sources.challenge_train(tmp_path, "train.csv", "train", "filename", "class")
    assert items.ids == ["a.png", "b"]
    assert items.labels == ["cat", "dog"]
    assert [p.name for p in items.images] == ["a.png", "b.jpg"]


def test_labels_are_read_as_strings(tmp_path):
    for n in ("1", "2", "3"):
        small_png(tmp_path / "train" / f"{n}.png")
    write_text(tmp_path / "train.csv", "image_id,label\n1,007\n2,NA\n3,3\n")
    items = sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    assert items.labels == ["007", "NA", "3"]  # no int conversion, no NaN
    assert items.ids == ["1", "2", "3"]


def test_missing_column_error_lists_existing_columns(tmp_path):
    small_png(tmp_path / "train" / "a.png")
    write_text(tmp_path / "train.csv", "image,target\na.png,cat\n")
    with pytest.raises(DataError) as e:
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "target")
    msg = str(e.value)
    assert "'image_id'" in msg and "['image', 'target']" in msg and "data.id_col" in msg
    with pytest.raises(DataError, match=r"no column 'label'.*\['image', 'target'\].*data.label_col"):
        sources.challenge_train(tmp_path, "train.csv", "train", "image", "label")


def test_duplicated_ids_are_refused_with_line_numbers(tmp_path):
    for n in "abc":
        small_png(tmp_path / "train" / f"{n}.png")
    write_text(tmp_path / "train.csv", "image_id,label\na,x\nb,y\n a ,z\nc,x\n")
    with pytest.raises(DataError, match=r"'a' on lines \[2, 4\]"):
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")


def test_empty_label_and_empty_csv_are_refused(tmp_path):
    small_png(tmp_path / "train" / "a.png")
    write_text(tmp_path / "train.csv", "image_id,label\na,\n")
    with pytest.raises(DataError, match=r"'label' is empty on line\(s\) \[2\]"):
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    write_text(tmp_path / "train.csv", "")
    with pytest.raises(DataError, match="is empty"):
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    with pytest.raises(DataError, match="does not exist"):
        sources.challenge_train(tmp_path, "nope.csv", "train", "image_id", "label")


def test_every_missing_image_is_listed(tmp_path):
    small_png(tmp_path / "train" / "a.png")
    write_text(tmp_path / "train.csv", "image_id,label\na,x\nghost1,y\nghost2.png,y\n")
    with pytest.raises(DataError) as e:
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    msg = str(e.value)
    assert "2 id(s)" in msg
    assert "'ghost1': missing" in msg and "'ghost2.png': missing" in msg
    assert "'a'" not in msg


def test_ambiguous_stem_needs_the_extension(tmp_path):
    small_png(tmp_path / "train" / "a.png")
    small_png(tmp_path / "train" / "a.jpg")
    write_text(tmp_path / "train.csv", "image_id,label\na,x\n")
    with pytest.raises(DataError, match="ambiguous"):
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    write_text(tmp_path / "train.csv", "image_id,label\na.jpg,x\n")
    items = sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    assert items.images == [tmp_path / "train" / "a.jpg"]


def test_ids_in_subfolders_resolve(tmp_path):
    small_png(tmp_path / "train" / "sub" / "a.png")
    small_png(tmp_path / "train" / "sub" / "b.png")
    write_text(tmp_path / "train.csv", "image_id,label\nsub/a,x\nsub/b.png,y\n")
    items = sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    assert items.images == [tmp_path / "train" / "sub" / "a.png", tmp_path / "train" / "sub" / "b.png"]


@pytest.mark.parametrize("bad_id", ["../secret.png", "../secret", "sub/../../secret.png", "..\\secret.png"])
def test_path_traversal_is_refused(tmp_path, bad_id):
    small_png(tmp_path / "secret.png")
    small_png(tmp_path / "train" / "ok.png")
    write_text(tmp_path / "train.csv", f"image_id,label\nok,x\n{bad_id},y\n")
    with pytest.raises(DataError, match="refused"):
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")


def test_absolute_id_is_refused_even_when_the_file_exists(tmp_path):
    secret = small_png(tmp_path / "secret.png")
    small_png(tmp_path / "train" / "ok.png")
    write_text(tmp_path / "train.csv", f"image_id,label\nok,x\n{secret},y\n")
    with pytest.raises(DataError, match="refused"):
        sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    secret = small_png(tmp_path / "outside" / "secret.png")
    small_png(tmp_path / "train" / "ok.png")
    os.symlink(secret, tmp_path / "train" / "link.png")
    os.symlink(tmp_path / "outside", tmp_path / "train" / "linkdir")
    for bad_id in ("link.png", "link", "linkdir/secret.png"):
        write_text(tmp_path / "train.csv", f"image_id,label\nok,x\n{bad_id},y\n")
        with pytest.raises(DataError, match="refused"):
            sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    # ...and a test folder listing (no sample submission) names the link instead of leaving it out
    # without a word (issue 20: a submission 15 rows short); data.on_bad_image=skip keeps its row.
    with pytest.raises(DataError, match="'link.png': refused: a link that points outside the image folder"):
        sources.challenge_test(tmp_path, "train", None, "image_id")
    items, _ = sources.challenge_test(tmp_path, "train", None, "image_id", skip=True)
    assert items.ids == ["link.png", "ok.png"] and isinstance(items.images[0], sources.Unusable)


def test_symlink_inside_the_folder_is_fine(tmp_path):
    small_png(tmp_path / "train" / "ok.png")
    os.symlink(tmp_path / "train" / "ok.png", tmp_path / "train" / "alias.png")
    write_text(tmp_path / "train.csv", "image_id,label\nalias,x\nok,y\n")
    items = sources.challenge_train(tmp_path, "train.csv", "train", "image_id", "label")
    assert [p.name for p in items.images] == ["alias.png", "ok.png"]


def test_challenge_test_follows_sample_submission_and_solution(make_challenge):
    ch = make_challenge()
    items, sample = sources.challenge_test(
        ch.root, "test", "sample_submission.csv", "filename", "solution.csv", "class"
    )
    assert items.ids == ch.test_ids
    assert items.labels == ch.test_labels
    assert list(sample.columns) == ["filename", "class"]
    assert all(p.is_file() for p in items.images)


def test_challenge_test_without_sample_submission_sorts_files(make_challenge):
    ch = make_challenge(solution=False)
    items, sample = sources.challenge_test(ch.root, "test", None, "filename")
    assert sample is None and items.labels is None
    assert items.ids == sorted(os.listdir(ch.root / "test"))


def test_solution_missing_an_id_is_an_error(make_challenge):
    ch = make_challenge()
    lines = ch.solution.read_text().splitlines()
    ch.solution.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="no label for 1 test id"):
        sources.challenge_test(ch.root, "test", "sample_submission.csv", "filename", "solution.csv", "class")


def test_missing_image_folder_names_the_key(tmp_path):
    write_text(tmp_path / "train.csv", "image_id,label\na,x\n")
    with pytest.raises(DataError, match="data.train_dir"):
        sources.challenge_train(tmp_path, "train.csv", "pics", "image_id", "label")


# ----------------------------------------------------------------------------- folder layout


def test_folder_reader(tmp_path):
    for cls, n in (("cat", 2), ("dog", 3)):
        for i in range(n):
            small_png(tmp_path / "train" / cls / f"{i}.png")
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "README.md").write_text("a stray file next to the class folders")
    items = sources.folder_train(tmp_path, "train")
    assert items.labels == ["cat"] * 2 + ["dog"] * 3
    assert items.ids == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png", "dog/2.png"]
    assert all(p.is_file() for p in items.images)


def test_folder_reader_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        sources.folder_train(tmp_path, "train")
    (tmp_path / "train" / "empty_class").mkdir(parents=True)
    with pytest.raises(DataError, match="no class sub-folders with images"):
        sources.folder_train(tmp_path, "train")


# ----------------------------------------------------------------------------- Fashion-MNIST


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reader_on_small_idx_files(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28) % 256
    write_idx(raw / "train-images-idx3-ubyte.gz", images, 2051)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.array([9, 0, 1, 2, 9]), 2049)
    items = fashion_mnist.read(str(tmp_path), "train")
    assert items.ids == [f"train_{i:05d}" for i in range(5)]
    assert items.labels == ["Ankle boot", "T-shirt/top", "Trouser", "Pullover", "Ankle boot"]
    np.testing.assert_array_equal(np.stack(items.images), images)
    # A wrong magic number is reported, naming the file.
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.array([1, 2, 3, 4, 5]), 2051)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is not an idx file"):
        fashion_mnist.read(str(tmp_path), "train")


def test_fashion_mnist_not_found_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "missing")
    with pytest.raises(DataError, match="data.download=true"):
        fashion_mnist.read(str(tmp_path / "empty"), "train", download=False)


def test_fashion_mnist_download_target_with_null_root(tmp_path, monkeypatch):
    import torchvision.datasets

    from visionlab.data import FashionMNISTDataModule

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "missing")
    roots = []

    class FakeFashionMNIST:
        def __init__(self, root, train=True, download=False):
            roots.append(root)
            raise RuntimeError("no network in tests")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    dm = FashionMNISTDataModule(root=None, download=True)
    with pytest.raises(RuntimeError, match="no network"):
        dm.read_train()
    assert roots == [str(Path("data/fashion_mnist"))]


@pytest.mark.skipif(not fashion_mnist.has_files(fashion_mnist.DEBIAN_DIR), reason="Debian Fashion-MNIST not installed")
def test_fashion_mnist_reader_on_debian_files():
    train = fashion_mnist.read(None, "train")
    test = fashion_mnist.read(None, "test")
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.images[0].shape == (28, 28) and train.images[0].dtype == np.uint8
    assert set(train.labels) == set(fashion_mnist.CLASSES)
    assert train.labels[0] == "Ankle boot" and test.labels[:3] == ["Ankle boot", "Pullover", "Trouser"]
    assert test.ids[0] == "test_00000"
    assert all(n == 6000 for n in np.unique(train.labels, return_counts=True)[1])


# ----------------------------------------------------------------------------- decoding


def check_rgb(arr: np.ndarray, size: int) -> None:
    assert arr.shape == (size, size, 3)
    assert arr.dtype == np.uint8


@pytest.mark.parametrize("kind", ["jpg", "png_L", "png_RGBA", "png_P", "png_I16"])
@pytest.mark.parametrize("size", [8, 28])
def test_load_image_modes(tmp_path, kind, size):
    path = tmp_path / ("x.jpg" if kind == "jpg" else "x.png")
    write_image(path, kind, (200, 100, 50), (37, 23), np.random.default_rng(0))
    arr = sources.load_image(path, size)
    check_rgb(arr, size)
    assert arr.max() > 40  # content survives (I;16 scaled to 8 bits, not clipped to 255 or 0)


def test_load_image_i16_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 16 * 16).reshape(16, 16)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    arr = sources.load_image(tmp_path / "ramp.png", 16)
    check_rgb(arr, 16)
    grey = arr[..., 0].astype(int)
    np.testing.assert_allclose(grey, ramp.astype(float) / 257, atol=1)
    assert grey.min() == 0 and grey.max() == 255


def test_load_image_transparency_composited_on_black(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:2, :, 3] = 0  # top half fully transparent
    rgba[2:, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr = sources.load_image(tmp_path / "a.png", 4, "nearest")
    assert (arr[:2] == 0).all() and (arr[2:] == 255).all()


def test_load_image_cmyk_and_grey_give_rgb(tmp_path):
    Image.new("CMYK", (10, 12), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # red in CMYK
    arr = sources.load_image(tmp_path / "c.jpg", 6)
    check_rgb(arr, 6)
    r, g, b = arr.reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60
    Image.new("L", (10, 12), 77).save(tmp_path / "g.png")
    arr = sources.load_image(tmp_path / "g.png", 6)
    check_rgb(arr, 6)
    assert (arr == 77).all()


def test_load_image_very_large(tmp_path):
    # Above PIL's default decompression-bomb limit (89M pixels) would be 9500x9500; a large
    # 6000x6000 JPEG keeps the test quick while still exercising the reduced-scale JPEG decode.
    Image.new("RGB", (6000, 6000), (10, 200, 30)).save(tmp_path / "big.jpg", quality=50)
    arr = sources.load_image(tmp_path / "big.jpg", 32)
    check_rgb(arr, 32)
    np.testing.assert_allclose(arr.reshape(-1, 3).mean(0), (10, 200, 30), atol=6)


def test_load_image_above_pil_bomb_limit(tmp_path):
    Image.new("L", (10_000, 9_000), 128).save(tmp_path / "huge.png", compress_level=1)
    arr = sources.load_image(tmp_path / "huge.png", 16)
    check_rgb(arr, 16)
    assert (arr == 128).all()


def test_load_image_from_arrays():
    grey = np.full((28, 28), 9, np.uint8)
    arr = sources.load_image(grey, 16)
    check_rgb(arr, 16)
    assert (arr == 9).all()
    check_rgb(sources.load_image(np.zeros((28, 28, 3), np.uint8), 28), 28)


def test_load_image_from_rgba_array():
    check_rgb(sources.load_image(np.zeros((28, 28, 4), np.uint8), 28), 28)


def test_load_image_bad_file_raises(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises((OSError, ValueError)):
        sources.load_image(tmp_path / "bad.png", 8)
