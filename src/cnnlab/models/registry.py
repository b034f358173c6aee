"""The model registry: `@register_model(name, description)` on a constructor, `create_model(name, ...)` to build one.

Every constructor takes `num_classes`, `in_channels` and `input_size` (square H = W) plus its own options; its own
defaults are the model's natural input (3×32×32 CIFAR models, 1×28×28 Fashion-MNIST models, 3×224×224 reference
networks), so `create_model("vgg19")` is the 1000-class ImageNet VGG19 and `create_model("simplenn")` the CIFAR one.
Following timm's `create_model` / torchvision's `get_model`: unknown names fail with the list of valid names, unknown
options fail with the list of valid options (Registry.build).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from cnnlab.registry import Registry, keyword_defaults

MODELS = Registry("model")
_DESCRIPTIONS: Dict[str, str] = {}


def register_model(name: str, description: str) -> Callable[[Callable], Callable]:
    """Register a constructor under `name` with a one-line description (shown by `cnnlab models`)."""

    def deco(fn: Callable) -> Callable:
        MODELS.register(name)(fn)
        _DESCRIPTIONS[name] = description
        return fn

    return deco


def create_model(name: str, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 input_size: Optional[int] = None, **options: Any) -> nn.Module:
    """Build a registered model. None for num_classes / in_channels / input_size means the model's own default
    (10 / 3 / 32 for the CIFAR models). The result carries `model.input_shape == (C, H, W)`."""
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels),
                                ("input_size", input_size)) if v is not None}
    return MODELS.build(name, **kwargs, **options)


def list_models() -> List[str]:
    return MODELS.names()


def default_args(name: str) -> Dict[str, Any]:
    """The constructor's keyword defaults, e.g. {'num_classes': 10, 'in_channels': 3, 'input_size': 32, ...}."""
    return keyword_defaults(MODELS.get(name))


def count_params(name: str, **kwargs: Any) -> int:
    """Parameters of `create_model(name, **kwargs)`, built on the meta device: shapes only, no memory and no init cost
    (VGG19 has 144 M parameters; input_size=10**6 would ask for terabytes), so a caller can refuse before building."""
    with torch.device("meta"):
        model = MODELS.build(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=None)
def _param_count(name: str) -> int:
    return count_params(name)


def model_info(name: str) -> Dict[str, Any]:
    """{'name', 'description', 'input_shape' (C,H,W), 'num_classes', 'params', 'options'} at the defaults."""
    key = name.lower().replace("-", "_")
    MODELS.get(key)  # unknown name -> CnnlabError listing the valid ones
    d = default_args(key)
    return {
        "name": key,
        "description": _DESCRIPTIONS.get(key, ""),
        "input_shape": (d["in_channels"], d["input_size"], d["input_size"]),
        "num_classes": d["num_classes"],
        "params": _param_count(key),
        "options": {k: v for k, v in d.items() if k not in ("num_classes", "in_channels", "input_size")},
    }
