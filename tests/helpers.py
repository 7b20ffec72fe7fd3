"""What the tests share, imported by name (`from helpers import ...`; conftest.py holds only fixtures and
hooks): a synthetic challenge download on disk, the entry points run as a user runs them, and in-process
training / prediction from the real config tree for the cheaper checks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import forkserver
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from visionlab.commands.resolvers import register_resolvers

register_resolvers()

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"


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


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")
    env.setdefault("OMP_NUM_THREADS", "1")  # as conftest.py's torch.set_num_threads(1)
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
    """Run `python <repo>/<script> args...` (or `python -m module args...`) with cwd=cwd, so
    outputs/ lands there. check=True fails the test, showing the output's tail, on a non-zero exit."""
    cmd = [sys.executable, "-m", module] if module else [sys.executable, str(REPO / script)]
    cmd += [str(a) for a in args]
    proc = forkserver.run(cmd, cwd=cwd, env=cli_env(), timeout=timeout, capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-3000:]}\n"
            f"--- stderr (tail)\n{proc.stderr[-5000:]}",
            pytrace=False,
        )
    return proc


def user_env() -> dict[str, str]:
    """The environment of a user at a terminal: without conftest's HYDRA_FULL_ERROR, which asks
    Hydra for full tracebacks on purpose."""
    env = cli_env()
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_user(args, cwd: Path, script: str = "train.py", timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / script)] + [str(a) for a in args]
    return forkserver.run(cmd, cwd=cwd, env=user_env(), timeout=timeout, capture_output=True, text=True)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-3000:]}\n--- stderr (tail)\n{proc.stderr[-5000:]}"


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """A user error: non-zero exit, `error: ...` on stderr naming every needle, no traceback anywhere.
    Returns the error text (from `error:` on)."""
    assert proc.returncode != 0, describe(proc)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, describe(proc)
    assert "error: " in proc.stderr, describe(proc)
    message = proc.stderr[proc.stderr.index("error: ") :]
    for needle in needles:
        assert needle in message, f"{needle!r} not in the error:\n{message}"
    return message


def compose_cfg(config_name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name=config_name, overrides=[str(o) for o in overrides])


def challenge_overrides(ch, image_size: int = 16) -> list[str]:
    return [
        "data=challenge",
        f"data.root={ch.root}",
        f"data.id_col={ch.id_col}",
        f"data.label_col={ch.label_col}",
        f"data.image_size={image_size}",
        "data.batch_size=16",
    ]


def train_inproc(out_dir: Path, overrides: list[str]) -> dict:
    """visionlab.commands.train.run on the composed train config, outputs in out_dir; returns result.json."""
    from visionlab.commands.train import run

    cfg = compose_cfg("train", list(overrides) + [f"paths.output_dir={out_dir}", "logger=csv"])
    run(cfg)
    return json.loads((Path(out_dir) / "result.json").read_text())


def predict_inproc(ckpt, output: Path, overrides: list[str] = ()) -> Path:
    """visionlab.commands.predict.run on the composed predict config (data_group: none given)."""
    from visionlab.commands.predict import run

    cfg = compose_cfg(
        "predict",
        [f"ckpt={ckpt}", f"output={output}", f"paths.output_dir={Path(output).parent}", "data_group=null", "device=cpu"]
        + list(overrides),
    )
    return run(cfg)


def train_small_challenge(base: Path):
    """A 3-class challenge of 4 images a class under base/challenge, trained one epoch in base/run.
    Returns (challenge, its best.ckpt)."""
    ch = build_challenge(base / "challenge", n_per_class=4)
    train_inproc(base / "run", challenge_overrides(ch) + ["trainer.max_epochs=1"])
    return ch, base / "run" / "checkpoints" / "best.ckpt"
