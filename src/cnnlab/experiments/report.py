"""Comparison reports: a self-contained HTML page (figures embedded as SVG), a Markdown twin with PNG figures,
and `runs.csv` with every run's numbers.

`cnnlab report RUN_OR_SPEC...` accepts run folders, folders of run folders (a sweep folder), and experiment specs.
For a spec the runs come from the results store (summary and per-epoch metrics are kept there, so a sweep spread over
several machines reports from any of them), falling back to the run folders for runs the store does not know, and
then to the report's own copies: every report of a spec keeps each run's config.yaml, metrics.csv and summary.json
(no checkpoints) in <stem>_runs/ beside it, so that a committed results folder can be reported again, with the same
answers, in a clone that has neither the store nor the run folders.

The page holds, per source: the question the spec asks, what the runs actually used (data, images, epochs), a table
of runs (the run, its best validation accuracy, each config key that differs between runs by its full dotted name,
then results; columns equal in every run are said once above it), the overlaid loss/accuracy/lr curves, the spec's
own figures (figures.py), the PNGs its analysis steps wrote, and the best run's per-class accuracy and confusion
matrix when `cnnlab evaluate` has been run on it. The page is laid out for a 1280-pixel window: a wide or long table
scrolls inside its box, with the header and run names fixed.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments.answers import WORDS, Answer, answer_all, setting_name, show_stat, stat
from cnnlab.experiments.figures import Drawn, Entry, draw, had_target, reach
from cnnlab.experiments.spec import MACHINE_KEYS, flatten_config, run_folder, split_key
from cnnlab.fileio import atomic_write_bytes, atomic_write_text, check_writable, path_problem
from cnnlab.plotting import figure_bytes
from cnnlab.training.config import SEED_KEY


@dataclass
class Source:
    """One block of the report: a spec's sweep, or a set of run folders."""
    title: str
    question: str = ""
    entries: List[Entry] = field(default_factory=list)
    figures: List[Dict[str, Any]] = field(default_factory=list)
    analysis_dir: Optional[Path] = None
    notes: List[str] = field(default_factory=list)
    spec_path: Optional[Path] = None       # the spec it came from (its text goes into the PDF's code appendix)
    answers: List[Dict[str, Any]] = field(default_factory=list)   # the spec's report.answers (answers.py)
    run_configs: Dict[str, str] = field(default_factory=dict)     # a spec's run name -> its planned config (YAML)
    run_files: Optional[Path] = None       # where its runs' config, metrics and summary are kept (save_run_files)

    @property
    def planned(self) -> List[Entry]:
        """The runs the spec's plan names: what its answers and figures are computed from."""
        return [e for e in self.entries if not e.outside_plan]


# ----------------------------------------------------------------------------------------------------------------------
# Collecting runs.

def entry_from_folder(path: Path, varied: Optional[dict] = None, name: Optional[str] = None) -> Entry:
    from cnnlab.training.runfolder import RunFolder

    folder = RunFolder(path)
    config = resolved(folder.load_config().to_dict())  # validated, defaults resolved
    summary = folder.read_summary()
    state = (summary or {}).get("status") or ("running or interrupted" if (path / "metrics.csv").exists()
                                              else "not started")
    return Entry(name or path.name, varied or {}, state, summary, folder.read_metrics(), config, path)


def resolved(tree: Dict[str, Any]) -> Dict[str, Any]:
    """A run's config as the report compares it: flat dotted keys, and the model options one by one, so that
    "batch_norm" (not the whole options mapping) shows as what varied, with the model's defaults filled in: an option
    left unset and one set to its default are the same run."""
    config = flatten_config(tree)
    config.update({f"model.options.{k}": v for k, v in _model_options(config).items()})
    return config


def _model_options(config: Dict[str, Any]) -> Dict[str, Any]:
    from cnnlab.models.registry import default_args

    given = config.get("model.options") or {}
    try:
        defaults = default_args(str(config.get("model.name")).lower().replace("-", "_"))
    except CnnlabError:  # a model this installation does not know: compare what was given
        return dict(given)
    defaults = {k: v for k, v in defaults.items() if k not in ("num_classes", "in_channels", "input_size")}
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
    return {**defaults, **given}


def _run_folders(path: Path) -> List[Path]:
    if (path / "config.yaml").exists():
        return [path]
    found = sorted(p.parent for p in path.glob("*/config.yaml"))
    if not found:
        raise CnnlabError(f"{str(path)!r} is neither a run folder (no config.yaml) nor a folder of run folders; "
                          "pass run folders, a sweep folder or an experiment spec (.yaml)")
    return found


def varied_keys(configs: Sequence[Dict[str, Any]]) -> List[str]:
    """Config keys whose values differ between runs (where they run excluded)."""
    keys = sorted({k for c in configs for k in c} - set(MACHINE_KEYS) - {"model.options"})
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]


