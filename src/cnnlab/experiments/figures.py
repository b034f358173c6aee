"""Report figures by name: the overlaid curves every report has, and the experiment-specific ones a spec asks for.

    report:
      figures:
        - {kind: sweep, x: optim.lr}                        # best val acc (and final train acc) against a value
        - {kind: bars, by: optim.name, hue: model.options.dropout, y: [wall_time, best_val_acc]}
        - {kind: target, x: augment.repeats, target: 0.94}  # epochs and wall time to a val accuracy
        - {kind: curve, y: val_error}                       # one per-epoch metric, every run overlaid
        - {kind: weights}                                   # per-layer weight histograms (L1 against L2)

Each figure function takes the report's entries (one per run) and its options, draws a matplotlib figure and returns
it with the numbers it drew (`Drawn`), so a table or a test can read them without the picture (STYLE lesson 8).
Learning rates and L2 strengths span decades, so `sweep` uses a log axis when the values do (a symlog axis when one
of them is 0, the L2-free baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import statistics

from matplotlib.ticker import MaxNLocator

from cnnlab.analysis.weights import plot_histograms, sparsity as weight_sparsity, weight_stats
from cnnlab.errors import CnnlabError
from cnnlab.plotting import new_figure
from cnnlab.registry import Registry, check_kwargs
from cnnlab.training.checkpoint import find_checkpoint, load_checkpoint
from cnnlab.training.config import SEED_KEY, check_key
from cnnlab.training.ema import served_weights
from cnnlab.training.losses import describe as describe_loss
# The metrics a figure may plot (one number per run for sweep and bars, a series for curve), their labels and which
# are drawn in percent come from the catalogue (training/metrics.py), under the names this module has used.
from cnnlab.training.metrics import AXIS_LABELS as LABELS, EPOCH_METRICS, PERCENT as ACCURACIES  # noqa: F401
from cnnlab.training.metrics import BEST_VAL_ACC, FINAL_TRAIN_ACC, RUN_METRICS as SUMMARY_METRICS, WALL_TIME
from cnnlab.training.plots import has_lr, plot_curves

FIGURES = Registry("report figure")


def register_figure(kind: str, y: Sequence[str] = EPOCH_METRICS):
    """Register a figure function under `kind`; `y`: the metrics its `y` option may name (SUMMARY_METRICS: one
    number per run; EPOCH_METRICS: a series per run), which `check_figure` reads. Registering is all a new kind
    needs: specs, the report and the reference find it here."""
    def deco(fn):
        fn.y_metrics = tuple(y)
        return FIGURES.register(kind)(fn)

    return deco


# What a config key is, in words, where a sentence or an axis names it (the key itself stays in runs.csv).
KEY_WORDS = {"optim.lr": "learning rate", "optim.weight_decay": "L2 strength", "optim.l1": "L1 strength",
             "optim.name": "optimizer", "optim.momentum": "momentum", "model.name": "model",
             "model.options.dropout": "dropout", "model.options.batch_norm": "batch norm",
             "model.options.activation": "activation", "model.options.width": "width", "batch.size": "batch size",
             "train.epochs": "epochs", "augment.repeats": "batch-augmentation copies", "augment.cutout": "cutout size",
             "augment.crop": "crop padding", "augment.flip": "flip probability", "schedule.name": "schedule",
             "train.label_smoothing": "label smoothing", "variant": "variant", "group": "group"}


def key_words(key: str) -> str:
    return KEY_WORDS.get(key) or key.rsplit(".", 1)[-1].replace("_", " ")


CHANCE_SIGMAS = 3          # best val acc this many binomial std above 1/classes is still chance (did_not_learn)
LOSS_AT_CHANCE = 0.05      # and a last loss within 5% of ln(classes)
DEFAULT_VAL_IMAGES = 5000  # data.val_size None: both datasets' default validation split


@dataclass
class Entry:
    """One run as the report sees it."""
    name: str
    varied: Dict[str, Any]                 # what distinguishes it (group, variant, axis keys)
    state: str                             # finished | diverged | stopped | running | waiting | pending | error ...
    summary: Optional[dict] = None
    metrics: List[dict] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)   # flat: dotted key -> value
    run_dir: Optional[Path] = None
    outside_plan: bool = False             # a store record the spec's plan does not name (other key=value settings)
    label: str = ""                        # its setting in words, from the spec's report.labels ("" : none given)

    @property
    def title(self) -> str:
        """The run as tables and legends name it: its label and seed where the spec labels its setting
        ("BN, lr 0.1 (seed 1)"), else its name."""
        if not self.label:
            return self.name
        seed = self.varied.get(SEED_KEY)
        return self.label + (f" (seed {seed})" if seed is not None else "")

    def value(self, key: str) -> Any:
        if key in self.varied:
            return self.varied[key]
        if key.startswith("model.options.") and key not in self.config:
            return (self.config.get("model.options") or {}).get(key[len("model.options."):])
        return self.config.get(key)

    def sparsity(self, threshold: float = 1e-3) -> Optional[float]:
        """Share of weights with |w| < threshold in the best checkpoint; None without one on this machine."""
        cache = self.__dict__.setdefault("_sparsity", {})  # a report asks for it per table, answer and CSV row
        if threshold not in cache:
            path = find_checkpoint(self.run_dir, "best") if self.run_dir and self.run_dir.is_dir() else None
            if path is not None:
                cache[threshold] = weight_sparsity(served_weights(load_checkpoint(path)), threshold)
            else:  # a report's copy of the run has no checkpoint, but its summary kept the default threshold's value
                kept = (self.summary or {}).get("weight_sparsity") if threshold == 1e-3 else None
                cache[threshold] = float(kept) if isinstance(kept, (int, float)) else None
        return cache[threshold]

    @property
    def outcome(self) -> str:
        """The state a report shows: 'did not learn' for a run that ended normally but never left chance
        (did_not_learn), else the store's or the folder's state."""
        return "did not learn" if self.state in ("finished", "stopped") and self.did_not_learn() else self.state

    def did_not_learn(self) -> bool:
        """A run that ran its course at chance: its best validation accuracy within CHANCE_SIGMAS binomial standard
        deviations of 1/classes (on the run's validation images) and its last loss within LOSS_AT_CHANCE of
        ln(classes), the loss of a uniform guess. Such a run (HW2 2(c)i at lr 1.0: 10.0% for 30 epochs) did not
        diverge, but its numbers measure nothing the others do: a report names it and compares it with nothing."""
        s = self.summary or {}
        best, ln = self.metric(BEST_VAL_ACC), self.metric("ln_classes")
        loss = self.metric("final_val_loss") if self.metric("final_val_loss") is not None else \
            self.metric("final_train_loss")
        if best is None or ln is None or loss is None or s.get("diverged") or ln <= 0:
            return False
        chance = 1 / round(math.exp(ln))
        n = self.config.get("data.val_subset") or self.config.get("data.val_size") or DEFAULT_VAL_IMAGES
        near_chance = best <= chance + CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / n)
        return near_chance and abs(loss / ln - 1) <= LOSS_AT_CHANCE

    def metric(self, key: str) -> Optional[float]:
        v = (self.summary or {}).get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    def series(self, key: str):
        """(epochs, values) of a per-epoch metric; *_error is 1 - *_acc."""
        src = key.replace("_error", "_acc") if key.endswith("_error") else key
        pts = [(r["epoch"], r[src]) for r in self.metrics
               if isinstance(r.get(src), (int, float)) and math.isfinite(r[src])]
        ys = [1 - v for _, v in pts] if key.endswith("_error") else [v for _, v in pts]
        return [e for e, _ in pts], ys


@dataclass
class Drawn:
    title: str
    fig: Any                               # matplotlib Figure
    rows: List[dict]                       # the numbers drawn
    note: str = ""


LABEL_MAX = 48  # characters of a legend label built from the varied keys; longer ones fall back to the run name


def short_keys(keys: Sequence[str]) -> Dict[str, str]:
    """Dotted keys -> the shortest unambiguous tail (optim.lr -> lr; data.seed and train.seed stay whole)."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(1 for other in keys if other == tail or other.endswith("." + tail)) == 1:
                out[k] = tail
                break
        else:
            out[k] = k
    return out


def labels(entries: Sequence[Entry], skip: Sequence[str] = ()) -> Dict[str, str]:
    """Run name -> a short label naming only what differs between these runs ("lr=0.1, batch_norm=true"), for a
    sweep's series and the bars' categories (which merge a setting's seeds); the run name where nothing does. A
    legend of runs uses run_names: the names the runs table gives them."""
    keys = [k for k in dict.fromkeys(k for e in entries for k in e.varied) if k not in skip]
    differ = [k for k in keys if len({_fmt(e.varied.get(k)) for e in entries}) > 1]
    short = short_keys(differ)
    out = {}
    for e in entries:  # a key this run does not vary is read from its config ("repeats=1", not "repeats=None")
        parts = [str(e.value(k)) if k in ("variant", "group") else f"{short[k]}={_fmt(e.value(k))}"
                 for k in differ]
        if e.label and any(k in ("variant", "group") for k in differ):  # its label says its group and variant once
            parts = [e.label] + [p for k, p in zip(differ, parts) if k not in ("variant", "group")]
        out[e.name] = ", ".join(parts) or e.name
    if any(len(v) > LABEL_MAX for v in out.values()):  # different recipes differ everywhere: their names say more
        out = {e.name: e.name for e in entries}
    # a run at chance is drawn like the others (its flat line is the finding) but says what it is in the legend
    return {e.name: out[e.name] + (" (did not learn)" if e.outcome == "did not learn" else "") for e in entries}


def run_names(entries: Sequence[Entry]) -> Dict[str, str]:
    """Run name -> its legend label: the name the runs table gives it (a figure's legend and the table must name a
    run alike), marked when the run never left chance."""
    return {e.name: e.title + (" (did not learn)" if e.outcome == "did not learn" else "") for e in entries}


def _scaled(metric: str, v):
    return 100 * v if metric in ACCURACIES and v is not None else v


def _value_text(metric: str, v: float) -> str:
    if metric in ACCURACIES:
        return f"{100 * v:.1f}%"
    if metric == WALL_TIME:
        return f"{v:,.0f} s" if v >= 100 else f"{v:.1f} s"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _axis_label(metrics: Sequence[str]) -> str:
    if all(m in ACCURACIES for m in metrics):
        return (LABELS.get(metrics[0], metrics[0]) if len(metrics) == 1 else "accuracy") + " (%)"
    return LABELS.get(metrics[0], metrics[0])


def _legend_outside(ax) -> None:
    """The legend to the right of the axes (constrained layout makes room), so it never covers data."""
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()  # as in YAML and the table
    return f"{v:g}" if isinstance(v, float) else str(v)


def _num(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _as_list(y: Union[str, Sequence[str]]) -> List[str]:
    return [y] if isinstance(y, str) else list(y)


# ----------------------------------------------------------------------------------------------------------------------

CURVE_COLOURS = 10  # more runs than this in one panel and the colours repeat: a spec's groups get a row each


@register_figure("curves")
def curves(entries: List[Entry]) -> Optional[Drawn]:
    """Loss, accuracy and learning rate against epoch, every run overlaid: one colour per run, train dashed and
    validation solid, one legend outside the axes. Runs of several groups that are more than CURVE_COLOURS in all
    are drawn a row per group, each with its own legend (Project 2's 25 runs in one panel were 25 legend entries
    over 10 repeating colours)."""
    done = [e for e in entries if e.metrics]
    if not done:
        return None
    groups = list(dict.fromkeys(e.varied.get("group") for e in done))
    if len(done) <= CURVE_COLOURS or len(groups) < 2 or None in groups:
        names = run_names(done)
        runs = {names[e.name]: e.metrics for e in done}
        axes = plot_curves(runs, train_loss_label=_loss_kind(done))
        what = "Loss, accuracy and learning rate" if len(axes) > 2 else "Loss and accuracy"
        return Drawn(f"{what} per epoch (train dashed, validation solid)", axes[0].figure,
                     [{"run": k, "epochs": len(v)} for k, v in runs.items()])
    lr = any(has_lr({e.name: e.metrics}) for e in done)
    fig, grid = new_figure(len(groups), 3 if lr else 2, figsize=(14 if lr else 10, 3.2 * len(groups)))
    rows = []
    for g, row in zip(groups, grid):
        mine = [e for e in done if e.varied.get("group") == g]
        names = _group_names(mine)
        runs = {names[e.name]: e.metrics for e in mine}
        plot_curves(runs, axes=list(row), train_loss_label=_loss_kind(mine), legend="row")
        row[0].set_title(f"{g}: {row[0].get_title()}")
        rows += [{"group": g, "run": k, "epochs": len(v)} for k, v in runs.items()]
    what = "Loss, accuracy and learning rate" if lr else "Loss and accuracy"
    return Drawn(f"{what} per epoch, a row per group (train dashed, validation solid)", fig, rows)


def _loss_kind(entries: List[Entry]) -> str:
    kinds = {describe_loss(e.config.get("train.loss") or "cross_entropy", e.config.get("train.label_smoothing") or 0)
             for e in entries}
    return kinds.pop() if len(kinds) == 1 else "loss or label smoothing differs per run"


def _group_names(entries: List[Entry]) -> Dict[str, str]:
    """Run name -> its legend entry within its group: its label, else what varies within the group in words
    ("width 0.5"), with its seed where seeds vary."""
    out = {}
    for e in entries:
        keys = [k for k in e.varied if k not in ("group", "variant", SEED_KEY)]
        seed = e.varied.get(SEED_KEY)
        name = e.title if e.label else (", ".join(f"{key_words(k)} {_fmt(e.varied[k])}" for k in keys) or
                                        str(e.varied.get("variant") or e.name)) + \
            (f" (seed {seed})" if seed is not None else "")
        out[e.name] = name + (" (did not learn)" if e.outcome == "did not learn" else "")
    return out


def _x_scale(ax, xs: List[float], log: Optional[bool]) -> None:
    """A log x axis (symlog when 0 is among the values) when asked, or, with `log` None, when the positive values
    span a factor of 20 or more."""
    positive = [v for v in xs if v > 0]
    if log is None:
        log = len(positive) >= 2 and max(positive) / min(positive) >= 20
    if log:
        if 0 in xs and positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        elif positive:
            ax.set_xscale("log")
        if len(xs) <= 12:  # a handful of settings: tick each one as it is written (64 ... 8192, not 10^2 ... 10^4)
            close = any(b / a <= 2.5 for a, b in zip(positive, positive[1:]))  # 0.005 beside 0.01 would overlap
            ax.set_xticks(xs, [_fmt(v) for v in xs], rotation=40 if close else 0, ha="right" if close else "center")
            ax.minorticks_off()


def _mark_failed(ax, es: List[Entry], x: str, metric: str, first: bool, flat_labelled: bool) -> bool:
    """Mark a group's diverged runs (a red x on the axis) and ringed points for runs that never learned; returns
    whether any of the latter were drawn (each legend entry is labelled once)."""
    bad = [e.value(x) for e in es if e.state == "diverged"]
    if bad:
        ax.plot(bad, [0] * len(bad), "x", color="red", markersize=10, mew=2, label="diverged" if first else None)
    flat = [(e.value(x), _scaled(metric, e.metric(metric))) for e in es
            if e.outcome == "did not learn" and e.metric(metric) is not None]
    if flat:  # ringed: a point at chance is a run that never learned, not a bad setting's result
        ax.plot(*zip(*flat), "o", mfc="none", color="0.3", markersize=12, mew=1.5,
                label="did not learn (at chance)" if not flat_labelled else None)
    return bool(flat)


@register_figure("sweep", y=SUMMARY_METRICS)
def sweep(entries: List[Entry], x: str, y: Union[str, List[str]] = (BEST_VAL_ACC, FINAL_TRAIN_ACC),
          log: Optional[bool] = None, series: Optional[str] = None) -> Optional[Drawn]:
    """y against the value of config key x (one line per value of `series`, else per combination of the other
    varied keys); diverged runs are marked with a red x on the axis. Repeated seeds are averaged (mean ± std)."""
    ys = _as_list(y)
    pts = [e for e in entries if _num(e.value(x)) is not None]
    if not pts:
        return None
    xs = sorted({_num(e.value(x)) for e in pts})
    fig, axes = new_figure(figsize=(8, 4.4))
    ax = axes[0][0]
    _x_scale(ax, xs, log)
    along = (x, *_covarying(pts, x), SEED_KEY)  # zipped with x (epochs zipped with batch size): the x axis itself
    names = labels(pts, skip=along)
    groups: Dict[str, List[Entry]] = {}
    for e in pts:
        key = _fmt(e.value(series)) if series else names[e.name]
        key = key.removesuffix(" (did not learn)")  # its ring says so; it stays on its setting's line
        groups.setdefault(key if key != e.name else "", []).append(e)
    rows = []
    any_flat = False
    for i, (gname, es) in enumerate(groups.items()):
        for j, metric in enumerate(ys):
            stats = _by_value(es, x, metric)
            if stats:
                label = " ".join(p for p in (gname, LABELS.get(metric, metric) if len(ys) > 1 else "") if p)
                vx = [v for v, _, _, _ in stats]
                mean = [_scaled(metric, m) for _, m, _, _ in stats]
                err = [_scaled(metric, sd) for _, _, sd, _ in stats]
                ax.errorbar(vx, mean, yerr=err if any(err) else None, fmt=["-o", "--s", ":^"][j % 3],
                            color=f"C{i % 10}", label=label or None, capsize=3, markersize=4)
            for e in es:
                rows.append({"series": gname, x: e.value(x), metric: e.metric(metric), "state": e.outcome})
        any_flat = _mark_failed(ax, es, x, ys[0], first=i == 0, flat_labelled=any_flat) or any_flat
    ax.set(xlabel=key_words(x), ylabel=_axis_label(ys),
           title=f"{', '.join(LABELS.get(m, m) for m in ys)} against {key_words(x)}")
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    return Drawn(f"{LABELS.get(ys[0], ys[0])} against {key_words(x)}", fig, rows)


def _by_value(entries: List[Entry], x: str, metric: str) -> List[tuple]:
    """[(x value, mean, std, n)] of `metric` over the runs at each value of x (seeds repeated), sorted by x."""
    at: Dict[float, List[float]] = {}
    for e in entries:
        v = e.metric(metric)
        if v is not None:
            at.setdefault(_num(e.value(x)), []).append(v)
    return [(k, statistics.fmean(vs), statistics.stdev(vs) if len(vs) > 1 else 0.0, len(vs))
            for k, vs in sorted(at.items())]


def _covarying(entries: List[Entry], x: str) -> List[str]:
    """Varied keys whose value is fixed by the value of x and that take more than one value (zipped axes)."""
    keys = {k for e in entries for k in e.varied} - {x}
    out = []
    for k in keys:
        pairs = {(_fmt(e.value(x)), _fmt(e.value(k))) for e in entries}
        if len({p[1] for p in pairs}) > 1 and len(pairs) == len({p[0] for p in pairs}):
            out.append(k)
    return out


def _dot_axes(ax, cats: List[str], metric: str, by: Optional[str]) -> None:
    """A dot-plot panel: one row per category, first on top, the value axis with room for the value labels."""
    ax.set_yticks(range(len(cats)), cats)
    ax.invert_yaxis()  # first run on top, as in the table
    ax.set_ylim(len(cats) - 0.5, -0.5)
    ax.margins(x=0.25)  # room for the value labels
    name = LABELS.get(metric, metric)
    ax.set(xlabel=_axis_label([metric]), title=name + (f" by {key_words(by)}" if by else ""))
    ax.grid(alpha=0.3, axis="x")


@register_figure("bars", y=SUMMARY_METRICS)
def bars(entries: List[Entry], y: Union[str, List[str]] = WALL_TIME, by: Optional[str] = None,
         hue: Optional[str] = None) -> Optional[Drawn]:
    """A dot per run (or per value of `by`, one colour per value of `hue`), one panel per metric, each value written
    beside its dot. Runs that differ only in `train.seed` are one dot: the mean, with a ±1 std bar and n. The value
    axis is zoomed to the values (a dot plot needs no zero baseline), so 33.4% and 34.0% are told apart."""
    ys = _as_list(y)
    done = [e for e in entries if e.summary]
    if not done:
        return None
    names = labels(done, skip=(hue, SEED_KEY) if hue else (SEED_KEY,))
    def cat(e: Entry) -> str:  # a variant or group by its label where the spec gives one
        if not by:
            return names[e.name]
        return e.label if by in ("variant", "group") and e.label else _fmt(e.value(by))

    cats = list(dict.fromkeys(cat(e) for e in done))
    hues = list(dict.fromkeys(_fmt(e.value(hue)) for e in done)) if hue else [""]
    # up to two panels side by side: four in a row shrink to unreadable text on a page
    ncols = min(len(ys), 2)
    nrows = -(-len(ys) // ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(5.6 * ncols, nrows * (1.2 + 0.32 * len(cats) * len(hues))))
    for ax in axes.flat[len(ys):]:
        ax.set_visible(False)
    rows = []
    for ax, metric in zip(axes.flat, ys):
        for j, h in enumerate(hues):
            for i, c in enumerate(cats):
                vals = [e.metric(metric) for e in done if cat(e) == c and (not hue or _fmt(e.value(hue)) == h)]
                vals = [v for v in vals if v is not None]
                if not vals:
                    continue
                mean, sd = statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0
                rows.append({"category": c, **({hue: h} if hue else {}), metric: mean, "std": sd, "n": len(vals)})
                pos = i + (j - (len(hues) - 1) / 2) * 0.8 / len(hues)
                ax.errorbar(_scaled(metric, mean), pos, xerr=_scaled(metric, sd) if sd else None, fmt="o",
                            color=f"C{j % 10}", capsize=3, label=(f"{key_words(hue)} {h}" if hue and i == 0 else None))
                text = _value_text(metric, mean) + (f" ± {_value_text(metric, sd)} (n={len(vals)})" if sd else "")
                ax.annotate(text, (_scaled(metric, mean), pos), xytext=(6, 4), textcoords="offset points",
                            fontsize=8)
        _dot_axes(ax, cats, metric, by)
    if hue:  # one legend for all panels (they share the colours), below them: beside each it would crowd the next
        handles, names_ = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names_, loc="outside lower center", ncol=min(len(hues), 4))
    return Drawn(", ".join(LABELS.get(m, m) for m in ys) + (f" by {key_words(by)}" if by else " per run"), fig, rows)


def reach(entry: Entry, target: float) -> Optional[dict]:
    """First epoch whose validation accuracy is >= target, with the wall time by then; None if never."""
    for r in entry.metrics:
        v = r.get("val_acc")
        if isinstance(v, (int, float)) and v >= target:
            return {"epoch": r["epoch"], "time": r.get("time")}
    return None


def had_target(entry: Entry, target: float) -> bool:
    """Whether the run was asked to record `target` (train.targets), so a miss means "not reached"."""
    return any(abs(float(t) - target) < 1e-9 for t in (entry.config.get("train.targets") or []))


@register_figure("target")
def target(entries: List[Entry], target: Optional[float] = None, x: Optional[str] = None) -> Optional[Drawn]:
    """Epochs and wall time to reach `target` validation accuracy (default: the runs' first train.targets value,
    so a quick profile can aim lower than the full one), against config key x (or per run)."""
    done = [e for e in entries if e.metrics]
    if target is None:
        target = next((e.config["train.targets"][0] for e in done if e.config.get("train.targets")), None)
    if not done or target is None:
        return None
    names = labels(done)
    fig, axes = new_figure(1, 2, figsize=(11, 1.4 + 0.32 * len(done)))
    rows = []
    seeds = len({e.varied.get(SEED_KEY) for e in done}) > 1  # repeats of one value: tell their bars apart
    cats = [(_fmt(e.value(x)) + (f", seed {e.varied.get(SEED_KEY)}" if seeds else "") if x else names[e.name])
            for e in done]
    for e in done:
        hit = reach(e, target)
        rows.append({"run": e.name, **({x: e.value(x)} if x else {}), "epoch": hit and hit["epoch"],
                     "time": hit and hit["time"], "epochs_run": len(e.metrics)})
    for ax, key, unit in ((axes[0][0], "epoch", "epochs"), (axes[0][1], "time", "wall time (s)")):
        vals = [r[key] if r[key] is not None else 0 for r in rows]
        bars_ = ax.barh(range(len(rows)), vals, color=["C0" if r[key] is not None else "0.85" for r in rows])
        for b, r, e in zip(bars_, rows, done):
            text = (f"{r[key]:.0f}" if r[key] is not None else
                    f"not reached in {r['epochs_run']} epochs" if had_target(e, target) or r["epochs_run"] else "")
            ax.annotate(text, (b.get_width(), b.get_y() + b.get_height() / 2), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), cats)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.margins(x=0.3)
        ax.set(xlabel=unit, title=f"{unit} to {target:.0%} validation accuracy")
        if x:
            ax.set_ylabel(x)  # the bars' labels are values of this key: say which
        ax.grid(alpha=0.3, axis="x")
    return Drawn(f"Epochs and time to {target:.0%} validation accuracy", fig, rows)


@register_figure("curve")
def curve(entries: List[Entry], y: str = "val_error", logy: bool = False) -> Optional[Drawn]:
    """One per-epoch metric of every run, overlaid, one colour per run, the legend outside the axes."""
    names = run_names(entries)
    fig, axes = new_figure(figsize=(8, 4.4))
    ax = axes[0][0]
    rows = []
    for i, e in enumerate(entries):
        xs, ys = e.series(y)
        if xs:
            ax.plot(xs, [_scaled(y, v) for v in ys], "-o" if len(xs) < 4 else "-", color=f"C{i % 10}",
                    label=names[e.name], markersize=3)
            rows.append({"run": e.name, "epochs": len(xs), f"last_{y}": ys[-1], f"min_{y}": min(ys)})
    if not rows:
        return None
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=_axis_label([y]), title=f"{LABELS.get(y, y)} per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return Drawn(f"{LABELS.get(y, y)} per epoch", fig, rows)


@register_figure("weights")
def weights(entries: List[Entry], checkpoint: str = "best", threshold: float = 1e-3,
            max_layers: int = 8) -> Optional[Drawn]:
    """Per-layer weight histograms of every run with a checkpoint here (cnnlab.analysis.weights), overlaid."""
    names = run_names(entries)
    states = {}
    for e in entries:
        path = find_checkpoint(e.run_dir, checkpoint) if e.run_dir and e.run_dir.is_dir() else None
        if path is not None:
            states[names[e.name]] = served_weights(load_checkpoint(path))
    if not states:
        return None
    stats = weight_stats(states, threshold=threshold)
    axes = plot_histograms(stats, max_layers=max_layers)
    fig = axes.flat[0].figure
    rows = [r for s in stats for r in s.rows() if r["layer"] == "ALL"]
    missing = len(entries) - len(states)
    return Drawn(f"Weight histograms per layer ({checkpoint}.pt; sparsity = share of |w| < {threshold:g})", fig, rows,
                 f"{missing} run(s) without a checkpoint on this machine are left out" if missing else "")


# ----------------------------------------------------------------------------------------------------------------------

def check_figure(data: Dict[str, Any], where: str) -> Dict[str, Any]:
    """Validate one `report.figures` entry: a known kind, options it takes, known config keys and metrics."""
    if "kind" not in data:
        raise CnnlabError(f"{where}: missing 'kind'; one of {', '.join(FIGURES.names())}")
    opts = {k: v for k, v in data.items() if k not in ("kind", "group", "variant")}
    try:
        fn = FIGURES.get(str(data["kind"]))
        check_kwargs(fn, {"entries": None, **opts}, f"figure kind {data['kind']!r}")
    except CnnlabError as e:
        raise CnnlabError(f"{where}: {e}") from None
    if "group" in data and not isinstance(data["group"], str):
        raise CnnlabError(f"{where}: group must be the name of one of the spec's groups, got {data['group']!r}")
    if "variant" in data and not isinstance(data["variant"], str):
        raise CnnlabError(f"{where}: variant must be the name of one of the spec's variants, got "
                          f"{data['variant']!r}")
    for k in ("x", "by", "hue", "series"):
        if opts.get(k) is not None and opts[k] not in ("variant", "group"):
            check_key(opts[k], f"{where} {k}")
    metrics = getattr(fn, "y_metrics", EPOCH_METRICS)
    if "y" in opts:
        for m in _as_list(opts["y"]):
            if m not in metrics:
                raise CnnlabError(f"{where}: y {m!r} is not a metric of this figure; choose from {', '.join(metrics)}")
    if data["kind"] == "target" and opts.get("target") is not None and not (
            isinstance(opts["target"], (int, float)) and 0 < opts["target"] <= 1):
        raise CnnlabError(f"{where}: target must be a validation accuracy in (0, 1], got {opts.get('target')!r}")
    return {"kind": str(data["kind"]), **opts, **{k: data[k] for k in ("group", "variant") if k in data}}


def draw(kind: str, entries: List[Entry], group: Optional[str] = None, variant: Optional[str] = None,
         **opts) -> Optional[Drawn]:
    """Draw figure `kind` over the entries (only those of spec group `group`, and of variant `variant`, when
    given: one run's curves, as a question about that run asks)."""
    if group is not None:
        entries = [e for e in entries if e.varied.get("group") == group]
    if variant is not None:
        entries = [e for e in entries if e.varied.get("variant") == variant]
    return FIGURES.get(kind)(entries, **opts)
