"""Bad input at the public boundary of the models, their heads, their configurations and the word+character tokenizer.

Every case is a ``ValueError`` raised before any work is done (no layer of the model runs: a pre-hook on every leaf
module would fail the test) whose message names what was wrong and what is allowed. Each case is its own test id;
the cases are grouped by boundary:

* ``BAD_MODEL_INPUTS``: ids outside the vocabulary or the character set, shapes that do not match (1-D / 3-D ids, a
  mask, token types or char_ids of another shape, inputs_embeds of another width), float ids, both or neither of
  input_ids / inputs_embeds, attention masks that are not 0/1, empty batches, NaN or inf in inputs_embeds, inputs
  longer than the learned positions — on the CPU (tests/reliability/test_gpu_edges.py has the CUDA side), for every
  registered model type and variant and every head: the bare encoder, masked LM, sequence classification, token
  classification with softmax and with a CRF, and ELMo's bidirectional LM.
* ``BAD_LABELS``: labels outside each head's label set, of the wrong shape or dtype, per head and problem type;
  checked before the encoder runs.
* ``BAD_CONFIGS`` (the fields every config shares), ``BAD_MODEL_CONFIGS`` (each model's own fields) and
  ``BAD_CRF_LABEL_SETS`` (a CRF tag scheme that does not fit the labels, found when the model is built and again
  when the labels change afterwards).
* ``BAD_TOKENIZER_ARGS``, ``BAD_FROM_WORDS``, ``BAD_SAVED_TOKENIZERS`` (a folder with a missing or damaged file) and
  ``BAD_TOKENIZER_CALLS`` for ``WordCharTokenizerFast``.

A row that is entirely padding is NOT an error: every model and head gives finite outputs for it (hidden states,
logits, pooled outputs, the CRF's scores and decodes, losses and gradients), its predictions are -100, and the
other rows' outputs are the same as without it; a batch of padding only is finite too (a loss of 0 where
nothing is labelled).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

import bizoo
from bizoo import WordCharTokenizerFast
from tests.tiny_configs import TINY_CONFIGS

V = 120  # vocabulary of every test model
B, L = 2, 6  # the shape of the good batch each bad input is made from

HEADS = {
    "AutoModel": (AutoModel, {}),
    "ForMaskedLM": (AutoModelForMaskedLM, {}),
    "ForSequenceClassification": (AutoModelForSequenceClassification, {"num_labels": 3}),
    "ForTokenClassification": (AutoModelForTokenClassification, {"num_labels": 3, "use_crf": False}),
    "ForTokenClassification-CRF": (AutoModelForTokenClassification, {"num_labels": 3, "use_crf": True}),
    "ForBidirectionalLM": (AutoModelForPreTraining, {}),  # ELMo's native objective
}


def model_cases() -> list[tuple[str, str]]:
    """(model_type, variant) of every registered model, as conftest's ``model_case``."""
    return [(t, v) for t, spec in sorted(bizoo.MODEL_SPECS.items()) for v in (spec.variants or {"default": {}})]


def heads_of(model_type: str) -> list[str]:
    """The heads a model type has: the four Auto classes every model fills, the CRF tagger (any encoder can use it)
    and, where one is registered, the pre-training objective."""
    names = list(HEADS)[:5]
    try:
        AutoModelForPreTraining._model_mapping[bizoo.get_spec(model_type).config_class]
        names.append("ForBidirectionalLM")
    except KeyError:
        pass
    return names


def tiny_fields(model_case) -> dict:
    model_type, variant = model_case
    spec = bizoo.get_spec(model_type)
    return {**TINY_CONFIGS[model_type], **spec.variants.get(variant, {}), "vocab_size": V}


@dataclass(frozen=True)
class Target:
    """What a case runs on: a model case, one of its heads, and facts the cases' applicability reads."""

    model_case: tuple[str, str]
    head: str

    @property
    def model_type(self) -> str:
        return self.model_case[0]

    @property
    def config(self):
        return bizoo.get_spec(self.model_type).config_class(**tiny_fields(self.model_case))

    @property
    def reads_chars(self) -> bool:
        return bizoo.get_spec(self.model_type).tokenizer == "wordchar"

    @property
    def has_token_types(self) -> bool:
        return getattr(self.config, "type_vocab_size", 0) > 0

    @property
    def has_learned_positions(self) -> bool:
        return getattr(self.config, "position_embedding_type", None) == "absolute"

    @property
    def needs_word_ids(self) -> bool:
        return self.model_type != "elmo"  # ELMo encodes char_ids: they alone are a complete input


@dataclass(frozen=True)
class Bad:
    """One bad input: ``change(inputs, context)`` turns the good inputs into the bad ones; ``match`` is a regex of
    the message (or {model_type: regex}, "*" for the others); ``applies(target)`` says which models have it."""

    name: str
    change: Callable
    match: str | dict
    applies: Callable[[Target], bool] = field(default=lambda target: True)

    def pattern(self, model_type: str) -> str:
        return self.match if isinstance(self.match, str) else self.match.get(model_type, self.match["*"])


_MODELS: dict = {}


def model_for(model_case, head: str, **overrides):
    """The (cached) tiny model of ``model_case`` with ``head``, in eval mode. Only cases that raise use the cache,
    so no forward pass ever changes a cached model's config (e.g. the problem_type a first loss stores)."""
    key = (model_case, head, tuple(sorted(overrides.items())))
    if key not in _MODELS:
        auto, fields = HEADS[head]
        config = bizoo.get_spec(model_case[0]).config_class(**{**tiny_fields(model_case), **fields, **overrides})
        _MODELS[key] = auto.from_config(config).eval()
    return _MODELS[key]


@contextmanager
def nothing_runs(model):
    """Fail if any layer of ``model`` runs: a bad input must be refused before any work."""

    def refuse(module, args):
        raise AssertionError(f"{type(module).__name__} ran before the bad input was refused")

    handles = [m.register_forward_pre_hook(refuse) for m in model.modules() if next(m.children(), None) is None]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def family_prefix(model_type: str) -> str:
    """The prefix of every class of a model, and so of each of its messages: "Lion", "BiGS", "BiLstmCrf", "Elmo"."""
    return bizoo.get_spec(model_type).models["AutoModel"].__name__.removesuffix("Model")


def good_ids(batch: int = B, length: int = L, seed: int = 0) -> torch.Tensor:
    return torch.randint(5, V, (batch, length), generator=torch.Generator().manual_seed(seed))


