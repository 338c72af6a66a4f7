r"""Heads shared by every bizoo model (DESIGN.md §5): masked LM, sequence classification, token classification.

An encoder gives hidden states h ∈ R^{B×L×d} and an attention mask; a head turns them into logits and a loss.

* Masked LM: logits = W_e · LayerNorm(act(W_t h + b_t)) + b_v, with W_e tied to the input embeddings and the bias
  on the decoder (so ``resize_token_embeddings`` resizes it). With labels and ``config.sparse_prediction``, only the
  positions whose label is not -100 are projected: the (B·L × V) matrix is never built.
* Sequence classification: pool (mean over real tokens | first real token | both directions' final states), then
  dropout → dense → tanh → dropout → out projection. ``problem_type`` picks the loss: cross-entropy
  (single-label), binary cross-entropy on logits (multi-label) or mean squared error (regression).
* Token classification: dropout → linear per token, then softmax (cross-entropy with -100 ignored) or, with
  ``use_crf=True``, a linear-chain CRF whose max-marginal scores are the logits (argmax = the Viterbi path).

Every loss is a sum divided by ``num_items_in_batch`` when the ``Trainer`` gives it (the number of labels that are
not -100 over the whole accumulated batch), else by the number of such labels here: gradient accumulation then
gives the gradient of one big batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import MaskedLMOutput, SequenceClassifierOutput, TokenClassifierOutput

from .common import check_labels


def _normalised_sum(loss_sum: torch.Tensor, count, num_items_in_batch) -> torch.Tensor:
    """``loss_sum / num_items_in_batch`` if given, else ``loss_sum / count`` (at least 1)."""
    denominator = num_items_in_batch if num_items_in_batch is not None else count
    if torch.is_tensor(denominator):
        denominator = denominator.to(loss_sum.device).clamp(min=1)
    else:
        denominator = max(denominator, 1)
    return loss_sum / denominator


# ----------------------------------------------------------------------------------------------------------------
# Masked LM
# ----------------------------------------------------------------------------------------------------------------


class MaskedLMHead(nn.Module):
    r"""logits = decoder(LayerNorm(act(dense(h)))), the decoder's weight tied to the word embeddings.

    ``dense`` maps the encoder's output size to the embedding size (equal for Transformer-shaped models).
    Shape: (..., encoder_output_size) -> (..., vocab_size).
    """

    def __init__(self, config):
        super().__init__()
        d_in, d_emb = config.encoder_output_size, config.embedding_size
        self.dense = nn.Linear(d_in, d_emb)
        self.act = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(d_emb, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(d_emb, config.vocab_size, bias=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.act(self.dense(hidden))))


def masked_lm_loss_and_logits(head: MaskedLMHead, hidden, labels, config, num_items_in_batch=None, model_name="model"):
    """(loss or None, logits). Logits are (B, L, V) without labels; with labels and ``sparse_prediction`` they are
    (N, V) for the N positions whose label is not -100, in row-major order."""
    if labels is None:
        return None, head(hidden)  # (B, L, V)
    check_labels(model_name, labels, hidden.shape[:2], config.vocab_size, "one token id per position")
    labels = labels.to(hidden.device)
    if config.sparse_prediction:
        selected = labels != -100  # (B, L)
        logits = head(hidden[selected])  # (N, V)
        targets = labels[selected]  # (N,)
    else:
        logits = head(hidden)  # (B, L, V)
        targets = labels
    loss_sum = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    loss = _normalised_sum(loss_sum, (targets != -100).sum(), num_items_in_batch)
    return loss, logits


# ----------------------------------------------------------------------------------------------------------------
# Pooling and sequence classification
# ----------------------------------------------------------------------------------------------------------------


def first_and_last_real(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first and of the last real token of each row, (B,) each (0 for an all-padding row)."""
    mask = attention_mask.bool()
    length = mask.shape[1]
    first = mask.int().argmax(dim=1)  # (B,) first 1
    last = length - 1 - mask.flip(1).int().argmax(dim=1)  # (B,) last 1
    return first, last


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, d) -> (B, d). "mean": over real tokens; "first": first real token; "final_states": the forward half
    at the last real token and the backward half at the first real token (hidden = [forward | backward])."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "mean":
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    first, last = first_and_last_real(attention_mask)
    if pooling == "first":
        return hidden[rows, first]
    if pooling == "final_states":
        half = hidden.shape[-1] // 2
        return torch.cat([hidden[rows, last, :half], hidden[rows, first, half:]], dim=-1)
    raise ValueError(f"pool: pooling must be 'mean', 'first' or 'final_states', got {pooling!r}")


class SequenceClassificationHead(nn.Module):
    r"""pooled = pool(h); logits = out_proj(dropout(tanh(dense(dropout(pooled))))).

    Shape: hidden (B, L, d), attention_mask (B, L) -> (B, num_labels).
    """

    def __init__(self, config):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.pooling = config.classifier_pooling
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(config.encoder_output_size, config.encoder_output_size)
        self.out_proj = nn.Linear(config.encoder_output_size, config.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = pool(hidden, attention_mask, self.pooling)  # (B, d)
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}"


