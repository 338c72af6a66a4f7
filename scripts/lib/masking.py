r"""Masked-LM training data whose randomness belongs to the examples, not to the process.

A stock masking collator draws its masks from the process's random stream. Then the masks of an example depend on
what was drawn before it: on how many processes share the batch (DDP), on the batch it falls into, and on whether
the data loader collated a batch ahead before a checkpoint saved the random state (a resumed run then masks
differently from an uninterrupted one). Here every example draws from its own generator, seeded by

    mask_seed = SeedSequence([seed, epoch, index])          index: the example's position in the training set

so its masks are a function of (seed, epoch, example) alone: a run on one process with batch 2B, a run on two
processes with batch B each, and a run killed and resumed from a checkpoint mask every example the same way (new
masks every epoch, as dynamic masking wants).

The epoch sits in shared memory (``SharedEpoch``): data-loader workers hold copies of the dataset, made when their
iterator starts, and persistent workers (``--dataloader_persistent_workers``) keep theirs from epoch to epoch; a
plain attribute set in the main process would leave them masking every epoch as the first.

Masking (BERT's): each maskable token (not special, not padding) is chosen with probability p; with
``whole_word=True`` each *word* is chosen with probability p and all its pieces go together (a WordPiece token
starting with the model's continuation prefix, "##", continues the word before it; word+character tokenizers have one
token per word; a tokenizer whose pieces mark no continuation, BPE or SentencePiece, is refused rather than masked
piece by piece: ``continuation_prefix``). A chosen token
becomes [MASK] with probability 0.8, a random token with 0.1, and stays with 0.1; its label is the original id,
every other label is -100. Word+character examples (``char_ids``) give a replaced word its replacement's characters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback

__all__ = [
    "SeededExamples", "SeededMaskingCollator", "EpochCallback", "SharedEpoch", "continuation_prefix", "mask_seed",
    "mask_example", "word_ids", "word_starts",
]


def mask_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit generator seed for (seed, epoch, index), well mixed (numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SharedEpoch:
    """The running epoch of a dataset, in shared memory: ``set_epoch`` in the main process reaches the copies of the
    dataset that data-loader workers hold, persistent ones included (module docstring). A base class: the subclass
    calls ``__init__`` and reads ``self.epoch``."""

    def __init__(self):
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # () shared with forked or spawned workers

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))


class SeededExamples(SharedEpoch, Dataset):
    """The training examples, each returned with its ``mask_seed`` for the current epoch (``set_epoch``)."""

    def __init__(self, examples: list[dict], seed: int):
        super().__init__()
        self.examples, self.seed = examples, seed

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return {**self.examples[index], "mask_seed": mask_seed(self.seed, self.epoch, index)}


class EpochCallback(TrainerCallback):
    """Tell the ``SeededExamples`` which epoch starts (also the epoch a resumed run starts in)."""

    def __init__(self, dataset: SeededExamples):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-6))


def continuation_prefix(tokenizer) -> str | None:
    """What marks a piece that continues the word before it, for whole-word masking: the WordPiece model's
    ``continuing_subword_prefix`` ("##"); None for a word+character tokenizer (one token per word). ``ValueError``
    for a tokenizer whose pieces carry no such mark (BPE, SentencePiece, ...): every piece would pass for a word, and
    whole-word masking would silently mask piece by piece."""
    if getattr(tokenizer, "ids_to_char_ids", None) is not None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a Python (slow) tokenizer: BERT's WordPiece is the one that splits words into "##" pieces
        return "##"
    prefix = getattr(backend.model, "continuing_subword_prefix", None)
    if not prefix:
        raise ValueError(
            f"whole-word masking finds words by the continuation prefix of WordPiece pieces ('##'); the tokenizer "
            f"{type(tokenizer).__name__} is a {type(backend.model).__name__} model, whose pieces mark none: use a "
            "WordPiece tokenizer, or mask single tokens"
        )
    return prefix


def word_starts(tokenizer, ids: list[int]) -> torch.Tensor:
    """(n,) True where a token starts a word: every token, except continuations ("##…": ``continuation_prefix``)."""
    prefix = continuation_prefix(tokenizer)
    if prefix is None:  # word+character: one token per word
        return torch.ones(len(ids), dtype=torch.bool)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return torch.tensor([not piece.startswith(prefix) for piece in pieces], dtype=torch.bool)


def word_ids(tokenizer, ids: list[int], special: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(word (n,) each token's word index, starts (n,) bool) for whole-word masking: a word starts at every
    ``word_starts`` token and at every ``special`` one (a special token never continues a word)."""
    starts = word_starts(tokenizer, ids) | special  # (n,)
    return torch.cumsum(starts.long(), 0) - 1, starts


