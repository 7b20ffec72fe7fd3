"""Shared fixtures: a synthetic challenge download on disk, and a helper that runs the entry points."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Small nets on a few shared cores run far faster single-threaded (thread contention dominates).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"


# ----------------------------------------------------------------------------- tests that time themselves
# The suite runs on two xdist workers (pyproject's addopts). A test marked `exclusive` (its assertion is
# a wall time) runs with the other worker idle: every test holds a shared lock on one file while it
# runs, an exclusive test the exclusive lock. The gate lock keeps the other worker from starting a new
# test while an exclusive one waits for the current one to end.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around a test's whole run, its fixtures' set-up included (a module's shared sweep is made there)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of one pytest run
    if not run:  # one process: nothing runs beside a test
        yield
        return
    import fcntl
    import tempfile

    locks = Path(tempfile.gettempdir()) / f"visionlab-tests-{run}"
    locks.mkdir(exist_ok=True)
    exclusive = item.get_closest_marker("exclusive") is not None
    with open(locks / "gate", "a") as gate, open(locks / "tests", "a") as tests:
        fcntl.flock(gate, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        fcntl.flock(tests, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield


# Each class gets a clearly different colour, so a tiny model can learn something.
CLASS_COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40), (200, 40, 200), (40, 200, 200)]
# Formats cycled through for the training images: colour JPEGs plus awkward PNG modes.
KINDS = ("jpg", "png_L", "jpg", "png_RGBA", "jpg", "png_P", "jpg", "png_I16")


def write_image(path: Path, kind: str, colour: tuple[int, int, int], size: tuple[int, int], rng) -> None:
    """Write one image of the given kind (jpg / png_L / png_RGBA / png_P / png_I16), roughly `colour`."""
    w, h = size
    rgb = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)
    if kind == "jpg":
        Image.fromarray(rgb, "RGB").save(path, format="JPEG", quality=90)
    elif kind == "png_L":
        Image.fromarray(rgb, "RGB").convert("L").save(path)
    elif kind == "png_RGBA":
        alpha = np.full((h, w, 1), 255, np.uint8)
        alpha[: h // 4] = 0  # a transparent band
        Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(path)
    elif kind == "png_P":
        Image.fromarray(rgb, "RGB").convert("P").save(path)
    elif kind == "png_I16":
        grey = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        img = Image.fromarray(grey)
        assert img.mode == "I;16"
        img.save(path)
    else:
        raise ValueError(kind)


@dataclass
class Challenge:
    root: Path
    id_col: str
    label_col: str
    classes: list[str]
    train_ids: list[str] = field(default_factory=list)
    train_labels: list[str] = field(default_factory=list)
    train_kinds: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)
    test_labels: list[str] = field(default_factory=list)

    @property
    def sample_submission(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def solution(self) -> Path:
        return self.root / "solution.csv"


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def build_challenge(
    root: Path,
    classes=("cat", "dog", "frog"),
    n_per_class: int = 8,
    n_test_per_class: int = 2,
    id_col: str = "filename",
    label_col: str = "class",
    solution: bool = True,
    counts: dict[str, int] | None = None,
    sizes=(16, 40),
    seed: int = 0,
) -> Challenge:
    """A challenge download: <root>/train.csv (id_col,label_col), train/ with JPEGs of mixed sizes and
    PNGs of modes L/RGBA/P/I;16, test/ with JPEGs, sample_submission.csv and (optionally) solution.csv.
    Every other id is written without its file extension. `counts` overrides n_per_class per class."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    ch = Challenge(root, id_col, label_col, list(classes))
    i = 0
    for c, name in enumerate(classes):
        for _ in range((counts or {}).get(name, n_per_class)):
            kind = KINDS[i % len(KINDS)]
            ext = ".jpg" if kind == "jpg" else ".png"
            stem = f"img_{i:04d}"
            size = tuple(int(s) for s in rng.integers(sizes[0], sizes[1] + 1, size=2))
            write_image(root / "train" / (stem + ext), kind, CLASS_COLOURS[c % len(CLASS_COLOURS)], size, rng)
            ch.train_ids.append(stem if i % 2 else stem + ext)
            ch.train_labels.append(name)
            ch.train_kinds.append(kind)
            i += 1
    order = rng.permutation(len(ch.train_ids))  # labels not in blocks
    ch.train_ids = [ch.train_ids[j] for j in order]
    ch.train_labels = [ch.train_labels[j] for j in order]
    ch.train_kinds = [ch.train_kinds[j] for j in order]
    _write_csv(root / "train.csv", [id_col, label_col], [[a, b] for a, b in zip(ch.train_ids, ch.train_labels)])
    t = 0
    for c, name in enumerate(classes):
        for _ in range(n_test_per_class):
            stem = f"test_{t:04d}"
            size = tuple(int(s) for s in rng.integers(sizes[0], sizes[1] + 1, size=2))
            write_image(root / "test" / (stem + ".jpg"), "jpg", CLASS_COLOURS[c % len(CLASS_COLOURS)], size, rng)
            ch.test_ids.append(stem if t % 2 else stem + ".jpg")
            ch.test_labels.append(name)
            t += 1
    order = rng.permutation(len(ch.test_ids))  # sample submission not sorted by class
    ch.test_ids = [ch.test_ids[j] for j in order]
    ch.test_labels = [ch.test_labels[j] for j in order]
    _write_csv(root / "sample_submission.csv", [id_col, label_col], [[a, classes[0]] for a in ch.test_ids])
    if solution:
        _write_csv(root / "solution.csv", [id_col, label_col], [[a, b] for a, b in zip(ch.test_ids, ch.test_labels)])
    return ch


@pytest.fixture
def make_challenge(tmp_path):
    """make_challenge(name="challenge", **kwargs) -> Challenge written under tmp_path/name."""

    def make(name: str = "challenge", **kwargs) -> Challenge:
        return build_challenge(tmp_path / name, **kwargs)

    return make


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")
    env.setdefault("OMP_NUM_THREADS", "1")  # see torch.set_num_threads above
    env.pop("COLUMNS", None)
    return env


def run_cli(
    args: list[str],
    cwd: Path,
    script: str = "train.py",
    check: bool = True,
    timeout: float = 300,
    module: str | None = None,
) -> subprocess.CompletedProcess:
    """Run `python /work/main/<script> args...` (or `python -m module args...`) with cwd=cwd, so
    outputs/ lands there. check=True fails the test, showing the output's tail, on a non-zero exit."""
    cmd = [sys.executable, "-m", module] if module else [sys.executable, str(REPO / script)]
    cmd += [str(a) for a in args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=cli_env())
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-3000:]}\n"
            f"--- stderr (tail)\n{proc.stderr[-5000:]}",
            pytrace=False,
        )
    return proc
