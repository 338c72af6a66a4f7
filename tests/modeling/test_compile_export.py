"""torch.compile and torch.export of every model and head (reference kernels, CPU).

The input checks that read values (ids in range, 0/1 masks, labels) are left out while torch.compile or torch.export
trace a model (``modeling/common.py``, ``kernels/dispatch.py``'s ``reads_values``): there they would be a graph break
and, on a GPU, a host synchronisation in every step. Here: ``torch.compile(fullgraph=True)`` (a graph break is an
error) of a forward with labels, with the ``aot_eager`` backend, equal to eager in the loss, the logits and every
parameter's gradient, and ``torch.export.export`` of the model equal to eager. ONNX: ``torch.onnx.export`` of every
model's classification heads with a symbolic batch and length, run by onnxruntime.
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
from bizoo.kernels import dispatch
from bizoo.modeling.lstm_layers import BiLstmWeights

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
    torch._dynamo.reset()
    # fullgraph=True: a graph break is an error naming its reason (torch._dynamo.explain traced the model once more
    # only to say the same)
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
# Every model type and variant, with the sequence-classification head and the token-classification head with the CRF
# (its Viterbi path is an output of the graph; without the CRF the token head is one linear layer on the backbone
# that the sequence head's graph already holds). What keeps the length symbolic in the graph (each a traced
# variant of the same math, taken while torch.export traces; the kernel tests check it against eager mode): LION in its
# attention form (the chunk form's loop over chunks would be unrolled); BiGS's S4D kernel and recurrence in real
# arithmetic (ONNX has no complex dtype), its Toeplitz matrix by a gather (unfold fixes the length), its recurrence as
# one ONNX Scan; the LSTMs of BiLSTM-CRF and ELMo (ELMo's clipped LSTMP included) and the CRF's recursions and
# backtrace as ONNX Scans, where torch.lstm and Python loops would be unrolled for the traced length.
ONNX_HEADS = (("sequence", False), ("token", True))
# LION in its attention form; ELMo with clips that bind (its defaults, ±3, are far above a tiny model's cells and
# outputs, ~0.1: without these clips the logits would move by 0.02-0.15).
ONNX_CONFIG = {"lion": {"lion_form": "attention"}, "elmo": {"cell_clip": 0.05, "proj_clip": 0.03}}
ONNX_CASES = [((model_type, variant), head, crf) for model_type, spec in sorted(bizoo.MODEL_SPECS.items())
              for variant in spec.variants or {"default": {}} for head, crf in ONNX_HEADS]


def _onnx_case_id(model_case, head, crf) -> str:
    return f"{model_case[0]}-{model_case[1]}-{head}{'-crf' if crf else ''}"


class _Logits(torch.nn.Module):
    """The model with plain tensor inputs (``char_ids`` for a model that reads characters) and its logits (and, with a
    CRF head, its Viterbi path) as outputs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, char_ids=None):
        extra = {} if char_ids is None else {"char_ids": char_ids}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **extra)
        predictions = getattr(output, "predictions", None)
        return output.logits if predictions is None else (output.logits, predictions)


@torch.no_grad()
def _widened(model: torch.nn.Module) -> torch.nn.Module:
    """Every linear layer's weight redrawn from N(0, 1/fan_in) and its bias from N(0, 0.1²), the weights and biases
    of every LSTM (``BiLstmWeights``) likewise, every embedding from N(0, 1) (its padding row kept at 0): logits of
    order 1, so that agreeing to 1e-4 says something (the tiny initialisation, N(0, 0.02²), gives logits of 1e-3 and
    below, which any graph would match to 1e-4)."""
    g = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.copy_(torch.randn(module.weight.shape, generator=g) * module.in_features**-0.5)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
        elif isinstance(module, torch.nn.Embedding):
            module.weight.copy_(torch.randn(module.weight.shape, generator=g))
            if module.padding_idx is not None:
                module.weight[module.padding_idx] = 0.0
        elif isinstance(module, BiLstmWeights):  # an LSTM's weights (e.g. ELMo's tagger), as a linear layer's
            for parameter in module.parameters():
                scale = parameter.shape[1] ** -0.5 if parameter.dim() == 2 else 0.1
                parameter.copy_(torch.randn(parameter.shape, generator=g) * scale)
    return model


def _onnx_batch(model_case, make_inputs, B, L, g):
    """(input_ids, attention_mask[, char_ids]) of B rows of L words: row 0 right-padded, the last row left-padded."""
    ids = torch.randint(5, 120, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, L - 3:] = 0  # right padding
    mask[-1, :2] = 0  # left padding
    inputs = make_inputs(model_case, ids, mask)
    return tuple(inputs[name] for name in ("input_ids", "attention_mask", "char_ids") if name in inputs)


