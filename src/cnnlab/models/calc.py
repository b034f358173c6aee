"""The course's architecture computation questions, answered with the working shown.

Each function returns a `Working`: a title, the steps as lines of text (formula, then numbers substituted, then the
result) and an `answer` dict of the numbers. Sizes are written H×W×C here, as the course and the papers write them
(the tensors themselves are N×C×H×W). Counting conventions are those of summary.py: MACs are multiply-accumulates of
conv/FC layers (FLOPs = 2 × MACs), biases count as parameters but not as MACs.

References: CS231n notes "Convolutional Neural Networks" (output size (W − F + 2P)/S + 1, the VGG memory table);
Howard et al. 2017, MobileNets §3.1 (depthwise-separable cost ratio 1/N + 1/D_K²); Simonyan & Zisserman 2015 §2.3
(stacked 3×3 receptive fields); Szegedy et al. 2015 §4 (Inception dimension reduction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Union

import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.layers import Branches
from cnnlab.models.summary import summarize


@dataclass
class Working:
    title: str
    steps: List[str] = field(default_factory=list)
    answer: Dict[str, Any] = field(default_factory=dict)

    def add(self, line: str = "") -> "Working":
        self.steps.append(line)
        return self

    def to_text(self) -> str:
        return "\n".join([self.title, "-" * len(self.title), *self.steps])


def _positive(**values: int) -> None:
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise CnnlabError(f"calc: {key} must be a positive integer, got {v!r}")


def _nonneg(**values: int) -> None:
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CnnlabError(f"calc: {key} must be an integer >= 0, got {v!r}")


def resolve_padding(padding: Union[int, str], size: int) -> int:
    """'valid' -> 0, 'same' -> (F − 1)/2 (odd F, which keeps the size at stride 1), or the integer itself."""
    if padding == "valid":
        return 0
    if padding == "same":
        if size % 2 == 0:
            raise CnnlabError(f"calc: padding 'same' needs an odd filter size, got {size}; give --padding as a number")
        return (size - 1) // 2
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise CnnlabError(f"calc: padding must be an integer >= 0, 'same' or 'valid', got {padding!r}")
    return padding


def out_size(w: int, f: int, s: int, p: int) -> int:
    return (w - f + 2 * p) // s + 1


def _out_side_steps(work: Working, label: str, w: int, f: int, s: int, p: int) -> int:
    num = w - f + 2 * p
    if num < 0:
        raise CnnlabError(f"calc: a {f}x{f} filter does not fit an input of {label} {w} with padding {p}")
    o = num // s + 1
    sym = label[0].upper()
    work.add(f"output {label:6s} = floor(({sym} − F + 2P) / S) + 1 = floor(({w} − {f} + 2·{p}) / {s}) + 1 = {o}")
    if num % s:
        work.add(f"  note: ({w} − {f} + 2·{p}) = {num} is not a multiple of S = {s}; the last {num % s} "
                 f"pixel(s) of the padded input are never covered by a filter")
    return o


def conv(h: int, w: int, c: int, filters: int, size: int, stride: int = 1, padding: Union[int, str] = 0,
         bias: bool = True) -> Working:
    """Output shape, parameters (per filter and total), MACs and activations of one conv layer."""
    _positive(height=h, width=w, channels=c, filters=filters, size=size, stride=stride)
    p = resolve_padding(padding, size)
    work = Working(f"Conv layer: input {h}x{w}x{c}, {filters} filters of {size}x{size}, stride {stride}, "
                   f"padding {p}")
    oh = _out_side_steps(work, "height", h, size, stride, p)
    ow = _out_side_steps(work, "width", w, size, stride, p)
    work.add(f"output shape  = {oh}x{ow}x{filters} (H' x W' x K)")
    per_filter = size * size * c
    b = 1 if bias else 0
    work.add(f"params/filter = F·F·C{' + 1 (bias)' if bias else ''} = {size}·{size}·{c}"
             f"{' + 1' if bias else ''} = {per_filter + b:,}")
    params = filters * (per_filter + b)
    work.add(f"params        = K·(F·F·C{' + 1' if bias else ''}) = {filters}·{per_filter + b:,} = {params:,} "
             f"({filters * per_filter:,} weights + {filters * b:,} biases)")
    macs = oh * ow * filters * per_filter
    work.add(f"MACs          = H'·W'·K·(F·F·C) = {oh}·{ow}·{filters}·{per_filter:,} = {macs:,} "
             f"(FLOPs = 2·MACs = {2 * macs:,})")
    acts = oh * ow * filters
    work.add(f"activations   = H'·W'·K = {acts:,} output values")
    work.answer = dict(output=(oh, ow, filters), params_per_filter=per_filter + b, params=params,
                       weights=filters * per_filter, biases=filters * b, macs=macs, activations=acts)
    return work


def fc(h: int, w: int, c: int, units: int, bias: bool = True) -> Working:
    """Parameters and MACs of a fully connected layer on a flattened H×W×C input."""
    _positive(height=h, width=w, channels=c, units=units)
    work = Working(f"Fully connected layer: input {h}x{w}x{c} flattened, {units:,} units")
    n_in = h * w * c
    work.add(f"inputs  = H·W·C = {h}·{w}·{c} = {n_in:,}")
    weights = n_in * units
    work.add(f"weights = inputs·units = {n_in:,}·{units:,} = {weights:,}")
    biases = units if bias else 0
    work.add(f"biases  = units = {biases:,}" if bias else "biases  = 0 (no bias)")
    work.add(f"params  = {weights:,} + {biases:,} = {weights + biases:,}")
    work.add(f"MACs    = inputs·units = {weights:,} (FLOPs = {2 * weights:,})")
    work.answer = dict(inputs=n_in, weights=weights, biases=biases, params=weights + biases, macs=weights)
    return work


def receptive_field(layers: int, size: int, channels: int = 0) -> Working:
    """Receptive field of N stacked F×F stride-1 convs: side N·F − N + 1, area (N·F − N + 1)²; with C channels,
    the weights of the stack against one conv with the same receptive field (the VGG argument)."""
    _positive(layers=layers, size=size)
    _nonneg(channels=channels)
    work = Working(f"Receptive field of {layers} stacked {size}x{size} convolutions (stride 1)")
    side = layers * size - layers + 1
    work.add("each layer adds F − 1 pixels to the side of the field seen by one output unit:")
    work.add(f"side = N·F − N + 1 = {layers}·{size} − {layers} + 1 = {side}")
    work.add(f"area = (N·F − N + 1)² = {side}² = {side * side:,} input pixels per output unit ({side}x{side})")
    work.answer = dict(side=side, area=side * side)
    if channels:
        stack = layers * size * size * channels * channels
        single = side * side * channels * channels
        work.add(f"weights of the stack with C = {channels} in and out: N·F²·C² = {layers}·{size}²·{channels}² = "
                 f"{stack:,}")
        work.add(f"weights of one {side}x{side} conv:                  (side)²·C² = {side}²·{channels}² = "
                 f"{single:,}")
        work.add(f"the stack needs {stack / single:.3f} of the weights and adds {layers - 1} more non-linearities")
        work.answer.update(stack_weights=stack, single_weights=single)
    return work


def separable(h: int, w: int, c: int, filters: int, size: int, stride: int = 1,
              padding: Union[int, str] = "same") -> Working:
    """MACs and parameters of a regular conv against a depthwise (F×F per channel) + pointwise (1×1) pair."""
    _positive(height=h, width=w, channels=c, filters=filters, size=size, stride=stride)
    p = resolve_padding(padding, size)
    oh, ow = out_size(h, size, stride, p), out_size(w, size, stride, p)
    if oh <= 0 or ow <= 0:
        raise CnnlabError(f"calc: a {size}x{size} filter does not fit a {h}x{w} input with padding {p}")
    work = Working(f"Depthwise-separable vs regular conv: input {h}x{w}x{c}, {filters} filters of {size}x{size}, "
                   f"stride {stride}, padding {p} -> output {oh}x{ow}x{filters}")
    regular = oh * ow * filters * size * size * c
    depthwise = oh * ow * c * size * size
    pointwise = oh * ow * c * filters
    work.add(f"regular   MACs = H'·W'·K·F²·C = {oh}·{ow}·{filters}·{size}²·{c} = {regular:,}")
    work.add(f"depthwise MACs = H'·W'·C·F²   = {oh}·{ow}·{c}·{size}² = {depthwise:,}")
    work.add(f"pointwise MACs = H'·W'·C·K    = {oh}·{ow}·{c}·{filters} = {pointwise:,}")
    sep = depthwise + pointwise
    work.add(f"separable MACs = {depthwise:,} + {pointwise:,} = {sep:,}")
    ratio = sep / regular
    work.add(f"cost ratio     = separable / regular = 1/K + 1/F² = 1/{filters} + 1/{size * size} = {ratio:.4f}")
    work.add(f"speed-up       = regular / separable = {regular / sep:.2f}x (theoretical: counts multiplies, "
             f"not memory traffic)")
    w_reg, w_sep = size * size * c * filters, size * size * c + c * filters
    work.add(f"weights: regular F²·C·K = {w_reg:,}; separable F²·C + C·K = {w_sep:,} ({w_reg / w_sep:.2f}x fewer)")
    work.answer = dict(output=(oh, ow, filters), regular_macs=regular, depthwise_macs=depthwise,
                       pointwise_macs=pointwise, separable_macs=sep, speedup=regular / sep,
                       regular_weights=w_reg, separable_weights=w_sep)
    return work


def _branch(work: Working, h: int, w: int, label: str, convs: List[tuple]) -> tuple:
    """Lines for one branch of 'same'-padded convs [(c_in, k, F), ...]; returns (MACs, params)."""
    macs = params = 0
    parts = []
    for c_in, k, f in convs:
        m = h * w * k * f * f * c_in
        macs += m
        params += k * (f * f * c_in + 1)
        parts.append(f"{h}·{w}·{k}·({f}·{f}·{c_in}) = {m:,}")
    work.add(f"  {label:24s} MACs " + " + ".join(parts) + (f" = {macs:,}" if len(parts) > 1 else ""))
    return macs, params


def _naive_inception(work: Working, h: int, w: int, c: int, n1x1: int, n3x3: int, n5x5: int) -> tuple:
    """The naive module's working (Fig. 2a), added to `work`; (MACs, params, output channels)."""
    work.add("naive (Fig. 2a):")
    naive = [("1x1 conv", [(c, n1x1, 1)]), ("3x3 conv", [(c, n3x3, 3)]), ("5x5 conv", [(c, n5x5, 5)])]
    m_naive = p_naive = 0
    for label, convs in naive:
        if convs[0][1]:
            m, p = _branch(work, h, w, f"{label}, {convs[0][1]}", convs)
            m_naive, p_naive = m_naive + m, p_naive + p
    work.add(f"  {'3x3 max pool':24s} 0 MACs, passes the {c} input channels through")
    c_naive = n1x1 + n3x3 + n5x5 + c
    work.add(f"  output = {h}x{w}x({n1x1} + {n3x3} + {n5x5} + {c}) = {h}x{w}x{c_naive}; MACs {m_naive:,}; "
             f"params {p_naive:,}")
    return m_naive, p_naive, c_naive


