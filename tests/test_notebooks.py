"""The notebooks: each runs top to bottom under papermill with `-p quick True`, through cnnlab's public API only,
and is committed without outputs."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# each notebook and a line it must print: the answer it computed, not just "the cells ran"
EXPECTED = {"simplenn-cifar10": "initial loss", "simplenn-cifar10-dev": "best val acc",
            "resnet-cifar10": "TTA flip-translate", "save_test_predictions": "10,000 rows",
            "fashion-clr-cbs": "suggested lr_min", "vgg-bn-landscape": "mean width of the loss band"}


def test_the_course_notebooks_are_all_there():
    assert {p.stem for p in NOTEBOOKS} == set(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_and_uses_the_public_api(path):
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb["cells"] if c["cell_type"] == "code"), "commit notebooks without outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "quick = False" in "".join(tagged[0]["source"])
    text = "\n".join(code)
    assert "from cnnlab import api" in text
    imports = re.findall(r"^\s*(?:from|import) (cnnlab[.\w]*)", text, flags=re.M)
    assert set(imports) <= {"cnnlab"}, f"notebooks use cnnlab.api only, found imports of {imports}"
    assert not re.search(r"\.\_[a-z]", text), "no private attributes"
    assert sum(c["cell_type"] == "markdown" for c in nb["cells"]) >= 3, "a worked lab explains its steps"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode(path, shared_data, session_cache, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill", reason="pip install 'cnnlab[notebooks]' to run the notebooks")
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), parameters={"quick": True, "data_root": str(shared_data),
                                                                "out": str(tmp_path / "runs")},
                               cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    done = json.loads(out.read_text())
    errors = [o for c in done["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    printed = "".join("".join(o.get("text", "")) for c in done["cells"] for o in c.get("outputs", []))
    assert EXPECTED[path.stem] in printed, printed[-2000:]
