"""Chapter 9: pipeline schedules as data, their validity rules, and a deadlock-free communication plan."""
import pytest

from nanoseek.parallel import comm, schedules as S
from nanoseek.parallel.schedules import Op, Schedule, validate
from nanoseek.parallel.simulator import Deadlock


@pytest.mark.parametrize("name", sorted(S.SCHEDULES))
@pytest.mark.parametrize("P", [2, 4, 8])
def test_every_chunk_once_on_its_rank(name, P):
    s = S.make(name, P, 2 * P)
    validate(s)  # also run by make(); here the counts are checked by hand too
    parts = [p for ops in s.ops for op in ops for p in op.parts()]
    n_f = sum(p.kind == "F" for p in parts)
    n_b = sum(p.kind in ("B", "BW") for p in parts)
    assert n_f == n_b == s.n_stages * s.n_micro
    n_w = sum(p.kind == "W" for p in parts)
    assert n_w == sum(p.kind == "B" for p in parts)


def test_dualpipe_rules_raise_naming_the_rule():
    with pytest.raises(ValueError, match="even number of ranks"):
        S.dualpipe(3, 12)
    with pytest.raises(ValueError, match="even number of micro-batches"):
        S.dualpipe(4, 9)
    with pytest.raises(ValueError, match="at least twice as many micro-batches as ranks"):
        S.dualpipe(4, 6)
    with pytest.raises(ValueError, match="at least twice as many micro-batches as ranks"):
        S.dualpipev(4, 7)
    with pytest.raises(ValueError, match="n_ranks must be an integer >= 1"):
        S.one_f_one_b(0, 4)
    with pytest.raises(ValueError, match="unknown schedule"):
        S.make("interleaved", 4, 8)


def test_dualpipe_placement_two_directions():
    s = S.dualpipe(8, 20)
    for r in range(8):
        assert s.stages_on(r) == sorted({r, 7 - r})
    assert s.placement[0] == list(range(8)) and s.placement[19] == list(range(7, -1, -1))


def test_dualpipev_places_stages_r_and_2P_minus_1_minus_r():
    P = 4
    s = S.dualpipev(P, 10)
    assert s.n_stages == 2 * P
    for r in range(P):
        assert s.stages_on(r) == [r, 2 * P - 1 - r]


def test_zb1p_keeps_1f1b_order_of_forwards_and_backwards():
    a, b = S.one_f_one_b(4, 8), S.zb1p(4, 8)
    for r in range(4):
        fb_a = [(op.kind[0], op.mb) for op in a.ops[r]]
        fb_b = [(op.kind[0], op.mb) for op in b.ops[r] if op.kind != "W"]
        assert fb_a == fb_b


def test_validate_catches_broken_bookkeeping():
    s = S.one_f_one_b(2, 2)
    twice = Schedule("dup", 2, 2, 2, [s.ops[0] + [s.ops[0][0]], s.ops[1]], s.placement)
    with pytest.raises(ValueError, match="each chunk once"):
        validate(twice)
    missing = Schedule("missing", 2, 2, 2, [s.ops[0][:-1], s.ops[1]], s.placement)
    with pytest.raises(ValueError, match="every chunk scheduled"):
        validate(missing)
    misplaced = Schedule("misplaced", 2, 2, 2, [s.ops[0] + [Op("F", 1, 0)], s.ops[1]], s.placement)
    with pytest.raises(ValueError, match="placement"):
        validate(misplaced)


@pytest.mark.parametrize("name", sorted(S.SCHEDULES))
@pytest.mark.parametrize("P,M", [(2, 4), (2, 6), (4, 8), (4, 10), (4, 16), (8, 16), (8, 20)])
def test_communication_plan_is_deadlock_free_and_in_send_order(name, P, M):
    s = S.make(name, P, M)
    comm.check_plan(s, comm.plan(s))


def test_check_plan_catches_a_crossed_exchange():
    # both ranks wait for their send before posting the receive the other one needs: the textbook deadlock
    s = S.dualpipe(2, 4)
    naive = []
    for r in range(2):
        batches, pending = [], []
        for k, op in enumerate(s.ops[r] + [None]):
            batches.append(comm.Batch(pending, comm.needs(s, r, op) if op else []))
            pending = comm.produces(s, r, op) if op else []
        naive.append(batches)
    with pytest.raises(Deadlock):
        comm.check_plan(s, naive)
