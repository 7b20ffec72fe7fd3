"""Hyper-parameter search (experiment=search): the Optuna study that hydra-optuna-sweeper keeps in
the sweep folder (optuna.db), so that a killed search continues where it stopped. Optuna and the
sweeper do the searching; this module only reads the stored study and tidies it when resumed.
Needs the search extra: pip install -e ".[search]"."""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path

from visionlab.errors import InputError, describe_head

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
    from visionlab.runs.naming import run_name

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


class StudyFileError(InputError):
    """optuna.db is there but holds no readable study: empty, not SQLite, or damaged."""


SQLITE_HEADER = b"SQLite format 3\x00"


def study_file_problem(path) -> str | None:
    """What is wrong with the study file `path` (None: nothing, or no file). Looked at before Optuna
    opens it: Optuna takes an empty or table-less file for a new database and starts a new study in it,
    beside the old trials' folders (numbering its trials from 0 again); a damaged one ends in a long
    SQLAlchemy traceback."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if size == 0:
        return "is empty (0 bytes)"
    if head != SQLITE_HEADER:
        return f"is not an SQLite database (it starts with {describe_head(head)})"
    try:
        with closing(sqlite3.connect(path, timeout=10)) as db:  # read-write: a killed writer's journal is undone
            check = db.execute("PRAGMA quick_check").fetchone()
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        if "locked" in str(e) or "busy" in str(e):  # another process writes it: not damaged
            return None
        return f"is a corrupt SQLite database ({e})"
    if not check or check[0] != "ok":
        return f"is a corrupt SQLite database (its integrity check says: {check[0] if check else 'nothing'})"
    if "studies" not in tables:
        return "is an SQLite database without Optuna's tables (no study in it)"
    return None


def check_study_file(path) -> None:
    """StudyFileError, in one line naming the file, what is wrong and the fix, when `path` holds no
    readable study."""
    path = Path(path)
    problem = study_file_problem(path)
    if problem:
        raise StudyFileError(
            f"{path} {problem}: no study can be read from it, so the search cannot continue. Restore {path.name} "
            f"from a copy to continue it, or remove {path} to start a new study (the old trials' folders in "
            f"{path.parent} then stay, but are not in the study)."
        )


def open_study(storage: str, study_name: str | None = None):
    """The stored study, or None when there is none yet (never creates a database file).
    StudyFileError when the file holds no readable study (study_file_problem)."""
    import optuna

    path = _sqlite_file(storage)
    if path is not None and not path.is_file():
        return None
    if path is not None:
        check_study_file(path)
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
    try:
        study = open_study(str(storage), None if study_name in (None, "") else str(study_name))
    except StudyFileError as e:  # a resolver: OmegaConf would wrap any Exception in a long traceback
        raise SystemExit(f"error: {e}") from None
    done = 0 if study is None else sum(finished(t) for t in study.trials)
    if done:
        log.info("Study %s: %d of %d trials done, %d to go.", study.study_name, done, total, max(0, int(total) - done))
    return max(0, int(total) - done)


# ----------------------------------------------------------------------------- summary.csv of a search

_TRIAL_NUMBER = re.compile(r"trial=(\d+)(?:,|$)")
NOT_IN_STUDY = "not in study"


def _trial_number(run) -> int | None:
    match = _TRIAL_NUMBER.match(str(run)) if isinstance(run, str) else None
    return int(match.group(1)) if match else None


def _lock_held(folder: Path) -> bool:
    """Whether a process holds the folder's run lock (visionlab.runs.folder: an flock on <folder>/.lock,
    which the kernel drops when its holder dies). Unlike the pid written in the file (which a new
    process may have by now) the flock itself says whether anyone runs there. Tried with a shared,
    non-blocking flock, dropped at once: only asked of folders whose record or trial says running."""
    try:
        fd = os.open(Path(folder) / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no flock on this file system: the pid in the file is all there is
        from visionlab.runs.folder import folder_in_use

        return folder_in_use(folder)
    finally:
        os.close(fd)  # drops the shared lock, if taken
    return False


def _same_trial(record: dict, trial) -> bool:
    """Whether the run's overrides carry the trial's parameters (a folder of an earlier study in the same
    folder, whose optuna.db was removed, has the same number but other values)."""
    given = dict(o.split("=", 1) for o in str(record.get("overrides") or "").split() if "=" in o)
    return all(given.get(key, str(value)) == str(value) for key, value in trial.params.items() if " " not in str(value))


def _study_state(trial, sweep_dir: Path, folder: Path | None = None) -> str:
    """The study's state of a trial, as search_trials.csv writes it; a trial still `running` in the
    study while no process holds its folder nor the sweep folder (the search process holds that one)
    was killed with its search: `interrupted` (what the resume will mark it)."""
    if trial.user_attrs.get(INTERRUPTED):
        return INTERRUPTED
    state = trial.state.name.lower()
    if state == "running" and not ((folder is not None and _lock_held(folder)) or _lock_held(sweep_dir)):
        return INTERRUPTED
    return state


def summary_in_trial_order(df, sweep_dir):
    """summary.csv of a search folder (sweep.collect_results, when the folder holds optuna.db): one row per
    trial in the study's order (the trial number, not the job number, which starts from 0 in every
    session), with `trial` and `study_state` (the study's state of the trial: complete, fail, pruned,
    interrupted, running); a trial without a folder gets a row too, a folder that is not in the study
    (its number or values are not the study's) says `not in study`. A record still `running` whose folder
    no process holds is `interrupted`."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    try:
        study = open_study(storage_url(sweep_dir))
    except Exception as e:  # StudyFileError, a study being written: the rows as they are, in trial order
        log.warning("summary.csv without the study's states: %s", e)
        study = None
    trials = {t.number: t for t in study.trials} if study is not None else {}
    rows, seen = [], set()
    for record in df.to_dict("records"):
        number = _trial_number(record.get("run"))
        folder = sweep_dir / str(record.get("run"))
        trial = trials.get(number)
        if trial is not None and number not in seen and _same_trial(record, trial):
            seen.add(number)
            state = _study_state(trial, sweep_dir, folder)
        else:
            state = NOT_IN_STUDY if study is not None else None
        if record.get("status") == "running" and state != "running":  # "running": its folder is held
            if state not in (None, NOT_IN_STUDY) or not _lock_held(folder):  # the study has it done or killed
                record["status"] = INTERRUPTED  # killed with its search: nothing runs it
        rows.append({**record, "trial": number, "study_state": state})
    for number, trial in trials.items():
        if number not in seen:
            rows.append(
                {
                    "run": f"trial={number}",
                    "trial": number,
                    "study_state": _study_state(trial, sweep_dir),
                    "error": "no folder of this trial (with a result.json) in the sweep folder",
                }
            )
    rows.sort(
        key=lambda r: (
            math.inf if r["trial"] is None else r["trial"],
            r["study_state"] == NOT_IN_STUDY,
            str(r.get("run")),
        )
    )
    out = pd.DataFrame(rows, columns=list(df.columns) + ["trial", "study_state"])
    out["trial"] = out["trial"].astype("Int64")
    first = [c for c in ("run", "status") if c in out.columns]
    return out[first + ["trial", "study_state"] + [c for c in out.columns if c not in first + ["trial", "study_state"]]]
