# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 1: nanoGPT from scratch
#
# Every DeepSeek model is, at heart, a **decoder-only Transformer (仅解码器 Transformer)** that reads a
# sequence of tokens and predicts the next one. In this chapter we build one from nothing: first a
# counting model, then self-attention one idea at a time, then a small GPT that we train on children's
# stories and sample from. Everything later in the book (KV caches, MLA, MoE, GRPO) is a change to the
# model you write here.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/01_nanogpt.ipynb)
#
# | scale | model | runs on | time | memory |
# | --- | --- | --- | --- | --- |
# | `tiny` (default) | 4 layers, 128 wide, 64 context (0.8M parameters) | 2-core laptop CPU | under a minute (44 s measured) | < 1 GB |
# | `full` (`NANOSEEK_SCALE=full`) | 6 layers, 384 wide, 256 context (10.7M parameters) | one H200 | whole notebook 111 s, training 73 s at 1.1M tokens/s in bf16 autocast (measured: `benchmarks/results/h200_full_runs.md`); T4 not measured | < 4 GB |
#
# **What you will learn**
# - to measure a language model by its loss in nats per token, starting from a bigram baseline;
# - to derive masked self-attention from "average the past", and to write it as one matrix product;
# - to assemble heads, blocks and a GPT, and to count its parameters from the config alone;
# - to train it with the book's training loop, and to sample with temperature and top-k.

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import nanoseek
from nanoseek import device, pick, seed_everything

seed_everything(1337)
dev = device()  # the training loop puts the model here; prompts and sampling generators follow it
print("nanoseek", nanoseek.__version__, "| torch", torch.__version__, "| device:", dev)

# %% [markdown]
# ## The configuration
# One cell decides the scale. `tiny` is nanoGPT's CPU "baby GPT"; `full` is nanoGPT's Shakespeare-char model.
# Nothing below this cell looks at the scale again.

# %%
CFG = pick(
    tiny=dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
              batch_size=16, max_steps=600, lr=2e-3, warmup_steps=50, eval_every=100, eval_batches=20),
    full=dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2,
              batch_size=64, max_steps=5000, lr=1e-3, warmup_steps=100, eval_every=250, eval_batches=50),
)
CFG

# %% [markdown]
# ## The data: synthetic children's stories
# `minids` generates a small corpus of short stories with a seeded generator (no downloads), in English and
# in Chinese. This chapter trains a **character-level (字符级)** model on the English half: every character is
# one token. Chapter 2 replaces characters with a byte-level BPE tokenizer that handles Chinese well.

# %%
from nanoseek.data import CharVocab, load_stories, window_batcher

train_text = load_stories("en", "train")
val_text = load_stories("en", "val")
print(f"train: {len(train_text):,} characters, val: {len(val_text):,} characters\n")
print(train_text[:500])

# %%
vocab = CharVocab.from_text(train_text + val_text)
print(f"vocabulary: {len(vocab)} characters:", "".join(vocab.chars).replace("\n", "\\n"))
train_ids = torch.tensor(vocab.encode(train_text))
val_ids = torch.tensor(vocab.encode(val_text))
assert vocab.decode(vocab.encode("Once upon a time")) == "Once upon a time"

# %% [markdown]
# ## A baseline that only counts: the bigram model
# The simplest language model predicts the next character from the current one alone, with probabilities
# read off a table of counts. Its **cross-entropy loss (交叉熵损失)** on held-out text, in nats per character, is
# the number every later model must beat. A uniform guess would score $\ln V$.

# %%
V = len(vocab)
counts = torch.ones(V, V)  # add-one smoothing: no zero probabilities on the validation set
counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1), accumulate=True)
bigram_probs = counts / counts.sum(dim=1, keepdim=True)  # row c: P(next | current = c)
bigram_val_loss = -bigram_probs[val_ids[:-1], val_ids[1:]].log().mean().item()
print(f"uniform guess: ln V = {math.log(V):.3f} nats/char; bigram on val: {bigram_val_loss:.3f} nats/char")

# %%
letters = [vocab.stoi[c] for c in "abcdefghijklmnopqrstuvwxyz "]
fig, ax = plt.subplots(figsize=(6, 5))
ax.imshow(bigram_probs[letters][:, letters], cmap="Blues")
labels = [vocab.chars[i] if vocab.chars[i] != " " else "␣" for i in letters]
ax.set_xticks(range(len(letters)), labels)
ax.set_yticks(range(len(letters)), labels)
ax.set_xlabel("next character")
ax.set_ylabel("current character")
ax.set_title("Bigram probabilities P(next | current)")
plt.show()

