"""What every training command changes in transformers' ``Trainer``: mixins placed before ``Trainer`` in a command's
Trainer class (``CommandTrainer`` gathers them; ``lib.token_count.TokenCountingTrainer`` for pretrain,
``lib.finetuning._ordered_evaluation_trainer`` for the fine-tuning commands).

* ``EvaluatesEveryExample``: --dataloader_drop_last drops the last incomplete training batch only, never evaluation
  or prediction examples.
* ``SeededLengthGrouping`` (with ``EpochLengthGroupedSampler``): --group-by-length's order of an epoch drawn from
  (seed, epoch), so a run resumed in a later epoch reads the batches of the uninterrupted one.
* ``ResumedRun``: a finished run resumed takes no step past --max-steps, and tied weights are not reported missing.

Each overrides a private ``Trainer`` method (``_get_dataloader``, ``_get_train_sampler``, ``_run_epoch``,
``_finalize_training``, ``_issue_warnings_after_load``); tests/scripts/test_interrupted_runs.py fails when a
transformers release stops calling them as these overrides expect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)


class EvaluatesEveryExample:
    """A ``Trainer`` mixin (before ``Trainer`` in the bases): --dataloader_drop_last drops the last incomplete
    TRAINING batch only. transformers applies the flag to evaluation and prediction too, which would then score a
    part of the split (a held-out accuracy on fewer blocks), or fail where predictions are matched to the examples
    by position (GLUE labels, NER words)."""

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, is_training=False,
                        dataloader_key=None):
        if is_training or not self.args.dataloader_drop_last:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)
        self.args.dataloader_drop_last = False  # read while the loader is built, and only then
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)
        finally:
            self.args.dataloader_drop_last = True


class SeededLengthGrouping:
    """A ``Trainer`` mixin (before ``Trainer`` in the bases): with --group-by-length
    (``--train_sampling_strategy group_by_length``) each epoch's grouped order is drawn from a generator seeded by
    (--data_seed, else --seed) + epoch, as accelerate seeds the plain random order, so a run resumed from a checkpoint
    in the middle of a later epoch skips to the same batches an uninterrupted run trains on next.

    transformers' ``LengthGroupedSampler`` draws its permutation from torch's global generator when the epoch's
    data loader starts: in an uninterrupted run that generator has gone through the epochs before (dropout), in a
    resumed one it has not, so from the second epoch on the resumed run read other batches and ended with other
    weights (the BiLSTM-CRF and ELMo presets group by length).

    The epoch is set at the start of each epoch's pass (``_run_epoch``, which the Trainer calls with ``epoch=``):
    the Trainer's own ``set_epoch`` calls reach the sampler under accelerate's shard wrapper but not under the skip
    wrapper around it as well, which a run resumed inside an epoch with several processes gets."""

    def _get_train_sampler(self, train_dataset=None):
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is not LengthGroupedSampler:
            return sampler
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        self.grouped_sampler = EpochLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return self.grouped_sampler

    def _run_epoch(self, *args, **kwargs):
        sampler = getattr(self, "grouped_sampler", None)
        if sampler is not None:
            sampler.set_epoch(kwargs["epoch"] if "epoch" in kwargs else args[1])
        return super()._run_epoch(*args, **kwargs)


class ResumedRun:
    """A ``Trainer`` mixin (before ``Trainer`` in the bases) for runs resumed from a checkpoint: one that has already
    trained its --max-steps takes no further step, and tied weights are not reported missing.

    The Trainer checks the step budget only after a step (its flow callback stops training once ``global_step``
    reaches ``max_steps``), so resuming a finished run trained one more step, on the next batch, and wrote a
    checkpoint past --max-steps: at the linear schedule's learning rate of 0 nothing moved, with --lr_scheduler_type
    constant the weights did. Here the epoch's pass (``_run_epoch``) is not entered when the budget is spent: the
    checkpoint's weights are the result, then training ends as usual (the best checkpoint loaded where
    --load_best_model_at_end asks, the callbacks' ``on_train_end``). A call that trained no step returns a
    ``training_loss`` of None, not the Trainer's 0."""

    def _run_epoch(self, *args, **kwargs):
        if 0 < self.state.max_steps <= self.state.global_step:
            checkpoint = kwargs.get("resume_from_checkpoint") or "the checkpoint"
            logger.warning(f"{checkpoint} has trained {self.state.global_step} steps and --max-steps is "
                           f"{self.state.max_steps}: nothing is left to train (raise --max-steps to train on)")
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def _finalize_training(self, *args, **kwargs):
        output = super()._finalize_training(*args, **kwargs)
        if self.state.global_step == getattr(self, "_initial_global_step", None):
            return output._replace(training_loss=None)  # no step in this call: no mean loss (the Trainer says 0)
        return output

    def _issue_warnings_after_load(self, load_result):
        """The Trainer warns of every weight a resumed checkpoint lacks, the tied ones too (a masked-LM head's
        decoder is the word embeddings, which checkpoints save once): "There were missing keys in the checkpoint
        model loaded: ['lm_head.decoder.weight']" at every resume, though nothing is missing. A weight that shares
        its storage with one the checkpoint held is left out of the warning; any other still warns."""
        missing = set(load_result.missing_keys)
        if missing:
            weights = dict(self.model.named_parameters(remove_duplicate=False))
            loaded = {weight.data_ptr() for name, weight in weights.items() if name not in missing}
            tied = {name for name in missing if name in weights and weights[name].data_ptr() in loaded}
            load_result = load_result._replace(missing_keys=[k for k in load_result.missing_keys if k not in tied])
        return super()._issue_warnings_after_load(load_result)


class EpochLengthGroupedSampler:
    """transformers' ``get_length_grouped_indices`` over ``lengths`` in groups of ``batch_size`` (mega-batches
    shuffled, sorted by length inside), drawn from a generator seeded by ``seed + epoch``: ``set_epoch(epoch)``
    (which the Trainer calls at the start of every epoch, the resumed one too) selects the epoch."""

    def __init__(self, batch_size: int, lengths: Sequence[int], seed: int):
        self.batch_size, self.lengths, self.seed, self.epoch = batch_size, list(lengths), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class CommandTrainer(ResumedRun, SeededLengthGrouping, EvaluatesEveryExample):
    """The mixins of this module together, before ``Trainer`` in a command's Trainer class."""
