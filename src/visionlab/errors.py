"""Errors caused by what the user gave (a file, a column, a config key): the entry points print
their message, which names the culprit and the fix, without a traceback."""

import os
import re


class InputError(ValueError):
    """Bad input or configuration; the message names the file, column or key, and the fix."""


class ConfigError(InputError):
    """A config key with a value it cannot take."""


def load_failure(e: Exception, path=None) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line, in full: empty or cut short, not a
    torch file at all, or pickled code refused for safety. `path` (when given) is looked at to tell."""
    head, size = b"", None
    if path is not None:
        try:
            with open(path, "rb") as fh:
                head = fh.read(64)
            size = os.path.getsize(path)
        except OSError:
            pass
    text = str(e)
    if size == 0 or (isinstance(e, EOFError) and path is None):
        return "the file is empty (0 bytes): a copy or a save that was cut short; copy or save it again"
    if isinstance(e, EOFError):
        return (
            f"the file ends too early ({size} bytes): it was cut short while copying or saving; copy or save it again"
        )
    blocked = re.search(r"(?:unsupported GLOBAL|Unsupported global:)\s*([\w.]+)", text)
    if blocked:
        return (
            f"refused for safety: it holds pickled Python objects ({blocked.group(1)}) that would run code when "
            "loaded; only plain weights are read (see the README's security note)"
        )
    if head.startswith(b"PK\x03\x04") or "PytorchStreamReader" in text:
        return (
            f"a torch (zip) file that is cut short or damaged ({size if size is not None else '?'} bytes; "
            "its archive is incomplete); copy or save it again"
        )
    if head.startswith(b"\x80") and "Weights only load failed" in text:
        return (
            "a Python pickle, not a file written by torch.save: refused for safety, as unpickling it could run "
            "code; save the weights with torch.save(model.state_dict(), FILE)"
        )
    if head and (path is not None):
        return f"not a torch file at all (it starts with {describe_head(head)}); give a .ckpt/.pt/.pth written by torch"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def describe_head(head: bytes) -> str:
    """How a file that is not what it should be begins: its first line of text, or its first bytes."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"the bytes {head[:8]!r}"
    return f"the text {text.splitlines()[0][:40]!r}" if text.strip() else f"the bytes {head[:8]!r}"
