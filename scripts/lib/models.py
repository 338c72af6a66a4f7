"""Models and tokenizers the commands load or build, and the options that configure a model.

* ``load_model``: a checkpoint folder or hub name, or a registered model type (``"lion"``) to start from scratch,
  sized to the tokenizer (``tokenizer_config_fields``).
* ``pretrained_tokenizer``, ``build_wordchar_tokenizer``: a saved tokenizer, or a word+character vocabulary built
  from the training words (WordPiece training is ``lib/wordpiece.py``).
* ``parse_model_config``, ``check_config_fields``, ``config_fields``, ``variant_fields``: ``--model-config KEY=VALUE``
  and ``--variant``, checked against the configuration class; ``changed_weight_shapes``: the checkpoint weights such
  fields would resize (``saved_weight_shapes``: a folder's weight shapes from the safetensors headers).
* ``add_dtype_argument``, ``weights_dtype``, ``check_mixed_precision``, ``check_resume_dtype``: --dtype
  (run_mlm.py's; transformers 4's --torch_dtype), the dtype of the weights a command trains: float32 unless asked,
  for a checkpoint stored in half precision too (transformers 5's ``from_pretrained`` keeps the stored dtype, and
  AdamW's small updates to bfloat16 weights mostly round away: two steps at lr 2e-5 change 21% of a tiny LION's
  layer weights in bfloat16, 99.99% in float32).
* ``model_spec``, ``BASELINES``: the spec of a model type a command may build from scratch: a bizoo model type, or a
  baseline that transformers ships ("bert": ``BertForMaskedLM`` with SDPA attention, the yardstick of
  ``bizoo evaluate-all``), described by a ``ModelSpec`` that is not registered (transformers registers it).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bizoo

from ...modeling.tokenization_wordchar import WordCharTokenizerFast
from .command import CommandError
from .model_defaults import model_defaults
from .sources import HubOptions, resolve_checkpoint

logger = logging.getLogger(__name__)

#: The smallest --vocab-size accepted (the special tokens and a few characters).
MIN_VOCAB_SIZE = 100


#: Model types that transformers ships which ``bizoo pretrain`` also builds from scratch, as baselines to compare the
#: zoo with (``model_spec`` describes each).
BASELINES = ("bert",)


def model_spec(model_type: str):
    """The ``ModelSpec`` of a bizoo model type or of a baseline (``BASELINES``); ``CommandError`` naming both kinds
    otherwise."""
    if model_type in bizoo.MODEL_SPECS:
        return bizoo.get_spec(model_type)
    if model_type == "bert":
        from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification
        from transformers import BertModel

        models = {"AutoModel": BertModel, "AutoModelForMaskedLM": BertForMaskedLM,
                  "AutoModelForSequenceClassification": BertForSequenceClassification,
                  "AutoModelForTokenClassification": BertForTokenClassification}
        return bizoo.ModelSpec(model_type="bert", config_class=BertConfig, models=models)
    raise CommandError(
        f"unknown model type {model_type!r}; bizoo has {sorted(bizoo.MODEL_SPECS)}, and the baselines from "
        f"transformers {list(BASELINES)}"
    )


#: --dtype's choices: the dtype of the weights a training command loads or builds and trains.
WEIGHT_DTYPES = ("float32", "bfloat16", "float16", "auto")


def add_dtype_argument(group) -> None:
    """--dtype NAME (also --torch_dtype, --torch-dtype) into a command's model options; ``weights_dtype`` reads it."""
    from .training import OneValue  # here: lib.training imports this module (through lib.model_card)

    group.add_argument(
        "--dtype", "--torch-dtype", "--torch_dtype", choices=WEIGHT_DTYPES, default="float32", metavar="NAME",
        action=OneValue,
        help="dtype the model's weights are loaded (or built) and trained in, one of %(choices)s (run_mlm.py's "
        "--dtype, transformers 4's --torch_dtype): float32 also for a checkpoint stored in bfloat16 or float16, whose "
        "small AdamW updates would mostly round away in half precision; auto: as the checkpoint stores them "
        "(from_pretrained's default in transformers 5; float32 from scratch); bfloat16, float16: half-precision "
        "weights. Mixed precision on float32 weights is --bf16 / --fp16 (default: %(default)s)",
    )


