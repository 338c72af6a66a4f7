"""A word-level tokenizer that also returns the characters of every word: the input of BiLSTM-CRF and ELMo.

``WordCharTokenizerFast`` is a ``transformers`` fast tokenizer over a ``tokenizers`` WordLevel model. Besides the
word ids it returns ``char_ids``, one row of ``max_word_length`` character ids per token::

    tokenizer = WordCharTokenizerFast.from_words(training_sentences, lowercase=True)
    batch = tokenizer(["EU rejects German call .", "Peter Blackburn"], padding=True, return_tensors="pt")
    batch["input_ids"]   # (B, L)     word ids; an out-of-vocabulary word is [UNK]
    batch["char_ids"]    # (B, L, W)  its characters, always read from the ORIGINAL text, so an [UNK] keeps them
    batch["attention_mask"]

Pre-tokenisation (raw text), close to the CoNLL-2003 / Penn Treebank tokens:

  1. split on whitespace (any Unicode space);
  2. inside each piece, take tokens from left to right, the first rule that matches wins:
     a. ``n't`` is split off a word (PTB): ``don't`` -> ``do`` ``n't``, ``can't`` -> ``ca`` ``n't``;
     b. the clitics ``'s 're 've 'll 'd 'm`` (any case, ``'`` or ``’``) at the end of a word are tokens of their
        own: ``Germany's`` -> ``Germany`` ``'s``, ``I'd`` -> ``I`` ``'d``;
     c. single letters joined by periods keep the periods, the final one included: ``U.S.``, ``e.g.``, ``U.S``;
     d. a word: letters, digits and combining marks, with word-INTERNAL hyphens, periods, ``&`` and apostrophes
        (those not starting a clitic of b) kept, and ``,`` ``:`` ``/`` kept between digits: ``1996-08-30``,
        ``all-rounder``, ``3.5``, ``1,000``, ``10:30``, ``1/2``, ``O'Neill``, ``AT&T``, ``www.example.com``;
     e. anything else is a token of one character (``(``, ``"``, ``$``, ``%``, a final ``.``, ...), except runs of
        periods or hyphens, which stay together (``...``, ``--``).

  So a word's final period is split off (``end.`` -> ``end`` ``.``, also ``Mr.`` -> ``Mr`` ``.``: there is no
  abbreviation list), and a sign is not part of a number (``-5`` -> ``-`` ``5``).

With ``is_split_into_words=True`` the words given are the tokens: no pre-tokenisation at all, each non-empty word is
exactly one token (an empty word gives no token; ``word_ids()`` still numbers the words as given).

Normalisation (``lowercase``, ``digits_to_zero``: every ASCII digit becomes ``0``, as in Lample et al. 2016) applies
to the WORD lookup only. Characters always come from the original text through the encoding's offsets.

Character schemes (``char_scheme``):

  ``"vocab"``  a character vocabulary built from the training words (``from_words``), saved with the tokenizer:
               0 = padding, 1 = unknown character, 2 / 3 / 4 = the "characters" of the special tokens [MASK] / <S> /
               </S>, then the characters seen, most frequent first (ties in code-point order). A word is its first
               ``max_word_length`` characters (Unicode code points), zero-padded; a special token is its one reserved
               character: [MASK] -> [2, 0, 0, ...].
  ``"bilm"``   the character ids of ELMo (Peters et al. 2018; bilm-tf's ``UnicodeCharsVocabulary``): the word's UTF-8
               bytes 0..255, begin-of-sentence 256, end-of-sentence 257, begin-of-word 258, end-of-word 259, padding
               260, all shifted by +1 so that 0 is a padded word: a word is [259, b1+1, ..., bn+1, 260, 261, ...]
               with its bytes truncated to ``max_word_length - 2``; <S> is [259, 257, 260, 261, ...] and </S> is
               [259, 258, 260, 261, ...]. [MASK] is the byte 0xFF, which never occurs in UTF-8 text:
               [259, 256, 260, 261, ...]; so the 262 character ids of the original ELMo suffice.

  In both schemes a padding position (attention mask 0) is a row of zeros.

A text without words (empty, or spaces only) gives, as tensors, ``char_ids`` (rows, 0, W) and ``offset_mapping``
(rows, 0, 2): the shapes of a text with words, so that a pipeline's batch pads it beside the others.

Special tokens: [PAD]=0, [UNK]=1, [MASK]=2 and, with ``add_sentence_boundaries=True``, <S>=3 and </S>=4, which then
wrap every sequence (``<S> A </S>``; pairs ``<S> A </S> <S> B </S>``) and are marked in ``special_tokens_mask``.
A [MASK] written in the text is the mask token (for fill-mask), not a special position.
These tokens are fixed: giving one another token (``add_special_tokens({"mask_token": ...})``,
``tokenizer.pad_token = ...``) is a ``ValueError``; other special tokens are added as to any tokenizer.

``tokenizer.pad`` (and so ``DataCollatorWithPadding`` and ``DataCollatorForTokenClassification``) pads ``char_ids`` next
to ``input_ids``, on either side, with all-zero rows. ``ids_to_char_ids`` gives the character rows of vocabulary ids:
a masked-LM collator that replaces words must replace their character rows too, or the characters give the word away.

Bad arguments are a ``ValueError`` that names them: the options, a vocabulary whose ids are not 0..n-1 (or lacks the
special tokens, or repeats one), an empty batch, pre-tokenised input that is not words. ``from_pretrained`` (of a
folder, or of a Hub repository or its cache) checks tokenizer.json (the word vocabulary) and tokenizer_config.json (the
options and the character vocabulary) first: a missing, truncated or foreign file is a ``ValueError`` naming it, never
a tokenizer of the special tokens only.

As with any fast tokenizer, a batch item may be a pair: ``tokenizer([("premise", "hypothesis"), ...])`` (pre-split:
``[(words, words), ...]``) is ``tokenizer(premises, hypotheses)``. ``train_new_from_iterator`` builds a new tokenizer
with the same options from a new corpus (``from_words``: the word AND the character vocabulary).

The class is registered with ``AutoTokenizer`` per config class by ``register_auto_tokenizer``; until then
``AutoTokenizer.from_pretrained`` on a saved folder does not know the class and silently falls back to a plain fast
tokenizer without ``char_ids`` (``WordCharTokenizerFast.from_pretrained`` always works).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
import torch
from transformers import AutoTokenizer, DataCollatorForLanguageModeling, PreTrainedTokenizerFast
from transformers.utils import PaddingStrategy

PAD, UNK, MASK, BOS, EOS = "[PAD]", "[UNK]", "[MASK]", "<S>", "</S>"
CHAR_SCHEMES = ("vocab", "bilm")
DEFAULT_MAX_WORD_LENGTH = 50

#: Reserved entries of a "vocab" character vocabulary, in id order.
CHAR_PAD_ID, CHAR_UNK_ID, CHAR_MASK_ID, CHAR_BOS_ID, CHAR_EOS_ID = range(5)
RESERVED_CHARS = (PAD, UNK, MASK, BOS, EOS)

#: bilm-tf / ELMo character ids before the +1 shift.
BILM_BOS_CHAR, BILM_EOS_CHAR, BILM_BOW, BILM_EOW, BILM_PAD = 256, 257, 258, 259, 260
BILM_MASK_CHAR = 0xFF  # never a byte of UTF-8 text
BILM_CHAR_VOCAB_SIZE = 262  # 0 (padded word) + 261 shifted ids

_WORD = r"[\p{L}\p{N}\p{M}]"
_NOT_WORD_AFTER = r"(?![\p{L}\p{N}\p{M}])"
_CLITIC_TAIL = r"(?i:s|re|ve|ll|d|m)"
#: The pre-tokenisation rules a-e of the module docstring, as one regular expression (Oniguruma syntax).
PRE_TOKENIZER_PATTERN = "|".join(
    [
        r"\p{L}+(?=(?i:n['’]t)" + _NOT_WORD_AFTER + ")",  # a. do|n't
        r"(?i:n['’]t)" + _NOT_WORD_AFTER + r"|['’]" + _CLITIC_TAIL + _NOT_WORD_AFTER,  # b. n't 's 're ...
        r"\p{L}(?:\.\p{L})+" + _NOT_WORD_AFTER + r"\.?",  # c. U.S.
        _WORD + r"+(?:(?:[-.&]|['’](?!" + _CLITIC_TAIL + _NOT_WORD_AFTER + r")|(?<=\p{N})[,:/](?=\p{N}))"
        + _WORD + "+)*",  # d. words with internal joiners
        r"\.{2,}|-{2,}|[^\s\p{L}\p{N}\p{M}]",  # e. punctuation and symbols
    ]
)


def build_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer of raw text (rules a-e of the module docstring)."""
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated")]
    )


