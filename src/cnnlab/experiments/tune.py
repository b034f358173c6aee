"""Hyperparameter tuning: `cnnlab tune SPEC` searches the space a spec's `tune:` section declares, with Optuna.

    tune:
      metric: val_acc                 # or val_loss; a trial's value is its best epoch's
      sampler: tpe                    # tpe (default), random, grid (categorical spaces), cmaes (pip install cmaes)
      pruner: median                  # median (default), hyperband, successive_halving, none
      trials: 20                      # default of --trials
      seed: 0                         # the sampler's seed
      space:
        optim.lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
        optim.name: {type: categorical, choices: [sgd, adam]}
        optim.momentum: {type: float, low: 0.5, high: 0.99, when: {optim.name: sgd}}   # conditional
        batch.size: {type: int, low: 32, high: 256, log: true}

Every trial is a run: the spec's base config, the profile's `set` (quick/full budgets, as for sweeps), command-line
overrides, then the sampled values, trained into OUT/<spec>/tune-<profile>/trial-NNN/. The trainer reports the
validation metric every epoch (`trial.report`), and Optuna's pruner stops unpromising trials early through the
trainer's epoch hook, so a pruned run still leaves a complete folder saying when and why it stopped.

Optuna does the searching, pruning, parameter importances and trial bookkeeping; cnnlab adds what it lacks here:
the space as data in the spec (checked against the config schema, so a typo is an error before any trial runs),
conditional parameters by a `when:` rule, a trial count shared by several worker processes (Optuna's
MaxTrialsCallback counting complete and pruned trials), and recovery after a kill on a journal file (Optuna's
heartbeat covers only RDB storages): a RUNNING trial whose process on this machine is dead is failed and its
parameters are enqueued again, so `cnnlab tune` run again continues the study. A trial lost on another machine of
a shared PostgreSQL study is recovered the same way when `cnnlab tune` is run again on that machine; from any other
machine it stays RUNNING (cnnlab does not yet turn on Optuna's RDB heartbeat for tuning).
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import optuna
from optuna.trial import TrialState
import torch

from cnnlab.errors import CnnlabError
from cnnlab.experiments.spec import Spec, load_spec, unflatten
from cnnlab.training.config import check_key
from cnnlab.experiments.store import DEFAULT_STORE, machine_id, open_storage, owner_alive, process_start
from cnnlab.training.config import config_from_dict, merge, parse_override
from cnnlab.training.metrics import LOWER_IS_BETTER, WALL_TIME
from cnnlab.training.runfolder import read_metrics_csv
from cnnlab.training.trainer import Trainer, show_metric

TUNE_KEYS = ("metric", "sampler", "pruner", "trials", "seed", "space")
PARAM_KEYS = ("type", "low", "high", "log", "step", "choices", "when")
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "successive_halving", "none")
# The per-epoch metrics a trial reports to the pruner (metrics.csv's), in the direction the catalogue gives them.
METRICS = {m: "minimize" if m in LOWER_IS_BETTER else "maximize" for m in ("val_acc", "val_loss")}
ENDED = (TrialState.COMPLETE, TrialState.PRUNED)
logger = logging.getLogger(__name__)
# A trial's own training lines (epoch by epoch) are too many beside one line per trial: DEBUG, shown on request
# (logging.getLogger("cnnlab.experiments.tune.trial").setLevel(logging.DEBUG) and a handler that shows DEBUG).
trial_logger = logging.getLogger(__name__ + ".trial")


@dataclass
class Param:
    key: str
    type: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: List[Any] = field(default_factory=list)
    when: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TuneSpec:
    metric: str = "val_acc"
    sampler: str = "tpe"
    pruner: str = "median"
    trials: int = 20
    seed: int = 0
    space: List[Param] = field(default_factory=list)

    @property
    def direction(self) -> str:
        return METRICS[self.metric]


# -- the spec's tune section ----------------------------------------------------------------------------------------
def _choice(value, allowed, what: str, where: str):
    if value not in allowed:
        raise CnnlabError(f"{where}: {what} {value!r} is not one of {', '.join(map(str, allowed))}")
    return value


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_in(value: Any, low: int, high: int, what: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CnnlabError(f"{where}: {what} must be an integer from {low} to {high:,}, got {value!r}")
    return value


def _check_range(p: Param, w: str) -> None:
    """What a parameter's type asks for: choices of values Optuna can store, or finite low < high with a step that
    fits."""
    if p.type == "categorical":
        if not p.choices:
            raise CnnlabError(f"{w}: a categorical parameter needs choices: [...]")
        odd = [c for c in p.choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if odd:  # Optuna stores choices as these only
            raise CnnlabError(f"{w}: each choice must be a number, text, true/false or null, got {odd[0]!r}")
    else:
        whole = p.type == "int"
        ok = all(_number(v) and (not whole or isinstance(v, int)) for v in (p.low, p.high))
        if not ok or not p.low < p.high or (p.log and p.low <= 0):
            raise CnnlabError(f"{w}: needs finite {'integers' if whole else 'numbers'} low < high (low > 0 with log: "
                              f"true), got low={p.low!r}, high={p.high!r}")
        if p.step is not None:
            if not _number(p.step) or p.step <= 0 or (whole and not isinstance(p.step, int)):
                raise CnnlabError(f"{w}: step must be a positive {'integer' if whole else 'number'}, got {p.step!r}")
            if p.log:
                raise CnnlabError(f"{w}: step and log: true cannot go together (a log scale has no fixed step); "
                                  "drop one")


def _param(key: str, data: Any, where: str) -> Param:
    """One parameter of the space, every field checked here (a string where a list belongs would be split into
    letters, `log: "no"` would read as true): a mistake is an error when the spec is read, not mid-study."""
    w = f"{where} space {key!r}"
    check_key(key, w)
    if not isinstance(data, dict):
        raise CnnlabError(f"{w} must be a mapping like {{type: float, low: 0.001, high: 0.1, log: true}}")
    unknown = [k for k in data if k not in PARAM_KEYS]
    if unknown:
        raise CnnlabError(f"{w}: unknown field {unknown[0]!r}; fields: {', '.join(PARAM_KEYS)}")
    log, choices = data.get("log", False), data.get("choices") if data.get("choices") is not None else []
    when = data.get("when") if data.get("when") is not None else {}
    if not isinstance(log, bool):
        raise CnnlabError(f"{w}: log must be true or false, got {log!r}")
    if not isinstance(choices, list):
        raise CnnlabError(f"{w}: choices must be a list, e.g. choices: [sgd, adam], got {choices!r}")
    if not isinstance(when, dict):
        raise CnnlabError(f"{w}: when must map config keys to values, e.g. when: {{optim.name: sgd}}, got {when!r}")
    p = Param(key, _choice(data.get("type"), ("float", "int", "categorical"), "type", w), data.get("low"),
              data.get("high"), log, data.get("step"), choices, when)
    _check_range(p, w)
    for k in p.when:
        check_key(k, f"{w} when")
    return p


# The sampler's seed plus a worker's slot (below) must stay within numpy's seed range, 0..2**32 - 1.
TUNE_SEED_MAX = 2**31 - 1


def parse_tune(data: Any, where: str) -> TuneSpec:
    if not isinstance(data, dict):
        raise CnnlabError(f"{where} has no tune: section (a mapping with space: {{key: {{type: ...}}}}); see "
                          "`cnnlab tune --help`")
    unknown = [k for k in data if k not in TUNE_KEYS]
    if unknown:
        raise CnnlabError(f"{where} tune: unknown key {unknown[0]!r}; keys: {', '.join(TUNE_KEYS)}")
    w = f"{where} tune"
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise CnnlabError(f"{w}: space must map config keys to parameters, e.g. optim.lr: {{type: float, ...}}")
    t = TuneSpec(_choice(data.get("metric", "val_acc"), tuple(METRICS), "metric", w),
                 _choice(data.get("sampler", "tpe"), SAMPLERS, "sampler", w),
                 _choice(data.get("pruner", "median"), PRUNERS, "pruner", w),
                 _int_in(data.get("trials", 20), 1, 100000, "trials", w),
                 _int_in(data.get("seed", 0), 0, TUNE_SEED_MAX, "seed", w),
                 [_param(str(k), v, w) for k, v in space.items()])
    t.space = _dependencies_first(t.space, w)
    if t.sampler == "grid" and any(p.type != "categorical" for p in t.space):
        raise CnnlabError(f"{w}: the grid sampler needs every parameter categorical (it tries each combination)")
    return t


def _dependencies_first(space: List[Param], where: str) -> List[Param]:
    """The space in an order where each `when` names parameters already sampled (whatever order the YAML has)."""
    by_key = {p.key: p for p in space}
    for p in space:
        missing = [k for k in p.when if k not in by_key]
        if missing:
            raise CnnlabError(f"{where} space {p.key!r}: when: names {missing[0]!r}, which is not in the space")
    ordered: List[Param] = []
    while len(ordered) < len(space):
        ready = [p for p in space if p not in ordered and all(by_key[k] in ordered for k in p.when)]
        if not ready:
            raise CnnlabError(f"{where} space: the when: conditions form a loop")
        ordered += ready
    return ordered


# -- Optuna's parts -------------------------------------------------------------------------------------------------
def make_sampler(t: TuneSpec, worker: int = 0):
    """Optuna's sampler, seeded with the spec's seed plus the worker's slot (claim_worker_slot): the same seed in
    two workers would propose the same trials."""
    seed = t.seed + worker
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if t.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: p.choices for p in t.space}, seed=seed)
    if t.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401  (Optuna's CMA-ES sampler imports it lazily and fails mid-study otherwise)
        except ImportError:
            raise CnnlabError("sampler cmaes needs the cmaes package: pip install 'cnnlab[tune]'") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


# Every process that samples a study holds a slot, a number no other live worker of that study holds: its sampler's
# seed is the spec's seed plus the slot. `--workers N` numbers its own children, but two `cnnlab tune` commands on
# one shared store (several machines, or two terminals) know nothing of each other, and both would seed the sampler
# alike and propose the same trials. A slot is claimed in the store itself, by creating an empty study named
# `<study>#worker-<slot>` (creating a study that exists fails, atomically, in every Optuna storage), and freed when
# the worker ends. A lone worker gets slot 0, so a single-worker study samples as its seed says, run after run; a
# killed worker's slot stays taken, and the next worker takes the next one.
MAX_WORKER_SLOTS = 1024


def claim_worker_slot(storage, study: str) -> int:
    for slot in range(MAX_WORKER_SLOTS):
        try:
            storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], f"{study}#worker-{slot}")
            return slot
        except optuna.exceptions.DuplicatedStudyError:
            continue
    raise CnnlabError(f"all {MAX_WORKER_SLOTS} worker slots of study {study!r} are taken (killed workers keep "
                      "theirs); use a new --store, or delete the studies named '...#worker-N' from this one")


def release_worker_slot(storage, study: str, slot: int) -> None:
    try:
        storage.delete_study(storage.get_study_id_from_name(f"{study}#worker-{slot}"))
    except KeyError:
        pass  # already gone


def make_pruner(t: TuneSpec, epochs: int):
    if t.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs))
    if t.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def suggest(trial, space: List[Param]) -> Dict[str, Any]:
    """The trial's values, define-by-run: a parameter whose `when` does not hold is not sampled at all."""
    values: Dict[str, Any] = {}
    for p in space:
        if any(values.get(k) != v for k, v in p.when.items()):
            continue
        if p.type == "categorical":
            values[p.key] = trial.suggest_categorical(p.key, p.choices)
        elif p.type == "int":
            values[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
    return values


# -- the study ------------------------------------------------------------------------------------------------------
@dataclass
class TuneOptions:
    spec_path: str
    profile: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    out: str = "runs"
    store: Optional[str] = None
    trials: Optional[int] = None
    timeout: Optional[float] = None
    workers: int = 1

    def store_url(self) -> str:
        return self.store or str(Path(self.out) / DEFAULT_STORE)


@dataclass
class Plan:
    spec: Spec
    tune: TuneSpec
    base: Dict[str, Any]
    folder: Path
    study: str
    trials: int


def make_plan(opts: TuneOptions) -> Plan:
    spec = load_spec(opts.spec_path)
    t = parse_tune(spec.tune, spec.where())
    prof = spec.profile(opts.profile)
    cli = {}
    for text in opts.overrides:
        k, v = parse_override(text)
        cli[check_key(k, "command-line override")] = v
    base = spec.base
    for layer in (prof.set if prof else {}, cli):
        base = merge(base, unflatten(layer))
    folder = Path(opts.out) / spec.name / f"tune-{prof.name if prof else 'default'}"
    trials = opts.trials if opts.trials is not None else t.trials
    if not 1 <= trials <= 100000:
        raise CnnlabError(f"--trials must be between 1 and 100000, got {trials}")
    plan = Plan(spec, t, base, folder, f"tune:{spec.name}/{prof.name if prof else 'default'}", trials)
    trial_config(plan, 0, {p.key: p.choices[0] if p.choices else p.low for p in t.space})  # fails now, not later
    return plan


def trial_config(plan: Plan, number: int, values: Dict[str, Any]):
    tree = merge(plan.base, unflatten({**values, "name": f"trial-{number:03d}", "out": str(plan.folder)}))
    try:
        return config_from_dict(tree)
    except CnnlabError as e:
        raise CnnlabError(f"{plan.spec.where()}, trial {number} ({values}): {e}") from None


def open_study(plan: Plan, opts: TuneOptions, worker: int = 0, storage=None):
    """(study, storage): the plan's study on the store (or on `storage`, opened already), created on first use;
    its sampler seeded for worker slot `worker`."""
    storage = storage if storage is not None else open_storage(opts.store_url())
    epochs = config_from_dict(plan.base).train.epochs
    study = optuna.create_study(storage=storage, study_name=plan.study, direction=plan.tune.direction,
                                sampler=make_sampler(plan.tune, worker), pruner=make_pruner(plan.tune, epochs),
                                load_if_exists=True)
    if study.direction.name.lower() != plan.tune.direction:  # Optuna keeps a loaded study's stored direction
        raise CnnlabError(f"the study {plan.study!r} in {opts.store_url()} was made to {study.direction.name.lower()}"
                          f" its metric, but the spec now asks to {plan.tune.direction} {plan.tune.metric}; use "
                          "another --store or --out for the new study")
    return study, storage


def recover_lost(study: optuna.Study, storage) -> List[int]:
    """Fail RUNNING trials whose process on this machine is dead (a killed `cnnlab tune`) and enqueue their
    parameters again, so the study continues with them."""
    lost = []
    here = machine_id()
    sid = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        a = t.user_attrs
        if a.get("machine") == here and a.get("pid") and not owner_alive(a):
            tid = storage.get_trial_id_from_study_id_trial_number(sid, t.number)
            storage.set_trial_user_attr(tid, "status", "lost")
            storage.set_trial_state_values(tid, TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            lost.append(t.number)
    return lost


def ended(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=ENDED))


# -- one trial ------------------------------------------------------------------------------------------------------
def objective(plan: Plan, log: Callable[[str], None]):
    metric, sign = plan.tune.metric, 1 if plan.tune.direction == "maximize" else -1

    def run(trial: optuna.Trial) -> float:
        values = suggest(trial, plan.tune.space)
        cfg = trial_config(plan, trial.number, values)
        for k, v in {"machine": machine_id(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                     "run": str(Path(cfg.out) / cfg.name)}.items():
            trial.set_user_attr(k, v)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

        def report(trainer, row) -> Optional[str]:
            if not isinstance(row.get(metric), (int, float)) or not math.isfinite(row[metric]):
                return None
            trial.report(row[metric], row["epoch"])
            if trial.should_prune():
                trial.set_user_attr("pruned_at", row["epoch"])
                return f"pruned by the {plan.tune.pruner} pruner at epoch {row['epoch']}"
            return None
        summary = Trainer(cfg, overwrite=True, epoch_hook=report, log=trial_logger.debug).fit()
        values_seen = [r[metric] for r in _history(summary) if isinstance(r.get(metric), (int, float))]
        trial.set_user_attr("status", summary["status"])
        trial.set_user_attr("epochs", summary["epochs_done"])
        if summary["status"] == "diverged" or not values_seen:
            log(f"trial {trial.number}: {shown} -> {summary['status']}")
            raise optuna.TrialPruned()  # no value to compare: out of the search, but not an error of the study
        best = max(values_seen, key=lambda v: sign * v)
        if "pruned_at" in trial.user_attrs:
            log(f"trial {trial.number}: {shown} -> pruned at epoch {trial.user_attrs['pruned_at']} "
                f"({metric} {show_metric(metric, best)})")
            raise optuna.TrialPruned()
        log(f"trial {trial.number}: {shown} -> {metric} {show_metric(metric, best)} ({summary[WALL_TIME]:.1f} s)")
        return best
    return run


def _history(summary: dict) -> List[dict]:
    return read_metrics_csv(Path(summary["run"]) / "metrics.csv")


# -- workers --------------------------------------------------------------------------------------------------------
def worker(opts: TuneOptions, log: Optional[Callable[[str], None]] = None) -> None:
    """Run trials until the study has `trials` complete or pruned ones (across every worker) or time is up, sampling
    with the seed of the worker slot it claims. One line per trial goes to `log`, or to this module's logger."""
    log = log or logger.info
    plan = make_plan(opts)
    storage = open_storage(opts.store_url())
    slot = claim_worker_slot(storage, plan.study)
    try:
        study, _ = open_study(plan, opts, slot, storage)
        if ended(study) >= plan.trials:
            return
        stop = optuna.study.MaxTrialsCallback(plan.trials, states=ENDED)
        # no catch=: an error (missing data, a bad value) would fail every trial alike, so it ends the command at once
        study.optimize(objective(plan, log), timeout=opts.timeout, callbacks=[stop], gc_after_trial=True)
    finally:
        release_worker_slot(storage, plan.study, slot)


def _child(opts: TuneOptions, index: int, threads: int) -> None:
    torch.set_num_threads(max(1, threads))
    try:
        # a worker process is started bare (spawn): nothing configured its logging, so it prints, as a command does
        worker(opts, log=lambda s: print(f"[w{index}] {s}", flush=True))
    except CnnlabError as e:
        print(f"[w{index}] cnnlab: error: {e}", flush=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        raise SystemExit(130)


def tune(opts: TuneOptions, log: Optional[Callable[[str], None]] = None) -> optuna.Study:
    """The whole study, in this process or in `opts.workers` processes; returns it (reloaded) when done. Progress
    lines go to `log`, or to this module's logger (the `cnnlab` command shows them)."""
    log = log or logger.info
    if not 1 <= opts.workers <= 64:
        raise CnnlabError(f"--workers must be between 1 and 64, got {opts.workers}")
    plan = make_plan(opts)
    study, storage = open_study(plan, opts)
    lost = recover_lost(study, storage)
    log(f"tune {plan.study}: {ended(study)} of {plan.trials} trials done"
        + (f", {len(lost)} lost trial(s) of a killed run queued again" if lost else "")
        + f"; {plan.tune.sampler} sampler, {plan.tune.pruner} pruner on {plan.tune.metric}; trial folders under "
          f"{plan.folder}; store {opts.store_url()}")
    if opts.workers == 1:
        worker(opts, log)
    else:  # spawn, not fork: a forked child would inherit torch's thread pools and the store's open files
        threads = max(1, (os.cpu_count() or 1) // opts.workers)
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_child, args=(opts, i, threads)) for i in range(opts.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [f"w{i}" for i, p in enumerate(procs) if p.exitcode != 0]
        if bad:
            raise CnnlabError(f"tune worker(s) {', '.join(bad)} failed (their error is printed above); run the command "
                              "again to continue the study")
    study, _ = open_study(plan, opts)
    return study
