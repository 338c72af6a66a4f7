"""The bidirectional LSTM (optionally LSTMP: projection and clipping): one public op and its schedule dispatch.

* ``bilstm(x, weight_ih, weight_hh, bias=None, weight_proj=None, attention_mask=None, initial_state=None, *,
  cell_clip=None, proj_clip=None, final_state=True, backend="auto", form="auto") -> (y, final)``
* ``reading_orders``, ``input_gates``: the pieces every schedule shares (see ``reference.py``).

The math and the shapes are in ``reference.py``, the input checks in ``checks.py``; the Triton schedule in
``triton_steps.py``.

Schedules: backend "triton" (CUDA, or any device under ``TRITON_INTERPRET=1``) with the form "steps" (per step one
batched cuBLAS product for both directions and one fused Triton kernel for the gates and the cell, another product
and kernel for a projection; optionally the step loop in a CUDA graph; ``triton_steps.py``); its form "auto" is
"steps". Backend "reference" with three forms: "loop" (one step at a time in PyTorch with the backward pass through
time written out, ``stepwise.py``: any clipping), "native" (``torch.lstm``: cuDNN on a GPU, ATen on a CPU; no
clipping, a projection only to fewer outputs than cells) and "autograd" (``reference.bilstm_loop`` differentiated by
autograd: the oracle); its form "auto" takes "native" where it can, else "loop". With ``backend="auto"`` a form other
than "auto" names its backend ("steps" Triton's, the others the reference's).

``backend="auto"`` with form "auto": on CUDA, what cuDNN cannot run (clipping, or a projection to as many outputs as
cells) takes the "steps" schedule, whose per-step cost is one tensor-core product (not yet timed on a GPU; to be set
from ``bizoo bench lstm`` part lstmp, against the per-step loop and cuDNN's unclipped LSTMP); an unclipped LSTM
takes cuDNN (``torch.lstm``); everything else the reference backend with form "auto". ``BIZOO_KERNEL_BACKEND``
overrides the backend (see ``bizoo.kernels.dispatch``; "triton" then means form "steps").

A fused persistent kernel (one launch per pass for both directions, the recurrent weights re-read from global memory
by every program at every step, fp32 without tensor cores) was measured on an NVIDIA H200 (``bizoo bench lstm``, fp32,
B = 32 and 128, H = 100 to 512, L = 32 to 512) at 0.06x to 0.22x forward and 0.09x to 0.51x forward+backward of
cuDNN's time at every shape, and removed: a Triton schedule for the unclipped LSTM comes back only with a benchmark
that shows it at least as fast as cuDNN.
"""

from __future__ import annotations

import os

import torch

from .. import dispatch
from ..checks import check_triton_device
from ..dispatch import ENV_VAR, resolve_backend
from . import reference
from .checks import check_inputs
from .native import bilstm_native
from .reference import bilstm_loop, input_gates, reading_orders
from .stepwise import bilstm_stepwise

try:  # Triton is optional: without it the "triton" backend is simply absent
    from .triton_steps import bilstm_triton_steps
except ImportError:
    bilstm_triton_steps = None

__all__ = ["bilstm", "reading_orders", "input_gates", "FORMS", "TRITON_FORMS"]

FORMS = ("auto", "loop", "native", "autograd")  # the reference backend's
TRITON_FORMS = ("auto", "steps")  # the Triton backend's ("auto": "steps")


def auto_triton_form(clipped: bool, square: bool) -> str | None:
    """The Triton form ``backend="auto"`` takes on CUDA, or None for the reference backend: "steps" for what cuDNN
    cannot run (clipping, a projection to as many outputs as cells), whose alternative is the per-step loop (not yet
    timed; to be set from ``bizoo bench lstm`` part lstmp); None for an unclipped LSTM, which cuDNN runs."""
    return "steps" if clipped or square else None


