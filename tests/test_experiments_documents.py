"""Documents a student hands in: an assignment's answers.json rendered as HTML, Markdown and PDF from one document
model (the same headings and answers in each, every question and answer in the PDF's text, table headers that wrap
only between words), a single run's report naming what ran, a quick profile's answers marked as a smoke test, and the
learning-rate panel drawn only for an lr that changes."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli_checks import one_error_line, run
from cnnlab.experiments import document as D

LONG_HEADERS = ["learning rate", "best validation accuracy (best checkpoint)", "images per second",
                "weight sparsity below 1e-3"]


def pdf_text(pdf: Path) -> str:
    for tool in ("pdftotext", "pdfinfo"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not found (Debian: apt-get install poppler-utils)")
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def chromium():
    from cnnlab.errors import CnnlabError
    from cnnlab.experiments.pdf import find_chromium

    try:
        return find_chromium()
    except CnnlabError:
        pytest.skip("headless Chromium not found: run scripts/install-chromium.sh (Debian: apt-get install chromium)")


def flat(text: str) -> str:
    return " ".join(text.split())


def md_headings(md: str) -> list:
    """The Markdown's headings, outside fenced code blocks (a Python comment is not a heading)."""
    out, fenced = [], False
    for ln in md.splitlines():
        if ln.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,3} ", ln):
            out.append(ln.lstrip("#").strip())
    return out


def near_empty_pages(pdf: Path, tmp: Path) -> list:
    """Pages before the last whose ink ends in their top half (a figure pushed on, leaving a page nearly empty)."""
    import numpy as np
    from PIL import Image

    if not shutil.which("pdftoppm"):
        pytest.skip("pdftoppm not found (Debian: apt-get install poppler-utils)")
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(pdf), str(tmp / "page")], check=True, capture_output=True)
    pages = sorted(tmp.glob("page-*.png"))
    out = []
    for page in pages[:-1]:
        ink = np.nonzero((np.asarray(Image.open(page).convert("L")) < 200).any(axis=1))[0]
        if not ink.size or ink.max() < 0.5 * Image.open(page).height:
            out.append(page.name)
    return out


def header_words_whole(text: str, headers) -> list:
    """Header words that the PDF's text does not hold as whole words (a header broken inside a word)."""
    tokens = set(text.split())
    return [w for h in headers for w in h.split() if w not in tokens]


@pytest.fixture
def answers(tmp_path):
    """A small HW2 answers.json in the questions' schema, with a real figure drawn by cnnlab's plotting."""
    from cnnlab.plotting import new_figure, save_figure

    folder = tmp_path / "assignments" / "hw2"
    fig, axes = new_figure()
    axes[0][0].plot([1, 2, 3], [40, 55, 61])
    axes[0][0].set_xlabel("peak learning rate in units of ten")  # text the PDF must show from the figure itself
    save_figure(fig, folder / "fig-lr.svg")
    data = {"assignment": "HW2", "title": "Construct, Train, and Optimize CNN Models",
            "source": "experiments/assignments/hw2.yaml", "questions": [
                {"id": "HW2 1.1", "question": "How many parameters has SimpleNN's first convolution?", "kind": "calc",
                 "answer": "608 parameters: 5x5 kernels over 3 channels for 8 filters, plus 8 biases.",
                 "evidence": ["weights: 5 * 5 * 3 * 8 = 600", "biases: 8", "total: 600 + 8 = 608"],
                 "source": "cnnlab models simplenn", "code": ["src/cnnlab/models/simplenn.py"],
                 "status": "answered"},
                {"id": "HW2 Lab 2(c)i", "question": "Which of six learning rates is best?", "kind": "recipe",
                 "answer": "The best learning rate is 0.005, by best validation accuracy: 72.36%, 1.42 points ahead "
                           "of 0.01 (70.94%).",
                 "figures": [{"path": "fig-lr.svg", "caption": "validation accuracy against learning rate"}],
                 "tables": [{"columns": LONG_HEADERS, "rows": [["0.005", "72.36%", "2,101", "0.4%"],
                                                               ["0.01", "70.94%", "2,087", "0.3%"]]}],
                 "source": "04-lr-sweep", "code": ["experiments/04-lr-sweep.yaml", "src/cnnlab/models/simplenn.py",
                                                   "src/cnnlab/training/optim.py::l1_penalty"],
                 "caveat": "CPU budget: fewer epochs than the course asks at the smallest learning rates.",
                 "status": "answered"},
                {"id": "HW2 3", "question": "Does batch augmentation reach 94% sooner?", "kind": "claim",
                 "answer": "", "status": "pending"}]}
    path = folder / "answers.json"
    path.write_text(json.dumps(data))
    return path, data


