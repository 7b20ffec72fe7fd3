"""tune=lr_find: Lightning's learning-rate range test on the run's own model, data and optimizer,
in place of training. The optimizer's lr is swept from min_lr to max_lr over num_training steps;
the suggestion is the steepest descent of the loss (Lightning's, as fastai's lr_find). The model's
weights are restored afterwards; nothing is trained."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.tuner import Tuner

log = logging.getLogger(__name__)


def lr_find(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    out_dir: Path,
    result: dict,
    *,
    min_lr: float,
    max_lr: float,
    num_training: int,
    mode: str,
    early_stop_threshold: float | None,
) -> None:
    """Run the range test; its curve goes to <out_dir>/lr_find.png and its figures to result['lr_find']."""
    trainer.fit_loop.max_epochs = 1_000_000  # num_training steps end the test, however short an epoch is
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        mode=mode,
        early_stop_threshold=early_stop_threshold,
        update_attr=False,  # the lr lives in the optimizer's partial, not in a model attribute
    )
    suggestion = finder.suggestion() if finder is not None else None
    lrs, losses = (finder.results.get("lr", []), finder.results.get("loss", [])) if finder is not None else ([], [])
    finite = [(loss, lr) for lr, loss in zip(lrs, losses) if loss == loss]
    result["lr_find"] = {
        "suggestion": suggestion,  # Lightning's: the steepest fall of the smoothed loss
        "min_loss_lr_div_10": min(finite)[1] / 10 if finite else None,  # fastai's other rule of thumb
        "steps": len(finder.results.get("lr", [])) if finder is not None else 0,
        "min_lr": min_lr,
        "max_lr": max_lr,
    }
    result["status"] = "completed"
    result["checkpoint"] = ""  # nothing was trained: nothing to submit
    if finder is None or not finder.results.get("lr"):
        print("lr_find: no steps ran (no training batches?)", flush=True)
        return
    import matplotlib

    matplotlib.use("Agg")  # a file, also where there is no display
    figure = finder.plot(suggest=suggestion is not None)
    figure.savefig(out_dir / "lr_find.png", dpi=100, bbox_inches="tight")
    result["lr_find"]["plot"] = str(out_dir / "lr_find.png")
    if suggestion is None:
        print(f"lr_find: the loss never fell steadily; see {out_dir / 'lr_find.png'}", flush=True)
        return
    print(
        f"Suggested learning rate: {suggestion:.3g} (steepest fall of the loss; the lowest loss's lr / 10: "
        f"{result['lr_find']['min_loss_lr_div_10']:.3g}; loss curve: {out_dir / 'lr_find.png'})\n"
        f"  train with it: python train.py {shlex.quote(f'optimizer.lr={suggestion:.3g}')} <your other overrides>",
        flush=True,
    )
