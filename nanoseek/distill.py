"""Knowledge distillation: token-level losses, a chunked path, on/off-policy and sequence-level KD. (Chapter 11.)

Token-level losses compare the student's and the teacher's next-token distributions over the whole
vocabulary, at every position the mask keeps (prompt tokens and padding are excluded), and average over those
positions. With p = teacher, q = student (both softmax(logits / T)):

| kind          | per position                                         | who uses it                     |
| ------------- | ---------------------------------------------------- | ------------------------------- |
| `forward_kl`  | T² · KL(p ‖ q)  (Hinton's T² keeps gradients O(1))    | Hinton et al.; minimind          |
| `reverse_kl`  | KL(q ‖ p)                                            | MiniLLM; on-policy distillation |
| `jsd`         | β·KL(p ‖ m) + (1−β)·KL(q ‖ m), m = (1−β)q + βp       | GKD (TRL's `generalized_jsd_loss`) |
| `skew_kl`     | KL(p ‖ αp + (1−α)q)  (`reverse=True`: KL(q ‖ αq + (1−α)p)) | DistiLLM                   |

The mixture m is built in log space (logsumexp of log q + log(1−β) and log p + log β), never as a sum of
probabilities followed by a log, which underflows to log 0 at a 150k vocabulary. The interior JSD formula tends
to 0 at β → 0 and β → 1 (m becomes q or p, and the surviving term is multiplied by β or 1−β), so, as in TRL,
β = 0 and β = 1 are special cases: exactly forward KL(p ‖ q) and reverse KL(q ‖ p).

`kd_ce_loss` is minimind's mixture α·CE(hard labels) + (1−α)·T²·KL(p ‖ q).

**Chunked path**: `distill_loss(..., chunk_size=n)` computes the same loss n positions at a time, and the
gradient with respect to the student's logits inside the forward pass, so the (N, V) temporaries of
log-softmax, exp and the mixture exist for one chunk at a time; what stays is one (N, V) gradient buffer.

**Different vocabulary sizes** (`align_vocab`): Qwen2.5-0.5B/1.5B/3B have 151,936 logits and 7B+ 152,064, over
the same tokenizer (151,665 real tokens; the rest are padding rows of the embedding). The rule: the two models
must share a tokenizer; both logits are cut to the shared id range [0, min(V_s, V_t)) (or to `n_tokens`, the
tokenizer's real size, when given) and renormalised there. If `n_tokens` exceeds the smaller model's vocabulary
the tokenizers differ, token-level KD is undefined, and a ValueError says so (use sequence-level KD then).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_rkl")
IGNORE = -100


# ----------------------------------------------------------------------------------------------------------
# Vocabulary alignment
# ----------------------------------------------------------------------------------------------------------
def align_vocab(student_logits: torch.Tensor, teacher_logits: torch.Tensor, n_tokens: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut both logits (..., V_s), (..., V_t) to the shared id range [0, n) with n = n_tokens or min(V_s, V_t).

    Valid only for two models of one tokenizer (ids mean the same token); the cut columns are padding rows no
    tokenizer emits. ValueError when n_tokens is larger than either vocabulary (the tokenizers differ)."""
    vs, vt = student_logits.shape[-1], teacher_logits.shape[-1]
    n = min(vs, vt) if n_tokens is None else n_tokens
    if n_tokens is not None and (n_tokens < 1 or n_tokens > min(vs, vt)):
        raise ValueError(f"n_tokens={n_tokens} must be in 1..min(student V={vs}, teacher V={vt}); a tokenizer "
                         "larger than a model's vocabulary means different tokenizers: token-level KD is "
                         "undefined, distil sequences instead")
    if student_logits.shape[:-1] != teacher_logits.shape[:-1]:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ before the vocabulary dimension")
    return student_logits[..., :n], teacher_logits[..., :n]


