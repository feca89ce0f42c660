"""Byte-level BPE: train, encode, decode, special tokens, save/load, and export to transformers. (Chapter 2.)

The tokenizer every later chapter uses. Text is turned into UTF-8 bytes, so the 256 byte values are the
first 256 token ids and *every* string can be encoded (no unknown token). A GPT-4-style regular expression
first splits the text into chunks ("pre-tokens": words with their leading space, runs of digits,
punctuation, whitespace); byte-pair encoding (BPE) then learns merges inside chunks only, never across them.

Conventions (each one is checked in ``tests/test_tokenizer.py``):

- **Ids.** ``0..255`` are the single bytes (id == byte value), ``256..`` the merged tokens in the order they
  were learned, and the special tokens come last. ``vocab_size`` given to :meth:`Tokenizer.train` counts all
  three, as the ``tokenizers`` library does.
- **Ties.** When two pairs are equally frequent, training picks the one that the Hugging Face ``tokenizers``
  BPE trainer picks (smaller pair in *its* id order, where single bytes are ordered by their printable
  GPT-2 byte-to-unicode character). Our trainer therefore learns the same merges as ``tokenizers`` on the
  same text; the benchmark and the tests check it.
- **Duplicate strings.** Two different merges can spell the same bytes (``ab+c`` and ``a+bc``). As in
  ``tokenizers``, the second merge reuses the first one's id instead of creating a new token.
- **Special tokens** (``<|endoftext|>``, chat roles, ...) are atomic: never split, never merged, never
  learned from. :meth:`Tokenizer.encode` turns their text into their id only when allowed
  (``allowed_special="all"`` or a set of names); by default (``"none"``) their text is encoded as ordinary
  bytes, so user text cannot smuggle in a control token. Asking for a special token that does not exist
  raises ``KeyError`` naming it.
- **Lone surrogates.** A Python ``str`` may hold lone surrogates (``"\\ud800"``) that have no UTF-8 form.
  Our policy is an explicit error: ``encode`` and ``train`` raise ``ValueError`` naming the code point and
  its position. (Replacing them silently would break ``decode(encode(s)) == s``.) Everything else
  round-trips exactly: ``decode(encode(s)) == s`` for every string without lone surrogates.
- **Decoding** arbitrary ids can cut a UTF-8 character in half; ``decode`` then writes U+FFFD as
  ``bytes.decode(errors="replace")`` (and the ``tokenizers`` ByteLevel decoder) do. Use :meth:`decode_bytes`
  for the raw bytes.
- **Files.** :meth:`save`/:meth:`load` use JSON (no pickle). :meth:`save_pretrained` writes a folder that
  ``transformers.AutoTokenizer.from_pretrained`` loads and that gives the same ids as :meth:`encode` with
  ``allowed_special="all"``. :meth:`Tokenizer.from_tiktoken` reads a published vocabulary in tiktoken's format
  (GPT-2's ships with minids) and gives its ids, checked against ``tiktoken`` in ``tests/test_tokenizer_tiktoken.py``;
  such a vocabulary may number its 256 bytes differently (``byte_ids``).
"""
from __future__ import annotations

import heapq
import json
import os
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, Union

import regex

# The split pattern of OpenAI's cl100k_base (GPT-4): contractions, letter runs with one optional leading
# non-letter (" the", "，他们"), up to three digits, punctuation runs, newlines, other whitespace.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
# GPT-2's pattern, kept for comparison in the chapter.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# DeepSeek-V3's pre-tokenizer (its tokenizer.json) is a chain of three isolating splits: numbers in runs of up to
# three digits, then runs of CJK ideographs and kana, then a GPT-4-like regex on what is left. `deepseek_pattern`
# writes the chain as one regex for `split_text` and `Tokenizer(pattern=...)`: numbers and CJK runs first, the
# letter classes without CJK, and whitespace lookaheads that stop at a digit or a CJK character (the chain's
# later splits never see across those). `digits=1` is DeepSeek LLM's rule, every digit on its own.
# (Chapter 2; `tests/test_tokenizer_deepseek.py` checks it against the chain run by `tokenizers`.)
_CJK = "\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff"


