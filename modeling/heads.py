r"""Heads shared by every bizoo model (ARCHITECTURE.md §5): masked LM, sequence classification, token classification.

An encoder gives hidden states h ∈ R^{B×L×d} and an attention mask; a head turns them into logits and a loss.

* Masked LM: logits = W_e · LayerNorm(act(W_t h + b_t)) + b_v, with W_e tied to the input embeddings and the bias
  on the decoder (so ``resize_token_embeddings`` resizes it). In training, with labels and
  ``config.sparse_prediction``, only the positions whose label is not -100 are projected: the (B·L × V) matrix is
  never built. In evaluation the logits are (B, L, V), as every masked LM of transformers gives them (the example
  scripts' metrics line predictions up with labels by position).
* Sequence classification: pool (mean over real tokens | first real token | both directions' final states), then
  dropout → dense → tanh → dropout → out projection. ``problem_type`` picks the loss: cross-entropy
  (single-label), binary cross-entropy on logits (multi-label) or mean squared error (regression).
* Token classification: dropout → linear per token, then softmax (cross-entropy with -100 ignored) or, with
  ``use_crf=True``, a linear-chain CRF whose max-marginal scores are the logits (argmax = the Viterbi path), or,
  with ``config.crf_logits="log_marginals"``, its log-marginals log p(y_t = k | x) (so that softmax(logits), what
  the transformers pipeline reports as ``score``, is the CRF's posterior marginal). Either head reports the
  per-token probabilities p(y_t = k | x) as ``marginals`` when asked (``output_marginals``).

Labels are checked by ``check_task_labels``, which every task model calls before its encoder runs (shape, dtype and
range per head and problem type; a CRF's tag scheme against ``id2label``): a bad label costs no forward pass.

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

from ..configuration.common import CRF_LOGITS  # what a CRF head may report as logits (config.crf_logits)
from ..kernels import dispatch
from ..kernels.checks import has_shape
from .common import Dropout, HalfSafeLayerNorm, check_labels, settle_first_bad
from .value_checks import check_mode, settle


def normalised_sum(loss_sum: torch.Tensor, count, num_items_in_batch) -> torch.Tensor:
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
        self.layer_norm = HalfSafeLayerNorm(d_emb, eps=config.layer_norm_eps)  # reads 0 rows where h is 0 (padding)
        self.decoder = nn.Linear(d_emb, config.vocab_size, bias=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.act(self.dense(hidden))))


def masked_lm_loss_and_logits(head: MaskedLMHead, hidden, labels, config, num_items_in_batch=None, model_name="model"):
    """(loss or None, logits). Logits are (B, L, V); in training (``head.training``) with labels and
    ``sparse_prediction`` they are (N, V) for the N positions whose label is not -100, in row-major order: in eager
    mode only. While torch.compile or torch.export trace the model the logits stay (B, L, V) (N depends on the labels'
    values, which a traced graph cannot), and on the meta device (no values). The loss is the same either way.
    Evaluation keeps (B, L, V): the Trainer gathers evaluation logits for metrics that read them by position
    (run_mlm.py's accuracy), which (N, V) breaks."""
    if labels is None:
        return None, head(hidden)  # (B, L, V)
    labels = labels.to(hidden.device)  # checked by check_task_labels before the encoder ran
    if config.sparse_prediction and head.training and not dispatch.tracing() and not hidden.is_meta:
        selected = labels != -100  # (B, L)
        logits = head(hidden[selected])  # (N, V)
        targets = labels[selected]  # (N,)
    else:
        logits = head(hidden)  # (B, L, V)
        targets = labels
    loss_sum = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    loss = normalised_sum(loss_sum, (targets != -100).sum(), num_items_in_batch)
    return loss, logits


# ----------------------------------------------------------------------------------------------------------------
# Pooling and sequence classification
# ----------------------------------------------------------------------------------------------------------------


def first_and_last_real(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first and of the last real token of each row, (B,) each (an all-padding row: first 0, last
    L - 1)."""
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
        self.dropout = Dropout(dropout)
        self.dense = nn.Linear(config.encoder_output_size, config.encoder_output_size)
        self.out_proj = nn.Linear(config.encoder_output_size, config.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = pool(hidden, attention_mask, self.pooling)  # (B, d)
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}"


def infer_problem_type(config, labels: torch.Tensor) -> str:
    """``config.problem_type``, or when it is None what transformers infers (and the loss then stores on first use):
    regression for one output, single-label for integer labels, multi-label for float ones."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    return "multi_label_classification" if labels.is_floating_point() else "single_label_classification"


def check_sequence_labels(model_name: str, labels, config, batch: int) -> torch.Tensor:
    """The labels of a sequence classifier for ``config.problem_type`` (one reduction each), returned as the model
    is to use them (``check_labels``):

    * single-label: (batch,) integer class ids in [0, num_labels) or -100 (ignored); a column of them, (batch, 1),
      is read as (batch,), as BERT's ``labels.view(-1)`` reads it;
    * multi-label: (batch, num_labels) targets in [0, 1] (0/1, or soft targets);
    * regression: (batch, num_labels) finite numbers ((batch,) too when num_labels is 1).
    """
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{model_name}: labels must be a torch.Tensor, got {type(labels).__name__}")
    num_labels = config.num_labels
    problem_type = infer_problem_type(config, labels)
    if problem_type == "single_label_classification":
        if labels.dim() == 2 and labels.shape == (batch, num_labels) and num_labels > 1:
            fix = "pass float labels or set" if config.problem_type is None else "set"
            raise ValueError(
                f"{model_name}: labels of shape {tuple(labels.shape)} for problem_type='single_label_classification', "
                f"which takes one class id per sequence, shape ({batch},); for multi-label classification {fix} "
                "problem_type='multi_label_classification'"
            )
        if labels.shape == (batch, 1):
            labels = labels.reshape(batch)  # (B, 1) -> (B,): a column of class ids
        return check_labels(model_name, labels, (batch,), num_labels, "one class id per sequence")
    if labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(
            f"{model_name}: labels must be real numbers for problem_type={problem_type!r}, got {labels.dtype}"
        )
    if problem_type == "regression":
        shapes = [(batch, num_labels)] + ([(batch,)] if num_labels == 1 else [])
        if not has_shape(labels, *shapes):
            allowed = " or ".join(str(shape) for shape in shapes)
            raise ValueError(
                f"{model_name}: regression labels must have shape {allowed} (batch, num_labels={num_labels}), "
                f"got {tuple(labels.shape)}"
            )
        mode = check_mode(labels) if labels.is_floating_point() else "off"
        if mode != "off":
            settle(mode, torch.isfinite(labels).all()[None], lambda n: None if n[0] else (
                f"{model_name}: regression labels contain NaN or inf; allowed are finite numbers"))
        return labels
    # problem_type None: float labels with num_labels > 1 are multi-label targets, as transformers infers; whoever
    # meant class ids stored as floats, or a regression over several outputs, is told how to say so
    inferred = "" if config.problem_type is not None else (
        f" (problem_type=None, so float labels with num_labels={num_labels} are read as multi-label targets, as "
        "transformers reads them; for single-label classification pass integer class ids, e.g. labels.long(), "
        "and for a regression set problem_type='regression')"
    )
    if tuple(labels.shape) != (batch, num_labels):
        raise ValueError(
            f"{model_name}: multi-label labels must have shape (batch, num_labels) = ({batch}, {num_labels}), "
            f"got {tuple(labels.shape)}{inferred}"
        )
    mode = check_mode(labels)
    if mode != "off":
        outside = ~((labels >= 0) & (labels <= 1))  # NaN is outside too
        settle_first_bad(mode, labels, outside, lambda v: (
            f"{model_name}: multi-label labels hold {v}; allowed are targets in [0, 1] (1 = the label "
            f"applies){inferred}"))
    return labels


def sequence_classification_loss(logits, labels, config, num_items_in_batch=None, model_name="model"):
    """The loss for ``config.problem_type`` (inferred and stored on first use, as transformers does). ``labels``
    are checked by ``check_sequence_labels`` (``check_task_labels`` does it before the encoder runs)."""
    num_labels = config.num_labels
    problem_type = config.problem_type = infer_problem_type(config, labels)
    labels = labels.to(logits.device)
    batch = logits.shape[0]
    if problem_type == "regression":
        targets = labels.float().reshape(batch, num_labels)
        loss_sum = F.mse_loss(logits.float(), targets, reduction="sum")
        return normalised_sum(loss_sum, targets.numel(), num_items_in_batch)
    if problem_type == "single_label_classification":
        loss_sum = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
        return normalised_sum(loss_sum, (labels != -100).sum(), num_items_in_batch)
    targets = labels.float()
    loss_sum = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum")
    return normalised_sum(loss_sum, targets.numel(), num_items_in_batch)


# ----------------------------------------------------------------------------------------------------------------
# Token classification
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TokenClassifierOutputWithPath(TokenClassifierOutput):
    """`TokenClassifierOutput` plus the decoded tags: `predictions` (B, L), -100 at padding (the Viterbi path with a
    CRF head, the per-token argmax without one); and, only when asked (``output_marginals``), `marginals` (B, L, K):
    p(y_t = k | x) at every real position (the CRF's forward-backward marginals, or softmax(logits) without a CRF),
    0 at padding, fp32, without gradient."""

    predictions: torch.LongTensor | None = None
    marginals: torch.FloatTensor | None = None




def marginal_options(config, output_marginals=None, model_name=None) -> tuple[bool, str]:
    """(whether to report ``marginals``, what a CRF head reports as ``logits``), checked.

    ``output_marginals``: the forward's argument; None takes ``config.output_marginals``. Both config fields are
    optional (a config without them: False and "max_marginals"); a bad value raises a ``ValueError`` naming it.
    Plain Python on the config, no tensor: free on the hot path and constant while torch.compile traces.
    """
    config_name = type(config).__name__
    crf_logits = getattr(config, "crf_logits", "max_marginals")
    if crf_logits not in CRF_LOGITS:
        raise ValueError(f"{config_name}: crf_logits must be one of {CRF_LOGITS}, got {crf_logits!r}")
    if output_marginals is None:
        output_marginals = getattr(config, "output_marginals", False)
        if not isinstance(output_marginals, bool):
            raise ValueError(f"{config_name}: output_marginals must be True or False, got {output_marginals!r}")
    elif not isinstance(output_marginals, bool):
        raise ValueError(
            f"{model_name or 'model'}: output_marginals must be True, False or None (the config's), "
            f"got {output_marginals!r}"
        )
    return output_marginals, crf_logits


class TokenClassificationHead(nn.Module):
    r"""Softmax tagging: logits_t = W dropout(h_t) + b per token; cross-entropy with -100 ignored; the marginals,
    when asked, are p(y_t = k | x) = softmax(logits_t)_k (0 at padding).

    Shape: hidden (B, L, d), attention_mask (B, L) -> logits (B, L, num_labels).
    """

    def __init__(self, config):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.config = config
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(config.encoder_output_size, config.num_labels)
        marginal_options(config)  # a bad option fails when the model is built

    def forward(self, hidden, attention_mask, labels=None, num_items_in_batch=None, model_name="model",
                output_marginals=None):
        """(loss or None, logits (B, L, K), predictions (B, L) with -100 at padding), and marginals (B, L, K) last
        when ``output_marginals`` (None: ``config.output_marginals``) is true."""
        output_marginals, _ = marginal_options(self.config, output_marginals, model_name)
        logits = self.classifier(self.dropout(hidden))  # (B, L, K)
        real = attention_mask.bool()  # (B, L)
        predictions = logits.argmax(-1).masked_fill(~real, -100)
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)  # checked by check_task_labels before the encoder ran
            loss_sum = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
            )
            loss = normalised_sum(loss_sum, (labels != -100).sum(), num_items_in_batch)
        if not output_marginals:
            return loss, logits, predictions
        marginals = logits.detach().float().softmax(-1).masked_fill(~real.unsqueeze(-1), 0.0)  # (B, L, K)
        return loss, logits, predictions, marginals


