"""Chapter 9: every schedule run for real on 2 and 4 CPU processes (gloo) equals the unsplit model.

Losses bit for bit (`torch.equal`, float64), gradients to the DualPipe example's bar (calc_diff < 1e-13),
untied and with the LM head tied to the embedding. Each launch is bounded by a timeout that kills the
processes; both launches together take about 20 s on a quiet 2-core machine.
"""
import pytest

from nanoseek.parallel.executor import PipeConfig, calc_diff, launch

SCHEDULES = ["gpipe", "1f1b", "zb1p", "dualpipe", "dualpipev"]


@pytest.mark.parametrize("world,n_micro", [(2, 4), (4, 8)])
def test_every_schedule_matches_the_unsplit_model(world, n_micro, tmp_path):
    cfg = PipeConfig(schedules=SCHEDULES, n_micro=n_micro, micro_batch=1, seq_len=8, vocab_size=32, n_embd=16,
                     n_head=2, intermediate_size=32, also_tied=True)
    out = launch(world, cfg, str(tmp_path / "run.json"), timeout=300)  # a bound against hangs, not a speed target
    records = out["records"]
    assert [(r["schedule"].lower(), r["tied"]) for r in records] == \
        [(s, t) for t in (False, True) for s in SCHEDULES]
    for r in records:
        assert r["loss_equal"], (r["schedule"], r["tied"])
        assert r["max_calc_diff"] < 1e-13, (r["schedule"], r["tied"], r["worst_param"])
        assert len(r["ranks"]) == world and all(g["events"] for g in r["ranks"])


def test_calc_diff():
    import torch

    x = torch.randn(100, dtype=torch.float64)
    assert calc_diff(x, x) == pytest.approx(0, abs=1e-15)
    assert calc_diff(x, 2 * x) > 0.1
    assert calc_diff(torch.zeros(3), torch.zeros(3)) == 0.0


def test_bad_settings_fail_before_any_process_starts(tmp_path):
    cfg = PipeConfig(schedules=["dualpipe"], n_micro=3)
    with pytest.raises(ValueError, match="even number of micro-batches"):
        launch(2, cfg, str(tmp_path / "bad.json"))


def test_a_run_past_its_timeout_is_killed(tmp_path):
    import multiprocessing

    cfg = PipeConfig(schedules=["1f1b"], n_micro=2)
    with pytest.raises(TimeoutError):
        launch(1, cfg, str(tmp_path / "slow.json"), timeout=0.2)  # importing torch alone takes longer
    assert not multiprocessing.active_children()
