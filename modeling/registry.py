"""The registry of bizoo models: what ``import bizoo`` registers with the Auto* classes, what ``bizoo export``
writes into ``auto_map``, and what the conformance suite (tests/modeling) runs on every model.

A model joins the zoo by adding one ``ModelSpec`` to ``MODEL_SPECS`` in ``bizoo/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

AUTO_CLASSES = {
    "AutoModel": AutoModel,
    "AutoModelForMaskedLM": AutoModelForMaskedLM,
    "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
    "AutoModelForTokenClassification": AutoModelForTokenClassification,
}


@dataclass(frozen=True)
class ModelSpec:
    """One model type of the zoo.

    Attributes:
        model_type: the config's ``model_type``.
        config_class: its ``PreTrainedConfig`` subclass.
        models: Auto class name ("AutoModel", "AutoModelForMaskedLM", ...) -> model class.
        tiny_config: keyword arguments of a tiny configuration for tests (any vocabulary size is overridden).
        variants: named keyword arguments for ``bizoo pretrain --variant`` (e.g. LION's "lit", "d", "s").
        default_variant: the variant the commands train from scratch when ``--variant`` is not given.
        tokenizer: the kind of tokenizer the model reads ("wordpiece": subword ids from any fast tokenizer;
            "wordchar": `WordCharTokenizerFast`, word ids plus `char_ids`).
        tokenizer_options: keyword arguments of ``WordCharTokenizerFast.from_words`` when a command builds the
            model's word+character tokenizer from training data.
        training_defaults: task ("ner", "glue") -> defaults of the training options (epochs, learning_rate,
            batch_size, weight_decay, warmup_ratio, max_grad_norm) when the commands train this model from scratch.
        pretrain_config: the config fields of the model ``bizoo pretrain`` builds from scratch before ``--variant``
            and ``--model-config`` (an empty dict: the config's own defaults); None: the command's small
            Transformer-shaped defaults (``SMALL_MODEL`` in scripts/pretrain.py: hidden_size, layers, heads, ...).
    """

    model_type: str
    config_class: type
    models: dict[str, type]
    tiny_config: dict = field(default_factory=dict)
    variants: dict[str, dict] = field(default_factory=dict)
    default_variant: str | None = None
    tokenizer: str = "wordpiece"
    tokenizer_options: dict = field(default_factory=dict)
    training_defaults: dict[str, dict] = field(default_factory=dict)
    pretrain_config: dict | None = None


MODEL_SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    """Register ``spec`` with AutoConfig and the Auto model classes (``exist_ok=False``: never shadow a model type
    that transformers ships or another package registered)."""
    if spec.model_type in MODEL_SPECS:
        return  # this interpreter already registered it (e.g. a module reload)
    unknown = set(spec.models) - set(AUTO_CLASSES)
    if unknown:
        raise ValueError(f"register: unknown Auto classes {sorted(unknown)}; allowed: {sorted(AUTO_CLASSES)}")
    AutoConfig.register(spec.model_type, spec.config_class, exist_ok=False)
    for auto_name, model_class in spec.models.items():
        AUTO_CLASSES[auto_name].register(spec.config_class, model_class, exist_ok=False)
    MODEL_SPECS[spec.model_type] = spec


def get_spec(model_type: str) -> ModelSpec:
    """The spec of a registered model type; ``ValueError`` listing the known ones otherwise."""
    if model_type not in MODEL_SPECS:
        raise ValueError(f"unknown model {model_type!r}; bizoo has {sorted(MODEL_SPECS)}")
    return MODEL_SPECS[model_type]
