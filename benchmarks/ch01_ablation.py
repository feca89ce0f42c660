"""Chapter 1's block ablation over seeds: attention alone, then + residual, + MLP, + LayerNorm (the Block).

    python benchmarks/ch01_ablation.py --scale tiny          # CPU, the config the notebook runs at tiny
    python benchmarks/ch01_ablation.py --scale full          # one GPU
    NANOSEEK_GPU_SMOKE=1 python benchmarks/ch01_ablation.py --scale full   # a few steps, to check the script

Each variant of `nanoseek.models.gpt_ablation.LADDER` trains on the Shakespeare train split at the config of
`ABLATION[scale]` (the same dict the notebook's `CFG["ablation"]` holds) for seeds 0, 1, 2 and reports the
validation loss. Writes `benchmarks/results/ch01_ablation_<scale>.{md,json}`; the notebook reads the JSON and
calls a gap a win only where the seed ranges do not overlap (`nanoseek.seeds.verdict`).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from nanoseek.benchmarking import write_result
from nanoseek.data import CharVocab, load_shakespeare, window_batcher
from nanoseek.models.gpt import GPTConfig
from nanoseek.models.gpt_ablation import LADDER, ablated_gpt
from nanoseek.seeds import over_seeds, table, verdict
from nanoseek.train import TrainConfig, train

ABLATION = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=64, block_size=32, batch_size=16, steps=200, lr=3e-3,
                 warmup_steps=20, eval_batches=10),
    "full": dict(n_layer=6, n_head=6, n_embd=192, block_size=128, batch_size=32, steps=400, lr=2e-3,
                 warmup_steps=40, eval_batches=20),
}


def unigram_loss(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy of the validation text under the train split's character frequencies (add-one)."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1
    return float(-(counts / counts.sum()).log()[val_ids].mean())


def run_variant(parts, seed: int, a: dict, train_ids, val_ids, vocab_size: int, device=None) -> float:
    """Validation loss of one variant, one seed (the model init and the batches both follow `seed`)."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=vocab_size, block_size=a["block_size"], n_layer=a["n_layer"],
                       n_head=a["n_head"], n_embd=a["n_embd"])
    model = ablated_gpt(config, parts)
    cfg = TrainConfig(max_steps=a["steps"], lr=a["lr"], warmup_steps=a["warmup_steps"], eval_every=a["steps"],
                      eval_batches=a["eval_batches"], seed=seed, progress=False, device=device)
    return train(model, window_batcher(train_ids, val_ids, a["block_size"], a["batch_size"]), cfg).final_val_loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(ABLATION), default="tiny")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    a = dict(ABLATION[args.scale])
    smoke = os.environ.get("NANOSEEK_GPU_SMOKE") == "1"
    if smoke:
        a.update(steps=2, eval_batches=1, n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=4)
    train_text, val_text = load_shakespeare("train", args.scale), load_shakespeare("val", args.scale)
    vocab = CharVocab.from_text(train_text + val_text)
    train_ids, val_ids = torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text))
    t0 = time.perf_counter()
    rows = {name: over_seeds(lambda s, p=parts: run_variant(p, s, a, train_ids, val_ids, len(vocab)),
                             seeds=range(args.seeds), desc=name)["value"]
            for name, parts in LADDER.items()}
    seconds = time.perf_counter() - t0
    names = list(rows)
    verdicts = {f"{names[i]} vs {names[i + 1]}": verdict(rows[names[i]], rows[names[i + 1]],
                                                         names=(names[i], names[i + 1]))
                for i in range(len(names) - 1)}
    uni = unigram_loss(train_ids, val_ids, len(vocab))
    body = (f"Shakespeare ({args.scale} split), config {a}; unigram loss {uni:.4f}, ln V {math.log(len(vocab)):.4f}; "
            f"{seconds:.0f} s{' (SMOKE: not a measurement)' if smoke else ''}\n\n"
            + table(rows, header=("variant", "val loss (nats/char)")) + "\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in verdicts.items()))
    print(body)
    if smoke:
        return
    write_result(f"ch01_ablation_{args.scale}", body,
                 data={"config": a, "scale": args.scale, "seeds": list(range(args.seeds)),
                       "val_loss": {k: list(v.values) for k, v in rows.items()}, "verdicts": verdicts,
                       "unigram_loss": uni, "seconds": round(seconds, 1)})


if __name__ == "__main__":
    main()
