"""What the commands choose for a model type they build from scratch, keyed by ``model_type``.

The model registry (``bizoo.MODEL_SPECS``, ``modeling/registry.py``) says what a model is: its configuration class,
its model classes, its named variants and the kind of tokenizer it reads. What a command picks when it trains one
from scratch is a choice of the command line, so it lives here, beside the commands that read it:

* ``default_variant``: the named variant (a key of ``ModelSpec.variants``) built when ``--variant`` is not given.
  Read by ``lib.models.variant_fields`` (``bizoo pretrain``; ``bizoo finetune-glue`` and ``finetune-ner`` from
  scratch) and by ``bizoo pretrain``'s log line.
* ``tokenizer_options``: keyword arguments of ``WordCharTokenizerFast.from_words`` when a command builds the
  word+character tokenizer of a model whose ``ModelSpec.tokenizer`` is "wordchar" from the training words. Read by
  ``lib.models.build_wordchar_tokenizer`` (pretrain, finetune-glue, finetune-ner).
* ``training_defaults``: task ("ner", "chunk", "pos": finetune-ner's --task; "glue") -> the defaults of the
  training options of ``lib.training.MODEL_DEFAULT_OPTIONS`` (epochs, learning_rate, batch_size, weight_decay,
  warmup_ratio, max_grad_norm, group_by_length) when finetune-ner or finetune-glue trains this model from scratch; an option
  given on the command line wins. Read by ``lib.training.resolve_training_defaults``.
* ``pretrain_config``: the config fields of the model ``bizoo pretrain`` builds from scratch, before ``--variant``
  and ``--model-config`` (an empty dict: the config's own defaults); None: the command's small Transformer-shaped
  model (``SMALL_MODEL`` in ``scripts/pretrain.py``: hidden_size, layers, heads, ...). Read by pretrain's
  ``model_config_kwargs``.

A registered model type without an entry (one another package registers) gets none of these: no default variant,
the tokenizer's own options, the command's own training defaults and pretrain's small model
(``model_defaults``). ``tests/scripts/test_model_defaults.py`` checks that every entry names a registered model
type and fits its ``ModelSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelDefaults:
    """The command-line defaults of one model type (module docstring: what each is and which command reads it)."""

    default_variant: str | None = None
    tokenizer_options: dict = field(default_factory=dict)
    training_defaults: dict[str, dict] = field(default_factory=dict)
    pretrain_config: dict | None = None


MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    # Selective decay learns fastest from scratch: on the shipped corpus, 400 steps of LION-S reach 2.3x the unigram
    # baseline's masked-token accuracy while LION-LIT is still at the baseline (RESULTS.md, "Pretraining (the main job)").
    "lion": ModelDefaults(default_variant="s"),
    # The convolution form (Toeplitz / FFT); the recurrence computes the same with the same weights.
    "bigs": ModelDefaults(default_variant="conv"),
    "bilstm_crf": ModelDefaults(
        default_variant="cnn",  # Ma & Hovy (2016)'s character CNN
        # Word lookup as Lample et al. (2016): digits -> 0; lowercased, since the characters keep the case.
        tokenizer_options=dict(lowercase=True, digits_to_zero=True),
        training_defaults={
            # Word dropout 0.5 (Lample et al.'s singleton replacement: a training word seen once becomes [UNK] with
            # probability 0.5, its characters kept). The vocabulary is every training word, so without it [UNK] never
            # occurs in training and every word unseen at test time reads an untrained random vector; with it the
            # [UNK] row is trained and the character encoder learns to carry such words. CoNLL-2003 dev: 88.79 F1
            # against 88.27 without (one seed each; RESULTS.md, "The papers' remedies").
            "ner": dict(epochs=25, learning_rate=2e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                        max_grad_norm=5.0, group_by_length=True, word_dropout=0.5),
            "glue": dict(epochs=5, learning_rate=1e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                         max_grad_norm=5.0, group_by_length=True),
            # Part-of-speech tagging and chunking (finetune-ner --task pos / chunk): the NER preset, reused. Ma & Hovy
            # (2016) train POS with their NER network and recipe (dropout 0.5, the config's default here; clipping
            # 5.0), and Lample et al. (2016)'s recipe has nothing NER-specific; as for NER, Adam at 2e-3 in batches
            # of 32 stands in for their SGD (lr 0.01, batch 10 or 1), with no weight decay and batches grouped by
            # length. Epochs: UD English-EWT (204,577 training words) and CoNLL-2000 (211,727) are the size of
            # CoNLL-2003's training set (203,621), so the same 25 epochs make about as many updates; a first guess
            # to be measured, not a tuned value.
            "pos": dict(epochs=25, learning_rate=2e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                        max_grad_norm=5.0, group_by_length=True),
            "chunk": dict(epochs=25, learning_rate=2e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                          max_grad_norm=5.0, group_by_length=True),
        },
        # bizoo pretrain: the config's defaults (char-CNN, word embeddings of 100, one BiLSTM layer of 200 per
        # direction).
        pretrain_config={},
    ),
    "elmo": ModelDefaults(
        # bilm-tf's character ids (UTF-8 bytes, +1) and <S> ... </S> around every sentence, as the original ELMo reads.
        tokenizer_options=dict(char_scheme="bilm", add_sentence_boundaries=True),
        training_defaults={
            "ner": dict(epochs=10, learning_rate=1e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                        max_grad_norm=5.0, group_by_length=True),
            "glue": dict(epochs=5, learning_rate=1e-3, batch_size=32, weight_decay=0.0, warmup_ratio=0.02,
                         max_grad_norm=5.0, group_by_length=True),
        },
        # bizoo pretrain: a small biLM (the original's shape scaled down: 5 filter widths and 512 filters, one
        # highway layer, 2 layers of 512 cells projected to 128) that trains on a CPU.
        pretrain_config=dict(
            char_embedding_size=16,
            char_filters=[[1, 32], [2, 32], [3, 64], [4, 128], [5, 256]],
            n_highway=1,
            projection_size=128,
            lstm_size=512,
            num_hidden_layers=2,
        ),
    ),
}

#: What a model type without an entry gets.
NO_DEFAULTS = ModelDefaults()


def model_defaults(model_type: str) -> ModelDefaults:
    """The command-line defaults of ``model_type``: its entry in ``MODEL_DEFAULTS``, else ``NO_DEFAULTS``."""
    return MODEL_DEFAULTS.get(model_type, NO_DEFAULTS)
