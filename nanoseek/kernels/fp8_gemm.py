"""A blockwise FP8 GEMM in Triton, DeepSeek-V3 style: scales applied at promotion, every 128 of K. (Chapter 8.)

C (M, N) = A (M, K) · B (N, K)ᵀ, with A's scales per 1×128 tile, (M, K/128), and B's per 128×128 block,
(N/128, K/128), or per 1×128 tile, (N, K/128) (the weight-gradient GEMM). Each program owns a
BLOCK_M × BLOCK_N tile of C and walks K in steps of 128 (BLOCK_K = 128, the scale granularity):

    for each 128-wide slice k of K:
        partial = tl.dot(A[:, k], B[:, k]ᵀ)              # FP8 tensor-core MMA, a fresh FP32 partial sum
        acc    += partial · sa[:, k] · sb[k, :]          # promotion: scale and add on the CUDA cores

That loop *is* DeepSeek's fix of section 3.3.2: the tensor core never accumulates more than N_C = 128
elements before its partial sum is scaled and added into the full-precision accumulator. Programs are
visited in groups of GROUP_M rows of tiles so that neighbouring programs share B in L2 (the ordering of
Triton's matmul tutorial). On a machine without Triton or a CUDA GPU, `fp8_gemm` raises; the package's
simulated path (`nanoseek.quant.linear`, backend "sim") computes the same thing anywhere.
"""
from __future__ import annotations

import torch

try:  # Triton ships with CUDA builds of torch; CPU-only installs have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None
    tl = None


def _configs():
    if triton is None:
        return []
    shapes = [(128, 128, 8, 4), (128, 128, 4, 4), (128, 256, 8, 3), (256, 128, 8, 3), (64, 128, 4, 4),
              (64, 64, 4, 6)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "GROUP_M": 8}, num_warps=w, num_stages=s)
            for m, n, w, s in shapes]


