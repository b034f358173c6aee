"""An exponential moving average of the weights (`train.ema`), on torch's `AveragedModel`.

The average follows every optimizer step: `ema = d * ema + (1 - d) * w` for the parameters and the floating
buffers (BatchNorm's running statistics, so the averaged network is evaluated with statistics of its own era), with
the decay warmed up as `d = min(decay, (1 + n) / (10 + n))` after n updates (TensorFlow's ExponentialMovingAverage
with `num_updates`, timm's ModelEmaV3 `use_warmup`): early on, when the weights move fast, the average does not lag
far behind an initialisation it should forget. Integer buffers (`num_batches_tracked`) are copied.

Why on AveragedModel rather than alone: it owns the copy of the network, the first update's copy and the
grouping of tensors by device and dtype for `torch._foreach_lerp_`. What it lacks is the decay schedule (its
`get_ema_multi_avg_fn` has a fixed decay), supplied here as a `multi_avg_fn`; the update count is kept on the host
so that computing the decay never reads a number back from an accelerator.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmed_decay(decay: float, updates: int) -> float:
    """The decay used for the update after `updates` earlier ones."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """The averaged copy of `model` (`.module`, in eval mode, no gradients) and its update count."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = float(decay), 0
        self._avg = AveragedModel(model, multi_avg_fn=self._blend, use_buffers=True)
        self._avg.requires_grad_(False)
        self.module = self._avg.module.eval()

    @torch.no_grad()
    def _blend(self, averaged, current, _count) -> None:
        d = warmed_decay(self.decay, self.updates - 1)  # `updates` was already advanced by update()
        if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:
            for a, c in zip(averaged, current):
                a.copy_(c)

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        self._avg.update_parameters(model)
        self.module.eval()  # update_parameters leaves the mode alone, but BN must never train in the copy

    def state_dict(self) -> Dict[str, Any]:
        return {"updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
        self._avg.n_averaged.fill_(self.updates)


def served_weights(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """The weights a checkpoint is evaluated, predicted and analysed with: the average when the run kept one."""
    ema = ckpt.get("ema")
    return ema["weights"] if isinstance(ema, dict) and isinstance(ema.get("weights"), dict) else ckpt["model"]
