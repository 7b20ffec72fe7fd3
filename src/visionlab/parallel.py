"""How many torch threads a job gets, so that parallel jobs split the machine instead of fighting
over it: jobs x threads per job <= cores. The jobs themselves are run by Hydra's launchers
(hydra/launcher=joblib, submitit_local, submitit_slurm); this module only sizes them."""

from __future__ import annotations

import logging
import os
import warnings

from visionlab.errors import ConfigError

log = logging.getLogger(__name__)

# conf/hydra/launcher/joblib.yaml (and submitit_slurm.yaml) keep the names users type, which are also
# the plugins' schema names: Hydra validates them against those schemas (what we want) and warns that
# such name matching is deprecated. The warning says nothing to a user; this module is imported
# wherever the configs are composed (the resolvers it provides travel to every job process).
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")


def cores() -> int:
    """CPUs this process may run on: the affinity mask respects taskset, cgroups and SLURM's allocation,
    where os.cpu_count() reports the whole node."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def parallel_jobs(threads=None) -> int:
    """hydra.launcher.n_jobs of the joblib launcher: as many jobs as `threads` per job leave room for."""
    try:
        return cores() if _unset(threads) else max(1, cores() // _positive(threads))
    except ConfigError:  # each job then stops on it with one clear line, instead of a config traceback
        return cores()


def _unset(threads) -> bool:
    return threads in (None, "", "null", "None", "auto")


def _positive(threads) -> int:
    try:
        n = int(threads)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(
            f"threads={threads!r} must be a positive number of torch threads per job (or null: "
            "chosen from the cores and the number of parallel jobs)."
        )
    return n


def _concurrent_jobs(launcher) -> int | None:
    """Jobs the launcher runs at once on this machine, where it says (joblib's n_jobs, which counts
    like joblib: -1 = all cores, -2 = all but one)."""
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:
        return None
    n_jobs = int(n_jobs)
    return max(1, cores() + 1 + n_jobs if n_jobs < 0 else n_jobs)


def threads_per_job(threads=None, launcher=None) -> int | None:
    """`threads` when given; else the CPUs a cluster job was allotted (cpus_per_task); else the cores
    shared among the launcher's parallel jobs; None (torch's own default) for one job at a time."""
    if not _unset(threads):
        return _positive(threads)
    if launcher is not None and launcher.get("cpus_per_task"):
        return int(launcher.get("cpus_per_task"))
    jobs = _concurrent_jobs(launcher)
    return None if jobs is None else max(1, cores() // jobs)


def apply_threads(threads=None, launcher=None) -> int:
    """Set torch's intra-op threads for this job; call before building data or models (both start
    thread pools). Returns the thread count in force."""
    import torch  # here, not at the top: the resolvers import this module for `--help` and before the cheap checks

    n = threads_per_job(threads, launcher)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
        log.info("torch threads for this job: %d (of %d cores)", n, cores())
    return torch.get_num_threads()
