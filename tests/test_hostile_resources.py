"""Hostile and careless input that ran away with time or memory, or ended in a traceback or a silent wrong answer:
YAML bombs and deep nesting, huge counts and grids, a model that cannot fit, malformed tuning spaces, path flags read
as YAML, hostile file names. Each is one `cnnlab: error:` line (exit 2) or handled as documented, and bounded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cli_checks import one_error_line as _one_error_line, run
from cnnlab.cli.main import main


def one_error_line(capsys, code, argv=None):
    return _one_error_line(capsys, code, argv, ignore=("cnnlab: warning:",))


# -- YAML that expands without bound ---------------------------------------------------------------------------------
def billion_laughs(levels: int = 9) -> str:
    """A spec whose `description:` is ten aliases of ten aliases ... `levels` deep: 10**levels strings from about
    600 bytes."""
    lines = ["description:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines + ["grid: {optim.lr: [0.1]}"]) + "\n"


DEEP = "a: " + "[" * 50_000 + "]" * 50_000 + "\n"


@pytest.mark.parametrize("text, words", [(billion_laughs(), "more than 100,000 values"),
                                         (DEEP, "nested deeper than"),
                                         ("a: &a [1, *a]\n", "contains it")],
                         ids=["billion-laughs", "50000-deep", "alias-loop"])
def test_yaml_bombs_are_refused_in_every_command_that_reads_yaml(text, words, tmp_path, capsys, bad_input):
    f = tmp_path / "bomb.yaml"
    f.write_text(text)
    started = time.monotonic()
    for argv in (["sweep", str(f), "--list", "--out", str(tmp_path / "o")], ["train", "--print-config", "-c", str(f)],
                 ["report", str(f), "--out", str(tmp_path / "r.html")]):
        bad_input()
        assert words in one_error_line(capsys, run(argv), argv)
    assert time.monotonic() - started < 10


def flow_bomb(levels: int = 9) -> str:
    """The billion laughs on one line, as a key=value override's value."""
    items = ["&a0 [" + ",".join(["lol"] * 10) + "]"]
    items += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("value, words", [("[" * 50_000 + "]" * 50_000, "nested deeper"),
                                          (flow_bomb(), "more than 100,000 values")], ids=["deep", "laughs"])
def test_yaml_bombs_in_key_value_overrides_are_refused(value, words, tmp_path, capsys, bad_input):
    for argv in (["train", "--print-config", f"optim.lr={value}"],
                 ["sweep", "experiments/04-lr-sweep.yaml", "--list", "--out", str(tmp_path), f"optim.lr={value}"]):
        bad_input()
        line = one_error_line(capsys, run(argv), argv[:2])
        assert "optim.lr" in line and words in line


def test_a_small_bomb_under_the_limit_is_refused_as_not_text(tmp_path, capsys, bad_input):
    """Four levels (10,000 strings) pass the YAML limit; a description must still be text, not a list."""
    f = tmp_path / "spec.yaml"
    f.write_text(billion_laughs(4))
    bad_input()
    line = one_error_line(capsys, main(["sweep", str(f), "--list", "--out", str(tmp_path / "o")]))
    assert "description must be text" in line


@pytest.mark.parametrize("field, text", [("question", "question: [1, 2]"), ("name", "name: {a: 1}"),
                                         ("description", "profiles: {quick: {description: [x]}}"),
                                         ("description", "analysis: [{name: a, args: [x], description: {b: 1}}]")])
def test_text_fields_of_a_spec_must_be_text(field, text, tmp_path, capsys, bad_input):
    f = tmp_path / "spec.yaml"
    f.write_text(text + "\ngrid: {optim.lr: [0.1]}\n")
    bad_input()
    line = one_error_line(capsys, main(["sweep", str(f), "--list", "--out", str(tmp_path / "o")]))
    assert f"{field} must be text" in line


# -- counts past what exists -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", ["100000", "0", "-3"])
def test_data_info_per_class_is_bounded(n, shared_data, tmp_path, capsys, bad_input):
    bad_input()
    started = time.monotonic()
    line = one_error_line(capsys, main(["data", "info", "fashion-mnist", "--data-root", str(shared_data),
                                        "--per-class", n, "--out", str(tmp_path)]))
    assert "--per-class" in line and time.monotonic() - started < 5
    assert not any(tmp_path.iterdir())


