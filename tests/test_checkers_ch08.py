"""Chapter 8's checkers reject plausible wrong answers and accept the right ones."""
import math

import torch
import torch.nn.functional as F

from nanoseek.exercises.ch08 import check_decode_e4m3, check_promoted_gemm, check_quantize_1x128
from nanoseek.quant import cast_fp8


# ---- decode an E4M3 byte -----------------------------------------------------------------------------------------

def decode_right(byte: int) -> float:
    s, e, m = byte >> 7, (byte >> 3) & 0xF, byte & 0x7
    if e == 0xF and m == 0x7:
        return math.nan
    v = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
    return -v if s else v


def decode_no_subnormals(byte: int) -> float:
    s, e, m = byte >> 7, (byte >> 3) & 0xF, byte & 0x7
    if e == 0xF and m == 0x7:
        return math.nan
    v = (1 + m / 8) * 2.0 ** (e - 7)
    return -v if s else v


def decode_bias_8(byte: int) -> float:
    s, e, m = byte >> 7, (byte >> 3) & 0xF, byte & 0x7
    if e == 0xF and m == 0x7:
        return math.nan
    v = (m / 8) * 2.0 ** -7 if e == 0 else (1 + m / 8) * 2.0 ** (e - 8)
    return -v if s else v


def decode_ieee_top(byte: int) -> float:  # exponent 15 as inf/NaN, as in IEEE formats
    s, e, m = byte >> 7, (byte >> 3) & 0xF, byte & 0x7
    if e == 0xF:
        return (-math.inf if s else math.inf) if m == 0 else math.nan
    v = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
    return -v if s else v


def decode_no_nan(byte: int) -> float:  # 0x7F read as 480
    s, e, m = byte >> 7, (byte >> 3) & 0xF, byte & 0x7
    v = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
    return -v if s else v


def decode_unsigned(byte: int) -> float:
    return abs(decode_right(byte))


def test_decode_checker():
    assert check_decode_e4m3(decode_right)
    for wrong in (decode_no_subnormals, decode_bias_8, decode_ieee_top, decode_no_nan, decode_unsigned):
        assert not check_decode_e4m3(wrong), wrong.__name__


# ---- quantize 1×128 tiles ----------------------------------------------------------------------------------------

def _tiles(x):
    M, N = x.shape
    pad = (-N) % 128
    return F.pad(x, (0, pad)).view(M, -1, 128), N


def q_right(x, scale=None):
    t, N = _tiles(x)
    s = t.abs().amax(-1).clamp(min=1e-4) / 448 if scale is None else scale
    y = (t / s[..., None]).clamp(-448, 448)
    return cast_fp8(y).view(x.shape[0], -1)[:, :N], s


def q_no_clamp(x, scale=None):
    t, N = _tiles(x)
    s = t.abs().amax(-1).clamp(min=1e-4) / 448 if scale is None else scale
    return cast_fp8(t / s[..., None]).view(x.shape[0], -1)[:, :N], s


def q_inverted(x, scale=None):
    t, N = _tiles(x)
    s = 448 / t.abs().amax(-1).clamp(min=1e-4) if scale is None else scale
    return cast_fp8((t * s[..., None]).clamp(-448, 448)).view(x.shape[0], -1)[:, :N], s


def q_pad_with_ones(x, scale=None):  # the padding counted in amax
    M, N = x.shape
    t = F.pad(x, (0, (-N) % 128), value=1.0).view(M, -1, 128)
    s = t.abs().amax(-1).clamp(min=1e-4) / 448 if scale is None else scale
    return cast_fp8((t / s[..., None]).clamp(-448, 448)).view(M, -1)[:, :N], s


def q_across_rows(x, scale=None):  # tiles cut from the flattened tensor: a tile spans two rows
    M, N = x.shape
    flat = F.pad(x.reshape(-1), (0, (-x.numel()) % 128)).view(-1, 128)
    amax = flat.abs().amax(-1).clamp(min=1e-4)
    per_elem = amax.repeat_interleave(128)[: x.numel()].view(M, N)
    s_full = per_elem / 448
    s = _tiles(s_full)[0].amax(-1) if scale is None else scale
    return cast_fp8((x / s_full).clamp(-448, 448)), s


def q_no_eps(x, scale=None):
    t, N = _tiles(x)
    s = t.abs().amax(-1) / 448 if scale is None else scale
    return cast_fp8((t / s[..., None]).clamp(-448, 448)).view(x.shape[0], -1)[:, :N], s


def q_per_row(x, scale=None):
    t, N = _tiles(x)
    s = t.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-4).expand(-1, t.shape[1], 1)[..., 0] / 448 \
        if scale is None else scale
    return cast_fp8((t / s[..., None]).clamp(-448, 448)).view(x.shape[0], -1)[:, :N], s


def q_e4m3_max_240(x, scale=None):  # the "fnuz" variant's maximum
    t, N = _tiles(x)
    s = t.abs().amax(-1).clamp(min=1e-4) / 240 if scale is None else scale
    return cast_fp8((t / s[..., None]).clamp(-448, 448)).view(x.shape[0], -1)[:, :N], s


def test_quantize_checker():
    assert check_quantize_1x128(q_right)
    for wrong in (q_no_clamp, q_inverted, q_pad_with_ones, q_across_rows, q_no_eps, q_per_row, q_e4m3_max_240):
        assert not check_quantize_1x128(wrong), wrong.__name__


# ---- promotion ---------------------------------------------------------------------------------------------------

def gemm_right(A, sa, B, sb, tensor_core):
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float32)
    for i, k0 in enumerate(range(0, A.shape[1], 128)):
        part = tensor_core(A[:, k0:k0 + 128], B[:, k0:k0 + 128])
        out += (part * sa[:, i:i + 1] * sb[:, i].unsqueeze(0)).float()
    return out


def gemm_no_promotion(A, sa, B, sb, tensor_core):  # one tensor-core sum over all of K, scales after
    As = A * sa.repeat_interleave(128, 1)
    Bs = B * sb.repeat_interleave(128, 1)
    return tensor_core(As, Bs).float()


def gemm_every_512(A, sa, B, sb, tensor_core):
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float32)
    for k0 in range(0, A.shape[1], 512):
        i = k0 // 128
        part = tensor_core(A[:, k0:k0 + 512], B[:, k0:k0 + 512])
        out += (part * sa[:, i:i + 1] * sb[:, i].unsqueeze(0)).float()
    return out


def gemm_mean_scales(A, sa, B, sb, tensor_core):
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float32)
    for k0 in range(0, A.shape[1], 128):
        out += tensor_core(A[:, k0:k0 + 128], B[:, k0:k0 + 128]).float()
    return out * sa.mean(1, keepdim=True) * sb.mean(1).unsqueeze(0)


def gemm_scale_axis_swapped(A, sa, B, sb, tensor_core):
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float32)
    n = A.shape[1] // 128
    for i, k0 in enumerate(range(0, A.shape[1], 128)):
        part = tensor_core(A[:, k0:k0 + 128], B[:, k0:k0 + 128])
        out += (part * sa[:, n - 1 - i:n - i] * sb[:, n - 1 - i].unsqueeze(0)).float()
    return out


def test_promotion_checker():
    assert check_promoted_gemm(gemm_right)
    for wrong in (gemm_no_promotion, gemm_every_512, gemm_mean_scales, gemm_scale_axis_swapped):
        assert not check_promoted_gemm(wrong), wrong.__name__
