"""Sweeps: unique output folders, runs named by the overrides they sweep, and the per-sweep
summary (summary.csv + a table on the terminal) written when the sweep ends."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from visionlab.argv import FLAGS_WITH_VALUE  # Hydra flags whose next token is their value
from visionlab.atomic import write_bytes_atomically
from visionlab.runlock import folder_in_use

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[2]
RESULT_FILE = "result.json"
SUMMARY_COLUMNS = [
    "run",
    "status",
    "best_val_err",
    "best_epoch",
    "final_train_err",
    "test_err",
    "epochs",
    "wall_time_s",
    "params",
    "checkpoint",
    "skipped_images",
    "error",
    "overrides",
]
# The sweep's command-line swept keys, for job processes that launchers start (joblib, submitit,
# SLURM): their sys.argv is not the user's command, but they inherit the environment.
SWEPT_KEYS_ENV = "VISIONLAB_SWEPT_KEYS"


def _parse(tokens: list[str]) -> list:
    parser, parsed = OverridesParser.create(), []
    for token in tokens:
        try:
            parsed.extend(parser.parse_overrides([token]))
        except Exception:  # not an override (a flag's value, a typo Hydra itself will report)
            pass
    return parsed


def command_line_overrides(argv: list[str] | None = None) -> list[str]:
    argv = list(sys.argv[1:] if argv is None else argv)
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token.startswith("-"):
            skip = token in FLAGS_WITH_VALUE
        else:
            out.append(token)
    return out


def swept_keys(sweeper_params=None, argv: list[str] | None = None) -> set[str]:
    """Keys given several values, on the command line or in an experiment's hydra.sweeper.params."""
    if argv is None and SWEPT_KEYS_ENV in os.environ:  # a job process of a launcher: not our command line
        keys = set(json.loads(os.environ[SWEPT_KEYS_ENV]))
        return keys | swept_keys(sweeper_params, argv=[])
    tokens = command_line_overrides(argv)
    for key, value in (dict(sweeper_params) if sweeper_params else {}).items():
        tokens.append(f"{key}={value}")
    return {o.key_or_group.lstrip("+~") for o in _parse(tokens) if o.is_sweep_override()}


def safe_name(name: str, limit: int = 180) -> str:
    name = name.replace("/", "_").replace("\\", "_").replace("\x00", "") or "default"
    if len(name) > limit:
        name = name[: limit - 9] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def _as_typed(override) -> str:
    value = override.value()
    return str(value).lower() if isinstance(value, bool) else override.get_value_element_as_str()


def run_name(task_overrides, sweeper_params=None) -> str:
    """`model.bn=true,optimizer=sgd`: the job's values of the swept keys (all its overrides when
    nothing is swept), usable as a folder name, hence as TensorBoard's run name."""
    parsed = [o for o in _parse([str(o) for o in (task_overrides or [])]) if not o.key_or_group.startswith("hydra")]
    swept = swept_keys(sweeper_params)
    # Hydra hands jobs `model.bn=True`; print values as users type them (`model.bn=true`).
    named = [(o.key_or_group.lstrip("+~"), _as_typed(o)) for o in parsed]
    chosen = [f"{k}={v}" for k, v in named if k in swept] or [f"{k}={v}" for k, v in named]
    return safe_name(",".join(chosen))


def parse_run_name(name: str) -> dict[str, str] | None:
    """run_name's inverse, by Hydra's override parser: `model.channels=[32,64],seed=0` ->
    {'model.channels': '[32,64]', 'seed': '0'} (values as written); None when the name is not made of
    overrides. A comma ends an override where the text before it parses as one override (a comma
    inside brackets or quotes does not)."""
    parser, out, start = OverridesParser.create(), {}, 0
    for end in [i for i, ch in enumerate(name) if ch == ","] + [len(name)]:
        try:
            (override,) = parser.parse_overrides([name[start:end]])
        except Exception:
            continue
        if override.is_sweep_override():  # `a=1,2`: the next part is another key, not a second value
            continue
        out[override.key_or_group] = name[start:end].split("=", 1)[1]
        start = end + 1
    return out if out and start > len(name) else None


# Leaves out what says nothing about the run (where it resumes from) or is the name itself.
_NOT_IN_RUN_SUFFIX = {"resume", "name"}