def _grid_spec(tmp_path, values_per_axis: int, axes: int) -> Path:
    keys = ["optim.lr", "optim.momentum", "optim.weight_decay", "data.seed", "train.seed", "data.val_size"][:axes]
    values = {k: [(i + 1) / 1000 if k.startswith("optim") else i for i in range(values_per_axis)] for k in keys}
    grid = "\n".join(f"  {k}: {v}" for k, v in values.items())
    f = tmp_path / "big.yaml"
    f.write_text("base: {data.name: fashion-mnist}\ngrid:\n" + grid + "\n")
    return f


def test_a_million_run_grid_is_refused_from_its_size(tmp_path, capsys, bad_input):
    spec = _grid_spec(tmp_path, 10, 6)
    bad_input()
    started = time.monotonic()
    line = one_error_line(capsys, main(["sweep", str(spec), "--list", "--out", str(tmp_path / "o")]))
    assert "1,000,000 runs" in line and "100,000" in line and time.monotonic() - started < 10


def test_sweep_list_of_a_10000_run_grid_prints_its_size_and_streams(tmp_path):
    """The count comes first, then the rows as each run is built: the first row within seconds, not after all."""
    import subprocess
    import sys

    spec = _grid_spec(tmp_path, 10, 4)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "PATH": "/usr/bin:/bin"}
    started = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "cnnlab", "sweep", str(spec), "--list", "--out", str(tmp_path / "o")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = p.stdout.readline()
        took = time.monotonic() - started
    finally:
        p.kill()
        p.wait()
    assert p.stderr.readline().startswith("10,000 planned runs")
    assert "pending" in first and took < 15, (first, took)


# -- a model that cannot fit -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["mlp", "hidden=[1000000,1000000]"], ["alexnet", "--batch-size", "10000000"]],
                         ids=["10^12 weights", "10^7 images"])
def test_sanity_refuses_a_model_or_batch_that_cannot_fit_before_building_it(argv, capsys, bad_input):
    bad_input()
    started = time.monotonic()
    line = one_error_line(capsys, main(["sanity", *argv]))
    assert "GiB of memory" in line and "smaller" in line and time.monotonic() - started < 10


# -- tuning spaces ---------------------------------------------------------------------------------------------------
TUNE_BASE = ("base: {data: {name: fashion-mnist, train_subset: 200, val_subset: 100}, batch: {size: 50}, "
             "train: {epochs: 1, progress: 'off'}}\n")
BAD_SPACES = {
    "choices a string": ("space: {optim.name: {type: categorical, choices: sgd}}", "choices must be a list"),
    "choices a mapping": ("space: {optim.name: {type: categorical, choices: {a: 1}}}", "choices must be a list"),
    "choice a list": ("space: {optim.name: {type: categorical, choices: [[sgd]]}}", "each choice"),
    "when a list": ("space: {optim.name: {type: categorical, choices: [sgd, adam]}, "
                    "optim.momentum: {type: float, low: 0.5, high: 0.9, when: [optim.name]}}", "when must map"),
    "when a string": ("space: {optim.momentum: {type: float, low: 0.5, high: 0.9, when: sgd}}", "when must map"),
    "seed -1": ("seed: -1\nspace: {optim.lr: {type: float, low: 0.01, high: 0.1}}", "seed must be an integer"),
    "seed 2**40": ("seed: 1099511627776\nspace: {optim.lr: {type: float, low: 0.01, high: 0.1}}", "seed must be"),
    "seed text": ("seed: abc\nspace: {optim.lr: {type: float, low: 0.01, high: 0.1}}", "seed must be an integer"),
    "seed 1.5": ("seed: 1.5\nspace: {optim.lr: {type: float, low: 0.01, high: 0.1}}", "seed must be an integer"),
    "trials text": ("trials: many\nspace: {optim.lr: {type: float, low: 0.01, high: 0.1}}", "trials must be"),
    "step 0": ("space: {optim.lr: {type: float, low: 0.01, high: 0.1, step: 0}}", "step must be a positive"),
    "step -0.1": ("space: {optim.lr: {type: float, low: 0.01, high: 0.1, step: -0.1}}", "step must be a positive"),
    "step text": ("space: {optim.lr: {type: float, low: 0.01, high: 0.1, step: big}}", "step must be a positive"),
    "step .nan": ("space: {optim.lr: {type: float, low: 0.01, high: 0.1, step: .nan}}", "step must be a positive"),
    "int step 0.5": ("space: {batch.size: {type: int, low: 16, high: 64, step: 0.5}}", "step must be a positive"),
    "step with log": ("space: {optim.lr: {type: float, low: 0.01, high: 0.1, step: 0.01, log: true}}",
                      "cannot go together"),
    "log 'no'": ("space: {optim.lr: {type: float, low: 0.01, high: 0.1, log: 'no'}}", "log must be true or false"),
    "log 1": ("space: {optim.lr: {type: float, low: 0.01, high: 0.1, log: 1}}", "log must be true or false"),
    "int low 0.5": ("space: {batch.size: {type: int, low: 0.5, high: 64}}", "finite integers"),
}


