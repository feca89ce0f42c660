"""Chapter 11's comparisons over 3 seeds: hard labels vs KD on the stories, and the R1 finding at toy scale.

    python benchmarks/distill.py --part kd      # -> benchmarks/results/distill_kd_<scale>.{md,json}
    python benchmarks/distill.py --part r1      # -> benchmarks/results/distill_r1_<scale>.{md,json}

`NANOSEEK_SCALE=tiny|full` picks the configuration, the same dicts as the notebook's CFG (the notebook checks
that the record it reads was made with its own configuration). The teachers come from `nanoseek.zoo`
(trained on the first call, cached after). Rankings use `nanoseek.seeds.verdict`: a winner only when the
seed ranges do not overlap.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nanoseek import pick, scale  # noqa: E402

KD = pick(
    tiny=dict(block=64, batch=16, teacher=dict(n_layer=3, n_embd=96, n_head=4, n_kv_head=2, intermediate_size=256),
              teacher_steps=400, teacher_lr=2e-3,
              student=dict(n_layer=2, n_embd=56, n_head=4, n_kv_head=2, intermediate_size=152),
              steps=150, lr=3e-3, eval_batches=10, beta=0.5),
    full=dict(block=128, batch=64, teacher=dict(n_layer=6, n_embd=384, n_head=6, n_kv_head=2, intermediate_size=1024),
              teacher_steps=2000, teacher_lr=1e-3,
              student=dict(n_layer=3, n_embd=192, n_head=6, n_kv_head=2, intermediate_size=512),
              steps=1000, lr=2e-3, eval_batches=40, beta=0.5),
)
R1 = pick(
    tiny=dict(digits=2, eval_n=200,
              teacher=dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=192, max_seq_len=40),
              student=dict(n_layer=1, n_embd=48, n_head=4, n_kv_head=2, intermediate_size=128, max_seq_len=40),
              sft=dict(rows=4000, p_careful=0.3, steps=300, batch_size=64, lr=3e-3),
              rl=dict(steps=20, prompts_per_step=16, group_size=8, max_new_tokens=28, lr=1e-4, inner_epochs=2,
                      beta=0.04),
              traces=dict(rows=2000, samples=2, temperature=1.0), distill_lr=1e-3, batch_size=64),
    full=dict(digits=3, eval_n=500,
              teacher=dict(n_layer=4, n_embd=256, n_head=8, n_kv_head=2, intermediate_size=704, max_seq_len=64),
              student=dict(n_layer=2, n_embd=128, n_head=4, n_kv_head=2, intermediate_size=352, max_seq_len=64),
              sft=dict(rows=20000, p_careful=0.3, steps=1500, batch_size=128, lr=1e-3),
              rl=dict(steps=60, prompts_per_step=32, group_size=8, max_new_tokens=40, lr=5e-5, inner_epochs=2,
                      beta=0.04),
              traces=dict(rows=8000, samples=2, temperature=1.0), distill_lr=1e-3, batch_size=128),
)
KD_VARIANTS = {"hard labels": dict(ce_weight=1.0), "forward KL": dict(kind="forward_kl"),
               "reverse KL": dict(kind="reverse_kl"), "JSD": dict(kind="jsd")}
R1_METHODS = {"SFT start": "base", "GRPO on the student": "grpo", "SFT on verified teacher traces": "sft",
              "on-policy distillation": "on_policy"}


def run_kd(seeds) -> None:
    from nanoseek.benchmarking import write_result
    from nanoseek.distill import KDConfig, story_teacher, text_kd_run
    from nanoseek.models.decoder import DecoderConfig
    from nanoseek.seeds import over_seeds, table, verdict
    from nanoseek.train import evaluate

    t0 = time.perf_counter()
    teacher, vocab, get_batch, info = story_teacher(KD)
    teacher_val = evaluate(teacher, get_batch, KD["eval_batches"])
    scfg = DecoderConfig(vocab_size=len(vocab), max_seq_len=KD["block"], **KD["student"])
    res = {}
    for name, kw in KD_VARIANTS.items():
        kd = KDConfig(**{"beta": KD["beta"], **kw})
        res[name] = over_seeds(lambda s: text_kd_run(teacher, get_batch, scfg, kd, KD["steps"], KD["lr"], s,
                                                     KD["eval_batches"])[1], desc=name)["value"]
        print(name, res[name].format(4), flush=True)
    verdicts = {name: verdict(res[name], res["hard labels"], names=(name, "hard labels"))
                for name in KD_VARIANTS if name != "hard labels"}
    n_t = sum(p.numel() for p in teacher.parameters())
    from nanoseek.models.decoder import Decoder
    n_s = sum(p.numel() for p in Decoder(scfg).parameters())
    body = (f"Teacher {n_t:,} parameters (validation CE {teacher_val:.4f}), student {n_s:,} ({n_t / n_s:.1f}x "
            f"smaller), {KD['steps']} steps each, validation cross-entropy on the data (nats/char), 3 seeds.\n\n"
            + table(res, header=("student trained with", "val CE mean ± std")) + "\n\n"
            + "\n".join(f"- {k} vs hard labels: {v}" for k, v in verdicts.items())
            + f"\n\nwall time {time.perf_counter() - t0:.0f} s")
    data = {"cfg": KD, "teacher_params": n_t, "student_params": n_s, "teacher_val": teacher_val,
            "results": {k: {"mean": v.mean, "std": v.std, "values": list(v.values)} for k, v in res.items()},
            "verdicts": verdicts}
    print(write_result(f"distill_kd_{scale()}", body, data=data))


def run_r1(seeds) -> None:
    from nanoseek.benchmarking import write_result
    from nanoseek.distill import r1_compare, r1_models
    from nanoseek.env import device
    from nanoseek.seeds import SeedSummary, table, verdict

    t0 = time.perf_counter()
    teacher, base, task, test_rows, info = r1_models(R1)
    teacher.to(device())
    base.to(device())
    runs = []
    for seed in seeds:
        out = r1_compare(teacher, base, task, test_rows, rl=R1["rl"], traces=R1["traces"],
                         distill_lr=R1["distill_lr"], batch_size=R1["batch_size"], seed=seed, digits=R1["digits"])
        out.pop("models")
        runs.append(out)
        print(seed, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}, flush=True)
    acc = {name: SeedSummary(tuple(r[key] for r in runs), tuple(seeds)) for name, key in R1_METHODS.items()}
    verdicts = {
        "SFT on traces vs GRPO": verdict(acc["SFT on verified teacher traces"], acc["GRPO on the student"],
                                         lower_is_better=False, names=("SFT on traces", "GRPO")),
        "on-policy vs GRPO": verdict(acc["on-policy distillation"], acc["GRPO on the student"],
                                     lower_is_better=False, names=("on-policy", "GRPO")),
        "SFT on traces vs on-policy": verdict(acc["SFT on verified teacher traces"], acc["on-policy distillation"],
                                              lower_is_better=False, names=("SFT on traces", "on-policy")),
        "GRPO vs SFT start": verdict(acc["GRPO on the student"], acc["SFT start"], lower_is_better=False,
                                     names=("GRPO", "SFT start")),
    }
    r0 = runs[0]
    body = (f"Teacher: chapter 10's recipe ({r0['teacher_params']:,} parameters, held-out greedy accuracy "
            f"{r0['teacher']:.3f}); student {r0['student_params']:,} parameters, same sloppy SFT start. "
            f"Held-out greedy accuracy on {R1['eval_n']} test problems, 3 seeds. Student FLOPs: GRPO "
            f"{r0['grpo_flops']:.3g}, SFT on traces {r0['sft_flops']:.3g} ({r0['sft_steps']} steps), on-policy "
            f"{r0['on_policy_flops']:.3g} ({r0['on_policy_steps']} steps); teacher FLOPs for traces "
            f"{r0['trace_teacher_flops']:.3g}, for on-policy scoring {r0['on_policy_teacher_flops']:.3g}.\n\n"
            + table(acc, digits=3, header=("student", "held-out accuracy mean ± std")) + "\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in verdicts.items())
            + f"\n\nwall time {time.perf_counter() - t0:.0f} s")
    data = {"cfg": R1, "runs": runs, "verdicts": verdicts,
            "accuracy": {k: {"mean": v.mean, "std": v.std, "values": list(v.values)} for k, v in acc.items()}}
    print(write_result(f"distill_r1_{scale()}", body, data=data))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["kd", "r1", "all"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    if args.part in ("kd", "all"):
        run_kd(seeds)
    if args.part in ("r1", "all"):
        run_r1(seeds)


if __name__ == "__main__":
    main()
