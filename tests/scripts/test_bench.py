"""`bizoo bench` (lion, lion-crossover, lion-model, lion-forms) and `python -m bizoo.scripts.gpu_check`, on a CPU with
tiny shapes: the rows, their statuses and ratio columns, the JSON and the plot. No timing is asserted."""

import json
import os
import sys

import pytest
import torch

from bizoo.kernels import lion as lion_kernels
from bizoo.scripts import bench, gpu_check

TINY = ["--device", "cpu", "--tokens", "256", "--heads", "2", "--head-dim", "8", "--repeats", "1"]
INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
STEP_KEYS = ["gpu_tests", "bench_lion", "bench_lion_crossover", "bench_lion_model", "bench_crf", "bench_lstm",
             "bench_bigs", "bench_bigs_model"]


def read_rows(path):
    return json.loads(path.read_text())["rows"]


def test_bench_lion_rows_ratios_json_and_plot(tmp_path, capsys):
    out = tmp_path / "lion.json"
    plot = tmp_path / "lion.png"
    code = bench.main(["lion", *TINY, "--lengths", "64", "128", "--json", str(out), "--plot", str(plot)])
    assert code == 0
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [(r["length"], r["method"]) for r in rows] == [
        (L, m) for L in (64, 128) for m in ("sdpa", "reference-chunk", "reference-attention")
    ]
    for r in rows:
        assert r["status"] == "ok", r
        assert r["batch"] == 256 // r["length"] and r["heads"] == 2 and r["head_dim"] == 8
        for mode in ("fwd", "fwdbwd"):
            assert r[f"status_{mode}"] == "ok"
            assert r[f"{mode}_ms"] > 0 and r[f"{mode}_peak_mib"] >= 0
            assert r[f"speedup_vs_sdpa_{mode}"] > 0 and r[f"speedup_vs_reference_chunk_{mode}"] > 0
        if r["method"] == "sdpa":
            assert r["speedup_vs_sdpa_fwd"] == r["speedup_vs_sdpa_fwdbwd"] == 1.0
        if r["method"] == "reference-chunk":
            assert r["speedup_vs_reference_chunk_fwdbwd"] == 1.0
            assert (r["backend"], r["form"]) == ("reference", "chunk")
    assert record["dtype"] == "float32" and record["repeats"] == 1 and record["device"] == "cpu"
    assert plot.stat().st_size > 0
    text = capsys.readouterr().out
    expected_text = ("median of 1", "float32", "B·L = 256 tokens", "H = 2, D = 8", "cores", "sdpa/fwd+bwd", "chunk/fwd")
    for expected in expected_text:
        assert expected in text


def test_bench_lion_triton_rows_without_a_gpu_are_unavailable(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "lion.json"
    methods = ["triton-chunk", "triton-parallel", "triton-auto"]
    assert bench.main(["lion", *TINY, "--lengths", "64", "--methods", *methods, "--json", str(out)]) == 0
    rows = read_rows(out)
    assert [r["method"] for r in rows] == methods
    forms = [(r["backend"], r["form"]) for r in rows]
    assert forms == [("triton", "chunk"), ("triton", "attention"), ("triton", "auto")]
    for r in rows:
        assert r["status"].startswith("unavailable: ") and "fwd_ms" not in r
        assert not any(key.startswith("speedup") for key in r)  # no SDPA row to compare with, no times


@pytest.mark.skipif(not INTERPRETER, reason="Triton rows on a CPU need TRITON_INTERPRET=1")
def test_bench_lion_triton_rows_under_the_interpreter(tmp_path):
    out = tmp_path / "lion.json"
    methods = ["reference-chunk", "triton-chunk", "triton-parallel"]
    argv = ["lion", *TINY, "--lengths", "64", "--modes", "fwdbwd", "--methods", *methods, "--json", str(out)]
    code = bench.main(argv)
    assert code == 0
    rows = read_rows(out)
    assert [r["method"] for r in rows] == methods
    for r in rows:
        if r["status"] != "ok":  # the Triton kernels are not there (yet): a row with a reason, not a crash
            assert r["backend"] == "triton" and r["status"].startswith("unavailable: "), r
            continue
        assert r["fwdbwd_ms"] > 0 and r["speedup_vs_reference_chunk_fwdbwd"] > 0 and "fwd_ms" not in r


def test_bench_lion_skips_what_does_not_fit_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "_available_bytes", lambda: 1)  # 1 byte free: nothing fits, no child is started
    out = tmp_path / "lion.json"
    assert bench.main(["lion", *TINY, "--lengths", "64", "--json", str(out)]) == 0
    for r in read_rows(out):
        assert r["status_fwd"].startswith("not run: needs ~") and r["status_fwdbwd"].startswith("not run: needs ~")
        assert r["status"].startswith("fwd: not run: needs ~") and "fwd_ms" not in r

    # The forward fits, forward+backward does not: one row with both statuses.
    monkeypatch.setattr(bench, "_available_bytes", lambda: 2**40)
    monkeypatch.setattr(bench, "estimate_bytes", lambda case, mode: 0 if mode == "fwd" else 2**50)
    assert bench.main(["lion", *TINY, "--lengths", "64", "--methods", "reference-chunk", "--json", str(out)]) == 0
    (row,) = read_rows(out)
    assert row["status_fwd"] == "ok" and row["fwd_ms"] > 0
    assert row["status_fwdbwd"].startswith("not run") and "fwdbwd_ms" not in row
    assert row["status"].startswith("fwd: ok; fwd+bwd: not run")


