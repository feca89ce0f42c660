"""Autoregressive generation: sampling rules and KV-cache incremental decoding. (Chapter 4.)

`generate` works with every model of the book that follows ``logits, loss = model(idx)``:

- models with ``new_cache`` (the chapter-4 `Decoder` and its descendants) run one **prefill** pass over the
  prompt, then feed one token per step while each layer's cache keeps the keys and values of the past;
- models without it (the chapter-1 GPT) recompute the whole sequence every step, cropped to the context.

Chapter 7 adds `generate_speculative_mtp`: greedy decoding where the model's own multi-token-prediction
modules draft the next tokens and the main model verifies them in one forward, rolling its KV cache back on a
rejection; the output is exactly greedy `generate`'s. `generate_speculative_mtp_sample` samples instead, with
the speculative-sampling acceptance rule `speculative_accept` (min(1, p/q), else the normalized residual), so its
output has exactly plain sampling's distribution.

Sampling: ``temperature == 0`` is greedy (argmax); otherwise logits / temperature, then optional top-k and
top-p (nucleus) filtering, then a draw from ``generator`` (so runs are repeatable).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from nanoseek import validate as V


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model accepts: config.max_seq_len (Decoder) or config.block_size (GPT)."""
    cfg = getattr(model, "config", None)
    for name in ("max_seq_len", "block_size"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    return None


def vocab_size(model: nn.Module) -> int | None:
    """The number of token ids the model embeds: config.vocab_size (every model of the book), else the size
    of its input embedding; None when neither is known."""
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    if V.is_int(value):
        return int(value)
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    return getattr(emb, "num_embeddings", None)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """The sampling rule as logits (B, V): divide by temperature, then set tokens outside the top-k and
    outside the top-p nucleus to -inf. Its softmax is the distribution a token is drawn from (RL rollouts
    also read their log-probs from it)."""
    V.positive(temperature, "temperature")
    logits = logits.float() / temperature
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]                   # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p (the first token always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of probs (B, V), as (B, 1)."""
    if generator is not None and generator.device != probs.device:
        # a CPU generator driving a GPU model: draw on the generator's device, so seeded runs stay repeatable
        return torch.multinomial(probs.to(generator.device), num_samples=1, generator=generator).to(probs.device)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token from logits (B, V): greedy when temperature == 0, else sample. Returns (B, 1) ids."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    return draw(filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1), generator)


def _check_args(idx, max_new_tokens, temperature, top_k, top_p, model: nn.Module | None = None,
                eos_id: int | None = None) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.long, torch.int):
        raise ValueError(f"idx must be a (B, T) integer tensor, got "
                         f"{getattr(idx, 'shape', type(idx))} {getattr(idx, 'dtype', '')}")
    if idx.shape[1] < 1:
        raise ValueError(f"idx needs at least one prompt token, got shape {tuple(idx.shape)}")
    V.integer(max_new_tokens, "max_new_tokens", minimum=0)
    V.number(temperature, "temperature", minimum=0)
    V.integer(top_k, "top_k", minimum=1, optional=True)
    V.probability(top_p, "top_p", min_open=True, optional=True)
    if model is not None:  # an id outside the vocabulary: a clear error, not an IndexError in the embedding
        n = vocab_size(model)
        V.check_token_tensor(idx, n, "idx")
        if eos_id is not None:
            V.integer(eos_id, "eos_id", minimum=0, maximum=None if n is None else n - 1)


