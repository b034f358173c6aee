"""Running a sweep: every run of a spec in its own folder, recorded in the results store, resumable.

`sweep(...)` expands the spec (spec.py), enqueues the runs that the store does not hold yet, and runs worker loops:
claim a run (store.py), train it (or resume its folder from last.pt), record the outcome, repeat. Re-running the same
command skips finished and diverged runs, resumes interrupted ones and retries runs that failed with an error in an
earlier invocation. `--workers N` starts N processes on this machine; more machines join by running the same command
against one database URL (`--store postgresql://...`), with run folders on each machine (the store keeps every run's
summary and metrics, so `cnnlab report` works from any of them).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing as mp
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

from cnnlab import arguments as A
from cnnlab.arguments import check_arguments
from cnnlab.errors import CnnlabError
from cnnlab.experiments.spec import (Run, Spec, expand, feeding_steps, folder_identity, identity_hash, iter_runs,
                                     load_spec, own_run_folder, run_folder, run_names, split_key, sweep_folder)
from cnnlab.experiments.store import DEFAULT_STORE, Claim, Record, ResultStore
from cnnlab.fileio import atomic_write_text
from cnnlab.training.checkpoint import find_checkpoint
from cnnlab.training.config import OVERRIDES
from cnnlab.training.inference import evaluate_run, load_run, predictions, write_predictions
from cnnlab.training.metrics import BEST_VAL_ACC
from cnnlab.training.runfolder import RunFolder, read_metrics_csv
from cnnlab.training.trainer import Trainer

logger = logging.getLogger(__name__)
DONE_STATES = ("finished", "diverged", "stopped")


# What each option accepts (checked when the options are made, so a mistake surfaces before any worker starts).
_SWEEP_OPTIONS = dict(
    spec_path=A.Accepts("a spec path (str or Path)", lambda v: os.fspath(A.path().check(v))),
    profile=A.text().or_none(),
    overrides=OVERRIDES,
    out=A.Accepts("a folder (str or Path)", lambda v: os.fspath(A.path().check(v))),
    store=A.text(what="a store URL or path").or_none(), workers=A.integer(1, 1024),
    # heartbeat and grace: only finite numbers here; their bounds are the store's (it says why a grace is too short)
    max_runs=A.integer(1, 10**7).or_none(), heartbeat=A.number(), grace=A.number())


@dataclass
class SweepOptions:
    """Everything a worker process needs to rebuild the sweep (it must pickle for multiprocessing)."""
    spec_path: str
    profile: Optional[str] = None
    overrides: List[str] = field(default_factory=list)   # key=value for every run
    out: str = "runs"                                     # sweep folders go to out/<spec>/<profile>/
    store: Optional[str] = None                           # None: out/cnnlab-store.journal
    workers: int = 1
    max_runs: Optional[int] = None                        # stop a worker after this many runs (tests, time slices)
    heartbeat: float = 30.0                               # seconds between heartbeats of a running run
    grace: float = 300.0                                  # seconds without heartbeat before a run counts as lost

    def __post_init__(self):
        check_arguments("SweepOptions", _SWEEP_OPTIONS, self.__dict__)

    def store_url(self) -> str:
        return self.store or str(Path(self.out) / DEFAULT_STORE)


@dataclass
class Plan:
    spec: Spec
    profile: Optional[str]
    runs: List[Run]
    sweep_dir: Path
    study: str                                            # the study's name in the store: <spec>/<profile>

    @property
    def keys(self) -> List[str]:
        return [r.key for r in self.runs]


def make_plan(opts: SweepOptions) -> Plan:
    spec = load_spec(opts.spec_path)
    prof = spec.profile(opts.profile)
    runs = expand(spec, opts.profile, opts.overrides, opts.out)
    return Plan(spec, prof.name if prof else None, runs, sweep_folder(opts.out, spec, prof),
                f"{spec.name}/{prof.name if prof else 'default'}")


# ----------------------------------------------------------------------------------------------------------------------
# One run.

def _logger(run: Run, worker: str, log: Callable[[str], None]) -> Callable[[str], None]:
    """Prefix every line with the worker and run, and keep a copy in the run folder's log.txt."""
    path = Path(run.config.out) / run.config.name / "log.txt"

    def write(line: str) -> None:
        log(f"[{worker} {run.name}] {line}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        except OSError:
            pass  # the log copy is a convenience; the run itself reports a folder it cannot write

    return write


def folder_state(run: Run) -> str:
    """What the run's folder (run.config.name, placed by run_folder) holds: new (nothing usable), resume (last.pt
    of this very config), stale (a damaged config in the folder named by this run's identity: started over)."""
    path = Path(run.config.out) / run.config.name
    found = folder_identity(path)
    if found is None:
        return "new"
    if found != split_key(run.key)[1]:
        return "stale"
    if find_checkpoint(path, "last") is not None:
        return "resume"
    return "new"


def train_run(run: Run, log: Callable[[str], None], threads: int = 0, folder=None) -> dict:
    """Train (or resume) one run into its folder; returns the trainer's summary.

    Resuming goes through Trainer(resume=True) with the planned config rather than `trainer.resume(dir)`, which
    reloads the folder's config.yaml: the two agree on everything that matters (the identity hash was checked), but
    the planned config carries this machine's data.root and device.
    """
    cfg = run.config
    if threads and not cfg.train.threads:
        cfg.train.threads = threads
    state = folder_state(run)
    if state == "stale":
        log("the run folder's config.yaml is damaged: starting the run over")
    path = folder if folder is not None else Path(cfg.out) / cfg.name  # the RunFolder own_run_folder holds
    trainer = Trainer(cfg, path, resume=state == "resume", overwrite=state != "resume", log=log)
    return trainer.fit()


def _predict(run: Run, split: str, log) -> None:
    path = Path(run.config.out) / run.config.name
    loaded = load_run(path, "best", run.config.data.root)
    ids, labels, _ = predictions(loaded, split)
    write_predictions(path / "predictions.csv", ids, labels, force=True)
    log(f"wrote {len(ids):,} {split} predictions to {path / 'predictions.csv'}")


def _evaluate(run: Run, splits: List[str], log) -> dict:
    """Loss and accuracy of the best checkpoint on each split, as <split>_loss / <split>_acc summary fields."""
    if not splits:
        return {}

    loaded = load_run(Path(run.config.out) / run.config.name, "best", run.config.data.root)
    out = {}
    for split in splits:
        res = evaluate_run(loaded, split)
        out[f"{split}_loss"], out[f"{split}_acc"] = res["loss"], res["acc"]
        log(f"best checkpoint on {split}: loss {res['loss']:.4f} acc {100 * res['acc']:.2f}%")
    return out


def execute(store: ResultStore, claim: Claim, run: Run, plan: Plan, log, threads: int = 0, folder=None) -> str:
    """Run one claimed run to its end and record it; returns its final state."""
    try:
        summary = train_run(run, log, threads, folder)
        metrics = read_metrics_csv(Path(run.config.out) / run.config.name / "metrics.csv")
        if summary["status"] in ("finished", "stopped"):
            summary = {**summary, **_evaluate(run, plan.spec.evaluate, log)}
            if plan.spec.predict:
                _predict(run, plan.spec.predict, log)
    except KeyboardInterrupt:
        store.fail(claim, "interrupted", "interrupted by the user")
        raise
    except Exception as e:  # noqa: BLE001 -- one broken run must not stop the sweep; it is recorded and retried
        text = str(e) if isinstance(e, CnnlabError) else traceback.format_exc()
        log(f"error: {text.strip().splitlines()[-1]}")
        store.fail(claim, "error", text)
        return "error"
    summary = {**summary, "varied": run.varied, "name": run.name}
    if not store.finish(claim, summary, metrics):
        log("note: the store had already given this run up as lost (no heartbeat); its result is in the folder")
    return summary["status"]


# ----------------------------------------------------------------------------------------------------------------------
# Workers.

def worker_loop(opts: SweepOptions, since: float, worker: str = "w0", threads: int = 0,
                log: Optional[Callable[[str], None]] = None) -> Dict[str, int]:
    """Claim and run runs until none is waiting; returns counts of outcomes. Progress lines go to `log`, or to this
    module's logger (the `cnnlab` command shows them)."""
    log = log or logger.info
    plan = make_plan(opts)
    by_key = {r.key: r for r in plan.runs}
    store = ResultStore(opts.store_url(), heartbeat=opts.heartbeat, grace=opts.grace)
    study = store.study_id(plan.study)
    counts: Dict[str, int] = {}
    done = 0
    while opts.max_runs is None or done < opts.max_runs:
        # Lost or interrupted runs (a dead worker's) are failed and enqueued again before every claim.
        if store.fail_lost(study) or done == 0:
            store.enqueue_missing(study, plan.keys, since)
        claim = store.claim(study, plan.keys, worker)
        if claim is None:
            break
        run = by_key[claim.key]
        folder = own_run_folder(run)
        if folder.path.name != run.config.name:
            log(f"[{worker} {run.name}] {Path(run.config.out) / run.config.name} is taken (a run of another config, "
                f"a live process or a link); this run goes to {folder.path}")
            run.config.name = folder.path.name
        rlog = _logger(run, worker, log)
        if claim.resumed:
            rlog("earlier attempt found: resuming its folder where possible")
        try:
            state = execute(store, claim, run, plan, rlog, threads, folder)
        finally:
            folder.release()
        counts[state] = counts.get(state, 0) + 1
        done += 1
    return counts


def _child(opts: SweepOptions, since: float, worker: str, threads: int) -> None:
    torch.set_num_threads(max(1, threads))
    try:
        # a worker process is started bare (spawn): nothing configured its logging, so it prints, as a command does
        worker_loop(opts, since, worker, threads, log=lambda s: print(s, flush=True))
    except CnnlabError as e:
        print(f"[{worker}] cnnlab: error: {e}", flush=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        raise SystemExit(130)


def sweep(opts: SweepOptions, log: Optional[Callable[[str], None]] = None) -> Dict[str, Record]:
    """Run the whole sweep (in this process, or in `opts.workers` processes); returns the store's records. Progress
    lines go to `log`, or to this module's logger."""
    log = log or logger.info
    if opts.workers < 1:
        raise CnnlabError(f"--workers must be >= 1, got {opts.workers}")
    plan = make_plan(opts)  # fails here, once, on a bad spec rather than in every worker
    store = ResultStore(opts.store_url(), heartbeat=opts.heartbeat, grace=opts.grace)
    study = store.study_id(plan.study)
    since = time.time()
    store.fail_lost(study)
    added = store.enqueue_missing(study, plan.keys, since)
    records = store.records(study)
    already = sum(records.get(k) is not None and records[k].state in DONE_STATES for k in plan.keys)
    log(f"sweep {plan.study}: {len(plan.runs)} runs ({already} done, {len(added)} newly queued), folders under "
        f"{plan.sweep_dir}, store {opts.store_url()}")
    threads = max(1, (os.cpu_count() or 1) // opts.workers)
    if opts.workers == 1:
        worker_loop(opts, since, "w0", 0, log)
    else:
        _spawn(opts, since, threads, log)
    records = store.records(study)
    _print_outcome(plan, records, log)
    return records


def _spawn(opts: SweepOptions, since: float, threads: int, log) -> None:
    # spawn, not fork: a forked child would inherit torch's thread pools and the store's open connections.
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(opts, since, f"w{i}", threads), name=f"cnnlab-sweep-w{i}")
             for i in range(opts.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:  # each child got the SIGINT too and records its run as interrupted; wait for that
            p.join(timeout=30)
        raise
    bad = [p.name for p in procs if p.exitcode not in (0, None)]
    if bad:
        log(f"note: worker(s) {', '.join(bad)} exited abnormally; re-run the command to resume their runs")


def _print_outcome(plan: Plan, records: Dict[str, Record], log) -> None:
    states: Dict[str, int] = {}
    for k in plan.keys:
        s = records[k].state if k in records else "pending"
        states[s] = states.get(s, 0) + 1
    log(f"sweep {plan.study}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for r in plan.runs:
        rec = records.get(r.key)
        if rec and rec.state == "error":
            log(f"  {r.name}: error: {(rec.error or '').strip().splitlines()[-1] if rec.error else '?'}")
    if states.get("running"):
        log(f"{states['running']} run(s) are still running in other workers (other machines, or a worker this "
            f"sweep does not know); `cnnlab sweep --list` shows their progress")
    if any(s not in (*DONE_STATES, "running") for s in states):
        log("re-run the same command to resume or retry the runs that are not done")


def status_rows(opts: SweepOptions) -> Tuple[List[str], Iterator[dict]]:
    """The planned runs' names, and one row per run with its state in the store (for `cnnlab sweep --list`), the
    rows yielded as each run is built so that a long plan starts printing at once. Everything but a later run's own
    config is checked before this returns (the first run is built here). Reads only."""
    spec = load_spec(opts.spec_path)
    prof = spec.profile(opts.profile)
    study = f"{spec.name}/{prof.name if prof else 'default'}"
    names = run_names(spec, opts.profile)
    runs = iter_runs(spec, opts.profile, opts.overrides, opts.out)
    first = next(runs, None)
    url = opts.store_url()
    records: Dict[str, Record] = {}
    if "://" in url or Path(url).exists():
        store = ResultStore(url)
        records = store.records(store.study_id(study, create=False))
    return names, _rows(records, itertools.chain([first] if first else [], runs))


def _rows(records: Dict[str, Record], runs: Iterator[Run]) -> Iterator[dict]:
    for r in runs:
        rec = records.pop(r.key, None)
        best = (rec.summary or {}).get(BEST_VAL_ACC) if rec else None
        yield {"run": r.name, "state": rec.state if rec else "pending", BEST_VAL_ACC: best,
               "folder": str(run_folder(r)), "planned": True}
    # Runs of the same spec and profile with other settings (a sweep started with key=value overrides): they ran,
    # so they are listed, marked as not part of this plan, rather than hidden behind "pending" rows.
    for rec in records.values():
        folder = (rec.summary or {}).get("run") or ""
        yield {"run": Path(folder).name if folder else rec.key, "state": rec.state,
               BEST_VAL_ACC: (rec.summary or {}).get(BEST_VAL_ACC), "folder": folder, "planned": False}


# ----------------------------------------------------------------------------------------------------------------------
# Analysis steps named by the spec.

def analysis_steps(plan: Plan) -> List[dict]:
    """The spec's analysis steps that belong to the plan's profile (steps naming no profiles belong to all)."""
    return [s for s in plan.spec.analysis if s["profiles"] is None or plan.profile in s["profiles"]]


@dataclass
class AnalysisCommand:
    """One analysis step ready to run: its `cnnlab` argument list and the config files that list names (written
    by run_analysis just before it runs, so that filling placeholders writes nothing)."""
    name: str
    argv: List[str]
    files: Dict[Path, str] = field(default_factory=dict)   # path -> YAML text
    # path -> the identity of the run whose config it holds: what the fingerprint reads, so that a key added to the
    # schema with a neutral default (which changes the YAML text, not what is computed) does not rerun the step
    identities: Dict[Path, str] = field(default_factory=dict)


def analysis_commands(plan: Plan, data_root: Optional[str] = None) -> List[AnalysisCommand]:
    """The spec's analysis steps as `cnnlab` argument lists, placeholders filled:
    {run:NAME} -> that run's folder, {config:NAME} -> a YAML file of that run's config, {best} or {best:GROUP} ->
    the folder of the finished run (of that group) with the highest best validation accuracy (best_run), {out} ->
    the step's output folder (<sweep>/analysis/<step>), {sweep} -> the sweep folder, {data_root} -> the data
    folder."""
    by_name = {r.name: r for r in plan.runs}
    cmds = []
    for step in analysis_steps(plan):
        cmd = AnalysisCommand(step["name"], [])
        out = plan.sweep_dir / "analysis" / step["name"]
        cmd.argv = [_fill(a, cmd, by_name, out, plan, data_root) for a in step["args"]]
        cmds.append(cmd)
    return cmds


def _fill(arg: str, cmd: AnalysisCommand, by_name: Dict[str, Run], out: Path, plan: Plan,
          data_root: Optional[str]) -> str:
    step = cmd.name

    def sub(m):
        kind, name = m.group(1), m.group(2)
        if kind in ("run", "config"):
            if name not in by_name:
                raise CnnlabError(f"{plan.spec.where()} analysis step {step!r}: no run {name!r} in profile "
                                  f"{plan.profile!r}; runs: {', '.join(by_name)}")
            run = by_name[name]
            if kind == "run":
                return str(run_folder(run))
            path = out / f"{name}.yaml"
            cmd.files[path] = run.config.to_yaml()
            cmd.identities[path] = identity_hash(run.config)
            return str(path)
        if kind == "best":
            return str(run_folder(best_run(plan, name, f"analysis step {step!r}")))
        if kind == "out":
            return str(out)
        if kind == "sweep":
            return str(plan.sweep_dir)
        if kind == "data_root":
            root = data_root or os.environ.get("CNNLAB_DATA")
            if not root:
                raise CnnlabError(f"analysis step {step!r} needs the data folder: pass --data-root")
            return root
        raise CnnlabError(f"{plan.spec.where()} analysis step {step!r}: unknown placeholder {m.group(0)!r}; "
                          "use {run:NAME}, {config:NAME}, {best}, {best:GROUP}, {out}, {sweep} or {data_root}")

    return re.sub(r"\{(\w+)(?::([\w.+=-]+))?\}", sub, arg)


def best_run(plan: Plan, group: Optional[str] = None, what: str = "analysis") -> Run:
    """The run of the plan (of spec group `group`) whose run folder holds a finished summary with the highest best
    validation accuracy: the run a recipe's insight figures are drawn for, decided after the sweep rather than
    guessed when the spec is written. Chosen on validation accuracy, never on the test split. Diverged runs and
    runs without a summary here (not run, or run on another machine) are not candidates."""
    groups = {r.group for r in plan.runs}
    if group is not None and group not in groups:
        raise CnnlabError(f"{plan.spec.where()} {what}: no group {group!r} in profile {plan.profile!r}; its groups: "
                          + (", ".join(sorted(g for g in groups if g)) or "none (write {best})"))
    scores = []
    for run in plan.runs:
        if group is not None and run.group != group:
            continue
        summary = RunFolder(run_folder(run)).read_summary() or {}
        acc = summary.get("best_val_acc")
        if summary.get("status") in ("finished", "stopped") and isinstance(acc, (int, float)):
            scores.append((acc, run))
    if not scores:
        raise CnnlabError(f"{plan.spec.where()} {what}: no finished run{f' in group {group!r}' if group else ''} "
                          "to pick the best of; run the sweep first")
    return max(scores, key=lambda t: t[0])[1]


STEP_DONE = ".step-done"  # in a step's output folder: the fingerprint of the command that last finished there


def _step_fingerprint(cmd: AnalysisCommand) -> str:
    """The command line and what every file it names holds (a {config:NAME} YAML's run identity, a run's checkpoint
    times): the same fingerprint means the step would compute the same thing again."""
    h = hashlib.sha1("\0".join(cmd.argv).encode())
    for a in cmd.argv:
        p = Path(a)
        if p in cmd.files:
            h.update(cmd.identities.get(p, cmd.files[p]).encode())
        elif p.is_file():
            h.update(p.read_bytes())
        elif p.is_dir():
            for ckpt in sorted(p.glob("*.pt")):
                h.update(f"{ckpt.name}:{ckpt.stat().st_mtime_ns}".encode())
    return h.hexdigest()


def run_feeding_steps(opts: SweepOptions, data_root: Optional[str] = None,
                      log: Optional[Callable[[str], None]] = None) -> Dict[str, int]:
    """The analysis steps that feed settings to runs (spec.fed_settings), run before the sweep plans its runs, so
    that those runs train with what the steps found; a later run_analysis skips them (same fingerprint)."""
    plan = make_plan(opts)
    prof = plan.spec.profile(plan.profile)
    names = [s["name"] for s in feeding_steps(plan.spec, prof)]
    return run_analysis(plan, data_root, log, only=names) if names else {}


def run_analysis(plan: Plan, data_root: Optional[str] = None, log: Optional[Callable[[str], None]] = None,
                 only: Optional[List[str]] = None) -> Dict[str, int]:
    """Run each analysis step as `python -m cnnlab ...`, the documented command line: a spec writes its steps as
    cnnlab commands, and a separate process keeps the experiments layer from importing the CLI and a crashing step
    from taking the sweep with it; a failing step is reported, the next one runs.
    A step that already finished with the same command and inputs is skipped (the steps are the expensive part of
    some recipes: a re-run sweep resumes them like its runs); delete its folder to run it again."""
    log = log or logger.info
    results = {}
    for cmd in analysis_commands(plan, data_root):
        if only is not None and cmd.name not in only:
            continue
        done, fingerprint = plan.sweep_dir / "analysis" / cmd.name / STEP_DONE, _step_fingerprint(cmd)
        if done.is_file() and done.read_text().strip() == fingerprint:
            log(f"analysis {cmd.name}: done before with the same command and inputs, skipped")
            results[cmd.name] = 0
            continue
        for path, text in cmd.files.items():
            atomic_write_text(path, text)
        log(f"analysis {cmd.name}: cnnlab {shlex.join(cmd.argv)}")
        rc = subprocess.call([sys.executable, "-m", "cnnlab", *cmd.argv])
        results[cmd.name] = rc
        if rc:
            log(f"analysis {cmd.name}: exit status {rc}")
        else:
            atomic_write_text(done, fingerprint + "\n")
    return results
