import pytest

from nanoseek.seeds import TOO_FEW_SEEDS, SeedSummary, over_seeds, table, verdict


def test_over_seeds_summarizes_named_metrics():
    out = over_seeds(lambda s: {"loss": 1.0 + s, "acc": 0.5}, seeds=(0, 1, 2))
    assert out["loss"].values == (1.0, 2.0, 3.0) and out["loss"].mean == 2.0 and out["loss"].std == 1.0
    assert out["acc"].std == 0.0 and out["loss"].seeds == (0, 1, 2)
    assert over_seeds(lambda s: float(s), seeds=(4,))["value"].values == (4.0,)


def test_verdict_needs_disjoint_ranges():
    a, b = SeedSummary((1.0, 1.1, 1.2)), SeedSummary((1.3, 1.4, 1.5))
    assert verdict(a, b) == "A" and verdict(b, a) == "B"
    assert verdict(a, b, lower_is_better=False) == "B"
    overlapping = SeedSummary((1.15, 1.4, 1.5))
    assert verdict(a, overlapping) == "tie"
    assert verdict(a, b, names=("MHA", "MQA")) == "MHA"


def test_verdict_names_no_winner_from_single_draws():
    one, three = SeedSummary((1.0,)), SeedSummary((2.0, 2.1, 2.2))
    assert verdict(one, three) == TOO_FEW_SEEDS and verdict(three, one) == TOO_FEW_SEEDS
    assert verdict(SeedSummary((1.0, 1.1)), SeedSummary((2.0, 2.1))) == TOO_FEW_SEEDS
    assert verdict(one, SeedSummary((2.0,)), min_seeds=1) == "A"  # explicitly asked for
    with pytest.raises(ValueError, match="min_seeds=0"):
        verdict(one, three, min_seeds=0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one"):
        SeedSummary(())
    with pytest.raises(ValueError, match="at least one seed"):
        over_seeds(lambda s: 1.0, seeds=())


def test_table_lists_every_seed():
    text = table({"x": SeedSummary((0.5, 0.25))}, digits=2)
    assert "0.38 ± 0.18 (n=2)" in text and "0.50, 0.25" in text