def run_suffix(task_overrides, name=None, limit: int = 80) -> str:
    """`_model.bn-true_trainer.max_epochs-2` (or `_<name>` with name=...): a single run's folder,
    hence its TensorBoard run, says what it changed. Unlike a sweep job's folder it avoids `=` and
    `,`, so `resume=outputs/train/runs/<folder>` still works unquoted; a path value keeps its last
    part (data.root=/x/flowers -> data.root-flowers). "" when there is nothing to tell."""
    if name not in (None, ""):
        parts = [str(name)]
    else:
        parsed = [
            o
            for o in _parse([str(o) for o in (task_overrides or [])])
            if not o.key_or_group.startswith("hydra") and o.key_or_group.lstrip("+~") not in _NOT_IN_RUN_SUFFIX
        ]
        parts = []
        for o in parsed:
            value = _as_typed(o).rstrip("/")
            parts.append(f"{o.key_or_group.lstrip('+~')}-{value.rsplit('/', 1)[-1]}")
    text = re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(parts)).strip("-")
    if not text:
        return ""
    if len(text) > limit:  # a hash of the whole keeps two long names apart
        text = text[: limit - 9] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return "_" + text


def register_resolvers() -> None:
    """Resolvers the configs use: vl.uid (one random token per sweep or run, so two started in the
    same second never share a folder), vl.run_name, vl.project (this checkout's folder)."""
    if OmegaConf.has_resolver("vl.uid"):
        return
    OmegaConf.register_new_resolver("vl.uid", lambda: secrets.token_hex(3), use_cache=True)
    OmegaConf.register_new_resolver("vl.run_name", run_name)
    OmegaConf.register_new_resolver("vl.run_suffix", run_suffix)
    OmegaConf.register_new_resolver("vl.project", lambda: str(PROJECT_DIR))
    OmegaConf.register_new_resolver("vl.mlflow_store", _mlflow_store)
    OmegaConf.register_new_resolver("vl.folder_name", lambda path: Path(str(path)).resolve().name)
    OmegaConf.register_new_resolver("vl.ddp_devices", _ddp_devices)
    OmegaConf.register_new_resolver(
        "vl.resume_or", lambda resume, default: str(check_run_dir(resume)) if resume else default
    )
    OmegaConf.register_new_resolver("vl.hydra_subdir", hydra_subdir, use_cache=True)
    from visionlab.parallel import parallel_jobs  # sizes hydra/launcher=joblib from the cores

    OmegaConf.register_new_resolver("vl.parallel_jobs", parallel_jobs)
    from visionlab import search  # experiment=search (optuna itself is imported only when a search runs)

    OmegaConf.register_new_resolver("vl.trials_left", search.trials_left)
    OmegaConf.register_new_resolver("vl.trial_name", search.trial_name)


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


def _mlflow_store(output_dir) -> str:
    from visionlab.loggers import mlflow_store  # imports mlflow: only where logger=mlflow asks

    return mlflow_store(output_dir)


def _ddp_devices() -> int:
    from visionlab.distributed import default_devices  # imports torch: only when trainer=ddp asks

    return default_devices()


def check_resume_argument(argv: list[str] | None = None) -> None:
    for token in command_line_overrides(argv):
        if token.startswith("resume="):
            parsed = _parse([token])  # resume="<path>" (quoted) names the same folder as resume=<path>
            try:
                check_run_dir(parsed[0].value() if parsed else token.split("=", 1)[1])
            except ValueError as e:
                raise SystemExit(f"error: {e}") from None


def check_run_dir(path) -> Path:
    """A finished or interrupted training run's folder (it holds the run's own .hydra/config.yaml)."""
    run_dir = Path(str(path)).expanduser()
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ValueError(
            f"resume={path!r} is not a training run's folder (no .hydra/config.yaml in it). Give the "
            "folder a run printed, e.g. outputs/train/runs/<time>_<token>."
        )
    return run_dir


# ----------------------------------------------------------------------------- summary


def write_result(run_dir: Path, result: dict) -> None:
    write_bytes_atomically(Path(run_dir) / RESULT_FILE, json.dumps(result, indent=2, default=str).encode())