def mask_example(ids: list[int], special: list[int], seed: int, tokenizer, probability: float, whole_word: bool):
    """One example's masked ``input_ids`` and ``labels`` (lists), drawn from ``seed`` alone (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    n = len(ids)
    ids_t = torch.tensor(ids, dtype=torch.long)  # (n,)
    maskable = ~torch.tensor(special, dtype=torch.bool)  # (n,)
    if whole_word:
        word, _ = word_ids(tokenizer, ids, ~maskable)  # (n,) each token's word
        chosen_word = torch.rand(int(word[-1]) + 1 if n else 0, generator=g) < probability
        chosen = chosen_word[word] & maskable if n else maskable
    else:
        chosen = (torch.rand(n, generator=g) < probability) & maskable  # (n,)
    action = torch.rand(n, generator=g)  # (n,) < 0.8: [MASK]; < 0.9: a random token; else unchanged
    random_ids = torch.randint(len(tokenizer), (n,), generator=g)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids_t, tokenizer.mask_token_id), ids_t)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    labels = torch.where(chosen, ids_t, torch.full_like(ids_t, -100))
    return inputs.tolist(), labels.tolist()


class SeededMaskingCollator:
    """Masks each example with its own ``mask_seed`` (from ``SeededExamples``), then pads the batch: input_ids,
    attention_mask and ``char_ids`` by ``tokenizer.pad``, labels with -100."""

    def __init__(self, tokenizer, probability: float = 0.15, whole_word: bool = False, padding: dict | None = None):
        from transformers import DataCollatorForTokenClassification

        if tokenizer.mask_token_id is None:
            raise ValueError("SeededMaskingCollator: the tokenizer has no mask token; masked-LM needs one")
        if not 0 < probability < 1:
            raise ValueError(f"SeededMaskingCollator: the masking probability must be in (0, 1), got {probability}")
        if whole_word:
            continuation_prefix(tokenizer)  # a tokenizer without word boundaries is refused now, not at a batch
        self.tokenizer, self.probability, self.whole_word = tokenizer, probability, whole_word
        # pads labels with -100; ``padding``: the collator's padding keywords (--pad_to_max_length's). The masks are
        # drawn per example before padding: the same ones at any padded length
        self.padding = DataCollatorForTokenClassification(tokenizer, **(padding or {}))

    def __call__(self, examples: list[dict]) -> dict:
        batch = []
        for example in examples:
            if "mask_seed" not in example:
                raise ValueError("SeededMaskingCollator: the examples carry no mask_seed (wrap them in SeededExamples)")
            ids = list(example["input_ids"])
            special = self.tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
            inputs, labels = mask_example(ids, special, example["mask_seed"], self.tokenizer, self.probability,
                                          self.whole_word)
            masked = {"input_ids": inputs, "labels": labels}
            if "char_ids" in example:  # a replaced word takes its replacement's characters
                masked["char_ids"] = self._replace_chars(np.asarray(example["char_ids"]), ids, inputs)
            batch.append(masked)
        return self.padding(batch)

    def _replace_chars(self, chars: np.ndarray, ids: list[int], inputs: list[int]) -> np.ndarray:
        changed = [t for t, (a, b) in enumerate(zip(ids, inputs)) if a != b]
        if not changed:
            return chars
        rows = self.tokenizer.ids_to_char_ids([inputs[t] for t in changed])  # one row per replaced word
        width = max(chars.shape[1], max(len(r) for r in rows))
        out = np.zeros((chars.shape[0], width), dtype=chars.dtype)  # (tokens, W), 0 = character padding
        out[:, : chars.shape[1]] = chars
        for t, row in zip(changed, rows):
            out[t] = 0
            out[t, : len(row)] = row
        return out
