"""Chapter 10's `full` path helpers: a real Qwen2.5-Instruct policy through transformers, and its tiny
random stand-in (same classes, random weights, a small local BPE tokenizer) for CPU tests. (Chapter 10.)"""
from __future__ import annotations

import torch

QWEN_CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_chat_tokenizer(vocab_size: int = 400):
    """A byte-level BPE trained here in milliseconds, with Qwen's chat markers and template (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from minids.reasoning import arithmetic
    from nanoseek.rl.tasks import R1_INSTRUCTION, R1_SYSTEM, ASSISTANT_START

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [r["prompt"] + r["answer"] for r in arithmetic("train", 200, 0, digits=3)]
    corpus += [f"{R1_SYSTEM} {R1_INSTRUCTION} What is {ASSISTANT_START} system user assistant"] * 5
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = QWEN_CHAT_TEMPLATE
    return fast


def tiny_random_qwen2(vocab_size: int, seed: int = 0, hidden_size: int = 32, layers: int = 2):
    """A transformers Qwen2ForCausalLM with every weight random (norm weights near 1), tied embeddings."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    g = torch.Generator().manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True)
    hf = Qwen2ForCausalLM._from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            p.copy_(noise + 1.0 if "norm" in name else noise)
    return hf


def load_policy(name: str | None, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                max_seq_len: int = 1024):
    """(Decoder policy, tokenizer): real weights by hub name (Colab, GPU), or with `name=None` the tiny random
    Qwen2 and its local tokenizer. Either way the policy is our `Decoder`, converted by `nanoseek.interop`."""
    from nanoseek.interop import from_hf

    if name is None:
        tok = tiny_chat_tokenizer()
        hf = tiny_random_qwen2(len(tok))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(name)
        hf = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, attn_implementation="eager",
                                                  use_safetensors=True)  # never a pickle
    policy = from_hf(hf, max_seq_len=max_seq_len).to(device=device, dtype=dtype)
    return policy, tok
