"""WordCharTokenizerFast against what a transformers user expects of any fast tokenizer: the input forms of
``__call__`` (a batch of ``(text, text_pair)`` tuples, pre-split pairs), ``train_new_from_iterator``, the Auto round
trip through a folder laid out as the Hub cache, pickling, added tokens. Each expectation is checked against the
equivalent call, or against a stock fast tokenizer (the WordPiece one ``bizoo train-tokenizer`` writes) on the
same input form."""

from __future__ import annotations

import copy
import json
import pickle
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from bizoo.modeling.tokenization_wordchar import WordCharTokenizerFast
from bizoo.scripts.lib.wordpiece import train_wordpiece_tokenizer

TRAINING = [["the", "cat", "sat"], ["the", "café"], "on the mat ."]
W = 6


@pytest.fixture(scope="module")
def tok():
    return WordCharTokenizerFast.from_words(TRAINING, max_word_length=W, add_sentence_boundaries=True)


@pytest.fixture(scope="module")
def wordpiece():
    return train_wordpiece_tokenizer(["the cat sat on the café mat ."] * 4, vocab_size=60, min_frequency=1)


def assert_same(actual, expected):
    assert list(actual) == list(expected)
    for key in expected:
        if isinstance(expected[key], torch.Tensor):
            assert torch.equal(actual[key], expected[key]), key
        else:
            assert actual[key] == expected[key], key


# ----------------------------------------------------------------------------------------------------------------
# Input forms of __call__
# ----------------------------------------------------------------------------------------------------------------


def test_a_batch_of_text_pairs_is_read_as_pairs(tok, wordpiece):
    """``tokenizer([(premise, hypothesis), ...])`` is a batch of pairs, as for any fast tokenizer (the stock one
    below): the same encoding, ``char_ids`` included, as ``tokenizer(premises, hypotheses)``."""
    premises, hypotheses = ["the cat", "café"], ["sat on the mat", "the Zürich cat"]
    for tuples in ([("the cat", "sat on the mat"), ("café", "the Zürich cat")], [list(p) for p in zip(premises,
                                                                                                     hypotheses)]):
        expected_stock = wordpiece(premises, hypotheses)["input_ids"]
        assert wordpiece(tuples)["input_ids"] == expected_stock  # what transformers does
        kwargs = dict(padding=True, return_tensors="pt", return_token_type_ids=True, return_special_tokens_mask=True)
        batch = tok(tuples, **kwargs)
        assert_same(batch, tok(premises, hypotheses, **kwargs))
        assert batch["char_ids"].shape == (2, 10, W)
        assert batch["char_ids"][1, 4].tolist() == tok.word_to_char_ids("the")  # the second text's first word


def test_a_batch_of_pre_split_pairs_is_read_as_pairs(tok, wordpiece):
    pairs = [(["the", "cat"], ["sat", "café"]), (["Zürich"], ["the", "mat"])]
    firsts, seconds = [list(a) for a, _ in pairs], [list(b) for _, b in pairs]
    assert (wordpiece(pairs, is_split_into_words=True)["input_ids"]
            == wordpiece(firsts, seconds, is_split_into_words=True)["input_ids"])
    batch = tok(pairs, is_split_into_words=True, padding=True)
    assert_same(batch, tok(firsts, seconds, is_split_into_words=True, padding=True))
    assert batch.word_ids(1) == [None, 0, None, None, 0, 1, None, None]
    assert batch["char_ids"][1][1] == tok.word_to_char_ids("Zürich")
    with pytest.raises(ValueError, match=r"a batch item may also be a pair of such lists \(words, words\)"):
        tok([(["a"], ["b"], ["c"])], is_split_into_words=True)


# ----------------------------------------------------------------------------------------------------------------
# train_new_from_iterator
# ----------------------------------------------------------------------------------------------------------------