# %% [markdown]
# A bigram model writes letter salad: it knows which letter tends to follow which, nothing more.

# %%
g = torch.Generator().manual_seed(0)
ids = [vocab.stoi["O"]]
for _ in range(200):
    ids.append(torch.multinomial(bigram_probs[ids[-1]], 1, generator=g).item())
print(vocab.decode(ids))

# %% [markdown]
# ## Self-attention, from averaging to a masked softmax
# To use more context, each position must gather information from the positions before it. The crudest
# way: replace each position's vector by the **average of itself and everything before it**. Three ways to
# compute the same thing, each faster than the last:

# %%
torch.manual_seed(0)
B, T, C = 2, 6, 4
x = torch.randn(B, T, C)

# 1. a loop over positions
avg_loop = torch.stack([x[:, : t + 1].mean(dim=1) for t in range(T)], dim=1)  # (B, T, C)

# 2. one matrix product with a lower-triangular averaging matrix
weights = torch.tril(torch.ones(T, T))
weights = weights / weights.sum(dim=1, keepdim=True)  # (T, T), row t averages positions 0..t
avg_matmul = weights @ x  # (T, T) @ (B, T, C) -> (B, T, C)

# 3. a softmax over scores, with the future masked to -inf
scores = torch.zeros(T, T).masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf"))
avg_softmax = scores.softmax(dim=-1) @ x

torch.testing.assert_close(avg_loop, avg_matmul)
torch.testing.assert_close(avg_loop, avg_softmax)
print(weights)

# %% [markdown]
# Version 3 is the one that generalizes: if the scores are not all zero but **computed from the data**, each
# position chooses how much to take from each earlier one. In **self-attention (自注意力)** position $t$
# emits a query $q_t$, every position emits a key $k_s$ and a value $v_s$, the score is $q_t \cdot k_s /
# \sqrt{d}$, and the future is masked:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d}} + M\right) V,
# \qquad M_{ts} = \begin{cases} 0 & s \le t \\ -\infty & s > t \end{cases}$$
#
# The $1/\sqrt{d}$ keeps the scores' variance near 1 whatever the head size, so that the softmax does not
# saturate into a one-hot at initialization. Measured:

# %%
for d in (16, 256):
    q, k = torch.randn(10_000, d), torch.randn(10_000, d)
    raw = (q * k).sum(-1)
    print(f"d={d:4d}: var(q·k) = {raw.var():7.1f}   var(q·k/√d) = {(raw / math.sqrt(d)).var():.2f}")

# %% [markdown]
# One head, written out. A **causal mask (因果掩码)** is the lower triangle:

# %%
def one_head(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor) -> torch.Tensor:
    """Causal self-attention with one head. x: (B, T, C); w_*: (C, D). Returns (B, T, D)."""
    T = x.shape[1]
    q, k, v = x @ w_q, x @ w_k, x @ w_v  # each (B, T, D)
    scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])  # (B, T, T)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v


# %% [markdown]
# **Multi-head attention (多头注意力, MHA)** runs $H$ heads of size $D = C/H$ side by side, concatenates
# their outputs and mixes them with one output projection. Each head can attend to something different
# (the previous letter, the start of the word, the last space).

# %%
def multi_head(x: torch.Tensor, heads: list[tuple], w_o: torch.Tensor) -> torch.Tensor:
    """heads: one (w_q, w_k, w_v) per head. Returns (B, T, C)."""
    return torch.cat([one_head(x, *w) for w in heads], dim=-1) @ w_o


# %% [markdown]
# ## The package version
# The package implements the same computation with all heads in one batched matrix product and PyTorch's
# fused `scaled_dot_product_attention`. Here is its source:

# %%
from nanoseek.models.gpt import GPT, GPTConfig, CausalSelfAttention, gpt_num_params

nanoseek.show(CausalSelfAttention)

# %% [markdown]
# We copy the package module's weights into our per-head matrices and check that both compute the same output:

# %%
torch.manual_seed(1)
C_, H_ = 32, 4
D_ = C_ // H_
attn = CausalSelfAttention(GPTConfig(n_embd=C_, n_head=H_, bias=False)).eval()
W_q, W_k, W_v = attn.c_attn.weight.T.split(C_, dim=1)  # each (C, C); head h uses columns h*D:(h+1)*D
heads = [(W_q[:, h * D_:(h + 1) * D_], W_k[:, h * D_:(h + 1) * D_], W_v[:, h * D_:(h + 1) * D_]) for h in range(H_)]
x = torch.randn(3, 10, C_)
torch.testing.assert_close(multi_head(x, heads, attn.c_proj.weight.T), attn(x), atol=1e-5, rtol=1e-5)
print("inline multi-head attention == nanoseek CausalSelfAttention ✓")

