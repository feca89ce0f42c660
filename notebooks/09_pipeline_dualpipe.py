# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 9: Pipeline parallelism and DualPipe
#
# DeepSeek-V3 was trained on 2048 GPUs, and its 61 layers do not fit on one of them. One way to spread a model
# over devices is **pipeline parallelism (流水线并行, PP)**: cut the layers into stages, one stage per device,
# and stream **micro-batches (微批次)** through them like cars through a factory line. The price is the
# **pipeline bubble (流水线气泡)**: time a device waits for its neighbours. In this chapter we write the
# schedules that shrink it — GPipe, 1F1B, the zero-bubble schedule that splits the backward in two, and
# DeepSeek-V3's **DualPipe (双向流水线)**, which feeds micro-batches from both ends — as plain data; we
# execute them in a simulator that reproduces the bubble table of the DualPipe repository; and then we run
# every one of them for real, in separate processes talking through `torch.distributed`, and check that the
# pipeline computes exactly what the unsplit model computes.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nanoseek/nanoseek/blob/main/notebooks/09_pipeline_dualpipe.ipynb)

# %%
# Setup: on Colab, install nanoseek (Colab keeps its own torch). Locally, `make lab` has done this.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nanoseek[hf] @ git+https://github.com/nanoseek/nanoseek@main"], check=True)

import json
import os
import statistics
import tempfile
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

import nanoseek
from nanoseek import device, pick, seed_everything
from nanoseek.benchmarking import budget_table, read_result

seed_everything(1337)
print("nanoseek", nanoseek.__version__, "| torch", torch.__version__, "| device:", device())
display(Markdown(budget_table(
    "09_pipeline_dualpipe",
    tiny="simulated schedules up to 16 ranks; a real run on 2 CPU processes (gloo), one 64-wide decoder block per stage",
    full="the same, with 256-wide blocks (the multi-GPU run is `benchmarks/gpu/pipeline.sh`)",
    full_record="09_pipeline_dualpipe_full")))

# %% [markdown]
# **What you will learn**
# - why a pipeline idles, and to compute its bubble for GPipe, 1F1B, ZB1P, DualPipe and DualPipeV, by
#   simulation and by formula;
# - to split a linear layer's backward into the input gradient (B, now) and the weight gradient (W, later);
# - to read DualPipe's schedule: two directions, overlapped forward-and-backward chunks, W's in the gaps;
# - to run a schedule across processes with `torch.distributed` and prove it computes the unsplit model's
#   loss bit for bit and its gradients to 1e-13.
#
# **Notation.** We follow the zero-bubble paper {cite}`qi2024zerobubble`: **F** is a stage's forward for one
# micro-batch, **B** its backward *for the input only*, **W** its backward *for the weights*, so a whole
# backward costs B+W. The DualPipe repository's table {cite}`dualpipe2025` writes 𝐵 for the *whole* backward;
# wherever we quote it we translate (its 𝐵 is our B+W).

# %%
CFG = pick(
    tiny=dict(n_embd=64, n_head=4, intermediate_size=128, seq_len=32, micro_batch=2, vocab_size=256,
              timing_reps=15, real_world=2, real_micro=8, real_steps=3),
    full=dict(n_embd=256, n_head=4, intermediate_size=512, seq_len=128, micro_batch=4, vocab_size=1024,
              timing_reps=30, real_world=2, real_micro=8, real_steps=3),
)
CFG

# %% [markdown]
# ## Three ways to use many devices
# **Data parallelism (数据并行, DP)** copies the whole model to every device and gives each a slice of the
# batch. **Tensor parallelism (张量并行, TP)** cuts each layer's matrices, so every device computes a slice of
# every token. **Pipeline parallelism** cuts the model between layers. DeepSeek-V3 used 16-way PP, 64-way
# expert parallelism and ZeRO-1 data parallelism, and no TP {cite}`deepseekv3`. The picture: four devices,
# a model of four layers.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
colors = plt.cm.tab10.colors
for ax, title in zip(axes, ["data parallel", "tensor parallel", "pipeline parallel"]):
    ax.set_xlim(0, 4); ax.set_ylim(0, 4); ax.set_xticks([]); ax.set_yticks([]); ax.set_title(title)
    ax.set_xlabel("device 0 … 3"); ax.set_ylabel("layer 1 … 4 (bottom to top)")
