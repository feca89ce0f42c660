"""Pipeline schedules as data (chapter 9): GPipe, 1F1B, ZB1P, DualPipe and DualPipeV.

A schedule is, for each rank, the ordered list of chunks it computes. A chunk is one micro-batch through one
stage (a contiguous slice of the model's layers):

- ``F``  forward;
- ``B``  backward for the input only (the zero-bubble paper's B: the gradient sent upstream);
- ``W``  backward for the weights (the deferred half of the backward);
- ``BW`` the whole backward, B and W at once (what DualPipe's README table calls B);
- ``FB`` a forward of one micro-batch overlapped with the whole backward of another (DualPipe's F&B).

Notation: this module and chapter 9 follow the zero-bubble paper: B is the input gradient only, and the whole
backward is B+W. DualPipe's table writes B for the whole backward; ``nanoseek.parallel.simulator`` converts.

Stages are numbered along a micro-batch's path, 0 (embedding side) to n_stages-1 (the loss). Which rank holds a
stage may depend on the micro-batch: in DualPipe the second half of the micro-batches enter at the last rank.
Nothing here knows about time; ``simulator.simulate`` executes a schedule with costs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("F", "B", "W", "BW", "FB")


@dataclass(frozen=True)
class Op:
    """One chunk of work on one rank. For kind "FB", (stage, mb) is the forward part and (b_stage, b_mb) the
    whole backward overlapped with it."""
    kind: str
    stage: int
    mb: int
    b_stage: int = -1
    b_mb: int = -1

    def parts(self) -> list["Op"]:
        """An FB chunk is an F and a BW that run overlapped; every other chunk is itself."""
        if self.kind == "FB":
            return [Op("F", self.stage, self.mb), Op("BW", self.b_stage, self.b_mb)]
        return [self]

    def __str__(self) -> str:
        if self.kind == "FB":
            return f"F{self.stage}.{self.mb}&B{self.b_stage}.{self.b_mb}"
        return f"{self.kind}{self.stage}.{self.mb}"


@dataclass
class Schedule:
    """ops[r] is rank r's ordered list of chunks; stage_ranks(mb)[s] is the rank running stage s of mb."""
    name: str
    n_ranks: int
    n_micro: int
    n_stages: int
    ops: list[list[Op]]
    placement: list[list[int]] = field(default_factory=list)  # placement[mb][stage] -> rank

    def rank_of(self, stage: int, mb: int) -> int:
        return self.placement[mb][stage]

    def stages_on(self, rank: int) -> list[int]:
        """The distinct stages whose parameters rank holds."""
        return sorted({p.stage for op in self.ops[rank] for p in op.parts()})

    def split_backward(self) -> bool:
        """True when some backward is split into B and W (the weight gradient deferred)."""
        return any(op.kind == "W" for ops in self.ops for op in ops)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_common(n_ranks: int, n_micro: int) -> None:
    for name, v in (("n_ranks", n_ranks), ("n_micro", n_micro)):
        _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name} must be an integer >= 1, got {name}={v!r}")


def gpipe(n_ranks: int, n_micro: int) -> Schedule:
    """GPipe: every forward, then every whole backward (one stage per rank)."""
    _check_common(n_ranks, n_micro)
    ops = [[Op("F", r, m) for m in range(n_micro)] + [Op("BW", r, m) for m in range(n_micro)]
           for r in range(n_ranks)]
    return _finish("GPipe", n_ranks, n_micro, n_ranks, ops)


def one_f_one_b(n_ranks: int, n_micro: int) -> Schedule:
    """1F1B: rank r runs P-r-1 warm-up forwards, then alternates one forward and one whole backward."""
    _check_common(n_ranks, n_micro)
    ops = []
    for r in range(n_ranks):
        warm = min(n_ranks - r - 1, n_micro)
        seq = [Op("F", r, m) for m in range(warm)]
        for i in range(n_micro - warm):
            seq += [Op("F", r, warm + i), Op("BW", r, i)]
        seq += [Op("BW", r, m) for m in range(n_micro - warm, n_micro)]
        ops.append(seq)
    return _finish("1F1B", n_ranks, n_micro, n_ranks, ops)


