"""Compact Knights and Knaves (minids.knights, nanoseek.rl.knights): generator, solver, verifier, rules."""
from __future__ import annotations

import itertools

import pytest

from minids import knights as K
from nanoseek.rl import knights as RK
from nanoseek.rl.tasks import mixture_examples


@pytest.mark.parametrize("people", [3, 5])
def test_puzzles_are_deterministic_unique_and_the_trace_solves_them(people):
    rows = K.knights("train", 60, seed=1, people=people)
    assert rows == K.knights("train", 60, seed=1, people=people)
    assert rows != K.knights("train", 60, seed=2, people=people)
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert len({len(r["prompt"]) for r in rows}) == 1  # one prompt length: rollouts decode in lockstep
    for row in rows:
        statements = [tuple(s) for s in row["statements"]]
        # uniqueness by brute force, independently of the module's own helper
        worlds = [w for w in itertools.product((True, False), repeat=people)
                  if all(K.holds(s, w) == w[i] for i, s in enumerate(statements))]
        assert worlds == [tuple(row["solution"])]
        assert K.puzzle_prompt(statements) == row["prompt"]
        trace, world = K.solve_with_trace(statements)
        assert trace == row["trace"] and list(world) == row["solution"]
        assert trace.endswith(",ok") or trace.endswith(":ok")
        assert row["answer"] == K.answer_text(world)
        assert RK.kk_accuracy(RK.kk_worked_demo(row), row) == 1.0
        assert RK.kk_accuracy(RK.kk_direct_demo(row), row) == 1.0
    # both branches occur: some puzzles need the second supposition, "A is a knave"
    assert any(";" in r["trace"] for r in rows) and any(";" not in r["trace"] for r in rows)


def test_held_out_split_is_disjoint_from_train():
    train = {r["prompt"] for r in K.knights("train", 300, seed=0, people=3)}
    test = {r["prompt"] for r in K.knights("test", 50, seed=0, people=3) + K.knights("test", 50, seed=7, people=3)}
    assert not train & test


def test_the_solver_by_hand():
    # A: "B is a knave"; B: "A and C are the same kind"; C: "I am a knave or A is a knight".
    statements = [("is", 1, 0), ("same", 0, 2), ("or", 0, 1, 2, 0)]
    assert K.puzzle_prompt(statements) == "A:B0...;B:A=C..;C:A1|C0?"
    # A=1 -> B=0 (A's claim) -> B lies, so A and C differ -> C=0, but C's "A1|C0" is then true: contradiction.
    # A=0 -> B=1 -> A and C are the same -> C=0, and C's claim is true again (C0): contradiction.
    assert K.solutions(statements) == [] and K.solve_with_trace(statements) is None
    statements = [("is", 1, 0), ("same", 0, 2), ("is", 0, 0)]  # now C says "A is a knave"
    # A=1 -> B=0 -> A, C differ -> C=0, whose "A0" is false: consistent, and everyone is decided.
    assert K.solutions(statements) == [(True, False, False)]
    assert K.solve_with_trace(statements) == ("A1:A1>B0,B0>C0,ok", (True, False, False))
    statements = [("is", 1, 1), ("same", 0, 2), ("is", 0, 0)]  # A: "B is a knight"
    # A=1 -> B=1 -> C=1, whose "A0" is false for a knight: contradiction.  A=0 -> B=0 -> A, C differ -> C=1,
    # whose "A0" is true: consistent.
    assert K.solutions(statements) == [(False, False, True)]
    assert K.solve_with_trace(statements) == ("A1:A1>B1,B1>C1,C1>x;A0:A0>B0,B0>C1,ok", (False, False, True))
    assert K.write_statement(("and", 0, 1, 2, 0)) == "A1&C0"


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="people=1"):
        K.knights("train", 3, people=1)
    with pytest.raises(ValueError, match="people=9"):
        K.knights("train", 3, people=9)
    with pytest.raises(ValueError, match="split='dev'"):
        K.knights("dev", 3)
    with pytest.raises(ValueError, match="'not'"):
        K.holds(("not", 1), (True, True))


ROW = {"people": 3, "solution": [True, False, True], "answer": "A1B0C1"}


@pytest.mark.parametrize("answer", ["A1B0C1", "C1A1B0", "A1, B0, C1", " a1b0c1 ".upper(), "101", "1 0 1"])
def test_verifier_accepts_the_right_answer_written_several_ways(answer):
    assert RK.kk_accuracy(f"<think></think><answer>{answer}</answer>", ROW) == 1.0


@pytest.mark.parametrize("answer", [
    "A1B0C0",            # wrong kind
    "A1B0",              # someone missing
    "A1B0C1D1",          # a person who is not in the puzzle
    "A1B0C1C1",          # named twice
    "A1B1B0C1",          # named twice, with both kinds
    "10",                # too few bare kinds
    "1011",              # too many
    "A1B0C",             # dangling letter
    "A2B0C1",            # not a kind
    "A１B0C1",           # full-width digit
    "a1b0c1",            # lower case is not a person
    "A=1,B=0,C=1",       # another format
    "A1B0C1" * 100,      # long
    "",                  # empty
    "__import__('os').system('x')",
])
def test_verifier_scores_wrong_and_malformed_answers_zero(answer):
    assert RK.kk_accuracy(f"<think></think><answer>{answer}</answer>", ROW) == 0.0


