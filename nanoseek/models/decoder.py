"""The modern decoder: RMSNorm, rotary attention with n_kv_head (MHA/GQA/MQA), SwiGLU. (Chapter 4.)

`DecoderConfig` expresses Qwen2's architecture exactly (q/k/v biases, no o-proj bias, tied or untied
embeddings, rope theta, RMSNorm eps), so `nanoseek.interop` can move weights to and from transformers'
`Qwen2ForCausalLM`. Later chapters plug into two switch points:

- ``attention``: ``"gqa"`` builds `nanoseek.nn.attention.Attention` (chapter 4); chapter 5 adds ``"mla"``.
- ``ffn``: ``"dense"`` builds `nanoseek.nn.mlp.SwiGLU` (chapter 4); chapter 6 adds ``"moe"``.

Each switch is a small builder function in `ATTENTION_BUILDERS` / `FFN_BUILDERS`: adding a variant is one
function and one dictionary entry (plus its config fields and their validation).

Chapter 7 adds ``mtp_depth`` multi-token-prediction modules (`nanoseek.nn.mtp`) that share the embedding and
the LM head; ``mtp_depth=0`` (the default) is the plain decoder, parameter for parameter. With MTP the loss is
``L_main + mtp_lambda · mean_k L_MTP^k`` and ``model.last_losses`` holds the parts ("main", "mtp_1", ...).

Calling convention, shared by every model of the book: ``logits, loss = model(idx, targets=None, cache=None)``.
``targets`` uses -100 at positions without loss. **Auxiliary losses hook**: after the forward pass, every
submodule that has an attribute ``aux_loss`` holding a tensor (the MoE router's balance loss in chapter 6)
contributes it: when targets are given, ``loss = cross_entropy + sum(aux_loss)``. A module that sets
``aux_loss`` must set it on every forward (to a fresh tensor, or to None to contribute nothing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nanoseek import validate as V
from nanoseek.nn.attention import Attention
from nanoseek.nn.mla import MLA, MLAConfig
from nanoseek.nn.mlp import SwiGLU
from nanoseek.nn.mtp import MultiTokenPrediction, combine_losses
from nanoseek.nn.moe import MoE, MoEConfig, RoutedExperts, Router
from nanoseek.nn.norm import RMSNorm
from nanoseek.nn.rope import LAYOUTS


@dataclass
class DecoderConfig:
    vocab_size: int = 512
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 8
    n_kv_head: int = 2           # == n_head: MHA; 1: MQA; in between: GQA
    head_dim: int | None = None  # None: n_embd // n_head
    intermediate_size: int = 688  # SwiGLU hidden width (about 8/3 · n_embd)
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    rope_layout: str = "half"    # "half" (Llama/Qwen2) or "interleaved" (DeepSeek reference code)
    norm_eps: float = 1e-6
    qkv_bias: bool = False       # Qwen2: True
    tie_embeddings: bool = False
    attention: str = "gqa"       # switch point: "gqa" (chapter 4) or "mla" (chapter 5)
    # ---- attention="mla" (chapter 5): names follow transformers' DeepseekV3Config; n_head heads, no n_kv_head
    kv_lora_rank: int = 64           # the cached latent's width
    q_lora_rank: int | None = None   # None: queries straight from x (V2-Lite); else through a latent (V2/V3)
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16       # the decoupled RoPE key, shared by all heads
    v_head_dim: int = 32
    mla_mode: str = "naive"          # "naive" | "reexpand" | "absorbed": same function, different caches
    mla_decode_backend: str = "einsum"  # absorbed one-token steps: "einsum" | "triton" | "auto"
    ffn: str = "dense"           # switch point: chapter 6 adds "moe"
    init_std: float = 0.02
    mtp_depth: int = 0           # chapter 7: D multi-token-prediction modules (0: none, the plain decoder)
    mtp_lambda: float = 0.3      # chapter 7: weight λ of the mean MTP loss (DeepSeek-V3: 0.3, later 0.1)
    # ---- ffn="moe" (chapter 6): DeepSeekMoE layers; names follow transformers' DeepseekV3Config -----------
    first_k_dense_replace: int = 0   # the first k layers keep a dense SwiGLU of intermediate_size
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 64
    n_shared_experts: int = 1
    n_group: int = 1
    topk_group: int = 1
    scoring_func: str = "sigmoid"    # "sigmoid" (V3) or "softmax" (V2)
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    aux_loss: str = "none"           # "none" | "switch" | "seq"
    aux_loss_alpha: float = 0.0
    bias_update_speed: float = 0.0   # gamma of loss-free balancing (applied by nanoseek.nn.moe.BiasUpdateHook)
    moe_dispatch: str = "sorted"     # "sorted" | "loop" | "grouped"

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "n_kv_head", "intermediate_size", "max_seq_len"):
            setattr(self, name, V.integer(getattr(self, name), name, "DecoderConfig", minimum=1))
        if self.head_dim is None:
            if self.n_embd % self.n_head:
                raise ValueError(f"DecoderConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                                 "set head_dim explicitly")
            self.head_dim = self.n_embd // self.n_head
        if not V.is_int(self.head_dim) or self.head_dim < 2 or self.head_dim % 2:
            raise ValueError(f"DecoderConfig.head_dim must be an even integer >= 2 (rotary pairs), "
                             f"got head_dim={self.head_dim!r}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"DecoderConfig.n_kv_head={self.n_kv_head} must divide n_head={self.n_head}")
        for name in ("rope_theta", "norm_eps", "init_std"):
            V.positive(getattr(self, name), name, "DecoderConfig")
        for name in ("qkv_bias", "tie_embeddings"):
            V.flag(getattr(self, name), name, "DecoderConfig")
        V.choice(self.rope_layout, "rope_layout", LAYOUTS, "DecoderConfig")
        self.mtp_depth = V.integer(self.mtp_depth, "mtp_depth", "DecoderConfig", minimum=0)
        if self.mtp_depth >= self.max_seq_len:
            raise ValueError(f"DecoderConfig.mtp_depth={self.mtp_depth} must be < max_seq_len={self.max_seq_len}")
        V.number(self.mtp_lambda, "mtp_lambda", "DecoderConfig", minimum=0)
        V.choice(self.attention, "attention", ATTENTION_BUILDERS, "DecoderConfig")
        if self.attention == "mla":
            try:
                mla_config(self)  # validates the MLA fields
            except ValueError as err:
                raise ValueError(f"DecoderConfig(attention='mla'): {err}") from None
        V.choice(self.ffn, "ffn", FFN_BUILDERS, "DecoderConfig")
        if self.ffn == "moe":
            k = self.first_k_dense_replace
            if not V.is_int(k) or not 0 <= k <= self.n_layer:
                raise ValueError(f"DecoderConfig.first_k_dense_replace must be in 0..n_layer={self.n_layer}, "
                                 f"got first_k_dense_replace={k!r}")
            moe_config(self)  # validates the MoE fields (a ValueError names the field and its value)


# ---- switch points: (config, layer index) -> module -------------------------------------------------------

def build_gqa(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    return Attention(cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim, max_seq_len=cfg.max_seq_len,
                     rope_theta=cfg.rope_theta, rope_layout=cfg.rope_layout, qkv_bias=cfg.qkv_bias)


def mla_config(cfg: DecoderConfig) -> MLAConfig:
    """The `MLAConfig` of the attention layers of a decoder config (chapter 5)."""
    return MLAConfig(
        dim=cfg.n_embd, n_heads=cfg.n_head, kv_lora_rank=cfg.kv_lora_rank, q_lora_rank=cfg.q_lora_rank,
        qk_nope_head_dim=cfg.qk_nope_head_dim, qk_rope_head_dim=cfg.qk_rope_head_dim, v_head_dim=cfg.v_head_dim,
        max_seq_len=cfg.max_seq_len, rope_theta=float(cfg.rope_theta), rope_layout=cfg.rope_layout,
        norm_eps=cfg.norm_eps, mode=cfg.mla_mode, decode_backend=cfg.mla_decode_backend,
    )


def build_mla(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    return MLA(mla_config(cfg))


def build_dense(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    return SwiGLU(cfg.n_embd, cfg.intermediate_size)


def moe_config(cfg: DecoderConfig) -> MoEConfig:
    """The `MoEConfig` of the MoE layers of a decoder config (chapter 6)."""
    return MoEConfig(
        dim=cfg.n_embd, n_routed_experts=cfg.n_routed_experts, num_experts_per_tok=cfg.num_experts_per_tok,
        moe_intermediate_size=cfg.moe_intermediate_size, n_shared_experts=cfg.n_shared_experts,
        n_group=cfg.n_group, topk_group=cfg.topk_group, scoring_func=cfg.scoring_func,
        norm_topk_prob=cfg.norm_topk_prob, routed_scaling_factor=cfg.routed_scaling_factor,
        aux_loss=cfg.aux_loss, aux_loss_alpha=cfg.aux_loss_alpha, bias_update_speed=cfg.bias_update_speed,
        dispatch=cfg.moe_dispatch,
    )


def build_moe(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    """DeepSeekMoE, except in the first `first_k_dense_replace` layers, which stay dense (DeepSeek-V3: 3)."""
    if layer_idx < cfg.first_k_dense_replace:
        return build_dense(cfg, layer_idx)
    return MoE(moe_config(cfg))


ATTENTION_BUILDERS: dict[str, Callable[[DecoderConfig, int], nn.Module]] = {"gqa": build_gqa}
FFN_BUILDERS: dict[str, Callable[[DecoderConfig, int], nn.Module]] = {"dense": build_dense, "moe": build_moe}


def make_attention(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    """The attention of layer `layer_idx`: any module with forward(x, cache) and new_cache(...)."""
    return ATTENTION_BUILDERS[cfg.attention](cfg, layer_idx)


def make_ffn(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    """The feed-forward of layer `layer_idx` (a MoE may keep the first layers dense)."""
    return FFN_BUILDERS[cfg.ffn](cfg, layer_idx)


ATTENTION_BUILDERS["mla"] = build_mla  # chapter 5


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, cfg: DecoderConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = make_attention(cfg, layer_idx)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.ffn = make_ffn(cfg, layer_idx)

    def forward(self, x: torch.Tensor, cache=None) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        x = x + self.attn(self.attn_norm(x), cache)
        return x + self.ffn(self.ffn_norm(x))


class Decoder(nn.Module):
    """Token embedding, `n_layer` pre-norm blocks, final RMSNorm, LM head (optionally tied to the embedding)."""

    config_class = DecoderConfig

    def __init__(self, config: DecoderConfig):
        super().__init__()
        if not isinstance(config, DecoderConfig):
            raise TypeError(f"Decoder needs a DecoderConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        # chapter 7: MTP depth k runs one more block of the same kind (layer index n_layer + k - 1)
        self.mtp = (MultiTokenPrediction(config.n_embd, config.mtp_depth,
                                         lambda k: Block(config, config.n_layer + k - 1), config.norm_eps)
                    if config.mtp_depth else None)
        self.last_losses: dict[str, torch.Tensor] = {}  # the parts of the last loss: "main", "mtp_1", ...
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights, zero biases, unit norms; residual outputs scaled by 1/sqrt(2·n_layer)."""
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                scaled = name.endswith(("o_proj", "down_proj"))
                nn.init.normal_(module.weight, 0.0, std / math.sqrt(2 * self.config.n_layer) if scaled else std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, RoutedExperts):  # chapter 6: the same law as a dense SwiGLU's weights
                nn.init.normal_(module.gate_up_proj, 0.0, std)
                nn.init.normal_(module.down_proj, 0.0, std / math.sqrt(2 * self.config.n_layer))
            elif isinstance(module, Router):
                nn.init.normal_(module.weight, 0.0, std)
                nn.init.zeros_(module.e_score_correction_bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (a tied head is the embedding). non_embedding drops the embedding table."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embed.weight.numel()
        return n

    def new_cache(self, batch_size: int, max_len: int | None = None, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> list:
        """One empty cache per layer, for up to `max_len` tokens (default: the model's max_seq_len)."""
        return [block.attn.new_cache(batch_size, max_len, device, dtype) for block in self.layers]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: list | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if idx.dim() != 2:
            raise ValueError(f"idx must be (B, T) token ids, got shape {tuple(idx.shape)}")
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(f"cache has {len(cache)} layers, the model has n_layer={len(self.layers)}")
        h = self.hidden(idx, cache)  # (B, T, C)
        logits = self.lm_head(h)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
            self.last_losses = {"main": loss.detach()}
            if self.mtp is not None:  # chapter 7: L = L_main + λ · mean_k L_MTP^k
                _, mtp_losses = self.mtp(h, idx, self.embed, self.lm_head, targets)
                self.last_losses.update({f"mtp_{k}": lk.detach() for k, lk in enumerate(mtp_losses, start=1)})
                loss = combine_losses(loss, mtp_losses, self.config.mtp_lambda)
            aux = self.aux_loss()
            if aux is not None:
                loss = loss + aux
        return logits, loss

    def hidden(self, idx: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """The representation the LM head reads: final-normed hidden states (B, T, C)."""
        x = self.embed(idx)  # (B, T, C)
        for i, block in enumerate(self.layers):
            x = block(x, None if cache is None else cache[i])
        return self.norm(x)

    def aux_loss(self) -> torch.Tensor | None:
        """Sum of the `aux_loss` tensors the submodules set in the last forward (None if there are none)."""
        terms = [m.aux_loss for m in self.modules()
                 if m is not self and isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
        return torch.stack([t.float() for t in terms]).sum() if terms else None
