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
# # Chapter 10: RL for reasoning — from PPO to GRPO
#
# DeepSeek-R1-Zero learned to reason with no reasoning demonstrations at all: a base model, a question, a
# program that checks the final answer, and **group relative policy optimization (组相对策略优化, GRPO)**,
# the PPO variant that DeepSeekMath introduced to drop PPO's critic. In this chapter we build that recipe
# piece by piece (rule rewards that a model cannot hack, group advantages, the clipped objective with its KL
# term) and run it on a policy small enough to watch it learn on a laptop CPU in under a minute, next to
# REINFORCE and PPO. The same loop then runs unchanged on Qwen2.5-0.5B-Instruct on a GPU.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/10_grpo.ipynb)
#
# | scale | policy | task | runs on | time | memory |
# | --- | --- | --- | --- | --- | --- |
# | `tiny` (default) | 2-layer, 64-wide decoder (0.1M parameters), character vocabulary | 2-digit addition | 2-core CPU | 120–154 s measured on a shared 2-core CPU (load ≈ 10), of which 42 s CPU time | 0.5 GB peak (measured below) |
# | `full` (`NANOSEEK_SCALE=full`) | 4-layer, 256-wide decoder; then Qwen2.5-0.5B-Instruct (fp32 weights, AdamW) | 3-digit addition; 3-digit + − × | one GPU with ≥ 24 GB (A100, L4, H200; a 16 GB T4 is too small for the Qwen section) | the nanoseek-policy part: about 2 minutes on an H200 (`benchmarks/results/rl_cuda.md`: GRPO 14.6% → 100% held-out accuracy in 60 steps); the Qwen part: tens of minutes (estimate, not run here: no network on our GPU machine) | ≈ 20 GB (estimate: fp32 weights, gradients, AdamW state and the reference copy alone are 10 GB) |
#
# **What you will learn**
# - to write **rule rewards (规则奖励)** for format and accuracy that treat model output as hostile input;
# - to derive the policy gradient, then PPO's clipped objective, then GRPO's group baseline, and to say
#   what the critic costs;
# - to build the GRPO loss term by term (ratio, clip-low/clip-high, k3 KL, three ways to average tokens)
#   and check it against the package;
# - to run GRPO, REINFORCE and PPO on the same rollouts budget and read their curves;
# - to switch the DAPO and Dr. GRPO variants on and off and measure what each changes.

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import copy
import math
import time

import matplotlib.pyplot as plt
import torch

import nanoseek
from nanoseek import device, pick, seed_everything

seed_everything(1337)
print("nanoseek", nanoseek.__version__, "| torch", torch.__version__, "| device:", device())

# %% [markdown]
# ## The configuration
# One cell decides the scale. `tiny` adds two-digit numbers with a 0.1M-parameter policy; `full` adds
# three-digit numbers with a larger one, and runs the last section on the real Qwen2.5-0.5B-Instruct.
# Tiny models run faster on one CPU thread than on two (the work per operation is too small to split),
# and one thread also makes every number below reproducible to the last bit.

# %%
CFG = pick(
    tiny=dict(threads=1, digits=2, eval_n=200, seed=0,
              model=dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=192, max_seq_len=40),
              sft=dict(rows=4000, p_careful=0.3, steps=300, batch_size=64, lr=3e-3),
              rl=dict(steps=20, prompts_per_step=16, group_size=8, max_new_tokens=28, lr=1e-4,
                      inner_epochs=2, beta=0.04, eval_every=5),
              compare_steps=10,
              qwen=dict(name=None, task="arithmetic", task_options=dict(digits=2, ops="+"), eval_n=8,
                        rl=dict(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=16, lr=1e-4,
                                eval_every=2))),
    full=dict(threads=None, digits=3, eval_n=500, seed=0,
              model=dict(n_layer=4, n_embd=256, n_head=8, n_kv_head=2, intermediate_size=704, max_seq_len=64),
              sft=dict(rows=20000, p_careful=0.3, steps=1500, batch_size=128, lr=1e-3),
              rl=dict(steps=60, prompts_per_step=32, group_size=8, max_new_tokens=40, lr=5e-5,
                      inner_epochs=2, beta=0.04, eval_every=5),
              compare_steps=20,
              qwen=dict(name="Qwen/Qwen2.5-0.5B-Instruct", task="arithmetic",
                        task_options=dict(digits=3, ops="+-*"), eval_n=200,
                        rl=dict(steps=100, prompts_per_step=16, group_size=8, max_new_tokens=300, lr=1e-6,
                                beta=0.04, inner_epochs=1, minibatches=4, eval_every=20))),
)
if CFG["threads"]:
    torch.set_num_threads(CFG["threads"])
CFG

