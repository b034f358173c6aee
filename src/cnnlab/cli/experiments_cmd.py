"""`cnnlab sweep`, `cnnlab report` and `cnnlab document`: wiring only; the work is in cnnlab.experiments."""

from __future__ import annotations

import argparse
import shlex
import sys

from cnnlab.cli.common import add_data_root, data_overrides

from cnnlab.errors import CnnlabError
from cnnlab.training.metrics import BEST_VAL_ACC


def _spec_args(p: argparse.ArgumentParser, unit: str, spec_help: str) -> None:
    """What `sweep` and `tune` share: the spec, overrides, profile, workers, store, output folder and data root."""
    p.add_argument("spec", help=spec_help)
    p.add_argument("overrides", nargs="*", metavar="key=value", help=f"config overrides applied to every {unit}")
    p.add_argument("--profile", help="the spec's profile: quick (minutes on a CPU, the default) or full")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--store", help="results store: a journal file path (default OUT/cnnlab-store.journal), "
                                   "sqlite:///file.db, or a database URL such as postgresql://user:pass@host/db "
                                   "(shared by several machines)")
    p.add_argument("--out", default="runs", help=f"parent folder of the {unit} folders (default runs)")
    add_data_root(p)


def register(sub) -> None:
    _add_sweep(sub)
    _add_tune(sub)
    _add_report(sub)
    _add_answers(sub)
    _add_document(sub)


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run every run of an experiment spec (skips finished runs, resumes interrupted)",
                       description="Run every run of an experiment spec, each in its own folder under "
                                   "OUT/<spec>/<profile>/, recorded in a results store. Re-running the same command "
                                   "skips finished and diverged runs and resumes interrupted ones. Workers on several "
                                   "machines share one sweep through --store postgresql://user:pass@host/db. Exit "
                                   "status 0 when every run is finished, diverged or running in another worker, 1 "
                                   "when some failed or are left.")
    _spec_args(p, "run", "experiment spec (YAML), e.g. experiments/04-lr-sweep.yaml")
    p.add_argument("--list", action="store_true", help="list the runs and their state in the store, run nothing")
    p.add_argument("--analysis", action="store_true", help="after the runs, run the spec's analysis steps (steps "
                                                           "that feed runs: before them)")
    p.add_argument("--report", metavar="HTML", help="after the runs, write the report here (and the .md beside)")
    p.add_argument("--max-runs", type=int, help="each worker stops after this many runs (a time slice)")
    p.add_argument("--grace", type=float, default=300.0,
                   help="seconds without a heartbeat before another machine's running run counts as lost and is "
                        "resumed elsewhere (default 300, at least 3 heartbeats = 90); a run whose process on this "
                        "machine is alive is never taken over, one whose process died is resumed at once")
    p.set_defaults(func=_sweep)


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="search a spec's tune: space with Optuna (TPE, pruning), resumable, several "
                                    "workers",
                       description="Search the space in the spec's tune: section with Optuna: each trial is a run "
                                   "under OUT/<spec>/tune-<profile>/, pruned early when its validation metric lags. "
                                   "Re-running the same command continues the study (a killed trial is retried). "
                                   "Writes report.md, trials.csv, history.png and best-N.yaml run configs there.")
    _spec_args(p, "trial", "experiment spec (YAML) with a tune: section")
    p.add_argument("--trials", type=int, help="complete or pruned trials to reach, over all workers (default: "
                                              "the spec's tune.trials, else 20)")
    p.add_argument("--timeout", type=float, help="each worker starts no new trial after this many seconds")
    p.add_argument("--report-only", action="store_true", help="write the report of the study as it is; run nothing")
    p.set_defaults(func=_tune)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="HTML + Markdown comparison report of runs, sweep folders or specs",
                       description="Write a self-contained HTML page (figures embedded) and a Markdown twin: a table "
                                   "of runs, overlaid curves, and the spec's own figures.")
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_SPEC", help="run folders, sweep folders, or specs (.yaml)")
    p.add_argument("--out", default="report.html", help="HTML file (default report.html); the .md goes beside it, "
                                                        "and for a spec each run's config, metrics and summary go "
                                                        "to <stem>_runs/, which a later report reads where the "
                                                        "store and the run folders are gone")
    p.add_argument("--profile", help="profile of the specs (default: each spec's default, usually quick)")
    p.add_argument("--store", help="results store of the specs' sweeps (default RUNS_OUT/cnnlab-store.journal)")
    p.add_argument("--runs-out", default="runs", help="the --out the sweeps ran with (default runs)")
    p.add_argument("--title", help="page title")
    p.add_argument("--pdf", action="store_true", help="also write the report as one PDF (OUT with .pdf), with the "
                                                      "code of the models and specs appended (needs Chromium)")
    p.set_defaults(func=_report)


def _add_answers(sub) -> None:
    p = sub.add_parser("answers", help="answer an assignment's questions from what cnnlab computes and has measured",
                       description="Build OUT/answers.json (and its figures) from an assignment file such as "
                                   "experiments/assignments/hw2.yaml: every question in order, each answered by the "
                                   "calculator, a dataset summary, a recipe's committed answers, a true/false claim "
                                   "checked against committed runs.csv files, or the file's own text.")
    p.add_argument("assignment", help="assignment file (YAML), e.g. experiments/assignments/hw2.yaml")
    p.add_argument("--out", required=True, help="folder for answers.json and figures, e.g. results/assignments/hw2")
    p.add_argument("--results", default="results", help="the recipes' committed results (default results)")
    add_data_root(p)
    p.set_defaults(func=_answers)


def _add_document(sub) -> None:
    p = sub.add_parser("document", help="an assignment's document to hand in (HTML, Markdown, PDF)",
                       description="Render results/assignments/NAME/answers.json as NAME.html, NAME.md and NAME.pdf: "
                                   "each question in order, its answer, the evidence and the code it is about.")
    p.add_argument("assignment", choices=("hw2", "hw3", "project2"), help="which assignment")
    p.add_argument("--answers", metavar="JSON", help="its answers file (default "
                                                     "results/assignments/NAME/answers.json)")
    p.add_argument("--out", metavar="DIR", help="folder to write into (default: the answers file's folder)")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF (it needs headless Chromium)")
    p.set_defaults(func=_document)

def _options(args: argparse.Namespace):
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.experiments.sweep import SweepOptions

    overrides = list(args.overrides) + data_overrides(args)
    return SweepOptions(args.spec, args.profile, overrides, args.out, args.store, args.workers, args.max_runs,
                        grace=args.grace)


def _sweep(args: argparse.Namespace) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.experiments.report import make_report
    from cnnlab.experiments.sweep import DONE_STATES, make_plan, run_analysis, run_feeding_steps, status_rows, sweep

    opts = _options(args)
    if args.list:
        names, rows = status_rows(opts)  # the count at once; the rows as each run is built
        print(f"{len(names):,} planned run{'s' * (len(names) != 1)}", file=sys.stderr, flush=True)
        width = max(map(len, names), default=0)
        for r in rows:
            best = f"{100 * r[BEST_VAL_ACC]:.2f}%" if isinstance(r[BEST_VAL_ACC], float) else ""
            other = "" if r["planned"] else "  (other settings: not in this plan; key=value overrides?)"
            print(f"{r['run']:{width}s}  {r['state']:12s} {best:>8s}  {r['folder']}{other}", flush=True)
        return 0
    if args.analysis:  # steps that feed runs (a range test's b_min, b_max) run first, so those runs use them
        run_feeding_steps(opts, args.data_root)
    records = sweep(opts)
    plan = make_plan(opts)
    if args.analysis:
        run_analysis(plan, args.data_root)
    elif plan.spec.analysis:
        print("note: the spec has analysis steps; run them with --analysis (they reuse the finished runs)")
    if args.report:
        paths = make_report([args.spec], args.report, args.profile, args.store, args.out,
                            command=f"cnnlab report {shlex.quote(args.spec)}" + _profile_arg(args))
        print(f"wrote {paths['html']} and {paths['markdown']}")
    # Runs still running in other workers are not this command's failure; failed, lost or unclaimed ones are.
    pending = [k for k in plan.keys if k not in records or records[k].state not in (*DONE_STATES, "running")]
    return 1 if pending else 0


def _profile_arg(args) -> str:
    return f" --profile {args.profile}" if args.profile else ""


def _report(args: argparse.Namespace) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.experiments.report import make_report

    paths = make_report(args.inputs, args.out, args.profile, args.store, args.runs_out, args.title,
                        command=f"cnnlab report {shlex.join(args.inputs)}{_profile_arg(args)} --out {args.out}",
                        pdf=args.pdf)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _document(args: argparse.Namespace) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.experiments.assignment import make_document

    paths = make_document(args.assignment, args.answers, args.out, pdf=not args.no_pdf,
                          command=f"cnnlab document {args.assignment}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _tune(args: argparse.Namespace) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.experiments.tune import TuneOptions, make_plan, open_study, tune
    from cnnlab.experiments.tune_report import write_tune_report
    from cnnlab.training.trainer import show_metric

    overrides = list(args.overrides) + data_overrides(args)
    opts = TuneOptions(args.spec, args.profile, overrides, args.out, args.store, args.trials, args.timeout,
                       args.workers)
    if args.timeout is not None and not args.timeout > 0:
        raise CnnlabError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    plan = make_plan(opts)
    study = open_study(plan, opts)[0] if args.report_only else tune(opts)
    path = write_tune_report(study, plan)
    best = study.best_trial if any(t.value is not None for t in study.trials) else None
    if best is not None:
        print(f"best: trial {best.number}, {plan.tune.metric} {show_metric(plan.tune.metric, best.value)}, "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()))
    print(f"wrote {path} (and trials.csv, history.png, best-N.yaml beside it)")
    return 0


def _answers(args: argparse.Namespace) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.experiments.questions import build

    doc = build(args.assignment, args.out, args.results, args.data_root, args.download)
    states = [q["status"] for q in doc["questions"]]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("answered", "contradicted", "pending") if s in states)
    print(f"wrote {args.out}/answers.json: {len(states)} questions of {doc['assignment']} ({counts})")
    return 0
