"""How many torch threads a job gets, so that parallel jobs split the machine instead of fighting
over it: jobs x threads per job <= cores. The jobs themselves are run by Hydra's launchers
(hydra/launcher=joblib, submitit_local, submitit_slurm); this module only sizes them."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
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
        n = _positive(threads)
        if n > cores():  # more would only make them wait for each other
            log.warning("threads=%d is more than the %d cores this job may use: %d torch threads.", n, cores(), cores())
            n = cores()
        return n
    if launcher is not None and launcher.get("cpus_per_task"):
        return int(launcher.get("cpus_per_task"))
    jobs = _concurrent_jobs(launcher)
    return None if jobs is None else max(1, cores() // jobs)


def apply_threads(threads=None, launcher=None) -> int:
    """Set torch's intra-op threads for this job; call before building data or models (both start
    thread pools). Returns the thread count in force."""
    import torch  # here, not at the top: the resolvers import this module for `--help` and before the cheap checks

    end_with_parent(launcher)
    n = threads_per_job(threads, launcher)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
        log.info("torch threads for this job: %d (of %d cores)", n, cores())
    return torch.get_num_threads()


# ----------------------------------------------------------------------------- workers of a killed sweep

PARENT_POLL_S = 0.5
SIBLING_SCAN_S = 5.0  # how often a watching worker notes its sibling workers (loky may start new ones)
_watched_parent: int | None = None


def in_joblib_worker(launcher) -> bool:
    """This job runs in a worker process of hydra/launcher=joblib (loky), not in the sweep's own process
    (joblib runs the jobs there itself when n_jobs is 1)."""
    target = str(launcher.get("_target_") or "") if launcher is not None else ""
    return "joblib" in target.lower() and multiprocessing.parent_process() is not None


def _stat(pid) -> tuple[int, str] | None:
    """(parent pid, start time) of a process from /proc; None when it is gone (or there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[1]), fields[19]) if fields[0] != "Z" else None


def loky_siblings(parent: int) -> dict[int, str]:
    """{pid: start time} of the other loky workers of `parent` (Linux; {} elsewhere)."""
    found = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]
    except OSError:
        return found
    for entry in entries:
        stat = _stat(entry)
        if stat is None or stat[0] != parent:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if b"loky" in fh.read():  # python -m joblib.externals.loky.backend.popen_loky_posix ...
                    found[int(entry)] = stat[1]
        except OSError:
            pass
    return found


def end_with_parent(launcher) -> bool:
    """In a joblib (loky) worker: end this process when the sweep's main process dies. A kill -9 of the
    sweep left its workers (~1 GB each) idle forever; with them gone, loky's resource trackers, which
    wait for every holder of their pipes, end too. One watching thread per worker process, polling
    os.getppid(): a dead parent's children are handed to another process (init or a subreaper). The
    workers that never got a job (n_jobs above the jobs) run nothing of ours: the watcher ends them too,
    from the list of its siblings it keeps. Returns whether this process is watched."""
    global _watched_parent
    if _watched_parent is not None:
        return True
    if not in_joblib_worker(launcher):
        return False
    _watched_parent = multiprocessing.parent_process().pid

    def watch(parent: int) -> None:
        siblings, scanned = {}, 0.0
        while os.getppid() == parent:
            if time.monotonic() - scanned > SIBLING_SCAN_S:
                siblings, scanned = loky_siblings(parent), time.monotonic()
            time.sleep(PARENT_POLL_S)
        for pid, start in siblings.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == start:  # the same process, not a reused pid
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        os._exit(1)  # no last word: stdout may be a pipe no one reads any more, where a write would block

    threading.Thread(target=watch, args=(_watched_parent,), name="visionlab-parent-watch", daemon=True).start()
    return True
