"""The report as one PDF, ready to hand in: the HTML page's content (question, what ran, table, figures, best run's
evaluation) followed by the code that defines the models and the recipe, printed by headless Chromium.

Why Chromium's print-to-PDF and not WeasyPrint or ReportLab: the HTML report already is the layout, so printing it
keeps one source of truth for both formats; Chromium keeps the SVG figures as vectors in the PDF, renders exactly
what the HTML tests check, and is already what the report tests render with. WeasyPrint would be a second CSS
engine with its own gaps (and a Pango dependency); ReportLab would mean laying the document out a second time.
"""

from __future__ import annotations

import html
import inspect
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_bytes

PRINT_CSS = """
@page{size:A4;margin:14mm 12mm}
@media print{
 body{max-width:none;margin:0;padding:0;font-size:11px}
 .table-wrap,.table-wrap.long{overflow:visible;max-height:none;border:none}
 table.runs{font-size:8.5px;width:100%} table.runs td{white-space:normal;padding:2px 4px}
 table.runs th{position:static;padding:3px 4px} table.runs td:first-child{position:static}
 figure{break-inside:avoid} img{max-width:100%}
 h2{break-after:avoid} section.code{break-before:page}
 pre.code{white-space:pre-wrap;font-size:7.5px;line-height:1.25;border-left:3px solid #2b5797;padding-left:6px}
}
"""
TIMEOUT_S = 180


def find_chromium() -> str:
    env = os.environ.get("CNNLAB_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    raise CnnlabError("--pdf needs headless Chromium: install it (Debian: apt-get install chromium; or "
                      "scripts/install-chromium.sh) or set CNNLAB_CHROMIUM to its path")


def _model_files(sources) -> List[Path]:
    from cnnlab.models import MODELS

    files = []
    names = sorted({str(e.config.get("model.name")) for s in sources for e in s.entries if e.config.get("model.name")})
    for name in names:
        try:
            fn = MODELS.get(name.lower().replace("-", "_"))
            path = Path(inspect.getsourcefile(getattr(fn, "__wrapped_builder__", fn)))
        except (CnnlabError, TypeError, OSError):
            continue
        if path not in files:
            files.append(path)
    return files


def code_appendix(sources: Sequence) -> str:
    """HTML: the text of each spec and of each model's module, as the course asks ("the relevant code")."""
    parts = ["<section class='code'><h2>Code</h2><p class='note'>The recipe (spec) of each part and the cnnlab "
             "modules that define its models, as run.</p>"]
    specs: List[Path] = [s.spec_path for s in sources if getattr(s, "spec_path", None)]
    for path in [*specs, *_model_files(sources)]:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        shown = path.name if path in specs else f"cnnlab/models/{path.name}"
        parts.append(f"<h3>{html.escape(shown)}</h3><pre class='code'>{html.escape(text)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def print_to_pdf(page: str, pdf_path: Path, chromium: Optional[str] = None) -> Path:
    """Print the HTML text `page` to `pdf_path` (atomically) with headless Chromium."""
    exe = chromium or find_chromium()
    with tempfile.TemporaryDirectory(prefix="cnnlab-pdf-") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(page, encoding="utf-8")
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
               "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp}/profile",
               "--no-pdf-header-footer", f"--print-to-pdf={out}", src.as_uri()]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CnnlabError(f"Chromium did not print the PDF within {TIMEOUT_S} s ({exe})") from None
        except OSError as e:
            raise CnnlabError(f"could not start Chromium ({exe}): {e.strerror or e}") from None
        if run.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            last = (run.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise CnnlabError(f"Chromium failed to print the PDF (exit {run.returncode}): {last[0][:200]}")
        atomic_write_bytes(pdf_path, out.read_bytes())
    return pdf_path
