r"""BiGS: the bidirectional gated state-space model (Wang et al. 2022, "Pretraining Without Attention").

A BiGS layer mixes tokens with two S4D state-space models, one running forwards and one backwards, and gates
the result; there is no attention, no separate feed-forward block and no final norm. With d = hidden_size,
I = intermediate_size (3d in the paper), x (L, d) the layer input:

    h  = LayerNorm(x)
    v  = σ(W_v h)                      (L, I)   the gate                          σ = gate_act (GELU)
    f  = σ(W_f h),  b = σ(W_b h)       (L, d)   the two branches
    f' = SSM_fwd(f)                    causal:       f'_t = Σ_{s≤t} K_f[t-s] f_s + D_f f_t
    b' = SSM_bwd(b)                    anti-causal:  b'_t = Σ_{s≥t} K_b[s-t] b_s + D_b b_t
    x  = x + W_o( σ(W_ol (U_f f' ⊙ U_b b')) ⊙ v )                               W_ol: d → I, W_o: I → d

Each SSM is a diagonal S4D with state size N (num_ssm), one kernel shared by all d channels, zero-order-hold
discretisation with B = 1 and a learned step Δ = exp(log_step):

    A = min(A_re, -1e-4) + i A_im,  Ā = exp(Δ A),  B̄ = (Ā - 1) / A,  K[l] = Re Σ_n C_n B̄_n Ā_n^l

computed as a convolution ("conv": a Toeplitz product for short sequences, FFT from a measured length on) or as
the recurrence x_t = Ā x_{t-1} + B̄ u_t, y_t = Re(C x_t) + D u_t ("recurrent"); ``bizoo.kernels.ssm`` holds both.

Padding (``pad_mode``): "masked" zeroes the branches at padded positions, so the backward SSM starts at each
sequence's last real token, and counts positions over real tokens: a sequence gives the same outputs however it
is padded. "legacy" reproduces the original code: every input is padded to ``max_position_embeddings`` with the
pad token and the whole padded sequence runs through both SSMs (the original's flip puts the padding in front of
the backward branch, so padding changes the real outputs), then the outputs are cut back to the input length.

The embeddings are BERT's (word + learned position + token type, LayerNorm, dropout); the heads are the zoo's
(``heads.py``): the tied masked-LM head, the original's mean over non-pad tokens for sequence classification,
softmax or CRF token classification.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

from ..configuration.configuration_bigs import BiGSConfig
from ..kernels.ssm import bidirectional_ssm, s4d_init, s4d_kernel
from .common import (
    DamagedCheckpointErrors,
    HalfSafeLayerNorm,
    StrictFp32Modules,
    TokenEmbeddings,
    check_attention_mask,
    check_ids_in_range,
    check_kwargs,
    check_positions,
    check_token_type_ids,
    resolve_inputs,
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

SSM_PARAMETERS = ("A_re", "A_im", "C", "log_step", "D")
SSM_SLOW_PARAMETERS = ("A_re", "A_im", "log_step")  # the original's 0.1× learning rate, no weight decay


class S4D(nn.Module):
    r"""The parameters of one direction's S4D SSM, shared by all channels: A_re, A_im (N,), C (N, 2) (real and
    imaginary parts), log_step (1,), D (1,). ``kernel(L)`` -> K (L,) (module docstring).

    ``forward(L, recurrent)`` hands the layer what it runs the SSM with: (K (L,), D (1,), and with ``recurrent``
    the recurrence's (log_step, A_re, A_im, C), else None). The parameters are read there, in the forward of the
    module that owns them, so that hooks that bring a module's weights in for its forward (accelerate's CPU and
    disk offloading) have them in place.
    """

    def __init__(self, config: BiGSConfig):
        super().__init__()
        N = config.num_ssm
        self.A_re = nn.Parameter(torch.empty(N))
        self.A_im = nn.Parameter(torch.empty(N))
        self.C = nn.Parameter(torch.empty(N, 2))
        self.log_step = nn.Parameter(torch.empty(1))
        self.D = nn.Parameter(torch.empty(1))

    def kernel(self, length: int) -> torch.Tensor:
        return s4d_kernel(self.log_step, self.A_re, self.A_im, self.C, length)  # (L,)

    def recurrent_parameters(self) -> tuple[torch.Tensor, ...]:
        return self.log_step, self.A_re, self.A_im, self.C

    def forward(self, length: int, recurrent: bool = False):
        recurrent_params = self.recurrent_parameters() if recurrent else None
        return self.kernel(length), self.D, recurrent_params  # (L,), (1,), 4 tensors or None

    def extra_repr(self) -> str:
        return f"N={self.A_re.shape[0]}"


class BiGSLayer(GradientCheckpointingLayer):
    r"""One BiGS block (module docstring). Shape: (B, L, d), mask (B, L) or None -> (B, L, d)."""

    def __init__(self, config: BiGSConfig):
        super().__init__()
        d, inner = config.hidden_size, config.intermediate_size
        self.config = config
        self.LayerNorm = HalfSafeLayerNorm(d, eps=config.layer_norm_eps)
        self.dv = nn.Linear(d, inner)
        self.du_forward = nn.Linear(d, d)
        self.du_backward = nn.Linear(d, d)
        self.fs4 = S4D(config)
        self.bs4 = S4D(config)
        self.duc_forward = nn.Linear(d, d)
        self.duc_backward = nn.Linear(d, d)
        self.dol = nn.Linear(d, inner)
        self.do = nn.Linear(inner, d)
        self.act = ACT2FN[config.gate_act]

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.LayerNorm(hidden)  # (B, L, d)
        v = self.act(self.dv(h))  # (B, L, I)
        forward_branch = self.act(self.du_forward(h))  # (B, L, d)
        backward_branch = self.act(self.du_backward(h))  # (B, L, d)
        length = hidden.shape[1]
        form = {"auto": "auto", "conv": "auto"}.get(self.config.bigs_form, self.config.bigs_form)
        k_forward, d_forward, recurrent_forward = self.fs4(length, form == "recurrent")  # (L,), (1,)
        k_backward, d_backward, recurrent_backward = self.bs4(length, form == "recurrent")
        recurrent = (recurrent_forward, recurrent_backward) if form == "recurrent" else None
        y_forward, y_backward = bidirectional_ssm(
            forward_branch, backward_branch, k_forward, k_backward, d_forward, d_backward, mask, form=form,
            backend=self.config.kernel_backend, recurrent_params=recurrent,
        )  # (B, L, d) each, 0 at padding
        mixed = self.duc_forward(y_forward) * self.duc_backward(y_backward)  # (B, L, d)
        return hidden + self.do(self.act(self.dol(mixed)) * v)


class BiGSPreTrainedModel(DamagedCheckpointErrors, StrictFp32Modules, PreTrainedModel):
    config_class = BiGSConfig
    config: BiGSConfig
    base_model_prefix = "bigs"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BiGSLayer"]
    # fp32 in fp16 and bf16 (common.StrictFp32Modules); each model lists those its config builds
    _keep_in_fp32_modules_strict = ["fs4", "bs4", "crf"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # Linear/Embedding ~ N(0, initializer_range), LayerNorm = (1, 0)
        init_head_weights(module, self.config)
        if isinstance(module, S4D):
            values = s4d_init(module.A_re.shape[0], self.config.ssm_scaling, dt_min=self.config.ssm_dt_min,
                              dt_max=self.config.ssm_dt_max)
            for name in ("A_re", "A_im", "C", "log_step"):
                init.copy_(getattr(module, name), values[name].to(getattr(module, name).dtype))
            init.ones_(module.D)

    def post_init(self):
        super().post_init()
        self.apply_freeze_ssm()

    def apply_freezing(self) -> None:
        """What ``DamagedCheckpointErrors.from_pretrained`` applies again to a loaded model: ``freeze_ssm``."""
        self.apply_freeze_ssm()

    def apply_freeze_ssm(self) -> None:
        """``config.freeze_ssm``: the SSM parameters (A, C, Δ, D) stop (or resume) training."""
        for module in self.modules():
            if isinstance(module, S4D):
                for parameter in module.parameters():
                    parameter.requires_grad_(not self.config.freeze_ssm)

    def parameter_groups(self, learning_rate: float, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups with the original recipe: A and Δ at ``config.ssm_lr_multiplier`` × the
        learning rate with ``config.ssm_weight_decay``; C and D, biases and LayerNorm weights without weight decay;
        every other weight with ``weight_decay``. Frozen parameters are left out::

            torch.optim.AdamW(model.parameter_groups(1e-4, 0.01))
        """
        slow, no_decay, decay = [], [], []
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            leaf = name.rsplit(".", 1)[-1]
            in_ssm = ".fs4." in f".{name}" or ".bs4." in f".{name}"
            if in_ssm and leaf in SSM_SLOW_PARAMETERS:
                slow.append(parameter)
            elif in_ssm or parameter.dim() < 2 or "LayerNorm" in name or "layer_norm" in name:
                no_decay.append(parameter)
            else:
                decay.append(parameter)
        groups = [
            {"params": decay, "lr": learning_rate, "weight_decay": weight_decay},
            {"params": no_decay, "lr": learning_rate, "weight_decay": 0.0},
            {"params": slow, "lr": learning_rate * self.config.ssm_lr_multiplier,
             "weight_decay": self.config.ssm_weight_decay},
        ]
        return [group for group in groups if group["params"]]


