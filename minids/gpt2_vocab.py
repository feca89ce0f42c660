"""GPT-2's published byte-level BPE vocabulary, vendored so that chapter 2 encodes with it offline. (Chapter 2.)

Not generated: the file is OpenAI's `gpt2.tiktoken` (one line per token: the token's bytes in base64, a space,
its rank; 50,256 lines, ranks 0..50255; GPT-2's `<|endoftext|>` is id 50256), as shipped in the
`openai-whisper` source distribution on the Python package index under `whisper/assets/gpt2.tiktoken`
(MIT licence, (c) 2022 OpenAI). Fetch it with

    pip download --no-deps --no-binary :all: openai-whisper==20250625 -d DIR

and rewrite the committed copy with `python -m minids.gpt2_vocab --src DIR/openai_whisper-20250625.tar.gz`
(the sdist, its unpacked folder, or the `gpt2.tiktoken` file itself). The file's SHA-256 is the
`expected_hash` that `tiktoken` pins for its `r50k_base` encoding (GPT-2's), so it is the same vocabulary
that `tiktoken` downloads; `tests/test_tokenizer_tiktoken.py` checks both.

Committed xz-compressed as `minids/sources/gpt2.tiktoken.xz` (about 0.4 MB); `minids/MANIFEST.json` lists it
under "vendored" with its source, licence and the SHA-256 of the uncompressed file. Read it with
`nanoseek.tokenizer.Tokenizer.from_tiktoken(minids.gpt2_vocab.VOCAB_XZ)` or `read_bytes()`.
"""
from __future__ import annotations

import argparse
import hashlib
import lzma
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VOCAB_XZ = HERE / "sources" / "gpt2.tiktoken.xz"
VERSION = "20250625"
SDIST_NAME = f"openai_whisper-{VERSION}.tar.gz"
SDIST_SHA256 = "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"
MEMBER = "whisper/assets/gpt2.tiktoken"
SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"  # of the uncompressed file
N_RANKS = 50256
ENDOFTEXT_ID = 50256

SOURCE = {
    "package": f"openai-whisper=={VERSION} (source distribution on the Python package index)",
    "fetch": f"pip download --no-deps --no-binary :all: openai-whisper=={VERSION}",
    "sdist": SDIST_NAME,
    "sdist_sha256": SDIST_SHA256,
    "member": MEMBER,
    "origin": "OpenAI's GPT-2 byte-level BPE ranks in tiktoken format (tiktoken's r50k_base; GPT-2's encoder.json "
              "and vocab.bpe)",
}
LICENSE = "MIT License, Copyright (c) 2022 OpenAI (the openai-whisper package's LICENSE)"


def read_bytes(path: Path = VOCAB_XZ) -> bytes:
    """The uncompressed `gpt2.tiktoken`, checked against its SHA-256 (ValueError if the copy was altered)."""
    data = lzma.decompress(Path(path).read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{path}: sha256 of the decompressed vocabulary is {digest}, expected {SHA256}")
    return data


def from_source(src: str | Path) -> bytes:
    """`gpt2.tiktoken` from the downloaded sdist (`.tar.gz`), its unpacked folder, or the file itself."""
    src = Path(src)
    if src.is_file() and src.name.endswith(".tar.gz"):
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            raise ValueError(f"{src}: sha256 {digest} is not the one of {SDIST_NAME} ({SDIST_SHA256})")
        with tarfile.open(src, "r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/" + MEMBER)), None)
            if member is None:
                raise ValueError(f"{src}: no member ending in {MEMBER}")
            data = tar.extractfile(member).read()
    elif src.is_dir():
        hits = sorted(src.rglob("gpt2.tiktoken"))
        if not hits:
            raise ValueError(f"{src}: no gpt2.tiktoken below this folder")
        data = hits[0].read_bytes()
    else:
        data = src.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{src}: gpt2.tiktoken has sha256 {digest}, expected {SHA256}")
    return data


def write_xz(data: bytes, path: Path = VOCAB_XZ) -> bytes:
    """Compress `data` (xz, preset 9, deterministic) to `path`; returns the compressed bytes."""
    packed = lzma.compress(data, preset=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(packed)
    return packed


def manifest_rows() -> list[dict]:
    """This file's row in `minids/MANIFEST.json`'s "vendored" list (`minids.build` calls it)."""
    data = read_bytes()
    return [{"file": str(VOCAB_XZ.relative_to(HERE)), "size_compressed": VOCAB_XZ.stat().st_size,
             "size": len(data), "sha256": SHA256, "format": "tiktoken BPE ranks: base64(token bytes) rank, one a line",
             "ranks": N_RANKS, "special_tokens": {"<|endoftext|>": ENDOFTEXT_ID}, "name": "gpt2_vocab",
             "module": "minids.gpt2_vocab", "source": SOURCE, "license": LICENSE,
             "note": "sha256 equals tiktoken's expected_hash for r50k_base (tiktoken_ext/openai_public.py)"}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minids.gpt2_vocab", description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help=f"{SDIST_NAME}, its folder, or gpt2.tiktoken")
    args = parser.parse_args(argv)
    packed = write_xz(from_source(args.src))
    print(f"{VOCAB_XZ}: {len(packed):,} bytes (xz), sha256 of the vocabulary {SHA256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
