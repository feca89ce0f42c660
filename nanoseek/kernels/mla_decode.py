"""A fused decode kernel for absorbed MLA, flash-decoding style, in Triton. (Chapter 5, advanced section.)

At decode time absorbed MLA has, per sequence ``b`` and head ``h``, a query in latent space ``q_lat[b, h]``
(c numbers) and a rotated RoPE query ``q_pe[b, h]`` (r numbers), and the cache holds ``c_kv[b, s]`` (c) and
``k_pe[b, s]`` (r) for every past token ``s``. It needs

    o_lat[b, h] = sum_s softmax_s(scale * (q_lat[b, h] . c_kv[b, s] + q_pe[b, h] . k_pe[b, s])) * c_kv[b, s]

Written as einsums (``mla_decode_einsum``) this reads the latent cache twice (once for the scores, once for
the weighted sum) and writes and reads the whole (B, H, S) score tensor. The kernel reads each cache tile
once, for all heads of a block at a time:

1. **split**: the context is cut into ``num_splits`` chunks; program (b, head block, split) walks its
   chunk tile by tile, computing scores with ``tl.dot`` and keeping an *online softmax* (running max ``m``,
   running sum ``l``, running weighted sum ``acc``: the FlashAttention recurrence);
2. **combine**: a second small kernel merges the chunks' partial results with their log-sum-exps.

Splitting the context is what keeps a large GPU busy when batch x heads alone gives too few programs
(FlashDecoding). On CPU, or without Triton, ``mla_decode`` falls back to the einsum path.

The tensor cores come from the head block: with 128 heads sharing one latent, the queries of BLOCK_H heads
form a (BLOCK_H, c) matrix and one cache tile a (BLOCK_N, c) matrix, so the scores are one matrix product
(BLOCK_H x c) @ (c x BLOCK_N) and the weighted sum another, (BLOCK_H x BLOCK_N) @ (BLOCK_N x c): every cache
byte loaded feeds BLOCK_H heads. A second kernel, ``_mla_decode_split_tma_kernel`` (``tma=True``), does the
same with the tiles moved by the tensor memory accelerator and the latent in two halves, each with its own
half of the accumulator (FlashMLA's layout). Options measured by ``benchmarks/mla_decode.py --tune``:
``lazy_rescale`` (rescale the accumulator only when a running maximum grows by more than 2^8) and
``partial_dtype`` (the chunks' partial outputs in bfloat16, half the traffic of float32).
"""
from __future__ import annotations

import math

import torch

try:  # Triton ships with CUDA builds of torch; CPU-only installs run the einsum path
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None
    tl = None


def mla_decode_einsum(q_lat: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor,
                      softmax_scale: float) -> torch.Tensor:
    """Reference: q_lat (B, H, c), q_pe (B, H, r), c_kv (B, S, c), k_pe (B, S, r) -> o_lat (B, H, c)."""
    scores = (torch.einsum("bhc,bsc->bhs", q_lat, c_kv) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)) * softmax_scale
    p = scores.float().softmax(dim=-1).to(c_kv.dtype)
    return torch.einsum("bhs,bsc->bhc", p, c_kv)