def test_assignment_document_holds_every_question_and_answer_in_html_markdown_and_pdf(answers, tmp_path):
    chromium()
    path, data = answers
    out = tmp_path / "out"
    assert run(["document", "hw2", "--answers", str(path), "--out", str(out)]) == 0
    page, md, text = (out / "hw2.html").read_text(), (out / "hw2.md").read_text(), pdf_text(out / "hw2.pdf")
    for q in data["questions"]:
        for s in (q["id"], q["question"], q["answer"] or "Not answered yet."):
            assert flat(s) in flat(text), s
            assert html.escape(s) in page
    # one model: the same headings, in the same order, in each format
    from cnnlab.experiments.assignment import assignment_document, load_answers
    from cnnlab.experiments.pdf import REPO

    doc = assignment_document(load_answers(path), path.parent, REPO)
    headings = doc.headings()
    assert [html.unescape(h) for h in re.findall(r"<h[123]>(.*?)</h[123]>", page)] == headings
    assert md_headings(md) == [D.md_text(h) for h in headings]
    pdf_lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    assert [h for h in headings if h in pdf_lines] == headings
    # the caveat comes first, before any answer; the code appears once, in the appendix
    assert text.index("CPU budget") < text.index(data["questions"][0]["answer"][:30])
    assert page.count("<h3>src/cnnlab/models/simplenn.py</h3>") == 1 and "def simplenn(" in text
    # the committed page links the figure file where it is (small), the PDF carries the image itself
    link = os.path.relpath(path.parent / "fig-lr.svg", out).replace(os.sep, "/")
    assert f"<img alt='validation accuracy against learning rate' src='{link}'>" in page
    assert (out / link).resolve() == (path.parent / "fig-lr.svg").resolve()
    assert "data:image" not in page
    assert "peak learning rate in units of ten" in text
    # path::name prints only that function: the lab step, not its whole module
    assert "<h3>src/cnnlab/training/optim.py: l1_penalty</h3>" in page and "def l1_penalty(" in text
    assert "def build_optimizer(" not in page
    assert "](../assignments/hw2/fig-lr.svg)" in md          # Markdown links the figure where it is
    assert near_empty_pages(out / "hw2.pdf", tmp_path) == []


def test_no_table_header_breaks_inside_a_word_in_the_pdf(answers, tmp_path):
    chromium()
    path, _ = answers
    assert run(["document", "hw2", "--answers", str(path), "--out", str(tmp_path)]) == 0
    text = pdf_text(tmp_path / "hw2.pdf")
    body = text[:text.index("\nCode\n")] if "\nCode\n" in text else text
    assert not header_words_whole(body, LONG_HEADERS)


def test_a_bad_answers_file_is_one_clear_error(tmp_path, capsys):
    line = one_error_line(capsys, run(["document", "hw3", "--answers", str(tmp_path / "none.json")]))
    assert "no answers file" in line
    bad = tmp_path / "answers.json"
    bad.write_text(json.dumps({"questions": [{"id": "Q", "question": "?", "status": "done"}]}))
    line = one_error_line(capsys, run(["document", "hw3", "--answers", str(bad), "--no-pdf"]))
    assert "status 'done' is not one of answered" in line


