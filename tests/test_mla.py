"""MLA (chapter 5): the three decode paths agree, the cache holds what the formula says, and our MLA
computes the same function as transformers' DeepseekV3Attention."""
from __future__ import annotations

import pytest
import torch

from nanoseek.nn.mla import MLA, MLAConfig


def _randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter random, norm weights and biases included (a norm weight of 1 hides mistakes)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * p.shape[-1] ** -0.5)


def _mla(seed: int, **overrides) -> MLA:
    g = torch.Generator().manual_seed(seed)
    kw = dict(dim=48, n_heads=3, kv_lora_rank=20, qk_nope_head_dim=8, qk_rope_head_dim=6, v_head_dim=10,
              q_lora_rank=None, max_seq_len=64, attention_bias=True)
    kw.update(overrides)
    m = MLA(MLAConfig(**kw))
    _randomize(m, g)
    return m.eval()


def _run_modes(m: MLA, x: torch.Tensor, prefill: int) -> dict[str, torch.Tensor]:
    """Prefill `prefill` tokens, then decode the rest one at a time, in each mode; outputs (B, T, C)."""
    outs = {}
    for mode in ("naive", "reexpand", "absorbed"):
        m.mode = mode
        cache = m.new_cache(x.shape[0], x.shape[1])
        ys = [m(x[:, :prefill], cache)] + [m(x[:, t:t + 1], cache) for t in range(prefill, x.shape[1])]
        assert cache.pos == x.shape[1]
        outs[mode] = torch.cat(ys, dim=1)
    return outs


@pytest.mark.parametrize("seed", range(6))
def test_paths_agree_prefill_and_decode(seed):
    """Property (seeded sweep over shapes): naive == reexpand == absorbed == full forward without cache."""
    g = torch.Generator().manual_seed(100 + seed)
    pick = lambda *vals: vals[int(torch.randint(len(vals), (1,), generator=g))]  # noqa: E731
    m = _mla(seed, n_heads=pick(1, 2, 4), kv_lora_rank=pick(8, 24), qk_nope_head_dim=pick(4, 16),
             qk_rope_head_dim=pick(2, 8), v_head_dim=pick(4, 12), q_lora_rank=pick(None, 12),
             rope_layout=pick("half", "interleaved"))
    B, T = pick(2, 3), pick(9, 17)
    x = torch.randn(B, T, m.cfg.dim, generator=g)
    prefill = int(torch.randint(1, T, (1,), generator=g))
    with torch.no_grad():
        m.mode = "naive"
        full = m(x)  # no cache: one causal pass
        outs = _run_modes(m, x, prefill)
        m.mode = "absorbed"
        full_absorbed = m(x)
    for mode, y in outs.items():
        torch.testing.assert_close(y, full, atol=1e-5, rtol=1e-5, msg=f"{mode} (cached) vs full forward")
    torch.testing.assert_close(full_absorbed, full, atol=1e-5, rtol=1e-5)


