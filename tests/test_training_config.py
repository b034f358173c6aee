"""Config precedence (defaults < YAML < key=value) and the errors for unknown keys, wrong types, bad values."""

import re

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.training.config import RunConfig, config_from_dict, describe_keys, load_config


def test_defaults_then_yaml_then_overrides(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump({"optim": {"lr": 0.05, "name": "adam"}, "train": {"epochs": 3}}))
    cfg = load_config(f, ["optim.lr=0.2", "model.options.batch_norm=true", "augment.flip=0.5"])
    assert cfg.optim.lr == 0.2          # override beats YAML
    assert cfg.optim.name == "adam"     # YAML beats default
    assert cfg.train.epochs == 3
    assert cfg.optim.momentum == 0.9    # default kept
    assert cfg.model.options == {"batch_norm": True}
    assert cfg.augment.flip == 0.5


def test_round_trip_through_yaml_dict():
    cfg = load_config(None, ["optim.lr=0.3", "schedule.name=cosine", "train.targets=[0.5, 0.65]"])
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_ints_widen_to_floats_and_scientific_strings_parse():
    cfg = load_config(None, ["optim.lr=1", "optim.weight_decay=5e-4"])
    assert isinstance(cfg.optim.lr, float) and cfg.optim.weight_decay == 5e-4


@pytest.mark.parametrize("override,needle", [
    ("optim.lrr=0.1", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("optimizer.lr=0.1", "unknown config key 'optimizer'"),
    ("optim.lr=abc", "config key 'optim.lr': expected float"),
    ("optim.lr=-0.1", "config key 'optim.lr': must be > 0"),
    ("batch.size=0", "config key 'batch.size': must be > 0"),
    ("train.epochs=2.5", "config key 'train.epochs': expected int"),
    ("train.amp=fp8", "config key 'train.amp': 'fp8' is not allowed; choose one of auto, none, bf16, fp16"),
    ("optim.name=sgdd", "config key 'optim.name'"),
    ("schedule.name=cosin", "config key 'schedule.name'"),
    ("model.name=resnet21", "config key 'model.name'"),
    ("data.name=mnist", "config key 'data.name'"),
    ("model.options.colour=red", "config key 'model.options'"),
    ("augment.flip=2", "must be <= 1"),
    ("optim.lr", "not of the form key=value"),
    ("train.checkpoints=maybe", "expected bool"),
])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(CnnlabError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_bad_yaml_file_errors(tmp_path):
    with pytest.raises(CnnlabError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(CnnlabError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(CnnlabError, match="must hold a mapping"):
        load_config(lst)
    sec = tmp_path / "sec.yaml"
    sec.write_text("optim: 3\n")
    with pytest.raises(CnnlabError, match="'optim' must be a mapping"):
        load_config(sec)


def test_every_key_is_documented():
    rows = describe_keys()
    assert len(rows) > 50
    assert all(text for _, _, text in rows), [k for k, _, t in rows if not t]
    assert {k for k, _, _ in rows} >= {"optim.lr", "schedule.name", "batch.micro", "train.amp", "augment.repeats"}


def test_default_is_the_course_first_lab():
    cfg = RunConfig()
    assert (cfg.model.name, cfg.data.name, cfg.optim.name) == ("simplenn", "cifar10", "sgd")


def test_augment_extra_takes_any_registered_augmentation_and_checks_it():
    from cnnlab.experiments.spec import identity_hash
    from cnnlab.training.trainer import augment_specs

    cfg = load_config(None, ["augment.flip=0.5", "augment.extra=[{name: cutout, size: 8, count: 2}]"])
    assert augment_specs(cfg.augment) == [{"name": "flip", "p": 0.5}, {"name": "cutout", "size": 8, "count": 2}]
    for bad, words in (("[{name: blur}]", "unknown augmentation 'blur'"),
                       ("[{name: cutout, radius: 3}]", "does not take option(s) 'radius'"),
                       ("[{size: 3}]", "each entry needs a name")):
        with pytest.raises(CnnlabError, match=re.escape(words)):
            load_config(None, [f"augment.extra={bad}"])
    # a config that leaves augment.extra empty keeps the identity its runs had before the key existed
    plain = load_config(None, [])
    assert identity_hash(plain) != identity_hash(cfg)
    assert identity_hash(plain) == identity_hash(load_config(None, ["augment.extra=[]"]))
