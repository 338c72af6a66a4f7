"""WordCharTokenizerFast: word ids and character ids, hand-checked for both character schemes; the characters of an
out-of-vocabulary word; the word-lookup normalisation; padding through ``tokenizer.pad``, both data collators and
the pipelines; pre-split words; special tokens; saving and loading through AutoTokenizer; clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedConfig,
    PreTrainedModel,
    pipeline,
)
from transformers.modeling_outputs import TokenClassifierOutput

from bizoo.modeling.tokenization_wordchar import (
    BILM_CHAR_VOCAB_SIZE,
    WordCharTokenizerFast,
    build_pre_tokenizer,
    register_auto_tokenizer,
)

# Words: the x2, then café, cat, sat (ties alphabetical: "café" < "cat"). Characters by frequency, ties in code-point
# order: t(4) a(3) c(2) e(2) h(2) f(1) s(1) é(1).
TRAINING = [["the", "cat", "sat"], ["the", "café"]]
WORDS = {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "the": 3, "café": 4, "cat": 5, "sat": 6}
CHARS = {"t": 5, "a": 6, "c": 7, "e": 8, "h": 9, "f": 10, "s": 11, "é": 12}
W = 6  # max_word_length in most tests


def row(*ids, width=W):
    return list(ids) + [0] * (width - len(ids))


def bilm_row(data: bytes, width=W):
    """bilm-tf's ids, +1: [begin-of-word, bytes..., end-of-word, padding...]."""
    ids = [259] + [b + 1 for b in data[: width - 2]] + [260]
    return ids + [261] * (width - len(ids))


@pytest.fixture(scope="module")
def tok():
    return WordCharTokenizerFast.from_words(TRAINING, max_word_length=W)


@pytest.fixture(scope="module")
def bilm():
    return WordCharTokenizerFast.from_words(
        TRAINING, char_scheme="bilm", max_word_length=W, add_sentence_boundaries=True
    )


class ThrowawayWordCharConfig(PreTrainedConfig):
    """A config class of no model, to register the tokenizer with AutoTokenizer in these tests."""

    model_type = "bizoo_test_wordchar"


# ----------------------------------------------------------------------------------------------------------------
# Vocabularies and character ids
# ----------------------------------------------------------------------------------------------------------------


def test_vocabularies_from_words(tok):
    assert tok.get_vocab() == WORDS
    assert {k: v for k, v in tok.char_vocab.items() if len(k) == 1} == CHARS
    assert [tok.char_vocab[k] for k in ("[PAD]", "[UNK]", "[MASK]", "<S>", "</S>")] == [0, 1, 2, 3, 4]
    assert tok.char_vocab_size == 13
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token_id) == (0, 1, 2)
    assert tok.bos_token is None and tok.eos_token is None


def test_vocab_scheme_char_ids_by_hand(tok):
    encoding = tok("The cat ate café!")
    # "The" and "ate" and "!" are not words of the vocabulary: [UNK], but their characters are kept
    assert encoding["input_ids"] == [1, 5, 1, 4, 1]
    assert encoding["char_ids"] == [
        row(1, 9, 8),  # T (unseen character) h e
        row(7, 6, 5),  # c a t
        row(6, 5, 8),  # a t e
        row(7, 6, 10, 12),  # c a f é
        row(1),  # !
    ]
    assert list(encoding) == ["input_ids", "attention_mask", "char_ids"]


def test_bilm_char_ids_by_hand(bilm):
    assert bilm.char_vocab is None and bilm.char_vocab_size == BILM_CHAR_VOCAB_SIZE == 262
    encoding = bilm("café ab é [MASK]", return_special_tokens_mask=True)
    assert bilm.convert_ids_to_tokens(encoding["input_ids"]) == ["<S>", "café", "[UNK]", "[UNK]", "[MASK]", "</S>"]
    assert encoding["special_tokens_mask"] == [1, 0, 0, 0, 0, 1]
    assert encoding["char_ids"] == [
        [259, 257, 260, 261, 261, 261],  # <S>: begin-of-sentence character 256, +1
        [259, 100, 98, 103, 196, 260],  # c a f C3: 5 bytes cut to max_word_length - 2 = 4 (inside é, as bilm-tf)
        [259, 98, 99, 260, 261, 261],  # a b
        [259, 196, 170, 260, 261, 261],  # é = C3 A9, +1
        [259, 256, 260, 261, 261, 261],  # [MASK]: the byte 0xFF, never in UTF-8 text
        [259, 258, 260, 261, 261, 261],  # </S>: end-of-sentence character 257, +1
    ]
    assert encoding["char_ids"][3] == bilm_row("é".encode())


