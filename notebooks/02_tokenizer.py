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
# # Chapter 2: A byte-level BPE tokenizer
#
# A language model never sees text: it sees integers, the ids of **tokens (词元)**. The **tokenizer (分词器)**
# decides which integers, and that decision sets how long every sequence is, how much a Chinese sentence costs
# against an English one, and what the model can and cannot spell. DeepSeek-V3 uses a **byte-level BPE (字节级
# BPE, BBPE)** tokenizer with a 128K vocabulary {cite}`deepseekv3`. In this chapter we build one: from UTF-8
# bytes, through the byte-pair-encoding algorithm written inline, to the package's fast trainer that learns
# the same merges as Hugging Face `tokenizers`, with special tokens, save/load, and an export that
# `transformers` loads.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/02_tokenizer.ipynb)
#
# | scale | what is trained | runs on | time | memory |
# | --- | --- | --- | --- | --- |
# | `tiny` (default) | 4,096-token vocabulary on 1.9 MB of stories (English + Chinese) | 2-core laptop CPU | about 35 s | 0.5 GB |
# | `full` (`NANOSEEK_SCALE=full`) | 32,768-token vocabulary on 95 MB of stories | CPU-bound (no GPU needed) | 85 s of CPU time (6 min wall on a busy shared 2-core CPU) | 1.2 GB |
#
# **What you will learn**
# - why modern tokenizers work on UTF-8 bytes, and what that costs Chinese text before any training;
# - to write byte-pair encoding (BPE) from scratch: count pairs, merge the most frequent, repeat;
# - to make BPE training fast with incremental pair counts, and to check it against a naive version and
#   against the `tokenizers` library;
# - to measure compression (tokens per byte) and the English/Chinese cost at several vocabulary sizes;
# - to handle special tokens safely, save a tokenizer, and hand it to `transformers`.

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import json
import re
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

import nanoseek
from nanoseek import device, pick, seed_everything

seed_everything(1337)
print("nanoseek", nanoseek.__version__, "| device:", device(), "(this chapter runs on the CPU only)")


