"""One document model, three renderers: a report or an assignment document is built once as a tree of blocks
(sections, paragraphs, facts, tables, figures, code, answers) and written as HTML, Markdown and PDF from that tree.

Why a model and not three writers: the HTML page, its Markdown twin and the PDF a student hands in must say the same
thing (the same headings, answers and numbers). When each format walked the runs itself they drifted (the Markdown
lost a note, the PDF gained a code appendix the page did not have); now a fact is placed once, by the code that
knows it (report.py for a recipe, assignment.py for an assignment), and the renderers only lay it out. The PDF is the
HTML printed by headless Chromium (pdf.py prints it, and says why), with print CSS: table headers wrap only between
words, figures never split, and a figure is sized so that it does not push a lone caption onto a page of its own.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from cnnlab.fileio import atomic_write_bytes, atomic_write_text


# ----------------------------------------------------------------------------------------------------------------------
# Blocks.

@dataclass
class Paragraph:
    text: str
    style: str = ""                 # "" | note | question | meta | caveat


@dataclass
class Facts:
    """Named values, one per line ("model: simplenn, 82,030 parameters"): what ran."""
    title: str
    items: List[Tuple[str, str]]


@dataclass
class Table:
    header: List[str]
    rows: List[List[str]]
    intro: str = ""                 # a line above the table saying what it holds
    row_styles: Optional[List[str]] = None   # per row: "" | diverged | nolearn | pending
    ident: str = ""                 # the HTML id (a page's tests and links find the runs table by it)
    best_col: Optional[int] = None  # the column whose highest percentage is set in bold
    kind: str = "runs"              # CSS class: runs (the results table) | plain


@dataclass
class Figure:
    caption: str
    png: Optional[bytes] = None     # what Markdown links (and HTML shows when there is no SVG)
    svg: Optional[bytes] = None     # vector: what HTML and PDF show when there is one
    note: str = ""
    file: Optional[Path] = None     # an existing image (an assignment's figure): linked, not copied, by Markdown


@dataclass
class Bullets:
    """Short lines in order: the working of a computation, the numbers an answer compares."""
    items: List[str]
    title: str = ""


@dataclass
class Code:
    title: str                      # the file as a reader finds it in the repository
    text: str


@dataclass
class AnswerItem:
    text: str
    label: str = ""                 # the course question it answers ("HW2 Lab 2(c)i")
    status: str = ""                # answered | contradicted | pending (assignment documents)


@dataclass
class Answers:
    items: List[AnswerItem]
    title: str = "Answers"


Block = Union[Paragraph, Facts, Bullets, Table, Figure, Code, Answers, "Section"]


@dataclass
class Section:
    title: str
    blocks: List[Block] = field(default_factory=list)
    level: int = 2                  # 2: a part of the document; 3: a question or subsection
    new_page: bool = False          # the PDF starts it on a fresh page (the code appendix)
    css: str = ""                   # an extra HTML class (e.g. code)


@dataclass
class Document:
    title: str
    blocks: List[Block] = field(default_factory=list)
    meta: str = ""                  # "written ... by `cnnlab report ...`"

    def walk(self):
        """Every block, depth first, sections included (what the tests compare across formats)."""
        stack = list(reversed(self.blocks))
        while stack:
            b = stack.pop()
            yield b
            if isinstance(b, Section):
                stack.extend(reversed(b.blocks))

    def headings(self) -> List[str]:
        """Every heading a renderer writes, in order: the title, sections, answer lists and code files."""
        return [self.title] + [b.title for b in self.walk() if isinstance(b, (Section, Answers, Code)) and b.title]


# ----------------------------------------------------------------------------------------------------------------------
# HTML.

CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:20px auto;padding:0 20px;color:#222;max-width:1240px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 6px;border-bottom:2px solid #2b5797}
h3{font-size:15px;margin:18px 0 4px}
.meta,.note{color:#555;font-size:12.5px;margin:3px 0} .question{font-size:15px;font-style:italic}
.caveat{background:#fff4e0;border-left:4px solid #d08000;padding:6px 10px;font-size:14px}
.table-wrap{max-width:100%;overflow:auto;margin:10px 0;border:1px solid #ddd}
.table-wrap.long{max-height:34em}
table.runs{border-collapse:collapse;font-size:12.5px}
table.runs th{background:#2b5797;color:#fff;padding:5px 7px;text-align:left;position:sticky;top:0;z-index:1;
  max-width:11em;vertical-align:bottom;overflow-wrap:normal;word-break:normal;hyphens:manual}
table.runs td{border-bottom:1px solid #ddd;padding:3px 7px;font-variant-numeric:tabular-nums;white-space:nowrap}
table.runs td:first-child{position:sticky;left:0;background:#fff;max-width:22em;overflow:hidden;
  text-overflow:ellipsis}
table.runs th:first-child{left:0;z-index:2}
table.runs td.best{font-weight:bold}
table.plain td{white-space:normal}
table.runs tr.diverged td{color:#b00} table.runs tr.pending td{color:#999} table.runs tr.nolearn td{color:#a60}
ul.answers{font-size:14px;line-height:1.45;background:#f3f6fb;border-left:4px solid #2b5797;padding:8px 8px 8px 28px}
ul.answers .label{font-weight:bold} ul.answers.one{list-style:none;padding-left:12px}
ul.lines{font-size:13px;font-family:DejaVu Sans Mono,monospace;margin:4px 0;padding-left:20px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px;margin:6px 0}
dl.facts dt{color:#555} dl.facts dd{margin:0}
figure{margin:16px 0} figcaption{font-size:13px;color:#444} img{max-width:100%;height:auto}
pre.code{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px;background:#f7f7f7;border-left:3px solid #2b5797;
  padding:6px 8px}
"""

