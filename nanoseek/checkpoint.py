"""Checkpoints as safetensors plus JSON, written atomically. No pickles anywhere. (Chapter 1.)

A training checkpoint directory looks like::

    ckpt_dir/
      latest.json            {"checkpoint": "step-000200"}   <- replaced atomically, last of all
      step-000200/
        model.safetensors
        optimizer.safetensors
        state.json           step, config, optimizer hyper-parameters, training history

A save writes a hidden temporary directory, renames it into place, and only then points `latest.json` at it,
so an interrupted save leaves the previous checkpoint as the readable one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

LATEST = "latest.json"


def _to_jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors (safetensors) and JSON (everything else)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    model: nn.Module,
    *,
    step: int,
    config: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict | None = None,
    keep: int = 2,
) -> Path:
    """Save model (+ optimizer) at `step` into ckpt_dir/step-XXXXXX atomically; keep the newest `keep`."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=ckpt_dir))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        state = {"step": step, "config": _to_jsonable(config), "extra": extra or {}}
        if optimizer is not None:
            tensors, meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state["optimizer"] = meta
        _write_json(tmp / "state.json", state)
        final = ckpt_dir / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_json(ckpt_dir / LATEST, {"checkpoint": name})
    old = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir() and p.name != name)
    for path in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint `latest.json` points at, or None if there is none yet."""
    pointer = Path(ckpt_dir) / LATEST
    if not pointer.exists():
        return None
    with open(pointer, encoding="utf-8") as f:
        return Path(ckpt_dir) / json.load(f)["checkpoint"]


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict:
    """Load weights (and optimizer state) into existing objects; return the JSON state (step, config, extra).

    `path` is a checkpoint directory or a ckpt_dir holding `latest.json`.
    """
    path = Path(path)
    if (path / LATEST).exists():
        path = latest_checkpoint(path)
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r} (state.json missing)")
    with open(path / "state.json", encoding="utf-8") as f:
        state = json.load(f)
    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    if optimizer is not None:
        if "optimizer" not in state:
            raise ValueError(f"checkpoint {str(path)!r} has no optimizer state to resume from")
        tensors = load_file(str(path / "optimizer.safetensors"))
        optimizer.load_state_dict(_optimizer_state(tensors, state["optimizer"]))
    return state


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Export a model for reuse: `model.safetensors` + `config.json` (class name and config dataclass)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / "model.safetensors"))
    _write_json(
        directory / "config.json",
        {"model_class": type(model).__name__, "config": _to_jsonable(getattr(model, "config", None))},
    )
    return directory


def load_pretrained(directory: str | os.PathLike, model_class: type[nn.Module], device: str = "cpu") -> nn.Module:
    """Rebuild `model_class(model_class.config_class(**config))` and load its weights from `directory`."""
    directory = Path(directory)
    with open(directory / "config.json", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("model_class") != model_class.__name__:
        raise ValueError(f"{str(directory)!r} holds a {meta.get('model_class')!r}, not a {model_class.__name__!r}")
    model = model_class(model_class.config_class(**meta["config"])).to(device)
    load_model(model, str(directory / "model.safetensors"), device=device)
    return model
