"""Qwen2 (Qwen2.5) <-> nanoseek `Decoder`: configs and weights both ways. (Chapter 4.)

transformers' `Qwen2ForCausalLM` is exactly the chapter-4 decoder with ``qkv_bias=True``, half-split RoPE and
SwiGLU, so the conversion is a renaming of state-dict keys:

| nanoseek                          | transformers                                      |
| --------------------------------- | ------------------------------------------------- |
| ``embed.weight``                  | ``model.embed_tokens.weight``                     |
| ``layers.{i}.attn_norm.weight``   | ``model.layers.{i}.input_layernorm.weight``       |
| ``layers.{i}.attn.{q,k,v,o}_proj``| ``model.layers.{i}.self_attn.{q,k,v,o}_proj``     |
| ``layers.{i}.ffn_norm.weight``    | ``model.layers.{i}.post_attention_layernorm.weight`` |
| ``layers.{i}.ffn.{gate,up,down}_proj`` | ``model.layers.{i}.mlp.{gate,up,down}_proj``  |
| ``norm.weight``                   | ``model.norm.weight``                             |
| ``lm_head.weight``                | ``lm_head.weight``                                |

Two differences are handled on the way: Qwen2 always has q/k/v biases (a decoder without them exports zero
biases), and Qwen2 uses the half-split RoPE layout (an interleaved decoder's q/k rows are permuted).

`load_qwen2()` loads the real Qwen2.5 weights by name (on Colab or any machine with the hub cache).
"""
from __future__ import annotations

import re

import torch

from nanoseek.interop._weights import check_tied, check_weights, meta_shapes
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.nn.rope import interleave_permutation

MODEL_TYPE = "qwen2"

_TOP = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight"}
_LAYER = [("attn_norm.", "input_layernorm."), ("ffn_norm.", "post_attention_layernorm."),
          ("attn.", "self_attn."), ("ffn.", "mlp.")]  # prefixes inside layer i: ours -> transformers
_OURS_LAYER = re.compile(r"layers\.(\d+)\.(.+)")
_HF_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


def key_to_hf(key: str) -> str:
    """Our state-dict key -> the transformers Qwen2 key (KeyError names an unknown key)."""
    if key in _TOP:
        return _TOP[key]
    m = _OURS_LAYER.fullmatch(key)
    if m:
        for ours, theirs in _LAYER:
            if m.group(2).startswith(ours):
                return f"model.layers.{m.group(1)}.{theirs}{m.group(2)[len(ours):]}"
    raise KeyError(f"no Qwen2 mapping for nanoseek state-dict key {key!r}")


def key_from_hf(key: str) -> str:
    """The transformers Qwen2 key -> ours (KeyError names an unknown key)."""
    for ours, theirs in _TOP.items():
        if key == theirs:
            return ours
    m = _HF_LAYER.fullmatch(key)
    if m:
        for ours, theirs in _LAYER:
            if m.group(2).startswith(theirs):
                return f"layers.{m.group(1)}.{ours}{m.group(2)[len(theirs):]}"
    raise KeyError(f"no nanoseek mapping for Qwen2 state-dict key {key!r}")


def config_from_hf(hf_config, max_seq_len: int | None = None) -> DecoderConfig:
    """The DecoderConfig of a transformers Qwen2Config (max_seq_len: override the 32K of real checkpoints)."""
    if getattr(hf_config, "model_type", None) != MODEL_TYPE:
        raise ValueError(f"expected a qwen2 config, got model_type={getattr(hf_config, 'model_type', None)!r}")
    if getattr(hf_config, "hidden_act", "silu") != "silu":
        raise ValueError(f"only SwiGLU (hidden_act='silu') is supported, got hidden_act={hf_config.hidden_act!r}")
    if getattr(hf_config, "use_sliding_window", False):
        raise ValueError("use_sliding_window=True is not supported (Qwen2.5 checkpoints have it off)")
    rope = getattr(hf_config, "rope_parameters", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"only the default RoPE is supported, got rope_type={rope_type!r}")
    theta = rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    n_head = hf_config.num_attention_heads
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // n_head
    return DecoderConfig(
        vocab_size=hf_config.vocab_size, n_layer=hf_config.num_hidden_layers, n_embd=hf_config.hidden_size,
        n_head=n_head, n_kv_head=hf_config.num_key_value_heads or n_head, head_dim=head_dim,
        intermediate_size=hf_config.intermediate_size,
        max_seq_len=max_seq_len or hf_config.max_position_embeddings, rope_theta=float(theta),
        rope_layout="half", norm_eps=hf_config.rms_norm_eps, qkv_bias=True,
        tie_embeddings=bool(hf_config.tie_word_embeddings), init_std=getattr(hf_config, "initializer_range", 0.02),
    )


def config_to_hf(cfg: DecoderConfig):
    """A transformers Qwen2Config with the same architecture as cfg."""
    from transformers import Qwen2Config

    if cfg.attention != "gqa" or cfg.ffn != "dense":
        raise ValueError(f"Qwen2 needs attention='gqa' and ffn='dense', got attention={cfg.attention!r}, "
                         f"ffn={cfg.ffn!r}")
    kwargs = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        tie_word_embeddings=cfg.tie_embeddings, initializer_range=cfg.init_std, hidden_act="silu",
        use_sliding_window=False,
    )
    if cfg.head_dim != cfg.n_embd // cfg.n_head:
        kwargs["head_dim"] = cfg.head_dim
    return Qwen2Config(**kwargs)


