"""Seeded instruction data (chat rows) from the story world, in English and Chinese. (Chapter 3.)

Every row is one user turn and one assistant turn about a freshly generated story (`minids.stories`):

- `hero`, `friend`, `place`, `object`: a question about a story passage whose answer is one fact of the
  story (a name, a place, a thing). The row's `answer` is that fact; a reply is correct when it contains it.
- `rewrite`: "use NEW instead of OLD in this sentence"; `answer` is the exact rewritten sentence.
- `continue`: continue a story from its first sentences; the reply is the next two sentences (`answer` None:
  only the format of the reply can be checked).

The held-out split (`test`) is drawn from its own random stream, and a test row is dropped when its story or
its prompt occurs in `train`, so no test prompt and no test story is seen in training.
"""
from __future__ import annotations

import json
import random
import re

from minids.stories import DEFAULT_SEED, LANGS, Story, make_story

TASKS = ("hero", "friend", "place", "object", "rewrite", "continue")
TASK_WEIGHTS = (3, 2, 2, 2, 1, 1)
CHECKABLE = ("hero", "friend", "place", "object", "rewrite")
# rows per language at each scale: (train, test)
SCALE_ROWS = {"tiny": (1500, 150), "full": (60_000, 1_000)}
OBJECT_PLOTS = ("lost", "stuck", "share")

_EN_SPLIT = re.compile(r'(?:(?<=[.!?])|(?<=[.!?]"))\s+(?=[A-Z"])')

EN_NAMES_F = ("Lily", "Mia", "Emma", "Anna", "Lucy", "Sara", "Zoe", "Ella", "Amy", "Rose", "Nora", "Ruby")
EN_NAMES_M = ("Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Noah", "Finn", "Oscar", "Luke", "Jake")
ZH_NAMES = ("小红", "朵朵", "甜甜", "小雨", "乐乐", "豆豆", "阳阳", "天天", "丁丁", "小虎", "壮壮", "贝贝")


def split_sentences(text: str, lang: str) -> list[str]:
    """Sentences of a story. English: after . ! ? (and a closing quote) before a capital or a quote.
    Chinese: after 。！？ unless a closing ” follows; after 。”/！”/？” only when an opening “ follows."""
    if lang == "en":
        return [s for s in _EN_SPLIT.split(text) if s]
    if lang != "zh":
        raise ValueError(f"lang={lang!r} is not one of {LANGS}")
    out, start, i = [], 0, 0
    while i < len(text):
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch in "。！？" and nxt != "”":
            out.append(text[start:i + 1])
            start = i + 1
        elif ch == "”" and i and text[i - 1] in "。！？" and nxt in ("“", ""):
            out.append(text[start:i + 1])
            start = i + 1
        i += 1
    if start < len(text):
        out.append(text[start:])
    return out


def _join(sentences: list[str], lang: str) -> str:
    return (" " if lang == "en" else "").join(sentences)


def _passage(sentences: list[str], needle: str, lang: str) -> str:
    """The story up to (and one sentence past) the first sentence that holds `needle`; at least 3 sentences."""
    first = next(i for i, s in enumerate(sentences) if needle in s)
    return _join(sentences[:max(3, first + 2)], lang)


