"""LION's attention weights (``output_attentions=True``): what they are, proved against two independent oracles.

LION is attention: per head y = A v with A = M ∘ (φ(Q) φ(K)ᵀ), divided by its row sums under
normalization="rowsum" (and scaled by 1/√d, not divided, under normalization="none"). The model returns A per layer,
(B, H, L, L), as BERT returns its attention probabilities. The oracles:

1. A times the layer's own values reproduces the mixer's output before its output projection (and before its
   LayerNorm under normalization="none"), for every variant, form and backend, whichever schedule computed it;
2. a brute-force fp64 A from the paper's equations, each sequence with its padding removed, itself shown to give
   the paper's mixer of ``tests/modeling/test_lion_paper.py``.

Weights are widened (N(0, 0.7)) so that tokens pass a lot to each other and the decays are far from 1: a check
that A is near the identity, or that every λ is near 1, would pass for the wrong A.
"""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from bizoo import (
    LionConfig,
    LionForMaskedLM,
    LionForSequenceClassification,
    LionForTokenClassification,
    LionModel,
)
from bizoo.kernels import dispatch
from bizoo.kernels.lion.reference import attention_weights
from bizoo.modeling import modeling_lion
from bizoo.modeling.modeling_lion import LionAttention
from tests.modeling.test_lion import ids, tiny
from tests.modeling.test_lion_paper import paper_mixer, paper_projections, paper_span

HAS_TRITON = dispatch.triton_available()  # bizoo's Triton kernels import here
TRITON_RUNS = HAS_TRITON and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")
needs_triton = pytest.mark.skipif(not TRITON_RUNS, reason="Triton needs a CUDA device or TRITON_INTERPRET=1")

VARIANTS = ["lit", "d", "s"]


def padded_mask(batch, length):
    """Row 0 has a hole at 3; row 1 is left- and right-padded with a hole inside; the others are full."""
    keep = torch.ones(batch, length, dtype=torch.long)
    keep[0, 3] = 0
    keep[1, :2] = 0
    keep[1, 5] = 0
    keep[1, length - 2 :] = 0
    return keep


def widen(module: torch.nn.Module, std: float = 0.7) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)


def widened_attention(variant, normalization, form="attention", backend="reference", chunk_size=4):
    extra = {"feature_map": "identity"} if normalization == "none" else {}
    config = LionConfig(
        hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32, lion_variant=variant,
        lion_form=form, chunk_size=chunk_size, normalization=normalization, kernel_backend=backend, **extra,
    )
    torch.manual_seed(0)
    att = LionAttention(config)
    widen(att)
    return att, config


def paper_weights(att, x, config, keep, shift=0):
    """A (B, H, L, L) by brute force from the paper's equations, fp64, each sequence with its padding removed:

        s_ij = φ(q_i)·φ(k_j) (/ √d under normalization="none"),  M_ij = ∏ λ over the paper's span,
        A_ij = M_ij s_ij / Σ_l M_il s_il  (rowsum)   or   M_ij s_ij  (none);   0 at padded rows and columns.

    ``shift=1`` takes the other index convention of λ (``test_lion_paper.paper_mixer``), only to show that a
    comparison tells the two apart."""
    B, L, d = x.shape
    H = config.num_attention_heads
    Dh = d // H
    with torch.no_grad():
        q, k, _, lam = paper_projections(att, x.double(), config)  # (B, L, H, Dh) each, (B, L, H)
    A = torch.zeros(B, H, L, L, dtype=torch.float64)
    for b in range(B):
        idx = [t for t in range(L) if keep[b, t]]  # the sequence without its padding
        for h in range(H):
            lam_bh = [float(lam[b, t, h]) for t in idx]
            for i in range(len(idx)):
                row = []
                for j in range(len(idx)):
                    span = paper_span(i, j, shift)
                    s = float(q[b, idx[i], h] @ k[b, idx[j], h])
                    if config.normalization == "none":
                        s = s / math.sqrt(Dh)
                    row.append(math.prod(lam_bh[t] for t in span) * s)
                total = sum(row) if config.normalization == "rowsum" else 1.0
                for j, value in enumerate(row):
                    A[b, h, idx[i], idx[j]] = value / total
    return A


