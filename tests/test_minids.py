"""minids: the committed story corpus is reproducible, and the loader's splits are sound. (Chapter 1.)"""
from __future__ import annotations

import hashlib
import json
import random

import pytest

from minids import build, stories
from nanoseek.data import load_stories
from nanoseek.data import stories as loader


def test_generator_reproduces_committed_tiny_files_byte_for_byte():
    files, manifest = build.render("tiny")
    committed = json.loads((build.HERE / "MANIFEST.json").read_text(encoding="utf-8"))
    assert manifest == committed
    assert {"tiny/stories_en.txt", "tiny/stories_zh.txt"} <= {row["file"] for row in committed["files"]}
    for row in committed["files"]:
        on_disk = (build.HERE / row["file"]).read_bytes()
        assert on_disk == files[row["file"].split("/", 1)[1]], row["file"]
        assert hashlib.sha256(on_disk).hexdigest() == row["sha256"]
        assert len(on_disk) == row["size"]
        if row["name"] == "stories":
            assert 0.9e6 < row["size"] < 1.2e6  # "about 1 MB per language"
        assert {"generator", "seed", "scale"} <= set(row)
    assert build.check() == []


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = stories.generate("zh", 20_000, seed=7)
    assert a == stories.generate("zh", 20_000, seed=7)
    assert a != stories.generate("zh", 20_000, seed=8)
    assert stories.generate("en", 20_000, seed=7) != stories.generate("en", 20_000, seed=8)


def test_stories_are_varied_paragraphs_with_checkable_facts():
    rng = random.Random(0)
    for lang in ("en", "zh"):
        batch = [stories.make_story(rng, lang) for _ in range(300)]
        assert {s.plot for s in batch} == {name for name, _ in stories.EN_PLOTS}
        assert len({s.text for s in batch}) == len(batch)
        for s in batch:
            assert "\n" not in s.text
            assert s.facts["hero"] in s.text and s.facts["friend"] in s.text
            assert s.facts["hero"] != s.facts["friend"]
        # many different first sentences: the templates vary, not only the names
        firsts = {s.text.split("." if lang == "en" else "。")[0] for s in batch}
        assert len(firsts) > 150


def test_chinese_is_chinese_and_english_is_ascii():
    en = load_stories("en", "val", scale="tiny")
    zh = load_stories("zh", "val", scale="tiny")
    assert en.isascii()
    han = sum("\u4e00" <= ch <= "\u9fff" for ch in zh)
    assert han / len(zh) > 0.7
    assert "，" in zh and "。" in zh and "“" in zh


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_splits_are_disjoint_nonempty_and_cover_the_corpus(lang):
    train = loader.load_story_list(lang, "train", scale="tiny")
    val = loader.load_story_list(lang, "val", scale="tiny")
    assert train and val
    assert not set(train) & set(val)
    everything = loader.split_stories(loader.corpus_path(lang, "tiny").read_text(encoding="utf-8"))
    assert train + val == everything
    assert len(val) == max(1, int(len(everything) * 0.05))
    text = load_stories(lang, "val", scale="tiny")
    assert text == "\n\n".join(val) + "\n"


def test_both_is_english_then_chinese():
    both = loader.split_stories(load_stories("both", "val", scale="tiny"))
    assert both == loader.load_story_list("en", "val", "tiny") + loader.load_story_list("zh", "val", "tiny")


def test_default_scale_comes_from_env(monkeypatch):
    monkeypatch.setenv("NANOSEEK_SCALE", "tiny")
    assert load_stories("en", "val") == load_stories("en", "val", scale="tiny")


@pytest.mark.parametrize("kwargs, bad", [
    (dict(lang="fr"), "'fr'"), (dict(lang="EN"), "'EN'"), (dict(split="test"), "'test'"),
    (dict(scale="huge"), "'huge'"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        load_stories(**kwargs)


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="'fr'"):
        stories.make_story(random.Random(0), "fr")
    with pytest.raises(ValueError, match="'huge'"):
        build.render("huge")
    with pytest.raises(KeyError, match="'nope'"):
        build.get_entry("nope")


def test_full_scale_generates_into_the_cache_once(monkeypatch, tmp_path):
    """`full` is generated on first use into $NANOSEEK_CACHE (shrunk here so the test stays fast)."""
    monkeypatch.setenv("NANOSEEK_CACHE", str(tmp_path))
    monkeypatch.setitem(stories.SCALE_BYTES, "full", 30_000)
    loader.minids_path.cache_clear()
    loader._stories.cache_clear()
    try:
        val = load_stories("zh", "val", scale="full")
        path = tmp_path / "minids" / "full" / "stories_zh.txt"
        assert path.exists() and (tmp_path / "minids" / "full" / "MANIFEST.json").exists()
        assert path.read_text(encoding="utf-8") == stories.generate("zh", 30_000, seed=1337)
        assert val and val in path.read_text(encoding="utf-8")
    finally:
        loader.minids_path.cache_clear()
        loader._stories.cache_clear()


def test_partial_builds_share_one_manifest(tmp_path):
    small = build.Entry("stories", "minids.stories", 3)
    files, _ = build.render("tiny", (small,))
    build.build("tiny", tmp_path, (small,))
    build.build("tiny", tmp_path, (build.get_entry("instructions"),))
    rows = json.loads((tmp_path / "MANIFEST.json").read_text(encoding="utf-8"))["files"]
    assert {r["name"] for r in rows} == {"stories", "instructions"} and len(rows) == 4
    for row in rows:
        assert hashlib.sha256((tmp_path / row["file"].split("/", 1)[1]).read_bytes()).hexdigest() == row["sha256"]
