"""The chapter-8 training comparison: one decoder trained in FP32, BF16 or FP8 recipes. (Chapter 8.)

Used by `notebooks/08_fp8.py` (one seed, live) and `benchmarks/fp8_train.py` (three seeds; the H200 run).
The model is chapter 4's decoder (`nanoseek.models.decoder`); FP8 variants have every nn.Linear except the
LM head swapped for `FP8Linear` (`convert_to_fp8`), and keep embedding, norms and attention core as they are.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.quant.linear import convert_to_fp8
from nanoseek.train import TrainConfig, TrainResult, train

VARIANTS = ("fp32", "bf16", "fp8-deepseek", "fp8-tensorwise", "fp8-block_grad")


def build_model(variant: str, config: DecoderConfig, seed: int, backend: str = "sim") -> Decoder:
    """The decoder of `variant`, initialized from `seed` (the same weights for every variant of a seed)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got variant={variant!r}")
    torch.manual_seed(seed)
    model = Decoder(config)
    if variant.startswith("fp8-"):
        convert_to_fp8(model, recipe=variant.removeprefix("fp8-"), backend=backend)
    return model


def train_precision(variant: str, config: DecoderConfig, get_batch, train_config: TrainConfig, *, seed: int = 0,
                    backend: str = "sim") -> TrainResult:
    """Train `variant` with seed `seed` (weights and batches). FP32 and FP8-simulated runs do everything
    else in FP32; "bf16" runs under BF16 autocast (on a CPU too); FP8 on a GPU keeps BF16 autocast around
    the FP8 GEMMs, as DeepSeek-V3 keeps BF16 for what is not an FP8 GEMM."""
    model = build_model(variant, config, seed, backend)
    on_gpu = (train_config.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    precision = "bf16" if variant == "bf16" or (variant.startswith("fp8-") and on_gpu) else "fp32"
    return train(model, get_batch, replace(train_config, seed=seed, precision=precision))