#: The tag schemes a config may name, by family (the aliases of ``bizoo.kernels.crf.constraints``).
SCHEME_FAMILIES = {"IOB2": "BIO", "BIO": "BIO", "IOBES": "IOBES", "BIOES": "IOBES", "BILOU": "BILOU", "BIOUL": "BILOU"}


def check_crf_labels(config) -> list[str]:
    """The label names of a CRF head, ``id2label[0 .. num_labels-1]``, checked against ``config.tag_scheme``.

    With an explicit scheme (not "auto" or "none") every label must be "O" or a prefix of that scheme with a chunk
    type, and the set must be complete: every chunk type has the tags that open and close its chunks (B-X for an
    I-X in BIO; B-X and E-X/L-X for IOBES/BILOU). Otherwise the scheme's constraints would name tags the label set
    does not have, and the CRF could never predict (or train on) the tags that need them.
    """
    from ..kernels.crf.constraints import allowed_transitions, detect_scheme

    name = type(config).__name__
    labels = [config.id2label[i] for i in range(config.num_labels)]
    scheme = config.tag_scheme
    family = SCHEME_FAMILIES.get(scheme)
    if family is None:  # "auto" or "none": the constraints come from the labels themselves
        return labels
    try:
        allowed_transitions(labels, scheme)
    except ValueError as err:
        detail = str(err).split(": ", 1)[-1]
        raise ValueError(f"{name}: tag_scheme={scheme!r} does not fit id2label: {detail}") from None
    detected = detect_scheme(labels)
    if detected != family:
        raise ValueError(
            f"{name}: tag_scheme={scheme!r} but id2label {labels} is not a complete {family} label set (the labels "
            f"read as {detected!r}): a chunk type lacks the tag that opens or closes its chunks (e.g. I-X without "
            "B-X), so the CRF's constraints name tags that do not exist; add the missing labels, or use "
            "tag_scheme='auto' or 'none'"
        )
    return labels


