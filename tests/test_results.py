"""The committed results: the Results page's table (docs/results.md) is exactly what results/*/answers.json say, every answer there
is the one its report.md states, and results/ stays small with no checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from cnnlab.experiments.report import md_text

REPO = Path(__file__).resolve().parents[1]


def test_results_page_table_is_generated_from_the_reports():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "readme_results.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_each_answer_is_the_sentence_its_report_states():
    files = sorted((REPO / "results").glob("*/answers.json"))
    for path in files:
        md = (path.parent / "report.md").read_text()
        for source in json.loads(path.read_text()):
            for a in source["answers"]:
                assert md_text(a["text"]) in md, (path, a["question"])


def test_results_are_small_and_hold_no_checkpoints():
    files = [p for p in (REPO / "results").rglob("*") if p.is_file()]
    # twelve recipe reports (HTML with vector figures, Markdown with PNGs, run files) and three assignment documents
    # came to 12 MiB (2026-12-06); a checkpoint or an embedded dataset would be far more, one file over 2 MiB too
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    assert not [p for p in files if p.stat().st_size > 2 * 2**20]
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".ckpt")]


def _rebuildable():
    """The committed recipe reports that carry their runs' files (report_runs/: config, metrics, summary per run)."""
    return sorted(p.parent for p in (REPO / "results").glob("*/report_runs") if p.is_dir())


def test_committed_reports_carry_their_run_files():
    """At least one committed report can be rebuilt; the others are listed by test_every_committed_report_rebuilds
    as they are rerun (docs/results.md says which recipes are waiting for a rerun)."""
    assert _rebuildable(), "no results/<recipe>/report_runs/ committed"


def test_every_committed_report_rebuilds_from_committed_files(tmp_path, monkeypatch):
    """A clean clone: only results/<recipe>/ (no store, no run folders). `cnnlab report` writes the same
    answers.json and runs.csv again, and no planned run is pending."""
    from cnnlab.cli import main as cli_main

    for folder in _rebuildable():
        clone = tmp_path / folder.name
        shutil.copytree(folder, clone)
        before = {f: (clone / f).read_text() for f in ("answers.json", "runs.csv")}
        (clone / "answers.json").unlink()
        monkeypatch.chdir(REPO)  # the spec as the committed report names it: relative to the repository
        spec = Path("experiments") / f"{folder.name}.yaml"
        assert cli_main.main(["report", str(spec), "--profile", "cpu", "--runs-out", str(tmp_path / "no-runs"),
                              "--out", str(clone / "report.html")]) == 0
        for f, text in before.items():
            assert (clone / f).read_text() == text, (folder.name, f)
        assert "pending" not in (clone / "runs.csv").read_text(), folder.name


def test_a_results_row_is_the_answers_first_sentence_cut_at_40_words():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from readme_results import first_sentence
    finally:
        sys.path.pop(0)
    text = "BN does better on best validation accuracy (67.9% against 50.0%, +17.86 points. n=2). Then more words."
    assert first_sentence(text) == "BN does better on best validation accuracy (67.9% against 50.0%, +17.86 points. n=2)."
    long = " ".join(f"w{i}" for i in range(60)) + "."
    assert first_sentence(long).split()[-1] == "…" and len(first_sentence(long).split()) == 41
    rows = (REPO / "docs" / "results.md").read_text().split("<!-- results:start -->")[1].splitlines()
    cells = [r.split(" | ")[1] for r in rows if r.startswith("| ") and not r.startswith("| question")]
    assert cells and all(len(c.split()) <= 41 for c in cells)
