"""Hyper-parameter search (experiment=search): the Optuna study that hydra-optuna-sweeper keeps in
the sweep folder (optuna.db), so that a killed search continues where it stopped. Optuna and the
sweeper do the searching; this module only reads the stored study and tidies it when resumed.
Needs the search extra: pip install -e ".[search]"."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
# Trials already in the study when this search started: the sweeper numbers its jobs from 0 in every
# session, Optuna numbers trials across sessions. Set before any job starts; job processes inherit it.
TRIAL_OFFSET_ENV = "VISIONLAB_TRIAL_OFFSET"
INTERRUPTED = "interrupted"  # user attr of a trial that was running when its search was killed


def trial_name(task_overrides, sweeper_params=None, job_num=0) -> str:
    """A trial's folder (hydra.sweep.subdir of experiment=search): `trial=<Optuna's trial number>,`
    then its values of the searched keys as run_name writes them, floats to 3 significant digits
    (Optuna draws 0.00029943411457129874). The number keeps folders apart when a study draws the
    same values twice, and when a resumed search numbers its jobs from 0 again."""
    from visionlab.sweep import run_name

    number = int(os.environ.get(TRIAL_OFFSET_ENV, 0)) + int(job_num)
    return f"trial={number}," + run_name([_rounded(str(o)) for o in (task_overrides or [])], sweeper_params)


def _rounded(override: str) -> str:
    key, eq, value = override.partition("=")
    if not eq or not any(c in value for c in ".eE") or value.lower() in ("inf", "-inf", "nan"):
        return override
    try:
        return f"{key}={float(value):.3g}"
    except ValueError:
        return override


def storage_url(sweep_dir) -> str:
    return f"sqlite:///{Path(sweep_dir) / STUDY_FILE}"


def _sqlite_file(storage: str) -> Path | None:
    return Path(storage[len("sqlite:///") :]) if str(storage).startswith("sqlite:///") else None


def open_study(storage: str, study_name: str | None = None):
    """The stored study, or None when there is none yet (never creates a database file)."""
    import optuna

    path = _sqlite_file(storage)
    if path is not None and not path.is_file():
        return None
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if len(names) != 1:
            return None
        study_name = names[0]
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no study of that name in the file
        return None


def finished(trial) -> bool:
    """Trials that count towards the study's total: complete, pruned, or failed on their own (not the
    ones a kill interrupted: those are run again)."""
    import optuna

    states = optuna.trial.TrialState
    return trial.state in (states.COMPLETE, states.PRUNED) or (
        trial.state == states.FAIL and not trial.user_attrs.get(INTERRUPTED)
    )


def trials_left(storage, study_name, total) -> int:
    """hydra.sweeper.n_trials of experiment=search: the study's total less the trials already run."""
    study = open_study(str(storage), None if study_name in (None, "") else str(study_name))
    done = 0 if study is None else sum(finished(t) for t in study.trials)
    if done:
        log.info("Study %s: %d of %d trials done, %d to go.", study.study_name, done, total, max(0, int(total) - done))
    return max(0, int(total) - done)


class SearchStudy(Callback):
    """Hydra callback of experiment=search, before the sweeper opens the study: makes the sweep folder
    that holds the study's file (the launcher would make it only later); notes how many trials the
    study holds (TRIAL_OFFSET_ENV). When the search continues
    an existing study, trials still 'running' there were cut short by a kill (one search process per
    study, as the README says): they are marked failed + interrupted, so the study and its report
    account for them, and the search runs as many new trials instead."""

    def on_multirun_start(self, config, **kwargs) -> None:
        import optuna

        sweeper = config.hydra.sweeper
        path = _sqlite_file(str(sweeper.storage))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        study = open_study(str(sweeper.storage), sweeper.get("study_name"))
        os.environ[TRIAL_OFFSET_ENV] = str(0 if study is None else len(study.trials))
        if study is None:
            return
        stale = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
        for trial in stale:
            study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            study._storage.set_trial_state(trial._trial_id, optuna.trial.TrialState.FAIL)
        if stale:
            log.warning(
                "Resuming study %s: trial(s) %s were interrupted and are run again.",
                study.study_name,
                ", ".join(str(t.number) for t in stale),
            )
