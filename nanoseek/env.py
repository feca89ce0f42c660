"""Where code runs and at what size: device, scale, seeds, and a `doctor` report. (Chapter 1.)"""
from __future__ import annotations

import os
import platform
import random
import sys
from typing import TypeVar

import numpy as np
import torch

SCALES = ("tiny", "full")
T = TypeVar("T")


def device() -> torch.device:
    """The best device available: cuda, then mps, then cpu. `NANOSEEK_DEVICE` overrides it."""
    forced = os.environ.get("NANOSEEK_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def scale() -> str:
    """The scale a notebook runs at: `tiny` (default, a laptop CPU) or `full` (one GPU), from `NANOSEEK_SCALE`."""
    value = os.environ.get("NANOSEEK_SCALE", "tiny").strip().lower()
    if value not in SCALES:
        raise ValueError(f"NANOSEEK_SCALE={value!r} is not a known scale; expected one of {SCALES}")
    return value


def pick(tiny: T, full: T) -> T:
    """Choose between the `tiny` and the `full` value of a setting, by `scale()`."""
    return tiny if scale() == "tiny" else full


def seed_everything(seed: int = 1337, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch. On CPU this makes every notebook's numbers repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False


def _supports_bf16(dev: torch.device) -> bool:
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        (torch.ones(2, 2, dtype=torch.bfloat16, device=dev) @ torch.ones(2, 2, dtype=torch.bfloat16, device=dev))
        return True
    except Exception:
        return False


def _supports_fp8(dev: torch.device) -> tuple[bool, str]:
    """FP8 *storage* works anywhere torch has the dtypes; FP8 *matmul* needs compute capability 8.9+."""
    if not hasattr(torch, "float8_e4m3fn"):
        return False, "this torch has no float8 dtypes"
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        if (major, minor) >= (8, 9):
            return True, f"fp8 tensor-core matmul (sm_{major}{minor})"
        return False, f"fp8 storage only; matmul needs sm_89+, this is sm_{major}{minor}"
    return False, "fp8 storage and simulation only (no fp8 matmul on this device)"


def doctor() -> dict:
    """Print and return what the book needs to know about this machine."""
    import nanoseek

    dev = device()
    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:
        tf_version = "not installed"
    fp8_ok, fp8_note = _supports_fp8(dev)
    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": tf_version,
        "nanoseek": nanoseek.__version__,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "cpu threads": torch.get_num_threads(),
        "scale": scale(),
        "bf16": _supports_bf16(dev),
        "fp8": fp8_ok,
        "fp8 note": fp8_note,
    }
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:>{width}} : {value}")
    return report