def table(header: list[str], rows: list[list]) -> None:
    """Show a Markdown table (the book renders it; a terminal shows the source)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


# %% [markdown]
# ## The configuration
# One cell decides the scale: the vocabulary we train, the vocabulary sizes we compare, and how much text
# the slow from-scratch version sees. Nothing below looks at the scale again.

# %%
CFG = pick(
    tiny=dict(vocab_size=4096, sweep=(256, 300, 512, 1024, 2048, 4096), inline_chars=6_000, inline_vocab=300,
              speed_chars=40_000, speed_vocab=320),
    full=dict(vocab_size=32768, sweep=(256, 512, 2048, 8192, 32768), inline_chars=6_000, inline_vocab=300,
              speed_chars=40_000, speed_vocab=320),
)
SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>"]
CFG

# %% [markdown]
# ## Why bytes
# Text is a sequence of Unicode **code points (码位)**: `"猫"` is one, U+732B. Well over a hundred thousand
# characters are assigned (counted below), and any of them can show up (an emoji, a rare surname, a math
# symbol), so a vocabulary of characters is either huge or needs an "unknown" token that loses information.
# **UTF-8 (UTF-8 编码)** writes every code point as 1 to 4 bytes: ASCII letters take one byte, Chinese
# characters three, most emoji four. A vocabulary that starts from the 256 byte values can spell *any* string,
# with no unknown token: that is why GPT-2 {cite}`radford2019language`, Llama 3, Qwen and DeepSeek all
# tokenize bytes.

# %%
import unicodedata

assigned = sum(unicodedata.category(chr(c)) not in ("Cn", "Co", "Cs") for c in range(0x110000))
print(f"Unicode {unicodedata.unidata_version}: {assigned:,} assigned characters "
      "(not counting private-use and surrogate code points)")
assert assigned > 100_000
for s in ["cat", "猫", "Lily found a ball.", "莉莉找到了一个球。", "🙂", "e\u0301"]:
    b = s.encode("utf-8")
    print(f"{s!r:24} {len(s):3} code points -> {len(b):3} bytes: {b.hex(' ')}")

# %% [markdown]
# The chapter's data are the minids stories of chapter 1, now in both languages. Before any training, the
# cost of Chinese is already visible: a Chinese story needs about three times as many bytes per character as
# an English one.

# %%
from nanoseek.data import load_stories

train_text = load_stories("both", "train")
val = {"en": load_stories("en", "val"), "zh": load_stories("zh", "val")}
print(f"train: {len(train_text):,} characters, {len(train_text.encode()):,} bytes (English then Chinese)")
rows = []
for lang, text in val.items():
    rows.append([lang, f"{len(text):,}", f"{len(text.encode()):,}", f"{len(text.encode()) / len(text):.2f}"])
table(["val text", "characters", "UTF-8 bytes", "bytes per character"], rows)
bytes_per_char = {lang: len(t.encode()) / len(t) for lang, t in val.items()}
assert bytes_per_char["en"] < 1.01 and bytes_per_char["zh"] > 2.8
print(val["zh"][:120])

# %% [markdown]
# Raw bytes make sequences long (every English letter a token, every Chinese character three). **Byte-pair
# encoding (字节对编码, BPE)** {cite}`gage1994new,sennrich2016neural` fixes that by learning new tokens: start
# from the 256 bytes, find the most frequent adjacent pair of tokens in the training text, give it a new id
# (a **merge (合并)**), rewrite the text with it, and repeat until the **vocabulary (词表)** has the size we
# want. Byte-level BPE applies this to UTF-8 bytes {cite}`radford2019language,wang2020neural`.
#
# ## Pre-tokenization: where merges may not cross
# Without a rule, BPE would also learn tokens that glue a word to the space or punctuation after it (we
# measure it below, once we have a fast trainer). So text is first split into chunks by a regular expression,
# the **pre-tokenization (预分词)**, and merges never cross a chunk boundary. We use GPT-4's split pattern:
# contractions, a run of letters with at most one leading non-letter (usually the space), runs of 1–3 digits,
# punctuation, and whitespace.

# %%
from nanoseek.tokenizer import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, split_text

print(GPT4_SPLIT_PATTERN)
for s in ["Lily's dog ran 12345 meters!!\n\nThe end.", "莉莉说：“我们一起玩吧！”他们玩了12345次。"]:
    print("GPT-4:", split_text(s, GPT4_SPLIT_PATTERN))
    print("GPT-2:", split_text(s, GPT2_SPLIT_PATTERN))

# %% [markdown]
# Two things to notice. Letters are Unicode *letters* (`\p{L}`), and Chinese characters are letters, so a
# whole Chinese clause up to the next punctuation is one chunk: BPE may learn multi-character Chinese words
# (and phrases). And a letter run may take one leading punctuation mark (`"，他们"`), which will show up in
# the learned vocabulary below.
#
# ## BPE, built inline
# Three small functions are the whole algorithm: count the adjacent pairs, merge one pair everywhere, and
# loop. Pairs are counted inside chunks only. When two pairs are equally frequent we must pick one; we pick
# the pair that Hugging Face `tokenizers` picks (smaller ids first, where single bytes are ordered by their
# printable GPT-2 character, `tie_order`), so that our tokenizers can be compared merge by merge.

# %%
from nanoseek.tokenizer import tie_order


def get_stats(chunks: list[list[int]]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for ids in chunks:
        for pair in zip(ids, ids[1:]):  # adjacent pairs inside one chunk
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_train_inline(text: str, vocab_size: int) -> tuple[list[tuple[int, int, int]], dict[int, bytes]]:
    chunks = [list(c.encode("utf-8")) for c in split_text(text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    while len(vocab) < vocab_size:
        stats = get_stats(chunks)
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], tie_order(p[0]), tie_order(p[1])))
        new_id = len(vocab)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges.append((*pair, new_id))
        chunks = [merge(ids, pair, new_id) for ids in chunks]
    return merges, vocab


small_text = train_text[: CFG["inline_chars"] // 2] + train_text[-CFG["inline_chars"] // 2 :]  # English + Chinese
inline_merges, inline_vocab = bpe_train_inline(small_text, CFG["inline_vocab"])


def show_token(b: bytes) -> str:
    try:
        return repr(b.decode("utf-8"))
    except UnicodeDecodeError:
        return b.hex(" ")  # part of a multi-byte character


table(["rank", "pair", "new token", "bytes"],
      [[r, f"{show_token(inline_vocab[a])} + {show_token(inline_vocab[b])}", new, show_token(inline_vocab[new])]
       for r, (a, b, new) in enumerate(inline_merges[:15])])

# %% [markdown]
# On this mixed text the first merges join the first two bytes of the most common Chinese
# characters (shown in hex: two bytes of a three-byte character are not text yet), and the next merge
# completes them with the third byte (`。`, `，`, `一`, `了`); English pairs such as `he` and ` a` come soon
# after. (Our inline version assumes each merge spells a new string; the package also handles the rare case of
# two merges spelling the same bytes, as `tokenizers` does, by reusing the id.)
#
# ## The package version
# Recounting every pair of the whole text for every merge costs (text length × number of merges). The
# package's trainer, `nanoseek.tokenizer.train`, does the same thing incrementally: it counts each *distinct*
# chunk once with its frequency, keeps an index from each pair to the chunks that contain it, and after a
# merge updates only those chunks and only the counts of the pairs next to each occurrence. A heap with lazy
# deletion gives the most frequent pair. Here is its core:

# %%
import nanoseek.tokenizer as T

nanoseek.show(T._learn_merges)

# %%
tok_small = T.train(small_text, CFG["inline_vocab"])
assert tok_small.merges == inline_merges, "the package and the inline BPE disagree"
assert all(tok_small.vocab[i] == inline_vocab[i] for i in inline_vocab)
print(f"same {len(inline_merges)} merges, same vocabulary ✓")

# %% [markdown]
# Same merges. How much faster is it? Both on the same text, to the same vocabulary:

# %%
speed_text = train_text[: CFG["speed_chars"] // 2] + train_text[-CFG["speed_chars"] // 2 :]
t0 = time.perf_counter()
naive_merges, _ = bpe_train_inline(speed_text, CFG["speed_vocab"])
t_naive = time.perf_counter() - t0
t0 = time.perf_counter()
fast = T.train(speed_text, CFG["speed_vocab"])
t_fast = time.perf_counter() - t0
assert fast.merges == naive_merges
table(["trainer", f"{len(naive_merges)} merges on {len(speed_text.encode()):,} bytes", "speed-up"],
      [["inline (recount every merge)", f"{t_naive:.2f} s", "1x"],
       ["package (incremental)", f"{t_fast:.3f} s", f"{t_naive / t_fast:.0f}x"]])
assert t_naive > 5 * t_fast

# %% [markdown]
# With a fast trainer we can also check what pre-tokenization buys. Train on the same text with a pattern
# that makes each document a single chunk, and count the learned tokens that the GPT-4 pattern would have
# cut in two (a word with the space after it, a character with its punctuation):

# %%
def crosses_chunks(b: bytes) -> bool:
    return len(split_text(b.decode("utf-8", errors="ignore"))) > 1


no_split = T.train(speed_text, CFG["speed_vocab"], pattern=r"[\s\S]+")
crossing = {name: [t.vocab[new] for _, _, new in t.merges if crosses_chunks(t.vocab[new])]
            for name, t in [("GPT-4 pattern", fast), ("no pre-tokenization", no_split)]}
for name, found in crossing.items():
    print(f"{name:20}: {len(found):3} of {len(fast.merges)} learned tokens span two chunks, e.g.",
          [b.decode("utf-8", "replace") for b in found[:8]])
assert not crossing["GPT-4 pattern"] and len(crossing["no pre-tokenization"]) >= 5

# %% [markdown]
# ## Training on the stories
# Now the real thing: a vocabulary of `CFG["vocab_size"]` tokens (256 bytes, the merges, and our special
# tokens, which get the last ids) on the whole training split, both languages.

# %%
t0 = time.perf_counter()
tok = T.train(train_text, CFG["vocab_size"], special_tokens=SPECIALS, progress=True)
t_train = time.perf_counter() - t0
print(tok, f"trained in {t_train:.1f} s")
assert len(tok) <= CFG["vocab_size"]  # smaller only if the text ran out of pairs to merge

# %% [markdown]
# The merges learned first are the most frequent pairs of the corpus; the last ones are whole words and,
# for Chinese, whole phrases of these very repetitive stories (a real corpus has far more variety).

# %%
def piece(i: int) -> str:
    return tok.id_to_piece(i).replace("\n", "\\n")


table(["rank", "merge", "token"],
      [[r, f"`{piece(a)}` + `{piece(b)}`", f"`{piece(new)}`"] for r, (a, b, new) in enumerate(tok.merges[:20])])
print("last 10:", [piece(new) for _, _, new in tok.merges[-10:]])

# %% [markdown]
# How long are the tokens? For each learned token we count its characters (Chinese tokens are short in
# characters but long in bytes), and we count them as used on held-out text:

# %%
def script(b: bytes) -> str:
    """By bytes, not by decoded text: every byte >= 0x80 belongs to a multi-byte UTF-8 character, which in
    these stories is a Chinese character or Chinese punctuation; a token of ASCII bytes only is English."""
    return "Chinese" if any(x >= 0x80 for x in b) else "English / other"


def whole_characters(b: bytes) -> bool:
    """True if the token's bytes are complete UTF-8 characters (it decodes on its own)."""
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