# %% [markdown]
# ## Tasks whose answers a program can check
# R1-Zero's rewards come from rules, not from a learned reward model: a learned judge can be fooled, a
# checker that recomputes the answer cannot (if it is written carefully). `minids.reasoning` generates three
# such task families with a seed, and splits problems into `train`/`val`/`test` by a hash of the problem,
# so that no seed can leak a test problem into training:
#
# - **multi-digit arithmetic**: `46+35=`, answer `81`;
# - **Countdown (倒计时数字游戏)**: reach a target with 3–4 numbers, each used exactly once, with + − × ÷;
#   the target is reachable by construction (exhaustive search in exact fractions);
# - **Knights and Knaves (骑士与无赖)**: knights always tell the truth, knaves always lie; 2–5 islanders,
#   and a brute force over all $2^n$ assignments keeps only puzzles with exactly one solution.

# %%
from minids.reasoning import arithmetic, countdown, knights_knaves, kk_solutions, split_of, verify

examples = [arithmetic("train", 1, 0, digits=3)[0], countdown("train", 1, 0)[0], knights_knaves("train", 1, 3)[0]]
for row in examples:
    print(f"[{row['task']}] {row['prompt']}\n    reference answer: {row['answer']}\n")
    assert verify(row, row["answer"])

train_keys = {r["key"] for r in arithmetic("train", 2000, 0, digits=CFG["digits"])}
test_rows = arithmetic("test", CFG["eval_n"], 0, digits=CFG["digits"])
assert not train_keys & {r["key"] for r in test_rows}
print(f"{len(test_rows)} held-out problems, none of them among {len(train_keys)} training problems")

# %% [markdown]
# ### Rewards: format and accuracy, for text written by an adversary
# R1-Zero uses two rewards: **format** (the reasoning is inside `<think>…</think>` and the answer inside
# `<answer>…</answer>`) and **accuracy** (the answer is right). The policy is optimised to make these
# functions return large numbers, so it will find any way to do so, and a Countdown checker that calls
# `eval` on the model's answer is a remote-code-execution hole (`__import__('os').system(...)`) and a
# denial of service (`9**9**9` never finishes). The package's checker tokenises and parses the expression
# itself (numbers, + − × ÷, parentheses), computes in exact fractions, and bounds the input length, the
# nesting depth and the size of every intermediate result; every reward function returns a float and never
# raises. `tests/test_rewards.py` fuzzes them with thousands of hostile completions.

# %%
from nanoseek import show
from nanoseek.rl.rewards import countdown_reward, format_reward, parse_expression, r1_reward

show(parse_expression)

# %%
cd_row = {"task": "countdown", "numbers": [6, 1, 3, 4], "target": 24}
hostile = {
    "right, needs fractions: 6/(1-3/4)": "<think>1-3/4 is 1/4</think><answer>6/(1-3/4)</answer>",
    "right value, a number used twice": "<think>.</think><answer>6*4*(3-3+1)</answer>",
    "power tower 9**9**9": "<think>.</think><answer>9**9**9</answer>",
    "Python code": "<think>.</think><answer>__import__('os').system('echo pwned')</answer>",
    "10,000 nested parentheses": "<think>.</think><answer>" + "(" * 10_000 + "24" + ")" * 10_000 + "</answer>",
    "a megabyte of text": "<think>" + "a" * 1_000_000 + "</think><answer>6/(1-3/4)</answer>",
    "no tags": "6/(1-3/4)",
}
print(f"{'completion':<36} {'format':>6} {'accuracy':>8} {'total':>6} {'time':>9}")
for name, text in hostile.items():
    t0 = time.perf_counter()
    total = r1_reward(text, cd_row)
    ms = (time.perf_counter() - t0) * 1e3
    print(f"{name:<36} {format_reward(text):>6.1f} {countdown_reward(text, cd_row):>8.1f} {total:>6.2f} {ms:>7.3f} ms")
    assert ms < 50
assert r1_reward(hostile["right, needs fractions: 6/(1-3/4)"], cd_row) == 1.1
assert r1_reward(hostile["power tower 9**9**9"], cd_row) == 0.1  # right format, no accuracy

