"""run(cfg): a trained checkpoint -> a self-contained model file for serving without visionlab.

The exported model takes uint8 RGB images (B, 3, H, W) at the checkpoint's image size and returns
class probabilities (B, classes); the normalisation (mean/std) and output activation are inside it,
the weights too, and the batch size is free. Beside it, <model>.json names the classes and the
resizing the images need first (image size, PIL interpolation), so that a server reproduces
predict.py. Formats: onnx (model.onnx) and torchscript (model.pt, torch.jit.load)."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from visionlab.commands.predict import CheckpointError, expand_checkpoints, load_checkpoint, restore_model
from visionlab.errors import ConfigError, InputError
from visionlab.models.preprocessing import stored_preprocessing
from visionlab.runs.atomic import refuse_kept, replace_atomically, write_bytes_atomically

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT, OUTPUT = "images", "probabilities"


class ProbabilityModel(nn.Module):
    """uint8 images (B, 3, H, W) -> class probabilities, as ImageClassifier.probabilities(model(x))
    computes them in predict.py, with nothing but the network and two buffers inside (the
    LightningModule's metrics and optimiser settings stay out of the file)."""

    def __init__(self, classifier):
        super().__init__()
        self.net = classifier.net
        self.register_buffer("mean", classifier.mean.detach().clone())  # (1, 3, 1, 1), on the 0-255 scale
        self.register_buffer("std", classifier.std.detach().clone())
        self.sigmoid = classifier.output.startswith("sigmoid")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net((images.float() - self.mean) / self.std)
        if self.sigmoid:  # normalised sigmoid scores, as ImageClassifier.probabilities
            p = torch.sigmoid(logits)
            return p / p.sum(1, keepdim=True).clamp_min(1e-12)
        return logits.softmax(1)


def one_checkpoint(ckpt) -> Path:
    if isinstance(ckpt, (list, tuple, ListConfig)):
        raise CheckpointError(f"ckpt={list(ckpt)} names several checkpoints; export one model at a time.")
    paths = expand_checkpoints([ckpt])
    if len(paths) != 1:
        raise CheckpointError(
            f"ckpt={str(ckpt)!r} is a sweep folder of {len(paths)} jobs; export one model: give "
            "one job's folder or its checkpoints/best.ckpt."
        )
    return paths[0]


def metadata(info: dict, fmt: str, model_file: Path, ckpt_path: Path, opset: int | None) -> dict:
    pre = stored_preprocessing(info)
    size = pre["image_size"]
    return {
        "format": fmt,
        "model": model_file.name,
        "checkpoint": str(Path(ckpt_path).resolve()),
        "input": {
            "name": INPUT,
            "dtype": "uint8",
            "shape": ["batch", 3, size, size],
            "channels": "RGB",
            "range": [0, 255],
        },
        "output": {
            "name": OUTPUT,
            "dtype": "float32",
            "shape": ["batch", len(info["classes"])],
            "meaning": "class probabilities, in the order of classes",
        },
        "classes": list(info["classes"]),
        "preprocessing": {
            "image_size": size,
            "interpolation": pre["interpolation"],
            "resize": f"convert to RGB, then resize the whole image to {size}x{size} with PIL's "
            f"{pre['interpolation']} filter (no crop, aspect ratio not kept), as visionlab does",
            "mean": list(pre["mean"]),
            "std": list(pre["std"]),
            "normalization": "inside the model: (pixel / 255 - mean) / std; feed raw uint8 pixels",
        },
        **({"opset": opset} if opset is not None else {}),
        "torch": torch.__version__,
    }


@contextlib.contextmanager
def _quiet():
    """Both exporters below are deprecated in torch 2.14 and say so on every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    # The TorchScript-based exporter (dynamo=False): torch 2.14's default, the dynamo exporter, needs
    # the onnxscript package, which torch does not install; this one needs nothing but torch, works
    # offline and handles convnets and timm backbones. Switch to dynamo=True (and add onnxscript to
    # the export extra) when torch drops it.
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            export_params=True,
            opset_version=int(opset),
            input_names=[INPUT],
            output_names=[OUTPUT],
            do_constant_folding=True,
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with _quiet():  # torch.jit.trace is deprecated too, and still the way to a file torch.jit.load reads
        torch.jit.trace(model, example, check_trace=False).save(str(path))


def run_exported(path: Path, fmt: str, images: torch.Tensor) -> np.ndarray:
    """Probabilities from the exported file (onnxruntime for ONNX, torch.jit for TorchScript)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT], {INPUT: images.numpy()})[0]
    with _quiet():
        return torch.jit.load(str(path), map_location="cpu")(images).detach().numpy()


def run(cfg: DictConfig) -> Path:
    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.get("ckpt"):
        raise CheckpointError(
            "no checkpoint given. Usage: python export.py ckpt=PATH format=onnx|torchscript; "
            "training prints the path of its best.ckpt."
        )
    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"format={cfg.format!r} is not one of {list(FORMATS)}.")
    ckpt_path = one_checkpoint(cfg.ckpt)
    ckpt = load_checkpoint(ckpt_path)
    info = ckpt["visionlab"]
    out = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / f"model{FORMATS[fmt]}"
    meta_path = out.with_suffix(".json")
    if meta_path == out:
        raise InputError(f"output={str(out)!r} would be overwritten by its own .json; give a .onnx or .pt file.")
    for path in (out, meta_path):
        refuse_kept(path, bool(cfg.overwrite))
    out.parent.mkdir(parents=True, exist_ok=True)

    model = ProbabilityModel(restore_model(ckpt)).eval()
    size = stored_preprocessing(info)["image_size"]
    example = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def write(tmp: Path) -> None:  # never a half-written model under the real name
        with torch.no_grad():
            if fmt == "onnx":
                export_onnx(model, example, tmp, cfg.get("opset", 17))
            else:
                export_torchscript(model, example, tmp)

    replace_atomically(out, write)
    meta = metadata(info, fmt, out, ckpt_path, cfg.get("opset", 17) if fmt == "onnx" else None)
    write_bytes_atomically(meta_path, json.dumps(meta, indent=2).encode())
    print(
        f"Exported {fmt} ({len(info['classes'])} classes, uint8 images 3x{size}x{size} -> probabilities): {out}\n"
        f"  classes and preprocessing: {meta_path}",
        flush=True,
    )
    if cfg.get("check", True):
        check(model, out, fmt, size)
    return out


def check(model: nn.Module, path: Path, fmt: str, size: int) -> None:
    """Runs the written file on a batch of another size than the one it was traced with (the batch
    is dynamic) and compares with PyTorch."""
    images = torch.randint(0, 256, (5, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    try:
        got = run_exported(path, fmt, images)
    except ImportError:
        log.warning("onnxruntime is not installed: the exported file was not checked (pip install -e '.[export]').")
        return
    with torch.no_grad():
        want = model(images).numpy()
    diff = float(np.abs(got - want).max())
    print(
        f"  check: {fmt} and PyTorch agree on 5 images to {diff:.1e} (max abs difference of probabilities)", flush=True
    )
    if not np.allclose(got, want, atol=1e-4):
        raise RuntimeError(f"the exported model disagrees with PyTorch by {diff:.3g}: {path} is not trustworthy.")
