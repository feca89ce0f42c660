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
# # Chapter 5: Multi-head latent attention, from the low-rank idea to matrix absorption
#
# Chapter 4 ended with a memory problem: at long contexts a decoder spends its time reading the **KV cache
# (键值缓存)**, and MQA and GQA shrink that cache by sharing keys and values between heads, at some cost in
# quality. DeepSeek-V2 and V3 take another road: **multi-head latent attention (多头潜在注意力, MLA)** caches
# one small latent vector per token and re-creates every head's key and value from it. In this chapter we build
# MLA, show why rotary positions get in the way of its central trick, derive the "absorbed" form that DeepSeek
# runs at decode time one einsum at a time, reproduce the paper's cache table, time four ways of running the
# same weights, train MHA, GQA, MQA and MLA side by side, and finish with a fused GPU kernel.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/05_mla.ipynb)
#
# The budget (times read from `benchmarks/results/`) is the first cell after the setup.
#
# The H200 numbers quoted in this chapter come from `benchmarks/mla_decode.py` (DeepSeek-V3's real attention
# shapes), recorded in `benchmarks/results/mla_decode.md`.
#
# **What you will learn**
# - to count the KV cache of MHA, GQA, MQA and MLA for any config, and reproduce DeepSeek-V2's table and its
#   "93.3% smaller than DeepSeek 67B" claim, with the assumption it rests on;
# - to build MLA: low-rank joint key/value compression, the query latent, and the decoupled RoPE key;
# - to show with numbers why RoPE stops `W_UK` from being folded into the query, and how the decoupled key fixes it;
# - to derive absorbed MLA step by step and check each step against the naive computation;
# - to read a flash-decoding Triton kernel for absorbed MLA, and what limits its speed.

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import nanoseek
from nanoseek import device, pick, seed_everything

seed_everything(1337)
print("nanoseek", nanoseek.__version__, "| torch", torch.__version__, "| device:", device())

# %%
from IPython.display import Markdown, display

from nanoseek.benchmarking import budget_table

display(Markdown(budget_table(
    "05_mla", tiny="one 512-wide MLA layer timed at 128–2,048 tokens; five 2-layer, 96-wide models x 3 seeds",
    full="a 2,048-wide layer timed up to 16K tokens; five 6-layer, 384-wide models, 2,000 steps, one seed",
    full_record="05_mla_full")))

# %% [markdown]
# ## The configuration
# One cell decides the scale. `demo` is a small MLA used to check the algebra; `timing` is the layer we time;
# `train` is the five small language models. Nothing below this cell looks at the scale again.

# %%
CFG = pick(
    tiny=dict(
        demo=dict(dim=64, n_heads=4, kv_lora_rank=32, q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8,
                  v_head_dim=16, max_seq_len=64),
        timing=dict(dim=512, n_heads=16, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
                    v_head_dim=32, batch=4, contexts=[128, 256, 512, 1024, 2048], reps=5),
        train=dict(n_layer=2, n_embd=96, n_head=4, head_dim=24, intermediate_size=256, block_size=64,
                   batch_size=16, max_steps=160, lr=3e-3, warmup_steps=20, eval_batches=10,
                   kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24, seeds=(0, 1, 2)),
    ),
    full=dict(
        demo=dict(dim=256, n_heads=8, kv_lora_rank=64, q_lora_rank=96, qk_nope_head_dim=32, qk_rope_head_dim=16,
                  v_head_dim=32, max_seq_len=256),
        timing=dict(dim=2048, n_heads=32, kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=32,
                    v_head_dim=64, batch=8, contexts=[1024, 2048, 4096, 8192, 16384], reps=20),
        train=dict(n_layer=6, n_embd=384, n_head=6, head_dim=64, intermediate_size=1024, block_size=256,
                   batch_size=64, max_steps=2000, lr=1e-3, warmup_steps=100, eval_batches=50,
                   kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=64, seeds=(0,)),
    ),
)
CFG

# %% [markdown]
# ## The tension: cache size against quality
# At every decode step a model reads, for every layer, the keys and values of all past tokens. Chapter 4
# counted that cache per token: $2 n_h d_h$ numbers a layer for MHA, $2 n_g d_h$ for GQA with $n_g$ key/value
# groups, $2 d_h$ for MQA. Fewer groups means a smaller cache and a faster decode, and also fewer distinct keys
# for the heads to choose from, which costs quality (the GQA paper measured it; we measure it at small scale
# at the end of this chapter). Here is what that means for DeepSeek 67B, the dense model before V2
# (95 layers, 64 heads of 128, GQA with 8 groups), with the chapter-4 formula:

# %%
from nanoseek.nn.attention import kv_cache_bytes

for name, groups in (("MHA", 64), ("GQA-8 (as released)", 8), ("MQA", 1)):
    per_token = kv_cache_bytes(n_layer=95, batch_size=1, n_kv_head=groups, head_dim=128, seq_len=1, dtype_bytes=2)
    print(f"DeepSeek 67B with {name:20s}: {per_token / 1024:7.1f} KiB per token, "
          f"{per_token * 32_768 / 2**30:6.2f} GiB for one 32K-token sequence (bf16)")

# %% [markdown]
# ## Low-rank key/value compression
# MLA's idea: do not cache keys and values at all. Project each token's hidden state $h_t$ down to one
# **latent vector (潜在向量)** $c^{KV}_t = W^{DKV} h_t$ of $d_c$ numbers, normalize it with an RMSNorm, cache it,
# and recover each head's key and value with up-projections: $k^C_{t,i} = W^{UK}_i c^{KV}_t$,
# $v^C_{t,i} = W^{UV}_i c^{KV}_t$. With $d_c \ll 2 n_h d_h$ the cache shrinks by that ratio, while every head
# still gets its own key and value: the keys of the heads are different, only *constrained* to a $d_c$-dim
# subspace. Queries get the same treatment (a latent of `q_lora_rank` numbers, with its own RMSNorm) to save
# parameters and activation memory in training; queries are never cached, so this part does not change the cache.
#
# Rotary positions need one more piece, the **decoupled RoPE key (解耦的旋转位置键)** $k^R_t$: a small vector of
# $d^R_h$ numbers computed from $h_t$, rotated, and **shared by all heads**, concatenated to every head's key
# (the query gets a matching rotated part per head). We will see in a moment why it has to exist. The score
# of head $i$ is
#
# $$ s_{t,s,i} = \frac{q^C_{t,i}\cdot k^C_{s,i} + q^R_{t,i}\cdot k^R_s}{\sqrt{d_h + d^R_h}} $$
#
# (note the scale: over the full query–key width, nope plus rope). The cache holds $c^{KV}_s$ and $k^R_s$:
# $d_c + d^R_h$ numbers per token and layer. Here it is, inline, with every weight explicit:

# %%
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rotate(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """RoPE, half layout: pairs (x[i], x[i + D/2]) at position p turn by p * theta^(-2i/D). x: (..., T, D)."""
    D = x.shape[-1]
    angle = positions[:, None].float() * theta ** (-torch.arange(0, D, 2).float() / D)  # (T, D/2)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], dim=-1)


def mla_inline(x: torch.Tensor, W: dict, H: int, nope: int, rope: int, vdim: int) -> torch.Tensor:
    """Naive MLA, causal, no cache. x: (B, T, C). W: the weight matrices, as nn.Linear stores them (out, in)."""
    B, T, _ = x.shape
    pos = torch.arange(T)
    # queries through their own latent: (B, T, H, nope + rope)
    q = (rms_norm(x @ W["q_a"].T, W["q_norm"]) @ W["q_b"].T).view(B, T, H, nope + rope).transpose(1, 2)
    q = torch.cat([q[..., :nope], rotate(q[..., nope:], pos)], dim=-1)  # (B, H, T, nope + rope)
    # one latent per token, and one RoPE key for all heads: this is what MLA caches
    c_kv, k_pe = (x @ W["kv_a"].T).split([W["kv_norm"].shape[0], rope], dim=-1)
    c_kv = rms_norm(c_kv, W["kv_norm"])  # (B, T, d_c)
    k_pe = rotate(k_pe, pos)  # (B, T, rope)
    # decompress: each head's key (nope part) and value from the latent
    kv = (c_kv @ W["kv_b"].T).view(B, T, H, nope + vdim).transpose(1, 2)  # (B, H, T, nope + v)
    k = torch.cat([kv[..., :nope], k_pe[:, None].expand(B, H, T, rope)], dim=-1)
    v = kv[..., nope:]
    scores = q @ k.transpose(-2, -1) / math.sqrt(nope + rope)  # (B, H, T, T)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * vdim)
    return y @ W["o"].T


# %% [markdown]
# ## The package version
# `nanoseek.nn.mla.MLA` holds the same weights under the names transformers uses for DeepSeek-V3, and offers
# three ways of running them, chosen by `mode`. Its naive path, which caches per-head keys and values:

# %%
from nanoseek.nn.mla import MLA, MLAConfig

nanoseek.show(MLA.forward)

# %% [markdown]
# We give the package module random weights (norms included, so that a forgotten norm would show), copy them
# into the inline function, and compare:

# %%
def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g) if "norm" in name
                    else torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5)
    return module.eval()


demo = CFG["demo"]
mla = randomize(MLA(MLAConfig(**demo)), seed=0)
W = dict(q_a=mla.q_a_proj.weight, q_norm=mla.q_a_norm.weight, q_b=mla.q_b_proj.weight, kv_a=mla.kv_a_proj.weight,
         kv_norm=mla.kv_a_norm.weight, kv_b=mla.kv_b_proj.weight, o=mla.o_proj.weight)
x = torch.randn(2, 12, demo["dim"])
with torch.no_grad():
    ours = mla_inline(x, W, demo["n_heads"], demo["qk_nope_head_dim"], demo["qk_rope_head_dim"], demo["v_head_dim"])
    torch.testing.assert_close(ours, mla(x), atol=1e-5, rtol=1e-5)
print("inline MLA == nanoseek MLA (naive path) ✓")

# %% [markdown]
# ## Why RoPE breaks absorption
# Decompressing every cached latent into $n_h$ keys at every step would throw away what the small cache bought:
# we would read a small cache and then do the work (and allocate the memory) of a big one. Without positions,
# the decompression can be avoided entirely by associativity. For one head,
#
# $$ q_t \cdot k_s = (W^{Q} h_t)^\top (W^{UK} c_s) = h_t^\top \underbrace{(W^{Q\top} W^{UK})}_{\text{one fixed matrix}} c_s ,$$
#
# so $W^{UK}$ can be **absorbed (吸收)** into the query side once, and the score computed against the cached
# latent directly. Now put RoPE on the keys and queries as Llama does. RoPE at position $p$ is a rotation matrix
# $R_p$, and $R_t^\top R_s = R_{s-t}$:
#
# $$ (R_t W^{Q} h_t)^\top (R_s W^{UK} c_s) = h_t^\top \, W^{Q\top} R_{s-t} W^{UK} \, c_s .$$
#
# The matrix in the middle now depends on the distance $s - t$: there is no single matrix to precompute. We
# check both statements with numbers, for one head:

# %%
torch.manual_seed(0)
C_, d_c, d_h, T_ = 32, 16, 8, 24
W_Q, W_UK = torch.randn(d_h, C_), torch.randn(d_h, d_c)
h, c = torch.randn(T_, C_), torch.randn(T_, d_c)  # hidden states and cached latents of T_ tokens
pos = torch.arange(T_)

# no RoPE: one absorbed matrix reproduces every score
exact = (h @ W_Q.T) @ (c @ W_UK.T).T  # (T, T): decompress the keys, then dot
absorbed = h @ (W_Q.T @ W_UK) @ c.T  # (C, d_c) matrix folded once
torch.testing.assert_close(absorbed, exact, atol=1e-3, rtol=1e-4)


# RoPE on q and k: R_p as a matrix, then the best we could do is fold the matrix for ONE distance
def rope_as_matrix(p: int, d: int) -> torch.Tensor:
    return rotate(torch.eye(d), torch.full((d,), p)).T  # column j = R_p e_j


exact_rope = rotate(h @ W_Q.T, pos) @ rotate(c @ W_UK.T, pos).T  # (T, T)
folded_at_0 = h @ (W_Q.T @ W_UK) @ c.T  # the matrix that is right when s - t = 0
dist = pos[None, :] - pos[:, None]  # (T, T): s - t
rel_err = [((folded_at_0 - exact_rope)[dist == d].norm() / exact_rope[dist == d].norm()).item() for d in range(-8, 1)]
for d, e in zip(range(-8, 1), rel_err):
    print(f"s - t = {d:3d}: relative error of the matrix folded for distance 0: {e:.3f}")
assert rel_err[-1] < 1e-4 and min(rel_err[:-1]) > 0.05, "folding works only at the distance it was built for"
torch.testing.assert_close(rope_as_matrix(3, d_h).T @ rope_as_matrix(7, d_h), rope_as_matrix(4, d_h),
                           atol=1e-5, rtol=1e-5)
print("R_3^T R_7 == R_4: the middle matrix depends on the distance only ✓")

# %% [markdown]
# **The fix** is to keep positions out of the part that gets absorbed. MLA splits each head's query–key
# product into a "nope" part with no rotation, $q^C_{t,i} \cdot W^{UK}_i c_s$, which absorbs exactly, and a
# small rotated part $q^R_{t,i} \cdot k^R_s$, where $k^R_s$ is cached already rotated and shared by all heads,
# so it costs only $d^R_h$ numbers per token. The positions live entirely in the second part.
#
# ## The absorbed path, step by step
# We now rewrite the naive computation for one decode step (one new token attending to $S$ cached ones),
# checking each rewrite against the naive numbers. Shapes: $B$ sequences, $H$ heads, latent $c$, nope $n$,
# rope $r$, value $v$; the cache holds $S$ past tokens plus the new one, which attends to itself too.

# %%
cfg_d = mla.cfg
B, S = 2, 10
with torch.no_grad():
    xs, x_new = torch.randn(B, S, cfg_d.dim), torch.randn(B, 1, cfg_d.dim)  # S past tokens and the new one
    c_kv, k_pe = mla.latents(torch.cat([xs, x_new], 1), start=0)  # the cache, new token included: (B, S+1, c), (B, S+1, r)
    q_nope, q_pe = mla.queries(x_new, start=S)  # the new token's query at position S: (B, 1, H, n), (B, 1, H, r)
    q_nope, q_pe = q_nope[:, 0], q_pe[:, 0]  # (B, H, n), (B, H, r)
    w_uk, w_uv = mla.w_uk_uv()  # (H, n, c), (H, v, c): slices of kv_b_proj
    scale = mla.softmax_scale

    # naive: decompress every cached latent into H keys and values
    k_nope = torch.einsum("hnc,bsc->bhsn", w_uk, c_kv)  # (B, H, S, n)
    v_full = torch.einsum("hvc,bsc->bhsv", w_uv, c_kv)  # (B, H, S, v)
    naive_scores = (torch.einsum("bhn,bhsn->bhs", q_nope, k_nope) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)) * scale
    naive_out = torch.einsum("bhs,bhsv->bhv", naive_scores.softmax(-1), v_full)

    # step 1: move the query into latent space (absorb W_UK): one (n x c) product per head, not per token
    q_lat = torch.einsum("bhn,hnc->bhc", q_nope, w_uk)  # (B, H, c)
    torch.testing.assert_close(torch.einsum("bhc,bsc->bhs", q_lat, c_kv),
                               torch.einsum("bhn,bhsn->bhs", q_nope, k_nope), atol=1e-4, rtol=1e-4)
    # step 2: add the RoPE part against the shared rotated key, scale over the full qk width
    scores = (torch.einsum("bhc,bsc->bhs", q_lat, c_kv) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)) * scale
    torch.testing.assert_close(scores, naive_scores, atol=1e-4, rtol=1e-4)
    # step 3: softmax, as always
    p = scores.softmax(-1)  # (B, H, S)
    # step 4: attention-weighted *latent*: the values are never built
    o_lat = torch.einsum("bhs,bsc->bhc", p, c_kv)  # (B, H, c)
    # step 5: apply W_UV after the sum (absorb it into the output side)
    out = torch.einsum("bhc,hvc->bhv", o_lat, w_uv)  # (B, H, v)
    torch.testing.assert_close(out, naive_out, atol=1e-5, rtol=1e-5)
    # step 6: the package's absorbed path, through its latent cache, gives the same layer output
    outs = {}
    for mode in ("naive", "absorbed"):
        mla.mode = mode
        cache = mla.new_cache(B, S + 1)
        mla(xs, cache)
        outs[mode] = mla(x_new, cache)
    torch.testing.assert_close(outs["absorbed"], outs["naive"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs["naive"], mla.o_proj(out.reshape(B, 1, -1)), atol=1e-5, rtol=1e-5)
print("steps 1-6: absorbed == naive ✓")

# %% [markdown]
# The package's absorbed path is those einsums (for any number of new tokens, with the causal mask):

# %%
nanoseek.show(MLA._attend_absorbed)

# %% [markdown]
# What did absorption trade? Per step and head, the naive path multiplies the query against $n + r$ numbers per
# cached token and sums $v$-wide values; the absorbed path works with $c + r$ and $c$ numbers instead
# ($c = 512$ against $n = 128$ in DeepSeek-V3: the ratio is computed in the next cell), but it reads only the latent
# cache, $c + r$ numbers per token for *all* heads, instead of $H(n + r + v)$. Decoding is limited by reading
# memory, so the trade pays, as the timings below show. (For training and prefill, where many queries share
# each key, the naive form is cheaper; `tests/test_mla.py` checks that all paths agree to 1e-5 on random
# weights, through prefill and many decode steps, over a seeded sweep of shapes and options.)
#
# %%
n_, r_, v_, c_ = 128, 64, 128, 512  # DeepSeek-V3: nope, rope, value head dims and the latent rank
naive_macs, absorbed_macs = (n_ + r_) + v_, (c_ + r_) + c_  # per cached token and head: score + weighted sum
print(f"multiply-adds per cached token and head: naive {naive_macs}, absorbed {absorbed_macs}: "
      f"{absorbed_macs / naive_macs:.1f}x the arithmetic")
assert 3.3 < absorbed_macs / naive_macs < 3.5

# %% [markdown]
# ## The KV cache table of DeepSeek-V2
# DeepSeek-V2's Table 1 gives the cache per token, in elements, for $l$ layers: MHA $2 n_h d_h l$, GQA
# $2 n_g d_h l$, MQA $2 d_h l$, MLA $(d_c + d^R_h)\, l$, and, with V2's choice $d_c = 4 d_h$ and
# $d^R_h = d_h / 2$, MLA $= \frac{9}{2} d_h l$: "equal to GQA with only 2.25 groups". We compute it from the
# real configs:

# %%
SHAPES = {  # published configs: layers, heads, head dim (nope), kv_lora_rank, rope dim
    "DeepSeek-V2": dict(layers=60, heads=128, d_h=128, d_c=512, d_r=64),
    "DeepSeek-V3": dict(layers=61, heads=128, d_h=128, d_c=512, d_r=64),
}


def kv_elements(kind: str, layers: int, heads: int, d_h: int, d_c: int, d_r: int, groups: int = 8) -> int:
    return {"MHA": 2 * heads * d_h, "GQA-8": 2 * groups * d_h, "MQA": 2 * d_h, "MLA": d_c + d_r}[kind] * layers


print("| model | attention | elements per token | bf16 bytes per token | vs MHA |")
print("| --- | --- | --- | --- | --- |")
for model_name, s in SHAPES.items():
    mha = kv_elements("MHA", **s)
    for kind in ("MHA", "GQA-8", "MQA", "MLA"):
        n = kv_elements(kind, **s)
        print(f"| {model_name} | {kind} | {n:,} | {2 * n / 1024:,.1f} KiB | {n / mha:.2%} |")

v2 = SHAPES["DeepSeek-V2"]
assert v2["d_c"] == 4 * v2["d_h"] and v2["d_r"] == v2["d_h"] // 2  # V2's choice of sizes
assert kv_elements("MLA", **v2) == 9 * v2["d_h"] * v2["layers"] // 2  # the table's (9/2) d_h l
groups_equivalent = (v2["d_c"] + v2["d_r"]) / (2 * v2["d_h"])
assert groups_equivalent == 2.25
print(f"\nMLA caches as much as GQA with {groups_equivalent} groups, while every one of its 128 heads keeps its own key.")
# the package's formula agrees with the table
v3_layer = MLAConfig(dim=7168, n_heads=128, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
assert v3_layer.kv_cache_elements_per_token("absorbed") * 61 == kv_elements("MLA", **SHAPES["DeepSeek-V3"])

# %% [markdown]
# **The 93.3% claim.** DeepSeek-V2's abstract says it "reduces the KV cache by 93.3%" against DeepSeek 67B.
# Counting elements alone does not give that number: DeepSeek 67B (95 layers, GQA with 8 groups of 128) caches
# 194,560 elements per token, V2 34,560, an 82.2% reduction. The paper's deployment section supplies the missing
# assumption: V2's KV cache is *quantized to about 6 bits per element on average*, while 67B is served in 16-bit.
# With that, the number comes out exactly:

# %%
elems_67b = 2 * 8 * 128 * 95  # GQA, 8 kv heads of 128, 95 layers
elems_v2 = kv_elements("MLA", **v2)
by_elements = 1 - elems_v2 / elems_67b
by_bits = 1 - (elems_v2 * 6) / (elems_67b * 16)  # V2 at ~6 bits per cached element, 67B at 16
print(f"DeepSeek 67B: {elems_67b:,} elements/token; V2: {elems_v2:,}")
print(f"reduction counting elements:             {by_elements:.1%}")
print(f"reduction counting bits (6-bit V2 cache): {by_bits:.1%}   (paper: 93.3%)")
assert round(by_elements, 3) == 0.822 and round(by_bits, 3) == 0.933

# %% [markdown]
# ## Measured: four ways of running the same layer
# We time one decode step (one new token per sequence, the cache already holding `context` tokens) for one
# layer, in four ways. The first three run the same MLA weights: **naive** caches per-head keys and values (what
# an MHA cache of the same heads holds); **re-expanded** caches the latent but decompresses the whole cache at
# every step; **absorbed** caches the latent and never decompresses. The fourth, **GQA** with one key/value
# head of the same cache size per token, is the baseline MLA must beat to be worth it. Timing does not depend
# on the values of the weights, so random ones do.

# %%
from nanoseek.nn.attention import Attention

tm = CFG["timing"]
dev = device()
t_cfg = MLAConfig(dim=tm["dim"], n_heads=tm["n_heads"], kv_lora_rank=tm["kv_lora_rank"],
                  qk_nope_head_dim=tm["qk_nope_head_dim"], qk_rope_head_dim=tm["qk_rope_head_dim"],
                  v_head_dim=tm["v_head_dim"], max_seq_len=max(tm["contexts"]) + 1)
layer = MLA(t_cfg).to(dev).eval()
latent_width = t_cfg.kv_lora_rank + t_cfg.qk_rope_head_dim
gqa = Attention(tm["dim"], tm["n_heads"], n_kv_head=1, head_dim=latent_width // 2,
                max_seq_len=t_cfg.max_seq_len).to(dev).eval()  # caches 2 * head_dim = latent_width numbers
assert 2 * gqa.head_dim == latent_width


def step_ms(module, cache, x_new, reps: int) -> float:
    """Median time of one decode step; the cache is rewound after each step so the context stays fixed."""
    times = []
    for _ in range(reps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        module(x_new, cache)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cache.pos -= 1
    return 1e3 * sorted(times[1:])[len(times[1:]) // 2]


Bt = tm["batch"]
g = torch.Generator(device=dev).manual_seed(0)
timing_rows = []
with torch.no_grad():
    x_new = torch.randn(Bt, 1, tm["dim"], device=dev, generator=g)
    for L in tm["contexts"]:
        c_kv = torch.randn(Bt, L, t_cfg.kv_lora_rank, device=dev, generator=g)
        k_pe = torch.randn(Bt, L, t_cfg.qk_rope_head_dim, device=dev, generator=g)
        row = {"context": L}
        for mode in ("naive", "reexpand", "absorbed"):
            layer.mode = mode
            cache = layer.new_cache(Bt, L + 1)
            if mode == "naive":  # the same cached tokens, decompressed once into per-head keys and values
                cache.append(**dict(zip(("k", "v"), layer.expand(c_kv, k_pe))))
            else:
                cache.append(c_kv=c_kv, k_pe=k_pe)
            row[mode] = step_ms(layer, cache, x_new, tm["reps"])
            row[mode + " cache MB"] = cache.nbytes() / 1e6
        kv = gqa.new_cache(Bt, L + 1)
        kv.update(torch.randn(Bt, 1, L, gqa.head_dim, device=dev, generator=g),
                  torch.randn(Bt, 1, L, gqa.head_dim, device=dev, generator=g))
        row["gqa"] = step_ms(gqa, kv, x_new, tm["reps"])
        row["gqa cache MB"] = kv.k[:, :, :L].numel() * 2 * kv.k.element_size() / 1e6
        timing_rows.append(row)

print(f"batch {Bt}, float32 on {dev}; step time in ms (cache size in MB)")
print("| context | naive | re-expanded | absorbed | GQA, same cache | absorbed vs naive |")
print("| --- | --- | --- | --- | --- | --- |")
for r in timing_rows:
    print(f"| {r['context']} | {r['naive']:.2f} ({r['naive cache MB']:.1f}) | {r['reexpand']:.2f} "
          f"({r['reexpand cache MB']:.1f}) | {r['absorbed']:.2f} ({r['absorbed cache MB']:.1f}) | "
          f"{r['gqa']:.2f} ({r['gqa cache MB']:.1f}) | {r['naive'] / r['absorbed']:.1f}x |")

fig, ax = plt.subplots(figsize=(7, 4))
for key, label in (("naive", "naive (per-head K/V cache)"), ("reexpand", "latent, re-expanded every step"),
                   ("absorbed", "latent, absorbed"), ("gqa", "GQA, same cache size")):
    ax.plot(tm["contexts"], [r[key] for r in timing_rows], marker="o", label=label)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("context length (cached tokens)")
ax.set_ylabel("decode step time (ms)")
ax.set_title(f"One MLA layer, {t_cfg.n_heads} heads, batch {Bt}, on {dev.type}")
ax.legend()
plt.show()

last = timing_rows[-1]
ratio = t_cfg.kv_cache_elements_per_token("naive") / t_cfg.kv_cache_elements_per_token("absorbed")
assert math.isclose(last["naive cache MB"] / last["absorbed cache MB"], ratio)
assert last["reexpand"] > 2 * last["absorbed"], "re-expanding the whole cache every step must cost more"
print(f"the latent cache is {ratio:.0f}x smaller than the per-head cache of the same heads")

# %% [markdown]
# How large the gap between naive and absorbed is on a CPU depends on the machine (its caches, its threads,
# what else runs on it); the table above is this machine's, in this run. Re-expanding the latent at every
# step is always the worst, because it repeats the decompression of the whole cache for every new token
# (asserted above). On a GPU with DeepSeek-V3's real
# shapes (128 heads, latent 512) the picture is much sharper. These are the H200 measurements recorded by
# `benchmarks/mla_decode.py`, read from the results file:

# %%
results = Path(nanoseek.__file__).resolve().parents[1] / "benchmarks" / "results" / "mla_decode.md"
if results.exists():
    text = results.read_text(encoding="utf-8")
    lines = text.splitlines()
    print("\n".join(line for line in lines if line.startswith(("- command", "- date", "- gpu", "- torch"))))
    table = text.split("## Step time", 1)[1].split("##", 1)[0].strip().splitlines()
    print("\n".join(table[:2] + [row for row in table[2:] if "| 32768 |" in row or "| 4096 |" in row]))
    h200 = {}
    for row in table[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        h200[(int(cells[0]), int(cells[1]))] = cells
    print(f"\nH200, batch 32, 32K context: absorbed-einsum {h200[(32, 32768)][9]} faster than naive, "
          f"fused Triton kernel {h200[(32, 32768)][7]} faster than naive")

    def seconds(cell: str) -> float:
        value, unit = cell.split()
        return float(value) * {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]

    gqa, tri = h200[(32, 32768)][6], h200[(32, 32768)][5]
    print(f"...but the GQA-2 baseline (2 KV heads of 128, a cache of similar size) takes {gqa} against {tri} "
          f"for our absorbed Triton kernel: {seconds(tri) / seconds(gqa):.1f}x faster than us")
    assert seconds(gqa) < seconds(tri)
else:
    print("benchmarks/results/mla_decode.md is not part of a pip install: see the repository")

# %% [markdown]
# Why is GQA-2 faster, with a cache of about the same size? Decoding GQA reads each cached key once per *group*
# of heads; MLA's 128 heads all read the *same* latent, so every byte of the cache feeds 128 heads' worth of
# matrix work (the roofline section below computes how many FLOPs per cache byte). Absorbed MLA decoding is
# therefore bound by tensor-core throughput rather than by memory at 128 heads, as FlashMLA also reports
# {cite}`flashmla2025`, and our kernel reaches only part of the H200's peak. MLA's win is its small cache (more
# sequences and longer contexts fit in memory), not a faster step than GQA-2.
#
# ## Training: MHA, GQA, MQA and MLA on Shakespeare
# Does the small cache cost quality? We train five small decoders that differ only in their attention (MHA,
# GQA with 2 groups, MQA, and MLA with two latent sizes: a tight one and DeepSeek's ratio $d_c = 4 d_h$), on
# Shakespeare (character level; the validation works are not in training), for the same number of steps,
# with three seeds each at `tiny` (`nanoseek.seeds`), and put each model's validation loss against its cache
# per token. The `Decoder` of chapter 4 takes `attention="mla"` and the MLA sizes as config fields.

# %%
from nanoseek.data import CharVocab, load_shakespeare, window_batcher
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.seeds import TOO_FEW_SEEDS, over_seeds, table, verdict
from nanoseek.train import TrainConfig, train

tr = CFG["train"]
train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
vocab = CharVocab.from_text(train_text + val_text)
get_batch = window_batcher(torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text)),
                           tr["block_size"], tr["batch_size"])
common = dict(vocab_size=len(vocab), n_layer=tr["n_layer"], n_embd=tr["n_embd"], n_head=tr["n_head"],
              head_dim=tr["head_dim"], intermediate_size=tr["intermediate_size"], max_seq_len=tr["block_size"])
variants = {
    "MHA": DecoderConfig(**common, n_kv_head=tr["n_head"]),
    "GQA-2": DecoderConfig(**common, n_kv_head=2),
    "MQA": DecoderConfig(**common, n_kv_head=1),
}
for d_c in (tr["kv_lora_rank"], 4 * tr["head_dim"]):  # a tight latent, and DeepSeek's ratio d_c = 4 d_h
    variants[f"MLA-{d_c}"] = DecoderConfig(**common, attention="mla", kv_lora_rank=d_c,
                                           qk_nope_head_dim=tr["qk_nope_head_dim"],
                                           qk_rope_head_dim=tr["qk_rope_head_dim"], v_head_dim=tr["v_head_dim"])


def cache_elements(cfg: DecoderConfig) -> int:
    """Cached numbers per token, all layers."""
    per_layer = cfg.kv_lora_rank + cfg.qk_rope_head_dim if cfg.attention == "mla" else 2 * cfg.n_kv_head * cfg.head_dim
    return per_layer * cfg.n_layer


runs, seeds_val = {}, {}
for name, cfg in variants.items():
    def one_seed(seed: int, cfg=cfg) -> float:
        seed_everything(seed)  # weights
        global model
        model = Decoder(cfg)
        return train(model, get_batch, TrainConfig(max_steps=tr["max_steps"], lr=tr["lr"], seed=seed,
                                                   warmup_steps=tr["warmup_steps"], eval_every=tr["max_steps"],
                                                   eval_batches=tr["eval_batches"], progress=False)).final_val_loss

    seeds_val[name] = over_seeds(one_seed, tr["seeds"], desc=name)["value"]
    runs[name] = dict(params=model.num_params(), val=seeds_val[name].mean, kv_bytes=2 * cache_elements(cfg))
    # the cache the model really allocates agrees with the formula (MLA trains on its naive path, which is
    # cheaper with many queries, and decodes on the absorbed one, which caches the latent)
    for module in model.modules():
        if isinstance(module, MLA):
            module.mode = "absorbed"
    cache = model.new_cache(1, 8)
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long, device=next(model.parameters()).device), cache=cache)
    held = sum(c.nbytes() if callable(c.nbytes) else c.k[:, :, :8].numel() * 2 * c.k.element_size() for c in cache)
    assert held == 8 * cache_elements(cfg) * 4, name  # 8 tokens, float32

print("| attention | parameters | KV cache per token (bf16) | val loss (nats/char), mean ± std over seeds |")
print("| --- | --- | --- | --- |")
for name, r in runs.items():
    print(f"| {name} | {r['params']:,} | {r['kv_bytes']:,} B | {seeds_val[name].format(3)} |")

fig, ax = plt.subplots(figsize=(6, 4))
for name, r in runs.items():
    sv = seeds_val[name]
    ax.errorbar(r["kv_bytes"], sv.mean, yerr=[[sv.mean - sv.low], [sv.high - sv.mean]], fmt="o", capsize=4)
    ax.annotate(name, (r["kv_bytes"], r["val"]), textcoords="offset points", xytext=(6, 4))
ax.set_xscale("log", base=2)
ax.set_xlabel("KV cache per token, all layers (bytes, bf16)")
ax.set_ylabel("validation loss (nats/char)")
ax.set_title(f"{tr['max_steps']} steps on Shakespeare, {tr['n_layer']} layers, {tr['n_embd']} wide "
             f"(bars: range over {len(tr['seeds'])} seeds)")
plt.show()

mla_small, mla_wide = [k for k in runs if k.startswith("MLA")]
assert runs[mla_small]["kv_bytes"] < runs["MQA"]["kv_bytes"] < runs["GQA-2"]["kv_bytes"] < runs["MHA"]["kv_bytes"]
# "learned something" means more than character frequencies: every model beats the best context-free (unigram) model
counts = torch.bincount(torch.tensor(vocab.encode(train_text)), minlength=len(vocab)).float() + 1
val_ids = torch.tensor(vocab.encode(val_text))
unigram = float(-(counts / counts.sum()).log()[val_ids].mean())
print(f"unigram (character frequencies only) validation loss: {unigram:.3f} nats/char")
assert all(sv.high < unigram for sv in seeds_val.values()), "every model uses context"
VERDICTS = {}
for a, b in [("MHA", "GQA-2"), ("MHA", "MQA"), ("GQA-2", "MQA"), (mla_wide, "MHA"), (mla_small, "MHA"),
             (mla_small, "MQA"), (mla_wide, mla_small)]:
    VERDICTS[(a, b)] = verdict(seeds_val[a], seeds_val[b], names=(a, b))
    print(f"{a} vs {b}: {VERDICTS[(a, b)]}")

# %% [markdown]
# Read this with care: the models are tiny and trained briefly. The cache axis is exact; the loss axis is the
# mean over the seeds, with the seed range as bars, and `verdict` names a winner only when the ranges do not
# overlap (printed above; "tie" otherwise). The cell below turns the verdicts into the sentence this chapter can
# honestly say about the paper's effect.
#
# The paper's claim is narrower than "MLA beats MHA". DeepSeek-V2's Appendix D {cite}`deepseekv2` first compares
# MHA, GQA and MQA on **7B dense** models (MHA best, MQA and GQA behind), then compares MLA against MHA on
# **MoE models**, a small and a large one, where MLA did better than MHA with a far smaller cache. Our models
# are dense, tiny and trained for seconds, so at most we can ask whether MLA *at least matches* MHA here.

# %%
mla_vs_mha = VERDICTS[(mla_wide, "MHA")]
if mla_vs_mha == TOO_FEW_SEEDS:
    effect = (f"one run of each at this scale ({len(tr['seeds'])} seed): no ranking can be read from it; the "
              f"chapter's verdict on the paper's effect is the three-seed comparison at `tiny`")
elif mla_vs_mha == "tie":
    effect = (f"{mla_wide} and MHA tie over {len(tr['seeds'])} seeds: MLA matched MHA within the noise with a "
              f"{runs['MHA']['kv_bytes'] / runs[mla_wide]['kv_bytes']:.0f}x smaller cache")
elif mla_vs_mha == mla_wide:
    effect = f"{mla_wide} beat MHA on every seed: the paper's effect reproduced at this scale"
else:
    effect = f"MHA beat {mla_wide} on every seed: the paper's effect (MLA at least matching MHA) did not reproduce here"
print(effect)

# %% [markdown]
# ## Paper says / we measured
# The A100 speed-ups of absorbed over decompressed decoding (3.63x at batch 32, 20x at batch 1) are from the
# MADSys group's matrix-absorption notes on DeepSeek-V2 inference {cite}`madsys2024mla`, measured on an
# A100-PCIE-40GB with their implementation.

# %%
h200_b32 = h200.get((32, 32768)) if results.exists() else None
h200_b1 = h200.get((1, 32768)) if results.exists() else None
print("| claim | paper | ours | why they differ |")
print("| --- | --- | --- | --- |")
print(f"| KV cache vs DeepSeek 67B | -93.3% | {-by_bits:.1%} (bits), {-by_elements:.1%} (elements) | the 93.3% assumes a ~6-bit V2 cache |")
print(f"| MLA cache as GQA groups | 2.25 | {groups_equivalent} | same formula |")
if h200_b32:
    print(f"| absorbed vs decompressed decode, batch 32 | 3.63x (A100, MADSys notes) | {h200_b32[9]} einsum, "
          f"{h200_b32[7]} Triton (H200, 32K) | different GPU, context and implementation |")
    print(f"| absorbed vs decompressed decode, batch 1 | 20x (A100, MADSys notes) | {h200_b1[9]} einsum, "
          f"{h200_b1[7]} Triton (H200, 32K) | at batch 1 our naive path already streams at 2.7 TB/s |")
print(f"| MLA vs MHA quality | MLA better than MHA (V2 Appendix D: MoE models, small and large) | MHA "
      f"{seeds_val['MHA'].format(3)}, {mla_wide} {seeds_val[mla_wide].format(3)}: **{mla_vs_mha}** | "
      f"dense {tr['n_embd']}-wide models, {tr['max_steps']} steps, {len(tr['seeds'])} seed(s) |")
print("| MHA vs GQA vs MQA quality | MHA best (V2 Appendix D: 7B dense models) | "
      f"MHA vs GQA-2: **{VERDICTS[('MHA', 'GQA-2')]}**, MHA vs MQA: **{VERDICTS[('MHA', 'MQA')]}** | same |")

# %% [markdown]
# ## In the wild
# transformers ships DeepSeek-V3's attention as `DeepseekV3Attention`. `nanoseek.interop.deepseek_v3.mla_from_hf`
# loads one into our MLA. Two details matter: DeepSeek's checkpoints lay the RoPE dimensions out as interleaved
# pairs (`rope_interleave=True`), which we turn into our half layout by permuting the RoPE rows of the two
# projections once at load time; and V3 uses **YaRN (YaRN 上下文扩展)** {cite}`peng2023yarn` to stretch its
# context, which changes the RoPE tables and the softmax scale; `mla_from_hf` copies both from transformers.
# A tiny random layer (every weight randomized, norms included):

# %%
from transformers import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention, DeepseekV3RotaryEmbedding

from nanoseek.interop.deepseek_v3 import mla_from_hf

hf_cfg = DeepseekV3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32,
                          q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                          max_position_embeddings=64, num_hidden_layers=1, vocab_size=32, rope_interleave=True,
                          attn_implementation="eager")
hf_attn = randomize(DeepseekV3Attention(hf_cfg, layer_idx=0), seed=3)
ours = mla_from_hf(hf_attn, mode="absorbed")
x = torch.randn(2, 9, 64)
with torch.no_grad():
    cos_sin = DeepseekV3RotaryEmbedding(hf_cfg)(x, torch.arange(9)[None])
    mask = torch.full((9, 9), float("-inf")).triu(1)[None, None]
    ref = hf_attn(x, position_embeddings=cos_sin, attention_mask=mask)[0]
    torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-5)
print("transformers DeepseekV3Attention == nanoseek MLA (absorbed path) ✓")

# %% [markdown]
# Our own YaRN, `nanoseek.nn.rope.yarn_cos_sin` (transcribed from DeepSeek's reference code), is what
# `MLAConfig(rope_scaling=...)` uses. Pairs that turn many times over the original context keep their
# frequency; slow ones are divided by `factor`; a ramp blends those between, and $\mathrm{mscale} = 0.1 \ln(	ext{factor}) + 1$
# multiplies the softmax scale (squared, via `mscale_all_dim`). With DeepSeek-V3's own settings (factor 40 over an
# original 4K context), we compare the tables with transformers' and run a whole layer with `rope_scaling` set:

# %%
from dataclasses import replace

from nanoseek.nn.rope import yarn_cos_sin, yarn_softmax_multiplier

v3_yarn = dict(factor=40.0, original_max_position_embeddings=4096, beta_fast=32, beta_slow=1, mscale=1.0,
               mscale_all_dim=1.0)  # DeepSeek-V3's config.json
r_dim, L_yarn = 64, 8192
cos_y, _ = yarn_cos_sin(r_dim, L_yarn, 10000.0, **v3_yarn)
yarn_hf_cfg = DeepseekV3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32,
                               q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=r_dim, v_head_dim=16,
                               max_position_embeddings=L_yarn, num_hidden_layers=1, vocab_size=32, rope_interleave=True,
                               attn_implementation="eager", rope_scaling={"rope_type": "yarn", "rope_theta": 10000.0,
                                                                          **v3_yarn})
cos_hf = DeepseekV3RotaryEmbedding(yarn_hf_cfg)(torch.zeros(1), torch.arange(L_yarn)[None])[0][0, :, : r_dim // 2]
torch.testing.assert_close(cos_y, cos_hf, atol=2e-6, rtol=0)
fig, ax = plt.subplots(figsize=(7, 3))
inv_plain = 1.0 / (10000.0 ** (torch.arange(0, r_dim, 2).float() / r_dim))
ax.semilogy(2 * math.pi / inv_plain, "o-", label="RoPE")
ax.semilogy(2 * math.pi / torch.acos(cos_y[1].clamp(-1, 1)), "s-", label="YaRN, factor 40")
ax.axhline(4096, color="gray", ls="--", label="original context (4K)")
ax.set_xlabel("frequency pair i"); ax.set_ylabel("wavelength (tokens)"); ax.legend()
ax.set_title("YaRN stretches only the slow pairs")
plt.show()
softmax_mult = yarn_softmax_multiplier(40.0, 1.0)
print(f"YaRN tables == transformers' (DeepSeek-V3 settings, {L_yarn} positions) ✓; softmax scale x {softmax_mult:.3f}")
# a whole layer with rope_scaling: our own tables and scale, transformers' layer with the same weights
small_yarn = dict(factor=4.0, original_max_position_embeddings=16, beta_fast=8, beta_slow=2, mscale=1.0,
                  mscale_all_dim=1.0)
hf_cfg_y = DeepseekV3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32,
                            q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                            max_position_embeddings=64, num_hidden_layers=1, vocab_size=32, rope_interleave=True,
                            attn_implementation="eager",
                            rope_scaling={"rope_type": "yarn", "rope_theta": 10000.0, **small_yarn})
