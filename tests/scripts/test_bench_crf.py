"""`bizoo bench crf` on a CPU with tiny shapes: the rows, their ratios, the unavailable Triton rows, the targets, the
JSON and the errors. No timing is asserted."""

import json
import os
import sys

import pytest

import bizoo.kernels.crf  # noqa: F401 - its Triton kernels decorated now: `triton.jit` reads TRITON_INTERPRET once,
from bizoo.scripts import bench  # so an import inside the test that unsets it would leave them uninterpretable
from bizoo.scripts.bench import crf, registry

TINY = ["crf", "--device", "cpu", "--batch-sizes", "2", "--tags", "3", "--lengths", "4", "--repeats", "1"]
INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"


def run_json(tmp_path, *extra):
    out = tmp_path / "crf.json"
    assert bench.main([*TINY, *extra, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_bench_crf_rows_ratios_and_json(tmp_path, capsys):
    record = run_json(tmp_path, "--lengths", "4", "6")
    rows = record["rows"]
    methods = ["torchcrf", "reference", "scan", "auto"]  # the CPU default: no triton
    assert [(r["op"], r["length"], r["method"]) for r in rows] == [
        (op, L, m) for op in ("likelihood", "viterbi", "max_marginals") for L in (4, 6) for m in methods
    ]
    for r in rows:
        assert r["status"] == "ok", r
        assert (r["batch"], r["tags"], r["dtype"], r["device"]) == (2, 3, "float32", "cpu")
        assert r["length"] <= r["real_positions"] <= 2 * r["length"]  # the first row is full, the other >= L/2
        assert r["median_ms"] > 0 and r["min_ms"] > 0 and r["speedup_vs_torchcrf"] > 0
        assert "peak_mib" not in r  # no memory column on a CPU: one process runs every case
    assert all(r["speedup_vs_torchcrf"] == 1.0 for r in rows if r["method"] == "torchcrf")
    assert {r["backend"] for r in rows if r["method"] == "auto"} <= {"reference", "scan"}
    assert record["repeats"] == 1 and record["dtype"] == "float32" and record["methods"] == methods[1:]
    # The targets' shapes are not in this grid: recorded as not measured; the GPU one as GPU only.
    statuses = {(t["batch"], t["method"], t["op"]): t["status"] for t in record["targets"]}
    assert statuses[(32, "auto", "likelihood")].startswith("not measured")
    assert statuses[(64, "triton", "viterbi")] == "GPU only"
    text = capsys.readouterr().out
    for expected in ("median of 1 runs", "float32", "cores", "torchcrf ms", "Viterbi decode", "forward+backward",
                     "max-marginals (a CRF head's decode)"):
        assert expected in text


def test_bench_crf_auto_rows_name_the_backend_that_ran(tmp_path, monkeypatch):
    import bizoo.kernels.crf as crf_ops

    ran = []
    for backend in ("reference", "scan"):
        module = getattr(crf_ops, backend)
        for name in ("log_likelihood", "viterbi", "max_marginals"):
            def spy(*args, _f=getattr(module, name), _key=(name, backend)):
                ran.append(_key)
                return _f(*args)

            monkeypatch.setattr(module, name, spy)
    rows = run_json(tmp_path, "--methods", "auto", "--tags", "3", "30")["rows"]
    recorded = {("log_likelihood" if r["op"] == "likelihood" else r["op"], r["backend"])
                for r in rows if r["method"] == "auto"}
    assert recorded == set(ran)


def test_bench_crf_targets_from_rows():
    rows = [
        {"op": op, "method": "auto", "batch": 32, "tags": 9, "length": 128, "status": "ok", "speedup_vs_torchcrf": x}
        for op, x in (("likelihood", 2.5), ("viterbi", 1.5))
    ]
    found = {t["op"]: t for t in crf.crf_targets(rows, cuda=False) if t["batch"] == 32}
    assert found["likelihood"]["status"] == "met" and found["likelihood"]["speedup"] == 2.5
    assert found["viterbi"]["status"] == "NOT met"


def test_bench_crf_triton_without_a_gpu_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = run_json(tmp_path, "--methods", "triton")["rows"]
    assert [(r["op"], r["method"]) for r in rows] == [(op, m) for op in ("likelihood", "viterbi", "max_marginals")
                                                      for m in ("torchcrf", "triton")]
    for r in rows:
        if r["method"] == "triton":
            assert r["status"].startswith("unavailable: ") and "median_ms" not in r
            assert "speedup_vs_torchcrf" not in r


@pytest.mark.skipif(not INTERPRETER, reason="Triton rows on a CPU need TRITON_INTERPRET=1")
def test_bench_crf_triton_under_the_interpreter(tmp_path, capsys):
    rows = run_json(tmp_path, "--methods", "triton", "auto")["rows"]
    assert [r["method"] for r in rows] == ["torchcrf", "triton", "auto"] * 3
    for r in rows:
        assert r["status"] == "ok", r
        assert r["median_ms"] > 0 and r["speedup_vs_torchcrf"] > 0
    assert "Triton's interpreter" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tags", "0"], "--tags must be >= 1"),
        (["--batch-sizes", "2", "-1"], "--batch-sizes must be >= 1"),
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--warmup", "-1"], "--warmup must be >= 0"),
        (["--device", "tpu"], "--device must be cpu or cuda"),
    ],
)
def test_bench_crf_bad_values_exit_2(argv, message, capsys):
    assert bench.main([*TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo bench crf: error: ") and message in err


def test_bench_crf_unknown_method_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*TINY, "--methods", "fast"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_bench_crf_without_pytorch_crf_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchcrf", None)  # `import torchcrf` raises ImportError
    assert bench.main(TINY) == 2
    err = capsys.readouterr().err
    assert "pytorch-crf" in err and "pip install pytorch-crf" in err


def test_bench_crf_default_grid_and_methods():
    parser = bench.argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["crf"])
    assert (args.batch_sizes, args.tags, args.lengths) == ([1, 32, 64], [9, 17, 45], [32, 128, 512])
    assert args.methods is None and args.dtype == "float32"
    assert registry.CRF.default_methods == {"cuda": ("reference", "scan", "auto", "triton"),
                                            "cpu": ("reference", "scan", "auto")}
