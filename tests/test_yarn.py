"""YaRN (DeepSeek-V2/V3's context extension) against transformers' DeepseekV3: RoPE tables, the mscale of the
softmax, and whole MLA outputs with `rope_scaling` set. (Chapter 5.)"""
import pytest
import torch

from nanoseek.nn.mla import MLA, MLAConfig
from nanoseek.nn.rope import rope_cos_sin, yarn_cos_sin, yarn_softmax_multiplier

pytest.importorskip("transformers")

# DeepSeek-V3's own rope_scaling (config.json of the release), and one with mscale != mscale_all_dim
V3_YARN = dict(factor=40.0, original_max_position_embeddings=4096, beta_fast=32, beta_slow=1, mscale=1.0,
               mscale_all_dim=1.0)
ODD_YARN = dict(factor=4.0, original_max_position_embeddings=16, beta_fast=8, beta_slow=2, mscale=0.8,
                mscale_all_dim=0.5)


def _hf(rope_scaling, max_pos=64, seed=0):
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention

    cfg = DeepseekV3Config(
        vocab_size=64, hidden_size=48, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8,
        qk_nope_head_dim=12, v_head_dim=10, max_position_embeddings=max_pos, rope_interleave=True,
        attn_implementation="eager", n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
        rope_scaling={"rope_type": "yarn", "rope_theta": 10000.0, **rope_scaling})
    attn = DeepseekV3Attention(cfg, layer_idx=0).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in attn.named_parameters():  # every weight random, norm gains around 1
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if "layernorm" in name else 0.0))
    return cfg, attn


@pytest.mark.parametrize("scaling", [V3_YARN, ODD_YARN], ids=["v3", "odd"])
def test_yarn_tables_and_mscale_match_transformers(scaling):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RotaryEmbedding

    cfg, attn = _hf(scaling, max_pos=4096 if scaling is V3_YARN else 64)
    L, r = cfg.max_position_embeddings, cfg.qk_rope_head_dim
    cos_hf, sin_hf = DeepseekV3RotaryEmbedding(cfg)(torch.zeros(1), torch.arange(L)[None])  # (1, L, r)
    cos, sin = yarn_cos_sin(r, L, 10000.0, **scaling)
    torch.testing.assert_close(cos, cos_hf[0, :, : r // 2], atol=2e-6, rtol=0)
    torch.testing.assert_close(sin, sin_hf[0, :, : r // 2], atol=2e-6, rtol=0)
    plain = rope_cos_sin(r, L, 10000.0)[0]
    assert (cos - plain).abs().max() > 0.1  # YaRN really changed the tables
    ours_scale = (cfg.qk_nope_head_dim + r) ** -0.5 * yarn_softmax_multiplier(scaling["factor"], scaling["mscale_all_dim"])
    assert ours_scale == pytest.approx(attn.scaling, rel=1e-12)
    assert attn.scaling != pytest.approx((cfg.qk_nope_head_dim + r) ** -0.5)  # mscale changed it


@pytest.mark.parametrize("mode", ["naive", "absorbed"])
def test_mla_with_rope_scaling_matches_transformers(mode):
    """An MLA built from *our* config with rope_scaling (own YaRN tables and softmax scale, weights copied)
    gives transformers' outputs, prefill and cached decoding."""
    from dataclasses import replace

    from nanoseek.interop.deepseek_v3 import mla_from_hf

    cfg, attn = _hf(ODD_YARN)
    T = 40  # beyond original_max_position_embeddings=16: the interpolated frequencies matter
    x = torch.randn(2, T, 48, generator=torch.Generator().manual_seed(3))
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RotaryEmbedding

    with torch.no_grad():
        pe = DeepseekV3RotaryEmbedding(cfg)(x, torch.arange(T)[None])
        ref = attn(x, position_embeddings=pe, attention_mask=torch.full((T, T), float("-inf")).triu(1)[None, None])[0]
        loaded = mla_from_hf(attn, mode=mode)
        ours = MLA(replace(loaded.cfg, rope_scaling=dict(ODD_YARN)))  # our own YaRN tables and scale
        ours.load_state_dict(loaded.state_dict(), strict=True)
        torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-5)
        cache = ours.new_cache(2, T)
        stepped = torch.cat([ours(x[:, :20], cache)] + [ours(x[:, t:t + 1], cache) for t in range(20, T)], 1)
        torch.testing.assert_close(stepped, ref, atol=1e-5, rtol=1e-5)
        plain = MLA(replace(loaded.cfg, rope_scaling=None))
        plain.load_state_dict(loaded.state_dict(), strict=True)
        assert not torch.allclose(plain(x), ref, atol=1e-3)  # without YaRN the outputs differ


def test_rope_scaling_is_validated():
    with pytest.raises(ValueError, match="rope_scaling"):
        MLAConfig(rope_scaling={"factor": 4.0})
    with pytest.raises(ValueError, match="rope_scaling"):
        MLAConfig(rope_scaling={"factor": 4.0, "original_max_position_embeddings": 16, "typo": 1})