hf_attn_y = randomize(DeepseekV3Attention(hf_cfg_y, layer_idx=0), seed=4)
loaded = mla_from_hf(hf_attn_y)
ours_y = MLA(replace(loaded.cfg, rope_scaling=small_yarn))  # YaRN from our config, not copied
ours_y.load_state_dict(loaded.state_dict())
x_y = torch.randn(1, 48, 64)  # 48 positions: 3x the original context of 16
with torch.no_grad():
    mask_y = torch.full((48, 48), float("-inf")).triu(1)[None, None]
    ref_y = hf_attn_y(x_y, position_embeddings=DeepseekV3RotaryEmbedding(hf_cfg_y)(x_y, torch.arange(48)[None]),
                      attention_mask=mask_y)[0]
    torch.testing.assert_close(ours_y(x_y), ref_y, atol=1e-5, rtol=1e-5)
assert abs(ours_y.softmax_scale - hf_attn_y.scaling) < 1e-12 and softmax_mult > 1
print("MLA(rope_scaling=...) == transformers DeepseekV3Attention with YaRN, 48 positions ✓")

# %% [markdown]
# To run the real thing on a GPU, `AutoModelForCausalLM.from_pretrained("deepseek-ai/DeepSeek-V2-Lite")`
# (16B parameters, MLA in every layer, `q_lora_rank=None`) fits on one 40 GB+ card in bf16. Production decoders
# go further than this chapter: FlashMLA (DeepSeek's CUDA kernels for Hopper) runs the absorbed path with the
# latent cache in pages of 64 tokens, and DeepSeek serves V2 with the cache quantized to about 6 bits.
#
# ## Advanced: a fused decode kernel (GPU only)
# The absorbed einsums read the latent cache twice (for the scores and for the weighted sum) and write the
# whole score tensor to memory in between. A fused kernel reads each cache tile once and computes an
# **online softmax (在线 softmax)**, as FlashAttention does: a running maximum $m$, a running sum $\ell$ and a running weighted sum
# $a$, rescaled by $e^{m_\text{old} - m_\text{new}}$ whenever a new tile raises the maximum. Decode has only one
# query per sequence, so to keep a large GPU busy the kernel also splits the context, as
# **flash-decoding (闪电解码, FlashDecoding)** does: each
# program handles one chunk of the cache for a block of heads and writes a partial output with its log-sum-exp,
# and a second small kernel merges the chunks (exercise 4 asks you to write that merge). Here is the whole
# module; on a machine with CUDA, the next cell checks it against the einsums.
#
# How such a kernel is laid out, for a reader who has never written one. A GPU runs a kernel as thousands of
# small programs spread over its streaming multiprocessors; each loads a few tiles into fast on-chip memory,
# works on them and writes a small result. Three choices shape this one:
#
# - **Tiling by heads.** All heads read the same latent cache, so a program takes a block of heads and a tile
#   of cached tokens. The block's absorbed queries form a (heads × 576) matrix and the tile a (tokens × 576)
#   one, so all the block's scores are one matrix product, and the weighted sum (probabilities times the same
#   tile) a second one. Each tile is loaded once and serves every head of the block.
# - **Tensor cores.** Products of matrices of that shape are what the tensor cores do, many times faster than
#   the ordinary arithmetic units. One head at a time would be a vector times a matrix, which they cannot take;
#   that is why the head block exists. FlashMLA does the same {cite}`flashmla2025`.
# - **Splitting the context.** At batch 1 there are only a couple of head blocks, far fewer programs than the
#   GPU has multiprocessors, so the context is cut into chunks, one program per (head block, chunk), merged as
#   above. Chunks are not free: each writes a partial output in float32, so how short a chunk may be is
#   measured (`benchmarks/mla_decode.py --tune` sweeps it with the tile sizes, each setting checked against the
#   einsums).

# %%
from nanoseek.kernels import mla_decode as mla_kernels

nanoseek.show(mla_kernels)

# %%
if torch.cuda.is_available() and mla_kernels.triton is not None:
    gq = torch.Generator(device="cuda").manual_seed(0)
    args = [torch.randn(*shape, device="cuda", generator=gq).bfloat16()
            for shape in ((4, 128, 512), (4, 128, 64), (4, 4096, 512), (4, 4096, 64))]
    fused = mla_kernels.mla_decode_triton(*args, 192 ** -0.5).float()
    reference = mla_kernels.mla_decode_einsum(*[a.float() for a in args], 192 ** -0.5)
    print(f"max |Triton - einsum| = {(fused - reference).abs().max().item():.2e} (bf16 inputs)")
    assert (fused - reference).abs().max().item() < 2e-2
else:
    print("no CUDA here: the package falls back to the einsum path (mla_decode(..., backend='auto'))")

