"""The catalogue of metrics (training/metrics.py): the tables derived from it equal the side lists they replaced
(issue #28), the trainer writes what it says, and the tables the report reads follow it."""

from __future__ import annotations

import json

from cnnlab.experiments import answers, figures, report, tune
from cnnlab.training import metrics as M
from cnnlab.training.runfolder import METRIC_COLUMNS, SUMMARY_TYPES
from cnnlab.training.tracking import EPOCH_TAGS, FINAL_METRICS

# The side lists as they were written by hand before the catalogue (commit 89375f6).
OLD_FIGURE_SUMMARY = ("best_val_acc", "best_epoch", "final_train_acc", "final_val_acc", "final_train_loss",
                      "wall_time", "images_per_sec", "params", "epochs_done", "test_acc", "test_loss", "val_acc",
                      "val_loss", "end_train_loss", "end_train_acc")
OLD_EPOCH = ("train_loss", "train_acc", "val_loss", "val_acc", "train_error", "val_error", "lr", "batch_size",
             "epoch_time", "images_per_sec", "time")
OLD_ANSWER_METRICS = ("best_val_acc", "final_train_acc", "final_val_acc", "test_acc", "final_train_loss",
                      "final_val_loss", "end_train_loss", "end_train_acc", "wall_time", "images_per_sec", "best_epoch",
                      "gap", "weight_sparsity", "initial_loss")
OLD_LOWER = {"final_train_loss", "final_val_loss", "end_train_loss", "wall_time", "best_epoch", "gap", "initial_loss"}
OLD_PERCENT = {"best_val_acc", "final_train_acc", "final_val_acc", "test_acc", "gap", "weight_sparsity",
               "end_train_acc"}
OLD_ACCURACIES = {"best_val_acc", "final_train_acc", "final_val_acc", "test_acc", "val_acc", "train_acc", "val_error",
                  "train_error", "end_train_acc"}
OLD_LABELS = {"best_val_acc": "best validation accuracy", "final_train_acc": "final training accuracy",
              "final_val_acc": "final validation accuracy", "wall_time": "training time (s)",
              "images_per_sec": "images / s", "params": "parameters", "best_epoch": "epoch of best val acc",
              "val_error": "validation error", "train_error": "training error", "train_loss": "training loss",
              "val_loss": "validation loss", "val_acc": "validation accuracy", "train_acc": "training accuracy",
              "test_acc": "test accuracy (best checkpoint)", "test_loss": "test loss (best checkpoint)",
              "final_train_loss": "last epoch's mean training loss (augmented batches, weights moving)",
              "end_train_loss": "training loss of the final weights (eval mode, no augmentation, up to 10,000 "
                                "training images)",
              "end_train_acc": "training accuracy of the final weights (eval mode, no augmentation, up to 10,000 "
                               "training images)"}
OLD_WORDS = {**OLD_LABELS, "final_val_loss": "final validation loss", "wall_time": "training time",
             "gap": "overfitting gap (final training minus final validation accuracy)",
             "weight_sparsity": "share of weights below 1e-3 in magnitude (best checkpoint)",
             "test_acc": "test accuracy (best checkpoint)", "initial_loss": "initial loss"}
OLD_FINAL = ("best_val_acc", "best_epoch", "final_train_acc", "final_val_acc", "final_train_loss", "final_val_loss",
             "end_train_loss", "end_train_acc", "wall_time", "epochs_done")
OLD_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "acc/train", "val_acc": "acc/val",
            "lr": "lr", "batch_size": "batch_size", "images_per_sec": "throughput/images_per_sec",
            "epoch_time": "time/epoch_s"}
OLD_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "batch_size", "epoch_time",
               "images_per_sec", "time", "threads"]
OLD_SUMMARY_TYPES = {"status", "best_val_acc", "best_epoch", "final_train_acc", "final_val_acc", "final_train_loss",
                     "wall_time", "images_per_sec", "params", "epochs_done", "targets", "diverged", "end_train_loss",
                     "end_train_acc", "end_train_images"}


