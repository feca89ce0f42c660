"""Autoregressive generation: sampling rules and KV-cache incremental decoding. (Chapter 4.)

`generate` works with every model of the book that follows ``logits, loss = model(idx)``:

- models with ``new_cache`` (the chapter-4 `Decoder` and its descendants) run one **prefill** pass over the
  prompt, then feed one token per step while each layer's cache keeps the keys and values of the past;
- models without it (the chapter-1 GPT) recompute the whole sequence every step, cropped to the context.

Sampling: ``temperature == 0`` is greedy (argmax); otherwise logits / temperature, then optional top-k and
top-p (nucleus) filtering, then a draw from ``generator`` (so runs are repeatable).
"""
from __future__ import annotations

import torch
from torch import nn


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model accepts: config.max_seq_len (Decoder) or config.block_size (GPT)."""
    cfg = getattr(model, "config", None)
    for name in ("max_seq_len", "block_size"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    return None


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token from logits (B, V): greedy when temperature == 0, else sample. Returns (B, 1) ids."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]                   # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p (the first token always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def _check_args(idx, max_new_tokens, temperature, top_k, top_p) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.long, torch.int):
        raise ValueError(f"idx must be a (B, T) integer tensor, got "
                         f"{getattr(idx, 'shape', type(idx))} {getattr(idx, 'dtype', '')}")
    if idx.shape[1] < 1:
        raise ValueError(f"idx needs at least one prompt token, got shape {tuple(idx.shape)}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got max_new_tokens={max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got temperature={temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got top_k={top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got top_p={top_p!r}")


@torch.no_grad()
def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """Extend idx (B, T) by up to max_new_tokens tokens; returns (B, T + n).

    A row that has produced `eos_id` keeps producing `eos_id` (padding); generation stops early once every
    row has. The model runs in eval mode for the call and gets its previous mode back.
    """
    _check_args(idx, max_new_tokens, temperature, top_k, top_p)
    was_training = model.training
    model.eval()
    try:
        ctx = context_length(model)
        B, T = idx.shape
        cached = use_cache and hasattr(model, "new_cache")
        cache = None
        if cached:
            fed = T + max(max_new_tokens - 1, 0)  # the last sampled token is never fed back
            if ctx is not None and fed > ctx:
                raise ValueError(f"prompt {T} + max_new_tokens {max_new_tokens} needs {fed} positions, more than "
                                 f"the context length {ctx}; shorten it or pass use_cache=False to crop")
            cache = model.new_cache(B, fed)
        finished = torch.zeros(B, 1, dtype=torch.bool, device=idx.device)
        out = idx
        step_input = idx
        for _ in range(max_new_tokens):
            if cached:
                logits, _ = model(step_input, cache=cache)                        # (B, t, V)
            else:
                cond = out if ctx is None else out[:, -ctx:]
                logits, _ = model(cond)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator).to(idx.dtype)  # (B, 1)
            if eos_id is not None:
                nxt = nxt.masked_fill(finished, eos_id)
                finished = finished | (nxt == eos_id)
            out = torch.cat((out, nxt), dim=1)
            step_input = nxt
            if eos_id is not None and bool(finished.all()):
                break
        return out
    finally:
        model.train(was_training)
