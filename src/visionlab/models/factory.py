"""The `model` group's targets: one per option, each building only its network from that option's
keys (no defaults: conf/model/<option>.yaml holds them) and handing every other key to the one
funnel, ImageClassifier, through **classifier. Which key goes where is stated once: a network key is
in its builder's signature below, a classifier key in ImageClassifier's (a missing classifier key in
one builder of three was a real bug when each restated that call)."""

from __future__ import annotations

from collections.abc import Sequence

from visionlab.models.backbones import build_timm
from visionlab.models.classifier import ImageClassifier
from visionlab.models.cnn import build_cnn
from visionlab.models.resnet import build_resnet


def cnn_classifier(
    *,
    num_classes: int,
    image_size: int,
    channels: Sequence[int],
    block_convs: int,
    bn: bool,
    dropout: float,
    activation: str,
    pool: str,
    head: str,
    init: str,
    kernel_size: int,
    load_weights: bool = True,
    **classifier,
) -> ImageClassifier:
    """model=cnn: the scratch CNN (models.cnn.build_cnn, which the keys above describe).

    load_weights: unused (no pretrained weights); predict passes False to every builder.
    **classifier: ImageClassifier's keywords (the run's optimizer, scheduler, mean, std, info; the
    model.* keys output, label_smoothing, eval_flip, mixup...).
    """
    net = build_cnn(
        num_classes,
        image_size=image_size,
        channels=channels,
        block_convs=block_convs,
        bn=bn,
        dropout=dropout,
        activation=activation,
        pool=pool,
        head=head,
        init=init,
        kernel_size=kernel_size,
    )
    return ImageClassifier(net, num_classes, **classifier)


def resnet_classifier(
    *,
    num_classes: int,
    image_size: int,
    channels: Sequence[int],
    stem: int,
    block_convs: int,
    residual: bool,
    activation: str,
    dropout: float,
    init: str,
    load_weights: bool = True,
    **classifier,
) -> ImageClassifier:
    """model=resnet: the fast residual CNN (models.resnet.build_resnet, which the keys above describe).

    load_weights: unused (no pretrained weights); predict passes False to every builder.
    **classifier: ImageClassifier's keywords, as for cnn_classifier.
    """
    net = build_resnet(
        num_classes,
        image_size=image_size,
        channels=channels,
        stem=stem,
        block_convs=block_convs,
        residual=residual,
        activation=activation,
        dropout=dropout,
        init=init,
    )
    return ImageClassifier(net, num_classes, **classifier)


def timm_classifier(
    *,
    num_classes: int,
    image_size: int,
    name: str,
    pretrained: bool,
    weights: str | None,
    allow_partial: bool,
    drop_rate: float,
    load_weights: bool = True,
    **classifier,
) -> ImageClassifier:
    """model=timm (and efficientnet_lite0): a timm backbone with a new head (models.backbones.build_timm).

    image_size: unused (the backbone takes any size; the data resizes to it).
    load_weights: False builds the bare architecture (predict fills it from a checkpoint).
    **classifier: ImageClassifier's keywords, the fine-tuning ones (freeze, backbone_lr_mult...) too.
    """
    net = build_timm(
        name,
        num_classes,
        pretrained=pretrained and load_weights,
        weights=weights if load_weights else None,
        allow_partial=allow_partial,
        drop_rate=drop_rate,
    )
    return ImageClassifier(net, num_classes, **classifier)
