"""Chapter 12: the minids shapes images are reproducible, their questions are right, held-out pairs are held out."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from minids import build, shapes
from nanoseek.data import shapes as data


def test_committed_tiny_shapes_files_are_reproduced_byte_for_byte():
    files = shapes.build_files("tiny", build.get_entry("shapes").seed)
    committed = {row["file"]: row for row in json.loads((build.HERE / "MANIFEST.json").read_text())["files"]}
    for split in shapes.SPLITS:
        name = f"shapes_{split}.jsonl"
        on_disk = (build.HERE / "tiny" / name).read_bytes()
        assert on_disk == files[name].encode("utf-8"), name
        row = committed[f"tiny/{name}"]
        assert row["sha256"] == hashlib.sha256(on_disk).hexdigest() and row["generator"] == "minids.shapes"


def test_pixels_are_the_rendered_objects_and_questions_are_answered_by_them():
    rows = data.load_shapes("test", "tiny")
    assert len(rows) == shapes.SCALE_ROWS["tiny"]["test"]
    names = list(shapes.COLOURS)
    for row in rows[:100]:
        img = shapes.decode_pixels(row["pixels"])
        assert np.array_equal(img, shapes.render(row["objects"]))
        for obj in row["objects"]:  # every object is drawn, in its colour, inside its own cell
            mask = shapes.shape_mask(obj["shape"], obj["x"], obj["y"], obj["r"])
            assert (img[mask] == 1 + names.index(obj["colour"])).all()
        cells = {(o["x"] // shapes.CELL, o["y"] // shapes.CELL) for o in row["objects"]}
        assert len(cells) == len(row["objects"])
        for qa in row["qa"]:
            objs = row["objects"]
            if qa["type"] == "colour":
                (o,) = [o for o in objs if o["shape"] == qa["q"].split()[4]]
                assert qa["a"] == o["colour"]
            elif qa["type"] == "count":
                plural = qa["q"].split()[2]
                n = sum(shapes.PLURAL[o["shape"]] == plural for o in objs)
                assert qa["a"] == shapes.NUMBERS[n]
            elif qa["type"] == "left":
                w = qa["q"].split()
                (a,), (b,) = [o for o in objs if o["shape"] == w[2]], [o for o in objs if o["shape"] == w[6]]
                assert qa["a"] == ("yes" if a["x"] < b["x"] else "no")


def test_held_out_compositions_only_in_unseen():
    for split in ("train", "test"):
        pairs = {(o["colour"], o["shape"]) for r in data.load_shapes(split, "tiny") for o in r["objects"]}
        assert not pairs & shapes.HELD_OUT
    unseen = data.load_shapes("unseen", "tiny")
    assert all(any((o["colour"], o["shape"]) in shapes.HELD_OUT for o in r["objects"]) for r in unseen)
    assert {qa["type"] for r in unseen for qa in r["qa"] if qa["novel"]} == {"colour", "shape"}


def test_every_question_type_is_present_and_answers_vary():
    qas = [qa for r in data.load_shapes("train", "tiny") for qa in r["qa"]]
    for t in shapes.QUESTION_TYPES:
        answers = {qa["a"] for qa in qas if qa["type"] == t}
        assert len(answers) >= 2, t


def test_sequences_mask_everything_but_the_reply():
    vocab = data.Vocab()
    ids, targets = data.sequence(vocab, "what colour is the circle ?", "red", n_image=3, length=14)
    assert ids[:3] == [vocab.image] * 3 and len(ids) == 14
    assert [t for t in targets if t != -100] == [vocab.stoi["red"], vocab.eos]
    first = next(i for i, t in enumerate(targets) if t != -100)
    assert ids[first] == vocab.answer and ids[first + 1] == vocab.stoi["red"]
    with pytest.raises(ValueError, match="'purple'"):
        vocab.encode("purple circle")
    with pytest.raises(ValueError, match="length=5"):
        data.sequence(vocab, "what colour is the circle ?", "red", 3, 5)


def test_images_are_normalized_rgb():
    x = data.images(data.load_shapes("test", "tiny")[:4])
    assert x.shape == (4, 3, shapes.SIZE, shapes.SIZE) and -1 <= x.min() and x.max() <= 1


def test_same_seed_same_rows_and_bad_arguments():
    assert shapes.generate("test", 5, 3) == shapes.generate("test", 5, 3) != shapes.generate("test", 5, 4)
    with pytest.raises(ValueError, match="'huge'"):
        shapes.build_files("huge", 1)
    with pytest.raises(ValueError, match="'val'"):
        data.load_shapes("val")
    with pytest.raises(ValueError, match="'hexagon'"):
        shapes.shape_mask("hexagon", 1, 1, 1)


def test_patch_labels_mark_the_patch_holding_each_object_centre():
    rows = data.load_shapes("test", "tiny")[:50]
    labels = data.patch_labels(rows, shapes.CELL)
    g = shapes.SIZE // shapes.CELL
    assert labels["colour"].shape == labels["shape"].shape == (50, g * g)
    for i, row in enumerate(rows):
        assert int((labels["shape"][i] > 0).sum()) == len(row["objects"])
        for o in row["objects"]:
            p = (o["y"] // shapes.CELL) * g + o["x"] // shapes.CELL
            assert labels["colour"][i, p] == 1 + list(shapes.COLOURS).index(o["colour"])
            assert labels["shape"][i, p] == 1 + shapes.SHAPES.index(o["shape"])
    with pytest.raises(ValueError, match="patch_size=5"):
        data.patch_labels(rows, 5)