def _article(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _qa(r: random.Random, story: Story, task: str) -> tuple[str, str, str]:
    """(passage, question, reply) and the answer is a fact of `story`."""
    f, lang = story.facts, story.lang
    sents = split_sentences(story.text, lang)
    hero, friend, place = f["hero"], f["friend"], f["place"]
    en = lang == "en"
    if task == "hero":
        q = r.choice(("Who is this story about?", "Who is the main character of the story?",
                      "What is the name of the main character?") if en else
                     ("这个故事讲的是谁？", "故事的主人公是谁？", "故事里的主角叫什么名字？"))
        a = r.choice((f"The story is about {hero}.", f"The main character is {hero}, {_article(f['hero_kind'])}.",
                      f"It is about {_article(f['hero_kind'])} named {hero}.") if en else
                     (f"这个故事讲的是{hero}。", f"主人公是{f['hero_kind']}{hero}。", f"主角叫{hero}。"))
        return _passage(sents, hero, lang), q, a
    if task == "friend":
        q = r.choice((f"Who is {hero}'s friend in the story?", f"Which friend comes to see {hero}?") if en else
                     (f"{hero}的好朋友是谁？", f"故事里，谁和{hero}在一起？"))
        a = r.choice((f"{friend} is {hero}'s friend.", f"{hero}'s friend is {friend}.") if en else
                     (f"{hero}的好朋友是{friend}。", f"是{friend}。"))
        return _passage(sents, friend, lang), q, a
    if task == "place":
        q = r.choice(("Where does the story happen?", f"Where is {hero} in the story?") if en else
                     ("故事发生在哪里？", f"故事里，{hero}在哪儿？"))
        a = r.choice((f"The story happens {f['place_phrase']}.", f"{hero} is {f['place_phrase']}.") if en else
                     (f"故事发生在{f['place_phrase']}。", f"{hero}在{f['place_phrase']}。"))
        return _passage(sents, place, lang), q, a
    if task == "object":
        obj, his = f["object"], f["his"]
        q, a = {
            ("en", "lost"): (f"What did {hero} lose?", f"{hero} lost {his} {obj}."),
            ("en", "stuck"): ("What got stuck?", f"{hero}'s {obj} got stuck."),
            ("en", "share"): (f"What did {hero} not want to share?", f"{hero} did not want to share {his} {obj}."),
            ("zh", "lost"): (f"{hero}丢了什么？", f"{hero}丢了{his}的{obj}。"),
            ("zh", "stuck"): (f"{hero}的什么东西够不着了？", f"是{hero}的{obj}。"),
            ("zh", "share"): (f"{hero}一开始不想分享什么？", f"{hero}一开始不想分享{his}的{obj}。"),
        }[(lang, story.plot)]
        return _passage(sents, obj, lang), q, a
    raise ValueError(f"task={task!r} is not a question task")


def _row(r: random.Random, story: Story, task: str) -> dict:
    lang, f = story.lang, story.facts
    en = lang == "en"
    sents = split_sentences(story.text, lang)
    if task in ("hero", "friend", "place", "object"):
        passage, question, reply = _qa(r, story, task)
        user = r.choice((f"{passage}\n\n{question}", f"Read the story and answer the question.\n{passage}\n"
                         f"Question: {question}") if en else
                        (f"{passage}\n\n{question}", f"读下面的故事，回答问题。\n{passage}\n问题：{question}"))
        answer = {"hero": f["hero"], "friend": f["friend"], "place": f["place"], "object": f["object"]}[task]
    elif task == "rewrite":
        old = f["hero"]
        candidates = [s for s in sents if old in s and len(s) < (160 if en else 60)]
        sentence = r.choice(candidates or [s for s in sents if old in s])
        pool = ZH_NAMES if not en else (EN_NAMES_F if f["gender"] == "she" else EN_NAMES_M)
        new = r.choice([n for n in pool if n not in sentence and old not in n and n not in old])
        answer = reply = sentence.replace(old, new)
        user = r.choice((f"Rewrite this sentence with {new} instead of {old}: {sentence}",
                         f"Change the name {old} to {new} in this sentence.\n{sentence}") if en else
                        (f"把这句话里的“{old}”换成“{new}”：{sentence}", f"请把“{old}”改成“{new}”，重写这句话。\n{sentence}"))
    elif task == "continue":
        k = r.randrange(3, max(4, len(sents) - 2))
        user = r.choice((f"Continue the story:\n{_join(sents[:k], lang)}",
                         f"Here is the start of a story. What happens next?\n{_join(sents[:k], lang)}") if en else
                        (f"请接着讲这个故事：\n{_join(sents[:k], lang)}", f"故事的开头是这样的，接下来会发生什么？\n{_join(sents[:k], lang)}"))
        reply = _join(sents[k:k + 2], lang)
        answer = None
    else:
        raise ValueError(f"task={task!r} is not one of {TASKS}")
    return {"lang": lang, "task": task, "plot": story.plot,
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
            "answer": answer, "story": story.text}


def make_row(r: random.Random, lang: str) -> dict:
    """One instruction row in `lang`, about a new story; all randomness from `r`."""
    story = make_story(r, lang)
    while True:
        task = r.choices(TASKS, weights=TASK_WEIGHTS)[0]
        if task != "object" or story.plot in OBJECT_PLOTS:
            return _row(r, story, task)


def generate_rows(lang: str, n_train: int, n_test: int, seed: int = DEFAULT_SEED) -> tuple[list[dict], list[dict]]:
    """`n_train` training rows and `n_test` held-out rows in `lang`; no held-out story or prompt is in train."""
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r} is not one of {LANGS}")
    idx = LANGS.index(lang)
    r_train = random.Random(seed * 7919 + 11 + idx)
    train = [make_row(r_train, lang) for _ in range(n_train)]
    seen_stories = {row["story"] for row in train}
    seen_prompts = {row["messages"][0]["content"] for row in train}
    r_test = random.Random(seed * 7919 + 101 + idx)
    test: list[dict] = []
    while len(test) < n_test:
        row = make_row(r_test, lang)
        if row["story"] in seen_stories or row["messages"][0]["content"] in seen_prompts:
            continue
        test.append(row)
    for split, rows in (("train", train), ("test", test)):
        for i, row in enumerate(rows):
            row["id"] = f"{lang}-{split}-{i:06d}"
    return train, test


def _jsonl(rows: list[dict]) -> str:
    keys = ("id", "lang", "task", "plot", "messages", "answer")  # the story itself is not stored
    return "".join(json.dumps({k: row[k] for k in keys}, ensure_ascii=False) + "\n" for row in rows)


def build_files(scale: str, seed: int = DEFAULT_SEED) -> dict[str, str]:
    """{"instructions_train.jsonl": ..., "instructions_test.jsonl": ...}, both languages, one row a line."""
    if scale not in SCALE_ROWS:
        raise ValueError(f"scale={scale!r} is not one of {tuple(SCALE_ROWS)}")
    n_train, n_test = SCALE_ROWS[scale]
    train, test = [], []
    for lang in LANGS:
        tr, te = generate_rows(lang, n_train, n_test, seed)
        train += tr
        test += te
    return {"instructions_train.jsonl": _jsonl(train), "instructions_test.jsonl": _jsonl(test)}