learned = [tok.vocab[new] for _, _, new in tok.merges]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for name in ("English / other", "Chinese"):
    lengths = [len(b) for b in learned if script(b) == name]
    axes[0].hist(lengths, bins=range(1, 45), alpha=0.6, label=f"{name} ({len(lengths)} tokens)")
axes[0].set_xlabel("token length in bytes")
axes[0].set_ylabel("tokens in the vocabulary")
axes[0].set_title("Learned tokens by length")
axes[0].legend()
for lang, text in val.items():
    ids = tok.encode(text)
    chars = [len(tok.decode([i])) for i in ids]
    axes[1].hist(chars, bins=range(1, 16), alpha=0.6, label=f"{lang}: {len(text) / len(ids):.2f} chars/token")
axes[1].set_xlabel("token length in characters")
axes[1].set_ylabel("tokens used on val text")
axes[1].set_title("Tokens as used on held-out stories")
axes[1].legend()
plt.tight_layout()
plt.show()

zh_tokens = [b for b in learned if script(b) == "Chinese"]
whole = [b for b in zh_tokens if whole_characters(b)]
multiple_of_3 = sum(len(b) % 3 == 0 for b in whole) / len(whole)
fragments = [b for b in zh_tokens if not whole_characters(b)]
print(f"{len(zh_tokens):,} of {len(learned):,} learned tokens hold Chinese bytes; {len(whole):,} of them are whole "
      f"characters ({multiple_of_3:.0%} of those a multiple of 3 bytes long), {len(fragments):,} "
      f"({len(fragments) / len(zh_tokens):.0%}) cut a character")
for b in fragments[:4]:
    print(f"  {b.hex(' ')}: {b.decode('utf-8', 'replace')!r}")
assert len(zh_tokens) > len(learned) / 2 and multiple_of_3 > 0.8

# %% [markdown]
# Two things stand out. Most of the vocabulary went to Chinese, although the corpus is half English by
# bytes: each Chinese clause is one chunk, so BPE keeps finding frequent pairs in it, while English chunks
# are single words that are finished after a few merges. And Chinese tokens come in multiples of three bytes
# (the peaks at 3, 6, 9, ...): whole characters, then words, then phrases.
#
# Some Chinese tokens cut a character (the count and examples above, with their bytes in hex; `�` marks
# an incomplete character). BPE merges bytes, never characters, and a 3-byte character's first two bytes are
# shared by 64 characters: `e4 b8` begins 一, 上, 不 and 61 more, `ef bc` the full-width punctuation ，！？ and
# `e3 80` the marks 。 and 、. Such a prefix is more frequent than any one character that contains it, so BPE
# merges it first, and the token stays in the vocabulary after the whole characters are learned. These
# tokens still decode correctly in sequence; alone they print as `�`, which is why streaming decode
# (exercise 4) must wait for the rest of a character.

