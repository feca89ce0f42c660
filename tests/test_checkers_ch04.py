"""Chapter 4's exercise checkers: every plausible wrong solution fails, the right one passes."""
from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch

from nanoseek.exercises import ch04
from nanoseek.nn.attention import kv_cache_bytes, repeat_kv
from nanoseek.nn.rope import apply_rope, rope_cos_sin


def run(checker, fn) -> bool:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = checker(fn)
    text = out.getvalue()
    assert ("✅" in text) == ok and ("❌" in text) != ok, text
    return ok


# ---- repeat_kv -------------------------------------------------------------------------------------------
REPEAT_WRONG = {
    "tile instead of repeat": lambda x, n: x.repeat(1, n, 1, 1),
    "no repeat": lambda x, n: x,
    "repeat along time": lambda x, n: x.repeat_interleave(n, dim=2),
    "expand on the last axis": lambda x, n: x[:, :, None].expand(-1, -1, n, -1, -1).transpose(1, 2).reshape(
        x.shape[0], x.shape[1] * n, x.shape[2], x.shape[3]),
}


@pytest.mark.parametrize("name", REPEAT_WRONG)
def test_repeat_kv_wrong(name):
    assert not run(ch04.check_repeat_kv, REPEAT_WRONG[name])


def test_repeat_kv_right():
    assert run(ch04.check_repeat_kv, repeat_kv)


# ---- kv_cache_bytes --------------------------------------------------------------------------------------
BYTES_WRONG = {
    "K only": lambda L, B, G, D, T, b: L * B * G * D * T * b,
    "no layers": lambda L, B, G, D, T, b: 2 * B * G * D * T * b,
    "no batch": lambda L, B, G, D, T, b: 2 * L * G * D * T * b,
    "bits not bytes": lambda L, B, G, D, T, b: 2 * L * B * G * D * T * b * 8,
    "no dtype": lambda L, B, G, D, T, b: 2 * L * B * G * D * T,
    "float result": lambda L, B, G, D, T, b: 2.0 * L * B * G * D * T * b + 0.5,
}


@pytest.mark.parametrize("name", BYTES_WRONG)
def test_kv_bytes_wrong(name):
    assert not run(ch04.check_kv_cache_bytes, BYTES_WRONG[name])


def test_kv_bytes_right():
    assert run(ch04.check_kv_cache_bytes, kv_cache_bytes)


# ---- rope_one --------------------------------------------------------------------------------------------
def rope_right(x, pos, theta=10000.0):
    D = x.shape[0]
    cos, sin = rope_cos_sin(D, pos + 1, theta)
    return apply_rope(x[None], cos[pos:pos + 1], sin[pos:pos + 1], "half")[0]


def rope_interleaved(x, pos, theta=10000.0):
    D = x.shape[0]
    cos, sin = rope_cos_sin(D, pos + 1, theta)
    return apply_rope(x[None], cos[pos:pos + 1], sin[pos:pos + 1], "interleaved")[0]


