"""Bad input gets a clear ValueError that names the value: config fields (non-finite, mistyped), token ids,
chat rows, token streams and tokenizer files. Each class is parametrized over the examples that used to fail
(raw IndexError/TypeError, or accepted and a NaN loss later) and a few more of the same kind."""
from __future__ import annotations

import json
import math

import pytest
import torch

from nanoseek import validate as V
from nanoseek.data import window_batcher
from nanoseek.data.chars import CharVocab
from nanoseek.data.chat import SPECIAL_TOKENS, encode_chat, render_chat, sft_batcher
from nanoseek.generate import generate
from nanoseek.models.decoder import DecoderConfig
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.nn.mla import MLAConfig
from nanoseek.nn.moe import MoEConfig
from nanoseek.rl.trainer import RLConfig
from nanoseek.rl.vocab import TaskVocab
from nanoseek.sft import evaluate_chat, greedy_batch
from nanoseek.tokenizer import Tokenizer
from nanoseek.train import TrainConfig

INF, NAN = math.inf, math.nan
TINY_DEC = dict(vocab_size=32, n_layer=1, n_embd=16, n_head=2, n_kv_head=1, intermediate_size=32, max_seq_len=16)


def _re(s: str) -> str:
    return "".join("\\" + c if c in ".()[]{}+*?^$|\\" else c for c in s)


# ---- config values ----------------------------------------------------------------------------------------

CONFIG_CASES = [
    # accepted before, and the loss turned into NaN
    (DecoderConfig, TINY_DEC, "init_std", INF), (DecoderConfig, TINY_DEC, "rope_theta", INF),
    (DecoderConfig, TINY_DEC, "norm_eps", INF), (DecoderConfig, TINY_DEC, "mtp_lambda", INF),
    (DecoderConfig, TINY_DEC, "init_std", NAN), (DecoderConfig, TINY_DEC, "norm_eps", NAN),
    (DecoderConfig, TINY_DEC, "mtp_lambda", NAN), (DecoderConfig, TINY_DEC, "rope_theta", -INF),
    (MoEConfig, dict(dim=16), "routed_scaling_factor", INF), (MoEConfig, dict(dim=16), "routed_scaling_factor", NAN),
    (MoEConfig, dict(dim=16), "aux_loss_alpha", INF), (MoEConfig, dict(dim=16), "bias_update_speed", NAN),
    (TrainConfig, {}, "lr", INF), (TrainConfig, {}, "lr", NAN), (TrainConfig, {}, "weight_decay", NAN),
    (TrainConfig, {}, "weight_decay", INF), (TrainConfig, {}, "grad_clip", NAN), (TrainConfig, {}, "beta1", NAN),
    (TrainConfig, {}, "beta2", 1.0), (TrainConfig, {}, "min_lr", NAN),
    (MLAConfig, {}, "rope_theta", INF), (MLAConfig, {}, "norm_eps", NAN), (MLAConfig, {}, "softmax_scale", INF),
    (RLConfig, {}, "lr", INF), (RLConfig, {}, "temperature", NAN), (RLConfig, {}, "beta", NAN),
    (RLConfig, {}, "clip_low", INF), (RLConfig, {}, "gamma", 1.5),
    # raw errors from deep inside before
    (GPTConfig, {}, "dropout", "0.1"), (TrainConfig, {}, "max_steps", 2.5), (TrainConfig, {}, "lr", "1e-3"),
    (DecoderConfig, TINY_DEC, "norm_eps", "1e-6"), (MoEConfig, dict(dim=16), "routed_scaling_factor", "2.5"),
    (GPTConfig, {}, "dropout", NAN), (TrainConfig, {}, "warmup_steps", 10.0), (TrainConfig, {}, "eval_every", "5"),
    (MLAConfig, {}, "kv_lora_rank", 8.0), (RLConfig, {}, "steps", 2.5),
    (DecoderConfig, TINY_DEC, "attention", ["gqa"]), (MoEConfig, dict(dim=16), "scoring_func", ["sigmoid"]),
    (TrainConfig, {}, "precision", None),
    # accepted as if it were a number
    (GPTConfig, {}, "n_layer", True), (GPTConfig, {}, "n_head", True), (GPTConfig, {}, "vocab_size", False),
    (DecoderConfig, TINY_DEC, "n_layer", True), (MLAConfig, {}, "n_heads", True), (MLAConfig, {}, "q_lora_rank", True),
    (TrainConfig, {}, "max_steps", True), (TrainConfig, {}, "lr", True), (MoEConfig, dict(dim=16), "n_group", True),
    (RLConfig, {}, "group_size", True), (DecoderConfig, TINY_DEC, "tie_embeddings", 1),
    (GPTConfig, {}, "bias", "False"),
]


