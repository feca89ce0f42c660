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
# # Chapter 3: From pretraining to a chat model
#
# A DeepSeek model is made twice. **Pretraining (预训练)** teaches a network the language from raw text;
# **supervised fine-tuning (监督微调, SFT)** then teaches the pretrained network to *converse*: to read a
# user's turn, answer it, and stop. In this chapter we do both with the chapter-1 GPT and the chapter-2
# tokenizer: pretrain on the minids stories, fine-tune on instruction data about those stories, measure on
# held-out questions what SFT changed, and hand the result to the `transformers` ecosystem, where it chats
# through a standard `pipeline`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/03_pretrain_sft.ipynb)
#

# %% tags=["remove-input"]
from IPython.display import Markdown, display

from nanoseek.benchmarking import budget_table

display(Markdown(budget_table(
    "03_pretrain_sft",
    tiny="2-layer, 128-wide GPT (0.59M parameters), BPE of 1,381 tokens; English stories (1 MB), 1,500 chat rows",
    full="6-layer, 384-wide GPT (12M parameters), 4,096 BPE tokens; English + Chinese, 120,000 chat rows",
    full_record="03_pretrain_sft_full")))

# %% [markdown]
# **What you will learn**
# - to turn a story corpus into a pretraining token stream with document separators, and pretrain on it;
# - to write a chat template with role special tokens, and to render and tokenize conversations with it;
# - to build the SFT loss mask so that only the assistant's words (and its end-of-turn) are learned;
# - to measure what SFT changes: template following, stopping, and exactly scored answer accuracy on 300
#   held-out prompts, with intervals;
# - to pack several samples into one training row with an attention mask between them, and check it exactly;
# - to export a model of ours to `transformers` and check that it generates exactly the same tokens.

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import copy
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import nanoseek
from nanoseek import device, pick, seed_everything

seed_everything(1337)
print("nanoseek", nanoseek.__version__, "| torch", torch.__version__, "| device:", device())

# %% [markdown]
# ## The configuration
# One cell decides the scale. `tiny` pretrains on the English stories only, so that a minute of CPU is enough
# to learn them; `full` uses both languages and a GPT of chapter 1's `full` size.

# %%
CFG = pick(
    tiny=dict(langs="en", vocab_size=2048, tokenizer_chars=2_000_000, n_layer=2, n_head=4, n_embd=128, block_size=160,
              pretrain_steps=360, pretrain_batch=13, pretrain_lr=3e-3,
              sft_steps=600, sft_batch=8, sft_lr=3e-3, eval_rows=300, max_new_tokens=40),
    full=dict(langs="both", vocab_size=4096, tokenizer_chars=20_000_000, n_layer=6, n_head=6, n_embd=384, block_size=256,
              pretrain_steps=3000, pretrain_batch=64, pretrain_lr=1e-3,
              sft_steps=1500, sft_batch=64, sft_lr=3e-4, eval_rows=1200, max_new_tokens=48),
)
LANGS = ("en", "zh") if CFG["langs"] == "both" else (CFG["langs"],)
t_start = time.perf_counter()
CFG

# %% [markdown]
# ## Tokens for pretraining
# Chapter 2 built a byte-level BPE tokenizer. Here we train one on the stories with five **special tokens
# (特殊词元)** reserved from the start (we ask for 2,048 tokens at `tiny`; the English stories' words are all
# merged well before that, so the trainer stops earlier and the model takes its size from `tok.vocab_size`): `<|endoftext|>` separates documents, and the chat roles
# `<|system|>`, `<|user|>`, `<|assistant|>` and the **end-of-turn token (轮次结束词元, EOT)** `<|end|>` will frame
# conversations. Special tokens are never split or merged, and text that merely *spells* one stays plain
# bytes, so a user cannot forge a role.

# %%
from nanoseek.data import load_stories
from nanoseek.data.chat import SPECIAL_TOKENS
from nanoseek.data.stories import load_story_list
from nanoseek.tokenizer import Tokenizer

