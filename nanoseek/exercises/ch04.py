"""Checkers for chapter 4's exercises (attention variants and the KV cache)."""
from __future__ import annotations

from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.nn.attention import kv_cache_bytes, repeat_kv
from nanoseek.nn.rope import apply_rope, rope_cos_sin


def check_repeat_kv(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """fn(x (B, n_kv, T, D), n_rep) -> (B, n_kv * n_rep, T, D), kv head j serving query heads j*n_rep.."""
    def checks():
        g = torch.Generator().manual_seed(0)
        for shape, n_rep in (((1, 1, 3, 4), 4), ((2, 2, 5, 8), 3), ((2, 4, 1, 2), 1)):
            x = torch.randn(shape, generator=g)
            got = fn(x.clone(), n_rep)
            want = repeat_kv(x, n_rep)
            expect(isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}")
            expect(tuple(got.shape) == tuple(want.shape),
                   f"x of shape {shape} with n_rep={n_rep} must give {tuple(want.shape)}, got {tuple(got.shape)}")
            if not torch.equal(got, want):
                h = next(h for h in range(want.shape[1]) if not torch.equal(got[:, h], want[:, h]))
                expect(False, f"x {shape}, n_rep={n_rep}: query head {h} should read kv head {h // n_rep} "
                              "(heads of one group are consecutive: repeat each kv head in place, not tile)")

    return checking("repeat_kv", checks)


def check_kv_cache_bytes(fn: Callable[..., int]) -> bool:
    """fn(n_layer, batch_size, n_kv_head, head_dim, seq_len, dtype_bytes) -> bytes of the K and V cache."""
    cases = [  # (n_layer, batch, n_kv, head_dim, seq_len, dtype_bytes), including published model shapes
        (1, 1, 1, 1, 1, 1), (32, 1, 32, 128, 4096, 2), (24, 8, 2, 64, 1000, 2), (95, 1, 8, 128, 1, 2),
        (4, 3, 2, 16, 64, 4),
    ]

    def checks():
        for case in cases:
            got = fn(*case)
            want = kv_cache_bytes(*case)
            names = "n_layer, batch_size, n_kv_head, head_dim, seq_len, dtype_bytes"
            if got != want:
                hint = " (did you count both K and V?)" if got == want // 2 else ""
                expect(False, f"({names}) = {case}: expected {want:,} bytes, got {got!r}{hint}")

    return checking("KV cache bytes", checks)


def check_rope_one(fn: Callable[[torch.Tensor, int, float], torch.Tensor]) -> bool:
    """fn(x (D,), pos, theta) -> x rotated by RoPE at position pos, half-split layout (pairs i, i + D/2)."""
    def checks():
        g = torch.Generator().manual_seed(1)
        for D, pos, theta in ((2, 0, 10000.0), (2, 3, 10000.0), (8, 5, 10000.0), (16, 100, 500.0)):
            x = torch.randn(D, generator=g)
            got = fn(x.clone(), pos, theta)
            cos, sin = rope_cos_sin(D, pos + 1, theta)
            want = apply_rope(x[None], cos[pos:pos + 1], sin[pos:pos + 1], "half")[0]
            expect(isinstance(got, torch.Tensor) and got.shape == (D,), f"return a ({D},) tensor")
            expect(torch.allclose(got.float(), want, atol=1e-5),
                   f"D={D}, pos={pos}, theta={theta}: expected {want.tolist()}, got {got.tolist()}")
            expect(abs(got.norm().item() - x.norm().item()) < 1e-4, "a rotation must keep the vector's length")

    return checking("rotary embedding of one vector", checks)


def check_mean_pool_kv(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> bool:
    """fn(w (n_head * D, C), n_head, n_kv_head) -> (n_kv_head * D, C): each group's heads averaged."""
    def checks():
        g = torch.Generator().manual_seed(2)
        for H, G, D, C in ((4, 4, 2, 3), (4, 2, 3, 5), (8, 1, 2, 4), (6, 3, 4, 2)):
            w = torch.randn(H * D, C, generator=g)
            got = fn(w.clone(), H, G)
            want = w.view(G, H // G, D, C).mean(1).reshape(G * D, C)
            expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (G * D, C),
                   f"n_head={H}, n_kv_head={G}, head_dim={D}: return a ({G * D}, {C}) tensor")
            expect(torch.allclose(got, want, atol=1e-6),
                   f"n_head={H}, n_kv_head={G}: kv head j must be the mean of heads j*{H // G} .. "
                   f"j*{H // G}+{H // G - 1} (consecutive heads form a group)")

    return checking("mean-pool key/value heads", checks)


def _cached_reference(q, k_new, v_new, cache):
    import torch.nn.functional as F

    k = torch.cat([cache["k"], k_new], dim=2)
    v = torch.cat([cache["v"], v_new], dim=2)
    S, T = k.shape[2], q.shape[2]
    n_rep = q.shape[1] // k.shape[1]
    mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
    return F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=mask), k, v


def check_cached_attention(fn: Callable) -> bool:
    """fn(q (B, H, T, D), k_new, v_new (B, G, T, D), cache {"k", "v": (B, G, S, D)}) -> (B, H, T, D), and the
    cache now holds S + T positions. Checked as a whole decode: a prompt, then single tokens, then a chunk, all
    equal to one causal attention over the whole sequence."""
    import torch.nn.functional as F

    def checks():
        g = torch.Generator().manual_seed(4)
        for B, H, G, D, chunks in ((1, 2, 2, 4, (5, 1, 1, 3)), (2, 4, 2, 8, (3, 1, 4, 1)), (1, 6, 1, 4, (1, 2, 1))):
            L = sum(chunks)
            q, k, v = (torch.randn(B, n, L, D, generator=g) for n in (H, G, G))
            full = F.scaled_dot_product_attention(q, repeat_kv(k, H // G), repeat_kv(v, H // G), is_causal=True)
            cache = {"k": torch.zeros(B, G, 0, D), "v": torch.zeros(B, G, 0, D)}
            start = 0
            for T in chunks:
                sl = slice(start, start + T)
                out = fn(q[:, :, sl].clone(), k[:, :, sl].clone(), v[:, :, sl].clone(), cache)
                where = f"B={B}, H={H}, G={G}: tokens {start}..{start + T - 1} after {start} cached"
                expect(isinstance(out, torch.Tensor) and tuple(out.shape) == (B, H, T, D),
                       f"{where}: return a {(B, H, T, D)} tensor")
                expect(tuple(cache["k"].shape) == (B, G, start + T, D) and tuple(cache["v"].shape) == (B, G, start + T, D),
                       f"{where}: afterwards cache['k'] and cache['v'] must hold {start + T} positions "
                       f"(append the new keys and values), got {tuple(cache['k'].shape)}")
                expect(torch.allclose(cache["k"], k[:, :, :start + T]) and torch.allclose(cache["v"], v[:, :, :start + T]),
                       f"{where}: the cache must hold the keys and values in order (old ones first)")
                if not torch.allclose(out, full[:, :, sl], atol=1e-5):
                    hint = (" (the new tokens must not see each other's future: new token i sees the cache and new "
                            "tokens 0..i)" if T > 1 else " (query head h reads kv head h // (H // G); scale scores "
                            "by 1/sqrt(D))")
                    expect(False, f"{where}: output differs from causal attention over the whole sequence{hint}")
                start += T

    return checking("attention with a KV cache", checks)
