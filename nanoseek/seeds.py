"""Run one experiment over several seeds and say whether two variants differ by more than the noise.

Every chapter that ranks variants (MHA vs GQA, MLA vs MHA, MoE vs dense, MTP vs none, GRPO vs PPO, ...) rests
the ranking on `over_seeds` and `verdict`. (Introduced in chapter 1; used in every chapter that compares.)

The rule for "clears the noise" is deliberately simple and exact: variant A beats B when every seed of A is
better than every seed of B (the seed ranges do not overlap). With 3 seeds each, that happens by chance with
probability 1/20 for two variants that are in fact equal (a permutation test at p = 0.05); anything less is a
tie, and the book calls it one. With fewer than 3 seeds on either side the noise is not measured at all, and
`verdict` says so (`TOO_FEW_SEEDS`) instead of naming a winner from single draws.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping


@dataclass(frozen=True)
class SeedSummary:
    """One metric of one variant over seeds."""

    values: tuple[float, ...]
    seeds: tuple[int, ...] = field(default=())

    def __post_init__(self):
        if not self.values:
            raise ValueError("SeedSummary needs at least one value")

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for one seed)."""
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def __str__(self) -> str:
        return self.format()

    def format(self, digits: int = 4) -> str:
        """`mean ± std (n=3)`: the form every table in the book uses."""
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"


def over_seeds(run: Callable[[int], float | Mapping[str, float]], seeds: Iterable[int] = (0, 1, 2),
               desc: str | None = None) -> dict[str, SeedSummary]:
    """Call `run(seed)` for each seed; it returns one number or a dict of named numbers. Returns one
    `SeedSummary` per name (a single number is named "value")."""
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("over_seeds needs at least one seed")
    per_metric: dict[str, list[float]] = {}
    try:
        from tqdm.auto import tqdm

        iterator = tqdm(seeds, desc=desc or "seeds", leave=False)
    except ImportError:  # pragma: no cover
        iterator = seeds
    for seed in iterator:
        out = run(seed)
        metrics = {"value": out} if isinstance(out, (int, float)) else dict(out)
        for key, value in metrics.items():
            per_metric.setdefault(key, []).append(float(value))
    return {key: SeedSummary(tuple(vals), seeds) for key, vals in per_metric.items()}


TOO_FEW_SEEDS = "too few seeds"


def verdict(a: SeedSummary, b: SeedSummary, *, lower_is_better: bool = True, names: tuple[str, str] = ("A", "B"),
            min_seeds: int = 3) -> str:
    """The name of the variant that wins by more than the seed spread, "tie" when the ranges overlap, or
    `TOO_FEW_SEEDS` when either side has fewer than `min_seeds` seeds (one run is a draw, not a ranking)."""
    if min_seeds < 1:
        raise ValueError(f"min_seeds={min_seeds}; expected at least 1")
    if a.n < min_seeds or b.n < min_seeds:
        return TOO_FEW_SEEDS
    if a.high < b.low:
        return names[0] if lower_is_better else names[1]
    if b.high < a.low:
        return names[1] if lower_is_better else names[0]
    return "tie"


def table(rows: Mapping[str, SeedSummary], *, digits: int = 4, header: tuple[str, str] = ("variant", "mean ± std")
          ) -> str:
    """A Markdown table of variants over seeds, with each seed's value."""
    lines = [f"| {header[0]} | {header[1]} | seeds |", "| --- | --- | --- |"]
    for name, summary in rows.items():
        each = ", ".join(f"{v:.{digits}f}" for v in summary.values)
        lines.append(f"| {name} | {summary.format(digits)} | {each} |")
    return "\n".join(lines)
