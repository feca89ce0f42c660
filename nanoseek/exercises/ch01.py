"""Checkers for chapter 1's exercises (nanoGPT from scratch)."""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.models.gpt import GPT, GPTConfig


def check_causal_mask(causal_mask: Callable[[int], torch.Tensor]) -> bool:
    def checks():
        for T in (1, 2, 5, 9):
            got = causal_mask(T)
            expect(isinstance(got, torch.Tensor), f"return a torch.Tensor, got {type(got).__name__}")
            expect(tuple(got.shape) == (T, T), f"for T={T} the mask must be ({T}, {T}), got {tuple(got.shape)}")
            expect(got.dtype == torch.bool, f"return a bool tensor (True = may attend), got {got.dtype}")
            want = torch.ones(T, T, dtype=torch.bool).tril()
            if not torch.equal(got, want):
                i, j = (got != want).nonzero()[0].tolist()
                expect(False, f"for T={T}, entry [{i}, {j}] is {bool(got[i, j])}: query {i} "
                              f"{'may' if want[i, j] else 'must not'} look at key {j}")

    return checking("causal mask", checks)


def check_top_k_filter(top_k_filter: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    def checks():
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(3, 10, generator=g)
        for k in (1, 3, 10):
            got = top_k_filter(logits.clone(), k)
            expect(isinstance(got, torch.Tensor) and got.shape == logits.shape,
                   f"return a tensor shaped like the logits {tuple(logits.shape)}")
            kept = torch.isfinite(got)
            expect(bool((kept.sum(-1) == k).all()), f"with k={k} keep exactly {k} logits per row, got "
                                                    f"{kept.sum(-1).tolist()}")
            top = logits.topk(k, dim=-1).indices
            expect(bool(kept.gather(-1, top).all()), f"with k={k} the kept logits must be the {k} largest")
            expect(torch.equal(got[kept], logits[kept]), "kept logits must keep their values")
            expect(bool((got[~kept] == float("-inf")).all()), "dropped logits must be -inf (probability 0)")

    return checking("top-k filter", checks)


def check_count_params(count_params: Callable[[int, int, int, int], int]) -> bool:
    def checks():
        for n_layer, n_embd, vocab, block in ((1, 8, 5, 4), (4, 128, 65, 64), (6, 384, 100, 256)):
            cfg = GPTConfig(n_layer=n_layer, n_head=4 if n_embd % 4 == 0 else 1, n_embd=n_embd,
                            vocab_size=vocab, block_size=block)
            want = GPT(cfg).num_params() if n_embd <= 128 else _formula(cfg)
            got = count_params(n_layer, n_embd, vocab, block)
            expect(got == want, f"n_layer={n_layer}, n_embd={n_embd}, vocab_size={vocab}, block_size={block}: "
                                f"expected {want:,} parameters, got {got!r}")

    return checking("parameter count", checks)


def _formula(cfg: GPTConfig) -> int:
    from nanoseek.models.gpt import gpt_num_params

    return gpt_num_params(cfg)
