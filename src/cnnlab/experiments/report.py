"""Comparison reports: a self-contained HTML page (figures embedded as base64 PNG) and a Markdown twin.

`cnnlab report RUN_OR_SPEC...` accepts run folders, folders of run folders (a sweep folder), and experiment specs.
For a spec the runs come from the results store (summary and per-epoch metrics are kept there, so a sweep spread over
several machines reports from any of them), falling back to the run folders for runs the store does not know.

The page holds, per source: the question the spec asks, a table of runs (what varied, best validation accuracy and
its epoch, final train accuracy, wall time, images/s, parameters, diverged), the overlaid loss/accuracy curves, the
spec's own figures (figures.py) and the PNGs its analysis steps wrote. The Markdown version has the same table and
the figures as PNG files beside it, for pasting into a write-up.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments.figures import Drawn, Entry, draw, reach
from cnnlab.experiments.spec import MACHINE_KEYS, flatten_config, short_names
from cnnlab.fileio import atomic_write_bytes, atomic_write_text, check_writable


@dataclass
class Source:
    """One block of the report: a spec's sweep, or a set of run folders."""
    title: str
    question: str = ""
    entries: List[Entry] = field(default_factory=list)
    figures: List[Dict[str, Any]] = field(default_factory=list)
    analysis_dir: Optional[Path] = None
    notes: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------------
# Collecting runs.

def entry_from_folder(path: Path, varied: Optional[dict] = None, name: Optional[str] = None) -> Entry:
    from cnnlab.training.runfolder import RunFolder

    folder = RunFolder(path)
    config = flatten_config(folder.load_config().to_dict())  # validated, defaults resolved
    # Model options one by one, so that "batch_norm" (not the whole options mapping) shows as what varied.
    config.update({f"model.options.{k}": v for k, v in (config.get("model.options") or {}).items()})
    summary = folder.read_summary()
    state = (summary or {}).get("status") or ("running or interrupted" if (path / "metrics.csv").exists()
                                              else "not started")
    return Entry(name or path.name, varied or {}, state, summary, folder.read_metrics(), config, path)


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
    more = " ..." if len(names) > 6 else ""
    title = f"Run {names[0]}" if len(names) == 1 else "Runs: " + ", ".join(names[:6]) + more
    return Source(title, entries=entries, figures=_auto_figures(entries, keys))


def _auto_figures(entries: List[Entry], keys: List[str]) -> List[Dict[str, Any]]:
    """Without a spec: a sweep figure when one numeric key varies over 3+ values (an lr or L2 sweep)."""
    numeric = [k for k in keys if all(isinstance(e.config.get(k), (int, float)) and not isinstance(e.config.get(k),
                                                                                                    bool)
                                      for e in entries) and len({e.config.get(k) for e in entries}) >= 3]
    return [{"kind": "sweep", "x": numeric[0]}] if len(numeric) == 1 else []


def source_from_spec(path: Path, profile: Optional[str], store_url: Optional[str], out: str) -> Source:
    from cnnlab.experiments.spec import expand, load_spec, sweep_folder
    from cnnlab.experiments.store import DEFAULT_STORE, ResultStore

    spec = load_spec(path)
    prof = spec.profile(profile)
    runs = expand(spec, profile, None, out)
    sweep_dir = sweep_folder(out, spec, prof)
    url = store_url or str(Path(out) / DEFAULT_STORE)
    records = {}
    if "://" in url or Path(url).exists():  # reading must not create an empty store file
        store = ResultStore(url)
        sid = store.study_id(f"{spec.name}/{prof.name if prof else 'default'}", create=False)
        records = store.records(sid)
    entries = []
    for run in runs:
        run_dir = Path(run.config.out) / run.config.name
        rec = records.get(run.key)
        if rec is not None and rec.summary:
            e = Entry(run.name, run.varied, rec.state, rec.summary, rec.metrics, flatten_config(run.config.to_dict()),
                      run_dir)
        elif (run_dir / "config.yaml").exists():
            e = entry_from_folder(run_dir, run.varied, run.name)
            if rec is not None:
                e.state = rec.state if rec.state != "waiting" else e.state
        else:
            e = Entry(run.name, run.varied, rec.state if rec else "pending", None, [],
                      flatten_config(run.config.to_dict()), run_dir)
        entries.append(e)
    title = f"{spec.name} ({prof.name} profile)" if prof else spec.name
    notes = [f"spec {path}; {len(runs)} runs; store {url}"]
    if prof and prof.description:
        notes.append(f"profile {prof.name}: {prof.description}")
    return Source(title, spec.question or spec.description, entries, spec.figures,
                  sweep_dir / "analysis" if spec.analysis else None, notes)


