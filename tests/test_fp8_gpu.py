"""Chapter 8 on a Hopper GPU: blockwise FP8 GEMMs (torch._scaled_mm and the Triton kernel) against bf16.

Skips without a CUDA GPU of compute capability >= 9.0 (and Triton for the kernel's tests).
"""
import pytest
import torch

from nanoseek.quant import FP8Linear, calc_diff, fp8_linear, quantize, transpose

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9
pytestmark = pytest.mark.skipif(not HOPPER, reason="needs a Hopper-class GPU (compute capability >= 9.0)")

SHAPES = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]  # DeepGEMM's


def _operands(M, N, K, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, generator=g)
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=g)
    return x, w, x.float() @ w.float().T


@pytest.mark.parametrize("M", [64, 128, 4096])
@pytest.mark.parametrize("N,K", SHAPES)
def test_scaled_mm_blockwise_matches_bf16(M, N, K):
    from nanoseek.quant.scaled_mm import scaled_mm
    x, w, ref = _operands(M, N, K)
    out = scaled_mm(quantize(x, (1, 128)), quantize(w, (128, 128)))
    assert calc_diff(out, ref) < 1e-3


@pytest.mark.parametrize("M", [64, 128, 4096])
@pytest.mark.parametrize("N,K", SHAPES)
def test_triton_blockwise_matches_bf16_and_scaled_mm(M, N, K):
    pytest.importorskip("triton")
    from nanoseek.kernels.fp8_gemm import fp8_gemm_quantized
    from nanoseek.quant.scaled_mm import scaled_mm
    x, w, ref = _operands(M, N, K)
    xq, wq = quantize(x, (1, 128)), quantize(w, (128, 128))
    out = fp8_gemm_quantized(xq, wq)
    assert calc_diff(out, ref) < 1e-3
    assert calc_diff(out, scaled_mm(xq, wq)) < 1e-5   # same FP8 operands: only accumulation order differs


@pytest.mark.parametrize("tma,pipelined,config", [
    (False, False, dict(BLOCK_M=128, BLOCK_N=128, GROUP_M=8, num_warps=8, num_stages=3)),
    (True, False, dict(BLOCK_M=128, BLOCK_N=128, GROUP_M=8, num_warps=8, num_stages=4)),
    (True, False, dict(BLOCK_M=128, BLOCK_N=256, GROUP_M=8, num_warps=8, num_stages=3, persistent=True)),
    (True, False, dict(BLOCK_M=64, BLOCK_N=128, GROUP_M=8, num_warps=4, num_stages=4, persistent=True)),
    (True, False, dict(BLOCK_M=128, BLOCK_N=256, GROUP_M=8, num_warps=8, num_stages=3, split_n=True)),
    (True, True, dict(BLOCK_M=64, BLOCK_N=128, GROUP_M=8, num_warps=4, num_stages=4)),
], ids=["pointers", "tma", "persistent-128x256", "persistent-64x128", "split-128x256", "pipelined"])
@pytest.mark.parametrize("M,N,K", [(4096, 7168, 2048), (200, 2112, 7168)])
def test_triton_explicit_configs_match_scaled_mm(tma, pipelined, config, M, N, K):
    """The launch settings the benchmark sweeps, column-major activation scales, ragged M."""
    pytest.importorskip("triton")
    from nanoseek.kernels.fp8_gemm import fp8_gemm
    from nanoseek.quant.scaled_mm import scaled_mm
    x, w, ref = _operands(M, N, K)
    xq, wq = quantize(x, (1, 128)), quantize(w, (128, 128))
    sa = xq.scale.t().contiguous().t()
    out = fp8_gemm(xq.data, sa, wq.data, wq.scale, tma=tma, pipelined=pipelined, config=config)
    assert calc_diff(out, ref) < 1e-3
    assert calc_diff(out, scaled_mm(xq, wq)) < 1e-5


def test_simulated_path_is_what_the_gpu_computes():
    from nanoseek.quant import fp8_mm
    x, w, _ = _operands(256, 512, 1024)
    xq, wq = quantize(x, (1, 128)), quantize(w, (128, 128))
    sim = fp8_mm(xq, wq, "sim")
    assert calc_diff(fp8_mm(xq, wq, "scaled_mm"), sim) < 1e-5


@pytest.mark.parametrize("backend", ["scaled_mm", "triton"])
def test_fp8_linear_backward_on_gpu(backend):
    if backend == "triton":
        pytest.importorskip("triton")
    torch.manual_seed(0)
    x = torch.randn(512, 1024, device="cuda", requires_grad=True)
    w = torch.randn(768, 1024, device="cuda", requires_grad=True)
    y = fp8_linear(x, w, backend=backend)
    g = torch.randn_like(y)
    y.backward(g)
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    (x @ w.T).backward(g)
    assert calc_diff(y, x @ w.T) < 1e-3
    assert calc_diff(gx, x.grad) < 1e-3
    assert calc_diff(gw, w.grad) < 1e-3


def test_wgrad_tiles_on_gpu():
    """1×128 × 1×128 (both operands per token tile): the weight-gradient GEMM dW = dyᵀ x, through
    torch._scaled_mm and through the Triton kernel."""
    from nanoseek.quant import fp8_mm
    g = torch.Generator(device="cuda").manual_seed(0)
    dy = torch.randn(4096, 1024, device="cuda", dtype=torch.bfloat16, generator=g)   # (T, N)
    x = torch.randn(4096, 2048, device="cuda", dtype=torch.bfloat16, generator=g)    # (T, K)
    dyt = transpose(quantize(dy, (128, 1)))                                           # (N, T) in 1x128 tiles
    xt = transpose(quantize(x, (128, 1)))                                             # (K, T) in 1x128 tiles
    ref = dy.float().T @ x.float()
    assert calc_diff(fp8_mm(dyt, xt, "scaled_mm"), ref) < 1e-3
    if pytest.importorskip("triton"):
        assert calc_diff(fp8_mm(dyt, xt, "triton"), ref) < 1e-3


@pytest.mark.parametrize("K", [768, 2816])
def test_scaled_mm_pads_k_that_cublas_cannot_take(K):
    """K/128 not a multiple of 4: cuBLAS computed garbage (K = 768) or refused (K = 2816) unpadded."""
    from nanoseek.quant.scaled_mm import scaled_mm
    x, w, ref = _operands(256, 1024, K)
    assert calc_diff(scaled_mm(quantize(x, (1, 128)), quantize(w, (128, 128))), ref) < 1e-3
