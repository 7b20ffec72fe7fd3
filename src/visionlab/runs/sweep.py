"""Sweeps and runs under Hydra: one sweep per sweep folder, where a run records its config, the
resume= check before Hydra makes folders, and the callback that summarises a sweep when it ends."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback

from visionlab.config.argv import command_line_overrides
from visionlab.runs.folder import check_run_dir
from visionlab.runs.naming import SWEPT_KEYS_ENV, _parse, swept_keys
from visionlab.runs.search import (
    INTERRUPTED,
    TRIAL_OFFSET_ENV,
    StudyFileError,
    _sqlite_file,
    open_study,
)
from visionlab.runs.summary import best_job, format_table, take_refusals, write_summary

log = logging.getLogger(__name__)


def hydra_subdir(resume, output_dir=None) -> str:
    """Where Hydra records a run's config: .hydra, or beside it when the folder already holds a run's
    record (a resume; a re-run sweep job or hydra.run.dir= an earlier run, which train.run then
    refuses or skips), so that the first run's .hydra/config.yaml is never overwritten."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    if resume:
        return f".hydra/resumed_{stamp}"
    if output_dir and (Path(str(output_dir)) / ".hydra" / "config.yaml").is_file():
        return f".hydra/rerun_{stamp}_{os.getpid()}"
    return ".hydra"


def check_resume_argument(argv: list[str] | None = None) -> None:
    for token in command_line_overrides(argv):
        if token.startswith("resume="):
            parsed = _parse([token])  # resume="<path>" (quoted) names the same folder as resume=<path>
            try:
                check_run_dir(parsed[0].value() if parsed else token.split("=", 1)[1])
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None


def plain_optuna_logs() -> None:
    """Optuna 2.x colours its log lines whatever the stream: escape codes ([32m[I ...) in log files
    and CI output. Plain text where stderr is not a terminal."""
    if sys.stderr.isatty():
        return
    import optuna  # noqa: F401  (its import sets up the handler whose format is replaced here)

    for handler in logging.getLogger("optuna").handlers:
        handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s] %(message)s"))


def lock_sweep(sweep_dir: Path):
    """One sweep per sweep folder: a second sweep into it (hydra.sweep.dir=, a search resumed twice)
    stops here, in one line, before anything of the first is overwritten."""
    from visionlab.runs.folder import RunFolderInUse, RunLock

    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        return RunLock(sweep_dir)
    except RunFolderInUse as e:
        raise SystemExit(
            f"error: sweep folder {sweep_dir} is in use by another sweep (process {e.holder}); nothing of it was "
            f"touched. Wait for it to end (or stop it: kill {e.holder}), or sweep into another folder."
        ) from None


class SweepSummary(Callback):
    """Hydra callback: says where a sweep logs, and summarises it when it ends."""

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self.lock = lock_sweep(sweep_dir)  # before the launcher writes multirun.yaml or any job's .hydra
        take_refusals(sweep_dir)  # an earlier sweep's, killed before its end: not this one's
        if "optuna" in str(config.hydra.sweeper.get("_target_", "")).lower():
            plain_optuna_logs()
        os.environ[SWEPT_KEYS_ENV] = json.dumps(sorted(swept_keys(argv=list(config.hydra.overrides.task))))
        print(f"Sweep directory: {sweep_dir}\n  compare runs: tensorboard --logdir {sweep_dir}", flush=True)

    def on_multirun_end(self, config, **kwargs) -> None:
        os.environ.pop(SWEPT_KEYS_ENV, None)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        df = write_summary(sweep_dir)
        if getattr(self, "lock", None) is not None:
            self.lock.release()
        print(f"\nSweep summary ({len(df)} runs) -> {sweep_dir / 'summary.csv'}\n{format_table(df)}", flush=True)
        print(f"Plots and a results table: python -m visionlab.report {sweep_dir}", flush=True)
        best = best_job(df)
        if best is not None:
            print(
                f"Best job by val err: {best['run']} ({float(best['best_val_err']):.4f}): "
                f"python predict.py 'ckpt=\"{best['checkpoint']}\"'",
                flush=True,
            )
        print(
            f"An ensemble of the jobs within 10% of the best val err: python predict.py 'ckpt=\"{sweep_dir}\"' tta=true "
            "(top_k=N: the N best)",
            flush=True,
        )
        print(
            f"An ensemble of every job's best.ckpt: python predict.py 'ckpt=\"{sweep_dir}\"' tta=true top_k=-1",
            flush=True,
        )
        refused = take_refusals(sweep_dir)
        failed = df[df["status"] == "failed"]
        if refused:  # their folders hold other runs, whose records the summary shows as they are
            raise SystemExit(
                f"error: {len(refused)} job(s) refused, their folders left as they were: "
                + "; ".join(f"{job}: {why}" for job, why in refused.items())
            )
        searching = "optuna" in str(config.hydra.sweeper.get("_target_", "")).lower()
        if len(failed) and searching:  # Optuna records a failed trial and samples elsewhere: part of a search
            print(f"{len(failed)} of {len(df)} trials failed: {', '.join(map(str, failed['run']))}", flush=True)
        elif len(failed):  # the sweep went on, but it did not do what was asked: a script must see it
            raise SystemExit(
                f"error: {len(failed)} of {len(df)} jobs failed: {', '.join(map(str, failed['run']))} (their errors: "
                f"the error column of {sweep_dir / 'summary.csv'}, and each job's train.log)."
            )


class SearchStudy(Callback):
    """Hydra callback of experiment=search, before the sweeper opens the study: makes the sweep folder
    that holds the study's file (the launcher would make it only later); notes how many trials the
    study holds (TRIAL_OFFSET_ENV). When the search continues
    an existing study, trials still 'running' there were cut short by a kill (one search process per
    study, as the README says): they are marked failed + interrupted, so the study and its report
    account for them, and the search runs as many new trials instead. A study file that cannot be read
    (empty, not SQLite, damaged) stops the search here, in one line, before the sweeper opens it.
    SystemExit, not an Exception: Hydra turns a callback's Exception into a warning and goes on."""

    def on_multirun_start(self, config, **kwargs) -> None:
        import optuna

        sweeper = config.hydra.sweeper
        path = _sqlite_file(str(sweeper.storage))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            study = open_study(str(sweeper.storage), sweeper.get("study_name"))
        except StudyFileError as e:
            raise SystemExit(f"error: {e}") from None
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
            if path is not None and any(path.parent.glob("*/result.json")):  # summary.csv says so now too
                write_summary(path.parent)
