"""The paths of `python -m bizoo.scripts.gpu_check` and `bizoo bench` that only a GPU run takes, exercised on a CPU:
the step environment that keeps a step within its limit, a check stopped from outside (Ctrl-C, SIGTERM), the budget
shared by the steps that run, and the CUDA branches of the timing helpers with torch.cuda stood in for. Tiny shapes,
no timing asserted."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from bizoo.scripts import bench
from bizoo.scripts.bench import gpu_check, harness, lion, lion_forms


def test_gpu_check_crossover_runs_the_kernels_untuned(tmp_path):
    # The chunk schedule retunes at every power-of-two length: autotuning at the crossover's six lengths outlasts its
    # 40 s limit on a cold Triton cache. The first configuration of each kernel, as bench-lion's, unless the caller
    # sets BIZOO_TRITON_AUTOTUNE.
    for quick in (False, True):
        for names in (["bench-lion-crossover"], gpu_check.parse_steps("lion"), gpu_check.parse_steps(None)):
            (step,) = [s for s in gpu_check.plan(tmp_path, quick, names) if s["step"] == "bench-lion-crossover"]
            assert step["env_default"] == gpu_check.BENCH_LION_ENV == {"BIZOO_TRITON_AUTOTUNE": "0"}
            assert "env" not in step  # a default: the caller's BIZOO_TRITON_AUTOTUNE=1 wins


@pytest.mark.parametrize("autotune", [False, True])
def test_bench_lion_crossover_says_whether_the_triton_kernels_were_tuned(autotune, tmp_path, monkeypatch, capsys):
    # Tuned or not moves the crossover: the table and the JSON say which. A GPU stood in for: every case unavailable.
    from bizoo.kernels import triton_utils

    monkeypatch.setattr(triton_utils, "AUTOTUNE", autotune)
    monkeypatch.setattr(lion_forms, "resolve_device", lambda args: "cuda")
    monkeypatch.setattr(lion_forms, "probe", lambda method, device, dtype: "stood in for (test)")
    for module in (lion, lion_forms):
        monkeypatch.setattr(module, "machine_name", lambda device: "a GPU (test)")
    out = tmp_path / "crossover.json"
    assert bench.main(["lion-crossover", "--backends", "triton", "--lengths", "64", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    note = "autotuned" if autotune else "each kernel's first configuration (BIZOO_TRITON_AUTOTUNE=0)"
    assert f"\ntriton: {note}\n" in text
    record = json.loads(out.read_text())
    assert record["triton_autotune"] is autotune and record["backends"] == ["triton"]
    assert record["rows"][0]["chunk_status"] == "unavailable: stood in for (test)"


# A check whose one step runs until it is stopped: it writes its process id, then sleeps; a second step after it.
DRIVER = textwrap.dedent("""
    import signal, sys
    from bizoo.scripts.bench import gpu_check

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever this process inherited
    out, pid_file = sys.argv[1], sys.argv[2]
    sleeper = ("import os, time; open(%r, 'w').write(str(os.getpid())); print('step started', flush=True); "
               "time.sleep(300)" % pid_file)

    def plan(out, quick, steps):
        return [{"name": f"stand-in {i}", "step": "lion-launches", "key": f"stand_in_{i}", "needs_cuda": False,
                 "command": [sys.executable, "-c", sleeper], "log": out / f"stand_in_{i}.txt", "timeout": 250,
                 "tail": 5} for i in (1, 2)]

    gpu_check.plan = plan
    sys.exit(gpu_check.main([out, "--steps", "lion-launches", "--budget", "400", "--skip-tests"]))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_gpu_check_interrupted_stops_the_running_step_and_writes_the_summary(signum, tmp_path):
    # A step runs in its own process group, out of reach of the signals sent to the check's (Ctrl-C in a terminal):
    # stopping the check (Ctrl-C, `timeout`, a scheduler's SIGTERM) must stop the step, or it keeps the GPU busy after
    # the check is gone, and the summary must say what happened to each step.
    out, pid_file = tmp_path / "check", tmp_path / "step.pid"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), str(pid_file)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    step_pid = None
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.1)
        step_pid = int(pid_file.read_text())
        # While the step runs the summary already says so.
        summary_json = out / "summary.json"
        running = json.loads(summary_json.read_text())["steps"] if summary_json.exists() else None
        driver.send_signal(signum)
        stdout, stderr = driver.communicate(timeout=60)
        name = signal.Signals(signum).name
        assert not _alive(step_pid), "the step outlived the check"
        assert driver.returncode == 128 + signum, stderr
        assert [s["status"] for s in running] == ["running", None]
        assert f"warning: interrupted by {name}" in stderr
        steps = json.loads((out / "summary.json").read_text())["steps"]
        assert steps[0]["status"].startswith(f"interrupted by {name} after ") and steps[0]["seconds"] is not None
        assert steps[1]["status"] == f"not run: the check was interrupted by {name}"
        assert "step started" in (out / "stand_in_1.txt").read_text()  # the partial output, in the summary too
        assert "[gpu_check: stopped, the check was interrupted" in (out / "stand_in_1.txt").read_text()
        summary = (out / "summary.md").read_text()
        assert "step started" in summary and "--skip-tests --budget 400 --steps lion-launches`" in summary
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if step_pid is not None and _alive(step_pid):  # the old behaviour: stop the orphan this test started
            os.kill(step_pid, signal.SIGKILL)


