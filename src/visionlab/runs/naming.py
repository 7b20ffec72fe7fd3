"""A job's name from its overrides: `model.bn=true,optimizer=sgd` for a sweep job (its folder and
TensorBoard run), `_model.bn-true` for a single run's folder suffix, and the keys a sweep varies."""

from __future__ import annotations

import hashlib
import json
import os
import re

from hydra.core.override_parser.overrides_parser import OverridesParser

from visionlab.config.argv import command_line_overrides

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
