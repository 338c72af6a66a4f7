"""How every command runs: its options, its log level, its output, and bad input as ``<prog>: error: ...`` with exit
code 2; the entry point that ``python -m bizoo.scripts.<command>`` and ``bizoo <command>`` share.

What a command writes, and where:

* **the report** (``report``): the command's product, the results table, "saved ... to DIR", "exported ...": plain
  text on stdout, at every log level (``--log_level error`` still shows the results);
* **status** (``logger.info``): what it is doing ("training a WordPiece tokenizer ...", the data and model it
  read): plain text on stdout, no prefix, at log level info and below;
* **warnings** (``logger.warning``, ``logger.error``): ``<prog>: warning: <message>`` on stderr;
* **bad input** (``CommandError``, caught by ``run_command``): ``<prog>: error: <message>`` on stderr, exit code 2.

Each module logs through its own logger, ``logging.getLogger(__name__)``, under the logger ``bizoo``. Only this
module writes to the terminal itself: ``print`` appears nowhere else in ``bizoo.scripts`` (``tests/scripts/
test_logging.py``). The handler looks ``sys.stdout`` and ``sys.stderr`` up at each message, so a redirected stream
(pytest's capsys, ``contextlib.redirect_stdout``) gets what the command writes.

The log level of a run, set once per run by ``run_parsed`` (``command_main`` and ``bizoo <command>``):

1. ``--log_level`` (``--log-level``): every command has it, the training commands as the ``TrainingArguments``
   field (with ``--log_level_replica``), the others as their own option with the same choices (``LOG_LEVELS``);
2. else the environment variable ``TRANSFORMERS_VERBOSITY`` (transformers' own; an unknown value is bad input);
3. else info for bizoo's loggers, and transformers' and datasets' loggers keep their own level (warning), so that
   their progress messages do not bury the command's.

A level set by 1. or 2. applies to bizoo's loggers and to transformers' and datasets' (``transformers.utils.logging.
set_verbosity``, ``datasets.utils.logging.set_verbosity``), as transformers' example scripts do. "passive" is as if
no level were given. In a distributed run (torchrun, ``accelerate launch``) a process other than the main one logs
at ``--log_level_replica`` (default warning) instead, as ``TrainingArguments.get_process_log_level`` decides: the
main process is the one with LOCAL_RANK 0 (RANK 0 with ``--log_on_each_node false``). The Trainer's progress bars
are the Trainer's (``--disable_tqdm``). When the run ends, the loggers' levels and handlers are as they were before
it (a command called from Python leaves the caller's logging alone).

* ``CommandError``: bad input to a command (a ``ValueError``), raised before any work starts.
* ``run_command``: run a command's body, turning bad input into exit code 2.
* ``command_main``: a command module's ``main`` (its ``PROG``, docstring, ``add_arguments`` and ``run``).
* ``add_command_arguments``, ``parse_command_line``, ``run_parsed``: what ``command_main`` and ``bizoo <command>``
  share.
* ``report``, ``write_error``: the command's product on stdout; an error line on stderr; ``listing``: names for a
  message, the first few.
* ``process_log_level``, ``command_logging``: the level of this process; logging set up for one run.
* ``end_process_group``: leave a distributed run cleanly at the end of a command.

Standard library only at module level (transformers and datasets inside functions): bench's child processes import
this module without the package.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator

#: The levels ``--log_level`` takes, as ``TrainingArguments`` names them ("detail" is debug; "passive": none given).
LOG_LEVELS = {
    "detail": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
PASSIVE = "passive"

#: The level of bizoo's loggers when none is given: the status lines show.
DEFAULT_LEVEL = logging.INFO

#: The environment variable transformers reads its level from; bizoo's commands honour it too.
VERBOSITY_VARIABLE = "TRANSFORMERS_VERBOSITY"

#: What ``--log_level`` means in a bizoo command, for ``--help``.
LOG_LEVEL_HELP = (
    "how much the command logs: info shows its status lines, warning only warnings and errors; the results are "
    f"printed at every level. Unless given (or passive): ${VERBOSITY_VARIABLE} when set, else info for bizoo's "
    "status lines with transformers' and datasets' own levels kept. A level given applies to transformers and "
    "datasets too"
)

#: The root of bizoo's loggers: every module's ``logging.getLogger(__name__)`` is under it.
ROOT_LOGGER = "bizoo"
LIBRARY_LOGGERS = ("transformers", "datasets")


class CommandError(ValueError):
    """Bad input to a command: printed as ``<prog>: error: <message>``, exit code 2, before any work starts."""


def report(text: str = "") -> None:
    """Write ``text`` and a newline to the current ``sys.stdout``: the command's product (its results, where it saved
    them, a benchmark's table), written at every log level."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def listing(names, limit: int = 6) -> str:
    """``names`` for an error message: "a, b, c and 4 more" (the first ``limit``, in the order given)."""
    names = [str(name) for name in names]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def write_error(prog: str, message: object) -> None:
    """``<prog>: error: <message>`` on the current ``sys.stderr``."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body, turning ``CommandError``/``ValueError``/``FileNotFoundError`` into exit code 2."""
    try:
        return body()
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        write_error(prog, err)
        return 2


