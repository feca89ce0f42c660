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
# counting model, then self-attention one idea at a time, then a block piece by piece, then a small GPT that
# we train on the works of Shakespeare and sample from. Everything later in the book (KV caches, MLA, MoE,
# GRPO) is a change to the model you write here.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/01_nanogpt.ipynb)

# %%
try:
    from IPython.display import Markdown, display
except ImportError:  # run as a plain script where IPython is not installed (the GPU machine)
    Markdown, display = str, print

from nanoseek.benchmarking import budget_table

display(Markdown(budget_table(
    "01_nanogpt",
    tiny="4 layers, 128 wide, 64 context (0.8M parameters), 600 steps",
    full="6 layers, 384 wide, 256 context (10.7M parameters), 5,000 steps: nanoGPT's shakespeare-char",
    full_record="01_nanogpt_full")))

# %% [markdown]
# **What you will learn**
# - to measure a language model by its loss in nats per token, starting from a bigram baseline, and to check
#   that a validation set is really held out;
# - to derive masked self-attention from "average the past", and to write it as one matrix product;
# - to assemble a block one part at a time (residual path, MLP, LayerNorm) and measure what each part buys;
# - to write one training step by hand (forward, loss, backward, clipping, AdamW), and to count its FLOPs and
#   memory from the config alone;
# - to train a GPT with the book's training loop, and to sample with temperature and top-k.

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import copy
import math
import re
import time

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
# One cell decides the scale. `tiny` is close to nanoGPT's CPU "baby GPT" (fewer steps); `full` is nanoGPT's
# shakespeare-char model, step for step. Nothing below this cell looks at the scale again.

# %%
CFG = pick(
    tiny=dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
              batch_size=16, max_steps=600, lr=2e-3, warmup_steps=50, beta2=0.99, eval_every=100, eval_batches=20,
              # the block ablation: a smaller model, short runs (benchmarks/ch01_ablation.py runs the same dict)
              ablation=dict(n_layer=4, n_head=4, n_embd=64, block_size=32, batch_size=16, steps=200, lr=3e-3,
                            warmup_steps=20, eval_batches=10),
              ablation_live=("attention only", "+ residual"),  # rungs trained here; all four are in the record
              nanogpt_says="≈ 1.88: baby GPT, 2,000 iterations × 12 × 64 tokens", record=None),
    full=dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2,
              batch_size=64, max_steps=5000, lr=1e-3, warmup_steps=100, beta2=0.99, eval_every=250, eval_batches=50,
              ablation=dict(n_layer=6, n_head=6, n_embd=192, block_size=128, batch_size=32, steps=400, lr=2e-3,
                            warmup_steps=40, eval_batches=20),
              ablation_live=(),  # the record below holds every rung and seed; the GPU time goes to the 5,000 steps
              nanogpt_says="1.47: shakespeare-char, 5,000 iterations × 64 × 256 tokens",
              record="ch01_train_full"),  # the full run records its losses for the table at the end
)
CFG

# %% [markdown]
# ## The data: the works of Shakespeare
# `minids` ships Project Gutenberg's modern-spelling texts of Shakespeare's 42 plays and poems (public domain,
# from the `shakespeare` 0.6 package; `minids/MANIFEST.json` records the source, the licence, the cleaning
# and a checksum of every file). Nothing is downloaded: `tiny` reads about 1 MB that is committed, `full` all
# 5 MB from a compressed copy that is committed too.
#
# The split into train and validation is **by work**: a validation play was never seen in training, not one
# line of it. (Splitting by position inside one file, as nanoGPT's tinyshakespeare does, puts the same
# characters and scenes on both sides.) This chapter trains a **character-level (字符级)** model: every
# character is one token. Chapter 2 replaces characters with a byte-level BPE tokenizer.

# %%
from nanoseek.data import CharVocab, load_shakespeare, shakespeare_works, window_batcher

train_text = load_shakespeare("train")
val_text = load_shakespeare("val")
print("train works:", ", ".join(shakespeare_works("train")))
print("val works:  ", ", ".join(shakespeare_works("val")))
print(f"train: {len(train_text):,} characters, val: {len(val_text):,} characters\n")
print(train_text[11_000:11_500])

# %% [markdown]
# ### Is the validation set held out? Measured, for every corpus in the book
# A validation loss only means something if the validation text is new to the model. A cheap test: cut each
# corpus into sentences and count how many validation sentences occur **verbatim** in the training split.
# Short sentences ("Exeunt.", "My lord.") repeat in any real text; long ones (40 bytes of UTF-8 or more, about
# 40 English letters or 13 Chinese characters) should not. The book's other
# corpora are generated: children's stories in English and Chinese (chapters 2 and 3), and instructions about
# them (chapter 3). They are measured on their committed `tiny` files.

# %%
from nanoseek.data import load_instructions, load_stories


def sentences(text: str) -> list[str]:
    """Sentences: whitespace collapsed, cut after . ! ? and their Chinese forms 。！？"""
    return [s.strip() for s in re.split(r"(?<=[.!?。！？])", re.sub(r"\s+", " ", text)) if len(s.strip()) > 1]


