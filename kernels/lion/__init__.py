"""LION bidirectional linear attention: the public op and its backend dispatch.

``lion_attention(q, k, v, log_decay=None, attention_mask=None, *, form="chunk", chunk_size=64, normalize=True,
backend="auto")``: the math, the three forms and the shapes are documented in ``reference.py`` beside this file.
"""

from __future__ import annotations

import torch

from ..dispatch import resolve_backend
from . import reference
from .reference import FORMS

__all__ = ["lion_attention", "FORMS"]


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
        form: "attention" (L×L matrix), "rnn" (two recurrences) or "chunk" (linear in L).
        chunk_size: chunk length of the chunk form.
        normalize: apply the row-sum normaliser.
        backend: "auto", "triton" or "reference" (see ``bizoo.kernels.dispatch``).

    Returns:
        (B, H, L, Dv) in the dtype of v, zeros at padded positions.
    """
    resolve_backend(backend, q, op="lion_attention", has_triton=False)
    return reference.lion_attention(
        q, k, v, log_decay, attention_mask, form=form, chunk_size=chunk_size, normalize=normalize
    )