t0 = time.perf_counter()
tok_text = "".join(load_stories(lang, "train")[: CFG["tokenizer_chars"] // len(LANGS)] for lang in LANGS)
tok = Tokenizer.train(tok_text, CFG["vocab_size"], special_tokens=SPECIAL_TOKENS)
print(f"trained a {tok.vocab_size:,}-token vocabulary on {len(tok_text):,} characters in {time.perf_counter() - t0:.1f} s")
print({name: tok.special_id(name) for name in SPECIAL_TOKENS})
assert tok.encode("<|user|>") != [tok.special_id("<|user|>")]  # spelled in text, it is just bytes

# %% [markdown]
# A pretraining stream is every training story's tokens, each preceded by `<|endoftext|>`, concatenated.
# Batches are random windows of it (chapter 1's `window_batcher`); a window may span two stories, and the
# separator tells the model that what follows does not depend on what came before.

# %%
from nanoseek.data import window_batcher
from nanoseek.sft import story_tokens

train_stories = [s for lang in LANGS for s in load_story_list(lang, "train")]
val_stories = [s for lang in LANGS for s in load_story_list(lang, "val")]
train_ids, val_ids = story_tokens(tok, train_stories), story_tokens(tok, val_stories)
n_bytes = sum(len(s.encode()) for s in train_stories)
print(f"{len(train_stories):,} train stories -> {len(train_ids):,} tokens ({n_bytes / len(train_ids):.2f} bytes/token); "
      f"{len(val_stories):,} val stories -> {len(val_ids):,} tokens")
print(repr(tok.decode(train_ids[:40].tolist())))
assert train_ids[0] == tok.special_id("<|endoftext|>")

# %% [markdown]
# ## Pretraining
# The chapter-1 GPT, told its vocabulary size by the tokenizer, trained with the book's training loop. Its
# context (`block_size`) must hold a whole chat row later, and the pretraining windows fill all of it: a
# learned position table has one row per position, and a row that pretraining never reaches keeps its random
# initialization until SFT meets it. (An earlier version of this chapter pretrained on 128-token windows of a
# 160-token model, and left position rows 128–159 untrained; the assert below keeps that from coming back.)

# %%
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.train import TrainConfig, train

seed_everything(1337)
gpt_config = GPTConfig(block_size=CFG["block_size"], vocab_size=tok.vocab_size, n_layer=CFG["n_layer"],
                       n_head=CFG["n_head"], n_embd=CFG["n_embd"], dropout=0.0, bias=False)
base = GPT(gpt_config)
print(f"{base.num_params() / 1e6:.2f}M parameters")
pretrain = train(base, window_batcher(train_ids, val_ids, CFG["block_size"], CFG["pretrain_batch"]),
                 TrainConfig(max_steps=CFG["pretrain_steps"], lr=CFG["pretrain_lr"],
                             warmup_steps=CFG["pretrain_steps"] // 10, eval_every=CFG["pretrain_steps"] // 4,
                             eval_batches=10))
print(f"val loss {pretrain.val_loss[0]:.2f} -> {pretrain.final_val_loss:.2f} nats/token "
      f"({pretrain.tokens_per_second:,.0f} tokens/s)")
x_probe, _ = window_batcher(train_ids, val_ids, CFG["block_size"], 1)("train", torch.Generator().manual_seed(0))
assert x_probe.shape[1] == gpt_config.block_size  # every position row of the table was trained

# %% [markdown]
# The untrained model gives every token about the same probability, a loss near $\ln V$; pretraining must
# bring it far below that:

# %%
import math

print(f"ln V = {math.log(tok.vocab_size):.2f}; first val loss {pretrain.val_loss[0]:.2f}; "
      f"final {pretrain.final_val_loss:.2f}")
assert pretrain.final_val_loss < 0.6 * math.log(tok.vocab_size)
fig, ax = plt.subplots(figsize=(6, 3.5))
pretrain.plot(ax, label="pretrain")
ax.set_title("Pretraining on BPE tokens of the stories")
plt.show()

# %% [markdown]
# A pretrained model continues text. Started from `<|endoftext|>`, it writes a story:

# %%
from nanoseek.generate import generate

g = torch.Generator().manual_seed(0)
start = torch.tensor([[tok.special_id("<|endoftext|>")]], device=device())
sample = generate(base, start, 80, temperature=0.8, top_k=50, generator=g)[0].tolist()
print(tok.decode(sample[1:]))

# %% [markdown]
# ## Instruction data
# `minids` also generates **instruction data (指令数据)** from the same story world: a user turn about a
# fresh story and the assistant's reply. Questions about the hero, the friend, the place or the object have
# an `answer` that a correct reply must contain; a rewrite (swap a name in a sentence) has one exact right
# reply; a continuation can only be checked for its form. The `test` split shares no story and no prompt
# with `train`.

# %%
from collections import Counter

from nanoseek.data import load_instructions

sft_train = load_instructions("train", CFG["langs"])
sft_test = load_instructions("test", CFG["langs"])
print(f"{len(sft_train):,} train rows, {len(sft_test):,} test rows;", dict(Counter(r["task"] for r in sft_train)))
assert not {r["messages"][0]["content"] for r in sft_train} & {r["messages"][0]["content"] for r in sft_test}
for task in ("hero", "rewrite"):
    row = next(r for r in sft_train if r["task"] == task)
    print(f"\n--- {task} ---\nuser: {row['messages'][0]['content']}\nassistant: {row['messages'][1]['content']}"
          f"\nanswer: {row['answer']!r}")
zh = next(r for r in load_instructions("train", "zh") if r["task"] == "place")
print(f"\n--- 中文 (place) ---\nuser: {zh['messages'][0]['content']}\nassistant: {zh['messages'][1]['content']}")

# %% [markdown]
# ## The chat template
# A **chat template (对话模板)** turns a list of messages into one token sequence. Ours wraps every turn in its
# role token and `<|end|>`, and starts the conversation with `<|endoftext|>`, as a pretraining document starts.
# At inference we stop the prompt after `<|assistant|>` (the *generation prompt*) and let the model write the
# reply, until it produces `<|end|>`. Inline:

# %%
def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    text = "<|endoftext|>" + "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


example = sft_train[0]["messages"]
print(render(example))

# %% [markdown]
# The package's version also validates the conversation (a malformed row raises a `ValueError` that names it),
# and has the same template in Jinja for `transformers`:

# %%
from nanoseek.data.chat import CHAT_TEMPLATE, encode_chat, render_chat, validate_messages

nanoseek.show(render_chat)
for row in sft_train[:200]:
    for gen in (False, True):
        assert render(row["messages"], gen) == render_chat(row["messages"], add_generation_prompt=gen)
try:
    validate_messages([{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}], where="row 'demo'")
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## The loss mask, on a real example
# Pretraining learns every next token. The **loss mask (损失掩码)** decides which targets count. In SFT we want the model to learn *how to answer*, not to predict the
# user's question, so the loss counts only the assistant's tokens and its closing `<|end|>` (learning to stop
# is part of the job). Every other target becomes `-100`, the index `cross_entropy` ignores. Inline, token by
# token:

# %%
ids, roles = [tok.special_id("<|endoftext|>")], [None]
for m in example:
    body = tok.encode(m["content"])
    ids += [tok.special_id(f"<|{m['role']}|>")] + body + [tok.special_id("<|end|>")]
    roles += ["tag"] + [m["role"]] * len(body) + [m["role"] + " end"]
mask = [r in ("assistant", "assistant end") for r in roles]

pkg_ids, pkg_mask = encode_chat(tok, example)
assert (ids, mask) == (pkg_ids, pkg_mask)
print(f"{len(ids)} tokens, {sum(mask)} of them trained")
print("".join(f"[{tok.decode([i])}]" if m else tok.decode([i]) for i, m in zip(ids, mask)))

# %%
from IPython.display import HTML, display

spans = "".join(
    f'<span style="background:{"#b7e4c7" if m else "#eeeeee"};margin:1px;padding:1px;border-radius:3px;'
    f'font-family:monospace">{tok.decode([i]).replace("<", "&lt;")}</span>' for i, m in zip(ids, mask))
display(HTML(f"<div style='line-height:1.9'>{spans}</div><p>green: trained (loss), grey: masked (-100)</p>"))

# %% [markdown]
# With inputs `x = ids[:-1]` the target of position `t` is token `t+1`, so the mask shifts by one too
# (`nanoseek.data.chat.to_xy`). The mean cross-entropy with `ignore_index=-100` is the mean over trained
# positions only, which we check on random logits:

# %%
from nanoseek.data.chat import to_xy

x, y = to_xy(ids, mask, CFG["block_size"], pad_id=tok.special_id("<|end|>"))
logits = torch.randn(len(x), tok.vocab_size, generator=torch.Generator().manual_seed(0))
kept = y != -100
by_hand = -(logits[kept].log_softmax(-1).gather(1, y[kept, None])).mean()
torch.testing.assert_close(F.cross_entropy(logits, y, ignore_index=-100), by_hand)
print(f"{int(kept.sum())} positions with loss out of {len(y)}")

# %% [markdown]
# ## Before SFT
# How does the pretrained model respond to a chat prompt? We ask it held-out questions, greedily, and read
# its replies with `nanoseek.sft.evaluate_chat`: the share that **follow the template** (text, then
# `<|end|>`, no other special token), the share that **stop** with `<|end|>`, and the **accuracy** on
# checkable rows (template followed *and* answer right).
#
# "Right" is scored exactly. A reply must be one of the sentences the data generator writes for that question
# ("The story is about Sam.", "Sam's friend is Kate.", ...) with the *slot that answers the question* equal to
# the row's answer. A substring test counts "Maya's friend is Tom." as right for "Who is Kate's friend?"
# (answer: Maya), because the reply contains "Maya". The cell shows the difference and checks the scorer on
# every reference reply of the data. Every share comes with a 95% **Wilson score interval (威尔逊区间)**, which
# stays inside [0, 1] and is honest at 0 of n:

# %%
from nanoseek.sft import evaluate_chat

from nanoseek.sft import answer_exact, reply_correct, wilson_interval

probe = {"task": "friend", "lang": "en", "answer": "Maya"}  # "Who is Kate's friend?" -> Maya
for reply in ("Maya is Kate's friend.", "Kate's friend is Maya.", "Maya's friend is Tom."):
    print(f"{reply!r:28} substring: {reply_correct(probe, reply)!s:5}  exact: {answer_exact(probe, reply)}")
assert reply_correct(probe, "Maya's friend is Tom.") and not answer_exact(probe, "Maya's friend is Tom.")
assert all(answer_exact(r, r["messages"][1]["content"]) for r in sft_train + sft_test if r["answer"] is not None)

eval_rows = sft_test[:: max(1, len(sft_test) // CFG["eval_rows"])][: CFG["eval_rows"]]
# The pretrained model never stops, so each of its replies costs max_new_tokens steps: a sample of 32 rows
# shows its template share; the SFT models below are scored on all the eval rows.
before_rows = eval_rows[:: max(1, len(eval_rows) // 32)][:32]
before = evaluate_chat(base, tok, before_rows, CFG["max_new_tokens"], progress=True)
print({k: round(before[k], 3) for k in ("template", "eot", "accuracy", "contains")}, f"on {before['n']} rows")
r = before["replies"][0]
print(f"\nuser: {before_rows[0]['messages'][0]['content']}\nreply: {r['reply']!r}")

# %% [markdown]
# It does what pretraining taught: it continues the text as if it were a story. It has never seen `<|end|>`,
# so it never stops.
#
# ## SFT, with and without the mask
# Two copies of the pretrained model are fine-tuned with the same loop, data, steps and learning rate; one
# learns only the assistant's tokens, the other every token of the conversation (the user's story passages
# included). Rows are right-padded and each batch is cut to its longest row. One cell per run:

# %%
from nanoseek.data.chat import sft_batcher

runs, models = {}, {}


def finetune(masked: bool) -> None:
    """SFT a fresh copy of the pretrained model; store it and its run under "masked" or "unmasked"."""
    name = "masked" if masked else "unmasked"
    get_batch, info = sft_batcher(tok, sft_train, sft_test, CFG["block_size"], CFG["sft_batch"], masked=masked)
    models[name] = copy.deepcopy(base)
    runs[name] = train(models[name], get_batch,
                       TrainConfig(max_steps=CFG["sft_steps"], lr=CFG["sft_lr"], warmup_steps=CFG["sft_steps"] // 10,
                                   eval_every=CFG["sft_steps"] // 4, eval_batches=10))
    print(f"{name}: {info['train']['rows']:,} rows used, {info['train']['dropped_too_long']} too long for the context")


finetune(masked=True)

# %%
finetune(masked=False)

# %% [markdown]
# The two runs' own losses are not comparable (the unmasked one averages over the easy-to-predict story text
# too), so we measure both on the same thing: the loss on the assistant tokens of held-out rows.

# %%
from nanoseek.train import evaluate

answer_batches, _ = sft_batcher(tok, sft_test, sft_test, CFG["block_size"], CFG["sft_batch"], masked=True)
answer_loss = {"pretrained": evaluate(base, answer_batches, 10)}
answer_loss |= {name: evaluate(m, answer_batches, 10) for name, m in models.items()}
print({k: round(v, 3) for k, v in answer_loss.items()})

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, res in runs.items():
    res.plot(axes[0], label=name)
axes[0].set_title("SFT loss (each on its own targets)")
axes[1].bar(list(answer_loss), list(answer_loss.values()), color=["#999999", "#2a9d8f", "#e9c46a"])
axes[1].set_ylabel("nats / assistant token")
axes[1].set_title("held-out loss on assistant tokens")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## After SFT: what changed

# %%
after = {name: evaluate_chat(m, tok, eval_rows, CFG["max_new_tokens"], progress=True) for name, m in models.items()}
table = {"pretrained": before, **after}


def ci(res: dict, key: str) -> str:
    """`0.57 [0.50, 0.63] (142/250)`: share, 95% Wilson interval, counts."""
    iv = res["intervals"][key]
    return f"{iv['share']:.2f} [{iv['ci95'][0]:.2f}, {iv['ci95'][1]:.2f}] ({iv['k']}/{iv['n']})"


print("| model | rows | template | EOT | exact accuracy [95% CI] | substring 'accuracy' |\n| --- | ---: | --- | --- | --- | --- |")
for name, res in table.items():
    print(f"| {name} | {res['n']} | {res['template']:.2f} | {res['eot']:.2f} | {ci(res, 'accuracy')} | {res['contains']:.2f} |")
tasks = sorted(after["masked"]["by_task"])
print("\n| task | " + " | ".join(after) + " |\n| --- |" + " --- |" * len(after))
for t in tasks:
    print(f"| {t} | " + " | ".join(ci(res, f"task:{t}") for res in after.values()) + " |")

fig, ax = plt.subplots(figsize=(7, 3.5))
metrics = ("template", "eot", "accuracy")
for k, (name, res) in enumerate(table.items()):
    ax.bar([i + 0.27 * (k - 1) for i in range(3)], [res[m] for m in metrics], width=0.27, label=name)
ax.set_xticks(range(3), ["follows template", "ends with <|end|>", "answer accuracy"])
ax.set_ylim(0, 1.05)
ax.set_ylabel(f"share of held-out prompts ({after['masked']['n']}; pretrained {before['n']})")
ax.legend()
plt.show()

# %% [markdown]
# SFT turned a story writer into something that answers in the template, stops, and (at `tiny`, for the
# question about the hero above all) names the right character. The per-task intervals are wide where a task
# has few rows: the `tiny` test split holds 150 English rows, all of them used here. The asserts below compare
# intervals, not just means, and hold at `tiny` scale with margin on any CPU (the run is deterministic):

# %%
sft = after["masked"]
assert before["template"] <= 0.1 and before["eot"] <= 0.1, "the pretrained model should not know the template"
assert sft["template"] >= before["template"] + 0.6, sft["template"]
assert sft["eot"] >= before["eot"] + 0.6, sft["eot"]
assert answer_loss["masked"] < answer_loss["pretrained"] - 3.0, answer_loss
lo_sft, hi_before = sft["intervals"]["accuracy"]["ci95"][0], before["intervals"]["accuracy"]["ci95"][1]
assert lo_sft > hi_before + 0.1, (lo_sft, hi_before)  # the intervals are far apart, not just the means
assert sft["intervals"]["task:hero"]["ci95"][0] >= 0.6, sft["intervals"]["task:hero"]
for row, rec in list(zip(eval_rows, sft["replies"]))[:6]:
    print(f"Q: {row['messages'][0]['content'].splitlines()[-1]}\nA: {rec['reply']}   (expected {row['answer']!r}, "
          f"correct: {rec['correct']})\n")

# %% [markdown]
# Look at the answers: they have the right *form* ("The story is about ...", "... friend is ...") and, for
# the hero, mostly the name *in the story*, not just a plausible one. Answering needs the model to **copy** a name from its
# context. Did pretraining teach that? We test the pretrained model on its home ground, plain story text: a
# story introduces a character, and we check whether the model's next mention of a character uses that name.

# %%
names = ["Lucy", "Oscar", "Hannah", "Max", "Ruby", "Finn", "Grace", "Leo"]
copied = 0
for name in names:
    text = f"Once upon a time, there was a kind {'girl' if name in ('Lucy', 'Hannah', 'Ruby', 'Grace') else 'boy'} named {name}. One day,"
    ids = [tok.special_id("<|endoftext|>")] + tok.encode(text)
    cont = tok.decode(generate(base, torch.tensor([ids], device=device()), 12, temperature=0.0)[0, len(ids):].tolist())
    copied += name in cont
    print(f"{name:>7} -> {cont!r}")
copy_rate = copied / len(names)
print(f"the pretrained model reuses the introduced name in {copied} of {len(names)} stories")

# %% [markdown]
# At `tiny` scale the pretrained model has hardly learned to copy (its **induction heads (归纳头)**, the attention
# pattern "find the earlier occurrence, copy what followed", form later in training); it continues with the
# same name whatever the story introduced. So at `tiny` the copying above was learned *during SFT*, and
# narrowly: 600 steps of 8 rows are 3.2 epochs over rows whose answer always stands in the prompt, in a few
# fixed sentence shapes (`benchmarks/sft.py --set KEY=VALUE` runs variants of the schedule). It is slot
# filling, not general copying: a rewrite, which copies a whole sentence with one name changed, stays wrong.
#
# At `full` scale on one H200 (12M parameters, 3,000 pretraining steps of 64 x 256 tokens, English and
# Chinese) the pretrained model copies, and SFT only has to teach the format. The `tiny` column below is this
# run; the `full` column is read from the log of the chapter's last H200 run. That run is older than the
# exact scoring and the intervals: its accuracies are the substring test's, on 300 rows (its log is
# `benchmarks/results/logs/ch03_full_h200.log`; `benchmarks/gpu/ch34.sh` re-runs it with this version):

# %%
import re
from pathlib import Path

# The `full` column is read from the log of this notebook's own run at NANOSEEK_SCALE=full on one H200
# (bf16 autocast, 171 s; summary in benchmarks/results/h200_full_runs.md), not typed in.
log_path = Path(nanoseek.__file__).resolve().parents[1] / "benchmarks" / "results" / "logs" / "ch03_full_h200.log"
FULL_H200 = {}
if log_path.exists():
    log = log_path.read_text(encoding="utf-8")
    rows = {m[0]: m[1:] for m in re.findall(r"^\| (pretrained|masked|unmasked) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) "
                                             r"\| [\d.]+ \| (.+) \|$", log, re.M)}
    losses = re.search(r"\{'pretrained': ([\d.]+), 'masked': ([\d.]+), 'unmasked': ([\d.]+)\}", log).groups()
    FULL_H200 = {
        "pretraining val loss (nats/token)": re.search(r"^val loss ([\d.]+ -> [\d.]+) nats/token", log, re.M)[1],
        "pretrained model reuses the introduced name": re.search(r"introduced name in (\d+ of \d+)", log)[1],
        "answer accuracy: pretrained / SFT masked / SFT unmasked":
            " / ".join(rows[k][2] for k in ("pretrained", "masked", "unmasked")),
        "SFT masked, by task": rows["masked"][3],
        "rewrite accuracy, SFT unmasked": re.search(r"rewrite ([\d.]+)", rows["unmasked"][3])[1],
        "held-out answer loss: pretrained / masked / unmasked": " / ".join(f"{float(v):.3f}" for v in losses),
        "template / EOT share after SFT (masked)": f"{rows['masked'][0]} / {rows['masked'][1]}",
    }
tiny_now = {
    "pretraining val loss (nats/token)": f"{pretrain.val_loss[0]:.2f} -> {pretrain.final_val_loss:.2f}",
    "pretrained model reuses the introduced name": f"{copied} of {len(names)}",
    "answer accuracy: pretrained / SFT masked / SFT unmasked":
        " / ".join(f"{r['accuracy']:.2f}" for r in (before, after["masked"], after["unmasked"])),
    "SFT masked, by task": ", ".join(f"{t} {v:.2f}" for t, v in after["masked"]["by_task"].items()),
    "rewrite accuracy, SFT unmasked": f"{after['unmasked']['by_task'].get('rewrite', float('nan')):.2f}",
    "held-out answer loss: pretrained / masked / unmasked": " / ".join(f"{answer_loss[k]:.3f}" for k in answer_loss),
    "template / EOT share after SFT (masked)": f"{sft['template']:.2f} / {sft['eot']:.2f}",
}
print(f"| | this run ({nanoseek.scale()}, {device()}) | full, one H200 (earlier run, substring scoring) |\n"
      "| --- | --- | --- |")
for k, v in tiny_now.items():
    print(f"| {k} | {v} | {FULL_H200.get(k, 'no record here')} |")

# %% [markdown]
# With a pretrained model that copies, SFT takes every question type near 1 and even gets many rewrites
# right (the `full` column): the view of LIMA {cite}`zhou2023lima` that a model's skills come from
# pretraining and SFT mostly teaches the format. At `tiny`, SFT had to supply the copying itself, and learned
# only its narrow, in-template part.

# %% [markdown]
# ## Packing, with a mask between samples
# Our SFT batches pad every row to the longest one of its batch. DeepSeek-V3 instead **packs (打包)** its SFT
# data: several samples share one training sequence, and an attention mask keeps each sample from seeing
# the others {cite}`deepseekv3`. Packing needs three things: each sample is shifted on its own (its targets
# never reach into the next sample), attention is causal *within* a segment only, and positions restart at 0
# in each segment, so that a packed sample computes exactly what it would compute alone. Inline, for one
# packed row given its segment ids:

# %%
def mask_and_positions(seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """seg: (T,) segment id of each position -> (T, T) bool mask (query i sees key j), (T,) positions."""
    T = len(seg)
    mask = torch.zeros(T, T, dtype=torch.bool)
    pos = torch.zeros(T, dtype=torch.long)
    for i in range(T):
        for j in range(i + 1):
            mask[i, j] = bool(seg[i] == seg[j])
        pos[i] = 0 if i == 0 or seg[i] != seg[i - 1] else pos[i - 1] + 1
    return mask, pos


from nanoseek.data.chat import pack_rows, packed_attention_mask, packed_loss, segment_positions

nanoseek.show(packed_attention_mask)
seg_demo = torch.tensor([1, 1, 1, 2, 2, 3, 3, 3, 0, 0])
m_inline, p_inline = mask_and_positions(seg_demo)
assert torch.equal(m_inline, packed_attention_mask(seg_demo[None])[0])
assert torch.equal(p_inline, segment_positions(seg_demo[None])[0])
print("positions:", p_inline.tolist())

# %% [markdown]
# The package's `pack_rows` places whole conversations into `block_size` rows (first fit), and the GPT takes
# the segment ids (`model(x, y, segment_ids=seg)`). The check that matters: the loss of a packed batch equals
# the token-weighted mean of each sample's loss computed alone, and without the mask it does not.

# %%
pack_demo = sft_train[:4000]  # enough rows to measure the fill
X, Y, S, pack_info = pack_rows(tok, pack_demo, CFG["block_size"])
lens = torch.tensor([len(encode_chat(tok, r["messages"])[0]) - 1 for r in pack_demo])
lens = lens[lens <= CFG["block_size"]]
g = torch.Generator().manual_seed(0)
picks = [torch.randint(len(lens), (CFG["sft_batch"],), generator=g) for _ in range(200)]
pad_fill = sum(float(lens[p].sum()) for p in picks) / sum(CFG["sft_batch"] * float(lens[p].max()) for p in picks)
print(f"{pack_info['samples']:,} conversations -> {pack_info['rows']:,} packed rows of {CFG['block_size']} "
      f"positions; positions holding a sample: packed {pack_info['fill']:.0%}, padded batches {pad_fill:.0%}")

multi = int((S.max(1).values >= 2).int().argmax())  # a packed row with at least two samples
xb, yb, sb = (t[multi:multi + 1].to(device()) for t in (X, Y, S))
with torch.no_grad():
    packed = packed_loss(base, (xb, yb, sb)).item()
    unmasked_pack = base(xb, yb)[1].item()  # one causal sequence: sample 2 sees sample 1, positions run on
    total, count = 0.0, 0
    for s_id in sb.unique().tolist():
        if s_id == 0:
            continue
        keep = sb[0] == s_id
        logits_alone, _ = base(xb[:, keep])
        total += F.cross_entropy(logits_alone[0], yb[0, keep], ignore_index=-100, reduction="sum").item()
        count += int((yb[0, keep] != -100).sum())
print(f"row {multi}: {int(sb.max())} samples; packed loss {packed:.5f}, samples alone {total / count:.5f}, "
      f"packed without the mask {unmasked_pack:.5f}")
assert abs(packed - total / count) < 1e-4
assert abs(unmasked_pack - total / count) > 1e-3

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
n_show = int((sb[0] > 0).sum())
axes[0].imshow(packed_attention_mask(sb)[0, :n_show, :n_show].cpu(), cmap="Greens")
axes[0].set(title=f"packed row {multi}: who may attend to whom", xlabel="key position", ylabel="query position")
axes[1].plot(segment_positions(sb)[0, :n_show].cpu())
axes[1].set(title="position ids restart in each sample", xlabel="position in the packed row", ylabel="position id")
plt.tight_layout()
plt.show()

# %% [markdown]
# The fill printed above is the share of computed positions that hold a sample; the rest is padding, paid
# for and thrown away. Packing raises it, so the same samples cost fewer positions; the longer the context
# next to the rows, the more it saves. The SFT runs above still use padded batches, so that their numbers stay
# comparable with the chapter's earlier versions; `packed_batcher` with `loss_fn=packed_loss` trains with
# packing in the same loop.
#
# **Multi-turn** conversations need no new machinery: `encode_chat` trains every assistant turn and masks every
# user turn, so a two-turn conversation trains two replies. The minids rows are single-turn, and only some
# pairs of them fit one 160-token context as a two-turn conversation (the share is printed below); this
# chapter trains on single turns:

# %%
two_turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Who is the story about?"}, {"role": "assistant", "content": "Lily."}]
ids2, mask2 = encode_chat(tok, two_turns)
print("".join(f"[{tok.decode([i])}]" if m else tok.decode([i]) for i, m in zip(ids2, mask2)))
assert sum(mask2) == len(tok.encode("Hello!")) + len(tok.encode("Lily.")) + 2  # both replies and both <|end|>
g = torch.Generator().manual_seed(1)
pairs = torch.randint(len(lens), (2000, 2), generator=g)
print(f"pairs of rows that fit one {CFG['block_size']}-token context as a two-turn conversation: "
      f"{float((lens[pairs].sum(1) <= CFG['block_size']).float().mean()):.1%}")

# %% [markdown]
# ## Paper says / we measured
#
# | | DeepSeek-V3 SFT {cite}`deepseekv3` | this chapter (`tiny`) |
# | --- | --- | --- |
# | data | 1.5M instances (reasoning and non-reasoning) | 1,500 generated rows about stories |
# | schedule | 2 epochs, cosine from 5e-6 to 1e-6 | see the next cell |
# | packing | several samples per sequence, masked from each other | one sample per row, right-padded; packing built and checked above |
# | loss | on the response | masked and unmasked, measured above |
#
# The mask: InstructGPT-style SFT {cite}`ouyang2022training` trains on responses. Shi et al.
# {cite}`shi2024instruction` found that a loss on the instructions too can *help* when the responses are short
# and the data small. Our rows are exactly that (answers of about ten tokens), so the comparison above is not
# a foregone conclusion; its numbers, not a rule, say which won here (the next cell; note that at `tiny` most
# of the unmasked run's targets are the user's story text, so its answers get a far smaller share of each of
# the same 600 updates) and at `full` scale (the table above).

# %%
epochs = CFG["sft_steps"] * CFG["sft_batch"] / len(sft_train)
print(f"SFT: {CFG['sft_steps']} steps x {CFG['sft_batch']} rows = {epochs:.2f} epochs at peak lr {CFG['sft_lr']:g} "
      f"(cosine to {CFG['sft_lr'] / 10:g}); masked vs unmasked accuracy: "
      f"{after['masked']['accuracy']:.2f} vs {after['unmasked']['accuracy']:.2f}; "
      f"held-out answer loss {answer_loss['masked']:.3f} vs {answer_loss['unmasked']:.3f}")

# %% [markdown]
# ## In the wild: hand the model to `transformers`
# Our GPT is GPT-2's architecture, so `nanoseek.interop.gpt2.export_gpt2` writes a folder that
# `AutoModelForCausalLM` loads as a `GPT2LMHeadModel`, with our tokenizer (as a `tokenizers` BPE), our chat
# template in Jinja and `<|end|>` as the end-of-sequence token. The mapping is a renaming plus a transpose
# (GPT-2 stores its linear layers as `Conv1D`, weight `(in, out)`):

# %%
import tempfile

from nanoseek.interop.gpt2 import export_gpt2, to_gpt2_state_dict

chat_model = models["masked"].cpu()  # transformers runs on the CPU here, so ours does too: same arithmetic
sd = to_gpt2_state_dict(chat_model)
print({k: tuple(v.shape) for k, v in list(sd.items())[:8]})
export_dir = export_gpt2(chat_model, tok, tempfile.mkdtemp(prefix="nanoseek-ch03-"))
print(sorted(p.name for p in export_dir.iterdir()))

# %% [markdown]
# Loaded back through the `Auto` classes, it must generate *exactly* our tokens on a held-out prompt:

# %%
from transformers import AutoModelForCausalLM, AutoTokenizer

hf_model = AutoModelForCausalLM.from_pretrained(export_dir, attn_implementation="eager").eval()
hf_tok = AutoTokenizer.from_pretrained(export_dir)
messages = eval_rows[1]["messages"][:1]
prompt = hf_tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
ours = generate(chat_model, prompt, 30, temperature=0.0, eos_id=tok.special_id("<|end|>"))
theirs = hf_model.generate(prompt, max_new_tokens=30, do_sample=False)
print(type(hf_model).__name__, "| ours:", repr(tok.decode(ours[0, prompt.shape[1]:].tolist())))
assert torch.equal(ours, theirs), "transformers and nanoseek disagree"

# %% [markdown]
# And it chats through a standard `pipeline`, which applies the chat template for us:

# %%
from transformers import pipeline

chat = pipeline("text-generation", model=hf_model, tokenizer=hf_tok, device="cpu")
story = next(r for r in sft_test if r["task"] == "hero")["messages"][0]["content"]
out = chat([{"role": "user", "content": story}], max_new_tokens=30, do_sample=False)
print(story, "\n\n→", out[0]["generated_text"][-1])
print(f"\nwhole notebook so far: {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# What production SFT adds: far more and far more varied data (DeepSeek-V3's 1.5M instances include
# reasoning traces distilled from R1, the book's last part), long packed sequences (we built packing above;
# at our 160-token context it hardly pays), multi-turn data of its own, and a reinforcement-learning stage after SFT (the R1 part of the book). On a GPU, TRL's `SFTTrainer`
# runs the same recipe on a real model, e.g. Qwen2.5-0.5B, with `assistant_only_loss=True` for the mask.
#
# ## Summary
# - Pretraining: a token stream of documents separated by `<|endoftext|>`, next-token loss on every token.
# - A chat template frames turns with role tokens and an end-of-turn token; the same template exists in Jinja.
# - SFT is the same loop on chat rows, with targets -100 outside the assistant's reply and its `<|end|>`;
#   packed rows add segment ids, a same-segment causal mask and positions that restart per sample.
# - Measured on held-out prompts: SFT takes template following and stopping from about 0 to near 1. Answer
#   accuracy, scored exactly with Wilson intervals, needs copying: at `full` pretraining supplies it; at `tiny`
#   SFT learns a narrow, in-template copy over 3 epochs. The mask's effect is measured.
# - A nanoGPT is a GPT-2: exported, it loads with `AutoModelForCausalLM` and generates our exact tokens.
#
# ## Exercises
# Edit each function, run its cell, and the checker tells you whether it is right. Solutions are hidden below
# each exercise.
#
# **Exercise 1 (easy).** Write the chat template renderer: `<|endoftext|>`, then each message as
# `<|role|>content<|end|>`, then `<|assistant|>` if `add_generation_prompt`.

# %% tags=["exercise"]
from nanoseek.exercises.ch03 import check_render_chat


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    raise NotImplementedError  # your code here


check_render_chat(render)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch03 import check_render_chat


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    text = "<|endoftext|>" + "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else "")


assert check_render_chat(render)

# %% [markdown]
# **Exercise 2 (medium).** Shift and mask: given the ids of a conversation and, for each id, whether it is
# trained, return `x = ids[:-1]` and `y` where `y[t] = ids[t+1]` if token `t+1` is trained, else `-100`.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch03 import check_shift_targets


def shift_targets(ids: list[int], mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    raise NotImplementedError  # your code here


check_shift_targets(shift_targets)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch03 import check_shift_targets


def shift_targets(ids: list[int], mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    ids_t = torch.tensor(ids)
    y = ids_t[1:].clone()
    y[~torch.tensor(mask[1:])] = -100
    return ids_t[:-1], y


assert check_shift_targets(shift_targets)

# %% [markdown]
# **Exercise 3 (harder).** The loss mask for a conversation: tokenize it with the chat template
# (`tok.special_id(name)` gives a special token's id, `tok.encode(text)` a content's ids) and mark which ids
# are trained: the assistant's content and its `<|end|>`, nothing else.

# %% tags=["exercise"]
from nanoseek.exercises.ch03 import check_loss_mask


def encode_chat(tok, messages: list[dict]) -> tuple[list[int], list[bool]]:
    raise NotImplementedError  # your code here


check_loss_mask(encode_chat)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch03 import check_loss_mask


def encode_chat(tok, messages: list[dict]) -> tuple[list[int], list[bool]]:
    ids, mask = [tok.special_id("<|endoftext|>")], [False]
    for m in messages:
        body = tok.encode(m["content"])
        trained = m["role"] == "assistant"
        ids += [tok.special_id(f"<|{m['role']}|>")] + body + [tok.special_id("<|end|>")]
        mask += [False] + [trained] * len(body) + [trained]
    return ids, mask


assert check_loss_mask(encode_chat)

# %% [markdown]
# **Exercise 4 (core: packing with masks).** Pack already-shifted samples `(x, y)` into rows of `block_size`
# positions, in order, starting a new row when the next sample does not fit. Return `x` and `y` as
# `(N, block_size)` long tensors (padding: `pad_id` in `x`, -100 in `y`), the segment ids `seg` (1, 2, ... for
# the samples of each row, 0 on padding) and the attention `mask` `(N, block_size, block_size)`: True where
# query `i` may attend to key `j`, that is `j <= i` in the same segment. Padding positions only need to see
# padding.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch03 import check_pack_with_mask


def pack_with_mask(samples: list[tuple[list[int], list[int]]], block_size: int, pad_id: int):
    """-> (x, y, seg, mask)"""
    raise NotImplementedError  # your code here


check_pack_with_mask(pack_with_mask)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch03 import check_pack_with_mask


def pack_with_mask(samples: list[tuple[list[int], list[int]]], block_size: int, pad_id: int):
    rows, used = [[]], 0
    for x, y in samples:
        if used + len(x) > block_size:  # next fit: open a new row
            rows.append([])
            used = 0
        rows[-1].append((x, y))
        used += len(x)
    X = torch.full((len(rows), block_size), pad_id)
    Y = torch.full((len(rows), block_size), -100)
    seg = torch.zeros((len(rows), block_size), dtype=torch.long)
    for b, row in enumerate(rows):
        t = 0
        for s, (x, y) in enumerate(row, start=1):
            X[b, t:t + len(x)], Y[b, t:t + len(x)], seg[b, t:t + len(x)] = torch.tensor(x), torch.tensor(y), s
            t += len(x)
    causal = torch.ones(block_size, block_size, dtype=torch.bool).tril()
    mask = (seg[:, :, None] == seg[:, None, :]) & causal  # (N, T, T): same segment, not in the future
    return X, Y, seg, mask


assert check_pack_with_mask(pack_with_mask)

# %% [markdown]
# ## Further reading
# - Instruction tuning and the SFT → RLHF pipeline: {cite}`ouyang2022training`; how little data SFT can need:
#   {cite}`zhou2023lima`; loss on instructions: {cite}`shi2024instruction`.
# - DeepSeek-V3's SFT recipe: {cite}`deepseekv3`. Tiny synthetic stories as a testbed: {cite}`eldan2023tinystories`.
# - GPT-2 {cite}`radford2019language` and the `transformers` library {cite}`wolf2020transformers`.
