"""visionlab.report: labels, tables and plots for a sweep folder (a real tiny sweep + synthetic ones)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import forkserver
import pandas as pd
import pytest
from PIL import Image

from visionlab import report

ROOT = Path(__file__).resolve().parents[1]
PNGS = ("train_err.png", "val_err.png", "errors.png")


def valid_png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        return im.size


def events_min(run_dir: Path, tag: str = "val/err") -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return min(e.value for e in acc.Scalars(tag))


# ----------------------------------------------------------------------------- synthetic sweeps


def make_run(
    sweep: Path, name: str, status: str, history: list[tuple[float, float]] | None = None, events: bool = True, **extra
) -> Path:
    """A run folder like train.py writes: events (train/err, val/err per epoch step) and result.json."""
    run_dir = sweep / name
    run_dir.mkdir(parents=True)
    history = history or []
    if events and history:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(run_dir)) as w:
            for epoch, (train, val) in enumerate(history):
                w.add_scalar("train/err", train, epoch)
                w.add_scalar("val/err", val, epoch)
    result = {
        "run": name,
        "status": status,
        "params": 1000,
        "wall_time_s": 1.5,
        "history": [{"epoch": i, "train/err": t, "val/err": v} for i, (t, v) in enumerate(history)],
        "epochs": len(history),
        **extra,
    }
    (run_dir / "result.json").write_text(json.dumps(result))  # NaN is written as NaN, as train.py does
    return run_dir


def test_parse_run_name_keeps_bracketed_values():
    assert report.parse_run_name("model.channels=[32,64],optimizer=sgd,seed=0") == {
        "model.channels": "[32,64]",
        "optimizer": "sgd",
        "seed": "0",
    }
    assert report.parse_run_name("a={x:1,y:[2,3]},b='p,q'") == {"a": "{x:1,y:[2,3]}", "b": "'p,q'"}
    assert report.parse_run_name("+experiment=foo") == {"experiment": "foo"}
    assert report.parse_run_name("not_an_override") is None


def test_split_top_level_reads_sweep_values_as_typed():
    """The notebooks read the presets' swept values with it (Hydra's parser, booleans as typed)."""
    assert report.split_top_level("[32],[32,64]") == ["[32]", "[32,64]"]
    assert report.split_top_level("true,false") == ["true", "false"]
    assert report.split_top_level("relu") == ["relu"]


def test_labels_are_the_swept_values():
    names = [
        "model.channels=[32,64],seed=0",
        "model.channels=[32,64],seed=1",
        "model.channels=[16,32],seed=0",
        "model.channels=[16,32],seed=1",
    ]
    labels, keys = report.setting_labels(names)
    assert keys == ["model.channels"]
    assert labels == ["[32,64]", "[32,64]", "[16,32]", "[16,32]"]

    labels, keys = report.setting_labels(
        ["model.bn=true,optimizer=sgd", "model.bn=false,optimizer=sgd", "model.bn=true,optimizer=adam"]
    )
    assert keys == ["model.bn", "optimizer"]
    assert labels == ["bn=true, optimizer=sgd", "bn=false, optimizer=sgd", "bn=true, optimizer=adam"]

    # a key with the same value everywhere is not swept; seed alone is one setting
    labels, keys = report.setting_labels(["model.bn=true,seed=0", "model.bn=true,seed=1"])
    assert keys == [] and labels == ["model.bn=true", "model.bn=true"]


def test_diverged_and_failed_runs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_run(sweep, "optimizer.lr=0.1,seed=0", "completed", [(0.6, 0.5), (0.4, 0.3), (0.3, 0.35)])
    make_run(sweep, "optimizer.lr=0.1,seed=1", "completed", [(0.7, 0.6), (0.5, 0.4), (0.4, 0.45)])
    # diverged: NaN from epoch 2 on, in result.json's history only (no events: the fallback path)
    make_run(sweep, "optimizer.lr=10,seed=0", "diverged", [(0.8, 0.7), (math.nan, math.nan)], events=False)
    make_run(sweep, "optimizer.lr=10,seed=1", "completed", [(0.8, 0.75), (0.7, 0.65), (0.6, 0.6)])
    make_run(sweep, "optimizer.lr=100,seed=0", "failed", error="RuntimeError: boom")
    make_run(sweep, "optimizer.lr=100,seed=1", "failed", error="RuntimeError: boom")

    assert report.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "results.md" in out and "| optimizer.lr |" in out
    for png in PNGS:
        valid_png(sweep / png)

    res = pd.read_csv(sweep / "results.csv", dtype={"setting": str}).set_index("setting")
    assert list(res.index) == ["0.1", "10", "100"]  # sorted by best val err, failed last
    assert res.loc["0.1", "best_val_err_mean"] == pytest.approx(0.35)
    assert res.loc["0.1", "best_epoch_min"] == 2 and res.loc["0.1", "n_seeds"] == 2
    assert res.loc["10", "status"] == "completed 1, diverged 1"
    assert res.loc["10", "best_val_err_mean"] == pytest.approx((0.7 + 0.6) / 2)
    assert res.loc["100", "status"] == "failed" and res.loc["100", "n_runs"] == 2
    assert res.loc["100", "n_seeds"] == 0 and math.isnan(res.loc["100", "best_val_err_mean"])

    runs = pd.read_csv(sweep / "runs.csv", dtype={"setting": str}).set_index("run")
    assert len(runs) == 6
    div = runs.loc["optimizer.lr=10,seed=0"]
    assert div["status"] == "diverged" and div["best_val_err"] == pytest.approx(0.7) and div["epochs"] == 2
    assert runs.loc["optimizer.lr=100,seed=0", "error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in (sweep / "results.md").read_text()

    loaded, keys = report.load_sweep(sweep)
    plotter = report.SweepPlotter(loaded, keys)
    plotted = {label: group for label, group in plotter.groups}
    assert set(plotted) == {"0.1", "10"}  # failed runs are not plotted
    assert "(diverged" in plotter.legend_label("10", plotted["10"])
    # the same colour for a setting in every figure, from the sorted labels (failed included)
    assert list(plotter.colours) == ["0.1", "10", "100"]


def test_resumed_run_counts_each_epoch_once(tmp_path):
    """A run resumed in its own folder writes a second event file that repeats some epochs."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = make_run(tmp_path / "sweep", "model.bn=true", "completed", [(0.9, 0.9), (0.8, 0.8), (0.7, 0.7)])
    with SummaryWriter(log_dir=str(run_dir)) as w:  # resumed from epoch 2 (step 1)
        for step, v in ((1, 0.5), (2, 0.4), (3, 0.3)):
            w.add_scalar("val/err", v, step)
            w.add_scalar("train/err", v, step)
    run = report.load_run(run_dir)
    assert run["series"]["val/err"] == [
        (1, pytest.approx(0.9)),
        (2, 0.5),
        (3, pytest.approx(0.4)),
        (4, pytest.approx(0.3)),
    ]
    assert run["best_val_err"] == pytest.approx(0.3) and run["best_epoch"] == 4 and run["epochs"] == 4


