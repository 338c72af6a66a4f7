"""Confidences of the token-classification heads (``modeling/heads.py``): the per-token marginals p(y_t = k | x)
(``output_marginals``) and the CRF's ``crf_logits="log_marginals"``, whose softmax, the transformers pipeline's
``score``, is the marginal of the reported tag.

The oracle enumerates every tag path the BIO scheme allows (the rule written out here: I-X only after B-X or I-X,
never first) for a few short rows with right and left padding, a hole and an empty row, with scores widened far
beyond the initialisation so that a lost constraint or a wrong normaliser moves the marginals by much more than the
tolerance.
"""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForTokenClassification, pipeline

from bizoo.modeling.heads import CrfTokenClassificationHead, TokenClassificationHead, token_classification_output

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ID2LABEL = dict(enumerate(BIO))
LABEL2ID = {label: i for i, label in ID2LABEL.items()}


def _allowed_paths(length):
    """Every BIO path of ``length`` tags, (P, length) int64: I-X first or after anything but B-X/I-X is banned."""
    def legal(path):
        names = [BIO[k] for k in path]
        for prev, tag in zip(["O"] + names, names):
            if tag.startswith("I-") and prev[2:] != tag[2:]:
                return False
        return True

    return torch.tensor([p for p in itertools.product(range(len(BIO)), repeat=length) if legal(p)], dtype=torch.long)


def _brute_force(emissions, transitions, start, end, keep):
    """(marginals (L, K), best path (L,) with -100 at padding) of one row by enumeration over its real positions."""
    L, K = emissions.shape
    real = keep.nonzero().flatten()  # the chain runs over the real positions, holes skipped
    marginals = torch.zeros(L, K, dtype=torch.float64)
    best = torch.full((L,), -100)
    if real.numel() == 0:
        return marginals, best
    paths = _allowed_paths(real.numel())  # (P, n)
    e = emissions[real].double()  # (n, K)
    scores = start.double()[paths[:, 0]] + end.double()[paths[:, -1]]  # (P,)
    scores = scores + e.gather(1, paths.t()).sum(0)
    scores = scores + transitions.double()[paths[:, :-1], paths[:, 1:]].sum(1)
    p = torch.softmax(scores, 0)  # (P,) p(y | x)
    for r, t in enumerate(real.tolist()):
        marginals[t] = torch.zeros(K, dtype=torch.float64).index_add_(0, paths[:, r], p)
    best[real] = paths[scores.argmax()]
    return marginals, best


def _head(backend, crf_logits="max_marginals", output_marginals=False, seed=0):
    config = SimpleNamespace(
        num_labels=len(BIO), id2label=ID2LABEL, tag_scheme="BIO", classifier_dropout=0.0, hidden_dropout_prob=0.0,
        encoder_output_size=6, kernel_backend=backend, crf_logits=crf_logits, output_marginals=output_marginals,
    )
    head = CrfTokenClassificationHead(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # widened: transitions, starts, ends and emissions of a few nats each
        for p in (head.crf.transitions, head.crf.start, head.crf.end, head.classifier.weight):
            p.copy_(2 * torch.randn(p.shape, generator=g))
    return head


def _rows(seed=1):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(5, 5, 6, generator=g)
    mask = torch.ones(5, 5, dtype=torch.long)
    mask[1, 3:] = 0  # right padding
    mask[2, :2] = 0  # left padding
    mask[3, 2] = 0  # a hole: positions 1 and 3 are adjacent in the chain
    mask[4] = 0  # an empty row
    return hidden, mask


@pytest.mark.parametrize("backend", ["reference", "scan"])
def test_marginals_equal_brute_force_over_allowed_paths(backend):
    head = _head(backend)
    hidden, mask = _rows()
    loss, logits, predictions, marginals = head(hidden, mask, output_marginals=True)
    emissions = head.classifier(hidden).detach()
    parameters = [p.detach() for p in (head.crf.transitions, head.crf.start, head.crf.end)]
    expected = torch.stack([_brute_force(emissions[b], *parameters, mask[b].bool())[0] for b in range(len(mask))])
    assert marginals.dtype == torch.float32 and not marginals.requires_grad
    torch.testing.assert_close(marginals.double(), expected, rtol=1e-5, atol=1e-6)
    real = mask.bool()
    torch.testing.assert_close(marginals.sum(-1)[real], torch.ones(int(real.sum())), rtol=0, atol=1e-5)
    assert torch.equal(marginals[~real], torch.zeros(int((~real).sum()), len(BIO)))
    first = real.int().argmax(1)[:4]  # each non-empty row's first real position: I-X is banned there
    assert torch.equal(marginals[torch.arange(4), first][:, [2, 4]], torch.zeros(4, 2))
    assert (expected[real].amax(-1) < 0.9).sum() >= 3  # not vacuous: several tokens are uncertain
    # the default output of the same head: max-marginal logits, Viterbi predictions, no marginals
    assert len(head(hidden, mask)) == 3


@pytest.mark.parametrize("backend", ["reference", "scan"])
def test_log_marginal_logits_softmax_to_the_marginals_and_predictions_stay_viterbi(backend):
    head = _head(backend, crf_logits="log_marginals")
    hidden, mask = _rows()
    labels = torch.tensor([[0, 1, 0, 3, 1]] * 5).masked_fill(mask == 0, -100)
    loss, logits, predictions = head(hidden, mask, labels=labels)
    emissions = head.classifier(hidden).detach()
    parameters = [p.detach() for p in (head.crf.transitions, head.crf.start, head.crf.end)]
    oracle = [_brute_force(emissions[b], *parameters, mask[b].bool()) for b in range(len(mask))]
    expected = torch.stack([m for m, _ in oracle])
    real = mask.bool()
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits.softmax(-1)[real].double(), expected[real], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits.softmax(-1)[~real], torch.full(((~real).sum(), len(BIO)), 1 / len(BIO)))
    assert torch.equal(predictions, torch.stack([path for _, path in oracle]))  # the Viterbi path, not argmax(logits)
    # the loss and the predictions do not depend on what the logits report
    head.config.crf_logits = "max_marginals"
    default_loss, default_logits, default_predictions = head(hidden, mask, labels=labels)
    torch.testing.assert_close(loss, default_loss)
    assert torch.equal(predictions, default_predictions)
    assert not torch.allclose(default_logits.softmax(-1)[real].double(), expected[real], atol=1e-2)


