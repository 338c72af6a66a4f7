"""transformers' pipelines over bizoo models saved to a folder with their tokenizer: what a batch of texts of
different lengths gives (the same as one text at a time), and where a pipeline's result points in the text."""

import pytest
import torch
from transformers import AutoModelForTokenClassification, pipeline

import bizoo
from tests.conftest import generated_sentences, tiny_config

LABELS = {0: "O", 1: "B-PER", 2: "I-PER"}


@pytest.fixture(scope="module")
def wordchar_tokenizer():
    return bizoo.WordCharTokenizerFast.from_words(generated_sentences(), model_max_length=64)


def saved_tagger(folder, model_case, tokenizer, use_crf):
    config = tiny_config(model_case, vocab_size=len(tokenizer), num_labels=3, id2label=LABELS,
                         label2id={v: k for k, v in LABELS.items()}, use_crf=use_crf, initializer_range=1.0)
    torch.manual_seed(0)
    AutoModelForTokenClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def entities(results):
    """Each entity's (label, word, start, end, score to 1e-5): "entity" per token, "entity_group" aggregated."""
    def key(e):
        return e.get("entity", e.get("entity_group")), e["word"], e["start"], e["end"], round(float(e["score"]), 5)

    return [[key(e) for e in r] for r in results]


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_wordchar_offsets_of_a_text_without_words_are_pairs(wordchar_tokenizer, return_tensors):
    """A text without words has offsets of shape (rows, 0, 2), as a text with words has (rows, L, 2) (not (rows, 0),
    which a pipeline cannot stack with the other rows of its batch); char_ids likewise (rows, 0, W)."""
    batch = wordchar_tokenizer(["", "   "], return_offsets_mapping=True, return_tensors=return_tensors)
    assert tuple(batch["offset_mapping"].shape) == (2, 0, 2)
    assert tuple(batch["char_ids"].shape) == (2, 0, wordchar_tokenizer.max_word_length)
    one = wordchar_tokenizer("", return_offsets_mapping=True, return_tensors=return_tensors)
    assert tuple(one["offset_mapping"].shape) == (1, 0, 2)
    words = wordchar_tokenizer(["the king"], return_offsets_mapping=True, return_tensors=return_tensors)
    assert words["offset_mapping"].tolist() == [[[0, 3], [4, 8]]]


@pytest.mark.parametrize("case", [("bilstm_crf", "cnn"), ("elmo", "default")], ids=lambda c: c[0])
@pytest.mark.parametrize("aggregation_strategy", ["none", "simple"])
def test_token_classification_batch_with_an_empty_text(tmp_path, wordchar_tokenizer, case,
                                                       aggregation_strategy):
    """A batch of a word+character tagger's pipeline may hold a text without words (empty, or spaces only): it has
    no entities, and every other text gets what it gets alone. (The empty text's offsets were (1, 0), and the
    pipeline's padding failed on them with torch's "expand(torch.LongTensor{[n, 2]}, size=[n]): the number of sizes
    provided (1) must be greater or equal to the number of dimensions in the tensor (2)".)"""
    folder = saved_tagger(tmp_path / "tagger", case, wordchar_tokenizer, use_crf=True)
    tagger = pipeline("token-classification", model=folder, device="cpu", ignore_labels=[],
                      aggregation_strategy=aggregation_strategy)
    texts = ["", "the king and the queen .", "   ", "sweet prince"]
    batched = tagger(texts, batch_size=4)
    assert batched[0] == [] and batched[2] == []
    alone = [tagger(text) for text in (texts[1], texts[3])]
    assert entities([batched[1], batched[3]]) == entities(alone)
    assert all(text[e["start"]:e["end"]] == e["word"] for text, r in zip(texts, batched) for e in r)