# The PDF: A4, the page's content at print size. Table headers wrap only at spaces (a column is as wide as its
# longest word: labels are kept short for that), figures never split and are capped in height so that a figure and
# its caption fit on the page they start on instead of leaving a near-empty one behind.
PRINT_CSS = """
@page{size:A4;margin:14mm 12mm}
@media print{
 body{max-width:none;margin:0;padding:0;font-size:11px}
 .table-wrap,.table-wrap.long{overflow:visible;max-height:none;border:none}
 table.runs{font-size:8.5px;width:100%} table.runs td{white-space:normal;padding:2px 4px}
 table.runs th{position:static;padding:3px 4px;max-width:none} table.runs td:first-child{position:static}
 figure{break-inside:avoid;margin:8px 0} img{max-width:100%;max-height:105mm;object-fit:contain}
 h2,h3{break-after:avoid} section.newpage{break-before:page}
 dl.facts{font-size:10px} ul.answers{font-size:11.5px} ul.lines{font-size:9.5px}
 pre.code{font-size:7.5px;line-height:1.25;background:none;padding:0 0 0 6px}
}
"""


def _img(fig: Figure, link_from: Optional[Path] = None) -> str:
    data, kind = (fig.svg, "svg+xml") if fig.svg is not None else (fig.png, "png")
    if data is None and link_from is not None and fig.file is not None and fig.file.is_file():
        # an existing file in the repository (an assignment's figure): linked where it is, so the committed page
        # stays small instead of holding a base64 copy of every recipe's figure
        link = Path(os.path.relpath(fig.file.resolve(), link_from.resolve())).as_posix()
        return f"<img alt='{html.escape(fig.caption)}' src='{html.escape(link)}'>"
    if data is None and fig.file is not None and fig.file.is_file():
        data = fig.file.read_bytes()
        kind = "svg+xml" if fig.file.suffix.lower() == ".svg" else "png"
    if data is None:
        return f"<p class='note'>(figure missing: {html.escape(str(fig.file or fig.caption))})</p>"
    return (f"<img alt='{html.escape(fig.caption)}' src='data:image/{kind};base64,"
            f"{base64.b64encode(data).decode()}'>")


