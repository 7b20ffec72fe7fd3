"""ImageClassifier: any backbone that maps images to class scores, trained with the loss that the
output activation calls for, logging per-epoch loss and error (1 - accuracy) for every split."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from visionlab.errors import ConfigError
from visionlab.models.backbones import head_name
from visionlab.models.schedules import lightning_scheduler

log = logging.getLogger(__name__)

OUTPUTS = {
    "softmax": "softmax + cross-entropy",
    "sigmoid": "sigmoid + one-vs-rest binary cross-entropy",
    "sigmoid_mse": "sigmoid + MSE on one-hot targets",
    "softmax_mse": "softmax + MSE on one-hot targets",
    "linear_mse": "no activation + MSE on one-hot targets",
}


def batch_mixer(mixup: float, cutmix: float, label_smoothing: float, num_classes: int):
    """timm's Mixup with these alphas (it smooths the mixed targets itself); None when both are 0."""
    if not (mixup or cutmix):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=float(mixup), cutmix_alpha=float(cutmix), label_smoothing=label_smoothing, num_classes=num_classes
    )


def epoch_metrics(num_classes: int) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    """Per split, the accuracy and the mean loss, as torchmetrics states: under DDP, compute() reduces
    them over every rank's samples, so an epoch's loss and error are those of the whole split,
    whatever the process count."""
    splits = ("train", "val", "test")
    accuracy = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes, average="micro") for s in splits})
    # nan_strategy="disable": a NaN loss must reach the epoch mean, which is how divergence is detected
    mean_loss = nn.ModuleDict({f"{s}_loss": MeanMetric(nan_strategy="disable") for s in splits})
    return accuracy, mean_loss