class Context:
    """The good inputs of a model and what the cases need to spoil them."""

    def __init__(self, model_case, model, make_inputs):
        self.model_case = model_case
        table = model.get_input_embeddings()  # None in ELMo's classifiers, which hold no word table
        self.embed_dim = table.weight.shape[1] if table is not None else model.config.hidden_size
        self._make_inputs = make_inputs

    def make(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        return self._make_inputs(self.model_case, ids, mask)

    def good(self) -> dict:
        mask = torch.ones(B, L, dtype=torch.long)
        mask[1, 4:] = 0
        return self.make(good_ids().masked_fill(mask == 0, 0), mask)

    def embeds(self, dim: int | None = None, dtype=torch.float32, bad=None, shape=None) -> torch.Tensor:
        embeds = torch.zeros(shape or (B, L, dim or self.embed_dim), dtype=dtype)
        if bad is not None:
            embeds[0, 1, 2] = bad
        return embeds


def replaced(inputs: dict, **changes) -> dict:
    """``inputs`` with ``changes`` (a None value removes the key)."""
    out = dict(inputs)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def set_at(tensor: torch.Tensor, index, value) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[index] = value
    return tensor


def chars(target: Target) -> bool:
    return target.reads_chars


# --------------------------------------------------------------------------------------------------------------
# Model inputs
# --------------------------------------------------------------------------------------------------------------

BAD_MODEL_INPUTS = [
    # ids outside the vocabulary
    Bad("input-id-too-large", lambda x, c: replaced(x, input_ids=set_at(x["input_ids"], (0, 1), V)),
        r"input_ids holds 120, outside \[0, vocab_size=120\)"),
    Bad("input-id-negative", lambda x, c: replaced(x, input_ids=set_at(x["input_ids"], (0, 1), -1)),
        r"input_ids holds -1, outside \[0, vocab_size=120\)"),
    # input_ids of another shape or kind
    Bad("input-ids-1d", lambda x, c: replaced(x, input_ids=x["input_ids"][0]),
        r"input_ids must (be a \(batch, length\) tensor|have the shape of char_ids' words \(2, 6\)), got \(6,\)"),
    Bad("input-ids-3d", lambda x, c: replaced(x, input_ids=x["input_ids"][None]),
        r"input_ids must (be a \(batch, length\) tensor|have the shape of char_ids' words \(2, 6\)), got \(1, 2, 6\)"),
    Bad("input-ids-a-list", lambda x, c: replaced(x, input_ids=x["input_ids"].tolist()),
        r"input_ids must (be a \(batch, length\) tensor|have the shape of char_ids' words \(2, 6\)), got list"),
    Bad("input-ids-float", lambda x, c: replaced(x, input_ids=x["input_ids"].float()),
        r"input_ids must be an integer tensor, got torch.float32"),
    Bad("input-ids-int16", lambda x, c: replaced(x, input_ids=x["input_ids"].short()),
        r"input_ids must hold int64 or int32 ids \(what an embedding indexes with\), got torch.int16"),
    # attention masks of another shape or with values other than 0/1
    Bad("attention-mask-shorter", lambda x, c: replaced(x, attention_mask=x["attention_mask"][:, :5]),
        r"attention_mask must have shape \(batch, length\) = \(2, 6\), got \(2, 5\)"),
    Bad("attention-mask-3d", lambda x, c: replaced(x, attention_mask=x["attention_mask"][..., None]),
        r"attention_mask must have shape \(batch, length\) = \(2, 6\), got \(2, 6, 1\)"),
    Bad("attention-mask-2", lambda x, c: replaced(x, attention_mask=set_at(x["attention_mask"], (0, 0), 2)),
        r"attention_mask must hold only 0 \(padding\) and 1 \(real token\), got 2"),
    Bad("attention-mask-minus-1", lambda x, c: replaced(x, attention_mask=set_at(x["attention_mask"], (0, 0), -1)),
        r"attention_mask must hold only 0 \(padding\) and 1 \(real token\), got -1"),
    Bad("attention-mask-0.5",
        lambda x, c: replaced(x, attention_mask=set_at(x["attention_mask"].float(), (0, 0), 0.5)),
        r"attention_mask must hold only 0 \(padding\) and 1 \(real token\), got 0.5"),
    # token types: the shape always; the values where the model has a token-type table
    Bad("token-type-ids-shorter", lambda x, c: replaced(x, token_type_ids=torch.zeros(B, L - 1, dtype=torch.long)),
        r"token_type_ids must have shape \(batch, length\) = \(2, 6\), got \(2, 5\)"),
    Bad("token-type-ids-float", lambda x, c: replaced(x, token_type_ids=torch.zeros(B, L)),
        r"token_type_ids must be an integer tensor, got torch.float32"),
    Bad("token-type-ids-uint8", lambda x, c: replaced(x, token_type_ids=torch.zeros(B, L, dtype=torch.uint8)),
        r"token_type_ids must hold int64 or int32 ids \(what an embedding indexes with\), got torch.uint8"),
    Bad("token-type-id-outside-the-table", lambda x, c: replaced(x, token_type_ids=torch.full((B, L), 7)),
        r"token_type_ids holds 7, outside \[0, type_vocab_size=2\)", lambda t: t.has_token_types),
    # characters (models that read them)
    Bad("char-ids-missing", lambda x, c: replaced(x, char_ids=None),
        r"char_ids \(batch, words, max_chars\) are required", chars),
    Bad("char-ids-fewer-words", lambda x, c: replaced(x, char_ids=x["char_ids"][:, :5]),
        {"elmo": r"input_ids must have the shape of char_ids' words \(2, 5\), got \(2, 6\)",
         "*": r"char_ids must have shape \(batch, words, max_chars\) = \(2, 6, C\), got \(2, 5, 6\)"}, chars),
    Bad("char-ids-2d", lambda x, c: replaced(x, char_ids=x["char_ids"][..., 0]),
        {"elmo": r"char_ids must be a \(batch, words, max_chars\) tensor, got \(2, 6\)",
         "*": r"char_ids must have shape \(batch, words, max_chars\) = \(2, 6, C\), got \(2, 6\)"}, chars),
    Bad("char-ids-float", lambda x, c: replaced(x, char_ids=x["char_ids"].float()),
        r"char_ids must be an integer tensor, got torch.float32", chars),
    Bad("char-ids-int8", lambda x, c: replaced(x, char_ids=x["char_ids"].to(torch.int8)),
        r"char_ids must hold int64 or int32 ids \(what an embedding indexes with\), got torch.int8", chars),
    Bad("char-rows-empty", lambda x, c: replaced(x, char_ids=x["char_ids"][..., :0]),
        {"elmo": r"char_ids rows hold 0 characters, fewer than the widest character filter \(3\)",
         "*": r"char_ids rows hold 0 characters; at least 1 are needed"}, chars),
    Bad("char-id-too-large", lambda x, c: replaced(x, char_ids=set_at(x["char_ids"], (0, 0, 0), 10_000)),
        r"char_ids holds 10000, outside \[0, char_vocab_size=262\)", chars),
    Bad("char-id-negative", lambda x, c: replaced(x, char_ids=set_at(x["char_ids"], (0, 0, 0), -1)),
        r"char_ids holds -1, outside \[0, char_vocab_size=262\)", chars),
    # input_ids or inputs_embeds
    Bad("input-ids-and-inputs-embeds", lambda x, c: replaced(x, inputs_embeds=c.embeds()),
        r"pass (exactly|at most) one of input_ids and inputs_embeds"),
    Bad("neither-input-ids-nor-inputs-embeds", lambda x, c: replaced(x, input_ids=None),
        r"pass exactly one of input_ids and inputs_embeds", lambda t: t.needs_word_ids),
    Bad("inputs-embeds-wider", lambda x, c: replaced(x, input_ids=None, inputs_embeds=c.embeds(c.embed_dim + 1)),
        r"inputs_embeds must have (last dim (hidden_size|word_embedding_size)=\d+|shape \(2, 6, \d+\)), "
        r"got \(2, 6, \d+\)"),
    Bad("inputs-embeds-2d", lambda x, c: replaced(x, input_ids=None, inputs_embeds=c.embeds(shape=(L, c.embed_dim))),
        r"inputs_embeds must (be|have shape) \(.*\), got \(6, \d+\)"),
    Bad("inputs-embeds-integer", lambda x, c: replaced(x, input_ids=None, inputs_embeds=c.embeds(dtype=torch.long)),
        r"inputs_embeds must be a floating-point tensor, got torch.int64"),
    Bad("inputs-embeds-nan", lambda x, c: replaced(x, input_ids=None, inputs_embeds=c.embeds(bad=float("nan"))),
        r"inputs_embeds contains NaN or inf; allowed are finite values"),
    Bad("inputs-embeds-inf", lambda x, c: replaced(x, input_ids=None, inputs_embeds=c.embeds(bad=float("inf"))),
        r"inputs_embeds contains NaN or inf; allowed are finite values"),
    # empty batches
    Bad("empty-batch", lambda x, c: c.make(good_ids(0, L)), r"the batch is empty \(batch=0, length=6\)"),
    Bad("empty-sequences", lambda x, c: c.make(good_ids(B, 0)), r"the batch is empty \(batch=2, length=0\)",
        # BiLSTM-CRF: rows of texts without words (no special tokens around them), run as padding positions
        lambda t: t.model_type != "bilstm_crf"),
    # longer than the learned positions (models that have them)
    Bad("longer-than-the-learned-positions", lambda x, c: c.make(good_ids(1, 65)),
        r"a sequence has 65 tokens but the model's learned positions stop at max_position_embeddings=64",
        lambda t: t.has_learned_positions),
    Bad("output-attentions", lambda x, c: replaced(x, output_attentions=True),
        r"output_attentions=True is not supported", lambda t: t.model_type != "lion"),  # LION returns its weights
    Bad("output-attentions-not-a-bool", lambda x, c: replaced(x, output_attentions="yes"),
        r"output_attentions must be True, False or None, got 'yes'", lambda t: t.model_type == "lion"),
    # ELMo's recurrent state carried over from a previous batch
    Bad("initial-states-of-another-shape", lambda x, c: replaced(x, initial_states=(torch.zeros(1), torch.zeros(1))),
        r"initial_states must be \(h, c\) with shapes \(2, 2, 2, 8\) and \(2, 2, 2, 16\)",
        lambda t: t.model_type == "elmo"),
]


def model_inputs_params():
    return [
        pytest.param(Target(case, head), bad, id=f"{case[0]}-{case[1]}-{head}-{bad.name}")
        for case in model_cases()
        for head in heads_of(case[0])
        for bad in BAD_MODEL_INPUTS
        if bad.applies(Target(case, head))
    ]


@pytest.mark.parametrize("target, bad", model_inputs_params())
def test_bad_model_input_is_a_value_error_before_any_work(target, bad, make_inputs):
    model = model_for(target.model_case, target.head)
    context = Context(target.model_case, model, make_inputs)
    inputs = bad.change(context.good(), context)
    with nothing_runs(model), pytest.raises(ValueError, match=bad.pattern(target.model_type)) as info:
        model(**inputs)
    assert str(info.value).startswith(family_prefix(target.model_type)), str(info.value)


# --------------------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------------------


def labels(value=None, shape=(B, L), at=(0, 1), dtype=torch.long, fill=-100):
    """A label tensor of ``shape`` filled with ``fill`` (-100: ignored), ``value`` at ``at``."""
    out = torch.full(shape, fill, dtype=dtype)
    if value is not None:
        out[at] = value
    return out


SINGLE = {"problem_type": "single_label_classification"}
MULTI = {"problem_type": "multi_label_classification"}
REGRESSION = {"problem_type": "regression"}


@dataclass(frozen=True)
class BadLabels:
    name: str
    head: str
    overrides: dict
    labels: Callable[[], object]
    match: str


BAD_LABELS = [
    # masked LM: one token id per position in [0, vocab_size), -100 = not predicted
    BadLabels("masked-lm-id-too-large", "ForMaskedLM", {}, lambda: labels(V),
              r"labels hold 120; allowed are 0\.\.119 and -100 \(ignored\)"),
    BadLabels("masked-lm-id-negative", "ForMaskedLM", {}, lambda: labels(-5), r"labels hold -5; allowed are 0\.\.119"),
    BadLabels("masked-lm-wrong-shape", "ForMaskedLM", {}, lambda: labels(7, shape=(B, L - 1)),
              r"labels must have shape \(2, 6\) \(one token id per position\), got \(2, 5\)"),
    BadLabels("masked-lm-float", "ForMaskedLM", {}, lambda: labels(7, dtype=torch.float32),
              r"labels must be integer class ids \(one token id per position\), got torch.float32"),
    BadLabels("masked-lm-not-a-tensor", "ForMaskedLM", {}, lambda: labels(7).tolist(),
              r"labels must be a torch.Tensor \(one token id per position\), got list"),
    # ELMo's bidirectional LM: one word id per position
    BadLabels("bidirectional-lm-id-too-large", "ForBidirectionalLM", {}, lambda: labels(V),
              r"labels hold 120; allowed are 0\.\.119 and -100"),
    BadLabels("bidirectional-lm-wrong-shape", "ForBidirectionalLM", {}, lambda: labels(7, shape=(B, L + 1)),
              r"labels must have shape \(2, 6\) \(one word id per position\), got \(2, 7\)"),
    # token classification, softmax and CRF: one tag id per position in [0, num_labels), -100 = ignored
    *[
        BadLabels(f"{prefix}-{name}", head, {}, make, match)
        for prefix, head in (("token", "ForTokenClassification"), ("crf-token", "ForTokenClassification-CRF"))
        for name, make, match in (
            ("tag-too-large", lambda: labels(3), r"labels hold 3; allowed are 0\.\.2 and -100 \(ignored\)"),
            ("tag-negative", lambda: labels(-2), r"labels hold -2; allowed are 0\.\.2 and -100"),
            ("wrong-shape", lambda: labels(1, shape=(B,), at=0),
             r"labels must have shape \(2, 6\) \(one tag id per position\), got \(2,\)"),
            ("float", lambda: labels(1, dtype=torch.float32),
             r"labels must be integer class ids \(one tag id per position\), got torch.float32"),
        )
    ],
    # sequence classification, single label: one class id per sequence
    BadLabels("single-label-class-too-large", "ForSequenceClassification", SINGLE, lambda: torch.tensor([0, 3]),
              r"labels hold 3; allowed are 0\.\.2 and -100 \(ignored\)"),
    BadLabels("single-label-class-negative", "ForSequenceClassification", SINGLE, lambda: torch.tensor([0, -1]),
              r"labels hold -1; allowed are 0\.\.2 and -100"),
    BadLabels("single-label-wrong-shape", "ForSequenceClassification", SINGLE, lambda: torch.tensor([[0, 1]]),
              r"labels must have shape \(2,\) \(one class id per sequence\), got \(1, 2\)"),
    BadLabels("single-label-wrong-batch", "ForSequenceClassification", SINGLE, lambda: torch.tensor([[0], [1], [2]]),
              r"labels must have shape \(2,\) \(one class id per sequence\), got \(3, 1\)"),
    BadLabels("single-label-float", "ForSequenceClassification", SINGLE, lambda: torch.tensor([0.0, 1.0]),
              r"labels must be integer class ids \(one class id per sequence\), got torch.float32"),
    BadLabels("inferred-single-label-given-multi-hot-ints", "ForSequenceClassification", {},
              lambda: torch.tensor([[0, 1, 1], [1, 0, 0]]),
              r"labels of shape \(2, 3\) for problem_type='single_label_classification'.*pass float labels or set "
              r"problem_type='multi_label_classification'"),
    # sequence classification, multi-label: (batch, num_labels) targets in [0, 1]
    BadLabels("multi-label-value-2", "ForSequenceClassification", MULTI,
              lambda: torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]),
              r"multi-label labels hold 2.0; allowed are targets in \[0, 1\]"),
    BadLabels("multi-label-value-negative", "ForSequenceClassification", MULTI,
              lambda: torch.tensor([[0.0, -1.0, 1.0], [0.0, 0.0, 1.0]]),
              r"multi-label labels hold -1.0; allowed are targets in \[0, 1\]"),
    BadLabels("multi-label-nan", "ForSequenceClassification", MULTI,
              lambda: torch.tensor([[0.0, float("nan"), 1.0], [0.0, 0.0, 1.0]]),
              r"multi-label labels hold nan; allowed are targets in \[0, 1\]"),
    BadLabels("multi-label-wrong-shape", "ForSequenceClassification", MULTI, lambda: torch.tensor([0.0, 1.0]),
              r"multi-label labels must have shape \(batch, num_labels\) = \(2, 3\), got \(2,\)"),
    # sequence classification, regression: (batch, num_labels) finite numbers, (batch,) too for one output
    BadLabels("regression-wrong-shape", "ForSequenceClassification", {**REGRESSION, "num_labels": 1},
              lambda: torch.tensor([0.5, 0.2, 0.1]),
              r"regression labels must have shape \(2, 1\) or \(2,\) \(batch, num_labels=1\), got \(3,\)"),
    BadLabels("regression-several-outputs-wrong-shape", "ForSequenceClassification", REGRESSION,
              lambda: torch.tensor([0.5, 0.2]),
              r"regression labels must have shape \(2, 3\) \(batch, num_labels=3\), got \(2,\)"),
    BadLabels("regression-nan", "ForSequenceClassification", {**REGRESSION, "num_labels": 1},
              lambda: torch.tensor([0.5, float("nan")]),
              r"regression labels contain NaN or inf; allowed are finite numbers"),
    BadLabels("sequence-labels-not-a-tensor", "ForSequenceClassification", SINGLE, lambda: [0, 1],
              r"labels must be a torch.Tensor, got list"),
]