class BiGSModel(BiGSPreTrainedModel):
    r"""The bare BiGS encoder: embeddings and `num_hidden_layers` BiGS blocks (no final norm, as the original).

    Returns `BaseModelOutput` with `last_hidden_state` (B, L, d) and, with `output_hidden_states=True`, the
    embeddings output plus each block's output (`num_hidden_layers + 1` tensors).
    """

    def __init__(self, config: BiGSConfig):
        config.check()
        super().__init__(config)
        self.embeddings = TokenEmbeddings(config)
        self.layers = nn.ModuleList([BiGSLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def _legacy_inputs(self, input_ids, inputs_embeds, token_type_ids, length: int):
        """pad_mode="legacy": the inputs padded to max_position_embeddings as the original code does."""
        name, config = type(self).__name__, self.config
        total = config.max_position_embeddings
        if length > total:
            raise ValueError(
                f"{name}: pad_mode='legacy' pads every input to max_position_embeddings={total}, but the input has "
                f"{length} positions; truncate it or use pad_mode='masked'"
            )
        extra = total - length
        if input_ids is not None:
            pad = config.pad_token_id if config.pad_token_id is not None else 0
            input_ids = nn.functional.pad(input_ids, (0, extra), value=pad)  # (B, P)
        else:
            pad_ids = torch.full((inputs_embeds.shape[0], extra), config.pad_token_id or 0, device=inputs_embeds.device)
            inputs_embeds = torch.cat([inputs_embeds, self.embeddings.word_embeddings(pad_ids)], dim=1)  # (B, P, d)
        if token_type_ids is not None:
            token_type_ids = nn.functional.pad(token_type_ids, (0, extra), value=0)  # (B, P)
        return input_ids, inputs_embeds, token_type_ids

    @staticmethod
    def _returned(hidden: torch.Tensor, length: int, all_hidden: list) -> torch.Tensor:
        """Append ``hidden``'s first ``length`` positions to ``all_hidden``; return what the next layer reads:
        ``hidden`` itself, or (legacy padding, P > L) the returned part joined again with the padded tail.
        Shape: (B, P, d) -> (B, P, d)."""
        if hidden.shape[1] == length:
            all_hidden.append(hidden)
            return hidden
        returned = hidden[:, :length]  # (B, L, d)
        all_hidden.append(returned)
        return torch.cat([returned, hidden[:, length:]], dim=1)  # (B, P, d)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        name = type(self).__name__
        check_kwargs(name, kwargs)
        self.config.check()
        config = self.config
        batch, length = resolve_inputs(name, input_ids, inputs_embeds, config.hidden_size)
        device = (input_ids if input_ids is not None else inputs_embeds).device
        if input_ids is not None:
            input_ids = check_ids_in_range(name, "input_ids", input_ids, config.vocab_size, "vocab_size")
        mask = check_attention_mask(name, attention_mask, batch, length, device)  # (B, L) long
        token_type_ids = check_token_type_ids(name, token_type_ids, batch, length, config.type_vocab_size)
        if config.position_embedding_type == "absolute" and config.pad_mode == "masked":
            check_positions(name, mask, config.max_position_embeddings)
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict

        if config.pad_mode == "legacy":
            input_ids, inputs_embeds, token_type_ids = self._legacy_inputs(
                input_ids, inputs_embeds, token_type_ids, length
            )
            full = torch.ones(batch, config.max_position_embeddings, dtype=mask.dtype, device=device)  # positions 0…P-1
            hidden = self.embeddings(input_ids, inputs_embeds, token_type_ids, full)  # (B, P, d)
            layer_mask = None  # the original mixes the padding in
        else:
            hidden = self.embeddings(input_ids, inputs_embeds, token_type_ids, mask)  # (B, L, d)
            layer_mask = mask
        # The hidden states returned are the tensors the next layer reads (``retain_grad`` on one gets its gradient).
        # Legacy padding runs the layers over P > L positions: the first L are returned, and the next layer reads
        # them put back together with the padded tail.
        all_hidden = [] if output_hidden_states else None
        for layer in self.layers:
            if output_hidden_states:
                hidden = self._returned(hidden, length, all_hidden)
            hidden = layer(hidden, layer_mask)  # (B, L or P, d)
        hidden = hidden[:, :length]  # legacy: back to the input length
        if output_hidden_states:
            all_hidden.append(hidden)
        out = BaseModelOutput(last_hidden_state=hidden, hidden_states=tuple(all_hidden) if all_hidden else None)
        return out if return_dict else out.to_tuple()


# ----------------------------------------------------------------------------------------------------------------
# Task models
# ----------------------------------------------------------------------------------------------------------------


class BiGSForMaskedLM(BiGSPreTrainedModel):
    r"""BiGS with the masked-LM head (dense, activation, LayerNorm, decoder tied to the word embeddings)."""

    _tied_weights_keys = {"lm_head.decoder.weight": "bigs.embeddings.word_embeddings.weight"}

    def __init__(self, config: BiGSConfig):
        super().__init__(config)
        self.bigs = BiGSModel(config)
        self.lm_head = MaskedLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, labels=None,
                output_hidden_states=None, return_dict=None, **kwargs) -> MaskedLMOutput | tuple:
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "masked_lm", labels, input_ids, inputs_embeds)
        out = self.bigs(input_ids, attention_mask, token_type_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        return masked_lm_output(self, out.last_hidden_state, out, labels, num_items, return_dict)


class BiGSForSequenceClassification(BiGSPreTrainedModel):
    r"""BiGS with the original's pooled head: tanh(dense(mean over non-pad tokens)), dropout, a linear layer
    (`config.classifier_pooling`, `config.problem_type`). Without `attention_mask` every token is real."""

    def __init__(self, config: BiGSConfig):
        super().__init__(config)
        self.bigs = BiGSModel(config)
        self.classifier = SequenceClassificationHead(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, labels=None,
                output_hidden_states=None, return_dict=None, **kwargs) -> SequenceClassifierOutput | tuple:
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "sequence", labels, input_ids, inputs_embeds)
        out = self.bigs(input_ids, attention_mask, token_type_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        hidden = out.last_hidden_state
        mask = real_mask(attention_mask, hidden)  # (B, L)
        return sequence_classification_output(self, hidden, mask, out, labels, num_items, return_dict)


class BiGSForTokenClassification(BiGSPreTrainedModel):
    r"""BiGS with a per-token head: softmax, or a CRF with `config.use_crf=True` (`logits` = max-marginals,
    `predictions` = the Viterbi path)."""

    def __init__(self, config: BiGSConfig):
        super().__init__(config)
        self.bigs = BiGSModel(config)
        self.classifier = token_classification_head(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, labels=None,
                output_hidden_states=None, return_dict=None, **kwargs) -> TokenClassifierOutputWithPath | tuple:
        num_items = kwargs.pop("num_items_in_batch", None)
        output_marginals = kwargs.pop("output_marginals", None)  # None: the config's
        labels = check_task_labels(self, "token", labels, input_ids, inputs_embeds)
        out = self.bigs(input_ids, attention_mask, token_type_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        hidden = out.last_hidden_state
        mask = real_mask(attention_mask, hidden)  # (B, L)
        return token_classification_output(
            self, hidden, mask, out, labels, num_items, return_dict, output_marginals
        )


__all__ = [
    "BiGSModel",
    "BiGSForMaskedLM",
    "BiGSForSequenceClassification",
    "BiGSForTokenClassification",
    "BiGSPreTrainedModel",
]
