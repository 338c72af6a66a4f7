r"""LION: a BERT-shaped encoder whose attention is bidirectional linear attention with decay.

Afzal et al. 2025, "Linear Attention for Efficient Bidirectional Sequence Modeling". One file, the whole model:
embeddings → N × (mixer + feed-forward, pre- or post-LN) → heads from ``heads.py``. The mixer's math lives in
``bizoo.kernels.lion`` (``reference.py`` states it); ``config.lion_form`` picks the schedule at every call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

from ..configuration.configuration_lion import LionConfig
from ..kernels.dispatch import autocast_off
from ..kernels.lion import lion_attention
from ..kernels.lion.reference import attention_weights
from .common import (
    DamagedCheckpointErrors,
    Dropout,
    HalfSafeLayerNorm,
    StrictFp32Modules,
    TokenEmbeddings,
    check_attention_mask,
    check_ids_in_range,
    check_kwargs,
    check_positions,
    check_token_type_ids,
    resolve_inputs,
    resolve_output_attentions,
)
from .heads import (
    MaskedLMHead,
    SequenceClassificationHead,
    TokenClassifierOutputWithPath,
    check_task_labels,
    init_head_weights,
    masked_lm_output,
    real_mask,
    sequence_classification_output,
    token_classification_output,
    token_classification_head,
)

# ----------------------------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------------------------


LionEmbeddings = TokenEmbeddings  # word + learned position + token type, LayerNorm, dropout (modeling/common.py)


# ----------------------------------------------------------------------------------------------------------------
# The mixer
# ----------------------------------------------------------------------------------------------------------------


def feature_map(x: torch.Tensor, kind: str) -> torch.Tensor:
    """φ applied to q and k, per head: elu(x)+1, L2-normalised silu(x)+0.5, or identity."""
    if kind == "elu1":
        # elu(x) + 1 = x + 1 (x > 0), exp(x) (x <= 0); formed as (exp(x) - 1) + 1 it cancels to exactly 0 below
        # x ≈ -17 in fp32 (-6 in bf16), and a query of zeros makes the row-sum normaliser 0/0.
        return torch.where(x > 0, x + 1.0, torch.exp(torch.clamp(x, max=0.0)))
    if kind == "silu_norm":
        r = F.silu(x) + 0.5  # > 0.22 everywhere
        return r / r.norm(dim=-1, keepdim=True)
    return x


class LionDecay(nn.Module):
    r"""The log-decays of one LION layer, kept in fp32.

    LION-D: log λ_h = log σ(a_h), one learned scalar per head → (H,).
    LION-S: log λ_{t,h} = log σ(-(w_h·x_t + b_h)), from the layer input x → (B, H, L).

    ``decay_init="paper"``: a_h ~ N(0, 1) (D), w ~ N(0, initializer_range) and b = 0 (S).
    ``decay_init="retnet"``: λ_h = 1 - 2^(-5-h) at the start, through a_h (D) or b_h (S), with w as above.
    """

    def __init__(self, config: LionConfig):
        super().__init__()
        self.variant = config.lion_variant
        heads = config.num_attention_heads
        if self.variant == "d":
            self.logits = nn.Parameter(torch.zeros(heads))
        else:
            self.weight = nn.Parameter(torch.zeros(heads, config.hidden_size))
            self.bias = nn.Parameter(torch.zeros(heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "d":
            return F.logsigmoid(self.logits.float())  # (H,)
        with autocast_off(x.device):
            z = F.linear(x.float(), self.weight.float(), self.bias.float())  # (B, L, H)
        return F.logsigmoid(-z).transpose(1, 2)  # (B, H, L)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}"


def retnet_decays(heads: int) -> torch.Tensor:
    """λ_h = 1 - 2^(-5-h), h = 0..H-1: RetNet's per-head decays, from short (≈0.97) to long range."""
    return 1.0 - torch.pow(2.0, -5.0 - torch.arange(heads, dtype=torch.float64))


