"""Regenerate the minids data sets and their manifest. (Chapter 1.)

    python -m minids.build                       # tiny: rewrites minids/tiny/* and minids/MANIFEST.json
    python -m minids.build --scale full          # full: into $NANOSEEK_CACHE/minids/full (never committed)
    python -m minids.build --scale full --out DIR
    python -m minids.build --check               # tiny: verify the committed files against the generators

A data set is one `Entry` in `ENTRIES`: a name, the module that generates it (it must define
`build_files(scale: str, seed: int) -> dict[str, str]`, file name -> text) and a seed. Adding a generator
(instruction data, RL tasks, ...) is adding one line there.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCALES = ("tiny", "full")


@dataclass(frozen=True)
class Entry:
    """One generator: `module.build_files(scale, seed)` returns {file name: text}."""

    name: str
    module: str
    seed: int

    def build(self, scale: str) -> dict[str, str]:
        return importlib.import_module(self.module).build_files(scale, self.seed)


ENTRIES: tuple[Entry, ...] = (
    Entry("stories", "minids.stories", 1337),
    Entry("reasoning", "minids.reasoning", 7),
    Entry("instructions", "minids.instructions", 1337),
    Entry("shakespeare", "minids.shakespeare", 0),  # real text, not generated: the seed is unused
    Entry("shapes", "minids.shapes", 12),  # chapter 12: images of coloured shapes, captions, questions
)
# Files committed as published (not generated), listed under "vendored" in the tiny manifest: each module
# defines `manifest_rows() -> list[dict]` (file, sha256, source, license) and checks its own file.
VENDORED: tuple[str, ...] = (
    "minids.gpt2_vocab",  # chapter 2: GPT-2's BPE ranks (tiktoken format), from the openai-whisper sdist
)


def cache_dir() -> Path:
    """Where generated data that is not committed lives: `$NANOSEEK_CACHE` or `~/.cache/nanoseek`."""
    root = os.environ.get("NANOSEEK_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "nanoseek"


def default_out(scale: str) -> Path:
    """tiny → `minids/tiny` (committed); full → `<cache>/minids/full`."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    return HERE / "tiny" if scale == "tiny" else cache_dir() / "minids" / "full"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def get_entry(name: str) -> Entry:
    for entry in ENTRIES:
        if entry.name == name:
            return entry
    raise KeyError(f"no minids generator named {name!r}; known: {[e.name for e in ENTRIES]}")


def render(scale: str, entries: tuple[Entry, ...] = ENTRIES) -> tuple[dict[str, bytes], dict]:
    """All files of `entries` at `scale` as bytes, and the manifest that describes them."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    files: dict[str, bytes] = {}
    rows = []
    for entry in entries:
        extra = getattr(importlib.import_module(entry.module), "manifest_extra", None)  # source, license, ...
        for fname, text in entry.build(scale).items():
            if fname in files:
                raise ValueError(f"file {fname!r} is produced by two generators")
            data = text.encode("utf-8")
            files[fname] = data
            rows.append({"file": f"{scale}/{fname}", "size": len(data), "sha256": sha256_bytes(data),
                         "generator": entry.module, "name": entry.name, "seed": entry.seed, "scale": scale})
            if extra is not None:
                rows[-1].update(extra(fname, scale))
    manifest = {"description": "minids: small seeded synthetic data sets for nanoseek; "
                               "regenerate with `python -m minids.build`",
                "files": rows}
    if scale == "tiny":
        manifest["vendored"] = [row for module in VENDORED for row in importlib.import_module(module).manifest_rows()]
    return files, manifest


def build(scale: str = "tiny", out: Path | None = None, entries: tuple[Entry, ...] = ENTRIES) -> dict:
    """Generate the files of `entries` at `scale` into `out` and write the manifest; returns the manifest.

    tiny writes `minids/MANIFEST.json`; other scales (or a custom `out`) write `MANIFEST.json` inside `out`.
    """
    files, manifest = render(scale, entries)
    out_dir = Path(out) if out is not None else default_out(scale)
    for fname, data in files.items():
        atomic_write(out_dir / fname, data)
    manifest_path = HERE / "MANIFEST.json" if out is None and scale == "tiny" else out_dir / "MANIFEST.json"
    if tuple(entries) != ENTRIES and manifest_path.exists():  # a partial build keeps the other generators' rows
        new = {row["file"] for row in manifest["files"]}
        old = json.loads(manifest_path.read_text(encoding="utf-8")).get("files", [])
        manifest["files"] = [row for row in old if row["file"] not in new] + manifest["files"]
    atomic_write(manifest_path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return manifest


def check(manifest_path: Path = HERE / "MANIFEST.json") -> list[str]:
    """Compare the committed tiny files with the manifest and with a fresh generation; returns problems."""
    problems = []
    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    files, fresh = render("tiny")
    fresh_rows = {row["file"]: row for row in fresh["files"]}
    for row in manifest["files"]:
        path = HERE / row["file"]
        if not path.exists():
            problems.append(f"{row['file']}: missing")
            continue
        digest = sha256_bytes(path.read_bytes())
        if digest != row["sha256"]:
            problems.append(f"{row['file']}: sha256 {digest} differs from the manifest's {row['sha256']}")
        if row["file"] not in fresh_rows or fresh_rows[row["file"]]["sha256"] != digest:
            problems.append(f"{row['file']}: the generator no longer reproduces it")
    if manifest.get("vendored") != fresh.get("vendored"):  # manifest_rows() reads and checks each file
        problems.append("vendored: the manifest's rows differ from the committed files")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minids.build", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny", choices=SCALES)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: minids/tiny or the cache)")
    parser.add_argument("--only", default=None, help="build only this generator (a name in ENTRIES)")
    parser.add_argument("--check", action="store_true", help="verify the committed tiny files")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        print("\n".join(problems) if problems else "minids: committed tiny files match the generators")
        return 1 if problems else 0
    entries = (get_entry(args.only),) if args.only else ENTRIES
    if args.only and args.scale == "tiny" and args.out is None:
        parser.error("--only with the committed tiny scale would drop other entries from MANIFEST.json; "
                     "give --out")
    manifest = build(args.scale, args.out, entries)
    for row in manifest["files"]:
        print(f"{row['file']:<28} {row['size']:>12,} bytes  sha256 {row['sha256'][:16]}…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
