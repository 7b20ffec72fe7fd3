"""Learning-rate schedules from the `scheduler` config group, stepped per batch where it matters."""

from __future__ import annotations

from visionlab.errors import ConfigError

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR, StepLR

KINDS = ("none", "step", "cosine", "onecycle")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict | None, steps_per_epoch: int, max_epochs: int):
    """A Lightning lr_scheduler dict, or None. Every kind scales each parameter group's own lr, so
    discriminative learning rates survive scheduling."""
    cfg = dict(cfg or {})
    kind = cfg.get("name", "none")
    if kind not in KINDS:
        raise ConfigError(f"scheduler.name={kind!r} is not one of {KINDS}.")
    if kind == "none":
        return None
    steps_per_epoch = max(1, steps_per_epoch)
    total = max(1, steps_per_epoch * max_epochs)
    if kind == "step":
        sched = StepLR(optimizer, step_size=int(cfg.get("step_size", 10)), gamma=float(cfg.get("gamma", 0.1)))
        return {"scheduler": sched, "interval": "epoch"}
    if kind == "onecycle":
        sched = OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
                           pct_start=float(cfg.get("pct_start", 0.25)), div_factor=float(cfg.get("div_factor", 25.0)),
                           final_div_factor=float(cfg.get("final_div_factor", 1e4)))
        return {"scheduler": sched, "interval": "step"}
    warmup = int(round(float(cfg.get("warmup_epochs", 0)) * steps_per_epoch))
    floor = float(cfg.get("min_lr_ratio", 0.0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return {"scheduler": LambdaLR(optimizer, factor), "interval": "step"}
