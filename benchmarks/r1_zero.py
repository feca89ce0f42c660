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

`--task kk` runs the same experiment on compact Knights-and-Knaves puzzles (`minids.knights`,
`nanoseek.rl.knights`: 3 people at tiny, 5 at full; worked traces suppose A is a knight and propagate),
GRPO only by default, with held-out probes every `probe_every` steps (accuracy, length, worked and re-check
shares: the plots' data) and greedy completions before and after -> r1_zero_kk.md/.json, r1_zero_kk_full.*

    python3 benchmarks/r1_zero.py --task kk --scale full --device cuda   # -> r1_zero_kk_full.md/.json
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minids.reasoning import arithmetic  # noqa: E402
from nanoseek.benchmarking import write_result  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from minids.knights import knights  # noqa: E402
from nanoseek.rl.knights import kk_direct_demo, kk_rechecks, kk_task, kk_vocab, kk_worked, kk_worked_demo  # noqa: E402
from nanoseek.rl.rollout import rollout  # noqa: E402
from nanoseek.rl.tasks import addition_task, mixture_examples, trace_stats, warm_up  # noqa: E402
from nanoseek.rl.trainer import RLConfig, train_rl  # noqa: E402
from nanoseek.rl.vocab import TaskVocab  # noqa: E402
from nanoseek.seeds import SeedSummary, table, verdict  # noqa: E402

# The notebook's CFG (notebooks/10_grpo.py), repeated so that the benchmark runs on its own.
RECIPES = {
    "tiny": dict(digits=3, eval_n=200,
                 model=dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=192, max_seq_len=48),
                 sft=dict(rows=4000, p_trace=0.3, steps=2000, batch_size=64, lr=2e-3),
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
# Knights and Knaves: the number of people sets the difficulty. Sequences are longer than the sums', so the
# policy's context is larger; the rest mirrors the arithmetic recipe.
KK_RECIPES = {
    "tiny": dict(people=3, eval_n=200, probe_every=5, probe_n=100,
                 model=dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=192, max_seq_len=76),
                 sft=dict(rows=4000, p_trace=0.3, steps=1200, batch_size=64, lr=3e-3),
                 rl=dict(steps=20, prompts_per_step=16, group_size=8, max_new_tokens=52, lr=1e-4,
                         inner_epochs=2, beta=0.04, eval_every=0),
                 more_steps=10, length_reward=1.0, overlong_buffer=8),
    "full": dict(people=5, eval_n=500, probe_every=10, probe_n=200,
                 model=dict(n_layer=4, n_embd=256, n_head=8, n_kv_head=2, intermediate_size=704, max_seq_len=120),
                 sft=dict(rows=20000, p_trace=0.3, steps=2000, batch_size=128, lr=1e-3),
                 rl=dict(steps=60, prompts_per_step=32, group_size=8, max_new_tokens=80, lr=5e-5,
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
    ap.add_argument("--task", default="arith", choices=("arith", "kk"),
                    help="arith: multi-digit sums (the chapter's); kk: compact Knights and Knaves")
    ap.add_argument("--scale", default="tiny", choices=list(RECIPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None,
                    help="default: every variant and long2short (arith), grpo (kk)")
    ap.add_argument("--people", type=int, default=None, help="kk only: people per puzzle (default: the recipe's)")
    ap.add_argument("--rl-steps", type=int, default=None, help="override the recipe's RL steps")
    ap.add_argument("--smoke", action="store_true", help="2 RL steps, 20 SFT steps: checks the script runs")
    args = ap.parse_args(argv)
    if args.variants is None:
        args.variants = list(VARIANTS) + ["long2short"] if args.task == "arith" else ["grpo"]
    unknown = [v for v in args.variants if v not in VARIANTS and v != "long2short"]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS) + ['long2short']}")
    torch.set_num_threads(1) if args.device == "cpu" else None
    recipe = copy.deepcopy((RECIPES if args.task == "arith" else KK_RECIPES)[args.scale])
    if args.people is not None:
        if args.task != "kk":
            ap.error("--people is for --task kk")
        recipe["people"] = args.people
        # a worked response is at most about 14 tokens a person (the longest traces seen), plus the tags
        recipe["rl"]["max_new_tokens"] = 14 * args.people + 10
        recipe["model"]["max_seq_len"] = 8 * args.people + recipe["rl"]["max_new_tokens"]
    if args.rl_steps is not None:
        recipe["rl"]["steps"] = args.rl_steps
    if args.smoke:
        recipe["sft"]["steps"], recipe["rl"]["steps"], recipe["more_steps"], recipe["eval_n"] = 20, 2, 1, 16
        if "probe_n" in recipe:
            recipe["probe_every"], recipe["probe_n"] = 1, 8
    dev = torch.device(args.device)
    if args.task == "arith":
        vocab = TaskVocab("0123456789+-=,")
        task = addition_task(vocab, digits=recipe["digits"])
        test_rows = arithmetic("test", recipe["eval_n"], 0, digits=recipe["digits"])
        sft_rows = arithmetic("train", recipe["sft"]["rows"], 0, digits=recipe["digits"])
        demos: dict = {}
        stats_options: dict = {}
    else:
        vocab = kk_vocab()
        task = kk_task(vocab, people=recipe["people"])
        test_rows = knights("test", recipe["eval_n"], 0, people=recipe["people"])
        sft_rows = knights("train", recipe["sft"]["rows"], 0, people=recipe["people"])
        demos = dict(worked_demo=kk_worked_demo, direct=kk_direct_demo)
        stats_options = dict(worked_fn=kk_worked, rules={"recheck": kk_rechecks})
    max_new = recipe["rl"]["max_new_tokens"]

    def stats(model: torch.nn.Module, rows: list[dict], seed: int, samples: int = 4) -> dict:
        return trace_stats(model, rows, task, max_new, samples=samples, seed=seed, **stats_options)

    t0 = time.perf_counter()
    torch.manual_seed(0)
    base = Decoder(DecoderConfig(vocab_size=len(vocab), **recipe["model"])).to(dev)
    s = recipe["sft"]
    seqs, plens = mixture_examples(sft_rows, vocab, s["p_trace"], **demos)
    warm_up(base, seqs, plens, vocab.pad_id, s["steps"], s["batch_size"], s["lr"], progress=False)
    sft_seconds = time.perf_counter() - t0
    start = stats(base, test_rows, seed=0)
    print(f"warm-up {sft_seconds:.0f} s: {start}", flush=True)
    # Held-out probes over training (the plots' data): a subset of the test rows, 2 samples each.
    probe_rows = test_rows[:recipe["probe_n"]] if "probe_n" in recipe else None
    probe_start = stats(base, probe_rows, seed=0, samples=2) if probe_rows else None

    def greedy(model: torch.nn.Module, rows: list[dict]) -> list[str]:
        out = rollout(model, rows, task.prompt_fn, task.encode, task.decode, 1, max_new, task.eos_id,
                      task.pad_id, temperature=0.0)
        return [t for ro in out for t in ro.texts]  # one length bucket: the order of `rows`

    shown = test_rows[:4]
    before = greedy(base, shown) if probe_rows else None

    runs: dict[str, list[dict]] = {}

    def write_record() -> None:
        """Write the record of the seeds done so far (kk writes after every seed: a timeout keeps them)."""
        done = sorted({r["seed"] for rs in runs.values() for r in rs})

        def summary(name: str, key: str) -> SeedSummary:
            return SeedSummary(tuple(r["end"][key] for r in runs[name]), tuple(r["seed"] for r in runs[name]))

        body = [f"Warm-up: {s['steps']} SFT steps on {s['rows']} rows, {s['p_trace']:.0%} worked traces; "
                f"{sft_seconds:.0f} s. Held-out (sampled at T=1, 4 per problem, {recipe['eval_n']} problems) after the "
                f"warm-up: accuracy {start['accuracy']:.3f}, length {start['length']:.1f} tokens, worked share "
                f"{start['worked_share']:.3f} (worked {start['acc_worked']:.3f} right, direct {start['acc_direct']:.3f}).",
                "", f"RL: {recipe['rl']['steps']} steps x {recipe['rl']['prompts_per_step']} prompts x "
                f"{recipe['rl']['group_size']} samples; seeds {done}.", ""]
        if args.task == "kk":
            body[0:0] = [f"Task: compact Knights and Knaves with {recipe['people']} people (`minids.knights`); a "
                         f"response shows its work when its think block holds a deduction `>`, and re-checks when it "
                         f"drops a supposition after a contradiction (`;`).", ""]
        keys = ("accuracy", "length", "worked_share", "tokens_per_correct")
        if args.task == "kk":
            keys = keys[:3] + ("recheck_share", "acc_worked", "acc_direct") + keys[3:]
        for key in keys:
            # a run with no right answer has infinite tokens per correct answer: no mean ± spread for it
            finite = {n: summary(n, key) for n in runs if all(math.isfinite(r["end"][key]) for r in runs[n])}
            body += [f"## held-out {key} at the end", "", table(finite, digits=3) if finite else "(not finite)", ""]
        for name in runs:
            if "probes" not in runs[name][0]:
                continue
            steps = list(runs[name][0]["probes"])
            body += [f"## {name} over training (held-out probes: {recipe['probe_n']} problems x 2 samples; "
                     f"mean over seeds, min..max)", "", "| step | accuracy | length | worked share | re-check share |",
                     "| --- | --- | --- | --- | --- |"]
            for k in steps:
                cells = []
                for key in ("accuracy", "length", "worked_share", "recheck_share"):
                    xs = [r["probes"][k][key] for r in runs[name]]
                    cells.append(f"{sum(xs) / len(xs):.3f} ({min(xs):.3f}..{max(xs):.3f})")
                body.append(f"| {k} | " + " | ".join(cells) + " |")
            body += ["", f"## {name}: greedy completions before and after (seed {runs[name][0]['seed']})", ""]
            for c in runs[name][0]["completions"]:
                mark = lambda ok: "right" if ok else "wrong"  # noqa: E731
                body += [f"- `{c['prompt']}` (answer `{c['answer']}`)",
                         f"  - warm-up ({mark(c['before_right'])}): `{c['before']}`",
                         f"  - after ({mark(c['after_right'])}): `{c['after']}`"]
            body.append("")
        if {"grpo_eq", "reinforce_eq", "ppo_eq"} <= set(runs):
            body += ["## fair comparison (equal rollouts, 2 updates a step), accuracy", ""]
            for a, b in (("grpo_eq", "reinforce_eq"), ("grpo_eq", "ppo_eq"), ("ppo_eq", "reinforce_eq")):
                body.append(f"- {a} vs {b}: {verdict(summary(a, 'accuracy'), summary(b, 'accuracy'), lower_is_better=False, names=(a, b))}")
            body.append("")
        data = {"scale": args.scale, "recipe": recipe, "seeds": done, "start": start, "sft_seconds": sft_seconds,
                "runs": runs}
        if args.task == "kk":
            data.update(task="kk", seconds=time.perf_counter() - t0)
        prefix = "r1_zero" if args.task == "arith" else "r1_zero_kk"
        name = prefix if args.scale == "tiny" else f"{prefix}_{args.scale}"
        if args.smoke:
            name += "_smoke"
        path = write_result(name, "\n".join(body), directory=ROOT / "benchmarks" / "results", data=data)
        print(f"wrote {path}")

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
            probes = {0: probe_start} if probe_rows else {}

            def probe(step: int, m: torch.nn.Module, metrics: dict) -> None:
                if probe_rows and (step % recipe["probe_every"] == 0 or step == cfg.steps):
                    probes[step] = stats(m, probe_rows, seed=seed, samples=2)
                    m.train()

            t1 = time.perf_counter()
            hist = train_rl(model, task, cfg, progress=False, on_step=probe)
            seconds = time.perf_counter() - t1
            end = stats(model, test_rows, seed=seed)
            run = {"seed": seed, "end": end, "seconds": seconds, "length_curve": hist.metrics["length"],
                   "accuracy_curve": hist.metrics["accuracy"], "sampled": sum(hist.metrics["sampled"]),
                   "updates": sum(hist.metrics["updates"])}
            if probe_rows:
                run["probes"] = {str(k): v for k, v in sorted(probes.items())}
                run["completions"] = [{"prompt": row["prompt"], "answer": row["answer"], "before": b, "after": a,
                                       "before_right": task.accuracy_fn(b, row), "after_right": task.accuracy_fn(a, row)}
                                      for row, b, a in zip(shown, before, greedy(model, shown))]
            runs.setdefault(name, []).append(run)
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
                end = stats(model, test_rows, seed=seed)
                runs.setdefault(name, []).append({"seed": seed, "end": end, "length_curve": hist.metrics["length"],
                                                  "accuracy_curve": hist.metrics["accuracy"],
                                                  "sampled": sum(hist.metrics["sampled"])})
                print(f"seed {seed} {name}: acc {end['accuracy']:.2f}, tokens/correct {end['tokens_per_correct']:.1f}",
                      flush=True)
        if args.task == "kk":
            write_record()

    if args.task != "kk":  # kk has written after its last seed
        write_record()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
