"""Train a BERT-style WordPiece tokenizer on plain-text files, offline, and save it for AutoTokenizer.

The tokenizer is built with the `tokenizers` library and saved as a transformers fast tokenizer, so
`AutoTokenizer.from_pretrained(OUTPUT_DIR)` loads it anywhere:

  normalizer      BERT (cleans control characters, spaces CJK characters; cased unless --lowercase,
                  which also strips accents as uncased BERT does)
  pre-tokenizer   BERT (splits on whitespace and punctuation)
  model           WordPiece, "##" marks a word-internal piece
  special tokens  [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4
  templates       [CLS] A [SEP]  and, for pairs,  [CLS] A [SEP] B [SEP]  (token_type_ids 0 then 1)

Training is not bit-for-bit reproducible: the tokenizers library breaks ties between equally frequent pairs in
hash-map order (huggingface/tokenizers#1794), so two trainings on the same text can differ in a few pieces.
A run is reproducible from a saved tokenizer (--tokenizer, or the checkpoint's own).

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
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Union

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .common import check_output_dir, staged_output_dir
from .data import read_text_files

PROG = "bizoo train-tokenizer"

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#: Special tokens, in id order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"
DEFAULT_VOCAB_SIZE = 30_522  # BERT's
MAX_VOCAB_SIZE = 1_000_000

TextSource = Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]]


# --------------------------------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------------------------------


def _check_options(vocab_size: int, min_frequency: int, model_max_length: int) -> None:
    if not isinstance(vocab_size, int) or not len(SPECIAL_TOKENS) < vocab_size <= MAX_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be an integer from {len(SPECIAL_TOKENS) + 1} to {MAX_VOCAB_SIZE:,}, got {vocab_size!r}"
        )
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an integer >= 1, got {min_frequency!r}")
    if not isinstance(model_max_length, int) or model_max_length < 1:
        raise ValueError(f"model_max_length must be an integer >= 1, got {model_max_length!r}")


def _collect_texts(source: TextSource) -> list[str]:
    """Texts to train on: a path (``str`` or ``Path``) is one file; an iterable of ``Path`` objects is
    files; any other iterable yields the texts themselves (strings)."""
    if isinstance(source, (str, os.PathLike)):
        return read_text_files([source])
    items = list(source)
    if items and all(isinstance(item, os.PathLike) for item in items):
        return read_text_files(items)
    if not all(isinstance(item, str) for item in items):
        kinds = sorted({type(item).__name__ for item in items})
        raise TypeError(f"expected file paths (pathlib.Path) or texts (str), not a mix of {kinds}")
    texts = [text for text in items if text.strip()]
    if not texts:
        raise ValueError("no training text: every text given is empty")
    return texts


def _new_backend(lowercase: bool) -> Tokenizer:
    backend = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    return backend


def minimum_vocab_size(texts: list[str], lowercase: bool = False) -> int:
    """The smallest vocabulary the WordPiece trainer can produce for ``texts``.

    It always keeps the special tokens, every character seen (after normalisation) and the ``##`` form of
    every character seen inside a word; merges come on top of those.
    """
    backend = _new_backend(lowercase)
    chars: set[str] = set()
    inner: set[str] = set()
    for start in range(0, len(texts), 1000):  # normalise in chunks: one Rust call per 1000 lines
        chunk = backend.normalizer.normalize_str("\n".join(texts[start : start + 1000]))
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(chunk):
            chars.update(word)
            inner.update(word[1:])
    return len(SPECIAL_TOKENS) + len(chars) + len(inner)


def train_wordpiece_tokenizer(
    files_or_iterator_of_texts: TextSource,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    lowercase: bool = False,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a BERT-style WordPiece tokenizer in memory and return it as a transformers fast tokenizer.

    Args:
        files_or_iterator_of_texts: a file path (``str`` or ``Path``), a list of ``pathlib.Path`` files
            (UTF-8, blank lines ignored), or an iterable of texts (``str``), e.g. GLUE training sentences.
        vocab_size: the vocabulary size to aim for; from ``minimum_vocab_size(texts)`` to 1,000,000. A
            small corpus may end below it when no pair is frequent enough to merge.
        lowercase: lowercase and strip accents (uncased BERT); cased by default.
        min_frequency: how often a pair must occur to be merged into a new piece.
        model_max_length: the longest input the tokenizer keeps when truncating.

    Returns:
        A ``PreTrainedTokenizerFast`` with [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4 set as its
        pad/unk/cls/sep/mask tokens, returning ``input_ids``, ``token_type_ids`` and ``attention_mask``.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: an option is out of range, there is no text, or ``vocab_size`` is too small to hold
            the special tokens and the characters seen.
    """
    _check_options(vocab_size, min_frequency, model_max_length)
    texts = _collect_texts(files_or_iterator_of_texts)
    needed = minimum_vocab_size(texts, lowercase)
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size {vocab_size} is too small for this text: the {len(SPECIAL_TOKENS)} special tokens, every "
            f"character seen and the '{CONTINUATION_PREFIX}' form of every character seen inside a word need "
            f"{needed}; use a vocab_size from {needed} to {MAX_VOCAB_SIZE:,}"
        )

    backend = _new_backend(lowercase)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix=CONTINUATION_PREFIX,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    ids = [backend.token_to_id(token) for token in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):  # the trainer puts them first; guard the contract anyway
        raise RuntimeError(f"special tokens {SPECIAL_TOKENS} got ids {ids}, expected 0..{len(SPECIAL_TOKENS) - 1}")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, ids[2]), (SEP, ids[3])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


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
        _check_options(args.vocab_size, args.min_frequency, args.model_max_length)
        check_output_dir(args.output_dir, args.overwrite)
        tokenizer = train_wordpiece_tokenizer(
            [Path(f) for f in args.files],
            vocab_size=args.vocab_size,
            lowercase=args.lowercase,
            min_frequency=args.min_frequency,
            model_max_length=args.model_max_length,
        )
        path = save_tokenizer(tokenizer, args.output_dir, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(f"trained a WordPiece tokenizer with {len(tokenizer)} tokens on {len(args.files)} file(s); saved to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo train-tokenizer`` and ``python -m bizoo.scripts.train_tokenizer``."""
    from .common import command_main

    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
