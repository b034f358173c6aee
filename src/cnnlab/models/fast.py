"""`fastcnn`: a network built for time to accuracy on a CPU, written from the published descriptions of Page 2018
("How to train your ResNet", the DAWNBench series) and Jordan 2024 ("94% on CIFAR-10 in 3.29 seconds on a single
GPU", arXiv:2404.00498), not from either's code.

    input 3×32×32 (normalised)
    whiten: conv 2×2, no padding, 2·12 filters, FROZEN     -> 24×31×31   (Jordan 2024 §3.2)
    GELU
    block(24 -> w1), block(w1 -> w2), block(w2 -> w3), each:                  (Page 2018's conv-pool-BN order)
        conv 3×3 pad 1, max pool 2×2, BN, GELU, conv 3×3 pad 1, BN, GELU     31 -> 15 -> 7 -> 3
    global max pool, FC w3 -> classes (no bias), logits × `head_scale`

The first layer is *whitening*: its 24 filters are the 12 eigenvectors of the covariance of the training set's 2×2×3
patches, each divided by sqrt(eigenvalue + eps), and their negatives, so after it the patches are decorrelated with
unit variance and the GELU sees both signs. It needs the data, so it is computed by `init_from_data(images)`; the
trainer calls that hook (any model may define it) on a few thousand training images before the first step of a new
run, never on resume (the weights then come from the checkpoint). Until it is called the layer holds a plain random
init, so the model works untouched by training code too (summaries, accounting, export).

Why these choices, not a ResNet: at equal accuracy, wide convolutions at small spatial sizes run closer to the
CPU's matrix-multiply peak than ResNet-20's 16-channel 32×32 maps, and the net reaches ~94% (lossless CIFAR-10) in
about 10 epochs where ResNet-20 needs ~60. `bn_weight=False` freezes BN's scale at 1 (only the shift learns), as
both sources do; `head_scale` < 1 keeps the initial logits small, so the first loss is ~ln(classes).

`whiten_bias_epochs=N` (Jordan 2024 §3.2; airbench94 uses 3): the whitening layer's bias trains for the first N
epochs only, then stays fixed. The model only declares it (`parameter_epochs()`, a hook any model may define, like
`init_from_data`); the training layer enforces it (training/optim.py gives the bias a group of its own, and the
schedule sets its lr to 0 after N epochs). 0 freezes the bias from the start; None (the default) trains it
throughout, as before. The backward pass still computes the frozen bias's gradient (airbench switches its
requires_grad off per epoch, which needs a per-epoch model hook in the trainer; there is none).

`identity_init=True` (Jordan 2024 §3.3, "identity initialization"): each 3×3 conv's first min(c_in, c_out) filters
start as the identity (a Dirac kernel), the rest keep PyTorch's default init, so at the start every block passes its
input through beside the random features. `bn_momentum` is PyTorch's (the weight of each new batch in the running
statistics); airbench94's BatchNorm(momentum=0.6) is PyTorch's 0.4. Both default to None, the earlier behaviour
(off; 0.1), so recorded runs keep their identity and their reports' columns.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.layers import (Network, Stack, as_int_tuple, check_activation, check_bool, check_io,
                                  check_positive, make_activation)
from cnnlab.models.registry import register_model


class Whiten(nn.Conv2d):
    """2×2 conv whose weights are set from data (`init_from_data`) and never trained; its bias does train."""

    def __init__(self, c_in: int, eps: float = 5e-4):
        super().__init__(c_in, 2 * c_in * 4, kernel_size=2, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """images: (N, C, H, W) float, normalised as the model will see them."""
        c, k = self.in_channels, 2
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)          # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        patches = patches - patches.mean(0, keepdim=True)
        cov = patches.T @ patches / max(1, patches.shape[0] - 1)
        eigval, eigvec = torch.linalg.eigh(cov.double())
        filters = (eigvec.T / torch.sqrt(eigval.clamp_min(0) + self.eps)[:, None]).float()
        filters = filters.reshape(-1, c, k, k)                            # eigvec.T rows are (C, k, k) in order
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))
        self.bias.zero_()


def _bn(c: int, weight: bool, momentum: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, momentum=momentum)
    if not weight:
        bn.weight.requires_grad_(False)  # scale stays 1; with it frozen a conv before BN is scale-invariant
    return bn


def _conv(c_in: int, c_out: int, identity: bool) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    if identity:  # the first min(c_in, c_out) filters pass their input channel through (Jordan 2024 §3.3)
        with torch.no_grad():
            nn.init.dirac_(conv.weight[:min(c_in, c_out)])
    return conv


def _block(stack: Stack, c_in: int, c_out: int, activation: str, bn_weight: bool, identity: bool,
           bn_momentum: float) -> None:
    stack.add("conv", _conv(c_in, c_out, identity))
    stack.add("pool", nn.MaxPool2d(2))
    stack.add("bn", _bn(c_out, bn_weight, bn_momentum))
    stack.add("act", make_activation(activation))
    stack.add("conv", _conv(c_out, c_out, identity))
    stack.add("bn", _bn(c_out, bn_weight, bn_momentum))
    stack.add("act", make_activation(activation))


class FastNetwork(Network):
    """Network plus the data-dependent initialisation hook the trainer looks for, and the parameters it trains for a
    limited number of epochs."""

    whiten_bias_epochs = None
    min_size = 9  # global max pooling takes any size the whitening conv and three 2x2 poolings leave a pixel of

    def init_from_data(self, images: torch.Tensor) -> None:
        self.features[0].init_from_data(images)

    def parameter_epochs(self) -> dict:
        """{parameter name: the number of first epochs it trains for}; parameters not named train throughout."""
        if not self.whiten_bias_epochs:  # None: always trained; 0: requires_grad is off, so no optimizer sees it
            return {}
        bias = self.features[0].bias
        return {name: self.whiten_bias_epochs for name, p in self.named_parameters() if p is bias}


@register_model("fastcnn", "CPU time-to-accuracy net (Page 2018 / Jordan 2024): 2x2 whitening conv, 3 conv-pool-BN "
                           "blocks 64-256-256, GELU")
def fastcnn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
            widths: Sequence[int] = (64, 256, 256), activation: str = "gelu", bn_weight: bool = False,
            head_scale: float = 1 / 9, whiten_bias_epochs: Optional[int] = None,
            identity_init: Optional[bool] = None, bn_momentum: Optional[float] = None) -> FastNetwork:
    name = "fastcnn"
    shape = check_io(name, num_classes, in_channels, input_size)
    widths = as_int_tuple(name, "widths", widths)
    if len(widths) != 3:
        raise CnnlabError(f"model {name!r}: option 'widths' needs 3 block widths, got {list(widths)}")
    check_activation(name, activation)
    check_bool(name, "bn_weight", bn_weight)
    # None, the default of both, means "as before" (off; PyTorch's 0.1): a report compares recorded runs' options with
    # the defaults filled in, and a None default, like whiten_bias_epochs', adds no column to their tables
    identity_init = bool(identity_init is not None and check_bool(name, "identity_init", identity_init))
    bn_momentum = check_positive(name, "bn_momentum", 0.1 if bn_momentum is None else bn_momentum, 1,
                                 " (the weight of each batch in BN's running statistics; PyTorch's default 0.1)")
    check_positive(name, "head_scale", head_scale, 10)
    if whiten_bias_epochs is not None and (isinstance(whiten_bias_epochs, bool) or not isinstance(
            whiten_bias_epochs, int) or whiten_bias_epochs < 0):
        raise CnnlabError(f"model {name!r}: option 'whiten_bias_epochs' must be a whole number of epochs >= 0 or "
                          f"null (trained throughout), got {whiten_bias_epochs!r}")
    if input_size < 17:
        raise CnnlabError(f"model {name!r}: input_size={input_size} is too small; use input_size >= 17 "
                          f"(three 2x2 poolings after the 2x2 whitening conv)")

    features = Stack().add("whiten", Whiten(in_channels)).add("act", make_activation(activation))
    c = 8 * in_channels
    for w in widths:
        _block(features, c, w, activation, bn_weight, identity_init, bn_momentum)
        c = w
    head = Stack().add("pool", nn.AdaptiveMaxPool2d(1)).add("flatten", nn.Flatten())
    head.add("fc", nn.Linear(c, num_classes, bias=False)).add("scale", Scale(head_scale))
    net = FastNetwork(name, shape, num_classes, features.build(), head.build())
    net.whiten_bias_epochs = whiten_bias_epochs
    if whiten_bias_epochs == 0:
        net.features[0].bias.requires_grad_(False)
    return net


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"{self.factor:g}"
