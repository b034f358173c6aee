"""A trained model out of cnnlab: ONNX or TorchScript, with the run's normalisation folded in.

The exported graph takes what any image pipeline has at hand, float32 NCHW pixels scaled to [0, 1] (uint8 / 255),
and returns logits; the per-channel mean/std of the run's training split are constants inside the graph, so no
caller can normalise twice or forget to. A JSON file beside the model records the class names, that input
contract, the mean/std that were folded in, and the run and checkpoint it came from.

ONNX goes through torch.onnx's exporter (torch.export underneath, onnxscript for the ONNX side; `pip install
'cnnlab[onnx]'`) with a dynamic batch dimension; TorchScript through `torch.jit.trace`, which torch now marks
deprecated in favour of torch.export but which is still what C++ (libtorch) deployments load.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_bytes, atomic_write_text, check_writable
from cnnlab.training.runfolder import RUN_OUTPUTS

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


class Normalized(nn.Module):
    """model((x - mean) / std) for x in [0, 1]: the run's preprocessing as part of the graph."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


def export_run(run, fmt: str = "onnx", out: Optional[Path] = None, force: bool = False) -> dict:
    """Export a LoadedRun (training.inference.load_run); returns {"model": path, "metadata": path}.

    The model goes to `out` (default: model.onnx / model.torchscript.pt in the run folder) and its metadata to
    `out` + ".json"; an existing file at either is replaced only with `force`, and never a file a run folder needs."""
    if fmt not in FORMATS:
        raise CnnlabError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out) if out else run.checkpoint.parent / f"model{FORMATS[fmt]}"
    meta_path = check_export_paths(out, force)
    ds = run.ds
    wrapped = Normalized(run.model.cpu().float().eval(), ds.mean, ds.std).eval()
    example = torch.rand(2, ds.in_channels, ds.image_size, ds.image_size)
    if fmt == "onnx":
        _onnx(wrapped, example, out)
    else:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # jit's deprecation notices, and the tracer's note that a model's input-shape check becomes a constant
            # (it is one: the exported model takes one image size)
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(wrapped, example), buf)
        atomic_write_bytes(out, buf.getvalue())
    meta = {"format": fmt, "model": run.cfg.model.name, "classes": list(ds.classes),
            "input": {"name": "image", "shape": ["batch", ds.in_channels, ds.image_size, ds.image_size],
                      "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW, RGB (or grey) pixels / 255"},
            "output": {"name": "logits", "shape": ["batch", len(ds.classes)]},
            "normalisation_folded_in": {"mean": list(ds.mean), "std": list(ds.std)},
            "run": str(run.checkpoint.parent), "checkpoint": run.checkpoint.name}
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return {"model": out, "metadata": meta_path}


def check_export_paths(out, force: bool = False) -> Path:
    """Refuse, before any work, an export that would replace a file: a run's own files (config.yaml, checkpoints,
    summary.json ... in a folder that holds a run) always, anything else unless `force`. Returns the metadata path."""
    out = Path(out)
    meta = out.with_name(out.name + ".json")
    exported = {f"model{suffix}{extra}" for suffix in FORMATS.values() for extra in ("", ".json")}
    for path in (out, meta):
        if (path.parent / "config.yaml").is_file() and path.name in RUN_OUTPUTS - exported:
            raise CnnlabError(f"export file {str(path)!r} is one of the run's own files; choose another --out")
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            if not force:
                raise CnnlabError(f"export file {str(path)!r} already exists; pass --force to replace it (the export "
                                  f"writes {out.name} and {meta.name}), or choose another --out")
    check_writable(out, "export file")
    check_writable(meta, "export metadata file")
    return meta


def _onnx(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it; say so before it fails deep inside)
    except ImportError:
        raise CnnlabError("ONNX export needs onnx and onnxscript: pip install 'cnnlab[onnx]'") from None
    tmp = out.with_name(f".{out.name}.tmp")
    # the exporter reports its progress on stdout; cnnlab's own line says what was written
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True)
        except Exception as e:  # an operator the exporter cannot translate: a limitation, said in one line
            tmp.unlink(missing_ok=True)
            raise CnnlabError(f"ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); try "
                              "--format torchscript") from None
    tmp.replace(out)
