"""What a run shows: in a real terminal (a pty) a live bar with the loss and val err and one lasting
line per epoch; without one, the same lines; the test error at the end; the lines in train.log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import forkserver
import pytest
from helpers import REPO, cli_env, run_cli

from visionlab.training.progress import epoch_line, final_test_line

ARGS = ["data.subset=300", "trainer.max_epochs=2"]


def test_epoch_line_counts_from_one():
    record = {"epoch": 0, "train/loss": 1.5, "train/err": 0.5, "val/loss": 1.25, "val/err": 0.25}
    assert epoch_line(record, 10, 2.0) == (
        "epoch 1/10  train/loss 1.5000  train/err 0.5000  val/loss 1.2500  val/err 0.2500  (2.0s)"
    )
    assert final_test_line({"test/loss": 0.5, "test/err": 0.125}) == "test  test/loss 0.5000  test/err 0.1250"
    assert final_test_line({"val/err": 0.1}) is None


def run_in_terminal(args, cwd) -> str:
    """Run train.py with stdout and stderr on a pseudo-terminal, as a user's shell does."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 40x160, as a window has
    proc = forkserver.popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=cli_env(),
        stdout=slave,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks)[-3000:]
    text = b"".join(chunks).decode("utf-8", "replace")
    # what a terminal would show, line by line: drop cursor codes; a carriage return starts a redraw
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.slow
def test_terminal_shows_bar_metrics_epoch_lines_and_test_error(tmp_path):
    out = run_in_terminal(ARGS, tmp_path)
    assert re.search(r"Epoch 1/2: .*loss=[\d.]+", out)  # the bar counts from 1 and shows the running loss
    assert re.search(r"Epoch 2/2: .*val/err=[\d.]+", out)  # ... and the last val error
    assert "Epoch 0" not in out
    lines = re.findall(r"^epoch (\d)/2  train/loss .* val/err [\d.]+", out, flags=re.M)
    assert lines == ["1", "2"]  # one lasting line per epoch
    assert re.search(r"^test  test/loss [\d.]+  test/err [\d.]+", out, flags=re.M)
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    log = (run / "train.log").read_text()
    assert re.findall(r"epoch (\d)/2  train/loss", log) == ["1", "2"]
    assert "test/err" in log


@pytest.mark.slow
def test_piped_output_has_the_same_lines(tmp_path):
    proc = run_cli(ARGS, cwd=tmp_path)
    assert re.findall(r"^epoch (\d)/2  train/loss .* val/err [\d.]+", proc.stdout, flags=re.M) == ["1", "2"]
    assert re.search(r"^test  test/loss [\d.]+  test/err [\d.]+", proc.stdout, flags=re.M)
