"""Reports: content of the HTML page and its Markdown twin from a real tiny sweep, the page as headless Chromium
renders it, and the `cnnlab sweep` / `cnnlab report` commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import cnnlab.cli.main as cli_main
from cnnlab.experiments.figures import Entry, draw

TINY = {"data": {"name": "cifar10", "train_subset": 300, "val_subset": 100},
        "model": {"name": "simplenn"}, "batch": {"size": 64}, "train": {"epochs": 2, "progress": "off",
                                                                        "targets": [0.1]}}
HEADER_RGB = (0x2B, 0x57, 0x97)  # table.runs th background in document.CSS


@pytest.fixture(scope="module")
def swept(tmp_path_factory, session_cache, shared_data):
    """A 3-run lr sweep (one diverges) and its report, made once through the command line."""
    tmp = tmp_path_factory.mktemp("report")
    spec = tmp / "lr.yaml"
    spec.write_text(yaml.safe_dump({"question": "Which lr?", "base": TINY, "grid": {"optim.lr": [1.0e5, 0.05, 0.01]},
                                    "report": {"figures": [{"kind": "sweep", "x": "optim.lr"},
                                                           {"kind": "target"}]}}))
    old = {k: os.environ.get(k) for k in ("CNNLAB_CACHE", "CNNLAB_DATA")}
    os.environ.update(CNNLAB_CACHE=str(session_cache), CNNLAB_DATA=str(shared_data))
    try:
        rc = run_cli(["sweep", str(spec), "--out", str(tmp / "runs"), "--report", str(tmp / "rep" / "lr.html")])
        yield tmp, spec, rc
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def run_cli(argv):
    """cnnlab's own entry point, in-process."""
    return cli_main.main(argv)


def test_sweep_command_finishes_and_writes_the_report(swept):
    tmp, _, rc = swept
    assert rc == 0
    assert (tmp / "rep" / "lr.html").exists() and (tmp / "rep" / "lr.md").exists()


def test_html_report_holds_the_table_and_embedded_figures(swept):
    tmp, _, _ = swept
    page = (tmp / "rep" / "lr.html").read_text()
    table = re.search(r"<table class='runs' id='runs-0'>(.*?)</table>", page, re.S).group(1)
    header = re.findall(r"<th>(.*?)</th>", table)
    # best accuracy right after the run; the varied key by a short label (a header wraps only between words); results
    assert header[:6] == ["run", "best val acc", "lr", "status", "best epoch", "final train acc"]
    assert {"wall time (s)", "images/s", "diverged", "epoch / s to 10%"} <= set(header)
    assert "params" not in header and "every run: 82,030 parameters" in page   # equal in every run: said once
    rows = re.findall(r"<tr class='(.*?)'>(.*?)</tr>", table, re.S)
    cells = {re.findall(r"<td[^>]*>(.*?)</td>", r)[0]: (cls, re.findall(r"<td[^>]*>(.*?)</td>", r))
             for cls, r in rows}
    assert set(cells) == {"lr=100000", "lr=0.05", "lr=0.01"}
    assert cells["lr=100000"][0] == "diverged" and "yes" in cells["lr=100000"][1]
    # 300 images and 10 steps leave SimpleNN at chance (10% on 100 images, loss ln 10): the table says so
    assert cells["lr=0.05"][1][3] == "did not learn" and cells["lr=0.05"][1][2] == "0.05"
    assert cells["lr=0.05"][0] == "nolearn"
    assert re.fullmatch(r"\d+\.\d\d%", cells["lr=0.05"][1][1])
    imgs = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(imgs) == 3  # curves, best val acc against lr, time to target
    assert all(src.startswith("data:image/svg+xml;base64,") for src in imgs), "self-contained, vector figures"
    assert "Which lr?" in page
    assert "cifar10, 300 training images, 100 validation images, 2 epochs" in page
    # what ran, named once: the model and its size, the optimizer, lr and schedule, batch size, augmentation
    ran = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert ran["model"] == "simplenn, 82,030 parameters" and ran["optimizer"] == "sgd, momentum 0.9"
    assert ran["learning rate"].startswith("differs per run: 100000; 0.05; 0.01")
    assert ran["schedule"] == "constant" and ran["batch size"] == "64" and ran["augmentation"] == "none"
    assert ran["epochs"] == "2"


