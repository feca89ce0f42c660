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
