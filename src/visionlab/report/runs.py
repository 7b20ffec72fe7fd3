"""A sweep folder's runs: each run's error curves (TensorBoard events, else result.json's history),
status and per-run metrics, and its setting: the values of the keys that differ between runs, read
from the run folder's name (sweep.parse_run_name, else Hydra's .hydra/overrides.yaml). `seed` is
replication: runs differing only in seed are one setting."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from visionlab.errors import InputError
from visionlab.runs.folder import RESULT_FILE, read_result
from visionlab.runs.naming import parse_run_name

EVENTS_GLOB = "events.out.tfevents.*"
SEED_KEY = "seed"
TRAIN_TAG, VAL_TAG, TEST_TAG = "train/err", "val/err", "test/err"
FAILED = "failed"
MISSING = "-"  # value shown for a key a run's name does not mention


class NotASweepDir(InputError):
    """The path given is not a sweep folder (no run folders with event files or result.json)."""


# ----------------------------------------------------------------------------- settings


def natural_key(value) -> tuple:
    """Numbers numerically (lr 0.001 < 0.01 < 0.1), then text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def differing_keys(overrides: list[dict[str, str]]) -> list[str]:
    """Keys whose value differs across runs, in the order they first appear; seed excluded. (Not
    sweep.swept_keys, the keys a command gave several values: a preset's grid may hold one value.)"""
    keys = list(dict.fromkeys(k for ov in overrides for k in ov))
    return [k for k in keys if k != SEED_KEY and len({ov.get(k, MISSING) for ov in overrides}) > 1]


def labels_from(parsed: list[dict[str, str]]) -> tuple[list[str], list[str]]:
    """(a label per run, the differing keys). One key: its value (`true`); several:
    `bn=true, optimizer=sgd` (a key's last part where unambiguous); none: what all runs share."""
    keys = differing_keys(parsed)
    if not keys:
        common = [f"{k}={v}" for k, v in parsed[0].items() if k != SEED_KEY] if parsed else []
        return [",".join(common) or "all runs"] * len(parsed), []
    if len(keys) == 1:
        return [p.get(keys[0], MISSING) for p in parsed], keys
    last = [k.rsplit(".", 1)[-1] for k in keys]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}
    return [", ".join(f"{short[k]}={p.get(k, MISSING)}" for k in keys) for p in parsed], keys


def setting_labels(names: list[str]) -> tuple[list[str], list[str]]:
    """Labels for run folder names (the names themselves when one is not made of overrides)."""
    parsed = [parse_run_name(n) for n in names]
    if any(p is None for p in parsed):
        return list(names), []
    return labels_from(parsed)


def _hydra_overrides(run_dir: Path) -> dict[str, str] | None:
    """The job's overrides from .hydra/overrides.yaml (for names that are not overrides)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    try:
        items = OmegaConf.to_container(OmegaConf.load(path)) or []
    except Exception:
        return None
    out = {}
    for item in items:
        parsed = parse_run_name(str(item))
        # Hydra hands jobs `model.bn=True`: as users type it, `true`
        out.update(
            {
                k: v.lower() if v in ("True", "False") else v
                for k, v in (parsed or {}).items()
                if not k.startswith("hydra")
            }
        )
    return out


# ----------------------------------------------------------------------------- one run


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / RESULT_FILE).is_file() or any(path.glob(EVENTS_GLOB)))


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in Path(sweep_dir).iterdir() if not p.name.startswith(".") and is_run_dir(p))


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run's event files: tag -> [(step, value)], one value per step (the
    latest written, so a resumed run's repeated epochs count once), sorted by step."""
    if not any(Path(run_dir).glob(EVENTS_GLOB)):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        by_step = {int(ev.step): float(ev.value) for ev in sorted(acc.Scalars(tag), key=lambda e: e.wall_time)}
        out[tag] = sorted(by_step.items())
    return out


def finite(series):
    return [(s, v) for s, v in series if math.isfinite(v)]


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _history_series(result: dict, tag: str) -> list[tuple[int, float]]:
    return [
        (int(h.get("epoch", i)), float(h[tag]))
        for i, h in enumerate(result.get("history") or [])
        if isinstance(h, dict) and h.get(tag) is not None
    ]


def load_run(run_dir: Path) -> dict:
    """One run: its curves (`series`: tag -> [(epoch, value)], epochs from 1), status and metrics."""
    result = read_result(run_dir)
    scalars = read_scalars(run_dir)
    series = {
        tag: [(step + 1, v) for step, v in (scalars.get(tag) or _history_series(result, tag))]
        for tag in (TRAIN_TAG, VAL_TAG)
    }
    train, val = finite(series[TRAIN_TAG]), finite(series[VAL_TAG])
    run = {
        "run": run_dir.name,
        "run_dir": str(run_dir),
        "status": result.get("status") or "unknown",
        "series": series,
        "source": "events" if scalars else ("result.json" if result else "none"),
        "best_val_err": math.nan,
        "best_epoch": math.nan,
        "final_val_err": math.nan,
    }
    if val:
        best_epoch, best = min(val, key=lambda sv: (sv[1], sv[0]))
        run.update(best_val_err=best, best_epoch=best_epoch, final_val_err=val[-1][1])
    run["final_train_err"] = train[-1][1] if train else math.nan
    common = sorted(set(dict(train)) & set(dict(val)))
    run["gen_gap"] = dict(val)[common[-1]] - dict(train)[common[-1]] if common else math.nan
    test = finite(scalars.get(TEST_TAG, []))
    run["test_err"] = test[-1][1] if test else _num(result.get("test_err"))
    run["epochs"] = len(series[TRAIN_TAG]) or _num(result.get("epochs"))
    run["params"] = _num(result.get("params"))
    run["wall_time_s"] = _num(result.get("wall_time_s"))
    run["error"] = result.get("error") or ""
    return run


