"""Every recipe's quick profile, run whole (minutes each on a 2-core CPU, so marked slow: `pytest -m slow`).

Each must finish every run (finished or diverged, none failed) and produce its report with the table and figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnnlab.experiments.report import make_report
from cnnlab.experiments.sweep import DONE_STATES, SweepOptions, make_plan, sweep

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_quick_profile_runs_and_reports(path, tmp_path, monkeypatch, session_cache, shared_data):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    opts = SweepOptions(str(path), "quick", [f"data.root={shared_data}"], out=str(tmp_path / "runs"))
    records = sweep(opts, log=lambda s: None)
    plan = make_plan(opts)
    states = {r.name: records[r.key].state if r.key in records else "missing" for r in plan.runs}
    assert all(s in DONE_STATES for s in states.values()), states
    paths = make_report([str(path)], str(tmp_path / "report.html"), "quick", runs_out=str(tmp_path / "runs"))
    page = paths["html"].read_text()
    assert len(re.findall(r"<tr class=", page)) == len(plan.runs)
    assert page.count("data:image/svg+xml;base64,") >= 2  # the curves and the recipe's own figure(s), as vectors
    answers = re.search(r"<ul class='answers[^']*'>(.*?)</ul>", page, re.S)
    assert answers and answers.group(1).count("<li>") == len(plan.spec.answers)
    assert "not answered: " not in answers.group(1)  # every selector names one setting of the runs