def read_result(run_dir: Path) -> dict:
    """A run's result.json; {} when it has none, status 'unreadable' when it cannot be read. A record
    that says `running` while no process holds the run's folder is a run that was killed: `interrupted`."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return {}
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"run": path.parent.name, "status": "unreadable", "error": f"{RESULT_FILE}: {e}"}
    if isinstance(result, dict) and result.get("status") == "running" and not folder_in_use(path.parent):
        result["status"] = "interrupted"
    return result if isinstance(result, dict) else {"run": path.parent.name, "status": "unreadable"}


def collect_results(sweep_dir: Path) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: `train.py --help` imports this module

    from visionlab.search import STUDY_FILE, summary_in_trial_order

    rows = [read_result(path.parent) for path in sorted(Path(sweep_dir).glob(f"*/{RESULT_FILE}"))]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=SUMMARY_COLUMNS)
    if "job" in df:
        df = df.sort_values("job", kind="stable")
    for col in SUMMARY_COLUMNS:
        if col not in df:
            df[col] = None
    df = df[SUMMARY_COLUMNS + [c for c in df.columns if c not in SUMMARY_COLUMNS and c != "history"]]
    if (Path(sweep_dir) / STUDY_FILE).is_file():  # experiment=search: the study's trial order and states
        df = summary_in_trial_order(df, sweep_dir)
    return df


def format_table(df: pd.DataFrame) -> str:
    import pandas as pd

    columns = ["run", "status", "best_val_err", "best_epoch", "final_train_err", "test_err", "wall_time_s"]
    if "study_state" in df:  # experiment=search: what the Optuna study holds for each trial, beside its status
        columns.insert(2, "study_state")
    view = df[columns].copy()
    for col in ("best_val_err", "final_train_err", "test_err"):
        view[col] = view[col].map(lambda v: "" if v is None or pd.isna(v) else f"{float(v):.4f}")
    view["wall_time_s"] = view["wall_time_s"].map(lambda v: "" if v is None or pd.isna(v) else f"{float(v):.0f}")
    return view.to_string(index=False)


def best_job(df: pd.DataFrame):
    """The completed job with the lowest best val error (a row of the summary), None when no job has one."""
    import pandas as pd

    done = df[(df["status"] == "completed") & pd.to_numeric(df["best_val_err"], errors="coerce").notna()]
    done = done[done["checkpoint"].fillna("").astype(str) != ""]
    if done.empty:
        return None
    return done.loc[pd.to_numeric(done["best_val_err"]).idxmin()]


def write_summary(sweep_dir: Path) -> pd.DataFrame:
    df = collect_results(sweep_dir)
    write_bytes_atomically(Path(sweep_dir) / "summary.csv", df.to_csv(index=False).encode())
    return df


def plain_optuna_logs() -> None:
    """Optuna 2.x colours its log lines whatever the stream: escape codes ([32m[I ...) in log files
    and CI output. Plain text where stderr is not a terminal."""
    if sys.stderr.isatty():
        return
    import optuna  # noqa: F401  (its import sets up the handler whose format is replaced here)

    for handler in logging.getLogger("optuna").handlers:
        handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s] %(message)s"))


REFUSED_DIR = ".refused"  # <sweep>/.refused/<job>: why a job of this sweep was refused (train._skip_job)


def record_refusal(job_dir: Path, reason: str) -> None:
    """A refused job's folder holds another run's record, which stays as it is: the refusal goes beside."""
    folder = Path(job_dir).parent / REFUSED_DIR
    folder.mkdir(exist_ok=True)
    write_bytes_atomically(folder / Path(job_dir).name, reason.encode())


def take_refusals(sweep_dir: Path) -> dict[str, str]:
    """The jobs this sweep refused, {job: reason}; the records are removed once read."""
    folder = Path(sweep_dir) / REFUSED_DIR
    if not folder.is_dir():
        return {}
    refused = {p.name: p.read_text() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}
    shutil.rmtree(folder, ignore_errors=True)
    return refused


def lock_sweep(sweep_dir: Path):
    """One sweep per sweep folder: a second sweep into it (hydra.sweep.dir=, a search resumed twice)
    stops here, in one line, before anything of the first is overwritten."""
    from visionlab.runlock import RunFolderInUse, RunLock

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