def labels_params():
    return [
        pytest.param(case, bad, id=f"{case[0]}-{case[1]}-{bad.name}")
        for case in model_cases()
        for bad in BAD_LABELS
        if bad.head in heads_of(case[0])
    ]


@pytest.mark.parametrize("case, bad", labels_params())
def test_bad_labels_are_a_value_error_before_the_encoder_runs(case, bad, make_inputs):
    model = model_for(case, bad.head, **bad.overrides)
    inputs = Context(case, model, make_inputs).good()
    with nothing_runs(model), pytest.raises(ValueError, match=bad.match) as info:
        model(**inputs, labels=bad.labels())
    assert str(info.value).startswith(type(model).__name__), str(info.value)


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
@pytest.mark.parametrize("case", model_cases(), ids=lambda case: "-".join(case))
def test_class_labels_of_any_integer_dtype_are_the_same_labels(case, make_inputs, dtype):
    """int32 labels (what numpy gives on some platforms) and uint8 ones are class ids like int64's: every head with
    class-id labels gives the same loss (the losses themselves take int64 only). uint8 has no -100: every position
    is labelled there."""
    for head in heads_of(case[0]):
        if head == "AutoModel":
            continue
        model = model_for(case, head, **(SINGLE if head == "ForSequenceClassification" else {}))
        inputs = Context(case, model, make_inputs).good()
        shape = (B,) if head == "ForSequenceClassification" else (B, L)
        ids = torch.arange(math.prod(shape)).reshape(shape) % 3  # valid in every head (3 labels, 120 words)
        if dtype == torch.int32:
            ids[0, ...] = -100
        with torch.no_grad():
            expected = model(**inputs, labels=ids).loss
            got = model(**inputs, labels=ids.to(dtype)).loss
        assert torch.isfinite(expected) and torch.equal(got, expected), (head, got, expected)