def test_figure_tables_keep_every_old_metric_and_label():
    assert set(OLD_FIGURE_SUMMARY) <= set(figures.SUMMARY_METRICS)
    assert set(figures.SUMMARY_METRICS) - set(OLD_FIGURE_SUMMARY) == {"final_val_loss", "initial_loss"}
    assert set(figures.EPOCH_METRICS) == set(OLD_EPOCH)
    assert set(figures.ACCURACIES) - OLD_ACCURACIES == {"gap", "weight_sparsity"}  # never a figure's y
    # three labels were cut short on purpose for the axis (the whole definition ran off a figure's height); the
    # words of an answer and a caption's definition keep them whole
    short = {"final_train_loss": "training loss (last epoch's mean)",
             "end_train_loss": "training loss (final weights)",
             "end_train_acc": "training accuracy (final weights)"}
    assert {k: figures.LABELS[k] for k in OLD_LABELS} == {**OLD_LABELS, **short}
    assert {k: M.LABELS[k] for k in short} == {k: OLD_LABELS[k] for k in short}
    # a metric the old table did not label still shows its name, so no figure title changed
    assert all(figures.LABELS[k] == k for k in ("lr", "epoch_time", "time", "epochs_done"))
    assert figures.LABELS["batch_size"] == "batch size"   # in words since HW3 2.6 plots it per epoch


def test_answer_tables_keep_every_old_metric_word_and_direction():
    assert set(OLD_ANSWER_METRICS) <= set(answers.METRICS)
    assert set(answers.METRICS) - set(OLD_ANSWER_METRICS) == {"test_loss", "val_acc", "val_loss"}
    assert {m for m in answers.METRICS if m in answers.LOWER_IS_BETTER} == OLD_LOWER | {"test_loss", "val_loss"}
    assert {m for m in answers.METRICS if m in answers.PERCENT} == OLD_PERCENT | {"val_acc"}
    assert {k: answers.WORDS[k] for k in OLD_WORDS} == OLD_WORDS


def test_training_tables_equal_the_old_ones():
    assert FINAL_METRICS == OLD_FINAL
    assert EPOCH_TAGS == OLD_TAGS
    assert METRIC_COLUMNS == OLD_COLUMNS
    assert set(SUMMARY_TYPES) - OLD_SUMMARY_TYPES == {"final_val_loss", "initial_loss"}
    assert tune.METRICS == {"val_acc": "maximize", "val_loss": "minimize"}


def test_every_metric_is_described():
    for m in M.CATALOGUE:
        assert m.label and m.unit and m.sources, m.name
        assert set(m.sources) <= {M.SUMMARY, M.EPOCHS, M.EVALUATION, M.COMPUTED}, m.name
        assert m.better in (None, "higher", "lower"), m.name
        assert not m.percent or m.unit == "fraction", m.name


def test_constants_are_catalogue_names():
    for name in (M.BEST_VAL_ACC, M.BEST_EPOCH, M.WALL_TIME, M.FINAL_TRAIN_ACC, M.FINAL_VAL_ACC, M.TEST_ACC):
        assert name in M.METRICS
    assert set(report.SEED_COLUMNS) <= set(M.RUN_METRICS)


def test_the_trainer_writes_the_catalogues_summary_metrics(fashion_run):
    """A real run on a few hundred images: every summary metric is in summary.json with the catalogued type, and
    metrics.csv has the catalogue's columns."""
    run = fashion_run("data.train_subset=256", "data.val_subset=128", "train.epochs=1")
    summary = json.loads((run / "summary.json").read_text())
    for name in M.SUMMARY_METRICS:
        assert name in summary, name
        assert isinstance(summary[name], SUMMARY_TYPES[name]), name
    assert (run / "metrics.csv").read_text().splitlines()[0].split(",") == METRIC_COLUMNS