def test_posterior_decoding_can_differ_from_viterbi():
    """The documented difference, on a hand-made case: two tags at two positions, emissions 0, transitions such that
    the single best path is (0, 0) while tag 1 at position 0 carries more probability in total:
    s(0,0) = 2, s(1,0) = s(1,1) = 1.5, s(0,1) = -inf. Then p(y_0 = 1) = 2e^1.5 / (e^2 + 2e^1.5) ≈ 0.58 > 1/2."""
    config = SimpleNamespace(
        num_labels=2, id2label={0: "A", 1: "B"}, tag_scheme="none", classifier_dropout=0.0, hidden_dropout_prob=0.0,
        encoder_output_size=1, kernel_backend="reference", crf_logits="log_marginals",
    )
    head = CrfTokenClassificationHead(config).eval()
    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.zero_()
        head.crf.transitions.copy_(torch.tensor([[2.0, float("-inf")], [1.5, 1.5]]))
        head.crf.start.zero_()
        head.crf.end.zero_()
    _, logits, predictions, marginals = head(torch.zeros(1, 2, 1), torch.ones(1, 2), output_marginals=True)
    z = math.exp(2) + 2 * math.exp(1.5)
    assert predictions.tolist() == [[0, 0]]
    assert math.isclose(float(marginals[0, 0, 1]), 2 * math.exp(1.5) / z, rel_tol=1e-6)
    assert logits.argmax(-1).tolist() == [[1, 0]]  # the pipeline's entity: posterior decoding
    assert float(marginals[0, 0, 0]) <= 0.5  # where they differ, the Viterbi tag has probability <= 1/2


def test_softmax_head_marginals_are_its_softmax():
    config = SimpleNamespace(
        num_labels=3, classifier_dropout=0.0, hidden_dropout_prob=0.0, encoder_output_size=6, output_marginals=True
    )
    head = TokenClassificationHead(config).eval()
    hidden, mask = _rows()
    loss, logits, predictions, marginals = head(hidden, mask)
    real = mask.bool()
    torch.testing.assert_close(marginals[real], logits[real].softmax(-1))
    assert torch.equal(marginals[~real], torch.zeros(int((~real).sum()), 3))
    assert len(head(hidden, mask, output_marginals=False)) == 3  # the argument wins over the config


@pytest.mark.parametrize(
    "field, value, message",
    [("crf_logits", "probabilities", "crf_logits must be one of"), ("output_marginals", "yes", "output_marginals")],
)
def test_bad_options_are_named(field, value, message):
    head = _head("reference")
    with pytest.raises(ValueError, match=message):
        CrfTokenClassificationHead(SimpleNamespace(**{**vars(head.config), field: value}))
    setattr(head.config, field, value)  # changed after the model was built: the forward checks it again
    with pytest.raises(ValueError, match=message):
        head(*_rows())
    setattr(head.config, field, {"crf_logits": "max_marginals", "output_marginals": False}[field])
    with pytest.raises(ValueError, match="output_marginals must be True, False or None"):
        head(*_rows(), output_marginals=1)


def test_confidences_compile_without_graph_break_and_export():
    """Both options are read from the config in plain Python: no graph break (``torch._dynamo.explain``), and
    ``torch.export`` runs the marginals' forward-backward as scans, equal to eager."""
    head = _head("reference", crf_logits="log_marginals", output_marginals=True)  # eager and export: one schedule
    hidden, mask = _rows()
    labels = torch.tensor([[0, 1, 0, 3, 1]] * 5).masked_fill(mask == 0, -100)
    explanation = torch._dynamo.explain(head)(hidden, mask, labels)
    assert explanation.graph_break_count == 0, [str(r.reason).split("\n")[0] for r in explanation.break_reasons]

    class Tagger(torch.nn.Module):  # the head's own arguments as a module's positional inputs
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, hidden, mask):
            return self.head(hidden, mask)[1:]

    exported = torch.export.export(Tagger(), (hidden, mask)).module()
    for got, expected in zip(exported(hidden, mask), head(hidden, mask)[1:]):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Every model type: the config route, the output class, and the pipeline's score
