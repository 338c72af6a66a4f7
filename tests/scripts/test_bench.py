"""`bizoo bench` (lion, lion-crossover, lion-model, lion-forms, models) and `python -m bizoo.scripts.gpu_check`, on a
CPU with tiny shapes: the rows, their statuses and ratio columns, the JSON and the plot. No timing is asserted."""

import json
import math
import os
import runpy
import sys
from pathlib import Path

import pytest
import torch

from bizoo.kernels import lion as lion_kernels
from bizoo.scripts import bench
from bizoo.scripts.bench import gpu_check, harness, lion, lion_forms, registry

TINY = ["--device", "cpu", "--tokens", "256", "--heads", "2", "--head-dim", "8", "--repeats", "1"]
INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
STEP_KEYS = ["gpu_tests", "bench_lion", "bench_lion_crossover", "bench_lion_model", "bench_crf", "bench_lstm",
             "bench_bigs", "bench_bigs_model"]
LION_STEPS = ["env", "lion-tests", "lion-launches", "lion-states", "bench-lion", "bench-lion-crossover", "lion-model"]
LION_STEP_KEYS = ["lion_tests", "lion_launches", "lion_states", "bench_lion_s", "bench_lion_lit",
                  "bench_lion_crossover", "bench_lion_model"]


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
    expected_text = ("median of 1", "float32", "B·L = 256 tokens", "H = 2, D = 8", "cores", "sdpa/fwd+bwd",
                     "chunk/fwd", "fwd GB/s", "fwd+bwd %HBM", "fwd+bwd floor", "HBM peak used: - (none on a CPU")
    for expected in expected_text:
        assert expected in text
    # No peak on a CPU without --hbm-gbs: the achieved GB/s, not the %HBM or the floor.
    assert record["hbm_gbs"] is None and record["l2_flush_bytes"] == 0
    for r in rows:
        assert r["fwd_bytes"] == lion.lion_traffic_bytes(r, "fwd") and r["fwdbwd_gbs"] > 0
        assert "fwd_hbm_pct" not in r and "fwdbwd_floor_ms" not in r


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
    methods = ["triton-chunk", "triton-parallel", "reference-chunk"]
    argv = ["lion", *TINY, "--lengths", "64", "--modes", "fwdbwd", "--methods", *methods, "--json", str(out)]
    code = bench.main(argv)
    assert code == 0
    rows = read_rows(out)
    # The baseline first: reference-chunk (its chunk/x column).
    assert [r["method"] for r in rows] == ["reference-chunk", "triton-chunk", "triton-parallel"]
    for r in rows:
        if r["status"] != "ok":  # the Triton kernels are not there (yet): a row with a reason, not a crash
            assert r["backend"] == "triton" and r["status"].startswith("unavailable: "), r
            continue
        assert r["fwdbwd_ms"] > 0 and r["speedup_vs_reference_chunk_fwdbwd"] > 0 and "fwd_ms" not in r


def test_bench_lion_fla_unavailable_when_it_does_not_import(tmp_path, monkeypatch, capsys):
    assert "fla-causal" in registry.LION.methods and registry.LION.methods["fla-causal"] == ("fla", "causal-chunk")
    monkeypatch.setitem(sys.modules, "fla", None)  # import fla... -> ModuleNotFoundError, whatever is installed
    out = tmp_path / "lion.json"
    assert bench.main(["lion", *TINY, "--lengths", "64", "--methods", "sdpa", "fla-causal", "--json", str(out)]) == 0
    sdpa, fla = read_rows(out)
    assert (sdpa["method"], sdpa["status"]) == ("sdpa", "ok") and sdpa["fwd_ms"] > 0
    assert (fla["method"], fla["backend"], fla["form"]) == ("fla-causal", "fla", "causal-chunk")
    assert fla["status"].startswith("unavailable: fla-core (fla.ops.simple_gla) does not import: ModuleNotFoundError: ")
    assert "'fla" in fla["status"]  # the import error itself: "No module named 'fla...'"
    assert fla["status_fwd"] == fla["status_fwdbwd"] == fla["status"]
    assert "fwd_ms" not in fla and "fwdbwd_gbs" not in fla and not any(key.startswith("speedup") for key in fla)
    text = capsys.readouterr().out
    assert "sdpa/fwd+bwd" in text
    assert "unavailable: fla-core (fla.ops.simple_gla) does not import: ModuleNotFoundError" in text


