"""Checkpoints as safetensors plus JSON, written atomically. No pickles anywhere. (Chapter 1.)

A training checkpoint directory looks like::

    ckpt_dir/
      latest.json            {"checkpoint": "step-000200"}   <- replaced atomically, last of all
      step-000200/
        model.safetensors
        optimizer.safetensors
        state.json           step, config, optimizer hyper-parameters, training history

A save never removes the last good copy before the new one is complete: it writes a hidden temporary
directory and fsyncs it, then swaps it in (`_swap_in`) so that `latest.json` points at a complete checkpoint
at every instant, even when the process is killed half way (tests/test_checkpoint.py kills savers at random
points). `state.json` records the SHA-256 of every tensor file; `load_checkpoint` verifies them (a flipped bit
is an error, not a silently different model), refuses a `latest.json` that points outside `ckpt_dir`, and
compares the stored model config with the model's, naming the first field that differs.
"""
from __future__ import annotations

import dataclasses
import hashlib
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
# Config fields that choose how the same weights are run, not which weights exist: a checkpoint trained with
# one value loads into a model with another (e.g. MLA's naive training path, absorbed decoding).
RUNTIME_FIELDS = frozenset({"mla_mode", "mla_decode_backend", "moe_dispatch", "dropout", "mode", "decode_backend",
                            "dispatch"})


def _to_jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON to a unique temporary file beside `path`, fsync it, then `os.replace` it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(directory: Path, checksums: Any) -> None:
    """Check each recorded tensor file against its SHA-256; ValueError names the file that differs."""
    if not isinstance(checksums, dict):
        raise ValueError(f"checkpoint {str(directory)!r}: 'sha256' must map file names to digests, got {checksums!r:.80}")
    for name, digest in checksums.items():
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ValueError(f"checkpoint {str(directory)!r}: bad file name {name!r} in 'sha256'")
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(directory)!r}: {name} is missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ValueError(f"checkpoint {str(directory)!r}: {name} is corrupt (sha256 {actual[:16]}..., "
                             f"recorded {str(digest)[:16]}...)")


def config_difference(stored: Any, current: Any, ignore: frozenset[str] = RUNTIME_FIELDS) -> str | None:
    """The first field where two configs (dicts or dataclasses) differ, as 'name: stored=... model=...', or None.

    Both are compared as JSON would store them (tuples as lists); `ignore` lists fields that do not change
    which weights exist or what they mean."""
    stored = json.loads(json.dumps(_to_jsonable(stored)))
    current = json.loads(json.dumps(_to_jsonable(current)))
    if not isinstance(stored, dict) or not isinstance(current, dict):
        return None if stored == current else f"config: stored={stored!r:.80} model={current!r:.80}"
    for key in list(stored) + [k for k in current if k not in stored]:
        if key in ignore:
            continue
        if key not in stored or key not in current:
            where = "model" if key not in stored else "checkpoint"
            return f"{key}: only the {where} has it"
        if stored[key] != current[key]:
            return f"{key}: checkpoint has {key}={stored[key]!r}, the model has {key}={current[key]!r}"
    return None


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


def _read_pointer(ckpt_dir: Path) -> str | None:
    pointer = ckpt_dir / LATEST
    if not pointer.exists():
        return None
    try:
        with open(pointer, encoding="utf-8") as f:
            name = json.load(f)["checkpoint"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(pointer)!r} is not a checkpoint pointer ({type(err).__name__}: {err})") from None
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or os.path.isabs(name):
        raise ValueError(f"{str(pointer)!r} points at {name!r}, which is not a checkpoint directory inside "
                         f"{str(ckpt_dir)!r} (a plain directory name is required)")
    return name


def _link_copy(src: Path, dst: Path) -> None:
    """dst: a new directory with the files of src, hard-linked where the filesystem allows (no data copied)."""
    dst.mkdir()
    for f in src.iterdir():
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)
    _fsync_dir(dst)


def _swap_in(ckpt_dir: Path, tmp: Path, name: str) -> Path:
    """Move the complete checkpoint `tmp` to ckpt_dir/name and point latest.json at it.

    latest.json points at a complete checkpoint at every instant: when `name` already exists (a step saved
    again) and latest.json points at it, latest.json is first moved to a hard-linked copy of the old one, and
    only then is the old directory removed and the new one renamed in."""
    final = ckpt_dir / name
    aside = None
    if final.exists():
        if _read_pointer(ckpt_dir) == name:
            aside = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=ckpt_dir))
            aside.rmdir()
            _link_copy(final, aside)
            _write_json(ckpt_dir / LATEST, {"checkpoint": aside.name})
        trash = Path(tempfile.mkdtemp(prefix=f".{name}-trash-", dir=ckpt_dir))
        os.rename(final, trash / name)  # out of the way in one atomic step, then deleted at leisure
        shutil.rmtree(trash, ignore_errors=True)
    os.rename(tmp, final)
    _fsync_dir(ckpt_dir)
    _write_json(ckpt_dir / LATEST, {"checkpoint": name})
    _clean_leftovers(ckpt_dir)  # the old copy, and whatever an earlier interrupted save left
    return final