# %% [markdown]
# ## Chinese against English, vocabulary by vocabulary
# BPE is greedy: training to a small vocabulary learns exactly the first merges of a larger one. So the
# tokenizer with the first *k* merges of `tok` *is* the tokenizer trained to that size (checked below for one
# size), and we can compare many sizes without retraining. Four sentences that say the same thing in both
# languages, and the whole held-out text, measured in tokens:

# %%
def first_merges(tok: T.Tokenizer, vocab_size: int) -> T.Tokenizer:
    """The tokenizer made of tok's merges until the vocabulary (without specials) has vocab_size tokens."""
    merges, made = [], set(range(256))
    for m in tok.merges:
        if len(made) >= vocab_size:
            break
        merges.append(m)
        made.add(m[2])
    return T.Tokenizer(merges)


check_size = CFG["sweep"][len(CFG["sweep"]) // 2]
assert T.train(train_text, check_size).merges == first_merges(tok, check_size).merges
print(f"training to {check_size} tokens gives the first merges of the {CFG['vocab_size']} vocabulary ✓")

PAIRS = [("Lily found a red ball in the park.", "莉莉在公园里找到了一个红色的球。"),
         ("One day, the little cat was very happy.", "有一天，小猫非常高兴。"),
         ("They played together and then went home.", "他们一起玩，然后回家了。"),
         ("Thank you for helping me find my kite!", "谢谢你帮我找到了风筝！")]
sizes = [min(v, CFG["vocab_size"] - len(SPECIALS)) for v in CFG["sweep"]]
cost = {"en": [], "zh": [], "en val": [], "zh val": []}
for v in sizes:
    sub = first_merges(tok, v)
    cost["en"].append(sum(len(sub.encode(e)) for e, _ in PAIRS))
    cost["zh"].append(sum(len(sub.encode(z)) for _, z in PAIRS))
    for lang in ("en", "zh"):
        cost[f"{lang} val"].append(1000 * len(sub.encode(val[lang])) / len(val[lang]))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].plot(sizes, cost["en"], "o-", label="English")
axes[0].plot(sizes, cost["zh"], "s-", label="Chinese")
axes[0].set_ylabel("tokens for the 4 sentences")
axes[0].set_title("The same four sentences")
axes[1].plot(sizes, cost["en val"], "o-", label="English")
axes[1].plot(sizes, cost["zh val"], "s-", label="Chinese")
axes[1].set_ylabel("tokens per 1,000 characters")
axes[1].set_title("Held-out stories")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size")
    ax.legend()
plt.tight_layout()
plt.show()
table(["vocabulary"] + [str(v) for v in sizes],
      [["English tokens (4 sentences)"] + cost["en"], ["Chinese tokens (4 sentences)"] + cost["zh"],
       ["zh / en"] + [f"{z / e:.2f}" for e, z in zip(cost["en"], cost["zh"])],
       ["English val, tokens / 1,000 chars"] + [f"{c:.0f}" for c in cost["en val"]],
       ["Chinese val, tokens / 1,000 chars"] + [f"{c:.0f}" for c in cost["zh val"]]])
assert cost["en"][0] == sum(len(e.encode()) for e, _ in PAIRS)  # 256 tokens = raw bytes
assert cost["zh"][-1] < cost["zh"][0] / 3  # merges cut Chinese by more than 3x
assert cost["zh val"][-1] / cost["zh val"][0] < cost["en val"][-1] / cost["en val"][0]  # and more than English

# %% [markdown]
# With bytes only, the Chinese sentences are about as long in tokens as the English ones
# although they have a third of the characters: each character is three tokens. The first merges fix exactly
# that, so Chinese gains more from a larger vocabulary than English does (the last assert above). How a real
# tokenizer splits its vocabulary between languages is a choice about its training data: DeepSeek-V3 changed
# its tokenizer's training data and pre-tokenizer "to optimize multilingual compression efficiency"
# {cite}`deepseekv3`.
#
# ## Against the `tokenizers` library
# The Hugging Face `tokenizers` library (Rust) has a BPE trainer. Configured like ours (same split regex,
# byte level, the same special tokens) it should learn the same merges and compress the same. It does:

# %%
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

hf = HFTokenizer(models.BPE())
hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated"),
                                            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
hf.decoder = decoders.ByteLevel()
t0 = time.perf_counter()
stories = re.split(r"(?<=\n\n)", train_text)  # one piece per story, each keeps its "\n\n" (saves memory)
hf.train_from_iterator(stories, trainers.BpeTrainer(
    vocab_size=CFG["vocab_size"], special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False))
t_hf = time.perf_counter() - t0

b2u = T.bytes_to_unicode()  # GPT-2's byte -> printable character map that tokenizers' ByteLevel uses
ours_merges = [("".join(b2u[x] for x in tok.vocab[a]), "".join(b2u[x] for x in tok.vocab[b])) for a, b, _ in tok.merges]
hf_merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(hf.to_str())["model"]["merges"]]
rows = []
for lang, text in val.items():
    n_ours, n_hf = len(tok.encode(text)), len(hf.encode(text).ids)
    n_bytes = len(text.encode())
    rows.append([lang, f"{n_ours / n_bytes:.4f}", f"{n_hf / n_bytes:.4f}", f"{100 * (n_ours / n_hf - 1):+.2f}%"])
    assert abs(n_ours / n_hf - 1) < 0.01