@pytest.mark.parametrize("cls, base, field, value", CONFIG_CASES,
                         ids=[f"{c.__name__}.{f}={v!r}" for c, _, f, v in CONFIG_CASES])
def test_config_value_is_refused_naming_field_and_value(cls, base, field, value):
    with pytest.raises(ValueError, match=_re(f"{field}={value!r}")):
        cls(**{**base, field: value})


def test_good_configs_still_build():
    DecoderConfig(**TINY_DEC)
    GPTConfig(dropout=0.1, n_layer=2)
    MoEConfig(dim=16, routed_scaling_factor=2)  # an int is a number
    TrainConfig(lr=1, weight_decay=0, min_lr=0.0)
    MLAConfig(q_lora_rank=8, softmax_scale=0.5)
    RLConfig(temperature=0.0)


def test_numpy_ints_are_ints_and_become_plain_ints():
    np = pytest.importorskip("numpy")
    cfg = GPTConfig(n_layer=np.int64(2))
    assert cfg.n_layer == 2 and type(cfg.n_layer) is int
    json.dumps(cfg.__dict__)  # configs go into checkpoints as JSON


@pytest.mark.parametrize("fn, args, match", [
    (V.integer, (2.0, "n"), "n=2.0"), (V.integer, (True, "n"), "a bool"), (V.integer, ("3", "n"), "n='3'"),
    (V.integer, (0, "n", "C"), None), (lambda *a: V.integer(*a, minimum=0), (-1, "n", "C"), "C.n must be an int >= 0, got n=-1"),
    (V.number, (INF, "x"), "not finite"), (V.number, ("1", "x"), "a str"), (V.number, (None, "x"), "x=None"),
    (V.positive, (0.0, "x"), "> 0"), (V.probability, (1.01, "p"), "<= 1"), (V.flag, (1, "b"), "True or False"),
    (V.choice, ({"a"}, "c", ("a",)), "c={'a'}"),
])
def test_validate_rules(fn, args, match):
    if match is None:
        fn(*args)
        return
    with pytest.raises(ValueError, match=match):
        fn(*args)


# ---- token ids --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt16():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=32, vocab_size=16, n_layer=1, n_head=2, n_embd=16)).eval()


@pytest.mark.parametrize("bad", [16, 17, 1000, -1, -16])
def test_generate_refuses_ids_outside_the_vocabulary(gpt16, bad):
    idx = torch.tensor([[1, 2, bad, 3]])
    with pytest.raises(ValueError, match=_re(f"idx[0, 2] = {bad} is outside a vocabulary of 16")):
        generate(gpt16, idx, 2)
    with pytest.raises(ValueError, match=_re(f"{bad}")):
        generate(gpt16, idx, 2, use_cache=False)


@pytest.mark.parametrize("kw, match", [(dict(temperature=NAN), "temperature=nan"),
                                       (dict(temperature=INF), "temperature=inf"),
                                       (dict(temperature="1.0"), "temperature='1.0'"),
                                       (dict(top_p=NAN), "top_p=nan"), (dict(top_k=2.0), "top_k=2.0"),
                                       (dict(top_k=True), "top_k=True"), (dict(eos_id=16), "eos_id=16"),
                                       (dict(eos_id=-1), "eos_id=-1"), (dict(max_new_tokens=2.0), "max_new_tokens=2.0")])
def test_generate_refuses_bad_sampling_arguments(gpt16, kw, match):
    args = dict(max_new_tokens=2)
    args.update(kw)
    with pytest.raises(ValueError, match=_re(match)):
        generate(gpt16, torch.tensor([[1, 2]]), **args)


def test_greedy_batch_and_evaluate_chat_refuse_a_tokenizer_larger_than_the_model(gpt16):
    with pytest.raises(ValueError, match=_re("prompt 1[2] = 40 is outside a vocabulary of 16")):
        greedy_batch(gpt16, [[1, 2], [3, 4, 40]], 2, eos_id=0)
    with pytest.raises(ValueError, match="eos_id=99"):
        greedy_batch(gpt16, [[1, 2]], 2, eos_id=99)
    tok = Tokenizer.train("Lily went to the park. " * 20, 300, special_tokens=SPECIAL_TOKENS)
    rows = [{"messages": [{"role": "user", "content": "Lily?"}, {"role": "assistant", "content": "Yes."}]}]
    with pytest.raises(ValueError, match="outside a vocabulary of 16"):
        evaluate_chat(gpt16, tok, rows, max_new_tokens=2)


