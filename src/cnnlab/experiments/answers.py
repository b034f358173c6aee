"""Answers: the sentences a report states, computed from the runs' numbers.

A spec declares what its question asks for under `report.answers`, and the report writes each one as a sentence
with its numbers and its margin; nothing in a generated report is written by hand:

    report:
      answers:
        - {kind: compare, a: bn, b: no_bn, metrics: [best_val_acc, final_train_acc],  # variant, group or run name
           question: "HW2 Lab 2(b)i"}               # optional: the course question it answers (docs/results.md)
        - {kind: compare, a: {optim.l1: 1.0e-4}, b: {optim.weight_decay: 1.0e-3}, metrics: weight_sparsity}
        - {kind: best, key: optim.lr, by: best_val_acc, group: l2}                # every value, ranked
        - {kind: best, key: variant, by: test_acc, where: {model.options.dropout: 0.5}}  # among some runs only
        - {kind: paired, key: model.options.dropout, a: 0.5, b: 0.0, metrics: wall_time}   # per variant: a vs b
        - {kind: target, target: 0.94, by: augment.repeats}                       # who reached it, when
        - {kind: initial_loss}                                                    # against ln(classes)
        - {kind: analysis, step: lr-range, file: find-lr}                         # an analysis step's result lines

Runs that differ only in `train.seed` are repeats: a side's value is their mean ± standard deviation. A margin is
called *within seed noise* when it is smaller than twice the standard error of the difference of the two means,
estimated from the repeats themselves or, for settings run once, from the spread of every repeated setting of the
source (pooled); with no repeats at all the sentence says that seed noise was not measured.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from cnnlab.errors import CnnlabError
from cnnlab.experiments.figures import LABELS, Entry, _fmt, reach
from cnnlab.registry import Registry, check_kwargs
from cnnlab.training.config import SEED_KEY, check_key

ANSWERS = Registry("report answer")
# Metrics an answer can compare: the summary's, and two computed here (the overfitting gap, the weight sparsity).
METRICS = ("best_val_acc", "final_train_acc", "final_val_acc", "test_acc", "final_train_loss", "final_val_loss",
           "end_train_loss", "end_train_acc", "wall_time", "images_per_sec", "best_epoch", "gap", "weight_sparsity",
           "initial_loss")
LOWER_IS_BETTER = {"final_train_loss", "final_val_loss", "end_train_loss", "wall_time", "best_epoch", "gap",
                   "initial_loss"}
PERCENT = {"best_val_acc", "final_train_acc", "final_val_acc", "test_acc", "gap", "weight_sparsity", "end_train_acc"}
WORDS = {**LABELS, "final_val_loss": "final validation loss",
         "wall_time": "training time", "gap": "overfitting gap (final training minus final validation accuracy)",
         "weight_sparsity": "share of weights below 1e-3 in magnitude (best checkpoint)",
         "test_acc": "test accuracy (best checkpoint)", "initial_loss": "initial loss"}


@dataclass
class Answer:
    kind: str
    text: str
    question: str = ""            # the course question it answers (the spec's label, e.g. "HW2 Lab 1(h)")
    metrics: List[str] = field(default_factory=list)   # the metrics it was computed from (used_metrics)


@dataclass
class Stat:
    """A metric over the repeats of one setting."""
    mean: float
    std: Optional[float]          # None when the setting ran once
    n: int


def metric(e: Entry, key: str) -> Optional[float]:
    if key == "gap":
        tr, va = e.metric("final_train_acc"), e.metric("final_val_acc")
        return tr - va if tr is not None and va is not None else None
    if key == "weight_sparsity":
        return e.sparsity() if e.summary else None
    return e.metric(key)


def stat(entries: Sequence[Entry], key: str) -> Optional[Stat]:
    vals = [v for v in (metric(e, key) for e in entries) if v is not None]
    if not vals:
        return None
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


def show(key: str, v: float) -> str:
    if key in PERCENT:
        return f"{100 * v:.2f}%"
    if key == "wall_time":
        return f"{v:,.0f} s"
    if key in ("images_per_sec", "best_epoch"):
        return f"{v:,.0f}"
    return f"{v:.4g}"


def show_stat(key: str, s: Stat, n: bool = True) -> str:
    """'66.03% ± 0.49 (n=2)': the mean, the standard deviation in the mean's unit (points for accuracies)."""
    if s.std is None:
        return show(key, s.mean)
    if key in PERCENT:
        text = f"{100 * s.mean:.2f}% ± {100 * s.std:.2f}"
    elif key == "wall_time":
        text = f"{s.mean:,.0f} ± {s.std:,.0f} s"
    else:
        text = f"{show(key, s.mean)} ± {show(key, s.std)}"
    return text + (f" (n={s.n})" if n else "")


