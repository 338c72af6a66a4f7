"""Trainer flags of run_glue.py / run_ner.py / run_mlm.py command lines that transformers accepts but a bizoo training
command cannot honour are refused up front, naming the flag, before anything is written:

* the evaluation flags that keep the command from scoring the evaluation split (--prediction_loss_only,
  --eval_do_concat_batches false, --batch_eval_metrics): they failed after training, in the evaluation, with errors
  that named none of them;
* an --optim whose package is not installed, or --optim_args that are not key=value pairs: a traceback once the
  Trainer built its optimizer;
* an --optim that groups the parameters itself, for a model with its own parameter groups (BiGS).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainingArguments
from transformers import trainer_optimizer

import bizoo
from bizoo.scripts import finetune_glue, finetune_ner, pretrain
from bizoo.scripts.lib import training
from bizoo.scripts.lib.command import CommandError
from tests.scripts.conftest import call
from tests.tiny_configs import TINY_CONFIGS

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


def command_line(command: str, output: Path, glue_dir: Path, conll_dir: Path, *extra) -> tuple:
    """(main, argv) of a two-step run of ``command`` on the tiny data into ``output``."""
    data = {
        "finetune-glue": (finetune_glue.main,
                          ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir]),
        "finetune-ner": (finetune_ner.main, ["--model-name-or-path", "lion", "--data-dir", conll_dir]),
        "pretrain": (pretrain.main, ["--model", "lion"]),
    }
    main, argv = data[command]
    return main, [*argv, "--output-dir", output, "--max-steps", "2", "--max-length", "32", "--batch-size", "4",
                  *TINY, *extra]


SCORING_FLAGS = {
    "prediction_loss_only": (["--prediction_loss_only"], "prediction_loss_only=False"),
    "eval_do_concat_batches": (["--eval_do_concat_batches", "false"], "eval_do_concat_batches=True"),
    "batch_eval_metrics": (["--batch_eval_metrics"], "batch_eval_metrics=False"),
}


@pytest.mark.parametrize("command", ["finetune-glue", "finetune-ner", "pretrain"])
@pytest.mark.parametrize("flag", list(SCORING_FLAGS))
def test_flags_that_keep_the_command_from_scoring_are_refused_up_front(command, flag, glue_dir, conll_dir, tmp_path,
                                                                        capsys) -> None:
    # Before: transformers took them and the command failed after training, in its evaluation ("accuracy: 1
    # predictions but 12 labels", "inhomogeneous shape", "must take a `compute_result` boolean argument").
    given, needed = SCORING_FLAGS[flag]
    output = tmp_path / "run"
    main, argv = command_line(command, output, glue_dir, conll_dir, "--eval_strategy", "steps", "--eval_steps", "1",
                              *given)
    assert call(main, argv) == 2
    error = capsys.readouterr().err
    assert f"--{flag}" in error and needed in error
    assert not output.exists()


def test_the_scoring_flags_at_their_working_values_are_taken(glue_dir, conll_dir, tmp_path, capsys) -> None:
    output = tmp_path / "run"
    main, argv = command_line("finetune-glue", output, glue_dir, conll_dir, "--eval_strategy", "steps",
                              "--eval_steps", "1", "--prediction_loss_only", "false", "--eval_do_concat_batches",
                              "true", "--batch_eval_metrics", "false")
    assert call(main, argv) == 0
    assert (output / "model.safetensors").is_file()


def test_a_command_that_scores_the_loss_alone_keeps_its_own_needs() -> None:
    # pretrain's biLM objective fixes prediction_loss_only=True: nothing then needs the predictions
    assert training.scoring_needs({"prediction_loss_only": True}) == {}
    assert set(training.scoring_needs({"prediction_loss_only": False})) == set(SCORING_FLAGS)
    assert set(training.scoring_needs()) == set(SCORING_FLAGS)


def test_the_bilm_objective_takes_the_flags_a_masked_lm_run_refuses(tmp_path) -> None:
    """ELMo's biLM scores its held-out loss alone (prediction_loss_only=True): the scoring flags change nothing
    there and are taken, checked against the objective the command line states (ELMo's "auto" is the biLM)."""
    parser = argparse.ArgumentParser(prog="bizoo pretrain")
    pretrain.add_arguments(parser)
    for flag in ("--eval_do_concat_batches=false", "--batch_eval_metrics", "--prediction_loss_only"):
        args = parser.parse_args(["--model", "elmo", "--output-dir", str(tmp_path / "elmo"), flag])
        assert pretrain.prepare_job(args).objective == "bilm"
    args = parser.parse_args(["--model", "elmo", "--objective", "mlm", "--output-dir", str(tmp_path / "mlm"),
                              "--batch_eval_metrics"])
    with pytest.raises(CommandError, match="this command needs batch_eval_metrics=False"):
        pretrain.prepare_job(args)


@pytest.mark.parametrize("command", ["finetune-glue", "pretrain"])
def test_an_optimizer_whose_package_is_missing_is_refused_up_front(command, glue_dir, conll_dir, tmp_path,
                                                                   monkeypatch, capsys) -> None:
    # Before: a traceback (exit code 1) when the Trainer built the optimizer, after the data was read and the
    # output folder made. bitsandbytes is taken for absent whether or not it is installed.
    monkeypatch.setattr(trainer_optimizer, "is_bitsandbytes_available", lambda: False)
    output = tmp_path / "run"
    main, argv = command_line(command, output, glue_dir, conll_dir, "--optim", "adamw_bnb_8bit")
    assert call(main, argv) == 2
    error = capsys.readouterr().err
    assert "--optim adamw_bnb_8bit: You need to install `bitsandbytes`" in error and "adamw_torch" in error
    assert not output.exists()


def test_optim_args_that_are_not_key_value_pairs_are_refused_up_front(glue_dir, conll_dir, tmp_path, capsys) -> None:
    output = tmp_path / "run"
    main, argv = command_line("finetune-ner", output, glue_dir, conll_dir, "--optim", "adamw_torch",
                              "--optim_args", "betas=0.9,fast")
    assert call(main, argv) == 2
    error = capsys.readouterr().err
    assert "--optim_args 'betas=0.9,fast': 'fast' is not key=value" in error
    assert not output.exists()


def test_an_optimizer_that_needs_the_model_is_left_to_the_trainer(monkeypatch) -> None:
    # GaLore / APOLLO / LOMO: transformers asks for the model, which only the Trainer has; not an error up front
    original = Trainer.get_optimizer_cls_and_kwargs

    def needs_model(args, model=None):
        if model is None:
            raise ValueError("You need to pass a `model` in order to correctly initialize a LOMO optimizer.")
        return original(args, model)

    monkeypatch.setattr(Trainer, "get_optimizer_cls_and_kwargs", staticmethod(needs_model))
    parser = argparse.ArgumentParser(prog="bizoo finetune-glue")
    finetune_glue.add_arguments(parser)
    args = parser.parse_args(["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", "glue",
                              "--output-dir", "out", "--optim", "adamw_torch"])
    training.check_training_arguments(args)


@pytest.mark.parametrize("returned", ["params", "model", "optimizer_dict", "factory"])
def test_an_optimizer_with_its_own_groups_is_refused_for_a_model_with_parameter_groups(returned, monkeypatch) -> None:
    # Before: the model's groups were passed beside transformers' own `params` (a TypeError), or a factory was
    # called as an optimizer class.
    model = bizoo.BiGSForMaskedLM(bizoo.get_spec("bigs").config_class(**TINY_CONFIGS["bigs"], vocab_size=50))
    given = TrainingArguments(output_dir="unused", use_cpu=True, optim="adamw_torch")

    def resolved(args, model=None):
        if returned == "factory":
            return (lambda: (lambda model, **kwargs: None)), {"lr": args.learning_rate}
        return torch.optim.AdamW, {"lr": args.learning_rate, returned: object()}

    monkeypatch.setattr(Trainer, "get_optimizer_cls_and_kwargs", staticmethod(resolved))
    args = argparse.Namespace(learning_rate=1e-3, weight_decay=0.01)
    with pytest.raises(CommandError, match=r"--optim adamw_torch groups the model's parameters itself, and "
                                           r"BiGSForMaskedLM trains with its own parameter groups"):
        training.trainer_optimizers(model, args, given)