def deepseek_pattern(digits: int = 3) -> str:
    """DeepSeek's pre-tokenizer as one split pattern: ``digits=3`` DeepSeek-V3, ``digits=1`` DeepSeek LLM's
    single digits."""
    if digits not in (1, 3):
        raise ValueError(f"digits={digits!r}: DeepSeek-V3 groups up to 3 digits, DeepSeek LLM 1")
    num = r"\p{N}{1,3}" if digits == 3 else r"\p{N}"
    letter = rf"[[\p{{L}}\p{{M}}]--[{_CJK}]]"
    stop = rf"(?![^\s\p{{N}}{_CJK}])"  # "not followed by a non-space" inside one piece of the chain
    return (rf"(?V1){num}|[{_CJK}]+|[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{{|}}~][A-Za-z]+"
            rf"|[^\r\n\p{{L}}\p{{P}}\p{{S}}\p{{N}}]?{letter}+| ?[\p{{P}}\p{{S}}]+[\r\n]*|\s*[\r\n]+"
            rf"|\s+{stop}|\s+")


DEEPSEEK_V3_SPLIT_PATTERN = deepseek_pattern(3)
DEEPSEEK_LLM_DIGITS_SPLIT_PATTERN = deepseek_pattern(1)

FORMAT = "nanoseek-bpe"
FORMAT_VERSION = 1