def test_long_words_are_truncated(tok, bilm):
    assert tok("cafécafé")["char_ids"] == [[7, 6, 10, 12, 7, 6]]
    assert bilm("abcdefgh", add_special_tokens=False)["char_ids"] == [[259, 98, 99, 100, 101, 260]]
    assert bilm.word_to_char_ids("") == [259, 260, 261, 261, 261, 261]


def test_lowercase_and_digits_apply_to_the_word_lookup_only():
    tok = WordCharTokenizerFast.from_words(
        ["Paris 1996 paris", ["Paris", "U.S."]], lowercase=True, digits_to_zero=True, max_word_length=5
    )
    assert tok.convert_ids_to_tokens(list(range(3, len(tok)))) == ["paris", "0000", "u.s."]
    chars = tok.char_vocab  # from the original spellings: "P" and "S" but no "0", "A", "R", "I"
    assert "0" not in chars and "A" not in chars and {"P", "S", "1", "9", "6"} <= set(chars)
    encoding = tok("pARIS 1969 U.S. Rome")
    assert tok.convert_ids_to_tokens(encoding["input_ids"]) == ["paris", "0000", "u.s.", "[UNK]"]
    assert encoding["char_ids"][0] == [chars["p"], 1, 1, 1, chars["S"]]  # not lowercased: A R I unseen
    assert encoding["char_ids"][1] == [chars["1"], chars["9"], chars["6"], chars["9"], 0]  # not zeros
    assert encoding["char_ids"][3] == [1, 1, 1, 1, 0]  # Rome: an unknown word of 4 unseen characters
    plain = WordCharTokenizerFast.from_words(["Paris 1996 PARIS"])
    assert plain.convert_ids_to_tokens(list(range(3, len(plain)))) == ["1996", "PARIS", "Paris"]


def test_from_words_frequency_order_and_limits():
    sentences = ["b b b a a c d d e", ["a", "e"]]
    tok = WordCharTokenizerFast.from_words(sentences)
    assert tok.convert_ids_to_tokens(list(range(3, len(tok)))) == ["a", "b", "d", "e", "c"]  # 3 3 2 2 1
    assert len(WordCharTokenizerFast.from_words(sentences, min_frequency=2)) == 3 + 4
    small = WordCharTokenizerFast.from_words(sentences, max_vocab_size=5)
    assert small.convert_ids_to_tokens(list(range(len(small)))) == ["[PAD]", "[UNK]", "[MASK]", "a", "b"]
    with_boundaries = WordCharTokenizerFast.from_words(sentences, add_sentence_boundaries=True, max_vocab_size=6)
    assert with_boundaries.convert_ids_to_tokens(list(range(6))) == ["[PAD]", "[UNK]", "[MASK]", "<S>", "</S>", "a"]


def test_ids_to_char_ids(tok, bilm):
    assert tok.ids_to_char_ids([5, 0, 2, 1]) == [row(7, 6, 5), row(), row(2), row(1, 1, 1, 1, 1)]  # [UNK] as spelled
    assert bilm.ids_to_char_ids([bilm.bos_token_id, bilm.mask_token_id]) == [
        [259, 257, 260, 261, 261, 261],
        [259, 256, 260, 261, 261, 261],
    ]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.ids_to_char_ids([99])


# ----------------------------------------------------------------------------------------------------------------
# Pre-tokenisation and pre-split words
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Peter Blackburn 1996-08-30", ["Peter", "Blackburn", "1996-08-30"]),
        ("an all-rounder from the U.S.", ["an", "all-rounder", "from", "the", "U.S."]),
        ("don't stop, can't stop", ["do", "n't", "stop", ",", "ca", "n't", "stop"]),
        ("Germany's O'Neill I'd", ["Germany", "'s", "O'Neill", "I", "'d"]),
        ("1,000 at 3.5% at 10:30 (1/2)", ["1,000", "at", "3.5", "%", "at", "10:30", "(", "1/2", ")"]),
        ("the end. Mr. Smith... --", ["the", "end", ".", "Mr", ".", "Smith", "...", "--"]),
        ('"Zürich" e.g. AT&T -5', ['"', "Zürich", '"', "e.g.", "AT&T", "-", "5"]),
    ],
)
def test_pre_tokenisation_rule(text, tokens):
    assert [piece for piece, _ in build_pre_tokenizer().pre_tokenize_str(text)] == tokens


