"""On a CUDA device: bad ids are a ValueError read back without a host sync (the call runs on the ids clamped
into their table, never a device-side assert; the error comes with the next call or ``wait_for_input_checks``), an
eager training step of every model and head synchronises nothing (and neither do ``bizoo pretrain``'s Trainer steps
between logs), and every model runs forward and backward in fp16
and bf16 with finite outputs close to fp32.

Skipped without a GPU (the CPU counterparts are in test_bad_inputs_models.py, test_checks_read_later.py,
tests/modeling/test_no_sync.py and test_numerical_edges.py).
"""

import pytest
import torch
from transformers import AutoModelForMaskedLM

import bizoo
from tests.modeling.test_no_sync import HEADS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
V = 120


def _inputs(model_case, make_inputs, batch=3, length=40):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 29:] = 0  # one padded row
    inputs = make_inputs(model_case, ids, mask)
    return {k: v.cuda() for k, v in inputs.items()}


@pytest.mark.parametrize("where", ["input_ids", "char_ids"])
def test_ids_outside_the_table_are_a_value_error_on_cuda(model_case, make_config, make_inputs, where):
    inputs = _inputs(model_case, make_inputs)
    if where not in inputs:
        pytest.skip(f"{model_case[0]} reads no {where}")
    model = AutoModelForMaskedLM.from_config(make_config(model_case, vocab_size=V)).cuda().eval()
    bizoo.wait_for_input_checks()  # nothing left from before
    good = dict(inputs)
    inputs[where] = inputs[where].clone()
    inputs[where][0, 3] = 10_000  # past any table of the tiny configuration
    model(**inputs)  # runs, on the ids clamped into the table
    with pytest.raises(ValueError, match=rf"{where} holds 10000, outside \[0, .*read back from cuda"):
        bizoo.wait_for_input_checks()
    inputs[where][0, 3] = -1
    model(**inputs)
    torch.cuda.synchronize()  # the check's numbers have landed: the next call's first check reads them
    with pytest.raises(ValueError, match=rf"{where} holds -1, outside \[0, "):
        model(**good)
    model(**good)  # raised once; the model runs on
    torch.cuda.synchronize()  # the device is still usable: no assert fired
    assert torch.ones(1, device="cuda").item() == 1.0
    bizoo.wait_for_input_checks()


@pytest.mark.parametrize("head", ["masked-lm", "sequence", "token", "token-crf"])
def test_an_eager_training_step_on_cuda_has_no_host_sync(model_case, make_config, make_inputs, head):
    """``torch.cuda.set_sync_debug_mode("error")`` over a whole training step (forward with the input checks, loss,
    backward) after a first step (lazy initialisation, kernel tuning)."""
    auto, fields, make_labels = HEADS[head]
    model = auto.from_config(make_config(model_case, **fields)).cuda().train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (3, 40), generator=g)
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[1, 29:] = 0
    inputs = {k: v.cuda() for k, v in make_inputs(model_case, ids.masked_fill(mask == 0, 0), mask,
                                                   labels=make_labels(ids, mask)).items()}
    model(**inputs).loss.backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(**inputs).loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    bizoo.wait_for_input_checks()


def test_pretrains_trainer_steps_on_cuda_have_no_host_sync(tmp_path):
    """``bizoo pretrain``'s Trainer (the tokens counted on the device) with bizoo's defaults on a GPU (batches copied
    from pinned memory without blocking, no NaN filter), the masked-LM head dense: every step that neither logs,
    evaluates nor saves, from the end of the step before (the next batch's copy included), runs under
    ``torch.cuda.set_sync_debug_mode("error")``."""
    from tests.scripts.test_token_count import Window, run

    def watch(on):
        torch.cuda.set_sync_debug_mode("error" if on else 0)

    window = Window(watch)
    try:
        trainer = run(tmp_path, own_count=False, callbacks=[window], use_cpu=False, dataloader_pin_memory=True,
                      accelerator_config={"non_blocking": True}, logging_nan_inf_filter=False, logging_steps=4)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert window.steps == 5 and trainer.state.num_input_tokens_seen > 0
    bizoo.wait_for_input_checks()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_autocast_is_finite_and_close_to_fp32(model_case, make_config, make_inputs, dtype):
    model = AutoModelForMaskedLM.from_config(make_config(model_case, vocab_size=V)).cuda().eval()
    inputs = _inputs(model_case, make_inputs)
    labels = torch.full(inputs["attention_mask"].shape, -100, device="cuda")
    labels[:, ::5] = inputs["input_ids"][:, ::5]
    reference = model(**inputs, labels=labels)
    with torch.autocast("cuda", dtype=dtype):
        out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss), f"{model_case[0]}: loss {out.loss}"
    assert torch.isfinite(out.logits).all()
    assert abs(out.loss.float() - reference.loss).item() < 5e-2 * max(1.0, reference.loss.item())
    out.loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
