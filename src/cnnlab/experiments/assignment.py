"""One document per assignment (HW2, HW3, Project 2), the report a student hands in: every question in the
assignment's order, its answer, the evidence (the calculator's working, tables, figures) and the code it is about.

The answers come from results/assignments/<name>/answers.json (the questions' file: what each question asks, its
answer and where the numbers come from; a recipe question's answer is copied from that recipe's own answers.json);
this module only lays them out, through the document model (document.py), as <name>.html, <name>.md and <name>.pdf.
A caveat (a stand-in model, a reduced budget) is said first, before any answer, so that no answer is read without it;
each code file is printed once, in an appendix, and each question names the files it is about; a code entry
`path::name` prints only that top-level function or class (the lab step, not the whole module).

    {"assignment": "HW2", "title": "...", "source": "experiments/assignments/hw2.yaml",
     "questions": [{"id": "HW2 1.1", "question": "...", "kind": "claim|calc|recipe|text", "answer": "...",
                    "evidence": ["..."], "figures": ["fig.png" or {"path": "fig.svg", "caption": "..."}],
                    "tables": [{"columns": [...], "rows": [[...]]}],
                    "source": "05-regularization", "code": ["src/cnnlab/models/resnet.py::cifar_resnet"],
                    "caveat": "...",
                    "status": "answered|contradicted|pending"}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from cnnlab.errors import CnnlabError
from cnnlab.experiments import document as D
from cnnlab.experiments.answers import cap_first
from cnnlab.experiments.pdf import REPO, code_blocks, write_pdf
from cnnlab.fileio import check_writable

ASSIGNMENTS = ("hw2", "hw3", "project2")
STATUSES = ("answered", "contradicted", "pending")
STATUS_WORDS = {"contradicted": "The runs contradict the expected answer.", "pending": "Not answered yet."}


def default_answers(name: str) -> Path:
    return Path("results") / "assignments" / name / "answers.json"


def _strings(value: Any, what: str) -> List[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CnnlabError(f"{what} must be a list of strings, got {json.dumps(value)[:60]}; fix the answers.json")
    return value


def load_answers(path: Path) -> Dict[str, Any]:
    """The answers.json, checked: the fields the document reads have the types it needs."""
    if not path.is_file():
        raise CnnlabError(f"no answers file at {path}: write it first (the assignment's questions), or pass "
                          "--answers PATH")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CnnlabError(f"{path} is not readable JSON ({str(e)[:80]}); fix or regenerate it") from None
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise CnnlabError(f"{path}: expected an object with a 'questions' list; see "
                          "cnnlab.experiments.assignment for the schema")
    for i, q in enumerate(data["questions"]):
        where = f"{path} question {i + 1}"
        if not isinstance(q, dict) or not all(isinstance(q.get(k), str) and q.get(k) for k in ("id", "question")):
            raise CnnlabError(f"{where}: needs 'id' and 'question' as text; fix the answers.json")
        if not isinstance(q.get("answer", ""), str):
            raise CnnlabError(f"{where} ({q['id']}): 'answer' must be text; fix the answers.json")
        if q.get("status", "answered") not in STATUSES:
            raise CnnlabError(f"{where} ({q['id']}): status {q.get('status')!r} is not one of {', '.join(STATUSES)}")
        for key in ("evidence", "code"):
            _strings(q.get(key), f"{where} ({q['id']}) '{key}'")
        for f in q.get("figures") or []:
            if not (isinstance(f, str) or isinstance(f, dict) and isinstance(f.get("path"), str)):
                raise CnnlabError(f"{where} ({q['id']}): a figure is a path, or {{\"path\": ..., \"caption\": ...}}; "
                                  f"got {json.dumps(f)[:60]}")
        for t in q.get("tables") or []:
            if not (isinstance(t, dict) and isinstance(t.get("columns"), list) and isinstance(t.get("rows"), list)):
                raise CnnlabError(f"{where} ({q['id']}): each table needs 'columns' and 'rows' lists")
    return data


def _figure(entry: Any, base: Path) -> D.Figure:
    """A figure path (relative to the answers.json folder), or {"path": ..., "caption": ...}."""
    path, caption = (entry.get("path", ""), entry.get("caption", "")) if isinstance(entry, dict) else (entry, "")
    file = (base / path).resolve()
    return D.Figure(caption or f"Figure {path}", file=file)  # without a caption, where it comes from says most


def _question(q: Dict[str, Any], base: Path, shown: Optional[Dict[Any, str]] = None) -> D.Section:
    """One question's section. `shown`: what earlier questions already printed (their working, tables and figures,
    keyed by content) -> the question that printed it: a repeat becomes a pointer to it, so that three questions
    answered by one calculation do not print its twenty lines three times."""
    shown = {} if shown is None else shown
    status = q.get("status", "answered")
    blocks: List[Any] = [D.Paragraph(q["question"], "question")]
    answer = q.get("answer") or STATUS_WORDS.get(status) or "Not answered yet."
    blocks.append(D.Answers([D.AnswerItem(answer, "" if status == "answered" else status)], "Answer"))
    seen: List[str] = []

    def first_time(key: Any, what: str) -> bool:
        if key in shown:
            seen.append(f"{what} as for {shown[key]}, above")
            return False
        shown[key] = q["id"]
        return True

    evidence = _strings(q.get("evidence"), "evidence")
    # the working of a calculation (many lines) is worth pointing back to; a one-line evidence is cheaper repeated
    if evidence and (len(evidence) < 5 or first_time(("evidence", tuple(evidence)), "the same working")):
        blocks.append(D.Bullets(evidence, "Evidence"))
    for t in q.get("tables") or []:
        key = ("table", tuple(map(str, t["columns"])), tuple(tuple(map(str, r)) for r in t["rows"]))
        if first_time(key, "the same table"):
            blocks.append(D.Table([str(c) for c in t["columns"]], [[str(c) for c in r] for r in t["rows"]],
                                  intro=str(t.get("caption", "")), kind="plain"))
    for f in q.get("figures") or []:
        path = f.get("path", "") if isinstance(f, dict) else f
        if first_time(("figure", path), "the same figure"):
            blocks.append(_figure(f, base))
    if seen:
        blocks.append(D.Paragraph(cap_first("; ".join(seen)) + ".", "note"))
    where = [f"computed by {q['source']}" if q.get("source") else "",
             "code: " + ", ".join(q["code"]) + " (printed in the Code appendix)" if q.get("code") else ""]
    if any(where):
        blocks.append(D.Paragraph(cap_first("; ".join(w for w in where if w)) + ".", "note"))
    return D.Section(f"{q['id']}", blocks)



def _code_appendix(questions: List[Dict[str, Any]], repo: Path) -> Optional[D.Section]:
    paths: List[Path] = []
    parts: Dict[Path, List[str]] = {}
    whole = set()
    for q in questions:
        for rel in q.get("code") or []:
            file, _, name = rel.partition("::")  # path::name: only that function or class of the file
            p = (repo / file).resolve()
            if p not in paths:
                paths.append(p)
            if name:
                parts.setdefault(p, []).append(name)
            else:
                whole.add(p)  # some question needs the whole file: print it whole
    blocks = code_blocks([p for p in paths if p.is_file()], {p: n for p, n in parts.items() if p not in whole})
    missing = [str(p) for p in paths if not p.is_file()]
    if not blocks and not missing:
        return None
    intro = D.Paragraph("The code the questions are about (recipes, models, lab steps), each file once, as in the "
                        "repository.", "note")
    gone = [D.Paragraph(f"Not found in this checkout: {', '.join(missing)}.", "note")] if missing else []
    return D.Section("Code", [intro, *gone, *blocks], new_page=True, css="code")


def assignment_document(data: Dict[str, Any], base: Path, repo: Path, command: str = "") -> D.Document:
    """The assignment as a document: its caveats first, then each question in order, then the code appendix."""
    questions = data["questions"]
    title = f"{data.get('assignment', '')}: {data.get('title', '')}".strip(": ") or "Assignment"
    blocks: List[Any] = []
    caveats = list(dict.fromkeys(q["caveat"] for q in questions if isinstance(q.get("caveat"), str) and q["caveat"]))
    if caveats:
        blocks.append(D.Section("Read first", [D.Paragraph(c, "caveat") for c in caveats]))
    counts = {s: sum(1 for q in questions if q.get("status", "answered") == s) for s in STATUSES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    blocks.append(D.Paragraph(f"{len(questions)} questions: {summary}." if questions else "No questions yet.",
                              "note"))
    shown: Dict[Any, str] = {}
    blocks += [_question(q, base, shown) for q in questions]
    code = _code_appendix(questions, repo)
    if code is not None:
        blocks.append(code)
    source = f" from {data['source']}" if data.get("source") else ""
    return D.Document(title, blocks, f"built{source} by {command}" if command else "")


def make_document(name: str, answers: Optional[str] = None, out: Optional[str] = None, pdf: bool = True,
                  command: str = "") -> Dict[str, Path]:
    """Write <out>/<name>.html, .md and (with `pdf`) .pdf from the assignment's answers.json; returns the paths."""
    if name not in ASSIGNMENTS:
        raise CnnlabError(f"unknown assignment {name!r}; choose one of {', '.join(ASSIGNMENTS)}")
    src = Path(answers) if answers else default_answers(name)
    data = load_answers(src)
    folder = Path(out) if out else src.parent
    html_path = folder / f"{name}.html"
    check_writable(html_path, "document")
    repo = REPO if (REPO / "src" / "cnnlab").is_dir() else Path.cwd()
    doc = assignment_document(data, src.parent, repo, command or f"cnnlab document {name}")
    paths = {"html": D.write_html(doc, html_path, link_files=True)}  # the PDF embeds them (write_pdf)
    paths["markdown"] = D.write_markdown(doc, html_path.with_suffix(".md"))[0]
    if pdf:
        paths["pdf"] = write_pdf(doc, html_path.with_suffix(".pdf"))
    return paths
