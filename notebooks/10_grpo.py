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
# # Chapter 10: RL for reasoning — from PPO to GRPO, and an R1-Zero moment
#
# DeepSeek-R1-Zero learned to reason with no reasoning demonstrations at all: a base model, a question, a
# program that checks the final answer, and **group relative policy optimization (组相对策略优化, GRPO)**,
# the PPO variant that DeepSeekMath introduced to drop PPO's critic. Its signature is that responses grow
# longer as accuracy climbs: the model discovers that writing its work out pays. In this chapter we build
# that recipe piece by piece (rule rewards that a model cannot hack, group advantages, the clipped objective
# with its KL term) and watch the same thing happen on a laptop CPU: a policy that mostly answers at once
# learns, from the reward alone, to think in writing. Then REINFORCE and PPO at an equal budget, the
# Dr. GRPO and DAPO variants and Kimi k1.5's length reward, each measured over seeds. The same loop then
# runs unchanged on Qwen2.5-0.5B-Instruct on a GPU.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/10_grpo.ipynb)
#
# The budget below is read from the records (`benchmarks/results/`): the `tiny` time from the last `make
# test`, the `full` time from the GPU run.

# %%
from IPython.display import Markdown, display
from nanoseek.benchmarking import budget_table

display(Markdown(budget_table(
    "10_grpo", tiny="2-layer, 64-wide decoder (0.1M parameters); 3-digit addition; then a tiny random Qwen2",
    full="4-layer, 256-wide decoder, 4-digit addition; then Qwen2.5-0.5B-Instruct (needs the hub and ≥ 24 GB)",
    full_record="10_grpo_full")))

# %% [markdown]
# **What you will learn**
# - to write **rule rewards (规则奖励)** for format and accuracy that treat model output as hostile input;
# - to derive the policy gradient, then PPO's clipped objective, then GRPO's group baseline, and to say
#   what the critic costs;
# - to build the GRPO loss term by term (ratio, clip-low/clip-high, k3 KL, three ways to average tokens)
#   and check it against the package;
# - to reproduce R1-Zero's growing responses at toy scale, and to measure why they grow;
# - to compare GRPO, REINFORCE and PPO fairly (equal rollouts, equal updates, seeds), and to switch on
#   Dr. GRPO, DAPO's dynamic sampling and overlong shaping, and Kimi k1.5's length reward.

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
# One cell decides the scale. `tiny` adds three-digit numbers with a 0.1M-parameter policy; `full` adds
# four-digit numbers with a larger one, and runs the last section on the real Qwen2.5-0.5B-Instruct. The
# seeded comparisons later in the chapter come from `benchmarks/r1_zero.py`, which runs the same recipe
# (its record is `CFG["record"]`).
# Tiny models run faster on one CPU thread than on two (the work per operation is too small to split),
# and one thread also makes every number below reproducible to the last bit.

