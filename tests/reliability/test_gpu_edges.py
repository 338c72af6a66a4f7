"""On a CUDA device: bad ids are a ValueError before any kernel runs (never a device-side assert), and every model
runs forward and backward in fp16 and bf16 with finite outputs close to fp32.

Skipped without a GPU (the CPU counterparts are in test_bad_inputs_models.py and test_numerical_edges.py).
"""

import pytest
import torch
from transformers import AutoModelForMaskedLM

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
    inputs[where] = inputs[where].clone()
    inputs[where][0, 3] = 10_000  # past any table of the tiny configuration
    with pytest.raises(ValueError, match=rf"{where} holds 10000, outside \[0, "):
        model(**inputs)
    inputs[where][0, 3] = -1
    with pytest.raises(ValueError, match=rf"{where} holds -1, outside \[0, "):
        model(**inputs)
    torch.cuda.synchronize()  # the device is still usable: no assert fired
    assert torch.ones(1, device="cuda").item() == 1.0


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