def overlap_row(name: str, train: str, val: str) -> dict:
    seen = set(sentences(train))
    val_s = sentences(val)
    long_s = [s for s in val_s if len(s.encode("utf-8")) >= 40]  # bytes: a Chinese character is 3
    everything = sentences(train) + val_s
    return dict(corpus=name, val_sentences=len(val_s), in_train=sum(s in seen for s in val_s) / len(val_s),
                long=len(long_s), long_in_train=sum(s in seen for s in long_s) / max(1, len(long_s)),
                distinct=len(set(everything)) / len(everything))


def instruction_text(split: str) -> str:
    return "\n".join(m["content"] for row in load_instructions(split, scale="tiny") for m in row["messages"])


overlap = [
    overlap_row("stories, English (tiny)", load_stories("en", "train", "tiny"), load_stories("en", "val", "tiny")),
    overlap_row("stories, Chinese (tiny)", load_stories("zh", "train", "tiny"), load_stories("zh", "val", "tiny")),
    overlap_row("instructions (tiny, train vs test)", instruction_text("train"), instruction_text("test")),
    overlap_row("Shakespeare (tiny)", load_shakespeare("train", "tiny"), load_shakespeare("val", "tiny")),
    overlap_row("Shakespeare (full)", load_shakespeare("train", "full"), load_shakespeare("val", "full")),
]
lines = ["| corpus | val sentences | in train verbatim | long ones (≥ 40 bytes) in train | distinct sentences |",
         "| --- | --- | --- | --- | --- |"]
lines += [f"| {r['corpus']} | {r['val_sentences']:,} | {r['in_train']:.0%} | {r['long_in_train']:.0%} of {r['long']:,} | "
          f"{r['distinct']:.0%} |" for r in overlap]
display(Markdown("\n".join(lines)))
shakespeare_overlap = overlap[-1]["long_in_train"]
assert shakespeare_overlap < 0.05 and overlap[0]["long_in_train"] > 10 * shakespeare_overlap, overlap

# %% [markdown]
# The generated corpora repeat themselves: most of their validation sentences, long ones included, are
# sentences the model has already read in training, so a low validation loss there partly measures memory.
# Shakespeare's long validation sentences are new. That is why the pretraining chapters now train on
# Shakespeare, and keep the generated stories where a task needs known answers (instructions, rewards) or
# where the point is Chinese text (chapter 2).

# %%
vocab = CharVocab.from_text(train_text + val_text)
print(f"vocabulary: {len(vocab)} characters:", "".join(vocab.chars).replace("\n", "\\n"))
train_ids = torch.tensor(vocab.encode(train_text))
val_ids = torch.tensor(vocab.encode(val_text))
assert vocab.decode(vocab.encode("To be, or not to be")) == "To be, or not to be"

# %% [markdown]
# ## A baseline that only counts: the bigram model
# The simplest language model predicts the next character from the current one alone, with probabilities
# read off a table of counts: a **bigram model (二元语法模型)**. Its **cross-entropy loss (交叉熵损失)** on
# held-out text, in nats per character, is the number every later model must beat. A uniform guess would score
# $\ln V$.

# %%
V = len(vocab)
counts = torch.ones(V, V)  # add-one smoothing: no zero probabilities on the validation set
counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1), accumulate=True)
bigram_probs = counts / counts.sum(dim=1, keepdim=True)  # row c: P(next | current = c)
bigram_val_loss = -bigram_probs[val_ids[:-1], val_ids[1:]].log().mean().item()
unigram = counts.sum(dim=0) / counts.sum()  # P(next), ignoring the current character
unigram_val_loss = -unigram[val_ids].log().mean().item()
print(f"uniform guess: ln V = {math.log(V):.3f}; unigram (letter frequencies): {unigram_val_loss:.3f}; "
      f"bigram: {bigram_val_loss:.3f} nats/char on val")

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
ids = [vocab.stoi["R"]]
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
# their outputs and mixes them with one output projection. Each head has its own queries and keys, so each
# *can* learn a different pattern; whether ours do is measured on the trained model, in the heat-map section.

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
# ## The block, one part at a time
# Attention lets positions talk to each other. A Transformer **block (块)** adds three more parts, and we add
# them one at a time, measuring the loss after each, as a small **ablation (消融实验)**:
#
# 1. **attention only**: $x \leftarrow \mathrm{attn}(x)$, stacked $L$ times;
# 2. **+ residual**: $x \leftarrow x + \mathrm{attn}(x)$. A **residual connection (残差连接)** adds each
#    sub-layer's output to its input, so that the input (and the gradient) also has a path that skips the
#    sub-layer;
# 3. **+ MLP**: then $x \leftarrow x + \mathrm{mlp}(x)$, a two-layer perceptron applied to every position on
#    its own: attention communicates, the MLP computes;
# 4. **+ LayerNorm**: each sub-layer reads a **LayerNorm (层归一化)**ed copy of the stream (*pre-norm*):
#    $x \leftarrow x + \mathrm{attn}(\mathrm{ln}_1(x))$, $x \leftarrow x + \mathrm{mlp}(\mathrm{ln}_2(x))$.
#    This is the package's `Block`.
#
# Written inline, with the four parts as switches:

