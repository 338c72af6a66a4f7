"""Edges of `bizoo bench` and `python -m bizoo.scripts.gpu_check` that a GPU run would pay for: the baseline timed once
where two tables share it, the GPU check's commands sized for their time limits. On a CPU with tiny shapes; no timing
is asserted."""

import importlib
import json
import sys

import pytest
import torch

from bizoo.scripts import bench
from bizoo.scripts.bench import crf, gpu_check


def test_bench_crf_times_pytorch_crf_decode_once_for_both_decoding_ops(tmp_path, monkeypatch):
    # pytorch-crf's decode is the baseline of the Viterbi and the max-marginal tables alike: on a GPU each call reads
    # B·L tags back with .item(), so it is timed once per shape (warm-up + repeats calls) and shared.
    from torchcrf import CRF

    calls = []
    decode = CRF.decode

    def counted(self, *args, **kwargs):
        calls.append(self.num_tags)
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(CRF, "decode", counted)
    out = tmp_path / "crf.json"
    argv = ["crf", "--device", "cpu", "--batch-sizes", "2", "--tags", "3", "--lengths", "4", "6", "--repeats", "2",
            "--warmup", "1", "--methods", "reference", "--json", str(out)]
    assert bench.main(argv) == 0
    assert len(calls) == 2 * (1 + 2)  # two shapes, each 1 warm-up + 2 timed calls: none for the max-marginals
    rows = json.loads(out.read_text())["rows"]
    for length in (4, 6):
        base = {r["op"]: r for r in rows if r["method"] == "torchcrf" and r["length"] == length}
        assert base["max_marginals"]["median_ms"] == base["viterbi"]["median_ms"] > 0
        assert base["max_marginals"]["timed_in"] == "viterbi" and "timed_in" not in base["viterbi"]
        ours = next(r for r in rows if (r["op"], r["method"], r["length"]) == ("max_marginals", "reference", length))
        assert ours["speedup_vs_torchcrf"] == base["viterbi"]["median_ms"] / ours["median_ms"]
    assert crf.DECODE_OPS == ("viterbi", "max_marginals")


def test_gpu_check_crf_step_fits_its_limit(tmp_path):
    # The targets' K only, 5 runs after 2 warm-ups: 4 shapes, pytorch-crf's decode timed 7 times at each.
    (step,) = gpu_check.plan(tmp_path, False, ["bench-crf"])
    parser = bench.argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(step["command"][3:])
    assert (args.op, args.tags, args.batch_sizes, args.lengths) == ("crf", [9], [1, 64], [128, 512])
    assert (args.repeats, args.warmup, args.methods) == (5, 2, ["triton", "auto"])
    assert step["timeout"] >= 30 and step["needs"] == "torchcrf"
    assert sum(s["timeout"] for s in gpu_check.plan(tmp_path, False)) <= 530  # the default budget


def test_gpu_check_lion_launches_keeps_its_counts_when_the_trace_fails(tmp_path, monkeypatch, capsys):
    # The counts are the step's result: written (and printed) before the chrome trace is taken, so that a profiler
    # that fails there leaves them, with the reason. CUDA is stood in for on a CPU: tiny inputs, a toy op, the kernel
    # names given, no synchronisation.
    import torch
    import torch.profiler

    inputs = gpu_check.lion_inputs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    monkeypatch.setattr(gpu_check, "lion_inputs", lambda B, H, L, D, decay, device: inputs(1, 2, 8, 4, decay, "cpu"))
    monkeypatch.setattr(gpu_check, "_lion_ops", lambda: {
        "toy": lambda q, k, v, a: q * k + v + (0 if a is None else a[..., None].to(v.dtype))})

    def kernels(fn):
        fn()
        return ["_chunk_fwd", "Memset (Device)"]

    def failing_profile(*args, **kwargs):
        raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED")

    monkeypatch.setattr(gpu_check, "gpu_kernels", kernels)
    monkeypatch.setattr(torch.profiler, "profile", failing_profile)
    assert gpu_check.lion_launches(str(tmp_path)) == 1
    record = json.loads((tmp_path / "lion_launches.json").read_text())
    assert record["trace"] == "failed: RuntimeError: CUPTI_ERROR_NOT_INITIALIZED"
    assert [(r["op"], r["decay"], r["status"], r["host_sync"]) for r in record["rows"]] == [
        ("toy", "s", "ok", "ok"), ("toy", "lit", "ok", "ok")]
    assert record["rows"][0]["forward"] == {"kernels": 1, "names": {"_chunk_fwd": 1}, "memcpy_memset": 1}
    out = capsys.readouterr().out
    assert "toy" in out and "fwd kernels" in out and "trace: failed: RuntimeError" in out
    assert not (tmp_path / "lion_trace.json").exists()


@pytest.mark.parametrize("module, method", [("lion", "triton-chunk"), ("lion", "triton-auto"), ("bigs", "triton"),
                                            ("lstm", "triton")])
