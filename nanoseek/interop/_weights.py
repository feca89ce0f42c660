"""The loader rule, written once for every converter in `nanoseek.interop`. (Chapter 4 onwards.)

1. Before anything is copied, every source weight's name and shape is compared with what the config says:
   `check_weights` fails naming the missing, unexpected (unused) and wrongly shaped weights, and the config
   fields behind the shape.
2. Tied embeddings are only tied when the checkpoint's head *is* its embedding (`check_tied`): a config
   that says tie_word_embeddings=True over an untied checkpoint is refused, never silently "fixed".
3. No parameter is left at its random initialisation: the new model is filled with NaN before the copy
   (`poison`), and `assert_written` names any parameter that still holds NaN afterwards.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn


def _shape(x) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(x)


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def check_weights(expected: Mapping[str, object], source: Mapping[str, object], where: str,
                  hint: str = "", optional: Iterable[str] = ()) -> None:
    """Compare the source weights (name -> tensor) with the names and shapes the config implies (name ->
    tensor or shape). ValueError lists every problem: wrong shapes first (with `hint`, the config fields that
    set them), then missing weights (except `optional` ones), then unexpected weights nobody would use."""
    optional = set(optional)
    wrong = [f"{k} is {_shape(source[k])}, the config needs {_shape(v)}" for k, v in expected.items()
             if k in source and _shape(source[k]) != _shape(v)]
    missing = [k for k in expected if k not in source and k not in optional]
    unexpected = [k for k in source if k not in expected]
    problems = []
    if wrong:
        problems.append("wrong shapes: " + "; ".join(wrong[:6]) + (f" (and {len(wrong) - 6} more)" if len(wrong) > 6 else ""))
    if missing:
        problems.append(f"{len(missing)} missing weight(s): {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weight(s) the config has no place for: {_names(unexpected)}")
    if problems:
        raise ValueError(f"{where}: the checkpoint's weights do not match its config"
                         + (f" ({hint})" if hint else "") + ": " + " | ".join(problems))


def check_tied(tie: bool, head: torch.Tensor | None, embed: torch.Tensor, where: str,
               why: str = "the config says tie_word_embeddings=True",
               fix: str = "set tie_word_embeddings=False to keep its head") -> None:
    """With `tie`, the head must be the embedding (the same tensor, or equal values): otherwise tying would
    throw away a trained output head."""
    if not tie or head is None or head is embed:
        return
    if head.shape == embed.shape and (head.data_ptr() == embed.data_ptr() or torch.equal(head, embed)):
        return
    raise ValueError(f"{where}: {why} but the checkpoint's output head (lm_head.weight) differs from its token "
                     f"embedding (an untied checkpoint); {fix}")


@torch.no_grad()
def poison(module: nn.Module) -> nn.Module:
    """Fill every floating-point parameter with NaN, so a weight nobody copies cannot pass as a random
    initialisation (buffers are left alone: RoPE tables and counters are computed, not loaded)."""
    for t in module.parameters():
        if t.is_floating_point() and not t.is_meta:
            t.fill_(math.nan)
    return module


@torch.no_grad()
def assert_written(module: nn.Module, where: str, skip: Iterable[str] = ()) -> None:
    """ValueError naming the parameters still holding NaN after a conversion (never copied)."""
    skip = tuple(skip)
    left = [name for name, p in module.named_parameters() if not name.startswith(skip)
            and p.is_floating_point() and bool(torch.isnan(p).any())]
    if left:
        raise ValueError(f"{where}: {len(left)} parameter(s) were not copied from the checkpoint (or hold NaN "
                         f"there): {_names(left)}")


def meta_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """name -> shape of a module's state dict (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


__all__ = ["check_weights", "check_tied", "poison", "assert_written", "meta_shapes"]
