"""Chapter 10's R1-Zero moment over seeds, the RL variants as switches, and Kimi k1.5's long2short.

    python benchmarks/r1_zero.py                 # tiny, CPU, one thread -> benchmarks/results/r1_zero.md/.json
    python3 benchmarks/r1_zero.py --scale full --device cuda   # -> r1_zero_full.md/.json

One warm-up (SFT on a mixture of direct answers and rare worked traces, as chapter 10 does it), then for each
seed in --seeds and each variant: RL from that warm-up with only the rule rewards (accuracy + 0.1 x format),
and held-out statistics of sampled responses (`trace_stats`) before and after. The variants:

- `grpo`: the chapter's GRPO (2 inner epochs on each batch: 2 updates a step);
- the fair comparison `grpo_eq`, `reinforce_eq`, `ppo_eq`: the same rollouts and 2 updates a step each
  (1 epoch, 2 minibatches);
- `dr_grpo` (no std division + constant normaliser), `dapo_dynamic` (dynamic sampling; its extra rollouts
  are counted), `dapo_overlong` (soft overlong punishment);
- `long2short`: after `grpo`, more steps with Kimi k1.5's length reward, beside `grpo_more`, the same extra
  steps without it.
The seeds vary the RL run (prompts, sampling); the warm-up is shared.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minids.reasoning import arithmetic  # noqa: E402
from nanoseek.benchmarking import write_result  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.rl.tasks import addition_task, mixture_examples, trace_stats, warm_up  # noqa: E402
from nanoseek.rl.trainer import RLConfig, train_rl  # noqa: E402
from nanoseek.rl.vocab import TaskVocab  # noqa: E402
from nanoseek.seeds import SeedSummary, table, verdict  # noqa: E402

# The notebook's CFG (notebooks/10_grpo.py), repeated so that the benchmark runs on its own.
RECIPES = {
    "tiny": dict(digits=3, eval_n=200,
                 model=dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=192, max_seq_len=48),
                 sft=dict(rows=4000, p_trace=0.3, steps=1200, batch_size=64, lr=3e-3),
                 rl=dict(steps=20, prompts_per_step=16, group_size=8, max_new_tokens=40, lr=1e-4,
                         inner_epochs=2, beta=0.04, eval_every=0),
                 more_steps=10, length_reward=1.0, overlong_buffer=8),
    "full": dict(digits=4, eval_n=500,
                 model=dict(n_layer=4, n_embd=256, n_head=8, n_kv_head=2, intermediate_size=704, max_seq_len=64),
                 sft=dict(rows=20000, p_trace=0.3, steps=1500, batch_size=128, lr=1e-3),
                 rl=dict(steps=60, prompts_per_step=32, group_size=8, max_new_tokens=52, lr=5e-5,
                         inner_epochs=2, beta=0.04, eval_every=0),
                 more_steps=20, length_reward=1.0, overlong_buffer=10),
}
EQUAL = dict(inner_epochs=1, minibatches=2)  # 2 updates a step for every algorithm
VARIANTS = {
    "grpo": {},
    "grpo_eq": EQUAL,
    "reinforce_eq": {**EQUAL, "algo": "reinforce"},
    "ppo_eq": {**EQUAL, "algo": "ppo"},
    "dr_grpo": {"normalize_by_std": False, "agg": "constant"},
    "dapo_dynamic": {"dynamic_sampling": True},
    "dapo_overlong": {"overlong_buffer": None},  # filled from the recipe
}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="tiny", choices=list(RECIPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS) + ["long2short"])
    ap.add_argument("--smoke", action="store_true", help="2 RL steps, 20 SFT steps: checks the script runs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1) if args.device == "cpu" else None
    recipe = copy.deepcopy(RECIPES[args.scale])
    if args.smoke:
        recipe["sft"]["steps"], recipe["rl"]["steps"], recipe["more_steps"], recipe["eval_n"] = 20, 2, 1, 16
    dev = torch.device(args.device)
    vocab = TaskVocab("0123456789+-=,")
    task = addition_task(vocab, digits=recipe["digits"])
    test_rows = arithmetic("test", recipe["eval_n"], 0, digits=recipe["digits"])
    max_new = recipe["rl"]["max_new_tokens"]

    t0 = time.perf_counter()
    torch.manual_seed(0)
    base = Decoder(DecoderConfig(vocab_size=len(vocab), **recipe["model"])).to(dev)
    s = recipe["sft"]
    seqs, plens = mixture_examples(arithmetic("train", s["rows"], 0, digits=recipe["digits"]), vocab, s["p_trace"])
    warm_up(base, seqs, plens, vocab.pad_id, s["steps"], s["batch_size"], s["lr"], progress=False)
    sft_seconds = time.perf_counter() - t0
    start = trace_stats(base, test_rows, task, max_new, seed=0)
    print(f"warm-up {sft_seconds:.0f} s: {start}", flush=True)

    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        trained_grpo = None
        for name in args.variants:
            if name == "long2short":
                continue
            change = dict(VARIANTS[name])
            if name == "dapo_overlong":
                change["overlong_buffer"] = recipe["overlong_buffer"]
            cfg = RLConfig(**{**recipe["rl"], **change, "seed": seed})
            model = copy.deepcopy(base)
            t1 = time.perf_counter()
            hist = train_rl(model, task, cfg, progress=False)
            seconds = time.perf_counter() - t1
            end = trace_stats(model, test_rows, task, max_new, seed=seed)
            runs.setdefault(name, []).append({
                "seed": seed, "end": end, "seconds": seconds, "length_curve": hist.metrics["length"],
                "accuracy_curve": hist.metrics["accuracy"], "sampled": sum(hist.metrics["sampled"]),
                "updates": sum(hist.metrics["updates"])})
            print(f"seed {seed} {name}: acc {start['accuracy']:.2f} -> {end['accuracy']:.2f}, length "
                  f"{start['length']:.1f} -> {end['length']:.1f}, worked {end['worked_share']:.2f} ({seconds:.0f} s)",
                  flush=True)
            if name == "grpo":
                trained_grpo = model
        if "long2short" in args.variants and trained_grpo is not None:
            for name, weight in (("grpo_more", 0.0), ("long2short", recipe["length_reward"])):
                model = copy.deepcopy(trained_grpo)
                cfg = RLConfig(**{**recipe["rl"], "steps": recipe["more_steps"], "length_reward": weight,
                                  "seed": 1000 + seed})
                hist = train_rl(model, task, cfg, progress=False)
                end = trace_stats(model, test_rows, task, max_new, seed=seed)
                runs.setdefault(name, []).append({"seed": seed, "end": end, "length_curve": hist.metrics["length"],
                                                  "accuracy_curve": hist.metrics["accuracy"],
                                                  "sampled": sum(hist.metrics["sampled"])})
                print(f"seed {seed} {name}: acc {end['accuracy']:.2f}, tokens/correct {end['tokens_per_correct']:.1f}",
                      flush=True)

    def summary(name: str, key: str) -> SeedSummary:
        return SeedSummary(tuple(r["end"][key] for r in runs[name]), tuple(r["seed"] for r in runs[name]))

    body = [f"Warm-up: {s['steps']} SFT steps on {s['rows']} rows, {s['p_trace']:.0%} worked traces; "
            f"{sft_seconds:.0f} s. Held-out (sampled at T=1, 4 per problem, {recipe['eval_n']} problems) after the "
            f"warm-up: accuracy {start['accuracy']:.3f}, length {start['length']:.1f} tokens, worked share "
            f"{start['worked_share']:.3f} (worked {start['acc_worked']:.3f} right, direct {start['acc_direct']:.3f}).",
            "", f"RL: {recipe['rl']['steps']} steps x {recipe['rl']['prompts_per_step']} prompts x "
            f"{recipe['rl']['group_size']} samples; seeds {args.seeds}.", ""]
    for key in ("accuracy", "length", "worked_share", "tokens_per_correct"):
        body += [f"## held-out {key} at the end", "", table({n: summary(n, key) for n in runs}, digits=3), ""]
    if {"grpo_eq", "reinforce_eq", "ppo_eq"} <= set(runs):
        body += ["## fair comparison (equal rollouts, 2 updates a step), accuracy", ""]
        for a, b in (("grpo_eq", "reinforce_eq"), ("grpo_eq", "ppo_eq"), ("ppo_eq", "reinforce_eq")):
            body.append(f"- {a} vs {b}: {verdict(summary(a, 'accuracy'), summary(b, 'accuracy'), lower_is_better=False, names=(a, b))}")
        body.append("")
    data = {"scale": args.scale, "recipe": recipe, "seeds": args.seeds, "start": start, "sft_seconds": sft_seconds,
            "runs": runs}
    name = "r1_zero" if args.scale == "tiny" else f"r1_zero_{args.scale}"
    if args.smoke:
        name += "_smoke"
    path = write_result(name, "\n".join(body), directory=ROOT / "benchmarks" / "results", data=data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