@pytest.mark.parametrize("kind", sorted(BAD_SPACES))
@pytest.mark.parametrize("report_only", [False, True], ids=["tune", "report-only"])
def test_bad_tuning_spaces_are_refused_when_the_spec_is_read(kind, report_only, tmp_path, capsys, bad_input):
    text, words = BAD_SPACES[kind]
    spec = tmp_path / "t.yaml"
    spec.write_text(TUNE_BASE + "tune:\n" + "\n".join("  " + ln for ln in text.splitlines()) + "\n")
    bad_input()
    argv = ["tune", str(spec), "--out", str(tmp_path / "o"), *(["--report-only"] if report_only else [])]
    line = one_error_line(capsys, run(argv), kind)
    assert words in line, line
    assert not (tmp_path / "o").exists()  # refused before a store or a trial folder was made


def test_two_tune_commands_on_one_store_propose_different_trials(shared_data, tmp_path):
    """Two `cnnlab tune` processes (as on two machines sharing a store) claim different worker slots, so their
    samplers are seeded apart; with one seed both would start from the same proposal."""
    import subprocess
    import sys

    import optuna

    spec = tmp_path / "t.yaml"
    spec.write_text(TUNE_BASE + "tune: {space: {optim.lr: {type: float, low: 1.0e-4, high: 0.3, log: true}, "
                                "optim.momentum: {type: float, low: 0.5, high: 0.99}}}\n")
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "cnnlab", "tune", str(spec), "--out", str(out), "--data-root", str(shared_data),
           "--trials", "2"]
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "cnnlab-store.journal")))
    trials = optuna.load_study(study_name="tune:t/default", storage=storage).trials
    first = {}
    for t in sorted(trials, key=lambda t: t.number):
        first.setdefault(t.user_attrs["pid"], t.params)
    assert len(first) == 2, logs  # both processes ran a trial
    a, b = first.values()
    assert a != b
    assert [s.study_name for s in storage.get_all_studies()] == ["tune:t/default"]  # slots freed


