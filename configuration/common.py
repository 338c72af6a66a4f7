"""What every bizoo configuration shares: the head options (ARCHITECTURE.md §5), the kernel backend, and field checks.

Every model config derives from ``BizooConfig``. Field checks raise ``ValueError`` naming the config class, the
field, the value given and what is allowed; they run when a config is built and again when a model is built from
it (a field may have been changed in between).
"""

from __future__ import annotations

import re

from transformers import PreTrainedConfig
from transformers.utils import logging

POOLINGS = ("mean", "first", "final_states")
BACKENDS = ("auto", "triton", "reference")
TAG_SCHEMES = ("auto", "none", "IOB2", "BIO", "IOBES", "BIOES", "BILOU", "BIOUL")
CRF_LOGITS = ("max_marginals", "log_marginals")
#: The word+character tokenizer's character schemes; "bilm" pads inside a word with BILM_PAD_CHAR_ID (bilm-tf's
#: padding character 260, shifted by one), which the character encoders leave out with 0. (The tokenizer module is
#: standalone, shipped as code of its own, and spells these in its own terms.)
CHAR_SCHEMES = ("vocab", "bilm")
BILM_PAD_CHAR_ID = 261
#: kwargs of ``from_dict`` after which it does not ``check`` the config: the label maps (checked when a model is built
#: from it) and what transformers passes to every config it loads (set before ``__init__`` runs, which checks them)
UNCHECKED_FROM_DICT_KWARGS = frozenset(
    ("id2label", "label2id", "num_labels", "name_or_path", "dtype", "torch_dtype", "attn_implementation",
     "experts_implementation", "output_attentions")
)

logger = logging.get_logger(__name__)


def label_id(value) -> int | None:
    """A label id of ``label2id`` as an int: an int (not a bool), or a string of decimal digits ("0", "12"), which
    ``PreTrainedConfig`` accepts and config.json files written by other tools hold; None for anything else."""
    if type(value) is int:
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        return int(value)
    return None


def id2label_from_label2id(name: str, label2id, num_labels) -> dict[int, str]:
    """The id2label of a config (class ``name``) given only ``label2id``, checked: names to the ids 0..n-1, n =
    ``num_labels`` when given."""
    ids = [label_id(i) for i in label2id.values()] if isinstance(label2id, dict) else None
    if ids is None or None in ids or sorted(ids) != list(range(len(ids))):
        raise ValueError(
            f"{name}: label2id must map label names to the ids 0..n-1 (ints, or strings of digits), each once, "
            f"got {label2id!r}"
        )
    if num_labels is not None and num_labels != len(label2id):
        raise ValueError(
            f"{name}: num_labels={num_labels} but label2id names {len(label2id)} labels {sorted(label2id)}; "
            "give matching sizes (or only one of them)"
        )
    return {label_id(index): label for label, index in label2id.items()}


