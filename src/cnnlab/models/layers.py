"""Building blocks shared by every model: activations by name (with a hand-written Swish), the checked `Network`
wrapper, a named-Sequential builder, argument checks, spatial-size tracing and Kaiming initialisation.

Activation, normalisation and dropout are *arguments* of the model constructors, resolved here, never new classes.

References:
- Swish: Ramachandran, Zoph & Le 2017, "Searching for Activation Functions" (x·σ(βx); β=1 is SiLU, Elfwing et al.).
- GELU: Hendrycks & Gimpel 2016. ELU: Clevert et al. 2016. Leaky ReLU: Maas et al. 2013.
- Kaiming init: He, Zhang, Ren & Sun 2015, "Delving Deep into Rectifiers", §2.2 (fan-out mode as in torchvision).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

ACTIVATIONS = Registry("activation")


class Swish(nn.Module):
    """Swish(x) = x·σ(βx). β fixed (default 1, which is SiLU) or a learnable scalar initialised at `beta`.

    Written out rather than using nn.SiLU so that β can be learned; one scalar parameter per module instance, which
    DDP synchronises like any other parameter.
    """

    def __init__(self, beta: float = 1.0, learnable: bool = False):
        super().__init__()
        self.learnable = bool(learnable)
        if self.learnable:
            self.beta = nn.Parameter(torch.tensor(float(beta)))
        else:
            self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.learnable and self.beta == 1.0:
            return x * torch.sigmoid(x)  # skip a multiply by one on the common path
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self) -> str:
        return f"beta={'learnable' if self.learnable else self.beta}"


@ACTIVATIONS.register("relu")
def _relu() -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def _leaky_relu(negative_slope: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(negative_slope)


@ACTIVATIONS.register("elu")
def _elu(alpha: float = 1.0) -> nn.Module:
    return nn.ELU(alpha)


@ACTIVATIONS.register("gelu")
def _gelu() -> nn.Module:
    return nn.GELU()


@ACTIVATIONS.register("tanh")
def _tanh() -> nn.Module:
    return nn.Tanh()


@ACTIVATIONS.register("sigmoid")
def _sigmoid() -> nn.Module:
    return nn.Sigmoid()


@ACTIVATIONS.register("swish")
def _swish(beta: float = 1.0) -> nn.Module:
    return Swish(beta, learnable=False)


@ACTIVATIONS.register("swish_learnable")
def _swish_learnable(beta: float = 1.0) -> nn.Module:
    return Swish(beta, learnable=True)


def make_activation(name: str, **kwargs) -> nn.Module:
    """A fresh activation module by registry name: make_activation("swish"), ("leaky_relu", negative_slope=0.2)."""
    return ACTIVATIONS.build(name, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# argument checks: models are built from config files and the command line, so bad values must name themselves


def check_int(model: str, key: str, value, minimum: int = 1) -> int:
    # bool is an int subclass: `num_classes=True` is a config typo, not 1
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CnnlabError(f"model {model!r}: option {key}={value!r} must be an integer >= {minimum}")
    return value


def check_prob(model: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise CnnlabError(f"model {model!r}: option {key}={value!r} must be a probability in [0, 1)")
    return float(value)


def check_positive(model: str, key: str, value, high: float, what: str = "") -> float:
    """A number in (0, high]; `what` says in words what the option is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= high:
        raise CnnlabError(f"model {model!r}: option '{key}'{what} must be a number in (0, {high:g}], got {value!r}")
    return float(value)


def check_bool(model: str, key: str, value) -> bool:
    if not isinstance(value, bool):
        raise CnnlabError(f"model {model!r}: option {key}={value!r} must be true or false")
    return value


def check_choice(model: str, key: str, value, choices: Sequence[str]) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v not in choices:
        raise CnnlabError(f"model {model!r}: option {key}={value!r} must be one of {', '.join(choices)}")
    return v


def check_activation(model: str, name) -> str:
    if name not in ACTIVATIONS:
        raise CnnlabError(f"model {model!r}: unknown activation {name!r}; known: {', '.join(ACTIVATIONS.names())}")
    return name


def check_io(model: str, num_classes, in_channels, input_size) -> Tuple[int, int, int]:
    """The three arguments every constructor takes; returns the (C, H, W) input shape."""
    if num_classes is not None:
        check_int(model, "num_classes", num_classes)
    check_int(model, "in_channels", in_channels)
    check_int(model, "input_size", input_size)
    return (in_channels, input_size, input_size)


# ---------------------------------------------------------------------------------------------------------------
# structure


