"""The modern decoder: RMSNorm, rotary attention with n_kv_head (MHA/GQA/MQA), SwiGLU. (Chapter 4.)

`DecoderConfig` expresses Qwen2's architecture exactly (q/k/v biases, no o-proj bias, tied or untied
embeddings, rope theta, RMSNorm eps), so `nanoseek.interop` can move weights to and from transformers'
`Qwen2ForCausalLM`. Later chapters plug into two switch points:

- ``attention``: ``"gqa"`` builds `nanoseek.nn.attention.Attention` (chapter 4); chapter 5 adds ``"mla"``.
- ``ffn``: ``"dense"`` builds `nanoseek.nn.mlp.SwiGLU` (chapter 4); chapter 6 adds ``"moe"``.

Each switch is a small builder function in `ATTENTION_BUILDERS` / `FFN_BUILDERS`: adding a variant is one
function and one dictionary entry (plus its config fields and their validation).

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

from nanoseek.nn.attention import Attention
from nanoseek.nn.mlp import SwiGLU
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
    attention: str = "gqa"       # switch point: chapter 5 adds "mla"
    ffn: str = "dense"           # switch point: chapter 6 adds "moe"
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "n_kv_head", "intermediate_size", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DecoderConfig.{name} must be an integer >= 1, got {name}={value!r}")
        if self.head_dim is None:
            if self.n_embd % self.n_head:
                raise ValueError(f"DecoderConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                                 "set head_dim explicitly")
            self.head_dim = self.n_embd // self.n_head
        if isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int) or self.head_dim < 2 \
                or self.head_dim % 2:
            raise ValueError(f"DecoderConfig.head_dim must be an even integer >= 2 (rotary pairs), "
                             f"got head_dim={self.head_dim!r}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"DecoderConfig.n_kv_head={self.n_kv_head} must divide n_head={self.n_head}")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 0):
            raise ValueError(f"DecoderConfig.rope_theta must be > 0, got rope_theta={self.rope_theta!r}")
        if self.rope_layout not in LAYOUTS:
            raise ValueError(f"DecoderConfig.rope_layout={self.rope_layout!r} is not one of {LAYOUTS}")
        if not (isinstance(self.norm_eps, (int, float)) and self.norm_eps > 0):
            raise ValueError(f"DecoderConfig.norm_eps must be > 0, got norm_eps={self.norm_eps!r}")
        if not (isinstance(self.init_std, (int, float)) and self.init_std > 0):
            raise ValueError(f"DecoderConfig.init_std must be > 0, got init_std={self.init_std!r}")
        if self.attention not in ATTENTION_BUILDERS:
            raise ValueError(f"DecoderConfig.attention={self.attention!r} is not one of {tuple(ATTENTION_BUILDERS)}")
        if self.ffn not in FFN_BUILDERS:
            raise ValueError(f"DecoderConfig.ffn={self.ffn!r} is not one of {tuple(FFN_BUILDERS)}")


# ---- switch points: (config, layer index) -> module -------------------------------------------------------

def build_gqa(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    return Attention(cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim, max_seq_len=cfg.max_seq_len,
                     rope_theta=cfg.rope_theta, rope_layout=cfg.rope_layout, qkv_bias=cfg.qkv_bias)


def build_dense(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    return SwiGLU(cfg.n_embd, cfg.intermediate_size)


ATTENTION_BUILDERS: dict[str, Callable[[DecoderConfig, int], nn.Module]] = {"gqa": build_gqa}
FFN_BUILDERS: dict[str, Callable[[DecoderConfig, int], nn.Module]] = {"dense": build_dense}


def make_attention(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    """The attention of layer `layer_idx`: any module with forward(x, cache) and new_cache(...)."""
    return ATTENTION_BUILDERS[cfg.attention](cfg, layer_idx)


def make_ffn(cfg: DecoderConfig, layer_idx: int) -> nn.Module:
    """The feed-forward of layer `layer_idx` (a MoE may keep the first layers dense)."""
    return FFN_BUILDERS[cfg.ffn](cfg, layer_idx)


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
        x = self.embed(idx)  # (B, T, C)
        for i, block in enumerate(self.layers):
            x = block(x, None if cache is None else cache[i])
        logits = self.lm_head(self.norm(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
            aux = self.aux_loss()
            if aux is not None:
                loss = loss + aux
        return logits, loss

    def aux_loss(self) -> torch.Tensor | None:
        """Sum of the `aux_loss` tensors the submodules set in the last forward (None if there are none)."""
        terms = [m.aux_loss for m in self.modules()
                 if m is not self and isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
        return torch.stack([t.float() for t in terms]).sum() if terms else None