# %% [markdown]
# ## From policy gradients to PPO to GRPO
# A language model is a **policy (策略)** $\pi_\theta(o \mid q)$: given a question $q$ it samples a response
# $o = (o_1, \dots, o_{|o|})$ token by token. We want to maximise the expected reward
# $J(\theta) = \mathbb{E}_{o\sim\pi_\theta}[r(q, o)]$. The **policy gradient (策略梯度)** theorem (REINFORCE)
# turns that into something we can estimate from samples:
#
# $$\nabla_\theta J = \mathbb{E}_{o\sim\pi_\theta}\Big[(r(q,o) - b)\sum_t \nabla_\theta \log \pi_\theta(o_t \mid q, o_{<t})\Big],$$
#
# for any **baseline (基线)** $b$ that does not depend on $o$: subtracting it changes nothing in expectation
# and lowers the variance a lot. The term $A = r - b$ is the **advantage (优势)**: positive for better-than-
# expected responses, whose tokens get pushed up.
#
# **PPO (近端策略优化)** {cite}`schulman2017ppo` adds two things. (1) It reuses a batch of samples for
# several gradient steps, correcting with the importance ratio $\rho_t = \pi_\theta(o_t\mid\cdot)/\pi_{old}(o_t\mid\cdot)$,
# and clips $\rho_t$ to $[1-\epsilon, 1+\epsilon]$ so that the policy cannot run far from the one that
# sampled. (2) The baseline is a learned **critic (价值模型)** $V_\phi$, and per-token advantages come from
# **generalised advantage estimation (广义优势估计, GAE)** {cite}`schulman2016gae`. In RLHF
# {cite}`ouyang2022instructgpt` the critic is a second transformer as large as the policy.
#
# **GRPO** {cite}`deepseekmath` removes the critic: sample a *group* of $G$ responses to the same question
# and use the group's own statistics as the baseline,
# $\hat A_i = \dfrac{r_i - \mathrm{mean}(r_1..r_G)}{\mathrm{std}(r_1..r_G)}$, the same for every token of
# response $i$. The KL penalty to a frozen **reference policy (参考策略)** moves from the reward (PPO-RLHF)
# into the loss. The objective, per token:
#
# $$J_t = \min\big(\rho_t \hat A_i,\ \mathrm{clip}(\rho_t, 1-\epsilon_{low}, 1+\epsilon_{high})\,\hat A_i\big) - \beta\,\mathbb{D}_{KL}[\pi_\theta\|\pi_{ref}]_t .$$
#
# Three later refinements are switches of the same loss: DAPO's **clip-higher** ($\epsilon_{high} > \epsilon_{low}$,
# room for unlikely tokens to grow) and its token-level averaging {cite}`yu2025dapo`; Dr. GRPO's removal of
# the std division and of the per-response length normalisation {cite}`liu2025drgrpo`.
#
# ### The group advantage, inline and from the package

# %%
from nanoseek.rl.advantages import group_advantages

G = 4
rewards = torch.tensor([1.0, 0.0, 0.0, 0.0,   1.0, 1.0, 0.0, 1.0,   0.0, 0.0, 0.0, 0.0])  # 3 prompts x G
r = rewards.view(-1, G)                                   # (prompts, G)
adv_inline = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6)).view(-1)
print("advantages:", [round(a, 3) for a in adv_inline.tolist()])
show(group_advantages)
torch.testing.assert_close(group_advantages(rewards, G), adv_inline)
g = torch.Generator().manual_seed(0)
fresh = torch.rand(64, generator=g)
torch.testing.assert_close(group_advantages(fresh, 8), ((fresh.view(-1, 8) - fresh.view(-1, 8).mean(1, keepdim=True))
                                                        / (fresh.view(-1, 8).std(1, keepdim=True) + 1e-6)).view(-1))

# %% [markdown]
# The first group has one right answer out of four: it gets a large positive advantage (1.5) and the three
# wrong ones −0.5 each. The third group, all wrong, gets zeros: **a group where every response scores the
# same carries no learning signal**, which is why the task must start "low but not zero".
#
# ### The k3 KL estimator
# The KL term is estimated per sampled token. With $x = \pi_{ref}(o_t)/\pi_\theta(o_t)$, Schulman's "k3"
# estimator {cite}`schulman2020kl` $x - \log x - 1$ is unbiased for $\mathrm{KL}(\pi_\theta\|\pi_{ref})$
# when $o_t\sim\pi_\theta$, and unlike $-\log x$ it is never negative. A check against the exact KL of two
# small categorical distributions:

# %%
from nanoseek.rl.losses import k3_kl

p = torch.softmax(torch.randn(8, generator=g), 0)
q = torch.softmax(torch.randn(8, generator=g), 0)
exact = float((p * (p / q).log()).sum())
samples = torch.multinomial(p, 100_000, replacement=True, generator=g)
x = q.log()[samples] - p.log()[samples]
k1, k3_inline = -x, x.exp() - x - 1
print(f"exact KL {exact:.4f} | k1 mean {k1.mean():.4f} (std {k1.std():.3f}) | k3 mean {k3_inline.mean():.4f} (std {k3_inline.std():.3f})")
assert abs(float(k3_inline.mean()) - exact) < 0.05 * exact and (k3_inline >= 0).all()
torch.testing.assert_close(k3_kl(p.log()[samples], q.log()[samples]), k3_inline)

# %% [markdown]
# ### The GRPO loss, term by term
# Per-token tensors are `(B, T)` over response tokens, with a 0/1 mask. Three ways to turn per-token losses
# into one number, and they are not equivalent: `seq` (GRPO as published) averages within each response
# first, so a token of a long response weighs less; `token` (DAPO) averages over all tokens of the batch;
# `constant` (Dr. GRPO) divides the sum by batch × a fixed length, so no length bias at all.

# %%
from nanoseek.rl.losses import grpo_loss

