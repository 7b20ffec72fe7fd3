"""A callback that scores the model on a labelled held-out split (by default the official 10k
Fashion-MNIST test split) at the end of every training epoch, for time-to-accuracy curves. Its own
time (reading the split once, each evaluation) is recorded, so that a curve's training time can
leave it out: the figure is what the run costs without the measuring."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from visionlab.data.options import FashionMNISTDataModule
from visionlab.models.preprocessing import stored_preprocessing

FIELDS = ("epoch", "epoch_end_unix", "excluded_s", "test_acc")


class AccuracyCurve(pl.Callback):
    """Appends one row per epoch to `output` (CSV): the epoch (from 1), when it ended (Unix time,
    before this callback's work), the seconds this callback had taken until then, and the accuracy.
    The split is read with the datamodule's own machinery at the run's image size and interpolation,
    and scored with the model's forward on uint8 batches, as predict.py does. `images`: score only the
    split's first N images (None: all 10,000), for a quick check of the machinery, never for a figure."""

    def __init__(self, output: str, root: str | None = None, batch_size: int = 1000, images: int | None = None):
        self.output, self.root, self.batch_size, self.n_images = Path(output), root, batch_size, images
        self.excluded = 0.0
        self.images = self.labels = None

    def on_fit_start(self, trainer, pl_module) -> None:
        begin = time.time()
        info = pl_module.info
        pre = stored_preprocessing(info)
        dm = FashionMNISTDataModule(
            root=self.root,
            image_size=pre["image_size"],
            interpolation=pre["interpolation"],
            classes=info["classes"],
            eval_subset=self.n_images,
        )
        dm.setup("test")
        if dm.test_set.labels is None:
            raise ValueError(f"the Fashion-MNIST test split has no labels the model knows ({info['classes']}).")
        self.images = torch.from_numpy(np.stack(dm.test_set.images)).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(dm.test_set.labels)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output, "w", newline="") as fh:
            csv.writer(fh).writerow(FIELDS)
        self.excluded += time.time() - begin

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # after the epoch's validation
        begin = time.time()
        accuracy = self.evaluate(trainer, pl_module)
        with open(self.output, "a", newline="") as fh:
            csv.writer(fh).writerow(
                [trainer.current_epoch + 1, f"{begin:.3f}", f"{self.excluded:.3f}", f"{accuracy:.5f}"]
            )
        self.excluded += time.time() - begin

    @torch.inference_mode()
    def evaluate(self, trainer, pl_module) -> float:
        was_training = pl_module.training
        pl_module.eval()
        correct = 0
        try:
            for i in range(0, len(self.images), self.batch_size):
                with trainer.precision_plugin.val_step_context():  # the run's own autocast (bf16-mixed)
                    logits = pl_module(self.images[i : i + self.batch_size].to(pl_module.device))
                correct += int((logits.argmax(1).cpu() == self.labels[i : i + self.batch_size]).sum())
        finally:
            pl_module.train(was_training)
        return correct / len(self.labels)
