"""run(cfg): build the datamodule, model and trainer from a composed config (visionlab.training.build);
fit; test where the test labels are known; all inside the run's record (visionlab.runs.record), which
the sweep summary reads. Returns the best val error (1.0, the worst, when there is none)."""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger

from visionlab.commands.preflight import check_train, single_run
from visionlab.commands.resume import resume_config
from visionlab.config import groups
from visionlab.data.batch_augment import BatchAugmentation
from visionlab.data.datamodule import ImageDataModule
from visionlab.errors import InputError
from visionlab.models import ImageClassifier
from visionlab.models.preprocessing import resolve_preprocessing
from visionlab.runs.budget import apply_budget, keeper
from visionlab.runs.distributed import child_processes_run, is_main_process
from visionlab.runs.folder import EarlierRun, RunFolderInUse
from visionlab.runs.parallel import apply_threads
from visionlab.runs.record import WORST_ERR, RunRecord
from visionlab.runs.summary import record_refusal
from visionlab.training.build import (
    as_dict,
    build_classifier,
    build_datamodule,
    build_trainer,
    check_group_keys,
    choice,
    flat_hparams,
)
from visionlab.training.quiet import quiet_lightning

log = logging.getLogger(__name__)


@dataclass
class Built:
    """What a run has built so far (a run can stop at any step: its record says what there was)."""

    dm: ImageDataModule | None = None
    model: ImageClassifier | None = None
    trainer: pl.Trainer | None = None


def run(cfg: DictConfig) -> float:
    quiet_lightning(bool(cfg.get("verbose")))
    if cfg.get("resume"):
        cfg = resume_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    sweep_job = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        record = RunRecord(out_dir, is_main_process(), bool(cfg.get("resume")), sweep_job, _fields(sweep_job))
    except (RunFolderInUse, EarlierRun) as e:
        if not sweep_job:
            raise
        return _skip_job(out_dir, e)  # the sweep goes on with its other jobs
    if _complete(cfg, record.previous):  # nothing to continue: say so, instead of testing it again silently
        record.release()
        return _say_complete(cfg, out_dir, record.previous)
    built = Built()
    with record:
        try:
            train(cfg, record, built)
        finally:
            _summarise(built, record.result)
    if built.trainer is not None and record.kept_new:
        _log_hparams(built.trainer, cfg, record.result)
    return record.best_val_err()


