"""Pretrained word vectors (GloVe, word2vec, fastText .vec) for a word vocabulary, with Lample et al.'s fallbacks.

``load_word_vectors(path, vocab)`` reads the TEXT format, one vector a line::

    [count dim]                  optional header (word2vec / fastText): two integers
    word v1 v2 ... vdim          the word, then dim numbers, separated by single spaces

(a ``.gz`` file is read compressed). Fields are split on the ASCII space only, so a word may hold other spaces (GloVe
840B has words with U+00A0). Blank lines are skipped; the first of two vectors of the same word is kept.

Each vocabulary word takes the first of these that the file has (Lample et al. 2016, "Neural Architectures for Named
Entity Recognition"), and the report counts each kind:

  exact             the word itself
  lowercase         ``word.lower()``
  digits            every ASCII digit replaced by 0 (``1996`` -> ``0000``)
  lowercase_digits  both

Rows of words the file lacks (special tokens included) keep a random initialisation: independent normal values with
mean 0 and the standard deviation of all the values of the vectors found (so they have the scale of the pretrained
rows; 1/sqrt(dim) when none is found), drawn from ``torch.Generator().manual_seed(seed)`` for the whole matrix before
the found rows are written, so the same file, vocabulary and seed give the same matrix. ``padding_idx`` (e.g. the
[PAD] id) gets a row of zeros.

Only the vectors of words that can match are parsed, so a large file costs one pass of reading.

example:
  vectors, report = load_word_vectors("glove.6B.100d.txt", tokenizer.get_vocab(), dim=100, padding_idx=0)
  print(report)  # 20,102 of 20,109 words found (99.97%): 15,001 exact, 4,950 lowercase, 140 digits, 11 ...
  model.get_input_embeddings().weight.data.copy_(vectors)
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

#: The fallbacks, in the order tried.
MATCH_KINDS = ("exact", "lowercase", "digits", "lowercase_digits")
_DIGIT = re.compile(r"[0-9]")


@dataclass
class WordVectorsReport:
    """What ``load_word_vectors`` found: counts per kind of match, the words not found, the file's facts."""

    path: str
    dim: int
    vocab_size: int
    file_vectors: int = 0  # distinct words read from the file
    duplicates: int = 0  # lines whose word came earlier in the file (ignored)
    header: tuple[int, int] | None = None  # (count, dim) of a word2vec header line
    exact: int = 0
    lowercase: int = 0
    digits: int = 0
    lowercase_digits: int = 0
    missing_words: list[str] = field(default_factory=list)  # in vocabulary-id order
    random_std: float = 0.0  # the standard deviation of the random rows

    @property
    def found(self) -> int:
        return self.exact + self.lowercase + self.digits + self.lowercase_digits

    @property
    def missing(self) -> int:
        return len(self.missing_words)

    @property
    def coverage(self) -> float:
        """The share of the vocabulary that got a pretrained vector."""
        return self.found / self.vocab_size if self.vocab_size else 0.0

    def __str__(self) -> str:
        return (
            f"{self.found:,} of {self.vocab_size:,} words found ({100 * self.coverage:.2f}%): {self.exact:,} exact, "
            f"{self.lowercase:,} lowercase, {self.digits:,} digits, {self.lowercase_digits:,} lowercase+digits; "
            f"{self.missing:,} random (std {self.random_std:.4g}); {self.file_vectors:,} vectors of dim {self.dim} "
            f"in {self.path}"
        )


def candidate_forms(word: str) -> list[tuple[str, str]]:
    """(kind, form) to look up for ``word``, in order, each form once."""
    lower = word.lower()
    forms = [
        ("exact", word),
        ("lowercase", lower),
        ("digits", _DIGIT.sub("0", word)),
        ("lowercase_digits", _DIGIT.sub("0", lower)),
    ]
    seen: set[str] = set()
    unique = []
    for kind, form in forms:
        if form not in seen:
            seen.add(form)
            unique.append((kind, form))
    return unique