def _clean_leftovers(ckpt_dir: Path) -> None:
    """Remove hidden directories that killed saves left behind (never the one latest.json points at)."""
    try:
        current = _read_pointer(ckpt_dir)
    except ValueError:
        current = None
    for p in ckpt_dir.glob(".step-*"):
        if p.is_dir() and p.name != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in ckpt_dir.glob(f".{LATEST}.*.tmp"):
        p.unlink(missing_ok=True)


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
    """Save model (+ optimizer) at `step` into ckpt_dir/step-XXXXXX atomically; keep the newest `keep`.

    The previous checkpoint stays loadable until the new one is complete on disk, whatever interrupts the save
    (an exception, a SIGKILL): see `_swap_in`."""
    from nanoseek import validate as V

    step = V.integer(step, "step", "save_checkpoint", minimum=0)
    keep = V.integer(keep, "keep", "save_checkpoint", minimum=1)
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(ckpt_dir)
    name = f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-new-", dir=ckpt_dir))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        state = {"step": step, "config": _to_jsonable(config), "extra": extra or {}}
        files = ["model.safetensors"]
        if optimizer is not None:
            tensors, meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state["optimizer"] = meta
            files.append("optimizer.safetensors")
        for f in files:
            _fsync_file(tmp / f)
        state["sha256"] = {f: sha256_file(tmp / f) for f in files}
        _write_json(tmp / "state.json", state)
        _fsync_dir(tmp)
        final = _swap_in(ckpt_dir, tmp, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir() and p.name != name)
    for path in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint `latest.json` points at, or None if there is none yet.

    A pointer that is not a plain directory name inside `ckpt_dir` (``../other/step-000005``, an absolute
    path, a symlink leading outside) is refused with a ValueError."""
    ckpt_dir = Path(ckpt_dir)
    name = _read_pointer(ckpt_dir)
    if name is None:
        return None
    path = ckpt_dir / name
    if path.resolve().parent != ckpt_dir.resolve():
        raise ValueError(f"{str(ckpt_dir / LATEST)!r} points at {name!r}, which resolves outside {str(ckpt_dir)!r}")
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    check_config: bool = True,
) -> dict:
    """Load weights (and optimizer state) into existing objects; return the JSON state (step, config, extra).

    `path` is a checkpoint directory or a ckpt_dir holding `latest.json`. Before anything is copied, the
    tensor files are checked against the SHA-256 sums in `state.json`, and (with `check_config`) the stored
    config against `model.config`: a ValueError names the corrupt file or the first field that differs.
    """
    path = Path(path)
    if (path / LATEST).exists():
        path = latest_checkpoint(path)
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r} (state.json missing)")
    try:
        with open(path / "state.json", encoding="utf-8") as f:
            state = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint {str(path)!r}: state.json is not valid JSON ({err})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"checkpoint {str(path)!r}: state.json has no 'step'")
    if "sha256" in state:
        _verify(path, state["sha256"])
    stored, current = state.get("config"), getattr(model, "config", None)
    if check_config and stored is not None and current is not None:
        diff = config_difference(stored, current)
        if diff is not None:
            raise ValueError(f"checkpoint {str(path)!r} was saved from a different model config: {diff} "
                             "(build the model with the stored config, or pass check_config=False)")
    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    if optimizer is not None:
        if "optimizer" not in state:
            raise ValueError(f"checkpoint {str(path)!r} has no optimizer state to resume from")
        tensors = load_file(str(path / "optimizer.safetensors"))
        optimizer.load_state_dict(_optimizer_state(tensors, state["optimizer"]))
    return state


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Export a model for reuse: `model.safetensors` + `config.json` (class name, config dataclass, SHA-256)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".safetensors.tmp", dir=directory)
    os.close(fd)
    try:
        save_model(model, tmp)
        _fsync_file(Path(tmp))
        digest = sha256_file(tmp)
        os.replace(tmp, directory / "model.safetensors")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_json(
        directory / "config.json",
        {"model_class": type(model).__name__, "config": _to_jsonable(getattr(model, "config", None)),
         "sha256": {"model.safetensors": digest}},
    )
    return directory


def load_pretrained(directory: str | os.PathLike, model_class: type[nn.Module], device: str = "cpu") -> nn.Module:
    """Rebuild `model_class(model_class.config_class(**config))` and load its weights from `directory`."""
    directory = Path(directory)
    with open(directory / "config.json", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("model_class") != model_class.__name__:
        raise ValueError(f"{str(directory)!r} holds a {meta.get('model_class')!r}, not a {model_class.__name__!r}")
    if "sha256" in meta:
        _verify(directory, meta["sha256"])
    model = model_class(model_class.config_class(**meta["config"])).to(device)
    load_model(model, str(directory / "model.safetensors"), device=device)
    return model
