"""The options every training command has, and what turns them into a ``transformers.Trainer`` run.

A training command (pretrain, finetune-glue, finetune-ner) has two groups of training options:

* **training**, bizoo's own (``add_training_arguments``): ``--output-dir``, ``--seed``, ``--max-steps``,
  ``--epochs``, ``--learning-rate``, ``--batch-size``, ... with bizoo's defaults, sized for a small model on a CPU.
* **transformers.TrainingArguments**: every other field of ``TrainingArguments``, as
  ``transformers.HfArgumentParser`` spells it (``--eval_strategy`` or ``--eval-strategy``), so a command line
  written for transformers' example scripts (run_glue.py, run_ner.py, run_mlm.py) works as it is.

A bizoo option that sets a ``TrainingArguments`` field of the same name is that field's option, with both spellings
(``--max-steps`` is ``--max_steps``). One with another name is an alias (``ALIASES``: ``--batch-size`` is
``--per_device_train_batch_size``, ``--epochs`` is ``--num_train_epochs``, ...): giving both with different values is
an error. ``--resume`` is ``--resume_from_checkpoint`` with the newest checkpoint of ``--output-dir``.
``--max-train-samples`` / ``--max-eval-samples`` (and the fine-tuning commands' ``--max-predict-samples``) are
run_*.py's data options: the command cuts its examples to the first N (``first_samples``). ``--do_predict`` is refused
unless the command predicts a test split (``lib.finetuning.add_predict_arguments``). run_*.py's switches decide
whether a command trains (``trains``): without --do_train, --do_eval or --do_predict it trains, then evaluates; with
any of them it trains only with --do_train (a fine-tuning command then evaluates the checkpoint as it is).

The value each ``TrainingArguments`` field gets, the first that applies:

1. the command line (a field or its alias);
2. the model's preset for the task, for a bizoo model type trained from scratch (``MODEL_DEFAULT_OPTIONS``,
   ``training_defaults`` in ``lib.model_defaults``); a preset's ``best_checkpoint`` stands for the fields below;
3. the command's defaults (``add_training_arguments``'s arguments, ``defaults=`` of ``training_arguments``: e.g.
   pretrain evaluates every quarter of its steps);
4. bizoo's defaults (``bizoo_defaults``: no reporting integration, two checkpoints kept, ...);
5. ``TrainingArguments``' own default.

``--best-checkpoint`` (the commands with presets: finetune-glue, finetune-ner) is shorthand for the checkpoint chosen
on the evaluation split rather than the last one: ``--eval_strategy epoch --save_strategy epoch
--load_best_model_at_end --metric_for_best_model M``, with M the command's main metric (the first name its evaluation
reports: f1 for finetune-ner, the task's first metric for finetune-glue; the evaluation loss where a command names
none). Those fields enter at step 3's level: each one given on the command line wins.

A command may add an option of its own whose default a preset sets (``add_preset_option``, e.g. finetune-ner's
``--word-dropout``); it must be one of ``MODEL_DEFAULT_OPTIONS``, and a preset that sets it for a command without it
is an error.

A value the command depends on (``fixed=``, e.g. pretrain's ``remove_unused_columns=False``; in every command the
evaluation flags its scores need, ``scoring_needs``) cannot be changed: giving another is an error. An --optim whose
package is not installed, or --optim_args that are not key=value pairs, are refused too. Everything is checked
before a command writes anything (``check_training_arguments``, which also builds the ``TrainingArguments`` once, so
transformers' own checks run then too).

Functions: ``add_training_arguments``, ``add_preset_option``, ``resolve_training_defaults``,
``check_training_arguments``, ``trains``, ``check_best_model_metric``, ``best_checkpoint_fields``,
``training_arguments``, ``trainer_optimizers``, ``scoring_needs``, ``resume_checkpoint``,
``check_resume_from_checkpoint``, ``last_checkpoint``, ``check_in_turn``,
``build_on_first_process``, ``push_final_folder``, ``first_samples``, ``input_checks_callback``,
``max_length_padding``; ``add_hub_arguments`` and
``check_hub_options``: the Hub and cache options of run_*.py
(--cache_dir, --model_revision, --token, ...; ``lib.sources``); ``OneValue`` and ``bool_flag`` for a command's own
options spelled as run_*.py spells them too (``--mlm_probability``, ``--pad_to_max_length [BOOL]``): the two
spellings disagreeing is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import HfApi

import bizoo

from ...modeling.heads import CrfTokenClassificationHead
from .command import LOG_LEVEL_HELP, ROOT_LOGGER, CommandError
from .machine import cuda_available
from .model_card import write_checkpoint_card
from .model_defaults import model_defaults

#: Options whose default a model may set for a task (``training_defaults`` in ``lib.model_defaults``) when trained
#: from scratch. ``best_checkpoint``: the commands with presets; ``word_dropout``: finetune-ner's own
#: (``lib.finetuning.add_word_dropout_argument``).
MODEL_DEFAULT_OPTIONS = (
    "epochs", "learning_rate", "batch_size", "weight_decay", "warmup_ratio", "max_grad_norm", "group_by_length",
    "best_checkpoint", "word_dropout",
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The title of bizoo's own group of training options in ``--help``.
TRAINING_GROUP_TITLE = "training"

#: The heading of the passed-through fields in ``--help``.
PASSED_THROUGH_TITLE = "transformers.TrainingArguments (every other field, passed to the Trainer)"


def _same(value):
    return value


@dataclass(frozen=True)
class Alias:
    """A bizoo option (``option``, its argparse dest) that sets the ``TrainingArguments`` field ``field``:
    ``to_field(option value)`` is the field's value, ``from_field(field value)`` the option's."""

    option: str
    field: str
    to_field: Callable[[Any], Any] = _same
    from_field: Callable[[Any], Any] = _same


@dataclass(frozen=True)
class Needed:
    """A ``fixed=`` value with the reason the command needs it, said when the command line gives another."""

    value: Any
    why: str


ALIASES = (
    Alias("batch_size", "per_device_train_batch_size"),
    Alias("epochs", "num_train_epochs"),
    Alias("warmup_ratio", "warmup_steps"),  # warmup_steps below 1 is a share of the steps
    Alias("group_by_length", "train_sampling_strategy",
          to_field=lambda on: "group_by_length" if on else "random",
          from_field=lambda strategy: strategy == "group_by_length"),
)
_ALIAS_OF = {alias.option: alias for alias in ALIASES}

#: bizoo's options that are a ``TrainingArguments`` field of the same name (one option, both spellings).
SAME_NAME_FIELDS = (
    "output_dir", "seed", "max_steps", "learning_rate", "gradient_accumulation_steps", "weight_decay",
    "logging_steps", "save_steps", "bf16", "fsdp", "max_grad_norm",
)

#: Options left unset by the parser, so that ``resolve_training_defaults`` can tell a value given from a default.
_UNSET_OPTIONS = tuple(dict.fromkeys((*MODEL_DEFAULT_OPTIONS, *_ALIAS_OF)))

#: What each bizoo default of a passed-through field is, for ``--help``.
BIZOO_DEFAULT_HELP = {
    "report_to": "none: no integration, so nothing is sent anywhere unless asked",
    "save_total_limit": "2",
    "data_seed": "--seed",
    "per_device_eval_batch_size": "the larger of --batch-size and 32",
    "dataloader_num_workers": "0",
    "dataloader_pin_memory": "true on a GPU",
    "use_cpu": "true without CUDA",
    "disable_tqdm": "true when stderr is not a terminal, or the log level is above warning",
    "logging_nan_inf_filter": "false: a NaN or inf loss shows in the logged loss, and no step reads the loss back",
    "accelerator_config": '{"non_blocking": true} on a GPU: batches are copied to it without waiting for it',
}


def _bool_value(text: str) -> bool:
    from transformers.hf_argparser import string_to_bool

    return string_to_bool(text)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _spellings(name: str) -> list[str]:
    """``--name-with-hyphens`` and ``--name_with_underscores`` (one when they are the same)."""
    return list(dict.fromkeys([_option(name), f"--{name}"]))


@functools.cache
def _field_actions() -> tuple:
    """The argparse actions ``transformers.HfArgumentParser`` makes of ``TrainingArguments``' fields."""
    from transformers import HfArgumentParser, TrainingArguments

    return tuple(HfArgumentParser(TrainingArguments, add_help=False)._actions)


