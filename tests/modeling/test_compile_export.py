"""torch.compile and torch.export of every model and head (reference kernels, CPU).

The input checks that read values (ids in range, 0/1 masks, labels) are left out while torch.compile or torch.export
trace a model (``modeling/common.py``, ``kernels/dispatch.py``'s ``reads_values``): there they would be a graph break
and, on a GPU, a host synchronisation in every step. Here: no graph break in a forward with labels
(``torch._dynamo.explain``), ``torch.compile(fullgraph=True)`` with the ``aot_eager`` backend equal to eager in the
loss, the logits and every parameter's gradient, and ``torch.export.export`` of the model equal to eager.
"""

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

import bizoo

HEADS = {
    "base": AutoModel,
    "masked-lm": AutoModelForMaskedLM,
    "sequence": AutoModelForSequenceClassification,
    "token": AutoModelForTokenClassification,
}
# Model cases whose compiled graph still breaks, and why (the rest must have none).
def _cases():
    for model_type, spec in sorted(bizoo.MODEL_SPECS.items()):
        for variant in spec.variants or {"default": {}}:
            for head in HEADS:
                yield pytest.param((model_type, variant), head, id=f"{model_type}-{variant}-{head}")


def _model_and_inputs(model_case, head, make_config, make_inputs, seed=0):
    torch.manual_seed(seed)
    model = HEADS[head].from_config(make_config(model_case)).eval()  # eval: dropout off
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0  # right padding
    mask[2, :2] = 0  # left padding
    inputs = make_inputs(model_case, ids, mask)
    if head == "masked-lm":
        inputs["labels"] = ids.masked_fill(mask == 0, -100)
    elif head == "sequence":
        inputs["labels"] = torch.tensor([0, 1, 1])
    elif head == "token":
        inputs["labels"] = torch.randint(0, 2, (3, 12), generator=g).masked_fill(mask == 0, -100)
    return model, inputs


def _outputs(output, labels=None):
    """The tensors to compare: the loss (if any) and the first output (logits or hidden states). Masked-LM logits at
    the labelled positions only: eager mode projects only those (``sparse_prediction``), a traced graph all of them."""
    tensors = [output["loss"]] if output.get("loss") is not None else []
    first = output[0] if output.get("loss") is None else output[1]
    if labels is not None and first.dim() == 3 and first.shape[:2] == labels.shape:
        first = first[labels != -100]  # (N, V)
    return tensors + [first]


@pytest.mark.parametrize("case, head", list(_cases()))
def test_no_graph_break_and_compiled_equals_eager(case, head, make_config, make_inputs):
    model_case = case
    model, inputs = _model_and_inputs(model_case, head, make_config, make_inputs)
    explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0, [str(r.reason).split("\n")[0] for r in explanation.break_reasons]

    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    labels = inputs.get("labels") if head == "masked-lm" else None
    expected = _outputs(model(**inputs), labels)
    got = _outputs(compiled(**inputs), labels)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    target = got[0].float().sum() if got[0].dim() == 0 else got[0].float().square().mean()
    reference = expected[0].float().sum() if expected[0].dim() == 0 else expected[0].float().square().mean()
    params = [p for p in model.parameters() if p.requires_grad]
    got_grads = torch.autograd.grad(target, params, allow_unused=True)
    expected_grads = torch.autograd.grad(reference, params, allow_unused=True)
    for (name, _), g, e in zip(((n, p) for n, p in model.named_parameters() if p.requires_grad), got_grads,
                               expected_grads):
        assert (g is None) == (e is None), name
        if g is not None:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("case, head", list(_cases()))
def test_torch_export_equals_eager(case, head, make_config, make_inputs):
    model_case = case
    model, inputs = _model_and_inputs(model_case, head, make_config, make_inputs)
    exported = torch.export.export(model, args=(), kwargs=inputs)
    labels = inputs.get("labels") if head == "masked-lm" else None
    expected = _outputs(model(**inputs), labels)
    got = _outputs(exported.module()(**inputs), labels)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_value_checks_still_run_in_eager_mode(make_config, make_inputs):
    """Leaving the value checks out while tracing changes nothing in eager mode: bad ids are still a ValueError."""
    model, inputs = _model_and_inputs(("lion", "s"), "base", make_config, make_inputs)
    inputs["input_ids"] = inputs["input_ids"].clone()
    inputs["input_ids"][0, 0] = 10_000
    with pytest.raises(ValueError, match="outside"):
        model(**inputs)


