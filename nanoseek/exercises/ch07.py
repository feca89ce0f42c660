"""Checkers for chapter 7's exercises (multi-token prediction and self-speculative decoding)."""
from __future__ import annotations

import random
from typing import Callable

import torch

from nanoseek.exercises import checking, expect


def check_mtp_io(mtp_io: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """mtp_io(idx, targets, k) -> (read, labels): what depth k reads (t_{i+k}) and predicts (t_{i+k+1})."""

    def checks():
        idx = torch.arange(10, 17)[None].repeat(2, 1)  # t_0..t_6 = 10..16
        targets = idx + 1  # t_{i+1}
        for k in (1, 2, 3):
            got = mtp_io(idx.clone(), targets.clone(), k)
            expect(isinstance(got, tuple) and len(got) == 2, "return a pair (read, labels)")
            read, labels = got
            T = idx.shape[1]
            for name, t in (("read", read), ("labels", labels)):
                expect(isinstance(t, torch.Tensor) and tuple(t.shape) == (2, T - k),
                       f"for k={k}, {name} must be (B, T-k) = {(2, T - k)}: depth k has only T-k positions, got "
                       f"{tuple(getattr(t, 'shape', ()))}")
            expect(torch.equal(read, idx[:, k:]),
                   f"for k={k}, position 0 of depth {k} reads the embedding of t_{k} = {k + 10}, got "
                   f"{read[0, 0].item()}")
            expect(torch.equal(labels, targets[:, k:]),
                   f"for k={k}, position 0 of depth {k} predicts t_{k + 1} = {k + 11}, got {labels[0, 0].item()}")

    return checking("what depth k reads and predicts", checks)


def check_accept(accept: Callable[[list[int], list[int]], list[int]]) -> bool:
    """accept(drafts, greedy) -> the tokens one verification round commits."""

    def want(drafts, greedy):
        a = 0
        while a < len(drafts) and drafts[a] == greedy[a]:
            a += 1
        return drafts[:a] + [greedy[a]]

    def checks():
        cases = [([], [7]), ([3], [3, 9]), ([3], [4, 9]), ([1, 2, 3], [1, 2, 3, 4]), ([1, 2, 3], [1, 5, 3, 4]),
                 ([5, 5], [6, 5, 5])]
        rng = random.Random(0)
        for _ in range(30):
            m = rng.randint(0, 4)
            drafts = [rng.randint(0, 2) for _ in range(m)]
            cases.append((drafts, [rng.randint(0, 2) for _ in range(m + 1)]))
        for drafts, greedy in cases:
            got = accept(list(drafts), list(greedy))
            expect(isinstance(got, list), f"return a list of token ids, got {type(got).__name__}")
            expect(got == want(drafts, greedy),
                   f"drafts={drafts}, main model's greedy tokens={greedy}: commit {want(drafts, greedy)}, got {got} "
                   "(keep drafts while they match, then add the main model's own token at the first mismatch)")

    return checking("accept drafts", checks)


def check_mtp_forward(mtp_forward: Callable) -> bool:
    """mtp_forward(module, h_prev, emb_next) -> h^k, with the parts of a `nanoseek.nn.mtp.MTPModule`."""

    def checks():
        from nanoseek.models.decoder import Block, DecoderConfig
        from nanoseek.nn.mtp import MTPModule

        torch.manual_seed(0)
        cfg = DecoderConfig(vocab_size=11, n_layer=1, n_embd=16, n_head=2, n_kv_head=2, intermediate_size=24,
                            max_seq_len=16)
        module = MTPModule(16, Block(cfg, 1)).eval()
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
        h_prev, emb = torch.randn(2, 5, 16), torch.randn(2, 5, 16) * 3
        with torch.no_grad():
            want = module(h_prev, emb)
            got = mtp_forward(module, h_prev.clone(), emb.clone())
        expect(isinstance(got, torch.Tensor) and got.shape == want.shape,
               f"return a tensor of shape {tuple(want.shape)}, got {tuple(getattr(got, 'shape', ()))}")
        if torch.allclose(got, want, atol=1e-5, rtol=1e-5):
            return
        with torch.no_grad():
            swapped = module.norm(module.block(module.eh_proj(torch.cat([module.hnorm(h_prev), module.enorm(emb)], -1))))
            no_norm = module.block(module.eh_proj(torch.cat([module.enorm(emb), module.hnorm(h_prev)], -1)))
        expect(not torch.allclose(got, swapped, atol=1e-5), "the halves are swapped: the released DeepSeek-V3 weights "
               "expect [enorm(embedding) ; hnorm(h_prev)], embedding first")
        expect(not torch.allclose(got, no_norm, atol=1e-5), "almost: apply module.norm to the block's output (the "
               "RMSNorm in front of the shared output head)")
        expect(False, "the output differs from MTPModule's: normalize both inputs (enorm, hnorm), concatenate, "
               "project with eh_proj, run module.block, then module.norm")

    return checking("one MTP module", checks)


def check_expected_tokens(expected_tokens: Callable[[float, int], float]) -> bool:
    """expected_tokens(p, k): tokens committed per verification forward with k drafts, each accepted w.p. p."""

    def want(p, k):
        return float(sum(p**j for j in range(k + 1)))

    def checks():
        for p, k in ((0.0, 1), (1.0, 1), (1.0, 3), (0.5, 1), (0.85, 1), (0.9, 1), (0.7, 2), (0.6, 4), (0.3, 3)):
            got = expected_tokens(p, k)
            expect(isinstance(got, (int, float)), f"return a number, got {type(got).__name__}")
            expect(abs(got - want(p, k)) < 1e-9,
                   f"p={p}, k={k}: expected {want(p, k):.4f} tokens per forward, got {got!r} (the round always "
                   "commits the main model's token, plus draft j when drafts 1..j were all accepted)")

    return checking("expected tokens per forward", checks)


__all__ = ["check_mtp_io", "check_accept", "check_mtp_forward", "check_expected_tokens"]
