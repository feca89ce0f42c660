"""Checkpoints under interruption and corruption: killed savers, failed renames, flipped bits, escaping pointers,
stored configs that do not match, and `train(resume=True)` refusing state it cannot continue."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from nanoseek import checkpoint as ckpt
from nanoseek.data import window_batcher
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.train import TrainConfig, make_optimizer, train


class Tiny(nn.Module):
    """A model whose every weight equals one number: which save a checkpoint holds is visible in it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x):
        return self.b(self.a(x))

    def fill(self, value: float) -> "Tiny":
        with torch.no_grad():
            for p in self.parameters():
                p.fill_(value)
        return self


def _version_of(ckpt_dir) -> int:
    """Load the latest checkpoint (checksums verified) and return the version it holds, checking that its
    weights are all that version: a complete checkpoint, never a mixture."""
    model = Tiny().fill(-1.0)
    state = ckpt.load_checkpoint(ckpt_dir, model)
    version = state["extra"]["version"]
    for p in model.parameters():
        assert torch.all(p == float(version)), "weights of another save than state.json says"
    return version


# A small process that imports torch once and then forks one saver per request: forking it is cheap, where
# forking the pytest process (big after many tests) is not, so 40 kills fit in a few seconds.
ZYGOTE = r"""
import os, signal, struct, sys
import torch
from torch import nn
from nanoseek import checkpoint as ckpt

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 4)

def saver(ckpt_dir, log):
    # save versions 1, 2, 3, ... forever over three steps, each step twice in a row: a re-save of the step
    # latest.json points at (re-running a training cell: the case that used to delete the good copy first)
    # and of a step it does not point at; append each finished version to the log
    model, version = Tiny(), 1
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    while True:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(version))
        ckpt.save_checkpoint(ckpt_dir, model, step=(version // 2) % 3, extra={"version": version},
                             keep=2)
        os.write(fd, struct.pack("<i", version))
        version += 1

import tempfile
with tempfile.TemporaryDirectory() as warm:  # first calls import and compile lazily: not in the savers
    ckpt.save_checkpoint(warm, Tiny(), step=0)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
print("ready", flush=True)
for line in sys.stdin:
    ckpt_dir, log = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            saver(ckpt_dir, log)
        finally:
            os._exit(1)
    print(pid, flush=True)
"""