def test_triton_methods_are_not_probed_with_a_tiny_call_on_a_gpu(module, method, monkeypatch):
    # On a GPU a tiny call would compile (and for the SSM op autotune) the kernels at a shape the benchmark never
    # runs, out of a step's time limit: the real call's failure is the row's status instead. Stood in for on a CPU:
    # Triton taken for available, any call of the op refused.
    import bizoo.kernels.lion
    import bizoo.kernels.lstm
    import bizoo.kernels.ssm

    target = importlib.import_module(f"bizoo.scripts.bench.{module}")
    monkeypatch.setattr(target, "triton_missing", lambda device: None)

    def called(*args, **kwargs):
        raise AssertionError("a tiny call on the GPU")

    for ops, name in ((bizoo.kernels.lion, "lion_attention"), (bizoo.kernels.ssm, "bidirectional_ssm"),
                      (bizoo.kernels.ssm, "s4d_init"), (bizoo.kernels.lstm, "bilstm")):
        monkeypatch.setattr(ops, name, called)
    assert target.probe(method, "cuda", "bfloat16") is None


def test_gpu_check_default_lion_bench_runs_the_kernels_untuned(tmp_path):
    # Autotuning triton-chunk and triton-parallel at three lengths outlasts the step's limit on a cold Triton cache:
    # the first configuration of each kernel, as bench-lion, unless the caller sets BIZOO_TRITON_AUTOTUNE.
    for quick in (False, True):
        (step,) = gpu_check.plan(tmp_path, quick, ["bench-lion-default"])
        assert step["env_default"] == gpu_check.BENCH_LION_ENV == {"BIZOO_TRITON_AUTOTUNE": "0"}
        assert "env" not in step  # a default: BIZOO_TRITON_AUTOTUNE=1 from the caller wins


def test_ops_checked_against_a_reference_flush_the_l2_on_a_gpu(monkeypatch):
    # bench bigs and bench lstm time their ops "as bench lion": on a GPU the L2 cache is flushed before each timed run
    # (outside the CUDA events), so that no run finds its inputs and weights where the run before left them. The
    # timing stood in for: which runs would flush.
    from bizoo.scripts.bench import harness

    flushed = []

    def time_runs(fn, leaves, backward, dout, warmup, repeats, cuda, cpu_memory=True, flush_l2=False):
        flushed.append((cuda, flush_l2))
        return {"status": "ok", "median_ms": 1.0, "min_ms": 1.0}

    monkeypatch.setattr(harness, "time_runs", time_runs)
    for device in ("cuda", "cpu"):
        case = {"device": device, "dtype": "float32", "modes": ["fwd", "fwdbwd"], "warmup": 0, "repeats": 1}
        results = {}
        harness.measure_op_case(case, results.__setitem__, lambda device, dtype: (
            lambda: None, [], None, lambda: {"max_abs_diff": 0.0}), may_be_missing=False)
        assert [r["status"] for r in results.values()] == ["ok", "ok"]
    assert flushed == [(True, True)] * 2 + [(False, False)] * 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the test steps run for real")
def test_gpu_check_test_steps_without_a_gpu_say_so(tmp_path, monkeypatch):
    # On a CPU the test steps run (the tests that need a GPU skip themselves): "ok" alone would read as GPU tests
    # passed. A stand-in test step that succeeds.
    def plan(out, quick, steps):
        return [{"name": "stand-in tests", "step": "gpu-tests", "key": "stand_in", "needs_cuda": False, "tests": True,
                 "command": [sys.executable, "-c", "print('1 passed, 9 skipped')"], "log": out / "tests.log",
                 "timeout": 30, "tail": 5}]

    monkeypatch.setattr(gpu_check, "plan", plan)
    out = tmp_path / "check"
    assert gpu_check.main([str(out), "--steps", "gpu-tests"]) == 0
    (step,) = json.loads((out / "summary.json").read_text())["steps"]
    assert step["status"] == "ok (no CUDA device: the tests that need one skipped themselves; see the log)"
    assert "1 passed, 9 skipped" in (out / "summary.md").read_text()


def test_lion_model_asks_the_op_for_form_auto_without_a_kernel_call(monkeypatch):
    # Whether lion_attention takes form="auto" is its dispatcher's answer: asked on a CPU with the reference backend,
    # so that on a GPU no Triton kernel is compiled (and autotuned) for a tiny shape inside lion-model's time limit.
    from types import SimpleNamespace

    import bizoo.kernels.lion
    from bizoo.scripts.bench import training

    calls = []
    ask = bizoo.kernels.lion.lion_attention

    def lion_attention(q, *args, **kwargs):
        calls.append((q.device.type, kwargs["backend"], kwargs["form"]))
        return ask(q, *args, **kwargs)

    monkeypatch.setattr(bizoo.kernels.lion, "lion_attention", lion_attention)
    for backend in ("auto", "triton"):
        assert training._lion_form(SimpleNamespace(form="auto", backend=backend)) == ("auto", None)
    assert calls == [("cpu", "reference", "auto")] * 2
    assert training._lion_form(SimpleNamespace(form="chunk", backend="triton")) == ("chunk", None)
    assert len(calls) == 2
