"""BiLSTM-CRF configuration (model_type ``bilstm_crf``)."""

from __future__ import annotations

from .common import BILM_PAD_CHAR_ID, CHAR_SCHEMES, BizooConfig

CHAR_ENCODERS = ("cnn", "lstm", "none")


class BiLstmCrfConfig(BizooConfig):
    r"""Configuration of a BiLSTM-CRF tagger (Huang et al. 2015; Lample et al. 2016; Ma & Hovy 2016): each word is
    its embedding concatenated with a character-level encoding, read by a bidirectional LSTM; tags are decoded by
    a linear-chain CRF (``use_crf=True``, the default here).

    The defaults are Ma & Hovy's: 100-d word embeddings, a character CNN (30-d character embeddings, 30 filters
    of width 3, max-pooled), one BiLSTM layer of 200 units per direction, dropout 0.5 on the embeddings and on
    the LSTM output. Lample et al.'s: ``char_encoder="lstm"`` (25-d char embeddings, 25 + 25 units),
    ``hidden_size=100``.

    Args:
        vocab_size (`int`): word vocabulary size (the tokenizer's).
        word_embedding_size (`int`, defaults to 100).
        char_encoder (`str`, defaults to `"cnn"`): `"cnn"`, `"lstm"` or `"none"`.
        char_vocab_size (`int`, defaults to 262): character ids the tokenizer produces (0 = padding); 262 covers
            bilm-tf's byte ids.
        char_scheme (`str`, defaults to `"vocab"`): the tokenizer's `char_scheme`. `"bilm"` pads inside a word with
            the id 261, not 0: the character encoders then leave 261 out with 0 (it needs `char_vocab_size` 262).
        char_embedding_size (`int`, defaults to 30).
        char_cnn_filters (`int`, defaults to 30), char_cnn_width (`int`, defaults to 3): the CNN encoder.
        char_lstm_size (`int`, defaults to 25): units per direction of the LSTM encoder.
        hidden_size (`int`, defaults to 200): LSTM units PER DIRECTION (the encoder's output is 2 × hidden_size).
        num_hidden_layers (`int`, defaults to 1): stacked BiLSTM layers.
        embedding_dropout (`float`, defaults to 0.5): dropout on the concatenated word and character features.
        hidden_dropout_prob (`float`, defaults to 0.5): dropout on each BiLSTM layer's output.
        word_dropout (`float`, defaults to 0.0): in training, each word id is replaced by `unk_token_id` with this
            probability (the character features stay).
        pad_token_id (`int`, defaults to 0), unk_token_id (`int`, defaults to 1).
        use_crf (`bool`, defaults to `True`), tag_scheme (`str`, defaults to `"auto"`): see `BizooConfig`.
        classifier_pooling (`str`, defaults to `"final_states"`): both directions' final states.
        hidden_act, layer_norm_eps, tie_word_embeddings: the masked-LM head's transform and tying.
    """

    model_type = "bilstm_crf"
    supported_poolings = ("mean", "first", "final_states")

    def __init__(
        self,
        vocab_size: int = 30000,
        word_embedding_size: int = 100,
        char_encoder: str = "cnn",
        char_vocab_size: int = 262,
        char_embedding_size: int = 30,
        char_cnn_filters: int = 30,
        char_cnn_width: int = 3,
        char_lstm_size: int = 25,
        hidden_size: int = 200,
        num_hidden_layers: int = 1,
        embedding_dropout: float = 0.5,
        hidden_dropout_prob: float = 0.5,
        word_dropout: float = 0.0,
        pad_token_id: int | None = 0,
        unk_token_id: int | None = 1,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-12,
        tie_word_embeddings: bool = True,
        use_crf: bool = True,
        classifier_pooling: str = "final_states",
        char_scheme: str = "vocab",
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.word_embedding_size = word_embedding_size
        self.char_encoder = char_encoder
        self.char_vocab_size = char_vocab_size
        self.char_scheme = char_scheme
        self.char_embedding_size = char_embedding_size
        self.char_cnn_filters = char_cnn_filters
        self.char_cnn_width = char_cnn_width
        self.char_lstm_size = char_lstm_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.embedding_dropout = embedding_dropout
        self.hidden_dropout_prob = hidden_dropout_prob
        self.word_dropout = word_dropout
        self.pad_token_id = pad_token_id
        self.unk_token_id = unk_token_id
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.tie_word_embeddings = tie_word_embeddings
        super().__init__(use_crf=use_crf, classifier_pooling=classifier_pooling, **kwargs)
        self.check()

    @property
    def encoder_output_size(self) -> int:
        return 2 * self.hidden_size

    @property
    def embedding_size(self) -> int:
        return self.word_embedding_size

    @property
    def pad_char_id(self) -> int | None:
        """The character id, besides 0, that is padding inside a word (the "bilm" scheme's 261), or None."""
        return BILM_PAD_CHAR_ID if self.char_scheme == "bilm" else None

    @property
    def char_feature_size(self) -> int:
        """Size of one word's character encoding."""
        return {"cnn": self.char_cnn_filters, "lstm": 2 * self.char_lstm_size, "none": 0}[self.char_encoder]

    def check(self) -> None:
        super().check()
        for field in ("vocab_size", "word_embedding_size", "hidden_size", "num_hidden_layers", "char_vocab_size"):
            self._positive_int(field)
        for field in ("char_embedding_size", "char_cnn_filters", "char_cnn_width", "char_lstm_size"):
            self._positive_int(field)
        for field in ("embedding_dropout", "hidden_dropout_prob", "word_dropout"):
            self._probability(field)
        self._positive_number("layer_norm_eps")
        self._choice("char_encoder", CHAR_ENCODERS)
        self._choice("char_scheme", CHAR_SCHEMES)
        if self.char_scheme == "bilm" and self.char_vocab_size != BILM_PAD_CHAR_ID + 1:
            self._fail("char_vocab_size", self.char_vocab_size, f"{BILM_PAD_CHAR_ID + 1} with char_scheme='bilm'")
        self._choice("hidden_act", ("gelu", "gelu_new", "relu", "silu", "swish", "gelu_pytorch_tanh", "tanh"))
        self._boolean("tie_word_embeddings")
        self._token_id("pad_token_id")
        self._token_id("unk_token_id")
        if self.char_cnn_width % 2 == 0:
            self._fail("char_cnn_width", self.char_cnn_width, "an odd width (the convolution is centred)")
        if self.word_dropout > 0 and self.unk_token_id is None:
            self._fail(
                "word_dropout", self.word_dropout, "0 when unk_token_id is None (word dropout replaces words by [UNK])"
            )
