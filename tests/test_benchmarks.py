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


def test_time_to_accuracy_benchmark_prints_reached_and_unreached_thresholds_and_writes_the_curve(tmp_path):
    """2 epochs on 300 images: 0.05 on the 10k split is reached at once, 0.99 is not; every figure
    comes in seconds and in reference images; curve.csv has one row per epoch and curve.png is a PNG."""
    out = tmp_path / "tta"
    proc = run_cli(["--out", out, "--reference-steps", "10", "--thresholds", "0.05,0.99", "data.subset=300",
                    "trainer.max_epochs=2", "threads=1", "logger=csv"], tmp_path, script="benchmarks/time_to_accuracy.py")
    ref = re.search(r"reference: plain PyTorch loop .*: (\d+) img/s", proc.stdout)
    assert ref and int(ref.group(1)) > 0, proc.stdout
    reached = re.search(r"time-to-0\.05: (\d+\.\d) s = (\d+\.\d+) M reference images \(epoch 1, accuracy (0\.\d+)\)",
                        proc.stdout)
    assert reached, proc.stdout
    seconds, mimages = float(reached.group(1)), float(reached.group(2))
    assert mimages == pytest.approx(seconds * int(ref.group(1)) / 1e6, abs=2e-3)
    assert re.search(r"time-to-0\.99: not reached \(best 0\.\d+ in 2 epochs\)", proc.stdout), proc.stdout
    import pandas as pd

    curve = pd.read_csv(out / "curve.csv")
    assert list(curve["epoch"]) == [1, 2]
    assert curve["train_time_s"].is_monotonic_increasing and (curve["train_time_s"] > 0).all()
    assert ((curve["test_acc"] > 0) & (curve["test_acc"] <= 1)).all()
    # the 10k evaluation after epoch 1 (seconds) is left out: epoch 2 adds what the run printed for it
    epoch2 = float(re.search(r"epoch 2/2 .*\((\d+\.\d)s\)", proc.stdout).group(1))
    assert curve["train_time_s"].diff().iloc[1] <= epoch2 + 0.5, (curve, epoch2)
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