@torch.no_grad()
def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True,
             cuda_graph: bool = False) -> torch.Tensor:
    """Extend idx (B, T) by up to max_new_tokens tokens; returns (B, T + n).

    A row that has produced `eos_id` keeps producing `eos_id` (padding); generation stops early once every
    row has. The model runs in eval mode for the call and gets its previous mode back.

    ``cuda_graph=True`` (models whose caches support `make_static`): after the prefill, every decoding step
    runs with the position in a device tensor and fixed shapes, captured once as a CUDA graph and replayed,
    which removes the per-step Python and kernel-launch overhead. On a CPU the same static steps run eagerly.
    """
    _check_args(idx, max_new_tokens, temperature, top_k, top_p, model=model, eos_id=eos_id)
    param = next(model.parameters(), None)
    if param is not None:
        idx = idx.to(param.device)  # a prompt built on the CPU follows the model to its device
    was_training = model.training
    model.eval()
    try:
        ctx = context_length(model)
        B, T = idx.shape
        cached = use_cache and hasattr(model, "new_cache")
        cache = None
        if cached:
            fed = T + max(max_new_tokens - 1, 0)  # the last sampled token is never fed back
            if ctx is not None and fed > ctx:
                raise ValueError(f"prompt {T} + max_new_tokens {max_new_tokens} needs {fed} positions, more than "
                                 f"the context length {ctx}; shorten it or pass use_cache=False to crop")
            cache = model.new_cache(B, fed)
        finished = torch.zeros(B, 1, dtype=torch.bool, device=idx.device)
        out = idx
        step_input = idx
        step = None
        if cached and cuda_graph and max_new_tokens > 1:
            logits, _ = model(idx, cache=cache)  # prefill as usual, then static one-token steps
            step = _static_step(model, cache, B, T, idx.device)
        for i in range(max_new_tokens):
            if step is not None:
                if i > 0:
                    logits = step(step_input)                                    # (B, 1, V)
            elif cached:
                logits, _ = model(step_input, cache=cache)                        # (B, t, V)
            else:
                cond = out if ctx is None else out[:, -ctx:]
                logits, _ = model(cond)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator).to(idx.dtype)  # (B, 1)
            if eos_id is not None:
                nxt = nxt.masked_fill(finished, eos_id)
                finished = finished | (nxt == eos_id)
            out = torch.cat((out, nxt), dim=1)
            step_input = nxt
            if eos_id is not None and bool(finished.all()):
                break
        return out
    finally:
        model.train(was_training)


def _static_step(model: nn.Module, cache: list, batch_size: int, start: int, device: torch.device):
    """A function token (B, 1) -> logits (B, 1, V) that decodes at positions start, start+1, ... with fixed
    shapes; on CUDA it is one captured graph replayed per call."""
    if not all(hasattr(c, "make_static") for c in cache):
        raise ValueError(f"cuda_graph=True needs caches with make_static; {type(cache[0]).__name__} has none")
    pos = torch.full((1,), start, dtype=torch.long, device=device)
    for c in cache:
        c.make_static(pos)
    static_in = torch.zeros(batch_size, 1, dtype=torch.long, device=device)

    def run() -> torch.Tensor:
        return model(static_in, cache=cache)[0]

    if device.type != "cuda":
        def step(tok: torch.Tensor) -> torch.Tensor:
            static_in.copy_(tok)
            logits = run()
            pos.add_(1)
            return logits
        return step

    # warm up on a side stream (builds rope tables, picks kernels); its writes at `pos` are overwritten later,
    # because every step writes its own k, v at pos before attending
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            static_logits = run()
    except RuntimeError as err:  # an op that cannot be captured: keep the static steps, run them eagerly
        warnings.warn(f"CUDA graph capture failed ({err}); decoding with eager static steps")
        torch.cuda.synchronize()

        def eager_step(tok: torch.Tensor) -> torch.Tensor:
            static_in.copy_(tok)
            logits = run()
            pos.add_(1)
            return logits
        return eager_step

    def step(tok: torch.Tensor) -> torch.Tensor:
        static_in.copy_(tok)
        graph.replay()
        pos.add_(1)
        return static_logits
    return step


# ---- chapter 7: self-speculative decoding with the MTP modules -------------------------------------------