def _qk_rows(cfg: DecoderConfig, n_heads: int, inverse: bool) -> torch.Tensor:
    perm = interleave_permutation(cfg.head_dim)
    if inverse:
        perm = torch.argsort(perm)
    return torch.cat([perm + h * cfg.head_dim for h in range(n_heads)])


def state_dict_to_hf(state_dict: dict[str, torch.Tensor], cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> transformers Qwen2 keys (adds zero q/k/v biases, converts interleaved RoPE rows)."""
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"layers\.\d+\.attn\.(q_proj|k_proj)\.(weight|bias)", key)
        if m and cfg.rope_layout == "interleaved":  # W_interleaved = W_half[perm]  =>  W_half = W_int[argsort]
            n = cfg.n_head if m.group(1) == "q_proj" else cfg.n_kv_head
            value = value[_qk_rows(cfg, n, inverse=True)]
        out[key_to_hf(key)] = value
    if not cfg.qkv_bias:
        for i in range(cfg.n_layer):
            for proj, n in (("q_proj", cfg.n_head), ("k_proj", cfg.n_kv_head), ("v_proj", cfg.n_kv_head)):
                ref = out[f"model.layers.{i}.self_attn.{proj}.weight"]
                out[f"model.layers.{i}.self_attn.{proj}.bias"] = torch.zeros(n * cfg.head_dim, dtype=ref.dtype,
                                                                             device=ref.device)
    if cfg.tie_embeddings:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def state_dict_from_hf(hf_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers Qwen2 keys -> ours (the half-split layout, q/k/v biases kept)."""
    return {key_from_hf(k): v for k, v in hf_state_dict.items() if not k.endswith("rotary_emb.inv_freq")}


def from_hf(hf_model, max_seq_len: int | None = None) -> Decoder:
    """A Decoder with the weights, dtype and device of a transformers Qwen2ForCausalLM."""
    cfg = config_from_hf(hf_model.config, max_seq_len)
    param = next(hf_model.parameters())
    with torch.device("meta"):
        model = Decoder(cfg)
    # the loader rule (nanoseek.interop._weights): names and shapes checked against the config first
    where = "Qwen2ForCausalLM -> Decoder"
    source = {k: v for k, v in hf_model.state_dict().items() if not k.endswith("inv_freq")}
    check_weights({key_to_hf(k): v for k, v in meta_shapes(model).items()}, source, where,
                  "vocab_size, hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim "
                  "and intermediate_size set these shapes", optional=("lm_head.weight",) if cfg.tie_embeddings else ())
    check_tied(cfg.tie_embeddings, source.get("lm_head.weight"), source["model.embed_tokens.weight"], where)
    state = {k: v.detach().clone() for k, v in state_dict_from_hf(source).items()}  # no sharing
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    model.load_state_dict(state, assign=True, strict=True)  # assign: every parameter is a checkpoint tensor
    if cfg.tie_embeddings:  # load_state_dict(assign=True) replaced both tensors: tie them again
        model.lm_head.weight = model.embed.weight
    return model.to(device=param.device, dtype=param.dtype)


def to_hf(model: Decoder, attn_implementation: str = "eager"):
    """A transformers Qwen2ForCausalLM with the weights of our Decoder (same dtype and device)."""
    from transformers import Qwen2ForCausalLM

    cfg = model.config
    hf_config = config_to_hf(cfg)
    param = next(model.parameters())
    hf = Qwen2ForCausalLM._from_config(hf_config, attn_implementation=attn_implementation, dtype=param.dtype)
    missing, unexpected = hf.load_state_dict(state_dict_to_hf(model.state_dict(), cfg), strict=False)
    missing = [k for k in missing if not k.endswith("inv_freq")]
    if missing or unexpected:
        raise KeyError(f"Qwen2 state dict mismatch: missing={missing}, unexpected={unexpected}")
    if cfg.tie_embeddings:
        hf.tie_weights()
    return hf.to(param.device).eval()


def load_qwen2(name: str = "Qwen/Qwen2.5-0.5B-Instruct", device: torch.device | str | None = None,
               dtype: torch.dtype | None = None, max_seq_len: int | None = 4096, with_tokenizer: bool = False):
    """Load real Qwen2/Qwen2.5 weights by hub name (or a local `save_pretrained` folder) into our Decoder.

    On Colab: ``model, tok = load_qwen2(with_tokenizer=True, device="cuda", dtype=torch.bfloat16)``, then
    ``generate(model, tok(text, return_tensors="pt").input_ids.cuda(), 50, temperature=0)``. Downloads about
    1 GB for the 0.5B model the first time. ``max_seq_len`` caps the context (and so the largest cache);
    None keeps the checkpoint's 32K. Returns the Decoder, or (Decoder, tokenizer) with ``with_tokenizer``.
    """
    from transformers import AutoModelForCausalLM

    from nanoseek.env import device as best_device

    hf = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32, attn_implementation="eager",
                                              use_safetensors=True)  # never a pickle
    if getattr(hf.config, "model_type", None) != MODEL_TYPE:
        raise ValueError(f"{name!r} is a {hf.config.model_type!r} model, not qwen2")
    model = from_hf(hf, max_seq_len=max_seq_len).to(device or best_device()).eval()
    del hf
    if not with_tokenizer:
        return model
    from transformers import AutoTokenizer

    return model, AutoTokenizer.from_pretrained(name)