def build_normalizer(lowercase: bool, digits_to_zero: bool) -> normalizers.Normalizer | None:
    """The normaliser of the word lookup: Unicode lowercasing and/or every ASCII digit -> 0; None for neither."""
    steps = []
    if lowercase:
        steps.append(normalizers.Lowercase())
    if digits_to_zero:
        steps.append(normalizers.Replace(Regex("[0-9]"), "0"))
    return normalizers.Sequence(steps) if steps else None


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_options(char_scheme, max_word_length, lowercase, digits_to_zero, add_sentence_boundaries) -> None:
    _check_bool("lowercase", lowercase)
    _check_bool("digits_to_zero", digits_to_zero)
    _check_bool("add_sentence_boundaries", add_sentence_boundaries)
    if char_scheme not in CHAR_SCHEMES:
        raise ValueError(f"char_scheme must be one of {CHAR_SCHEMES}, got {char_scheme!r}")
    _check_int("max_word_length", max_word_length, 3 if char_scheme == "bilm" else 1)


def _check_char_vocab(char_vocab) -> dict[str, int]:
    if not isinstance(char_vocab, dict):
        raise ValueError(f"char_vocab must be a dict of character -> id, got {type(char_vocab).__name__}")
    for key, index in char_vocab.items():
        if not isinstance(key, str) or not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"char_vocab must map strings to integer ids, got {key!r}: {index!r}")
        if len(key) != 1 and key not in RESERVED_CHARS:
            raise ValueError(f"char_vocab key {key!r} is neither one character nor one of {RESERVED_CHARS}")
    reserved = {key: char_vocab.get(key) for key in RESERVED_CHARS}
    if reserved != {key: index for index, key in enumerate(RESERVED_CHARS)}:
        raise ValueError(
            f"char_vocab must hold the reserved entries {dict(zip(RESERVED_CHARS, range(5)))}, got {reserved}"
        )
    _check_dense_ids("char_vocab", char_vocab)
    return dict(char_vocab)


def _check_dense_ids(name: str, mapping: dict) -> None:
    """The (integer) ids of ``mapping`` are 0..n-1, each once (one embedding row per id)."""
    ids = sorted(mapping.values())
    if ids != list(range(len(ids))):
        raise ValueError(
            f"{name} ids must be 0..{len(ids) - 1}, each used once (one embedding row per id), got ids from "
            f"{ids[0]} to {ids[-1]} for {len(ids)} entries"
        )


def _check_vocab(vocab) -> None:
    """word -> id with the ids 0..n-1, each once (one embedding row per id)."""
    for word, index in vocab.items():
        if not isinstance(word, str) or not word or not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"vocab must map words (non-empty str) to integer ids, got {word!r}: {index!r}")
    _check_dense_ids("vocab", vocab)