table(["val text", "nanoseek tokens/byte", "tokenizers tokens/byte", "difference"], rows)
print(f"merges identical: {ours_merges == hf_merges} ({len(ours_merges)} merges); train time: nanoseek "
      f"{t_train:.1f} s (pure Python), tokenizers {t_hf:.1f} s (Rust)")
assert ours_merges == hf_merges

# %% [markdown]
# `benchmarks/results/tokenizer.md` records the same comparison with both timed side by side on one core.
#
# ## Special tokens
# A **special token (特殊词元)** such as `<|endoftext|>` marks a boundary (end of a document; in chapter 3, who is
# speaking). It must be one id, never split and never merged, and never learned from text. It is also a
# control signal, so *user text must not be able to produce it*: by default `encode` treats the characters
# `<|endoftext|>` as plain text, and turns them into the special id only when asked with `allowed_special`.

# %%
chat = "<|user|>Who found the ball?<|assistant|>Lily did.<|endoftext|>"
as_text = tok.encode(chat)
as_special = tok.encode(chat, allowed_special="all")
print(len(as_text), "tokens as plain text:   ", [piece(i) for i in as_text][:12], "...")
print(len(as_special), "tokens with specials:", [piece(i) for i in as_special])
print({s: tok.special_id(s) for s in SPECIALS})
assert tok.special_id("<|endoftext|>") in as_special and tok.special_id("<|endoftext|>") not in as_text
assert tok.decode(as_special) == tok.decode(as_text) == chat
try:
    tok.encode(chat, allowed_special={"<|system|>"})
except KeyError as err:
    print("KeyError:", err)

# %% [markdown]
# Two more rules of the package, each tested: `encode` of anything but a `str` raises `TypeError`, and a
# string with a lone surrogate (which has no UTF-8 form) raises `ValueError` instead of being silently
# changed. Every other string round-trips: the package's tests check `decode(encode(s)) == s` with
# hypothesis on arbitrary strings, emoji and combining marks included.

# %%
for bad in [b"bytes", "half an emoji: \ud83d"]:
    try:
        tok.encode(bad)
    except (TypeError, ValueError) as err:
        print(f"{type(err).__name__}: {err}")
for s in ["👨‍👩‍👧 family", "e\u0301 vs é", "中文 and English, 2024!", "\t\n  \r\n"]:
    assert tok.decode(tok.encode(s)) == s

# %% [markdown]
# ## Save and load
# A tokenizer is its split pattern, its merges in order, and its special tokens; the package writes them as
# JSON (never pickle: loading a pickle runs code).

# %%
workdir = Path(tempfile.mkdtemp())
path = tok.save(workdir / "tokenizer.json")
print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB;", path.read_text()[:160], "...")
loaded = T.Tokenizer.load(path)
assert loaded == tok
assert loaded.encode(val["zh"]) == tok.encode(val["zh"])

# %% [markdown]
# ## In the wild: handing the tokenizer to `transformers`
# `save_pretrained` writes a folder that `transformers.AutoTokenizer` loads: a `tokenizer.json` for the Rust
# `tokenizers` library (our regex as a `Split` pre-tokenizer, then the byte-to-character map of GPT-2, our
# merges in order, our special tokens as added tokens with our ids) and a `tokenizer_config.json`. On
# held-out text in both languages with special tokens, both give the same ids:

# %%
from transformers import AutoTokenizer

tok.save_pretrained(workdir / "hf", eos_token="<|endoftext|>")
print(sorted(p.name for p in (workdir / "hf").iterdir()))
hf_tok = AutoTokenizer.from_pretrained(str(workdir / "hf"))
held_out = val["en"][:2000] + "<|endoftext|>" + val["zh"][:1000] + "<|user|>你好<|assistant|>🙂"
ours_ids = tok.encode(held_out, allowed_special="all")
theirs = hf_tok.encode(held_out, add_special_tokens=False)
print(type(hf_tok).__name__, "| first tokens:", hf_tok.convert_ids_to_tokens(theirs[:8]))
assert theirs == ours_ids and hf_tok.decode(theirs) == held_out
print(f"{len(ours_ids)} ids, identical ✓")

# %% [markdown]
# The tokens print as `Ġ...`: `Ġ` is how the byte-to-unicode map writes a space byte, so that every byte is a
# visible character in the JSON. DeepSeek's own tokenizers load the same way, on a machine with network
# access: `AutoTokenizer.from_pretrained("deepseek-ai/DeepSeek-V3")` gives a byte-level BPE tokenizer of
# about 128K tokens, whose vocabulary you can inspect with the same tools as ours.

# %% [markdown]
# ## A published vocabulary: GPT-2's
# The same class encodes with a real vocabulary. OpenAI publishes GPT-2's in `tiktoken`'s format: one line
# per token, its bytes in base64 and its **rank (排名)**, the order in which BPE learned it. There are no
# merges in the file, but they follow from the ranks: the token of rank r is what BPE builds from two
# tokens of smaller rank, so running BPE on its own bytes with the ranks below r leaves exactly that pair.
# `Tokenizer.from_tiktoken` does this for all 50,000 merged tokens. The one new fact: GPT-2 numbers its 256
# single bytes in the order of its byte-to-unicode map (`!` is id 0, a space id 220), so the tokenizer keeps
# a `byte_ids` table. The file ships with minids (`minids/sources/gpt2.tiktoken.xz`; its source, MIT licence
# and SHA-256 are in `minids/MANIFEST.json`), and `tests/test_tokenizer_tiktoken.py` checks that our ids
# equal `tiktoken`'s own encoder built from it, on English, code, numbers, whitespace, Chinese and emoji.
# Here we check the ids that `transformers` documents for GPT-2, read from its docstring:

