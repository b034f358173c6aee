"""Hostile and careless input, generated from the config schema and from a real run folder: every case is one
`cnnlab: error:` line and exit status 2 (or handled as documented), never a traceback, nothing written outside the
output folder, bounded memory. The count of generated inputs is printed at the end of the run (conftest.py)."""

from __future__ import annotations

import io
import os
import shutil
import typing
from pathlib import Path

import pytest
import torch
import yaml

from cli_checks import one_error_line as _one_error_line, run
from cnnlab.cli.main import main
from cnnlab.training import config as C


def one_error_line(capsys, code, argv=None):
    return _one_error_line(capsys, code, argv, ignore=("cnnlab: warning:",))

# -- the schema -----------------------------------------------------------------------------------------------------


def _base(tp):
    """Optional[X] -> X."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Union else tp


FIELDS = {key: (_base(tp), meta) for key, (tp, meta, _) in C.schema().items()}
FLOAT_KEYS = sorted(k for k, (tp, _) in FIELDS.items() if tp is float)
INT_KEYS = sorted(k for k, (tp, _) in FIELDS.items() if tp is int)
FLOAT_LIST_KEYS = sorted(k for k, (tp, _) in FIELDS.items() if typing.get_args(tp) == (float,))


def _int_bad_values(meta):
    values = ["99999999999999999999999", str(meta["max"] + 1)]
    low = meta["gt"] + 1 if meta.get("gt") is not None else meta.get("min")
    values += [v for v in ("0", "-1") if low is not None and int(v) < low]
    return values


SCHEMA_CASES = (
    [(k, v) for k in FLOAT_KEYS for v in (".nan", ".inf", "-.inf", "1e308")]
    + [(k, v) for k in FLOAT_LIST_KEYS for v in ("[.nan]", "[.inf]", "[-.inf]", "[1e308]")]
    + [(k, v) for k in INT_KEYS for v in _int_bad_values(FIELDS[k][1])]
)
NAME_CASES = ["..", ".", "/an/absolute/path", "../escaped", "a/b", "x" * 256, "a\0b", "caf\udce9", ""]


def test_every_number_in_the_schema_has_an_upper_bound():
    """What makes 'huge' refusable: a key without a maximum would let 1e308 (or 10^23) through."""
    unbounded = [k for k in FLOAT_KEYS + INT_KEYS + FLOAT_LIST_KEYS
                 if FIELDS[k][1].get("max") is None and FIELDS[k][1].get("lt") is None]
    assert unbounded == []


@pytest.mark.parametrize("key,value", SCHEMA_CASES)
def test_non_finite_huge_and_out_of_range_numbers_are_refused(key, value, capsys, bad_input):
    bad_input()
    line = one_error_line(capsys, main(["train", "--print-config", f"{key}={value}"]), key)
    assert key in line


@pytest.mark.parametrize("name", NAME_CASES, ids=range(len(NAME_CASES)))
def test_run_names_that_are_not_one_folder_name_are_refused(name, capsys, bad_input):
    bad_input()
    line = one_error_line(capsys, main(["train", "--print-config", f"name={name}"]), name)
    assert "'name'" in line


@pytest.mark.parametrize("device", ["meta", "xla", "cuda:x", "floppy"])
def test_devices_cnnlab_does_not_train_on_are_refused(device, capsys, bad_input):
    bad_input()
    assert "train.device" in one_error_line(capsys, main(["train", "--print-config", f"train.device={device}"]),
                                          device)


# -- config files ---------------------------------------------------------------------------------------------------
CONFIG_FILES = {
    "not UTF-8": b"optim:\n  lr: 0.1 \xff\xfe\n",
    "UTF-16": "optim:\n  lr: 0.1\n".encode("utf-16"),
    "duplicate key": b"optim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n",
    "duplicate section": b"optim: {lr: 0.1}\ntrain: {epochs: 2}\noptim: {lr: 0.2}\n",
    "python tag": b"optim: !!python/object/apply:os.system ['echo pwned']\n",
    "binary garbage": bytes(range(256)),
    "a list": b"- 1\n- 2\n",
    "NaN inside": b"optim:\n  weight_decay: .nan\n",
}


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_bad_config_files_are_one_line_errors(kind, tmp_path, capsys, bad_input):
    bad_input()
    f = tmp_path / "run.yaml"
    f.write_bytes(CONFIG_FILES[kind])
    line = one_error_line(capsys, main(["train", "--print-config", "-c", str(f)]), kind)
    assert str(f) in line or "weight_decay" in line
    if kind.startswith("duplicate"):
        assert "duplicate key" in line and "line" in line


def test_a_duplicate_key_names_both_lines(tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_bytes(CONFIG_FILES["duplicate key"])
    line = one_error_line(capsys, main(["train", "--print-config", "-c", str(f)]), "dup")
    assert "'lr'" in line and "line 4" in line and "first on line 2" in line


# -- paths of outputs and inputs ------------------------------------------------------------------------------------
@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    return f


def _path_cases(a_file: Path):
    """Path-like values that cannot work: under a regular file, too long, not UTF-8, missing."""
    return {"under a file": str(a_file / "sub" / "x"), "too long": "/tmp/" + "a" * 5000,
            "component too long": "/tmp/" + "b" * 300 + "/x", "not UTF-8": "/tmp/caf\udce9/x"}


def test_unwritable_outputs_are_refused_before_any_work(run_folder, a_file, shared_data, tmp_path, capsys, bad_input):
    cases = _path_cases(a_file)
    argvs = []
    for label, p in cases.items():
        argvs += [["predict", str(run_folder), "--out", p + ".csv", "--data-root", str(shared_data)],
                  ["report", str(run_folder), "--out", p + ".html"],
                  ["sweep", "experiments/01-simplenn-decay.yaml", "--store", f"sqlite:///{p}.db", "--out",
                   str(tmp_path / "o")],
                  ["sweep", "experiments/01-simplenn-decay.yaml", "--store", p + ".journal", "--out",
                   str(tmp_path / "o")]]
    argvs += [["predict", str(run_folder), "--out", str(tmp_path), "--data-root", str(shared_data)],  # a folder
              ["report", str(run_folder), "--out", str(tmp_path / "r.pdf.txt")]]
    before = set(tmp_path.rglob("*"))
    for argv in argvs:
        bad_input()
        one_error_line(capsys, run(argv), argv)
    assert set(tmp_path.rglob("*")) == before  # nothing written, not even an empty file


def test_bad_paths_for_every_path_flag_and_key(run_folder, a_file, shared_data, tmp_path, capsys, bad_input):
    cases = _path_cases(a_file)
    for label, p in cases.items():
        for argv in (["train", "-c", p], ["train", "--resume", p], ["evaluate", p], ["predict", p],
                     ["report", p, "--out", str(tmp_path / "r.html")], ["sweep", p],
                     ["train", f"data.root={p}", "data.name=fashion-mnist", f"out={tmp_path / 'o'}"],
                     ["train", "data.name=fashion-mnist", "--data-root", str(shared_data), "data.train_subset=100",
                      "data.val_subset=100", "train.epochs=1", f"out={p}"],
                     ["evaluate", str(run_folder), "--data-root", p]):
            bad_input()
            one_error_line(capsys, run(argv), argv)
    assert not (tmp_path / "o").exists()


# -- a real run folder, damaged file by file ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_folder(shared_data, tmp_path_factory):
    """A finished two-epoch run (so last.prev.pt exists) on a slice of Fashion-MNIST."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", "--data-root", str(shared_data), f"out={out}", "name=r", "data.name=fashion-mnist",
                 "data.train_subset=200", "data.val_subset=100", "train.epochs=2", "batch.size=50",
                 "model.name=simplenn", "train.progress=off"])
    assert code == 0
    return out / "r"


