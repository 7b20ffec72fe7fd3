"""Fixtures and hooks only; what tests import by name lives in helpers.py."""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from helpers import Challenge, build_challenge, train_small_challenge

# Small nets on a few shared cores run far faster single-threaded (thread contention dominates).
torch.set_num_threads(1)


# ----------------------------------------------------------------------------- the order modules start in
# xdist (--dist loadscope --no-loadscope-reorder, pyproject) hands each worker whole modules in the order
# below. A test that holds its worker for minutes (the notebooks' smoke sweeps, the e2e module) must start
# early, or one worker idles while the other finishes it; the modules that run for seconds come last to
# fill the gaps. The exclusive (timed) test goes first, beside a module of quick tests, so the other worker
# waits for a few seconds, not for a sweep's set-up. Measured order (`--durations=0` on 2 workers, summed
# per module, 2026-12-04); modules not named keep pytest's order after these.
FIRST = (
    "test_budget.py",  # its exclusive test first (below)
    "test_transforms.py",  # quick: the other worker soon waits only on the exclusive test
    "test_notebooks.py",
    "test_parallel.py",
    "test_benchmarks.py",
    "test_finetune.py",
    "test_e2e.py",
    "test_ddp.py",
    "test_faults.py",
    "test_trust_config.py",
    "test_ux.py",
    "test_forkserver.py",
    "test_robustness.py",
    "test_bad_input.py",
    "test_interpret.py",
    "test_trust_runs.py",
    "test_report.py",
    "test_presets.py",
    "test_export.py",
    "test_search.py",
    "test_search_trust.py",
)


def pytest_collection_modifyitems(config, items):
    def key(item):
        name = item.path.name
        module = FIRST.index(name) if name in FIRST else len(FIRST)
        return module, item.get_closest_marker("exclusive") is None

    items.sort(key=key)  # stable: a module's tests keep their order, exclusive ones first


# ----------------------------------------------------------------------------- tests that time themselves
# The suite runs on two xdist workers (pyproject's addopts). A test marked `exclusive` (its assertion is
# a wall time) runs with the other worker idle: every test holds a shared lock on one file while it
# runs, an exclusive test the exclusive lock. The gate lock keeps the other worker from starting a new
# test while an exclusive one waits for the current one to end.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around a test's whole run, its fixtures' set-up included (a module's shared sweep is made there)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of one pytest run
    if not run:  # one process: nothing runs beside a test
        yield
        return
    import tempfile

    locks = Path(tempfile.gettempdir()) / f"visionlab-tests-{run}"
    locks.mkdir(exist_ok=True)
    exclusive = item.get_closest_marker("exclusive") is not None
    with open(locks / "gate", "a") as gate, open(locks / "tests", "a") as tests:
        fcntl.flock(gate, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        fcntl.flock(tests, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield


@pytest.fixture
def make_challenge(tmp_path):
    """make_challenge(name="challenge", **kwargs) -> Challenge written under tmp_path/name."""

    def make(name: str = "challenge", **kwargs) -> Challenge:
        return build_challenge(tmp_path / name, **kwargs)

    return make


# ----------------------------------------------------------------------------- made once per pytest run
def made_once(tmp_path_factory, name: str, build):
    """build(folder) once per pytest run, its return value shared by every test module on every xdist
    worker (each worker is a session of its own: pytest-xdist's "making session-scoped fixtures execute
    only once"). The folder is under the run's common temporary folder, guarded by a file lock; the
    tests only read it (one that changes a run copies it first)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process: its own temporary folder is the run's
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this run only
    done = root / f"{name}.pickle"
    with open(root / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            folder = root / name
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed here left
            value = build(folder)
            done.write_bytes(pickle.dumps(value))
        return pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Challenge, Path]:
    """helpers.train_small_challenge, trained once per run: (a 3-class challenge of 4 images a class,
    the best.ckpt of its one-epoch run). Read-only."""
    return made_once(tmp_path_factory, "small_trained", train_small_challenge)