def _seed_of(run_dir: Path, overrides: dict[str, str]):
    if SEED_KEY in overrides:
        return overrides[SEED_KEY]
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(path).get(SEED_KEY)
    except Exception:
        return None


# ----------------------------------------------------------------------------- the sweep


def load_sweep(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    """All runs of a sweep, each with its `setting`, `overrides` and `seed`; and the differing keys.

    Args:
        sweep_dir: the sweep folder (one folder per run).

    Raises:
        NotASweepDir: no run folders in it, with what was found instead.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NotASweepDir(
            f"{sweep_dir}: not a directory. Expected a sweep folder "
            "(outputs/train/multiruns/<stamp>_<token>) holding one folder per run."
        )
    run_dirs = find_run_dirs(sweep_dir)
    if not run_dirs:
        raise NotASweepDir(_not_a_sweep_message(sweep_dir))
    runs = [load_run(d) for d in run_dirs]
    parsed = [parse_run_name(d.name) for d in run_dirs]
    if any(p is None for p in parsed):  # names that are not overrides: Hydra's record of them
        parsed = [_hydra_overrides(d) for d in run_dirs]
    if any(p is None for p in parsed):
        labels, keys, parsed = [d.name for d in run_dirs], [], [{} for _ in run_dirs]
    else:
        labels, keys = labels_from(parsed)
    for run, label, ov, d in zip(runs, labels, parsed, run_dirs):
        run.update(setting=label, overrides=ov, seed=_seed_of(d, ov))
    return runs, keys


def _not_a_sweep_message(path: Path) -> str:
    msg = (
        f"{path} is not a sweep folder: expected run folders (one per job, named by its swept "
        f"overrides, e.g. 'model.bn=true/') holding TensorBoard event files or {RESULT_FILE}."
    )
    if any(path.glob(EVENTS_GLOB)) or (path / RESULT_FILE).is_file():
        msg += f"\n  {path} looks like a single run; pass the sweep folder that contains it."
    else:
        nested = [p for p in sorted(path.iterdir()) if p.is_dir() and find_run_dirs(p)][:5]
        if nested:
            msg += "\n  It contains sweep folders; pass one of them, e.g.\n    " + "\n    ".join(map(str, nested))
    return msg


def setting_order(runs: list[dict]) -> list[str]:
    """The settings sorted by their keys' values, numbers numerically."""
    by_label = {r["setting"]: r["overrides"] for r in runs}
    return sorted(
        by_label,
        key=lambda label: (tuple(natural_key(v) for k, v in (by_label[label] or {}).items() if k != SEED_KEY), label),
    )


def runs_frame(runs: list[dict], keys: list[str]) -> pd.DataFrame:
    """The per-run table (runs.csv): one row per run, sorted by setting then seed; the settings
    table and the plots are computed from the same runs."""
    columns = [
        "run",
        "setting",
        "seed",
        *keys,
        "status",
        "best_val_err",
        "best_epoch",
        "final_train_err",
        "final_val_err",
        "gen_gap",
        "test_err",
        "epochs",
        "params",
        "wall_time_s",
        "error",
        "source",
        "run_dir",
    ]
    rows = [{**{k: r["overrides"].get(k, MISSING) for k in keys}, **r} for r in runs]
    df = pd.DataFrame(rows, columns=columns)
    order = {label: i for i, label in enumerate(setting_order(runs))}
    df["_order"] = df["setting"].map(order)
    df["_seed"] = df["seed"].map(lambda s: natural_key(str(s)))
    df = df.sort_values(["_order", "_seed"], kind="stable").drop(columns=["_order", "_seed"])
    for col in ("params", "best_epoch", "epochs"):
        df[col] = pd.to_numeric(df[col]).round().astype("Int64")
    return df.reset_index(drop=True)


def split_top_level(text: str) -> list[str]:
    """A sweep's values (`[32],[32,64]`, as in hydra.sweeper.params) by Hydra's parser: ['[32]', '[32,64]']."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = OverridesParser.create().parse_overrides([f"key={text}"])
    if not override.is_sweep_override():
        return [text]
    # booleans as typed (`true`), not as Python prints them
    return [
        str(v).lower() if isinstance(v, bool) else s
        for v, s in zip(override.sweep_iterator(), override.sweep_string_iterator())
    ]