# ----------------------------------------------------------------------------------------------------------------
# The log level and the handler
# ----------------------------------------------------------------------------------------------------------------


class CommandLogHandler(logging.Handler):
    """Info and debug: the message alone on the current ``sys.stdout``; warning and above: ``<prog>: <level>:
    <message>`` on the current ``sys.stderr``. The streams are looked up at each message, never kept."""

    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.WARNING:
                stream, message = sys.stderr, f"{self.prog}: {record.levelname.lower()}: {message}"
            else:
                stream = sys.stdout
            stream.write(f"{message}\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own rule: a failing handler reports and carries on
            self.handleError(record)


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` / ``--log_level`` (``LOG_LEVELS`` or passive), left out of the namespace unless given; to the
    parser of each subcommand where ``parser`` has subcommands (``bizoo bench <target>``). Nothing where the parser
    has the option already (a training command's ``TrainingArguments`` field)."""
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if subcommands:
        for action in subcommands:
            for subparser in dict.fromkeys(action.choices.values()):
                add_log_level_argument(subparser)
        return
    if any(action.dest == "log_level" for action in parser._actions):
        return
    parser.add_argument(
        "--log-level", "--log_level", dest="log_level", choices=[*LOG_LEVELS, PASSIVE], default=argparse.SUPPRESS,
        metavar="LEVEL", help=f"{LOG_LEVEL_HELP} (one of: {', '.join([*LOG_LEVELS, PASSIVE])})",
    )


def add_command_arguments(parser: argparse.ArgumentParser, add_arguments: Callable[[argparse.ArgumentParser], None]
                          ) -> None:
    """A command's own options (``add_arguments``), then ``--log-level`` unless it has one."""
    add_arguments(parser)
    add_log_level_argument(parser)


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that an unrecognised option is reported with the usage of the innermost
    command chosen (``bizoo bench lion``, not ``bizoo``): argparse reports it with the parser it was called on. A
    (sub)command's parser names itself as the default ``_parser``."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _level(name: str, where: str, passive: bool = True) -> int | None:
    """The level ``name`` means (None for passive, where ``passive`` allows it); ``CommandError`` naming ``where``
    for an unknown one."""
    allowed = [*LOG_LEVELS, PASSIVE] if passive else list(LOG_LEVELS)
    if name not in allowed:
        raise CommandError(f"{where} {name!r} is not a log level; one of: {', '.join(allowed)}")
    return LOG_LEVELS.get(name)


def is_main_process(args: argparse.Namespace) -> bool:
    """Whether this process logs at ``--log_level`` (else at ``--log_level_replica``): as ``TrainingArguments.
    should_log``, local rank 0 (global rank 0 with ``--log_on_each_node false``); one process is its own main."""
    variable = "LOCAL_RANK" if getattr(args, "log_on_each_node", True) else "RANK"
    try:
        return int(os.environ.get(variable) or 0) == 0
    except ValueError:
        return True


def process_log_level(args: argparse.Namespace) -> tuple[int, bool]:
    """(the level of this process, whether it was given): ``--log_level`` on the main process,
    ``--log_level_replica`` (default warning) on the others, else ``$TRANSFORMERS_VERBOSITY``, else ``DEFAULT_LEVEL``
    (not given). ``CommandError`` for an unknown level name."""
    if is_main_process(args):
        level = _level(getattr(args, "log_level", PASSIVE), "--log_level")
    else:
        level = _level(getattr(args, "log_level_replica", "warning"), "--log_level_replica")
    if level is not None:
        return level, True
    variable = os.environ.get(VERBOSITY_VARIABLE)
    if variable:
        return _level(variable, f"the environment variable {VERBOSITY_VARIABLE}", passive=False), True
    return DEFAULT_LEVEL, False


def _library_logging(name: str):
    """The logging module of transformers or datasets (their set_verbosity/get_verbosity), None where not installed."""
    try:
        return importlib.import_module(f"{name}.utils.logging")
    except ImportError:
        return None


@contextlib.contextmanager
def command_logging(prog: str, level: int, libraries: bool) -> Iterator[None]:
    """Logging for one run: bizoo's loggers at ``level`` through a ``CommandLogHandler`` (and not also through the
    root logger's handlers); with ``libraries``, transformers' and datasets' loggers at ``level`` too. On leaving,
    every level and handler is as it was."""
    root = logging.getLogger(ROOT_LOGGER)
    saved = root.level, root.propagate, list(root.handlers)
    modules = [module for module in map(_library_logging, LIBRARY_LOGGERS) if module is not None] if libraries else []
    saved_libraries = [(module, module.get_verbosity()) for module in modules]
    handler = CommandLogHandler(prog)
    for old in saved[2]:
        if isinstance(old, CommandLogHandler):  # a run inside a run (evaluate-all in-process): one handler only
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    for module in modules:
        module.set_verbosity(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for old in saved[2]:
            if old not in root.handlers:
                root.addHandler(old)
        root.setLevel(saved[0])
        root.propagate = saved[1]
        for module, verbosity in saved_libraries:
            module.set_verbosity(verbosity)


# ----------------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------------


def run_parsed(prog: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command on its parsed options: its log level set up (a bad one: exit code 2), ``run(args)``, then the
    process group of a distributed run ended (also on an error)."""
    try:
        try:
            level, given = process_log_level(args)
        except CommandError as err:
            write_error(prog, err)
            return 2
        with command_logging(prog, level, libraries=given):
            return run(args)
    finally:
        end_process_group()


def _command_module(module_name: str):
    """The module ``module_name``; the module under its package name when it is ``__main__`` (``python -m
    bizoo.scripts.<command>``), so that its logger is ``bizoo.scripts.<command>``, under bizoo's."""
    module = importlib.import_module(module_name)
    spec = getattr(module, "__spec__", None)
    if module_name == "__main__" and spec is not None and spec.name not in ("__main__", None):
        module = importlib.import_module(spec.name)
    return module


def command_main(module_name: str, argv: list[str] | None = None) -> int:
    """The entry point of every command module (``python -m bizoo.scripts.<module>``): its ``PROG``, its
    docstring as the help text, its ``add_arguments`` and ``run``."""
    module = _command_module(module_name)
    parser = argparse.ArgumentParser(
        prog=module.PROG, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_command_arguments(parser, module.add_arguments)
    return run_parsed(module.PROG, module.run, parse_command_line(parser, argv))


def end_process_group() -> None:
    """Leave a distributed run (torchrun / ``accelerate launch``) cleanly: destroy the process group the Trainer
    created, so that no communication thread is still running when the interpreter exits (a gloo thread left
    running there aborts the process with "terminate called without an active exception"). On gloo the processes
    first wait for each other: a process that leaves while another still works (the first evaluates and saves after
    training) was aborted so about one run in ten. No-op otherwise."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        try:
            if torch.distributed.get_backend() == "gloo":
                torch.distributed.barrier()
        finally:
            torch.distributed.destroy_process_group()
