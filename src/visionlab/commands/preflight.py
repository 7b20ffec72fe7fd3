"""Checks of a composed config that need neither the data nor the model: the entry points run them
before the seconds of importing Lightning and loading images, so a typo fails at once, in one line.
Also the clean-up of the folder Hydra made for a run that stopped at such a check, and the check, from
the command line, that the folder Hydra would make can be made."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from visionlab.config.values import TYPED_GROUPS, check_loader_values, target_numbers, type_error, wrong_type
from visionlab.errors import ConfigError, InputError, load_failure
from visionlab.runs.atomic import nearest_existing, refuse_kept
from visionlab.runs.budget import check_budget

NO_GPU = "no CUDA GPU visible; use trainer.accelerator=auto or cpu"
NON_NEGATIVE = ("lr", "weight_decay", "momentum")


def check_data_root(cfg: DictConfig) -> None:
    data = cfg.get("data")
    if data is None or "root" not in data.keys():  # (`in data` is False for a ??? value)
        return
    if OmegaConf.is_missing(data, "root"):
        raise ConfigError("data.root is not set: give the folder of your challenge download, data.root=DIR.")
    root = data.get("root")
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise InputError(
            f"data.root={str(root)!r} is not a folder. Give the folder of your challenge download "
            "(the other data paths are relative to it)."
        )


def check_accelerator(cfg: DictConfig) -> None:
    accelerator = str((cfg.get("trainer") or {}).get("accelerator") or "").lower()
    if accelerator in ("gpu", "cuda"):
        import torch  # only when a GPU is asked for

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator}: {NO_GPU}.")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_training_values(cfg: DictConfig) -> None:
    """Values torch would reject with a traceback naming no key, after the data has loaded."""
    epochs = cfg.trainer.get("max_epochs")
    # -1: Lightning's "until stopped" (early stopping); 0 would record an untrained model as completed
    if epochs is not None and (
        not isinstance(epochs, int) or isinstance(epochs, bool) or (epochs < 1 and epochs != -1)
    ):
        raise ConfigError(
            f"trainer.max_epochs={epochs!r} must be a whole number of epochs, at least 1 (or -1: until "
            "early stopping ends it)."
        )
    for key in NON_NEGATIVE:
        value = (cfg.get("optimizer") or {}).get(key)
        if value is not None and (not _number(value) or value < 0):
            raise ConfigError(
                f"optimizer.{key}={value!r} must be a number of at least 0"
                f"{', e.g. optimizer.lr=0.001' if key == 'lr' else ''}."
            )


def check_pretrained(cfg: DictConfig) -> None:
    """model.pretrained=true with no local weights: the hub must be reachable or the weights cached."""
    model = cfg.get("model") or {}
    if model.get("arch") == "timm" and model.get("pretrained") and not model.get("weights"):
        from visionlab.models.backbones import check_download_possible  # imports timm: only when asked

        check_download_possible(str(model.get("name")))


def check_value_types(cfg: DictConfig) -> None:
    """Every numeric key, by the type its target declares (or its default's type), before anything is
    imported or read: seed=abc or model.dropout=0.2x fail here in one line naming the key, instead of
    in torch or in the data split with a traceback. Top-level keys against conf/train.yaml's defaults."""
    from visionlab.config.groups import CONF_DIR

    top = OmegaConf.load(CONF_DIR / "train.yaml") if (CONF_DIR / "train.yaml").is_file() else {}
    for key, default in top.items() if top else ():
        if isinstance(default, (int, float)) and not isinstance(default, bool) and key in cfg:
            kind = "int" if isinstance(default, int) else "number"
            value = cfg.get(key)
            if wrong_type(value, kind, False):
                raise type_error(key, value, kind, example=default)
    threads = cfg.get("threads")
    if threads is not None:
        from visionlab.runs.parallel import _positive, _unset  # cheap: no torch until threads are applied

        if not _unset(threads):
            _positive(threads)
    for group in TYPED_GROUPS:
        node = cfg.get(group)
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if not target:
            continue
        numbers = target_numbers(str(target))
        for key in node.keys():
            if key not in numbers or OmegaConf.is_missing(node, key):
                continue
            try:
                value = node[key]
            except Exception:  # an interpolation that resolves only inside a run (${hydra:...})
                continue
            kind, bool_ok, declared = numbers[key]
            if wrong_type(value, kind, bool_ok):
                name = str(target).rpartition(".")[2]
                raise type_error(f"{group}.{key}", value, kind, f"{name} takes {key}: {declared}")


def check_epochs_end(cfg: DictConfig) -> None:
    """trainer.max_epochs=-1 trains until early stopping ends it; without a validation split there is
    none: the run would never end."""
    trainer = cfg.get("trainer") or {}
    data = cfg.get("data") or {}
    if trainer.get("max_epochs") != -1 or cfg.get("budget") is not None:
        return
    if (trainer.get("max_steps") or -1) > 0 or trainer.get("max_time"):
        return  # another limit ends it
    val_fraction = data.get("val_fraction")
    if _number(val_fraction) and val_fraction == 0:
        raise ConfigError(
            "trainer.max_epochs=-1 trains until early stopping ends it, and data.val_fraction=0 leaves no "
            "validation split, so early stopping is off: the run would never end. Give trainer.max_epochs=N, "
            "or a validation split (data.val_fraction=0.1)."
        )


def check_ckpt_path(cfg: DictConfig) -> None:
    """ckpt_path= (start training from a Lightning checkpoint): a file torch reads safely, holding what
    Lightning restores. Not for resume=, which picks its own run's checkpoint."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or cfg.get("resume"):
        return
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(
            f"ckpt_path={str(ckpt_path)!r} {what}. Give a checkpoint file, e.g. <run>/checkpoints/last.ckpt "
            "(or continue an interrupted run with resume=<run folder>)."
        )
    import torch  # only when a checkpoint is given

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # the weights not read
    except Exception:
        try:  # without mmap: torch's own reason (mmap refuses anything but a zip file first)
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(
                f"ckpt_path={str(ckpt_path)!r} is not a loadable checkpoint: {load_failure(e, path)}."
            ) from None
    if not isinstance(state, dict) or "state_dict" not in state or "pytorch-lightning_version" not in state:
        raise InputError(
            f"ckpt_path={str(ckpt_path)!r} is not a Lightning training checkpoint (no model state and loop "
            "state in it). Give a last.ckpt written by python train.py."
        )
    if "optimizer_states" not in state:
        raise InputError(
            f"ckpt_path={str(ckpt_path)!r} holds the weights only (best.ckpt is written without the "
            "optimizer state that continuing needs). Give the run's checkpoints/last.ckpt."
        )


# ----------------------------------------------------------------------------- the output folder


INFO_FLAGS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"}


def output_folder_problem(argv: list[str] | None = None, config_name: str = "train") -> str | None:
    """Why the folder a run (or a sweep) of this command line would write into cannot be made or
    written, in one line; None when it can. Hydra would fail making it with a traceback."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from visionlab.config.argv import command_line_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(t.split("=", 1)[0] in INFO_FLAGS for t in argv):
        return None  # nothing is written
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = {}
    parser = OverridesParser.create()
    for token in command_line_overrides(argv):
        try:
            [override] = parser.parse_overrides([token])
            given[override.key_or_group] = override.value()
        except Exception:
            continue  # Hydra says what is wrong with it
    if not multirun and given.get("resume"):
        text = str(given["resume"])
    elif isinstance(given.get(key), str):
        text = given[key]
    else:
        text = f"outputs/{config_name}/{'multiruns' if multirun else 'runs'}/"
    prefix = text.split("${", 1)[0]  # what does not depend on the time or the run's name
    if "${" in text and not prefix.endswith("/"):
        prefix = os.path.dirname(prefix)  # a folder name begun before the interpolation
    folder = Path(prefix or ".").expanduser()
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    existing = nearest_existing(folder)
    if key in given or "resume" in given:
        how = f"give {key}=DIR, a folder you can write" if key in given else "copy the run somewhere writable"
    else:
        how = f"run from a folder where outputs/ can be written, or give {key}=DIR"
    if not existing.is_dir():
        return f"cannot make the output folder {folder}: {existing} is a file, not a folder. Move it, or {how}."
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write into the output folder {folder}: {existing} is read-only; {how}."
    return None


def check_output_folder(argv: list[str] | None = None, config_name: str = "train") -> None:
    """The entry point's check, before Hydra makes the folder: one line, exit 1."""
    problem = output_folder_problem(argv, config_name)
    if problem:
        raise SystemExit(f"error: {problem}")


def check_train(cfg: DictConfig) -> None:
    check_training_values(cfg)
    data = cfg.get("data") or {}
    check_loader_values(data.get("batch_size", 1), data.get("num_workers", 0), data.get("max_pixels"))
    check_value_types(cfg)
    check_epochs_end(cfg)
    check_budget(cfg)
    check_accelerator(cfg)
    check_data_root(cfg)
    check_ckpt_path(cfg)
    check_pretrained(cfg)


def given_checkpoints(cfg: DictConfig) -> list:
    """ckpt= as a list of paths (runs and sweep folders still to expand); none given: refused."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise InputError(
            "no checkpoint given. Usage: python predict.py ckpt=PATH (or ckpt=[a.ckpt,b.ckpt]); "
            "training prints the path of its best.ckpt."
        )
    paths = list(cfg.ckpt) if isinstance(cfg.ckpt, (list, ListConfig)) else [cfg.ckpt]
    if not paths:
        raise InputError("ckpt=[] names no checkpoint.")
    return paths


def check_predict(cfg: DictConfig) -> None:
    for path in given_checkpoints(cfg):
        if not Path(str(path)).expanduser().exists():
            raise InputError(
                f"ckpt={str(path)!r} does not exist. Give the path that training printed "
                "(…/checkpoints/best.ckpt, or its run folder)."
            )
    output = cfg.get("output")
    if output:
        refuse_kept(Path(str(output)), bool(cfg.get("overwrite")))
    if cfg.get("data") is not None and cfg.data.get("root") is not None:
        check_data_root(cfg)
    if str(cfg.get("device")) == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda: no CUDA GPU visible; use device=auto or cpu.")


def single_run() -> bool:
    """A plain run (not a sweep job, whose errors are recorded in its sweep's summary instead)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def discard_unused_run_dir(cfg: DictConfig) -> Path | None:
    """Remove the folder Hydra made for a single run that stopped before training (nothing in it but
    Hydra's config record, the log and a failed result.json). A resumed run's folder is never
    touched, nor one holding checkpoints or a submission. Returns the folder removed."""
    from hydra.core.hydra_config import HydraConfig

    if not single_run() or cfg.get("resume"):
        return None
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    kept = {".hydra", ".lock", "result.json", f"{HydraConfig.get().job.name}.log"}
    if not run_dir.is_dir() or any(p.name not in kept for p in run_dir.iterdir()):
        return None
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir
