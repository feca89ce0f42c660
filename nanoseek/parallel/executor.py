"""Run a pipeline schedule for real, one process per rank, with torch.distributed (chapter 9).

The model is chapter 4's `Decoder`, cut into stages: stage 0 holds the embedding and the first blocks, the last
stage the final norm, the LM head and the loss, so the labels live with the last stage. Every nn.Linear
becomes a `SplitLinear`, so a B chunk leaves its weight gradients in the `WeightGradStore` until its W chunk.
Ranks exchange only contiguous (micro_batch, seq_len, n_embd) hidden states and their gradients, posted in
the batches `comm.plan` proves deadlock-free; gloo on CPUs, NCCL on GPUs (one GPU per rank), nothing else.

    python -m nanoseek.parallel.executor --world 4 --schedules 1f1b,zb1p,dualpipe,dualpipev --out run.json

After the step, the gradients of every copy of a stage (DualPipe keeps two) and of a tied embedding are summed
with one all-reduce; rank 0 checks the per-micro-batch losses (`torch.equal`) and the gradients
(`calc_diff`, the DualPipe example's measure) against the unsplit model on the same micro-batches.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.parallel import comm, schedules
from nanoseek.parallel.schedules import Op, Schedule
from nanoseek.parallel.split_backward import STORE, split_linears


@dataclass
class PipeConfig:
    schedules: list[str] = field(default_factory=lambda: ["gpipe", "1f1b", "zb1p", "dualpipe", "dualpipev"])
    n_micro: int = 8
    micro_batch: int = 2
    seq_len: int = 16
    vocab_size: int = 64
    n_embd: int = 32
    n_head: int = 4
    intermediate_size: int = 64
    layers_per_stage: int = 1
    tie_embeddings: bool = False
    also_tied: bool = False  # run every schedule a second time with the head tied to the embedding
    dtype: str = "float64"
    seed: int = 0
    steps: int = 1          # timed steps after one untimed warm-up step (steps=1: no warm-up)
    check: bool = True      # compare with the unsplit model (rank 0 runs it)


def calc_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """1 − 2Σxy / Σ(x² + y²): 0 for equal tensors (the DualPipe examples' measure, bar 1e-13)."""
    x, y = x.double(), y.double()
    denom = (x * x + y * y).sum().item()
    return 0.0 if denom == 0 else 1 - 2 * (x * y).sum().item() / denom


def decoder_config(cfg: PipeConfig, n_stages: int) -> DecoderConfig:
    return DecoderConfig(vocab_size=cfg.vocab_size, n_layer=n_stages * cfg.layers_per_stage, n_embd=cfg.n_embd,
                         n_head=cfg.n_head, n_kv_head=cfg.n_head, intermediate_size=cfg.intermediate_size,
                         max_seq_len=cfg.seq_len, tie_embeddings=cfg.tie_embeddings)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of one micro-batch, in the logits' dtype: (B, T, V), (B, T) -> ()."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


class Stage(nn.Module):
    """Layers [first, last) of a Decoder; stage 0 adds the embedding, the last stage the norm and head.
    Parameter names are the Decoder's, so a stage's gradients line up with the unsplit model's."""

    def __init__(self, model: Decoder, index: int, n_stages: int, per_stage: int):
        super().__init__()
        self.index, self.is_first, self.is_last = index, index == 0, index == n_stages - 1
        self.embed = copy.deepcopy(model.embed) if self.is_first else None
        self.layers = nn.ModuleDict({str(i): copy.deepcopy(model.layers[i])
                                     for i in range(index * per_stage, (index + 1) * per_stage)})
        self.norm = copy.deepcopy(model.norm) if self.is_last else None
        self.lm_head = nn.Linear(model.config.n_embd, model.config.vocab_size, bias=False) if self.is_last else None
        if self.is_last:  # an untied copy even for a tied model: the tie is restored by summing gradients
            self.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())
        split_linears(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T) ids or (B, T, C) -> (B, T, C) or (B, T, V)
        if self.embed is not None:
            x = self.embed(x)
        for block in self.layers.values():
            x = block(x)
        if self.is_last:
            x = self.lm_head(self.norm(x))
        return x


def reference_name(name: str, tied: bool) -> str:
    return "embed.weight" if tied and name == "lm_head.weight" else name


