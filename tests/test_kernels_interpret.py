"""The Triton kernels' logic on a CPU, through Triton's interpreter (`TRITON_INTERPRET=1`). (Chapters 5, 8.)

    pip install --no-deps --target /tmp/tri triton==3.6.0; pip install --no-deps --target /tmp/np22 numpy==2.2.6
    PYTHONPATH=/tmp/np22:.:/tmp/tri TRITON_INTERPRET=1 python -m pytest -q tests/test_kernels_interpret.py

(Triton 3.6's interpreter calls int() on one-element arrays, which NumPy 2.4 refuses and 2.2 only warns
about: hence the older NumPy first on the path. All pass that way on 2026-12-02.)

Skipped unless the interpreter is on (CI's CPU install has no Triton; on a GPU the real tests are
tests/test_fp8_gpu.py and tests/test_mla_triton.py). The interpreter runs each program in NumPy, so these
check indexing, masking, the tile loop of the persistent launch and the split/combine arithmetic on small
shapes; speed, shared memory, register pressure, and whether a config compiles are for the GPU run only.
"""
from __future__ import annotations

import os

import pytest
import torch

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="needs Triton's interpreter (TRITON_INTERPRET=1 and triton importable)")
triton = pytest.importorskip("triton") if os.environ.get("TRITON_INTERPRET") == "1" else None

FP8_CONFIGS = [
    dict(kernel="pointers", config=dict(BLOCK_M=32, BLOCK_N=32, GROUP_M=2)),
    dict(kernel="tma", config=dict(BLOCK_M=32, BLOCK_N=32, GROUP_M=2)),
    dict(kernel="tma", config=dict(BLOCK_M=32, BLOCK_N=64, GROUP_M=1, persistent=True)),
    dict(kernel="tma", config=dict(BLOCK_M=16, BLOCK_N=256, GROUP_M=2, persistent=True, flatten=True)),
    dict(kernel="tma", config=dict(BLOCK_M=32, BLOCK_N=128, GROUP_M=8, persistent=True, warp_specialize=True)),
    dict(kernel="tma", config=dict(BLOCK_M=32, BLOCK_N=64, GROUP_M=2, split_n=True)),
    dict(kernel="tma", config=dict(BLOCK_M=16, BLOCK_N=256, GROUP_M=2, persistent=True, split_n=True)),
    dict(kernel="tma pipelined", config=dict(BLOCK_M=32, BLOCK_N=32, GROUP_M=2)),
]


@pytest.mark.parametrize("case", FP8_CONFIGS, ids=lambda c: f"{c['kernel']}-{c['config']}")
@pytest.mark.parametrize("w_tile", [(128, 128), (1, 128)])
@pytest.mark.parametrize("col_major", [False, True])
def test_fp8_gemm_kernels_match_simulated(case, w_tile, col_major):
    from nanoseek.kernels.fp8_gemm import fp8_gemm
    from nanoseek.quant import calc_diff, fp8_mm, quantize
    g = torch.Generator().manual_seed(0)
    M, N, K = 80, 200, 384   # ragged M and N tiles; three 128-wide slices of K
    x, w = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g)
    x[3, 5] = 300.0           # one outlier: its row's scales differ from the rest
    xq, wq = quantize(x, (1, 128)), quantize(w, w_tile)
    sa = xq.scale.t().contiguous().t() if col_major else xq.scale
    out = fp8_gemm(xq.data, sa, wq.data, wq.scale, out_dtype=torch.float32, tma=case["kernel"] != "pointers",
                   pipelined=case["kernel"] == "tma pipelined", config=case["config"])
    ref = fp8_mm(xq, wq, "sim")
    assert calc_diff(out, ref) < 1e-9
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_fp8_gemm_pointer_kernel_masks_ragged_k():
    from nanoseek.kernels.fp8_gemm import fp8_gemm
    from nanoseek.quant import calc_diff, fp8_mm, quantize
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(40, 200, generator=g), torch.randn(72, 200, generator=g)   # K = 200: a ragged slice
    xq, wq = quantize(x, (1, 128)), quantize(w, (128, 128))
    out = fp8_gemm(xq.data, xq.scale, wq.data, wq.scale, out_dtype=torch.float32,
                   config=dict(BLOCK_M=16, BLOCK_N=32, GROUP_M=2))
    assert calc_diff(out, fp8_mm(xq, wq, "sim")) < 1e-9


