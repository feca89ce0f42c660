"""Chapter 3 end to end: BPE tokenizer → pretrain the chapter-1 GPT on stories → SFT with and without the
loss mask → held-out chat metrics before/after. Writes benchmarks/results/sft.md (or --out).

    python benchmarks/sft.py                       # tiny config on CPU
    python3 benchmarks/sft.py --device cuda --scale full

The lead's GPU run: `python3 benchmarks/sft.py --device cuda` (writes benchmarks/results/sft_full.md).
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

import torch  # noqa: E402

CONFIGS = {
    "tiny": dict(langs="en", vocab_size=2048, tokenizer_chars=2_000_000, n_layer=2, n_head=4, n_embd=128, block_size=160, pretrain_block=160,
                 pretrain_steps=360, pretrain_batch=13, pretrain_lr=3e-3, sft_steps=600, sft_batch=8, sft_lr=3e-3,
                 eval_rows=300, max_new_tokens=40),
    "full": dict(langs="both", vocab_size=4096, tokenizer_chars=20_000_000, n_layer=6, n_head=6, n_embd=384, block_size=256, pretrain_block=256,
                 pretrain_steps=3000, pretrain_batch=64, pretrain_lr=1e-3, sft_steps=1500, sft_batch=64, sft_lr=3e-4,
                 eval_rows=1200, max_new_tokens=48),
}


def run(cfg: dict, device: str, scale: str, log=print) -> dict:
    from nanoseek.data import load_instructions, load_stories
    from nanoseek.data.batching import window_batcher
    from nanoseek.data.chat import SPECIAL_TOKENS, sft_batcher
    from nanoseek.data.stories import load_story_list
    from nanoseek.env import seed_everything
    from nanoseek.models.gpt import GPT, GPTConfig
    from nanoseek.sft import evaluate_chat, story_tokens
    from nanoseek.tokenizer import Tokenizer
    from nanoseek.train import TrainConfig, train

    seed_everything(1337)
    langs = ("en", "zh") if cfg["langs"] == "both" else (cfg["langs"],)
    t0 = time.perf_counter()
    tok_text = "".join(load_stories(lang, "train", scale)[: cfg["tokenizer_chars"] // len(langs)] for lang in langs)
    tok = Tokenizer.train(tok_text, cfg["vocab_size"], special_tokens=SPECIAL_TOKENS)
    t_tok = time.perf_counter() - t0
    train_ids = story_tokens(tok, [s for l in langs for s in load_story_list(l, "train", scale)])
    val_ids = story_tokens(tok, [s for l in langs for s in load_story_list(l, "val", scale)])
    log(f"tokenizer {t_tok:.1f}s, pretrain tokens {len(train_ids):,} train / {len(val_ids):,} val")

    gcfg = GPTConfig(block_size=cfg["block_size"], vocab_size=tok.vocab_size, n_layer=cfg["n_layer"],
                     n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=0.0, bias=False)
    model = GPT(gcfg)
    pre = train(model, window_batcher(train_ids, val_ids, cfg["pretrain_block"], cfg["pretrain_batch"]),
                TrainConfig(max_steps=cfg["pretrain_steps"], lr=cfg["pretrain_lr"], warmup_steps=cfg["pretrain_steps"] // 10,
                            eval_every=max(1, cfg["pretrain_steps"] // 5), eval_batches=10, device=device, progress=False))
    log(f"pretrain: val loss {pre.val_loss[0]:.3f} -> {pre.final_val_loss:.3f} in {pre.seconds:.1f}s "
        f"({pre.tokens_per_second:,.0f} tok/s)")

    rows_lang = cfg["langs"]
    train_rows = load_instructions("train", rows_lang, scale)
    test_rows = load_instructions("test", rows_lang, scale)
    # evenly spaced held-out rows (the committed order is by language, tasks are mixed)
    eval_rows = test_rows[:: max(1, len(test_rows) // cfg["eval_rows"])][: cfg["eval_rows"]]
    out = {"config": cfg, "scale": scale, "device": device, "tokenizer_seconds": t_tok,
           "pretrain": {"val_first": pre.val_loss[0], "val_final": pre.final_val_loss, "seconds": pre.seconds,
                        "tokens_per_second": pre.tokens_per_second}}
    t0 = time.perf_counter()
    before = evaluate_chat(model, tok, eval_rows, cfg["max_new_tokens"])
    log(f"before SFT: template {before['template']:.2f} eot {before['eot']:.2f} acc {before['accuracy']:.2f} "
        f"contains {before['contains']:.2f} ({time.perf_counter() - t0:.1f}s)")
    out["before"] = {k: v for k, v in before.items() if k != "replies"}
    from nanoseek.train import evaluate

    answer_batches, _ = sft_batcher(tok, test_rows, test_rows, cfg["block_size"], cfg["sft_batch"], masked=True)
    out["answer_loss"] = {"before": evaluate(model, answer_batches, 10)}
    for masked in (True, False):
        m = copy.deepcopy(model)
        get_batch, info = sft_batcher(tok, train_rows, test_rows, cfg["block_size"], cfg["sft_batch"], masked=masked)
        res = train(m, get_batch, TrainConfig(max_steps=cfg["sft_steps"], lr=cfg["sft_lr"], warmup_steps=cfg["sft_steps"] // 10,
                                              eval_every=max(1, cfg["sft_steps"] // 3), eval_batches=5, device=device,
                                              progress=False))
        t0 = time.perf_counter()
        after = evaluate_chat(m, tok, eval_rows, cfg["max_new_tokens"])
        name = "masked" if masked else "unmasked"
        log(f"SFT {name}: {res.seconds:.1f}s, dropped {info['train']['dropped_too_long']} long rows; template "
            f"{after['template']:.2f} eot {after['eot']:.2f} acc {after['accuracy']:.2f} contains {after['contains']:.2f} "
            f"by task {after['by_task']} ({time.perf_counter() - t0:.1f}s)")
        out["answer_loss"][name] = evaluate(m, answer_batches, 10)
        out[name] = {k: v for k, v in after.items() if k != "replies"}
        out[name]["sft_seconds"] = res.seconds
        out[name]["sft_val_loss"] = res.val_loss
        out[name]["examples"] = after["replies"][:6]
    return out


def to_markdown(r: dict) -> str:
    cfg = r["config"]
    lines = [f"Scale `{r['scale']}` on `{r['device']}`. Config: `{json.dumps(cfg)}`", "",
             f"- tokenizer training: {r['tokenizer_seconds']:.1f} s",
             f"- pretraining: val loss {r['pretrain']['val_first']:.3f} -> {r['pretrain']['val_final']:.3f} nats/token "
             f"in {r['pretrain']['seconds']:.1f} s ({r['pretrain']['tokens_per_second']:,.0f} tokens/s)",
             f"- SFT: {cfg['sft_steps']} steps x {cfg['sft_batch']} rows, masked {r['masked']['sft_seconds']:.1f} s, "
             f"unmasked {r['unmasked']['sft_seconds']:.1f} s", "",
             f"Held-out chat metrics, greedy, {r['before']['n']} test prompts ({r['before']['n_checkable']} checkable), "
             f"max {cfg['max_new_tokens']} new tokens:", "",
             "| model | template share | EOT share | answer accuracy | contains answer | held-out answer loss | accuracy by task |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("before", "masked", "unmasked"):
        m = r[name]
        label = {"before": "pretrained (before SFT)", "masked": "SFT, loss mask", "unmasked": "SFT, no mask"}[name]
        tasks = ", ".join(f"{t} {v:.2f}" for t, v in m["by_task"].items())
        lines.append(f"| {label} | {m['template']:.3f} | {m['eot']:.3f} | {m['accuracy']:.3f} | {m['contains']:.3f} | "
                     f"{r['answer_loss'][name]:.3f} | {tasks} |")
    lines += ["", "Template share: replies that are text closed by `<|end|>` with no other special token. Answer accuracy: "
              "template followed and the reply contains the fact (QA) or equals the rewrite. Held-out answer loss: mean "
              "cross-entropy on assistant tokens of test rows (nats/token).", "", "Examples (SFT, loss mask):", ""]
    for ex in r["masked"]["examples"]:
        lines.append(f"- `{ex['task']}`: {ex['reply']!r} (correct: {ex['correct']})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", default=None, choices=("tiny", "full"))
    parser.add_argument("--name", default=None, help="result name (default: sft for tiny, sft_full for full)")
    parser.add_argument("--set", action="append", default=[], help="override a config key, e.g. --set sft_steps=50")
    args = parser.parse_args()
    scale = args.scale or ("full" if args.device.startswith("cuda") else "tiny")
    os.environ["NANOSEEK_SCALE"] = scale
    cfg = dict(CONFIGS[scale])
    for kv in args.set:
        k, v = kv.split("=", 1)
        cfg[k] = type(cfg[k])(v)
    result = run(cfg, args.device, scale)
    from nanoseek.benchmarking import write_result

    path = write_result(args.name or ("sft" if scale == "tiny" else "sft_full"), to_markdown(result))
    print(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