B, T = 6, 9
logp = torch.randn(B, T, generator=g) * 0.3 - 1.0                 # log pi_theta of the sampled tokens
old_logp = logp + torch.randn(B, T, generator=g) * 0.2            # log pi_old (the sampler)
ref_logp = logp + torch.randn(B, T, generator=g) * 0.2            # log pi_ref (frozen)
adv = torch.randn(B, generator=g)                                 # one advantage per response
lengths = torch.tensor([9, 3, 5, 1, 7, 9])
mask = (torch.arange(T)[None, :] < lengths[:, None]).float()      # (B, T)
eps_low, eps_high, beta = 0.2, 0.28, 0.04

ratio = torch.exp(logp - old_logp)                                # rho_t
surrogate = torch.minimum(ratio * adv[:, None], ratio.clamp(1 - eps_low, 1 + eps_high) * adv[:, None])
kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1           # k3 per token
per_token = -(surrogate - beta * kl)                              # a loss: minus the objective
inline = {
    "seq": ((per_token * mask).sum(1) / mask.sum(1)).mean(),
    "token": (per_token * mask).sum() / mask.sum(),
    "constant": (per_token * mask).sum() / (B * T),
}
show(grpo_loss)
for agg, value in inline.items():
    pkg, stats = grpo_loss(logp, old_logp, ref_logp, adv, mask, eps_low, eps_high, beta, agg=agg, max_len=T)
    torch.testing.assert_close(pkg, value)
    print(f"agg={agg:<8} loss {float(value):+.4f}  (package: {float(pkg):+.4f})")

# %% [markdown]
# ## The policy: a tiny decoder, warmed up by a sloppy teacher
# Our policy is chapter 4's `Decoder` with a character vocabulary over the task's alphabet, in which the
# four tags are single tokens (as special tokens are in a real tokenizer). R1-Zero started from a base model
# that could already sometimes solve the problems; ours must too, or every group scores 0 and GRPO has
# nothing to learn from. So we **warm it up with supervised fine-tuning (监督微调, SFT)** on demonstrations
# in the R1 format. The demonstrations think column by column, least significant digit first:

# %%
from nanoseek.rl.tasks import addition_demo, addition_task, sft_examples
from nanoseek.rl.vocab import TaskVocab

vocab = TaskVocab("0123456789+-=,")
row = {"a": 46, "b": 35}
print("careful teacher: 46+35=" + addition_demo(row, carry=True))
print("sloppy teacher:  46+35=" + addition_demo(row, carry=False))
print(f"vocabulary: {len(vocab)} tokens:", vocab.itos)

# %% [markdown]
# The catch: 70% of our demonstrations come from a *sloppy* teacher who never carries. Problems without a
# carry come out right either way; the others are right only when the policy happens to carry. Imitation
# cannot fix this (the policy copies the teacher's mix); a reward that checks the answer can. We train the
# warm-up once and cache it with `nanoseek.zoo.load_or_train`.

# %%
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.train import TrainConfig, train
from nanoseek.zoo import load_or_train


def build_policy() -> Decoder:
    torch.manual_seed(CFG["seed"])
    return Decoder(DecoderConfig(vocab_size=len(vocab), **CFG["model"]))


def sft_warmup(model: Decoder) -> dict:
    s = CFG["sft"]
    rows = arithmetic("train", s["rows"], CFG["seed"], digits=CFG["digits"])
    seqs, prompt_lens = sft_examples(rows, vocab, s["p_careful"], seed=CFG["seed"])
    L = max(map(len, seqs))
    X = torch.full((len(seqs), L), vocab.pad_id)
    Y = torch.full((len(seqs), L), -100)                 # loss only on the response tokens
    for i, (seq, p) in enumerate(zip(seqs, prompt_lens)):
        X[i, :len(seq)] = torch.tensor(seq)
        Y[i, p - 1:len(seq) - 1] = torch.tensor(seq[p:])

    def get_batch(split: str, gen: torch.Generator):
        ix = torch.randint(0, len(seqs), (s["batch_size"],), generator=gen)
        return X[ix], Y[ix]

    result = train(model, get_batch, TrainConfig(max_steps=s["steps"], lr=s["lr"], warmup_steps=20,
                                                 weight_decay=0.0, eval_every=s["steps"], eval_batches=1))
    return {"sft_loss": result.train_loss}


t0 = time.perf_counter()
policy, info = load_or_train(f"ch10-addition-sft-{CFG['digits']}d", build_policy, sft_warmup, version="1")
policy.to(device())
print(f"SFT warm-up ready in {time.perf_counter() - t0:.1f} s; final SFT loss {info['sft_loss'][-1]:.3f}; "
      f"{sum(p.numel() for p in policy.parameters()):,} parameters")

# %%
from nanoseek.rl.trainer import evaluate

