"""Our chapter-1 GPT (and our tokenizer) as a `transformers` GPT-2 model folder. (Chapter 3.)

nanoGPT *is* GPT-2's architecture, so the mapping is a renaming plus one transpose:

| ours (`nanoseek.models.gpt.GPT`)          | transformers `GPT2LMHeadModel`         |
| ----------------------------------------- | -------------------------------------- |
| `transformer.wte/wpe.weight`              | same names                             |
| `transformer.h.i.ln_1/ln_2`               | same names (bias zeros when we have none) |
| `...attn.c_attn.weight` (3C, C) `nn.Linear` | `...attn.c_attn.weight` (C, 3C) `Conv1D`: transposed |
| `...attn.c_proj`, `...mlp.c_fc`, `...mlp.c_proj` | transposed the same way             |
| `transformer.ln_f`, `lm_head` (tied to wte) | same, `tie_word_embeddings=True`      |

GELU is the exact (erf) one in our MLP, so the config says `activation_function="gelu"` (GPT-2's own
checkpoints use the tanh approximation, `gelu_new`); LayerNorm eps is PyTorch's 1e-5 in both.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from nanoseek.data.chat import BOS, CHAT_TEMPLATE, END
from nanoseek.interop._weights import assert_written, check_tied, check_weights, meta_shapes, poison

_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_NORMS = ("ln_1", "ln_2")


def gpt2_config(config, bos_token_id: int | None = None, eos_token_id: int | None = None):
    """A `transformers.GPT2Config` with the shapes of our `GPTConfig` and no dropout."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, n_inner=4 * config.n_embd,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-5, scale_attn_weights=True, tie_word_embeddings=True,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id,
    )


def _bias(module: nn.Module, n: int) -> torch.Tensor:
    b = getattr(module, "bias", None)
    return b.detach().clone() if b is not None else torch.zeros(n)


