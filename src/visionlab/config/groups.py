"""Config groups -> objects, through Hydra's `_target_`: each group's YAML names what it builds and
holds its defaults; this module only refuses keys the target does not take (Hydra's struct mode
refuses them on the command line, but a YAML file may hold anything) and upgrades the configs of
checkpoints and run folders written before the groups had a `_target_`."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from pathlib import Path

from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from visionlab.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[3]  # the checkout (or the installed project folder)
CONF_DIR = PROJECT_DIR / "conf"
# Hydra's own keys: `_target_` and its siblings, and an option file's defaults list (its bases)
RESERVED = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_", "defaults"}
# conf/_bases/<group>.yaml: the keys a group's options share, pulled in by each option's defaults list
# (`- /_bases/data@_here_`). Hydra sees the folder as one more group; it is none that users pick from.
BASES = "_bases"
# Group keys that no constructor takes: the trainer reads model.sync_bn (Lightning's sync_batchnorm);
# model.arch documents which network the option builds (the _target_ decides).
READ_ELSEWHERE = {"model": {"sync_bn", "arch"}}
# Before the groups had a _target_, a name chose the class (data.source) or a YAML file (model.arch,
# scheduler.name): the only place these names still mean anything.
OLD_DATA_SOURCES = {
    "challenge": "visionlab.data.ChallengeDataModule",
    "folder": "visionlab.data.FolderDataModule",
    "fashion_mnist": "visionlab.data.FashionMNISTDataModule",
}


# Where the classes that stored configs name have moved (issue 21's layout): a checkpoint or run folder
# written before the move names the old module; upgrade() gives its `_target_`s today's names.
MOVED_TARGETS = {
    "visionlab.callbacks.": "visionlab.training.progress.",
    "visionlab.interpret.": "visionlab.training.interpret.",
    "visionlab.checkpoints.": "visionlab.runs.checkpoints.",
    "visionlab.loggers.": "visionlab.training.loggers.",
    "visionlab.tuning.": "visionlab.training.tuning.",
    "visionlab.sweep.SweepSummary": "visionlab.runs.sweep.SweepSummary",
    "visionlab.search.SearchStudy": "visionlab.runs.sweep.SearchStudy",
}


def _moved(node):
    """`node` with every `_target_` of a moved module renamed (MOVED_TARGETS)."""
    if isinstance(node, Mapping):
        out = {k: _moved(v) for k, v in node.items()}
        target = out.get("_target_")
        for old, new in MOVED_TARGETS.items() if isinstance(target, str) else ():
            if target.startswith(old):
                out["_target_"] = new + target[len(old) :]
        return out
    if isinstance(node, list):
        return [_moved(v) for v in node]
    return node


def _as_dict(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def accepted_keys(target: str) -> set[str] | None:
    """The keyword arguments `target` (a dotted path to a class or function) takes; None when it
    takes any. A class whose __init__ passes **kwargs on to its parent's takes the parent's too; a
    function whose **kwargs go on to the class it returns (the model group's builders, whose return
    annotation names ImageClassifier) takes that class's too."""
    obj = get_method(target)
    if inspect.isclass(obj):
        functions = [c.__dict__["__init__"] for c in obj.__mro__ if "__init__" in c.__dict__]
    else:
        try:
            returned = typing.get_type_hints(obj).get("return")
        except Exception:  # annotations that do not resolve here: the function's own keywords only
            returned = None
        functions = [obj] + ([returned.__init__] if inspect.isclass(returned) else [])
    keys: set[str] = set()
    for fn in functions:
        params = inspect.signature(fn).parameters.values()
        keys |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return keys
    return None