task = addition_task(vocab, digits=CFG["digits"])
max_new = CFG["rl"]["max_new_tokens"]
base = copy.deepcopy(policy)                         # the SFT policy, kept for the comparisons below
start = evaluate(policy, test_rows, task, max_new)
start_sampled = evaluate(policy, test_rows, task, max_new, temperature=1.0, samples=8)
carry_free = [r for r in test_rows if all(int(x) + int(y) < 10 for x, y in zip(str(r["a"])[::-1], str(r["b"])[::-1]))]
print(f"held-out accuracy after SFT: greedy {start['accuracy']:.1%}, sampled (T=1, 8 samples each) "
      f"{start_sampled['accuracy']:.1%}; problems with no carry at all: {len(carry_free) / len(test_rows):.0%}")
assert 0.05 < start["accuracy"] < 0.6, "the warm-up should leave the policy low but not at zero"

# %% [markdown]
# ## GRPO
# The loop (`nanoseek.rl.trainer.train_rl`): each step draws 16 training problems, samples a group of 8
# responses to each with the KV cache (`nanoseek.rl.rollout`), scores them with `r1_reward` (accuracy +
# 0.1 × format), computes group advantages, and takes `inner_epochs` gradient steps on that batch with the
# clipped loss and β = 0.04 against the frozen SFT policy.

# %%
from nanoseek.rl.rollout import rollout
from nanoseek.rl.trainer import RLConfig, train_rl

show(rollout)

