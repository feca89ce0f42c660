"""A simulated FP8 GEMM: limited accumulation precision in the tensor core, and DeepSeek's promotion. (Chapter 8.)

DeepSeek-V3 (section 3.3.2) measured that the FP8 GEMMs of H800 tensor cores keep only about 14 bits of
their running sums, and saw relative errors near 2% at K = 4096. Their fix: every N_C = 128 elements of K
(four WGMMA instructions of K = 32) the tensor core's partial sum is multiplied by the two operands' scales
and added into an FP32 accumulator on the CUDA cores ("promotion"), and the tensor core starts again from 0.

How we emulate the tensor core (`limited_accumulate`), stated exactly:

1. products of FP8 codes are exact (4 significant bits times 4), and one instruction adds `chunk` = 32 of
   them exactly (float64 here);
2. the instruction's sum is added to the running partial sum and the result is **truncated** (rounded
   toward zero) to `acc_bits` significant bits (default 14: 1 implicit + 13 fraction bits);
3. with `n_c` set, every `n_c` elements the partial sum is scaled and added to an FP32 accumulator (rounded
   to float32 each time), and the partial sum restarts from zero.

`n_c=None` is the limited accumulator over the whole of K, with the scales applied at the end (what a GEMM
without promotion computes when all of K shares one scale). The per-128 scales of fine-grained
quantization force the scaling into the promotion step anyway: a 1×128 tile's scale changes every 128
elements of K, so N_C = 128 is both the accuracy fix and where the scales are applied.
"""
from __future__ import annotations

import torch

from nanoseek.quant.formats import E4M3
from nanoseek.quant.quantize import Quantized, quantize


def round_to_bits(x: torch.Tensor, bits: int, mode: str = "truncate") -> torch.Tensor:
    """x with only `bits` significant bits kept: "truncate" (toward zero) or "nearest" (ties to even)."""
    if bits < 1:
        raise ValueError(f"round_to_bits needs bits >= 1, got bits={bits}")
    m, e = torch.frexp(x)                          # x = m · 2^e, |m| in [0.5, 1)
    scaled = torch.ldexp(m, torch.full_like(m, bits))
    if mode == "truncate":
        r = torch.trunc(scaled)
    elif mode == "nearest":
        r = torch.round(scaled)
    else:
        raise ValueError(f"round_to_bits mode must be 'truncate' or 'nearest', got mode={mode!r}")
    return torch.ldexp(r, (e - bits).to(x.dtype))


def limited_accumulate(a: torch.Tensor, b: torch.Tensor, *, acc_bits: int = 14, chunk: int = 32,
                       mode: str = "truncate", align: str = "sum") -> torch.Tensor:
    """a (M, K) @ b (N, K)^T with the tensor core's limited running sum, float64 out.

    align="sum": each instruction's exact sum of `chunk` products is added to the running sum, and the
    result is cut to `acc_bits` significant bits (the plainest reading of "partial sums keep 14 bits").
    align="products": the running sum and the `chunk` products are first aligned to the largest exponent
    among them and each is cut to that grid (a fixed-point adder `acc_bits` wide), then added exactly.
    """
    if align not in ("sum", "products"):
        raise ValueError(f"limited_accumulate align must be 'sum' or 'products', got align={align!r}")
    M, K = a.shape
    a, b = a.double(), b.double()
    acc = torch.zeros(M, b.shape[0], dtype=torch.float64)
    for k0 in range(0, K, chunk):
        if align == "sum":
            part = a[:, k0:k0 + chunk] @ b[:, k0:k0 + chunk].T   # one instruction: exact (float64)
            acc = round_to_bits(acc + part, acc_bits, mode)
        else:
            terms = torch.cat([acc[..., None], a[:, None, k0:k0 + chunk] * b[None, :, k0:k0 + chunk]], -1)
            _, e = torch.frexp(terms.abs().amax(-1, keepdim=True))    # (M, N, 1) largest exponent
            ulp = torch.ldexp(torch.ones_like(e, dtype=torch.float64), (e - acc_bits).double())
            cut = torch.trunc(terms / ulp) if mode == "truncate" else torch.round(terms / ulp)
            acc = (cut * ulp).sum(-1)
    return acc


