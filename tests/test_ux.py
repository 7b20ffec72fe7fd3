"""Issue #11's usability items: the report on sweeps with failed jobs, paths Hydra cannot parse,
where a run is, one message per error, quick checks, quiet logs, debug presets, lean checkpoints."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_report import PNGS, make_run, valid_png

from visionlab import report

# ----------------------------------------------------------------------------- 1. the report


def _bare_result(run_dir: Path, **result) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps(result))


def test_report_on_a_sweep_with_a_job_that_failed_before_its_model_was_built(tmp_path, capsys):
    """A job that failed on a bad config value has no parameter count; one that diverged in its
    first epoch has only NaNs. Both are rows of the table, marked, and every file is written."""
    sweep = tmp_path / "sweep"
    make_run(sweep, "model.activation=relu", "completed", [(0.6, 0.5), (0.4, 0.3)])
    _bare_result(
        sweep / "model.activation=bogus",
        run="model.activation=bogus",
        status="failed",
        error="ConfigError: model.activation='bogus' is not one of [...]",
        wall_time_s=1.0,
    )
    _bare_result(
        sweep / "model.activation=tanh",
        run="model.activation=tanh",
        status="diverged",
        params=100,
        wall_time_s=float("nan"),
        epochs=1,
        history=[{"epoch": 0, "train/err": math.nan, "val/err": math.nan}],
    )
    assert report.main([str(sweep)]) == 0
    capsys.readouterr()
    for png in PNGS:
        valid_png(sweep / png)
    md = (sweep / "results.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["bogus"].rstrip(" |").endswith("failed")
    assert rows["tanh"].rstrip(" |").endswith("diverged")
    assert "nan" not in md.lower()  # missing values are blank cells
    res = pd.read_csv(sweep / "results.csv", dtype={"setting": str}).set_index("setting")
    assert res.loc["bogus", "status"] == "failed" and res.loc["tanh", "status"] == "diverged"
    assert len(pd.read_csv(sweep / "runs.csv")) == 3


def test_report_writes_no_file_when_the_table_cannot_be_made(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    make_run(sweep, "a=1", "completed", [(0.6, 0.5)])
    make_run(sweep, "a=2", "completed", [(0.6, 0.4)])

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(report, "markdown_report", broken)
    with pytest.raises(RuntimeError):
        report.build_report(sweep)
    assert sorted(p.name for p in sweep.iterdir()) == ["a=1", "a=2"]


# ----------------------------------------------------------------------------- 3. paths Hydra cannot parse

from visionlab.config.argv import _parses, quote_paths, quote_token  # noqa: E402

JOB = "outputs/train/multiruns/2026-11-25_10-00-00_abc123/model.bn=true,optimizer=sgd"


@pytest.mark.parametrize(
    "token, value",
    [
        (f"ckpt={JOB}/checkpoints/best.ckpt", f"{JOB}/checkpoints/best.ckpt"),
        (f"resume={JOB}", JOB),
        ("output=subs/lr=0.1.csv", "subs/lr=0.1.csv"),
        ("data.root=~/data/seed=0", "~/data/seed=0"),
        ("ckpt=C:\\runs\\seed=0\\", "C:\\runs\\seed=0\\"),
        ('ckpt=a"b/seed=0', 'a"b/seed=0'),
    ],
)
def test_a_path_hydra_rejects_is_handed_over_quoted(token, value):
    assert _parses(token) is None  # what Hydra says to the token as typed: mismatched input '='
    fixed = _parses(quote_token(token))
    assert fixed is not None and fixed.value() == value


def test_a_list_of_paths_is_split_where_the_paths_exist(tmp_path):
    a, b = tmp_path / "model.bn=true,optimizer=sgd", tmp_path / "model.bn=false,optimizer=sgd"
    a.mkdir(), b.mkdir()
    assert _parses(f"ckpt=[{a},{b}]") is None
    assert _parses(quote_token(f"ckpt=[{a},{b}]")).value() == [str(a), str(b)]
    assert _parses(quote_token(f'ckpt=[{a},"{b}"]')).value() == [str(a), str(b)]
    # an existing folder with a comma would otherwise be read as a sweep of two values
    c = tmp_path / "x,y"
    c.mkdir()
    assert _parses(quote_token(f"ckpt={c}")).value() == str(c)


def test_other_tokens_are_left_alone():
    argv = [
        "-m",
        "-cn",
        "seed=1",
        "model.bn=true,false",
        'ckpt="a=b"',
        "ckpt='a=b'",
        "ckpt=a.ckpt",
        "optimizer=sgd",
        "data.root=[1,2",
        "--cfg",
        "job",
        "model.channels=[32,64]",
    ]
    assert quote_paths(argv) == argv[:8] + ['data.root="[1,2"'] + argv[9:]


# ----------------------------------------------------------------------------- CLI: 3, 4, 5, 6

from helpers import REPO, assert_user_error, challenge_overrides, describe, run_user  # noqa: E402


@pytest.fixture(scope="module")
def sweep_job(tmp_path_factory):
    """A one-job sweep on a tiny challenge: its job folder is named by its overrides (`seed=0,...`)."""
    from helpers import build_challenge

    cwd = tmp_path_factory.mktemp("sweep_job")
    ch = build_challenge(cwd / "challenge", n_per_class=4)
    proc = run_user(["-m", "seed=0", "trainer.max_epochs=1", "logger=csv"] + challenge_overrides(ch), cwd)
    assert proc.returncode == 0, describe(proc)
    [job] = [p.parent for p in (cwd / "outputs" / "train" / "multiruns").glob("*/*/result.json")]
    assert "=" in job.name and "," in job.name
    return cwd, job


def test_predict_takes_an_unquoted_path_into_a_sweep(sweep_job):
    cwd, job = sweep_job
    for i, ckpt in enumerate([f"{job}/checkpoints/best.ckpt", f"[{job},{job}/checkpoints/best.ckpt]"]):
        proc = run_user([f"ckpt={ckpt}", f"output={cwd}/sub{i}=x.csv"], cwd, script="predict.py")
        assert proc.returncode == 0, describe(proc)
        assert (cwd / f"sub{i}=x.csv").is_file()


def test_export_takes_an_unquoted_path_into_a_sweep(sweep_job):
    cwd, job = sweep_job
    proc = run_user([f"ckpt={job}", "format=torchscript", f"output={cwd}/model=x.pt"], cwd, script="export.py")
    assert proc.returncode == 0, describe(proc)
    assert (cwd / "model=x.pt").is_file()


def test_resume_takes_an_unquoted_sweep_job(sweep_job):
    cwd, job = sweep_job
    proc = run_user([f"resume={job}"], cwd)
    assert proc.returncode == 0, describe(proc)
    assert f"Run folder: {job}" in proc.stdout and _runs(cwd) == []  # continued in the job's own folder
    assert json.loads((job / "result.json").read_text())["status"] == "completed"


def _runs(cwd: Path) -> list[Path]:
    base = cwd / "outputs" / "train" / "runs"
    return sorted(base.iterdir()) if base.is_dir() else []


def test_a_run_that_fails_before_training_says_so_once_and_leaves_no_folder(make_challenge, tmp_path):
    ch = make_challenge(n_per_class=4)
    proc = run_user(challenge_overrides(ch) + ["data.label_col=no_such_column"], tmp_path)
    message = assert_user_error(proc, "no_such_column")
    assert "Run failed" not in proc.stdout + proc.stderr and message.count("no_such_column") == 1
    assert "Run folder: " in proc.stdout  # it said where it ran ...
    assert _runs(tmp_path) == []  # ... and took the empty folder away


@pytest.fixture
def no_heavy_imports(tmp_path):
    """A PYTHONPATH on which `import torch` fails: what must fail before the heavy imports cannot
    have reached them."""
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('torch imported before the cheap checks')\n")
    import os

    return {"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def run_env(args, cwd, env_extra, script="train.py"):
    import subprocess
    import sys

    from helpers import user_env

    env = user_env()
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, str(REPO / script)] + [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cheap_checks_come_before_the_imports(tmp_path, no_heavy_imports):
    existing = tmp_path / "submission.csv"
    existing.write_text("x\n")
    cases = [
        (["data=challenge"], "train.py", "data.root is not set"),
        ([f"data.root={tmp_path}/missing"], "train.py", f"data.root='{tmp_path}/missing' is not a folder"),
        ([], "predict.py", "no checkpoint given"),
        ([f"ckpt={tmp_path}/no.ckpt"], "predict.py", "does not exist"),
        ([f"ckpt={tmp_path}", f"output={existing}"], "predict.py", "exists and is kept"),
    ]
    for args, script, needle in cases:
        proc = run_env(args, tmp_path, no_heavy_imports, script)
        assert_user_error(proc, needle)
    assert (
        _runs(tmp_path) == []
        and not (tmp_path / "outputs" / "predict").exists()
        or list((tmp_path / "outputs" / "predict").iterdir()) == []
    )


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one(tmp_path):
    proc = run_user(["trainer.accelerator=gpu"], tmp_path)
    message = assert_user_error(proc, "no CUDA GPU visible; use trainer.accelerator=auto or cpu")
    assert len(message.strip().splitlines()) == 1 and "Data:" not in proc.stdout + proc.stderr
    assert _runs(tmp_path) == []


# ----------------------------------------------------------------------------- 12. lean checkpoints


def test_best_ckpt_carries_weights_and_config_only_and_resume_uses_last(trained, tmp_path):
    import torch
    from helpers import predict_inproc
    from omegaconf import OmegaConf

    from visionlab.commands.resume import resume_config

    shutil.copytree(trained[1].parents[1], tmp_path / "run")  # a copy: the test changes the run
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    last = best.with_name("last.ckpt")
    b, last_state = torch.load(best, weights_only=True), torch.load(last, weights_only=True)
    assert "optimizer_states" not in b and "callbacks" not in b and {"state_dict", "visionlab"} <= set(b)
    assert "optimizer_states" in last_state and "loops" in last_state  # what resume needs
    assert best.stat().st_size < 0.6 * last.stat().st_size  # Adam's two moments are gone
    assert predict_inproc(best, tmp_path / "sub.csv").is_file()

    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create({"seed": 0}), tmp_path / "run" / ".hydra" / "config.yaml")  # as Hydra keeps it
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path / "run")}, "resume": str(tmp_path / "run")})
    assert resume_config(cfg).ckpt_path == str(last)
    last.unlink()  # a weights-only best.ckpt is no point to resume from: start again, same folder
    assert resume_config(cfg).ckpt_path is None


# ----------------------------------------------------------------------------- 7, 8. quiet logs, debug presets

CHATTER = ("💡 Tip", "GPU available", "TPU available", "LeafSpec", "to estimate number of stepping batches")


def test_debug_fdr_is_quiet_loads_what_it_uses_and_suggests_no_submission(tmp_path):
    proc = run_user(["debug=fdr"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, describe(proc)
    assert "Data: 64 training / 64 validation images" in out
    assert "submission:" not in out and "fast_dev_run" in out
    assert not [c for c in CHATTER if c in out], out[-3000:]
    proc = run_user(["trainer.fast_dev_run=true", "data.subset=64", "data.eval_subset=64", "verbose=true"], tmp_path)
    assert proc.returncode == 0, describe(proc)  # no `+` needed
    assert "GPU available" in proc.stdout + proc.stderr  # verbose=true lets Lightning speak


@pytest.mark.parametrize(
    "preset, trainer",
    [
        ("overfit", {"overfit_batches": 3, "max_epochs": 20}),
        ("limits", {"limit_train_batches": 5, "limit_val_batches": 2, "max_epochs": 3}),
        ("profiler", {"profiler": "simple", "max_epochs": 1}),
    ],
)
def test_debug_presets_compose(preset, trainer):
    from helpers import compose_cfg

    cfg = compose_cfg("train", [f"debug={preset}"])
    assert {k: cfg.trainer[k] for k in trainer} == trainer
    assert cfg.data.subset and cfg.data.eval_subset  # only the images the preset uses are decoded
    assert compose_cfg("train", []).trainer.fast_dev_run is False


def test_a_diverged_run_suggests_no_submission(make_challenge, tmp_path, capsys):
    from helpers import train_inproc

    ch = make_challenge(n_per_class=8)
    result = train_inproc(
        tmp_path / "run", challenge_overrides(ch) + ["trainer.max_epochs=2", "optimizer.lr=1e12", "model.bn=false"]
    )
    assert result["status"] == "diverged", result
    assert "submission:" not in capsys.readouterr().out


def test_tune_lr_find_plots_the_range_test_and_suggests_an_lr_without_training(make_challenge, tmp_path, capsys):
    from helpers import train_inproc

    ch = make_challenge(n_per_class=8)
    result = train_inproc(
        tmp_path / "run",
        challenge_overrides(ch) + ["tune=lr_find", "tune.num_training=24", "tune.early_stop_threshold=null"],
    )
    found = result["lr_find"]
    assert result["status"] == "completed" and result["checkpoint"] == ""
    assert found["steps"] == 24 and found["min_lr"] == pytest.approx(1e-7) and found["max_lr"] == 1.0
    assert (tmp_path / "run" / "lr_find.png").stat().st_size > 1000
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained, nothing to submit
    assert 1e-7 <= found["suggestion"] <= 1.0 and 1e-8 <= found["min_loss_lr_div_10"] <= 0.1
    assert f"optimizer.lr={found['suggestion']:.3g}" in capsys.readouterr().out


def test_debug_overfit_memorises_its_batches(tmp_path):
    from helpers import train_inproc

    result = train_inproc(tmp_path / "run", ["debug=overfit"])
    assert result["epochs"] == 20 and result["final_train_err"] <= 0.05, result["history"][-1]


@pytest.mark.parametrize(
    "token, message",
    [
        ("model.dropuot=0.2", "model.dropuot is not a key of any model option; did you mean model.dropout"),
        ("trainer.max_epoch=3", "did you mean trainer.max_epochs"),
        ("seeed=1", "seeed is not a key or group of train.py; did you mean seed"),
    ],
)
def test_a_misspelt_key_gets_our_one_line_not_hydras_append_advice(token, message):
    from visionlab.config.typos import check_override_keys

    with pytest.raises(SystemExit, match=message):
        check_override_keys(["-m", "model.bn=true,false", token, "data.subset=3"])
    check_override_keys(  # what exists passes, sweeps, deletions, appends and Hydra's own keys included
        ["-m", "model.bn=true,false", "model=resnet", "model.stem=16", "+model.extra=1", "~callbacks.progress"]
        + ["hydra/launcher=joblib", "hydra.sweep.dir=x", "experiment=leaderboard", "seed=1", "paths.output_dir=y"]
        + ["--cfg", "job", "tune=lr_find", "tune.num_training=3", "data.eval_subset=3", "optimizer.momentum=0.5"]
    )


def test_a_misspelt_key_is_named_before_hydra_runs(tmp_path):
    proc = run_user(["model.dropuot=0.2"], tmp_path)
    assert_user_error(proc, "model.dropuot is not a key of any model option", "model.dropout")
    assert "+model.dropuot" not in proc.stderr and not (tmp_path / "outputs").exists()
    proc = run_user(["ckpt=x.ckpt", "data.root_dir=z"], tmp_path, script="predict.py")
    assert_user_error(proc, "data.root_dir is not a key of any data option", "data.root")


def test_resume_of_a_complete_run_says_so_and_changes_nothing(sweep_job):
    cwd, job = sweep_job
    before = {p: p.read_bytes() for p in [job / "result.json", *sorted((job / "checkpoints").iterdir())]}
    proc = run_user([f"resume={job}"], cwd)
    assert proc.returncode == 0, describe(proc)
    assert f"{job} is complete (1 of 1 epochs" in proc.stdout and "nothing to continue" in proc.stdout
    assert "trainer.max_epochs=<more>" in proc.stdout and "test/err" not in proc.stdout  # no silent re-test
    assert {p: p.read_bytes() for p in before} == before
