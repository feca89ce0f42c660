"""Checkers for chapter 3's exercises (pretraining → SFT: chat template, loss mask, shifted targets)."""
from __future__ import annotations

import functools
from typing import Callable

import torch

from nanoseek.exercises import checking, expect

_CONVS = [
    [{"role": "user", "content": "Who is the story about?"}, {"role": "assistant", "content": "It is about Lily."}],
    [{"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": "故事发生在哪里？"},
     {"role": "assistant", "content": "故事发生在公园里。"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Where is Tom?"}, {"role": "assistant", "content": "Tom is at the beach."}],
]


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from nanoseek.data.chat import SPECIAL_TOKENS
    from nanoseek.tokenizer import Tokenizer

    text = " ".join(m["content"] for conv in _CONVS for m in conv) * 3
    return Tokenizer.train(text, 300, special_tokens=SPECIAL_TOKENS)


def check_render_chat(render: Callable[[list[dict], bool], str]) -> bool:
    """`render(messages, add_generation_prompt)` must give the chapter's template text."""
    from nanoseek.data.chat import render_chat

    def checks():
        for conv in _CONVS:
            for gen in (False, True):
                msgs = conv[:-1] if gen else conv
                got = render(msgs, gen)
                want = render_chat(msgs, add_generation_prompt=gen)
                expect(isinstance(got, str), f"return a str, got {type(got).__name__}")
                expect(got == want, f"for {msgs!r} with add_generation_prompt={gen}\n  expected {want!r}\n"
                                    f"  got      {got!r}")

    return checking("chat template renderer", checks)


def check_shift_targets(shift_targets: Callable[[list[int], list[bool]], tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """`shift_targets(ids, mask) -> (x, y)`: x = ids[:-1]; y[t] = ids[t+1] where mask[t+1], else -100."""
    from nanoseek.data.chat import to_xy

    def checks():
        cases = [([5, 6, 7, 8, 9], [False, False, True, True, False]), ([1, 2], [False, True]),
                 ([3, 4, 5, 6], [False, False, False, False])]
        for ids, mask in cases:
            got = shift_targets(list(ids), list(mask))
            expect(isinstance(got, tuple) and len(got) == 2, "return a tuple (x, y)")
            x, y = (torch.as_tensor(t) for t in got)
            want_x, want_y = to_xy(ids, mask, len(ids) - 1, pad_id=0)
            expect(x.tolist() == want_x.tolist(), f"ids={ids}: x must be ids[:-1] = {want_x.tolist()}, got {x.tolist()}")
            expect(y.tolist() == want_y.tolist(), f"ids={ids}, mask={mask}: y must be {want_y.tolist()}, got "
                                                  f"{y.tolist()} (the target of position t is token t+1, and -100 "
                                                  f"where token t+1 is not trained)")

    return checking("shifted, masked targets", checks)


def check_loss_mask(encode_chat: Callable) -> bool:
    """`encode_chat(tok, messages) -> (ids, mask)`: same ids and mask as `nanoseek.data.chat.encode_chat`."""
    from nanoseek.data.chat import encode_chat as reference

    def checks():
        tok = _tokenizer()
        for conv in _CONVS:
            got = encode_chat(tok, conv)
            expect(isinstance(got, tuple) and len(got) == 2, "return a tuple (ids, mask)")
            ids, mask = list(got[0]), [bool(m) for m in got[1]]
            want_ids, want_mask = reference(tok, conv)
            expect(ids == want_ids, f"ids differ for {conv!r}:\n  expected {tok.decode(want_ids)!r}\n"
                                    f"  got      {tok.decode(ids)!r}")
            expect(len(mask) == len(ids), f"one mask entry per id: {len(mask)} entries for {len(ids)} ids")
            if mask != want_mask:
                i = next(k for k, (a, b) in enumerate(zip(mask, want_mask)) if a != b)
                piece = tok.decode([ids[i]])
                expect(False, f"token {i} ({piece!r}) should be {'trained' if want_mask[i] else 'masked'}: train "
                              "on the assistant's words and its <|end|>, nothing else")

    return checking("loss mask for a conversation", checks)


def _pack_reference(samples, block_size: int, pad_id: int):
    """Next-fit packing: the exercise's rule (`nanoseek.data.chat.pack_rows` looks back over 16 rows)."""
    rows: list[list[tuple[list[int], list[int]]]] = [[]]
    used = 0
    for x, y in samples:
        if used + len(x) > block_size:
            rows.append([])
            used = 0
        rows[-1].append((list(x), list(y)))
        used += len(x)
    X = torch.full((len(rows), block_size), pad_id, dtype=torch.long)
    Y = torch.full((len(rows), block_size), -100, dtype=torch.long)
    S = torch.zeros((len(rows), block_size), dtype=torch.long)
    for b, row in enumerate(rows):
        t = 0
        for s, (x, y) in enumerate(row, start=1):
            X[b, t:t + len(x)], Y[b, t:t + len(x)], S[b, t:t + len(x)] = torch.tensor(x), torch.tensor(y), s
            t += len(x)
    from nanoseek.data.chat import packed_attention_mask

    return X, Y, S, packed_attention_mask(S)


def check_pack_with_mask(pack_with_mask: Callable) -> bool:
    """`pack_with_mask(samples, block_size, pad_id) -> (x, y, seg, mask)`: next-fit packing of shifted samples,
    segment ids 1, 2, ... per row (0 on padding), and the causal, same-segment attention mask."""
    def checks():
        g = torch.Generator().manual_seed(3)
        cases = []
        for lens, block in (([3, 2, 4], 6), ([5], 5), ([2, 2, 2, 2, 1], 4), ([1, 3, 2, 3, 4, 1], 8)):
            samples = []
            for n in lens:
                x = torch.randint(5, 50, (n,), generator=g).tolist()
                y = torch.randint(5, 50, (n,), generator=g).tolist()
                y[0] = -100  # a masked target, as the loss mask makes
                samples.append((x, y))
            cases.append((samples, block))
        for samples, block in cases:
            got = pack_with_mask([(list(x), list(y)) for x, y in samples], block, 1)
            expect(isinstance(got, tuple) and len(got) == 4, "return a tuple (x, y, seg, mask)")
            X, Y, S, M = (torch.as_tensor(t) for t in got)
            wX, wY, wS, wM = _pack_reference(samples, block, 1)
            lens = [len(x) for x, _ in samples]
            where = f"samples of lengths {lens} into rows of {block}"
            expect(tuple(X.shape) == tuple(wX.shape), f"{where}: x must be {tuple(wX.shape)}, got {tuple(X.shape)} "
                                                      "(start a new row when the next sample does not fit)")
            expect(torch.equal(X.long(), wX), f"{where}: x must be {wX.tolist()}, got {X.tolist()}")
            expect(torch.equal(Y.long(), wY), f"{where}: y must be {wY.tolist()}, got {Y.tolist()} (each sample "
                                              "keeps its own targets; padding targets are -100)")
            expect(torch.equal(S.long(), wS), f"{where}: seg must be {wS.tolist()}, got {S.tolist()} (1, 2, ... "
                                              "within each row, 0 on padding)")
            expect(tuple(M.shape) == tuple(wM.shape), f"{where}: mask must be {tuple(wM.shape)}, got {tuple(M.shape)}")
            if not torch.equal(M.bool(), wM):
                b, i, j = (int(v) for v in (M.bool() != wM).nonzero()[0])
                expect(False, f"{where}: row {b}, query {i}, key {j} should be "
                              f"{'visible' if wM[b, i, j] else 'masked'} (a query sees keys at or before it, "
                              "in its own segment only)")

    return checking("packing with per-sample attention masks", checks)