def test_runs_csv_has_one_row_per_run_with_the_numbers(swept):
    tmp, _, _ = swept
    import csv

    rows = list(csv.DictReader((tmp / "rep" / "lr-runs.csv").open()))
    assert [r["run"] for r in rows] == ["lr=100000", "lr=0.05", "lr=0.01"]
    assert {"optim.lr", "status", "best_val_acc", "best_epoch", "final_train_acc", "final_train_loss",
            "final_val_loss", "weight_sparsity", "wall_s", "images_per_sec", "params", "epochs_to_0.1",
            "seconds_to_0.1"} <= set(rows[0])
    ok = rows[1]
    assert int(ok["params"]) == 82_030 and float(ok["images_per_sec"]) > 0  # SimpleNN, as `cnnlab models` says
    assert ok["status"] == "did not learn" and float(ok["optim.lr"]) == 0.05  # at chance, as the table says and 0 <= float(ok["best_val_acc"]) <= 1
    assert 0 <= float(ok["weight_sparsity"]) < 0.5 and float(ok["wall_s"]) > 0
    assert rows[0]["status"] == "diverged"


def test_a_key_set_by_a_group_shows_its_value_beside_the_runs_that_vary_it():
    import csv
    import io

    from cnnlab.experiments.report import Source, runs_csv

    done = {"best_val_acc": 0.7, "wall_time": 10.0}
    entries = [Entry("standard", {"group": "standard"}, "finished", done, config={"augment.repeats": 1}),
               Entry("ba_repeats=4", {"group": "ba", "augment.repeats": 4}, "finished", done,
                     config={"augment.repeats": 4})]
    rows = list(csv.DictReader(io.StringIO(runs_csv([Source("09", entries=entries)]))))
    assert [(r["group"], r["augment.repeats"]) for r in rows] == [("standard", "1"), ("ba", "4")]


