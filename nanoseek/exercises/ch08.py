"""Checkers for chapter 8's exercises (FP8: decoding a byte, 1×128 tile quantization, promotion)."""
from __future__ import annotations

import math
from typing import Callable

import torch

from nanoseek.exercises import checking, expect
from nanoseek.quant import E4M3, fp8_gemm_simulated, limited_accumulate, quantize
from nanoseek.quant.formats import decode


def check_decode_e4m3(decode_e4m3: Callable[[int], float]) -> bool:
    """decode_e4m3(byte 0..255) -> the E4M3 value as a float (NaN for the two NaN codes)."""

    def checks():
        want = decode(torch.arange(256).to(torch.uint8), E4M3).tolist()
        for code in range(256):
            got = decode_e4m3(code)
            expect(isinstance(got, (int, float)), f"return a Python float, got {type(got).__name__}")
            w = want[code]
            hint = ""
            if code & 0x78 == 0 and code & 0x07:
                hint = " (exponent field 0 is subnormal: 0.mmm · 2^(1-7), no implicit 1)"
            elif code & 0x7F == 0x7F:
                hint = " (S.1111.111 is NaN in E4M3fn; there is no infinity)"
            elif code & 0x78 == 0x78:
                hint = " (exponent 15 is an ordinary binade in E4M3fn, not inf/NaN as in IEEE formats)"
            if math.isnan(w):
                expect(math.isnan(got), f"code {code:#04x} ({code:08b}) is NaN, got {got}{hint}")
            else:
                expect(got == w, f"code {code:#04x} ({code:08b}) is {w}, got {got}{hint}"
                       + (" (the bias of E4M3 is 7)" if w != 0 and got in (w / 2, w * 2) else ""))

    return checking("decode an E4M3 byte", checks)


def check_quantize_1x128(quantize_1x128: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """quantize_1x128(x (M, N), scale=None) -> (codes (M, N) float8_e4m3fn, scales (M, ceil(N/128)) fp32)."""

    def checks():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(6, 300, generator=g)
        x[1, 5] = 50.0                                  # an outlier: only its own tile should notice
        x[:, 256:] *= 0.01                              # the last, partial tile holds small values
        x[4] = 0.0                                      # an all-zero row
        ref = quantize(x, (1, 128))
        out = quantize_1x128(x.clone())
        expect(isinstance(out, tuple) and len(out) == 2, "return (codes, scales)")
        q, s = out
        expect(isinstance(s, torch.Tensor) and tuple(s.shape) == (6, 3),
               f"scales: one per row and 128 columns, shape (6, 3) for x of shape (6, 300); got "
               f"{tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}")
        expect(isinstance(q, torch.Tensor) and q.dtype == torch.float8_e4m3fn and q.shape == x.shape,
               f"codes: a float8_e4m3fn tensor of shape {tuple(x.shape)}")
        s = s.float()
        expect(torch.isfinite(s).all() and (s > 0).all(),
               "every scale must be finite and > 0: clamp amax at 1e-4 before dividing (row 4 is all zeros)")
        expect(not torch.allclose(s, 1 / ref.scale, rtol=1e-4),
               "the scales are inverted: s = amax / 448, and the codes are x / s")
        expect(torch.allclose(s, ref.scale, rtol=1e-5),
               f"row 0's scales should be {ref.scale[0].tolist()}, got {s[0].tolist()}"
               + (" (the last tile's amax must see only its own 44 values and zero padding)"
                  if torch.allclose(s[:, :2], ref.scale[:, :2], rtol=1e-5) else ""))
        qf = q.float()
        expect(not torch.isnan(qf).any(), "NaN codes: use the scales amax / 448 (and clamp amax at 1e-4)")
        steps = (q.view(torch.uint8).int() - ref.data.view(torch.uint8).int()).abs()
        expect(steps.max() <= 1 and (steps > 0).float().mean() < 0.01,
               "codes differ from x / scale rounded to E4M3 (divide each tile by its own scale)")
        # a stale scale (delayed scaling): values beyond 448·scale must saturate, not become NaN
        stale = ref.scale / 4
        q2, s2 = quantize_1x128(x.clone(), scale=stale.clone())
        expect(torch.allclose(s2.float(), stale), "with scale= given, use it (and return it)")
        expect(not torch.isnan(q2.float()).any(),
               "with a stale scale, values past ±448 became NaN: clamp to ±448 before the cast (the GPU's "
               "cast does not saturate; `cast_fp8` behaves the same everywhere)")
        want2 = quantize(x, (1, 128), scale=stale)
        steps2 = (q2.view(torch.uint8).int() - want2.data.view(torch.uint8).int()).abs()
        expect(steps2.max() <= 1, "with a given scale the codes should be clamp(x / scale, -448, 448)")

    return checking("quantize 1×128 tiles", checks)


def check_promoted_gemm(promoted_gemm: Callable[..., torch.Tensor]) -> bool:
    """promoted_gemm(A (M, K), sa (M, K/128), B (N, K), sb (N, K/128), tensor_core) -> C (M, N) float32.

    A and B hold FP8 values (unscaled codes, as float64); tensor_core(a, b) is the limited-precision MMA
    sum a @ bᵀ over a slice of K. Promotion: every 128 of K, scale the partial sum and add it in FP32.
    """

    def checks():
        g = torch.Generator().manual_seed(0)
        M, N, K = 16, 12, 2048
        x, w = torch.rand(M, K, generator=g), torch.rand(N, K, generator=g)
        x[:, 1024:] *= 8                                 # the scales change along K
        a, b = quantize(x, (1, 128)), quantize(w, (1, 128))

        def tensor_core(p, q):
            return limited_accumulate(p, q, acc_bits=14, align="products")

        want = fp8_gemm_simulated(a, b, n_c=128, acc_bits=14, align="products")
        exact = (a.dequantize().double() @ b.dequantize().double().T)
        got = promoted_gemm(a.data.double(), a.scale.clone(), b.data.double(), b.scale.clone(), tensor_core)
        expect(isinstance(got, torch.Tensor) and got.shape == (M, N), f"return a ({M}, {N}) tensor")
        rel = float((got.double() - exact).norm() / exact.norm())
        expect(torch.allclose(got.double(), want.double(), rtol=1e-5),
               f"relative error against the exact product is {rel:.2%}; promoting every 128 gives "
               f"{float((want.double() - exact).norm() / exact.norm()):.3%}. Call tensor_core on each 128-wide "
               "slice of K, multiply its result by that slice's scales (sa[:, i] for rows, sb[:, i] for "
               "columns) and add it into an FP32 accumulator")

    return checking("promotion every 128 elements of K", checks)
