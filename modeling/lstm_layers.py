r"""The one-layer bidirectional LSTM that BiLSTM-CRF and ELMo share: ``nn.LSTM``'s parameters, run by the op
``bizoo.kernels.lstm.bilstm`` over the real tokens of each row.

Per direction d ∈ {forward, backward}, over the real positions of a row only (forward from the first real token,
backward from the last, whatever the padding: right, left or holes), with torch's gate order i, f, g, o:

    [i; f; g; o]_t = W_ih^d x_t + W_hh^d h_{t∓1} + b_ih^d + b_hh^d            (4H,)
    c_t = σ(f) ⊙ c_{t∓1} + σ(i) ⊙ tanh(g),   h_t = σ(o) ⊙ tanh(c_t)            (H,)
    y_t = [→h_t | ←h_t]                                                        (2H,), zeros at padding

``BiLstmWeights`` holds the parameters under ``nn.LSTM``'s names, so checkpoints keep torch's keys; it is a plain
module because torch.compile refuses to trace through an ``nn.LSTM``. Its forward takes the backend (``"auto"``,
``"triton"``, ``"reference"``) from the model, which reads it from its config: nothing here sees a config, and the
op in ``kernels/`` sees only tensors.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init

from ..kernels.lstm import bilstm

DIRECTIONS = ("l0", "l0_reverse")  # nn.LSTM's suffixes: direction 0 forward, 1 backward


class BiLstmWeights(nn.Module):
    r"""The parameters of a one-layer bidirectional ``nn.LSTM`` under its names: ``weight_ih_l0`` (4H, I),
    ``weight_hh_l0`` (4H, H), ``bias_ih_l0``, ``bias_hh_l0`` (4H,) and the same with ``_reverse``, gates in torch's
    order i, f, g, o. Built as ``nn.LSTM`` builds them, U(-1/√H, 1/√H); a model's ``_init_weights`` then calls
    ``init_as_transformers`` (Xavier weights, zero biases, as transformers sets an ``nn.LSTM``) or
    ``init_as_tagger`` (the same with forget-gate bias 1).

    ``forward(x, mask, backend)`` is ``run_bilstm`` over these weights: they are read in the forward of the module
    that owns them, so that hooks that bring a module's weights in for its forward (accelerate's CPU and disk
    offloading, peft's ``modules_to_save`` copies) serve them.

    Args:
        input_size: I, the width of each input vector.
        hidden_size: H, the units per direction.

    Shape: x (B, L, I), mask (B, L) -> (B, L, 2H) = [forward | backward], zeros at padding.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        for suffix in DIRECTIONS:
            self.register_parameter(f"weight_ih_{suffix}", nn.Parameter(torch.empty(4 * hidden_size, input_size)))
            self.register_parameter(f"weight_hh_{suffix}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_{suffix}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"bias_hh_{suffix}", nn.Parameter(torch.empty(4 * hidden_size)))
        bound = hidden_size**-0.5
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def init_as_transformers(self) -> None:
        """Xavier-uniform weights and zero biases, as ``PreTrainedModel._init_weights`` initialises an ``nn.LSTM``
        (a parameter loaded from a checkpoint is left as it is)."""
        for name, parameter in self.named_parameters():
            if "weight" in name:
                init.xavier_uniform_(parameter)
            else:
                init.constant_(parameter, 0.0)

    def init_as_tagger(self) -> None:
        """``init_as_transformers``, then the forget gate's input bias (rows H..2H of ``bias_ih``) set to 1
        (Jozefowicz et al. 2015), as taggers usually do; a bias loaded from a checkpoint is left as it is."""
        self.init_as_transformers()
        for suffix in DIRECTIONS:
            parameter = getattr(self, f"bias_ih_{suffix}")  # (4H,)
            if not getattr(parameter, "_is_hf_initialized", False):  # a slice does not carry the parameter's flag
                init.constant_(parameter[self.hidden_size : 2 * self.hidden_size], 1.0)  # (H,) the forget gate

    def forward(self, x: torch.Tensor, mask: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        return run_bilstm(self, x, mask, backend)  # (B, L, 2H)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bidirectional"


def run_bilstm(lstm: nn.Module, x: torch.Tensor, mask: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    r"""A one-layer bidirectional LSTM (the parameters of ``BiLstmWeights`` or ``nn.LSTM``) run by the ``bilstm`` op
    on ``backend`` over the real positions of each row, whatever the padding (right, left, holes): the forward
    direction starts at the first real token, the backward one at the last, with torch's gate order and bias
    b_ih + b_hh. The op checks x, mask and backend.

    Shape: x (B, L, I), mask (B, L) -> (B, L, 2H) = [forward | backward], zeros at padding.
    """
    B, L, _ = x.shape
    weight_ih = torch.stack([getattr(lstm, f"weight_ih_{d}") for d in DIRECTIONS])  # (2, 4H, I)
    weight_hh = torch.stack([getattr(lstm, f"weight_hh_{d}") for d in DIRECTIONS])  # (2, 4H, H)
    # Summed per direction, then stacked: a sum of two stacks would hand b_ih and b_hh views of one gradient
    # tensor, which autograd keeps as both .grad, so that accumulating a second backward pass adds it twice.
    bias = torch.stack([getattr(lstm, f"bias_ih_{d}") + getattr(lstm, f"bias_hh_{d}") for d in DIRECTIONS])  # (2, 4H)
    y, _ = bilstm(x, weight_ih, weight_hh, bias, attention_mask=mask, final_state=False, backend=backend)
    return y.reshape(B, L, 2 * lstm.hidden_size)  # (B, L, 2, H) -> (B, L, 2H)