@pytest.mark.parametrize("ids, match", [([0, 3], "= 3 is outside"), ([-1], "= -1 is outside"),
                                        ([1, 99], "= 99 is outside"), ([1.0], "must be an int"),
                                        ([True], "must be an int"), (torch.tensor([0, 5]), "= 5 is outside"),
                                        ("ab", "sequence of ints"), (torch.tensor([0.0]), "integers")])
def test_charvocab_decode_refuses_bad_ids(ids, match):
    vocab = CharVocab.from_text("abc")
    assert vocab.decode([0, 1, 2]) == "abc" and vocab.decode(torch.tensor([2, 0])) == "ca"
    with pytest.raises(ValueError, match=match):
        vocab.decode(ids)


@pytest.mark.parametrize("ids, match", [([3, 100], "= 100 is outside"), ([-1], "= -1 is outside"),
                                        ([-3, 4], "= -3 is outside"), ([2.5], "must be an int")])
def test_taskvocab_decode_refuses_bad_ids(ids, match):
    vocab = TaskVocab("0123456789+")
    assert vocab.decode(vocab.encode("<think>1+2</think>")) == "<think>1+2</think>"
    with pytest.raises(ValueError, match=match):
        vocab.decode(ids)


# ---- chat rows --------------------------------------------------------------------------------------------

USER = {"role": "user", "content": "hi"}
BAD_ROWS = [
    ({"messages": [{"role": ["user"], "content": "hi"}]}, "role=\\['user'\\]"),
    ({"messages": [{"role": {"user": 1}, "content": "hi"}]}, "role="),
    ({"messages": []}, "non-empty list"),
    ({"messages": "hello"}, "non-empty list"),
    ({"messages": None}, "non-empty list"),
    ({"messages": [None]}, "message 0 must be a dict"),
    ({"messages": [USER, "hi"]}, "message 1 must be a dict"),
    ({"messages": [{"role": "user", "content": 5}]}, "content must be a str"),
    (None, "must be a dict with 'messages'"),
    ("hello", "must be a dict with 'messages'"),
    ({"msgs": [USER]}, "must be a dict with 'messages'"),
]


@pytest.fixture(scope="module")
def chat_tok():
    return Tokenizer.train("Lily went to the park. hi there " * 20, 300, special_tokens=SPECIAL_TOKENS)


@pytest.mark.parametrize("row, match", BAD_ROWS)
def test_evaluate_chat_refuses_malformed_rows(chat_tok, row, match):
    model = GPT(GPTConfig(block_size=32, vocab_size=300, n_layer=1, n_head=2, n_embd=16)).eval()
    with pytest.raises(ValueError, match=match):
        evaluate_chat(model, chat_tok, [row], max_new_tokens=2)


@pytest.mark.parametrize("row, match", BAD_ROWS)
def test_sft_batcher_refuses_malformed_rows(chat_tok, row, match):
    good = {"messages": [USER, {"role": "assistant", "content": "hi"}]}
    with pytest.raises(ValueError, match=match):
        sft_batcher(chat_tok, [good, row], [good], block_size=16, batch_size=2)


@pytest.mark.parametrize("messages", [[{"role": ["user"], "content": "hi"}], [], "hi", None, [None]])
def test_render_and_encode_chat_refuse_malformed_messages(chat_tok, messages):
    with pytest.raises(ValueError):
        render_chat(messages)
    with pytest.raises(ValueError):
        encode_chat(chat_tok, messages)


@pytest.mark.parametrize("rows", [None, [], "rows", {"messages": [USER]}])
def test_evaluate_chat_refuses_a_bad_row_list(chat_tok, rows):
    model = GPT(GPTConfig(block_size=32, vocab_size=300, n_layer=1, n_head=2, n_embd=16)).eval()
    with pytest.raises(ValueError, match="at least one row"):
        evaluate_chat(model, chat_tok, rows)