if triton is not None:

    @triton.autotune(configs=_configs(), key=["M", "N", "K"])
    @triton.jit
    def _fp8_gemm_kernel(A, B, C, SA, SB, M, N, K,
                         stride_am, stride_bn, stride_cm, stride_sam, stride_sak, stride_sbn, stride_sbk,
                         B_BLOCK_ROWS: tl.constexpr,   # 128: B scales per 128x128 block; 1: per 1x128 tile
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
        BLOCK_K: tl.constexpr = 128
        pid = tl.program_id(0)
        grid_m, grid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        group = pid // (GROUP_M * grid_n)              # grouped order: GROUP_M tile-rows share B in L2
        first_m = group * GROUP_M
        rows = tl.minimum(grid_m - first_m, GROUP_M)
        pid_m = first_m + (pid % (GROUP_M * grid_n)) % rows
        pid_n = (pid % (GROUP_M * grid_n)) // rows
        offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M   # wrap instead of mask: stores are masked
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
        offs_k = tl.arange(0, BLOCK_K)
        a_ptrs = A + offs_m[:, None] * stride_am + offs_k[None, :]      # (BLOCK_M, BLOCK_K)
        b_ptrs = B + offs_n[None, :] * stride_bn + offs_k[:, None]      # (BLOCK_K, BLOCK_N), K-major
        sa_ptrs = SA + offs_m * stride_sam                              # (BLOCK_M,) one scale per row
        sb_ptrs = SB + (offs_n // B_BLOCK_ROWS) * stride_sbn            # (BLOCK_N,)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kb in range(0, tl.cdiv(K, BLOCK_K)):
            k_left = K - kb * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            sa = tl.load(sa_ptrs + kb * stride_sak)
            sb = tl.load(sb_ptrs + kb * stride_sbk)
            acc += tl.dot(a, b) * sa[:, None] * sb[None, :]             # promote every 128 of K
            a_ptrs += BLOCK_K
            b_ptrs += BLOCK_K
        offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        c_ptrs = C + offs_cm[:, None] * stride_cm + offs_cn[None, :]
        tl.store(c_ptrs, acc.to(C.dtype.element_ty), mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))


    @triton.autotune(configs=_configs(), key=["M", "N", "K"])
    @triton.jit
    def _fp8_gemm_tma_kernel(A, B, C, SA, SB, M, N, K,
                             stride_sam, stride_sak, stride_sbn, stride_sbk,
                             B_BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                             GROUP_M: tl.constexpr):
        """The same loop, with A, B and C moved by the tensor memory accelerator (TMA descriptors)."""
        BLOCK_K: tl.constexpr = 128
        a_desc = tl.make_tensor_descriptor(A, shape=[M, K], strides=[K, 1], block_shape=[BLOCK_M, BLOCK_K])
        b_desc = tl.make_tensor_descriptor(B, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K])
        c_desc = tl.make_tensor_descriptor(C, shape=[M, N], strides=[N, 1], block_shape=[BLOCK_M, BLOCK_N])
        pid = tl.program_id(0)
        grid_m, grid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        group = pid // (GROUP_M * grid_n)
        first_m = group * GROUP_M
        rows = tl.minimum(grid_m - first_m, GROUP_M)
        pid_m = first_m + (pid % (GROUP_M * grid_n)) % rows
        pid_n = (pid % (GROUP_M * grid_n)) // rows
        offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
        sa_ptrs = SA + offs_m * stride_sam
        sb_ptrs = SB + (offs_n // B_BLOCK_ROWS) * stride_sbn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kb in range(0, tl.cdiv(K, BLOCK_K)):
            a = a_desc.load([pid_m * BLOCK_M, kb * BLOCK_K])
            b = b_desc.load([pid_n * BLOCK_N, kb * BLOCK_K])
            sa = tl.load(sa_ptrs + kb * stride_sak)
            if B_BLOCK_ROWS == 128 and BLOCK_N <= 128:   # one weight block per tile: one FMA per element
                sb1 = tl.load(SB + (pid_n * BLOCK_N // 128) * stride_sbn + kb * stride_sbk)
                acc += tl.dot(a, b.T) * (sa * sb1)[:, None]
            else:
                sb = tl.load(sb_ptrs + kb * stride_sbk)
                acc += tl.dot(a, b.T) * sa[:, None] * sb[None, :]
        c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], acc.to(C.dtype.element_ty))

    @triton.autotune(configs=_configs(), key=["M", "N", "K"])
    @triton.jit
    def _fp8_gemm_tma_pipelined_kernel(A, B, C, SA, SB, M, N, K,
                                       stride_sam, stride_sak, stride_sbn, stride_sbk,
                                       B_BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                       GROUP_M: tl.constexpr):
        """TMA loads, and the promotion of slice k-1 written after the MMA of slice k is issued, so that the
        CUDA cores' scale-and-add can overlap the tensor cores' next MMA (what DeepGEMM gets from two
        warpgroups taking turns)."""
        BLOCK_K: tl.constexpr = 128
        a_desc = tl.make_tensor_descriptor(A, shape=[M, K], strides=[K, 1], block_shape=[BLOCK_M, BLOCK_K])
        b_desc = tl.make_tensor_descriptor(B, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K])
        c_desc = tl.make_tensor_descriptor(C, shape=[M, N], strides=[N, 1], block_shape=[BLOCK_M, BLOCK_N])
        pid = tl.program_id(0)
        grid_m, grid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        group = pid // (GROUP_M * grid_n)
        first_m = group * GROUP_M
        rows = tl.minimum(grid_m - first_m, GROUP_M)
        pid_m = first_m + (pid % (GROUP_M * grid_n)) % rows
        pid_n = (pid % (GROUP_M * grid_n)) // rows
        offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
        sa_ptrs = SA + offs_m * stride_sam
        sb_ptrs = SB + (offs_n // B_BLOCK_ROWS) * stride_sbn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        a = a_desc.load([pid_m * BLOCK_M, 0])
        b = b_desc.load([pid_n * BLOCK_N, 0])
        p = tl.dot(a, b.T)
        s = tl.load(sa_ptrs)[:, None] * tl.load(sb_ptrs)[None, :]
        for kb in range(1, tl.cdiv(K, BLOCK_K)):
            a = a_desc.load([pid_m * BLOCK_M, kb * BLOCK_K])
            b = b_desc.load([pid_n * BLOCK_N, kb * BLOCK_K])
            p_next = tl.dot(a, b.T)
            acc += p * s                                          # promote slice kb-1
            s = tl.load(sa_ptrs + kb * stride_sak)[:, None] * tl.load(sb_ptrs + kb * stride_sbk)[None, :]
            p = p_next
        acc += p * s
        c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], acc.to(C.dtype.element_ty))