def test_split_words_stay_whole_and_align_labels(tok, bilm):
    words = ["The", "U.S.", "don't", "café", "Germany's"]
    encoding = tok(words, is_split_into_words=True)
    assert encoding.word_ids() == [0, 1, 2, 3, 4]  # one token per word, none split
    assert encoding["input_ids"] == [1, 1, 1, 4, 1]
    assert encoding["char_ids"][2] == row(1, 1, 1, 1, 5)  # d o n ' t: unseen but for t
    assert tok("don't")["input_ids"] == [1, 1]  # raw text is pre-tokenised: do n't

    # First-word alignment of word labels, with boundaries (special tokens get -100)
    labels = [1, 2, 0, 0, 2]
    batch = bilm([words, words[:2]], is_split_into_words=True, padding=True, return_tensors="pt")
    assert batch.word_ids(0) == [None, 0, 1, 2, 3, 4, None]
    assert batch.word_ids(1) == [None, 0, 1, None, None, None, None]
    aligned = [-100 if w is None else labels[w] for w in batch.word_ids(0)]
    assert aligned == [-100, 1, 2, 0, 0, 2, -100]
    assert batch["char_ids"].shape == (2, 7, W)
    assert batch["char_ids"][1, 4:].eq(0).all() and batch["char_ids"][1, 3, 1] == 258  # </S> then padding
    assert batch["char_ids"][0, 2].tolist() == bilm_row(b"U.S.")


def test_pairs_truncation_and_overflow(tok):
    pair = tok("the cat", "sat café")
    assert pair["input_ids"] == [3, 5, 6, 4]
    assert pair["char_ids"][2:] == [row(11, 6, 5), row(7, 6, 10, 12)]
    text = "the cat sat on the café"
    chunks = tok(text, truncation=True, max_length=3, stride=1, return_overflowing_tokens=True,
                 return_offsets_mapping=True)
    assert chunks["overflow_to_sample_mapping"] == [0, 0, 0]
    for ids, chars, offsets in zip(chunks["input_ids"], chunks["char_ids"], chunks["offset_mapping"]):
        assert len(ids) == len(chars) == len(offsets) <= 3
        assert chars == [tok.word_to_char_ids(text[s:e]) for s, e in offsets]
    truncated = tok([text, "cat"], truncation=True, max_length=2, padding="max_length", return_tensors="np")
    assert truncated["char_ids"].shape == (2, 2, W)
    assert truncated["char_ids"][1, 1].tolist() == row()


# ----------------------------------------------------------------------------------------------------------------
# Padding: __call__, tokenizer.pad, the data collators
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
def test_call_and_pad_agree_on_both_sides(tok, side):
    texts = ["the cat", "sat on the café"]
    padded = tok(texts, padding=True, padding_side=side, return_tensors="pt")
    assert padded["char_ids"].shape == (2, 4, W)
    short = padded["char_ids"][0]
    real, pads = (short[:2], short[2:]) if side == "right" else (short[2:], short[:2])
    assert real.tolist() == [row(5, 9, 8), row(7, 6, 5)] and pads.eq(0).all()

    features = [tok(text) for text in texts]
    by_pad = tok.pad(features, padding_side=side, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "char_ids"):
        assert torch.equal(by_pad[key], padded[key]), key
    by_multiple = tok.pad(features, padding_side=side, pad_to_multiple_of=8)
    assert [len(r) for r in by_multiple["char_ids"]] == [8, 8] and all(len(r) == W for r in by_multiple["char_ids"][0])


