"""Evaluation in depth through the CLI on a real Fashion-MNIST run: per-class accuracy and the confusion matrix,
test-time augmentation and its measured gain, predictions with probabilities, predictions on the user's own files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.training.evaluation import confusion, views


@pytest.fixture(scope="module")
def run(fashion_run):
    return fashion_run("data.train_subset=2000", "data.val_subset=500", "train.epochs=2", "optim.lr=0.05")


def test_evaluate_writes_per_class_accuracy_and_the_confusion_matrix(run, shared_data, capsys):
    assert main(["evaluate", str(run), "--data-root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    assert "Ankle boot" in out and "accuracy" in out.splitlines()[0]
    record = json.loads((run / "evaluation-val.json").read_text())
    conf = np.array(record["confusion"])
    assert conf.sum() == 500 == res["images"]
    assert np.trace(conf) / conf.sum() == pytest.approx(res["acc"])
    for i, row in enumerate(record["per_class"]):
        assert row["images"] == conf[i].sum() and row["acc"] == pytest.approx(conf[i, i] / conf[i].sum())
    rows = list(csv.reader(open(run / "confusion-val.csv")))
    assert rows[0][0] == "true\\predicted" and len(rows) == 11 and sum(int(v) for r in rows[1:] for v in r[1:]) == 500
    assert (run / "confusion-val.png").stat().st_size > 10_000
    best = json.loads((run / "summary.json").read_text())["best_val_acc"]
    assert res["acc"] == pytest.approx(best, abs=1e-6)  # the same checkpoint on the same split


def test_tta_reports_its_gain_against_no_tta(run, shared_data, capsys):
    assert main(["evaluate", str(run), "--tta", "flip", "--data-root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    plain = json.loads((run / "evaluation-val.json").read_text())["acc"] if (run / "evaluation-val.json").exists() \
        else res["acc_without_tta"]
    assert res["acc_without_tta"] == pytest.approx(plain)
    assert res["tta_gain"] == pytest.approx(res["acc"] - res["acc_without_tta"])
    assert "test-time augmentation flip:" in out and (run / "confusion-val-tta-flip.png").exists()


def test_tta_views():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert len(views(x, "none")) == 1 and len(views(x, "flip")) == 2
    vs = views(x, "flip-translate")
    assert len(vs) == 10 and all(v.shape == x.shape for v in vs)
    assert torch.equal(vs[0], x) and torch.equal(vs[5], x.flip(3))
    assert torch.equal(vs[1][:, :, :-1], x[:, :, 1:])  # shifted by one row, the edge reflected
    assert torch.equal(confusion(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2), torch.tensor([[1, 0], [1, 1]]))


def test_predict_writes_class_names_and_probabilities(run, shared_data, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--split", "test", "--probs", "--out", str(out), "--data-root",
                 str(shared_data)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 10_000
    head = list(rows[0])
    assert head[:3] == ["id", "label", "class"] and head[3] == "p_T-shirt/top" and len(head) == 13
    for r in rows[:200]:
        p = [float(r[k]) for k in head[3:]]
        assert sum(p) == pytest.approx(1, abs=1e-4) and int(r["label"]) == int(np.argmax(p))
        assert r["class"] == head[3 + int(r["label"])][2:]


def test_predict_on_the_users_own_images_of_any_size(run, shared_data, tmp_path, capsys):
    import cnnlab.data as data

    ds = data.load_dataset("fashion-mnist", root=shared_data, val_size=0)
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(4):  # the first four test images: two at 28x28, two enlarged to 56x70 RGB
        img = Image.fromarray(ds.test.x[i, 0].numpy())
        if i >= 2:
            img = img.convert("RGB").resize((70, 56), Image.BICUBIC)
        img.save(folder / f"img{i}.png")
    out = tmp_path / "mine.csv"
    assert main(["predict", str(run), "--images", str(folder), "--out", str(out), "--data-root",
                 str(shared_data)]) == 0
    printed = capsys.readouterr().out
    assert "2 not 28x28 were resized" in printed and "centre-cropped" in printed
    rows = list(csv.DictReader(open(out)))
    assert [r["id"] for r in rows] == [f"img{i}.png" for i in range(4)]
    split_out = tmp_path / "test.csv"
    assert main(["predict", str(run), "--split", "test", "--out", str(split_out), "--data-root",
                 str(shared_data)]) == 0
    by_id = {r["id"]: r["label"] for r in csv.DictReader(open(split_out))}
    assert [rows[i]["label"] for i in range(2)] == [by_id["0"], by_id["1"]]  # unresized files: the same answers


def test_predict_refuses_files_that_are_not_images(run, tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", str(run), "--images", str(bad), "--out", str(tmp_path / "o.csv")]) == 2
    assert "cannot read image" in capsys.readouterr().err
