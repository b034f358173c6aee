"""The runtime a run executes in: device choice, CPU threads, seeds, determinism, autocast.

`device=auto` picks CUDA, then Apple MPS, then the CPU. On a GPU the device name and peak memory are reported so a
user can confirm the model really runs there.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

import cnnlab
from cnnlab import system
from cnnlab.data.paths import resolve_cache_dir
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text
from cnnlab.training.config import check_device_kind


def select_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    check_device_kind(name)  # torch also knows meta, xla, ipu ...: cnnlab trains on none of them
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("config key 'train.device': CUDA was asked for but no CUDA device is available; "
                          "use train.device=auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CnnlabError(f"config key 'train.device': {name} does not exist ({torch.cuda.device_count()} CUDA "
                          "devices)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CnnlabError("config key 'train.device': MPS is not available here; use auto or cpu")
    return dev


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"cuda ({p.name}, {p.total_memory / 2**30:.0f} GiB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def memory_used(device: torch.device) -> float:
    """Peak memory allocated by tensors on a CUDA device, in MiB (0 elsewhere)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0


def environment(device: torch.device) -> dict:
    """What a run ran on and with: versions, the cnnlab checkout's git commit (if any), the CPU and GPU."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "cnnlab": cnnlab.__version__,
           "platform": platform.platform(), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
           "device": describe_device(device)}
    src = os.path.dirname(os.path.abspath(cnnlab.__file__))
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        run = lambda *a: subprocess.run(["git", "-C", src, *a], capture_output=True, text=True, timeout=5)
        head = run("rev-parse", "HEAD")
        if head.returncode == 0:
            env["git_commit"] = head.stdout.strip()
            env["git_dirty"] = bool(run("status", "--porcelain", "--untracked-files=no").stdout.strip())
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes a run can still allocate on `device`: free GPU memory, or the kernel's MemAvailable; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return system.available_memory() if device.type == "cpu" else None


def check_memory(device: torch.device, need: int, what: str,
                 fix: str = "make the model or the batch (batch.size x augment.repeats) smaller, or use batch.micro"
                 ) -> None:
    """Refuse, before allocating, a run whose estimated memory `need` (bytes) exceeds what the device has left;
    `fix` says how (the default is a training run's)."""
    have = available_memory(device)
    if have is not None and need > have:
        raise CnnlabError(f"{what} needs about {_gib(need)} of memory on {device.type}, but only {_gib(have)} is "
                          f"available; {fix}")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**28 else f"{n / 2**20:,.0f} MiB"


def setup(cfg_train) -> torch.device:
    """Apply threads, seeds and determinism from TrainConfig; return the device."""
    if cfg_train.threads:
        limit = 4 * (os.cpu_count() or 1)  # beyond this threads only oversubscribe (100000 segfaults libgomp)
        if cfg_train.threads > limit:
            print(f"cnnlab: note: train.threads={cfg_train.threads} is more than 4 x this machine's "
                  f"{os.cpu_count()} cores; using {limit}", file=sys.stderr)
        torch.set_num_threads(min(cfg_train.threads, limit))
    seed_everything(cfg_train.seed)
    if cfg_train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    device = select_device(cfg_train.device)
    if cfg_train.amp == "bf16" and device.type == "mps":
        raise CnnlabError("config key 'train.amp': bf16 autocast is not supported on mps; use none or auto")
    if cfg_train.amp == "fp16" and device.type != "cuda":
        raise CnnlabError("config key 'train.amp': fp16 needs a CUDA device; use bf16 or none on the CPU")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 units that run bf16 matrix products natively
AUTO_BF16_GAIN = 1.2  # bf16 must be this much faster: a smaller, noisy edge is not worth bf16's rounding


def cpu_bf16_units() -> List[str]:
    """The bf16 instruction-set flags this CPU reports (/proc/cpuinfo); empty where none, or not Linux/x86."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in BF16_FLAGS if f in flags]
    return []


def time_step(model, x, y, amp: str, device: torch.device, repeats: int = 3) -> float:
    """Median seconds of a forward + backward pass on (x, y) under `amp` (after one untimed warm-up)."""
    times = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        with autocast(device, amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k:
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def choose_amp(device: torch.device, model, batch: Callable[[], tuple],
               cache_key: Optional[str] = None) -> Tuple[str, str, Dict[str, float]]:
    """`train.amp=auto`: (mode, why, seconds per step measured). Never slower than fp32: on a CPU, bf16 is taken
    only where the CPU has bf16 units and the model's own training step, timed in both, is at least 20% faster
    (bf16 autocast without them runs 8x slower than fp32 on an AVX2-only EPYC). The model's weights, buffers (BN
    statistics) and the RNG are put back after the timing. `batch()` gives (x, y), fetched only if needed.

    A timing is noisy, and a choice that flips between runs would make two runs of one config differ: the first
    decision for `cache_key` (CPU model, model, batch shape, threads, torch version) is kept in
    $CNNLAB_CACHE/amp-choices.json and reused, so one machine always trains one config in one precision."""
    if device.type == "cuda":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return mode, f"CUDA {'supports' if mode == 'bf16' else 'lacks'} bf16", {}
    if device.type != "cpu":
        return "none", f"no mixed precision on {device.type}", {}
    units = cpu_bf16_units()
    if not units:
        return "none", "fp32: this CPU has no bf16 units (avx512_bf16/amx_bf16)", {}
    cached = _amp_cache().get(cache_key) if cache_key else None
    if cached:
        return cached["mode"], cached["why"] + " (measured earlier on this machine)", cached["seconds"]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    x, y = batch()
    try:  # interleaved rounds, medians: a busy core slows both sides alike rather than one
        rounds = {"none": [], "bf16": []}
        for _ in range(5):
            for mode in rounds:
                rounds[mode].append(time_step(model, x, y, mode, device, 2))
        secs = {m: sorted(v)[len(v) // 2] for m, v in rounds.items()}
    finally:
        model.load_state_dict(state)
        torch.set_rng_state(rng)
    ratio = secs["none"] / secs["bf16"]
    mode = "bf16" if ratio >= AUTO_BF16_GAIN else "none"
    why = f"{'bf16' if mode == 'bf16' else 'fp32'}: bf16 step {ratio:.2f}x the speed of fp32 ({', '.join(units)})"
    if cache_key:
        _amp_cache_put(cache_key, {"mode": mode, "why": why, "seconds": secs})
    return mode, why, secs


def amp_cache_key(model_name: str, options: dict, shape: tuple) -> str:
    return f"{_cpu_name()}|{model_name}|{sorted(options.items())}|{tuple(shape)}|{torch.get_num_threads()}|" \
           f"{torch.__version__}"


def _amp_cache_path():
    return resolve_cache_dir() / "amp-choices.json"


def _amp_cache() -> dict:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(_amp_cache_path().read_text())
        return data if isinstance(data, dict) else {}
    return {}


def _amp_cache_put(key: str, value: dict) -> None:
    data = _amp_cache()
    data[key] = value
    with contextlib.suppress(OSError):  # a read-only cache only costs a measurement next time
        atomic_write_text(_amp_cache_path(), json.dumps(data, indent=1))


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