# %% [markdown]
# ## The block and the GPT
# A Transformer **block (块)** alternates communication (attention) with computation (a two-layer MLP applied
# to each position). Each sub-layer sits on a **residual connection (残差连接)** and reads a **LayerNorm (层归一化)**ed
# copy of the stream (*pre-norm*), which keeps deep stacks trainable:

# %%
from nanoseek.models.gpt import Block

nanoseek.show(Block)

# %% [markdown]
# The GPT adds a token embedding, a learned position embedding, a stack of blocks, a final LayerNorm and an
# output head that shares its weights with the token embedding (*weight tying*). Its parameter count follows
# from the config alone: each layer has $12C^2 + 13C$ parameters (attention $4C^2 + 4C$, MLP $8C^2 + 5C$, two
# LayerNorms $4C$), plus $VC$ for tokens, $T_{max}C$ for positions and $2C$ for the final LayerNorm.

# %%
model_config = GPTConfig(vocab_size=V, block_size=CFG["block_size"], n_layer=CFG["n_layer"],
                         n_head=CFG["n_head"], n_embd=CFG["n_embd"], dropout=CFG["dropout"])
model = GPT(model_config)
C, L = model_config.n_embd, model_config.n_layer
formula = L * (12 * C**2 + 13 * C) + V * C + model_config.block_size * C + 2 * C
print(f"parameters: {model.num_params():,} (model)  {formula:,} (formula)")
assert model.num_params() == formula == gpt_num_params(model_config)

# %% [markdown]
# Before training, the model should be no better than a uniform guess: its loss should be near $\ln V$.

# %%
get_batch = window_batcher(train_ids, val_ids, CFG["block_size"], CFG["batch_size"])
xb, yb = get_batch("train", torch.Generator().manual_seed(0))
print("a batch:", tuple(xb.shape), "| first row:", repr(vocab.decode(xb[0])))
_, loss0 = model(xb, yb)
print(f"initial loss {loss0.item():.3f} vs ln V = {math.log(V):.3f}")
assert abs(loss0.item() - math.log(V)) < 0.3

# %% [markdown]
# ## Training
# The package's training loop (used by every chapter) runs AdamW with weight decay on the weight matrices
# only, a linear warmup then a cosine decay of the learning rate, gradient clipping, and an evaluation on fixed
# validation batches every `eval_every` steps. Its schedule:

# %%
from nanoseek.train import TrainConfig, lr_at, train

nanoseek.show(lr_at)

# %%
train_config = TrainConfig(max_steps=CFG["max_steps"], lr=CFG["lr"], warmup_steps=CFG["warmup_steps"],
                           eval_every=CFG["eval_every"], eval_batches=CFG["eval_batches"], seed=1337)
result = train(model, get_batch, train_config)
print(f"{result.tokens_per_second:,.0f} tokens/s over {result.seconds:.0f} s; final val loss {result.final_val_loss:.3f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
result.plot(ax)
ax.axhline(bigram_val_loss, color="gray", ls="--", label="bigram (val)")
ax.axhline(math.log(V), color="gray", ls=":", label="uniform (ln V)")
ax.legend()
ax.set_title("Character-level GPT on minids stories")
plt.show()

# %% [markdown]
# How far below the counting baseline did attention take us? The assert is the chapter's claim, with a margin
# that holds at `tiny` scale (the margin it reached is printed).

# %%
margin = bigram_val_loss - result.final_val_loss
print(f"bigram {bigram_val_loss:.3f}  →  GPT {result.final_val_loss:.3f} nats/char: {margin:.2f} nats lower "
      f"({math.exp(bigram_val_loss):.1f} → {math.exp(result.final_val_loss):.1f} in perplexity)")
assert margin > 0.5, margin

# %% [markdown]
# ## Sampling: temperature and top-k
# To generate, we feed the context, take the logits at the last position, turn them into probabilities and
# draw one token. Two knobs shape the draw: **temperature (温度)** divides the logits (below 1 sharpens the
# distribution, above 1 flattens it) and **top-k** keeps only the $k$ most likely tokens.

# %%
@torch.no_grad()
def sample(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """idx: (B, T) token ids. Appends max_new_tokens sampled tokens."""
    model.eval()
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])  # crop to the context the model knows
        logits = logits[:, -1, :] / temperature  # (B, V)
        if top_k is not None:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        next_id = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
        idx = torch.cat([idx, next_id], dim=1)
    return idx