for d in range(4):
    for layer in range(4):
        axes[0].add_patch(plt.Rectangle((d + 0.1, layer + 0.1), 0.8, 0.8, color=colors[layer], alpha=0.7))
        axes[1].add_patch(plt.Rectangle((d + 0.1, layer + 0.1), 0.8, 0.8, color=colors[layer], alpha=0.25 + 0.15 * d))
    axes[2].add_patch(plt.Rectangle((d + 0.1, d + 0.1), 0.8, 0.8, color=colors[d], alpha=0.7))
axes[0].text(2, -0.5, "every device: all layers, its own data", ha="center", fontsize=8)
axes[1].text(2, -0.5, "every device: a slice of every layer", ha="center", fontsize=8)
axes[2].text(2, -0.5, "every device: one stage of layers", ha="center", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Why a pipeline has bubbles
# Stage $s$ cannot start micro-batch $m$ before stage $s-1$ has finished it, and its backward waits for stage
# $s+1$'s backward. **GPipe** {cite}`huang2019gpipe` runs all forwards, then all backwards. Let us simulate it
# by hand, with every chunk costing one unit: a forward starts when the rank is free and its input is there.

# %%
def gpipe_by_hand(P: int, M: int, F: float = 1.0, BW: float = 2.0) -> tuple[float, list[float]]:
    """Makespan and per-rank idle time of GPipe with P ranks, M micro-batches; BW = a whole backward."""
    f_end = [[0.0] * M for _ in range(P)]
    b_end = [[0.0] * M for _ in range(P)]
    free = [0.0] * P
    for r in range(P):                         # forwards, rank by rank (rank r needs rank r-1's result)
        for m in range(M):
            start = max(free[r], f_end[r - 1][m] if r else 0.0)
            f_end[r][m] = free[r] = start + F
    for r in reversed(range(P)):               # backwards, from the last stage back to the first
        for m in range(M):
            start = max(free[r], b_end[r + 1][m] if r < P - 1 else 0.0)
            b_end[r][m] = free[r] = start + BW
    makespan = max(free)
    return makespan, [makespan - M * (F + BW)] * P


print(gpipe_by_hand(4, 8))

# %% [markdown]
# Every rank idles $(P-1)(F+B+W)$: the first forward needs $P-1$ forwards before it reaches the last rank, and
# the last backward needs $P-1$ backwards to come back. The package's simulator does the same bookkeeping
# for any schedule given as data: for each rank the ordered list of chunks it runs.

# %%
from nanoseek.parallel import schedules as S
from nanoseek.parallel.simulator import Costs, formula_bubble, simulate

nanoseek.show(S.gpipe)
nanoseek.show(S.Op)
for P, M in [(4, 8), (8, 20), (16, 32)]:
    mine = gpipe_by_hand(P, M, F=1.0, BW=1.5)
    pkg = simulate(S.gpipe(P, M), Costs(F=1.0, B=1.0, W=0.5))
    assert mine[0] == pkg.makespan and mine[1] == pkg.bubble, (mine, pkg.makespan)
print("hand-made GPipe == package simulator ✓")

# %% [markdown]
# The bubble does not grow with the number of micro-batches, so more micro-batches make it a smaller share.
# But GPipe keeps every micro-batch's activations until its backward: memory grows with $M$. **1F1B**
# {cite}`narayanan2019pipedream,narayanan2021megatron` starts each micro-batch's backward as soon as it can:
# after $P-r-1$ warm-up forwards, rank $r$ alternates one forward and one backward. Same bubble, but at most
# $P$ micro-batches in flight.

# %%
def one_f_one_b_by_hand(P: int, M: int, r: int) -> list[tuple[str, int]]:
    warm = min(P - r - 1, M)
    order = [("F", m) for m in range(warm)]
    for i in range(M - warm):
        order += [("F", warm + i), ("BW", i)]
    return order + [("BW", m) for m in range(M - warm, M)]


for P, M in [(4, 8), (8, 20)]:
    sched = S.one_f_one_b(P, M)
    for r in range(P):
        assert one_f_one_b_by_hand(P, M, r) == [(op.kind, op.mb) for op in sched.ops[r]]
for name in ("gpipe", "1f1b"):
    res = simulate(S.make(name, 4, 16))
    print(f"{name:>5}: bubble {res.max_bubble:g} units, peak activations {max(res.peak_activations)} micro-batches")

# %% [markdown]
# ## Zero bubble: split the backward
# A linear layer $y = xW^\top$ has two backward products: $\partial x = \partial y\, W$, which the previous
# stage is waiting for, and $\partial W = \partial y^\top x$, which nobody needs until the optimizer step. The
# zero-bubble paper {cite}`qi2024zerobubble` computes $\partial x$ at once (chunk B) and queues $\partial W$
# (chunk W) to fill idle time later. Inline, as an autograd function with a queue:

# %%
from torch import nn

queue: list = []


class DeferredLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):                  # x (N, in), w (out, in) -> (N, out)
        ctx.save_for_backward(x, w)
        return x @ w.T

    @staticmethod
    def backward(ctx, dy):                   # dy (N, out)
        x, w = ctx.saved_tensors

        def weight_grad():                   # W, later: dW = dyᵀ x (out, in)
            w.grad = dy.T @ x if w.grad is None else w.grad + dy.T @ x
        queue.append(weight_grad)
        return dy @ w, None                  # B, now: dx = dy W (N, in)