# %%
from nanoseek.models.gpt import MLP, Block


def block_forward(x: torch.Tensor, attn, mlp, ln_1, ln_2, residual: bool, use_mlp: bool, norm: bool) -> torch.Tensor:
    """One block with parts switched on or off. x: (B, T, C) -> (B, T, C)."""
    y = attn(ln_1(x) if norm else x)
    x = x + y if residual else y
    if use_mlp:
        y = mlp(ln_2(x) if norm else x)
        x = x + y if residual else y
    return x


# %% [markdown]
# The package has the same switchable block for experiments (`nanoseek.models.gpt_ablation`), and the
# plain `Block` that every later chapter builds on:

# %%
from nanoseek.models.gpt_ablation import LADDER, AblationBlock, ablated_gpt

nanoseek.show(AblationBlock)
nanoseek.show(Block)

# %% [markdown]
# Inline and package agree on fresh random inputs for every rung of the ladder, and with every part on, the
# switchable block is `Block` itself (the same weights load into both):

# %%
torch.manual_seed(2)
cfg_small = GPTConfig(n_embd=32, n_head=4, block_size=16)
x = torch.randn(2, 16, 32)
for name, parts in LADDER.items():
    blk = AblationBlock(cfg_small, parts).eval()
    ours = block_forward(x, blk.attn, getattr(blk, "mlp", None), blk.ln_1, getattr(blk, "ln_2", None),
                         parts.residual, parts.mlp, parts.norm)
    torch.testing.assert_close(ours, blk(x))
full_block = Block(cfg_small).eval()
full_block.load_state_dict(blk.state_dict())  # the last rung has exactly Block's parameters
torch.testing.assert_close(full_block(x), blk(x))
print("inline block == AblationBlock on every rung; AblationBlock(all parts) == Block ✓")

# %% [markdown]
# Now the ablation: each rung trains a small model (`CFG["ablation"]`: the same depth as our GPT, narrower,
# short runs) on the same batches. To keep the chapter inside its CPU budget we train the first two rungs
# here, with one seed (at `full`, none: the record below has every rung); `ablation_run` trains any rung:

# %%
from nanoseek.train import TrainConfig, lr_at, step_generator, train

A = CFG["ablation"]


