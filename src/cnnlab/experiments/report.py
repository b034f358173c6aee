"""Comparison reports: a self-contained HTML page (figures embedded as SVG), a Markdown twin with PNG figures and,
with --pdf, the same as a PDF, all three rendered from one document (document.py); and `runs.csv` with every run's
numbers.

`cnnlab report RUN_OR_SPEC...` accepts run folders, folders of run folders (a sweep folder), and experiment specs.
For a spec the runs come from the results store (summary and per-epoch metrics are kept there, so a sweep spread over
several machines reports from any of them), falling back to the run folders for runs the store does not know, and
then to the report's own copies: every report of a spec keeps each run's config.yaml, metrics.csv and summary.json
(no checkpoints) in <stem>_runs/ beside it, so that a committed results folder can be reported again, with the same
answers, in a clone that has neither the store nor the run folders.

The document holds, per source: the question the spec asks, a quick profile's smoke-test caveat, what ran (the model
and its parameter count, optimizer, lr and schedule, batch size, augmentation, loss, epochs, data: what_ran), the
answers with the seed-noise caveat said once, a table of runs (the run, its best validation accuracy, each config key
that differs between runs by a short label, then results; columns equal in every run are said once above it), the
overlaid loss/accuracy/lr curves, the spec's own figures (figures.py), the PNGs its analysis steps wrote, and the best
run's per-class accuracy and confusion matrix when `cnnlab evaluate` has been run on it; then the code it is about
(pdf.code_section). The page is laid out for a 1280-pixel window: a wide or long table scrolls inside its box, with
the header and run names fixed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments import document as D
from cnnlab.experiments.answers import (WORDED_ANALYSES, WORDS, Answer, answer_all, cap_first, noise_caveat,
                                       setting_name, show_stat, stat)
from cnnlab.experiments.document import md_text  # noqa: F401  (re-exported: tune_report and tests escape with it)
from cnnlab.experiments.figures import Drawn, Entry, draw, had_target, reach, short_keys
from cnnlab.experiments.pdf import code_section, write_pdf
from cnnlab.experiments.spec import (MACHINE_KEYS, expand, flatten_config, identity_hash, load_spec, run_folder,
                                     split_key, sweep_folder)
from cnnlab.fileio import atomic_write_bytes, atomic_write_text, check_writable, path_problem
from cnnlab.models.registry import default_args
from cnnlab.plotting import figure_bytes
from cnnlab.training.config import SEED_KEY
from cnnlab.training.losses import describe as describe_loss
from cnnlab.training.metrics import BEST_VAL_ACC, FINAL_TRAIN_ACC, FINAL_VAL_ACC, TEST_ACC, WALL_TIME
from cnnlab.training.runfolder import RunFolder


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
    profile: str = ""                      # the spec's profile the runs ran under (quick: a smoke test)
    stands_in: str = ""                    # what the profile's stand-in model or budget cannot show (spec.Profile)
    analysis_titles: Dict[str, str] = field(default_factory=dict)  # analysis step -> its description (captions)

    @property
    def planned(self) -> List[Entry]:
        """The runs the spec's plan names: what its answers and figures are computed from."""
        return [e for e in self.entries if not e.outside_plan]


# ----------------------------------------------------------------------------------------------------------------------
# Collecting runs.