from nanoseek.parallel.split_backward import STORE, SplitLinear, split_linears

nanoseek.show(SplitLinear)
x = torch.randn(6, 5, dtype=torch.float64)
lin = split_linears(nn.Linear(5, 3, bias=False).double())
w_inline = lin.weight.detach().clone().requires_grad_()
xi, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
DeferredLinear.apply(xi, w_inline).sin().sum().backward()
with STORE.deferring("demo"):
    lin(xp).sin().sum().backward()
assert w_inline.grad is None and lin.weight.grad is None      # after B: input gradients only
torch.testing.assert_close(xi.grad, xp.grad)
queue.pop()()
STORE.pop("demo")                                              # W
torch.testing.assert_close(w_inline.grad, lin.weight.grad)
print("inline deferred linear == SplitLinear ✓ (B first, W later)")

# %% [markdown]
# **ZB1P** (the paper's ZB-H1) keeps 1F1B's order of F and B and lets rank $r$'s W's lag $r$ backwards behind
# its B's: the last rank, which would wait longest, sends gradients upstream fastest, and the W's fill the
# gaps. Memory stays at $P$ micro-batches per rank. Its bubble is $(P-1)(F+B-W)$ in our notation.

# %%
nanoseek.show(S.zb1p)

# %% [markdown]
# ## DualPipe: both ends at once
# DualPipe {cite}`deepseekv3,dualpipe2025` puts two copies of the model on the ranks, one per direction: rank
# $r$ holds stage $r$ of the first and stage $P-1-r$ of the second. The first half of the micro-batches
# enters at rank 0, the second half at rank $P-1$. In the middle of the schedule each rank has a forward of one
# direction and a backward of the other to do, and runs them as one **F&B chunk** whose computation and
# communication overlap (on GPUs, attention and MoE all-to-all of one micro-batch hide behind the other's).
# **DualPipeV** (Sea AI Lab's "cut-in-half") folds the same schedule into a V: $2P$ stages on $P$ ranks, rank
# $r$ holding stages $r$ and $2P-1-r$, with one copy of the parameters. Both are eight steps on each rank,
# the same in our code as in the repository's `step()`:

# %%
nanoseek.show(S._Bidirectional.steps)

# %% [markdown]
# The timelines at the DualPipe repository's example settings (8 ranks and 20 micro-batches; DualPipeV on 4
# ranks, 8 stages, 10 micro-batches), with F = B = W = 1 and an F&B chunk of 2.5 (overlap saves half a chunk).
# Darker colours are the second direction; half-height bars are the two halves of an F&B chunk.

