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

from nanoseek.interop._weights import assert_written, check_tied, check_weights, meta_shapes, poison
from nanoseek.nn.mla import MLA, MLAConfig

# our MLA's parameter names -> transformers' DeepseekV3Attention's (the others are the same)
_ATTN_NAMES = {"q_a_norm": "q_a_layernorm", "kv_a_proj": "kv_a_proj_with_mqa", "kv_a_norm": "kv_a_layernorm"}
_SHAPE_FIELDS = ("vocab_size, hidden_size, num_hidden_layers, num_attention_heads, q_lora_rank, kv_lora_rank, "
                 "qk_nope_head_dim, qk_rope_head_dim, v_head_dim, intermediate_size, moe_intermediate_size, "
                 "n_routed_experts, n_shared_experts and first_k_dense_replace set these shapes")


def _attn_key_to_hf(key: str) -> str:
    head, _, rest = key.partition(".")
    return f"{_ATTN_NAMES.get(head, head)}.{rest}" if rest else key


def _meta_mla_shapes(cfg: MLAConfig) -> dict[str, tuple[int, ...]]:
    shapes = meta_shapes(_on_meta(lambda: MLA(cfg)))
    return {_attn_key_to_hf(k): v for k, v in shapes.items()}


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
    source = {k: v for k, v in attn.state_dict().items() if "rotary" not in k}
    check_weights(_meta_mla_shapes(cfg), source, "DeepseekV3Attention -> MLA", _SHAPE_FIELDS)
    ref = attn.kv_b_proj.weight
    mla = poison(MLA(cfg).to(device=ref.device, dtype=ref.dtype))
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
    assert_written(mla, "DeepseekV3Attention -> MLA")
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
    cfg = moe_config_from_hf(mlp.config, **overrides)
    with torch.device("meta"):
        expected = meta_shapes(MoE(cfg))
    check_weights(expected, mlp.state_dict(), "DeepseekV3MoE -> MoE", _SHAPE_FIELDS)
    moe = MoE(cfg).to(device=ref.device, dtype=ref.dtype)
    moe.load_state_dict(mlp.state_dict(), strict=True)
    moe.gate.float()  # the router stays in float32, as transformers keeps it (_keep_in_fp32_modules_strict)
    return moe


# ---- whole models (chapter 6): DeepseekV3ForCausalLM <-> Decoder(attention="mla", ffn="moe") ---------------


def config_from_hf(config, max_seq_len: int | None = None, mla_mode: str = "naive"):
    """Our `DecoderConfig` for a transformers ``DeepseekV3Config``: MLA attention, `first_k_dense_replace` dense
    layers then DeepSeekMoE layers with V3 routing.

    YaRN and other rope types are carried by `from_hf` (it copies transformers' RoPE tables and softmax scale
    into each attention); a model rebuilt from this config alone has plain RoPE.
    """
    from nanoseek.models.decoder import DecoderConfig

    if getattr(config, "attention_bias", False):
        raise ValueError("DeepseekV3 with attention_bias=True has no nanoseek equivalent (Decoder MLA has no biases)")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise ValueError(f"nanoseek's FFNs are SwiGLU (silu); got hidden_act={config.hidden_act!r}")
    moe = moe_config_from_hf(config)
    return DecoderConfig(
        vocab_size=config.vocab_size,
        n_layer=config.num_hidden_layers,
        n_embd=config.hidden_size,
        n_head=config.num_attention_heads,
        n_kv_head=config.num_attention_heads,
        head_dim=config.qk_rope_head_dim,  # unused by MLA; the config needs an even value
        intermediate_size=config.intermediate_size,
        max_seq_len=max_seq_len or config.max_position_embeddings,
        rope_theta=float(config.rope_parameters["rope_theta"]),
        rope_layout="half",  # interleaved checkpoints are permuted at load time (see the module docstring)
        norm_eps=config.rms_norm_eps,
        tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        attention="mla",
        kv_lora_rank=config.kv_lora_rank,
        q_lora_rank=config.q_lora_rank,
        qk_nope_head_dim=config.qk_nope_head_dim,
        qk_rope_head_dim=config.qk_rope_head_dim,
        v_head_dim=config.v_head_dim,
        mla_mode=mla_mode,
        ffn="moe",
        first_k_dense_replace=min(config.first_k_dense_replace or 0, config.num_hidden_layers),
        n_routed_experts=moe.n_routed_experts,
        num_experts_per_tok=moe.num_experts_per_tok,
        moe_intermediate_size=moe.moe_intermediate_size,
        n_shared_experts=moe.n_shared_experts,
        n_group=moe.n_group,
        topk_group=moe.topk_group,
        scoring_func="sigmoid",
        norm_topk_prob=moe.norm_topk_prob,
        routed_scaling_factor=moe.routed_scaling_factor,
    )


