"""Errors caused by what the user gave (a file, a column, a config key): the entry points print
their message, which names the culprit and the fix, without a traceback."""


class InputError(ValueError):
    """Bad input or configuration; the message names the file, column or key, and the fix."""


class ConfigError(InputError):
    """A config key with a value it cannot take."""


def load_failure(e: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line."""
    text = str(e)
    if "Weights only load failed" in text and "Unsupported global" in text:
        culprit = text.split("Unsupported global:", 1)[1].split("was not", 1)[0].strip(" :")
        return (f"it holds pickled Python objects ({culprit[:80]}) that could run code when loaded; only plain "
                "weights are read (see the README's security note)")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if isinstance(e, EOFError) or not first:
        return f"{type(e).__name__}: the file is empty or cut short"
    return f"{type(e).__name__}: {first[:160]}"
