"""The training commands take every ``transformers.TrainingArguments`` field, as transformers' example scripts do.

* the options: every field under both spellings, bizoo's options as aliases of their fields (a disagreement is an
  error), bizoo's and the models' defaults kept, the help grouped and within 120 columns;
* checks before anything is written: --metric_for_best_model names a metric of the command, transformers' own
  refusals (--load_best_model_at_end with another save strategy, --fp16 with --bf16, --bf16 on a GPU without it), an
  integration that is not installed, values a command needs;
* end to end, on tiny models: a run_glue.py command line (evaluation every --eval_steps, the best checkpoint loaded
  at the end, gradient checkpointing really recomputing each layer, --report_to reaching the Trainer), run_ner.py's
  metric f1 with --push_to_hub (the Hub replaced by a recorder: nothing leaves the machine), pretraining's best
  held-out loss.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, RepoUrl
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainingArguments
from transformers.integrations import integration_utils
from transformers.modeling_layers import GradientCheckpointingLayer

import bizoo
from bizoo.scripts import cli, finetune_glue, finetune_ner, pretrain
from bizoo.scripts.lib import training
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.model_defaults import MODEL_DEFAULTS
from bizoo.scripts.lib.training import resolve_training_defaults, training_arguments
from tests.tiny_configs import TINY_CONFIGS
from tests.conftest import checkpointing_field, model_checkpointing
from tests.scripts.conftest import call

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
COMMANDS = {"pretrain": pretrain, "finetune-glue": finetune_glue, "finetune-ner": finetune_ner}


def command_parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"bizoo {name}", formatter_class=argparse.RawDescriptionHelpFormatter)
    COMMANDS[name].add_arguments(parser)
    return parser


def glue_options(*extra) -> argparse.Namespace:
    """The parsed and resolved options of finetune-glue (nothing is read or trained)."""
    args = command_parser("finetune-glue").parse_args(
        ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", "glue", "--output-dir", "out",
         *map(str, extra)]
    )
    resolve_training_defaults(args)
    return args


def reaching_trainer(args: argparse.Namespace, tmp_path: Path, **settings) -> TrainingArguments:
    return training_arguments(args, tmp_path / "out", **settings)


def field_names() -> list[str]:
    import dataclasses

    return [field.name for field in dataclasses.fields(TrainingArguments) if field.init]


# ---------------------------------------------------------------------------------------------- the options


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_field_is_an_option_in_both_spellings(name: str) -> None:
    options = command_parser(name)._option_string_actions
    missing = [spelling for field in field_names() for spelling in (f"--{field}", f"--{field.replace('_', '-')}")
               if spelling not in options]
    assert missing == []
    assert options["--batch-size"].dest == "batch_size"  # an alias: its own option, checked against the field's
    assert options["--per_device_train_batch_size"].dest == "per_device_train_batch_size"


def test_a_run_glue_command_line_parses_into_the_training_arguments(tmp_path: Path) -> None:
    args = command_parser("finetune-glue").parse_args([
        "--model_name_or_path", "lion", "--task_name", "sst2", "--data-dir", "glue", "--output_dir", "out",
        "--do_train", "--do_eval", "--max_seq_length", "64", "--per_device_train_batch_size", "16",
        "--learning_rate", "2e-5", "--num_train_epochs", "2", "--eval_strategy", "epoch", "--save_strategy", "epoch",
        "--load_best_model_at_end", "--metric_for_best_model", "accuracy", "--lr_scheduler_type", "cosine",
        "--adam_beta2", "0.98", "--fp16", "--gradient_checkpointing", "--report-to", "none", "--no_skip_memory_metrics",
    ])
    assert (args.model_name_or_path, args.task, args.max_length) == ("lion", "sst2", 64)
    given = reaching_trainer(args, tmp_path)
    assert given.per_device_train_batch_size == 16 and given.num_train_epochs == 2 and given.learning_rate == 2e-5
    assert given.eval_strategy == "epoch" and given.save_strategy == "epoch" and given.load_best_model_at_end
    assert given.metric_for_best_model == "accuracy" and given.greater_is_better
    assert given.lr_scheduler_type == "cosine" and given.adam_beta2 == 0.98 and given.fp16 and not given.bf16
    assert getattr(given, checkpointing_field()) and given.skip_memory_metrics is False and given.report_to == []
    assert args.batch_size == 16 and args.epochs == 2  # what the command reports and its optimizer read


ALIASES = [  # (bizoo's option and value, the field's option and value, the field, its value in TrainingArguments)
    (["--batch-size", "4"], ["--per_device_train_batch_size", "4"], "per_device_train_batch_size", 4),
    (["--epochs", "2"], ["--num-train-epochs", "2.0"], "num_train_epochs", 2.0),
    (["--warmup-ratio", "0.1"], ["--warmup_steps", "0.1"], "warmup_steps", 0.1),
    (["--group-by-length"], ["--train_sampling_strategy", "group_by_length"], "train_sampling_strategy",
     "group_by_length"),
    (["--group_by_length"], ["--train_sampling_strategy", "group_by_length"], "train_sampling_strategy",
     "group_by_length"),  # transformers 4's field, as older run_*.py command lines spell it
    (["--max-steps", "7"], ["--max_steps", "7"], "max_steps", 7),
    (["--learning-rate", "0.01"], ["--learning_rate", "0.01"], "learning_rate", 0.01),
    (["--logging-steps", "5"], ["--logging_steps", "5"], "logging_steps", 5),
    (["--bf16"], ["--bf16", "true"], "bf16", True),
]


@pytest.mark.parametrize("alias, field_option, field, value", ALIASES, ids=[a[2] for a in ALIASES])
def test_bizoo_options_are_aliases_of_their_fields(alias, field_option, field, value, tmp_path: Path) -> None:
    for argv in (alias, field_option, [*alias, *field_option]):
        assert getattr(reaching_trainer(glue_options(*argv), tmp_path), field) == value, argv


DISAGREEING = [
    (["--batch-size", "4", "--per_device_train_batch_size", "8"], "--batch-size 4 and --per_device_train_batch_size 8"),
    (["--group_by_length", "--train_sampling_strategy", "random"],
     "--group-by-length True and --train_sampling_strategy random"),
    (["--epochs", "2", "--num_train_epochs", "3"], "--epochs 2.0 and --num_train_epochs 3.0"),
    (["--warmup-ratio", "0.1", "--warmup_steps", "100"], "--warmup-ratio 0.1 and --warmup_steps 100.0"),
    (["--group-by-length", "--train_sampling_strategy", "random"],
     "--group-by-length True and --train_sampling_strategy random"),
    (["--no-group-by-length", "--train_sampling_strategy", "group_by_length"],
     "--group-by-length False and --train_sampling_strategy group_by_length"),
]


@pytest.mark.parametrize("argv, message", DISAGREEING, ids=[d[0][0] + " " + d[0][-1] for d in DISAGREEING])
def test_an_alias_and_its_field_disagreeing_is_an_error(argv, message) -> None:
    with pytest.raises(CommandError, match="set the same thing to different values") as error:
        glue_options(*argv)
    assert message in str(error.value)


def test_a_disagreement_stops_the_command_before_anything_is_written(tmp_path: Path, capsys) -> None:
    output = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--data-dir", tmp_path, "--output_dir", output, "--batch-size", "4",
            "--per-device-train-batch-size", "8"]
    assert call(finetune_ner.main, argv) == 2
    assert "bizoo finetune-ner: error: --batch-size 4 and --per_device_train_batch_size 8" in capsys.readouterr().err
    assert not output.exists()


def test_bizoo_defaults_then_the_model_preset_then_what_is_given(tmp_path: Path) -> None:
    given = reaching_trainer(glue_options(), tmp_path)
    assert (given.per_device_train_batch_size, given.num_train_epochs, given.learning_rate) == (32, 3.0, 1e-4)
    assert (given.warmup_steps, given.weight_decay, given.max_grad_norm) == (0.06, 0.01, 1.0)
    assert (given.logging_steps, given.save_steps, given.save_total_limit) == (50, 500, 2)
    assert given.report_to == [] and given.data_seed == given.seed == 42 and given.per_device_eval_batch_size == 32
    assert given.train_sampling_strategy == "random" and given.eval_strategy == "no" and not given.push_to_hub
    assert given.logging_nan_inf_filter is False  # no per-step read of the loss (lib.token_count's docstring)
    assert reaching_trainer(glue_options("--logging_nan_inf_filter", "true"), tmp_path).logging_nan_inf_filter

    parser = command_parser("finetune-ner")
    preset = MODEL_DEFAULTS["bilstm_crf"].training_defaults["ner"]
    args = parser.parse_args(["--model-name-or-path", "bilstm_crf", "--data-dir", "x", "--output-dir", "out",
                              "--per_device_train_batch_size", "7", "--train-sampling-strategy", "sequential"])
    taken = resolve_training_defaults(args)
    assert taken == {key: preset[key] for key in preset if key not in ("batch_size", "group_by_length")}
    given = reaching_trainer(args, tmp_path)
    assert given.per_device_train_batch_size == 7 and args.batch_size == 7  # given as the field: beats the preset
    assert given.train_sampling_strategy == "sequential" and args.group_by_length is False
    assert (given.learning_rate, given.num_train_epochs, given.warmup_steps) == (
        preset["learning_rate"], preset["epochs"], preset["warmup_ratio"])


def test_pretrain_defaults_can_be_changed_and_its_needs_cannot(tmp_path: Path) -> None:
    parser = command_parser("pretrain")
    args = parser.parse_args(["--output-dir", "out", "--max-steps", "40"])
    given = reaching_trainer(args, tmp_path, **pretrain.trainer_settings(args))
    # masked-LM: the held-out evaluation computes the accuracy too (predictions kept), and counts the tokens seen
    assert (given.eval_strategy, given.eval_steps, given.prediction_loss_only) == ("steps", 10, False)
    # counted by lib.token_count.TokenCountingTrainer, not by the Trainer's per-step read
    assert given.include_num_input_tokens_seen == "no"
    assert reaching_trainer(args, tmp_path, **pretrain.trainer_settings(args, "bilm")).prediction_loss_only is True
    args = parser.parse_args(["--output-dir", "out", "--max-steps", "40", "--eval_strategy", "epoch"])
    assert reaching_trainer(args, tmp_path, **pretrain.trainer_settings(args)).eval_strategy == "epoch"
    args = parser.parse_args(["--output-dir", "out", "--remove_unused_columns", "true"])
    with pytest.raises(CommandError, match="--remove_unused_columns True: this command needs remove_unused_columns"):
        reaching_trainer(args, tmp_path, **pretrain.trainer_settings(args))
    args = parser.parse_args(["--output-dir", "out", "--include_num_input_tokens_seen", "true"])
    with pytest.raises(CommandError, match="needs include_num_input_tokens_seen=no: the tokens trained on are counted "
                                           "and logged as num_input_tokens_seen all the same"):
        reaching_trainer(args, tmp_path, **pretrain.trainer_settings(args))


def test_resume_from_checkpoint_is_resume_with_a_named_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "elsewhere" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    args = glue_options("--resume_from_checkpoint", checkpoint)
    assert args.resume is True and training.resume_checkpoint(args, tmp_path / "out") == str(checkpoint)
    with pytest.raises(CommandError, match="--resume continues from the newest checkpoint"):
        glue_options("--resume", "--resume_from_checkpoint", checkpoint)
    args = glue_options("--resume_from_checkpoint", tmp_path / "missing")
    with pytest.raises(CommandError, match="is not a checkpoint folder"):
        training.check_training_arguments(args)


def test_an_optimizer_of_parameter_groups_takes_the_optim_options() -> None:
    spec = bizoo.get_spec("bigs")
    model = bizoo.BiGSForMaskedLM(spec.config_class(**TINY_CONFIGS["bigs"]))
    args = argparse.Namespace(learning_rate=1e-3, weight_decay=0.01)
    given = TrainingArguments(output_dir="unused", use_cpu=True, optim="adamw_torch", adam_beta1=0.5, adam_epsilon=1e-6)
    optimizer, scheduler = training.trainer_optimizers(model, args, given)
    assert scheduler is None and isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.5, 0.999) and optimizer.defaults["eps"] == 1e-6
    assert sorted(group["lr"] for group in optimizer.param_groups) == pytest.approx([1e-4, 1e-3, 1e-3])


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_groups_the_fields_and_stays_within_120_columns(name: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    text = capsys.readouterr().out
    training_part = text[text.index("\ntraining:\n"):]
    passed = training_part.index(f"\n{training.PASSED_THROUGH_TITLE}:\n")
    assert "--batch-size" in training_part[:passed] and "--per_device_train_batch_size" in training_part[passed:]
    assert "--eval_strategy NAME, --eval-strategy NAME" in training_part[passed:]
    too_wide = [line for line in text[: text.index("\n\n")].splitlines() + training_part.splitlines()
                if len(line) > 120]
    assert too_wide == []
    assert len(text[: text.index("\n\n")].splitlines()) < 20  # the usage: the command's own options, not 200


# ---------------------------------------------------------------------------------------------- refused up front


REFUSED = {
    "metric of another task": (finetune_glue, ["--metric_for_best_model", "f1"],
                               "--metric_for_best_model 'f1' is not a metric this command's evaluation reports; "
                               "allowed: loss, accuracy"),
    "ner metric": (finetune_ner, ["--metric_for_best_model", "accuracy"], "allowed: loss, f1, precision, recall"),
    "pretrain metric": (pretrain, ["--metric_for_best_model", "eval_perplexity"], "allowed: loss, accuracy"),
    "best model without matching saves": (
        finetune_glue, ["--load_best_model_at_end", "--eval_strategy", "steps", "--save_strategy", "epoch"],
        "the training options do not fit together: --load_best_model_at_end requires"),
    "fp16 and bf16": (finetune_ner, ["--fp16", "--bf16"], "At most one of fp16 and bf16"),
    "integration not installed": (finetune_glue, ["--report_to", "wandb"],
                                  "--report_to wandb: WandbCallback requires wandb to be installed"),
    "unknown integration": (pretrain, ["--report_to", "carrier_pigeon"], "carrier_pigeon is not supported"),
    "do_predict without a test split": (finetune_glue, ["--do_predict"],
                                        "--do_predict predicts GLUE SST-2's test split, but GLUE SST-2 test file"),
    "do_predict in a command without a test split": (pretrain, ["--do_predict"], "predicts no test split"),
    "do_train false": (finetune_ner, ["--do_train", "false"],
                       "--do_train false with neither --do_eval nor --do_predict leaves nothing to do"),
    "do_eval false": (finetune_glue, ["--do_eval", "false"], "--do_eval false: this command always evaluates"),
    "do_train false in pretrain": (pretrain, ["--do_train", "false"], "--do_train false: this command always trains"),
    "evaluation alone in pretrain": (pretrain, ["--do_eval"], "--do_eval without --do_train: this command always "
                                     "trains, then evaluates"),
    "evaluation alone resumed": (finetune_ner, ["--do_eval", "--resume"], "--resume continues a training run, and "
                                 "--do_eval / --do_predict without --do_train train nothing"),
    "needed by the command": (pretrain, ["--prediction_loss_only", "true"], "this command needs prediction_loss_only"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_combination_stops_before_anything_is_written(case, glue_dir, conll_dir, tmp_path, monkeypatch,
                                                                capsys) -> None:
    monkeypatch.setattr(integration_utils, "is_wandb_available", lambda: False)  # installed or not
    command, extra, message = REFUSED[case]
    output = tmp_path / "out"
    base = {
        finetune_glue: ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir],
        finetune_ner: ["--model-name-or-path", "lion", "--data-dir", conll_dir],
        pretrain: [],
    }[command]
    assert call(command.main, [*base, *TINY, "--output-dir", output, "--max-steps", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert f"{command.PROG}: error: " in err and message in err, err
    assert not output.exists()


def test_on_a_gpu_batches_are_copied_without_blocking(tmp_path, monkeypatch) -> None:
    """bizoo's default on a GPU: the Trainer's batches are copied from pinned memory without waiting for the device
    (a blocking copy is a host sync per step); a given --accelerator_config wins; nothing changes without a GPU."""
    assert reaching_trainer(glue_options(), tmp_path).accelerator_config.non_blocking is False
    monkeypatch.setattr(training, "cuda_available", lambda: True)
    given = reaching_trainer(glue_options(), tmp_path)
    assert given.accelerator_config.non_blocking is True and given.dataloader_pin_memory is True
    given = reaching_trainer(glue_options("--accelerator_config", '{"split_batches": true}'), tmp_path)
    assert given.accelerator_config.split_batches is True and given.accelerator_config.non_blocking is False


def test_bf16_is_refused_on_a_gpu_without_it(glue_dir, tmp_path, monkeypatch, capsys) -> None:
    from transformers import training_args

    monkeypatch.setattr(training, "cuda_available", lambda: True)
    monkeypatch.setattr(training_args, "is_torch_bf16_gpu_available", lambda: False)
    output = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir, "--output-dir", output, "--bf16"]
    assert call(finetune_glue.main, argv) == 2
    assert "Your setup doesn't support bf16/gpu" in capsys.readouterr().err
    assert not output.exists()


# ---------------------------------------------------------------------------------------------- end to end


class Probe(TrainerCallback):
    """Stands in for a reporting integration: what the Trainer hands to --report_to's callbacks, and how often each
    checkpointed layer and the modules inside it run while training. The layer's own hooks run once a step (outside
    the checkpoint); the modules inside run again when the backward pass recomputes the layer."""

    seen: dict = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        Probe.seen.update(args=args, checkpointing=model_checkpointing(model), logs=[], layer={}, inside={})
        for name, layer in model.named_modules():
            if isinstance(layer, GradientCheckpointingLayer):
                layer.register_forward_hook(self._count("layer", name))
                next(layer.children()).register_forward_hook(self._count("inside", name))

    @staticmethod
    def _count(where: str, name: str):
        def hook(module, inputs, output):
            if module.training:
                Probe.seen[where][name] = Probe.seen[where].get(name, 0) + 1
        return hook

    def on_log(self, args, state, control, logs=None, **kwargs):
        Probe.seen["logs"].append({**logs, "step": state.global_step})


@pytest.fixture
def probe(monkeypatch) -> dict:
    """``--report_to tensorboard`` builds the Probe (tensorboard itself is not needed)."""
    Probe.seen = {}
    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "tensorboard", Probe)
    return Probe.seen


def checkpoint_state(output: Path) -> dict:
    last = max(output.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())


def test_a_run_glue_command_line_trains_evaluates_and_keeps_the_best_model(glue_dir, tmp_path, probe) -> None:
    output = tmp_path / "run"
    argv = ["--model_name_or_path", "lion", "--task_name", "sst2", "--data-dir", glue_dir, "--output_dir", output,
            "--do_train", "--do_eval", "--max_seq_length", "32", "--per_device_train_batch_size", "4",
            "--learning_rate", "3e-3", "--max_steps", "6", "--logging_steps", "1", "--eval_strategy", "steps",
            "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2", "--load_best_model_at_end",
            "--metric_for_best_model", "accuracy", "--gradient_checkpointing", "--report_to", "tensorboard", *TINY]
    assert call(finetune_glue.main, argv) == 0

    given = probe["args"]  # the TrainingArguments the Trainer and its integrations got
    assert given.report_to == ["tensorboard"] and given.per_device_train_batch_size == 4
    assert getattr(given, checkpointing_field()) and probe["checkpointing"]
    assert probe["layer"] and set(probe["layer"].values()) == {6}  # a forward pass a step ...
    assert probe["inside"].keys() == probe["layer"].keys()
    assert set(probe["inside"].values()) == {2 * 6}  # ... recomputed in the backward pass
    evaluations = [log for log in probe["logs"] if "eval_accuracy" in log]
    assert [log["step"] for log in evaluations] == [2, 4, 6]  # every --eval_steps, with the task's metric

    state = checkpoint_state(output)
    accuracies = {log["step"]: log["eval_accuracy"] for log in state["log_history"] if "eval_accuracy" in log}
    best_step = max(accuracies, key=lambda step: (accuracies[step], -step))  # the first of the best
    assert Path(state["best_model_checkpoint"]).name == f"checkpoint-{best_step}"
    assert best_step != 6, "the setup must make the best checkpoint another than the last one"
    final = load_file(output / "model.safetensors")
    best, last = (load_file(output / f"checkpoint-{step}" / "model.safetensors") for step in (best_step, 6))
    assert all(torch.equal(final[key], best[key]) for key in final)  # the best model is what was saved ...
    assert not all(torch.equal(final[key], last[key]) for key in final)  # ... not the last one
    results = json.loads((output / "eval_results.json").read_text())
    assert results["metrics"]["dev"]["accuracy"] == pytest.approx(accuracies[best_step])
    assert results["batch_size"] == 4


class RecordingHub:
    """The Hub, replaced: ``create_repo`` and ``upload_folder`` record their calls and the files they would send
    (so reachable: HF_HUB_OFFLINE, which the suite sets and --push_to_hub refuses, is lifted for the command)."""

    def __init__(self, monkeypatch) -> None:
        from huggingface_hub import constants

        self.repos: list[dict] = []
        self.uploads: list[dict] = []
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(HfApi, "create_repo", self.create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", self.upload_folder)

    def create_repo(self, repo_id, **kwargs):  # set on the class as a bound method: no HfApi self
        self.repos.append({"repo_id": repo_id, **kwargs})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(kwargs["folder_path"])
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        kept = filter_repo_objects(files, ignore_patterns=kwargs.get("ignore_patterns"))
        self.uploads.append({**kwargs, "files": sorted(kept)})
        if kwargs.get("run_as_future"):
            done = Future()
            done.set_result(None)
            return done
        return None


def test_run_ner_metric_f1_and_push_to_hub_offline(conll_dir, tmp_path, monkeypatch, probe, capsys) -> None:
    hub = RecordingHub(monkeypatch)
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--data-dir", conll_dir, "--output_dir", output, *TINY,
            "--max_steps", "4", "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--max-length", "32",
            "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "2", "--load_best_model_at_end",
            "--metric_for_best_model", "f1", "--push_to_hub", "--hub_model_id", "someone/lion-ner",
            "--hub_token", "not-a-token", "--report_to", "tensorboard"]
    assert call(finetune_ner.main, argv) == 0
    assert "pushed " in capsys.readouterr().out

    f1 = {log["step"]: log["eval_f1"] for log in probe["logs"] if "eval_f1" in log}
    assert list(f1) == [2, 4]
    assert all({"eval_precision", "eval_recall"} <= set(log) for log in probe["logs"] if "eval_f1" in log)
    state = checkpoint_state(output)
    best_step = max(f1, key=lambda step: (f1[step], -step))
    assert state["best_metric"] == pytest.approx(f1[best_step])
    assert Path(state["best_model_checkpoint"]).name == f"checkpoint-{best_step}"

    assert [repo["repo_id"] for repo in hub.repos] == ["someone/lion-ner"] and hub.repos[0]["token"] == "not-a-token"
    final = hub.uploads[-1]
    assert final["repo_id"] == "someone/lion-ner" and final["commit_message"] == "End of training"
    assert {"model.safetensors", "config.json", "tokenizer.json", "eval_results.json", "README.md"} <= set(
        final["files"])
    assert not [name for name in final["files"] if name.startswith("checkpoint-")]
    assert len(hub.uploads) > 1 and all(upload["run_as_future"] for upload in hub.uploads[:-1])  # every save
    assert "- bizoo" in (output / "README.md").read_text()  # bizoo's model card went up with the model


def test_pretrain_evaluates_the_held_out_loss_and_keeps_the_best(tmp_path, sentences, probe) -> None:
    text, held_out = tmp_path / "train.txt", tmp_path / "held_out.txt"
    text.write_text("\n".join(sentences(120, seed=1)) + "\n")
    held_out.write_text("\n".join(sentences(12, seed=2)) + "\n")
    output = tmp_path / "run"
    # The best by the HIGHEST held-out loss, so that a falling loss makes it an early checkpoint, not the last.
    argv = ["--text", text, "--eval-text", held_out, "--output-dir", output, "--vocab-size", "150", "--max-length",
            "32", "--per_device_train_batch_size", "8", "--max_steps", "4",
            "--learning_rate", "1e-2", "--warmup_steps", "0", "--eval_steps", "1", "--save_steps", "1",
            "--logging_steps", "1", "--load_best_model_at_end", "--metric_for_best_model", "loss",
            "--greater_is_better", "true", "--report_to", "tensorboard", "--model-config",
            "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
    assert call(pretrain.main, argv) == 0
    losses = {log["step"]: log["eval_loss"] for log in probe["logs"] if "eval_loss" in log}
    assert list(losses) == [1, 2, 3, 4]
    state = checkpoint_state(output)
    best_step = max(losses, key=lambda step: (losses[step], -step))  # --greater_is_better: the highest loss
    assert Path(state["best_model_checkpoint"]).name == f"checkpoint-{best_step}"
    assert best_step != 4, "the setup must make the best checkpoint another than the last one"
    final = load_file(output / "model.safetensors")
    best = load_file(output / f"checkpoint-{best_step}" / "model.safetensors")
    assert all(torch.equal(final[key], best[key]) for key in final)
    assert os.path.exists(output / "README.md")


def test_drop_last_drops_a_training_batch_only(tmp_path):
    """--dataloader_drop_last: the training loader drops its last incomplete batch; the evaluation and prediction
    loaders of the commands' Trainers keep every example (transformers drops there too)."""
    from transformers import Trainer

    from bizoo.scripts.lib.trainer_mixins import EvaluatesEveryExample

    class Model(torch.nn.Module):
        def forward(self, x, labels=None):
            return {"loss": x.sum()}

    data = [{"x": torch.tensor([float(i)])} for i in range(10)]
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4,
                             dataloader_drop_last=True, report_to=[], use_cpu=True)
    stock = Trainer(model=Model(), args=args, train_dataset=data, eval_dataset=data)
    assert sum(len(b["x"]) for b in stock.get_eval_dataloader()) == 8  # what the mixin mends

    class Whole(EvaluatesEveryExample, Trainer):
        pass

    trainer = Whole(model=Model(), args=args, train_dataset=data, eval_dataset=data)
    assert sum(len(b["x"]) for b in trainer.get_train_dataloader()) == 8
    assert sum(len(b["x"]) for b in trainer.get_eval_dataloader()) == 10
    assert sum(len(b["x"]) for b in trainer.get_test_dataloader(data)) == 10
    assert trainer.args.dataloader_drop_last is True


