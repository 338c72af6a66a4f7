"""`bizoo bench lstm` on a CPU with tiny shapes: the rows of both parts, the ratios to their baselines (torch.nn.LSTM,
the per-step loop), the agreement of every method with the reference, the Triton rows, the JSON, the plot, the
GPU-check step and the errors. No timing is asserted."""

import json
import os

import pytest
import torch

from bizoo.kernels import lstm as lstm_kernels
from bizoo.scripts import bench
from bizoo.scripts.bench import gpu_check, lstm, registry

# One thread: tiny cases gain nothing from more, and on a busy machine threads waiting on each other cost the most.
TINY = ["lstm", "--device", "cpu", "--threads", "1", "--batch-sizes", "3", "--lengths", "6", "--hidden", "8",
        "--elmo-batch-sizes", "2", "--elmo-lengths", "3", "--repeats", "1", "--warmup", "0"]
INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"


def run_json(tmp_path, *argv):
    out = tmp_path / "lstm.json"
    assert bench.main([*TINY, *argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


pytestmark = pytest.mark.usefixtures("keep_threads")


def check_ok(row, baseline_key):
    assert row["status"] == "ok", row
    for mode in ("fwd", "fwdbwd"):
        assert row[f"{mode}_ms"] > 0 and row[f"{mode}_min_ms"] > 0
        assert row[f"speedup_vs_{baseline_key}_{mode}"] > 0
    assert row["max_abs_output"] > 0
    assert row["max_abs_diff"] < 1e-5 * max(1.0, row["max_abs_output"])  # fp32: every method computes the op


def test_bench_lstm_in_child_processes(tmp_path, capsys):
    """The CPU path: one child process per case; nn.LSTM, padded and packed, and torch.lstm against the loop."""
    record = run_json(tmp_path, "--part", "lstm", "--methods", "native", "nn-lstm-packed")
    rows = record["rows"]
    assert [r["method"] for r in rows] == ["nn-lstm", "native", "nn-lstm-packed"]  # the baseline always, first
    for r in rows:
        check_ok(r, "nn_lstm")
        assert (r["part"], r["batch"], r["length"], r["hidden"], r["input_size"]) == ("lstm", 3, 6, 8, 8)
        assert r["projection"] is None and r["clip"] is None
        assert r["fwd_peak_mib"] >= 0 and r["fwdbwd_peak_mib"] >= 0
    assert rows[0]["speedup_vs_nn_lstm_fwd"] == rows[0]["speedup_vs_nn_lstm_fwdbwd"] == 1.0
    assert [(r["backend"], r["form"]) for r in rows] == [("torch", "nn.LSTM"), ("reference", "native"),
                                                          ("torch", "nn.LSTM packed")]
    assert record["parts"] == ["lstm"] and record["dtype"] == "float32" and record["repeats"] == 1
    assert record["triton_vs_native"] == []  # no triton row
    text = capsys.readouterr().out
    for expected in ("torch.nn.LSTM(I, H, bidirectional=True, batch_first=True) on the whole padded tensor",
                     "nn/fwd+bwd", "max|diff|", "input projection", "one process per case", "median of 1 runs",
                     "between L/2 and L", "cores"):
        assert expected in text
    assert "LSTMP" not in text


def test_bench_lstm_both_parts_json_and_plot(tmp_path, capsys, in_process):
    plot = tmp_path / "lstm.png"
    record = run_json(tmp_path, "--plot", str(plot))
    rows = record["rows"]
    # The CPU defaults: triton listed as unavailable (not named), then native and the loop; part lstmp: the
    # autograd loop and nn.LSTM(proj_size=P) (its baselines), triton, the loop with its written-out backward.
    assert [(r["part"], r["method"]) for r in rows] == [
        ("lstm", "nn-lstm"), ("lstm", "triton"), ("lstm", "native"), ("lstm", "loop"),
        ("lstmp", "autograd-loop"), ("lstmp", "nn-lstm-proj"), ("lstmp", "triton"), ("lstmp", "loop"),
    ]
    for r in rows:
        if r["method"] == "triton":
            assert r["status"].startswith("unavailable: no CUDA device") and "fwd_ms" not in r
            assert not any(key.startswith("speedup") for key in r)
        else:
            check_ok(r, "nn_lstm" if r["part"] == "lstm" else "loop")
        if r["part"] == "lstmp" and r["method"] != "triton":
            check_ok(r, "nn_lstm_proj")  # the second ratio of part lstmp: the unclipped nn.LSTM(proj_size=P)
    elmo, yardstick = rows[4], rows[5]
    assert (elmo["elmo"], elmo["hidden"], elmo["projection"], elmo["input_size"]) == ("small", 1024, 128, 128)
    assert (elmo["batch"], elmo["length"], elmo["clip"]) == (2, 3, 3.0)
    assert elmo["max_abs_diff"] == 0 and elmo["speedup_vs_loop_fwdbwd"] == 1.0
    assert (yardstick["backend"], yardstick["form"], yardstick["clip"]) == ("torch", "nn.LSTM proj_size", None)
    assert yardstick["speedup_vs_nn_lstm_proj_fwdbwd"] == 1.0
    assert record["elmo_sizes"] == ["small"] and record["parts"] == ["lstm", "lstmp"]
    assert plot.stat().st_size > 0
    text = capsys.readouterr().out
    for expected in ("LSTMP (ELMo)", "small 1024/128", "cell_clip = proj_clip = 3", "loop/fwd+bwd", "ELMo cells",
                     "proj_size=P", "nnP/fwd+bwd", "within 1.5x of the unclipped nn.LSTM"):
        assert expected in text


def test_bench_lstm_triton_without_a_gpu_is_unavailable(tmp_path, monkeypatch, in_process):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = run_json(tmp_path, "--part", "lstm", "--methods", "triton")["rows"]
    assert [r["method"] for r in rows] == ["nn-lstm", "triton"]
    check_ok(rows[0], "nn_lstm")
    assert rows[1]["status"].startswith("unavailable: ") and "fwd_ms" not in rows[1]


@pytest.mark.skipif(not INTERPRETER, reason="Triton rows on a CPU need TRITON_INTERPRET=1")
def test_bench_lstm_triton_under_the_interpreter(tmp_path, in_process):
    """The Triton rows (the step schedule), forward+backward, at minuscule shapes: an LSTM, and ELMo small's clipped
    LSTMP."""
    argv = ["--batch-sizes", "2", "--lengths", "4", "--hidden", "16", "--elmo-batch-sizes", "1", "--elmo-lengths",
            "2", "--methods", "triton", "--modes", "fwdbwd"]
    rows = run_json(tmp_path, *argv)["rows"]
    assert [(r["part"], r["method"]) for r in rows] == [
        ("lstm", "nn-lstm"), ("lstm", "triton"), ("lstmp", "autograd-loop"), ("lstmp", "nn-lstm-proj"),
        ("lstmp", "triton"),
    ]
    assert [(r["backend"], r["form"]) for r in rows if r["backend"] == "triton"] == [("triton", "steps")] * 2
    if lstm_kernels.bilstm_triton_steps is None:  # the kernels are not there: a row with the reason, not a crash
        assert all(r["status"].startswith("unavailable: ") for r in rows if r["backend"] == "triton")
        return
    for r in rows:
        assert r["status"] == "ok", r
        assert r["fwdbwd_ms"] > 0 and "fwd_ms" not in r
        assert r["speedup_vs_" + ("nn_lstm" if r["part"] == "lstm" else "loop") + "_fwdbwd"] > 0
        assert r["max_abs_diff"] < 1e-5 * max(1.0, r["max_abs_output"])


def test_nn_lstm_baseline_is_compared_where_it_computes_the_op():
    """torch.nn.LSTM on the padded tensor is the same LSTM (same weights) in the forward direction and in the full
    rows; in the backward direction of a padded row it reads the padding first, so it differs there."""
    case = {"batch": 4, "length": 7, "hidden": 8, "input_size": 5, "projection": None}
    x, mask, weights, _ = lstm.lstm_inputs(case, torch.device("cpu"), torch.float32)
    assert mask[0].all() and not mask.all() and (mask.sum(1) >= 4).all()  # right-padded, rows between L/2 and L
    fn, leaves = lstm.lstm_function("nn-lstm", x, mask, weights, None)
    assert len(leaves) == 1 + 8  # x and the module's weights and biases of both directions
    agreement = lstm.lstm_agreement("nn-lstm", fn, x, mask, weights, None)
    assert agreement["max_abs_diff"] < 1e-5
    everywhere = lstm.lstm_agreement("nn-lstm-packed", fn, x, mask, weights, None)  # compared at every position
    assert everywhere["max_abs_diff"] > 1e-3


def test_nn_lstm_proj_yardstick_is_the_unclipped_lstmp():
    """nn-lstm-proj: torch.nn.LSTM(proj_size=P) holding the same weights (the projection's too) computes the LSTMP
    without clipping where it reads no padding first; the clipped reference differs from it (the clip bites here)."""
    case = {"batch": 4, "length": 7, "hidden": 8, "input_size": 5, "projection": 3}
    x, mask, weights, _ = lstm.lstm_inputs(case, torch.device("cpu"), torch.float32)
    weights = tuple(w * 40 for w in weights)  # cells beyond the clip
    fn, leaves = lstm.lstm_function("nn-lstm-proj", x, mask, weights, 3.0)
    assert len(leaves) == 1 + 10  # x and, per direction, W_ih, W_hh, b_ih, b_hh, W_hr
    assert fn().shape == (4, 7, 2, 3)
    same = lstm.lstm_agreement("nn-lstm-proj", fn, x, mask, weights, 3.0)
    assert same["max_abs_output"] > 3 and same["max_abs_diff"] < 1e-5 * same["max_abs_output"]
    clipped = lstm.lstm_agreement("nn-lstm", fn, x, mask, weights, 3.0)  # the same outputs against the clipped op
    assert clipped["max_abs_diff"] > 0.1


def test_every_method_is_a_choice_with_its_backend_and_form():
    assert lstm.METHODS["triton"] == ("triton", "steps") and "triton-steps" not in lstm.METHODS
    assert lstm.METHODS["nn-lstm-proj"] == ("torch", "nn.LSTM proj_size")
    assert lstm.default_methods("cuda") == ["triton", "native", "loop"]
    assert lstm.default_methods("cpu") == ["triton", "native", "loop"]  # the interpreter only when named
    assert registry.LSTMP.always == ("autograd-loop", "nn-lstm-proj")
    parser = bench.argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert parser.parse_args(["lstm", "--methods", "triton", "nn-lstm-proj"]).methods == ["triton", "nn-lstm-proj"]


def test_triton_vs_native_from_rows():
    def row(method, length, ms):
        return {"part": "lstm", "method": method, "batch": 32, "hidden": 256, "length": length, "fwdbwd_ms": ms}

    rows = [row("nn-lstm", 32, 1.0), row("triton", 32, 1.0), row("native", 32, 2.0), row("triton", 128, 4.0),
            row("native", 128, 3.0)]
    (entry,) = lstm.triton_vs_native(rows)
    assert entry["native_over_triton_fwdbwd"] == {32: 2.0, 128: 0.75} and not entry["triton_at_least_as_fast"]
    rows[-1]["fwdbwd_ms"] = 4.0
    assert lstm.triton_vs_native(rows)[0]["triton_at_least_as_fast"]
    rows[-1].pop("fwdbwd_ms")  # not measured at every L: not a verdict of "at least as fast"
    assert not lstm.triton_vs_native(rows)[0]["triton_at_least_as_fast"]


def test_bench_lstm_defaults():
    parser = bench.argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["lstm"])
    assert (args.part, args.dtype, args.methods, args.hidden, args.input_size) == ("both", "float32", None, None, None)
    cuda = {**registry.LSTM.defaults("cuda"), **registry.LSTMP.defaults("cuda")}
    assert (cuda["batch_sizes"], cuda["lengths"], cuda["hidden"]) == ([32, 128], [32, 128, 512], [100, 200, 256, 512])
    assert (cuda["elmo_batch_sizes"], cuda["elmo_lengths"], cuda["elmo_sizes"]) == ([32, 128], [20, 64],
                                                                                     ["original", "medium", "small"])
    from bizoo import ElmoConfig

    config = ElmoConfig()  # the original ELMo
    assert registry.ELMO_SIZES["original"] == (config.lstm_size, config.projection_size)
    assert registry.ELMO_CLIP == config.cell_clip == config.proj_clip


def test_gpu_check_runs_bench_lstm(tmp_path):
    for quick in (False, True):
        (step,) = [s for s in gpu_check.plan(tmp_path, quick) if s["key"] == "bench_lstm"]
        assert step["needs_cuda"] and step["log"] == tmp_path / "bench_lstm.txt"
        command = step["command"]
        assert command[3] == "lstm" and str(tmp_path / "bench_lstm.json") in command and "--plot" in command
        assert "--hidden" in command  # a grid sized to the step's time limit (the default GPU grid outran it)
        assert ("--elmo-lengths" in command) != quick  # the full check times the clipped LSTMP at both lengths


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hidden", "0"], "--hidden must be >= 1"),
        (["--hidden", "8", "-4"], "--hidden must be >= 1"),
        (["--input-size", "0"], "--input-size must be >= 1"),
        (["--lengths", "0"], "--lengths must be >= 1"),
        (["--elmo-batch-sizes", "0"], "--elmo-batch-sizes must be >= 1"),
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--warmup", "-1"], "--warmup must be >= 0"),
        (["--device", "tpu"], "--device must be cpu or cuda"),
    ],
)
def test_bench_lstm_bad_values_exit_2(argv, message, capsys):
    assert bench.main([*TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo bench lstm: error: ") and message in err


@pytest.mark.parametrize("argv", [["--methods", "cudnn"], ["--elmo-sizes", "large"], ["--part", "gru"]])
def test_bench_lstm_unknown_choices_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main([*TINY, *argv])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
