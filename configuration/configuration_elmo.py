"""ELMo configuration (model_type ``elmo``): the fields of bilm-tf's options.json, plus the heads' options."""

from __future__ import annotations

from collections.abc import Mapping

from .common import BizooConfig

CHAR_ACTIVATIONS = ("relu", "tanh")
#: The character ids of bilm-tf (bytes, begin/end of sentence and word, padding, all +1) and the padded-word id 0.
BILM_CHAR_VOCAB_SIZE = 262

#: The architecture of the original ELMo (Peters et al. 2018; "elmo_2x4096_512_2048cnn_2xhighway").
ORIGINAL_CHAR_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))


class ElmoConfig(BizooConfig):
    r"""Configuration of an ELMo-style bidirectional language model (Peters et al. 2018, "Deep contextualized word
    representations"): a character CNN with highway layers gives each word a context-free vector; a forward and a
    backward stack of LSTMs with projections (LSTMP) read the sentence; a softmax-weighted mix of the layers is the
    word's representation for a task.

    The field names follow bilm-tf's options.json (``ElmoConfig.from_bilm_options`` reads one); the defaults are the
    original ELMo's: 16-d character embeddings, 2048 filters of widths 1-7, 2 highway layers, 2 LSTM layers of 4096
    cells projected to 512, cell and projection clipping at 3, skip connections.

    Args:
        vocab_size (`int`, defaults to 793471): the word vocabulary, i.e. the rows of the LM softmax (the table
            `get_input_embeddings()` returns; the encoder itself reads characters only). 793471 is the original's
            (the One Billion Word benchmark vocabulary).
        char_vocab_size (`int`, defaults to 262): character ids (options.json `n_characters`): 0 = a padded word,
            then bilm-tf's 261 ids shifted by one.
        char_embedding_size (`int`, defaults to 16): options.json `char_cnn.embedding.dim`.
        char_filters (`list` of `[width, count]`, defaults to the original's 7 widths): one convolution per pair.
        char_activation (`str`, defaults to `"relu"`): `"relu"` or `"tanh"`, after the max-pooling of each filter.
        n_highway (`int`, defaults to 2): highway layers over the concatenated filters (0: none).
        max_characters_per_token (`int`, defaults to 50): the tokenizer's characters per word; the convolutions
            pool over every window of the row, so a converted model must read rows of this width.
        projection_size (`int`, defaults to 512): options.json `lstm.projection_dim`: the token vector, each LSTM's
            output (after projection) and so one direction's share of a layer. Also readable as `hidden_size`.
        lstm_size (`int`, defaults to 4096): options.json `lstm.dim`, the memory cells per LSTM; a projection maps
            them to `projection_size` when it is smaller (equal sizes: no projection).
        num_hidden_layers (`int`, defaults to 2): options.json `lstm.n_layers`, per direction.
        cell_clip (`float`, *optional*, defaults to 3.0): memory cells are clipped to [-cell_clip, cell_clip].
        proj_clip (`float`, *optional*, defaults to 3.0): projected outputs are clipped to [-proj_clip, proj_clip].
        use_skip_connections (`bool`, defaults to `True`): layers after the first add their input to their output.
        forget_bias (`float`, defaults to 1.0): added to the forget gate's pre-activation at run time (TensorFlow's
            `LSTMCell`, which bilm-tf uses; it is not part of the stored bias).
        num_output_representations (`int`, defaults to 1): independent scalar mixes (`ElmoModel.scalar_mix`).
        mix_layer_norm (`bool`, defaults to `False`): normalise each layer of each real token (mean 0, variance 1
            over its features) before mixing.
        sampled_softmax_size (`int`, defaults to 0): 0 = `ElmoForBidirectionalLM` trains with the full softmax;
            N > 0 = in training, a sampled softmax over N unique candidates per batch drawn from the log-uniform
            (Zipf) distribution over the ids, as bilm-tf (`n_negative_samples_batch`, 8192 there; the vocabulary
            must be sorted by frequency). Evaluation always uses the full softmax.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout on each LSTM layer's input (none in the tagger with
            `freeze_elmo`) and on the LM's top states in training (bilm-tf's `dropout`); the heads' default dropout.
        pad_token_id (`int`, defaults to 0), unk_token_id (`int`, defaults to 1): the tokenizer's.
        use_crf (`bool`, defaults to `True`), tag_scheme, classifier_pooling (`str`, defaults to `"final_states"`):
            see `BizooConfig`; the mix keeps the forward | backward halves, so "final_states" pools both directions.
        tagger_word_features (`bool`, defaults to `False`), tagger_char_cnn_filters (`int`, defaults to 0),
            tagger_dropout (`float`, *optional*), freeze_elmo (`bool`, defaults to `False`): the tagger of
            `ElmoForTokenClassification` as Peters et al. (2018) build theirs: its BiLSTM reads the ELMo mix
            concatenated with word vectors (`tagger_word_features`: the biLM's own word table, the LM softmax rows,
            looked up by `input_ids`) and a character CNN of its own (`tagger_char_cnn_filters` > 0 filters of width
            3 over 30-d character embeddings, Ma & Hovy's); `tagger_dropout` on that input (None:
            `hidden_dropout_prob`); `freeze_elmo` keeps the biLM's encoder (character CNN and LSTMs) fixed and runs it
            without dropout (its features are those of evaluation, as a pretrained biLM's are), so that only the
            mix, the word vectors, the character CNN, the BiLSTM and the head train, as Peters et al. do. The
            defaults: the mix alone, everything trained.
        hidden_act, layer_norm_eps: the masked-LM head's transform. tie_word_embeddings (`bool`, defaults to
            `True`, the one value allowed): the decoders of `ElmoForBidirectionalLM` and `ElmoForMaskedLM` are the
            word table (the encoder reads characters only, so an untied table would be read by nothing).
    """

    model_type = "elmo"
    attribute_map = {"hidden_size": "projection_size"}
    supported_poolings = ("mean", "first", "final_states")

    def __init__(
        self,
        vocab_size: int = 793471,
        char_vocab_size: int = BILM_CHAR_VOCAB_SIZE,
        char_embedding_size: int = 16,
        char_filters=ORIGINAL_CHAR_FILTERS,
        char_activation: str = "relu",
        n_highway: int = 2,
        max_characters_per_token: int = 50,
        projection_size: int = 512,
        lstm_size: int = 4096,
        num_hidden_layers: int = 2,
        cell_clip: float | None = 3.0,
        proj_clip: float | None = 3.0,
        use_skip_connections: bool = True,
        forget_bias: float = 1.0,
        num_output_representations: int = 1,
        mix_layer_norm: bool = False,
        sampled_softmax_size: int = 0,
        hidden_dropout_prob: float = 0.1,
        pad_token_id: int | None = 0,
        unk_token_id: int | None = 1,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-12,
        tie_word_embeddings: bool = True,
        use_crf: bool = True,
        classifier_pooling: str = "final_states",
        tagger_word_features: bool = False,
        tagger_char_cnn_filters: int = 0,
        tagger_dropout: float | None = None,
        freeze_elmo: bool = False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.char_vocab_size = char_vocab_size
        self.char_embedding_size = char_embedding_size
        # JSON has no tuples: keep lists so that a saved config reads back equal.
        self.char_filters = (
            [list(pair) if isinstance(pair, (list, tuple)) else pair for pair in char_filters]
            if isinstance(char_filters, (list, tuple))
            else char_filters
        )
        self.char_activation = char_activation
        self.n_highway = n_highway
        self.max_characters_per_token = max_characters_per_token
        self.projection_size = projection_size
        self.lstm_size = lstm_size
        self.num_hidden_layers = num_hidden_layers
        self.cell_clip = cell_clip
        self.proj_clip = proj_clip
        self.use_skip_connections = use_skip_connections
        self.forget_bias = forget_bias
        self.num_output_representations = num_output_representations
        self.mix_layer_norm = mix_layer_norm
        self.sampled_softmax_size = sampled_softmax_size
        self.hidden_dropout_prob = hidden_dropout_prob
        self.pad_token_id = pad_token_id
        self.unk_token_id = unk_token_id
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.tie_word_embeddings = tie_word_embeddings
        self.tagger_word_features = tagger_word_features
        self.tagger_char_cnn_filters = tagger_char_cnn_filters
        self.tagger_dropout = tagger_dropout
        self.freeze_elmo = freeze_elmo
        super().__init__(use_crf=use_crf, classifier_pooling=classifier_pooling, **kwargs)
        self.check()

    # Sizes the shared heads read: a layer is [forward | backward], each projection_size wide.
    @property
    def encoder_output_size(self) -> int:
        return 2 * self.projection_size

    @property
    def embedding_size(self) -> int:
        return self.projection_size

    @property
    def tagger_input_size(self) -> int:
        """The features the tagger's BiLSTM reads per word: the mix (2P), the word vector (P), the character CNN."""
        words = self.projection_size if self.tagger_word_features else 0
        return self.encoder_output_size + words + self.tagger_char_cnn_filters

    @property
    def num_filters(self) -> int:
        """Width of the concatenated character convolutions (and of the highway layers)."""
        return sum(count for _, count in self.char_filters)

    @property
    def max_filter_width(self) -> int:
        return max(width for width, _ in self.char_filters)

    def check(self) -> None:
        super().check()
        value = self.projection_size
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(self).__name__}: projection_size (hidden_size) must be an int >= 1, got {value!r}")
        for field in ("vocab_size", "char_vocab_size", "char_embedding_size", "lstm_size", "num_hidden_layers"):
            self._positive_int(field)
        for field in ("max_characters_per_token", "num_output_representations"):
            self._positive_int(field)
        self._positive_int("n_highway", minimum=0)
        self._positive_int("sampled_softmax_size", minimum=0)
        if self.sampled_softmax_size > self.vocab_size:
            self._fail(
                "sampled_softmax_size", self.sampled_softmax_size,
                f"at most vocab_size={self.vocab_size} (the distinct words it samples per batch), or 0 for the full "
                "softmax",
            )
        self._choice("char_activation", CHAR_ACTIVATIONS)
        self._check_filters()
        if self.lstm_size < self.projection_size:
            self._fail(
                "lstm_size", self.lstm_size,
                f">= projection_size={self.projection_size} (the projection maps the cells down to projection_size)",
            )
        for field in ("cell_clip", "proj_clip"):
            if getattr(self, field) is not None:
                self._positive_number(field)
        if isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, (int, float)):
            self._fail("forget_bias", self.forget_bias, "a number")
        self._boolean("use_skip_connections")
        self._boolean("mix_layer_norm")
        self._probability("hidden_dropout_prob")
        self._positive_number("layer_norm_eps")
        self._choice("hidden_act", ("gelu", "gelu_new", "relu", "silu", "swish", "gelu_pytorch_tanh", "tanh"))
        self._boolean("tie_word_embeddings")
        if not self.tie_word_embeddings:
            self._fail(
                "tie_word_embeddings", self.tie_word_embeddings,
                "True: ELMo's word table is the LM softmax (its encoder reads characters only), so an untied table "
                "would be read by no loss and never trained, and a tagger's word vectors (tagger_word_features) "
                "would be that untrained table instead of the biLM's softmax rows",
            )
        self._token_id("pad_token_id")
        self._token_id("unk_token_id")
        self._boolean("tagger_word_features")
        self._boolean("freeze_elmo")
        self._positive_int("tagger_char_cnn_filters", minimum=0)
        if self.tagger_dropout is not None:
            self._probability("tagger_dropout")

    def _check_filters(self) -> None:
        filters = self.char_filters
        allowed = "a non-empty list of [width, count] pairs of ints >= 1"
        if not isinstance(filters, (list, tuple)) or not filters:
            self._fail("char_filters", filters, allowed)
        for pair in filters:
            if (
                not isinstance(pair, (list, tuple))
                or len(pair) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
            ):
                self._fail("char_filters", filters, allowed)
        if isinstance(self.max_characters_per_token, int) and self.max_filter_width > self.max_characters_per_token:
            self._fail(
                "char_filters", filters,
                f"filters no wider than max_characters_per_token={self.max_characters_per_token}",
            )

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_bilm_options(cls, options: Mapping, **kwargs) -> ElmoConfig:
        """The configuration of a bilm-tf options.json (already parsed); ``kwargs`` set the other fields
        (vocab_size, the heads' options, ...). ``ValueError`` names the option that is missing or invalid.

        Read: ``lstm.{projection_dim, dim, n_layers, cell_clip, proj_clip, use_skip_connections}``,
        ``char_cnn.{embedding.dim, filters, n_highway, n_characters, max_characters_per_token, activation}`` and,
        from a training options file, ``n_tokens_vocab``, ``dropout`` and ``n_negative_samples_batch``. n_characters
        may be 262 (the inference options) or 261 (the training ones, before the padding id was added): both give
        char_vocab_size=262.
        """

        def fail(path: str, value, allowed: str):
            raise ValueError(f"options.json: {path} must be {allowed}, got {value!r}")

        def section(mapping, key: str, path: str):
            if not isinstance(mapping, Mapping):
                fail(path.rsplit(".", 1)[0] or path, mapping, "an object")
            if key not in mapping:
                raise ValueError(f"options.json has no {path}")
            return mapping[key]

        if not isinstance(options, Mapping):
            fail("the top level", type(options).__name__, "an object")
        if "char_cnn" not in options:
            raise ValueError(
                "options.json has no char_cnn: a bilm-tf model with word-id inputs; bizoo's ELMo reads characters"
            )
        if options.get("bidirectional", True) is not True:
            fail("bidirectional", options["bidirectional"], "true (a forward-only LM has no backward weights)")
        lstm = section(options, "lstm", "lstm")
        cnn = section(options, "char_cnn", "char_cnn")
        n_characters = section(cnn, "n_characters", "char_cnn.n_characters")
        if n_characters not in (BILM_CHAR_VOCAB_SIZE, BILM_CHAR_VOCAB_SIZE - 1) or isinstance(n_characters, bool):
            fail("char_cnn.n_characters", n_characters, "262 (or 261 in a training options file)")
        filters = section(cnn, "filters", "char_cnn.filters")
        fields = dict(
            projection_size=section(lstm, "projection_dim", "lstm.projection_dim"),
            lstm_size=section(lstm, "dim", "lstm.dim"),
            num_hidden_layers=lstm.get("n_layers", 1),
            cell_clip=lstm.get("cell_clip"),
            proj_clip=lstm.get("proj_clip"),
            use_skip_connections=bool(lstm.get("use_skip_connections", False)),
            char_embedding_size=section(
                section(cnn, "embedding", "char_cnn.embedding"), "dim", "char_cnn.embedding.dim"
            ),
            char_filters=filters,
            n_highway=cnn.get("n_highway") or 0,
            char_vocab_size=BILM_CHAR_VOCAB_SIZE,
            max_characters_per_token=section(cnn, "max_characters_per_token", "char_cnn.max_characters_per_token"),
            char_activation=section(cnn, "activation", "char_cnn.activation"),
        )
        if "n_tokens_vocab" in options:
            fields["vocab_size"] = options["n_tokens_vocab"]
        if "dropout" in options:
            fields["hidden_dropout_prob"] = options["dropout"]
        if options.get("sample_softmax", True) and "n_negative_samples_batch" in options:
            fields["sampled_softmax_size"] = options["n_negative_samples_batch"]
        names = {
            "projection_size": "lstm.projection_dim", "lstm_size": "lstm.dim", "num_hidden_layers": "lstm.n_layers",
            "cell_clip": "lstm.cell_clip", "proj_clip": "lstm.proj_clip",
            "char_embedding_size": "char_cnn.embedding.dim",
            "char_filters": "char_cnn.filters", "n_highway": "char_cnn.n_highway",
            "max_characters_per_token": "char_cnn.max_characters_per_token", "char_activation": "char_cnn.activation",
            "vocab_size": "n_tokens_vocab", "hidden_dropout_prob": "dropout",
            "sampled_softmax_size": "n_negative_samples_batch",
        }
        try:
            return cls(**{**fields, **kwargs})
        except ValueError as err:
            message = str(err)
            for field, path in names.items():
                if f": {field} must" in message or f": {field} (" in message:
                    raise ValueError(f"options.json: {path} is invalid: {message}") from None
            raise
