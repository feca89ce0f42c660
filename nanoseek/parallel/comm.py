"""Which tensors a pipeline schedule sends, and in what order each rank posts them (chapter 9).

Every rank knows every rank's schedule, so it can post its receives from a neighbour in exactly the order the
neighbour sends (NCCL matches the point-to-point operations between two ranks in the order they are
issued, and gloo needs the same order when no tags are used). Before its k-th chunk a rank posts one batch:
the sends of what its previous chunk produced, and the receives its k-th chunk (and the next `lookahead`
chunks) needs; then it waits for the whole batch, as DualPipe's `_commit_and_wait_comm` does. `check_plan`
executes those batches under rendezvous semantics (a batch completes only when every partner has posted the
matching operation, the strictest a transport may be) and raises `Deadlock` if some batch can never complete.
"""
from __future__ import annotations

from dataclasses import dataclass

from nanoseek.parallel.schedules import Op, Schedule
from nanoseek.parallel.simulator import Deadlock


@dataclass(frozen=True)
class Message:
    """The activation into stage `stage` of micro-batch mb ("act"), or the gradient out of stage `stage`
    for stage-1 ("grad"), from rank src to rank dst."""
    kind: str
    stage: int
    mb: int
    src: int
    dst: int


def needs(s: Schedule, rank: int, op: Op) -> list[Message]:
    """The messages chunk `op` on `rank` must receive from other ranks before it runs."""
    out = []
    for p in op.parts():
        if p.kind == "F" and p.stage > 0:
            src = s.rank_of(p.stage - 1, p.mb)
            if src != rank:
                out.append(Message("act", p.stage, p.mb, src, rank))
        elif p.kind in ("B", "BW") and p.stage < s.n_stages - 1:
            src = s.rank_of(p.stage + 1, p.mb)
            if src != rank:
                out.append(Message("grad", p.stage + 1, p.mb, src, rank))
    return out


def produces(s: Schedule, rank: int, op: Op) -> list[Message]:
    """The messages chunk `op` on `rank` sends to other ranks after it runs."""
    out = []
    for p in op.parts():
        if p.kind == "F" and p.stage < s.n_stages - 1:
            dst = s.rank_of(p.stage + 1, p.mb)
            if dst != rank:
                out.append(Message("act", p.stage + 1, p.mb, rank, dst))
        elif p.kind in ("B", "BW") and p.stage > 0:
            dst = s.rank_of(p.stage - 1, p.mb)
            if dst != rank:
                out.append(Message("grad", p.stage, p.mb, rank, dst))
    return out


@dataclass
class Batch:
    sends: list[Message]
    recvs: list[Message]


def plan(s: Schedule) -> list[list[Batch]]:
    """plan[r][k] is posted before rank r's k-th chunk; plan[r][len(ops)] flushes the last sends.

    Each receive first goes into the batch of the chunk that needs it. Where that deadlocks (two ranks each
    wait in a batch whose send the other receives only in a later batch: DualPipe's ranks do this when both
    directions' forwards cross), the receive moves up into the batch its rank is stuck in, as DualPipe's
    code posts `_recv_forward` ahead; `check_plan` proves the result."""
    send_order: dict[tuple[int, int], list[Message]] = {}
    for r in range(s.n_ranks):
        for op in s.ops[r]:
            for m in produces(s, r, op):
                send_order.setdefault((m.src, m.dst), []).append(m)
    out = []
    for r in range(s.n_ranks):
        posted = {src: 0 for src in range(s.n_ranks)}  # receives posted from src, in src's send order
        batches, pending = [], []
        ops = s.ops[r]
        for k in range(len(ops) + 1):
            recvs = []
            if k < len(ops):
                for m in needs(s, r, ops[k]):
                    order = send_order[(m.src, r)]
                    i = order.index(m)
                    while posted[m.src] <= i:
                        recvs.append(order[posted[m.src]])
                        posted[m.src] += 1
            batches.append(Batch(pending, recvs))
            pending = produces(s, r, ops[k]) if k < len(ops) else []
        out.append(batches)
    while (stuck := _run(s, out)) is not None:
        at, moves = stuck, 0
        for r in range(s.n_ranks):
            if at[r] >= len(out[r]):
                continue
            for m in out[r][at[r]].sends:
                pr = m.dst
                for k in range(at[pr] + 1, len(out[pr])):   # the partner posts this receive too late
                    late = [x for x in out[pr][k].recvs if x.src == m.src]
                    if m in late:                            # move it, and the ones from src before it
                        upto = late.index(m) + 1
                        moving = late[:upto]
                        out[pr][k].recvs = [x for x in out[pr][k].recvs if x not in moving]
                        early = []                           # earlier batches' receives from src stay first
                        for j in range(at[pr] + 1, k):
                            early += [x for x in out[pr][j].recvs if x.src == m.src]
                            out[pr][j].recvs = [x for x in out[pr][j].recvs if x.src != m.src]
                        moving = early + moving
                        out[pr][at[pr]].recvs += moving
                        moves += 1
                        break
        if not moves:
            raise Deadlock(f"{s.name}: communication deadlock; ranks wait at batches {at}")
    return out


def _run(s: Schedule, batches: list[list[Batch]]) -> list[int] | None:
    """Execute the batches under rendezvous semantics; None if all complete, else where each rank waits."""
    P = s.n_ranks
    where: dict[tuple[str, Message], tuple[int, int]] = {}  # ("send"|"recv", message) -> (rank, batch)
    for r in range(P):
        for k, b in enumerate(batches[r]):
            for m in b.sends:
                where[("send", m)] = (r, k)
            for m in b.recvs:
                where[("recv", m)] = (r, k)
    at = [0] * P  # the batch each rank has posted and waits on
    while any(at[r] < len(batches[r]) for r in range(P)):
        moved = False
        for r in range(P):
            while at[r] < len(batches[r]):
                b = batches[r][at[r]]
                partners = [where.get(("recv", m)) for m in b.sends] + [where.get(("send", m)) for m in b.recvs]
                if any(p is None for p in partners):
                    raise Deadlock(f"{s.name}: rank {r} batch {at[r]} has an operation with no partner")
                if all(at[pr] >= pk for pr, pk in partners):  # every partner has posted its side
                    at[r] += 1
                    moved = True
                else:
                    break
        if not moved:
            return at
    return None


def check_plan(s: Schedule, batches: list[list[Batch]]) -> None:
    """Raise Deadlock if some rank's batch can never complete when every send and receive must meet its
    partner (the chunks between batches always finish, so only the batches' order matters). Receives from
    one rank must be posted in the order that rank sends them."""
    for r in range(s.n_ranks):
        order: dict[int, list[Message]] = {}
        for b in batches[r]:
            for m in b.recvs:
                order.setdefault(m.src, []).append(m)
        for src, got in order.items():
            sent = [m for b in batches[src] for m in b.sends if m.dst == r]
            if got != sent:
                raise Deadlock(f"{s.name}: rank {r} posts its receives from rank {src} out of send order")
    at = _run(s, batches)
    if at is not None:
        raise Deadlock(f"{s.name}: communication deadlock; ranks wait at batches {at}")
