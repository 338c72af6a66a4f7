"""The tokens trained on, counted without reading the count back at every step.

``TrainingArguments(include_num_input_tokens_seen=...)`` makes the ``Trainer`` add each batch's token count to
``state.num_input_tokens_seen`` as a Python int: a ``.item()`` at every step, which on a GPU waits for every kernel
queued before it (a host synchronisation: the GPU then idles while the host queues the next step). Here the count
stays on the device between the steps that log, evaluate or save:

    counted ← counted + Σ attention_mask     (every training batch, a 0-d tensor on the batch's device; no read)
    state.num_input_tokens_seen += Σ_processes counted,  counted ← 0     (``settle``: one read, then only)

``settle`` runs where the count is read: in every ``log`` (so each log entry, training or evaluation, carries
``num_input_tokens_seen``), at the end of a step or epoch that saves a checkpoint (so its ``trainer_state.json`` holds
the exact count and a resumed run continues from it), and at the end of training. Every process of a distributed run
settles at the same steps (the Trainer's own logging is collective too).

What is counted: the non-padding tokens (``attention_mask``'s sum) of every training batch, as the Trainer's
``"non_padding"``; the whole batch (``numel`` of the model's main input, a host-side number) for a batch without a
mask. ``train_tokens_per_second`` is logged beside the training runtime as the Trainer logs it.
"""

from __future__ import annotations

import time

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import speed_metrics

from .trainer_mixins import CommandTrainer

__all__ = ["TokenCountingTrainer"]


class TokenCountingTrainer(CommandTrainer, Trainer):
    """A ``Trainer`` whose ``state.num_input_tokens_seen`` counts the non-padding tokens trained on, read back only
    where it is logged or saved (module docstring). ``include_num_input_tokens_seen`` must stay off: the Trainer's
    own count would read it back every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.include_num_input_tokens_seen not in ("no", False):
            raise ValueError(
                "TokenCountingTrainer counts the tokens itself: leave include_num_input_tokens_seen off (it is "
                f"{self.args.include_num_input_tokens_seen!r}), or its per-step count reads the device every step"
            )
        self._counted: torch.Tensor | int = 0  # tokens since the last settle: a 0-d device tensor, or 0
        self._train_start = (0, time.time())  # (tokens, time) when this train() began
        self.add_callback(_SettleWhereRead(self))

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            self._counted = self._counted + mask.sum()  # () on the batch's device: queued, not read
        else:
            self._counted = self._counted + inputs[self.model.main_input_name].numel()
        return super().training_step(model, inputs, num_items_in_batch)

    def settle(self) -> int:
        """Add the tokens counted on the device since the last call to ``state.num_input_tokens_seen`` (one read,
        summed over the processes); returns the total."""
        if not isinstance(self._counted, torch.Tensor) and self._counted == 0:  # nothing since the last settle
            return self.state.num_input_tokens_seen  # (the same on every process: they settle at the same steps)
        counted = torch.as_tensor(self._counted, device=self.args.device).reshape(1)  # (1,)
        self.state.num_input_tokens_seen += int(self.accelerator.gather(counted).sum().item())
        self._counted = 0
        return self.state.num_input_tokens_seen

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs["num_input_tokens_seen"] = self.settle()
        if start_time is not None:
            tokens = self.state.num_input_tokens_seen - self._train_start[0]
            logs.update(speed_metrics("train", start_time, num_tokens=tokens))
        super().log(logs, start_time)


class _SettleWhereRead(TrainerCallback):
    """Settles the count of its trainer at the end of a step or an epoch that saves (logging and evaluation settle in
    ``log``), and at the end of training; notes where a train() call began (after a checkpoint's state was loaded)."""

    def __init__(self, trainer: TokenCountingTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._train_start = (state.num_input_tokens_seen, time.time())

    def _settle_if_saving(self, control) -> None:
        if control.should_save:
            self.trainer.settle()

    def on_step_end(self, args, state, control, **kwargs):
        self._settle_if_saving(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._settle_if_saving(control)

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer.settle()
