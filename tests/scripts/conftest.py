"""Fixtures shared by the command-line tests (the benchmarks' in particular)."""

import pytest
import torch


@pytest.fixture
def keep_threads():
    """Benchmarks' --threads sets torch's thread count in this process: give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def in_process(monkeypatch):
    """Run a benchmark's CPU cases in this process instead of one child each (faster; the child path has its own
    test)."""
    from bizoo.scripts import bench

    def run(case):
        results = {}
        bench.measure_case(case, results.__setitem__)
        return results

    monkeypatch.setattr(bench, "run_case_in_child", run)
    monkeypatch.setattr(bench, "_reset_peak_rss", lambda: False)  # its gc.collect is slow in a test process
