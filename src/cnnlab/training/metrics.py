"""The catalogue of metrics: every number a run records or a report computes, once, with what it means.

One entry per metric (STYLE lesson 13): its name (the key in summary.json or the column of metrics.csv), the words a
sentence or a table uses for it, its unit, which direction is better, whether it is shown as a percentage, and where
it comes from. The tables the rest of cnnlab reads are derived here: the summary's types (runfolder), the columns of
metrics.csv, what trackers log at the end of a run (tracking), the metrics a report figure or an answer may name,
their labels and directions (experiments). A new metric is one entry; a module that needs a metric's name by itself
uses the constants below, so that each name is spelled once.

This module sits in `training` and imports nothing of cnnlab: the trainer writes these names, and the experiments
layer (figures, answers, reports), which may import training, reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

# Where a metric comes from.
SUMMARY = "summary"          # summary.json, written by the trainer at the end of a run
EPOCHS = "metrics.csv"       # a column of metrics.csv, one row per epoch
EVALUATION = "evaluation"    # the best checkpoint evaluated on a split after training (a sweep's `evaluate`), kept
#                              in the store's copy of the summary
COMPUTED = "computed"        # computed by the report from other metrics or from the best checkpoint

# end_train_loss / end_train_acc: the final weights (the served ones: the EMA where train.ema is set) on the first
# END_TRAIN_IMAGES images of the training split, every class in its share (data.core.representative; the whole
# split when it is smaller), in eval mode and without
# augmentation, once at the end of a finished or stopped run. Unlike final_train_loss (the mean over the last
# epoch's augmented batches while the weights moved), it compares runs of different lengths and batch sizes: a
# 1-epoch run's final_train_loss averages in its first steps from ln(classes). A fixed subset, not the whole split:
# 10,000 images cost a fifth of a CIFAR-10 epoch's forward passes. Not the first 10,000: the JPEG CIFAR-10's
# train/ is read class folder by class folder, so those were 3 classes (4,500 airplanes, 4,500 automobiles, 1,000
# birds) until 2026-12-06; scripts/remeasure_end_train.py measured the committed runs again.
END_TRAIN_IMAGES = 10_000


@dataclass(frozen=True)
class Metric:
    name: str
    label: str                   # in words, for a sentence or a table heading ("best validation accuracy")
    unit: str                    # fraction (shown as a percentage where `percent`), s, nats, images/s, count, ...
    sources: Tuple[str, ...]     # SUMMARY, EPOCHS, EVALUATION, COMPUTED (see above)
    better: Optional[str] = None  # "higher" or "lower"; None where neither is better (lr, parameters)
    percent: bool = False        # a fraction shown as a percentage (accuracies, errors, shares)
    axis: Optional[str] = None   # the axis label where it differs from `label` (the unit added)
    tracked: bool = False        # logged to the trackers (TensorBoard hparams, MLflow) at the end of a run
    whole: bool = False          # an integer (a count, an epoch number); None where it is not known yet
    tag: Optional[str] = None    # its TensorBoard tag, for a metrics.csv column logged every epoch

    @property
    def axis_label(self) -> str:
        return self.axis or self.label

    @property
    def lower_is_better(self) -> bool:
        return self.better == "lower"


_ACC, _LOSS = dict(unit="fraction", better="higher", percent=True), dict(unit="nats", better="lower")
_END = f"of the final weights (eval mode, no augmentation, up to {END_TRAIN_IMAGES:,} training images)"

# Grouped by where they come from; within metrics.csv, in the order of its columns (runfolder.METRIC_COLUMNS).
CATALOGUE: Tuple[Metric, ...] = (
    Metric("best_val_acc", "best validation accuracy", sources=(SUMMARY,), tracked=True, **_ACC),
    Metric("best_epoch", "epoch of best val acc", "epoch", (SUMMARY,), "lower", tracked=True, whole=True),
    Metric("final_train_acc", "final training accuracy", sources=(SUMMARY,), tracked=True, **_ACC),
    Metric("final_val_acc", "final validation accuracy", sources=(SUMMARY,), tracked=True, **_ACC),
    Metric("final_train_loss", "last epoch's mean training loss (augmented batches, weights moving)",
           sources=(SUMMARY,), tracked=True, axis="training loss (last epoch's mean)", **_LOSS),
    Metric("final_val_loss", "final validation loss", sources=(SUMMARY,), tracked=True, **_LOSS),
    # the axis says "final weights" only: the whole definition runs off a figure's height (it is in the caption)
    Metric("end_train_loss", f"training loss {_END}", sources=(SUMMARY,), tracked=True,
           axis="training loss (final weights)", **_LOSS),
    Metric("end_train_acc", f"training accuracy {_END}", sources=(SUMMARY,), tracked=True,
           axis="training accuracy (final weights)", **_ACC),
    Metric("wall_time", "training time", "s", (SUMMARY,), "lower", axis="training time (s)", tracked=True),
    Metric("params", "parameters", "count", (SUMMARY,), whole=True),
    # lr, epoch_time, time and epochs_done are labelled by their names, as figure titles always had them
    Metric("epochs_done", "epochs_done", "epochs", (SUMMARY,), tracked=True, whole=True),
    Metric("initial_loss", "initial loss", "nats", (SUMMARY,), "lower"),
    Metric("train_loss", "training loss", sources=(EPOCHS,), tag="loss/train", **_LOSS),
    Metric("train_acc", "training accuracy", sources=(EPOCHS,), tag="acc/train", **_ACC),
    Metric("val_loss", "validation loss", sources=(EPOCHS, EVALUATION), tag="loss/val", **_LOSS),
    Metric("val_acc", "validation accuracy", sources=(EPOCHS, EVALUATION), tag="acc/val", **_ACC),
    Metric("lr", "lr", "per optimizer step", (EPOCHS,), tag="lr"),
    Metric("batch_size", "batch size", "images", (EPOCHS,), tag="batch_size"),
    Metric("epoch_time", "epoch_time", "s", (EPOCHS,), tag="time/epoch_s"),
    # per epoch in metrics.csv; the summary keeps the median over the epochs
    Metric("images_per_sec", "images / s", "images/s", (EPOCHS, SUMMARY), "higher", tag="throughput/images_per_sec"),
    Metric("time", "time", "s", (EPOCHS,)),
    Metric("test_acc", "test accuracy (best checkpoint)", sources=(EVALUATION,), **_ACC),
    Metric("test_loss", "test loss (best checkpoint)", sources=(EVALUATION,), **_LOSS),
    Metric("train_error", "training error", "fraction", (EPOCHS, COMPUTED), "lower", percent=True),  # 1 - train_acc
    Metric("val_error", "validation error", "fraction", (EPOCHS, COMPUTED), "lower", percent=True),  # 1 - val_acc
    Metric("gap", "overfitting gap (final training minus final validation accuracy)", "fraction", (COMPUTED,),
           "lower", percent=True),
    Metric("weight_sparsity", "share of weights below 1e-3 in magnitude (best checkpoint)", "fraction",
           (COMPUTED,), "higher", percent=True),
)
METRICS: Dict[str, Metric] = {m.name: m for m in CATALOGUE}
if len(METRICS) != len(CATALOGUE):
    raise ValueError("a metric is catalogued twice")

# The names that modules spell by themselves (a dict key written, a value read).
BEST_VAL_ACC, BEST_EPOCH, WALL_TIME = "best_val_acc", "best_epoch", "wall_time"
FINAL_TRAIN_ACC, FINAL_VAL_ACC, TEST_ACC = "final_train_acc", "final_val_acc", "test_acc"


def names(*, source: Optional[str] = None, exclude: Tuple[str, ...] = ()) -> Tuple[str, ...]:
    """The names of the metrics that come from `source` (any with None), without those that also come from one of
    `exclude`, in the catalogue's order."""
    return tuple(m.name for m in CATALOGUE if (source is None or source in m.sources)
                 and not set(exclude) & set(m.sources))