def _reduced_inception(work: Working, h: int, w: int, c: int, n1x1: int, n3x3_reduce: int, n3x3: int,
                       n5x5_reduce: int, n5x5: int, pool_proj: int) -> tuple:
    """The module with 1×1 dimension reductions (Fig. 2b), added to `work`; (MACs, params, output channels)."""
    work.add("dimension-reduced (Fig. 2b):")
    reduced = [(f"1x1 conv, {n1x1}", [(c, n1x1, 1)]),
               (f"1x1 {n3x3_reduce} -> 3x3 {n3x3}", [(c, n3x3_reduce, 1), (n3x3_reduce, n3x3, 3)]),
               (f"1x1 {n5x5_reduce} -> 5x5 {n5x5}", [(c, n5x5_reduce, 1), (n5x5_reduce, n5x5, 5)]),
               (f"pool -> 1x1 proj {pool_proj}", [(c, pool_proj, 1)])]
    m_red = p_red = 0
    for label, convs in reduced:
        if convs[-1][1]:
            m, p = _branch(work, h, w, label, convs)
            m_red, p_red = m_red + m, p_red + p
    c_red = n1x1 + n3x3 + n5x5 + pool_proj
    work.add(f"  output = {h}x{w}x({n1x1} + {n3x3} + {n5x5} + {pool_proj}) = {h}x{w}x{c_red}; MACs {m_red:,}; "
             f"params {p_red:,}")
    return m_red, p_red, c_red