def entry_from_folder(path: Path, varied: Optional[dict] = None, name: Optional[str] = None) -> Entry:
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
    spec = load_spec(path)
    prof = spec.profile(profile)
    kept = run_files / "analysis" if run_files is not None else None   # save_run_files' copy of the steps' results
    runs = expand(spec, profile, None, out, [kept] if kept is not None else [])
    sweep_dir = sweep_folder(out, spec, prof)
    analysis = sweep_dir / "analysis" if spec.analysis else None
    if analysis is not None and not analysis.is_dir() and kept is not None and kept.is_dir():
        analysis = kept
    url, records = _store_records(store_url, out, f"{spec.name}/{prof.name if prof else 'default'}")
    entries = [_planned_entry(run, records.get(run.key), run_files) for run in runs]
    for e in entries:
        e.label = spec_label(spec.labels, e)
    renamed, others = _unplanned(runs, records)
    title = f"{spec.name} ({prof.name} profile)" if prof else spec.name
    # no store where the report was rebuilt from its run copies (a clean clone): the copies' note below says so
    notes = [f"spec {path}; {len(runs)} runs" + (f"; store {url}" if records else "")]
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
                  spec.answers, {run.name: run.config.to_yaml() for run in runs}, run_files,
                  prof.name if prof else "", prof.stands_in if prof else "",
                  {st["name"]: " ".join(str(st.get("description") or "").split()) for st in spec.analysis
                   if st.get("description") and (st["profiles"] is None or prof is None or prof.name in st["profiles"])})


def spec_label(labels: Dict[str, str], e: Entry) -> str:
    """The words report.labels gives the run's setting: its variant's, else its group's; "" where the spec gives
    none, or where an axis beside them (a grid or zip key, not the seed) is part of the setting too: one label for
    runs that differ would name two settings alike."""
    variant, group = e.varied.get("variant"), e.varied.get("group")
    if any(k not in ("group", "variant", SEED_KEY) for k in e.varied):
        return ""
    if variant is not None:
        return labels.get(str(variant), "")
    return labels.get(str(group), "") if group is not None else ""


def _store_records(store_url: Optional[str], out: str, study: str) -> tuple:
    """(the store's URL, {run key: record} of the study): the records of a sweep's runs, none where the store is not
    there (reading must not create an empty store file)."""
    # here: the store loads Optuna and SQLAlchemy, which a report of run folders alone does not need
    from cnnlab.experiments.store import DEFAULT_STORE, ResultStore

    url = store_url or str(Path(out) / DEFAULT_STORE)
    if "://" not in url and not Path(url).exists():
        return url, {}
    store = ResultStore(url)
    return url, store.records(store.study_id(study, create=False))


def _unplanned(runs, records: dict) -> tuple:
    """(keys of records that are planned runs under older names, entries of the runs with other settings): the
    records of the store that the plan does not name."""
    planned = {run.key for run in runs}
    # A record under another name but with a planned run's settings (the spec renamed its runs, e.g. when a profile
    # gained `seeds`) is the same computation again: listing it would count one seed twice in every mean.
    same = {split_key(run.key)[1] for run in runs}
    outside = [(key, rec) for key, rec in records.items() if key not in planned and rec.summary]
    renamed = [key for key, _ in outside if split_key(key)[1] in same]
    return renamed, [_other_entry(rec) for key, rec in outside if key not in renamed]


def _planned_entry(run, rec, run_files: Optional[Path]) -> Entry:
    """One planned run of a spec: from its store record where that has a summary, else from its run folder (with
    the record's state), else from the report's copy of it, else as a run still to come."""
    run_dir = run_folder(run)
    if rec is not None and rec.summary:
        return Entry(run.name, run.varied, rec.state, rec.summary, rec.metrics, resolved(run.config.to_dict()),
                     run_dir)
    if (run_dir / "config.yaml").exists():
        e = entry_from_folder(run_dir, run.varied, run.name)
        if rec is not None:
            e.state = rec.state if rec.state != "waiting" else e.state
        return e
    if (copy := _run_copy(run_files, run)) is not None:
        return entry_from_folder(copy, run.varied, run.name)
    return Entry(run.name, run.varied, rec.state if rec else "pending", None, [], resolved(run.config.to_dict()),
                 run_dir)


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
        # a CSV only where an answer reads it back (the range tests' words); others can be large and are not quoted
        if (f.suffix in (".json", ".png") or (f.suffix == ".csv" and f.stem in WORDED_ANALYSES)) and f.is_file():
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
            ("wall time (s)", lambda e: _num((e.summary or {}).get(WALL_TIME), ",.1f")),
            ("images/s", lambda e: _num((e.summary or {}).get("images_per_sec"), ",.0f")),
            ("params", lambda e: _num((e.summary or {}).get("params"), ",d")),
            ("diverged", lambda e: ("yes" if e.summary.get("diverged") else "no") if e.summary else "")]
    cols += [(f"epoch / s to {t:.0%}", lambda e, t=t: _target_cell(e, t)) for t in _targets(entries)]
    return cols


