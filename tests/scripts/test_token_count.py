"""``lib.token_count.TokenCountingTrainer``: the tokens trained on, counted as the Trainer's own ``"non_padding"``
count does (the oracle: the same run with transformers' count, and a brute-force sum over the data), but read back
only where logged or saved; with bizoo's default ``logging_nan_inf_filter=False``, a training step reads nothing back
(on a CPU the reads a GPU would wait for are recorded as the operators they dispatch)."""

import collections
import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForMaskedLM, Trainer, TrainerCallback, TrainingArguments

from bizoo import LionConfig
from bizoo.scripts.lib.token_count import TokenCountingTrainer

# operators that read a tensor's value back to the host (a synchronisation on a GPU)
READS = {"_local_scalar_dense", "is_nonzero", "equal", "nonzero"}


def examples(n: int = 32, length: int = 12):
    """Masked-LM examples with right padding of every length from none to most of the row."""
    g = torch.Generator().manual_seed(0)
    data = []
    for i in range(n):
        real = length - i % (length - 2)
        ids = torch.randint(5, 100, (length,), generator=g)
        mask = (torch.arange(length) < real).long()
        labels = torch.where((torch.arange(length) % 3 == 0) & (mask == 1), ids, -100)
        data.append(dict(input_ids=ids * mask, attention_mask=mask, labels=labels))
    return data


def model():
    torch.manual_seed(0)
    config = LionConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, sparse_prediction=False)
    return AutoModelForMaskedLM.from_config(config)


def arguments(tmp_path, own_count: bool, **fields):
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=8, logging_steps=3,
                  save_strategy="no", report_to=[], use_cpu=True, seed=0, data_seed=0, disable_tqdm=True,
                  include_num_input_tokens_seen="non_padding" if own_count else "no")
    return TrainingArguments(**{**values, **fields})


def run(tmp_path, own_count: bool, resume=None, callbacks=(), **fields):
    cls = Trainer if own_count else TokenCountingTrainer
    trainer = cls(model=model(), args=arguments(tmp_path, own_count, **fields), train_dataset=examples(),
                  callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_the_count_is_the_trainers_own_at_every_log_and_the_whole_data_after_an_epoch(tmp_path):
    ours = run(tmp_path / "ours", own_count=False)
    theirs = run(tmp_path / "theirs", own_count=True)
    logged = [(e["step"], e["num_input_tokens_seen"]) for e in ours.state.log_history]
    assert logged == [(e["step"], e["num_input_tokens_seen"]) for e in theirs.state.log_history]
    assert [step for step, _ in logged] == [3, 6, 8]  # two periodic logs and the final metrics
    whole = sum(int(e["attention_mask"].sum()) for e in examples())  # 8 steps of 4: one epoch of the 32 examples
    assert ours.state.num_input_tokens_seen == whole == logged[-1][1]
    assert 0 < logged[0][1] < logged[1][1] < whole
    # the entries the Trainer's own count writes, tokens per second included
    assert [set(e) for e in ours.state.log_history] == [set(e) for e in theirs.state.log_history]
    assert ours.state.log_history[0]["train_tokens_per_second"] > 0


def test_a_checkpoint_holds_the_count_and_a_resumed_run_goes_on_from_it(tmp_path):
    fields = dict(save_strategy="steps", save_steps=5, logging_steps=100)
    theirs = run(tmp_path / "theirs", own_count=True, **fields)
    run(tmp_path / "ours", own_count=False, **fields)
    saved = json.loads((tmp_path / "ours" / "checkpoint-5" / "trainer_state.json").read_text())
    expected = json.loads((tmp_path / "theirs" / "checkpoint-5" / "trainer_state.json").read_text())
    assert saved["num_input_tokens_seen"] == expected["num_input_tokens_seen"] > 0  # settled before the save
    resumed = run(tmp_path / "ours", own_count=False, resume=str(tmp_path / "ours" / "checkpoint-5"), **fields)
    assert resumed.state.num_input_tokens_seen == theirs.state.num_input_tokens_seen
    assert resumed.state.log_history[-1]["num_input_tokens_seen"] == theirs.state.num_input_tokens_seen


class Reads(TorchDispatchMode):
    """The value reads made while ``Window`` has it on."""

    def __init__(self):
        super().__init__()
        self.on, self.per_step = False, collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.on and func.overloadpacket.__name__ in READS:
            self.per_step[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


class Window(TrainerCallback):
    """Switches ``watch(on)`` on from the end of a step that neither logs, evaluates nor saves to the end of the
    next step: the next batch's fetch and copy to the device, the whole step, its callbacks before this one. Steps
    that log are outside (their reads are where the count is read: once per log)."""

    def __init__(self, watch):
        self.watch, self.steps, self.on = watch, 0, False

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += self.on
        reads = control.should_log or control.should_evaluate or control.should_save
        self.on = not reads and state.global_step < args.max_steps - 1
        self.watch(self.on)


@pytest.mark.parametrize("counting", ["ours", "the Trainer's"])
def test_a_training_step_reads_nothing_back(tmp_path, counting, as_on_a_gpu):
    """The models' value checks as for GPU tensors (read later), the masked-LM head dense: no step reads a value
    back with our count and bizoo's default filter setting; the Trainer's own count and its NaN filter read three
    per step (what this test would see if either came back)."""
    reads = Reads()
    window = Window(lambda on: setattr(reads, "on", on))
    own = counting == "the Trainer's"
    with reads:
        run(tmp_path, own_count=own, callbacks=[window], logging_nan_inf_filter=own, logging_steps=4)
    assert window.steps == 5  # steps 2, 3, 4, 6, 7 (each from the end of the step before)
    assert dict(reads.per_step) == ({"_local_scalar_dense": 3 * window.steps} if own else {})


def test_the_trainers_own_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match="leave include_num_input_tokens_seen off"):
        TokenCountingTrainer(model=model(), args=arguments(tmp_path, own_count=True), train_dataset=examples())