def weights_dtype(name: str, built: bool = False) -> dict[str, Any]:
    """The ``dtype=`` keyword of ``from_pretrained`` (``from_config`` where ``built``) for --dtype NAME: {} for auto
    (a checkpoint's stored dtype, float32 from scratch), else the torch dtype. A model built from a configuration in
    float32 gets no keyword, as before --dtype: torch builds in float32 (its default dtype). (With the keyword the
    main job's first 30 steps ran at a mean 4,709 tokens/s over 6 runs, against 4,890 over 5 without it and 4,919
    over 7 of the code before --dtype, the losses equal; perhaps noise, the cause was not found.)"""
    import torch

    if name == "auto" or (built and name == "float32" and torch.get_default_dtype() == torch.float32):
        return {}
    return {"dtype": getattr(torch, name)}


def dtype_name(dtype) -> str | None:
    """"bfloat16" for torch.bfloat16 or "bfloat16" (a config's ``dtype`` is either); None for None."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def note_stored_dtype(name: str, stored, model) -> None:
    """Say so when a checkpoint stored in ``stored`` (its config's dtype) is trained in another dtype."""
    stored, held = dtype_name(stored), dtype_name(model.dtype)
    if stored is not None and stored != held:
        logger.info(f"{name} stores its weights in {stored}: they are trained in {held} (--dtype auto: as stored)")


def check_mixed_precision(args, config=None) -> None:
    """--fp16 is mixed precision on float32 weights: torch's gradient scaler, which it trains with on a GPU, refuses
    the float16 gradients of float16 weights at the first step. ``CommandError`` for float16 weights (--dtype float16,
    or auto with ``config``, the checkpoint's, stored in float16) with --fp16, before anything is written."""
    held = args.dtype if args.dtype != "auto" else dtype_name(getattr(config, "dtype", None)) or "float32"
    if held == "float16" and getattr(args, "fp16", False):
        how = "--dtype float16" if args.dtype == "float16" else "--dtype auto (the checkpoint stores float16)"
        raise CommandError(
            f"--fp16 with {how}: --fp16 is mixed precision on float32 weights, whose gradient scaler refuses the "
            "float16 gradients of float16 weights (on a GPU, at the first step); give --fp16 with --dtype float32, "
            "or float16 weights without --fp16"
        )


def stored_dtype(folder: str | os.PathLike) -> str | None:
    """The dtype a checkpoint folder's weights are stored in, as its config.json says (``dtype``; transformers 4's
    ``torch_dtype``); None where it says none."""
    fields = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return dtype_name(fields.get("dtype", fields.get("torch_dtype")))


def check_resume_dtype(model, checkpoint: str | os.PathLike) -> None:
    """--resume continues in the dtype the checkpoint was trained in (``stored_dtype``): ``CommandError`` when
    ``model`` (as these options load or build it) holds its weights in another one, to which the checkpoint's weights
    and optimizer state would be cast."""
    saved, held = stored_dtype(checkpoint), dtype_name(model.dtype)
    if saved is not None and saved != held:
        raise CommandError(
            f"--resume: {checkpoint} was trained with {saved} weights, but these options give {held} ones; resume "
            f"with the first run's --dtype (--dtype {saved}, or auto where the first run loaded a checkpoint as stored)"
        )


def tokenizer_config_fields(spec, tokenizer) -> dict[str, Any]:
    """The config fields a model trained from scratch takes from its tokenizer: vocab_size and pad_token_id, and for
    a model that reads words and characters also char_vocab_size and unk_token_id (word dropout), and char_scheme
    where its config has one (the BiLSTM-CRF: a "bilm" tokenizer pads inside words with 261, which its character
    encoders must leave out)."""
    fields = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if spec.tokenizer == "wordchar":
        fields.update(char_vocab_size=tokenizer.char_vocab_size, unk_token_id=tokenizer.unk_token_id)
        if "char_scheme" in inspect.signature(spec.config_class.__init__).parameters:
            fields.update(char_scheme=tokenizer.char_scheme)
    return fields


def load_model(auto_class, name_or_path: str, tokenizer, *, hub: HubOptions | None = None,
               ignore_mismatched_sizes: bool = False, dtype: str = "float32", loading_info: bool = False,
               **config_overrides):
    """A model for ``auto_class``: from scratch if ``name_or_path`` is a registered model type (its default
    configuration with ``config_overrides``, sized to the tokenizer), else ``from_pretrained`` of the checkpoint
    folder or Hub model id (``lib.sources.resolve_checkpoint`` with ``hub``'s cache folder, revision and token; a model
    in the Hub's cache loads offline too), with ``hub``'s trust_remote_code and run_*.py's
    ``ignore_mismatched_sizes`` (weights of another shape, e.g. a head for other labels, newly initialised). The
    weights are held in ``dtype`` (--dtype's value: ``weights_dtype``). With ``loading_info``: (model, what
    ``from_pretrained`` reports: ``missing_keys``, ``mismatched_keys``, ...; {} from scratch).

    Raises ``CommandError`` if the tokenizer's vocabulary (or its character ids) is larger than the model's or the
    checkpoint is missing.
    """
    hub = hub or HubOptions()
    if name_or_path in bizoo.MODEL_SPECS:
        spec = bizoo.get_spec(name_or_path)
        config = spec.config_class(**tokenizer_config_fields(spec, tokenizer), **config_overrides)
        model, info = auto_class.from_config(config, **weights_dtype(dtype, built=True)), {}
    else:
        path = resolve_checkpoint(name_or_path, "--model-name-or-path", hub)
        model, info = auto_class.from_pretrained(path, trust_remote_code=hub.trust_remote_code,
                                                 ignore_mismatched_sizes=ignore_mismatched_sizes,
                                                 output_loading_info=True, **weights_dtype(dtype), **config_overrides)
        note_stored_dtype(repr(name_or_path), stored_dtype(path), model)
    vocab = model.config.vocab_size  # the word table's rows; ELMo's classifiers read word ids without one
    if len(tokenizer) > vocab:
        raise CommandError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {vocab}: ids above "
            f"{vocab - 1} would fall outside the embeddings; use the checkpoint's own tokenizer or train a new model"
        )
    check_char_vocabulary(model.config, tokenizer, "the model's")
    return (model, info) if loading_info else model