def _checkpoint_damage(path: Path):
    ckpt = torch.load(path, weights_only=True)
    shapes = {k: torch.zeros(3, 1) if v.dim() else v for k, v in ckpt["model"].items()}
    opt = {**ckpt["optimizer"], "state": {k: {n: torch.zeros(7) for n in s} for k, s in ckpt["optimizer"]["state"]
                                          .items()}}
    variants = {"no optimizer": {k: v for k, v in ckpt.items() if k != "optimizer"},
                "no rng": {k: v for k, v in ckpt.items() if k != "rng"},
                "epoch 'abc'": {**ckpt, "epoch": "abc"},
                "epoch -5": {**ckpt, "epoch": -5},
                "model wrong shapes": {**ckpt, "model": shapes},
                "optimizer wrong shapes": {**ckpt, "optimizer": opt},
                "model not tensors": {**ckpt, "model": {k: "x" for k in ckpt["model"]}},
                "a list": [1, 2, 3]}
    out = {}
    for name, obj in variants.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        out[name] = buf.getvalue()
    return out


def _damages(path: Path):
    data = path.read_bytes()
    common = {"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(512) + b"\xff\xfe"}
    if path.suffix == ".pt":
        return {**common, **_checkpoint_damage(path)}
    if path.name == "config.yaml":
        return {**common, "python tag": b"model: !!python/object/apply:os.system ['echo pwned']\n",
                "a list": b"- 1\n", "wrong keys": b"colour: blue\n",
                "other run": data.replace(b"\n  lr: 0.01\n", b"\n  lr: 0.02\n")}
    if path.name == "metrics.csv":
        return {**common, "wrong keys": b"a,b\n1,2\n", "epoch abc": data.replace(b"\n1,", b"\nabc,", 1)}
    return {**common, "a list": b"[1, 2]", "wrong keys": b'{"status": 5, "targets": 7}'}  # summary.json


COMMANDS = {"resume": lambda r, d, t: ["train", "--resume", str(r), "--data-root", d],
            "evaluate": lambda r, d, t: ["evaluate", str(r), "--data-root", d],
            "predict": lambda r, d, t: ["predict", str(r), "--split", "test", "--out", str(t / "p.csv"), "--data-root",
                                                d],
            "report": lambda r, d, t: ["report", str(r), "--out", str(t / "r.html")]}
READS = {"resume": {"config.yaml", "last.pt", "metrics.csv"}, "evaluate": {"best.pt"}, "predict": {"best.pt"},
         "report": {"config.yaml", "summary.json", "metrics.csv"}}
TRAINING_ONLY = {"no optimizer", "no rng", "epoch 'abc'", "epoch -5", "optimizer wrong shapes"}
FILES = ["config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt", "last.prev.pt"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("damaged", FILES)
def test_damaged_run_folders(command, damaged, run_folder, shared_data, tmp_path, capsys, bad_input):
    """Every file of a run truncated, emptied, garbage, with wrong keys or shapes, under every command that reads
    run folders: a file the command reads is refused by name in one line, except last.pt under --resume, which
    falls back to a good last.prev.pt with a warning."""
    work = tmp_path / "run"
    for kind, data in _damages(run_folder / damaged).items():
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(run_folder, work)
        (work / damaged).write_bytes(data)
        outside = tmp_path / "out"
        shutil.rmtree(outside, ignore_errors=True)
        outside.mkdir()
        bad_input()
        argv = COMMANDS[command](work, str(shared_data), outside)
        code = run(argv)
        out = capsys.readouterr()
        assert "Traceback" not in out.err + out.out, (damaged, kind, out.err)
        refused = damaged in READS[command] and not (damaged == "last.pt" and command == "resume")
        lenient = (kind == "truncated" and damaged.endswith((".csv", ".yaml"))  # a cut text may still be whole rows
                   or command in ("evaluate", "predict") and kind in TRAINING_ONLY  # entries they never read
                   or command == "report" and kind == "other run")  # a valid config: only a checkpoint tells
        if refused and not lenient:
            assert code == 2, (damaged, kind, code, out.err)
        if code != 0:
            lines = [ln for ln in out.err.splitlines() if ln.strip() and not ln.startswith("cnnlab: warning:")]
            assert code == 2 and len(lines) == 1 and lines[0].startswith("cnnlab: error:"), (damaged, kind, out.err)
            assert damaged in lines[0] or "last.prev.pt" in lines[0] or "config.yaml" in lines[0], lines[0]
        if damaged == "last.pt" and command == "resume" and code == 0:
            assert "using the previous checkpoint" in out.err
        assert set(p.name for p in tmp_path.iterdir()) <= {"run", "out"}


def test_a_config_yaml_that_disagrees_with_the_checkpoint_is_refused(run_folder, shared_data, tmp_path, capsys):
    work = tmp_path / "run"
    shutil.copytree(run_folder, work)
    text = (work / "config.yaml").read_text()
    assert "\n  lr: 0.01\n" in text
    (work / "config.yaml").write_text(text.replace("\n  lr: 0.01\n", "\n  lr: 0.02\n"))
    line = one_error_line(capsys, main(["train", "--resume", str(work), "--data-root", str(shared_data)]),
                          "resume")
    assert "does not match" in line and "optim.lr" in line
    assert yaml.safe_load((work / "config.yaml").read_text())["optim"]["lr"] == 0.02  # nothing rewritten