def sequence_classification_loss(logits, labels, config, num_items_in_batch=None, model_name="model"):
    """The loss for ``config.problem_type`` (inferred and stored on first use, as transformers does)."""
    num_labels = config.num_labels
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif not labels.is_floating_point():
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    batch = logits.shape[0]
    if config.problem_type == "regression":
        if labels.numel() != batch * num_labels:
            raise ValueError(
                f"{model_name}: regression labels must have {batch * num_labels} values (batch × num_labels), "
                f"got shape {tuple(labels.shape)}"
            )
        targets = labels.float().reshape(batch, num_labels)
        loss_sum = F.mse_loss(logits.float(), targets, reduction="sum")
        return _normalised_sum(loss_sum, targets.numel(), num_items_in_batch)
    if config.problem_type == "single_label_classification":
        check_labels(model_name, labels, (batch,), num_labels, "one class id per sequence")
        loss_sum = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
        return _normalised_sum(loss_sum, (labels != -100).sum(), num_items_in_batch)
    if tuple(labels.shape) != (batch, num_labels):
        raise ValueError(
            f"{model_name}: multi-label labels must have shape (batch, num_labels) = ({batch}, {num_labels}), "
            f"got {tuple(labels.shape)}"
        )
    targets = labels.float()
    loss_sum = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum")
    return _normalised_sum(loss_sum, targets.numel(), num_items_in_batch)


# ----------------------------------------------------------------------------------------------------------------
# Token classification
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TokenClassifierOutputWithPath(TokenClassifierOutput):
    """`TokenClassifierOutput` plus the decoded tags: `predictions` (B, L), -100 at padding (the Viterbi path with a
    CRF head, the per-token argmax without one)."""

    predictions: torch.LongTensor | None = None


class TokenClassificationHead(nn.Module):
    r"""Softmax tagging: logits_t = W dropout(h_t) + b per token; cross-entropy with -100 ignored.

    Shape: hidden (B, L, d), attention_mask (B, L) -> logits (B, L, num_labels).
    """

    def __init__(self, config):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.encoder_output_size, config.num_labels)

    def forward(self, hidden, attention_mask, labels=None, num_items_in_batch=None, model_name="model"):
        """(loss or None, logits (B, L, K), predictions (B, L) with -100 at padding)."""
        logits = self.classifier(self.dropout(hidden))  # (B, L, K)
        predictions = logits.argmax(-1).masked_fill(~attention_mask.bool(), -100)
        loss = None
        if labels is not None:
            check_labels(model_name, labels, logits.shape[:2], logits.shape[-1], "one tag id per position")
            labels = labels.to(logits.device)
            loss_sum = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
            )
            loss = _normalised_sum(loss_sum, (labels != -100).sum(), num_items_in_batch)
        return loss, logits, predictions


