"""The committed results: the Results page's table (docs/results.md) is exactly what results/*/answers.json say, every answer there
is the one its report.md states, and results/ stays small with no checkpoints."""

from __future__ import annotations

import json
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
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".ckpt")]
