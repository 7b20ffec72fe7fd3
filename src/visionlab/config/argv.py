"""Path arguments as users type them. Sweep job folders are named like `model.bn=true,optimizer=sgd`,
and Hydra's override grammar stops at the `=` inside such a path (`mismatched input '='`), so the
entry points hand Hydra the quoted form of a path-valued token it cannot parse as given."""

from __future__ import annotations

import os
import sys

from hydra.core.override_parser.overrides_parser import OverridesParser

# keys whose values are file or folder paths (their list forms included: ckpt=[a,b])
PATH_KEYS = {"ckpt", "resume", "output", "ckpt_path", "data.root", "model.weights", "paths.output_dir"}
# Hydra's flags that take the next token as their value (not an override)
FLAGS_WITH_VALUE = {
    "-cn",
    "--config-name",
    "-cp",
    "--config-path",
    "-cd",
    "--config-dir",
    "--info",
    "-i",
    "--experimental-rerun",
    "--package",
    "-p",
}

_parser = None


def _parses(token: str):
    """The parsed override, or None when Hydra's grammar rejects the token."""
    global _parser
    _parser = _parser or OverridesParser.create()
    try:
        return _parser.parse_overrides([token])[0]
    except Exception:
        return None


def quote(value: str) -> str:
    """`value` as a Hydra quoted string (the grammar's escapes: a quote, and backslashes before one)."""
    body = value.rstrip("\\")
    value = body + "\\" * (2 * (len(value) - len(body)))  # a trailing backslash would escape the closing quote
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace('"', '\\"') + '"'


def _split_list(inner: str) -> list[str]:
    """Comma-separated items of `[a,b]`; a quoted item keeps its commas."""
    items, cur, q = [], "", None
    for ch in inner:
        if q:
            q = None if ch == q else q
        elif ch in "'\"":
            q = ch
        elif ch == ",":
            items.append(cur)
            cur = ""
            continue
        cur += ch
    return items + [cur]


def _path_items(inner: str) -> list[str]:
    """The paths of an unquoted list: the comma-separated pieces, rejoined where the joined path
    exists on disk (`sweep/model.bn=true,optimizer=sgd` is one path, not two)."""
    pieces = [p.strip() for p in _split_list(inner)]
    out, i = [], 0
    while i < len(pieces):
        end = i + 1
        if pieces[i][:1] not in "'\"":
            for j in range(i + 1, len(pieces) + 1):
                if os.path.exists(os.path.expanduser(",".join(pieces[i:j]))):
                    end = j  # the longest existing path wins
        out.append(",".join(pieces[i:end]))
        i = end
    return [p for p in out if p]


def quote_token(token: str) -> str:
    """A `key=value` token of a path key, rewritten to its quoted form when Hydra cannot parse it
    as given (or would read an existing path with a comma as a sweep); every other token unchanged."""
    key, eq, value = token.partition("=")
    if not eq or key.lstrip("+~") not in PATH_KEYS or not value or value[0] in "'\"":
        return token
    parsed = _parses(token)
    if parsed is not None and not (parsed.is_sweep_override() and os.path.exists(os.path.expanduser(value))):
        return token
    if value.startswith("[") and value.endswith("]"):
        items = [it if it[:1] in "'\"" else quote(it) for it in _path_items(value[1:-1])]
        return f"{key}=[{','.join(items)}]"
    return f"{key}={quote(value)}"


def quote_paths(argv: list[str]) -> list[str]:
    """argv (without the program name) with every path token Hydra would reject quoted."""
    out, skip = [], False
    for token in argv:
        if skip or token.startswith("-"):
            skip = not skip and token in FLAGS_WITH_VALUE
            out.append(token)
        else:
            out.append(quote_token(token))
    return out


def fix_sys_argv() -> None:
    sys.argv[1:] = quote_paths(sys.argv[1:])


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
