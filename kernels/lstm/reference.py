r"""The bidirectional LSTM (with an optional projection and clipping): the math and the plain PyTorch reference.

One layer, two directions, each with its own weights. Direction 0 reads each row's real tokens t_1 < … < t_n in
order, direction 1 in reverse (it starts at the row's last real token); padding (left, right or holes) is skipped
and its outputs are 0. For one direction, from (h_0, c_0) (zeros by default), at its r-th real token t = t_r:

    z_r = a_t + W_hh h_{r-1}                  a_t = W_ih x_t + b, every step's at once (``input_gates``)
    [i; f; g; o] = [σ(z_i); σ(z_f); tanh(z_g); σ(z_o)]       gate order i, f, g, o: torch.nn.LSTM's
    c_r = clip(f ⊙ c_{r-1} + i ⊙ g, ±cell_clip)
    m_r = o ⊙ tanh(c_r)
    h_r = clip(W_p m_r, ±proj_clip)            the LSTMP of Sak et al. 2014 and of TensorFlow's LSTMCell(num_proj);
                                              without a projection h_r = m_r and there is no proj_clip
    y_t = h_r

The final state of a row is (h_n, c_n), after its last step (the initial state for a row without real tokens):
after its last real token for direction 0, after its first for direction 1. ``clip(·, ±None)`` is the identity;
clipping's gradient passes where |x| ≤ clip (``torch.clamp``'s).

Legend: B batch, L length, I input features, H cells, P outputs (P = H without a projection), 2 directions.
Shapes: x (B, L, I) shared by both directions or (B, L, 2, I) one input per direction; weight_ih (2, 4H, I),
weight_hh (2, 4H, P), bias (2, 4H) or None, weight_proj (2, P, H) or None; attention_mask (B, L);
initial_state (h_0 (2, B, P), c_0 (2, B, H)) -> y (B, L, 2, P), (h_n (2, B, P), c_n (2, B, H)).

Reading orders: ``reading_orders(mask)`` gives, per direction, the positions of each row's steps: real tokens
first (in order for direction 0, reversed for direction 1), then the padding positions in order. Every schedule
walks these: the reference and the native form gather the inputs into them and scatter the outputs back, the
Triton kernels read and write at them directly.

Here: ``bilstm_loop``, the recurrence one step at a time, vectorised over the batch and both directions (any
clipping, any projection); fp32 arithmetic for fp32 and half-precision inputs (fp64 for fp64, so that gradcheck
can use it), results in the input's dtype. ``bilstm_scan``: the same step function run by
``torch._higher_order_ops.scan``, what the reference forms run while torch.export traces (one ONNX Scan over the
positions, so that an exported graph takes any length; a Python loop or torch.lstm would fix the traced one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


__all__ = ["reading_orders", "input_gates", "bilstm_loop", "bilstm_scan", "gather_steps", "scatter_steps"]


def reading_orders(mask: torch.Tensor | None, batch: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The steps of both directions: (order (2, B, L) int64, lengths (B,) int64).

    order[0, b] lists row b's real positions in order, order[1, b] the same positions last to first; both continue
    with the row's padding positions in order (where a schedule writes zeros).
    """
    if mask is None:
        t = torch.arange(length, device=device).expand(batch, length)  # (B, L)
        lengths = torch.full((batch,), length, dtype=torch.long, device=device)
    else:
        keep = mask.bool()
        lengths = keep.sum(1)  # (B,)
        key = (~keep).long() * length + torch.arange(length, device=device)  # real first, then by position
        t = key.argsort(dim=1)  # (B, L)
    s = torch.arange(length, device=device)[None, :]  # (1, L)
    flipped = torch.where(s < lengths[:, None], lengths[:, None] - 1 - s, s)  # (B, L) reversed within the length
    return torch.stack([t, t.gather(1, flipped)]), lengths


