"""cnnlab's public Python API in one import: what the notebooks and docs/api.md use, and nothing else.

    from cnnlab import api
    ds = api.load_dataset("cifar10", root="../shared/data", val_size=5000)
    model = api.create_model("simplenn")
    print(api.format_table(api.summarize(model)))
    summary = api.train({"model": {"name": "simplenn"}, "train": {"epochs": 2}}, data_root="../shared/data")
    run = api.load_run(summary["run"])
    print(api.evaluate_run(run, "val", tta="flip")["acc"])

Everything here is re-exported from the module that owns it (the layers stay as they are: data and models know
nothing of training); `train` is the one function of its own, the library side of `cnnlab train`. A name not listed
in `__all__` is not part of the interface and may change.

This module is a user interface too: every function here checks its arguments before it runs (cnnlab.arguments), so
a wrong one is a one-line `CnnlabError` naming the argument and what it accepts, never an AttributeError from deep
inside or an allocation that cannot fit. `help(api.f)` lists what each argument accepts. The obvious other forms are
taken: a run folder where a loaded run is expected (it is loaded), a spec path where a spec is expected, a model where
a summary is expected, and a single "key=value" string where a list of overrides is expected (one override; to give
several, pass a list). The classes (Trainer, BatchLoader, RunConfig, SweepOptions) check their own arguments.
"""

from __future__ import annotations

import logging
import math
import os
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from matplotlib.axes import Axes
from torch import nn

from cnnlab import arguments as A
from cnnlab import logs
from cnnlab.arguments import checked
from cnnlab import system
from cnnlab.analysis import common as _common
from cnnlab.analysis import landscape as _landscape
from cnnlab.analysis import range_tests as _range
from cnnlab.analysis import weights as _weights
from cnnlab.data import list_datasets, load_dataset as _load_dataset
from cnnlab.data.core import SPLIT_NAMES, Split
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from cnnlab.experiments import report as _report
from cnnlab.experiments import spec as _spec
from cnnlab.experiments import sweep as _sweep
from cnnlab.experiments.sweep import SweepOptions
from cnnlab.models import list_models
from cnnlab.models import registry as _models
from cnnlab.models import sanity as _sanity
from cnnlab.models import summary as _summary
from cnnlab import plotting as _plotting
from cnnlab.training import config as _config
from cnnlab.training import inference as _inference
from cnnlab.training import plots as _plots
from cnnlab.training import trainer as _trainer
from cnnlab.training.checkpoint import CHECKPOINT_CHOICES
from cnnlab.training.config import OVERRIDES, RunConfig
from cnnlab.training.evaluation import TTA_MODES
from cnnlab.training.runfolder import API, RunFolder
from cnnlab.training.trainer import Trainer

# Progress lines (a sweep's, an analysis's, a Trainer's) go to the `cnnlab` loggers (cnnlab.logs). This module is what
# notebooks import, and a notebook shows nothing of a logger nobody configured, so importing it shows them on stdout
# as the `cnnlab` command does, unless the application has set up logging itself (a handler on the `cnnlab` logger or
# on the root logger): then its setup decides. logging.getLogger("cnnlab").setLevel(logging.WARNING) silences them,
# and every function that takes `log=` sends its lines there instead (train and resume print by default, as before).
if not logging.getLogger(logs.ROOT).handlers and not logging.getLogger().handlers:
    logs.configure()

__all__ = ["BatchLoader", "CnnlabError", "RunConfig", "SweepOptions", "Trainer", "analysis_trainer",
           "batch_range_test", "batch_sizes", "candidates", "config", "config_from_dict", "create_model",
           "evaluate_run", "expand", "format_table", "initial_loss_check", "list_datasets", "list_models",
           "load_config", "load_dataset", "load_run", "load_spec", "loss_band", "lr_range_test", "lr_sweep",
           "make_report", "model_info", "new_figure", "plot_curves", "plot_histograms", "predictions",
           "read_metrics", "read_summary", "resume", "save_figure", "summarize", "sweep", "train", "weight_stats",
           "write_predictions"]

