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
    argv = ["--output-dir", str(out), "--models", "lion-lit", "bert", "bilstm-crf", "--glue-dir", str(small_glue),
            "--conll-dir", str(conll_dir), "--pretrain-steps", "2", "--finetune-steps", "2", "--batch-size", "4",
            "--max-length", "32",
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

    def made(model, task):  # when the run's weights were written
        return (out / model / task / "model.safetensors").stat().st_mtime_ns

    stamps = {(m, t): made(m, t) for m in ("lion-lit", "bert") for t in ("pretrain", "RTE", "STS-B")}
    capsys.readouterr()
    assert evaluate_all.main(argv) == 0  # finished runs are reused, not run again
    assert {key: made(*key) for key in stamps} == stamps
    assert (out / "results.md").read_text() == table
    assert "running it again" not in capsys.readouterr().out
    assert json.loads((out / "lion-lit" / "RTE.command.json").read_text())["finished"]

    # another fine-tuning budget (one model, one task): the fine-tuning runs again, the pretraining is reused
    lion_rte = [*argv[:argv.index("--models")], "--models", "lion-lit", "--tasks", "RTE",
                *argv[argv.index("--glue-dir"):argv.index("--conll-dir")], *argv[argv.index("--pretrain-steps"):]]
    lion_rte[lion_rte.index("--finetune-steps") + 1] = "3"
    assert evaluate_all.main(lion_rte) == 0
    said = capsys.readouterr().out
    assert f"{out / 'lion-lit' / 'RTE'} was made by another command line (--max-steps 2 -> 3): running it again" in said
    assert made("lion-lit", "pretrain") == stamps["lion-lit", "pretrain"]
    assert made("lion-lit", "RTE") != stamps["lion-lit", "RTE"]
    # another pretraining: it runs again, and so does every fine-tuning run that starts from it
    stamps = {(m, t): made(m, t) for m in ("lion-lit", "bert") for t in ("pretrain", "RTE", "STS-B")}
    lion_rte[lion_rte.index("--pretrain-steps") + 1] = "3"
    assert evaluate_all.main(lion_rte) == 0
    said = capsys.readouterr().out
    assert "pretrain was made by another command line (--max-steps 2 -> 3; --save_steps 2 -> 3)" in said
    assert "RTE was made by another command line (another pretraining run): running it again" in said
    assert made("lion-lit", "pretrain") != stamps["lion-lit", "pretrain"]
    assert made("lion-lit", "RTE") != stamps["lion-lit", "RTE"]
    assert {key: made(*key) for key in stamps if key[0] == "bert" or key[1] == "STS-B"} == {
        key: stamp for key, stamp in stamps.items() if key[0] == "bert" or key[1] == "STS-B"}  # not asked for


def test_evaluate_all_reuses_only_a_finished_run_of_the_same_command(tmp_path, caplog):
    out = tmp_path / "out"
    folder = out / "lion-s" / "RTE"
    folder.mkdir(parents=True)
    record = evaluate_all.command_record(["bizoo.scripts.finetune_glue", "--output-dir", str(folder), "--max-steps",
                                          "5", "--fp16"], out, after={"argv": ["x"], "after": None})
    assert record["argv"][2] == "<OUTPUT>/lion-s/RTE"  # a moved output folder stays reusable
    assert evaluate_all.command_record([f"{out}side/x"], out)["argv"] == [f"{out}side/x"]  # a path beside it
    assert not evaluate_all.reusable(folder, False, record)  # no results: runs
    with caplog.at_level("WARNING"):
        assert evaluate_all.reusable(folder, True, record)  # results without a record (an older bizoo): reused
    assert "recorded no command line" in caplog.text

    evaluate_all._keep_record(folder, record, finished=False)  # a run that started and failed, over old results
    assert not evaluate_all.reusable(folder, True, record)
    evaluate_all._keep_record(folder, record, finished=True)
    assert evaluate_all.reusable(folder, True, record)
    elsewhere = tmp_path / "elsewhere"
    moved = evaluate_all.command_record(["bizoo.scripts.finetune_glue", "--output-dir",
                                         str(elsewhere / "lion-s" / "RTE"), "--max-steps", "5", "--fp16"], elsewhere,
                                        after={"argv": ["x"], "after": None})
    assert moved == record
    assert not evaluate_all.reusable(folder, True, {**record, "after": None})
    other = evaluate_all.command_record(["bizoo.scripts.finetune_glue", "--output-dir", str(folder), "--max-steps",
                                         "7", "--seed", "1"], out, after={"argv": ["x"], "after": None})
    assert evaluate_all.record_differences(record, other) == (
        "--max-steps 5 -> 7; --seed (absent) -> 1; --fp16 (on) -> (absent)")
    assert not evaluate_all.reusable(folder, True, other)


def test_evaluate_all_says_what_is_missing(tmp_path, capsys):
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o")]) == 2
    assert "pass --glue-dir and/or --conll-dir" in capsys.readouterr().err
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o"), "--conll-dir", str(tmp_path),
                              "--finetune-steps", "0"]) == 2
    assert "--finetune-steps must be at least 1" in capsys.readouterr().err
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o"), "--conll-dir", str(tmp_path)]) == 2
    assert "holds no train.txt" in capsys.readouterr().err