# ---- token streams ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("train, match", [
    (torch.zeros(4, 100, dtype=torch.long), r"one 1-D token stream \(N,\), got shape \(4, 100\)"),  # used to
    (torch.zeros(1, 100, dtype=torch.long), r"got shape \(1, 100\)"),                               # blame length
    (torch.zeros(100), "integer token ids, got dtype torch.float32"),
    (list(range(100)), "must be a 1-D tensor"),
    (torch.full((100,), -1), r"= -1 is outside"),
    (torch.zeros(5, dtype=torch.long), "needs more than block_size=8 tokens, has 5"),
])
def test_window_batcher_reports_the_real_cause(train, match):
    with pytest.raises(ValueError, match=match):
        window_batcher(train, torch.zeros(100, dtype=torch.long), block_size=8, batch_size=2)


@pytest.mark.parametrize("kw, match", [(dict(block_size=8.0), "block_size=8.0"), (dict(batch_size=0), "batch_size=0"),
                                       (dict(block_size=True), "block_size=True")])
def test_window_batcher_sizes(kw, match):
    args = dict(block_size=8, batch_size=2)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        window_batcher(torch.zeros(100, dtype=torch.long), torch.zeros(100, dtype=torch.long), **args)


# ---- tokenizer files --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tok_data():
    tok = Tokenizer.train("the cat sat on the mat. the dog sat too. " * 20, 270, special_tokens=["<|a|>", "<|b|>"])
    return tok.to_dict()


def _write(tmp_path, data) -> str:
    p = tmp_path / "tok.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


@pytest.mark.parametrize("edit, field, match", [
    (lambda d: d["special_tokens"].update({"<|a|>": "268"}), "special_tokens", "'268'"),       # a string id
    (lambda d: d["special_tokens"].update({"<|a|>": 268.0}), "special_tokens", "268.0"),       # a float id
    (lambda d: d["special_tokens"].update({"<|a|>": True}), "special_tokens", "True"),
    (lambda d: d["special_tokens"].update({"<|a|>": -1}), "special_tokens", "-1"),             # negative
    (lambda d: d["special_tokens"].update({"<|b|>": 300}), "special_tokens", "300"),           # gapped
    (lambda d: d["special_tokens"].update({"<|a|>": 260}), "special_tokens", "already taken"),  # a merged id
    (lambda d: d["special_tokens"].update({"<|c|>": 270}), "special_tokens", None),            # contiguous: fine
    (lambda d: d.update(merges=None), "merges", "None"),
    (lambda d: d.update(merges="[]"), "merges", "'\\[\\]'"),
    (lambda d: d["merges"].append([1, 2]), "merges", "triples"),
    (lambda d: d["merges"].__setitem__(0, [97, "b", 256]), "merges", "triples"),
    (lambda d: d.update(special_tokens=["<|a|>", "<|b|>"]), "special_tokens", "must be an object"),
    (lambda d: d.update(special_tokens=None), "special_tokens", "must be an object"),
    (lambda d: d.update(pattern="(unclosed"), "pattern", "does not compile"),
    (lambda d: d.update(pattern=5), "pattern", "regex string"),
    (lambda d: d.pop("pattern"), "pattern", "missing"),
    (lambda d: d.update(merges=d["merges"][:-3]), "special_tokens", "truncated"),  # ids past the vocabulary
    (lambda d: d.update(merges=d["merges"][:5]), "special_tokens", "truncated"),
])
def test_tokenizer_file_errors_name_file_and_field(tmp_path, tok_data, edit, field, match):
    data = json.loads(json.dumps(tok_data))
    edit(data)
    path = _write(tmp_path, data)
    if match is None:
        tok = Tokenizer.load(path)
        assert tok.decode(tok.encode("<|c|>the cat", allowed_special="all")) == "<|c|>the cat"
        assert len(tok) == 271
        return
    with pytest.raises(ValueError, match=match) as err:
        Tokenizer.load(path)
    assert "tok.json" in str(err.value) and field in str(err.value)


@pytest.mark.parametrize("text", ["", "{", "\xff\xfe", "[1, 2]", "null"])
def test_tokenizer_file_that_is_not_json_is_named(tmp_path, text):
    with pytest.raises(ValueError, match="tok.json"):
        Tokenizer.load(_write(tmp_path, text))


def test_special_ids_must_follow_the_merges():
    Tokenizer(special_tokens={"<a>": 257, "<b>": 256})  # order in the dict does not matter
    with pytest.raises(ValueError, match="must be 256..256"):
        Tokenizer(special_tokens={"<a>": 300})
    with pytest.raises(ValueError, match="ids are ints"):
        Tokenizer(special_tokens={"<a>": "256"})
