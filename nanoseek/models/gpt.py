"""nanoGPT: the GPT-2-style decoder of chapter 1, in one readable file.

Follows karpathy/nanoGPT's `model.py`: learned position embeddings, pre-norm blocks with LayerNorm,
GELU MLP, weight-tied output head. Shapes: B batch, T time, C channels (n_embd), H heads, D head size.
(Chapter 1.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanoseek import validate as V


@dataclass
class GPTConfig:
    block_size: int = 256  # context length T_max
    vocab_size: int = 65
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2

    def __post_init__(self):
        for field in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            setattr(self, field, V.integer(getattr(self, field), field, "GPTConfig", minimum=1))
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                "every head needs the same size n_embd // n_head"
            )
        V.probability(self.dropout, "dropout", "GPTConfig", max_open=True)
        V.flag(self.bias, "bias", "GPTConfig")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D)
        return tuple(t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """attn_mask: None (causal) or a (B, T, T) bool mask, True where query i may see key j (packing)."""
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        causal = {"is_causal": True} if attn_mask is None else {"attn_mask": attn_mask[:, None]}  # (B, 1, T, T)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, **causal
        )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The softmax attention pattern (B, H, T, T) for input x, for plots and checks."""
        q, k, _ = self._qkv(x)
        T = x.shape[1]
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    config_class = GPTConfig

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf, 2017)
        self.apply(self._init_weights)
        # GPT-2: scale the init of residual projections by 1/sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (the tied head is the token embedding). nanoGPT subtracts wpe for non_embedding."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`segment_ids` (B, T), for packed batches (chapter 3): tokens attend only within their segment and
        positions restart at 0 in each, so a packed row computes what its samples would compute alone."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"sequence length T={T} is longer than the context block_size={self.config.block_size}"
            )
        mask = None
        if segment_ids is None:
            pos = torch.arange(T, device=idx.device)
        else:
            from nanoseek.data.chat import packed_attention_mask, segment_positions

            if segment_ids.shape != idx.shape:
                raise ValueError(f"segment_ids must have idx's shape {tuple(idx.shape)}, got {tuple(segment_ids.shape)}")
            pos, mask = segment_positions(segment_ids), packed_attention_mask(segment_ids)  # (B, T), (B, T, T)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, mask)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100)
        return logits, loss


def gpt_num_params(config: GPTConfig) -> int:
    """The parameter count from the config alone: the formula chapter 1 checks against the model."""
    C, V, T, L = config.n_embd, config.vocab_size, config.block_size, config.n_layer
    ln = 2 * C if config.bias else C
    b = 1 if config.bias else 0
    attn = C * 3 * C + b * 3 * C + C * C + b * C
    mlp = C * 4 * C + b * 4 * C + 4 * C * C + b * C
    per_layer = 2 * ln + attn + mlp
    return V * C + T * C + L * per_layer + ln
