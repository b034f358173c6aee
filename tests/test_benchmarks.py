"""The benchmark scripts' wiring, on real data and real components: bench_peers.py --quick (airbench94 and cnnlab's
fast route in one table), ablate_fast.py --quick (variants of the fast route as runs, one table), gpu_steps.py on
the CPU (one training step per registered model), gpu_check.sh's refusal without a GPU. The figures themselves come
from full runs on a quiet machine, not from here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _env(session_cache):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), CNNLAB_CACHE=str(session_cache))
    env.pop("CNNLAB_AMP_AUTO", None)
    return env


@pytest.mark.slow
def test_bench_peers_quick_prints_both_rows(shared_data, session_cache, tmp_path):
    try:
        import airbench  # noqa: F401
    except ImportError as e:  # the package is an extra: pip install -e '.[benchmarks]'
        pytest.skip(f"airbench is not installed ({e}); pip install -e '.[benchmarks]' to run the peer benchmark")
    out = subprocess.run([sys.executable, "bench_peers.py", "--quick", "--threads", "1", "--data-root",
                          str(shared_data), "--out", str(tmp_path / "runs")], cwd=BENCH, env=_env(session_cache),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| peer |"))
    rows = lines[head + 2:head + 4]  # the table's two rows, after its header and separator
    assert [r.split(" | ")[0] for r in rows] == ["| airbench94 (airbench 0.1.8)", "| cnnlab fastcnn-cpu (fastcnn)"]
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert float(cells[1].replace(",", "")) > 0  # images/s
        assert 0 <= float(cells[5]) <= 1 and 0 <= float(cells[6]) <= 1  # accuracy without and with TTA
    assert "train 512 / val 256" in text and "1 threads" in text
    assert "make_net94: .half().cuda() skipped" in text  # what was adapted for the CPU is said
    assert "course pipeline" in text and "cnnlab / airbench94: images/s" in text
    assert (tmp_path / "runs" / "peers-fastcnn-cpu" / "best.pt").is_file()


def test_gpu_steps_runs_each_model_on_the_cpu():
    out = subprocess.run([sys.executable, "gpu_steps.py", "--device", "cpu", "--models", "simplenn,resnet20",
                          "--batch", "4"], cwd=BENCH, env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [r.split(" | ")[0] for r in rows] == ["| simplenn", "| resnet20"]
    assert all("ok" in r and "FAIL" not in r for r in rows), out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no GPU")
def test_gpu_check_refuses_clearly_without_a_gpu():
    out = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], cwd=REPO,
                         env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "no CUDA GPU" in out.stderr and out.stderr.count("\n") <= 2


def _table_rows(text: str) -> dict:
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| variant |"))
    rows = {}
    for line in lines[head + 2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_ablate_fast_quick_trains_each_variant_and_tabulates_its_runs(shared_data, session_cache, tmp_path):
    """Two variants of the fast route through `cnnlab train`: the table's rows are the variants, in order, and its
    numbers are those of their run folders; a second call trains nothing, and one whose run lost its summary (as
    if killed at the end) resumes it; the table is the same each time."""
    import csv

    out = tmp_path / "ablate"
    cmd = [sys.executable, "ablate_fast.py", "--quick", "--variants", "baseline,bias-lr", "--data-root",
           str(shared_data), "--out", str(out), "train.threads=1", "train.amp=none"]
    first = subprocess.run(cmd, cwd=BENCH, env=_env(session_cache), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-3000:]
    rows = _table_rows(first.stdout)
    assert list(rows) == ["baseline", "bias-lr"]
    for variant, cells in rows.items():
        with open(out / variant / "metrics.csv", newline="") as f:
            metrics = list(csv.DictReader(f))
        assert cells[-2] == str(len(metrics)) == "1"                                  # epochs
        assert float(cells[-1]) == pytest.approx(float(metrics[-1]["time"]) / 60, abs=0.006)  # minutes
        assert float(cells[0].replace(",", "")) == pytest.approx(float(metrics[0]["images_per_sec"]), abs=0.6)
        assert all(0 <= float(a) <= 1 for a in cells[5:7])                            # accuracy, without/with TTA
        assert cells[1:5] == ["-"] * 4                                                # 512 images reach no target
    assert "bias_lr_scale: 64.0" in (out / "bias-lr" / "config.yaml").read_text()
    assert "bias_lr_scale: 1.0" in (out / "baseline" / "config.yaml").read_text()
    assert "[--quick" in first.stdout and (out / "ablation.md").read_text() in first.stdout

    (out / "bias-lr" / "summary.json").unlink()
    again = subprocess.run(cmd, cwd=BENCH, env=_env(session_cache), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:] + again.stdout[-3000:]
    assert "baseline: already trained (finished), skipped" in again.stdout
    assert "bias-lr: resuming" in again.stdout
    assert _table_rows(again.stdout) == rows


def test_airbench_gets_its_training_images_shuffled(tmp_path):
    """airbench whitens on the first 5,000 training images; this project's copy is read class by class, so the split
    is written in a seeded random order (the official CIFAR-10 files are shuffled) and the validation split as is."""
    sys.path.insert(0, str(BENCH))
    try:
        from bench_peers import _write_airbench_data
    finally:
        sys.path.remove(str(BENCH))
    from types import SimpleNamespace
    y = torch.arange(10).repeat_interleave(600)                     # class-sorted, as the image folders are read
    x = y.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).to(torch.uint8).contiguous()
    split = SimpleNamespace(x=x, y=y)
    for shuffle in (True, False):
        (tmp_path / str(shuffle)).mkdir()
        _write_airbench_data(tmp_path / str(shuffle), split, [str(i) for i in range(10)], shuffle=shuffle)
        saved = torch.load(tmp_path / str(shuffle) / "train.pt")
        first = saved["labels"][:500]
        assert saved["images"].shape == (6000, 4, 4, 3)                      # NHWC uint8, CifarLoader's layout
        assert torch.equal(saved["images"][:, 0, 0, 0], saved["labels"].to(torch.uint8))  # images stay with labels
        assert sorted(saved["labels"].tolist()) == sorted(y.tolist())       # the same images, reordered
        assert len(first.unique()) == (10 if shuffle else 1)


@pytest.mark.slow
def test_bench_peers_only_cnnlab_names_the_recipe_it_ran(shared_data, session_cache, tmp_path):
    out = subprocess.run([sys.executable, "bench_peers.py", "--quick", "--threads", "1", "--only", "cnnlab",
                          "--config", str(REPO / "configs" / "fastcnn-cpu-short.yaml"), "--data-root",
                          str(shared_data), "--out", str(tmp_path / "runs")], cwd=BENCH, env=_env(session_cache),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| cnnlab") or line.startswith("| airbench")]
    assert len(rows) == 1 and rows[0].startswith("| cnnlab fastcnn-cpu-short (fastcnn)"), out.stdout
    assert "cnnlab / airbench94" not in out.stdout  # no ratio with one side
