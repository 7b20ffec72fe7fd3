"""End to end through the entry points, as a user runs them: the design card's sweep on the demo
challenge, predict.py on one of its checkpoints, a custom challenge folder, and the scorer."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import forkserver
import pandas as pd
import pytest
from helpers import DEMO, REPO, build_challenge, cli_env, run_cli

pytestmark = pytest.mark.slow

SWEEP_ARGS = [
    "-m",
    "model.bn=true,false",
    "optimizer=sgd,adam",
    "data.subset=64",
    "trainer.max_epochs=1",
    "data.val_fraction=0.05",
]
RUN_NAMES = {f"model.bn={bn},optimizer={opt}" for bn in ("true", "false") for opt in ("sgd", "adam")}
SCALARS = {"train/loss", "train/err", "val/loss", "val/err"}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- the demo sweep


@pytest.fixture(scope="module")
def demo_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_cli(SWEEP_ARGS, cwd)
    sweeps = list((cwd / "outputs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    return cwd, proc, sweeps[0]


def test_sweep_makes_one_folder_per_run(demo_sweep):
    _, _, sweep_dir = demo_sweep
    runs = {p.name for p in sweep_dir.iterdir() if p.is_dir()}
    assert runs == RUN_NAMES
    for name in RUN_NAMES:
        run = sweep_dir / name
        assert (run / "checkpoints" / "best.ckpt").is_file()
        assert (run / "checkpoints" / "last.ckpt").is_file()
        result = json.loads((run / "result.json").read_text())
        assert result["status"] == "completed" and result["epochs"] == 1
        assert result["run"] == name


def test_sweep_runs_differ_by_their_overrides(demo_sweep):
    import yaml

    _, _, sweep_dir = demo_sweep
    for name in RUN_NAMES:
        cfg = yaml.safe_load((sweep_dir / name / ".hydra" / "config.yaml").read_text())
        bn, opt = re.fullmatch(r"model.bn=(\w+),optimizer=(\w+)", name).groups()
        assert cfg["model"]["bn"] is (bn == "true")
        assert cfg["optimizer"]["_target_"] == {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}[opt]
        assert cfg["data"]["subset"] == 64 and cfg["trainer"]["max_epochs"] == 1


def test_sweep_tensorboard_scalars(demo_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, sweep_dir = demo_sweep
    for name in RUN_NAMES:
        run = sweep_dir / name
        assert list(run.glob("events.out.tfevents.*")), name
        ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
        ea.Reload()
        assert SCALARS <= set(ea.Tags()["scalars"]), (name, ea.Tags()["scalars"])
        for tag in SCALARS:
            events = ea.Scalars(tag)
            assert [e.step for e in events] == [0], (name, tag)  # one value, at epoch 0
            if tag.endswith("err"):
                assert 0.0 <= events[0].value <= 1.0


def test_sweep_summary_csv_and_table(demo_sweep):
    _, proc, sweep_dir = demo_sweep
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == 4
    assert set(summary["run"]) == RUN_NAMES
    assert (summary["status"] == "completed").all()
    assert summary["best_val_err"].between(0, 1).all()
    assert list(summary["job"]) == [0, 1, 2, 3]
    for ckpt in summary["checkpoint"]:
        assert Path(ckpt).is_file() and Path(ckpt).name == "best.ckpt"
    out = proc.stdout
    assert "Sweep summary (4 runs)" in out
    table = out[out.index("Sweep summary (4 runs)") :].splitlines()
    assert table[1].split()[:3] == ["run", "status", "best_val_err"]
    rows = [line.split() for line in table[2:6]]
    assert {r[0] for r in rows} == RUN_NAMES
    assert all(r[1] == "completed" for r in rows)


@pytest.fixture(scope="module")
def demo_prediction(demo_sweep):
    cwd, _, sweep_dir = demo_sweep
    ckpt = sweep_dir / "model.bn=true,optimizer=adam" / "checkpoints" / "best.ckpt"
    output = cwd / "sub.csv"
    # Quoted for Hydra: the sweep's folder names hold '=' and ',' (the printed command quotes them too).
    proc = run_cli([f'ckpt="{ckpt}"', f"output={output}"], cwd, script="predict.py")
    return cwd, ckpt, output, proc


def test_printed_predict_command_works(demo_sweep, tmp_path):
    cwd, proc, _ = demo_sweep
    hints = [shlex.split(line)[2:] for line in re.findall(r"submission: (python predict.py .+)", proc.stdout)]
    assert len(hints) == 4
    predicted = run_cli([*hints[0], f"output={tmp_path / 'sub.csv'}"], cwd, script="predict.py", check=False)
    assert predicted.returncode == 0, predicted.stderr[-1500:]
    assert (tmp_path / "sub.csv").is_file()


def test_sweep_names_its_best_job_and_that_jobs_checkpoint(demo_sweep):
    cwd, proc, sweep_dir = demo_sweep
    run, err, hint = re.search(r"Best job by val err: (\S+) \(([\d.]+)\): (python predict.py .+)", proc.stdout).groups()
    summary = pd.read_csv(sweep_dir / "summary.csv")
    best = summary.loc[summary["best_val_err"].idxmin()]
    assert run == best["run"] and float(err) == pytest.approx(best["best_val_err"], abs=5e-5)
    ckpt = shlex.split(hint)[2][len("ckpt=") :].strip('"')
    assert Path(ckpt).name == "best.ckpt" and Path(ckpt).parents[1].name == run and (cwd / ckpt).is_file()


def test_predict_on_the_sweep_folder_ensembles_every_job(demo_sweep, tmp_path):
    cwd, sweep_proc, sweep = demo_sweep
    hint = re.search(r"An ensemble of every job's best.ckpt: (python predict.py .+)", sweep_proc.stdout).group(1)
    args = shlex.split(hint)[2:]
    assert (
        args[0].startswith("ckpt=")
        and (cwd / args[0][5:].strip('"')).resolve() == sweep.resolve()
        and args[1] == "tta=true"
    )
    proc = run_cli([*args, f"output={tmp_path / 'ensemble.csv'}"], cwd, script="predict.py")
    assert f"Submission (484 rows, 4 model(s), TTA): {tmp_path / 'ensemble.csv'}" in proc.stdout
    assert [r["image_id"] for r in read_rows(tmp_path / "ensemble.csv")] == [
        r["image_id"] for r in read_rows(DEMO / "sample_submission.csv")
    ]


def test_predict_writes_the_submission(demo_prediction):
    _, _, output, proc = demo_prediction
    sample = read_rows(DEMO / "sample_submission.csv")
    sub = read_rows(output)
    assert list(sub[0].keys()) == ["image_id", "label"]
    assert [r["image_id"] for r in sub] == [r["image_id"] for r in sample]
    classes = {r["label"] for r in read_rows(DEMO / "train.csv")}
    assert {r["label"] for r in sub} <= classes
    assert f"Submission (484 rows, 1 model(s)): {output}" in proc.stdout
    match = re.search(r"Test accuracy: (\d\.\d{4}) \((\d+)/484\)", proc.stdout)
    assert match, proc.stdout[-2000:]
    truth = {r["image_id"]: r["label"] for r in read_rows(DEMO / "solution.csv")}
    correct = sum(truth[r["image_id"]] == r["label"] for r in sub)
    assert int(match.group(2)) == correct


def test_predict_refuses_to_overwrite(demo_prediction):
    cwd, ckpt, output, _ = demo_prediction
    before = output.read_bytes()
    proc = run_cli([f'ckpt="{ckpt}"', f"output={output}"], cwd, script="predict.py", check=False)
    assert proc.returncode != 0
    assert "overwrite=true" in proc.stderr + proc.stdout
    assert output.read_bytes() == before
    assert [p.name for p in output.parent.glob(".sub.csv*")] == []  # no temporary file left behind


def test_score_cli_on_the_demo(demo_prediction):
    cwd, _, output, proc = demo_prediction
    accuracy = re.search(r"Test accuracy: (\d\.\d{4})", proc.stdout).group(1)
    scored = run_cli([output, DEMO / "solution.csv"], cwd, module="visionlab.score")
    assert last_line(scored.stdout) == f"accuracy {accuracy}"
    itself = run_cli([DEMO / "solution.csv", DEMO / "solution.csv"], cwd, module="visionlab.score")
    assert last_line(itself.stdout) == "accuracy 1.0000"
    assert "484/484 correct" in itself.stdout


def test_score_cli_rejects_an_incomplete_submission(tmp_path):
    rows = read_rows(DEMO / "solution.csv")[:-1]
    with open(tmp_path / "short.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image_id", "label"])
        writer.writeheader()
        writer.writerows(rows)
    proc = run_cli([tmp_path / "short.csv", DEMO / "solution.csv"], tmp_path, module="visionlab.score", check=False)
    assert proc.returncode == 2
    assert "1 missing" in proc.stderr and "test_00483" in proc.stderr


# ----------------------------------------------------------------------------- a custom challenge


CUSTOM_ARGS = [
    "data=challenge",
    "data.id_col=filename",
    "data.label_col=class",
    "data.image_size=16",
    "data.val_fraction=0.25",
    "data.solution=solution.csv",
    "model.channels=[8,16]",
    "trainer.max_epochs=1",
    "data.batch_size=8",
]


@pytest.fixture(scope="module")
def custom_runs(tmp_path_factory):
    """Two identical single runs started together on a custom challenge (JPEGs of mixed sizes, PNGs of
    odd modes, columns filename/class): each must get its own folder."""
    ch = build_challenge(tmp_path_factory.mktemp("data") / "challenge", n_per_class=8)
    cwd = tmp_path_factory.mktemp("custom")
    cmd = [sys.executable, str(REPO / "train.py"), f"data.root={ch.root}", *CUSTOM_ARGS]
    procs = [
        forkserver.popen(cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            pytest.fail(f"train.py exited {p.returncode}\n{out[-2000:]}\n{err[-4000:]}", pytrace=False)
    return ch, cwd, outs


def test_custom_challenge_trains(custom_runs):
    ch, cwd, outs = custom_runs
    runs = sorted((cwd / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 2  # started together, two folders
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        assert result["status"] == "completed", result
        assert result["test_err"] is not None  # the solution file was used to test
        assert (run / "checkpoints" / "best.ckpt").is_file()
    assert all("Checkpoint: " in out for out, _ in outs)


def test_custom_challenge_predicts_and_scores(custom_runs, tmp_path):
    ch, cwd, _ = custom_runs
    ckpt = sorted((cwd / "outputs" / "train" / "runs").glob("*/checkpoints/best.ckpt"))[0]
    output = tmp_path / "sub.csv"
    proc = run_cli([f"ckpt={ckpt}", f"output={output}"], cwd, script="predict.py")
    sub = read_rows(output)
    assert list(sub[0].keys()) == ["filename", "class"]
    assert [r["filename"] for r in sub] == ch.test_ids
    assert {r["class"] for r in sub} <= set(ch.classes)
    assert "Test accuracy:" in proc.stdout
    scored = run_cli([output, ch.solution], tmp_path, module="visionlab.score")
    accuracy = float(last_line(scored.stdout).split()[-1])
    correct = sum(r["class"] == t for r, t in zip(sub, ch.test_labels))
    assert accuracy == pytest.approx(correct / len(sub), abs=1e-4)
    itself = run_cli([ch.solution, ch.solution], tmp_path, module="visionlab.score")
    assert last_line(itself.stdout) == "accuracy 1.0000"


def test_without_a_validation_split_best_ckpt_is_the_last_epoch(tmp_path):
    """data.val_fraction=0 (every image trains, as experiment=leaderboard does): no early stopping,
    best.ckpt and last.ckpt both hold the final epoch."""
    import torch

    ch = build_challenge(tmp_path / "challenge", n_per_class=6)
    run_cli([f"data.root={ch.root}", *CUSTOM_ARGS, "data.val_fraction=0", "trainer.max_epochs=3"], tmp_path)
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs"] == 3
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)["epoch"] == 2


def test_leaderboard_recipe_trains_and_its_printed_command_predicts(tmp_path):
    """The documented two commands, shortened to a 300-image subset and one epoch."""
    proc = run_cli(["experiment=leaderboard", "data.subset=300", "trainer.max_epochs=1"], tmp_path)
    assert "bfloat16" in proc.stdout + proc.stderr  # the recipe's bf16 autocast is on
    assert "300 training / 0 validation images" in proc.stdout + proc.stderr
    hint = re.search(r"submission: (python predict.py .+)", proc.stdout).group(1)
    out = tmp_path / "sub.csv"
    pred = run_cli([*shlex.split(hint)[2:], "tta=true", f"output={out}"], tmp_path, script="predict.py")
    assert "1 model(s), TTA" in pred.stdout and "Test accuracy:" in pred.stdout
    assert [r["image_id"] for r in read_rows(out)] == [r["image_id"] for r in read_rows(DEMO / "sample_submission.csv")]


def test_best_recipe_sweeps_both_nets_and_predict_ensembles_them(tmp_path):
    """README's best score: one sweep over the two presets (shortened to 200 images and one epoch),
    then predict on its folder averages the two nets."""
    args = ["-m", "experiment=leaderboard_best,leaderboard_best_vgg", "data.subset=200", "trainer.max_epochs=1"]
    run_cli(args, tmp_path, timeout=600)
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    jobs = {p.name for p in sweep.iterdir() if (p / "checkpoints" / "best.ckpt").is_file()}
    assert jobs == {"experiment=leaderboard_best", "experiment=leaderboard_best_vgg"}
    out = tmp_path / "ensemble.csv"
    pred = run_cli([f'ckpt="{sweep}"', f"output={out}"], tmp_path, script="predict.py")
    assert f"Submission (484 rows, 2 model(s)): {out}" in pred.stdout


def test_leaderboard_recipe_on_a_custom_challenge(custom_runs, tmp_path):
    """The recipe is not tied to the demo: colour JPEGs of mixed sizes, other column names."""
    ch, _, _ = custom_runs
    args = [a for a in CUSTOM_ARGS if not a.startswith(("model.", "data.val_fraction"))]
    proc = run_cli(["experiment=leaderboard", f"data.root={ch.root}", *args], tmp_path)
    hint = re.search(r"submission: (python predict.py .+)", proc.stdout).group(1)
    pred = run_cli([*shlex.split(hint)[2:], f"output={tmp_path / 'sub.csv'}"], tmp_path, script="predict.py")
    assert "Test accuracy:" in pred.stdout
    assert [r["filename"] for r in read_rows(tmp_path / "sub.csv")] == ch.test_ids