CONSTANT_OK = ("status", "params", "diverged")  # the same in every run: said once above the table, not per row


def table(source: Source) -> tuple:
    """(header, rows, note) of the runs table, as strings: the run, its best validation accuracy, one column per
    config key that differs between the runs (by the shortest unambiguous tail of its name, defaults resolved), then
    the results. Columns that
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
    short = short_keys(keys)  # short labels (lr, batch_norm): a header wraps only between words, so keep them short
    header = ["run", "best val acc", *[short[k] for k in keys], *[h for h, _ in cols]]
    rows = [[e.title, _pct((e.summary or {}).get(BEST_VAL_ACC)), *[_cell(e.value(k)) for k in keys],
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
    return ["setting", *[e.title for e in entries]], [[k, *[_cell(e.varied.get(k)) for e in entries]] for k in keys]


SEED_COLUMNS = (BEST_VAL_ACC, FINAL_TRAIN_ACC, FINAL_VAL_ACC, TEST_ACC, WALL_TIME)


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
               **{k: s.get(k) for k in CSV_RESULTS if k in s}, "status": e.outcome, "wall_s": s.get(WALL_TIME),
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
            if opts.get("variant"):  # one run's figure says whose it is (the overview above has every run)
                d.title += f": the {opts['variant']} run"
            elif opts.get("group") and spec["kind"] in ("curves", "curve"):  # and one group's curves, whose
                d.title += f": the {opts['group']} group"
            drawn.append(d)
    return drawn


def analysis_pngs(source: Source) -> List[Path]:
    if source.analysis_dir is None or not source.analysis_dir.is_dir():
        return []
    return sorted(source.analysis_dir.rglob("*.png"))


def analysis_caption(source: Source, png: Path) -> str:
    """An analysis figure's caption: what its step measured (the spec's description of the step), else its step's
    name, never a file path alone."""
    step = png.parent.name
    what = source.analysis_titles.get(step)
    return f"{cap_first(what)} (analysis step {step})" if what else f"Analysis step {step}: {png.stem}"


def best_entry(source: Source) -> Optional[Entry]:
    done = [e for e in source.entries if (e.summary or {}).get(BEST_VAL_ACC) is not None]
    return max(done, key=lambda e: e.summary[BEST_VAL_ACC]) if done else None


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
# What ran: the settings a reader needs to repeat the runs, named once per report.

def _options_text(given: Dict[str, Any]) -> str:
    return ", ".join(f"{k} {_cell(v)}" for k, v in given.items())


def _optimizer_text(c: Dict[str, Any]) -> str:
    name = str(c.get("optim.name") or "sgd")
    parts = [name]
    if name in ("sgd", "rmsprop", "rmsprop_nesterov") and c.get("optim.momentum"):
        parts.append(f"momentum {_cell(c['optim.momentum'])}" + (", Nesterov" if c.get("optim.nesterov") else ""))
    if name in ("adam", "adamw") and c.get("optim.betas"):
        parts.append(f"betas {_cell(c['optim.betas'])}")
    if c.get("optim.weight_decay"):
        parts.append(f"L2 (weight decay) {_cell(c['optim.weight_decay'])}")
    if c.get("optim.l1"):
        parts.append(f"L1 {_cell(c['optim.l1'])}")
    return ", ".join(parts)


def _schedule_text(c: Dict[str, Any]) -> str:
    name = str(c.get("schedule.name") or "constant")
    unit = "iterations" if c.get("schedule.unit") == "iter" else "epochs"
    detail = {"step": lambda: f"x{_cell(c.get('schedule.decay'))} every {_cell(c.get('schedule.decay_epochs'))} "
                              f"{unit}",
              "multistep": lambda: f"x{_cell(c.get('schedule.decay'))} at {_cell(c.get('schedule.milestones'))} "
                                   f"{unit}",
              "cosine": lambda: f"down to {_cell(c.get('schedule.min_lr'))}",
              "onecycle": lambda: f"{100 * float(c.get('schedule.pct_start') or 0):.0f}% warm-up to the peak, then "
                                  "annealed to ~0",
              }.get(name)
    text = name + (f" ({detail()})" if detail else "")
    if name in ("triangular", "triangular2", "exp_range"):
        text += (f" (between {_cell(c.get('schedule.min_lr'))} and the lr, half-cycle "
                 f"{_cell(c.get('schedule.step_size'))} {unit})")
    if c.get("schedule.warmup"):
        text += f", linear warm-up {_cell(c['schedule.warmup'])} {unit}"
    return text


def _augment_text(c: Dict[str, Any]) -> str:
    parts = []
    if c.get("augment.crop"):
        parts.append(f"random crop with {_cell(c['augment.crop'])}-pixel padding")
    if c.get("augment.flip"):
        parts.append(f"horizontal flip (p {_cell(c['augment.flip'])})")
    if c.get("augment.cutout"):
        n = c.get("augment.cutout_count") or 1
        parts.append(f"cutout {_cell(c['augment.cutout'])} px" + (f" x{n}" if n != 1 else ""))
    for extra in c.get("augment.extra") or c.get("augment.pipeline") or []:
        parts.append(_cell(extra))
    if (c.get("augment.repeats") or 1) > 1:
        parts.append(f"batch augmentation x{c['augment.repeats']}")
    return ", ".join(parts) or "none"


def _entry_facts(e: Entry) -> Dict[str, str]:
    c = e.config
    params = (e.summary or {}).get("params")
    model = str(c.get("model.name") or "?")
    given = c.get("model.options") or {}
    model += f" ({_options_text(given)})" if given else ""
    model += f", {params:,} parameters" if isinstance(params, int) else ""
    loss = describe_loss(c.get("train.loss") or "cross_entropy", c.get("train.label_smoothing") or 0)
    batch = f"{c.get('batch.size')}" + (f" (cyclical {c.get('batch.min')} to {c.get('batch.max')})"
                                        if c.get("batch.policy") == "cyclical" else "")
    return {"model": model, "optimizer": _optimizer_text(c), "learning rate": _cell(c.get("optim.lr")),
            "schedule": _schedule_text(c), "batch size": batch, "augmentation": _augment_text(c),
            "loss": loss, "epochs": _cell(c.get("train.epochs"))}


def what_ran(entries: Sequence[Entry]) -> List[tuple]:
    """[(setting, value)]: model and its parameter count, optimizer, lr and schedule, batch size, augmentation, loss,
    epochs and data, read from the runs' configs; a setting that differs between runs lists its values."""
    ran = [e for e in entries if e.config and e.summary] or [e for e in entries if e.config]
    if not ran:
        return []
    facts = [_entry_facts(e) for e in ran]
    out = []
    for key in facts[0]:
        vals = list(dict.fromkeys(f[key] for f in facts))
        out.append((key, vals[0] if len(vals) == 1 else
                    "differs per run: " + "; ".join(vals[:6]) + (" ..." if len(vals) > 6 else "")))
    out.append(("data", ran_line(ran).removeprefix("ran: ")))
    return out