# -- a path flag is a path -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["data #2", "null", "~", "[a, b]", "{a: 1}", "'quoted'", "yes", "1e3"])
def test_path_flags_and_keys_are_taken_literally(path, tmp_path, capsys, bad_input):
    """--data-root, data.root= and out= hold the text as written: no YAML comment, null, list or number."""
    import yaml

    bad_input()
    assert main(["train", "--print-config", "--data-root", path, f"out={path}/runs"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["root"] == path and cfg["out"] == f"{path}/runs"
    bad_input()
    assert main(["train", "--print-config", f"data.root={path}"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["root"] == path


def test_data_root_null_is_a_folder_named_null_everywhere(shared_data, tmp_path, capsys, bad_input, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["train", "--data-root", "null", "data.name=fashion-mnist", f"out={tmp_path / 'o'}"],
                 ["data", "info", "fashion-mnist", "--data-root", "null", "--out", str(tmp_path / "d")]):
        bad_input()
        assert "'null'" in one_error_line(capsys, run(argv), argv)


def test_a_data_root_with_a_hash_trains(shared_data, tmp_path, capsys):
    root = tmp_path / "data #2"
    root.mkdir()
    for f in shared_data.iterdir():
        (root / f.name).symlink_to(f)
    assert main(["train", "--data-root", str(root), "data.name=fashion-mnist", f"out={tmp_path / 'o #1'}", "name=r",
                 "data.train_subset=100", "data.val_subset=50", "batch.size=50", "train.epochs=1",
                 "train.progress=off"]) == 0
    assert (tmp_path / "o #1" / "r" / "best.pt").is_file()
    import yaml

    assert yaml.safe_load((tmp_path / "o #1" / "r" / "config.yaml").read_text())["data"]["root"] == str(root)


# -- hostile file names ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_folder(shared_data, tmp_path_factory):
    """A finished one-epoch SimpleNN run on a slice of Fashion-MNIST."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--data-root", str(shared_data), f"out={out}", "name=r", "data.name=fashion-mnist",
                 "data.train_subset=200", "data.val_subset=100", "train.epochs=1", "batch.size=50",
                 "model.name=simplenn", "train.progress=off"]) == 0
    return out / "r"


HOSTILE_NAMES = {b"caf\xe9.png": "caf\\xe9.png",                      # Latin-1, not UTF-8
                 "\u00b2\u00b3.png".encode(): "\u00b2\u00b3.png",     # digits that are not ASCII digits
                 "\u0661\u0662.png".encode(): "\u0661\u0662.png",
                 b'=HYPERLINK("x.example","y").png': '\'=HYPERLINK("x.example","y").png',
                 b"+1.png": "'+1.png", b"-2.png": "'-2.png", b"@SUM(A1).png": "'@SUM(A1).png", b"7.png": "7.png"}


def test_hostile_image_file_names_become_safe_csv_cells(run_folder, shared_data, tmp_path, capsys, bad_input):
    """Predictions for files whose names are not UTF-8, are non-ASCII digits, or start a spreadsheet formula: the
    CSV is written (UTF-8, odd bytes as \\xNN) and no cell starts a formula."""
    import csv
    import os

    from PIL import Image

    from cnnlab.data import load_dataset

    ds = load_dataset("fashion-mnist", root=str(shared_data), val_size=0, train_subset=100)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, name in enumerate(HOSTILE_NAMES):
        Image.fromarray(ds.train.x[k, 0].numpy()).save(os.path.join(os.fsencode(folder), name), format="PNG")
        bad_input()
    out = tmp_path / "p.csv"
    assert main(["predict", str(run_folder), "--images", str(folder), "--out", str(out), "--probs",
                 "--data-root", str(shared_data)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    rows = list(csv.DictReader(open(out, encoding="utf-8", newline="")))
    assert sorted(r["id"] for r in rows) == sorted(HOSTILE_NAMES.values()), rows
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())


# -- a checkpoint of another run, a folder that is gone, a path of the wrong kind -----------------------------------
def test_evaluate_refuses_a_checkpoint_of_another_model(run_folder, shared_data, tmp_path, capsys, bad_input):
    """best.pt copied in from a run of another model (here: SimpleNN with batch norm) is refused by name, for
    evaluate and predict alike, instead of being evaluated as this run's."""
    import shutil

    other = tmp_path / "runs"
    assert main(["train", "--data-root", str(shared_data), f"out={other}", "name=bn", "data.name=fashion-mnist",
                 "data.train_subset=100", "data.val_subset=50", "train.epochs=1", "batch.size=50",
                 "model.options.batch_norm=true", "train.progress=off"]) == 0
    work = tmp_path / "r"
    shutil.copytree(run_folder, work)
    shutil.copy(other / "bn" / "best.pt", work / "best.pt")
    capsys.readouterr()
    for argv in (["evaluate", str(work), "--data-root", str(shared_data)],
                 ["predict", str(work), "--split", "test", "--out", str(tmp_path / "p.csv"), "--data-root",
                  str(shared_data)]):
        bad_input()
        line = one_error_line(capsys, run(argv), argv)
        assert "best.pt" in line and "model.options" in line and "another run" in line
    assert not (tmp_path / "p.csv").exists()
    assert main(["evaluate", str(run_folder), "--data-root", str(shared_data)]) == 0  # its own checkpoint passes


def test_an_interrupted_run_whose_folder_was_deleted_does_not_offer_resume(shared_data, tmp_path):
    import shutil

    from cnnlab.training.config import load_config
    from cnnlab.training.trainer import Trainer

    cfg = load_config(None, [f"data.root={shared_data}", f"out={tmp_path}", "name=r", "data.name=fashion-mnist",
                             "data.train_subset=100", "data.val_subset=50", "batch.size=50", "train.epochs=3",
                             "train.progress=off"])

    def delete_then_interrupt(trainer, row):
        shutil.rmtree(tmp_path / "r")  # the user removes the run folder, then presses Ctrl-C
        raise KeyboardInterrupt

    lines = []
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, epoch_hook=delete_then_interrupt, log=lines.append).fit()
    said = [ln for ln in lines if ln.startswith("interrupted")]
    assert said and "--resume" not in said[-1] and "cannot be resumed" in said[-1], lines


@pytest.mark.parametrize("argv, words", [
    (["train", "--resume", "{tmp}/gone"], "run folder '{tmp}/gone' not found"),
    (["train", "--resume", "/dev/null"], "is a device, not a folder"),
    (["train", "--resume", "{tmp}/a-file"], "is a file, not a folder"),
    (["evaluate", "/dev/null"], "is a device, not a folder"),
    (["evaluate", "{tmp}/a-file"], "is a file, not a folder"),
    (["train", "--print-config", "-c", "/dev/null"], "is a device, not a file"),
    (["train", "--print-config", "-c", "{tmp}"], "is a folder, not a file"),
    (["sweep", "{tmp}", "--list"], "is a folder, not a file"),
    (["sweep", "/dev/zero", "--list"], "is a device, not a file"),
    (["report", "/dev/null", "--out", "{tmp}/r.html"], "is a device, not a folder"),
    (["report", "{tmp}/a-file", "--out", "{tmp}/r.html"], "is a file, not a .yaml spec"),
    (["predict", "{tmp}/a-file", "--out", "{tmp}/p.csv"], "is a file, not a folder"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_path_of_the_wrong_kind_is_named_for_what_it_is(argv, words, tmp_path, capsys, bad_input):
    (tmp_path / "a-file").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    bad_input()
    line = one_error_line(capsys, run(argv), argv)
    assert words.replace("{tmp}", str(tmp_path)) in line and "damaged" not in line


def _image_folder(root: Path, shared_data: Path, holdout_names, class_names=(b"shirt", b"=cmd")) -> None:
    import os

    from PIL import Image

    from cnnlab.data import load_dataset

    x = load_dataset("fashion-mnist", root=str(shared_data), val_size=0, train_subset=100).train.x
    for c, cls in enumerate(class_names):
        folder = os.path.join(os.fsencode(root), b"train", cls)
        os.makedirs(folder)
        for k in range(20):
            Image.fromarray(x[20 * c + k, 0].numpy()).save(os.path.join(folder, b"%d.png" % k), format="PNG")
    os.makedirs(os.path.join(os.fsencode(root), b"holdout"))
    for k, name in enumerate(holdout_names):
        Image.fromarray(x[k, 0].numpy()).save(os.path.join(os.fsencode(root), b"holdout", name), format="PNG")


IMAGEFOLDER_RUN = ["data.name=imagefolder", "train.epochs=1", "batch.size=10", "data.val_size=10",
                   "train.progress=off", "model.name=lenet5", "name=r"]


@pytest.mark.parametrize("where", ["holdout", "class"])
def test_an_image_folder_with_a_name_that_is_not_utf8_is_refused_before_training(where, shared_data, tmp_path,
                                                                                  capsys, bad_input):
    root = tmp_path / "data"
    if where == "holdout":
        _image_folder(root, shared_data, [b"caf\xe9.png", b"1.png"])
    else:
        _image_folder(root, shared_data, [b"1.png"], class_names=(b"shirt", b"caf\xe9"))
    bad_input()
    line = one_error_line(capsys, main(["train", "--data-root", str(root), f"out={tmp_path / 'o'}",
                                        *IMAGEFOLDER_RUN]))
    assert "not valid UTF-8" in line and "rename" in line
    assert not (tmp_path / "o").exists()


def test_image_folder_predictions_with_hostile_names(shared_data, tmp_path, capsys, bad_input):
    """Holdout ids that are non-ASCII digits or formulas, a class folder named like a formula: predict writes them
    all, sorted, with the formulas neutralised."""
    import csv

    root = tmp_path / "data"
    _image_folder(root, shared_data, ["\u00b2.png".encode(), b"=x.png", b"@y.png", b"5.png"])
    bad_input(4)
    assert main(["train", "--data-root", str(root), f"out={tmp_path / 'o'}", *IMAGEFOLDER_RUN]) == 0
    assert main(["predict", str(tmp_path / "o" / "r"), "--probs"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "r" / "predictions.csv", encoding="utf-8", newline="")))
    assert [r["id"] for r in rows] == ["5", "'=x", "'@y", "\u00b2"]
    assert {r["class"] for r in rows} <= {"shirt", "'=cmd"}