def check_char_vocabulary(config, tokenizer, whose: str) -> None:
    """``CommandError`` if a word+character ``tokenizer`` has more character ids than ``config``'s character table
    (``whose``, e.g. "the model's"): its ids above would fall outside the table, which a compiled model does not
    check (its value checks are off while traced)."""
    chars, table = getattr(tokenizer, "char_vocab_size", None), getattr(config, "char_vocab_size", None)
    if chars is not None and table is not None and chars > table:
        raise CommandError(
            f"the tokenizer has {chars} character ids but {whose} character table has {table}: ids above "
            f"{table - 1} would fall outside it; use the checkpoint's own tokenizer or train a new model"
        )


def pretrained_tokenizer(path: str, option: str, hub: HubOptions | None = None):
    """``AutoTokenizer.from_pretrained`` of a folder or Hub id (``lib.sources.resolve_checkpoint`` with ``hub``'s cache
    folder, revision and token, its trust_remote_code passed on); ``CommandError`` naming ``option`` (e.g.
    "--tokenizer") if it fails."""
    from transformers import AutoTokenizer

    hub = hub or HubOptions()
    try:
        folder = resolve_checkpoint(path, option, hub)
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=hub.trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as err:  # CommandError included
        raise CommandError(f"cannot load a tokenizer from {option} {path!r}: {err}") from None


def build_wordchar_tokenizer(
    spec, sentences: Callable[[], list] | list, vocab_size: int | None = None, model_max_length: int = 512,
    sentence_pairs: bool = False,
):
    """A word+character tokenizer whose vocabulary is the training words (normalised as the model type's
    ``tokenizer_options`` in ``lib.model_defaults`` say), capped at ``vocab_size`` (--vocab-size) when given.
    ``sentences``: texts or lists of words (or a callable returning them). ``sentence_pairs``: the task reads pairs
    of texts, so each is wrapped in <S> ... </S> (``add_sentence_boundaries``): without, a pair is the words of both,
    one after the other, and a model without token types (the BiLSTM-CRF) cannot tell where the first ends."""
    items = [item for item in (sentences() if callable(sentences) else sentences) if item]
    if not items:
        raise CommandError("the training data holds no text to build a vocabulary from")
    options = dict(model_defaults(spec.model_type).tokenizer_options)
    if sentence_pairs:
        options["add_sentence_boundaries"] = True
    if vocab_size is not None:
        if vocab_size < MIN_VOCAB_SIZE:
            raise CommandError(f"--vocab-size must be at least {MIN_VOCAB_SIZE}, got {vocab_size}")
        options["max_vocab_size"] = vocab_size
    tokenizer = WordCharTokenizerFast.from_words(items, model_max_length=model_max_length, **options)
    described = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    logger.info(
        f"built a word+character tokenizer from {len(items):,} training sentences: {len(tokenizer):,} words, "
        f"{tokenizer.char_vocab_size} characters ({described or 'default options'})"
    )
    return tokenizer


