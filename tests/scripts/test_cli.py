"""The `bizoo` command line: every command's help, `bizoo pretrain` end to end and its bad inputs, `bizoo bench`."""

import json
import math
import subprocess
import sys

import pytest
import torch

from bizoo.scripts import cli, pretrain

TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


def test_every_command_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    listing = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in listing
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "usage: bizoo " + name in text
        if name in ("pretrain", "finetune-glue", "finetune-ner"):
            for option in ("--output-dir", "--seed", "--max-steps", "--resume"):
                assert option in text, (name, option)


def test_python_dash_m_runs_a_command():
    result = subprocess.run(
        [sys.executable, "-m", "bizoo.scripts.pretrain", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage: bizoo pretrain" in result.stdout


def write_corpus(folder, sentences, n_files=2):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = folder / f"doc{i}.txt"
        path.write_text("\n".join(sentences(60, seed=i)) + "\n")
        paths.append(str(path))
    return paths


def test_pretrain_end_to_end_on_given_text(tmp_path, sentences, capsys):
    train = write_corpus(tmp_path / "train", sentences)
    held_out = write_corpus(tmp_path / "eval", sentences, n_files=1)
    out = tmp_path / "run"
    code = pretrain.main(
        ["--text", *train, "--eval-text", *held_out, "--output-dir", str(out), "--max-steps", "3",
         "--batch-size", "4", "--max-length", "32", "--vocab-size", "150", "--logging-steps", "1",
         "--save-steps", "2", "--variant", "s", "--model-config", *TINY]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out masked-token accuracy" in printed and "unigram baseline" in printed and "->" in printed
    for name in ("config.json", "model.safetensors", "tokenizer.json", "loss_curve.png", "bizoo_results.json"):
        assert (out / name).exists(), name
    results = json.loads((out / "bizoo_results.json").read_text())
    assert results[0]["task"]["type"] == "fill-mask" and 0 <= results[0]["metrics"]["accuracy"] <= 1
    flat = json.loads((out / "all_results.json").read_text())  # run_mlm.py's record
    assert round(flat["eval_accuracy"], 4) == results[0]["metrics"]["accuracy"]
    assert round(flat["eval_loss"], 4) == results[0]["eval_loss"]
    assert flat["perplexity"] == pytest.approx(math.exp(flat["eval_loss"]))
    assert flat["eval_samples"] > 0 and flat["train_samples"] > 0 and flat["epoch"] > 0 and "train_loss" in flat
    assert not list(tmp_path.glob("**/.final-tmp"))

    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.config.lion_variant == "s" and model.config.hidden_size == 32

    # --resume continues from the last checkpoint (step 2) up to the new --max-steps
    code = pretrain.main(
        ["--text", *train, "--eval-text", *held_out, "--output-dir", str(out), "--max-steps", "5",
         "--batch-size", "4", "--max-length", "32", "--logging-steps", "1", "--save-steps", "2", "--resume",
         "--variant", "s", "--model-config", *TINY]
    )
    assert code == 0
    log = json.loads((out / "training_log.json").read_text())
    assert max(entry["step"] for entry in log) == 5


def test_pretrain_helpers():
    class Tok:
        cls_token_id, sep_token_id = 2, 3

        def __call__(self, lines, add_special_tokens=False, verbose=True):
            return {"input_ids": [[10 + len(line)] * len(line) for line in lines]}

    blocks = pretrain.pack(Tok(), [["aaaaa", "bbb"], ["cccccccccc"]], max_length=6, min_length=2)
    # each document is packed on its own: no block mixes documents
    assert blocks == [[2, 15, 15, 15, 15, 3], [2, 15, 13, 13, 13, 3], [2, 20, 20, 20, 20, 3], [2, 20, 20, 20, 20, 3], [2, 20, 20, 3]]



def test_the_final_save_replaces_its_files_and_keeps_the_others(tmp_path):
    """``staged_update`` (the final save of pretrain and the fine-tuning commands): the new files replace the old,
    the checkpoints stay; a save that fails leaves the folder as it was and no staging folder beside it."""
    from bizoo.scripts.lib.output_folders import staged_update

    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "config.json").write_text("old")
    with staged_update(out) as staging:
        (staging / "config.json").write_text("new")
        (staging / "model.safetensors").write_text("weights")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "config.json", "model.safetensors"]
    assert (out / "config.json").read_text() == "new"
    with pytest.raises(OSError), staged_update(out) as staging:
        (staging / "config.json").write_text("newer")
        raise OSError("disk full")
    assert (out / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "transformer"], "unknown model type 'transformer'; bizoo has"),
        (["--variant", "x"], "unknown --variant 'x'"),
        (["--model-config", "hidden_sise=3"], "unknown --model-config field 'hidden_sise'"),
        (["--model-config", "vocab_size=300"], "cannot set 'vocab_size'"),
        (["--model-config", "lion_form=parallel"], "lion_form must be one of"),
        (["--model-config", "hidden_size=30"], "multiple of num_attention_heads"),
        (["--text", "MISSING.txt"], "MISSING.txt"),
        (["--text", "EMPTY"], "empty"),
        (["--max-steps", "0"], "--max-steps"),
        (["--mlm-probability", "1.5"], "--mlm-probability"),
        (["--resume"], "--resume"),
        (["--model", "lion", "--objective", "bilm"], "model type 'lion' has no bidirectional-LM head"),
        (["--model", "bilstm_crf", "--objective", "bilm"], "model type 'bilstm_crf' has no bidirectional-LM head"),
        (["--model", "elmo", "--model-config", "char_vocab_size=300"], "cannot set 'char_vocab_size'"),
    ],
)
def test_pretrain_bad_input_is_a_clear_error_before_anything_is_written(tmp_path, extra, message, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    extra = [str(empty) if e == "EMPTY" else e for e in extra]
    out = tmp_path / "never"
    code = pretrain.main(["--output-dir", str(out), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path, tokenizer):
    import bizoo
    from bizoo.scripts.lib.command import CommandError
    from bizoo.scripts.lib.models import load_model
    from transformers import AutoModelForMaskedLM

    small = bizoo.LionConfig(vocab_size=len(tokenizer) - 10, hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    AutoModelForMaskedLM.from_config(small).save_pretrained(tmp_path / "small")
    with pytest.raises(CommandError, match="the tokenizer has"):
        load_model(AutoModelForMaskedLM, str(tmp_path / "small"), tokenizer)


@pytest.mark.parametrize("entry", ["bizoo", "python -m"])
def test_a_command_leaves_no_process_group_behind(tmp_path, monkeypatch, entry):
    """A distributed run's processes must destroy the process group before the interpreter exits: a gloo thread
    still running at exit aborts the process ("terminate called without an active exception") after a run that
    succeeded. Both entry points (``bizoo CMD`` and ``python -m bizoo.scripts.CMD``) end it, also on an error."""
    import torch.distributed as dist

    from bizoo.scripts.lib import command

    def run_in_a_group(args):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        assert dist.is_initialized()
        raise RuntimeError("a failure inside the command")

    monkeypatch.setattr(pretrain, "run", run_in_a_group)
    with pytest.raises(RuntimeError, match="a failure inside the command"):
        if entry == "bizoo":
            cli.main(["pretrain", "--output-dir", str(tmp_path / "out")])
        else:
            command.command_main(pretrain.__name__, ["--output-dir", str(tmp_path / "out")])
    assert not dist.is_initialized()


def test_an_unknown_option_is_named_by_its_command(capsys):
    """`bizoo finetune-glue ... --no-such-option`: the error is the command's (its usage line), exit code 2."""
    with pytest.raises(SystemExit) as exit:
        cli.main(["finetune-glue", "--model-name-or-path", "lion", "--task", "sst2", "--data-dir", "glue",
                  "--output-dir", "out", "--no-such-option"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bizoo finetune-glue" in err and "unrecognized arguments: --no-such-option" in err


@pytest.mark.parametrize("entry", ["bizoo", "python -m"])
def test_an_unknown_option_of_a_bench_target_is_named_by_the_target(entry, capsys):
    """`bizoo bench lion --bogus` (and `python -m bizoo.scripts.bench lion --bogus`): the usage line and the error
    are `bizoo bench lion`'s, whose options the user needs, not `bizoo bench`'s or `bizoo`'s."""
    from bizoo.scripts import bench

    with pytest.raises(SystemExit) as exit:
        if entry == "bizoo":
            cli.main(["bench", "lion", "--bogus"])
        else:
            bench.main(["lion", "--bogus"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "usage: bizoo bench lion" in err and "bizoo bench lion: error: unrecognized arguments: --bogus" in err