def _pick(backend: str, form: str, x: torch.Tensor, clipped: bool, square: bool) -> tuple[str, str]:
    """(backend, form): "triton" with "steps", or "reference" with one of its forms."""
    op = "bilstm"
    if backend == "auto" and form != "auto":  # the form names its backend
        backend = "triton" if form in TRITON_FORMS else "reference"
    if backend == "auto" and os.environ.get(ENV_VAR, "").strip().lower() in ("", "auto"):  # no override
        # "auto" offers Triton only for what cuDNN cannot run: see auto_triton_form
        chosen = auto_triton_form(clipped, square)
        has_triton = chosen is not None and bilstm_triton_steps is not None
        backend = resolve_backend(backend, x, op=op, has_triton=has_triton)
        return (backend, chosen) if backend == "triton" else (backend, form)
    backend = resolve_backend(backend, x, op=op, has_triton=bilstm_triton_steps is not None)
    if backend == "triton":
        if form not in TRITON_FORMS:
            raise ValueError(f"{op}: form={form!r} is a reference-backend form; backend='triton' takes form='auto' "
                             "or 'steps'")
        return backend, "steps"
    if form not in FORMS:
        raise ValueError(f"{op}: form={form!r} is a Triton schedule; backend='reference' takes form='auto', 'loop', "
                         "'native' or 'autograd'")
    return backend, form


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
        attention_mask: (B, L), 1 for real tokens and 0 for padding (any layout), or None. What x holds at padding
            (even NaN or inf) reaches neither the outputs nor any gradient: it is read as 0.
        initial_state: (h_0 (2, B, P), c_0 (2, B, H)) or None (zeros).
        cell_clip, proj_clip: clip the cell / the projected output to ±clip, or None.
        final_state: return the final states (the native form then runs packed sequences when lengths differ).
        backend: "auto", "triton" or "reference". form: "auto"; "steps" (Triton backend); "loop",
            "native" or "autograd" (reference backend). See the module docstring.

    Returns:
        (y (B, L, 2, P) in the dtype of x, zeros at padding; (h_n (2, B, P), c_n (2, B, H)) or None).
    """
    op = "bilstm"
    B, L, H, _ = check_inputs(
        op, x, weight_ih, weight_hh, bias, weight_proj, attention_mask, initial_state, cell_clip, proj_clip
    )
    if form not in FORMS and form not in TRITON_FORMS:
        raise ValueError(f"{op}: form must be one of {FORMS}, got {form!r} (backend='triton': one of {TRITON_FORMS})")
    clipped = cell_clip is not None or proj_clip is not None
    if form == "native" and clipped:
        raise ValueError(f"{op}: form='native' (torch.lstm) cannot clip; use form='loop' or backend='triton'")
    square = weight_proj is not None and weight_proj.shape[1] == H  # torch.lstm needs outputs < cells to project
    if form == "native" and square:
        raise ValueError(f"{op}: form='native' (torch.lstm) projects only to fewer outputs than cells; use form='loop'")
    backend, form = _pick(backend, form, x, clipped, square)
    if backend == "triton":
        check_triton_device(op, x)  # CUDA tensors, or any under TRITON_INTERPRET=1: not Triton's driver error
    if B == 0 or L == 0:  # nothing to run: no outputs, the initial state is the final one
        P = weight_hh.shape[2]
        y = x.new_zeros(B, L, 2, P)
        if not final_state:
            return y, None
        return y, (initial_state if initial_state is not None else (x.new_zeros(2, B, P), x.new_zeros(2, B, H)))
    if attention_mask is not None:
        # torch.where, not a product: every schedule forms W_ih x at every position (and torch.lstm runs on over the
        # padding after a row's real steps), so a NaN there would reach dW_ih (0 · NaN) and the real positions'
        # gradients through the steps after them
        keep = attention_mask.to(torch.bool)[(...,) + (None,) * (x.dim() - 2)]  # (B, L, 1) or (B, L, 1, 1)
        x = torch.where(keep, x, 0.0)
    order, lengths = reading_orders(attention_mask, B, L, x.device)
    if dispatch.exporting():  # every schedule as one scan over the positions: an exported graph of any length
        gates = input_gates(x, weight_ih, bias)  # (B, L, 2, 4H)
        y, final = reference.bilstm_scan(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip,
                                         proj_clip)
        return y, (final if final_state else None)
    if backend == "reference" and (form == "native" or (form == "auto" and not clipped and not square)):
        return bilstm_native(x, weight_ih, weight_hh, bias, weight_proj, order, lengths, initial_state, final_state)
    gates = input_gates(x, weight_ih, bias)  # (B, L, 2, 4H): every step's input projection in one product
    if backend == "triton":
        run = bilstm_triton_steps
    else:
        run = bilstm_loop if form == "autograd" else bilstm_stepwise
    y, final = run(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip)
    return y, (final if final_state else None)