# Derived tables (the modules that read them import them from here).
SUMMARY_METRICS = names(source=SUMMARY)                          # what the trainer writes into summary.json
EPOCH_COLUMNS = names(source=EPOCHS, exclude=(COMPUTED,))        # metrics.csv's metric columns, in order
EPOCH_METRICS = names(source=EPOCHS)                             # per-epoch series, with the computed errors
RUN_METRICS = tuple(n for n in names() if set(METRICS[n].sources) & {SUMMARY, EVALUATION})  # one number per run
TRACKED = tuple(m.name for m in CATALOGUE if m.tracked)
EPOCH_TAGS = {m.name: m.tag for m in CATALOGUE if m.tag}        # logged to TensorBoard every epoch, under its tag
# what an answer can compare: one number per run (or computed from such numbers) with a better direction
COMPARABLE = tuple(m.name for m in CATALOGUE if m.better and (set(m.sources) & {SUMMARY, EVALUATION}
                                                              or m.sources == (COMPUTED,)))
PERCENT = frozenset(m.name for m in CATALOGUE if m.percent)
LOWER_IS_BETTER = frozenset(m.name for m in CATALOGUE if m.lower_is_better)
# times and speeds: their spread is the machine's load, not the seed's (answers judge them on their own repeats)
TIMINGS = frozenset(m.name for m in CATALOGUE if m.unit in ("s", "images/s"))
LABELS = {m.name: m.label for m in CATALOGUE}                   # in a sentence or a table heading
AXIS_LABELS = {m.name: m.axis_label for m in CATALOGUE}         # on a figure's axis, legend or title