@pytest.fixture
def fast_dir(tmp_path):
    """A directory in memory (/dev/shm) where there is one: fsync is free there, so many kills fit in seconds.
    A SIGKILL loses no written data (the page cache survives the process), so the test is the same."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        d = tempfile.mkdtemp(prefix="nanoseek-ckpt-", dir=shm)
        yield Path(d)
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def _gone(pid: int) -> None:
    for _ in range(2000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.001)
    raise AssertionError(f"saver {pid} survived SIGKILL")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_at_random_points_never_loses_the_latest_checkpoint(fast_dir):
    rng = random.Random(0)
    ckpt_dir = fast_dir / "ckpt"
    t0 = time.perf_counter()
    ckpt.save_checkpoint(ckpt_dir, Tiny().fill(0.0), step=0, extra={"version": 0})
    one_save = time.perf_counter() - t0  # kill within the first few saves: every point of a save gets hit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(ckpt.__file__).parents[1])] + sys.path)}
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert zygote.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30.0  # a safety bound; a quiet 2-core machine needs about 3 s
        kills, saves = 0, 0
        window = 3 * one_save  # kill delays are drawn from [0, window]; a loaded machine saves slower
        while kills < 40 and time.monotonic() < deadline:
            # each round starts from one complete checkpoint holding version 0
            ckpt.save_checkpoint(ckpt_dir, Tiny().fill(0.0), step=0, extra={"version": 0})
            log = fast_dir / f"log-{kills}"
            zygote.stdin.write(f"{ckpt_dir} {log}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(rng.uniform(0.0, window))
            os.kill(pid, signal.SIGKILL)
            _gone(pid)
            data = log.read_bytes() if log.exists() else b""
            done = [v for (v,) in struct.iter_unpack("<i", data[: len(data) // 4 * 4])]
            saves += len(done)
            if not done:  # the saver was killed before finishing one save: on a busy machine, wait longer
                window *= 1.5
            last = done[-1] if done else 0
            # the latest is the last save that reported completion, or the next one (finished, not yet logged)
            assert _version_of(ckpt_dir) in (last, last + 1)
            kills += 1
    finally:
        zygote.kill()
        zygote.wait()
    assert kills >= 30, f"only {kills} kills in the time bound"
    assert saves >= kills // 2, f"the savers finished only {saves} saves in {kills} rounds: they hardly ran"
    ckpt.save_checkpoint(ckpt_dir, Tiny(), step=0)
    assert not [p for p in ckpt_dir.iterdir() if p.name.startswith(".")], "a killed save's leftovers stayed"


@pytest.mark.parametrize("fail_at", range(12))
def test_a_failing_filesystem_step_never_loses_the_latest_checkpoint(tmp_path, monkeypatch, fail_at):
    """Re-save a step with the n-th rename/replace/link/rmtree of the save raising: at every point the latest
    checkpoint loads and holds the old or the new weights, never neither."""
    ckpt.save_checkpoint(tmp_path, Tiny().fill(1.0), step=5, extra={"version": 1})
    calls = {"n": 0}

    def failing(fn):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == fail_at + 1:
                raise OSError("disk full (injected)")
            return fn(*args, **kwargs)
        return wrapper

    for name in ("rename", "replace", "link"):
        monkeypatch.setattr(ckpt.os, name, failing(getattr(os, name)))
    monkeypatch.setattr(ckpt.shutil, "rmtree", failing(shutil.rmtree))
    try:
        ckpt.save_checkpoint(tmp_path, Tiny().fill(2.0), step=5, extra={"version": 2})
    except OSError:
        pass
    monkeypatch.undo()
    assert _version_of(tmp_path) in (1, 2)
    ckpt.save_checkpoint(tmp_path, Tiny().fill(3.0), step=5, extra={"version": 3})  # and it recovers
    assert _version_of(tmp_path) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "leftovers not cleaned"


def test_resaving_a_step_replaces_it(tmp_path):
    for v in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, Tiny().fill(float(v)), step=7, extra={"version": v})
    assert _version_of(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step-000007"]


@pytest.mark.parametrize("which", ["model.safetensors", "optimizer.safetensors"])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_a_flipped_bit_is_detected(tmp_path, which, where):
    model = Tiny().fill(0.5)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 16)).sum().backward()
    opt.step()
    path = ckpt.save_checkpoint(tmp_path, model, step=1, optimizer=opt)
    f = path / which
    data = bytearray(f.read_bytes())
    data[int(where * (len(data) - 1))] ^= 0x04
    f.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{which} is corrupt"):
        ckpt.load_checkpoint(tmp_path, Tiny(), torch.optim.AdamW(Tiny().parameters()))


def test_missing_tensor_file_is_named(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, Tiny(), step=1)
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        ckpt.load_checkpoint(tmp_path, Tiny())


def test_pretrained_checksum(tmp_path):
    model = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=2, n_embd=8))
    ckpt.save_pretrained(model, tmp_path)
    assert "sha256" in json.loads((tmp_path / "config.json").read_text())
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[-3] ^= 1
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        ckpt.load_pretrained(tmp_path, GPT)


@pytest.mark.parametrize("pointer", ["../other/step-000005", "/etc", "..", ".", "", "a/../../b", 5, None,
                                     "sub\\..\\..\\x"])
def test_latest_pointer_outside_the_directory_is_refused(tmp_path, pointer):
    other = tmp_path / "other"
    ckpt.save_checkpoint(other, Tiny(), step=5)
    here = tmp_path / "run"
    ckpt.save_checkpoint(here, Tiny(), step=1)
    (here / "latest.json").write_text(json.dumps({"checkpoint": pointer}))
    with pytest.raises(ValueError, match="latest.json"):
        ckpt.load_checkpoint(here, Tiny())


def test_symlink_leading_outside_is_refused(tmp_path):
    other = tmp_path / "other"
    ckpt.save_checkpoint(other, Tiny(), step=5)
    here = tmp_path / "run"
    ckpt.save_checkpoint(here, Tiny(), step=1)
    (here / "step-000009").symlink_to(other / "step-000005")
    (here / "latest.json").write_text(json.dumps({"checkpoint": "step-000009"}))
    with pytest.raises(ValueError, match="outside"):
        ckpt.latest_checkpoint(here)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"other": 1}', '"step-000001"'])
def test_malformed_latest_json_is_named(tmp_path, text):
    ckpt.save_checkpoint(tmp_path, Tiny(), step=1)
    (tmp_path / "latest.json").write_text(text)
    with pytest.raises(ValueError, match="latest.json"):
        ckpt.load_checkpoint(tmp_path, Tiny())


def _gpt(**kw):
    base = dict(block_size=16, vocab_size=16, n_layer=1, n_head=1, n_embd=16)
    base.update(kw)
    return GPT(GPTConfig(**base))


@pytest.mark.parametrize("field, value", [("n_head", 4), ("bias", False), ("vocab_size", 32), ("n_layer", 2)])
def test_stored_config_must_match_the_model(tmp_path, field, value):
    model = _gpt()
    ckpt.save_checkpoint(tmp_path, model, step=1, config=model.config)
    with pytest.raises(ValueError, match=f"{field}="):
        ckpt.load_checkpoint(tmp_path, _gpt(**{field: value}))


def test_runtime_fields_may_differ_and_check_can_be_skipped(tmp_path):
    model = _gpt(dropout=0.1)
    ckpt.save_checkpoint(tmp_path, model, step=1, config=model.config)
    ckpt.load_checkpoint(tmp_path, _gpt(dropout=0.0))  # dropout does not change which weights exist
    ckpt.load_checkpoint(tmp_path, _gpt(n_head=4), check_config=False)  # same shapes, explicitly allowed


def test_config_difference_names_the_first_field():
    assert ckpt.config_difference({"a": 1, "b": 2}, {"a": 1, "b": 2}) is None
    assert "b: checkpoint has b=2" in ckpt.config_difference({"a": 1, "b": 2}, {"a": 1, "b": 3})
    assert "c" in ckpt.config_difference({"a": 1}, {"a": 1, "c": 0})
    assert ckpt.config_difference({"t": (1, 2)}, {"t": [1, 2]}) is None


# ---- train(resume=True) checks what it resumes -----------------------------------------------------------

def _setup():
    torch.manual_seed(0)
    ids = torch.arange(400) * 7 % 16
    get_batch = window_batcher(ids[:300], ids[300:], block_size=8, batch_size=2)
    model = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=2, n_embd=16))
    return model, get_batch


def _cfg(**kw):
    base = dict(max_steps=4, lr=1e-3, warmup_steps=1, eval_every=2, eval_batches=1, device="cpu", progress=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    model, get_batch = _setup()
    train(model, get_batch, _cfg(ckpt_every=2), ckpt_dir=d)
    return d


def _edited_copy(run_dir, tmp_path, edit):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    state_path = d / "step-000004" / "state.json"
    state = json.loads(state_path.read_text())
    edit(state)
    state_path.write_text(json.dumps(state))
    return d


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.update(step=-1), "step=-1"),
    (lambda s: s.update(step=2.5), "step=2.5"),
    (lambda s: s.update(step=True), "step=True"),
    (lambda s: s.update(step=9), "past max_steps=4"),
    (lambda s: s.update(step=3), "4 entries for step=3"),
    (lambda s: s["extra"]["result"]["steps"].append(5), "steps has 5 entries"),
    (lambda s: s["extra"]["result"]["train_loss"].pop(), "train_loss has 3 entries"),
    (lambda s: s["extra"]["result"].update(steps=[1, 1, 2, 3]), "steps are not"),
    (lambda s: s["extra"]["result"]["eval_steps"].append(7), "eval_steps"),
    (lambda s: s["extra"].pop("result"), "no training history"),
    (lambda s: s["extra"]["result"].update(bogus=1), "malformed"),
])
def test_resume_refuses_inconsistent_state(run_dir, tmp_path, edit, match):
    d = _edited_copy(run_dir, tmp_path, edit)
    model, get_batch = _setup()
    with pytest.raises(ValueError, match=match):
        train(model, get_batch, _cfg(), ckpt_dir=d, resume=True)


@pytest.mark.parametrize("change", [dict(seed=1), dict(lr=2e-3), dict(weight_decay=0.0), dict(warmup_steps=2)])
def test_resume_refuses_another_training_config(run_dir, tmp_path, change):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    model, get_batch = _setup()
    (name, value), = change.items()
    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        train(model, get_batch, _cfg(**change), ckpt_dir=d, resume=True)


def test_resume_says_when_the_schedule_changes(run_dir, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    model, get_batch = _setup()
    with pytest.warns(UserWarning, match="max_steps=4"):
        result = train(model, get_batch, _cfg(max_steps=6), ckpt_dir=d, resume=True)
    assert result.steps == list(range(1, 7))


def test_resume_refuses_another_model_config(run_dir, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    _, get_batch = _setup()
    other = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=4, n_embd=16))
    with pytest.raises(ValueError, match="n_head"):
        train(other, get_batch, _cfg(), ckpt_dir=d, resume=True)