def test_markdown_twin_has_the_same_table_and_png_files(swept):
    tmp, _, _ = swept
    md = (tmp / "rep" / "lr.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 and table[0].startswith("| run | best val acc | lr | status")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 3 and all((tmp / "rep" / link).stat().st_size > 1000 for link in links)


def test_report_from_run_folders_finds_what_varied(swept):
    tmp, _, _ = swept
    folders = sorted(str(p) for p in (tmp / "runs" / "lr" / "default").iterdir() if p.is_dir())
    out = tmp / "rep2" / "folders.html"
    assert run_cli(["report", *folders, "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "| run | best val acc | lr | status |" in md  # the one key that differs between the folders
    assert md.count("![") == 2  # curves and the automatic lr figure (one numeric key with 3 values)


def test_sweep_list_shows_states(swept, capsys):
    tmp, spec, _ = swept
    assert run_cli(["sweep", str(spec), "--out", str(tmp / "runs"), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    states = {line.split()[0]: line.split()[1] for line in out}
    assert states == {"lr=100000": "diverged", "lr=0.05": "finished", "lr=0.01": "finished"}


@pytest.mark.parametrize("text, words", [
    ("grid: {optim.lr: []}", ["axis 'optim.lr' is empty"]),
    ("grid: {optim.lrate: [0.1]}", ["unknown config key 'optim.lrate'", "did you mean 'optim.lr'"]),
    ("grid: {train.epochs: [two]}", ["config key 'train.epochs': expected int"]),
])
def test_bad_spec_on_the_command_line_is_one_clear_line(tmp_path, capsys, text, words):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text + "\n")
    assert run_cli(["sweep", str(spec), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(spec) in err
    for w in words:
        assert w in err


def test_report_of_a_missing_input_is_a_clear_error(tmp_path, capsys):
    assert run_cli(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r.html")]) == 2
    assert "not found" in capsys.readouterr().err


def test_sweep_figure_uses_a_symlog_axis_when_l2_includes_zero():
    entries = [Entry(f"wd={w}", {"optim.weight_decay": w}, "finished", {"best_val_acc": a, "final_train_acc": a},
                     [], {}) for w, a in ((1e-2, 0.3), (1e-3, 0.5), (1e-4, 0.55), (0.0, 0.52))]
    drawn = draw("sweep", entries, x="optim.weight_decay")
    assert drawn.fig.axes[0].get_xscale() == "symlog"
    assert sorted(r["optim.weight_decay"] for r in drawn.rows if "best_val_acc" in r) == [0.0, 1e-4, 1e-3, 1e-2]


# ----------------------------------------------------------------------------------------------------------------------

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found: run scripts/install-chromium.sh (Debian: apt-get install chromium)")


def test_report_renders_in_headless_chromium(swept, tmp_path):
    exe = chromium()
    tmp, _, _ = swept
    page = (tmp / "rep" / "lr.html").resolve()
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (1600, 1200)
    assert (np.abs(img - 255).sum(axis=2) > 30).mean() > 0.05, "the screenshot is (nearly) blank"
    header = (np.abs(img - np.array(HEADER_RGB)).sum(axis=2) < 12)
    rows = np.nonzero(header.sum(axis=1) > 300)[0]  # the table's header band: a wide strip of its colour
    assert rows.size >= 10, "the runs table's header is not visible"
    assert rows.min() < 400, "the table should be near the top of the page"
    dom = subprocess.run([exe, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert dom.count("<tr class=") == 3


def test_report_from_the_store_alone_as_on_another_machine(swept, tmp_path):
    """Workers on several machines keep their run folders locally; the store holds every run's summary and curves."""
    tmp, spec, _ = swept
    out = tmp_path / "elsewhere.html"
    assert run_cli(["report", str(spec), "--store", str(tmp / "runs" / "cnnlab-store.journal"),
                    "--runs-out", str(tmp_path / "no-folders-here"), "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| lr=")]
    assert len(rows) == 3 and all(re.search(r"\d+\.\d\d%", r) for r in rows)
    assert md.count("![") == 3


def test_sweep_figure_keeps_zipped_axes_on_one_line():
    """Batch sizes zipped with their epochs (fixed iterations) are one series, not one series per point."""
    entries = [Entry(f"bs={b}", {"batch.size": b, "train.epochs": b // 64}, "finished",
                     {"best_val_acc": 0.5 + b / 1e5}, [], {}) for b in (64, 128, 256, 512)]
    drawn = draw("sweep", entries, x="batch.size", y="best_val_acc")
    assert len(drawn.fig.axes[0].lines) == 1 and len(drawn.fig.axes[0].lines[0].get_xdata()) == 4


# ----------------------------------------------------------------------------------------------------------------------
# Layout as a person sees it: three kinds of report rendered at 1280 px, checked from the page itself.

CHECK_JS = """
<script>
function cnnlabCheck() {
  const vw = document.documentElement.clientWidth;
  const inBox = el => el.closest('.table-wrap') && !el.classList.contains('table-wrap');
  const over = [...document.querySelectorAll('body *')].filter(el => !inBox(el))
      .filter(el => el.getBoundingClientRect().right > vw + 1).map(el => el.tagName + '.' + el.className);
  const imgs = [...document.images].map(i => i.complete && i.naturalWidth > 0);
  const best = [...document.querySelectorAll('th')].filter(t => t.textContent === 'best val acc')
      .map(t => { const r = t.getBoundingClientRect(), b = t.closest('.table-wrap').getBoundingClientRect();
                  return r.left >= b.left - 1 && r.right <= Math.min(b.right, vw) + 1; });
  const out = document.createElement('pre');
  out.id = 'cnnlab-check';
  out.textContent = JSON.stringify({vw, scrollWidth: document.documentElement.scrollWidth, over, imgs, best});
  document.body.appendChild(out);
}
window.addEventListener('load', () => setTimeout(cnnlabCheck, 100));
</script>
"""


def rendered_checks(page: Path, tmp_path: Path) -> dict:
    import html
    import json

    exe = chromium()
    probe = page.with_name(page.stem + "-probe.html")
    probe.write_text(page.read_text().replace("</body>", CHECK_JS + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--window-size=1280,900", "--virtual-time-budget=5000"]
    dom = subprocess.run([exe, *flags, "--dump-dom", probe.resolve().as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    found = re.search(r"<pre id=\"cnnlab-check\">(.*?)</pre>", dom, re.S)
    assert found, "the check script did not run"
    shot = page.with_name(page.stem + ".png")  # kept beside the report for a person to look at
    subprocess.run([exe, *flags, f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, timeout=120,
                   check=True)
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def twelve(tmp_path_factory, session_cache, shared_data):
    """12 real tiny runs: 3 learning rates x BN on/off x 2 seeds (1 epoch on 200 images each), swept once."""
    tmp = tmp_path_factory.mktemp("twelve")
    base = {"data": {"name": "cifar10", "train_subset": 200, "val_subset": 100}, "model": {"name": "simplenn"},
            "batch": {"size": 50}, "train": {"epochs": 1, "progress": "off", "checkpoints": True}}
    spec = tmp / "twelve.yaml"
    spec.write_text(yaml.safe_dump({"question": "Do BN and the lr matter, beyond seed noise?", "base": base,
                                    "grid": {"optim.lr": [0.01, 0.05, 0.1], "model.options.batch_norm": [False, True],
                                             "train.seed": [0, 1]},
                                    "report": {"figures": [{"kind": "bars", "y": ["best_val_acc", "wall_time"]},
                                                           {"kind": "sweep", "x": "optim.lr"}]}}))
    old = {k: os.environ.get(k) for k in ("CNNLAB_CACHE", "CNNLAB_DATA")}
    os.environ.update(CNNLAB_CACHE=str(session_cache), CNNLAB_DATA=str(shared_data))
    try:
        assert run_cli(["sweep", str(spec), "--out", str(tmp / "runs")]) == 0
        yield tmp, spec
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.parametrize("kind", ["single run", "sweep", "comparison of 12 run folders"])
def test_reports_fit_a_1280_pixel_window_with_every_figure_loaded(twelve, tmp_path, kind):
    tmp, spec = twelve
    folders = sorted(str(p) for p in (tmp / "runs" / "twelve" / "default").iterdir() if p.is_dir())
    assert len(folders) == 12
    inputs = {"single run": folders[:1], "sweep": [str(spec)], "comparison of 12 run folders": folders}[kind]
    out = tmp_path / "report.html"
    assert run_cli(["report", *inputs, "--out", str(out), "--runs-out", str(tmp / "runs")]) == 0
    res = rendered_checks(out, tmp_path)
    assert res["scrollWidth"] <= res["vw"], f"the page scrolls sideways: {res}"
    assert not res["over"], f"elements overflow the window: {res['over']}"
    assert res["imgs"] and all(res["imgs"]), f"a figure did not load: {res['imgs']}"
    assert res["best"] == [True], "the best-accuracy column must be visible without scrolling"
    rows = (tmp_path / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + len(folders if kind != "single run" else folders[:1])


def test_pdf_report_has_the_question_the_table_and_the_code(swept, tmp_path):
    chromium()
    for tool in ("pdfinfo", "pdftotext", "pdftoppm"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not found (Debian: apt-get install poppler-utils)")
    tmp, spec, _ = swept
    out = tmp_path / "lr.html"
    assert run_cli(["report", str(spec), "--out", str(out), "--runs-out", str(tmp / "runs"), "--pdf"]) == 0
    pdf = out.with_suffix(".pdf")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 2 <= pages <= 8, info
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Which lr?" in text and "best val acc" in text and "lr=0.05" in text
    per_page = text.split("\f")
    first_lines = [next((line.strip() for line in page.splitlines() if line.strip()), "") for page in per_page]
    code_page = first_lines.index("Code")       # the appendix starts a page of its own ...
    assert code_page >= 1 and "Which lr?" in "".join(per_page[:code_page])
    appendix = "".join(per_page[code_page:])
    # no runs-table header broken inside a word (it wraps only between words): each header word is whole
    header = re.findall(r"<th>(.*?)</th>", re.search(r"id='runs-0'>(.*?)</thead>", out.read_text(), re.S).group(1))
    words = set("".join(per_page[:code_page]).split())
    assert [w for h in header for w in h.split() if w not in words] == []
    assert "lr.yaml" in appendix and "grid:" in appendix       # ... with the spec as run
    assert "def simplenn(" in appendix                           # and the code of its model
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
                   check=True, capture_output=True)
    png = next(tmp_path.glob("page*.png"))
    img = np.asarray(Image.open(png).convert("L")).astype(int)
    assert (img < 200).mean() > 0.02, "page 1 renders (nearly) blank"


def test_runs_of_different_recipes_get_a_transposed_settings_table():
    from cnnlab.experiments.figures import labels
    from cnnlab.experiments.report import Source, settings_table, table

    keys = {f"optim.setting{i}": i for i in range(8)}
    a = Entry("recipe-a", dict(keys), "finished", {"best_val_acc": 0.9}, [], {})
    b = Entry("recipe-b", {k: v + 1 for k, v in keys.items()}, "finished", {"best_val_acc": 0.8}, [], {})
    src = Source("two recipes", entries=[a, b])
    header, rows, _ = table(src)
    assert header[:2] == ["run", "best val acc"] and not any(h.startswith("optim.") for h in header)
    s_header, s_rows = settings_table(src)
    assert s_header == ["setting", "recipe-a", "recipe-b"] and [r[0] for r in s_rows] == list(keys)
    assert labels([a, b]) == {"recipe-a": "recipe-a", "recipe-b": "recipe-b"}  # 8 keys: too long for a legend
    few = [Entry("x", {"optim.lr": 0.1, "model.options.batch_norm": True}, "finished", {}, [], {}),
           Entry("y", {"optim.lr": 0.2, "model.options.batch_norm": True}, "finished", {}, [], {})]
    assert labels(few) == {"x": "lr=0.1", "y": "lr=0.2"}  # only what differs, short
    assert settings_table(Source("few", entries=few)) is None


def test_bars_with_a_hue_share_one_legend_below_the_panels():
    entries = [Entry(f"{o}_d={d}", {"variant": o, "model.options.dropout": d}, "finished",
                     {"best_val_acc": acc, "wall_time": t}) for o, d, acc, t in
               (("adam", 0.0, 0.5, 100.0), ("adam", 0.5, 0.55, 130.0), ("sgd", 0.0, 0.4, 90.0), ("sgd", 0.5, 0.38, 120.0))]
    fig = draw("bars", entries, y=["wall_time", "best_val_acc"], by="variant", hue="model.options.dropout").fig
    assert [ax.get_legend() for ax in fig.axes] == [None, None]  # beside a panel it crowded the next one
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["dropout 0", "dropout 0.5"]  # words, not a config key
    # four metrics: two rows of two panels (four in a row shrank to unreadable text on a page); labels name the bars
    for e in entries:
        e.summary.update(params=1000, images_per_sec=500.0)
        e.label = {"adam": "Adam", "sgd": "SGD"}[e.varied["variant"]]
    fig = draw("bars", entries, y=["wall_time", "best_val_acc", "params", "images_per_sec"], by="variant").fig
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 4 and len({round(ax.get_position().y0, 2) for ax in shown}) == 2
    assert [t.get_text() for t in shown[0].get_yticklabels()] == ["Adam", "SGD"]
    assert shown[0].get_title() == "training time (s) by variant"


def test_many_runs_of_several_groups_draw_a_row_of_curves_per_group_with_its_own_legend():
    rows = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "train_acc": 0.2 * e, "val_acc": 0.2 * e,
             "lr": 0.1 / e} for e in (1, 2, 3)]
    nets = [Entry(f"networks_{v}", {"group": "networks", "variant": v}, "finished", {"best_val_acc": 0.5}, rows, {},
                  label=v.upper()) for v in ("a", "b", "c", "d", "e", "f")]
    widths = [Entry(f"widths_width={w}", {"group": "widths", "model.options.width": w}, "finished",
                    {"best_val_acc": 0.5}, rows, {}) for w in (0.5, 1, 2, 4, 8)]
    drawn = draw("curves", nets + widths)
    assert drawn.title.startswith("Loss, accuracy and learning rate per epoch, a row per group")
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in drawn.fig.axes if ax.get_legend()]
    assert legends == [["train", "validation", "A", "B", "C", "D", "E", "F"],
                       ["train", "validation", "width 0.5", "width 1", "width 2", "width 4", "width 8"]]
    assert [ax.get_title() for ax in drawn.fig.axes[::3]] == ["networks: loss", "widths: loss"]
    assert not drawn.fig.legends  # no figure-wide legend of 11 runs over 10 repeating colours
    few = draw("curves", nets[:3] + widths[:3])  # ten or fewer: one panel row, one legend, as before
    assert len(few.fig.axes) == 3 and len(few.fig.legends) == 1


def test_runs_renamed_by_the_spec_are_left_out_and_other_runs_stay_out_of_the_answers(swept, tmp_path):
    tmp, _, _ = swept
    spec = tmp_path / "lr.yaml"  # the same sweep (lr/default) with its runs renamed and lr=1e5 no longer planned
    spec.write_text(yaml.safe_dump({"question": "Which lr?", "base": TINY,
                                    "variants": {"fast": {"optim.lr": 0.05}, "slow": {"optim.lr": 0.01}},
                                    "report": {"answers": [{"kind": "best", "key": "optim.lr"}]}}))
    out = tmp_path / "rep" / "report.html"
    assert run_cli(["report", str(spec), "--out", str(out), "--runs-out", str(tmp / "runs")]) == 0
    md = out.with_suffix(".md").read_text()
    assert "2 earlier run(s) with the settings of planned runs under older names (lr=0.05, lr=0.01) are left out" in md
    assert "1 more run(s) of this spec and profile ran with other settings" in md
    import json

    (source,) = json.loads((out.parent / "answers.json").read_text())
    assert (source["runs"], source["runs_done"]) == (2, 0)  # the cost of the plan's runs, not of the other one
    (answer,) = source["answers"]
    assert "not answered yet" in answer["text"] and "100000" not in answer["text"]  # lr=1e5 is listed, not used


def test_figure_labels_read_unvaried_keys_from_the_config_and_target_bars_name_their_seed():
    entries = [Entry(f"{g}_seed={sd}", {"group": g, "augment.repeats": m, "train.seed": sd} if m > 1 else
                     {"group": g, "train.seed": sd}, "finished", {"best_val_acc": 0.7, "wall_time": 10.0},
                     [{"epoch": 1, "val_acc": 0.7, "time": 10.0}], {"augment.repeats": m, "train.targets": [0.6]})
               for g, m in (("standard", 1), ("ba", 4)) for sd in (0, 1)]
    fig = draw("bars", entries, y="wall_time").fig
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["standard, repeats=1", "ba, repeats=4"]
    fig = draw("target", entries, x="augment.repeats").fig
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["1, seed 0", "1, seed 1", "4, seed 0", "4, seed 1"]
