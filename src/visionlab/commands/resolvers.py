"""The `vl.*` resolvers the configs use; registered by each entry script before Hydra reads a config."""

from __future__ import annotations

import secrets
from pathlib import Path

from omegaconf import OmegaConf

from visionlab.config.groups import PROJECT_DIR, option_groups
from visionlab.runs.folder import check_run_dir
from visionlab.runs.naming import run_name, run_suffix
from visionlab.runs.sweep import hydra_subdir


def register_resolvers() -> None:
    """Resolvers the configs use: vl.uid (one random token per sweep or run, so two started in the
    same second never share a folder), vl.run_name, vl.project (this checkout's folder), vl.option_groups
    (train.py --help's groups)."""
    if OmegaConf.has_resolver("vl.uid"):
        return
    OmegaConf.register_new_resolver("vl.uid", lambda: secrets.token_hex(3), use_cache=True)
    OmegaConf.register_new_resolver("vl.run_name", run_name)
    OmegaConf.register_new_resolver("vl.run_suffix", run_suffix)
    OmegaConf.register_new_resolver("vl.project", lambda: str(PROJECT_DIR))
    OmegaConf.register_new_resolver("vl.option_groups", option_groups)  # train.py --help
    OmegaConf.register_new_resolver("vl.mlflow_store", _mlflow_store)
    OmegaConf.register_new_resolver("vl.folder_name", lambda path: Path(str(path)).resolve().name)
    OmegaConf.register_new_resolver("vl.ddp_devices", _ddp_devices)
    OmegaConf.register_new_resolver(
        "vl.resume_or", lambda resume, default: str(check_run_dir(resume)) if resume else default
    )
    OmegaConf.register_new_resolver("vl.hydra_subdir", hydra_subdir, use_cache=True)
    from visionlab.runs.parallel import parallel_jobs  # sizes hydra/launcher=joblib from the cores

    OmegaConf.register_new_resolver("vl.parallel_jobs", parallel_jobs)
    from visionlab.runs import search  # experiment=search (optuna itself is imported only when a search runs)

    OmegaConf.register_new_resolver("vl.trials_left", search.trials_left)
    OmegaConf.register_new_resolver("vl.trial_name", search.trial_name)


def _mlflow_store(output_dir) -> str:
    from visionlab.training.loggers import mlflow_store  # imports mlflow: only where logger=mlflow asks

    return mlflow_store(output_dir)


def _ddp_devices() -> int:
    from visionlab.runs.distributed import default_devices  # imports torch: only when trainer=ddp asks

    return default_devices()