AllowedSpecial = Union[Literal["all", "none"], Collection[str]]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to 256 printable characters (used by ``tokenizers``' ByteLevel).

    Printable Latin-1 bytes map to themselves; the other 68 (control characters, space, ...) map to
    ``chr(256 + n)`` in order, so a space byte becomes ``"Ġ"`` and a newline ``"Ċ"``.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_UNICODE = bytes_to_unicode()
# The id `tokenizers`' BPE trainer gives a single byte: its position among the 256 characters above, sorted.
_HF_BYTE_ORDER = {b: rank for rank, (_, b) in enumerate(sorted((ord(c), b) for b, c in _BYTE_TO_UNICODE.items()))}


def tie_order(token_id: int) -> int:
    """The order in which training breaks ties between equally frequent pairs (smaller first).

    Merged tokens (ids >= 256) keep their id; single bytes are ranked as ``tokenizers`` numbers them, by
    their GPT-2 printable character. A pair ``(a, b)`` is ranked by ``(tie_order(a), tie_order(b))``.
    """
    return _HF_BYTE_ORDER[token_id] if token_id < 256 else token_id


def _check_text(text: object, what: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}: {text!r:.60}")
    return text


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`; lone surrogates raise ValueError naming the code point and its position."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        raise ValueError(
            f"lone surrogate U+{ord(bad):04X} at position {err.start} has no UTF-8 encoding; "
            "nanoseek's tokenizer rejects it (clean the text, e.g. with "
            "s.encode('utf-8', 'replace').decode())"
        ) from None


def split_text(text: str, pattern: str = GPT4_SPLIT_PATTERN) -> list[str]:
    """Pre-tokenize: the regex matches, plus any text between matches as its own chunk (nothing is lost).

    ``"".join(split_text(s)) == s`` always holds, whatever the pattern.
    """
    return list(iter_chunks(text, pattern))


def iter_chunks(text: str, pattern: str = GPT4_SPLIT_PATTERN) -> Iterator[str]:
    """The chunks of :func:`split_text`, one at a time (no list of a whole corpus in memory)."""
    end = 0
    for m in _compiled(pattern).finditer(text):
        if m.start() > end:
            yield text[end : m.start()]
        if m.end() > m.start():
            yield m.group()
        end = m.end()
    if end < len(text):
        yield text[end:]


_PATTERNS: dict[str, regex.Pattern] = {}


def _compiled(pattern: str) -> regex.Pattern:
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = regex.compile(pattern)
    return _PATTERNS[pattern]


def count_pairs(ids: Sequence[int], counts: dict | None = None, weight: int = 1) -> dict[tuple[int, int], int]:
    """Add ``weight`` to ``counts[(a, b)]`` for every adjacent pair in ``ids`` (overlaps counted)."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right."""
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _learn_merges(
    chunk_counts: dict[str, int], n_tokens: int, progress: bool = False
) -> tuple[list[tuple[int, int, int]], dict[int, bytes]]:
    """The BPE trainer: merges until the vocabulary (bytes + merged tokens) has ``n_tokens`` entries.

    Incremental: pair counts are kept over the *unique* chunks weighted by their frequency; an index maps
    each pair to the chunks that (may) contain it; a merge rewrites only those chunks and adjusts the counts
    of the pairs around each occurrence; a heap with lazy deletion finds the most frequent pair.
    """
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        f = freqs[i]
        for pair in zip(word, word[1:]):
            pair_counts[pair] += f
            where[pair].add(i)
    order = {b: _HF_BYTE_ORDER[b] for b in range(256)}  # tie_order, grown as tokens are made
    heap = [(-c, order[a], order[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    vocab = {i: bytes([i]) for i in range(256)}
    ids_of = {v: k for k, v in vocab.items()}
    merges: list[tuple[int, int, int]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(0, n_tokens - len(vocab)), desc="BPE merges")
    while len(vocab) < n_tokens and heap:
        neg, _, _, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count != -neg:  # a stale entry: put it back with its true count
            if count > 0:
                heapq.heappush(heap, (-count, order[a], order[b], a, b))
            continue
        token = vocab[a] + vocab[b]
        new = ids_of.get(token)
        if new is None:
            new = len(vocab)
            vocab[new], ids_of[token] = token, new
            order[new] = new
            if bar is not None:
                bar.update(1)
        merges.append((a, b, new))
        grown: set[tuple[int, int]] = set()
        for w in where.pop((a, b), ()):
            word = words[w]
            n = len(word)
            if n < 2:
                continue
            f = freqs[w]
            out: list[int] = []
            i = 0
            while i < n:
                if i + 1 < n and word[i] == a and word[i + 1] == b:
                    if out:  # (prev, a) becomes (prev, new)
                        prev = out[-1]
                        pair_counts[(prev, a)] -= f
                        p = (prev, new)
                        pair_counts[p] += f
                        where[p].add(w)
                        grown.add(p)
                    if i + 2 < n:  # (b, next) becomes (new, next)
                        nxt = word[i + 2]
                        pair_counts[(b, nxt)] -= f
                        p = (new, nxt)
                        pair_counts[p] += f
                        where[p].add(w)
                        grown.add(p)
                    pair_counts[(a, b)] -= f
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[w] = out
        for p in grown:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, order[p[0]], order[p[1]], p[0], p[1]))
    if bar is not None:
        bar.close()
    return merges, vocab


class Tokenizer:
    """A trained byte-level BPE tokenizer. Build one with :meth:`train` or :meth:`load`.

    ``merges`` is the list of ``(a, b, new_id)`` in the order learned; ``special_tokens`` maps each special
    token's text to its id.
    """

    def __init__(
        self,
        merges: Sequence[Sequence[int]] = (),
        special_tokens: dict[str, int] | None = None,
        pattern: str = GPT4_SPLIT_PATTERN,
        byte_ids: Sequence[int] | None = None,
    ):
        self.pattern = _check_text(pattern, "pattern")
        self._split = _compiled(pattern)
        # byte_ids[b] is the id of the single byte b. Ours are the byte values (None); a published vocabulary
        # may number its 256 bytes differently (GPT-2 gives "!" id 0), see `from_tiktoken`.
        self.byte_ids: tuple[int, ...] | None = None
        self._byte_table: bytes | None = None
        if byte_ids is not None:
            ids = list(byte_ids) if isinstance(byte_ids, (list, tuple, range)) else None
            if ids is None or len(ids) != 256 or any(isinstance(i, bool) or not isinstance(i, int) for i in ids) \
                    or sorted(ids) != list(range(256)):
                raise ValueError(f"byte_ids must be a permutation of 0..255 (the id of each byte), got {byte_ids!r:.80}")
            if ids != list(range(256)):
                self.byte_ids = tuple(ids)
                self._byte_table = bytes(ids)  # bytes.translate maps each byte to its id in one C call
        self.merges: list[tuple[int, int, int]] = []
        self.vocab: dict[int, bytes] = {(self.byte_ids[i] if self.byte_ids else i): bytes([i]) for i in range(256)}
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}  # (a, b) -> (rank, new_id); first one wins
        for rank, merge in enumerate(merges):
            if len(merge) != 3:
                raise ValueError(f"merge #{rank} must be (a, b, new_id), got {merge!r}")
            a, b, new = (int(x) for x in merge)
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"merge #{rank} {(a, b, new)} uses an id that no earlier merge made")
            token = self.vocab[a] + self.vocab[b]
            if new in self.vocab and self.vocab[new] != token:
                raise ValueError(f"merge #{rank} {(a, b, new)}: id {new} already spells {self.vocab[new]!r}")
            if new not in self.vocab and new != len(self.vocab):
                raise ValueError(f"merge #{rank} {(a, b, new)}: the next new id must be {len(self.vocab)}")
            self.vocab[new] = token
            self.merges.append((a, b, new))
            self.ranks.setdefault((a, b), (rank, new))
        self.special_tokens: dict[str, int] = {}
        special_tokens = {} if special_tokens is None else special_tokens
        if not isinstance(special_tokens, dict):
            raise ValueError(f"special_tokens must map each special token's text to its id, got a "
                             f"{type(special_tokens).__name__}: {special_tokens!r:.60}")
        for text, idx in special_tokens.items():
            _check_text(text, "special token")
            if not text:
                raise ValueError("a special token cannot be the empty string")
            if isinstance(idx, bool) or not isinstance(idx, int):  # "256", 256.0, True are not ids
                raise ValueError(f"special token {text!r} has id {idx!r} ({type(idx).__name__}); ids are ints")
            if idx in self.vocab or idx in self.special_tokens.values():
                raise ValueError(f"special token {text!r} has id {idx}, which is already taken")
            self.special_tokens[text] = int(idx)
        # special ids follow the merged tokens without a gap, so ids run 0..len(self) - 1 and decode(encode(s))
        # holds; a gap means a truncated merges list or a hand-edited file
        want = range(len(self.vocab), len(self.vocab) + len(self.special_tokens))
        if sorted(self.special_tokens.values()) != list(want):
            bad = {t: i for t, i in self.special_tokens.items() if i not in want}
            raise ValueError(
                f"special token ids must be {want.start}..{want.stop - 1} (right after the 256 bytes and "
                f"{len(self.merges)} merges), got {bad}; is the merges list truncated?")
        self.inverse_special = {v: k for k, v in self.special_tokens.items()}
        self._cache: dict[str, list[int]] = {}
        self._special_splitters: dict[frozenset, regex.Pattern] = {}

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        text: str | Iterable[str],
        vocab_size: int,
        special_tokens: Sequence[str] = (),
        pattern: str = GPT4_SPLIT_PATTERN,
        progress: bool = False,
    ) -> "Tokenizer":
        """Learn a BPE vocabulary of ``vocab_size`` tokens (256 bytes + merges + special tokens) from text.

        ``text`` is a string or an iterable of documents. Special tokens get the last ids; their text is cut
        out of the training text so that nothing is learned across them. If the text runs out of pairs, the
        vocabulary stays smaller (``len(tok) < vocab_size``).
        """
        if isinstance(text, str):
            docs: Iterable[str] = (text,)
        elif isinstance(text, (bytes, bytearray)) or not isinstance(text, Iterable):
            raise TypeError(f"text must be a str or an iterable of str, got {type(text).__name__}")
        else:
            docs = text
        specials = list(dict.fromkeys(special_tokens))
        for s in specials:
            _check_text(s, "special token")
            if not s:
                raise ValueError("a special token cannot be the empty string")
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
            raise ValueError(
                f"vocab_size={vocab_size!r} must be an int >= 256 + {len(specials)} special tokens"
            )
        counts: Counter[str] = Counter()
        cutter = regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))
        for doc in docs:
            _check_text(doc, "each document")
            _utf8(doc)  # lone surrogates -> ValueError
            for piece in cutter.split(doc) if specials else (doc,):
                counts.update(iter_chunks(piece, pattern))
        merges, vocab = _learn_merges(counts, vocab_size - len(specials), progress=progress)
        special_ids = {s: len(vocab) + i for i, s in enumerate(specials)}
        return cls(merges, special_ids, pattern)

    # ------------------------------------------------------------------ encoding
    def __len__(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    @property
    def vocab_size(self) -> int:
        """Number of ids in use (bytes + merged tokens + special tokens); ids run from 0 to vocab_size - 1."""
        return len(self)

    def special_id(self, name: str) -> int:
        """The id of a special token; ``KeyError`` naming it if there is no such special token."""
        _check_text(name, "special token")
        if name not in self.special_tokens:
            raise KeyError(f"unknown special token {name!r}; this tokenizer has {sorted(self.special_tokens)}")
        return self.special_tokens[name]

    def _encode_chunk(self, chunk: str) -> list[int]:
        """BPE on one pre-token: apply the earliest-learned merge present (leftmost first), until none
        applies. Same result as repeating ``merge_pair`` with the lowest-ranked pair, but with a heap over a
        linked list of symbols, so a long chunk (a Chinese clause) costs O(n log n), not O(n * merges).
        Cached per chunk.
        """
        ids = self._cache.get(chunk)
        if ids is not None:
            return ids
        raw = chunk.encode("utf-8")
        sym = list(raw if self._byte_table is None else raw.translate(self._byte_table))
        n = len(sym)
        ranks = self.ranks
        if n >= 2:
            nxt = list(range(1, n + 1))  # nxt[i] == n: no right neighbour
            prv = list(range(-1, n - 1))
            heap = []
            for i in range(n - 1):
                r = ranks.get((sym[i], sym[i + 1]))
                if r is not None:
                    heap.append((r[0], i, r[1], sym[i + 1]))
            heapq.heapify(heap)
            while heap:
                rank, i, new, right = heapq.heappop(heap)
                j = nxt[i]
                # stale: i was merged into its left neighbour, or its right neighbour changed
                if sym[i] < 0 or j >= n or sym[j] != right or ranks.get((sym[i], right), (None,))[0] != rank:
                    continue
                sym[i] = new
                sym[j] = -1  # dead
                k = nxt[j]
                nxt[i] = k
                if k < n:
                    prv[k] = i
                    r = ranks.get((new, sym[k]))
                    if r is not None:
                        heapq.heappush(heap, (r[0], i, r[1], sym[k]))
                p = prv[i]
                if p >= 0:
                    r = ranks.get((sym[p], new))
                    if r is not None:
                        heapq.heappush(heap, (r[0], p, r[1], new))
            ids = [s for s in sym if s >= 0]
        else:
            ids = sym
        if len(self._cache) < 1_000_000:
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with every character treated as text (special tokens' text is plain bytes too)."""
        _check_text(text)
        _utf8(text)
        out: list[int] = []
        enc = self._encode_chunk
        for chunk in iter_chunks(text, self.pattern):
            out.extend(enc(chunk))
        return out

    def _resolve_allowed(self, allowed_special: AllowedSpecial) -> frozenset[str]:
        if isinstance(allowed_special, str):
            if allowed_special == "all":
                return frozenset(self.special_tokens)
            if allowed_special == "none":
                return frozenset()
            raise ValueError(f"allowed_special={allowed_special!r}: use 'all', 'none' or a set of special tokens")
        allowed = frozenset(allowed_special)
        for name in allowed:
            self.special_id(name)  # KeyError naming an unknown one
        return allowed

    def encode(self, text: str, allowed_special: AllowedSpecial = "none") -> list[int]:
        """Token ids of ``text``.

        ``allowed_special``: ``"none"`` (default) encodes special tokens' text as ordinary bytes; ``"all"``
        or a collection of special-token strings turns those occurrences into their single id (the longest
        one wins where two overlap). An unknown name raises ``KeyError``.
        """
        _check_text(text)
        allowed = self._resolve_allowed(allowed_special)
        if not allowed:
            return self.encode_ordinary(text)
        splitter = self._special_splitters.get(allowed)
        if splitter is None:
            alternatives = "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True))
            splitter = self._special_splitters[allowed] = regex.compile(f"({alternatives})")
        out: list[int] = []
        for i, piece in enumerate(splitter.split(text)):
            if i % 2:  # the captured special tokens sit at odd positions
                out.append(self.special_tokens[piece])
            elif piece:
                out.extend(self.encode_ordinary(piece))
        return out

    def encode_batch(self, texts: Iterable[str], allowed_special: AllowedSpecial = "none") -> list[list[int]]:
        return [self.encode(t, allowed_special) for t in texts]

    # ------------------------------------------------------------------ decoding
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token's UTF-8 text for special ids)."""
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            try:
                import numpy as np

                if isinstance(token_id, np.integer):
                    token_id = int(token_id)
                else:
                    raise TypeError
            except (ImportError, TypeError):
                raise TypeError(f"token ids must be ints, got {type(token_id).__name__}: {token_id!r}") from None
        b = self.vocab.get(token_id)
        if b is not None:
            return b
        s = self.inverse_special.get(token_id)
        if s is None:
            raise ValueError(f"token id {token_id} is out of range for a vocabulary of {len(self)}")
        return s.encode("utf-8")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of a sequence of ids."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
        if hasattr(ids, "tolist"):  # torch tensors, numpy arrays
            ids = ids.tolist()
        vocab = self.vocab
        try:
            return b"".join([vocab[i] for i in ids])
        except (KeyError, TypeError):
            return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Text of a sequence of ids. Bytes that are not valid UTF-8 become U+FFFD (``errors="replace"``)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def id_to_piece(self, token_id: int) -> str:
        """A printable form of one token, for tables: its text, or its bytes as ``<0xE4>`` where not UTF-8."""
        b = self.token_bytes(token_id)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(chr(x) if x < 128 else f"<0x{x:02X}>" for x in b)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "merges": [list(m) for m in self.merges],
            "special_tokens": dict(self.special_tokens),
            **({"byte_ids": list(self.byte_ids)} if self.byte_ids is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "tokenizer data") -> "Tokenizer":
        """Rebuild a tokenizer from `to_dict`'s output; ValueError names `source` (the file) and the field."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a {FORMAT} file "
                             f"(format={data.get('format') if isinstance(data, dict) else data!r:.60})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source}: {FORMAT} version {data.get('version')!r} is not supported "
                             f"(expected {FORMAT_VERSION})")
        for key in ("merges", "special_tokens", "pattern"):
            if key not in data:
                raise ValueError(f"{source}: field {key!r} is missing")
        merges, specials, pattern = data["merges"], data["special_tokens"], data["pattern"]
        if not isinstance(merges, list) or not all(
                isinstance(m, list) and len(m) == 3 and all(isinstance(x, int) and not isinstance(x, bool) for x in m)
                for m in merges):
            bad = merges if not isinstance(merges, list) else next(
                (i, m) for i, m in enumerate(merges) if not (isinstance(m, list) and len(m) == 3 and all(
                    isinstance(x, int) and not isinstance(x, bool) for x in m)))
            raise ValueError(f"{source}: field 'merges' must be a list of [a, b, new_id] int triples, got "
                             f"{bad!r:.80}" + (" (entry #%d: %r)" % bad if isinstance(bad, tuple) else ""))
        if not isinstance(specials, dict):
            raise ValueError(f"{source}: field 'special_tokens' must be an object {{text: id}}, got "
                             f"{type(specials).__name__}: {specials!r:.60}")
        if not isinstance(pattern, str):
            raise ValueError(f"{source}: field 'pattern' must be a regex string, got {type(pattern).__name__}")
        try:
            _compiled(pattern)
        except regex.error as err:
            raise ValueError(f"{source}: field 'pattern' does not compile as a regex ({err})") from None
        byte_ids = data.get("byte_ids")
        if byte_ids is not None and not isinstance(byte_ids, list):
            raise ValueError(f"{source}: field 'byte_ids' must be a list of 256 ints, got {type(byte_ids).__name__}")
        try:
            return cls(merges, specials, pattern, byte_ids=byte_ids)
        except (ValueError, TypeError) as err:
            field = ("special_tokens" if "special" in str(err) else "byte_ids" if "byte_ids" in str(err)
                     else "merges")
            raise ValueError(f"{source}: field {field!r}: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON (merges, special tokens, split pattern) to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a tokenizer written by :meth:`save`; a malformed file raises ValueError naming it and the field."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{str(path)!r} is not a JSON tokenizer file ({err})") from None
        return cls.from_dict(data, source=repr(str(path)))

    @classmethod
    def from_tiktoken(
        cls,
        source: str | os.PathLike | bytes | dict[bytes, int],
        pattern: str = GPT2_SPLIT_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ) -> "Tokenizer":
        """A published byte-level BPE vocabulary in tiktoken's format, as a Tokenizer with the same ids.

        ``source``: a ``.tiktoken`` file (one ``base64(token bytes) rank`` a line; ``.xz``-compressed is read
        too), its contents as bytes, or the ranks as ``{token bytes: rank}`` (tiktoken's ``mergeable_ranks``).
        GPT-2's: ``Tokenizer.from_tiktoken(minids.gpt2_vocab.VOCAB_XZ, GPT2_SPLIT_PATTERN,
        {"<|endoftext|>": 50256})``.

        A tiktoken file has ranks, not merges: the token of rank r is what BPE builds from two tokens of
        smaller rank. We recover that pair by running BPE on the token's own bytes with the ranks below r
        (it must end in exactly two parts), so that our encoder, which applies merges, gives tiktoken's ids.
        The 256 single bytes must be ranks 0..255, in any order (``byte_ids``). A malformed file raises
        ValueError naming the line and what is wrong with it.
        """
        ranks = read_tiktoken_ranks(source)
        where = "tiktoken ranks" if isinstance(source, (bytes, dict)) else repr(str(source))
        by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
        singles = [tok for tok, r in by_rank[:256]]
        if len(by_rank) < 256 or any(len(tok) != 1 for tok in singles):
            bad = next(((t, r) for t, r in by_rank[:256] if len(t) != 1), None)
            raise ValueError(f"{where}: ranks 0..255 must be the 256 single bytes, got "
                             + (f"rank {bad[1]} = {bad[0]!r}" if bad else f"only {len(by_rank)} ranks"))
        byte_ids = [0] * 256
        for tok, r in by_rank[:256]:
            byte_ids[tok[0]] = r
        merges = []
        for tok, r in by_rank[256:]:
            parts = _bpe_parts(ranks, tok, r)
            if len(parts) != 2:
                raise ValueError(f"{where}: the token of rank {r} ({tok!r}) is not a merge of two tokens of smaller "
                                 f"rank (BPE on its bytes ends in {len(parts)} parts)")
            merges.append((ranks[parts[0]], ranks[parts[1]], r))
        return cls(merges, special_tokens, pattern, byte_ids=byte_ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={len(self)}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )

    # ------------------------------------------------------------------ transformers
    def to_tokenizers(self):
        """The same tokenizer as a Hugging Face ``tokenizers.Tokenizer`` (BPE model, byte-level).

        Pre-tokenizer: ``Split`` with our exact regex (isolated), then ``ByteLevel(use_regex=False)`` that
        maps bytes to GPT-2's printable characters; merges in our order; special tokens as added tokens with
        our ids.
        """
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        def piece(i: int) -> str:
            return "".join(_BYTE_TO_UNICODE[b] for b in self.vocab[i])

        vocab = {piece(i): i for i in self.vocab}
        merges, seen = [], set()
        for a, b, _ in self.merges:
            if (a, b) not in seen:  # a repeated pair would override the first rank in tokenizers
                seen.add((a, b))
                merges.append((piece(a), piece(b)))
        tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(self.pattern), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        for text, idx in sorted(self.special_tokens.items(), key=lambda kv: kv[1]):
            tok.add_special_tokens([AddedToken(text, special=True, normalized=False)])
            got = tok.token_to_id(text)
            if got != idx:
                raise ValueError(f"special token {text!r} got id {got} in tokenizers, expected {idx}")
        return tok

    def to_transformers(self, **special_roles: str):
        """A ``transformers.PreTrainedTokenizerFast``; ``special_roles`` such as ``eos_token="<|endoftext|>"``.

        Each role must name one of our special tokens (``KeyError`` otherwise).
        """
        from transformers import PreTrainedTokenizerFast

        for role, names in special_roles.items():
            for name in [names] if isinstance(names, str) else (names or []):
                self.special_id(name)  # KeyError naming a token we do not have
        return PreTrainedTokenizerFast(tokenizer_object=self.to_tokenizers(), **special_roles)

    def save_pretrained(self, directory: str | os.PathLike, chat_template: str | None = None, **special_roles: str) -> Path:
        """Write a folder that ``transformers.AutoTokenizer.from_pretrained`` loads (``tokenizer.json`` +
        ``tokenizer_config.json``), and our own ``nanoseek_tokenizer.json`` beside them.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fast = self.to_transformers(**special_roles)
        if chat_template is not None:
            fast.chat_template = chat_template
        fast.save_pretrained(str(directory))
        # transformers 5 writes its new class name; the old one loads the same tokenizer.json in 4.x and 5.x
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        self.save(directory / "nanoseek_tokenizer.json")
        return directory


def train(
    text: str | Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    pattern: str = GPT4_SPLIT_PATTERN,
    progress: bool = False,
) -> Tokenizer:
    """Shorthand for :meth:`Tokenizer.train`."""
    return Tokenizer.train(text, vocab_size, special_tokens=special_tokens, pattern=pattern, progress=progress)


def load(path: str | os.PathLike) -> Tokenizer:
    """Shorthand for :meth:`Tokenizer.load`."""
    return Tokenizer.load(path)


def encode_iterable(tok: Tokenizer, pieces: Iterable[str], hold: int = 3) -> Iterator[int]:
    """The ids of ``tok.encode_ordinary("".join(pieces))``, yielded while the pieces stream in (file lines,
    network chunks), so memory is bounded by a piece plus a few pre-tokens, not by the whole text.

    A pre-token that touches the end of what has arrived may still grow, or split differently, when the next
    piece comes (a run of spaces that turns out to end in a newline; letters that continue). So the last
    ``hold`` pre-tokens of the buffer wait for more text; everything before them is final, because the split
    pattern never looks further back than that. (Chapter 2; ``tests/test_tokenizer_stream.py`` checks it
    against ``encode_ordinary`` on random cuts of varied text.)
    """
    if not isinstance(hold, int) or hold < 2:
        raise ValueError(f"hold={hold!r}: at least 2 pre-tokens must wait for the next piece")
    buffer = ""
    for piece in pieces:
        buffer += _check_text(piece, "piece")
        chunks = list(iter_chunks(buffer, tok.pattern))
        if len(chunks) > hold:
            for chunk in chunks[:-hold]:
                _utf8(chunk)  # lone surrogates raise here, as in encode
                yield from tok._encode_chunk(chunk)
            buffer = "".join(chunks[-hold:])
    if buffer:
        yield from tok.encode_ordinary(buffer)


def read_tiktoken_ranks(source: str | os.PathLike | bytes | dict[bytes, int]) -> dict[bytes, int]:
    """``{token bytes: rank}`` from a tiktoken BPE file (``base64 rank`` a line, ``.xz`` read too), its bytes, or
    a dict (checked). Ranks must be the distinct ints 0..N-1 and tokens distinct and non-empty; anything else
    raises ValueError naming the line."""
    import base64
    import binascii

    if isinstance(source, dict):
        where, items = "tiktoken ranks", [(k, v, f"entry {k!r:.40}") for k, v in source.items()]
        for tok, r, at in items:
            if not isinstance(tok, bytes) or isinstance(r, bool) or not isinstance(r, int):
                raise ValueError(f"{where}: {at}: keys must be bytes and ranks ints, got {type(tok).__name__}: "
                                 f"{type(r).__name__}")
    else:
        if isinstance(source, (bytes, bytearray)):
            where, data = "tiktoken data", bytes(source)
        else:
            path = Path(source)
            where = repr(str(path))
            data = path.read_bytes()
            if path.suffix == ".xz":
                import lzma

                try:
                    data = lzma.decompress(data)
                except lzma.LZMAError as err:
                    raise ValueError(f"{where}: not a valid .xz file ({err})") from None
        items = []
        for lineno, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            at = f"line {lineno}"
            if len(fields) != 2:
                raise ValueError(f"{where}: {at}: expected 'base64-token rank', got {line[:60].decode('utf-8', 'replace')!r}")
            try:
                tok = base64.b64decode(fields[0], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{where}: {at}: {fields[0][:40].decode('utf-8', 'replace')!r} is not base64") from None
            if not fields[1].isdigit():
                raise ValueError(f"{where}: {at}: rank {fields[1][:20].decode('utf-8', 'replace')!r} is not a non-negative "
                                 "integer")
            items.append((tok, int(fields[1]), at))
    ranks: dict[bytes, int] = {}
    seen: dict[int, str] = {}
    for tok, r, at in items:
        if not tok:
            raise ValueError(f"{where}: {at}: empty token")
        if tok in ranks:
            raise ValueError(f"{where}: {at}: token {tok!r} appears twice (ranks {ranks[tok]} and {r})")
        if r in seen:
            raise ValueError(f"{where}: {at}: rank {r} appears twice (also at {seen[r]})")
        ranks[tok], seen[r] = r, at
    if not ranks:
        raise ValueError(f"{where}: no ranks found")
    if max(seen) != len(seen) - 1:
        missing = next(r for r in range(len(seen)) if r not in seen)
        raise ValueError(f"{where}: ranks must be 0..{len(seen) - 1} without gaps; rank {missing} is missing")
    return ranks


def _bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's BPE on ``token``'s bytes, using only ranks below ``max_rank``: merge the adjacent pair whose
    concatenation has the smallest rank (leftmost on ties) until none is left."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, at = max_rank, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best:
                best, at = r, i
        if at < 0:
            break
        parts[at: at + 2] = [parts[at] + parts[at + 1]]
    return parts


def bits_per_byte(loss: float, n_tokens: int, n_bytes: int) -> float:
    """A mean cross-entropy of ``loss`` nats per token over ``n_tokens`` tokens of a text of ``n_bytes`` UTF-8
    bytes, in bits per byte: ``loss * n_tokens / n_bytes / ln 2``. (Chapter 2.)

    Nats per token depend on the tokenizer (a character-level model of chapter 1 and a BPE model of chapter 3
    predict different units); the total information the model needs for the text does not. Bits per byte
    compares any two models on the same text.
    """
    import math

    if not n_bytes > 0:
        raise ValueError(f"n_bytes={n_bytes!r} must be > 0")
    if not n_tokens > 0:
        raise ValueError(f"n_tokens={n_tokens!r} must be > 0")
    return loss * n_tokens / n_bytes / math.log(2)


__all__ = [
    "GPT4_SPLIT_PATTERN",
    "GPT2_SPLIT_PATTERN",
    "DEEPSEEK_V3_SPLIT_PATTERN",
    "DEEPSEEK_LLM_DIGITS_SPLIT_PATTERN",
    "deepseek_pattern",
    "Tokenizer",
    "bits_per_byte",
    "bytes_to_unicode",
    "read_tiktoken_ranks",
    "encode_iterable",
    "count_pairs",
    "iter_chunks",
    "load",
    "merge_pair",
    "split_text",
    "tie_order",
    "train",
]