def fake_fla(monkeypatch, calls):
    """A stand-in for fla-core's chunk_simple_gla in sys.modules (the causal form, written out in torch) that records
    the layout of what it is given: so that fla-causal runs on a CPU."""
    import types

    def chunk_simple_gla(q, k, v, g=None, scale=None, **kwargs):  # (B, T, H, D); g (B, T, H)
        calls.append({"shape": tuple(q.shape), "contiguous": q.is_contiguous() and v.is_contiguous(),
                      "g": None if g is None else (tuple(g.shape), g.dtype, bool((g == g[:1, :1]).all())),
                      "scale": scale, "kwargs": kwargs})
        G = (torch.zeros(q.shape[:3]) if g is None else g.cumsum(1)).transpose(1, 2)  # (B, H, T)
        causal = torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).tril()
        w = torch.einsum("bthd,bshd->bhts", q, k) * (G[..., :, None] - G[..., None, :]).exp()
        return torch.einsum("bhts,bshd->bthd", torch.where(causal, w, 0.0), v), None

    ops = types.ModuleType("fla.ops")
    ops.simple_gla = types.ModuleType("fla.ops.simple_gla")
    ops.simple_gla.chunk_simple_gla = chunk_simple_gla
    for name, module in (("fla", types.ModuleType("fla")), ("fla.ops", ops), ("fla.ops.simple_gla", ops.simple_gla)):
        monkeypatch.setitem(sys.modules, name, module)


def test_bench_lion_fla_causal_runs_last_in_its_layout(tmp_path, monkeypatch, capsys, in_process):
    calls = []
    fake_fla(monkeypatch, calls)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # fla's kernels are Triton's: on a CPU only "interpreted"
    monkeypatch.setattr(lion, "fla_backward_refusal", lambda: "refused here (test)")
    out = tmp_path / "lion.json"
    argv = ["lion", *TINY, "--lengths", "32", "64", "--methods", "fla-causal", "sdpa", "reference-chunk",
            "--json", str(out)]
    assert bench.main(argv) == 0
    rows = read_rows(out)
    # fla-causal after the others at every length; B = 256 // L, transposed to (B, L, H, D), g (B, L, H) fp32.
    assert [(r["length"], r["method"]) for r in rows] == [
        (32, "sdpa"), (32, "reference-chunk"), (64, "sdpa"), (64, "reference-chunk"), (32, "fla-causal"),
        (64, "fla-causal")]
    assert {c["shape"] for c in calls} == {(8, 32, 2, 8), (4, 64, 2, 8)}
    assert all(c["contiguous"] and c["scale"] == 1.0 and c["kwargs"] == {} for c in calls)
    assert {c["g"][:2] for c in calls} == {((8, 32, 2), torch.float32), ((4, 64, 2), torch.float32)}
    for r in rows[4:]:
        # Decay s: the gated backward refused before anything runs; the forward timed, with its ratios.
        assert r["status_fwd"] == "ok" and r["status_fwdbwd"] == "unavailable: refused here (test)"
        sdpa = rows[0 if r["length"] == 32 else 2]
        assert r["speedup_vs_sdpa_fwd"] == pytest.approx(sdpa["fwd_ms"] / r["fwd_ms"])
        assert r["fwd_gbs"] > 0 and "fwdbwd_ms" not in r
    text = capsys.readouterr().out
    assert "fla-causal: after the other methods" in text

    # Decay lit: g=None and forward+backward through o; decay d: the (H,) decays broadcast to every position.
    calls.clear()
    for decay in ("lit", "d"):
        argv = ["lion", *TINY, "--lengths", "32", "--decay", decay, "--methods", "sdpa", "fla-causal",
                "--json", str(out)]
        assert bench.main(argv) == 0
        sdpa, fla = read_rows(out)
        assert fla["method"] == "fla-causal" and fla["status_fwd"] == "ok"
        assert fla["status_fwdbwd"] == ("ok" if decay == "lit" else "unavailable: refused here (test)")
    assert calls[0]["g"] is None and calls[-1]["g"] == ((8, 32, 2), torch.float32, True)


