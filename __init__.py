"""bizoo: a zoo of bidirectional sequence models for Hugging Face transformers.

``import bizoo`` registers every model with ``AutoConfig``, ``AutoModel``, ``AutoModelForMaskedLM``,
``AutoModelForSequenceClassification`` and ``AutoModelForTokenClassification`` (and ELMo's biLM with
``AutoModelForPreTraining``)::

    import bizoo
    from transformers import AutoModelForMaskedLM
    model = AutoModelForMaskedLM.from_config(bizoo.LionConfig(lion_variant="d"))
"""

__version__ = "0.1.0"

from .configuration.configuration_bigs import BiGSConfig
from .configuration.configuration_bilstm_crf import BiLstmCrfConfig
from .configuration.configuration_elmo import ElmoConfig
from .configuration.configuration_lion import LionConfig
from .modeling.modeling_bigs import (
    BiGSForMaskedLM,
    BiGSForSequenceClassification,
    BiGSForTokenClassification,
    BiGSModel,
    BiGSPreTrainedModel,
)
from .modeling.modeling_bilstm_crf import (
    BiLstmCrfForMaskedLM,
    BiLstmCrfForSequenceClassification,
    BiLstmCrfForTokenClassification,
    BiLstmCrfModel,
    BiLstmCrfPreTrainedModel,
)
from .modeling.modeling_elmo import (
    ElmoForBidirectionalLM,
    ElmoForMaskedLM,
    ElmoForSequenceClassification,
    ElmoForTokenClassification,
    ElmoModel,
    ElmoPreTrainedModel,
)
from .modeling.modeling_lion import (
    LionForMaskedLM,
    LionForSequenceClassification,
    LionForTokenClassification,
    LionModel,
    LionPreTrainedModel,
)
from .modeling.registry import MODEL_SPECS, ModelSpec, get_spec, register
from .modeling.value_checks import wait_for_input_checks
from .modeling.tokenization_wordchar import (
    DataCollatorForWordCharLanguageModeling,
    WordCharTokenizerFast,
    register_auto_tokenizer,
)

LION_SPEC = ModelSpec(
    model_type="lion",
    config_class=LionConfig,
    models={
        "AutoModel": LionModel,
        "AutoModelForMaskedLM": LionForMaskedLM,
        "AutoModelForSequenceClassification": LionForSequenceClassification,
        "AutoModelForTokenClassification": LionForTokenClassification,
    },
    # Afzal et al. (2025): LION-LIT (no decay), LION-D (one learned decay per head), LION-S (selective decay per token).
    variants={"lit": dict(lion_variant="lit"), "d": dict(lion_variant="d"), "s": dict(lion_variant="s")},
)

BILSTM_CRF_SPEC = ModelSpec(
    model_type="bilstm_crf",
    config_class=BiLstmCrfConfig,
    models={
        "AutoModel": BiLstmCrfModel,
        "AutoModelForMaskedLM": BiLstmCrfForMaskedLM,
        "AutoModelForSequenceClassification": BiLstmCrfForSequenceClassification,
        "AutoModelForTokenClassification": BiLstmCrfForTokenClassification,
    },
    # Ma & Hovy (2016): a character CNN; Lample et al. (2016): a character BiLSTM.
    variants={"cnn": dict(char_encoder="cnn"), "lstm": dict(char_encoder="lstm")},
    tokenizer="wordchar",
)

BIGS_SPEC = ModelSpec(
    model_type="bigs",
    config_class=BiGSConfig,
    models={
        "AutoModel": BiGSModel,
        "AutoModelForMaskedLM": BiGSForMaskedLM,
        "AutoModelForSequenceClassification": BiGSForSequenceClassification,
        "AutoModelForTokenClassification": BiGSForTokenClassification,
    },
    # The same weights run either form: the SSM kernels as a convolution (Toeplitz / FFT) or the recurrence.
    variants={"conv": dict(bigs_form="conv"), "recurrent": dict(bigs_form="recurrent")},
)

ELMO_SPEC = ModelSpec(
    model_type="elmo",
    config_class=ElmoConfig,
    models={
        "AutoModel": ElmoModel,
        "AutoModelForMaskedLM": ElmoForMaskedLM,
        "AutoModelForSequenceClassification": ElmoForSequenceClassification,
        "AutoModelForTokenClassification": ElmoForTokenClassification,
        "AutoModelForPreTraining": ElmoForBidirectionalLM,
    },
    tokenizer="wordchar",
)

# The repository root is this package, so a test runner that collects the checkout folder as a Python package
# imports this file a second time under the folder's name. Only the real ``bizoo`` registers the models, so the
# Auto classes always map to one set of classes.
if __name__ == "bizoo":
    register(LION_SPEC)
    register(BIGS_SPEC)
    register(BILSTM_CRF_SPEC)
    register_auto_tokenizer(BiLstmCrfConfig)
    register(ELMO_SPEC)
    register_auto_tokenizer(ElmoConfig)

__all__ = [
    "BiGSConfig",
    "BiGSModel",
    "BiGSForMaskedLM",
    "BiGSForSequenceClassification",
    "BiGSForTokenClassification",
    "BiGSPreTrainedModel",
    "BiLstmCrfConfig",
    "BiLstmCrfModel",
    "BiLstmCrfForMaskedLM",
    "BiLstmCrfForSequenceClassification",
    "BiLstmCrfForTokenClassification",
    "BiLstmCrfPreTrainedModel",
    "ElmoConfig",
    "ElmoModel",
    "ElmoForBidirectionalLM",
    "ElmoForMaskedLM",
    "ElmoForSequenceClassification",
    "ElmoForTokenClassification",
    "ElmoPreTrainedModel",
    "WordCharTokenizerFast",
    "DataCollatorForWordCharLanguageModeling",
    "LionConfig",
    "LionModel",
    "LionForMaskedLM",
    "LionForSequenceClassification",
    "LionForTokenClassification",
    "LionPreTrainedModel",
    "MODEL_SPECS",
    "ModelSpec",
    "get_spec",
    "register",
    "wait_for_input_checks",
]
