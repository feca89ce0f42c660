"""Chapter 6's comparisons over three seeds: the balancing methods, and MoE against a dense model. (Chapter 6.)

    python3 benchmarks/moe_seeds.py                 # tiny, CPU, about 80 s with one thread

Each variant of `benchmarks/moe_balance.py` (no balancing, Switch aux loss, loss-free, loss-free + V3's small
sequence-wise loss) and a dense decoder whose SwiGLU has the MoE layer's *active* width (K routed + shared
experts: the same FFN parameters per token) is trained on the Shakespeare text with seeds 0, 1, 2 (weights and batches). Writes
`benchmarks/results/moe_seeds.md` and `.json`: mean ± std per metric, and `nanoseek.seeds.verdict` of each
comparison the chapter reads (a winner only when the seed ranges do not overlap, else "tie").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from moe_balance import CFGS, DENSE, METHODS, run_one  # noqa: E402

from nanoseek.benchmarking import write_result  # noqa: E402
from nanoseek.seeds import over_seeds, table, verdict  # noqa: E402

COMPARISONS = [  # (metric, A, B): the rankings chapter 6 states
    ("val_loss", "loss-free", "aux loss"),
    ("vio_global", "loss-free", "aux loss"),
    ("vio_global", "aux loss", "no balancing"),
    ("vio_global", "loss-free + seq aux (V3)", "loss-free"),
    ("val_loss", "loss-free", "dense, same active FFN"),
    ("val_loss", "no balancing", "dense, same active FFN"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="tiny", choices=list(CFGS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--dispatch", default="sorted", choices=["sorted", "loop", "grouped"])
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    summaries = {}
    for method in [*METHODS, *DENSE]:
        def run(seed, method=method):
            r = run_one(args.scale, method, args.device, args.max_steps, args.dispatch, seed=seed)
            out = {"val_loss": r["val_loss"], "seconds": r["seconds"]}
            if method not in DENSE:  # a dense model has no experts to balance
                out["vio_global"] = r["vio_global"]
            return out

        summaries[method] = over_seeds(run, seeds, desc=method)
        print(method, {k: str(v) for k, v in summaries[method].items()}, flush=True)
    verdicts = []
    for metric, a, b in COMPARISONS:
        v = verdict(summaries[a][metric], summaries[b][metric], names=(a, b))
        verdicts.append(dict(metric=metric, a=a, b=b, verdict=v))
    c = CFGS[args.scale]
    body = [f"Scale `{args.scale}` on {args.device}, seeds {list(seeds)} (weights and batches), "
            f"{args.max_steps or c['max_steps']} steps, {args.dispatch} dispatch; the configurations of "
            f"`benchmarks/moe_balance.py`. Dense: SwiGLU of width (K + shared) x I = "
            f"{(c['num_experts_per_tok'] + c['n_shared_experts']) * c['moe_intermediate_size']}.", "",
            "Validation loss (nats/char):", "", table({m: s["val_loss"] for m, s in summaries.items()}), "",
            "MaxVio_global (validation batches, mean over layers):", "",
            table({m: s["vio_global"] for m, s in summaries.items() if m not in DENSE}, digits=3), "",
            "| metric | A | B | verdict (lower is better; tie = seed ranges overlap) |", "| --- | --- | --- | --- |"]
    body += [f"| {v['metric']} | {v['a']} | {v['b']} | {v['verdict']} |" for v in verdicts]
    data = {"scale": args.scale, "seeds": list(seeds), "verdicts": verdicts,
            "summaries": {m: {k: {"values": list(s.values), "mean": s.mean, "std": s.std} for k, s in d.items()}
                          for m, d in summaries.items()}}
    name = "moe_seeds" if args.scale == "tiny" else "moe_seeds_full"
    print(write_result(name, "\n".join(body), ROOT / "benchmarks" / "results", data=data).read_text())


if __name__ == "__main__":
    main()
