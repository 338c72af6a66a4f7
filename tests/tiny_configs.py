"""The tests' tiny configurations: per registered model type, the keyword arguments of a configuration small enough
that a test builds and runs it in a fraction of a second (dropout off; the vocabulary size is each test's own, so
it is never set here).

A model joins the conformance, reliability and compile/export suites by being registered (``bizoo/__init__.py``)
and having an entry here (ARCHITECTURE.md §7); ``tests/package/test_layout.py`` checks that every registered model
type has one. Tests import it as ``from tests.tiny_configs import TINY_CONFIGS`` (pytest's importlib mode makes
``tests`` this folder).
"""

TINY_CONFIGS: dict[str, dict] = {
    "lion": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        chunk_size=8,
        hidden_dropout_prob=0.0,
    ),
    "bilstm_crf": dict(
        word_embedding_size=16,
        char_embedding_size=8,
        char_cnn_filters=6,
        char_lstm_size=4,
        hidden_size=12,
        num_hidden_layers=2,
        embedding_dropout=0.0,
        hidden_dropout_prob=0.0,
    ),
    "bigs": dict(
        hidden_size=32,
        num_hidden_layers=2,
        intermediate_size=64,
        num_ssm=8,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
    ),
    "elmo": dict(
        char_embedding_size=4,
        char_filters=[[1, 4], [2, 8], [3, 8]],
        n_highway=1,
        projection_size=8,
        lstm_size=16,
        num_hidden_layers=2,
        hidden_dropout_prob=0.0,
    ),
}
