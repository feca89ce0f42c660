"""nanoseek.serving: KV-read intensity, grouped decode attention, memory-budget batch, decode throughput."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.nn.attention import kv_cache_bytes, repeat_kv
from nanoseek.serving import (decode_attention, decode_attention_cost, decode_tokens_per_second, kv_read_intensity,
                              max_batch_size, weight_bytes)


def test_intensity_is_h_over_g_in_bf16_whatever_the_batch():
    assert kv_read_intensity(64, 8, 2) == 8 and kv_read_intensity(32, 32, 2) == 1
    for B in (1, 7, 64):
        flops, nbytes = decode_attention_cost(B, 32, 4, 128, 1000, 2)
        assert flops / nbytes == kv_read_intensity(32, 4, 2)
    with pytest.raises(ValueError, match="n_kv_head=3"):
        kv_read_intensity(8, 3, 2)


@pytest.mark.parametrize("G", [1, 2, 8])
def test_decode_attention_equals_sdpa(G):
    g = torch.Generator().manual_seed(G)
    q, k, v = torch.randn(3, 8, 16, generator=g), torch.randn(3, G, 11, 16, generator=g), torch.randn(3, G, 11, 16, generator=g)
    ref = F.scaled_dot_product_attention(q[:, :, None], repeat_kv(k, 8 // G), repeat_kv(v, 8 // G))[:, :, 0]
    torch.testing.assert_close(decode_attention(q, k, v), ref, atol=1e-5, rtol=1e-5)


def test_max_batch_size_is_the_largest_that_fits():
    w = 1000
    n = max_batch_size(10**6, w, 2, 2, 16, 100, 4)
    assert w + kv_cache_bytes(2, n, 2, 16, 100, 4) <= 10**6 < w + kv_cache_bytes(2, n + 1, 2, 16, 100, 4)
    assert max_batch_size(10, 1000, 2, 2, 16, 100, 4) == 0


def test_weight_bytes_counts_tied_once_and_throughput_runs():
    cfg = DecoderConfig(vocab_size=64, n_layer=1, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=64,
                        max_seq_len=32, tie_embeddings=True)
    m = Decoder(cfg).eval()
    assert weight_bytes(m) == 4 * sum(p.numel() for p in m.parameters())  # parameters() already dedups ties
    assert decode_tokens_per_second(m, 2, 8, 4, repeats=1) > 0
    with pytest.raises(ValueError, match="must be >= 1"):
        decode_tokens_per_second(m, 0, 8, 4)