# %%
seed_everything(CFG["seed"])
grpo_cfg = RLConfig(algo="grpo", seed=CFG["seed"], **CFG["rl"])
t0 = time.perf_counter()
hist = train_rl(policy, task, grpo_cfg, eval_rows=test_rows)
grpo_seconds = time.perf_counter() - t0
end = evaluate(policy, test_rows, task, max_new)
end_sampled = evaluate(policy, test_rows, task, max_new, temperature=1.0, samples=8)
print(f"GRPO: {grpo_cfg.steps} steps in {grpo_seconds:.1f} s; held-out accuracy, greedy "
      f"{start['accuracy']:.1%} -> {end['accuracy']:.1%}; sampled at T=1 {start_sampled['accuracy']:.1%} -> "
      f"{end_sampled['accuracy']:.1%}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
axes[0].plot(hist.step, hist.metrics["reward"], label="reward (train rollouts)")
axes[0].plot(hist.step, hist.metrics["accuracy"], label="accuracy (train rollouts)")
axes[0].set_title("reward on the training rollouts")
axes[0].legend()
axes[1].plot(hist.eval_step, [100 * a for a in hist.eval["accuracy"]], "o-", color="C2")
axes[1].set_title("held-out accuracy, greedy (%)")
axes[2].plot(hist.step, hist.metrics["length"], color="C3")
axes[2].set_title("response length (tokens)")
axes[3].plot(hist.step, hist.metrics["kl"], color="C4")
axes[3].set_title("KL to the reference (k3, per token)")
for ax in axes:
    ax.set_xlabel("GRPO step")
plt.tight_layout()
plt.show()
gain = end["accuracy"] - start["accuracy"]
assert gain >= 0.30, f"GRPO should lift held-out accuracy by tens of points; it gained {gain:.1%}"
assert end_sampled["accuracy"] > start_sampled["accuracy"] + 0.10
assert max(hist.metrics["kl"]) < 0.5, "the KL penalty keeps the policy near the reference"

# %% [markdown]
# The held-out accuracy rises by tens of points within a few steps: the policy learns to carry, which
# imitation of the teacher could not teach it. The accuracy of the training rollouts (left) is lower than
# the greedy held-out accuracy because rollouts are sampled at temperature 1, where a few uncertain digits
# still go wrong; the sampled held-out accuracy printed above rises too, by less. The response length barely changes: our format has a fixed
# length per problem (one more token when the sum gains a digit), unlike R1-Zero's free-form thinking whose
# length grows during RL. Before and after, on the same held-out problems (greedy):

# %%
def completions(model, rows):
    out = rollout(model, rows, task.prompt_fn, vocab.encode, vocab.decode, 1, max_new, vocab.eos_id,
                  vocab.pad_id, temperature=0.0)
    return [t for ro in out for t in ro.texts]


shown = [r for r in test_rows if r not in carry_free][:4]
for row, before, after in zip(shown, completions(base, shown), completions(policy, shown)):
    ok = lambda text: "✓" if task.accuracy_fn(text, row) else "✗"  # noqa: E731
    print(f"{row['prompt']}\n  SFT : {ok(before)} {before}\n  GRPO: {ok(after)} {after}")

# %% [markdown]
# ## REINFORCE and PPO on the same rollout budget
# Same SFT start, same prompts at every step (the prompt stream depends only on the seed and the step), same
# number of sampled responses. REINFORCE uses the group mean as baseline and one gradient step per batch;
# PPO trains a critic (a copy of the policy with a scalar head), shapes the reward with a per-token KL
# penalty, and uses GAE. GRPO's numbers are read off the run above at the same step.

# %%
from nanoseek.rl.ppo import ValueModel

n_cmp = CFG["compare_steps"]
runs = {}
for algo in ("reinforce", "ppo"):
    model = copy.deepcopy(base)
    cfg = RLConfig(**{**CFG["rl"], "algo": algo, "steps": n_cmp, "eval_every": n_cmp, "seed": CFG["seed"]})
    runs[algo] = train_rl(model, task, cfg, eval_rows=test_rows)
i = hist.eval_step.index(n_cmp)
n_policy = sum(p.numel() for p in base.parameters())
n_critic = sum(p.numel() for p in ValueModel(base).parameters())
rows_cmp = {
    "grpo": (hist.eval["accuracy"][i], sum(hist.metrics["time_step"][:n_cmp]) / n_cmp, n_policy),
    "reinforce": (runs["reinforce"].eval["accuracy"][-1], sum(runs["reinforce"].metrics["time_step"]) / n_cmp, n_policy),
    "ppo": (runs["ppo"].eval["accuracy"][-1], sum(runs["ppo"].metrics["time_step"]) / n_cmp, n_policy + n_critic),
}
print(f"after {n_cmp} steps x {CFG['rl']['prompts_per_step'] * CFG['rl']['group_size']} responses each:")
print(f"{'algorithm':<10} {'held-out acc':>12} {'s / step':>9} {'trained params':>15}")
for name, (acc, sec, params) in rows_cmp.items():
    print(f"{name:<10} {acc:>12.1%} {sec:>9.2f} {params:>15,}")
assert n_critic > 0.95 * n_policy  # the critic is a second policy-sized network (its head is 1 wide, not V)
assert all(acc > start["accuracy"] for acc, _, _ in rows_cmp.values())

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(hist.step[:n_cmp], hist.metrics["accuracy"][:n_cmp], label="GRPO")
for name, h in runs.items():
    ax.plot(h.step, h.metrics["accuracy"], label=name.upper() if name == "ppo" else "REINFORCE")
ax.set_xlabel("step")
ax.set_ylabel("accuracy on the step's rollouts")
ax.set_title("Same rollouts budget, three algorithms")
ax.legend()
plt.show()

# %% [markdown]
# What the table shows at this scale: all three learn from the same verifiable reward. PPO carries a second
# network as large as the policy (parameters, optimizer state, forward and backward passes: the time per
# step above), which is GRPO's reason to exist; with an outcome-only reward its critic must learn to predict
# the final score from partial answers. REINFORCE takes a single gradient step per batch of rollouts, where
# the clipped objectives take `inner_epochs` steps on the same samples safely.
#
# ## The variants as switches
# Each variant changes one setting of the same `RLConfig`, starting from the same SFT policy, for the same
# `compare_steps` steps; the first row is the GRPO run above at that step.

# %%
variants = {
    "GRPO (std norm, seq avg, eps 0.2, beta 0.04)": {},
    "no std normalisation (Dr. GRPO)": {"normalize_by_std": False},
    "token-level averaging (DAPO)": {"agg": "token"},
    "clip-higher eps_high = 0.28 (DAPO)": {"clip_high": 0.28},
    "beta = 0 (no KL term)": {"beta": 0.0},
}
table = {}
for name, change in variants.items():
    if not change:
        table[name] = (hist.eval["accuracy"][i], hist.metrics["reward"][n_cmp - 1], hist.metrics["kl"][n_cmp - 1])
        continue
    model = copy.deepcopy(base)
    cfg = RLConfig(**{**CFG["rl"], **change, "steps": n_cmp, "eval_every": n_cmp, "seed": CFG["seed"]})
    h = train_rl(model, task, cfg, eval_rows=test_rows, progress=False)
    table[name] = (h.eval["accuracy"][-1], h.metrics["reward"][-1], h.metrics.get("kl", [float("nan")])[-1])
print(f"{'variant':<46} {'held-out acc':>12} {'reward':>7} {'KL':>8}")
for name, (acc, rew, kl_) in table.items():
    print(f"{name:<46} {acc:>12.1%} {rew:>7.3f} {kl_:>8.4f}")
assert all(acc > start["accuracy"] for acc, _, _ in table.values())

# %% [markdown]
# Read this table as one seed at one small scale: the differences between variants are a few points, the
# size of the noise of 200 held-out problems, while each of them beats the SFT start by tens of points. The
# variants were designed for problems we do not have here: clip-higher fights **entropy collapse (熵坍缩)**
# over thousands of steps, token-level averaging and Dr. GRPO's constant normaliser fight the bias towards
# long wrong answers in free-form reasoning, and the std division over-weights groups that are nearly all
# right or all wrong. With a fixed-length answer format, the averaging modes barely differ.
#
# ## Paper says / we measured
#
# | | paper | here (`tiny`) | why they differ |
# | --- | --- | --- | --- |
# | GRPO on top of SFT | DeepSeekMath-Instruct 7B → RL: GSM8K 82.9% → 88.2%, MATH 46.8% → 51.7% {cite}`deepseekmath` | held-out 2-digit addition: see the `start` → `end` numbers above | a 7B model on real maths; we planted one fixable error (carrying) so RL has a clear signal |
# | RL from a base model (R1-Zero) | AIME 2024 pass@1 15.6% → 71.0% over thousands of steps {cite}`deepseekr1` | — | needs a real base model; run the Qwen section at `full` |
# | response length | grows during RL ("aha moment") | flat | our answers have a fixed-length format |
# | critic | PPO needs a value model as large as the policy | PPO trains 2× the parameters, and its step is slower (table above) | same conclusion, measured |

# %%
import resource  # peak memory of this process so far (Linux and macOS)

peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform.startswith("linux") else 2**30)
print(f"measured: held-out accuracy {start['accuracy']:.1%} (SFT) -> {end['accuracy']:.1%} (GRPO, "
      f"{grpo_cfg.steps} steps, {grpo_seconds:.0f} s on this machine); peak process memory {peak_gib:.2f} GiB")