QUICK = "quick"   # the profile every recipe has for a smoke test (minutes on a laptop)
SMOKE_TEST = "smoke-test budget: not the course's answer"


def smoke_test(source: Source) -> bool:
    return source.profile == QUICK


# Said first in every answer of a profile whose model or budget stands in for the course's; the caveat paragraph
# above the answers says what it cannot show.
STAND_IN = "Stand-in budget, not the course's setting (the full profile runs that)"


# ----------------------------------------------------------------------------------------------------------------------
# The document: one model of the report (document.py), written as HTML, Markdown and PDF.

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
            figs += [(analysis_caption(s, p), None, p.read_bytes(), "") for p in analysis_pngs(s)]
            answers = answer_all(s.answers, s.planned, s.analysis_dir)
            if smoke_test(s):  # said in the sentence itself, so that no copy of it reads as the course's answer
                for a in answers:
                    a.text = f"{SMOKE_TEST[0].upper()}{SMOKE_TEST[1:]}. {a.text}"
            elif s.stands_in:
                for a in answers:
                    a.text = f"{STAND_IN}: {a.text}"
            out.append(Built(s, header, rows, note, figs, best_evaluation(s), answers))
        return out


def _row_style(e: Entry) -> str:
    return {"diverged": "diverged", "did not learn": "nolearn"}.get(e.outcome, "" if e.summary else "pending")