def source_from_folders(paths: Sequence[Path]) -> Source:
    entries = [entry_from_folder(p) for p in paths]
    keys = varied_keys([e.config for e in entries])
    for e in entries:
        e.varied = {k: e.config.get(k) for k in keys}
    names = [p.name for p in paths]  # the runs themselves, not the folder that holds them
    title = (f"Run {names[0]}" if len(names) == 1 else "Runs " + " and ".join(names) if len(names) == 2 else
             f"{len(names)} runs compared")
    return Source(title, entries=entries, figures=_auto_figures(entries, keys))


def _auto_figures(entries: List[Entry], keys: List[str]) -> List[Dict[str, Any]]:
    """Without a spec: a sweep figure when one numeric key varies over 3+ values (an lr or L2 sweep)."""
    numeric = [k for k in keys if all(isinstance(e.config.get(k), (int, float)) and not isinstance(e.config.get(k),
                                                                                                    bool)
                                      for e in entries) and len({e.config.get(k) for e in entries}) >= 3]
    return [{"kind": "sweep", "x": numeric[0]}] if len(numeric) == 1 else []


def source_from_spec(path: Path, profile: Optional[str], store_url: Optional[str], out: str,
                     run_files: Optional[Path] = None) -> Source:
    """The spec's planned runs, each from the results store, else from its run folder under `out`, else from its
    copy under `run_files` (a report's <stem>_runs/ folder: config.yaml, metrics.csv and summary.json per run)."""
    from cnnlab.experiments.spec import expand, load_spec, sweep_folder
    from cnnlab.experiments.store import DEFAULT_STORE, ResultStore

    spec = load_spec(path)
    prof = spec.profile(profile)
    kept = run_files / "analysis" if run_files is not None else None   # save_run_files' copy of the steps' results
    runs = expand(spec, profile, None, out, [kept] if kept is not None else [])
    sweep_dir = sweep_folder(out, spec, prof)
    analysis = sweep_dir / "analysis" if spec.analysis else None
    if analysis is not None and not analysis.is_dir() and kept is not None and kept.is_dir():
        analysis = kept
    url = store_url or str(Path(out) / DEFAULT_STORE)
    records = {}
    if "://" in url or Path(url).exists():  # reading must not create an empty store file
        store = ResultStore(url)
        sid = store.study_id(f"{spec.name}/{prof.name if prof else 'default'}", create=False)
        records = store.records(sid)
    entries = []
    for run in runs:
        run_dir = run_folder(run)
        rec = records.get(run.key)
        if rec is not None and rec.summary:
            e = Entry(run.name, run.varied, rec.state, rec.summary, rec.metrics, resolved(run.config.to_dict()),
                      run_dir)
        elif (run_dir / "config.yaml").exists():
            e = entry_from_folder(run_dir, run.varied, run.name)
            if rec is not None:
                e.state = rec.state if rec.state != "waiting" else e.state
        elif (copy := _run_copy(run_files, run)) is not None:
            e = entry_from_folder(copy, run.varied, run.name)
        else:
            e = Entry(run.name, run.varied, rec.state if rec else "pending", None, [],
                      resolved(run.config.to_dict()), run_dir)
        entries.append(e)
    planned = {run.key for run in runs}
    # A record under another name but with a planned run's settings (the spec renamed its runs, e.g. when a profile
    # gained `seeds`) is the same computation again: listing it would count one seed twice in every mean.
    same = {split_key(run.key)[1] for run in runs}
    outside = [(key, rec) for key, rec in records.items() if key not in planned and rec.summary]
    renamed = [key for key, _ in outside if split_key(key)[1] in same]
    others = [_other_entry(rec) for key, rec in outside if key not in renamed]
    title = f"{spec.name} ({prof.name} profile)" if prof else spec.name
    notes = [f"spec {path}; {len(runs)} runs; store {url}"]
    if renamed:
        notes.append(f"{len(renamed)} earlier run(s) with the settings of planned runs under older names "
                     f"({', '.join(split_key(k)[0] for k in renamed[:4])}{'...' if len(renamed) > 4 else ''}) "
                     "are left out")
    if others:
        notes.append(f"{len(others)} more run(s) of this spec and profile ran with other settings (key=value "
                     "overrides): they are listed after the planned runs, and the answers and figures leave them out")
        entries += others
    if prof and prof.description:
        notes.append(f"profile {prof.name}: {prof.description}")
    copies = sum(1 for e in entries if run_files is not None and e.run_dir is not None
                 and e.run_dir.parent == run_files)
    if copies:
        notes.append(f"{copies} run(s) read from the report's copies in {run_files} (no checkpoints there)")
    return Source(title, spec.question or spec.description, entries, spec.figures, analysis, notes, Path(path),
                  spec.answers, {run.name: run.config.to_yaml() for run in runs}, run_files)


