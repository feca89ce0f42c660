"""minids.reasoning: seeded task generators, held-out splits and verifiers (chapter 10)."""
from __future__ import annotations

from fractions import Fraction

import pytest

from minids import reasoning as R


@pytest.mark.parametrize("task,opts,n", [("arithmetic", {"digits": 3, "ops": "+-*"}, 40),
                                         ("countdown", {}, 8), ("knights_knaves", {}, 40)])
def test_deterministic_and_splits_disjoint(task, opts, n):
    a = R.generate("train", n, seed=3, task=task, **opts)
    assert a == R.generate("train", n, seed=3, task=task, **opts)
    assert a != R.generate("train", n, seed=4, task=task, **opts)
    test = R.generate("test", n // 2, seed=3, task=task, **opts)
    test_other_seed = R.generate("test", n // 2, seed=9, task=task, **opts)
    train_keys = {r["key"] for r in a}
    assert not train_keys & {r["key"] for r in test + test_other_seed}
    assert all(R.split_of(r["key"]) == "test" for r in test)
    assert len({r["key"] for r in a}) == len(a)  # distinct problems
    for row in a + test:  # the reference answer verifies, a wrong one does not
        assert R.verify(row, row["answer"]), row
        assert not R.verify(row, row["answer"] + "1"), row


def test_arithmetic_answers():
    for row in R.arithmetic("train", 50, seed=0, digits=4, ops="+-*"):
        assert int(row["answer"]) == R.ARITH_OPS[row["op"]](row["a"], row["b"])
        assert 1000 <= row["a"] <= 9999 and row["prompt"] == f"{row['a']}{row['op']}{row['b']}="
    assert R.verify_arithmetic({"answer": "-12"}, " -12 ")
    assert not R.verify_arithmetic({"answer": "12"}, "12.0")
    assert not R.verify_arithmetic({"answer": "12"}, "١٢")  # non-ASCII digits


def test_countdown_reachable_and_solution_uses_each_number_once():
    rows = R.countdown("train", 8, seed=1)
    assert {len(r["numbers"]) for r in rows} <= {3, 4}
    for row in rows:
        assert Fraction(row["target"]) in R.countdown_values(row["numbers"])
        assert R.verify_countdown(row, row["answer"])
    assert R.countdown_solve([4, 1, 3, 6], 24) is not None  # needs a fraction: 6/(1-3/4)
    assert R.countdown_solve([1, 1, 1], 100) is None


def test_knights_knaves_unique_by_brute_force():
    rows = R.knights_knaves("train", 30, seed=2)
    assert {len(r["names"]) for r in rows} == {2, 3, 4, 5}
    for row in rows:
        statements = [_as_tuple(s) for s in row["statements"]]
        sols = R.kk_solutions(statements)
        assert sols == [tuple(row["solution"])]
        # the statement of every knight is true and of every knave false in the solution
        for i, s in enumerate(statements):
            assert R._kk_eval(s, sols[0]) == sols[0][i]
    row = rows[0]
    shuffled = ", ".join(reversed(row["answer"].split(", ")))
    assert R.verify_knights_knaves(row, shuffled.upper())
    assert not R.verify_knights_knaves(row, row["answer"].rsplit(", ", 1)[0])  # someone missing


def _as_tuple(s):
    return tuple(_as_tuple(x) if isinstance(x, list) else x for x in s)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="split='dev'"):
        R.generate("dev", 3)
    with pytest.raises(KeyError, match="sudoku"):
        R.generate("train", 3, task="sudoku")
    with pytest.raises(ValueError, match="digits=0"):
        R.arithmetic("train", 3, digits=0)
    with pytest.raises(ValueError, match="people=9"):
        R.knights_knaves("train", 3, people=9)
    with pytest.raises(ValueError, match="too small"):
        R.arithmetic("test", 50, digits=1)  # 1-digit sums have 100 problems, ~10 of them in test


def test_committed_tiny_jsonl_reproduce_byte_for_byte():
    import json

    from minids import build

    files = R.build_files("tiny", build.get_entry("reasoning").seed)
    committed = json.loads((build.HERE / "MANIFEST.json").read_text(encoding="utf-8"))
    rows = [row for row in committed["files"] if row["name"] == "reasoning"]
    assert {row["file"] for row in rows} == {f"tiny/{name}" for name in files}
    for row in rows:
        on_disk = (build.HERE / row["file"]).read_bytes()
        assert on_disk == files[row["file"].split("/", 1)[1]].encode("utf-8"), row["file"]
        first = json.loads(on_disk.decode("utf-8").splitlines()[0])
        assert R.verify(first, first["answer"])