# %%
import inspect

import minids.gpt2_vocab as gpt2_vocab
from transformers import GPT2Tokenizer

t0 = time.perf_counter()
gpt2 = T.Tokenizer.from_tiktoken(gpt2_vocab.VOCAB_XZ, GPT2_SPLIT_PATTERN, {"<|endoftext|>": gpt2_vocab.ENDOFTEXT_ID})
print(gpt2, f"built from {gpt2_vocab.VOCAB_XZ.name} in {time.perf_counter() - t0:.1f} s")
documented = re.findall(r'tokenizer\("([^"]*)"\)\["input_ids"\]\s*\n\s*\[([\d, ]+)\]', inspect.getdoc(GPT2Tokenizer))
for text, ids in documented:
    print(f"transformers' docs: {text!r} -> [{ids}]; ours: {gpt2.encode(text)}")
    assert gpt2.encode(text) == [int(i) for i in ids.split(",")]
assert documented and gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]
sentence = "Lily's dog ran 12345 meters!  莉莉的狗跑了12345米。🙂"
print([gpt2.id_to_piece(i) for i in gpt2.encode(sentence)])

# %% [markdown]
# How do 50,257 tokens learned from English web text compare with our 4,096 learned from these stories?
# Tokens for the same held-out text:

# %%
rows, n_tok = [], {}
for lang, text in val.items():
    sample = text[:20_000]
    n_bytes = len(sample.encode())
    n_tok[lang] = {"ours": len(tok.encode(sample)), "GPT-2": len(gpt2.encode(sample))}
    rows.append([lang, f"{n_bytes:,}", f"{n_tok[lang]['ours']:,} ({n_bytes / n_tok[lang]['ours']:.2f})",
                 f"{n_tok[lang]['GPT-2']:,} ({n_bytes / n_tok[lang]['GPT-2']:.2f})"])
table(["val text (first 20,000 characters)", "bytes", f"ours, {len(tok):,} tokens (bytes/token)",
       f"GPT-2, {len(gpt2):,} tokens (bytes/token)"], rows)
assert n_tok["zh"]["GPT-2"] > 2 * n_tok["zh"]["ours"]  # GPT-2 has few Chinese tokens

# %% [markdown]
# A vocabulary fits the text it was trained on. On the English stories, GPT-2's 50K tokens do no better than
# our 4K learned from these very stories. On Chinese, GPT-2 needs many times more tokens (fewer than two bytes
# a token, so most characters take two or three): it learned from English web pages and has few Chinese
# tokens. That is why a bilingual model such as DeepSeek's trains its tokenizer on multilingual data.

# %% [markdown]
# ## DeepSeek's pre-tokenizer, measured
# DeepSeek LLM {cite}`bi2024deepseek` changes two rules of the split: numbers are cut into single digits, and
# CJK text is kept apart from punctuation. DeepSeek-V3 publishes its split in its `tokenizer.json` as a chain
# of three splits (numbers in runs of up to three digits, then runs of CJK characters, then a GPT-4-like
# pattern on the rest). The package writes the chain as one pattern, `deepseek_pattern(digits)`, which the
# tests check against the chain as `tokenizers` runs it; `digits=1` is DeepSeek LLM's digit rule. Our stories
# hold almost no numbers, so we train each pattern on the same mix of stories and arithmetic problems
# (`minids`' reasoning data) and measure on held-out text:

# %%
from nanoseek.data.stories import minids_path
from nanoseek.tokenizer import DEEPSEEK_LLM_DIGITS_SPLIT_PATTERN, DEEPSEEK_V3_SPLIT_PATTERN, deepseek_pattern

nanoseek.show(deepseek_pattern)


def arithmetic_text(split: str) -> str:
    path = minids_path("reasoning", f"reasoning_arith4_{split}.jsonl", "tiny")
    return "\n".join(r["prompt"] + r["answer"] for r in map(json.loads, path.read_text().splitlines())) + "\n"


mix = speed_text + arithmetic_text("train")
held_num, held_zh = arithmetic_text("test"), val["zh"][:20_000]
PUNCT_ZH = "，。！？“”：；、"
pretok = {}
for name, pattern in [("GPT-4", GPT4_SPLIT_PATTERN), ("DeepSeek LLM (single digits)", DEEPSEEK_LLM_DIGITS_SPLIT_PATTERN),
                      ("DeepSeek-V3 (up to 3 digits)", DEEPSEEK_V3_SPLIT_PATTERN)]:
    t = T.train(mix, CFG["speed_vocab"] + 200, pattern=pattern)
    pieces = [t.vocab[new].decode("utf-8", "replace") for _, _, new in t.merges]
    pretok[name] = dict(
        multi_digit=sum(sum(c.isdigit() for c in p) > 1 for p in pieces),
        cjk_punct=sum(any(c in PUNCT_ZH for c in p) and any("\u4e00" <= c <= "\u9fff" for c in p) for p in pieces),
        num_bpt=len(held_num.encode()) / len(t.encode(held_num)), zh_bpt=len(held_zh.encode()) / len(t.encode(held_zh)),
        example=[t.id_to_piece(i) for i in t.encode("3141592")])
