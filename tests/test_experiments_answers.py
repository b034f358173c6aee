"""Answers computed from the runs: the numbers, margins and seed-noise verdicts in each sentence, the checks on a
spec's `report.answers`, and a real seeded sweep whose report states its answer from the same numbers as runs.csv."""

from __future__ import annotations

import csv
import math
import statistics

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments.answers import answer_all, check_answer, noise_caveat, pooled_std
from cnnlab.experiments.figures import Entry
from cnnlab.experiments.spec import expand, parse_spec


def run(name, acc, seed=None, variant=None, diverged=False, **more):
    varied = {**({"variant": variant} if variant else {}), **more, **({"train.seed": seed} if seed is not None else {})}
    summary = {"best_val_acc": acc, "final_train_acc": acc + 0.1, "final_val_acc": acc - 0.01, "diverged": diverged,
               "wall_time": 100.0, "epochs_done": 3}
    metrics = [{"epoch": 1, "val_acc": acc - 0.1, "time": 10.0}, {"epoch": 2, "val_acc": acc, "time": 20.0}]
    return Entry(name + (f"_seed={seed}" if seed is not None else ""), varied,
                 "diverged" if diverged else "finished", summary, metrics, {})


def say(entries, **spec):
    return answer_all([check_answer(spec, "test")], entries)[0].text


def test_compare_gives_means_stds_margin_and_a_noise_verdict_from_the_repeats():
    a = [run("bn", v, s, "bn") for s, v in enumerate((0.70, 0.72, 0.71))]
    b = [run("no_bn", v, s, "no_bn") for s, v in enumerate((0.60, 0.61, 0.62))]
    text = say(a + b, kind="compare", a="bn", b="no_bn", metrics="best_val_acc")
    se = math.sqrt(statistics.variance([0.70, 0.72, 0.71]) / 3 + statistics.variance([0.60, 0.61, 0.62]) / 3)
    assert text.startswith("bn does better on best validation accuracy")       # the conclusion first
    assert "71.00% ± 1.00 (n=3) against 61.00% ± 1.00 (n=3), +10.00 points" in text
    assert f"beyond the seed noise of ±{200 * se:.2f} points" in text
    close = [run("x", v, s, "x") for s, v in enumerate((0.700, 0.720))] + \
        [run("y", v, s, "y") for s, v in enumerate((0.705, 0.725))]
    assert say(close, kind="compare", a="y", b="x", metrics="best_val_acc").startswith(
        "No measurable difference in best validation accuracy between y and x")


def test_settings_run_once_use_the_pooled_spread_or_say_noise_was_not_measured():
    once = [run("a", 0.70, variant="a"), run("b", 0.69, variant="b")]
    answers = answer_all([check_answer({"kind": "compare", "a": "a", "b": "b", "metrics": m}, "test")
                          for m in ("best_val_acc", "final_train_acc")], once)
    assert all("noise" not in a.text for a in answers)             # not in every sentence ...
    assert "seed-to-seed noise was not measured" in noise_caveat(answers)   # ... but once per document
    repeated = [run("c", v, s, "c") for s, v in enumerate((0.60, 0.64))]
    assert pooled_std(once + repeated, "best_val_acc") == pytest.approx(statistics.stdev([0.60, 0.64]))
    text = say(once + repeated, kind="compare", a="a", b="b", metrics="best_val_acc")
    assert text.startswith("No measurable difference") and "pooled over the repeated settings" in text


def test_times_are_not_judged_against_a_spread_pooled_from_other_settings():
    """Project 2: 31 s against 99 s read "no measurable difference" against a ±107 s spread pooled from copies of
    another run on a shared CPU. A time's spread is the machine's and grows with the time: only a setting's own
    repeats judge it, and the sentence says which trained faster."""
    fast, slow = run("small", 0.61, variant="small"), run("big", 0.67, variant="big")
    fast.summary["wall_time"], slow.summary["wall_time"] = 31.0, 99.0
    copies = [run("c", 0.66, s, "c") for s in (0, 1)]
    copies[0].summary["wall_time"], copies[1].summary["wall_time"] = 200.0, 500.0   # a busy and a quiet copy
    text = say([fast, slow, *copies], kind="compare", a="big", b="small", metrics="wall_time")
    assert text == "small trained faster (31 s against 99 s for big, -68 s)."
    # accuracies still borrow the pooled seed noise
    assert "pooled" in say([fast, slow, *copies], kind="compare", a="big", b="small", metrics="best_val_acc")