@pytest.fixture(scope="module")
def quick(tmp_path_factory, shared_data, session_cache):
    """A spec with a quick profile: two variants of one epoch on 200 images, swept and reported once (with a PDF)."""
    import os

    tmp = tmp_path_factory.mktemp("quick")
    base = {"data": {"name": "fashion-mnist", "train_subset": 200, "val_subset": 100}, "model": {"name": "lenet5"},
            "batch": {"size": 32}, "optim": {"lr": 0.05}, "schedule": {"name": "cosine"},
            "augment": {"flip": 0.5}, "train": {"epochs": 2, "progress": "off", "checkpoints": False}}
    spec = tmp / "q.yaml"
    spec.write_text(yaml.safe_dump({
        "question": "Does momentum help?", "base": base,
        "variants": {"momentum": {"optim.momentum": 0.9}, "plain": {"optim.momentum": 0.0}},
        "profiles": {"quick": {"description": "smoke test"}},
        "report": {"answers": [{"kind": "compare", "a": "momentum", "b": "plain", "metrics": "best_val_acc",
                                "question": "HW2 momentum"}]}}))
    old = {k: os.environ.get(k) for k in ("CNNLAB_CACHE", "CNNLAB_DATA")}
    os.environ.update(CNNLAB_CACHE=str(session_cache), CNNLAB_DATA=str(shared_data))
    try:
        assert run(["sweep", str(spec), "--profile", "quick", "--out", str(tmp / "runs")]) == 0
        out = tmp / "rep" / "report.html"
        pdf = shutil.which("chromium") or shutil.which("chromium-browser")
        assert run(["report", str(spec), "--profile", "quick", "--runs-out", str(tmp / "runs"), "--out", str(out),
                    *(["--pdf"] if pdf else [])]) == 0
        yield tmp, out
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_a_quick_profiles_answers_say_they_are_a_smoke_test(quick):
    tmp, out = quick
    (source,) = json.loads((out.parent / "answers.json").read_text())
    assert source["smoke_test"] == "smoke-test budget: not the course's answer"
    (answer,) = source["answers"]
    assert answer["smoke_test"] and answer["text"].startswith("Smoke-test budget: not the course's answer. ")
    page, md = out.read_text(), out.with_suffix(".md").read_text()
    assert "<p class='caveat'>" + html.escape("Quick profile, smoke-test budget: not the course's answer") in page
    assert D.md_text(answer["text"]) in md and html.escape(answer["text"]) in page
    # one document model: the HTML, the Markdown and the PDF have the same headings
    headings = [html.unescape(h) for h in re.findall(r"<h[123]>(.*?)</h[123]>", page)]
    assert "Answers (computed from the runs below)" in headings and "Code" in headings
    assert md_headings(md) == [D.md_text(h) for h in headings]
    if out.with_suffix(".pdf").exists():
        lines = {ln.strip() for ln in pdf_text(out.with_suffix(".pdf")).splitlines()}
        assert [h for h in headings if h in lines] == headings
        text = flat(pdf_text(out.with_suffix(".pdf")))
        assert "smoke-test budget: not the course's answer" in text and flat(answer["text"]) in text
        assert near_empty_pages(out.with_suffix(".pdf"), tmp) == []


def test_the_report_names_what_ran_and_shows_the_code_it_is_about(quick):
    tmp, out = quick
    page = out.read_text()
    ran = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert re.fullmatch(r"lenet5, [\d,]+ parameters", ran["model"])
    assert ran["optimizer"] == "differs per run: sgd, momentum 0.9; sgd" and ran["learning rate"] == "0.05"
    assert ran["schedule"] == "cosine (down to 0)" and ran["batch size"] == "32"
    assert ran["augmentation"] == "horizontal flip (p 0.5)" and ran["epochs"] == "2"
    assert ran["data"] == "fashion-mnist, 200 training images, 100 validation images, 2 epochs"
    code = re.findall(r"<h3>(.*?)</h3><pre class='code'>", page)
    # the recipe, the model's module, and the optimizer code (momentum is what the runs compare): not simplenn.py
    assert code[0].endswith("q.yaml") and code[1:] == ["src/cnnlab/models/small.py", "src/cnnlab/training/optim.py"]
    # legends name runs as the table does
    md = out.with_suffix(".md").read_text()
    assert "| momentum |" in md and "| plain |" in md


def test_a_single_runs_report_names_what_ran(fashion_run, tmp_path):
    folder = fashion_run("data.train_subset=200", "data.val_subset=100", "train.epochs=1", "batch.size=50",
                         "augment.crop=2", "optim.lr=0.02")
    out = tmp_path / "report.html"
    assert run(["report", str(folder), "--out", str(out)]) == 0
    page = out.read_text()
    ran = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert re.fullmatch(r"simplenn \(batch_norm true\), [\d,]+ parameters", ran["model"])
    assert ran["learning rate"] == "0.02" and ran["schedule"] == "constant" and ran["batch size"] == "50"
    assert ran["augmentation"] == "random crop with 2-pixel padding" and ran["epochs"] == "1"
    assert "<h3>" in page and "config.yaml</h3>" in page           # the run's config, as run, in the code appendix


