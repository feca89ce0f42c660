"""Training in FP8 against FP32/BF16, over seeds: the loss gap beside the seed noise. (Chapter 8.)

    python benchmarks/fp8_train.py                 # CPU, tiny: 5 variants x 3 seeds, simulated FP8 -> fp8_train
    python3 benchmarks/fp8_train.py --gpu          # H200, full: bf16 vs FP8 (torch._scaled_mm), 3 seeds, and
                                                   # the three GEMMs of one FP8 layer checked -> fp8_train_cuda
    NANOSEEK_GPU_SMOKE=1 python benchmarks/fp8_train.py --gpu --smoke   # a few steps on a CPU, no record

The model and data are chapter 4's: the decoder on the minids stories, character level. Variants:
fp32 (CPU reference), bf16 (autocast; GPU reference), fp8-deepseek (1×128 activations, 128×128 weights, 128×1 in Wgrad),
fp8-tensorwise (one scale per tensor) and fp8-block_grad (activation gradients in 128×128 blocks, the
paper's warning). The relative gap is (loss_variant - loss_reference) / loss_reference of the final
validation loss, per seed, against the reference of the same seed.

GEMM check (`--gpu`, before training): the real activations x and output gradients dy of every linear
layer of the first block (one forward/backward of the freshly initialized model, BF16 autocast), fed to the
FP8 layer's three GEMMs (Fprop y = x Wᵀ, Dgrad dx = dy W, Wgrad dW = dyᵀ x) on the training backend and on
the simulated one, and to BF16. Each is compared with the FP32 product by DeepGEMM's calc_diff: FP8 against
FP32 is the quantization error (should be < 1e-3 like BF16's order of magnitude allows); the backend against
the simulation on the same FP8 operands isolates the GEMM itself (should be < 1e-5: only summation order).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from nanoseek.benchmarking import write_result
from nanoseek.data import CharVocab, load_stories, window_batcher
from nanoseek.models.decoder import Decoder, DecoderConfig
from nanoseek.quant.experiment import train_precision
from nanoseek.seeds import SeedSummary, table, verdict
from nanoseek.train import TrainConfig

SCALES = {
    "tiny": dict(model=dict(n_layer=2, n_embd=128, n_head=8, n_kv_head=8, intermediate_size=352),
                 block_size=64, batch_size=8, max_steps=160, lr=3e-3, warmup_steps=16, eval_every=40,
                 eval_batches=8),
    "full": dict(model=dict(n_layer=8, n_embd=1024, n_head=16, n_kv_head=16, intermediate_size=2816),
                 block_size=512, batch_size=32, max_steps=300, lr=1e-3, warmup_steps=30, eval_every=50,
                 eval_batches=20),
    "smoke": dict(model=dict(n_layer=1, n_embd=128, n_head=4, n_kv_head=4, intermediate_size=256),
                  block_size=32, batch_size=8, max_steps=4, lr=3e-3, warmup_steps=1, eval_every=2, eval_batches=1),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="store_true", help="the H200 run: bf16 vs FP8 through torch._scaled_mm")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    args = ap.parse_args()
    smoke = args.smoke or os.environ.get("NANOSEEK_GPU_SMOKE") == "1"
    scale = "smoke" if smoke else ("full" if args.gpu else "tiny")
    S = SCALES[scale]
    on_gpu = args.gpu and torch.cuda.is_available()
    dev = "cuda" if on_gpu else "cpu"
    backend = "scaled_mm" if on_gpu else "sim"
    # on a CPU, bf16 autocast is left out: it is slow there and FP32 is the stricter reference
    variants = ["bf16", "fp8-deepseek"] if args.gpu else ["fp32", "fp8-deepseek", "fp8-tensorwise", "fp8-block_grad"]
    reference = "bf16" if args.gpu else "fp32"
    seeds = args.seeds or ([0] if smoke else [0, 1, 2])
    text_scale = "tiny"  # the tiny corpus (0.95M characters) at every scale: no corpus generation on the GPU machine
    train_text, val_text = load_stories("en", "train", text_scale), load_stories("en", "val", text_scale)
    vocab = CharVocab.from_text(train_text + val_text)
    get_batch = window_batcher(torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text)),
                               S["block_size"], S["batch_size"])
    config = DecoderConfig(vocab_size=len(vocab), max_seq_len=S["block_size"], tie_embeddings=False, **S["model"])
    tc = TrainConfig(max_steps=S["max_steps"], lr=S["lr"], warmup_steps=S["warmup_steps"],
                     eval_every=S["eval_every"], eval_batches=S["eval_batches"], device=dev, progress=not on_gpu)
    checks = gemm_check(config, get_batch, dev, backend) if args.gpu else None
    if checks is not None:
        for c in checks:
            print("gemm check " + ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in c.items()), flush=True)
    runs: dict[str, dict[int, dict]] = {v: {} for v in variants}
    for seed in seeds:
        for v in variants:
            r = train_precision(v, config, get_batch, tc, seed=seed, backend=backend)
            runs[v][seed] = {"final_val_loss": r.final_val_loss, "val_loss": r.val_loss, "eval_steps": r.eval_steps,
                             "train_loss": r.train_loss, "tokens_per_s": r.tokens_per_second, "seconds": r.seconds}
            print(f"seed {seed} {v}: val {r.final_val_loss:.4f}, {r.tokens_per_second:,.0f} tokens/s", flush=True)
        if not smoke:  # recorded after every seed, so a run stopped early keeps what it finished
            record(args, S, scale, dev, backend, reference, variants, runs, [s for s in seeds if s in runs[variants[-1]]],
                   checks)


def gemm_check(config: DecoderConfig, get_batch, dev: str, backend: str) -> list[dict]:
    """calc_diff of the FP8 layer's three GEMMs on real x and dy of the first block's linear layers (see the
    module docstring): FP8 (backend and simulated) and BF16, each against FP32."""
    from nanoseek.quant import calc_diff, fp8_linear
    torch.manual_seed(0)
    model = Decoder(config).to(dev)
    caught: dict[str, dict] = {}
    hooks = []
    for name, mod in model.named_modules():
        if type(mod) is torch.nn.Linear and name.startswith("layers.0."):
            caught[name] = {}
            hooks.append(mod.register_forward_hook(
                lambda m, inp, out, n=name: caught[n].update(x=inp[0].detach().float().reshape(-1, inp[0].shape[-1]))))
            hooks.append(mod.register_full_backward_hook(
                lambda m, gin, gout, n=name: caught[n].update(dy=gout[0].detach().float().reshape(-1, gout[0].shape[-1]))))
    idx, targets = (t.to(dev) for t in get_batch("train", torch.Generator().manual_seed(0)))
    with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16, enabled=torch.device(dev).type == "cuda"):
        _, loss = model(idx, targets)
    loss.backward()
    for h in hooks:
        h.remove()
    rows = []
    for name, got in caught.items():
        w = dict(model.named_modules())[name].weight.detach().float()
        x, dy = got["x"], got["dy"]  # dy at its real size: tiles whose amax is under the 1e-4 clamp lose bits
        ref = {"fprop": x @ w.T, "dgrad": dy @ w, "wgrad": dy.T @ x}
        bf = {"fprop": x.bfloat16() @ w.bfloat16().T, "dgrad": dy.bfloat16() @ w.bfloat16(),
              "wgrad": dy.bfloat16().T @ x.bfloat16()}
        out = {}
        for be in dict.fromkeys((backend, "sim")):
            xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
            y = fp8_linear(xx, ww, backend=be)
            y.backward(dy)
            out[be] = {"fprop": y.detach(), "dgrad": xx.grad, "wgrad": ww.grad}
        row = {"layer": name, "tokens x in x out": f"{x.shape[0]}x{x.shape[1]}x{w.shape[0]}",
               "dy amax": float(dy.abs().amax()),
               "dy 1x128 tiles under 1e-4": float((dy.reshape(dy.shape[0], -1, 128).abs().amax(-1) < 1e-4).float().mean())
               if dy.shape[1] % 128 == 0 else float("nan")}
        for g in ("fprop", "dgrad", "wgrad"):
            row[f"{g} fp8 vs fp32"] = calc_diff(out[backend][g], ref[g])
            row[f"{g} bf16 vs fp32"] = calc_diff(bf[g], ref[g])
            if backend != "sim":
                row[f"{g} {backend} vs sim"] = calc_diff(out[backend][g], out["sim"][g])
        rows.append(row)
    del model
    return rows


def record(args, S, scale, dev, backend, reference, variants, runs, seeds, checks=None) -> None:
    final = {v: SeedSummary(tuple(runs[v][s]["final_val_loss"] for s in seeds), tuple(seeds)) for v in variants}
    gaps = {v: SeedSummary(tuple(100 * (runs[v][s]["final_val_loss"] / runs[reference][s]["final_val_loss"] - 1)
                                 for s in seeds), tuple(seeds)) for v in variants if v != reference}
    speed = {v: SeedSummary(tuple(runs[v][s]["tokens_per_s"] for s in seeds), tuple(seeds)) for v in variants}
    verdicts = {v: verdict(final[v], final[reference], names=(v, reference)) for v in variants if v != reference}
    body = [f"Chapter 4's decoder ({S['model']}) on the minids stories (tiny corpus; model scale {scale}), "
            f"{S['max_steps']} steps, batch {S['batch_size']}x{S['block_size']}, on {dev}; FP8 backend `{backend}`; "
            f"seeds {seeds}.", "",
            "Final validation loss (nats/char):", "", table(final), "",
            f"Relative gap to {reference} of the same seed, in percent:", "", table(gaps, digits=3), "",
            "Tokens per second:", "", table(speed, digits=0), "",
            "Verdicts (a winner only when the seed ranges do not overlap): " +
            ", ".join(f"{v} vs {reference}: {w}" for v, w in verdicts.items())]
    if checks:
        keys = [k for k in checks[0] if k not in ("layer", "tokens x in x out")]  # dy amax, share of small tiles, diffs
        body += ["", "GEMM check: the FP8 layer's three GEMMs on the first block's real activations and gradients "
                 "(calc_diff; `vs sim` = the same FP8 operands through the simulated GEMM, so only the GEMM "
                 "itself differs):", "", "| layer | tokens x in x out | " + " | ".join(keys) + " |",
                 "| --- | --- |" + " ---: |" * len(keys)]
        body += [f"| {c['layer']} | {c['tokens x in x out']} | " + " | ".join(f"{c[k]:.1e}" for k in keys) + " |"
                 for c in checks]
    name = "fp8_train_cuda" if args.gpu else "fp8_train"
    write_result(name, "\n".join(body), data={
        "scale": scale, "device": dev, "backend": backend, "reference": reference, "seeds": seeds,
        "config": S, "runs": {v: {str(s): runs[v][s] for s in seeds} for v in variants},
        "final_val_loss": {v: {"mean": x.mean, "std": x.std, "values": list(x.values)} for v, x in final.items()},
        "gap_percent": {v: {"mean": x.mean, "std": x.std, "values": list(x.values)} for v, x in gaps.items()},
        "tokens_per_s": {v: {"mean": x.mean, "values": list(x.values)} for v, x in speed.items()},
        "verdicts": verdicts, "fallbacks": _fallbacks(), "gemm_check": checks})


def _fallbacks() -> dict:
    from nanoseek.quant.scaled_mm import FALLBACKS
    return dict(FALLBACKS)


if __name__ == "__main__":
    main()
