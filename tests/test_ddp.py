"""trainer=ddp: two training processes on the CPU (gloo) keep one record of the run, and a DDP
validation of a fixed checkpoint reports the loss and error of a single process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import forkserver
import pytest
from helpers import cli_env, run_cli

pytestmark = pytest.mark.slow

# Validates a checkpoint on 917 validation images (odd: the ranks get 459 and 458) with N processes.
VALIDATE = textwrap.dedent("""
    import json, sys
    import pytorch_lightning as pl
    from omegaconf import OmegaConf
    from torch.utils.data import Subset
    from visionlab.commands.predict import load_checkpoint, restore_model
    from visionlab.training.build import build_datamodule

    ckpt_path, devices, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ckpt = load_checkpoint(ckpt_path)
    model = restore_model(ckpt)
    cfg = OmegaConf.create(ckpt["visionlab"]["config"])
    dm = build_datamodule(cfg, classes=ckpt["visionlab"]["classes"], train=False)
    dm.setup("fit")
    dm.val_set = Subset(dm.val_set, range(917))
    dm.batch_size = 100
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                         logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(model, datamodule=dm, verbose=False)[0]
    if trainer.is_global_zero:
        json.dump({k: float(v) for k, v in metrics.items()}, open(out, "w"))
""")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("ddp")
    proc = run_cli(["trainer=ddp", "data.subset=300", "trainer.max_epochs=2"], cwd=cwd)
    (run,) = (cwd / "outputs" / "train" / "runs").iterdir()
    return run, proc


def test_ddp_trains_two_processes_with_one_record(ddp_run):
    run, proc = ddp_run
    output = proc.stdout + proc.stderr
    assert "MEMBER: 2/2" in output and "Starting with 2 processes" in output
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed"
    assert [h["epoch"] for h in result["history"]] == [0, 1]
    assert all({"train/loss", "train/err", "val/loss", "val/err"} <= set(h) for h in result["history"])
    assert result["test_err"] is not None
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [p.name for p in run.glob("*.log")] == ["train.log"]  # rank 1 writes no log of its own
    assert (run / ".hydra" / "config.yaml").is_file()
    assert output.count("Checkpoint: ") == 1  # the hints are printed once, by rank 0


def test_ddp_validation_matches_single_process(ddp_run, tmp_path):
    run, _ = ddp_run
    script = tmp_path / "validate.py"
    script.write_text(VALIDATE)
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"metrics_{devices}.json"
        forkserver.run(
            [sys.executable, str(script), str(run / "checkpoints" / "best.ckpt"), str(devices), str(out)],
            cwd=tmp_path,
            env=cli_env(),
            check=True,
            timeout=300,
            capture_output=True,
        )
        results[devices] = json.loads(out.read_text())
    single, ddp = results[1], results[2]
    assert ddp["val/loss"] == pytest.approx(single["val/loss"], rel=1e-5)
    assert ddp["val/err"] == pytest.approx(single["val/err"], abs=1e-6)
    # and the error is that of all 917 images, a multiple of 1/917 (not of a padded 918)
    assert round(single["val/err"] * 917, 3) == pytest.approx(round(single["val/err"] * 917), abs=1e-3)


def test_ddp_sweep_runs_each_job_once(tmp_path):
    """Two DDP jobs in one sweep: each trains once in its own folder (the children re-run the job, not the sweep)."""
    run_cli(["-m", "trainer=ddp", "model.bn=true,false", "data.subset=200", "trainer.max_epochs=1"], cwd=tmp_path)
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["model.bn=false", "model.bn=true"]
    for job in jobs:
        assert json.loads((sweep / job / "result.json").read_text())["status"] == "completed"
    assert len(list((tmp_path / "outputs").rglob("result.json"))) == 2