def test_lion_traffic_bytes_by_hand():
    row = {"method": "triton-chunk", "batch": 1, "heads": 2, "length": 4, "head_dim": 8, "dtype": "bfloat16",
           "decay": "s"}
    # N = B·H·L = 8 tokens·heads, bf16 (2 bytes), D = 8; the decay fp32, N values.
    # fwd: read q, k, v + write o = 4·2·8·8 = 512, + read the decay 4·8 = 32.
    # fwd+bwd: + read q, k, v, o, dO, write dq, dk, dv = 12·2·8·8 = 1536, + decay read twice, gradient written 96.
    assert lion.lion_traffic_bytes(row, "fwd") == 544
    assert lion.lion_traffic_bytes(row, "fwdbwd") == 1632
    assert lion.lion_traffic_bytes({**row, "method": "sdpa"}, "fwd") == 512  # SDPA has no decay
    assert lion.lion_traffic_bytes({**row, "method": "sdpa"}, "fwdbwd") == 1536
    # fp32, N = 2·3·5 = 30, D = 4: 4·4·30·4 = 1920 and 12·4·30·4 = 5760; decay d: 3 values (12 bytes) read once,
    # or read twice and their gradient written (36 bytes); lit: none.
    small = {**row, "batch": 2, "heads": 3, "length": 5, "head_dim": 4, "dtype": "float32"}
    assert lion.lion_traffic_bytes({**small, "decay": "lit"}, "fwd") == 1920
    assert lion.lion_traffic_bytes({**small, "decay": "lit"}, "fwdbwd") == 5760
    assert lion.lion_traffic_bytes({**small, "decay": "d"}, "fwd") == 1932
    assert lion.lion_traffic_bytes({**small, "decay": "d"}, "fwdbwd") == 5796
    with pytest.raises(ValueError, match="mode must be one of"):
        lion.lion_traffic_bytes(row, "bwd")

    # 544 bytes in 1 µs: 0.544 GB/s; at a 1 GB/s peak that is 54.4 % and the floor is 544 ns = 5.44e-4 ms.
    measured = {**row, "fwd_ms": 1e-3}
    lion.add_bandwidth(measured, ["fwd", "fwdbwd"], 1.0)
    assert measured["fwd_bytes"] == 544 and measured["fwdbwd_bytes"] == 1632
    assert measured["fwd_gbs"] == pytest.approx(0.544) and measured["fwd_hbm_pct"] == pytest.approx(54.4)
    assert measured["fwd_floor_ms"] == pytest.approx(5.44e-4) and measured["fwdbwd_floor_ms"] == pytest.approx(1.632e-3)
    assert "fwdbwd_gbs" not in measured and "fwdbwd_hbm_pct" not in measured  # no time: only the floor
    without_peak = {**row, "fwd_ms": 1e-3}
    lion.add_bandwidth(without_peak, ["fwd"], None)
    assert without_peak["fwd_gbs"] == pytest.approx(0.544) and "fwd_floor_ms" not in without_peak


def test_bench_lion_bandwidth_columns_with_a_given_peak(tmp_path, capsys):
    out = tmp_path / "lion.json"
    argv = ["lion", *TINY, "--lengths", "64", "--methods", "sdpa", "reference-chunk", "--hbm-gbs", "50",
            "--json", str(out)]
    assert bench.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["hbm_gbs"] == 50 and record["hbm_gbs_source"] == "--hbm-gbs"
    assert [r["method"] for r in record["rows"]] == ["sdpa", "reference-chunk"]
    for r in record["rows"]:
        assert r["status"] == "ok", r
        for mode in ("fwd", "fwdbwd"):
            nbytes = lion.lion_traffic_bytes(r, mode)
            assert r[f"{mode}_bytes"] == nbytes
            assert r[f"{mode}_gbs"] == pytest.approx(nbytes / r[f"{mode}_ms"] / 1e6)
            assert r[f"{mode}_hbm_pct"] == pytest.approx(2 * r[f"{mode}_gbs"])  # 100 · GB/s / 50
            assert r[f"{mode}_floor_ms"] == pytest.approx(nbytes / 50e6)
    lines = capsys.readouterr().out.splitlines()
    assert "HBM peak used: 50 GB/s (--hbm-gbs)" in lines
    (row,) = [line for line in lines if line.split()[2:3] == ["reference-chunk"]]
    floor = record["rows"][1]["fwdbwd_floor_ms"]
    assert row.split()[-1] == f"{floor:.3f}"  # the last column: the fwd+bwd floor in ms


def test_bench_lion_skips_what_does_not_fit_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "available_bytes", lambda: 1)  # 1 byte free: nothing fits, no child is started
    out = tmp_path / "lion.json"
    assert bench.main(["lion", *TINY, "--lengths", "64", "--json", str(out)]) == 0
    for r in read_rows(out):
        assert r["status_fwd"].startswith("not run: needs ~") and r["status_fwdbwd"].startswith("not run: needs ~")
        assert r["status"].startswith("fwd: not run: needs ~") and "fwd_ms" not in r

    # The forward fits, forward+backward does not: one row with both statuses.
    monkeypatch.setattr(harness, "available_bytes", lambda: 2**40)
    monkeypatch.setattr(lion, "estimate_bytes", lambda case, mode: 0 if mode == "fwd" else 2**50)
    assert bench.main(["lion", *TINY, "--lengths", "64", "--methods", "reference-chunk", "--json", str(out)]) == 0
    (row,) = read_rows(out)
    assert row["status_fwd"] == "ok" and row["fwd_ms"] > 0
    assert row["status_fwdbwd"].startswith("not run") and "fwdbwd_ms" not in row
    assert row["status"].startswith("fwd: ok; fwd+bwd: not run")


def test_crossover_length():
    assert lion_forms.crossover_length([(64, False), (128, True), (256, True)]) == 128
    assert lion_forms.crossover_length([(64, True), (128, True)]) == 64
    assert lion_forms.crossover_length([(64, True), (128, False)]) is None
    assert lion_forms.crossover_length([(64, True), (128, False), (256, True)]) == 256  # a win must hold from there on
    assert lion_forms.crossover_length([]) is None


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
    assert summary["measured"] == lion_forms.crossover_length([(r["length"], r["chunk_faster"]) for r in rows])
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