def to_gpt2_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our GPT's weights under GPT-2's names and layouts (biases as zeros where our config has none)."""
    t = model.transformer
    C = model.config.n_embd
    sd = {"transformer.wte.weight": t.wte.weight.detach().clone(),
          "transformer.wpe.weight": t.wpe.weight.detach().clone(),
          "transformer.ln_f.weight": t.ln_f.weight.detach().clone(),
          "transformer.ln_f.bias": _bias(t.ln_f, C)}
    for i, block in enumerate(t.h):
        for name in _NORMS:
            ln = getattr(block, name)
            sd[f"transformer.h.{i}.{name}.weight"] = ln.weight.detach().clone()
            sd[f"transformer.h.{i}.{name}.bias"] = _bias(ln, C)
        for name in _LINEARS:
            lin = block.get_submodule(name)
            sd[f"transformer.h.{i}.{name}.weight"] = lin.weight.detach().t().contiguous()  # (out, in) -> (in, out)
            sd[f"transformer.h.{i}.{name}.bias"] = _bias(lin, lin.out_features)
    sd["lm_head.weight"] = model.lm_head.weight.detach().clone()
    return sd


def to_gpt2(model: nn.Module, bos_token_id: int | None = None, eos_token_id: int | None = None):
    """A `transformers.GPT2LMHeadModel` (eager attention, eval mode) computing the same function as `model`."""
    from transformers import GPT2LMHeadModel

    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise ValueError("export needs the output head tied to the token embedding (GPT-2 ties them)")
    hf = GPT2LMHeadModel(gpt2_config(model.config, bos_token_id, eos_token_id))
    hf.config._attn_implementation = "eager"
    missing, unexpected = hf.load_state_dict(to_gpt2_state_dict(model), strict=False)
    params = {name for name, _ in hf.named_parameters()}
    if unexpected or (set(missing) & params - {"lm_head.weight"}):
        raise ValueError(f"GPT-2 state dict mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.eval()


def from_gpt2(hf_model) -> nn.Module:
    """Our GPT with the weights of a `GPT2LMHeadModel` (the inverse of `to_gpt2`; biases kept)."""
    from nanoseek.models.gpt import GPT, GPTConfig

    c = hf_model.config
    check_config(c)
    cfg = GPTConfig(block_size=c.n_positions, vocab_size=c.vocab_size, n_layer=c.n_layer,
                    n_head=c.n_head, n_embd=c.n_embd, dropout=0.0, bias=True)
    with torch.device("meta"):
        expected = meta_shapes(GPT(cfg))
    where = "GPT2LMHeadModel -> GPT"
    sd = {}
    for k, v in hf_model.state_dict().items():
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue  # the causal-mask buffers of old transformers versions
        if any(k.endswith(f".{name}.weight") for name in _LINEARS):
            v = v.t()  # Conv1D (in, out) -> Linear (out, in)
        sd[k] = v
    check_weights(expected, sd, where, "vocab_size, n_positions, n_embd and n_layer set these shapes",
                  optional=("lm_head.weight",))
    check_tied(True, sd.get("lm_head.weight"), sd["transformer.wte.weight"], where,
               why="our GPT ties its head to the token embedding", fix="it cannot be converted")
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: one tensor under two names
    model = poison(GPT(cfg))
    model.load_state_dict(sd, strict=True)
    assert_written(model, where)
    return model.eval()


def check_config(c) -> None:
    """Refuse the GPT2Config options that change the function and that our GPT does not implement."""
    if (c.n_inner or 4 * c.n_embd) != 4 * c.n_embd or c.activation_function != "gelu":
        raise ValueError(f"only n_inner=4*n_embd and activation_function='gelu' map to our GPT, got "
                         f"n_inner={c.n_inner!r}, activation_function={c.activation_function!r}")
    unsupported = {
        "scale_attn_by_inverse_layer_idx": (False, "our attention scales scores by 1/sqrt(head_dim) only"),
        "scale_attn_weights": (True, "our attention always scales scores by 1/sqrt(head_dim)"),
        "add_cross_attention": (False, "our GPT is a decoder only"),
    }
    for name, (ours, why) in unsupported.items():
        value = getattr(c, name, ours)
        if bool(value) != ours:
            raise ValueError(f"GPT2Config {name}={value!r} is not supported ({why}; ours is {name}={ours})")
    eps = getattr(c, "layer_norm_epsilon", 1e-5)
    if eps != 1e-5:
        raise ValueError(f"GPT2Config layer_norm_epsilon={eps!r} is not supported (our LayerNorms use PyTorch's "
                         "1e-5)")


def export_gpt2(model: nn.Module, tokenizer, directory: str | os.PathLike) -> Path:
    """Write `directory` with our model as GPT-2 and our tokenizer, with the chat template and end-of-turn as
    EOS, so `AutoModelForCausalLM`, `AutoTokenizer` and `pipeline("text-generation")` load it offline."""
    directory = Path(directory)
    bos, eos = tokenizer.special_id(BOS), tokenizer.special_id(END)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"model vocab_size={model.config.vocab_size} is smaller than the tokenizer's "
                         f"{tokenizer.vocab_size}")
    hf = to_gpt2(model, bos_token_id=bos, eos_token_id=eos)
    hf.generation_config.bos_token_id = bos
    hf.generation_config.eos_token_id = eos
    hf.generation_config.pad_token_id = eos
    hf.save_pretrained(str(directory))
    tokenizer.save_pretrained(directory, chat_template=CHAT_TEMPLATE, bos_token=BOS, eos_token=END, pad_token=END)
    return directory


# the names `nanoseek.interop.from_hf` / `to_hf` dispatch to
from_hf = from_gpt2
to_hf = to_gpt2

__all__ = ["gpt2_config", "to_gpt2_state_dict", "to_gpt2", "from_gpt2", "export_gpt2", "from_hf", "to_hf"]