def _check_saved_folder(folder: Path) -> None:
    """A folder that ``save_pretrained`` wrote: tokenizer.json and tokenizer_config.json, see ``_check_saved_file``."""
    for filename in ("tokenizer.json", "tokenizer_config.json"):
        path = folder / filename
        if not path.is_file():
            raise ValueError(
                f"WordCharTokenizerFast: {path} is missing; a saved tokenizer folder holds tokenizer.json (the word "
                "vocabulary) and tokenizer_config.json (the options and the character vocabulary), as "
                "save_pretrained writes them"
            )
        _check_saved_file(path, filename)


def _check_saved_file(path: Path, filename: str) -> None:
    """One file ``save_pretrained`` wrote, as ``filename``: tokenizer.json holds the word vocabulary (a WordLevel model)
    and the added tokens, tokenizer_config.json the options and the character vocabulary; both readable JSON objects.
    ``path`` may be another name for it (a file of the Hub cache)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"WordCharTokenizerFast: {path} is not valid JSON ({err}); the file is damaged: save the tokenizer "
            "again"
        ) from None
    if not isinstance(content, dict):
        raise ValueError(f"WordCharTokenizerFast: {path} must hold a JSON object, got {type(content).__name__}")
    if filename == "tokenizer.json":
        model = content.get("model")
        kind = model.get("type") if isinstance(model, dict) else None
        if kind != "WordLevel" or not isinstance(model.get("vocab"), dict):
            raise ValueError(
                f"WordCharTokenizerFast: {path} must hold a word vocabulary (a 'WordLevel' model with a vocab), "
                f"got model type {kind!r}: it was not written by a WordCharTokenizerFast"
            )
        if not isinstance(content.get("added_tokens"), list):
            raise ValueError(
                f"WordCharTokenizerFast: {path} has no list of added tokens ('added_tokens'), as every tokenizer.json "
                "save_pretrained writes has: the file is damaged, save the tokenizer again"
            )


def _is_pair(item, is_sequence) -> bool:
    """``item`` is a pair of sequences as a batch item of ``__call__`` (a list or tuple of two)."""
    return isinstance(item, (list, tuple)) and len(item) == 2 and all(is_sequence(part) for part in item)


class WordCharTokenizerFast(PreTrainedTokenizerFast):
    """Word ids and character ids, for models that read words and their characters (BiLSTM-CRF, ELMo).

    Every encoding carries ``char_ids`` next to ``input_ids``: (words, max_word_length) for one text, (batch, words,
    max_word_length) for a batch; see the module docstring for the pre-tokenisation, the normalisation and the two
    character schemes. Build one from training data with ``from_words``.

    Args:
        vocab: word -> id; must hold [PAD]=0, [UNK]=1, [MASK] and, with boundaries, <S> and </S>. A tokenizer of the
            special tokens only when None.
        char_vocab: character -> id of the "vocab" scheme (reserved entries 0-4, see ``RESERVED_CHARS``); None for
            "bilm". ``from_words`` builds it.
        lowercase: lowercase words for the word lookup.
        digits_to_zero: replace every ASCII digit by 0 for the word lookup.
        char_scheme: "vocab" or "bilm".
        max_word_length: characters per word row (bilm: bytes + 2 for begin/end of word; at least 3).
        add_sentence_boundaries: wrap each sequence in <S> ... </S>.
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "char_ids", "attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        vocab: dict[str, int] | None = None,
        char_vocab: dict[str, int] | None = None,
        lowercase: bool = False,
        digits_to_zero: bool = False,
        char_scheme: str = "vocab",
        max_word_length: int = DEFAULT_MAX_WORD_LENGTH,
        add_sentence_boundaries: bool = False,
        pad_token: str = PAD,
        unk_token: str = UNK,
        mask_token: str = MASK,
        bos_token: str | None = None,
        eos_token: str | None = None,
        **kwargs,
    ):
        source = kwargs.get("name_or_path")  # set when from_pretrained loads a folder
        if add_sentence_boundaries is True:
            bos_token = BOS if bos_token is None else bos_token
            eos_token = EOS if eos_token is None else eos_token
        try:
            if source and vocab is None:
                raise ValueError(
                    "it has no tokenizer.json (the word vocabulary); save the tokenizer with save_pretrained"
                )
            vocab, char_vocab = self._checked_vocabularies(
                vocab, char_vocab, char_scheme, max_word_length, lowercase, digits_to_zero, add_sentence_boundaries,
                [pad_token, unk_token, mask_token] + ([bos_token, eos_token] if add_sentence_boundaries else []),
                kwargs.get("model_max_length"),
            )
        except ValueError as err:
            if source:
                raise ValueError(f"WordCharTokenizerFast: the tokenizer saved in {source} is invalid: {err}") from None
            raise

        self.lowercase = lowercase
        self.digits_to_zero = digits_to_zero
        self.char_scheme = char_scheme
        self.max_word_length = max_word_length
        self.add_sentence_boundaries = add_sentence_boundaries
        self.char_vocab = char_vocab

        self._tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=str(unk_token)))
        self._tokenizer.normalizer = build_normalizer(lowercase, digits_to_zero)
        self._tokenizer.pre_tokenizer = build_pre_tokenizer()
        self._tokenizer.post_processor = self._template(add_sentence_boundaries, bos_token, eos_token, vocab)
        kwargs.pop("post_processor", None)  # the saved template is rebuilt from add_sentence_boundaries above
        super().__init__(
            char_vocab=char_vocab,
            lowercase=lowercase,
            digits_to_zero=digits_to_zero,
            char_scheme=char_scheme,
            max_word_length=max_word_length,
            add_sentence_boundaries=add_sentence_boundaries,
            pad_token=pad_token,
            unk_token=unk_token,
            mask_token=mask_token,
            bos_token=bos_token,
            eos_token=eos_token,
            **kwargs,
        )
        self._special_char_rows = self._build_special_char_rows()

    def __setattr__(self, key, value):
        """transformers' setter; the special tokens the tokenizer is built on are fixed once it is constructed:
        pad_token ([PAD], id 0), unk_token ([UNK], id 1, the word model's unknown word), mask_token and, with
        ``add_sentence_boundaries``, bos_token / eos_token (the <S> ... </S> template). Giving one of them another
        token (``add_special_tokens({"mask_token": "<mask>"})``, ``tokenizer.pad_token = ...``) is a ``ValueError``
        naming it: the word vocabulary, the character rows and the template would not follow, and the saved folder
        would not load. Setting the token it already has is accepted; other special tokens (cls_token, sep_token,
        extra_special_tokens) can be added freely."""
        self._check_fixed_token(key, value)
        super().__setattr__(key, value)

    def add_special_tokens(self, special_tokens_dict, replace_extra_special_tokens=True) -> int:
        """transformers' ``add_special_tokens``; every entry is checked first (see ``__setattr__``), so a refused
        one leaves the tokenizer unchanged."""
        if isinstance(special_tokens_dict, dict):
            for key, value in special_tokens_dict.items():
                self._check_fixed_token(key, value)
        return super().add_special_tokens(special_tokens_dict, replace_extra_special_tokens)

    def _check_fixed_token(self, key: str, value) -> None:
        """``ValueError`` if ``key`` (a special token attribute, or its ``_id``) would give a fixed token another
        value; see ``__setattr__``."""
        role = key.removesuffix("_id")
        fixed = ("pad_token", "unk_token", "mask_token") + (
            ("bos_token", "eos_token") if self.__dict__.get("add_sentence_boundaries") else ()
        )
        if role not in fixed or "_special_char_rows" not in self.__dict__:  # not fixed, or still being constructed
            return
        current = getattr(self, role)
        given = self.convert_ids_to_tokens(value) if key != role and isinstance(value, int) else value
        if given is None or str(given) != current:
            shown = repr(value) if key != role or given is None else repr(str(given))
            raise ValueError(
                f"WordCharTokenizerFast: {role} is fixed to {current!r} (the word vocabulary, the character rows and "
                f"the saved files are built on it), got {key}={shown}; add other tokens with add_tokens or "
                "add_special_tokens({'extra_special_tokens': [...]})"
            )

    # ------------------------------------------------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------------------------------------------------

    @staticmethod
    def _checked_vocabularies(
        vocab, char_vocab, char_scheme, max_word_length, lowercase, digits_to_zero, add_sentence_boundaries,
        special_tokens, model_max_length,
    ) -> tuple[dict[str, int], dict[str, int] | None]:
        """(vocab, char_vocab) after checking every constructor argument; ``ValueError`` names the bad one."""
        _check_options(char_scheme, max_word_length, lowercase, digits_to_zero, add_sentence_boundaries)
        if model_max_length is not None:
            _check_int("model_max_length", model_max_length, 1)
        if char_scheme == "bilm" and char_vocab is not None:
            raise ValueError("char_vocab must be None with char_scheme='bilm' (its character ids are fixed)")
        specials = [str(token) for token in special_tokens]
        if len(set(specials)) != len(specials):
            raise ValueError(f"the special tokens (pad, unk, mask[, bos, eos]) must be distinct, got {specials}")
        pad_token, unk_token = specials[0], specials[1]
        if vocab is None:
            vocab = {token: index for index, token in enumerate(specials)}
        if isinstance(vocab, (list, tuple)):
            vocab = {token: index for index, token in enumerate(vocab)}
        if not isinstance(vocab, dict):
            raise ValueError(f"vocab must be a dict of word -> id, got {type(vocab).__name__}")
        if vocab.get(pad_token) != 0 or vocab.get(unk_token) != 1:
            raise ValueError(
                f"vocab must map {pad_token!r} to 0 and {unk_token!r} to 1, got {vocab.get(pad_token)!r} and "
                f"{vocab.get(unk_token)!r}"
            )
        missing = [token for token in specials if token not in vocab]
        if missing:
            raise ValueError(f"vocab lacks the special tokens {missing}")
        _check_vocab(vocab)
        if char_scheme == "vocab":
            if char_vocab is None and not set(vocab) <= set(specials):
                raise ValueError(
                    "char_scheme='vocab' needs a char_vocab; build the tokenizer with WordCharTokenizerFast.from_words"
                )
            if char_vocab is None:  # a tokenizer of the special tokens only
                char_vocab = {char: index for index, char in enumerate(RESERVED_CHARS)}
            char_vocab = _check_char_vocab(char_vocab)
        return vocab, char_vocab

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *init_inputs, **kwargs):
        """``PreTrainedTokenizerFast.from_pretrained``; a local folder is checked first, so that a missing or damaged
        tokenizer.json or tokenizer_config.json is a ``ValueError`` naming the file (not a tokenizer of the special
        tokens only, or a bare JSON error)."""
        source = pretrained_model_name_or_path
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            folder = Path(source)
            if kwargs.get("subfolder"):
                folder = folder / kwargs["subfolder"]
            _check_saved_folder(folder)
        return super().from_pretrained(pretrained_model_name_or_path, *init_inputs, **kwargs)

    @classmethod
    def _from_pretrained(cls, resolved_vocab_files, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader once the files are found: checks them as ``from_pretrained`` checks a folder, also
        when they come from a Hub repository or its cache (a damaged tokenizer.json is then a ``ValueError`` naming
        the file, not a ``KeyError`` or a ``JSONDecodeError``)."""
        for key, filename in (("tokenizer_file", "tokenizer.json"), ("tokenizer_config_file", "tokenizer_config.json")):
            path = resolved_vocab_files.get(key)
            if path is not None:  # a missing file: the constructor names it
                _check_saved_file(Path(path), filename)
        return super()._from_pretrained(resolved_vocab_files, pretrained_model_name_or_path, *args, **kwargs)

    @staticmethod
    def _template(boundaries: bool, bos, eos, vocab: dict[str, int]) -> processors.TemplateProcessing:
        if not boundaries:
            return processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
        bos, eos = str(bos), str(eos)
        return processors.TemplateProcessing(
            single=f"{bos}:0 $A:0 {eos}:0",
            pair=f"{bos}:0 $A:0 {eos}:0 {bos}:1 $B:1 {eos}:1",
            special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])],
        )

    @classmethod
    def from_words(
        cls,
        words_or_sentences: Iterable[str | Sequence[str]],
        *,
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
        lowercase: bool = False,
        digits_to_zero: bool = False,
        char_scheme: str = "vocab",
        max_word_length: int = DEFAULT_MAX_WORD_LENGTH,
        add_sentence_boundaries: bool = False,
        model_max_length: int = 512,
    ) -> WordCharTokenizerFast:
        """Build the word vocabulary (and the "vocab" scheme's character vocabulary) from training data.

        Args:
            words_or_sentences: an iterable of items, each either a text (``str``, pre-tokenised with the rules of
                the module docstring) or a sentence already split into words (a list or tuple of ``str``, each word
                kept whole, as ``is_split_into_words=True`` does; e.g. CoNLL sentences).
            min_frequency: how often a (normalised) word must occur to enter the vocabulary.
            max_vocab_size: the largest vocabulary, special tokens included (None: no limit).
            lowercase, digits_to_zero, char_scheme, max_word_length, add_sentence_boundaries: see the class.
            model_max_length: the longest input in words, used when truncating.

        The vocabulary is the special tokens, then the normalised words, most frequent first, ties in alphabetical
        (code-point) order. The character vocabulary holds every character of every training word (rare words
        included), counted in the original text, ordered the same way.
        """
        if isinstance(words_or_sentences, (str, bytes)):
            raise TypeError("words_or_sentences must be an iterable of texts or of word lists, not a single string")
        if not isinstance(words_or_sentences, Iterable):
            raise TypeError(
                f"words_or_sentences must be an iterable of texts or of word lists, got "
                f"{type(words_or_sentences).__name__}"
            )
        _check_int("min_frequency", min_frequency, 1)
        _check_int("model_max_length", model_max_length, 1)
        _check_options(char_scheme, max_word_length, lowercase, digits_to_zero, add_sentence_boundaries)
        specials = [PAD, UNK, MASK] + ([BOS, EOS] if add_sentence_boundaries else [])
        if max_vocab_size is not None:
            _check_int("max_vocab_size", max_vocab_size, len(specials) + 1)

        pre_tokenizer = build_pre_tokenizer()
        counts: Counter[str] = Counter()
        for number, item in enumerate(words_or_sentences):
            if isinstance(item, str):
                counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(item))
            elif isinstance(item, (list, tuple)) and all(isinstance(word, str) for word in item):
                counts.update(word for word in item if word)
            else:
                raise TypeError(
                    f"words_or_sentences item {number} must be a text (str) or a list of words (str), got {item!r}"
                )
        for token in specials:
            counts.pop(token, None)
        if not counts:
            raise ValueError("no training words: words_or_sentences is empty or holds only blank texts")

        normalizer = build_normalizer(lowercase, digits_to_zero)
        word_counts: Counter[str] = Counter()
        char_counts: Counter[str] = Counter()
        for word, count in counts.items():
            word_counts[normalizer.normalize_str(word) if normalizer is not None else word] += count
            for char in word:
                char_counts[char] += count
        kept = [word for word, count in word_counts.items() if count >= min_frequency and word not in specials]
        if not kept:
            raise ValueError(
                f"no word occurs min_frequency={min_frequency} times (the most frequent occurs "
                f"{max(word_counts.values())} times); lower min_frequency or give more training data"
            )
        ranked = sorted(kept, key=lambda word: (-word_counts[word], word))
        if max_vocab_size is not None:
            ranked = ranked[: max_vocab_size - len(specials)]
        vocab = {token: index for index, token in enumerate(specials + ranked)}

        char_vocab = None
        if char_scheme == "vocab":
            chars = sorted(char_counts, key=lambda c: (-char_counts[c], c))
            char_vocab = {c: i for i, c in enumerate([*RESERVED_CHARS, *chars])}
        return cls(
            vocab=vocab,
            char_vocab=char_vocab,
            lowercase=lowercase,
            digits_to_zero=digits_to_zero,
            char_scheme=char_scheme,
            max_word_length=max_word_length,
            add_sentence_boundaries=add_sentence_boundaries,
            model_max_length=model_max_length,
            padding_side="right",
            truncation_side="right",
        )

    def train_new_from_iterator(
        self,
        text_iterator: Iterable[str | Sequence[str]],
        vocab_size: int,
        length: int | None = None,
        new_special_tokens=None,
        special_tokens_map=None,
        min_frequency: int = 1,
        show_progress: bool = True,
        **kwargs,
    ) -> WordCharTokenizerFast:
        """A new tokenizer with this one's options, its word AND character vocabularies built from a new corpus by
        ``from_words``. (transformers' generic method would retrain the word vocabulary only and keep this
        tokenizer's character vocabulary, so the new corpus's characters would all be unknown.)

        Args:
            text_iterator: texts (``str``) or batches of texts (lists of ``str``), as transformers takes them; every
                text is pre-tokenised with the rules of the module docstring. Sentences already split into words go
                to ``from_words`` instead.
            vocab_size: the largest vocabulary, special tokens included (``from_words``' ``max_vocab_size``).
            length: the number of texts, for a progress bar; unused.
            new_special_tokens, special_tokens_map: not supported (the special tokens are fixed, see the class).
            min_frequency: how often a (normalised) word must occur to enter the vocabulary.
            show_progress: unused (nothing to show).

        Tokens added after construction (``add_tokens``, ``add_special_tokens``) are not carried over.
        """
        del length, show_progress  # accepted for transformers' signature
        if new_special_tokens is not None or special_tokens_map is not None:
            raise ValueError(
                "train_new_from_iterator: new_special_tokens and special_tokens_map are not supported by "
                f"WordCharTokenizerFast (its special tokens are fixed), got {new_special_tokens!r} and "
                f"{special_tokens_map!r}"
            )
        if kwargs:
            raise ValueError(
                f"train_new_from_iterator: unknown option(s) {sorted(kwargs)}; WordCharTokenizerFast takes "
                "vocab_size and min_frequency"
            )
        specials = 3 + (2 if self.add_sentence_boundaries else 0)
        _check_int("vocab_size", vocab_size, specials + 1)
        if isinstance(text_iterator, (str, bytes)):
            raise TypeError("text_iterator must be an iterable of texts or of batches of texts, not a single string")

        def texts():
            for item in text_iterator:
                if isinstance(item, (list, tuple)) and all(isinstance(text, str) for text in item):
                    yield from item  # a batch of texts
                else:
                    yield item  # a text (or a bad item, which from_words names)

        tokenizer = type(self).from_words(
            texts(),
            min_frequency=min_frequency,
            max_vocab_size=vocab_size,
            lowercase=self.lowercase,
            digits_to_zero=self.digits_to_zero,
            char_scheme=self.char_scheme,
            max_word_length=self.max_word_length,
            add_sentence_boundaries=self.add_sentence_boundaries,
            model_max_length=self.model_max_length,
        )
        tokenizer.padding_side = self.padding_side
        tokenizer.truncation_side = self.truncation_side
        return tokenizer

    # ------------------------------------------------------------------------------------------------------------
    # Characters
    # ------------------------------------------------------------------------------------------------------------

    @property
    def char_vocab_size(self) -> int:
        """The number of character ids, padding included: the size of a model's character embedding."""
        return BILM_CHAR_VOCAB_SIZE if self.char_scheme == "bilm" else len(self.char_vocab)

    def _bilm_special_row(self, char: int) -> list[int]:
        row = [BILM_PAD + 1] * self.max_word_length
        row[0], row[1], row[2] = BILM_BOW + 1, char + 1, BILM_EOW + 1
        return row

    def _build_special_char_rows(self) -> dict[int, list[int]]:
        """Token id -> character row of the special tokens that have one of their own ([MASK], <S>, </S>)."""
        roles = [(self.mask_token_id, CHAR_MASK_ID, BILM_MASK_CHAR)]
        if self.add_sentence_boundaries:
            roles += [(self.bos_token_id, CHAR_BOS_ID, BILM_BOS_CHAR), (self.eos_token_id, CHAR_EOS_ID, BILM_EOS_CHAR)]
        rows = {}
        for token_id, vocab_char, bilm_char in roles:
            if token_id is None:
                continue
            if self.char_scheme == "bilm":
                rows[token_id] = self._bilm_special_row(bilm_char)
            else:
                rows[token_id] = [vocab_char] + [0] * (self.max_word_length - 1)
        return rows

    def word_to_char_ids(self, word: str) -> list[int]:
        """The character row of ``word`` (its original spelling): ``max_word_length`` ids."""
        if not isinstance(word, str):
            raise ValueError(f"word_to_char_ids: word must be a str, got {type(word).__name__}")
        width = self.max_word_length
        if self.char_scheme == "bilm":
            data = word.encode("utf-8", "ignore")[: width - 2]
            row = [BILM_PAD + 1] * width
            row[0] = BILM_BOW + 1
            for position, byte in enumerate(data, start=1):
                row[position] = byte + 1
            row[len(data) + 1] = BILM_EOW + 1
            return row
        ids = [self.char_vocab.get(char, CHAR_UNK_ID) for char in word[:width]]
        return ids + [CHAR_PAD_ID] * (width - len(ids))

    def ids_to_char_ids(self, ids: Iterable[int]) -> list[list[int]]:
        """The character rows of vocabulary ids, spelled as the vocabulary holds them (normalised): what a masked-LM
        collator puts where it replaced words. [PAD] gives a zero row; [MASK], <S>, </S> their own rows."""
        rows = []
        size = len(self)
        for token_id in ids:
            if hasattr(token_id, "item") and getattr(token_id, "ndim", None) == 0:  # a 0-d tensor, a numpy scalar
                token_id = token_id.item()
            if isinstance(token_id, bool) or not isinstance(token_id, int):
                raise ValueError(f"ids_to_char_ids: ids must be integer token ids, got {token_id!r}")
            if not 0 <= token_id < size:
                raise ValueError(f"token id {token_id} is not in the vocabulary (ids 0..{size - 1})")
            if token_id in self._special_char_rows:
                rows.append(list(self._special_char_rows[token_id]))
            elif token_id == self.pad_token_id:
                rows.append([0] * self.max_word_length)
            else:
                token = self._tokenizer.id_to_token(token_id)
                if token is None:
                    raise ValueError(f"token id {token_id} is not in the vocabulary (size {len(self)})")
                rows.append(self.word_to_char_ids(token))
        return rows

    def _encoding_char_ids(
        self, encoding, texts, pretokenized: bool, cache: dict[str, list[int]], stripping: dict[int, tuple[bool, bool]]
    ) -> list[list[int]]:
        """The character rows of one encoding (a row of the batch); ``texts`` = (text, text_pair or None).
        ``stripping``: token id -> (lstrip, rstrip) of the added tokens that strip the whitespace beside them; their
        offsets cover that whitespace, which is not part of their spelling (``ids_to_char_ids`` spells them so)."""
        zero = [0] * self.max_word_length
        rows = []
        for token_id, (start, end), sequence, word, attended in zip(
            encoding.ids, encoding.offsets, encoding.sequence_ids, encoding.word_ids, encoding.attention_mask
        ):
            if not attended:
                rows.append(zero)
            elif token_id in self._special_char_rows:
                rows.append(self._special_char_rows[token_id])
            elif sequence is None:  # a token of the template other than <S> / </S>: none today
                rows.append(zero)
            else:
                source = texts[sequence]
                if pretokenized:
                    source = source[word]
                spelling = source[start:end]
                if token_id in stripping:  # "  <e1>  " -> "<e1>"
                    left, right = stripping[token_id]
                    spelling = spelling.lstrip() if left else spelling
                    spelling = spelling.rstrip() if right else spelling
                row = cache.get(spelling)
                if row is None:
                    row = cache[spelling] = self.word_to_char_ids(spelling)
                rows.append(row)
        return [list(row) for row in rows]

    # ------------------------------------------------------------------------------------------------------------
    # Encoding and padding
    # ------------------------------------------------------------------------------------------------------------

    @staticmethod
    def _check_text(name: str, text, pretokenized: bool, pairs_allowed: bool = False) -> None:
        """An empty batch, or pre-tokenised input that is not words (str), is a ``ValueError`` naming it.
        ``pairs_allowed``: a batch item may be a pair of word lists (``text`` given without ``text_pair``)."""
        if not pretokenized:
            if isinstance(text, (list, tuple)) and not text:
                raise ValueError(f"{name} is an empty batch: give at least one text")
            return

        def words(item) -> bool:
            return isinstance(item, (list, tuple)) and all(isinstance(word, str) for word in item)

        def row(item) -> bool:
            return words(item) or (pairs_allowed and _is_pair(item, words))

        if words(text) or (isinstance(text, (list, tuple)) and text and all(row(item) for item in text)):
            return
        shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:57] + "..."
        also = "; a batch item may also be a pair of such lists (words, words)" if pairs_allowed else ""
        raise ValueError(
            f"with is_split_into_words=True, {name} must be a list of words (str) or a batch of such lists, got "
            f"{shown}{also}"
        )

    @staticmethod
    def _row_sources(text, text_pair, pretokenized: bool) -> tuple[bool, list[tuple]]:
        """(batched, one ``(first, second or None)`` per input row), read as transformers and the ``tokenizers``
        library read the arguments: a batch is a list or tuple of texts (pre-tokenised: of word lists), and without
        ``text_pair`` a batch item may itself be a pair, two texts (``[("premise", "hypothesis"), ...]``) or, with
        ``is_split_into_words=True``, two word lists."""
        if pretokenized:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))

            def single(item) -> bool:
                return all(isinstance(word, str) for word in item)
        else:
            batched = isinstance(text, (list, tuple))

            def single(item) -> bool:
                return isinstance(item, str)

        if not batched:
            return False, [(text, text_pair or None)]
        if text_pair is not None:
            return True, list(zip(text, text_pair))
        return True, [(item, None) if single(item) else tuple(item) for item in text]

    def _encode_plus(self, text, text_pair=None, **kwargs):
        pretokenized = bool(kwargs.get("is_split_into_words", False))
        return_tensors = kwargs.get("return_tensors")
        self._check_text("text", text, pretokenized, pairs_allowed=text_pair is None)
        if text_pair is not None:
            self._check_text("text_pair", text_pair, pretokenized)
        batched, sources = self._row_sources(text, text_pair, pretokenized)

        pre_tokenizer = self._tokenizer.pre_tokenizer
        if pretokenized:  # the given words are the tokens
            self._tokenizer.pre_tokenizer = None
        try:
            output = super()._encode_plus(text, text_pair, **kwargs)
        finally:
            self._tokenizer.pre_tokenizer = pre_tokenizer

        if "overflow_to_sample_mapping" in output:
            mapping = output["overflow_to_sample_mapping"]
            mapping = mapping.tolist() if hasattr(mapping, "tolist") else list(mapping)
        else:
            mapping = list(range(len(output.encodings)))
        cache: dict[str, list[int]] = {}
        stripping = {
            index: (token.lstrip, token.rstrip)
            for index, token in self.added_tokens_decoder.items()
            if token.lstrip or token.rstrip
        }
        char_ids = [
            self._encoding_char_ids(encoding, sources[source], pretokenized, cache, stripping)
            for encoding, source in zip(output.encodings, mapping)
        ]
        squeezed = not batched and return_tensors is None and not kwargs.get("return_overflowing_tokens", False)
        if squeezed:
            output["char_ids"] = char_ids[0]
        elif return_tensors is not None:  # (rows, tokens, max_word_length), even with no token at all
            lengths = sorted({len(rows) for rows in char_ids})
            if len(lengths) > 1:  # "np" gets here with ragged rows ("pt" is refused by transformers first)
                raise ValueError(
                    f"return_tensors={return_tensors!r} needs rows of one length, got rows of {lengths[0]} to "
                    f"{lengths[-1]} tokens: pass padding=True (or padding='max_length' with truncation=True), or "
                    "return_tensors=None for lists"
                )
            width = self.max_word_length
            output["char_ids"] = np.array(char_ids, dtype=np.int64).reshape(len(char_ids), -1, width)
            output.convert_to_tensors(return_tensors)
            offsets = output.get("offset_mapping")
            if getattr(offsets, "ndim", None) == 2 and offsets.shape[-1] == 0:  # (rows, 0): no token in any row
                # (rows, 0, 2), as a row with tokens has it: a pipeline that pads a batch (token-classification
                # with an empty text beside others) stacks it with the other rows' (1, L, 2) offsets
                output["offset_mapping"] = offsets.reshape(offsets.shape[0], 0, 2)
        else:
            output["char_ids"] = char_ids
        return output

    def pad(self, encoded_inputs, *args, **kwargs):
        """transformers' ``pad``, ``char_ids`` padded by ``_pad``; a batch of empty examples gets ``char_ids`` of
        shape (B, 0, W), as ``__call__`` gives it, not the (B, 0) a tensor of empty lists would have."""
        batch = super().pad(encoded_inputs, *args, **kwargs)
        chars = batch.get("char_ids") if hasattr(batch, "get") else None
        if getattr(chars, "ndim", None) == 2 and chars.shape[-1] == 0:  # (B, 0): every example was empty
            batch["char_ids"] = chars.reshape(chars.shape[0], 0, self.max_word_length)  # (B, 0, W)
        return batch

    def _pad(
        self,
        encoded_inputs,
        max_length=None,
        padding_strategy=PaddingStrategy.DO_NOT_PAD,
        pad_to_multiple_of=None,
        padding_side=None,
        return_attention_mask=None,
    ):
        """Pad one example; ``char_ids`` gets all-zero rows on the same side as ``input_ids``."""
        key = self.model_input_names[0]
        before = len(encoded_inputs[key])
        char_ids = encoded_inputs.get("char_ids")
        if hasattr(char_ids, "tolist"):  # a tensor or array among lists
            char_ids = encoded_inputs["char_ids"] = char_ids.tolist()
        if char_ids is not None and len(char_ids) != before:
            raise ValueError(f"char_ids has {len(char_ids)} rows but {key} has {before} tokens; they must match")
        encoded_inputs = super()._pad(
            encoded_inputs,
            max_length=max_length,
            padding_strategy=padding_strategy,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
        )
        difference = len(encoded_inputs[key]) - before
        if char_ids is not None and difference > 0:
            width = len(char_ids[0]) if len(char_ids) else self.max_word_length
            padding = [[0] * width for _ in range(difference)]
            side = padding_side if padding_side is not None else self.padding_side
            encoded_inputs["char_ids"] = list(char_ids) + padding if side == "right" else padding + list(char_ids)
        return encoded_inputs


