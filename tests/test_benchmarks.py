"""The benchmark script runs and prints its figures (the figures themselves are not asserted: timing
belongs to benchmarks, not tests, on a shared machine)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model,precision", [("cnn", "32"), ("vgg", "bf16")])
def test_throughput_benchmark_prints_both_sides_and_the_ratio(tmp_path, model, precision):
    proc = run_cli(
        ["--model", model, "--precision", precision, "--images", "512", "--repeats", "2"],
        tmp_path,
        script="benchmarks/throughput.py",
    )
    assert f"model={model} precision={precision} images=512" in proc.stdout
    assert re.search(r"plain PyTorch loop : +\d+ img/s", proc.stdout)
    assert re.search(r"visionlab \(Lightning\): +\d+ img/s", proc.stdout)
    assert re.search(
        r"ratio visionlab / plain, median of back-to-back pairs: \d+\.\d\d \(pairs: [\d., ]+\)", proc.stdout
    )


def test_time_to_accuracy_benchmark_prints_reached_and_unreached_thresholds_and_writes_the_curve(tmp_path):
    """2 epochs on 300 images: 0.05 on the split's first 1,000 images (--test-images: the machinery, not a
    figure) is reached at once, 0.99 is not; every figure comes in seconds and in reference images;
    curve.csv has one row per epoch and curve.png is a PNG."""
    out = tmp_path / "tta"
    proc = run_cli(
        [
            "--out",
            out,
            "--reference-steps",
            "10",
            "--thresholds",
            "0.05,0.99",
            "--test-images",
            "1000",
            "data.subset=300",
            "trainer.max_epochs=2",
            "threads=1",
            "logger=csv",
        ],
        tmp_path,
        script="benchmarks/time_to_accuracy.py",
    )
    before = re.search(r"reference: plain PyTorch loop .*: (\d+) img/s", proc.stdout)
    ref = re.search(r"reference after the run: (\d+) img/s; normalised with their mean, (\d+) img/s", proc.stdout)
    assert before and ref and int(before.group(1)) > 0, proc.stdout
    assert abs(int(ref.group(2)) - (int(before.group(1)) + int(ref.group(1))) / 2) <= 1
    reached = re.search(
        r"time-to-0\.05: (\d+\.\d) s = (\d+\.\d+) M reference images \(epoch 1, accuracy (0\.\d+)\)", proc.stdout
    )
    assert reached, proc.stdout
    seconds, mimages = float(reached.group(1)), float(reached.group(2))
    assert mimages == pytest.approx(seconds * int(ref.group(2)) / 1e6, abs=2e-3)
    assert re.search(r"time-to-0\.99: not reached \(best 0\.\d+ in 2 epochs\)", proc.stdout), proc.stdout
    assert "with the evaluations on 1000 test images: 2 of them" in proc.stdout, proc.stdout
    import pandas as pd

    curve = pd.read_csv(out / "curve.csv")
    assert list(curve["epoch"]) == [1, 2]
    assert curve["train_time_s"].is_monotonic_increasing and (curve["train_time_s"] > 0).all()
    assert ((curve["test_acc"] > 0) & (curve["test_acc"] <= 1)).all()
    # the 10k evaluation after epoch 1 (seconds) is left out: epoch 2 adds what the run printed for it
    epoch2 = float(re.search(r"epoch 2/2 .*\((\d+\.\d)s\)", proc.stdout).group(1))
    assert curve["train_time_s"].diff().iloc[1] <= epoch2 + 0.5, (curve, epoch2)
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipeline_benchmark_loader_prints_each_loader_against_training(tmp_path):
    proc = run_cli(
        ["loader", "--images", "256", "--repeats", "1", "--threads", "1"], tmp_path, script="benchmarks/pipeline.py"
    )
    assert re.search(r"training \(Lightning, default CNN, no augmentation\) +\d+ img/s", proc.stdout), proc.stdout
    for side in (r"\(albumentations per image\)", r"data\.num_workers=2", r"augmentation\.batched=true"):
        assert re.search(side + r" +\d+ img/s +loader / training +\d+\.\d\d \(runs: [\d., ]+\)", proc.stdout), (
            proc.stdout
        )


def test_pipeline_benchmark_predict_prints_img_s_and_peak_memory(tmp_path):
    proc = run_cli(
        ["predict", "--train", "data.subset=300 trainer.max_epochs=1"], tmp_path, script="benchmarks/pipeline.py"
    )
    assert re.search(r"predict: 10000 images \(official 10k test split\) in \d+\.\d\d s = \d+ img/s", proc.stdout), (
        proc.stdout
    )
    peak = re.search(r"peak resident memory: (\d+) MiB \(after imports, before predicting: (\d+) MiB", proc.stdout)
    assert peak and int(peak.group(1)) >= int(peak.group(2)) > 0, proc.stdout


def test_pipeline_benchmark_startup_times_help_and_the_first_step(tmp_path):
    proc = run_cli(["startup", "--repeats", "1"], tmp_path, script="benchmarks/pipeline.py")
    figures = dict(re.findall(r"^  (.+?) +(\d+\.\d\d) s  \(runs", proc.stdout, re.M))
    assert set(figures) == {
        "python train.py --help",
        "python -c 'import visionlab.commands.train'",
        "train: to the start of fit",
        "train: to the end of the first step",
    }, proc.stdout
    assert 0 < float(figures["train: to the start of fit"]) < float(figures["train: to the end of the first step"])
    assert re.search(
        r"slowest top-level imports of `import visionlab.commands.train` \(cumulative\): \w+ \d+\.\d\d s", proc.stdout
    ), proc.stdout


def test_time_to_accuracy_compares_presets_measured_in_one_process(tmp_path):
    """--against: each preset in its own folder, the reference measured between them, comparison.csv
    with the ratio to the first preset (a bound '<r' where the first never got there)."""
    out = tmp_path / "cmp"
    tiny = "data.subset=200 trainer.max_epochs=1 threads=1 logger=csv"
    proc = run_cli(
        ["--out", out, "--reference-steps", "5", "--thresholds", "0.05,0.99", "--test-images", "1000"]
        + ["--against", tiny, *tiny.split()],
        tmp_path,
        script="benchmarks/time_to_accuracy.py",
    )
    assert "=== preset 1 of 2" in proc.stdout and "=== preset 2 of 2" in proc.stdout
    import pandas as pd

    table = pd.read_csv(out / "comparison.csv")
    assert len(table) == 2 and table["to_0.05_ratio"].iloc[0] == 1.0
    assert table["to_0.99_ratio"].isna().all()
    for i in (1, 2):
        assert (out / f"preset{i}" / "curve.csv").is_file() and (out / f"preset{i}" / "run" / "result.json").is_file()


def test_comparison_bounds_the_ratio_by_the_first_presets_whole_run(tmp_path):
    import sys

    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from time_to_accuracy import compare

    def curve(accs):
        return pd.DataFrame(
            {
                "epoch": range(1, len(accs) + 1),
                "train_time_s": [10.0 * (i + 1) for i in range(len(accs))],
                "reference_mimages": [0.1 * (i + 1) for i in range(len(accs))],
                "test_acc": accs,
            }
        )

    compare(["old", "new"], [curve([0.80, 0.91, 0.915, 0.919]), curve([0.90, 0.921])], [0.90, 0.92], tmp_path / "c.csv")
    table = pd.read_csv(tmp_path / "c.csv", dtype=str)
    assert list(table["to_0.90_ratio"]) == ["1.000", "0.500"]  # 0.1 M of 0.2 M reference images
    assert table["to_0.92_ratio"].iloc[1] == "<0.500"  # 0.2 M against the old run's whole 0.4 M


def test_median_over_seeds_counts_a_seed_that_never_got_there_as_the_slowest():
    import sys

    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from time_to_accuracy import median_reached

    assert median_reached(pd.Series([0.4, None, 0.3])) == 0.4  # 0.3, 0.4, never: the middle one
    assert median_reached(pd.Series([0.4, None, None])) is None  # only one of three got there
    assert median_reached(pd.Series([0.2, 0.4])) == pytest.approx(0.3)
    assert median_reached(pd.Series([0.2, None])) is None  # half got there: the median lies past it


def test_time_to_accuracy_names_a_threshold_with_all_its_digits():
    """--thresholds 0.935 is reported as time-to-0.935 (it was rounded to "0.94"), 0.9 as 0.90."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from time_to_accuracy import label

    assert [label(t) for t in (0.9, 0.92, 0.935, 0.05)] == ["0.90", "0.92", "0.935", "0.05"]


