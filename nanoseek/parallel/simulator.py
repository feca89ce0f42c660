"""Execute a pipeline schedule in simulated time (chapter 9).

Each rank runs its chunks in order; a chunk starts when the rank is free and its inputs have arrived
(a forward needs the previous stage's forward, a backward the next stage's backward, a W its own B).
Crossing ranks costs `comm` seconds of latency, which does not occupy either rank's compute. If no rank can
start its next chunk, the schedule deadlocks: `simulate` raises `Deadlock` naming what each rank waits for.

Costs use the zero-bubble paper's notation: F forward, B backward for the input, W backward for the weights;
a whole backward (kind "BW") costs B+W; an overlapped F&B chunk costs `fb` (default F+B+W: no overlap gain).
DualPipe's table writes B for the whole backward, i.e. our B+W: `formula_bubble` takes our notation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from nanoseek.parallel.schedules import Op, Schedule


@dataclass(frozen=True)
class Costs:
    F: float = 1.0
    B: float = 1.0
    W: float = 1.0
    fb: float | None = None   # an overlapped F&B chunk (F plus a whole backward); None: F+B+W
    comm: float = 0.0         # latency of one send between neighbouring ranks
    bw: float | None = None   # a whole backward chunk; None: B+W

    def __post_init__(self):
        for name in ("F", "B", "W", "comm"):
            if getattr(self, name) < 0:
                raise ValueError(f"Costs.{name} must be >= 0, got {name}={getattr(self, name)}")
        if self.fb is not None and self.fb < 0:
            raise ValueError(f"Costs.fb must be >= 0, got fb={self.fb}")

    @property
    def BW(self) -> float:
        return self.B + self.W if self.bw is None else self.bw

    @property
    def FB(self) -> float:
        return self.F + self.B + self.W if self.fb is None else self.fb

    def of(self, op: Op) -> float:
        return {"F": self.F, "B": self.B, "W": self.W, "BW": self.BW, "FB": self.FB}[op.kind]


class Deadlock(RuntimeError):
    """No rank can start its next chunk: each waits for one that can never run."""


@dataclass
class Event:
    rank: int
    op: Op
    start: float
    end: float


@dataclass
class Result:
    schedule: Schedule
    costs: Costs
    timeline: list[list[Event]]            # per rank, in execution order
    makespan: float
    busy: list[float]                      # compute time per rank
    bubble: list[float]                    # makespan - busy, per rank
    peak_activations: list[int]            # most chunks alive at once (F started, last backward not ended)
    param_stages: list[int]                # stages whose parameters a rank holds
    copies: dict[int, int] = field(default_factory=dict)  # stage -> ranks holding it

    @property
    def max_bubble(self) -> float:
        return max(self.bubble)


def _needs(schedule: Schedule, part: Op) -> list[tuple[str, int, int]]:
    """The chunks (kind, stage, mb) whose results `part` consumes."""
    s, m = part.stage, part.mb
    if part.kind == "F":
        return [("F", s - 1, m)] if s > 0 else []
    if part.kind in ("B", "BW"):
        return [("F", s, m)] + ([("B", s + 1, m)] if s < schedule.n_stages - 1 else [])
    return [("B", s, m)]  # W


def simulate(schedule: Schedule, costs: Costs = Costs(),
             op_cost: Callable[[int, Op], float] | None = None) -> Result:
    """Run `schedule` with `costs`; per-rank timelines, bubbles, peak activation memory, parameter copies.

    `op_cost(rank, op)`, if given, prices each chunk itself (e.g. the durations measured in a real run)."""
    P = schedule.n_ranks
    done: dict[tuple[str, int, int], tuple[float, int]] = {}  # chunk -> (end time, rank)
    pos, free = [0] * P, [0.0] * P
    timeline: list[list[Event]] = [[] for _ in range(P)]
    remaining = sum(len(o) for o in schedule.ops)
    while remaining:
        progressed = False
        for r in range(P):
            while pos[r] < len(schedule.ops[r]):
                op = schedule.ops[r][pos[r]]
                ready, ok = free[r], True
                for part in op.parts():
                    for need in _needs(schedule, part):
                        if need not in done:
                            ok = False
                            break
                        t, src = done[need]
                        ready = max(ready, t + (costs.comm if src != r else 0.0))
                    if not ok:
                        break
                if not ok:
                    break
                end = ready + (costs.of(op) if op_cost is None else op_cost(r, op))
                for part in op.parts():
                    key = ("B" if part.kind == "BW" else part.kind, part.stage, part.mb)
                    done[key] = (end, r)
                    if part.kind == "BW":
                        done[("W", part.stage, part.mb)] = (end, r)
                timeline[r].append(Event(r, op, ready, end))
                free[r] = end
                pos[r] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            waits = []
            for r in range(P):
                if pos[r] < len(schedule.ops[r]):
                    op = schedule.ops[r][pos[r]]
                    missing = [n for p in op.parts() for n in _needs(schedule, p) if n not in done]
                    waits.append(f"rank {r} at {op} waits for " + ", ".join(f"{k}{s}.{m}" for k, s, m in missing))
            raise Deadlock(f"{schedule.name}: deadlock; " + "; ".join(waits))
    makespan = max(free)
    busy = [sum(e.end - e.start for e in tl) for tl in timeline]
    return Result(schedule, costs, timeline, makespan, busy, [makespan - b for b in busy],
                  _peak_activations(timeline), [len(schedule.stages_on(r)) for r in range(P)],
                  _copies(schedule))


def _peak_activations(timeline: list[list[Event]]) -> list[int]:
    """A chunk's activations live from its forward's start to the end of its last backward part."""
    peaks = []
    for tl in timeline:
        deltas = []
        for e in tl:
            for p in e.op.parts():
                if p.kind == "F":
                    deltas.append((e.start, 1))
                elif p.kind in ("W", "BW"):
                    deltas.append((e.end, -1))
        deltas.sort(key=lambda d: (d[0], d[1]))  # frees at time t before allocations at t
        alive = peak = 0
        for _, d in deltas:
            alive += d
            peak = max(peak, alive)
        peaks.append(peak)
    return peaks


def _copies(schedule: Schedule) -> dict[int, int]:
    holders: dict[int, set[int]] = {}
    for r in range(schedule.n_ranks):
        for st in schedule.stages_on(r):
            holders.setdefault(st, set()).add(r)
    return {st: len(rs) for st, rs in sorted(holders.items())}


def formula_bubble(name: str, n_stages: int, costs: Costs) -> float:
    """The bubble of DualPipe's README table, in the zero-bubble paper's notation (its B = our B+W).

    1F1B: (PP-1)(F+B+W); ZB1P: (PP-1)(F+B-W); DualPipe and DualPipeV: (PP/2-1)(F&B+B-2W), PP the stages.
    GPipe has the same bubble as 1F1B.
    """
    F, B, W, FB = costs.F, costs.B, costs.W, costs.FB
    key = name.lower()
    if key in ("gpipe", "1f1b"):
        return (n_stages - 1) * (F + B + W)
    if key == "zb1p":
        return (n_stages - 1) * (F + B - W)
    if key in ("dualpipe", "dualpipev"):
        return (n_stages / 2 - 1) * (FB + B - 2 * W)
    raise ValueError(f"no bubble formula for name={name!r}")


def table_stages(schedule: Schedule) -> int:
    """PP of DualPipe's table: the pipeline stages (DualPipeV puts 2 stages on each of its PP/2 ranks)."""
    return schedule.n_stages
