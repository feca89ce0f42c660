"""nanoseek.distill: the KD losses against hand computations, F.kl_div and gradcheck; the chunked path; the
vocabulary rule; training on the one loop (off- and on-policy); sequence-level KD."""
import math

import pytest
import torch
import torch.nn.functional as F

from nanoseek.distill import (KINDS, KDConfig, align_vocab, distill_loss, forward_kl, generalized_jsd, gkd_batcher,
                              gkd_loss_fn, kd_ce_loss, kd_loss_fn, keep_verified, log_mixture, per_position,
                              reverse_kl, sft_tensors, skewed_kl, student_samples)


def _logits(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [None, 3])
def test_gradcheck_every_loss(kind, chunk):
    s = _logits(2, 4, 6, seed=1).requires_grad_(True)
    t = _logits(2, 4, 6, seed=2)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)
    fn = lambda x: distill_loss(x, t, kind, mask=mask, temperature=1.7, beta=0.3, alpha=0.2, chunk_size=chunk)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (s,))


def test_gradcheck_kd_ce():
    s = _logits(3, 5, seed=3).requires_grad_(True)
    t = _logits(3, 5, seed=4)
    y = torch.tensor([1, -100, 4])
    assert torch.autograd.gradcheck(lambda x: kd_ce_loss(x, t, y, alpha=0.3, temperature=2.0), (s,))


def test_hand_computed_two_token_case():
    # teacher p = (0.75, 0.25), student q = (0.5, 0.5): the KLs by hand
    t = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    fkl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    rkl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert float(forward_kl(s, t)) == pytest.approx(fkl, abs=1e-12)
    assert float(reverse_kl(s, t)) == pytest.approx(rkl, abs=1e-12)
    # beta = 0.5: m = (0.625, 0.375)
    m = (0.625, 0.375)
    jsd = 0.5 * (0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])) + 0.5 * (
        0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    assert float(generalized_jsd(s, t, 0.5)) == pytest.approx(jsd, abs=1e-12)
    # beta = 0.2: m = 0.8 q + 0.2 p = (0.55, 0.45); 0.2 KL(p||m) + 0.8 KL(q||m)
    m = (0.55, 0.45)
    jsd2 = 0.2 * (0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])) + 0.8 * (
        0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    assert float(generalized_jsd(s, t, 0.2)) == pytest.approx(jsd2, abs=1e-12)
    # skewed KL alpha = 0.1: KL(p || 0.1 p + 0.9 q), m = (0.525, 0.475)
    m = (0.525, 0.475)
    skl = 0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])
    assert float(skewed_kl(s, t, 0.1)) == pytest.approx(skl, abs=1e-12)
    # reverse skew: KL(q || 0.1 q + 0.9 p), m = (0.725, 0.275)
    m = (0.725, 0.275)
    srkl = 0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])
    assert float(skewed_kl(s, t, 0.1, reverse=True)) == pytest.approx(srkl, abs=1e-12)


def test_temperature_and_t2():
    s, t = _logits(5, 9, seed=5), _logits(5, 9, seed=6)
    T = 3.0
    plain = forward_kl(s / T, t / T, t2=False)
    assert float(forward_kl(s, t, temperature=T)) == pytest.approx(T * T * float(plain), rel=1e-12)
    assert float(forward_kl(s, t, temperature=T, t2=False)) == pytest.approx(float(plain), rel=1e-12)


def test_agrees_with_f_kl_div():
    s, t = _logits(4, 6, 11, seed=7), _logits(4, 6, 11, seed=8)
    ls, lt = F.log_softmax(s, -1), F.log_softmax(t, -1)
    n = 4 * 6
    torch.testing.assert_close(forward_kl(s, t), F.kl_div(ls, lt, reduction="sum", log_target=True) / n)
    torch.testing.assert_close(reverse_kl(s, t), F.kl_div(lt, ls, reduction="sum", log_target=True) / n)
    # minimind's form: batchmean over kept rows of kl_div(log q_T, p_T) times T²
    T, y = 2.0, torch.full((4, 6), 3)
    ref = F.kl_div(F.log_softmax(s / T, -1).view(n, -1), F.softmax(t / T, -1).view(n, -1), reduction="batchmean")
    torch.testing.assert_close(kd_ce_loss(s, t, y, alpha=0.0, temperature=T), T * T * ref)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_on_identical_and_nonnegative(kind):
    s = _logits(3, 7, 13, seed=9)
    assert abs(float(distill_loss(s, s.clone(), kind, beta=0.4, alpha=0.3))) < 1e-12
    assert float(distill_loss(s, _logits(3, 7, 13, seed=10), kind, beta=0.4, alpha=0.3)) > 0


