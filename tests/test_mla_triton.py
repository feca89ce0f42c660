"""The fused Triton decode kernel for absorbed MLA (chapter 5) against the einsum path. Needs CUDA."""
from __future__ import annotations

import pytest
import torch

from nanoseek.kernels import mla_decode as K

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or K.triton is None,
                                reason="the Triton kernel needs a CUDA GPU")


def _inputs(B, H, C, R, S, extra, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g, device="cuda", dtype=torch.float32).to(dtype)  # noqa: E731
    # caches as views of longer preallocated buffers, as the decode cache holds them
    c_buf, k_buf = rnd(B, S + extra, C), rnd(B, S + extra, R)
    return rnd(B, H, C), rnd(B, H, R), c_buf[:, :S], k_buf[:, :S]


def _check_bf16(q, qp, ckv, kpe, scale, **kw):
    """Kernel on bf16 inputs against float32 einsums of the same (bf16-rounded) inputs; the bf16 einsum path's
    own error sets the scale of what is acceptable."""
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), scale)
    out = K.mla_decode_triton(q, qp, ckv, kpe, scale, **kw)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    err = (out.float() - ref).abs().max().item()
    ein = (K.mla_decode_einsum(q, qp, ckv, kpe, scale).float() - ref).abs().max().item()
    assert err <= max(2 * ein, 1e-2), f"triton error {err} vs bf16 einsum error {ein}"


@pytest.mark.parametrize("B,H,C,R,S,splits", [
    (2, 4, 32, 8, 37, None), (1, 20, 24, 6, 70, 3), (3, 16, 16, 4, 5, None), (2, 128, 512, 64, 1000, None),
    (1, 128, 512, 64, 4097, 7), (4, 16, 64, 16, 1, None)])
def test_kernel_matches_einsum_odd_shapes(B, H, C, R, S, splits):
    """Masked heads, non-power-of-two widths, ragged last chunk, views of longer cache buffers."""
    _check_bf16(*_inputs(B, H, C, R, S, 5, torch.bfloat16), 0.1, num_splits=splits)


def test_kernel_rejects_float32():
    q, qp, ckv, kpe = _inputs(1, 16, 32, 8, 4, 0, torch.float32)
    with pytest.raises(TypeError, match="float32"):
        K.mla_decode_triton(q, qp, ckv, kpe, 0.1)
    torch.testing.assert_close(K.mla_decode(q, qp, ckv, kpe, 0.1), K.mla_decode_einsum(q, qp, ckv, kpe, 0.1))


@pytest.mark.parametrize("B,S", [(32, 2048), (1, 8192)])
def test_kernel_matches_einsum_bf16_v3_shapes(B, S):
    _check_bf16(*_inputs(B, 128, 512, 64, S, 3, torch.bfloat16), 192 ** -0.5)


def test_mla_module_triton_backend_decodes_like_einsum():
    from nanoseek.nn.mla import MLA, MLAConfig

    torch.manual_seed(0)
    cfg = dict(dim=64, n_heads=16, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
               q_lora_rank=24, max_seq_len=64, mode="absorbed")
    ref = MLA(MLAConfig(**cfg)).cuda().eval()
    fused = MLA(MLAConfig(**cfg, decode_backend="triton")).cuda().to(torch.bfloat16).eval()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(3, 20, 64, device="cuda")
    with torch.no_grad():
        outs = []
        for m, xx in ((ref, x), (fused, x.bfloat16())):
            cache = m.new_cache(3, 20)
            steps = [m(xx[:, :5], cache)] + [m(xx[:, t:t + 1], cache) for t in range(5, 20)]
            outs.append(torch.cat(steps, 1).float())
    err = (outs[1] - outs[0]).abs().max().item()
    assert err < 0.05 * outs[0].abs().max().item(), err  # bf16 weights, cache and kernel against float32


@pytest.mark.parametrize("kw", [
    dict(block_h=64, block_n=32, num_warps=8, num_stages=3),
    dict(block_h=64, block_n=64, num_warps=8, num_stages=2, lazy_rescale=True),
    dict(block_h=32, block_n=128, num_warps=8, num_stages=2, min_chunk=128, waves=2),
    # 128 heads a block with 16 warps: only the TMA kernel compiles (Triton 3.6's ptxas fails with an internal
    # error on the pointer kernel at these settings; benchmarks/results/mla_decode.md lists it as failed)
    dict(block_h=128, block_n=32, num_warps=16, num_stages=2, tma=True),
    dict(block_h=64, block_n=64, num_warps=8, num_stages=2, tma=True),
    dict(block_h=64, block_n=32, num_warps=8, num_stages=2, tma=True, lazy_rescale=True),
], ids=["h64n32s3", "lazy", "h32n128-splits", "h128w16-tma", "tma", "tma-lazy"])
@pytest.mark.parametrize("B,S", [(4, 3008), (1, 8192)])  # sizes a multiple of 16: the benchmark's binaries
def test_swept_settings_match_einsum(kw, B, S):
    """The settings benchmarks/mla_decode.py sweeps (a setting that runs out of shared memory is skipped:
    the benchmark records it as failed)."""
    args = _inputs(B, 128, 512, 64, S, 3, torch.bfloat16)
    try:
        _check_bf16(*args, 192 ** -0.5, **kw)
    except Exception as err:  # noqa: BLE001
        if "resources" in str(err).lower() or "shared memory" in str(err).lower():
            pytest.skip(f"does not fit this GPU: {str(err)[:120]}")
        raise


def test_bf16_partials_within_einsum_error():
    q, qp, ckv, kpe = _inputs(2, 128, 512, 64, 4096, 0, torch.bfloat16)
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), 0.1)
    ein = (K.mla_decode_einsum(q, qp, ckv, kpe, 0.1).float() - ref).abs().max().item()
    out = K.mla_decode_triton(q, qp, ckv, kpe, 0.1, partial_dtype=torch.bfloat16, num_splits=16)
    assert (out.float() - ref).abs().max().item() <= max(2 * ein, 1e-2)


@pytest.mark.parametrize("tma", [False, True])
def test_garbage_past_the_context_stays_out(tma):
    q, qp, c_buf, k_buf = _inputs(2, 128, 512, 64, 1000, 0, torch.bfloat16)
    c_buf, k_buf = c_buf.clone(), k_buf.clone()
    c_buf[:, 700:], k_buf[:, 700:] = float("nan"), float("nan")
    _check_bf16(q, qp, c_buf[:, :700], k_buf[:, :700], 0.1, tma=tma)
