"""Figures without pyplot: importing cnnlab never switches matplotlib's backend, and one writer saves PNG, SVG and
PDF atomically, SVG/PDF identical between runs."""

import subprocess
import sys

import pytest

from cnnlab.plotting import figure_bytes, new_figure, save_figure


def test_importing_cnnlab_leaves_the_backend_and_pyplot_alone():
    code = ("import matplotlib, sys; matplotlib.use('pdf'); import cnnlab.api, cnnlab.analysis.common, "
            "cnnlab.experiments.report, cnnlab.data.preview; "
            "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend(); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def _figure():
    fig, axes = new_figure(figsize=(3, 2))
    axes[0][0].plot([1, 2, 3], [3, 1, 2], label="a")
    return fig


@pytest.mark.parametrize("suffix, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_save_figure_writes_each_format(tmp_path, suffix, magic):
    path = save_figure(_figure(), tmp_path / f"f.{suffix}")
    assert path.read_bytes().startswith(magic)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp file left behind"
    if suffix != "png":  # no timestamp and no random element ids inside: the same figure, the same bytes
        assert figure_bytes(_figure(), suffix) == path.read_bytes()
        assert b"CreationDate" not in path.read_bytes() and b"<dc:date>" not in path.read_bytes(), \
            "a date stamp makes the bytes differ whenever two saves straddle a second"


def test_unknown_format_is_refused(tmp_path):
    fig, _ = new_figure()
    with pytest.raises(ValueError, match="png, svg, pdf"):
        save_figure(fig, tmp_path / "f.bmp")