def margin_text(key: str, d: float) -> str:
    if key in PERCENT:
        return f"{100 * d:+.2f} points"
    if key == "wall_time":
        return f"{d:+,.0f} s"
    return f"{d:+,.0f}" if key in ("images_per_sec", "best_epoch") else f"{d:+.4g}"


# ----------------------------------------------------------------------------------------------------------------------
# Selecting runs, and seed noise.

Selector = Union[str, Dict[str, Any]]


def setting_name(e: Entry) -> str:
    """The run's name without the `_seed=N` that a profile's `seeds` appends (spec.expand): its setting's name."""
    return e.name.rsplit("_seed=", 1)[0]


def _matches(e: Entry, sel: Selector) -> bool:
    if isinstance(sel, str):
        return sel in (e.varied.get("variant"), e.varied.get("group"), e.name, setting_name(e))
    return all(_fmt(e.value(k)) == _fmt(v) for k, v in sel.items())  # e.value reads group and variant too


def select(entries: Sequence[Entry], sel: Selector) -> List[Entry]:
    """The finished runs `sel` names; they must be one setting (repeats over train.seed at most)."""
    found = [e for e in entries if _matches(e, sel) and e.summary]
    settings = {_setting(e) for e in found}
    if len(settings) > 1:
        raise CnnlabError(f"answer selector {sel!r} matches {len(settings)} different settings "
                          f"({', '.join(e.name for e in found[:4])}...); name a variant or give more key: value pairs")
    return found


def _setting(e: Entry) -> str:
    return json.dumps({k: _fmt(v) for k, v in e.varied.items() if k != SEED_KEY}, sort_keys=True)


def pooled_std(entries: Sequence[Entry], key: str) -> Optional[float]:
    """The within-setting standard deviation of `key` pooled over every setting that was repeated."""
    by: Dict[str, List[float]] = {}
    for e in entries:
        v = metric(e, key) if e.summary else None
        if v is not None:
            by.setdefault(_setting(e), []).append(v)
    groups = [vs for vs in by.values() if len(vs) > 1]
    dof = sum(len(vs) - 1 for vs in groups)
    if not dof:
        return None
    return math.sqrt(sum((len(vs) - 1) * statistics.variance(vs) for vs in groups) / dof)


def noise_text(key: str, a: Stat, b: Stat, pooled: Optional[float]) -> str:
    """'within seed noise (...)' or 'beyond seed noise (...)' for the margin a - b, or why it cannot be said."""
    sa = a.std if a.std is not None else pooled
    sb = b.std if b.std is not None else pooled
    if sa is None or sb is None:
        return "one seed per setting, so seed-to-seed noise was not measured"
    se = math.sqrt(sa ** 2 / a.n + sb ** 2 / b.n)
    bound = margin_text(key, 2 * se).lstrip("+")
    where = "the repeats" if a.std is not None and b.std is not None else "the pooled spread of the repeated settings"
    within = abs(a.mean - b.mean) < 2 * se
    return f"{'within' if within else 'beyond'} seed noise: 2 standard errors = {bound}, from {where}"


def left_out(e: Entry) -> Optional[str]:
    """Why a finished run's numbers are not compared: 'diverged' (they are those of the step it was stopped at: its
    wall time ~0, its loss the blow-up), 'did not learn' (it ran at chance: Entry.did_not_learn), else None. Such
    runs are named in the answer instead; compared, they would read as a margin."""
    if (e.summary or {}).get("diverged"):
        return "diverged"
    return "did not learn" if e.did_not_learn() else None


