r"""The bidirectional LSTM on torch's own recurrence (``torch.lstm``: cuDNN on a GPU, ATen's fused loop on a CPU).

The same math as ``reference.py`` without clipping (torch's LSTM cannot clip); the projection is torch's
``proj_size``. Each direction runs as one unpacked recurrence over its steps in reading order (its real tokens
first, where the padding after them cannot reach their states), and the outputs are scattered back. On a CPU this
is ~3x faster forward+backward than packed sequences, whose backward pass fills a full-size gradient per step.
The final states after each row's last real step need the packed form when lengths differ (an unpacked run keeps
going over the padding), so it is used only when ``final_state`` is asked for; on a GPU that form costs a host
sync (whether the lengths differ, and the lengths themselves, which cuDNN takes on the host). Of the models only
ELMo asks for final states (``output_final_states``, stateful training), and only an ELMo without clipping would
run them here: a clipped LSTMP runs on the step schedules.
"""

from __future__ import annotations

import warnings

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import dispatch
from .reference import scatter_steps

__all__ = ["bilstm_native"]


def _run(x, state, weights, has_bias: bool, lengths, L: int, packed: bool):
    """One direction over x (B, L, I) in reading order from state ((1, B, P), (1, B, H)) -> out (B, L, P), h_n, c_n.

    Unpacked, the state runs on over the padding after a row's real steps (harmless to their outputs, wrong for
    the final state); packed (rows of different lengths whose final states are wanted) it stops at each row's end.
    ``train`` (torch.lstm's 7th argument) must be True whenever a gradient will be asked for: cuDNN's inference
    mode keeps no workspace for the backward pass ("cudnn RNN backward can only be called in training mode").
    """
    train = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *state, *weights))
    if not packed:
        return torch.lstm(x, state, weights, has_bias, 1, 0.0, train, False, True)
    seq = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    sorted_state = tuple(s.index_select(1, seq.sorted_indices) for s in state)  # rows by decreasing length
    out, h_n, c_n = torch.lstm(seq.data, seq.batch_sizes, sorted_state, weights, has_bias, 1, 0.0, train, False)
    out, _ = pad_packed_sequence(
        PackedSequence(out, seq.batch_sizes, seq.sorted_indices, seq.unsorted_indices), batch_first=True, total_length=L
    )
    h_n, c_n = h_n.index_select(1, seq.unsorted_indices), c_n.index_select(1, seq.unsorted_indices)
    empty = (lengths == 0)[None, :, None]  # rows without a real token keep the initial state
    return out, torch.where(empty, state[0], h_n), torch.where(empty, state[1], c_n)


def bilstm_native(x, weight_ih, weight_hh, bias, weight_proj, order, lengths, initial_state, final_state: bool):
    """x (B, L, I) or (B, L, 2, I), weights as in ``reference.py``, order/lengths from ``reading_orders`` ->
    y (B, L, 2, P), (h_n (2, B, P), c_n (2, B, H)) or None without ``final_state``.

    (While torch.export traces, ``bilstm`` runs ``reference.bilstm_scan`` instead: torch.lstm would be exported
    unrolled for the traced length, or keep it in its traced output shape.)
    """
    B, L = x.shape[:2]
    H, P = weight_hh.shape[1] // 4, weight_hh.shape[2]
    packed = final_state and L > 0 and bool((lengths != L).any())
    steps, finals = [], []
    for d in range(2):
        x_d = x if x.dim() == 3 else x[:, :, d]  # (B, L, I)
        x_d = x_d.gather(1, order[d][..., None].expand_as(x_d))  # (B, L, I) in this direction's reading order
        weights = [weight_ih[d], weight_hh[d]]
        if bias is not None:
            weights += [bias[d], torch.zeros_like(bias[d])]
        if weight_proj is not None:
            weights.append(weight_proj[d])
        if initial_state is None:
            state = (x.new_zeros(1, B, P), x.new_zeros(1, B, H))
        else:
            state = (initial_state[0][d : d + 1].contiguous(), initial_state[1][d : d + 1].contiguous())
        if dispatch.tracing():  # warning filters cannot be traced (a graph break); compiled code is silent
            out, h_n, c_n = _run(x_d, state, weights, bias is not None, lengths, L, packed)
        else:
            with warnings.catch_warnings():
                # oneDNN's notice that it leaves projections to ATen's own loop, and cuDNN's that the weights (the
                # model's own parameters, not one flat buffer) are copied together for the call: both expected here.
                warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
                warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
                out, h_n, c_n = _run(x_d, state, weights, bias is not None, lengths, L, packed)
        steps.append(out)  # (B, L, P)
        finals.append((h_n[0], c_n[0]))
    y = scatter_steps(torch.stack(steps), order)  # (B, L, 2, P)
    real = torch.arange(L, device=x.device)[None, :] < lengths[:, None]  # (B, L) in reading order
    keep = torch.zeros_like(real).scatter(1, order[0], real)  # (B, L) at the original positions
    y = torch.where(keep[:, :, None, None], y, torch.zeros_like(y))
    if not final_state:
        return y, None
    return y, (torch.stack([f[0] for f in finals]), torch.stack([f[1] for f in finals]))