# ----------------------------------------------------------------------------------------------------------------------
# Run files: what a report needs of each run, without checkpoints, so a report can be rebuilt from what is committed.

RUN_FILES = ("config.yaml", "metrics.csv", "summary.json")


def run_files_dir(html_path: Path) -> Path:
    """Where a report keeps its runs' files: <stem>_runs/ beside the HTML (as report.md keeps its PNGs in
    <stem>_files/)."""
    return html_path.with_name(f"{html_path.stem}_runs")


def _run_copy(run_files: Optional[Path], run) -> Optional[Path]:
    """run_files/<run name>, when it holds the three files of this very run: its config's identity hash must be
    the planned run's (a copy of an older version of the spec's run is not this run)."""
    from cnnlab.experiments.spec import identity_hash
    from cnnlab.training.runfolder import RunFolder

    folder = run_files / run.name if run_files is not None else None
    if folder is None or not all((folder / f).is_file() for f in RUN_FILES):
        return None
    try:
        return folder if identity_hash(RunFolder(folder).load_config()) == split_key(run.key)[1] else None
    except CnnlabError:
        return None


def save_run_files(sources: Sequence[Source]) -> List[Path]:  # the files written
    """Write config.yaml, metrics.csv and summary.json of every planned run of a spec that has a result into its
    source's run_files/<run name>/: the run folder's config.yaml (the planned config where the run ran on another
    machine), the metrics and the summary the report used (the store's: it adds the sweep's evaluations, e.g.
    test_acc), and the best checkpoint's weight sparsity where the checkpoint is here (the copy has no checkpoint)."""
    from cnnlab.training.runfolder import RunFolder

    written = []
    for s in sources:
        for e in s.planned if s.run_files is not None else ():
            if not e.summary or e.name not in s.run_configs:
                continue
            dest = RunFolder(s.run_files / e.name)
            if e.run_dir is not None and e.run_dir.resolve() == dest.path.resolve():
                continue  # read from this copy: it is already there
            src = e.run_dir / "config.yaml" if e.run_dir is not None else None
            config = src.read_text() if src is not None and src.is_file() else s.run_configs[e.name]
            sparsity = e.sparsity()
            summary = {**e.summary, **({"weight_sparsity": sparsity} if sparsity is not None else {})}
            atomic_write_text(dest.path / "config.yaml", config)
            dest.write_metrics(e.metrics)
            dest.write_summary(summary)
            written += [dest.path / f for f in RUN_FILES]
        written += _save_analysis(s)
    return written


def _save_analysis(s: Source) -> List[Path]:
    """The result lines (JSON) and figures (PNG) of the spec's analysis steps, into run_files/analysis/<step>/: the
    report quotes and shows them, and a step that feeds runs decides their settings (spec.fed_settings)."""
    if s.run_files is None or s.analysis_dir is None or not s.analysis_dir.is_dir():
        return []
    kept = s.run_files / "analysis"
    if s.analysis_dir.resolve() == kept.resolve():
        return []
    written = []
    for f in sorted(s.analysis_dir.glob("*/*")):
        if f.suffix in (".json", ".png") and f.is_file():
            atomic_write_bytes(kept / f.parent.name / f.name, f.read_bytes())
            written.append(kept / f.parent.name / f.name)
    return written


def _other_entry(rec) -> Entry:
    """A store record outside the plan: from its run folder when it is on this machine, else from the store."""
    folder = Path(rec.summary.get("run") or "")
    if folder.name and (folder / "config.yaml").exists():
        e = entry_from_folder(folder)
        e.state, e.outside_plan = rec.state, True
        return e
    return Entry(folder.name or rec.key, {}, rec.state, rec.summary, rec.metrics, {}, None, outside_plan=True)


def collect(inputs: Sequence[str], profile: Optional[str] = None, store: Optional[str] = None,
            out: str = "runs", run_files: Optional[Path] = None) -> List[Source]:
    """Report inputs -> sources. Run folders given together form one source; each spec is its own source (its runs
    read from `run_files` where neither the store nor the sweep folder has them)."""
    sources, folders = [], []
    specs = [i for i in inputs if Path(i).is_file() and Path(i).suffix in (".yaml", ".yml")]
    for item in inputs:
        p = Path(item)
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            # one folder per spec when there are several: two recipes may both have a run called "bn"
            mine = run_files / p.stem if run_files is not None and len(specs) > 1 else run_files
            sources.append(source_from_spec(p, profile, store, out, mine))
        elif p.is_dir():
            folders += _run_folders(p)
        else:
            what = "is a file, not a .yaml spec" if p.is_file() else path_problem(p, "folder")
            raise CnnlabError(f"{item!r} {what}: pass run folders, sweep folders or experiment specs (.yaml)")
    if folders:
        sources.insert(0, source_from_folders(folders))
    if not sources:
        raise CnnlabError("nothing to report: pass at least one run folder or experiment spec")
    return sources


