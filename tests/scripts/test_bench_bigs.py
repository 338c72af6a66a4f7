"""`bizoo bench bigs` and `bizoo bench bigs-model` on a CPU with tiny shapes: the rows, the ratios to the torch.fft
baseline, the agreement of every form with it, the growth factors, the JSON and the errors. No timing is asserted."""

import json
import os

import pytest
import torch

from bizoo.kernels.ssm import bidirectional_ssm, s4d_init, s4d_kernel
from bizoo.scripts import bench
from bizoo.scripts.bench import bigs

# One thread: tiny cases gain nothing from more, and on a busy machine threads waiting on each other cost the most.
TINY = ["bigs", "--device", "cpu", "--threads", "1", "--channels", "8", "--state-size", "4", "--chunk-size", "16",
        "--repeats", "1", "--warmup", "0"]
INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"


def run_json(tmp_path, *argv):
    out = tmp_path / "bench.json"
    assert bench.main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


pytestmark = pytest.mark.usefixtures("keep_threads")


def check_ok(row):
    assert row["status"] == "ok", row
    for mode in ("fwd", "fwdbwd"):
        assert row[f"{mode}_ms"] > 0 and row[f"{mode}_min_ms"] > 0
        assert row[f"speedup_vs_fft_baseline_{mode}"] > 0
    assert row["max_abs_output"] > 0


def test_fft_baseline_is_the_op():
    """The baseline (the original code's torch.fft convolution, flips for the backward direction) computes the op."""
    g = torch.Generator().manual_seed(0)
    u_fwd, u_bwd = torch.randn(2, 2, 40, 6, generator=g, dtype=torch.float64)
    params = [s4d_init(4, "lin", generator=g, dtype=torch.float64) for _ in range(2)]
    k_fwd, k_bwd = (s4d_kernel(p["log_step"], p["A_re"], p["A_im"], p["C"], 40) for p in params)
    d_fwd, d_bwd = torch.tensor([0.5], dtype=torch.float64), torch.tensor([-1.5], dtype=torch.float64)
    y_fwd, y_bwd = bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, form="toeplitz", backend="reference")
    torch.testing.assert_close(bigs.fft_baseline(u_fwd, k_fwd, d_fwd).double(), y_fwd, rtol=0, atol=1e-5)
    torch.testing.assert_close(bigs.fft_baseline(u_bwd, k_bwd, d_bwd, reverse=True).double(), y_bwd, rtol=0,
                               atol=1e-5)


def test_bench_bigs_in_child_processes(tmp_path, capsys):
    """The CPU path: one child process per case (peak memory its own); the forms against the baseline."""
    methods = ["reference-toeplitz", "reference-recurrent"]
    record = run_json(tmp_path, *TINY, "--lengths", "64", "--methods", *methods)
    rows = record["rows"]
    assert [r["method"] for r in rows] == ["fft-baseline", *methods]  # the baseline always, and first
    for r in rows:
        check_ok(r)
        assert (r["length"], r["batch"], r["channels"], r["state_size"]) == (64, 1, 8, 4)
        assert r["fwd_peak_mib"] >= 0 and r["fwdbwd_peak_mib"] >= 0
        assert r["max_abs_diff"] < 1e-4 * max(1.0, r["max_abs_output"])  # fp32: every form is the baseline's op
    base = rows[0]
    assert base["max_abs_diff"] == 0 and base["speedup_vs_fft_baseline_fwd"] == 1.0
    assert [r["runs_form"] for r in rows] == ["fft", "toeplitz", "recurrent"]
    assert record["batch"] == 1 and record["tokens"] is None and record["dtype"] == "float32"
    assert record["growth"] == []  # one length: nothing grows
    text = capsys.readouterr().out
    for expected in ("B = 1 (fixed)", "H = 8 channels", "N = 4", "median of 1 runs", "base/fwd+bwd", "max|diff|",
                     "one process per case", "cores"):
        assert expected in text


def test_bench_bigs_growth_and_tokens(tmp_path, capsys, in_process):
    argv = [*TINY, "--lengths", "16", "32", "64", "--methods", "reference-fft", "reference-recurrent"]
    record = run_json(tmp_path, *argv, "--plot", str(tmp_path / "bigs.png"))
    rows = record["rows"]
    assert [(r["length"], r["method"]) for r in rows] == [
        (L, m) for L in (16, 32, 64) for m in ("fft-baseline", "reference-fft", "reference-recurrent")
    ]
    for r in rows:
        check_ok(r)
        assert r["max_abs_diff"] < 1e-4 * max(1.0, r["max_abs_output"])
    growth = record["growth"]
    assert [(g["method"], g["from_length"], g["to_length"]) for g in growth] == [
        (m, a, b) for m in ("fft-baseline", "reference-fft", "reference-recurrent") for a, b in ((16, 32), (32, 64))
    ]
    for g in growth:
        assert g["tokens_factor"] == 2.0  # B = 1: B·L doubles
        assert g["tokens_log_factor"] == pytest.approx(2 * {16: 5 / 4, 32: 6 / 5}[g["from_length"]])
        assert g["fwd_time_factor"] > 0 and g["fwdbwd_time_factor"] > 0
    assert (tmp_path / "bigs.png").stat().st_size > 0
    text = capsys.readouterr().out
    assert "growth from one length to the next" in text and "16 -> 32" in text and "B·L·log L x" in text

    # B·L fixed: B = tokens // L.
    record = run_json(tmp_path, *TINY, "--lengths", "16", "64", "--tokens", "128", "--methods", "reference-fft",
                      "--modes", "fwdbwd")
    assert [(r["length"], r["batch"]) for r in record["rows"]] == [(16, 8), (16, 8), (64, 2), (64, 2)]
    assert all("fwd_ms" not in r and r["fwdbwd_ms"] > 0 for r in record["rows"])
    assert record["growth"][0]["tokens_factor"] == 1.0
    assert "B·L = 128 tokens" in capsys.readouterr().out