ConfigLike = Union[None, str, Path, Dict[str, Any], RunConfig]

# -- what the arguments accept, shared by every function below ------------------------------------------------------
# Bounds of numbers that are also config keys come from the config schema (their one home); the others are ceilings
# that no real call comes near, there so that 2**64 is refused by name instead of tried.
BIG = _config.BIG
_SCHEMA = _config.schema()


def _config_number(key: str) -> A.Accepts:
    """The contract of a config key's number (its type and bounds), for a function argument that means the same."""
    tp, meta, _ = _SCHEMA[key]
    optional = typing.get_origin(tp) is Union  # Optional[int] / Optional[float]
    if (typing.get_args(tp)[0] if optional else tp) is int:
        low = meta["min"] if meta["min"] is not None else meta["gt"] + 1
        a = A.integer(low, meta["max"])
    else:
        a = A.number(meta["min"], meta["max"], gt=meta["gt"], lt=meta["lt"])
    return a.or_none() if optional else a


def _is_axes(v) -> Any:
    if not isinstance(v, Axes):
        raise A.Refused()
    return v


def _axes_list(min_len: int) -> A.Accepts:
    """A list, tuple or array of matplotlib Axes (an array from new_figure is flattened)."""
    item = A.Accepts("a matplotlib Axes", _is_axes)
    seq = A.sequence(item, min_len=min_len, what="a list")

    def check(v):
        if hasattr(v, "ravel") and not isinstance(v, (list, tuple)):
            v = list(v.ravel())
        return seq(v)
    return A.Accepts(seq.text, check)


def _run_folder(v):
    A.path().check(v)
    if not Path(v).is_dir():
        raise A.Refused(f"is not a run folder: {str(v)!r} does not exist or is not a folder")
    return v


PATH = A.path()
RUN_DIR = A.Accepts("a run folder (str or pathlib.Path)", _run_folder)
LOG = A.function("a callable taking one str (e.g. print)")
AXES = A.Accepts("a matplotlib Axes", _is_axes).or_none()
TEXT = A.text()
FLAG = A.flag()
SPLIT_NAME = A.text(SPLIT_NAMES)
TTA = A.text(TTA_MODES)
LR = A.number(gt=0, high=1e6, what="a learning rate")
LR_RULE = A.text(_range.LR_RULES.names())
STEPS = A.integer(1, BIG)
BATCH = _config_number("batch.size")
TRAINER = A.instance(Trainer, "a Trainer (api.analysis_trainer(api.config(...)))")
CONFIG_SOURCE = A.either(A.instance(RunConfig, "a RunConfig"), A.mapping("a (nested) dict"),
                         A.path("a YAML path")).or_none()
RUN = A.instance(_inference.LoadedRun, "a loaded run (api.load_run(run_dir)) or a run folder to load",
                 convert=_inference.load_run, convertible=(str, os.PathLike))
SPEC = A.instance(_spec.Spec, "a spec (api.load_spec(path)) or the path of one", convert=_spec.load_spec,
                  convertible=(str, os.PathLike))
MODEL = A.instance(nn.Module, "a torch.nn.Module (api.create_model(name))")
TENSOR = A.instance(torch.Tensor, "a torch.Tensor")


# -- configs and training ---------------------------------------------------------------------------------------------

@checked(source=CONFIG_SOURCE, overrides=OVERRIDES.or_none(), data_root=PATH.or_none())
def config(source: ConfigLike = None, overrides: Sequence[str] = (), data_root: Optional[str] = None) -> RunConfig:
    """A validated RunConfig from a YAML path, a (nested) dict, or a RunConfig, plus `key=value` overrides (a list,
    or one string as one override). `data_root` sets `data.root` (as `--data-root` does)."""
    extra = list(overrides or ()) + ([f"data.root={data_root}"] if data_root is not None else [])
    if isinstance(source, RunConfig):
        return _config.load_config(None, extra, base=source.to_dict())
    if isinstance(source, dict):
        return _config.load_config(None, extra, base=source)
    return _config.load_config(source, extra)


