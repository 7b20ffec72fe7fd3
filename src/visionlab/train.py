"""run(cfg): build the datamodule, model and trainer from a composed config; fit; test where the
test labels are known; record the run's result for the sweep summary. Returns the best val error (1.0, the
worst, when there is none)."""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from visionlab.data import ChallengeDataModule
from visionlab.data.transforms import build_transforms
from visionlab.errors import InputError
from visionlab.models import ImageClassifier
from visionlab.models.factory import build_net, default_preprocessing
from visionlab.parallel import apply_threads
from visionlab.sweep import write_result, write_summary

log = logging.getLogger(__name__)

WORST_ERR = 1.0  # an error rate cannot be worse
# model.* keys that configure how the classifier trains, not the network's architecture
CLASSIFIER_KEYS = ("output", "label_smoothing", "channels_last", "freeze", "unfreeze_epoch", "backbone_lr_mult",
                   "layer_decay", "mixup", "cutmix", "mixup_off_epoch")


def as_dict(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def build_datamodule(cfg: DictConfig, classes: list[str] | None = None, train: bool = True) -> ChallengeDataModule:
    data = as_dict(cfg.data)
    preprocessing = default_preprocessing(cfg.model)
    if data.get("image_size") is None:
        data["image_size"] = preprocessing["image_size"] if preprocessing else 28
    if data.get("interpolation") is None:
        data["interpolation"] = preprocessing["interpolation"] if preprocessing else "bilinear"
    transform = build_transforms(as_dict(cfg.augmentation).get("transforms")) if train else None
    return ChallengeDataModule(**data, train_transform=transform, classes=classes)


def build_classifier(cfg: DictConfig, classes: list[str], image_size: int, mean, std, load_weights: bool = True,
                     info: dict | None = None) -> ImageClassifier:
    model_cfg = as_dict(cfg.model)
    training = {k: model_cfg.pop(k) for k in CLASSIFIER_KEYS if k in model_cfg}
    net = build_net(model_cfg, len(classes), image_size, load_weights)
    return ImageClassifier(net, len(classes), optimizer=instantiate(cfg.optimizer),
                           scheduler=as_dict(cfg.get("scheduler")), mean=mean, std=std, info=info, **training)


def build_trainer(cfg: DictConfig, has_val: bool) -> pl.Trainer:
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        cb = instantiate(node)
        if not has_val and isinstance(cb, EarlyStopping):
            log.info("No validation split (data.val_fraction=0): early stopping is off.")
            continue
        if not has_val and isinstance(cb, ModelCheckpoint) and cb.monitor:
            cb = instantiate(node, monitor="epoch", mode="max")  # best.ckpt = the latest epoch
        callbacks.append(cb)
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values() if node is not None]
    no_val = {} if has_val else {"limit_val_batches": 0}  # no validation loop over an empty split
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **no_val)


def flat_hparams(cfg: DictConfig) -> dict:
    """Config values TensorBoard's HPARAMS tab can show: group choices plus every leaf value."""
    flat = {}
    if HydraConfig.initialized():
        flat.update({f"{k}": v for k, v in HydraConfig.get().runtime.choices.items()
                     if not str(k).startswith("hydra") and v is not None})
    for group in ("data", "model", "optimizer", "scheduler"):
        for key, value in _leaves(as_dict(cfg.get(group)), group):
            flat[key] = value
    flat["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    flat["seed"] = cfg.get("seed")
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in flat.items()}


def _leaves(node, prefix):
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("_target_", "_partial_"):
                yield from _leaves(v, f"{prefix}.{k}")
    else:
        yield prefix, node


def resume_config(cfg: DictConfig) -> DictConfig:
    """The interrupted run's own saved config, set to continue from its last checkpoint. Plain
    key=value overrides given with resume= (e.g. trainer.max_epochs=20) still apply."""
    run_dir = Path(cfg.paths.output_dir)
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for override in given:
        key, _, value = override.partition("=")
        if key in ("resume", "ckpt_path"):
            continue
        if "." not in key.lstrip("+~"):
            raise ValueError(f"resume= continues a run with its own config; the group override {override!r} would "
                             "change what it trains. Start a new run instead.")
        OmegaConf.update(saved, key.lstrip("+~"), OmegaConf.create({"v": value}).v if value else None, force_add=True)
    saved.resume = str(run_dir)
    saved.ckpt_path = None
    for name in ("last.ckpt", "best.ckpt"):
        candidate = run_dir / "checkpoints" / name
        if candidate.is_file():
            try:
                torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                log.warning("Cannot read %s (%s); trying the next checkpoint.", candidate, e)
                continue
            saved.ckpt_path = str(candidate)
            break
    if saved.ckpt_path is None:
        log.warning("%s has no readable checkpoint (interrupted in its first epoch?): training again from the start "
                    "in the same folder.", run_dir)
    else:
        log.info("Resuming %s from %s", run_dir, saved.ckpt_path)
    return saved