def make_batch(cfg: PipeConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank draws the same (M, mb, T) token ids and next-token targets from the seed."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    ids = torch.randint(0, cfg.vocab_size, (cfg.n_micro, cfg.micro_batch, cfg.seq_len + 1), generator=g)
    return ids[..., :-1].contiguous().to(device), ids[..., 1:].contiguous().to(device)


class PipelineRank:
    """This rank's stages and one training step of `schedule` over them."""

    def __init__(self, schedule: Schedule, stages: dict[int, Stage], rank: int, shape: tuple[int, ...],
                 dtype: torch.dtype, device: torch.device):
        self.s, self.stages, self.rank = schedule, stages, rank
        self.shape, self.dtype, self.device = shape, dtype, device
        self.batches = comm.plan(schedule)[rank]

    def step(self, idx: torch.Tensor, tgt: torch.Tensor) -> dict:
        s, r = self.s, self.rank
        STORE.clear()
        inputs, outputs, local, incoming, outgoing = {}, {}, {}, {}, {}
        losses: dict[int, torch.Tensor] = {}
        events, wait = [], 0.0
        _sync(self.device)
        t_start = time.perf_counter()
        ops = s.ops[r]
        for k, batch in enumerate(self.batches):
            p2p = []
            for m in batch.sends:
                t = outgoing.pop(m)
                if not t.is_contiguous():
                    raise ValueError(f"rank {r}: {m} is not contiguous; pipeline sends only contiguous tensors")
                p2p.append(dist.P2POp(dist.isend, t, m.dst))
            for m in batch.recvs:
                incoming[m] = torch.empty(self.shape, dtype=self.dtype, device=self.device)
                p2p.append(dist.P2POp(dist.irecv, incoming[m], m.src))
            t0 = time.perf_counter()
            if p2p:
                for work in dist.batch_isend_irecv(p2p):
                    work.wait()
                _sync(self.device)
            t1 = time.perf_counter()
            wait += t1 - t0
            if k == len(ops):
                break
            op = ops[k]
            for part in op.parts():
                self._compute(part, idx, tgt, inputs, outputs, local, incoming, outgoing, losses)
            _sync(self.device)
            events.append((str(op), op.kind, t1 - t_start, time.perf_counter() - t_start))
        total = time.perf_counter() - t_start
        if len(STORE):
            raise RuntimeError(f"rank {r}: {len(STORE)} weight-gradient chunks never ran")
        return {"losses": {m: l for m, l in losses.items()}, "events": events, "step_s": total, "wait_s": wait,
                "compute_s": sum(e[3] - e[2] for e in events)}

    def _compute(self, p: Op, idx, tgt, inputs, outputs, local, incoming, outgoing, losses) -> None:
        s, r, key = self.s, self.rank, (p.stage, p.mb)
        stage = self.stages[p.stage]
        if p.kind == "F":
            if p.stage == 0:
                x = idx[p.mb]
            elif s.rank_of(p.stage - 1, p.mb) == r:
                x = local.pop(("act", p.stage, p.mb))
            else:
                x = incoming.pop(comm.Message("act", p.stage, p.mb, s.rank_of(p.stage - 1, p.mb), r))
                x.requires_grad_()
            inputs[key] = x
            y = stage(x)
            if stage.is_last:
                y = loss_fn(y, tgt[p.mb])
                losses[p.mb] = y.detach()
            else:
                dst = s.rank_of(p.stage + 1, p.mb)
                if dst == r:
                    local[("act", p.stage + 1, p.mb)] = y.detach().requires_grad_()
                else:
                    outgoing[comm.Message("act", p.stage + 1, p.mb, r, dst)] = y.detach()
            outputs[key] = y
        elif p.kind in ("B", "BW"):
            y = outputs.pop(key)
            if stage.is_last:
                grad = None
            elif s.rank_of(p.stage + 1, p.mb) == r:
                grad = local.pop(("grad", p.stage + 1, p.mb))
            else:
                grad = incoming.pop(comm.Message("grad", p.stage + 1, p.mb, s.rank_of(p.stage + 1, p.mb), r))
            if p.kind == "B":   # input gradient now, weight gradients filed under this chunk for its W
                with STORE.deferring(key):
                    torch.autograd.backward(y, grad)
            else:
                torch.autograd.backward(y, grad)
            x = inputs.pop(key)
            if p.stage > 0:
                dst = s.rank_of(p.stage - 1, p.mb)
                if dst == r:
                    local[("grad", p.stage, p.mb)] = x.grad
                else:
                    outgoing[comm.Message("grad", p.stage, p.mb, r, dst)] = x.grad
        else:  # W
            STORE.pop(key)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reduce_gradients(ref: Decoder, stages: dict[int, Stage], tied: bool) -> dict[str, torch.Tensor]:
    """Sum every stage copy's gradients (and a tied head's into the embedding) over all ranks: one
    all-reduce of the whole model's gradients, laid out as the unsplit model's parameters."""
    names = [n for n, _ in ref.named_parameters()]
    params = dict(ref.named_parameters())
    offsets, total = {}, 0
    for n in names:
        offsets[n] = total
        total += params[n].numel()
    p0 = next(ref.parameters())
    flat = torch.zeros(total, dtype=p0.dtype, device=p0.device)
    for stage in stages.values():
        for n, p in stage.named_parameters():
            if p.grad is not None:
                rn = reference_name(n, tied)
                flat[offsets[rn]:offsets[rn] + p.numel()] += p.grad.reshape(-1)
    dist.all_reduce(flat)
    return {n: flat[offsets[n]:offsets[n] + params[n].numel()].view_as(params[n]) for n in names}


def reference_step(ref: Decoder, idx: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The unsplit model on the same micro-batches: per-micro-batch losses, each backpropagated."""
    losses = []
    for m in range(idx.shape[0]):
        logits, _ = ref(idx[m])
        loss = loss_fn(logits, tgt[m])
        loss.backward()
        losses.append(loss.detach())
    return torch.stack(losses), {n: p.grad for n, p in ref.named_parameters()}


def run_schedule(name: str, cfg: PipeConfig, rank: int, world: int, device: torch.device) -> dict:
    """One schedule on this rank: build stages, run warm-up and timed steps, check against the reference."""
    dtype = getattr(torch, cfg.dtype)
    sched = schedules.make(name, world, cfg.n_micro)
    torch.manual_seed(cfg.seed)
    ref = Decoder(decoder_config(cfg, sched.n_stages)).to(device=device, dtype=dtype)
    stages = {st: Stage(ref, st, sched.n_stages, cfg.layers_per_stage) for st in sched.stages_on(rank)}
    runner = PipelineRank(sched, stages, rank, (cfg.micro_batch, cfg.seq_len, cfg.n_embd), dtype, device)
    idx, tgt = make_batch(cfg, device)
    results = []
    for step in range(cfg.steps + (1 if cfg.steps > 1 else 0)):
        for st in stages.values():
            st.zero_grad(set_to_none=True)
        dist.barrier()
        out = runner.step(idx, tgt)
        dist.barrier()
        results.append(out)
    timed = results[1:] if len(results) > 1 else results
    last = timed[-1]
    loss_vec = torch.zeros(cfg.n_micro, dtype=dtype, device=device)
    for m, l in last["losses"].items():
        loss_vec[m] = l
    dist.all_reduce(loss_vec)           # each entry is computed on one rank, the others add exact zeros
    grads = reduce_gradients(ref, stages, cfg.tie_embeddings)
    per_rank = {"step_s": [o["step_s"] for o in timed], "wait_s": [o["wait_s"] for o in timed],
                "compute_s": [o["compute_s"] for o in timed], "events": last["events"]}
    gathered = [None] * world
    dist.all_gather_object(gathered, per_rank)
    if rank != 0:
        return {}
    record = {"schedule": sched.name, "world": world, "n_micro": cfg.n_micro, "n_stages": sched.n_stages,
              "tied": cfg.tie_embeddings, "ranks": gathered}
    if cfg.check:
        ref_losses, ref_grads = reference_step(ref, idx, tgt)
        record["loss_equal"] = bool(torch.equal(loss_vec, ref_losses))
        record["losses"] = loss_vec.tolist()
        diffs = {n: calc_diff(grads[n], ref_grads[n]) for n in grads}
        record["max_calc_diff"] = max(diffs.values())
        record["worst_param"] = max(diffs, key=diffs.get)
    steps = [max(g["step_s"][i] for g in gathered) for i in range(len(timed))]
    record["step_s"] = statistics.median(steps)
    return record


def _worker(rank: int, world: int, cfg_dict: dict, port: int, backend: str, out_path: str) -> None:
    torch.set_num_threads(1)
    cfg = PipeConfig(**cfg_dict)
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))
    try:
        variants = [cfg] + ([PipeConfig(**{**asdict(cfg), "tie_embeddings": True})] if cfg.also_tied else [])
        records = [run_schedule(name, c, rank, world, device) for c in variants for name in c.schedules]
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump({"config": asdict(cfg), "backend": backend, "records": records}, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(world: int, cfg: PipeConfig, out_path: str, backend: str = "gloo", timeout: float = 120.0) -> dict:
    """Start `world` processes (spawn), wait at most `timeout` seconds, kill them all on failure or timeout;
    return what rank 0 wrote."""
    import torch.multiprocessing as mp

    if world < 1:
        raise ValueError(f"world must be >= 1, got world={world}")
    for name in cfg.schedules:  # a schedule's rules fail here, before any process starts
        schedules.make(name, world, cfg.n_micro)
    if os.path.exists(out_path):
        os.remove(out_path)
    if backend == "nccl":  # NVLink multicast stays off: the shared GPU hosts this runs on require it
        for var in ("NCCL_NVLS_ENABLE", "NVSHMEM_DISABLE_NVLS"):
            os.environ.setdefault(var, "0" if var == "NCCL_NVLS_ENABLE" else "1")
        os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    ctx = mp.start_processes(_worker, args=(world, asdict(cfg), _free_port(), backend, out_path), nprocs=world,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline run with world={world} did not finish in {timeout:.0f} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
            p.join(5)
    with open(out_path) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=120.0)
    for f_name, f in PipeConfig.__dataclass_fields__.items():
        default = f.default if f.default_factory is MISSING else f.default_factory()
        if isinstance(default, bool):
            ap.add_argument(f"--{f_name.replace('_', '-')}", type=lambda v: v.lower() in ("1", "true", "yes"),
                            default=default)
        elif isinstance(default, list):
            ap.add_argument(f"--{f_name.replace('_', '-')}", type=lambda v: v.split(","), default=default)
        else:
            ap.add_argument(f"--{f_name.replace('_', '-')}", type=type(default), default=default)
    args = vars(ap.parse_args(argv))
    world, backend, out, timeout = args.pop("world"), args.pop("backend"), args.pop("out"), args.pop("timeout")
    result = launch(world, PipeConfig(**args), out, backend, timeout)
    for rec in result["records"]:
        print(f"{rec['schedule']:>9}{' tied' if rec['tied'] else ''}: step {rec['step_s'] * 1e3:8.1f} ms  loss equal {rec.get('loss_equal')}  "
              f"max calc_diff {rec.get('max_calc_diff', float('nan')):.1e}")


if __name__ == "__main__":
    sys.exit(main())


def compare_with_simulator(record: dict) -> dict:
    """Set a real run beside the simulator: `replay` prices every chunk with its own measured duration (so
    any difference is communication and overhead the simulator does not model); `uniform` uses the median
    F, B, W, B+W and F&B durations for every chunk, as the table's formulas do."""
    import statistics as st

    from nanoseek.parallel.simulator import Costs, Event, Result, simulate

    s = schedules.make(record["schedule"], record["world"], record["n_micro"])
    by_name = {str(op): op for ops in s.ops for op in ops}
    durations, by_kind = {}, {}
    for r, g in enumerate(record["ranks"]):
        for name, kind, t0, t1 in g["events"]:
            durations[(r, name)] = t1 - t0
            by_kind.setdefault(kind, []).append(t1 - t0)
    med = {k: st.median(v) for k, v in by_kind.items()}
    replay = simulate(s, op_cost=lambda r, op: durations[(r, str(op))])
    costs = Costs(F=med["F"], B=med.get("B", med.get("BW", 0.0)), W=med.get("W", 0.0), bw=med.get("BW"),
                  fb=med.get("FB"))
    uniform = simulate(s, costs)
    step = max(g["step_s"][-1] for g in record["ranks"])  # the step whose chunks were recorded
    idle = [g["step_s"][-1] - g["compute_s"][-1] for g in record["ranks"]]
    timeline = [[Event(r, by_name[name], t0, t1) for name, _, t0, t1 in g["events"]]
                for r, g in enumerate(record["ranks"])]
    busy = [sum(e.end - e.start for e in tl) for tl in timeline]
    measured = Result(s, costs, timeline, step, busy, [step - b for b in busy], [], [], {})
    return {"schedule": s.name, "world": record["world"], "n_micro": record["n_micro"], "measured": measured,
            "measured_step_s": step, "replay_step_s": replay.makespan, "uniform_step_s": uniform.makespan,
            "measured_idle_s": idle, "replay_idle_s": replay.bubble, "costs_s": med,
            "replay": replay}