def _named(why: Dict[str, str]) -> str:
    """{'1': 'did not learn', 'x': 'diverged'} -> 'diverged: x; did not learn: 1'."""
    out = []
    for reason in ("diverged", "did not learn"):
        names = [n for n, w in why.items() if w == reason]
        if names:
            out.append(f"{reason}: {', '.join(names)}")
    return "; ".join(out)


def _better(key: str, a: float, b: float) -> bool:
    return a < b if key in LOWER_IS_BETTER else a > b


# ----------------------------------------------------------------------------------------------------------------------
# Answer kinds.

def _label(sel: Selector) -> str:
    return sel if isinstance(sel, str) else ", ".join(f"{k}={_fmt(v)}" for k, v in sel.items())


@ANSWERS.register("compare")
def compare(entries: List[Entry], a: Selector, b: Selector,
            metrics: Union[str, List[str]] = ("best_val_acc", "final_train_acc")) -> str:
    """a against b on each metric: both values, the margin, and whether it is within seed noise."""
    ra, rb = select(entries, a), select(entries, b)
    la, lb = _label(a), _label(b)
    if not ra or not rb:
        return f"{la} against {lb}: not answered yet ({'no finished run of ' + (la if not ra else lb)})."
    gone = [f"{lab} {left_out(rs[0])}" for lab, rs in ((la, ra), (lb, rb)) if all(left_out(e) for e in rs)]
    if gone:
        return f"{la} against {lb}: not compared ({' and '.join(gone)})."
    ra, rb = [e for e in ra if not left_out(e)], [e for e in rb if not left_out(e)]
    parts = []
    for key in ([metrics] if isinstance(metrics, str) else list(metrics)):
        sa, sb = stat(ra, key), stat(rb, key)
        if sa is None or sb is None:
            parts.append(f"{WORDS.get(key, key)}: not measured")
            continue
        verdict = "higher" if sa.mean > sb.mean else "lower" if sa.mean < sb.mean else "equal"
        parts.append(f"{WORDS.get(key, key)} {show_stat(key, sa)} against {show_stat(key, sb)}, "
                     f"{margin_text(key, sa.mean - sb.mean)} ({verdict}; "
                     f"{noise_text(key, sa, sb, pooled_std(entries, key))})")
    return f"{la} against {lb}: " + "; ".join(parts) + "."


@ANSWERS.register("paired")
def paired(entries: List[Entry], key: str, a: Any, b: Any, by: str = "variant",
           metrics: Union[str, List[str]] = "best_val_acc") -> str:
    """For each value of `by` (each variant): its runs with `key` = a against those with `key` = b."""
    names = list(dict.fromkeys(_fmt(e.value(by)) for e in entries))
    parts = []
    for n in names:
        mine = [e for e in entries if _fmt(e.value(by)) == n]
        sa, sb = {by: n, key: a}, {by: n, key: b}
        text = compare(mine, sa, sb, metrics)
        parts.append(f"{by} {n}: " + text.split(": ", 1)[1].rstrip("."))
    return f"{key}={_fmt(a)} against {key}={_fmt(b)}, per {by}: " + "; ".join(parts) + "."


def _where(entries: List[Entry], where: Optional[Dict[str, Any]]) -> List[Entry]:
    return [e for e in entries if _matches(e, where)] if where else list(entries)


@ANSWERS.register("best")
def best(entries: List[Entry], key: str, by: str = "best_val_acc", where: Optional[Dict[str, Any]] = None) -> str:
    """The value of config `key` whose runs did best on `by`, its margin over the runner-up, and every value;
    among the runs matching `where` (key: value pairs) when given."""
    scope = f" among runs with {_label(where)}" if where else ""
    entries = _where(entries, where)
    at: Dict[str, List[Entry]] = {}
    for e in entries:
        if e.summary:
            at.setdefault(_fmt(e.value(key)), []).append(e)
    if not at:
        return f"Best {key} by {WORDS.get(by, by)}{scope}: not answered yet (no finished run)."
    gone = {v: left_out(es[0]) for v, es in at.items() if all(left_out(x) for x in es)}
    stats = {v: stat([x for x in es if not left_out(x)], by) for v, es in at.items() if v not in gone}
    ranked = sorted(((v, s) for v, s in stats.items() if s is not None), key=lambda t: t[1].mean,
                    reverse=by not in LOWER_IS_BETTER)
    if not ranked:
        why = "not measured in these runs" if stats else "no run to compare (" + _named(gone) + ")"
        return f"Best {key} by {WORDS.get(by, by)}{scope}: {why}."
    (v1, s1), rest = ranked[0], ranked[1:]
    text = f"Best {key} by {WORDS.get(by, by)}{scope}: {v1} ({show_stat(by, s1)})"
    if rest:
        v2, s2 = rest[0]
        lead = "ahead of" if _better(by, s1.mean, s2.mean) else "level with"
        text += (f", {margin_text(by, s1.mean - s2.mean).lstrip('+-')} {lead} {v2} ({show_stat(by, s2)}; "
                 f"{noise_text(by, s1, s2, pooled_std(entries, by))})")
    text += ". All values: " + ", ".join(f"{v} → {show_stat(by, s)}" for v, s in ranked)
    if gone:
        text += "; " + _named(gone)
    return text + "."