def seeded(seed: int) -> torch.Generator:
    """A random generator on the model's device, so that samples repeat run after run."""
    return torch.Generator(device=dev).manual_seed(seed)


prompt = torch.tensor([vocab.encode("Once upon a time")], device=dev)
print(vocab.decode(sample(model, prompt, 120, temperature=1.0, top_k=10, generator=seeded(0))[0]))

# %% [markdown]
# The package's `generate` does the same for every model in the book (chapter 4 adds a KV cache to it). Its
# sampling rule, and a check that it draws exactly the tokens our loop draws from the same random generator:

# %%
from nanoseek.generate import filter_logits, generate, sample_next

nanoseek.show(filter_logits)
nanoseek.show(sample_next)
for temperature, top_k in ((1.0, None), (0.7, 5)):
    ours = sample(model, prompt, 60, temperature, top_k, generator=seeded(3))
    package = generate(model, prompt, 60, temperature=temperature, top_k=top_k, generator=seeded(3))
    assert torch.equal(ours, package)
print("inline sampling == nanoseek.generate ✓")

# %%
for temperature in (0.5, 1.0, 1.5):
    out = generate(model, prompt, 200, temperature=temperature, generator=seeded(0))
    print(f"--- temperature {temperature} ---\n{vocab.decode(out[0])}\n")

# %% [markdown]
# Low temperature repeats the safest phrases; high temperature invents words. We can measure that trade-off:
# the share of generated words that appear in the training text's vocabulary, against temperature.

# %%
train_words = set(train_text.split())


def real_word_share(text: str) -> float:
    words = text.split()[1:-1]  # the ends may be cut mid-word
    return sum(w.strip(".,!?\"'") in train_words or w in train_words for w in words) / max(1, len(words))


temps = [0.3, 0.6, 1.0, 1.5, 2.0]
shares = []
for t in temps:
    out = generate(model, prompt.repeat(4, 1), 150, temperature=t, generator=seeded(1))
    shares.append(sum(real_word_share(vocab.decode(row)) for row in out) / 4)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(temps, shares, "o-")
ax.set_xlabel("temperature")
ax.set_ylabel("share of real words")
ax.set_title("Sampling temperature vs. spelling")
plt.show()
assert shares[0] > shares[-1], shares

# %% [markdown]
# Move the slider to sample at other temperatures (the slider needs a live kernel; the book shows the samples
# printed above).

# %%
import ipywidgets as widgets


def show_sample(temperature: float = 1.0, top_k: int = 0):
    out = generate(model, prompt, 150, temperature=temperature, top_k=top_k or None,
                   generator=seeded(0))
    print(vocab.decode(out[0]))


widgets.interact(show_sample, temperature=widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.1),
                 top_k=widgets.IntSlider(value=0, min=0, max=20, description="top-k (0=off)"));

# %% [markdown]
# ## What did a head learn? An attention heat map
# The package's attention exposes its softmax weights. Here is one head of the last layer on a real validation
# sample: each row is a query position, each column a key it may look at.

# %%
text = val_text[:48]
idx = torch.tensor([vocab.encode(text)], device=dev)
with torch.no_grad():
    tok = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.shape[1], device=dev))
    for block in model.transformer.h[:-1]:
        tok = block(tok)
    last = model.transformer.h[-1]
    pattern = last.attn.attention_weights(last.ln_1(tok))[0].cpu()  # (H, T, T)
assert torch.allclose(pattern.sum(-1), torch.ones(pattern.shape[:2]))
assert torch.all(pattern.triu(1) == 0), "a causal head never looks ahead"

head = int(pattern.diagonal(dim1=-2, dim2=-1).mean(-1).argmin())  # the head that looks furthest from itself
fig, ax = plt.subplots(figsize=(7, 6))
ax.imshow(pattern[head], cmap="viridis")
chars = [c if c != " " else "␣" for c in text]
ax.set_xticks(range(len(chars)), chars, fontsize=7)
ax.set_yticks(range(len(chars)), chars, fontsize=7)
ax.set_title(f"layer {len(model.transformer.h)}, head {head}: who looks at whom")
plt.show()

# %% [markdown]
# ## Paper says / we measured
#
# nanoGPT's `train_shakespeare_char.py` (the `full` configuration here) reports a validation loss of about
# 1.47 nats/char on Shakespeare after 5,000 iterations. Our corpus is different (simpler, synthetic stories),
# so the numbers are not comparable one to one. At `full` scale on an H200 this notebook's model reached
# 0.113 nats/char after 5,000 steps (73 s of training in bf16 autocast; `benchmarks/results/h200_full_runs.md`): far below
# Shakespeare's 1.47, because our stories come from a small generator and repeat a great deal. The
# comparison that transfers is against the counting baseline on the same data:

