"""Chapter 10 benchmarks: rollout throughput, time per RL step, and the learning curves of the recipe.

    python benchmarks/rl.py                   # tiny, CPU, one thread -> benchmarks/results/rl.md
    python3 benchmarks/rl.py --device cuda    # full, one GPU -> benchmarks/results/rl_cuda.md

Both run chapter 10's recipe at their scale (SFT warm-up from a sloppy teacher, then GRPO; REINFORCE and PPO
for the same number of steps) and record: sampling throughput with and without the KV cache, seconds per
step split into rollout and update, and held-out accuracy along the way. On CUDA it also times rollouts and
a GRPO step of a policy with Qwen2.5-0.5B's published shapes (random weights: timing only, no download).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minids.reasoning import arithmetic  # noqa: E402
from nanoseek.benchmarking import sync, write_result  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.rl.rollout import sample  # noqa: E402
from nanoseek.rl.tasks import addition_task, sft_examples  # noqa: E402
from nanoseek.rl.trainer import RLConfig, evaluate, train_rl  # noqa: E402
from nanoseek.rl.vocab import TaskVocab  # noqa: E402
from nanoseek.train import TrainConfig, train  # noqa: E402

# The notebook's CFG (notebooks/10_grpo.py), repeated here so that the benchmark runs on its own.
RECIPES = {
    "tiny": dict(digits=2, eval_n=200,
                 model=dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=192, max_seq_len=40),
                 sft=dict(rows=4000, p_careful=0.3, steps=300, batch_size=64, lr=3e-3),
                 rl=dict(steps=20, prompts_per_step=16, group_size=8, max_new_tokens=28, lr=1e-4,
                         inner_epochs=2, beta=0.04, eval_every=5),
                 compare_steps=10),
    "full": dict(digits=3, eval_n=500,
                 model=dict(n_layer=4, n_embd=256, n_head=8, n_kv_head=2, intermediate_size=704, max_seq_len=64),
                 sft=dict(rows=20000, p_careful=0.3, steps=1500, batch_size=128, lr=1e-3),
                 rl=dict(steps=60, prompts_per_step=32, group_size=8, max_new_tokens=40, lr=5e-5,
                         inner_epochs=2, beta=0.04, eval_every=5),
                 compare_steps=20),
}
QWEN25_05B = dict(vocab_size=151936, n_layer=24, n_embd=896, n_head=14, n_kv_head=2, intermediate_size=4864,
                  max_seq_len=1024, rope_theta=1e6, norm_eps=1e-6, qkv_bias=True, tie_embeddings=True)


def sft_policy(recipe: dict, vocab: TaskVocab, dev: torch.device) -> tuple[Decoder, float]:
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=len(vocab), **recipe["model"]))
    s = recipe["sft"]
    seqs, plens = sft_examples(arithmetic("train", s["rows"], 0, digits=recipe["digits"]), vocab, s["p_careful"])
    L = max(map(len, seqs))
    X = torch.full((len(seqs), L), vocab.pad_id)
    Y = torch.full((len(seqs), L), -100)
    for i, (seq, p) in enumerate(zip(seqs, plens)):
        X[i, :len(seq)] = torch.tensor(seq)
        Y[i, p - 1:len(seq) - 1] = torch.tensor(seq[p:])

    def get_batch(split, gen):
        ix = torch.randint(0, len(seqs), (s["batch_size"],), generator=gen)
        return X[ix], Y[ix]

    t0 = time.perf_counter()
    train(model, get_batch, TrainConfig(max_steps=s["steps"], lr=s["lr"], warmup_steps=20, weight_decay=0.0,
                                        eval_every=s["steps"], eval_batches=1, device=str(dev), progress=False))
    return model.to(dev), time.perf_counter() - t0


def rollout_throughput(model, prompt: torch.Tensor, max_new: int, eos: int, pad: int, dev, use_cache: bool,
                       repeats: int = 3) -> tuple[float, float]:
    """(generated tokens per second, seconds per batch), median of `repeats` after one warm-up."""
    times, tokens = [], 0
    for r in range(repeats + 1):
        g = torch.Generator(device=dev).manual_seed(r)
        sync(dev)
        t0 = time.perf_counter()
        _, mask, _ = sample(model, prompt, max_new, eos, pad, 1.0, None, g, use_cache)
        sync(dev)
        if r:
            times.append(time.perf_counter() - t0)
            tokens = int(mask.sum())
    sec = statistics.median(times)
    return tokens / sec, sec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (tiny models are fastest on one)")
    ap.add_argument("--skip-qwen", action="store_true", help="on CUDA, skip the Qwen2.5-0.5B-shaped timing")
    ap.add_argument("--smoke", action="store_true",
                    help="a seconds-long check of every code path (the full-scale ones too) on any device; "
                         "writes to a temporary folder, not benchmarks/results")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    full = dev.type == "cuda" or args.smoke
    scale = "tiny" if dev.type == "cpu" else "full"
    recipe = copy.deepcopy(RECIPES[scale])
    if args.smoke:
        recipe.update(eval_n=8, compare_steps=2)
        recipe["sft"].update(rows=64, steps=3)
        recipe["rl"].update(steps=2, prompts_per_step=2, eval_every=1)
    vocab = TaskVocab("0123456789+-=,")
    task = addition_task(vocab, digits=recipe["digits"])
    test_rows = arithmetic("test", recipe["eval_n"], 0, digits=recipe["digits"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Scale `{scale}` (chapter 10's recipe), device `{dev}`. CPU load average (1 min) at the start: "
             f"{load:.1f} on {os.cpu_count()} cores (a shared machine inflates every time below)."]

    policy, sft_seconds = sft_policy(recipe, vocab, dev)
    n_params = sum(p.numel() for p in policy.parameters())
    start = evaluate(policy, test_rows, task, recipe["rl"]["max_new_tokens"])
    lines += ["", f"SFT warm-up: {recipe['sft']['steps']} steps in {sft_seconds:.1f} s; policy {n_params:,} "
                  f"parameters; held-out greedy accuracy after SFT {start['accuracy']:.1%}."]

    # Rollout throughput: one batch of prompts_per_step x group_size responses, with and without the cache.
    rl = recipe["rl"]
    rows = arithmetic("train", rl["prompts_per_step"], 1, digits=recipe["digits"])
    prompt = torch.tensor([vocab.encode(r["prompt"]) for r in rows for _ in range(rl["group_size"])], device=dev)
    lines += ["", "## Rollout throughput", "",
              f"{prompt.shape[0]} sequences (prompt {prompt.shape[1]} tokens, up to {rl['max_new_tokens']} new), "
              "sampling at T = 1; tokens counted up to and including each end token.", "",
              "| decoding | tokens/s | s / batch |", "| --- | ---: | ---: |"]
    tps = {}
    for use_cache in (True, False):
        tps[use_cache], sec = rollout_throughput(policy, prompt, rl["max_new_tokens"], vocab.eos_id, vocab.pad_id,
                                                 dev, use_cache)
        lines.append(f"| {'KV cache' if use_cache else 'no cache (re-run the prefix)'} | {tps[use_cache]:,.0f} | {sec:.3f} |")
    lines += ["", f"KV cache speed-up on rollouts: {tps[True] / tps[False]:.2f}x."]

    # The RL runs: GRPO for the full run; REINFORCE and PPO for compare_steps steps from the same SFT policy.
    lines += ["", "## Time per step and learning curves", "",
              f"Each step: {rl['prompts_per_step']} prompts x {rl['group_size']} responses; "
              f"{rl['inner_epochs']} inner epochs for GRPO/PPO, 1 for REINFORCE.", "",
              "| algorithm | steps | s / step | of which rollout | held-out accuracy at eval steps |",
              "| --- | ---: | ---: | ---: | --- |"]
    results = {}
    for algo in ("grpo", "reinforce", "ppo"):
        steps = rl["steps"] if algo == "grpo" else recipe["compare_steps"]
        cfg = RLConfig(**{**rl, "algo": algo, "steps": steps})
        model = copy.deepcopy(policy)
        hist = train_rl(model, task, cfg, eval_rows=test_rows, progress=False)
        step_s = statistics.mean(hist.metrics["time_step"])
        roll_s = statistics.mean(hist.metrics["time_rollout"])
        curve = ", ".join(f"{s}: {a:.1%}" for s, a in zip(hist.eval_step, hist.eval["accuracy"]))
        results[algo] = (step_s, hist)
        lines.append(f"| {algo} | {steps} | {step_s:.3f} | {roll_s:.3f} | {curve} |")
    g = results["grpo"][1]
    lines += ["", f"GRPO: held-out greedy accuracy {g.eval['accuracy'][0]:.1%} -> {g.eval['accuracy'][-1]:.1%} "
                  f"in {rl['steps']} steps ({sum(g.metrics['time_step']):.1f} s). PPO step / GRPO step: "
                  f"{results['ppo'][0] / results['grpo'][0]:.2f}x (the critic)."]
    lines += ["", "GRPO per step (train rollouts): reward " +
              ", ".join(f"{x:.2f}" for x in g.metrics["reward"]) + "; mean length " +
              ", ".join(f"{x:.1f}" for x in g.metrics["length"]) + "; KL " +
              ", ".join(f"{x:.3f}" for x in g.metrics["kl"]) + "."]

    if full:  # the full recipe's learning rate was not tuned on a GPU: record a small sweep
        lines += ["", "## GRPO learning-rate sweep (full recipe)", "",
                  "| lr | held-out accuracy at eval steps |", "| --- | --- |"]
        for lr in (2e-5, 5e-5, 1e-4, 2e-4):
            hist = train_rl(copy.deepcopy(policy), task, RLConfig(**{**rl, "lr": lr}), eval_rows=test_rows,
                            progress=False)
            lines.append(f"| {lr:g} | " + ", ".join(f"{s}: {a:.1%}" for s, a in zip(hist.eval_step,
                                                                                   hist.eval["accuracy"])) + " |")
    if full and not args.skip_qwen:
        lines += qwen_shaped(dev, smoke=args.smoke)
    name = "rl" if dev.type == "cpu" else "rl_cuda"
    out = Path(tempfile.mkdtemp()) if args.smoke else ROOT / "benchmarks" / "results"
    path = write_result(name, "\n".join(lines), out)
    print(path.read_text())
    return 0


def qwen_shaped(dev: torch.device, smoke: bool = False) -> list[str]:
    """Rollout and GRPO-step timing of a bf16 policy with Qwen2.5-0.5B's shapes (random weights)."""
    from nanoseek.rl.hf import tiny_chat_tokenizer
    from nanoseek.rl.tasks import hf_task

    torch.manual_seed(0)
    shapes = {**QWEN25_05B, "n_layer": 2, "n_embd": 56, "intermediate_size": 64} if smoke else QWEN25_05B
    with torch.device(dev):
        model = Decoder(DecoderConfig(**shapes)).to(torch.bfloat16)
    tok = tiny_chat_tokenizer()  # ids < 400: a valid subset of the real vocabulary; timing only
    task = hf_task(tok, "arithmetic", digits=3, ops="+-*")
    task.reward_fn = lambda text, row: float(len(text) % 2)  # random policy: give the loss something to do
    n_new = 4 if smoke else 256
    cfg = RLConfig(steps=3, prompts_per_step=2 if smoke else 16, group_size=8, max_new_tokens=n_new, lr=1e-6,
                   beta=0.04, inner_epochs=1, minibatches=8, eval_every=0)
    n = sum(p.numel() for p in model.parameters())
    prompt = torch.tensor([task.encode(task.prompt_fn(r)) for r in task.train_rows(1, 0)] * 128, device=dev)
    tps, sec = rollout_throughput(model, prompt, n_new, -1, 0, dev, True, repeats=2)  # eos -1: full length
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    hist = train_rl(model, task, cfg, progress=False)
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    step_s = statistics.mean(hist.metrics["time_step"][1:])
    roll_s = statistics.mean(hist.metrics["time_rollout"][1:])
    return ["", "## Qwen2.5-0.5B shapes (random weights, bf16)", "",
            f"{n / 1e6:.0f}M parameters; 128 sequences (prompt {prompt.shape[1]} tokens) x {n_new} new tokens.", "",
            "| measure | value |", "| --- | ---: |",
            f"| rollout throughput, KV cache | {tps:,.0f} tokens/s ({sec:.1f} s / batch) |",
            f"| GRPO step ({cfg.prompts_per_step} prompts x 8, 1 epoch, 8 minibatches) | {step_s:.1f} s, of which rollout {roll_s:.1f} s |",
            f"| peak GPU memory during RL | {peak:.1f} GiB |"]


if __name__ == "__main__":
    raise SystemExit(main())