# %% [markdown]
# ## In the wild: the same loop on Qwen2.5-0.5B-Instruct
# At `full` scale this cell loads the real Qwen2.5-0.5B-Instruct through transformers, converts it into our
# `Decoder` with `nanoseek.interop.from_hf` (chapter 4), and runs the same `train_rl` with the model's own
# tokenizer and chat template; the prompt opens the assistant turn with `<think>` as TinyZero {cite}`tinyzero`
# does. At `tiny` it runs the identical code on a tiny *random* Qwen2 with a local tokenizer (no download),
# which is also what `tests/test_rl_qwen_path.py` checks; its rewards are zero, so nothing is learned here.
#
# Production stacks add what a 0.5B–671B model needs and a laptop does not: rollouts on a fast inference
# engine (vLLM, SGLang) with weights synced from the trainer each step, sequence packing, bf16 with fp32
# master weights, and sharded optimizers. TRL's `GRPOTrainer` exposes the same switches as `RLConfig`:
# `beta`, `epsilon`/`epsilon_high` (clip-low/high), `num_iterations` (inner epochs), `loss_type`
# (`"grpo"`, `"dapo"`, `"dr_grpo"`) and `scale_rewards` (std normalisation).

# %%
from minids.reasoning import generate
from nanoseek.rl.hf import load_policy
from nanoseek.rl.tasks import hf_task

qcfg = CFG["qwen"]
qwen_policy, qwen_tok = load_policy(qcfg["name"], device=device())
qwen_task = hf_task(qwen_tok, qcfg["task"], **qcfg["task_options"])
qwen_eval = generate("test", qcfg["eval_n"], 0, task=qcfg["task"], **qcfg["task_options"])
print(qwen_task.prompt_fn(qwen_eval[0]))
qhist = train_rl(qwen_policy, qwen_task, RLConfig(seed=CFG["seed"], **qcfg["rl"]), eval_rows=qwen_eval)
print("held-out accuracy over training:", dict(zip(qhist.eval_step, qhist.eval["accuracy"])))

# %% [markdown]
# ## Summary
# - Rule rewards (format + accuracy) need no reward model, but they read hostile text: parse, bound, never `eval`.
# - The policy gradient needs a baseline; PPO learns one with a critic as big as the policy, GRPO takes the
#   mean (and std) of a group of responses to the same prompt, and a group that scores all the same teaches nothing.
# - The GRPO loss is a clipped importance-weighted advantage plus β·k3 KL to a frozen reference; clip-low/high,
#   the std division and the token averaging are switches (GRPO, DAPO, Dr. GRPO).
# - From a policy that imitated a sloppy teacher, GRPO raised held-out accuracy by tens of points in a few
#   dozen CPU-seconds, as measured above; REINFORCE and PPO learn too, PPO at twice the trained parameters.
# - The same `train_rl` runs on Qwen2.5-0.5B-Instruct converted into our `Decoder`.
#
# ## Exercises
# Edit each function, run its cell, and the checker tells you whether it is right. Solutions are hidden below
# each exercise.
#
# **Exercise 1 (easy).** Write the GRPO group advantages: `rewards` is `(N,)` with groups of `group_size`
# contiguous rewards; return `(r - group mean) / (group std + 1e-6)` with the unbiased std, and 0 (not NaN)
# for a group whose rewards are all equal.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch10 import check_group_advantages


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """rewards (N,) -> advantages (N,)."""
    raise NotImplementedError  # your code here


check_group_advantages(group_advantages)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch10 import check_group_advantages


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    r = rewards.float().view(-1, group_size)
    centered = r - r.mean(dim=1, keepdim=True)
    return (centered / (r.std(dim=1, keepdim=True) + 1e-6)).view(-1)


assert check_group_advantages(group_advantages)

