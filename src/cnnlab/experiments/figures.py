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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.registry import Registry, check_kwargs  # noqa: E402

FIGURES = Registry("report figure")
SUMMARY_METRICS = ("best_val_acc", "best_epoch", "final_train_acc", "final_val_acc", "final_train_loss", "wall_time",
                   "images_per_sec", "params", "epochs_done", "test_acc", "test_loss", "val_acc", "val_loss")
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "train_error", "val_error", "lr", "batch_size",
                 "epoch_time", "images_per_sec", "time")
LABELS = {"best_val_acc": "best validation accuracy", "final_train_acc": "final training accuracy",
          "final_val_acc": "final validation accuracy", "wall_time": "training time (s)",
          "images_per_sec": "images / s", "params": "parameters", "best_epoch": "epoch of best val acc",
          "val_error": "validation error", "train_error": "training error", "train_loss": "training loss",
          "val_loss": "validation loss", "val_acc": "validation accuracy", "train_acc": "training accuracy",
          "test_acc": "test accuracy (best checkpoint)", "test_loss": "test loss (best checkpoint)"}


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

    def value(self, key: str) -> Any:
        if key in self.varied:
            return self.varied[key]
        if key.startswith("model.options.") and key not in self.config:
            return (self.config.get("model.options") or {}).get(key[len("model.options."):])
        return self.config.get(key)

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


def _label(entry: Entry, skip: Sequence[str] = ()) -> str:
    parts = [f"{_short(k)}={_fmt(v)}" if k not in ("variant", "group") else str(v)
             for k, v in entry.varied.items() if k not in skip]
    return ", ".join(parts) or entry.name


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _num(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _as_list(y: Union[str, Sequence[str]]) -> List[str]:
    return [y] if isinstance(y, str) else list(y)


# ----------------------------------------------------------------------------------------------------------------------

@FIGURES.register("curves")
def curves(entries: List[Entry]) -> Optional[Drawn]:
    """Training and validation loss and accuracy against epoch, every run overlaid (train dashed, val solid)."""
    from cnnlab.training.plots import plot_curves

    runs = {_label(e): e.metrics for e in entries if e.metrics}
    if not runs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    plot_curves(runs, axes)
    if len(runs) > 6:  # many runs: one legend outside, not two unreadable ones inside
        for ax in axes:
            if ax.get_legend():
                ax.get_legend().remove()
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="x-small")
        fig.subplots_adjust(bottom=0.1 + 0.03 * math.ceil(len(labels) / 3))
    rows = [{"run": k, "epochs": len(v)} for k, v in runs.items()]
    return Drawn("Loss and accuracy per epoch (train dashed, validation solid)", fig, rows)


@FIGURES.register("sweep")
def sweep(entries: List[Entry], x: str, y: Union[str, List[str]] = ("best_val_acc", "final_train_acc"),
          log: Optional[bool] = None, series: Optional[str] = None) -> Optional[Drawn]:
    """y against the value of config key x (one line per value of `series`, else per combination of the other
    varied keys); diverged runs are marked with a red x on the axis."""
    ys = _as_list(y)
    pts = [e for e in entries if _num(e.value(x)) is not None]
    if not pts:
        return None
    xs = sorted({_num(e.value(x)) for e in pts})
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    if log is None:
        positive = [v for v in xs if v > 0]
        log = len(positive) >= 2 and max(positive) / min(positive) >= 20
    if log:
        positive = [v for v in xs if v > 0]
        if 0 in xs and positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        elif positive:
            ax.set_xscale("log")
    groups: Dict[str, List[Entry]] = {}
    along = (x, *_covarying(pts, x))  # zipped with x (epochs zipped with batch size): part of the x axis, not a series
    for e in pts:
        key = _fmt(e.value(series)) if series else _label(e, skip=along)
        groups.setdefault(key if key != e.name else "", []).append(e)
    rows = []
    for i, (gname, es) in enumerate(groups.items()):
        es = sorted(es, key=lambda e: _num(e.value(x)))
        for j, metric in enumerate(ys):
            good = [(e.value(x), e.metric(metric)) for e in es if e.metric(metric) is not None]
            if good:
                label = " ".join(p for p in (gname, LABELS.get(metric, metric) if len(ys) > 1 else "") if p)
                ax.plot(*zip(*good), ["-o", "--s", ":^"][j % 3], color=f"C{i % 10}", label=label or None)
            for e in es:
                rows.append({"series": gname, x: e.value(x), metric: e.metric(metric), "state": e.state})
        bad = [e.value(x) for e in es if e.state == "diverged"]
        if bad:
            ax.plot(bad, [0] * len(bad), "x", color="red", markersize=10, mew=2,
                    label="diverged" if i == 0 else None)
    ax.set(xlabel=x, ylabel=LABELS.get(ys[0], ys[0]) if len(ys) == 1 else "accuracy",
           title=f"{', '.join(LABELS.get(m, m) for m in ys)} against {_short(x)}")
    ax.grid(alpha=0.3, which="both")
    if any(not str(line.get_label()).startswith("_") for line in ax.lines):
        ax.legend(fontsize="small")
    fig.tight_layout()
    return Drawn(f"{LABELS.get(ys[0], ys[0])} against {x}", fig, rows)


