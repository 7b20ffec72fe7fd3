"""The `model` group's targets: one builder per option, each taking that option's keys (no defaults:
conf/model/<option>.yaml holds them) plus what is known only at run time, and returning the
ImageClassifier. The keys split here, by name, between the network and the classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from visionlab.models.backbones import build_timm
from visionlab.models.classifier import ImageClassifier
from visionlab.models.cnn import build_cnn
from visionlab.models.resnet import build_resnet


def cnn_classifier(
    *,
    num_classes: int,
    image_size: int,
    optimizer: Callable,
    scheduler: Callable | None,
    mean: Sequence[float],
    std: Sequence[float],
    info: dict | None = None,
    load_weights: bool = True,
    channels: Sequence[int],
    block_convs: int,
    bn: bool,
    dropout: float,
    activation: str,
    pool: str,
    head: str,
    output: str,
    init: str,
    kernel_size: int,
    label_smoothing: float,
    channels_last: bool,
    eval_flip: bool = False,  # the defaults: checkpoints written before these keys
    mixup: float = 0.0,
    cutmix: float = 0.0,
    mixup_off_epoch: int | None = None,
) -> ImageClassifier:
    """model=cnn: the scratch CNN (models/cnn.py) in an ImageClassifier.

    Args:
        num_classes, image_size, optimizer, scheduler, mean, std, info: from the run (train.py).
        load_weights: unused (the CNN has no pretrained weights); predict passes False to every builder.
        channels, block_convs, bn, dropout, activation, pool, head, init, kernel_size: the network
            (models.cnn.build_cnn).
        output, label_smoothing, channels_last, eval_flip, mixup, cutmix, mixup_off_epoch: how it trains
            and evaluates (ImageClassifier).
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
    return ImageClassifier(
        net,
        num_classes,
        optimizer,
        scheduler,
        output=output,
        mean=mean,
        std=std,
        label_smoothing=label_smoothing,
        channels_last=channels_last,
        eval_flip=eval_flip,
        mixup=mixup,
        cutmix=cutmix,
        mixup_off_epoch=mixup_off_epoch,
        info=info,
    )


def resnet_classifier(
    *,
    num_classes: int,
    image_size: int,
    optimizer: Callable,
    scheduler: Callable | None,
    mean: Sequence[float],
    std: Sequence[float],
    info: dict | None = None,
    load_weights: bool = True,
    channels: Sequence[int],
    stem: int,
    block_convs: int,
    residual: bool,
    activation: str,
    dropout: float,
    init: str,
    output: str,
    label_smoothing: float,
    channels_last: bool,
    eval_flip: bool,
    mixup: float,
    cutmix: float,
    mixup_off_epoch: int | None,
) -> ImageClassifier:
    """model=resnet: the fast residual CNN (models/resnet.py) in an ImageClassifier.

    Args:
        num_classes, image_size, optimizer, scheduler, mean, std, info: from the run (train.py).
        load_weights: unused (no pretrained weights); predict passes False to every builder.
        channels, stem, block_convs, residual, activation, dropout, init: the network
            (models.resnet.build_resnet).
        output, label_smoothing, channels_last, eval_flip, mixup, cutmix, mixup_off_epoch: how it trains
            and evaluates (ImageClassifier).
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
    return ImageClassifier(
        net,
        num_classes,
        optimizer,
        scheduler,
        output=output,
        mean=mean,
        std=std,
        label_smoothing=label_smoothing,
        channels_last=channels_last,
        eval_flip=eval_flip,
        mixup=mixup,
        cutmix=cutmix,
        mixup_off_epoch=mixup_off_epoch,
        info=info,
    )


def timm_classifier(
    *,
    num_classes: int,
    image_size: int,
    optimizer: Callable,
    scheduler: Callable | None,
    mean: Sequence[float],
    std: Sequence[float],
    info: dict | None = None,
    load_weights: bool = True,
    name: str,
    pretrained: bool,
    weights: str | None,
    allow_partial: bool,
    drop_rate: float,
    output: str,
    label_smoothing: float,
    channels_last: bool,
    freeze: bool,
    unfreeze_epoch: int | None,
    backbone_lr_mult: float,
    layer_decay: float | None,
    mixup: float,
    cutmix: float,
    mixup_off_epoch: int | None,
) -> ImageClassifier:
    """model=timm (and efficientnet_lite0): a timm backbone with a new head, in an ImageClassifier.

    Args:
        num_classes, image_size, optimizer, scheduler, mean, std, info: from the run (train.py).
        load_weights: False builds the bare architecture (predict fills it from a checkpoint).
        name, pretrained, weights, allow_partial, drop_rate: the network (models.backbones.build_timm).
        output, label_smoothing, channels_last, freeze, unfreeze_epoch, backbone_lr_mult, layer_decay,
            mixup, cutmix, mixup_off_epoch: how it trains and fine-tunes (ImageClassifier).
    """
    net = build_timm(
        name,
        num_classes,
        pretrained=pretrained and load_weights,
        weights=weights if load_weights else None,
        allow_partial=allow_partial,
        drop_rate=drop_rate,
    )
    return ImageClassifier(
        net,
        num_classes,
        optimizer,
        scheduler,
        output=output,
        mean=mean,
        std=std,
        label_smoothing=label_smoothing,
        channels_last=channels_last,
        freeze=freeze,
        unfreeze_epoch=unfreeze_epoch,
        backbone_lr_mult=backbone_lr_mult,
        layer_decay=layer_decay,
        mixup=mixup,
        cutmix=cutmix,
        mixup_off_epoch=mixup_off_epoch,
        info=info,
    )