# ----------------------------------------------------------------------------------------------------------
# Per-position divergences (rows of logits -> one number per row)
# ----------------------------------------------------------------------------------------------------------
def _kl_rows(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row from log-probabilities (..., V) -> (...). 0·log 0 counts as 0."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)


def log_mixture(log_q: torch.Tensor, log_p: torch.Tensor, beta: float) -> torch.Tensor:
    """log((1−β)·q + β·p) computed in log space (logsumexp), for 0 < β < 1."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"log_mixture needs 0 < beta < 1, got beta={beta!r}")
    return torch.logaddexp(log_q + math.log1p(-beta), log_p + math.log(beta))


def per_position(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str = "forward_kl", *,
                 temperature: float = 1.0, beta: float = 0.5, alpha: float = 0.1, t2: bool = True) -> torch.Tensor:
    """The divergence of `kind` at every position: logits (..., V) -> (...). See the module docstring."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be > 0")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)  # bf16 logits: divergences in fp32
    logq = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)  # student
    logp = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)  # teacher
    if kind == "forward_kl":
        return _kl_rows(logp, logq) * (temperature**2 if t2 else 1.0)
    if kind == "reverse_kl":
        return _kl_rows(logq, logp)
    if kind == "jsd":
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta={beta!r} must be in [0, 1]")
        if beta == 0.0:  # the interior formula is 0 here; GKD defines the endpoint as forward KL
            return _kl_rows(logp, logq)
        if beta == 1.0:  # ... and this one as reverse KL
            return _kl_rows(logq, logp)
        logm = log_mixture(logq, logp, beta)
        return beta * _kl_rows(logp, logm) + (1.0 - beta) * _kl_rows(logq, logm)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} must be in [0, 1) for a skewed KL")
    if kind == "skew_kl":  # KL(p ‖ αp + (1−α)q)
        return _kl_rows(logp, logq if alpha == 0 else log_mixture(logq, logp, alpha))
    return _kl_rows(logq, logp if alpha == 0 else log_mixture(logp, logq, alpha))  # KL(q ‖ αq + (1−α)p)


def _as_mask(mask: torch.Tensor | None, shape: torch.Size, device) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, device=device)
    if mask.shape != shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the logits' positions {tuple(shape)}")
    return mask.to(device=device, dtype=torch.float32)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask.to(values.dtype)).sum() / mask.sum().clamp_min(1)


class _ChunkedDivergence(torch.autograd.Function):
    """Masked mean of `per_position` over rows, computed `chunk` rows at a time. The gradient with respect to
    the student's logits is computed chunk by chunk in the forward pass and kept in one buffer; the teacher's
    logits get no gradient (a teacher is frozen)."""

    @staticmethod
    def forward(ctx, student, teacher, mask, chunk, kwargs):  # student, teacher (N, V); mask (N,)
        n_kept = mask.sum().clamp_min(1)
        grad = torch.zeros_like(student) if student.requires_grad else None
        total = torch.zeros((), dtype=torch.promote_types(student.dtype, torch.float32), device=student.device)
        for i in range(0, student.shape[0], chunk):
            m = mask[i:i + chunk]
            if not bool(m.any()):
                continue
            with torch.enable_grad():
                s = student[i:i + chunk].detach().requires_grad_(grad is not None)
                part = (per_position(s, teacher[i:i + chunk].detach(), **kwargs) * m.to(total.dtype)).sum() / n_kept
                if grad is not None:
                    grad[i:i + chunk] = torch.autograd.grad(part, s)[0]
            total += part.detach()
        ctx.save_for_backward(grad if grad is not None else torch.empty(0))
        return total

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        if not grad.numel():
            return None, None, None, None, None
        if grad_out.numel() == 1 and float(grad_out) == 1.0:  # the usual case: no second (N, V) buffer
            return grad, None, None, None, None
        return grad * grad_out.to(grad.dtype), None, None, None, None


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str = "forward_kl", *,
                 mask: torch.Tensor | None = None, temperature: float = 1.0, beta: float = 0.5, alpha: float = 0.1,
                 t2: bool = True, chunk_size: int | None = None, n_tokens: int | None = None) -> torch.Tensor:
    """Mean over the kept positions of the divergence `kind` between student and teacher logits (..., V).

    mask (...) is 1/True where a position counts (response tokens), 0/False elsewhere (prompt, padding);
    None keeps every position. Different vocabulary sizes follow `align_vocab`'s rule. chunk_size=n computes
    the same value n positions at a time, with less peak memory (`_ChunkedDivergence`)."""
    student_logits, teacher_logits = align_vocab(student_logits, teacher_logits, n_tokens)
    teacher_logits = teacher_logits.detach()
    kwargs = dict(kind=kind, temperature=temperature, beta=beta, alpha=alpha, t2=t2)
    m = _as_mask(mask, student_logits.shape[:-1], student_logits.device)
    if chunk_size is None:
        return _masked_mean(per_position(student_logits, teacher_logits, **kwargs), m)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be >= 1")
    per_position(torch.zeros(1, 2), torch.zeros(1, 2), **kwargs)  # bad settings fail here, not inside autograd
    V = student_logits.shape[-1]
    return _ChunkedDivergence.apply(student_logits.reshape(-1, V), teacher_logits.reshape(-1, V), m.reshape(-1),
                                    chunk_size, kwargs)


