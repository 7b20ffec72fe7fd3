"""Helpers for test_bad_input.py and test_faults.py: the entry points run as a user runs them, and
in-process training / prediction from the real config tree for the cheaper checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, build_challenge, cli_env
from hydra import compose, initialize_config_dir

from visionlab.commands.resolvers import register_resolvers

register_resolvers()


def user_env() -> dict[str, str]:
    """The environment of a user at a terminal: without conftest's HYDRA_FULL_ERROR, which asks
    Hydra for full tracebacks on purpose."""
    env = cli_env()
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_user(args, cwd: Path, script: str = "train.py", timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / script)] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=user_env())


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
