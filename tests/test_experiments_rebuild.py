"""Answers that are right, and reports rebuilt from committed run files (issue #23), on one real tiny sweep:
- training-loss questions read end_train_loss (the final weights on unaugmented training images, eval mode), and
  every answer names the metric it used;
- a run that never left chance is "did not learn" in runs.csv, the table, the answers and the legends;
- runs.csv has a column for every config key that differs between runs, however the spec varied it;
- a report written again from its <stem>_runs/ copies alone (store and run folders deleted) gives the same answers.
"""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
import yaml

from cnnlab.experiments.answers import answer_all, check_answer
from cnnlab.experiments.figures import Entry, draw
from cnnlab.experiments.report import Source, runs_csv

# Fashion-MNIST, LeNet-5, 256 / 128 images: group bs zips the batch size with the epochs (8 steps each, as HW3 2.4
# fixes the iterations); group lr has a run that learns, one at lr 1e-7 that cannot leave chance, and one with
# another optimizer (a variant's keys that no axis names).
BASE = {"data": {"name": "fashion-mnist", "train_subset": 256, "val_subset": 128}, "model": {"name": "lenet5"},
        "batch": {"size": 32}, "optim": {"lr": 0.05}, "train": {"epochs": 1, "progress": "off"}}
SPEC = {"question": "Loss against batch size; which lr learns?", "base": BASE,
        "groups": {"bs": {"zip": {"batch.size": [32, 128], "train.epochs": [1, 4]}},
                   "lr": {"variants": {"ok": {"optim.lr": 0.1}, "stuck": {"optim.lr": 1.0e-7},
                                       "adam": {"optim.name": "adam", "optim.lr": 0.003}}}},
        "report": {"answers": [
            {"question": "loss vs batch", "kind": "best", "key": "batch.size", "by": "end_train_loss", "group": "bs"},
            {"question": "best lr", "kind": "best", "key": "variant", "by": "best_val_acc", "group": "lr"},
            {"question": "ok vs stuck", "kind": "compare", "a": "ok", "b": "stuck", "metrics": "best_val_acc"}]}}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, session_cache, shared_data):
    """The sweep above, run once through the command line, with its report at rep/report.html."""
    import os

    from test_experiments_report import run_cli

    tmp = tmp_path_factory.mktemp("rebuild")
    spec = tmp / "rebuild.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    old = {k: os.environ.get(k) for k in ("CNNLAB_CACHE", "CNNLAB_DATA")}
    os.environ.update(CNNLAB_CACHE=str(session_cache), CNNLAB_DATA=str(shared_data))
    try:
        assert run_cli(["sweep", str(spec), "--out", str(tmp / "runs"), "--report",
                        str(tmp / "rep" / "report.html")]) == 0
        yield tmp, spec
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def rows(tmp):
    return {r["run"]: r for r in csv.DictReader((tmp / "rep" / "runs.csv").open())}


def answers(tmp):
    return json.loads((tmp / "rep" / "answers.json").read_text())[0]["answers"]


# -- 1. end_train_loss ---------------------------------------------------------------------------------------------

def test_end_train_loss_is_the_final_weights_on_the_unaugmented_training_images(swept, shared_data):
    from cnnlab.training.inference import evaluate_run, load_run

    tmp, _ = swept
    folder = tmp / "runs" / "rebuild" / "default" / "bs_size=128_epochs=4"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["end_train_images"] == 256  # the whole (sliced) split: below END_TRAIN_IMAGES
    # last.pt holds the final weights; evaluate_run scores them in eval mode on the unaugmented split
    again = evaluate_run(load_run(folder, "last", str(shared_data)), "train")
    assert summary["end_train_loss"] == pytest.approx(again["loss"], rel=1e-5)
    assert summary["end_train_acc"] == pytest.approx(again["acc"])
    assert float(rows(tmp)["bs_size=128_epochs=4"]["end_train_loss"]) == pytest.approx(summary["end_train_loss"])


def test_the_training_loss_answer_reads_end_train_loss_and_every_answer_names_its_metric(swept):
    tmp, _ = swept
    by_q = {a["question"]: a for a in answers(tmp)}
    loss = by_q["loss vs batch"]
    assert loss["metrics"] == ["end_train_loss"] and "training loss of the final weights" in loss["text"]
    r = rows(tmp)
    for name, bs in (("bs_size=32_epochs=1", "32"), ("bs_size=128_epochs=4", "128")):
        assert f"{bs} → {float(r[name]['end_train_loss']):.4g}" in loss["text"]
    assert by_q["best lr"]["metrics"] == ["best_val_acc"] and by_q["ok vs stuck"]["metrics"] == ["best_val_acc"]
    md = (tmp / "rep" / "report.md").read_text()
    assert "training loss of the final weights" in md  # the report's sentence names it too, not only answers.json


def test_summary_metrics_are_declared_wherever_metrics_are_named():
    from cnnlab.experiments.answers import LOWER_IS_BETTER, METRICS, WORDS
    from cnnlab.experiments.figures import SUMMARY_METRICS
    from cnnlab.training.runfolder import SUMMARY_TYPES
    from cnnlab.training.tracking import FINAL_METRICS

    for key in ("end_train_loss", "end_train_acc"):
        assert key in METRICS and key in SUMMARY_METRICS and key in SUMMARY_TYPES and key in FINAL_METRICS
        assert "final weights" in WORDS[key]
    assert "end_train_loss" in LOWER_IS_BETTER and "end_train_acc" not in LOWER_IS_BETTER
    check_answer({"kind": "best", "key": "optim.lr", "by": "end_train_loss"}, "test")  # a spec may ask for it