if triton is not None:

    @triton.jit
    def _mla_decode_split_kernel(
        Q, QPE, CKV, KPE, O_PART, LSE_PART,
        seq_len, split_len, scale_log2,
        stride_qb, stride_qh, stride_pb, stride_ph,
        stride_cb, stride_cs, stride_kb, stride_ks,
        stride_ob, stride_os, stride_oh, stride_lb, stride_ls,
        H: tl.constexpr, C: tl.constexpr, R: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, C_PAD: tl.constexpr, R_PAD: tl.constexpr,
        LAZY_RESCALE: tl.constexpr = False,
        ABLATE: tl.constexpr = 0,  # benchmarks only: 1 no P·V, 2 no softmax, 3 loads only (wrong outputs)
    ):
        # program (head block, chunk, sequence): neighbouring programs are the head blocks of one chunk, so
        # they read the same cache tiles at about the same time and all but the first find them in L2
        hb = tl.program_id(0)
        sp = tl.program_id(1)
        b = tl.program_id(2)
        heads = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        offs_c = tl.arange(0, C_PAD)
        offs_r = tl.arange(0, R_PAD)
        mask_h = heads < H
        mask_c = offs_c < C
        mask_r = offs_r < R
        # this program's queries, all heads of the block: (BLOCK_H, C) and (BLOCK_H, R)
        q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_c[None, :],
                    mask=mask_h[:, None] & mask_c[None, :], other=0.0)
        qp = tl.load(QPE + b * stride_pb + heads[:, None] * stride_ph + offs_r[None, :],
                     mask=mask_h[:, None] & mask_r[None, :], other=0.0)
        start = sp * split_len
        end = tl.minimum(start + split_len, seq_len)
        m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
        acc = tl.zeros([BLOCK_H, C_PAD], dtype=tl.float32)
        for n0 in range(0, end - start, BLOCK_N):  # the chunk's tiles; only the last can be ragged
            offs_n = start + n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < end
            # one tile of the caches, read once for every head of the block: (BLOCK_N, C), (BLOCK_N, R)
            kv = tl.load(CKV + b * stride_cb + offs_n[:, None] * stride_cs + offs_c[None, :],
                         mask=mask_n[:, None] & mask_c[None, :], other=0.0)
            kp = tl.load(KPE + b * stride_kb + offs_n[:, None] * stride_ks + offs_r[None, :],
                         mask=mask_n[:, None] & mask_r[None, :], other=0.0)
            if ABLATE == 3:  # what reading the tiles alone costs
                acc += tl.sum(kv.to(tl.float32), 0)[None, :]
                l_i += 1.0 + 0.0 * tl.sum(tl.sum(kp.to(tl.float32), 1), 0)  # keeps the RoPE load alive
                m_i = tl.zeros([BLOCK_H], dtype=tl.float32)
            elif ABLATE == 2:  # the two matmuls and the loads, no softmax
                s = tl.dot(q, tl.trans(kv)) + tl.dot(qp, tl.trans(kp))
                acc += tl.dot(s.to(kv.dtype), kv)
                l_i += 1.0
                m_i = tl.zeros([BLOCK_H], dtype=tl.float32)
            else:
                s = tl.dot(q, tl.trans(kv)) + tl.dot(qp, tl.trans(kp))  # (BLOCK_H, BLOCK_N), fp32
                s = tl.where(mask_n[None, :], s * scale_log2, float("-inf"))  # base-2 logits
                m_new = tl.maximum(m_i, tl.max(s, 1))
                if ABLATE == 1:  # scores and softmax statistics; no P·V matmul, no rescaling of the accumulator
                    l_i = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), 1)
                    m_i = m_new
                elif LAZY_RESCALE:
                    # rescale the (BLOCK_H, C) accumulator only when some head's maximum grew by more than
                    # 2^8; otherwise keep the old maximum: p may then reach 2^8, harmless in fp32 sums and
                    # in bf16 weights
                    if tl.max(m_new - m_i, 0) > 8.0:
                        alpha = tl.exp2(m_i - m_new)
                        acc = acc * alpha[:, None]
                        l_i = l_i * alpha
                        m_i = m_new
                    p = tl.exp2(s - m_i[:, None])
                    l_i = l_i + tl.sum(p, 1)
                    acc = acc + tl.dot(p.to(kv.dtype), kv)
                else:
                    alpha = tl.exp2(m_i - m_new)
                    p = tl.exp2(s - m_new[:, None])
                    l_i = l_i * alpha + tl.sum(p, 1)
                    acc = acc * alpha[:, None] + tl.dot(p.to(kv.dtype), kv)  # the same tile, reused as values
                    m_i = m_new
        o = acc / l_i[:, None]
        lse = m_i + tl.log2(l_i)
        tl.store(O_PART + b * stride_ob + sp * stride_os + heads[:, None] * stride_oh + offs_c[None, :],
                 o.to(O_PART.dtype.element_ty), mask=mask_h[:, None] & mask_c[None, :])
        tl.store(LSE_PART + b * stride_lb + sp * stride_ls + heads, lse, mask=mask_h)

    @triton.jit(do_not_specialize=["B"])  # one binary for every batch size (B = 1 would be its own)
    def _mla_decode_split_tma_kernel(
        Q, QPE, CKV, KPE, O_PART, LSE_PART,
        seq_len, split_len, scale_log2, B,
        stride_qb, stride_qh, stride_pb, stride_ph,
        stride_cb, stride_cs, stride_kb, stride_ks,
        stride_ob, stride_os, stride_oh, stride_lb, stride_ls,
        H: tl.constexpr, C: tl.constexpr, R: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, C_PAD: tl.constexpr, R_PAD: tl.constexpr,
        LAZY_RESCALE: tl.constexpr = False,
    ):
        """The same program, FlashMLA's way: cache tiles moved by the tensor memory accelerator (TMA; no
        per-element addresses in registers, rows past the context arrive as zeros) and the latent split in
        two halves of C/2 columns (a TMA box holds at most 256), each with its own half of the accumulator."""
        HALF: tl.constexpr = C_PAD // 2
        hb = tl.program_id(0)
        sp = tl.program_id(1)
        b = tl.program_id(2)
        ckv_desc = tl.make_tensor_descriptor(CKV, shape=[B, seq_len, C], strides=[stride_cb, stride_cs, 1],
                                             block_shape=[1, BLOCK_N, HALF])
        kpe_desc = tl.make_tensor_descriptor(KPE, shape=[B, seq_len, R], strides=[stride_kb, stride_ks, 1],
                                             block_shape=[1, BLOCK_N, R_PAD])
        heads = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        offs_c = tl.arange(0, HALF)
        offs_r = tl.arange(0, R_PAD)
        mask_h = heads < H
        q_rows = Q + b * stride_qb + heads[:, None] * stride_qh
        q0 = tl.load(q_rows + offs_c[None, :], mask=mask_h[:, None] & (offs_c[None, :] < C), other=0.0)
        q1 = tl.load(q_rows + HALF + offs_c[None, :], mask=mask_h[:, None] & (HALF + offs_c[None, :] < C),
                     other=0.0)
        qp = tl.load(QPE + b * stride_pb + heads[:, None] * stride_ph + offs_r[None, :],
                     mask=mask_h[:, None] & (offs_r[None, :] < R), other=0.0)
        start = sp * split_len
        end = tl.minimum(start + split_len, seq_len)
        m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
        acc0 = tl.zeros([BLOCK_H, HALF], dtype=tl.float32)
        acc1 = tl.zeros([BLOCK_H, HALF], dtype=tl.float32)
        for n0 in range(0, end - start, BLOCK_N):
            pos = start + n0
            kv0 = ckv_desc.load([b, pos, 0]).reshape(BLOCK_N, HALF)
            kv1 = ckv_desc.load([b, pos, HALF]).reshape(BLOCK_N, HALF)
            kp = kpe_desc.load([b, pos, 0]).reshape(BLOCK_N, R_PAD)
            s = tl.dot(q0, tl.trans(kv0)) + tl.dot(q1, tl.trans(kv1)) + tl.dot(qp, tl.trans(kp))
            mask_n = pos + tl.arange(0, BLOCK_N) < end
            s = tl.where(mask_n[None, :], s * scale_log2, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            if LAZY_RESCALE:
                if tl.max(m_new - m_i, 0) > 8.0:
                    alpha = tl.exp2(m_i - m_new)
                    acc0 = acc0 * alpha[:, None]
                    acc1 = acc1 * alpha[:, None]
                    l_i = l_i * alpha
                    m_i = m_new
                p = tl.exp2(s - m_i[:, None])
                l_i = l_i + tl.sum(p, 1)
            else:
                alpha = tl.exp2(m_i - m_new)
                p = tl.exp2(s - m_new[:, None])
                l_i = l_i * alpha + tl.sum(p, 1)
                acc0 = acc0 * alpha[:, None]
                acc1 = acc1 * alpha[:, None]
                m_i = m_new
            pb = p.to(kv0.dtype)
            acc0 = acc0 + tl.dot(pb, kv0)
            acc1 = acc1 + tl.dot(pb, kv1)
        lse = m_i + tl.log2(l_i)
        o_rows = O_PART + b * stride_ob + sp * stride_os + heads[:, None] * stride_oh
        tl.store(o_rows + offs_c[None, :], (acc0 / l_i[:, None]).to(O_PART.dtype.element_ty),
                 mask=mask_h[:, None] & (offs_c[None, :] < C))
        tl.store(o_rows + HALF + offs_c[None, :], (acc1 / l_i[:, None]).to(O_PART.dtype.element_ty),
                 mask=mask_h[:, None] & (HALF + offs_c[None, :] < C))
        tl.store(LSE_PART + b * stride_lb + sp * stride_ls + heads, lse, mask=mask_h)

    @triton.jit
    def _mla_decode_combine_kernel(
        O_PART, LSE_PART, OUT, num_splits,
        stride_ob, stride_os, stride_oh, stride_lb, stride_ls, stride_outb, stride_outh,
        C: tl.constexpr, C_PAD: tl.constexpr,
    ):
        b = tl.program_id(0)
        h = tl.program_id(1)
        offs_c = tl.arange(0, C_PAD)
        mask_c = offs_c < C
        # the largest log-sum-exp first, then the weighted sum of the chunks: (C,) accumulators only
        lse_ptr = LSE_PART + b * stride_lb + h
        m = tl.load(lse_ptr)
        for sp in range(1, num_splits):
            m = tl.maximum(m, tl.load(lse_ptr + sp * stride_ls))
        denom = m * 0.0
        acc = tl.zeros([C_PAD], dtype=tl.float32)
        for sp in range(0, num_splits):
            w = tl.exp2(tl.load(lse_ptr + sp * stride_ls) - m)
            o = tl.load(O_PART + b * stride_ob + sp * stride_os + h * stride_oh + offs_c, mask=mask_c,
                        other=0.0).to(tl.float32)
            denom += w
            acc += w * o
        tl.store(OUT + b * stride_outb + h * stride_outh + offs_c, (acc / denom).to(OUT.dtype.element_ty),
                 mask=mask_c)


def _default_splits(batch: int, head_blocks: int, seq_len: int, n_sm: int, min_chunk: int = 256,
                    waves: int = 1) -> int:
    """Enough programs to fill the GPU `waves` times, but no chunk shorter than `min_chunk` tokens (each chunk
    writes a partial (H, c) float32 result, so very short chunks cost more in partials than in cache reads)."""
    want = max(1, (waves * n_sm) // max(1, batch * head_blocks))
    return max(1, min(want, math.ceil(seq_len / min_chunk)))


# Launch settings: the best of benchmarks/mla_decode.py --tune on an H200 with DeepSeek-V3 shapes
# (benchmarks/results/mla_decode.md, 2026-12-02): 64 heads x 64 tokens a tile, 8 warps, 2 stages at batch 32
# and batch 1; bf16 partials were the batch-1 winner (46.9 vs 54.7 µs at 32K) and tie at batch 32 (978 vs
# 976 µs), so they are the default. lazy_rescale: skip the accumulator's rescaling unless a maximum grew by
# more than 2^8 (FlashAttention-4's trick); partial_dtype: the chunks' partial outputs (float32, or bfloat16
# to halve their traffic). tma: the TMA kernel (cache tiles by descriptor, latent in two halves; Hopper+).
DEFAULTS = dict(block_h=64, block_n=64, num_warps=8, num_stages=2, min_chunk=256, waves=1, lazy_rescale=False,
                partial_dtype=torch.bfloat16, tma=False)


from nanoseek.kernels._tma import set_allocator as _set_allocator  # noqa: E402


def mla_decode_triton(q_lat: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor,
                      softmax_scale: float, num_splits: int | None = None, block_h: int | None = None,
                      block_n: int | None = None, num_warps: int | None = None,
                      num_stages: int | None = None, lazy_rescale: bool | None = None,
                      partial_dtype: torch.dtype | None = None, min_chunk: int | None = None,
                      waves: int | None = None, tma: bool | None = None, _ablate: int = 0) -> torch.Tensor:
    """The fused kernel. Shapes as ``mla_decode_einsum``; caches may be views of longer buffers. Settings left
    as None come from ``DEFAULTS``; ``num_splits`` (chunks of the context) from ``min_chunk`` and ``waves``."""
    if triton is None:
        raise RuntimeError("mla_decode_triton needs Triton (a CUDA build of torch ships it)")
    pick = lambda value, key: DEFAULTS[key] if value is None else value  # noqa: E731
    block_h, block_n = pick(block_h, "block_h"), pick(block_n, "block_n")
    num_warps, num_stages = pick(num_warps, "num_warps"), pick(num_stages, "num_stages")
    lazy_rescale, partial_dtype = pick(lazy_rescale, "lazy_rescale"), pick(partial_dtype, "partial_dtype")
    min_chunk, waves = pick(min_chunk, "min_chunk"), pick(waves, "waves")
    tma = pick(tma, "tma")
    if partial_dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"partial_dtype must be torch.float32 or torch.bfloat16, got {partial_dtype}")
    if q_lat.dtype not in (torch.bfloat16, torch.float16) or any(t.dtype != q_lat.dtype for t in (q_pe, c_kv, k_pe)):
        # float32 through this kernel disagreed with the einsum path on the H200 (Triton 3.6, see the chapter)
        raise TypeError(f"mla_decode_triton takes bf16 or fp16 tensors of one dtype, got q_lat {q_lat.dtype}, "
                        f"q_pe {q_pe.dtype}, c_kv {c_kv.dtype}, k_pe {k_pe.dtype}")
    B, H, C = q_lat.shape
    S, R = c_kv.shape[1], k_pe.shape[2]
    if q_pe.shape != (B, H, R) or c_kv.shape != (B, S, C) or k_pe.shape != (B, S, R):
        raise ValueError(f"shape mismatch: q_lat {tuple(q_lat.shape)}, q_pe {tuple(q_pe.shape)}, "
                         f"c_kv {tuple(c_kv.shape)}, k_pe {tuple(k_pe.shape)}")
    if S < 1:
        raise ValueError(f"mla_decode needs at least one cached token, got seq_len={S}")
    for name, t in (("q_lat", q_lat), ("q_pe", q_pe), ("c_kv", c_kv), ("k_pe", k_pe)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dim, got strides {t.stride()}")
    block_h = max(16, min(block_h, triton.next_power_of_2(H)))
    head_blocks = triton.cdiv(H, block_h)
    if num_splits is None:
        n_sm = torch.cuda.get_device_properties(q_lat.device).multi_processor_count if q_lat.is_cuda else 8
        num_splits = _default_splits(B, head_blocks, S, n_sm, min_chunk, waves)
    split_len = triton.cdiv(triton.cdiv(S, num_splits), block_n) * block_n
    num_splits = triton.cdiv(S, split_len)  # no empty chunk
    o_part = torch.empty(B, num_splits, H, C, device=q_lat.device, dtype=partial_dtype)
    lse_part = torch.empty(B, num_splits, H, device=q_lat.device, dtype=torch.float32)
    C_PAD, R_PAD = max(16, triton.next_power_of_2(C)), max(16, triton.next_power_of_2(R))  # tl.dot: K >= 16
    common = (S, split_len, softmax_scale * 1.4426950408889634)  # log2(e): the kernels use exp2
    strides = (q_lat.stride(0), q_lat.stride(1), q_pe.stride(0), q_pe.stride(1),
               c_kv.stride(0), c_kv.stride(1), k_pe.stride(0), k_pe.stride(1),
               o_part.stride(0), o_part.stride(1), o_part.stride(2), lse_part.stride(0), lse_part.stride(1))
    meta = dict(H=H, C=C, R=R, BLOCK_H=block_h, BLOCK_N=block_n, C_PAD=C_PAD, R_PAD=R_PAD,
                LAZY_RESCALE=lazy_rescale, num_warps=num_warps, num_stages=num_stages)
    grid = (head_blocks, num_splits, B)
    if tma:
        if _ablate or (c_kv.stride(1) * c_kv.element_size()) % 16 or (k_pe.stride(1) * k_pe.element_size()) % 16 \
                or (c_kv.stride(0) * c_kv.element_size()) % 16 or (k_pe.stride(0) * k_pe.element_size()) % 16:
            raise ValueError("mla_decode_triton(tma=True) needs 16-byte aligned cache rows and no ablation, got "
                             f"c_kv strides {c_kv.stride()}, k_pe strides {k_pe.stride()}")
        _set_allocator(q_lat.device)
        _mla_decode_split_tma_kernel[grid](q_lat, q_pe, c_kv, k_pe, o_part, lse_part, *common, B, *strides, **meta)
    else:
        _mla_decode_split_kernel[grid](q_lat, q_pe, c_kv, k_pe, o_part, lse_part, *common, *strides,
                                       ABLATE=_ablate, **meta)
    out = torch.empty(B, H, C, device=q_lat.device, dtype=q_lat.dtype)
    _mla_decode_combine_kernel[(B, H)](
        o_part, lse_part, out, num_splits,
        o_part.stride(0), o_part.stride(1), o_part.stride(2), lse_part.stride(0), lse_part.stride(1),
        out.stride(0), out.stride(1),
        C=C, C_PAD=C_PAD, num_warps=4,
    )
    return out


def mla_decode(q_lat: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor,
               softmax_scale: float, backend: str = "auto") -> torch.Tensor:
    """Absorbed MLA decode attention in latent space: ``backend`` "triton", "einsum" or "auto"
    (Triton for bf16/fp16 CUDA tensors when Triton is installed, einsums otherwise). Shapes as
    ``mla_decode_einsum``."""
    if backend not in ("auto", "triton", "einsum"):
        raise ValueError(f"backend={backend!r} is not 'auto', 'triton' or 'einsum'")
    use_triton = backend == "triton" or (backend == "auto" and triton is not None and q_lat.is_cuda
                                         and q_lat.dtype in (torch.bfloat16, torch.float16))
    if use_triton:
        return mla_decode_triton(q_lat, q_pe, c_kv, k_pe, softmax_scale)
    return mla_decode_einsum(q_lat, q_pe, c_kv, k_pe, softmax_scale)
