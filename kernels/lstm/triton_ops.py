r"""The custom-op glue of a Triton schedule of the LSTM op: its signature, autograd and entry point.

A schedule (``triton_steps.py``, one product and one fused kernel per step; any later one the same way) supplies a
forward and a backward implementation with these signatures, and registers them here as the
``torch.library`` custom ops ``bizoo::<name>_forward`` / ``bizoo::<name>_backward``:

    forward(gates (B, L, 2, 4H), weight_hh (2, 4H, P), weight_proj (2, P, H) | None, h0 (2, B, P) | None,
            c0 (2, B, H) | None, order, lengths, cell_clip, proj_clip, save)
        -> y (B, L, 2, P), h_n (2, B, P), c_n (2, B, H), and what the backward reads (each empty unless ``save``):
           the gate activations, the unclipped cells, m (with a projection), the unclipped projections (with
           proj_clip), in the schedule's own layout
    backward(dy, dh_n, dc_n, y, <the four saved tensors>, weight_hh, weight_proj, h0, c0, order, lengths,
             cell_clip, proj_clip, need_weight_hh, need_weight_proj)
        -> d_gates (B, L, 2, 4H), d_weight_hh (2, 4H, P) or (0,), d_weight_proj (2, P, H) or (0,), d_h0, d_c0

in the schedule's compute dtype (fp32, or fp64 for fp64 inputs). The registered autograd casts each gradient to its
input's dtype; the entry point returned by ``register_bilstm_ops`` casts y and the final state to the dtype of gates.
"""

from __future__ import annotations

import torch

from ..dispatch import register_op

__all__ = ["register_bilstm_ops"]


def register_bilstm_ops(name: str, forward_impl, forward_fake, backward_impl):
    """Register ``bizoo::<name>_forward`` (with its autograd) and ``bizoo::<name>_backward`` once per process, and
    return the schedule's entry point ``run(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip,
    proj_clip) -> (y, (h_n, c_n))``, differentiable in gates, the weights and the initial state."""

    def backward_fake(dy, dh_n, dc_n, y, act, cell, m, h_raw, weight_hh, weight_proj, h0, c0, order, lengths,
                      cell_clip, proj_clip, need_weight_hh, need_weight_proj):
        B, L, _, P = y.shape
        G = weight_hh.shape[1]
        H = G // 4
        new = lambda *shape: y.new_empty(shape)  # noqa: E731  (the compute dtype, as y's)
        d_whh = new(2, G, P) if need_weight_hh else new(0)  # (2, 4H, P)
        d_wp = new(2, P, H) if (need_weight_proj and weight_proj is not None) else new(0)  # (2, P, H)
        return new(B, L, 2, G), d_whh, d_wp, new(2, B, P), new(2, B, H)

    def setup_context(ctx, inputs, output):
        gates, weight_hh, weight_proj, h0, c0, order, lengths, cell_clip, proj_clip, _ = inputs
        y, _, _, act, cell, m, h_raw = output
        ctx.save_for_backward(y, act, cell, m, h_raw, weight_hh, weight_proj, h0, c0, order, lengths)
        ctx.clips = (cell_clip, proj_clip)
        ctx.gates_dtype = gates.dtype
        # the saved activations are the backward's inputs, never a loss's; unused outputs need no zero gradients
        ctx.set_materialize_grads(False)

    def backward(ctx, dy, dh_n, dc_n, d_act, d_cell, d_m, d_h_raw):
        y, act, cell, m, h_raw, weight_hh, weight_proj, h0, c0, order, lengths = ctx.saved_tensors
        need = ctx.needs_input_grad
        dg, d_whh, d_wp, d_h0, d_c0 = backward_op(
            dy, dh_n, dc_n, y, act, cell, m, h_raw, weight_hh, weight_proj, h0, c0, order, lengths, *ctx.clips,
            need[1], need[2],
        )
        return (
            dg.to(ctx.gates_dtype),
            d_whh.to(weight_hh.dtype) if need[1] else None,
            d_wp.to(weight_proj.dtype) if weight_proj is not None and need[2] else None,
            d_h0.to(h0.dtype) if h0 is not None and need[3] else None,
            d_c0.to(c0.dtype) if c0 is not None and need[4] else None,
            None, None, None, None, None,
        )

    register_op(f"{name}_backward", backward_impl, backward_fake, backward_of="bilstm")
    register_op(f"{name}_forward", forward_impl, forward_fake, backward=backward, setup_context=setup_context)
    backward_op = getattr(torch.ops.bizoo, f"{name}_backward")
    forward_op = getattr(torch.ops.bizoo, f"{name}_forward")

    def run(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip):
        h0, c0 = (None, None) if initial_state is None else initial_state
        save = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (gates, weight_hh, weight_proj, h0, c0)
        )  # keep what the backward pass needs only when there will be one
        y, h_n, c_n, *_ = forward_op(gates, weight_hh, weight_proj, h0, c0, order, lengths, cell_clip, proj_clip,
                                     save)  # compute dtype: y (B, L, 2, P), h_n (2, B, P), c_n (2, B, H)
        dtype = gates.dtype
        return y.to(dtype), (h_n.to(dtype), c_n.to(dtype))

    return run
