"""The notebooks: each runs top to bottom under papermill with `-p quick True`, through cnnlab's public API only,
is committed without outputs, shows every figure it makes as an image, and runs the same from any folder of the
repository."""

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# the api calls that make a figure: each must come out of the executed notebook as one image/png
FIGURE_MAKERS = re.compile(r"\bapi\.(?:new_figure|plot_curves|plot_histograms)\(")
# each notebook and a line it must print: the answer it computed, not just "the cells ran"
EXPECTED = {"simplenn-cifar10": "initial loss", "simplenn-cifar10-dev": "best val acc",
            "resnet-cifar10": "TTA flip-translate", "save_test_predictions": "10,000 rows",
            "fashion-clr-cbs": "suggested lr_min", "vgg-bn-landscape": "mean width of the loss band",
            "project2-cifar10": "best network by test accuracy"}


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
def test_notebook_cells_have_ids(path):
    """nbformat warns that a cell without an id "will become a hard error"; validation must pass without warnings."""
    nbformat = pytest.importorskip("nbformat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    ids = [c.get("id") for c in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids)


def _outputs(done, kind):
    return [o for c in done["cells"] for o in c.get("outputs", []) if o.get("output_type") == kind]


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
    assert not _outputs(done, "error")
    printed = "".join("".join(o.get("text", "")) for c in done["cells"] for o in c.get("outputs", []))
    assert EXPECTED[path.stem] in printed, printed[-2000:]
    assert "Warning" not in "".join("".join(o["text"]) for o in _outputs(done, "stream") if o["name"] == "stderr")
    # a Figure displayed without the inline backend's formatter shows as "<Figure size 1400x380 with 3 Axes>"
    shown = [o for o in _outputs(done, "display_data") + _outputs(done, "execute_result") if "image/png" in o["data"]]
    made = sum(len(FIGURE_MAKERS.findall("".join(c["source"]))) for c in done["cells"] if c["cell_type"] == "code")
    assert len(shown) == made, f"{made} figures made, {len(shown)} shown as images"


def test_notebook_finds_data_and_runs_folder_from_the_repository_root(shared_data, session_cache, tmp_path,
                                                                      monkeypatch):
    """Started from the repository root with only `-p quick True`, a notebook finds the data (CNNLAB_DATA, else
    shared/data beside the checkout) and writes its runs under the root's `out`, as it does from notebooks/."""
    papermill = pytest.importorskip("papermill", reason="pip install 'cnnlab[notebooks]' to run the notebooks")
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if shared_data.resolve() == (REPO.parent / "shared" / "data").resolve():
        monkeypatch.delenv("CNNLAB_DATA", raising=False)  # the default: shared/data beside the checkout
    else:
        monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    out = f"runs/test-notebooks-{os.getpid()}"  # relative: resolved against the repository root
    try:
        papermill.execute_notebook(str(REPO / "notebooks" / "simplenn-cifar10.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"quick": True, "out": out}, cwd=str(REPO), kernel_name="python3",
                                   progress_bar=False)
        assert (REPO / out / "lab1-baseline" / "metrics.csv").exists()
        assert not (REPO / "notebooks" / out).exists()
    finally:
        shutil.rmtree(REPO / out, ignore_errors=True)