class DataCollatorForWordCharLanguageModeling(DataCollatorForLanguageModeling):
    """``DataCollatorForLanguageModeling`` for word+character inputs: after masking, every word the collator
    replaced (by [MASK] or by a random word) gets the character row of its new id, so the characters never give a
    masked word away; a word left unchanged keeps its own characters. Needs a ``WordCharTokenizerFast``. Both of the
    collator's outputs do this: torch tensors (``return_tensors="pt"``, the default) and NumPy arrays ("np").

    Shape: examples with ``input_ids`` (n,) and ``char_ids`` (n, W) -> input_ids (B, L), char_ids (B, L, W), labels.
    """

    def torch_call(self, examples):
        self._check_tokenizer()
        return self._hide_replaced_words(super().torch_call(examples))

    def numpy_call(self, examples):
        self._check_tokenizer()
        return self._hide_replaced_words(super().numpy_call(examples))

    def _check_tokenizer(self) -> None:
        if not hasattr(self.tokenizer, "ids_to_char_ids"):
            raise ValueError(
                f"DataCollatorForWordCharLanguageModeling needs a WordCharTokenizerFast, got "
                f"{type(self.tokenizer).__name__}"
            )

    def _hide_replaced_words(self, batch):
        """``batch`` (torch tensors or NumPy arrays) with the character row of every replaced word set to that of
        its new id: changed = (labels != -100) & (input_ids != labels), both (B, L)."""
        if "char_ids" not in batch:
            raise ValueError("DataCollatorForWordCharLanguageModeling: the examples carry no char_ids")
        labels, ids, chars = batch["labels"], batch["input_ids"], batch["char_ids"]  # (B, L), (B, L), (B, L, W)
        changed = (labels != -100) & (ids != labels)  # replaced by [MASK] or by a random word
        if changed.any():
            rows = self.tokenizer.ids_to_char_ids(ids[changed].tolist())  # (n, W)
            replacement = np.asarray(rows, dtype=np.int64)[:, : chars.shape[-1]]  # (n, W)
            if isinstance(chars, torch.Tensor):
                chars = chars.clone()
                chars[changed] = torch.as_tensor(replacement, dtype=chars.dtype)
            else:
                chars = chars.copy()
                chars[changed] = replacement.astype(chars.dtype)
            batch["char_ids"] = chars
        return batch


def register_auto_tokenizer(config_class) -> None:
    """Make ``AutoTokenizer`` build a ``WordCharTokenizerFast`` for ``config_class`` (a bizoo ``PreTrainedConfig``
    subclass), and find the class by the name saved in tokenizer_config.json. Idempotent."""
    AutoTokenizer.register(config_class, tokenizer_class=WordCharTokenizerFast, exist_ok=False)


__all__ = [
    "WordCharTokenizerFast",
    "DataCollatorForWordCharLanguageModeling",
    "register_auto_tokenizer",
    "build_pre_tokenizer",
    "PRE_TOKENIZER_PATTERN",
]
