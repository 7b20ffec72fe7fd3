"""Beyond one process: jobs x threads sized from the cores, parallel local sweeps (joblib), sweeps as
real job processes through submitit (local), the SLURM launcher's job script, GPU-ready loaders."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import forkserver
import pandas as pd
import pytest
import torch
from helpers import REPO, compose_cfg, describe, user_env
from omegaconf import OmegaConf

from visionlab.errors import ConfigError
from visionlab.runs import parallel

TINY = ["data.subset=32", "trainer.max_epochs=1", "data.solution=null", "data.val_fraction=0.02"]


# ----------------------------------------------------------------------------- sizing (no training)


def test_threads_per_job_splits_the_cores_among_parallel_jobs(monkeypatch):
    monkeypatch.setattr(parallel, "cores", lambda: 8)
    assert parallel.threads_per_job(None, None) is None  # one job at a time: torch's own default
    assert parallel.threads_per_job(None, OmegaConf.create({"n_jobs": 4})) == 2
    assert parallel.threads_per_job(None, OmegaConf.create({"n_jobs": -1})) == 1  # joblib: all cores
    assert parallel.threads_per_job(None, OmegaConf.create({"n_jobs": -3})) == 1  # 6 jobs on 8 cores
    assert parallel.threads_per_job(None, OmegaConf.create({"n_jobs": 16})) == 1
    assert parallel.threads_per_job(3, OmegaConf.create({"n_jobs": 2})) == 3  # given: taken as is
    assert parallel.threads_per_job(None, OmegaConf.create({"cpus_per_task": 6, "n_jobs": None})) == 6  # SLURM
    assert parallel.parallel_jobs(None) == 8 and parallel.parallel_jobs(2) == 4 and parallel.parallel_jobs(16) == 1


def test_bad_thread_count_names_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"threads=0 must be a positive number"):
        parallel.threads_per_job(0)
    with pytest.raises(ConfigError, match=r"threads='many'"):
        parallel.threads_per_job("many")
    assert parallel.parallel_jobs("many") >= 1  # the launcher still starts; each job then stops on it


def test_apply_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert parallel.apply_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_joblib_launcher_config_sizes_jobs_from_threads():
    cores = parallel.cores()
    for overrides, n_jobs in (
        (["hydra/launcher=joblib"], cores),
        (["hydra/launcher=joblib", "threads=2"], max(1, cores // 2)),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"], 3),
    ):
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
        assert cfg.hydra.launcher.n_jobs == n_jobs, overrides


def test_precision_presets_compose():
    assert compose_cfg("train", ["trainer=gpu"]).trainer.precision == "16-mixed"
    assert compose_cfg("train", ["trainer=gpu_bf16"]).trainer.precision == "bf16-mixed"
    assert compose_cfg("train", ["trainer=gpu_bf16"]).trainer.accelerator == "gpu"


def test_loaders_pin_memory_only_for_a_cuda_trainer(make_challenge):
    from types import SimpleNamespace

    from visionlab.data import ChallengeDataModule

    ch = make_challenge(n_per_class=4)
    dm = ChallengeDataModule(
        root=str(ch.root), id_col=ch.id_col, label_col=ch.label_col, image_size=16, val_fraction=0.25
    )
    dm.setup("fit")
    assert not dm.train_dataloader().pin_memory  # no trainer attached: CPU
    for device, pinned in (("cpu", False), ("cuda", True)):
        dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
        assert dm.train_dataloader().pin_memory is pinned
        assert dm.val_dataloader().pin_memory is pinned


# ----------------------------------------------------------------------------- sweeps in job processes


def sweep_dir(cwd: Path) -> Path:
    [d] = list((cwd / "outputs" / "train" / "multiruns").iterdir())
    return d


def run_sweep(args: list[str], cwd: Path, timeout: float = 400) -> tuple[subprocess.CompletedProcess, int]:
    """The sweep as a user runs it; returns the finished process and its pid."""
    proc = forkserver.popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
    )
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def job_pids(run_dir: Path) -> set[int]:
    """Processes that wrote the run's TensorBoard events (the pid is part of the file name)."""
    return {int(p.name.split(".")[-2]) for p in run_dir.glob("events.out.tfevents.*")}


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_processes_and_keeps_failures_apart(tmp_path):
    """3 jobs on the joblib launcher: one fails (invalid activation), one diverges (test_faults' recipe),
    one completes; each keeps its folder, result.json, log and TensorBoard run; one summary at the end."""
    proc, pid = run_sweep(
        [
            "-m",
            "hydra/launcher=joblib",
            "model.activation=not_an_activation,leaky_relu,relu",
            "model.init=ones",
            "model.bn=false",
            "optimizer=sgd",
            "optimizer.lr=10",
            "data.batch_size=8",
            *TINY,
        ],
        tmp_path,
    )
    assert proc.returncode != 0, describe(proc)  # a job failed: the sweep went on, but says so in its exit code
    assert "error: 1 of 3 jobs failed: model.activation=not_an_activation" in proc.stderr, describe(proc)
    assert "Joblib.Parallel(n_jobs=" in proc.stdout + proc.stderr
    assert "[model.activation=relu] epoch 1/1" in proc.stdout  # parallel jobs' lines say whose they are
    assert "`Trainer.fit` stopped" not in proc.stdout + proc.stderr  # the epoch lines say it
    d = sweep_dir(tmp_path)
    summary = pd.read_csv(d / "summary.csv").set_index("run")
    assert list(summary.index) == [
        "model.activation=not_an_activation",
        "model.activation=leaky_relu",
        "model.activation=relu",
    ]
    assert list(summary["status"]) == ["failed", "diverged", "completed"]
    assert proc.stdout.count("Sweep summary (3 runs)") == 1
    for run in ("model.activation=leaky_relu", "model.activation=relu"):
        result = json.loads((d / run / "result.json").read_text())
        assert result["threads"] == 1  # n_jobs defaults to the core count: one core (torch thread) per job
        assert (d / run / "train.log").stat().st_size > 0
        pids = job_pids(d / run)
        assert pids and pid not in pids, (pid, pids)  # trained in a worker process, not the sweep's own