# --------------------------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------------------------

BAD_CONFIGS = [  # the fields every bizoo config has: the heads' options and the label maps
    ("vocab-size-zero", dict(vocab_size=0), r"vocab_size must be an int >= 1, got 0"),
    ("pad-token-outside-the-vocabulary", dict(pad_token_id=V), r"pad_token_id must be None or an int in \[0, "
                                                                r"vocab_size=120\), got 120"),
    ("classifier-dropout-negative", dict(classifier_dropout=-0.1), r"classifier_dropout must be a number in \[0, 1\)"),
    ("classifier-dropout-one", dict(classifier_dropout=1.0), r"classifier_dropout must be a number in \[0, 1\)"),
    ("unknown-pooling", dict(classifier_pooling="max"), r"classifier_pooling must be one of \("),
    ("unknown-kernel-backend", dict(kernel_backend="cuda"), r"kernel_backend must be one of \('auto', 'triton', "
                                                            r"'reference'\), got 'cuda'"),
    ("initializer-range-zero", dict(initializer_range=0.0), r"initializer_range must be a number > 0, got 0.0"),
    ("use-crf-not-a-bool", dict(use_crf="yes"), r"use_crf must be True or False, got 'yes'"),
    ("unknown-tag-scheme", dict(tag_scheme="IOB1"), r"tag_scheme must be one of \("),
    ("unknown-problem-type", dict(problem_type="ranking"), r"problem_type must be one of \(None, 'regression'"),
    ("single-label-with-one-output", dict(num_labels=1, problem_type="single_label_classification"),
     r"single_label_classification.*num_labels"),
    ("num-labels-zero", dict(num_labels=0), r"num_labels must be an int >= 1 \(the heads' outputs\), got 0"),
    ("id2label-with-a-gap", dict(id2label={0: "a", 2: "b"}),
     r"id2label must be a map of the ids 0\.\.1 \(num_labels=2\) to names, got \{0: 'a', 2: 'b'\}"),
    ("id2label-repeats-a-name", dict(id2label={0: "a", 1: "a"}), r"id2label must be a map of ids to distinct label "
                                                                  r"names \(str\)"),
    ("label2id-larger-than-id2label", dict(id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1, "c": 2}),
     r"label2id has 3 labels but id2label has 2 \(num_labels=2\)"),
    ("label2id-not-the-inverse-of-id2label", dict(id2label={0: "a", 1: "b"}, label2id={"a": 1, "b": 0}),
     r"label2id must be the inverse of id2label, \{'a': 0, 'b': 1\}, got \{'a': 1, 'b': 0\}"),
    ("label2id-disagrees-with-num-labels", dict(num_labels=3, label2id={"a": 0, "b": 1}),
     r"num_labels=3 but label2id names 2 labels \['a', 'b'\]"),
    ("label2id-ids-not-0-to-n", dict(label2id={"a": 0, "b": 5}), r"label2id must map label names to the ids 0\.\.n-1"),
]


