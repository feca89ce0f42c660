"""minids instruction rows: checkable answers, a held-out split with no overlap, and the loader. (Chapter 3.)"""
from __future__ import annotations

import random

import pytest

from minids import instructions as ins
from minids.stories import make_story
from nanoseek.data import load_instructions


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_sentence_split_round_trips(lang):
    rng = random.Random(1)
    for _ in range(200):
        text = make_story(rng, lang).text
        sents = ins.split_sentences(text, lang)
        assert (" " if lang == "en" else "").join(sents) == text
        assert len(sents) >= 6


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_answers_are_checkable_from_the_prompt(lang):
    train, test = ins.generate_rows(lang, 400, 40, seed=5)
    tasks = {row["task"] for row in train}
    assert tasks == set(ins.TASKS)
    for row in train + test:
        user, reply = (m["content"] for m in row["messages"])
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        if row["task"] in ("hero", "friend", "place", "object"):
            assert row["answer"] in reply and row["answer"] in user, row
        elif row["task"] == "rewrite":
            assert reply == row["answer"] and reply not in user
        else:
            assert row["answer"] is None and reply and reply not in user


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_held_out_split_shares_no_story_and_no_prompt(lang):
    train, test = ins.generate_rows(lang, 600, 100, seed=5)
    assert len(test) == 100
    assert not {r["story"] for r in train} & {r["story"] for r in test}
    assert not {r["messages"][0]["content"] for r in train} & {r["messages"][0]["content"] for r in test}


def test_committed_rows_load_and_do_not_overlap():
    train = load_instructions("train", scale="tiny")
    test = load_instructions("test", scale="tiny")
    n_train, n_test = ins.SCALE_ROWS["tiny"]
    assert len(train) == 2 * n_train and len(test) == 2 * n_test
    assert not {r["messages"][0]["content"] for r in train} & {r["messages"][0]["content"] for r in test}
    assert {r["lang"] for r in load_instructions("test", "zh", "tiny")} == {"zh"}
    hero = load_instructions("test", "en", "tiny", tasks=("hero",))
    assert hero and all(r["task"] == "hero" for r in hero)
    assert len({r["id"] for r in train + test}) == len(train) + len(test)


@pytest.mark.parametrize("kwargs, bad", [
    (dict(split="val"), "'val'"), (dict(lang="fr"), "'fr'"), (dict(scale="big"), "'big'"),
    (dict(tasks=("poem",)), "'poem'"),
])
def test_bad_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        load_instructions(**kwargs)
    with pytest.raises(ValueError, match="'xx'"):
        ins.generate_rows("xx", 1, 1)