def _covarying(entries: List[Entry], x: str) -> List[str]:
    """Varied keys whose value is fixed by the value of x and that take more than one value (zipped axes)."""
    keys = {k for e in entries for k in e.varied} - {x}
    out = []
    for k in keys:
        pairs = {(_fmt(e.value(x)), _fmt(e.value(k))) for e in entries}
        if len({p[1] for p in pairs}) > 1 and len(pairs) == len({p[0] for p in pairs}):
            out.append(k)
    return out


@FIGURES.register("bars")
def bars(entries: List[Entry], y: Union[str, List[str]] = "wall_time", by: Optional[str] = None,
         hue: Optional[str] = None) -> Optional[Drawn]:
    """A bar per run (or per value of `by`, with one bar per value of `hue` beside each other), one panel per y."""
    ys = _as_list(y)
    done = [e for e in entries if e.summary]
    if not done:
        return None
    cats = list(dict.fromkeys(_fmt(e.value(by)) if by else _label(e, skip=(hue,) if hue else ()) for e in done))
    hues = list(dict.fromkeys(_fmt(e.value(hue)) for e in done)) if hue else [""]
    panel = max(4.0, 0.5 * len(cats) * len(hues) + 1.5)  # inches per panel: room for every bar's label
    fig, axes = plt.subplots(1, len(ys), figsize=(min(16.0, panel * len(ys)), 4.6), squeeze=False)
    width = 0.8 / len(hues)
    rows = []
    for ax, metric in zip(axes[0], ys):
        for j, h in enumerate(hues):
            vals = []
            for c in cats:
                match = [e for e in done if (_fmt(e.value(by)) if by else _label(e, skip=(hue,) if hue else ())) == c
                         and (not hue or _fmt(e.value(hue)) == h)]
                v = match[0].metric(metric) if match else None
                vals.append(v if v is not None else 0.0)
                rows.append({"category": c, **({hue: h} if hue else {}), metric: v})
            ax.bar([i + (j - (len(hues) - 1) / 2) * width for i in range(len(cats))], vals, width,
                   label=f"{_short(hue)}={h}" if hue else None, color=f"C{j % 10}")
        ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 4 else 0, ha="right" if len(cats) > 4 else
                      "center", fontsize="small")
        name = LABELS.get(metric, metric)
        ax.set(ylabel=name, title=name + (f" by {_short(by)}" if by else ""))
        ax.grid(alpha=0.3, axis="y")
        if hue:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return Drawn(", ".join(LABELS.get(m, m) for m in ys) + (f" by {by}" if by else " per run"), fig, rows)


def reach(entry: Entry, target: float) -> Optional[dict]:
    """First epoch whose validation accuracy is >= target, with the wall time by then; None if never."""
    for r in entry.metrics:
        v = r.get("val_acc")
        if isinstance(v, (int, float)) and v >= target:
            return {"epoch": r["epoch"], "time": r.get("time")}
    return None


@FIGURES.register("target")
def target(entries: List[Entry], target: Optional[float] = None, x: Optional[str] = None) -> Optional[Drawn]:
    """Epochs and wall time to reach `target` validation accuracy (default: the runs' first train.targets value,
    so a quick profile can aim lower than the full one), against config key x (or per run)."""
    done = [e for e in entries if e.metrics]
    if target is None:
        target = next((e.config["train.targets"][0] for e in done if e.config.get("train.targets")), None)
    if not done or target is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    rows = []
    labels = [(_fmt(e.value(x)) if x else _label(e)) for e in done]
    for e, lab in zip(done, labels):
        hit = reach(e, target)
        rows.append({"run": e.name, **({x: e.value(x)} if x else {}), "epoch": hit and hit["epoch"],
                     "time": hit and hit["time"], "epochs_run": len(e.metrics)})
    for ax, key, unit in ((axes[0], "epoch", "epochs"), (axes[1], "time", "wall time (s)")):
        vals = [r[key] if r[key] is not None else 0 for r in rows]
        bars_ = ax.bar(range(len(rows)), vals, color=["C0" if r[key] is not None else "lightgray" for r in rows])
        for b, r in zip(bars_, rows):
            if r[key] is None:
                ax.annotate("not reached", (b.get_x() + b.get_width() / 2, 0), ha="center", va="bottom",
                            fontsize="x-small", rotation=90)
        ax.set_xticks(range(len(rows)), labels, fontsize="small", rotation=30 if len(rows) > 5 else 0)
        ax.set(xlabel=x or "run", ylabel=unit, title=f"{unit} to {target:.0%} validation accuracy")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return Drawn(f"Epochs and time to {target:.0%} validation accuracy", fig, rows)