def ablation_run(parts, seed: int) -> float:
    """Validation loss of one rung of the ladder, one seed (model init and batches both follow the seed)."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=V, block_size=A["block_size"], n_layer=A["n_layer"], n_head=A["n_head"],
                       n_embd=A["n_embd"])
    cfg = TrainConfig(max_steps=A["steps"], lr=A["lr"], warmup_steps=A["warmup_steps"], eval_every=A["steps"],
                      eval_batches=A["eval_batches"], seed=seed, progress=False)
    return train(ablated_gpt(config, parts), window_batcher(train_ids, val_ids, A["block_size"], A["batch_size"]),
                 cfg).final_val_loss


print(f"{'unigram (no context)':<24} {unigram_val_loss:.3f}")
for name in CFG["ablation_live"]:
    print(f"{name:<24} {ablation_run(LADDER[name], seed=0):.3f}")

# %% [markdown]
# ### One seed is not a ranking: `nanoseek.seeds`
# Two runs that differ only in their random seed (initial weights, batches) end at different losses. Before
# we say "variant A beats B" the gap must be larger than that noise. The book's rule, in `nanoseek.seeds`:
# run each variant over several seeds (`over_seeds`, 3 by default) and call A the winner only if **every**
# seed of A is better than **every** seed of B, i.e. the two seed ranges do not overlap (`verdict`). For two
# variants that are really equal, that happens by chance 1 time in 20 with 3 seeds each; anything else is a
# **tie**, and the book calls it one. Every ranked comparison in later chapters goes through this rule.
#
# Three seeds of four rungs do not fit this chapter's CPU budget, so `benchmarks/ch01_ablation.py` runs them
# with the same `CFG["ablation"]` and records them; this cell reads the record (and says so if it is
# missing or was made for another config):

# %%
from nanoseek.benchmarking import read_result
from nanoseek.seeds import SeedSummary, table, verdict

scale_name = pick(tiny="tiny", full="full")
ablation_record = read_result(f"ch01_ablation_{scale_name}")
if ablation_record is None or ablation_record["data"]["config"] != A:
    print(f"ch01_ablation_{scale_name}: not recorded yet for this config "
          f"(python benchmarks/ch01_ablation.py --scale {scale_name})")
    ablation_rows = None
else:
    d = ablation_record["data"]
    ablation_rows = {name: SeedSummary(tuple(v), tuple(d["seeds"])) for name, v in d["val_loss"].items()}
    names = list(ablation_rows)
    display(Markdown(f"Recorded {ablation_record['date']} on {ablation_record.get('gpu', ablation_record['cpu'])}; "
                     f"unigram loss {d['unigram_loss']:.3f} nats/char\n\n"
                     + table(ablation_rows, digits=3, header=("rung", "val loss (nats/char)"))))
    for a, b in zip(names, names[1:]):
        print(f"{a} → {b}: winner = {verdict(ablation_rows[a], ablation_rows[b], names=(a, b))}")

# %% [markdown]
# How to read it. A stack of attention layers without residual paths barely learns at this depth: compare its
# loss with the unigram loss printed above, which a model reaches by predicting letter frequencies and ignoring
# the context altogether. The residual path is what lets gradient reach the lower layers. The MLP and the
# LayerNorm then each lower the loss further, or tie: the verdicts above say which, seed range against seed
# range.

# %% [markdown]
# ## The GPT
# The GPT adds a token embedding, a learned position embedding, a stack of blocks, a final LayerNorm and an
# output head that shares its weights with the token embedding (**weight tying (权重共享)**). Its parameter
# count follows from the config alone: each layer has $12C^2 + 13C$ parameters (attention $4C^2 + 4C$, MLP
# $8C^2 + 5C$, two LayerNorms $4C$), plus $VC$ for tokens, $T_{max}C$ for positions and $2C$ for the final
# LayerNorm.

# %%
model_config = GPTConfig(vocab_size=V, block_size=CFG["block_size"], n_layer=CFG["n_layer"],
                         n_head=CFG["n_head"], n_embd=CFG["n_embd"], dropout=CFG["dropout"])
model = GPT(model_config)
C, L = model_config.n_embd, model_config.n_layer
formula = L * (12 * C**2 + 13 * C) + V * C + model_config.block_size * C + 2 * C
print(f"parameters: {model.num_params():,} (model)  {formula:,} (formula)")
assert model.num_params() == formula == gpt_num_params(model_config)

# %% [markdown]
# ### FLOPs and memory, from the config
# A matrix product of an $m \times k$ by a $k \times n$ matrix costs $2mkn$ floating-point operations. Every
# weight matrix of the model is used once per token in the forward pass (2 FLOPs per weight: a multiply and
# an add) and twice in the backward pass (the gradient for the input and the gradient for the weight), so a
# training step costs about **$6N$ FLOPs per token** for a model of $N$ weights in its matrix products
# {cite}`kaplan2020scaling`. Here $N$ counts the blocks' matrices and the tied output head ($VC$), and leaves
# out the position table (a lookup, no product) and the biases and norms (a few operations each). Attention's
# own products ($QK^\top$ and the weighted sum of $V$) add $12\,L\,T\,C$ per token, independent of $N$.
#
# PyTorch's FLOP counter sees every matrix product of one real training step; it must find exactly $6N$ per
# token:

# %%
from torch.utils.flop_counter import FlopCounterMode

from nanoseek.train import make_optimizer

get_batch = window_batcher(train_ids, val_ids, CFG["block_size"], CFG["batch_size"])
N_matmul = L * 12 * C**2 + V * C  # weights of the matrix products (head tied to the token embedding)
probe = copy.deepcopy(model)  # counted on the CPU, two sequences: FLOPs do not depend on the device
xb, yb = get_batch("train", torch.Generator().manual_seed(0))
xb, yb = xb[:2], yb[:2]
tokens_counted = xb.numel()
with FlopCounterMode(display=False) as counter:
    _, loss = probe(xb, yb)
    loss.backward()
by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
matmul_flops = by_op.get("aten.mm", 0) + by_op.get("aten.addmm", 0)  # the weight matrices' products
print(f"6N per token: 6 × {N_matmul:,} = {6 * N_matmul:,} FLOPs; attention adds {12 * L * CFG['block_size'] * C:,}")
print(f"counted in one step: weight products {matmul_flops:,} = {matmul_flops / tokens_counted:,.0f} per token;"
      f" all ops counted: { {k: f'{v:.3g}' for k, v in by_op.items()} }")
assert matmul_flops == 6 * N_matmul * tokens_counted, (matmul_flops, 6 * N_matmul * tokens_counted)

# %% [markdown]
# Measured against the clock: a few real training steps, timed, give the rate this machine sustains, in
# FLOP/s ($6N + 12LTC$ per token):

# %%
from nanoseek.benchmarking import sync
from nanoseek.train import TrainConfig as _TC, autocast

probe = probe.to(dev)
opt = make_optimizer(probe, _TC())
timings = []
for i in range(4):
    xb, yb = (t.to(dev) for t in get_batch("train", torch.Generator().manual_seed(i)))
    sync(dev)
    t0 = time.perf_counter()
    with autocast(dev):
        _, loss = probe(xb, yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sync(dev)
    timings.append(time.perf_counter() - t0)
tokens_per_step = xb.numel()
step_s = min(timings[1:])  # the first step pays for warm-up
flops_per_token = 6 * N_matmul + 12 * L * CFG["block_size"] * C
print(f"one step ({tokens_per_step:,} tokens): {step_s * 1e3:.1f} ms → {flops_per_token * tokens_per_step / step_s / 1e9:,.1f} "
      f"GFLOP/s on {dev}")

# %% [markdown]
# Memory for training in fp32: each parameter needs 4 bytes for its value, 4 for its gradient and 8 for AdamW's
# two running moments, **16 bytes per parameter**, checked here against the tensors the optimizer really holds.
# The activations saved for the backward pass come on top; they grow with batch × context, not with $N$, and
# we measure them by hooking every tensor autograd saves:

# %%
state_bytes = sum(p.numel() * p.element_size() for p in probe.parameters())
state_bytes += sum(p.grad.numel() * p.grad.element_size() for p in probe.parameters())
state_bytes += sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if t.dim() > 0)
print(f"weights + gradients + AdamW moments: {state_bytes / 2**20:.1f} MiB = {state_bytes / probe.num_params():.0f} "
      f"bytes × {probe.num_params():,} parameters")
assert state_bytes == 16 * probe.num_params()

saved = []
with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
    _, loss = probe(xb, yb)
print(f"activations saved for backward: {sum(saved) / 2**20:.1f} MiB for {tokens_per_step:,} tokens "
      f"({sum(saved) / tokens_per_step / 1024:.1f} KiB per token; counted per saved tensor, shared storage counted twice)")
del probe, opt, saved

# %% [markdown]
# Before training, the model should be no better than a uniform guess: its loss should be near $\ln V$.

# %%
xb, yb = get_batch("train", torch.Generator().manual_seed(0))
print("a batch:", tuple(xb.shape), "| first row:", repr(vocab.decode(xb[0])))
_, loss0 = model(xb, yb)
print(f"initial loss {loss0.item():.3f} vs ln V = {math.log(V):.3f}")
assert abs(loss0.item() - math.log(V)) < 0.3

# %% [markdown]
# ## One training step, by hand
# Training repeats one step: a forward pass and the loss, a backward pass for the gradients, **gradient
# clipping (梯度裁剪)** (if the gradient vector as a whole is longer than `grad_clip`, scale it down to that
# length, so that one bad batch cannot throw the weights far), and an **AdamW (带解耦权重衰减的 Adam)** update
# {cite}`loshchilov2019decoupled`. AdamW keeps two running averages per weight, of the gradient $m$ and of its
# square $v$, and moves each weight by $\mathrm{lr} \cdot \hat m / (\sqrt{\hat v} + \epsilon)$: a step of about
# `lr` in the direction the recent gradients agree on. The hats undo the bias of averages that start at zero.
# Weight decay shrinks the weight matrices a little every step, *decoupled* from the gradient (AdamW's point:
# added to the gradient it would be rescaled by $1/\sqrt{\hat v}$), and is not applied to biases and norm gains.

# %%
def adamw_train_step(model, x, y, state: dict, t: int, lr: float, weight_decay: float = 0.1,
                     betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, grad_clip: float = 1.0) -> float:
    """One step, written out: forward, loss, backward, global-norm clipping, AdamW. t counts from 1."""
    model.zero_grad(set_to_none=True)
    _, loss = model(x, y)  # forward: mean cross-entropy over all B*T positions
    loss.backward()  # backward: p.grad for every parameter
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))  # the whole gradient vector's length
    scale = min(1.0, grad_clip / (norm.item() + 1e-6))  # clip it as one vector, not tensor by tensor
    b1, b2 = betas
    with torch.no_grad():
        for p in params:
            g = p.grad * scale
            m, v = state.setdefault(p, (torch.zeros_like(p), torch.zeros_like(p)))
            m.mul_(b1).add_(g, alpha=1 - b1)  # running mean of gradients
            v.mul_(b2).addcmul_(g, g, value=1 - b2)  # running mean of squared gradients
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)  # bias correction: both averages start at 0
            if p.dim() >= 2:  # decoupled weight decay, on matrices and embeddings only
                p.mul_(1 - lr * weight_decay)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return loss.item()


# %% [markdown]
# The package's training loop does the same, with PyTorch's `AdamW` and `clip_grad_norm_`, plus the
# learning-rate schedule (a linear warmup, then a cosine decay), evaluation and checkpoints. Three steps of
# ours and three of `nanoseek.train` from the same weights on the same batches must land on the same weights:

# %%
from nanoseek.train import train

nanoseek.show(lr_at)

torch.manual_seed(3)
# bias=False: the key bias has an exactly-zero gradient (adding a constant to every score of a row does not
# change its softmax), and Adam would turn the rounding noise in it into lr-sized steps that differ run to run
small = GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_embd=64, bias=False))
by_hand, by_package = copy.deepcopy(small), copy.deepcopy(small)
step_cfg = TrainConfig(max_steps=3, lr=1e-2, warmup_steps=2, beta2=0.99, grad_clip=0.5, eval_every=3,
                       eval_batches=1, seed=5, device="cpu", precision="fp32", progress=False)
small_batches = window_batcher(train_ids, val_ids, 32, 8)
state = {}
for step in range(step_cfg.max_steps):
    x, y = small_batches("train", step_generator(step_cfg.seed, step))  # the batch train() draws at this step
    adamw_train_step(by_hand, x, y, state, t=step + 1, lr=lr_at(step, step_cfg), weight_decay=step_cfg.weight_decay,
                     betas=(step_cfg.beta1, step_cfg.beta2), grad_clip=step_cfg.grad_clip)
train(by_package, small_batches, step_cfg)
moved = max((a - b).abs().max().item() for a, b in zip(by_hand.parameters(), small.parameters()))
for (name, a), b in zip(by_hand.named_parameters(), by_package.parameters()):
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
print(f"3 steps by hand == 3 steps of nanoseek.train (weights moved up to {moved:.1e}) ✓")

# %% [markdown]
# ## Training
# From here on the package's loop trains our GPT: AdamW with weight decay on the weight matrices only, the
# warmup and cosine schedule, clipping at 1.0, and an evaluation on fixed validation batches every
# `eval_every` steps.

# %%
train_config = TrainConfig(max_steps=CFG["max_steps"], lr=CFG["lr"], warmup_steps=CFG["warmup_steps"],
                           beta2=CFG["beta2"], eval_every=CFG["eval_every"], eval_batches=CFG["eval_batches"],
                           seed=1337)
result = train(model, get_batch, train_config)
print(f"{result.tokens_per_second:,.0f} tokens/s over {result.seconds:.0f} s "
      f"(≈ {result.tokens_per_second * flops_per_token / 1e9:,.1f} GFLOP/s, evaluation included); "
      f"final val loss {result.final_val_loss:.3f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
result.plot(ax)
ax.axhline(bigram_val_loss, color="gray", ls="--", label="bigram (val)")
ax.axhline(math.log(V), color="gray", ls=":", label="uniform (ln V)")
ax.legend()
ax.set_title("Character-level GPT on Shakespeare")
plt.show()

# %% [markdown]
# How far below the counting baseline did attention take us? The assert is the chapter's claim, with a margin
# that holds at `tiny` scale (the margin it reached is printed).

# %%
margin = bigram_val_loss - result.final_val_loss
print(f"bigram {bigram_val_loss:.3f}  →  GPT {result.final_val_loss:.3f} nats/char: {margin:.2f} nats lower "
      f"({math.exp(bigram_val_loss):.1f} → {math.exp(result.final_val_loss):.1f} in perplexity)")
assert margin > 0.25, margin

# %%
if CFG["record"]:  # at full: keep what this run measured, for the table at the end
    from nanoseek.benchmarking import results_dir, write_result

    write_result(CFG["record"], f"Chapter 1 at full: final val loss {result.final_val_loss:.4f} nats/char after "
                 f"{CFG['max_steps']} steps, {result.tokens_per_second:,.0f} tokens/s",
                 directory=results_dir(),
                 data={"final_val_loss": result.final_val_loss, "val_loss": result.val_loss,
                       "eval_steps": result.eval_steps, "bigram_val_loss": bigram_val_loss,
                       "tokens_per_second": result.tokens_per_second, "train_seconds": result.seconds,
                       "config": {k: v for k, v in CFG.items() if k not in ("record", "nanogpt_says", "ablation")}, "params": model.num_params()})

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


prompt = torch.tensor([vocab.encode("Romeo.\n")], device=dev)
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
samples = {}
for temperature in (0.5, 1.0, 1.5):
    samples[temperature] = generate(model, prompt, 150, temperature=temperature, generator=seeded(0))[0]
    print(f"--- temperature {temperature} ---\n{vocab.decode(samples[temperature])}\n")
n_new = samples[1.0].numel() - prompt.numel()
differ = (samples[1.0] != samples[1.5]).sum().item()
print(f"same seed, temperature 1.0 vs 1.5: {differ} of {n_new} sampled characters differ")

# %% [markdown]
# Low temperature repeats the safest phrases; high temperature invents words. We can measure that trade-off
# with the share of generated words that occur in the training text, over several samples per temperature:

# %%
train_words = set(re.findall(r"[A-Za-z']+", train_text))


def real_word_share(text: str) -> float:
    words = re.findall(r"[A-Za-z']+", text)[1:-1]  # the ends may be cut mid-word
    return sum(w in train_words for w in words) / max(1, len(words))


temps = [0.3, 0.6, 1.0, 1.5, 2.0]
n_samples = 4
shares = []
for t in temps:
    out = generate(model, prompt.repeat(n_samples, 1), 100, temperature=t, generator=seeded(1))
    shares.append([real_word_share(vocab.decode(row[prompt.numel():])) for row in out])
means = [sum(s) / n_samples for s in shares]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(temps, means, "o-")
for t, s in zip(temps, shares):
    ax.plot([t] * n_samples, s, ".", color="gray", alpha=0.4)
ax.set_xlabel("temperature")
ax.set_ylabel("share of real words")
ax.set_title(f"Sampling temperature vs. spelling ({n_samples} samples each)")
plt.show()
print(" | ".join(f"T={t}: {m:.2f} (samples {min(s):.2f}–{max(s):.2f})" for t, m, s in zip(temps, means, shares)))
assert min(shares[0]) > max(shares[-1]), "every sample at T=0.3 should spell better than every sample at T=2.0"

# %% [markdown]
# Move the slider to sample at other temperatures (the slider needs a live kernel; the book shows the samples
# printed above).

# %%
def show_sample(temperature: float = 1.0, top_k: int = 0):
    out = generate(model, prompt, 100, temperature=temperature, top_k=top_k or None,
                   generator=seeded(0))
    print(vocab.decode(out[0]))


try:
    import ipywidgets as widgets

    widgets.interact(show_sample, temperature=widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.1),
                     top_k=widgets.IntSlider(value=0, min=0, max=20, description="top-k (0=off)"));
except ImportError:  # a plain script without ipywidgets: one sample instead of the slider
    show_sample()

# %% [markdown]
# ## What did the heads learn? An attention heat map
# The package's attention exposes its softmax weights (`attention_weights`). First two checks that could
# fail: these weights are the ones the forward pass really uses (weights × values, projected, give the
# attention layer's output), and the whole model is causal (changing the second half of a text changes no
# prediction in the first half).

# %%
text = val_text[1_000:1_000 + min(64, CFG["block_size"])]
idx = torch.tensor([vocab.encode(text)], device=dev)
T_ = idx.shape[1]
last = model.transformer.h[-1]
with torch.no_grad():
    tok = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(T_, device=dev))
    for block in model.transformer.h[:-1]:
        tok = block(tok)
    h_in = last.ln_1(tok)
    pattern = last.attn.attention_weights(h_in)[0]  # (H, T, T)
    _, _, v = last.attn._qkv(h_in)  # (1, H, T, D)
    mixed = (pattern @ v[0]).transpose(0, 1).reshape(T_, C)  # heads side by side, (T, C)
    torch.testing.assert_close(last.attn.c_proj(mixed), last.attn(h_in)[0], atol=1e-4, rtol=1e-4)

    changed = idx.clone()
    changed[0, T_ // 2:] = torch.randint(0, V, (T_ - T_ // 2,), generator=seeded(9), device=dev)
    before, after = model(idx)[0][0], model(changed)[0][0]  # (T, V) each
    torch.testing.assert_close(before[: T_ // 2], after[: T_ // 2], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(before[T_ // 2:], after[T_ // 2:], atol=1e-3)  # the second half did change
pattern = pattern.float().cpu()
print("attention_weights are the weights the forward pass uses ✓; the model is causal ✓")

# %% [markdown]
# Now what each head of the last layer does on this validation text, measured: its **mean attention distance**
# (how many characters back its weight sits on average), the weight it puts on the query's own position and
# on the previous character, and on keys that are spaces or line breaks (compare with how common those are).

# %%
pos = torch.arange(T_)
distance = (pos[:, None] - pos[None, :]).clamp(min=0).float()  # (T, T): t - s
is_gap = torch.tensor([c in " \n" for c in text])
stats = []
for h in range(pattern.shape[0]):
    p = pattern[h, 1:]  # queries 1.. (query 0 can only see itself)
    stats.append(dict(head=h, distance=(p * distance[1:]).sum(-1).mean().item(),
                      self=pattern[h].diagonal().mean().item(), previous=pattern[h].diagonal(-1).mean().item(),
                      gaps=p[:, is_gap].sum(-1).mean().item()))
lines = ["| head | mean distance (chars) | on itself | on previous char | on spaces / newlines |",
         "| --- | --- | --- | --- | --- |"]
lines += [f"| {s['head']} | {s['distance']:.1f} | {s['self']:.0%} | {s['previous']:.0%} | {s['gaps']:.0%} |"
          for s in stats]
display(Markdown("\n".join(lines) + f"\n\nSpaces and newlines are {is_gap.float().mean():.0%} of the characters."))


def role(s: dict) -> str:
    """A plain-words reading of one head's measured numbers."""
    if s["previous"] > 0.5:
        return "mostly reads the previous character (a previous-token head)"
    if s["self"] > 0.5:
        return "mostly reads its own position"
    if s["gaps"] > 2 * is_gap.float().mean().item():
        return "leans on spaces and line breaks: where words and lines begin"
    return "spreads its weight over the recent past"


