"""One training step of every registered model under each mixed precision, channels_last, on one device; one table.

No GPU has been available to this project, so nothing says that each model trains under CUDA's fp16 (with a
GradScaler) and bf16 autocast in channels_last memory. This script checks exactly that, as the trainer does it
(`cnnlab.training.runtime.autocast`, `torch.amp.GradScaler`, SGD), at each model's own input shape and class count
(model_info: AlexNet at 224x224 with 1,000 classes, the CIFAR models at 32x32): forward, backward, optimizer step, a
finite loss and finite gradients. A model with a data-dependent first layer (fastcnn's whitening) gets it from the
batch first. Times are of one step after one warm-up step (not a benchmark: a sign of life and of gross slowness).

    python benchmarks/gpu_steps.py --device cuda                       # every model, fp32 / fp16 / bf16 (gpu_check.sh)
    python benchmarks/gpu_steps.py --device cpu --models simplenn,resnet20 --batch 4   # the wiring, on a CPU

Exits 1 if any step failed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from cnnlab.models import create_model, list_models, model_info
from cnnlab.training.runtime import autocast


def modes(device: torch.device):
    """fp32 everywhere; fp16 (with a GradScaler) on CUDA only, as the trainer allows; bf16 where the device has it."""
    out = ["none"]
    if device.type == "cuda":
        out.append("fp16")
        if torch.cuda.is_bf16_supported():
            out.append("bf16")
    else:
        out.append("bf16")
    return out


def one_step(name: str, amp: str, device: torch.device, batch: int) -> float:
    """Seconds of one training step (after a warm-up step); raises if anything is not finite."""
    info = model_info(name)
    torch.manual_seed(0)
    model = create_model(name).to(device)
    x = torch.randn(batch, *info["input_shape"], device=device)
    y = torch.randint(0, info["num_classes"], (batch,), device=device)
    hook = getattr(model, "init_from_data", None)
    if hook is not None:
        hook(x)
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    model.train()
    took = 0.0
    for k in range(2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        took = time.perf_counter() - t0
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"loss {loss.item()}")
        if bad and amp != "fp16":  # fp16's scaler skips a step with inf gradients by design; others must be finite
            raise RuntimeError(f"non-finite gradients in {bad[:3]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--models", default="", help="comma-separated names (default: every registered model)")
    ap.add_argument("--batch", type=int, default=32, help="images per step")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_steps: --device cuda, but torch sees no CUDA device")
    names = [n.strip() for n in args.models.split(",") if n.strip()] or list_models()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"one training step per model, channels_last, batch {args.batch}, on {where} (torch {torch.__version__})")
    ms = modes(device)
    head = ["model", "params", *[f"{'fp32' if m == 'none' else m} ms" for m in ms], "status"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    failed = 0
    for name in names:
        cells, problems = [], []
        for amp in ms:
            try:
                cells.append(f"{1e3 * one_step(name, amp, device, args.batch):,.1f}")
            except Exception as e:  # report every model and mode, then fail at the end
                cells.append("FAIL")
                problems.append(f"{amp}: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
        failed += bool(problems)
        print(f"| {name} | {model_info(name)['params']:,} | " + " | ".join(cells) + " | "
              + ("; ".join(problems) if problems else "ok") + " |", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"{len(names) - failed} of {len(names)} models trained a step in every mode" + (
        f"; {failed} failed" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
