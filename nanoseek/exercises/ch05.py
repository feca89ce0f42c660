"""Checkers for chapter 5's exercises (multi-head latent attention)."""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.nn.rope import apply_rope, rope_cos_sin

# (name, layers, heads, head_dim, kv_heads, kv_lora_rank, rope_dim): real shapes, plus odd ones
_SHAPES = [
    ("DeepSeek-V2", 60, 128, 128, 128, 512, 64),
    ("DeepSeek-V3", 61, 128, 128, 128, 512, 64),
    ("DeepSeek-V2-Lite", 27, 16, 128, 16, 512, 64),
    ("odd", 3, 6, 10, 2, 7, 4),
]


def check_kv_cache_elements(kv_cache_elements: Callable[..., int]) -> bool:
    """kv_cache_elements(kind, n_layer, n_head, head_dim, n_kv_head, kv_lora_rank, rope_dim) -> per token."""

    def checks():
        for name, L, H, D, G, c, r in _SHAPES:
            want = {"mha": 2 * H * D * L, "gqa": 2 * G * D * L, "mqa": 2 * D * L, "mla": (c + r) * L}
            for kind, value in want.items():
                got = kv_cache_elements(kind, L, H, D, G, c, r)
                expect(isinstance(got, int) and not isinstance(got, bool),
                       f"return an int, got {type(got).__name__} for kind={kind!r}")
                expect(got == value, f"{name}, kind={kind!r}: expected {value:,} cached numbers per token, "
                                     f"got {got:,}")

    return checking("KV cache elements per token", checks)


def check_absorbed_scores(absorbed_scores: Callable[..., torch.Tensor]) -> bool:
    """absorbed_scores(q_nope (B, H, n), w_uk (H, n, c), c_kv (B, S, c)) -> (B, H, S) == q_nope . (W_UK c)."""

    def checks():
        g = torch.Generator().manual_seed(5)
        for B, H, n, c, S in ((1, 1, 4, 6, 3), (2, 3, 8, 16, 7), (3, 4, 5, 12, 1)):
            q, w, ckv = torch.randn(B, H, n, generator=g), torch.randn(H, n, c, generator=g), \
                torch.randn(B, S, c, generator=g)
            k_nope = torch.einsum("hnc,bsc->bhsn", w, ckv)  # the decompressed keys the absorbed path avoids
            want = torch.einsum("bhn,bhsn->bhs", q, k_nope)
            got = absorbed_scores(q, w, ckv)
            expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (B, H, S),
                   f"for B={B}, H={H}, S={S} return a (B, H, S) tensor, got "
                   f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
            expect(torch.allclose(got, want, atol=1e-4, rtol=1e-4),
                   f"B={B}, H={H}, S={S}: scores differ from q_nope · (W_UK c) by up to "
                   f"{(got - want).abs().max().item():.3g}")

    return checking("absorbed scores", checks)


def check_rope_matrix(rope_matrix: Callable[[int, int], torch.Tensor]) -> bool:
    """rope_matrix(pos, dim) -> (dim, dim) R with R @ x == apply_rope(x at pos), half layout, theta 10000."""

    def checks():
        dim = 8
        cos, sin = rope_cos_sin(dim, 64)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(dim, generator=g)
        mats = {}
        for pos in (0, 1, 5, 17, 40):
            R = rope_matrix(pos, dim)
            expect(isinstance(R, torch.Tensor) and tuple(R.shape) == (dim, dim),
                   f"return a ({dim}, {dim}) tensor for pos={pos}")
            want = apply_rope(x[None], cos[pos:pos + 1], sin[pos:pos + 1])[0]
            expect(torch.allclose(R.float() @ x, want, atol=1e-5),
                   f"pos={pos}: R @ x differs from apply_rope(x) by {(R.float() @ x - want).abs().max().item():.3g}")
            mats[pos] = R.float()
        # the consequence: q_t . k_s = q^T R(t)^T R(s) k = q^T R(s - t) k depends on s - t ...
        rel = mats[1].T @ mats[17]
        expect(torch.allclose(rel, rope_matrix(16, dim).float(), atol=1e-5), "R(1)^T R(17) should equal R(16)")
        # ... and changes with it, so no single matrix W_Q^T R W_UK can be precomputed for all positions
        expect(not torch.allclose(mats[5], mats[17], atol=1e-2), "R(pos) must change with pos")

    ok = checking("RoPE as a matrix", checks)
    if ok:
        print("   R(t)^T R(s) = R(s - t): the matrix between q and k depends on the distance s - t, so it cannot be "
              "folded once into W_Q^T W_UK. That is why MLA keeps a separate RoPE key.")
    return ok


def check_combine_splits(combine_splits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """combine_splits(o (P, H, C), lse (P, H)) -> (H, C): merge P chunks' softmax-normalized outputs."""

    def checks():
        g = torch.Generator().manual_seed(3)
        for H, C, sizes in ((2, 4, (3, 5)), (3, 6, (1, 7, 2, 4)), (1, 3, (9,))):
            scores = torch.randn(H, sum(sizes), generator=g) * 3  # one query per head, all keys
            values = torch.randn(sum(sizes), C, generator=g)
            want = scores.softmax(-1) @ values  # (H, C)
            outs, lses = [], []
            for chunk_s, chunk_v in zip(scores.split(sizes, -1), values.split(sizes, 0)):
                outs.append(chunk_s.softmax(-1) @ chunk_v)
                lses.append(chunk_s.logsumexp(-1))
            got = combine_splits(torch.stack(outs), torch.stack(lses))
            expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (H, C),
                   f"with {len(sizes)} chunks, H={H}, C={C}: return an (H, C) tensor")
            expect(torch.allclose(got, want, atol=1e-5),
                   f"chunk sizes {sizes}: merged output differs from one softmax over all keys by "
                   f"{(got - want).abs().max().item():.3g}")

    return checking("flash-decoding combine", checks)