def test_evaluate_all_under_a_distributed_launcher_is_refused_before_any_run(tmp_path, conll_dir, monkeypatch,
                                                                               capsys):
    """Under torchrun every process would run the whole evaluation, and their children would inherit RANK and
    WORLD_SIZE and try to form one process group: refused, saying how to run it."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(evaluate_all.subprocess, "run", lambda *a, **k: pytest.fail("a training command was started"))
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o"), "--conll-dir", str(conll_dir)]) == 2
    err = capsys.readouterr().err
    assert "WORLD_SIZE=2" in err and "not torchrun" in err, err
    assert not (tmp_path / "o").exists()


def test_evaluate_all_default_eval_steps_is_what_its_help_says(tmp_path, conll_dir, monkeypatch, capsys):
    seen = []

    def evaluate_model(name, args, tasks, out):  # no run: the pretraining command line each model would get
        seen.append(evaluate_all.pretrain_argv(name, args, out / name / "pretrain"))
        return {"model": name, "glue": {}, "seconds": 0.0, "pretrain": None}

    monkeypatch.setattr(evaluate_all, "evaluate_model", evaluate_model)
    assert evaluate_all.main(["--output-dir", str(tmp_path / "o"), "--models", "lion-d", "--conll-dir",
                              str(conll_dir), "--pretrain-steps", "60"]) == 0
    argv = seen[0]
    assert argv[argv.index("--eval_steps") + 1] == str(60 // evaluate_all.EVAL_POINTS) == "6"
    with pytest.raises(SystemExit):
        evaluate_all.main(["--help"])
    assert "(default: --pretrain-steps // 10, at least 1)" in " ".join(capsys.readouterr().out.split())


def fake_glue_runs(monkeypatch, accuracy: dict[str, float], failing: set[str] = frozenset()):
    """Replace each run by one that records what ``bizoo finetune-glue`` records (one record per evaluation split,
    through ``record_results``): ``accuracy[split]`` on each; a task in ``failing`` fails without results."""
    from bizoo.scripts.finetune_glue import hub_split_name
    from bizoo.scripts.lib.data import glue_task
    from bizoo.scripts.lib.results import record_results

    def run(argv, folder, log_name):
        task = glue_task(argv[argv.index("--task") + 1])
        if task.name in failing:
            return False, 1.0
        folder.mkdir(parents=True, exist_ok=True)
        for split in task.eval_splits:
            record_results(folder, task={"type": "text-classification", "name": task.name},
                           dataset={"name": f"GLUE {task.name}", "type": "nyu-mll/glue", "config": task.hub_config,
                                    "split": hub_split_name(split)},
                           metrics={"accuracy": accuracy[split]})
        return True, 1.0

    monkeypatch.setattr(evaluate_all, "_run", run)


def test_evaluate_all_scores_mnli_on_matched_and_mismatched(tmp_path, glue_dir, monkeypatch):
    """MNLI records one result per dev split; its GLUE score is the mean of the matched and mismatched accuracy (the
    run_glue.py names: accuracy, accuracy_mm), not the mismatched accuracy that the last record alone holds."""
    fake_glue_runs(monkeypatch, {"dev_matched": 0.8, "dev_mismatched": 0.6, "dev": 0.5})
    out = tmp_path / "out"
    assert evaluate_all.main(["--output-dir", str(out), "--models", "bilstm-crf", "--glue-dir", str(glue_dir),
                              "--tasks", "MNLI", "RTE", "--finetune-steps", "1"]) == 0
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert row["glue"]["MNLI"]["metrics"] == {"accuracy": 0.8, "accuracy_mm": 0.6}
    assert row["glue"]["RTE"]["metrics"] == {"accuracy": 0.5}
    assert evaluate_all.task_score(row["glue"]["MNLI"]["metrics"]) == pytest.approx(70.0)
    table = (out / "results.md").read_text()
    assert "| model | parameters | held-out MLM acc. | MNLI | RTE | GLUE avg | wall time |" in table
    assert "| bilstm-crf | — | — | 70.0 | 50.0 | 60.0 |" in table


def test_evaluate_all_fails_when_a_finetuning_run_fails(tmp_path, glue_dir, monkeypatch, capsys):
    """A failed fine-tuning run is "failed" in the table and the exit status is 1, as for a failed pretraining."""
    fake_glue_runs(monkeypatch, {"dev": 0.5}, failing={"RTE"})
    out = tmp_path / "out"
    assert evaluate_all.main(["--output-dir", str(out), "--models", "bilstm-crf", "--glue-dir", str(glue_dir),
                              "--tasks", "SST-2", "RTE", "--finetune-steps", "1"]) == 1
    assert "warning: 1 run(s) failed: bilstm-crf RTE" in capsys.readouterr().err
    assert "| bilstm-crf | — | — | 50.0 | failed | — |" in (out / "results.md").read_text()
    failed_pretraining = {"model": "bert", "pretrain": {"ok": False, "seconds": 1.0, "results": None}, "glue": {},
                          "seconds": 1.0}
    assert evaluate_all.failed_runs([failed_pretraining]) == ["bert pretrain"]
    assert evaluate_all.held_out(failed_pretraining) == "failed"


def test_the_chart_draws_no_bar_for_a_missing_score(tmp_path, monkeypatch):
    """A failed run, a task not run and an undefined (NaN) metric have no score: the chart writes what the table shows
    in place of a bar, never a bar of 0, which would read as a score of 0 (CoLA's Matthews correlation often is 0)."""
    from matplotlib.axes import Axes

    bars, texts = [], []
    real_bar, real_text = Axes.bar, Axes.text
    monkeypatch.setattr(Axes, "bar", lambda self, x, height, *a, **k: bars.append(list(height))
                        or real_bar(self, x, height, *a, **k))
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: texts.append(s)
                        or real_text(self, x, y, s, *a, **k))
    row = {"model": "lion-s", "glue": {"CoLA": {"ok": True, "metrics": {"matthews_correlation": 0.25}},
                                       "RTE": {"ok": False},
                                       "STS-B": {"ok": True, "metrics": {"pearson": float("nan"),
                                                                         "spearman": float("nan")}}},
           "conll": None}
    evaluate_all.plot([row], ["CoLA", "RTE", "STS-B", "MRPC"], True, tmp_path / "chart.png", "title")
    assert (tmp_path / "chart.png").stat().st_size > 0
    assert bars == [[25.0, 0.0, 0.0, 0.0, 0.0, 0.0]]  # CoLA's score; the others drawn as no bar
    assert texts == ["failed", "nan", "—", "—", "—"]  # RTE, STS-B, MRPC, GLUE avg, CoNLL
