r"""Pretraining text read lazily: corpora larger than memory, one block at a time.

``StreamedBlocks`` is an ``IterableDataset`` over plain-text files (one document per file, as ``bizoo pretrain
--text`` reads them) or a dataset's text read with ``streaming=True`` (one document, ``pretrain --dataset``): it reads
each source line by line, tokenizes a chunk of lines at a time and packs the token
stream into blocks of at most ``max_length`` tokens ([CLS] … [SEP]) with ``pack_blocks``, which the in-memory
packing of ``bizoo pretrain`` uses too: never across a file boundary, a document's last piece shorter than
``min_length`` dropped. Each block carries its ``mask_seed`` (``scripts/lib/masking.py``) from its position in the
stream and the epoch, so masks do not depend on the number of processes or on a resume. Memory holds one chunk of
lines and one document's pending tokens, whatever the corpus size.

With ``endless=True`` (what ``bizoo pretrain --stream`` trains on) the stream never ends: pass after pass over the
sources, pass k drawing the masks of epoch ``set_epoch``'s + k. The ``Trainer`` then runs one epoch of --max-steps
steps, and a resumed run, which skips the consumed batches by reading them again from the start of its epoch, lands
on the block the interrupted run stopped at, in whichever pass it was. (A stream that ends would make the Trainer
begin a new epoch at each pass; a run resumed in a later pass would skip its batches from the first and start
again at the beginning of the corpus.)

Data-loader workers (--dataloader_num_workers N) each read the whole stream and keep every N-th block (worker i the
blocks i, N + i, 2N + i, ...), so every block is trained on once per pass; the batches are each worker's own, so
they differ from those of a run without workers.

``sample_lines`` reads the first bytes of each file: what a tokenizer is trained on when the corpus is streamed.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from torch.utils.data import IterableDataset, get_worker_info

from .data import not_utf8_error
from .masking import SharedEpoch, mask_seed

__all__ = ["MIN_BLOCK_LENGTH", "StreamedBlocks", "pack_blocks", "sample_lines"]

MIN_BLOCK_LENGTH = 8  # a training or held-out block holds at least this many tokens (words) besides its boundaries


def _lines(source):
    """The non-empty, stripped lines of a source: a text file's path (UTF-8, a leading byte-order mark dropped, as
    ``lib.data.read_text_files`` reads it), or a re-iterable of lines (a dataset's text read with ``streaming=True``,
    ``lib.dataset_readers.stream_text_lines``). A file that does not decode is a ``ValueError`` naming the file and
    the line (``lib.data.not_utf8_error``), wherever in the stream it comes."""
    if not isinstance(source, (str, os.PathLike)):
        yield from (line.strip() for line in source if line.strip())
        return
    with open(source, encoding="utf-8-sig") as handle:
        try:
            for line in handle:
                line = line.strip()
                if line:
                    yield line
        except UnicodeDecodeError:
            raise not_utf8_error(source) from None


def sample_lines(sources, max_bytes: int) -> list[list[str]]:
    """The non-empty lines of the first ``max_bytes`` bytes (about) of each source (module docstring): one list per
    document."""
    documents = []
    for source in sources:
        taken, lines = 0, []
        for line in _lines(source):
            lines.append(line)
            taken += len(line) + 1
            if taken >= max_bytes:
                break
        if lines:
            documents.append(lines)
    return documents


def pack_blocks(tokenizer, documents, max_length: int, min_length: int = MIN_BLOCK_LENGTH):
    """Token blocks of at most ``max_length`` ([CLS] … [SEP]) filled from one document at a time; ``documents``:
    iterables of the token ids of their lines (without special tokens). A piece shorter than ``min_length`` (a
    document's last) is dropped."""
    body = max_length - 2
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for lines in documents:
        pending: list[int] = []
        for ids in lines:
            pending.extend(ids)
            full = len(pending) // body * body  # the tokens that fill whole blocks, cut off at once: a line of n
            for start in range(0, full if body >= min_length else 0, body):  # tokens costs O(n), not O(n^2 / body)
                yield [cls, *pending[start : start + body], sep]
            del pending[:full]
        if pending and len(pending) >= min_length:
            yield [cls, *pending, sep]


class StreamedBlocks(SharedEpoch, IterableDataset):
    """Blocks of token ids packed from text files read lazily (module docstring); yields ``{"input_ids",
    "mask_seed"}``: one pass over the sources, or pass after pass with ``endless=True``. ``set_epoch`` selects the
    (first pass's) epoch of the masks."""

    def __init__(self, sources, tokenizer, max_length: int, seed: int, min_length: int = MIN_BLOCK_LENGTH,
                 chunk_lines: int = 1024, endless: bool = False):
        super().__init__()
        self.sources = [Path(p) if isinstance(p, (str, os.PathLike)) else p for p in sources]
        self.tokenizer, self.max_length, self.seed = tokenizer, max_length, seed
        self.min_length, self.chunk_lines, self.endless = min_length, chunk_lines, endless

    def _token_lines(self, source):
        """The token ids of the source's lines, tokenized a chunk of lines at a time (``verbose=False``: a line longer
        than the model's length is cut into blocks, not the "indexing errors" transformers would warn of)."""
        chunk = []
        for line in _lines(source):
            chunk.append(line)
            if len(chunk) == self.chunk_lines:
                yield from self.tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
                chunk = []
        if chunk:
            yield from self.tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]

    def blocks(self):
        """Token blocks of at most ``max_length`` ([CLS] … [SEP]), one document (file or dataset) at a time."""
        documents = (self._token_lines(source) for source in self.sources)
        return pack_blocks(self.tokenizer, documents, self.max_length, self.min_length)

    def __iter__(self):
        worker = get_worker_info()
        shard, shards = (0, 1) if worker is None else (worker.id, worker.num_workers)
        position = 0  # the block's place in the whole stream, all passes together: what shards it
        first = self.epoch
        for epoch in itertools.count(first) if self.endless else (first,):
            index = -1
            for index, block in enumerate(self.blocks()):
                if (position + index) % shards == shard:
                    yield {"input_ids": block, "mask_seed": mask_seed(self.seed, epoch, index)}
            if index < 0 and self.endless:  # an endless stream of nothing would never end
                raise ValueError(f"StreamedBlocks: the sources hold no block of at least {self.min_length} tokens "
                                 f"(max_length {self.max_length}); an endless stream needs one")
            position += index + 1
