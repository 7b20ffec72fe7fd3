"""The benchmark script runs and prints its figures (the figures themselves are not asserted: timing
belongs to benchmarks, not tests, on a shared machine)."""

from __future__ import annotations

import re

import pytest

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model,precision", [("cnn", "32"), ("vgg", "bf16")])
def test_throughput_benchmark_prints_both_sides_and_the_ratio(tmp_path, model, precision):
    proc = run_cli(["--model", model, "--precision", precision, "--images", "512", "--repeats", "2"], tmp_path,
                   script="benchmarks/throughput.py")
    assert f"model={model} precision={precision} images=512" in proc.stdout
    assert re.search(r"plain PyTorch loop : +\d+ img/s", proc.stdout)
    assert re.search(r"visionlab \(Lightning\): +\d+ img/s", proc.stdout)
    assert re.search(r"ratio visionlab / plain, median of back-to-back pairs: \d+\.\d\d \(pairs: [\d., ]+\)", proc.stdout)
