"""Experiment specs: one YAML file names a base run config and what varies; `expand` turns it into run configs.

A spec answers one comparison (the course's "with and without BN", "six learning rates", "M = 2...32"):

    name: lr-sweep                      # default: the file's stem
    question: Which learning rate trains SimpleNN best?
    base:                               # a run config (nested or dotted keys), over `config:` FILE if given
      model: {name: simplenn, options: {batch_norm: true}}
    grid:                               # every combination of the listed values
      optim.lr: [1.0, 0.1, 0.05, 0.01, 0.005, 0.001]
    zip:                                # lists of equal length, taken together (an lr with its epoch budget)
      optim.name: [adagrad, adam]
      optim.lr: [0.01, 0.001]
    variants:                           # named sets of overrides
      relu: {model.options.activation: relu}
      swish: {model.options.activation: swish}
    groups:                             # instead of grid/zip/variants: several blocks, each with its own set/axes
      standard: {set: {augment.repeats: 1}}
      cutout: {set: {augment.cutout: 16}, grid: {augment.repeats: [2, 4, 8]}}
    profiles:                           # at least quick (minutes on a CPU) and full (the course's budgets)
      quick: {set: {data.train_subset: 2000, train.epochs: 3}, axes: {optim.lr: [0.1, 0.01]}}
      full: {set: {train.epochs: 30}}
    report: {figures: [{kind: sweep, x: optim.lr}]}
    predict: holdout                    # write predictions.csv of this split after each finished run
    evaluate: [test]                    # best checkpoint's loss and accuracy on these splits, into the summary
    tune: {space: {optim.lr: {type: float, low: 1e-4, high: 1, log: true}}}   # for `cnnlab tune` (tune.py)
    analysis:                           # cnnlab commands run after the sweep by `cnnlab sweep --analysis`
      - {name: lr-range, args: [find-lr, "{run:bn}", --out, "{out}"]}
      - {name: filters, args: [filters, "{best}", --out, "{out}"]}   # the finished run with the best val acc

Precedence inside one run: config file < base < group.set < variant < profile.set < zip < grid < command line.
A profile's `set` shrinks every run (its data, its epochs) but leaves what the axes vary alone; its `axes` replace
an axis's values (fewer learning rates, smaller batch sizes), its `groups`/`variants` keep only the listed ones.
An analysis step may name the `profiles` it belongs to (a cheap version for quick, the real one for full), and the
runs it `feeds`: those runs take the settings the step suggests (`suggested batch.min=64 batch.max=1024` in its
result lines), above the command line, once the step has run (`cnnlab sweep --analysis` runs feeding steps first);
until then they run with the spec's own values.

Each run gets a readable name built from what varied (`bn_lr=0.1`), and a key `name@hash` where the hash covers
its whole config except where it runs (data.root, device, threads): a changed spec makes new keys, so old results
are never mistaken for the new runs. Errors name the spec file and the key or run at fault.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments.answers import check_answer
from cnnlab.experiments.figures import check_figure
from cnnlab.training.augment_spelling import view as augment_view
from cnnlab.training.runfolder import RunFolder
# MACHINE_KEYS (where a run executes, not what it computes) and NEUTRAL_KEYS (keys added after runs were recorded,
# neutral at the value that means "as before") are left out of a run's identity hash; each config field declares its
# role (config.F), so a sweep can be shared by machines whose data lives in different folders.
from cnnlab.training.config import (MACHINE_KEYS, NEUTRAL_KEYS, SEED_KEY, RunConfig, check_key, config_from_dict,
                                   config_keys, merge, parse_override, read_config_file, read_yaml, set_dotted)

SPEC_KEYS = ("name", "question", "description", "config", "base", "grid", "zip", "variants", "groups", "profiles",
             "report", "predict", "evaluate", "analysis", "default_profile", "tune")
GROUP_KEYS = ("set", "grid", "zip", "variants")
PROFILE_KEYS = ("description", "set", "axes", "groups", "variants", "seeds", "stands_in")
LABEL_CHARS = 40  # a report label fits a legend entry and a table cell
ANALYSIS_KEYS = ("name", "args", "description", "profiles", "feeds")
_SAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def check_component(name: Any, what: str) -> str:
    """A name that becomes one folder name (spec, profile, group, variant, analysis step): letters, digits and
    . _ + = -, not made of dots alone ('..' would lead out of the sweep's out/ folder), at most 100 characters."""
    if (not isinstance(name, str) or not name or _SAFE.sub("", name) != name or set(name) == {"."}
            or len(name) > 100):
        raise CnnlabError(f"{what} {name!r} must be a word of letters, digits, . _ + = - (not dots alone, at most "
                          "100 characters): it names a folder")
    return name


@dataclass
class Run:
    """One run of a sweep: its name, where it came from, what varied and its full config."""
    name: str
    group: Optional[str]
    variant: Optional[str]
    varied: Dict[str, Any]          # label -> value (group, variant, then axis keys) for report tables
    config: RunConfig
    key: str = ""                   # name@hash: identity in the results store

    @property
    def label(self) -> str:
        return self.name


@dataclass
class Group:
    name: Optional[str]
    set: Dict[str, Any] = field(default_factory=dict)
    grid: Dict[str, list] = field(default_factory=dict)
    zip: Dict[str, list] = field(default_factory=dict)
    variants: Dict[str, Dict[str, Any]] = field(default_factory=dict)


@dataclass
class Profile:
    name: str
    description: str = ""
    set: Dict[str, Any] = field(default_factory=dict)
    axes: Dict[str, list] = field(default_factory=dict)
    groups: Optional[List[str]] = None
    variants: Optional[List[str]] = None
    seeds: List[int] = field(default_factory=list)   # repeat every run over train.seed (a grid axis of each group)
    # What this profile's stand-in model or budget cannot show of the course's answer, and which profile would: the
    # report states it before every answer, so a stand-in's numbers are never read as the course's answer.
    stands_in: str = ""


@dataclass
class Spec:
    path: Optional[Path]
    name: str
    question: str
    description: str
    base: Dict[str, Any]            # the run config tree (config file merged with base), dotted keys expanded
    groups: List[Group]
    profiles: Dict[str, Profile]
    default_profile: Optional[str]
    figures: List[Dict[str, Any]]
    predict: Optional[str]
    analysis: List[Dict[str, Any]]
    evaluate: List[str] = field(default_factory=list)
    tune: Optional[Dict[str, Any]] = None  # the search space of `cnnlab tune` (checked by experiments/tune.py)
    answers: List[Dict[str, Any]] = field(default_factory=list)  # report.answers (checked by experiments/answers.py)
    # report.labels: a variant's or group's name -> the words a report, its figures and its answers call it by
    # ("BN, lr 0.1, Swish" for bn_lr0.1_swish); the name stays what the folders, runs.csv and selectors use
    labels: Dict[str, str] = field(default_factory=dict)

    def where(self) -> str:
        return f"spec {str(self.path)!r}" if self.path else f"spec {self.name!r}"

    def profile(self, name: Optional[str]) -> Optional[Profile]:
        """The named profile; None means the spec's default (quick if there is one)."""
        if name is None:
            name = self.default_profile
        if name is None:
            return None
        if name not in self.profiles:
            known = ", ".join(self.profiles) or "none (the spec has no profiles: leave --profile out)"
            raise CnnlabError(f"{self.where()} has no profile {name!r}; its profiles: {known}")
        return self.profiles[name]


# ----------------------------------------------------------------------------------------------------------------------
# Reading and checking a spec.

def flatten(tree: Any, where: str, prefix: str = "") -> Dict[str, Any]:
    """Nested or dotted mapping -> {dotted key: value}, every key checked. `model.options` values stay whole."""
    if not isinstance(tree, dict):
        raise CnnlabError(f"{where} must be a mapping of config keys to values, got {tree!r}")
    out: Dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and key not in config_keys():
            out.update(flatten(v, where, key + "."))
        else:
            out[check_key(key, where)] = v
    return out


def unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
    tree: Dict[str, Any] = {}
    for k, v in flat.items():
        set_dotted(tree, k, copy.deepcopy(v))
    return tree


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CnnlabError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _check_fields(data: dict, allowed: Tuple[str, ...], where: str) -> None:
    for k in data:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CnnlabError(f"{where}: unknown key {k!r}{hint}; allowed: {', '.join(allowed)}")


def _text(value: Any, where: str) -> str:
    """A free-text field (question, description): text or absent. Anything else is refused, not str()-ed: a
    mapping or list here is a mistake, and one built from aliases prints as billions of characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CnnlabError(f"{where} must be text, got {type(value).__name__}; quote it or write it as one string")
    return value


def _axis(values: Any, where: str) -> list:
    if not isinstance(values, list):
        raise CnnlabError(f"{where} must be a list of values, e.g. [0.1, 0.01], got {values!r}")
    if not values:
        raise CnnlabError(f"{where} is empty; list at least one value or remove the axis")
    return values


def _axes(data: Any, where: str) -> Dict[str, list]:
    return {check_key(k, where): _axis(v, f"{where} axis {k!r}") for k, v in _mapping(data, where).items()}


def _zip_axes(data: Any, where: str) -> Dict[str, list]:
    axes = _axes(data, where)
    lengths = {k: len(v) for k, v in axes.items()}
    if len(set(lengths.values())) > 1:
        raise CnnlabError(f"{where}: zipped axes must have equal lengths, got "
                          + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
    return axes


def _variants(data: Any, where: str) -> Dict[str, Dict[str, Any]]:
    data = _mapping(data, where)
    out = {}
    for name, overrides in data.items():
        check_component(name, f"{where}: variant name")
        out[name] = flatten(_mapping(overrides, f"{where} {name!r}"), f"{where} {name!r}")
    return out


def _group(name: Optional[str], data: dict, where: str) -> Group:
    _check_fields(data, GROUP_KEYS, where)
    g = Group(name, set=flatten(_mapping(data.get("set"), f"{where} set"), f"{where} set"),
              grid=_axes(data.get("grid"), f"{where} grid"), zip=_zip_axes(data.get("zip"), f"{where} zip"),
              variants=_variants(data.get("variants"), f"{where} variants"))
    if "variants" in data and not g.variants:
        raise CnnlabError(f"{where} variants is empty; name at least one variant or remove the key")
    both = set(g.grid) & set(g.zip)
    if both:
        raise CnnlabError(f"{where}: key {sorted(both)[0]!r} is both a grid and a zip axis; keep it in one")
    return g


def _profile(name: str, data: Any, where: str) -> Profile:
    data = _mapping(data, where)
    _check_fields(data, PROFILE_KEYS, where)
    p = Profile(name, description=_text(data.get("description"), f"{where} description"),
                set=flatten(_mapping(data.get("set"), f"{where} set"), f"{where} set"),
                axes=_axes(data.get("axes"), f"{where} axes"), seeds=_seeds(data.get("seeds"), f"{where} seeds"),
                stands_in=_text(data.get("stands_in"), f"{where} stands_in").strip())
    for k in ("groups", "variants"):
        if k in data:
            v = data[k]
            if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                raise CnnlabError(f"{where} {k} must be a non-empty list of names, got {v!r}")
            setattr(p, k, v)
    return p


def _seeds(data: Any, where: str) -> List[int]:
    if data is None:
        return []
    if (not isinstance(data, list) or not data or len(set(data)) != len(data)
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in data)):
        raise CnnlabError(f"{where} must be a list of distinct non-negative integers (e.g. [0, 1, 2]), got {data!r}")
    return list(data)


def _analysis(data: Any, where: str) -> List[Dict[str, Any]]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise CnnlabError(f"{where} must be a list of {{name, args}} steps")
    steps = []
    for i, step in enumerate(data):
        w = f"{where}[{i}]"
        step = _mapping(step, w)
        _check_fields(step, ANALYSIS_KEYS, w)
        name, args = step.get("name"), step.get("args")
        check_component(name, f"{w} name")
        if not isinstance(args, list) or not args or not all(isinstance(a, (str, int, float)) for a in args):
            raise CnnlabError(f"{w} args must be a non-empty list of command-line words, got {args!r}")
        profiles = step.get("profiles")
        if profiles is not None and (not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles)):
            raise CnnlabError(f"{w} profiles must be a list of profile names, got {profiles!r}")
        feeds = step.get("feeds")
        if feeds is not None and (not isinstance(feeds, list) or not all(isinstance(r, str) for r in feeds)):
            raise CnnlabError(f"{w} feeds must be a list of run names (the runs that take the step's suggested "
                              f"settings), got {feeds!r}")
        steps.append({"name": name, "args": [str(a) for a in args],
                      "description": _text(step.get("description"), f"{w} description"),
                      "profiles": profiles, "feeds": feeds})
    return steps


def _answers(data: Any, where: str) -> List[Dict[str, Any]]:
    items = _mapping(data, where).get("answers") or []
    if not isinstance(items, list):
        raise CnnlabError(f"{where} answers must be a list of {{kind: ..., ...}} mappings")
    return [check_answer(_mapping(a, f"{where} answers[{i}]"), f"{where} answers[{i}]") for i, a in enumerate(items)]


def _figures(data: Any, where: str) -> List[Dict[str, Any]]:
    data = _mapping(data, where)
    _check_fields(data, ("figures", "answers", "labels"), where)
    figs = data.get("figures") or []
    if not isinstance(figs, list):
        raise CnnlabError(f"{where} figures must be a list of {{kind: ..., ...}} mappings")
    return [check_figure(_mapping(f, f"{where} figures[{i}]"), f"{where} figures[{i}]") for i, f in enumerate(figs)]


def _base(data: dict, path: Optional[Path], where: str) -> Dict[str, Any]:
    """The run config every run starts from: the `config:` file (relative to the spec), then `base:` over it."""
    base: Dict[str, Any] = {}
    if data.get("config") is not None:
        cfg_path = Path(str(data["config"]))
        if path is not None and not cfg_path.is_absolute():
            cfg_path = path.parent / cfg_path
        base = unflatten(flatten(read_config_file(cfg_path), f"{where} config {str(cfg_path)!r}"))
    return merge(base, unflatten(flatten(_mapping(data.get("base"), f"{where} base"), f"{where} base")))


def _groups(data: dict, where: str) -> List[Group]:
    """`groups:`, or the top-level grid/zip/variants as one unnamed group."""
    axes_here = [k for k in GROUP_KEYS[1:] if k in data]
    if "groups" not in data:
        return [_group(None, {k: data[k] for k in axes_here}, where)]
    if axes_here:
        raise CnnlabError(f"{where}: use either top-level {'/'.join(axes_here)} or groups, not both "
                          "(put the axes inside a group)")
    groups_data = _mapping(data["groups"], f"{where} groups")
    if not groups_data:
        raise CnnlabError(f"{where} groups is empty; name at least one group or remove the key")
    return [_group(check_component(n, f"{where} group name"), _mapping(g, f"{where} group {n!r}"),
                   f"{where} group {n!r}") for n, g in groups_data.items()]


def _splits(data: dict, where: str) -> Tuple[Optional[str], List[str]]:
    """`predict:` (one split) and `evaluate:` (a list of splits)."""
    predict = data.get("predict")
    if predict is not None and predict not in ("holdout", "test", "val"):
        raise CnnlabError(f"{where} predict must be holdout, test or val, got {predict!r}")
    evaluate = data.get("evaluate") or []
    evaluate = [evaluate] if isinstance(evaluate, str) else evaluate
    if not isinstance(evaluate, list) or any(e not in ("test", "val", "train") for e in evaluate):
        raise CnnlabError(f"{where} evaluate must list splits among test, val, train, got {data.get('evaluate')!r}")
    return predict, evaluate


def parse_spec(data: Any, path: Optional[Path] = None, name: Optional[str] = None) -> Spec:
    """Check a spec mapping (as read from YAML) and return a Spec; every mistake is a CnnlabError naming the key."""
    where = f"spec {str(path)!r}" if path else "spec"
    if not isinstance(data, dict):
        raise CnnlabError(f"{where} must be a YAML mapping with base/grid/zip/variants/profiles, got "
                          f"{type(data).__name__}")
    _check_fields(data, SPEC_KEYS, where)
    profiles = {check_component(n, f"{where} profile name"): _profile(n, p, f"{where} profile {n!r}")
                for n, p in _mapping(data.get("profiles"), f"{where} profiles").items()}
    default = data.get("default_profile", "quick" if "quick" in profiles else next(iter(profiles), None))
    if default is not None and default not in profiles:
        raise CnnlabError(f"{where} default_profile {default!r} is not one of its profiles: {', '.join(profiles)}")
    if data.get("name") is not None and not isinstance(data["name"], str):
        raise CnnlabError(f"{where} name must be text (it names a folder), got {type(data['name']).__name__}")
    spec_name = data.get("name") or name or (path.stem if path else "experiment")
    check_component(spec_name, f"{where} name")
    predict, evaluate = _splits(data, where)
    spec = Spec(path, spec_name, _text(data.get("question"), f"{where} question").strip(),
                _text(data.get("description"), f"{where} description").strip(),
                _base(data, path, where), _groups(data, where), profiles, default,
                _figures(data.get("report"), f"{where} report"), predict,
                _analysis(data.get("analysis"), f"{where} analysis"), evaluate, data.get("tune"),
                _answers(data.get("report"), f"{where} report"))
    spec.labels = _labels(spec, data.get("report"), f"{where} report labels")
    for p in profiles.values():
        _check_profile_refs(spec, p)
    for step in spec.analysis:
        unknown = [p for p in step["profiles"] or [] if p not in profiles]
        if unknown:
            raise CnnlabError(f"{where} analysis step {step['name']!r}: no profile {unknown[0]!r}; its profiles: "
                              f"{', '.join(profiles) or 'none'}")
    return spec


def _labels(spec: Spec, report: Any, where: str) -> Dict[str, str]:
    """report.labels, checked: each key a variant or group of the spec, each value a short text (a legend entry)."""
    given = _mapping(_mapping(report, where).get("labels"), where)
    names = [g.name for g in spec.groups if g.name] + [v for g in spec.groups for v in g.variants]
    out = {}
    for k, v in given.items():
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CnnlabError(f"{where}: {k!r} is not a variant or group of the spec{hint}; its variants and groups: "
                              f"{', '.join(names) or 'none'}")
        if not isinstance(v, str) or not v.strip() or len(v) > LABEL_CHARS:
            raise CnnlabError(f"{where} {k}: give a text of 1 to {LABEL_CHARS} characters (it names the run in "
                              f"legends and answers), got {v!r}")
        out[str(k)] = v.strip()
    return out


def _check_profile_refs(spec: Spec, p: Profile) -> None:
    where = f"{spec.where()} profile {p.name!r}"
    group_names = [g.name for g in spec.groups if g.name]
    variant_names = [v for g in spec.groups for v in g.variants]
    if p.seeds and any(SEED_KEY in g.grid or SEED_KEY in g.zip for g in spec.groups):
        raise CnnlabError(f"{where} seeds: the spec already varies {SEED_KEY}; give its values in the profile's axes")
    for k in p.axes:
        if not any(k in g.grid or k in g.zip for g in spec.groups):
            raise CnnlabError(f"{where} axes: {k!r} is not an axis of the spec (grid or zip); its axes: "
                              + (", ".join(sorted({a for g in spec.groups for a in [*g.grid, *g.zip]})) or "none"))
    for n in p.groups or []:
        if n not in group_names:
            raise CnnlabError(f"{where} groups: no group {n!r}; the spec's groups: {', '.join(group_names) or 'none'}")
    for n in p.variants or []:
        if n not in variant_names:
            raise CnnlabError(f"{where} variants: no variant {n!r}; the spec's variants: "
                              f"{', '.join(variant_names) or 'none'}")


def load_spec(path) -> Spec:
    path = Path(path)
    data = read_yaml(path, "experiment spec", " (the recipes are in experiments/*.yaml)")
    return parse_spec(data, path)


# ----------------------------------------------------------------------------------------------------------------------
# Expansion into runs.

def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(format_value(x) for x in v)
    if isinstance(v, dict):
        return "+".join(f"{k}={format_value(x)}" for k, x in v.items())
    return str(v)


def short_names(keys: List[str]) -> Dict[str, str]:
    """optim.lr -> lr, unless two keys end alike (then the whole dotted key)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _points(g: Group, axes_override: Dict[str, list]) -> List[List[Tuple[str, Any]]]:
    """Every (zip row x grid point) of a group as a list of (key, value)."""
    zip_axes = {k: axes_override.get(k, v) for k, v in g.zip.items()}
    lengths = {len(v) for v in zip_axes.values()}
    if len(lengths) > 1:
        raise CnnlabError(f"zipped axes {', '.join(zip_axes)} have unequal lengths after the profile's axes")
    rows = [list(zip(zip_axes, vals)) for vals in zip(*zip_axes.values())] if zip_axes else [[]]
    grid_axes = {k: axes_override.get(k, v) for k, v in g.grid.items()}
    grid = [list(zip(grid_axes, vals)) for vals in itertools.product(*grid_axes.values())]
    return [r + p for r in rows for p in grid]


def identity_hash(cfg: RunConfig) -> str:
    """A run's identity: its flattened config without the machine keys. The augmentation enters as the classic keys
    where they express it (augment_spelling.view), so runs recorded before `augment.pipeline` keep their hash."""
    flat = flatten_config(cfg.to_dict())
    for k in MACHINE_KEYS:
        flat.pop(k, None)
    for k, neutral in NEUTRAL_KEYS.items():
        if flat.get(k) == neutral:
            flat.pop(k)
    text = yaml.safe_dump(flat, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def flatten_config(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A config dict -> {dotted key: value}; model.options stays one value, and augment.pipeline shows as the
    classic keys (augment.crop, augment.flip, ...) wherever they can say it."""
    out = {}
    for k, v in tree.items():
        key = prefix + k
        if key == "augment" and isinstance(v, dict) and isinstance(v.get("pipeline"), list):
            v = {**{n: x for n, x in v.items() if n != "pipeline"}, **augment_view(v["pipeline"])}
        if isinstance(v, dict) and key != "model.options":
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = v
    return out


# The most runs one spec and profile may expand to. Each run is a training (minutes at least) and building its
# config takes milliseconds, so a grid past this is a typo or a runaway product of axes, not a plan: 100,000 one-minute
# runs are ten weeks of one machine, and a million-run grid took hours before `sweep --list` printed anything.
MAX_RUNS = 100_000


def _plan(spec: Spec, profile: Optional[str]):
    """(profile, groups, short axis names) of `spec` under `profile`: what the expansion iterates over."""
    prof = spec.profile(profile)
    groups = [g for g in spec.groups if prof is None or prof.groups is None or g.name in prof.groups]
    if prof is not None and prof.seeds:  # repeats: train.seed joins every group's grid, last, so names end seed=N
        groups = [replace(g, grid={**g.grid, SEED_KEY: prof.seeds}) for g in groups]
    axis_keys = list(dict.fromkeys(k for g in groups for k in [*g.zip, *g.grid]))
    return prof, groups, short_names(axis_keys)


def _variants_of(g: Group, prof: Optional[Profile]) -> Dict[str, Dict[str, Any]]:
    return {n: v for n, v in g.variants.items() if prof is None or prof.variants is None or n in prof.variants}


def count_runs(spec: Spec, profile: Optional[str] = None) -> int:
    """How many runs `expand` makes, from the axis lengths alone (variants x zip rows x grid points, summed over the
    groups; a profile's seeds are a grid axis), without building any of them."""
    prof, groups, _ = _plan(spec, profile)
    axes = prof.axes if prof else {}
    total = 0
    for g in groups:
        first_zip = next(iter(g.zip), None)  # zipped axes have one length (checked by _points)
        rows = len(axes.get(first_zip, g.zip[first_zip])) if first_zip else 1
        points = rows * math.prod(len(axes.get(k, v)) for k, v in g.grid.items())
        total += max(len(_variants_of(g, prof)), 1) * points
    return total


def _combinations(spec: Spec, profile: Optional[str]):
    """Every run as (group, variant name, variant overrides, axis point, run name), cheap: no config is built.
    Refuses a plan past MAX_RUNS before producing any, and two runs that would share a name."""
    n = count_runs(spec, profile)
    if n > MAX_RUNS:
        raise CnnlabError(f"{spec.where()}{f' profile {profile!r}' if profile else ''} expands to {n:,} runs, more "
                          f"than the {MAX_RUNS:,} a sweep may hold; shorten its axes or split it into profiles")
    prof, groups, short = _plan(spec, profile)
    out, seen = [], set()
    for g in groups:
        for (vname, vset), point in itertools.product(_variants_of(g, prof).items() or [(None, {})],
                                                      _points(g, prof.axes if prof else {})):
            name = _run_name(spec, g, vname, point, short)
            if name in seen:
                raise CnnlabError(f"{spec.where()}: two runs are both named {name!r} (repeated axis values, or "
                                  "values that print alike); make the axis values distinct")
            seen.add(name)
            out.append((g, vname, vset, point, name))
    return out


def run_names(spec: Spec, profile: Optional[str] = None) -> List[str]:
    """The names of the runs `expand` makes, in its order, in a fraction of its time (`sweep --list` prints the
    count and aligns its columns with them before the first run is built)."""
    return [c[-1] for c in _combinations(spec, profile)]


def iter_runs(spec: Spec, profile: Optional[str] = None, overrides: Optional[List[str]] = None,
              out: str = "runs", analysis_dirs: Sequence[Path] = ()) -> Iterator[Run]:
    """The runs of `expand`, one at a time (each takes milliseconds to build and hash: a long list streams). The
    plan's size, its names and the overrides are checked now, each run's config as it is built. `overrides`
    (key=value, from the command line) apply to every run, above everything but what an analysis step feeds
    (fed_settings: read from the sweep's analysis folder, else from `analysis_dirs`)."""
    combos = _combinations(spec, profile)
    prof = spec.profile(profile)
    cli = {}
    for text in overrides or []:
        k, v = parse_override(text)
        cli[check_key(k, "command-line override")] = v
    sweep_dir = sweep_folder(out, spec, prof)
    fed = fed_settings(spec, prof, [sweep_dir / "analysis", *analysis_dirs])
    names = {c[-1] for c in combos}
    for step in feeding_steps(spec, prof):
        unknown = [n for n in step["feeds"] if n not in names]
        if unknown:
            raise CnnlabError(f"{spec.where()} analysis step {step['name']!r} feeds {unknown[0]!r}, which is not a run "
                              f"of profile {prof.name if prof else 'default'!r}; runs: {', '.join(sorted(names))}")
    return (_make_run(spec, prof, g, vname, vset, point, name, cli, sweep_dir, fed)
            for g, vname, vset, point, name in combos)


def expand(spec: Spec, profile: Optional[str] = None, overrides: Optional[List[str]] = None,
           out: str = "runs", analysis_dirs: Sequence[Path] = ()) -> List[Run]:
    """All runs of `spec` under `profile` (iter_runs), each with a validated config whose folder is
    out/<spec>/<profile>/<run>. At most MAX_RUNS."""
    return list(iter_runs(spec, profile, overrides, out, analysis_dirs))


def sweep_folder(out, spec: Spec, prof: Optional[Profile]) -> Path:
    return Path(out) / spec.name / (prof.name if prof else "default")


def folder_identity(path: Path) -> Optional[str]:
    """The identity hash of the run a folder holds: None for no run (no config.yaml), "" for a damaged config."""
    if not (path / "config.yaml").exists():
        return None
    try:
        return identity_hash(config_from_dict(RunFolder(path).read_config()))
    except CnnlabError:
        return ""


def run_folder(run: Run) -> Path:
    """Where a run lives: out/<spec>/<profile>/<name>, or <name>@<identity> when <name> already holds a run of
    another config (the spec changed, or another sweep of the spec with other key=value overrides ran first).
    Two identities never share a folder: the other run's files, and the store record that points at them, stay
    as they were instead of being started over."""
    base = Path(run.config.out)
    name, identity = split_key(run.key)
    planned = base / name
    if folder_identity(planned) in (None, identity):
        return planned
    return base / f"{name}@{identity}"


def own_run_folder(run: Run) -> RunFolder:
    """run_folder, decided while holding the folder (RunFolder.own): two sweep processes that start the same run
    name under different configs at the same moment cannot both pick <name>. A planned folder that another process
    owns is training another identity (the store hands each identity to one worker), so this run goes beside it,
    as it does beside a link. What cannot be done here (an unwritable out/) the trainer refuses in one line."""
    base = Path(run.config.out)
    name, identity = split_key(run.key)
    planned, beside = base / name, base / f"{name}@{identity}"
    folder = RunFolder(planned)
    try:
        if not planned.is_symlink():
            planned.mkdir(parents=True, exist_ok=True)
            folder.own()
            if folder_identity(planned) in (None, identity):
                return folder
            folder.release()
    except (CnnlabError, OSError):
        folder.release()
    folder = RunFolder(beside)
    with contextlib.suppress(CnnlabError, OSError):
        beside.mkdir(parents=True, exist_ok=True)
        folder.own()
    return folder


def feeding_steps(spec: Spec, prof: Optional[Profile]) -> List[Dict[str, Any]]:
    """The analysis steps of this profile that feed settings to runs."""
    return [s for s in spec.analysis if s.get("feeds") and (s["profiles"] is None or prof is not None
                                                            and prof.name in s["profiles"])]


SUGGESTED = re.compile(r"suggested ((?:[A-Za-z_][\w.]*=\S+ ?)+)")


def fed_settings(spec: Spec, prof: Optional[Profile], dirs: Sequence[Path]) -> Dict[str, Dict[str, Any]]:
    """Run name -> the settings its feeding steps suggested: the `suggested key=value ...` of the result lines each
    step wrote (<dir>/<step>/*.json, the first dir that has them). Keys are checked like any config key."""
    fed: Dict[str, Dict[str, Any]] = {}
    for step in feeding_steps(spec, prof):
        found = next((sorted((d / step["name"]).glob("*.json")) for d in dirs if (d / step["name"]).is_dir()
                      and any((d / step["name"]).glob("*.json"))), [])
        settings: Dict[str, Any] = {}
        for f in found:
            try:
                lines = json.loads(f.read_text()).get("lines") or []
            except (OSError, ValueError, AttributeError):
                raise CnnlabError(f"{f}: unreadable result of analysis step {step['name']!r}; delete its folder and "
                                  "run the sweep with --analysis again") from None
            for m in SUGGESTED.finditer(" ".join(str(line) for line in lines)):
                for pair in m.group(1).split():
                    k, v = parse_override(pair)
                    settings[check_key(k, f"{spec.where()} analysis step {step['name']!r} suggestion")] = v
        for run in step["feeds"]:
            fed.setdefault(run, {}).update(settings)
    return fed


def _run_name(spec, g, vname, point, short) -> str:
    parts = [p for p in (g.name if len(spec.groups) > 1 else None, vname) if p]
    parts += [f"{short[k]}={format_value(v)}" for k, v in point]
    return _SAFE.sub("-", "_".join(parts)) or "run"


def _make_run(spec, prof, g, vname, vset, point, name, cli, sweep_dir, fed=None) -> Run:
    tree = spec.base
    # Layer by layer, so that a whole `model.options` mapping and a dotted `model.options.x` merge key by key.
    for layer in (g.set, vset, prof.set if prof else {}, dict(point), cli, (fed or {}).get(name, {}),
                  {"name": name, "out": str(sweep_dir)}):
        tree = merge(tree, unflatten(layer))
    try:
        cfg = config_from_dict(tree)
    except CnnlabError as e:
        raise CnnlabError(f"{spec.where()}, run {name!r}: {e}") from None
    varied: Dict[str, Any] = {}
    if g.name and len(spec.groups) > 1:
        varied["group"] = g.name
    if vname:
        varied["variant"] = vname
    varied.update({k: v for k, v in point})
    return Run(name, g.name, vname, varied, cfg, f"{name}@{identity_hash(cfg)}")


def split_key(key: str) -> Tuple[str, str]:
    """A run's store key (`name@identity`, as `Run.key` is built) -> (name, identity hash)."""
    name, _, identity = key.rpartition("@")
    return name, identity