def zb1p(n_ranks: int, n_micro: int) -> Schedule:
    """ZB1P (the zero-bubble paper's ZB-H1): 1F1B's order of F and B, with the weight gradients deferred.

    Rank r runs P-r-1 warm-up forwards and then F, B pairs as 1F1B does, but lets its W lag r backwards
    behind its B: the last rank, which would otherwise wait longest, pushes B's upstream fastest, and the W's
    fill the time each rank would spend waiting for the next gradient. Rank r holds at most (P-r) + r = P
    micro-batches' activations (F done, W not yet), as rank 0 of 1F1B does.
    """
    _check_common(n_ranks, n_micro)
    ops = []
    for r in range(n_ranks):
        warm = min(n_ranks - r - 1, n_micro)
        seq = [Op("F", r, m) for m in range(warm)]
        backwards = [m for m in range(n_micro)]
        w_next = 0
        for i, m in enumerate(backwards):
            if i + warm < n_micro:
                seq.append(Op("F", r, i + warm))
            seq.append(Op("B", r, m))
            if i + 1 - w_next > r:  # more than r weight gradients pending: run the oldest
                seq.append(Op("W", r, w_next))
                w_next += 1
        seq += [Op("W", r, m) for m in range(w_next, n_micro)]
        ops.append(seq)
    return _finish("ZB1P", n_ranks, n_micro, n_ranks, ops)


class _Bidirectional:
    """Builds DualPipe/DualPipeV's per-rank sequence. Phase 0 is the pipeline whose first stage sits on this
    rank's side, phase 1 the other; `stage[p]` and `mbs[p]` say which stage and micro-batches each phase runs."""

    def __init__(self, stage: tuple[int, int], mbs: tuple[list[int], list[int]]):
        self.stage, self.mbs = stage, mbs
        self.f_next, self.b_next = [0, 0], [0, 0]
        self.w_queue: list[Op] = []
        self.seq: list[Op] = []

    def _f(self, p: int) -> Op:
        op = Op("F", self.stage[p], self.mbs[p][self.f_next[p]])
        self.f_next[p] += 1
        return op

    def _b(self, p: int, zb: bool) -> Op:
        mb = self.mbs[p][self.b_next[p]]
        self.b_next[p] += 1
        if zb:  # input gradient now, weight gradient queued (FIFO, as DualPipe's WeightGradStore)
            self.w_queue.append(Op("W", self.stage[p], mb))
            return Op("B", self.stage[p], mb)
        return Op("BW", self.stage[p], mb)

    def F(self, p: int) -> None:
        self.seq.append(self._f(p))

    def B(self, p: int, zb: bool = False) -> None:
        self.seq.append(self._b(p, zb))

    def W(self) -> None:
        self.seq.append(self.w_queue.pop(0))

    def FB(self, pf: int, pb: int) -> None:
        f, b = self._f(pf), self._b(pb, False)
        self.seq.append(Op("FB", f.stage, f.mb, b.stage, b.mb))

    def steps(self, n: int, h: int, n_chunks: int, first_special: bool) -> list[Op]:
        """DualPipe's eight steps for a rank h places from its end of a pipeline of n ranks (n: the ranks
        of one half-pipeline in DualPipe, all ranks in DualPipeV; n_chunks micro-batches per phase)."""
        for _ in range((n - h - 1) * 2):             # 1: nF0
            self.F(0)
        for _ in range(h + 1):                        # 2: nF0F1
            self.F(0)
            self.F(1)
        for _ in range(n - h - 1):                    # 3: nB1W1F1, zero bubble
            self.B(1, zb=True)
            self.W()
            self.F(1)
        for i in range(n_chunks - 2 * n + h + 1):     # 4: nF0B1F1B0, the main step
            if i == 0 and first_special:              # the turning rank does not overlap these two
                self.F(0)
                self.B(1)
            else:
                self.FB(0, 1)
            self.FB(1, 0)
        for _ in range(n - h - 1):                    # 5: nB1F1B0
            self.B(1)
            self.FB(1, 0)
        zb = False
        for i in range(h + 1):                        # 6: nB1B0, the second half with zero bubble
            if i == (h + 1) // 2 and h % 2 == 1:
                zb = True
            self.B(1, zb)
            if i == (h + 1) // 2 and h % 2 == 0:
                zb = True
            self.B(0, zb)
        for _ in range(n - h - 1):                    # 7: nWB0
            self.W()
            self.B(0, zb=True)
        for _ in range(h + 1):                        # 8: nW
            self.W()
        assert not self.w_queue and self.f_next == [len(self.mbs[0]), len(self.mbs[1])]
        return self.seq


