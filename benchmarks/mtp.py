"""Multi-token prediction: main-head loss with and without MTP, and self-speculative decoding. (Chapter 7.)

Trains the same character-level decoder on minids stories with mtp_depth = 0, 1, 2 (same seed, same steps),
records the main head's validation loss of each, then decodes continuations of validation prompts with
`generate_speculative_mtp` and with plain greedy `generate` (KV cache), checks that the outputs are equal
token for token, and records the acceptance rate per depth, tokens per main-model forward, and the wall-clock
and CPU-time ratio plain / speculative (above 1: speculative decoding is faster).

    python3 benchmarks/mtp.py                       # CPU, tiny (the chapter's models)
    python3 benchmarks/mtp.py --device cuda         # GPU, full (6 layers, 384 wide, 256 context)

Writes benchmarks/results/mtp.md (or mtp_cuda.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nanoseek.benchmarking import timed, write_result  # noqa: E402
from nanoseek.data import CharVocab, load_stories, window_batcher  # noqa: E402
from nanoseek.generate import generate, generate_speculative_mtp  # noqa: E402
from nanoseek.models.decoder import Decoder, DecoderConfig  # noqa: E402
from nanoseek.nn.mtp import mtp_loss_fn  # noqa: E402
from nanoseek.train import TrainConfig, train  # noqa: E402

CONFIGS = {
    "tiny": dict(block_size=64, n_layer=2, n_embd=64, n_head=4, intermediate_size=176, batch_size=16,
                 max_steps=200, lr=3e-3, warmup_steps=20, eval_every=50, eval_batches=8,
                 n_prompts=12, prompt_len=16, new_tokens=48, deep_layers=8),
    "full": dict(block_size=256, n_layer=6, n_embd=384, n_head=6, intermediate_size=1024, batch_size=64,
                 max_steps=1500, lr=1e-3, warmup_steps=100, eval_every=250, eval_batches=40,
                 n_prompts=20, prompt_len=64, new_tokens=192, deep_layers=12),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", choices=sorted(CONFIGS), default=None, help="default: tiny on cpu, full on cuda")
    ap.add_argument("--depths", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--deep-layers", type=int, default=None,
                    help="also train a D=1 model with this many main layers (0: skip); default 8 tiny, 12 full")
    args = ap.parse_args()
    device = torch.device(args.device)
    scale = args.scale or ("full" if device.type == "cuda" else "tiny")
    cfg = dict(CONFIGS[scale])
    if args.max_steps:
        cfg["max_steps"] = args.max_steps
    if args.deep_layers is not None:
        cfg["deep_layers"] = args.deep_layers

    train_text, val_text = load_stories("en", "train", scale=scale), load_stories("en", "val", scale=scale)
    vocab = CharVocab.from_text(train_text + val_text)
    get_batch = window_batcher(torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text)),
                               cfg["block_size"], cfg["batch_size"])
    prompts = [val_text[i * 997: i * 997 + cfg["prompt_len"]] for i in range(cfg["n_prompts"])]

    loss_rows, spec_rows = [], []
    runs = [(cfg["n_layer"], d) for d in args.depths] + ([(cfg["deep_layers"], 1)] if cfg["deep_layers"] else [])
    for n_layer, depth in runs:
        torch.manual_seed(1337)
        torch.backends.cuda.matmul.allow_tf32 = device.type == "cuda"  # train with TF32 on a GPU
        model = Decoder(DecoderConfig(vocab_size=len(vocab), n_layer=n_layer, n_embd=cfg["n_embd"],
                                      n_head=cfg["n_head"], n_kv_head=cfg["n_head"],
                                      intermediate_size=cfg["intermediate_size"], max_seq_len=cfg["block_size"],
                                      mtp_depth=depth, mtp_lambda=0.3))
        result = train(model, get_batch, TrainConfig(
            max_steps=cfg["max_steps"], lr=cfg["lr"], warmup_steps=cfg["warmup_steps"], eval_every=cfg["eval_every"],
            eval_batches=cfg["eval_batches"], seed=1337, device=str(device), progress=False), loss_fn=mtp_loss_fn)
        tail = {k: sum(v[-20:]) / len(v[-20:]) for k, v in result.metrics.items()}
        loss_rows.append((n_layer, depth, model.num_params(), result.final_val_loss, result.seconds, tail))
        print(f"{n_layer} layers, D={depth}: main-head val loss {result.final_val_loss:.4f} ({result.seconds:.0f} s)", flush=True)
        model.eval()
        torch.backends.cuda.matmul.allow_tf32 = False  # decode in full float32
        for n_draft in range(1, depth + 1):
            total, same = None, 0
            plain_wall = plain_cpu = spec_wall = spec_cpu = 0.0
            for p in prompts:
                idx = torch.tensor([vocab.encode(p)], device=device)
                w, c, ref = timed(lambda: generate(model, idx, cfg["new_tokens"], temperature=0), device)
                plain_wall, plain_cpu = plain_wall + w, plain_cpu + c
                w, c, (out, stats) = timed(
                    lambda: generate_speculative_mtp(model, idx, cfg["new_tokens"], n_draft=n_draft), device)
                spec_wall, spec_cpu = spec_wall + w, spec_cpu + c
                same += bool(torch.equal(out, ref))
                total = stats if total is None else total.merge(stats)
            spec_rows.append((n_layer, depth, n_draft, total, plain_wall, plain_cpu, spec_wall, spec_cpu, same))
            print(f"  n_draft={n_draft}: acceptance {[round(a, 3) for a in total.acceptance_by_depth()]}, "
                  f"tokens/forward {total.tokens_per_forward:.3f}, wall speedup {plain_wall / spec_wall:.2f}x",
                  flush=True)

    lines = [f"scale `{scale}`, device `{device}`: character-level decoders ({cfg['n_layer']} layers as in the "
             f"chapter, plus a {cfg['deep_layers']}-layer main model with D=1; {cfg['n_embd']} wide, context "
             f"{cfg['block_size']}) on minids stories (en), {cfg['max_steps']} steps of batch {cfg['batch_size']}, "
             "λ = 0.3. The MTP module is always one block, so the deeper main model shows what a cheaper draft "
             "(relative to the verifier) does to the wall-clock speedup.", "",
             "## Main-head validation loss with and without MTP", "",
             "| main layers | mtp_depth | parameters | main-head val loss (nats/char) | Δ vs D=0 (same layers) | "
             "train seconds | final train losses (mean of last 20 steps) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    base = {n: val for n, d, _, val, _, _ in loss_rows if d == 0}
    for n_layer, depth, n_params, val, sec, tail in loss_rows:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in tail.items())
        delta = f"{val - base[n_layer]:+.4f}" if n_layer in base else "n/a"
        lines.append(f"| {n_layer} | {depth} | {n_params:,} | {val:.4f} | {delta} | {sec:.0f} | {parts} |")
    lines += ["", f"## Self-speculative decoding (greedy, batch 1, {cfg['n_prompts']} validation prompts of "
              f"{cfg['prompt_len']} characters, {cfg['new_tokens']} new tokens each)", "",
              "Speedup = plain time / speculative time (above 1: faster). 'Same output' counts prompts whose "
              "speculative output equals plain greedy `generate` token for token (exact in float32 on CPU; a "
              "GPU's multi-token and one-token kernels may round differently and flip a near-tie).", "",
              "| main layers | mtp_depth | drafts per round | acceptance by depth | tokens per main forward | "
              "wall-clock speedup | CPU-time speedup | same output |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n_layer, depth, n_draft, st, pw, pc, sw, sc, same in spec_rows:
        acc = ", ".join(f"{a:.1%}" for a in st.acceptance_by_depth())
        lines.append(f"| {n_layer} | {depth} | {n_draft} | {acc} | {st.tokens_per_forward:.3f} | {pw / sw:.2f}x | "
                     f"{pc / sc:.2f}x | {same}/{len(prompts)} |")
    lines += ["", "DeepSeek-V3 (§5.4.3): 85–90% acceptance of the second token, 1.8x tokens per second."]
    path = write_result("mtp_cuda" if device.type == "cuda" else "mtp", "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