def test_absorbed_is_not_trivially_equal():
    """The check above can fail: a wrong W_UK (transposed heads) breaks the agreement."""
    m = _mla(0, n_heads=2)
    x = torch.randn(2, 5, m.cfg.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        m.mode = "naive"
        ref = m(x)
        w = m.kv_b_proj.weight.view(2, -1, m.cfg.kv_lora_rank)
        m.kv_b_proj.weight.copy_(w.flip(0).reshape_as(m.kv_b_proj.weight))
        m.mode = "absorbed"
        assert not torch.allclose(m(x), ref, atol=1e-3)


def test_cache_bytes_match_formula():
    m = _mla(0, n_heads=4)
    cfg = m.cfg
    for mode, per_token in (("naive", 4 * (8 + 6 + 10)), ("absorbed", 20 + 6), ("reexpand", 20 + 6)):
        m.mode = mode
        assert cfg.kv_cache_elements_per_token(mode) == per_token
        cache = m.new_cache(3, 16, dtype=torch.bfloat16)
        with torch.no_grad():
            m.to(torch.bfloat16)(torch.randn(3, 7, cfg.dim, dtype=torch.bfloat16), cache)
            m.float()
        assert cache.nbytes() == 3 * 7 * per_token * 2


def test_bad_config_and_inputs_raise():
    with pytest.raises(ValueError, match="qk_rope_head_dim"):
        MLAConfig(qk_rope_head_dim=5)
    with pytest.raises(ValueError, match="mode='fast'"):
        MLAConfig(mode="fast")
    with pytest.raises(ValueError, match="kv_lora_rank"):
        MLAConfig(kv_lora_rank=0)
    with pytest.raises(ValueError, match="q_lora_rank"):
        MLAConfig(q_lora_rank=-3)
    m = _mla(0)
    with pytest.raises(ValueError, match="does not fit mode"):
        m.mode = "absorbed"
        m(torch.randn(1, 2, m.cfg.dim), _naive_cache(m))
    cache = m.new_cache(1, 3)
    with pytest.raises(ValueError, match="overflow"):
        m(torch.randn(1, 4, m.cfg.dim), cache)
    with pytest.raises(ValueError, match="max_seq_len"):
        m(torch.randn(1, 65, m.cfg.dim))


def _naive_cache(m: MLA):
    mode, m.mode = m.mode, "naive"
    cache = m.new_cache(1, 4)
    m.mode = mode
    return cache


# ------------------------------------------------------------------------------------------ transformers
transformers = pytest.importorskip("transformers")


def _hf_attention(q_lora_rank, rope_interleave, attention_bias, seed=0):
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

    cfg = DeepseekV3Config(
        vocab_size=64, hidden_size=48, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=q_lora_rank,
        qk_rope_head_dim=8, qk_nope_head_dim=12, v_head_dim=10, max_position_embeddings=64,
        rope_interleave=rope_interleave, attention_bias=attention_bias, attn_implementation="eager",
        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1)
    attn = DeepseekV3Attention(cfg, layer_idx=0).eval()
    _randomize(attn, torch.Generator().manual_seed(seed))
    return cfg, attn


def _hf_forward(cfg, attn, x):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RotaryEmbedding

    T = x.shape[1]
    pos = torch.arange(T)[None]
    cos, sin = DeepseekV3RotaryEmbedding(cfg)(x, pos)
    mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
    return attn(x, position_embeddings=(cos, sin), attention_mask=mask)[0]


@pytest.mark.parametrize("q_lora_rank", [None, 24])
@pytest.mark.parametrize("rope_interleave", [True, False])
def test_parity_with_transformers_deepseek_v3(q_lora_rank, rope_interleave):
    from nanoseek.interop.deepseek_v3 import mla_from_hf

    cfg, attn = _hf_attention(q_lora_rank, rope_interleave, attention_bias=q_lora_rank is not None)
    x = torch.randn(2, 11, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = _hf_forward(cfg, attn, x)
        for mode in ("naive", "reexpand", "absorbed"):
            ours = mla_from_hf(attn, mode=mode)
            torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-5, msg=f"mode={mode}")
            cache = ours.new_cache(2, 11)
            stepped = torch.cat([ours(x[:, :4], cache)] + [ours(x[:, t:t + 1], cache) for t in range(4, 11)], 1)
            torch.testing.assert_close(stepped, ref, atol=1e-5, rtol=1e-5, msg=f"mode={mode}, cached")


def test_parity_detects_missing_rope_permutation():
    """Loading an interleaved checkpoint without the row permutation must give different outputs."""
    from nanoseek.interop.deepseek_v3 import mla_from_hf

    cfg, attn = _hf_attention(None, rope_interleave=True, attention_bias=False)
    x = torch.randn(1, 6, 48, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = _hf_forward(cfg, attn, x)
        cfg.rope_interleave = False  # pretend: no permutation at load
        ours = mla_from_hf(attn)
        cfg.rope_interleave = True
        assert not torch.allclose(ours(x), ref, atol=1e-3)


# ------------------------------------------------------------------------------------------ in the decoder
def _mla_decoder(mode="naive", **kw):
    from nanoseek.models.decoder import Decoder, DecoderConfig

    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=50, n_layer=2, n_embd=32, n_head=4, attention="mla", kv_lora_rank=16,
                        q_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, max_seq_len=32,
                        intermediate_size=48, mla_mode=mode, **kw)
    return Decoder(cfg)


def test_mla_decoder_config_errors():
    from nanoseek.models.decoder import DecoderConfig

    with pytest.raises(ValueError, match="kv_lora_rank=0"):
        DecoderConfig(attention="mla", kv_lora_rank=0)
    with pytest.raises(ValueError, match="mode='fast'"):
        DecoderConfig(attention="mla", mla_mode="fast")


def test_mla_decoder_trains_a_step():
    model = _mla_decoder()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 50, (4, 16), generator=g)
    losses = []
    for _ in range(5):
        _, loss = model(idx[:, :-1], targets=idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("mode", ["naive", "reexpand", "absorbed"])
def test_mla_decoder_cached_decode_matches_full(mode):
    model = _mla_decoder(mode).eval()
    idx = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache(2, 12)
        steps = [model(idx[:, :5], cache=cache)[0]] + [model(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    per_token = model.config.kv_lora_rank + model.config.qk_rope_head_dim if mode != "naive" else 4 * (12 + 8)
    assert sum(c.nbytes() for c in cache) == 2 * 2 * 12 * per_token * 4  # layers * batch * tokens * elems * fp32