def collect(inputs: Sequence[str], profile: Optional[str] = None, store: Optional[str] = None,
            out: str = "runs") -> List[Source]:
    """Report inputs -> sources. Run folders given together form one source; each spec is its own source."""
    sources, folders = [], []
    for item in inputs:
        p = Path(item)
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            sources.append(source_from_spec(p, profile, store, out))
        elif p.is_dir():
            folders += _run_folders(p)
        else:
            raise CnnlabError(f"{item!r} not found: pass run folders, sweep folders or experiment specs (.yaml)")
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


def table(source: Source) -> tuple:
    """(header, rows) of the runs table, as strings."""
    keys = list(dict.fromkeys(k for e in source.entries for k in e.varied))
    short = short_names([k for k in keys if k not in ("group", "variant")])
    targets = _targets(source.entries)
    splits = [s for s in ("test", "train") if any(f"{s}_acc" in (e.summary or {}) for e in source.entries)]
    header = ["run", *[short.get(k, k) for k in keys], "status", "best val acc", "best epoch", "final train acc",
              *[f"{s} acc (best ckpt)" for s in splits], "wall time (s)", "images/s", "params", "diverged",
              *[f"epoch / s to {t:.0%}" for t in targets]]
    rows = []
    for e in source.entries:
        s = e.summary or {}
        tcells = []
        for t in targets:
            hit = reach(e, t)
            tcells.append(f"{hit['epoch']} / {hit['time']:.0f}" if hit and hit.get("time") is not None else
                          ("not reached" if e.summary else ""))
        rows.append([e.name, *[_cell(e.varied.get(k)) for k in keys], e.state, _pct(s.get("best_val_acc")),
                     _num(s.get("best_epoch"), "d"), _pct(s.get("final_train_acc")),
                     *[_pct(s.get(f"{sp}_acc")) for sp in splits], _num(s.get("wall_time"), ".1f"),
                     _num(s.get("images_per_sec"), ",.0f"), _num(s.get("params"), ",d"),
                     ("yes" if s.get("diverged") else "no") if s else "", *tcells])
    return header, rows


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


# ----------------------------------------------------------------------------------------------------------------------
# Figures.

def figures(source: Source) -> List[Drawn]:
    drawn = []
    for spec in [{"kind": "curves"}, *source.figures]:
        opts = {k: v for k, v in spec.items() if k != "kind"}
        d = draw(spec["kind"], source.entries, **opts)
        if d is not None:
            drawn.append(d)
    return drawn


def png_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def analysis_pngs(source: Source) -> List[Path]:
    if source.analysis_dir is None or not source.analysis_dir.is_dir():
        return []
    return sorted(source.analysis_dir.rglob("*.png"))


# ----------------------------------------------------------------------------------------------------------------------
# Writing.

CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1250px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 6px;border-bottom:2px solid #2b5797}
.meta,.note{color:#666;font-size:12px} .question{font-size:15px;font-style:italic}
table.runs{border-collapse:collapse;font-size:13px;margin:10px 0}
table.runs th{background:#2b5797;color:#fff;padding:5px 8px;text-align:left}
table.runs td{border-bottom:1px solid #ccc;padding:4px 8px;font-variant-numeric:tabular-nums}
table.runs tr.diverged td{color:#b00} table.runs tr.pending td{color:#999}
figure{margin:14px 0} figcaption{font-size:13px;color:#444} img{max-width:100%;border:1px solid #eee}
"""


@dataclass
class Report:
    title: str
    sources: List[Source]
    command: str = ""

    def build(self) -> List[tuple]:
        """Per source: (source, header, rows, [(caption, png bytes, note)]). Figures drawn once for both formats."""
        out = []
        for s in self.sources:
            header, rows = table(s)
            pngs = [(d.title, png_bytes(d.fig), d.note) for d in figures(s)]
            pngs += [(f"analysis: {p.parent.name}/{p.name}", p.read_bytes(), "") for p in analysis_pngs(s)]
            out.append((s, header, rows, pngs))
        return out


def write_html(path: Path, report: Report, built: List[tuple]) -> None:
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{e(report.title)}</h1>",
             f"<p class='meta'>written {time.strftime('%Y-%m-%d %H:%M')} by <code>{e(report.command)}</code></p>"]
    for i, (s, header, rows, pngs) in enumerate(built):
        parts.append(f"<h2>{e(s.title)}</h2>")
        if s.question:
            parts.append(f"<p class='question'>{e(s.question)}</p>")
        parts += [f"<p class='note'>{e(n)}</p>" for n in s.notes]
        parts.append(f"<table class='runs' id='runs-{i}'><thead><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
        for entry, row in zip(s.entries, rows):
            cls = "diverged" if entry.state == "diverged" else ("pending" if not entry.summary else "")
            parts.append(f"<tr class='{cls}'>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
        for caption, png, note in pngs:
            data = base64.b64encode(png).decode()
            parts.append(f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{e(caption)}{' (' + e(note) + ')' if note else ''}</figcaption></figure>")
    parts.append("</body></html>\n")
    atomic_write_text(path, "\n".join(parts))


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def md_text(text) -> str:
    """Text for Markdown: HTML escaped (a spec question or run name holding <script> stays text; Markdown renderers
    pass raw HTML through) and Markdown's own markup characters backslash-escaped."""
    return html.escape(str(text), quote=False).translate(_MD_SPECIAL)


def write_markdown(path: Path, report: Report, built: List[tuple]) -> Path:
    """report.md with its PNGs in <stem>_files/ beside it (relative links, so the folder can move as one)."""
    files = path.with_name(f"{path.stem}_files")
    command = report.command.replace("`", "'")  # a code span shows its content as text, unless a backtick ends it
    lines = [f"# {md_text(report.title)}", "", f"_written {time.strftime('%Y-%m-%d %H:%M')} by `{command}`_", ""]
    k = 0
    for s, header, rows, pngs in built:
        lines += [f"## {md_text(s.title)}", ""]
        if s.question:
            lines += [f"*{md_text(s.question)}*", ""]
        lines += [f"{md_text(n)}  " for n in s.notes] + [""]
        esc = [[md_text(c) for c in r] for r in [header, *rows]]
        lines += ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]] + [""]
        for caption, png, note in pngs:
            k += 1
            name = f"fig{k:02d}.png"
            atomic_write_bytes(files / name, png)
            text = md_text(caption) + (f" ({md_text(note)})" if note else "")
            lines += [f"![{md_text(caption)}]({files.name}/{name})", "", f"*{text}*", ""]
    atomic_write_text(path, "\n".join(lines))
    return path


def make_report(inputs: Sequence[str], out: str = "report.html", profile: Optional[str] = None,
                store: Optional[str] = None, runs_out: str = "runs", title: Optional[str] = None,
                command: str = "") -> Dict[str, Path]:
    """Write the HTML report at `out` and its Markdown twin (.md) beside it; returns both paths."""
    html_path = Path(out)
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise CnnlabError(f"--out {out!r} must end in .html (the Markdown version is written beside it as .md)")
    check_writable(html_path, "report")
    sources = collect(inputs, profile, store, runs_out)
    report = Report(title or (sources[0].title if len(sources) == 1 else "cnnlab report"), sources, command)
    built = report.build()
    write_html(html_path, report, built)
    md = write_markdown(html_path.with_suffix(".md"), report, built)
    _readable([html_path, md, *md.with_name(f"{md.stem}_files").glob("*.png")])
    return {"html": html_path, "markdown": md}


def _readable(paths) -> None:
    """Atomic writes go through mkstemp, whose files are private (0600); a report is meant to be shared and opened
    by a browser, so give it the permissions an ordinary new file gets (0666 less the umask)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        os.chmod(p, 0o666 & ~umask)