@pytest.mark.parametrize("case, head, crf", ONNX_CASES, ids=[_onnx_case_id(*c) for c in ONNX_CASES])
def test_onnx_export_with_dynamic_batch_and_length_matches_onnxruntime(case, head, crf, make_config, make_inputs,
                                                                       tmp_path):
    """The exported graph keeps batch and length symbolic (torch.onnx would otherwise fall back silently to the
    traced shape) and onnxruntime matches eager mode to 1e-4 at the traced shape and at other batch sizes and lengths,
    padding on both sides; with a CRF, the Viterbi path exactly."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    config = make_config(case, **ONNX_CONFIG.get(case[0], {}), use_crf=crf)  # BiLSTM-CRF and ELMo default to the CRF
    assert config.use_crf == crf
    model = _Logits(_widened(HEADS[head].from_config(config).eval()))
    g = torch.Generator().manual_seed(0)

    args = _onnx_batch(case, make_inputs, 3, 12, g)
    # torch's scan compiles its body with torch.compile, whose cache is shared by every scan of the process: an entry
    # left by a fixed-shape export (test_torch_export_equals_eager) would be reused here and fix the length.
    torch._dynamo.reset()
    B, L = torch.export.Dim("batch", min=2), torch.export.Dim("length", min=4, max=255)
    program = torch.onnx.export(model, args, dynamo=True, dynamic_shapes=tuple({0: B, 1: L} for _ in args))
    path = tmp_path / "model.onnx"
    program.save(str(path))
    for graph_input in onnx.load(str(path)).graph.input:
        dims = graph_input.type.tensor_type.shape.dim[:2]
        assert all(d.dim_param for d in dims), f"{graph_input.name} has a fixed batch or length: {dims}"

    session = ort.InferenceSession(str(path))
    names = [graph_input.name for graph_input in session.get_inputs()]
    for shape in ((3, 12), (2, 30), (5, 7)):  # the traced shape, then others
        inputs = _onnx_batch(case, make_inputs, *shape, g)
        with torch.no_grad():
            expected = model(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, dict(zip(names, (x.numpy() for x in inputs))))
        assert len(got) == len(expected)
        assert expected[0].abs().max() > 0.1  # not vacuous (``_widened``)
        torch.testing.assert_close(torch.from_numpy(got[0]), expected[0], rtol=1e-4, atol=1e-4,
                                   msg=lambda message: f"shape {shape}: {message}")
        if crf:  # the Viterbi path, inside the exported graph
            assert torch.equal(torch.from_numpy(got[1]), expected[1]), shape


def test_traced_crf_recursions_equal_the_loops(monkeypatch):
    """While torch.export traces, the CRF's recursions (forward, backward, Viterbi and its backtrace) run as scans and
    its log-sum-exp from plain ops: the eager loops' values, with padding on both sides, a hole, an empty row, banned
    transitions and a marginalised tag (the ONNX graphs above hold these scans); the plain log-sum-exp has the eager
    one's NaN-free gradient where a whole column is -inf."""
    from bizoo.kernels.crf import reference

    g = torch.Generator().manual_seed(0)
    B, L, K = 4, 9, 5
    emissions = torch.randn(B, L, K, generator=g, dtype=torch.float64) * 3
    transitions = torch.randn(K, K, generator=g, dtype=torch.float64)
    transitions[1, 2] = transitions[3, 0] = float("-inf")
    start, end = torch.randn(K, generator=g, dtype=torch.float64), torch.randn(K, generator=g, dtype=torch.float64)
    start[2] = float("-inf")
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 6:], mask[1, :3], mask[2, 4], mask[3] = False, False, False, False
    tags = torch.randint(0, K, (B, L), generator=g).masked_fill(~mask, -100)
    tags[0, 1] = -100  # an unknown tag at a real position: marginalised
    args = (emissions, mask, transitions, start, end)

    def run():
        with torch.no_grad():  # torch's scan has no eager autograd through a body with these closures
            return [reference.max_marginals(*args), *reference.viterbi(*args), reference.marginals(*args),
                    reference.log_partition(*args), reference.log_likelihood(*args, tags)]

    want = run()
    monkeypatch.setattr(dispatch, "exporting", lambda: True)
    calls = []
    scan = reference._scan_steps
    monkeypatch.setattr(reference, "_scan_steps", lambda *a, **k: calls.append(a) or scan(*a, **k))
    got = run()
    assert len(calls) == 10  # max-marginals 4 (forward, backward, Viterbi, backtrace), Viterbi 2, marginals 2, log Z 2
    assert torch.equal(got[1], want[1]) and (want[1] != -100).any()
    for a, b in zip(got[:1] + got[2:], want[:1] + want[2:]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    scores = torch.randn(3, K, K, generator=g, dtype=torch.float64)
    scores[0, :, 1] = scores[1] = float("-inf")  # a column, and a whole matrix, of -inf
    for dim in (1, 2):
        grads = []
        for lse in (reference._logsumexp_plain, reference._LogSumExp.apply):
            leaf = scores.clone().requires_grad_()
            out = lse(leaf, dim)
            grads.append(torch.autograd.grad(torch.where(torch.isfinite(out), out, 0.0).sum(), leaf)[0])
            torch.testing.assert_close(out, torch.logsumexp(scores, dim), rtol=1e-14, atol=1e-14)
        assert torch.isfinite(grads[0]).all()
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-14, atol=1e-14)


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


