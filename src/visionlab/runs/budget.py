"""budget=5m: train for as many whole epochs as fit in a wall-time budget, so that the learning-rate
schedule (built from trainer.max_epochs) runs to its end instead of being cut off as Lightning's
`max_time` would cut it.

The plan: time a few real training and evaluation steps of the built model (state restored
afterwards), then  epochs = (97 % of the budget - time spent so far - test and end-of-run work) /
epoch time, to the nearest epoch. At each epoch end the keeper re-plans from the real epochs and
stretches the schedule to the new end. The budget counts what result.json's wall_time_s counts:
from run() on (Python's imports, several seconds, come before it). Parsing is here too, without
heavy imports, for the preflight check."""

from __future__ import annotations

import logging
import math
import re
import time

from visionlab.errors import ConfigError

log = logging.getLogger(__name__)

UNITS = {"s": 1, "m": 60, "h": 3600}
FORMS = "a number of seconds (300) or a number with a unit: 90s, 5m, 1.5h"
WARMUP_STEPS, TIMED_STEPS, TIMED_EVAL_STEPS = 3, 20, 5
SAFETY = 0.97  # plan into 97 % of the time left: neighbours' load and epoch-end work the timing misses
END_FIXED_S = 1.0  # loading best.ckpt for the test, the last result.json, closing the loggers


def parse_budget(value) -> float | None:
    """budget= as seconds (None: no budget). Raises ConfigError naming the accepted forms."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(value).lower())
        if not match:
            raise ConfigError(f"budget={value!r} is not a duration: give {FORMS}.")
        seconds = float(match.group(1)) * UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"budget={value!r} must be a positive duration: give {FORMS}.")
    return seconds


def check_budget(cfg) -> None:
    """Preflight: a bad budget string, or a budget for a run it cannot plan, fails before any data is read."""
    if parse_budget(cfg.get("budget")) is None:
        return
    devices = (cfg.get("trainer") or {}).get("devices", 1)
    if devices not in (1, "1", None):
        raise ConfigError(
            f"budget= plans single-process runs; trainer.devices={devices} runs several. "
            "Drop budget= (set trainer.max_epochs) or train on one device."
        )


def _step_clock():
    """A callback that stamps the ends of training / validation batches (loader fetch + step between two)."""
    import pytorch_lightning as pl  # here, not at the top: preflight imports this module before Lightning

    class StepClock(pl.Callback):
        def __init__(self):
            self.train, self.val = [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self.train.append([time.perf_counter()])

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.train[-1].append(time.perf_counter())

        def on_validation_epoch_start(self, trainer, pl_module):
            self.val.append([time.perf_counter()])

        def on_validation_batch_end(self, trainer, pl_module, *args):
            self.val[-1].append(time.perf_counter())

    return StepClock()


def per_step(runs: list[list[float]], skip: int) -> float | None:
    """Mean seconds per step over every run's steps after the first `skip` ones overall."""
    gaps = [b - a for run in runs for a, b in zip(run, run[1:])][skip:]
    return sum(gaps) / len(gaps) if gaps else None


def measure_steps(cfg, model, dm) -> tuple[float, float | None]:
    """(train seconds per batch, eval seconds per batch) from real steps of `model` under the run's
    trainer settings (precision, clipping, accumulation); weights, BatchNorm statistics, the model's
    record and the random state are put back afterwards, so training starts as without the timing."""
    import tempfile

    from hydra.utils import instantiate
    from pytorch_lightning.utilities.seed import isolate_rng

    batches = max(1, math.ceil(len(dm.train_set) / dm.batch_size))
    wanted = WARMUP_STEPS + TIMED_STEPS
    epochs = math.ceil(wanted / batches)  # tiny training sets: several short epochs
    clock = _step_clock()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with isolate_rng(), tempfile.TemporaryDirectory(prefix="vl_budget_") as tmp:
        trainer = instantiate(
            cfg.trainer,
            default_root_dir=tmp,
            callbacks=[clock],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            max_epochs=epochs,
            max_time=None,
            min_epochs=None,
            fast_dev_run=False,
            limit_train_batches=min(batches, wanted),
            limit_val_batches=1 + TIMED_EVAL_STEPS,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=epochs,
            profiler=None,
        )
        trainer.fit(model, datamodule=dm)
    model.load_state_dict(saved)
    model.history, model.diverged, model._val_metrics = [], False, {}
    model.trainer = None  # the real trainer attaches itself
    train_step = per_step(clock.train, WARMUP_STEPS)
    eval_step = per_step(clock.val, 1)
    if train_step is None:
        train_step = per_step(clock.train, 0)
    return train_step, eval_step