def test_beta_endpoints_are_the_kls_and_the_interior_tends_to_zero():
    s, t = _logits(6, 20, seed=11), _logits(6, 20, seed=12)
    torch.testing.assert_close(generalized_jsd(s, t, 0.0), forward_kl(s, t))
    torch.testing.assert_close(generalized_jsd(s, t, 1.0), reverse_kl(s, t))
    # the interior formula vanishes near both ends: this is why the endpoints are special cases
    for eps in (1e-3, 1e-5):
        assert float(generalized_jsd(s, t, eps)) < 2 * eps * float(forward_kl(s, t))
        assert float(generalized_jsd(s, t, 1 - eps)) < 2 * eps * float(reverse_kl(s, t))


def test_mixture_in_log_space_survives_large_vocab_and_peaked_logits():
    # probabilities below float32's tiny: a probability-space mixture gives log(0) = -inf
    s = torch.zeros(2, 1000)
    s[:, 0] = 200.0
    t = torch.zeros(2, 1000)
    t[:, 1] = 200.0
    logm = log_mixture(F.log_softmax(s, -1), F.log_softmax(t, -1), 0.5)
    assert torch.isfinite(logm).all()
    assert torch.isfinite(generalized_jsd(s, t, 0.5))
    assert float(generalized_jsd(s, t, 0.5)) == pytest.approx(math.log(2), rel=1e-4)  # disjoint: JSD = ln 2