@pytest.mark.parametrize("fields, match", [pytest.param(f, m, id=name) for name, f, m in BAD_CONFIGS])
def test_bad_config_is_a_value_error(model_case, make_config, fields, match):
    with pytest.raises(ValueError, match=match):
        make_config(model_case, **fields)


BAD_MODEL_CONFIGS = [  # each model's own fields: out of range, unknown, or contradicting another field
    ("lion", "hidden-size-not-a-multiple-of-heads", dict(hidden_size=30),
     r"hidden_size \(30\) must be a multiple of num_attention_heads \(4\)"),
    ("lion", "no-heads", dict(num_attention_heads=0), r"num_attention_heads must be an int >= 1, got 0"),
    ("lion", "hidden-size-a-string", dict(hidden_size="32"), r"hidden_size must be an int >= 1, got '32'"),
    ("lion", "unknown-variant", dict(lion_variant="x"), r"lion_variant must be one of \('lit', 'd', 's'\), got 'x'"),
    ("lion", "unknown-form", dict(lion_form="matrix"), r"lion_form must be one of \('auto', 'attention', 'rnn', "
                                                       r"'chunk'\), got 'matrix'"),
    ("lion", "unknown-feature-map", dict(feature_map="relu"), r"feature_map must be one of"),
    ("lion", "identity-feature-map-with-rowsum", dict(feature_map="identity", normalization="rowsum"),
     r"feature_map='identity' with normalization='rowsum' can divide by a zero or negative row sum"),
    ("lion", "negative-dropout", dict(hidden_dropout_prob=-0.1), r"hidden_dropout_prob must be a number in \[0, 1\)"),
    ("lion", "chunk-size-zero", dict(chunk_size=0), r"chunk_size must be an int >= 1, got 0"),
    ("lion", "negative-type-vocabulary", dict(type_vocab_size=-1), r"type_vocab_size must be an int >= 0, got -1"),
    ("lion", "unknown-position-type", dict(position_embedding_type="rotary"), r"position_embedding_type must be "
                                                                              r"one of \('absolute', 'none'\)"),
    ("lion", "unknown-activation", dict(hidden_act="tanh2"), r"hidden_act must be one of"),
    ("bigs", "unknown-form", dict(bigs_form="scan"), r"bigs_form must be one of \('auto', 'conv', 'fft', "
                                                     r"'toeplitz', 'recurrent'\), got 'scan'"),
    ("bigs", "unknown-pad-mode", dict(pad_mode="left"), r"pad_mode must be one of \('masked', 'legacy'\)"),
    ("bigs", "unknown-ssm-scaling", dict(ssm_scaling="log"), r"ssm_scaling must be one of"),
    ("bigs", "step-minimum-above-maximum", dict(ssm_dt_min=2.0, ssm_dt_max=1.0),
     r"ssm_dt_min must be <= ssm_dt_max \(1.0\), got 2.0"),
    ("bigs", "negative-ssm-weight-decay", dict(ssm_weight_decay=-0.1), r"ssm_weight_decay must be a number >= 0"),
    ("bigs", "no-state", dict(num_ssm=0), r"num_ssm must be an int >= 1, got 0"),
    ("bigs", "negative-dropout", dict(hidden_dropout_prob=-0.1), r"hidden_dropout_prob must be a number in \[0, 1\)"),
    ("bigs", "final-states-pooling-without-recurrence", dict(classifier_pooling="final_states"),
     r"classifier_pooling must be one of \('mean', 'first'\), got 'final_states'"),
    ("bilstm_crf", "even-char-cnn-width", dict(char_cnn_width=4), r"char_cnn_width must be an odd width"),
    ("bilstm_crf", "unknown-char-encoder", dict(char_encoder="gru"), r"char_encoder must be one of \('cnn', 'lstm', "
                                                                     r"'none'\), got 'gru'"),
    ("bilstm_crf", "word-dropout-without-unk", dict(word_dropout=0.1, unk_token_id=None),
     r"word_dropout must be 0 when unk_token_id is None"),
    ("bilstm_crf", "unk-token-outside-the-vocabulary", dict(unk_token_id=V), r"unk_token_id must be None or an int "
                                                                             r"in \[0, vocab_size=120\)"),
    ("bilstm_crf", "negative-embedding-dropout", dict(embedding_dropout=-0.5), r"embedding_dropout must be a number "
                                                                               r"in \[0, 1\)"),
    ("bilstm_crf", "no-hidden-units", dict(hidden_size=0), r"hidden_size must be an int >= 1, got 0"),
    ("elmo", "projection-larger-than-the-cells", dict(projection_size=32, lstm_size=16),
     r"lstm_size must be >= projection_size=32 \(the projection maps the cells down to projection_size\), got 16"),
    ("elmo", "no-projection", dict(projection_size=0), r"projection_size \(hidden_size\) must be an int >= 1, got 0"),
    ("elmo", "filter-wider-than-a-token", dict(max_characters_per_token=2),
     r"char_filters must be filters no wider than max_characters_per_token=2"),
    ("elmo", "malformed-char-filters", dict(char_filters=[[3]]), r"char_filters must be a non-empty list of \[width, "
                                                                 r"count\] pairs"),
    ("elmo", "no-char-filters", dict(char_filters=[]), r"char_filters must be a non-empty list"),
    ("elmo", "sampled-softmax-larger-than-the-vocabulary", dict(sampled_softmax_size=V + 1),
     r"sampled_softmax_size must be at most vocab_size=120"),
    ("elmo", "negative-highway-layers", dict(n_highway=-1), r"n_highway must be an int >= 0, got -1"),
    ("elmo", "cell-clip-zero", dict(cell_clip=0.0), r"cell_clip must be a number > 0, got 0.0"),
    ("elmo", "unknown-char-activation", dict(char_activation="gelu"), r"char_activation must be one of \('relu', "
                                                                      r"'tanh'\)"),
    ("elmo", "negative-dropout", dict(hidden_dropout_prob=-0.1), r"hidden_dropout_prob must be a number in \[0, 1\)"),
]