head = max(stats, key=lambda s: s["distance"])["head"]
for s in stats:
    print(f"head {s['head']}: {role(s)}")
print(f"spread of mean distance across heads: {min(s['distance'] for s in stats):.1f} to "
      f"{max(s['distance'] for s in stats):.1f} characters")

# %% [markdown]
# The heat map of the head with the longest mean attention distance, the one that looks furthest back. Each
# row is a query position, each column a key it may look at; bright cells carry the weight:

# %%
fig, ax = plt.subplots(figsize=(7, 6))
ax.imshow(pattern[head], cmap="viridis")
chars = [{" ": "␣", "\n": "⏎"}.get(c, c) for c in text]
ax.set_xticks(range(len(chars)), chars, fontsize=6)
ax.set_yticks(range(len(chars)), chars, fontsize=6)
ax.set_xlabel("key (the character looked at)")
ax.set_ylabel("query (the character predicting the next)")
ax.set_title(f"layer {L}, head {head} (longest mean attention distance): {role(stats[head])}")
plt.show()

# %% [markdown]
# Read the map with the table: a bright sub-diagonal is a previous-character head; bright columns under
# spaces and line breaks mean the head looks back to where the current word or line began, which is what it
# needs to guess how the word continues. The printed readings above say which of these our trained heads are,
# and whether the heads of one layer differ: they are measured, not assumed.