@ANSWERS.register("target")
def target(entries: List[Entry], target: float, by: Optional[str] = None,
           where: Optional[Dict[str, Any]] = None) -> str:
    """Which runs reached `target` validation accuracy, after how many epochs and seconds; the best of the others."""
    done = [e for e in _where(entries, where) if e.summary]
    if not done:
        return f"Reaching {target:.0%} validation accuracy: not answered yet (no finished run)."
    hits = [(e, reach(e, target)) for e in done]
    reached = sorted([(e, h) for e, h in hits if h], key=lambda t: (t[1]["epoch"], t[1].get("time") or 0))
    missed = [e for e, h in hits if not h]

    def name(e):
        return f"{by}={_fmt(e.value(by))}" if by else e.name
    text = f"Reached {target:.0%} validation accuracy: {len(reached)} of {len(done)} runs"
    if reached:
        text += " (" + ", ".join(f"{name(e)} at epoch {h['epoch']}, {h['time']:,.0f} s" for e, h in reached) + ")"
    if missed:
        top = max(missed, key=lambda e: e.metric("best_val_acc") or 0)
        text += (f"; best of the {len(missed)} that did not: {name(top)} at "
                 f"{show('best_val_acc', top.metric('best_val_acc') or 0)} after {top.summary.get('epochs_done')} "
                 f"epochs, {top.metric('wall_time') or 0:,.0f} s")
    return text + "."


@ANSWERS.register("initial_loss")
def initial_loss(entries: List[Entry]) -> str:
    """The loss before any training step against ln(number of classes), the loss of a uniform guess."""
    pairs = [(e.metric("initial_loss"), e.metric("ln_classes")) for e in entries if e.summary]
    pairs = [(l, c) for l, c in pairs if l is not None and c is not None]
    if not pairs:
        return "Initial loss: not recorded."
    ls = [l for l, _ in pairs]
    c = pairs[0][1]
    return (f"Initial loss before any step: {statistics.fmean(ls):.4f} (mean of {len(ls)} runs, "
            f"{min(ls):.4f} to {max(ls):.4f}); ln({round(math.exp(c))}) = {c:.4f}, the loss of a uniform guess over "
            f"the {round(math.exp(c))} classes, a ratio of {statistics.fmean(ls) / c:.3f}.")


@ANSWERS.register("analysis")
def analysis(entries: List[Entry], step: str, file: str, analysis_dir: Optional[Path] = None) -> str:
    """The result lines an analysis step wrote (<analysis>/<step>/<file>.json, from `cnnlab sweep --analysis`)."""
    path = Path(analysis_dir or "") / step / f"{file}.json"
    if analysis_dir is None or not path.is_file():
        return f"Analysis {step}: not run yet (no {path.name}; run the sweep with --analysis)."
    try:
        lines = json.loads(path.read_text()).get("lines") or []
    except (OSError, ValueError, AttributeError):
        return f"Analysis {step}: {path.name} is unreadable; rerun the step."
    return f"Analysis {step}: " + " ".join(l.rstrip(".") + "." for l in lines)


# ----------------------------------------------------------------------------------------------------------------------
# Checking a spec's answers, and answering them.

