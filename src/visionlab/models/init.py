"""Weight initialisation schemes for the init ablation (zeros / ones / random families)."""

from __future__ import annotations

from torch import nn

from visionlab.errors import ConfigError

SCHEMES = ("default", "zeros", "ones", "normal", "uniform", "xavier", "kaiming")


def apply_init(module: nn.Module, scheme: str = "default", std: float = 0.01) -> nn.Module:
    """Re-initialise every conv and linear layer's weights and biases.

    `default` keeps PyTorch's own (Kaiming-uniform) init. `zeros` and `ones` set weights AND biases
    to that constant, which makes every unit in a layer compute the same thing (the symmetry the
    theory questions are about). Normalisation layers keep weight 1 / bias 0 in every scheme.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"model.init={scheme!r} is not one of {SCHEMES}.")
    if scheme == "default":
        return module
    for m in module.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        if scheme in ("zeros", "ones"):
            nn.init.constant_(m.weight, 0.0 if scheme == "zeros" else 1.0)
        elif scheme == "normal":
            nn.init.normal_(m.weight, 0.0, std)
        elif scheme == "uniform":
            nn.init.uniform_(m.weight, -std, std)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(m.weight)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.constant_(m.bias, 1.0 if scheme == "ones" else 0.0)
    return module
