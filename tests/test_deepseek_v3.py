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
