"""The value checks of inputs on a GPU, read later (``modeling/value_checks.py``), run here on the CPU with the
tensors taken for GPU tensors (``dispatch.values_on_host`` patched):

* every bad *value* that ``test_bad_inputs_models.py`` tries (ids outside their table, masks that are not 0/1, NaN
  embeddings, labels outside the label set, rows longer than the positions) lets the call run to its end on the
  input made safe (finite outputs; no layer is given an id outside its table) and is then raised as the same
  ``ValueError``, message and all, by ``wait_for_input_checks()``; a bad shape or dtype is still raised at once;
* the input made safe is what the call computed with: ids clamped into their table, bad labels ignored;
* a check whose numbers have landed is raised by the next checked call (and only once), after which the model runs
  on; a good input leaves nothing to raise.
"""

from __future__ import annotations

import pytest
import torch

import bizoo
from bizoo.kernels import dispatch
from bizoo.modeling import value_checks
from tests.reliability.test_bad_inputs_models import (
    BAD_LABELS,
    BAD_MODEL_INPUTS,
    HEADS,
    Context,
    family_prefix,
    labels_params,
    model_inputs_params,
    tiny_fields,
)

# The cases of test_bad_inputs_models.py that are about values (the rest, shapes, dtypes and options, are raised at
# once in every mode).
VALUE_INPUTS = {
    "input-id-too-large", "input-id-negative", "attention-mask-2", "attention-mask-minus-1", "attention-mask-0.5",
    "token-type-id-outside-the-table", "char-id-too-large", "char-id-negative", "inputs-embeds-nan",
    "inputs-embeds-inf", "longer-than-the-learned-positions",
}
VALUE_LABELS = {
    "masked-lm-id-too-large", "masked-lm-id-negative", "bidirectional-lm-id-too-large", "token-tag-too-large",
    "token-tag-negative", "crf-token-tag-too-large", "crf-token-tag-negative", "single-label-class-too-large",
    "single-label-class-negative", "multi-label-value-2", "multi-label-value-negative", "multi-label-nan",
    "regression-nan",
}
# Bad values that are not made safe (nothing in them can stop a device): the outputs may or may not be finite.
NOT_MADE_SAFE = {"inputs-embeds-nan", "inputs-embeds-inf", "multi-label-nan", "regression-nan"}


def fresh_model(model_case, head: str, **overrides):
    auto, fields = HEADS[head]
    config = bizoo.get_spec(model_case[0]).config_class(**{**tiny_fields(model_case), **fields, **overrides})
    return auto.from_config(config).eval()


def tables_stay_in_range(model):
    """Forward pre-hooks: every embedding table is given ids inside it."""

    def check(module, args):
        ids = args[0]
        assert 0 <= int(ids.min()) and int(ids.max()) < module.num_embeddings, f"{module} given ids outside it"

    return [m.register_forward_pre_hook(check) for m in model.modules() if isinstance(m, torch.nn.Embedding)]


