"""`bizoo evaluate-all` states a fair comparison: every GLUE task asked for is one column (none dropped without a
word, none counted twice in the average), --pretrain-args cannot change per model what the table says every model
shares, and a fine-tuning result is never reused once the pretraining it started from has been run again. Each run is
replaced by one that writes what the real command writes (no training: these are about the bookkeeping)."""

import argparse
import json

from bizoo.scripts import evaluate_all


def fake_runs(monkeypatch, started: list):
    """Replace each run by one that writes what ``bizoo pretrain`` / ``finetune-glue`` / ``finetune-ner`` leave
    (weights, one result per evaluation split); ``started`` gets (model folder, task or "pretrain") per run started."""
    import torch
    from safetensors.torch import save_file

    from bizoo.scripts.finetune_glue import hub_split_name
    from bizoo.scripts.lib.data import glue_task
    from bizoo.scripts.lib.results import record_results

    def run(argv, folder, log_name):
        started.append((folder.parent.name, folder.name))
        folder.mkdir(parents=True, exist_ok=True)
        if argv[0] == "bizoo.scripts.pretrain":
            save_file({"w": torch.randn(3, 2)}, str(folder / "model.safetensors"))  # other weights every run
            record_results(folder, task={"type": "fill-mask"}, dataset={"split": "held-out"},
                           metrics={"accuracy": 0.25})
            return True, 1.0
        if argv[0] == "bizoo.scripts.finetune_ner":
            record_results(folder, task={"type": "token-classification"}, dataset={"split": "validation"},
                           metrics={"f1": 0.5})
            return True, 1.0
        task = glue_task(argv[argv.index("--task") + 1])
        for split in task.eval_splits:
            record_results(folder, task={"type": "text-classification", "name": task.name},
                           dataset={"split": hub_split_name(split)}, metrics={"accuracy": 0.5})
        return True, 1.0

    monkeypatch.setattr(evaluate_all, "_run", run)


def test_every_task_asked_for_is_one_column(tmp_path, glue_dir, monkeypatch, capsys):
    """--tasks naming a task twice (any spelling) gives one column, which the GLUE average counts once; a task it
    names that --glue-dir lacks is refused before any run, not left out of the table without a word; a model named
    twice is one row."""
    started = []
    fake_runs(monkeypatch, started)
    out = tmp_path / "out"
    common = ["--output-dir", str(out), "--glue-dir", str(glue_dir), "--finetune-steps", "1"]
    assert evaluate_all.main([*common, "--models", "bilstm-crf", "bilstm-crf", "--tasks", "RTE", "rte",
                              "SST-2"]) == 0
    table = (out / "results.md").read_text()
    assert "| model | parameters | held-out MLM acc. | RTE | SST-2 | GLUE avg | wall time |" in table, table
    assert table.count("| bilstm-crf |") == 1
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [row["model"] for row in rows] == ["bilstm-crf"] and set(rows[0]["glue"]) == {"RTE", "SST-2"}

    started.clear()
    capsys.readouterr()
    assert evaluate_all.main([*common, "--models", "bilstm-crf", "--tasks", "CoLA", "RTE"]) == 2
    err = capsys.readouterr().err
    assert "error: --tasks CoLA: no such folder in --glue-dir" in err, err
    assert started == []


def pretrain_parser() -> argparse.ArgumentParser:
    from bizoo.scripts import pretrain
    from bizoo.scripts.lib.command import add_command_arguments

    parser = argparse.ArgumentParser()
    add_command_arguments(parser, pretrain.add_arguments)
    return parser


