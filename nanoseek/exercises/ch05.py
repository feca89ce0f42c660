"""Checkers for chapter 5's exercises (multi-head latent attention)."""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.nn.rope import apply_rope, rope_cos_sin


def _largest_intermediate(fn: Callable, *args) -> tuple[object, int]:
    """Run fn(*args); return its result and the element count of the largest tensor any torch op produced."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Watch(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor):
                    Watch.largest = max(Watch.largest, t.numel())
            return out

    with Watch():
        result = fn(*args)
    return result, Watch.largest

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
        # the point of absorption: never build the (B, H, S, n) keys. Long context, narrow latent:
        B, H, n, c, S = 2, 4, 32, 16, 64
        q, w, ckv = torch.randn(B, H, n, generator=g), torch.randn(H, n, c, generator=g), \
            torch.randn(B, S, c, generator=g)
        got, largest = _largest_intermediate(absorbed_scores, q, w, ckv)
        keys = B * H * S * n
        expect(largest < keys // 2,
               f"correct scores, but a tensor of {largest:,} numbers was built on the way: the decompressed keys "
               f"(B, H, S, n) have {keys:,}. Multiply q_nope by W_UK first (a (B, H, c) query in latent space), "
               f"then dot it with the latents")

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
        for H, C, sizes, scale, shift in ((2, 4, (3, 5), 3, 0), (3, 6, (1, 7, 2, 4), 3, 0), (1, 3, (9,), 3, 0),
                                          (2, 4, (3, 5, 2), 30, 200), (3, 5, (4, 1, 6), 50, 1000)):
            # one query per head, all keys; the last two cases have large scores (lse ~ 200 and ~ 1000), where
            # exp(lse) overflows float32: a stable merge subtracts the largest lse first
            scores = torch.randn(H, sum(sizes), generator=g) * scale + shift
            values = torch.randn(sum(sizes), C, generator=g)
            want = scores.softmax(-1) @ values  # (H, C)
            outs, lses = [], []
            for chunk_s, chunk_v in zip(scores.split(sizes, -1), values.split(sizes, 0)):
                outs.append(chunk_s.softmax(-1) @ chunk_v)
                lses.append(chunk_s.logsumexp(-1))
            got = combine_splits(torch.stack(outs), torch.stack(lses))
            expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (H, C),
                   f"with {len(sizes)} chunks, H={H}, C={C}: return an (H, C) tensor")
            expect(bool(torch.isfinite(got).all()),
                   f"chunk sizes {sizes}, scores around {shift}: the merged output has inf/nan; exp(lse) overflows "
                   f"for large scores, so subtract the largest lse before exponentiating")
            expect(torch.allclose(got, want, atol=1e-5),
                   f"chunk sizes {sizes}: merged output differs from one softmax over all keys by "
                   f"{(got - want).abs().max().item():.3g}")

    return checking("flash-decoding combine", checks)


def check_absorbed_decode(absorbed_decode: Callable[..., torch.Tensor]) -> bool:
    """absorbed_decode(q_nope (B, H, n), q_pe (B, H, r), c_kv (B, S, c), k_pe (B, S, r), w_uk (H, n, c),
    w_uv (H, v, c), scale) -> (B, H, v): one MLA decode step on the cache, keys and values never decompressed."""

    def reference(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
        k_nope = torch.einsum("hnc,bsc->bhsn", w_uk, c_kv)  # decompressed keys (B, H, S, n)
        v = torch.einsum("hvc,bsc->bhsv", w_uv, c_kv)  # decompressed values (B, H, S, v)
        scores = torch.einsum("bhn,bhsn->bhs", q_nope, k_nope) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)
        return torch.einsum("bhs,bhsv->bhv", (scores * scale).softmax(-1), v)

    def checks():
        g = torch.Generator().manual_seed(11)
        for B, H, n, r, c, v, S, size in ((1, 2, 4, 2, 6, 3, 5, 1.0), (2, 3, 8, 4, 12, 6, 9, 1.0),
                                          (2, 4, 6, 4, 8, 5, 7, 6.0)):  # the last: large scores
            args = [torch.randn(B, H, n, generator=g) * size, torch.randn(B, H, r, generator=g) * size,
                    torch.randn(B, S, c, generator=g), torch.randn(B, S, r, generator=g),
                    torch.randn(H, n, c, generator=g), torch.randn(H, v, c, generator=g), (n + r) ** -0.5]
            want = reference(*args)
            got = absorbed_decode(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
            expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (B, H, v),
                   f"return a (B, H, v) = {(B, H, v)} tensor, got "
                   f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
            expect(bool(torch.isfinite(got).all()), "the output has inf/nan (is your softmax stable?)")
            if not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
                no_rope = reference(args[0], torch.zeros_like(args[1]), *args[2:])
                no_scale = reference(*args[:6], 1.0)
                expect(not torch.allclose(got, no_rope, atol=1e-4), "the RoPE part of the score is missing: add "
                       "q_pe · k_pe (shared by all heads) to the absorbed q_nope · c score")
                expect(not torch.allclose(got, no_scale, atol=1e-4), "multiply the scores by `scale` before the softmax")
                expect(False, f"B={B}, H={H}, S={S}: the output differs from attention over the decompressed keys "
                       f"and values by up to {(got - want).abs().max().item():.3g}")
        B, H, n, r, c, v, S = 2, 4, 32, 8, 16, 32, 64  # long context, narrow latent
        args = [torch.randn(B, H, n, generator=g), torch.randn(B, H, r, generator=g), torch.randn(B, S, c, generator=g),
                torch.randn(B, S, r, generator=g), torch.randn(H, n, c, generator=g), torch.randn(H, v, c, generator=g),
                (n + r) ** -0.5]
        got, largest = _largest_intermediate(absorbed_decode, *args)
        expect(torch.allclose(got, reference(*args), atol=1e-4, rtol=1e-4), "wrong output for a long context")
        expect(largest < B * H * S * min(n, v) // 2,
               f"correct, but a tensor of {largest:,} numbers was built: decompressed keys or values (B, H, S, "
               f"{n}) have {B * H * S * n:,}. Absorb W_UK into the query, attend over c_kv itself, and apply W_UV "
               f"to the (B, H, c) result")

    return checking("absorbed MLA decode step", checks)


__all__ = ["check_kv_cache_elements", "check_absorbed_scores", "check_rope_matrix", "check_combine_splits",
           "check_absorbed_decode"]
