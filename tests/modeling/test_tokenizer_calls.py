"""WordCharTokenizerFast driven as a transformers user drives a fast tokenizer: the calls a script or a collator
makes (special tokens, tensors, padding), each compared with what a stock fast tokenizer does on the same call or
with what the tokenizer documents."""

from __future__ import annotations

import pytest
from tokenizers import AddedToken

from bizoo.modeling.tokenization_wordchar import WordCharTokenizerFast

TRAINING = [["the", "cat", "sat"], ["the", "café"], "on the mat ."]
W = 6


def make(scheme: str = "vocab", boundaries: bool = True) -> WordCharTokenizerFast:
    return WordCharTokenizerFast.from_words(
        TRAINING, max_word_length=W, char_scheme=scheme, add_sentence_boundaries=boundaries
    )


# ----------------------------------------------------------------------------------------------------------------
# Special tokens
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["vocab", "bilm"])
@pytest.mark.parametrize(
    "key, value",
    [("mask_token", "<mask>"), ("pad_token", "<pad>"), ("unk_token", "<unk>"), ("bos_token", "<s>"),
     ("eos_token", "</s>")],
)
def test_replacing_a_fixed_special_token_is_refused(tmp_path, scheme, key, value):
    """The tokenizer is built on [PAD]=0, [UNK]=1, [MASK] and <S> / </S>: replacing one (which a stock tokenizer
    accepts) would leave the word model, the character rows and the template on the old token, and the saved folder
    would not load; it is a ValueError naming the token, and the tokenizer is left as it was. The common idioms
    still work and survive saving: setting a token to the one it is, new special tokens (cls, extra)."""
    tok = make(scheme)
    before = tok(["the cat <mask>", "café"], padding=True)
    with pytest.raises(ValueError, match=f"{key} is fixed to .*got {key}='{value}'"):
        tok.add_special_tokens({"cls_token": "[CLS]", key: value})
    assert tok.cls_token is None and getattr(tok, key) != value
    with pytest.raises(ValueError, match=f"{key} is fixed to"):
        setattr(tok, key, value)
    with pytest.raises(ValueError, match=f"{key} is fixed to .*got {key}_id=5"):
        setattr(tok, f"{key}_id", 5)
    assert tok(["the cat <mask>", "café"], padding=True) == before
    tok.save_pretrained(tmp_path)
    assert WordCharTokenizerFast.from_pretrained(tmp_path)(["the cat <mask>", "café"], padding=True) == before

    assert tok.add_special_tokens({"pad_token": "[PAD]", "mask_token": "[MASK]", "bos_token": "<S>"}) == 0
    tok.pad_token_id = 0
    assert tok.add_special_tokens({"cls_token": "[CLS]", "extra_special_tokens": ["<ent>"]}) == 2
    tok.save_pretrained(tmp_path / "grown")
    text = "the <ent> cat [CLS] <mask>"
    loaded = WordCharTokenizerFast.from_pretrained(tmp_path / "grown")
    assert loaded(text, return_special_tokens_mask=True) == tok(text, return_special_tokens_mask=True)



@pytest.mark.parametrize("scheme", ["vocab", "bilm"])
@pytest.mark.parametrize("pretokenized", [False, True])
def test_an_added_token_that_strips_whitespace_is_spelled_without_it(tmp_path, scheme, pretokenized):
    """An added token with lstrip / rstrip (RoBERTa's mask is one) takes the whitespace beside it, and its offsets
    cover it; its characters are the token's own, as ``ids_to_char_ids`` spells it, not spaces around it. A token
    that strips nothing keeps the spaces inside it ("New York")."""
    tok = make(scheme, boundaries=False)
    tok.add_special_tokens({"extra_special_tokens": [AddedToken("<e1>", lstrip=True, rstrip=True, special=True)]})
    tok.add_tokens([AddedToken("<e2>", lstrip=True)])
    tok.add_tokens(["New York"])
    text = "the  <e1>  cat <e2> New York"
    words = ["the", " <e1>  ", "cat", "<e2>", "New York"]
    encoding = tok(words, is_split_into_words=True) if pretokenized else tok(text)
    assert tok.convert_ids_to_tokens(encoding["input_ids"]) == ["the", "<e1>", "cat", "<e2>", "New York"]
    assert encoding["char_ids"] == tok.ids_to_char_ids(encoding["input_ids"])
    tok.save_pretrained(tmp_path)
    assert WordCharTokenizerFast.from_pretrained(tmp_path)(text)["char_ids"] == tok(text)["char_ids"]


# ----------------------------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["vocab", "bilm"])
def test_numpy_tensors_of_rows_of_different_lengths_name_padding(scheme):
    """``return_tensors="np"`` without padding on texts of different lengths: a ValueError that names the
    argument and the way out (padding), as transformers' own message for "pt" does, not NumPy's "inhomogeneous
    shape" from inside the tokenizer; with padding the arrays are (B, L) and (B, L, W)."""
    tok = make(scheme)
    with pytest.raises(ValueError, match=r"return_tensors='np' needs rows of one length.*padding=True"):
        tok(["the cat sat", "cat"], return_tensors="np")
    with pytest.raises(ValueError, match="padding=True"):
        tok("the cat sat on the", truncation=True, max_length=4, return_overflowing_tokens=True,
            return_tensors="np")
    padded = tok(["the cat sat", "cat"], padding=True, return_tensors="np")
    assert padded["input_ids"].shape == (2, 5) and padded["char_ids"].shape == (2, 5, W)
