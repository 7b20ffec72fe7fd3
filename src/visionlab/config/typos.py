"""A misspelt key on the command line (`model.dropuot=0.2`) gets Hydra's advice to append it
(`+model.dropuot=0.2`), which would only move the error. Before Hydra composes anything, a key that
no option of its group has is named here, with the closest keys that exist."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from omegaconf import OmegaConf

from visionlab.config.argv import command_line_overrides
from visionlab.config.groups import CONF_DIR, option_keys


def group_keys(group: str, conf_dir: Path = CONF_DIR) -> set[str] | None:
    """Every top-level key of every option of `group` (None when `group` is not a group folder)."""
    folder = conf_dir / group
    if not folder.is_dir():
        return None
    keys: set[str] = set()
    for path in folder.glob("*.yaml"):
        node = OmegaConf.to_container(option_keys(path, conf_dir))  # with its base's keys (conf/_bases)
        if path.read_text().startswith("# @package _global_"):  # model/efficientnet_lite0: keys under model:
            node = node.get(group) or {}
        if isinstance(node, dict):
            keys |= {str(k) for k in node if k != "defaults"}
    return keys


def check_override_keys(argv: list[str] | None = None, config_name: str = "train", conf_dir: Path = CONF_DIR) -> None:
    """Exit with one line when a `group.key=value` override names a key that no option of `group` has."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(t.split("=", 1)[0] in ("-cp", "--config-path", "-cd", "--config-dir") for t in argv):
        return  # other config files than ours: Hydra checks against them
    top = OmegaConf.to_container(OmegaConf.load(conf_dir / f"{config_name}.yaml")) or {}
    groups = _groups_of(top)
    for token in command_line_overrides(argv):
        key = token.split("=", 1)[0]
        if "=" not in token or key[:1] in "+~" or "/" in key or key.startswith("hydra."):
            continue
        if "." not in key:  # a top-level key or a group choice (model=resnet)
            known = set(top) | groups | {"experiment", "debug", "hydra"}
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known - {"defaults"}), n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise SystemExit(f"error: {key} is not a key or group of {config_name}.py; {hint}Fix its spelling.")
            continue
        group, leaf = key.split(".", 1)
        if "." in leaf or group not in groups:
            continue  # nested keys (trainer.plugins.x) and non-group nodes (paths.*) are Hydra's to check
        keys = group_keys(group, conf_dir) | set((top.get(group) or {}) if isinstance(top.get(group), dict) else {})
        if keys and leaf not in keys:
            close = difflib.get_close_matches(leaf, sorted(keys), n=3)
            hint = f"did you mean {', '.join(f'{group}.{c}' for c in close)}? " if close else ""
            raise SystemExit(
                f"error: {key} is not a key of any {group} option; {hint}(its keys: "
                f"{', '.join(k for k in sorted(keys) if not k.startswith('_'))}). "
                "Fix its spelling."
            )


def _groups_of(top: dict) -> set[str]:
    """The config groups the primary config's defaults list chooses from (data, model, ...)."""
    groups = set()
    for entry in top.get("defaults") or []:
        if isinstance(entry, dict):
            groups |= {str(k).split("@")[0].lstrip("/") for k in entry}
    return groups - {"hydra", "experiment", "debug"}
