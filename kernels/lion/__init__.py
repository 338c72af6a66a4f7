"""LION bidirectional linear attention: the public op and its backend and schedule dispatch.

``lion_attention(q, k, v, log_decay=None, attention_mask=None, *, form="chunk", chunk_size=64, normalize=True,
backend="auto")``: the math, the forms and the shapes are documented in ``reference.py`` beside this file, the
input checks (every backend's, and the Triton kernels' limits) in ``checks.py``; the Triton op in ``triton_op.py``:
the chunk schedule ``triton_chunk.py`` (custom ops ``bizoo::lion_chunk_forward`` and ``bizoo::lion_chunk_backward``)
and, for form "attention", the tiled schedule ``triton_parallel.py`` (custom ops ``bizoo::lion_parallel_forward``
and ``bizoo::lion_parallel_backward``).

Forms: "attention" (the L×L form; on Triton the tiled parallel schedule, which never builds the matrix),
"chunk" (linear in L), "rnn" (two recurrences; reference backend only) and "auto", which takes "attention"
below a length crossover and "chunk" from it on. The crossovers are measured with ``bizoo bench lion-crossover``.
"""

from __future__ import annotations

import torch

from ..dispatch import resolve_backend
from . import reference
from .checks import FORMS, check_inputs, triton_limit

try:  # Triton is optional: without it the "triton" backend is simply absent
    from .triton_op import lion_attention_triton
except ImportError:
    lion_attention_triton = None

__all__ = ["lion_attention", "FORMS", "REFERENCE_CHUNK_MIN_LENGTH", "TRITON_CHUNK_MIN_LENGTH"]

# form="auto": the chunk form from this length on, the attention form below it.
# Reference (PyTorch, CPU): measured on a 2-core AMD EPYC VM (`bizoo bench lion-crossover`, forward+backward,
# B·L = 32768, H = 12, D = 64, fp32): the attention form wins at L = 128 (0.60x), the chunk form from L = 256 on
# (1.26x at 256, 2.1x at 512, 7.9x at 2048).
REFERENCE_CHUNK_MIN_LENGTH = 256
# Triton: measured on an NVIDIA H200 (`bizoo bench lion-crossover`, forward+backward, bf16, B·L = 32768, H = 12,
# D = 64, decay s): the parallel (attention) schedule wins at L = 128 (chunk/attention 0.99x), the chunk schedule
# from L = 256 on (1.06x at 256, 1.37x at 512, 2.0x at 1024, 5.1x at 4096).
TRITON_CHUNK_MIN_LENGTH = 256


def lion_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    form: str = "chunk",
    chunk_size: int = 64,
    normalize: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """Bidirectional linear attention with decay, y = (((q kᵀ) ⊙ M) v) / row sums (see ``reference.py``).

    Args:
        q, k: (B, H, L, Dk) after the feature map; v: (B, H, L, Dv).
        log_decay: None (LION-LIT), (H,) (LION-D) or (B, H, L) (LION-S); log λ <= 0.
        attention_mask: (B, L) with 1 for real tokens, 0 for padding; or None.
        form: "attention", "chunk", "rnn" or "auto" (by length).
        chunk_size: chunk length of the chunk form (a power of two from 16 to 128 on Triton).
        normalize: apply the row-sum normaliser.
        backend: "auto", "triton" or "reference" (see ``bizoo.kernels.dispatch``). "auto" takes the reference
            where the Triton kernels cannot run the inputs (fp64, head sizes above 128, a chunk_size outside
            16/32/64/128 for the chunk form), unless ``BIZOO_KERNEL_BACKEND=triton`` asks for Triton.

    Returns:
        (B, H, L, Dv) in the dtype of v, zeros at padded positions; empty when B or L is 0.

    Raises:
        ValueError: naming the argument and what is allowed, before any work: q, k, v not 4-D tensors of one
            floating dtype on one device with matching (B, H, L) (and Dk >= 1), a log_decay or attention_mask of
            another shape or device (or, on a CPU, a log_decay that is not finite and <= 0, a mask that is not 0/1),
            an unknown form or backend, a chunk_size that is not a positive int.
    """
    if form not in FORMS + ("auto",):
        raise ValueError(f"lion_attention: form must be one of {FORMS + ('auto',)}, got {form!r}")
    if not isinstance(normalize, bool):
        raise ValueError(f"lion_attention: normalize must be True or False, got {normalize!r}")
    # Every check before the backend is picked (it reads q's device): "auto" becomes "attention" or "chunk",
    # which take the same inputs.
    check_inputs(q, k, v, log_decay, attention_mask, "chunk" if form == "auto" else form, chunk_size)
    # "rnn" has no Triton schedule: "auto" then stays on the reference backend.
    has_triton = lion_attention_triton is not None and form != "rnn"
    if backend == "triton" and lion_attention_triton is not None and form == "rnn":
        raise ValueError("lion_attention: form='rnn' runs on backend='reference' only; use 'chunk' on Triton")
    # Nor does "auto" pick Triton for what its kernels cannot do (a chunk_size outside CHUNK_SIZES, head sizes above
    # MAX_HEAD_DIM, fp64): the reference computes it. (Asked for by name, Triton says why it cannot.)
    schedule = form
    if form == "auto":
        schedule = "chunk" if q.shape[2] >= TRITON_CHUNK_MIN_LENGTH else "attention"
    limit = triton_limit(q, k, v, schedule, chunk_size) if has_triton else None
    backend = resolve_backend(backend, q, op="lion_attention", has_triton=has_triton, limit=limit)
    if form == "auto":
        crossover = TRITON_CHUNK_MIN_LENGTH if backend == "triton" else REFERENCE_CHUNK_MIN_LENGTH
        form = "chunk" if q.shape[2] >= crossover else "attention"
    if q.shape[0] == 0 or q.shape[2] == 0:  # nothing to compute: the empty (B, H, L, Dv) result, on any backend
        return reference.lion_attention(
            q, k, v, log_decay, attention_mask, form="attention", chunk_size=chunk_size, normalize=normalize
        )
    if backend == "triton":
        return lion_attention_triton(
            q, k, v, log_decay, attention_mask, form=form, chunk_size=chunk_size, normalize=normalize
        )
    return reference.lion_attention(
        q, k, v, log_decay, attention_mask, form=form, chunk_size=chunk_size, normalize=normalize
    )