# %%
from nanoseek.parallel.plot import plot_timeline

example = Costs(F=1, B=1, W=1, fb=2.5)
settings = [("gpipe", 8, 20), ("1f1b", 8, 20), ("zb1p", 8, 20), ("dualpipe", 8, 20), ("dualpipev", 4, 10)]
fig, axes = plt.subplots(len(settings), 1, figsize=(13, 17))
for ax, (name, P, M) in zip(axes, settings):
    plot_timeline(simulate(S.make(name, P, M), example), ax=ax, labels=P <= 8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The bubble table, simulated and by formula
# The DualPipe repository's table gives each schedule's bubble and memory for $PP$ stages. We translate it to
# our notation and compute both sides for 8 stages. The formulas are exact only under assumptions the table
# does not state, which the simulator exposes: ZB1P needs $W \le \min(F, B)$ (a deferred W must fit into a
# gap), DualPipe and DualPipeV need equal chunks, $F = B = W$, and $F+B \le F\&B \le F+B+W$. Inside those,
# simulation and formula agree to the last digit (for every grid point of ranks 4, 8, 16 and 2× or 4× as many
# micro-batches: `tests/test_parallel_simulator.py`).

# %%
from nanoseek.parallel.plot import table

rows = []
table_text = {"1f1b": "(PP-1)(F+B)", "zb1p": "(PP-1)(F+B-2W)", "dualpipe": "(PP/2-1)(F&B+B-3W)",
              "dualpipev": "(PP/2-1)(F&B+B-3W)"}
ours_text = {"1f1b": "(PP-1)(F+B+W)", "zb1p": "(PP-1)(F+B-W)", "dualpipe": "(PP/2-1)(F&B+B-2W)",
             "dualpipev": "(PP/2-1)(F&B+B-2W)"}
for costs in (Costs(1, 1, 1, fb=3), Costs(1, 1, 1, fb=2.5), Costs(2, 1.5, 1, fb=3.5)):
    for name in ("1f1b", "zb1p", "dualpipe", "dualpipev"):
        P = 4 if name == "dualpipev" else 8            # 8 stages for every schedule
        s = S.make(name, P, 20)
        r = simulate(s, costs)
        f = formula_bubble(name, s.n_stages, costs)
        rows.append({"F,B,W,F&B": f"{costs.F:g},{costs.B:g},{costs.W:g},{costs.FB:g}", "schedule": s.name,
                     "DualPipe table (its B = our B+W)": table_text[name], "ours": ours_text[name],
                     "formula": f, "simulated": r.max_bubble, "ranks": s.n_ranks,
                     "stages per rank": max(r.param_stages), "peak activations": max(r.peak_activations)})
display(Markdown(table(rows)))
equal_chunks = [r for r in rows if r["F,B,W,F&B"] != "2,1.5,1,3.5"]
assert all(r["formula"] == r["simulated"] for r in equal_chunks)
assert all(r["formula"] == r["simulated"] for r in rows if r["schedule"] in ("1F1B", "ZB1P"))  # W <= min(F, B)
print("formula == simulation wherever the table's assumptions hold ✓")

# %% [markdown]
# The memory columns come out too: 1F1B and ZB1P hold one stage's parameters per rank and at most $PP$
# micro-batches' activations; DualPipe holds two stages (two copies of the model across the ranks) and
# $PP+1$; DualPipeV two stages, no copies, and $PP+1$ chunks on half as many ranks. With unequal costs
# (the last rows) DualPipe's simulated bubble departs from the formula — the table is a guide, the
# simulator is the measurement.
#
# An explorer for your own settings (in a live notebook; below it, the static view for the book):

# %%
from nanoseek.parallel.plot import explorer

try:
    explorer()
except ImportError:
    print("ipywidgets is not installed: the static plot below shows the same view")
plot_timeline(simulate(S.dualpipe(4, 8), Costs(1, 1, 1, fb=2.5)))
plt.show()

# %% [markdown]
# ## Costs measured on a real decoder block
# The table's F, B and W are abstract. Here they are measured on chapter 4's decoder block, with its linear
# layers turned into `SplitLinear`: F a forward, B the input gradient (weight gradients queued), W the queued
# weight gradients, and B+W one ordinary backward. On a CPU nothing overlaps, so F&B = F + B + W.

# %%
from nanoseek.models.decoder import Block, DecoderConfig

block_cfg = DecoderConfig(vocab_size=CFG["vocab_size"], n_layer=1, n_embd=CFG["n_embd"], n_head=CFG["n_head"],
                          n_kv_head=CFG["n_head"], intermediate_size=CFG["intermediate_size"],
                          max_seq_len=CFG["seq_len"])
block = split_linears(Block(block_cfg, 0))
xb = torch.randn(CFG["micro_batch"], CFG["seq_len"], CFG["n_embd"])
gy = torch.randn_like(xb)


def time_chunks(reps: int) -> dict[str, float]:
    t = {"F": [], "B": [], "W": [], "B+W": []}
    for i in range(reps):
        x = xb.clone().requires_grad_()
        t0 = time.perf_counter(); y = block(x); t1 = time.perf_counter()
        with STORE.deferring(i):
            y.backward(gy)
        t2 = time.perf_counter(); STORE.pop(i); t3 = time.perf_counter()
        y = block(xb.clone().requires_grad_())
        t4 = time.perf_counter(); y.backward(gy); t5 = time.perf_counter()
        for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t5 - t4)):
            t[k].append(v)
    return {k: statistics.median(v) for k, v in t.items()}


