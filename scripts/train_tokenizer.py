"""Train a BERT-style WordPiece tokenizer on plain-text files, offline, and save it for AutoTokenizer.

The tokenizer is built with the `tokenizers` library and saved as a transformers fast tokenizer, so
`AutoTokenizer.from_pretrained(OUTPUT_DIR)` loads it anywhere:

  normalizer      BERT (cleans control characters, spaces CJK characters; cased unless --lowercase,
                  which also strips accents as uncased BERT does)
  pre-tokenizer   BERT (splits on whitespace and punctuation)
  model           WordPiece, "##" marks a word-internal piece
  special tokens  [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
  templates       [CLS] A [SEP]  and, for pairs,  [CLS] A [SEP] B [SEP]  (token_type_ids 0 then 1)

Training is deterministic: the same files and options give the same vocabulary, ids included, in every run
(the tokenizers library alone breaks ties between equally frequent merges in hash-map order; bizoo numbers the
pieces those ties depend on up front).

The vocabulary always holds the special tokens, every character seen and the "##" form of every
character seen inside a word; --vocab-size must leave room for them. The tokenizer is written to a
temporary folder beside OUTPUT_DIR and renamed into place at the end, so a failure leaves nothing
half-written.

example:
  bizoo train-tokenizer corpus/*.txt --output-dir runs/tok --vocab-size 8000
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from .lib.command import command_main, report, write_error
from .lib.output_folders import check_output_dir, staged_output_dir
from .lib.wordpiece import DEFAULT_VOCAB_SIZE, MAX_VOCAB_SIZE, check_options, train_wordpiece_tokenizer

PROG = "bizoo train-tokenizer"

def save_tokenizer(tokenizer: PreTrainedTokenizerFast, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save ``tokenizer`` to ``output_dir`` through a temporary sibling folder renamed into place.

    A failure while writing removes the temporary folder and leaves ``output_dir`` as it was. An existing
    non-empty ``output_dir`` is replaced only when ``overwrite`` is true.
    """
    with staged_output_dir(output_dir, overwrite) as staging:
        tokenizer.save_pretrained(str(staging))
    return Path(output_dir)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument(
        "files", nargs="+", metavar="FILE",
        help="plain-text UTF-8 training files; every non-blank line is one training text",
    )
    parser.add_argument(
        "--output-dir", required=True, metavar="DIR",
        help="folder to write tokenizer.json and tokenizer_config.json to (must be new or empty, see --overwrite)",
    )
    parser.add_argument(
        "--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, metavar="N",
        help=f"vocabulary size to aim for, special tokens and characters included; up to {MAX_VOCAB_SIZE:,} "
        f"(default: %(default)s)",
    )
    parser.add_argument(
        "--lowercase", action="store_true",
        help="lowercase and strip accents, like uncased BERT (default: keep case and accents)",
    )
    parser.add_argument(
        "--min-frequency", type=int, default=2, metavar="N",
        help="how often a pair of pieces must occur to be merged into a new piece (default: %(default)s)",
    )
    parser.add_argument(
        "--model-max-length", type=int, default=512, metavar="N",
        help="longest input in tokens, used when truncating (default: %(default)s)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace --output-dir if it already holds files (its old contents are deleted)",
    )


def run(args: argparse.Namespace) -> int:
    """Train and save the tokenizer described by ``args``; 0 on success, 2 on bad input."""
    try:
        check_options(args.vocab_size, args.min_frequency, args.model_max_length)
        check_output_dir(args.output_dir, args.overwrite, inputs=args.files)
        tokenizer = train_wordpiece_tokenizer(
            [Path(f) for f in args.files],
            vocab_size=args.vocab_size,
            lowercase=args.lowercase,
            min_frequency=args.min_frequency,
            model_max_length=args.model_max_length,
        )
        path = save_tokenizer(tokenizer, args.output_dir, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        write_error(PROG, err)
        return 2
    report(f"trained a WordPiece tokenizer with {len(tokenizer)} tokens on {len(args.files)} file(s); saved to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo train-tokenizer`` and ``python -m bizoo.scripts.train_tokenizer``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
