"""Moving models to and from transformers: `from_hf(hf_model)` and `to_hf(model)`. (Chapter 4 onwards.)

`from_hf` dispatches on the transformers ``config.model_type``; `to_hf` on our model's config. Each family
lives in its own module (`qwen2` here; later chapters add theirs) with `from_hf`/`to_hf` functions: to add one,
add a line to `FROM_HF` and a test to `_to_hf_module`.
"""
from __future__ import annotations

import importlib

from torch import nn

FROM_HF: dict[str, str] = {  # transformers model_type -> nanoseek.interop module
    "qwen2": "nanoseek.interop.qwen2",
    "gpt2": "nanoseek.interop.gpt2",  # chapter 3: our nanoGPT <-> GPT2LMHeadModel
}


def _to_hf_module(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    if type(model).__name__ == "GPT":
        return "nanoseek.interop.gpt2"
    if type(model).__name__ == "Decoder" and getattr(cfg, "attention", None) == "gqa" \
            and getattr(cfg, "ffn", None) == "dense":
        return "nanoseek.interop.qwen2"
    raise ValueError(f"no transformers export for {type(model).__name__} with "
                     f"attention={getattr(cfg, 'attention', None)!r}, ffn={getattr(cfg, 'ffn', None)!r}")


def from_hf(hf_model, **kwargs) -> nn.Module:
    """Our model with the weights of a transformers model (dispatch on its config.model_type)."""
    model_type = getattr(getattr(hf_model, "config", None), "model_type", None)
    if model_type not in FROM_HF:
        raise ValueError(f"no nanoseek conversion for transformers model_type={model_type!r}; "
                         f"known: {sorted(FROM_HF)}")
    return importlib.import_module(FROM_HF[model_type]).from_hf(hf_model, **kwargs)


def to_hf(model: nn.Module, **kwargs):
    """The transformers model with the weights of ours."""
    return importlib.import_module(_to_hf_module(model)).to_hf(model, **kwargs)


__all__ = ["from_hf", "to_hf", "FROM_HF"]

FROM_HF["deepseek_v3"] = "nanoseek.interop.deepseek_v3"  # chapter 6: whole DeepseekV3ForCausalLM (MLA + MoE)