def forward_kl(student_logits, teacher_logits, mask=None, temperature: float = 1.0, t2: bool = True,
               chunk_size: int | None = None) -> torch.Tensor:
    """T² · KL(teacher ‖ student), the classic (Hinton) distillation loss; mean over kept positions."""
    return distill_loss(student_logits, teacher_logits, "forward_kl", mask=mask, temperature=temperature, t2=t2,
                        chunk_size=chunk_size)


def reverse_kl(student_logits, teacher_logits, mask=None, temperature: float = 1.0,
               chunk_size: int | None = None) -> torch.Tensor:
    """KL(student ‖ teacher): mode-seeking; mean over kept positions."""
    return distill_loss(student_logits, teacher_logits, "reverse_kl", mask=mask, temperature=temperature,
                        chunk_size=chunk_size)


def generalized_jsd(student_logits, teacher_logits, beta: float = 0.5, mask=None, temperature: float = 1.0,
                    chunk_size: int | None = None) -> torch.Tensor:
    """GKD's generalized JSD with TRL's β: m = (1−β)·student + β·teacher; β=0 forward KL, β=1 reverse KL."""
    return distill_loss(student_logits, teacher_logits, "jsd", mask=mask, temperature=temperature, beta=beta,
                        chunk_size=chunk_size)


def skewed_kl(student_logits, teacher_logits, alpha: float = 0.1, reverse: bool = False, mask=None,
              temperature: float = 1.0, chunk_size: int | None = None) -> torch.Tensor:
    """DistiLLM's skewed KL: KL(p ‖ αp + (1−α)q), or with reverse=True KL(q ‖ αq + (1−α)p)."""
    return distill_loss(student_logits, teacher_logits, "skew_rkl" if reverse else "skew_kl", mask=mask,
                        temperature=temperature, alpha=alpha, chunk_size=chunk_size)


