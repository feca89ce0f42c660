"""One RL loop for GRPO, REINFORCE and PPO on rule-rewarded tasks. (Chapter 10.)

Each step: draw `prompts_per_step` prompts, sample `group_size` responses to each (`rollout`), score them
with a rule reward, compute advantages (group baseline, or GAE with a critic for PPO), then take
`inner_epochs` passes of gradient steps on that batch (DeepSeekMath's mu; ratios start at 1 and the clip keeps
the policy near the one that sampled). The algorithms share everything but the advantage and the loss:

| algo        | advantage                          | loss                              | inner epochs |
| ----------- | ---------------------------------- | --------------------------------- | ------------ |
| `grpo`      | (r - mean_group) / (std_group+eps) | clipped ratio + beta * k3 KL      | `inner_epochs` |
| `reinforce` | r - mean_group                     | -A log pi                         | 1            |
| `ppo`       | GAE over KL-shaped token rewards   | clipped ratio, and a critic's loss | `inner_epochs` |

Switches from the papers that followed R1, each off by default:

- Dr. GRPO (Liu et al., 2025): `normalize_by_std=False` together with `agg="constant"` (divide by the
  generation budget, not by each response's length).
- DAPO (Yu et al., 2025): `clip_high=0.28` (clip-higher), `agg="token"`, `dynamic_sampling=True` (drop the
  groups whose rewards are all equal and sample more prompts until the batch is full, at most
  `max_resample_rounds` extra rounds) and `overlong_buffer=L` (soft overlong punishment over the last L
  tokens of the budget, added to the reward).
- Kimi k1.5 (2025): `length_reward=w` adds w * the group's length reward (`kimi_length_rewards`).

`metrics["sampled"]` counts every response sampled in a step, the dropped ones too: the rollout budget that
a fair comparison holds equal.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from nanoseek import validate as V
from nanoseek.rl.advantages import gae, group_advantages
from nanoseek.rl.losses import AGGREGATIONS, grpo_loss, masked_mean, reinforce_loss, value_loss
from nanoseek.rl.ppo import ValueModel, kl_shaped_rewards, response_values
from nanoseek.rl.rewards import kimi_length_rewards, overlong_penalty
from nanoseek.rl.rollout import Rollout, rollout, sequence_logprobs

ALGOS = ("grpo", "reinforce", "ppo")


@dataclass
class RLConfig:
    """Settings of `train_rl`. Defaults are DeepSeekMath's GRPO where it states them (beta 0.04, eps 0.2)."""

    algo: str = "grpo"
    steps: int = 50
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 32
    temperature: float = 1.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    inner_epochs: int = 2
    minibatches: int = 1
    clip_low: float = 0.2
    clip_high: float = 0.2  # DAPO's clip-higher: 0.28
    beta: float = 0.04
    agg: str = "seq"  # "seq" (GRPO), "token" (DAPO), "constant" (Dr. GRPO)
    normalize_by_std: bool = True  # False: Dr. GRPO
    eps: float = 1e-6
    gamma: float = 1.0  # PPO
    lam: float = 0.95  # PPO
    critic_lr: float = 1e-3  # PPO
    value_clip: float | None = 0.2  # PPO
    eval_every: int = 10
    seed: int = 0
    dynamic_sampling: bool = False  # DAPO: keep only groups whose rewards differ
    max_resample_rounds: int = 4  # DAPO: extra rollout rounds allowed to fill the batch
    overlong_buffer: int | None = None  # DAPO: soft overlong punishment over the last L tokens
    length_reward: float = 0.0  # Kimi k1.5: weight of the length reward

    def __post_init__(self) -> None:
        V.choice(self.algo, "algo", ALGOS, "RLConfig")
        V.choice(self.agg, "agg", AGGREGATIONS, "RLConfig")
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "inner_epochs", "minibatches",
                     "eval_every", "seed"):
            minimum = 0 if name in ("steps", "eval_every", "seed") else 1  # eval_every=0: no evaluation
            setattr(self, name, V.integer(getattr(self, name), name, "RLConfig", minimum=minimum))
        for name in ("lr", "critic_lr", "eps"):
            V.positive(getattr(self, name), name, "RLConfig")
        for name in ("temperature", "weight_decay", "grad_clip", "clip_low", "clip_high", "beta"):
            V.number(getattr(self, name), name, "RLConfig", minimum=0)
        for name in ("gamma", "lam"):
            V.probability(getattr(self, name), name, "RLConfig")
        V.number(self.value_clip, "value_clip", "RLConfig", minimum=0, optional=True)
        V.flag(self.normalize_by_std, "normalize_by_std", "RLConfig")
        if self.algo == "grpo" and self.group_size < 2:
            raise ValueError(f"group_size={self.group_size} must be >= 2 for a group baseline")
        if not isinstance(self.max_resample_rounds, int) or self.max_resample_rounds < 0:
            raise ValueError(f"max_resample_rounds={self.max_resample_rounds!r} must be an int >= 0")
        if self.overlong_buffer is not None and not (isinstance(self.overlong_buffer, int)
                                                     and 0 < self.overlong_buffer <= self.max_new_tokens):
            raise ValueError(f"overlong_buffer={self.overlong_buffer!r} must be None or an int in "
                             f"(0, max_new_tokens={self.max_new_tokens}]")
        if not (isinstance(self.length_reward, (int, float)) and 0.0 <= self.length_reward < float("inf")):
            raise ValueError(f"length_reward={self.length_reward!r} must be a finite number >= 0")