def test_pretrain_args_cannot_change_what_every_model_shares(tmp_path, conll_dir, monkeypatch, capsys):
    """--pretrain-args comes last on each `bizoo pretrain` line, so its value wins: a --seed, --max-steps, --model
    there would pretrain otherwise than the table states (another seed or budget; the "bert" row not BERT). Refused,
    spelled out, with =VALUE or abbreviated, naming evaluate-all's own option; --text there stays allowed when
    evaluate-all's own --text is not given."""
    started = []
    fake_runs(monkeypatch, started)
    text = tmp_path / "text.txt"
    text.write_text("a b c\n")
    base = ["--output-dir", str(tmp_path / "out"), "--models", "lion-s", "--conll-dir", str(conll_dir)]
    for given, ours in ((["--seed", "1"], "--seed"), (["--max-st=5"], "--pretrain-steps"),
                        (["--model", "lion"], "--models"), (["--per_device_train_batch_size", "8"], "--batch-size"),
                        (["--text", str(text)], "--text")):
        extra = ["--text", str(text)] if ours == "--text" else []
        assert evaluate_all.main([*base, *extra, "--pretrain-args", "--learning-rate", "1e-3", *given]) == 2, given
        err = capsys.readouterr().err
        assert "--pretrain-args sets what evaluate-all gives every model alike" in err and f"(use {ours})" in err
        assert given[0] in err, err
    assert started == []
    # every spelling `bizoo pretrain` has for what evaluate-all sets is known to the check
    shared = set(evaluate_all.SHARED_PRETRAIN_OPTIONS) | {s for spellings in evaluate_all.TEXT_OPTIONS.values()
                                                           for s in spellings}
    dests = {"model", "variant", "output_dir", "max_steps", "epochs", "num_train_epochs", "seed", "data_seed",
             "batch_size", "per_device_train_batch_size", "max_length", "eval_steps", "text", "eval_text"}
    spellings = {s for action in pretrain_parser()._actions if action.dest in dests for s in action.option_strings}
    assert spellings - shared == set()

    seen = []
    monkeypatch.setattr(evaluate_all, "evaluate_model", lambda name, args, tasks, out: seen.append(
        evaluate_all.pretrain_argv(name, args, out / name / "pretrain")) or {"model": name, "glue": {}, "seconds": 0.0,
                                                                            "pretrain": None})
    assert evaluate_all.main([*base, "--pretrain-args", "--text", str(text), "--model-config", "hidden_size=32"]) == 0
    assert seen[0][-4:] == ["--text", str(text), "--model-config", "hidden_size=32"]


def test_finetuning_runs_again_when_its_pretraining_ran_again(tmp_path, glue_dir, monkeypatch, capsys):
    """A fine-tuning run records the pretraining it started from; a pretraining run again with the same command line
    (here: after another --pretrain-steps came and went) has other weights, so the fine-tuning runs made from the
    earlier ones run again rather than reporting their results; a call with nothing new runs nothing."""
    started = []
    fake_runs(monkeypatch, started)
    out = tmp_path / "out"
    both = ["--output-dir", str(out), "--models", "lion-s", "--glue-dir", str(glue_dir), "--tasks", "RTE", "SST-2",
            "--pretrain-steps", "2", "--finetune-steps", "1"]
    assert evaluate_all.main(both) == 0
    assert started == [("lion-s", "pretrain"), ("lion-s", "RTE"), ("lion-s", "SST-2")]
    other = [*both[:both.index("--tasks") + 1], "RTE", "--pretrain-steps", "3", "--finetune-steps", "1"]
    started.clear()
    assert evaluate_all.main(other) == 0  # another pretraining, RTE fine-tuned from it; SST-2 not asked for
    assert started == [("lion-s", "pretrain"), ("lion-s", "RTE")]
    started.clear()
    capsys.readouterr()
    assert evaluate_all.main(both) == 0  # the first pretraining again: new weights, so SST-2 is run again too
    assert started == [("lion-s", "pretrain"), ("lion-s", "RTE"), ("lion-s", "SST-2")], started
    assert "SST-2 was made by another command line (another pretraining run): running it again" in (
        capsys.readouterr().out)
    started.clear()
    assert evaluate_all.main(both) == 0  # nothing new: every run reused
    assert started == []
    pre = json.loads((out / "lion-s" / "pretrain.command.json").read_text())
    assert pre["finished"] and json.loads((out / "lion-s" / "SST-2.command.json").read_text())["after"]["run"] == (
        pre["run"])
