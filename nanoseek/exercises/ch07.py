"""Checkers for chapter 7's exercises (multi-token prediction and self-speculative decoding)."""
from __future__ import annotations

import random
from typing import Callable

import torch

from nanoseek.exercises import checking, expect


def check_mtp_io(mtp_io: Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """mtp_io(idx, targets, k) -> (read, labels): what depth k reads (t_{i+k}) and predicts (t_{i+k+1})."""

    def checks():
        # random tokens (no arithmetic pattern an off-by-one could hide behind); targets are idx shifted by one,
        # as in training: idx = t_0..t_{T-1}, targets = t_1..t_T
        seq = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(7))
        idx, targets = seq[:, :-1], seq[:, 1:]
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
                   f"for k={k}, position i of depth {k} reads the embedding of t_(i+{k}): expected "
                   f"{idx[0, k:].tolist()} in row 0, got {read[0].tolist()}")
            expect(torch.equal(labels, targets[:, k:]),
                   f"for k={k}, position i of depth {k} predicts t_(i+{k + 1}): expected {targets[0, k:].tolist()} "
                   f"in row 0, got {labels[0].tolist()}")

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


def check_mtp_loss(mtp_loss: Callable[..., torch.Tensor]) -> bool:
    """mtp_loss(main_logits (B, T, V), depth_logits [D tensors (B, T-k, V)], targets (B, T), lam) -> the total
    training loss L_main + lam / D · sum_k L_k, with L_k the cross-entropy of depth k against t_(i+k+1)."""
    import torch.nn.functional as F

    def ce(logits, labels):
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())

    def want(main, depths, targets, lam):
        losses = [ce(lg, targets[:, k:]) for k, lg in enumerate(depths, start=1)]
        return ce(main, targets) + lam * torch.stack(losses).mean() if losses else ce(main, targets)

    def checks():
        g = torch.Generator().manual_seed(9)
        for B, T, V, D, lam in ((2, 6, 5, 1, 0.3), (3, 9, 7, 2, 0.3), (2, 12, 11, 3, 0.1), (1, 5, 4, 0, 0.3)):
            targets = torch.randint(0, V, (B, T), generator=g)
            main = torch.randn(B, T, V, generator=g) * 2
            depths = [torch.randn(B, T - k, V, generator=g) * 2 for k in range(1, D + 1)]
            got = mtp_loss(main.clone(), [d.clone() for d in depths], targets.clone(), lam)
            expect(isinstance(got, torch.Tensor) and got.numel() == 1, "return the total loss as a scalar tensor")
            w = want(main, depths, targets, lam)
            if torch.allclose(got, w, atol=1e-5):
                continue
            summed = ce(main, targets) + lam * sum(ce(lg, targets[:, k:]) for k, lg in enumerate(depths, start=1))
            expect(D < 2 or not torch.allclose(got, summed, atol=1e-5),
                   f"D={D}: average the depths' losses (lam / D · sum), do not add them up")
            expect(D < 1 or not torch.allclose(got, ce(main, targets), atol=1e-5),
                   f"D={D}: add lam times the mean of the MTP depths' losses to the main loss")
            expect(False, f"B={B}, T={T}, D={D}: expected {w.item():.5f}, got {got.item():.5f} (depth k's logits "
                          f"have T-k positions; position i predicts t_(i+k+1) = targets[:, i+k])")

    return checking("MTP training loss over D depths", checks)


__all__ = ["check_mtp_loss", "check_mtp_io", "check_accept", "check_mtp_forward", "check_expected_tokens"]
