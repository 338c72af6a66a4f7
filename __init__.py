"""bizoo: a zoo of bidirectional sequence models for Hugging Face transformers.

``import bizoo`` registers every model with ``AutoConfig``, ``AutoModel``, ``AutoModelForMaskedLM``,
``AutoModelForSequenceClassification`` and ``AutoModelForTokenClassification``::

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
    tiny_config=dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        chunk_size=8,
        hidden_dropout_prob=0.0,
    ),
    variants={"lit": dict(lion_variant="lit"), "d": dict(lion_variant="d"), "s": dict(lion_variant="s")},
    # Selective decay learns fastest from scratch: on the shipped corpus, 400 steps of LION-S reach 2.3x the
    # unigram baseline's masked-token accuracy while LION-LIT is still at the baseline (README, "Results").
    default_variant="s",
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
    tiny_config=dict(
        word_embedding_size=16,
        char_embedding_size=8,
        char_cnn_filters=6,
        char_lstm_size=4,
        hidden_size=12,
        num_hidden_layers=2,
        embedding_dropout=0.0,
        hidden_dropout_prob=0.0,
    ),
    # Ma & Hovy (2016): a character CNN; Lample et al. (2016): a character BiLSTM.
    variants={"cnn": dict(char_encoder="cnn"), "lstm": dict(char_encoder="lstm")},
    default_variant="cnn",
    tokenizer="wordchar",
    # Word lookup as Lample et al. (2016): digits -> 0; lowercased, since the characters keep the case.
    tokenizer_options=dict(lowercase=True, digits_to_zero=True),
    # bizoo pretrain: the config's defaults (char-CNN, word embeddings of 100, one BiLSTM layer of 200 per direction).
    pretrain_config={},
    training_defaults={
        "ner": dict(epochs=25, learning_rate=2e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                    max_grad_norm=5.0, group_by_length=True),
        "glue": dict(epochs=5, learning_rate=1e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                     max_grad_norm=5.0, group_by_length=True),
    },
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
    tiny_config=dict(
        hidden_size=32,
        num_hidden_layers=2,
        intermediate_size=64,
        num_ssm=8,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
    ),
    # The same weights run either form: the SSM kernels as a convolution (Toeplitz / FFT) or the recurrence.
    variants={"conv": dict(bigs_form="conv"), "recurrent": dict(bigs_form="recurrent")},
    default_variant="conv",
)

ELMO_SPEC = ModelSpec(
    model_type="elmo",
    config_class=ElmoConfig,
    models={
        "AutoModel": ElmoModel,
        "AutoModelForMaskedLM": ElmoForMaskedLM,
        "AutoModelForSequenceClassification": ElmoForSequenceClassification,
        "AutoModelForTokenClassification": ElmoForTokenClassification,
    },
    tiny_config=dict(
        char_embedding_size=4,
        char_filters=[[1, 4], [2, 8], [3, 8]],
        n_highway=1,
        projection_size=8,
        lstm_size=16,
        num_hidden_layers=2,
        hidden_dropout_prob=0.0,
    ),
    tokenizer="wordchar",
    # bilm-tf's character ids (UTF-8 bytes, +1) and <S> ... </S> around every sentence, as the original ELMo reads.
    tokenizer_options=dict(char_scheme="bilm", add_sentence_boundaries=True),
    # bizoo pretrain: a small biLM (the original's shape scaled down: 5 filter widths and 512 filters, one highway
    # layer, 2 layers of 512 cells projected to 128) that trains on a CPU.
    pretrain_config=dict(
        char_embedding_size=16,
        char_filters=[[1, 32], [2, 32], [3, 64], [4, 128], [5, 256]],
        n_highway=1,
        projection_size=128,
        lstm_size=512,
        num_hidden_layers=2,
    ),
    training_defaults={
        "ner": dict(epochs=10, learning_rate=1e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                    max_grad_norm=5.0, group_by_length=True),
        "glue": dict(epochs=5, learning_rate=1e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                     max_grad_norm=5.0, group_by_length=True),
    },
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
    # The biLM objective has no slot among the four Auto classes every model fills; AutoModelForPreTraining fits it.
    from transformers import AutoModelForPreTraining

    AutoModelForPreTraining.register(ElmoConfig, ElmoForBidirectionalLM, exist_ok=False)

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
]
