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

    cfg = load_config(None, ["augment.flip=0.5", "augment.extra=[{name: cutout, size: 8, count: 2}]"])
    assert cfg.augment.pipeline == [{"name": "flip", "p": 0.5, "mode": "random"},
                                   {"name": "cutout", "size": 8, "count": 2}]
    for bad, words in (("[{name: blur}]", "unknown augmentation 'blur'"),
                       ("[{name: cutout, radius: 3}]", "does not take option(s) 'radius'"),
                       ("[{size: 3}]", "each entry needs a name")):
        with pytest.raises(CnnlabError, match=re.escape(words)):
            load_config(None, [f"augment.extra={bad}"])
    # a config that leaves augment.extra empty keeps the identity its runs had before the key existed
    plain = load_config(None, [])
    assert identity_hash(plain) != identity_hash(cfg)
    assert identity_hash(plain) == identity_hash(load_config(None, ["augment.extra=[]"]))


# The augmentation is one ordered list of registry specs; the classic keys are shorthand for its entries.

def test_augment_pipeline_and_its_shorthand_are_one_config_with_one_identity():
    from cnnlab.experiments.spec import flatten_config, identity_hash

    short = load_config(None, ["augment.crop=4", "augment.flip=0.5", "augment.cutout=16"])
    listed = load_config(None, ["augment.pipeline=[{name: crop, padding: 4}, flip, {name: cutout, size: 16}]"])
    expected = [{"name": "crop", "padding": 4, "mode": "zeros"}, {"name": "flip", "p": 0.5, "mode": "random"},
                {"name": "cutout", "size": 16, "count": 1}]  # options left out take the augmentation's defaults
    assert short.augment.pipeline == listed.augment.pipeline == expected
    assert identity_hash(short) == identity_hash(listed)
    assert (listed.augment.crop, listed.augment.flip, listed.augment.cutout) == (4, 0.5, 16)
    # identities recorded before the pipeline existed (computed by the code of a406e03): sweeps resume, not rerun
    assert identity_hash(load_config(None, [])) == "12a06d13f8"
    assert identity_hash(load_config(None, ["augment.crop=4", "augment.flip=0.5"])) == "cd7d7c2905"
    assert identity_hash(load_config(None, [
        "augment.cutout=16", "augment.cutout_count=2", "augment.repeats=4", "augment.crop=4",
        "augment.crop_mode=reflect", "augment.flip=0.5"])) == "661204b6eb"
    # an order the classic keys cannot say is its own run, shown as the list
    flipped_first = load_config(None, ["augment.pipeline=[flip, {name: crop, padding: 4}]"])
    assert identity_hash(flipped_first) != identity_hash(short)
    flat = flatten_config(flipped_first.to_dict())
    assert flat["augment.pipeline"][0]["name"] == "flip" and "augment.crop" not in flat
    assert flatten_config(short.to_dict())["augment.cutout"] == 16  # a column reports can vary and answer by
    # an option the classic keys cannot say (the alternating flip) makes the run new and shows the list
    alternating = load_config(None, ["augment.pipeline=[{name: flip, mode: alternate}]"])
    assert identity_hash(alternating) != identity_hash(load_config(None, ["augment.flip=0.5"]))
    assert flatten_config(alternating.to_dict())["augment.pipeline"][0]["mode"] == "alternate"


def test_shorthand_edits_a_given_pipeline_in_place():
    base = {"augment": {"pipeline": [{"name": "crop", "padding": 4}, "flip", {"name": "cutout", "size": 8}]}}
    names = lambda cfg: [(e["name"], e.get("size", e.get("padding"))) for e in cfg.augment.pipeline]  # noqa: E731
    assert names(load_config(None, ["augment.cutout=16"], base=base)) == [("crop", 4), ("flip", None), ("cutout", 16)]
    assert names(load_config(None, ["augment.cutout=0"], base=base)) == [("crop", 4), ("flip", None)]
    assert names(load_config(None, ["augment.crop=0", "augment.cutout=0"], base=base)) == [("flip", None)]
    only_cutout = {"augment": {"pipeline": [{"name": "cutout", "size": 8}]}}
    # a classic key that adds its augmentation puts it in the classic order, ahead of the rest
    assert names(load_config(None, ["augment.flip=0.5", "augment.crop=2"], base=only_cutout)) == \
        [("crop", 2), ("flip", None), ("cutout", 8)]
    assert load_config(None, ["augment.cutout_count=3"], base=base).augment.pipeline[2]["count"] == 3


def test_old_config_files_with_the_classic_keys_still_read(tmp_path):
    from cnnlab.training.config import config_from_dict

    saved = RunConfig().to_dict()  # a config.yaml / checkpoint written before the pipeline existed
    saved["augment"] = {"crop": 4, "crop_mode": "zeros", "flip": 0.5, "cutout": 0, "cutout_count": 1, "repeats": 2,
                        "extra": []}
    cfg = config_from_dict(saved)
    assert [e["name"] for e in cfg.augment.pipeline] == ["crop", "flip"] and cfg.augment.repeats == 2
    assert "crop:" not in yaml.safe_dump(cfg.to_dict()["augment"])  # written back as the list only


@pytest.mark.parametrize("override, words", [
    ("augment.pipeline=[{name: flip, p: 2}]", "augment.pipeline[0]': augmentation 'flip': p must be a probability"),
    ("augment.pipeline=[{name: blur}]", "augment.pipeline[0]': unknown augmentation 'blur'"),
    ("augment.pipeline=[{name: crop, pad: 4}]", "does not take option(s) 'pad'"),
    ("augment.pipeline=3", "augment.pipeline[0]': expected Dict"),
    ("augment.crop=-1", "'augment.crop': must be >= 0"),
    ("augment.crop_mode=wrap", "'augment.crop_mode': 'wrap' is not allowed"),
    ("augment.cutout=yes", "'augment.cutout': expected int"),
])
def test_bad_augmentation_is_refused_naming_the_key(override, words):
    with pytest.raises(CnnlabError, match=re.escape(words)):
        load_config(None, [override])


def test_help_config_lists_the_pipeline_and_its_shorthand():
    from cnnlab.training.config import check_key, describe_keys

    keys = [k for k, _, _ in describe_keys()]
    at = keys.index("augment.pipeline")
    assert keys[at + 1:at + 7] == ["augment.crop", "augment.crop_mode", "augment.flip", "augment.cutout",
                                   "augment.cutout_count", "augment.extra"]
    assert check_key("augment.cutout", "spec axis") == "augment.cutout"  # sweeps may still vary it


@pytest.mark.parametrize("override", ["optim.bias_lr_scale=64", "optim.bias_lr_params=all", "optim.lookahead_k=5",
                                      "optim.lookahead_alpha=0.226", "optim.lookahead_ramp=cubic"])
def test_jordan_keys_are_neutral_at_their_defaults_and_change_identity_otherwise(override):
    """Issue #26's optim keys: the recorded runs keep their identity; setting one makes a new run, and none may
    change on resume (they change what is trained)."""
    from cnnlab.experiments.spec import identity_hash
    from cnnlab.training.config import RESUME_KEYS_CHANGEABLE

    key = override.split("=")[0]
    default = load_config(None, [f"{key}={getattr(RunConfig().optim, key.split('.')[1])}"])
    assert identity_hash(default) == "12a06d13f8"
    assert identity_hash(load_config(None, [override])) != "12a06d13f8"
    assert key not in RESUME_KEYS_CHANGEABLE
