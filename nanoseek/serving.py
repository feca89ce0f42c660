"""Decode-time arithmetic: the KV-cache read's intensity, decode throughput, and the largest batch a memory
budget holds. (Chapter 4.)

One decoding step of attention, for one sequence with T cached tokens, H query heads and G key/value heads
of size D, does 4·H·T·D FLOPs (2·H·T·D for the scores q·k, 2·H·T·D for the weighted sum of values) and reads
2·G·T·D numbers (the keys and the values). Its **arithmetic intensity** is therefore

    4·H·T·D / (2·G·T·D·bytes) = 2·H / (G · bytes)  FLOP per byte,  = H / G in bf16,

whatever the batch: every sequence reads its own cache, so a batch multiplies FLOPs and bytes alike. Weights
are read once for the whole batch, their intensity grows with B; the cache's does not, and sharing kv heads
(G < H) is the only lever on it.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from nanoseek.nn.attention import kv_cache_bytes


def kv_read_intensity(n_head: int, n_kv_head: int, dtype_bytes: int) -> float:
    """FLOP per byte of one decoding step's attention over its KV cache: 2·H / (G · bytes)."""
    if n_head < 1 or n_kv_head < 1 or n_head % n_kv_head or dtype_bytes < 1:
        raise ValueError(f"need n_kv_head dividing n_head and dtype_bytes >= 1, got n_head={n_head}, "
                         f"n_kv_head={n_kv_head}, dtype_bytes={dtype_bytes}")
    return 2 * n_head / (n_kv_head * dtype_bytes)


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One new token per sequence attending over its cache, grouped so each kv head is read once.

    q: (B, H, D) new queries; k, v: (B, G, T, D) the cache. Returns (B, H, D). The H/G query heads of a group
    are stacked into one matrix, so the group's keys and values meet all of them in one matmul (no copy of
    the cache per query head, which would read it H/G times)."""
    B, H, D = q.shape
    G = k.shape[1]
    if H % G:
        raise ValueError(f"{G} kv heads must divide {H} query heads")
    qg = q.view(B, G, H // G, D)                                         # (B, G, H/G, D)
    scores = qg @ k.transpose(-1, -2) / math.sqrt(D)                     # (B, G, H/G, T)
    return (scores.softmax(-1) @ v).reshape(B, H, D)                     # (B, H, D)


def decode_attention_cost(batch_size: int, n_head: int, n_kv_head: int, head_dim: int, seq_len: int,
                          dtype_bytes: int) -> tuple[int, int]:
    """(FLOPs, bytes of cache read) of `decode_attention` for one layer and one step."""
    flops = 4 * batch_size * n_head * seq_len * head_dim
    return flops, kv_cache_bytes(1, batch_size, n_kv_head, head_dim, seq_len, dtype_bytes)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters (each tied tensor counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total


def max_batch_size(budget_bytes: int, weights: int, n_layer: int, n_kv_head: int, head_dim: int, seq_len: int,
                   dtype_bytes: int) -> int:
    """The largest batch whose KV cache of `seq_len` tokens fits next to `weights` bytes in `budget_bytes`
    (0 if not even one sequence fits). Activations are left out: at decode time they are one token a row."""
    per_seq = kv_cache_bytes(n_layer, 1, n_kv_head, head_dim, seq_len, dtype_bytes)
    if per_seq <= 0:
        raise ValueError("a sequence's cache must take at least one byte")
    return max(0, (budget_bytes - weights) // per_seq)


@torch.no_grad()
def decode_tokens_per_second(model: nn.Module, batch_size: int, prompt_len: int, new_tokens: int,
                             repeats: int = 3, vocab_size: int | None = None) -> float:
    """Decode throughput with the KV cache, prefill excluded: generated tokens per second, all rows together.

    Prefills `prompt_len` random tokens for `batch_size` rows once (not timed), then times `new_tokens`
    one-token greedy steps through the cache, `repeats` times from the same prefilled cache (each repeat
    rewinds the caches' positions to the prompt and overwrites the same slots), and keeps the fastest.
    Works for any model with `new_cache` and `model(idx, cache=...)` (the chapter-4 `Decoder` and later)."""
    if batch_size < 1 or prompt_len < 1 or new_tokens < 1 or repeats < 1:
        raise ValueError(f"batch_size, prompt_len, new_tokens and repeats must be >= 1, got {batch_size}, "
                         f"{prompt_len}, {new_tokens}, {repeats}")
    if not hasattr(model, "new_cache"):
        raise ValueError(f"{type(model).__name__} has no KV cache (new_cache)")
    dev = next(model.parameters()).device
    V = vocab_size or model.config.vocab_size
    prompt = torch.randint(0, V, (batch_size, prompt_len), generator=torch.Generator().manual_seed(0)).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    was_training = model.training
    model.eval()
    try:
        caches = model.new_cache(batch_size, prompt_len + new_tokens)
        logits, _ = model(prompt, cache=caches)
        first = logits[:, -1:].argmax(-1)                                              # (B, 1)
        best = float("inf")
        for _ in range(repeats):
            for c in caches:
                c.pos = prompt_len
            tok = first
            sync()
            t0 = time.perf_counter()
            for _ in range(new_tokens):
                logits, _ = model(tok, cache=caches)
                tok = logits[:, -1:].argmax(-1)
            sync()
            best = min(best, time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return batch_size * new_tokens / best


__all__ = ["kv_read_intensity", "decode_attention", "decode_attention_cost", "weight_bytes", "max_batch_size",
           "decode_tokens_per_second"]