def test_identical_copies_under_other_names_count_as_repeats_for_the_noise():
    """A recipe's baseline run once in each study group: same config, other names. Their spread is the noise the
    other settings (run once) are judged against; runs whose configs differ are not pooled."""
    def cfg(lr, name):
        return {"optim.lr": lr, "model.name": "simplenn", "name": name, "train.threads": 0, "train.seed": 0}
    copies = [Entry(f"{g}_base", {"variant": "base"}, "finished", {"best_val_acc": acc}, [], cfg(0.1, f"{g}_base"))
              for g, acc in (("widths", 0.655), ("losses", 0.672), ("optimizers", 0.668))]
    other = Entry("lr_small", {"variant": "small"}, "finished", {"best_val_acc": 0.675}, [], cfg(0.01, "lr_small"))
    far = Entry("lr_big", {"variant": "big"}, "finished", {"best_val_acc": 0.75}, [], cfg(1.0, "lr_big"))
    entries = copies + [other, far]
    assert pooled_std(entries, "best_val_acc") == pytest.approx(statistics.stdev([0.655, 0.672, 0.668]))
    assert say(entries, kind="compare", a="small", b="big", metrics="best_val_acc").startswith("big does better")
    near = say(entries, kind="compare", a="small", b={"optim.lr": 0.1, "name": "widths_base"},
               metrics="best_val_acc")
    assert near.startswith("No measurable difference") and "identical copies" in near
    # without configs (entries read from the spec's varied keys alone) the copies are three settings, not repeats
    bare = [Entry(e.name, {"variant": e.name}, "finished", e.summary, [], {}) for e in copies]
    assert pooled_std(bare, "best_val_acc") is None


def test_best_ranks_every_value_names_the_runner_up_and_lists_the_diverged():
    entries = [run(f"lr={lr}", acc, **{"optim.lr": lr}) for lr, acc in ((0.1, 0.80), (0.01, 0.75), (0.05, 0.82))]
    entries.append(run("lr=1", 0.10, diverged=True, **{"optim.lr": 1.0}))
    text = say(entries, kind="best", key="optim.lr")
    assert text.startswith("The best learning rate is 0.05, by best validation accuracy: 82.00%, 2.00 points ahead "
                           "of 0.1 (80.00%)")
    assert "optim.lr" not in text                                   # the setting in words, not its config key
    assert "All values: 0.05 → 82.00%, 0.1 → 80.00%, 0.01 → 75.00%; diverged: 1." in text
    lowest = say(entries, kind="best", key="optim.lr", by="wall_time")
    assert lowest.startswith("No measurable difference")  # equal wall times: no winner is claimed


def test_target_says_who_reached_it_and_the_best_of_the_rest():
    entries = [run("fast", 0.95, variant="fast"), run("slow", 0.90, variant="slow")]
    text = say(entries, kind="target", target=0.94)
    assert text.startswith("1 of 2 runs reached 94% validation accuracy (fast at epoch 2, 20 s)")
    assert "slow at 90.00% after 3 epochs, 100 s" in text
    one = run("paper", 0.8912, variant="paper")
    one.label = "ResNet-20"   # one run: said of it by its label, not "None of the 1 runs"
    assert say([one], kind="target", target=0.9) == ("ResNet-20 did not reach 90% validation accuracy: its best was "
                                                     "89.12% after 3 epochs, 100 s.")
    assert say([one], kind="target", target=0.8) == "ResNet-20 reached 80% validation accuracy at epoch 2, 20 s."


def test_an_ambiguous_selector_is_reported_not_raised():
    entries = [run("a", 0.7, variant="a", **{"optim.lr": 0.1}), run("a2", 0.6, variant="a", **{"optim.lr": 0.2})]
    assert say(entries, kind="compare", a="a", b="a2").startswith("not answered: answer selector 'a' matches 2")


@pytest.mark.parametrize("spec, words", [
    ({"kind": "guess"}, "unknown report answer 'guess'"),
    ({"kind": "compare", "a": "x", "b": "y", "metrics": "accuracy"}, "'accuracy' is not a metric"),
    ({"kind": "compare", "a": "x", "b": "y", True: "best_val_acc"}, "does not take option(s) True"),  # YAML's on:
    ({"kind": "best", "key": "optim.lrate"}, "unknown config key 'optim.lrate'"),
    ({"kind": "compare", "a": {}, "b": "y"}, "a must name a variant"),
    ({"kind": "target", "target": 94}, "target must be a validation accuracy in (0, 1]"),
])
def test_bad_answers_in_a_spec_are_one_clear_error(spec, words):
    with pytest.raises(CnnlabError) as e:
        parse_spec({"base": {"model": {"name": "simplenn"}}, "variants": {"x": {}, "y": {"optim.lr": 0.1}},
                    "report": {"answers": [spec]}})
    assert words in str(e.value) and "report answers[0]" in str(e.value)


