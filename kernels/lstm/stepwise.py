r"""The bidirectional LSTM(P) one step at a time in PyTorch, with its backward pass through time written out.

The same recurrence as ``reference.bilstm_loop`` (which autograd differentiates, and which stays the oracle), for
any clipping and projection: on a CPU it is what a clipped LSTMP runs on. Autograd through the loop records a dozen
small operations per step and replays them one by one; here the forward pass keeps only what the backward pass
reads (the gate activations, the unclipped cells and projections, m, and each step's starting h and c) and the
backward pass walks the steps from last to first with the equations of ``triton_steps.py`` (in inference, when
nothing asks for a gradient, the forward pass keeps nothing):

    dĥ = (dy + dh) · [|ĥ| ≤ proj_clip]          dm = W_pᵀ dĥ (or dĥ)
    dc' = (dc + dm · o (1 - tanh² c)) · [|ĉ| ≤ cell_clip]
    dz = [dc' g · i(1-i);  dc' c_prev · f(1-f);  dc' i · (1-g²);  dm tanh c · o(1-o)]
    dc ← dc' f,   dh ← W_hhᵀ dz

and the weight gradients as two products over all steps at the end. Both directions are batched in every step.
fp32 arithmetic (fp64 for fp64 inputs). The backward is first-order only: under ``create_graph=True`` its gradients
come back right, and differentiating them again (a gradient penalty, a Hessian-vector product) raises an error that
names form "autograd" (``dispatch.first_order_only``); autograd through the saved activations would miss their
dependence on the weights and give a silently partial second derivative.
"""

from __future__ import annotations

import torch

from ..dispatch import first_order_only
from .reference import gather_steps, scatter_steps

__all__ = ["bilstm_stepwise"]


def _clip(x: torch.Tensor, clip: float | None) -> torch.Tensor:
    return x if clip is None else x.clamp(-clip, clip)


class _Saved:
    """What the forward pass keeps for the backward pass, per direction, row and step (in reading order); None in
    inference, where nothing is kept."""

    def __init__(self, a: torch.Tensor, H: int, P: int, projected: bool, clipped: bool):
        _, B, L, G = a.shape
        self.acts = a.new_empty(2, B, L, G)  # σ(i), σ(f), tanh(g), σ(o)
        self.cells = a.new_empty(2, B, L, H)  # unclipped cells
        self.h_prev, self.c_prev = a.new_empty(2, B, L, P), a.new_empty(2, B, L, H)  # each step's starting state
        self.ms = a.new_empty(2, B, L, H) if projected else None
        self.projected = a.new_empty(2, B, L, P) if projected and clipped else None


def _forward_steps(a, w_hh, w_p, h, c, lengths, cell_clip, proj_clip, saved: _Saved | None):
    """The recurrence over the steps of ``a`` (2, B, L, 4H) in reading order from (h, c): the outputs (2, B, L, P)
    and the final (h, c), writing into ``saved`` what the backward pass reads when given."""
    _, B, L, _ = a.shape
    out = a.new_zeros(2, B, L, h.shape[2])
    for s in range(L):
        if saved is not None:
            saved.h_prev[:, :, s], saved.c_prev[:, :, s] = h, c
        z = torch.baddbmm(a[:, :, s], h, w_hh.transpose(1, 2))  # (2, B, 4H)
        i, f, g, o = z.chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_raw = f * c + i * g  # (2, B, H)
        if saved is not None:
            saved.acts[:, :, s] = torch.cat([i, f, g, o], dim=-1)
            saved.cells[:, :, s] = c_raw
        c_new = _clip(c_raw, cell_clip)
        h_new = o * torch.tanh(c_new)  # (2, B, H) = m
        if w_p is not None:
            if saved is not None:
                saved.ms[:, :, s] = h_new
            h_new = torch.bmm(h_new, w_p.transpose(1, 2))  # (2, B, P)
            if saved is not None and saved.projected is not None:
                saved.projected[:, :, s] = h_new
            h_new = _clip(h_new, proj_clip)
        active = (s < lengths)[None, :, None]  # (1, B, 1): rows still reading real tokens
        h, c = torch.where(active, h_new, h), torch.where(active, c_new, c)
        out[:, :, s] = torch.where(active, h_new, torch.zeros_like(h_new))
    return out, h, c


