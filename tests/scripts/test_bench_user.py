"""`bizoo bench` as a user reading its numbers on a CPU: options refused with a clear error before anything runs, what
a row says it measured (the work a masked LM does, the axis of a plot), and a CPU peak that is not the runs' never
reported as theirs. Timings are stubbed where the structure is checked; no timing is asserted."""

import inspect
import json

import pytest
import torch

from bizoo.kernels import dispatch
from bizoo.scripts import bench
from bizoo.scripts.bench import harness, lion, models, report, training

pytestmark = pytest.mark.usefixtures("keep_threads")  # --threads sets torch's thread count in this process

MODELS_SMALL = ["models", "--device", "cpu", "--threads", "1", "--layers", "1", "--hidden", "32", "--heads", "2",
                "--vocab-size", "200", "--lengths", "16", "--tokens-per-step", "32", "--latency-runs", "1",
                "--tagger-hidden", "16", "--tags", "5", "--elmo-size", "small", "--steps", "1"]


@pytest.mark.parametrize("target", ["models", "lion-model", "bigs-model"])
@pytest.mark.parametrize("vocab_size", ["2", "5"])
def test_a_vocabulary_without_room_for_the_token_ids_exits_2(target, vocab_size, capsys):
    """The batches' token ids are drawn from FIRST_TOKEN_ID (5) to V - 1: a vocabulary of 5 or fewer words was
    accepted, and every run then failed with torch's "random_ expects 'from' to be less than 'to'"."""
    assert bench.main([target, "--device", "cpu", "--vocab-size", vocab_size]) == 2
    err = capsys.readouterr().err
    assert f"--vocab-size must be > {training.FIRST_TOKEN_ID}" in err and f"got {vocab_size}" in err


def test_the_smallest_vocabulary_draws_valid_ids():
    batch = training._model_inputs(8, 3, training.FIRST_TOKEN_ID + 1, "cpu")
    assert (batch["input_ids"] == training.FIRST_TOKEN_ID).all()


@pytest.mark.parametrize("dense", [False, True])
def test_bench_models_says_what_each_masked_lm_projects(dense, tmp_path, capsys, monkeypatch):
    """bizoo's masked LMs with sparse_prediction project only the masked positions in eager training but every
    position under torch.compile, and BERT always every position: the header and each masked LM's row say so
    (train_logits), --dense-logits makes the work the same. The timings are stubbed: only the labels are checked."""
    monkeypatch.setattr(torch, "compile", lambda model, **options: model)
    monkeypatch.setattr(models, "train_steps", lambda *a, **k: {"status": "ok", "model_class": "m", "parameters": 1,
                                                               "step_ms": 10.0, "tokens_per_s": 3200.0})
    monkeypatch.setattr(models, "forward_latency", lambda *a, **k: {"status": "ok", "model_class": "m",
                                                                   "latency_ms": 2.0, "min_ms": 1.0})
    out = tmp_path / "models.json"
    argv = [*MODELS_SMALL, "--models", "lion-d", "elmo", "bilstm-crf", "--json", str(out)]
    assert bench.main(argv + (["--dense-logits"] if dense else [])) == 0
    record = json.loads(out.read_text())
    assert record["sparse_prediction"] is (not dense)
    rows = {r["model"]: r for r in record["rows"]}
    every = {"eager": "every position", "compiled": "every position"}
    assert rows["bert-sdpa"]["train_logits"] == every
    for name in ("lion-d", "elmo"):
        assert rows[name]["train_logits"] == (every if dense else {"eager": "masked positions",
                                                                   "compiled": "every position"})
    assert "train_logits" not in rows["bilstm-crf"] and "train_logits" not in rows["lstm-crf"]  # taggers
    text = capsys.readouterr().out
    if dense:
        assert "MLM logits: every model projects every position" in text
    else:
        assert "only the masked positions onto the vocabulary in eager training, every position when compiled" in text
        assert "compare different work" in text


def test_a_masked_lm_projects_every_position_while_traced(monkeypatch):
    """What bench models' train_logits states: with sparse_prediction a bizoo masked LM in training projects the
    masked positions only (N, V), and every position (B, L, V) while torch.compile traces it."""
    from bizoo import LionConfig, LionForMaskedLM

    torch.manual_seed(0)
    model = LionForMaskedLM(LionConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=8)).train()
    ids = torch.randint(5, 50, (2, 8))
    labels = torch.full_like(ids, -100)
    labels[:, :3] = ids[:, :3]
    assert model(input_ids=ids, labels=labels).logits.shape == (6, 50)
    monkeypatch.setattr(dispatch, "tracing", lambda: True)
    assert model(input_ids=ids, labels=labels).logits.shape == (2, 8, 50)


@pytest.mark.parametrize("reset", [True, False])
def test_a_cpu_peak_is_reported_only_where_the_peak_rss_was_reset(reset, monkeypatch):
    """Where /proc/self/clear_refs cannot reset the peak resident set, VmHWM (or getrusage) is the process's lifetime
    peak: torch's import and the warm-up runs. It used to be reported as the timed runs' growth; now there is no
    peak, and the row says why."""
    monkeypatch.setattr(harness, "_reset_peak_rss", lambda: reset)
    result = harness.time_runs(lambda: torch.ones(4), [], False, None, 0, 3, cuda=False)
    assert result["status"] == "ok" and result["min_ms"] <= result["median_ms"]
    if reset:
        assert result["peak_mib"] >= 0 and "peak_note" not in result
    else:
        assert "peak_mib" not in result and result["peak_note"] == harness.PEAK_NOT_RESET
    row = harness.flatten({"method": "m"}, {"fwd": result}, ["fwd"])
    assert ("fwd_peak_mib" in row) is reset and ("peak_note" in row) is (not reset)
    # a process that runs many cases asks for no peak at all: nothing to explain
    assert set(harness.time_runs(lambda: torch.ones(4), [], False, None, 0, 1, cuda=False, cpu_memory=False)) == {
        "status", "median_ms", "min_ms"}


@pytest.mark.parametrize("batch", [None, 2])
def test_bench_lion_plot_names_what_is_fixed(batch, tmp_path, monkeypatch):
    """bench lion --batch B keeps B fixed, not B·L: the plot's axis used to say "B·L fixed" whatever the option."""
    plotted = {}
    monkeypatch.setattr(lion, "plot_times", lambda *a, **k: plotted.update(k, args=a))
    monkeypatch.setattr(harness, "run_case", lambda case: {m: {"status": "ok", "median_ms": 1.0, "min_ms": 1.0}
                                                           for m in case["modes"]})
    argv = ["lion", "--device", "cpu", "--lengths", "16", "32", "--heads", "1", "--head-dim", "4", "--methods",
            "sdpa", "reference-chunk", "--plot", str(tmp_path / "lion.png")]
    assert bench.main(argv + (["--batch", str(batch)] if batch else [])) == 0
    rows = plotted["args"][0]
    assert {r["length"] for r in rows} == {16, 32}
    xlabel = plotted.get("xlabel", inspect.signature(report.plot_times).parameters["xlabel"].default)
    if batch:
        assert xlabel == "sequence length L (B = 2 fixed)" and {r["batch"] for r in rows} == {2}
    else:
        assert xlabel == "sequence length L (B·L fixed)"
