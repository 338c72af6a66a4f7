"""What the commands share: output folders written safely, the training options, model loading, result records.

* ``staged_output_dir``: write into a temporary sibling folder, rename it into place at the end; a failure leaves
  the old folder (or nothing) behind, never a half-written one.
* ``add_training_arguments`` / ``training_arguments``: the options every training command has (``--output-dir``,
  ``--seed``, ``--max-steps``, ``--resume``, ...) turned into ``transformers.TrainingArguments``.
* ``load_model``: a checkpoint folder or hub name, or a registered model type (``"lion"``) to start from scratch.
* ``record_results`` / ``read_results``: the evaluation results a run stores beside its weights
  (``bizoo_results.json``), which ``bizoo export`` turns into the model card's ``model-index``.
* ``CommandError`` and ``run_command``: bad input becomes ``bizoo <command>: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

RESULTS_FILE = "bizoo_results.json"


class CommandError(ValueError):
    """Bad input to a command: printed as ``<prog>: error: <message>``, exit code 2, before any work starts."""


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body, turning ``CommandError``/``ValueError``/``FileNotFoundError`` into exit code 2."""
    try:
        return body()
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def command_main(module_name: str, argv: list[str] | None = None) -> int:
    """The entry point of every command module (``python -m bizoo.scripts.<module>``): its ``PROG``, its
    docstring as the help text, its ``add_arguments`` and ``run``."""
    import importlib

    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=module.PROG, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    module.add_arguments(parser)
    try:
        return module.run(parser.parse_args(argv))
    finally:
        end_process_group()


def end_process_group() -> None:
    """Leave a distributed run (torchrun / ``accelerate launch``) cleanly: destroy the process group the Trainer
    created, so that no communication thread is still running when the interpreter exits (a gloo thread left
    running there aborts the process with "terminate called without an active exception"). No-op otherwise."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------------
# Output folders
# ----------------------------------------------------------------------------------------------------------------


#: Inside a folder being updated in place (``move_into``): the files the update replaces, kept until it is done.
REPLACED_DIR = ".bizoo-replaced"
#: In ``REPLACED_DIR``: the names the update moves in, written before the first of them is moved.
INCOMING_FILE = "incoming.json"
#: In ``REPLACED_DIR``: written once every replaced file is aside, before the first new file moves in.
MOVING_IN_FILE = "moving-in"


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse an output path that is a file, or a non-empty folder unless ``overwrite`` or ``resume``.

    A write into this path that a killed process left unfinished is undone first (``recover_interrupted``)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise CommandError(f"output folder {str(path)!r} is an existing file, not a folder")
    recover_interrupted(path)
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise CommandError(
            f"output folder {str(path)!r} already exists and is not empty; choose another, pass --overwrite to "
            "replace it, or --resume to continue the run in it"
        )
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _host_id() -> str:
    """Eight hex digits naming this machine: a staging folder on a shared file system belongs to one host's process."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _owner_pid(sibling: Path) -> int | None:
    """The process id in a staging sibling's name ``.<name>.<kind>-<pid>.<host>-<random>`` when that process ran on
    this machine, else None (another machine's process id says nothing here)."""
    try:
        pid, host = sibling.name.rsplit("-", 2)[-2].split(".")
        return int(pid) if host == _host_id() else None
    except (IndexError, ValueError):
        return None


def _note(message: str) -> None:
    print(f"bizoo: {message}", file=sys.stderr)