def kd_ce_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
               alpha: float = 0.5, temperature: float = 1.0, chunk_size: int | None = None) -> torch.Tensor:
    """minimind's α·CE(student, hard targets) + (1−α)·T²·KL(teacher ‖ student), both over positions whose
    target is not -100."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} must be in [0, 1]")
    V = student_logits.shape[-1]
    wide = student_logits.to(torch.promote_types(student_logits.dtype, torch.float32))  # fp64 stays fp64
    ce = F.cross_entropy(wide.reshape(-1, V), targets.reshape(-1), ignore_index=IGNORE)
    if alpha == 1.0:
        return ce
    kd = forward_kl(student_logits, teacher_logits, targets != IGNORE, temperature, True, chunk_size)
    return alpha * ce + (1.0 - alpha) * kd


# ----------------------------------------------------------------------------------------------------------
# Training on the book's one loop (`nanoseek.train.train`)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class KDConfig:
    """What a distillation `loss_fn` computes: `ce_weight`·CE + (1 − `ce_weight`)·divergence `kind`.
    ce_weight=1 is plain hard-label training (the teacher is not run)."""

    kind: str = "forward_kl"
    temperature: float = 1.0
    beta: float = 0.5      # jsd
    alpha: float = 0.1     # skewed KLs
    ce_weight: float = 0.0
    chunk_size: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"KDConfig.kind={self.kind!r} is not one of {KINDS}")
        if not 0.0 <= self.ce_weight <= 1.0:
            raise ValueError(f"KDConfig.ce_weight={self.ce_weight!r} must be in [0, 1]")
        if not self.temperature > 0:
            raise ValueError(f"KDConfig.temperature={self.temperature!r} must be > 0")


def _logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    out = model(idx)
    if isinstance(out, tuple):
        return out[0]
    return out.logits if hasattr(out, "logits") else out


def _kd_terms(model, teacher, x, y, mask, cfg: KDConfig):
    logits = _logits(model, x)  # (B, T, V)
    metrics = {}
    loss = logits.new_zeros((), dtype=torch.float32)
    if cfg.ce_weight > 0 and y is not None:
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        loss = loss + cfg.ce_weight * ce
        metrics["ce"] = float(ce.detach())
    if cfg.ce_weight < 1:
        with torch.no_grad():
            t_logits = _logits(teacher, x)
        kd = distill_loss(logits, t_logits, cfg.kind, mask=mask, temperature=cfg.temperature, beta=cfg.beta,
                          alpha=cfg.alpha, chunk_size=cfg.chunk_size)
        loss = loss + (1 - cfg.ce_weight) * kd
        metrics["kd"] = float(kd.detach())
    return loss, metrics


def kd_loss_fn(teacher: nn.Module, cfg: KDConfig) -> Callable:
    """Off-policy distillation: `loss_fn(model, batch)` for `nanoseek.train.train`, batch (x, y, ...): the
    divergence on the positions whose target y is not -100 (the teacher scores the data's own tokens)."""
    teacher.eval().requires_grad_(False)

    def loss_fn(model, batch):
        x, y = batch[0], batch[1]
        return _kd_terms(model, teacher, x, y, y != IGNORE, cfg)

    return loss_fn


def gkd_batcher(get_batch: Callable, lam: float) -> Callable:
    """Wrap a get_batch: each training batch gets a flag (1,) drawn from the step's generator, 1 with
    probability λ (GKD's `lmbda`: that batch is replaced by the student's own samples); validation never."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam={lam!r} must be in [0, 1]")

    def wrapped(split: str, generator: torch.Generator):
        batch = get_batch(split, generator)
        on = (torch.rand((), generator=generator) < lam) if split == "train" else torch.tensor(False)
        return (*batch, on.reshape(1))

    return wrapped


def student_samples(model: nn.Module, prompt: torch.Tensor, max_new_tokens: int, eos_id: int | None = None,
                    pad_id: int = 0, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample continuations of `prompt` (B, P) from the student (no gradient) and return the teacher-forcing
    input (B, P+T-1) and the mask (B, P+T-1) of the positions that predict a sampled token (chapter 10's
    `sample`; randomness from torch's global generator, which `train` seeds at every step)."""
    from nanoseek.rl.rollout import sample

    response, rmask, _ = sample(model, prompt, max_new_tokens, -1 if eos_id is None else eos_id, pad_id,
                                temperature)
    P = prompt.shape[1]
    idx = torch.cat([prompt, response], dim=1)[:, :-1]  # (B, P+T-1)
    mask = torch.zeros(idx.shape, device=idx.device)
    mask[:, P - 1:] = rmask
    return idx, mask


def gkd_loss_fn(teacher: nn.Module, cfg: KDConfig, prompt_len: int, max_new_tokens: int, eos_id: int | None = None,
                pad_id: int = 0, sample_temperature: float = 1.0) -> Callable:
    """On-policy distillation (GKD): with a batch from `gkd_batcher`, a flagged batch keeps the first
    `prompt_len` tokens of x, the student continues them, and the divergence is taken on the student's own
    tokens; an unflagged batch is off-policy (as `kd_loss_fn`). λ = 1 is fully on-policy."""
    teacher.eval().requires_grad_(False)

    def loss_fn(model, batch):
        x, y, on = batch[0], batch[1], batch[-1]
        if bool(on.any()):
            idx, mask = student_samples(model, x[:, :prompt_len], max_new_tokens, eos_id, pad_id,
                                        sample_temperature)
            loss, metrics = _kd_terms(model, teacher, idx, None, mask, cfg)
            return loss, {**metrics, "on_policy": 1.0}
        loss, metrics = _kd_terms(model, teacher, x, y, y != IGNORE, cfg)
        return loss, {**metrics, "on_policy": 0.0}

    return loss_fn


# ----------------------------------------------------------------------------------------------------------
# Sequence-level distillation: rejection sampling with a verifier, then SFT
# ----------------------------------------------------------------------------------------------------------
def keep_verified(samples: Sequence[dict], verifier: Callable[[str, dict], float], per_row: int | None = None
                  ) -> list[dict]:
    """The rejection-sampling filter: keep samples {"text", "row", ...} whose `verifier(text, row)` is 1
    (exactly; a partial score is a reject), at most `per_row` distinct texts per problem, in input order."""
    kept, seen, count = [], set(), {}
    for s in samples:
        key = s["row"].get("key", s["row"].get("prompt"))
        if (key, s["text"]) in seen or (per_row is not None and count.get(key, 0) >= per_row):
            continue
        if float(verifier(s["text"], s["row"])) == 1.0:
            kept.append(s)
            seen.add((key, s["text"]))
            count[key] = count.get(key, 0) + 1
    return kept


@torch.no_grad()
def teacher_traces(teacher: nn.Module, task, rows: Sequence[dict], samples_per_row: int, max_new_tokens: int,
                   temperature: float = 1.0, seed: int = 0) -> list[dict]:
    """Sample `samples_per_row` responses of the teacher to each row (chapter 10's `rollout`); each sample is
    {"row", "text", "prompt_ids", "response_ids"} (response ids up to and including the end token)."""
    from nanoseek.rl.rollout import rollout

    gen = torch.Generator(device=next(teacher.parameters()).device).manual_seed(seed)
    out = []
    for ro in rollout(teacher, list(rows), task.prompt_fn, task.encode, task.decode, samples_per_row,
                      max_new_tokens, task.eos_id, task.pad_id, None, temperature, None, gen):
        for b in range(ro.response.shape[0]):
            n = int(ro.mask[b].sum())
            out.append({"row": ro.rows[b], "text": ro.texts[b], "prompt_ids": ro.prompt[b].tolist(),
                        "response_ids": ro.response[b, :n].tolist()})
    return out


def sft_tensors(samples: Sequence[dict], pad_id: int, block_size: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """X, Y (N, block) for SFT on kept traces with chapter 3's `to_xy`: loss only on the response tokens."""
    from nanoseek.data.chat import to_xy

    if not samples:
        raise ValueError("sft_tensors needs at least one sample (did the filter reject everything?)")
    seqs = [(s["prompt_ids"] + s["response_ids"], len(s["prompt_ids"])) for s in samples]
    block = block_size or max(len(ids) for ids, _ in seqs) - 1
    xs, ys = [], []
    for ids, p in seqs:
        x, y = to_xy(ids, [False] * p + [True] * (len(ids) - p), block, pad_id)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def row_batcher(X: torch.Tensor, Y: torch.Tensor, batch_size: int, val: tuple | None = None) -> Callable:
    """get_batch(split, generator) drawing `batch_size` random rows of (X, Y) (val: another (X, Y))."""
    data = {"train": (X, Y), "val": val or (X, Y)}

    def get_batch(split: str, gen: torch.Generator):
        x, y = data[split]
        ix = torch.randint(0, len(x), (batch_size,), generator=gen)
        return x[ix], y[ix]

    return get_batch


# ----------------------------------------------------------------------------------------------------------
# In the wild: a real Qwen2.5 teacher and student through transformers (Colab GPU); tested on tiny random ones
# ----------------------------------------------------------------------------------------------------------
def load_hf_pair(teacher_name: str, student_name: str, device: str | torch.device = "cuda",
                 dtype: torch.dtype = torch.bfloat16):
    """(teacher, student, tokenizer) from the hub, e.g. Qwen/Qwen2.5-1.5B-Instruct and Qwen/Qwen2.5-0.5B-Instruct
    (both 151,936 logits; a 7B teacher has 152,064: `align_vocab` handles it). Needs a download: Colab only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(student_name)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_name, dtype=dtype, use_safetensors=True).to(device)
    student = AutoModelForCausalLM.from_pretrained(student_name, dtype=dtype, use_safetensors=True).to(device)
    return teacher.eval().requires_grad_(False), student, tok


def hf_distill_loss(student, teacher, input_ids: torch.Tensor, labels: torch.Tensor, kind: str = "jsd",
                    attention_mask: torch.Tensor | None = None, n_tokens: int | None = None, **kwargs) -> torch.Tensor:
    """The package's loss on two transformers causal LMs: logits at position t predict token t+1, so the
    mask is labels[:, 1:] != -100 on logits[:, :-1] (transformers' own shift)."""
    attn = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    s = student(input_ids=input_ids, attention_mask=attn).logits[:, :-1]
    with torch.no_grad():
        t = teacher(input_ids=input_ids, attention_mask=attn).logits[:, :-1]
    return distill_loss(s, t, kind, mask=labels[:, 1:] != IGNORE, n_tokens=n_tokens, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Chapter 11's experiments: the notebook and benchmarks/distill_*.py run these same functions
# ----------------------------------------------------------------------------------------------------------
def story_batcher(block_size: int, batch_size: int):
    """(CharVocab, get_batch) over minids' English stories: chapter 1's character-level windows."""
    from nanoseek.data import CharVocab, load_stories, window_batcher

    train_text, val_text = load_stories("en", "train"), load_stories("en", "val")
    vocab = CharVocab.from_text(train_text + val_text)
    get_batch = window_batcher(torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text)),
                               block_size, batch_size)
    return vocab, get_batch


def text_kd_run(teacher: nn.Module, get_batch: Callable, student_config, kd: KDConfig, steps: int, lr: float,
                seed: int, eval_batches: int = 10, device: str | None = None) -> tuple[nn.Module, float]:
    """Train a fresh student (init from `seed`) for `steps` steps with `kd` (ce_weight=1: hard labels) and
    return it with its validation cross-entropy on the data (the same fixed batches for every variant)."""
    from nanoseek.models.decoder import Decoder
    from nanoseek.train import TrainConfig, evaluate, train

    torch.manual_seed(seed)
    student = Decoder(student_config)
    loss_fn = kd_loss_fn(teacher, kd)
    train(student, get_batch, TrainConfig(max_steps=steps, lr=lr, warmup_steps=max(1, steps // 10), seed=seed,
                                          eval_every=steps, eval_batches=1, progress=False, device=device),
          loss_fn=loss_fn)
    return student, evaluate(student, get_batch, eval_batches)


def addition_sft(model: nn.Module, vocab, digits: int, rows: int, p_careful: float, steps: int, batch_size: int,
                 lr: float, seed: int = 0, device: str | None = None):
    """Chapter 10's warm-up: SFT on a mix of careful and sloppy (never-carrying) addition demonstrations."""
    from minids.reasoning import arithmetic
    from nanoseek.rl.tasks import sft_examples
    from nanoseek.train import TrainConfig, train

    seqs, plens = sft_examples(arithmetic("train", rows, seed, digits=digits), vocab, p_careful, seed=seed)
    X, Y = sft_tensors([{"prompt_ids": q[:p], "response_ids": q[p:]} for q, p in zip(seqs, plens)], vocab.pad_id)
    return train(model, row_batcher(X, Y, batch_size), TrainConfig(
        max_steps=steps, lr=lr, warmup_steps=20, weight_decay=0.0, eval_every=steps, eval_batches=1, seed=seed,
        progress=False, device=device))


def grpo_student_flops(hist, n_params: int, prompt_len: int, rl_cfg) -> float:
    """Student FLOPs of a GRPO run, counted as 2·N per token for a forward pass and 6·N for forward+backward:
    per token of every sampled sequence, 2 (sampling) + 2 (old log-probs) + 2 (reference, when β > 0) +
    6 per inner epoch (the updates)."""
    per_token = 2 + 2 + (2 if rl_cfg.beta else 0) + 6 * rl_cfg.inner_epochs
    seqs = rl_cfg.prompts_per_step * rl_cfg.group_size
    tokens = sum(hist.metrics["tokens"]) + seqs * prompt_len * len(hist.step)
    return per_token * n_params * tokens


def story_teacher(cfg: dict):
    """(teacher, vocab, get_batch): the chapter's text teacher, trained once on the stories and cached in the
    zoo. cfg: block, batch, teacher (DecoderConfig fields), teacher_steps, teacher_lr."""
    from nanoseek.models.decoder import Decoder, DecoderConfig
    from nanoseek.train import TrainConfig, train
    from nanoseek.zoo import load_or_train

    vocab, get_batch = story_batcher(cfg["block"], cfg["batch"])

    def build():
        torch.manual_seed(0)
        return Decoder(DecoderConfig(vocab_size=len(vocab), max_seq_len=cfg["block"], **cfg["teacher"]))

    def fit(model):
        r = train(model, get_batch, TrainConfig(max_steps=cfg["teacher_steps"], lr=cfg["teacher_lr"],
                                                warmup_steps=30, eval_every=cfg["teacher_steps"], eval_batches=10,
                                                progress=False))
        return {"val_loss": r.val_loss, "seconds": r.seconds}

    tag = "-".join(f"{k}{v}" for k, v in sorted(cfg["teacher"].items())) + f"-s{cfg['teacher_steps']}"
    teacher, info = load_or_train(f"ch11-story-teacher-{tag}", build, fit, version="1")
    return teacher, vocab, get_batch, info


def r1_models(cfg: dict):
    """(teacher, base student, task, test_rows, info): chapter 10's recipe for the teacher (sloppy SFT warm-up,
    then GRPO), and the same warm-up for the smaller student; both cached in the zoo. cfg: digits, eval_n,
    teacher/student (DecoderConfig fields), sft (chapter 10's warm-up settings), rl (RLConfig fields)."""
    from minids.reasoning import arithmetic
    from nanoseek.models.decoder import Decoder, DecoderConfig
    from nanoseek.rl.tasks import ADDITION_ALPHABET, addition_task
    from nanoseek.rl.trainer import RLConfig, evaluate, train_rl
    from nanoseek.rl.vocab import TaskVocab
    from nanoseek.zoo import load_or_train

    vocab = TaskVocab(ADDITION_ALPHABET)
    task = addition_task(vocab, digits=cfg["digits"])
    test_rows = arithmetic("test", cfg["eval_n"], 0, digits=cfg["digits"])
    sft = cfg["sft"]

    def builder(model_cfg):
        def build():
            torch.manual_seed(0)
            return Decoder(DecoderConfig(vocab_size=len(vocab), **model_cfg))
        return build

    def fit_teacher(model):
        addition_sft(model, vocab, cfg["digits"], sft["rows"], sft["p_careful"], sft["steps"], sft["batch_size"],
                     sft["lr"])
        model.to(next(model.parameters()).device)
        before = evaluate(model, test_rows, task, cfg["rl"]["max_new_tokens"])["accuracy"]
        train_rl(model, task, RLConfig(**{**cfg["rl"], "seed": 0, "eval_every": cfg["rl"]["steps"]}), progress=False)
        return {"sft_accuracy": before}

    def fit_student(model):
        addition_sft(model, vocab, cfg["digits"], sft["rows"], sft["p_careful"], sft["steps"], sft["batch_size"],
                     sft["lr"])
        return {}

    d = cfg["digits"]
    teacher, info = load_or_train(f"ch11-r1-teacher-{d}d", builder(cfg["teacher"]), fit_teacher, version="1")
    student, _ = load_or_train(f"ch11-r1-student-sft-{d}d", builder(cfg["student"]), fit_student, version="1")
    return teacher, student, task, test_rows, info


def r1_compare(teacher: nn.Module, base: nn.Module, task, test_rows: Sequence[dict], *, rl: dict, traces: dict,
               distill_lr: float, batch_size: int, seed: int, digits: int, progress: bool = False) -> dict:
    """The R1 finding at toy scale: from the same starting student `base`, (1) GRPO with chapter 10's settings
    `rl`, (2) SFT on the teacher's verified traces (rejection sampling), (3) on-policy distillation (the
    student samples, the teacher's reverse KL on every token), (2) and (3) given the student FLOPs that (1)
    used. Returns held-out greedy accuracies, the steps and the FLOPs (student and teacher) of each."""
    import copy

    from minids.reasoning import arithmetic
    from nanoseek.rl.trainer import RLConfig, evaluate, train_rl
    from nanoseek.train import TrainConfig, train

    max_new = rl["max_new_tokens"]
    n_s, n_t = sum(p.numel() for p in base.parameters()), sum(p.numel() for p in teacher.parameters())
    acc = lambda m: evaluate(m, list(test_rows), task, max_new)["accuracy"]  # noqa: E731
    out = {"student_params": n_s, "teacher_params": n_t, "base": acc(base), "teacher": acc(teacher)}
    P = len(task.encode(task.prompt_fn(test_rows[0])))

    grpo = copy.deepcopy(base)
    rl_cfg = RLConfig(**{**rl, "seed": seed, "eval_every": rl["steps"]})
    hist = train_rl(grpo, task, rl_cfg, progress=progress)
    budget = grpo_student_flops(hist, n_s, P, rl_cfg)
    out.update(grpo=acc(grpo), grpo_steps=rl["steps"], grpo_flops=budget)

    samples = teacher_traces(teacher, task, arithmetic("train", traces["rows"], 1000 + seed, digits=digits),
                             traces["samples"], max_new, traces["temperature"], seed)
    kept = keep_verified(samples, task.accuracy_fn, per_row=1)
    X, Y = sft_tensors(kept, task.pad_id)
    sft_steps = max(1, round(budget / (6 * n_s * batch_size * X.shape[1])))
    sft = copy.deepcopy(base)
    train(sft, row_batcher(X, Y, batch_size), TrainConfig(max_steps=sft_steps, lr=distill_lr, warmup_steps=10,
                                                          weight_decay=0.0, eval_every=sft_steps, eval_batches=1,
                                                          seed=seed, progress=progress))
    out.update(sft=acc(sft), sft_steps=sft_steps, sft_flops=6 * n_s * batch_size * X.shape[1] * sft_steps,
               traces=len(samples), kept=len(kept),
               trace_teacher_flops=2 * n_t * sum(len(s["prompt_ids"]) + len(s["response_ids"]) for s in samples))

    prompts = torch.tensor([task.encode(task.prompt_fn(r))
                            for r in arithmetic("train", traces["rows"], 2000 + seed, digits=digits)])
    L = P + max_new
    on_steps = max(1, round(budget / ((2 + 6) * n_s * batch_size * L)))
    onp = copy.deepcopy(base)
    train(onp, gkd_batcher(row_batcher(prompts, torch.full_like(prompts, IGNORE), batch_size), 1.0),
          TrainConfig(max_steps=on_steps, lr=distill_lr, warmup_steps=10, weight_decay=0.0, eval_every=on_steps,
                      eval_batches=1, seed=seed, progress=progress),
          loss_fn=gkd_loss_fn(teacher, KDConfig(kind="reverse_kl"), P, max_new, task.eos_id, task.pad_id))
    out.update(on_policy=acc(onp), on_policy_steps=on_steps, on_policy_flops=8 * n_s * batch_size * L * on_steps,
               on_policy_teacher_flops=2 * n_t * batch_size * L * on_steps)
    out["models"] = {"grpo": grpo, "sft": sft, "on_policy": onp}
    return out


__all__ = ["KINDS", "align_vocab", "log_mixture", "per_position", "distill_loss", "forward_kl", "reverse_kl",
           "generalized_jsd", "skewed_kl", "kd_ce_loss", "KDConfig", "kd_loss_fn", "gkd_batcher",
           "student_samples", "gkd_loss_fn", "keep_verified", "teacher_traces", "sft_tensors", "row_batcher",
           "load_hf_pair", "hf_distill_loss", "story_batcher", "text_kd_run",
           "addition_sft", "grpo_student_flops", "r1_compare", "story_teacher", "r1_models"]
