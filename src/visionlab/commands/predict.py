"""run(cfg): load one checkpoint or several (a probability-averaged ensemble), rebuild each model and
its preprocessing from what the checkpoint holds, predict the test set (optionally with test-time
augmentation) and write the submission atomically, in the sample submission's format."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from visionlab.commands.preflight import given_checkpoints
from visionlab.config import groups
from visionlab.config.trust import trusted_config
from visionlab.data import DataError
from visionlab.data.dataset import ImageDataset
from visionlab.data.split import sort_classes
from visionlab.data.transforms import tta_views
from visionlab.errors import InputError, load_failure
from visionlab.models import ImageClassifier
from visionlab.models.preprocessing import stored_preprocessing
from visionlab.runs.atomic import nearest_existing, refuse_kept, replace_atomically
from visionlab.runs.folder import read_result

log = logging.getLogger(__name__)


class CheckpointError(InputError):
    """A checkpoint that cannot be used, named, with the fix."""


def load_checkpoint(path: str | Path) -> dict:
    """A visionlab checkpoint, loaded with weights_only=True (no pickled code is run)."""
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"ckpt={str(path)!r} does not exist. Give the path that training printed (…/checkpoints/best.ckpt)."
        )
    if path.is_dir():
        raise CheckpointError(
            f"ckpt={str(path)!r} is a folder with no checkpoints/best.ckpt in it or in its "
            "jobs' folders. Give a run folder, a sweep folder or a .ckpt file."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"ckpt={str(path)!r} is not a loadable checkpoint: {load_failure(e, path)}.") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "visionlab" not in ckpt:
        raise CheckpointError(
            f"ckpt={str(path)!r} is not a visionlab training checkpoint (no model state and "
            "config in it). Use a .ckpt written by python train.py."
        )
    # the stored config is data: nothing off the allow-list is ever built from it
    ckpt["visionlab"]["config"] = trusted_config(ckpt["visionlab"]["config"], str(path))
    return ckpt


# top_k=null on a sweep folder: the jobs whose best val error is within this fraction of the best
# job's. An ablation sweep holds chance-level jobs (sgd without momentum, no BN): averaged in, they
# pulled the README's bn x optimizer sweep from 0.694 (its best job alone) to 0.622.
AUTO_TOLERANCE = 0.10


def expand_checkpoints(paths: list, top_k: int | None = None) -> list[Path]:
    """Each entry: a .ckpt file; a run folder (its checkpoints/best.ckpt); or a sweep folder (the
    best.ckpt of its completed jobs, an ensemble: top_k=N the N best by val error, -1 all of them,
    null those within AUTO_TOLERANCE of the best; all of them when no job has a val error)."""
    out = []
    for entry in paths:
        path = Path(str(entry)).expanduser()
        if not path.is_dir():
            out.append(path)
        elif (path / "checkpoints" / "best.ckpt").is_file():
            out.append(path / "checkpoints" / "best.ckpt")
        else:
            jobs = [job for job in sorted(path.glob("*/checkpoints/best.ckpt")) if _completed(job.parents[1])]
            out.extend(best_jobs(jobs, top_k) or [path])  # a folder without any: load_checkpoint says so
    return out


def best_jobs(checkpoints: list[Path], top_k: int | None) -> list[Path]:
    """The sweep's checkpoints to ensemble, best val error first (sweep order among equals or unknowns)."""
    if top_k is not None and int(top_k) < 0:
        return checkpoints
    errs = {c: read_result(c.parents[1]).get("best_val_err") for c in checkpoints}
    known = {c: float(e) for c, e in errs.items() if isinstance(e, (int, float)) and e == e}
    ranked = sorted(checkpoints, key=lambda c: (c not in known, known.get(c, 0.0)))
    if top_k is not None:
        chosen = ranked[: int(top_k)]
    elif known:
        best = min(known.values())
        chosen = [c for c in ranked if c in known and known[c] <= best * (1 + AUTO_TOLERANCE) + 1e-12]
    else:
        chosen = checkpoints
    left = [c.parents[1].name for c in checkpoints if c not in chosen]
    if left:
        log.info(
            "Ensembling %d of %d jobs by val err (top_k=%s); left out: %s",
            len(chosen),
            len(checkpoints),
            top_k,
            ", ".join(left),
        )
    return chosen


def _completed(job_dir: Path) -> bool:
    """A sweep job that diverged, failed or was interrupted stays out of the sweep's ensemble."""
    status = read_result(job_dir).get("status", "completed")
    if status in ("completed", "unreadable"):  # no readable record: trust the checkpoint
        return True
    log.warning("Leaving %s out of the ensemble: its run is %s.", job_dir, status)
    return False