class ImageClassifier(pl.LightningModule):
    """Takes uint8 images (B, C, H, W); normalises them itself, so a checkpoint carries its own
    preprocessing to predict.py. `info` (config, class names) is stored in every checkpoint."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable,
        scheduler: Callable | None = None,
        output: str = "softmax",
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        freeze: bool = False,
        unfreeze_epoch: int | None = None,
        backbone_lr_mult: float = 1.0,
        layer_decay: float | None = None,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        mixup_off_epoch: int | None = None,
        eval_flip: bool = False,
        info: dict | None = None,
    ):
        """optimizer / scheduler: the `optimizer` and `scheduler` groups' partials (scheduler None: a
        constant lr), completed in configure_optimizers.
        Fine-tuning knobs (all `model.*` keys):
        freeze: train the head only, the backbone's weights AND BatchNorm statistics fixed (feature
          extraction); with unfreeze_epoch=N the whole net trains from epoch N (fastai's fine_tune).
        backbone_lr_mult: the backbone's lr is optimizer.lr times this (discriminative learning rates);
          layer_decay: timm's layer-wise lr decay instead (each block deeper gets a larger lr).
        mixup / cutmix: the alphas of timm's Mixup (0 = off), switched off from mixup_off_epoch on.
        eval_flip: outside training (validation, test, predict, export), score each image and its
          mirror image and average the two: flip test-time augmentation built into the model, for nets
          trained with horizontal flips; twice the cost of an evaluation, none of training's.
        """
        super().__init__()
        if output not in OUTPUTS:
            raise ConfigError(f"model.output={output!r} is not one of {list(OUTPUTS)}.")
        self.freeze, self.unfreeze_epoch = bool(freeze), unfreeze_epoch
        self.backbone_lr_mult, self.layer_decay = float(backbone_lr_mult), layer_decay
        self.head_name = head_name(net)
        self.mixup, self.mixup_off_epoch = batch_mixer(mixup, cutmix, label_smoothing, num_classes), mixup_off_epoch
        self.net, self.num_classes, self.output = net, num_classes, output
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_smoothing, self.channels_last = label_smoothing, channels_last
        self.eval_flip = bool(eval_flip)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.info = dict(info or {})
        self.accuracy, self.mean_loss = epoch_metrics(num_classes)
        self.diverged = False
        # The run's one record: per finished epoch, the epoch metrics exactly as logged. result.json,
        # the checkpoint, the progress lines and the sweep summary all read this list.
        self.history: list[dict] = []
        self._val_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ model
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of normalised images; averaged with the mirror image's under eval_flip."""
        logits = self.net(x)
        if self.eval_flip and not self.training:
            logits = (logits + self.net(x.flip(-1))) / 2
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.normalize(x))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities for ensembling: softmax, or normalised sigmoid scores."""
        if self.output.startswith("sigmoid"):
            p = torch.sigmoid(logits)
            return p / p.sum(1, keepdim=True).clamp_min(1e-12)
        return logits.softmax(1)  # also for linear_mse: keeps the ranking of the raw scores

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """target: class indices (B,) or a probability per class (B, C), e.g. from mixup."""
        if self.output == "softmax":
            # Mixup's soft targets are smoothed already (timm's Mixup takes label_smoothing): once is enough
            smoothing = self.label_smoothing if target.ndim == 1 else 0.0
            return F.cross_entropy(logits, target, label_smoothing=smoothing)
        if target.ndim == 1:
            target = F.one_hot(target, self.num_classes).float()
            if self.label_smoothing:
                target = target * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        if self.output == "sigmoid":
            return F.binary_cross_entropy_with_logits(logits, target)
        scores = {"sigmoid_mse": torch.sigmoid, "softmax_mse": lambda z: z.softmax(1), "linear_mse": lambda z: z}
        return F.mse_loss(scores[self.output](logits), target)

    # ------------------------------------------------------------------ steps
    def _step(self, batch, split: str) -> torch.Tensor:
        x, y = batch
        x, target = self.normalize(x), y
        if split == "train" and self.mixing():
            x, target = self.mixup(x, y)
        logits = self.classify(x)
        loss = self.loss(logits, target)
        self.accuracy[f"{split}_acc"].update(logits.detach(), y)
        # The batch mean once per image, so the epoch mean is over images. (Not weight=len(y): torchmetrics
        # 1.9 ignores the weight with nan_strategy="disable".)
        self.mean_loss[f"{split}_loss"].update(loss.detach().float().expand(len(y)))
        return loss

    def mixing(self) -> bool:
        return self.mixup is not None and (self.mixup_off_epoch is None or self.current_epoch < self.mixup_off_epoch)

    def training_step(self, batch, batch_idx):
        if self.mixing() and len(batch[0]) % 2:  # timm's Mixup pairs images: drop an odd one out
            batch = (batch[0][:-1], batch[1][:-1])
        loss = self._step(batch, "train")
        self.log("loss", loss.detach(), prog_bar=True, logger=False)  # the live bar's running loss
        if not torch.isfinite(loss):
            self.diverged = True
            self.trainer.should_stop = True
            return None  # skip this update; the run stops and is reported as diverged
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self.probabilities(self(batch[0]))

    # ------------------------------------------------------------------ epoch metrics
    def _epoch_end(self, split: str) -> dict[str, float]:
        """The split's epoch loss and error over all ranks' samples; logged, then returned."""
        acc, mean_loss = self.accuracy[f"{split}_acc"], self.mean_loss[f"{split}_loss"]
        seen = acc.update_count > 0 or mean_loss.update_count > 0
        if self.trainer.world_size > 1:  # a rank with no batch of its own still joins the reduction
            seen = bool(self.trainer.strategy.reduce(torch.tensor(float(seen)), reduce_op="max"))
        metrics = {}
        if seen:
            metrics = {f"{split}/loss": float(mean_loss.compute()), f"{split}/err": 1.0 - float(acc.compute())}
        acc.reset()
        mean_loss.reset()
        if not metrics or self.trainer.sanity_checking:
            return {}
        # compute() has already reduced over the ranks (sync_dist then averages equal values and keeps
        # Lightning from warning). 'step' makes TensorBoard's x-axis the epoch number for every scalar.
        self.log_dict({**metrics, "step": float(self.current_epoch)}, prog_bar=split == "val", sync_dist=True)
        return metrics

    def on_validation_epoch_end(self):
        self._val_metrics = self._epoch_end("val")

    def on_train_epoch_end(self):
        # Lightning runs the epoch's validation before this hook, so the record holds both splits.
        metrics = self._epoch_end("train")
        if metrics and not torch.isfinite(torch.tensor(metrics["train/loss"])):
            self.diverged = True
            self.trainer.should_stop = True
        self.history.append({"epoch": self.current_epoch, **metrics, **self._val_metrics})
        self._val_metrics = {}

    def on_test_epoch_end(self):
        self._epoch_end("test")

    # ------------------------------------------------------------------ optimisation
    # ------------------------------------------------------------------ fine-tuning
    def is_head(self, name: str) -> bool:
        return name == self.head_name or name.startswith(self.head_name + ".")

    def backbone_frozen(self) -> bool:
        return self.freeze and (self.unfreeze_epoch is None or self.current_epoch < self.unfreeze_epoch)

    def on_train_epoch_start(self) -> None:
        frozen = self.backbone_frozen()
        for name, p in self.net.named_parameters():
            if not self.is_head(name):
                p.requires_grad_(not frozen)
        # While frozen, the backbone's BatchNorm statistics (and dropout) stay fixed too; set per module,
        # not with .eval(), which would recurse into a head nested below.
        for name, m in self.net.named_modules():
            if name and not self.is_head(name):
                m.training = not frozen
        if self.freeze and self.current_epoch == self.unfreeze_epoch:
            log.info("Epoch %d: backbone unfrozen, the whole network trains from now on.", self.current_epoch)

    def param_groups(self) -> list[dict]:
        """Head at optimizer.lr; backbone at lr * backbone_lr_mult, or timm's layer-wise decay.
        Every parameter is in the optimizer from the start, so unfreezing needs no new groups."""
        base_lr = getattr(self.optimizer_factory, "keywords", {}).get("lr", 1e-3)
        if self.layer_decay:
            from timm.optim import param_groups_layer_decay

            wd = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.0)
            groups = param_groups_layer_decay(self.net, weight_decay=wd, layer_decay=float(self.layer_decay))
            for g in groups:
                g["lr"] = base_lr * g.pop("lr_scale", 1.0)
            return groups
        named = list(self.net.named_parameters())
        head = [p for n, p in named if self.is_head(n)]
        body = [p for n, p in named if not self.is_head(n)]
        if self.backbone_lr_mult == 1.0 or not head:
            return [{"params": head + body}]
        return [{"params": body, "lr": base_lr * self.backbone_lr_mult}, {"params": head, "lr": base_lr}]

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.param_groups())
        if self.scheduler_factory is None:
            return optimizer
        steps = self.trainer.estimated_stepping_batches
        epochs = max(1, self.trainer.max_epochs or 1)
        scheduler = lightning_scheduler(self.scheduler_factory, optimizer, int(steps // epochs), epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["visionlab"] = {**self.info, "history": self.history, "diverged": self.diverged}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if not self.history:  # resuming; testing the best checkpoint after fit keeps the full history
            self.history = list(checkpoint.get("visionlab", {}).get("history", []))