# ----------------------------------------------------------------------------------------------------------------
# Model configuration options (--variant, --model-config)
# ----------------------------------------------------------------------------------------------------------------

#: Config fields a command sets itself; --model-config may not change them.
RESERVED_FIELDS = {
    "vocab_size": "it comes from the tokenizer",
    "pad_token_id": "it comes from the tokenizer",
    "unk_token_id": "it comes from the tokenizer",
    "char_vocab_size": "it comes from the tokenizer (its character ids)",
    "char_scheme": "it comes from the tokenizer (its character ids)",
    "num_labels": "it comes from the task's labels",
    "id2label": "it comes from the task's labels",
    "label2id": "it comes from the task's labels",
    "problem_type": "it comes from the task",
}

def saved_weight_shapes(folder: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Each weight's shape in the safetensors files of a checkpoint folder (sharded or not), read from their headers:
    no tensor is read. {} for a folder without safetensors files."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def changed_weight_shapes(path: str, config, trust_remote_code: bool = False) -> list[str]:
    """The weights of the checkpoint folder ``path`` to which ``config`` (its configuration, fields changed by
    --model-config) gives another shape, each as "name (saved) -> (new)": the base model of ``config`` built on the
    meta device (no memory, no initialisation work) against the shapes in the checkpoint's safetensors headers (no
    tensor is read). Heads are not compared (a task's head may differ by design). [] for a folder without safetensors
    files (the load then says what it finds)."""
    import torch
    from transformers import AutoModel

    saved = saved_weight_shapes(path)
    if not saved:
        return []
    with torch.device("meta"):  # every model builds there (tests/modeling/test_compile_export.py)
        model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    prefix = model.base_model_prefix
    changed = []
    for name, tensor in model.state_dict().items():
        key = next((key for key in (f"{prefix}.{name}", name) if key in saved), None)  # a head's checkpoint, a base's
        if key is not None and saved[key] != tuple(tensor.shape):
            changed.append(f"{key} {saved[key]} -> {tuple(tensor.shape)}")
    return changed


def parse_model_config(items: Sequence[str] | None) -> dict[str, Any]:
    """``["hidden_size=256", "hidden_act=gelu"]`` -> ``{"hidden_size": 256, "hidden_act": "gelu"}``.

    Values are parsed as JSON; Python's ``True``/``False``/``None`` are accepted too; anything else stays a string.
    """
    python_literals = {"True": True, "False": False, "None": None}
    values: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise CommandError(f"--model-config expects KEY=VALUE items such as hidden_size=256, got {item!r}")
        raw = raw.strip()
        if raw in python_literals:
            values[key] = python_literals[raw]
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def config_fields(config_class: type) -> set[str]:
    """The fields a configuration class takes: its own ``__init__`` parameters and its bases', up to (not
    including) transformers' ``PreTrainedConfig``."""
    from transformers import PreTrainedConfig

    fields: set[str] = set()
    for cls in config_class.__mro__:
        if cls is PreTrainedConfig or cls is object or not issubclass(cls, PreTrainedConfig):
            break
        if "__init__" in vars(cls):
            for name, param in inspect.signature(cls.__init__).parameters.items():
                if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                    fields.add(name)
    return fields


def check_config_fields(config_class: type, overrides: dict[str, Any], what: str) -> None:
    """``CommandError`` for a --model-config field ``config_class`` does not have or that the command sets."""
    allowed = config_fields(config_class) - set(RESERVED_FIELDS)
    for key in overrides:
        if key in RESERVED_FIELDS:
            raise CommandError(f"--model-config cannot set {key!r}: {RESERVED_FIELDS[key]}")
        if key not in allowed:
            raise CommandError(
                f"unknown --model-config field {key!r} for {what} ({config_class.__name__}); allowed: "
                f"{', '.join(sorted(allowed))}"
            )


def variant_fields(spec, variant: str | None) -> dict[str, Any]:
    """The config fields of a named ``--variant`` of ``spec``; None means the model type's default variant (if any,
    ``lib.model_defaults``)."""
    variant = variant if variant is not None else model_defaults(spec.model_type).default_variant
    if variant is None:
        return {}
    if not spec.variants:
        raise CommandError(f"--variant {variant!r}: model type {spec.model_type!r} has no named variants")
    if variant not in spec.variants:
        raise CommandError(
            f"unknown --variant {variant!r} for model type {spec.model_type!r}; allowed: {', '.join(spec.variants)}"
        )
    return dict(spec.variants[variant])
