"""Rotary position embeddings (Su et al., RoFormer) in the two layouts the book meets. (Chapter 4.)

A head vector of dimension D is read as D/2 pairs, and pair i at position p is rotated by the angle
p * theta^(-2i/D). The two layouts differ only in *which* coordinates form a pair:

- ``"half"``: pair i is (x[i], x[i + D/2]), as in Llama, Qwen2 and transformers' `rotate_half`;
- ``"interleaved"``: pair i is (x[2i], x[2i+1]), as in DeepSeek's reference code and the RoFormer paper.

The two give identical attention scores once the query/key weight rows are permuted to match.
"""
from __future__ import annotations

import torch

LAYOUTS = ("half", "interleaved")


def rope_cos_sin(
    head_dim: int,
    max_len: int,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (max_len, head_dim // 2), in float32."""
    if head_dim % 2:
        raise ValueError(f"rotary head_dim must be even, got head_dim={head_dim}")
    # written as 1 / theta^(2i/D), exactly as transformers computes it, so the tables agree bit for bit
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32, device=device), inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "half") -> torch.Tensor:
    """Rotate x (..., T, D) by the tables cos, sin (T, D/2) already sliced to x's positions."""
    if layout not in LAYOUTS:
        raise ValueError(f"rope layout={layout!r} is not one of {LAYOUTS}")
    dtype = x.dtype
    x = x.float()
    if layout == "half":
        x1, x2 = x.chunk(2, dim=-1)
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    else:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    return out.to(dtype)


def interleave_permutation(head_dim: int) -> torch.Tensor:
    """Index p (head_dim,) with W_interleaved = W_half[p] for one head's q/k weight rows.

    Coordinate 2i of the interleaved layout is coordinate i of the half layout and 2i+1 is i + D/2, so both
    layouts rotate the same pairs by the same angles and the attention scores q·k agree.
    """
    if head_dim % 2 or head_dim < 2:
        raise ValueError(f"rotary head_dim must be even and >= 2, got head_dim={head_dim}")
    half = head_dim // 2
    return torch.stack((torch.arange(half), torch.arange(half) + half), dim=-1).flatten()
