"""VGG networks (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
Table 1), built by one function from a configuration list.

vgg_a / vgg_a_bn: configuration A (8 conv layers, 64-M-128-M-256-256-M-512-512-M-512-512-M) on 32×32 CIFAR input,
where the five 2×2 max pools leave a 1×1×512 map, and a 512-512-classes classifier (three FC layers, scaled down from
the paper's 4096-4096-1000 as is usual on CIFAR); with and without batch norm (Ioffe & Szegedy 2015) after each conv.
VGG19 (configuration E) for 224×224 accounting lives in reference.py over the same builder.

Convolutions are 3×3 with padding 1 (size-preserving); dropout follows the first two FC layers (paper §3.1).
Init: Kaiming normal for convs, N(0, 0.01) for FC layers, as in torchvision's VGG.
"""

from __future__ import annotations

from typing import Sequence, Union

from torch import nn

from cnnlab.models.layers import (Network, Stack, check_activation, check_bool, check_io, check_prob, conv_block,
                                  dropout as dropout_layers, feature_size, flat_features, init_kaiming,
                                  make_activation)
from cnnlab.models.registry import register_model

# Table 1 of the paper; "M" is a 2×2 max pool with stride 2.
CFG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
CFG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg(name: str, cfg: Sequence[Union[int, str]], *, num_classes: int, in_channels: int, input_size: int,
        hidden: int, batch_norm: bool, dropout: float, activation: str) -> Network:
    """The shared builder: conv stack from `cfg`, then FC hidden -> FC hidden -> FC num_classes."""
    shape = check_io(name, num_classes, in_channels, input_size)
    check_bool(name, "batch_norm", batch_norm)
    p = check_prob(name, "dropout", dropout)
    check_activation(name, activation)

    features, c = Stack(), in_channels
    for v in cfg:
        if v == "M":
            features.add("pool", nn.MaxPool2d(2, 2))
        else:
            conv_block(features, c, v, 3, padding=1, batch_norm=batch_norm, activation=activation)
            c = v
    features = features.build()
    side = feature_size(name, features, input_size)

    head = Stack().add("flatten", nn.Flatten())
    head.add("fc", nn.Linear(flat_features(c, side), hidden)).add("act", make_activation(activation))
    head.add("drop", *dropout_layers(p))
    head.add("fc", nn.Linear(hidden, hidden)).add("act", make_activation(activation))
    head.add("drop", *dropout_layers(p))
    head.add("fc", nn.Linear(hidden, num_classes))
    return init_kaiming(Network(name, shape, num_classes, features, head.build()), linear_std=0.01)


@register_model("vgg_a", "VGG configuration A (8 conv, Simonyan & Zisserman 2015) for 32x32, FC 512-512-classes")
def vgg_a(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, dropout: float = 0.5,
          activation: str = "relu") -> Network:
    return vgg("vgg_a", CFG_A, num_classes=num_classes, in_channels=in_channels, input_size=input_size, hidden=512,
               batch_norm=False, dropout=dropout, activation=activation)


@register_model("vgg_a_bn", "VGG configuration A with batch norm after every conv, for 32x32, FC 512-512-classes")
def vgg_a_bn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, dropout: float = 0.5,
             activation: str = "relu") -> Network:
    return vgg("vgg_a_bn", CFG_A, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
               hidden=512, batch_norm=True, dropout=dropout, activation=activation)