# %% [markdown]
# ## Paper says / we measured
# nanoGPT's README reports the validation loss of its `train_shakespeare_char.py` config (our `full`: 6
# layers, 384 wide, 256 context, 5,000 iterations, dropout 0.2) and of its CPU "baby GPT" (4 layers, 128 wide,
# 64 context, 2,000 iterations of batch 12) {cite}`karpathy2022nanogpt`. Its text is tinyshakespeare (1 MB of
# plays, split by position); ours is the complete works split by play, whose validation plays bring names
# and scenes the model never saw. Close, not identical: a like-for-like check of the recipe.

# %%
full_run = read_result("ch01_train_full")
rows = [
    "| model | nanoGPT says (val loss) | we measured (val loss) | from |",
    "| --- | --- | --- | --- |",
    f"| uniform guess | | {math.log(V):.3f} | this run |",
    f"| bigram (counts) | | {bigram_val_loss:.3f} | this run |",
    f"| this run: {model.num_params() / 1e6:.2f}M params, {CFG['max_steps']:,} steps × {CFG['batch_size']} × "
    f"{CFG['block_size']} tokens | {CFG['nanogpt_says']} | {result.final_val_loss:.3f} | this run |",
]
if full_run is None:
    rows.append("| `full` (6 × 384, 5,000 steps) | 1.47 | not recorded yet | `ch01_train_full.json` |")