def recover_interrupted(path: str | os.PathLike) -> None:
    """Undo what a killed ``staged_output_dir`` or ``move_into`` left at ``path``; nothing if nothing was left.

    * The old folder moved aside (``.<name>.old-<pid>.<host>-*/old``) but the new one not yet renamed in: the old one is
      renamed back. Once the new one is in place, a leftover ``.old-`` sibling is only deleted.
    * Staging siblings (``.<name>.tmp-<pid>.<host>-*``, ``.<name>.final-…``) of processes of this machine that no
      longer run are deleted: their content never became the folder.
    * An in-place update stopped half way (``<path>/.bizoo-replaced``): the files it had moved in are removed and
      the ones they replaced moved back, so the folder is as it was before the update.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return
    for retired in sorted(parent.glob(f".{glob.escape(path.name)}.old-*")):
        if not path.exists() and (retired / "old").is_dir():
            os.replace(retired / "old", path)
            _note(f"restored {str(path)!r}, which an interrupted write had moved aside")
        shutil.rmtree(retired, ignore_errors=True)
    for kind in ("tmp", "final"):
        for staging in parent.glob(f".{glob.escape(path.name)}.{kind}-*"):
            pid = _owner_pid(staging)
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(staging, ignore_errors=True)
    replaced = path / REPLACED_DIR
    if replaced.is_dir():
        incoming = replaced / INCOMING_FILE
        names = json.loads(incoming.read_text(encoding="utf-8")) if incoming.is_file() else []
        if (replaced / MOVING_IN_FILE).is_file():  # every replaced file was aside: incoming names are new files
            for name in names:
                _remove(path / name)
        old = replaced / "old"
        if old.is_dir():
            for item in old.iterdir():  # what it had replaced
                _remove(path / item.name)
                os.replace(item, path / item.name)
        shutil.rmtree(replaced, ignore_errors=True)
        _note(f"undid an interrupted update of {str(path)!r}: its files are as they were before it")


def _remove(item: Path) -> None:
    if item.is_dir() and not item.is_symlink():
        shutil.rmtree(item)
    elif item.exists() or item.is_symlink():
        item.unlink()


def staging_dir(path: Path, kind: str = "tmp") -> Path:
    """A new empty hidden sibling of ``path``, ``.<name>.<kind>-<pid>.<host>-<random>``, on the same file system (so
    that renaming it is atomic); ``recover_interrupted`` deletes it once its process is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.{kind}-{os.getpid()}.{_host_id()}-", dir=path.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would become the renamed folder's mode
    return staging


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``output_dir``; on success rename it to ``output_dir``.

    If the body raises, the temporary folder is removed and ``output_dir`` is untouched; if the process dies, the
    temporary folder is left as a hidden ``.<name>.tmp-<pid>.<host>-*`` sibling that the next write to ``output_dir``
    deletes. An existing non-empty ``output_dir`` is replaced only with ``overwrite``: it is moved aside first,
    the new folder renamed in, then the old one deleted (killed between the two renames, the next write, or any
    command given this output folder, renames the old one back: ``recover_interrupted``).
    """
    path = check_output_dir(output_dir, overwrite)
    staging = staging_dir(path)
    try:
        yield staging
        if path.exists():
            retired = staging_dir(path, "old")
            os.replace(path, retired / "old")
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        recover_interrupted(path)  # stopped between the two renames: the old folder goes back
        raise


def move_into(staging: Path, destination: Path) -> None:
    """Move every file of a finished ``staging`` folder into an existing ``destination`` (replacing files), as one
    update that a killed process cannot leave half done.

    The files to be replaced are first moved into ``destination/.bizoo-replaced`` (config.json, which makes the
    folder loadable, first of all), with the list of incoming names written before anything moves; the new files
    are moved in (config.json last), then the replaced ones deleted. Killed on the way, the folder has no
    config.json (from_pretrained fails loudly rather than mixing old and new weights) until the next command
    given this folder restores the old files (``recover_interrupted``).
    """
    destination.mkdir(parents=True, exist_ok=True)
    recover_interrupted(destination)
    names = sorted((p.name for p in staging.iterdir()), key=lambda n: (n == "config.json", n))  # config.json last
    replaced = destination / REPLACED_DIR
    try:
        (replaced / "old").mkdir(parents=True)
        atomic_write_text(replaced / INCOMING_FILE, json.dumps(names))
        for name in sorted(names, key=lambda n: n != "config.json"):  # config.json first
            if (destination / name).exists() or (destination / name).is_symlink():
                os.replace(destination / name, replaced / "old" / name)
        atomic_write_text(replaced / MOVING_IN_FILE, "")
        for name in names:
            os.replace(staging / name, destination / name)
    except BaseException:
        recover_interrupted(destination)  # the folder as it was; the caller removes the staging folder
        raise
    shutil.rmtree(replaced)
    staging.rmdir()


@contextlib.contextmanager
def staged_update(destination: Path) -> Iterator[Path]:
    """Yield a new staging folder beside ``destination`` (``staging_dir``); on success move its files into
    ``destination`` (``move_into``), which keeps its other files (checkpoints). If the body raises, the staging
    folder is removed and ``destination`` is untouched."""
    staging = staging_dir(destination, "final")
    try:
        yield staging
        move_into(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it: readers see the old or the new file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # the mode a plain write would give, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------------------------------
# Training options
# ----------------------------------------------------------------------------------------------------------------


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
        help="shard the model over the processes (FSDP full_shard, one unit per layer: the model's _no_split_modules)",
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
    import bizoo

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


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def last_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder under ``folder``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if Path(folder).is_dir() else None


# ----------------------------------------------------------------------------------------------------------------
# Models and tokenizers
# ----------------------------------------------------------------------------------------------------------------


def tokenizer_config_fields(spec, tokenizer) -> dict[str, Any]:
    """The config fields a model trained from scratch takes from its tokenizer: vocab_size and pad_token_id, and for
    a model that reads words and characters also char_vocab_size and unk_token_id (word dropout)."""
    fields = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if spec.tokenizer == "wordchar":
        fields.update(char_vocab_size=tokenizer.char_vocab_size, unk_token_id=tokenizer.unk_token_id)
    return fields


def load_model(auto_class, name_or_path: str, tokenizer, **config_overrides):
    """A model for ``auto_class``: from scratch if ``name_or_path`` is a registered model type (its default
    configuration with ``config_overrides``, sized to the tokenizer), else ``from_pretrained``.

    Raises ``CommandError`` if the tokenizer's vocabulary is larger than the model's or the checkpoint is missing.
    """
    import bizoo

    if name_or_path in bizoo.MODEL_SPECS:
        spec = bizoo.get_spec(name_or_path)
        config = spec.config_class(**tokenizer_config_fields(spec, tokenizer), **config_overrides)
        model = auto_class.from_config(config)
    else:
        if not Path(name_or_path).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise CommandError(
                f"--model-name-or-path {name_or_path!r} is neither a folder nor a bizoo model type "
                f"({sorted(bizoo.MODEL_SPECS)}), and the hub is offline"
            )
        model = auto_class.from_pretrained(name_or_path, **config_overrides)
    vocab = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise CommandError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {vocab}: ids above "
            f"{vocab - 1} would fall outside the embeddings; use the checkpoint's own tokenizer or train a new model"
        )
    return model


# ----------------------------------------------------------------------------------------------------------------
# Model configuration options (--variant, --model-config)
# ----------------------------------------------------------------------------------------------------------------

#: Config fields a command sets itself; --model-config may not change them.
RESERVED_FIELDS = {
    "vocab_size": "it comes from the tokenizer",
    "pad_token_id": "it comes from the tokenizer",
    "unk_token_id": "it comes from the tokenizer",
    "char_vocab_size": "it comes from the tokenizer (its character ids)",
    "num_labels": "it comes from the task's labels",
    "id2label": "it comes from the task's labels",
    "label2id": "it comes from the task's labels",
    "problem_type": "it comes from the task",
}

def parse_model_config(items: Sequence[str] | None) -> dict[str, Any]:
    """``["hidden_size=256", "hidden_act=gelu"]`` -> ``{"hidden_size": 256, "hidden_act": "gelu"}``.

    Values are parsed as JSON; Python's ``True``/``False``/``None`` are accepted too; anything else stays a string.
    """
    python_literals = {"True": True, "False": False, "None": None}
    values: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise CommandError(f"--model-config expects KEY=VALUE items such as hidden_size=256, got {item!r}")
        raw = raw.strip()
        if raw in python_literals:
            values[key] = python_literals[raw]
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def config_fields(config_class: type) -> set[str]:
    """The fields a configuration class takes: its own ``__init__`` parameters and its bases', up to (not
    including) transformers' ``PreTrainedConfig``."""
    from transformers import PreTrainedConfig

    fields: set[str] = set()
    for cls in config_class.__mro__:
        if cls is PreTrainedConfig or cls is object or not issubclass(cls, PreTrainedConfig):
            break
        if "__init__" in vars(cls):
            for name, param in inspect.signature(cls.__init__).parameters.items():
                if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                    fields.add(name)
    return fields


