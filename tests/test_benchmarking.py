from nanoseek import benchmarking as bm


def test_write_and_read_result_roundtrip(tmp_path, monkeypatch):
    bm.write_result("probe", "| a |\n| 1 |", directory=tmp_path, data={"seconds": 12.5})
    monkeypatch.setattr(bm, "results_dir", lambda: tmp_path)
    record = bm.read_result("probe")
    assert record["data"] == {"seconds": 12.5} and "date" in record and "command" in record
    assert bm.read_result("never-recorded") is None
    assert (tmp_path / "probe.md").read_text().startswith("# probe")


def test_budget_table_reads_the_records(tmp_path, monkeypatch):
    (tmp_path / "notebook_times.md").write_text(
        "| notebook | seconds | budget (120 s) | result |\n| --- | --- | --- | --- |\n"
        "| 01_nanogpt.ipynb | 66 | ok | passed |\n")
    bm.write_result("ch01_full", "x", directory=tmp_path, data={"seconds": 111.0})
    monkeypatch.setattr(bm, "results_dir", lambda: tmp_path)
    text = bm.budget_table("01_nanogpt", tiny="a", full="b", full_record="ch01_full")
    assert "66 s" in text and "111 s" in text
    assert "not recorded yet" in bm.budget_table("99_none", tiny="a", full="b", full_record="missing")


def test_budget_table_says_when_a_full_run_stopped(tmp_path, monkeypatch):
    bm.write_result("ch02_full", "x", directory=tmp_path, data={"seconds": 40.0, "finished": False, "returncode": "1"})
    monkeypatch.setattr(bm, "results_dir", lambda: tmp_path)
    assert "stopped before the end" in bm.budget_table("02_x", tiny="a", full="b", full_record="ch02_full")


def test_machine_says_when_the_gpu_was_shared(monkeypatch):
    from nanoseek.benchmarking import machine

    monkeypatch.delenv("NANOSEEK_GPU_JOBS", raising=False)
    assert "gpu shared with" not in machine()
    monkeypatch.setenv("NANOSEEK_GPU_JOBS", "1")
    assert "gpu shared with" not in machine()
    monkeypatch.setenv("NANOSEEK_GPU_JOBS", "3")
    assert machine()["gpu shared with"].startswith("2 other job(s)")


def _ch04_part(path, variant, losses, config):
    import json

    path.write_text(json.dumps({"data": {"config": config, "seeds": [0, 1, 2], "val_loss": {variant: losses},
                                         "seconds": {variant: [1.0, 1.0, 1.0]}}}))
    return path


def test_ch04_seeds_merge_combines_per_variant_records(tmp_path):
    """benchmarks/gpu/ch04_seeds.sh trains one variant per process and merges: the merged record holds all
    three and their verdicts, and a part made with another config is refused."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    from ch04_gqa_seeds import CONFIGS

    cfg = CONFIGS["tiny"]
    parts = [_ch04_part(tmp_path / "mha.json", "MHA", [1.00, 1.01, 1.02], cfg),
             _ch04_part(tmp_path / "gqa.json", "GQA", [1.01, 1.02, 1.03], cfg),
             _ch04_part(tmp_path / "mqa.json", "MQA", [1.20, 1.21, 1.22], cfg)]
    script = [sys.executable, str(root / "benchmarks" / "ch04_gqa_seeds.py"), "--scale", "tiny", "--out", "merged"]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    subprocess.run(script + ["--merge", *map(str, parts)], cwd=tmp_path, env=env, check=True, capture_output=True)
    merged = json.loads((tmp_path / "benchmarks" / "results" / "merged.json").read_text())["data"]
    assert set(merged["val_loss"]) == {"MHA", "GQA", "MQA"}
    assert merged["verdicts"] == {"MHA vs MQA": "MHA", "MHA vs GQA": "tie", "GQA vs MQA": "GQA"}
    other = _ch04_part(tmp_path / "other.json", "MQA", [1.2, 1.2, 1.2], {**cfg, "max_steps": 1})
    run = subprocess.run(script + ["--merge", str(parts[0]), str(other)], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert run.returncode != 0 and "config or seeds differ" in run.stderr
