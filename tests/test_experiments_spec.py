"""Experiment specs: expansion into runs, precedence, identity hashes, and clear errors for bad specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments.spec import expand, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "experiments").glob("*.yaml"))

BASE = {"model": {"name": "simplenn"}, "train": {"epochs": 5}}


def spec(**kw):
    return parse_spec({"name": "t", "base": BASE, **kw})


def test_grid_2x2_expands_to_four_named_runs():
    s = spec(grid={"optim.lr": [0.1, 0.01], "model.options.batch_norm": [False, True]})
    runs = expand(s, out="/tmp/o")
    assert [r.name for r in runs] == ["lr=0.1_batch_norm=false", "lr=0.1_batch_norm=true",
                                      "lr=0.01_batch_norm=false", "lr=0.01_batch_norm=true"]
    assert [r.config.optim.lr for r in runs] == [0.1, 0.1, 0.01, 0.01]
    assert [r.config.model.options["batch_norm"] for r in runs] == [False, True, False, True]
    assert runs[0].config.out == "/tmp/o/t/default" and runs[0].config.name == runs[0].name
    assert runs[0].varied == {"optim.lr": 0.1, "model.options.batch_norm": False}
    assert len({r.key for r in runs}) == 4


def test_zip_variants_and_grid_combine():
    s = spec(zip={"optim.name": ["adam", "adagrad"], "optim.lr": [0.001, 0.01]},
             variants={"plain": {}, "dropout": {"model.options.dropout": 0.5}}, grid={"batch.size": [32, 64]})
    runs = expand(s)
    assert len(runs) == 2 * 2 * 2
    adam = [r for r in runs if r.config.optim.name == "adam"]
    assert {r.config.optim.lr for r in adam} == {0.001}
    assert {r.config.model.options.get("dropout", 0.0) for r in runs if r.variant == "dropout"} == {0.5}
    assert runs[0].name == "plain_name=adam_lr=0.001_size=32"


def test_precedence_variant_then_profile_then_axes_then_command_line():
    s = spec(grid={"train.epochs": [7, 8]}, variants={"v": {"batch.size": 16, "optim.lr": 0.2}},
             profiles={"quick": {"set": {"train.epochs": 1, "optim.lr": 0.3}, "axes": {"train.epochs": [2]}},
                       "full": {}})
    quick = expand(s)  # quick is the default profile
    assert [(r.config.train.epochs, r.config.optim.lr, r.config.batch.size) for r in quick] == [(2, 0.3, 16)]
    full = expand(s, "full", overrides=["batch.size=99"])
    assert [r.config.train.epochs for r in full] == [7, 8]
    assert {r.config.batch.size for r in full} == {99} and {r.config.optim.lr for r in full} == {0.2}
    assert full[0].config.out.endswith("t/full")


def test_model_options_merge_key_by_key():
    s = parse_spec({"base": {"model": {"name": "simplenn", "options": {"batch_norm": True}}},
                    "variants": {"swish": {"model.options.activation": "swish"}}})
    (run,) = expand(s)
    assert run.config.model.options == {"batch_norm": True, "activation": "swish"}


def test_groups_and_profile_filters():
    s = spec(groups={"standard": {"set": {"augment.crop": 4}},
                     "cutout": {"set": {"augment.cutout": 16}, "grid": {"augment.repeats": [2, 4, 8]}}},
             profiles={"quick": {"axes": {"augment.repeats": [2]}}, "only": {"groups": ["cutout"]}})
    assert [r.name for r in expand(s, "quick")] == ["standard", "cutout_repeats=2"]
    only = expand(s, "only")
    assert [r.config.augment.repeats for r in only] == [2, 4, 8]
    assert only[0].varied == {"group": "cutout", "augment.repeats": 2}


def test_identity_hash_ignores_where_a_run_executes():
    s = spec(grid={"optim.lr": [0.1]})
    a = expand(s, overrides=["data.root=/a", "train.device=cpu"], out="x")[0]
    b = expand(s, overrides=["data.root=/b", "train.threads=2"], out="y")[0]
    c = expand(s, overrides=["batch.size=32"])[0]
    assert a.key == b.key and a.key != c.key


@pytest.mark.parametrize("data, words", [
    ({"grdi": {"optim.lr": [1]}}, ["unknown key 'grdi'", "did you mean 'grid'"]),
    ({"grid": {"optim.lrr": [0.1]}}, ["unknown config key 'optim.lrr'", "did you mean 'optim.lr'"]),
    ({"grid": {"optim.lr": []}}, ["axis 'optim.lr' is empty"]),
    ({"grid": {"optim.lr": 0.1}}, ["axis 'optim.lr' must be a list"]),
    ({"grid": {"optim.lr": ["fast"]}}, ["run 'lr=fast'", "config key 'optim.lr'", "expected float"]),
    ({"grid": {"model.options.batchnorm": [True]}}, ["model.options", "batchnorm", "batch_norm"]),
    ({"zip": {"optim.lr": [0.1, 0.2], "optim.name": ["sgd"]}}, ["equal lengths", "optim.lr: 2", "optim.name: 1"]),
    ({"variants": {"a": 3}}, ["variants 'a' must be a mapping"]),
    ({"variants": {}}, ["variants is empty"]),
    ({"grid": {"optim.lr": [0.1]}, "groups": {"a": {}}}, ["either top-level grid or groups"]),
    ({"grid": {"optim.lr": [0.1, 0.10]}}, ["both named 'lr=0.1'"]),
    ({"profiles": {"quick": {"axes": {"optim.lr": [1]}}}}, ["not an axis of the spec"]),
    ({"profiles": {"quick": {"sett": {}}}}, ["profile 'quick'", "unknown key 'sett'", "did you mean 'set'"]),
    ({"report": {"figures": [{"kind": "swep", "x": "optim.lr"}]}}, ["unknown report figure 'swep'", "sweep"]),
    ({"report": {"figures": [{"kind": "sweep", "x": "optim.lr", "y": "acc"}]}}, ["y 'acc' is not a metric"]),
    ({"report": {"figures": [{"kind": "target", "target": 94}]}}, ["target must be a validation accuracy"]),
    ({"analysis": [{"name": "x", "args": []}]}, ["args must be a non-empty list"]),
    ({"predict": "train"}, ["predict must be holdout, test or val"]),
    ({"profiles": {"cpu": {"stands_in": ["a list"]}}}, ["profile 'cpu' stands_in must be text"]),
])
def test_bad_specs_give_errors_naming_the_key(data, words):
    with pytest.raises(CnnlabError) as e:
        expand(parse_spec({"base": BASE, **data}, Path("bad.yaml")))
    msg = str(e.value)
    assert "bad.yaml" in msg or "model.options" in msg
    for w in words:
        assert w in msg, msg


def test_unknown_profile_lists_the_profiles():
    s = spec(grid={"optim.lr": [0.1]}, profiles={"quick": {}, "full": {}})
    with pytest.raises(CnnlabError, match="no profile 'fast'; its profiles: quick, full"):
        expand(s, "fast")


def test_load_spec_file_errors(tmp_path):
    with pytest.raises(CnnlabError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [\n")
    with pytest.raises(CnnlabError, match="not valid YAML"):
        load_spec(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(CnnlabError, match="must be a YAML mapping"):
        load_spec(lst)


def test_config_file_is_the_base_below_base(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"optim": {"lr": 0.3}, "batch": {"size": 7}}))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"config": "c.yaml", "base": {"batch.size": 9}}))
    (run,) = expand(load_spec(tmp_path / "s.yaml"))
    assert (run.config.optim.lr, run.config.batch.size) == (0.3, 9)
    assert run.config.out.endswith("s/default")  # the spec is named after its file


def test_there_are_twelve_recipes():
    assert len(RECIPES) == 12, [p.name for p in RECIPES]


@pytest.mark.parametrize("stem", ["07-adaptive-optimizers", "08-fashion-clr-cbs", "09-resnet44-cutout-ba",
                                  "10-vgg-bn-landscape", "11-project2-cifar10"])
def test_stand_in_cpu_profiles_say_what_they_cannot_show(stem):
    """A cpu profile that swaps the course's model or budget for a smaller one says so, naming the full profile."""
    s = load_spec(Path(__file__).parent.parent / "experiments" / f"{stem}.yaml")
    assert "full profile" in s.profiles["cpu"].stands_in
    assert not s.profiles["full"].stands_in


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipes_parse_and_expand_in_every_profile(path):
    s = load_spec(path)
    assert s.question, f"{path.name} states no question"
    assert {"quick", "cpu", "full"} <= set(s.profiles), f"{path.name} lacks a quick, cpu or full profile"
    assert s.answers, f"{path.name} declares no report answers"
    assert all(s.profiles[p].description for p in ("cpu", "full")), "cpu and full profiles say what they run"
    quick, cpu, full = expand(s, "quick"), expand(s, "cpu"), expand(s, "full")
    assert quick and cpu and full
    assert len(quick) <= len(full)
    assert all(r.config.data.train_subset for r in quick), "quick profiles train on a subset"
