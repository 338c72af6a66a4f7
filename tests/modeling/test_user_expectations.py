"""What a user who knows transformers expects of every registered model, beyond the conformance suite: new labels
given to ``from_pretrained`` as transformers users give them, a bad ``vocab_size`` refused by name, and the error for
float labels that transformers' inference reads as multi-label targets saying how to ask for what was meant.
"""

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification
from transformers.utils import logging

V = 120
OLD = ["O", "B-PER", "I-PER"]  # the label set a checkpoint was fine-tuned on
NEW = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]  # the label set it is fine-tuned on next


def ids(batch=2, length=7, seed=0):
    return torch.randint(5, V, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def quiet_loading():
    """transformers' load report (the re-initialised head) at error level only, for the test's duration."""
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    yield
    logging.set_verbosity(level)


# --------------------------------------------------------------------------------------------------------------
# New labels for a fine-tuned checkpoint: from_pretrained(path, id2label=...) alone, as transformers users pass it
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auto", [AutoModelForSequenceClassification, AutoModelForTokenClassification])
def test_a_new_id2label_alone_replaces_the_checkpoints_label_maps(model_case, make_config, make_inputs, tmp_path,
                                                                   quiet_loading, auto):
    """``from_pretrained(checkpoint, id2label=new, ignore_mismatched_sizes=True)`` on a checkpoint fine-tuned with
    its own labels: transformers sets the kwarg on the loaded config, beside the checkpoint's ``label2id``; the
    model gets both maps of the new labels (a CRF tagger's tag scheme read from them), and saves and reloads them."""
    old = make_config(model_case, vocab_size=V, id2label=dict(enumerate(OLD)), label2id={t: i for i, t in
                                                                                        enumerate(OLD)})
    auto.from_config(old).save_pretrained(tmp_path / "old")
    model = auto.from_pretrained(tmp_path / "old", id2label=dict(enumerate(NEW)), ignore_mismatched_sizes=True)
    assert model.config.id2label == dict(enumerate(NEW))
    assert model.config.label2id == {tag: i for i, tag in enumerate(NEW)}
    logits = model.eval()(**make_inputs(model_case, ids())).logits
    assert logits.shape[-1] == len(NEW)
    model.save_pretrained(tmp_path / "new")
    reloaded = auto.from_pretrained(tmp_path / "new").config
    assert reloaded.id2label == dict(enumerate(NEW)) and reloaded.label2id == model.config.label2id


def test_label_maps_given_alone_to_from_pretrained(model_case, make_config, tmp_path):
    """Renamed labels (same number), ids as JSON strings, ``label2id`` alone: each gives both maps; two maps given
    together that contradict each other are still refused, by name."""
    config = make_config(model_case, vocab_size=V, id2label=dict(enumerate(OLD)), label2id={t: i for i, t in
                                                                                           enumerate(OLD)})
    config.save_pretrained(tmp_path)
    renamed = AutoConfig.from_pretrained(tmp_path, id2label={0: "O", 1: "B-LOC", 2: "I-LOC"})
    assert renamed.label2id == {"O": 0, "B-LOC": 1, "I-LOC": 2}
    as_json = AutoConfig.from_pretrained(tmp_path, id2label={"0": "neg", "1": "pos"})
    assert as_json.id2label == {0: "neg", 1: "pos"} and as_json.label2id == {"neg": 0, "pos": 1}
    assert as_json.num_labels == 2
    alone = AutoConfig.from_pretrained(tmp_path, label2id={"neg": 0, "pos": 1})
    assert alone.id2label == {0: "neg", 1: "pos"} and alone.num_labels == 2
    loaded = AutoConfig.from_pretrained(tmp_path, id2label={0: "neg", 1: "pos"}, label2id={"neg": 1, "pos": 0})
    with pytest.raises(ValueError, match="label2id must be the inverse of id2label"):
        AutoModelForSequenceClassification.from_config(loaded)


# --------------------------------------------------------------------------------------------------------------
# vocab_size that is no number: a ValueError naming it
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "30522", [1]])
def test_a_vocab_size_that_is_no_number_is_refused_by_name(model_case, make_config, value):
    """Refused as every other field is (ARCHITECTURE.md §3), not by transformers' special-token validator comparing
    pad_token_id with it (a TypeError wrapped in huggingface_hub's StrictDataclassClassValidationError)."""
    with pytest.raises(ValueError, match=rf"vocab_size must be an int >= 1, got {value!r}".replace("[", r"\[")):
        make_config(model_case, vocab_size=value)


# --------------------------------------------------------------------------------------------------------------
# Float labels read as multi-label targets (problem_type=None): the error says how to ask for what was meant
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [
    torch.tensor([1.0, 0.0]),  # class ids stored as floats (a dataset's label column cast to float)
    torch.tensor([[2.5, 0.1], [1.0, 3.0]]),  # a regression over two outputs
], ids=["float-class-ids", "two-output-regression"])
def test_float_labels_read_as_multi_label_targets_say_how_to_ask_otherwise(model_case, make_config, make_inputs,
                                                                           labels):
    model = AutoModelForSequenceClassification.from_config(make_config(model_case, vocab_size=V, num_labels=2))
    inputs = make_inputs(model_case, ids())
    with pytest.raises(ValueError, match=r"problem_type=None.*labels\.long\(\).*problem_type='regression'"):
        model(**inputs, labels=labels)
    assert model.config.problem_type is None  # nothing stored by a refused call
    model.config.problem_type = "multi_label_classification"  # asked for: the error is only the targets'
    with pytest.raises(ValueError, match="multi-label labels") as refused:
        model(**inputs, labels=labels)
    assert "problem_type=None" not in str(refused.value)
    model.config.problem_type = "regression" if labels.dim() == 2 else "single_label_classification"
    assert torch.isfinite(model(**inputs, labels=labels if labels.dim() == 2 else labels.long()).loss)


# --------------------------------------------------------------------------------------------------------------
# type_vocab_size=0: a model without token-type embeddings (as RoBERTa-style checkpoints are used), in every model
# that has token types
# --------------------------------------------------------------------------------------------------------------


def test_a_model_without_token_types(model_case, make_config, make_inputs):
    config = make_config(model_case)
    if not hasattr(config, "type_vocab_size"):
        pytest.skip(f"{model_case[0]} has no token types")
    config = make_config(model_case, type_vocab_size=0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    assert not any("token_type" in name for name, _ in model.named_parameters())  # no table at all
    inputs = make_inputs(model_case, input_ids=ids())
    assert model(**inputs).logits.shape == (2, config.num_labels)
    with pytest.raises(ValueError, match=r"token_type_ids given but the model has no token types"):
        model(**inputs, token_type_ids=torch.ones_like(inputs["input_ids"]))