table(["pattern", "learned tokens with 2+ digits", "learned tokens joining Chinese and its punctuation",
       "bytes/token, held-out arithmetic", "bytes/token, held-out Chinese", "`3141592` →"],
      [[k, v["multi_digit"], v["cjk_punct"], f"{v['num_bpt']:.2f}", f"{v['zh_bpt']:.2f}", f"`{v['example']}`"]
       for k, v in pretok.items()])
assert pretok["DeepSeek LLM (single digits)"]["multi_digit"] == 0 < pretok["GPT-4"]["multi_digit"]
assert pretok["DeepSeek LLM (single digits)"]["cjk_punct"] == 0 < pretok["GPT-4"]["cjk_punct"]

# %% [markdown]
# The single-digit rule gives every number one token per digit: no learned token holds two digits, and
# arithmetic costs more tokens (fewer bytes per token), in exchange for tokens that line up with place value.
# Keeping CJK apart from punctuation frees the merges that the GPT-4 pattern spends on "character +
# punctuation" tokens. Whether either helps a model is a question for training, not for the tokenizer alone.
#
# ## Encoding a stream
# A corpus of many gigabytes does not fit in memory as one string. `encode_iterable` takes the text piece by
# piece (the lines of a file, say) and yields ids as soon as they are final: the last few pre-tokens wait for
# the next piece, because a run of spaces or letters may continue there. The ids are the same as encoding the
# whole text at once:

# %%
from nanoseek.tokenizer import encode_iterable

nanoseek.show(encode_iterable)
lines = val["zh"][:20_000].splitlines(keepends=True) + val["en"][:20_000].splitlines(keepends=True)
streamed = list(encode_iterable(tok, iter(lines)))
assert streamed == tok.encode_ordinary("".join(lines))
print(f"{len(lines):,} lines streamed → {len(streamed):,} ids, the same as encoding the whole text ✓")

# %% [markdown]
# ## Paper says / we measured
# What DeepSeek's papers say about their tokenizers, against what we built and measured here:

# %%
digit_chunks = split_text("3141592")
digits = [piece(i) for i in tok.encode("3141592")]
punct_cjk = sum(1 for b in learned if script(b) == "Chinese" and b.decode("utf-8", "ignore")[:1] in "，。！？“”：")
table(["", "paper", "ours (measured above)"], [
    ["algorithm", "byte-level BPE, trained with `tokenizers` (DeepSeek LLM)", "byte-level BPE; same merges as `tokenizers`"],
    ["vocabulary", "100,000 + 15 special (DeepSeek LLM); 128K (DeepSeek-V3)", f"{len(tok):,} incl. {len(SPECIALS)} special"],
    ["numbers", "split into single digits (DeepSeek LLM)", f"GPT-4 pattern (ours): chunks of up to 3 digits, `3141592` → "
     f"{digit_chunks} → tokens {digits}; with `deepseek_pattern(1)`: "
     f"{pretok['DeepSeek LLM (single digits)']['multi_digit']} learned tokens with 2+ digits (GPT-4 pattern: "
     f"{pretok['GPT-4']['multi_digit']})"],
    ["CJK and punctuation", "kept apart by the pre-tokenizer (DeepSeek LLM)",
     f"GPT-4 pattern (ours): {punct_cjk:,} learned tokens join CJK punctuation and Chinese, e.g. "
     f"`{piece(tok.encode('！蜡笔')[0])}`; with `deepseek_pattern`: "
     f"{pretok['DeepSeek LLM (single digits)']['cjk_punct']} in the mix above"],
    ["punctuation + line breaks", "combined tokens in V3's pre-tokenizer", "GPT-4 regex lets punctuation take line breaks: "
     + ", ".join(f"`{piece(i)}`" for i in tok.encode("The end.\n\n")[-1:])],
])
assert digit_chunks == ["314", "159", "2"] and len(digits) >= 3

# %% [markdown]
# The difference in size is scale: a 128K vocabulary serves trillions of tokens in many languages, while our
# small vocabulary already spends its last merges on whole phrases of these repetitive stories. DeepSeek LLM
# {cite}`bi2024deepseek` splits numbers into digits and keeps CJK apart from punctuation; our default GPT-4
# pattern does neither, and `deepseek_pattern` does both, as measured above. DeepSeek-V3 {cite}`deepseekv3` adds tokens that join punctuation with
# line breaks (like our `".\n\n"`) and notes the **token boundary bias (词元边界偏差)** {cite}`lundberg2023art`
# they cause for prompts that end without a line break, which it counters by randomly splitting a share of
# such tokens during training.
#
# ## Summary
# - UTF-8 bytes are a universal alphabet: 256 base tokens spell every string; Chinese costs 3 bytes a character.
# - BPE = count adjacent pairs inside pre-tokenized chunks, merge the most frequent, repeat; it is greedy, so a
#   smaller vocabulary is a prefix of a larger one.
# - Counting incrementally over unique chunks makes pure-Python training as fast as we need, with the same
#   merges as the `tokenizers` library.
# - Special tokens are atomic ids that text cannot produce unless allowed; tokenizers save as JSON and export to
#   `transformers` with identical ids.
# - Vocabulary size trades embedding rows for sequence length, and it changes Chinese much more than English.
#
# ## Exercises
# Edit each function, run its cell, and the checker tells you whether it is right. Solutions are hidden below
# each exercise.
#
# **Exercise 1 (easy).** One BPE merge step: replace every occurrence of `pair` in `ids` by `new_id`,
# scanning left to right (so `[5, 5, 5]` with pair `(5, 5)` becomes `[new_id, 5]`).

# %% tags=["exercise"]
from nanoseek.exercises.ch02 import check_merge


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    raise NotImplementedError  # your code here


