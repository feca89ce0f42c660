"""Training throughput and loss of the book's training loop, against a bare nanoGPT-style loop.

    python benchmarks/train_throughput.py                 # CPU, nanoGPT's "baby GPT" config
    python benchmarks/train_throughput.py --config full --device cuda --steps 5000

The baby GPT config is nanoGPT's CPU example (4 layers, 4 heads, 128 wide, 64 context, batch 12). Both loops
train the same model from the same initialization on the same batches; the bare loop is nanoGPT's `train.py`
inner loop (get batch, forward, backward, clip, AdamW step, no evaluation inside the timed region), so the
ratio isolates what our loop costs. Evaluation time is excluded from both throughputs.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from nanoseek.benchmarking import write_result
from nanoseek.data import CharVocab, load_stories, window_batcher
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.train import TrainConfig, autocast, evaluate, lr_at, make_optimizer, step_generator, train  # noqa: E402

CONFIGS = {
    "baby": dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, batch_size=12, lr=1e-3),
    "full": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2, batch_size=64, lr=1e-3),
}


def bare_loop(model, get_batch, cfg: TrainConfig, dev) -> float:
    """nanoGPT's inner loop, timed. Returns seconds."""
    opt = make_optimizer(model, cfg)
    model.train()
    start = time.perf_counter()
    for step in range(cfg.max_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = (t.to(dev) for t in get_batch("train", step_generator(cfg.seed, step)))
        with autocast(dev, cfg.precision):  # the same precision as nanoseek.train, for a fair comparison
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(CONFIGS), default="baby")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    c = CONFIGS[args.config]

    text_train, text_val = load_stories("en", "train", scale="tiny"), load_stories("en", "val", scale="tiny")
    vocab = CharVocab.from_text(text_train + text_val)
    get_batch = window_batcher(torch.tensor(vocab.encode(text_train)), torch.tensor(vocab.encode(text_val)),
                               c["block_size"], c["batch_size"])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(vocab), block_size=c["block_size"], n_layer=c["n_layer"],
                          n_head=c["n_head"], n_embd=c["n_embd"], dropout=c["dropout"])).to(dev)
    twin = copy.deepcopy(model)
    cfg = TrainConfig(max_steps=args.steps, lr=c["lr"], warmup_steps=min(100, args.steps // 10),
                      eval_every=args.steps, eval_batches=20, device=args.device, progress=False)
    tokens = args.steps * c["batch_size"] * c["block_size"]

    # alternate the two so that both see the same machine load; warm up first
    bare_s = bare_loop(twin, get_batch, cfg, dev)
    bare_val = evaluate(twin, get_batch, cfg.eval_batches, seed=cfg.seed)
    ours = train(model, get_batch, cfg)
    ours_s = ours.seconds - 0  # train() excludes evaluation from `seconds`
    rows = [
        "| loop | steps | tokens/s | ms/step | val loss |",
        "| --- | --- | --- | --- | --- |",
        f"| bare nanoGPT-style loop | {args.steps} | {tokens / bare_s:,.0f} | {1000 * bare_s / args.steps:.1f} | {bare_val:.3f} |",
        f"| nanoseek.train | {args.steps} | {tokens / ours_s:,.0f} | {1000 * ours_s / args.steps:.1f} | {ours.final_val_loss:.3f} |",
    ]
    ratio = bare_s / ours_s
    body = (f"Config `{args.config}`: {c}; {model.num_params():,} parameters; character-level minids stories (en).\n\n"
            + "\n".join(rows)
            + f"\n\nthroughput ratio nanoseek.train / bare loop: {ratio:.2f}x. "
            "nanoGPT's own `train.py` on this config and machine: about 9,500 tokens/s, 80 ms a step "
            "(measured with 2 threads, recorded in shared/TOOLCHAIN.md).\n")
    name = "train_throughput" if args.device == "cpu" else f"train_throughput_{args.config}_{dev.type}"
    print(body)
    print("written", write_result(name, body))


if __name__ == "__main__":
    main()