@checked(source=CONFIG_SOURCE, overrides=OVERRIDES.or_none(), data_root=PATH.or_none(), overwrite=FLAG, log=LOG)
def train(source: ConfigLike = None, overrides: Sequence[str] = (), data_root: Optional[str] = None, *,
          overwrite: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train one run (as `cnnlab train` does) and return its summary (also in RUN/summary.json)."""
    return Trainer(config(source, overrides, data_root), overwrite=overwrite, log=log, spelling=API).fit()


config_from_dict = checked(data=A.mapping("a (nested) dict of config sections"))(_config.config_from_dict)
load_config = checked(path=PATH.or_none(), overrides=OVERRIDES.or_none(),
                           base=A.mapping("a (nested) dict").or_none())(_config.load_config)


@checked(run_dir=RUN_DIR, log=LOG, data_root=PATH.or_none(), overrides=OVERRIDES.or_none(), download=FLAG)
def resume(run_dir, log: Callable[[str], None] = print, data_root: Optional[str] = None,
           overrides: Optional[Sequence[str]] = None, download: bool = False) -> dict:
    """Continue the run in `run_dir` from its last.pt (as `cnnlab train --resume`); `overrides` may extend it
    (`["train.epochs=30"]`). Returns its summary. Messages name the API's way (`api.resume`, `overwrite=True`)."""
    overrides = [overrides] if isinstance(overrides, str) else list(overrides or [])
    return _trainer.resume(run_dir, log=log, data_root=data_root, overrides=overrides, download=download,
                           spelling=API)


@checked(run_dir=RUN_DIR)
def read_metrics(run_dir) -> List[dict]:
    """A run's metrics.csv: one dict per epoch (epoch, train_loss, train_acc, val_loss, val_acc, lr, time, ...)."""
    return RunFolder(Path(run_dir)).read_metrics()


@checked(run_dir=RUN_DIR)
def read_summary(run_dir) -> Optional[dict]:
    """A run's summary.json (None while it has not finished an epoch)."""
    return RunFolder(Path(run_dir)).read_summary()


# -- data and models --------------------------------------------------------------------------------------------------

load_dataset = checked(
    name=A.text(what="a dataset name (api.list_datasets())"), root=PATH.or_none(),
    val_size=_config_number("data.val_size"), seed=_config_number("data.seed"),
    train_subset=_config_number("data.train_subset"), val_subset=_config_number("data.val_subset"), download=FLAG,
    cache_dir=PATH.or_none(), test_size=_config_number("data.test_size"))(_load_dataset)


def _model_fits(where: str, args: dict) -> None:
    """Count the parameters on the meta device (nothing allocated, as the trainer's memory check does) and refuse a
    model whose float32 weights alone exceed the memory left: input_size=10**6 must fail in a second, not swap."""
    kwargs = {k: args[k] for k in ("num_classes", "in_channels", "input_size") if args.get(k) is not None}
    try:
        params = _models.count_params(args["name"], **kwargs, **args.get("options", {}))
    except CnnlabError:
        raise
    except Exception:  # a model that cannot be built on meta is built for real and fails there, if at all
        return
    have = system.available_memory()
    if have is not None and 4 * params > have:
        given = ", ".join(f"{k}={v:,}" for k, v in kwargs.items()) or "its defaults"
        raise CnnlabError(f"{where}: {args['name']} with {given} would have {params:,} parameters "
                          f"({4 * params / 2**30:,.1f} GiB of float32 weights), more than the "
                          f"{have / 2**30:,.1f} GiB of memory available; make 'input_size' (or 'num_classes', "
                          "'in_channels', the width options) smaller")


MODEL_NAME = A.text(what="a model name (api.list_models())")
create_model = checked(then=_model_fits, name=MODEL_NAME, num_classes=A.integer(1, 10**6).or_none(),
                            in_channels=A.integer(1, 2**12).or_none(),
                            input_size=A.integer(1, BIG).or_none())(_models.create_model)
model_info = checked(name=MODEL_NAME)(_models.model_info)


def _input_fits(where: str, args: dict) -> None:
    """The input batch of a summary is allocated on the model's device (nothing on meta): refuse one that cannot
    fit (activations come on top, so this is a floor)."""
    p = next(args["model"].parameters(), None)
    shape = args.get("input_shape") or getattr(args["model"], "input_shape", None)
    if p is None or p.device.type == "meta" or shape is None:
        return
    need = args.get("batch_size", 1) * math.prod(shape) * p.element_size()
    have = system.available_memory() if p.device.type == "cpu" else None
    if have is not None and need > have:
        raise CnnlabError(f"{where}: an input of 'batch_size' x 'input_shape' = {args.get('batch_size', 1):,} x "
                          f"{tuple(shape)} needs {need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB "
                          "available; make batch_size or input_shape smaller, or build the model under "
                          "torch.device('meta')")


summarize = checked(then=_input_fits, model=MODEL,
                         input_shape=A.sequence(A.integer(1, 2**16), min_len=3, max_len=3, what="(C, H, W) as"
                                                " a list").or_none(),
                         batch_size=_config_number("batch.size"),
                         dtype=A.instance(torch.dtype, "a torch.dtype"))(_summary.summarize)
format_table = checked(s=A.instance(_summary.Summary, "a Summary (api.summarize(model)) or a model to "
                                                           "summarise", convert=_summary.summarize,
                                         convertible=(nn.Module,)))(_summary.format_table)
initial_loss_check = checked(model=MODEL, x=TENSOR, y=TENSOR,
                                  tolerance=A.number(gt=0, high=1e6))(_sanity.initial_loss_check)


# -- using a run ------------------------------------------------------------------------------------------------------

load_run = checked(run_dir=RUN_DIR, which=A.text(CHECKPOINT_CHOICES), data_root=PATH.or_none(),
                        device=TEXT, download=FLAG)(_inference.load_run)
evaluate_run = checked(run=RUN, split=SPLIT_NAME, tta=TTA)(_inference.evaluate_run)
predictions = checked(run=RUN, split=SPLIT_NAME, tta=TTA,
                           images=A.instance(Split, "a Split (images of your own)").or_none())(_inference.predictions)


def _predictions_agree(where: str, args: dict) -> None:
    ids, labels, probs, classes = args["ids"], args["labels"], args.get("probs"), args.get("classes")
    if len(ids) != len(labels):
        raise CnnlabError(f"{where}: arguments 'ids' and 'labels' need the same length, got {len(ids):,} and "
                          f"{len(labels):,}")
    if (probs is None) != (classes is None):
        raise CnnlabError(f"{where}: arguments 'classes' and 'probs' go together: pass both or neither")
    if probs is not None and tuple(probs.shape) != (len(ids), len(classes)):
        raise CnnlabError(f"{where}: argument 'probs' must have shape (len(ids), len(classes)) = "
                          f"({len(ids)}, {len(classes)}), got {tuple(probs.shape)}")
    if classes is not None and any(k >= len(classes) for k in labels):
        raise CnnlabError(f"{where}: argument 'labels' holds a class index >= len(classes) = {len(classes)}")


write_predictions = checked(
    then=_predictions_agree, path=PATH, ids=A.sequence(A.either(A.text(), A.integer(0, 2**63 - 1)), what="a list"),
    labels=A.sequence(A.integer(0, 10**6), what="a list"), force=FLAG,
    classes=A.sequence(A.text(), min_len=1, what="a list").or_none(),
    probs=TENSOR.or_none())(_inference.write_predictions)


# -- figures ----------------------------------------------------------------------------------------------------------

MAX_PIXELS = 10**8  # 400 MB of RGBA: far beyond any figure cnnlab draws, far below what would swap


def _pixels_fit(where: str, args: dict) -> None:
    w, h = args["fig"].get_size_inches()
    dpi = args.get("dpi", _plotting.DPI)
    if w * h * dpi * dpi > MAX_PIXELS:
        raise CnnlabError(f"{where}: argument 'dpi' {dpi} makes a {w:g} x {h:g} inch figure "
                          f"{w * dpi:,.0f} x {h * dpi:,.0f} pixels, more than {MAX_PIXELS:,}; use a smaller dpi")


new_figure = checked(nrows=A.integer(1, 100), ncols=A.integer(1, 100),
                          figsize=A.sequence(A.number(gt=0, high=200, what="inches"), min_len=2, max_len=2,
                                             what="(width, height) as a list"),
                          squeeze=FLAG)(_plotting.new_figure)
save_figure = checked(then=_pixels_fit, fig=A.instance(_plotting.Figure, "a matplotlib Figure"), path=PATH,
                           dpi=A.integer(1, 2400))(_plotting.save_figure)
plot_curves = checked(
    runs=A.mapping("a dict of label -> metrics rows (e.g. {'run': api.read_metrics(run_dir)})", min_len=1,
                   value=A.sequence(A.mapping("a dict"), what="a list")),
    axes=_axes_list(2).or_none(), train_loss_label=TEXT,
    legend=A.text(("figure", "row")))(_plots.plot_curves)
weight_stats = checked(
    states=A.mapping("a dict of label -> state dict (e.g. {'run': model.state_dict()})", min_len=1,
                     value=A.mapping("a state dict")),
    threshold=A.number(gt=0, high=1e6), bins=A.integer(1, 10**4))(_weights.weight_stats)
plot_histograms = checked(
    stats=A.sequence(A.instance(_weights.WeightStats, "a WeightStats"), min_len=1,
                     what="a list (api.weight_stats(...))"),
    axes=_axes_list(1).or_none(), max_layers=A.integer(1, 1000))(_weights.plot_histograms)


# -- analyses ---------------------------------------------------------------------------------------------------------

analysis_trainer = checked(
    cfg=A.instance(RunConfig, "a RunConfig, or a dict or YAML path for api.config", convert=config,
                   convertible=(dict, str, os.PathLike)),
    log=LOG.or_none())(_common.analysis_trainer)
lr_range_test = checked(trainer=TRAINER, start=LR, end=LR, steps=A.integer(2, BIG), mode=A.text(_range.LR_MODES),
                             beta=A.number(0, lt=1), diverge=A.number(gt=1, high=1e6), rule=LR_RULE,
                             ax=AXES)(_range.lr_range_test)
lr_sweep = checked(trainer=TRAINER, lrs=A.sequence(LR, min_len=1), epochs=_config_number("train.epochs"),
                        rule=LR_RULE, log=LOG.or_none(), ax=AXES)(_range.lr_sweep)
candidates = checked(k=A.integer(2, 10**4), low=LR, high=LR)(_range.candidates)
batch_sizes = checked(low=BATCH, high=BATCH)(_range.batch_sizes)
batch_range_test = checked(trainer=TRAINER, sizes=A.sequence(BATCH, min_len=2), steps=STEPS,
                           micro=_config_number("batch.micro"), log=LOG.or_none(),
                           ax=AXES)(_range.batch_range_test)
loss_band = checked(trainer=TRAINER, lrs=A.sequence(LR, min_len=1), steps=STEPS, label=TEXT, log=LOG.or_none(), ax=AXES,
                         color=TEXT, gradients=FLAG, ax_grad=AXES)(_landscape.loss_band)


# -- sweeps and reports -----------------------------------------------------------------------------------------------

load_spec = checked(path=PATH)(_spec.load_spec)
expand = checked(spec=SPEC, profile=TEXT.or_none(), overrides=OVERRIDES.or_none(), out=PATH,
                 analysis_dirs=A.sequence(PATH, what="a list of folders"))(_spec.expand)
sweep = checked(opts=A.instance(SweepOptions, "SweepOptions(spec_path=...)"), log=LOG.or_none())(_sweep.sweep)
make_report = checked(inputs=A.sequence(PATH, min_len=1, what="a list", one=True), out=PATH,
                           profile=TEXT.or_none(), store=TEXT.or_none(), runs_out=PATH, title=TEXT.or_none(),
                           command=TEXT, pdf=FLAG)(_report.make_report)