@dataclass
class SpeculativeStats:
    """What one `generate_speculative_mtp` call measured.

    `main_forwards` counts every forward pass of the main model, the prefill included, so plain greedy
    decoding of n tokens is n forwards and `tokens_per_forward` is 1.0 for it. `drafted[k-1]` counts how often
    the draft of depth k was checked (every earlier draft of its round having been accepted) and
    `accepted[k-1]` how often it matched the main model's own greedy choice.
    """

    new_tokens: int = 0
    main_forwards: int = 0
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    seconds: float = 0.0
    rounds: list[tuple[int, list[int], int]] = field(default_factory=list)  # (N, drafts, accepted) per round

    @property
    def tokens_per_forward(self) -> float:
        return self.new_tokens / self.main_forwards if self.main_forwards else float("nan")

    @property
    def acceptance_rate(self) -> float:
        """Acceptance of the first drafted token (depth 1): the paper's 'second token' acceptance."""
        return self.accepted[0] / self.drafted[0] if self.drafted and self.drafted[0] else float("nan")

    def acceptance_by_depth(self) -> list[float]:
        """Per depth k: accepted / checked, the acceptance of draft k given drafts 1..k-1 were accepted."""
        return [a / d if d else float("nan") for a, d in zip(self.accepted, self.drafted)]

    def merge(self, other: "SpeculativeStats") -> "SpeculativeStats":
        """The totals of two runs (sums of counts and seconds), for rates over many prompts."""
        n = max(len(self.drafted), len(other.drafted))
        pad = lambda xs: list(xs) + [0] * (n - len(xs))  # noqa: E731
        return SpeculativeStats(
            self.new_tokens + other.new_tokens, self.main_forwards + other.main_forwards,
            [a + b for a, b in zip(pad(self.drafted), pad(other.drafted))],
            [a + b for a, b in zip(pad(self.accepted), pad(other.accepted))], self.seconds + other.seconds)


def _rollback(cache, pos: int) -> None:
    """Forget every cached position >= pos (the buffers stay; later writes overwrite them)."""
    if not hasattr(cache, "pos"):
        raise TypeError(f"speculative decoding needs caches with a `pos` counter, got {type(cache).__name__}")
    if not 0 <= pos <= cache.pos:
        raise ValueError(f"cannot roll a cache at pos={cache.pos} back to pos={pos}")
    cache.pos = pos


def speculative_accept(p: torch.Tensor, q: torch.Tensor, drafts: list[int],
                       generator: torch.Generator | None = None) -> tuple[int, int]:
    """The acceptance rule of speculative *sampling* (Leviathan et al., 2023; Chen et al., 2023). (Chapter 7.)

    p (m+1, V): the main model's sampling distribution at the m+1 verified positions; q (m, V): the draft
    distributions the m drafts were drawn from; drafts: the m draft tokens. Draft j is accepted with
    probability min(1, p_j(d_j) / q_j(d_j)); at the first rejection the token is drawn from the residual
    max(0, p_j − q_j), normalized, and the round ends; if every draft is accepted, one more token is drawn
    from p_m. Returns (a, token): a accepted drafts, then the token that follows them. Whatever q is, every
    committed token is distributed exactly as plain sampling from p would draw it.
    """
    p, q = p.detach().float().cpu(), q.detach().float().cpu()
    if p.dim() != 2 or q.dim() != 2 or p.shape[0] != len(drafts) + 1 or q.shape != (len(drafts), p.shape[1]):
        raise ValueError(f"need p (m+1, V) and q (m, V) for m={len(drafts)} drafts, got p {tuple(p.shape)}, "
                         f"q {tuple(q.shape)}")
    for j, d in enumerate(drafts):
        u = torch.rand((), generator=generator)
        if u * q[j, d] < p[j, d]:  # u < p/q: accepted with probability min(1, p/q)
            continue
        residual = (p[j] - q[j]).clamp_min(0)  # (V,) where the main model wants more mass than the draft gave
        total = residual.sum()
        return j, int(draw((residual / total if total > 0 else p[j])[None], generator))
    return len(drafts), int(draw(p[-1:], generator))


