"""run(cfg): build the datamodule, model and trainer from a composed config; fit; test where the
test labels are known; record the run's result for the sweep summary. Returns the best val error (1.0, the
worst, when there is none)."""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
import time
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger

from visionlab.commands.preflight import check_train
from visionlab.config import groups
from visionlab.config.trust import check_stored_config
from visionlab.data.batch_augment import BatchAugmentation
from visionlab.data.datamodule import ImageDataModule
from visionlab.data.transforms import build_transforms
from visionlab.errors import ConfigError, InputError, load_failure
from visionlab.models import ImageClassifier
from visionlab.models.preprocessing import resolve_preprocessing
from visionlab.runs.budget import apply_budget, keeper
from visionlab.runs.checkpoints import AtomicCheckpointIO
from visionlab.runs.distributed import child_processes_run, is_main_process
from visionlab.runs.parallel import apply_threads
from visionlab.runs.record import EarlierRun, RunFolderInUse, RunLock, read_result, refuse_earlier_run, write_result
from visionlab.runs.summary import record_refusal, write_summary
from visionlab.training.quiet import quiet_lightning

log = logging.getLogger(__name__)

WORST_ERR = 1.0  # an error rate cannot be worse
BUILT_GROUPS = ("data", "model", "optimizer", "scheduler")  # instantiated from their _target_ (visionlab.config.groups)


def as_dict(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def choice(group: str) -> str | None:
    """The option chosen for `group` (`cnn` for model=cnn), for messages; None outside train.py."""
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def check_group_keys(cfg: DictConfig) -> None:
    """Every built group's keys against its target, before any data is read: a misspelt key in a YAML
    file fails at once, naming it."""
    for group in BUILT_GROUPS:
        groups.check_keys(cfg.get(group), group, choice(group))


def build_datamodule(cfg: DictConfig, classes: list[str] | None = None, train: bool = True) -> ImageDataModule:
    data = as_dict(cfg.data)
    preprocessing = resolve_preprocessing(cfg.model, data)
    data.update(image_size=preprocessing["image_size"], interpolation=preprocessing["interpolation"])
    augmentation = as_dict(cfg.augmentation)
    # augmentation.batched: the transforms run on whole batches in the trainer (visionlab.data.batch_augment)
    transform = build_transforms(augmentation.get("transforms")) if train and not augmentation.get("batched") else None
    return groups.build(data, "data", choice("data"), train_transform=transform, classes=classes)


def build_classifier(
    cfg: DictConfig, classes: list[str], image_size: int, mean, std, load_weights: bool = True, info: dict | None = None
) -> ImageClassifier:
    """The model group's builder, given the optimizer and scheduler partials (scheduler=none: None)."""
    scheduler = cfg.get("scheduler") or {}
    return groups.build(
        cfg.model,
        "model",
        choice("model"),
        num_classes=len(classes),
        image_size=image_size,
        optimizer=groups.build(cfg.optimizer, "optimizer", choice("optimizer")),
        scheduler=groups.build(scheduler, "scheduler", choice("scheduler")) if "_target_" in scheduler else None,
        mean=mean,
        std=std,
        info=info,
        load_weights=load_weights,
    )


def build_trainer(cfg: DictConfig, has_val: bool) -> pl.Trainer:
    callbacks = []
    for node in (cfg.get("callbacks") or {}).values():
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
    extra = {} if has_val else {"limit_val_batches": 0}  # no validation loop over an empty split
    if cfg.model.get("sync_bn"):
        extra["sync_batchnorm"] = _sync_bn_possible(cfg)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **extra)
    trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # whole files or none (visionlab.runs.checkpoints)
    return trainer


def _sync_bn_possible(cfg: DictConfig) -> bool:
    """torch's SyncBatchNorm runs on GPUs only: on CPU processes each keeps its own statistics."""
    if str(cfg.trainer.get("accelerator")) == "cpu" or not torch.cuda.is_available():
        log.warning(
            "model.sync_bn=true needs GPUs (torch's SyncBatchNorm has no CPU kernel): each process "
            "keeps its own BatchNorm statistics."
        )
        return False
    return True


