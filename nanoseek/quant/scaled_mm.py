"""Real FP8 GEMMs on a Hopper GPU through `torch._scaled_mm`: per tensor, and DeepSeek's blockwise. (Chapter 8.)

`scaled_mm(a, b)` computes a (M, K) @ b (N, K)ᵀ from `Quantized` operands. The layouts cuBLAS wants (found
on the H200, recorded in shared TOOLCHAIN.md): `a` row-major with its (M, K/128) scales column-major; `b`
passed as the transpose of its row-major (N, K) codes, with its (N/128, K/128) block scales passed as their
transpose, strides (1, K/128). cuBLAS wants K/128 to be a multiple of 4 (16-byte aligned scale rows): with
K/128 = 6 it computed garbage without an error, and torch 2.11 refuses padded strides, so K is zero-padded
to a multiple of 512 here when it is not. 1×128 scales for `b` (the weight-gradient GEMM, both operands per token
tile) go the same way: (N, K/128) transposed.
"""
from __future__ import annotations

import torch

from nanoseek.quant.quantize import Quantized


FALLBACKS: dict[str, str] = {}  # GEMMs cuBLAS refused and the Triton kernel ran instead, with the error


def _col_major(s: torch.Tensor) -> torch.Tensor:
    return s.t().contiguous().t()


def _pad_k(q: Quantized, kb: int) -> Quantized:
    """q with K zero-padded to kb·128 columns (scales padded with 1: they multiply zeros)."""
    rows, K = q.data.shape
    data = torch.zeros(rows, kb * 128, dtype=q.data.dtype, device=q.data.device)
    data[:, :K] = q.data
    scale = torch.nn.functional.pad(q.scale, (0, kb - q.scale.shape[1]), value=1.0)
    return Quantized(data, scale, q.tile)


def scaled_mm(a: Quantized, b: Quantized, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """a (M, K) @ b (N, K)ᵀ with torch._scaled_mm; a per tensor or 1×128, b per tensor, 128×128 or 1×128."""
    if a.data.device.type != "cuda":
        raise ValueError("scaled_mm needs CUDA tensors (an FP8-capable GPU); use backend='sim' on a CPU")
    if a.tile == "tensor" and b.tile == "tensor":
        return torch._scaled_mm(a.data, b.data.t(), scale_a=a.scale.reshape(1, 1).float(),
                                scale_b=b.scale.reshape(1, 1).float(), out_dtype=out_dtype)
    if a.tile != (1, 128) or b.tile not in ((128, 128), (1, 128)):
        raise ValueError(f"blockwise scaled_mm takes a in 1x128 tiles and b in 128x128 or 1x128 tiles, got "
                         f"a.tile={a.tile}, b.tile={b.tile}")
    kb = a.scale.shape[1]
    if kb % 4:  # cuBLAS needs the scales' leading dimension K/128 16-byte aligned: pad K to a multiple of 512
        a, b = _pad_k(a, -(-kb // 4) * 4), _pad_k(b, -(-kb // 4) * 4)
    # 128x128 blocks: (K/128, N/128) with strides (1, K/128); 1x128 tiles: (K/128, N) with N contiguous
    scale_b = b.scale.t() if b.tile == (128, 128) else b.scale.t().contiguous()
    try:
        return torch._scaled_mm(a.data, b.data.t(), scale_a=_col_major(a.scale), scale_b=scale_b,
                                out_dtype=out_dtype)
    except RuntimeError as err:
        if b.tile == (1, 128):  # 1x128 x 1x128 (Wgrad): not every torch offers it; the Triton kernel does
            from nanoseek.kernels.fp8_gemm import fp8_gemm_quantized
            FALLBACKS.setdefault("1x128 x 1x128", str(err).splitlines()[0][:200])
            return fp8_gemm_quantized(a, b, out_dtype=out_dtype)
        if out_dtype == torch.bfloat16:
            raise
        # blockwise cuBLAS may offer only BF16 output: compute in BF16, hand back the dtype asked for
        return torch._scaled_mm(a.data, b.data.t(), scale_a=_col_major(a.scale), scale_b=scale_b,
                                out_dtype=torch.bfloat16).to(out_dtype)