def finite_outputs(out) -> bool:
    tensors = [v for v in out.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return bool(tensors) and all(torch.isfinite(t).all() for t in tensors)


def run_read_later(model, inputs, pattern: str, made_safe: bool, message_start: str):
    """The call runs to its end (with finite outputs where the input was ``made_safe``); ``wait_for_input_checks``
    then raises ``pattern``."""
    handles = tables_stay_in_range(model)
    try:
        with torch.no_grad():
            out = model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    assert finite_outputs(out) or not made_safe
    with pytest.raises(ValueError, match=pattern) as info:
        value_checks.wait_for_input_checks()
    assert str(info.value).startswith(message_start), str(info.value)
    assert "without waiting for the device" in str(info.value)
    value_checks.wait_for_input_checks()  # raised once: nothing left


@pytest.mark.parametrize("target, bad", model_inputs_params())
def test_a_bad_input_value_on_a_gpu_is_raised_after_the_call_a_bad_shape_at_once(target, bad, make_inputs, as_on_a_gpu):
    model = fresh_model(target.model_case, target.head)
    context = Context(target.model_case, model, make_inputs)
    inputs = bad.change(context.good(), context)
    pattern = bad.pattern(target.model_type)
    if bad.name not in VALUE_INPUTS:
        with pytest.raises(ValueError, match=pattern):
            model(**inputs)
        return
    run_read_later(model, inputs, pattern, bad.name not in NOT_MADE_SAFE, family_prefix(target.model_type))


@pytest.mark.parametrize("case, bad", labels_params())
def test_a_bad_label_value_on_a_gpu_is_raised_after_the_call_a_bad_shape_at_once(case, bad, make_inputs, as_on_a_gpu):
    model = fresh_model(case, bad.head, **bad.overrides)
    inputs = Context(case, model, make_inputs).good()
    if bad.name not in VALUE_LABELS:
        with pytest.raises(ValueError, match=bad.match):
            model(**inputs, labels=bad.labels())
        return
    run_read_later(model, {**inputs, "labels": bad.labels()}, bad.match, bad.name not in NOT_MADE_SAFE,
                   type(model).__name__)


def test_every_value_case_named_here_exists():
    """The two lists above name cases of test_bad_inputs_models.py (a renamed case would drop out silently)."""
    assert VALUE_INPUTS <= {bad.name for bad in BAD_MODEL_INPUTS}
    assert VALUE_LABELS <= {bad.name for bad in BAD_LABELS}


# (model case, the ids its encoder reads): characters for the word+character models, word ids for all but ELMo
ID_CASES = [pytest.param((model_type, variant), where, id=f"{model_type}-{variant}-{where}")
            for model_type, spec in sorted(bizoo.MODEL_SPECS.items()) for variant in (spec.variants or {"default": {}})
            for where in ("input_ids", "char_ids")
            if (where == "char_ids") == (spec.tokenizer == "wordchar")
            or (where, model_type) == ("input_ids", "bilstm_crf")]


@pytest.mark.parametrize("case, where", ID_CASES)
def test_the_call_computes_with_the_ids_clamped_into_their_table(case, where, make_config, make_inputs, as_on_a_gpu):
    from transformers import AutoModelForMaskedLM

    model_case = case
    model = AutoModelForMaskedLM.from_config(make_config(model_case)).eval()
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    good = make_inputs(model_case, ids, torch.ones_like(ids))
    assert where in good
    table = {"input_ids": model.config.vocab_size, "char_ids": getattr(model.config, "char_vocab_size", 0)}[where]
    clamped, bad = dict(good), dict(good)
    clamped[where], bad[where] = good[where].clone(), good[where].clone()
    clamped[where][0, 2], bad[where][0, 2] = table - 1, table + 50
    clamped[where][1, 3], bad[where][1, 3] = 0, -7
    with torch.no_grad():
        expected = model(**clamped).logits
        got = model(**bad).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.equal(got, model(**good).logits)  # the changed ids matter
    with pytest.raises(ValueError, match=rf"{where} holds -7, outside \[0, "):  # the lowest first, as at once
        value_checks.wait_for_input_checks()


@pytest.mark.parametrize("head", ["ForMaskedLM", "ForSequenceClassification", "ForTokenClassification-CRF"])
def test_the_call_computes_with_any_nonzero_mask_value_as_a_real_token(model_case, make_inputs, head, as_on_a_gpu):
    """In the encoder and in the heads (mean pooling, the CRF's mask)."""
    model = fresh_model(model_case, head)
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    inputs = make_inputs(model_case, ids.masked_fill(mask == 0, 0), mask)
    bad_mask = mask.clone()
    bad_mask[0, 1], bad_mask[0, 3] = 2, -1
    with torch.no_grad():
        expected = model(**inputs).logits
        got = model(**{**inputs, "attention_mask": bad_mask}).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0 \(padding\) and 1 \(real token\), got 2"):
        value_checks.wait_for_input_checks()


@pytest.mark.parametrize("head", ["ForTokenClassification", "ForTokenClassification-CRF", "ForMaskedLM"])
def test_the_call_computes_with_bad_labels_ignored(model_case, make_inputs, head, as_on_a_gpu):
    model = fresh_model(model_case, head)
    inputs = Context(model_case, model, make_inputs).good()
    size = model.config.num_labels if "Token" in head else model.config.vocab_size
    labels = torch.full(inputs["attention_mask"].shape, -100)
    labels[0, :3] = torch.tensor([1, 2, 1]) % size
    bad = labels.clone()
    bad[0, 4], bad[1, 1] = size, -3
    with torch.no_grad():
        expected = model(**inputs, labels=labels).loss
        got = model(**inputs, labels=bad).loss
    assert torch.isfinite(got)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match=rf"labels hold {size}; allowed are 0\.\.{size - 1} and -100"):
        value_checks.wait_for_input_checks()


def test_a_landed_check_is_raised_by_the_next_call_once_and_the_model_runs_on(make_config, make_inputs, monkeypatch):
    """Numbers that have landed are read by the next check (here they land at once); the error names the bad value,
    the queue is then empty, and the model takes good input again."""
    from transformers import AutoModelForSequenceClassification

    monkeypatch.setattr(dispatch, "values_on_host", lambda tensor: False)
    value_checks.discard_input_checks()
    model = AutoModelForSequenceClassification.from_config(make_config(("lion", "d"), num_labels=3)).eval()
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    bad_mask = mask.clone()
    bad_mask[1, 2] = 3
    model(input_ids=ids, attention_mask=bad_mask)  # the mask's check is its last: nothing after it reads it
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0 \(padding\) and 1 \(real token\), got 3 "
                                         r"\[read back from cpu without waiting"):
        model(input_ids=ids, attention_mask=mask)
    assert value_checks.discard_input_checks() == 0
    model(input_ids=ids, attention_mask=mask)
    value_checks.wait_for_input_checks()


def test_checks_on_the_cpu_raise_at_once_and_queue_nothing(make_config):
    from transformers import AutoModelForMaskedLM

    value_checks.discard_input_checks()
    model = AutoModelForMaskedLM.from_config(make_config(("lion", "d"))).eval()
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    ids[0, 0] = 500
    with pytest.raises(ValueError, match=r"input_ids holds 500, outside \[0, vocab_size=120\)$"):
        model(input_ids=ids)
    assert value_checks.discard_input_checks() == 0
