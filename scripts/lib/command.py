"""How every command runs: bad input becomes ``<prog>: error: ...`` and exit code 2, and the entry point that
``python -m bizoo.scripts.<command>`` and ``bizoo <command>`` share.

* ``CommandError``: bad input to a command (a ``ValueError``), raised before any work starts.
* ``run_command``: run a command's body, turning bad input into exit code 2.
* ``command_main``: a command module's ``main`` (its ``PROG``, docstring, ``add_arguments`` and ``run``).
* ``end_process_group``: leave a distributed run cleanly at the end of a command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable


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
