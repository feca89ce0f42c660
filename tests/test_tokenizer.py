"""Tests of nanoseek.tokenizer (chapter 2): round trip, the incremental trainer against a naive one, special
tokens, errors, save/load, and parity with Hugging Face tokenizers / transformers."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanoseek.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    Tokenizer,
    count_pairs,
    merge_pair,
    split_text,
    tie_order,
    train,
)

EOT = "<|endoftext|>"
USER = "<|user|>"

CORPUS = (
    "Once upon a time, Lily found a red ball in the park. She was very happy! "
    "\"Can I play?\" asked Tom. They played until 12:30, then went home.\n\n"
    "从前，小明在公园里找到了一个红色的球。他非常高兴！\u201c我可以一起玩吗？\u201d小红问。"
    "他们一起玩到十二点半，然后回家了。\n\n"
) * 8 + "It's 2024; I'll say we've 3,141,592 reasons... 🙂👍🏽 café naïve e\u0301 ক্ষ\n"

HELD_OUT = (
    "Tom and Lily saw a big dog. The dog's name was Max; it ran 1234 meters!\n"
    "小狗叫麦克斯，跑了一千二百三十四米。 Mixed 中英 text, emoji 🐶🎉, tabs\tand   spaces.\r\n"
    f"{EOT}A new story begins.{USER}你好{EOT}"
)

# strings without lone surrogates, with emphasis on the hard parts: emoji (incl. ZWJ and skin tones),
# combining marks, CJK, whitespace runs, digits and punctuation
_hard = st.sampled_from(
    list("aZ 09'\n\r\t.,!?，。！？“”") + ["🙂", "👍🏽", "👨\u200d👩\u200d👧", "e\u0301", "\u0301", "ক্ষ", "中", "文", "  ", "\u00a0"]
)
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=60),
    st.lists(_hard, max_size=30).map("".join),
)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train(CORPUS, 400, special_tokens=[EOT, USER])


# ------------------------------------------------------------------ the building blocks
def test_split_text_keeps_everything_and_splits_like_gpt4():
    assert split_text("Hello world's 12345 ab!!\n\n") == ["Hello", " world", "'s", " ", "123", "45", " ab", "!!\n\n"]
    assert split_text("他们说，你好！") == ["他们说", "，你好", "！"]
    assert split_text("hi there", r"\w+") == ["hi", " ", "there"]  # gaps between matches are kept


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_split_text_is_lossless(s):
    assert "".join(split_text(s)) == s
    assert "".join(split_text(s, GPT2_SPLIT_PATTERN)) == s


def test_count_and_merge_pair():
    ids = [1, 2, 1, 2, 2, 2]
    assert count_pairs(ids) == {(1, 2): 2, (2, 1): 1, (2, 2): 2}
    assert merge_pair(ids, (1, 2), 9) == [9, 9, 2, 2]
    assert merge_pair([5, 5, 5], (5, 5), 7) == [7, 5]  # left to right, no overlaps


def _naive_train(text: str, vocab_size: int) -> list[tuple[int, int, int]]:
    """BPE as the chapter builds it first: recount every pair before every merge."""
    chunks = [list(c.encode("utf-8")) for c in split_text(text)]
    vocab = {i: bytes([i]) for i in range(256)}
    ids_of = {v: k for k, v in vocab.items()}
    merges = []
    while len(vocab) < vocab_size:
        counts: dict = {}
        for c in chunks:
            count_pairs(c, counts)
        if not counts:
            break
        a, b = min(counts, key=lambda p: (-counts[p], tie_order(p[0]), tie_order(p[1])))
        token = vocab[a] + vocab[b]
        new = ids_of.setdefault(token, len(vocab))
        vocab[new] = token
        merges.append((a, b, new))
        chunks = [merge_pair(c, (a, b), new) for c in chunks]
    return merges


@given(st.text(st.sampled_from(list("ab c\n") + ["ä", "中"]), max_size=80), st.integers(256, 300))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_incremental_trainer_equals_naive_recount(text, vocab_size):
    """Overlaps ("aaa"), repeated pairs ("abab"), two merges spelling the same bytes: all exercised here."""
    assert train(text, vocab_size).merges == _naive_train(text, vocab_size)


def test_incremental_trainer_equals_naive_on_corpus():
    assert train(CORPUS, 400).merges == _naive_train(CORPUS, 400)


def _naive_encode(tok: Tokenizer, text: str) -> list[int]:
    out = []
    for chunk in split_text(text, tok.pattern):
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: tok.ranks.get(p, (float("inf"),))[0])
            if pair not in tok.ranks:
                break
            ids = merge_pair(ids, pair, tok.ranks[pair][1])
        out.extend(ids)
    return out


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_fast_encode_equals_naive_encode(tok, s):
    assert tok.encode(s) == _naive_encode(tok, s)


# ------------------------------------------------------------------ round trip
@given(TEXT)
@settings(max_examples=300, deadline=None)
def test_roundtrip(tok, s):
    ids = tok.encode(s)
    assert all(0 <= i < len(tok) for i in ids)
    assert tok.decode(ids) == s
    assert tok.decode(tok.encode(s, allowed_special="all")) == s


@given(st.text(min_size=1, max_size=20), st.integers(0, 20))
@settings(max_examples=100, deadline=None)
def test_lone_surrogates_raise_valueerror(tok, s, where):
    where = min(where, len(s))
    bad = s[:where] + "\udc80" + s[where:]
    with pytest.raises(ValueError, match="U\\+DC80"):
        tok.encode(bad)
    with pytest.raises(ValueError, match="surrogate"):
        train(bad, 260)


def test_compresses_and_learns_sensible_tokens(tok):
    ids = tok.encode(CORPUS)
    assert len(ids) < 0.4 * len(CORPUS.encode())  # 400 tokens on a repetitive text: well under 0.4 per byte
    pieces = {tok.id_to_piece(i) for i in range(256, len(tok.vocab))}
    assert " the" in pieces and "一起" in pieces
    assert len(tok) == 400 and tok.vocab_size == 400


def test_decode_partial_utf8_uses_replacement_char(tok):
    ids = list("中".encode())  # three single-byte tokens
    assert tok.decode(ids[:2]) == "\ufffd"
    assert tok.decode_bytes(ids[:2]) == "中".encode()[:2]
    with pytest.raises(UnicodeDecodeError):
        tok.decode(ids[:2], errors="strict")


# ------------------------------------------------------------------ special tokens
def test_special_tokens_ids_and_atomicity(tok):
    eot, user = tok.special_id(EOT), tok.special_id(USER)
    assert (eot, user) == (398, 399)  # after bytes and merges
    text = f"Hi{EOT}{USER}there{EOT}"
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(eot) == 2 and ids.count(user) == 1
    assert ids == tok.encode("Hi") + [eot, user] + tok.encode("there") + [eot]
    assert tok.decode(ids) == text
    # by default their text is just text: no special id appears
    plain = tok.encode(text)
    assert eot not in plain and user not in plain and tok.decode(plain) == text
    # allow only some
    some = tok.encode(text, allowed_special={USER})
    assert eot not in some and some.count(user) == 1 and tok.decode(some) == text


def test_special_tokens_are_not_learned_from():
    text = (f"ab{EOT}" * 50) + "xy" * 3
    t = train(text, 300, special_tokens=[EOT])
    for a, b, new in t.merges:
        assert b"<|" not in t.vocab[new] and b"|>" not in t.vocab[new]
    assert t.encode(EOT * 3, allowed_special="all") == [t.special_id(EOT)] * 3


def test_overlapping_special_tokens_longest_wins():
    t = Tokenizer(special_tokens={"<|a|>": 256, "<|a|>x": 257})
    assert t.encode("<|a|>x<|a|>", allowed_special="all") == [257, 256]


def test_unknown_special_token_keyerror_names_it(tok):
    with pytest.raises(KeyError, match="<\\|nope\\|>"):
        tok.special_id("<|nope|>")
    with pytest.raises(KeyError, match="<\\|nope\\|>"):
        tok.encode("hi", allowed_special={"<|nope|>", EOT})
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("hi", allowed_special="some")


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad", [b"bytes", 3, None, ["a list"], 1.5])
def test_encode_non_str_typeerror(tok, bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        tok.encode(bad)


def test_train_and_decode_errors(tok):
    with pytest.raises(TypeError):
        train(b"bytes", 300)
    with pytest.raises(TypeError, match="int"):
        train(["ok", 7], 300)
    with pytest.raises(ValueError, match="vocab_size=100"):
        train("abc", 100)
    with pytest.raises(ValueError, match="vocab_size=256"):
        train("abc", 256, special_tokens=[EOT])
    with pytest.raises(ValueError, match="99999"):
        tok.decode([1, 99999])
    with pytest.raises(TypeError, match="str"):
        tok.decode(["a"])
    with pytest.raises(TypeError):
        tok.decode("abc")


def test_train_on_documents_and_running_out_of_pairs():
    t = train(["aaaa", "bbbb"], 1000)
    assert len(t) < 1000  # nothing left to merge
    assert t.decode(t.encode("aaaabbbb")) == "aaaabbbb"
    docs = train(["ab", "cd"], 300)  # chunks never cross documents: only "ab" and "cd" can merge
    assert [docs.vocab[new] for _, _, new in docs.merges] == [b"ab", b"cd"]
    assert len(train("abcd", 300).merges) == 3


# ------------------------------------------------------------------ files
def test_save_load_roundtrip(tok, tmp_path):
    path = tok.save(tmp_path / "tok.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "nanoseek-bpe" and data["pattern"] == GPT4_SPLIT_PATTERN
    back = Tokenizer.load(path)
    assert back == tok and back.vocab == tok.vocab and back.special_tokens == tok.special_tokens
    assert back.encode(HELD_OUT, allowed_special="all") == tok.encode(HELD_OUT, allowed_special="all")


def test_load_rejects_bad_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="something-else"):
        Tokenizer.load(p)
    with pytest.raises(ValueError, match="merge #0"):
        Tokenizer([(300, 1, 256)])
    with pytest.raises(ValueError, match="already taken"):
        Tokenizer(special_tokens={"<a>": 5})


# ------------------------------------------------------------------ Hugging Face
def _hf_trainer_merges(text: str, vocab_size: int, specials: list[str]) -> list[tuple[str, str]]:
    from tokenizers import Regex, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([text], trainer)
    merges = json.loads(hf.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def test_same_merges_as_tokenizers_trainer(tok):
    from nanoseek.tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    piece = lambda i: "".join(b2u[b] for b in tok.vocab[i])  # noqa: E731
    ours = [(piece(a), piece(b)) for a, b, _ in tok.merges]
    assert ours == _hf_trainer_merges(CORPUS, 400, [EOT, USER])


def test_export_to_transformers_same_ids(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path / "hf", eos_token=EOT)
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert hf.eos_token == EOT and hf.eos_token_id == tok.special_id(EOT)
    assert len(hf) == len(tok)
    for text in [HELD_OUT, CORPUS, "", " ", "\n\n\n", "🙂👍🏽", "e\u0301 ক্ষ 中文"]:
        ours = tok.encode(text, allowed_special="all")
        assert hf.encode(text, add_special_tokens=False) == ours, text
        assert hf.decode(ours) == text
    assert Tokenizer.load(tmp_path / "hf" / "nanoseek_tokenizer.json") == tok
    with pytest.raises(KeyError, match="<\\|bos\\|>"):
        tok.save_pretrained(tmp_path / "bad", bos_token="<|bos|>")


@given(TEXT)
@settings(max_examples=150, deadline=None)
def test_tokenizers_parity_property(tok, s):
    hf = _hf(tok)
    assert hf.encode(s, add_special_tokens=False).ids == tok.encode(s, allowed_special="all")


_HF_CACHE: dict = {}


def _hf(tok: Tokenizer):
    if id(tok) not in _HF_CACHE:
        _HF_CACHE[id(tok)] = tok.to_tokenizers()
    return _HF_CACHE[id(tok)]