def test_time_to_accuracy_trains_every_preset_once_per_seed_and_summarises_the_seeds(tmp_path):
    """--seeds: every preset once per seed (alternating within a seed), seeds.csv with each run and a
    median row per preset saying how many seeds reached each threshold."""
    out = tmp_path / "seeds"
    tiny = "data.subset=200 trainer.max_epochs=1 threads=1 logger=csv"
    proc = run_cli(
        ["--out", out, "--reference-steps", "5", "--thresholds", "0.05,0.99", "--test-images", "1000"]
        + ["--seeds", "0,1", "--against", tiny]
        + [*tiny.split(), "model.dropout=0.1"],
        tmp_path,
        script="benchmarks/time_to_accuracy.py",
    )
    order = re.findall(r"=== seed (\d), preset (\d) of 2", proc.stdout)
    assert order == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")], proc.stdout
    import pandas as pd
    import torch

    table = pd.read_csv(out / "seeds.csv", dtype=str)
    runs, medians = table[table["seed"] != "median"], table[table["seed"] == "median"]
    assert len(runs) == 4 and len(medians) == 2
    assert list(medians["to_0.05_reached"]) == ["2/2", "2/2"] and list(medians["to_0.99_reached"]) == ["0/2", "0/2"]
    assert medians["to_0.99_mref"].isna().all() and float(medians["to_0.05_ratio"].iloc[0]) == 1.0
    for preset in (1, 2):
        for seed in (0, 1):
            ckpt = out / f"preset{preset}" / f"seed{seed}" / "run" / "checkpoints" / "best.ckpt"
            assert torch.load(ckpt, map_location="cpu", weights_only=True)["visionlab"]["config"]["seed"] == seed
    assert re.search(r"time-to-0\.99: reached by 0/2 seeds, median not reached", proc.stdout), proc.stdout