@pytest.mark.slow
def test_submitit_local_sweep_runs_real_job_processes_and_collects_results(tmp_path):
    proc, pid = run_sweep(["-m", "hydra/launcher=submitit_local", "model.bn=true,false", "threads=1", *TINY], tmp_path)
    assert proc.returncode == 0, describe(proc)
    d = sweep_dir(tmp_path)
    summary = pd.read_csv(d / "summary.csv")
    assert sorted(summary["run"]) == ["model.bn=false", "model.bn=true"]  # named by the swept key, as locally
    assert set(summary["status"]) == {"completed"}
    assert "Sweep summary (2 runs)" in proc.stdout
    job_logs = sorted((d / ".submitit").glob("*/*_log.out"))
    assert len(job_logs) == 2, job_logs  # submitit's own job folders: one per job process
    for run in summary["run"]:
        result = json.loads((d / run / "result.json").read_text())
        assert result["threads"] == 1 and result["best_val_err"] is not None
        pids = job_pids(d / run)
        assert pids and pid not in pids


def test_slurm_launcher_writes_the_job_array_script(tmp_path):
    """hydra/launcher=submitit_slurm through the real plugin and submitit, with stand-ins for srun and
    sbatch that keep the job script and refuse it: the script carries partition, GPUs, time limit,
    tasks per node and the array's parallelism."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\nfor a; do last="$a"; done\ncp "$last" {tmp_path}/job.sh\n'
        'echo "sbatch: no cluster here" >&2\nexit 1\n'
    )
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    env = user_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=90",
            "hydra.launcher.gpus_per_node=2",
            "hydra.launcher.tasks_per_node=2",
            "hydra.launcher.array_parallelism=3",
            "model.bn=true,false",
            "optimizer=sgd,adam",
            *TINY,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0  # the stand-in sbatch refuses the array
    script = (tmp_path / "job.sh").read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --array=0-3%3",
    ):
        assert line in script, script


@pytest.mark.slow
def test_sweep_benchmark_prints_both_wall_times_and_the_ratio(tmp_path):
    """The figures themselves are not asserted (timing on a shared machine belongs to benchmarks)."""
    from helpers import run_cli

    proc = run_cli(["--subset", "64", "--epochs", "1"], tmp_path, script="benchmarks/sweep_parallel.py", timeout=400)
    assert "design-card sweep: 4 jobs, data.subset=64, trainer.max_epochs=1" in proc.stdout
    assert re.search(
        r"sequential: +\d+\.\d s\nparallel: +\d+\.\d s\nratio parallel / sequential: \d+\.\d\d", proc.stdout
    ), proc.stdout


@pytest.mark.slow
def test_mlflow_logger_puts_a_parallel_sweeps_runs_in_one_store(tmp_path):
    """logger=mlflow beside TensorBoard: both jobs of a joblib sweep in <sweep>/mlflow.db, named by
    their folders, with their curves and hyper-parameters (two jobs creating the store at once)."""
    from mlflow.tracking import MlflowClient

    proc, _ = run_sweep(["-m", "hydra/launcher=joblib", "model.bn=true,false", "logger=mlflow", *TINY], tmp_path)
    assert proc.returncode == 0, describe(proc)
    d = sweep_dir(tmp_path)
    assert list(pd.read_csv(d / "summary.csv")["status"]) == ["completed", "completed"]
    client = MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("visionlab").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["model.bn=false", "model.bn=true"]
    for r in runs:
        assert (
            r.info.status == "FINISHED"
            and "val/err" in r.data.metrics
            and r.data.params["model.bn"] in ("True", "False")
        )
        assert list(d.glob(f"{r.info.run_name}/events.out.tfevents.*"))  # TensorBoard's events as always