time_chunks(3)  # warm-up
ms = time_chunks(CFG["timing_reps"])
display(Markdown(table([{k: f"{1e3 * v:.3f} ms" for k, v in ms.items()}])))
block_costs = Costs(F=ms["F"], B=ms["B"], W=ms["W"])
rows = []
for name in ("gpipe", "1f1b", "zb1p", "dualpipe", "dualpipev"):
    s = S.make(name, 4 if name == "dualpipev" else 8, 20)
    r = simulate(s, block_costs)
    rows.append({"schedule": s.name, "step (ms)": 1e3 * r.makespan, "bubble (ms)": 1e3 * r.max_bubble,
                 "bubble share": r.max_bubble / r.makespan, "formula (ms)": 1e3 * formula_bubble(name, s.n_stages, block_costs)})
display(Markdown(table(rows)))

# %% [markdown]
# ## A real run: processes, gloo, and the unsplit model as the referee
# `nanoseek.parallel.executor` runs the same schedules for real. Each rank is a process; the model is
# chapter 4's `Decoder` cut into one block per stage (the embedding on the first stage, the norm, head, loss
# and labels on the last); ranks exchange only contiguous hidden states and their gradients, with
# `torch.distributed` point-to-point operations (gloo on CPUs, NCCL on GPUs). Each rank posts its sends and
# receives in batches, as DualPipe's code does, in an order `nanoseek.parallel.comm` proves free of
# deadlocks. After the step, rank 0 runs the unsplit model on the same micro-batches: the losses must be
# equal bit for bit, the gradients within DualPipe's bar. We launch it as a subprocess, which works the same
# in Jupyter and in a script, and bound it in time.

# %%
from nanoseek.parallel import comm
from nanoseek.parallel.executor import PipelineRank, compare_with_simulator