class BizooConfig(PreTrainedConfig):
    r"""Base configuration of every bizoo model: the fields of the shared heads.

    Args:
        classifier_pooling (`str`, defaults to `"mean"`): how `...ForSequenceClassification` pools the sequence:
            `"mean"` over real tokens, `"first"` real token, or `"final_states"`: the forward direction's state at
            the last real token and the backward direction's at the first (recurrent models only).
        classifier_dropout (`float`, *optional*): dropout of the classification heads; `hidden_dropout_prob` if unset.
        sparse_prediction (`bool`, defaults to `True`): in training with labels, the masked-LM head projects only the
            positions whose label is not -100, and `logits` is then `(number of such positions, vocab_size)`; on a GPU
            in eager mode that number is read back to the host once per step (False: every position, no read-back).
            In evaluation `logits` is `(batch, length, vocab_size)` either way.
        kernel_backend (`str`, defaults to `"auto"`): `"auto"`, `"triton"` or `"reference"` for the fused ops.
        initializer_range (`float`, defaults to 0.02): standard deviation of the normal initialisers.
        use_crf (`bool`, defaults to `False`): `...ForTokenClassification` decodes with a linear-chain CRF (its
            `logits` are then the CRF's max-marginal scores, whose argmax is the Viterbi path).
        tag_scheme (`str`, defaults to `"auto"`): the tag scheme whose illegal transitions the CRF forbids in
            training and decoding: `"IOB2"`/`"BIO"`, `"IOBES"`/`"BIOES"`, `"BILOU"`/`"BIOUL"`, `"none"`, or `"auto"`
            (detected from `id2label`).
        output_marginals (`bool`, defaults to `False`): `...ForTokenClassification` also returns `marginals`
            (B, L, num_labels), p(y_t = k | x) at every real position (the CRF's forward-backward marginals, or the
            softmax without a CRF); a forward's own `output_marginals=` argument wins.
        crf_logits (`str`, defaults to `"max_marginals"`): what a CRF head returns as `logits`: `"max_marginals"`
            (argmax = the Viterbi path) or `"log_marginals"` (log p(y_t = k | x): the token-classification
            pipeline's `score` is then that probability; `predictions` stay the Viterbi path).
    """

    # Pooling options that this model's encoder supports (recurrent models add "final_states").
    supported_poolings = ("mean", "first")
    # Output fields the Trainer leaves out of its predictions: the token heads' decoded tags and marginals, so that
    # `EvalPrediction.predictions` is the logits alone, as for transformers' own token classifiers (run_ner's
    # `np.argmax(predictions, axis=2)`; a CRF head's argmax is its Viterbi path).
    keys_to_ignore_at_inference = ["predictions", "marginals"]

    def __init__(
        self,
        classifier_pooling: str = "mean",
        classifier_dropout: float | None = None,
        sparse_prediction: bool = True,
        kernel_backend: str = "auto",
        initializer_range: float = 0.02,
        use_crf: bool = False,
        tag_scheme: str = "auto",
        output_marginals: bool = False,
        crf_logits: str = "max_marginals",
        **kwargs,
    ):
        self.classifier_pooling = classifier_pooling
        self.classifier_dropout = classifier_dropout
        self.sparse_prediction = sparse_prediction
        self.kernel_backend = kernel_backend
        self.initializer_range = initializer_range
        self.use_crf = use_crf
        self.tag_scheme = tag_scheme
        self.output_marginals = output_marginals
        self.crf_logits = crf_logits
        if kwargs.get("label2id") is not None and kwargs.get("id2label") is None:
            # transformers would replace a lone label2id by LABEL_0.. names of num_labels; take the names from it
            name, num_labels = type(self).__name__, kwargs.get("num_labels")
            kwargs["id2label"] = id2label_from_label2id(name, kwargs["label2id"], num_labels)
        # transformers' validate_token_ids, run at the end of PreTrainedConfig.__init__, compares every *_token_id
        # with vocab_size: a vocab_size that is no number fails there as a TypeError wrapped in huggingface_hub's
        # StrictDataclassClassValidationError, which is no ValueError and names neither the field nor what is allowed
        if hasattr(self, "vocab_size"):
            self._positive_int("vocab_size")
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """transformers' ``from_dict`` (which ``from_pretrained`` of a config or a model calls), where a label map
        passed alone in ``kwargs`` replaces both maps: ``from_pretrained(checkpoint, id2label=...)``, the usual way to
        fine-tune a checkpoint on new labels, gives the inverse ``label2id`` too (and ``label2id=...`` alone the
        ``id2label`` it names). transformers sets such kwargs on the loaded config one by one, which would leave the
        checkpoint's other map beside the new one, stale, and ``check`` would refuse the pair. Label ids given as
        strings of digits (``{"0": "O"}``, as JSON holds them) become ints, as ``PreTrainedConfig.__init__`` makes
        them."""
        id2label, label2id = kwargs.get("id2label"), kwargs.get("label2id")
        if isinstance(id2label, dict) and label2id is None:
            id2label = {label_id(key) if label_id(key) is not None else key: name for key, name in id2label.items()}
            kwargs["id2label"] = id2label
            if all(isinstance(name, str) for name in id2label.values()):  # else check() names the bad map
                kwargs["label2id"] = {name: index for index, name in id2label.items()}
        elif label2id is not None and id2label is None:
            kwargs["id2label"] = id2label_from_label2id(cls.__name__, label2id, kwargs.get("num_labels"))
        result = super().from_dict(config_dict, **kwargs)
        # transformers sets the kwargs on the built config one by one, after __init__ checked the fields; a bad one
        # (from_pretrained(folder, hidden_dropout_prob=2.0)) is refused here, naming it, as at construction. Label
        # maps given alone are checked when a model is built from the config (ARCHITECTURE.md §3), as before.
        config = result[0] if isinstance(result, tuple) else result
        if any(hasattr(config, key) for key in set(kwargs) - UNCHECKED_FROM_DICT_KWARGS):
            config.check()
        return result

    def update(self, config_dict: dict) -> None:
        """transformers' ``update`` (the fields of ``config_dict`` set one by one), then ``check``: a bad value is a
        ``ValueError`` naming the field, as at construction, and leaves the config as it was."""
        self._checked_change(lambda: super(BizooConfig, self).update(config_dict))

    def update_from_string(self, update_str: str) -> None:
        """transformers' ``update_from_string`` ("hidden_size=64,qkv_bias=false"), checked as ``update``."""
        self._checked_change(lambda: super(BizooConfig, self).update_from_string(update_str))

    def _checked_change(self, change) -> None:
        """Run ``change`` (which sets fields), then ``check``; on any error every field is put back (a property
        such as ``num_labels`` sets others: the whole attribute dict is restored)."""
        saved = dict(self.__dict__)
        try:
            change()
            self.check()
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    # Sizes the shared heads read. A model whose encoder output or embedding size differs from hidden_size
    # (e.g. a BiLSTM: 2 × hidden_size out, word embeddings of their own size) overrides them.
    @property
    def encoder_output_size(self) -> int:
        """Size of the encoder's output vectors (what the heads read)."""
        return self.hidden_size

    @property
    def embedding_size(self) -> int:
        """Size of the word embeddings the masked-LM decoder is tied to."""
        return self.hidden_size

    # ------------------------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise ``ValueError`` for any invalid or contradictory field. Subclasses extend it."""
        self._choice("classifier_pooling", self.supported_poolings)
        if self.classifier_dropout is not None:
            self._probability("classifier_dropout")
        self._boolean("sparse_prediction")
        self._choice("kernel_backend", BACKENDS)
        self._positive_number("initializer_range")
        self._boolean("use_crf")
        self._choice("tag_scheme", TAG_SCHEMES)
        self._boolean("output_marginals")
        self._choice("crf_logits", CRF_LOGITS)
        problem_types = (None, "regression", "single_label_classification", "multi_label_classification")
        self._choice("problem_type", problem_types)
        self._check_labels()

    def _check_labels(self) -> None:
        """num_labels >= 1, id2label maps exactly the ids 0..num_labels-1 to distinct names, and label2id (unless it
        is transformers' stale default LABEL_i map) is its inverse, its ids ints or strings of digits."""
        name = type(self).__name__
        id2label = self.id2label
        if id2label is None:
            return
        if not isinstance(id2label, dict):
            self._fail("id2label", id2label, "a dict of label id -> name")
        num_labels = len(id2label)
        if num_labels < 1:
            raise ValueError(f"{name}: num_labels must be an int >= 1 (the heads' outputs), got {num_labels}")
        if not all(type(k) is int for k in id2label) or sorted(id2label) != list(range(num_labels)):
            self._fail("id2label", id2label, f"a map of the ids 0..{num_labels - 1} (num_labels={num_labels}) to names")
        if self.problem_type == "single_label_classification" and num_labels == 1:
            # transformers refuses it when a config is built (PreTrainedConfig.__init__) but its models accept a
            # config changed so afterwards (its common tests build one); bizoo's models too, since cross-entropy over
            # one class is well defined: 0 whatever the logits, so such a head never learns. Said once, in words.
            logger.warning_once(
                f"{name}: problem_type='single_label_classification' with num_labels=1: the cross-entropy over one "
                "class is always 0, so this head will not learn; use num_labels >= 2 (one per class), or "
                "problem_type='regression' for one real-valued output"
            )
        names = list(id2label.values())
        if not all(isinstance(label, str) for label in names) or len(set(names)) != num_labels:
            self._fail("id2label", id2label, "a map of ids to distinct label names (str)")
        label2id = self.label2id
        if not label2id:
            return
        expected = {label: index for index, label in id2label.items()}
        if not isinstance(label2id, dict):
            self._fail("label2id", label2id, f"a dict of label name -> id, the inverse of id2label, {expected}")
        if all(isinstance(k, str) and k == f"LABEL_{v}" for k, v in label2id.items()):
            return  # transformers' default map, left behind when id2label is set alone (e.g. from_pretrained kwargs)
        if {label: label_id(index) for label, index in label2id.items()} != expected:
            if len(label2id) != num_labels:
                raise ValueError(
                    f"{name}: label2id has {len(label2id)} labels but id2label has {num_labels} "
                    f"(num_labels={num_labels}); label2id must be the inverse of id2label, {expected}"
                )
            self._fail("label2id", label2id, f"the inverse of id2label, {expected}")

    def _fail(self, field: str, value, allowed: str):
        raise ValueError(f"{type(self).__name__}: {field} must be {allowed}, got {value!r}")

    def _choice(self, field: str, allowed) -> None:
        value = getattr(self, field)
        if value not in allowed:
            self._fail(field, value, f"one of {tuple(allowed)}")

    def _positive_int(self, field: str, minimum: int = 1) -> None:
        value = getattr(self, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self._fail(field, value, f"an int >= {minimum}")

    def _positive_number(self, field: str) -> None:
        value = getattr(self, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            self._fail(field, value, "a number > 0")

    def _probability(self, field: str) -> None:
        value = getattr(self, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            self._fail(field, value, "a number in [0, 1)")

    def _boolean(self, field: str) -> None:
        value = getattr(self, field)
        if not isinstance(value, bool):
            self._fail(field, value, "True or False")

    def _token_id(self, field: str) -> None:
        value = getattr(self, field, None)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size
        ):
            self._fail(field, value, f"None or an int in [0, vocab_size={self.vocab_size})")
