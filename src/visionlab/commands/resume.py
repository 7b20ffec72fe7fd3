"""resume=<run folder>: the interrupted run's own saved config, set to continue from its last checkpoint.
The folder may come from anyone: its config is data, checked against the allow-list before anything of
it is built (visionlab.config.trust)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from visionlab.config import groups
from visionlab.config.trust import check_stored_config
from visionlab.errors import ConfigError, load_failure
from visionlab.runs.folder import read_result

log = logging.getLogger(__name__)


def resume_config(cfg: DictConfig) -> DictConfig:
    """The interrupted run's own saved config, set to continue from its last checkpoint. Plain
    key=value overrides given with resume= (e.g. trainer.max_epochs=20) still apply, typed as Hydra
    types them (10 an int, 0.001 a float, null None)."""
    run_dir = Path(cfg.paths.output_dir)
    # a folder of a run from before the groups had a _target_ resumes too
    saved = OmegaConf.create(groups.upgrade(OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))))
    given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    apply_overrides(saved, given)
    # the stored config is data (a run folder may come from anyone): only allow-listed targets are built
    check_stored_config(saved, str(run_dir / ".hydra" / "config.yaml"))
    saved.resume = str(run_dir)
    recorded = read_result(run_dir).get("epochs")
    done = [recorded] if isinstance(recorded, int) and not isinstance(recorded, bool) else []  # epochs trained
    saved.ckpt_path, epoch = last_checkpoint(run_dir)
    done += [epoch] if isinstance(epoch, int) else []
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


def apply_overrides(saved: DictConfig, given: list[str]) -> None:
    """The key=value overrides given with resume=, onto the saved config; a group override or a swept
    key would change what the run trains: refused."""
    for override in OverridesParser.create().parse_overrides(given):
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


def last_checkpoint(run_dir: Path) -> tuple[str | None, int | None]:
    """The run's checkpoint to continue from (last.ckpt, else best.ckpt where it holds the optimizer
    state) and the epochs it has done; (None, None) when none can be read."""
    for name in ("last.ckpt", "best.ckpt"):
        candidate = run_dir / "checkpoints" / name
        if not candidate.is_file():
            continue
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            log.warning("Cannot read %s (%s); trying the next checkpoint.", candidate, load_failure(e, candidate))
            continue
        if "optimizer_states" not in state:  # best.ckpt holds the weights only (visionlab.runs.checkpoints)
            log.warning("%s has no optimizer state to resume from.", candidate)
            continue
        progress = state.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
        epoch = progress.get("processed", state["epoch"] + 1 if isinstance(state.get("epoch"), int) else None)
        return str(candidate), epoch
    return None, None
