"""Every experiment preset composes, and every value an ablation sweeps builds a working model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from visionlab.commands.resolvers import register_resolvers
from visionlab.data.transforms import build_transforms
from visionlab.training.build import as_dict, build_classifier

CONF = Path(__file__).resolve().parents[1] / "conf"
ABLATIONS = sorted(p.stem for p in (CONF / "experiment" / "ablation").glob("*.yaml"))
register_resolvers()


def compose_train(overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def build_model(cfg):
    """The classifier the model group builds for 10 classes (through the group's _target_, as train.py does)."""
    return build_classifier(cfg, [str(i) for i in range(10)], cfg.data.image_size, [0.5] * 3, [0.5] * 3)


def build_net(cfg):
    return build_model(cfg).net


def test_all_nine_ablation_questions_have_a_preset():
    assert ABLATIONS == sorted(
        ["bn", "depth", "dropout", "activation", "output", "pooling", "optimizer", "augmentation", "init"]
    )


@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_preset_sweeps_one_knob_and_every_value_builds(name):
    cfg = compose_train([f"experiment=ablation/{name}"])
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert len(params) == 1, "one knob per question, everything else held fixed"
    ((key, values),) = params.items()
    (override,) = OverridesParser.create().parse_overrides([f"{key}={values}"])
    choices = list(override.sweep_string_iterator())
    assert len(choices) >= 2
    assert cfg.data.subset and cfg.trainer.max_epochs, "presets state their subset and epochs"
    for value in choices:
        job = compose_train([f"experiment=ablation/{name}", f"{key}={value}"])
        net = build_net(job)
        x = torch.zeros(2, 3, job.data.image_size, job.data.image_size)
        assert net(x).shape == (2, 10)
        build_transforms(as_dict(job.augmentation).get("transforms"))
        assert job.optimizer is not None  # composes


def test_leaderboard_preset_is_a_vgg_style_cnn_on_every_image():
    cfg = compose_train(["experiment=leaderboard"])
    assert not cfg.hydra.sweeper.params, "one model: the documented command is a single run"
    assert cfg.model.arch == "cnn" and list(cfg.model.channels) == [64, 128, 256] and cfg.model.block_convs == 2
    assert cfg.data.val_fraction == 0 and cfg.trainer.precision == "bf16-mixed" and cfg.trainer.max_epochs == 45
    assert cfg.hydra.runtime.choices["augmentation"] == "light_erase"
    net = build_net(cfg)
    assert sum(p.numel() for p in net.parameters()) == 1_148_874


def test_finetune_lite0_preset_composes_with_pretrained_lite0():
    cfg = compose_train(["experiment=finetune_lite0"])
    assert cfg.model.name == "efficientnet_lite0" and cfg.model.weights.startswith("package:")
    assert cfg.data.image_size == 96 and cfg.trainer.max_epochs == 12


@pytest.mark.parametrize("preset,data", [("leaderboard_fast", "demo"), ("fashion_mnist", "fashion_mnist")])
def test_speed_presets_compose_to_the_fast_residual_cnn_with_flip_evaluation(preset, data):
    """The presets of README's "Time to accuracy": model=resnet with flip test-time augmentation in the
    model, the augmentation batched in torch, every image training."""
    cfg = compose_train([f"experiment={preset}"])
    assert not cfg.hydra.sweeper.params
    assert cfg.hydra.runtime.choices["data"] == data and cfg.hydra.runtime.choices["model"] == "resnet"
    assert cfg.model.eval_flip and cfg.augmentation.batched and cfg.data.val_fraction == 0
    assert cfg.trainer.precision == "bf16-mixed"
    net = build_net(cfg)
    assert net(torch.zeros(2, 3, 28, 28)).shape == (2, 10)


def test_leaderboard_best_preset_is_the_wider_residual_cnn_trained_long_with_cutmix():
    """The most accurate single model of README's leaderboard table: CutMix from the first epoch to
    mixup_off_epoch, whole images after it, and flip averaging at evaluation."""
    cfg = compose_train(["experiment=leaderboard_best"])
    assert not cfg.hydra.sweeper.params
    assert cfg.hydra.runtime.choices["model"] == "resnet" and list(cfg.model.channels) == [48, 96, 192]
    assert cfg.model.cutmix == 1.0 and cfg.model.mixup == 0.0
    assert 0 < cfg.model.mixup_off_epoch < cfg.trainer.max_epochs == 200
    assert cfg.model.eval_flip and cfg.augmentation.batched and cfg.data.val_fraction == 0
    model = build_model(cfg)
    assert model.mixup is not None and model.mixing()
    assert sum(p.numel() for p in model.net.parameters()) == 1_083_514


def test_leaderboard_best_vgg_is_the_leaderboard_vgg_trained_long_with_cutmix():
    """leaderboard_best's ensemble partner: the leaderboard preset's network, CutMix, flip averaging."""
    cfg, vgg = compose_train(["experiment=leaderboard_best_vgg"]), compose_train(["experiment=leaderboard"])
    assert cfg.hydra.runtime.choices["model"] == "cnn" and cfg.model.channels == vgg.model.channels
    assert cfg.model.block_convs == vgg.model.block_convs and cfg.model.cutmix == 1.0
    assert 0 < cfg.model.mixup_off_epoch < cfg.trainer.max_epochs == 90
    assert cfg.model.eval_flip and cfg.augmentation.batched and cfg.data.val_fraction == 0
    assert build_model(cfg).mixing()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # a training step without a Trainer
@pytest.mark.parametrize("arch", ["resnet", "cnn"])
def test_scratch_nets_train_with_mixup_and_cutmix_and_stop_mixing_on_schedule(arch):
    """model=resnet (and model=cnn) take timm's Mixup keys as model=timm does: soft targets in
    training, none after mixup_off_epoch, and none by default."""
    assert build_model(compose_train([f"model={arch}"])).mixup is None
    model = build_model(
        compose_train([f"model={arch}", "model.mixup=0.2", "model.cutmix=1.0", "model.mixup_off_epoch=3"])
    )
    assert model.mixup.mixup_alpha == 0.2 and model.mixup.cutmix_alpha == 1.0 and model.mixing()
    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (8, 3, 28, 28), dtype=torch.uint8), torch.arange(8) % 10
    loss = model.train().training_step((x, y), 0)
    assert torch.isfinite(loss)
    model.mixup_off_epoch = 0  # the epoch the classifier reads (0 without a trainer) is past it
    assert not model.mixing()