def inception(h: int, w: int, c: int, n1x1: int = 64, n3x3_reduce: int = 96, n3x3: int = 128, n5x5_reduce: int = 16,
              n5x5: int = 32, pool_proj: int = 32) -> Working:
    """Output size, MACs and parameters of a GoogLeNet Inception module, naive vs with 1×1 dimension reductions.

    Defaults: inception (3a) of Szegedy et al. 2015 Table 1. A conv branch with 0 filters is left out. All convs are
    'same'-padded with stride 1 and have a bias; the 3×3 max pool (stride 1) has no multiplies."""
    _positive(height=h, width=w, channels=c)
    _nonneg(n1x1=n1x1, n3x3_reduce=n3x3_reduce, n3x3=n3x3, n5x5_reduce=n5x5_reduce, n5x5=n5x5, pool_proj=pool_proj)
    if (n3x3 and not n3x3_reduce) or (n5x5 and not n5x5_reduce):
        raise CnnlabError("calc: the dimension-reduced module needs --n3x3-reduce / --n5x5-reduce > 0 for the 3x3 / "
                          "5x5 branches it has")
    work = Working(f"Inception module on {h}x{w}x{c}: naive vs dimension-reduced (all convs 'same', stride 1)")
    m_naive, p_naive, c_naive = _naive_inception(work, h, w, c, n1x1, n3x3, n5x5)
    m_red, p_red, c_red = _reduced_inception(work, h, w, c, n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj)
    if m_red:
        work.add(f"reduction: {m_naive:,} / {m_red:,} = {m_naive / m_red:.2f}x fewer multiplies, and "
                 f"{c_naive} -> {c_red} output channels (the naive pool branch makes the channels grow every module)")
    work.answer = dict(naive_output=(h, w, c_naive), naive_macs=m_naive, naive_params=p_naive,
                       reduced_output=(h, w, c_red), reduced_macs=m_red, reduced_params=p_red,
                       saved_macs=m_naive - m_red, reduction=m_naive / m_red if m_red else float("inf"))
    return work