def flat_hparams(cfg: DictConfig) -> dict:
    """Config values TensorBoard's HPARAMS tab can show: group choices plus every leaf value."""
    flat = {}
    if HydraConfig.initialized():
        flat.update(
            {
                f"{k}": v
                for k, v in HydraConfig.get().runtime.choices.items()
                if not str(k).startswith("hydra") and v is not None
            }
        )
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
    key=value overrides given with resume= (e.g. trainer.max_epochs=20) still apply, typed as Hydra
    types them (10 an int, 0.001 a float, null None)."""
    run_dir = Path(cfg.paths.output_dir)
    # a folder of a run from before the groups had a _target_ resumes too
    saved = OmegaConf.create(groups.upgrade(OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))))
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for override in OverridesParser.create().parse_overrides(list(given)):
        key = override.key_or_group
        if key in ("resume", "ckpt_path"):
            continue
        text = override.input_line or key
        if "." not in key:
            raise ConfigError(
                f"resume= continues a run with its own config; the group override {text!r} would "
                "change what it trains. Start a new run instead."
            )
        if override.is_sweep_override():
            raise ConfigError(f"resume= continues one run; {text!r} gives {key} several values. Give one.")
        if override.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(saved, parent)
            if node is not None and leaf in node:
                del node[leaf]
        else:
            OmegaConf.update(saved, key, override.value(), force_add=True)
    # the stored config is data (a run folder may come from anyone): only allow-listed targets are built
    check_stored_config(saved, str(run_dir / ".hydra" / "config.yaml"))
    saved.resume = str(run_dir)
    saved.ckpt_path = None
    recorded = read_result(run_dir).get("epochs")
    done = [recorded] if isinstance(recorded, int) and not isinstance(recorded, bool) else []  # epochs trained
    for name in ("last.ckpt", "best.ckpt"):
        candidate = run_dir / "checkpoints" / name
        if candidate.is_file():
            try:
                state = torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                log.warning("Cannot read %s (%s); trying the next checkpoint.", candidate, load_failure(e, candidate))
                continue
            if "optimizer_states" not in state:  # best.ckpt holds the weights only (visionlab.runs.checkpoints)
                log.warning("%s has no optimizer state to resume from.", candidate)
                continue
            saved.ckpt_path = str(candidate)
            progress = state.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
            epoch = progress.get("processed", state["epoch"] + 1 if isinstance(state.get("epoch"), int) else None)
            done += [epoch] if isinstance(epoch, int) else []
            break
    planned = (saved.get("trainer") or {}).get("max_epochs")
    if done and isinstance(planned, int) and 1 <= planned < max(done) and not saved.get("budget"):
        named = any(str(o).startswith("trainer.max_epochs=") for o in given)
        raise ConfigError(  # Lightning would train nothing and call it complete
            f"trainer.max_epochs={planned}{'' if named else ' (its config)'} is below the {max(done)} epochs "
            f"{run_dir} has trained already: resume= continues a run, it cannot take epochs back. Give "
            f"trainer.max_epochs above {max(done)} to train it longer, or start a new run."
        )
    if saved.ckpt_path is None:
        log.warning(
            "%s has no readable checkpoint (interrupted in its first epoch?): training again from the start "
            "in the same folder.",
            run_dir,
        )
    else:
        log.info("Resuming %s from %s", run_dir, saved.ckpt_path)
    return saved


def run(cfg: DictConfig) -> float:
    quiet_lightning(bool(cfg.get("verbose")))
    if cfg.get("resume"):
        cfg = resume_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # under DDP every process runs this function; rank 0 keeps the record
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        # one process per run folder (DDP's other ranks work under rank 0's hold): taken before anything in
        # it is read or written; then a folder holding another run's record is never trained over
        lock = RunLock(out_dir) if main else None
        if main and not cfg.get("resume"):
            refuse_earlier_run(out_dir, lock)
    except (RunFolderInUse, EarlierRun) as e:
        if not multirun:
            raise
        return _skip_job(out_dir, e)  # the sweep goes on with its other jobs
    previous = read_result(out_dir) if cfg.get("resume") else {}  # what a failed resume leaves as it was
    if _complete(cfg, previous):  # nothing to continue: say so, instead of testing it again silently
        print(
            f"Run folder: {out_dir}\n{out_dir} is complete ({previous['epochs']} of {cfg.trainer.max_epochs} epochs, best val err "
            f"{previous.get('best_val_err')}); nothing to continue. To train it longer: python train.py "
            f"{shlex.quote(f'resume={out_dir}')} trainer.max_epochs=<more>",
            flush=True,
        )
        if lock is not None:
            lock.release()
        best = previous.get("best_val_err")
        return WORST_ERR if best is None else float(best)
    result = {
        "run": out_dir.name,
        "job": HydraConfig.get().job.get("num", 0) if multirun else 0,
        "overrides": " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "",
        "status": "running",
        "run_dir": str(out_dir),
    }
    start = time.time()
    model = trainer = None
    if main:
        write_result(out_dir, result)  # a run killed outright still shows up in its sweep's summary
        if not multirun:
            print(f"Run folder: {out_dir}", flush=True)
    try:
        # First: torch sizes its thread pool when data decoding or the model first use it.
        result["threads"] = apply_threads(
            cfg.get("threads"), HydraConfig.get().launcher if HydraConfig.initialized() else None
        )
        check_train(cfg)  # for sweep jobs, which the entry point does not check (they fail one by one)
        check_group_keys(cfg)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        augmentation = as_dict(cfg.augmentation)
        batch_augmentation = (
            BatchAugmentation(augmentation.get("transforms") or []) if augmentation.get("batched") else None
        )  # an unsupported transform fails now, before the data
        dm = build_datamodule(cfg)
        # one pass over training and test data (a broken test image fails now, not after training),
        # so that one error lists every problem of both
        dm.setup(None if dm.has_test_images() else "fit")
        pre = resolve_preprocessing(cfg.model, as_dict(cfg.data), dm.channel_stats)  # stored in the checkpoint
        info = {"config": as_dict(cfg), "classes": dm.classes, **pre}
        model = build_classifier(cfg, dm.classes, pre["image_size"], pre["mean"], pre["std"], info=info)
        result["params"] = sum(p.numel() for p in model.parameters())
        if getattr(model.net, "visionlab_weights", None):
            result["weights"] = model.net.visionlab_weights
        budget = apply_budget(cfg, model, dm, start, previous)  # sets trainer.max_epochs when budget= is given
        if budget:
            result["budget"] = budget
        trainer = build_trainer(cfg, has_val=dm.val_set is not None)
        if budget:
            # a resumed run's budget already spent its earlier wall time
            trainer.callbacks.append(keeper(budget, start - float(previous.get("wall_time_s") or 0.0)))
        if batch_augmentation is not None:
            trainer.callbacks.insert(0, batch_augmentation)  # before the callbacks that look at the batch
        if cfg.get("tune"):  # tune=lr_find: a range test instead of training (visionlab.training.tuning)
            groups.build(
                cfg.tune,
                "tune",
                choice("tune"),
                trainer=trainer,
                model=model,
                datamodule=dm,
                out_dir=out_dir,
                result=result,
            )
        else:
            with child_processes_run(out_dir) if trainer.world_size > 1 else contextlib.nullcontext():
                fit_and_test(trainer, model, dm, cfg.get("ckpt_path"), result)
        debug = (HydraConfig.initialized() and HydraConfig.get().runtime.choices.get("debug")) or cfg.trainer.get(
            "fast_dev_run"
        )
        if main and result["checkpoint"] and result["status"] == "completed" and not debug:  # worth submitting
            # quoted: sweep folders are named like model.bn=true,optimizer=sgd, which Hydra would parse
            print(
                f"Checkpoint: {result['checkpoint']}\n  submission: python predict.py 'ckpt=\"{result['checkpoint']}\"'",
                flush=True,
            )
    except KeyboardInterrupt:
        result["status"] = "interrupted"
        raise
    except SystemExit as e:  # Lightning ends Ctrl-C with exit(1) and SIGTERM with a code-less SystemExit
        result["status"] = "interrupted"
        raise SystemExit(e.code or 143) from None
    except Exception as e:
        result["status"] = "failed"
        result["error"] = f"{type(e).__name__}: {e}"
        if not multirun:
            raise  # the entry point or Hydra prints it, once
        log.error("Run failed: %s", e if isinstance(e, InputError) else traceback.format_exc())  # the sweep goes on
    finally:
        if result["status"] == "running":  # Ctrl-C / SIGTERM end Lightning's fit with SystemExit
            result["status"] = "interrupted"
        if result["status"] == "interrupted" and main:
            print(f"Interrupted. Continue with: python train.py {shlex.quote(f'resume={out_dir}')}", flush=True)
        result["wall_time_s"] = round(time.time() - start, 1) + float(previous.get("wall_time_s") or 0.0)
        if model is not None:
            _summarise_history(model, result)
            result["skipped_images"] = len(dm.skipped)  # dm exists whenever the model does
        if result["status"] == "failed" and previous.get("status") not in (None, "unreadable"):
            log.warning(
                "The resume failed; %s keeps its earlier record (status %s).",
                out_dir / "result.json",
                previous["status"],
            )
            result = previous
        if main:
            write_result(out_dir, result)
            if cfg.get("resume") and (out_dir.parent / "multirun.yaml").is_file():
                write_summary(out_dir.parent)  # the resumed job's sweep summary is current again
        if trainer is not None and result is not previous:
            _log_hparams(trainer, cfg, result)
        if lock is not None:
            lock.release()
    best = result.get("best_val_err")
    # No finite val error (diverged at once, failed, no validation split): the worst error rate, finite,
    # so that a sweeper ranks the run last instead of crashing on NaN (hydra-optuna-sweeper, issue 2237).
    return WORST_ERR if best is None else float(best)


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


def _skip_job(out_dir: Path, refusal: InputError) -> float:
    """A sweep job whose folder is in use or holds a run already: one line, the folder left as it is."""
    if isinstance(refusal, EarlierRun) and refusal.finished:
        log.info("Skipped %s: it holds a finished run already (kept as it is).", out_dir)
        best = refusal.record.get("best_val_err")
        return WORST_ERR if best is None else float(best)
    log.error("Refused %s: %s", out_dir, refusal)
    record_refusal(out_dir, str(refusal))  # the sweep's end names it (the folder itself is another run's)
    return WORST_ERR


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
