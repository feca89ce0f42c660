"""A GPT block with its parts switchable, for chapter 1's ablation: attention alone, then the residual path,
the MLP and the pre-norm LayerNorms added one at a time. (Chapter 1.)

With every part on, `AblationBlock` computes exactly the package's `Block` (same submodules, same names), so
its weights load into a `Block` and back.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nanoseek.models.gpt import GPT, CausalSelfAttention, GPTConfig, MLP


@dataclass(frozen=True)
class Parts:
    """Which parts of a block are on."""

    residual: bool = True
    mlp: bool = True
    norm: bool = True


# The ablation ladder of chapter 1: each variant adds one part to the one before.
LADDER: dict[str, Parts] = {
    "attention only": Parts(residual=False, mlp=False, norm=False),
    "+ residual": Parts(residual=True, mlp=False, norm=False),
    "+ MLP": Parts(residual=True, mlp=True, norm=False),
    "+ LayerNorm (= Block)": Parts(residual=True, mlp=True, norm=True),
}


class AblationBlock(nn.Module):
    """x ← x + attn(ln_1(x)); x ← x + mlp(ln_2(x)), with the residual `x +`, the MLP and the norms optional."""

    def __init__(self, config: GPTConfig, parts: Parts = Parts()):
        super().__init__()
        self.parts = parts
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias) if parts.norm else nn.Identity()
        self.attn = CausalSelfAttention(config)
        if parts.mlp:
            self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias) if parts.norm else nn.Identity()
            self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, C)
        y = self.attn(self.ln_1(x), attn_mask)
        x = x + y if self.parts.residual else y
        if self.parts.mlp:
            y = self.mlp(self.ln_2(x))
            x = x + y if self.parts.residual else y
        return x


def ablated_gpt(config: GPTConfig, parts: Parts) -> GPT:
    """A GPT whose blocks are `AblationBlock(config, parts)`, initialised the way `GPT` initialises its own."""
    if not isinstance(parts, Parts):
        raise ValueError(f"parts must be a Parts, got {parts!r}")
    model = GPT(config)
    model.transformer.h = nn.ModuleList([AblationBlock(config, parts) for _ in range(config.n_layer)])
    model.transformer.h.apply(GPT._init_weights)
    for name, p in model.transformer.h.named_parameters():
        if name.endswith("c_proj.weight"):  # GPT-2's scaled init of the residual projections, as in GPT
            nn.init.normal_(p, mean=0.0, std=0.02 / config.n_layer ** 0.5 / 2 ** 0.5)
    return model


__all__ = ["Parts", "LADDER", "AblationBlock", "ablated_gpt"]
