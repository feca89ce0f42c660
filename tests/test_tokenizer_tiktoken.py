"""GPT-2's published vocabulary through `Tokenizer.from_tiktoken`: same ids as tiktoken, published ids, and
clear errors on malformed files. (Chapter 2.) Offline: the vocabulary is the committed minids copy."""
from __future__ import annotations

import base64
import hashlib
import inspect
import lzma
import random
import re

import pytest

import minids.gpt2_vocab as G
from nanoseek.tokenizer import GPT2_SPLIT_PATTERN, Tokenizer, read_tiktoken_ranks

tiktoken = pytest.importorskip("tiktoken")
import tiktoken.load  # noqa: E402

VARIED = [
    "Hello world",
    " Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "It's, I'm, you're, they've, we'll, she'd, DON'T, I'M, o'clock 'tis",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "if (a[i] != b[j]) { printf(\"%d\\n\", a[i]); }",
    "3.14159 1234567890 1,000,000 2024-12-02 0x1F 1e-9 +44 (0)20",
    "   leading spaces, trailing spaces   ",
    "tabs\t\tand\n\n\nnewlines\r\n  \n \t \n",
    "我们一起玩吧！他们玩了12345次。中文测试，你好，世界。",
    "日本語のテキスト、한국어 텍스트, Ελληνικά, русский текст, العربية",
    "emoji 🙂👍🏽 🇨🇳 👨‍👩‍👧‍👦 ✨ and combining e\u0301 \u00e9",
    "<|endoftext|> is only text here",
    "",
    " ",
    "a",
]


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_tiktoken(G.VOCAB_XZ, GPT2_SPLIT_PATTERN, {"<|endoftext|>": G.ENDOFTEXT_ID})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """tiktoken's own Encoding, built from the committed file (never `get_encoding`, which downloads)."""
    path = tmp_path_factory.mktemp("gpt2") / "gpt2.tiktoken"
    path.write_bytes(G.read_bytes())
    import os

    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local file, write no cache
    try:
        ranks = tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=G.SHA256)
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR")
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": G.ENDOFTEXT_ID})


def test_vendored_file_is_tiktokens_r50k_base():
    data = G.read_bytes()
    assert hashlib.sha256(data).hexdigest() == G.SHA256
    import tiktoken_ext.openai_public as pub

    assert G.SHA256 in inspect.getsource(pub.r50k_base)  # the hash tiktoken pins for GPT-2's encoding
    assert len(data.splitlines()) == G.N_RANKS


def test_same_ids_as_tiktoken_on_varied_text(gpt2, reference):
    assert gpt2.vocab_size == reference.n_vocab == 50257
    for text in VARIED:
        assert gpt2.encode_ordinary(text) == reference.encode_ordinary(text), text
        assert gpt2.decode(gpt2.encode_ordinary(text)) == text


def test_same_ids_as_tiktoken_on_random_strings(gpt2, reference):
    rng = random.Random(0)
    alphabet = (list("abcXYZ019 '\n\t.,!?-_") + ["  ", "   ", "'s", "'ll", "中", "文", "🙂", "é", "\u0301", "ß", "ﬁ",
                                                  "\u00a0", "\u3000", "😀", "\r\n"])
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        assert gpt2.encode_ordinary(text) == reference.encode_ordinary(text), repr(text)


def test_same_ids_on_the_book_corpora(gpt2, reference):
    from nanoseek.data import load_shakespeare, load_stories

    for text in (load_stories("en", "val")[:60_000], load_stories("zh", "val")[:20_000],
                 load_shakespeare("val")[:60_000]):
        assert gpt2.encode_ordinary(text) == reference.encode_ordinary(text)


def test_special_token_and_published_ids(gpt2, reference):
    assert gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert reference.encode("Hi<|endoftext|>", allowed_special="all") == gpt2.encode("Hi<|endoftext|>", allowed_special="all")
    assert gpt2.encode("<|endoftext|>") != [50256]  # by default its text is plain bytes
    # the ids that transformers' GPT2Tokenizer documents in its docstring (tokenizer("Hello world") -> ...)
    from transformers import GPT2Tokenizer

    doc = inspect.getdoc(GPT2Tokenizer)
    published = re.findall(r'tokenizer\("([^"]*)"\)\["input_ids"\]\s*\n\s*\[([\d, ]+)\]', doc)
    assert len(published) >= 2, doc[:300]
    for text, ids in published:
        assert gpt2.encode(text) == [int(i) for i in ids.split(",")], text
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.id_to_piece(50256) == "<|endoftext|>" and gpt2.decode([198]) == "\n"


def test_save_load_keeps_the_byte_ids(gpt2, tmp_path):
    back = Tokenizer.load(gpt2.save(tmp_path / "gpt2.json"))
    assert back == gpt2 and back.byte_ids == gpt2.byte_ids
    assert back.encode("Hello world! 中文 🙂") == gpt2.encode("Hello world! 中文 🙂")


def test_matches_transformers_export(gpt2):
    fast = gpt2.to_tokenizers()
    for text in VARIED:
        assert fast.encode(text).ids == gpt2.encode(text, allowed_special="all"), text


def _write(tmp_path, lines: list[bytes], name: str = "v.tiktoken"):
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _bytes_lines() -> list[bytes]:
    return [base64.b64encode(bytes([b])) + b" " + str(b).encode() for b in range(256)]


def test_a_small_valid_file_loads(tmp_path):
    lines = _bytes_lines() + [base64.b64encode(b"ab") + b" 256", base64.b64encode(b"abc") + b" 257"]
    tok = Tokenizer.from_tiktoken(_write(tmp_path, lines))
    assert tok.encode("abc") == [257] and tok.encode("abd") == [256, ord("d")]
    packed = tmp_path / "v.tiktoken.xz"
    packed.write_bytes(lzma.compress(_write(tmp_path, lines).read_bytes()))
    assert Tokenizer.from_tiktoken(packed) == tok


@pytest.mark.parametrize("bad, message", [
    (lambda L: L[:10] + [b"not-a-line-with-three fields x"] + L[10:], "line 11: expected 'base64-token rank'"),
    (lambda L: L + [b"@@@@ 256"], "is not base64"),
    (lambda L: L + [base64.b64encode(b"ab") + b" two"], "rank 'two' is not a non-negative integer"),
    (lambda L: L + [base64.b64encode(b"ab") + b" 300"], "rank 256 is missing"),
    (lambda L: L + [base64.b64encode(b"ab") + b" 255"], "rank 255 appears twice"),
    (lambda L: L + [base64.b64encode(b"a") + b" 256"], "appears twice"),
    (lambda L: L[:255] + [base64.b64encode(b"ab") + b" 255", base64.b64encode(b"\xff") + b" 256"],
     "ranks 0..255 must be the 256 single bytes"),
    (lambda L: L + [base64.b64encode(b"abc") + b" 256"], "not a merge of two tokens"),
    (lambda L: [], "no ranks found"),
])
def test_malformed_files_raise_a_clear_error(tmp_path, bad, message):
    path = _write(tmp_path, bad(_bytes_lines()))
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        Tokenizer.from_tiktoken(path)
    assert str(path) in str(err.value)


def test_bad_xz_and_bad_dict(tmp_path):
    path = tmp_path / "broken.tiktoken.xz"
    path.write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match="not a valid .xz file"):
        read_tiktoken_ranks(path)
    with pytest.raises(ValueError, match="keys must be bytes"):
        read_tiktoken_ranks({"a": 0})
    with pytest.raises(ValueError, match="byte_ids must be a permutation"):
        Tokenizer(byte_ids=[0] * 256)


def test_trained_tokenizers_keep_byte_value_ids():
    tok = Tokenizer.train("hello hello world", 260)
    assert tok.byte_ids is None and "byte_ids" not in tok.to_dict()
    assert all(tok.vocab[i] == bytes([i]) for i in range(256))