def test_train_new_from_iterator_builds_both_vocabularies(tok):
    """The new tokenizer knows the new corpus's characters, not only its words; the options are kept."""
    source = WordCharTokenizerFast.from_words(TRAINING, lowercase=True, max_word_length=W, model_max_length=16)
    source.padding_side = "left"
    new = source.train_new_from_iterator([["Dog bird", "dog"], "über dog ."], vocab_size=6)
    assert type(new) is WordCharTokenizerFast
    assert new.get_vocab() == {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "dog": 3, ".": 4, "bird": 5}
    assert set(new.char_vocab) - {"[PAD]", "[UNK]", "[MASK]", "<S>", "</S>"} == set("Dogbirdüe.")
    unknown = new.char_vocab["[UNK]"]
    assert unknown not in new("Dog über")["char_ids"][0] + new("Dog über")["char_ids"][1]
    for name in ("lowercase", "max_word_length", "char_scheme", "model_max_length", "padding_side"):
        assert getattr(new, name) == getattr(source, name), name
    assert new("DOG")["input_ids"] == [3]  # lowercase kept
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 6, got 5"):
        tok.train_new_from_iterator(["dog"], vocab_size=5)  # 5 special tokens with the boundaries
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['limit_alphabet'\]"):
        tok.train_new_from_iterator(["dog"], vocab_size=10, limit_alphabet=3)
    with pytest.raises(ValueError, match="new_special_tokens and special_tokens_map are not supported"):
        tok.train_new_from_iterator(["dog"], vocab_size=10, new_special_tokens=["<x>"])


# ----------------------------------------------------------------------------------------------------------------
# Saving, loading, copying
# ----------------------------------------------------------------------------------------------------------------


def test_auto_tokenizer_from_a_hub_cache_folder(tok, tmp_path, monkeypatch):
    """A repository id resolved from the Hub cache (offline) loads the same tokenizer as the folder it came from."""
    saved = tmp_path / "saved"
    tok.save_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({"model_type": "bilstm_crf"}))  # what names the tokenizer class
    revision = "0" * 40
    repo = tmp_path / "hub" / "models--org--wordchar"
    shutil.copytree(saved, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = AutoTokenizer.from_pretrained("org/wordchar", cache_dir=tmp_path / "hub")
    assert type(loaded) is WordCharTokenizerFast
    texts = ["The cat sat on the mat .", "Zürich [MASK]"]
    assert_same(loaded(texts, padding=True, return_tensors="pt"), tok(texts, padding=True, return_tensors="pt"))

    # A damaged file in the cache is a ValueError naming it, as in a folder (not a KeyError or a JSONDecodeError)
    cached = repo / "snapshots" / revision / "tokenizer.json"
    vocabulary_only = {"model": json.loads(cached.read_text(encoding="utf-8"))["model"]}
    for content, message in [("{not json", "is not valid JSON"), ("{}", "must hold a word vocabulary"),
                             (json.dumps(vocabulary_only), "has no list of added tokens")]:
        cached.write_text(content, encoding="utf-8")
        for loader in (AutoTokenizer, WordCharTokenizerFast):
            with pytest.raises(ValueError, match=message) as info:
                loader.from_pretrained("org/wordchar", cache_dir=tmp_path / "hub")
            assert str(cached) in str(info.value)


def test_pickle_deepcopy_and_added_tokens(tok):
    texts = ["the cat sat", "café Zürich"]
    expected = tok(texts, padding=True)
    for copied in (pickle.loads(pickle.dumps(tok)), copy.deepcopy(tok)):
        assert_same(copied(texts, padding=True), expected)
    grown = copy.deepcopy(tok)
    assert grown.add_tokens(["newword"]) == 1
    assert (len(grown), grown.vocab_size) == (len(tok) + 1, tok.vocab_size)  # a model is sized by len()
    encoding = grown("the newword")
    assert grown.convert_ids_to_tokens(encoding["input_ids"]) == ["<S>", "the", "newword", "</S>"]
    assert encoding["char_ids"][2] == grown.word_to_char_ids("newword") == grown.ids_to_char_ids([len(tok)])[0]
    assert len(tok) == grown.vocab_size  # the original is untouched


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_padding_a_batch_of_empty_texts_keeps_the_character_axis(return_tensors):
    """``pad`` (DataCollatorWithPadding's) of empty examples gives ``char_ids`` (B, 0, W), as ``__call__`` does, so
    that a model reading (B, L, W) is not handed a (B, 0) tensor; a batch with words is unchanged. (A tokenizer
    without sentence boundaries: an empty text has no token at all.)"""
    tok = WordCharTokenizerFast.from_words(["the cat sat", "a dog"])
    called = tok(["", ""], padding=True, return_tensors=return_tensors)
    padded = tok.pad([tok(""), tok("")], return_tensors=return_tensors)
    assert tuple(called["char_ids"].shape) == tuple(padded["char_ids"].shape) == (2, 0, tok.max_word_length)
    assert tuple(padded["input_ids"].shape) == (2, 0)
    mixed = tok.pad([tok("the cat"), tok("")], return_tensors=return_tensors)
    assert tuple(mixed["char_ids"].shape) == (2, len(tok("the cat")["input_ids"]), tok.max_word_length)
