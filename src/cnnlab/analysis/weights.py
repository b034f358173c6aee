"""What a trained network holds: weight histograms and sparsity, first-layer filters, feature maps, saliency.

- Histograms and sparsity per layer (weights of convolutions and linear layers, i.e. every tensor with 2+ dimensions;
  biases and BN parameters are left out, as L1/L2 leave them alone by default). Sparsity is the share of weights with
  |w| < threshold; several runs (e.g. L1 against L2, Goodfellow et al. 2016, §7.1) share the histogram bins of each
  layer so their bars line up.
- First-layer filters as an image grid (Krizhevsky et al. 2012, Fig. 3): each filter scaled to [0, 1] on its own.
- Feature maps: the output of one named layer for one image (Zeiler & Fergus 2014 look at them layer by layer).
- Saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks", §3.1): |d score_c / d x|,
  the largest over colour channels, with score_c the unnormalised class score (logit) before the softmax.
Histograms and filters read a state dict only, so they need neither the model code nor the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.plotting import new_figure


# ----------------------------------------------------------------------------------------------------------------------
# Histograms and sparsity

def weight_tensors(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Layer name -> weight tensor, for every floating tensor with 2+ dimensions (convolutions, linear layers)."""
    out = {k[: -len(".weight")] if k.endswith(".weight") else k: v.detach().float().cpu()
           for k, v in state.items() if torch.is_floating_point(v) and v.dim() >= 2}
    if not out:
        raise CnnlabError("the state dict holds no weight matrices or convolution kernels")
    return out


@dataclass
class LayerStats:
    layer: str
    params: int
    sparsity: float      # share with |w| < threshold
    mean_abs: float
    std: float
    max_abs: float
    edges: List[float]   # histogram bin edges (bins + 1)
    counts: List[int]


@dataclass
class WeightStats:
    label: str
    threshold: float
    layers: List[LayerStats]

    @property
    def sparsity(self) -> float:
        """Share of all weights (every layer) below the threshold."""
        total = sum(s.params for s in self.layers)
        return sum(s.sparsity * s.params for s in self.layers) / total

    def rows(self) -> List[dict]:
        return [{"label": self.label, "layer": s.layer, "params": s.params, "threshold": self.threshold,
                 "sparsity": s.sparsity, "mean_abs": s.mean_abs, "std": s.std, "max_abs": s.max_abs}
                for s in self.layers] + [{"label": self.label, "layer": "ALL",
                                          "params": sum(s.params for s in self.layers),
                                          "threshold": self.threshold, "sparsity": self.sparsity}]

    def hist_rows(self) -> List[dict]:
        return [{"label": self.label, "layer": s.layer, "bin_left": s.edges[i], "bin_right": s.edges[i + 1],
                 "count": c} for s in self.layers for i, c in enumerate(s.counts)]


def sparsity(state: Dict[str, torch.Tensor], threshold: float = 1e-3) -> float:
    """Share of all weights (every conv kernel and weight matrix) with |w| < threshold; NaN counts as not small."""
    ws = list(weight_tensors(state).values())
    return sum(int((w.abs() < threshold).sum()) for w in ws) / sum(w.numel() for w in ws)


def weight_stats(states: Dict[str, Dict[str, torch.Tensor]], threshold: float = 1e-3,
                 bins: int = 60) -> List[WeightStats]:
    """label -> state dict, for one run or several; layers common to all runs share their histogram bins."""
    if threshold <= 0 or bins < 1:
        raise CnnlabError(f"weights needs threshold > 0 and bins >= 1, got threshold={threshold} bins={bins}")
    tensors = {label: weight_tensors(s) for label, s in states.items()}
    span: Dict[str, float] = {}
    for ws in tensors.values():
        for name, w in ws.items():  # a diverged run's NaN/inf weights are left out of the bins, not a crash
            finite = w[torch.isfinite(w)]
            span[name] = max(span.get(name, 0.0), float(finite.abs().max()) if finite.numel() else 0.0) or 1e-12
    out = []
    for label, ws in tensors.items():
        layers = []
        for name, w in ws.items():
            edges = torch.linspace(-span[name], span[name], bins + 1)
            counts = torch.histc(w[torch.isfinite(w)], bins=bins, min=-span[name], max=span[name])
            a = w.abs()
            layers.append(LayerStats(name, w.numel(), float((a < threshold).float().mean()), float(a.mean()),
                                     float(w.std()) if w.numel() > 1 else 0.0, float(a.max()),
                                     edges.tolist(), [int(c) for c in counts.tolist()]))
        out.append(WeightStats(label, threshold, layers))
    return out