def _vgg_row(r) -> tuple:
    """(label, output HxWxC, parameter formula) of a conv, pool or FC row of the VGG table, as CS231n writes them."""
    if r.type == "Conv2d":
        _, k, hh, ww = r.output_shape
        return f"CONV3-{k}", f"{hh}x{ww}x{k}", f"3·3·{r.weights // (9 * k)}·{k} + {k} = {r.params:,}"
    if r.type == "MaxPool2d":
        _, k, hh, ww = r.output_shape
        return "POOL2", f"{hh}x{ww}x{k}", "0"
    k = r.output_shape[-1]
    return f"FC-{k}", f"1x1x{k}", f"{r.weights // k:,}·{k:,} + {k:,} = {r.params:,}"


def vgg19_table(dtype_bytes: int = 4) -> Working:
    """The CS231n-style VGG table for VGG19 at 224×224: per layer the output, its activation count (memory) and its
    parameters; ReLU is folded into the conv/FC before it (in-place in the original), dropout is not a layer."""
    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        model = create_model("vgg19")
    s = summarize(model)
    work = Working("VGG19 (configuration E) at 224x224x3: activation memory and parameters per layer")
    work.add(f"{'layer':10s} {'output (HxWxC)':>15s} {'activations':>12s} {'params = weights + biases':>40s}")
    acts, params = [3 * 224 * 224], [0]
    work.add(f"{'INPUT':10s} {'224x224x3':>15s} {acts[0]:>12,} {0:>40,}")
    table, weight_rows = [], []  # weight_rows: (layer, output, activations, weights) as the assignment's table
    for r in s.rows:
        if r.type not in ("Conv2d", "MaxPool2d", "Linear"):
            continue
        label, shape, formula = _vgg_row(r)
        acts.append(r.activations)
        params.append(r.params)
        table.append((label, r.activations, r.params))
        weight_rows.append((label, shape, r.activations, r.weights))
        work.add(f"{label:10s} {shape:>15s} {r.activations:>12,} {formula:>40s}")
    total_a, total_p = sum(acts), sum(params)
    total_w = sum(r.weights for r in s.rows)
    work.add(f"total activations: {total_a:,} values = {total_a * dtype_bytes / 2 ** 20:.1f} MiB per image at "
             f"{dtype_bytes} bytes: outputs of the input, conv, pool and FC layers only (the assignment's "
             f"convention; ReLU outputs, in place in the original, are not counted again; training keeps them for "
             f"the backward pass, roughly x2)")
    work.add(f"total params: {total_p:,} ({total_p / 1e6:.1f} M) = {total_p * dtype_bytes / 2 ** 20:.1f} MiB at "
             f"{dtype_bytes} bytes; the FC layers hold {sum(p for l, _, p in table if l.startswith('FC')):,}")
    work.add(f"without biases (the assignment's Table 1 convention): {total_w:,} weights ({total_w / 1e6:.2f} M); "
             f"the {total_p - total_w:,} biases are the difference")
    work.add(f"MACs: {s.totals.macs:,} ({s.totals.macs / 1e9:.2f} G) per image; FLOPs = 2·MACs")
    work.answer = dict(activations=total_a, params=total_p, weights=total_w, macs=s.totals.macs, rows=table,
                       weight_rows=weight_rows, activations_mib=total_a * dtype_bytes / 2 ** 20,
                       weights_mib=total_w * dtype_bytes / 2 ** 20)
    return work