def check_keys(node, group: str, choice: str | None = None) -> None:
    """Refuse a key of `group`'s config that its `_target_` does not take, in one line naming it.

    Args:
        node: the group's config (DictConfig or dict); nothing is checked without a `_target_`.
        group: the group's name (`model`), for the message.
        choice: the option chosen (`cnn`), for the message; default: the target's name.
    """
    node = _as_dict(node)
    target = node.get("_target_")
    if not target:
        return
    try:
        accepted = accepted_keys(target)
    except Exception as e:  # not importable: say so, naming the key
        raise ConfigError(f"{group}._target_={target!r} cannot be imported ({type(e).__name__}: {e}).") from None
    if accepted is None:
        return
    accepted |= READ_ELSEWHERE.get(group, set())
    given = [k for k in node if k not in RESERVED]
    unknown = [k for k in given if k not in accepted]
    if unknown:
        name = f"{group}={choice}" if choice else f"{group} ({target})"
        raise ConfigError(
            f"{group}.{unknown[0]} is not a key of {name}; its keys are "
            f"{', '.join(sorted(k for k in given if k in accepted))}. Fix its spelling or remove it."
        )


def build(node, group: str, choice: str | None = None, **runtime):
    """Check `group`'s keys, then instantiate it (a partial where its YAML says `_partial_: true`).

    Args:
        node: the group's config.
        group, choice: for the message of an unknown key (check_keys).
        **runtime: arguments known only when running (the class count, the image size...); with
            them, the built partial is called.
    """
    check_keys(node, group, choice)
    config = {k: v for k, v in _as_dict(node).items() if k not in READ_ELSEWHERE.get(group, set())}
    if not runtime:
        return instantiate(config, _convert_="all")
    # Called here, not passed to instantiate: Hydra would merge the runtime objects (an optimizer
    # factory, a transform pipeline) into an OmegaConf config first.
    return instantiate({**config, "_partial_": True}, _convert_="all")(**runtime)


# ----------------------------------------------------------------------------- configs of before


def option_node(path: Path) -> dict:
    """An option's YAML file with the bases its defaults list pulls in (`- /_bases/<group>@_here_`:
    conf/_bases/, the keys its group's options share) merged under its own keys, as Hydra composes
    it. Read without Hydra (which composes only whole configs): the defaults list is dropped."""
    node = OmegaConf.to_container(OmegaConf.load(path)) or {}  # unresolved: ${paths.output_dir} is the run's
    merged: dict = {}
    for entry in node.pop("defaults", None) or []:
        if isinstance(entry, str) and entry.startswith("/_bases/"):
            merged.update(option_node(CONF_DIR / f"{entry[1:].split('@')[0]}.yaml"))
    return {**merged, **node}


def option_groups(conf_dir: Path = CONF_DIR) -> str:
    """`group: option, option` lines for train.py --help: what Hydra's $APP_CONFIG_GROUPS lists, less
    the folders of shared bases (conf/_bases/), which Hydra counts as a group though no one picks
    them."""
    lines = []
    for folder in sorted(p for p in conf_dir.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf_dir).as_posix()
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options and group.split("/")[0] != "hydra" and not group.startswith("_"):
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines) + "\n"  # as Hydra's listing: a blank line after it


def _option_file(group: str, name: str, key: str) -> dict:
    path = CONF_DIR / group / f"{name}.yaml"
    if not str(name).isidentifier() or not path.is_file():  # a plain option name, never a path
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{group}.{key}={name!r} is not one of {options}.")
    return option_node(path)


def upgrade(config: Mapping) -> dict:
    """A whole run config as written before the groups had a `_target_` (checkpoints, .hydra/config.yaml
    of old run folders) -> today's form: targets of moved modules get today's names (MOVED_TARGETS); data.source picks the datamodule class; model.arch and
    scheduler.name pick their YAML file, whose keys fill what the old config lacks. Today's
    configs pass unchanged.

    Args:
        config: the run's config as a plain dict.
    """
    config = _moved(dict(config))
    data = dict(config.get("data") or {})
    if data and "_target_" not in data:
        source = data.pop("source", "challenge")
        if source not in OLD_DATA_SOURCES:
            raise ConfigError(f"data.source={source!r} is not one of {list(OLD_DATA_SOURCES)}.")
        config["data"] = {"_target_": OLD_DATA_SOURCES[source], **data}
    model = dict(config.get("model") or {})
    if model and "_target_" not in model:
        config["model"] = {**_option_file("model", model.get("arch", "cnn"), "arch"), **model}
    scheduler = dict(config.get("scheduler") or {})
    if "_target_" not in scheduler:
        name = scheduler.pop("name", "none")
        config["scheduler"] = {**_option_file("scheduler", name, "name"), **scheduler}
    return config
