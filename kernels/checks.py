"""The input checks every op shares; each op's own checks are in its ``<op>/checks.py``.

A check raises ``ValueError`` naming the op, the argument, what it got and what is allowed. Value checks (they read
the data) run only where ``dispatch.reads_values`` allows them: in eager mode on a CPU. Nothing here needs Triton:
the checks of the Triton backend run before any kernel is imported.
"""

from __future__ import annotations

import os

import torch

from .dispatch import reads_values


def shape_of(t) -> str:
    """``t``'s shape as a tuple's text, or its type's name when it is not a tensor: for error messages."""
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def has_shape(t: torch.Tensor, *shapes: tuple) -> bool:
    """Whether ``t``'s shape is one of ``shapes``, compared size by size. While ``torch.compile`` traces with dynamic
    shapes, ``tuple(t.shape) in shapes`` can be False for the right shape (torch 2.13: once the size in ``shapes``
    had been formatted as text, BiGS's kernel check refused its own kernel); ``==`` on each size is traced soundly."""
    return any(t.dim() == len(shape) and all(size == want for size, want in zip(t.shape, shape)) for shape in shapes)


def check_mask_values(op: str, attention_mask: torch.Tensor) -> None:
    """An ``attention_mask`` that is not bool holds only 0 (padding) and 1 (real token); read on a CPU in eager mode
    only (``reads_values``: a host sync per call on CUDA, a graph break while traced)."""
    if attention_mask.dtype != torch.bool and reads_values(attention_mask):
        if ((attention_mask != 0) & (attention_mask != 1)).any():
            raise ValueError(f"{op}: attention_mask must hold only 0 (padding) and 1 (real token)")


def check_triton_device(op: str, tensor: torch.Tensor) -> None:
    """The Triton backend runs on CUDA tensors, or on any tensors under Triton's interpreter (``TRITON_INTERPRET=1``,
    read at every call)."""
    if not tensor.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            f"{op}: backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run the kernels on the CPU, "
            f"slowly); the tensors are on {tensor.device}; use backend='reference' or 'auto'"
        )
