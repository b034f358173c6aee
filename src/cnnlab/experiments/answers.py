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

Each sentence is written for the student who hands it in: the conclusion first, in plain words ("bn has the higher
best validation accuracy, so bn does better"), then the numbers; runs are named by their variant, group or run
names, settings in words ("learning rate"), never by config keys. Runs that differ only in `train.seed` are
repeats: a side's value is their mean ± standard deviation. A margin smaller than twice the standard error of the
difference of the two means (estimated from the repeats themselves or, for settings run once, from the spread of
every repeated setting of the source, pooled) reads "no measurable difference". With no repeats at all the noise
was not measured; the document says so once (noise_caveat), not in every sentence.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from cnnlab.errors import CnnlabError
from cnnlab.experiments.figures import Entry, _fmt, key_words, reach
from cnnlab.registry import Registry, check_kwargs
from cnnlab.training.config import MACHINE_KEYS, SEED_KEY, check_key
from cnnlab.training.metrics import BEST_VAL_ACC, COMPARABLE, FINAL_TRAIN_ACC, FINAL_VAL_ACC, LABELS as WORDS
from cnnlab.training.metrics import LOWER_IS_BETTER, PERCENT, TEST_ACC, TIMINGS, WALL_TIME

ANSWERS = Registry("report answer")
# The metrics an answer can compare (one number per run, or the overfitting gap and the weight sparsity computed
# here), which are better lower, which are shown in percent, and their words: from the catalogue (training/metrics.py).
METRICS = COMPARABLE


def register_answer(kind: str, metric_option: Optional[str] = "metrics", reads: Optional[Sequence[str]] = None):
    """Register an answer function under `kind`. `metric_option`: its option that names the metric(s) it compares
    (checked against METRICS when a spec is read; None: it has none); `reads`: the metrics it always reads, when no
    option says (a report lists them under the answer). Registering is all a new kind needs."""
    def deco(fn):
        fn.metric_option, fn.reads = metric_option, None if reads is None else tuple(reads)
        return ANSWERS.register(kind)(fn)

    return deco


@dataclass
class Answer:
    kind: str
    text: str
    question: str = ""            # the course question it answers (the spec's label, e.g. "HW2 Lab 1(h)")
    metrics: List[str] = field(default_factory=list)   # the metrics it was computed from (used_metrics)
    noise: str = ""               # measured | unmeasured: which seed-noise caveat the document states (noise_caveat)


@dataclass
class Stat:
    """A metric over the repeats of one setting."""
    mean: float
    std: Optional[float]          # None when the setting ran once
    n: int


def metric(e: Entry, key: str) -> Optional[float]:
    if key == "gap":
        tr, va = e.metric(FINAL_TRAIN_ACC), e.metric(FINAL_VAL_ACC)
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
    if key == WALL_TIME:
        return f"{v:,.0f} s"
    if key in ("images_per_sec", "best_epoch"):
        return f"{v:,.0f}"
    return sig4(v)


def sig4(v: float) -> str:
    """Four significant digits that keep their trailing zeros, so that a column of losses lines up (1.400 beside
    1.399, not 1.4); thousands and more in full with separators (2,417, not 2417. or 2.417e+03)."""
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:#.4g}".rstrip(".") if abs(v) >= 1e-4 or v == 0 else f"{v:.3g}"


def show_stat(key: str, s: Stat, n: bool = True) -> str:
    """'66.03% ± 0.49 (n=2)': the mean, the standard deviation in the mean's unit (points for accuracies)."""
    if s.std is None:
        return show(key, s.mean)
    if key in PERCENT:
        text = f"{100 * s.mean:.2f}% ± {100 * s.std:.2f}"
    elif key == WALL_TIME:
        text = f"{s.mean:,.0f} ± {s.std:,.0f} s"
    else:
        text = f"{show(key, s.mean)} ± {show(key, s.std)}"
    return text + (f" (n={s.n})" if n else "")


def margin_text(key: str, d: float) -> str:
    if key in PERCENT:
        return f"{100 * d:+.2f} points"
    if key == WALL_TIME:
        return f"{d:+,.0f} s"
    # a margin to three significant digits: 0.000972, not 0.0009719, beside values shown to four
    return f"{d:+,.0f}" if key in ("images_per_sec", "best_epoch") else f"{d:+.3g}"


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
    """What a run computes, without its seed: two runs with the same setting are repeats. From its whole config where
    the entry has one, so that identical copies under other names (a recipe's baseline run once in each study group)
    count as repeats too: their spread is noise (the thread count the tuner picked changes the last bits, and eight
    epochs amplify them) like the seed's. From the keys the spec varied otherwise."""
    if e.config:
        return json.dumps({k: _fmt(v) for k, v in sorted(e.config.items())
                           if k not in MACHINE_KEYS and k != SEED_KEY}, sort_keys=True, default=str)
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


@dataclass
class Noise:
    """The seed noise of a margin: `within` is None where it could not be measured (every setting ran once)."""
    within: Optional[bool]
    bound: str = ""               # two standard errors of the difference, in the metric's unit ("0.84 points")
    pooled: bool = False          # estimated from the spread of other repeated settings, not these two


def noise(key: str, a: Stat, b: Stat, pooled: Optional[float]) -> Noise:
    """Whether the margin a - b is within two standard errors of the difference of the means, estimated from the
    repeats themselves or, for settings run once, from the pooled spread of the repeated settings. Not for times
    and speeds: their spread grows with their size (a 30 s run and a 1,500 s one do not share a ±100 s) and comes
    from the machine's load, not the seed, so a time is judged only against its own setting's repeats."""
    if key in TIMINGS:
        pooled = None
    sa = a.std if a.std is not None else pooled
    sb = b.std if b.std is not None else pooled
    if sa is None or sb is None:
        return Noise(None)
    se = math.sqrt(sa ** 2 / a.n + sb ** 2 / b.n)
    return Noise(abs(a.mean - b.mean) < 2 * se, margin_text(key, 2 * se).lstrip("+"),
                 a.std is None or b.std is None)


def noise_text(key: str, a: Stat, b: Stat, pooled: Optional[float]) -> str:
    """What a sentence says of the noise of the margin a - b: nothing where it was not measured (the document says
    that once: noise_caveat), else the bound it was judged against."""
    n = noise(key, a, b, pooled)
    if n.within is None:
        return ""
    where = " (pooled over the repeated settings and identical copies)" if n.pooled else ""
    return f"{'inside' if n.within else 'beyond'} the seed noise of ±{n.bound}{where}"


UNMEASURED = ("Each setting ran with one seed, so seed-to-seed noise was not measured: a margin of a point or so "
              "may be noise alone.")
MEASURED = ("A margin counts as measurable when it exceeds two standard errors of the difference, estimated from "
            "the runs repeated over seeds; a smaller one reads \"no measurable difference\".")


def noise_caveat(answers: Sequence["Answer"]) -> str:
    """The seed-noise caveat, said once per document instead of in every sentence."""
    kinds = {a.noise for a in answers if a.noise}
    return " ".join(t for k, t in (("unmeasured", UNMEASURED), ("measured", MEASURED)) if k in kinds)


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
# Answer kinds. Each sentence opens with its conclusion in plain words, then gives the numbers; runs are named by
# their labels (variant, group or run names) and settings by what they are ("learning rate"), not by config keys.

def _label(sel: Selector, entries: Sequence[Entry] = ()) -> str:
    """A selector as the report's tables name it: the label of the variant or group it matches (report.labels),
    else that variant, group or run, else its settings in words."""
    found = [e for e in entries if _matches(e, sel)]
    if isinstance(sel, str):  # a variant's or group's name: its label where the spec gives one
        return next((e.label for e in found if e.label and sel in (e.varied.get("variant"), e.varied.get("group"))),
                    sel)
    if found and len({setting_name(e) for e in found}) == 1:
        e = found[0]
        return e.label or str(e.varied.get("variant") or setting_name(e))
    return ", ".join(f"{key_words(k)} {_fmt(v)}" for k, v in sel.items())


def cap_first(text: str) -> str:
    """The text with its first letter capitalised (a sentence that may open with a run's name keeps the rest); a
    sentence that opens with a symbol such as b_min or lr_max keeps it as it is written."""
    first = text.split(" ", 1)[0]
    if "_" in first or "=" in first:
        return text
    return text[:1].upper() + text[1:]


def _versus(key: str, la: str, lb: str, sa: Stat, sb: Stat, pooled: Optional[float]) -> str:
    """One metric of a comparison, conclusion first: which is higher (or no measurable difference), then the two
    values and the margin."""
    words = WORDS.get(key, key)
    margin = margin_text(key, sa.mean - sb.mean)
    numbers = f"{show_stat(key, sa)} against {show_stat(key, sb)}, {margin}"
    n = noise(key, sa, sb, pooled)
    said = noise_text(key, sa, sb, pooled)
    if n.within:
        return f"no measurable difference in {words} between {la} and {lb} ({numbers}, {said})"
    if sa.mean == sb.mean:
        return f"{la} and {lb} have the same {words} ({numbers})"
    tail = f", {said}" if said else ""
    verb = f"does better on {words}"
    if key == WALL_TIME:   # "does better on training time" is not how anyone says it
        verb = "trained faster"
    elif key == "images_per_sec":
        verb = "processed more images per second"
    if _better(key, sa.mean, sb.mean):
        return f"{la} {verb} ({numbers}{tail})"
    # the better side first, with its own number first, so that the sentence reads in one direction
    return (f"{lb} {verb} ({show_stat(key, sb)} against {show_stat(key, sa)} for {la}, "
            f"{margin_text(key, sb.mean - sa.mean)}{tail})")


@register_answer("compare")
def compare(entries: List[Entry], a: Selector, b: Selector,
            metrics: Union[str, List[str]] = (BEST_VAL_ACC, FINAL_TRAIN_ACC)) -> str:
    """a against b on each metric: which is better, both values, the margin, and whether it is inside the seed
    noise (then: no measurable difference)."""
    ra, rb = select(entries, a), select(entries, b)
    la, lb = _label(a, entries), _label(b, entries)
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
            parts.append(f"{WORDS.get(key, key)} was not measured")
            continue
        parts.append(_versus(key, la, lb, sa, sb, pooled_std(entries, key)))
    # a sentence that opens with a run's name keeps it as the table spells it (bn_lr0.1); one that opens with words,
    # a label ("no BN at lr 0.1") among them, is capitalised
    names = tuple(lab for lab, sel in ((la, a), (lb, b)) if isinstance(sel, str) and lab == sel)
    return ". ".join(p if names and p.startswith(names) else cap_first(p) for p in parts) + "."


@register_answer("paired")
def paired(entries: List[Entry], key: str, a: Any, b: Any, by: str = "variant",
           metrics: Union[str, List[str]] = BEST_VAL_ACC) -> str:
    """For each value of `by` (each variant): its runs with `key` = a against those with `key` = b. Per metric, the
    tally first (which side did better for how many of them, and where the margin is inside the noise), then the
    pairs of values: a sentence per metric, not one per variant and metric (HW3 1.3 read as 330 words that way)."""
    names = list(dict.fromkeys(_fmt(e.value(by)) for e in entries))
    la, lb = f"{key_words(key)} {_fmt(a)}", f"{key_words(key)} {_fmt(b)}"
    pairs, missing = [], []
    for n in names:
        mine = [e for e in entries if _fmt(e.value(by)) == n]
        ra, rb = select(mine, {by: n, key: a}), select(mine, {by: n, key: b})
        gone = [f"{lab} {left_out(rs[0])}" for lab, rs in ((la, ra), (lb, rb)) if rs and all(left_out(e) for e in rs)]
        if not ra or not rb or gone:
            missing.append(f"{n} {'not compared (' + ' and '.join(gone) + ')' if gone else 'not answered yet'}")
            continue
        pairs.append((n, [e for e in ra if not left_out(e)], [e for e in rb if not left_out(e)]))
    said = [_tally(m, la, lb, pairs, pooled_std(entries, m))
            for m in ([metrics] if isinstance(metrics, str) else list(metrics))]
    head = f"{cap_first(la)} against {lb}, for each {key_words(by)}"
    tail = f" Left out: {'; '.join(missing)}." if missing else ""
    return head + (": " + " ".join(said) if pairs else ": not answered yet (no pair of finished runs).") + tail


def _tally(m: str, la: str, lb: str, pairs: list, pooled: Optional[float]) -> str:
    """One metric of a paired answer: who did better for how many settings, then each setting's two values."""
    rows = [(n, stat(ra, m), stat(rb, m)) for n, ra, rb in pairs]
    rows = [(n, sa, sb) for n, sa, sb in rows if sa is not None and sb is not None]
    words = WORDS.get(m, m)
    if not rows:
        return f"{cap_first(words)} was not measured."
    won: Dict[str, List[str]] = {la: [], lb: [], "": []}
    for n, sa, sb in rows:
        within = noise(m, sa, sb, pooled).within or sa.mean == sb.mean
        won["" if within else la if _better(m, sa.mean, sb.mean) else lb].append(n)
    verb = {WALL_TIME: "trained faster", "images_per_sec": "processed more images per second"}.get(m, "did better")

    def side(names: List[str]) -> str:
        if len(names) == len(rows):
            return "for both" if len(rows) == 2 else f"for all {len(rows)}"
        return f"for {len(names)} of {len(rows)} ({', '.join(names)})"

    clauses = [f"{lab} {verb} {side(ns)}" for lab, ns in won.items() if lab and ns]
    if won[""]:
        clauses.append(f"no measurable difference {side(won[''])}")
    values = ", ".join(f"{n} {show_stat(m, sa, n=False)} against {show_stat(m, sb, n=False)}" for n, sa, sb in rows)
    return f"{cap_first(words)}: {'; '.join(clauses)} ({la} against {lb}: {values})."


def _where(entries: List[Entry], where: Optional[Dict[str, Any]]) -> List[Entry]:
    return [e for e in entries if _matches(e, where)] if where else list(entries)


def _best_two(what: str, scope: str, by: str, first: tuple, second: tuple, pooled: Optional[float]) -> str:
    """The opening of a `best` answer: the winner and its margin over the runner-up, or no measurable difference."""
    (v1, s1), (v2, s2) = first, second
    n, said = noise(by, s1, s2, pooled), noise_text(by, s1, s2, pooled)
    by_words = WORDS.get(by, by)
    margin = margin_text(by, s1.mean - s2.mean).lstrip("+-")
    if n.within or s1.mean == s2.mean:
        return (f"No measurable difference between the best two {what + ' values' if what else 'settings'}{scope}: "
                f"{v1} ({show_stat(by, s1)}) "
                f"and {v2} ({show_stat(by, s2)}) by {by_words}, {margin} apart ({said or 'the same value'})")
    tail = f"{'; ' + said if said else ''})"
    if by == WALL_TIME:   # "the best ... by training time" reads as a judgement of the setting
        return (f"The fastest to train{scope} is {(what + ' ' + v1).strip()}: {show_stat(by, s1)}, {margin} less "
                f"than {v2} ({show_stat(by, s2)}{tail}")
    text = f"The best {what or 'setting'}{scope} is {v1}, by {by_words}: {show_stat(by, s1)}, {margin} ahead of {v2} " \
           f"({show_stat(by, s2)}{tail}"
    return text + (f"; its test error is {100 * (1 - s1.mean):.2f}%" if by == TEST_ACC else "")  # asked for


@register_answer("best", metric_option="by")
def best(entries: List[Entry], key: str, by: str = BEST_VAL_ACC, where: Optional[Dict[str, Any]] = None) -> str:
    """The value of config `key` whose runs did best on `by`, its margin over the runner-up (or no measurable
    difference), and every value; among the runs matching `where` (key: value pairs) when given."""
    scope = f" among the runs with {_label(where)}" if where else ""
    what, by_words = key_words(key), WORDS.get(by, by)
    entries = _where(entries, where)
    at: Dict[str, List[Entry]] = {}
    for e in entries:
        if e.summary:
            at.setdefault(_fmt(e.value(key)), []).append(e)
    if key in ("variant", "group") and at and all(es[0].label for es in at.values()):
        # the spec's labels name the settings ("FastCNN", not "variant fastcnn"); they say what they are
        at, what = {es[0].label: es for es in at.values()}, ""
    if not at:
        return f"Best {what} by {by_words}{scope}: not answered yet (no finished run)."
    gone = {v: left_out(es[0]) for v, es in at.items() if all(left_out(x) for x in es)}
    stats = {v: stat([x for x in es if not left_out(x)], by) for v, es in at.items() if v not in gone}
    ranked = sorted(((v, s) for v, s in stats.items() if s is not None), key=lambda t: t[1].mean,
                    reverse=by not in LOWER_IS_BETTER)
    if not ranked:
        why = "not measured in these runs" if stats else "no run to compare (" + _named(gone) + ")"
        return f"Best {what} by {by_words}{scope}: {why}."
    (v1, s1), rest = ranked[0], ranked[1:]
    if not rest:
        text = f"Only {(what + ' ' + v1).strip()} has a usable result{scope}: {by_words} {show_stat(by, s1)}"
    else:
        text = _best_two(what, scope, by, ranked[0], rest[0], pooled_std(entries, by))
    if rest:
        text += ". All values: " + ", ".join(f"{v} → {show_stat(by, s)}" for v, s in ranked)
    if gone:
        text += ("; " if rest else ". ") + _named(gone)
    return text + "."


@register_answer("target", metric_option=None, reads=["val_acc"])
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
        return f"{key_words(by)} {_fmt(e.value(by))}" if by else e.title
    if len(done) == 1:  # one run: "None of the 1 runs" is not how anyone says it
        e, h = hits[0]
        if h:
            return (f"{cap_first(name(e))} reached {target:.0%} validation accuracy at epoch {h['epoch']}, "
                    f"{h['time']:,.0f} s.")
        return (f"{cap_first(name(e))} did not reach {target:.0%} validation accuracy: its best was "
                f"{show(BEST_VAL_ACC, e.metric(BEST_VAL_ACC) or 0)} after {e.summary.get('epochs_done')} epochs, "
                f"{e.metric(WALL_TIME) or 0:,.0f} s.")
    lead = (f"All {len(done)} runs" if not missed else f"None of the {len(done)} runs" if not reached else
            f"{len(reached)} of {len(done)} runs")
    text = f"{lead} reached {target:.0%} validation accuracy"
    if reached:  # fastest first
        text += " (" + ", ".join(f"{name(e)} at epoch {h['epoch']}, {h['time']:,.0f} s" for e, h in reached) + ")"
    if missed:
        top = max(missed, key=lambda e: e.metric(BEST_VAL_ACC) or 0)
        others = f"the best of the {len(missed)} that did not" if len(missed) > 1 else "the one that did not"
        text += (f"; {others}: {name(top)} at "
                 f"{show(BEST_VAL_ACC, top.metric(BEST_VAL_ACC) or 0)} after {top.summary.get('epochs_done')} "
                 f"epochs, {top.metric(WALL_TIME) or 0:,.0f} s")
    return text + "."


@register_answer("run", metric_option=None, reads=[BEST_VAL_ACC, "best_epoch", "epochs_done", FINAL_TRAIN_ACC,
                                                 FINAL_VAL_ACC, "final_val_loss", "end_train_loss"])
def run(entries: List[Entry], run: Selector) -> str:
    """One setting's training, as a question about that run asks it: where its validation accuracy peaked, how it
    ended (training against validation: the gap is the overfitting), over its repeats when it has several."""
    es = select(entries, run)
    if not es:
        return f"{cap_first(_label(run))}: not answered yet (no finished run)."
    name = _label(run, es)

    def m(key: str) -> Optional[Stat]:
        return stat(es, key)

    best, epoch, done = m(BEST_VAL_ACC), m("best_epoch"), m("epochs_done")
    text = (f"The {name} run peaked at {show_stat(BEST_VAL_ACC, best, n=False)} validation accuracy" if best else
            f"The {name} run has no validation accuracy")
    if epoch and done:
        text += f" at epoch {epoch.mean:.0f} of {done.mean:.0f}"
        if epoch.mean >= done.mean:  # its best was its last epoch: more epochs would have gone higher
            text += ", so it was still improving when training stopped"
    tr, va = m(FINAL_TRAIN_ACC), m(FINAL_VAL_ACC)
    if tr and va:
        text += (f"; at the end, training accuracy {show(FINAL_TRAIN_ACC, tr.mean)} against validation "
                 f"{show(FINAL_VAL_ACC, va.mean)}, a gap of {100 * (tr.mean - va.mean):.1f} points")
    end, val = m("end_train_loss"), m("final_val_loss")
    if end and val:
        text += (f", and training loss {show('end_train_loss', end.mean)} against validation "
                 f"{show('final_val_loss', val.mean)}")
    return text + (f" (mean of {len(es)} runs)." if len(es) > 1 else ".")


@register_answer("initial_loss", metric_option=None, reads=["initial_loss"])
def initial_loss(entries: List[Entry]) -> str:
    """The loss before any training step against ln(number of classes), the loss of a uniform guess."""
    pairs = [(e.metric("initial_loss"), e.metric("ln_classes")) for e in entries if e.summary]
    pairs = [(l, c) for l, c in pairs if l is not None and c is not None]
    if not pairs:
        return "Initial loss: not recorded."
    ls = [l for l, _ in pairs]
    c = pairs[0][1]
    k, ratio = round(math.exp(c)), statistics.fmean(ls) / c
    verdict = ("As expected, the loss before any step is that of a uniform guess" if abs(ratio - 1) <= 0.05 else
               "Unexpectedly, the loss before any step is not that of a uniform guess")
    return (f"{verdict}: {statistics.fmean(ls):.4f} (mean of {len(ls)} runs, {min(ls):.4f} to {max(ls):.4f}) "
            f"against ln({k}) = {c:.4f} for {k} classes, a ratio of {ratio:.3f}.")


@register_answer("analysis", metric_option=None, reads=[])
def analysis(entries: List[Entry], step: str, file: str, analysis_dir: Optional[Path] = None) -> str:
    """The result lines an analysis step wrote (<analysis>/<step>/<file>.json, from `cnnlab sweep --analysis`)."""
    path = Path(analysis_dir or "") / step / f"{file}.json"
    if analysis_dir is None or not path.is_file():
        return f"Analysis {step}: not run yet (no {path.name}; run the sweep with --analysis)."
    try:
        lines = json.loads(path.read_text()).get("lines") or []
    except (OSError, ValueError, AttributeError):
        return f"Analysis {step}: {path.name} is unreadable; rerun the step."
    words = analysis_words(path.with_suffix(".csv"), file, lines)
    if words:
        return relabel(words, entries)
    return relabel(f"Analysis {step}: " + " ".join(l.rstrip(".") + "." for l in lines), entries)


def relabel(text: str, entries: Sequence[Entry]) -> str:
    """`text` with each labelled run's name (networks_fastcnn), setting name and variant (vgg_a_bn) replaced by its
    label (report.labels): an analysis writes the names its runs had, a student reads the labels the table uses. A
    name inside another name (vgg_a in vgg_a_bn) or in a step's name (landscape-vgg_a) stays as it is."""
    names: Dict[str, str] = {}
    for e in entries:
        if e.label:
            for n in (e.name, setting_name(e), e.varied.get("variant")):
                if n:
                    names.setdefault(str(n), e.label)
    for n in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(n)}(?![\w-])", lambda _m, lab=names[n]: lab, text)
    return text