def _best(t: Table) -> Optional[str]:
    if t.best_col is None:
        return None
    vals = [r[t.best_col] for r in t.rows if len(r) > t.best_col and r[t.best_col].endswith("%")]
    return max(vals, key=lambda v: float(v.rstrip("%")), default=None)


def _html_table(t: Table) -> List[str]:
    e = html.escape
    best = _best(t)
    ident = f" id='{e(t.ident)}'" if t.ident else ""
    out = [f"<p class='note'>{e(t.intro)}</p>"] if t.intro else []
    out.append(f"<div class='table-wrap{' long' if len(t.rows) > 12 else ''}'><table class='runs"
               f"{'' if t.kind == 'runs' else ' ' + t.kind}'{ident}><thead><tr>"
               + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        cells = "".join(f"<td{' class=best' if j == t.best_col and c == best else ''}>{e(c)}</td>"
                        for j, c in enumerate(row))
        style = f" class='{t.row_styles[i]}'" if t.row_styles is not None else ""
        out.append(f"<tr{style}>{cells}</tr>")
    out.append("</tbody></table></div>")
    return out


def _html_block(b: Block, link_from: Optional[Path] = None) -> List[str]:
    e = html.escape
    if isinstance(b, Paragraph):
        return [f"<p class='{b.style}'>{e(b.text)}</p>" if b.style else f"<p>{e(b.text)}</p>"]
    if isinstance(b, Facts):
        return [f"<p class='note'><b>{e(b.title)}</b></p><dl class='facts'>"
                + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in b.items) + "</dl>"]
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, Bullets):
        head = f"<p class='note'><b>{e(b.title)}</b></p>" if b.title else ""
        return [head + "<ul class='lines'>" + "".join(f"<li>{e(x)}</li>" for x in b.items) + "</ul>"]
    if isinstance(b, Figure):
        note = f" ({e(b.note)})" if b.note else ""
        return [f"<figure>{_img(b, link_from)}<figcaption>{e(b.caption)}{note}</figcaption></figure>"]
    if isinstance(b, Code):
        return [f"<h3>{e(b.title)}</h3><pre class='code'>{e(b.text)}</pre>"]
    if isinstance(b, Answers):
        items = "".join(f"<li>{_label_html(a)}{e(a.text)}</li>" for a in b.items)
        one = " one" if len(b.items) == 1 else ""  # a single answer needs no bullet
        return [f"<h3>{e(b.title)}</h3><ul class='answers{one}'>{items}</ul>"]
    if isinstance(b, Section):
        cls = " ".join(c for c in ("newpage" if b.new_page else "", b.css) if c)
        out = [f"<section{' class=' + repr(cls) if cls else ''}>"]
        if b.title:
            out.append(f"<h{b.level}>{e(b.title)}</h{b.level}>")
        for inner in b.blocks:
            out += _html_block(inner, link_from)
        return out + ["</section>"]
    raise TypeError(f"not a document block: {b!r}")


def _label_html(a: AnswerItem) -> str:
    return f"<span class='label'>{html.escape(a.label)}:</span> " if a.label else ""


def render_html(doc: Document, css: str = "", link_from: Optional[Path] = None) -> str:
    """The document as one self-contained page (figures embedded); `css` is added after the page's own (print).
    With `link_from` (the page's folder), figures that are existing files are linked relative to it instead."""
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{e(doc.title)}</title>"
             f"<style>{CSS}{css}</style></head><body><h1>{e(doc.title)}</h1>"]
    if doc.meta:
        parts.append(f"<p class='meta'>{e(doc.meta)}</p>")
    for b in doc.blocks:
        parts += _html_block(b, link_from)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(doc: Document, path: Path, link_files: bool = False) -> Path:
    """The page at `path`; `link_files`: figures that are existing files are linked (relative), not embedded."""
    atomic_write_text(path, render_html(doc, link_from=path.parent if link_files else None))
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Markdown.