def test_return_tensors_keep_the_batch_axis(tok):
    single = tok("the cat", return_tensors="pt")
    assert single["input_ids"].shape == (1, 2) and single["char_ids"].shape == (1, 2, W)
    assert single["char_ids"].dtype == torch.int64
    assert tok(["", "cat"], padding=True, return_tensors="np")["char_ids"].shape == (2, 1, W)
    assert tok("", return_tensors="pt")["char_ids"].shape == (1, 0, W)
    empty = tok.pad({"input_ids": [], "char_ids": []})
    assert empty["char_ids"] == []


def test_data_collator_with_padding(tok):
    features = [dict(tok(text)) for text in ["the", "the cat sat"]]
    batch = DataCollatorWithPadding(tok)(features)
    assert batch["char_ids"].shape == (2, 3, W)
    assert batch["char_ids"][0, 1:].eq(0).all() and batch["attention_mask"][0].tolist() == [1, 0, 0]


@pytest.mark.parametrize("side", ["right", "left"])
def test_data_collator_for_token_classification(side):
    tok = WordCharTokenizerFast.from_words(TRAINING, max_word_length=W)
    tok.padding_side = side
    features = []
    for words, labels in [(["the", "cat"], [1, 2]), (["the", "Zürich", "sat", "café"], [0, 3, 0, 1])]:
        encoding = tok(words, is_split_into_words=True)
        encoding["labels"] = [labels[w] for w in encoding.word_ids()]
        features.append(dict(encoding))
    batch = DataCollatorForTokenClassification(tok)(features)
    assert batch["char_ids"].shape == (2, 4, W) and batch["labels"].shape == (2, 4)
    real = slice(0, 2) if side == "right" else slice(2, 4)
    pads = slice(2, 4) if side == "right" else slice(0, 2)
    assert batch["labels"][0, real].tolist() == [1, 2] and batch["labels"][0, pads].tolist() == [-100, -100]
    assert batch["char_ids"][0, real].tolist() == [row(5, 9, 8), row(7, 6, 5)]
    assert batch["char_ids"][0, pads].eq(0).all()
    assert batch["char_ids"][1, 1].tolist() == row(1, 1, 1, 1, 7, 9)  # Z ü r i c h: OOV, characters kept


def test_pad_rejects_char_ids_of_another_length(tok):
    with pytest.raises(ValueError, match="char_ids has 1 rows but input_ids has 2 tokens"):
        tok.pad([{"input_ids": [3, 5], "char_ids": [row(5)]}, {"input_ids": [3], "char_ids": [row(5)]}])


# ----------------------------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["vocab", "bilm"])
def test_save_and_load_through_auto_tokenizer(tmp_path, scheme):
    tok = WordCharTokenizerFast.from_words(
        ["The cat sat on the mat in 1996 .", ["U.S.", "Zürich"]], lowercase=True, digits_to_zero=True,
        char_scheme=scheme, max_word_length=7, add_sentence_boundaries=scheme == "bilm", model_max_length=32,
    )
    tok.save_pretrained(tmp_path)
    register_auto_tokenizer(ThrowawayWordCharConfig)
    register_auto_tokenizer(ThrowawayWordCharConfig)  # idempotent
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is WordCharTokenizerFast
    for name in ("lowercase", "digits_to_zero", "char_scheme", "max_word_length", "add_sentence_boundaries",
                 "char_vocab", "model_max_length", "padding_side"):
        assert getattr(loaded, name) == getattr(tok, name), name
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.all_special_tokens == tok.all_special_tokens
    texts = ["THE Cat sat in 2024 in Zürich!", "U.S. [MASK] mat"]
    kwargs = dict(padding=True, return_special_tokens_mask=True, return_tensors="pt")
    expected, actual = tok(texts, **kwargs), loaded(texts, **kwargs)
    assert list(actual) == list(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


# ----------------------------------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------------------------------


class CharTaggerConfig(PreTrainedConfig):
    model_type = "bizoo_test_char_tagger"


class CharTagger(PreTrainedModel):
    """Tags each word with its number of characters (from char_ids only): LEN0..LEN5."""

    config_class = CharTaggerConfig
    base_model_prefix = "tagger"

    def __init__(self, config):
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))
        self.post_init()

    def _init_weights(self, module):
        if module is self:
            nn.init.ones_(self.scale)

    def forward(self, input_ids, char_ids, attention_mask=None):
        assert char_ids.shape[:2] == input_ids.shape
        lengths = (char_ids > 0).sum(-1).clamp(max=5)  # (B, L)
        return TokenClassifierOutput(logits=10 * self.scale * nn.functional.one_hot(lengths, 6).float())


