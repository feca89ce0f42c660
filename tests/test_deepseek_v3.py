"""DeepSeek-V3 interop (chapter 6): transformers' MoE layer and whole DeepseekV3ForCausalLM load into ours."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from nanoseek.interop.deepseek_v3 import moe_config_from_hf, moe_from_hf  # noqa: E402


def _randomize(module, std=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point() and t.numel() > 0:
                t.copy_(torch.randn(t.shape, generator=g) * std)


def test_moe_layer_from_hf():
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    cfg = transformers.DeepseekV3Config(hidden_size=48, moe_intermediate_size=24, n_routed_experts=12,
                                        n_shared_experts=1, num_experts_per_tok=4, n_group=3, topk_group=2,
                                        routed_scaling_factor=2.5, num_attention_heads=4, num_key_value_heads=4)
    cfg._experts_implementation = "eager"
    hf = DeepseekV3MoE(cfg).eval()
    _randomize(hf)
    ours = moe_from_hf(hf).eval()
    assert ours.cfg == moe_config_from_hf(cfg)
    x = torch.randn(2, 9, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x), atol=1e-5, rtol=1e-5)


def test_moe_config_from_hf_rejects_other_activations():
    cfg = transformers.DeepseekV3Config(hidden_size=32, moe_intermediate_size=16, n_routed_experts=8,
                                        num_experts_per_tok=2, n_group=2, topk_group=1, hidden_act="gelu",
                                        num_attention_heads=4, num_key_value_heads=4)
    with pytest.raises(ValueError, match="hidden_act='gelu'"):
        moe_config_from_hf(cfg)


def _tiny_hf_causal_lm(q_lora_rank, tie=False, seed=0):
    cfg = transformers.DeepseekV3Config(
        vocab_size=97, hidden_size=48, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=8, num_experts_per_tok=2,
        n_group=2, topk_group=1, first_k_dense_replace=1, kv_lora_rank=16, q_lora_rank=q_lora_rank,
        qk_rope_head_dim=8, qk_nope_head_dim=12, v_head_dim=10, max_position_embeddings=64,
        routed_scaling_factor=2.5, tie_word_embeddings=tie)
    hf = transformers.DeepseekV3ForCausalLM._from_config(cfg, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight random: norms, router, score-correction bias included
        for name, t in list(hf.named_parameters()) + [(n, b) for n, b in hf.named_buffers() if "e_score" in n]:
            t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if "norm" in name else 0.0))
    return hf


@pytest.mark.parametrize("q_lora_rank", [None, 24])
def test_whole_deepseek_v3_from_hf_same_logits(q_lora_rank):
    from nanoseek.interop import from_hf
    from nanoseek.models.decoder import Decoder
    from nanoseek.nn import SwiGLU
    from nanoseek.nn.moe import MoE

    hf = _tiny_hf_causal_lm(q_lora_rank)
    assert hf.model.layers[1].mlp.gate.e_score_correction_bias.abs().min() > 0
    ours = from_hf(hf)
    assert isinstance(ours, Decoder) and ours.config.attention == "mla" and ours.config.ffn == "moe"
    assert isinstance(ours.layers[0].ffn, SwiGLU) and all(isinstance(b.ffn, MoE) for b in ours.layers[1:])
    idx = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(idx).logits
        got, _ = ours(idx)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)
    # and token by token through the latent cache
    with torch.no_grad():
        cache = ours.new_cache(2)
        steps = [ours(idx[:, :5], cache=cache)[0]] + [ours(idx[:, t:t + 1], cache=cache)[0] for t in range(5, 13)]
    torch.testing.assert_close(torch.cat(steps, 1), ref, atol=2e-5, rtol=1e-4)


def test_config_from_hf_rejects_attention_bias():
    from nanoseek.interop.deepseek_v3 import config_from_hf

    cfg = transformers.DeepseekV3Config(hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                                        n_routed_experts=8, n_group=2, topk_group=1, attention_bias=True)
    with pytest.raises(ValueError, match="attention_bias=True"):
        config_from_hf(cfg)


def test_deepseek_v3_sizes_on_meta():
    """The real architecture, built without memory: 671B parameters, 37B active per token (DeepSeek-V3 report)."""
    from nanoseek.interop.deepseek_v3 import build_on_meta, config_from_hf, deepseek_v3_config
    from nanoseek.nn.moe import count_params

    cfg = deepseek_v3_config()
    hf_default = config_from_hf(transformers.DeepseekV3Config())  # transformers' defaults are DeepSeek-V3
    for field in ("vocab_size", "n_layer", "n_embd", "n_head", "intermediate_size", "kv_lora_rank", "q_lora_rank",
                  "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "first_k_dense_replace", "n_routed_experts",
                  "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts", "n_group", "topk_group",
                  "routed_scaling_factor"):
        assert getattr(cfg, field) == getattr(hf_default, field), field
    model = build_on_meta(cfg)
    assert next(model.parameters()).is_meta
    counts = count_params(model)
    assert round(counts["total"] / 1e9) == 671, counts
    assert int(counts["active"] / 1e9) == 37, counts


def test_load_deepseek_v3_from_a_local_folder(tmp_path):
    from nanoseek.interop.deepseek_v3 import load_deepseek_v3

    hf = _tiny_hf_causal_lm(24, seed=3)
    hf.save_pretrained(tmp_path)
    ours = load_deepseek_v3(str(tmp_path), device="cpu", max_seq_len=32)
    idx = torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=2e-5, rtol=1e-4)
    assert ours.config.max_seq_len == 32
