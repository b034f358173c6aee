"""Reference networks at ImageNet size (3×224×224), for accounting (parameters, MACs, activation memory): AlexNet,
VGG19 and the GoogLeNet Inception module in its naive and dimension-reduced forms. They build and run like every
other model, but they exist to be counted.

- AlexNet: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional Neural Networks",
  §3 and Fig. 2: conv 11×11/4 → 96, LRN, 3×3/2 max pool; conv 5×5 → 256, LRN, pool; conv 3×3 → 384, 384, 256;
  pool; FC 4096, 4096, 1000; ReLU everywhere, dropout 0.5 in the first two FC layers. `groups=2` keeps the paper's
  two-GPU split (conv2, conv4 and conv5 see only the kernel maps on their own GPU): 60,965,224 parameters, the
  paper's "60 million"; groups=1 is the single-tower form (62,378,344). The paper's 224×224 input needs padding 2 on
  conv1 to give its 55×55 maps (the famous 224-vs-227 discrepancy). LRN: k=2, n=5, α=1e-4, β=0.75 (§3.3); PyTorch's
  LocalResponseNorm divides α by n, so it is given α·n.
- VGG19: Simonyan & Zisserman 2015, configuration E (16 conv + 3 FC), 143,667,240 parameters at 224×224.
- Inception module: Szegedy et al. 2015, "Going Deeper with Convolutions", §4 and Fig. 2 (a) naive, (b) with
  dimension reductions; default filter counts are inception (3a) of Table 1 on a 28×28×192 input. Every conv is
  followed by ReLU. With num_classes=None the model is the bare module (output: its concatenated feature map);
  with a number it gets a global-average-pool + FC head so that it can be trained as a toy classifier.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from cnnlab.models.layers import (Branches, Network, Stack, check_activation, check_bool, check_choice, check_int,
                                  check_io, check_prob, conv_block, dropout as dropout_layers, feature_size,
                                  flat_features, init_kaiming, make_activation)
from cnnlab.models.registry import register_model
from cnnlab.models.vgg import CFG_E, vgg


@register_model("alexnet", "AlexNet (Krizhevsky et al. 2012) at 3x224x224, two-GPU grouped convs, 61.0 M params")
def alexnet(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, groups: int = 2, lrn: bool = True,
            dropout: float = 0.5, activation: str = "relu") -> Network:
    name = "alexnet"
    shape = check_io(name, num_classes, in_channels, input_size)
    g = int(check_choice(name, "groups", str(groups), ("1", "2")))
    check_bool(name, "lrn", lrn)
    p = check_prob(name, "dropout", dropout)
    check_activation(name, activation)

    def norm(stack: Stack) -> None:
        if lrn:
            stack.add("lrn", nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0))

    f = Stack()
    conv_block(f, in_channels, 96, 11, stride=4, padding=2, activation=activation)
    norm(f)
    f.add("pool", nn.MaxPool2d(3, 2))  # overlapping pooling, §3.4
    conv_block(f, 96, 256, 5, padding=2, groups=g, activation=activation)
    norm(f)
    f.add("pool", nn.MaxPool2d(3, 2))
    conv_block(f, 256, 384, 3, padding=1, activation=activation)
    conv_block(f, 384, 384, 3, padding=1, groups=g, activation=activation)
    conv_block(f, 384, 256, 3, padding=1, groups=g, activation=activation)
    f.add("pool", nn.MaxPool2d(3, 2))
    features = f.build()
    side = feature_size(name, features, input_size)

    head = Stack().add("flatten", nn.Flatten())
    head.add("fc", nn.Linear(flat_features(256, side), 4096)).add("act", make_activation(activation))
    head.add("drop", *dropout_layers(p))
    head.add("fc", nn.Linear(4096, 4096)).add("act", make_activation(activation))
    head.add("drop", *dropout_layers(p))
    head.add("fc", nn.Linear(4096, num_classes))
    return init_kaiming(Network(name, shape, num_classes, features, head.build()), linear_std=0.01)


@register_model("vgg19", "VGG19, configuration E (Simonyan & Zisserman 2015) at 3x224x224, 143.7 M params")
def vgg19(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224, dropout: float = 0.5,
          batch_norm: bool = False, activation: str = "relu") -> Network:
    return vgg("vgg19", CFG_E, num_classes=num_classes, in_channels=in_channels, input_size=input_size, hidden=4096,
               batch_norm=batch_norm, dropout=dropout, activation=activation)


def _conv(c_in: int, c_out: int, k: int, activation: str) -> Stack:
    return conv_block(Stack(), c_in, c_out, k, padding=k // 2, activation=activation)


def inception_naive_block(c: int, n1x1: int, n3x3: int, n5x5: int, activation: str) -> Branches:
    """Fig. 2(a): 1×1, 3×3 and 5×5 convs and a 3×3 max pool side by side; output channels n1x1+n3x3+n5x5+c."""
    return Branches(b1x1=_conv(c, n1x1, 1, activation).build(), b3x3=_conv(c, n3x3, 3, activation).build(),
                    b5x5=_conv(c, n5x5, 5, activation).build(), pool=nn.MaxPool2d(3, 1, padding=1))


def inception_reduced_block(c: int, n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int, n5x5: int,
                            pool_proj: int, activation: str) -> Branches:
    """Fig. 2(b): 1×1 reductions before the 3×3 and 5×5 convs and a 1×1 projection after the pool."""
    def reduced(n_red: int, n: int, k: int) -> nn.Sequential:
        s = _conv(c, n_red, 1, activation)
        return conv_block(s, n_red, n, k, padding=k // 2, activation=activation).build()

    proj = Stack().add("pool", nn.MaxPool2d(3, 1, padding=1))
    conv_block(proj, c, pool_proj, 1, activation=activation)
    return Branches(b1x1=_conv(c, n1x1, 1, activation).build(), b3x3=reduced(n3x3_reduce, n3x3, 3),
                    b5x5=reduced(n5x5_reduce, n5x5, 5), pool=proj.build())


def _inception_network(name: str, block: Branches, out_channels: int, num_classes: Optional[int],
                       shape) -> Network:
    features = nn.Sequential()
    features.add_module("inception", block)
    if num_classes is None:
        return Network(name, shape, None, features, nn.Identity())
    head = Stack().add("pool", nn.AdaptiveAvgPool2d(1)).add("flatten", nn.Flatten())
    head.add("fc", nn.Linear(out_channels, num_classes))
    return Network(name, shape, num_classes, features, head.build())


@register_model("inception_naive", "GoogLeNet Inception module, naive form (Szegedy et al. 2015 Fig. 2a), "
                                   "28x28x192 input, (3a) filter counts")
def inception_naive(num_classes: Optional[int] = None, in_channels: int = 192, input_size: int = 28, n1x1: int = 64,
                    n3x3: int = 128, n5x5: int = 32, activation: str = "relu") -> Network:
    name = "inception_naive"
    shape = check_io(name, num_classes, in_channels, input_size)
    for key, v in (("n1x1", n1x1), ("n3x3", n3x3), ("n5x5", n5x5)):
        check_int(name, key, v)
    check_activation(name, activation)
    block = inception_naive_block(in_channels, n1x1, n3x3, n5x5, activation)
    return _inception_network(name, block, n1x1 + n3x3 + n5x5 + in_channels, num_classes, shape)


@register_model("inception_reduced", "GoogLeNet Inception module with 1x1 dimension reductions (Szegedy et al. 2015 "
                                     "Fig. 2b), inception (3a) on 28x28x192")
def inception_reduced(num_classes: Optional[int] = None, in_channels: int = 192, input_size: int = 28,
                      n1x1: int = 64, n3x3_reduce: int = 96, n3x3: int = 128, n5x5_reduce: int = 16, n5x5: int = 32,
                      pool_proj: int = 32, activation: str = "relu") -> Network:
    name = "inception_reduced"
    shape = check_io(name, num_classes, in_channels, input_size)
    counts = dict(n1x1=n1x1, n3x3_reduce=n3x3_reduce, n3x3=n3x3, n5x5_reduce=n5x5_reduce, n5x5=n5x5,
                  pool_proj=pool_proj)
    for key, v in counts.items():
        check_int(name, key, v)
    check_activation(name, activation)
    block = inception_reduced_block(in_channels, activation=activation, **counts)
    return _inception_network(name, block, n1x1 + n3x3 + n5x5 + pool_proj, num_classes, shape)
