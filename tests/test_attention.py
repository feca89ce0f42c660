"""Attention with n_kv_head (MHA/GQA/MQA), repeat_kv, RoPE layouts and the KV cache. (Chapter 4.)"""
import math

import pytest
import torch
import torch.nn.functional as F

from nanoseek.nn.attention import Attention, KVCache, kv_cache_bytes, repeat_kv
from nanoseek.nn.rope import apply_rope, interleave_permutation, rope_cos_sin


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def reference_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Written out by hand: explicit scores, mask, softmax, per-group key/value heads."""
    B, T, _ = x.shape
    H, Hkv, D = attn.n_head, attn.n_kv_head, attn.head_dim
    q = attn.q_proj(x).view(B, T, H, D).transpose(1, 2)
    k = attn.k_proj(x).view(B, T, Hkv, D).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, Hkv, D).transpose(1, 2)
    cos, sin = rope_cos_sin(D, T, attn.rope_theta)
    q, k = apply_rope(q, cos, sin, attn.rope_layout), apply_rope(k, cos, sin, attn.rope_layout)
    out = torch.empty(B, H, T, D)
    for h in range(H):
        g = h // (H // Hkv)  # the kv head of query head h
        s = q[:, h] @ k[:, g].transpose(-1, -2) / math.sqrt(D)
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        out[:, h] = s.softmax(-1) @ v[:, g]
    return attn.o_proj(out.transpose(1, 2).reshape(B, T, H * D))


def test_repeat_kv_values():
    x = torch.randn(2, 3, 5, 4)
    y = repeat_kv(x, 4)
    assert y.shape == (2, 12, 5, 4)
    for h in range(12):
        torch.testing.assert_close(y[:, h], x[:, h // 4])
    assert repeat_kv(x, 1) is x
    with pytest.raises(ValueError, match="n_rep=0"):
        repeat_kv(x, 0)


def test_n_kv_head_must_divide_n_head():
    with pytest.raises(ValueError, match=r"n_kv_head=3.*n_head=8"):
        Attention(64, 8, 3)
    with pytest.raises(ValueError, match="head_dim=5"):
        Attention(64, 8, 8, head_dim=5)
    with pytest.raises(ValueError, match="rope_layout"):
        Attention(64, 8, 8, rope_layout="spiral")


@pytest.mark.parametrize("n_kv", [8, 2, 1])  # MHA, GQA, MQA
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_matches_hand_written_attention(n_kv, layout):
    torch.manual_seed(0)
    attn = Attention(32, 8, n_kv, head_dim=6, max_seq_len=16, rope_layout=layout, qkv_bias=True)
    _randomize(attn)
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(attn(x), reference_attention(attn, x), atol=1e-5, rtol=1e-5)


def test_param_count_of_the_three_settings():
    C, H, D = 64, 8, 8
    for n_kv in (8, 4, 1):
        attn = Attention(C, H, n_kv, qkv_bias=False)
        assert sum(p.numel() for p in attn.parameters()) == 2 * C * H * D + 2 * C * n_kv * D
    attn = Attention(C, H, 2, qkv_bias=True)
    assert attn.q_proj.bias is not None and attn.k_proj.bias is not None and attn.v_proj.bias is not None
    assert attn.o_proj.bias is None


def test_causal():
    torch.manual_seed(1)
    attn = Attention(32, 4, 2, max_seq_len=16)
    x = torch.randn(1, 10, 32)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(1, 4, 32)
    torch.testing.assert_close(attn(x)[:, :6], attn(x2)[:, :6])


def test_rope_layouts_agree_after_weight_permutation():
    """Half-split and interleaved RoPE give the same scores once q/k weight rows are permuted per head."""
    torch.manual_seed(2)
    C, H, Hkv, D, T = 48, 4, 2, 12, 9
    half = Attention(C, H, Hkv, D, max_seq_len=T, rope_layout="half", qkv_bias=True)
    _randomize(half, seed=3)
    inter = Attention(C, H, Hkv, D, max_seq_len=T, rope_layout="interleaved", qkv_bias=True)
    perm = interleave_permutation(D)
    with torch.no_grad():
        for name in ("q_proj", "k_proj"):
            src, dst = getattr(half, name), getattr(inter, name)
            n = src.weight.shape[0] // D
            rows = torch.cat([perm + h * D for h in range(n)])
            dst.weight.copy_(src.weight[rows])
            dst.bias.copy_(src.bias[rows])
        for name in ("v_proj", "o_proj"):
            getattr(inter, name).load_state_dict(getattr(half, name).state_dict())
    x = torch.randn(2, T, C)
    cos, sin = rope_cos_sin(D, T)

    def scores(attn):
        q = apply_rope(attn.q_proj(x).view(2, T, H, D).transpose(1, 2), cos, sin, attn.rope_layout)
        k = apply_rope(attn.k_proj(x).view(2, T, Hkv, D).transpose(1, 2), cos, sin, attn.rope_layout)
        return q @ repeat_kv(k, H // Hkv).transpose(-1, -2)

    torch.testing.assert_close(scores(inter), scores(half), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inter(x), half(x), atol=1e-5, rtol=1e-5)
    # without the permutation the layouts really differ
    inter.load_state_dict(half.state_dict())
    assert (scores(inter) - scores(half)).abs().max() > 1e-2


def test_rope_is_relative():
    """q_m · k_n depends only on m - n."""
    torch.manual_seed(4)
    D = 16
    q, k = torch.randn(D), torch.randn(D)
    cos, sin = rope_cos_sin(D, 20)
    for layout in ("half", "interleaved"):
        def dot(m, n):
            return apply_rope(q[None], cos[m:m + 1], sin[m:m + 1], layout) @ \
                apply_rope(k[None], cos[n:n + 1], sin[n:n + 1], layout).T
        torch.testing.assert_close(dot(5, 2), dot(15, 12), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_cached_equals_full(n_kv):
    torch.manual_seed(5)
    attn = Attention(32, 4, n_kv, max_seq_len=12, qkv_bias=True)
    _randomize(attn, seed=6)
    x = torch.randn(3, 11, 32)
    full = attn(x)
    cache = attn.new_cache(3, 12)
    parts = [attn(x[:, :4], cache), attn(x[:, 4:7], cache)]  # prefill, then a chunk of 3
    parts += [attn(x[:, t:t + 1], cache) for t in range(7, 11)]  # then one token at a time
    assert cache.pos == 11
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_cache_bytes_formula_exact():
    attn = Attention(64, 8, 2, max_seq_len=100)
    for dtype, size in ((torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2)):
        cache = attn.new_cache(3, 50, dtype=dtype)
        assert cache.k.shape == (3, 2, 50, 8)
        assert cache.nbytes == kv_cache_bytes(1, 3, 2, 8, 50, size) == 2 * 3 * 2 * 8 * 50 * size
    assert kv_cache_bytes(32, 1, 32, 128, 4096, 2) == 2 * 1024 ** 3  # Llama-2-7B, 4K tokens: 2 GiB
    with pytest.raises(ValueError, match="seq_len=-1"):
        kv_cache_bytes(1, 1, 1, 1, -1, 2)


def test_overflow_names_the_length():
    attn = Attention(32, 4, 2, max_seq_len=8)
    with pytest.raises(ValueError, match="9"):
        attn(torch.randn(1, 9, 32))
    cache = attn.new_cache(1, 6)
    attn(torch.randn(1, 5, 32), cache)
    with pytest.raises(ValueError, match="max_len=6"):
        attn(torch.randn(1, 2, 32), cache)
    with pytest.raises(ValueError, match="max_len=9"):
        attn.new_cache(1, 9)
    cache.reset()
    assert cache.pos == 0


def test_rope_tables_stay_float32_in_bf16():
    attn = Attention(32, 4, 2, max_seq_len=8).to(torch.bfloat16)
    y = attn(torch.randn(1, 8, 32, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert attn.rope_tables(torch.device("cpu"))[0].dtype == torch.float32
    cache = attn.new_cache(1)
    assert isinstance(cache, KVCache) and cache.k.dtype == torch.bfloat16 and cache.max_len == 8


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_apply_rope_is_a_rotation_of_each_pair(layout):
    """Against the definition: pair i (coordinates a, b) at position p turns by p·theta^(-2i/D)."""
    torch.manual_seed(7)
    D, T, theta = 8, 5, 100.0
    x = torch.randn(2, T, D, dtype=torch.float64)
    cos, sin = rope_cos_sin(D, T, theta)
    out = apply_rope(x.float(), cos, sin, layout).double()
    for p in range(T):
        for i in range(D // 2):
            a, b = (i, i + D // 2) if layout == "half" else (2 * i, 2 * i + 1)
            angle = p * theta ** (-2 * i / D)
            rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]],
                               dtype=torch.float64)
            expected = x[:, p, [a, b]] @ rot.T
            torch.testing.assert_close(out[:, p, [a, b]], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="spiral"):
        apply_rope(x, cos, sin, "spiral")