def plot_histograms(stats: Sequence[WeightStats], axes=None, max_layers: int = 12):
    """One axis per layer (up to max_layers), each run's histogram overlaid, log count axis; one legend for the
    figure (outside the axes) when several runs are compared."""
    names = [s.layer for s in stats[0].layers][:max_layers]
    if axes is None:
        cols = min(4, len(names))
        rows = math.ceil(len(names) / cols)
        _, axes = new_figure(rows, cols, figsize=(3.6 * cols, 2.9 * rows))
    flat = list(np.ravel(axes))
    for ax, name in zip(flat, names):
        title = []
        for k, st in enumerate(stats):
            layer = next((s for s in st.layers if s.layer == name), None)
            if layer is None:
                continue
            ax.stairs(layer.counts, layer.edges, color=f"C{k}", label=st.label, fill=len(stats) == 1, alpha=0.8)
            title.append(f"{layer.sparsity:.0%}")
        ax.set_yscale("log")
        ax.set_title(f"{name}\nsparsity {' / '.join(title)} (|w|<{stats[0].threshold:g})", fontsize=8)
        ax.set(xlabel="weight value", ylabel="count (log)")
    for ax in flat[len(names):]:
        ax.axis("off")
    if len(stats) > 1:
        handles, labels = flat[0].get_legend_handles_labels()
        flat[0].figure.legend(handles, labels, loc="outside upper center", ncol=min(4, len(labels)))
    return axes


# ----------------------------------------------------------------------------------------------------------------------
# First-layer filters

@dataclass
class FilterGrid:
    layer: str
    weights: np.ndarray  # [filters, in_channels, k, k]

    def rows(self) -> List[dict]:
        f, c, h, w = self.weights.shape
        return [{"filter": i, "channel": ch, "row": r, "col": k, "weight": float(self.weights[i, ch, r, k])}
                for i in range(f) for ch in range(c) for r in range(h) for k in range(w)]

    def images(self) -> np.ndarray:
        """[filters, k, k, 3 or 1] scaled to [0, 1] per filter; channels other than 1 or 3 are averaged."""
        w = self.weights
        if w.shape[1] not in (1, 3):
            w = w.mean(axis=1, keepdims=True)
        lo = w.min(axis=(1, 2, 3), keepdims=True)
        hi = w.max(axis=(1, 2, 3), keepdims=True)
        return ((w - lo) / np.maximum(hi - lo, 1e-12)).transpose(0, 2, 3, 1)

    def plot(self, ax):
        imgs = self.images()
        n, k = len(imgs), imgs.shape[1]
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        canvas = np.ones((rows * (k + 1) + 1, cols * (k + 1) + 1, imgs.shape[3]))
        for i, img in enumerate(imgs):
            r, c = divmod(i, cols)
            canvas[1 + r * (k + 1): 1 + r * (k + 1) + k, 1 + c * (k + 1): 1 + c * (k + 1) + k] = img
        ax.imshow(canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas, cmap="gray", interpolation="nearest")
        ax.set_title(f"{self.layer}: {n} filters {k}x{k}")
        ax.axis("off")
        return ax


def first_layer_filters(state: Dict[str, torch.Tensor], ax=None) -> FilterGrid:
    """The first 4-d weight of the state dict (registration order: the input convolution)."""
    for k, v in state.items():
        if torch.is_floating_point(v) and v.dim() == 4:
            grid = FilterGrid(k[: -len(".weight")] if k.endswith(".weight") else k, v.detach().float().cpu().numpy())
            if ax is not None:
                grid.plot(ax)
            return grid
    raise CnnlabError("the model has no convolution (no 4-d weight), so it has no filters to show")


# ----------------------------------------------------------------------------------------------------------------------
# Feature maps

def default_layer(model: nn.Module) -> str:
    """The layer after the first convolution, past its batch norm: the first activation a reader wants to see."""
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    for i, (n, m) in enumerate(leaves):
        if isinstance(m, nn.Conv2d):
            for n2, m2 in leaves[i + 1:]:
                if not isinstance(m2, nn.modules.batchnorm._BatchNorm):
                    return n2
            return n
    raise CnnlabError("the model has no convolution; pass --layer with one of its layer names")


@dataclass
class FeatureMaps:
    layer: str
    maps: np.ndarray  # [channels, H, W]

    def rows(self) -> List[dict]:
        return [{"channel": c, "mean": float(m.mean()), "max": float(m.max()), "min": float(m.min()),
                 "active_share": float((m > 0).mean())} for c, m in enumerate(self.maps)]

    def plot(self, axes):
        """One panel per channel on one shared colour scale, with its colourbar (activation value)."""
        flat = list(np.ravel(axes))
        lo, hi = float(self.maps.min()), float(self.maps.max())
        im = None
        for ax, (c, m) in zip(flat, enumerate(self.maps)):
            im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=hi)
            ax.set_title(f"channel {c}", fontsize=7)
        for ax in flat:
            ax.axis("off")
        if im is not None:
            flat[0].figure.colorbar(im, ax=flat, shrink=0.6, label=f"activation of {self.layer}")
        return axes


