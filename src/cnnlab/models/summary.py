"""Per-layer accounting of a network: output shape, parameters (weights and biases), multiply-accumulates and
activations, one row per executed layer, with totals that are the column sums (the torchinfo convention).

What is counted (the course's convention, and the one torch.utils.flop_counter uses):
- rows: every leaf module (no children) in the order it runs, plus any container that owns parameters directly.
  Functional operations inside a module's forward (a residual addition, an Inception concatenation, option A's
  zero padding) are not rows;
- params: the row's own parameters, counted on its first call only (a shared module is not counted twice); tensors
  named "bias" are biases, all others (conv/FC kernels, BN γ, Swish β) weights. BN's β is its "bias";
- MACs: multiply-accumulates of convolutions (output elements × C_in/groups × kH × kW) and linear layers (output
  elements × in_features), bias additions excluded. BN, activations, pooling, LRN, adds are 0. FLOPs = 2 × MACs, which
  is exactly what FlopCounterMode reports for conv and matmul;
- activations: elements of the row's output (for the whole batch), 0 for layers whose output is a view of their
  input (Flatten, Identity); activation_bytes = that × the dtype's size. The sum is the forward activation memory
  if every layer output were kept (an in-place ReLU would share its input's storage).

Reference: torchinfo (Tyler Yep), whose table layout and golden "columns sum to totals" tests this follows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from cnnlab.errors import CnnlabError


@dataclass
class LayerRow:
    name: str                       # qualified module name, e.g. "features.stage1.0.conv1"
    type: str                       # module class name
    output_shape: Tuple[int, ...]   # including the batch dimension
    params: int
    weights: int
    biases: int
    macs: int                       # multiply-accumulates for the whole batch
    activations: int                # output elements for the whole batch
    activation_bytes: int           # activations × bytes per element of the summary's dtype


@dataclass
class Totals:
    params: int
    weights: int
    biases: int
    trainable_params: int
    macs: int
    activations: int
    activation_bytes: int
    input_elements: int
    input_bytes: int
    param_bytes: int                # parameters × bytes per element of the summary's dtype

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Summary:
    model: str
    input_shape: Tuple[int, ...]    # (C, H, W)
    batch_size: int
    dtype: torch.dtype
    rows: List[LayerRow]
    totals: Totals

    def to_text(self) -> str:
        return format_table(self)

    def to_csv(self) -> str:
        return format_csv(self)


def conv_macs(m: nn.Conv2d, out: torch.Tensor) -> int:
    kh, kw = m.kernel_size
    return out.numel() * (m.in_channels // m.groups) * kh * kw


def linear_macs(m: nn.Linear, out: torch.Tensor) -> int:
    return out.numel() * m.in_features


# Module type -> MACs of one call; types not listed count 0 (see the module docstring).
MAC_RULES = {nn.Conv2d: conv_macs, nn.Linear: linear_macs}


def _macs(m: nn.Module, out: torch.Tensor) -> int:
    for cls, rule in MAC_RULES.items():
        if isinstance(m, cls):
            return rule(m, out)
    return 0


def _own_params(m: nn.Module, counted: set) -> Tuple[int, int, int]:
    """(weights, biases, trainable) of the module's direct parameters not counted before."""
    weights = biases = trainable = 0
    for pname, p in m.named_parameters(recurse=False):
        if id(p) in counted:
            continue
        counted.add(id(p))
        if pname == "bias":
            biases += p.numel()
        else:
            weights += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return weights, biases, trainable


# Modules whose output is a view of their input: no new activation memory, so their activation count is 0.
VIEW_TYPES = (nn.Flatten, nn.Identity, nn.Unflatten)