def train(cfg: DictConfig, record: RunRecord, built: Built) -> None:
    """Build, then fit and test (or tune=: a learning-rate range test instead); the outcome goes into
    record.result."""
    result = record.result
    # First: torch sizes its thread pool when data decoding or the model first use it.
    result["threads"] = apply_threads(
        cfg.get("threads"), HydraConfig.get().launcher if HydraConfig.initialized() else None
    )
    if not single_run():  # train.py checked a single run already; sweep jobs fail one by one, here
        check_train(cfg)
    check_group_keys(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    augmentation = as_dict(cfg.augmentation)
    batched = BatchAugmentation(augmentation.get("transforms") or []) if augmentation.get("batched") else None
    built.dm = dm = build_datamodule(cfg)  # (an unsupported batch transform failed above, before the data)
    # one pass over training and test data (a broken test image fails now, not after training), so that one
    # error lists every problem of both
    dm.setup(None if dm.has_test_images() else "fit")
    built.model = model = _classifier(cfg, dm)
    result["params"] = sum(p.numel() for p in model.parameters())
    if getattr(model.net, "visionlab_weights", None):
        result["weights"] = model.net.visionlab_weights
    budget = apply_budget(cfg, model, dm, record.start, record.previous)  # sets trainer.max_epochs for budget=
    if budget:
        result["budget"] = budget
    built.trainer = trainer = build_trainer(cfg, has_val=dm.val_set is not None)
    if budget:  # a resumed run's budget already spent its earlier wall time
        trainer.callbacks.append(keeper(budget, record.start - float(record.previous.get("wall_time_s") or 0.0)))
    if batched is not None:
        trainer.callbacks.insert(0, batched)  # before the callbacks that look at the batch
    if cfg.get("tune"):  # tune=lr_find (visionlab.training.tuning)
        groups.build(
            cfg.tune,
            "tune",
            choice("tune"),
            trainer=trainer,
            model=model,
            datamodule=dm,
            out_dir=record.out_dir,
            result=result,
        )
        return
    with child_processes_run(record.out_dir) if trainer.world_size > 1 else contextlib.nullcontext():
        fit_and_test(trainer, model, dm, cfg.get("ckpt_path"), result)
    _say_checkpoint(cfg, record)


def _classifier(cfg: DictConfig, dm: ImageDataModule) -> ImageClassifier:
    """The model, with the preprocessing its checkpoint records (predict and export read it back)."""
    pre = resolve_preprocessing(cfg.model, as_dict(cfg.data), dm.channel_stats)
    info = {"config": as_dict(cfg), "classes": dm.classes, **pre}
    return build_classifier(cfg, dm.classes, pre["image_size"], pre["mean"], pre["std"], info=info)


def fit_and_test(
    trainer: pl.Trainer, model: ImageClassifier, dm: ImageDataModule, ckpt_path: str | None, result: dict
) -> None:
    """Train, then test the best checkpoint where the test labels are known; the outcome goes into result."""
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    result["status"] = "diverged" if model.diverged else ("interrupted" if trainer.interrupted else "completed")
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None else ""
    result["checkpoint"] = best or (ckpt.last_model_path if ckpt is not None else "")
    if result["status"] == "completed" and dm.has_test_labels:
        tested = trainer.test(model, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=True)
        result["test_err"] = tested[0].get("test/err") if tested else None


def _fields(sweep_job: bool) -> dict:
    """What a run's record says from the start: its job number in the sweep and its overrides."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    return {
        "job": hydra.job.get("num", 0) if sweep_job else 0,
        "overrides": " ".join(hydra.overrides.task) if hydra is not None else "",
    }


def _say_checkpoint(cfg: DictConfig, record: RunRecord) -> None:
    result = record.result
    debug = (HydraConfig.initialized() and HydraConfig.get().runtime.choices.get("debug")) or cfg.trainer.get(
        "fast_dev_run"
    )
    if record.main and result["checkpoint"] and result["status"] == "completed" and not debug:  # worth submitting
        # quoted: sweep folders are named like model.bn=true,optimizer=sgd, which Hydra would parse
        print(
            f"Checkpoint: {result['checkpoint']}\n  submission: python predict.py 'ckpt=\"{result['checkpoint']}\"'",
            flush=True,
        )


def _complete(cfg: DictConfig, previous: dict) -> bool:
    """A resumed run that completed, resumed with nothing but resume= (an override asks for a change:
    it goes through the usual checks and training)."""
    if not cfg.get("resume") or previous.get("status") != "completed":
        return False
    given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    if any(not str(o).startswith("resume=") for o in given):
        return False
    done, planned = previous.get("epochs"), (cfg.get("trainer") or {}).get("max_epochs")
    return isinstance(done, int) and planned is not None and 0 <= planned <= done and not cfg.get("budget")


def _say_complete(cfg: DictConfig, out_dir: Path, previous: dict) -> float:
    print(
        f"Run folder: {out_dir}\n{out_dir} is complete ({previous['epochs']} of {cfg.trainer.max_epochs} epochs, best val err "
        f"{previous.get('best_val_err')}); nothing to continue. To train it longer: python train.py "
        f"{shlex.quote(f'resume={out_dir}')} trainer.max_epochs=<more>",
        flush=True,
    )
    best = previous.get("best_val_err")
    return WORST_ERR if best is None else float(best)


def _skip_job(out_dir: Path, refusal: InputError) -> float:
    """A sweep job whose folder is in use or holds a run already: one line, the folder left as it is."""
    if isinstance(refusal, EarlierRun) and refusal.finished:
        log.info("Skipped %s: it holds a finished run already (kept as it is).", out_dir)
        best = refusal.record.get("best_val_err")
        return WORST_ERR if best is None else float(best)
    log.error("Refused %s: %s", out_dir, refusal)
    record_refusal(out_dir, str(refusal))  # the sweep's end names it (the folder itself is another run's)
    return WORST_ERR


def _summarise(built: Built, result: dict) -> None:
    """The epochs' history, the best epoch and the skipped images, of whatever was trained."""
    if built.model is None:
        return
    history = built.model.history
    result["epochs"] = len(history)
    result["history"] = history
    val = [(h["val/err"], h["epoch"]) for h in history if "val/err" in h and math.isfinite(h["val/err"])]
    if val:
        best_err, best_epoch = min(val)
        result["best_val_err"], result["best_epoch"] = best_err, best_epoch + 1  # epochs counted from 1
    train_err = [h["train/err"] for h in history if "train/err" in h]
    if train_err:
        result["final_train_err"] = train_err[-1]
    result["skipped_images"] = len(built.dm.skipped)  # the datamodule exists whenever the model does


def _log_hparams(trainer: pl.Trainer, cfg: DictConfig, result: dict) -> None:
    metrics = {
        f"hparams/{k}": float(result[k])
        for k in ("best_val_err", "final_train_err", "test_err")
        if result.get(k) is not None
    }
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger) and metrics:
            lg.log_hyperparams(flat_hparams(cfg), metrics)
            lg.finalize("success")
        elif isinstance(lg, MLFlowLogger):  # logger=mlflow: the same table in its store
            lg.log_hyperparams(flat_hparams(cfg))
            lg.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()})
            lg.finalize("success" if result.get("status") == "completed" else "failed")
