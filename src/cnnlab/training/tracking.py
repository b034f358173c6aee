"""Experiment trackers beside the run folder: TensorBoard and MLflow, behind one small interface.

The trainer calls `start()`, `step()` every `train.log_every` optimizer steps, `epoch()` once per epoch and `end()`
with the summary; each tracker turns that into its own format. Neither is required: both packages are imported
only when their tracker is asked for, and a missing one is a one-line error naming the pip command.

TensorBoard (torch.utils.tensorboard): tags are grouped so train and validation overlay in one chart
(`loss/train`, `loss/val`, `acc/train`, `acc/val`), plus `lr`, `batch_size`, `throughput/images_per_sec`,
`step/loss` and `step/lr`; at the end the run's hyperparameters (the flattened config) and final metrics are
written as an HParams session in the run's own event file, so the runs of a sweep compare in TensorBoard's HParams
view (`tensorboard --logdir runs/<sweep>`).

MLflow (`pip install 'cnnlab[mlflow]'`): `train.mlflow=local` logs to `sqlite:///<out>/mlflow.db` (MLflow's file
store is in maintenance mode, SQLite is its recommended local backend); any tracking URI (`sqlite:///...`,
`http://server:5000`) works. The run gets the flattened config as params, the per-epoch metrics with the epoch as
step, the summary's numbers as final metrics, and the run folder's files (config, metrics, summary, curves,
best.pt) as artifacts.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from cnnlab.errors import CnnlabError
from cnnlab.training.metrics import EPOCH_TAGS, TRACKED

FINAL_METRICS = TRACKED  # the summary's metrics logged at the end of a run (the catalogue's `tracked`)
ARTIFACTS = ("config.yaml", "metrics.csv", "summary.json", "curves.png", "best.pt")


def flat_params(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A config dict as dotted key -> scalar (lists and mappings as their text), as trackers store params."""
    out: Dict[str, Any] = {}
    for k, v in tree.items():
        key = prefix + str(k)
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TensorBoardTracker:
    def __init__(self, folder: Path):
        try:  # an optional dependency, imported when a run asks for it
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CnnlabError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") \
                from None
        self.writer = SummaryWriter(str(folder / "tb"))

    def step(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("step/loss", loss, step)
        self.writer.add_scalar("step/lr", lr, step)

    def epoch(self, row: Dict[str, Any]) -> None:
        for key, tag in EPOCH_TAGS.items():
            if _finite(row.get(key)):
                self.writer.add_scalar(tag, row[key], row["epoch"])

    def end(self, params: Dict[str, Any], summary: Dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams  # the optional package __init__ found

        metrics = {f"hparam/{k}": float(summary[k]) for k in FINAL_METRICS if _finite(summary.get(k))}
        # written into this run's own event file (SummaryWriter.add_hparams would open a sub-folder per call)
        exp, ssi, sei = hparams(params, metrics)
        for s in (exp, ssi, sei):
            self.writer.file_writer.add_summary(s)
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, summary.get("epochs_done") or 0)
        self.writer.close()


class MlflowTracker:
    def __init__(self, uri: str, folder: Path, out: str, name: str, params: Dict[str, Any]):
        try:  # an optional dependency, imported when a run asks for it
            import mlflow
        except ImportError:
            raise CnnlabError("train.mlflow needs MLflow: pip install 'cnnlab[mlflow]' (or mlflow-skinny)") from None
        self.mlflow = mlflow
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (creating tables ...) drown ours
        if uri == "local":
            uri = f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"
        self.uri, self.folder = uri, folder
        mlflow.set_tracking_uri(uri)
        try:
            mlflow.set_experiment(Path(out).resolve().name or "cnnlab")
            self.run = mlflow.start_run(run_name=name)
        except Exception as e:  # MlflowException and the store's own errors (unreachable server, bad URI)
            raise CnnlabError(f"train.mlflow={uri!r}: cannot start an MLflow run ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160]})") from None
        # MLflow params are strings of at most 6000 characters; the config's are far shorter
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.set_tag("cnnlab.run_folder", str(folder))

    def step(self, step: int, loss: float, lr: float) -> None:
        self.mlflow.log_metrics({"step_loss": loss, "step_lr": lr}, step=step)

    def epoch(self, row: Dict[str, Any]) -> None:
        self.mlflow.log_metrics({k: float(row[k]) for k in EPOCH_TAGS if _finite(row.get(k))}, step=row["epoch"])

    def end(self, params: Dict[str, Any], summary: Dict[str, Any]) -> None:
        self.mlflow.log_metrics({k: float(summary[k]) for k in FINAL_METRICS if _finite(summary.get(k))})
        for name in ARTIFACTS:
            if (self.folder / name).is_file():
                self.mlflow.log_artifact(str(self.folder / name))
        self.mlflow.set_tag("cnnlab.status", str(summary.get("status")))
        self.mlflow.end_run("FINISHED" if summary.get("status") in ("finished", "stopped") else "FAILED")


class Trackers:
    """The trackers a run's config asks for; every call goes to each of them.

    Opening a tracker that cannot work (a package missing, a server that refuses) stops the run before it trains;
    a tracker that fails mid-run (a tracking server gone, a network error) is switched off with one warning and the
    run goes on: the run folder is the record, a tracker only a copy of it. A resumed run starts a new MLflow run
    (tagged with the same run folder) and appends to the TensorBoard folder."""

    def __init__(self, cfg, folder: Path):
        self.params = flat_params(cfg.to_dict())
        self.items: List[Any] = []
        if cfg.train.tensorboard:
            self.items.append(TensorBoardTracker(folder))
        if cfg.train.mlflow:
            self.items.append(MlflowTracker(cfg.train.mlflow, folder, cfg.out, folder.name, self.params))

    def _each(self, method: str, *args) -> None:
        for t in list(self.items):
            try:
                getattr(t, method)(*args)
            except Exception as e:  # any error of a tracking backend: the training run must not die of it
                self.items.remove(t)
                print(f"cnnlab: warning: {type(t).__name__} failed ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:160] if str(e) else ''}); it is switched off for this run",
                      file=sys.stderr)

    def step(self, step: int, loss: float, lr: float) -> None:
        self._each("step", step, loss, lr)

    def epoch(self, row: Dict[str, Any]) -> None:
        self._each("epoch", row)

    def end(self, summary: Dict[str, Any]) -> None:
        self._each("end", self.params, summary)


def check_mlflow_uri(value: Optional[str]) -> Optional[str]:
    """'local', or a URI with a scheme MLflow stores runs under."""
    if value is None or value == "local":
        return value
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme.split("+")[0] not in ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks"):
        raise CnnlabError(f"config key 'train.mlflow': {value!r} is not an MLflow tracking URI; use local (SQLite in "
                          "the out folder), sqlite:///path/mlflow.db or http://host:5000")
    return value
