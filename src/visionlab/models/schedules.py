"""Learning-rate schedules: the `scheduler` group's YAML names a torch scheduler (or warmup_cosine
below) as a `_partial_`; lightning_scheduler completes it once the run's step count is known."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float,
    min_lr_ratio: float,
) -> LambdaLR:
    """Linear warmup, then cosine decay to min_lr_ratio x each group's lr, per step (torch has no
    warmup + cosine in one scheduler; chaining two with SequentialLR would be longer than this).

    Args:
        optimizer: its parameter groups' lr are the peaks (discriminative lrs keep their ratios).
        total_steps, steps_per_epoch: the run's optimizer steps, given by lightning_scheduler.
        warmup_epochs: epochs (fractions allowed) of linear warmup from lr / warmup steps.
        min_lr_ratio: the final lr as a fraction of the peak.
    """
    warmup = int(round(float(warmup_epochs) * steps_per_epoch))
    floor = float(min_lr_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def lightning_scheduler(
    factory: Callable, optimizer: torch.optim.Optimizer, steps_per_epoch: int, max_epochs: int
) -> dict:
    """Lightning's lr_scheduler dict for the scheduler partial `factory`.

    A scheduler gets what its signature asks for of the run's `total_steps`, `steps_per_epoch` and
    `max_lr` (each parameter group's own lr, so discriminative lrs survive scheduling). One that
    knows the run's length in steps is stepped per batch; the others (StepLR's step_size counts
    epochs) once per epoch.

    Args:
        factory: the instantiated `scheduler` group (a partial taking the optimizer).
        optimizer: the optimizer it schedules.
        steps_per_epoch, max_epochs: the run's length.
    """
    steps_per_epoch = max(1, steps_per_epoch)
    offered = {
        "total_steps": max(1, steps_per_epoch * max_epochs),
        "steps_per_epoch": steps_per_epoch,
        "max_lr": [g["lr"] for g in optimizer.param_groups],
    }
    params = inspect.signature(factory).parameters
    bound = getattr(factory, "keywords", {})
    if getattr(factory, "func", None) is torch.optim.lr_scheduler.OneCycleLR:
        # OneCycleLR divides by its warm-up's length in steps, pct_start x total_steps - 1: zero (a
        # ZeroDivisionError mid-run) in a run of 4 steps. A run this short gets a schedule it ends early.
        pct = float(bound.get("pct_start", 0.3))
        offered["total_steps"] = max(offered["total_steps"], math.floor(2 / pct) + 1)
    given = {k: v for k, v in offered.items() if k in params and k not in bound}
    return {"scheduler": factory(optimizer, **given), "interval": "step" if "total_steps" in given else "epoch"}
