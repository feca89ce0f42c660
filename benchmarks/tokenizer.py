"""Benchmark: nanoseek's pure-Python byte-level BPE against Hugging Face `tokenizers` (Rust), side by side.

Trains a 4,096-token vocabulary (256 bytes + merges + 1 special token) on the tiny minids stories of both
languages (train split) with each library, same split regex, byte-level; then encodes the held-out (val)
stories with each. Records train and encode time (best of --repeats), the time ratio, tokens per byte on
train and val, per language, and whether the two learned the same merges.

    PYTHONPATH=$PWD python benchmarks/tokenizer.py            # writes benchmarks/results/tokenizer.md

CPU only (tokenizers has no GPU path); the ratio is what is meant to be compared across machines.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nanoseek.data import load_stories  # noqa: E402
from nanoseek.tokenizer import GPT4_SPLIT_PATTERN, Tokenizer, bytes_to_unicode, split_text  # noqa: E402

EOT = "<|endoftext|>"


def hf_train(text: str, vocab_size: int):
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([text], trainer)
    return hf


def best_of(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.process_time()  # CPU seconds: the machine is shared, wall time would measure the others
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scale", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # compare one core with one core

    train_text = load_stories("both", "train", scale=args.scale)
    val = {lang: load_stories(lang, "val", scale=args.scale) for lang in ("en", "zh")}
    n_train = len(train_text.encode("utf-8"))

    def ours_train():
        return Tokenizer.train(train_text, args.vocab_size, special_tokens=[EOT])

    t_ours, tok = best_of(ours_train, args.repeats)
    t_hf, hf = best_of(lambda: hf_train(train_text, args.vocab_size), args.repeats)

    # a second, differently distributed text: ~2 MB of this Python's standard library source (English + code)
    import sysconfig

    parts, size = [], 0
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        parts.append(f.read_text(encoding="utf-8", errors="replace"))
        size += len(parts[-1].encode("utf-8"))
        if size > 2_000_000:
            break
    code_text = "".join(parts)
    t_ours_code, tok_code = best_of(lambda: Tokenizer.train(code_text, args.vocab_size, special_tokens=[EOT]), args.repeats)
    t_hf_code, hf_code = best_of(lambda: hf_train(code_text, args.vocab_size), args.repeats)
    code_chunks = split_text(code_text)

    # same merges?
    b2u = bytes_to_unicode()
    piece = lambda i: "".join(b2u[b] for b in tok.vocab[i])  # noqa: E731
    ours_m = [(piece(a), piece(b)) for a, b, _ in tok.merges]
    hf_m = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(hf.to_str())["model"]["merges"]]
    same_prefix = next((i for i, (x, y) in enumerate(zip(ours_m, hf_m)) if x != y), min(len(ours_m), len(hf_m)))

    # encode: a fresh tokenizer (empty chunk cache) for the timing, on the train text and on held-out text
    rows = []
    enc_times = {}
    for name, text in [("train (en+zh)", train_text), ("val en", val["en"]), ("val zh", val["zh"])]:
        n_bytes = len(text.encode("utf-8"))
        docs = text.split("\n\n")

        def ours_enc():
            fresh = Tokenizer.from_dict(tok.to_dict())
            return sum(len(fresh.encode(d)) for d in docs)

        def hf_enc():
            return sum(len(e.ids) for e in hf.encode_batch(docs, add_special_tokens=False))

        te_ours, n_ours = best_of(ours_enc, args.repeats)
        te_hf, n_hf = best_of(hf_enc, args.repeats)
        enc_times[name] = (te_ours, te_hf)
        rows.append((name, n_bytes, n_ours / n_bytes, n_hf / n_bytes, (n_ours / n_hf - 1) * 100, te_ours, te_hf))

    # round trip, and exact id parity of the two *trained* tokenizers on the held-out text
    same_ids = {}
    for lang, text in val.items():
        ids = tok.encode(text)
        assert tok.decode(ids) == text, f"round trip failed on val {lang}"
        # the two number their tokens differently (tokenizers puts the special token first): compare the tokens
        same_ids[lang] = [piece(i) for i in ids] == hf.encode(text, add_special_tokens=False).tokens

    chunks = split_text(train_text)
    lines = [
        f"Vocabulary {args.vocab_size} (256 bytes + {len(tok.merges)} merges + 1 special token), GPT-4 split "
        f"regex, byte-level, trained on the minids `{args.scale}` stories, train split, both languages: "
        f"{n_train:,} bytes. tokenizers {__import__('tokenizers').__version__}, RAYON_NUM_THREADS="
        f"{os.environ['RAYON_NUM_THREADS']}. Times are CPU seconds of this process (all its threads), the best of {args.repeats}.",
        "",
        f"The training text splits into {len(chunks):,} pre-token chunks, of which {len(set(chunks)):,} are distinct: "
        "the cost of both trainers grows with the distinct chunks, and these generated stories repeat a lot.",
        "",
        "| | nanoseek (pure Python) | tokenizers (Rust) | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| train time, minids stories | {t_ours:.2f} s | {t_hf:.2f} s | {t_ours / t_hf:.1f}x |",
    ]
    lines.append(f"| train time, Python stdlib source ({len(code_text.encode()):,} bytes, "
                 f"{len(set(code_chunks)):,} distinct chunks) | {t_ours_code:.2f} s | {t_hf_code:.2f} s | "
                 f"{t_ours_code / t_hf_code:.1f}x |")
    for name, (a, b) in enc_times.items():
        lines.append(f"| encode {name} | {a:.2f} s | {b:.2f} s | {a / b:.1f}x |")
    lines += [
        "",
        f"Merges identical to tokenizers': {same_prefix} of {len(ours_m)} (first difference at "
        f"{'none' if same_prefix == len(ours_m) else same_prefix}). Same tokens on the held-out text: "
        + ", ".join(f"{lang} {'yes' if ok else 'no'}" for lang, ok in same_ids.items()) + ".",
        "",
        "| text | bytes | nanoseek tokens/byte | tokenizers tokens/byte | difference |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, n_bytes, a, b, diff, _, _ in rows:
        lines.append(f"| {name} | {n_bytes:,} | {a:.4f} | {b:.4f} | {diff:+.2f}% |")
    goal_time = max(t_ours / t_hf, t_ours_code / t_hf_code) <= 10
    goal_tpb = all(abs(r[4]) <= 1 for r in rows)
    lines += [
        "",
        f"Goals: train time within 10x of tokenizers: **{'met' if goal_time else 'missed'}** "
        f"({t_ours / t_hf:.1f}x); tokens per byte within 1%: **{'met' if goal_tpb else 'missed'}**.",
    ]
    body = "\n".join(lines)
    print(body)
    try:
        from nanoseek.benchmarking import write_result
    except ImportError:  # before the foundation tag
        write_result = None
    if write_result is not None:
        path = write_result("tokenizer", body, args.out)
    else:
        import datetime
        import platform

        path = Path(args.out) / "tokenizer.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        head = [
            "# tokenizer",
            "",
            f"- command: `python {' '.join(sys.argv)}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
            f"- python: {platform.python_version()}",
            f"- platform: {platform.platform()}",
            f"- cpu cores: {os.cpu_count()}",
        ]
        path.write_text("\n".join(head) + "\n\n" + body + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