def data_config(stored: dict, override: dict | None, replace: bool) -> dict:
    """The checkpoint's data config, with the non-null keys given to predict winning (or the whole
    data group replaced when predict was given data=<option>)."""
    if replace:  # the option's own keys; predict.yaml's unset placeholders (test_dir: null, ...) are not its
        data = {k: v for k, v in (override or {}).items() if v is not None or k == "root"}
    else:
        data = dict(stored)
        data.update({k: v for k, v in (override or {}).items() if v is not None})
    data.pop("eval_subset", None)  # a debug run's cap on test images: a submission has every row
    return data


def restore_model(ckpt: dict) -> ImageClassifier:
    info = ckpt["visionlab"]
    cfg = OmegaConf.create(groups.upgrade(info["config"]))  # checkpoints from before the groups' _target_ too
    from visionlab.training.build import build_classifier  # same construction as training

    pre = stored_preprocessing(info)
    model = build_classifier(
        cfg, info["classes"], pre["image_size"], pre["mean"], pre["std"], load_weights=False, info=info
    )
    model.load_state_dict(ckpt["state_dict"])  # EMA weights, when training kept an EMA (Lightning stores them here)
    return model.eval()


@torch.inference_mode()
def predict_probabilities(
    model: ImageClassifier, dataset: ImageDataset, batch_size: int, device: torch.device, tta: bool = False
) -> np.ndarray:
    views = tta_views(dataset.image_size) if tta else [None]
    model = model.to(device)
    total = None
    for view in views:
        dataset.transform = view
        cuda = device.type == "cuda"  # pinned batches copy to the GPU asynchronously
        probs = [
            model.probabilities(model(x.to(device, non_blocking=cuda))).float().cpu()
            for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=cuda)
        ]
        p = torch.cat(probs).numpy()
        total = p if total is None else total + p
    dataset.transform = None
    return total / len(views)


def check_output(path: Path, overwrite: bool) -> None:
    """Before any predicting: the submission may be written to `path`."""
    if path.is_dir():
        raise InputError(f"output={str(path)!r} is a folder. Give a file name, e.g. output={path / 'submission.csv'}.")
    refuse_kept(path, overwrite)
    folder = writable_folder(path.parent)
    if folder is not None:
        raise InputError(
            f"cannot write the submission into {folder}: the folder is read-only (or not yours). "
            f"Give output=FILE in a folder you can write, e.g. output={Path.home() / path.name}."
        )


def writable_folder(folder: Path) -> Path | None:
    """None when `folder` (or, where it is still to be made, its nearest existing parent) takes new files;
    else the folder that does not. A read-only mount says so to root too (os.access: EROFS)."""
    folder = nearest_existing(folder)
    return None if os.access(folder, os.W_OK | os.X_OK) else folder


def check_classes(dm, classes: list[str], ckpt_path: Path, trained_on: dict) -> None:
    """Before reading any image: the data's classes, where they can be known (training labels, class
    folders, a solution file's labels), are the checkpoint's. Nothing is said where they cannot be."""
    names, source, complete = dm.known_classes()
    if names is None:
        return
    ours = set(classes)
    only_data = sort_classes(names - ours) if names - ours else []
    only_ckpt = sort_classes(ours - names) if complete and ours - names else []
    if not only_data and not only_ckpt:
        return

    def shown(values: list[str]) -> str:
        return (
            "["
            + ", ".join(repr(v) for v in values[:10])
            + (f", ... ({len(values)} in all)" if len(values) > 10 else "")
            + "]"
        )

    differ = "; ".join(
        part
        for part in (
            f"only in the data: {shown(only_data)}" if only_data else "",
            f"only in the checkpoint: {shown(only_ckpt)}" if only_ckpt else "",
        )
        if part
    )
    where = trained_on.get("root")
    raise CheckpointError(
        f"ckpt={str(ckpt_path)!r} was trained on other classes than the data's: the checkpoint's "
        f"{shown(sort_classes(ours))}, {source} {shown(sort_classes(names))} ({differ}). Give the checkpoint "
        f"trained on this data, or predict the data it was trained on "
        f"(data=<its option>{f', data.root={where}' if where else ''})."
    )


def write_atomically(df: pd.DataFrame, path: Path, overwrite: bool) -> None:
    check_output(path, overwrite)  # again: another process may have written it meanwhile
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a temporary file left by a predict killed while writing this one is removed first
        replace_atomically(path, lambda tmp: df.to_csv(tmp, index=False))
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = f"the existing {path.name} is kept" if path.exists() else "nothing was written"
        raise InputError(f"cannot write {path}: {why}; {kept}. Free space there, or give output= elsewhere.") from None