class LinearChainCrf(nn.Module):
    r"""The CRF's parameters (kept in fp32): transitions[i, j] scores tag i followed by tag j; start, end."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def extra_repr(self) -> str:
        return f"num_tags={self.transitions.shape[0]}"


class CrfTokenClassificationHead(nn.Module):
    r"""Tagging with a linear-chain CRF over the real tokens of each sequence.

    Emissions e_t = W dropout(h_t) + b; a path y scores s(y) = start[y_1] + Σ_t e_t[y_t] + Σ_t T[y_{t-1}, y_t] +
    end[y_n]; p(y | x) = exp s(y) / Z. Transitions, starts and ends that the tag scheme forbids (BIO/IOB2,
    IOBES/BIOES, BILOU/BIOUL, read from ``id2label``) are -inf, in training and in decoding.

    * loss: the negative log-likelihood Σ_b -log p(y_b | x_b), divided by ``num_items_in_batch`` (labelled tokens
      over the accumulated batch) or by the labelled tokens here; a -100 label at a real token (a special token,
      a word's later sub-tokens) is marginalised, so the chain runs over every real token.
    * logits: the max-marginal scores max_{y: y_t = k} s(y), so argmax(logits) is the Viterbi path: the
      transformers ``token-classification`` pipeline and any argmax evaluation decode with the CRF.

    Shape: hidden (B, L, d), attention_mask (B, L) -> logits (B, L, num_labels).
    """

    def __init__(self, config):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.config = config
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.encoder_output_size, config.num_labels)
        self.crf = LinearChainCrf(config.num_labels)
        self._constraints_cache: dict = {}

    def constraint_scores(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """0 / -inf additions to (transitions, start, end) for the config's labels and tag scheme (cached)."""
        from ..kernels.crf.constraints import allowed_transitions, constraint_scores, detect_scheme

        labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        scheme = self.config.tag_scheme
        key = (tuple(labels), scheme, str(device))
        if key not in self._constraints_cache:
            if scheme == "auto":
                scheme = detect_scheme(labels)
            allowed = allowed_transitions(labels, scheme)
            self._constraints_cache[key] = tuple(constraint_scores(a).to(device) for a in allowed)
        return self._constraints_cache[key]

    def crf_parameters(self, device):
        """(transitions, start, end) in fp32 with the scheme's constraints applied."""
        t_bias, s_bias, e_bias = self.constraint_scores(device)
        return self.crf.transitions.float() + t_bias, self.crf.start.float() + s_bias, self.crf.end.float() + e_bias

    def forward(self, hidden, attention_mask, labels=None, num_items_in_batch=None, model_name="model"):
        """(loss or None, max-marginal logits (B, L, K), Viterbi predictions (B, L) with -100 at padding)."""
        from ..kernels.crf import crf_log_likelihood, crf_max_marginals

        emissions = self.classifier(self.dropout(hidden)).float()  # (B, L, K)
        mask = attention_mask.bool()
        transitions, start, end = self.crf_parameters(emissions.device)
        backend = getattr(self.config, "kernel_backend", "auto")
        logits = crf_max_marginals(emissions, mask, transitions, start, end, backend=backend)  # (B, L, K)
        predictions = logits.argmax(-1).masked_fill(~mask, -100)  # the Viterbi path (ties broken towards it)
        loss = None
        if labels is not None:
            check_labels(model_name, labels, emissions.shape[:2], emissions.shape[-1], "one tag id per position")
            labels = labels.to(emissions.device)
            log_likelihood = crf_log_likelihood(emissions, mask, transitions, start, end, labels, backend=backend)
            if not log_likelihood.is_cuda and bool((log_likelihood == float("-inf")).any()):  # no sync on a GPU
                rows = (log_likelihood == float("-inf")).nonzero().flatten().tolist()
                raise ValueError(
                    f"{model_name}: the labels of batch rows {rows} break the tag scheme "
                    f"{self.config.tag_scheme!r} (e.g. I-X after O in BIO), so the CRF gives them probability 0; "
                    "fix the labels, or set tag_scheme='none' (IOB1 data, for one, is not BIO)"
                )
            loss = _normalised_sum(-log_likelihood.sum(), ((labels != -100) & mask).sum(), num_items_in_batch)
        return loss, logits, predictions


def init_head_weights(module: nn.Module, config) -> None:
    """The initialisation of the shared heads' own parameters, called from every model's ``_init_weights``
    (after transformers' defaults for Linear/Embedding/LayerNorm): CRF scores ~ U(-0.1, 0.1), decoder bias 0."""
    if isinstance(module, LinearChainCrf):
        for parameter in (module.transitions, module.start, module.end):
            init.uniform_(parameter, -0.1, 0.1)
    elif isinstance(module, MaskedLMHead):
        init.zeros_(module.decoder.bias)


def token_classification_head(config) -> nn.Module:
    """The token-classification head a config asks for: a CRF with ``use_crf=True``, softmax otherwise."""
    return CrfTokenClassificationHead(config) if getattr(config, "use_crf", False) else TokenClassificationHead(config)


# ----------------------------------------------------------------------------------------------------------------
# The task models' outputs: every model's ...ForMaskedLM / ...ForSequenceClassification / ...ForTokenClassification
# runs its encoder, then one of these on the hidden states its head reads.
# ----------------------------------------------------------------------------------------------------------------


def real_mask(attention_mask, hidden: torch.Tensor) -> torch.Tensor:
    """The (B, L) attention mask on ``hidden``'s device; every position real when there is none."""
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], device=hidden.device)
    return attention_mask.to(hidden.device)


def _as_requested(model, result, return_dict):
    return result if (model.config.return_dict if return_dict is None else return_dict) else result.to_tuple()


def masked_lm_output(model, hidden, encoder_output, labels, num_items_in_batch, return_dict):
    """``model.lm_head`` over ``hidden`` (B, L, d): `MaskedLMOutput` (or a tuple), the loss as
    ``masked_lm_loss_and_logits``."""
    loss, logits = masked_lm_loss_and_logits(
        model.lm_head, hidden, labels, model.config, num_items_in_batch, type(model).__name__
    )
    result = MaskedLMOutput(loss=loss, logits=logits, hidden_states=encoder_output.hidden_states)
    return _as_requested(model, result, return_dict)


def sequence_classification_output(model, hidden, mask, encoder_output, labels, num_items_in_batch, return_dict):
    """``model.classifier`` (a `SequenceClassificationHead`) over ``hidden`` (B, L, d) with ``mask`` (B, L)."""
    logits = model.classifier(hidden, mask)  # (B, num_labels)
    loss = None
    if labels is not None:
        loss = sequence_classification_loss(logits, labels, model.config, num_items_in_batch, type(model).__name__)
    result = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=encoder_output.hidden_states)
    return _as_requested(model, result, return_dict)


def token_classification_output(model, hidden, mask, encoder_output, labels, num_items_in_batch, return_dict):
    """``model.classifier`` (softmax or CRF, ``token_classification_head``) over ``hidden`` (B, L, d)."""
    loss, logits, predictions = model.classifier(hidden, mask, labels, num_items_in_batch, type(model).__name__)
    result = TokenClassifierOutputWithPath(
        loss=loss, logits=logits, hidden_states=encoder_output.hidden_states, predictions=predictions
    )
    return _as_requested(model, result, return_dict)