def _scales_along_k(q: Quantized, rows: int, K: int, block: int) -> torch.Tensor:
    """(rows, K/block) scales of an operand quantized along K in `block`-wide tiles."""
    if q.tile == "tensor":
        return q.scale.expand(rows, -(-K // block))
    tr, tc = q.tile
    if tc != block:
        raise ValueError(f"operand tiles {q.tile} are not {block} wide along K")
    return q.scale.repeat_interleave(tr, 0)[:rows]


def fp8_gemm_simulated(a: Quantized, b: Quantized, *, n_c: int | None = 128, acc_bits: int | None = 14,
                       chunk: int = 32, mode: str = "truncate", align: str = "sum") -> torch.Tensor:
    """C = A @ B^T from FP8 operands a (M, K) and b (N, K), each with scales per 128 along K (or per tensor).

    n_c: promotion interval (None: no promotion, one limited sum over all of K).
    acc_bits: significant bits of the tensor core's running sum (None: exact, float64).
    """
    A, B = a.data.double(), b.data.double()
    (M, K), N = A.shape, B.shape[0]
    block = 128 if n_c is None else n_c
    sa = _scales_along_k(a, M, K, block).double()        # (M, K/block)
    sb = _scales_along_k(b, N, K, block).double()        # (N, K/block)

    def tc_sum(x, y):
        if acc_bits is None:
            return x @ y.T
        return limited_accumulate(x, y, acc_bits=acc_bits, chunk=chunk, mode=mode, align=align)

    if n_c is None:  # no promotion: only valid when one scale covers all of K (per-tensor)
        if not (torch.all(sa == sa[:, :1]) and torch.all(sb == sb[:, :1])):
            raise ValueError("n_c=None needs one scale along K per row (per-tensor scales); tile scales "
                             "change every 128 elements of K and must be applied at promotion")
        return (tc_sum(A, B) * sa[:, :1] * sb[:, :1].T).float()
    out = torch.zeros(M, N, dtype=torch.float32)
    for i, k0 in enumerate(range(0, K, n_c)):
        part = tc_sum(A[:, k0:k0 + n_c], B[:, k0:k0 + n_c])          # the tensor core's partial sum
        out = out + (part * sa[:, i:i + 1] * sb[:, i:i + 1].T).float()  # promoted: FP32 add on CUDA cores
    return out


def accumulation_error(K: int, M: int = 64, N: int = 64, *, n_c: int | None = None, acc_bits: int = 14,
                       align: str = "sum", inputs: str = "uniform", seed: int = 0) -> dict[str, float]:
    """Error of the limited accumulator against the exact product of the same FP8 operands.

    inputs: "uniform" (U[0, 1): every product positive, the sum grows like K: the hard case) or "normal"
    (randn, DeepGEMM's test inputs: the sum grows like sqrt(K)). The operands are quantized per tensor to
    E4M3, so that the only error measured is the accumulator's. Returns calc_diff, the norm-wise relative
    error ||C - C_exact|| / ||C_exact|| and the largest elementwise relative error.
    """
    if inputs not in ("uniform", "normal"):
        raise ValueError(f"inputs must be 'uniform' or 'normal', got inputs={inputs!r}")
    from nanoseek.quant.quantize import calc_diff
    g = torch.Generator().manual_seed(seed)
    draw = torch.rand if inputs == "uniform" else torch.randn
    x, w = draw(M, K, generator=g), draw(N, K, generator=g)
    qa, qb = quantize(x, "tensor", E4M3), quantize(w, "tensor", E4M3)
    exact = fp8_gemm_simulated(qa, qb, n_c=128, acc_bits=None).double()
    approx = fp8_gemm_simulated(qa, qb, n_c=n_c, acc_bits=acc_bits, align=align).double()
    rel = (approx - exact).norm() / exact.norm()
    return {"calc_diff": calc_diff(approx, exact), "rel_error": float(rel),
            "max_rel_error": float(((approx - exact).abs() / exact.abs().clamp(min=1e-12)).max())}
