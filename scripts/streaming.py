r"""Pretraining text read lazily: corpora larger than memory, one block at a time.

``StreamedBlocks`` is an ``IterableDataset`` over plain-text files (one document per file, as ``bizoo pretrain
--text`` reads them): it reads each file line by line, tokenizes a chunk of lines at a time and packs the token
stream into blocks of at most ``max_length`` tokens ([CLS] … [SEP]), never across a file boundary (a document's
last piece shorter than ``min_length`` is dropped, as the in-memory packing does). Each block carries its
``mask_seed`` (``scripts/masking.py``) from its position in the stream and the epoch, so masks do not depend on the
number of processes or on a resume (the ``Trainer`` skips the consumed batches of a resumed epoch by reading them
again). Memory holds one chunk of lines and one document's pending tokens, whatever the corpus size.

``sample_lines`` reads the first bytes of each file: what a tokenizer is trained on when the corpus is streamed.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import IterableDataset

from .masking import mask_seed

__all__ = ["StreamedBlocks", "sample_lines"]


def _lines(path: Path):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                yield line


def sample_lines(paths, max_bytes: int) -> list[list[str]]:
    """The non-empty lines of the first ``max_bytes`` bytes (about) of each file: one list per document."""
    documents = []
    for path in paths:
        taken, lines = 0, []
        for line in _lines(Path(path)):
            lines.append(line)
            taken += len(line) + 1
            if taken >= max_bytes:
                break
        if lines:
            documents.append(lines)
    return documents


class StreamedBlocks(IterableDataset):
    """Blocks of token ids packed from text files read lazily (module docstring); yields ``{"input_ids",
    "mask_seed"}``. ``set_epoch`` selects the epoch's masks."""

    def __init__(self, paths, tokenizer, max_length: int, seed: int, min_length: int = 8, chunk_lines: int = 1024):
        self.paths = [Path(p) for p in paths]
        self.tokenizer, self.max_length, self.seed = tokenizer, max_length, seed
        self.min_length, self.chunk_lines, self.epoch = min_length, chunk_lines, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _token_chunks(self, path: Path):
        """The token ids of the file's lines, a chunk of lines at a time."""
        chunk = []
        for line in _lines(path):
            chunk.append(line)
            if len(chunk) == self.chunk_lines:
                yield self.tokenizer(chunk, add_special_tokens=False)["input_ids"]
                chunk = []
        if chunk:
            yield self.tokenizer(chunk, add_special_tokens=False)["input_ids"]

    def blocks(self):
        """Token blocks of at most ``max_length`` ([CLS] … [SEP]), one document (file) at a time."""
        body = self.max_length - 2
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        for path in self.paths:
            pending: list[int] = []
            for ids_of_lines in self._token_chunks(path):
                for ids in ids_of_lines:
                    pending.extend(ids)
                    while len(pending) >= body:
                        yield [cls, *pending[:body], sep]
                        pending = pending[body:]
            if len(pending) >= self.min_length:
                yield [cls, *pending, sep]

    def __iter__(self):
        for index, block in enumerate(self.blocks()):
            yield {"input_ids": block, "mask_seed": mask_seed(self.seed, self.epoch, index)}
