"""docs/api.md: every Python example runs, in order, in one namespace, against the real datasets (small subsets)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_api_document_has_examples():
    assert len(blocks()) >= 7


def test_every_api_example_runs(shared_data, session_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.chdir(tmp_path)
    ns = {}
    for i, code in enumerate(blocks()):
        code = code.replace('DATA = "../shared/data"', f"DATA = {str(shared_data)!r}")
        try:
            exec(compile(code, f"{DOC.name} example {i + 1}", "exec"), ns)
        except Exception as e:  # name the example that broke, not just the line inside exec
            pytest.fail(f"docs/api.md example {i + 1} failed: {type(e).__name__}: {e}\n{code}")
    assert (tmp_path / "runs" / "api-examples" / "predictions.csv").exists()
    assert (tmp_path / "runs" / "api-examples" / "curves.svg").read_text().lstrip().startswith("<?xml")
    assert ns["paths"]["csv"].exists()
