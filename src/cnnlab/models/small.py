"""Small networks for 1×28×28 Fashion-MNIST: LeNet-5 and MiniGoogLeNet.

LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document Recognition", §II.B):
C1 conv 5×5 → 6, S2 2×2 subsampling, C3 conv 5×5 → 16, S4 2×2 subsampling, C5 120, F6 84, output 10. The paper's
32×32 input is the 28×28 image padded by 2, so C1 uses padding 2 here. Simplifications, as in most reimplementations:
C3 connects to all six S2 maps (2,416 parameters; the paper's sparse table gives 1,516), subsampling is plain average
(or max) pooling without the trainable coefficient, and the output is a linear layer rather than RBF units. Defaults are
the paper's tanh and average pooling; 61,706 parameters.

MiniGoogLeNet: the small Inception network of Zhang, Bengio, Hardt, Recht & Vinyals 2017, "Understanding deep
learning requires rethinking generalization", Appendix A, Fig. 3 — used in cyclical-learning-rate experiments (Smith
2017; PyImageSearch's MiniGoogLeNet). Conv module = conv → BN → ReLU; inception module = a 1×1 and a 3×3 conv module
side by side, concatenated; downsample module = a 3×3 stride-2 conv module beside a 3×3 stride-2 max pool,
concatenated. The paper's 7×7 mean pool (for 32×32 input) is a global average pool here, so 28×28 input works
(the map is then 6×6); at 32×32 the two are identical. Convs have no bias (BN's shift replaces it).
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.layers import (Branches, Network, Stack, check_activation, check_choice, check_io, check_prob,
                                  conv_block, dropout as dropout_layers, feature_size, flat_features, init_kaiming,
                                  make_activation)
from cnnlab.models.registry import register_model


@register_model("lenet5", "LeNet-5 (LeCun et al. 1998) for 1x28x28: conv5-6, pool, conv5-16, pool, FC 120-84-10")
def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, activation: str = "tanh",
           pool: str = "avg") -> Network:
    name = "lenet5"
    shape = check_io(name, num_classes, in_channels, input_size)
    check_activation(name, activation)
    pool_cls = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[check_choice(name, "pool", pool, ("avg", "max"))]

    features = Stack()
    conv_block(features, in_channels, 6, 5, padding=2, activation=activation)
    features.add("pool", pool_cls(2, 2))
    conv_block(features, 6, 16, 5, activation=activation)
    features.add("pool", pool_cls(2, 2))
    features = features.build()
    side = feature_size(name, features, input_size)

    head = Stack().add("flatten", nn.Flatten())
    head.add("fc", nn.Linear(flat_features(16, side), 120)).add("act", make_activation(activation))
    head.add("fc", nn.Linear(120, 84)).add("act", make_activation(activation))
    head.add("fc", nn.Linear(84, num_classes))
    return Network(name, shape, num_classes, features, head.build())


def conv_module(c_in: int, c_out: int, kernel: int, stride: int, padding: int, activation: str) -> nn.Sequential:
    return conv_block(Stack(), c_in, c_out, kernel, stride=stride, padding=padding, batch_norm=True,
                      activation=activation).build()


def inception_module(c_in: int, n1x1: int, n3x3: int, activation: str) -> Branches:
    return Branches(b1x1=conv_module(c_in, n1x1, 1, 1, 0, activation),
                    b3x3=conv_module(c_in, n3x3, 3, 1, 1, activation))


def downsample_module(c_in: int, n3x3: int, activation: str) -> Branches:
    # both branches are "valid" 3×3 / stride 2, so their outputs have the same size and can be concatenated
    return Branches(conv=conv_module(c_in, n3x3, 3, 2, 0, activation), pool=nn.MaxPool2d(3, 2))


# (kind, numbers) in order, from Zhang et al. 2017 Fig. 3: inception(1×1, 3×3), downsample(3×3)
MINIGOOGLENET = (("inception", 32, 32), ("inception", 32, 48), ("downsample", 80),
                 ("inception", 112, 48), ("inception", 96, 64), ("inception", 80, 80), ("inception", 48, 96),
                 ("downsample", 96), ("inception", 176, 160), ("inception", 176, 160))


@register_model("minigooglenet", "MiniGoogLeNet (Zhang et al. 2017 small Inception, CLR experiments) for 1x28x28")
def minigooglenet(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, dropout: float = 0.5,
                  activation: str = "relu") -> Network:
    name = "minigooglenet"
    shape = check_io(name, num_classes, in_channels, input_size)
    p = check_prob(name, "dropout", dropout)
    check_activation(name, activation)

    features, c = Stack(), 96
    features.add("conv", conv_module(in_channels, c, 3, 1, 1, activation))
    for kind, *n in MINIGOOGLENET:
        if kind == "inception":
            features.add("inception", inception_module(c, n[0], n[1], activation))
            c = n[0] + n[1]
        else:
            features.add("down", downsample_module(c, n[0], activation))
            c = n[0] + c  # the pool branch passes the input channels through
    feature_size(name, features.build(), input_size)  # raises if the two downsamples collapse the map
    features.add("pool", nn.AdaptiveAvgPool2d(1))
    head = Stack().add("flatten", nn.Flatten()).add("drop", *dropout_layers(p))
    head.add("fc", nn.Linear(c, num_classes))
    return init_kaiming(Network(name, shape, num_classes, features.build(), head.build()))
