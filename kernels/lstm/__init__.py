"""The bidirectional LSTM (optionally LSTMP: projection and clipping): one public op and its schedule dispatch.

* ``bilstm(x, weight_ih, weight_hh, bias=None, weight_proj=None, attention_mask=None, initial_state=None, *,
  cell_clip=None, proj_clip=None, final_state=True, backend="auto", form="auto") -> (y, final)``
* ``reading_orders``, ``input_gates``: the pieces every schedule shares (see ``reference.py``).

The math and the shapes are in ``reference.py``, the input checks in ``checks.py``; the fused kernels in
``triton_lstm.py``.

Schedules: backend "triton" (one persistent launch for both directions, forward and backward passes as kernels;
CUDA, or any device under ``TRITON_INTERPRET=1``) and backend "reference" with three forms: "loop" (one step at a
time in PyTorch with the backward pass through time written out, ``stepwise.py``: any clipping), "native"
(``torch.lstm``: cuDNN on a GPU, ATen on a CPU; no clipping, a projection only to fewer outputs than cells) and
"autograd" (``reference.bilstm_loop`` differentiated by autograd: the oracle); form "auto" takes "native" where it
can, else "loop".

``backend="auto"``: on CUDA, the fused kernel for a clipped LSTMP (cuDNN cannot clip; the alternative is the
per-step loop) and for an unclipped LSTM only where ``TRITON_BEATS_CUDNN`` says the benchmark (``bizoo bench
lstm``) measured it at least as fast as cuDNN; else the reference backend with form "auto". ``BIZOO_KERNEL_BACKEND``
overrides it (see ``bizoo.kernels.dispatch``).
"""

from __future__ import annotations

import os

import torch

from .. import dispatch
from ..dispatch import ENV_VAR, resolve_backend
from . import reference
from .checks import check_inputs
from .native import bilstm_native
from .reference import bilstm_loop, input_gates, reading_orders
from .stepwise import bilstm_stepwise

try:  # Triton is optional: without it the "triton" backend is simply absent
    from .triton_lstm import bilstm_triton
except ImportError:
    bilstm_triton = None

__all__ = ["bilstm", "reading_orders", "input_gates", "FORMS", "TRITON_BEATS_CUDNN"]

FORMS = ("auto", "loop", "native", "autograd")

# Where "auto" prefers the fused kernel to cuDNN for an LSTM without clipping: a predicate of (hidden size H,
# batch B), None for nowhere. Measured on an NVIDIA H200 (`bizoo bench lstm`, fp32, B = 32 and 128, L = 32 to 512,
# H = 100 to 512): the kernel reached 0.06x to 0.5x of torch.nn.LSTM's (cuDNN) time at every shape, so nowhere.
TRITON_BEATS_CUDNN = None


def _pick(backend: str, x: torch.Tensor, clipped: bool, hidden: int) -> str:
    has_triton = bilstm_triton is not None
    if backend == "auto" and os.environ.get(ENV_VAR, "").strip().lower() in ("", "auto"):  # no override
        # "auto" offers the kernel only where it wins: for clipping, else where TRITON_BEATS_CUDNN says so.
        wins = clipped or (TRITON_BEATS_CUDNN is not None and TRITON_BEATS_CUDNN(hidden, x.shape[0]))
        has_triton = has_triton and wins
    return resolve_backend(backend, x, op="bilstm", has_triton=has_triton)


def bilstm(
    x: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias: torch.Tensor | None = None,
    weight_proj: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    final_state: bool = True,
    backend: str = "auto",
    form: str = "auto",
):
    """One bidirectional LSTM(P) layer over the real tokens of each row (the math: ``reference.py``).

    Args:
        x: (B, L, I), the input of both directions, or (B, L, 2, I), one input per direction.
        weight_ih: (2, 4H, I); weight_hh: (2, 4H, P); bias: (2, 4H) or None (torch's b_ih + b_hh); gate rows in
            the order i, f, g, o; direction 0 forward, 1 backward.
        weight_proj: (2, P, H) or None (no projection, P = H).
        attention_mask: (B, L), 1 for real tokens and 0 for padding (any layout), or None.
        initial_state: (h_0 (2, B, P), c_0 (2, B, H)) or None (zeros).
        cell_clip, proj_clip: clip the cell / the projected output to ±clip, or None.
        final_state: return the final states (the native form then runs packed sequences when lengths differ).
        backend: "auto", "triton" or "reference". form: "auto", "loop", "native" or "autograd" (reference backend).

    Returns:
        (y (B, L, 2, P) in the dtype of x, zeros at padding; (h_n (2, B, P), c_n (2, B, H)) or None).
    """
    op = "bilstm"
    B, L, H, _ = check_inputs(
        op, x, weight_ih, weight_hh, bias, weight_proj, attention_mask, initial_state, cell_clip, proj_clip
    )
    if form not in FORMS:
        raise ValueError(f"{op}: form must be one of {FORMS}, got {form!r}")
    clipped = cell_clip is not None or proj_clip is not None
    if form == "native" and clipped:
        raise ValueError(f"{op}: form='native' (torch.lstm) cannot clip; use form='loop' or backend='triton'")
    square = weight_proj is not None and weight_proj.shape[1] == H  # torch.lstm needs outputs < cells to project
    if form == "native" and square:
        raise ValueError(f"{op}: form='native' (torch.lstm) projects only to fewer outputs than cells; use form='loop'")
    backend = _pick(backend, x, clipped, H)
    if backend == "triton" and form != "auto":
        raise ValueError(f"{op}: form={form!r} is a reference-backend form; backend='triton' takes form='auto'")
    if B == 0 or L == 0:  # nothing to run: no outputs, the initial state is the final one
        P = weight_hh.shape[2]
        y = x.new_zeros(B, L, 2, P)
        if not final_state:
            return y, None
        return y, (initial_state if initial_state is not None else (x.new_zeros(2, B, P), x.new_zeros(2, B, H)))
    order, lengths = reading_orders(attention_mask, B, L, x.device)
    if dispatch.exporting():  # every schedule as one scan over the positions: an exported graph of any length
        gates = input_gates(x, weight_ih, bias)  # (B, L, 2, 4H)
        y, final = reference.bilstm_scan(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip,
                                         proj_clip)
        return y, (final if final_state else None)
    if backend == "reference" and (form == "native" or (form == "auto" and not clipped and not square)):
        return bilstm_native(x, weight_ih, weight_hh, bias, weight_proj, order, lengths, initial_state, final_state)
    gates = input_gates(x, weight_ih, bias)  # (B, L, 2, 4H): every step's input projection in one product
    run = bilstm_triton if backend == "triton" else bilstm_loop if form == "autograd" else bilstm_stepwise
    y, final = run(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip)
    return y, (final if final_state else None)
