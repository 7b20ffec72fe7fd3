"""Config values checked by the type their target declares, read from the source with `ast`, so that
a typo (seed=abc, model.dropout=0.2x) fails before torch or Lightning are imported; and the data
loader's whole-number keys, checked again by the datamodule itself."""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from visionlab.errors import ConfigError, InputError


def check_loader_values(batch_size, num_workers, max_pixels, error: type[InputError] = ConfigError) -> None:
    """data.batch_size / num_workers / max_pixels: whole numbers torch and PIL would take badly."""
    for key, value, least in (
        ("batch_size", batch_size, 1),
        ("num_workers", num_workers, 0),
        ("max_pixels", 1 if max_pixels is None else max_pixels, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise error(
                f"data.{key}={value!r} must be a whole number of at least {least}"
                f"{' (or null: no limit)' if key == 'max_pixels' else ''}."
            )


TYPED_GROUPS = ("data", "model", "optimizer", "scheduler", "trainer")  # built from their _target_
# names in annotations that a config value never is, or that only wrap the others
# (torch's optimizers take `lr: float | Tensor`)
TRANSPARENT = {"Optional", "Union", "typing", "Tensor", "torch"}


def _module_file(module: str) -> Path | None:
    """The source file of `module`, found without importing it (nor Lightning or torch behind it)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: located, not imported
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not spec.submodule_search_locations:
        return Path(spec.origin) if not rest and spec.origin and spec.origin.endswith(".py") else None
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*rest)
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=64)
def _parsed(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _find_def(module: str, name: str, depth: int = 0):
    """(the class or function definition of `module`.`name`, the module that defines it), read from
    the source: through `from ... import name`, and for a package, in its modules (a lazy
    `__getattr__`, as visionlab.data's)."""
    path = _module_file(module)
    tree = _parsed(path) if path is not None else None
    if tree is None or depth > 6:
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return node, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                    source = ".".join(p for p in (base, node.module or "") if p)
                    return _find_def(source, alias.name, depth + 1)
    if path.name == "__init__.py":
        for sibling in sorted(path.parent.glob("*.py")):
            tree = _parsed(sibling)
            for node in tree.body if tree is not None else ():
                if isinstance(node, ast.ClassDef) and node.name == name:
                    return node, f"{module}.{sibling.stem}"
    return None


def _params(node, module: str, depth: int = 0) -> dict:
    """{keyword: (annotation, default)} of a function, or of a class's __init__ with those of the
    parents its **kwargs go on to; a function's **kwargs go on to the class it returns (its return
    annotation), as groups.accepted_keys reads them."""
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        params = _signature(init) if init is not None else {}
        if (init is None or init.args.kwarg is not None) and depth < 6:
            for base in node.bases:
                found = _find_def(module, base.id) if isinstance(base, ast.Name) else None
                if found is not None:
                    for key, value in _params(*found, depth + 1).items():
                        params.setdefault(key, value)
        return params
    params = _signature(node)
    returns = node.returns
    returned = (
        returns.id if isinstance(returns, ast.Name) else returns.value if isinstance(returns, ast.Constant) else None
    )
    found = _find_def(module, returned) if node.args.kwarg is not None and isinstance(returned, str) else None
    if found is not None and isinstance(found[0], ast.ClassDef) and depth < 6:
        for key, value in _params(*found, depth + 1).items():
            params.setdefault(key, value)
    return params


def _signature(fn: ast.FunctionDef) -> dict:
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = {a.arg: (a.annotation, d) for a, d in zip(positional, defaults) if a.arg != "self"}
    out.update({a.arg: (a.annotation, d) for a, d in zip(args.kwonlyargs, args.kw_defaults)})
    return out


@functools.lru_cache(maxsize=64)
def target_numbers(target: str) -> dict[str, tuple[str, bool, str]]:
    """The keywords of `target` (a dotted `_target_`) that take numbers, read from its source without
    importing it: {keyword: ("int" or "number", bool accepted too, how it is declared)}. From the
    annotation where there is one (int | None, float, Union[int, float]...); else from the default's
    type (dropout=0.3). Keywords that take anything else too (a string, a list) are left out."""
    module, _, name = target.rpartition(".")
    found = _find_def(module, name) if module else None
    if found is None:
        return {}
    out = {}
    for key, (annotation, default) in _params(*found).items():
        declared = ast.unparse(annotation) if annotation is not None else None
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # a string annotation
            try:
                annotation = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                continue
        if annotation is None:
            value = default.value if isinstance(default, ast.Constant) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = ("number", False, f"default {value!r}")  # an unannotated int default: any number
            continue
        names = {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(annotation) if isinstance(n, ast.Attribute)}
        names |= {"None" for n in ast.walk(annotation) if isinstance(n, ast.Constant) and n.value is None}
        core = names - TRANSPARENT - {"None"}
        if core and core <= {"int", "float", "bool"} and core & {"int", "float"}:
            out[key] = ("number" if "float" in core else "int", "bool" in core, declared)
    return out


def wrong_type(value, kind: str, bool_ok: bool) -> bool:
    if value is None:  # null: the code fills it in (data.image_size) or the target takes it
        return False
    if isinstance(value, bool):
        return not bool_ok
    if isinstance(value, int):
        return False
    return not (isinstance(value, float) and kind == "number")


def type_error(key: str, value, kind: str, declared: str | None = None, example=None) -> ConfigError:
    what = "a whole number" if kind == "int" else "a number"
    why = f" ({declared})" if declared else ""
    hint = f", e.g. {key}={example}" if example is not None else ""
    return ConfigError(f"{key}={value!r} must be {what}{why}{hint}.")