def _evaluation_section(ev: dict) -> D.Section:
    rec = ev["record"]
    tta = ""
    if rec.get("tta", "none") != "none" and rec.get("tta_gain") is not None:
        tta = (f", test-time augmentation {rec['tta']}: {100 * rec['tta_gain']:+.2f} points over "
               f"{100 * rec['acc_without_tta']:.2f}% without")
    blocks: List[Any] = [D.Table(["class", "images", "accuracy"],
                                 [[str(r["class"]), f"{r['images']:,}", _pct(r["acc"])]
                                  for r in rec.get("per_class", [])])]
    if ev["png"]:
        blocks.append(D.Figure("Confusion matrix of the best run (rows: true class, normalised to 100%)",
                               png=ev["png"]))
    title = (f"Best run {ev['entry'].name}: {rec['split']} split, {100 * rec['acc']:.2f}% "
             f"({rec.get('checkpoint', '')}{tta})")
    return D.Section(title, blocks, level=3)


def _answers_blocks(b: Built) -> List[Any]:
    if not b.answers:
        return []
    out: List[Any] = [D.Answers([D.AnswerItem(a.text, a.question) for a in b.answers],
                                "Answers (computed from the runs below)")]
    caveat = noise_caveat(b.answers)
    if caveat:
        out.append(D.Paragraph(caveat, "note"))
    return out


def source_section(b: Built, i: int, titled: bool) -> D.Section:
    """One source: its question, what ran, its answers, the runs table, the extra tables, figures, evaluation."""
    s = b.source
    blocks: List[Any] = []
    if s.question:
        blocks.append(D.Paragraph(s.question, "question"))
    if smoke_test(s):
        blocks.append(D.Paragraph(f"Quick profile, {SMOKE_TEST}: these runs check that the recipe works; the "
                                  "numbers below are too small a budget to answer the course's question.", "caveat"))
    elif s.stands_in:
        blocks.append(D.Paragraph(f"Profile {s.profile} stands in for the course's setting: {s.stands_in}.",
                                  "caveat"))
    facts = what_ran(s.planned)
    if facts:
        blocks.append(D.Facts("What ran", facts))
    blocks += _answers_blocks(b)
    blocks += [D.Paragraph(n, "note") for n in [*s.notes, b.note] if n]
    blocks.append(D.Table(b.header, b.rows, row_styles=[_row_style(e) for e in s.entries], ident=f"runs-{i}",
                          best_col=1))
    for intro, extra in (("Settings that differ between the runs:", settings_table(s)),
                         ("Mean ± standard deviation over the seeds of each setting:", seed_table(s))):
        if extra:
            blocks.append(D.Table(*extra, intro=intro, kind="plain"))
    blocks += [D.Figure(caption, png, svg, note) for caption, svg, png, note in b.figures]
    if b.evaluation:
        blocks.append(_evaluation_section(b.evaluation))
    return D.Section(s.title if titled else "", blocks)


