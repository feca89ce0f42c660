"""Chapter 12's VLM recipe end to end, over seeds: contrastive SigLIP pretraining of the vision tower (with the
dense patch auxiliary when the config's `aux` weight is > 0), a text-only language model (the blind baseline), stage 1 (projector on captions), stage 2 (projector + LM on
questions), and stage 2 alone (skipping stage 1). Records accuracy per question type and throughput.

    python benchmarks/vlm.py --scale tiny --seeds 0 1 2     # -> benchmarks/results/vlm_stages.{md,json}
    python benchmarks/vlm.py --scale full --seeds 0         # on a GPU -> benchmarks/results/vlm_full.{md,json}
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nanoseek.benchmarking import machine, write_result  # noqa: E402
from nanoseek.data import shapes as S  # noqa: E402
from nanoseek.models.decoder import DecoderConfig  # noqa: E402
from nanoseek.models.vlm import VLM, VLMConfig, accuracy_by_type, stage  # noqa: E402
from nanoseek.nn.vision import DualEncoder, PatchClassifier, TextConfig, VisionConfig  # noqa: E402
from nanoseek.seeds import SeedSummary, table, verdict  # noqa: E402
from nanoseek.train import TrainConfig, train  # noqa: E402

CONFIGS = {  # the chapter's CFG at each scale (keep in sync with notebooks/12_multimodal.py)
    "tiny": dict(width=64, vit_layers=2, lm_layers=2, patch=8, shuffle=1, batch=64, contrastive_steps=200, aux=10.0,
                 lm_steps=150, stage1_steps=100, stage2_steps=1000, lr=3e-3),
    "full": dict(width=256, vit_layers=4, lm_layers=4, patch=8, shuffle=1, batch=256, contrastive_steps=1000, aux=10.0,
                 lm_steps=800, stage1_steps=800, stage2_steps=2000, lr=1e-3),
}


def run(seed: int, scale: str, dev: str, smoke: bool = False) -> dict:
    c = dict(CONFIGS[scale])
    if smoke:
        c.update(contrastive_steps=4, lm_steps=4, stage1_steps=4, stage2_steps=4)
    torch.manual_seed(seed)
    V = S.Vocab()
    tr, te, un = (S.load_shapes(s, scale) for s in ("train", "test", "unseen"))
    Xtr, Xte, Xun = S.images(tr), S.images(te), S.images(un)
    W, B = c["width"], c["batch"]
    size = Xtr.shape[-1]
    vc = VisionConfig(image_size=size, patch_size=c["patch"], hidden_size=W, intermediate_size=2 * W,
                      num_hidden_layers=c["vit_layers"], num_attention_heads=4)
    tc = TextConfig(vocab_size=len(V), max_position_embeddings=12, hidden_size=W, intermediate_size=2 * W,
                    num_hidden_layers=1, num_attention_heads=4)
    tcfg = lambda steps, lr=c["lr"]: TrainConfig(max_steps=steps, lr=lr, warmup_steps=min(20, steps),  # noqa: E731
                                                 eval_every=steps, eval_batches=1, progress=False, seed=seed,
                                                 device=dev)
    times = {}
    Ttr = S.text_tensors(V, tr, 12)
    de = DualEncoder(vc, tc, "sigmoid")
    labels = S.patch_labels(tr, c["patch"])
    if c["aux"] > 0:  # the dense auxiliary: a linear head per attribute on the patch tokens, beside the sigmoid loss
        de.patch_head = PatchClassifier(W, {k: int(v.max()) + 1 for k, v in labels.items()})
    Ptr = torch.stack([labels["colour"], labels["shape"]], -1)  # (N, P, 2)

    def pretrain_loss(m, b):
        x, t, p = b
        h, img = m.vision(x)
        loss = m.loss_fn(img, m.text(t)[1])
        if c["aux"] == 0:
            return loss
        return loss + c["aux"] * m.patch_head.loss(h, {"colour": p[..., 0], "shape": p[..., 1]})

    t0 = time.perf_counter()
    train(de, lambda s, g: (lambda i: (Xtr[i], Ttr[i], Ptr[i]))(torch.randint(0, len(tr), (B,), generator=g)),
          tcfg(c["contrastive_steps"]), loss_fn=pretrain_loss)
    times["contrastive"] = time.perf_counter() - t0
    n_img = (size // c["patch"]) ** 2 // c["shuffle"] ** 2
    L = n_img + 16
    cfg = VLMConfig(vision=VisionConfig(**{**vc.__dict__, "use_head": False}),
                    decoder=DecoderConfig(vocab_size=len(V), n_layer=c["lm_layers"], n_embd=W, n_head=4, n_kv_head=2,
                                          intermediate_size=int(2.75 * W), max_seq_len=L, qkv_bias=True),
                    image_token_id=V.image, pixel_shuffle=c["shuffle"], projector="mlp")
    vlm = VLM(cfg)
    vlm.vision.load_state_dict({k: v for k, v in de.vision.state_dict().items() if not k.startswith("head.")})
    _, qids, qtg, _ = S.qa_tensors(V, tr, 0, L)
    cids, ctg = S.caption_tensors(V, tr, 0, L)
    tids, ttg = torch.cat([qids, cids]), torch.cat([qtg, ctg])
    t0 = time.perf_counter()
    with stage(vlm, "lm"):
        train(vlm, lambda s, g: (lambda i: (tids[i], ttg[i]))(torch.randint(0, len(tids), (B,), generator=g)),
              tcfg(c["lm_steps"]), loss_fn=lambda m, b: m(None, *b)[1])
    times["lm"] = time.perf_counter() - t0
    vlm.cpu()

    def acc(model, rows, X, img=True, **f):
        _, ids, tg, qas = S.qa_tensors(V, rows, n_img if img else 0, L, **f)
        ri = torch.tensor([i for i, _ in S.questions(rows, **f)])
        model.to(dev)
        out = accuracy_by_type(model, X[ri].to(dev) if img else None, ids.to(dev), tg.to(dev),
                               [q["type"] for q in qas])
        model.cpu()
        return out

    res = {f"text_only/{k}": v for k, v in acc(vlm, te, Xte, img=False).items()}
    blind = copy.deepcopy(vlm.state_dict())
    c1ids, c1tg = S.caption_tensors(V, tr, n_img, L)
    t0 = time.perf_counter()
    with stage(vlm, "projector"):
        train(vlm, lambda s, g: (lambda i: (Xtr[i], c1ids[i], c1tg[i]))(torch.randint(0, len(tr), (B,), generator=g)),
              tcfg(c["stage1_steps"]), loss_fn=lambda m, b: m(*b)[1])
    times["stage1"] = time.perf_counter() - t0
    qi, q2ids, q2tg, _ = S.qa_tensors(V, tr, n_img, L)

    def stage2(model):
        with stage(model, "projector", "lm"):
            r = train(model, lambda s, g: (lambda i: (Xtr[qi[i]], q2ids[i], q2tg[i]))(
                torch.randint(0, len(qi), (B,), generator=g)), tcfg(c["stage2_steps"]), loss_fn=lambda m, b: m(*b)[1])
        return r

    t0 = time.perf_counter()
    r2 = stage2(vlm)
    times["stage2"] = time.perf_counter() - t0
    res |= {f"two_stage/{k}": v for k, v in acc(vlm, te, Xte).items()}
    res |= {f"two_stage_novel/{k}": v for k, v in acc(vlm, un, Xun, novel=True).items()}
    skip = VLM(cfg)
    skip.load_state_dict(blind)
    stage2(skip)
    res |= {f"skip_stage1/{k}": v for k, v in acc(skip, te, Xte).items()}
    res |= {f"skip_stage1_novel/{k}": v for k, v in acc(skip, un, Xun, novel=True).items()}
    res["stage2_examples_per_s"] = c["stage2_steps"] * B / times["stage2"]
    res |= {f"seconds/{k}": v for k, v in times.items()}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="tiny", choices=tuple(CONFIGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)
    smoke = os.environ.get("NANOSEEK_GPU_SMOKE") == "1"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    runs = []
    for seed in args.seeds:
        runs.append(run(seed, args.scale, dev, smoke))
        print(f"seed {seed}:", {k: round(v, 3) for k, v in runs[-1].items()}, flush=True)
    summary = {k: SeedSummary(tuple(r[k] for r in runs), tuple(args.seeds)) for k in runs[0]}
    types = ("colour", "shape", "count", "left", "all")
    lines = [f"# VLM two-stage recipe ({args.scale}{', SMOKE' if smoke else ''})", "",
             f"`{' '.join(sys.argv)}` on {machine().get('gpu') or machine().get('cpu')}; config {CONFIGS[args.scale]}",
             "", "Accuracy on held-out images (test split), per question type:", ""]
    for t in types:
        rows = {v: summary[f"{v}/{t}"] for v in ("text_only", "two_stage", "skip_stage1")}
        lines += [f"## {t}", "", table(rows, digits=3, header=("variant", "accuracy")), "",
                  f"two stages vs skipping stage 1: {verdict(rows['two_stage'], rows['skip_stage1'], lower_is_better=False, names=('two stages', 'skip stage 1'))}",
                  ""]
    lines += ["Novel compositions (unseen split, questions about a held-out colour–shape pair):", "",
              table({f"{v} {t}": summary[f"{v}_novel/{t}"] for v in ("two_stage", "skip_stage1")
                     for t in ("colour", "shape")}, digits=3, header=("variant", "accuracy")), "",
              f"stage 2 throughput: {summary['stage2_examples_per_s'].format(0)} examples/s", ""]
    name = args.name or ("vlm_stages" if args.scale == "tiny" else "vlm_full")
    data = {"scale": args.scale, "device": dev, "smoke": smoke, "seeds": args.seeds, "config": CONFIGS[args.scale],
            "metrics": {k: {"mean": s.mean, "std": s.std, "values": list(s.values)} for k, s in summary.items()}}
    print(write_result(name, "\n".join(lines), data=data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
