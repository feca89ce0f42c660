"""Why was chapter 6's `full` training slow? ms/step and host syncs per step of its MoE model. (Chapter 6.)

    python3 benchmarks/moe_probe.py [--steps 10]      # on a GPU; NANOSEEK_GPU_SMOKE=1 for a CPU check

Chapter 6's notebook at `full` once trained at 2.4 steps/s on an H200 (`benchmarks/results/h200_full_runs.md`).
On the CPU, the notebook's process trains exactly as fast as a fresh one (grad mode, anomaly mode, threads and
deterministic flags are the defaults there), so the process state is not the cause. What the step does is:
with `dispatch="sorted"` each of the 64 experts of each of the 5 MoE layers runs its own small matmuls,
forward and backward (~20,000 aten calls a step, counted on the CPU), and the step stalled on host syncs:
`torch.bincount` on a GPU reads its largest index back to size its output (two per layer), `counts.tolist()`
(one per layer) and the bias update's `load.sum() == 0` and `float(maxvio)` (two per layer). This probe times
the notebook's model on the notebook's data for the old counting (bincount, per-layer syncs) and the new
(`expert_counts`, one sync per step), with sorted and grouped dispatch, and counts the syncs per step with
`torch.cuda.set_sync_debug_mode`. Writes `benchmarks/results/moe_probe.md` / `.json`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nanoseek.nn.moe as moe  # noqa: E402
from nanoseek.benchmarking import write_result  # noqa: E402
from nanoseek.data import CharVocab, load_shakespeare, window_batcher  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.train import TrainConfig, train  # noqa: E402

SMOKE = os.environ.get("NANOSEEK_GPU_SMOKE") == "1"
# chapter 6's `full` model (its CFG): 6 layers of 384, 1 dense, 64 routed experts (width 128) top-6 + 2 shared
MODEL = dict(n_layer=6, n_embd=384, n_head=6, n_kv_head=6, intermediate_size=1536, max_seq_len=256, ffn="moe",
             first_k_dense_replace=1, n_routed_experts=64, num_experts_per_tok=6, moe_intermediate_size=128,
             n_shared_experts=2, n_group=8, topk_group=4)
B, T = 64, 256
if SMOKE:
    MODEL.update(n_layer=2, n_embd=64, n_head=4, n_kv_head=4, intermediate_size=128, n_routed_experts=16,
                 moe_intermediate_size=16, n_group=4, topk_group=2, max_seq_len=32)
    B, T = 4, 32

_new_counts, _new_update = moe.expert_counts, moe.update_router_bias


def _old_counts(indices, n_experts):  # what MoE did before: torch.bincount (a host sync on a GPU)
    return torch.bincount(indices.reshape(-1), minlength=n_experts)


@torch.no_grad()
def _old_update(model, gamma=None):  # before: two host syncs per layer
    vios = []
    for m in moe.moe_layers(model):
        g = m.cfg.bias_update_speed if gamma is None else gamma
        if m.load_accum.sum() == 0:
            continue
        vios.append(moe.max_violation(m.load_accum))
        if g > 0:
            m.gate.e_score_correction_bias.copy_(moe.bias_update(m.gate.e_score_correction_bias, m.load_accum, g))
        m.load_accum.zero_()
    return vios


def measure(get_batch, vocab_size, dispatch, old, steps, dev):
    moe.expert_counts = _old_counts if old else _new_counts
    moe.update_router_bias = _old_update if old else _new_update
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=vocab_size, **MODEL, moe_dispatch=dispatch, bias_update_speed=0.001))
    cfg = dict(eval_batches=1, warmup_steps=1, progress=False, device=dev)
    hook = moe.BiasUpdateHook()
    train(model, get_batch, TrainConfig(max_steps=3, eval_every=3, **cfg), on_step=hook)  # warm-up
    syncs = None
    if dev == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            train(model, get_batch, TrainConfig(max_steps=1, eval_every=1, **cfg), on_step=hook)
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)  # includes the 1-batch evals around it
    result = train(model, get_batch, TrainConfig(max_steps=steps, eval_every=steps, **cfg), on_step=hook)
    moe.expert_counts, moe.update_router_bias = _new_counts, _new_update
    return 1000 * result.seconds / steps, syncs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    text, val = load_shakespeare("train", "full"), load_shakespeare("val", "full")
    vocab = CharVocab.from_text(text + val)
    get_batch = window_batcher(torch.tensor(vocab.encode(text)), torch.tensor(vocab.encode(val)), T, B)
    rows = []
    for dispatch in ("sorted", "grouped"):
        for old in (True, False):
            ms, syncs = measure(get_batch, len(vocab), dispatch, old, 2 if SMOKE else args.steps, dev)
            rows.append(dict(dispatch=dispatch, counting="bincount + per-layer syncs (before)" if old else
                             "expert_counts + one sync a step (now)", ms_per_step=round(ms, 1),
                             steps_per_s=round(1000 / ms, 2), syncs_in_one_step_with_evals=syncs))
            print(rows[-1], flush=True)
    body = [f"Chapter 6's `full` MoE model ({MODEL['n_layer']} layers, {MODEL['n_routed_experts']} experts top-"
            f"{MODEL['num_experts_per_tok']}), batch {B}x{T} of Shakespeare, bf16 autocast on {dev}; "
            f"{args.steps} timed steps after 3 warm-up steps; loss-free bias update on.", "",
            "| dispatch | counting | ms/step | steps/s | host syncs (1 step + two 1-batch evals) |",
            "| --- | --- | --- | --- | --- |"]
    body += [f"| {r['dispatch']} | {r['counting']} | {r['ms_per_step']} | {r['steps_per_s']} | "
             f"{r['syncs_in_one_step_with_evals']} |" for r in rows]
    name = "moe_probe_smoke" if SMOKE else "moe_probe"
    print(write_result(name, "\n".join(body), ROOT / "benchmarks" / "results", data={"rows": rows}).read_text())


if __name__ == "__main__":
    main()
