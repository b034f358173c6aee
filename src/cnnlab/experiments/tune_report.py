"""The report of a tuning study: what `cnnlab tune` leaves in OUT/<spec>/tune-<profile>/ besides the trial folders.

    report.md        the best trials, parameter importances (Optuna's default evaluator), every trial with its
                     state, value and the epoch it was pruned at, and the figure
    trials.csv       one row per trial: number, state, value, pruned_at, epochs, seconds, one column per parameter
    best-1.yaml ...  the best trials' complete run configs, ready for `cnnlab train -c best-1.yaml`
    history.png      the value of each trial by trial number (pruned ones marked) with the best so far, and the
                     per-epoch metric of every trial, pruned ones ending where they were stopped
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Dict, List

import optuna
from optuna.trial import TrialState

from cnnlab.experiments.report import md_text
from cnnlab.experiments.tune import trial_config
from cnnlab.fileio import atomic_write_text
from cnnlab.plotting import new_figure, save_figure

TOP = 3


def _state(t) -> str:
    if t.state == TrialState.PRUNED:
        return "pruned" if "pruned_at" in t.user_attrs else str(t.user_attrs.get("status", "pruned"))
    return t.user_attrs.get("status", t.state.name.lower()) if t.state == TrialState.FAIL else t.state.name.lower()


def _value(t):
    """A trial's value: its returned one, or for a pruned trial the last metric it reported."""
    if t.value is not None:
        return t.value
    return t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def trial_rows(study: optuna.Study) -> List[Dict[str, object]]:
    keys = sorted({k for t in study.trials for k in t.params})
    rows = []
    for t in study.trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append({"trial": t.number, "state": _state(t), "value": _value(t),
                     "pruned_at": t.user_attrs.get("pruned_at"), "epochs": t.user_attrs.get("epochs"),
                     "seconds": seconds, **{k: t.params.get(k) for k in keys}})
    return rows


def best_trials(study: optuna.Study) -> list:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: sign * t.value)[:TOP]


def importances(study: optuna.Study) -> Dict[str, float]:
    """Optuna's parameter importances (its default evaluator); empty while fewer than two trials are complete."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "importances will be equal" on tiny studies: the table shows that
        try:
            return optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):
            return {}


def history_figure(study: optuna.Study, metric: str):
    fig, axes = new_figure(1, 2, figsize=(11, 4))
    ax, ax2 = axes[0]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best, best_line = None, []
    for t in study.trials:
        v = _value(t)
        if v is None:
            continue
        pruned = t.state != TrialState.COMPLETE
        ax.scatter([t.number], [v], marker="x" if pruned else "o", color="#999" if pruned else "#2b5797", zorder=3)
        if not pruned:
            best = v if best is None or (v > best if maximize else v < best) else best
        best_line.append((t.number, best))
        steps = sorted(t.intermediate_values)
        ax2.plot(steps, [t.intermediate_values[s] for s in steps], ls="--" if pruned else "-",
                 color="#999" if pruned else "#2b5797", lw=1, marker="x" if pruned else None, markevery=[-1])
    pts = [(n, b) for n, b in best_line if b is not None]
    if pts:
        ax.step([n for n, _ in pts], [b for _, b in pts], where="post", color="#c0392b", label="best so far")
        ax.legend(loc="lower right" if maximize else "upper right", frameon=False)
    ax.set(xlabel="trial", ylabel=metric, title="Trials (o complete, x pruned)")
    ax2.set(xlabel="epoch", ylabel=metric, title="Per epoch (dashed, x: pruned where it stopped)")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.xaxis.get_major_locator().set_params(integer=True)
    return fig


def write_tune_report(study: optuna.Study, plan) -> Path:
    folder = plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(folder / "trials.csv", buf.getvalue())
    best = best_trials(study)
    for k, t in enumerate(best, start=1):
        cfg = trial_config(plan, t.number, t.params)
        cfg.name, cfg.out = f"best-{k}-trial-{t.number:03d}", "runs"
        atomic_write_text(folder / f"best-{k}.yaml", f"# trial {t.number} of {plan.study}: {plan.tune.metric} "
                          f"{t.value:.4f}\n# run it: cnnlab train -c {folder / f'best-{k}.yaml'}\n" + cfg.to_yaml())
    save_figure(history_figure(study, plan.tune.metric), folder / "history.png")
    atomic_write_text(folder / "report.md", _markdown(study, plan, rows, best))
    return folder / "report.md"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    return (["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows] + [""])


def _markdown(study, plan, rows, best) -> str:
    t = plan.tune
    states = [r["state"] for r in rows]
    lines = [f"# Tuning {md_text(plan.study)}", ""]
    if plan.spec.question:
        lines += [f"*{md_text(plan.spec.question)}*", ""]
    lines += [f"{len(rows)} trials: {states.count('complete')} complete, {states.count('pruned')} pruned, "
              f"{len(rows) - states.count('complete') - states.count('pruned')} other; {t.sampler} sampler, "
              f"{t.pruner} pruner, {t.direction} {t.metric} (a trial's value is its best epoch's).", ""]
    if best:
        lines += ["## Best trials", ""] + _table(
            ["rank", "trial", t.metric, "parameters", "config"],
            [[str(k), str(b.number), f"{b.value:.4f}", ", ".join(f"{p}={_fmt(v)}" for p, v in b.params.items()),
              f"best-{k}.yaml"] for k, b in enumerate(best, start=1)])
    imp = importances(study)
    if imp:
        lines += ["## Parameter importances (Optuna's default evaluator, PED-ANOVA in Optuna 5)", ""] + _table(
            ["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()])
    keys = [k for k in rows[0] if k not in ("trial", "state", "value", "pruned_at", "epochs", "seconds")] if rows \
        else []
    lines += ["## Every trial", ""] + _table(
        ["trial", "state", t.metric, "pruned at epoch", "epochs", "seconds", *keys],
        [[str(r["trial"]), r["state"], _fmt(r["value"]), _fmt(r["pruned_at"]), _fmt(r["epochs"]),
          _fmt(round(r["seconds"], 1) if r["seconds"] else None), *[_fmt(r[k]) for k in keys]] for r in rows])
    lines += ["![trial history](history.png)", ""]
    return "\n".join(lines)
