"""CIFAR ResNets (resnet20/32/44/56/110), written from He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image
Recognition", §4.2 (CIFAR-10 and Analysis).

§4.2: the first layer is a 3×3 convolution with 16 filters; then a stack of 6n layers of 3×3 convolutions on feature
maps of sizes {32, 16, 8}, 2n layers per size, with {16, 32, 64} filters; subsampling by convolutions with stride 2;
the network ends with global average pooling, a fully connected layer and softmax: 6n+2 weighted layers. Shortcuts
join each pair of 3×3 layers (3n shortcuts). Batch norm follows every convolution, before the activation (§3.4).
Weights are initialised as in He et al. 2015 (Kaiming normal).

Shortcuts where the dimensions grow (§3.3):
  option A: identity on a stride-2 subsampled input, the extra channels zero-padded (no parameters; the paper's
            choice for CIFAR, giving 0.27 M parameters for ResNet-20);
  option B: a 1×1 convolution with stride 2 and batch norm (projection) where the dimensions grow, identity elsewhere.

`zero_init_residual=True` starts the γ of each block's last BN at 0 (Goyal et al. 2017, "Accurate, Large Minibatch
SGD", §5.1), so every block starts as the identity. Off by default, as in the paper: with it off the residual stream's
variance grows with depth and the initial loss of an untrained ResNet-110 is about 1.3-2 × ln(10) (seeds 0-2 on
CIFAR batches), which is why He et al. warm ResNet-110 up at lr 0.01.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.layers import (Network, Stack, check_activation, check_bool, check_choice, check_int, check_io,
                                  init_kaiming, make_activation)
from cnnlab.models.registry import register_model
from cnnlab.registry import variant



class PadShortcut(nn.Module):
    """Option A: x[:, :, ::s, ::s] with (c_out - c_in) zero channels appended; no parameters, no buffers."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.extra, self.stride = c_out - c_in, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # pad order: W, H, then C (last pair)


class BasicBlock(nn.Module):
    """conv3×3-BN-act-conv3×3-BN, plus the shortcut, then the activation (He et al. 2016, Fig. 2 / §4.2)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = make_activation(activation)
        if shortcut == "none":
            self.shortcut = None  # plain network: no identity path at all
        elif stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "a":
            self.shortcut = PadShortcut(c_in, c_out, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out if self.shortcut is None else out + self.shortcut(x))


def cifar_resnet(name: str, depth: int, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 shortcut: str = "A", activation: str = "relu", zero_init_residual: bool = False,
                 width: int = 16) -> Network:
    """The shared builder of every CIFAR ResNet: depth = 6n + 2; stages of `width`, 2·`width`, 4·`width` filters
    (16/32/64 in the paper). shortcut "none" builds the *plain* network of the same depth (He et al.'s "plain"
    baselines, Fig. 6), for comparing loss surfaces with and without shortcuts."""
    shape = check_io(name, num_classes, in_channels, input_size)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")  # a programming error, not user input
    sc = check_choice(name, "shortcut", shortcut, ("a", "b", "none"))
    check_activation(name, activation)
    check_bool(name, "zero_init_residual", zero_init_residual)
    w = check_int(name, "width", width)
    widths = (w, 2 * w, 4 * w)
    n = (depth - 2) // 6

    features = Stack()
    features.add("conv", nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False))
    features.add("bn", nn.BatchNorm2d(widths[0]))
    features.add("act", make_activation(activation))
    c = widths[0]
    for i, stage_width in enumerate(widths):
        blocks = [BasicBlock(c if j == 0 else stage_width, stage_width, 2 if (i > 0 and j == 0) else 1, sc,
                             activation) for j in range(n)]
        features.add("stage", nn.Sequential(*blocks))
        c = stage_width
    features.add("pool", nn.AdaptiveAvgPool2d(1))
    head = Stack().add("flatten", nn.Flatten()).add("fc", nn.Linear(c, num_classes)).build()
    model = init_kaiming(Network(name, shape, num_classes, features.build(), head))
    model.min_size = 8  # global average pooling takes smaller images too (progressive resizing: data.augment 'resize')
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
    return model


_DOC = ("CIFAR ResNet-{d} (He et al. 2016 §4.2), 16/32/64 channels (width), shortcut A (zero-pad), B (projection) "
        "or none (plain)")

for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}", _DOC.format(d=_depth))(variant(cifar_resnet, name=f"resnet{_depth}",
                                                                     depth=_depth))