# ----------------------------------------------------------------------------------------------------------------------
# Tables.

def _pct(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else ""


def _num(v, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else ""


def _targets(entries: List[Entry]) -> List[float]:
    ts = set()
    for e in entries:
        for k in ((e.summary or {}).get("targets") or {}):
            ts.add(float(k))
    return sorted(ts)


def _target_cell(e: Entry, t: float) -> str:
    hit = reach(e, t)
    if hit and hit.get("time") is not None:
        return f"{hit['epoch']} / {hit['time']:.0f}"
    return "not reached" if e.summary and had_target(e, t) else ""


# Columns after the run name and the varied keys: (heading, cell of an entry). Best validation accuracy comes
# first, right after the name, so it is on screen however many keys varied.
def _columns(entries: List[Entry]) -> List[tuple]:
    splits = [s for s in ("test", "train") if any(f"{s}_acc" in (e.summary or {}) for e in entries)]
    cols = [("status", lambda e: e.outcome),
            ("best epoch", lambda e: _num((e.summary or {}).get("best_epoch"), "d")),
            ("final train acc", lambda e: _pct((e.summary or {}).get("final_train_acc"))),
            *[(f"{s} acc (best ckpt)", lambda e, s=s: _pct((e.summary or {}).get(f"{s}_acc"))) for s in splits],
            ("wall time (s)", lambda e: _num((e.summary or {}).get("wall_time"), ",.1f")),
            ("images/s", lambda e: _num((e.summary or {}).get("images_per_sec"), ",.0f")),
            ("params", lambda e: _num((e.summary or {}).get("params"), ",d")),
            ("diverged", lambda e: ("yes" if e.summary.get("diverged") else "no") if e.summary else "")]
    cols += [(f"epoch / s to {t:.0%}", lambda e, t=t: _target_cell(e, t)) for t in _targets(entries)]
    return cols


CONSTANT_OK = ("status", "params", "diverged")  # the same in every run: said once above the table, not per row


def table(source: Source) -> tuple:
    """(header, rows, note) of the runs table, as strings: the run, its best validation accuracy, one column per
    config key that differs between the runs (full dotted names, defaults resolved), then the results. Columns that
    hold the same value in every run (status, parameters, diverged) are left out and named in `note`."""
    entries = source.entries
    keys = [k for k in dict.fromkeys(k for e in entries for k in e.varied)
            if len(entries) == 1 or len({_cell(e.varied.get(k)) for e in entries}) > 1]
    cols = _columns(entries)
    cells = {h: [f(e) for e in entries] for h, f in cols}
    same = [h for h in CONSTANT_OK if len(entries) > 1 and len(set(cells[h])) == 1 and cells[h][0]]
    cols = [(h, f) for h, f in cols if h not in same and any(cells[h])]
    if len(keys) > WIDE_KEYS:  # many differing keys (different recipes): they go to their own table, transposed
        keys = []
    header = ["run", "best val acc", *keys, *[h for h, _ in cols]]
    rows = [[e.name, _pct((e.summary or {}).get("best_val_acc")), *[_cell(e.value(k)) for k in keys],
             *[cells[h][i] for h, _ in cols]] for i, e in enumerate(entries)]
    words = {"status": lambda v: f"status {v}", "params": lambda v: f"{v} parameters",
             "diverged": lambda v: "none diverged" if v == "no" else "all diverged"}
    note = ("every run: " + "; ".join(words[h](cells[h][0]) for h in same)) if same else ""
    return header, rows, note


WIDE_KEYS = 6  # more differing config keys than this and the runs table would not fit a page


def settings_table(source: Source) -> Optional[tuple]:
    """(header, rows) of the config keys that differ, one row per key and one column per run, when there are more
    of them than fit as columns of the runs table; None otherwise."""
    entries = source.entries
    keys = [k for k in dict.fromkeys(k for e in entries for k in e.varied)
            if len({_cell(e.varied.get(k)) for e in entries}) > 1]
    if len(entries) < 2 or len(keys) <= WIDE_KEYS:
        return None
    return ["setting", *[e.name for e in entries]], [[k, *[_cell(e.varied.get(k)) for e in entries]] for k in keys]


SEED_COLUMNS = ("best_val_acc", "final_train_acc", "final_val_acc", "test_acc", "wall_time")


def seed_table(source: Source) -> Optional[tuple]:
    """(header, rows) of the settings that were repeated over train.seed: each metric's mean ± std over the seeds;
    None when no run of the source varies the seed."""
    entries = [e for e in source.entries if SEED_KEY in e.varied]
    if not entries:
        return None
    by: Dict[str, List[Entry]] = {}
    for e in entries:
        by.setdefault(setting_name(e), []).append(e)
    cols = [m for m in SEED_COLUMNS if any(e.metric(m) is not None for e in entries)]
    rows = []
    for name, es in by.items():
        cells = [show_stat(m, s, n=False) if (s := stat(es, m)) else "" for m in cols]
        rows.append([name, str(sum(1 for e in es if e.summary)), *cells])
    return ["setting", "seeds done", *[WORDS.get(m, m) for m in cols]], rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return yaml.safe_dump(v, default_flow_style=True).strip()
    return str(v)


# runs.csv: one row per run, the numbers unformatted (fractions, seconds), for pandas or a spreadsheet. Speed and
# size close the row, as in the table: Project 2 §1 scores a network by accuracy for its parameters and training time.
CSV_RESULTS = ("status", "best_val_acc", "best_epoch", "final_train_acc", "final_train_loss", "final_val_loss",
               "end_train_loss", "end_train_acc", "test_acc", "weight_sparsity", "wall_s", "images_per_sec", "params")


def runs_csv(sources: Sequence[Source]) -> str:
    """Every run of every source; a `source` column when there are several."""
    entries = [(s, e) for s in sources for e in s.entries]
    # What the spec varied (its axes, in order), then every other key whose resolved value differs between the runs:
    # a variant's or group's settings (optim.name, model.options.batch_norm) are columns of their own, not only the
    # variant's name, however the spec varied them
    keys = [k for k in dict.fromkeys(k for _, e in entries for k in e.varied) if k not in ("group", "variant")]
    keys += [k for k in varied_keys([e.config for _, e in entries if e.config]) if k not in keys]
    targets = _targets([e for _, e in entries])
    header = ["run", *(["source"] if len(sources) > 1 else []),
              *[k for k in ("group", "variant") if any(k in e.varied for _, e in entries)], *keys, *CSV_RESULTS]
    for t in targets:
        header += [f"epochs_to_{t:g}", f"seconds_to_{t:g}"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, header, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for src, e in entries:
        s = e.summary or {}
        # a key another run varied is read from this run's own config when it is not one of its axes (a group's
        # `set: {augment.repeats: 1}` beside a grid over it), so no cell is blank that has a value
        row = {"run": e.name, "source": src.title, **{k: _csv_value(e.value(k)) for k in keys},
               **{k: e.varied[k] for k in ("group", "variant") if k in e.varied},
               **{k: s.get(k) for k in CSV_RESULTS if k in s}, "status": e.outcome, "wall_s": s.get("wall_time"),
               "weight_sparsity": e.sparsity() if e.summary else None}
        for t in targets:
            hit = reach(e, t)
            row[f"epochs_to_{t:g}"], row[f"seconds_to_{t:g}"] = (hit["epoch"], hit["time"]) if hit else ("", "")
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _csv_value(v):
    return json.dumps(v) if isinstance(v, (dict, list)) else ("true" if v is True else "false" if v is False else v)


# ----------------------------------------------------------------------------------------------------------------------
# Figures.

def figures(source: Source) -> List[Drawn]:
    drawn = []
    for spec in [{"kind": "curves"}, *source.figures]:
        opts = {k: v for k, v in spec.items() if k != "kind"}
        d = draw(spec["kind"], source.planned, **opts)
        if d is not None:
            drawn.append(d)
    return drawn


def analysis_pngs(source: Source) -> List[Path]:
    if source.analysis_dir is None or not source.analysis_dir.is_dir():
        return []
    return sorted(source.analysis_dir.rglob("*.png"))


def best_entry(source: Source) -> Optional[Entry]:
    done = [e for e in source.entries if (e.summary or {}).get("best_val_acc") is not None]
    return max(done, key=lambda e: e.summary["best_val_acc"]) if done else None


def best_evaluation(source: Source) -> Optional[dict]:
    """The best run's `cnnlab evaluate` results (per-class accuracy, confusion matrix), when it has been evaluated:
    {'entry', 'record', 'png'} of its val evaluation (with TTA if that is the one there is)."""
    e = best_entry(source)
    if e is None or e.run_dir is None:
        return None
    for stem in ("val-tta-flip-translate", "val-tta-flip", "val", "test"):
        path = e.run_dir / f"evaluation-{stem}.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            png = e.run_dir / f"confusion-{stem}.png"
            return {"entry": e, "record": record, "png": png.read_bytes() if png.is_file() else None}
    return None


def ran_line(entries: List[Entry]) -> str:
    """What the runs actually used (data, images, epochs), read from their configs: a sweep started with
    command-line overrides is described by what it ran, not by its profile's description."""
    ran = [e for e in entries if e.summary and e.config] or entries

    def common(key):
        vals = {_cell(e.config.get(key)) for e in ran if e.config}
        return vals.pop() if len(vals) == 1 else ("varies" if vals else "")

    train, val, epochs = common("data.train_subset"), common("data.val_subset"), common("train.epochs")
    val_size = common("data.val_size")

    def count(v):
        return v if v == "varies" else f"{int(v):,}"
    if val:
        val_text = f"{count(val)} validation images"
    elif val_size == "0":
        val_text = "no validation split"
    else:
        val_text = f"{count(val_size)} validation images" if val_size else "the default validation split"
    parts = [common("data.name") or "?",
             f"{count(train)} training images" if train else "all training images (less the validation split)",
             val_text, (f"{epochs} epoch" + ("" if epochs == "1" else "s")) if epochs else ""]
    return "ran: " + ", ".join(p for p in parts if p)


# ----------------------------------------------------------------------------------------------------------------------
# Writing.

CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:20px auto;padding:0 20px;color:#222;max-width:1240px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 6px;border-bottom:2px solid #2b5797}
h3{font-size:15px;margin:18px 0 4px}
.meta,.note{color:#555;font-size:12.5px;margin:3px 0} .question{font-size:15px;font-style:italic}
.table-wrap{max-width:100%;overflow:auto;margin:10px 0;border:1px solid #ddd}
.table-wrap.long{max-height:34em}
table.runs{border-collapse:collapse;font-size:12.5px}
table.runs th{background:#2b5797;color:#fff;padding:5px 7px;text-align:left;position:sticky;top:0;z-index:1;
  max-width:11em;vertical-align:bottom;overflow-wrap:anywhere}
table.runs td{border-bottom:1px solid #ddd;padding:3px 7px;font-variant-numeric:tabular-nums;white-space:nowrap}
table.runs td:first-child{position:sticky;left:0;background:#fff;max-width:22em;overflow:hidden;
  text-overflow:ellipsis}
table.runs th:first-child{left:0;z-index:2}
table.runs td.best{font-weight:bold}
table.runs tr.diverged td{color:#b00} table.runs tr.pending td{color:#999} table.runs tr.nolearn td{color:#a60}
ul.answers{font-size:14px;line-height:1.45;background:#f3f6fb;border-left:4px solid #2b5797;padding:8px 8px 8px 28px}
figure{margin:16px 0} figcaption{font-size:13px;color:#444} img{max-width:100%;height:auto}
"""


@dataclass
class Built:
    """One source, ready to write: the table, its figures drawn once (SVG for the page, PNG for Markdown)."""
    source: Source
    header: List[str]
    rows: List[List[str]]
    note: str
    figures: List[tuple]                   # (caption, svg bytes or None, png bytes, note)
    evaluation: Optional[dict] = None
    answers: List[Answer] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sources: List[Source]
    command: str = ""

    def build(self) -> List[Built]:
        out = []
        for s in self.sources:
            header, rows, note = table(s)
            figs = [(d.title, figure_bytes(d.fig, "svg"), figure_bytes(d.fig, "png"), d.note) for d in figures(s)]
            figs += [(f"analysis: {p.parent.name}/{p.name}", None, p.read_bytes(), "") for p in analysis_pngs(s)]
            out.append(Built(s, header, rows, note, figs, best_evaluation(s),
                             answer_all(s.answers, s.planned, s.analysis_dir)))
        return out


def _img(svg: Optional[bytes], png: bytes, alt: str) -> str:
    kind, data = ("svg+xml", svg) if svg is not None else ("png", png)
    return f"<img alt='{html.escape(alt)}' src='data:image/{kind};base64,{base64.b64encode(data).decode()}'>"


def _html_table(b: Built, i: int) -> List[str]:
    e = html.escape
    best = max((r[1] for r in b.rows if r[1]), key=lambda v: float(v.rstrip("%")), default=None)
    parts = [f"<div class='table-wrap{' long' if len(b.rows) > 12 else ''}'><table class='runs' id='runs-{i}'>"
             "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.header) + "</tr></thead><tbody>"]
    for entry, row in zip(b.source.entries, b.rows):
        cls = {"diverged": "diverged", "did not learn": "nolearn"}.get(entry.outcome,
                                                                       "" if entry.summary else "pending")
        cells = [f"<td{' class=best' if j == 1 and c == best else ''}>{e(c)}</td>" for j, c in enumerate(row)]
        parts.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    return parts


def _plain_table(header: List[str], rows: List[List[str]]) -> List[str]:
    e = html.escape
    return ["<div class='table-wrap'><table class='runs settings'><thead><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</tbody></table></div>"]


def _html_evaluation(ev: dict) -> List[str]:
    e, rec = html.escape, ev["record"]
    tta = ""
    if rec.get("tta", "none") != "none" and rec.get("tta_gain") is not None:
        tta = (f", test-time augmentation {rec['tta']}: {100 * rec['tta_gain']:+.2f} points over "
               f"{100 * rec['acc_without_tta']:.2f}% without")
    parts = [f"<h3>Best run {e(ev['entry'].name)}: {e(rec['split'])} split, {100 * rec['acc']:.2f}% "
             f"({e(rec.get('checkpoint', ''))}{e(tta)})</h3>",
             "<div class='table-wrap'><table class='runs'><thead><tr><th>class</th><th>images</th><th>accuracy</th>"
             "</tr></thead><tbody>"]
    for r in rec.get("per_class", []):
        parts.append(f"<tr><td>{e(str(r['class']))}</td><td>{r['images']:,}</td><td>{_pct(r['acc'])}</td></tr>")
    parts.append("</tbody></table></div>")
    if ev["png"]:
        parts.append(f"<figure>{_img(None, ev['png'], 'confusion matrix')}<figcaption>Confusion matrix of the best "
                     "run (rows: true class, normalised to 100%)</figcaption></figure>")
    return parts


def render_html(report: Report, built: List[Built], css: str = "", appendix: str = "") -> str:
    """The page as text; the PDF adds print CSS and the code appendix (cnnlab.experiments.pdf)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{e(report.title)}</title>"
             f"<style>{CSS}{css}</style></head><body><h1>{e(report.title)}</h1>",
             f"<p class='meta'>written {time.strftime('%Y-%m-%d %H:%M')} by <code>{e(_short_command(report.command))}"
             f"</code></p>"]
    for i, b in enumerate(built):
        s = b.source
        if s.title != report.title or len(built) > 1:
            parts.append(f"<h2>{e(s.title)}</h2>")
        if s.question:
            parts.append(f"<p class='question'>{e(s.question)}</p>")
        if b.answers:
            parts.append("<h3>Answers (computed from the runs below)</h3><ul class='answers'>"
                         + "".join(f"<li>{e(a.text)}</li>" for a in b.answers) + "</ul>")
        parts += [f"<p class='note'>{e(n)}</p>" for n in [*s.notes, ran_line(s.entries), b.note] if n]
        parts += _html_table(b, i)
        for intro, extra in (("Settings that differ between the runs:", settings_table(s)),
                             ("Mean ± standard deviation over the seeds of each setting:", seed_table(s))):
            if extra:
                parts.append(f"<p class='note'>{e(intro)}</p>")
                parts += _plain_table(*extra)
        for caption, svg, png, note in b.figures:
            parts.append(f"<figure>{_img(svg, png, caption)}"
                         f"<figcaption>{e(caption)}{' (' + e(note) + ')' if note else ''}</figcaption></figure>")
        if b.evaluation:
            parts += _html_evaluation(b.evaluation)
    parts.append(appendix + "</body></html>\n")
    return "\n".join(parts)


def write_html(path: Path, report: Report, built: List[Built]) -> None:
    atomic_write_text(path, render_html(report, built))


def _short_command(command: str, limit: int = 300) -> str:
    """The command as typed, cut in the middle when a long list of run folders would fill the page."""
    return command if len(command) <= limit else command[: limit // 2] + " … " + command[-limit // 3:]


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def md_text(text) -> str:
    """Text for Markdown: HTML escaped (a spec question or run name holding <script> stays text; Markdown renderers
    pass raw HTML through) and Markdown's own markup characters backslash-escaped."""
    return html.escape(str(text), quote=False).translate(_MD_SPECIAL)


def _md_table(header: List[str], rows: List[List[str]]) -> List[str]:
    esc = [[md_text(c) for c in r] for r in [header, *rows]]
    return ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header), *["| " + " | ".join(r) + " |"
                                                                            for r in esc[1:]], ""]


def write_markdown(path: Path, report: Report, built: List[Built]) -> Path:
    """report.md with its PNGs in <stem>_files/ beside it (relative links, so the folder can move as one)."""
    files = path.with_name(f"{path.stem}_files")
    command = report.command.replace("`", "'")  # a code span shows its content as text, unless a backtick ends it
    lines = [f"# {md_text(report.title)}", "", f"_written {time.strftime('%Y-%m-%d %H:%M')} by `{command}`_", ""]
    k = 0
    for b in built:
        s = b.source
        if s.title != report.title or len(built) > 1:
            lines += [f"## {md_text(s.title)}", ""]
        if s.question:
            lines += [f"*{md_text(s.question)}*", ""]
        if b.answers:
            lines += ["**Answers** (computed from the runs below):", ""]
            lines += [f"- {md_text(a.text)}" for a in b.answers] + [""]
        lines += [f"{md_text(n)}  " for n in [*s.notes, ran_line(s.entries), b.note] if n] + [""]
        lines += _md_table(b.header, b.rows)
        for intro, extra in (("Settings that differ between the runs:", settings_table(s)),
                             ("Mean ± standard deviation over the seeds of each setting:", seed_table(s))):
            if extra:
                lines += [intro, ""] + _md_table(*extra)
        figs = [(c, png, note) for c, _, png, note in b.figures]
        if b.evaluation and b.evaluation["png"]:
            ev = b.evaluation
            rec = ev["record"]
            gain = (f" (test-time augmentation {rec['tta']}: {100 * rec['tta_gain']:+.2f} points over "
                    f"{100 * rec['acc_without_tta']:.2f}% without)" if rec.get("tta_gain") is not None else "")
            lines += [f"### Best run {md_text(ev['entry'].name)}: {md_text(rec['split'])} split, "
                      f"{100 * rec['acc']:.2f}%{md_text(gain)}", ""]
            lines += _md_table(["class", "images", "accuracy"], [[str(r["class"]), f"{r['images']:,}", _pct(r["acc"])]
                                                                for r in ev["record"].get("per_class", [])])
            figs.append(("Confusion matrix of the best run (rows: true class, normalised to 100%)", ev["png"], ""))
        for caption, png, note in figs:
            k += 1
            name = f"fig{k:02d}.png"
            atomic_write_bytes(files / name, png)
            text = md_text(caption) + (f" ({md_text(note)})" if note else "")
            lines += [f"![{md_text(caption)}]({files.name}/{name})", "", f"*{text}*", ""]
    atomic_write_text(path, "\n".join(lines))
    return path


def runs_csv_path(html_path: Path) -> Path:
    return html_path.with_name("runs.csv" if html_path.stem == "report" else f"{html_path.stem}-runs.csv")


def answers_json(built: List[Built]) -> str:
    """answers.json: per source, its answers with the course question each answers, and what the runs cost (the
    Results page, docs/results.md, is generated from these files: scripts/readme_results.py)."""
    out = []
    for b in built:
        done = [e for e in b.source.planned if e.summary]
        out.append({"source": b.source.title, "spec": str(b.source.spec_path or ""), "ran": ran_line(b.source.planned),
                    "runs": len(b.source.planned), "runs_done": len(done),
                    "wall_s": round(sum((e.summary or {}).get("wall_time") or 0 for e in done), 1),
                    "answers": [{"question": a.question, "kind": a.kind, "metrics": a.metrics, "text": a.text}
                                for a in b.answers]})
    return json.dumps(out, indent=1, ensure_ascii=False) + "\n"


def make_report(inputs: Sequence[str], out: str = "report.html", profile: Optional[str] = None,
                store: Optional[str] = None, runs_out: str = "runs", title: Optional[str] = None,
                command: str = "", pdf: bool = False) -> Dict[str, Path]:
    """Write the HTML report at `out`, its Markdown twin (.md) and the runs table as CSV (runs.csv beside
    report.html, else <stem>-runs.csv), each spec run's config, metrics and summary under <stem>_runs/ (from which
    the report can be written again without the store or the run folders), and with `pdf` the same content plus
    the code of the models and specs as <stem>.pdf; returns the paths."""
    html_path = Path(out)
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise CnnlabError(f"--out {out!r} must end in .html (the Markdown version is written beside it as .md)")
    check_writable(html_path, "report")
    sources = collect(inputs, profile, store, runs_out, run_files_dir(html_path))
    report = Report(title or (sources[0].title if len(sources) == 1 else "cnnlab report"), sources, command)
    built = report.build()
    write_html(html_path, report, built)
    md = write_markdown(html_path.with_suffix(".md"), report, built)
    csv_path = runs_csv_path(html_path)
    atomic_write_text(csv_path, runs_csv(sources))
    paths = {"html": html_path, "markdown": md, "csv": csv_path}
    if any(b.answers for b in built):
        paths["answers"] = csv_path.with_name(csv_path.name.replace("runs.csv", "answers.json"))
        atomic_write_text(paths["answers"], answers_json(built))
    copied = save_run_files(sources)
    if pdf:
        from cnnlab.experiments.pdf import PRINT_CSS, code_appendix, print_to_pdf

        paths["pdf"] = print_to_pdf(render_html(report, built, PRINT_CSS, code_appendix(sources)),
                                    html_path.with_suffix(".pdf"))
    _readable([*paths.values(), *md.with_name(f"{md.stem}_files").glob("*.png"), *copied])
    if copied:
        paths["runs"] = run_files_dir(html_path)
    return paths


def _readable(paths) -> None:
    """Atomic writes go through mkstemp, whose files are private (0600); a report is meant to be shared and opened
    by a browser, so give it the permissions an ordinary new file gets (0666 less the umask)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)