def test_profile_seeds_repeat_every_run_and_refuse_a_second_seed_axis():
    spec = parse_spec({"base": {"model": {"name": "simplenn"}}, "variants": {"x": {}, "y": {"optim.lr": 0.1}},
                       "profiles": {"cpu": {"seeds": [0, 3]}}})
    runs = expand(spec, "cpu")
    assert [r.name for r in runs] == ["x_seed=0", "x_seed=3", "y_seed=0", "y_seed=3"]
    assert [r.config.train.seed for r in runs] == [0, 3, 0, 3] and len({r.key for r in runs}) == 4
    with pytest.raises(CnnlabError, match="already varies train.seed"):
        parse_spec({"base": {}, "grid": {"train.seed": [0, 1]}, "profiles": {"cpu": {"seeds": [0, 1]}}})
    with pytest.raises(CnnlabError, match="distinct non-negative integers"):
        parse_spec({"base": {}, "profiles": {"cpu": {"seeds": [1, 1]}}})


def test_a_seeded_sweep_states_its_answer_from_the_numbers_in_runs_csv(tmp_path, session_cache, shared_data,
                                                                        monkeypatch):
    from test_experiments_report import run_cli

    # batch 32 and lr 0.05 / 0.1: runs that leave chance in their 8 steps (at chance they would not be compared)
    base = {"data": {"name": "fashion-mnist", "train_subset": 256, "val_subset": 128}, "model": {"name": "lenet5"},
            "batch": {"size": 32}, "train": {"epochs": 1, "progress": "off"}}
    spec = tmp_path / "pair.yaml"
    spec.write_text(yaml.safe_dump({
        "question": "Does a 2x lr help?", "base": base,
        "variants": {"small": {"optim.lr": 0.05}, "large": {"optim.lr": 0.1}},
        "profiles": {"cpu": {"seeds": [0, 1]}},
        "report": {"answers": [{"kind": "compare", "a": "large", "b": "small", "metrics": "best_val_acc"}],
                   "labels": {"large": "twice the lr", "small": "the course's lr"}}}))
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    out = tmp_path / "rep" / "report.html"
    assert run_cli(["sweep", str(spec), "--profile", "cpu", "--out", str(tmp_path / "runs"), "--report", str(out)]) == 0
    rows = list(csv.DictReader((tmp_path / "rep" / "runs.csv").open()))
    assert [r["train.seed"] for r in rows] == ["0", "1", "0", "1"]
    acc = {v: [float(r["best_val_acc"]) for r in rows if r["variant"] == v] for v in ("small", "large")}
    want = (f"best validation accuracy ({100 * statistics.fmean(acc['large']):.2f}% ± "
            f"{100 * statistics.stdev(acc['large']):.2f} (n=2) against {100 * statistics.fmean(acc['small']):.2f}%")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "### Answers (computed from the runs below)" in md and want.replace("_", "\\_") in md
    assert want in out.read_text() and "Mean ± standard deviation over the seeds" in md
    # the labels name the runs in the answer and the table; runs.csv and the variant column keep the names
    assert "between twice the lr and the course's lr" in md or "Twice the lr does better" in md \
        or "The course's lr does better" in md
    assert "| twice the lr (seed 1) |" in md and "| large |" in md
    assert sorted(r["run"] for r in rows) == ["large_seed=0", "large_seed=1", "small_seed=0", "small_seed=1"]


