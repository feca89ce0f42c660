"""Small trained models that several chapters reuse: load from the cache, or train them deterministically.

A chapter that needs, say, chapter 3's chat model calls `load_or_train(...)` with the same `build` and
`train_fn` the earlier chapter used. The first call trains (deterministically on CPU) and caches the weights
as safetensors under `$NANOSEEK_CACHE` (default `~/.cache/nanoseek`); later calls load them. The cache key
holds the name, a version string and the scale, so changing a recipe means bumping its version.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from safetensors.torch import load_model, save_model
from torch import nn

from nanoseek.env import scale


def cache_dir() -> Path:
    return Path(os.environ.get("NANOSEEK_CACHE", Path.home() / ".cache" / "nanoseek"))


def load_or_train(
    name: str,
    build: Callable[[], nn.Module],
    train_fn: Callable[[nn.Module], dict[str, Any] | None],
    *,
    version: str = "1",
) -> tuple[nn.Module, dict[str, Any]]:
    """Return (model, info). `build()` makes the untrained model; `train_fn(model)` trains it in place and may
    return JSON-able info (losses, vocab, ...) that is cached beside the weights."""
    folder = cache_dir() / "zoo" / f"{name}-v{version}-{scale()}"
    model = build()
    if (folder / "model.safetensors").exists():
        load_model(model, str(folder / "model.safetensors"), device=str(next(model.parameters()).device))
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        model.eval()
        return model, info
    info = train_fn(model) or {}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    save_model(model, str(tmp / "model.safetensors"))
    (tmp / "info.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    try:
        os.rename(tmp, folder)  # atomic; another process may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    return model, info
