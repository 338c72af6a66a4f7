"""The S4D state-space model of BiGS: the public ops and their backend and form dispatch.

* ``s4d_kernel(log_step, A_re, A_im, C, length) -> (L,)``: the convolution kernel of one direction's SSM;
* ``s4d_init(N, scaling, generator=None) -> dict``: initial parameters ("hippo", "lin" or "inv");
* ``bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask=None, *, form="auto",
  backend="auto", recurrent_params=None, chunk_size=128) -> (y_fwd, y_bwd)``: the causal SSM over ``u_fwd`` and the
  anti-causal one over ``u_bwd``, each (B, L, H), with kernels (L,) and skips () or (1,);
* ``ssm_conv(u, k, d, attention_mask=None, *, reverse=False, form="auto", ...)``: one direction.

The math, the forms and the padding rule are documented in ``reference.py`` beside this file, the input checks
(every backend's, and the Triton kernels' limits) in ``checks.py``; the fused Triton kernel in ``triton_ssm.py``.

Forms (reference backend): "toeplitz" (an L×L matmul), "fft" (O(L log L)), "recurrent" (the chunked recurrence
from the SSM parameters, linear in L) and "auto", which takes "toeplitz" below a length crossover and "fft" from it
on. Backends: "triton" runs the fused kernel whatever the form ("recurrent" excepted: it is reference-only),
"reference" the forms above, "auto" Triton on CUDA when it imports and takes the inputs (fp32, fp16, bf16:
``checks.triton_limit``), else the reference (``BIZOO_KERNEL_BACKEND`` overrides it, see ``bizoo.kernels.dispatch``).
"""

from __future__ import annotations

import torch

from ..dispatch import resolve_backend
from . import reference
from .checks import FORMS, SCALINGS, check_inputs, triton_limit
from .reference import fft_size, s4d_init, s4d_kernel

try:  # Triton is optional: without it the "triton" backend is simply absent
    from .triton_ssm import bidirectional_ssm_triton
except ImportError:
    bidirectional_ssm_triton = None

__all__ = [
    "bidirectional_ssm",
    "ssm_conv",
    "s4d_kernel",
    "s4d_init",
    "fft_size",
    "FORMS",
    "SCALINGS",
    "REFERENCE_FFT_MIN_LENGTH",
]

# form="auto" on the reference backend: the FFT form from this length on, the Toeplitz form below it.
# Measured on a 2-core AMD EPYC VM (the whole op with both kernels from s4d_kernel, forward+backward, B = 8,
# H = 256, fp32, 2 threads, min and median of 11-15 interleaved runs), time of toeplitz / time of fft:
# L = 128: 0.36-0.38, 256: 0.55-0.75, 512: 0.68-0.87, 640: 0.74-0.85, 768: 1.11-1.67, 1024: 1.09-1.25,
# 1536: 1.6-1.7. The Toeplitz matmul scales with the threads and the FFT barely does: on one thread the
# crossover falls to L ≈ 256-512.
REFERENCE_FFT_MIN_LENGTH = 768


def _resolve_form(op: str, form, length: int) -> str:
    if form not in FORMS + ("auto",):
        raise ValueError(f"{op}: form must be one of {FORMS + ('auto',)}, got {form!r}")
    if form == "auto":
        return "fft" if length >= REFERENCE_FFT_MIN_LENGTH else "toeplitz"
    return form


def bidirectional_ssm(
    u_fwd: torch.Tensor,
    u_bwd: torch.Tensor,
    k_fwd: torch.Tensor | None,
    k_bwd: torch.Tensor | None,
    d_fwd: torch.Tensor,
    d_bwd: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    form: str = "auto",
    backend: str = "auto",
    recurrent_params=None,
    chunk_size: int = 128,
):
    """The causal SSM over ``u_fwd`` and the anti-causal one over ``u_bwd`` (the math: ``reference.py``):

        y_fwd[t] = Σ_{s≤t} k_fwd[t-s] u_fwd[s] + d_fwd u_fwd[t]
        y_bwd[t] = Σ_{s≥t} k_bwd[s-t] u_bwd[s] + d_bwd u_bwd[t]

    Args:
        u_fwd, u_bwd: (B, L, H), the inputs of the two directions over the same, unflipped time axis.
        k_fwd, k_bwd: (L,), the kernels (``s4d_kernel``); may be None for form="recurrent".
        d_fwd, d_bwd: () or (1,), the skips.
        attention_mask: (B, L) with 1 for real tokens and 0 for padding (read as zero inputs), or None.
        form: "fft", "toeplitz", "recurrent" or "auto" (by length).
        backend: "auto", "triton" or "reference" (see ``bizoo.kernels.dispatch``).
        recurrent_params: ((log_step, A_re, A_im, C) forward, (…) backward), needed by form="recurrent".
        chunk_size: chunk length of the recurrent form (1 = step by step).

    Returns:
        (y_fwd, y_bwd), each (B, L, H) in the dtype of its input, zeros at padded positions; empty when B or H is 0
        (L must be at least 1: a kernel has at least one tap).
    """
    op = "bidirectional_ssm"
    if form not in FORMS + ("auto",):
        raise ValueError(f"{op}: form must be one of {FORMS + ('auto',)}, got {form!r}")
    check_inputs(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask, form, recurrent_params, chunk_size)
    if backend == "triton" and bidirectional_ssm_triton is not None and form == "recurrent":
        raise ValueError(f"{op}: form='recurrent' runs on backend='reference' only; use 'fft' or 'auto' on Triton")
    # "recurrent" has no Triton kernel: "auto" then stays on the reference backend.
    has_triton = bidirectional_ssm_triton is not None and form != "recurrent"
    # nor for inputs its kernels do not take (fp64): the reference computes them
    limit = triton_limit(u_fwd, u_bwd) if has_triton else None
    backend = resolve_backend(backend, u_fwd, op=op, has_triton=has_triton, limit=limit)
    if backend == "triton":
        return bidirectional_ssm_triton(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask)
    return reference.bidirectional_ssm(
        u_fwd,
        u_bwd,
        k_fwd,
        k_bwd,
        d_fwd,
        d_bwd,
        attention_mask,
        form=_resolve_form(op, form, u_fwd.shape[1]),
        recurrent_params=recurrent_params,
        chunk_size=chunk_size,
    )


def ssm_conv(
    u: torch.Tensor,
    k: torch.Tensor | None,
    d: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    reverse: bool = False,
    form: str = "auto",
    params=None,
    chunk_size: int = 128,
) -> torch.Tensor:
    """One direction of ``bidirectional_ssm`` (causal, or anti-causal with ``reverse=True``), reference backend.

    Args:
        u: (B, L, H). k: (L,) (may be None for form="recurrent"). d: () or (1,).
        attention_mask: (B, L), 1 for real tokens and 0 for padding, or None.
        form: "fft", "toeplitz", "recurrent" (then ``params=(log_step, A_re, A_im, C)``) or "auto".

    Returns:
        (B, L, H) in the dtype of ``u``, zeros at padded positions.
    """
    length = u.shape[1] if isinstance(u, torch.Tensor) and u.dim() == 3 else 0
    form = _resolve_form("ssm_conv", form, length)
    return reference.ssm_conv(
        u, k, d, attention_mask, reverse=reverse, form=form, params=params, chunk_size=chunk_size
    )