def test_gpu_check_skipped_steps_leave_their_share_of_the_budget(tmp_path, monkeypatch, capsys):
    # --steps lion --skip-tests: lion-tests does not run, so its 90 s go to the steps that do. Two stand-in steps of
    # 10 s each, the test step skipped: the other gets the budget less 30 s alone.
    def plan(out, quick, steps):
        return [{"name": "stand-in tests", "step": "lion-tests", "key": "tests", "needs_cuda": False, "tests": True,
                 "command": [sys.executable, "-c", "raise SystemExit(9)"], "log": out / "tests.log", "timeout": 10,
                 "tail": 5},
                {"name": "stand-in", "step": "lion-launches", "key": "stand_in", "needs_cuda": False,
                 "command": [sys.executable, "-c", "pass"], "log": out / "stand_in.txt", "timeout": 10, "tail": 5}]

    monkeypatch.setattr(gpu_check, "plan", plan)
    out = tmp_path / "check"
    assert gpu_check.main([str(out), "--steps", "lion-tests,lion-launches", "--budget", "100", "--skip-tests"]) == 0
    assert "stand-in (limit 70 s)" in capsys.readouterr().out
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["skipped: --skip-tests", "ok"]


class FakeCuda:
    """torch.cuda's timing and memory functions on a CPU: each event 2 ms after the one recorded before it, 1000 bytes
    allocated, a peak of 5000 after the reset; what was called, in order, in ``calls``."""

    def __init__(self, monkeypatch):
        self.calls, self.clock = [], 0
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.at = None

            def record(self, stream=None):
                fake.clock += 2
                self.at = fake.clock
                fake.calls.append("record")

            def synchronize(self):
                fake.calls.append("event synchronize")

            def elapsed_time(self, end):
                return float(end.at - self.at)  # ms, as CUDA events give it

        empty = torch.empty

        def cuda_empty(*size, device=None, **kwargs):
            if str(device) == "cuda":
                fake.calls.append(f"allocate {size[0]} bytes on the GPU")
                return empty(16, **kwargs)
            return empty(*size, device=device, **kwargs)

        ones = torch.ones

        def cuda_ones(*size, device=None, **kwargs):
            if str(device) == "cuda":
                fake.calls.append(f"allocate {size[0]} bytes on the GPU")
                return ones(16, **kwargs)
            return ones(*size, device=device, **kwargs)

        monkeypatch.setattr(torch, "empty", cuda_empty)
        monkeypatch.setattr(torch, "ones", cuda_ones)
        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: fake.calls.append("synchronize"))
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: fake.calls.append("reset"))
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1000)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 1000 + 4 * 2**20)


def test_cuda_timing_helpers_with_torch_cuda_stood_in_for(monkeypatch):
    # The CUDA branches of time_runs (events, the L2 flush outside them, the peak above what the runs found) and of
    # the HBM measurement (GB/s from bytes and event milliseconds) run here in Python, as they will on a GPU.
    fake = FakeCuda(monkeypatch)
    x = torch.randn(4, requires_grad=True)
    before = []

    def fn():
        before.append(fake.calls[-1] if fake.calls else None)  # what the run follows: its start event when timed
        return (x * 2).sum()

    result = harness.time_runs(fn, [x], True, torch.ones(()), 1, 3, cuda=True, flush_l2=True)
    assert result == {"status": "ok", "median_ms": 2.0, "min_ms": 2.0, "peak_mib": 4.0}
    assert fake.calls[0] == f"allocate {harness.L2_FLUSH_BYTES} bytes on the GPU"  # after the warm-up, before reset
    assert fake.calls[1:3] == ["synchronize", "reset"]
    assert before == [None, "record", "record", "record"]  # the warm-up run, then each timed run after its start
    assert x.grad is not None
    fake.calls.clear()
    # A copy of 2**30 bytes reads and writes 2**31 bytes in 2 ms (each event pair): 1073.7 GB/s (10⁹ bytes/s).
    assert lion.measure_hbm_gbs(nbytes=2**30, repeats=3) == pytest.approx(2**31 / 2e-3 / 1e9)
    assert fake.calls.count("record") == 6 and fake.calls.count("event synchronize") == 3


@pytest.mark.parametrize("budget", ["0", "-60", "nan", "inf"])
def test_gpu_check_budget_must_be_seconds(budget, tmp_path, capsys):
    # A budget of no time skipped every step and exited 0; nan ran every step with its own limit, no budget at all.
    out = tmp_path / "check"
    assert gpu_check.main([str(out), "--steps", "lion-tests", "--budget", budget]) == 2
    message = f"error: --budget must be a number of seconds > 0 (default 530), got {float(budget)}"
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing done