# %% [markdown]
# What it reaches on the H200 with V3's shapes, read from the record. Every row has two bounds: the **compute
# bound** (the step's FLOPs at the bf16 matmul rate measured in the same run) and the **memory bound** (the
# cache's bytes at the copy bandwidth of the same run). The **roofline (屋顶线模型)** is the larger of the two;
# achieved ÷ bound says how much of it the kernel reaches. With 128 heads sharing one latent, absorbed MLA does
# many FLOPs per cached byte (the same for every batch and context), more than the machine's balance point, so
# it sits under the flat, compute-bound part of the roof. A GQA-2 step does far fewer FLOPs per byte.

# %%
from nanoseek.benchmarking import read_result

mla_rec = read_result("mla_decode")
if mla_rec is None or "rows" not in mla_rec["data"]:
    print("benchmarks/results/mla_decode.json is not part of a pip install: see the repository")
else:
    md = mla_rec["data"]
    peak, copy_tbs = md["matmul_peak_tflops"], md["copy_tbs"]
    H_, c_, r_, dh_ = 128, 512, 64, 128
    mla_intensity = H_ * 2 * (2 * c_ + r_) / ((c_ + r_) * 2)          # FLOP per cache byte, absorbed MLA
    gqa_intensity = (H_ // 2) * 2 * (2 * dh_) / (2 * dh_ * 2)          # 64 query heads per KV head of 128 + 128
    rows = [row for row in md["rows"] if row.get("kernel only ms")]
    fig, (ax_roof, ax_share) = plt.subplots(1, 2, figsize=(11, 4))
    x = torch.logspace(0, 3.5, 100)
    ax_roof.loglog(x, torch.minimum(torch.full_like(x, peak), x * copy_tbs), "k-", lw=1,
                   label=f"roofline: min({peak:.0f} TFLOP/s, intensity x {copy_tbs:.2f} TB/s)")
    for batch, marker in ((32, "o"), (1, "s")):
        pts = [row for row in rows if row["batch"] == batch]
        ax_roof.scatter([mla_intensity] * len(pts), [row["kernel TFLOP/s"] for row in pts], marker=marker,
                        c=[math.log2(row["context"]) for row in pts], cmap="viridis",
                        label=f"our MLA kernel, batch {batch} (colour: context)")
        gqa = [2 * row["batch"] * H_ * row["context"] * 2 * dh_ / (row["GQA-2 baseline"] * 1e-3) / 1e12
               for row in pts if row.get("GQA-2 baseline")]
        ax_roof.scatter([gqa_intensity] * len(gqa), gqa, marker=marker, facecolors="none", edgecolors="C3",
                        label=f"GQA-2 (SDPA), batch {batch}")
        ax_share.plot([row["context"] for row in pts], [row["kernel / bound"] for row in pts], marker=marker,
                      label=f"batch {batch}")
    ax_roof.set(xlabel="FLOP per byte of cache read", ylabel="TFLOP/s", title="H200, one decode step")
    ax_roof.legend(fontsize=7, loc="upper left")
    ax_share.set(xscale="log", xlabel="context (tokens)", ylabel="achieved / roofline bound", ylim=(0, 1),
                 title="share of the roof the kernel reaches")
    ax_share.axhline(0.6, color="gray", ls=":", lw=1)
    ax_share.legend()
    plt.tight_layout()
    plt.show()
    big = {row["batch"]: row for row in rows if row["context"] == max(r["context"] for r in rows)}
    b32, b1 = big[32], big[1]
    abl32, abl1 = md["sweeps"]["32"]["ablations_us"], md["sweeps"]["1"]["ablations_us"]
    loads_tbs = 2 * b32["cache bytes"] / (abl32["tile loads only"] * 1e-6) / 1e12  # two head blocks read each tile
    display(Markdown(
        f"Measured on {mla_rec.get('gpu', 'the GPU')} ({mla_rec['date'][:10]}): bf16 matmul **{peak:.0f} TFLOP/s**, "
        f"copy **{copy_tbs:.2f} TB/s**, so the machine's balance is {peak / copy_tbs:.0f} FLOP per byte and absorbed "
        f"MLA's {mla_intensity:.0f} FLOP per byte is compute-bound.\n\n"
        f"- Batch 32, {b32['context']:,} tokens: the kernel takes {b32['kernel only ms'] * 1e3:.0f} µs, "
        f"{b32['kernel TFLOP/s']:.0f} TFLOP/s, **{b32['kernel TFLOP/s'] / peak:.0%} of the matmul peak** "
        f"(the goal was 60%); {b32['kernel / bound']:.2f} of its roofline bound.\n"
        f"- Batch 1, {b1['context']:,} tokens: {b1['kernel only ms'] * 1e3:.1f} µs against a bound of "
        f"{b1['bound us']:.1f} µs (the goal was 2x the bound, 25 µs): {b1['kernel / bound']:.2f} of the roof.\n"
        f"- What limits it, measured by leaving work out (the sweep's ablations): with the same tiles, a kernel "
        f"that only loads them takes {abl32['tile loads only']:.0f} µs at batch 32 against "
        f"{md['sweeps']['32']['results'][md['sweeps']['32']['best']]['us']:.0f} µs "
        f"for the whole kernel, and {abl1['tile loads only']:.1f} µs against "
        f"{md['sweeps']['1']['results'][md['sweeps']['1']['best']]['us']:.1f} µs at batch 1. "
        f"The time is the loading of cache tiles, not the arithmetic. With 64 heads a block, the two head "
        f"blocks each read every tile: {loads_tbs:.2f} TB/s of loads, below the {copy_tbs:.2f} TB/s a copy reaches. "
        f"Two pipeline stages of (64 tokens x 576) bf16 tiles take {2 * 64 * 576 * 2 / 1024:.0f} KB of a "
        f"multiprocessor's 227 KB of shared memory, so one program fits per multiprocessor and a third stage does "
        f"not fit at all (the sweep's failures): few loads in flight is the likely reason, which this run did not "
        f"isolate."))
    assert b32["kernel / bound"] < 1.05 and b1["kernel / bound"] < 1.05  # no row above its own roof

# %% [markdown]
# How the kernel was tuned, for a reader who has never written one: `benchmarks/mla_decode.py --tune` compiles
# every setting in a child process (a setting that needs more shared memory than a multiprocessor has fails
# there, not in the benchmark), times each one on the kernel alone, checks it against float32 einsums, and
# keeps the fastest one within the accuracy limit; the package's `DEFAULTS` are the batch-1 winner, which at
# batch 32 times within a fraction of a percent of that batch's best (both printed below). The knobs are
# the three choices above: the tile (heads x tokens: more heads a block means fewer blocks reading each tile,
# more tokens means longer loads in flight, and both cost shared memory and registers), the pipeline stages
# (loads of the next tile issued while the current one is computed), and, at batch 1, how the context is split
# into chunks and in which precision the chunks' partial outputs are written. The cell below prints, from the
# record, the best of each family. One block of all 128 heads would read each tile once, but its float32
# accumulator (128 x 512 numbers) does not fit in one program's registers: FlashMLA splits it across two groups
# of warps, a step this kernel does not take.

# %%
if mla_rec is not None and "sweeps" in mla_rec["data"]:
    for b, sw in mla_rec["data"]["sweeps"].items():
        ok = {name: res for name, res in sw["results"].items()
              if res.get("us") is not None and res["max_err_fp32"] <= sw["accuracy_limit"]}
        fams = {"pointer loads, float32 partials": lambda n: "tma" not in n and "bf16" not in n,
                "pointer loads, bf16 partials": lambda n: "tma" not in n and "bf16" in n,
                "TMA (bulk tensor copy) loads": lambda n: "tma" in n}
        print(f"batch {b}, {sw['context']:,} tokens: {len(sw['results'])} settings, {len(ok)} ran within the "
              f"accuracy limit; best `{sw['best']}` {sw['results'][sw['best']]['us']:.1f} µs")
        for fam, member in fams.items():
            best = min((n for n in ok if member(n)), key=lambda n: ok[n]["us"], default=None)
            if best is not None:
                print(f"  best with {fam}: `{best}` {ok[best]['us']:.1f} µs")
    bw = [line for line in text.split("## Achieved bandwidth", 1)[1].split("\n## ", 1)[0].splitlines()
          if line.startswith("|")]
    print("\n".join(bw[:2] + [row for row in bw if row.startswith(("| 32 | 32768", "| 1 | 32768"))]))

# %% [markdown]
# ## Summary
# - The KV cache per token is $2 n_h d_h$ (MHA), $2 n_g d_h$ (GQA), $2 d_h$ (MQA) and $d_c + d^R_h$ (MLA) numbers
#   per layer; for DeepSeek-V2/V3 MLA equals GQA with 2.25 groups, and the 93.3% figure assumes a 6-bit cache.
# - MLA caches one normalized latent per token and re-creates every head's key and value from it.
# - RoPE puts a distance-dependent rotation between query and key, so the key up-projection cannot be folded
#   into the query; a small shared, separately rotated key carries the positions instead.
# - Absorbed MLA scores the query against the latent directly and applies $W^{UV}$ after the weighted sum:
#   the same outputs, a cache many times smaller, and a decode step many times faster than the per-head
#   cache on an H200 (the table read from the record above).
# - A fused flash-decoding kernel beats the einsums; with 128 heads sharing one latent it sits under the
#   compute-bound part of the roofline, reaches the share of it printed above, and is held back by how fast it
#   loads cache tiles; a GQA-2 decode step is still faster than ours.
# - Over three seeds at `tiny`, the quality verdicts between MLA and the GQA family are printed above; the
#   paper's MLA-vs-MHA comparison is on MoE models far larger than ours.
#
# ## Exercises
# Edit each function, run its cell, and the checker tells you whether it is right. Solutions are hidden below
# each exercise.
#
# **Exercise 1 (easy).** Count the KV cache per token, in elements, for all layers: `kind` is `"mha"`, `"gqa"`,
# `"mqa"` or `"mla"`.

# %% tags=["exercise"]
from nanoseek.exercises.ch05 import check_kv_cache_elements


def kv_cache_elements(kind: str, n_layer: int, n_head: int, head_dim: int, n_kv_head: int,
                      kv_lora_rank: int, rope_dim: int) -> int:
    raise NotImplementedError  # your code here


check_kv_cache_elements(kv_cache_elements)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch05 import check_kv_cache_elements


def kv_cache_elements(kind: str, n_layer: int, n_head: int, head_dim: int, n_kv_head: int,
                      kv_lora_rank: int, rope_dim: int) -> int:
    per_layer = {"mha": 2 * n_head * head_dim, "gqa": 2 * n_kv_head * head_dim, "mqa": 2 * head_dim,
                 "mla": kv_lora_rank + rope_dim}[kind]
    return per_layer * n_layer


assert check_kv_cache_elements(kv_cache_elements)

# %% [markdown]
# **Exercise 2 (medium).** The absorbed score: compute $q^C_{t,i} \cdot (W^{UK}_i c_s)$ for every head and cached
# token *without* building the keys (move the query into latent space first).

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch05 import check_absorbed_scores


def absorbed_scores(q_nope: torch.Tensor, w_uk: torch.Tensor, c_kv: torch.Tensor) -> torch.Tensor:
    """q_nope (B, H, n), w_uk (H, n, c), c_kv (B, S, c) -> scores (B, H, S)."""
    raise NotImplementedError  # your code here


check_absorbed_scores(absorbed_scores)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch05 import check_absorbed_scores


def absorbed_scores(q_nope: torch.Tensor, w_uk: torch.Tensor, c_kv: torch.Tensor) -> torch.Tensor:
    q_lat = torch.einsum("bhn,hnc->bhc", q_nope, w_uk)  # (B, H, c)
    return torch.einsum("bhc,bsc->bhs", q_lat, c_kv)


assert check_absorbed_scores(absorbed_scores)

# %% [markdown]
# **Exercise 3 (medium).** Why RoPE cannot be absorbed, as a numeric check: write RoPE at position `pos` (half
# layout, $\theta = 10000$) as a `(dim, dim)` matrix $R$ with $R x$ equal to the rotated $x$. The checker then
# verifies that $R_t^\top R_s = R_{s-t}$, the distance-dependent matrix that sits between query and key.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch05 import check_rope_matrix


def rope_matrix(pos: int, dim: int) -> torch.Tensor:
    """(dim, dim) rotation: pair (i, i + dim/2) turns by pos * 10000^(-2i/dim)."""
    raise NotImplementedError  # your code here


check_rope_matrix(rope_matrix)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch05 import check_rope_matrix


def rope_matrix(pos: int, dim: int) -> torch.Tensor:
    half = dim // 2
    angle = pos * 10000.0 ** (-torch.arange(0, dim, 2).float() / dim)  # (dim/2,)
    i = torch.arange(half)
    R = torch.zeros(dim, dim)
    R[i, i], R[i, i + half] = angle.cos(), -angle.sin()
    R[i + half, i], R[i + half, i + half] = angle.sin(), angle.cos()
    return R


assert check_rope_matrix(rope_matrix)

# %% [markdown]
# **Exercise 4 (harder).** The merge step of flash-decoding. The context was cut into $P$ chunks; for each chunk
# and head you have the softmax-normalized output over that chunk's keys, `o[p]` (H, C), and the log-sum-exp of
# that chunk's scores, `lse[p]` (H,). Return the output of one softmax over all keys, (H, C). Keep it stable:
# scores can be large.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch05 import check_combine_splits


def combine_splits(o: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """o (P, H, C), lse (P, H) -> (H, C)."""
    raise NotImplementedError  # your code here


check_combine_splits(combine_splits)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch05 import check_combine_splits


def combine_splits(o: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    w = torch.exp(lse - lse.max(dim=0).values)  # (P, H): each chunk's share of the total mass, up to a constant
    return (w[..., None] * o).sum(0) / w.sum(0)[..., None]


assert check_combine_splits(combine_splits)

# %% [markdown]
# **Exercise 5 (harder, the core of the chapter).** One absorbed MLA decode step, from scratch: the new token's
# query halves `q_nope` (B, H, n) and `q_pe` (B, H, r, already rotated), the cache `c_kv` (B, S, c) and `k_pe`
# (B, S, r, shared by all heads), and the up-projections `w_uk` (H, n, c) and `w_uv` (H, v, c). Score each cached
# token by $q^{C}\cdot(W^{UK} c) + q^{R}\cdot k^{R}$, scale, softmax over the cache, and return the heads' outputs
# (B, H, v) **without** building any per-head key or value: the checker watches the sizes of the tensors you make.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch05 import check_absorbed_decode


def absorbed_decode(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale: float) -> torch.Tensor:
    """-> (B, H, v): softmax(scale · (q_nope W_UK · c_kv + q_pe · k_pe)) over S, values W_UV c_kv."""
    raise NotImplementedError  # your code here


check_absorbed_decode(absorbed_decode)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch05 import check_absorbed_decode


def absorbed_decode(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale: float) -> torch.Tensor:
    q_lat = torch.einsum("bhn,hnc->bhc", q_nope, w_uk)  # (B, H, c): the query moved into latent space
    scores = torch.einsum("bhc,bsc->bhs", q_lat, c_kv) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)  # (B, H, S)
    p = (scores * scale).softmax(dim=-1)  # stable: softmax subtracts the max
    o_lat = torch.einsum("bhs,bsc->bhc", p, c_kv)  # (B, H, c): attention over the latents themselves
    return torch.einsum("bhc,hvc->bhv", o_lat, w_uv)  # W_UV applied once, after the sum


assert check_absorbed_decode(absorbed_decode)

# %% [markdown]
# ## Further reading
# - DeepSeek-V2, where MLA is introduced (Section 2.1, Table 1, Appendix D): {cite}`deepseekv2`. DeepSeek-V3
#   keeps it unchanged: {cite}`deepseekv3`.
# - Multi-query attention {cite}`shazeer2019fast` and grouped-query attention {cite}`ainslie2023gqa`, the cache
#   savings MLA competes with; RoPE {cite}`su2021roformer`.
# - FlashAttention's online softmax {cite}`dao2022flashattention` and FlashDecoding's split context
#   {cite}`dao2023flashdecoding`; DeepSeek's FlashMLA kernels {cite}`flashmla2025`.
