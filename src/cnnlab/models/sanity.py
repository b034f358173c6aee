"""Initial-loss sanity check: an untrained classifier should be (nearly) uniform over its C classes, so its
cross-entropy on any batch should be close to ln(C) (2.303 for 10 classes). A much larger value means the logits
start too big (bad init or unnormalised inputs); a much smaller one that something leaks the labels.

Reference: Karpathy, "A Recipe for Training Neural Networks" (2019), "verify loss @ init"; CS231n notes, "Babysitting
the learning process: look for correct loss at chance performance".
"""

from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError


def initial_loss_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tolerance: float = 0.25) -> Dict:
    """Cross-entropy of `model` on (x, y) against ln(C), C = the model's output width.

    Runs in training mode (what the first optimizer step sees: batch-norm batch statistics, dropout on) without
    gradients, and restores the model's mode and buffers afterwards (BN running statistics are not changed).
    Returns dict(loss, expected=ln C, ratio=loss/expected, num_classes, batch_size, ok=|ratio − 1| <= tolerance).
    """
    if x.dim() < 2 or y.dim() != 1 or len(x) != len(y) or len(y) == 0:
        raise CnnlabError(f"initial_loss_check: need a batch x (N, ...) and labels y (N,), got {tuple(x.shape)} "
                          f"and {tuple(y.shape)}")
    was_training = model.training
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    model.train()
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
        model.train(was_training)
    if logits.dim() != 2:
        raise CnnlabError(f"initial_loss_check: the model outputs shape {tuple(logits.shape)}, not (N, classes); "
                          f"it is not a classifier")
    c = logits.shape[1]
    if int(y.min()) < 0 or int(y.max()) >= c:
        raise CnnlabError(f"initial_loss_check: labels must lie in 0..{c - 1} for a {c}-class model, got "
                          f"{int(y.min())}..{int(y.max())}")
    loss = F.cross_entropy(logits.float(), y.to(logits.device)).item()
    expected = math.log(c)
    ratio = loss / expected if c > 1 else float("nan")
    return dict(loss=loss, expected=expected, ratio=ratio, num_classes=c, batch_size=len(y),
                ok=bool(abs(ratio - 1.0) <= tolerance))
