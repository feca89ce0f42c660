"""Chapter 4's MHA / GQA / MQA comparison over 3 seeds, on the Shakespeare corpus (character level).

    python benchmarks/ch04_gqa_seeds.py                 # tiny, CPU: writes benchmarks/results/ch04_gqa_seeds_tiny.{md,json}
    python3 benchmarks/ch04_gqa_seeds.py --scale full --device cuda   # writes ch04_gqa_seeds_full.{md,json}
    # or one variant per process (benchmarks/gpu/ch04_seeds.sh), then --merge their records into one

The configs are chapter 4's `CFG` (notebooks/04_attention_kv_cache.py); the notebook checks that the record
it reads was made with its own config. Seed s initializes the model with `torch.manual_seed(s)` and draws the
batches with `TrainConfig(seed=1337 + s)`; seed 0 is the notebook's own run. The verdicts come from
`nanoseek.seeds.verdict`: a winner only when the seed ranges do not overlap.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# must equal the training part of chapter 4's CFG (the notebook compares)
CONFIGS = {
    "tiny": dict(n_layer=2, n_embd=128, n_head=8, kv_heads=dict(MHA=8, GQA=2, MQA=1), intermediate_size=352,
                 block_size=64, batch_size=16, max_steps=300, lr=3e-3, warmup_steps=30, eval_every=100,
                 eval_batches=10),
    "full": dict(n_layer=6, n_embd=384, n_head=12, kv_heads=dict(MHA=12, GQA=4, MQA=1), intermediate_size=1024,
                 block_size=256, batch_size=64, max_steps=3000, lr=1e-3, warmup_steps=100, eval_every=250,
                 eval_batches=40),
}
TRAIN_KEYS = tuple(CONFIGS["tiny"])


def run_variant(cfg: dict, name: str, seed: int, device: str | None = None) -> dict:
    import torch

    from nanoseek.data import CharVocab, load_shakespeare, window_batcher
    from nanoseek.models.decoder import Decoder, DecoderConfig
    from nanoseek.train import TrainConfig, train

    train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
    vocab = CharVocab.from_text(train_text + val_text)
    get_batch = window_batcher(torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text)),
                               cfg["block_size"], cfg["batch_size"])
    torch.manual_seed(seed)
    model = Decoder(DecoderConfig(vocab_size=len(vocab), n_layer=cfg["n_layer"], n_embd=cfg["n_embd"],
                                  n_head=cfg["n_head"], n_kv_head=cfg["kv_heads"][name],
                                  intermediate_size=cfg["intermediate_size"], max_seq_len=cfg["block_size"],
                                  tie_embeddings=True))
    extra = {"device": device} if device else {}
    res = train(model, get_batch, TrainConfig(max_steps=cfg["max_steps"], lr=cfg["lr"],
                                              warmup_steps=cfg["warmup_steps"], eval_every=cfg["eval_every"],
                                              eval_batches=cfg["eval_batches"], seed=1337 + seed, progress=False,
                                              **extra))
    return {"val_loss": res.final_val_loss, "seconds": res.seconds}


def main() -> None:
    from nanoseek.benchmarking import write_result
    from nanoseek.seeds import SeedSummary, over_seeds, table, verdict

    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default=os.environ.get("NANOSEEK_SCALE", "tiny"), choices=sorted(CONFIGS))
    ap.add_argument("--device", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="override max_steps (smoke tests only)")
    ap.add_argument("--variants", default=None, help="comma-separated subset (e.g. MQA): merged into the existing "
                    "record of the same config, so a long full run can be split over several calls")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                    help="combine records of this config made elsewhere (e.g. one variant per process on one GPU) "
                    "into one record, training nothing")
    ap.add_argument("--out", default=None, help="record name (default ch04_gqa_seeds_<scale>)")
    args = ap.parse_args()
    os.environ["NANOSEEK_SCALE"] = args.scale
    cfg = dict(CONFIGS[args.scale])
    if args.steps:
        cfg.update(max_steps=args.steps, eval_every=args.steps, warmup_steps=1)
    seeds = tuple(range(args.seeds))
    from nanoseek.benchmarking import read_result

    name_out = args.out or f"ch04_gqa_seeds_{args.scale}" + ("_smoke" if args.steps else "")
    summaries: dict[str, dict[str, SeedSummary]] = {}
    same_run = lambda rec: rec["data"]["config"] == cfg and rec["data"]["seeds"] == list(seeds)  # noqa: E731

    def take(rec: dict) -> None:  # the variants a record holds, as seed summaries
        for n, vals in rec["data"]["val_loss"].items():
            summaries[n] = {"val_loss": SeedSummary(tuple(vals), seeds),
                            "seconds": SeedSummary(tuple(rec["data"]["seconds"][n]), seeds)}

    old = read_result(name_out)
    if args.variants and old is not None and same_run(old):
        take(old)
    for path in args.merge or ():
        rec = json.loads(path.read_text())
        if not same_run(rec):
            raise ValueError(f"--merge {path}: config or seeds differ from scale {args.scale!r} with {len(seeds)} seeds")
        take(rec)
    todo = [] if args.merge else args.variants.split(",") if args.variants else list(cfg["kv_heads"])
    for name in todo:
        summaries[name] = over_seeds(lambda s: run_variant(cfg, name, s, args.device), seeds, desc=name)
        print(name, summaries[name]["val_loss"])
    summaries = {n: summaries[n] for n in cfg["kv_heads"] if n in summaries}
    loss = {name: s["val_loss"] for name, s in summaries.items()}
    verdicts = {f"{a} vs {b}": verdict(loss[a], loss[b], names=(a, b))
                for a, b in (("MHA", "MQA"), ("MHA", "GQA"), ("GQA", "MQA")) if a in loss and b in loss}
    body = (f"Scale `{args.scale}`, Shakespeare (character level), {cfg['max_steps']} steps, seeds {list(seeds)}; "
            f"validation loss in nats/char.\n\n"
            + (f"Merged from {', '.join(f'`{m.name}`' for m in args.merge)} (one process per variant, at once on "
               "one device: their seconds are upper bounds).\n\n" if args.merge else "") + table(loss, header=("attention", "val loss mean ± std"))
            + "\n\n" + "\n".join(f"- {k}: **{v}**" for k, v in verdicts.items()))
    data = {"scale": args.scale, "config": cfg, "seeds": list(seeds), "corpus": "shakespeare",
            "val_loss": {n: list(s.values) for n, s in loss.items()},
            "seconds": {n: list(s["seconds"].values) for n, s in summaries.items()},
            "verdicts": verdicts}
    print(write_result(name_out, body, data=data))
    print(body)


if __name__ == "__main__":
    main()