class LinearChainCrf(nn.Module):
    r"""The CRF's parameters (kept in fp32): transitions[i, j] scores tag i followed by tag j; start, end."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(transitions, start, end) in fp32, read in this module's forward (accelerate's offloading hooks)."""
        return self.transitions.float(), self.start.float(), self.end.float()

    def extra_repr(self) -> str:
        return f"num_tags={self.transitions.shape[0]}"


def check_crf_loss_is_ours(model_name: str, labels, num_items_in_batch, crf_logits: str) -> None:
    """A ``ValueError`` when a CRF head is called with ``num_items_in_batch`` but without ``labels``.

    The ``Trainer`` counts ``num_items_in_batch`` only for a batch that has labels, and calls the model without them
    only when it computes the loss itself from ``outputs.logits``: with ``label_smoothing_factor > 0`` (its
    ``LabelSmoother``: a smoothed softmax cross-entropy per token) or a ``compute_loss_func``. A CRF head's logits
    are max-marginals or log-marginals, decoded without a gradient, not per-token class scores: a softmax
    cross-entropy over them is not the CRF's negative log-likelihood. Training on it failed at the backward pass
    with torch's bare "element 0 of tensors does not require grad", and an evaluation reported it as ``eval_loss``
    without a sign. transformers >= 5 passes the count in evaluation too, so both now stop here. Plain Python on
    ``None``: free, and constant while torch.compile traces.
    """
    if labels is not None or num_items_in_batch is None:
        return
    raise ValueError(
        f"{model_name}: called with num_items_in_batch but without labels, as the Trainer does when it computes the "
        "loss itself from outputs.logits (TrainingArguments(label_smoothing_factor > 0), or a compute_loss_func); "
        f"this CRF head's logits are {crf_logits!r} (config.crf_logits), not per-token class scores, so a softmax "
        "cross-entropy over them is not the CRF's loss. Set label_smoothing_factor=0 and leave compute_loss_func "
        "unset (the model's loss, -log p(tags | x), is then trained), or set use_crf=False for a softmax head that "
        "label smoothing fits"
    )


