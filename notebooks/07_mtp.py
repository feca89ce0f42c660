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
# # Chapter 7: Multi-token prediction
#
# A language model is trained to predict the next token, and nothing else. DeepSeek-V3 asks a little more of
# it: at every position, small extra modules also predict the token after next, and the one after that,
# each one chained on the previous one's hidden state. This **multi-token prediction (多词元预测, MTP)** adds a
# training signal that is denser and looks further ahead, costs one transformer block per extra token, and
# leaves behind a free **draft model (草稿模型)**: at inference the MTP module guesses the next token, and the main
# model checks the guess in the same forward pass that produces its own token. In this chapter we build
# DeepSeek-V3's MTP into the chapter-4 decoder, train small models with and without it, and measure how
# often the drafts are accepted when we decode with them.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/07_mtp.ipynb)
#
# The budget (times read from `benchmarks/results/`) is the first cell after the setup.
#
# **What you will learn**
# - what DeepSeek-V3's MTP module computes, which token each depth reads and which it predicts, and how the
#   losses combine;
# - to add MTP to a decoder with a config field, and to compare runs with and without it on the main head's loss;
# - to decode with **self-speculative decoding (自推测解码)**: draft with MTP, verify with one forward, roll the
#   KV cache back on a miss, and get exactly the greedy output; and to *sample* with it, keeping plain
#   sampling's distribution;
# - to measure acceptance rate and tokens per forward, and to say why ours differ from the paper's 85–90% and 1.8x.

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import math
import time

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
    "07_mtp", tiny="three 2-layer decoders (D = 0, 1, 2), 64 wide, x 3 seeds; speculative decoding",
    full="three 6-layer decoders, 384 wide, 256 context, one seed", full_record="07_mtp_full")))

# %% [markdown]
# ## The configuration
# One cell decides the scale. Three models share everything but the number of MTP depths `D`: 0 (the plain
# decoder), 1 (DeepSeek-V3's setting) and 2.

# %%
CFG = pick(
    tiny=dict(block_size=64, n_layer=2, n_embd=64, n_head=4, intermediate_size=176, batch_size=16,
              max_steps=200, lr=3e-3, warmup_steps=20, eval_every=50, eval_batches=8, mtp_lambda=0.3,
              depths=(0, 1, 2), n_prompts=12, prompt_len=16, new_tokens=48, seeds=(0, 1, 2)),
    full=dict(block_size=256, n_layer=6, n_embd=384, n_head=6, intermediate_size=1024, batch_size=64,
              max_steps=3000, lr=1e-3, warmup_steps=100, eval_every=250, eval_batches=40, mtp_lambda=0.3,
              depths=(0, 1, 2), n_prompts=20, prompt_len=64, new_tokens=192, seeds=(0,)),
)
CFG

# %% [markdown]
# ## The idea: predict further, sequentially
# With tokens $t_1, \dots, t_T$ the main model produces a hidden state $h^0_i$ at every position and its
# output head predicts $t_{i+1}$. DeepSeek-V3 {cite}`deepseekv3` adds $D$ MTP modules. Module $k$ takes the
# previous depth's hidden state $h^{k-1}_i$ and the embedding of token $t_{i+k}$, normalizes each with its own
# RMSNorm, concatenates them ($2C$ wide), projects back to $C$ with a matrix $M_k$, runs one transformer block,
# and the **shared** output head then predicts $t_{i+k+1}$:
#
# $$h'^k_i = M_k\,[\mathrm{RMSNorm}(\mathrm{Emb}(t_{i+k}));\ \mathrm{RMSNorm}(h^{k-1}_i)],\qquad
# h^k_{1:T-k} = \mathrm{TRM}_k(h'^k_{1:T-k}),\qquad P^k_{i+k+1} = \mathrm{OutHead}(h^k_i).$$
#
# (The report writes the two halves in the other order; the released weights put the embedding first, and
# transformers, vLLM and we follow the weights. Swapping them only permutes the columns of $M_k$.)
# The embedding table and the output head are the main model's own (shared, not copied). Unlike the
# independent heads of {cite}`gloeckle2024better`, each depth sees the previous depth's representation, so
# the *causal chain* of predictions is kept. The loss of depth $k$ is the cross-entropy against $t_{i+k+1}$ and
#
# $$\mathcal{L} = \mathcal{L}_{\text{main}} + \frac{\lambda}{D}\sum_{k=1}^{D} \mathcal{L}^k_{\text{MTP}},$$
#
# with $\lambda = 0.3$ for DeepSeek-V3's first 10T tokens and 0.1 afterwards. Which token each depth reads and
# predicts, on a real sentence (character tokens, as in chapters 1 and 4–6):

# %%
from nanoseek.data import CharVocab, load_shakespeare, window_batcher

train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
vocab = CharVocab.from_text(train_text + val_text)
V = len(vocab)

sentence = "To be, or not to"
toks = [c if c != " " else "␣" for c in sentence]
D_show, T_show = 2, 10
fig, ax = plt.subplots(figsize=(10, 2.6))
for k in range(D_show + 1):
    for i in range(T_show - k):
        reads = toks[i + k]  # depth 0 reads t_i; depth k reads the embedding of t_{i+k} (and h^{k-1}_i)
        target = toks[i + k + 1]
        ax.add_patch(plt.Rectangle((i, -k - 0.45), 0.9, 0.9, color=f"C{k}", alpha=0.25))
        ax.text(i + 0.45, -k, f"{reads}→{target}", ha="center", va="center", fontsize=10)
ax.set_xlim(-0.1, T_show)
ax.set_ylim(-D_show - 0.6, 0.6)
ax.set_yticks([0, -1, -2], ["main", "depth 1", "depth 2"])
ax.set_xticks([i + 0.45 for i in range(T_show)], [f"i={i}" for i in range(T_show)])
ax.set_title("At position i, depth k reads token t(i+k) (→ predicts t(i+k+1)); depth k has T−k positions")
plt.show()

