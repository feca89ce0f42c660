"""Chapter 2's checkers catch plausible wrong solutions (each must fail) and pass the right one."""
from __future__ import annotations

import contextlib
import io

import pytest

from nanoseek.exercises import ch02
from nanoseek.tokenizer import merge_pair, split_text, tie_order


def run(checker, fn) -> tuple[bool, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = checker(fn)
    return ok, out.getvalue()


# ------------------------------------------------------------------------------------------------- merge
def merge_right(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_right_to_left(ids, pair, new_id):
    return merge_right(ids[::-1], pair[::-1], new_id)[::-1]


def merge_overlapping(ids, pair, new_id):  # replaces every position where the pair starts, overlaps included
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


def merge_unordered(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and {ids[i], ids[i + 1]} == set(pair) and len(set(pair)) == len({ids[i], ids[i + 1]}):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_drops_last(ids, pair, new_id):
    out, i = [], 0
    while i + 1 < len(ids):
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_in_place(ids, pair, new_id):
    ids[:] = merge_right(ids, pair, new_id)


MERGE_WRONG = {"right to left": merge_right_to_left, "overlapping": merge_overlapping,
               "pair order ignored": merge_unordered, "drops the last id": merge_drops_last,
               "in place, returns None": merge_in_place, "returns a tuple": lambda i, p, n: tuple(merge_right(i, p, n))}


# ------------------------------------------------------------------------------------------ most frequent pair
def counts_of(chunks, overlapping=True):
    counts = {}
    for ids in chunks:
        i = 0
        while i + 1 < len(ids):
            counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
            i += 1 if overlapping or (ids[i], ids[i + 1]) != (ids[i + 1], ids[min(i + 2, len(ids) - 1)]) else 2
    return counts


def pair_right(chunks):
    counts = counts_of(chunks)
    return min(counts, key=lambda p: (-counts[p], tie_order(p[0]), tie_order(p[1])))


def pair_across_chunks(chunks):
    return pair_right([[i for c in chunks for i in c]])


def pair_raw_id_ties(chunks):
    counts = counts_of(chunks)
    return min(counts, key=lambda p: (-counts[p], p))


def pair_first_seen_ties(chunks):
    counts = counts_of(chunks)
    return max(counts, key=lambda p: counts[p])  # ties: whichever was counted first


def pair_non_overlapping(chunks):
    counts = {}
    for ids in chunks:
        i = 0
        while i + 1 < len(ids):
            p = (ids[i], ids[i + 1])
            counts[p] = counts.get(p, 0) + 1
            i += 2 if ids[i] == ids[i + 1] else 1
    return min(counts, key=lambda p: (-counts[p], tie_order(p[0]), tie_order(p[1])))


def pair_least_frequent(chunks):
    counts = counts_of(chunks)
    return min(counts, key=lambda p: (counts[p], tie_order(p[0]), tie_order(p[1])))


PAIR_WRONG = {"counts across chunks": pair_across_chunks, "ties by raw id": pair_raw_id_ties,
              "ties by first seen": pair_first_seen_ties, "overlaps counted once": pair_non_overlapping,
              "least frequent": pair_least_frequent, "returns a list": lambda c: list(pair_right(c))}


# ------------------------------------------------------------------------------------------------- encode
def ranks(merges):
    rank = {}
    for r, (a, b, new_id) in enumerate(merges):
        rank.setdefault((a, b), (r, new_id))
    return rank


def encode_chunk(ids, rank):
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, (float("inf"),))[0])
        if pair not in rank:
            break
        ids = merge_pair(ids, pair, rank[pair][1])
    return ids


def encode_right(text, merges):
    rank = ranks(merges)
    return [i for chunk in split_text(text) for i in encode_chunk(list(chunk.encode("utf-8")), rank)]


def encode_no_split(text, merges):  # the hole issue 18 found: never calls split_text
    return encode_chunk(list(text.encode("utf-8")), ranks(merges))


def encode_split_on_spaces(text, merges):
    rank, out = ranks(merges), []
    for k, word in enumerate(text.split(" ")):
        out += encode_chunk(list(((" " if k else "") + word).encode("utf-8")), rank)
    return out


def encode_one_pass(text, merges):  # each merge tried once, in the order pairs appear, not by rank
    rank, out = ranks(merges), []
    for chunk in split_text(text):
        ids = list(chunk.encode("utf-8"))
        for pair in list(zip(ids, ids[1:])):
            if pair in rank:
                ids = merge_pair(ids, pair, rank[pair][1])
        out += ids
    return out


def encode_most_frequent(text, merges):  # merges the pair the text holds most often, like training
    rank, out = ranks(merges), []
    for chunk in split_text(text):
        ids = list(chunk.encode("utf-8"))
        while True:
            counts = counts_of([ids])
            known = [p for p in counts if p in rank]
            if not known:
                break
            pair = max(known, key=lambda p: (counts[p], -rank[p][0]))
            ids = merge_pair(ids, pair, rank[pair][1])
        out += ids
    return out


def encode_latin1(text, merges):
    rank = ranks(merges)
    return [i for chunk in split_text(text) for i in encode_chunk(list(chunk.encode("utf-8", "ignore")[:]), rank)
            ] if text.isascii() else [b for b in text.encode("utf-16-le")]


ENCODE_WRONG = {"never calls split_text": encode_no_split, "splits on spaces": encode_split_on_spaces,
                "one pass in text order": encode_one_pass, "most frequent, not lowest rank": encode_most_frequent,
                "not UTF-8": encode_latin1}


# --------------------------------------------------------------------------------------------- stream decode
def stream_right(tok, ids):
    pieces, pending = [], b""
    for i in ids:
        pending += tok.decode_bytes([i])
        try:
            pieces.append(pending.decode("utf-8"))
            pending = b""
        except UnicodeDecodeError:
            pieces.append("")
    return pieces


STREAM_WRONG = {
    "decode each id with replace": lambda tok, ids: [tok.decode([i]) for i in ids],
    "decode each id, ignore errors": lambda tok, ids: [tok.decode_bytes([i]).decode("utf-8", "ignore") for i in ids],
    "one piece for everything": lambda tok, ids: [tok.decode(ids)],
    "skips the empty pieces": lambda tok, ids: [p for p in stream_right(tok, ids) if p],
}


# ---------------------------------------------------------------------------------------------- BPE training
def make_trainer(*, split=True, tie="order", fresh=True, extra=0, first_only=False, recount=True, across=False):
    def train_bpe(text, vocab_size):
        chunks = [list(c.encode("utf-8")) for c in (split_text(text) if split else [text])]
        if across:
            chunks = [[i for c in chunks for i in c]]
        merges, frozen = [], None
        for new_id in range(256, vocab_size + extra):
            counts = counts_of(chunks)
            if not recount:
                frozen = frozen or counts
                counts = {p: frozen.get(p, 0) for p in counts}
            if not counts:
                break
            if tie == "order":
                pair = min(counts, key=lambda p: (-counts[p], tie_order(p[0]), tie_order(p[1])))
            elif tie == "raw":
                pair = min(counts, key=lambda p: (-counts[p], p))
            else:
                pair = max(counts, key=lambda p: (counts[p], p))
            nid = new_id if fresh else 256
            if first_only:
                out = []
                done = False
                for ids in chunks:
                    if not done and any((a, b) == pair for a, b in zip(ids, ids[1:])):
                        k = next(i for i, ab in enumerate(zip(ids, ids[1:])) if ab == pair)
                        ids = ids[:k] + [nid] + ids[k + 2:]
                        done = True
                    out.append(ids)
                chunks = out
            else:
                chunks = [merge_right(ids, pair, nid) for ids in chunks]
            merges.append((pair[0], pair[1], nid))
        return merges

    return train_bpe


TRAIN_WRONG = {"no split_text": make_trainer(split=False), "pairs across chunks": make_trainer(across=True),
               "ties by raw id": make_trainer(tie="raw"), "ties by the largest pair": make_trainer(tie="max"),
               "every merge gets id 256": make_trainer(fresh=False), "one merge too many": make_trainer(extra=1),
               "only the first occurrence merged": make_trainer(first_only=True),
               "counts never updated": make_trainer(recount=False)}


CASES = [
    ("merge", ch02.check_merge, merge_right, MERGE_WRONG),
    ("train bpe", ch02.check_train_bpe, make_trainer(), TRAIN_WRONG),
    ("most frequent pair", ch02.check_most_frequent_pair, pair_right, PAIR_WRONG),
    ("encode", ch02.check_encode, encode_right, ENCODE_WRONG),
    ("stream decode", ch02.check_stream_decode, stream_right, STREAM_WRONG),
]


@pytest.mark.parametrize("checker, right", [(c, r) for _, c, r, _ in CASES], ids=[c[0] for c in CASES])
def test_right_solution_passes(checker, right):
    ok, printed = run(checker, right)
    assert ok and "✅" in printed, printed


@pytest.mark.parametrize("checker, wrong", [pytest.param(c, fn, id=f"{n}: {w}") for n, c, _, ws in CASES
                                             for w, fn in ws.items()])
def test_wrong_solution_fails(checker, wrong):
    ok, printed = run(checker, wrong)
    assert not ok and "❌" in printed and "✅" not in printed, printed


def test_check_encode_has_a_merge_across_a_chunk_boundary():
    """The hole issue 18 found: some checked text must encode differently without the pre-tokenizer split."""
    tok = ch02._reference()
    texts = ch02._TEXTS + ("343434 and 1234",)
    assert any(encode_no_split(t, tok.merges) != tok.encode(t) for t in texts)
