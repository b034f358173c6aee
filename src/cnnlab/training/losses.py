"""Training losses by name (`train.loss`), for Project 2 §1.4b's comparison of loss functions.

    cross_entropy  softmax + negative log-likelihood (with `train.label_smoothing`, Szegedy et al. 2016)
    multi_margin   multi-class hinge: mean over wrong classes j of max(0, 1 - s_y + s_j) (Weston & Watkins 1999,
                   torch's multi_margin_loss, margin 1)
    mse            mean squared error between the softmax and the one-hot target (smoothed like cross-entropy when
                   label smoothing is set); on probabilities, so it is bounded and trains with the same lrs

Validation always reports plain cross-entropy, so runs with different training losses compare on one scale; the
curves say which loss the training column holds.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as Fn

from cnnlab.registry import Registry

LOSSES = Registry("loss")


@LOSSES.register("cross_entropy")
def _cross_entropy(label_smoothing: float = 0.0) -> Callable:
    return lambda out, y: Fn.cross_entropy(out, y, label_smoothing=label_smoothing)


@LOSSES.register("multi_margin")
def _multi_margin(label_smoothing: float = 0.0) -> Callable:
    return lambda out, y: Fn.multi_margin_loss(out, y)


@LOSSES.register("mse")
def _mse(label_smoothing: float = 0.0) -> Callable:
    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = out.shape[1]
        target = Fn.one_hot(y, k).to(out.dtype) * (1 - label_smoothing) + label_smoothing / k
        return Fn.mse_loss(out.softmax(1), target, reduction="sum") / len(y)
    return loss


def build_loss(name: str, label_smoothing: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return LOSSES.get(name)(label_smoothing=label_smoothing)


def describe(name: str, label_smoothing: float = 0.0) -> str:
    """What the training loss column holds, for figure labels."""
    base = {"cross_entropy": "cross-entropy", "multi_margin": "multi-class hinge", "mse": "MSE on softmax"}[name]
    return f"{base}, label smoothing {label_smoothing:g}" if label_smoothing and name != "multi_margin" else base
