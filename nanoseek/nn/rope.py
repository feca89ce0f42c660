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


def rope_full_tables(cos: torch.Tensor, sin: torch.Tensor, layout: str = "half") -> tuple[torch.Tensor, torch.Tensor]:
    """Lay the (T, D/2) tables out per coordinate: (T, D) cos, and sin with the sign of each coordinate's term.

    Pair i = (a, b) rotates to (a·cos - b·sin, b·cos + a·sin), so coordinate a takes cos_i and -sin_i (times
    its partner b), coordinate b takes cos_i and +sin_i (times a). `apply_rope_full` then needs three kernels.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"rope layout={layout!r} is not one of {LAYOUTS}")
    if layout == "half":  # pairs (i, i + D/2)
        return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)
    # pairs (2i, 2i + 1)
    return cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)


def partner(x: torch.Tensor, layout: str = "half") -> torch.Tensor:
    """Each coordinate's pair partner: (x2, x1) for the half layout, (x1, x0, x3, x2, ...) for interleaved."""
    if layout == "half":
        return x.roll(x.shape[-1] // 2, dims=-1)
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def apply_rope_full(x: torch.Tensor, cos_full: torch.Tensor, sin_full: torch.Tensor,
                    layout: str = "half") -> torch.Tensor:
    """x (..., T, D) rotated with tables from `rope_full_tables`: x·cos + partner(x)·sin, in float32."""
    dtype = x.dtype
    x = x.float()
    return (x * cos_full + partner(x, layout) * sin_full).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "half") -> torch.Tensor:
    """Rotate x (..., T, D) by the tables cos, sin (T, D/2) already sliced to x's positions.

    Each pair (a, b) of coordinates (which coordinates pair up is the layout) becomes
    (a·cos - b·sin, b·cos + a·sin): a 2-D rotation by the pair's angle at this position.
    """
    cos_full, sin_full = rope_full_tables(cos, sin, layout)
    return apply_rope_full(x, cos_full, sin_full, layout)


def interleave_permutation(head_dim: int) -> torch.Tensor:
    """Index p (head_dim,) with W_interleaved = W_half[p] for one head's q/k weight rows.

    Coordinate 2i of the interleaved layout is coordinate i of the half layout and 2i+1 is i + D/2, so both
    layouts rotate the same pairs by the same angles and the attention scores q·k agree.
    """
    if head_dim % 2 or head_dim < 2:
        raise ValueError(f"rotary head_dim must be even and >= 2, got head_dim={head_dim}")
    half = head_dim // 2
    return torch.stack((torch.arange(half), torch.arange(half) + half), dim=-1).flatten()