# The analyses whose CSV an answer reads back (the keys of range_tests.ANALYSIS_WORDS, named here so that building a
# report does not load torch to ask): a report keeps these CSVs with its run files.
WORDED_ANALYSES = ("find-lr", "find-batch", "smoothness")


def analysis_words(csv_path: Path, file: str, lines: List[str]) -> Optional[str]:
    """A range test's result in plain words (b_min and b_max, lr_min and lr_max, with the losses they rest on), read
    from the CSV beside its result lines; None for analyses without words or without their CSV (then the result
    lines, which name the command's settings, are quoted)."""
    # here, not at the top: the range tests load torch, which reading answers otherwise does not need
    from cnnlab.analysis.range_tests import ANALYSIS_WORDS

    if file not in ANALYSIS_WORDS or not csv_path.is_file():
        return None
    try:
        with csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return ANALYSIS_WORDS[file](rows, lines) if rows else None
    except (OSError, ValueError, KeyError, CnnlabError):
        return None  # an unreadable or odd CSV: the result lines still say what ran


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
        fn = ANSWERS.get(str(data["kind"]))
        check_kwargs(fn, {"entries": None, **opts}, f"answer kind {data['kind']!r}")
    except CnnlabError as e:
        raise CnnlabError(f"{where}: {e}") from None
    if "analysis_dir" in opts:
        raise CnnlabError(f"{where}: analysis_dir is filled in by the report; leave it out")
    option = getattr(fn, "metric_option", "metrics")  # the option naming metrics (best's `by`), not config keys
    for k in ("key", "by"):
        if k in opts and k != option and opts[k] not in ("variant", "group"):
            check_key(opts[k], f"{where} {k}")
    for k in opts.get("where") or {}:
        if k not in ("variant", "group"):
            check_key(k, f"{where} where")
    named = (opts.get(option) or []) if option else []
    for m in [named] if isinstance(named, str) else named:
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
    fn = ANSWERS.get(spec["kind"])
    if getattr(fn, "reads", None) is not None:
        return list(fn.reads)
    option = getattr(fn, "metric_option", "metrics")
    params = inspect.signature(fn).parameters
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
        margins = spec["kind"] in ("compare", "paired", "best")
        measured = any(pooled_std(es, m) is not None for m in used)
        out.append(Answer(spec["kind"], text, spec.get("question", ""), used,
                          ("measured" if measured else "unmeasured") if margins else ""))
    return out