# bench models on tiny sizes: one thread (tiny cases gain nothing from more, and on a busy machine threads waiting on
# each other cost the most), ELMo and the taggers shrunk.
MODELS_TINY = ["models", "--device", "cpu", "--threads", "1", "--layers", "1", "--hidden", "32", "--heads", "2",
               "--vocab-size", "200", "--lengths", "16", "--tokens-per-step", "32", "--latency-runs", "3",
               "--tagger-hidden", "16", "--tags", "5", "--elmo-size", "small"]
MODEL_CLASSES = {"bert-sdpa": "BertForMaskedLM", "lion-d": "LionForMaskedLM", "lion-s": "LionForMaskedLM",
                 "bigs": "BiGSForMaskedLM", "lstm-crf": "LstmCrfTagger",
                 "bilstm-crf": "BiLstmCrfForTokenClassification", "elmo": "ElmoForMaskedLM"}


def modes_run(name):
    return ["eager"] if registry.MODELS[name].not_compiled else ["eager", "compiled"]


@pytest.mark.usefixtures("keep_threads")
def test_bench_models_eager_and_compiled_every_model(tmp_path, capsys):
    """bench models on a CPU (torch.compile with aot_eager): every model trains and runs inference eager and
    compiled (the nn.LSTM + pytorch-crf baseline eager only), with the compiled/eager ratios; the word+character
    models get char_ids."""
    out = tmp_path / "models.json"
    assert bench.main([*MODELS_TINY, "--steps", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [r["model"] for r in record["rows"]] == list(registry.MODELS)
    for r in record["rows"]:
        assert r["status"] == "ok", r
        for mode in modes_run(r["model"]):
            assert r["train"][mode]["tokens_per_s"] > 0 and r["latency"][mode]["latency_ms"] > 0
            assert r["train"][mode]["model_class"] == r["latency"][mode]["model_class"] == MODEL_CLASSES[r["model"]]
        if not registry.MODELS[r["model"]].not_compiled:
            assert r["compiled_speedup"]["train"] == pytest.approx(
                r["train"]["compiled"]["tokens_per_s"] / r["train"]["eager"]["tokens_per_s"])
            assert r["compiled_speedup"]["latency"] == pytest.approx(
                r["latency"]["eager"]["latency_ms"] / r["latency"]["compiled"]["latency_ms"])
        assert ("vs_baseline" in r) == (registry.MODELS[r["model"]].baseline is not None)
    assert record["backend"] == "aot_eager"
    assert "c/e" in capsys.readouterr().out


@pytest.mark.usefixtures("keep_threads")
def test_bench_models_latency_columns_and_baselines(tmp_path, capsys, monkeypatch):
    """bench models' inference latency and its baselines: naming lion-d, bilstm-crf and elmo runs BERT (SDPA) and the
    nn.LSTM + pytorch-crf tagger too, each before its models; every time is positive and finite, each ratio is the
    one of its two times (> 1: the bizoo model faster), the tagger baseline has the sizes of bizoo's BiLSTM-CRF, and
    the table's cells are the JSON's values. torch.compile is the identity here, so that the test takes seconds
    (compiling every model is the test above's)."""
    monkeypatch.setattr(torch, "compile", lambda model, **options: model)
    out = tmp_path / "models.json"
    argv = [*MODELS_TINY, "--steps", "2", "--models", "bilstm-crf", "lion-d", "elmo", "--json", str(out)]
    assert bench.main(argv) == 0
    record = json.loads(out.read_text())
    rows = {r["model"]: r for r in record["rows"]}
    assert list(rows) == ["bert-sdpa", "lion-d", "lstm-crf", "bilstm-crf", "elmo"]
    assert record["baselines"] == {"lion-d": "bert-sdpa", "bilstm-crf": "lstm-crf"}
    for name, r in rows.items():
        assert r["status"] == "ok", r
        assert r["baseline"] == registry.MODELS[name].baseline
        assert r["task"] == ("tagging (CRF)" if registry.MODELS[name].tagger else "masked LM")
        for mode in modes_run(name):
            train, latency = r["train"][mode], r["latency"][mode]
            assert train["model_class"] == latency["model_class"] == MODEL_CLASSES[name]
            for value in (train["tokens_per_s"], train["step_ms"], latency["latency_ms"], latency["min_ms"]):
                assert math.isfinite(value) and value > 0
            assert latency["min_ms"] <= latency["latency_ms"]
            assert latency["latency_ms"] != train["step_ms"]  # a forward of 1 row, not a training step of 2
    assert rows["lstm-crf"]["train"]["compiled"]["status"].startswith("not compiled")
    assert rows["lstm-crf"]["compiled_speedup"] == {"train": None, "latency": None}
    # the baseline tagger: the same embeddings, LSTM, emission layer and CRF sizes as bizoo's
    assert rows["lstm-crf"]["train"]["eager"]["parameters"] == rows["bilstm-crf"]["train"]["eager"]["parameters"]

    def speed(row, part, mode):
        result = row[part][mode]
        return result["tokens_per_s"] if part == "train" else 1 / result["latency_ms"]

    for name, base, against in (("lion-d", "bert-sdpa", "compiled"), ("bilstm-crf", "lstm-crf", "eager")):
        vs, r, b = rows[name]["vs_baseline"], rows[name], rows[base]
        assert vs["compiled_against"] == against
        for part in ("train", "latency"):
            assert vs[f"{part}_eager"] == pytest.approx(speed(r, part, "eager") / speed(b, part, "eager"))
            assert vs[f"{part}_compiled"] == pytest.approx(speed(r, part, "compiled") / speed(b, part, against))
            assert math.isfinite(vs[f"{part}_eager"]) and vs[f"{part}_eager"] > 0
    assert "vs_baseline" not in rows["elmo"]

    # The table: a line per row, after the two header lines naming the columns.
    text = capsys.readouterr().out
    assert "training tokens/s" in text and "inference ms, batch 1" in text and "c vs base" in text
    lines = {line.split()[2]: line.split()[3:] for line in text.splitlines() if line.startswith("    16    2 ")}
    assert list(lines) == list(rows)

    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    for name, r in rows.items():
        vs = r.get("vs_baseline", {})
        compiled = "compiled" in modes_run(name)
        assert lines[name] == [
            r["baseline"] or "-",
            f"{r['train']['eager']['tokens_per_s']:,.0f}",
            f"{r['train']['compiled']['tokens_per_s']:,.0f}" if compiled else "-",
            ratio(r["compiled_speedup"]["train"]), ratio(vs.get("train_eager")), ratio(vs.get("train_compiled")),
            f"{r['latency']['eager']['latency_ms']:.2f}",
            f"{r['latency']['compiled']['latency_ms']:.2f}" if compiled else "-",
            ratio(r["compiled_speedup"]["latency"]), ratio(vs.get("latency_eager")), ratio(vs.get("latency_compiled")),
            "-/-",  # no host-sync check on a CPU, eager or compiled
        ]
    assert "lstm-crf for bilstm-crf" in text and "elmo has none" in text


@pytest.mark.parametrize("option", ["--tags", "--tagger-hidden", "--tagger-layers", "--latency-batch", "--latency-runs"])
def test_bench_models_bad_sizes_exit_2(option, capsys):
    assert bench.main(["models", "--device", "cpu", option, "0"]) == 2
    assert f"{option} must be >= 1, got 0" in capsys.readouterr().err


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
        ["lion", "--device", "cpu", "--hbm-gbs", "0"],
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


def test_gpu_check_steps_option_selects_steps():
    assert gpu_check.parse_steps(None) == list(gpu_check.DEFAULT_STEPS)
    assert gpu_check.parse_steps("lion") == LION_STEPS
    assert gpu_check.parse_steps(" bench-lion , env") == ["env", "bench-lion"]  # in the order they run
    assert gpu_check.parse_steps("lion,lion-states,bench-crf") == [*LION_STEPS, "bench-crf"]
    for text, message in (("lion,nope", "unknown step 'nope'"), ("lion,", "an empty step name"),
                          ("bench_lion", "unknown step 'bench_lion'")):
        with pytest.raises(ValueError, match=message) as err:
            gpu_check.parse_steps(text)
        assert "the steps are env, gpu-tests, lion-tests" in str(err.value)
    # Every entry of the plan has a --steps name; every name but env has entries.
    entries = gpu_check.plan(Path("out"), False, gpu_check.STEP_NAMES)
    assert {e["step"] for e in entries} == set(gpu_check.STEP_NAMES) - {"env"}
    assert len({e["key"] for e in entries}) == len(entries) and len({e["log"] for e in entries}) == len(entries)


def test_gpu_check_unknown_step_exits_2(tmp_path, capsys):
    out = tmp_path / "check"
    assert gpu_check.main([str(out), "--steps", "lion,bench-lion-everything"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m bizoo.scripts.gpu_check: error: --steps 'lion,bench-lion-everything': unknown "
                          "step 'bench-lion-everything'; the steps are ")
    assert not out.exists()  # nothing done


def test_gpu_check_lion_steps_plan(tmp_path):
    parser = bench.argparse.ArgumentParser()
    bench.add_arguments(parser)
    for quick in (False, True):
        steps = gpu_check.plan(tmp_path, quick, gpu_check.parse_steps("lion"))
        assert [s["key"] for s in steps] == LION_STEP_KEYS
        assert [s["step"] for s in steps] == LION_STEPS[1:5] + LION_STEPS[4:]  # bench-lion: one entry per decay
        # Within 8.5 minutes (510 s) with the environment report; the budget does not scale them up.
        assert sum(s["timeout"] for s in steps) <= 500
        gpu_check.step_limits(steps, 530, chosen=True)
        if not quick:
            assert [s["limit"] for s in steps] == [s["timeout"] for s in steps]
        tests, launches, states, bench_s, bench_lit, crossover, model = steps
        assert tests["command"][1:4] == ["-m", "pytest", "-q"] and "-x" not in tests["command"]
        assert [c for c in tests["command"] if c.startswith("tests/")] == [
            "tests/kernels/test_lion_triton.py", "tests/kernels/test_lion_reference.py", "tests/modeling/test_lion.py"]
        assert tests["command"][-2:] == ["--junitxml", str(tmp_path / "lion_tests.xml")]
        assert tests["env"] == states["env"] == {"BIZOO_TRITON_AUTOTUNE": "0"} and tests["tests"]
        # One configuration per kernel unless the caller sets BIZOO_TRITON_AUTOTUNE: the launches do not depend on it,
        # and bench-lion would spend its time autotuning (BENCH_LION_ENV).
        assert launches["env_default"] == bench_s["env_default"] == bench_lit["env_default"] == {
            "BIZOO_TRITON_AUTOTUNE": "0"}
        for step, function in ((launches, "lion_launches"), (states, "lion_states")):
            assert step["command"][1] == "-c" and step["command"][4:] == [function, str(tmp_path),
                                                                           "quick" if quick else "full"]
            assert step["needs_cuda"] and function in step["shown"]
        for step, decay in ((bench_s, "s"), (bench_lit, "lit")):
            args = parser.parse_args(step["command"][3:])
            assert (args.op, args.decay, args.dtype, args.tokens, args.heads, args.head_dim, args.chunk_size) == (
                "lion", decay, "bfloat16", 32768, 12, 64, 64)
            assert args.methods == ["sdpa", "triton-chunk", "triton-parallel", "fla-causal"]
            assert args.modes == ["fwd", "fwdbwd"]
            assert args.json == str(tmp_path / f"bench_lion_{decay}.json")
            assert args.plot == str(tmp_path / f"bench_lion_{decay}.png")
            assert args.lengths == ([1024, 4096] if quick else [512, 1024, 2048, 4096, 8192, 16384])
        # The crossover as in the default plan (step_limits gave it a limit), after bench-lion.
        assert {k: v for k, v in crossover.items() if k != "limit"} == gpu_check.plan(
            tmp_path, quick, ["bench-lion-crossover"])[0]
        assert parser.parse_args(crossover["command"][3:]).op == "lion-crossover" and crossover["needs_cuda"]
        assert ("4096" in model["command"]) != quick


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine this runs the real steps")
def test_gpu_check_lion_steps_on_a_cpu(tmp_path, capsys):
    out = tmp_path / "check"
    assert gpu_check.main([str(out), "--steps", "lion", "--skip-tests"]) == 0
    record = json.loads((out / "summary.json").read_text())
    assert [s["key"] for s in record["steps"]] == LION_STEP_KEYS
    assert record["steps"][0]["status"] == "skipped: --skip-tests"
    assert all(s["status"] == "skipped: no CUDA device" for s in record["steps"][1:])
    summary = (out / "summary.md").read_text()
    assert "--steps env,lion-tests,lion-launches,lion-states,bench-lion,bench-lion-crossover,lion-model`" in summary
    assert f"| torch | {torch.__version__} |" in summary  # env is one of them
    assert "| LION kernel launches and host syncs | skipped: no CUDA device |" in summary
    # Without env: no environment report.
    assert gpu_check.main([str(out), "--steps", "bench-lion"]) == 0
    record = json.loads((out / "summary.json").read_text())
    assert [s["key"] for s in record["steps"]] == ["bench_lion_s", "bench_lion_lit"]
    assert record["environment"] == {"environment": "not collected (--steps without env)"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine this runs the real step")
def test_gpu_check_lion_part_runs_in_a_child(tmp_path):
    # The child imports this module without the package's __init__ and calls the function: here it stops at once.
    log = tmp_path / "launches.txt"
    command = gpu_check._part_command("lion_launches", tmp_path, True)
    assert gpu_check.run_step(command, log, 120, gpu_check._step_env(False)) == "failed (exit code 1)"
    assert "lion-launches: no CUDA device" in log.read_text()


def test_gpu_check_lion_states_without_fp32_states(tmp_path, monkeypatch, capsys):
    triton_op = pytest.importorskip("bizoo.kernels.lion.triton_op")

    def without_fp32_states(q, k, v, log_decay, attention_mask, *, form, chunk_size, normalize):
        raise AssertionError("not called")

    monkeypatch.setattr(triton_op, "lion_attention_triton", without_fp32_states)
    assert gpu_check.lion_states(str(tmp_path)) == 0
    status = "unavailable: lion_attention_triton takes no fp32_states keyword"
    assert json.loads((tmp_path / "lion_states.json").read_text())["status"] == status
    assert capsys.readouterr().out == f"lion-states: {status}\n"


def test_gpu_check_launch_counts_and_relative_error():
    names = ["_chunk_fwd", "Memset (Device)", "_chunk_fwd", "elementwise", "Memcpy DtoD (Device -> Device)"]
    assert gpu_check._launch_counts(names) == {"kernels": 3, "names": {"_chunk_fwd": 2, "elementwise": 1},
                                                "memcpy_memset": 2}
    ref = torch.tensor([1.0, -4.0, 2.0])
    assert gpu_check.relative_error(torch.tensor([1.0, -3.0, 2.0]), ref) == 0.25  # max|x - ref| / max|ref|
    assert gpu_check.relative_error(torch.zeros(2), torch.zeros(2)) == 0.0
    assert gpu_check.relative_error(torch.ones(2), torch.zeros(2)) == float("inf")


def test_gpu_check_step_environment_and_limits(tmp_path, monkeypatch, capsys):
    # One stand-in step: the variables it sees, the command the summary shows, its limit.
    script = "import os; print('seen', *(os.environ.get(k) for k in ('BIZOO_TRITON_AUTOTUNE', 'X_DEFAULT', 'X_SET')))"

    def plan(out, quick, steps):
        return [{"name": "stand-in", "step": "lion-launches", "key": "stand_in", "needs_cuda": False,
                 "env_default": {"BIZOO_TRITON_AUTOTUNE": "0", "X_DEFAULT": "d"}, "env": {"X_SET": "s"},
                 "command": [sys.executable, "-c", script], "log": out / "stand_in.txt", "timeout": 10, "tail": 5}]

    monkeypatch.setattr(gpu_check, "plan", plan)
    monkeypatch.setenv("BIZOO_TRITON_AUTOTUNE", "1")  # the caller's value wins over a default
    monkeypatch.delenv("X_DEFAULT", raising=False)
    monkeypatch.setenv("X_SET", "caller")  # ... not over a value the step sets
    out = tmp_path / "check"
    assert gpu_check.main([str(out), "--steps", "lion-launches", "--budget", "100"]) == 0
    assert "seen 1 d s" in (out / "stand_in.txt").read_text()
    assert "(limit 70 s)" in capsys.readouterr().out  # 10 s scaled to the budget less 30 s: it is the only step
    assert "command: `BIZOO_TRITON_AUTOTUNE=1 X_DEFAULT=d X_SET=s python" in (out / "summary.md").read_text()
    # Without --steps the limits are the timeouts.
    steps = plan(out, False, None)
    gpu_check.step_limits(steps, 100, chosen=False)
    assert steps[0]["limit"] == 10


@pytest.mark.parametrize("module, argv, usage, described", [
    ("bizoo.scripts.bench", ["lion-forms", "--help"], "usage: bizoo bench lion-forms", "Benchmark bizoo's kernels"),
    # The documented name of the GPU check (a module that runs bizoo.scripts.bench.gpu_check), and the module itself.
    ("bizoo.scripts.gpu_check", ["--help"], "usage: python -m bizoo.scripts.gpu_check", "The one script to run"),
    ("bizoo.scripts.bench.gpu_check", ["--help"], "usage: python -m bizoo.scripts.gpu_check", "The one script to run"),
])
def test_python_dash_m_runs_the_developer_tools(module, argv, usage, described, monkeypatch, capsys):
    """``python -m`` of the bench package (its __main__) and of the GPU check under both names: the command's usage and
    its full help, the docstring of the module that holds its code. Run here with runpy, as ``python -m`` runs it."""
    monkeypatch.setattr(sys, "argv", [module, *argv])
    for name in ("bizoo.scripts.gpu_check", "bizoo.scripts.bench.gpu_check"):  # runpy runs a fresh copy as __main__
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(usage) and described in text


def test_registry_methods_defaults_and_bad_entries():
    """The benchmarks as data: the methods measured (the ones always measured first, then those named or the device's
    defaults that the benchmark has, each once, the ratio baselines before the others), and entries that name a
    method a benchmark does not have are refused when the registry is written."""
    assert registry.BIGS.chosen(["triton", "reference-fft", "triton"], "cpu") == ["fft-baseline", "triton",
                                                                                  "reference-fft"]
    assert registry.BIGS.chosen(None, "cpu")[:2] == ["fft-baseline", "reference-fft"]
    assert "reference-toeplitz" not in registry.BIGS.chosen(None, "cpu")  # O(L²): on a CPU only when named
    assert registry.LION.chosen(["triton-chunk", "reference-chunk", "sdpa"], "cpu") == ["reference-chunk", "sdpa",
                                                                                        "triton-chunk"]
    assert registry.LSTM.chosen(["native", "nn-lstm-packed"], "cpu") == ["nn-lstm", "native", "nn-lstm-packed"]
    # the LSTMP part always measures the autograd loop and cuDNN's unclipped nn.LSTM(proj_size) yardstick; "native"
    # (torch.lstm) is not one of its methods
    assert registry.LSTMP.chosen(["native", "loop", "triton"], "cuda") == ["autograd-loop", "nn-lstm-proj", "loop",
                                                                          "triton"]
    assert registry.CRF.chosen(None, "cpu") == ["torchcrf", "reference", "scan", "auto"]
    assert registry.CRF.chosen(None, "cuda")[-1] == "triton"
    assert registry.BIGS.defaults("cpu") == {"lengths": [512, 4096, 16384], "batch": 1}
    assert registry.LION.defaults("cuda") == registry.LION.defaults("cpu") == registry.LION.grid
    # the module of every op benchmark run through the harness measures its cases and estimates their peak (what
    # the child process calls)
    for bench_entry in registry.OPS.values():
        if bench_entry.module is not None:
            module = harness.op_module({"op": bench_entry.name})
            assert callable(module.measure_case) and callable(module.estimate_bytes), bench_entry.name
    assert [name for name, entry in registry.OPS.items() if entry.module is None] == ["crf"]
    for op in ("crf", None, "gru"):
        with pytest.raises(ValueError, match=f"a case's op must be one of .*'lion'.*, got {op!r}"):
            harness.op_module({"op": op} if op else {})
    assert registry.model_order(["bilstm-crf", "lion-d"]) == ["bert-sdpa", "lion-d", "lstm-crf", "bilstm-crf"]
    assert registry.model_order(["elmo"]) == ["elmo"]
    methods = {"a": ("reference", None), "b": ("triton", None)}
    with pytest.raises(ValueError, match="default methods on 'cpu' must be among its methods"):
        registry.OpBenchmark("toy", "lion", methods, {"cpu": ("a", "c")})
    with pytest.raises(ValueError, match="default methods on 'tpu'"):
        registry.OpBenchmark("toy", "lion", methods, {"tpu": ("a",)})
    with pytest.raises(ValueError, match="'c' is not one of its methods"):
        registry.OpBenchmark("toy", "lion", methods, {"cpu": ("a",)}, ratios=(registry.Ratio("c", "c", "c", 4),))
    toy = registry.OpBenchmark("toy", "lion", methods, {"cpu": ("b",)}, always=("base",),
                               ratios=(registry.Ratio("base", "base", "base", 6),))
    assert toy.chosen(None, "cpu") == ["base", "b"] and toy.chosen(["a", "base", "z"], "cpu") == ["base", "a"]


def test_gpu_check_fp32_and_recurrent_steps_plan(tmp_path):
    """--steps fp32: LION on fp32 inputs with IEEE and with TF32 products (SDPA and cuBLAS at the same precision);
    --steps recurrent adds ELMo's LSTMP with TF32 products everywhere to the like-for-like IEEE bench-lstm. Every
    command of every step parses; each group fits the budget."""
    parser = bench.argparse.ArgumentParser()
    bench.add_arguments(parser)
    for quick in (False, True):
        fp32 = gpu_check.plan(tmp_path, quick, gpu_check.parse_steps("fp32"))
        assert [s["key"] for s in fp32] == ["lion_half_tests", "bench_lion_fp32_ieee", "bench_lion_fp32_tf32"]
        assert fp32[0]["tests"] and "tests/kernels/test_lion_half_range.py" in fp32[0]["command"]
        assert (Path(__file__).parents[2] / "tests/kernels/test_lion_half_range.py").is_file()
        ieee, tf32 = (parser.parse_args(s["command"][3:]) for s in fp32[1:])
        assert (ieee.tf32, tf32.tf32) == (False, True) and ieee.dtype == tf32.dtype == "float32"
        assert ieee.methods == tf32.methods == ["sdpa", "reference-chunk", "triton-chunk"]
        assert all(s["env_default"] == gpu_check.BENCH_LION_ENV for s in fp32[1:])
        assert sum(s["timeout"] for s in fp32) <= 500
        recurrent = gpu_check.plan(tmp_path, quick, gpu_check.parse_steps("recurrent"))
        keys = [s["key"] for s in recurrent]
        assert keys == ["gpu_tests", "bench_crf", "bench_lstm", "bench_lstm_tf32", "bench_bigs", "bench_bigs_model"]
        lstm, lstm_tf32 = (parser.parse_args(s["command"][3:]) for s in recurrent[2:4])
        assert (lstm.tf32, lstm.dtype) == (False, "float32")  # IEEE everywhere, cuDNN included
        assert (lstm_tf32.tf32, lstm_tf32.part, lstm_tf32.elmo_sizes) == (True, "lstmp", ["original"])
        assert sum(s["timeout"] for s in recurrent) <= 500
        for step in gpu_check.plan(tmp_path, quick, gpu_check.STEP_NAMES):
            if step["command"][1:3] == ["-m", "bizoo.scripts.bench"]:
                parser.parse_args(step["command"][3:])
