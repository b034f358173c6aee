"""Typed run configuration: defaults < YAML file < command-line `key=value` overrides (dotted keys).

Every field says its unit and meaning where it is defined (STYLE lesson 4). Unknown keys, wrong types and impossible
values are rejected with a CnnlabError naming the key and what is allowed. The resolved config is stored in the run
folder (`config.yaml`) and in every checkpoint, so a run can always be reproduced from its folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from cnnlab import arguments as A
from cnnlab.errors import CnnlabError
from cnnlab.fileio import path_problem
from cnnlab.registry import check_kwargs, keyword_defaults
from cnnlab.training.augment_spelling import SHORTHAND_HELP, apply_shorthand, classic_value
from cnnlab.training.tracking import check_mlflow_uri


MAX_THREADS = 256  # a config read on another machine must stay valid; runtime.setup clamps to 4 x the cores there
SEED_KEY = "train.seed"                 # the repeat axis: runs that differ only in it are averaged by reports
SEED_MAX = 2**32 - 1                     # numpy's seed range; torch's is wider
SUPPORTED_DEVICES = ("cpu", "cuda", "mps")
BIG = 10**7                              # ceiling of counts (epochs, images, steps) that no real run comes near


_ALWAYS = object()  # `neutral` left out: the key is part of a run's identity whatever its value


def F(default: Any, help: str, *, min: Optional[float] = None, gt: Optional[float] = None,
      max: Optional[float] = None, lt: Optional[float] = None, choices: Optional[tuple] = None, path: bool = False,
      machine: bool = False, neutral: Any = _ALWAYS, resumable: bool = False, planned: tuple = (),
      shorthand: Optional[Dict[str, tuple]] = None):
    """A dataclass field carrying its help text, bounds (checked by `validate`) and role.

    Every number (and every number in a list) must also be finite: NaN passes every comparison, so it is refused
    by name rather than by bounds. Bounds of a list field apply to each of its items. A `path` field given as
    key=value is taken literally (parse_override), not read as YAML: `#` is not a comment in a path, nor is `null`
    the absence of one.

    The role, from which every list of keys elsewhere is derived (the constants at the end of this section):
    `machine`: where a run executes, not what it computes: left out of the run's identity (MACHINE_KEYS);
    `neutral`: a key added after runs were recorded, with the value that means "as before": left out of the identity
    while it holds that value, so that adding the key does not turn every recorded run into a new one (NEUTRAL_KEYS);
    `resumable`: a resumed run may change it: how long it goes on and how it reports, never what it trains
    (RESUME_KEYS_CHANGEABLE); `planned`: the values of this key that lay themselves out over the run's length, so
    that a run using one cannot be extended (LENGTH_PLANNED).

    `shorthand`: keys of the same section that are not fields but are written into this field's value when the
    config is read ({key: (type, F(...))}: checked under the name the user wrote, and listed by `schema`), as
    augment.crop is an entry of augment.pipeline."""
    meta = {"help": help, "min": min, "gt": gt, "max": max, "lt": lt, "choices": choices, "path": path,
            "machine": machine, "resumable": resumable, "planned": planned, "shorthand": shorthand or {}}
    if neutral is not _ALWAYS:
        meta["neutral"] = neutral
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = F("cifar10", "dataset name (a registered dataset: an unknown name is answered with the list)")
    root: Optional[str] = F(None, "where the data lives; None: env CNNLAB_DATA, then the per-user cache dir",
                            path=True, machine=True)
    val_size: Optional[int] = F(None, "images carved from train for validation (stratified); None: dataset default "
                                      "(5,000), 0: no validation split", min=0, max=BIG)
    test_size: Optional[int] = F(None, "carve a labelled, stratified test split of this many images out of the "
                                       "training images (before val), for a source whose test set is unlabelled "
                                       "(this CIFAR-10 copy); None: the source's own test split, if any",
                                 gt=0, max=BIG)
    train_subset: Optional[int] = F(None, "train on only this many images (stratified), for quick runs", gt=0, max=BIG)
    val_subset: Optional[int] = F(None, "validate on only this many images (stratified)", gt=0, max=BIG)
    seed: int = F(0, "seed of the validation split and of the subsets (not of training)", min=0, max=SEED_MAX)
    download: bool = F(False, "fetch the official files (MD5-checked) when the dataset is not found (--download)",
                       machine=True)


@dataclass
class AugmentConfig:
    pipeline: List[Dict[str, Any]] = F(
        [], "augmentations in order, each a registry name with its options (see `cnnlab.data.augment.AUGMENTATIONS`): "
            "[{name: crop, padding: 4}, {name: flip}, {name: cutout, size: 16}]; options left out take the "
            "augmentation's defaults. augment.crop / flip / cutout / crop_mode / cutout_count / extra are shorthand "
            "for its entries",
        # the shorthand keys' types and bounds, as when they were fields (augment_spelling writes them as entries)
        shorthand={"crop": (int, F(0, SHORTHAND_HELP["crop"], min=0, max=256)),
                   "crop_mode": (str, F("zeros", SHORTHAND_HELP["crop_mode"], choices=("zeros", "reflect"))),
                   "flip": (float, F(0.0, SHORTHAND_HELP["flip"], min=0, max=1)),
                   "cutout": (int, F(0, SHORTHAND_HELP["cutout"], min=0, max=4096)),
                   "cutout_count": (int, F(1, SHORTHAND_HELP["cutout_count"], min=1, max=1000)),
                   "extra": (List[Dict[str, Any]], F([], SHORTHAND_HELP["extra"]))})
    repeats: int = F(1, "batch augmentation M (Hoffer et al. 2019): each image appears M times per batch, each copy "
                        "augmented independently; the step sees batch.size x M images", min=1, max=1024)

    # The classic keys, read from the pipeline (what `augment.crop` etc. mean for it; see augment_spelling).
    crop = property(lambda self: classic_value(self.pipeline, "crop"))
    crop_mode = property(lambda self: classic_value(self.pipeline, "crop_mode"))
    flip = property(lambda self: classic_value(self.pipeline, "flip"))
    cutout = property(lambda self: classic_value(self.pipeline, "cutout"))
    cutout_count = property(lambda self: classic_value(self.pipeline, "cutout_count"))


@dataclass
class ModelConfig:
    name: str = F("simplenn", "model name (see `cnnlab models`)")
    options: Dict[str, Any] = F({}, "constructor options, e.g. {batch_norm: true, activation: swish, dropout: 0.5}")


@dataclass
class OptimConfig:
    name: str = F("sgd", "optimizer (see `cnnlab optimizers`: each one's update, keys and defaults)")
    lr: float = F(0.01, "learning rate per optimizer step, not scaled by batch size; the schedule's peak", gt=0,
                  max=1e6)
    momentum: float = F(0.9, "momentum (sgd, rmsprop, rmsprop_nesterov)", min=0, max=1)
    nesterov: bool = F(False, "Nesterov momentum (sgd)")
    weight_decay: float = F(0.0, "L2 strength as coupled weight decay: adds weight_decay*w to the gradient "
                                 "(= loss + weight_decay/2*|w|^2); decoupled for adamw", min=0, max=10)
    l1: float = F(0.0, "L1 strength: l1*sum|w| is added to the training loss", min=0, max=10)
    decay_bias_norm: bool = F(False, "apply L2/L1 to biases and normalisation parameters too (default: weights only)")
    betas: List[float] = F([0.9, 0.999], "Adam/AdamW beta1, beta2, each in [0, 1)", min=0, lt=1)
    alpha: float = F(0.99, "RMSprop squared-gradient smoothing constant", min=0, max=1)
    rho: float = F(0.9, "Adadelta running-average coefficient", min=0, max=1)
    eps: float = F(1e-8, "denominator epsilon of adaptive optimizers", gt=0, max=1)
    # Jordan 2024's parts (training/optim.py); each is off at its neutral value, so recorded runs keep their identity
    bias_lr_scale: float = F(1.0, "lr multiple for the parameters optim.bias_lr_params picks (Jordan 2024: 64 for "
                                  "BN biases); their weight decay, if any, is divided by it so that the decay per "
                                  "step stays the others'; schedules keep the ratio", gt=0, max=1e4, neutral=1.0)
    bias_lr_params: str = F("norm", "what optim.bias_lr_scale scales: norm (the biases of normalisation layers) or "
                                    "all (every bias)", choices=("norm", "all"), neutral="norm")
    lookahead_k: int = F(0, "Lookahead (Zhang et al. 2019): every k optimizer steps the slow weights move "
                            "optim.lookahead_alpha of the way to the weights, which are then set to them; 0: off",
                         min=0, max=BIG, neutral=0)
    lookahead_alpha: float = F(0.5, "Lookahead's step toward the fast weights (with lookahead_ramp=cubic: its value "
                                    "at the last step; airbench94: 1 - 0.95^5 = 0.226)", gt=0, max=1, neutral=0.5)
    lookahead_ramp: str = F("none", "Lookahead's alpha over the run: none (constant) or cubic (airbench94: from 1 at "
                                    "the start to lookahead_alpha at the end, as 1-(1-alpha)(t/T)^3)",
                            choices=("none", "cubic"), neutral="none")


@dataclass
class ScheduleConfig:
    name: str = F("constant", "learning-rate schedule (constant, step, multistep, cosine, triangular, triangular2, "
                              "exp_range, onecycle)", planned=("cosine", "onecycle"))
    unit: str = F("epoch", "unit of decay_epochs, milestones and step_size", choices=("epoch", "iter"))
    warmup: float = F(0, "linear warm-up length (in `unit`s) from warmup_factor*lr to lr, in front of the schedule",
                      min=0, max=BIG)
    warmup_factor: float = F(0.1, "warm-up starts at this fraction of lr", gt=0, max=1)
    decay: float = F(0.1, "step/multistep: multiply the lr by this at each decay point", gt=0, max=1e3)
    decay_epochs: float = F(30, "step: decay every this many `unit`s", gt=0, max=BIG)
    milestones: List[float] = F([], "multistep: decay points in `unit`s (ResNet paper: [32000, 48000] iterations)",
                                 min=0, max=BIG)
    min_lr: float = F(0.0, "cosine: final lr; cyclical: the cycle's lower bound (base_lr)", min=0, max=1e6)
    step_size: float = F(2.0, "cyclical: half-cycle length in `unit`s (Smith 2017: 2-10 epochs)", gt=0, max=BIG)
    gamma: float = F(0.99994, "exp_range: the cycle amplitude is multiplied by gamma**iteration", gt=0, max=1)
    pct_start: float = F(0.3, "onecycle: share of the run spent rising to lr", gt=0, max=1)
    div_factor: float = F(25.0, "onecycle: initial lr = lr/div_factor", gt=0, max=1e9)
    final_div_factor: float = F(1e4, "onecycle: final lr = initial lr/final_div_factor", gt=0, max=1e12)


@dataclass
class BatchConfig:
    size: int = F(128, "images per optimizer step (before augment.repeats)", gt=0, max=2**20)
    policy: str = F("constant", "batch-size policy per epoch", choices=("constant", "cyclical"))
    min: int = F(64, "cyclical: smallest batch size", gt=0, max=2**20)
    max: int = F(1024, "cyclical: largest batch size", gt=0, max=2**20)
    step_epochs: int = F(2, "cyclical: epochs per half-cycle (triangular) or per cycle (increasing/decreasing)", gt=0,
                      max=BIG)
    mode: str = F("triangular", "cyclical: triangular (min->max->min), increasing (sawtooth up), decreasing, "
                                "exp_increase (triangles whose low end rises to max by gamma per epoch: the batch "
                                "analogue of exp_range lr decay), exp_decrease",
                  choices=("triangular", "increasing", "decreasing", "exp_increase", "exp_decrease"))
    gamma: float = F(0.9, "cyclical exp_increase/exp_decrease: the cycle's range shrinks by this factor per epoch",
                     gt=0, max=1)
    micro: Optional[int] = F(None, "gradient accumulation: split each batch into chunks of at most this many images "
                                   "(same update, less memory); None: no split", gt=0, max=2**20)
    eval_size: int = F(1000, "images per evaluation batch", gt=0, max=2**20)


@dataclass
class TrainConfig:
    epochs: int = F(30, "training epochs", gt=0, max=BIG, resumable=True)
    seed: int = F(0, "seed of initialisation, batch order, augmentation and dropout", min=0, max=SEED_MAX)
    device: str = F("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps (no other kind)", machine=True,
                    resumable=True)
    amp: str = F("auto", "mixed precision: auto (CUDA: bf16 where supported, else fp16; CPU: bf16 only if the CPU "
                         "has bf16 units and 3 timed steps show it faster than fp32, else fp32), none, bf16, fp16 "
                         "(CUDA)", choices=("auto", "none", "bf16", "fp16"))
    channels_last: bool = F(True, "channels_last memory format (faster convolutions: +25% for ResNet-20 on this "
                                  "CPU, tensor cores on CUDA)")
    compile: bool = F(False, "torch.compile the model")
    sync_bn: bool = F(False, "distributed runs: synchronise BatchNorm statistics across processes")
    threads: int = F(0, f"CPU intra-op threads (at most {MAX_THREADS}; more than 4 x the cores is reduced to that, "
                          "with a note), never changed; 0: start at torch's default (one per core) and, on the CPU, time "
                          "the first steps of an epoch (when due, at most 120 s of training apart) at one thread "
                          "fewer and more and keep the fastest (training/threads.py; the count is in metrics.csv)",
                   min=0, max=MAX_THREADS, machine=True, resumable=True)
    deterministic: bool = F(False, "use deterministic algorithms (slower on CUDA)")
    loss: str = F("cross_entropy", "training loss: cross_entropy, multi_margin (multi-class hinge), mse (softmax vs "
                                  "one-hot); validation always reports cross-entropy",
                  choices=("cross_entropy", "multi_margin", "mse"))
    label_smoothing: float = F(0.0, "label smoothing of the cross-entropy loss", min=0, lt=1)
    ema: float = F(0.0, "decay of an exponential moving average of the weights and BN statistics, updated every "
                        "optimizer step (warmed up as min(decay, (1+n)/(10+n))); validation, best.pt, evaluate, "
                        "predict and export use the average; e.g. 0.999 (a half-life of ~690 steps); 0: off",
                   min=0, lt=1, neutral=0.0)
    targets: List[float] = F([], "validation accuracies (0-1) whose first epoch and wall time are recorded",
                             gt=0, max=1)
    diverge_factor: float = F(4.0, "a loss above this many times max(initial loss, ln classes), or NaN/inf, "
                                   "stops the run as diverged", gt=1, max=1e6)
    max_time: Optional[float] = F(None, "stop after this many seconds of training (checked per epoch)", gt=0,
                                   max=1e8, resumable=True)
    checkpoints: bool = F(True, "write best.pt and last.pt every epoch")
    tensorboard: bool = F(False, "also log to TensorBoard (runs/<name>/tb): grouped tags, hparams at the end",
                          machine=True)
    mlflow: Optional[str] = F(None, "also log to MLflow: local (SQLite in `out`), or a tracking URI such as "
                                    "sqlite:///mlflow.db or http://host:5000; needs pip install 'cnnlab[mlflow]'")
    log_every: int = F(0, "TensorBoard/MLflow: also log the batch loss and lr every this many optimizer steps; "
                          "0: per epoch only", min=0, max=BIG, resumable=True)
    patience: int = F(0, "early stopping: stop when `monitor` has not improved for this many epochs; 0: off",
                      min=0, max=BIG, resumable=True)
    monitor: str = F("val_acc", "early stopping's validation metric", choices=("val_acc", "val_loss"))
    progress: str = F("auto", "progress bar: auto (on a terminal), on, off", choices=("auto", "on", "off"),
                      machine=True, resumable=True)


@dataclass
class RunConfig:
    name: Optional[str] = F(None, "run folder name under `out`; None: <model>-<dataset>-<timestamp>",
                            machine=True)
    out: str = F("runs", "parent folder of run folders", path=True, machine=True)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        # RunConfig(...) made by hand (api.RunConfig): the types are checked here, the values by `validate`
        A.check_arguments("RunConfig", _RUN_CONFIG_FIELDS, self.__dict__)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _section(cls, name: str) -> A.Accepts:
    """A section of RunConfig: its dataclass, or a dict of its keys (built and type-checked as a config file is)."""
    return A.instance(cls, f"{cls.__name__}(...) or a dict of its keys", convert=lambda d: _build(cls, d, name + "."),
                      convertible=(dict,))


_FOLDER = A.Accepts("a folder (str or Path)", lambda v: os.fspath(A.path().check(v)))
_RUN_CONFIG_FIELDS = dict(name=A.text(what="a run name").or_none(), out=_FOLDER, data=_section(DataConfig, "data"),
                          augment=_section(AugmentConfig, "augment"), model=_section(ModelConfig, "model"),
                          optim=_section(OptimConfig, "optim"), schedule=_section(ScheduleConfig, "schedule"),
                          batch=_section(BatchConfig, "batch"), train=_section(TrainConfig, "train"))


# ----------------------------------------------------------------------------------------------------------------------
# Building a config from nested dicts, with type checks that name the key.

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp, key: str, choices: Optional[tuple] = None) -> Any:
    """Check (and where lossless, convert) `value` against the annotation `tp`.

    Kept whole on purpose (43 lines): one flat dispatch on the annotation, a few lines per type, that reads best
    side by side; split up, each branch would be a function of its own with the same four arguments."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, choices)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string; accept it as a number
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # bytes of another encoding, smuggled in through argv (surrogateescape)
                raise CnnlabError(f"config key {key!r}: {value!r} is not valid UTF-8; use UTF-8 text") from None
            return value
        if isinstance(value, bool) and choices and "on" in choices:  # YAML 1.1 reads on/off as booleans
            return "on" if value else "off"
    elif origin in (list, List):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # a single number where a list is expected: the common one-element case
        if isinstance(value, (list, tuple)):
            return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    elif origin in (dict, Dict):
        if isinstance(value, dict):
            return dict(value)
    raise CnnlabError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls, data: Dict[str, Any], prefix: str = ""):
    if not isinstance(data, dict):
        raise CnnlabError(f"config section {prefix.rstrip('.') or '<top>'!r} must be a mapping, got {data!r}")
    if cls is AugmentConfig:
        data = _augment_section(data, prefix)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), names, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        raise CnnlabError(f"unknown config key {prefix + str(k)!r}{hint}; valid keys"
                          f"{' in ' + repr(prefix.rstrip('.')) if prefix else ''}: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name], prefix + f.name + ".")
        else:
            kwargs[f.name] = _coerce(data[f.name], tp, prefix + f.name, f.metadata.get("choices"))
    return cls(**kwargs)


def _shorthand(cls) -> Dict[str, tuple]:
    """{key: (type, field)} of the shorthand keys the fields of section `cls` declare (F's `shorthand`)."""
    return {k: v for f in dataclasses.fields(cls) for k, v in f.metadata.get("shorthand", {}).items()}


def _augment_section(data: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    """Check the shorthand keys of an `augment` mapping, then turn them into pipeline entries (augment_spelling)."""
    data = dict(data)
    for key, (tp, f) in _shorthand(AugmentConfig).items():
        if key in data:
            data[key] = _coerce(data[key], tp, prefix + key, f.metadata.get("choices"))
            _check_value(prefix + key, data[key], f.metadata)
    return apply_shorthand(data)


def _check_bounds(obj, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            _check_bounds(value, key + ".")
            continue
        if value is not None and f.metadata:
            _check_value(key, value, f.metadata)


def _check_value(key: str, value: Any, m: Dict[str, Any]) -> None:
    """One value against its field's choices and bounds (each item of a list)."""
    if m.get("choices") and value not in m["choices"]:
        raise CnnlabError(f"config key {key!r}: {value!r} is not allowed; choose one of {', '.join(m['choices'])}")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_number(f"{key}[{i}]", item, m)
    else:
        _check_number(key, value, m)


def _check_number(key: str, value: Any, m: Dict[str, Any]) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise CnnlabError(f"config key {key!r}: must be a finite number, got {value}")
    if m.get("gt") is not None and not value > m["gt"]:
        raise CnnlabError(f"config key {key!r}: must be > {m['gt']}, got {value}")
    if m.get("min") is not None and value < m["min"]:
        raise CnnlabError(f"config key {key!r}: must be >= {m['min']}, got {value}")
    if m.get("max") is not None and value > m["max"]:
        raise CnnlabError(f"config key {key!r}: must be <= {_show(m['max'])}, got {_show(value)}")
    if m.get("lt") is not None and not value < m["lt"]:
        raise CnnlabError(f"config key {key!r}: must be < {m['lt']}, got {value}")


def _show(v) -> str:
    return f"{v:,}" if isinstance(v, int) and abs(v) < 10**15 else f"{v:g}"


def _check_names(cfg: RunConfig) -> None:
    """Names chosen from registries must exist; the registries' own errors list the valid names."""
    # here: the registries' modules load torch, and reading a config (--help-config, a spec) does not
    from cnnlab.data import DATASETS
    from cnnlab.models import MODELS
    from cnnlab.training.optim import OPTIMIZERS
    from cnnlab.training.schedules import SCHEDULES

    def named(registry, key, value):
        try:
            return registry.get(value)
        except CnnlabError as e:
            raise CnnlabError(f"config key {key!r}: {e}") from None

    named(DATASETS, "data.name", cfg.data.name)
    ctor = named(MODELS, "model.name", cfg.model.name)
    try:
        check_kwargs(ctor, cfg.model.options, f"model {cfg.model.name!r}")
    except CnnlabError as e:
        raise CnnlabError(f"config key 'model.options': {e}") from None
    named(OPTIMIZERS, "optim.name", cfg.optim.name)
    named(SCHEDULES, "schedule.name", cfg.schedule.name)
    _check_augment_pipeline(cfg.augment)
    if cfg.batch.policy == "cyclical" and cfg.batch.min > cfg.batch.max:
        raise CnnlabError(f"config keys 'batch.min' ({cfg.batch.min}) must be <= 'batch.max' ({cfg.batch.max})")
    if len(cfg.optim.betas) != 2:
        raise CnnlabError(f"config key 'optim.betas': expected two numbers, got {cfg.optim.betas}")
    _check_run_name(cfg.name)
    check_device_kind(cfg.train.device)
    check_mlflow_uri(cfg.train.mlflow)


def _check_augment_pipeline(aug: AugmentConfig) -> None:
    """Each pipeline entry names a registered augmentation with options it takes and values it accepts (built once
    to let it check them); the entry is completed with the augmentation's defaults, so that {name: flip} and
    {name: flip, p: 0.5} are one config, with one identity."""
    from cnnlab.data.augment import AUGMENTATIONS  # here: the data layer loads torch, and reading a config does not

    for i, spec in enumerate(aug.pipeline):
        key = f"augment.pipeline[{i}]"
        if not isinstance(spec.get("name"), str):
            raise CnnlabError(f"config key {key!r}: each entry needs a name, e.g. {{name: cutout, size: 8}}; "
                              f"got {spec!r}")
        options = {k: v for k, v in spec.items() if k != "name"}
        try:
            ctor = AUGMENTATIONS.get(spec["name"])
            check_kwargs(ctor, options, f"augmentation {spec['name']!r}")
            ctor(**options)
        except CnnlabError as e:
            raise CnnlabError(f"config key {key!r}: {e}") from None
        aug.pipeline[i] = {"name": spec["name"], **keyword_defaults(ctor), **options}


def check_device_kind(name: str) -> None:
    """Only the kind is checked here (also by runtime.select_device); whether such a device is present is the
    runtime's question."""
    import torch  # here, not at the top: configs are read (e.g. --help-config) without loading torch

    if name == "auto":
        return
    try:
        kind = torch.device(name).type
    except (RuntimeError, ValueError, TypeError):
        kind = None
    if kind not in SUPPORTED_DEVICES:
        raise CnnlabError(f"config key 'train.device': {name!r} is not a device cnnlab trains on; use auto, cpu, "
                          "cuda, cuda:N or mps")


def _check_run_name(name: Optional[str]) -> None:
    """A run name is one path component: the run folder is out/<name>, and nothing may land outside out/."""
    if name is None:
        return
    bad = ("is empty" if name == "" else "contains '/'" if "/" in name or "\\" in name else
           "names a folder, not a run" if name in (".", "..") else "contains a NUL byte" if "\0" in name else
           "is longer than 255 bytes" if len(name.encode("utf-8", "surrogateescape")) > 255 else None)
    if bad:
        raise CnnlabError(f"config key 'name': {name!r} {bad}; a run name must be one folder name (no '/', not '.' "
                          f"or '..', at most 255 bytes); put the parent folder in out=...")


def validate(cfg: RunConfig) -> RunConfig:
    _check_bounds(cfg)
    _check_names(cfg)
    return cfg


def parse_override(text: str) -> tuple:
    """'optim.lr=0.1' -> ('optim.lr', 0.1); the value is read as YAML (numbers, booleans, lists, null), except for
    a path key (data.root, out), whose value is the path as written."""
    if "=" not in text:
        raise CnnlabError(f"override {text!r} is not of the form key=value (e.g. optim.lr=0.1)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise CnnlabError(f"override {text!r} has an empty key")
    if key in path_keys():
        return key, raw
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except YamlTooBig as e:
        raise CnnlabError(f"override {key!r} is not usable YAML: {e.problem}") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def _one_override(text: Any) -> str:
    if not isinstance(text, str):
        raise A.Refused()
    parse_override(text)  # a CnnlabError naming the override if it is not key=value
    return text


# What a Python caller may pass as overrides (api.config, api.train, SweepOptions ...): a list of key=value strings,
# or one such string, taken as a one-item list (iterating it would give one override per character).
OVERRIDES = A.sequence(A.Accepts("a 'key=value' string", _one_override), what="a list", one=True)


def set_dotted(tree: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        elif not isinstance(nxt, dict):
            raise CnnlabError(f"config key {key!r}: {p!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    """Recursive dict merge; `update` wins. `model.options` merges key by key as well."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# What one YAML document (a config, a spec, one key=value) may hold. Aliases let a few hundred bytes stand for a
# billion values ("billion laughs"); PyYAML shares the aliased objects, so the blow-up comes later, when the data is
# printed, copied or iterated. The node count is of the document with every alias expanded, checked before any
# Python object is built; the depth limit also keeps the composer (which recurses once per level) off RecursionError.
# The largest recipe in experiments/ has a few hundred nodes and a depth under 10.
YAML_MAX_NODES = 100_000
YAML_MAX_DEPTH = 64


class YamlTooBig(yaml.composer.ComposerError):
    """A YAML document past YAML_MAX_NODES or YAML_MAX_DEPTH (a key=value override says so instead of reading the
    text as a string)."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last one), a
    document nested deeper than YAML_MAX_DEPTH, and one that expands (aliases included) past YAML_MAX_NODES."""

    _depth = 0

    def compose_node(self, parent, index):
        if self._depth >= YAML_MAX_DEPTH:
            raise YamlTooBig(
                None, None, f"nested deeper than {YAML_MAX_DEPTH} levels; flatten it", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)  # YAML merge keys (<<: *anchor) first, as SafeLoader does
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: construct_mapping below raises its own error for it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1}); keep one of them",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _check_expanded_size(root) -> None:
    """Count the nodes of `root` with every alias expanded (memoised per node, so a billion laughs costs a few
    hundred steps) and its expanded depth; refuse past the limits, or a node that contains itself. Iterative: the
    expanded depth is what is being bounded, so it must not be recursion that finds it."""
    size: Dict[int, int] = {}
    depth: Dict[int, int] = {}
    stack = [(root, False)]
    open_nodes = set()
    while stack:
        node, done = stack.pop()
        if id(node) in size:
            continue
        kids = ([] if isinstance(node, yaml.ScalarNode) else
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value))
        if done:
            open_nodes.discard(id(node))
            size[id(node)] = 1 + sum(size[id(k)] for k in kids)
            depth[id(node)] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[id(node)] > YAML_MAX_NODES or depth[id(node)] > YAML_MAX_DEPTH:
                what = (f"expands to more than {YAML_MAX_NODES:,} values" if size[id(node)] > YAML_MAX_NODES
                        else f"is nested deeper than {YAML_MAX_DEPTH} levels")
                raise YamlTooBig(None, None, f"{what} (through its aliases, *name); write the values out or use "
                                 "fewer aliases", node.start_mark)
            continue
        if id(node) in open_nodes:
            raise YamlTooBig(None, None, "an alias refers to a value that contains it; remove the loop",
                             node.start_mark)
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def load_yaml_text(text: str) -> Any:
    """YAML text -> data, safely (no tags that build objects) and strictly (no duplicate keys)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path, what: str = "config file", hint: str = "") -> Any:
    """Parse a YAML file; a missing, unreadable, non-UTF-8 or malformed file is a CnnlabError naming `what` and the
    path (and, for YAML errors, the line)."""
    path = Path(path)
    problem = path_problem(path, "file")
    if problem:
        raise CnnlabError(f"{what} {str(path)!r} {problem}{hint if problem.startswith('not found') else ''}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CnnlabError(f"{what} {str(path)!r} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise CnnlabError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None
    try:
        return load_yaml_text(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CnnlabError(f"{what} {str(path)!r} is not valid YAML{where}: {problem}") from None


def read_config_file(path) -> Dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CnnlabError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path=None, overrides: Optional[List[str]] = None, base: Optional[Dict[str, Any]] = None) -> RunConfig:
    """defaults < `base` dict < YAML file at `path` < `key=value` overrides; validated. The defaults are the
    schema's with the chosen optimizer's own over them (`defaults_for`)."""
    layers = [base or {}, read_config_file(path) if path is not None else {}]
    patch: Dict[str, Any] = {}
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(patch, key, value)
    tree = defaults_for(*layers, patch)
    for layer in (*layers, patch):
        tree = merge(tree, layer)
    return validate(_build(RunConfig, tree))


def config_from_dict(data: Dict[str, Any]) -> RunConfig:
    """Rebuild a saved config (from config.yaml or a checkpoint), filling keys added since with defaults."""
    return validate(_build(RunConfig, merge(defaults_for(data), data)))


def defaults_for(*layers: Dict[str, Any]) -> Dict[str, Any]:
    """The tree a config starts from: the schema's defaults, with the defaults of the optimizer the layers choose
    (the last one naming it wins) over them, so that an optimizer whose defaults differ from the schema's (Lion's
    betas) gets its own where the user sets nothing; the optimizers whose defaults are the schema's change nothing."""
    # here: the optimizer registry loads torch, and the schema (--help-config) is read without it
    from cnnlab.training.optim import optimizer_defaults

    tree = RunConfig().to_dict()
    chosen = [layer["optim"]["name"] for layer in layers
              if isinstance(layer, dict) and isinstance(layer.get("optim"), dict) and "name" in layer["optim"]]
    own = optimizer_defaults(chosen[-1] if chosen else tree["optim"]["name"])
    return merge(tree, {"optim": own}) if own else tree


def schema(cls=RunConfig, prefix: str = "") -> Dict[str, tuple]:
    """dotted key -> (annotation, field metadata, default) for every config key (--help-config, the fuzz tests)."""
    out: Dict[str, tuple] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(schema(tp, prefix + f.name + "."))
        else:
            out[prefix + f.name] = (tp, f.metadata, _default(f))
        # a field's shorthand keys are read like any key, so they are listed
        out.update({prefix + k: (t, sf.metadata, _default(sf)) for k, (t, sf) in f.metadata.get("shorthand", {}).items()})
    return out


_PATH_KEYS = None


def path_keys() -> List[str]:
    """The config keys that hold a file-system path (F(..., path=True))."""
    global _PATH_KEYS
    if _PATH_KEYS is None:
        _PATH_KEYS = [key for key, (_, meta, _) in schema().items() if meta.get("path")]
    return _PATH_KEYS


def _default(f) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def describe_keys() -> List[tuple]:
    """(key, default, help) for every config key: the text of `cnnlab train --help-config`."""
    return [(key, default, meta.get("help", "")) for key, (_, meta, default) in schema().items()]


# Every dotted key, for specs, tuning spaces, figure and answer options (one home for config-key knowledge).
def keys_with_role(role: str) -> tuple:
    """The config keys whose field declares `role` (machine, resumable; see F)."""
    return tuple(key for key, (_, meta, _) in schema().items() if meta.get(role))


# Derived from the roles each field declares (F): a new key says its role where it is defined, and no list elsewhere
# has to remember it (STYLE lesson 13).
MACHINE_KEYS = keys_with_role("machine")
NEUTRAL_KEYS = {key: meta["neutral"] for key, (_, meta, _) in schema().items() if "neutral" in meta}
RESUME_KEYS_CHANGEABLE = keys_with_role("resumable")
LENGTH_PLANNED = tuple(v for _, meta, _ in schema().values() for v in meta.get("planned", ()))


_CONFIG_KEYS = None


def config_keys() -> List[str]:
    global _CONFIG_KEYS
    if _CONFIG_KEYS is None:
        _CONFIG_KEYS = [k for k, _, _ in describe_keys()]
    return _CONFIG_KEYS


def check_key(key: Any, where: str) -> str:
    """A dotted config key must exist (model.options.* are the model's own options, checked when runs are built)."""
    if not isinstance(key, str) or not key:
        raise CnnlabError(f"{where}: config keys must be dotted names like optim.lr, got {key!r}")
    if key in config_keys() or key.startswith("model.options."):
        return key
    close = difflib.get_close_matches(key, config_keys(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise CnnlabError(f"{where}: unknown config key {key!r}{hint}; see `cnnlab train --help-config` for every key")