def check_answer(data: Dict[str, Any], where: str) -> Dict[str, Any]:
    """Validate one `report.answers` entry: a known kind, options it takes, known config keys and metrics."""
    if "kind" not in data:
        raise CnnlabError(f"{where}: missing 'kind'; one of {', '.join(ANSWERS.names())}")
    opts = {k: v for k, v in data.items() if k not in ("kind", "group", "question")}
    if not isinstance(data.get("question", ""), str):
        raise CnnlabError(f"{where}: question must be a short text naming the course question, got "
                          f"{data['question']!r}")
    try:
        check_kwargs(ANSWERS.get(str(data["kind"])), {"entries": None, **opts}, f"answer kind {data['kind']!r}")
    except CnnlabError as e:
        raise CnnlabError(f"{where}: {e}") from None
    if "analysis_dir" in opts:
        raise CnnlabError(f"{where}: analysis_dir is filled in by the report; leave it out")
    for k in ("key", "by"):
        metric_option = k == "by" and data["kind"] == "best"
        if k in opts and not metric_option and opts[k] not in ("variant", "group"):
            check_key(opts[k], f"{where} {k}")
    for k in opts.get("where") or {}:
        if k not in ("variant", "group"):
            check_key(k, f"{where} where")
    named = opts.get("metrics") or []
    by = [opts["by"]] if data["kind"] == "best" and "by" in opts else []
    for m in [*([named] if isinstance(named, str) else named), *by]:
        if m not in METRICS:
            raise CnnlabError(f"{where}: {m!r} is not a metric an answer can use; choose from {', '.join(METRICS)}")
    for side in ("a", "b") if data["kind"] == "compare" else ():
        sel = opts.get(side)
        if side in opts and not (isinstance(sel, str) or isinstance(sel, dict) and sel):
            raise CnnlabError(f"{where}: {side} must name a variant, group or run, or map config keys to values")
        if isinstance(sel, dict):
            for k in sel:
                if k not in ("group", "variant"):
                    check_key(k, f"{where} {side}")
    if data["kind"] == "target" and not (isinstance(opts.get("target"), (int, float)) and 0 < opts["target"] <= 1):
        raise CnnlabError(f"{where}: target must be a validation accuracy in (0, 1], got {opts.get('target')!r}")
    if "group" in data and not isinstance(data["group"], str):
        raise CnnlabError(f"{where}: group must be the name of one of the spec's groups, got {data['group']!r}")
    return {"kind": str(data["kind"]), **opts, **({"group": data["group"]} if "group" in data else {}),
            **({"question": data["question"]} if "question" in data else {})}


def used_metrics(spec: Dict[str, Any]) -> List[str]:
    """The metrics an answer is computed from: what its `metrics` or (kind best) `by` names, else its kind's
    default; a target answer reads the per-epoch validation accuracy, an analysis answer its step's own numbers."""
    import inspect

    kind = spec["kind"]
    fixed = {"target": ["val_acc"], "initial_loss": ["initial_loss"], "analysis": []}
    if kind in fixed:
        return fixed[kind]
    option = "by" if kind == "best" else "metrics"
    params = inspect.signature(ANSWERS.get(kind)).parameters
    named = spec.get(option, params[option].default if option in params else ())
    return [named] if isinstance(named, str) else list(named or ())


def answer_all(specs: Sequence[Dict[str, Any]], entries: List[Entry],
               analysis_dir: Optional[Path] = None) -> List[Answer]:
    """Each spec'd answer, its text ending with the metrics it used ([metric: end_train_loss])."""
    out = []
    for spec in specs:
        opts = {k: v for k, v in spec.items() if k not in ("kind", "group", "question")}
        es = [e for e in entries if e.varied.get("group") == spec["group"]] if "group" in spec else entries
        if spec["kind"] == "analysis":
            opts["analysis_dir"] = analysis_dir
        try:
            text = ANSWERS.get(spec["kind"])(es, **opts)
        except CnnlabError as e:  # a selector that turned ambiguous with the runs at hand: say so in the report
            text = f"not answered: {e}"
        used = used_metrics(spec)
        if used:
            text += f" [metric{'s' if len(used) > 1 else ''}: {', '.join(used)}]"
        out.append(Answer(spec["kind"], text, spec.get("question", ""), used))
    return out