@pytest.mark.parametrize(
    "model_type, fields, match", [pytest.param(t, f, m, id=f"{t}-{name}") for t, name, f, m in BAD_MODEL_CONFIGS]
)
def test_bad_model_config_is_a_value_error(model_type, fields, match):
    spec = bizoo.get_spec(model_type)
    config_class = spec.config_class
    with pytest.raises(ValueError, match=match) as info:
        config_class(**{**TINY_CONFIGS[model_type], "vocab_size": V, **fields})
    assert str(info.value).startswith(config_class.__name__), str(info.value)
    # ... and a good config changed afterwards is refused when a model is built from it
    config = config_class(**{**TINY_CONFIGS[model_type], "vocab_size": V})
    for name, value in fields.items():
        setattr(config, name, value)
    with pytest.raises(ValueError, match=match):
        AutoModel.from_config(config)


def test_every_model_type_has_bad_config_cases():
    assert {t for t, *_ in BAD_MODEL_CONFIGS} == set(bizoo.MODEL_SPECS)


BAD_CRF_LABEL_SETS = [  # use_crf=True with an explicit tag_scheme whose constraints do not fit id2label
    ("inside-tag-without-its-begin", "BIO", ["O", "B-PER", "I-PER", "I-LOC"],
     r"tag_scheme='BIO' but id2label \['O', 'B-PER', 'I-PER', 'I-LOC'\] is not a complete BIO label set"),
    ("bio-labels-under-iobes", "IOBES", ["O", "B-PER", "I-PER"],
     r"tag_scheme='IOBES' but id2label .* is not a complete IOBES label set \(the labels read as 'BIO'\)"),
    ("bilou-without-last", "BILOU", ["O", "B-PER", "I-PER", "U-PER"], r"is not a complete BILOU label set"),
    ("iobes-labels-under-bilou", "BILOU", ["O", "B-PER", "I-PER", "E-PER", "S-PER"],
     r"tag_scheme='BILOU' does not fit id2label: label 'E-PER' \(index 3\) does not fit tag scheme 'BILOU'"),
    ("pos-tags-under-bio", "IOB2", ["NOUN", "VERB", "O"],
     r"tag_scheme='IOB2' does not fit id2label: label 'NOUN' \(index 0\) does not fit tag scheme 'IOB2' \(BIO\)"),
]


@pytest.mark.parametrize(
    "scheme, tags, match", [pytest.param(s, t, m, id=name) for name, s, t, m in BAD_CRF_LABEL_SETS]
)
def test_crf_tag_scheme_that_does_not_fit_the_labels_is_refused_when_built(model_case, make_config, scheme, tags,
                                                                           match):
    config = make_config(model_case, vocab_size=V, use_crf=True, tag_scheme=scheme, id2label=dict(enumerate(tags)))
    with pytest.raises(ValueError, match=match) as info:
        AutoModelForTokenClassification.from_config(config)
    assert str(info.value).startswith(type(config).__name__), str(info.value)


def test_crf_labels_changed_after_build_are_refused_before_the_encoder_runs(model_case, make_config, make_inputs):
    tags = ["O", "B-PER", "I-PER"]
    config = make_config(model_case, vocab_size=V, use_crf=True, tag_scheme="BIO", id2label=dict(enumerate(tags)))
    model = AutoModelForTokenClassification.from_config(config).eval()
    inputs = Context(model_case, model, make_inputs).good()
    with torch.no_grad():
        model(**inputs)  # fits
    model.config.id2label = {0: "O", 1: "I-LOC", 2: "I-PER"}  # no B- tags left: BIO could never start a chunk
    model.config.label2id = {"O": 0, "I-LOC": 1, "I-PER": 2}
    with nothing_runs(model), pytest.raises(ValueError, match=r"is not a complete BIO label set"):
        model(**inputs)


# --------------------------------------------------------------------------------------------------------------
# The word+character tokenizer
# --------------------------------------------------------------------------------------------------------------

SPECIALS = {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2}

BAD_TOKENIZER_ARGS = [
    ("vocab-not-a-dict", dict(vocab="the cat"), r"vocab must be a dict of word -> id, got str"),
    ("vocab-id-not-an-int", dict(vocab={**SPECIALS, "cat": "3"}, char_scheme="bilm"),
     r"vocab must map words \(non-empty str\) to integer ids, got 'cat': '3'"),
    ("vocab-empty-word", dict(vocab={**SPECIALS, "": 3}, char_scheme="bilm"),
     r"vocab must map words \(non-empty str\)"),
    ("vocab-ids-repeat", dict(vocab={**SPECIALS, "cat": 2}, char_scheme="bilm"), r"vocab ids must be 0\.\.3, each "
                                                                                 r"used once"),
    ("vocab-ids-with-a-gap", dict(vocab={**SPECIALS, "cat": 7}, char_scheme="bilm"), r"vocab ids must be 0\.\.3"),
    ("vocab-id-negative", dict(vocab={**SPECIALS, "cat": -3}, char_scheme="bilm"), r"vocab ids must be 0\.\.3"),
    ("pad-not-id-0", dict(vocab={"[UNK]": 0, "[PAD]": 1, "[MASK]": 2}), r"vocab must map '\[PAD\]' to 0 and "
                                                                        r"'\[UNK\]' to 1, got 1 and 0"),
    ("vocab-without-mask", dict(vocab={"[PAD]": 0, "[UNK]": 1}), r"vocab lacks the special tokens \['\[MASK\]'\]"),
    ("special-tokens-not-distinct", dict(add_sentence_boundaries=True, bos_token="[PAD]", char_scheme="bilm"),
     r"the special tokens \(pad, unk, mask\[, bos, eos\]\) must be distinct"),
    ("unknown-char-scheme", dict(char_scheme="bytes"), r"char_scheme must be one of \('vocab', 'bilm'\), got 'bytes'"),
    ("max-word-length-zero", dict(max_word_length=0), r"max_word_length must be an integer >= 1, got 0"),
    ("max-word-length-a-bool", dict(max_word_length=True), r"max_word_length must be an integer >= 1, got True"),
    ("bilm-rows-too-narrow", dict(char_scheme="bilm", max_word_length=2), r"max_word_length must be an integer >= 3"),
    ("model-max-length-zero", dict(model_max_length=0), r"model_max_length must be an integer >= 1, got 0"),
    ("lowercase-not-a-bool", dict(lowercase="yes"), r"lowercase must be True or False, got 'yes'"),
    ("char-vocab-with-bilm", dict(char_scheme="bilm", char_vocab={"a": 5}), r"char_vocab must be None with "
                                                                            r"char_scheme='bilm'"),
    ("vocab-scheme-without-char-vocab", dict(vocab={**SPECIALS, "cat": 3}), r"char_scheme='vocab' needs a char_vocab"),
    ("char-vocab-not-a-dict", dict(char_vocab=["a"]), r"char_vocab must be a dict of character -> id, got list"),
    ("char-vocab-without-reserved-ids", dict(char_vocab={"[PAD]": 0, "a": 1}), r"char_vocab must hold the reserved "
                                                                               r"entries"),
]


@pytest.mark.parametrize("kwargs, match", [pytest.param(k, m, id=name) for name, k, m in BAD_TOKENIZER_ARGS])
def test_bad_tokenizer_arguments_are_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WordCharTokenizerFast(**kwargs)