# %%
print(f"| model | val loss (nats/char) | perplexity |\n| --- | --- | --- |")
print(f"| uniform | {math.log(V):.3f} | {V} |")
print(f"| bigram (counts) | {bigram_val_loss:.3f} | {math.exp(bigram_val_loss):.1f} |")
print(f"| GPT, {model.num_params() / 1e6:.2f}M params, {CFG['max_steps']} steps | {result.final_val_loss:.3f} | "
      f"{math.exp(result.final_val_loss):.1f} |")

# %% [markdown]
# ## In the wild
# Our GPT is GPT-2's architecture (Radford et al., 2019) at a small size. transformers' `GPT2LMHeadModel`
# with the same sizes has exactly the same number of parameters; chapter 3 exports our weights into it.

# %%
from transformers import GPT2Config, GPT2LMHeadModel

hf = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=model_config.block_size, n_embd=C,
                                n_layer=L, n_head=model_config.n_head))
hf_params = sum(p.numel() for p in hf.parameters())
print(f"transformers GPT-2: {hf_params:,} parameters; ours: {model.num_params():,}")
assert hf_params == model.num_params()

# %% [markdown]
# To try the real GPT-2 on a GPU: `GPT2LMHeadModel.from_pretrained("gpt2")` (124M parameters, 50,257 BPE tokens,
# 1,024 context). What production models add to this chapter's GPT: a subword tokenizer (chapter 2), rotary
# positions, RMSNorm and SwiGLU (chapter 4), a KV cache (chapter 4), and DeepSeek's MLA and MoE (chapters 5–6).
#
# ## Summary
# - A language model is judged by its cross-entropy on held-out text; a bigram table sets the bar.
# - Masked self-attention is a data-dependent weighted average of the past, computed as one softmax-masked matmul.
# - A GPT is embeddings + pre-norm residual blocks (attention, MLP) + a tied output head; $12C^2+13C$ per layer.
# - Trained with AdamW, warmup and cosine decay, it beats the bigram model by the margin measured above.
# - Temperature and top-k trade correctness for variety, as the real-word share showed.
#
# ## Exercises
# Edit each function, run its cell, and the checker tells you whether it is right. Solutions are hidden below
# each exercise.
#
# **Exercise 1 (easy).** Write the causal mask: a `(T, T)` bool tensor, `True` where query `i` may attend to key `j`.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch01 import check_causal_mask


def causal_mask(T: int) -> torch.Tensor:
    """(T, T) bool tensor, True where query i may look at key j."""
    raise NotImplementedError  # your code here


check_causal_mask(causal_mask)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch01 import check_causal_mask


def causal_mask(T: int) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril()


assert check_causal_mask(causal_mask)

# %% [markdown]
# **Exercise 2 (medium).** Write top-k filtering: keep the `k` largest logits of each row and set the others
# to `-inf`, so that softmax gives them probability 0.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch01 import check_top_k_filter


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits: (B, V). Return (B, V) with all but the k largest of each row set to -inf."""
    raise NotImplementedError  # your code here


check_top_k_filter(top_k_filter)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch01 import check_top_k_filter


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


assert check_top_k_filter(top_k_filter)

# %% [markdown]
# **Exercise 3 (medium).** Count the parameters of a GPT from its config alone (biases on, weight tying on).
# The checker compares with real models.

# %% tags=["exercise"]
from nanoseek.exercises.ch01 import check_count_params


def count_params(n_layer: int, n_embd: int, vocab_size: int, block_size: int) -> int:
    raise NotImplementedError  # your code here


check_count_params(count_params)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch01 import check_count_params


def count_params(n_layer: int, n_embd: int, vocab_size: int, block_size: int) -> int:
    C = n_embd
    per_layer = 12 * C * C + 13 * C  # attention 4C²+4C, MLP 8C²+5C, two LayerNorms 4C
    return n_layer * per_layer + vocab_size * C + block_size * C + 2 * C


assert check_count_params(count_params)

# %% [markdown]
# ## Further reading
# - The Transformer: {cite}`vaswani2017attention`. GPT-2: {cite}`radford2019language`.
# - nanoGPT and the "Let's build GPT" lecture this chapter follows: {cite}`karpathy2022nanogpt`.
# - Weight tying: {cite}`press2017using`. AdamW: {cite}`loshchilov2019decoupled`.