@functools.cache
def training_field_names() -> frozenset[str]:
    """The names of the fields ``TrainingArguments(...)`` takes."""
    from transformers import TrainingArguments

    return frozenset(field.name for field in dataclasses.fields(TrainingArguments) if field.init)


def _metavar(action) -> str:
    if (action.nargs == "?" and action.const is True) or getattr(action.type, "__name__", "") == "string_to_bool":
        return "BOOL"
    if action.choices is not None:
        return "NAME"
    return {int: "N", float: "X"}.get(action.type, "VALUE")


def _field_help(action) -> str:
    """The field's help from transformers, its choices, and what bizoo uses instead of its default."""
    text = " ".join((action.help or "").split())
    if action.choices is not None:
        choices = [str(choice) for choice in action.choices]
        if len(choices) <= 12:
            text += f" (one of: {', '.join(choices)})"
    aliases = [alias for alias in ALIASES if alias.field == action.dest]
    if aliases:
        text += f" (bizoo's alias: {_option(aliases[0].option)})"
    elif action.dest == "resume_from_checkpoint":
        text += " (--resume: the newest checkpoint in --output-dir)"
    elif action.dest == "log_level":
        text += f" (in bizoo: {LOG_LEVEL_HELP})"
    elif action.dest in ("do_train", "do_eval"):
        text += " (in bizoo: the command trains, then evaluates; --do_eval without --do_train is refused)"
    if action.dest in BIZOO_DEFAULT_HELP:
        text += f" (bizoo's default: {BIZOO_DEFAULT_HELP[action.dest]})"
    return text


