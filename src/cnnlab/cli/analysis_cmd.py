"""Analysis commands: find-lr, find-batch, loss-band, smoothness, landscape, weights, filters, feature-maps, saliency.

Each command writes `<command>.png` and `<command>.csv` (the same numbers) into --out, prints its result lines (also
kept as `<command>.json`, for the answers of a spec's report), and
prints the expected cost in image passes before anything long starts. Commands that train take the config of
`cnnlab train` (defaults < -c FILE < key=value) and --subset N (= data.train_subset); commands that read a run folder
take --subset N images of the chosen split. The computations live in cnnlab.analysis.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence

from cnnlab.cli.common import add_data_root, data_overrides
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text
from cnnlab.training.config import config_from_dict, load_config, merge, parse_override, set_dotted

DEFAULT_OUT = "runs/analysis"


# ----------------------------------------------------------------------------------------------------------------------
# argument groups

def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for `cnnlab train`")
    p.add_argument("-c", "--config", help="YAML config file")
    add_data_root(p)  # sets data.root (and data.download)
    p.add_argument("--subset", type=int, metavar="N", help="train on N images (sets data.train_subset)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder written by `cnnlab train`")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--out", help="output folder (default RUN_DIR/analysis)")


def _data_args(p: argparse.ArgumentParser, subset: int, split: str) -> None:
    p.add_argument("--split", default=split, help=f"which split's images (default {split})")
    p.add_argument("--subset", type=int, default=subset, metavar="N", help=f"use N images (default {subset})")
    add_data_root(p)  # default: the run's data.root


def _variant_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", nargs="+", action="append", metavar=("LABEL", "key=value"),
                   help="a configuration to compare: a label then overrides on top of the base config; repeat it. "
                        "Default: the model without and with batch norm (vgg_a / vgg_a_bn, or batch_norm=false/true)")


def register(sub) -> None:
    _register_range_tests(sub)
    _register_landscapes(sub)
    _register_run_views(sub)


def _register_range_tests(sub) -> None:
    p = sub.add_parser("find-lr", help="learning-rate range test (Smith 2017), continuous or discrete",
                       description="Continuous: the lr rises from --start to --end over --steps steps (or --epochs), "
                                   "the smoothed loss is recorded and the test stops on divergence. Discrete "
                                   "(--discrete K): K rates between --start and --end, each trained --sweep-epochs "
                                   "epochs from the same start. Prints lr_min/lr_max by --rule. The model and "
                                   "optimizer are restored afterwards.")
    _config_args(p)
    p.add_argument("--start", type=float, default=1e-7, help="lowest learning rate (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="highest learning rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of the continuous test (default 100)")
    p.add_argument("--epochs", type=float, help="length of the continuous test in epochs (overrides --steps)")
    p.add_argument("--mode", choices=("exp", "linear"), default="exp", help="how the lr rises (default exp)")
    p.add_argument("--beta", type=float, default=0.98,
                   help="smoothing factor of the loss average that stops the test on divergence (default 0.98)")
    p.add_argument("--rule", default="smith", help="suggestion rule: smith, steepest, min10 (default smith)")
    p.add_argument("--discrete", type=int, metavar="K", help="discrete sweep over K rates instead")
    p.add_argument("--sweep-epochs", type=int, default=2, help="epochs per rate of the discrete sweep (default 2)")
    p.set_defaults(func=_find_lr)

    p = sub.add_parser("find-batch", help="batch-size range test; proposes batch.min/batch.max for a cyclical policy",
                       description="Each batch size is trained --steps steps from the same start at the configured "
                                   "lr; training loss against batch size; large batches use gradient accumulation "
                                   "(--micro, or automatically on running out of memory).")
    _config_args(p)
    p.add_argument("--sizes", type=int, nargs="+", help="batch sizes (default powers of 2 from --min to --max)")
    p.add_argument("--min", type=int, default=64, help="smallest batch size (default 64)")
    p.add_argument("--max", type=int, default=8192, help="largest batch size (default 8192)")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per batch size (default 50)")
    p.add_argument("--micro", type=int, help="largest micro-batch per forward pass (gradient accumulation)")
    p.add_argument("--diagram", action="store_true", help="only draw the algorithm as a block diagram, with the "
                                                          "sizes, steps and lr these arguments give "
                                                          "(OUT/find-batch-algorithm.png and .svg), train nothing")
    p.set_defaults(func=_find_batch)


def _register_landscapes(sub) -> None:
    p = sub.add_parser("loss-band", help="training-loss band over learning rates, without and with BN "
                                         "(Santurkar et al. 2018)")
    _config_args(p)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 2e-3, 1e-4, 5e-4], help="learning rates")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per learning rate (default 100)")
    p.add_argument("--gradients", action="store_true",
                   help="also the gradient-predictiveness band: |g_t - g_(t-1)| per step, min to max over the lrs")
    _variant_arg(p)
    p.set_defaults(func=_loss_band)

    p = sub.add_parser("smoothness", help="gradient predictiveness and effective beta-smoothness over training, "
                                          "without and with BN (Santurkar et al. 2018)")
    _config_args(p)
    p.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    p.add_argument("--every", type=int, default=10, help="probe every this many steps (default 10)")
    p.add_argument("--probe-size", type=int, help="images in the probe batch (default batch.size)")
    p.add_argument("--etas", type=float, nargs="+", default=[0.5, 1, 2, 4],
                   help="probe step sizes as multiples of the lr (default 0.5 1 2 4)")
    _variant_arg(p)
    p.set_defaults(func=_smoothness)

    p = sub.add_parser("landscape", help="1-D or 2-D loss landscape around a trained model along filter-normalised "
                                         "random directions (Li et al. 2018)")
    _run_args(p)
    _data_args(p, 500, "train")
    p.add_argument("--dims", type=int, choices=(1, 2), default=1)
    p.add_argument("--points", type=int, help="points per axis (default 21 for 1-D, 11 for 2-D)")
    p.add_argument("--span", type=float, default=1.0, help="coordinates from -span to span (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    p.set_defaults(func=_landscape)


def _register_run_views(sub) -> None:
    p = sub.add_parser("weights", help="per-layer weight histograms and sparsity of one run, or several side by side")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--labels", nargs="+", help="a label per run (default the folder names)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--threshold", type=float, default=1e-3, help="sparsity: share of |w| below this (default 1e-3)")
    p.add_argument("--bins", type=int, default=60)
    p.add_argument("--out", help="output folder (default RUN_DIR/analysis of the first run)")
    p.set_defaults(func=_weights)

    p = sub.add_parser("filters", help="first-layer convolution filters as an image grid")
    _run_args(p)
    p.set_defaults(func=_filters)

    p = sub.add_parser("feature-maps", help="feature maps of one layer for one image")
    _run_args(p)
    p.add_argument("--split", default="val")
    p.add_argument("--image", type=int, default=0, help="index of the image in the split")
    p.add_argument("--layer", help="layer name (default: the activation after the first convolution)")
    add_data_root(p)
    p.set_defaults(func=_feature_maps)

    p = sub.add_parser("saliency", help="saliency maps: |d class score / d input| (Simonyan et al. 2014)")
    _run_args(p)
    p.add_argument("--split", default="val")
    p.add_argument("--images", type=int, nargs="+",
                   help="indices in the split (default: the first image of each of the first 6 classes)")
    p.add_argument("--target", choices=("predicted", "label"), default="predicted",
                   help="differentiate the predicted class's score or the true class's")
    add_data_root(p)
    p.set_defaults(func=_saliency)


# ----------------------------------------------------------------------------------------------------------------------
# helpers

def _cfg(args):
    overrides = list(args.overrides) + data_overrides(args)
    if args.subset is not None:
        overrides.append(f"data.train_subset={args.subset}")
    return load_config(args.config, overrides)


def _variants(args, cfg):
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import bn_variants

    if not args.variant:
        return bn_variants(cfg)
    out = []
    for label, *overrides in args.variant:
        patch: dict = {}
        for text in overrides:
            set_dotted(patch, *parse_override(text))
        out.append((label, config_from_dict(merge(cfg.to_dict(), patch))))
    return out


def _write(out: Path, name: str, fig, rows: List[dict], extra: Optional[dict] = None,
           lines: Sequence[str] = ()) -> None:
    """<out>/<name>.png and <out>/<name>.csv (+ further CSVs from `extra`: suffix -> rows), and the result lines the
    command printed as <out>/<name>.json {"lines": [...]}, which a spec's `analysis` answers quote in its report."""
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import save_figure, write_csv

    out.mkdir(parents=True, exist_ok=True)
    written = [save_figure(fig, out / f"{name}.png"), write_csv(out / f"{name}.csv", rows)]
    if lines:
        written.append(out / f"{name}.json")
        atomic_write_text(written[-1], json.dumps({"lines": list(lines)}, indent=1) + "\n")
    for suffix, more in (extra or {}).items():
        written.append(write_csv(out / f"{name}-{suffix}.csv", more))
    print("wrote " + ", ".join(str(p) for p in written))


