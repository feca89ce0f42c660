"""Rotary position embeddings (Su et al., RoFormer) in the two layouts the book meets. (Chapter 4.)

A head vector of dimension D is read as D/2 pairs, and pair i at position p is rotated by the angle
p * theta^(-2i/D). The two layouts differ only in *which* coordinates form a pair:

- ``"half"``: pair i is (x[i], x[i + D/2]), as in Llama, Qwen2 and transformers' `rotate_half`;
- ``"interleaved"``: pair i is (x[2i], x[2i+1]), as in DeepSeek's reference code and the RoFormer paper.

The two give identical attention scores once the query/key weight rows are permuted to match.
"""
from __future__ import annotations

import math

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


# ---- YaRN: DeepSeek-V2/V3's context extension (chapter 5) ------------------------------------------------


def yarn_get_mscale(scale: float = 1.0, mscale: float = 1.0) -> float:
    """YaRN's magnitude correction 0.1 · mscale · ln(scale) + 1 (1 for scale <= 1), as DeepSeek's code has it."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_cos_sin(head_dim: int, max_len: int, theta: float, factor: float, original_max_position_embeddings: int,
                 beta_fast: float = 32.0, beta_slow: float = 1.0, mscale: float = 1.0, mscale_all_dim: float = 0.0,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """YaRN (Peng et al., 2023) RoPE tables (max_len, head_dim // 2), transcribed from DeepSeek-V2/V3's reference
    `DeepseekV2YarnRotaryEmbedding`.

    Frequency pairs that turn more than `beta_fast` times over the original context keep their frequency
    (extrapolation); those that turn fewer than `beta_slow` times are divided by `factor` (interpolation); a
    linear ramp blends the ones between. cos and sin are multiplied by mscale(factor, mscale) /
    mscale(factor, mscale_all_dim); the attention's softmax scale gets `yarn_softmax_multiplier`.
    """
    if head_dim % 2:
        raise ValueError(f"rotary head_dim must be even, got head_dim={head_dim}")
    if not factor >= 1:
        raise ValueError(f"YaRN factor must be >= 1, got factor={factor}")

    def correction_dim(rotations: float) -> float:  # the dimension whose pair turns `rotations` times
        return head_dim * math.log(original_max_position_embeddings / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), head_dim - 1)
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    freq_extra = 1.0 / (theta ** exponents)  # (D/2,) the original frequencies
    freq_inter = 1.0 / (factor * theta ** exponents)  # (D/2,) interpolated
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32, device=device) - low)
            / (high - low if high != low else 0.001)).clamp(0, 1)  # 0 below `low`, 1 above `high`
    keep = 1.0 - ramp  # 1: extrapolate (high frequency), 0: interpolate
    inv_freq = freq_inter * (1 - keep) + freq_extra * keep
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32, device=device), inv_freq)  # (T, D/2)
    attention_factor = yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)
    return angles.cos() * attention_factor, angles.sin() * attention_factor


def yarn_softmax_multiplier(factor: float, mscale_all_dim: float = 0.0) -> float:
    """What YaRN multiplies MLA's softmax scale by: mscale(factor, mscale_all_dim)² (1 when mscale_all_dim is 0)."""
    return yarn_get_mscale(factor, mscale_all_dim) ** 2 if mscale_all_dim else 1.0
