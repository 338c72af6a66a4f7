"""The heads shared by every model (``modeling/heads.py``), each against an oracle written here from its definition:
pooling over real tokens by a loop, every loss by its formula, and the CRF head against brute force over every tag
path that the tag scheme allows (the scheme's rules written out here, not taken from ``kernels/crf/constraints``).
Through every registered model: each sequence classifier's loss, per problem type, is torch's own loss on the logits
it returns, and each row of a padded batch gets the logits it gets alone under every pooling the model offers.
"""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from bizoo.modeling.heads import (
    CrfTokenClassificationHead,
    MaskedLMHead,
    masked_lm_loss_and_logits,
    pool,
    sequence_classification_loss,
)
from tests.crf_rules import scheme_rules


def _padded_hidden(seed=0):
    """(B, L, d) hidden states whose padding holds large values, and a mask with right, left and no padding."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0  # right padding
    mask[1, :3] = 0  # left padding
    hidden = torch.where(mask[..., None].bool(), hidden, torch.full_like(hidden, 1e3))  # garbage where padded
    return hidden, mask


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_masked_lm_loss_is_the_mean_cross_entropy_and_training_logits_may_be_sparse(sparse):
    """The loss is the mean cross-entropy over the labelled positions of the (B, L, V) logits, in training and in
    evaluation; in training with ``sparse_prediction`` the logits are those rows only, (N, V) in row-major order, and
    in evaluation always (B, L, V)."""
    config = SimpleNamespace(encoder_output_size=6, embedding_size=5, hidden_act="gelu", layer_norm_eps=1e-12,
                             vocab_size=11, sparse_prediction=sparse)
    torch.manual_seed(0)
    head = MaskedLMHead(config)
    hidden = torch.randn(2, 7, 6)
    labels = torch.randint(0, 11, (2, 7)).masked_fill(torch.rand(2, 7) < 0.6, -100)
    labels[0, 0] = 3  # at least one labelled position
    dense = head(hidden)  # (B, L, V)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(dense[keep], labels[keep])
    for training in (True, False):
        head.train(training)
        loss, logits = masked_lm_loss_and_logits(head, hidden, labels, config)
        torch.testing.assert_close(loss, expected)
        want = dense[keep] if sparse and training else dense  # (N, V) or (B, L, V)
        assert logits.shape == want.shape
        torch.testing.assert_close(logits, want)


def test_pooling_reads_real_tokens_only():
    hidden, mask = _padded_hidden()
    real = [[t for t in range(mask.shape[1]) if mask[b, t]] for b in range(mask.shape[0])]
    mean = torch.stack([hidden[b, r].sum(0) / len(r) for b, r in enumerate(real)])
    first = torch.stack([hidden[b, r[0]] for b, r in enumerate(real)])
    half = hidden.shape[-1] // 2
    final = torch.stack([torch.cat([hidden[b, r[-1], :half], hidden[b, r[0], half:]]) for b, r in enumerate(real)])
    torch.testing.assert_close(pool(hidden, mask, "mean"), mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(pool(hidden, mask, "first"), first, rtol=0, atol=0)
    torch.testing.assert_close(pool(hidden, mask, "final_states"), final, rtol=0, atol=0)


def _config(num_labels, problem_type=None):
    return SimpleNamespace(num_labels=num_labels, problem_type=problem_type)


@pytest.mark.parametrize("num_labels, label_shape", [(1, (4,)), (1, (4, 1)), (3, (4, 3))])
def test_regression_loss_is_the_mean_squared_error(num_labels, label_shape):
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(4, num_labels, generator=g)
    labels = 3 * torch.randn(*label_shape, generator=g)
    expected = sum((float(x) - float(y)) ** 2 for x, y in zip(logits.flatten(), labels.flatten())) / logits.numel()
    config = _config(num_labels, None if num_labels == 1 else "regression")  # float labels of 3: multi-label if unset
    loss = sequence_classification_loss(logits, labels, config)
    assert math.isclose(float(loss), expected, rel_tol=1e-5)
    # num_items_in_batch (the Trainer's count over an accumulated batch) divides the sum instead
    loss = sequence_classification_loss(logits, labels, config, num_items_in_batch=torch.tensor(10))
    assert math.isclose(float(loss), expected * logits.numel() / 10, rel_tol=1e-5)


def test_multi_label_loss_is_binary_cross_entropy_on_logits():
    g = torch.Generator().manual_seed(2)
    logits = 3 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0.25, 0.5, 1]], dtype=torch.float64)
    terms = [-(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
             for x, y in zip(logits.flatten().tolist(), labels.flatten().tolist())]
    loss = sequence_classification_loss(logits, labels, _config(3, "multi_label_classification"))
    assert math.isclose(float(loss), sum(terms) / len(terms), rel_tol=1e-5)


# Every model's sequence classifier: its loss is torch's own loss of its problem type on the logits it returns.
SEQUENCE_CASES = {  # problem_type (None: inferred, as transformers does) -> num_labels and labels for a batch of 3
    "regression-1": (None, 1, lambda g: 3 * torch.randn(3, generator=g)),
    "regression": ("regression", 3, lambda g: 3 * torch.randn(3, 3, generator=g)),
    "single_label": ("single_label_classification", 3, lambda g: torch.tensor([2, -100, 0])),
    "multi_label": ("multi_label_classification", 3,
                    lambda g: torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.25, 0.0], [0.75, 1.0, 0.5]])),
}


def _torch_loss(problem_type, logits, labels):
    """torch's loss for ``problem_type`` on (B, num_labels) logits, the mean over labelled entries."""
    if problem_type == "regression":
        return torch.nn.functional.mse_loss(logits, labels.reshape(logits.shape))
    if problem_type == "single_label_classification":
        return torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)