def values(att, x):
    """v = W_v x per head, (B, H, L, Dh)."""
    B, L, d = x.shape
    return att.v_proj(x).view(B, L, att.num_heads, att.head_dim).transpose(1, 2)


def mixed(A, v):
    """Σ_j A_ij v_j with the heads put back side by side: (B, H, L, L), (B, H, L, Dh) -> (B, L, d)."""
    B, H, L, Dh = v.shape
    return (A.to(v.dtype) @ v).transpose(1, 2).reshape(B, L, H * Dh)


def pre_projection(att, x, keep):
    """Run ``att`` asking for its weights: (y before W_o (before the LayerNorm under normalization="none"), A, out)."""
    seen = {}
    target = att.mixer_norm if att.mixer_norm is not None else att.o_proj
    handle = target.register_forward_pre_hook(lambda module, args: seen.setdefault("y", args[0]))
    try:
        out, A = att(x, keep, output_attentions=True)
    finally:
        handle.remove()
    return seen["y"], A, out


# --------------------------------------------------------------------------------------------------------------
# The weights against the layer's own output, and against the paper
# --------------------------------------------------------------------------------------------------------------

FORMS = [
    pytest.param("attention", "reference", id="attention-reference"),
    pytest.param("rnn", "reference", id="rnn-reference"),
    pytest.param("chunk", "reference", id="chunk-reference"),
    pytest.param("attention", "triton", id="attention-triton", marks=needs_triton),
    pytest.param("chunk", "triton", id="chunk-triton", marks=needs_triton),
]


