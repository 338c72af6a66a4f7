"""LION configuration (model_type ``lion``)."""

from __future__ import annotations

from .common import BizooConfig

LION_VARIANTS = ("lit", "d", "s")
LION_FORMS = ("auto", "attention", "rnn", "chunk")
FEATURE_MAPS = ("elu1", "silu_norm", "identity")
NORMALIZATIONS = ("rowsum", "none")
DECAY_INITS = ("paper", "retnet")
POSITION_TYPES = ("absolute", "none")
LAYER_NORM_POSITIONS = ("pre", "post")

# What each variant uses unless told otherwise (Afzal et al. 2025): LION-LIT is linear attention with the
# elu+1 feature map and learned positions; LION-D and LION-S take the L2-normalised silu+0.5 map and let the
# decay carry the position signal.
VARIANT_DEFAULTS = {
    "lit": {"feature_map": "elu1", "position_embedding_type": "absolute"},
    "d": {"feature_map": "silu_norm", "position_embedding_type": "none"},
    "s": {"feature_map": "silu_norm", "position_embedding_type": "none"},
}


class LionConfig(BizooConfig):
    r"""Configuration of a LION encoder (Afzal et al. 2025, "Linear Attention for Efficient Bidirectional Sequence
    Modeling"): a BERT-shaped Transformer whose softmax attention is replaced by bidirectional linear attention
    with decay (see ``bizoo.modeling.modeling_lion.LionAttention`` for the equations).

    The defaults are BERT-base: 12 layers × 768, 12 heads, feed-forward 3072. The paper's sizes:

    * BERT-base:  ``LionConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)``
    * BERT-large: ``LionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)``

    each with ``lion_variant="lit"``, ``"d"`` or ``"s"``.

    Args:
        vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
        hidden_dropout_prob, max_position_embeddings, type_vocab_size, layer_norm_eps, pad_token_id,
        tie_word_embeddings: as in `BertConfig`. `type_vocab_size=0` drops the token-type embeddings.
        lion_variant (`str`, defaults to `"lit"`): `"lit"` (no decay), `"d"` (one learned decay per head,
            λ_h = σ(a_h)) or `"s"` (selective: one decay per token and head, λ_{t,h} = σ(-(w_h·x_t + b_h)), from the
            layer input).
        lion_form (`str`, defaults to `"auto"`): how the mixer is computed: `"attention"` (the L×L matrix; on a
            GPU the tiled parallel schedule that never builds it), `"rnn"` (forward and backward recurrences),
            `"chunk"` (linear in L) or `"auto"` (attention below a measured length crossover, chunk from it on).
            All give the same outputs; it can be changed after loading (`model.config.lion_form = "rnn"`).
        chunk_size (`int`, defaults to 64): chunk length of the chunk form.
        feature_map (`str`, *optional*): `"elu1"` (elu(x)+1, the paper's LION-LIT), `"silu_norm"` (silu(x)+0.5,
            L2-normalised over the head dimension, the paper's LION-D/S) or `"identity"` (the authors' MLM code).
            Defaults to the variant's choice.
        normalization (`str`, defaults to `"rowsum"`): `"rowsum"` divides by Σ_j M_ij q_i·k_j; `"none"` scales
            q by 1/√d and puts a LayerNorm after the mixer instead (the authors' MLM code).
        decay_init (`str`, defaults to `"paper"`): `"paper"` (LION-D: a_h ~ N(0, 1); LION-S: w ~ N(0, σ), b = 0) or
            `"retnet"` (λ_h = 1 - 2^(-5-h) per head h, a long-range start as in RetNet; for LION-S through b_h).
        position_embedding_type (`str`, *optional*): `"absolute"` (learned positions) or `"none"`. Defaults to the
            variant's choice (absolute for LIT, none for D and S).
        layer_norm_position (`str`, defaults to `"pre"`): `"pre"` (pre-LN with a final LayerNorm) or `"post"`
            (post-LN, as the BERT recipe the paper follows).
        qkv_bias (`bool`, defaults to `True`): biases on the q, k, v projections.
        **kwargs: the shared head fields of `BizooConfig` and the standard `PreTrainedConfig` fields.
    """

    model_type = "lion"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int | None = 0,
        tie_word_embeddings: bool = True,
        lion_variant: str = "lit",
        lion_form: str = "auto",
        chunk_size: int = 64,
        feature_map: str | None = None,
        normalization: str = "rowsum",
        decay_init: str = "paper",
        position_embedding_type: str | None = None,
        layer_norm_position: str = "pre",
        qkv_bias: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.pad_token_id = pad_token_id
        self.tie_word_embeddings = tie_word_embeddings
        self.lion_variant = lion_variant
        self.lion_form = lion_form
        self.chunk_size = chunk_size
        # An unknown variant (even an unhashable one, a list from a hand-edited config.json) takes LIT's defaults
        # here and is reported by check() as a ValueError that names lion_variant.
        known = isinstance(lion_variant, str) and lion_variant in VARIANT_DEFAULTS
        defaults = VARIANT_DEFAULTS[lion_variant if known else "lit"]
        self.feature_map = feature_map if feature_map is not None else defaults["feature_map"]
        self.normalization = normalization
        self.decay_init = decay_init
        self.position_embedding_type = (
            position_embedding_type if position_embedding_type is not None else defaults["position_embedding_type"]
        )
        self.layer_norm_position = layer_norm_position
        self.qkv_bias = qkv_bias
        super().__init__(**kwargs)
        self.check()

    @property
    def head_dim(self) -> int:
        """hidden_size // num_attention_heads; 0 while either is not a positive int (``check`` then says which)."""
        size, heads = self.hidden_size, self.num_attention_heads
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (size, heads)):
            return 0
        return size // heads

    def check(self) -> None:
        super().check()
        for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            self._positive_int(field)
        self._positive_int("max_position_embeddings")
        self._positive_int("type_vocab_size", minimum=0)
        self._positive_int("chunk_size")
        self._probability("hidden_dropout_prob")
        self._positive_number("layer_norm_eps")
        self._choice("hidden_act", ("gelu", "gelu_new", "relu", "silu", "swish", "gelu_pytorch_tanh"))
        self._choice("lion_variant", LION_VARIANTS)
        self._choice("lion_form", LION_FORMS)
        self._choice("feature_map", FEATURE_MAPS)
        self._choice("normalization", NORMALIZATIONS)
        self._choice("decay_init", DECAY_INITS)
        self._choice("position_embedding_type", POSITION_TYPES)
        self._choice("layer_norm_position", LAYER_NORM_POSITIONS)
        self._boolean("qkv_bias")
        self._boolean("tie_word_embeddings")
        self._token_id("pad_token_id")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"LionConfig: hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.feature_map == "identity" and self.normalization == "rowsum":
            raise ValueError(
                "LionConfig: feature_map='identity' with normalization='rowsum' can divide by a zero or negative row "
                "sum (q·k has no sign); use normalization='none' (the authors' MLM recipe) or feature_map 'elu1' or "
                "'silu_norm'"
            )
