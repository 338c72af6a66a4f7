"""`bizoo evaluate-all` end to end on synthetic files: a tiny pretraining run, fine-tuning on every runnable GLUE task
(a task without a train.tsv is skipped and said), CoNLL, the table in results.md/json, the bar chart, the per-run
results files that `bizoo export` turns into model-index, and a second call that reuses finished runs."""

import json
import shutil

import pytest
from transformers import AutoTokenizer

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
    argv = ["--output-dir", str(out), "--models", "lion-lit", "bert", "bilstm-crf", "--glue-dir", str(small_glue), "--conll-dir",
            str(conll_dir), "--pretrain-steps", "2", "--finetune-steps", "2", "--batch-size", "4", "--max-length", "32",
            "--pretrain-args", "--text", str(text), "--eval-text", str(text), "--vocab-size", "120",
            "--model-config", *TINY]
    assert evaluate_all.main(argv) == 0
    printed = capsys.readouterr()
    assert "bizoo evaluate-all: warning: GLUE QNLI has no train.tsv" in printed.err  # a warning, on stderr
    assert "bizoo evaluate-all: lion-lit pretrained: ok" in printed.out  # the status lines, on stdout
    assert "| lion-lit |" in printed.out  # the table, the command's result
    assert "bilstm-crf is trained from scratch on each task" in printed.out

    results = json.loads((out / "results.json").read_text())
    assert results["skipped"] == ["QNLI"] and results["machine"]
    lion, bert, bilstm = results["rows"]
    for row in (lion, bert, bilstm):
        assert set(row["glue"]) == {"RTE", "STS-B"} and row["conll"]["ok"]
        assert set(row["glue"]["STS-B"]["metrics"]) == {"pearson", "spearman"}
    for row in (lion, bert):  # pretrained the same steps on the same text: the same tokens; a curve from step 0
        assert row["pretrain"]["ok"] and row["pretrain"]["parameters"] > 0
        assert [p["step"] for p in row["pretrain"]["curve"]] == [0, 1, 2]
        assert row["pretrain"]["curve"][-1]["tokens"] > row["pretrain"]["curve"][1]["tokens"] > 0
    assert lion["pretrain"]["curve"][-1]["tokens"] == bert["pretrain"]["curve"][-1]["tokens"]
    config = json.loads((out / "bert" / "pretrain" / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 32  # transformers' BERT, the same shape
    assert json.loads((out / "bert" / "RTE" / "config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"]
    # the word-level model: not pretrained; its vocabulary from each task's training data
    assert bilstm["pretrain"] is None and not (out / "bilstm-crf" / "pretrain").exists()
    tagger_words = AutoTokenizer.from_pretrained(out / "bilstm-crf" / "CoNLL-2003")
    conll_words = {line.split()[0] for line in (conll_dir / "train.txt").read_text().splitlines()
                   if line.strip() and not line.startswith("-DOCSTART-") and line.split()[0].isalpha()}
    unknown = [w for w in conll_words if tagger_words.convert_tokens_to_ids(w.lower()) == tagger_words.unk_token_id]
    assert conll_words and not unknown
    table = (out / "results.md").read_text()
    assert ("| model | parameters | held-out MLM acc. | STS-B | RTE | GLUE avg | CoNLL-2003 F1 | wall time |"
            in table)  # GLUE's order
    assert "| lion-lit |" in table and "| bert |" in table and "failed" not in table
    assert "| bilstm-crf | " in table and table.split("| bilstm-crf | ")[1].split(" | ")[1] == "—"
    assert "trained from scratch on each task: bilstm-crf" in table
    assert (out / "results.png").stat().st_size > 1000
    assert (out / "learning_curves.png").stat().st_size > 1000
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
