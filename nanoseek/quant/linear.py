"""FP8 training: a linear layer whose three GEMMs read FP8 operands, and a model converter. (Chapter 8.)

A linear layer y = x Wᵀ runs three GEMMs in training, each with its own reduction dimension K:

| GEMM | computes | reduces over | DeepSeek-V3 quantizes |
| --- | --- | --- | --- |
| Fprop | y = x Wᵀ | in-features | x in 1×128 tiles, W in 128×128 blocks |
| Dgrad | dx = dy W | out-features | dy in 1×128 tiles, W in 128×128 blocks |
| Wgrad | dW = dyᵀ x | tokens | dy and x in 128×1 tiles (128 tokens of one channel) |

Every tile lies along its GEMM's K, so each 128-long stretch of K has one scale per row of each operand:
that is what lets the GEMM apply the scales at promotion time (`nanoseek.quant.gemm`). Master weights,
gradients and optimizer state stay in FP32; the layer's output and its input gradient come out in the
input's dtype.

Recipes (`RECIPES`): ``"deepseek"`` (the table above), ``"tensorwise"`` (one scale per tensor everywhere:
the classic recipe), ``"block_grad"`` (DeepSeek's, but activation gradients in 128×128 blocks: the choice
the paper reports diverging for a 16B MoE).

Backends, one switch: ``"sim"`` multiplies the dequantized operands (the exact FP8 values times their
exact scales) with an FP32 matmul: runs anywhere, bit-for-bit what an FP8 GEMM with FP32 accumulation
computes. ``"scaled_mm"`` runs real FP8 GEMMs through ``torch._scaled_mm`` (a Hopper GPU);
``"triton"`` through the chapter's Triton kernel (`nanoseek.kernels.fp8_gemm`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nanoseek.quant.quantize import Quantized, quantize

BACKENDS = ("sim", "scaled_mm", "triton")


@dataclass(frozen=True)
class FP8Recipe:
    name: str
    x_tile: object = (1, 128)          # Fprop: activations
    w_tile: object = (128, 128)        # Fprop and Dgrad: weights
    grad_tile: object = (1, 128)       # Dgrad: output gradients
    wgrad_x_tile: object = (128, 1)    # Wgrad: activations, tiles along tokens
    wgrad_grad_tile: object = (128, 1)  # Wgrad: output gradients, tiles along tokens
    fmt: str = "e4m3"                  # DeepSeek-V3: E4M3 for every tensor
    grad_fmt: str = "e4m3"
    power_of_two: bool = False


RECIPES = {
    "deepseek": FP8Recipe("deepseek"),
    "tensorwise": FP8Recipe("tensorwise", "tensor", "tensor", "tensor", "tensor", "tensor"),
    "block_grad": FP8Recipe("block_grad", grad_tile=(128, 128), wgrad_grad_tile=(128, 128)),
}


def get_recipe(recipe: "FP8Recipe | str") -> FP8Recipe:
    if isinstance(recipe, FP8Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown FP8 recipe {recipe!r}; expected one of {tuple(RECIPES)}")
    return RECIPES[recipe]


def transpose(q: Quantized) -> Quantized:
    """The same codes and scales seen as the transposed matrix (tiles transposed too)."""
    tile = q.tile if q.tile == "tensor" else (q.tile[1], q.tile[0])
    scale = q.scale if q.tile == "tensor" else q.scale.t().contiguous()
    return Quantized(q.data.t().contiguous(), scale, tile)


def fp8_mm(a: Quantized, b: Quantized, backend: str = "sim", out_dtype: torch.dtype = torch.float32
           ) -> torch.Tensor:
    """a (M, K) @ b (N, K)ᵀ from FP8 operands whose tiles lie along K (or per tensor)."""
    if backend == "sim":
        return (a.dequantize() @ b.dequantize().T).to(out_dtype)
    if backend == "scaled_mm":
        from nanoseek.quant.scaled_mm import scaled_mm
        return scaled_mm(a, b, out_dtype=out_dtype)
    if backend == "triton":
        from nanoseek.kernels.fp8_gemm import fp8_gemm_quantized
        return fp8_gemm_quantized(a, b, out_dtype=out_dtype)
    raise ValueError(f"fp8 backend must be one of {BACKENDS}, got backend={backend!r}")


class _FP8LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, recipe: FP8Recipe, backend: str):  # x (M, K), weight (N, K) -> (M, N)
        xq = quantize(x, recipe.x_tile, recipe.fmt, power_of_two=recipe.power_of_two)
        wq = quantize(weight, recipe.w_tile, recipe.fmt, power_of_two=recipe.power_of_two)
        ctx.save_for_backward(x)
        ctx.wq, ctx.recipe, ctx.backend, ctx.x_dtype = wq, recipe, backend, x.dtype
        return fp8_mm(xq, wq, backend, out_dtype=x.dtype)

    @staticmethod
    def backward(ctx, dy):  # dy (M, N)
        (x,) = ctx.saved_tensors
        r, backend = ctx.recipe, ctx.backend
        dx = dw = None
        if ctx.needs_input_grad[0]:  # Dgrad: dx = dy W, K = out-features
            dyq = quantize(dy, r.grad_tile, r.grad_fmt, power_of_two=r.power_of_two)
            dx = fp8_mm(dyq, transpose(ctx.wq), backend, out_dtype=ctx.x_dtype)
        if ctx.needs_input_grad[1]:  # Wgrad: dW = dyᵀ x, K = tokens
            dyq_t = transpose(quantize(dy, r.wgrad_grad_tile, r.grad_fmt, power_of_two=r.power_of_two))
            xq_t = transpose(quantize(x, r.wgrad_x_tile, r.fmt, power_of_two=r.power_of_two))
            dw = fp8_mm(dyq_t, xq_t, backend, out_dtype=torch.float32)
        return dx, dw, None, None


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               recipe: "FP8Recipe | str" = "deepseek", backend: str = "sim") -> torch.Tensor:
    """F.linear with FP8 GEMMs in forward and backward; x (..., K), weight (N, K)."""
    if backend not in BACKENDS:
        raise ValueError(f"fp8 backend must be one of {BACKENDS}, got backend={backend!r}")
    shape = x.shape
    with torch.autocast(x.device.type, enabled=False):  # the FP8 GEMMs choose their own precision
        y = _FP8LinearFunction.apply(x.reshape(-1, shape[-1]), weight, get_recipe(recipe), backend)
    y = y.reshape(*shape[:-1], weight.shape[0])
    return y if bias is None else y + bias.to(y.dtype)


class FP8Linear(nn.Linear):
    """nn.Linear whose GEMMs read FP8 operands (weights stay FP32 master copies)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 recipe: "FP8Recipe | str" = "deepseek", backend: str = "sim", device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if backend not in BACKENDS:
            raise ValueError(f"fp8 backend must be one of {BACKENDS}, got backend={backend!r}")
        self.recipe, self.backend = get_recipe(recipe), backend

    @classmethod
    def from_linear(cls, linear: nn.Linear, recipe: "FP8Recipe | str" = "deepseek", backend: str = "sim"
                    ) -> "FP8Linear":
        """An FP8Linear that shares `linear`'s parameters (no copy: the optimizer's tensors stay the same)."""
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, recipe=recipe, backend=backend,
                  device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fp8_linear(x, self.weight, self.bias, self.recipe, self.backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", recipe={self.recipe.name}, backend={self.backend}"


# What DeepSeek-V3 keeps in BF16/FP32: embedding, output head, MoE gate (`Router`, not an nn.Linear here),
# normalization and the attention core (softmax(QKᵀ)V). Only nn.Linear layers are converted, minus these:
KEEP_HIGH_PRECISION = ("lm_head", "embed")


def convert_to_fp8(model: nn.Module, recipe: "FP8Recipe | str" = "deepseek", backend: str = "sim",
                   skip: tuple[str, ...] = KEEP_HIGH_PRECISION) -> list[str]:
    """Swap every nn.Linear of `model` (except names ending in `skip`) for an FP8Linear sharing its
    parameters, in place. Returns the converted names."""
    recipe = get_recipe(recipe)
    converted = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is not nn.Linear or full.split(".")[-1] in skip:
                continue
            setattr(module, child_name, FP8Linear.from_linear(child, recipe, backend))
            converted.append(full)
    return converted


