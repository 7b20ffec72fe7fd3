"""The parts of the pipeline around the training step, each measured against what it feeds.

    python benchmarks/pipeline.py loader  [--images 4096] [--repeats 3] [--augmentation basic] [--threads N]
    python benchmarks/pipeline.py predict [--train "data.subset=300 trainer.max_epochs=1"]
    python benchmarks/pipeline.py startup [--repeats 3]

loader: the training loader alone with the augmentation group (per image, albumentations, as
  data.num_workers=0 and =2 run it; and augmentation.batched=true: plain loader + the batched torch
  version) against the default CNN's training img/s through Lightning without augmentation, in the
  same process, order alternating; prints img/s and loader / training ratios (>= 2: the loader is
  never the bottleneck).
predict: trains a small checkpoint, then runs predict.py's run() on the official 10k Fashion-MNIST
  test split in a fresh process: img/s (reading, decoding, forward, writing the CSV) and the peak
  resident memory (getrusage maxrss) before and after predicting.
startup: `python train.py --help`, `import visionlab.commands.train`, and a small training run's time to the
  start of fit and to the end of its first training step, each from the process's spawn (median of
  --repeats), and the slowest imports of the training path (python -X importtime).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
BATCH = 128


# ----------------------------------------------------------------------------- loader
def loader_img_s(dataset, workers: int = 0, augment=None) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers)
    start = time.perf_counter()
    n = 0
    for x, _ in loader:
        if augment is not None:
            x = augment(x)
        n += len(x)
    return n / (time.perf_counter() - start)


def cmd_loader(args) -> None:
    from omegaconf import OmegaConf
    from throughput import data, framework

    from visionlab.data.batch_augment import BatchAugment
    from visionlab.data.dataset import ImageDataset
    from visionlab.data.transforms import build_transforms
    from visionlab.runs.parallel import apply_threads
    from visionlab.training.quiet import quiet_lightning

    quiet_lightning()
    threads = apply_threads(args.threads, None)
    group = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "augmentation" / f"{args.augmentation}.yaml"))
    images, labels = data(args.images, 28)
    per_image = ImageDataset(images, labels, 28, "bilinear", build_transforms(group["transforms"]))
    plain = ImageDataset(images, labels, 28, "bilinear")
    batched = BatchAugment(group["transforms"])
    sides = {
        "training (Lightning, default CNN, no augmentation)": lambda: framework("cnn", images, labels, 28, BATCH, "32"),
        f"loader, augmentation={args.augmentation} (albumentations per image)": lambda: loader_img_s(per_image),
        f"loader, augmentation={args.augmentation} data.num_workers=2": lambda: loader_img_s(per_image, workers=2),
        f"loader, augmentation={args.augmentation} augmentation.batched=true": lambda: loader_img_s(
            plain, augment=batched
        ),
    }
    small = ImageDataset(images[: 4 * BATCH], labels[: 4 * BATCH], 28, "bilinear")
    framework("cnn", images[: 4 * BATCH], labels[: 4 * BATCH], 28, BATCH, "32"), loader_img_s(small, augment=batched)
    runs = {name: [] for name in sides}
    for i in range(args.repeats):
        for name in list(sides) if i % 2 == 0 else list(sides)[::-1]:
            runs[name].append(sides[name]())
    print(
        f"images={args.images} batch={BATCH} threads={threads} repeats={args.repeats} "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    names = list(sides)
    train = runs[names[0]]
    for name in names:
        line = f"{name:62s} {statistics.median(runs[name]):8.0f} img/s"
        if name != names[0]:
            ratios = [b / a for a, b in zip(train, runs[name])]
            line += (
                f"   loader / training {statistics.median(ratios):5.2f} (runs: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
        print(line)


# ----------------------------------------------------------------------------- predict
def cmd_predict(args) -> None:
    with tempfile.TemporaryDirectory(prefix="vl_pipeline_") as tmp:
        run_dir = Path(tmp) / "run"
        train = subprocess.run(
            [
                sys.executable,
                str(REPO / "train.py"),
                *args.train.split(),
                "logger=csv",
                "callbacks.interpretation=null",
                f"hydra.run.dir={run_dir}",
            ],
            capture_output=True,
            text=True,
            env=_env(),
        )
        if train.returncode:
            sys.exit(f"error: training the checkpoint failed:\n{train.stderr[-3000:]}")
        child = subprocess.run(
            [sys.executable, __file__, "_predict_child", str(run_dir), str(Path(tmp) / "sub.csv")],
            capture_output=True,
            text=True,
            env=_env(),
        )
        if child.returncode:
            sys.exit(f"error: predicting failed:\n{child.stderr[-3000:]}")
        print(f"checkpoint: python train.py {args.train}")
        print(child.stdout.strip())


def predict_child(run_dir: str, output: str) -> None:
    """In a fresh process: predict the 10k split, timing run() alone; peak RSS before and after."""
    import resource

    from hydra import compose, initialize_config_dir

    from visionlab.commands.predict import run
    from visionlab.commands.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "predict",
            overrides=[
                f"ckpt={run_dir}",
                f"output={output}",
                "data=fashion_mnist",
                "data_group=fashion_mnist",
                f"paths.output_dir={Path(output).parent}",
                "device=cpu",
            ],
        )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    run(cfg)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = sum(1 for _ in open(output)) - 1
    print(
        f"predict: {rows} images (official 10k test split) in {seconds:.2f} s = {rows / seconds:.0f} img/s "
        f"(reading, decoding, forward, CSV)"
    )
    print(
        f"peak resident memory: {after:.0f} MiB (after imports, before predicting: {before:.0f} MiB; "
        f"predicting added {after - before:.0f} MiB)"
    )


# ----------------------------------------------------------------------------- startup
def _env() -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)  # FirstStep below
    return env


def _timed(cmd: list[str], cwd: str) -> tuple[float, str]:
    start = time.time()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env())
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return start, proc.stdout


class FirstStep:
    """A Lightning callback (built lazily: this module stays light) printing when fit starts and when
    the first training step ends, as Unix times."""

    def __new__(cls):
        import pytorch_lightning as pl

        class Stamp(pl.Callback):
            def on_fit_start(self, trainer, pl_module):
                print(f"FIT_START {time.time():.3f}", flush=True)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if batch_idx == 0 and trainer.current_epoch == 0:
                    print(f"FIRST_STEP {time.time():.3f}", flush=True)

        return Stamp()


def cmd_startup(args) -> None:
    figures = {
        "python train.py --help": [],
        "python -c 'import visionlab.commands.train'": [],
        "train: to the start of fit": [],
        "train: to the end of the first step": [],
    }
    with tempfile.TemporaryDirectory(prefix="vl_startup_") as cwd:
        for _ in range(args.repeats):
            start, _ = _timed([sys.executable, str(REPO / "train.py"), "--help"], cwd)
            figures["python train.py --help"].append(time.time() - start)
            start, _ = _timed([sys.executable, "-c", "import visionlab.commands.train"], cwd)
            figures["python -c 'import visionlab.commands.train'"].append(time.time() - start)
            start, out = _timed(
                [
                    sys.executable,
                    str(REPO / "train.py"),
                    "data.subset=300",
                    "trainer.max_epochs=1",
                    "trainer.limit_train_batches=1",
                    "callbacks.interpretation=null",
                    "logger=csv",
                    "+callbacks.first_step._target_=pipeline.FirstStep",
                ],
                cwd,
            )
            stamps = dict(line.split() for line in out.splitlines() if line.startswith(("FIT_START", "FIRST_STEP")))
            figures["train: to the start of fit"].append(float(stamps["FIT_START"]) - start)
            figures["train: to the end of the first step"].append(float(stamps["FIRST_STEP"]) - start)
        imports = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import visionlab.commands.train"],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=_env(),
        ).stderr
    print(f"from process spawn, median of {args.repeats} (load average {os.getloadavg()[0]:.1f}):")
    for name, values in figures.items():
        print(f"  {name:40s} {statistics.median(values):6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    top = []
    for line in imports.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[1].isdigit() and parts[2] and not parts[2].startswith(" "):
            top.append((int(parts[1]) / 1e6, parts[2]))
    top = sorted((t for t in top if "." not in t[1]), reverse=True)[:6]  # top-level packages, cumulative
    print(
        "slowest top-level imports of `import visionlab.commands.train` (cumulative): "
        + ", ".join(f"{name} {s:.2f} s" for s, name in top)
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_predict_child":
        return predict_child(sys.argv[2], sys.argv[3])
    sys.path.insert(0, str(HERE))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("loader", help="the training loader with augmentation vs the CNN's training img/s")
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--augmentation", default="basic")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores, as train.py)")
    p = sub.add_parser("predict", help="predict img/s and peak memory on the official 10k test split")
    p.add_argument(
        "--train", default="data.subset=300 trainer.max_epochs=1", help="train.py overrides of the checkpoint"
    )
    p = sub.add_parser("startup", help="time to --help, to the first training step; slowest imports")
    p.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    {"loader": cmd_loader, "predict": cmd_predict, "startup": cmd_startup}[args.command](args)


if __name__ == "__main__":
    main()
