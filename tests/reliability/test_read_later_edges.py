"""Edges of the value checks read later (``modeling/value_checks.py``), with the tensors taken for GPU tensors
(``dispatch.values_on_host`` patched) and their numbers still on their way (``_landed`` patched), as on a busy GPU:

* a check that nothing reads before the program ends (a bad value in the last batch of a loop that never calls
  ``wait_for_input_checks()``, as ``Trainer.train/evaluate/predict`` do not) is read at exit and its error logged,
  not lost without a word;
* two bad calls in flight before a check: the error raised names both bad inputs (the later one is not dropped
  unread), once; a caller that catches it goes on with nothing left to raise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from bizoo.modeling import value_checks

SCRIPT = textwrap.dedent("""
    import torch
    from transformers import AutoModelForSequenceClassification

    import bizoo
    from bizoo.kernels import dispatch
    from bizoo.modeling import value_checks

    dispatch.values_on_host = lambda tensor: False  # taken for GPU tensors
    value_checks._landed = lambda pending: False  # the numbers still on their way when the loop ends
    config = bizoo.LionConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=64, num_labels=3)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(input_ids=ids, labels=torch.tensor([1, 7]))  # the last batch of a loop: label 7 of 0..2
""")


def test_a_check_nothing_read_before_the_exit_is_read_then_and_its_error_logged():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "labels hold 7; allowed are 0..2 and -100 (ignored)" in done.stderr, done.stderr[-2000:]
    assert "call bizoo.wait_for_input_checks() at the end of a loop" in done.stderr


def test_the_exit_message_names_the_function_where_the_program_can_call_it(make_config, monkeypatch, caplog,
                                                                          as_on_a_gpu):
    """The message logged at exit names ``bizoo.wait_for_input_checks()``; in the copy of the module that an export
    ships (a model loaded with trust_remote_code, perhaps without bizoo installed) the copy's own module, which the
    program imported, not a bizoo the program may not have."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(make_config(("lion", "d"), num_labels=3)).eval()
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    for module, expected in (("bizoo.modeling.value_checks", "bizoo"),
                             ("transformers_modules.org.lion.modeling_value_checks",
                              "transformers_modules.org.lion.modeling_value_checks")):
        value_checks.discard_input_checks()
        monkeypatch.setattr(value_checks, "__name__", module)
        with torch.no_grad():
            model(input_ids=ids, labels=torch.tensor([1, 7]))  # queued, unread
        caplog.clear()
        value_checks._read_unread_at_exit()
        assert f"call {expected}.wait_for_input_checks() at the end of a loop" in caplog.text, caplog.text


def test_two_bad_calls_in_flight_are_both_named_by_the_error_none_dropped(make_config, monkeypatch, as_on_a_gpu):
    from transformers import AutoModelForSequenceClassification

    landed = []  # empty: the numbers are still on their way
    monkeypatch.setattr(value_checks, "_landed", lambda pending: bool(landed))  # as_on_a_gpu's, made switchable
    model = AutoModelForSequenceClassification.from_config(make_config(("lion", "d"), num_labels=3)).eval()
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    bad_ids = ids.clone()
    bad_ids[0, 0] = 500
    with torch.no_grad():
        model(input_ids=ids, labels=torch.tensor([1, 7]))  # a bad label
        model(input_ids=bad_ids, labels=torch.tensor([1, 2]))  # then a bad id, before the first is read
        landed.append(True)
        first = r"^LionForSequenceClassification: labels hold 7; allowed are 0\.\.2"
        with pytest.raises(ValueError, match=first) as info:
            model(input_ids=ids, labels=torch.tensor([1, 2]))
        assert r"input_ids holds 500, outside [0, vocab_size=120)" in str(info.value)
        assert str(info.value).count("labels hold 7") == 1
        assert value_checks.discard_input_checks() == 0  # raised once: nothing left for a later call
        model(input_ids=ids, labels=torch.tensor([1, 2]))
    value_checks.wait_for_input_checks()


@pytest.mark.parametrize("phase", ["train", "evaluate", "predict"])
def test_the_commands_trainer_callback_raises_a_bad_last_batch_at_the_end_of_its_phase(make_config, tmp_path, phase,
                                                                                       as_on_a_gpu):
    """The bizoo commands' ``input_checks_callback``: a bad label in the LAST batch of training, of an evaluation or
    of a prediction (read later, numbers still on their way) is raised when the Trainer ends that phase, not lost;
    without the callback the same run ends without a word."""
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from bizoo.scripts.lib.training import input_checks_callback

    model = AutoModelForSequenceClassification.from_config(make_config(("lion", "d"), num_labels=3))
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(5, 100, (6,), generator=generator), "labels": torch.tensor(label)}
            for label in (0, 1, 2, 7)]  # label 7 of 0..2 in the last batch (batch size 2)
    settings = TrainingArguments(str(tmp_path), per_device_train_batch_size=2, per_device_eval_batch_size=2,
                                 max_steps=2, report_to=[], save_strategy="no", use_cpu=True,
                                 dataloader_drop_last=False)

    def run(callbacks):
        trainer = Trainer(model=model, args=settings, train_dataset=rows, eval_dataset=rows, callbacks=callbacks)
        trainer.train() if phase == "train" else trainer.evaluate() if phase == "evaluate" else trainer.predict(rows)

    with torch.no_grad() if phase != "train" else torch.enable_grad():
        run([])  # no callback: nothing read, nothing raised
    assert value_checks.discard_input_checks() > 0
    with pytest.raises(ValueError, match=r"labels hold 7; allowed are 0\.\.2"):
        run([input_checks_callback()])
    assert value_checks.discard_input_checks() == 0