def run(cfg: DictConfig) -> float:
    if cfg.get("resume"):
        cfg = resume_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    result = {"run": out_dir.name, "job": HydraConfig.get().job.get("num", 0) if multirun else 0,
              "overrides": " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "",
              "status": "running", "run_dir": str(out_dir)}
    start = time.time()
    model = trainer = None
    write_result(out_dir, result)  # a run killed outright still shows up in its sweep's summary
    try:
        # First: torch sizes its thread pool when data decoding or the model first use it.
        result["threads"] = apply_threads(cfg.get("threads"),
                                          HydraConfig.get().launcher if HydraConfig.initialized() else None)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = build_datamodule(cfg)
        dm.setup("fit")
        if dm.has_test_images():
            dm.setup("test")  # a broken test image or sample submission fails now, not after training
        pre = default_preprocessing(cfg.model)
        mean, std = (pre["mean"], pre["std"]) if pre else dm.channel_stats()
        info = {"config": as_dict(cfg), "classes": dm.classes, "image_size": dm.image_size,
                "interpolation": dm.interpolation, "mean": mean, "std": std}
        model = build_classifier(cfg, dm.classes, dm.image_size, mean, std, info=info)
        result["params"] = sum(p.numel() for p in model.parameters())
        if getattr(model.net, "visionlab_weights", None):
            result["weights"] = model.net.visionlab_weights
        trainer = build_trainer(cfg, has_val=dm.val_set is not None)
        trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        result["status"] = "diverged" if model.diverged else ("interrupted" if trainer.interrupted else "completed")
        ckpt = trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None else ""
        result["checkpoint"] = best or (ckpt.last_model_path if ckpt is not None else "")
        if result["status"] == "completed":
            if dm.has_test_labels:
                tested = trainer.test(model, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=True)
                result["test_err"] = tested[0].get("test/err") if tested else None
        if result["checkpoint"]:
            # quoted: sweep folders are named like model.bn=true,optimizer=sgd, which Hydra would parse
            print(f"Checkpoint: {result['checkpoint']}\n  submission: python predict.py 'ckpt=\"{result['checkpoint']}\"'",
                  flush=True)
    except KeyboardInterrupt:
        result["status"] = "interrupted"
        raise
    except SystemExit as e:  # Lightning ends Ctrl-C with exit(1) and SIGTERM with a code-less SystemExit
        result["status"] = "interrupted"
        raise SystemExit(e.code or 143) from None
    except Exception as e:
        result["status"] = "failed"
        result["error"] = f"{type(e).__name__}: {e}"
        log.error("Run failed: %s", e if isinstance(e, InputError) else traceback.format_exc())
        if not multirun:
            raise
    finally:
        if result["status"] == "running":  # Ctrl-C / SIGTERM end Lightning's fit with SystemExit
            result["status"] = "interrupted"
        result["wall_time_s"] = round(time.time() - start, 1) + _previous_wall_time(out_dir, cfg)
        if model is not None:
            _summarise_history(model, result)
            result["skipped_images"] = len(dm.skipped)  # dm exists whenever the model does
        write_result(out_dir, result)
        if cfg.get("resume") and (out_dir.parent / "multirun.yaml").is_file():
            write_summary(out_dir.parent)  # the resumed job's sweep summary is current again
        if trainer is not None:
            _log_hparams(trainer, cfg, result)
    best = result.get("best_val_err")
    # No finite val error (diverged at once, failed, no validation split): the worst error rate, finite,
    # so that a sweeper ranks the run last instead of crashing on NaN (hydra-optuna-sweeper, issue 2237).
    return WORST_ERR if best is None else float(best)


def _previous_wall_time(out_dir: Path, cfg: DictConfig) -> float:
    """A resumed run's earlier sessions count towards its wall time."""
    if not cfg.get("resume") or not (out_dir / "result.json").is_file():
        return 0.0
    try:
        return float(json.loads((out_dir / "result.json").read_text()).get("wall_time_s") or 0.0)
    except (OSError, ValueError):
        return 0.0


def _summarise_history(model: ImageClassifier, result: dict) -> None:
    history = model.history
    result["epochs"] = len(history)
    result["history"] = history
    val = [(h["val/err"], h["epoch"]) for h in history if "val/err" in h and math.isfinite(h["val/err"])]
    if val:
        best_err, best_epoch = min(val)
        result["best_val_err"], result["best_epoch"] = best_err, best_epoch + 1  # epochs counted from 1
    train = [h["train/err"] for h in history if "train/err" in h]
    if train:
        result["final_train_err"] = train[-1]


def _log_hparams(trainer: pl.Trainer, cfg: DictConfig, result: dict) -> None:
    metrics = {f"hparams/{k}": float(result[k]) for k in ("best_val_err", "final_train_err", "test_err")
               if result.get(k) is not None}
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger) and metrics:
            lg.log_hyperparams(flat_hparams(cfg), metrics)
            lg.finalize("success")
