"""The options every training command has (``--output-dir``, ``--seed``, ``--max-steps``, ``--resume``, ...) and
what turns them into a ``transformers.Trainer`` run.

* ``add_training_arguments`` / ``resolve_training_defaults`` / ``check_training_arguments``: the argparse options,
  the defaults a model type sets for a task, and their range checks (``CommandError`` naming the option).
* ``training_arguments``: ``transformers.TrainingArguments`` from those options.
* ``build_on_first_process``, ``trainer_optimizers``, ``last_checkpoint``: what a distributed run, a model's own
  parameter groups and ``--resume`` need.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import bizoo

from .command import CommandError
from .machine import cuda_available


#: Options whose default a model may set for a task (``ModelSpec.training_defaults``) when trained from scratch.
MODEL_DEFAULT_OPTIONS = (
    "epochs", "learning_rate", "batch_size", "weight_decay", "warmup_ratio", "max_grad_norm", "group_by_length",
)


def add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    max_steps: int,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    task: str | None = None,
) -> None:
    """The options every training command has.

    With ``task`` (e.g. "ner", "glue"), the options of ``MODEL_DEFAULT_OPTIONS`` are left unset by the parser and
    ``resolve_training_defaults`` fills them in: from the ``training_defaults[task]`` of a model type trained from
    scratch, else from the command's own defaults given here.
    """
    group = parser.add_argument_group("training")
    group.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the checkpoints, final model and results")
    group.add_argument("--seed", type=int, default=42, help="random seed of initialisation, masking and data order (default: %(default)s)")
    group.add_argument(
        "--max-steps", type=int, default=max_steps, metavar="N",
        help="optimizer steps to train for; -1 trains for --epochs instead (default: %(default)s)",
    )
    group.add_argument("--epochs", type=float, default=3.0, help="epochs when --max-steps is -1 (default: %(default)s)")
    group.add_argument("--learning-rate", type=float, default=learning_rate, metavar="LR", help="peak learning rate (default: %(default)s)")
    group.add_argument("--batch-size", type=int, default=batch_size, metavar="N", help="examples per step (default: %(default)s)")
    group.add_argument(
        "--gradient-accumulation-steps", type=int, default=1, metavar="N",
        help="micro-batches accumulated per optimizer step (default: %(default)s)",
    )
    group.add_argument("--warmup-ratio", type=float, default=0.06, help="share of steps spent warming up (default: %(default)s)")
    group.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: %(default)s)")
    group.add_argument("--max-length", type=int, default=max_length, metavar="N", help="tokens per sequence (default: %(default)s)")
    group.add_argument("--logging-steps", type=int, default=50, metavar="N", help="log the loss every N steps (default: %(default)s)")
    group.add_argument(
        "--save-steps", type=int, default=500, metavar="N",
        help="write a resumable checkpoint every N steps (default: %(default)s)",
    )
    group.add_argument(
        "--resume", action="store_true",
        help="continue from the last checkpoint in --output-dir, with the same data order and random state",
    )
    group.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    group.add_argument("--bf16", action="store_true", help="train in bfloat16 autocast (GPUs with bf16 support)")
    group.add_argument(
        "--fsdp", action="store_true",
        help="shard the model over the processes on GPUs (FSDP full_shard, one unit per layer: the model's "
             "_no_split_modules); refused without CUDA",
    )
    group.add_argument(
        "--max-grad-norm", type=float, default=1.0, metavar="X",
        help="clip the gradient norm to X; 0 turns clipping off (default: %(default)s)",
    )
    group.add_argument(
        "--group-by-length", action=argparse.BooleanOptionalAction, default=False,
        help="batch examples of similar lengths together (less padding; recurrent models train much faster) "
        "(default: %(default)s)",
    )
    if task is not None:
        command_defaults = {option: parser.get_default(option) for option in MODEL_DEFAULT_OPTIONS}
        for action in parser._actions:  # say where the default comes from
            if action.dest in command_defaults and action.help:
                action.help = action.help.replace(
                    "(default: %(default)s)",
                    f"(default: {command_defaults[action.dest]}, or the model's own preset when training a bizoo "
                    "model type from scratch: see the README)",
                )
        parser.set_defaults(**{option: None for option in MODEL_DEFAULT_OPTIONS}, _task=task,
                            _command_defaults=command_defaults)


def resolve_training_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """Fill the options the user left unset (see ``add_training_arguments``); returns the preset values taken from
    the model's ``training_defaults`` (empty when none)."""
    task = getattr(args, "_task", None)
    if task is None:
        return {}
    spec = bizoo.MODEL_SPECS.get(getattr(args, "model_name_or_path", None))
    preset = dict(spec.training_defaults.get(task, {})) if spec is not None else {}
    taken = {}
    for option in MODEL_DEFAULT_OPTIONS:
        if getattr(args, option) is None:
            value = preset.get(option, args._command_defaults[option])
            setattr(args, option, value)
            if option in preset:
                taken[option] = value
    return taken


