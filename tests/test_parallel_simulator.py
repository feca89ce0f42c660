"""Chapter 9: the simulator against DualPipe's README table (bubble and memory columns) over a grid.

Notation: the zero-bubble paper's (B = input gradient only, W = weight gradient; a whole backward costs
B+W). DualPipe's table writes B for the whole backward: its (PP-1)(F+B) is our (PP-1)(F+B+W), its
(PP-1)(F+B-2W) our (PP-1)(F+B-W), its (PP/2-1)(F&B+B-3W) our (PP/2-1)(F&B+B-2W).
"""
import pytest

from nanoseek.parallel import schedules as S
from nanoseek.parallel.schedules import Op, Schedule
from nanoseek.parallel.simulator import Costs, Deadlock, formula_bubble, simulate

GRID = [(P, M) for P in (4, 8, 16) for M in (2 * P, 4 * P)]
ANY_COSTS = [Costs(1, 1, 1), Costs(2, 1.5, 1), Costs(1, 2, 0.5), Costs(1, 1, 0.5), Costs(3, 1, 2), Costs(1, 3, 0.25),
             Costs(2, 3, 1.5), Costs(0.5, 2, 1)]
# ZB1P's formula assumes W <= min(F, B): a deferred W must fit into the gaps a forward or an input-gradient
# backward leaves; otherwise the bubble is larger (a search over 300 random costs found no exception either way)
W_SMALL = [c for c in ANY_COSTS if c.W <= min(c.F, c.B)]
# DualPipe's formula assumes F = B = W (equal chunks, as in its figure) and F+B <= F&B <= F+B+W
# (overlapping a forward with a backward saves at most one chunk)
EQUAL = [Costs(1, 1, 1, fb=f) for f in (2.0, 2.5, 3.0)] + [Costs(0.5, 0.5, 0.5, fb=1.25), Costs(2, 2, 2, fb=5.0)]


@pytest.mark.parametrize("P,M", GRID)
@pytest.mark.parametrize("costs", ANY_COSTS)
def test_1f1b_and_gpipe_bubble_is_pp_minus_1_times_f_plus_b(P, M, costs):
    for make in (S.one_f_one_b, S.gpipe):
        r = simulate(make(P, M), costs)
        want = formula_bubble("1f1b", P, costs)
        assert all(b == pytest.approx(want) for b in r.bubble), (make.__name__, r.bubble, want)


@pytest.mark.parametrize("P,M", GRID)
@pytest.mark.parametrize("costs", W_SMALL)
def test_zb1p_bubble_is_pp_minus_1_times_f_plus_b_minus_w(P, M, costs):
    r = simulate(S.zb1p(P, M), costs)
    assert r.max_bubble == pytest.approx(formula_bubble("zb1p", P, costs))


def test_zb1p_formula_needs_w_at_most_f_and_b():
    for c in (Costs(1, 1, 2), Costs(3, 1, 2), Costs(0.5, 2, 1)):  # W > B, W > B, W > F
        assert simulate(S.zb1p(4, 8), c).max_bubble > formula_bubble("zb1p", 4, c) + 0.4, c


@pytest.mark.parametrize("P,M", GRID)
@pytest.mark.parametrize("costs", EQUAL)
def test_dualpipe_and_dualpipev_bubble(P, M, costs):
    r = simulate(S.dualpipe(P, M), costs)
    assert r.max_bubble == pytest.approx(formula_bubble("dualpipe", P, costs))
    rv = simulate(S.dualpipev(P, M), costs)  # PP = 2P stages on P ranks
    assert rv.max_bubble == pytest.approx(formula_bubble("dualpipev", 2 * P, costs))


def test_dualpipe_formula_is_not_general():
    # unequal chunks: the simulated bubble departs from the table, so the assumption is stated, not decor
    c = Costs(2, 1.5, 1, fb=3)
    assert simulate(S.dualpipe(8, 16), c).max_bubble != pytest.approx(formula_bubble("dualpipe", 8, c))


@pytest.mark.parametrize("P,M", GRID)
def test_memory_columns(P, M):
    """Parameters: 1x a stage per rank (2x for DualPipe/V); activations: PP chunks (PP+1 for DualPipe/V)."""
    for make, params, acts, copies, stages in ((S.one_f_one_b, 1, P, 1, P), (S.zb1p, 1, P, 1, P),
                                                (S.dualpipe, 2, P + 1, 2, P), (S.dualpipev, 2, 2 * P + 1, 1, 2 * P)):
        r = simulate(make(P, M))
        assert max(r.param_stages) == params and min(r.param_stages) == params
        assert max(r.peak_activations) == acts, make.__name__  # DualPipeV: PP = 2P stages, so PP+1 = 2P+1
        assert set(r.copies.values()) == {copies} and len(r.copies) == stages


def test_gpipe_holds_every_micro_batch():
    assert max(simulate(S.gpipe(4, 16)).peak_activations) == 16


def test_comm_latency_adds_two_crossings_per_link_to_gpipe():
    for P in (4, 8):
        a, b = simulate(S.gpipe(P, 2 * P)), simulate(S.gpipe(P, 2 * P), Costs(comm=0.1))
        assert b.makespan - a.makespan == pytest.approx(2 * (P - 1) * 0.1)


def test_deadlock_is_detected_and_named():
    good = S.one_f_one_b(2, 2)
    # rank 1 asks for micro-batch 1's backward before it has run micro-batch 0's: F1.0 needs F0.0, and rank 0
    # runs BW0.0 before F0.1 ... reorder rank 0 so it waits for a backward that needs its own later forward
    bad_ops = [[Op("F", 0, 0), Op("BW", 0, 1), Op("F", 0, 1), Op("BW", 0, 0)], good.ops[1]]
    bad = Schedule("broken", 2, 2, 2, bad_ops, good.placement)
    with pytest.raises(Deadlock, match="rank 0 at BW0.1 waits for"):
        simulate(bad)


def test_timeline_respects_dependencies():
    r = simulate(S.dualpipe(4, 8), Costs(1, 1, 1, fb=2.5, comm=0.2))
    end = {}
    for tl in r.timeline:
        for e in tl:
            for p in e.op.parts():
                end[(p.kind if p.kind != "BW" else "B", p.stage, p.mb)] = (e.start, e.end)
    for (kind, st, m), (t0, _) in end.items():
        if kind == "F" and st > 0:
            assert t0 >= end[("F", st - 1, m)][1]
        if kind == "B" and st < 3:
            assert t0 >= end[("B", st + 1, m)][1]


def test_costs_reject_negative():
    with pytest.raises(ValueError, match="Costs.W"):
        Costs(W=-1)
