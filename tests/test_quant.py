"""Chapter 8: the FP8 codec, the quantizers (against transcriptions of DeepGEMM and DeepSeek-V3's code),
the simulated accumulation, and the FP8 linear layer."""
from typing import Tuple

import pytest
import torch
from torch import nn

from nanoseek.quant import (E4M3, E5M2, RECIPES, FP8Linear, calc_diff, convert_to_fp8, decode, dequantize,
                            encode, fake_quantize, fp8_gemm_simulated, fp8_linear, limited_accumulate,
                            positive_grid, quantize, round_to_bits, sqnr_db)
from nanoseek.quant.gemm import accumulation_error


# ---- references, transcribed line for line -----------------------------------------------------------------
# DeepGEMM, deep_gemm/utils/math.py (github.com/deepseek-ai/DeepGEMM)

def ceil_div(x: int, y: int) -> int:
    return (x + y - 1) // y


def align(x: int, y: int) -> int:
    return ceil_div(x, y) * y


def ceil_to_ue8m0(x: torch.Tensor):
    bits = x.abs().float().view(torch.int)
    exp = ((bits >> 23) & 0xFF) + (bits & 0x7FFFFF).bool().int()
    return (exp.clamp(1, 254) << 23).view(torch.float)


def per_token_cast_to_fp8(x: torch.Tensor, use_ue8m0: bool, gran_k: int = 128) -> Tuple[torch.Tensor, torch.Tensor]:
    assert x.dim() == 2
    m, n = x.shape
    padded_n = align(n, gran_k)
    x_padded = torch.empty((m, padded_n), dtype=x.dtype, device=x.device).fill_(0)
    x_padded[:, :n] = x
    x_view = x_padded.view(m, padded_n // gran_k, gran_k)
    x_amax = x_view.abs().float().amax(dim=2).view(m, padded_n // gran_k).clamp(1e-4)
    sf = x_amax / 448.0
    sf = ceil_to_ue8m0(sf) if use_ue8m0 else sf
    x_fp8 = (x_view * (1.0 / sf.unsqueeze(2))).to(torch.float8_e4m3fn).view(m, padded_n)[:, :n].contiguous()
    return x_fp8, sf


def per_block_cast_to_fp8(x: torch.Tensor, use_ue8m0: bool, gran_k: int = 128) -> Tuple[torch.Tensor, torch.Tensor]:
    assert x.dim() == 2
    m, n = x.shape
    x_padded = torch.zeros((align(m, gran_k), align(n, gran_k)), dtype=x.dtype, device=x.device)
    x_padded[:m, :n] = x
    x_view = x_padded.view(-1, gran_k, x_padded.size(1) // gran_k, gran_k)
    x_amax = x_view.abs().float().amax(dim=(1, 3), keepdim=True).clamp(1e-4)
    sf = x_amax / 448.0
    sf = ceil_to_ue8m0(sf) if use_ue8m0 else sf
    x_scaled = (x_view * (1.0 / sf)).to(torch.float8_e4m3fn)
    return x_scaled.view_as(x_padded)[:m, :n].contiguous(), sf.view(x_view.size(0), x_view.size(2))


def deepgemm_calc_diff(x: torch.Tensor, y: torch.Tensor):  # deep_gemm/testing/numeric.py
    x, y = x.double(), y.double()
    denominator = (x * x + y * y).sum()
    sim = 2 * (x * y).sum() / denominator
    return 1 - sim


# DeepSeek-V3, inference/kernel.py: the Triton kernels' arithmetic, one program (tile) at a time

def act_quant(x: torch.Tensor, block_size: int = 128) -> Tuple[torch.Tensor, torch.Tensor]:
    assert x.size(-1) % block_size == 0
    xb = x.float().reshape(-1, block_size)            # one program per block of block_size elements
    s = xb.abs().amax(dim=1, keepdim=True) / 448.     # s = tl.max(tl.abs(x)) / 448.
    y = (xb / s).to(torch.float8_e4m3fn)             # y = x / s; y.to(fp8)
    return y.view(x.shape), s.view(*x.shape[:-1], x.size(-1) // block_size)


def weight_dequant(x: torch.Tensor, s: torch.Tensor, block_size: int = 128) -> torch.Tensor:
    M, N = x.size()
    y = torch.empty(M, N, dtype=torch.float32)
    for pm in range(ceil_div(M, block_size)):        # grid (cdiv(M, B), cdiv(N, B)); y = x * s[pid_m, pid_n]
        for pn in range(ceil_div(N, block_size)):
            blk = (slice(pm * block_size, (pm + 1) * block_size), slice(pn * block_size, (pn + 1) * block_size))
            y[blk] = x[blk].float() * s[pm, pn]
    return y


def _inputs():
    g = torch.Generator().manual_seed(0)
    yield torch.randn(256, 512, generator=g)
    yield torch.randn(130, 300, generator=g) * 5              # shapes that are not multiples of 128
    yield torch.zeros(64, 200)                               # all zeros: amax clamps at 1e-4
    x = torch.randn(200, 256, generator=g) * 1e-3
    x[3, 17] = 3e4                                           # one huge value
    yield x
    yield torch.randn(128, 384, generator=g).bfloat16()


def _same_codes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))


# ---- the codec ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [E4M3, E5M2])
def test_decode_matches_torch_on_all_256_codes(fmt):
    codes = torch.arange(256).to(torch.uint8)
    ours, ref = decode(codes, fmt), codes.view(fmt.torch_dtype).float()
    assert torch.equal(ours.isnan(), ref.isnan())
    assert torch.equal(ours[~ours.isnan()], ref[~ref.isnan()])


@pytest.mark.parametrize("fmt", [E4M3, E5M2])
def test_encode_matches_torch_on_codes_midpoints_and_overflow(fmt):
    grid = positive_grid(fmt)
    mids = (grid[1:] + grid[:-1]) / 2
    quarter = grid[:-1] + (grid[1:] - grid[:-1]) / 4
    x = torch.cat([grid, mids, quarter, mids.nextafter(torch.tensor(0.0)), mids.nextafter(torch.tensor(1e9))])
    x = torch.cat([x, -x, torch.tensor([fmt.max * 1.03, fmt.max * 1.5, 1e30, float("inf"), -float("inf"),
                                         fmt.min_subnormal / 2, fmt.min_subnormal * 0.5001])]).float()
    assert torch.equal(encode(x, fmt), x.to(fmt.torch_dtype).view(torch.uint8))
    g = torch.Generator().manual_seed(1)
    r = torch.randn(50_000, generator=g) * torch.exp2(torch.randint(-20, 20, (50_000,), generator=g).float())
    assert torch.equal(encode(r, fmt), r.to(fmt.torch_dtype).view(torch.uint8))
    assert decode(encode(torch.tensor([float("nan")]), fmt), fmt).isnan().all()


def test_format_constants():
    assert (E4M3.max, E5M2.max) == (448.0, 57344.0)
    assert (E4M3.min_subnormal, E5M2.min_subnormal) == (2.0 ** -9, 2.0 ** -16)
    assert len(positive_grid(E4M3)) == 127 and len(positive_grid(E5M2)) == 124


# ---- quantizers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ue8m0", [False, True])
def test_1x128_is_deepgemm_per_token_cast_bitwise(ue8m0):
    for x in _inputs():
        ref_q, ref_s = per_token_cast_to_fp8(x, ue8m0)
        q = quantize(x, (1, 128), power_of_two=ue8m0)
        assert _same_codes(q.data, ref_q) and torch.equal(q.scale, ref_s)


@pytest.mark.parametrize("ue8m0", [False, True])
def test_128x128_is_deepgemm_per_block_cast_bitwise(ue8m0):
    for x in _inputs():
        ref_q, ref_s = per_block_cast_to_fp8(x, ue8m0)
        q = quantize(x, (128, 128), power_of_two=ue8m0)
        assert _same_codes(q.data, ref_q) and torch.equal(q.scale, ref_s)


def test_deepseek_v3_act_quant_and_weight_dequant():
    x = torch.randn(64, 512, generator=torch.Generator().manual_seed(2))
    ref_q, ref_s = act_quant(x)
    q = quantize(x, (1, 128))
    torch.testing.assert_close(q.scale, ref_s, rtol=1e-6, atol=0)
    # V3 divides by s, DeepGEMM multiplies by 1/s: the codes may differ by one step, rarely
    diff = (q.data.view(torch.uint8).int() - ref_q.view(torch.uint8).int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
    w = torch.randn(300, 260)
    wq = quantize(w, (128, 128))
    assert torch.equal(dequantize(wq), weight_dequant(wq.data, wq.scale))


def test_128x1_is_1x128_of_the_transpose():
    x = torch.randn(300, 200)
    a, b = quantize(x, (128, 1)), quantize(x.T.contiguous(), (1, 128))
    assert _same_codes(a.data.T.contiguous(), b.data) and torch.equal(a.scale, b.scale.T)


def test_quantize_rejects_nan_and_bad_tiles():
    with pytest.raises(ValueError, match="NaN"):
        quantize(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="tile"):
        quantize(torch.randn(4, 4), (0, 128))
    with pytest.raises(ValueError, match="2-D"):
        quantize(torch.randn(4))


def test_given_scale_saturates_instead_of_overflowing():
    x = torch.tensor([[1.0, 900.0, -2000.0]])
    q = quantize(x, "tensor", scale=torch.tensor(1.0))   # a stale (delayed) scale: 900 and -2000 do not fit
    assert q.data.float().tolist() == [[1.0, 448.0, -448.0]]


def test_finer_tiles_lower_the_error_with_an_outlier_channel():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(512, 512, generator=g) * torch.exp(torch.randn(512, 1, generator=g))  # token-wise scale
    x[:, 7] *= 100
    sq = {t: sqnr_db(x, fake_quantize(x, t)) for t in ["tensor", (1, 128), (128, 128)]}
    assert sq[(1, 128)] > sq[(128, 128)] > sq["tensor"] and sq[(1, 128)] > 25


def test_calc_diff_is_deepgemm_s():
    x, y = torch.randn(100), torch.randn(100)
    assert calc_diff(x, y) == pytest.approx(float(deepgemm_calc_diff(x, y)), rel=1e-12)
    assert calc_diff(x, x) == pytest.approx(0.0, abs=1e-15)


# ---- accumulation -----------------------------------------------------------------------------------------------

def test_round_to_bits():
    x = torch.tensor([1.0 + 2 ** -20, 3.0, -1.9999999], dtype=torch.float64)
    assert round_to_bits(x, 14).tolist() == [1.0, 3.0, -(2 - 2 ** -13)]
    assert round_to_bits(torch.tensor([1 + 2 ** -14], dtype=torch.float64), 14, "nearest").item() == 1.0


def test_exact_accumulator_is_the_float64_product():
    a, b = quantize(torch.randn(32, 512), (1, 128)), quantize(torch.randn(16, 512), (128, 128))
    exact = (a.dequantize().double() @ b.dequantize().double().T)
    torch.testing.assert_close(fp8_gemm_simulated(a, b, acc_bits=None).double(), exact, rtol=1e-6, atol=1e-5)
    A, B = a.data.double(), b.data.double()
    assert torch.equal(limited_accumulate(A, B, acc_bits=53), A @ B.T) or \
        torch.allclose(limited_accumulate(A, B, acc_bits=53), A @ B.T, rtol=1e-15)


def test_promotion_every_128_fixes_the_limited_accumulator():
    no_promo = accumulation_error(4096, n_c=None, align="products")
    promo = accumulation_error(4096, n_c=128, align="products")
    assert no_promo["calc_diff"] > 1e-3 > 1e-5 > promo["calc_diff"]
    plain = accumulation_error(4096, n_c=None, align="sum")
    assert 1e-3 < plain["rel_error"] < 1e-2                       # 14 bits, truncated: a few tenths of a percent
    assert accumulation_error(4096, n_c=128, align="sum")["rel_error"] < plain["rel_error"] / 10


def test_tile_scales_must_be_applied_at_promotion():
    a, b = quantize(torch.randn(8, 256), (1, 128)), quantize(torch.randn(8, 256), (128, 128))
    with pytest.raises(ValueError, match="promotion"):
        fp8_gemm_simulated(a, b, n_c=None)


# ---- the FP8 linear layer ---------------------------------------------------------------------------------------

def test_fp8_linear_gemms_read_the_quantized_operands_exactly():
    torch.manual_seed(0)
    x = torch.randn(256, 384, requires_grad=True)
    w = torch.randn(200, 384, requires_grad=True)
    y = fp8_linear(x, w, recipe="deepseek")
    g = torch.randn_like(y)
    y.backward(g)
    fq = fake_quantize
    torch.testing.assert_close(y, fq(x, (1, 128)) @ fq(w, (128, 128)).T)
    torch.testing.assert_close(x.grad, fq(g, (1, 128)) @ fq(w, (128, 128)))
    torch.testing.assert_close(w.grad, fq(g, (128, 1)).T @ fq(x, (128, 1)))


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_fp8_linear_is_close_to_fp32(recipe):
    torch.manual_seed(1)
    x = torch.randn(300, 256, requires_grad=True)
    w = torch.randn(192, 256, requires_grad=True)
    y = fp8_linear(x, w, recipe=recipe)
    g = torch.randn_like(y)
    y.backward(g)
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    y0 = x @ w.T
    y0.backward(g)
    for ours, ref in ((y, y0), (gx, x.grad), (gw, w.grad)):
        assert 1e-5 < calc_diff(ours, ref) < 1e-3


def test_convert_to_fp8_keeps_embedding_head_and_router_high_precision():
    from nanoseek.models.decoder import Decoder, DecoderConfig
    cfg = DecoderConfig(vocab_size=50, n_layer=2, n_embd=64, n_head=4, n_kv_head=4, intermediate_size=128,
                        max_seq_len=32, ffn="moe", n_routed_experts=4, num_experts_per_tok=2,
                        moe_intermediate_size=32)
    torch.manual_seed(0)
    model = Decoder(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = convert_to_fp8(model)
    assert names and not any(n.endswith(("lm_head", "embed")) or "router" in n for n in names)
    assert isinstance(model.lm_head, nn.Linear) and not isinstance(model.lm_head, FP8Linear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # same parameters
    idx = torch.randint(0, 50, (2, 32))
    _, loss = model(idx, idx)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "q_proj" in n)


def test_bad_backend_and_recipe_are_value_errors():
    with pytest.raises(ValueError, match="backend"):
        fp8_linear(torch.randn(2, 128), torch.randn(4, 128), backend="cuda")
    with pytest.raises(ValueError, match="recipe"):
        fp8_linear(torch.randn(2, 128), torch.randn(4, 128), recipe="mxfp8")


def test_cast_fp8_overflow_rule_is_explicit():
    from nanoseek.quant import cast_fp8
    x = torch.tensor([470.0, -1e9, 448.0, 1.0])
    assert cast_fp8(x).float()[:2].isnan().all() and cast_fp8(x).float()[2:].tolist() == [448.0, 1.0]
    assert cast_fp8(x, saturate=True).float().tolist() == [448.0, -448.0, 448.0, 1.0]
    assert torch.isinf(cast_fp8(torch.tensor([1e9]), E5M2).float()).all()


def test_scaled_mm_k_padding_keeps_the_values():
    from nanoseek.quant.scaled_mm import _pad_k
    q = quantize(torch.randn(8, 768), (1, 128))
    p = _pad_k(q, 8)
    assert p.data.shape == (8, 1024) and p.scale.shape == (8, 8)
    assert torch.equal(p.dequantize()[:, :768], q.dequantize()) and p.dequantize()[:, 768:].abs().sum() == 0


def test_gpu_backends_say_what_they_need_on_a_cpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    a, b = quantize(torch.randn(4, 128), (1, 128)), quantize(torch.randn(4, 128), (128, 128))
    for backend in ("scaled_mm", "triton"):
        with pytest.raises(ValueError, match="CUDA|GPU"):
            from nanoseek.quant import fp8_mm
            fp8_mm(a, b, backend)


def test_experiment_variants_share_initial_weights():
    from nanoseek.models.decoder import DecoderConfig
    from nanoseek.quant.experiment import build_model
    cfg = DecoderConfig(vocab_size=30, n_layer=1, n_embd=64, n_head=4, n_kv_head=4, intermediate_size=128,
                        max_seq_len=16)
    a, b = build_model("fp32", cfg, seed=3), build_model("fp8-deepseek", cfg, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert isinstance(b.layers[0].ffn.up_proj, FP8Linear) and not isinstance(a.layers[0].ffn.up_proj, FP8Linear)
    with pytest.raises(ValueError, match="variant"):
        build_model("int8", cfg, seed=0)


def test_from_linear_shares_parameters_and_matches_fake_quantized_linear():
    lin = nn.Linear(256, 130)
    f = FP8Linear.from_linear(lin)
    assert f.weight is lin.weight and f.bias is lin.bias
    x = torch.randn(3, 5, 256)
    want = fake_quantize(x.reshape(-1, 256), (1, 128)) @ fake_quantize(lin.weight.detach(), (128, 128)).T + lin.bias
    torch.testing.assert_close(f(x).reshape(-1, 130), want)