def plan(cfg, model, dm, seconds: float, spent: float) -> dict:
    """Measure, then choose trainer.max_epochs; returns the plan that result.json records."""
    begin = time.time()
    train_step, eval_step = measure_steps(cfg, model, dm)
    eval_step = eval_step if eval_step is not None else train_step / 3  # no val split: forward only ~ 1/3
    spent += time.time() - begin
    per_batch = 1 / dm.batch_size
    n_val = len(dm.val_set) if dm.val_set is not None else 0
    n_test = len(dm.test_set) if dm.has_test_labels else 0
    epoch_s = train_step * len(dm.train_set) * per_batch + eval_step * n_val * per_batch
    # after the last epoch: the test pass and the pictures' extra pass over val (visionlab.training.interpret)
    end_s = eval_step * (n_test + n_val) * per_batch + END_FIXED_S
    room = SAFETY * seconds - spent - end_s
    epochs = round(room / epoch_s) if epoch_s > 0 else 0  # nearest: half an epoch early or late at most
    if epochs < 1:
        raise ConfigError(
            f"budget={seconds:g}s leaves no room for a single epoch: {spent:.0f} s are spent before "
            f"training, an epoch takes ~{epoch_s:.1f} s and the test ~{end_s:.1f} s. Give budget= at "
            f"least {math.ceil((spent + epoch_s + end_s) / SAFETY)}s, or a smaller data.subset."
        )
    result = {
        "seconds": seconds,
        "step_time_s": round(train_step, 5),
        "eval_step_time_s": round(eval_step, 5),
        "epoch_time_s": round(epoch_s, 3),
        "startup_s": round(spent, 2),
        "end_s": round(end_s, 2),
        "planned_epochs": epochs,
        "planned_total_s": round(spent + epochs * epoch_s + end_s, 1),
    }
    log.info(
        "budget=%gs: %.0f s spent, %.3f s per training step, %.1f s per epoch: %d epochs planned (ends at ~%.0f s)",
        seconds,
        spent,
        train_step,
        epoch_s,
        epochs,
        result["planned_total_s"],
    )
    return result


def apply_budget(cfg, model, dm, started: float, previous: dict) -> dict | None:
    """With budget= set: plan the epochs (a resumed run keeps the plan it had, and so its schedule)
    and set trainer.max_epochs to them. Returns the plan for result.json, or None."""
    seconds = parse_budget(cfg.get("budget"))
    if seconds is None:
        return None
    planned = previous.get("budget") if cfg.get("resume") else None
    if not planned:
        planned = plan(cfg, model, dm, seconds, time.time() - started)
    cfg.trainer.max_epochs = int(planned.get("replanned_epochs", planned["planned_epochs"]))
    return planned


def keeper(planned: dict, started: float):
    """A callback that re-plans at each epoch end from the last real epochs' mean time (neighbours' load
    changes, epoch-end work the step timing cannot see): it moves max_epochs and stretches the
    cosine / one-cycle schedule to the new end, so the schedule still completes. The new end goes
    into `planned` (result.json's budget.replanned_epochs)."""
    import pytorch_lightning as pl

    class BudgetKeeper(pl.Callback):
        def __init__(self):
            self.epoch_start = None
            self.epoch_times: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            if self.epoch_start is None:
                self.epoch_start = time.time()

        def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation and checkpoints
            now = time.time()
            self.epoch_times.append(now - self.epoch_start)
            self.epoch_start = now
            done = trainer.current_epoch + 1
            recent = self.epoch_times[-3:]  # the last few: follows a neighbour's load as it comes and goes
            epoch_s = sum(recent) / len(recent)
            room = SAFETY * planned["seconds"] - (now - started) - planned["end_s"]
            target = max(done, done + round(room / epoch_s))
            # Longer only in the first 3/4: stretching a nearly finished schedule would raise its lr again
            late = target > trainer.max_epochs and done > 0.75 * trainer.max_epochs
            if target != trainer.max_epochs and not trainer.should_stop and not late:
                log.info("budget: epochs take %.1f s: %d epochs instead of %d", epoch_s, target, trainer.max_epochs)
                trainer.fit_loop.max_epochs = target
                planned["replanned_epochs"] = target
                _stretch_schedule(trainer, pl_module, target)

    return BudgetKeeper()


def _stretch_schedule(trainer, model, max_epochs: int) -> None:
    """Rebuild a per-step schedule (cosine, one-cycle: they know the run's length) for the new length,
    at the step reached. Per-epoch ones (step) and none need nothing."""
    import warnings

    from visionlab.models.schedules import lightning_scheduler

    factory = getattr(model, "scheduler_factory", None)
    if factory is None or not trainer.lr_scheduler_configs or trainer.lr_scheduler_configs[0].interval != "step":
        return
    config = trainer.lr_scheduler_configs[0]
    optimizer = config.scheduler.optimizer
    for group in optimizer.param_groups:  # one-cycle takes its peak from the current lr
        group["lr"] = group.get("max_lr", group["lr"])
    steps_per_epoch = int(trainer.estimated_stepping_batches // max(1, trainer.max_epochs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "step() before optimizer.step()": the steps were taken, by the old one
        scheduler = lightning_scheduler(factory, optimizer, steps_per_epoch, max_epochs)["scheduler"]
        scheduler.last_epoch = trainer.global_step - 1
        scheduler.step()  # the lr of the step reached
    config.scheduler = scheduler