@FIGURES.register("curve")
def curve(entries: List[Entry], y: str = "val_error", logy: bool = False) -> Optional[Drawn]:
    """One per-epoch metric of every run, overlaid."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    rows = []
    for i, e in enumerate(entries):
        xs, ys = e.series(y)
        if xs:
            ax.plot(xs, ys, "-o" if len(xs) < 4 else "-", color=f"C{i % 10}", label=_label(e), markersize=3)
            rows.append({"run": e.name, "epochs": len(xs), f"last_{y}": ys[-1], f"min_{y}": min(ys)})
    if not rows:
        plt.close(fig)
        return None
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=LABELS.get(y, y), title=f"{LABELS.get(y, y)} per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2 if len(rows) > 6 else 1)
    fig.tight_layout()
    return Drawn(f"{LABELS.get(y, y)} per epoch", fig, rows)


@FIGURES.register("weights")
def weights(entries: List[Entry], checkpoint: str = "best", threshold: float = 1e-3,
            max_layers: int = 8) -> Optional[Drawn]:
    """Per-layer weight histograms of every run with a checkpoint here (cnnlab.analysis.weights), overlaid."""
    from cnnlab.analysis.weights import plot_histograms, weight_stats
    from cnnlab.training.checkpoint import find_checkpoint, load_checkpoint

    states = {}
    for e in entries:
        path = find_checkpoint(e.run_dir, checkpoint) if e.run_dir and e.run_dir.is_dir() else None
        if path is not None:
            states[_label(e)] = load_checkpoint(path)["model"]
    if not states:
        return None
    stats = weight_stats(states, threshold=threshold)
    axes = plot_histograms(stats, max_layers=max_layers)
    fig = axes.flat[0].figure
    fig.tight_layout()
    rows = [r for s in stats for r in s.rows() if r["layer"] == "ALL"]
    missing = len(entries) - len(states)
    return Drawn(f"Weight histograms per layer ({checkpoint}.pt; sparsity = share of |w| < {threshold:g})", fig, rows,
                 f"{missing} run(s) without a checkpoint on this machine are left out" if missing else "")


# ----------------------------------------------------------------------------------------------------------------------

def check_figure(data: Dict[str, Any], where: str) -> Dict[str, Any]:
    """Validate one `report.figures` entry: a known kind, options it takes, known config keys and metrics."""
    from cnnlab.experiments.spec import check_key

    if "kind" not in data:
        raise CnnlabError(f"{where}: missing 'kind'; one of {', '.join(FIGURES.names())}")
    opts = {k: v for k, v in data.items() if k not in ("kind", "group")}
    try:
        fn = FIGURES.get(str(data["kind"]))
        check_kwargs(fn, {"entries": None, **opts}, f"figure kind {data['kind']!r}")
    except CnnlabError as e:
        raise CnnlabError(f"{where}: {e}") from None
    if "group" in data and not isinstance(data["group"], str):
        raise CnnlabError(f"{where}: group must be the name of one of the spec's groups, got {data['group']!r}")
    for k in ("x", "by", "hue", "series"):
        if opts.get(k) is not None and opts[k] not in ("variant", "group"):
            check_key(opts[k], f"{where} {k}")
    metrics = SUMMARY_METRICS if data["kind"] in ("sweep", "bars") else EPOCH_METRICS
    if "y" in opts:
        for m in _as_list(opts["y"]):
            if m not in metrics:
                raise CnnlabError(f"{where}: y {m!r} is not a metric of this figure; choose from {', '.join(metrics)}")
    if data["kind"] == "target" and opts.get("target") is not None and not (
            isinstance(opts["target"], (int, float)) and 0 < opts["target"] <= 1):
        raise CnnlabError(f"{where}: target must be a validation accuracy in (0, 1], got {opts.get('target')!r}")
    return {"kind": str(data["kind"]), **opts, **({"group": data["group"]} if "group" in data else {})}


def draw(kind: str, entries: List[Entry], group: Optional[str] = None, **opts) -> Optional[Drawn]:
    """Draw figure `kind` over the entries (only those of spec group `group` when given)."""
    if group is not None:
        entries = [e for e in entries if e.varied.get("group") == group]
    return FIGURES.get(kind)(entries, **opts)