nanoseek.show(PipelineRank.step)
with tempfile.TemporaryDirectory() as tmp:
    out_path = os.path.join(tmp, "run.json")
    cmd = [sys.executable, "-m", "nanoseek.parallel.executor", "--world", str(CFG["real_world"]),
           "--n-micro", str(CFG["real_micro"]), "--steps", str(CFG["real_steps"]), "--out", out_path,
           "--n-embd", str(CFG["n_embd"]), "--n-head", str(CFG["n_head"]), "--intermediate-size",
           str(CFG["intermediate_size"]), "--seq-len", str(CFG["seq_len"]), "--micro-batch",
           str(CFG["micro_batch"]), "--vocab-size", str(CFG["vocab_size"]), "--also-tied", "1", "--timeout", "240"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    real = json.load(open(out_path))["records"]

rows = []
for rec in real:
    c = compare_with_simulator(rec)
    rows.append({"schedule": rec["schedule"] + (" (tied)" if rec["tied"] else ""), "losses equal": rec["loss_equal"],
                 "max calc_diff": f"{rec['max_calc_diff']:.1e}", "measured step (ms)": 1e3 * c["measured_step_s"],
                 "simulated, measured chunks (ms)": 1e3 * c["replay_step_s"],
                 "measured idle per rank (ms)": [round(1e3 * v, 1) for v in c["measured_idle_s"]],
                 "simulated idle per rank (ms)": [round(1e3 * v, 1) for v in c["replay_idle_s"]]})
    assert rec["loss_equal"] and rec["max_calc_diff"] < 1e-13
    # the simulator with each chunk's own duration is a lower bound: real chunks cannot start earlier
    assert c["measured_step_s"] >= 0.95 * c["replay_step_s"]
display(Markdown(table(rows)))
print("every schedule: the unsplit model's losses exactly, its gradients to calc_diff < 1e-13 ✓")

# %% [markdown]
# The simulator, fed with every chunk's measured duration, gives the earliest each rank could have finished
# if messages cost nothing: no real chunk can start earlier than it does there, so it is a lower bound, and
# the assert above checks that. The measured step is longer by what the simulator leaves out: gloo copying
# each message through a socket, the bookkeeping between chunks, and — on two CPU cores shared by two
# processes and other jobs — waiting for a core. With chunks this small that is a large share; the benchmark
# below runs wider blocks. The real run's timeline, drawn with the same plotting code:

# %%
c = compare_with_simulator(next(r for r in real if r["schedule"] == "DualPipe" and not r["tied"]))
fig, axes = plt.subplots(2, 1, figsize=(12, 4.5))
plot_timeline(c["measured"], ax=axes[0], title="DualPipe, measured on 2 CPU processes", xlabel="time (s)")
plot_timeline(c["replay"], ax=axes[1], title="DualPipe, simulated with the measured chunk durations", xlabel="time (s)")
axes[0].set_xlim(0, c["measured_step_s"]); axes[1].set_xlim(0, c["measured_step_s"])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Paper says / we measured
# The DualPipe repository gives formulas, not measurements. Our simulation checks them over a grid
# (`benchmarks/results/pipeline_sim.md`), and real runs set the measured step beside the simulator's
# prediction from the run's own chunk durations (`pipeline_cpu.md`: 2 and 4 CPU processes with 256-wide
# blocks; `pipeline_gpu.md`: issue 13's multi-GPU run, `benchmarks/gpu/pipeline.sh`).

# %%
sim_rec, cpu_rec, gpu_rec = read_result("pipeline_sim"), read_result("pipeline_cpu"), read_result("pipeline_gpu")
rows = []
for name in ("1F1B", "ZB1P", "DualPipe", "DualPipeV"):
    row = {"schedule": name, "paper (DualPipe table, its B = whole backward)": table_text[name.lower()]}
    if sim_rec:
        sims = [r for r in sim_rec["data"]["rows"] if r["schedule"] == name]
        ok = [r for r in sims if r["equal"]]
        row["simulation = formula"] = f"{len(ok)} of {len(sims)} grid points"
    else:
        row["simulation = formula"] = "not recorded yet"
    for label, rec in (("CPU", cpu_rec), ("GPU", gpu_rec)):
        if rec is None:
            row[f"{label}: measured / simulated step"] = "not recorded yet"
            continue
        got = [r for r in rec["data"]["rows"] if r["schedule"] == name]
        row[f"{label}: measured / simulated step"] = ", ".join(
            f"{r['world']} ranks {r['measured_step_s'] / r['replay_step_s']:.2f}x" for r in got) or "not run"
    rows.append(row)
display(Markdown(table(rows)))

# %%
if cpu_rec:
    ratios = [r["measured_step_s"] / r["replay_step_s"] for r in cpu_rec["data"]["rows"]]
    print(f"CPU processes ({cpu_rec['date'][:10]}): measured step / simulated step from {min(ratios):.2f}x "
          f"to {max(ratios):.2f}x over {len(ratios)} runs")
    assert all(r >= 0.95 for r in ratios)  # the simulator, given the chunks' durations, is a lower bound
    assert all(r["loss_equal"] and r["max_calc_diff"] < 1e-13 for r in cpu_rec["data"]["rows"])
here = [compare_with_simulator(rec) for rec in real]
here = [c["measured_step_s"] / c["replay_step_s"] for c in here]
print(f"this notebook's run ({CFG['n_embd']}-wide blocks, 2 processes): from {min(here):.2f}x to {max(here):.2f}x")

# %% [markdown]
# On the grid, the simulation equals the formula for 1F1B everywhere and for ZB1P wherever $W \le \min(F,B)$;
# for DualPipe and DualPipeV only at equal chunk costs (the other grid points have unequal costs on purpose).
# On CPU processes the measured step stays above the simulated one by the communication and scheduling costs
# the simulator counts as free; compare the two printed ranges to see how that share depends on how long a
# chunk computes. Issue 13's GPU run, with chunks of several milliseconds and NVLink between the ranks, is where
# the goal of 10% can be tested; until it is recorded the GPU column says so.
#
# ## In the wild
# - **The DualPipe repository** {cite}`dualpipe2025`: `DualPipe` and `DualPipeV` modules with the eight steps
#   we transcribed, a `WeightGradStore` like ours, and a hook, `overlapped_forward_backward`, where a real
#   model interleaves one micro-batch's attention and MoE computation with the other's all-to-all
#   communication on separate CUDA streams. Its examples check the loss with `torch.equal` and gradients with
#   `calc_diff < 1e-13`, as our tests do.
# - **`torch.distributed.pipelining`** (PyTorch): splits a model into stages by tracing (`pipeline`,
#   `pipe_split`) or by hand (`PipelineStage`) and ships `ScheduleGPipe`, `Schedule1F1B`,
#   `ScheduleInterleaved1F1B`, `ScheduleLoopedBFS`, the zero-bubble `ScheduleInterleavedZeroBubble` and
#   `ScheduleZBVZeroBubble`, and `ScheduleDualPipeV` (in the torch this book installs), with the backward split
#   into input and weight parts by autograd itself rather than by a custom linear layer.
# - **torchtitan** {cite}`liang2024torchtitan`: composes those schedules with FSDP, tensor and context
#   parallelism for Llama-scale training, with configuration for the number of stages per rank and checkpoints
#   that survive a change of layout.
#
# What production adds to our executor: activations freed as soon as a chunk is done, a real optimizer step
# and gradient clipping across stages, communication on its own stream overlapped with compute, and the
# stage boundaries chosen so every stage costs the same.
#
# ## Summary
# - A pipeline of $P$ ranks idles $(P-1)(F+B+W)$ per rank with GPipe or 1F1B; 1F1B holds $P$ micro-batches
#   instead of all of them.
# - Splitting the backward into B (input gradient, now) and W (weight gradient, later) lets ZB1P cut the
#   bubble to $(P-1)(F+B-W)$ at the same memory, exactly when $W \le \min(F, B)$.
# - DualPipe feeds both ends, overlaps one direction's forward with the other's backward, and reaches
#   $(P/2-1)(F\&B+B-2W)$ for equal chunks, at twice the parameters and $P+1$ activations; DualPipeV keeps the
#   bubble with one copy of the parameters on half the ranks.
# - Schedules are data; a simulator executes them, detects deadlocks and reproduces the table; the same data
#   drives a real `torch.distributed` run that matches the unsplit model exactly.
#
# ## Exercises
# Edit each function, run its cell, and the checker tells you whether it is right. Solutions are hidden below
# each exercise.
#
# **Exercise 1 (easy): count the bubble.** Given one rank's chunks as `(start, end)` intervals and the
# step's makespan, return the rank's idle time. The checker also feeds it 1F1B timelines from the simulator,
# where every rank should idle $(P-1)(F+B+W)$.

# %% tags=["exercise"]
from nanoseek.exercises.ch09 import check_rank_idle


def rank_idle(intervals: list[tuple[float, float]], makespan: float) -> float:
    """Idle time of a rank whose chunks occupy `intervals` (non-overlapping) in a step of `makespan`."""
    raise NotImplementedError  # your code here


check_rank_idle(rank_idle)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch09 import check_rank_idle


def rank_idle(intervals: list[tuple[float, float]], makespan: float) -> float:
    # idle = the whole step minus the busy time; the wait before the first chunk counts
    return makespan - sum(end - start for start, end in intervals)


assert check_rank_idle(rank_idle)

# %% [markdown]
# **Exercise 2 (medium, the chapter's core): the deferred weight gradient.** Write the backward of
# $y = xW^\top$ split in two: return $\partial x$ now, and append to `store` a closure that, when called,
# adds $\partial W$ into `weight.grad` (creating it if it is None). Do not touch `weight.grad` in B.

# %% tags=["exercise"]
import torch
from nanoseek.exercises.ch09 import check_split_linear_backward


def split_linear_backward(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, store: list) -> torch.Tensor:
    """x (N, in), weight (out, in), grad_out (N, out) -> grad_input (N, in); queue the weight gradient."""
    raise NotImplementedError  # your code here


check_split_linear_backward(split_linear_backward)

# %% tags=["solution", "hide-input"]
import torch
from nanoseek.exercises.ch09 import check_split_linear_backward


def split_linear_backward(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, store: list) -> torch.Tensor:
    def weight_grad():
        g = grad_out.T @ x                       # (out, in)
        weight.grad = g if weight.grad is None else weight.grad + g
    store.append(weight_grad)
    return grad_out @ weight.detach()             # (N, in)


assert check_split_linear_backward(split_linear_backward)

# %% [markdown]
# **Exercise 3 (hard): find the deadlock.** A schedule is `schedule.ops[r]`, rank `r`'s chunks in order
# (`op.kind` in F, B, W, BW, FB; `op.parts()` splits an FB into its F and BW). A forward of stage `s` needs the
# forward of stage `s-1` of the same micro-batch, a backward (B or BW) needs its own forward and the backward
# of stage `s+1` (the last stage, `schedule.n_stages - 1`, needs only its forward), a W needs its B (a BW is
# both). Return True if running each rank's chunks in order can get stuck.

# %% tags=["exercise"]
from nanoseek.exercises.ch09 import check_deadlocks


def deadlocks(schedule) -> bool:
    raise NotImplementedError  # your code here


check_deadlocks(deadlocks)

# %% tags=["solution", "hide-input"]
from nanoseek.exercises.ch09 import check_deadlocks


def deadlocks(schedule) -> bool:
    done, pos = set(), [0] * schedule.n_ranks

    def needs(p):
        if p.kind == "F":
            return [("F", p.stage - 1, p.mb)] if p.stage > 0 else []
        if p.kind in ("B", "BW"):
            later = [("B", p.stage + 1, p.mb)] if p.stage < schedule.n_stages - 1 else []
            return [("F", p.stage, p.mb)] + later
        return [("B", p.stage, p.mb)]

    while True:
        moved = False
        for r in range(schedule.n_ranks):
            while pos[r] < len(schedule.ops[r]):
                op = schedule.ops[r][pos[r]]
                if not all(n in done for p in op.parts() for n in needs(p)):
                    break                        # this rank waits; let the others move
                for p in op.parts():
                    done.add(("B" if p.kind == "BW" else p.kind, p.stage, p.mb))
                pos[r] += 1
                moved = True
        if all(pos[r] == len(schedule.ops[r]) for r in range(schedule.n_ranks)):
            return False
        if not moved:
            return True


assert check_deadlocks(deadlocks)

# %% [markdown]
# ## Further reading
# - GPipe {cite}`huang2019gpipe`; 1F1B from PipeDream {cite}`narayanan2019pipedream` and Megatron-LM
#   {cite}`narayanan2021megatron`.
# - Zero-bubble pipeline parallelism, the B/W split and ZB-H1/H2 {cite}`qi2024zerobubble`.
# - DualPipe in the DeepSeek-V3 report (§3.2.1) {cite}`deepseekv3` and its repository {cite}`dualpipe2025`.
# - torchtitan {cite}`liang2024torchtitan`.
