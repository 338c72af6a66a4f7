"""WordPiece tokenizers trained offline with the `tokenizers` library, returned as transformers fast tokenizers
(``bizoo train-tokenizer`` saves one; ``bizoo pretrain`` and the fine-tuning commands train one for a model started
from scratch).

BERT's recipe: BERT normalizer (cased unless ``lowercase``, which also strips accents) and pre-tokenizer, WordPiece
with "##" marking a word-internal piece, [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, and the templates
``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]``. The vocabulary always holds the special tokens, every character seen and
the "##" form of every character seen inside a word (``minimum_vocab_size``).

Deterministic: the same texts and options give the same vocabulary, ids included. The `tokenizers` trainer alone does
not (it numbers the "##" pieces in hash-map order, and those numbers break ties between equally frequent merges, so
even the set of pieces changes from one call to the next); here every "##" character piece is numbered up front,
in sorted order (handed to the trainer as reserved tokens, then kept as ordinary vocabulary entries).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Union

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .data import read_text_files

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
#: Special tokens, in id order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"
DEFAULT_VOCAB_SIZE = 30_522  # BERT's
MAX_VOCAB_SIZE = 1_000_000

TextSource = Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]]


def check_options(vocab_size: int, min_frequency: int, model_max_length: int) -> None:
    """``ValueError`` naming the option for a vocabulary size, minimum pair frequency or maximum length out of range
    (what ``train_wordpiece_tokenizer`` accepts)."""
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


def _characters(texts: list[str], lowercase: bool) -> tuple[set[str], set[str]]:
    """Every character of the normalised, pre-tokenised ``texts``, and those seen inside a word (not first)."""
    backend = _new_backend(lowercase)
    chars: set[str] = set()
    inner: set[str] = set()
    for start in range(0, len(texts), 1000):  # normalise in chunks: one Rust call per 1000 lines
        chunk = backend.normalizer.normalize_str("\n".join(texts[start : start + 1000]))
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(chunk):
            chars.update(word)
            inner.update(word[1:])
    return chars, inner


def minimum_vocab_size(texts: list[str], lowercase: bool = False) -> int:
    """The smallest vocabulary the WordPiece trainer can produce for ``texts``.

    It always keeps the special tokens, every character seen (after normalisation) and the ``##`` form of
    every character seen inside a word; merges come on top of those.
    """
    chars, inner = _characters(texts, lowercase)
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
    check_options(vocab_size, min_frequency, model_max_length)
    texts = _collect_texts(files_or_iterator_of_texts)
    chars, inner = _characters(texts, lowercase)
    needed = len(SPECIAL_TOKENS) + len(chars) + len(inner)  # minimum_vocab_size
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size {vocab_size} is too small for this text: the {len(SPECIAL_TOKENS)} special tokens, every "
            f"character seen and the '{CONTINUATION_PREFIX}' form of every character seen inside a word need "
            f"{needed}; use a vocab_size from {needed} to {MAX_VOCAB_SIZE:,}"
        )

    # The "##" character pieces numbered up front, in sorted order (module docstring, "Deterministic"): the trainer
    # reserves them after the special tokens, so it never numbers them itself.
    pieces = [CONTINUATION_PREFIX + char for char in sorted(inner)]
    trained = _new_backend(lowercase)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *pieces],
        continuing_subword_prefix=CONTINUATION_PREFIX,
        show_progress=False,
    )
    trained.train_from_iterator(texts, trainer=trainer, length=len(texts))
    # The same vocabulary (ids unchanged) in a fresh tokenizer whose only added tokens are the five special ones: a
    # reserved "##x" must stay an ordinary piece (never matched in raw text, never dropped when decoding).
    backend = _new_backend(lowercase)
    backend.model = models.WordPiece(
        vocab=trained.get_vocab(), unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))
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
