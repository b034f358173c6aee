"""`cnnlab train`, `evaluate` and `predict` through the real command line on a few hundred CIFAR-10 images."""

import csv
import json

import pytest

from cnnlab.cli.main import main


@pytest.fixture(scope="module")
def run_dir(shared_data, session_cache, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(session_cache))
        out = tmp_path_factory.mktemp("runs")
        code = main(["train", "--data-root", str(shared_data), f"out={out}", "name=cli", "data.train_subset=300",
                     "data.val_subset=100", "train.epochs=1", "batch.size=50", "train.tensorboard=true",
                     "train.progress=off"])
        assert code == 0
        yield out / "cli"


def test_train_writes_the_run_folder_and_tensorboard_events(run_dir):
    assert (run_dir / "summary.json").is_file()
    assert list((run_dir / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file"


def test_evaluate_prints_loss_and_accuracy(run_dir, shared_data, capsys):
    assert main(["evaluate", str(run_dir), "--split", "val", "--data-root", str(shared_data)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["split"] == "val" and res["images"] == 100 and 0 <= res["acc"] <= 1 and res["loss"] > 0
    best = json.loads((run_dir / "summary.json").read_text())["best_val_acc"]
    assert res["acc"] == pytest.approx(best)  # best.pt re-evaluated on the same validation split


def test_predict_writes_sorted_id_label_rows_for_every_holdout_image(run_dir, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run_dir), "--split", "holdout", "--out", str(out)]) == 0
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["id", "label"]
    ids = [r[0] for r in rows[1:]]
    assert len(ids) == 10000 and ids == sorted(ids, key=int) and ids[0] == "00000"
    assert all(0 <= int(r[1]) <= 9 for r in rows[1:])
    # an existing file is refused unless --force
    assert main(["predict", str(run_dir), "--split", "holdout", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["predict", str(run_dir), "--split", "holdout", "--out", str(out), "--force"]) == 0


def test_evaluate_on_the_unlabelled_holdout_is_refused(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--split", "holdout"]) == 2
    assert "unlabelled" in capsys.readouterr().err