# ----------------------------------------------------------------------------------------------------------------------
# Whole networks: AlexNet's parameters layer by layer, any model's receptive field, a network made separable


def _meta_model(name: str, **options):
    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        return create_model(name, **options)


def alexnet_params() -> Working:
    """AlexNet's parameters with the working per layer (HW3 3.1): each conv's filter size, stride, padding and
    groups (the two-GPU split of conv2, conv4, conv5: each filter sees half the channels), then the FC layers."""
    model = _meta_model("alexnet")
    rows = {r.name: r for r in summarize(model).rows}
    work = Working("AlexNet (Krizhevsky et al. 2012, §3.5, Fig. 2) at 224x224x3: parameters per layer")
    total = 0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            k, s, p, g = m.kernel_size[0], m.stride[0], m.padding[0], m.groups
            r = rows[name]
            _, c_out, oh, ow = r.output_shape
            c_in = m.in_channels // g
            weights = k * k * c_in * m.out_channels
            split = f" (groups {g}: each filter sees {c_in} of {m.in_channels} channels)" if g > 1 else ""
            work.add(f"{name}: {m.out_channels} filters {k}x{k}x{c_in}, stride {s}, padding {p} -> {oh}x{ow}x{c_out}"
                     f"{split}")
            work.add(f"    weights {k}·{k}·{c_in}·{m.out_channels} = {weights:,} + {m.out_channels} biases = "
                     f"{weights + m.out_channels:,}")
            total += weights + m.out_channels
        elif isinstance(m, torch.nn.Linear):
            weights = m.in_features * m.out_features
            work.add(f"{name}: FC {m.in_features:,} -> {m.out_features:,}")
            work.add(f"    weights {m.in_features:,}·{m.out_features:,} = {weights:,} + {m.out_features:,} biases = "
                     f"{weights + m.out_features:,}")
            total += weights + m.out_features
    counted = sum(p.numel() for p in model.parameters())
    work.add(f"total = {total:,} parameters ({total / 1e6:.1f} M); counted from the built model: {counted:,}")
    work.answer = dict(params=total)
    return work


