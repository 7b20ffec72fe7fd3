"""The notebooks' helpers: visionlab.report.notebook (sweep folders, re-use, running a preset's
sweep) and visionlab.report.findings (what the notebooks print under each sweep), on synthetic
sweep folders read through the real report (build_report), without training anything."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from visionlab.config.groups import PROJECT_DIR
from visionlab.report import build_report
from visionlab.report import notebook as nbh
from visionlab.report.findings import facts_lines, per_seed_markdown, per_seed_table, seed_name, summary_row

REPO = Path(__file__).resolve().parents[1]


def write_run(sweep: Path, name: str, val_errs: list[float], status: str = "completed") -> None:
    """A run folder as train.py leaves it, reduced to what the report reads without events: result.json."""
    run = sweep / name
    run.mkdir(parents=True)
    history = [{"epoch": i, "train/err": v + 0.01, "val/err": v} for i, v in enumerate(val_errs)]
    (run / "result.json").write_text(
        json.dumps(
            {
                "run": name,
                "status": status,
                "params": 1000,
                "wall_time_s": 30.0,
                "history": history,
                "epochs": len(history),
            }
        )
    )


def bn_sweep(report_dir: Path, per_seed: dict[str, list[float]]) -> Path:
    """An ablation/bn-like sweep: setting -> best val err per seed (seeds 0, 1, ...), reported."""
    sweep = report_dir / "bn"
    for setting, errs in per_seed.items():
        for seed, err in enumerate(errs):
            write_run(sweep, f"model.bn={setting},seed={seed}", [0.5, err, err + 0.02])
    build_report(sweep)
    rows = [
        {"run": f"model.bn={s},seed={i}", "status": "completed", "wall_time_s": 30.0}
        for s, errs in per_seed.items()
        for i in range(len(errs))
    ]
    pd.DataFrame(rows).to_csv(sweep / "summary.csv", index=False)
    return sweep


@pytest.fixture
def sweeps(tmp_path) -> nbh.AblationSweeps:
    return nbh.AblationSweeps(repo=REPO, report_dir=tmp_path / "report")


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "value, expected",
    [("1", True), ("yes", True), ("TRUE", True), ("", False), ("0", False), ("false", False), (" No ", False)],
)
def test_env_flag(value, expected):
    assert nbh.env_flag("VISIONLAB_SMOKE", {"VISIONLAB_SMOKE": value}) is expected
    assert nbh.env_flag("VISIONLAB_SMOKE", {}) is False


def test_find_repo_walks_up_to_the_checkout(tmp_path):
    assert nbh.find_repo(REPO / "notebooks") == REPO
    assert nbh.find_repo(tmp_path) == PROJECT_DIR  # not inside a checkout: the installed project's


def test_from_env_default_smoke_and_report_dir(tmp_path):
    default = nbh.AblationSweeps.from_env({}, cwd=REPO / "notebooks")
    assert default.report_dir == REPO / "outputs" / "report" and not default.smoke and not default.rerun
    assert default.seeds == (0, 1, 2, 3)

    smoke = nbh.AblationSweeps.from_env({"VISIONLAB_SMOKE": "1", "VISIONLAB_RERUN": "1"}, cwd=REPO)
    assert smoke.smoke and smoke.rerun and smoke.seeds == (0,)
    assert smoke.report_dir.is_dir() and REPO not in smoke.report_dir.parents  # a temporary folder
    smoke.report_dir.rmdir()
    assert "smoke mode" in smoke.describe() and "VISIONLAB_RERUN=1" in smoke.describe()

    given = nbh.AblationSweeps.from_env({"VISIONLAB_SMOKE": "1", "VISIONLAB_REPORT_DIR": str(tmp_path / "s")}, cwd=REPO)
    assert given.report_dir == (tmp_path / "s").resolve() and str(given.report_dir) in given.describe()


def test_sweep_command_and_size_from_the_preset(tmp_path):
    real = nbh.AblationSweeps(repo=REPO, report_dir=REPO / "outputs" / "report")
    assert real.preset_grid("bn") == {"model.bn": ["true", "false"]}
    assert real.preset_grid("depth") == {"model.channels": ["[32]", "[32,64]", "[32,64,128]", "[32,64,128,256]"]}
    assert real.expected_runs("bn") == 8 and real.expected_runs("optimizer") == 28
    # inside the checkout the sweep folder is typed relative to it, as the notebook's markdown shows it
    assert real.sweep_command("bn") == (
        "python train.py -m experiment=ablation/bn hydra.sweep.dir=outputs/report/bn seed=0,1,2,3"
    )

    smoke = nbh.AblationSweeps(repo=REPO, report_dir=tmp_path, smoke=True)
    assert smoke.expected_runs("bn") == 2
    assert smoke.sweep_args("bn") == [
        "-m",
        "experiment=ablation/bn",
        f"hydra.sweep.dir={tmp_path / 'bn'}",
        "seed=0",
        *nbh.SMOKE_OVERRIDES,
    ]


# ----------------------------------------------------------------------------- re-use or run


def test_why_not_reusable(sweeps):
    assert sweeps.why_not_reusable("bn") == "no " + str(sweeps.report_dir / "bn" / "summary.csv")
    sweep = bn_sweep(sweeps.report_dir, {"true": [0.15, 0.16, 0.14, 0.17], "false": [0.18, 0.20, 0.19, 0.21]})
    assert sweeps.why_not_reusable("bn") is None

    summary = pd.read_csv(sweep / "summary.csv")
    summary.iloc[:3].to_csv(sweep / "summary.csv", index=False)
    assert sweeps.why_not_reusable("bn") == "summary.csv lists 3 runs, expected 8"
    summary.loc[1, "status"] = "failed"
    summary.to_csv(sweep / "summary.csv", index=False)
    assert sweeps.why_not_reusable("bn") == "1 run(s) neither completed nor diverged: model.bn=true,seed=1"


def test_run_sweep_reuses_a_finished_sweep(sweeps, monkeypatch, capsys):
    bn_sweep(sweeps.report_dir, {"true": [0.15, 0.16, 0.14, 0.17], "false": [0.18, 0.20, 0.19, 0.21]})
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a finished sweep must not run again"))
    df = sweeps.run_sweep("bn")
    assert len(df) == 8 and "Re-using the finished sweep" in capsys.readouterr().out
    assert sweeps.sweep_seconds == {}


def test_run_sweep_reruns_from_a_clean_folder_and_reports_failure(sweeps, monkeypatch):
    sweep = bn_sweep(sweeps.report_dir, {"true": [0.15, 0.16], "false": [0.18, 0.20]})
    sweeps.rerun = True
    calls = []

    def failing_train(cmd, cwd, stdout, stderr, env):
        calls.append(cmd)
        assert not sweep.exists(), "a re-run starts from an empty folder"
        stdout.write("Traceback ...\nValueError: boom\n")
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(subprocess, "run", failing_train)
    with pytest.raises(RuntimeError, match="exited with 1(.|\n)*ValueError: boom"):
        sweeps.run_sweep("bn")
    assert calls and calls[0][1:3] == ["train.py", "-m"] and "experiment=ablation/bn" in calls[0]
    assert (sweeps.report_dir / "bn.log").is_file() and "bn" in sweeps.sweep_seconds


# ----------------------------------------------------------------------------- findings


def test_facts_classify_settings_by_seed(sweeps):
    """Seed by seed: a setting as good as the best in one seed is within the spread; worse in every
    seed with overlapping ranges is said so; ranges apart are a clear difference."""
    report_dir = sweeps.report_dir
    bn_sweep(report_dir, {"a": [0.10, 0.14], "b": [0.09, 0.16], "c": [0.12, 0.15], "d": [0.30, 0.32]})
    settings, runs = sweeps.read_results("bn")
    text = "\n".join(facts_lines(settings, runs, written_for="a"))
    assert "best: a; worst: d" in text
    assert "within the seed spread (as good as a in at least one seed): b (+0.0050; per seed -0.0100, +0.0200)" in text
    assert "worse than a in every seed, but the seed ranges overlap: c (+0.0150; per seed +0.0200, +0.0100)" in text
    assert " d (+" not in text  # 0.30-0.32 against 0.10-0.14: no overlap, not listed
    assert "the same here." in text
    assert "NOTE: the best here is a" in "\n".join(facts_lines(settings, runs, written_for="b"))
    smoke = "\n".join(facts_lines(settings, runs, smoke=True, written_for="b"))
    assert "SMOKE MODE" in smoke and "written from" not in smoke


def test_facts_clear_difference_and_one_seed(sweeps):
    bn_sweep(sweeps.report_dir, {"true": [0.15, 0.16], "false": [0.18, 0.20]})
    text = "\n".join(facts_lines(*sweeps.read_results("bn")))
    assert "every other setting is worse than true in every seed, and the seed ranges do not overlap" in text
    assert "diverged runs (NaN loss): none" in text

    one = sweeps.report_dir / "one"
    for setting, err in (("true", 0.15), ("false", 0.9)):
        write_run(one, f"model.bn={setting},seed=0", [err])
    build_report(one)
    text = "\n".join(facts_lines(*sweeps.read_results("one")))
    assert "one seed: no seed spread measured" in text
    assert "0.9000 (1 seed)  <- no better than a constant guess" in text


def test_per_seed_table_pairs_the_seeds(sweeps):
    """The values behind "lower in both seeds (0.155 vs 0.183, 0.163 vs 0.202)"."""
    bn_sweep(sweeps.report_dir, {"true": [0.155, 0.163], "false": [0.183, 0.202], "x": [0.150, 0.170]})
    settings, runs = sweeps.read_results("bn")
    table = per_seed_table(settings, runs)
    assert list(table.index) == ["true", "x", "false"]  # results.csv's order: by mean
    assert table.loc["false", "seed 0"] == pytest.approx(0.183) and table.loc["false", "seed 1"] == pytest.approx(0.202)
    assert table.loc["false", "diff seed 0"] == pytest.approx(0.028)
    assert table.loc["false", "diff seed 1"] == pytest.approx(0.039)
    assert table.loc["x", "diff seed 0"] == pytest.approx(-0.005)
    assert list(table["rank seed 0"]) == [2, 1, 3] and list(table["rank seed 1"]) == [1, 2, 3]

    md = per_seed_markdown(table, "true")
    assert "| setting | seed 0 | seed 1 | vs true, per seed (points) | rank per seed |" in md
    assert "| false | 0.1830 | 0.2020 | +2.8, +3.9 | 3, 3 |" in md
    assert "| x | 0.1500 | 0.1700 | -0.5, +0.7 | 1, 2 |" in md

    shown = sweeps.seeds_markdown("bn")
    assert md in shown and "same validation split" in shown


def test_per_seed_table_with_a_failed_run(sweeps):
    bn_sweep(sweeps.report_dir, {"true": [0.15, 0.16], "false": [0.18]})
    write_run(sweeps.report_dir / "bn", "model.bn=false,seed=1", [], status="failed")
    build_report(sweeps.report_dir / "bn")
    table = per_seed_table(*sweeps.read_results("bn"))
    assert math.isnan(table.loc["false", "seed 1"]) and math.isnan(table.loc["false", "diff seed 1"])
    assert "| false | 0.1800 |  | +3.0, n/a | 2, n/a |" in per_seed_markdown(table, "true")


@pytest.mark.parametrize("value, name", [(0, "0"), (1.0, "1"), ("2", "2"), ("a", "a"), (1.5, "1.5")])
def test_seed_name(value, name):
    assert seed_name(value) == name


def test_summary(sweeps):
    bn_sweep(sweeps.report_dir, {"true": [0.15, 0.16], "false": [0.18, 0.20]})
    row = summary_row("bn", *sweeps.read_results("bn"))
    assert row == {
        "ablation": "bn",
        "best setting": "true",
        "best val err": "0.1550 ± 0.0071",
        "worst setting": "false",
        "worst val err": "0.1900 ± 0.0141",
        "gap (points)": 3.5,
        "diverged runs": 0,
        "training time (min)": 2.0,
    }
    table = sweeps.summary(["bn"])
    assert table.index.name == "ablation" and table.loc["bn", "gap (points)"] == 3.5
    assert sweeps.summary_lines(["bn"], table) == [
        "1 sweeps, 4 runs, 2 min of training in all (sum of the runs' wall times)"
    ]