def _describe(t) -> str:
    c = t.cfg
    options = f" {c.model.options}" if c.model.options else ""
    return (f"{c.model.name}{options} on {c.data.name} [{len(t.ds.train):,} train images], batch {c.batch.size}, "
            f"{len(t.train_loader)} steps/epoch, device {t.device}")


def _images_per_step(t) -> int:
    return t.cfg.batch.size * t.cfg.augment.repeats


def _run_out(args) -> Path:
    return Path(args.out) if args.out else Path(args.run_dir) / "analysis"


# ----------------------------------------------------------------------------------------------------------------------
# commands that train

def _find_lr(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis import range_tests as rt
    from cnnlab.analysis.common import analysis_trainer, cost_line, new_figure

    rt.LR_RULES.get(args.rule)
    t = analysis_trainer(_cfg(args))
    print(_describe(t))
    fig, axes = new_figure()
    if args.discrete:
        lrs = rt.candidates(args.discrete, args.start, args.end)
        steps = args.sweep_epochs * len(t.train_loader)
        print(cost_line(f"discrete sweep: {len(lrs)} rates x {steps} steps", len(lrs) * steps * _images_per_step(t)))
        res = rt.lr_sweep(t, lrs, args.sweep_epochs, args.rule, ax=axes[0][0])
    else:
        steps = round(args.epochs * len(t.train_loader)) if args.epochs else args.steps
        print(cost_line(f"range test: {steps} steps from lr {args.start:g} to {args.end:g} ({args.mode})",
                        steps * _images_per_step(t)))
        res = rt.lr_range_test(t, args.start, args.end, steps, args.mode, args.beta, rule=args.rule,
                               ax=axes[0][0])
        if res.stopped_early:
            print(f"stopped at step {len(res.losses)} (lr {res.lrs[-1]:.3g}): the smoothed loss diverged")
    print(res.suggestion.line())
    _write(Path(args.out), "find-lr", fig, res.rows(), lines=[res.suggestion.line()])
    return 0


def _find_batch(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis import range_tests as rt
    from cnnlab.analysis.common import analysis_trainer, cost_line, new_figure
    from cnnlab.plotting import save_figure

    if args.diagram:
        # the test as these arguments would run it: its sizes and steps, and the lr of the config when one is given
        lr = _cfg(args).optim.lr if args.config or args.overrides else None
        sizes = sorted(set(args.sizes)) if args.sizes else rt.batch_sizes(args.min, args.max)
        fig = rt.batch_finder_diagram(sizes, args.steps, lr)
        for suffix in ("png", "svg"):
            print(f"wrote {save_figure(fig, Path(args.out) / f'find-batch-algorithm.{suffix}')}")
        return 0

    sizes = sorted(set(args.sizes)) if args.sizes else rt.batch_sizes(args.min, args.max)
    t = analysis_trainer(_cfg(args))
    print(_describe(t))
    kept = [b for b in sizes if b <= len(t.ds.train)]
    print(cost_line(f"batch-size test: {len(kept)} sizes x {args.steps} steps",
                    sum(kept) * args.steps * t.cfg.augment.repeats))
    fig, axes = new_figure()
    res = rt.batch_range_test(t, sizes, args.steps, args.micro, ax=axes[0][0])
    print(res.line())
    _write(Path(args.out), "find-batch", fig, res.rows(), lines=[res.line()])
    return 0


def _loss_band(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import analysis_trainer, cost_line, new_figure
    from cnnlab.analysis.landscape import compare_bands, loss_band

    variants = _variants(args, _cfg(args))
    batch = variants[0][1].batch.size * variants[0][1].augment.repeats
    print(cost_line(f"loss band: {len(variants)} models x {len(args.lrs)} lrs x {args.steps} steps",
                    len(variants) * len(args.lrs) * args.steps * batch))
    fig, axes = new_figure(1, 2 if args.gradients else 1, size=(7, 4.5))
    rows, bands = [], []
    for k, (label, cfg) in enumerate(variants):
        t = analysis_trainer(cfg)
        print(f"{label}: {_describe(t)}")
        band = loss_band(t, args.lrs, args.steps, label, ax=axes[0][0], color=f"C{k}",
                         gradients=args.gradients, ax_grad=axes[0][1] if args.gradients else None)
        print(band.line())
        rows += band.rows()
        bands.append(band)
    lines = [b.line() for b in bands] + compare_bands(bands)
    for line in lines[len(bands):]:
        print(line)
    _write(Path(args.out), "loss-band", fig, rows, lines=lines)
    return 0


def _smoothness(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import analysis_trainer, cost_line, new_figure
    from cnnlab.analysis.smoothness import smoothness_cost, smoothness_trace

    variants = _variants(args, _cfg(args))
    fig, axes = new_figure(1, 3, size=(5, 4))
    rows, lines = [], []
    for k, (label, cfg) in enumerate(variants):
        t = analysis_trainer(cfg)
        probe = min(args.probe_size or cfg.batch.size, len(t.ds.train))
        print(f"{label}: {_describe(t)}")
        print(cost_line(f"{label}: {args.steps} steps, a probe of {probe} images every {args.every}",
                        smoothness_cost(args.steps, _images_per_step(t), args.every, probe, len(args.etas))))
        tr = smoothness_trace(t, args.steps, args.every, args.etas, args.probe_size, label)
        tr.plot(axes[0], color=f"C{k}")
        lines.append(tr.line())
        print(lines[-1])
        rows += tr.rows()
    _write(Path(args.out), "smoothness", fig, rows, lines=lines)
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# commands that read a run folder

def _loaded(args):
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.training.inference import load_run

    return load_run(args.run_dir, args.checkpoint, getattr(args, "data_root", None),
                    download=getattr(args, "download", False))


def _landscape(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import cost_line, new_figure
    from cnnlab.analysis.landscape import landscape_1d, landscape_2d, landscape_cost
    from cnnlab.analysis.samples import batches

    run = _loaded(args)
    points = args.points or (21 if args.dims == 1 else 11)
    data = batches(run, args.split, args.subset)
    n = sum(len(y) for _, y in data)
    print(cost_line(f"{args.dims}-D landscape: {points ** args.dims} points x {n} {args.split} images",
                    landscape_cost(points, args.dims, n), kind="forward"))
    fig, axes = new_figure(size=(6, 5) if args.dims == 2 else (6, 4))
    if args.dims == 1:
        res = landscape_1d(run.model, data, points, args.span, args.seed, ax=axes[0][0])
        line = res.line(Path(args.run_dir).name, args.split)
    else:
        res = landscape_2d(run.model, data, points, args.span, args.seed, ax=axes[0][0])
        line = res.line(Path(args.run_dir).name)
    ax = axes[0][0]  # name the run and its model, so two landscapes side by side in a report can be told apart
    ax.set_title(f"{Path(args.run_dir).name} ({run.cfg.model.name}): {ax.get_title()}")
    print(line)
    _write(_run_out(args), f"landscape-{args.dims}d", fig, res.rows(), lines=[line])
    return 0


def _weights(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.weights import plot_histograms, weight_stats
    from cnnlab.training.inference import load_weights

    labels = args.labels or [Path(r).resolve().name for r in args.run_dirs]
    if len(labels) != len(args.run_dirs) or len(set(labels)) != len(labels):
        raise CnnlabError(f"--labels needs one distinct label per run ({len(args.run_dirs)}), got {labels}")
    stats = weight_stats({lab: load_weights(r, args.checkpoint) for lab, r in zip(labels, args.run_dirs)},
                         args.threshold, args.bins)
    for st in stats:
        print(f"{st.label}: sparsity {st.sparsity:.2%} of {sum(s.params for s in st.layers):,} weights "
              f"(|w| < {args.threshold:g}); per layer " + ", ".join(f"{s.layer} {s.sparsity:.1%}" for s in st.layers))
    axes = plot_histograms(stats)
    fig = axes[0][0].figure
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "analysis"
    _write(out, "weights", fig, [r for st in stats for r in st.rows()],
           {"hist": [r for st in stats for r in st.hist_rows()]})
    return 0


def _filters(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import new_figure
    from cnnlab.analysis.weights import first_layer_filters
    from cnnlab.training.inference import load_weights

    fig, axes = new_figure(size=(6, 6))
    grid = first_layer_filters(load_weights(args.run_dir, args.checkpoint), ax=axes[0][0])
    print(f"{grid.layer}: {grid.weights.shape[0]} filters of {grid.weights.shape[1]}x{grid.weights.shape[2]}x"
          f"{grid.weights.shape[3]}")
    _write(_run_out(args), "filters", fig, grid.rows())
    return 0


def _feature_maps(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import new_figure
    from cnnlab.analysis.samples import pick
    from cnnlab.analysis.weights import feature_maps

    run = _loaded(args)
    x, _, _ = pick(run, args.split, [args.image])
    fm = feature_maps(run.model, x, args.layer)
    cols = min(8, len(fm.maps))
    fig, axes = new_figure(math.ceil(len(fm.maps) / cols), cols, size=(1.6, 1.6))
    fm.plot(axes)
    print(f"layer {fm.layer}: {fm.maps.shape[0]} maps of {fm.maps.shape[1]}x{fm.maps.shape[2]} for {args.split} "
          f"image {args.image}")
    _write(_run_out(args), "feature-maps", fig, fm.rows())
    return 0


def _saliency(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.analysis.common import new_figure
    from cnnlab.analysis.samples import one_per_class, pick
    from cnnlab.analysis.weights import saliency_maps

    run = _loaded(args)
    indices = args.images if args.images is not None else one_per_class(run, args.split)
    x, y, raw = pick(run, args.split, indices)
    fig, axes = new_figure(2, len(indices), size=(2, 2.2))
    sal = saliency_maps(run.model, x, raw, y, indices, args.target, list(run.ds.classes), axes=axes)
    for r in sal.rows():
        print(f"{args.split} image {r['index']}: label {sal.name(r['label'])}, predicted {sal.name(r['predicted'])}; "
              f"saliency max {r['saliency_max']:.4g}, mean {r['saliency_mean']:.4g}")
    _write(_run_out(args), "saliency", fig, sal.rows())
    return 0