def test_verifier_errors_name_what_is_wrong():
    with pytest.raises(RK.KKAnswerError, match="no kind for C"):
        RK.parse_kk_compact("A1B0", 3)
    with pytest.raises(RK.KKAnswerError, match="B is named twice"):
        RK.parse_kk_compact("A1B0B1", 3)
    with pytest.raises(RK.KKAnswerError, match="'D' at 6 is not one of the people ABC"):
        RK.parse_kk_compact("A1B0C1D1", 3)
    with pytest.raises(RK.KKAnswerError, match="kind '2' of A"):
        RK.parse_kk_compact("A2B0C1", 3)
    with pytest.raises(RK.KKAnswerError, match="longer than"):
        RK.parse_kk_compact("1" * 10_000, 3)
    with pytest.raises(RK.KKAnswerError, match="2 kinds for 3 people"):
        RK.parse_kk_compact("10", 3)
    with pytest.raises(RK.KKAnswerError, match="must be str"):
        RK.parse_kk_compact(b"A1B0C1", 3)


@pytest.mark.parametrize("completion", [
    None, 12, b"\xff\xfe", "x" * 100_000, "<answer>A1B0C1",          # no closing tag
    "<think></think><answer><answer>A1B0C1</answer></answer>",       # nested tags: no format reward
    "<think>" * 5000 + "</think><answer>A1B0C1</answer>",
])
def test_hostile_completions_never_raise(completion):
    value = RK.kk_reward(completion, ROW)
    assert value in (0.0, 0.1, 1.0, 1.1)


def test_reward_is_accuracy_plus_format_only():
    row = dict(ROW)
    assert RK.kk_reward("<think></think><answer>A1B0C1</answer>", row) == pytest.approx(1.1)
    assert RK.kk_reward("<think>A1:A>B0</think><answer>A1B0C1</answer>", row) == pytest.approx(1.1)  # no trace bonus
    assert RK.kk_reward("junk <answer>A1B0C1</answer>", row) == pytest.approx(1.0)  # right, bad format
    assert RK.kk_reward("<think></think><answer>A0B0C1</answer>", row) == pytest.approx(0.1)


def test_trace_rules():
    assert RK.kk_worked("<think>A1:A1>B0,ok</think><answer>A1B0</answer>")
    assert not RK.kk_worked("<think></think><answer>A1B0</answer>")
    assert not RK.kk_worked("<think>A1:A</think><answer>A>B0</answer>")  # the > is outside the think block
    assert not RK.kk_worked("<think>A1:A>B0")                             # think block never closed
    assert not RK.kk_worked("</think>A>B0<think>")                        # tags in the wrong order
    assert RK.kk_rechecks("<think>A1:A1>x;A0:A0>B1,ok</think><answer>A0B1</answer>")
    assert not RK.kk_rechecks("<think>A1:A1>B0,ok</think><answer>A1B0</answer>")
    assert not RK.kk_rechecks("<think></think><answer>;</answer>")


def test_mixture_is_mostly_direct_and_uses_the_vocabulary():
    vocab = RK.kk_vocab()
    rows = K.knights("train", 400, seed=0, people=4)
    seqs, plens = mixture_examples(rows, vocab, 0.2, seed=0, worked_demo=RK.kk_worked_demo,
                                   direct=RK.kk_direct_demo)
    texts = [vocab.decode(s[p:]) for s, p in zip(seqs, plens)]
    share = sum(map(RK.kk_worked, texts)) / len(texts)
    assert 0.12 < share < 0.28
    assert all(RK.kk_accuracy(t, r) == 1.0 for t, r in zip(texts, rows))
    assert plens == [len(vocab.encode(r["prompt"])) for r in rows]


def test_trace_stats_counts_with_the_task_rules():
    import torch

    from nanoseek.models.decoder import Decoder, DecoderConfig
    from nanoseek.rl.tasks import trace_stats

    vocab = RK.kk_vocab()
    task = RK.kk_task(vocab, people=3)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=len(vocab), n_layer=1, n_embd=16, n_head=2, n_kv_head=1,
                                  intermediate_size=32, max_seq_len=64))
    rows = K.knights("test", 6, seed=0, people=3)
    every = trace_stats(model, rows, task, 20, samples=2, worked_fn=lambda t: True,
                        rules={"recheck": lambda t: True, "never": lambda t: False})
    assert every["worked_share"] == 1.0 and every["n_worked"] == 12 and every["n_direct"] == 0
    assert every["recheck_share"] == 1.0 and every["never_share"] == 0.0
    stats = trace_stats(model, rows, task, 20, samples=2, worked_fn=RK.kk_worked, rules={"recheck": RK.kk_rechecks})
    assert stats["n_worked"] + stats["n_direct"] == 12 and set(every) == set(stats) | {"never_share"}