def input_gates(x: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """a = W_ih x + b for both directions, every step at once: x (B, L, I) or (B, L, 2, I) -> (B, L, 2, 4H)."""
    B, L = x.shape[:2]
    four_h = weight_ih.shape[1]
    if x.dim() == 3:  # one matrix product for both directions
        w = weight_ih.reshape(2 * four_h, -1)  # (8H, I)
        return F.linear(x, w, None if bias is None else bias.reshape(-1)).reshape(B, L, 2, four_h)
    # one product per direction (an einsum here failed in torch.compile's backward under dropout: a view of strides
    # the decomposition did not expect)
    a = torch.stack([F.linear(x[:, :, d], weight_ih[d]) for d in range(2)], dim=2)  # (B, L, 2, 4H)
    return a if bias is None else a + bias


def gather_steps(values: torch.Tensor, order: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L, 2, F) at the original positions -> (2, B, L, F) in each direction's reading order, contiguous (written
    into ``out`` when given: a contiguous (2, B, L, F) buffer).

    out[d, b, s] = values[b, order[d, b, s], d]: one ``index_select`` of whole F-rows of ``values`` seen as
    (B·L·2, F), row b·2L + 2·order[d, b, s] + d (a ``gather`` along L reads an index per element, 4-5x slower on a
    CPU at ELMo's sizes)."""
    B, L, _, F = values.shape
    batch = torch.arange(B, device=order.device)[:, None] * (2 * L)  # (B, 1)
    direction = torch.arange(2, device=order.device)[:, None, None]  # (2, 1, 1)
    rows = (order * 2 + batch + direction).flatten()  # (2·B·L,)
    source = values.reshape(B * L * 2, F)
    if out is None:
        return source.index_select(0, rows).view(2, B, L, F)
    torch.index_select(source, 0, rows, out=out.view(2 * B * L, F))
    return out


def scatter_steps(steps: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The inverse of ``gather_steps``: (2, B, L, F) in reading order -> (B, L, 2, F) at the original positions,
    contiguous: out[b, t, d] = steps[d, b, s] where order[d, b, s] = t, i.e. one ``index_select`` of the rows of
    ``steps`` seen as (2·B·L, F) at d·BL + b·L + s, s from the inverse of each row's order."""
    _, B, L, F = steps.shape
    position = torch.arange(L, device=order.device).expand_as(order)  # (2, B, L)
    inverse = torch.empty_like(order).scatter_(2, order, position)  # (2, B, L): the step that reads position t
    direction = torch.arange(2, device=order.device) * (B * L)  # (2,)
    batch = torch.arange(B, device=order.device)[:, None, None] * L  # (B, 1, 1)
    rows = inverse.permute(1, 2, 0) + batch + direction  # (B, L, 2)
    return steps.reshape(2 * B * L, F).index_select(0, rows.flatten()).view(B, L, 2, F)


def _lstm_step(w_hh, w_p, cell_clip, proj_clip):
    """One step of the recurrence for both directions: ((h (2, B, P), c (2, B, H)), (a_s (2, B, 4H), active (1, B, 1)))
    -> the state after step s (rows past their real tokens keep theirs), and y_s (2, B, P) (0 for those rows).
    w_hh (2, P, 4H) and w_p (2, H, P) or None are the transposed weights; the clips floats, 0-dim tensors or None."""

    def step(state, x):
        h, c = state
        a_s, active = x
        z = torch.baddbmm(a_s, h, w_hh)  # (2, B, 4H)
        i, f, g, o = z.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (2, B, H)
        if cell_clip is not None:
            c_new = c_new.clamp(-cell_clip, cell_clip)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)  # (2, B, H)
        if w_p is not None:
            h_new = torch.bmm(h_new, w_p)  # (2, B, P)
            if proj_clip is not None:
                h_new = h_new.clamp(-proj_clip, proj_clip)
        state = torch.where(active, h_new, h), torch.where(active, c_new, c)
        return state, torch.where(active, h_new, torch.zeros_like(h_new))

    return step


def _prepare(gates, weight_hh, weight_proj, order, lengths, initial_state):
    """The loop's inputs in the compute dtype: a (2, B, L, 4H) in reading order, w_hh (2, P, 4H), w_p (2, H, P) or
    None, the initial (h, c), and active (L, 1, B, 1): whether step s of row b reads a real token."""
    B, L = gates.shape[:2]
    H, P = weight_hh.shape[1] // 4, weight_hh.shape[2]
    compute = torch.float64 if gates.dtype == torch.float64 else torch.float32
    a = gather_steps(gates.to(compute), order)  # (2, B, L, 4H) in reading order
    w_hh = weight_hh.to(compute).transpose(1, 2)  # (2, P, 4H)
    w_p = None if weight_proj is None else weight_proj.to(compute).transpose(1, 2)  # (2, H, P)
    if initial_state is None:
        state = a.new_zeros(2, B, P), a.new_zeros(2, B, H)
    else:
        state = initial_state[0].to(compute), initial_state[1].to(compute)
    active = (torch.arange(L, device=gates.device)[:, None] < lengths[None, :])[:, None, :, None]  # (L, 1, B, 1)
    return a, w_hh, w_p, state, active


def bilstm_loop(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip):
    """The recurrence of the module docstring, one step at a time, both directions batched.

    gates (B, L, 2, 4H) input gates, order/lengths from ``reading_orders`` -> y (B, L, 2, P), (h_n, c_n).
    B and L must be positive (``bilstm`` answers empty inputs itself; while torch.export traces it runs
    ``bilstm_scan``, the same steps as one scan, for a graph of any length).
    """
    L = gates.shape[1]
    dtype = gates.dtype
    a, w_hh, w_p, state, active = _prepare(gates, weight_hh, weight_proj, order, lengths, initial_state)
    step = _lstm_step(w_hh, w_p, cell_clip, proj_clip)
    outputs = []
    for s in range(L):
        state, y_s = step(state, (a[:, :, s], active[s]))
        outputs.append(y_s)
    y = scatter_steps(torch.stack(outputs, dim=2), order)  # (B, L, 2, P)
    return y.to(dtype), (state[0].to(dtype), state[1].to(dtype))


def bilstm_scan(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip):
    """``bilstm_loop``'s steps as ``torch._higher_order_ops.scan`` over the reading positions: one ONNX Scan whose
    number of steps follows the length, so that a graph exported with a symbolic length runs any length (a Python
    loop would be unrolled for the traced one). Any clipping and projection. The same arguments and results.
    """
    from torch._higher_order_ops.scan import scan

    dtype = gates.dtype
    a, w_hh, w_p, state, active = _prepare(gates, weight_hh, weight_proj, order, lengths, initial_state)
    # the weights the step closes over must not alias one another or the inputs: copies; the clips as 0-dim tensors
    # (a scan's body may close over tensors and integers only: torch 2.15 traces a Python float as a symbolic one)
    clips = [None if clip is None else a.new_full((), clip) for clip in (cell_clip, proj_clip)]  # no host copy
    step = _lstm_step(w_hh.clone(), None if w_p is None else w_p.clone(), *clips)

    def body(state, x):
        state, y_s = step(state, x)
        return state, y_s.clone()  # a scan's outputs must not alias its carry

    state, outputs = scan(body, state, (a.movedim(2, 0), active))  # outputs (L, 2, B, P)
    y = scatter_steps(outputs.movedim(0, 2), order)  # (B, L, 2, P)
    return y.to(dtype), (state[0].to(dtype), state[1].to(dtype))
