"""Chapter 3's SFT comparisons over seeds: the loss mask, the per-sample attention mask, packed vs padded rows.

One pretrained model (the notebook's recipe at `tiny`: same tokenizer, same pretraining, same seed), then for
each SFT seed four fine-tunes that differ in one thing each from the notebook's recipe (packed rows, loss on
the assistant's tokens, block-diagonal attention):

- `packed, masks`          the notebook's recipe;
- `packed, no attention mask`  same rows, but the model gets no segment ids: one causal sequence per row, so a
                           sample sees the samples before it and its positions run on;
- `packed, loss on every token`  same rows and masks, targets on every token (the user's story too);
- `padded rows`            chapter 3's earlier recipe: one conversation per row, right-padded, 8 rows a step.

Each is scored on the whole held-out test split (exact answer accuracy with `evaluate_chat`) and by the loss on
the assistant tokens of the test rows. The notebook reads `benchmarks/results/sft_variants_<scale>.json`.

    OMP_NUM_THREADS=1 python benchmarks/sft_variants.py            # tiny, 3 seeds on CPU (about 15 min on 2 cores)
    python benchmarks/sft_variants.py --seeds 1337 --steps 20      # a quick smoke run (not recorded)
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The notebook's tiny CFG (notebooks/03_pretrain_sft.py): keep the two in step.
TINY = dict(vocab_size=2048, tokenizer_chars=2_000_000, n_layer=2, n_head=4, n_embd=128, block_size=160,
            pretrain_steps=300, pretrain_batch=13, pretrain_lr=3e-3, sft_steps=600, sft_rows=4, sft_lr=3e-3,
            padded_rows=8, max_new_tokens=40)
VARIANTS = ("packed, masks", "packed, no attention mask", "packed, loss on every token", "padded rows")


def run(cfg: dict, seeds: tuple[int, ...], log=print) -> dict:
    import torch

    from nanoseek.data import load_instructions, load_stories, window_batcher
    from nanoseek.data.chat import SPECIAL_TOKENS, encode_chat, packed_batcher, packed_loss, sft_batcher
    from nanoseek.data.stories import load_story_list
    from nanoseek.env import seed_everything
    from nanoseek.models.gpt import GPT, GPTConfig
    from nanoseek.sft import evaluate_chat, story_tokens
    from nanoseek.tokenizer import Tokenizer
    from nanoseek.train import TrainConfig, evaluate, train

    torch.set_num_threads(1)
    seed_everything(1337)
    tok = Tokenizer.train(load_stories("en", "train")[: cfg["tokenizer_chars"]], cfg["vocab_size"],
                          special_tokens=SPECIAL_TOKENS)
    train_ids = story_tokens(tok, load_story_list("en", "train"))
    val_ids = story_tokens(tok, load_story_list("en", "val"))
    seed_everything(1337)
    base = GPT(GPTConfig(block_size=cfg["block_size"], vocab_size=tok.vocab_size, n_layer=cfg["n_layer"],
                         n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=0.0, bias=False))
    steps = cfg["pretrain_steps"]
    pre = train(base, window_batcher(train_ids, val_ids, cfg["block_size"], cfg["pretrain_batch"]),
                TrainConfig(max_steps=steps, lr=cfg["pretrain_lr"], warmup_steps=steps // 10,
                            eval_every=max(1, steps // 4), eval_batches=10, progress=False))
    log(f"pretrained: val loss {pre.final_val_loss:.3f} in {pre.seconds:.0f} s")
    sft_train, sft_test = load_instructions("train", "en"), load_instructions("test", "en")
    B = cfg["block_size"]
    packed, pack_info = packed_batcher(tok, sft_train, sft_test, B, cfg["sft_rows"])
    packed_all, _ = packed_batcher(tok, sft_train, sft_test, B, cfg["sft_rows"], masked=False)
    padded, _ = sft_batcher(tok, sft_train, sft_test, B, cfg["padded_rows"])
    answer_batches, _ = sft_batcher(tok, sft_test, sft_test, B, 8, masked=True)
    lens = [len(encode_chat(tok, r["messages"])[0]) - 1 for r in sft_train]
    mean_len = sum(n for n in lens if n <= B) / sum(n <= B for n in lens)

    def no_segments(model, batch):
        x, y, _ = batch
        return model(x, y)[1]

    recipes = {"packed, masks": (packed, packed_loss), "packed, no attention mask": (packed, no_segments),
               "packed, loss on every token": (packed_all, packed_loss), "padded rows": (padded, None)}
    out: dict = {"config": cfg, "seeds": list(seeds), "pretrain_val_loss": pre.final_val_loss,
                 "pack_fill": pack_info["train"]["fill"], "runs": {v: [] for v in VARIANTS}}
    for seed in seeds:
        for name in VARIANTS:
            get_batch, loss_fn = recipes[name]
            g = torch.Generator().manual_seed(seed)
            positions = sum(get_batch("train", g)[0].numel() for _ in range(50)) / 50  # what a step computes
            g = torch.Generator().manual_seed(seed)
            real = (sum(int((get_batch("train", g)[2] > 0).sum()) for _ in range(50)) / 50 if name != "padded rows"
                    else cfg["padded_rows"] * mean_len)  # positions that hold a sample's token
            model = copy.deepcopy(base)
            kw = {} if loss_fn is None else {"loss_fn": loss_fn}
            res = train(model, get_batch, TrainConfig(max_steps=cfg["sft_steps"], lr=cfg["sft_lr"], seed=seed,
                                                      warmup_steps=cfg["sft_steps"] // 10,
                                                      eval_every=max(1, cfg["sft_steps"] // 4), eval_batches=10,
                                                      progress=False), **kw)
            ev = evaluate_chat(model, tok, sft_test, cfg["max_new_tokens"])
            row = {"seed": seed, "accuracy": ev["accuracy"], "template": ev["template"],
                   "ci95": ev["intervals"]["accuracy"]["ci95"], "by_task": ev["by_task"],
                   "answer_loss": evaluate(model, answer_batches, 10), "sft_seconds": res.seconds,
                   "positions_per_step": positions, "sample_tokens_per_step": real}
            out["runs"][name].append(row)
            log(json.dumps({"variant": name, **row}))
    return out


def summarize(out: dict) -> tuple[str, dict]:
    from nanoseek.seeds import SeedSummary, verdict

    seeds = tuple(out["seeds"])
    summ = {name: {m: SeedSummary(tuple(r[m] for r in runs), seeds) for m in ("accuracy", "answer_loss")}
            for name, runs in out["runs"].items()}
    pairs = {"loss mask": ("packed, masks", "packed, loss on every token"),
             "attention mask": ("packed, masks", "packed, no attention mask"),
             "packing": ("packed, masks", "padded rows")}
    verdicts = {}
    for what, (a, b) in pairs.items():
        verdicts[what] = {
            "accuracy": verdict(summ[a]["accuracy"], summ[b]["accuracy"], lower_is_better=False, names=(a, b)),
            "answer_loss": verdict(summ[a]["answer_loss"], summ[b]["answer_loss"], names=(a, b))}
    lines = [f"SFT variants at tiny, {len(seeds)} SFT seeds {list(seeds)} from one pretrained model "
             f"(pretraining val loss {out['pretrain_val_loss']:.3f} nats/token). Config: `{json.dumps(out['config'])}`",
             "", "| variant | exact answer accuracy (mean ± std) | held-out answer loss | positions / step | "
             "sample tokens / step | SFT seconds (each seed) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, runs in out["runs"].items():
        lines.append(f"| {name} | {summ[name]['accuracy'].format(3)} | {summ[name]['answer_loss'].format(3)} | "
                     f"{runs[0]['positions_per_step']:.0f} | {runs[0]['sample_tokens_per_step']:.0f} | "
                     + ", ".join(f"{r['sft_seconds']:.0f}" for r in runs) + " |")
    lines += ["", "| comparison | accuracy verdict | answer-loss verdict |", "| --- | --- | --- |"]
    lines += [f"| {w} | {v['accuracy']} | {v['answer_loss']} |" for w, v in verdicts.items()]
    lines += ["", "A verdict names a winner only when the seed ranges do not overlap (`nanoseek.seeds.verdict`)."]
    return "\n".join(lines), verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1337,1,2")
    ap.add_argument("--steps", type=int, default=None, help="SFT steps (a smoke run; not recorded)")
    args = ap.parse_args()
    os.environ.setdefault("NANOSEEK_SCALE", "tiny")
    cfg = dict(TINY)
    if args.steps is not None:
        cfg.update(sft_steps=args.steps, pretrain_steps=args.steps)
    t0 = time.perf_counter()
    out = run(cfg, tuple(int(s) for s in args.seeds.split(",")))
    body, verdicts = summarize(out)
    out["verdicts"], out["seconds"] = verdicts, time.perf_counter() - t0
    print(body)
    if args.steps is None:
        from nanoseek.benchmarking import write_result

        path = write_result("sft_variants_tiny", body, data=out)
        print("wrote", path)


if __name__ == "__main__":
    main()