def test_crossover_length():
    assert bench.crossover_length([(64, False), (128, True), (256, True)]) == 128
    assert bench.crossover_length([(64, True), (128, True)]) == 64
    assert bench.crossover_length([(64, True), (128, False)]) is None
    assert bench.crossover_length([(64, True), (128, False), (256, True)]) == 256  # a win must hold from there on
    assert bench.crossover_length([]) is None


def test_bench_lion_crossover(tmp_path, capsys):
    out = tmp_path / "crossover.json"
    code = bench.main(["lion-crossover", *TINY, "--lengths", "128", "64", "--json", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [(r["backend"], r["length"], r["batch"]) for r in rows] == [("reference", 64, 4), ("reference", 128, 2)]
    for r in rows:
        assert r["chunk_status"] == r["attention_status"] == "ok"
        assert r["chunk_ms"] > 0 and r["attention_ms"] > 0
        assert r["chunk_faster"] == (r["chunk_ms"] < r["attention_ms"])
        assert r["attention_over_chunk"] == pytest.approx(r["attention_ms"] / r["chunk_ms"])
    summary = record["crossover"]["reference"]
    assert summary["constant"] == "REFERENCE_CHUNK_MIN_LENGTH"
    assert summary["current"] == getattr(lion_kernels, "REFERENCE_CHUNK_MIN_LENGTH", None)
    assert summary["measured"] == bench.crossover_length([(r["length"], r["chunk_faster"]) for r in rows])
    text = capsys.readouterr().out
    assert "REFERENCE_CHUNK_MIN_LENGTH (reference on cpu): measured" in text and "median of 1" in text


def test_bench_lion_crossover_without_triton_records_why(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "crossover.json"
    assert bench.main(["lion-crossover", *TINY, "--lengths", "64", "--backends", "triton", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert row["chunk_status"].startswith("unavailable: ") and "chunk_faster" not in row
    assert record["crossover"]["triton"]["measured"] is None
    assert "TRITON_CHUNK_MIN_LENGTH (triton on cpu): measured not measured" in capsys.readouterr().out


def test_bench_lion_model_tiny(tmp_path, capsys):
    out = tmp_path / "model.json"
    code = bench.main(
        ["lion-model", "--device", "cpu", "--lengths", "32", "64", "--tokens-per-step", "128", "--layers", "1",
         "--hidden", "32", "--heads", "2", "--vocab-size", "200", "--steps", "1", "--warmup-steps", "1",
         "--json", str(out)]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert [(r["length"], r["batch"], r["model"]) for r in record["rows"]] == [
        (32, 4, "bert-sdpa"), (32, 4, "lion-d"), (64, 2, "bert-sdpa"), (64, 2, "lion-d")
    ]
    for r in record["rows"]:
        assert r["status"] == "ok", r
        assert r["tokens_per_s"] > 0 and r["step_ms"] > 0 and r["parameters"] > 0
        if r["model"] == "lion-d":
            assert r["speedup_vs_bert"] > 0
    assert record["precision"] == "fp32" and record["lion_form"] in ("auto", "chunk")
    text = capsys.readouterr().out
    assert "LION/BERT" in text and "median of 1 steps" in text and "1 layers x 32" in text


def test_bench_lion_forms_json(tmp_path):
    out = tmp_path / "forms.json"
    assert bench.main(["lion-forms", "--lengths", "32", "--heads", "2", "--head-dim", "8", "--chunk-size", "8",
                       "--json", str(out)]) == 0
    rows = read_rows(out)
    assert {(r["decay"], r["form"]) for r in rows} == {(d, f) for d in ("lit", "d", "s") for f in ("rnn", "chunk")}
    assert all(r["max_abs_diff"] < 1e-4 for r in rows)


@pytest.mark.parametrize(
    "argv",
    [
        ["lion", "--device", "tpu"],
        ["lion", "--device", "cpu", "--lengths", "0"],
        ["lion-crossover", "--device", "cpu", "--repeats", "0"],
        ["lion-model", "--device", "cpu", "--hidden", "30", "--heads", "4"],
    ],
)
def test_bench_bad_arguments_exit_2(argv, capsys):
    assert bench.main(argv) == 2
    assert "bizoo bench lion" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine this runs the real benchmarks")
def test_gpu_check_quick_on_a_cpu(tmp_path, capsys):
    out = tmp_path / "check"
    assert gpu_check.main([str(out), "--quick", "--skip-tests"]) == 0
    summary = (out / "summary.md").read_text()
    assert "no CUDA device" in summary and "skipped: --skip-tests" in summary
    assert f"| torch | {torch.__version__} |" in summary
    for name in ("bench lion", "bench lion-crossover", "bench lion-model", "bench lstm", "bench bigs",
                 "bench bigs-model"):
        assert f"| {name} | skipped: no CUDA device |" in summary
    record = json.loads((out / "summary.json").read_text())
    assert [s["key"] for s in record["steps"]] == STEP_KEYS
    assert (out / "environment.txt").read_text().startswith("date (UTC): ")


def test_gpu_check_steps_record_failures_and_timeouts(tmp_path):
    env = dict(os.environ)
    log = tmp_path / "step.log"
    failing = [sys.executable, "-c", "import sys; print('a table'); sys.exit(3)"]
    assert gpu_check.run_step(failing, log, 60, env) == "failed (exit code 3)"
    assert "a table" in log.read_text()
    slow = [sys.executable, "-c", "import time; print('partial', flush=True); time.sleep(60)"]
    assert gpu_check.run_step(slow, log, 2, env).startswith("timeout after 2 s")
    assert "partial" in log.read_text() and "time limit" in log.read_text()


def test_gpu_check_plan_covers_every_step(tmp_path):
    for quick in (False, True):
        steps = gpu_check.plan(tmp_path, quick)
        assert [s["key"] for s in steps] == STEP_KEYS
        assert sum(s["timeout"] for s in steps) <= 540  # the whole check stays under 9 minutes
        tests = steps[0]["command"]
        assert tests[1:4] == ["-m", "pytest", "-q"] and "tests/kernels/test_lion_triton.py" in tests
        assert steps[0]["env"] == {"BIZOO_TRITON_AUTOTUNE": "0"}  # one compile per kernel in the tests
        lion, model = steps[1]["command"], steps[3]["command"]
        assert "bfloat16" in lion and "--plot" in lion and "--json" in lion
        assert ("4096" in model) != quick
    # Every benchmark command parses.
    for step in gpu_check.plan(tmp_path, False)[1:] + gpu_check.plan(tmp_path, True)[1:]:
        parser = bench.argparse.ArgumentParser()
        bench.add_arguments(parser)
        parser.parse_args(step["command"][3:])