def retnet_logits(heads: int) -> torch.Tensor:
    """a_h with σ(a_h) = 1 - 2^(-n), n = 5 + h (``retnet_decays``), fp64: a_h = log(2^n - 1) = n log 2 + log1p(-2^-n),
    finite for every h. (torch.logit of the decays is +inf from h = 49 on, where 1 - 2^-n rounds to 1 in fp64: an
    infinite parameter whose decay, λ = 1, no gradient can move.)"""
    n = 5.0 + torch.arange(heads, dtype=torch.float64)
    return n * math.log(2.0) + torch.log1p(-torch.pow(2.0, -n))


class LionAttention(nn.Module):
    r"""LION bidirectional linear attention with decay, one layer's token mixer.

    For each head, with q_t = φ(W_q x_t), k_t = φ(W_k x_t), v_t = W_v x_t and decays λ_t ∈ (0, 1]:

        M_ij = ∏_{m=j}^{i-1} λ_m  (i > j),   1  (i = j),   ∏_{m=i+1}^{j} λ_m  (i < j)
        y_i  = Σ_j M_ij (q_i·k_j) v_j / Σ_j M_ij (q_i·k_j)            (normalization="rowsum")
        y_i  = LayerNorm(Σ_j M_ij (q_i·k_j / √d) v_j)                  (normalization="none")
        out  = W_o y

    LION-LIT: λ ≡ 1. LION-D: λ_h = σ(a_h). LION-S: λ_{t,h} = σ(-(w_h·x_t + b_h)). Padding takes no part and the
    backward direction starts at each sequence's last real token. ``config.lion_form`` chooses how it is computed
    ("attention": the L×L matrix; "rnn": forward and backward recurrences; "chunk": linear in L) and
    ``config.kernel_backend`` where (Triton on a GPU, PyTorch otherwise); every choice gives the same outputs.

    Attention weights (``output_attentions=True``): per head, the L×L matrix A with y = A v, i.e. before the mixer's
    LayerNorm (normalization="none") and W_o:

        A_ij = M_ij (q_i·k_j) / Σ_l M_il (q_i·k_l)     (normalization="rowsum": each real row sums to 1, A >= 0)
        A_ij = M_ij (q_i·k_j) / √d                      (normalization="none": unnormalised scores, any sign)

    Zeros at padded keys (columns) and padded queries (rows). The "rnn" and "chunk" forms and the Triton kernels
    never build A: it is built on the side from the same q, k and decays (``kernels/lion/reference.py``,
    ``attention_weights``), O(B H L²) memory as BERT's eager attention; only when asked.

    Shape: hidden (B, L, d), attention_mask (B, L) -> (B, L, d); with ``output_attentions=True`` a pair
    ((B, L, d), A (B, H, L, L)).
    """

    def __init__(self, config: LionConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(d, d, bias=config.qkv_bias)
        self.k_proj = nn.Linear(d, d, bias=config.qkv_bias)
        self.v_proj = nn.Linear(d, d, bias=config.qkv_bias)
        self.o_proj = nn.Linear(d, d)
        self.variant = config.lion_variant
        self.decay = LionDecay(config) if config.lion_variant in ("d", "s") else None
        # Read once, like the modules above: the feature map and the normaliser belong to the trained weights
        # (``LionModel.forward`` refuses a config changed after building; see STRUCTURAL_FIELDS).
        self.feature_map = config.feature_map
        self.rowsum = config.normalization == "rowsum"
        # (the mixer's output is exactly 0 at padded positions, which HalfSafeLayerNorm keeps finite in fp16)
        self.mixer_norm = None if self.rowsum else HalfSafeLayerNorm(d, eps=config.layer_norm_eps)

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, output_attentions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        B, L, d = hidden.shape
        heads = (B, L, self.num_heads, self.head_dim)
        q = feature_map(self.q_proj(hidden).view(heads).transpose(1, 2), self.feature_map)  # (B, H, L, Dh)
        k = feature_map(self.k_proj(hidden).view(heads).transpose(1, 2), self.feature_map)  # (B, H, L, Dh)
        v = self.v_proj(hidden).view(heads).transpose(1, 2)  # (B, H, L, Dh)
        # Under autocast the feature map may run in fp32 while v comes out of the linear layer in bf16/fp16: the
        # kernels take one dtype, the one autocast chose for the projections.
        q, k = q.to(v.dtype), k.to(v.dtype)
        rowsum = self.rowsum
        if not rowsum:
            q = q * (1.0 / math.sqrt(self.head_dim))
        log_decay = self.decay(hidden) if self.decay is not None else None  # None, (H,) or (B, H, L)
        weights = None
        if output_attentions:  # on the side: A from the q, k and decays the op below reads (class docstring)
            weights = attention_weights(q, k, log_decay, attention_mask, normalize=rowsum)  # (B, H, L, L)
        y = lion_attention(
            q,
            k,
            v,
            log_decay,
            attention_mask,
            form=self.config.lion_form,
            chunk_size=self.config.chunk_size,
            normalize=rowsum,
            backend=self.config.kernel_backend,
        )  # (B, H, L, Dh)
        y = y.transpose(1, 2).reshape(B, L, d)  # (B, L, d)
        if self.mixer_norm is not None:
            y = self.mixer_norm(y)
        out = self.o_proj(y)  # (B, L, d)
        return (out, weights) if output_attentions else out

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"variant={self.variant!r}, heads={self.num_heads}, head_dim={self.head_dim}, "
            f"feature_map={self.feature_map!r}, normalization={'rowsum' if self.rowsum else 'none'!r}, "
            f"form={c.lion_form!r}"
        )