def test_mask_excludes_positions():
    s, t = _logits(2, 5, 8, seed=13), _logits(2, 5, 8, seed=14)
    mask = torch.tensor([[1, 0, 0, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)
    per = per_position(s, t, "reverse_kl")
    torch.testing.assert_close(reverse_kl(s, t, mask), per[mask].mean())
    t2 = t.clone()
    t2[~mask] = 99.0  # what the mask drops cannot matter
    torch.testing.assert_close(reverse_kl(s, t2, mask), reverse_kl(s, t, mask))
    with pytest.raises(ValueError, match="mask shape"):
        reverse_kl(s, t, mask[:, :3])


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_equals_unchunked(kind):
    s = _logits(3, 17, 301, seed=15, dtype=torch.float32).requires_grad_(True)
    t = _logits(3, 17, 301, seed=16, dtype=torch.float32)
    mask = torch.rand(3, 17, generator=torch.Generator().manual_seed(0)) > 0.3
    a = distill_loss(s, t, kind, mask=mask, temperature=1.5, beta=0.3)
    (ga,) = torch.autograd.grad(a, s)
    for chunk in (1, 7, 64, 10_000):
        b = distill_loss(s, t, kind, mask=mask, temperature=1.5, beta=0.3, chunk_size=chunk)
        (gb,) = torch.autograd.grad(b * 3.0, s)  # upstream gradient is honoured
        assert abs(float(a.detach()) - float(b.detach())) < 1e-6
        torch.testing.assert_close(gb, 3.0 * ga, atol=1e-7, rtol=1e-5)


def test_vocab_rule():
    s, t = torch.randn(2, 3, 151_936 // 1000), torch.randn(2, 3, 152_064 // 1000)  # 151 vs 152 columns
    a, b = align_vocab(s, t)
    assert a.shape[-1] == b.shape[-1] == 151
    assert torch.equal(b, t[..., :151])
    # the cut teacher is renormalised over the shared ids: equal to the loss on explicitly cut logits
    torch.testing.assert_close(forward_kl(s, t), forward_kl(s, t[..., :151]))
    a, b = align_vocab(s, t, n_tokens=120)
    assert a.shape[-1] == 120
    with pytest.raises(ValueError, match="n_tokens"):
        align_vocab(s, t, n_tokens=152)
    with pytest.raises(ValueError, match="before the vocabulary"):
        align_vocab(torch.randn(2, 3, 5), torch.randn(2, 4, 5))


def test_bad_settings_raise():
    s = torch.randn(2, 4)
    with pytest.raises(ValueError, match="kind"):
        distill_loss(s, s, "kl")
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s, s, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        forward_kl(s, s, temperature=0.0)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(s, s, 1.5, chunk_size=2)
    with pytest.raises(ValueError, match="ce_weight"):
        KDConfig(ce_weight=2.0)


def test_bf16_logits_give_fp32_losses():
    s, t = torch.randn(4, 50).bfloat16(), torch.randn(4, 50).bfloat16()
    assert forward_kl(s, t).dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------
def _tiny_pair(V=13):
    from nanoseek.models.decoder import Decoder, DecoderConfig

    torch.manual_seed(0)
    teacher = Decoder(DecoderConfig(vocab_size=V, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, intermediate_size=64,
                                    max_seq_len=32))
    student = Decoder(DecoderConfig(vocab_size=V, n_layer=1, n_embd=16, n_head=2, n_kv_head=1, intermediate_size=32,
                                    max_seq_len=32))
    return teacher, student


def _windows(V=13):
    ids = torch.randint(0, V, (400,), generator=torch.Generator().manual_seed(1))

    def get_batch(split, gen):
        st = torch.randint(0, 380, (8,), generator=gen)
        idx = st[:, None] + torch.arange(12)
        return ids[idx], ids[idx + 1]

    return get_batch


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_off_policy_kd_brings_student_to_teacher(kind):
    from nanoseek.train import TrainConfig, evaluate, train

    teacher, student = _tiny_pair()
    get_batch = _windows()
    loss_fn = kd_loss_fn(teacher, KDConfig(kind=kind))
    before = evaluate(student, get_batch, 4, loss_fn=loss_fn, device="cpu")
    res = train(student, get_batch, TrainConfig(max_steps=40, lr=1e-2, warmup_steps=2, eval_every=40, eval_batches=4,
                                                device="cpu", progress=False), loss_fn=loss_fn)
    assert res.val_loss[-1] < 0.5 * before
    assert "kd" in res.metrics and "ce" not in res.metrics


def test_ce_weight_one_is_hard_labels():
    teacher, student = _tiny_pair()
    x, y = _windows()("train", torch.Generator().manual_seed(0))
    loss, metrics = kd_loss_fn(teacher, KDConfig(ce_weight=1.0))(student, (x, y))
    torch.testing.assert_close(loss, student(x, y)[1])
    assert "kd" not in metrics


def test_on_policy_samples_and_masks():
    teacher, student = _tiny_pair()
    prompt = torch.randint(0, 13, (3, 4), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    idx, mask = student_samples(student, prompt, 5, eos_id=None, pad_id=0)
    assert idx.shape == (3, 8) and torch.equal(idx[:, :4], prompt)
    assert mask[:, :3].sum() == 0 and mask[:, 3:].sum() == 15
    # an end token stops the mask after it
    torch.manual_seed(0)
    _, m2 = student_samples(student, prompt, 5, eos_id=int(idx[0, 4]), pad_id=0)
    assert m2[0, 3:].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_gkd_lambda_mixes_on_and_off_policy_on_the_one_loop():
    from nanoseek.train import TrainConfig, train

    teacher, student = _tiny_pair()
    get_batch = gkd_batcher(_windows(), lam=0.5)
    loss_fn = gkd_loss_fn(teacher, KDConfig(kind="jsd", beta=0.5), prompt_len=4, max_new_tokens=6)
    res = train(student, get_batch, TrainConfig(max_steps=20, lr=1e-2, warmup_steps=2, eval_every=20, eval_batches=2,
                                                device="cpu", progress=False), loss_fn=loss_fn)
    on = res.metrics["on_policy"]
    assert 0 < sum(on) < len(on)  # both kinds of batches happened
    # deterministic: same seed, same choice of batches and same samples
    _, student2 = _tiny_pair()
    res2 = train(student2, get_batch, TrainConfig(max_steps=20, lr=1e-2, warmup_steps=2, eval_every=20, eval_batches=2,
                                                  device="cpu", progress=False), loss_fn=loss_fn)
    assert res2.train_loss == res.train_loss
    assert gkd_batcher(_windows(), 1.0)("val", torch.Generator())[-1].item() is False


# ---------------------------------------------------------------------------------------------------------
# sequence-level
# ---------------------------------------------------------------------------------------------------------
def test_keep_verified_filters_exactly():
    rows = [{"key": "a", "answer": "1"}, {"key": "b", "answer": "2"}]
    samples = [{"row": rows[0], "text": "1"}, {"row": rows[0], "text": "1"}, {"row": rows[0], "text": "x"},
               {"row": rows[1], "text": "2"}, {"row": rows[1], "text": "2 "}, {"row": rows[1], "text": "3"}]
    verifier = lambda text, row: 1.0 if text.strip() == row["answer"] else (0.1 if text else 0.0)  # noqa: E731
    kept = keep_verified(samples, verifier)
    assert [s["text"] for s in kept] == ["1", "2", "2 "]  # duplicates dropped, partial scores rejected
    assert [s["text"] for s in keep_verified(samples, verifier, per_row=1)] == ["1", "2"]


def test_sft_tensors_mask_the_prompt():
    X, Y = sft_tensors([{"prompt_ids": [5, 6, 7], "response_ids": [8, 9, 2]},
                        {"prompt_ids": [5, 6], "response_ids": [8, 2]}], pad_id=0)
    assert X.shape == Y.shape == (2, 5)
    assert Y[0].tolist() == [-100, -100, 8, 9, 2]
    assert Y[1].tolist() == [-100, 8, 2, -100, -100]
    with pytest.raises(ValueError, match="at least one"):
        sft_tensors([], pad_id=0)


def test_teacher_traces_and_rejection_sampling_on_chapter_10_task():
    from nanoseek.distill import teacher_traces
    from nanoseek.models.decoder import Decoder, DecoderConfig
    from nanoseek.rl.tasks import ADDITION_ALPHABET, addition_demo, addition_task
    from nanoseek.rl.vocab import TaskVocab

    vocab = TaskVocab(ADDITION_ALPHABET)
    task = addition_task(vocab, digits=2)
    rows = task.train_rows(3, 0)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=len(vocab), n_layer=1, n_embd=16, n_head=2, n_kv_head=1,
                                  intermediate_size=32, max_seq_len=40))
    samples = teacher_traces(model, task, rows, 2, 28, seed=0)
    assert len(samples) == 6 and all(s["response_ids"] for s in samples)
    # a random model is never right; a correct demo always passes the verifier
    assert keep_verified(samples, task.accuracy_fn) == []
    good = [{**samples[0], "text": addition_demo(samples[0]["row"])}]
    assert len(keep_verified(good, task.accuracy_fn)) == 1


def test_hf_qwen2_pair_with_different_vocab_sizes():
    pytest.importorskip("transformers")
    from nanoseek.distill import hf_distill_loss
    from nanoseek.rl.hf import tiny_random_qwen2

    teacher = tiny_random_qwen2(176, seed=1, hidden_size=48)  # like 152,064 vs 151,936: same ids, padded rows
    student = tiny_random_qwen2(160, seed=2)
    ids = torch.randint(0, 150, (2, 9), generator=torch.Generator().manual_seed(3))
    labels = ids.clone()
    labels[:, :4] = -100
    loss = hf_distill_loss(student, teacher, ids, labels, "jsd", beta=0.5, n_tokens=150)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    s = student(input_ids=ids).logits[:, :-1, :150].detach()
    t = teacher(input_ids=ids).logits[:, :-1, :150].detach()
    torch.testing.assert_close(loss.detach(), generalized_jsd(s, t, 0.5, labels[:, 1:] != -100))
    with pytest.raises(ValueError, match="n_tokens"):
        hf_distill_loss(student, teacher, ids, labels, "jsd", n_tokens=170)