class Network(nn.Module):
    """features -> classifier, with the input shape checked on every call.

    The check compares Python ints, so torch.compile turns it into a shape guard rather than a graph break, and it
    turns the usual deep "mat1 and mat2 shapes cannot be multiplied" traceback into a message naming the shape.
    """

    def __init__(self, name: str, input_shape: Tuple[int, int, int], num_classes, features: nn.Module,
                 classifier: nn.Module):
        super().__init__()
        self.name = name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = num_classes  # None for bare modules (the inception modules) that output feature maps
        self.features = features
        self.classifier = classifier

    # A network whose classifier pools globally may take smaller or larger images (progressive resizing): it sets
    # min_size to the smallest side it can take; None keeps the exact input shape it was built for.
    min_size: Optional[int] = None

    def _fits(self, x: torch.Tensor) -> bool:
        if x.dim() != 4:
            return False
        if self.min_size is None:
            return tuple(x.shape[1:]) == self.input_shape
        return x.shape[1] == self.input_shape[0] and min(x.shape[2:]) >= self.min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fits(x):
            c, h, w = self.input_shape
            raise CnnlabError(
                f"model {self.name!r} expects input of shape (N, {c}, {h}, {w}), i.e. (C,H,W) = {c}x{h}x{w}, "
                f"got {tuple(x.shape)}; build it with in_channels and input_size matching the data "
                f"(or resize the data)")
        return self.classifier(self.features(x))


class Branches(nn.Module):
    """Runs parallel branches on one input and concatenates their outputs along channels (Inception-style)."""

    def __init__(self, **branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleDict(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches.values()], dim=1)

    def out_size(self, size: int) -> int:
        sizes = {spatial_size(b, size, "branch") for b in self.branches.values()}
        if len(sizes) != 1:
            raise CnnlabError(f"inception branches give different spatial sizes {sorted(sizes)} for input {size}")
        return sizes.pop()


class Stack:
    """Builds an nn.Sequential with readable numbered names (conv1, bn1, act1, pool1, ...) for summaries."""

    def __init__(self):
        self._items: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._counts: Counter = Counter()

    def add(self, kind: str, *modules: nn.Module) -> "Stack":
        for m in modules:
            self._counts[kind] += 1
            self._items[f"{kind}{self._counts[kind]}"] = m
        return self

    def build(self) -> nn.Sequential:
        return nn.Sequential(self._items)


def conv_block(stack: Stack, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0,
               batch_norm: bool = False, activation: str = "relu", groups: int = 1) -> Stack:
    """conv [-> batch norm] -> activation. The conv drops its bias under batch norm (BN's shift replaces it)."""
    stack.add("conv", nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups,
                                bias=not batch_norm))
    if batch_norm:
        stack.add("bn", nn.BatchNorm2d(c_out))
    return stack.add("act", make_activation(activation))


def dropout(p: float) -> List[nn.Module]:
    """[nn.Dropout(p)], or nothing when p == 0 so that the default network matches the paper's layer list."""
    return [nn.Dropout(p)] if p > 0 else []


# ---------------------------------------------------------------------------------------------------------------
# spatial sizes: fail at construction with the layer that collapses the map, not at the first forward


def _pair_first(v) -> int:
    return v[0] if isinstance(v, (tuple, list)) else v


def _layer_out(m: nn.Module, size: int) -> int:
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = (_pair_first(m.kernel_size), _pair_first(m.stride), _pair_first(m.padding))
        d = _pair_first(getattr(m, "dilation", 1))
        num = size + 2 * p - d * (k - 1) - 1
        if num < 0:
            return 0
        return (-(-num // s) if getattr(m, "ceil_mode", False) else num // s) + 1
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _pair_first(m.output_size)
    if hasattr(m, "out_size"):
        return m.out_size(size)
    if isinstance(m, nn.Sequential):
        return spatial_size(m, size, "")
    return size


def spatial_size(seq: nn.Module, size: int, model: str) -> int:
    """Side of the square feature map after `seq` for a size×size input; CnnlabError if some layer collapses it."""
    children = list(seq.named_children()) if isinstance(seq, nn.Sequential) else [("", seq)]
    for name, m in children:
        size = _layer_out(m, size)
        if size <= 0:
            raise CnnlabError(f"model {model!r}: the feature map shrinks to nothing at layer {name!r} "
                              f"({type(m).__name__})")
    return size


def min_input_size(seq: nn.Module, start: int = 1, limit: int = 4096) -> int:
    """Smallest input side that `seq` maps to a non-empty feature map (for error messages)."""
    for size in range(start, limit):
        try:
            spatial_size(seq, size, "")
            return size
        except CnnlabError:
            continue
    return limit


def feature_size(model: str, features: nn.Sequential, input_size: int) -> int:
    """spatial_size with a message that says which input sizes would work."""
    try:
        return spatial_size(features, input_size, model)
    except CnnlabError as e:
        raise CnnlabError(f"{e}: input_size={input_size} is too small; use input_size >= "
                          f"{min_input_size(features)}") from None


# ---------------------------------------------------------------------------------------------------------------
# initialisation


def init_kaiming(model: nn.Module, linear_std: float = None) -> nn.Module:
    """He et al. 2015 normal init (fan_out, ReLU gain) for convs; BN γ=1, β=0; linear layers either PyTorch's
    default (linear_std=None) or N(0, linear_std²) with zero bias (torchvision's VGG uses 0.01, which keeps the
    initial logits small so the first loss is close to ln(classes))."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
    return model


def flat_features(channels: int, side: int) -> int:
    return channels * side * side


def as_int_tuple(model: str, key: str, value: Iterable) -> Tuple[int, ...]:
    """A sequence of positive ints (e.g. MLP hidden sizes); a bare int means one layer."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise CnnlabError(f"model {model!r}: option {key}={value!r} must be a list of positive integers") from None
    for v in items:
        check_int(model, key, v)
    return items