@torch.no_grad()
def from_hf(hf_model, max_seq_len: int | None = None, mla_mode: str = "naive"):
    """A `Decoder` computing the same logits as a transformers ``DeepseekV3ForCausalLM`` (weights copied; the
    dtype and device of the transformers model). MLA layers go through `mla_from_hf` (RoPE permutation and
    tables), MoE layers through `moe_from_hf` (identical names), dense layers and norms are copied."""
    from nanoseek.models.decoder import Decoder

    cfg = config_from_hf(hf_model.config, max_seq_len=max_seq_len, mla_mode=mla_mode)
    where = "DeepseekV3ForCausalLM -> Decoder"
    source = {k: v for k, v in hf_model.state_dict().items() if "rotary_emb" not in k}
    check_weights(expected_hf_shapes(cfg), source, where, _SHAPE_FIELDS,
                  optional=("lm_head.weight",) if cfg.tie_embeddings else ())
    check_tied(cfg.tie_embeddings, source.get("lm_head.weight"), source["model.embed_tokens.weight"], where)
    param = next(hf_model.parameters())
    model = poison(Decoder(cfg).to(device=param.device, dtype=param.dtype))
    hf = hf_model.model
    model.embed.weight.copy_(hf.embed_tokens.weight)
    model.norm.weight.copy_(hf.norm.weight)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    else:
        model.lm_head.weight.copy_(hf_model.lm_head.weight)
    for block, layer in zip(model.layers, hf.layers):
        block.attn = mla_from_hf(layer.self_attn, mode=mla_mode, max_seq_len=cfg.max_seq_len)
        block.attn_norm.weight.copy_(layer.input_layernorm.weight)
        block.ffn_norm.weight.copy_(layer.post_attention_layernorm.weight)
        block.ffn.load_state_dict(layer.mlp.state_dict(), strict=True)  # SwiGLU or MoE: the same names
        if hasattr(block.ffn, "gate"):
            block.ffn.gate.float()  # the router stays in float32, as transformers keeps it
    assert_written(model, where)
    return model.eval()


def _key_to_hf(key: str) -> str:
    """Our Decoder(attention="mla", ffn="moe") state-dict key -> transformers' DeepseekV3ForCausalLM key."""
    top = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
           "lm_head.weight": "lm_head.weight"}
    if key in top:
        return top[key]
    _, i, part, rest = key.split(".", 3)
    part = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn": "self_attn",
            "ffn": "mlp"}[part]
    if part == "self_attn":
        rest = _attn_key_to_hf(rest)
    return f"model.layers.{i}.{part}.{rest}"


def expected_hf_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """The transformers weight names and shapes that a `DecoderConfig` from `config_from_hf` implies (built
    on the meta device: no memory)."""
    return {_key_to_hf(k): v for k, v in meta_shapes(build_on_meta(cfg)).items()}