def test_token_classification_and_feature_extraction_pipelines(tok):
    labels = {i: f"LEN{i}" for i in range(6)}
    model = CharTagger(CharTaggerConfig(id2label=labels, label2id={v: k for k, v in labels.items()})).eval()
    tagger = pipeline("token-classification", model=model, tokenizer=tok, device="cpu")
    entities = tagger("The Zürich cat!")
    assert [(e["word"], e["entity"], e["start"], e["end"]) for e in entities] == [
        ("The", "LEN3", 0, 3), ("Zürich", "LEN5", 4, 10), ("cat", "LEN3", 11, 14), ("!", "LEN1", 14, 15),
    ]
    batched = tagger(["the cat", "Zürich"], batch_size=2)  # the pipeline pads char_ids itself
    assert [[e["entity"] for e in out] for out in batched] == [["LEN3", "LEN3"], ["LEN5"]]
    split = tagger(["U.S.", "café"], is_split_into_words=True)[0]  # a batch of one sentence
    assert [(e["word"], e["entity"]) for e in split] == [("U.S.", "LEN4"), ("café", "LEN4")]

    extractor = pipeline("feature-extraction", model=model, tokenizer=tok, device="cpu")
    with torch.no_grad():
        direct = model(**tok("cat Zürich", return_tensors="pt")).logits
    assert torch.tensor(extractor("cat Zürich")).equal(direct)


# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(char_scheme="bytes"), ValueError, "char_scheme must be one of ('vocab', 'bilm'), got 'bytes'"),
        (dict(max_word_length=0), ValueError, "max_word_length must be an integer >= 1, got 0"),
        (dict(char_scheme="bilm", max_word_length=2), ValueError, "max_word_length must be an integer >= 3, got 2"),
        (dict(lowercase="yes"), ValueError, "lowercase must be True or False, got 'yes'"),
        (dict(char_scheme="bilm", char_vocab={"a": 0}), ValueError, "char_vocab must be None with char_scheme='bilm'"),
        (dict(vocab={"[UNK]": 0, "[PAD]": 1, "[MASK]": 2}), ValueError, "vocab must map '[PAD]' to 0 and '[UNK]' to 1"),
        (dict(vocab={"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "cat": 3}), ValueError, "needs a char_vocab"),
        (dict(vocab={"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "<S>": 3}, char_scheme="bilm", add_sentence_boundaries=True),
         ValueError, "vocab lacks the special tokens ['</S>']"),
        (dict(char_vocab={"[PAD]": 0, "a": 1}), ValueError, "char_vocab must hold the reserved entries"),
        (dict(char_vocab={"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "<S>": 3, "</S>": 4, "ab": 5}), ValueError,
         "char_vocab key 'ab' is neither one character"),
        (dict(char_vocab={"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "<S>": 3, "</S>": 4, "a": 9}), ValueError,
         "char_vocab ids must be 0..5"),
    ],
)
def test_bad_options(kwargs, error, message):
    with pytest.raises(error) as info:
        WordCharTokenizerFast(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "data, kwargs, error, message",
    [
        ("the cat", {}, TypeError, "not a single string"),
        ([], {}, ValueError, "no training words"),
        (["  ", ["", ""]], {}, ValueError, "no training words"),
        (["the", 3], {}, TypeError, "item 1 must be a text (str) or a list of words (str), got 3"),
        ([["the", None]], {}, TypeError, "item 0 must be a text"),
        (["the"], dict(min_frequency=0), ValueError, "min_frequency must be an integer >= 1, got 0"),
        (["the"], dict(max_vocab_size=3), ValueError, "max_vocab_size must be an integer >= 4, got 3"),
        (["the"], dict(model_max_length=0), ValueError, "model_max_length must be an integer >= 1"),
        (["the"], dict(char_scheme="bilm", max_word_length=1), ValueError, "max_word_length must be an integer >= 3"),
    ],
)
def test_bad_training_data(data, kwargs, error, message):
    with pytest.raises(error) as info:
        WordCharTokenizerFast.from_words(data, **kwargs)
    assert message in str(info.value)