def check_padded_labels_uncounted(model_name: str, labels: torch.Tensor, mask: torch.Tensor, num_items_in_batch):
    """A ``ValueError`` when a CRF head is given the Trainer's count and a label that is not -100 at a padded position.

    The CRF scores the real tokens of a row only (mask[b, t] = 1): a label at a padded position is in no path, so
    the loss Σ_b -log p(y_b | x_b) never reads it. The Trainer's ``num_items_in_batch`` is c = Σ_{b,t} [labels[b, t]
    != -100] over the accumulated batch, padding included, so a collator that pads labels with a tag (0, "O")
    instead of -100 makes the loss Σ / c biased low, silently (``eval_loss`` below the model's own loss, and a
    gradient-accumulation step that depends on how the micro-batches were padded). Without the count the loss
    divides by the labels it reads, Σ_{b,t} [labels[b, t] != -100] mask[b, t], and the padded labels are ignored.
    ``labels`` (B, L) int64, ``mask`` (B, L) bool on the same device. As every value check
    (``modeling/value_checks.py``): at once on a CPU, read later on a GPU (the call goes on with the loss divided by
    the count given), not while traced.
    """
    if num_items_in_batch is None:
        return
    mode = check_mode(labels)
    if mode == "off":
        return
    padded = (labels != -100) & ~mask  # (B, L) labelled positions the CRF does not read
    first = padded.flatten().to(torch.uint8).argmax(0, keepdim=True)  # (1,) the first one, or 0
    numbers = torch.cat([padded.sum().reshape(1), first, labels.flatten().index_select(0, first)])  # (3,) int64
    width = labels.shape[1]
    settle(mode, numbers, lambda n: None if n[0] == 0 else (
        f"{model_name}: labels hold {n[0]} tag(s) other than -100 at padded positions (attention_mask 0), e.g. "
        f"{n[2]} at batch row {n[1] // width}, position {n[1] % width}; the CRF reads the real tokens only, but "
        "num_items_in_batch (the Trainer's count of labels != -100, padding included) counts them, so the loss "
        "would be divided by too many tokens (biased low, and gradient accumulation would depend on the padding). "
        "Label padded positions -100, as DataCollatorForTokenClassification pads labels (label_pad_token_id=-100)"))