else:
    rows.append(f"| `full` (6 × 384, 5,000 steps) | 1.47 | {full_run['data']['final_val_loss']:.3f} | "
                f"`ch01_train_full.json`, {full_run.get('gpu', 'GPU')}, {full_run['date'][:10]} |")
display(Markdown("\n".join(rows)))

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
# - A language model is judged by its cross-entropy on held-out text; a bigram table sets the bar, and a
#   verbatim-overlap count tells whether "held out" is true.
# - Masked self-attention is a data-dependent weighted average of the past, computed as one softmax-masked matmul.
# - A block is attention and an MLP on residual paths with pre-norm; the ablation measured what each part buys,
#   over seeds, with ties called ties.
# - One training step is forward, loss, backward, clipping and AdamW; it costs about $6N$ FLOPs per token and
#   16 bytes per parameter of state in fp32.
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
# **Exercise 4 (hard: the core of training).** Write one training step without `torch.optim`: zero the old
# gradients, forward pass and loss, backward pass, clip the gradient vector as a whole to length at most
# `grad_clip`, then update every parameter with AdamW: running moments `m` and `v` kept in `state` (a dict
# keyed by parameter), bias correction with the step number `t` (counting from 1), decoupled weight decay on
# tensors with two or more dimensions only. Return the loss as a float. The checker runs your step against
# PyTorch's `AdamW` and `clip_grad_norm_` for several steps on a small GPT; it does not accept the cell
# above, so write it yourself first.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch01 import check_train_step


