"""Evaluation in depth: test-time augmentation, per-class accuracy, the confusion matrix and its figure.

Test-time augmentation (`tta`) averages the softmax of several views of each image, as in the fast CIFAR-10
recipes (Page 2018, Jordan 2024): `flip` = the image and its mirror; `flip-translate` = those two, each also
shifted by one pixel up, down, left and right (10 views; the border is filled by reflection, as a crop of a
reflect-padded image would be). The views are taken of the normalised batch on its device, so they cost only the
extra forward passes.
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as Fn

from cnnlab.errors import CnnlabError
from cnnlab.plotting import new_figure
from cnnlab.training import runtime

TTA_MODES = ("none", "flip", "flip-translate")
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def views(x: torch.Tensor, mode: str) -> List[torch.Tensor]:
    """The batch as the TTA mode sees it: a list of batches of the same shape."""
    if mode not in TTA_MODES:
        raise CnnlabError(f"--tta {mode!r} is not one of {', '.join(TTA_MODES)}")
    if mode == "none":
        return [x]
    out = [x, x.flip(3)]
    if mode == "flip-translate":
        out = [_shift(v, dy, dx) for v in out for dy, dx in SHIFTS]
    return out


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    if dy == dx == 0:
        return x
    h, w = x.shape[2:]
    padded = Fn.pad(x, (1, 1, 1, 1), mode="reflect")
    return padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def predict_probs(model, loader, device, tta: str = "none", amp: str = "none") -> torch.Tensor:
    """Softmax probabilities (CPU, float32) for every image of a loader, averaged over the TTA views."""
    model.eval()
    outs = []
    with torch.no_grad(), runtime.autocast(device, amp):
        for x, _ in loader:
            vs = views(x, tta)
            outs.append(sum(model(v).float().softmax(1) for v in vs).div(len(vs)).cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def confusion(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[i, j] = images of true class i predicted as j."""
    return torch.bincount(y * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)


def scores(probs: torch.Tensor, y: torch.Tensor, classes: List[str]) -> Dict[str, object]:
    """Loss (NLL of the averaged probabilities), accuracy, per-class accuracy and the confusion matrix."""
    pred = probs.argmax(1)
    conf = confusion(y, pred, len(classes))
    per = [{"class": c, "images": int(conf[i].sum()), "acc": float(conf[i, i] / conf[i].sum()) if conf[i].sum()
            else None} for i, c in enumerate(classes)]
    loss = Fn.nll_loss(probs.clamp_min(1e-12).log(), y).item()
    return {"loss": loss, "acc": float((pred == y).double().mean()), "per_class": per, "confusion": conf.tolist()}


def confusion_csv(conf: List[List[int]], classes: List[str]) -> str:
    rows = ["true\\predicted," + ",".join(classes)]
    rows += [f"{c}," + ",".join(str(v) for v in r) for c, r in zip(classes, conf)]
    return "\n".join(rows) + "\n"


def confusion_figure(conf: List[List[int]], classes: List[str], title: str):
    """Row-normalised confusion matrix (each true class sums to 100%), counts written in the cells."""
    m = torch.tensor(conf, dtype=torch.float64)
    share = (m / m.sum(1, keepdim=True).clamp_min(1)).numpy() * 100
    n = len(classes)
    fig, axes = new_figure(figsize=(2.2 + 0.55 * n, 1.6 + 0.5 * n))
    ax = axes[0][0]
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label="% of the true class", shrink=0.8)
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 55 else "#222")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    return fig