_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def md_text(text) -> str:
    """Text for Markdown: HTML escaped (a spec question or run name holding <script> stays text; Markdown renderers
    pass raw HTML through) and Markdown's own markup characters backslash-escaped."""
    return html.escape(str(text), quote=False).translate(_MD_SPECIAL)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    esc = [[md_text(c) for c in r] for r in [header, *rows]]
    return ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in esc[1:]], ""]


class _MdWriter:
    """Markdown lines, with the figures it needs written as files into `files` (fig01.png ...), linked relatively."""

    def __init__(self, path: Path):
        self.path, self.files, self.k, self.written = path, path.with_name(f"{path.stem}_files"), 0, []

    def figure(self, b: Figure) -> List[str]:
        text = md_text(b.caption) + (f" ({md_text(b.note)})" if b.note else "")
        if b.png is None and b.svg is None and b.file is not None:  # an existing file: link it where it is
            link = Path(os.path.relpath(b.file.resolve(), self.path.parent.resolve())).as_posix()
        else:
            self.k += 1
            data, ext = (b.png, "png") if b.png is not None else (b.svg, "svg")
            name = f"fig{self.k:02d}.{ext}"
            atomic_write_bytes(self.files / name, data)
            self.written.append(self.files / name)
            link = f"{self.files.name}/{name}"
        return [f"![{md_text(b.caption)}]({link})", "", f"*{text}*", ""]

    def block(self, b: Block) -> List[str]:
        if isinstance(b, Paragraph):
            if b.style == "question":
                return [f"*{md_text(b.text)}*", ""]
            if b.style == "caveat":
                return [f"> **{md_text(b.text)}**", ""]
            return [f"{md_text(b.text)}  " if b.style in ("note", "meta") else md_text(b.text), ""]
        if isinstance(b, Facts):
            return [f"**{md_text(b.title)}**", "", *[f"- {md_text(k)}: {md_text(v)}" for k, v in b.items], ""]
        if isinstance(b, Table):
            return ([md_text(b.intro), ""] if b.intro else []) + md_table(b.header, b.rows)
        if isinstance(b, Bullets):
            return ([f"**{md_text(b.title)}**", ""] if b.title else []) + [f"- {md_text(x)}" for x in b.items] + [""]
        if isinstance(b, Figure):
            return self.figure(b)
        if isinstance(b, Code):
            fence = "````" if "```" in b.text else "```"
            lang = {".py": "python", ".yaml": "yaml", ".yml": "yaml"}.get(Path(b.title).suffix, "")
            return [f"### {md_text(b.title)}", "", f"{fence}{lang}", b.text.rstrip("\n"), fence, ""]
        if isinstance(b, Answers):
            return [f"### {md_text(b.title)}", "",
                    *[f"- {('**' + md_text(a.label) + ':** ') if a.label else ''}{md_text(a.text)}"
                      for a in b.items], ""]
        if isinstance(b, Section):
            out = [f"{'#' * b.level} {md_text(b.title)}", ""] if b.title else []
            for inner in b.blocks:
                out += self.block(inner)
            return out
        raise TypeError(f"not a document block: {b!r}")


def write_markdown(doc: Document, path: Path) -> List[Path]:
    """<path> and its figures in <stem>_files/ beside it (relative links, so the folder can move as one); returns
    the files written."""
    w = _MdWriter(path)
    lines = [f"# {md_text(doc.title)}", ""]
    if doc.meta:
        lines += [f"_{md_text(doc.meta)}_", ""]
    for b in doc.blocks:
        lines += w.block(b)
    atomic_write_text(path, "\n".join(lines))
    return [path, *w.written]