class OneValue(argparse.Action):
    """An option with several spellings on one dest (bizoo's and run_*.py's, e.g. ``--mlm-probability`` and
    ``--mlm_probability``): stored as argparse's "store" does, except that giving it in the other spelling at a
    different value is an error naming both (argparse would keep the last one without a word); the same spelling
    again overrides, as argparse's options do (a command line with a setting appended). A flag
    (``nargs="?"``, ``const=True``) takes run_*.py's ``--flag`` / ``--flag true|false`` (``bool_flag``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_one_value_given", {})
        if self.dest in given and given[self.dest][0] != option_string and given[self.dest][1] != values:
            first, value = given[self.dest]
            parser.error(f"{first} {value} and {option_string} {values} set the same thing to different "
                         "values: give one of them")
        given[self.dest] = (option_string, values)
        setattr(namespace, self.dest, values)


def max_length_padding(args: argparse.Namespace) -> dict:
    """The padding keywords of a data collator (``DataCollatorWithPadding``, ``DataCollatorForTokenClassification``):
    run_*.py's --pad_to_max_length pads every batch to --max-length, (B, --max-length); else ``{}``, the collator's
    default, each batch to its longest example."""
    return dict(padding="max_length", max_length=args.max_length) if getattr(args, "pad_to_max_length", False) else {}


def bool_flag(**settings) -> dict:
    """``add_argument`` keywords of a run_*.py boolean option (HfArgumentParser's ``--flag [BOOL]``): ``--flag`` is
    true, ``--flag false`` false, default false; ``OneValue``, so two givings that disagree are an error."""
    return dict(nargs="?", const=True, default=False, type=_bool_value, metavar="BOOL", action=OneValue, **settings)


#: --preprocessing_num_workers: the one value bizoo takes (``lib.sources``' docstring).
PREPROCESSING_WORKERS = 1


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """The group of Hub and cache options (``lib.sources``' docstring says what each does), each in bizoo's and
    run_*.py's spelling."""
    group = parser.add_argument_group("Hub and cache (run_*.py's options)")
    group.add_argument(
        "--cache-dir", "--cache_dir", default=None, metavar="DIR", action=OneValue,
        help="where the Hub snapshots of --model-name-or-path, --tokenizer and --dataset-name are cached "
        "(DIR/models--owner--name/...) and where datasets writes its Arrow files (default: HF_HUB_CACHE and "
        "HF_DATASETS_CACHE)",
    )
    group.add_argument(
        "--model-revision", "--model_revision", default=None, metavar="REV", action=OneValue,
        help="the branch, tag or commit of --model-name-or-path (and --tokenizer) on the Hub, as owner/name@REV "
        "says (default: main; a local folder has none)",
    )
    group.add_argument(
        "--token", default=None, metavar="TOKEN", action=OneValue,
        help="the Hub token of the downloads, for private or gated repositories (default: the saved login, HF_TOKEN)",
    )
    group.add_argument(
        "--trust-remote-code", "--trust_remote_code", **bool_flag(
            help="run the Python code a checkpoint names in its auto_map (a model type neither bizoo nor "
            "transformers defines): passed to from_pretrained; read the code first (datasets runs no dataset "
            "scripts: it changes nothing for a dataset)"),
    )
    group.add_argument(
        "--overwrite-cache", "--overwrite_cache", **bool_flag(
            help="datasets prepares the data files again instead of reading its cached Arrow files (nothing is "
            "downloaded again); bizoo tokenizes in memory at every run, there is no preprocessing cache"),
    )
    group.add_argument(
        "--use-fast-tokenizer", "--use_fast_tokenizer", **{**bool_flag(
            help="transformers 5 always loads the fast tokenizer, which bizoo needs: true (the default) is "
            "accepted, false refused"), "default": True},
    )
    group.add_argument(
        "--low-cpu-mem-usage", "--low_cpu_mem_usage", **bool_flag(
            help="run_mlm.py's option, taken with either value and changing nothing: transformers 5 always loads "
            "a checkpoint's weights into an empty model (from_pretrained ignores low_cpu_mem_usage)"),
    )
    group.add_argument(
        "--preprocessing-num-workers", "--preprocessing_num_workers", type=int, default=None, metavar="N",
        action=OneValue,
        help=f"{PREPROCESSING_WORKERS} is what bizoo does: it tokenizes in the command's process with the fast "
        "tokenizer's batch encoding, with no datasets.map to spread over processes; another value is refused",
    )
    group.add_argument(
        "--config-name", "--config_name", default=None, metavar="NAME", action=OneValue,
        help="refused: the configuration is the checkpoint's (--model-name-or-path), or built from the model "
        "type, --variant and --model-config",
    )


def check_hub_options(args: argparse.Namespace) -> None:
    """``CommandError`` for a Hub option bizoo does not take (``lib.sources``' docstring): --use_fast_tokenizer
    false, --preprocessing_num_workers other than 1, --config_name."""
    if getattr(args, "use_fast_tokenizer", True) is False:
        raise CommandError("--use_fast_tokenizer false: transformers 5 always loads the fast tokenizer (it ignores "
                           "use_fast), and bizoo's commands need it (word ids, offsets); drop the option")
    workers = getattr(args, "preprocessing_num_workers", None)
    if workers is not None and workers != PREPROCESSING_WORKERS:
        raise CommandError(
            f"--preprocessing_num_workers {workers}: bizoo tokenizes in the command's process with the fast "
            "tokenizer's batch encoding (there is no datasets.map to spread over processes); give "
            f"{PREPROCESSING_WORKERS} or drop the option"
        )
    if getattr(args, "config_name", None) is not None:
        raise CommandError(
            f"--config_name {args.config_name!r}: bizoo takes the configuration of --model-name-or-path (a "
            "checkpoint), or builds it from the model type, --variant and --model-config KEY=VALUE; it reads no "
            "separate configuration"
        )


class _StepBudget(argparse.Action):
    """--max-steps: stored, and noted as given (``_TrainsForEpochs``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace._max_steps_given = True


class _TrainsForEpochs(argparse.Action):
    """--epochs / --num_train_epochs: stored; unless --max-steps is given too (before or after), --max-steps becomes
    -1, so the epochs asked for are trained. In ``TrainingArguments`` a positive max_steps overrides the epochs: a
    command whose default is a step budget (pretrain: 400) would otherwise ignore ``--num_train_epochs 3`` of a
    run_mlm.py command line without a word."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        if not getattr(namespace, "_max_steps_given", False):
            namespace.max_steps = -1


def _add_passed_through_fields(parser: argparse.ArgumentParser, taken: set[str]) -> list[str]:
    """Every ``TrainingArguments`` field whose dest is not in ``taken``, as HfArgumentParser builds its option, left
    out of the namespace unless given (``argparse.SUPPRESS``), so that only a value given reaches the Trainer.
    Returns the fields added."""
    added = []
    group = parser.add_argument_group(
        PASSED_THROUGH_TITLE,
        "Spelled --name_with_underscores or --name-with-hyphens; booleans as --flag or --flag true/false.\n"
        "Unless given, bizoo's defaults above apply, then transformers' own.",
    )
    for action in _field_actions():
        if action.dest in taken or not action.option_strings:
            continue
        added.append(action.dest)
        if action.nargs == 0 and action.const is False:  # the --no_<field> of a field that defaults to true
            group.add_argument(*action.option_strings, dest=action.dest, action="store_false",
                               default=argparse.SUPPRESS, help=f"set {_option(action.dest)} to false")
            continue
        group.add_argument(
            *action.option_strings, dest=action.dest, type=action.type, nargs=action.nargs, const=action.const,
            choices=action.choices, default=argparse.SUPPRESS, metavar=_metavar(action), help=_field_help(action),
            action=_TrainsForEpochs if action.dest == "num_train_epochs" else "store",
        )
    return list(dict.fromkeys(added))


def add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    max_steps: int,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    task: str | None = None,
    task_option: str | None = None,
) -> None:
    """The training options: bizoo's group, then every other ``TrainingArguments`` field (module docstring).

    The options of ``MODEL_DEFAULT_OPTIONS`` and the aliases are left unset by the parser and
    ``resolve_training_defaults`` fills them in: with ``task`` (e.g. "ner", "glue") from the ``training_defaults[task]``
    (``lib.model_defaults``) of a model type trained from scratch, else from the command's own defaults given here.
    ``task_option``: the dest of a command option whose value is the task instead (finetune-ner's --task: ner,
    chunk, pos), ``task`` then being the task the help describes.
    """
    own_usage = parser.format_usage()  # the command's own options, before the two hundred training ones
    command_defaults = dict(epochs=3.0, learning_rate=learning_rate, batch_size=batch_size, weight_decay=0.01,
                            warmup_ratio=0.06, max_grad_norm=1.0, group_by_length=False)
    if task is not None:  # a command with presets: it evaluates on a split it names, so it can choose a checkpoint
        command_defaults["best_checkpoint"] = False
    preset = (", or the model's own preset when training a bizoo model type from scratch: its training_defaults "
              "in bizoo.scripts.lib.model_defaults" if task is not None else "")

    def default(option: str) -> str:
        return f"(default: {command_defaults[option]}{preset})"

    group = parser.add_argument_group(
        TRAINING_GROUP_TITLE, "bizoo's training options, each also spelled as the TrainingArguments field it sets",
    )
    group.add_argument(*_spellings("output_dir"), required=True, metavar="DIR",
                       help="folder for the checkpoints, final model and results")
    group.add_argument("--seed", type=int, default=42, metavar="N",
                       help="random seed of initialisation, masking and data order (default: %(default)s)")
    group.add_argument(
        *_spellings("max_steps"), type=int, default=max_steps, metavar="N", action=_StepBudget,
        help="optimizer steps to train for; -1 trains for --epochs instead (default: %(default)s; -1 when --epochs "
        "is given without it)",
    )
    group.add_argument("--epochs", type=float, metavar="X", action=_TrainsForEpochs,
                       help=f"epochs to train for when --max-steps is -1 (--epochs without --max-steps sets it) "
                       f"{default('epochs')}")
    group.add_argument(*_spellings("learning_rate"), type=float, metavar="LR",
                       help=f"peak learning rate {default('learning_rate')}")
    group.add_argument("--batch-size", type=int, metavar="N",
                       help=f"examples per step and process {default('batch_size')}")
    group.add_argument(
        *_spellings("gradient_accumulation_steps"), type=int, default=1, metavar="N",
        help="micro-batches accumulated per optimizer step (default: %(default)s)",
    )
    group.add_argument("--warmup-ratio", type=float, metavar="X",
                       help=f"share of steps spent warming up (--warmup_steps below 1) {default('warmup_ratio')}")
    group.add_argument(*_spellings("weight_decay"), type=float, metavar="X",
                       help=f"AdamW weight decay {default('weight_decay')}")
    group.add_argument("--max-length", "--max_seq_length", "--max-seq-length", type=int, default=max_length,
                       metavar="N", help="tokens per sequence (default: %(default)s)")
    group.add_argument(*_spellings("logging_steps"), type=float, default=50, metavar="N",
                       help="log the loss every N steps (below 1: a share of the steps) (default: %(default)s)")
    group.add_argument(
        *_spellings("save_steps"), type=float, default=500, metavar="N",
        help="write a resumable checkpoint every N steps (below 1: a share of the steps) (default: %(default)s)",
    )
    group.add_argument(
        *_spellings("max_train_samples"), type=int, default=None, metavar="N",
        help="train on the first N training examples only (pretrain: blocks; finetune-ner: sentences), for a quick "
        "run, as run_*.py's option",
    )
    group.add_argument(
        *_spellings("max_eval_samples"), type=int, default=None, metavar="N",
        help="evaluate on the first N evaluation examples only (the scores are then that part's)",
    )
    group.add_argument(
        "--resume", action="store_true",
        help="continue from the last checkpoint in --output-dir, with the same data order and random state "
        "(--resume_from_checkpoint DIR: from that checkpoint)",
    )
    group.add_argument("--overwrite", "--overwrite_output_dir", "--overwrite-output-dir", nargs="?", const=True,
                       default=False, type=_bool_value, metavar="BOOL",
                       help="train into a non-empty --output-dir: a previous run's checkpoints, weights and results "
                            "are removed first, any other file kept")
    group.add_argument("--bf16", nargs="?", const=True, default=False, type=_bool_value, metavar="BOOL",
                       help="train in bfloat16 autocast (--fp16: float16)")
    group.add_argument(
        "--fsdp", nargs="?", const=True, default=None, metavar="OPTIONS",
        help="shard the model over the processes on GPUs (FSDP full_shard, one unit per layer: the model's "
             "_no_split_modules, unless --fsdp_config says otherwise; a value is TrainingArguments' fsdp, "
             "e.g. 'full_shard offload'); refused without CUDA",
    )
    group.add_argument(*_spellings("max_grad_norm"), type=float, metavar="X",
                       help=f"clip the gradient norm to X; 0 turns clipping off {default('max_grad_norm')}")
    group.add_argument(
        "--group-by-length", "--group_by_length", action=argparse.BooleanOptionalAction,
        help="batch examples of similar lengths together (less padding; recurrent models train much faster): "
        "--train_sampling_strategy group_by_length (transformers 4's TrainingArguments field group_by_length, whose "
        f"spelling older run_*.py command lines carry) {default('group_by_length')}",
    )
    if task is not None:
        group.add_argument(
            "--best-checkpoint", action=argparse.BooleanOptionalAction,
            help="evaluate and save every epoch and end with the checkpoint that scored best on the evaluation split "
            "(the command's main metric, e.g. f1), not the last: --eval_strategy epoch --save_strategy epoch "
            f"--load_best_model_at_end --metric_for_best_model M; any of them given as well wins "
            f"{default('best_checkpoint')}",
        )
    passed_through = _add_passed_through_fields(parser, taken={*SAME_NAME_FIELDS, "overwrite_output_dir"})
    parser.set_defaults(**{option: None for option in command_defaults}, _task=task, _task_option=task_option,
                        _command_defaults=command_defaults,
                        _training_fields=(*SAME_NAME_FIELDS, *passed_through))
    # A usage line of every option would fill the screen above each error: the command's own, then a pointer.
    usage = own_usage.strip().removeprefix("usage:").strip().replace(parser.prog, "%(prog)s", 1)
    parser.usage = f"{usage}\n{' ' * (len(parser.prog) + 8)}--output-dir DIR [training options: see --help]"


def add_preset_option(parser: argparse.ArgumentParser, option: str, command_default: Any, *flags: str,
                      **kwargs: Any) -> None:
    """Add a command's own option ``flags`` (dest ``option``, one of ``MODEL_DEFAULT_OPTIONS``) to the training
    group, left unset by the parser so that ``resolve_training_defaults`` fills it: the model's preset for the task,
    else ``command_default``. Call it after ``add_training_arguments``; ``kwargs`` go to ``add_argument`` ("%(default)s"
    in the help reads ``command_default`` and, for a command with presets, that a preset may set another)."""
    command_defaults = parser.get_default("_command_defaults")
    if command_defaults is None:
        raise ValueError("add_preset_option: call add_training_arguments on this parser first")
    if option not in MODEL_DEFAULT_OPTIONS:
        raise ValueError(f"add_preset_option: {option!r} is not one of MODEL_DEFAULT_OPTIONS {MODEL_DEFAULT_OPTIONS}")
    group = next(group for group in parser._action_groups if group.title == TRAINING_GROUP_TITLE)
    preset = (", or the model's own preset when training a bizoo model type from scratch"
              if parser.get_default("_task") is not None else "")
    kwargs["help"] = kwargs.get("help", "").replace("%(default)s", f"{command_default}{preset}")
    group.add_argument(*flags, dest=option, **kwargs)
    parser.set_defaults(**{option: None}, _command_defaults={**command_defaults, option: command_default})


def _given(args: argparse.Namespace, name: str) -> bool:
    return name in vars(args)


def trains(args: argparse.Namespace) -> bool:
    """Whether the command trains, from run_*.py's switches: given none of --do_train, --do_eval and --do_predict,
    a command trains, then evaluates (bizoo's default); given any, it trains only with --do_train, as run_glue.py and
    run_ner.py do, so --do_eval or --do_predict alone evaluate (and predict with) the checkpoint as it is."""
    if getattr(args, "do_train", False):
        return True
    return not (getattr(args, "do_eval", False) or getattr(args, "do_predict", False))


def resolve_training_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """Fill the options the user left unset (module docstring) and give each alias and its field the same value;
    returns the preset values taken from the model type's ``training_defaults`` (``lib.model_defaults``; empty when
    none).

    ``CommandError`` when an alias and its field are both given with values that disagree, or --resume and
    --resume_from_checkpoint both. Calling it again changes nothing.
    """
    if getattr(args, "_training_resolved", None) is not None:
        return args._training_resolved
    command_defaults = getattr(args, "_command_defaults", None)
    if command_defaults is None:
        return {}
    task_option = getattr(args, "_task_option", None)
    task = getattr(args, task_option) if task_option is not None else getattr(args, "_task", None)
    name = getattr(args, "model_name_or_path", None)
    from_scratch = task is not None and name in bizoo.MODEL_SPECS  # a registered model type, not a checkpoint
    preset = dict(model_defaults(name).training_defaults.get(task, {})) if from_scratch else {}
    lacking = sorted(set(preset) - set(command_defaults))
    if lacking:
        raise ValueError(f"the {task!r} preset of {name!r} (lib.model_defaults) sets {', '.join(lacking)}, which this "
                         "command has no option for")
    taken = {}
    for option in _UNSET_OPTIONS:
        if option not in command_defaults:  # an option of another command (e.g. finetune-ner's --word-dropout)
            continue
        value = getattr(args, option, None)
        if option == "warmup_ratio" and value is not None and not 0 <= value < 1:  # a share, not a step count
            raise CommandError(f"--warmup-ratio must be in [0, 1), got {value} (a share of the steps; a number of "
                               "steps is --warmup_steps)")
        alias = _ALIAS_OF.get(option)
        if alias is not None and _given(args, alias.field):
            field_value = getattr(args, alias.field)
            if value is not None and alias.from_field(field_value) != value:
                raise CommandError(
                    f"{_option(option)} {value} and --{alias.field} {field_value} set the same thing to different "
                    "values: give one of them"
                )
            setattr(args, option, alias.from_field(field_value))
            continue
        if value is None:
            value = preset[option] if option in preset else command_defaults[option]
            if option in preset:
                taken[option] = value
        setattr(args, option, value)
        if alias is not None:
            setattr(args, alias.field, alias.to_field(value))
    if args.resume and _given(args, "resume_from_checkpoint"):
        raise CommandError("--resume continues from the newest checkpoint in --output-dir and "
                           "--resume_from_checkpoint from the one it names: give one of them")
    if _given(args, "resume_from_checkpoint"):
        args.resume = True  # the output folder holds the run to continue: it may be non-empty
    args._training_resolved = taken
    return taken


def _steps(name: str, value: float) -> int | float:
    """A step count (an integer >= 1) or a share of the training steps (in (0, 1)); ``CommandError`` otherwise."""
    if not (math.isfinite(value) and value > 0 and (value < 1 or float(value).is_integer())):
        raise CommandError(f"{_option(name)} must be >= 1 (a whole number of steps) or a share of the steps in "
                           f"(0, 1), got {value}")
    return int(value) if value >= 1 else value


def check_training_arguments(args: argparse.Namespace, *, metrics: tuple[str, ...] | None = None,
                             defaults: dict[str, Any] | None = None, fixed: dict[str, Any] | None = None) -> None:
    """Check the training options (after the model's defaults are filled in) before anything is written; raises
    ``CommandError`` naming the option.

    ``metrics``: the names the command's evaluation reports, for --metric_for_best_model (``check_best_model_metric``;
    a command that learns them later calls that itself). ``defaults``/``fixed``: as for ``training_arguments``. The
    ``TrainingArguments`` these options make is built once here, so transformers' own checks (e.g.
    --load_best_model_at_end with another --save_strategy than --eval_strategy, --bf16 on a GPU without bfloat16)
    fail now, and every --report_to integration is loaded (transformers' error when one is not installed).
    """
    resolve_training_defaults(args)
    if not str(args.output_dir).strip():
        raise CommandError("--output-dir must name a folder, got an empty string")
    if args.resume and args.overwrite:
        given = "--resume_from_checkpoint" if _given(args, "resume_from_checkpoint") else "--resume"
        raise CommandError(f"{given} continues a run and --overwrite removes the previous run from --output-dir: "
                           "pass only one")
    if args.max_steps == 0 or args.max_steps < -1:
        raise CommandError(f"--max-steps must be a positive number of steps or -1 (use --epochs), got {args.max_steps}")
    if getattr(args, "push_to_hub", False):
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:  # the Trainer would create the repository first, failing after the data is read
            raise CommandError("--push_to_hub uploads to the Hub, but HF_HUB_OFFLINE is set: unset it, or train "
                               "without --push_to_hub and upload the folder later (bizoo export, then bizoo push)")
    for name in ("learning_rate", "warmup_ratio", "max_grad_norm", "weight_decay", "epochs"):
        value = getattr(args, name)
        if not math.isfinite(value):
            raise CommandError(f"{_option(name)} must be a finite number, got {value}")
    for name in ("batch_size", "gradient_accumulation_steps", "max_length", "max_train_samples", "max_eval_samples",
                 "max_predict_samples"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise CommandError(f"{_option(name)} must be >= 1, got {value}")
    args.logging_steps = _steps("logging_steps", args.logging_steps)
    args.save_steps = _steps("save_steps", args.save_steps)
    if not args.learning_rate > 0:
        raise CommandError(f"--learning-rate must be > 0, got {args.learning_rate}")
    if not (0 <= args.warmup_ratio < 1 or (args.warmup_ratio >= 1 and float(args.warmup_ratio).is_integer())):
        raise CommandError(f"--warmup-ratio must be in [0, 1) (--warmup_steps: or a whole number of steps), "
                           f"got {args.warmup_ratio}")
    if not args.max_grad_norm >= 0:
        raise CommandError(f"--max-grad-norm must be >= 0 (0 = no clipping), got {args.max_grad_norm}")
    if not args.weight_decay >= 0:
        raise CommandError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.max_steps == -1 and not args.epochs > 0:
        raise CommandError(f"--epochs must be > 0, got {args.epochs}")
    if args.fsdp and not cuda_available():
        raise CommandError("--fsdp shards the model over GPUs: without CUDA accelerate ignores it and trains with "
                           "plain data parallelism (DDP), so drop --fsdp on a CPU")
    # run_*.py's switches (``trains``): a command always evaluates; it trains unless --do_eval / --do_predict come
    # without --do_train, which the fine-tuning commands take as run_glue.py does (``lib.finetuning.
    # add_predict_arguments`` sets ``_predicts``); pretrain has neither a test split nor an evaluation alone
    if _given(args, "do_eval") and not args.do_eval:
        raise CommandError("--do_eval false: this command always evaluates (what it trains, or with --do_predict "
                           "alone the checkpoint); drop the option")
    if _given(args, "do_train") and not args.do_train and trains(args):
        if not getattr(args, "_predicts", False):
            raise CommandError("--do_train false: this command always trains, then evaluates; drop the option")
        raise CommandError("--do_train false with neither --do_eval nor --do_predict leaves nothing to do: drop it "
                           "to train (then evaluate), or add --do_eval to evaluate the checkpoint as it is")
    if getattr(args, "do_predict", False) and not getattr(args, "_predicts", False):
        raise CommandError("--do_predict: this command predicts no test split; it trains, then evaluates")
    if not trains(args):
        if not getattr(args, "_predicts", False):
            raise CommandError("--do_eval without --do_train: this command always trains, then evaluates (run_*.py's "
                               "evaluation alone is the fine-tuning commands'); give --do_train too, or drop --do_eval")
        if getattr(args, "resume", False) or getattr(args, "resume_from_checkpoint", None) is not None:
            raise CommandError("--resume continues a training run, and --do_eval / --do_predict without --do_train "
                               "train nothing: give --do_train too, or drop --resume")
    check_resume_from_checkpoint(getattr(args, "resume_from_checkpoint", None))
    if metrics is not None:
        check_best_model_metric(args, metrics)
    training = training_arguments(args, args.output_dir, defaults=defaults, fixed=fixed)
    _load_report_integrations(training.report_to)
    _check_optimizer(training)


def check_resume_from_checkpoint(checkpoint: str | None) -> None:
    """--resume_from_checkpoint names a checkpoint the ``Trainer`` wrote: a folder with its ``trainer_state.json``
    (the step, the log, the best metric so far). ``CommandError`` otherwise, before anything is written: the
    Trainer would fail on the missing state after the model was loaded and the output folder made. A run's final
    folder holds the weights but no state: the error names its newest ``checkpoint-N``; ``True`` (the argument of
    ``Trainer.train`` that means the newest checkpoint of the output folder) is bizoo's --resume."""
    if checkpoint is None:
        return
    folder = Path(checkpoint).expanduser()
    if not folder.is_dir():
        hint = (" (to continue from the newest checkpoint of --output-dir, pass --resume)"
                if str(checkpoint).lower() in ("true", "1", "yes", "latest") else "")
        raise CommandError(f"--resume_from_checkpoint {checkpoint!r} is not a checkpoint folder{hint}")
    if not (folder / "trainer_state.json").is_file():
        newest = last_checkpoint(folder)
        hint = (f"; the newest checkpoint in it is {newest!r}" if newest is not None
                else "; the Trainer's checkpoint-N folders hold one")
        raise CommandError(f"--resume_from_checkpoint {checkpoint!r} is not a checkpoint folder: it holds no "
                           f"trainer_state.json to continue the training from{hint}")


def first_samples(examples: Sequence[T], args: argparse.Namespace, split: str, what: str = "examples") -> Sequence[T]:
    """The first --max-train-samples (``split`` "train"), --max-eval-samples ("eval") or --max-predict-samples
    ("predict") of ``examples``, all of them when the option is not given; the cut is logged."""
    limit = getattr(args, f"max_{split}_samples", None)
    if limit is None or limit >= len(examples):
        return examples
    doing = {"train": "training", "eval": "evaluation", "predict": "prediction"}[split]
    logger.info(f"{_option(f'max_{split}_samples')} {limit}: {doing} on the first {limit:,} of {len(examples):,} "
                f"{what}")
    return examples[:limit]


def check_best_model_metric(args: argparse.Namespace, metrics: tuple[str, ...]) -> None:
    """``CommandError`` unless --metric_for_best_model (when given) is ``loss`` or one of ``metrics``, the names
    the command's evaluation reports (with or without transformers' ``eval_`` prefix). Also records ``metrics[0]``,
    the command's main metric, as what --best-checkpoint selects by."""
    args._main_metric = metrics[0] if metrics else None  # what --best-checkpoint selects by
    name = getattr(args, "metric_for_best_model", None)
    if name is None:
        return
    allowed = ["loss", *metrics]
    if name.removeprefix("eval_") not in allowed:
        raise CommandError(f"--metric_for_best_model {name!r} is not a metric this command's evaluation reports; "
                           f"allowed: {', '.join(allowed)}")


def _load_report_integrations(report_to: list[str]) -> None:
    """Build the callback of every --report_to integration once: one that is unknown or not installed fails now,
    with transformers' own message, before anything is written."""
    from transformers.integrations import get_reporting_integration_callbacks

    try:
        for callback in get_reporting_integration_callbacks(report_to):
            callback()
    except (ValueError, RuntimeError, ImportError) as err:
        raise CommandError(f"--report_to {' '.join(report_to)}: {err}") from None


def _check_optimizer(training) -> None:
    """Resolve the optimizer --optim names with its --optim_args once (``Trainer.get_optimizer_cls_and_kwargs``):
    one whose package is not installed (bitsandbytes, torchao, schedulefree, ...) or --optim_args that are not
    ``key=value,...`` fail now, with transformers' message, instead of when the Trainer builds the optimizer after
    the data is read, the tokenizer trained and the output folder made (a traceback, exit code 1). The optimizers
    that group the model's parameters themselves (GaLore, APOLLO, LOMO) need the model, which is not built yet: the
    check of their package is all that runs here."""
    from transformers import Trainer

    optim = getattr(training.optim, "value", training.optim)
    if training.optim_args:
        pairs = training.optim_args.replace(" ", "").split(",")
        bad = [pair for pair in pairs if pair.count("=") != 1]
        if bad:
            raise CommandError(f"--optim_args {training.optim_args!r}: {bad[0]!r} is not key=value; give "
                               "comma-separated key=value pairs (e.g. 'key=1,other=2')")
    try:
        Trainer.get_optimizer_cls_and_kwargs(training)
    except ImportError as err:
        raise CommandError(f"--optim {optim}: {err} (or choose another --optim, e.g. adamw_torch, adafactor, "
                           "sgd)") from None
    except ValueError as err:
        if "model" in str(err):  # transformers asks for the model, which only the Trainer has (GaLore, LOMO, ...)
            return
        raise CommandError(f"--optim {optim}: {err} (or choose another --optim, e.g. adamw_torch, adafactor, "
                           "sgd)") from None


def bizoo_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """bizoo's defaults for ``TrainingArguments`` fields (``BIZOO_DEFAULT_HELP``), used unless the command or the
    command line gives another value."""
    return dict(
        report_to="none",
        save_total_limit=2,
        data_seed=args.seed,
        per_device_eval_batch_size=max(args.batch_size, 32),
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda_available(),
        # Without a GPU, say so: accelerate then runs several processes (torchrun, accelerate launch) as CPU DDP
        # over gloo, instead of one independent run per process.
        use_cpu=not cuda_available(),
        # As TrainingArguments' own default: no progress bars when only errors are logged.
        disable_tqdm=not sys.stderr.isatty() or logging.getLogger(ROOT_LOGGER).getEffectiveLevel() > logging.WARNING,
        # transformers' filter tests every step's loss for NaN / inf in a Python `if`: on a GPU a host sync per step.
        # Off, a step with a NaN or inf loss makes the logged loss NaN or inf instead of being replaced by the mean.
        logging_nan_inf_filter=False,
        # On a GPU, each batch's copy from pinned memory queued without blocking: a blocking copy waits for every
        # kernel queued before it, a host sync per step.
        **({"accelerator_config": {"non_blocking": True}} if cuda_available() else {}),
    )


def best_checkpoint_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainingArguments`` fields --best-checkpoint (or a preset's ``best_checkpoint``) stands for; empty when it
    is off. The metric is the command's main one (``check_best_model_metric`` records it); without one, transformers
    selects by the evaluation loss."""
    if not getattr(args, "best_checkpoint", None):
        return {}
    fields = dict(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)
    metric = getattr(args, "_main_metric", None)
    if metric is not None:
        fields["metric_for_best_model"] = metric
    return fields


def scoring_needs(fixed: dict[str, Any] | None = None) -> dict[str, Needed]:
    """The ``fixed=`` values every training command needs for its own scores, unless the command's ``fixed`` says
    otherwise (pretrain's biLM objective scores the loss alone: ``prediction_loss_only=True``, and then nothing else
    here applies). A command computes its metrics (accuracy, F1, Matthews, Pearson, ...) over the predictions of
    the whole evaluation split at once, so it needs them gathered (``prediction_loss_only`` off), concatenated
    across the batches (``eval_do_concat_batches``) and handed over once (not ``batch_eval_metrics``'s per-batch
    calls). transformers takes all three and the command then failed only after training, in its evaluation, with an
    error that named none of them ("1 predictions but 12 labels", "inhomogeneous shape", "compute_result")."""
    loss_only = (fixed or {}).get("prediction_loss_only", False)
    if (loss_only.value if isinstance(loss_only, Needed) else loss_only) is True:
        return {}
    return dict(
        prediction_loss_only=Needed(False, "the command scores the evaluation split from the model's predictions, "
                                    "which this option leaves out (the loss is reported with the scores anyway)"),
        eval_do_concat_batches=Needed(True, "the command's metrics read the predictions of the whole evaluation "
                                      "split at once, concatenated across its batches"),
        batch_eval_metrics=Needed(False, "the command's metrics are computed over the whole evaluation split, not "
                                  "summed batch by batch (F1, Matthews and Pearson are not means over batches)"),
    )


def training_values(args: argparse.Namespace, output_dir: str | os.PathLike, model=None,
                    defaults: dict[str, Any] | None = None, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``TrainingArguments``: bizoo's defaults, then the command's ``defaults`` and
    --best-checkpoint's fields, then every field the options set (module docstring), then ``fixed`` and
    ``scoring_needs(fixed)`` (``CommandError`` if the command line gives another value). With --fsdp and no
    --fsdp_config, FSDP wraps each of ``model``'s layers (its ``_no_split_modules``) as one unit."""
    resolve_training_defaults(args)
    fields = getattr(args, "_training_fields", None) or training_field_names()
    given = {name: getattr(args, name) for name in fields if _given(args, name)}
    values = {**bizoo_defaults(args), **(defaults or {}), **best_checkpoint_fields(args), **given,
              "output_dir": str(output_dir)}
    for name, value in {**scoring_needs(fixed), **(fixed or {})}.items():
        value, why = (value.value, f": {value.why}") if isinstance(value, Needed) else (value, "")
        if name in given and given[name] != value:
            raise CommandError(f"--{name} {given[name]}: this command needs {name}={value}{why}")
        values[name] = value
    if not args.fsdp:
        values.pop("fsdp", None)
    elif "fsdp_config" not in given and model is not None:
        layers = list(getattr(model, "_no_split_modules", None) or [])
        if not layers:
            raise CommandError("--fsdp needs a model that names its layers (_no_split_modules), or --fsdp_config")
        values["fsdp_config"] = {"transformer_layer_cls_to_wrap": layers}
    return values


def check_label_smoothing(args: argparse.Namespace, model=None, config=None) -> None:
    """``CommandError`` for --label_smoothing_factor > 0 where the Trainer's smoothed loss cannot be computed:

    * a regression (``problem_type`` "regression", or a single output, ``num_labels`` == 1, which the models read as
      a regression when no ``problem_type`` says otherwise; STS-B, float labels) or a multi-label head: the Trainer's
      ``LabelSmoother`` smooths a softmax over the classes and picks each example's class by its label, which a float
      label is not (it failed after setup with ``gather(): Expected dtype int32/int64 for index``);
    * a CRF token head: the Trainer then computes the loss itself from ``logits``, which a CRF head returns as
      decoding scores without a gradient (its loss is the likelihood of whole tag sequences); the first backward
      pass would fail.

    ``config``: the model's configuration, for the first check before the model is built (``model``'s own is read
    when it is given)."""
    smoothing = getattr(args, "label_smoothing_factor", None) or 0
    if not smoothing > 0:
        return
    config = getattr(model, "config", None) or config
    if config is not None:
        problem = getattr(config, "problem_type", None)
        single_output = problem is None and getattr(config, "num_labels", None) == 1
        if problem in ("regression", "multi_label_classification") or single_output:
            what = ("a multi-label classification (one sigmoid per class, float labels)"
                    if problem == "multi_label_classification" else
                    "a regression (one output trained on the squared error of a score, float labels)")
            raise CommandError(
                f"--label_smoothing_factor smooths a softmax over the classes of each example's label; this task is "
                f"{what}, which has no class to smooth: train without it"
            )
    if isinstance(getattr(model, "classifier", None), CrfTokenClassificationHead):
        raise CommandError(
            f"--label_smoothing_factor smooths a softmax over each token's logits; {type(model).__name__}'s CRF head "
            "trains on the likelihood of whole tag sequences (its logits are decoding scores, without a gradient): "
            "train without it, or without the CRF (--model-config use_crf=false)"
        )


def check_neftune(args: argparse.Namespace, model_type: str, model=None) -> None:
    """``CommandError`` for --neftune_noise_alpha with an ELMo model that reads no word vectors at its input.

    NEFTune (the Trainer's ``neftune_noise_alpha``) adds uniform noise to the output of
    ``model.get_input_embeddings()`` in training. ELMo reads each word's characters: its word table is absent (the
    sequence classifier, the tagger without word features: the Trainer failed with "'NoneType' object has no
    attribute 'neftune_noise_alpha'") or the LM softmax's (the biLM and masked-LM heads: the table is never called
    on the input, so the noise did nothing, silently). Only the tagger with ``tagger_word_features=True`` reads a
    word vector per input id, which the noise then reaches. ``model`` is None where it is not built yet (pretrain,
    whose ELMo heads are all LM heads)."""
    from ...modeling.modeling_elmo import ElmoForTokenClassification

    if not getattr(args, "neftune_noise_alpha", None) or model_type != "elmo":
        return
    if isinstance(model, ElmoForTokenClassification) and model.config.tagger_word_features:
        return
    name = type(model).__name__ if model is not None else "an ELMo language model"
    raise CommandError(
        f"--neftune_noise_alpha adds noise to the input word embeddings (model.get_input_embeddings()); {name} reads "
        "each word's characters and no word vectors at its input, so the noise would reach nothing: train without "
        "it (an ELMo tagger with --model-config tagger_word_features=true reads word vectors, which it then noises)"
    )


def training_arguments(args: argparse.Namespace, output_dir: str | os.PathLike, model=None,
                       defaults: dict[str, Any] | None = None, fixed: dict[str, Any] | None = None):
    """``TrainingArguments`` from the options (``training_values``); transformers' own refusal of a combination
    becomes a ``CommandError``."""
    from transformers import TrainingArguments

    # A fast tokenizer that has encoded in parallel keeps its thread pool, which then competes with torch's
    # threads: on a 2-core CPU every training step was ~10x slower. Training never needs tokenizer threads.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    values = training_values(args, output_dir, model, defaults, fixed)
    try:
        return TrainingArguments(**values)
    except ValueError as err:
        raise CommandError(f"the training options do not fit together: {err}") from None


def check_in_turn(check: Callable[[], T]) -> T:
    """``check()`` (which must write nothing) on every process of a distributed run, one process after the other in
    the order of their ranks, before any of them goes on to write. One process: just ``check()``.

    Why in turn: a check of the output folder reads what is in it, and the first process starts writing there as
    soon as it has gone on (``build_on_first_process``'s shared tokenizer); a process checking later would find the
    folder no longer empty and refuse it, and two checking at once can see each other's probe folder
    (``output_folders.check_output_dir``). After each turn the process whose turn it was tells the others its
    verdict (a broadcast): a ``CommandError`` stops every process with the same message and exit code 2, rather
    than leaving the others waiting for a process that has stopped."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return check()
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=not cuda_available())
    result, error = None, None
    for turn in range(state.num_processes):
        if turn == state.process_index:
            try:
                result = check()
            except CommandError as err:
                error = err
        verdict = [None if error is None else str(error)]  # the verdict of the process whose turn it was
        dist.broadcast_object_list(verdict, src=turn)
        if error is not None:
            raise error
        if verdict[0] is not None:
            raise CommandError(verdict[0] if turn == 0 else f"process {turn} of {state.num_processes}: {verdict[0]}")
    return result


def build_on_first_process(build, folder: Path, save, load):
    """``build()`` once per run: in a distributed run (torchrun / ``accelerate launch``, WORLD_SIZE > 1) the first
    process builds and ``save(obj, folder)``s it, and after a barrier the others ``load(folder)`` it, so every
    process trains with the same object (a tokenizer trained separately in each process would not be: the trainer
    breaks ties in hash order). ``folder`` is removed afterwards. One process: just ``build()``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return build()
    from accelerate import PartialState

    state = PartialState(cpu=not cuda_available())
    if state.is_main_process:
        obj = build()
        save(obj, folder)
    state.wait_for_everyone()
    if not state.is_main_process:
        obj = load(folder)
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
    return obj


def input_checks_callback():
    """A ``TrainerCallback`` that reads the models' input checks still in flight (``bizoo.wait_for_input_checks``)
    when the Trainer ends training, an evaluation or a prediction: on a GPU a bad value (a label or an id out of
    range) is read back later, by the next check (ARCHITECTURE.md §3), and one in the last batches of a phase would
    otherwise never be read, leaving the command to save, report and exit 0 after steps that went on with the input
    made safe. One host synchronisation per phase; nothing in a step. The error is the model's ``ValueError``."""
    from transformers import TrainerCallback

    class ReadInputChecks(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            bizoo.wait_for_input_checks()

        def on_evaluate(self, args, state, control, **kwargs):
            bizoo.wait_for_input_checks()

        def on_predict(self, args, state, control, **kwargs):
            bizoo.wait_for_input_checks()

    return ReadInputChecks()


def trainer_optimizers(model, args: argparse.Namespace, training_args=None) -> tuple:
    """``Trainer(optimizers=...)``: the optimizer over the model's own ``parameter_groups`` when it has them (BiGS:
    the SSM's slower learning rate and no weight decay), else ``(None, None)`` (the Trainer's default optimizer).

    With ``training_args``, the optimizer --optim names, with its --adam_beta1/2, --adam_epsilon and --optim_args
    (``Trainer.get_optimizer_cls_and_kwargs``); without, ``torch.optim.AdamW``. ``CommandError`` for an --optim that
    groups the parameters itself (transformers hands it ``params``, the ``model`` or an ``optimizer_dict``: GaLore,
    APOLLO, LOMO, the layer-wise ones; or builds it from the model: an optimizer factory such as Muon): the model's
    groups would be passed beside its own, a ``TypeError`` or groups silently replaced.
    """
    groups = getattr(model, "parameter_groups", None)
    if groups is None:
        return None, None
    if training_args is None:
        import torch

        return torch.optim.AdamW(groups(args.learning_rate, args.weight_decay), lr=args.learning_rate), None
    from transformers import Trainer

    try:  # transformers >= 5.x's optimizer factories (Muon, ...); none before
        from transformers.trainer_optimizer import is_optimizer_factory
    except ImportError:
        def is_optimizer_factory(_) -> bool:
            return False

    optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    own_groups = sorted({"params", "model", "optimizer_dict"} & set(kwargs))
    if own_groups or is_optimizer_factory(optimizer_class):
        optim = getattr(training_args.optim, "value", training_args.optim)
        raise CommandError(
            f"--optim {optim} groups the model's parameters itself, and {type(model).__name__} trains with its own "
            "parameter groups (model.parameter_groups: per-group learning rates and weight decay, e.g. BiGS's "
            "slower SSM): choose an optimizer that takes parameter groups (adamw_torch, adamw_torch_fused, "
            "adafactor, sgd, ...)"
        )
    return optimizer_class(groups(args.learning_rate, args.weight_decay), **kwargs), None


def last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder under ``folder``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if Path(folder).is_dir() else None


def resume_checkpoint(args: argparse.Namespace, output_dir: str | os.PathLike) -> str | None:
    """The checkpoint a run continues from: --resume_from_checkpoint's, or with --resume the newest in
    ``output_dir``; None without either. ``CommandError`` when --resume finds none."""
    if getattr(args, "resume_from_checkpoint", None) is not None:
        return str(Path(args.resume_from_checkpoint).expanduser())  # "--resume_from_checkpoint=~/..." keeps the ~
    if not args.resume:
        return None
    checkpoint = last_checkpoint(output_dir)
    if checkpoint is None:
        raise CommandError(
            f"--resume: no checkpoint-N folder in {str(output_dir)!r} to continue from; run without --resume "
            "(checkpoints are written every --save-steps steps)"
        )
    return checkpoint


def push_final_folder(trainer, output_dir: str | os.PathLike, model, tokenizer) -> str | None:
    """With --push_to_hub: upload the final folder (model, tokenizer, results and a model card; not the
    checkpoints) to the repository the Trainer created (--hub_model_id, else the folder's name), once the
    checkpoint uploads it started are done. Writes the model card first when the folder has none. Returns the
    repository id, or None without --push_to_hub or on a process other than the first."""
    if not trainer.args.push_to_hub or not trainer.is_world_process_zero():
        return None
    output_dir = Path(output_dir)
    if not (output_dir / "README.md").exists():
        write_checkpoint_card(output_dir, model, tokenizer)
    pending = getattr(trainer, "push_in_progress", None)
    if pending is not None:
        pending.wait_until_done()
    HfApi().upload_folder(
        repo_id=trainer.hub_model_id,
        folder_path=str(output_dir),
        commit_message="End of training",
        token=trainer.args.hub_token,
        revision=trainer.args.hub_revision,
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", ".*", "_*"],
    )
    return trainer.hub_model_id