def feature_maps(model: nn.Module, x: torch.Tensor, layer: Optional[str] = None, axes=None) -> FeatureMaps:
    """Output of `layer` (a name from model.named_modules()) for one normalised image x [1, C, H, W]."""
    modules = dict(model.named_modules())
    layer = layer or default_layer(model)
    if layer not in modules or not layer:
        names = [n for n in modules if n]
        raise CnnlabError(f"model has no layer {layer!r}; layers: {', '.join(names)}")
    got = {}
    handle = modules[layer].register_forward_hook(lambda m, i, o: got.setdefault("out", o.detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train(was_training)
    out = got["out"]
    if out.dim() != 4:
        raise CnnlabError(f"layer {layer!r} outputs shape {tuple(out.shape)}, not feature maps; choose a "
                          "convolution, activation or pooling layer")
    fm = FeatureMaps(layer, out[0].float().cpu().numpy())
    if axes is not None:
        fm.plot(axes)
    return fm


# ----------------------------------------------------------------------------------------------------------------------
# Saliency

@dataclass
class Saliency:
    indices: List[int]
    labels: List[int]         # true labels (-1 where unknown)
    predicted: List[int]
    classes: List[int]        # the class whose score was differentiated
    maps: np.ndarray          # [N, H, W], max over channels of |d score / d x|
    images: np.ndarray        # [N, H, W, C] uint8, for display
    class_names: Optional[List[str]] = None

    def rows(self) -> List[dict]:
        return [{"index": i, "label": l, "predicted": p, "class": c, "saliency_max": float(m.max()),
                 "saliency_mean": float(m.mean())}
                for i, l, p, c, m in zip(self.indices, self.labels, self.predicted, self.classes, self.maps)]

    def name(self, k: int) -> str:
        if self.class_names and 0 <= k < len(self.class_names):
            return self.class_names[k]
        return "?" if k < 0 else str(k)  # -1: an unlabelled image

    def plot(self, axes):
        """axes: 2 x N (image above its saliency map)."""
        for j in range(len(self.indices)):
            img = self.images[j]
            axes[0][j].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
            axes[0][j].set_title(f"#{self.indices[j]} {self.name(self.labels[j])}\npred {self.name(self.predicted[j])}",
                                 fontsize=7)
            im = axes[1][j].imshow(self.maps[j], cmap="hot", vmin=0, vmax=float(self.maps.max()) or 1.0)
            axes[1][j].set_title(f"d score[{self.name(self.classes[j])}]/dx", fontsize=7)
            axes[0][j].axis("off")
            axes[1][j].axis("off")
        if len(self.indices):  # one scale for every map, so saliency is comparable across images
            axes[1][0].figure.colorbar(im, ax=list(axes[1]), shrink=0.8,
                                       label="|d score / d pixel| (max over channels)")
        return axes


def saliency_maps(model: nn.Module, x: torch.Tensor, images: np.ndarray, labels: Optional[Sequence[int]] = None,
                  indices: Optional[Sequence[int]] = None, target: str = "predicted",
                  class_names: Optional[List[str]] = None, axes=None) -> Saliency:
    """Saliency of normalised images x [N, C, H, W]; target 'predicted' or 'label' picks the class differentiated.

    `images` are the same images as uint8 [N, C, H, W] for display.
    """
    if target not in ("predicted", "label"):
        raise CnnlabError(f"saliency target must be 'predicted' or 'label', got {target!r}")
    if target == "label" and labels is None:
        raise CnnlabError("saliency target 'label' needs labelled images; use target 'predicted' for this split")
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        scores = model(x).float()
        pred = scores.argmax(1)
        cls = torch.as_tensor(list(labels), device=x.device) if target == "label" else pred
        # each image's score depends on that image only (eval mode), so one backward gives every image's gradient
        scores.gather(1, cls.view(-1, 1)).sum().backward()
        maps = x.grad.abs().amax(dim=1).cpu().numpy()
    finally:
        model.train(was_training)
    n = len(x)
    sal = Saliency(list(indices) if indices is not None else list(range(n)),
                   [int(v) for v in labels] if labels is not None else [-1] * n, pred.tolist(), cls.tolist(), maps,
                   np.asarray(images).transpose(0, 2, 3, 1), class_names)
    if axes is not None:
        sal.plot(axes)
    return sal