def test_no_learning_rate_panel_for_a_constant_lr_and_a_linear_axis_for_a_schedule():
    from cnnlab.training.plots import plot_curves

    rows = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "train_acc": 0.1 * e, "val_acc": 0.1 * e,
             "lr": 0.1} for e in range(1, 5)]
    assert len(plot_curves({"constant": rows})) == 2
    annealed = [{**r, "lr": 0.1 * (4 - r["epoch"]) / 3} for r in rows]   # ends at 0, as one-cycle and cosine do
    axes = plot_curves({"constant": rows, "annealed": annealed})
    assert len(axes) == 3 and axes[2].get_yscale() == "linear" and axes[2].get_ylim()[0] == 0


def test_legends_name_runs_as_the_runs_table_does():
    from cnnlab.experiments.figures import Entry, draw

    rows = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "train_acc": 0.2 * e, "val_acc": 0.2 * e,
             "lr": 0.1} for e in (1, 2)]
    entries = [Entry(name, {"model.options.activation": act, "model.options.batch_norm": bn, "optim.lr": 0.01},
                     "finished", {"best_val_acc": 0.4}, rows, {}) for name, act, bn in
               (("relu", "relu", False), ("swish_bn", "swish", True))]
    for kind in ("curves", "curve"):
        drawn = draw(kind, entries)
        legend = [t.get_text() for ax in drawn.fig.axes for t in (ax.get_legend().get_texts()
                                                                  if ax.get_legend() else [])]
        legend += [t.get_text() for lg in drawn.fig.legends for t in lg.get_texts()]
        assert {"relu", "swish_bn"} <= set(legend) and not [t for t in legend if "=" in t], (kind, legend)


def test_a_stand_in_profiles_answers_say_so_first_and_the_caveat_names_what_it_cannot_show():
    """A cpu profile with a stand-in model or budget (spec `stands_in`): every answer opens with it, the section
    states what the stand-in cannot show, and answers.json keeps the text."""
    from cnnlab.experiments.report import STAND_IN, Report, Source, answers_json, report_document

    why = "SimpleNN for 15 epochs cannot reach 94%; the full profile runs ResNet-44"
    source = Source("r (cpu profile)", "Time to 94%?", [], answers=[{"kind": "target", "target": 0.94,
                                                                      "question": "HW3 4.3"}],
                    profile="cpu", stands_in=why)
    report = Report("r", [source])
    built = report.build()
    (answer,) = built[0].answers
    assert answer.text.startswith(STAND_IN + ": ")
    page = D.render_html(report_document(report, built))
    assert html.escape(f"Profile cpu stands in for the course's setting: {why}.") in page
    (kept,) = json.loads(answers_json(built))
    assert kept["stands_in"] == why and kept["answers"][0]["stands_in"] == why
    assert "smoke_test" not in kept


def test_a_working_table_or_figure_shown_before_is_pointed_to_not_printed_again(tmp_path):
    """HW3 3.4(b), (c) and (d) share one calculation: its working is printed once and pointed to after."""
    from cnnlab.experiments.assignment import assignment_document
    from cnnlab.experiments.pdf import REPO

    work = [f"layer {i}: {i} x 3 = {3 * i}" for i in range(8)]
    q = {"kind": "calc", "answer": "done", "evidence": work, "status": "answered",
         "figures": [{"path": "fig.svg", "caption": "the figure"}],
         "tables": [{"columns": ["a", "b"], "rows": [["1", "2"]]}]}
    data = {"assignment": "HW3", "title": "t", "questions": [
        {**q, "id": "HW3 3.4(b)", "question": "b?"}, {**q, "id": "HW3 3.4(c)", "question": "c?"},
        {**q, "id": "HW3 3.4(d)", "question": "d?", "evidence": ["one line", "of its own"]}]}
    out = D.write_markdown(assignment_document(data, tmp_path, REPO), tmp_path / "a.md")[0].read_text()
    assert out.count("layer 7: 7 x 3 = 21") == 1 and out.count("fig.svg") == 1
    assert out.count("The same working as for HW3 3.4(b), above; the same table as for HW3 3.4(b), above; the "
                     "same figure as for HW3 3.4(b), above.") == 1
    assert "one line" in out   # a short evidence of its own is still printed
