"""Config groups build through their _target_: unknown keys are refused by name, schedulers are torch's
own with the YAML's defaults, and configs from before the _target_s (old checkpoints) still build."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
from helpers import REPO, assert_user_error, compose_cfg, predict_inproc, run_user
from omegaconf import OmegaConf

from visionlab.config import groups
from visionlab.errors import ConfigError
from visionlab.models.schedules import lightning_scheduler


def built_scheduler(option: str, steps_per_epoch: int = 10, epochs: int = 4):
    cfg = compose_cfg("train", [f"scheduler={option}"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return lightning_scheduler(groups.build(cfg.scheduler, "scheduler"), optimizer, steps_per_epoch, epochs)


def test_schedulers_are_torchs_own_with_the_yamls_defaults():
    step = built_scheduler("step")
    assert isinstance(step["scheduler"], torch.optim.lr_scheduler.StepLR) and step["interval"] == "epoch"
    assert step["scheduler"].step_size == OmegaConf.load(REPO / "conf/scheduler/step.yaml").step_size
    one = built_scheduler("onecycle")
    assert isinstance(one["scheduler"], torch.optim.lr_scheduler.OneCycleLR) and one["interval"] == "step"
    assert one["scheduler"].total_steps == 40  # known only when the run starts
    cosine = built_scheduler("cosine")
    assert cosine["interval"] == "step"
    lrs = []
    for _ in range(40):
        lrs.append(cosine["scheduler"].get_last_lr()[0])
        cosine["scheduler"].optimizer.step()
        cosine["scheduler"].step()
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] < 0.001 and lrs == sorted(lrs, reverse=True)
    assert "_target_" not in compose_cfg("train", ["scheduler=none"]).scheduler  # no scheduler at all


@pytest.mark.parametrize("steps_per_epoch,epochs", [(1, 1), (2, 2), (1, 4), (3, 1)])
def test_one_cycle_survives_runs_of_a_few_steps(steps_per_epoch, epochs):
    """OneCycleLR divides by its warm-up's length (pct_start x total_steps - 1): 0 in a 4-step run
    (data.subset=200, batch 128, 2 epochs) used to raise ZeroDivisionError at the second step."""
    one = built_scheduler("onecycle", steps_per_epoch, epochs)["scheduler"]
    for _ in range(steps_per_epoch * epochs):
        one.optimizer.step()
        one.step()
    assert all(0 < lr <= 0.1 for lr in one.get_last_lr())


@pytest.mark.parametrize(
    "group,option",
    [
        ("model", "cnn"),
        ("model", "resnet"),
        ("model", "timm"),
        ("scheduler", "step"),
        ("scheduler", "onecycle"),
        ("data", "demo"),
        ("data", "folder"),
        ("data", "fashion_mnist"),
        ("optimizer", "sgd"),
    ],
)
def test_a_misspelt_key_in_a_yaml_file_is_named(group, option):
    node = groups.option_node(REPO / "conf" / group / f"{option}.yaml")  # with its bases (conf/_bases/)
    groups.check_keys(node, group, option)  # the shipped file is clean
    node["bnn"] = True
    with pytest.raises(ConfigError, match=rf"^{group}\.bnn is not a key of {group}={option}; its keys are "):
        groups.check_keys(node, group, option)


def test_misspelt_key_in_yaml_and_on_the_command_line_stop_train_py(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    with open(conf / "model" / "cnn.yaml", "a") as f:
        f.write("bnn: true\n")
    proc = run_user(["-cp", str(conf), "trainer.max_epochs=1", "data.subset=50"], cwd=tmp_path)
    message = assert_user_error(proc, "model.bnn is not a key of model=cnn; its keys are", "bn,")
    assert len(message.strip().splitlines()) == 1
    proc = run_user(["model.bnn=true"], cwd=tmp_path)  # Hydra's struct mode names it
    assert proc.returncode != 0 and "bnn" in proc.stderr


def old_form(config: dict) -> dict:
    """A run config as train.py wrote it before the groups had a _target_."""
    config = dict(config)
    target = config["data"].pop("_target_")
    config["data"] = {"source": {"ChallengeDataModule": "challenge"}[target.rsplit(".", 1)[1]], **config["data"]}
    model = {k: v for k, v in config["model"].items() if k not in ("_target_", "_partial_", "sync_bn")}
    config["model"] = model
    config["scheduler"] = {"name": "none"}
    return config


def test_upgrade_of_old_configs():
    new = groups.upgrade(
        {
            "data": {"source": "folder", "root": "/x"},
            "model": {"arch": "timm", "name": "resnet18"},
            "scheduler": {"name": "step", "step_size": 3},
        }
    )
    assert new["data"] == {"_target_": "visionlab.data.FolderDataModule", "root": "/x"}
    assert new["model"]["_target_"].endswith("timm_classifier") and new["model"]["freeze"] is False
    assert new["scheduler"]["_target_"] == "torch.optim.lr_scheduler.StepLR" and new["scheduler"]["step_size"] == 3
    assert groups.upgrade(new) == new  # today's configs pass unchanged
    with pytest.raises(ConfigError, match="data.source='kaggle' is not one of"):
        groups.upgrade({"data": {"source": "kaggle"}})
    with pytest.raises(ConfigError, match="scheduler.name='cyclic' is not one of"):
        groups.upgrade({"scheduler": {"name": "cyclic"}})


def test_a_checkpoint_from_before_the_targets_still_predicts(trained, tmp_path):
    ch, ckpt_path = trained
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    ckpt["visionlab"]["config"] = old_form(ckpt["visionlab"]["config"])
    old_config = ckpt["visionlab"]["config"]
    assert not any("_target_" in old_config[g] for g in ("data", "model", "scheduler"))
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    new_sub = predict_inproc(ckpt_path, tmp_path / "new.csv")
    old_sub = predict_inproc(old, tmp_path / "old.csv")
    pd.testing.assert_frame_equal(pd.read_csv(old_sub), pd.read_csv(new_sub))