def test_token_classification_batch_of_pre_split_sentences_with_an_empty_one(tmp_path, wordchar_tokenizer):
    """``is_split_into_words=True``: a sentence of empty words only (no token) in a batch has no entities, and the
    offsets of the others point at their words in the words joined by spaces. (It failed with torch's "The expanded
    size of the tensor (2) must match the existing size (0)".)"""
    folder = saved_tagger(tmp_path / "tagger", ("bilstm_crf", "cnn"), wordchar_tokenizer, use_crf=False)
    tagger = pipeline("token-classification", model=folder, device="cpu", ignore_labels=[])
    sentences = [["the", "", "king"], ["", ""], ["Zürich", "queen"]]
    batched = tagger(sentences, is_split_into_words=True, batch_size=3)
    assert batched[1] == []
    for words, result in zip(sentences, batched):
        text = " ".join(words)
        assert [text[e["start"]:e["end"]] for e in result] == [word for word in words if word]
    alone = tagger([sentences[0]], is_split_into_words=True) + tagger([sentences[2]], is_split_into_words=True)
    assert entities([batched[0], batched[2]]) == entities(alone)


@pytest.mark.parametrize("use_crf", [True, False], ids=["crf", "softmax"])
def test_a_text_without_words_alone_gets_what_it_gets_in_a_batch(tmp_path, wordchar_tokenizer, use_crf):
    """A BiLSTM-CRF pipeline over a text without words ("" or spaces: a blank line), run alone (``batch_size=1``,
    the default, and so also a list of texts): no entities, the class a batch gives it, features of length 0. It was
    a ``ValueError`` ("the batch is empty (batch=1, length=0)"): BERT's texts always hold [CLS] [SEP], a word+character
    tokenizer without sentence boundaries gives such a text no token."""
    from transformers import AutoModelForSequenceClassification

    case = ("bilstm_crf", "cnn")
    folder = saved_tagger(tmp_path / "tagger", case, wordchar_tokenizer, use_crf=use_crf)
    tagger = pipeline("token-classification", model=folder, device="cpu", ignore_labels=[])
    texts = ["the king and the queen .", "", "   "]
    assert tagger(texts) == tagger(texts, batch_size=3)  # one at a time, then in one batch
    assert tagger("") == [] and tagger("   ") == []

    config = tiny_config(case, vocab_size=len(wordchar_tokenizer), num_labels=3, initializer_range=1.0)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "classifier")
    wordchar_tokenizer.save_pretrained(tmp_path / "classifier")
    classify = pipeline("text-classification", model=str(tmp_path / "classifier"), device="cpu", top_k=None)
    alone, batched = classify(texts), classify(texts, batch_size=3)
    for a, b in zip(alone, batched):
        assert [r["label"] for r in a] == [r["label"] for r in b]
        assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-5)
    features = pipeline("feature-extraction", model=folder, device="cpu", return_tensors=True)("")
    assert features.shape[:2] == (1, 0)


@pytest.mark.parametrize("head", ["base", "token", "sequence", "masked-lm"])
def test_a_bilstm_crf_batch_of_length_0_runs_as_padding(head):
    """Rows of length 0 (B, 0) called directly: per-token outputs of length 0, pooled outputs those of an all-padding
    row, with hidden states and ``return_dict=False`` alike."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

    case = ("bilstm_crf", "lstm")
    cls = {"base": AutoModel, "token": AutoModelForTokenClassification,
           "sequence": AutoModelForSequenceClassification, "masked-lm": AutoModelForMaskedLM}[head]
    torch.manual_seed(0)
    model = cls.from_config(tiny_config(case, initializer_range=1.0)).eval()
    empty = dict(input_ids=torch.zeros(2, 0, dtype=torch.long), attention_mask=torch.zeros(2, 0, dtype=torch.long),
                 char_ids=torch.zeros(2, 0, 6, dtype=torch.long))
    padding = dict(input_ids=torch.zeros(2, 1, dtype=torch.long), attention_mask=torch.zeros(2, 1, dtype=torch.long),
                   char_ids=torch.zeros(2, 1, 6, dtype=torch.long))
    got = model(**empty, output_hidden_states=True)
    expected = model(**padding, output_hidden_states=True)
    for name, value in expected.items():
        if name == "hidden_states":
            assert [tuple(h.shape) for h in got[name]] == [(2, 0, h.shape[-1]) for h in value]
        elif head == "sequence":  # pooled: what an all-padding row gets
            torch.testing.assert_close(got[name], value)
        else:
            assert got[name].shape == (2, 0, *value.shape[2:]), name
    assert len(model(**empty, output_hidden_states=True, return_dict=False)) == len(got.to_tuple())
