r"""ELMo: a character CNN, a forward and a backward stack of projected LSTMs, and a scalar mix of their layers.

Peters et al. 2018, "Deep contextualized word representations" (bilm-tf, allenai). One file, the whole model:

    x_t      = CharEncoder(characters of word t)                        the token layer, (B, L, P)
    →h_t^1.. = LSTMP stack over x_1 .. x_n  (forward)                   each (B, L, P)
    ←h_t^1.. = LSTMP stack over x_n .. x_1  (backward, its own weights)
    layer j  = [→h^j | ←h^j]  (layer 0: [x | x]),                       (B, L, 2P)
    ELMo_t   = γ Σ_j softmax(s)_j · layer_j(t)                          the scalar mix, (B, L, 2P)

The native objective (``ElmoForBidirectionalLM``): the forward top state at t predicts word t+1, the backward top
state at t predicts word t-1, through one softmax shared by both directions. The task heads (masked LM, sequence and
token classification) read the scalar mix. A head holds only what its loss reads, so that every parameter gets a
gradient (as DDP requires): the word table (the LM softmax) only in the LM heads (tied to their decoder) and the bare
``ElmoModel``, no scalar mix in the biLM, the one mix it reads in a task head. Every direction reads the real tokens
of its row only, whatever the padding, so the outputs do not depend on padding or batch-mates: each layer's two
LSTMPs run as one call of the bidirectional LSTM op ``bizoo.kernels.lstm.bilstm``, on the schedule
``config.kernel_backend`` picks.

Inputs are ``char_ids`` (B, L, C) from ``WordCharTokenizerFast(char_scheme="bilm", add_sentence_boundaries=True)``:
bilm-tf's byte ids, +1, with ``<S>`` and ``</S>`` around each sentence. ``input_ids`` are the words' ids in the
softmax vocabulary: labels for the LM, never part of the representation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput
from transformers.utils import ModelOutput

from ..configuration.common import BILM_PAD_CHAR_ID
from ..configuration.configuration_elmo import ElmoConfig
from ..kernels.lstm import bilstm, reading_orders
from .common import (
    DamagedCheckpointErrors,
    Dropout,
    StrictFp32Modules,
    check_attention_mask,
    check_char_ids,
    check_embeds_values,
    check_id_dtype,
    check_ids_in_range,
    check_kwargs,
    check_token_type_ids_shape,
    encode_real_words,
    word_char_dummy_inputs,
)
from .heads import (
    MaskedLMHead,
    SequenceClassificationHead,
    TokenClassifierOutputWithPath,
    normalised_sum,
    check_task_labels,
    init_head_weights,
    masked_lm_output,
    real_mask,
    sequence_classification_output,
    token_classification_output,
    token_classification_head,
)
from .char_encoders import CharCnnEncoder
from .lstm_layers import BiLstmWeights
from .value_checks import check_mode, settle

#: The tagger's own character CNN (config.tagger_char_cnn_filters > 0): Ma & Hovy's 30-d character embeddings and
#: convolutions of width 3 (their 30 filters is the value the NER recipe gives tagger_char_cnn_filters).
TAGGER_CHAR_EMBEDDING_SIZE = 30
TAGGER_CHAR_CNN_WIDTH = 3

# ----------------------------------------------------------------------------------------------------------------
# The character encoder
# ----------------------------------------------------------------------------------------------------------------


class ElmoHighway(nn.Module):
    r"""One highway layer as bilm-tf's: y = g ⊙ relu(W_t x + b_t) + (1 − g) ⊙ x, with g = σ(W_g x + b_g).

    ``gate`` holds bilm-tf's W_carry / b_carry (b_g starts at -2: the layer begins by passing x through),
    ``transform`` its W_transform / b_transform. Shape: (..., d) -> (..., d).
    """

    def __init__(self, size: int):
        super().__init__()
        self.gate = nn.Linear(size, size)
        self.transform = nn.Linear(size, size)
        self.gate.bilm_init = "highway_gate"
        self.transform.bilm_init = "fan_in"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(x))
        return gate * F.relu(self.transform(x)) + (1.0 - gate) * x


class ElmoCharacterEncoder(nn.Module):
    r"""The context-free token vector of a word from its characters (Kim et al. 2016, as bilm-tf):

        e_j   = E[c_j]                                       j = 1 .. C, E[0] = 0 (a padded word)
        f_k   = act(max_τ (W_k ⋆ e)_τ + b_k)                 one convolution of width w_k per filter group,
                                                             "valid" over the whole row, max over its windows
        h     = Highway^{n_highway}([f_1 ; ... ; f_K])       F = Σ_k count_k features
        x     = W_p h + b_p                                  to projection_size (none when F equals it)

    Shape: char_ids (N, C) -> (N, projection_size), C >= the widest filter.
    """

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.char_embeddings = nn.Embedding(config.char_vocab_size, config.char_embedding_size, padding_idx=0)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(config.char_embedding_size, count, width) for width, count in config.char_filters
        )
        self.activation = config.char_activation
        self.highways = nn.ModuleList(ElmoHighway(config.num_filters) for _ in range(config.n_highway))
        self.projection = (
            nn.Linear(config.num_filters, config.projection_size)
            if config.num_filters != config.projection_size
            else None
        )
        # bilm-tf's initialisation of each part, which ElmoPreTrainedModel._init_weights reads
        self.char_embeddings.bilm_init = "char_embedding"
        for conv in self.convolutions:
            conv.bilm_init = f"conv_{config.char_activation}"
        if self.projection is not None:
            self.projection.bilm_init = "fan_in"

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        act = torch.relu if self.activation == "relu" else torch.tanh
        chars = self.char_embeddings(char_ids).transpose(1, 2)  # (N, E, C)
        features = [act(conv(chars).amax(dim=-1)) for conv in self.convolutions]  # K × (N, count_k)
        h = torch.cat(features, dim=-1)  # (N, F)
        for highway in self.highways:
            h = highway(h)
        return h if self.projection is None else self.projection(h)  # (N, P)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


# ----------------------------------------------------------------------------------------------------------------
# The LSTM with a projection (LSTMP)
# ----------------------------------------------------------------------------------------------------------------


class ElmoLstmCell(nn.Module):
    r"""The parameters of one direction of one layer: TensorFlow's ``LSTMCell(num_units=H, num_proj=P, cell_clip,
    proj_clip, forget_bias)``, which bilm-tf's weights are for. At each step:

        [i; j; f; o] = W_ih x_t + W_hh h_{t-1} + b         TensorFlow's gate order i, j, f, o
        c_t = clip(σ(f + forget_bias) ⊙ c_{t-1} + σ(i) ⊙ tanh(j), ±cell_clip)
        m_t = σ(o) ⊙ tanh(c_t)
        h_t = clip(W_p m_t, ±proj_clip)                     (h_t = m_t and no clip when P = H: no projection)

    This is the recurrence of the ``bilstm`` op (``bizoo.kernels.lstm.reference``, torch's gate order i, f, g, o)
    with the gate rows reordered (g = j) and the forget bias folded into b_f: ``torch_gates`` gives those parameters,
    ``forward()`` them and the projection (read in the forward of the module that owns them, so that hooks that
    bring a module's weights in for its forward, as accelerate's CPU and disk offloading, serve them), and
    ``ElmoBiLstmLayer`` runs both directions of a layer as one call of the op.

    Parameters: weight_ih (4H, I), weight_hh (4H, P), bias (4H) in the gate order i, j, f, o; weight_proj (P, H),
    absent when P = H.
    """

    def __init__(self, input_size: int, config: ElmoConfig):
        super().__init__()
        H, P = config.lstm_size, config.projection_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, P))
        self.bias = nn.Parameter(torch.empty(4 * H))
        self.weight_proj = nn.Parameter(torch.empty(P, H)) if P < H else None
        self.forget_bias = float(config.forget_bias)

    def torch_gates(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weight_ih (4H, I), weight_hh (4H, P), bias (4H,)) with the gate rows in torch's order i, f, g, o and the
        forget bias added to b_f."""

        def reorder(i, j, f, o):  # TensorFlow's gate order -> torch's
            return torch.cat([i, f, j, o])

        i, j, f, o = self.bias.chunk(4)
        bias = reorder(i, j, f + self.forget_bias, o)  # (4H,)
        return reorder(*self.weight_ih.chunk(4)), reorder(*self.weight_hh.chunk(4)), bias

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``torch_gates()`` and weight_proj (P, H) or None: what the ``bilstm`` op runs this cell with."""
        return (*self.torch_gates(), self.weight_proj)

    def extra_repr(self) -> str:
        four_h, inputs = self.weight_ih.shape
        projection = self.weight_hh.shape[1] if self.weight_proj is not None else None
        return f"input_size={inputs}, cells={four_h // 4}, projection={projection}, forget_bias={self.forget_bias}"


class ElmoBiLstmLayer(GradientCheckpointingLayer):
    r"""Layer j of both stacks: the forward cell over each row's real tokens in order, the backward cell (its own
    weights) over them in reverse order, both as one call of the ``bilstm`` op (on ``config.kernel_backend``); with
    skip connections (j > 0) each adds its input:

        →h^j = LSTMP_fwd(→h^{j-1}) [+ →h^{j-1}],   ←h^j = LSTMP_bwd(←h^{j-1}) [+ ←h^{j-1}]

    with ``ElmoLstmCell``'s equations, cell_clip and proj_clip from the config. In training, dropout applies to each
    direction's input (bilm-tf's input dropout), unless ``input_dropout`` is False (the tagger's frozen biLM, which
    gives the features bilm-tf's and AllenNLP's inference graphs give). The input is zero at padding, and so is the
    output.

    Shape: hidden (B, L, 2P) = [forward | backward], mask (B, L), initial_state (h (2, B, P), c (2, B, H)) per
    direction or None (zeros) -> ((B, L, 2P), with ``final_state`` the final state in the same layout, else None:
    the forward state after the last real token, the backward one after the first).
    """

    def __init__(self, config: ElmoConfig, index: int):
        super().__init__()
        self.config = config
        self.forward_cell = ElmoLstmCell(config.projection_size, config)
        self.backward_cell = ElmoLstmCell(config.projection_size, config)
        self.skip_connection = bool(config.use_skip_connections and index > 0)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, mask, initial_state=None, final_state: bool = False, input_dropout: bool = True):
        B, L, _ = hidden.shape
        config = self.config
        forward_weights, backward_weights = self.forward_cell(), self.backward_cell()
        weight_ih, weight_hh, bias = (
            torch.stack(pair) for pair in zip(forward_weights[:3], backward_weights[:3])
        )  # (2, 4H, P), (2, 4H, P), (2, 4H): direction 0 forward, 1 backward
        weight_proj = None if forward_weights[3] is None else torch.stack([forward_weights[3], backward_weights[3]])
        x = hidden.reshape(B, L, 2, -1)  # (B, L, 2, P): each direction's input
        if input_dropout:
            x = self.dropout(x)
        # (while torch.export traces, the op runs every schedule as one scan: kernels/lstm)
        y, final = bilstm(
            x,
            weight_ih,
            weight_hh,
            bias,
            weight_proj,  # (2, P, H) or None
            attention_mask=mask,
            initial_state=initial_state,
            cell_clip=config.cell_clip,
            proj_clip=config.proj_clip if weight_proj is not None else None,
            final_state=final_state,
            backend=config.kernel_backend,
        )  # (B, L, 2, P), zeros at padding
        if self.skip_connection:  # x is zero at padding too: layer 0's input is, and so is every layer's output
            y = y + x
        return y.reshape(B, L, -1), final  # (B, L, 2P)

    def extra_repr(self) -> str:
        config = self.config
        return f"skip_connection={self.skip_connection}, cell_clip={config.cell_clip}, proj_clip={config.proj_clip}"


class ElmoScalarMix(nn.Module):
    r"""ELMo_t = γ Σ_j softmax(s)_j · N(layer_j(t)), N = identity or, with ``layer_norm``, each token's vector
    normalised over its features (mean 0, variance 1; real tokens only). s starts at 0 (the mean of the layers),
    γ at 1.

    (AllenNLP's ``ScalarMix(do_layer_norm=True)`` normalises with statistics over all real tokens of the batch,
    which makes a sentence's vector depend on its batch-mates; this normalisation is per token.)

    Shape: layers: J × (B, L, D), mask (B, L) -> (B, L, D), zeros at padding.
    """

    def __init__(self, num_layers: int, layer_norm: bool = False, eps: float = 1e-12):
        super().__init__()
        self.scalar_weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(1))
        self.layer_norm = layer_norm
        self.eps = eps

    def forward(self, layers, mask: torch.Tensor) -> torch.Tensor:
        if len(layers) != self.scalar_weights.shape[0]:
            raise ValueError(f"ElmoScalarMix: {len(layers)} layers given, the mix has {self.scalar_weights.shape[0]}")
        weights = torch.softmax(self.scalar_weights.float(), dim=0)  # (J,)
        mixed = None
        for weight, layer in zip(weights, layers):
            if self.layer_norm:
                # in fp32: eps (1e-12) is 0 in fp16, where a padded token's zero vector would give 0 · rsqrt(0) = NaN
                # (the output there, and every gradient through the mix)
                x = layer.float()
                mean = x.mean(dim=-1, keepdim=True)
                var = x.var(dim=-1, unbiased=False, keepdim=True)
                layer = ((x - mean) * torch.rsqrt(var + self.eps)).to(layer.dtype)
            term = weight.to(layer.dtype) * layer
            mixed = term if mixed is None else mixed + term
        return self.gamma.to(mixed.dtype) * mixed * mask[..., None].to(mixed.dtype)

    def extra_repr(self) -> str:
        return f"num_layers={self.scalar_weights.shape[0]}, layer_norm={self.layer_norm}"


# ----------------------------------------------------------------------------------------------------------------
# Sampled softmax (bilm-tf's training loss: tf.nn.sampled_softmax_loss with the log-uniform sampler)
# ----------------------------------------------------------------------------------------------------------------


def log_uniform_probabilities(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    r"""P(k) = log((k + 2) / (k + 1)) / log(V + 1): Zipf's law over ids sorted by frequency (fp64)."""
    return torch.log1p(1.0 / (ids.double() + 1.0)) / math.log(vocab_size + 1)


def draw_log_uniform(n: int, vocab_size: int, device=None, generator=None) -> torch.Tensor:
    r"""``n`` independent draws k = ⌊(V + 1)^u⌋ − 1, u ~ U[0, 1): each id k with probability
    ``log_uniform_probabilities(k)``. Shape: (n,) long."""
    u = torch.rand(n, dtype=torch.float64, device=device, generator=generator)
    return (torch.exp(u * math.log(vocab_size + 1)).floor().long() - 1).clamp_(0, vocab_size - 1)


def sample_log_uniform(num_sampled: int, vocab_size: int, device=None, generator=None) -> tuple[torch.Tensor, int]:
    r"""``num_sampled`` distinct ids drawn from the log-uniform distribution: ids are drawn with replacement until
    ``num_sampled`` different ones have appeared (TensorFlow's ``unique=True`` sampler). Returns the ids in the
    order they first appeared, (S,), and the number of draws it took.

    The draws are ``draw_log_uniform``'s.
    """
    if isinstance(num_sampled, bool) or not isinstance(num_sampled, int) or not 0 < num_sampled <= vocab_size:
        raise ValueError(
            f"sample_log_uniform: num_sampled must be an int in [1, vocab_size={vocab_size}], got {num_sampled!r}"
        )
    draws = torch.empty(0, dtype=torch.long, device=device)
    chunk = max(2 * num_sampled, 64)
    while True:
        draws = torch.cat([draws, draw_log_uniform(chunk, vocab_size, device, generator)])
        distinct, inverse = torch.unique(draws, return_inverse=True)
        if distinct.numel() >= num_sampled:
            break
        chunk *= 2
    positions = torch.arange(draws.numel(), device=draws.device)
    first = torch.full_like(distinct, draws.numel()).scatter_reduce(0, inverse, positions, "amin")  # first draw of each
    firsts = first.sort().values[:num_sampled]
    return draws[firsts], int(firsts[-1].item()) + 1


def log_uniform_expected_count(ids: torch.Tensor, num_tries: int, vocab_size: int) -> torch.Tensor:
    r"""How often ``ids`` are expected among the candidates after ``num_tries`` draws: 1 − (1 − P(k))^tries, the
    Q(k) that the sampled logits subtract as log Q(k) (fp64)."""
    p = log_uniform_probabilities(ids, vocab_size)
    return -torch.expm1(num_tries * torch.log1p(-p))


def sampled_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    num_sampled: int,
    generator=None,
) -> torch.Tensor:
    r"""Per-example sampled-softmax cross-entropy (Jean et al. 2015; ``tf.nn.sampled_softmax_loss``):

        z_y = w_y·h + b_y − log Q(y),   z_s = w_s·h + b_s − log Q(s) for the S shared candidates s,
        loss = logsumexp([z_y, z_s ...]) − z_y,   a candidate equal to the target ("accidental hit") removed.

    Candidates come from ``sample_log_uniform``; Q from ``log_uniform_expected_count``. When S covers the vocabulary
    (S >= V) the sample is every word with certainty and this is exactly the full softmax cross-entropy.

    Shape: hidden (N, P), targets (N,), weight (V, P), bias (V,) -> (N,) fp32.
    """
    vocab_size = weight.shape[0]
    if num_sampled >= vocab_size:
        return F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="none")
    candidates, tries = sample_log_uniform(num_sampled, vocab_size, hidden.device, generator)
    log_q_true = log_uniform_expected_count(targets, tries, vocab_size).log().float()  # (N,)
    log_q_sampled = log_uniform_expected_count(candidates, tries, vocab_size).log().float()  # (S,)
    true_logits = (hidden * weight[targets]).sum(-1).float() - log_q_true  # (N,)
    sampled_logits = (hidden @ weight[candidates].T).float() - log_q_sampled  # (N, S)
    if bias is not None:
        true_logits = true_logits + bias[targets].float()
        sampled_logits = sampled_logits + bias[candidates].float()
    sampled_logits = sampled_logits.masked_fill(candidates[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([true_logits[:, None], sampled_logits], dim=1)  # (N, 1 + S)
    return torch.logsumexp(logits, dim=1) - true_logits


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ElmoModelOutput(BaseModelOutput):
    """`BaseModelOutput` of `ElmoModel`, plus the scalar mixes.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, length, 2 × projection_size)`): the first scalar
            mix of all the layers (ELMo's word representations; `elmo_representations[0]`), or `top_layer` in an
            encoder built without mixes (the biLM's).
        hidden_states (`tuple(torch.FloatTensor)`, with `output_hidden_states`): the token layer [x | x], then each
            LSTM layer, num_hidden_layers + 1 tensors of the same shape.
        elmo_representations (`tuple(torch.FloatTensor)`, with `output_elmo_representations`): one scalar mix of
            all the layers per mix the encoder has (`num_output_representations`; one in a task head, none in the
            biLM), each `(batch, length, 2 × projection_size)`: ELMo's word representations. Only on request, as
            `hidden_states`: a tuple that is not batch-first is split wrongly by transformers' pipelines, which
            batch every other field by its first dimension.
        top_layer (`torch.FloatTensor` of shape `(batch, length, 2 × projection_size)`): the top LSTM layer
            [forward | backward], zeros at padding (what the biLM's softmax reads; `hidden_states[-1]`).
        final_states (`tuple(torch.FloatTensor)`, with `output_final_states`): the LSTMs' states at the end of each
            row, (h (num_hidden_layers, 2, batch, projection_size), c (num_hidden_layers, 2, batch, lstm_size)),
            direction 0 forward (after the last real token), 1 backward (after the first): the `initial_states` of
            the batch that continues these rows.
    """

    elmo_representations: tuple[torch.FloatTensor, ...] | None = None
    final_states: tuple[torch.FloatTensor, torch.FloatTensor] | None = None
    top_layer: torch.FloatTensor | None = None


@dataclass
class ElmoBidirectionalLMOutput(ModelOutput):
    """Output of `ElmoForBidirectionalLM`.

    Args:
        loss (`torch.FloatTensor`, with labels): ½ (forward_loss + backward_loss), or, with `num_items_in_batch`,
            the sum of both directions' cross-entropies over 2 × num_items_in_batch (the Trainer's count of the words a
            direction predicts, labels[..., 1:] != -100 as for a causal LM: `model.loss_type`).
        forward_loss, backward_loss (`torch.FloatTensor`, with labels): each direction's mean cross-entropy over the
            words it predicts (the sampled-softmax loss in training with `sampled_softmax_size` > 0).
        forward_perplexity, backward_perplexity (`torch.FloatTensor`, with labels): exp of each direction's loss.
        forward_logits, backward_logits (`torch.FloatTensor`): next-word (forward) and previous-word (backward)
            scores over the vocabulary: `(batch, length, vocab_size)` without labels or with
            `sparse_prediction=False`, `(predicted words, vocab_size)` with labels, None in sampled training.
        hidden_states (`tuple(torch.FloatTensor)`, with `output_hidden_states`), final_states (with
            `output_final_states`): as `ElmoModel`'s (bilm-tf trains statefully: each batch continues the rows of the
            previous one when its `final_states` are passed as `initial_states`).
    """

    loss: torch.FloatTensor | None = None
    forward_loss: torch.FloatTensor | None = None
    backward_loss: torch.FloatTensor | None = None
    forward_perplexity: torch.FloatTensor | None = None
    backward_perplexity: torch.FloatTensor | None = None
    forward_logits: torch.FloatTensor | None = None
    backward_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    final_states: tuple[torch.FloatTensor, torch.FloatTensor] | None = None


class ElmoPreTrainedModel(DamagedCheckpointErrors, StrictFp32Modules, PreTrainedModel):
    config_class = ElmoConfig
    config: ElmoConfig
    base_model_prefix = "elmo"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ElmoBiLstmLayer"]
    # fp32 in fp16 and bf16 (common.StrictFp32Modules); listed by a model only when its config builds a CRF head
    _keep_in_fp32_modules_strict = ["crf"]

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """transformers' dummy ``input_ids`` (3, 5) and the ``char_ids`` (3, 5, max_characters_per_token) ELMo
        encodes (``common.word_char_dummy_inputs``: the padded words, id 0, have no characters, so the mask read from
        the characters is the ids' own)."""
        return word_char_dummy_inputs(super().dummy_inputs["input_ids"], self.config.max_characters_per_token,
                                      self.config.char_vocab_size)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding | None:
        """transformers' resize where the model has a word table. A classifier built without one (it reads
        characters only; `get_input_embeddings()` is None) has no table to resize: the vocabulary its `input_ids`
        are checked against becomes `new_num_tokens` (rounded up to a multiple of `pad_to_multiple_of`), and None
        is returned, so `tokenizer.add_tokens(...)` then `model.resize_token_embeddings(len(tokenizer))` works for
        every ELMo model."""
        if self.get_input_embeddings() is not None:
            return super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        size = self.config.vocab_size if new_num_tokens is None else new_num_tokens
        for name, value in (("new_num_tokens", size), ("pad_to_multiple_of", pad_to_multiple_of or 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}.resize_token_embeddings: {name} must be an int >= 1, "
                                 f"got {value!r}")
        multiple = pad_to_multiple_of or 1
        self.config.vocab_size = -(-size // multiple) * multiple
        return None

    def enable_input_require_grads(self) -> None:
        """transformers' hook that makes what the layers read require a gradient, so that a layer checkpointed with
        ``use_reentrant=True`` (what ``gradient_checkpointing_enable`` and PEFT call this for) passes gradients to
        its trainable parameters while everything below it is frozen. transformers hooks the output of
        `get_input_embeddings()`, which for ELMo is the LM softmax table (absent from the task heads), not what the
        LSTM layers read: the hook goes on the character encoder's output, and on the word table where there is
        one (a tagger with `tagger_word_features` reads it). `disable_input_require_grads` removes both."""

        def require_grads(module, inputs, output):
            output.requires_grad_(True)

        modules = [m for m in self.modules() if isinstance(m, ElmoCharacterEncoder)]
        words = self.get_input_embeddings()
        modules += [] if words is None else [words]
        self._require_grads_hooks = [module.register_forward_hook(require_grads) for module in modules]
        self._require_grads_hook = self._require_grads_hooks[0]  # the name older transformers releases remove

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """bilm-tf's initialisation for the encoder (transformers' defaults first, then overridden per module):
        character embeddings ~ U(-1, 1) (row 0, the padded word, is 0); convolutions ~ U(±0.05) with relu or
        N(0, 1/(width·E)) with tanh, zero biases; highway and projection weights ~ N(0, 1/fan_in), the highway gate's
        bias -2; LSTM weights Xavier-uniform, zero biases (the forget bias is added at run time); the scalar mix
        s = 0, γ = 1."""
        super()._init_weights(module)
        init_head_weights(module, self.config)
        kind = getattr(module, "bilm_init", None)  # set by the character encoder's parts
        if kind == "char_embedding":
            init.uniform_(module.weight, -1.0, 1.0)
            if not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[0])
        elif kind in ("conv_relu", "conv_tanh"):
            if kind == "conv_relu":
                init.uniform_(module.weight, -0.05, 0.05)
            else:
                _, embedding_size, width = module.weight.shape
                init.normal_(module.weight, 0.0, (1.0 / (width * embedding_size)) ** 0.5)
            init.zeros_(module.bias)
        elif kind in ("fan_in", "highway_gate"):
            init.normal_(module.weight, 0.0, module.in_features**-0.5)
            init.constant_(module.bias, -2.0 if kind == "highway_gate" else 0.0)
        elif isinstance(module, ElmoLstmCell):
            init.xavier_uniform_(module.weight_ih)
            init.xavier_uniform_(module.weight_hh)
            init.zeros_(module.bias)
            if module.weight_proj is not None:
                init.xavier_uniform_(module.weight_proj)
        elif isinstance(module, ElmoScalarMix):
            init.zeros_(module.scalar_weights)
            init.ones_(module.gamma)
        elif isinstance(module, BiLstmWeights):  # the tagger's BiLSTM: forget-gate bias 1 (PyTorch order i, f, g, o)
            module.init_as_tagger()
        elif isinstance(module, nn.Conv1d):  # the tagger's character CNN (the biLM's convolutions are marked above)
            init.kaiming_uniform_(module.weight, a=5**0.5)


class ElmoModel(ElmoPreTrainedModel):
    r"""The ELMo biLM encoder: character encoder → `num_hidden_layers` bidirectional LSTMP layers → scalar mixes.

    `forward(char_ids, attention_mask)` returns `ElmoModelOutput`: `last_hidden_state` the first scalar mix
    (B, L, 2P), `top_layer` the top LSTM layer as [forward | backward]; `hidden_states` (with `output_hidden_states`)
    the token layer [x | x] and every LSTM layer; `elmo_representations` (with `output_elmo_representations`) the
    `num_output_representations` scalar mixes of those layers (ELMo's word vectors; the task models read the first,
    `last_hidden_state`). Without `attention_mask` the real tokens are those with any non-zero character id, as in
    bilm-tf.

    `word_embeddings` (vocab_size × P) is the LM softmax table, which the heads' decoders are tied to; the encoder
    reads characters only, so `input_ids` and `inputs_embeds` are accepted (their shapes are checked) but do not
    enter the representation.

    Args:
        add_word_embeddings (`bool`, defaults to `True`): build `word_embeddings`. The task models whose loss does
            not read the LM softmax (sequence and token classification) build their encoder without it; theirs then
            has no input embeddings (`get_input_embeddings()` is None), and the table of a checkpoint that holds one
            is ignored on load.
        num_scalar_mixes (`int`, *optional*): the scalar mixes to build; `config.num_output_representations` when
            None. The biLM, which reads the top layer, builds none (`last_hidden_state` is then `top_layer`); a task
            head builds the one it reads. A checkpoint's mixes beyond these are ignored on load.
    """

    def __init__(self, config: ElmoConfig, add_word_embeddings: bool = True, num_scalar_mixes: int | None = None):
        config.check()
        super().__init__(config)
        mixes = config.num_output_representations if num_scalar_mixes is None else num_scalar_mixes
        if isinstance(mixes, bool) or not isinstance(mixes, int) or not 0 <= mixes <= config.num_output_representations:
            raise ValueError(
                f"ElmoModel: num_scalar_mixes must be None or an int in [0, num_output_representations="
                f"{config.num_output_representations}], got {num_scalar_mixes!r}"
            )
        self.word_embeddings = nn.Embedding(config.vocab_size, config.projection_size) if add_word_embeddings else None
        self.char_encoder = ElmoCharacterEncoder(config)
        self.layers = nn.ModuleList(ElmoBiLstmLayer(config, index) for index in range(config.num_hidden_layers))
        self.scalar_mixes = nn.ModuleList(
            ElmoScalarMix(config.num_hidden_layers + 1, config.mix_layer_norm, config.layer_norm_eps)
            for _ in range(mixes)
        )
        # What an encoder built without some of its parts ignores in a checkpoint that has them (one saved before
        # the task heads dropped them, or a bare ElmoModel loaded into a head); searched in the keys, which carry
        # the "elmo." prefix or not.
        unused = [] if add_word_embeddings else [r"(^|\.)word_embeddings\.weight$"]
        unused += [rf"(^|\.)scalar_mixes\.{index}\." for index in range(mixes, config.num_output_representations)]
        self._keys_to_ignore_on_load_unexpected = unused
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding | None:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = value

    def scalar_mix(self, hidden_states, attention_mask: torch.Tensor, index: int = 0) -> torch.Tensor:
        """Mix ``index`` (of ``num_output_representations``) of ``hidden_states`` (the token layer and every LSTM layer,
        as ``output_hidden_states`` returns them). Shape: (J × (B, L, 2P), (B, L)) -> (B, L, 2P)."""
        if not 0 <= index < len(self.scalar_mixes):
            raise ValueError(
                f"ElmoModel.scalar_mix: index must be in [0, num_output_representations={len(self.scalar_mixes)}), "
                f"got {index}"
            )
        return self.scalar_mixes[index](hidden_states, attention_mask)

    def attention_mask_for(self, char_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The (B, L) 0/1 mask the model uses: ``attention_mask`` if given (``real_mask``: any nonzero value counts as
        1, for a check read later), else words with any character id."""
        if attention_mask is not None:
            return real_mask(attention_mask, char_ids)
        return (char_ids > 0).any(dim=-1).long()

    def _check_inputs(self, name: str, input_ids, char_ids, inputs_embeds) -> tuple[int, int, torch.Tensor]:
        """(batch, length, the char_ids to use: ``check_char_ids``)."""
        config = self.config
        if char_ids is None:
            raise ValueError(
                f"{name}: char_ids (batch, words, max_chars) are required: ELMo reads the characters of each word "
                "(WordCharTokenizerFast returns them)"
            )
        if not isinstance(char_ids, torch.Tensor) or char_ids.dim() != 3:  # the batch's shape comes from char_ids
            shape = tuple(char_ids.shape) if isinstance(char_ids, torch.Tensor) else type(char_ids).__name__
            raise ValueError(f"{name}: char_ids must be a (batch, words, max_chars) tensor, got {shape}")
        batch, length = char_ids.shape[:2]
        if batch == 0 or length == 0:
            raise ValueError(f"{name}: the batch is empty (batch={batch}, length={length}); nothing to encode")
        reason = (
            f"the widest character filter ({config.max_filter_width}); the tokenizer's max_word_length should be "
            f"max_characters_per_token={config.max_characters_per_token}"
        )
        safe_char_ids = check_char_ids(
            name, char_ids, batch, length, config.char_vocab_size, config.max_filter_width, reason
        )
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError(
                f"{name}: pass at most one of input_ids and inputs_embeds (ELMo encodes char_ids; neither enters "
                "the representation)"
            )
        if input_ids is not None:
            if not isinstance(input_ids, torch.Tensor) or tuple(input_ids.shape) != (batch, length):
                shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
                raise ValueError(
                    f"{name}: input_ids must have the shape of char_ids' words ({batch}, {length}), got {shape}"
                )
            check_id_dtype(name, "input_ids", input_ids)
            check_ids_in_range(name, "input_ids", input_ids, config.vocab_size, "vocab_size")
        if inputs_embeds is not None:
            expected = (batch, length, config.projection_size)
            if not isinstance(inputs_embeds, torch.Tensor) or tuple(inputs_embeds.shape) != expected:
                shape = tuple(inputs_embeds.shape) if isinstance(inputs_embeds, torch.Tensor) else type(inputs_embeds)
                raise ValueError(f"{name}: inputs_embeds must have shape {expected}, got {shape}")
            check_embeds_values(name, inputs_embeds)
        return batch, length, safe_char_ids

    def _check_states(self, name: str, states, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config
        shapes = (
            (config.num_hidden_layers, 2, batch, config.projection_size),
            (config.num_hidden_layers, 2, batch, config.lstm_size),
        )
        if (
            not isinstance(states, (tuple, list))
            or len(states) != 2
            or not all(isinstance(t, torch.Tensor) and tuple(t.shape) == shape for t, shape in zip(states, shapes))
        ):
            got = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in states] if isinstance(
                states, (tuple, list)) else type(states).__name__
            raise ValueError(
                f"{name}: initial_states must be (h, c) with shapes {shapes[0]} and {shapes[1]} (layers, directions, "
                f"batch, size), as output_final_states returns them; got {got}"
            )
        return states[0].to(device), states[1].to(device)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        char_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        initial_states: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_final_states: bool = False,
        output_elmo_representations: bool = False,
        lstm_dropout: bool = True,
        **kwargs,
    ) -> ElmoModelOutput | tuple:
        r"""
        initial_states (`tuple(torch.FloatTensor)`, *optional*): (h, c) the LSTMs start from, per layer, direction
            and row (see `ElmoModelOutput.final_states`); zeros when None. Passing a batch's `final_states` to the
            next batch continues its rows, as bilm-tf's stateful inference graph does.
        output_final_states (`bool`, defaults to `False`): return `final_states`.
        output_elmo_representations (`bool`, defaults to `False`): return `elmo_representations`, every scalar mix
            (`last_hidden_state` is the first).
        lstm_dropout (`bool`, defaults to `True`): apply the LSTMs' input dropout in training; False runs the biLM as a
            fixed feature extractor (the tagger's `freeze_elmo`), as bilm-tf's and AllenNLP's inference graphs do.
        """
        name = type(self).__name__
        check_kwargs(name, kwargs, extra_ignored=("token_type_ids",))
        self.config.check()
        config = self.config
        batch, length, char_ids = self._check_inputs(name, input_ids, char_ids, inputs_embeds)
        check_token_type_ids_shape(name, kwargs.get("token_type_ids"), batch, length)
        device = char_ids.device  # the input's: a parameter may be on the meta device while offloaded
        if attention_mask is not None:
            mask = check_attention_mask(name, attention_mask, batch, length, device)  # (B, L) long
        else:
            mask = self.attention_mask_for(char_ids, None)
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict

        if initial_states is not None:
            initial_states = self._check_states(name, initial_states, batch, device)

        keep = mask.bool()  # (B, L)
        token_layer = encode_real_words(self.char_encoder, char_ids, keep)  # (B, L, P)

        hidden = torch.cat([token_layer, token_layer], dim=-1)  # (B, L, 2P) layer 0 = [x | x]
        layers, final_h, final_c = [hidden], [], []
        for j, layer in enumerate(self.layers):
            state = None if initial_states is None else (initial_states[0][j], initial_states[1][j])
            hidden, final = layer(hidden, mask, state, output_final_states, lstm_dropout)  # (B, L, 2P), (h_n, c_n)
            layers.append(hidden)
            if output_final_states:
                final_h.append(final[0])  # (2, B, P)
                final_c.append(final[1])  # (2, B, H)
        representations = tuple(mix(layers, mask) for mix in self.scalar_mixes)
        out = ElmoModelOutput(
            last_hidden_state=representations[0] if representations else hidden,
            hidden_states=tuple(layers) if output_hidden_states else None,
            elmo_representations=representations if output_elmo_representations else None,
            final_states=(torch.stack(final_h), torch.stack(final_c)) if output_final_states else None,
            top_layer=hidden,
        )
        return out if return_dict else out.to_tuple()


def _mask_of(model: ElmoModel, char_ids, attention_mask, like: torch.Tensor) -> torch.Tensor:
    return model.attention_mask_for(char_ids.to(like.device), attention_mask).to(like.device)


def check_trainer_count(model_name: str, labels: torch.Tensor, predicted: torch.Tensor) -> None:
    """A ``ValueError`` when the Trainer's count of this batch is not the number of words each LM predicts.

    With ``num_items_in_batch`` the biLM's loss is (Σ forward CE + Σ backward CE) / (2 · num_items_in_batch), and the
    Trainer counts, for a model whose ``loss_type`` is a causal LM's, c = Σ_b Σ_{t >= 1} [labels[b, t] != -100]. In
    row b with real tokens at positions p_1 < ... < p_n, the forward LM predicts the labelled words at p_2 .. p_n and
    the backward LM those at p_1 .. p_{n-1}: both counts are c when p_1 = 0, labels are -100 at padding (right
    padding, as the tokenizers pad by default) and a row's first and last real words are both labelled or both not.
    A row padded on the left (p_1 > 0) is counted one word too many, and a label at a padded position one too many:
    the loss would be divided by too many words, silently (``eval_loss`` low by about 1/n per row of n words); the
    two LMs' counts differ where only one end of a row is labelled, and no one count normalises both.
    ``labels`` (B, L), ``predicted`` (2,) the forward and backward LMs' counts here. As every value check
    (``modeling/value_checks.py``): at once on a CPU, read later on a GPU, not while traced.
    """
    mode = check_mode(labels)
    if mode == "off":
        return
    counted = (labels[:, 1:] != -100).sum()  # () what the Trainer counts of this batch
    numbers = torch.cat([counted[None], predicted.to(counted.dtype)])  # (3,) read later on a GPU
    settle(mode, numbers, lambda n: None if n[0] == n[1] == n[2] else (
        f"{model_name}: num_items_in_batch counts labels[..., 1:] != -100 (the Trainer's count for this model's "
        f"loss_type 'ForCausalLM': {n[0]} in this batch), but the forward LM predicts {n[1]} of these words (every "
        f"labelled word after a row's first real word) and the backward LM {n[2]} (every labelled word before a "
        "row's last real word): the loss would be divided by the wrong count. A row whose first real token is not "
        "at position 0 (left padding) or a label at a padded position is counted but not predicted, and a row "
        "labelled -100 at only one of its ends is predicted by one LM more often than by the other: pad on the "
        "right (tokenizer.padding_side = 'right') with labels -100 at padding"))


class ElmoForBidirectionalLM(ElmoPreTrainedModel):
    r"""ELMo's native objective: the forward LM predicts word t+1 from the forward top state at t, the backward LM
    word t-1 from the backward top state at t, both through one softmax (`lm_head`, tied to the word table):

        loss = ½ (mean_t CE(softmax(W →h_t + b), w_{t+1}) + mean_t CE(softmax(W ←h_t + b), w_{t-1}))

    over each row's real tokens (with the tokenizer's sentence boundaries, the forward LM ends by predicting </S>
    and the backward LM by predicting <S>). `labels` (B, L) are the word ids, usually `input_ids` with -100 at
    padding; a -100 word is not predicted. With `sampled_softmax_size` > 0 training uses bilm-tf's sampled softmax
    (``sampled_softmax_loss``), evaluation the full softmax. Dropout (`hidden_dropout_prob`) applies to the top
    states in training, as bilm-tf's.
    """

    _tied_weights_keys = {"lm_head.weight": "elmo.word_embeddings.weight"}

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        self.elmo = ElmoModel(config, num_scalar_mixes=0)  # the LM reads the top layer, never a mix
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.lm_head = nn.Linear(config.projection_size, config.vocab_size, bias=True)
        self.post_init()
        # What the Trainer's num_items_in_batch counts: each direction predicts the n - 1 words of a row after (before)
        # its first (last) one, as a causal LM predicts labels[..., 1:]; the Trainer counts those for a model whose
        # loss_type is a causal LM's (its own count, labels != -100, is n per row: a loss biased low by 1/n)
        self.loss_type = "ForCausalLM"

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def _loss_sum(self, states: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(sum of the cross-entropies, logits or None) of ``states`` (N, P) predicting ``targets`` (N,)."""
        if self.training and self.config.sampled_softmax_size > 0:
            losses = sampled_softmax_loss(
                states, targets, self.lm_head.weight, self.lm_head.bias, self.config.sampled_softmax_size
            )
            return losses.sum(), None
        logits = self.lm_head(states)  # (N, V)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), logits

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
    ) -> ElmoBidirectionalLMOutput | tuple:
        num_items = kwargs.pop("num_items_in_batch", None)
        if labels is None and num_items is not None:  # plain Python on None: free, constant while compiling
            raise ValueError(
                f"{type(self).__name__}: called with num_items_in_batch but without labels, as the Trainer does when "
                "it computes the loss itself from outputs.logits (TrainingArguments(label_smoothing_factor > 0), or a "
                "compute_loss_func); the biLM has a forward and a backward LM, each with its own logits "
                "(forward_logits, backward_logits) and no `logits`: its loss is the model's own (set "
                "label_smoothing_factor=0 and leave compute_loss_func unset)"
            )
        labels = check_task_labels(self, "bilm", labels, input_ids, inputs_embeds, char_ids)
        out = self.elmo(input_ids, attention_mask, char_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        top = self.dropout(out.top_layer)  # (B, L, 2P)
        P = self.config.projection_size
        forward_states, backward_states = top[..., :P], top[..., P:]  # (B, L, P) each
        # The output is built once, at the end: a field set on it afterwards would go after hidden_states in
        # to_tuple(), whose order must be the fields' (return_dict=False).
        fields = dict(hidden_states=out.hidden_states, final_states=out.final_states)
        if labels is None:
            fields["forward_logits"] = self.lm_head(forward_states)  # (B, L, V)
            fields["backward_logits"] = self.lm_head(backward_states)
        else:
            batch, length = top.shape[:2]
            labels = labels.to(top.device)  # checked by check_task_labels before the encoder ran
            keep = _mask_of(self.elmo, char_ids, attention_mask, top).bool()
            orders, lengths = reading_orders(keep, batch, length, top.device)  # (2, B, L), (B,)
            order = orders[0]  # (B, L): the real tokens of each row first, in order
            words = labels.gather(1, order)  # (B, L) word ids in reading order
            step = torch.arange(1, length, device=top.device)[None, :]  # (1, L-1)
            real_pair = step < lengths[:, None]  # (B, L-1): reading positions i-1, i both real
            sums, counts, logits = [], [], []
            # forward: the state at reading position i-1 predicts word i; backward: the state at i predicts word i-1
            for states, at, predicted in (
                (forward_states, order[:, :-1], words[:, 1:]),
                (backward_states, order[:, 1:], words[:, :-1]),
            ):
                selected = real_pair & (predicted != -100)  # (B, L-1)
                if self.config.sparse_prediction or (self.training and self.config.sampled_softmax_size > 0):
                    # the softmax at the N predicted positions only (their number is read on the host)
                    gathered = states.gather(1, at[..., None].expand(-1, -1, P))[selected]  # (N, P)
                    loss_sum, direction_logits = self._loss_sum(gathered, predicted[selected])
                else:  # every position's logits are returned: the loss reads them, no gather by the mask
                    direction_logits = self.lm_head(states)  # (B, L, V)
                    V = direction_logits.shape[-1]
                    at_logits = direction_logits.gather(1, at[..., None].expand(-1, -1, V))  # (B, L-1, V)
                    targets = predicted.masked_fill(~selected, -100)  # (B, L-1)
                    loss_sum = F.cross_entropy(at_logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
                sums.append(loss_sum)
                counts.append(selected.sum())
                logits.append(direction_logits)
            forward_loss = normalised_sum(sums[0], counts[0], None)
            backward_loss = normalised_sum(sums[1], counts[1], None)
            if num_items is not None:
                check_trainer_count(type(self).__name__, labels, torch.stack([counts[0], counts[1]]))
                loss = normalised_sum(sums[0] + sums[1], counts[0] + counts[1], 2 * num_items)
            else:
                loss = 0.5 * (forward_loss + backward_loss)
            fields.update(
                loss=loss,
                forward_loss=forward_loss,
                backward_loss=backward_loss,
                forward_perplexity=torch.exp(forward_loss.detach()),
                backward_perplexity=torch.exp(backward_loss.detach()),
                forward_logits=logits[0],
                backward_logits=logits[1],
            )
        result = ElmoBidirectionalLMOutput(**fields)
        return result if (self.config.return_dict if return_dict is None else return_dict) else result.to_tuple()


class ElmoForMaskedLM(ElmoPreTrainedModel):
    r"""ELMo with the masked-LM head over the scalar mix: the 2P-wide mix is projected to P and decoded with the tied
    word table. A masked word's characters must be hidden too (``DataCollatorForWordCharLanguageModeling`` gives it
    the [MASK] token's characters)."""

    _tied_weights_keys = {"lm_head.decoder.weight": "elmo.word_embeddings.weight"}

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        self.elmo = ElmoModel(config, num_scalar_mixes=1)  # the head reads the first mix
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
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "masked_lm", labels, input_ids, inputs_embeds, char_ids)
        out = self.elmo(input_ids, attention_mask, char_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        return masked_lm_output(self, out.last_hidden_state, out, labels, num_items, return_dict)  # the mix


class ElmoForSequenceClassification(ElmoPreTrainedModel):
    r"""ELMo with a pooled classification/regression head over the scalar mix (default pooling: the forward half at
    the last real token and the backward half at the first)."""

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        self.elmo = ElmoModel(config, add_word_embeddings=False, num_scalar_mixes=1)  # reads the first mix only
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
        num_items = kwargs.pop("num_items_in_batch", None)
        labels = check_task_labels(self, "sequence", labels, input_ids, inputs_embeds, char_ids)
        out = self.elmo(input_ids, attention_mask, char_ids, inputs_embeds, output_hidden_states, True, **kwargs)
        mixed = out.last_hidden_state  # (B, L, 2P) the head's scalar mix
        mask = _mask_of(self.elmo, char_ids, attention_mask, mixed)
        return sequence_classification_output(self, mixed, mask, out, labels, num_items, return_dict)


class ElmoForTokenClassification(ElmoPreTrainedModel):
    r"""ELMo as a tagger: x_t = Dropout([mix_t ; E_word[w_t] ; charCNN(w_t)]) → a task BiLSTM (projection_size units
    per direction, over the real tokens only) → the CRF head (`use_crf=True`, the default: `logits` are max-marginal
    scores whose argmax is the Viterbi path) or a softmax head.

    mix_t is the ELMo scalar mix. The word vector E_word[w_t] (`config.tagger_word_features`: the biLM's word table,
    read by `input_ids`, or `inputs_embeds` (B, L, projection_size) given instead) and the character CNN
    (`config.tagger_char_cnn_filters` > 0) are Peters et al.'s (2018) tagger inputs beside ELMo; without them the
    BiLSTM reads the mix alone. `config.freeze_elmo` fixes the biLM's encoder (its character CNN and LSTMs; the
    forward runs them without a graph and without their dropout, so that the features they give are those of
    evaluation): the mix's weights, the word vectors (initialised from the biLM's table, as a tagger fine-tunes
    pretrained word vectors), the character CNN, the BiLSTM and the head train.
    """

    def __init__(self, config: ElmoConfig):
        super().__init__(config)
        # the biLM's word table only when the tagger reads word vectors; the first mix only
        self.elmo = ElmoModel(config, add_word_embeddings=config.tagger_word_features, num_scalar_mixes=1)
        self.char_cnn = None
        if config.tagger_char_cnn_filters:
            # ELMo reads bilm-tf's character ids, whose padding inside a word is 261: left out of the CNN's max
            self.char_cnn = CharCnnEncoder(config.char_vocab_size, TAGGER_CHAR_EMBEDDING_SIZE,
                                           config.tagger_char_cnn_filters, TAGGER_CHAR_CNN_WIDTH, BILM_PAD_CHAR_ID)
        dropout = config.hidden_dropout_prob if config.tagger_dropout is None else config.tagger_dropout
        self.dropout = Dropout(dropout)
        self.tagger = BiLstmWeights(config.tagger_input_size, config.projection_size)
        self.classifier = token_classification_head(config)
        self.post_init()
        self.apply_freezing()

    def apply_freezing(self) -> None:
        """``config.freeze_elmo``: the biLM's character CNN and LSTMs stop training (the mix and the word vectors
        train); applied when the model is built and again when it is loaded (``DamagedCheckpointErrors``), whose
        loader puts trainable parameters in place. The forward pass runs them without a graph either way."""
        if self.config.freeze_elmo:
            for name, parameter in self.elmo.named_parameters():
                if not name.startswith(("scalar_mixes.", "word_embeddings.")):
                    parameter.requires_grad_(False)

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
        num_items = kwargs.pop("num_items_in_batch", None)
        output_marginals = kwargs.pop("output_marginals", None)  # None: the config's
        labels = check_task_labels(self, "token", labels, input_ids, inputs_embeds, char_ids)
        if self.config.tagger_word_features and input_ids is None and inputs_embeds is None:
            raise ValueError(
                "ElmoForTokenClassification: this tagger reads word vectors (tagger_word_features=True): pass "
                "input_ids (or inputs_embeds) beside char_ids"
            )
        if self.config.freeze_elmo:  # the biLM's layers without a graph; the mix (trained) over them
            with torch.no_grad():
                out = self.elmo(input_ids, attention_mask, char_ids, inputs_embeds, True, True, lstm_dropout=False,
                                **kwargs)
            mask = _mask_of(self.elmo, char_ids, attention_mask, out.top_layer)
            mixed = self.elmo.scalar_mix(out.hidden_states, mask)  # (B, L, 2P)
            if not (self.config.output_hidden_states if output_hidden_states is None else output_hidden_states):
                out.hidden_states = None
        else:
            out = self.elmo(input_ids, attention_mask, char_ids, inputs_embeds, output_hidden_states, True, **kwargs)
            mixed = out.last_hidden_state  # (B, L, 2P) the head's scalar mix
            mask = _mask_of(self.elmo, char_ids, attention_mask, mixed)
        features = [mixed]
        if self.config.tagger_word_features:
            # The ids were checked by the encoder; clamped here too, for a check read later (value_checks).
            ids = None if input_ids is None else input_ids.clamp(0, self.elmo.word_embeddings.num_embeddings - 1)
            words = self.elmo.word_embeddings(ids) if inputs_embeds is None else inputs_embeds  # (B, L, P)
            features.append(words.to(mixed.dtype))
        if self.char_cnn is not None:
            chars = char_ids.clamp(0, self.config.char_vocab_size - 1)  # as the word ids above
            features.append(encode_real_words(self.char_cnn, chars, mask.bool()).to(mixed.dtype))  # (B, L, F)
        hidden = torch.cat(features, dim=-1)  # (B, L, tagger_input_size)
        hidden = self.tagger(self.dropout(hidden), mask, self.config.kernel_backend)  # (B, L, 2P)
        return token_classification_output(
            self, hidden, mask, out, labels, num_items, return_dict, output_marginals
        )


__all__ = [
    "ElmoModel",
    "ElmoForBidirectionalLM",
    "ElmoForMaskedLM",
    "ElmoForSequenceClassification",
    "ElmoForTokenClassification",
    "ElmoPreTrainedModel",
    "ElmoModelOutput",
    "ElmoBidirectionalLMOutput",
]
