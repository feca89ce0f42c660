"""Policy-gradient losses: GRPO (with DAPO's clip-higher and Dr. GRPO's averaging), REINFORCE, and PPO's
clipped policy and value losses, plus the k3 KL estimator. (Chapter 10.)

Every loss takes per-token tensors over the *response* tokens, (B, T) with a 0/1 `mask`, and returns
``(loss, metrics)``: a scalar to minimise and a dict of floats to log.

The GRPO objective per token (DeepSeekMath, eq. 3), with separate clip ranges as in DAPO:

    J_t = min(rho_t * A, clip(rho_t, 1 - eps_low, 1 + eps_high) * A) - beta * KL_t
    rho_t = pi_theta(o_t | ...) / pi_old(o_t | ...),   KL_t = k3(pi_theta, pi_ref) at o_t

and the loss is -J averaged over tokens in one of three ways (`agg`):

- ``"seq"``: mean over each response's tokens, then over responses (GRPO as published);
- ``"token"``: sum over all tokens of the batch / number of tokens (DAPO: long responses weigh more);
- ``"constant"``: sum over all tokens / (B * max_len) for a fixed `max_len` (Dr. GRPO: no length bias).
"""
from __future__ import annotations

import torch

AGGREGATIONS = ("seq", "token", "constant")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over entries where mask is 1 (all of them, or along `dim`).

    An all-masked input (or, with `dim`, an all-masked row) returns exactly 0 for that mean, not NaN: the
    denominator is clamped at 1 and the masked numerator is 0. A response with no tokens therefore adds
    0 to a loss averaged per sequence ("seq"), which is what TRL and verl also do."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, agg: str = "seq",
              max_len: int | None = None) -> torch.Tensor:
    """Average a (B, T) per-token loss over the response tokens in one of `AGGREGATIONS` (see module)."""
    if per_token.shape != mask.shape or per_token.dim() != 2:
        raise ValueError(f"per_token {tuple(per_token.shape)} and mask {tuple(mask.shape)} must be the same (B, T)")
    m = mask.to(per_token.dtype)
    if agg == "seq":
        return masked_mean(per_token, m, dim=1).mean()
    if agg == "token":
        return (per_token * m).sum() / m.sum().clamp(min=1)
    if agg == "constant":
        if max_len is None or max_len < 1:
            raise ValueError(f"agg='constant' needs max_len >= 1 (the generation budget), got max_len={max_len!r}")
        return (per_token * m).sum() / (per_token.shape[0] * max_len)
    raise ValueError(f"agg={agg!r} is not one of {AGGREGATIONS}")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(pi || pi_ref) from samples of pi, per token:
    exp(ref - logp) - (ref - logp) - 1. Unbiased and never negative (unlike k1 = logp - ref). Shapes broadcast."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0


def token_entropy(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy of the next-token distribution at every position, (B, T) from logits (B, T, V), in nats:
    H = logsumexp(z) − Σ softmax(z)·z (stable for large logits). With `mask`, masked positions are 0.
    DAPO and "the 80/20 rule" paper track it: entropy collapse is the first sign of a policy that stopped
    exploring."""
    z = logits.float()
    entropy = torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)
    return entropy if mask is None else entropy * mask.to(entropy.dtype)


def _as_token_advantages(advantages: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    if advantages.dim() == 2 and advantages.shape[1] == 1 and logp.shape[1] != 1:
        advantages = advantages[:, 0]  # (B, 1), as TRL and verl pass one advantage per response
    if advantages.dim() == 1:  # one advantage per response (outcome reward): broadcast over its tokens
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages {tuple(advantages.shape)} do not match logp {tuple(logp.shape)}")
        return advantages[:, None].to(logp.dtype)
    if advantages.shape != logp.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} must be (B,), (B, 1) or (B, T) = {tuple(logp.shape)}")
    return advantages.to(logp.dtype)


def clipped_pg_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token PPO surrogate loss -min(rho*A, clip(rho, 1-clip_low, 1+clip_high)*A), (B, T), and stats.
    `advantages` is (B,) (one per response, GRPO) or (B, T) (per token, PPO with GAE)."""
    if clip_low < 0 or clip_high < 0 or clip_low >= 1:
        raise ValueError(f"clip_low={clip_low!r} must be in [0, 1) and clip_high={clip_high!r} >= 0")
    adv = _as_token_advantages(advantages, logp)
    ratio = torch.exp(logp - old_logp.detach())
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    with torch.no_grad():
        was_clipped = (clipped < unclipped).float()  # the min picked the clipped branch: no gradient here
        stats = {"clip_frac": masked_mean(was_clipped, mask), "ratio": masked_mean(ratio, mask)}
    return per_token, stats


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2,
              beta: float = 0.04, agg: str = "seq", max_len: int | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss (module docstring): clipped surrogate + beta * k3 KL to the reference, averaged by `agg`.

    logp: (B, T) log-probs of the sampled tokens under the policy being trained (with grad);
    old_logp: (B, T) under the policy that sampled them; ref_logp: (B, T) under the frozen reference (or
    None when beta = 0); advantages: (B,) or (B, T); mask: (B, T) 1 on response tokens.
    """
    per_token, stats = clipped_pg_loss(logp, old_logp, advantages, mask, clip_low, clip_high)
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError(f"beta={beta!r} needs ref_logp (the frozen reference's log-probs)")
        kl = k3_kl(logp, ref_logp.detach())
        per_token = per_token + beta * kl
        stats["kl"] = masked_mean(kl.detach(), mask)
    elif ref_logp is not None:
        stats["kl"] = masked_mean(k3_kl(logp.detach(), ref_logp.detach()), mask)
    loss = aggregate(per_token, mask, agg, max_len)
    return loss, {k: float(v) for k, v in stats.items()}


def reinforce_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, agg: str = "seq",
                   max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """REINFORCE (Williams, 1992): -A * log pi(o_t), averaged by `agg`. With a group-mean baseline in A it is
    GRPO without ratio, clip or KL, one gradient step per batch of rollouts."""
    adv = _as_token_advantages(advantages, logp)
    loss = aggregate(-adv * logp, mask, agg, max_len)
    return loss, {}


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float | None = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's critic loss 0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2), token-averaged. All (B, T)."""
    err = (values - returns) ** 2
    if clip is not None:
        v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        err = torch.maximum(err, (v_clipped - returns) ** 2)
    loss = 0.5 * masked_mean(err, mask)
    return loss, {"value_mse": float(masked_mean(((values - returns) ** 2).detach(), mask))}