def test_paired_compares_two_values_of_a_key_within_each_variant_and_best_can_be_scoped():
    entries = [run(f"{opt}_d={d}", acc, variant=opt, **{"model.options.dropout": d})
               for opt, d, acc in (("adam", 0.0, 0.50), ("adam", 0.5, 0.55), ("sgd", 0.0, 0.40), ("sgd", 0.5, 0.38))]
    text = say(entries, kind="paired", key="model.options.dropout", a=0.5, b=0.0, metrics="best_val_acc")
    # the tally first (who did better for how many), then each variant's pair of values, a against b
    assert text == ("Dropout 0.5 against dropout 0, for each variant: Best validation accuracy: dropout 0.5 did "
                    "better for 1 of 2 (adam); dropout 0 did better for 1 of 2 (sgd) (dropout 0.5 against dropout 0: "
                    "adam 55.00% against 50.00%, sgd 38.00% against 40.00%).")
    blown = entries + [run("adagrad_d=0", 0.2, variant="adagrad", diverged=True, **{"model.options.dropout": 0.0}),
                       run("adagrad_d=0.5", 0.5, variant="adagrad", **{"model.options.dropout": 0.5})]
    text = say(blown, kind="paired", key="model.options.dropout", a=0.5, b=0.0, metrics="wall_time")
    assert text.endswith(" Left out: adagrad not compared (dropout 0 diverged).")
    assert "Training time: no measurable difference for both (dropout 0.5 against dropout 0: adam 100 s against " \
           "100 s, sgd 100 s against 100 s)." in text
    seeded = [run(f"{opt}_d={d}", acc, seed, variant=opt, **{"model.options.dropout": d})
              for opt, d, accs in (("adam", 0.0, (0.50, 0.51)), ("adam", 0.5, (0.60, 0.61)),
                                   ("sgd", 0.0, (0.40, 0.45)), ("sgd", 0.5, (0.41, 0.46))) for seed, acc in enumerate(accs)]
    text = say(seeded, kind="paired", key="model.options.dropout", a=0.5, b=0.0, metrics="best_val_acc")
    assert "dropout 0.5 did better for 1 of 2 (adam); no measurable difference for 1 of 2 (sgd)" in text
    scoped = say(entries, kind="best", key="variant", where={"model.options.dropout": 0.5})
    assert scoped.startswith("The best variant among the runs with dropout 0.5 is adam, by best validation accuracy: "
                             "55.00%, 17.00 points ahead of sgd")


def test_report_labels_name_a_setting_only_where_the_variant_is_the_whole_setting():
    from cnnlab.experiments.figures import run_names
    from cnnlab.experiments.report import spec_label

    labels = {"bn": "BN at lr 0.1", "drop": "dropout"}
    a, b = run("bn", 0.7, 0, "bn"), run("no_bn", 0.6, 0, "no_bn")
    assert spec_label(labels, a) == "BN at lr 0.1" and spec_label(labels, b) == ""
    # a zip axis beside the variant: one label would name two settings alike, so none is used
    assert spec_label(labels, run("drop", 0.7, 0, "drop", **{"model.options.dropout": 0.5})) == ""
    a.label = spec_label(labels, a)
    assert run_names([a, b]) == {"bn_seed=0": "BN at lr 0.1 (seed 0)", "no_bn_seed=0": "no_bn_seed=0"}
    both = [run("bn", v, s, "bn") for s, v in enumerate((0.70, 0.72))] + \
        [run("no_bn", v, s, "no_bn") for s, v in enumerate((0.50, 0.52))]
    for e in both:
        e.label = spec_label({"bn": "BN at lr 0.1", "no_bn": "no BN at lr 0.1"}, e)
    text = say(both, kind="compare", a="no_bn", b="bn", metrics="best_val_acc")
    assert text.startswith("BN at lr 0.1 does better on best validation accuracy (71.00%")
    assert "for no BN at lr 0.1" in text and "no_bn" not in text


@pytest.mark.parametrize("labels, words", [
    ({"z": "zed"}, "'z' is not a variant or group of the spec"),
    ({"xx": "zed"}, "did you mean 'x'?"),
    ({"x": ""}, "give a text of 1 to 40 characters"),
    ({"x": "a" * 41}, "give a text of 1 to 40 characters"),
    ({"x": 3}, "give a text of 1 to 40 characters"),
])
def test_bad_report_labels_are_one_clear_error(labels, words):
    with pytest.raises(CnnlabError) as e:
        parse_spec({"base": {"model": {"name": "simplenn"}}, "variants": {"x": {}, "y": {"optim.lr": 0.1}},
                    "report": {"labels": labels}})
    assert words in str(e.value) and "report labels" in str(e.value)


def test_an_analysis_result_names_labelled_runs_by_their_labels():
    from cnnlab.experiments.answers import relabel

    a, b = run("vgg_a", 0.3, variant="vgg_a"), run("vgg_a_bn", 0.5, variant="vgg_a_bn")
    a.label, b.label = "VGG-A", "VGG-A with BN"
    text = ("Analysis landscape-vgg_a: vgg_a: loss 2.3. narrowest loss band: vgg_a_bn (0.186 against 0.2201 for "
            "vgg_a); the lowest beta is vgg_a's.")
    assert relabel(text, [a, b]) == ("Analysis landscape-vgg_a: VGG-A: loss 2.3. narrowest loss band: VGG-A with BN "
                                     "(0.186 against 0.2201 for VGG-A); the lowest beta is VGG-A's.")
    assert relabel(text, [run("vgg_a", 0.3, variant="vgg_a")]) == text   # no labels: the names stay
