"""Training throughput of the framework against a plain PyTorch loop, measured in one process.

    python benchmarks/throughput.py [--model cnn|vgg|resnet|efficientnet_lite0] [--precision 32|bf16]
                                    [--images 4096] [--repeats 3]

Both sides train the same network (same init, same data, same batch size) for one pass over the
same in-memory images; the framework side goes through ChallengeDataModule's dataset and loader
and a Lightning Trainer (normalisation in the model, channels_last), the reference side is the
hand-written loop of ../shared/BASELINES.md. Prints images/s of each and their ratio (framework /
plain; 1.0 = no overhead). One untimed pass of each side warms up first (allocator, oneDNN kernels);
repeats alternate which side goes first, and the ratio is the median over back-to-back pairs: a busy
neighbour slows both sides of a pair alike. `vgg` is experiment=leaderboard's network, `resnet`
experiment=fashion_mnist's (experiment=leaderboard_fast uses it at half the widths); `--precision
bf16` runs both sides under bf16 autocast (the leaderboard's trainer.precision=bf16-mixed).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from visionlab.data import fashion_mnist
from visionlab.data.dataset import ImageDataset
from visionlab.data.images import load_image
from visionlab.models import ImageClassifier, build_cnn
from visionlab.models.backbones import build_timm
from visionlab.models.resnet import build_resnet


def make_net(kind: str, image_size: int):
    torch.manual_seed(0)
    if kind == "cnn":
        return build_cnn(10, image_size=image_size)
    if kind == "vgg":
        return build_cnn(10, image_size=image_size, channels=[64, 128, 256], block_convs=2)
    if kind == "resnet":
        return build_resnet(10, image_size=image_size, channels=[64, 128, 256], block_convs=2)
    return build_timm("efficientnet_lite0", 10)


def data(n: int, image_size: int):
    items = fashion_mnist.read(None, "train")
    classes = sorted(set(items.labels))
    idx = np.random.default_rng(0).choice(len(items), n, replace=False)
    images = [load_image(items.images[i], image_size, "bilinear") for i in idx]
    labels = np.array([classes.index(items.labels[i]) for i in idx])
    return images, labels


def plain_loop(kind, images, labels, image_size, batch_size, precision) -> float:
    """BASELINES.md's reference: tensors in memory, normalise, channels_last, Adam, one epoch."""
    net = make_net(kind, image_size).to(memory_format=torch.channels_last)
    x_all = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y_all = torch.from_numpy(labels)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    start = time.perf_counter()
    perm = torch.randperm(len(x_all))
    for i in range(0, len(x_all), batch_size):
        b = perm[i : i + batch_size]
        x = ((x_all[b].float() / 255 - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(net(x), y_all[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return len(x_all) / (time.perf_counter() - start)


def framework(kind, images, labels, image_size, batch_size, precision) -> float:
    model = ImageClassifier(make_net(kind, image_size), 10, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    loader = DataLoader(ImageDataset(images, labels, image_size, "bilinear"), batch_size=batch_size, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
        precision="bf16-mixed" if precision == "bf16" else "32-true",
    )
    start = time.perf_counter()
    trainer.fit(model, loader)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn", choices=["cnn", "vgg", "resnet", "efficientnet_lite0"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    size = 64 if args.model == "efficientnet_lite0" else 28
    images, labels = data(args.images, size)
    common = (
        args.model,
        images[: 4 * args.batch_size],
        labels[: 4 * args.batch_size],
        size,
        args.batch_size,
        args.precision,
    )
    plain_loop(*common), framework(*common)  # warm-up, untimed
    plain, ours = [], []
    for i in range(args.repeats):
        common = (args.model, images, labels, size, args.batch_size, args.precision)
        if i % 2:
            ours.append(framework(*common))
            plain.append(plain_loop(*common))
        else:
            plain.append(plain_loop(*common))
            ours.append(framework(*common))
    p, o = statistics.median(plain), statistics.median(ours)
    ratios = [b / a for a, b in zip(plain, ours)]  # each pair ran back to back: compare within a pair
    print(
        f"model={args.model} precision={args.precision} images={args.images} px={size} batch={args.batch_size} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"plain PyTorch loop : {p:8.0f} img/s  (runs: {', '.join(f'{v:.0f}' for v in plain)})")
    print(f"visionlab (Lightning): {o:8.0f} img/s  (runs: {', '.join(f'{v:.0f}' for v in ours)})")
    print(
        f"ratio visionlab / plain, median of back-to-back pairs: {statistics.median(ratios):.2f} "
        f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