def probability_table(ids: list[str], probs: np.ndarray, classes: list[str], id_col: str) -> pd.DataFrame:
    """output_probs=true: one column per class, each row's probabilities summing to 1 (log-loss leaderboards)."""
    table = pd.DataFrame(probs.astype(np.float64), columns=[str(c) for c in classes])
    table = table.div(table.sum(axis=1), axis=0)  # float32 sums drift a little from 1
    table.insert(0, id_col, ids)
    return table


def submission_table(
    sample: pd.DataFrame | None, ids: list[str], names: list[str], id_col: str, label_col: str
) -> pd.DataFrame:
    if sample is None:
        return pd.DataFrame({id_col: ids, label_col: names})
    out = sample.copy()
    target = label_col if label_col in out.columns else None
    if target is None:
        others = [c for c in out.columns if c != id_col]
        if len(others) != 1:
            raise DataError(
                f"The sample submission's columns {list(out.columns)} have no {label_col!r} column to fill. "
                "Set data.label_col to the column that takes the predicted class."
            )
        target = others[0]
    out[target] = names
    return out


def run(cfg: DictConfig) -> Path:
    paths = given_checkpoints(cfg)
    out = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / "submission.csv"
    check_output(out, overwrite=bool(cfg.overwrite))
    paths = expand_checkpoints(paths, cfg.get("top_k"))
    ckpts, classes = load_ensemble(paths)
    probs, dm = ensemble_probabilities(cfg, paths, ckpts, classes)
    names = [classes[i] for i in probs.argmax(1)]
    table = submission_table(dm.sample, dm.test_items.ids, names, dm.id_col, dm.label_col)
    probs_out = out.with_name(f"{out.stem}_probs.csv") if cfg.get("output_probs") else None
    if probs_out is not None:
        check_output(probs_out, overwrite=bool(cfg.overwrite))  # both files or neither
    write_atomically(table, out, overwrite=bool(cfg.overwrite))
    print(f"Submission ({len(names)} rows, {len(paths)} model(s){', TTA' if cfg.tta else ''}): {out}", flush=True)
    if probs_out is not None:
        write_atomically(
            probability_table(dm.test_items.ids, probs, classes, dm.id_col), probs_out, bool(cfg.overwrite)
        )
        print(f"Probabilities ({len(classes)} classes, rows in the submission's order): {probs_out}", flush=True)
    if dm.test_items.labels is not None:
        truth = dm.test_items.labels
        correct = sum(a == b for a, b in zip(names, truth))
        print(f"Test accuracy: {correct / len(truth):.4f} ({correct}/{len(truth)})", flush=True)
    return out


def load_ensemble(paths: list) -> tuple[list[dict], list[str]]:
    """The checkpoints, each loaded as data, and their classes (an ensemble's checkpoints must share them)."""
    ckpts = [load_checkpoint(p) for p in paths]
    classes = ckpts[0]["visionlab"]["classes"]
    for p, ckpt in zip(paths, ckpts):
        if ckpt["visionlab"]["classes"] != classes:
            raise CheckpointError(
                f"{p} was trained on other classes ({ckpt['visionlab']['classes']}) than {paths[0]} ({classes}); "
                "an ensemble needs the same classes."
            )
    return ckpts, classes


def ensemble_probabilities(cfg: DictConfig, paths: list, ckpts: list[dict], classes: list[str]):
    """The checkpoints' mean class probabilities on the test images, and the datamodule that read them
    (one per image size and interpolation the checkpoints were trained at)."""
    override = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") is not None else {}
    replace = bool(cfg.get("data_group"))
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else ("cpu" if cfg.device == "auto" else cfg.device)
    )
    total, datamodules = None, {}
    for path, ckpt in zip(paths, ckpts):
        info = ckpt["visionlab"]
        data = data_config(groups.upgrade(info["config"])["data"], override, replace)
        pre = stored_preprocessing(info)
        data.update(image_size=pre["image_size"], interpolation=pre["interpolation"])
        if cfg.get("batch_size"):
            data["batch_size"] = cfg.batch_size
        key = (pre["image_size"], pre["interpolation"])
        if key not in datamodules:
            dm = groups.build(data, "data", cfg.get("data_group") or None, classes=classes)
            check_classes(dm, classes, path, groups.upgrade(info["config"])["data"])
            dm.setup("predict")
            datamodules[key] = dm
        dm = datamodules[key]
        model = restore_model(ckpt)
        probs = predict_probabilities(model, dm.test_set, dm.batch_size, device, tta=bool(cfg.tta))
        log.info("Predicted %d images with %s", len(probs), path)
        total = probs if total is None else total + probs
    return total / len(paths), next(iter(datamodules.values()))