def test_gpu_cases_record_an_error_outside_the_timed_runs(monkeypatch):
    # On a GPU the cases run in this process: an error while a case's inputs are built (or a CUDA error an earlier
    # kernel left behind) ended the whole benchmark with a traceback; on a CPU the child's failure is the row's status.
    # Here the case's module fails after one mode is measured.
    def measure_case(case, report):
        report("fwd", {"status": "ok", "median_ms": 1.0, "min_ms": 1.0})
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")

    def release_cuda_memory():  # the device keeps the error: empty_cache raises it too
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(lion, "measure_case", measure_case)
    monkeypatch.setattr(harness, "release_cuda_memory", release_cuda_memory)
    case = {"op": "lion", "device": "cuda", "modes": ["fwd", "fwdbwd"]}
    assert harness.run_case(case) == {
        "fwd": {"status": "ok", "median_ms": 1.0, "min_ms": 1.0},
        "fwdbwd": {"status": "failed: RuntimeError: CUDA error: an illegal memory access was encountered"}}

    def out_of_memory(case, report):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")

    monkeypatch.setattr(lion, "measure_case", out_of_memory)
    assert harness.run_case(case) == {"fwd": {"status": "oom"}, "fwdbwd": {"status": "oom"}}


def test_gpu_check_lion_states_records_a_failed_reference_and_goes_on(tmp_path, monkeypatch, capsys):
    """lion-states: a reference that fails at one length (out of memory, say) fails that length's rows, with the
    reason, and the step goes on to the next case and writes its JSON; it does not end the step."""
    import bizoo.kernels.lion as lion_op
    from bizoo.kernels.lion import triton_op

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    small = gpu_check.lion_inputs
    monkeypatch.setattr(gpu_check, "lion_inputs", lambda B, H, L, D, decay, device: small(1, 1, 8, 4, decay, "cpu"))

    def reference(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (stood in)")

    def triton_chunk(q, k, v, log_decay, mask, *, form, chunk_size, normalize, fp32_states):
        return (q * v).to(v.dtype)  # any differentiable output: the rows fail before it matters

    monkeypatch.setattr(lion_op, "lion_attention", reference)
    monkeypatch.setattr(triton_op, "lion_attention_triton", triton_chunk)
    assert gpu_check.lion_states(str(tmp_path), quick=True) == 1
    rows = json.loads((tmp_path / "lion_states.json").read_text())["rows"]
    assert len(rows) == 8  # 2 decays x 2 lengths x 2 state dtypes: every case recorded
    assert all(row["status"].startswith("failed") and "the fp32 reference failed" in row["status"]
               and "CUDA out of memory (stood in)" in row["status"] for row in rows), rows


# ----------------------------------------------------------------------------------------------------------------
# --tf32: one precision for every fp32 product of every method
# ----------------------------------------------------------------------------------------------------------------

FP32_PRODUCTS = textwrap.dedent("""
    import argparse, sys, torch
    from bizoo.kernels.triton_utils import dot_precision
    from bizoo.scripts.bench import harness

    args = argparse.Namespace(tf32=sys.argv[1] == "on")
    applied = harness.fp32_products(args, cuda=True)
    backends = torch.backends
    print(applied, backends.cuda.matmul.fp32_precision, backends.cudnn.rnn.fp32_precision,
          backends.cudnn.conv.fp32_precision, dot_precision(torch.float32))
""")


@pytest.mark.parametrize("flag", ["on", "off"])
def test_tf32_sets_every_fp32_product_of_a_gpu_benchmark_alike(flag):
    """On a GPU, --tf32 puts cuBLAS, cuDNN (whose RNNs take TF32 by torch's default, where cuBLAS does not) and
    bizoo's Triton products on TF32; without it all of them on IEEE fp32. A fresh process: torch refuses its legacy
    TF32 flags once the newer settings were used in one."""
    done = subprocess.run([sys.executable, "-c", FP32_PRODUCTS, flag], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    precision = "tf32" if flag == "on" else "ieee"
    assert done.stdout.split() == [precision] * 5


def test_tf32_leaves_torch_alone_on_a_cpu_and_the_tables_say_which():
    import argparse

    before = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision
    assert harness.fp32_products(argparse.Namespace(tf32=True), cuda=False) == "ieee"  # CPU products: IEEE
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision) == before
    assert harness.fp32_products(argparse.Namespace(), cuda=True) == "torch's defaults"  # a bench without --tf32
    assert harness.fp32_note({"dtype": "float32", "fp32_products": "tf32"}) == "; fp32 products: TF32 (--tf32)"
    assert harness.fp32_note({"dtype": "float32", "fp32_products": "ieee"}) == "; fp32 products: IEEE (--tf32)"
    assert harness.fp32_note({"dtype": "bfloat16", "fp32_products": "ieee"}) == ""
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    for name in ("lion", "lion-crossover", "lstm", "bigs"):
        assert parser.parse_args([name, "--tf32"]).tf32 is True and parser.parse_args([name]).tf32 is False