# %%
CFG = pick(
    tiny=dict(threads=1, digits=3, eval_n=200, seed=0, probe_every=5,
              model=dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=192, max_seq_len=48),
              sft=dict(rows=4000, p_trace=0.3, steps=2000, batch_size=64, lr=2e-3),
              rl=dict(steps=20, prompts_per_step=16, group_size=8, max_new_tokens=40, lr=1e-4,
                      inner_epochs=2, beta=0.04, eval_every=5),
              record="r1_zero",
              qwen=dict(name=None, task="arithmetic", task_options=dict(digits=2, ops="+"), eval_n=8,
                        rl=dict(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=16, lr=1e-4,
                                eval_every=2))),
    full=dict(threads=None, digits=4, eval_n=500, seed=0, probe_every=10,
              model=dict(n_layer=4, n_embd=256, n_head=8, n_kv_head=2, intermediate_size=704, max_seq_len=64),
              sft=dict(rows=20000, p_trace=0.3, steps=1500, batch_size=128, lr=1e-3),
              rl=dict(steps=60, prompts_per_step=32, group_size=8, max_new_tokens=52, lr=5e-5,
                      inner_epochs=2, beta=0.04, eval_every=10),
              record="r1_zero_full",
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
# ## The policy: a tiny decoder that mostly answers at once
# Our policy is chapter 4's `Decoder` with a character vocabulary over the task's alphabet, in which the
# four tags are single tokens (as special tokens are in a real tokenizer). R1-Zero started from a base model
# that could already, now and then, reason its way to an answer; ours must too, or RL has nothing to
# reinforce. So we **warm it up with supervised fine-tuning (监督微调, SFT)** on a mixture that a base model's
# habits resemble: most demonstrations answer at once, with an empty think block, and a few work the sum out
# column by column, least significant digit first (digit + digit + carry-in = two-digit sum):

# %%
from nanoseek.rl.tasks import addition_demo, addition_task, direct_demo, mixture_examples, worked
from nanoseek.rl.vocab import TaskVocab

vocab = TaskVocab("0123456789+-=,")
row = {"a": 468, "b": 357}
print("direct answer: 468+357=" + direct_demo(row))
print("worked trace:  468+357=" + addition_demo(row, carry=True))
print(f"vocabulary: {len(vocab)} tokens:", vocab.itos)
show(worked)

# %% [markdown]
# Why would thinking pay? The answer is written most significant digit first, but a carry travels from the
# right: to write the first digit at once, a 2-layer model must resolve the whole carry chain in one
# forward pass. The trace writes the columns in the order the carries flow, so each step is local: add two
# digits and a carry that sits a few tokens back. `worked` above is the book's rule for "shows its work";
# we count it on sampled responses. With `CFG["sft"]["p_trace"]` of the demonstrations worked, we train
# the warm-up once and cache it with `nanoseek.zoo.load_or_train`; `warm_up` puts the loss on the response
# tokens only.

# %%
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.rl.tasks import trace_stats, warm_up
from nanoseek.zoo import load_or_train

show(warm_up)


def build_policy() -> Decoder:
    torch.manual_seed(CFG["seed"])
    return Decoder(DecoderConfig(vocab_size=len(vocab), **CFG["model"]))


def sft_warmup(model: Decoder) -> dict:
    s = CFG["sft"]
    rows = arithmetic("train", s["rows"], CFG["seed"], digits=CFG["digits"])
    seqs, prompt_lens = mixture_examples(rows, vocab, s["p_trace"], seed=CFG["seed"])
    return warm_up(model, seqs, prompt_lens, vocab.pad_id, s["steps"], s["batch_size"], s["lr"], seed=CFG["seed"])


t0 = time.perf_counter()
policy, info = load_or_train(f"ch10-r1zero-sft-{CFG['digits']}d", build_policy, sft_warmup, version="2")
policy.to(device())
print(f"SFT warm-up ready in {time.perf_counter() - t0:.1f} s; final SFT loss {info['sft_loss'][-1]:.3f}; "
      f"{sum(p.numel() for p in policy.parameters()):,} parameters")

# %%
task = addition_task(vocab, digits=CFG["digits"])
max_new = CFG["rl"]["max_new_tokens"]
base = copy.deepcopy(policy)                         # the SFT policy, kept for the comparisons below
start = trace_stats(policy, test_rows, task, max_new, seed=CFG["seed"])
print(f"after SFT, sampled at T=1 (4 per held-out problem): accuracy {start['accuracy']:.1%}, "
      f"{start['worked_share']:.0%} of responses show their work, mean length {start['length']:.1f} tokens")
print(f"  worked responses right: {start['acc_worked']:.1%} of {start['n_worked']:.0f}; "
      f"direct answers right: {start['acc_direct']:.1%} of {start['n_direct']:.0f}")
assert start["worked_share"] < 0.5, "the warm-up should mostly answer at once"
# the premise as a two-proportion comparison: the gap must clear two standard errors of the difference
gap_se = math.sqrt(start["acc_worked"] * (1 - start["acc_worked"]) / start["n_worked"]
                   + start["acc_direct"] * (1 - start["acc_direct"]) / start["n_direct"])
print(f"  gap {start['acc_worked'] - start['acc_direct']:+.3f}, standard error {gap_se:.3f}")
assert start["acc_worked"] - start["acc_direct"] > 2 * gap_se, "working it out should already pay before RL"

# %% [markdown]
# So the warm-up leaves a policy that can think but mostly does not, and thinking is already the better
# bet. Nothing below rewards thinking or length: the reward is accuracy plus 0.1 × format, as in R1-Zero.
#
# ## GRPO, and the R1-Zero moment
# The loop (`nanoseek.rl.trainer.train_rl`): each step draws 16 training problems, samples a group of 8
# responses to each with the KV cache (`nanoseek.rl.rollout`), scores them with `r1_reward`, computes group
# advantages, and takes `inner_epochs` gradient steps on that batch with the clipped loss and β = 0.04
# against the frozen SFT policy. Every `probe_every` steps a hook measures the held-out statistics.

# %%
from nanoseek.rl.rollout import rollout
from nanoseek.rl.trainer import RLConfig, train_rl

show(rollout)

# %%
seed_everything(CFG["seed"])
grpo_cfg = RLConfig(algo="grpo", seed=CFG["seed"], **CFG["rl"])
probes = {0: start}


def probe(step: int, model, metrics: dict) -> None:
    if step % CFG["probe_every"] == 0 or step == grpo_cfg.steps:
        probes[step] = trace_stats(model, test_rows, task, max_new, seed=CFG["seed"])
        model.train()


t0 = time.perf_counter()
hist = train_rl(policy, task, grpo_cfg, eval_rows=test_rows, on_step=probe)
grpo_seconds = time.perf_counter() - t0
end = probes[grpo_cfg.steps]
print(f"GRPO: {grpo_cfg.steps} steps in {grpo_seconds:.1f} s")
print(f"held-out, sampled: accuracy {start['accuracy']:.1%} -> {end['accuracy']:.1%}; mean length "
      f"{start['length']:.1f} -> {end['length']:.1f} tokens ({end['length'] / start['length'] - 1:+.0%}); "
      f"worked share {start['worked_share']:.0%} -> {end['worked_share']:.0%}")

# %%
steps = sorted(probes)
fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
axes[0].plot(steps, [100 * probes[k]["accuracy"] for k in steps], "o-", color="C2", label="sampled")
axes[0].plot(hist.eval_step, [100 * a for a in hist.eval["accuracy"]], "s--", color="C0", label="greedy")
axes[0].set_title("held-out accuracy (%)")
axes[0].legend()
axes[1].plot(hist.step, hist.metrics["length"], color="C3", label="training rollouts")
axes[1].plot(steps, [probes[k]["length"] for k in steps], "o", color="C3", label="held-out")
axes[1].set_title("response length (tokens)")
axes[1].legend()
axes[2].plot(steps, [100 * probes[k]["worked_share"] for k in steps], "o-", color="C1")
axes[2].set_title("responses that show their work (%)")
axes[3].plot(hist.step, hist.metrics["kl"], color="C4")
axes[3].set_title("KL to the reference (k3, per token)")
for ax in axes:
    ax.set_xlabel("GRPO step")
plt.tight_layout()
plt.show()
assert end["length"] >= 1.5 * start["length"], "responses should grow by half or more, as in Logic-RL"
# accuracy over n sampled responses has a binomial standard error; a rise counts when it clears two of them
n_sampled = start["n_worked"] + start["n_direct"]
se_rise = math.sqrt(sum(s["accuracy"] * (1 - s["accuracy"]) for s in (start, end)) / n_sampled)
print(f"accuracy rise {end['accuracy'] - start['accuracy']:+.3f}, standard error {se_rise:.3f}")
assert end["accuracy"] - start["accuracy"] > 2 * se_rise, "accuracy should rise with the length"
assert end["worked_share"] > start["worked_share"] + 0.3
for stats in (start, end):
    if stats["n_direct"] >= 20 and stats["n_worked"] >= 20:  # both kinds present in numbers worth comparing
        assert stats["acc_worked"] > stats["acc_direct"], "the traces should be right more often"

# %% [markdown]
# This is the R1-Zero moment in miniature. Read the four panels together: the share of responses that
# work the sum out climbs towards all of them, the mean length follows it up, and accuracy rises with it.
# The reward never mentioned length or traces; it only paid for right answers, and the worked responses
# were right more often, so every group in which a worked response beat a direct one pushed the first
# decision after `<think>` towards working. The greedy curve jumps once the most likely first token after
# `<think>` flips from `</think>` to a digit; the sampled curve moves smoothly because it sees the shares.
# Our responses can only grow to the length of one full trace: there is no room for the reflections and
# re-checks R1-Zero invented, because our warm-up never showed a re-check and a 2-layer model does not
# invent one. Before and after, on the same held-out problems (greedy):

# %%
def completions(model, rows):
    out = rollout(model, rows, task.prompt_fn, vocab.encode, vocab.decode, 1, max_new, vocab.eos_id,
                  vocab.pad_id, temperature=0.0)
    return [t for ro in out for t in ro.texts]


shown = test_rows[:4]
for row, before, after in zip(shown, completions(base, shown), completions(policy, shown)):
    ok = lambda text: "✓" if task.accuracy_fn(text, row) else "✗"  # noqa: E731
    print(f"{row['prompt']}\n  SFT : {ok(before)} {before}\n  GRPO: {ok(after)} {after}")

# %% [markdown]
# ### Two ways to estimate the KL: k1 and k3
# The KL term is estimated per sampled token. The plain estimator k1 = log π(o) − log π_ref(o) is unbiased
# but takes negative values and is noisy; Schulman's k3 = r − log r − 1 with r = π_ref/π is unbiased too and
# never negative. On the responses the trained policy samples, against the exact per-token KL computed from
# the full distributions:

# %%
import torch.nn.functional as F
from nanoseek.rl.rollout import sequence_logprobs

gen = torch.Generator(device=device()).manual_seed(CFG["seed"])
ro = rollout(policy, test_rows[:64], task.prompt_fn, vocab.encode, vocab.decode, 4, max_new, vocab.eos_id,
             vocab.pad_id, None, 1.0, None, gen)[0]
with torch.no_grad():
    logp = sequence_logprobs(policy, ro.prompt, ro.response)
    ref_logp = sequence_logprobs(base, ro.prompt, ro.response)
    full = torch.cat([ro.prompt, ro.response], 1)
    P = ro.prompt.shape[1]
    lp = F.log_softmax(policy(full)[0][:, P - 1:-1], -1)
    lq = F.log_softmax(base(full)[0][:, P - 1:-1], -1)
    exact = (lp.exp() * (lp - lq)).sum(-1)            # KL(pi || pi_ref) at each position, exactly
m = ro.mask.bool()
k1 = (logp - ref_logp)[m]
k3 = (torch.exp(ref_logp - logp) - (ref_logp - logp) - 1)[m]
print(f"{int(m.sum())} sampled tokens: exact KL per token {exact[m].mean():.4f}")
print(f"  k1: mean {k1.mean():.4f}, std {k1.std():.4f}, min {k1.min():.4f} (negative on {float((k1 < 0).float().mean()):.0%} of tokens)")
print(f"  k3: mean {k3.mean():.4f}, std {k3.std():.4f}, min {k3.min():.4f}")
assert k3.min() >= -1e-6 and k1.min() < 0  # k3 >= 0 up to float rounding; k1 goes negative
assert k3.std() < k1.std()

# %% [markdown]
# Both are unbiased in expectation, and k1's mean sits on the exact value. k3's mean comes out below it on
# this sample: its ratio term π_ref/π has a heavy tail (tokens the reference likes far more than the policy
# are rarely sampled), so a finite sample under-counts it. In exchange its spread is smaller here, and it is
# never negative: k1's negative values are the reason GRPO uses k3 as a per-token penalty, since a negative
# penalty would *reward* moving away from the reference on that token.
#
# ## Seeds: did the moment reproduce?
# One run is an anecdote. `benchmarks/r1_zero.py` runs the same recipe from the same warm-up with three RL
# seeds (prompts and samples differ), for GRPO and for every variant below, and records the held-out
# statistics of each run; this cell reads that record.

# %%
from nanoseek.benchmarking import read_result
from nanoseek.seeds import SeedSummary, table, verdict

record = read_result(CFG["record"])
if record is not None and record["data"]["recipe"]["sft"] != CFG["sft"]:  # another warm-up: not this chapter's run
    print(f"benchmarks/results/{CFG['record']}.json was made with another warm-up ({record['data']['recipe']['sft']}); "
          f"re-run benchmarks/r1_zero.py for this one")
    record = None


def seeds_of(name: str, key: str) -> SeedSummary | None:
    if record is None or name not in record["data"]["runs"]:
        return None
    runs_ = record["data"]["runs"][name]
    return SeedSummary(tuple(r["end"][key] for r in runs_), tuple(r["seed"] for r in runs_))


if record is None:
    print(f"benchmarks/results/{CFG['record']}.json is not recorded yet: run benchmarks/r1_zero.py")
else:
    rec_start = record["data"]["start"]
    print(f"record of {record['date']} ({record.get('gpu', record['cpu'])}), seeds {record['data']['seeds']}; "
          f"after the warm-up: accuracy {rec_start['accuracy']:.3f}, length {rec_start['length']:.1f}, "
          f"worked share {rec_start['worked_share']:.3f}")
    display(Markdown(table({f"GRPO, end: {k}": seeds_of("grpo", k)
                            for k in ("accuracy", "length", "worked_share")}, digits=3)))
    grew = [r["end"]["length"] >= 1.5 * rec_start["length"] for r in record["data"]["runs"]["grpo"]]
    rose = [r["end"]["accuracy"] > rec_start["accuracy"] for r in record["data"]["runs"]["grpo"]]
    print(f"length grew by half or more in {sum(grew)} of {len(grew)} seeds; accuracy rose in {sum(rose)} of {len(rose)}")

# %% [markdown]
# ### The same moment on Knights and Knaves, at `full` on the H200
# Sums leave a large policy little room: at `full` the warm-up already gets most of them right. The issue's
# harder test is Knights and Knaves with more people: every islander is a knight who always
# tells the truth or a knave who always lies, and each makes one statement about the others (`minids.knights`
# writes them compactly: `A:B0...` is "A says B is a knave", `B:A=C..` "A and C are the same kind", `C:A0|B1`
# "A is a knave or B is a knight"). The worked trace supposes A is a knight and propagates (`A1:A1>B0,B0>x`:
# A tells the truth, so B is a knave; B's statement is then true, which a knave cannot say), and on a
# contradiction re-checks with A a knave (`;A0:...`). The same warm-up mixture and the same two rule rewards, over three seeds, in
# `benchmarks/r1_zero.py --task kk`; this cell reads its record.

# %%
kk = read_result("r1_zero_kk_full")
if kk is None:
    print("benchmarks/results/r1_zero_kk_full.json is not recorded yet: run bash benchmarks/gpu/ch10.sh kk on a GPU")
else:
    kk_data, kk_runs = kk["data"], kk["data"]["runs"]["grpo"]
    kk_start = kk_data["start"]
    print(f"record of {kk['date']} ({kk.get('gpu', kk['cpu'])}): {kk_data['recipe']['people']} people, seeds "
          f"{kk_data['seeds']}; after the warm-up: accuracy {kk_start['accuracy']:.3f}, length "
          f"{kk_start['length']:.1f}, worked share {kk_start['worked_share']:.3f} (worked {kk_start['acc_worked']:.3f} "
          f"right, direct {kk_start['acc_direct']:.3f})")
    kk_seeds = lambda key: SeedSummary(tuple(r["end"][key] for r in kk_runs), tuple(r["seed"] for r in kk_runs))  # noqa: E731
    display(Markdown(table({f"GRPO, end: {k}": kk_seeds(k) for k in
                            ("accuracy", "length", "worked_share", "recheck_share", "acc_worked", "acc_direct")},
                           digits=3)))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for key, ax, title in zip(("accuracy", "length", "worked_share", "recheck_share"), axes,
                              ("held-out accuracy", "response length (tokens)", "share that shows its work",
                               "share that re-checks")):
        for r in kk_runs:
            xs = [int(k) for k in r["probes"]]
            ax.plot(xs, [r["probes"][k][key] for k in r["probes"]], "o-", ms=3, label=f"seed {r['seed']}")
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
    axes[0].legend()
    plt.tight_layout()
    plt.show()
    grew = [r["end"]["length"] >= 1.5 * kk_start["length"] for r in kk_runs]
    rose = [r["end"]["accuracy"] > kk_start["accuracy"] for r in kk_runs]
    print(f"length grew by half or more in {sum(grew)} of {len(grew)} seeds; accuracy rose in {sum(rose)} of {len(rose)}")
    for c in kk_runs[0]["completions"][:2]:
        print(f"{c['prompt']} (answer {c['answer']})\n  warm-up: {c['before']}\n  GRPO   : {c['after']}")
    pays = kk_start["acc_worked"] > kk_start["acc_direct"]
    print("after the warm-up, worked traces were right " + ("more" if pays else "less") + " often than direct answers: "
          + ("thinking paid, so GRPO had a reason to think more" if pays else
             "thinking did not pay, so a reward that checks only answers taught the policy to think less"))

# %% [markdown]
# Read the record's first line before its curves. The R1-Zero moment needs a policy for which thinking already
# pays a little: a reward that only checks answers then shifts probability towards the responses that think.
# Where the warm-up's traces are *less* reliable than its direct guesses (the sentence printed above says which
# happened in the record), the same reward pushes the other way, and the curves show thinking dying out. That
# is the mechanism of the moment seen from the other side, and it says what the moment needs: a starting
# policy whose reasoning is already better than its guessing. Our traces are written by a propagating solver
# and a small model copies them imperfectly; a larger model, a longer warm-up on traces, or a task whose
# direct answer is harder to guess are the next things to try.

# %% [markdown]
# ## REINFORCE and PPO at an equal budget
# A fair comparison holds two things equal: the rollouts (same prompts, same number of sampled responses
# per step) and the gradient updates. GRPO as configured above takes 2 updates per batch (2 inner epochs)
# where REINFORCE takes 1, so for this comparison every algorithm takes 2 updates a step (1 epoch, 2
# minibatches): `grpo_eq`, `reinforce_eq`, `ppo_eq` in the record. REINFORCE uses the group mean as
# baseline; PPO trains a critic (a copy of the policy with a scalar head), shapes the reward with a per-token
# KL penalty, and uses GAE. A winner is named only when the seed ranges do not overlap (`nanoseek.seeds`).

# %%
from nanoseek.rl.ppo import ValueModel

n_policy = sum(p.numel() for p in base.parameters())
n_critic = sum(p.numel() for p in ValueModel(base).parameters())
print(f"trained parameters: GRPO and REINFORCE {n_policy:,}; PPO {n_policy + n_critic:,} (policy + critic)")
assert n_critic > 0.95 * n_policy  # the critic is a second policy-sized network (its head is 1 wide, not V)
if record is not None:
    fair = {n: seeds_of(n, "accuracy") for n in ("grpo_eq", "reinforce_eq", "ppo_eq")}
    display(Markdown(table(fair, digits=3, header=("algorithm (equal rollouts and updates)", "held-out accuracy"))))
    for a, b in (("grpo_eq", "reinforce_eq"), ("grpo_eq", "ppo_eq"), ("ppo_eq", "reinforce_eq")):
        print(f"{a} vs {b}: {verdict(fair[a], fair[b], lower_is_better=False, names=(a, b))}")
    secs = {n: sum(r["seconds"] for r in record["data"]["runs"][n]) / len(record["data"]["runs"][n]) for n in fair}
    print("seconds per run:", {n: round(v, 1) for n, v in secs.items()})

# %% [markdown]
# Read the verdicts, not the means: at three seeds a gap inside the spread is a tie. PPO carries a second
# network as large as the policy (parameters, optimizer state, forward and backward passes: the seconds per
# run above), which is GRPO's reason to exist; with an outcome-only reward its critic must learn to predict
# the final score from partial answers.
#
# ## The variants as switches
# Each variant changes one setting of the same `RLConfig`, from the same warm-up, for the same steps:
#
# - **Dr. GRPO** {cite}`liu2025drgrpo`: no division by the group's std *and* a constant normaliser (the loss is
#   summed over tokens and divided by the generation budget, not by each response's length), which removes
#   the bias towards long wrong answers; `normalize_by_std=False, agg="constant"`.
# - **DAPO's dynamic sampling** {cite}`yu2025dapo`: a group whose rewards are all equal has zero advantage and
#   teaches nothing; drop it and sample more prompts until the batch is full. Its cost is the extra rollouts,
#   counted in `sampled`.
# - **DAPO's overlong shaping**: a penalty that ramps from 0 to −1 over the last `overlong_buffer` tokens of
#   the budget.

# %%
from nanoseek.rl.rewards import kimi_length_rewards, overlong_penalty
from nanoseek.rl.trainer import informative

show(overlong_penalty)
if record is not None:
    names = ("grpo", "dr_grpo", "dapo_dynamic", "dapo_overlong")
    display(Markdown(table({n: seeds_of(n, "accuracy") for n in names}, digits=3,
                           header=("variant", "held-out accuracy"))))
    display(Markdown(table({n: seeds_of(n, "length") for n in names}, digits=1,
                           header=("variant", "held-out length"))))
    for n in names[1:]:
        sampled = sum(r["sampled"] for r in record["data"]["runs"][n]) / len(record["data"]["runs"][n])
        base_sampled = sum(r["sampled"] for r in record["data"]["runs"]["grpo"]) / len(record["data"]["runs"]["grpo"])
        print(f"{n}: accuracy vs GRPO {verdict(seeds_of(n, 'accuracy'), seeds_of('grpo', 'accuracy'), lower_is_better=False, names=(n, 'grpo'))}; "
              f"length vs GRPO {verdict(seeds_of(n, 'length'), seeds_of('grpo', 'length'), names=('shorter: ' + n, 'shorter: grpo'))}; "
              f"responses sampled {sampled:.0f} vs {base_sampled:.0f}")

# %% [markdown]
# Overlong shaping needs a budget that leaves room for the behaviour you want. Where does its penalty start
# here, against the length of a full worked response?

# %%
buffer = record["data"]["recipe"]["overlong_buffer"] if record is not None else 8
trace_len = max(len(vocab.encode(addition_demo(r, carry=True))) + 1 for r in test_rows)  # + the end token
direct_len = max(len(vocab.encode(direct_demo(r))) + 1 for r in test_rows)
print(f"penalty from {max_new - buffer} tokens on (budget {max_new}, buffer {buffer}); the longest worked "
      f"response is {trace_len} tokens, the longest direct one {direct_len}")

# %% [markdown]
# When the ramp begins before a full trace ends, the shaping taxes exactly the responses that are right more
# often, and the policy learns to answer at once again: compare its length and worked share with GRPO's in
# the tables above. DAPO sets the buffer to a small fraction of a budget that is far longer than its
# answers; ours is too tight, and the record shows what that costs.
#
# The variants were designed for problems larger than ours: clip-higher fights **entropy collapse (熵坍缩)**
# over thousands of steps, Dr. GRPO's normaliser fights the length bias of free-form reasoning, and dynamic
# sampling matters most when most groups are all right or all wrong. The verdicts above say which of them
# moved anything at this scale; a tie means the switch did not clear the noise of three seeds.
#
# ## Kimi k1.5's length reward: long2short
# R1's responses grew long; Kimi k1.5 {cite}`kimi2025k15` shortened them again with a **length reward
# (长度奖励)**: among the responses to one prompt, λ = 0.5 − (len − min_len)/(max_len − min_len); a correct
# response gets λ, a wrong one min(0, λ). Short right answers gain, long wrong ones lose, short wrong ones
# gain nothing. After the GRPO run, the benchmark trains more steps with it (`long2short`) and, beside it,
# the same extra steps without it (`grpo_more`).

# %%
show(kimi_length_rewards)
print(kimi_length_rewards([10, 20, 30], [True, True, False]))
if record is not None:
    for key, digits in (("accuracy", 3), ("tokens_per_correct", 1), ("worked_share", 3)):
        pair = {n: seeds_of(n, key) for n in ("grpo_more", "long2short")}
        display(Markdown(table(pair, digits=digits, header=("after GRPO", key))))
        print(f"{key}: {verdict(pair['long2short'], pair['grpo_more'], lower_is_better=key == 'tokens_per_correct', names=('long2short', 'grpo_more'))}")

# %% [markdown]
# On our task the length reward faces a hard trade: the only shorter responses are direct answers, which
# are right less often than traces, so "shorter at equal accuracy" can only come from trimming a trace, and our traces have
# no fat to trim. The verdicts above say what it did here. On R1-style free-form reasoning, where a right
# answer can come with or without pages of re-checking, the same reward cuts tokens at nearly equal accuracy.
#
# ## Peak and decline
# R1-Zero-style curves often peak and then sag on held-out problems while the training reward keeps rising,
# as the policy over-fits its own samples or drifts from the reference. The training-rollout accuracy of the
# three GRPO seeds, step by step:

# %%
if record is not None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in record["data"]["runs"]["grpo"]:
        ax.plot(range(1, len(r["accuracy_curve"]) + 1), r["accuracy_curve"], label=f"seed {r['seed']}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("accuracy on the step's rollouts")
    ax.set_title("GRPO over three seeds")
    ax.legend()
    plt.show()
    for r in record["data"]["runs"]["grpo"]:
        curve = r["accuracy_curve"]
        best = max(range(len(curve)), key=curve.__getitem__)
        print(f"seed {r['seed']}: best {curve[best]:.2f} at step {best + 1}, last {curve[-1]:.2f}")
greedy = dict(zip(hist.eval_step, hist.eval["accuracy"]))
print("this notebook's run, held-out greedy accuracy by step:", {k: round(a, 3) for k, a in greedy.items()})
best_step, last_step = max(greedy, key=greedy.get), hist.eval_step[-1]
# a drop from the best to the last evaluation counts when it clears two binomial standard errors (computed as
# if unpaired; both evaluations see the same problems, so this overstates the noise a little)
se_drop = math.sqrt(sum(greedy[k] * (1 - greedy[k]) for k in (best_step, last_step)) / len(test_rows))
print(f"greedy: best {greedy[best_step]:.3f} at step {best_step}, last {greedy[last_step]:.3f} at step {last_step}; "
      f"drop {greedy[best_step] - greedy[last_step]:.3f}, two standard errors {2 * se_drop:.3f}")
assert greedy[best_step] - greedy[last_step] <= 2 * se_drop, "held-out greedy accuracy declined beyond the noise"

# %% [markdown]
# Each step's accuracy is measured on only 16 prompts, so it jumps from one step to the next (the plot shows
# by how much), and "best step, then lower" in the printout is that jumpiness, not a decline: this notebook's
# held-out greedy accuracy (200 problems) ends within two standard errors of its best (the last line above,
# asserted). A real peak-and-decline needs runs far longer than 20 steps; we do not claim one. `benchmarks/r1_zero.py --scale full` runs longer.
#
# ## Paper says / we measured

# %%
def fmt(s: SeedSummary | None, digits: int = 3) -> str:
    return "not recorded" if s is None else s.format(digits)


rows_md = [
    "| | paper | here (`tiny`, read from this run and the record) |",
    "| --- | --- | --- |",
    f"| RL from a base model (R1-Zero) | AIME 2024 pass@1 15.6% → 71.0% over thousands of steps {{cite}}`deepseekr1` | "
    f"held-out 3-digit addition, sampled: {start['accuracy']:.1%} → {end['accuracy']:.1%} in {grpo_cfg.steps} steps; "
    f"3 seeds: {fmt(seeds_of('grpo', 'accuracy'))} |",
    f"| response length during RL | grows steadily; Logic-RL: more than +50% {{cite}}`xie2025logicrl` | {start['length']:.1f} → {end['length']:.1f} "
    f"tokens ({end['length'] / start['length'] - 1:+.0%}); 3 seeds: {fmt(seeds_of('grpo', 'length'), 1)} |",
    f"| reflection, re-checks | appear on their own | worked traces {start['worked_share']:.0%} → {end['worked_share']:.0%} "
    f"of responses; no re-check appears (none was ever shown to the warm-up) |",
    f"| critic | PPO needs a value model as large as the policy | PPO trains {(n_policy + n_critic) / n_policy:.1f}× the parameters |",
]
display(Markdown("\n".join(rows_md)))

# %%
import resource  # peak memory of this process so far (Linux and macOS)

peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform.startswith("linux") else 2**30)
print(f"GRPO: {grpo_cfg.steps} steps, {grpo_seconds:.0f} s on this machine; peak process memory {peak_gib:.2f} GiB")

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
# - From a warm-up that mostly answered at once, a reward that only checks answers taught the policy to
#   write its work out: responses grew longer as accuracy rose, the R1-Zero moment in miniature (measured
#   above, and over three seeds in the record).
# - Fair comparisons hold rollouts and updates equal and name a winner only outside the seed spread;
#   Dr. GRPO, DAPO's dynamic sampling and overlong shaping, and Kimi's length reward are switches of one loop.
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