def check_training_arguments(args: argparse.Namespace) -> None:
    """Numeric options in range (after the model's defaults are filled in); raises ``CommandError`` naming the
    option."""
    resolve_training_defaults(args)
    if not str(args.output_dir).strip():
        raise CommandError("--output-dir must name a folder, got an empty string")
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise CommandError("--resume continues the run in --output-dir and --overwrite deletes it: pass only one")
    if args.max_steps == 0 or args.max_steps < -1:
        raise CommandError(f"--max-steps must be a positive number of steps or -1 (use --epochs), got {args.max_steps}")
    for name in ("learning_rate", "warmup_ratio", "max_grad_norm", "weight_decay", "epochs"):
        value = getattr(args, name)
        if not math.isfinite(value):
            raise CommandError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    for name in ("batch_size", "gradient_accumulation_steps", "max_length", "logging_steps", "save_steps"):
        value = getattr(args, name)
        if value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not args.learning_rate > 0:
        raise CommandError(f"--learning-rate must be > 0, got {args.learning_rate}")
    if not 0 <= args.warmup_ratio < 1:
        raise CommandError(f"--warmup-ratio must be in [0, 1), got {args.warmup_ratio}")
    if not args.max_grad_norm >= 0:
        raise CommandError(f"--max-grad-norm must be >= 0 (0 = no clipping), got {args.max_grad_norm}")
    if not args.weight_decay >= 0:
        raise CommandError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.max_steps == -1 and not args.epochs > 0:
        raise CommandError(f"--epochs must be > 0, got {args.epochs}")
    if getattr(args, "fsdp", False) and not cuda_available():
        raise CommandError("--fsdp shards the model over GPUs: without CUDA accelerate ignores it and trains with "
                           "plain data parallelism (DDP), so drop --fsdp on a CPU")


def training_arguments(args: argparse.Namespace, output_dir: str | os.PathLike, model=None, **overrides):
    """``TrainingArguments`` from the common options (checkpoints in ``output_dir``, no external loggers); with
    ``--fsdp``, FSDP wrapping each of ``model``'s layers (its ``_no_split_modules``) as one unit."""
    from transformers import TrainingArguments

    # A fast tokenizer that has encoded in parallel keeps its thread pool, which then competes with torch's
    # threads: on a 2-core CPU every training step was ~10x slower. Training never needs tokenizer threads.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    values = dict(
        output_dir=str(output_dir),
        seed=args.seed,
        data_seed=args.seed,
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=max(args.batch_size, 32),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        warmup_steps=args.warmup_ratio,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        train_sampling_strategy="group_by_length" if getattr(args, "group_by_length", False) else "random",
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        save_total_limit=2,
        report_to=[],
        bf16=args.bf16,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda_available(),
        # Without a GPU, say so: accelerate then runs several processes (torchrun, accelerate launch) as CPU DDP
        # over gloo, instead of one independent run per process.
        use_cpu=not cuda_available(),
        disable_tqdm=not sys.stderr.isatty(),
    )
    if getattr(args, "fsdp", False):
        layers = list(getattr(model, "_no_split_modules", None) or [])
        if not layers:
            raise CommandError("--fsdp needs a model that names its layers (_no_split_modules)")
        values["fsdp"] = True
        values["fsdp_config"] = {"transformer_layer_cls_to_wrap": layers}
    values.update(overrides)
    return TrainingArguments(**values)


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


def trainer_optimizers(model, args: argparse.Namespace) -> tuple:
    """``Trainer(optimizers=...)``: AdamW over the model's own ``parameter_groups`` when it has them (BiGS: the
    SSM's slower learning rate and no weight decay), else ``(None, None)`` (the Trainer's default optimizer)."""
    groups = getattr(model, "parameter_groups", None)
    if groups is None:
        return None, None
    import torch

    return torch.optim.AdamW(groups(args.learning_rate, args.weight_decay), lr=args.learning_rate), None


def last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder under ``folder``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if Path(folder).is_dir() else None