def _check_vocab(vocab) -> int:
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"vocab must be a non-empty dict of word -> id, got {type(vocab).__name__} {vocab!r:.80}")
    ids = sorted(vocab.values())
    if any(not isinstance(i, int) or isinstance(i, bool) for i in ids) or ids != list(range(len(ids))):
        raise ValueError(f"vocab ids must be the integers 0..{len(vocab) - 1}, each used once")
    return len(ids)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _parse_header(fields: list[str]) -> tuple[int, int] | None:
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def load_word_vectors(
    path: str | os.PathLike,
    vocab: dict[str, int],
    dim: int | None = None,
    *,
    seed: int = 0,
    padding_idx: int | None = None,
) -> tuple[torch.Tensor, WordVectorsReport]:
    """Read pretrained vectors for ``vocab`` from a GloVe / word2vec text file.

    Args:
        path: the vectors file (text; ``.gz`` read compressed), with or without a word2vec header line.
        vocab: word -> id, ids 0..V-1 (e.g. ``tokenizer.get_vocab()``).
        dim: the dimension the caller expects (an error if the file's differs); the file's when None.
        seed: the seed of the random rows.
        padding_idx: an id whose row is all zeros (the padding token), or None.

    Returns:
        ``(vectors, report)``: a float32 tensor (V, dim), row ``vocab[word]`` for ``word``, and a
        ``WordVectorsReport``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an empty file, a line with another number of values than the others (named by line number), a
            value that is not a number, a header that disagrees with the file, ``dim`` unlike the file's, a binary
            (not text) file, or a bad ``vocab`` / ``dim`` / ``padding_idx``.
    """
    path = Path(path)
    size = _check_vocab(vocab)
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        raise ValueError(f"dim must be a positive integer or None, got {dim!r}")
    if padding_idx is not None and (not isinstance(padding_idx, int) or not 0 <= padding_idx < size):
        raise ValueError(f"padding_idx must be None or an id from 0 to {size - 1}, got {padding_idx!r}")
    if not path.exists():
        raise FileNotFoundError(f"word vectors file {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"word vectors path {str(path)!r} is a folder; give the vectors file")

    # form -> [(vocab word, rank of the kind)]: which vocabulary words a file word can serve.
    wanted: dict[str, list[tuple[str, int]]] = {}
    for word in vocab:
        for kind, form in candidate_forms(word):
            wanted.setdefault(form, []).append((word, MATCH_KINDS.index(kind)))

    file_dim = None
    header = None
    seen: set[str] = set()
    duplicates = 0
    best: dict[str, tuple[int, np.ndarray]] = {}  # vocab word -> (rank, vector)
    try:
        with _open_text(path) as lines:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip()
                if not line:
                    continue
                word, _, rest = line.partition(" ")
                if number == 1 and header is None:
                    header = _parse_header(line.split(" "))
                    if header is not None:
                        file_dim = header[1]
                        if file_dim < 1:
                            raise ValueError(f"{path}: line 1: the header gives dimension {file_dim}")
                        continue
                count = rest.count(" ") + 1 if rest else 0
                if file_dim is None:
                    if count == 0:
                        raise ValueError(f"{path}: line {number}: the word {word!r} has no values")
                    file_dim = count
                elif count != file_dim:
                    source = "the header" if header is not None else "the first vector"
                    raise ValueError(
                        f"{path}: line {number}: {word!r} has {count} values, but {source} has {file_dim}: "
                        "inconsistent dimensions"
                    )
                if word in seen:
                    duplicates += 1
                    continue
                seen.add(word)
                for vocab_word, rank in wanted.get(word, ()):
                    if vocab_word not in best or rank < best[vocab_word][0]:
                        try:
                            vector = np.array(rest.split(" "), dtype=np.float32)
                        except ValueError:
                            raise ValueError(f"{path}: line {number}: a value of {word!r} is not a number") from None
                        best[vocab_word] = (rank, vector)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not a UTF-8 text file ({err.reason} at byte {err.start}); binary word2vec files are not "
            "supported: convert them to the text format first"
        ) from None
    except (OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path} could not be read: {err}") from None

    if not seen:
        raise ValueError(f"{path} has no word vectors (the file is empty{' but for its header' if header else ''})")
    if header is not None and header[0] != len(seen) + duplicates:
        raise ValueError(
            f"{path}: the header announces {header[0]} vectors but the file has {len(seen) + duplicates}; "
            "the file is truncated or the header is wrong"
        )
    if dim is not None and dim != file_dim:
        raise ValueError(f"dim mismatch: {path} holds vectors of dimension {file_dim}, but dim={dim} was asked for")

    report = WordVectorsReport(
        path=str(path), dim=file_dim, vocab_size=size, file_vectors=len(seen), duplicates=duplicates, header=header
    )
    found_rows = []
    for word, index in sorted(vocab.items(), key=lambda item: item[1]):
        if word in best:
            rank, vector = best[word]
            kind = MATCH_KINDS[rank]
            setattr(report, kind, getattr(report, kind) + 1)
            found_rows.append((index, vector))
        else:
            report.missing_words.append(word)

    if found_rows:
        values = np.stack([vector for _, vector in found_rows]).astype(np.float64)
        std = float(values.std())
    else:
        std = 1.0 / float(np.sqrt(file_dim))
    std = std if std > 0 else 1.0 / float(np.sqrt(file_dim))
    report.random_std = std
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(size, file_dim, generator=generator, dtype=torch.float32) * std
    for index, vector in found_rows:
        vectors[index] = torch.from_numpy(vector)
    if padding_idx is not None:
        vectors[padding_idx] = 0.0
    return vectors, report


__all__ = ["load_word_vectors", "WordVectorsReport", "candidate_forms", "MATCH_KINDS"]
