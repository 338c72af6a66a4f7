"""`bizoo evaluate-all` end to end on synthetic files: a tiny pretraining run, fine-tuning on every runnable GLUE task
(a task without a train.tsv is skipped and said), CoNLL, the table in results.md/json, the bar chart, the per-run
results files that `bizoo export` turns into model-index, and a second call that reuses finished runs."""

import json
import shutil

import pytest

from bizoo.scripts import evaluate_all

TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


@pytest.fixture
def small_glue(tmp_path, glue_dir):
    root = tmp_path / "glue"
    for task in ("RTE", "STS-B"):
        shutil.copytree(glue_dir / task, root / task)
    (root / "QNLI").mkdir()
    shutil.copy(glue_dir / "RTE" / "dev.tsv", root / "QNLI" / "dev.tsv")  # a dev file and no train.tsv
    return root


def test_evaluate_all_tabulates_every_task_and_reuses_finished_runs(tmp_path, small_glue, conll_dir, sentences, capsys):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(sentences(120, seed=3)) + "\n")
    out = tmp_path / "results"
    argv = ["--output-dir", str(out), "--models", "lion-lit", "--glue-dir", str(small_glue), "--conll-dir",
            str(conll_dir), "--pretrain-steps", "2", "--finetune-steps", "2", "--batch-size", "4", "--max-length", "32",
            "--pretrain-args", "--text", str(text), "--eval-text", str(text), "--vocab-size", "120",
            "--model-config", *TINY]
    assert evaluate_all.main(argv) == 0
    printed = capsys.readouterr()
    assert "bizoo evaluate-all: warning: GLUE QNLI has no train.tsv" in printed.err  # a warning, on stderr
    assert "bizoo evaluate-all: lion-lit pretrained: ok" in printed.out  # the status lines, on stdout
    assert "| lion-lit |" in printed.out  # the table, the command's result

    results = json.loads((out / "results.json").read_text())
    assert results["skipped"] == ["QNLI"] and results["machine"]
    (row,) = results["rows"]
    assert row["pretrain"]["ok"] and set(row["glue"]) == {"RTE", "STS-B"} and row["conll"]["ok"]
    assert set(row["glue"]["STS-B"]["metrics"]) == {"pearson", "spearman"}
    table = (out / "results.md").read_text()
    assert "| model | STS-B | RTE | GLUE avg | CoNLL-2003 F1 | wall time |" in table  # GLUE's order
    assert "| lion-lit |" in table and "failed" not in table
    assert (out / "results.png").stat().st_size > 1000
    for task in ("RTE", "STS-B", "CoNLL-2003"):  # each fine-tuned folder carries what export makes model-index of
        assert json.loads((out / "lion-lit" / task / "bizoo_results.json").read_text())[-1]["metrics"]

    stamp = (out / "lion-lit" / "RTE" / "model.safetensors").stat().st_mtime
    assert evaluate_all.main(argv) == 0  # finished runs are reused, not run again
    assert (out / "lion-lit" / "RTE" / "model.safetensors").stat().st_mtime == stamp
    assert (out / "results.md").read_text() == table


def test_evaluate_all_says_what_is_missing(tmp_path, capsys):
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o")]) == 2
    assert "pass --glue-dir and/or --conll-dir" in capsys.readouterr().err
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o"), "--conll-dir", str(tmp_path),
                              "--finetune-steps", "0"]) == 2
    assert "--finetune-steps must be at least 1" in capsys.readouterr().err
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o"), "--conll-dir", str(tmp_path)]) == 2
    assert "holds no train.txt" in capsys.readouterr().err