def _first_tensor(out) -> Optional[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _record(model: nn.Module, x: torch.Tensor, elem_bytes: int) -> Tuple[List[LayerRow], int]:
    """Run one forward with hooks on the rows' modules; return the rows and the trainable parameter count."""
    rows: List[LayerRow] = []
    counted: set = set()
    trainable = [0]

    def hook(name):
        def fn(m, _inputs, out):
            t = _first_tensor(out)
            w, b, tr = _own_params(m, counted)
            trainable[0] += tr
            shape = tuple(t.shape) if t is not None else ()
            n = t.numel() if t is not None and not isinstance(m, VIEW_TYPES) else 0
            rows.append(LayerRow(name, type(m).__name__, shape, w + b, w, b, _macs(m, t) if t is not None else 0,
                                 n, n * elem_bytes))
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
               if name and (not list(m.children()) or any(True for _ in m.parameters(recurse=False)))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return rows, trainable[0]


def summarize(model: nn.Module, input_shape: Optional[Sequence[int]] = None, batch_size: int = 1,
              dtype: torch.dtype = torch.float32) -> Summary:
    """Per-layer table of `model` on a (batch_size, *input_shape) input (default: model.input_shape).

    The forward runs in eval mode (BN running statistics untouched) on the model's own device and parameter dtype;
    `dtype` only sets the bytes per element of activation and parameter memory. A model built under
    `torch.device("meta")` is summarised without computing anything (fast for VGG19 at 224).
    """
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise CnnlabError("summarize: the model has no input_shape attribute; pass input_shape=(C, H, W)")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) <= 0 or batch_size <= 0:
        raise CnnlabError(f"summarize: input_shape must be (C, H, W) of positive sizes and batch_size >= 1, "
                          f"got {input_shape} and {batch_size}")
    elem_bytes = torch.empty((), dtype=dtype).element_size()
    p = next(model.parameters(), None)
    device, pdtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    x = torch.zeros((batch_size, *input_shape), device=device, dtype=pdtype)
    was_training = model.training
    model.eval()
    try:
        rows, trainable = _record(model, x, elem_bytes)
    finally:
        model.train(was_training)
    params = sum(r.params for r in rows)
    totals = Totals(params=params, weights=sum(r.weights for r in rows), biases=sum(r.biases for r in rows),
                    trainable_params=trainable, macs=sum(r.macs for r in rows),
                    activations=sum(r.activations for r in rows),
                    activation_bytes=sum(r.activation_bytes for r in rows), input_elements=x.numel(),
                    input_bytes=x.numel() * elem_bytes, param_bytes=params * elem_bytes)
    name = getattr(model, "name", type(model).__name__)
    return Summary(name, input_shape, batch_size, dtype, rows, totals)


# ---------------------------------------------------------------------------------------------------------------
# formatting


def human(n: float) -> str:
    """716328 -> '0.716 M', 19632062464 -> '19.632 G' (powers of 1000, as papers quote parameters and MACs)."""
    return f"{n / 1e9:.3f} G" if abs(n) >= 1e9 else f"{n / 1e6:.3f} M"


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2 ** 20:.2f} MiB"


def _shape(shape: Tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


_COLUMNS = ("Layer (type)", "Output shape", "Weights", "Biases", "Params", "MACs", "Activations")


def format_table(s: Summary) -> str:
    """A torchinfo-like text table; the TOTAL row is the sum of the columns above it."""
    body = [(f"{r.name} ({r.type})", _shape(r.output_shape), f"{r.weights:,}", f"{r.biases:,}", f"{r.params:,}",
             f"{r.macs:,}", f"{r.activations:,}") for r in s.rows]
    t = s.totals
    total = ("TOTAL", "", f"{t.weights:,}", f"{t.biases:,}", f"{t.params:,}", f"{t.macs:,}", f"{t.activations:,}")
    widths = [max(len(row[i]) for row in [_COLUMNS, total, *body]) for i in range(len(_COLUMNS))]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "=" * len(line(_COLUMNS))
    dt = str(s.dtype).replace("torch.", "")
    c, h, w = s.input_shape
    out = [rule, f"{s.model}: input {s.batch_size}x{c}x{h}x{w} (N x C x H x W)", rule, line(_COLUMNS),
           "-" * len(rule), *(line(b) for b in body), "-" * len(rule), line(total), rule,
           f"Total params: {t.params:,} ({human(t.params)}) = weights {t.weights:,} + biases {t.biases:,}; "
           f"trainable {t.trainable_params:,}",
           f"MACs (multiply-accumulates of conv and linear layers, batch of {s.batch_size}): {t.macs:,} "
           f"({human(t.macs)})",
           f"FLOPs (= 2 x MACs): {t.flops:,} ({human(t.flops)})",
           f"Activations (sum of layer outputs, forward): {t.activations:,} elements = {mib(t.activation_bytes)} "
           f"in {dt}",
           f"Input: {t.input_elements:,} elements = {mib(t.input_bytes)}; params: {mib(t.param_bytes)} in {dt}",
           rule]
    return "\n".join(out)


def format_csv(s: Summary) -> str:
    """One row per layer plus a TOTAL row; output_shape written as 1x8x28x28."""
    buf = io.StringIO()
    names = [f.name for f in fields(LayerRow)]
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in s.rows:
        d = asdict(r)
        d["output_shape"] = "x".join(str(v) for v in r.output_shape)
        writer.writerow(d)
    t = s.totals
    writer.writerow({"name": "TOTAL", "type": "", "output_shape": "", "params": t.params, "weights": t.weights,
                     "biases": t.biases, "macs": t.macs, "activations": t.activations,
                     "activation_bytes": t.activation_bytes})
    return buf.getvalue()