def deepseek_v3_config(**overrides):
    """The `DecoderConfig` of DeepSeek-V3 (671B) itself: 61 layers of width 7168, MLA with 128 heads
    (q_lora_rank 1536, kv_lora_rank 512), 3 dense layers (SwiGLU 18432) then 58 DeepSeekMoE layers of 256 routed
    experts (width 2048, 8 active, 4 of 8 groups, scale 2.5) and 1 shared expert; vocabulary 129,280.
    (The multi-token-prediction module of chapter 7 is not included: it is not part of the 671B.)"""
    from nanoseek.models.decoder import DecoderConfig

    kw = dict(
        vocab_size=129280, n_layer=61, n_embd=7168, n_head=128, n_kv_head=128, head_dim=64,
        intermediate_size=18432, max_seq_len=4096, rope_theta=10000.0, norm_eps=1e-6, tie_embeddings=False,
        attention="mla", kv_lora_rank=512, q_lora_rank=1536, qk_nope_head_dim=128, qk_rope_head_dim=64,
        v_head_dim=128, ffn="moe", first_k_dense_replace=3, n_routed_experts=256, num_experts_per_tok=8,
        moe_intermediate_size=2048, n_shared_experts=1, n_group=8, topk_group=4, scoring_func="sigmoid",
        norm_topk_prob=True, routed_scaling_factor=2.5,
    )
    kw.update(overrides)
    return DecoderConfig(**kw)


def build_on_meta(cfg=None):
    """A `Decoder` of config `cfg` (default: `deepseek_v3_config()`) on the meta device: every module and shape
    is real, no memory is allocated. Use it to inspect a model too large to build, e.g.
    `nanoseek.nn.moe.count_params(build_on_meta())` -> 671B total, 37B active per token."""
    from nanoseek.models.decoder import Decoder

    return _on_meta(lambda: Decoder(cfg if cfg is not None else deepseek_v3_config()))


def _on_meta(build):
    """`build()` on the meta device, MLA's small CPU RoPE tables built for real."""
    import nanoseek.nn.mla as mla_module

    tables = mla_module.rope_cos_sin

    def cpu_tables(*args, **kwargs):  # MLA keeps its RoPE tables on the CPU (a few MB): build them for real
        with torch.device("cpu"):
            return tables(*args, **kwargs)

    mla_module.rope_cos_sin = cpu_tables
    try:
        with torch.device("meta"):
            return build()
    finally:
        mla_module.rope_cos_sin = tables


def load_deepseek_v3(name: str, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                     max_seq_len: int | None = 4096, mla_mode: str = "naive", with_tokenizer: bool = False):
    """Load a DeepSeek-V3-architecture checkpoint (transformers ``model_type == "deepseek_v3"``, BF16/FP32
    weights) by hub name or local `save_pretrained` folder into our Decoder (MLA + DeepSeekMoE).

    DeepSeek-V3 itself (671B, FP8) needs a multi-GPU node; smaller checkpoints of the same architecture load on
    one large GPU: ``model = load_deepseek_v3(name, device="cuda", dtype=torch.bfloat16)``. The transformers
    model is built first and freed after the copy, so peak memory is twice the weights. ``max_seq_len`` caps
    the RoPE tables and caches. Returns the Decoder, or (Decoder, tokenizer) with ``with_tokenizer``.
    """
    from transformers import AutoModelForCausalLM

    from nanoseek.env import device as best_device

    hf = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32, attn_implementation="eager",
                                              use_safetensors=True)  # never a pickle
    if getattr(hf.config, "model_type", None) != "deepseek_v3":
        raise ValueError(f"{name!r} is a {hf.config.model_type!r} model, not deepseek_v3")
    model = from_hf(hf, max_seq_len=max_seq_len, mla_mode=mla_mode).to(device or best_device()).eval()
    del hf
    if not with_tokenizer:
        return model
    from transformers import AutoTokenizer

    return model, AutoTokenizer.from_pretrained(name)
