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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from cnnlab.analysis.common import analysis_trainer
from cnnlab.analysis.landscape import loss_band
from cnnlab.analysis.range_tests import batch_range_test, batch_sizes, candidates, lr_range_test, lr_sweep
from cnnlab.analysis.weights import plot_histograms, weight_stats
from cnnlab.data import list_datasets, load_dataset
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from cnnlab.experiments.report import make_report
from cnnlab.experiments.spec import expand, load_spec
from cnnlab.experiments.sweep import SweepOptions, sweep
from cnnlab.models import create_model, list_models, model_info
from cnnlab.models.sanity import initial_loss_check
from cnnlab.models.summary import format_table, summarize
from cnnlab.plotting import new_figure, save_figure
from cnnlab.training.config import RunConfig, config_from_dict, load_config
from cnnlab.training.inference import evaluate_run, load_run, predictions, write_predictions
from cnnlab.training.plots import plot_curves
from cnnlab.training.runfolder import API, RunFolder
from cnnlab.training.trainer import Trainer, resume as _resume

__all__ = ["BatchLoader", "CnnlabError", "RunConfig", "SweepOptions", "Trainer", "analysis_trainer",
           "batch_range_test", "batch_sizes", "candidates", "config", "config_from_dict", "create_model",
           "evaluate_run", "expand", "format_table", "initial_loss_check", "list_datasets", "list_models",
           "load_config", "load_dataset", "load_run", "load_spec", "loss_band", "lr_range_test", "lr_sweep",
           "make_report", "model_info", "new_figure", "plot_curves", "plot_histograms", "predictions",
           "read_metrics", "read_summary", "resume", "save_figure", "summarize", "sweep", "train", "weight_stats",
           "write_predictions"]

ConfigLike = Union[None, str, Path, Dict[str, Any], RunConfig]


def config(source: ConfigLike = None, overrides: Sequence[str] = (), data_root: Optional[str] = None) -> RunConfig:
    """A validated RunConfig from a YAML path, a (nested) dict, or a RunConfig, plus `key=value` overrides.
    `data_root` sets `data.root` (as `--data-root` does)."""
    extra = list(overrides) + ([f"data.root={data_root}"] if data_root is not None else [])
    if isinstance(source, RunConfig):
        return load_config(None, extra, base=source.to_dict())
    if isinstance(source, dict):
        return load_config(None, extra, base=source)
    if source is None or isinstance(source, (str, Path)):
        return load_config(source, extra)
    raise CnnlabError(f"config: expected a YAML path, a dict or a RunConfig, got {type(source).__name__}")


def train(source: ConfigLike = None, overrides: Sequence[str] = (), data_root: Optional[str] = None, *,
          overwrite: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train one run (as `cnnlab train` does) and return its summary (also in RUN/summary.json)."""
    return Trainer(config(source, overrides, data_root), overwrite=overwrite, log=log, spelling=API).fit()


def resume(run_dir, log: Callable[[str], None] = print, data_root: Optional[str] = None,
           overrides: Optional[Sequence[str]] = None, download: bool = False) -> dict:
    """Continue the run in `run_dir` from its last.pt (as `cnnlab train --resume`); `overrides` may extend it
    (`["train.epochs=30"]`). Returns its summary."""
    return _resume(run_dir, log=log, data_root=data_root, overrides=list(overrides or []), download=download,
                   spelling=API)


def read_metrics(run_dir) -> List[dict]:
    """A run's metrics.csv: one dict per epoch (epoch, train_loss, train_acc, val_loss, val_acc, lr, time, ...)."""
    return RunFolder(Path(run_dir)).read_metrics()


def read_summary(run_dir) -> Optional[dict]:
    """A run's summary.json (None while it has not finished an epoch)."""
    return RunFolder(Path(run_dir)).read_summary()