@dataclass
class Task:
    """What the loop needs to know about a task and a tokenizer."""

    train_rows: Callable[[int, int], list[dict]]  # (n, seed) -> rows
    prompt_fn: Callable[[dict], str]
    reward_fn: Callable[[str, dict], float]
    accuracy_fn: Callable[[str, dict], float]
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    eos_id: int
    pad_id: int


@dataclass
class History:
    """Per-step metrics (lists aligned with `step`) and held-out evaluations (aligned with `eval_step`)."""

    step: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    eval_step: list[int] = field(default_factory=list)
    eval: dict[str, list[float]] = field(default_factory=dict)

    def log(self, step: int, **values: float) -> None:
        self.step.append(step)
        for k, v in values.items():
            self.metrics.setdefault(k, []).append(float(v))

    def log_eval(self, step: int, **values: float) -> None:
        self.eval_step.append(step)
        for k, v in values.items():
            self.eval.setdefault(k, []).append(float(v))


@torch.no_grad()
def evaluate(model: torch.nn.Module, rows: Sequence[dict], task: Task, max_new_tokens: int,
             temperature: float = 0.0, samples: int = 1, seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """Held-out accuracy, format rate, reward and mean response length (greedy when temperature is 0)."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    acc, rew, lengths = [], [], []
    for i in range(0, len(rows), batch_size):
        for ro in rollout(model, rows[i:i + batch_size], task.prompt_fn, task.encode, task.decode, samples,
                          max_new_tokens, task.eos_id, task.pad_id, None, temperature, None, gen):
            acc += [task.accuracy_fn(t, r) for t, r in zip(ro.texts, ro.rows)]
            rew += [task.reward_fn(t, r) for t, r in zip(ro.texts, ro.rows)]
            lengths += ro.lengths.tolist()
    n = max(len(acc), 1)
    return {"accuracy": sum(acc) / n, "reward": sum(rew) / n, "length": sum(lengths) / n}


def _advantages(cfg: RLConfig, ro: Rollout) -> torch.Tensor:
    if cfg.algo == "grpo":
        return group_advantages(ro.rewards, cfg.group_size, cfg.normalize_by_std, cfg.eps)
    return group_advantages(ro.rewards, cfg.group_size, normalize_by_std=False)  # REINFORCE baseline


def shape_rewards(cfg: RLConfig, ro: Rollout, task: Task) -> None:
    """Add the length shaping that `cfg` asks for to `ro.rewards`, in place (Kimi k1.5, DAPO overlong)."""
    if cfg.length_reward == 0.0 and cfg.overlong_buffer is None:
        return
    lengths = ro.lengths.tolist()
    extra = [0.0] * len(lengths)
    if cfg.length_reward:
        correct = [task.accuracy_fn(t, r) > 0 for t, r in zip(ro.texts, ro.rows)]
        for g in range(0, len(lengths), cfg.group_size):
            group = kimi_length_rewards(lengths[g:g + cfg.group_size], correct[g:g + cfg.group_size])
            for i, value in enumerate(group):
                extra[g + i] += cfg.length_reward * value
    if cfg.overlong_buffer is not None:
        for i, n in enumerate(lengths):
            extra[i] += overlong_penalty(int(n), cfg.max_new_tokens, cfg.overlong_buffer)
    ro.rewards = ro.rewards + torch.tensor(extra, dtype=ro.rewards.dtype, device=ro.rewards.device)


def select_groups(ro: Rollout, keep: torch.Tensor) -> Rollout | None:
    """The rollout restricted to the groups where `keep` (n_groups,) is True, or None if none is kept."""
    if not bool(keep.any()):
        return None
    rows_keep = keep.repeat_interleave(ro.group_size).to(ro.response.device)
    idx = rows_keep.nonzero().squeeze(1)
    picked = idx.tolist()
    return Rollout(ro.prompt[idx], ro.response[idx], ro.mask[idx], ro.logp[idx], [ro.texts[i] for i in picked],
                   [ro.rows[i] for i in picked], ro.group_size, ro.rewards[idx.to(ro.rewards.device)], {})


def informative(ro: Rollout) -> torch.Tensor:
    """(n_groups,) True where the group's rewards are not all equal (a GRPO advantage is non-zero)."""
    flat = ro.rewards.view(-1, ro.group_size)
    return flat.max(1).values != flat.min(1).values


def train_rl(policy: torch.nn.Module, task: Task, cfg: RLConfig, eval_rows: Sequence[dict] = (),
             reference: torch.nn.Module | None = None, progress: bool = True,
             on_step: Callable[[int, torch.nn.Module, dict], None] | None = None) -> History:
    """Train `policy` in place with `cfg.algo` and return the `History` of metrics and held-out evaluations."""
    from tqdm.auto import tqdm

    dev = next(policy.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    ref = reference
    if ref is None and (cfg.beta != 0.0 or cfg.algo == "ppo"):
        ref = copy.deepcopy(policy)
    if ref is not None:
        ref.eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    critic = critic_opt = None
    if cfg.algo == "ppo":
        critic = ValueModel(policy).to(dev)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0)
    hist = History()

    def run_eval(step: int) -> None:
        if eval_rows:
            hist.log_eval(step, **evaluate(policy, list(eval_rows), task, cfg.max_new_tokens, seed=cfg.seed))

    run_eval(0)
    bar = tqdm(range(1, cfg.steps + 1), desc=cfg.algo, disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        batches, kept_groups, sampled, all_rewards, all_accs, all_lengths = [], 0, 0, [], [], []
        for round_ in range(1 + (cfg.max_resample_rounds if cfg.dynamic_sampling else 0)):
            need = cfg.prompts_per_step - kept_groups
            if need <= 0:
                break
            rows = task.train_rows(cfg.prompts_per_step if round_ == 0 else need,
                                   cfg.seed * 100_003 + step + 7_919 * round_)
            for ro in rollout(policy, rows, task.prompt_fn, task.encode, task.decode, cfg.group_size,
                              cfg.max_new_tokens, task.eos_id, task.pad_id, task.reward_fn, cfg.temperature,
                              None, gen):
                shape_rewards(cfg, ro, task)
                sampled += ro.response.shape[0]
                all_rewards.append(ro.rewards)
                all_accs += [task.accuracy_fn(t, r) for t, r in zip(ro.texts, ro.rows)]
                all_lengths.append(ro.lengths)
                if cfg.dynamic_sampling:
                    keep = informative(ro)
                    room = cfg.prompts_per_step - kept_groups
                    keep &= keep.cumsum(0) <= room  # never more groups than the batch holds
                    ro = select_groups(ro, keep)
                    if ro is None:
                        continue
                kept_groups += ro.response.shape[0] // cfg.group_size
                batches.append(ro)
        t_rollout = time.perf_counter() - t0
        # Fixed quantities of this batch: old and reference log-probs, advantages (and values for PPO),
        # computed in the same minibatches as the updates (full-vocabulary logits of a whole batch can be
        # larger than the model).
        for ro in batches:
            chunks = list(torch.arange(ro.response.shape[0], device=dev).chunk(cfg.minibatches))
            with torch.no_grad():
                ro.extras["old_logp"] = torch.cat([sequence_logprobs(policy, ro.prompt[c], ro.response[c],
                                                                     cfg.temperature) for c in chunks])
                ro.extras["ref_logp"] = (torch.cat([sequence_logprobs(ref, ro.prompt[c], ro.response[c],
                                                                      cfg.temperature) for c in chunks])
                                         if ref is not None else None)
                if cfg.algo == "ppo":
                    values = torch.cat([response_values(critic, ro.prompt[c], ro.response[c]) for c in chunks])
                    tok_rewards = kl_shaped_rewards(ro.rewards.to(dev), ro.extras["old_logp"],
                                                    ro.extras["ref_logp"], ro.mask, cfg.beta)
                    adv, returns = gae(tok_rewards, values, ro.mask, cfg.gamma, cfg.lam)
                    mu = masked_mean(adv, ro.mask)
                    sd = masked_mean((adv - mu) ** 2, ro.mask).sqrt()
                    ro.extras.update(adv=(adv - mu) / (sd + 1e-8) * ro.mask, returns=returns, values=values)
                else:
                    ro.extras["adv"] = _advantages(cfg, ro).to(dev)
        stats: dict[str, list[float]] = {}
        epochs = 1 if cfg.algo == "reinforce" else cfg.inner_epochs
        policy.train()
        for _ in range(epochs):
            for ro in batches:
                for idx in torch.arange(ro.response.shape[0], device=dev).chunk(cfg.minibatches):
                    prompt, response, mask = ro.prompt[idx], ro.response[idx], ro.mask[idx]
                    logp = sequence_logprobs(policy, prompt, response, cfg.temperature)
                    adv = ro.extras["adv"][idx]
                    if cfg.algo == "reinforce":
                        loss, st = reinforce_loss(logp, adv, mask, cfg.agg, cfg.max_new_tokens)
                    else:
                        ref_logp = ro.extras["ref_logp"][idx] if ro.extras["ref_logp"] is not None else None
                        beta = 0.0 if cfg.algo == "ppo" else cfg.beta  # PPO puts the KL in the reward
                        loss, st = grpo_loss(logp, ro.extras["old_logp"][idx], ref_logp, adv, mask,
                                             cfg.clip_low, cfg.clip_high, beta, cfg.agg, cfg.max_new_tokens)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                    opt.step()
                    st["loss"] = float(loss.detach())
                    if critic is not None:
                        v = response_values(critic, prompt, response)
                        vloss, vst = value_loss(v, ro.extras["values"][idx], ro.extras["returns"][idx], mask,
                                                cfg.value_clip)
                        critic_opt.zero_grad(set_to_none=True)
                        vloss.backward()
                        torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
                        critic_opt.step()
                        st.update(vst)
                    for k, v in st.items():
                        stats.setdefault(k, []).append(v)
        # statistics over everything sampled this step (the groups dynamic sampling dropped included)
        rewards = torch.cat(all_rewards)
        lengths = torch.cat(all_lengths)
        # fraction of groups whose rewards are all equal: they give zero advantage (no signal) in GRPO
        flat = rewards.view(-1, cfg.group_size)
        metrics = {"reward": float(rewards.mean()), "accuracy": sum(all_accs) / len(all_accs),
                   "length": float(lengths.float().mean()),
                   "zero_adv_groups": float((flat.max(1).values == flat.min(1).values).float().mean()),
                   "time_rollout": t_rollout, "time_step": time.perf_counter() - t0,
                   "tokens": float(lengths.sum()), "sampled": float(sampled),
                   "trained_groups": float(kept_groups), "updates": float(len(stats.get("loss", [])))}
        metrics.update({k: sum(v) / len(v) for k, v in stats.items()})
        hist.log(step, **metrics)
        bar.set_postfix(reward=f"{metrics['reward']:.2f}", len=f"{metrics['length']:.1f}")
        if on_step is not None:
            on_step(step, policy, metrics)
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            run_eval(step)
    return hist
