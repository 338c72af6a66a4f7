r"""Word dropout as Lample et al. (2016) train their BiLSTM-CRF ("singleton replacement"): during training, each
occurrence of a word seen once in the training data becomes the unknown word with probability p, while its
characters stay.

A word+character model embeds each word twice: its row of the word embeddings and its characters. A word seen once
in training (a *singleton*) has a row that learns from one sentence only, and at test time the words the model has
never seen are all [UNK], whose row training would otherwise hardly touch. Replacing singletons by [UNK] now and then
trains the [UNK] row, and the characters beside it, to stand for a word the vocabulary does not know:

    S = { w : w is not a special token, count(w) = 1 }        count over the training examples' input_ids
    x'_t = [UNK]   if x_t in S and u_t < p                    u_t ~ U[0, 1), t = 1..n, drawn from generator(seed, e, i)
    x'_t = x_t     otherwise

for example i (its position in the training set, ids x_1..x_n) in epoch e. Words are counted by their ids, i.e. after
the tokenizer's normalisation (the bizoo preset lowercases and maps digits to 0), since the id is what the word
embedding is looked up by: "Paris" and "paris" are one word. ``char_ids``, ``labels`` and ``attention_mask`` are
left as they are: a replaced word keeps its characters and its tag.

The draws belong to the example, as the masks of ``lib.masking`` do: the generator is seeded by (seed, epoch, index)
alone, so the replacements do not depend on the batch an example falls into, on the number of processes, or on a
run having been stopped and resumed from a checkpoint; a new epoch draws anew. Only the training set is wrapped
(``WordDropoutExamples``): evaluation and prediction read the examples as they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from .masking import SeededExamples

__all__ = ["WORD_DROPOUT_SALT", "dropout_generator", "singleton_ids", "drop_words", "WordDropoutExamples"]

#: Mixed into every generator seed, so word dropout never draws the numbers ``lib.masking`` draws for the same
#: (seed, epoch, index).
WORD_DROPOUT_SALT = 0x776F7264  # "word"

_UINT64 = (1 << 64) - 1


def dropout_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of example ``index`` in ``epoch`` for ``seed`` (any integer, negative ones too)."""
    return np.random.default_rng([WORD_DROPOUT_SALT, seed & _UINT64, epoch & _UINT64, index & _UINT64])


def singleton_ids(examples: Iterable[dict], special_ids: Iterable[int]) -> np.ndarray:
    """(S,) the sorted ids that occur exactly once over the ``input_ids`` of ``examples``, special ids excluded."""
    counts: Counter[int] = Counter()
    for example in examples:
        counts.update(int(token) for token in example["input_ids"])
    special = set(int(token) for token in special_ids)
    return np.array(sorted(t for t, c in counts.items() if c == 1 and t not in special), dtype=np.int64)


def drop_words(input_ids: Sequence[int], singletons: np.ndarray, unk_id: int, probability: float,
               generator: np.random.Generator) -> list[int]:
    """``input_ids`` with each id of ``singletons`` replaced by ``unk_id`` with ``probability`` (module docstring).
    One uniform draw per position, singleton or not, so the draws of a position do not depend on the others'."""
    ids = np.asarray(input_ids, dtype=np.int64)  # (n,)
    draws = generator.random(ids.shape[0])  # (n,) u_t
    replaced = np.isin(ids, singletons) & (draws < probability)  # (n,)
    return np.where(replaced, unk_id, ids).tolist()


class WordDropoutExamples(SeededExamples):
    """The training examples with word dropout: ``examples[index]`` with its ``input_ids`` passed through
    ``drop_words`` with the generator of (seed, current epoch, index); every other key as it is.

    The examples, the seed and the running epoch are ``lib.masking.SeededExamples``' (``EpochCallback`` calls its
    ``set_epoch`` when the Trainer begins an epoch, the resumed one too). The singletons are counted once, over all the examples given.

    Args:
        examples: the training features (dicts with ``input_ids``; indexable, with a length).
        unk_id: the id of the unknown word.
        special_ids: ids never replaced and never counted (padding, [UNK], [MASK], sentence boundaries).
        probability: p in [0, 1].
        seed: the run's seed.
    """

    def __init__(self, examples, unk_id: int, special_ids: Iterable[int], probability: float, seed: int):
        if not 0 <= probability <= 1:
            raise ValueError(f"WordDropoutExamples: probability must be in [0, 1], got {probability}")
        if isinstance(unk_id, bool) or not isinstance(unk_id, int):
            raise ValueError(f"WordDropoutExamples: unk_id must be a token id (int), got {unk_id!r}")
        super().__init__(examples, int(seed))
        self.unk_id, self.probability = unk_id, float(probability)
        self.singletons = singleton_ids(examples, [*special_ids, unk_id])  # (S,)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        generator = dropout_generator(self.seed, self.epoch, index)
        ids = drop_words(example["input_ids"], self.singletons, self.unk_id, self.probability, generator)
        return {**example, "input_ids": ids}
