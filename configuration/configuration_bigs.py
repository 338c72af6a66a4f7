"""Configuration of BiGS, the bidirectional gated state-space model (Wang et al. 2022, "Pretraining Without
Attention")."""

from __future__ import annotations

from .common import BizooConfig

BIGS_FORMS = ("auto", "conv", "fft", "toeplitz", "recurrent")
PAD_MODES = ("masked", "legacy")
SSM_SCALINGS = ("hippo", "lin", "inv")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")

#: The released BiGS models (jxiw/BiGS): BERT-large width, 23 layers, BERT's uncased WordPiece vocabulary. Their
#: names, for ``BiGSConfig.from_preset`` / ``bizoo pretrain --variant``, are the maximum lengths they were trained at.
RELEASED = dict(
    vocab_size=30522,
    hidden_size=1024,
    num_hidden_layers=23,
    intermediate_size=3072,
    num_ssm=64,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)
PRESETS = {f"large-{n}": dict(RELEASED, max_position_embeddings=n) for n in (128, 512, 1024, 4096)}


class BiGSConfig(BizooConfig):
    r"""Configuration of a BiGS model (`model_type="bigs"`).

    Args:
        vocab_size (`int`, defaults to 30522), hidden_size (`int`, defaults to 1024), num_hidden_layers (`int`,
            defaults to 23), intermediate_size (`int`, defaults to 3072: the gate width, 3 × hidden in the paper),
            max_position_embeddings (`int`, defaults to 512), type_vocab_size (`int`, defaults to 2; 0: none),
            hidden_dropout_prob (`float`, defaults to 0.1), layer_norm_eps (`float`, defaults to 1e-12),
            pad_token_id (`int`, defaults to 0), hidden_act (`str`, defaults to `"gelu"`: the masked-LM head's):
            transformers' usual meanings (the defaults are the released models').
        num_ssm (`int`, defaults to 64): the state size N of each direction's S4D SSM.
        ssm_scaling (`str`, defaults to `"hippo"`): initial A: `"hippo"` (the diagonal of the normal part of
            HiPPO-LegS), `"lin"` (S4D-Lin, A = -1/2 + iπn) or `"inv"` (S4D-Inv).
        ssm_dt_min, ssm_dt_max (`float`, defaults to 0.01 and 1.0): the initial step Δ is log-uniform between them.
        gate_act (`str`, defaults to `"gelu_pytorch_tanh"`): the activation of the layer's projections; the released
            (Flax) models use the tanh approximation of GELU, the authors' PyTorch port the exact `"gelu"`.
        bigs_form (`str`, defaults to `"auto"`): how the SSMs run: `"conv"` (their kernels as a convolution: a
            Toeplitz product for short sequences, FFT from a measured length on; `"fft"` and `"toeplitz"` force
            one) or `"recurrent"` (the diagonal recurrence, linear in L); `"auto"` is `"conv"`.
        pad_mode (`str`, defaults to `"masked"`): `"masked"` zeroes padded positions and runs the backward SSM from
            each sequence's last real token, with positions counted over real tokens (pad-invariant on either
            side); `"legacy"` pads every input to `max_position_embeddings` and flips the padded sequence for the
            backward branch, as the original code does (exact parity with the released checkpoints: padding then
            changes real outputs).
        position_embedding_type (`str`, defaults to `"absolute"`): learned positions (`"none"` turns them off).
        classifier_pooling (`str`, defaults to `"mean"`): the original's mean over non-pad tokens.
        ssm_lr_multiplier (`float`, defaults to 0.1), ssm_weight_decay (`float`, defaults to 0.0): what the
            model's `parameter_groups(learning_rate, weight_decay)` gives A and Δ (the recipe the original's S4D
            layer declares: 0.1× learning rate, no weight decay).
        freeze_ssm (`bool`, defaults to `False`): the SSM parameters (A, C, Δ, D) do not train.
    """

    model_type = "bigs"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 1024,
        num_hidden_layers: int = 23,
        intermediate_size: int = 3072,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        hidden_dropout_prob: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int | None = 0,
        hidden_act: str = "gelu",
        gate_act: str = "gelu_pytorch_tanh",
        num_ssm: int = 64,
        ssm_scaling: str = "hippo",
        ssm_dt_min: float = 0.01,
        ssm_dt_max: float = 1.0,
        bigs_form: str = "auto",
        pad_mode: str = "masked",
        position_embedding_type: str = "absolute",
        ssm_lr_multiplier: float = 0.1,
        ssm_weight_decay: float = 0.0,
        freeze_ssm: bool = False,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.hidden_dropout_prob = hidden_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.pad_token_id = pad_token_id
        self.hidden_act = hidden_act
        self.gate_act = gate_act
        self.num_ssm = num_ssm
        self.ssm_scaling = ssm_scaling
        self.ssm_dt_min = ssm_dt_min
        self.ssm_dt_max = ssm_dt_max
        self.bigs_form = bigs_form
        self.pad_mode = pad_mode
        self.position_embedding_type = position_embedding_type
        self.ssm_lr_multiplier = ssm_lr_multiplier
        self.ssm_weight_decay = ssm_weight_decay
        self.freeze_ssm = freeze_ssm
        self.tie_word_embeddings = tie_word_embeddings
        super().__init__(**kwargs)
        self.check()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> BiGSConfig:
        """The configuration of a released model: ``"large-128"``, ``"large-512"``, ``"large-1024"`` or
        ``"large-4096"`` (its maximum length), with ``overrides``."""
        if name not in PRESETS:
            raise ValueError(f"BiGSConfig.from_preset: unknown preset {name!r}; the presets are {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def check(self) -> None:
        super().check()
        for field in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "num_ssm",
                      "max_position_embeddings"):
            self._positive_int(field)
        self._positive_int("type_vocab_size", minimum=0)  # 0: no token-type embeddings, as LION
        self._probability("hidden_dropout_prob")
        for field in ("layer_norm_eps", "ssm_dt_min", "ssm_dt_max", "ssm_lr_multiplier"):
            self._positive_number(field)
        if not self.ssm_dt_min <= self.ssm_dt_max:
            self._fail("ssm_dt_min", self.ssm_dt_min, f"<= ssm_dt_max ({self.ssm_dt_max})")
        if isinstance(self.ssm_weight_decay, bool) or not isinstance(self.ssm_weight_decay, (int, float)) \
                or self.ssm_weight_decay < 0:
            self._fail("ssm_weight_decay", self.ssm_weight_decay, "a number >= 0")
        self._choice("hidden_act", ACTIVATIONS)
        self._choice("gate_act", ACTIVATIONS)
        self._choice("ssm_scaling", SSM_SCALINGS)
        self._choice("bigs_form", BIGS_FORMS)
        self._choice("pad_mode", PAD_MODES)
        self._choice("position_embedding_type", ("absolute", "none"))
        self._boolean("freeze_ssm")
        self._boolean("tie_word_embeddings")
        self._token_id("pad_token_id")
