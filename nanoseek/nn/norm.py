"""RMSNorm (Zhang & Sennrich, 2019), as used by Llama, Qwen2 and DeepSeek. (Chapter 4.)"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_HAS_RMS_NORM = hasattr(F, "rms_norm")  # torch 2.4+


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 as the reference implementations do."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        if dim < 1:
            raise ValueError(f"RMSNorm dim must be >= 1, got dim={dim}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.float32 and _HAS_RMS_NORM:  # the same math in one fused kernel
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
