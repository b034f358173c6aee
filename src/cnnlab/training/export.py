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


def export_run(run, fmt: str = "onnx", out: Optional[Path] = None) -> dict:
    """Export a LoadedRun (training.inference.load_run); returns {"model": path, "metadata": path}."""
    if fmt not in FORMATS:
        raise CnnlabError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out) if out else run.checkpoint.parent / f"model{FORMATS[fmt]}"
    check_writable(out, "export file")
    meta_path = out.with_name(out.name + ".json")
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