def dualpipe(n_ranks: int, n_micro: int) -> Schedule:
    """DualPipe (DeepSeek-V3): the first half of the micro-batches enter at rank 0, the second half at rank
    P-1; rank r holds stage r of the first direction and stage P-1-r of the second (two copies of every
    stage's parameters across the ranks)."""
    _check_common(n_ranks, n_micro)
    _require(n_ranks % 2 == 0, f"DualPipe needs an even number of ranks, got n_ranks={n_ranks}")
    _require(n_micro % 2 == 0, f"DualPipe needs an even number of micro-batches, got n_micro={n_micro}")
    _require(n_micro >= 2 * n_ranks, f"DualPipe needs at least twice as many micro-batches as ranks, "
                                     f"got n_micro={n_micro} < 2*n_ranks={2 * n_ranks}")
    P, half = n_ranks, n_micro // 2
    down, up = list(range(half)), list(range(half, n_micro))
    ops = []
    for r in range(P):
        h = min(r, P - 1 - r)
        if r < P // 2:   # phase 0 = the direction entering at rank 0
            b = _Bidirectional((r, P - 1 - r), (down, up))
        else:            # in the second half, phase 0 is the direction entering at rank P-1
            b = _Bidirectional((P - 1 - r, r), (up, down))
        ops.append(b.steps(P // 2, h, half, first_special=h == P // 2 - 1))
    placement = [list(range(P)) if m < half else list(range(P - 1, -1, -1)) for m in range(n_micro)]
    return _finish("DualPipe", P, n_micro, P, ops, placement)


def dualpipev(n_ranks: int, n_micro: int) -> Schedule:
    """DualPipeV ("cut-in-half"): 2P stages on P ranks in a V; rank r holds stages r and 2P-1-r, so every
    micro-batch goes down the ranks and back up, and the loss is computed on rank 0."""
    _check_common(n_ranks, n_micro)
    _require(n_micro >= 2 * n_ranks, f"DualPipeV needs at least twice as many micro-batches as ranks, "
                                     f"got n_micro={n_micro} < 2*n_ranks={2 * n_ranks}")
    P, mbs = n_ranks, list(range(n_micro))
    ops = [_Bidirectional((r, 2 * P - 1 - r), (mbs, mbs)).steps(P, r, n_micro, first_special=r == P - 1)
           for r in range(P)]
    placement = [list(range(P)) + list(range(P - 1, -1, -1)) for _ in range(n_micro)]
    return _finish("DualPipeV", P, n_micro, 2 * P, ops, placement)


SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b, "zb1p": zb1p, "dualpipe": dualpipe, "dualpipev": dualpipev}


def make(name: str, n_ranks: int, n_micro: int) -> Schedule:
    """The schedule called `name` (one of SCHEDULES) for n_ranks ranks and n_micro micro-batches."""
    key = name.lower()
    if key not in SCHEDULES:
        raise ValueError(f"unknown schedule name={name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[key](n_ranks, n_micro)


def _finish(name, n_ranks, n_micro, n_stages, ops, placement=None) -> Schedule:
    if placement is None:
        placement = [list(range(n_stages)) for _ in range(n_micro)]
    s = Schedule(name, n_ranks, n_micro, n_stages, ops, placement)
    validate(s)
    return s


def validate(s: Schedule) -> None:
    """Check the bookkeeping rules every schedule obeys; raise ValueError naming the rule broken.

    (Whether the order can run without a deadlock is the simulator's question: `simulator.simulate`.)
    """
    if len(s.ops) != s.n_ranks:
        raise ValueError(f"rule 'one op list per rank': {len(s.ops)} lists for n_ranks={s.n_ranks}")
    seen: dict[tuple[str, int, int], int] = {}
    for r, ops in enumerate(s.ops):
        for op in ops:
            if op.kind not in KINDS:
                raise ValueError(f"rule 'known kinds': {op} has kind {op.kind!r}, not one of {KINDS}")
            for p in op.parts():
                if not (0 <= p.stage < s.n_stages and 0 <= p.mb < s.n_micro):
                    raise ValueError(f"rule 'stage and micro-batch in range': {p} on rank {r}")
                if s.rank_of(p.stage, p.mb) != r:
                    raise ValueError(f"rule 'placement': {p} is on rank {r} but stage {p.stage} of micro-batch "
                                     f"{p.mb} belongs to rank {s.rank_of(p.stage, p.mb)}")
                key = ("B" if p.kind == "BW" else p.kind, p.stage, p.mb)
                if key in seen or (p.kind == "BW" and ("W", p.stage, p.mb) in seen):
                    raise ValueError(f"rule 'each chunk once': {p} appears twice")
                seen[key] = r
    for m in range(s.n_micro):
        for st in range(s.n_stages):
            for kind in ("F", "B"):
                if (kind, st, m) not in seen:
                    raise ValueError(f"rule 'every chunk scheduled': no {kind} for stage {st} of micro-batch {m}")
    split = {(st, m) for (k, st, m) in seen if k == "W"}
    for ops in s.ops:
        for op in ops:
            for p in op.parts():
                if p.kind == "B" and (p.stage, p.mb) not in split:
                    raise ValueError(f"rule 'a split backward has its W': {p} has no W")
