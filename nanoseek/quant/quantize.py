"""Scaled FP8 quantization at four granularities, as DeepSeek-V3 trains with them. (Chapter 8.)

A tensor is cut into tiles; each tile gets one FP32 scale ``s = amax / 448`` (amax clamped at 1e-4 so an
all-zero tile does not divide by zero), is divided by it, **clamped** to ±448 and cast to E4M3. The tiles:

- ``"tensor"``: one scale for everything (the classic recipe; one outlier sets everyone's scale);
- ``(1, 128)``: per token and 128 channels: activations in the forward pass, and activation gradients
  (DeepGEMM's ``per_token_cast_to_fp8``);
- ``(128, 1)``: 128 tokens of one channel: the transposed activations the weight gradient reads;
- ``(128, 128)``: weight blocks (DeepGEMM's ``per_block_cast_to_fp8``); also the paper's *failed* choice
  for activation gradients.

Shapes that are not multiples of the tile are padded with zeros; the padding counts in no tile's amax
beyond its own zeros (zeros never raise an amax), and is cut off again. The cast multiplies by the
reciprocal of the scale, ``x * (1 / s)``, as DeepGEMM does, so the codes are bitwise DeepGEMM's (tested).
With ``power_of_two=True`` the scale is rounded up to a power of two (DeepGEMM's ``ue8m0`` option), which
makes scaling exact in binary. A scale passed in (``scale=``, e.g. delayed scaling from an earlier step's
amax) can leave values beyond ±448: the clamp is what keeps them finite.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoseek.quant.formats import E4M3, FP8Format, get_format

AMAX_EPS = 1e-4
Tile = "tuple[int, int] | str"


@dataclass
class Quantized:
    """FP8 codes (a torch FP8 tensor, the shape of the input) and their FP32 scales, one per tile."""

    data: torch.Tensor      # (M, N) float8
    scale: torch.Tensor     # (ceil(M/tr), ceil(N/tc)) float32; () for "tensor"
    tile: tuple[int, int] | str

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self, dtype)


def parse_tile(tile) -> "tuple[int, int] | str":
    if tile == "tensor":
        return tile
    if (isinstance(tile, (tuple, list)) and len(tile) == 2
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in tile)):
        return (int(tile[0]), int(tile[1]))
    raise ValueError(f"tile must be 'tensor' or (rows, cols) of positive ints, got tile={tile!r}")


def _ceil_pow2(s: torch.Tensor) -> torch.Tensor:
    """Smallest power of two >= s (s > 0): DeepGEMM's ceil_to_ue8m0."""
    m, e = torch.frexp(s)
    return torch.ldexp(torch.ones_like(s), torch.where(m == 0.5, e - 1, e).to(s.dtype))


def compute_scale(amax: torch.Tensor, fmt: FP8Format = E4M3, power_of_two: bool = False) -> torch.Tensor:
    """s = max(amax, 1e-4) / fmt.max (optionally rounded up to a power of two)."""
    s = amax.float().clamp(min=AMAX_EPS) / fmt.max
    return _ceil_pow2(s) if power_of_two else s


def quantize(x: torch.Tensor, tile=(1, 128), fmt: "FP8Format | str" = E4M3, *, power_of_two: bool = False,
             scale: torch.Tensor | None = None) -> Quantized:
    """Quantize a 2-D tensor with one scale per tile (or one for the whole tensor)."""
    fmt, tile = get_format(fmt), parse_tile(tile)
    if x.dim() != 2:
        raise ValueError(f"quantize needs a 2-D tensor, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("quantize got NaN or inf in its input: an amax scale would be meaningless")
    if tile == "tensor":
        s = compute_scale(x.abs().amax(), fmt, power_of_two) if scale is None else scale.float().reshape(())
        y = (x.float() * (1.0 / s)).clamp(-fmt.max, fmt.max)
        return Quantized(y.to(fmt.torch_dtype), s, tile)
    M, N = x.shape
    tr, tc = tile
    Mp, Np = -(-M // tr) * tr, -(-N // tc) * tc
    xp = x.new_zeros(Mp, Np)
    xp[:M, :N] = x
    view = xp.view(Mp // tr, tr, Np // tc, tc)                       # (tiles down, tr, tiles across, tc)
    if scale is None:
        s = compute_scale(view.abs().float().amax(dim=(1, 3)), fmt, power_of_two)  # (Mp/tr, Np/tc)
    else:
        s = scale.float()
        if s.shape != (Mp // tr, Np // tc):
            raise ValueError(f"scale has shape {tuple(s.shape)}, tiles {tile} of a {M}x{N} tensor need "
                             f"{(Mp // tr, Np // tc)}")
    y = (view * (1.0 / s)[:, None, :, None]).clamp(-fmt.max, fmt.max)
    data = y.to(fmt.torch_dtype).view(Mp, Np)[:M, :N].contiguous()
    return Quantized(data, s, tile)


def dequantize(q: Quantized, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """codes · scale, tile by tile (DeepSeek-V3's ``weight_dequant`` for 128x128 blocks)."""
    x = q.data.float()
    if q.tile == "tensor":
        return (x * q.scale).to(dtype)
    tr, tc = q.tile
    M, N = x.shape
    s = q.scale.repeat_interleave(tr, 0)[:M].repeat_interleave(tc, 1)[:, :N]
    return (x * s).to(dtype)


def fake_quantize(x: torch.Tensor, tile=(1, 128), fmt: "FP8Format | str" = E4M3, *,
                  power_of_two: bool = False) -> torch.Tensor:
    """Quantize then dequantize: the exact values an FP8 GEMM multiplies, as float32."""
    return quantize(x, tile, fmt, power_of_two=power_of_two).dequantize()


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10·log10(Σx² / Σ(x - x̂)²)."""
    x, x_hat = x.detach().double(), x_hat.detach().double()
    noise = (x - x_hat).pow(2).sum()
    return float(10 * torch.log10(x.pow(2).sum() / noise.clamp(min=1e-300)))


def calc_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """DeepGEMM's test measure: 1 - 2Σxy / Σ(x² + y²), in float64 (0 when equal; < 1e-3 passes)."""
    x, y = x.detach().double(), y.detach().double()
    return float(1 - 2 * (x * y).sum() / (x * x + y * y).sum())