def check_config_fields(config_class: type, overrides: dict[str, Any], what: str) -> None:
    """``CommandError`` for a --model-config field ``config_class`` does not have or that the command sets."""
    allowed = config_fields(config_class) - set(RESERVED_FIELDS)
    for key in overrides:
        if key in RESERVED_FIELDS:
            raise CommandError(f"--model-config cannot set {key!r}: {RESERVED_FIELDS[key]}")
        if key not in allowed:
            raise CommandError(
                f"unknown --model-config field {key!r} for {what} ({config_class.__name__}); allowed: "
                f"{', '.join(sorted(allowed))}"
            )


def variant_fields(spec, variant: str | None) -> dict[str, Any]:
    """The config fields of a named ``--variant`` of ``spec``; None means the spec's default variant (if any)."""
    variant = variant if variant is not None else spec.default_variant
    if variant is None:
        return {}
    if not spec.variants:
        raise CommandError(f"--variant {variant!r}: model type {spec.model_type!r} has no named variants")
    if variant not in spec.variants:
        raise CommandError(
            f"unknown --variant {variant!r} for model type {spec.model_type!r}; allowed: {', '.join(spec.variants)}"
        )
    return dict(spec.variants[variant])


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------


def read_results(folder: str | os.PathLike) -> list[dict]:
    """The results recorded in a checkpoint folder (``[]`` if none)."""
    path = Path(folder) / RESULTS_FILE
    if not path.exists():
        return []
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CommandError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(results, list):
        raise CommandError(f"{path} must hold a JSON list of results, got {type(results).__name__}")
    return results


def record_results(folder: str | os.PathLike, task: dict, dataset: dict, metrics: dict, **extra) -> None:
    """Append one evaluation to ``folder/bizoo_results.json``.

    ``task``: {"type": "fill-mask" | "text-classification" | "token-classification", "name": ...};
    ``dataset``: {"name": ..., "type": ..., "split": ...}; ``metrics``: {metric name: value}.
    """
    results = read_results(folder)
    results.append({"task": task, "dataset": dataset, "metrics": metrics, **extra})
    atomic_write_text(Path(folder) / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