@torch.no_grad()
def generate_speculative_mtp(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, n_draft: int | None = None,
                             eos_id: int | None = None) -> tuple[torch.Tensor, SpeculativeStats]:
    """Greedy decoding where the model's own MTP modules draft and the main model verifies. (Chapter 7.)

    idx (1, T) -> (1, T + n) with exactly the tokens greedy `generate` gives, and the stats of the run.

    Each round: the main model reads the pending token t_{N-1} and the drafts d_1..d_m in one forward
    (positions N-1..N-1+m, KV cache on); its greedy choices g_0..g_m are what plain greedy decoding would
    say at those positions. Drafts are accepted while d_j == g_{j-1}; with a accepted, the round commits
    d_1..d_a and g_a (a + 1 tokens for one forward) and rolls the main cache back to the committed tokens.
    Then MTP depth k (k = 1..m), at position N-2 of the new length, reads h^{k-1} and the embedding of
    t_{N-2+k} (a draft itself for k >= 2) and drafts t_{N-1+k}. Each depth keeps a KV cache of its block;
    positions whose input token is still a draft are rolled back after drafting and recomputed next round.
    `generate_speculative_mtp_sample` is the same loop with sampling and `speculative_accept`.
    """
    return _speculative_mtp(model, idx, max_new_tokens, n_draft, eos_id)


@torch.no_grad()
def generate_speculative_mtp_sample(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                                    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                                    n_draft: int | None = None, eos_id: int | None = None,
                                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, SpeculativeStats]:
    """Speculative *sampling* with the MTP modules as the draft model. (Chapter 7.)

    The loop of `generate_speculative_mtp`, but depth k *samples* its draft from its own distribution q_k
    (the same temperature / top-k / top-p rule as `generate`), and the main model's verification applies
    `speculative_accept`: the output is distributed exactly as `generate(model, idx, ..., temperature, top_k,
    top_p)`'s, token for token, while a round still commits 1 + (accepted drafts) tokens per main forward.
    `stats.accepted[k-1] / stats.drafted[k-1]` is the acceptance rate of depth k under this rule.
    """
    if not temperature > 0:
        raise ValueError(f"generate_speculative_mtp_sample samples: temperature must be > 0, got {temperature!r}; "
                         f"use generate_speculative_mtp for greedy decoding")
    return _speculative_mtp(model, idx, max_new_tokens, n_draft, eos_id,
                            sampling=dict(temperature=temperature, top_k=top_k, top_p=top_p), generator=generator)


