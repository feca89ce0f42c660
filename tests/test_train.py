"""The training loop: schedule, decay groups, exact resume, atomic checkpoints."""
import json

import pytest
import torch

from nanoseek import checkpoint as ckpt
from nanoseek.data import window_batcher
from nanoseek.models.gpt import GPT, GPTConfig
from nanoseek.train import TrainConfig, lr_at, make_optimizer, train


def tiny_setup(dropout=0.1):
    torch.manual_seed(0)
    # a learnable stream: mostly a fixed cycle, with some noise
    ids = torch.where(torch.rand(2000) < 0.8, torch.arange(2000) * 7 % 16, torch.randint(0, 16, (2000,)))
    get_batch = window_batcher(ids[:1600], ids[1600:], block_size=16, batch_size=4)
    model = GPT(GPTConfig(block_size=16, vocab_size=16, n_layer=2, n_head=2, n_embd=32, dropout=dropout))
    return model, get_batch


def cfg(**kw):
    base = dict(max_steps=12, lr=3e-3, warmup_steps=3, eval_every=4, eval_batches=2, device="cpu", progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_warmup_then_cosine():
    c = cfg(max_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(55, c) == pytest.approx(0.55)
    assert lr_at(100, c) == pytest.approx(0.1)
    lrs = [lr_at(s, c) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_weight_decay_only_on_matrices():
    model, _ = tiny_setup()
    opt = make_optimizer(model, cfg())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_training_reduces_loss():
    model, get_batch = tiny_setup(dropout=0.0)
    result = train(model, get_batch, cfg(max_steps=40, eval_every=20))
    assert result.eval_steps == [0, 20, 40]
    assert result.val_loss[-1] < result.val_loss[0] - 0.1


def test_resume_continues_exactly(tmp_path):
    model, get_batch = tiny_setup()
    full = train(model, get_batch, cfg())

    model, get_batch = tiny_setup()
    train(model, get_batch, cfg(max_steps=12, ckpt_every=5), ckpt_dir=tmp_path)  # writes step 5, 10, 12
    # pretend the run died after step 5: point latest at it, start a fresh process-like model
    (tmp_path / "latest.json").write_text(json.dumps({"checkpoint": "step-000010"}))
    model, get_batch = tiny_setup()
    resumed = train(model, get_batch, cfg(), ckpt_dir=tmp_path, resume=True)
    assert resumed.train_loss == full.train_loss  # bit-for-bit on CPU
    assert resumed.val_loss == full.val_loss


def test_interrupted_save_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    model, get_batch = tiny_setup()
    train(model, get_batch, cfg(max_steps=4, ckpt_every=2), ckpt_dir=tmp_path)
    good = {k: v.clone() for k, v in model.state_dict().items()}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut while writing")

    monkeypatch.setattr(ckpt, "save_file", crash)  # dies after the weights, before the optimizer state
    torch.nn.init.zeros_(model.lm_head.weight)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, model, step=99, optimizer=make_optimizer(model, cfg()))
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000004"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directory left behind"
    fresh, _ = tiny_setup()
    state = ckpt.load_checkpoint(tmp_path, fresh)
    assert state["step"] == 4
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, good[k])


def test_pretrained_round_trip_and_no_pickle(tmp_path):
    model, _ = tiny_setup()
    ckpt.save_pretrained(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    again = ckpt.load_pretrained(tmp_path, GPT)
    x = torch.randint(0, 16, (1, 16))
    torch.testing.assert_close(again.eval()(x)[0], model.eval()(x)[0])


@pytest.mark.parametrize("kw, text", [(dict(max_steps=0), "max_steps=0"), (dict(lr=-1.0), "lr=-1.0"),
                                      (dict(grad_clip=-1.0), "grad_clip=-1.0"), (dict(precision="fp16"), "fp16")])
def test_bad_train_config(kw, text):
    with pytest.raises(ValueError, match=text):
        cfg(**kw)


def test_auto_precision_is_fp32_on_cpu():
    """CPU runs stay bit-exact: "auto" means fp32 there, so it equals an explicit fp32 run."""
    runs = []
    for precision in ("auto", "fp32"):
        model, get_batch = tiny_setup(dropout=0.0)
        runs.append(train(model, get_batch, cfg(precision=precision)).train_loss)
    assert runs[0] == runs[1]


def _decoder_cases():
    from nanoseek.models.decoder import DecoderConfig
    base = dict(vocab_size=16, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=64, max_seq_len=32)
    mla = dict(attention="mla", kv_lora_rank=16, q_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
    moe = dict(ffn="moe", first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
               n_group=2, topk_group=1, aux_loss="seq", aux_loss_alpha=0.01)
    return {"gqa": DecoderConfig(**base), "mla": DecoderConfig(**base, **mla),
            **{f"moe-{d}": DecoderConfig(**base, **moe, moe_dispatch=d) for d in ("sorted", "loop", "grouped")},
            "mtp": DecoderConfig(**base, mtp_depth=2)}


@pytest.mark.parametrize("name", ["gpt", *_decoder_cases()])
def test_bf16_autocast_trains_every_model(name):
    """The GPU path ("auto" is bf16 autocast on an A100/H100) exercised on CPU autocast: every model family of
    the book trains under it with fp32 weights, and the loss falls."""
    from nanoseek.models.decoder import Decoder
    from nanoseek.nn.mtp import mtp_loss_fn

    model, get_batch = tiny_setup(dropout=0.0)
    if name != "gpt":
        torch.manual_seed(0)
        model = Decoder(_decoder_cases()[name])
    kw = {"loss_fn": mtp_loss_fn} if name == "mtp" else {}
    result = train(model, get_batch, cfg(precision="bf16", max_steps=40, eval_every=40), **kw)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.final_val_loss < result.val_loss[0] - 0.3, result.val_loss
