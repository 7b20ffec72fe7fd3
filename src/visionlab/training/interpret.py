"""Pictures in TensorBoard, as fastai's show_batch and ClassificationInterpretation draw them.

Interpretation (a Lightning callback, conf/callbacks/default.yaml) logs to the run's TensorBoard:
  images/train_batch             the first training batch after augmentation, with its labels
  images/confusion_matrix_val    validation, with the best checkpoint's weights (one extra pass over val)
  images/top_losses_val          the most confidently wrong validation images: true / predicted (prob.)
  images/confusion_matrix_test   the test loop that train.py runs on best.ckpt, when test labels are known
and the confusion matrices' counts as text (confusion_matrix_val / _test, TensorBoard's TEXT tab).
Runs without a TensorBoard logger (logger=csv) log nothing and pay nothing.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

TAG_BATCH = "images/train_batch"
TAG_TOP_LOSSES = "images/top_losses_val"
TAG_CONFUSION = "images/confusion_matrix_{split}"
TEXT_CONFUSION = "confusion_matrix_{split}"
ANNOTATE_MAX_CLASSES = 30  # beyond this many classes the counts would not be legible in the cells


# ----------------------------------------------------------------------------- figures (no pyplot: no global state)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_to_array(fig) -> np.ndarray:
    """The rendered figure as an HxWx3 uint8 array (what SummaryWriter.add_image takes)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _short(name: str, limit: int = 14) -> str:
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def image_grid(images: torch.Tensor, titles: list[str], title: str, tile: int = 112) -> np.ndarray:
    """uint8 images (N, 3, H, W) in a square-ish grid, each under its title, as an HxWx3 array.
    Drawn with PIL, not matplotlib: a 16-image grid costs milliseconds instead of a second."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=11)
    n = len(images)
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    lines = max([t.count("\n") + 1 for t in titles] or [1])
    caption, pad, head = 14 * lines + 4, 6, 24
    width = max(cols * (tile + pad) + pad, int(font.getlength(title)) + 2 * pad)
    canvas = Image.new("RGB", (width, head + rows * (tile + caption + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 5), title, fill="black", font=font)
    if not n:
        draw.text((pad, head + 4), "(none to show)", fill="black", font=font)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (tile + pad), head + r * (tile + caption + pad)
        draw.multiline_text((x0, y0), titles[i], fill="black", font=font, spacing=2)
        im = Image.fromarray(images[i].permute(1, 2, 0).cpu().numpy())
        scale = tile / max(im.size)  # small images are enlarged with visible pixels
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.NEAREST)
        canvas.paste(im, (x0, y0 + caption))
    return np.asarray(canvas)


def confusion_figure(counts: np.ndarray, classes: list[str], title: str):
    """Rows: true class, columns: predicted; colour is the share of the true class's images."""
    k = len(classes)
    side = min(20.0, max(4.5, 0.45 * k + 2.5))
    fig = _figure(side, side)
    ax = fig.add_subplot()
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = [_short(c) for c in classes]
    ax.set_xticks(range(k), names, rotation=90 if k > 4 else 0, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(counts.sum())
    right = int(np.trace(counts))
    ax.set_title(f"{title}\naccuracy {right / max(total, 1):.3f} ({right}/{total})", fontsize=10)
    if k <= ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(counts[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    return fig


def confusion_markdown(counts: np.ndarray, classes: list[str]) -> str:
    """The counts as a markdown table (TensorBoard's TEXT tab renders it; tests read it back)."""
    classes = [str(c).replace("|", "/") for c in classes]  # a pipe would split a cell
    header = "| true \\ predicted | " + " | ".join(classes) + " |"
    rule = "|---|" + "---:|" * len(classes)
    rows = [f"| {c} | " + " | ".join(str(int(v)) for v in row) + " |" for c, row in zip(classes, counts)]
    return "\n".join([header, rule] + rows)


def parse_confusion_markdown(text: str) -> np.ndarray:
    rows = [line for line in text.strip().splitlines()[2:] if line.startswith("|")]
    return np.array([[int(v) for v in line.strip("| ").split(" | ")[1:]] for line in rows], dtype=np.int64)


# ----------------------------------------------------------------------------- the callback


class TopMistakes:
    """A running top-k of the most confidently wrong predictions: (confidence, image, true, predicted),
    so that only k images are ever kept, not all of val."""

    def __init__(self, k: int):
        self.k = k
        self.conf = torch.empty(0)
        self.images = torch.empty(0, dtype=torch.uint8)
        self.true = torch.empty(0, dtype=torch.long)
        self.pred = torch.empty(0, dtype=torch.long)

    def update(self, images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor) -> None:
        conf, pred = probs.max(1)
        wrong = pred != labels
        conf = torch.cat([self.conf, conf[wrong]])
        keep = conf.argsort(descending=True, stable=True)[: self.k]
        self.conf = conf[keep]
        self.images = torch.cat([self.images, images[wrong]])[keep]
        self.true = torch.cat([self.true, labels[wrong]])[keep]
        self.pred = torch.cat([self.pred, pred[wrong]])[keep]


def tensorboard_writer(trainer: pl.Trainer):
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            return lg.experiment
    return None


def class_names(trainer: pl.Trainer, pl_module: pl.LightningModule, n: int) -> list[str]:
    names = (getattr(pl_module, "info", None) or {}).get("classes") or getattr(trainer.datamodule, "classes", None)
    return [str(c) for c in names] if names and len(names) == n else [str(i) for i in range(n)]


class Interpretation(pl.Callback):
    def __init__(self, batch_images: int = 16, top_losses: int = 16):
        self.batch_images, self.top_losses = int(batch_images), int(top_losses)
        self._batch_logged = False
        self._hook = None
        self._test_counts: torch.Tensor | None = None
        self._test_logits: torch.Tensor | None = None

    # ------------------------------------------------------------------ show_batch
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._batch_logged or not trainer.is_global_zero:
            return
        self._batch_logged = True  # once per run (a resumed run logs its first batch again, at its epoch)
        writer = tensorboard_writer(trainer)
        if writer is None or self.batch_images <= 0:
            return
        x, y = batch[0][: self.batch_images], batch[1][: self.batch_images]
        names = class_names(trainer, pl_module, pl_module.num_classes)
        grid = image_grid(x, [_short(names[int(t)]) for t in y], "training batch after augmentation")
        writer.add_image(TAG_BATCH, grid, trainer.current_epoch, dataformats="HWC")
        writer.flush()

    # ------------------------------------------------------------------ validation: once, at the end
    def on_fit_end(self, trainer, pl_module) -> None:
        if getattr(pl_module, "diverged", False) or trainer.interrupted or not trainer.is_global_zero:
            return
        writer = tensorboard_writer(trainer)
        val_set = getattr(trainer.datamodule, "val_set", None)
        if writer is None or val_set is None or len(val_set) == 0:
            return
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # Judge the model the run hands on (best.ckpt, which predict.py uses), not the last epoch's
        # weights; put the last weights back afterwards, as the trainer left them.
        saved = None
        if best and Path(best).is_file():
            saved = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            state = torch.load(best, map_location=pl_module.device, weights_only=True)["state_dict"]
            pl_module.load_state_dict(state)
        try:
            self._interpret_val(trainer, pl_module, val_set, writer)
        finally:
            if saved is not None:
                pl_module.load_state_dict(saved)
        writer.flush()

    @torch.no_grad()
    def _interpret_val(self, trainer, pl_module, val_set, writer) -> None:
        k = pl_module.num_classes
        names = class_names(trainer, pl_module, k)
        counts = torch.zeros(k, k, dtype=torch.long)
        top = TopMistakes(self.top_losses)
        was_training = pl_module.training
        pl_module.eval()
        batch_size = getattr(trainer.datamodule, "batch_size", 128)
        try:
            # A plain unsharded loader: under DDP rank 0 sees all of val, and no collective is needed.
            for x, y in DataLoader(val_set, batch_size=batch_size, shuffle=False):
                with trainer.precision_plugin.val_step_context():
                    logits = pl_module(x.to(pl_module.device))
                probs = pl_module.probabilities(logits.float()).cpu()
                counts += torch.bincount(y * k + probs.argmax(1), minlength=k * k).view(k, k)
                top.update(x, y, probs)
        finally:
            pl_module.train(was_training)
        step = trainer.current_epoch
        self._log_confusion(writer, counts.numpy(), names, "val", step)
        titles = [
            f"true: {_short(names[t])}\npred: {_short(names[p])} ({c:.2f})"
            for t, p, c in zip(top.true.tolist(), top.pred.tolist(), top.conf.tolist())
        ]
        grid = image_grid(
            top.images, titles, "most confidently wrong validation images: true / predicted (probability)"
        )
        writer.add_image(TAG_TOP_LOSSES, grid, step, dataformats="HWC")

    @staticmethod
    def _log_confusion(writer, counts: np.ndarray, names: list[str], split: str, step: int) -> None:
        title = {"val": "validation", "test": "test"}[split] + " confusion matrix (best checkpoint)"
        fig = confusion_figure(counts, names, title)
        writer.add_image(TAG_CONFUSION.format(split=split), figure_to_array(fig), step, dataformats="HWC")
        writer.add_text(TEXT_CONFUSION.format(split=split), confusion_markdown(counts, names), step)

    # ------------------------------------------------------------------ test: collected in the test loop
    def on_test_start(self, trainer, pl_module) -> None:
        # test_step returns nothing; a forward hook on the network catches the logits the loop
        # computes anyway, so the test confusion matrix costs no extra forward pass.
        net = getattr(pl_module, "net", None)
        if net is None or tensorboard_writer(trainer) is None:
            return
        k = pl_module.num_classes
        self._test_counts = torch.zeros(k, k, dtype=torch.long, device=pl_module.device)

        def keep(_module, _inputs, output):
            self._test_logits = output.detach()

        self._hook = net.register_forward_hook(keep)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._test_counts is None or self._test_logits is None:
            return
        y, pred = batch[1], self._test_logits.argmax(1)  # argmax of logits = of probabilities, any output
        self._test_logits = None
        if (y < 0).any():  # unlabelled test images (-1): no confusion matrix
            self._test_counts = None
            return
        k = self._test_counts.shape[0]
        self._test_counts += torch.bincount(y * k + pred, minlength=k * k).view(k, k)

    def on_test_end(self, trainer, pl_module) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        counts, self._test_counts = self._test_counts, None
        if counts is None:
            return
        # every rank holds its shard's counts (DistributedSampler may repeat a few images to even shards)
        counts = trainer.strategy.reduce(counts, reduce_op="sum")
        writer = tensorboard_writer(trainer)
        if trainer.is_global_zero and writer is not None and int(counts.sum()):
            names = class_names(trainer, pl_module, counts.shape[0])
            self._log_confusion(writer, counts.cpu().numpy(), names, "test", trainer.current_epoch)
            writer.flush()