def _rope(x, pos, theta, sign=1, denom=None, pos_off=0):
    D = x.shape[0]
    denom = D if denom is None else denom
    ang = (pos + pos_off) * theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / denom)
    a, b = x[: D // 2].double(), x[D // 2:].double()
    return torch.cat([a * ang.cos() - sign * b * ang.sin(), b * ang.cos() + sign * a * ang.sin()]).float()


ROPE_WRONG = {
    "interleaved pairs": rope_interleaved,
    "rotation the wrong way": lambda x, p, t=10000.0: _rope(x, p, t, sign=-1),
    "frequencies over D/2": lambda x, p, t=10000.0: _rope(x, p, t, denom=x.shape[0] // 2),
    "position off by one": lambda x, p, t=10000.0: _rope(x, p, t, pos_off=1),
    "theta ignored": lambda x, p, t=10000.0: _rope(x, p, 10000.0),
    "identity": lambda x, p, t=10000.0: x,
}


@pytest.mark.parametrize("name", ROPE_WRONG)
def test_rope_wrong(name):
    assert not run(ch04.check_rope_one, ROPE_WRONG[name])


def test_rope_right():
    assert run(ch04.check_rope_one, rope_right)


# ---- mean_pool_kv ----------------------------------------------------------------------------------------
def pool_right(w, H, G):
    D, C = w.shape[0] // H, w.shape[1]
    return w.view(G, H // G, D, C).mean(1).reshape(G * D, C)


POOL_WRONG = {
    "first head of each group": lambda w, H, G: w.view(G, H // G, w.shape[0] // H, w.shape[1])[:, 0].reshape(-1, w.shape[1]),
    "strided groups": lambda w, H, G: w.view(H // G, G, w.shape[0] // H, w.shape[1]).mean(0).reshape(-1, w.shape[1]),
    "sum not mean": lambda w, H, G: w.view(G, H // G, w.shape[0] // H, w.shape[1]).sum(1).reshape(-1, w.shape[1]),
    "pool over rows not heads": lambda w, H, G: w.view(G, -1, w.shape[1]).mean(1).repeat_interleave(w.shape[0] // H, 0),
}


@pytest.mark.parametrize("name", POOL_WRONG)
def test_pool_wrong(name):
    assert not run(ch04.check_mean_pool_kv, POOL_WRONG[name])


def test_pool_right():
    assert run(ch04.check_mean_pool_kv, pool_right)


# ---- cached attention ------------------------------------------------------------------------------------
def _cached(q, k_new, v_new, cache, *, append=True, causal=True, tile=False, scale=True, diag0=False,
            prepend=False, overwrite=False):
    k = torch.cat([k_new, cache["k"]] if prepend else [cache["k"], k_new], dim=2)
    v = torch.cat([v_new, cache["v"]] if prepend else [cache["v"], v_new], dim=2)
    if overwrite:
        k, v = k_new, v_new
    if append:
        cache["k"], cache["v"] = k, v
    H, G, T, D = q.shape[1], k.shape[1], q.shape[2], q.shape[3]
    kk = k.repeat(1, H // G, 1, 1) if tile else k.repeat_interleave(H // G, 1)
    vv = v.repeat(1, H // G, 1, 1) if tile else v.repeat_interleave(H // G, 1)
    s = q @ kk.transpose(-1, -2) / (math.sqrt(D) if scale else 1.0)
    S = kk.shape[2]
    if causal:
        vis = torch.ones(T, S, dtype=torch.bool).tril(diagonal=0 if diag0 else S - T)
        s = s.masked_fill(~vis, float("-inf"))
    return s.softmax(-1) @ vv


CACHED_WRONG = {
    "cache never updated": lambda *a: _cached(*a, append=False),
    "no mask inside a chunk": lambda *a: _cached(*a, causal=False),
    "kv heads tiled": lambda *a: _cached(*a, tile=True),
    "no 1/sqrt(D)": lambda *a: _cached(*a, scale=False),
    "mask not offset by the cache": lambda *a: _cached(*a, diag0=True),
    "new keys before the old": lambda *a: _cached(*a, prepend=True),
    "cache replaced by the new tokens": lambda *a: _cached(*a, overwrite=True),
}


@pytest.mark.parametrize("name", CACHED_WRONG)
def test_cached_attention_wrong(name):
    assert not run(ch04.check_cached_attention, CACHED_WRONG[name])


def test_cached_attention_right():
    assert run(ch04.check_cached_attention, _cached)


def test_unimplemented_fails():
    def stub(*args):
        raise NotImplementedError
    for checker in (ch04.check_repeat_kv, ch04.check_kv_cache_bytes, ch04.check_rope_one, ch04.check_mean_pool_kv,
                    ch04.check_cached_attention):
        assert not run(checker, stub)
