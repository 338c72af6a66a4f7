"""The CRF head as an NER user drives it: tag schemes read from id2label, gold paths that break them (on a CPU and
on a GPU, where the check is read later), partial annotation, id2label changed after the head was built."""

import pytest
import torch
from transformers import AutoModelForTokenClassification

import bizoo
from bizoo.kernels.crf import crf_log_likelihood
from bizoo.kernels.crf.constraints import allowed_transitions, constraint_scores, is_legal_path

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]


def crf_tagger(labels, **overrides):
    config = bizoo.LionConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, chunk_size=8, hidden_dropout_prob=0.0, use_crf=True,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}, **overrides,
    )
    return AutoModelForTokenClassification.from_config(config)


def ids(batch=2, length=5):
    return torch.randint(1, 50, (batch, length), generator=torch.Generator().manual_seed(1))


def test_broken_gold_path_names_the_scheme_and_the_step():
    model = crf_tagger(BIO)
    labels = torch.tensor([[0, 1, 2, 0, 0], [0, 0, 4, 0, 0]])  # row 1: O then I-LOC
    with pytest.raises(ValueError) as error:
        model(input_ids=ids(), labels=labels)
    message = str(error.value)
    assert "batch rows [1]" in message
    assert "'BIO' (tag_scheme='auto'" in message
    assert "'O' (position 1) followed by 'I-LOC' (position 2)" in message


def test_broken_gold_path_across_a_hole_and_at_the_ends():
    model = crf_tagger(IOBES, tag_scheme="IOBES")
    mask = torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1]])
    labels = torch.tensor([[0, 1, -100, 0, 0], [0, 0, 0, 0, 1]])  # B-PER then O across the hole; B-PER last
    step = r"rows \[0, 1\].*'IOBES'.*'B-PER' \(position 1\) followed by 'O' \(position 3\)"
    with pytest.raises(ValueError, match=step):
        model(input_ids=ids(), attention_mask=mask, labels=labels)
    with pytest.raises(ValueError, match=r"rows \[1\].*'B-PER' at the last real position \(4\)"):
        model(input_ids=ids(), attention_mask=mask, labels=torch.tensor([[0, 4, -100, 0, 0], [0, 0, 0, 0, 1]]))


def test_partial_annotation_bridges_what_the_scheme_needs():
    """-100 at a real token is marginalised: B-PER, ?, O is legal in IOBES (the ? can be E-PER), and the loss is
    -log of the probability of every legal completion, as the ops give it."""
    model = crf_tagger(IOBES).eval()
    labels = torch.tensor([[0, 1, -100, 0, 4], [-100, 4, 0, 1, 3]])
    out = model(input_ids=ids(), labels=labels)
    assert torch.isfinite(out.loss)
    for row in out.predictions:
        assert is_legal_path(row, IOBES, "IOBES")


def test_broken_gold_path_on_a_gpu_is_an_error_not_an_infinite_loss(as_on_a_gpu):
    """On a GPU the check is read later (no host sync); meanwhile the loss leaves the broken row out, finite."""
    model = crf_tagger(BIO)
    good = torch.tensor([[0, 1, 2, 0, 0]])
    reference = model(input_ids=ids(1), labels=good).loss
    bizoo.wait_for_input_checks()
    labels = torch.cat([good, torch.tensor([[0, 0, 2, 0, 0]])])  # row 1: O then I-PER
    out = model(input_ids=ids(), labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # the good row's loss, over the labelled tokens of both rows
    torch.testing.assert_close(out.loss, reference / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"batch rows \[1\] break the tag scheme 'BIO'"):
        bizoo.wait_for_input_checks()


def test_id2label_changed_after_building_rebuilds_the_constraints():
    model = crf_tagger(BIO).eval()
    with torch.no_grad():
        model.classifier.classifier.weight.normal_(0, 3)
    x = ids(4, 8)
    with torch.no_grad():
        for row in model(input_ids=x).predictions:  # the constraints of the first labels built and cached
            assert is_legal_path(row, BIO, "BIO")
    reordered = ["O", "B-PER", "B-LOC", "I-PER", "I-LOC"]
    model.config.id2label = dict(enumerate(reordered))
    model.config.label2id = {label: i for i, label in enumerate(reordered)}
    for row in model(input_ids=x).predictions:
        assert is_legal_path(row, reordered, "BIO")
    allowed = allowed_transitions(reordered, "BIO")
    expected = tuple(constraint_scores(a) for a in allowed)
    for got, want in zip(model.classifier.constraint_scores(torch.device("cpu")), expected):
        assert torch.equal(got, want)


def test_id2label_of_another_size_is_a_clear_error():
    model = crf_tagger(["O", "B-PER", "I-PER"])
    model.config.id2label = dict(enumerate(BIO))
    model.config.label2id = {label: i for i, label in enumerate(BIO)}
    with pytest.raises(ValueError, match="id2label has 5 labels .* built for 3 tags"):
        model(input_ids=ids())
    with pytest.raises(ValueError, match="id2label has 5 labels .* built for 3 tags"):
        model(input_ids=ids(), labels=torch.zeros(2, 5, dtype=torch.long))


def test_head_loss_is_the_ops_likelihood_with_partial_labels():
    """The loss is -Σ log p(known tags) / labelled tokens, with the scheme's -inf added to the parameters."""
    model = crf_tagger(BIO).eval()
    head = model.classifier
    captured = {}
    hook = head.classifier.register_forward_hook(lambda m, i, o: captured.__setitem__("e", o.float()))
    labels = torch.tensor([[-100, 1, -100, 2, 0], [0, 3, 4, -100, -100]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    out = model(input_ids=ids(), attention_mask=mask, labels=labels)
    hook.remove()
    transitions, start, end = head.crf_parameters(torch.device("cpu"))
    ll = crf_log_likelihood(captured["e"], mask.bool(), transitions, start, end, labels, backend="reference")
    labelled = ((labels != -100) & mask.bool()).sum()
    torch.testing.assert_close(out.loss, -ll.sum() / labelled, rtol=1e-5, atol=1e-6)


def test_several_broken_rows_on_a_gpu_name_the_first(as_on_a_gpu):
    model = crf_tagger(BIO)
    labels = torch.tensor([[0, 1, 2, 0, 0], [0, 0, 2, 0, 0], [4, 0, 0, 0, 0]])  # rows 1 and 2 break BIO
    assert torch.isfinite(model(input_ids=ids(3), labels=labels).loss)
    with pytest.raises(ValueError, match=r"batch rows \[1, \.\.\.\] break the tag scheme 'BIO'"):
        bizoo.wait_for_input_checks()