def report_document(report: Report, built: List[Built]) -> D.Document:
    """The report as a document: one section per source, then the code the runs are about."""
    titled = len(built) > 1 or any(b.source.title != report.title for b in built)
    blocks: List[Any] = [source_section(b, i, titled) for i, b in enumerate(built)]
    code = code_section(report.sources)
    if code is not None:
        blocks.append(code)
    meta = f"written {time.strftime('%Y-%m-%d %H:%M')} by {_short_command(report.command)}"
    return D.Document(report.title, blocks, meta)


def _short_command(command: str, limit: int = 300) -> str:
    """The command as typed, cut in the middle when a long list of run folders would fill the page."""
    return command if len(command) <= limit else command[: limit // 2] + " … " + command[-limit // 3:]


def runs_csv_path(html_path: Path) -> Path:
    return html_path.with_name("runs.csv" if html_path.stem == "report" else f"{html_path.stem}-runs.csv")


def answers_json(built: List[Built]) -> str:
    """answers.json: per source, its answers with the course question each answers, and what the runs cost (the
    Results page, docs/results.md, is generated from these files: scripts/readme_results.py)."""
    out = []
    for b in built:
        done = [e for e in b.source.planned if e.summary]
        smoke = {"smoke_test": SMOKE_TEST} if smoke_test(b.source) else {}
        if not smoke and b.source.stands_in:
            smoke = {"stands_in": b.source.stands_in}
        out.append({"source": b.source.title, "spec": str(b.source.spec_path or ""), "ran": ran_line(b.source.planned),
                    "runs": len(b.source.planned), "runs_done": len(done),
                    "wall_s": round(sum((e.summary or {}).get(WALL_TIME) or 0 for e in done), 1), **smoke,
                    "answers": [{"question": a.question, "kind": a.kind, "metrics": a.metrics, "text": a.text,
                                 **smoke} for a in b.answers]})
    return json.dumps(out, indent=1, ensure_ascii=False) + "\n"


def make_report(inputs: Sequence[str], out: str = "report.html", profile: Optional[str] = None,
                store: Optional[str] = None, runs_out: str = "runs", title: Optional[str] = None,
                command: str = "", pdf: bool = False) -> Dict[str, Path]:
    """Write the HTML report at `out`, its Markdown twin (.md) and the runs table as CSV (runs.csv beside
    report.html, else <stem>-runs.csv), each spec run's config, metrics and summary under <stem>_runs/ (from which
    the report can be written again without the store or the run folders), and with `pdf` the same document as
    <stem>.pdf; returns the paths."""
    html_path = Path(out)
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise CnnlabError(f"--out {out!r} must end in .html (the Markdown version is written beside it as .md)")
    check_writable(html_path, "report")
    sources = collect(inputs, profile, store, runs_out, run_files_dir(html_path))
    report = Report(title or (sources[0].title if len(sources) == 1 else "cnnlab report"), sources, command)
    built = report.build()
    doc = report_document(report, built)
    D.write_html(doc, html_path)
    md_files = D.write_markdown(doc, html_path.with_suffix(".md"))
    csv_path = runs_csv_path(html_path)
    atomic_write_text(csv_path, runs_csv(sources))
    paths = {"html": html_path, "markdown": md_files[0], "csv": csv_path}
    if any(b.answers for b in built):
        paths["answers"] = csv_path.with_name(csv_path.name.replace("runs.csv", "answers.json"))
        atomic_write_text(paths["answers"], answers_json(built))
    copied = save_run_files(sources)
    if pdf:
        paths["pdf"] = write_pdf(doc, html_path.with_suffix(".pdf"))
    _readable([*paths.values(), *md_files[1:], *copied])
    if copied:
        paths["runs"] = run_files_dir(html_path)
    return paths


def _readable(paths) -> None:
    """Atomic writes go through mkstemp, whose files are private (0600); a report is meant to be shared and opened
    by a browser, so give it the permissions an ordinary new file gets (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)
