"""Multi-process training through Lightning's DDP: which process writes the run's record, and how
the extra processes are started when the run is one job of a Hydra sweep."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write
from pytorch_lightning.utilities import rank_zero_only


def is_main_process() -> bool:
    """Rank 0 (also without DDP). Only it writes result.json, the summary and the printed hints;
    Lightning already keeps logging and checkpoints to rank 0."""
    return rank_zero_only.rank == 0


# What Lightning's launcher sets in the launching process's own environment.
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")


def default_devices() -> int:
    """trainer=ddp's process count: every visible GPU, else 2 CPU processes (gloo)."""
    import torch

    return torch.cuda.device_count() or 2


@contextlib.contextmanager
def child_processes_run(run_dir: Path):
    """Lightning's DDP launcher starts ranks 1..N-1 by running this script again with sys.argv plus
    hydra.run.dir=<this run's folder>. Two fixes make that right for us: in a sweep, sys.argv would
    start the whole sweep again in every child, so the children get this job's own overrides and
    folder; and a child writes no log file of its own (rank 0's train.log is the run's log)."""
    if not HydraConfig.initialized() or not is_main_process():
        yield
        return
    env = {name: os.environ.get(name) for name in _LAUNCHER_ENV}
    try:
        with _sweep_job_command(run_dir):
            yield
    finally:
        # Lightning leaves the finished run's process group and rank variables behind: the sweep's next
        # DDP job would take itself for a child (LOCAL_RANK is set) and wait for processes that ended.
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _sweep_job_command(run_dir: Path):
    hydra_cfg, argv = HydraConfig.get(), list(sys.argv)
    run_dir_before = hydra_cfg.run.dir
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = str(run_dir)
    sys.argv.append("hydra/job_logging=disabled")
    try:
        yield
    finally:  # the sweep's next job names its folder from the real command line
        sys.argv = argv
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = run_dir_before
