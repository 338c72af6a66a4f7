"""bizoo: bidirectional sequence models for Hugging Face transformers, from the command line.

Each command is also ``python -m bizoo.scripts.<module>``; ``bizoo COMMAND --help`` explains it.

examples:
  bizoo pretrain --output-dir runs/lion                 # LION-S on the Shakespeare sample shipped with bizoo
  bizoo finetune-glue --model-name-or-path runs/lion --task sst2 --data-dir data/glue --output-dir runs/sst2
  bizoo export runs/sst2 hub/lion-sst2 && bizoo push hub/lion-sst2 --repo-id me/lion-sst2
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .lib.command import add_command_arguments, parse_command_line, run_parsed

# command -> (module under bizoo.scripts, one-line summary)
COMMANDS = {
    "train-tokenizer": ("train_tokenizer", "train a WordPiece tokenizer on text files, offline"),
    "pretrain": ("pretrain", "pretrain a model with masked-LM (default: the shipped Shakespeare sample)"),
    "finetune-glue": ("finetune_glue", "fine-tune and evaluate on a GLUE task"),
    "finetune-ner": ("finetune_ner", "fine-tune and evaluate a tagger on CoNLL-format files"),
    "export": ("export", "write a Hub-ready folder that loads without bizoo (trust_remote_code)"),
    "push": ("push", "upload an exported folder to the Hugging Face Hub"),
    "convert-bigs": ("convert_bigs", "convert a checkpoint of the original BiGS (Flax or PyTorch port) to bizoo"),
    "convert-elmo": ("convert_elmo", "convert a bilm-tf ELMo (options.json + HDF5 weights) to a bizoo ELMo folder"),
    "bench": ("bench", "benchmark the kernels against their baselines"),
    "evaluate-all": ("evaluate_all", "pretrain every model briefly and score it on GLUE and CoNLL-2003: the table"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bizoo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bizoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(f"{__package__}.{module_name}")
        command = sub.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        add_command_arguments(command, module.add_arguments)
        command.set_defaults(_run=module.run, _prog=module.PROG, _parser=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(build_parser(), argv)
    return run_parsed(args._prog, args._run, args)


if __name__ == "__main__":
    sys.exit(main())