# ----------------------------------------------------------------------------------------------------------------
# ONNX (torch.onnx.export(dynamo=True)) with dynamic batch and length, checked with onnxruntime
# ----------------------------------------------------------------------------------------------------------------
# LION in its attention form (the chunk form's loop over chunks is unrolled for the traced length); with the CRF
# head, the Viterbi path inside the graph, for the traced length (its recursions are unrolled). Not yet: BiGS
# (its S4D kernel is formed in complex arithmetic, which ONNX lacks), BiLSTM-CRF and ELMo (torch.lstm is decomposed
# into one step per token when exported, so the length is fixed at export time).
ONNX_CASES = [(("lion", variant), head, crf) for variant in ("lit", "d", "s") for head, crf in
              (("sequence", False), ("token", False), ("token", True))]


class _Logits(torch.nn.Module):
    """The model with plain tensor inputs and its logits (and, with a CRF head, its Viterbi path) as outputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        predictions = getattr(output, "predictions", None)
        return output.logits if predictions is None else (output.logits, predictions)


@pytest.mark.parametrize("case, head, crf", ONNX_CASES,
                         ids=[f"{c[0]}-{c[1]}-{h}{'-crf' if crf else ''}" for c, h, crf in ONNX_CASES])
def test_onnx_export_with_dynamic_batch_and_length_matches_onnxruntime(case, head, crf, make_config, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    config = make_config(case, lion_form="attention", **({"use_crf": True} if crf else {}))
    model = _Logits(HEADS[head].from_config(config).eval())
    g = torch.Generator().manual_seed(0)

    def batch(B, L):
        ids = torch.randint(5, 120, (B, L), generator=g)
        mask = torch.ones(B, L, dtype=torch.long)
        mask[0, L - 3:] = 0  # right padding
        mask[-1, :2] = 0  # left padding
        return ids, mask

    ids, mask = batch(3, 12)
    B, L = torch.export.Dim("batch", min=2), torch.export.Dim("length", min=4, max=255)
    # The CRF's recursions are loops over the positions, unrolled when traced: its graph has the traced length.
    dims = {0: B} if crf else {0: B, 1: L}
    program = torch.onnx.export(model, (ids, mask), dynamo=True,
                                dynamic_shapes={"input_ids": dims, "attention_mask": dims})
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path))
    for shape in ((3, 12), (5, 12)) if crf else ((3, 12), (2, 30), (5, 7)):  # the traced shape and others
        ids, mask = batch(*shape)
        with torch.no_grad():
            expected = model(ids, mask)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        assert len(got) == len(expected)
        torch.testing.assert_close(torch.from_numpy(got[0]), expected[0], rtol=1e-4, atol=1e-4)
        if crf:  # the Viterbi path, inside the exported graph
            assert torch.equal(torch.from_numpy(got[1]), expected[1])


@pytest.mark.parametrize("case", sorted({c for c, _ in (p.values for p in _cases())}),
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_compiled_training_step_with_dropout(case, make_config, make_inputs):
    """A masked-LM training step through the compiled model with dropout on (the tests above run in eval mode):
    forward and backward run, with a finite loss and finite gradients."""
    torch.manual_seed(0)
    config = make_config(case)
    if hasattr(config, "hidden_dropout_prob"):
        config.hidden_dropout_prob = 0.1
    model = AutoModelForMaskedLM.from_config(config).train()
    ids = torch.randint(5, 120, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0
    inputs = make_inputs(case, ids, mask, labels=ids.masked_fill(mask == 0, -100))
    torch._dynamo.reset()
    loss = torch.compile(model, backend="aot_eager", fullgraph=True)(**inputs).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