def test_many_epochs_and_out_dir(tmp_path):
    sweep = tmp_path / "sweep"
    for bn in ("true", "false"):
        make_run(sweep, f"model.bn={bn}", "completed", [(1 / (e + 2), 1 / (e + 1.5)) for e in range(40)])
    out = tmp_path / "report"
    paths = report.build_report(sweep, out)
    assert set(paths) == {"train_err", "val_err", "errors", "results_csv", "results_md", "runs_csv"}
    assert all(Path(p).parent == out for p in paths.values())
    assert not (sweep / "results.csv").exists()
    assert valid_png(out / "val_err.png")[0] > 500
    res = pd.read_csv(out / "results.csv", dtype={"setting": str})
    assert list(res["setting"]) == ["false", "true"]  # equal errors: sorted by label
    assert (res["n_seeds"] == 1).all() and (res["best_epoch_min"] == 40).all()


def test_not_a_sweep_dir(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "not a sweep folder" in err and "result.json" in err

    missing = tmp_path / "missing"
    assert report.main([str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err

    # a single run's folder: says so
    single = make_run(tmp_path, "one", "completed", [(0.5, 0.5)])
    assert report.main([str(single)]) == 2
    assert "single run" in capsys.readouterr().err

    with pytest.raises(report.NotASweepDir):
        report.build_report(empty)


def test_module_exit_code(tmp_path):
    proc = forkserver.run([sys.executable, "-m", "visionlab.report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert str(tmp_path) in proc.stderr


# ----------------------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("real_sweep")
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "model.bn=true,false",
        "seed=0,1",
        "data.subset=64",
        "trainer.max_epochs=2",
        "data.val_fraction=0.05",
    ]
    proc = forkserver.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweeps = list((cwd / "outputs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    return sweeps[0]


@pytest.mark.slow
def test_real_sweep_report(real_sweep, capsys):
    assert report.main([str(real_sweep)]) == 0
    out = capsys.readouterr().out
    assert "| model.bn |" in out
    for png in PNGS:
        assert str(real_sweep / png) in out
        width, height = valid_png(real_sweep / png)
        assert width > 400 and height > 300

    res = pd.read_csv(real_sweep / "results.csv", dtype={"setting": str, "model.bn": str})
    assert sorted(res["setting"]) == ["false", "true"]  # the swept values, not `model.bn=true,seed=0`
    assert (res["n_seeds"] == 2).all() and (res["n_runs"] == 2).all()
    assert (res["status"] == "completed").all()

    runs = pd.read_csv(real_sweep / "runs.csv", dtype={"setting": str})
    assert len(runs) == 4 and sorted(runs["seed"]) == [0, 0, 1, 1]
    for _, r in runs.iterrows():
        assert r["best_val_err"] == pytest.approx(events_min(real_sweep / r["run"]), abs=1e-7)
        assert r["params"] > 0 and r["wall_time_s"] >= 0

    for _, row in res.iterrows():
        mins = [events_min(real_sweep / f"model.bn={row['setting']},seed={s}") for s in (0, 1)]
        assert row["best_val_err_mean"] == pytest.approx(sum(mins) / 2, abs=1e-7)
        assert row["best_val_err_min"] == pytest.approx(min(mins), abs=1e-7)
        assert row["best_val_err_std"] == pytest.approx(abs(mins[0] - mins[1]) / math.sqrt(2), abs=1e-7)
    assert res["best_val_err_mean"].is_monotonic_increasing

    md = (real_sweep / "results.md").read_text()
    assert md.count("\n| true |") == 1 and md.count("\n| false |") == 1


def test_n_seeds_counts_distinct_seeds_not_repeats_of_one(tmp_path):
    sweep = tmp_path / "sweep"
    for name, val in (("a", 0.3), ("b", 0.32)):  # one setting run twice with seed 0 (folders named apart)
        make_run(sweep, f"optimizer.lr=0.1,seed=0,x={name}", "completed", [(0.4, val)], events=False)
    make_run(sweep, "optimizer.lr=1,seed=0,x=a", "completed", [(0.4, 0.5)], events=False)
    make_run(sweep, "optimizer.lr=1,seed=1,x=a", "completed", [(0.4, 0.6)], events=False)
    from visionlab.report.runs import load_sweep, runs_frame
    from visionlab.report.tables import settings_table

    runs, keys = load_sweep(sweep)
    per_run = runs_frame(runs, [k for k in keys if k != "x"])
    per_run["setting"] = per_run["optimizer.lr"].astype(str)
    table = settings_table(per_run, ["optimizer.lr"]).set_index("setting")
    assert table.loc["0.1", "n_runs"] == 2 and table.loc["0.1", "n_seeds"] == 1
    assert table.loc["1", "n_seeds"] == 2


def test_the_report_names_its_best_run_and_checkpoint(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_run(sweep, "optimizer.lr=0.1", "completed", [(0.4, 0.3)], events=False)
    make_run(sweep, "optimizer.lr=1", "completed", [(0.4, 0.2)], events=False)
    assert report.main([str(sweep)]) == 0
    ckpt = sweep / "optimizer.lr=1" / "checkpoints" / "best.ckpt"
    line = f"Best run: optimizer.lr=1 (best val err 0.2000), checkpoint {ckpt}; submission: python predict.py"
    assert line in capsys.readouterr().out
    assert (
        f"Best run: `optimizer.lr=1` (best val err 0.2000), checkpoint `{ckpt}`" in (sweep / "results.md").read_text()
    )