def _prepared(gates, weight_hh, weight_proj, h0, c0, order):
    """(the gates in reading order (2, B, L, 4H), W_hh, W_p, h0, c0) in the compute dtype (fp64 for fp64 gates)."""
    B, _, _, G = gates.shape
    compute = torch.float64 if gates.dtype == torch.float64 else torch.float32
    a = gather_steps(gates.to(compute), order)  # (2, B, L, 4H) in reading order
    w_hh = weight_hh.to(compute)  # (2, 4H, P)
    w_p = None if weight_proj is None else weight_proj.to(compute)  # (2, P, H)
    h = a.new_zeros(2, B, weight_hh.shape[2]) if h0 is None else h0.to(compute)
    c = a.new_zeros(2, B, G // 4) if c0 is None else c0.to(compute)
    return a, w_hh, w_p, h, c


class _StepwiseBiLstm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates, weight_hh, weight_proj, h0, c0, order, lengths, cell_clip, proj_clip):
        a, w_hh, w_p, h, c = _prepared(gates, weight_hh, weight_proj, h0, c0, order)
        saved = _Saved(a, c.shape[2], h.shape[2], w_p is not None, proj_clip is not None)
        out, h, c = _forward_steps(a, w_hh, w_p, h, c, lengths, cell_clip, proj_clip, saved)
        ctx.save_for_backward(saved.acts, saved.cells, saved.h_prev, saved.c_prev, saved.ms, saved.projected, w_hh,
                              w_p, order, lengths)
        ctx.meta = (cell_clip, proj_clip, gates.dtype, weight_hh.dtype,
                    None if weight_proj is None else weight_proj.dtype, None if h0 is None else h0.dtype,
                    None if c0 is None else c0.dtype)
        dtype = gates.dtype
        return scatter_steps(out, order).to(dtype), h.to(dtype), c.to(dtype)

    @staticmethod
    @first_order_only("bilstm form='loop'", "use form='autograd' (or 'native' without clipping), which autograd "
                      "differentiates again")
    def backward(ctx, dy, dh_n, dc_n):
        acts, cells, h_prev, c_prev, ms, projected, w_hh, w_p, order, lengths = ctx.saved_tensors
        cell_clip, proj_clip, g_dtype, whh_dtype, wp_dtype, h0_dtype, c0_dtype = ctx.meta
        _, B, L, G = acts.shape
        H, P = G // 4, w_hh.shape[2]
        dy = acts.new_zeros(2, B, L, P) if dy is None else gather_steps(dy.to(acts.dtype), order)  # reading order
        dh = acts.new_zeros(2, B, P) if dh_n is None else dh_n.to(acts.dtype).clone()
        dc = acts.new_zeros(2, B, H) if dc_n is None else dc_n.to(acts.dtype).clone()
        dz_all = acts.new_zeros(2, B, L, G)
        dproj_all = acts.new_zeros(2, B, L, P) if w_p is not None else None
        for s in reversed(range(L)):
            active = (s < lengths)[None, :, None]  # (1, B, 1)
            d_out = dy[:, :, s] + dh  # (2, B, P)
            if projected is not None:
                d_out = d_out * (projected[:, :, s].abs() <= proj_clip)
            if w_p is not None:
                dproj_all[:, :, s] = torch.where(active, d_out, torch.zeros_like(d_out))
                dm = torch.bmm(d_out, w_p)  # (2, B, H): W_pᵀ dĥ
            else:
                dm = d_out
            i, f, g, o = acts[:, :, s].chunk(4, dim=-1)
            c_raw = cells[:, :, s]
            tc = torch.tanh(_clip(c_raw, cell_clip))
            dct = dc + dm * o * (1 - tc * tc)
            if cell_clip is not None:
                dct = dct * (c_raw.abs() <= cell_clip)
            dz = torch.cat([dct * g * i * (1 - i), dct * c_prev[:, :, s] * f * (1 - f), dct * i * (1 - g * g),
                            dm * tc * o * (1 - o)], dim=-1)  # (2, B, 4H)
            dz = torch.where(active, dz, torch.zeros_like(dz))
            dz_all[:, :, s] = dz
            dc = torch.where(active, dct * f, dc)
            dh = torch.where(active, torch.bmm(dz, w_hh), dh)  # (2, B, P): W_hhᵀ dz
        grad_gates = scatter_steps(dz_all, order).to(g_dtype)  # (B, L, 2, 4H), zeros at padding
        grad_whh = torch.einsum("dblg,dblp->dgp", dz_all, h_prev).to(whh_dtype) if ctx.needs_input_grad[1] else None
        grad_wp = None
        if w_p is not None and ctx.needs_input_grad[2]:
            grad_wp = torch.einsum("dblp,dblh->dph", dproj_all, ms).to(wp_dtype)
        grad_h0 = dh.to(h0_dtype) if h0_dtype is not None else None
        grad_c0 = dc.to(c0_dtype) if c0_dtype is not None else None
        return grad_gates, grad_whh, grad_wp, grad_h0, grad_c0, None, None, None, None


def bilstm_stepwise(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip):
    """gates (B, L, 2, 4H) = W_ih x + b, weights as in ``reference.py``, order/lengths from ``reading_orders`` ->
    y (B, L, 2, P), (h_n (2, B, P), c_n (2, B, H)); differentiable in gates, weights and the initial state."""
    h0, c0 = (None, None) if initial_state is None else initial_state
    inputs = (gates, weight_hh, weight_proj, h0, c0)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        y, h_n, c_n = _StepwiseBiLstm.apply(*inputs, order, lengths, cell_clip, proj_clip)
        return y, (h_n, c_n)
    # inference: the same steps, nothing kept for a backward pass
    a, w_hh, w_p, h, c = _prepared(*inputs, order)
    out, h, c = _forward_steps(a, w_hh, w_p, h, c, lengths, cell_clip, proj_clip, None)
    return scatter_steps(out, order).to(gates.dtype), (h.to(gates.dtype), c.to(gates.dtype))
