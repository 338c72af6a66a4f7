r"""BiLSTM-CRF: word and character features, a bidirectional LSTM, and the shared heads (a CRF for tagging).

Huang et al. 2015, "Bidirectional LSTM-CRF Models for Sequence Tagging"; Lample et al. 2016, "Neural Architectures
for Named Entity Recognition" (character BiLSTM); Ma & Hovy 2016, "End-to-end Sequence Labeling via
Bi-directional LSTM-CNNs-CRF" (character CNN). One file, the whole model: embeddings (word ⊕ characters) →
BiLSTM layers → heads from ``heads.py``. Inputs are word ids and their characters, ``char_ids`` (B, L, C), from
the word+character tokenizer (``tokenization_wordchar.py``).

The LSTMs are ``BiLstmWeights`` modules (``lstm_layers.py``, shared with ELMo) that hold the parameters under
``nn.LSTM``'s names (so checkpoints keep torch's keys; a plain module, so torch.compile traces through it, which it
refuses for an ``nn.LSTM``); their forward runs the bidirectional LSTM op ``bizoo.kernels.lstm.bilstm`` over the real
tokens of each row, on the schedule ``config.kernel_backend`` picks (cuDNN, the fused Triton kernel, or PyTorch on a
CPU).

A text without words (a blank line through a pipeline, with the tokenizer's default of no special tokens) is a batch
of length 0, which BERT never sees ([CLS] [SEP]). It runs as one padding position per row, the way such a row runs
beside longer ones in a batch, and the per-token outputs are cut back to length 0 (``_without_words``): the same
result alone as in a batch.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

from ..configuration.configuration_bilstm_crf import BiLstmCrfConfig
from .common import (
    DamagedCheckpointErrors,
    Dropout,
    StrictFp32Modules,
    check_attention_mask,
    check_char_ids,
    check_ids_in_range,
    check_kwargs,
    check_token_type_ids_shape,
    encode_real_words,
    resolve_inputs,
    word_char_dummy_inputs,
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
from .char_encoders import CharCnnEncoder, CharLstmEncoder
from .lstm_layers import BiLstmWeights


def _no_words(input_ids, inputs_embeds) -> bool:
    """Whether the inputs are rows of length 0 (B >= 1): texts without words."""
    x = input_ids if input_ids is not None else inputs_embeds
    return isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[0] > 0 and x.shape[1] == 0


def _without_words(model, per_token: tuple[str, ...], input_ids, attention_mask, char_ids, inputs_embeds, labels,
                   output_hidden_states, return_dict, kwargs):
    """``model``'s forward for rows of length 0: run at length 1, every position padding (input ids of the padding
    id, attention mask 0, character rows of zeros, labels -100), as such a row runs beside longer ones in a batch;
    the outputs named in ``per_token`` and the hidden states cut back to length 0. A row's pooled outputs are what
    the row gets in a batch."""
    x = input_ids if input_ids is not None else inputs_embeds
    batch = x.shape[0]

    def one(t, fill):  # (B, 0, ...) -> (B, 1, ...) of fill; anything else as it is (for the checks to judge)
        empty = isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[1] == 0
        return t.new_full((t.shape[0], 1, *t.shape[2:]), fill) if empty else t

    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    mask = (one(attention_mask, 0) if isinstance(attention_mask, torch.Tensor)
            else torch.zeros(batch, 1, dtype=torch.long, device=x.device))
    if isinstance(kwargs.get("token_type_ids"), torch.Tensor):
        kwargs = {**kwargs, "token_type_ids": one(kwargs["token_type_ids"], 0)}
    inputs = dict(input_ids=one(input_ids, pad_id), attention_mask=mask, char_ids=one(char_ids, 0),
                  inputs_embeds=one(inputs_embeds, 0.0), output_hidden_states=output_hidden_states, return_dict=True)
    if labels is not None or "labels" in per_token:
        inputs["labels"] = one(labels, -100) if "labels" in per_token else labels
    out = type(model).forward(model, **inputs, **kwargs)
    for name in per_token:
        value = out.get(name) if name != "labels" else None
        if value is not None and value.shape[:2] == (batch, 1):  # per token (not sparse (N, V) masked-LM logits)
            out[name] = value[:, :0]
    if out.get("hidden_states") is not None:
        out["hidden_states"] = tuple(h[:, :0] for h in out["hidden_states"])
    return_dict = model.config.return_dict if return_dict is None else return_dict
    return out if return_dict else out.to_tuple()


class BiLstmCrfEmbeddings(nn.Module):
    r"""x_t = Dropout([E_word[w_t] ; char_encoder(chars of w_t)]); in training, word dropout replaces w_t by [UNK].

    Shape: input_ids (B, L) or inputs_embeds (B, L, word_embedding_size), char_ids (B, L, C)
    -> (B, L, word_embedding_size + char_feature_size).
    """

    def __init__(self, config: BiLstmCrfConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.word_embedding_size, padding_idx=config.pad_token_id
        )
        self.char_encoder = None
        if config.char_encoder == "cnn":
            self.char_encoder = CharCnnEncoder(config.char_vocab_size, config.char_embedding_size,
                                               config.char_cnn_filters, config.char_cnn_width, config.pad_char_id)
        elif config.char_encoder == "lstm":
            self.char_encoder = CharLstmEncoder(config, config.char_vocab_size, config.char_embedding_size,
                                                config.char_lstm_size, config.pad_char_id)
        self.dropout = Dropout(config.embedding_dropout)

    def forward(self, input_ids, inputs_embeds, char_ids, mask) -> torch.Tensor:
        if inputs_embeds is None:
            if self.training and self.config.word_dropout > 0 and self.config.unk_token_id is not None:
                drop = torch.rand(input_ids.shape, device=input_ids.device) < self.config.word_dropout
                input_ids = input_ids.masked_fill(drop & mask.bool(), self.config.unk_token_id)
            inputs_embeds = self.word_embeddings(input_ids)  # (B, L, E)
        features = [inputs_embeds]
        if self.char_encoder is not None:
            words = encode_real_words(self.char_encoder, char_ids, mask.bool())  # (B, L, F)
            features.append(words.to(inputs_embeds.dtype))
        return self.dropout(torch.cat(features, dim=-1))


class BiLstmLayer(GradientCheckpointingLayer):
    r"""h = Dropout(BiLSTM(x)) over the real tokens of each row. Shape: (B, L, I) -> (B, L, 2 × hidden_size)."""

    def __init__(self, config: BiLstmCrfConfig, input_size: int):
        super().__init__()
        self.config = config
        self.lstm = BiLstmWeights(input_size, config.hidden_size)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.lstm(hidden, mask, self.config.kernel_backend))  # (B, L, 2H)


class BiLstmCrfPreTrainedModel(DamagedCheckpointErrors, StrictFp32Modules, PreTrainedModel):
    config_class = BiLstmCrfConfig
    config: BiLstmCrfConfig
    base_model_prefix = "bilstm"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BiLstmLayer"]
    # fp32 in fp16 and bf16 (common.StrictFp32Modules); listed by a model only when its config builds a CRF head
    _keep_in_fp32_modules_strict = ["crf"]

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """transformers' dummy ``input_ids`` (3, 5) and the ``char_ids`` (3, 5, 5) the character encoder reads
        (``common.word_char_dummy_inputs``)."""
        return word_char_dummy_inputs(super().dummy_inputs["input_ids"], 5, self.config.char_vocab_size)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # Linear/Embedding ~ N(0, σ), LSTM: Xavier weights, zero biases
        init_head_weights(module, self.config)
        if isinstance(module, BiLstmWeights):  # forget-gate bias 1 (Jozefowicz et al. 2015), as taggers usually do
            module.init_as_tagger()
        elif isinstance(module, nn.Conv1d):
            init.kaiming_uniform_(module.weight, a=5**0.5)


class BiLstmCrfModel(BiLstmCrfPreTrainedModel):
    r"""The BiLSTM encoder: word ⊕ character features, then `num_hidden_layers` BiLSTM layers.

    Returns `BaseModelOutput`: `last_hidden_state` (B, L, 2 × hidden_size), forward and backward halves
    concatenated, zeros at padding; with `output_hidden_states`, the embedding features then each layer's output.
    """

    def __init__(self, config: BiLstmCrfConfig):
        config.check()
        super().__init__(config)
        self.embeddings = BiLstmCrfEmbeddings(config)
        sizes = [config.word_embedding_size + config.char_feature_size] + [2 * config.hidden_size] * (
            config.num_hidden_layers - 1
        )
        self.layers = nn.ModuleList([BiLstmLayer(config, size) for size in sizes])
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        char_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        name = type(self).__name__
        check_kwargs(name, kwargs, extra_ignored=("token_type_ids",))
        if _no_words(input_ids, inputs_embeds):
            return _without_words(self, ("last_hidden_state",), input_ids, attention_mask, char_ids, inputs_embeds,
                                  None, output_hidden_states, return_dict, kwargs)
        self.config.check()
        config = self.config
        embedding_size = config.word_embedding_size
        batch, length = resolve_inputs(name, input_ids, inputs_embeds, embedding_size, "word_embedding_size")
        device = (input_ids if input_ids is not None else inputs_embeds).device
        if input_ids is not None:
            input_ids = check_ids_in_range(name, "input_ids", input_ids, config.vocab_size, "vocab_size")
        mask = check_attention_mask(name, attention_mask, batch, length, device)  # (B, L) long
        check_token_type_ids_shape(name, kwargs.get("token_type_ids"), batch, length)
        if config.char_encoder != "none":
            if char_ids is None:
                raise ValueError(
                    f"{name}: char_ids (batch, words, max_chars) are required with "
                    f"char_encoder={config.char_encoder!r}; "
                    "the word+character tokenizer returns them"
                )
            char_ids = check_char_ids(name, char_ids, batch, length, config.char_vocab_size)
            char_ids = char_ids.to(device)
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict

        hidden = self.embeddings(input_ids, inputs_embeds, char_ids, mask)  # (B, L, E + F)
        all_hidden = [hidden] if output_hidden_states else None
        for layer in self.layers:
            hidden = layer(hidden, mask)  # (B, L, 2H)
            if output_hidden_states:
                all_hidden.append(hidden)
        out = BaseModelOutput(last_hidden_state=hidden, hidden_states=tuple(all_hidden) if all_hidden else None)
        return out if return_dict else out.to_tuple()


class BiLstmCrfForTokenClassification(BiLstmCrfPreTrainedModel):
    r"""The BiLSTM-CRF tagger: the BiLSTM, emissions, and the CRF head (`use_crf=True`, the default): `logits` are
    the max-marginal scores (argmax = the Viterbi path), `predictions` the path, the loss the CRF's negative
    log-likelihood. With `use_crf=False`, a softmax head."""

    def __init__(self, config: BiLstmCrfConfig):
        super().__init__(config)
        self.bilstm = BiLstmCrfModel(config)
        self.classifier = token_classification_head(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        char_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutputWithPath | tuple:
        if _no_words(input_ids, inputs_embeds):
            return _without_words(self, ("labels", "logits", "predictions", "marginals"), input_ids, attention_mask,
                                  char_ids, inputs_embeds, labels, output_hidden_states, return_dict, kwargs)
        num_items = kwargs.pop("num_items_in_batch", None)
        output_marginals = kwargs.pop("output_marginals", None)  # None: the config's
        labels = check_task_labels(self, "token", labels, input_ids, inputs_embeds, char_ids)
        out = self.bilstm(input_ids, attention_mask, char_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        hidden = out.last_hidden_state
        mask = real_mask(attention_mask, hidden)  # (B, L)
        return token_classification_output(
            self, hidden, mask, out, labels, num_items, return_dict, output_marginals
        )


class BiLstmCrfForSequenceClassification(BiLstmCrfPreTrainedModel):
    r"""The BiLSTM with a pooled classification/regression head (default pooling: both directions' final
    states)."""

    def __init__(self, config: BiLstmCrfConfig):
        super().__init__(config)
        self.bilstm = BiLstmCrfModel(config)
        self.classifier = SequenceClassificationHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        char_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        if _no_words(input_ids, inputs_embeds):
            return _without_words(self, (), input_ids, attention_mask, char_ids, inputs_embeds, labels,
                                  output_hidden_states, return_dict, kwargs)
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "sequence", labels, input_ids, inputs_embeds, char_ids)
        out = self.bilstm(input_ids, attention_mask, char_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        hidden = out.last_hidden_state
        mask = real_mask(attention_mask, hidden)  # (B, L)
        return sequence_classification_output(self, hidden, mask, out, labels, num_items, return_dict)


class BiLstmCrfForMaskedLM(BiLstmCrfPreTrainedModel):
    r"""The BiLSTM with the masked-LM head: the 2 × hidden_size outputs are projected to the word-embedding size and
    decoded with the tied word embeddings. (Characters of a masked word are given as the mask token's.)"""

    _tied_weights_keys = {"lm_head.decoder.weight": "bilstm.embeddings.word_embeddings.weight"}

    def __init__(self, config: BiLstmCrfConfig):
        super().__init__(config)
        self.bilstm = BiLstmCrfModel(config)
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
        char_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput | tuple:
        if _no_words(input_ids, inputs_embeds):
            return _without_words(self, ("labels", "logits"), input_ids, attention_mask, char_ids, inputs_embeds,
                                  labels, output_hidden_states, return_dict, kwargs)
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "masked_lm", labels, input_ids, inputs_embeds, char_ids)
        out = self.bilstm(input_ids, attention_mask, char_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        return masked_lm_output(self, out.last_hidden_state, out, labels, num_items, return_dict)


__all__ = [
    "BiLstmCrfModel",
    "BiLstmCrfForTokenClassification",
    "BiLstmCrfForSequenceClassification",
    "BiLstmCrfForMaskedLM",
    "BiLstmCrfPreTrainedModel",
]