@pytest.mark.parametrize("case, head", list(_cases()))
def test_forward_and_backward_on_the_meta_device_give_eager_shapes(case, head, make_config, make_inputs):
    """A forward pass on meta tensors (no values: used to infer shapes and memory, as for transformers' models) runs
    and gives the shapes of the eager outputs: the value checks step aside (nothing to read) and the kernels' autocast
    guards accept the meta device; the loss's backward runs too."""
    model, inputs = _model_and_inputs(case, head, make_config, make_inputs)
    expected = model(**inputs)
    with torch.device("meta"):  # built there, as a shape or memory estimate builds it (tied weights stay tied)
        meta_model = HEADS[head].from_config(make_config(case)).train()  # train: the loss's graph, with dropout
    meta_inputs = {name: value.to("meta") if torch.is_tensor(value) else value for name, value in inputs.items()}
    got = meta_model(**meta_inputs)
    for name, value in expected.items():
        if torch.is_tensor(value) and (name != "logits" or head != "masked-lm"):  # eager MLM logits: labelled rows
            assert got[name].is_meta and got[name].shape == value.shape, name
    if got.get("loss") is not None:
        got["loss"].backward()
        assert all(p.grad is not None and p.grad.is_meta for p in meta_model.parameters() if p.requires_grad)


# The models whose compiled graph takes any batch size and length: attention-like layers. The recurrent ones
# (BiLSTM-CRF, ELMo) compile one graph per length: torch's own LSTM op fixes the length when traced.
# LION's input-dependent (s) and per-head (d) decays, BiGS's recurrence; the regression head's label check on BiGS's
# convolution (its kernel check failed here; the other variants compile per length in the tests above).
_DYNAMIC = [("lion", "s", "token"), ("lion", "d", "token"), ("bigs", "recurrent", "token"),
            ("bigs", "conv", "regression")]


@pytest.mark.parametrize("model_type, variant, head", _DYNAMIC, ids=["-".join(c) for c in _DYNAMIC])
def test_compiled_with_dynamic_shapes_runs_every_length_in_one_graph(model_type, variant, head, make_config,
                                                                     make_inputs):
    """``torch.compile(fullgraph=True, dynamic=True)`` at three batch sizes and lengths: outputs equal eager, and one
    compilation serves them all (a branch on a length fixes it: a recompilation per length). BiGS failed here: its
    kernel check formatted the length as text, then tested ``tuple(k.shape) in ((L,),)``, False for the right shape
    while traced (``kernels.checks.has_shape`` compares size by size)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    case = (model_type, variant)
    torch.manual_seed(0)
    config = make_config(case)
    if head == "regression":
        config.num_labels, config.problem_type = 1, "regression"
    model = (AutoModelForTokenClassification if head == "token" else AutoModelForSequenceClassification) \
        .from_config(config).eval()
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    compilations = None
    for B, L in ((3, 12), (2, 17), (4, 9)):
        g = torch.Generator().manual_seed(L)
        ids = torch.randint(5, 120, (B, L), generator=g)
        mask = torch.ones(B, L, dtype=torch.long)
        mask[1, L - 3:] = 0
        labels = (torch.randint(0, 2, (B, L), generator=g).masked_fill(mask == 0, -100) if head == "token"
                  else torch.randn(B, generator=g))
        inputs = make_inputs(case, ids, mask, labels=labels)
        expected, got = model(**inputs), compiled(**inputs)
        torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.loss, expected.loss, rtol=1e-5, atol=1e-6)
        compilations = compilations or counter.frame_count
        assert counter.frame_count == compilations, f"recompiled at (B, L) = ({B}, {L})"
