"""Load transformers' DeepseekV3 layers into nanoseek's modules, one function per layer kind. (Chapter 5.)

- ``mla_config_from_hf(config)``: a transformers ``DeepseekV3Config`` -> our ``MLAConfig``.
- ``mla_from_hf(attn)``: a ``DeepseekV3Attention`` -> our ``MLA`` with the same outputs.

Two details make the mapping more than a rename:

1. **RoPE layout.** With ``rope_interleave=True`` (DeepSeek's released checkpoints) transformers rotates the
   pairs (x0, x1), (x2, x3), ... and writes the result as [rotated evens ; rotated odds]. That equals the
   "half" rotation of the input *permuted* to [evens ; odds]. So we permute the RoPE output rows of the query
   projection and of ``kv_a_proj_with_mqa`` once, at load time, and run the half layout: the rotated
   queries and keys (and so the cache contents) then equal transformers' exactly.
2. **RoPE tables and softmax scale.** DeepSeek-V3 uses YaRN, which changes the frequencies, scales cos/sin by
   an ``attention_factor`` and multiplies the softmax scale by ``mscale**2``. We copy the cos/sin tables from
   transformers' own rotary embedding and take its ``scaling``, so every rope type is covered.
"""
from __future__ import annotations

import torch

from nanoseek.nn.mla import MLA, MLAConfig


def _interleave_to_half(n: int) -> torch.Tensor:
    """Row order [0, 2, 4, ..., 1, 3, 5, ...] of a RoPE block of n rows."""
    return torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)])


def mla_config_from_hf(config, mode: str = "naive", max_seq_len: int | None = None) -> MLAConfig:
    """Our MLAConfig for the attention of a transformers ``DeepseekV3Config``."""
    if config.num_key_value_heads != config.num_attention_heads:
        raise ValueError(
            f"DeepseekV3 MLA has one latent for all heads; expected num_key_value_heads == num_attention_heads, "
            f"got num_key_value_heads={config.num_key_value_heads}, num_attention_heads={config.num_attention_heads}")
    return MLAConfig(
        dim=config.hidden_size,
        n_heads=config.num_attention_heads,
        kv_lora_rank=config.kv_lora_rank,
        qk_nope_head_dim=config.qk_nope_head_dim,
        qk_rope_head_dim=config.qk_rope_head_dim,
        v_head_dim=config.v_head_dim,
        q_lora_rank=config.q_lora_rank,
        max_seq_len=max_seq_len or config.max_position_embeddings,
        rope_theta=float(config.rope_parameters["rope_theta"]),
        rope_layout="half",  # interleaved checkpoints are permuted at load time (see module docstring)
        norm_eps=config.rms_norm_eps,
        attention_bias=config.attention_bias,
        mode=mode,
    )


@torch.no_grad()
def mla_from_hf(attn, mode: str = "naive", max_seq_len: int | None = None) -> MLA:
    """Our MLA computing the same function as a transformers ``DeepseekV3Attention`` (weights copied)."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RotaryEmbedding

    hf_cfg = attn.config
    cfg = mla_config_from_hf(hf_cfg, mode=mode, max_seq_len=max_seq_len)
    H, nope, r, c = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
    ref = attn.kv_b_proj.weight
    mla = MLA(cfg).to(device=ref.device, dtype=ref.dtype)
    perm = _interleave_to_half(r) if hf_cfg.rope_interleave else torch.arange(r)

    # queries: per head [nope ; rope], the rope rows permuted
    q_rows = torch.cat([torch.arange(nope), nope + perm])
    q_rows = (torch.arange(H)[:, None] * cfg.qk_head_dim + q_rows).flatten()
    if cfg.q_lora_rank is None:
        mla.q_proj.weight.copy_(attn.q_proj.weight[q_rows])
    else:
        mla.q_a_proj.weight.copy_(attn.q_a_proj.weight)
        if cfg.attention_bias:
            mla.q_a_proj.bias.copy_(attn.q_a_proj.bias)
        mla.q_a_norm.weight.copy_(attn.q_a_layernorm.weight)
        mla.q_b_proj.weight.copy_(attn.q_b_proj.weight[q_rows])

    # keys/values: [latent ; shared rope key], the rope rows permuted
    kv_rows = torch.cat([torch.arange(c), c + perm])
    mla.kv_a_proj.weight.copy_(attn.kv_a_proj_with_mqa.weight[kv_rows])
    if cfg.attention_bias:
        mla.kv_a_proj.bias.copy_(attn.kv_a_proj_with_mqa.bias[kv_rows])
    mla.kv_a_norm.weight.copy_(attn.kv_a_layernorm.weight)
    mla.kv_b_proj.weight.copy_(attn.kv_b_proj.weight)
    mla.o_proj.weight.copy_(attn.o_proj.weight)
    if cfg.attention_bias:
        mla.o_proj.bias.copy_(attn.o_proj.bias)

    # RoPE tables (any rope type, YaRN's attention_factor included) and the softmax scale
    rotary = DeepseekV3RotaryEmbedding(hf_cfg).to(ref.device)
    pos = torch.arange(cfg.max_seq_len, device=ref.device)[None]
    cos, sin = rotary(torch.zeros(1, dtype=torch.float32, device=ref.device), pos)  # (1, L, r)
    mla.set_rope_tables(cos[0, :, : r // 2], sin[0, :, : r // 2])
    mla.softmax_scale = float(attn.scaling)
    return mla


# ---- DeepSeekMoE layers (chapter 6) ----------------------------------------------------------------------
# transformers 5.x stores the routed experts fused, exactly as `nanoseek.nn.moe.RoutedExperts` does
# (`experts.gate_up_proj` (E, 2I, C), `experts.down_proj` (E, C, I)); the router's `gate.weight` and
# `gate.e_score_correction_bias` and the `shared_experts` SwiGLU keep their names: the mapping is the identity.


def moe_config_from_hf(config, **overrides):
    """Our `MoEConfig` for the MoE layers of a transformers ``DeepseekV3Config`` (V3 routing: sigmoid, groups)."""
    from nanoseek.nn.moe import MoEConfig

    kw = dict(
        dim=config.hidden_size,
        n_routed_experts=config.n_routed_experts,
        num_experts_per_tok=config.num_experts_per_tok,
        moe_intermediate_size=config.moe_intermediate_size,
        n_shared_experts=config.n_shared_experts or 0,
        n_group=config.n_group or 1,
        topk_group=config.topk_group or 1,
        scoring_func="sigmoid",
        norm_topk_prob=bool(config.norm_topk_prob),
        routed_scaling_factor=float(config.routed_scaling_factor),
    )
    if getattr(config, "hidden_act", "silu") != "silu":
        raise ValueError(f"nanoseek's experts are SwiGLU (silu); got hidden_act={config.hidden_act!r}")
    kw.update(overrides)
    return MoEConfig(**kw)


@torch.no_grad()
def moe_from_hf(mlp, **overrides):
    """Our `MoE` computing the same function as a transformers ``DeepseekV3MoE`` (weights copied)."""
    from nanoseek.nn.moe import MoE

    ref = mlp.experts.gate_up_proj
    moe = MoE(moe_config_from_hf(mlp.config, **overrides)).to(device=ref.device, dtype=ref.dtype)
    moe.load_state_dict(mlp.state_dict(), strict=True)
    moe.gate.float()  # the router stays in float32, as transformers keeps it (_keep_in_fp32_modules_strict)
    return moe