def test_fp8_gemm_rejects_bad_config():
    from nanoseek.kernels.fp8_gemm import fp8_gemm
    from nanoseek.quant import quantize
    xq, wq = quantize(torch.randn(16, 128), (1, 128)), quantize(torch.randn(16, 128), (128, 128))
    with pytest.raises(ValueError, match="BLOCKM"):
        fp8_gemm(xq.data, xq.scale, wq.data, wq.scale, config=dict(BLOCKM=16))
    with pytest.raises(ValueError, match="persistent"):
        fp8_gemm(xq.data, xq.scale, wq.data, wq.scale, config=dict(persistent=True))


MLA_CASES = [  # (B, H, C, R, S, settings): masked heads, ragged chunks, one token, views of longer buffers
    (2, 32, 64, 16, 300, dict(block_h=16, block_n=16)),
    (1, 20, 24, 6, 70, dict(block_h=16, block_n=16, num_splits=3)),
    (2, 32, 64, 16, 300, dict(block_h=16, block_n=32, lazy_rescale=True)),
    (1, 16, 32, 8, 1, dict(block_h=16, block_n=16)),
    (2, 32, 64, 16, 300, dict(block_h=16, block_n=16, tma=True)),
    (1, 20, 48, 8, 70, dict(block_h=16, block_n=16, num_splits=3, tma=True, lazy_rescale=True)),
    (1, 16, 64, 16, 1, dict(block_h=16, block_n=16, tma=True)),
]


@pytest.mark.parametrize("B,H,C,R,S,kw", MLA_CASES)
def test_mla_decode_kernel_matches_einsum(B, H, C, R, S, kw):
    """fp16 here: the interpreter reads bf16 tensors wrongly (errors of 1e8 for the unchanged kernel too);
    on the GPU, tests/test_mla_triton.py checks bf16. Partials in float32: DEFAULTS' bfloat16 partials cost
    accuracy by design, bounded in the next test."""
    from nanoseek.kernels import mla_decode as K
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g).half()  # noqa: E731
    q, qp = 3 * r(B, H, C), r(B, H, R)          # peaky scores: the running maximum moves, rescaling matters
    ckv, kpe = r(B, S + 3, C)[:, :S], r(B, S + 3, R)[:, :S]
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), 0.3)
    out = K.mla_decode_triton(q, qp, ckv, kpe, 0.3, partial_dtype=torch.float32, **kw)
    ein = (K.mla_decode_einsum(q, qp, ckv, kpe, 0.3).float() - ref).abs().max().item()
    assert (out.float() - ref).abs().max().item() <= max(ein, 2e-3)


def test_mla_decode_bf16_partials_stay_close():
    """bf16 partial outputs (half the split traffic) cost accuracy: measured, bounded by the fp16 einsum's."""
    from nanoseek.kernels import mla_decode as K
    g = torch.Generator().manual_seed(1)
    r = lambda *shape: torch.randn(*shape, generator=g).half()  # noqa: E731
    q, qp, ckv, kpe = 3 * r(2, 32, 64), r(2, 32, 16), r(2, 300, 64), r(2, 300, 16)
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), 0.3)
    kw = dict(block_h=16, block_n=16, num_splits=4)
    fp32 = (K.mla_decode_triton(q, qp, ckv, kpe, 0.3, partial_dtype=torch.float32, **kw).float() - ref
            ).abs().max().item()
    bf16 = (K.mla_decode_triton(q, qp, ckv, kpe, 0.3, partial_dtype=torch.bfloat16, **kw).float() - ref
            ).abs().max().item()
    ein = (K.mla_decode_einsum(q, qp, ckv, kpe, 0.3).float() - ref).abs().max().item()
    assert fp32 < bf16 <= ein
    with pytest.raises(ValueError, match="partial_dtype"):
        K.mla_decode_triton(q, qp, ckv, kpe, 0.3, partial_dtype=torch.float16, **kw)


@pytest.mark.parametrize("tma", [False, True])
def test_mla_decode_ignores_garbage_past_the_context(tma):
    """A preallocated cache holds anything past the context (NaN here): no kernel may let it in."""
    from nanoseek.kernels import mla_decode as K
    g = torch.Generator().manual_seed(2)
    r = lambda *shape: torch.randn(*shape, generator=g).half()  # noqa: E731
    q, qp, c_buf, k_buf = r(2, 32, 64), r(2, 32, 16), r(2, 70, 64), r(2, 70, 16)
    c_buf[:, 40:], k_buf[:, 40:] = float("nan"), float("nan")
    ckv, kpe = c_buf[:, :40], k_buf[:, :40]
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), 0.3)
    out = K.mla_decode_triton(q, qp, ckv, kpe, 0.3, block_h=16, block_n=32, tma=tma, partial_dtype=torch.float32)
    assert (out.float() - ref).abs().max().item() < 2e-3
