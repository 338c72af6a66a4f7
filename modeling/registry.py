"""The registry of bizoo models: what ``import bizoo`` registers with the Auto* classes, what ``bizoo export``
writes into ``auto_map``, and what the conformance suite (tests/modeling) runs on every model.

A model joins the zoo by adding one ``ModelSpec`` to ``MODEL_SPECS`` in ``bizoo/__init__.py``. A spec describes the
model only; what the command line chooses for a model it trains from scratch (default variant, tokenizer options,
training presets, pretrain's config) is ``scripts/lib/model_defaults.py``, and the tests' tiny configurations are
``tests/tiny_configs.py`` (``tests/package/test_layout.py`` keeps the spec to the fields below).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

AUTO_CLASSES = {
    "AutoModel": AutoModel,
    "AutoModelForMaskedLM": AutoModelForMaskedLM,
    "AutoModelForPreTraining": AutoModelForPreTraining,  # a model's own pretraining objective (ELMo's biLM)
    "AutoModelForSequenceClassification": AutoModelForSequenceClassification,
    "AutoModelForTokenClassification": AutoModelForTokenClassification,
}


@dataclass(frozen=True)
class ModelSpec:
    """One model type of the zoo: what describes the model itself.

    Attributes:
        model_type: the config's ``model_type``.
        config_class: its ``PreTrainedConfig`` subclass.
        models: Auto class name ("AutoModel", "AutoModelForMaskedLM", ...) -> model class.
        variants: the model's named configurations, name -> config fields (e.g. LION's "lit", "d", "s"; what
            ``--variant`` names, and what the model card reports a config as).
        tokenizer: the kind of tokenizer the model reads ("wordpiece": subword ids from any fast tokenizer;
            "wordchar": `WordCharTokenizerFast`, word ids plus `char_ids`).
    """

    model_type: str
    config_class: type
    models: dict[str, type]
    variants: dict[str, dict] = field(default_factory=dict)
    tokenizer: str = "wordpiece"


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