def test_bench_bigs_cpu_defaults_list_triton_as_unavailable(tmp_path, in_process):
    rows = run_json(tmp_path, *TINY, "--lengths", "32")["rows"]
    assert [r["method"] for r in rows] == ["fft-baseline", "reference-fft", "reference-recurrent", "reference-auto",
                                           "triton"]
    for r in rows[:-1]:
        check_ok(r)
        assert r["max_abs_diff"] < 1e-4 * max(1.0, r["max_abs_output"])
    assert rows[3]["runs_form"] == "toeplitz"  # reference-auto at L = 32, below the crossover
    # Not run on a CPU unless named, even where Triton's interpreter could run it.
    assert rows[-1]["status"].startswith("unavailable: no CUDA device") and "fwd_ms" not in rows[-1]


def test_bench_bigs_triton_rows_without_a_gpu_are_unavailable(tmp_path, monkeypatch, in_process):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = run_json(tmp_path, *TINY, "--lengths", "32", "--methods", "triton")["rows"]
    assert [r["method"] for r in rows] == ["fft-baseline", "triton"]
    check_ok(rows[0])
    assert rows[1]["status"].startswith("unavailable: ") and "fwd_ms" not in rows[1]
    assert not any(key.startswith("speedup") for key in rows[1])


@pytest.mark.skipif(not INTERPRETER, reason="Triton rows on a CPU need TRITON_INTERPRET=1")
def test_bench_bigs_triton_under_the_interpreter(tmp_path, in_process):
    rows = run_json(tmp_path, *TINY, "--lengths", "32", "--methods", "triton")["rows"]
    assert [r["method"] for r in rows] == ["fft-baseline", "triton"]
    for r in rows:
        check_ok(r)
        assert r["max_abs_diff"] < 1e-4 * max(1.0, r["max_abs_output"])


def test_bench_bigs_model_tiny(tmp_path, capsys):
    record = run_json(tmp_path, "bigs-model", "--device", "cpu", "--lengths", "16", "32", "--tokens-per-step", "64",
                      "--layers", "1", "--hidden", "32", "--heads", "2", "--vocab-size", "100", "--steps", "1",
                      "--warmup-steps", "0")
    assert [(r["length"], r["batch"], r["model"]) for r in record["rows"]] == [
        (16, 4, "bert-sdpa"), (16, 4, "bigs"), (32, 2, "bert-sdpa"), (32, 2, "bigs")
    ]
    for r in record["rows"]:
        assert r["status"] == "ok", r
        assert r["tokens_per_s"] > 0 and r["step_ms"] > 0 and r["parameters"] > 0
        if r["model"] == "bigs":
            assert r["speedup_vs_bert"] > 0
    assert record["precision"] == "fp32" and record["preset"] == "large-512"
    assert (record["bigs_layers"], record["bert_layers"], record["bigs_intermediate"]) == (1, 1, 96)
    text = capsys.readouterr().out
    assert "BiGS/BERT" in text and "median of 1 steps" in text and "1 layers x 32, gate 96" in text


def test_bench_bigs_model_default_sizes_are_the_large_models():
    parser = bench.argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["bigs-model"])
    assert (args.layers, args.hidden, args.heads, args.lengths) == (None, 1024, 16, [128, 512, 4096])
    args = parser.parse_args(["bigs"])
    assert args.channels == 1024 and args.lengths is None and args.methods is None


@pytest.mark.parametrize(
    "argv",
    [
        ["bigs", "--device", "tpu"],
        ["bigs", "--device", "cpu", "--lengths", "0"],
        ["bigs", "--device", "cpu", "--channels", "0"],
        ["bigs", "--device", "cpu", "--repeats", "0"],
        ["bigs", "--device", "cpu", "--warmup", "-1"],
        ["bigs", "--device", "cpu", "--tokens", "64", "--batch", "2"],
        ["bigs-model", "--device", "cpu", "--hidden", "30", "--heads", "4"],
        ["bigs-model", "--device", "cpu", "--layers", "0"],
        ["bigs-model", "--device", "cpu", "--warmup-steps", "-1"],
    ],
)
def test_bench_bigs_bad_arguments_exit_2(argv, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert f"bizoo bench {argv[0]}: error: " in err


@pytest.mark.parametrize("argv", [["bigs", "--methods", "fft"], ["bigs-model", "--form", "attention"]])
def test_bench_bigs_unknown_choices_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