# %% [markdown]
# ## MTP, built inline
# Every piece already exists: RMSNorm, the decoder block of chapter 4, the embedding and the head. Here is
# the whole of MTP's training computation, written out with the parameters of a model that has them (the
# package's `Decoder` with `mtp_depth=D`, whose MTP modules we look at next):

# %%
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def mtp_losses_inline(model, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Main loss and the loss of every MTP depth. idx, targets: (B, T), targets[:, i] = t_{i+1}."""
    T = idx.shape[1]
    h = model.hidden(idx)                                    # h^0: (B, T, C), what the main head reads
    main = F.cross_entropy((h @ model.lm_head.weight.T).flatten(0, 1), targets.flatten())
    losses = []
    for k, m in enumerate(model.mtp.depths, start=1):
        emb = model.embed(idx[:, k:])                        # Emb(t_{i+k}), i = 0..T-1-k: (B, T-k, C)
        prev = h[:, : T - k]                                 # h^{k-1}_i:                  (B, T-k, C)
        x = torch.cat([rms_norm(emb, m.enorm.weight), rms_norm(prev, m.hnorm.weight)], dim=-1)  # (B, T-k, 2C)
        x = x @ m.eh_proj.weight.T                           # M_k: 2C -> C
        h = rms_norm(m.block(x), m.norm.weight)              # TRM_k, then the norm in front of the head: h^k
        logits = h @ model.lm_head.weight.T                  # the shared head: (B, T-k, V)
        losses.append(F.cross_entropy(logits.flatten(0, 1), targets[:, k:].flatten()))  # against t_{i+k+1}
    return main, losses


# %% [markdown]
# ## The package version
# `nanoseek.nn.mtp` holds one depth (`MTPModule`, with the parameter names of the released DeepSeek-V3
# checkpoint: `enorm`, `hnorm`, `eh_proj`, the block, and `norm` for `shared_head.norm`) and the loop over
# depths:

# %%
from nanoseek.nn.mtp import MTPModule, MultiTokenPrediction

nanoseek.show(MTPModule.forward)
nanoseek.show(MultiTokenPrediction.forward)

# %% [markdown]
# The decoder gets two config fields, `mtp_depth` and `mtp_lambda`; its forward pass adds
# $\lambda \cdot \mathrm{mean}_k \mathcal{L}^k$ and keeps the parts in `model.last_losses`, so that the main
# head's loss can be compared across runs with and without MTP. We randomize every weight (norm gains
# included) and check that the inline computation and the package agree:

# %%
from nanoseek.models.decoder import Decoder, DecoderConfig

torch.manual_seed(0)
check = Decoder(DecoderConfig(vocab_size=V, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=48,
                              max_seq_len=32, mtp_depth=2, mtp_lambda=0.3)).eval()
with torch.no_grad():
    for p in check.parameters():
        p.add_(torch.randn_like(p) * 0.05)
x_check = torch.randint(0, V, (3, 20))
y_check = torch.randint(0, V, (3, 20))
_, total = check(x_check, y_check)
main_inline, losses_inline = mtp_losses_inline(check, x_check, y_check)
torch.testing.assert_close(check.last_losses["main"], main_inline)
for k, lk in enumerate(losses_inline, start=1):
    torch.testing.assert_close(check.last_losses[f"mtp_{k}"], lk)
torch.testing.assert_close(total, main_inline + 0.3 * torch.stack(losses_inline).mean())
print({name: round(value.item(), 4) for name, value in check.last_losses.items()}, "total", round(total.item(), 4))
print("inline MTP == nanoseek Decoder(mtp_depth=2) ✓")

# %% [markdown]
# What MTP costs in parameters: per depth one block, the $2C \times C$ projection and three RMSNorm gains;
# the embedding and head are shared. (DeepSeek-V3's checkpoint: 671B main-model parameters plus 14B for its
# one MTP module, which is an MoE layer.)

# %%
def n_params(depth: int) -> int:
    return Decoder(DecoderConfig(vocab_size=V, n_layer=CFG["n_layer"], n_embd=CFG["n_embd"], n_head=CFG["n_head"],
                                 n_kv_head=CFG["n_head"], intermediate_size=CFG["intermediate_size"],
                                 max_seq_len=CFG["block_size"], mtp_depth=depth)).num_params()


C = CFG["n_embd"]
block_params = (n_params(0) - V * C * 2 - C) // CFG["n_layer"]  # main model: embed + head + final norm + blocks
for D in CFG["depths"]:
    formula = n_params(0) + D * (block_params + 2 * C * C + 3 * C)
    print(f"D={D}: {n_params(D):,} parameters ({n_params(D) / n_params(0) - 1:+.0%} over the plain decoder)")
    assert n_params(D) == formula

# %% [markdown]
# ## The experiment: the same decoder trained with D = 0, 1, 2
# Same data (Shakespeare; the validation works are not in training), same steps, three seeds each at `tiny`
# (`nanoseek.seeds`; seed `s` draws both the weights and the batches). The training loss is the total; the validation curve is always the
# **main head's** cross-entropy (`mtp_loss_fn` returns the total in training mode and the main loss in eval
# mode), the only number that compares models with and without MTP.

# %%
from nanoseek.nn.mtp import mtp_loss_fn
from nanoseek.train import TrainConfig, train

get_batch = window_batcher(torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text)),
                           CFG["block_size"], CFG["batch_size"])


def build(depth: int, seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(DecoderConfig(vocab_size=V, n_layer=CFG["n_layer"], n_embd=CFG["n_embd"], n_head=CFG["n_head"],
                                 n_kv_head=CFG["n_head"], intermediate_size=CFG["intermediate_size"],
                                 max_seq_len=CFG["block_size"], mtp_depth=depth, mtp_lambda=CFG["mtp_lambda"]))


from nanoseek.seeds import over_seeds, table, verdict

models, results, by_seed = {}, {}, {}
for D in CFG["depths"]:
    def one_seed(seed: int, D=D) -> float:
        model = build(D, seed)
        result = train(model, get_batch, TrainConfig(
            max_steps=CFG["max_steps"], lr=CFG["lr"], warmup_steps=CFG["warmup_steps"], eval_every=CFG["eval_every"],
            eval_batches=CFG["eval_batches"], seed=seed, progress=False), loss_fn=mtp_loss_fn)
        if seed == CFG["seeds"][0]:  # the first seed's models are the ones we decode with below
            models[D], results[D] = model, result
        return result.final_val_loss

    by_seed[D] = over_seeds(one_seed, CFG["seeds"], desc=f"D={D}")["value"]
    print(f"D={D}: main-head val loss {by_seed[D]}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for D, r in results.items():
    ax1.plot(r.eval_steps, r.val_loss, "o-", label=f"D={D}")
ax1.set_xlabel("step")
ax1.set_ylabel("main-head val loss (nats/char)")
ax1.set_title("Validation loss of the main head")
ax1.set_ylim(top=results[0].val_loss[1] + 0.3)
ax1.legend()


def smooth(xs: list[float], k: int = 20) -> list[float]:
    return [sum(xs[max(0, i - k + 1): i + 1]) / len(xs[max(0, i - k + 1): i + 1]) for i in range(len(xs))]


D_max = max(CFG["depths"])
r = results[D_max]
for name in ["main"] + [f"mtp_{k}" for k in range(1, D_max + 1)]:
    ax2.plot(r.steps, smooth(r.metrics[name]), label=name)
ax2.set_xlabel("step")
ax2.set_ylabel("train loss (nats/char, smoothed)")
ax2.set_title(f"D={D_max}: training loss of each head")
ax2.legend()
plt.show()

# %% [markdown]
# The depths' losses sit close to the main loss, not far above it, although depth $k$ predicts a token $k$
# steps further. That is the point of the *sequential* design: depth $k$ is handed the true tokens up to
# $t_{i+k}$ through their embeddings (teacher forcing), so its task is still "the next token", but it must
# fold the newly revealed tokens into a representation $h^{k-1}_i$ built before them, with one block instead
# of the whole network. The table records the parts:

# %%
print("| run | main-head val loss | Δ vs D=0 | final train losses (main, depth 1, ...) |\n| --- | --- | --- | --- |")
for D, r in results.items():
    parts = ", ".join(f"{sum(v[-20:]) / 20:.3f}" for name, v in r.metrics.items())
    print(f"| D={D} | {r.final_val_loss:.4f} | {r.final_val_loss - results[0].final_val_loss:+.4f} | {parts} |")
tail = {name: sum(v[-20:]) / 20 for name, v in results[D_max].metrics.items()}
assert all(abs(tail[f"mtp_{k}"] - tail["main"]) < 0.3 for k in range(1, D_max + 1)), tail

# %% [markdown]
# How much does depth 1 rely on the revealed token? We keep $h^0$ and the targets, and replace the tokens whose
# embeddings it reads by random ones: its loss on validation batches jumps, toward what predicting two
# characters ahead from $h^0_i$ alone would cost.

# %%
m1 = models[1].eval()
g = torch.Generator().manual_seed(123)
honest, blind = 0.0, 0.0
with torch.no_grad():
    for i in range(CFG["eval_batches"]):
        xb, yb = (t.to(next(m1.parameters()).device) for t in get_batch("val", torch.Generator().manual_seed(i)))
        h0 = m1.hidden(xb)
        honest += m1.mtp(h0, xb, m1.embed, m1.lm_head, yb)[1][0].item() / CFG["eval_batches"]
        noise = torch.randint(0, V, xb.shape, generator=g).to(xb.device)
        blind += m1.mtp(h0, noise, m1.embed, m1.lm_head, yb)[1][0].item() / CFG["eval_batches"]
print(f"depth-1 val loss: {honest:.3f} reading the true t(i+1), {blind:.3f} reading a random token")
assert blind > honest + 0.3

# %% [markdown]
# Does MTP's extra training signal buy a better main head at this scale? The next cell compares the main-head
# losses over the seeds with `nanoseek.seeds.verdict` (a winner only when every seed of one beats every seed
# of the other) and says whether the paper's effect reproduced. DeepSeek-V3's ablation (Table 4 of {cite}`deepseekv3`) found gains on most benchmarks for
# models of 15.7B and 228.7B parameters, trained on 1.33T and 540B tokens; {cite}`gloeckle2024better` found
# that multi-token prediction helps more the larger the model, and can hurt small ones. Our `tiny` models have 0.1–0.2M
# parameters and see a few hundred thousand characters.

# %%
display(Markdown(table({f"D={D}": by_seed[D] for D in CFG["depths"]})))
MTP_VERDICT = {D: verdict(by_seed[D], by_seed[0], names=(f"D={D}", "D=0")) for D in CFG["depths"] if D}
for D, v in MTP_VERDICT.items():
    print(f"main-head val loss, D={D} vs D=0 over {len(CFG['seeds'])} seed(s): {v}")
if len(CFG["seeds"]) >= 3:
    print("DeepSeek-V3's MTP gain on the main head:", "reproduced" if all(v != "D=0" and v != "tie" for v in
          MTP_VERDICT.values()) else "not reproduced at this scale (a tie or a loss)")

# %% [markdown]
# ## Self-speculative decoding with the MTP module
# After training, DeepSeek-V3 can drop the MTP module, or keep it as a draft model for **speculative decoding
# (推测解码)** {cite}`leviathan2023fast`. With greedy decoding, one round goes:
#
# 1. the main model reads the pending token and the drafts $d_1..d_m$ **in one forward** (KV cache on); its
#    argmax at each of these positions is what plain greedy decoding would choose there;
# 2. drafts are accepted while $d_j$ equals the main model's choice before it; at the first mismatch the main
#    model's own token is taken instead; a round with $a$ accepted drafts commits $a+1$ tokens;
# 3. the main model's KV cache is **rolled back** to the committed tokens (the rejected drafts' keys and values
#    are forgotten);
# 4. MTP depth $k$, at the last committed position, reads $h^{k-1}$ and the embedding of the token $k$ ahead,
#    and drafts the next $d_k$. Each depth keeps its own KV cache, rolled back the same way.
#
# The output is, by construction, exactly the greedy output: every committed token is the main model's argmax
# given the committed prefix. The package's version:

# %%
from nanoseek.generate import generate, generate_speculative_mtp

nanoseek.show(generate_speculative_mtp)

# %% [markdown]
# We decode continuations of validation prompts with both MTP models, check that the output equals plain greedy
# decoding token for token, and measure the acceptance rate of each depth's drafts, the tokens committed per
# main-model forward pass, and the wall-clock time against plain greedy decoding with the KV cache.

# %%
prompts = [val_text[i * 997: i * 997 + CFG["prompt_len"]] for i in range(CFG["n_prompts"])]
rows = []
spec_runs = {}
for D in [d for d in CFG["depths"] if d]:
    model = models[D].eval()
    for n_draft in range(1, D + 1):
        total, plain_s = None, 0.0
        for p in prompts:
            idx = torch.tensor([vocab.encode(p)], device=next(model.parameters()).device)
            t0 = time.perf_counter()
            ref = generate(model, idx, CFG["new_tokens"], temperature=0)
            plain_s += time.perf_counter() - t0
            out, stats = generate_speculative_mtp(model, idx, CFG["new_tokens"], n_draft=n_draft)
            assert torch.equal(out, ref), "speculative decoding must reproduce greedy decoding exactly"
            total = stats if total is None else total.merge(stats)
            spec_runs[(D, n_draft, p)] = (out, stats)
        rows.append((D, n_draft, total, plain_s))
print("speculative output == greedy output on every prompt ✓\n")
print("| model | drafts per round | acceptance by depth | tokens / forward | wall-clock speedup |")
print("| --- | --- | --- | --- | --- |")
for D, n_draft, st, plain_s in rows:
    acc = ", ".join(f"{a:.0%}" for a in st.acceptance_by_depth())
    print(f"| D={D} | {n_draft} | {acc} | {st.tokens_per_forward:.2f} | {plain_s / st.seconds:.2f}x |")

# %% [markdown]
# Which tokens came from accepted drafts? Below, a continuation from the D=1 model: green characters were
# drafted by the MTP module and accepted, the others were produced by the main model's forward pass.

# %%
from IPython.display import HTML, display

out, st = spec_runs[(1, 1, prompts[0])]
P = len(vocab.encode(prompts[0]))
from_draft = set()
for N, drafts, a in st.rounds:
    from_draft.update(range(N, N + a))
html = "".join(
    (f"<span style='background:#b7eb8f'>{c}</span>" if i in from_draft else c) if i >= P else f"<b>{c}</b>"
    for i, c in enumerate(vocab.decode(out[0].tolist()).replace("<", "&lt;")))
display(HTML(f"<pre style='white-space:pre-wrap'>{html}</pre>"))
print(f"{len(from_draft)} of {out.shape[1] - P} new characters came from accepted drafts")

# %% [markdown]
# Is the character after a space harder to draft than one inside a word? Over every round of the D=1 runs, we
# split the first drafts by the character just before them (the last committed one) and count acceptances:

# %%
space = vocab.encode(" ")[0]
tally = {"after a space (start of a word)": [0, 0], "after any other character": [0, 0]}
for (D, n_draft, p), (out, st) in spec_runs.items():
    if (D, n_draft) != (1, 1):
        continue
    seq = out[0].tolist()
    for N, drafts, a in st.rounds:
        if drafts:
            key = "after a space (start of a word)" if seq[N - 1] == space else "after any other character"
            tally[key][0] += a >= 1
            tally[key][1] += 1
rates = {k: (acc / n if n else float("nan"), n) for k, (acc, n) in tally.items()}
for k, (rate, n) in rates.items():
    print(f"first draft {k}: accepted {rate:.0%} of {n}")
(p_b, n_b), (p_i, n_i) = rates.values()
pooled = (p_b * n_b + p_i * n_i) / (n_b + n_i)
z = (p_i - p_b) / math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_i)) if 0 < pooled < 1 and n_b and n_i else 0.0
WORD_BOUNDARY = ("lower at the start of a word" if z > 3 else "higher at the start of a word" if z < -3
                 else "no difference beyond chance")
print(f"two-proportion z = {z:.1f}: acceptance is {WORD_BOUNDARY} (|z| > 3 counts as a difference)")

# %% [markdown]
# ### Speculative *sampling*
# Greedy decoding is one way to use a draft. To **sample** (temperature $> 0$) and still get exactly the
# distribution of plain sampling, the verification step changes {cite}`leviathan2023fast,chen2023accelerating`:
# the draft $d$ was drawn from the MTP module's distribution $q$, the main model's distribution there is $p$;
# accept $d$ with probability $\min(1, p(d)/q(d))$; on a rejection, draw the token from the **residual**
# $\max(0, p - q)$ normalized, and end the round. A token then comes out with probability
# $\min(p, q) + (1 - \sum \min(p, q))\,\frac{\max(0, p - q)}{\sum \max(0, p-q)} = p$, whatever $q$ is; a
# better draft only raises the acceptance, $\sum_v \min(p(v), q(v))$. Inline, then the package's version:

# %%
def accept_inline(p: torch.Tensor, q: torch.Tensor, d: int, g: torch.Generator) -> tuple[bool, int]:
    """p, q (V,): main and draft distributions; d ~ q. Returns (accepted, token)."""
    if torch.rand((), generator=g) < p[d] / q[d]:
        return True, d
    residual = (p - q).clamp_min(0)
    return False, int(torch.multinomial(residual / residual.sum(), 1, generator=g))


from nanoseek.generate import generate_speculative_mtp_sample, speculative_accept

nanoseek.show(speculative_accept)

# the real p and q of the D=1 model at one validation position, at temperature 1
m1 = models[1].eval()
dev = next(m1.parameters()).device
ctx_ids = torch.tensor([vocab.encode(val_text[:32])], device=dev)
with torch.no_grad():
    h0 = m1.hidden(ctx_ids)
    p_main = m1.lm_head(h0[:, -1]).softmax(-1)[0].cpu()  # (V,) main model at position 31: predicts t_32
    h1 = m1.mtp.depths[0](h0[:, :-1], m1.embed(ctx_ids[:, 1:]))  # depth 1 at position 30 predicts t_32 too
    q_draft = m1.lm_head(h1[:, -1]).softmax(-1)[0].cpu()
n_draws = 20_000
g_in, g_pkg = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
counts_in, counts_pkg = torch.zeros(V), torch.zeros(V)
for _ in range(n_draws):
    d = int(torch.multinomial(q_draft, 1, generator=g_in))
    counts_in[accept_inline(p_main, q_draft, d, g_in)[1]] += 1
    d = int(torch.multinomial(q_draft, 1, generator=g_pkg))
    a, nxt = speculative_accept(p_main[None].repeat(2, 1), q_draft[None], [d], g_pkg)
    counts_pkg[d if a else nxt] += 1
top = p_main.topk(8).indices
fig, ax = plt.subplots(figsize=(9, 3))
xs = torch.arange(8)
ax.bar(xs - 0.3, p_main[top], 0.2, label="p (main model)")
ax.bar(xs - 0.1, q_draft[top], 0.2, label="q (MTP draft)")
ax.bar(xs + 0.1, (counts_in / n_draws)[top], 0.2, label="speculative, inline")
ax.bar(xs + 0.3, (counts_pkg / n_draws)[top], 0.2, label="speculative, package")
ax.set_xticks(xs, [repr(vocab.decode([int(t)])) for t in top])
ax.set_ylabel("probability"); ax.set_xlabel("next character (the 8 likeliest)"); ax.legend(fontsize=8)
ax.set_title(f"{n_draws:,} draws at one position: the output follows p, not q")
plt.show()
# chi-square goodness of fit against p, at significance 1e-3 (pooled cells with expected count < 5)
def chi2_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    exp = probs.double() * counts.sum()
    big = exp >= 5
    obs_c = torch.cat([counts[big].double(), counts[~big].double().sum()[None]])
    exp_c = torch.cat([exp[big], exp[~big].sum()[None]])
    keep = exp_c > 0
    stat = ((obs_c[keep] - exp_c[keep]) ** 2 / exp_c[keep]).sum()
    return float(torch.special.gammaincc(torch.tensor((int(keep.sum()) - 1) / 2, dtype=torch.float64), stat / 2))


acc_theory = float(torch.minimum(p_main, q_draft).sum())
print(f"total variation between p and q: {0.5 * float((p_main - q_draft).abs().sum()):.3f}; "
      f"acceptance sum(min(p, q)) = {acc_theory:.3f}")
print(f"chi-square p-value of the output against p: inline {chi2_p(counts_in, p_main):.3f}, package "
      f"{chi2_p(counts_pkg, p_main):.3f}; of the draft q against p: {chi2_p(counts_in * 0 + q_draft * n_draws, p_main):.1e}")
assert chi2_p(counts_pkg, p_main) > 1e-3 and chi2_p(counts_in, p_main) > 1e-3

# %% [markdown]
# `tests/test_speculative_sampling.py` runs the same test on the whole decoding loop: over many draws, the joint
# distribution of the first generated tokens equals plain sampling's (computed exactly), at significance
# $10^{-3}$, and the "accept every draft" rule fails it. Sampling with the trained D=1 model:

# %%
sample_stats = None
g_s = torch.Generator().manual_seed(0)
for p_text in prompts:
    idx = torch.tensor([vocab.encode(p_text)], device=dev)
    _, st = generate_speculative_mtp_sample(m1, idx, CFG["new_tokens"], temperature=0.8, generator=g_s)
    sample_stats = st if sample_stats is None else sample_stats.merge(st)
greedy_stats = next(st for D, n, st, _ in rows if D == 1 and n == 1)
print(f"temperature 0.8: acceptance {sample_stats.acceptance_rate:.0%}, {sample_stats.tokens_per_forward:.2f} tokens "
      f"per forward (greedy: {greedy_stats.acceptance_rate:.0%}, {greedy_stats.tokens_per_forward:.2f})")

# %% [markdown]
# ## Paper says / we measured
# DeepSeek-V3 (§5.4.3 of {cite}`deepseekv3`) reports that the second token predicted by its MTP module is
# accepted 85–90% of the time across generation topics, and that decoding with it reaches 1.8x the tokens
# per second. With acceptance $p$ and one draft, a round commits $1 + p$ tokens on average (1.85–1.9 for
# the paper's $p$); the gap to 1.8x is the cost of the draft and of verifying two positions instead of one.

# %%
st1 = next(st for D, n, st, _ in rows if D == 1 and n == 1)
plain1 = next(s for D, n, _, s in rows if D == 1 and n == 1)
print(f"| quantity | DeepSeek-V3 (paper) | ours (D=1, {nanoseek.scale()}) |\n| --- | --- | --- |")
print(f"| acceptance of the 2nd token | 85–90% | {st1.acceptance_rate:.0%} |")
print(f"| tokens per main forward | ≈1.85–1.9 (= 1 + p) | {st1.tokens_per_forward:.2f} |")
print(f"| speedup in tokens/s | 1.8x | {plain1 / st1.seconds:.2f}x ({device().type.upper()} wall-clock) |")
print(f"| acceptance when sampling (temperature 0.8) | — | {sample_stats.acceptance_rate:.0%} |")
# n tokens: one from the prefill forward, then rounds of 1 + p tokens each (up to the last round's budget cut)
n_new = CFG["new_tokens"]
assert abs(st1.tokens_per_forward - n_new / (1 + (n_new - 1) / (1 + st1.acceptance_rate))) < 0.05
# greedy vs sampled acceptance: two proportions, each with its binomial standard error
gap = st1.acceptance_rate - sample_stats.acceptance_rate
se_gap = math.sqrt(sum(s.acceptance_rate * (1 - s.acceptance_rate) / s.drafted[0] for s in (st1, sample_stats)))
print(f"greedy minus sampled acceptance: {gap:+.1%} ± {se_gap:.1%} (one standard error): "
      + ("greedy drafts are accepted more often" if gap > 3 * se_gap else
         "sampled drafts are accepted more often" if gap < -3 * se_gap else "a tie within three standard errors"))
# what the draft is worth: a "draft" that always guesses the most frequent character in training
most_common = int(torch.bincount(torch.tensor(vocab.encode(train_text))).argmax())
hits = total_pos = 0
for (D, n_draft, p_text), (out, st) in spec_runs.items():
    if (D, n_draft) == (1, 1):
        new = out[0, len(vocab.encode(p_text)):]
        hits, total_pos = hits + int((new == most_common).sum()), total_pos + new.numel()
baseline = hits / total_pos
se = math.sqrt(baseline * (1 - baseline) / total_pos + st1.acceptance_rate * (1 - st1.acceptance_rate) / st1.drafted[0])
print(f"a draft that always says {vocab.decode([most_common])!r} would be accepted {baseline:.0%} of the time; "
      f"MTP's: {st1.acceptance_rate:.0%} ({(st1.acceptance_rate - baseline) / se:.1f} standard errors above)")
assert st1.acceptance_rate > baseline + 3 * se

# %% [markdown]
# Where does the wall-clock time go? A round costs one draft step plus one main forward over two tokens, and
# commits on average the tokens per forward measured above; plain decoding pays one one-token forward per
# token. We time the three calls with the KV cache (D=1 model, after a 48-token prefix; the best of 5 runs of
# 40 calls each, interleaved, so a busy CPU disturbs them less) and predict the speedup from them.

# %%
def best_seconds(fns: dict, calls: int = 40, runs: int = 5) -> dict:
    best = {name: float("inf") for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls)
    return best


m1 = models[1].eval()
L = 48
prefix = torch.tensor([vocab.encode(val_text[:L])], device=next(m1.parameters()).device)
with torch.no_grad():
    caches = {n: m1.new_cache(1, L - 1 + n) for n in (1, 2)}
    for cache in caches.values():
        m1.hidden(prefix[:, :-1], cache)
    h = m1.hidden(prefix)
    mcache = m1.mtp.depths[0].block.attn.new_cache(1, L)
    m1.mtp.depths[0](h[:, :-1], m1.embed(prefix[:, 1:]), lambda b, x: b(x, mcache))

    def main_step(n: int):
        def step():
            for c in caches[n]:
                c.pos = L - 1
            return m1.lm_head(m1.hidden(prefix[:, -1:].repeat(1, n), caches[n])).argmax(-1).tolist()
        return step

    def draft_step():
        mcache.pos = L - 2
        hk = m1.mtp.depths[0](h[:, -2:-1], m1.embed(prefix[:, -1:]), lambda b, x: b(x, mcache))
        return int(m1.lm_head(hk[:, -1]).argmax(-1))

    costs = best_seconds({"main forward, 1 token": main_step(1), "main forward, 2 tokens": main_step(2),
                          "MTP draft step": draft_step})
for name, sec in costs.items():
    print(f"{name:>24}: {sec * 1e3:.2f} ms")
per_round = costs["MTP draft step"] + costs["main forward, 2 tokens"]
print(f"a round costs {per_round / costs['main forward, 1 token']:.2f} one-token forwards; it commits "
      f"{st1.tokens_per_forward:.2f} tokens, so the predicted speedup is "
      f"{st1.tokens_per_forward * costs['main forward, 1 token'] / per_round:.2f}x (measured above: "
      f"{plain1 / st1.seconds:.2f}x, which also pays the loop's Python bookkeeping)")

# %% [markdown]
# Why ours differ:
# - **Model and training.** Ours (at `tiny`) has 0.1–0.2M parameters trained for a few hundred steps; V3's MTP module is
#   a 14B MoE layer on top of a 671B model trained on 14.8T tokens. A small model's *greedy* continuation
#   tends to fall into repeating itself, and a repeating text is easy to draft, so our greedy acceptance can
#   even exceed the paper's; under sampling (temperature 0.8, in the table) acceptance is lower, as asserted.
# - **Tokens.** Ours are characters; V3's are BPE tokens of a 128K vocabulary. Whether the first character of a
#   word is harder to draft than one inside a word is measured above (the z-test after the coloured sample).
# - **Draft cost.** Our MTP block is one block next to the main model's two; V3's is one layer next to 61. The
#   timings above show the consequence on our CPU: a round (draft step plus a two-token verification) costs more
#   one-token forwards than it commits tokens, so the predicted (and measured) wall-clock speedup is at or below
#   1x here, although speculative decoding needs far fewer main-model forwards. Make the main model deeper and the draft relatively
#   cheaper, and the gain appears: `benchmarks/mtp.py` trains the same D=1 setup with an 8-layer main model and
#   measures about 70% acceptance and a 1.2x wall-clock speedup on this CPU (`benchmarks/results/mtp.md`). On a
#   GPU serving a large model the main forward dominates even more, and the speedup approaches the tokens per
#   forward, as in the paper's 1.8x.
# - **At `full` scale** the chapter ran on the H200 before it moved to Shakespeare (generated stories then,
#   `benchmarks/results/h200_full_runs.md`): that text was so predictable that acceptance reached 99%. The run on
#   Shakespeare is recorded in `07_mtp_full.json` when it has been made (the budget table above says).
#
# ## In the wild
# Recent transformers (5.24 here; older versions lack it and the check below is skipped) ships the same module as
# `MtpLayer`: `enorm`, `hnorm`, `eh_proj` on
# `[enorm(embedding) ; hnorm(previous hidden)]`, the model's own decoder layer as `mtp_block`, and a
# `post_norm`; DeepSeek-V3's config calls the number of modules `num_nextn_predict_layers` (alias
# `num_mtp_layers`), and `generate(..., use_mtp=True)` drafts with them. Its plain `DeepseekV3ForCausalLM`
# ignores the MTP weights (layer 61 of the checkpoint) when loading. vLLM and SGLang serve DeepSeek-V3 with the
# MTP module as the draft model. Below, a random `MtpLayer` around a Qwen2 block is loaded into our `MTPModule`
# and both compute the same output.

# %%
import transformers
from transformers import DeepseekV3Config

from transformers import DeepseekV3ForCausalLM

cfg_v3 = DeepseekV3Config()
print("transformers", transformers.__version__, "| DeepSeek-V3 default: num_hidden_layers =",
      cfg_v3.num_hidden_layers, "| MTP modules =", getattr(cfg_v3, "num_nextn_predict_layers", "n/a"))
ignored = getattr(DeepseekV3ForCausalLM, "_keys_to_ignore_on_load_unexpected", None)
print("DeepseekV3ForCausalLM ignores these checkpoint keys when loading:", ignored)
try:
    from transformers.modeling_layers import MtpLayer
except ImportError:  # older transformers
    MtpLayer = None
if MtpLayer is not None:  # parity: transformers' MtpLayer around a random Qwen2 block == our MTPModule
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding

    from nanoseek.interop.qwen2 import config_from_hf, key_from_hf
    from nanoseek.models.decoder import Block

    torch.manual_seed(0)
    hc = Qwen2Config(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                     vocab_size=V, num_hidden_layers=1, max_position_embeddings=64, rms_norm_eps=1e-6)
    hc._attn_implementation = "eager"
    hf_layer = MtpLayer(hc, Qwen2DecoderLayer, Qwen2RMSNorm, 0).eval()
    with torch.no_grad():  # every weight random, norm gains and biases included
        for p in hf_layer.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.dim() == 1 and p.shape[0] == 32 else 0.0))
    ours = MTPModule(32, Block(config_from_hf(hc, max_seq_len=64), 1)).eval()
    ours.load_state_dict({  # mtp_block.* -> block.* (Qwen2 names -> ours), post_norm -> norm
        ("block." + key_from_hf("model.layers.0." + k[10:])[9:]) if k.startswith("mtp_block.")
        else {"post_norm.weight": "norm.weight"}.get(k, k): v for k, v in hf_layer.state_dict().items()})
    h_prev, emb = torch.randn(2, 7, 32), torch.randn(2, 7, 32)
    pos = torch.arange(7)[None].expand(2, 7)
    mask = torch.full((7, 7), float("-inf")).triu(1)[None, None].expand(2, 1, 7, 7)
    import inspect  # the cache argument is `cache` in newer transformers, `past_key_values` in older ones
    no_cache = {"past_key_values" if "past_key_values" in inspect.signature(hf_layer.forward).parameters else "cache": None}
    with torch.no_grad():
        theirs = hf_layer(emb, h_prev, position_embeddings=Qwen2RotaryEmbedding(hc)(emb, pos), attention_mask=mask,
                          position_ids=pos, **no_cache)
    print("transformers MtpLayer:", [n for n, _ in hf_layer.named_children()])
    print("nanoseek MTPModule:   ", [n for n, _ in ours.named_children()])
    torch.testing.assert_close(ours(h_prev, emb), theirs, atol=1e-5, rtol=1e-5)
    print(f"same output, max |difference| {(ours(h_prev, emb) - theirs).abs().max():.1e} ✓")

# %% [markdown]
# ## Summary
# - MTP depth $k$ normalizes $h^{k-1}_i$ and the embedding of $t_{i+k}$, concatenates, projects, runs one block,
#   and predicts $t_{i+k+1}$ with the shared head; $\mathcal{L} = \mathcal{L}_{\text{main}} + \lambda\,\mathrm{mean}_k \mathcal{L}^k$.
# - In the decoder it is one config field; `mtp_depth=0` is the plain decoder, parameter for parameter.
# - At our scale the seed verdicts above say whether MTP changed the main head's loss; the paper's gains are at 16B+.
# - The MTP module is a free draft model: greedy speculative decoding with it reproduces greedy output exactly
#   and commits $1 + p$ tokens per forward for acceptance $p$; with the $\min(1, p/q)$ rule and residual
#   resampling, speculative *sampling* keeps plain sampling's distribution exactly.
# - Our acceptance, tokens per forward and wall-clock speedup sit beside the paper's 85–90% and 1.8x in the table
#   above; model size, character tokens and the draft's relative cost explain the gap.
#
# ## Exercises
# Edit each function, run its cell, and the checker tells you whether it is right. Solutions are hidden below
# each exercise.
#
# **Exercise 1 (easy).** For MTP depth `k`, return what it reads and what it predicts: the tokens $t_{i+k}$
# whose embeddings it reads and the labels $t_{i+k+1}$, both `(B, T-k)`, from the main model's `idx` and
# `targets` (`targets[:, i]` is $t_{i+1}$).

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch07 import check_mtp_io


def mtp_io(idx: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """idx, targets: (B, T). Return (read, labels), each (B, T-k)."""
    raise NotImplementedError  # your code here


check_mtp_io(mtp_io)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch07 import check_mtp_io


def mtp_io(idx: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return idx[:, k:], targets[:, k:]


assert check_mtp_io(mtp_io)

# %% [markdown]
# **Exercise 2 (medium).** One verification round: given the drafts $d_1..d_m$ and the main model's greedy
# tokens $g_0..g_m$ at the pending token and at each draft, return the tokens the round commits.

# %% tags=["exercise"]
from nanoseek.exercises.ch07 import check_accept


def accept(drafts: list[int], greedy: list[int]) -> list[int]:
    """len(greedy) == len(drafts) + 1. Return the committed tokens (at least one)."""
    raise NotImplementedError  # your code here


check_accept(accept)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch07 import check_accept


def accept(drafts: list[int], greedy: list[int]) -> list[int]:
    a = 0
    while a < len(drafts) and drafts[a] == greedy[a]:
        a += 1
    return drafts[:a] + [greedy[a]]


assert check_accept(accept)

# %% [markdown]
# **Exercise 3 (medium).** Write one MTP module's forward pass with the parts of a package `MTPModule`
# (`module.enorm`, `module.hnorm`, `module.eh_proj`, `module.block`, `module.norm`).

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch07 import check_mtp_forward


def mtp_forward(module, h_prev: torch.Tensor, emb_next: torch.Tensor) -> torch.Tensor:
    """h_prev, emb_next: (B, T, C). Return h^k (B, T, C), ready for the shared head."""
    raise NotImplementedError  # your code here


check_mtp_forward(mtp_forward)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch07 import check_mtp_forward


def mtp_forward(module, h_prev: torch.Tensor, emb_next: torch.Tensor) -> torch.Tensor:
    x = module.eh_proj(torch.cat([module.enorm(emb_next), module.hnorm(h_prev)], dim=-1))
    return module.norm(module.block(x))


assert check_mtp_forward(mtp_forward)

# %% [markdown]
# **Exercise 4 (hard).** If each of the $k$ drafts of a round is accepted with probability $p$, independently,
# and a round stops at the first rejection, how many tokens does one verification forward commit on average?
# (Check your formula against the paper: $p = 0.85$–$0.9$, $k = 1$.)

# %% tags=["exercise"]
from nanoseek.exercises.ch07 import check_expected_tokens


def expected_tokens(p: float, k: int) -> float:
    raise NotImplementedError  # your code here


check_expected_tokens(expected_tokens)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch07 import check_expected_tokens


def expected_tokens(p: float, k: int) -> float:
    # the main model's token always, plus draft j with probability p^j (drafts 1..j all accepted)
    return float(sum(p**j for j in range(k + 1)))


assert check_expected_tokens(expected_tokens)

# %% [markdown]
# **Exercise 5 (harder, the core of the chapter).** The MTP training loss over $D$ depths: given the main head's
# logits (B, T, V), a list of the $D$ depths' logits (depth $k$: (B, T−k, V)), the targets (B, T) (`targets[:, i]`
# is $t_{i+1}$) and $\lambda$, return $\mathcal{L}_{\text{main}} + \frac{\lambda}{D}\sum_k \mathcal{L}^k$, where
# depth $k$'s position $i$ is scored against $t_{i+k+1}$ (just the main loss when $D = 0$).

# %% tags=["exercise"]
import torch
import torch.nn.functional as F
from nanoseek.exercises.ch07 import check_mtp_loss


def mtp_loss(main_logits: torch.Tensor, depth_logits: list, targets: torch.Tensor, lam: float) -> torch.Tensor:
    """main_logits (B, T, V); depth_logits[k-1] (B, T-k, V); targets (B, T). Return the scalar total loss."""
    raise NotImplementedError  # your code here


check_mtp_loss(mtp_loss)

# %% tags=["solution", "hide-input"]
import torch
import torch.nn.functional as F
from nanoseek.exercises.ch07 import check_mtp_loss


def mtp_loss(main_logits: torch.Tensor, depth_logits: list, targets: torch.Tensor, lam: float) -> torch.Tensor:
    def ce(logits, labels):
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())

    total = ce(main_logits, targets)
    if depth_logits:  # depth k, position i predicts t_{i+k+1} = targets[:, i + k]
        total = total + lam * torch.stack([ce(lg, targets[:, k:]) for k, lg in enumerate(depth_logits, 1)]).mean()
    return total


assert check_mtp_loss(mtp_loss)

# %% [markdown]
# ## Further reading
# - DeepSeek-V3's MTP (§2.2) and its speculative-decoding numbers (§5.4.3): {cite}`deepseekv3`.
# - Multi-token prediction with parallel heads: {cite}`gloeckle2024better`; blockwise parallel decoding:
#   {cite}`stern2018blockwise`.
# - Speculative decoding: {cite}`leviathan2023fast`, {cite}`chen2023accelerating`; drafting heads on the model
#   itself: Medusa {cite}`cai2024medusa`.
