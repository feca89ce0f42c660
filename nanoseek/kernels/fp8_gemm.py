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

Three kernels share that loop: `_fp8_gemm_kernel` (plain pointers; the one the chapter teaches),
`_fp8_gemm_tma_kernel` (tiles moved by the tensor memory accelerator, optionally *persistent*: one program
per SM looping over output tiles, optionally with Triton's automatic warp specialization), and
`_fp8_gemm_tma_pipelined_kernel` (the promotion of slice k-1 deferred past the MMA of slice k).
`fp8_gemm(..., config=...)` runs any of them with explicit launch settings (what `benchmarks/fp8_gemm.py`
sweeps); without `config` the kernel is autotuned over a few settings.
"""
from __future__ import annotations

import os

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

    @triton.jit
    def _tile_coords(tile, grid_m, grid_n, GROUP_M: tl.constexpr):
        """Grouped order of output tiles: GROUP_M tile-rows are visited together, so they share B in L2."""
        group = tile // (GROUP_M * grid_n)
        first_m = group * GROUP_M
        rows = tl.minimum(grid_m - first_m, GROUP_M)
        return first_m + (tile % (GROUP_M * grid_n)) % rows, (tile % (GROUP_M * grid_n)) // rows

    @triton.jit(do_not_specialize=["num_programs"])  # one binary for every grid size
    def _fp8_gemm_tma_kernel(A, B, C, SA, SB, M, N, K, num_programs,
                             stride_sam, stride_sak, stride_sbn, stride_sbk,
                             B_BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                             GROUP_M: tl.constexpr, FLATTEN: tl.constexpr = False,
                             WARP_SPECIALIZE: tl.constexpr = False, SPLIT_N: tl.constexpr = 0):
        """The same loop, with A, B and C moved by the tensor memory accelerator (TMA descriptors).

        Launched with one program per output tile (num_programs = number of tiles) each program does one
        tile; launched with one program per SM (*persistent*), each walks tiles pid, pid + num_programs, ...
        so the epilogue of one tile overlaps the loads of the next. SPLIT_N=1 cuts the tile into two column
        halves with an accumulator each: two independent MMAs a slice, so the second can run on the tensor
        cores while the first one's partial sum is promoted on the CUDA cores."""
        BLOCK_K: tl.constexpr = 128
        HALF_N: tl.constexpr = BLOCK_N // (1 + SPLIT_N)
        ONE_BLOCK: tl.constexpr = B_BLOCK_ROWS == 128 and HALF_N <= 128   # one weight block per (half) tile
        a_desc = tl.make_tensor_descriptor(A, shape=[M, K], strides=[K, 1], block_shape=[BLOCK_M, BLOCK_K])
        b_desc = tl.make_tensor_descriptor(B, shape=[N, K], strides=[K, 1], block_shape=[HALF_N, BLOCK_K])
        c_desc = tl.make_tensor_descriptor(C, shape=[M, N], strides=[N, 1], block_shape=[BLOCK_M, HALF_N])
        grid_m, grid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        k_tiles = tl.cdiv(K, BLOCK_K)
        for tile in tl.range(tl.program_id(0), grid_m * grid_n, num_programs, flatten=FLATTEN,
                             warp_specialize=WARP_SPECIALIZE):
            pid_m, pid_n = _tile_coords(tile, grid_m, grid_n, GROUP_M)
            m0, n0 = pid_m * BLOCK_M, pid_n * BLOCK_N
            offs_m = (m0 + tl.arange(0, BLOCK_M)) % M
            offs_n = (n0 + tl.arange(0, HALF_N)) % N
            sa_ptrs = SA + offs_m * stride_sam       # column-major scales make this one contiguous load
            sb_ptrs = SB + (offs_n // B_BLOCK_ROWS) * stride_sbn
            sb1_ptr = SB + (n0 // 128) * stride_sbn
            acc = tl.zeros((BLOCK_M, HALF_N), dtype=tl.float32)
            if SPLIT_N:
                offs_n2 = (n0 + HALF_N + tl.arange(0, HALF_N)) % N
                sb_ptrs2 = SB + (offs_n2 // B_BLOCK_ROWS) * stride_sbn
                sb2_ptr = SB + ((n0 + HALF_N) // 128) * stride_sbn
                acc2 = tl.zeros((BLOCK_M, HALF_N), dtype=tl.float32)
            for kb in range(0, k_tiles):
                a = a_desc.load([m0, kb * BLOCK_K])
                b = b_desc.load([n0, kb * BLOCK_K])
                sa = tl.load(sa_ptrs + kb * stride_sak)
                if SPLIT_N:
                    b2 = b_desc.load([n0 + HALF_N, kb * BLOCK_K])
                    p = tl.dot(a, b.T)
                    p2 = tl.dot(a, b2.T)                  # issued before p is promoted
                    if ONE_BLOCK:
                        acc += p * (sa * tl.load(sb1_ptr + kb * stride_sbk))[:, None]
                        acc2 += p2 * (sa * tl.load(sb2_ptr + kb * stride_sbk))[:, None]
                    else:
                        acc += p * sa[:, None] * tl.load(sb_ptrs + kb * stride_sbk)[None, :]
                        acc2 += p2 * sa[:, None] * tl.load(sb_ptrs2 + kb * stride_sbk)[None, :]
                elif ONE_BLOCK:                           # one FMA per element
                    sb1 = tl.load(sb1_ptr + kb * stride_sbk)
                    acc += tl.dot(a, b.T) * (sa * sb1)[:, None]
                else:
                    sb = tl.load(sb_ptrs + kb * stride_sbk)
                    acc += tl.dot(a, b.T) * sa[:, None] * sb[None, :]
            c_desc.store([m0, n0], acc.to(C.dtype.element_ty))
            if SPLIT_N:
                c_desc.store([m0, n0 + HALF_N], acc2.to(C.dtype.element_ty))

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
        grid_m, grid_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        pid_m, pid_n = _tile_coords(tl.program_id(0), grid_m, grid_n, GROUP_M)
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

    _fp8_gemm_kernel_tuned = triton.autotune(configs=_configs(), key=["M", "N", "K"])(_fp8_gemm_kernel)
    _fp8_gemm_tma_kernel_tuned = triton.autotune(configs=_configs(), key=["M", "N", "K"])(_fp8_gemm_tma_kernel)
    _fp8_gemm_tma_pipelined_kernel_tuned = triton.autotune(configs=_configs(), key=["M", "N", "K"])(
        _fp8_gemm_tma_pipelined_kernel)


from nanoseek.kernels._tma import set_allocator as _set_allocator  # noqa: E402


_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter (tests of the logic only)


def _num_sms(device: torch.device) -> int:
    """Programs of a persistent launch: one per SM (3 under the interpreter, so programs loop over tiles)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 3


LAST_LAUNCH: dict = {}  # the last explicit-config launch's compiled kernel: registers, spills, shared memory

_CONFIG_KEYS = {"BLOCK_M", "BLOCK_N", "GROUP_M", "num_warps", "num_stages", "persistent", "flatten",
                "warp_specialize", "split_n"}


def fp8_gemm(a: torch.Tensor, sa: torch.Tensor, b: torch.Tensor, sb: torch.Tensor,
             out_dtype: torch.dtype = torch.bfloat16, tma: bool = False, pipelined: bool = False,
             config: dict | None = None) -> torch.Tensor:
    """a (M, K) fp8, sa (M, K/128) fp32; b (N, K) fp8, sb (N/128, K/128) or (N, K/128) fp32 -> (M, N).

    tma=True uses the kernel whose tiles are moved by TMA descriptors (Hopper's bulk tensor copies);
    pipelined=True (with TMA) defers each slice's promotion until the next slice's MMA is issued.
    The scales may have any strides: column-major `sa` (`sa.t().contiguous().t()`) makes each slice's
    BLOCK_M scales one contiguous load. `config` (keys BLOCK_M, BLOCK_N, GROUP_M, num_warps, num_stages, and
    for the TMA kernel persistent, flatten, warp_specialize, split_n) skips autotuning and launches exactly that."""
    if triton is None or not (a.is_cuda or _INTERPRET):
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
    if config is not None and set(config) - _CONFIG_KEYS:
        raise ValueError(f"fp8_gemm: unknown config keys {sorted(set(config) - _CONFIG_KEYS)}")
    if tma and (K % 16 or (N * torch.empty((), dtype=out_dtype).element_size()) % 16):
        raise ValueError(f"fp8_gemm with tma=True needs 16-byte aligned rows: K={K} must be a multiple of 16 "
                         f"and N={N} of {16 // torch.empty((), dtype=out_dtype).element_size()}")
    a, b = a.contiguous(), b.contiguous()
    c = torch.empty(M, N, device=a.device, dtype=out_dtype)
    scale_strides = (sa.stride(0), sa.stride(1), sb.stride(0), sb.stride(1))
    if tma:
        _set_allocator(a.device)
    if config is None:
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
        if tma and pipelined:
            _fp8_gemm_tma_pipelined_kernel_tuned[grid](a, b, c, sa, sb, M, N, K, *scale_strides,
                                                       B_BLOCK_ROWS=block_rows)
        elif tma:
            # one program per tile: num_programs is the tile count, which depends on the config picked
            _fp8_gemm_tma_kernel_tuned[grid](a, b, c, sa, sb, M, N, K, 1 << 30, *scale_strides,
                                             B_BLOCK_ROWS=block_rows)
        else:
            _fp8_gemm_kernel_tuned[grid](a, b, c, sa, sb, M, N, K, a.stride(0), b.stride(0), c.stride(0),
                                         *scale_strides, B_BLOCK_ROWS=block_rows)
        return c
    cfg = dict(config)
    launch = dict(num_warps=cfg.pop("num_warps", 4), num_stages=cfg.pop("num_stages", 3))
    persistent, flatten, ws = cfg.pop("persistent", False), cfg.pop("flatten", False), cfg.pop("warp_specialize", False)
    split_n = int(cfg.pop("split_n", False))
    meta = dict(BLOCK_M=cfg.pop("BLOCK_M", 128), BLOCK_N=cfg.pop("BLOCK_N", 128), GROUP_M=cfg.pop("GROUP_M", 8))
    tiles = triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"])
    if (persistent or flatten or ws or split_n) and not (tma and not pipelined):
        raise ValueError("fp8_gemm: persistent, flatten, warp_specialize and split_n belong to the TMA kernel "
                         "(tma=True)")
    if tma and pipelined:
        k = _fp8_gemm_tma_pipelined_kernel[(tiles,)](a, b, c, sa, sb, M, N, K, *scale_strides, B_BLOCK_ROWS=block_rows,
                                                 **meta, **launch)
    elif tma:
        n_prog = min(tiles, _num_sms(a.device)) if persistent else tiles
        k = _fp8_gemm_tma_kernel[(n_prog,)](a, b, c, sa, sb, M, N, K, n_prog, *scale_strides, B_BLOCK_ROWS=block_rows,
                                        FLATTEN=flatten, WARP_SPECIALIZE=ws, SPLIT_N=split_n, **meta, **launch)
    else:
        k = _fp8_gemm_kernel[(tiles,)](a, b, c, sa, sb, M, N, K, a.stride(0), b.stride(0), c.stride(0),
                                       *scale_strides, B_BLOCK_ROWS=block_rows, **meta, **launch)
    LAST_LAUNCH["kernel"] = k
    return c


def fp8_gemm_quantized(a, b, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """`fp8_gemm` on `nanoseek.quant.Quantized` operands: a in 1×128 tiles, b in 128×128 or 1×128."""
    if a.tile != (1, 128) or b.tile not in ((128, 128), (1, 128)):
        raise ValueError(f"fp8_gemm takes a in 1x128 tiles and b in 128x128 or 1x128 tiles, got a.tile={a.tile}, "
                         f"b.tile={b.tile}")
    return fp8_gemm(a.data, a.scale, b.data, b.scale, out_dtype)