BAD_FROM_WORDS = [  # a wrong type is a TypeError (as from_words has always raised), a wrong value a ValueError
    ("none", None, {}, TypeError, r"words_or_sentences must be an iterable of texts or of word lists, got NoneType"),
    ("a-number", 5, {}, TypeError, r"must be an iterable of texts or of word lists, got int"),
    ("a-single-string", "the cat sat", {}, TypeError, r"not a single string"),
    ("an-item-of-bytes", [b"the cat"], {}, TypeError, r"item 0 must be a text \(str\) or a list of words \(str\)"),
    ("a-word-not-a-str", [["the", 3]], {}, TypeError, r"item 0 must be a text \(str\) or a list of words"),
    ("no-data", [], {}, ValueError, r"no training words"),
    ("blank-texts", ["  ", ""], {}, ValueError, r"no training words"),
    ("no-word-frequent-enough", ["the cat"], dict(min_frequency=5), ValueError,
     r"no word occurs min_frequency=5 times \(the most frequent occurs 1 times\)"),
    ("min-frequency-zero", ["the cat"], dict(min_frequency=0), ValueError, r"min_frequency must be an integer >= 1"),
    ("min-frequency-a-float", ["the cat"], dict(min_frequency=1.5), ValueError, r"min_frequency must be an integer"),
    ("vocabulary-smaller-than-the-specials", ["the cat"], dict(max_vocab_size=3), ValueError,
     r"max_vocab_size must be an integer >= 4, got 3"),
    ("model-max-length-zero", ["the cat"], dict(model_max_length=0), ValueError, r"model_max_length must be an "
                                                                                r"integer >= 1"),
    ("unknown-char-scheme", ["the cat"], dict(char_scheme="utf8"), ValueError, r"char_scheme must be one of"),
]