@pytest.mark.parametrize("use_crf", [True, False])
def test_label_smoothing_is_refused_for_a_crf_token_head(use_crf):
    """The Trainer's smoothed loss reads ``logits``: a CRF head's are decoding scores without a gradient."""
    from transformers import AutoModelForTokenClassification

    config = bizoo.LionConfig(**TINY_CONFIGS["lion"], vocab_size=50, num_labels=3, use_crf=use_crf)
    model = AutoModelForTokenClassification.from_config(config)
    smoothing = argparse.Namespace(label_smoothing_factor=0.1)
    if use_crf:
        with pytest.raises(CommandError, match="LionForTokenClassification's CRF head trains on the likelihood"):
            training.check_label_smoothing(smoothing, model)
    else:
        training.check_label_smoothing(smoothing, model)  # a softmax head: the smoothed loss works
    training.check_label_smoothing(argparse.Namespace(label_smoothing_factor=0.0), model)


def test_label_smoothing_is_refused_for_the_bilm_objective(tmp_path, capsys):
    """The Trainer pops the labels and smooths ``outputs["logits"]``: ELMo's biLM has a forward and a backward LM's
    logits and no ``logits`` (the run ended in ``KeyError: 'logits'`` at the first step); refused before anything is
    written."""
    out = tmp_path / "elmo"
    assert call(pretrain.main, ["--model", "elmo", "--output-dir", out, "--label_smoothing_factor", "0.1"]) == 2
    assert "--label_smoothing_factor smooths the Trainer's softmax over one `logits` output" in capsys.readouterr().err
    assert not out.exists()


