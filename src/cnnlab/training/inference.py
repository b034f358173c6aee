"""Using a finished run: reload its model from a checkpoint, evaluate a split, write holdout predictions.

The model is rebuilt from the config stored in the checkpoint, and the data with the same split seed, so `val` is the
very validation split the run was trained against.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from cnnlab.data import Dataset
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text, path_problem
from cnnlab.training import runtime
from cnnlab.training.checkpoint import MODEL_KEYS, apply_model_state, find_checkpoint, load_checkpoint
from cnnlab.training.config import RunConfig, config_from_dict, read_yaml
from cnnlab.training.ema import served_weights
from cnnlab.data.core import Split
from cnnlab.training.evaluation import predict_probs, scores
from cnnlab.training.setup import build_model, load_data, use_data_root


@dataclass
class LoadedRun:
    cfg: RunConfig
    model: torch.nn.Module
    ds: Dataset
    device: torch.device
    checkpoint: Path

    def loader(self, split: Union[str, Split], batch_size: Optional[int] = None) -> BatchLoader:
        """An evaluation loader, normalised as the run was, over a split of its dataset (by name) or other images."""
        images = self.ds.split(split) if isinstance(split, str) else split
        return BatchLoader(images, batch_size or self.cfg.batch.eval_size, mean=self.ds.mean, std=self.ds.std,
                           device=self.device)


def run_checkpoint(run_dir, which: str = "best") -> Path:
    """The checkpoint of a run folder (best.pt or last.pt, falling back to the other), or one clear error."""
    run_dir = Path(run_dir)
    problem = path_problem(run_dir, "folder")
    if problem:
        raise CnnlabError(f"run folder {str(run_dir)!r} {problem}")
    path = find_checkpoint(run_dir, which)
    if path is None:
        raise CnnlabError(f"no checkpoint (best.pt or last.pt) in {str(run_dir)!r}; was it trained with "
                          "train.checkpoints=true?")
    return path


def load_weights(run_dir, which: str = "best") -> dict:
    """The model state_dict of a run's checkpoint (no dataset loaded): for weight histograms and filters."""
    return served_weights(load_checkpoint(run_checkpoint(run_dir, which)))


def load_run(run_dir, which: str = "best", data_root: Optional[str] = None, device: str = "auto",
             download: bool = False) -> LoadedRun:
    path = run_checkpoint(run_dir, which)
    ckpt = load_checkpoint(path, require=MODEL_KEYS)
    try:
        cfg = config_from_dict(ckpt["config"])
    except CnnlabError as e:
        raise CnnlabError(f"checkpoint {str(path)!r} holds a config cnnlab cannot use: {e}") from None
    _check_same_model(path, cfg)
    use_data_root(cfg, data_root)
    cfg.data.download = download
    dev = runtime.select_device(device)
    ds = load_data(cfg)
    model = build_model(cfg, ds)
    apply_model_state(model, served_weights(ckpt), path)
    return LoadedRun(cfg, model.to(dev).eval(), ds, dev, path)


def _check_same_model(path: Path, cfg: RunConfig) -> None:
    """A checkpoint copied in from another run would be evaluated as if it were this run's: refuse one whose model
    (the model section, or the dataset it classifies) differs from the folder's config.yaml. A missing or damaged
    config.yaml is let pass: the checkpoint carries its own config, and the run-folder commands report damage."""
    try:
        ours = config_from_dict(read_yaml(path.parent / "config.yaml", "run config"))
    except (CnnlabError, TypeError, AttributeError):
        return
    mine, theirs = _model_identity(ours), _model_identity(cfg)
    diff = next((k for k in mine if mine[k] != theirs[k]), None)
    if diff is not None:
        raise CnnlabError(f"checkpoint {str(path)!r} was trained with {diff}={theirs[diff]!r}, but the run's "
                          f"config.yaml says {mine[diff]!r}: it belongs to another run; put that run's checkpoint "
                          "back, or evaluate the run it came from")


def _model_identity(cfg: RunConfig) -> dict:
    return {"model.name": cfg.model.name, "model.options": cfg.model.options, "data.name": cfg.data.name}


def evaluate_run(run: LoadedRun, split: str = "val", tta: str = "none") -> dict:
    """Loss, accuracy, per-class accuracy and confusion matrix of `split`; with `tta`, also the accuracy without it
    and the gain."""
    s = run.ds.split(split)
    if s.y is None:
        raise CnnlabError(f"split {split!r} of {run.ds.name} is unlabelled; use `cnnlab predict` for it")
    probs = predict_probs(run.model, run.loader(split), run.device, tta)
    res = scores(probs, s.y, list(run.ds.classes))
    res["tta"] = tta
    if tta != "none":
        plain = scores(predict_probs(run.model, run.loader(split), run.device), s.y, list(run.ds.classes))
        res.update(acc_without_tta=plain["acc"], tta_gain=res["acc"] - plain["acc"])
    return res


def predictions(run: LoadedRun, split: str = "holdout", tta: str = "none", images: Optional[Split] = None):
    """(ids, labels, probabilities) for every image of `split` (or of `images`, the user's own files), sorted by
    id. Ids are file stems, or indices if the split has none."""
    s = images if images is not None else run.ds.split(split)
    probs = predict_probs(run.model, run.loader(s), run.device, tta)
    labels = probs.argmax(1).tolist()
    ids = list(s.ids) if s.ids is not None else [str(i) for i in range(len(s))]
    order = sorted(range(len(ids)), key=lambda i: _id_key(ids[i]))
    return [ids[i] for i in order], [labels[i] for i in order], probs[order]


def _id_key(i: str):
    # ASCII digits only: str.isdigit() is also true of '²' or '١٢', which int() refuses
    return (0, int(i), i) if i.isascii() and i.isdigit() else (1, 0, i)


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"): =, +, -, @, and a tab or carriage
# return before one of them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A name that came from a file (an image's id, a class folder) as a safe CSV cell.

    Neutralised the OWASP way against CSV injection: a cell that a spreadsheet would run as a formula
    (`=HYPERLINK(...)`, `+`, `-`, `@`, tab or CR first) gets a leading `'`, which spreadsheets show as text. A name
    that is not valid UTF-8 (a file system hands those over as surrogate escapes) has its odd bytes written as
    `\\xNN`, so the UTF-8 file can always be written and the file still be told apart."""
    try:
        text = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file-system decoding made
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_predictions(path, ids, labels, force: bool = False, classes=None, probs=None) -> Path:
    """id,label (the graded format); with `classes` and `probs`, also the class name and one probability column
    per class (p_<class>). Ids and class names pass through `csv_text`: no spreadsheet formulas, always UTF-8."""
    path = Path(path)
    if path.exists() and not force:
        raise CnnlabError(f"{str(path)!r} exists; pass force=True to overwrite it, or choose another path")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if probs is None:
        w.writerow(["id", "label"])
        w.writerows((csv_text(i), k) for i, k in zip(ids, labels))
    else:
        w.writerow(["id", "label", "class", *[csv_text(f"p_{c}") for c in classes]])
        for i, k, p in zip(ids, labels, probs.tolist()):
            w.writerow([csv_text(i), k, csv_text(classes[k]), *[f"{v:.6f}" for v in p]])
    atomic_write_text(path, buf.getvalue())
    return path
