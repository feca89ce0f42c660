"""Load balancing of DeepSeek-style MoE models: no balancing vs auxiliary loss vs loss-free. (Chapter 6.)

The experiment of notebooks/06_moe.ipynb as a script, so its `full` scale can run on a GPU within a time limit:

    python3 benchmarks/moe_balance.py                          # tiny, CPU (the notebook's numbers)
    python3 benchmarks/moe_balance.py --scale full --device cuda   # full, the four runs in parallel on one GPU

Besides the notebook's three runs it trains DeepSeek-V3's combination (loss-free + sequence-wise aux loss,
alpha 1e-4). Writes benchmarks/results/moe_balance.md (tiny) or moe_balance_full.md (full): validation loss, MaxVio over
the validation batches (MaxVio_global) and over the last 20% of training batches (MaxVio_batch), beside the
paper's 1B numbers (Wang et al., 2024: MaxVio_global 0.72 with the aux loss, 0.04 loss-free).
The configurations below are the notebook's CFG (keep them in sync).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CFGS = {
    "tiny": dict(block_size=64, n_layer=2, n_head=4, n_embd=64, first_k_dense_replace=0,
                 n_routed_experts=16, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                 n_group=4, topk_group=2, batch_size=16, max_steps=150, lr=3e-3, warmup_steps=15,
                 eval_every=25, eval_batches=8, aux_alpha=0.01, gamma=0.01),
    "full": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, first_k_dense_replace=1,
                 n_routed_experts=64, num_experts_per_tok=6, moe_intermediate_size=128, n_shared_experts=2,
                 n_group=8, topk_group=4, batch_size=64, max_steps=2000, lr=1e-3, warmup_steps=100,
                 eval_every=250, eval_batches=40, aux_alpha=0.001, gamma=0.001),
}
METHODS = {
    "no balancing": lambda c: dict(),
    "aux loss": lambda c: dict(aux_loss="switch", aux_loss_alpha=c["aux_alpha"]),
    "loss-free": lambda c: dict(bias_update_speed=c["gamma"]),
    # DeepSeek-V3's recipe: loss-free plus a tiny complementary sequence-wise loss (alpha 0.0001 in V3)
    "loss-free + seq aux (V3)": lambda c: dict(bias_update_speed=c["gamma"], aux_loss="seq", aux_loss_alpha=1e-4),
}
# not a balancing method: the dense decoder whose SwiGLU has the MoE layer's active width (K routed + shared
# experts), i.e. the same FFN parameters used per token (DeepSeekMoE's comparison); run by benchmarks/moe_seeds.py
DENSE = {"dense, same active FFN": lambda c: dict(
    ffn="dense", intermediate_size=(c["num_experts_per_tok"] + c["n_shared_experts"]) * c["moe_intermediate_size"])}


def run_one(scale: str, method: str, device: str, max_steps: int | None, dispatch: str = "sorted",
            seed: int = 1337) -> dict:
    import torch

    from nanoseek import seed_everything
    from nanoseek.data import CharVocab, load_shakespeare, window_batcher
    from nanoseek.models.decoder import Decoder, DecoderConfig
    from nanoseek.nn.moe import BiasUpdateHook, count_params, expert_load, max_violation
    from nanoseek.train import TrainConfig, train

    c = dict(CFGS[scale])
    if max_steps:
        c["max_steps"] = max_steps
    train_text, val_text = load_shakespeare("train", scale=scale), load_shakespeare("val", scale=scale)
    vocab = CharVocab.from_text(train_text + val_text)
    get_batch = window_batcher(torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text)),
                               c["block_size"], c["batch_size"])
    val_batches = [get_batch("val", torch.Generator().manual_seed(10_000 + i))[0] for i in range(c["eval_batches"])]
    base = dict(vocab_size=len(vocab), n_layer=c["n_layer"], n_embd=c["n_embd"], n_head=c["n_head"],
                n_kv_head=c["n_head"], intermediate_size=4 * c["n_embd"], max_seq_len=c["block_size"], ffn="moe",
                first_k_dense_replace=c["first_k_dense_replace"], n_routed_experts=c["n_routed_experts"],
                num_experts_per_tok=c["num_experts_per_tok"], moe_intermediate_size=c["moe_intermediate_size"],
                n_shared_experts=c["n_shared_experts"], n_group=c["n_group"], topk_group=c["topk_group"],
                moe_dispatch=dispatch)
    seed_everything(seed)
    model = Decoder(DecoderConfig(**{**base, **{**METHODS, **DENSE}[method](c)}))
    hook = BiasUpdateHook()
    val_vio = []

    def on_step(step, model, metrics):
        hook(step, model, metrics)
        if (step + 1) % c["eval_every"] == 0:
            if "maxvio" not in metrics:  # a dense model: nothing to balance
                return
            val_vio.append((step + 1, [max_violation(r) for r in expert_load(model, val_batches)]))
            print(f"{method}: step {step + 1}, {time.perf_counter() - t0:.0f} s, MaxVio_global by layer "
                  f"{', '.join(f'{v:.2f}' for v in val_vio[-1][1])}", flush=True)

    t0 = time.perf_counter()
    result = train(model, get_batch, TrainConfig(max_steps=c["max_steps"], lr=c["lr"], warmup_steps=c["warmup_steps"],
                                                 eval_every=c["eval_every"], eval_batches=c["eval_batches"],
                                                 seed=seed, device=device, progress=False), on_step=on_step)
    if "maxvio" in result.metrics:
        vio = [max_violation(r) for r in expert_load(model, val_batches)]
        tail = result.metrics["maxvio"][-max(1, len(result.metrics["maxvio"]) // 5):]
    else:
        vio, tail = [float("nan")], [float("nan")]
    return dict(method=method, val_loss=result.final_val_loss, val_losses=list(zip(result.eval_steps, result.val_loss)),
                vio_global=sum(vio) / len(vio), vio_global_layers=vio, vio_batch=sum(tail) / len(tail),
                val_vio=val_vio, seconds=time.perf_counter() - t0, steps=c["max_steps"],
                tokens_per_s=result.tokens_per_second, params=count_params(model))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="tiny", choices=list(CFGS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--max-steps", type=int, default=None, help="override the config's steps (to fit a time limit)")
    ap.add_argument("--parallel", action="store_true", help="run the three methods as parallel processes")
    ap.add_argument("--dispatch", default="sorted", choices=["sorted", "loop", "grouped"],
                    help="token dispatch (grouped: one grouped matmul, fastest on a GPU)")
    ap.add_argument("--log-dir", default=None, help="keep each parallel run's log there (default: discarded)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one method, print JSON
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.scale, args.one, args.device, args.max_steps, args.dispatch)))
        return
    rows = []
    if args.parallel or args.device == "cuda":
        import torch

        n_gpus = torch.cuda.device_count() if args.device == "cuda" else 0
        procs = []
        for i, method in enumerate(METHODS):
            cmd = [sys.executable, __file__, "--scale", args.scale, "--device", args.device, "--one", method,
                   "--dispatch", args.dispatch]
            if args.max_steps:
                cmd += ["--max-steps", str(args.max_steps)]
            env = os.environ.copy()
            if n_gpus > 1:  # spread the runs over the GPUs
                env["CUDA_VISIBLE_DEVICES"] = str(i % n_gpus)
            if args.log_dir:
                log = open(Path(args.log_dir) / f"moe_balance_{i}.log", "w+")
            else:
                log = tempfile.TemporaryFile(mode="w+")
            procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        for proc, log in procs:
            proc.wait()
            log.seek(0)
            text = log.read()
            lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                raise SystemExit(f"a run failed (exit {proc.returncode}):\n{text[-3000:]}")
            rows.append(json.loads(lines[-1][len("RESULT "):]))
    else:
        for method in METHODS:
            rows.append(run_one(args.scale, method, args.device, args.max_steps))
            print(method, f"{rows[-1]['seconds']:.0f} s", flush=True)

    from nanoseek.benchmarking import write_result

    c = CFGS[args.scale]
    p = rows[0]["params"]
    body = [
        f"Scale `{args.scale}` on {args.device}: {c['n_layer']} layers of width {c['n_embd']} "
        f"({c['first_k_dense_replace']} dense), {c['n_routed_experts']} routed experts (width "
        f"{c['moe_intermediate_size']}, top-{c['num_experts_per_tok']}, {c['topk_group']} of {c['n_group']} groups) "
        f"+ {c['n_shared_experts']} shared; {p['total']:,} parameters, {p['active']:,} active per token; "
        f"{rows[0]['steps']} steps of {c['batch_size']}x{c['block_size']} characters of Shakespeare (minids); "
        f"aux loss alpha {c['aux_alpha']} (Switch form), loss-free gamma {c['gamma']}; {args.dispatch} dispatch.",
        "",
        "| balancing | val loss (nats/char) | perplexity | MaxVio_global (val, mean over layers) | "
        "MaxVio_global per layer | MaxVio_batch (train, last 20%) | seconds | tokens/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        body.append(f"| {r['method']} | {r['val_loss']:.4f} | {math.exp(r['val_loss']):.4f} | {r['vio_global']:.3f} | "
                    f"{', '.join(f'{v:.2f}' for v in r['vio_global_layers'])} | {r['vio_batch']:.3f} | "
                    f"{r['seconds']:.0f} | {r['tokens_per_s']:,.0f} |")
    body += [
        "| paper, 1B MoE, 100B tokens: aux loss (alpha 0.001) | | | 0.72 | | | | |",
        "| paper, 1B MoE, 100B tokens: loss-free (u 0.001) | | equal or lower than aux | 0.04 | | | | |",
        "",
        "MaxVio over training (validation batches, worst layer):",
        "",
        "| step | " + " | ".join(r["method"] for r in rows) + " |",
        "| --- |" + " --- |" * len(rows),
    ]
    for i, (step, _) in enumerate(rows[0]["val_vio"]):
        body.append(f"| {step} | " + " | ".join(f"{max(r['val_vio'][i][1]):.3f}" for r in rows) + " |")
    name = "moe_balance" if args.scale == "tiny" else "moe_balance_full"
    out = write_result(name, "\n".join(body), ROOT / "benchmarks" / "results")
    print(out.read_text())


if __name__ == "__main__":
    main()