@pytest.mark.parametrize("form, backend", FORMS)
@pytest.mark.parametrize("normalization", ["rowsum", "none"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_times_values_are_the_mixer_output(variant, normalization, form, backend):
    """A v equals what the layer computed before W_o, however it computed it (the chunk, rnn and Triton schedules
    never build A); asking for A changes nothing in the output. 20 tokens and chunks of 4 (16 on Triton): several
    chunks, padding on both sides and holes."""
    chunk_size = 16 if backend == "triton" else 4
    att, config = widened_attention(variant, normalization, form, backend, chunk_size)
    x = torch.randn(2, 20, 16, generator=torch.Generator().manual_seed(1))
    keep = padded_mask(2, 20)
    y, A, out = pre_projection(att, x, keep)
    assert A.shape == (2, 2, 20, 20) and A.dtype == torch.float32
    v = values(att, x)
    scale = max(1.0, y.abs().max().item())  # normalization="none" sums unnormalised scores: outputs reach ~30
    torch.testing.assert_close(mixed(A, v), y, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(out, att(x, keep), rtol=0, atol=0)  # the output does not depend on asking
    # Not vacuous: the tokens do mix (A v is far from A's diagonal times v), and the decays matter (the same
    # scores without M, as a LIT layer would weigh them, give another mixture).
    diagonal = torch.diagonal(A, dim1=-2, dim2=-1)[..., None]  # (B, H, L, 1)
    assert (mixed(A, v) - (diagonal * v).transpose(1, 2).reshape(2, 20, 16)).abs().max() > 0.1
    if variant != "lit":
        lit = attention_weights(*scaled_features(att, x), None, keep, normalize=normalization == "rowsum")
        assert (mixed(lit, v) - y).abs().max() > 0.1


def scaled_features(att, x):
    """φ(q), φ(k) as the layer forms them (q scaled by 1/√d under normalization="none"), (B, H, L, Dh) each."""
    B, L, d = x.shape
    q = modeling_lion.feature_map(att.q_proj(x).view(B, L, att.num_heads, att.head_dim), att.feature_map)
    k = modeling_lion.feature_map(att.k_proj(x).view(B, L, att.num_heads, att.head_dim), att.feature_map)
    scale = 1.0 if att.rowsum else 1.0 / math.sqrt(att.head_dim)
    return (q * scale).transpose(1, 2), k.transpose(1, 2)


@pytest.mark.parametrize("normalization", ["rowsum", "none"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_are_the_papers_equations_in_fp64(variant, normalization):
    """The returned A (chunk form) against the brute-force A of the paper's equations; that brute force, times v,
    through the LayerNorm (normalization="none") and W_o, is the paper's mixer of test_lion_paper.py."""
    att, config = widened_attention(variant, normalization, "chunk")
    x = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(2))
    keep = padded_mask(2, 9)
    _, A, _ = pre_projection(att, x, keep)
    expected = paper_weights(att, x, config, keep)
    torch.testing.assert_close(A.double(), expected, rtol=1e-5, atol=1e-6)

    # The oracle is the paper's mixer: A_paper v, then (LayerNorm and) W_o, in fp64.
    with torch.no_grad():
        v = F.linear(x.double(), att.v_proj.weight.double(), att.v_proj.bias.double()).view(2, 9, 2, 8).transpose(1, 2)
        y = mixed(expected, v)
        if normalization == "none":
            norm = att.mixer_norm
            y = F.layer_norm(y, (16,), norm.weight.double(), norm.bias.double(), norm.eps)
        out = F.linear(y, att.o_proj.weight.double(), att.o_proj.bias.double())
    real = keep.bool()[..., None]
    paper = paper_mixer(att, x, config, keep)
    torch.testing.assert_close(torch.where(real, out, 0.0), torch.where(real, paper, 0.0), rtol=1e-10, atol=1e-10)

    # Not vacuous: far from the identity, and for LION-S the paper's λ indices are told from the shifted ones.
    eye = torch.eye(9, dtype=torch.float64).expand_as(expected) * keep.bool()[:, None, :, None]
    assert (expected - eye).abs().max() > 0.2
    if variant == "s":
        assert (paper_weights(att, x, config, keep, shift=1) - expected).abs().max() > 1e-2


@pytest.mark.parametrize("variant", VARIANTS)
def test_rowsum_weights_are_distributions_over_the_real_keys(variant):
    """normalization="rowsum" (positive features): every real row is ≥ 0 and sums to 1; padded keys (columns) and
    padded queries (rows) hold exactly 0."""
    att, _ = widened_attention(variant, "rowsum", "chunk")
    x = torch.randn(2, 11, 16, generator=torch.Generator().manual_seed(3))
    keep = padded_mask(2, 11)
    _, A, _ = pre_projection(att, x, keep)
    real = keep.bool()[:, None, :]  # (B, 1, L)
    rows = A.sum(-1)  # (B, H, L)
    torch.testing.assert_close(rows, torch.where(real, 1.0, 0.0).expand_as(rows), rtol=1e-6, atol=1e-6)
    assert (A >= 0).all()
    assert (A.masked_select(~real[..., None]) == 0).all()  # padded rows
    assert (A.masked_select(~real[:, :, None, :]) == 0).all()  # padded columns


# --------------------------------------------------------------------------------------------------------------
# The model: every layer, the config switch, the heads
# --------------------------------------------------------------------------------------------------------------


def widened_model(cls=LionModel, **overrides):
    """A tiny model whose mixers (projections and decays) are widened; the rest as initialised."""
    torch.manual_seed(0)
    model = cls(tiny(**overrides)).eval()
    base = model if cls is LionModel else model.lion
    for layer in base.layers:
        for module in (layer.mixer.q_proj, layer.mixer.k_proj, layer.mixer.decay):
            if module is not None:
                widen(module)
    return model


@pytest.mark.parametrize("layer_norm_position", ["pre", "post"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_layer_returns_the_weights_it_applied(variant, layer_norm_position):
    """One (B, H, L, L) tensor per layer, in layer order, each the paper's A of that layer's own mixer input (the
    block input, after the mixer's LayerNorm in pre-LN)."""
    model = widened_model(lion_variant=variant, layer_norm_position=layer_norm_position, lion_form="chunk")
    x, keep = ids(2, 10), padded_mask(2, 10)
    out = model(input_ids=x, attention_mask=keep, output_attentions=True, output_hidden_states=True)
    assert isinstance(out.attentions, tuple) and len(out.attentions) == model.config.num_hidden_layers
    for index, layer in enumerate(model.layers):
        block_input = out.hidden_states[index]  # (B, L, d)
        mixer_input = layer.mixer_layer_norm(block_input) if layer.pre_norm else block_input
        expected = paper_weights(layer.mixer, mixer_input, model.config, keep)
        assert out.attentions[index].shape == (2, model.config.num_attention_heads, 10, 10)
        torch.testing.assert_close(out.attentions[index].double(), expected, rtol=1e-5, atol=1e-6)
    assert (out.attentions[0] - out.attentions[1]).abs().max() > 0.1  # the layers' weights differ


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_does_not_change_the_weights_of_the_real_tokens(variant):
    """A sequence alone, and the same sequence right-padded, left-padded and with holes in a batch: the same A
    between its real tokens, 0 to and from the padding."""
    model = widened_model(lion_variant=variant, lion_form="chunk")
    seq = ids(1, 7, seed=4)[0]
    alone = model(input_ids=seq[None], output_attentions=True).attentions
    places = [[0, 1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8, 9], [0, 2, 3, 5, 6, 8, 9]]  # right, left, holes
    batch = torch.zeros(3, 10, dtype=torch.long)
    keep = torch.zeros(3, 10, dtype=torch.long)
    for row, where in enumerate(places):
        batch[row, where] = seq
        keep[row, where] = 1
    padded = model(input_ids=batch, attention_mask=keep, output_attentions=True).attentions
    for a, p in zip(alone, padded):
        for row, where in enumerate(places):
            at = torch.tensor(where)
            torch.testing.assert_close(p[row][:, at][:, :, at], a[0], rtol=1e-5, atol=1e-6)
            pad = torch.ones(10, dtype=torch.bool)
            pad[at] = False
            assert (p[row][:, pad] == 0).all() and (p[row][:, :, pad] == 0).all()  # padded rows and columns


def test_the_argument_wins_over_the_config_and_not_asking_changes_nothing():
    model = widened_model(lion_variant="d")
    x, keep = ids(), padded_mask(2, 12)
    plain = model(input_ids=x, attention_mask=keep)
    assert plain.attentions is None and model.config.output_attentions is False
    asked = model(input_ids=x, attention_mask=keep, output_attentions=True)
    torch.testing.assert_close(asked.last_hidden_state, plain.last_hidden_state, rtol=0, atol=0)
    model.config.output_attentions = True
    from_config = model(input_ids=x, attention_mask=keep)
    assert from_config.attentions is not None
    for a, b in zip(from_config.attentions, asked.attentions):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model(input_ids=x, attention_mask=keep, output_attentions=False).attentions is None
    # The tuple form follows BaseModelOutput's fields: (last_hidden_state, [hidden_states,] attentions).
    as_tuple = model(input_ids=x, attention_mask=keep, return_dict=False)
    assert len(as_tuple) == 2 and len(as_tuple[1]) == model.config.num_hidden_layers
    torch.testing.assert_close(as_tuple[1][1], asked.attentions[1], rtol=0, atol=0)


def test_a_config_saved_with_output_attentions_loads_with_it(tmp_path):
    widened_model(lion_variant="s", output_attentions=True).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert len(loaded(input_ids=ids()).attentions) == loaded.config.num_hidden_layers


def test_not_asking_builds_no_weights(monkeypatch):
    """output_attentions False or None costs nothing: the L×L matrix is never built (the chunk form is linear in L)."""
    calls = []
    real = modeling_lion.attention_weights

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling_lion, "attention_weights", counting)
    model = widened_model(lion_variant="s", lion_form="chunk")
    model(input_ids=ids())
    model(input_ids=ids(), output_attentions=False)
    LionForMaskedLM(tiny()).eval()(input_ids=ids(), output_hidden_states=True)
    assert calls == []
    model(input_ids=ids(), output_attentions=True)
    assert len(calls) == model.config.num_hidden_layers


def test_the_weights_carry_gradients():
    """Attention-gradient attributions need ∂A/∂θ: A is part of the graph, not a detached copy. (A row sum of a
    rowsum A is constant, so one column is taken.)"""
    model = widened_model(lion_variant="s")
    A = model(input_ids=ids(), output_attentions=True).attentions[0]  # (B, H, L, L)
    A[..., 0].sum().backward()
    grad = model.layers[0].mixer.q_proj.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 1e-4


def test_compiled_with_attentions_has_no_graph_break_and_equals_eager():
    """output_attentions=True is a Python bool, fixed while traced: fullgraph compiles, and gives eager's weights.
    (output_attentions=False: tests/modeling/test_compile_export.py.)"""
    model = widened_model(lion_variant="s", lion_form="chunk")
    x, keep = ids(), padded_mask(2, 12)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(input_ids=x, attention_mask=keep, output_attentions=True).attentions
    expected = model(input_ids=x, attention_mask=keep, output_attentions=True).attentions
    assert len(got) == len(expected) == model.config.num_hidden_layers
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


HEADS = {
    "masked-lm": (LionForMaskedLM, {}, lambda x: x),
    "sequence": (LionForSequenceClassification, {"num_labels": 3}, lambda x: torch.tensor([0, 2])),
    "token": (LionForTokenClassification, {"num_labels": 3}, lambda x: x % 3),
    "token-crf": (LionForTokenClassification, {"num_labels": 3, "use_crf": True}, lambda x: x % 3),
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_head_returns_the_encoders_attentions(head):
    cls, overrides, make_labels = HEADS[head]
    model = widened_model(cls, lion_variant="d", **overrides)
    x, keep = ids(), padded_mask(2, 12)
    labels = make_labels(x)
    if labels.dim() == 2:
        labels = labels.masked_fill(keep == 0, -100)
    encoder = model.lion(input_ids=x, attention_mask=keep, output_attentions=True).attentions
    plain = model(input_ids=x, attention_mask=keep, labels=labels)
    out = model(input_ids=x, attention_mask=keep, labels=labels, output_attentions=True)
    assert plain.attentions is None and out.attentions is not None
    assert len(out.attentions) == len(encoder) == model.config.num_hidden_layers
    for a, b in zip(out.attentions, encoder):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for key in plain.keys():  # everything else is what it was without the weights
        torch.testing.assert_close(out[key], plain[key], rtol=0, atol=0)
    # The tuple form keeps the output class's field order: loss, logits, hidden_states, attentions, ...
    as_tuple = model(
        input_ids=x, attention_mask=keep, labels=labels, output_attentions=True, output_hidden_states=True,
        return_dict=False,
    )
    assert len(as_tuple[2]) == model.config.num_hidden_layers + 1  # hidden states
    assert len(as_tuple[3]) == model.config.num_hidden_layers
    torch.testing.assert_close(as_tuple[3][0], encoder[0], rtol=0, atol=0)
    model.config.output_attentions = True  # the config's switch reaches the heads too
    assert model(input_ids=x, attention_mask=keep).attentions is not None


# --------------------------------------------------------------------------------------------------------------
# What the others do, and bad values
# --------------------------------------------------------------------------------------------------------------


def test_lion_returns_attentions_and_every_other_model_type_refuses(model_case, make_config, make_inputs):
    """BiGS, BiLSTM-CRF and ELMo form no attention probabilities: output_attentions=True stays an error there."""
    model = AutoModel.from_config(make_config(model_case)).eval()
    inputs = make_inputs(model_case, ids(2, 6), torch.ones(2, 6, dtype=torch.long))
    if model_case[0] == "lion":
        assert len(model(**inputs, output_attentions=True).attentions) == model.config.num_hidden_layers
    else:
        with pytest.raises(ValueError, match="output_attentions=True is not supported: this model forms no"):
            model(**inputs, output_attentions=True)


@pytest.mark.parametrize("value", ["yes", 1, torch.tensor(True)])
def test_an_output_attentions_that_is_not_a_bool_is_a_clear_error(value):
    model = LionModel(tiny()).eval()
    with pytest.raises(ValueError, match=r"LionModel: output_attentions must be True, False or None, got "):
        model(input_ids=ids(), output_attentions=value)
    model.config._output_attentions = value  # what a hand-edited config.json could hold
    with pytest.raises(ValueError, match=r"LionModel: config\.output_attentions must be True, False or None, got "):
        model(input_ids=ids())


def test_the_reference_weights_refuse_bad_arguments():
    q = torch.rand(1, 2, 5, 4)
    with pytest.raises(ValueError, match="normalize must be True or False, got 'yes'"):
        attention_weights(q, q, normalize="yes")
    with pytest.raises(ValueError, match=r"log_decay must be None \(LIT\), \(2,\)"):
        attention_weights(q, q, torch.zeros(3))