# -- 2. did not learn -----------------------------------------------------------------------------------------------

def at(acc, loss, diverged=False, val=5000):
    summary = {"best_val_acc": acc, "final_val_loss": loss, "final_train_loss": loss, "diverged": diverged,
               "ln_classes": math.log(10), "wall_time": 100.0}
    return Entry("r", {}, "diverged" if diverged else "finished", summary, [], {"data.val_size": val})


def test_chance_is_judged_from_the_validation_images_and_ln_classes():
    assert at(0.100, 2.3152).outcome == "did not learn"           # HW2 2(c)i, lr 1.0: 10.0% for 30 epochs
    assert at(0.110, 2.30).outcome == "did not learn"             # within 3 std of 1/10 on 5,000 images
    assert at(0.120, 2.30).outcome == "finished"                  # beyond them: it learnt something
    assert at(0.110, 2.30, val=100_000).outcome == "finished"     # 1 point is beyond chance on 100,000 images
    assert at(0.100, 1.90).outcome == "finished"                  # the loss moved: not a flat run
    assert at(0.100, 2.30, diverged=True).outcome == "diverged"   # diverged says more


def test_a_run_at_chance_is_did_not_learn_in_runs_csv_table_answers_and_legends(swept):
    tmp, _ = swept
    r = rows(tmp)
    assert r["lr_stuck"]["status"] == "did not learn" and r["lr_ok"]["status"] == "finished"
    page = (tmp / "rep" / "report.html").read_text()
    assert "<tr class='nolearn'><td>lr_stuck</td>" in page
    by_q = {a["question"]: a["text"] for a in answers(tmp)}
    assert "did not learn: stuck" in by_q["best lr"] and "stuck →" not in by_q["best lr"]
    assert by_q["ok vs stuck"].startswith("ok against stuck: not compared (stuck did not learn)")
    summaries = (("ok", at(0.6, 1.2).summary), ("flat", at(0.1, 2.3).summary))
    entries = [Entry(n, {"variant": n}, "finished", s, [{"epoch": 1, "train_loss": 2.3, "val_acc": s["best_val_acc"]}],
                     {"data.val_size": 5000}) for n, s in summaries]
    drawn = draw("curves", entries)
    assert [row["run"] for row in drawn.rows] == ["ok", "flat (did not learn)"]


# -- 3. runs.csv columns ---------------------------------------------------------------------------------------------

def test_runs_csv_has_a_column_for_every_key_that_differs_however_it_was_varied(swept):
    tmp, _ = swept
    r = rows(tmp)
    assert r["lr_adam"]["optim.name"] == "adam" and r["lr_ok"]["optim.name"] == "sgd"   # set by a variant only
    assert r["lr_ok"]["optim.lr"] == "0.1" and r["bs_size=32_epochs=1"]["optim.lr"] == "0.05"
    assert r["bs_size=128_epochs=4"]["batch.size"] == "128" and r["lr_ok"]["batch.size"] == "32"
    assert "data.root" not in r["lr_ok"] and "model.options" not in r["lr_ok"]         # machine keys stay out


def test_a_model_option_set_by_variants_gets_its_own_column():
    done = {"best_val_acc": 0.7, "wall_time": 1.0}
    entries = [Entry(v, {"variant": v}, "finished", done, config={"model.name": "simplenn",
                                                                  "model.options.batch_norm": bn})
               for v, bn in (("bn", True), ("no_bn", False))]
    got = list(csv.DictReader(runs_csv([Source("03", entries=entries)]).splitlines()))
    assert [(x["variant"], x["model.options.batch_norm"]) for x in got] == [("bn", "true"), ("no_bn", "false")]


# -- 4. rebuilt from the run files -----------------------------------------------------------------------------------

def test_a_report_from_its_run_files_alone_gives_the_same_answers(swept, tmp_path):
    from test_experiments_report import run_cli

    tmp, spec = swept
    copies = tmp / "rep" / "report_runs"
    assert sorted(p.name for p in copies.iterdir()) == sorted(rows(tmp))
    assert all(sorted(f.name for f in d.iterdir()) == ["config.yaml", "metrics.csv", "summary.json"]
               for d in copies.iterdir())  # no checkpoints
    # a clean clone: the committed results folder, without the store or the run folders
    clone = tmp_path / "clone"
    shutil.copytree(tmp / "rep", clone / "rep")
    before_answers, before_csv = (clone / "rep" / "answers.json").read_text(), (clone / "rep" / "runs.csv").read_text()
    (clone / "rep" / "answers.json").unlink()
    out = clone / "rep" / "report.html"
    assert run_cli(["report", str(spec), "--runs-out", str(clone / "no-runs"), "--out", str(out)]) == 0
    assert (clone / "rep" / "answers.json").read_text() == before_answers
    assert (clone / "rep" / "runs.csv").read_text() == before_csv
    assert "pending" not in (clone / "rep" / "report.md").read_text()


def test_a_run_file_of_another_version_of_the_run_is_not_read(swept, tmp_path):
    from test_experiments_report import run_cli

    tmp, spec = swept
    shutil.copytree(tmp / "rep", tmp_path / "rep")
    stale = tmp_path / "rep" / "report_runs" / "lr_ok" / "config.yaml"
    stale.write_text(stale.read_text().replace("lr: 0.1", "lr: 0.2"))  # the spec's run has changed since
    assert run_cli(["report", str(spec), "--runs-out", str(tmp_path / "no-runs"), "--out",
                    str(tmp_path / "rep" / "report.html")]) == 0
    assert rows(tmp_path)["lr_ok"]["status"] == "pending" and rows(tmp_path)["lr_adam"]["status"] == "finished"