# ----------------------------------------------------------------------------------------------------------------


def _crf_model(model_case, make_config, vocab_size=120, **overrides):
    config = make_config(
        model_case, vocab_size=vocab_size, use_crf=True, num_labels=len(BIO), id2label=ID2LABEL, label2id=LABEL2ID,
        initializer_range=0.2, **overrides,
    )
    model = AutoModelForTokenClassification.from_config(config).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # 5x the init's spread (and the encoder's init 10x): uncertain, but far from even
        for p in (model.classifier.crf.transitions, model.classifier.crf.start, model.classifier.crf.end):
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model


def test_every_model_reports_crf_marginals_through_its_config(model_case, make_config, make_inputs):
    from bizoo.kernels.crf import crf_marginals

    model = _crf_model(model_case, make_config)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 120, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    inputs = make_inputs(model_case, ids, mask)
    head = model.classifier
    captured = {}
    hook = head.classifier.register_forward_hook(lambda m, i, o: captured.__setitem__("emissions", o.detach().float()))
    assert model(**inputs).marginals is None  # not asked
    model.config.output_marginals = True
    out = model(**inputs)
    hook.remove()
    # the oracle in fp64: fp32 forward-backward is good to ~1e-5 only where α + β - log Z cancel, and the model's
    # "auto" backend may take either schedule
    parameters = [p.double() for p in head.crf_parameters(captured["emissions"].device)]
    expected = crf_marginals(captured["emissions"].double(), mask.bool(), *parameters, backend="reference").float()
    assert out.marginals.shape == (2, 7, len(BIO))
    torch.testing.assert_close(out.marginals, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(out.marginals.sum(-1)[mask.bool()], torch.ones(int(mask.sum())), rtol=0, atol=1e-5)
    assert expected[mask.bool()].amax(-1).amin() < 0.9  # not vacuous: some token is uncertain
    as_tuple = model(**inputs, return_dict=False)
    assert torch.equal(as_tuple[-1], out.marginals) and torch.equal(as_tuple[-2], out.predictions)

    # the per-call argument, as a model's forward hands it to token_classification_output, wins over the config
    seen = {}
    hook = head.register_forward_hook(lambda m, args, o: seen.__setitem__("args", args))
    model(**inputs)
    hook.remove()
    hidden, real = seen["args"][:2]
    encoder_output = SimpleNamespace(hidden_states=None)
    off = token_classification_output(model, hidden, real, encoder_output, None, None, True, output_marginals=False)
    assert off.marginals is None and torch.equal(off.logits, out.logits)
    model.config.output_marginals = False
    on = token_classification_output(model, hidden, real, encoder_output, None, None, True, output_marginals=True)
    torch.testing.assert_close(on.marginals, out.marginals, rtol=0, atol=0)
    # ... and through the model's own forward
    assert model(**inputs).marginals is None
    torch.testing.assert_close(model(**inputs, output_marginals=True).marginals, out.marginals, rtol=0, atol=0)


@pytest.mark.parametrize("crf_logits", ["max_marginals", "log_marginals"])
def test_pipeline_score_is_the_marginal_of_the_reported_tag(model_case, make_config, model_tokenizer, crf_logits):
    """With ``crf_logits="log_marginals"`` the pipeline's score is p(y_t = entity | x) and its entity the most
    probable tag; by default its entity is the Viterbi tag (and its score no probability)."""
    tokenizer = model_tokenizer
    model = _crf_model(model_case, make_config, vocab_size=len(tokenizer), crf_logits=crf_logits)
    text = "the king and the queen love the sea ."
    pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, device="cpu")
    entities = pipe(text, ignore_labels=[])
    encoded = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
    special = encoded.pop("special_tokens_mask")[0].bool()
    model.config.output_marginals = True
    with torch.no_grad():
        out = model(**encoded)
    marginals, predictions = out.marginals[0], out.predictions[0]
    assert sorted(e["index"] for e in entities) == (~special).nonzero().flatten().tolist()  # every word token
    gaps = []  # |score - p(y_t = entity | x)| per token
    for entity in entities:
        t, k = entity["index"], LABEL2ID[entity["entity"]]
        gaps.append(abs(float(entity["score"]) - float(marginals[t, k])))
        if crf_logits == "log_marginals":
            assert k == int(marginals[t].argmax())  # the most probable tag of the token
        else:
            assert k == int(predictions[t])  # the Viterbi tag
    if crf_logits == "log_marginals":
        assert max(gaps) < 1e-5
        assert min(float(e["score"]) for e in entities) < 0.95  # not vacuous: some token is uncertain
    else:
        assert max(gaps) > 1e-3  # what the option fixes: the default score is not the tag's probability