def receptive_field_of(name: str, **options) -> Working:
    """Receptive field of a registered model's last feature map, layer by layer: r += (k − 1)·j and j *= s for each
    conv and pool (j: the input pixels between neighbouring units, the "jump"). Residual shortcuts add no field
    (the longest path counts); parallel branches take the widest; global pooling and FC layers see everything."""
    model = _meta_model(name, **options)
    work = Working(f"Receptive field of {name} (per layer: kernel k, stride s; r += (k-1)·j, j *= s)")
    work.add(f"{'layer':34s} {'k':>3s} {'s':>3s} {'jump j':>7s} {'field r':>8s}")
    state = {"r": 1, "j": 1}

    def visit(module, prefix: str) -> None:
        if isinstance(module, Branches):
            start, best = dict(state), None
            for bname, branch in module.branches.items():
                state.update(start)
                visit(branch, f"{prefix}.{bname}")
                best = dict(state) if best is None or state["r"] > best["r"] else best
            state.update(best)
            return
        if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            k, s = _pair(module.kernel_size), _pair(module.stride)
            d = _pair(getattr(module, "dilation", 1))
            state["r"] += (d * (k - 1)) * state["j"]
            state["j"] *= s
            work.add(f"{prefix:34s} {k:>3d} {s:>3d} {state['j']:>7d} {state['r']:>8d}")
            return
        for child_name, child in module.named_children():
            if "shortcut" in child_name or "downsample" in child_name:
                continue  # the identity/projection path is shorter than the block's convs
            visit(child, f"{prefix}.{child_name}" if prefix else child_name)

    visit(model.features, "features")
    side = model.input_shape[1]
    work.add(f"receptive field of one unit of the last feature map: {state['r']}x{state['r']} input pixels "
             f"(input {side}x{side}{'; it covers the whole image' if state['r'] >= side else ''})")
    work.answer = dict(field=state["r"], jump=state["j"])
    return work


def _pair(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def separable_network(name: str, **options) -> Working:
    """The whole-network version of `separable` (HW2 2.5): every F×F convolution (F > 1, not grouped) replaced by a
    depthwise F×F + pointwise 1×1 pair, MACs per image summed over the network (FC layers and 1×1 convs as they
    are)."""
    model = _meta_model(name, **options)
    rows = {r.name: r for r in summarize(model).rows}
    work = Working(f"{name} with depthwise-separable convolutions: MACs per image")
    regular = separable_total = 0
    for mname, m in model.named_modules():
        if mname not in rows or not isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            continue
        macs = rows[mname].macs
        regular += macs
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1 and m.groups == 1:
            _, k_out, oh, ow = rows[mname].output_shape
            f, c = m.kernel_size[0], m.in_channels
            sep = oh * ow * c * f * f + oh * ow * c * k_out
            work.add(f"{mname:30s} {f}x{f} conv {c}->{k_out} at {oh}x{ow}: {macs:>13,} -> {sep:>12,} "
                     f"({macs / sep:.2f}x)")
            separable_total += sep
        else:
            separable_total += macs
    work.add(f"whole network: {regular:,} MACs -> {separable_total:,} MACs, a {regular / separable_total:.2f}x "
             "theoretical speed-up (multiplies only; depthwise convolutions run far below peak on real hardware)")
    work.answer = dict(regular_macs=regular, separable_macs=separable_total, speedup=regular / separable_total)
    return work
