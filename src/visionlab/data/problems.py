"""Bad input, told all at once: DataError (its message names the file, column or key, and the fix) and
Problems, which gathers every problem of one pass over the input into one DataError."""

from __future__ import annotations

from contextlib import contextmanager

from visionlab.errors import InputError

MAX_LISTED = 20  # how many offending entries one error message lists


class DataError(InputError):
    """Bad input. The message names the file, column or key, and the fix."""


class Problems:
    """Every problem found in one pass over the input, grouped by kind (each group names the file or
    key and the fix), raised together as one DataError so that one run tells the user everything."""

    def __init__(self):
        self.groups: list[str] = []

    def add(self, message: str) -> None:
        self.groups.append(message)

    def __bool__(self) -> bool:
        return bool(self.groups)

    @contextmanager
    def collecting(self):
        """A DataError raised inside (a problem that stops reading this part) joins the others."""
        try:
            yield
        except DataError as e:
            self.add(str(e))

    def raise_if_any(self) -> None:
        if len(self.groups) == 1:
            raise DataError(self.groups[0])
        if self.groups:
            raise DataError(
                f"{len(self.groups)} kinds of problem with the input data, each with its fix:\n"
                + "\n".join(f"[{i}] {g}" for i, g in enumerate(self.groups, 1))
            )


def report(problems: Problems | None, message: str) -> None:
    """Add to `problems`, or raise at once where the caller collects none."""
    if problems is None:
        raise DataError(message)
    problems.add(message)


def listing(entries: list[str], limit: int = MAX_LISTED) -> str:
    shown = "\n".join(f"  - {e}" for e in entries[:limit])
    more = f"\n  ... and {len(entries) - limit} more" if len(entries) > limit else ""
    return shown + more