class CrfTokenClassificationHead(nn.Module):
    r"""Tagging with a linear-chain CRF over the real tokens of each sequence.

    Emissions e_t = W dropout(h_t) + b; a path y scores s(y) = start[y_1] + Σ_t e_t[y_t] + Σ_t T[y_{t-1}, y_t] +
    end[y_n]; p(y | x) = exp s(y) / Z. Transitions, starts and ends that the tag scheme forbids (BIO/IOB2,
    IOBES/BIOES, BILOU/BIOUL, read from ``id2label``) are -inf, in training and in decoding.

    * loss: the negative log-likelihood Σ_b -log p(y_b | x_b), divided by ``num_items_in_batch`` (labelled tokens
      over the accumulated batch) or by the labelled tokens here; a -100 label at a real token (a special token,
      a word's later sub-tokens) is marginalised, so the chain runs over every real token. A label at a padded
      position is in no path and not read; with ``num_items_in_batch``, which counts it, it is a ``ValueError``
      (``check_padded_labels_uncounted``): the loss would be divided by tokens it does not score.
      The loss is the model's own: ``num_items_in_batch`` without labels (the Trainer's label smoothing or a
      ``compute_loss_func``, which would put a softmax over the logits below) is a ``ValueError``
      (``check_crf_loss_is_ours``).
    * predictions: the Viterbi path ŷ = argmax_y p(y | x), -100 at padding, whatever ``crf_logits`` says.
    * marginals (when asked): m_t[k] = p(y_t = k | x) = Σ_{y: y_t = k} p(y | x), by forward-backward; Σ_k m_t[k] = 1
      at every real position of a row that has a legal path, 0 at padding (and in a row without one). No gradient.
    * logits, by ``config.crf_logits``:

      - "max_marginals" (default): μ_t[k] = max_{y: y_t = k} s(y), whose argmax is ŷ_t: the transformers
        ``token-classification`` pipeline and any argmax evaluation decode with the Viterbi path, but the pipeline's
        ``score`` = softmax(μ_t)[ŷ_t] is no probability of the model's (a softmax over K competing best paths).
      - "log_marginals": log max(m_t[k], tiny) (tiny = the dtype's smallest normal number, so no -inf: a forbidden
        tag gets ≈ -87 in fp32, and padding an even distribution). softmax(logits_t) = m_t, so the pipeline's
        ``score`` is p(y_t = entity | x), the model's posterior probability of the tag it reports, and its entity is
        argmax_k m_t[k] (posterior decoding): the tag most likely right at that token on its own. That is ŷ_t
        wherever m_t[ŷ_t] > 1/2; it may differ from ŷ_t at a token where the Viterbi tag has probability <= 1/2,
        and a posterior-decoded sequence need not follow the tag scheme (e.g. I-X after O in BIO).

    Shape: hidden (B, L, d), attention_mask (B, L) -> logits (B, L, num_labels).
    """

    def __init__(self, config):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.config = config
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(config.encoder_output_size, config.num_labels)
        self.crf = LinearChainCrf(config.num_labels)
        self._constraints_cache: dict = {}
        check_crf_labels(config)  # a tag scheme that contradicts the labels fails when the model is built
        marginal_options(config)  # so does a bad crf_logits or output_marginals

    def constraint_scores(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """0 / -inf additions to (transitions, start, end) for the config's labels and tag scheme (cached; the labels
        are checked against the scheme by ``check_crf_labels`` whenever either changed since the last call)."""
        from ..kernels.crf.constraints import allowed_transitions, constraint_scores, detect_scheme

        tags = self.crf.transitions.shape[0]
        if self.config.num_labels != tags:  # id2label replaced by one of another size after the head was built
            raise ValueError(
                f"{type(self.config).__name__}: id2label has {self.config.num_labels} labels "
                f"({list(self.config.id2label.values())}) but this CRF head was built for {tags} tags (its classifier "
                f"and transitions are {tags} wide); give id2label {tags} labels, or load the model anew with the new "
                "labels (from_pretrained(path, id2label=..., label2id=..., ignore_mismatched_sizes=True)) to get a "
                "head of their size"
            )
        labels = [self.config.id2label[i] for i in range(tags)]
        scheme = self.config.tag_scheme
        key = (tuple(labels), scheme, str(device))
        if key not in self._constraints_cache:
            check_crf_labels(self.config)
            if scheme == "auto":
                scheme = detect_scheme(labels)
            allowed = allowed_transitions(labels, scheme)
            self._constraints_cache[key] = tuple(constraint_scores(a).to(device) for a in allowed)
        return self._constraints_cache[key]

    def crf_parameters(self, device):
        """(transitions, start, end) in fp32 with the scheme's constraints applied."""
        t_bias, s_bias, e_bias = self.constraint_scores(device)
        transitions, start, end = self.crf()  # (K, K), (K,), (K,)
        return transitions + t_bias, start + s_bias, end + e_bias

    def check_gold_paths(self, model_name, log_likelihood, labels, mask) -> torch.Tensor:
        """``log_likelihood`` (B,) of the gold paths, checked: a row at -inf has labels that break the tag scheme (no
        path the constraints allow agrees with them), which is a ``ValueError``, never an infinite loss. As every
        value check (``modeling/value_checks.py``): raised at once on a CPU; on a GPU read later without a host sync,
        the call going on with those rows left out of the loss (0 instead of -inf: "bad labels ignored"); not
        checked while traced."""
        mode = check_mode(log_likelihood)
        if mode == "off" or log_likelihood.numel() == 0:
            return log_likelihood
        broken = log_likelihood == float("-inf")  # (B,)
        names = [self.config.id2label[i] for i in range(self.config.num_labels)]
        scheme = self.config.tag_scheme
        if mode == "now":
            if bool(broken.any()):
                rows = broken.nonzero().flatten().tolist()
                where = _first_break(labels[rows[0]], mask[rows[0]], names, scheme)
                raise ValueError(_broken_gold_message(model_name, str(rows), names, scheme, where))
            return log_likelihood
        first = broken.to(torch.uint8).argmax(0, keepdim=True)  # (1,) the first broken row, or 0
        numbers = torch.cat([broken.sum(0, keepdim=True), first])  # (2,) int64, read later
        settle(mode, numbers, lambda n: None if n[0] == 0 else _broken_gold_message(
            model_name, f"[{n[1]}{', ...' if n[0] > 1 else ''}]", names, scheme, ""))
        return torch.where(broken, 0.0, log_likelihood)  # the call goes on without the broken rows

    def forward(self, hidden, attention_mask, labels=None, num_items_in_batch=None, model_name="model",
                output_marginals=None):
        """(loss or None, logits (B, L, K) as ``config.crf_logits`` says, Viterbi predictions (B, L) with -100 at
        padding), and the marginals (B, L, K) last when ``output_marginals`` (None: ``config.output_marginals``) is
        true."""
        from ..kernels.crf import crf_log_likelihood, crf_marginals, crf_max_marginals, crf_viterbi

        output_marginals, crf_logits = marginal_options(self.config, output_marginals, model_name)
        check_crf_loss_is_ours(model_name, labels, num_items_in_batch, crf_logits)
        emissions = self.classifier(self.dropout(hidden)).float()  # (B, L, K)
        mask = attention_mask.bool()
        transitions, start, end = self.crf_parameters(emissions.device)
        backend = getattr(self.config, "kernel_backend", "auto")
        marginals = None
        if output_marginals or crf_logits == "log_marginals":
            with torch.no_grad():  # confidences: no gradient (nor the memory of one), as the decoders
                marginals = crf_marginals(emissions, mask, transitions, start, end, backend=backend)  # (B, L, K)
        if crf_logits == "log_marginals":
            logits = torch.log(marginals.clamp_min(torch.finfo(marginals.dtype).tiny))  # (B, L, K), finite
            predictions, _ = crf_viterbi(emissions, mask, transitions, start, end, backend=backend)  # (B, L)
        else:
            logits = crf_max_marginals(emissions, mask, transitions, start, end, backend=backend)  # (B, L, K)
            predictions = logits.argmax(-1).masked_fill(~mask, -100)  # the Viterbi path (ties broken towards it)
        loss = None
        if labels is not None:
            labels = labels.to(emissions.device)  # checked by check_task_labels before the encoder ran
            check_padded_labels_uncounted(model_name, labels, mask, num_items_in_batch)
            log_likelihood = crf_log_likelihood(emissions, mask, transitions, start, end, labels, backend=backend)
            log_likelihood = self.check_gold_paths(model_name, log_likelihood, labels, mask)
            loss = normalised_sum(-log_likelihood.sum(), ((labels != -100) & mask).sum(), num_items_in_batch)
        if not output_marginals:
            return loss, logits, predictions
        return loss, logits, predictions, marginals


def _scheme_name(names, scheme) -> str:
    """The tag scheme a CRF head applies, as an error message names it: "'BIO'", or "'BIO' (tag_scheme='auto')"."""
    from ..kernels.crf.constraints import detect_scheme

    family = SCHEME_FAMILIES.get(scheme, scheme)
    if scheme == "auto":
        return f"{detect_scheme(names)!r} (tag_scheme='auto', read from id2label)"
    return repr(family) if family == scheme else f"{family!r} (tag_scheme={scheme!r})"


def _broken_gold_message(model_name, rows, names, scheme, where) -> str:
    return (
        f"{model_name}: the labels of batch rows {rows} break the tag scheme {_scheme_name(names, scheme)}"
        f"{where or ' (e.g. I-X after O in BIO)'}, so the CRF gives them probability 0; fix the labels, or set "
        "tag_scheme='none' (IOB1 data, for one, is not BIO)"
    )


def _first_break(tags, keep, names, scheme) -> str:
    """Where one row's labels (L,) first break the scheme, read on the host: ", e.g. 'O' (position 2) followed by
    'I-PER' (position 3)" for the first banned step between two labelled real positions in a row, a banned first or
    last tag, or "" when only the unknown (-100) tags between the known ones leave no legal path."""
    from ..kernels.crf.constraints import allowed_transitions

    allowed, allowed_start, allowed_end = allowed_transitions(names, scheme)
    positions = keep.bool().nonzero().flatten().tolist()
    values = tags.tolist()
    known = [(t, values[t]) for t in positions]
    if known and known[0][1] != -100 and not allowed_start[known[0][1]]:
        return f", e.g. {names[known[0][1]]!r} at the first real position ({known[0][0]})"
    for (p, a), (q, b) in zip(known[:-1], known[1:]):
        if a != -100 and b != -100 and not allowed[a, b]:
            return f", e.g. {names[a]!r} (position {p}) followed by {names[b]!r} (position {q})"
    if known and known[-1][1] != -100 and not allowed_end[known[-1][1]]:
        return f", e.g. {names[known[-1][1]]!r} at the last real position ({known[-1][0]})"
    return ""


def input_shape(input_ids=None, inputs_embeds=None, char_ids=None) -> tuple[int, int] | None:
    """(batch, length) of a model's input, read from the first of ``input_ids`` (B, L), ``inputs_embeds`` (B, L, d)
    and ``char_ids`` (B, L, C) that has that form; None when none has (the encoder then reports the bad input)."""
    for tensor, dims in ((input_ids, 2), (inputs_embeds, 3), (char_ids, 3)):
        if isinstance(tensor, torch.Tensor) and tensor.dim() == dims:
            return tuple(tensor.shape[:2])
    return None


def check_task_labels(model, task: str, labels, input_ids=None, inputs_embeds=None, char_ids=None):
    """Check a task model's ``labels`` against its input's shape and its label set BEFORE the encoder runs, so that
    a bad label costs no forward pass and never reaches a device kernel; returns the labels the model is to use
    (``check_labels``: where the check is read later, bad class ids are ignored meanwhile). ``task``:

    * "masked_lm": (batch, length) token ids in [0, vocab_size) or -100;
    * "bilm": (batch, length) word ids in [0, vocab_size) or -100 (ELMo's forward and backward LM);
    * "token": (batch, length) tag ids in [0, num_labels) or -100 (and a CRF head's tag scheme must still fit
      id2label, labels or not);
    * "sequence": by ``problem_type``, see ``check_sequence_labels``.
    """
    if task not in ("masked_lm", "bilm", "token", "sequence"):
        raise ValueError(f"check_task_labels: task must be 'masked_lm', 'bilm', 'token' or 'sequence', got {task!r}")
    head = getattr(model, "classifier", None)
    if task == "token" and isinstance(head, CrfTokenClassificationHead):
        head.constraint_scores(head.crf.transitions.device)  # checks the tag scheme if it or id2label changed
    if labels is None:
        return None
    shape = input_shape(input_ids, inputs_embeds, char_ids)
    if shape is None:
        return labels  # a malformed input: the encoder's own checks name it
    name, config = type(model).__name__, model.config
    batch, length = shape
    if task == "sequence":
        return check_sequence_labels(name, labels, config, batch)
    size, what = {
        "masked_lm": (config.vocab_size, "one token id per position"),
        "bilm": (config.vocab_size, "one word id per position"),
        "token": (config.num_labels, "one tag id per position"),
    }[task]
    return check_labels(name, labels, (batch, length), size, what)


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
    """The (B, L) 0/1 long mask the heads read, on ``hidden``'s device; every position real when there is none. Any
    nonzero value counts as 1, as in the encoders (``check_attention_mask``: while a GPU input's check is read later,
    a mask value other than 0/1 still reaches here)."""
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    return (attention_mask != 0).to(device=hidden.device, dtype=torch.long)


def _attentions(encoder_output):
    """The encoder's attention weights, for the head's output (LION's with ``output_attentions=True``; None for
    the encoders that form none)."""
    return getattr(encoder_output, "attentions", None)


def _as_requested(model, result, return_dict):
    return result if (model.config.return_dict if return_dict is None else return_dict) else result.to_tuple()


def masked_lm_output(model, hidden, encoder_output, labels, num_items_in_batch, return_dict):
    """``model.lm_head`` over ``hidden`` (B, L, d): `MaskedLMOutput` (or a tuple), the loss as
    ``masked_lm_loss_and_logits``."""
    loss, logits = masked_lm_loss_and_logits(
        model.lm_head, hidden, labels, model.config, num_items_in_batch, type(model).__name__
    )
    result = MaskedLMOutput(
        loss=loss, logits=logits, hidden_states=encoder_output.hidden_states, attentions=_attentions(encoder_output)
    )
    return _as_requested(model, result, return_dict)


def sequence_classification_output(model, hidden, mask, encoder_output, labels, num_items_in_batch, return_dict):
    """``model.classifier`` (a `SequenceClassificationHead`) over ``hidden`` (B, L, d) with ``mask`` (B, L)."""
    logits = model.classifier(hidden, mask)  # (B, num_labels)
    loss = None
    if labels is not None:
        loss = sequence_classification_loss(logits, labels, model.config, num_items_in_batch, type(model).__name__)
    result = SequenceClassifierOutput(
        loss=loss, logits=logits, hidden_states=encoder_output.hidden_states, attentions=_attentions(encoder_output)
    )
    return _as_requested(model, result, return_dict)


def token_classification_output(
    model, hidden, mask, encoder_output, labels, num_items_in_batch, return_dict, output_marginals=None
):
    """``model.classifier`` (softmax or CRF, ``token_classification_head``) over ``hidden`` (B, L, d); `marginals`
    (B, L, K) in the output when ``output_marginals`` is true (None: ``model.config.output_marginals``, if set)."""
    name = type(model).__name__
    loss, logits, predictions, *marginals = model.classifier(
        hidden, mask, labels, num_items_in_batch, name, output_marginals=output_marginals
    )
    result = TokenClassifierOutputWithPath(
        loss=loss,
        logits=logits,
        hidden_states=encoder_output.hidden_states,
        attentions=_attentions(encoder_output),
        predictions=predictions,
        marginals=marginals[0] if marginals else None,
    )
    return _as_requested(model, result, return_dict)