check_merge(merge)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch02 import check_merge


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


assert check_merge(merge)

# %% [markdown]
# **Exercise 2 (easy).** The pair to merge next: count adjacent pairs *inside* each chunk (never across two
# chunks), and return the most frequent; break ties by the smallest `(tie_order(a), tie_order(b))`.

# %% tags=["exercise"]
from nanoseek.exercises.ch02 import check_most_frequent_pair
from nanoseek.tokenizer import tie_order


def most_frequent_pair(chunks: list[list[int]]) -> tuple[int, int]:
    raise NotImplementedError  # your code here


check_most_frequent_pair(most_frequent_pair)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch02 import check_most_frequent_pair
from nanoseek.tokenizer import tie_order


def most_frequent_pair(chunks: list[list[int]]) -> tuple[int, int]:
    counts: dict[tuple[int, int], int] = {}
    for ids in chunks:
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    return min(counts, key=lambda p: (-counts[p], tie_order(p[0]), tie_order(p[1])))


assert check_most_frequent_pair(most_frequent_pair)

# %% [markdown]
# **Exercise 3 (medium).** Encode with learned merges. Split the text with `split_text`, turn each chunk into
# its UTF-8 bytes, then repeatedly apply the merge that was *learned earliest* among the pairs present, until
# none applies. `merges` is a list of `(a, b, new_id)` in the order learned.

# %% tags=["exercise"]
from nanoseek.exercises.ch02 import check_encode
from nanoseek.tokenizer import split_text


def encode(text: str, merges: list[tuple[int, int, int]]) -> list[int]:
    raise NotImplementedError  # your code here


check_encode(encode)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch02 import check_encode
from nanoseek.tokenizer import merge_pair, split_text


def encode(text: str, merges: list[tuple[int, int, int]]) -> list[int]:
    rank = {}
    for r, (a, b, new_id) in enumerate(merges):
        rank.setdefault((a, b), (r, new_id))
    out = []
    for chunk in split_text(text):
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, (float("inf"),))[0])
            if pair not in rank:
                break
            ids = merge_pair(ids, pair, rank[pair][1])
        out.extend(ids)
    return out


assert check_encode(encode)

# %% [markdown]
# **Exercise 4 (harder).** A chat model prints its reply token by token. But a token can end in the middle of
# a UTF-8 character (a Chinese character is 3 bytes), and `tok.decode([id])` would then print `�`. Write
# `stream_decode(tok, ids)` that returns one string per id (possibly `""`) such that the pieces join to the
# full text and no piece contains `"\ufffd"`. Hint: `tok.decode_bytes([i])`, and keep the bytes that do not
# decode yet.

# %% tags=["exercise"]
from nanoseek.exercises.ch02 import check_stream_decode


def stream_decode(tok, ids: list[int]) -> list[str]:
    raise NotImplementedError  # your code here


check_stream_decode(stream_decode)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch02 import check_stream_decode


def stream_decode(tok, ids: list[int]) -> list[str]:
    pieces, pending = [], b""
    for i in ids:
        pending += tok.decode_bytes([i])
        try:
            pieces.append(pending.decode("utf-8"))
            pending = b""
        except UnicodeDecodeError:  # an incomplete character: wait for the next bytes
            pieces.append("")
    return pieces


assert check_stream_decode(stream_decode)

# %% [markdown]
# **Exercise 5 (hard: the core of the chapter).** Train BPE yourself. Split the text with `split_text`, turn
# each chunk into its UTF-8 bytes, then repeat until the vocabulary has `vocab_size` tokens: count the
# adjacent pairs inside every chunk (never across two), take the most frequent, breaking ties by
# `(tie_order(a), tie_order(b))` (smallest first), give it the next new id (256, 257, ...), replace it in every
# chunk (left to right), and record `(a, b, new_id)`. Stop early if no pair is left. The checker compares your
# merges with the package's trainer, which learns the same merges as Hugging Face `tokenizers`.

# %% tags=["exercise"]
from nanoseek.exercises.ch02 import check_train_bpe
from nanoseek.tokenizer import split_text, tie_order


def train_bpe(text: str, vocab_size: int) -> list[tuple[int, int, int]]:
    raise NotImplementedError  # your code here


check_train_bpe(train_bpe)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch02 import check_train_bpe
from nanoseek.tokenizer import split_text, tie_order


def train_bpe(text: str, vocab_size: int) -> list[tuple[int, int, int]]:
    chunks = [list(chunk.encode("utf-8")) for chunk in split_text(text)]
    merges = []
    for new_id in range(256, vocab_size):
        counts: dict[tuple[int, int], int] = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], tie_order(p[0]), tie_order(p[1])))
        merged = []
        for ids in chunks:
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            merged.append(out)
        chunks = merged
        merges.append((pair[0], pair[1], new_id))
    return merges


assert check_train_bpe(train_bpe)

# %% [markdown]
# ## Further reading
# - BPE as compression {cite}`gage1994new`, and as subword units for translation {cite}`sennrich2016neural`.
# - Byte-level BPE: GPT-2 {cite}`radford2019language` and {cite}`wang2020neural`.
# - DeepSeek's tokenizers: DeepSeek LLM {cite}`bi2024deepseek`, DeepSeek-V3 {cite}`deepseekv3`; token
#   boundaries and token healing {cite}`lundberg2023art`.
# - A minimal BPE to read next to this chapter: Karpathy's minbpe {cite}`karpathy2024minbpe`.