@pytest.mark.parametrize(
    "data, kwargs, error, match", [pytest.param(d, k, e, m, id=name) for name, d, k, e, m in BAD_FROM_WORDS]
)
def test_bad_from_words_arguments_are_refused(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        WordCharTokenizerFast.from_words(data, **kwargs)


def _edit_json(filename: str, edit: Callable[[dict], object]):
    """Damage: ``edit`` changes the parsed file in place (what it returns is ignored), which is written back."""

    def damage(folder):
        path = folder / filename
        content = json.loads(path.read_text())
        edit(content)
        path.write_text(json.dumps(content))

    return damage


def _write(filename: str, data: bytes):
    return lambda folder: (folder / filename).write_bytes(data)


def _truncate(filename: str):
    def damage(folder):
        path = folder / filename
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return damage


def _remove(*filenames: str):
    def damage(folder):
        for filename in filenames:
            (folder / filename).unlink()

    return damage


BAD_SAVED_TOKENIZERS = [  # a folder save_pretrained wrote, then damaged
    ("tokenizer-json-missing", _remove("tokenizer.json"), r"tokenizer\.json is missing"),
    ("tokenizer-config-missing", _remove("tokenizer_config.json"), r"tokenizer_config\.json is missing"),
    ("empty-folder", _remove("tokenizer.json", "tokenizer_config.json"), r"tokenizer\.json is missing"),
    ("tokenizer-json-truncated", _truncate("tokenizer.json"), r"tokenizer\.json is not valid JSON .*the file is "
                                                              r"damaged"),
    ("tokenizer-json-empty", _write("tokenizer.json", b""), r"tokenizer\.json is not valid JSON"),
    ("tokenizer-json-binary", _write("tokenizer.json", bytes(range(256))), r"tokenizer\.json is not valid JSON"),
    ("tokenizer-json-a-list", _write("tokenizer.json", b"[1, 2]"), r"tokenizer\.json must hold a JSON object, "
                                                                   r"got list"),
    ("tokenizer-json-of-another-model", _edit_json("tokenizer.json", lambda j: j.update(model={"type": "BPE"})),
     r"tokenizer\.json must hold a word vocabulary \(a 'WordLevel' model with a vocab\), got model type 'BPE'"),
    ("vocabulary-without-pad", _edit_json("tokenizer.json", lambda j: j["model"]["vocab"].pop("[PAD]")),
     r"the tokenizer saved in .* is invalid: vocab must map '\[PAD\]' to 0"),
    ("vocabulary-ids-with-a-gap", _edit_json("tokenizer.json", lambda j: j["model"]["vocab"].update(cat=10_000)),
     r"the tokenizer saved in .* is invalid: vocab ids must be 0\.\."),
    ("tokenizer-config-truncated", _truncate("tokenizer_config.json"), r"tokenizer_config\.json is not valid JSON"),
    ("char-vocab-missing", _edit_json("tokenizer_config.json", lambda j: j.pop("char_vocab")),
     r"the tokenizer saved in .* is invalid: char_scheme='vocab' needs a char_vocab"),
    ("char-vocab-ids-damaged", _edit_json("tokenizer_config.json", lambda j: j["char_vocab"].update(a=999)),
     r"the tokenizer saved in .* is invalid: char_vocab ids must be 0\.\."),
    ("unknown-char-scheme", _edit_json("tokenizer_config.json", lambda j: j.update(char_scheme="utf8")),
     r"the tokenizer saved in .* is invalid: char_scheme must be one of"),
    ("max-word-length-a-string", _edit_json("tokenizer_config.json", lambda j: j.update(max_word_length="50")),
     r"the tokenizer saved in .* is invalid: max_word_length must be an integer >= 1, got '50'"),
]


@pytest.fixture(scope="module")
def small_tokenizer():
    return WordCharTokenizerFast.from_words(["The cat sat on the mat .", "a cat and a dog"], model_max_length=32)


def saved_tokenizer_params():
    """Every case through ``WordCharTokenizerFast.from_pretrained``, and through ``AutoTokenizer.from_pretrained``
    where tokenizer_config.json is still readable JSON (AutoTokenizer reads it first to find the class, and
    transformers reports a missing or unreadable one itself)."""
    params = []
    for name, damage, match in BAD_SAVED_TOKENIZERS:
        loaders = ["WordCharTokenizerFast"]
        if name not in ("tokenizer-config-missing", "empty-folder", "tokenizer-config-truncated"):
            loaders.append("AutoTokenizer")
        params += [pytest.param(damage, match, loader, id=f"{name}-{loader}") for loader in loaders]
    return params


@pytest.mark.parametrize("damage, match, loader", saved_tokenizer_params())
def test_a_missing_or_damaged_tokenizer_file_is_a_value_error(small_tokenizer, tmp_path, damage, match, loader):
    small_tokenizer.save_pretrained(tmp_path)
    damage(tmp_path)
    load = WordCharTokenizerFast.from_pretrained if loader == "WordCharTokenizerFast" else AutoTokenizer.from_pretrained
    with pytest.raises(ValueError, match=match) as info:
        load(str(tmp_path))
    assert str(info.value).startswith("WordCharTokenizerFast: "), str(info.value)


BAD_TOKENIZER_CALLS = [
    ("empty-batch", lambda t: t([]), r"text is an empty batch: give at least one text"),
    ("empty-batch-with-tensors", lambda t: t([], padding=True, return_tensors="pt"), r"text is an empty batch"),
    ("split-words-given-a-string", lambda t: t("the cat", is_split_into_words=True),
     r"with is_split_into_words=True, text must be a list of words \(str\) or a batch of such lists, got 'the cat'"),
    ("split-words-not-strings", lambda t: t([["the", 3]], is_split_into_words=True),
     r"with is_split_into_words=True, text must be a list of words"),
    ("split-pair-not-strings", lambda t: t(["the"], [None], is_split_into_words=True),
     r"with is_split_into_words=True, text_pair must be a list of words"),
    ("text-a-number", lambda t: t(5), r"text input must be of type"),
    ("pair-batches-of-different-sizes", lambda t: t(["the cat", "a dog"], ["on"]), r"batch length of `text`: 2 does "
                                                                                    r"not match"),
    ("char-rows-not-matching-the-ids", lambda t: t.pad([{"input_ids": [3, 5], "char_ids": [[4, 0]]}]),
     r"char_ids has 1 rows but input_ids has 2 tokens; they must match"),
    ("id-outside-the-vocabulary", lambda t: t.ids_to_char_ids([10_000]), r"token id 10000 is not in the vocabulary "
                                                                         r"\(ids 0\.\.\d+\)"),
    ("id-negative", lambda t: t.ids_to_char_ids([-1]), r"token id -1 is not in the vocabulary"),
    ("id-not-an-int", lambda t: t.ids_to_char_ids(["cat"]), r"ids_to_char_ids: ids must be integer token ids, got "
                                                            r"'cat'"),
    ("id-a-float", lambda t: t.ids_to_char_ids([torch.tensor(3.0)]), r"ids must be integer token ids, got 3.0"),
    ("word-not-a-string", lambda t: t.word_to_char_ids(5), r"word_to_char_ids: word must be a str, got int"),
]


@pytest.mark.parametrize("call, match", [pytest.param(c, m, id=name) for name, c, m in BAD_TOKENIZER_CALLS])
def test_bad_tokenizer_calls_are_a_value_error(small_tokenizer, call, match):
    with pytest.raises(ValueError, match=match):
        call(small_tokenizer)


# --------------------------------------------------------------------------------------------------------------
# All-padding rows: not an error
# --------------------------------------------------------------------------------------------------------------


def floating_tensors(value, name="output"):
    """(name, tensor) of every floating-point tensor in a model output (tuples of hidden states included)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield name, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from floating_tensors(item, f"{name}[{i}]")
    elif hasattr(value, "items"):
        for key, item in value.items():
            yield from floating_tensors(item, key)


def padding_labels(head: str, ids: torch.Tensor, mask: torch.Tensor):
    """Labels a real batch of ``head`` would have: -100 at padding (so none on an all-padding row), and a class for
    every sequence, the all-padding one included."""
    if head in ("ForMaskedLM", "ForBidirectionalLM"):
        return ids.masked_fill(mask == 0, -100)
    if head.startswith("ForTokenClassification"):
        return torch.randint(0, 3, ids.shape, generator=torch.Generator().manual_seed(1)).masked_fill(mask == 0, -100)
    if head == "ForSequenceClassification":
        return torch.arange(ids.shape[0]) % 3
    return None


#: Settings besides the registered variants where an empty row could divide by zero: LION's LayerNorm instead of the
#: row sum, ELMo's per-token normalisation of the mixed layers, and each pooling over no real token.
PADDING_SETTINGS = [
    ("lion", "s", "ForTokenClassification-CRF", dict(normalization="none", feature_map="identity")),
    ("lion", "d", "ForSequenceClassification", dict(classifier_pooling="first")),
    ("bigs", "conv", "ForSequenceClassification", dict(classifier_pooling="first")),
    ("bilstm_crf", "cnn", "ForSequenceClassification", dict(classifier_pooling="mean")),
    ("bilstm_crf", "lstm", "ForSequenceClassification", dict(classifier_pooling="first")),
    ("elmo", "default", "ForSequenceClassification", dict(mix_layer_norm=True, classifier_pooling="mean")),
    ("elmo", "default", "ForTokenClassification-CRF", dict(mix_layer_norm=True)),
]


def model_head_params():
    params = [
        pytest.param(case, head, {}, id=f"{case[0]}-{case[1]}-{head}")
        for case in model_cases()
        for head in heads_of(case[0])
    ]
    for model_type, variant, head, settings in PADDING_SETTINGS:
        name = "-".join(f"{key}={value}" for key, value in settings.items())
        params.append(pytest.param((model_type, variant), head, settings, id=f"{model_type}-{variant}-{head}-{name}"))
    return params


@pytest.mark.parametrize("case, head, settings", model_head_params())
def test_all_padding_rows_give_finite_outputs_and_leave_the_other_rows_alone(case, head, settings, make_config,
                                                                             make_inputs):
    auto, fields = HEADS[head]
    model = auto.from_config(make_config(case, vocab_size=V, **fields, **settings))  # fresh: a loss sets problem_type
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1] = 0  # row 1: padding only
    mask[2, 5:] = 0
    ids = good_ids(3, 7, seed=2).masked_fill(mask == 0, 0)
    inputs = make_inputs(case, ids, mask)
    labels = padding_labels(head, ids, mask)

    # training step: every output, the loss and every gradient finite
    if labels is not None:
        inputs["labels"] = labels
    model.train()
    out = model(**inputs, output_hidden_states=True)
    for name, tensor in floating_tensors(out):
        assert torch.isfinite(tensor).all(), f"{name} is not finite"
    objective = out.loss if labels is not None else out.last_hidden_state.sum()
    assert torch.isfinite(objective)
    objective.backward()
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all(), f"the gradient of {name} is not finite"

    # inference: the all-padding row predicts nothing, and the other rows are as they are without it
    model.eval()
    inputs.pop("labels", None)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        alone = model(**make_inputs(case, ids[[0, 2]], mask[[0, 2]]), output_hidden_states=True)
    for name, tensor in floating_tensors(out):
        assert torch.isfinite(tensor).all(), f"{name} is not finite"
    if getattr(out, "predictions", None) is not None:
        assert (out.predictions[1] == -100).all()
    real = mask[[0, 2]].bool()
    for (name, got), (_, want) in zip(floating_tensors(out), floating_tensors(alone), strict=True):
        assert got.shape[0] == 3, name
        got = got[[0, 2]]
        if got.dim() >= 2 and got.shape[1] == 7:
            got, want = got[real], want[real]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")

    # a batch of padding only: finite, nothing predicted, and a loss of 0 where nothing is labelled
    mask, ids = torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long)
    inputs = make_inputs(case, ids, mask)
    labels = padding_labels(head, ids, mask)
    with torch.no_grad():
        out = model(**inputs, **({} if labels is None else {"labels": labels}))
    for name, tensor in floating_tensors(out):
        assert torch.isfinite(tensor).all(), f"padding only: {name} is not finite"
    if getattr(out, "loss", None) is not None and head != "ForSequenceClassification":
        assert out.loss.item() == 0.0
    if getattr(out, "predictions", None) is not None:
        assert (out.predictions == -100).all()

