"""Errors caused by what the user gave (a file, a column, a config key): the entry points print
their message, which names the culprit and the fix, without a traceback."""


class InputError(ValueError):
    """Bad input or configuration; the message names the file, column or key, and the fix."""


class ConfigError(InputError):
    """A config key with a value it cannot take."""