def train_step(model, x, y, state: dict, t: int, lr: float, weight_decay: float = 0.1,
               betas: tuple = (0.9, 0.95), eps: float = 1e-8, grad_clip: float = 1.0) -> float:
    """One AdamW training step on model(x, y) -> (logits, loss). Returns the loss."""
    raise NotImplementedError  # your code here


check_train_step(train_step)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch01 import check_train_step


def train_step(model, x, y, state: dict, t: int, lr: float, weight_decay: float = 0.1,
               betas: tuple = (0.9, 0.95), eps: float = 1e-8, grad_clip: float = 1.0) -> float:
    for p in model.parameters():
        p.grad = None
    _, loss = model(x, y)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params)).item()
    scale = min(1.0, grad_clip / (norm + 1e-6))
    b1, b2 = betas
    with torch.no_grad():
        for p in params:
            g = p.grad * scale
            if p not in state:
                state[p] = (torch.zeros_like(p), torch.zeros_like(p))
            m, v = state[p]
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            if p.dim() >= 2:
                p.mul_(1 - lr * weight_decay)
            p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
    return loss.item()


assert check_train_step(train_step)

# %% [markdown]
# ## Further reading
# - The Transformer: {cite}`vaswani2017attention`. GPT-2: {cite}`radford2019language`.
# - nanoGPT and the "Let's build GPT" lecture this chapter follows: {cite}`karpathy2022nanogpt`.
# - Weight tying: {cite}`press2017using`. AdamW: {cite}`loshchilov2019decoupled`.
# - Counting FLOPs per token ($6N$): {cite}`kaplan2020scaling`. Residual connections: {cite}`he2016deep`.