# The config fields that decide what a LION model builds (which modules, and what its weights mean). They are read
# once, when the model is built; ``LionModel.forward`` refuses a config in which one has changed since, instead of
# running something other than what the config (and a checkpoint saved from it) says. Fields that only choose how
# the same function is computed (``lion_form``, ``chunk_size``, ``kernel_backend``) may change at any time.
STRUCTURAL_FIELDS = (
    "lion_variant",
    "feature_map",
    "normalization",
    "position_embedding_type",
    "layer_norm_position",
    "qkv_bias",
    "hidden_act",
)


def check_structure(name: str, config: LionConfig, built: dict) -> None:
    """ValueError if a field of ``STRUCTURAL_FIELDS`` differs from its value when the model was built."""
    for field, value in built.items():
        now = getattr(config, field, None)
        if now != value:
            raise ValueError(
                f"{name}: config.{field} is {now!r} but the model was built with {field}={value!r}; it decides the "
                f"model's modules and cannot change after building (only lion_form, chunk_size and kernel_backend "
                f"can). Build a new model: LionModel(config) or from_pretrained(..., {field}=...)"
            )


# ----------------------------------------------------------------------------------------------------------------
# Layer, encoder
# ----------------------------------------------------------------------------------------------------------------


class LionFeedForward(nn.Module):
    r"""FFN(x) = W_2 act(W_1 x + b_1) + b_2. Shape: (B, L, d) -> (B, L, d)."""

    def __init__(self, config: LionConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class LionLayer(GradientCheckpointingLayer):
    r"""One block. Pre-LN: x + Drop(Mix(LN(x))), then + Drop(FFN(LN(·))). Post-LN: LN(x + Drop(Mix(x))), then
    LN(· + Drop(FFN(·))). Shape: (B, L, d) -> (B, L, d); with ``output_attentions=True`` a pair ((B, L, d), the
    mixer's attention weights (B, H, L, L))."""

    def __init__(self, config: LionConfig):
        super().__init__()
        self.pre_norm = config.layer_norm_position == "pre"
        self.mixer = LionAttention(config)
        self.mixer_layer_norm = HalfSafeLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = LionFeedForward(config)
        self.ffn_layer_norm = HalfSafeLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, output_attentions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        mixer_input = self.mixer_layer_norm(hidden) if self.pre_norm else hidden  # (B, L, d)
        mixed = self.mixer(mixer_input, attention_mask, output_attentions)
        mixed, weights = mixed if output_attentions else (mixed, None)  # (B, L, d), (B, H, L, L) or None
        if self.pre_norm:
            hidden = hidden + self.dropout(mixed)
            hidden = hidden + self.dropout(self.feed_forward(self.ffn_layer_norm(hidden)))
        else:
            hidden = self.mixer_layer_norm(hidden + self.dropout(mixed))
            hidden = self.ffn_layer_norm(hidden + self.dropout(self.feed_forward(hidden)))
        return (hidden, weights) if output_attentions else hidden


class LionPreTrainedModel(DamagedCheckpointErrors, StrictFp32Modules, PreTrainedModel):
    config_class = LionConfig
    config: LionConfig
    base_model_prefix = "lion"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LionLayer"]
    # fp32 in fp16 and bf16 (common.StrictFp32Modules); each model lists those its config builds (LIT: no decay)
    _keep_in_fp32_modules_strict = ["decay", "crf"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # Linear/Embedding ~ N(0, initializer_range), LayerNorm = (1, 0)
        init_head_weights(module, self.config)
        if isinstance(module, LionDecay):
            std = self.config.initializer_range
            retnet = self.config.decay_init == "retnet"
            logits = retnet_logits(self.config.num_attention_heads).float()  # σ(a_h) = λ_h, finite for every h
            if module.variant == "d":
                if retnet:
                    init.copy_(module.logits, logits)
                else:
                    init.normal_(module.logits, mean=0.0, std=1.0)
            else:
                init.normal_(module.weight, mean=0.0, std=std)
                if retnet:
                    init.copy_(module.bias, -logits)  # λ = σ(-(w·x + b)) ≈ σ(-b) at the start
                else:
                    init.zeros_(module.bias)


class LionModel(LionPreTrainedModel):
    r"""The bare LION encoder: embeddings, `num_hidden_layers` LION blocks and (pre-LN) a final LayerNorm.

    Returns `BaseModelOutput` with `last_hidden_state` (B, L, d) and, with `output_hidden_states=True`, the
    embeddings output plus each block's output (`num_hidden_layers + 1` tensors; the last equals
    `last_hidden_state`).

    With `output_attentions=True` (or `config.output_attentions=True`; the argument wins when not None), also
    `attentions`: one (B, H, L, L) tensor per layer, as BERT gives, the weights A that layer's mixer applied to its
    values, y_i = Σ_j A_ij v_j (query i on dim 2, key j on dim 3): row-normalised, A_ij = M_ij (q_i·k_j) / Σ_l M_il
    (q_i·k_l), under `normalization="rowsum"`; the unnormalised scores M_ij (q_i·k_j) / √d under
    `normalization="none"` (that layer does not divide by the row sums; a LayerNorm follows). Padded keys (columns)
    and padded queries (rows) hold 0. Every variant, `lion_form` and backend gives them; the forms that never build
    the L×L matrix ("chunk", "rnn", the Triton kernels) have it built on the side, O(B H L²) memory, only when asked
    (`LionAttention`). The tuple form (`return_dict=False`) follows `BaseModelOutput`'s field order.
    """

    def __init__(self, config: LionConfig):
        config.check()
        super().__init__(config)
        self.embeddings = LionEmbeddings(config)
        self.layers = nn.ModuleList([LionLayer(config) for _ in range(config.num_hidden_layers)])
        pre = config.layer_norm_position == "pre"
        self.final_layer_norm = HalfSafeLayerNorm(config.hidden_size, eps=config.layer_norm_eps) if pre else None
        self.gradient_checkpointing = False
        self.built_with = {field: getattr(config, field) for field in STRUCTURAL_FIELDS}  # see check_structure
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        name = type(self).__name__
        check_kwargs(name, kwargs)
        output_attentions = resolve_output_attentions(name, output_attentions, self.config)
        self.config.check()
        config = self.config
        check_structure(name, config, self.built_with)
        batch, length = resolve_inputs(name, input_ids, inputs_embeds, config.hidden_size)
        device = (input_ids if input_ids is not None else inputs_embeds).device
        if input_ids is not None:
            input_ids = check_ids_in_range(name, "input_ids", input_ids, config.vocab_size, "vocab_size")
        mask = check_attention_mask(name, attention_mask, batch, length, device)  # (B, L) long
        token_type_ids = check_token_type_ids(name, token_type_ids, batch, length, config.type_vocab_size)
        if config.position_embedding_type == "absolute":
            check_positions(name, mask, config.max_position_embeddings)

        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict

        hidden = self.embeddings(input_ids, inputs_embeds, token_type_ids, mask)  # (B, L, d)
        all_hidden = [hidden] if output_hidden_states else None
        all_weights = [] if output_attentions else None
        for layer in self.layers:
            if output_attentions:
                hidden, weights = layer(hidden, mask, output_attentions=True)  # (B, L, d), (B, H, L, L)
                all_weights.append(weights)
            else:
                hidden = layer(hidden, mask)  # (B, L, d)
            if output_hidden_states:
                all_hidden.append(hidden)
        if self.final_layer_norm is not None:
            hidden = self.final_layer_norm(hidden)
            if output_hidden_states:
                all_hidden[-1] = hidden
        out = BaseModelOutput(
            last_hidden_state=hidden,
            hidden_states=tuple(all_hidden) if all_hidden else None,
            attentions=tuple(all_weights) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


# ----------------------------------------------------------------------------------------------------------------
# Task models
# ----------------------------------------------------------------------------------------------------------------


class LionForMaskedLM(LionPreTrainedModel):
    r"""LION with the masked-LM head (decoder tied to the word embeddings).

    With `labels` (B, L) (-100 = not predicted) the loss is the mean cross-entropy over predicted positions, and
    in training with `config.sparse_prediction` (default) `logits` holds only those positions, (N, vocab_size).
    """

    _tied_weights_keys = {"lm_head.decoder.weight": "lion.embeddings.word_embeddings.weight"}

    def __init__(self, config: LionConfig):
        super().__init__(config)
        self.lion = LionModel(config)
        self.lm_head = MaskedLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput | tuple:
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "masked_lm", labels, input_ids, inputs_embeds)
        out = self.lion(
            input_ids,
            attention_mask,
            token_type_ids,
            inputs_embeds,
            output_hidden_states,
            return_dict=True,
            output_attentions=output_attentions,
            **kwargs,
        )
        return masked_lm_output(self, out.last_hidden_state, out, labels, num_items, return_dict)


class LionForSequenceClassification(LionPreTrainedModel):
    r"""LION with a pooled classification/regression head (`config.classifier_pooling`, `config.problem_type`)."""

    def __init__(self, config: LionConfig):
        super().__init__(config)
        self.lion = LionModel(config)
        self.classifier = SequenceClassificationHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "sequence", labels, input_ids, inputs_embeds)
        out = self.lion(
            input_ids,
            attention_mask,
            token_type_ids,
            inputs_embeds,
            output_hidden_states,
            return_dict=True,
            output_attentions=output_attentions,
            **kwargs,
        )
        hidden = out.last_hidden_state
        mask = real_mask(attention_mask, hidden)  # (B, L)
        return sequence_classification_output(self, hidden, mask, out, labels, num_items, return_dict)


class LionForTokenClassification(LionPreTrainedModel):
    r"""LION with a per-token classification head: softmax, or a CRF with `config.use_crf=True` (then `logits` are
    the CRF's max-marginal scores and `predictions` the Viterbi path)."""

    def __init__(self, config: LionConfig):
        super().__init__(config)
        self.lion = LionModel(config)
        self.classifier = token_classification_head(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutputWithPath | tuple:
        num_items = kwargs.pop("num_items_in_batch", None)
        output_marginals = kwargs.pop("output_marginals", None)  # None: the config's
        labels = check_task_labels(self, "token", labels, input_ids, inputs_embeds)
        out = self.lion(
            input_ids,
            attention_mask,
            token_type_ids,
            inputs_embeds,
            output_hidden_states,
            return_dict=True,
            output_attentions=output_attentions,
            **kwargs,
        )
        hidden = out.last_hidden_state
        mask = real_mask(attention_mask, hidden)  # (B, L)
        return token_classification_output(
            self, hidden, mask, out, labels, num_items, return_dict, output_marginals
        )


__all__ = [
    "LionModel",
    "LionForMaskedLM",
    "LionForSequenceClassification",
    "LionForTokenClassification",
    "LionPreTrainedModel",
]
