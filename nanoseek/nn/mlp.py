"""The SwiGLU feed-forward block (Shazeer, 2020) of Llama, Qwen2 and DeepSeek. (Chapter 4.)"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); the names match transformers' `gate_proj`, `up_proj`, `down_proj`."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., C) -> (..., C)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
