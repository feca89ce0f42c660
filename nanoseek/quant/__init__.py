"""FP8 training as DeepSeek-V3 does it: formats, fine-grained quantization, accumulation, FP8 linear. (Chapter 8.)

- `formats`: E4M3/E5M2 decoded and encoded bit by bit (matches torch's FP8 dtypes on all 256 codes);
- `quantize`: per-tensor, 1×128, 128×1 and 128×128 scaled quantization (DeepGEMM's casts), SQNR, calc_diff;
- `gemm`: a simulated FP8 GEMM with a limited-precision tensor-core accumulator and promotion every N_C;
- `linear`: `FP8Linear` (Fprop, Dgrad, Wgrad through FP8 operands), recipes, `convert_to_fp8`;
- `scaled_mm`: the real GEMMs on a Hopper GPU via `torch._scaled_mm` (`nanoseek.kernels.fp8_gemm`: Triton).
"""
from nanoseek.quant.formats import E4M3, E5M2, FP8Format, all_values, cast_fp8, decode, encode, positive_grid
from nanoseek.quant.gemm import accumulation_error, fp8_gemm_simulated, limited_accumulate, round_to_bits
from nanoseek.quant.linear import (RECIPES, FP8Linear, FP8Recipe, convert_to_fp8, fp8_linear, fp8_mm,
                                   get_recipe, transpose)
from nanoseek.quant.quantize import Quantized, calc_diff, dequantize, fake_quantize, quantize, sqnr_db

__all__ = [
    "E4M3", "E5M2", "FP8Format", "all_values", "cast_fp8", "decode", "encode", "positive_grid",
    "accumulation_error", "fp8_gemm_simulated", "limited_accumulate", "round_to_bits",
    "RECIPES", "FP8Linear", "FP8Recipe", "convert_to_fp8", "fp8_linear", "fp8_mm", "get_recipe", "transpose",
    "Quantized", "calc_diff", "dequantize", "fake_quantize", "quantize", "sqnr_db",
]
