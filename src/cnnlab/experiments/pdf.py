"""The report as one PDF, ready to hand in: the document (document.py) printed by headless Chromium, and the code
appendix every format of a report ends with (the recipe, the model, the modules of what the runs compare).

Why Chromium's print-to-PDF and not WeasyPrint or ReportLab: the HTML report already is the layout, so printing it
keeps one source of truth for both formats; Chromium keeps the SVG figures as vectors in the PDF, renders exactly
what the HTML tests check, and is already what the report tests render with. WeasyPrint would be a second CSS
engine with its own gaps (and a Pango dependency); ReportLab would mean laying the document out a second time.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.experiments.document import PRINT_CSS, Code, Document, Paragraph, Section, render_html
from cnnlab.fileio import atomic_write_bytes
from cnnlab.models import MODELS

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


REPO = Path(__file__).resolve().parents[3]   # src/cnnlab/experiments/pdf.py -> the checkout
# The code a varied setting is about: a recipe that compares optimizers shows the optimizers' code, one that compares
# augmentations the augmentation code; the model's module is always shown.
SECTION_CODE = {"optim": "training/optim.py", "schedule": "training/schedules.py", "augment": "data/augment.py",
                "batch": "training/schedules.py", "train.loss": "training/losses.py",
                "train.label_smoothing": "training/losses.py", "train.ema": "training/ema.py"}


def _model_files(sources) -> List[Path]:
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


def _varied_files(sources) -> List[Path]:
    """The library modules of the settings the runs vary (their axes, variants and groups)."""
    pkg = Path(cnnlab.__file__).parent
    files = []
    for s in sources:
        keys = {k for e in s.entries for k in e.config if len({str(x.config.get(k)) for x in s.entries}) > 1}
        for key in sorted(keys):
            rel = SECTION_CODE.get(key) or SECTION_CODE.get(key.split(".")[0])
            if rel and (pkg / rel) not in files:
                files.append(pkg / rel)
    return files


def _shown(path: Path) -> str:
    """A path as a reader finds it in the repository (src/cnnlab/models/resnet.py, experiments/05-....yaml)."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def code_blocks(paths: Sequence[Path], parts: Optional[dict] = None) -> List:
    """One Code block per file, each file once; `parts` maps a file to the names of the top-level functions and
    classes to print of it (the lab step a question is about, not the whole 800-line module)."""
    blocks, seen = [], set()
    for path in paths:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        names = (parts or {}).get(path.resolve())
        if names:
            text, found = definitions(text, names)
            blocks.append(Code(f"{_shown(path)}: {', '.join(found)}" if found else _shown(path), text))
        else:
            blocks.append(Code(_shown(path), text))
    return blocks


def definitions(source: str, names: Sequence[str]) -> tuple:
    """(text, found): the source of the named top-level functions and classes (decorators included), in file
    order; the whole source when none of them is there (a renamed function still shows its module)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, []
    lines = source.splitlines()
    picked = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
              and n.name in names]
    if not picked:
        return source, []
    chunks = ["\n".join(lines[min([n.lineno, *[d.lineno for d in n.decorator_list]]) - 1:n.end_lineno])
              for n in picked]
    return "\n\n\n".join(chunks) + "\n", [n.name for n in picked]


def code_section(sources: Sequence):
    """The code the report is about, as the course asks ("the relevant code"): each spec (the recipe as run), a
    single run's config, the module of each model and the modules of the settings that vary; None without any."""
    specs = [Path(s.spec_path) for s in sources if getattr(s, "spec_path", None)]
    configs = [e.run_dir / "config.yaml" for s in sources if not getattr(s, "spec_path", None)
               for e in s.entries[:1] if e.run_dir is not None and (e.run_dir / "config.yaml").is_file()]
    blocks = code_blocks([*specs, *configs, *_model_files(sources), *_varied_files(sources)])
    if not blocks:
        return None
    intro = Paragraph("The recipe (spec) or run config as run, the cnnlab module that defines its model, and the "
                      "modules of the settings the runs compare.", "note")
    return Section("Code", [intro, *blocks], new_page=True, css="code")


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


def write_pdf(doc: Document, path: Path) -> Path:
    """The document's HTML page with the print CSS, printed by headless Chromium."""
    return print_to_pdf(render_html(doc, PRINT_CSS), path)
