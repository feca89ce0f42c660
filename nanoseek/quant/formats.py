"""FP8 as data: the E4M3 and E5M2 formats, decoded and encoded bit by bit. (Chapter 8.)

An FP8 number is one byte: a sign bit, `exp_bits` exponent bits and `man_bits` mantissa bits. Its value is
``(-1)^s · 2^(e - bias) · 1.m`` for a normal exponent field ``e`` and ``(-1)^s · 2^(1 - bias) · 0.m`` when
``e = 0`` (subnormals). The two formats that tensor cores read differ in how they spend the top exponent:

- **E4M3** (``torch.float8_e4m3fn``, "fn": finite, no infinity): only ``S.1111.111`` is NaN, so the largest
  value is ``1.75 · 2^8 = 448``. Used for every tensor in DeepSeek-V3's training.
- **E5M2** (``torch.float8_e5m2``): IEEE-like, ``e = 31`` holds ±inf and NaNs; largest finite 57344.

`encode` rounds to nearest, ties to even, exactly as torch's casts do on this machine, including what they
do past the largest value (torch 2.13 on a CPU saturates E4M3 at ±448 and sends E5M2 to ±inf). The tests
check both directions against torch on all 256 codes, and on every midpoint between neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FP8Format:
    name: str
    exp_bits: int
    man_bits: int
    bias: int
    has_inf: bool            # E5M2: yes (IEEE); E4M3 "fn": no, only S.1111.111 is NaN
    saturate: bool           # what a cast does past the largest value: clamp (True) or inf/NaN (False)
    torch_dtype: torch.dtype

    @property
    def max(self) -> float:
        """The largest finite value: 448 (E4M3), 57344 (E5M2)."""
        top = (1 << self.exp_bits) - 1
        if self.has_inf:   # the top exponent is inf/NaN: the largest finite uses top - 1, all mantissa ones
            return (2 - 2 ** -self.man_bits) * 2.0 ** (top - 1 - self.bias)
        # no inf: the top exponent is a normal binade except its all-ones mantissa (NaN)
        return (2 - 2 * 2 ** -self.man_bits) * 2.0 ** (top - self.bias)

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (1 - self.bias - self.man_bits)


E4M3 = FP8Format("e4m3", 4, 3, 7, has_inf=False, saturate=True, torch_dtype=torch.float8_e4m3fn)
E5M2 = FP8Format("e5m2", 5, 2, 15, has_inf=True, saturate=False, torch_dtype=torch.float8_e5m2)
FORMATS = {"e4m3": E4M3, "e5m2": E5M2}


def get_format(fmt: "FP8Format | str") -> FP8Format:
    if isinstance(fmt, FP8Format):
        return fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown FP8 format {fmt!r}; expected one of {tuple(FORMATS)}")
    return FORMATS[fmt]


def decode(codes: torch.Tensor, fmt: "FP8Format | str" = E4M3) -> torch.Tensor:
    """uint8 codes (any shape) -> float32 values, from the bit fields (no torch FP8 cast involved)."""
    fmt = get_format(fmt)
    if codes.dtype != torch.uint8:
        raise ValueError(f"decode needs uint8 codes, got dtype={codes.dtype}")
    c = codes.to(torch.int64)
    sign = torch.where((c >> 7) & 1 == 1, -1.0, 1.0).double()
    e = (c >> fmt.man_bits) & ((1 << fmt.exp_bits) - 1)
    m = (c & ((1 << fmt.man_bits) - 1)).double()
    frac = m / (1 << fmt.man_bits)
    normal = torch.ldexp(1.0 + frac, (e - fmt.bias).double())
    sub = torch.ldexp(frac, torch.full_like(frac, 1 - fmt.bias))
    value = sign * torch.where(e == 0, sub, normal)
    top = (1 << fmt.exp_bits) - 1
    if fmt.has_inf:
        value = torch.where((e == top) & (m == 0), sign * torch.inf, value)
        value = torch.where((e == top) & (m != 0), torch.nan, value)
    else:
        value = torch.where((e == top) & (m == (1 << fmt.man_bits) - 1), torch.nan, value)
    return value.float()


def encode(x: torch.Tensor, fmt: "FP8Format | str" = E4M3, saturate: bool | None = None) -> torch.Tensor:
    """float values -> uint8 codes: round to nearest, ties to even; subnormals; NaN; overflow as torch does
    on this CPU (`saturate=None`), or forced: saturate=False gives NaN (E4M3) / inf (E5M2) past the range,
    as torch 2.11's CUDA casts do (measured on the H200: `benchmarks/results/fp8_gemm.json`)."""
    fmt = get_format(fmt)
    saturate = fmt.saturate if saturate is None else saturate
    v = x.detach().double()
    sign = torch.signbit(v).to(torch.int64) << 7
    a = v.abs()
    # the spacing of representable values around a: 2^(exponent - man_bits), never below the subnormal step
    _, exp = torch.frexp(torch.where(a > 0, a, torch.ones_like(a)))   # a = f · 2^exp, f in [0.5, 1)
    e_unbiased = torch.clamp(exp.to(torch.int64) - 1, min=1 - fmt.bias)
    step = torch.ldexp(torch.ones_like(a), (e_unbiased - fmt.man_bits).double())
    q = torch.round(a / step) * step            # torch.round is round-half-to-even; exact in float64
    over = (q > fmt.max) | torch.isinf(a)
    q = torch.where(over, torch.full_like(q, fmt.max), q)
    # bit fields of q (finite, <= max)
    _, qexp = torch.frexp(torch.where(q > 0, q, torch.ones_like(q)))
    qe = qexp.to(torch.int64) - 1
    is_normal = (q >= fmt.min_normal)
    e_field = torch.where(is_normal, qe + fmt.bias, torch.zeros_like(qe))
    m_scaled = torch.where(is_normal, torch.ldexp(q, (-qe).double()) - 1.0, q / fmt.min_normal)
    m_field = torch.round(m_scaled * (1 << fmt.man_bits)).to(torch.int64)
    code = sign | (e_field << fmt.man_bits) | m_field
    top = (1 << fmt.exp_bits) - 1
    if not saturate:  # overflow: inf where the format has one, else NaN
        overflow_code = (top << fmt.man_bits) if fmt.has_inf else (top << fmt.man_bits) | ((1 << fmt.man_bits) - 1)
        code = torch.where(over, sign | overflow_code, code)
    nan_code = (top << fmt.man_bits) | ((1 << fmt.man_bits) - 1)
    code = torch.where(torch.isnan(v), torch.full_like(code, nan_code), code)
    return code.to(torch.uint8)


def cast_fp8(x: torch.Tensor, fmt: "FP8Format | str" = E4M3, saturate: bool = False) -> torch.Tensor:
    """x cast to the torch FP8 dtype with an explicit overflow rule (default: NaN/inf past the range, as on a
    GPU), so code that forgets to clamp fails the same way on every machine."""
    fmt = get_format(fmt)
    return encode(x, fmt, saturate=saturate).view(fmt.torch_dtype)


def all_values(fmt: "FP8Format | str" = E4M3) -> torch.Tensor:
    """The 256 values of a format, code by code (NaN and inf included)."""
    return decode(torch.arange(256, dtype=torch.int64).to(torch.uint8), fmt)


def positive_grid(fmt: "FP8Format | str" = E4M3) -> torch.Tensor:
    """The finite values >= 0, sorted: the grid a cast rounds onto."""
    v = all_values(fmt)
    return torch.unique(v[torch.isfinite(v) & (v >= 0)])
