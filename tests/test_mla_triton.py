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


@pytest.mark.parametrize("B,H,C,R,S,splits", [
    (2, 4, 32, 8, 37, None), (1, 20, 24, 6, 70, 3), (3, 16, 16, 4, 5, None), (2, 128, 512, 64, 1000, None),
    (1, 128, 512, 64, 4097, 7), (4, 16, 64, 16, 1, None)])
def test_kernel_matches_einsum_fp32(B, H, C, R, S, splits):
    q, qp, ckv, kpe = _inputs(B, H, C, R, S, 5, torch.float32)
    ref = K.mla_decode_einsum(q, qp, ckv, kpe, 0.1)
    out = K.mla_decode_triton(q, qp, ckv, kpe, 0.1, num_splits=splits)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("B,S", [(32, 2048), (1, 8192)])
def test_kernel_matches_einsum_bf16_v3_shapes(B, S):
    q, qp, ckv, kpe = _inputs(B, 128, 512, 64, S, 3, torch.bfloat16)
    scale = 192 ** -0.5
    ref = K.mla_decode_einsum(q.float(), qp.float(), ckv.float(), kpe.float(), scale)  # fp32 of bf16 inputs
    out = K.mla_decode_triton(q, qp, ckv, kpe, scale)
    assert out.dtype == torch.bfloat16
    err = (out.float() - ref).abs().max().item()
    ein = (K.mla_decode_einsum(q, qp, ckv, kpe, scale).float() - ref).abs().max().item()
    assert err <= max(2 * ein, 1e-2), f"triton error {err} vs bf16 einsum error {ein}"


def test_mla_module_triton_backend_decodes_like_einsum():
    from nanoseek.nn.mla import MLA, MLAConfig

    torch.manual_seed(0)
    cfg = dict(dim=64, n_heads=16, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
               q_lora_rank=24, max_seq_len=64, mode="absorbed")
    ref = MLA(MLAConfig(**cfg)).cuda().eval()
    fused = MLA(MLAConfig(**cfg, decode_backend="triton")).cuda().eval()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(3, 20, 64, device="cuda")
    with torch.no_grad():
        outs = []
        for m in (ref, fused):
            cache = m.new_cache(3, 20)
            outs.append(torch.cat([m(x[:, :5], cache)] + [m(x[:, t:t + 1], cache) for t in range(5, 20)], 1))
    torch.testing.assert_close(outs[1], outs[0], atol=2e-5, rtol=2e-5)