_ALLOCATOR_SET = False


def _set_allocator() -> None:
    """Device-side TMA descriptors need scratch memory from the host: hand Triton torch's allocator."""
    global _ALLOCATOR_SET
    if not _ALLOCATOR_SET:
        triton.set_allocator(lambda size, alignment, stream: torch.empty(size, device="cuda", dtype=torch.int8))
        _ALLOCATOR_SET = True


def fp8_gemm(a: torch.Tensor, sa: torch.Tensor, b: torch.Tensor, sb: torch.Tensor,
             out_dtype: torch.dtype = torch.bfloat16, tma: bool = False, pipelined: bool = False) -> torch.Tensor:
    """a (M, K) fp8, sa (M, K/128) fp32; b (N, K) fp8, sb (N/128, K/128) or (N, K/128) fp32 -> (M, N).

    tma=True uses the kernel whose tiles are moved by TMA descriptors (Hopper's bulk tensor copies);
    pipelined=True (with TMA) defers each slice's promotion until the next slice's MMA is issued."""
    if triton is None or not a.is_cuda:
        raise ValueError("fp8_gemm needs Triton and a CUDA GPU with FP8 tensor cores (Hopper or newer)")
    M, K = a.shape
    N = b.shape[0]
    kb = -(-K // 128)
    if b.shape[1] != K or sa.shape != (M, kb):
        raise ValueError(f"fp8_gemm: a {tuple(a.shape)}, sa {tuple(sa.shape)}, b {tuple(b.shape)} do not fit")
    if sb.shape == (-(-N // 128), kb):
        block_rows = 128
    elif sb.shape == (N, kb):
        block_rows = 1
    else:
        raise ValueError(f"fp8_gemm: sb has shape {tuple(sb.shape)}, expected {(-(-N // 128), kb)} or {(N, kb)}")
    a, b = a.contiguous(), b.contiguous()
    c = torch.empty(M, N, device=a.device, dtype=out_dtype)
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)
    if tma:
        _set_allocator()
        kernel = _fp8_gemm_tma_pipelined_kernel if pipelined else _fp8_gemm_tma_kernel
        kernel[grid](a, b, c, sa, sb, M, N, K, sa.stride(0), sa.stride(1), sb.stride(0),
                                   sb.stride(1), B_BLOCK_ROWS=block_rows)
        return c
    _fp8_gemm_kernel[grid](a, b, c, sa, sb, M, N, K, a.stride(0), b.stride(0), c.stride(0),
                           sa.stride(0), sa.stride(1), sb.stride(0), sb.stride(1), B_BLOCK_ROWS=block_rows)
    return c


def fp8_gemm_quantized(a, b, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """`fp8_gemm` on `nanoseek.quant.Quantized` operands: a in 1×128 tiles, b in 128×128 or 1×128."""
    if a.tile != (1, 128) or b.tile not in ((128, 128), (1, 128)):
        raise ValueError(f"fp8_gemm takes a in 1x128 tiles and b in 128x128 or 1x128 tiles, got a.tile={a.tile}, "
                         f"b.tile={b.tile}")
    return fp8_gemm(a.data, a.scale, b.data, b.scale, out_dtype)