def test_neftune_is_refused_where_elmo_reads_no_word_vectors(tmp_path, capsys):
    """NEFTune noises model.get_input_embeddings()'s output: an ELMo tagger without word features has no table (the
    Trainer failed with "'NoneType' object has no attribute 'neftune_noise_alpha'"), ELMo's LM heads have the softmax
    table, never called on the input (the noise did nothing); the tagger with word features and other models take
    it."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    noise = argparse.Namespace(neftune_noise_alpha=5.0)
    tagger = lambda **kw: AutoModelForTokenClassification.from_config(  # noqa: E731
        bizoo.ElmoConfig(**TINY_CONFIGS["elmo"], vocab_size=50, num_labels=3, **kw))
    for model in (tagger(), AutoModelForSequenceClassification.from_config(
            bizoo.ElmoConfig(**TINY_CONFIGS["elmo"], vocab_size=50, num_labels=3))):
        with pytest.raises(CommandError, match=f"{type(model).__name__} reads each word's characters and no word"):
            training.check_neftune(noise, "elmo", model)
        training.check_neftune(argparse.Namespace(neftune_noise_alpha=None), "elmo", model)
    training.check_neftune(noise, "elmo", tagger(tagger_word_features=True))  # reads a word vector per id
    lion = AutoModelForTokenClassification.from_config(bizoo.LionConfig(**TINY_CONFIGS["lion"], vocab_size=50))
    training.check_neftune(noise, "lion", lion)
    out = tmp_path / "elmo"
    assert call(pretrain.main, ["--model", "elmo", "--output-dir", out, "--neftune_noise_alpha", "5"]) == 2
    assert "an ELMo language model reads each word's characters" in capsys.readouterr().err
    assert not out.exists()


def test_max_train_and_eval_samples_cut_the_examples_as_run_scripts_do(glue_dir, conll_dir, tmp_path, sentences,
                                                                        capsys) -> None:
    """run_*.py's --max_train_samples / --max_eval_samples: each command trains on the first N examples (GLUE
    examples, sentences, blocks) and scores the first M; the labels stay those of the whole training data."""
    fast = ["--max-steps", "1", "--batch-size", "4", "--max-length", "32", *TINY]
    out = tmp_path / "glue"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir,
                                     "--output-dir", out, "--max_train_samples", 9, "--max_eval_samples", 5,
                                     *fast]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_train_examples"] == 9 and results["num_eval_examples"] == {"dev": 5}
    out = tmp_path / "ner"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--data-dir", conll_dir, "--output-dir", out,
                                    "--max-train-samples", 2, "--max-eval-samples", 3, *fast]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_train_examples"] == 2 and results["num_eval_examples"] == 3
    assert "I-PER" in results["labels"]  # from all 40 training sentences: the first two have no I-PER
    text = tmp_path / "train.txt"
    text.write_text("\n".join(sentences(120, seed=1)) + "\n")
    capsys.readouterr()
    assert call(pretrain.main, ["--text", text, "--output-dir", tmp_path / "mlm", "--vocab-size", "150",
                                "--max_train_samples", 4, "--max_eval_samples", 2, *fast]) == 0
    assert "4 training and 2 held-out blocks" in capsys.readouterr().out
    for argv in (["--max-train-samples", 0], ["--max_eval_samples", -1]):
        assert call(pretrain.main, ["--output-dir", tmp_path / "bad", *argv]) == 2
        assert f"{argv[0].replace('_', '-')} must be >= 1, got {argv[1]}" in capsys.readouterr().err
    assert call(pretrain.main, ["--text", text, "--eval-text", text, "--stream", "--output-dir", tmp_path / "s",
                                "--max-train-samples", 4]) == 2
    assert "--max-train-samples cuts a corpus read whole" in capsys.readouterr().err


def test_pretrain_selects_the_best_checkpoint_by_held_out_accuracy(tmp_path, sentences, probe, capsys) -> None:
    """Masked-LM evaluation reports eval_accuracy, so --metric_for_best_model accuracy is taken (higher is better:
    the best checkpoint is the one of the highest accuracy); a biLM's evaluation reports the loss only, so there it is
    refused, naming what is allowed."""
    text = tmp_path / "train.txt"
    text.write_text("\n".join(sentences(120, seed=1)) + "\n")
    output = tmp_path / "run"
    argv = ["--text", text, "--output-dir", output, "--vocab-size", "150", "--max-length", "32", "--batch-size", "8",
            "--max_steps", "3", "--learning_rate", "1e-2", "--eval_steps", "1", "--save_steps", "1",
            "--load_best_model_at_end", "--metric_for_best_model", "accuracy", "--report_to", "tensorboard", *TINY]
    assert call(pretrain.main, argv) == 0
    accuracies = {log["step"]: log["eval_accuracy"] for log in probe["logs"] if "eval_accuracy" in log}
    assert list(accuracies) == [1, 2, 3]
    state = checkpoint_state(output)
    assert state["best_metric"] == max(accuracies.values()) and Path(state["best_model_checkpoint"]).is_dir()
    capsys.readouterr()
    assert call(pretrain.main, ["--model", "elmo", "--output-dir", tmp_path / "elmo",
                                "--metric_for_best_model", "accuracy"]) == 2
    assert "'accuracy' is not a metric this command's evaluation reports; allowed: loss" in capsys.readouterr().err


def test_push_to_hub_while_offline_is_refused_before_anything_is_written(conll_dir, tmp_path, capsys) -> None:
    """HF_HUB_OFFLINE (set for the suite) and --push_to_hub: an error naming both, exit 2, no output folder (the
    Trainer's repository creation raised OfflineModeIsEnabled after the data and the tokenizer were prepared)."""
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--data-dir", conll_dir, "--output_dir", output, *TINY, "--max_steps", "1",
            "--push_to_hub", "--hub_model_id", "someone/lion-ner"]
    assert call(finetune_ner.main, argv) == 2
    err = capsys.readouterr().err
    assert "--push_to_hub uploads to the Hub, but HF_HUB_OFFLINE is set" in err, err
    assert not output.exists()