@pytest.mark.parametrize("case", list(SEQUENCE_CASES))
def test_every_sequence_classifier_loss_is_torchs_loss_on_its_logits(model_case, make_config, make_inputs, case):
    """For every registered model: L1 for MSE, rounded multi-label targets, a wrong count of labelled rows or a
    divisor other than the number of labelled entries would each change the loss."""
    from transformers import AutoModelForSequenceClassification

    problem_type, num_labels, make_labels = SEQUENCE_CASES[case]
    config = make_config(model_case, num_labels=num_labels, problem_type=problem_type)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # widened: logits of order 1, so that every term of the loss matters
        for layer in (model.classifier.dense, model.classifier.out_proj):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))
    ids = torch.randint(5, 120, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # right padding
    mask[2, :2] = 0  # left padding
    labels = make_labels(g)
    out = model(**make_inputs(model_case, ids, mask), labels=labels)
    expected_type = problem_type or "regression"
    assert model.config.problem_type == expected_type
    assert out.logits.shape == (3, num_labels) and out.logits.abs().max() > 0.5  # not vacuous
    torch.testing.assert_close(out.loss, _torch_loss(expected_type, out.logits, labels), rtol=1e-5, atol=1e-6)
    # the Trainer's num_items_in_batch (over an accumulated batch) replaces the count here
    labelled = int((labels != -100).sum())
    out = model(**make_inputs(model_case, ids, mask), labels=labels, num_items_in_batch=torch.tensor(10))
    expected = _torch_loss(expected_type, out.logits, labels) * labelled / 10
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_every_sequence_classifier_reads_real_tokens_only(model_case, make_config, make_inputs):
    """For every pooling the model supports, each row of a padded batch (right and left padding, a hole; padded ids
    that are real words) gets the logits it gets alone: the pooling reads the real tokens only, whatever the model's
    mask handling. Not vacuous: the batch without its mask (every token real) gives other logits."""
    from transformers import AutoModelForSequenceClassification

    g = torch.Generator().manual_seed(6)
    ids = torch.randint(5, 120, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # right padding
    mask[1, :4] = 0  # left padding
    mask[2, 3] = 0  # a hole
    poolings = type(make_config(model_case)).supported_poolings
    assert {"mean", "first"} <= set(poolings)
    for pooling in poolings:
        config = make_config(model_case, num_labels=3, classifier_pooling=pooling)
        model = AutoModelForSequenceClassification.from_config(config).eval()
        with torch.no_grad():  # widened head: a wrongly pooled token or an average over padding shows
            for layer in (model.classifier.dense, model.classifier.out_proj):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
        logits = model(**make_inputs(model_case, ids, mask)).logits  # (3, 3)
        for b in range(3):
            real = mask[b].bool()
            alone = model(**make_inputs(model_case, ids[b : b + 1, real])).logits[0]  # (3,)
            torch.testing.assert_close(logits[b], alone, rtol=1e-4, atol=1e-5, msg=lambda m: f"{pooling}, row {b}: {m}")
        unmasked = model(**make_inputs(model_case, ids)).logits  # (3, 3): the padding read as real tokens
        assert (unmasked - logits).abs().max() > 1e-3, pooling  # 100 times the tolerance above


def test_single_label_loss_is_cross_entropy_over_labelled_rows():
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([2, -100, 0, 1])
    rows = [b for b in range(4) if labels[b] != -100]
    terms = [math.log(sum(math.exp(x) for x in logits[b].tolist())) - float(logits[b, labels[b]]) for b in rows]
    loss = sequence_classification_loss(logits, labels, _config(3))
    assert math.isclose(float(loss), sum(terms) / len(rows), rel_tol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# The CRF head against brute force over the paths the scheme allows
# ----------------------------------------------------------------------------------------------------------------

IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC"]
BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _brute_force(emissions, transitions, start, end, length, labels, scheme):
    """(best allowed path, log Z over allowed paths) of one sequence of ``length`` real tokens."""
    may_start, may_follow, may_end = scheme_rules(labels, scheme)
    K = len(labels)
    best, best_score, scores = None, -math.inf, []
    for path in itertools.product(range(K), repeat=length):
        names = [labels[k] for k in path]
        if not (may_start(names[0]) and may_end(names[-1])
                and all(may_follow(a, b) for a, b in zip(names, names[1:]))):
            continue
        s = float(start[path[0]] + end[path[-1]]) + sum(float(emissions[t, k]) for t, k in enumerate(path))
        s += sum(float(transitions[a, b]) for a, b in zip(path, path[1:]))
        scores.append(s)
        if s > best_score:
            best, best_score = path, s
    top = max(scores)
    return list(best), top + math.log(sum(math.exp(s - top) for s in scores))


def _path_score(emissions, transitions, start, end, path):
    s = float(start[path[0]] + end[path[-1]]) + sum(float(emissions[t, k]) for t, k in enumerate(path))
    return s + sum(float(transitions[a, b]) for a, b in zip(path, path[1:]))


@pytest.mark.parametrize("labels, scheme", [(IOBES, "IOBES"), (BIO, "BIO")], ids=["IOBES", "BIO"])
def test_crf_head_decodes_and_scores_as_brute_force_over_allowed_paths(labels, scheme):
    K, d = len(labels), 6
    config = SimpleNamespace(
        num_labels=K, id2label=dict(enumerate(labels)), tag_scheme=scheme, classifier_dropout=0.0,
        hidden_dropout_prob=0.0, encoder_output_size=d, kernel_backend="reference",
    )
    head = CrfTokenClassificationHead(config).double().eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # widened: every score matters, so a lost constraint changes the best path
        for p in (head.crf.transitions, head.crf.start, head.crf.end, head.classifier.weight):
            p.copy_(2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    B, L = 6, 4
    hidden = torch.randn(B, L, d, generator=g, dtype=torch.float64)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 3:] = 0
    mask[2, 1:] = 0
    emissions = head.classifier(hidden).detach()  # (B, L, K)
    raw = [t.detach() for t in (head.crf.transitions, head.crf.start, head.crf.end)]
    golds, nll = [], 0.0
    for b in range(B):
        n = int(mask[b].sum())
        path, log_z = _brute_force(emissions[b, :n], *raw, n, labels, scheme)
        golds.append(path + [-100] * (L - n))
        nll += log_z - _path_score(emissions[b, :n], *raw, path)
    gold = torch.tensor(golds)
    loss, logits, predictions = head(hidden, mask, labels=gold)
    assert predictions.tolist() == golds
    assert math.isclose(float(loss.detach()), nll / int(mask.sum()), rel_tol=1e-5)  # the head scores in fp32