def _speculative_mtp(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, n_draft: int | None,
                     eos_id: int | None, sampling: dict | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, SpeculativeStats]:
    """The loop of both: greedy when `sampling` is None, else sampling with `speculative_accept`."""
    if sampling is None:
        _check_args(idx, max_new_tokens, 0.0, None, None, model=model, eos_id=eos_id)
    else:
        _check_args(idx, max_new_tokens, sampling["temperature"], sampling["top_k"], sampling["top_p"],
                    model=model, eos_id=eos_id)

    def probs(logits: torch.Tensor) -> torch.Tensor:  # (n, V) logits -> (n, V) sampling distribution
        return filter_logits(logits, **sampling).softmax(dim=-1)

    mtp = getattr(model, "mtp", None)
    if mtp is None:
        depth = getattr(getattr(model, "config", None), "mtp_depth", None)
        raise ValueError(f"generate_speculative_mtp needs a model with MTP modules, got mtp_depth={depth!r}")
    if idx.shape[0] != 1:
        raise ValueError(f"generate_speculative_mtp decodes one sequence, got batch size {idx.shape[0]}")
    K = mtp.depth if n_draft is None else n_draft
    if isinstance(K, bool) or not isinstance(K, int) or not 1 <= K <= mtp.depth:
        raise ValueError(f"n_draft must be an integer in 1..mtp_depth={mtp.depth}, got n_draft={n_draft!r}")
    stats = SpeculativeStats(drafted=[0] * K, accepted=[0] * K)
    if max_new_tokens == 0:
        return idx, stats
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        P = idx.shape[1]
        max_len = P + max_new_tokens - 1  # positions the main model reads, as in `generate`
        ctx = context_length(model)
        if ctx is not None and max_len > ctx:
            raise ValueError(f"prompt {P} + max_new_tokens {max_new_tokens} needs {max_len} positions, more than "
                             f"the context length {ctx}")
        dev = idx.device
        cache = model.new_cache(1, max_len)
        mtp_cache = [m.block.attn.new_cache(1, max_len) for m in mtp.depths[:K]]
        tokens = idx[0].tolist()

        h_new = model.hidden(idx, cache)  # (1, P, C): prefill, positions 0..P-1
        carry = [h_new[:, :0] for _ in range(K)]  # carry[k]: h^k of committed positions depth k+1 still needs
        first = model.lm_head(h_new[:, -1])  # (1, V)
        tokens.append(int(first.argmax(-1)) if sampling is None else int(draw(probs(first), generator)))
        stats.main_forwards, stats.new_tokens = 1, 1
        while stats.new_tokens < max_new_tokens and tokens[-1] != eos_id:
            N = len(tokens)  # committed tokens; t_{N-1} is pending (not yet read by the main model)
            m = min(K, max_new_tokens - stats.new_tokens - 1)  # never draft past the budget
            # --- draft: depth k reads positions cache_k.pos .. N-2 --------------------------------------
            drafts: list[int] = []
            q_drafts: list[torch.Tensor] = []  # (V,) the distribution each draft was sampled from
            hin = h_new  # h^0 of positions mtp_cache[0].pos .. N-2
            for k in range(1, m + 1):
                c = mtp_cache[k - 1]
                s = c.pos
                ext = tokens + drafts
                tok = torch.tensor([ext[s + k: N - 1 + k]], device=dev)  # t_{j+k}, j = s..N-2
                hk = mtp.depths[k - 1](hin, model.embed(tok), lambda b, x: b(x, c))  # (1, N-1-s, C)
                draft_logits = model.lm_head(hk[:, -1])  # (1, V)
                if sampling is None:
                    drafts.append(int(draft_logits.argmax(-1)))
                else:
                    q_drafts.append(probs(draft_logits)[0])
                    drafts.append(int(draw(q_drafts[-1][None], generator)))
                _rollback(c, max(N - k, 0))  # keep the positions j whose t_{j+k} is committed
                if k < K:
                    hin = torch.cat([carry[k], hk], dim=1)  # h^k of positions mtp_cache[k].pos .. N-2
                    lo, hi = max(N - k - 1, 0) - s, max(N - k, 0) - s
                    carry[k] = hk[:, lo:hi]  # h^k that depth k+1 will need next round
            # --- verify: one main forward over the pending token and the drafts --------------------------
            inp = torch.tensor([[tokens[-1], *drafts]], device=dev)  # (1, 1 + m)
            h = model.hidden(inp, cache)  # positions N-1 .. N-1+m
            logits = model.lm_head(h)[0]  # (1 + m, V)
            stats.main_forwards += 1
            if sampling is None:
                greedy = logits.argmax(-1).tolist()  # g_0..g_m
                a = 0
                while a < len(drafts) and drafts[a] == greedy[a]:
                    a += 1
                following = greedy[a]
            else:
                q = torch.stack(q_drafts) if q_drafts else logits.new_zeros(0, logits.shape[-1])
                a, following = speculative_accept(probs(logits), q, drafts, generator)
            for j in range(min(a + 1, len(drafts))):  # drafts checked: the accepted ones and the first rejected
                stats.drafted[j] += 1
                stats.accepted[j] += j < a
            stats.rounds.append((N, drafts, a))
            new = drafts[:a] + [following]
            if eos_id is not None and eos_id in new:
                new = new[: new.index(eos_id) + 1]
            tokens += new
            stats.new_tokens += len(new)
            for layer_cache in cache:
                _rollback(layer_cache, N + a)  # committed positions 0 .. N-1+a
            h_new = h[:, : a + 1]  # h^0 of positions N-1 .. N-1+a
        stats.seconds = time.perf_counter() - t0
        return torch.tensor([tokens], dtype=idx.dtype, device=dev), stats
    finally:
        model.train(was_training)