# %% [markdown]
# **Exercise 2 (easy).** Write the k3 estimator of $\mathrm{KL}(\pi_\theta \| \pi_{ref})$ per token, from
# the log-probabilities of the sampled tokens under the policy and under the reference.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch10 import check_k3


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError  # your code here


check_k3(k3)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch10 import check_k3


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    log_x = ref_logp - logp
    return log_x.exp() - log_x - 1


assert check_k3(k3)

# %% [markdown]
# **Exercise 3 (medium).** Write the per-token clipped surrogate *loss* with separate clip ranges:
# $-\min(\rho A, \mathrm{clip}(\rho, 1-\epsilon_{low}, 1+\epsilon_{high}) A)$ with $\rho = e^{\log\pi - \log\pi_{old}}$.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch10 import check_clipped_surrogate


def clipped_surrogate(logp, old_logp, adv, clip_low: float, clip_high: float) -> torch.Tensor:
    """All tensors (B, T); returns the per-token loss (B, T)."""
    raise NotImplementedError  # your code here


check_clipped_surrogate(clipped_surrogate)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch10 import check_clipped_surrogate


def clipped_surrogate(logp, old_logp, adv, clip_low: float, clip_high: float) -> torch.Tensor:
    ratio = torch.exp(logp - old_logp)
    return -torch.minimum(ratio * adv, ratio.clamp(1 - clip_low, 1 + clip_high) * adv)


assert check_clipped_surrogate(clipped_surrogate)

# %% [markdown]
# **Exercise 4 (hard).** Write a Countdown verifier for untrusted text: `True` exactly when `answer` is an
# expression of non-negative integers with `+ - * /` and parentheses that uses each of `numbers` exactly once
# and equals `target` (exactly: use `fractions.Fraction`). No `eval`, no unary minus, no powers; refuse long
# or deeply nested input quickly; never raise. The checker forbids `eval`/`exec`/`compile` while it runs and
# tries tricky inputs.

# %% tags=["exercise"]
from nanoseek.exercises.ch10 import check_countdown_verifier


def countdown_ok(answer: str, numbers: list[int], target: int) -> bool:
    raise NotImplementedError  # your code here


check_countdown_verifier(countdown_ok)

# %% tags=["solution", "hide-input"]
from fractions import Fraction

from nanoseek.exercises.ch10 import check_countdown_verifier


def countdown_ok(answer: str, numbers: list[int], target: int) -> bool:
    if not isinstance(answer, str) or len(answer) > 200:
        return False
    tokens, i = [], 0
    while i < len(answer):
        ch = answer[i]
        if ch.isspace():
            i += 1
        elif ch in "0123456789":
            j = i
            while j < len(answer) and answer[j] in "0123456789":
                j += 1
            if j - i > 6:
                return False
            tokens.append(int(answer[i:j]))
            i = j
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        else:
            return False
    pos, used = 0, []

    def atom(depth):
        nonlocal pos
        if depth > 16 or pos >= len(tokens):
            raise ValueError
        tok = tokens[pos]
        pos += 1
        if isinstance(tok, int):
            used.append(tok)
            return Fraction(tok)
        if tok != "(":
            raise ValueError
        value = expr(depth + 1)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise ValueError
        pos += 1
        return value

    def term(depth):
        nonlocal pos
        value = atom(depth)
        while pos < len(tokens) and tokens[pos] in ("*", "/"):
            op = tokens[pos]
            pos += 1
            rhs = atom(depth)
            value = value * rhs if op == "*" else value / rhs  # ZeroDivisionError is caught below
            if abs(value.numerator) > 10**18 or value.denominator > 10**18:
                raise ValueError
        return value

    def expr(depth):
        nonlocal pos
        value = term(depth)
        while pos < len(tokens) and tokens[pos] in ("+", "-"):
            op = tokens[pos]
            pos += 1
            value = value + term(depth) if op == "+" else value - term(depth)
        return value

    try:
        value = expr(0)
    except (ValueError, ZeroDivisionError):
        return False
    return pos == len(tokens) and sorted(used) == sorted(numbers) and value == target


assert check_countdown_verifier(countdown_ok)

# %% [markdown]
# ## Further reading
# - GRPO and its objective: DeepSeekMath {cite}`deepseekmath`; R1-Zero and R1: {cite}`deepseekr1`.
# - PPO {cite}`schulman2017ppo`, GAE {cite}`schulman2016gae`, RLHF with PPO {cite}`ouyang2022instructgpt`,
#   and the practical details of PPO for LLMs {cite}`zheng2023secrets`; REINFORCE {cite}`williams1992`,
#   RLOO {cite}`ahmadian2024rloo`.
# - The variants: DAPO {cite}`yu2025dapo`, Dr. GRPO {cite}`liu2025drgrpo`; the k3 estimator {cite}`schulman2020kl`.
# - Small-scale R1-Zero reproductions: TinyZero on Countdown {cite}`tinyzero`, Logic-RL on Knights and
#   Knaves {cite}`xie2025logicrl`.
