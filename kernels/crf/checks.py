"""Linear-chain CRF: the input checks of its ops (every backend) and the limits of its Triton kernels.

``check_inputs`` runs before any work on every backend: ``emissions`` (B, L, K) floating with K >= 1; ``transitions``
(K, K), ``start`` and ``end`` (K,) floating on the emissions' device, finite or -inf; ``mask`` (B, L) bool or
integer 0/1; ``tags`` (B, L) integer in [0, K) or ``IGNORE_INDEX`` at real positions; ``k`` a positive int.
``check_triton_inputs`` adds what the Triton kernels support. Value checks (mask values, tag ranges, NaN/+inf
scores) read the data on a CPU in eager mode only (``dispatch.reads_values``: on a GPU they would cost a host sync on
every call). Every error is a ``ValueError`` naming the argument, what it got and what is allowed.
"""

from __future__ import annotations

import torch

from ..checks import check_triton_device, shape_of
from ..dispatch import reads_values

IGNORE_INDEX = -100  # tags: an unknown tag at a real position (partial annotation), and the padding tag of outputs
NO_K = object()  # check_inputs: the op takes no k (every op but crf_nbest)
NO_TAGS = object()  # check_inputs: the op takes no tags (every op but crf_log_likelihood)
MAX_TAGS = 128  # the most tags of the Triton kernels (a K×K tile in registers)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # the score dtypes of the Triton kernels


def check_inputs(op, emissions, mask, transitions, start, end, tags=NO_TAGS, k=NO_K) -> None:
    """Validate shapes, dtypes and values; raise ``ValueError`` naming the argument, what it got and what is allowed.

    Value checks (mask values, tag ranges, NaN/+inf scores) read the data on the CPU only: on a GPU they would cost
    a host sync on every call.
    """
    if not isinstance(emissions, torch.Tensor):
        raise ValueError(f"{op}: emissions must be a torch.Tensor (B, L, K), got {type(emissions).__name__}")
    if emissions.dim() != 3:
        raise ValueError(f"{op}: emissions must have 3 dims (B, L, K), got shape {shape_of(emissions)}")
    if not emissions.is_floating_point():
        raise ValueError(f"{op}: emissions must be a floating-point tensor, got {emissions.dtype}")
    B, L, K = emissions.shape
    if K < 1:
        raise ValueError(f"{op}: emissions must have at least one tag (K >= 1), got shape {shape_of(emissions)}")
    _check_scores(op, emissions.device, K, transitions, start, end)
    if mask is not None:
        _check_mask(op, mask, emissions.device, B, L)
    if tags is not NO_TAGS:
        _check_tags(op, tags, mask, emissions.device, B, L, K)
    if k is not NO_K and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"{op}: k must be a positive int (the number of best paths), got {k!r}")


def _check_scores(op, device, K: int, transitions, start, end) -> None:
    """transitions (K, K), start and end (K,): floating tensors on ``device``, finite or -inf (values on a CPU)."""
    for name, t, shape in (("transitions", transitions, (K, K)), ("start", start, (K,)), ("end", end, (K,))):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a torch.Tensor of shape {shape}, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise ValueError(
                f"{op}: {name} must have shape {shape} for K = {K} tags (the last dim of emissions), "
                f"got {shape_of(t)}"
            )
        if not t.is_floating_point():
            raise ValueError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != device:
            raise ValueError(f"{op}: {name} is on {t.device} but emissions are on {device}")
        if reads_values(t):
            with torch.no_grad():
                if torch.isnan(t).any() or (t == float("inf")).any():
                    raise ValueError(
                        f"{op}: {name} must hold finite scores or -inf (a banned tag or transition), got NaN or +inf"
                    )


def _check_mask(op, mask, device, B: int, L: int) -> None:
    """(B, L) bool or integer on ``device``, holding 0/1 (values on a CPU)."""
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (B, L):
        raise ValueError(f"{op}: mask must have shape (B, L) = {(B, L)}, got {shape_of(mask)}")
    if mask.is_floating_point() or mask.is_complex():
        raise ValueError(f"{op}: mask must be bool or integer (1 = real position, 0 = padding), got {mask.dtype}")
    if mask.device != device:
        raise ValueError(f"{op}: mask is on {mask.device} but emissions are on {device}")
    if reads_values(mask) and mask.dtype != torch.bool and ((mask != 0) & (mask != 1)).any():
        raise ValueError(f"{op}: mask must hold only 0 (padding) and 1 (real position), got other values")


def _check_tags(op, tags, mask, device, B: int, L: int, K: int) -> None:
    """(B, L) integer on ``device``; at real positions in [0, K) or ``IGNORE_INDEX`` (values on a CPU)."""
    if not isinstance(tags, torch.Tensor) or tuple(tags.shape) != (B, L):
        raise ValueError(f"{op}: tags must have shape (B, L) = {(B, L)}, got {shape_of(tags)}")
    if tags.is_floating_point() or tags.is_complex() or tags.dtype == torch.bool:
        raise ValueError(f"{op}: tags must be an integer tensor, got {tags.dtype}")
    if tags.device != device:
        raise ValueError(f"{op}: tags are on {tags.device} but emissions are on {device}")
    if reads_values(tags):
        real = torch.ones_like(tags, dtype=torch.bool) if mask is None else mask.to(torch.bool)
        bad = real & (tags != IGNORE_INDEX) & ((tags < 0) | (tags >= K))
        if bad.any():
            b, t = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{op}: tags at real positions must be in [0, {K}) or {IGNORE_INDEX} (unknown), got "
                f"{int(tags[b, t])} at (batch {b}, position {t})"
            )


def triton_limit(op: str, emissions, transitions, start, end) -> str | None:
    """What the Triton kernels cannot take among scores of a valid kind (more than ``MAX_TAGS`` tags, a dtype outside
    ``DTYPES``), as the error's message, or None where they can: ``backend="auto"`` then takes a CPU-side backend.
    Arguments that are not tensors are left to the other checks."""
    K = emissions.shape[-1]
    if not 1 <= K <= MAX_TAGS:
        return f"{op}: backend='triton' supports 1 to {MAX_TAGS} tags, got K={K}; use backend='reference'"
    for name, t in (("emissions", emissions), ("transitions", transitions), ("start", start), ("end", end)):
        if isinstance(t, torch.Tensor) and t.dtype not in DTYPES:
            return (
                f"{op}: backend='triton' takes {name} in float32, float16 or bfloat16, got {t.dtype}; "
                "use backend='reference'"
            )
    return None


def check_triton_inputs(op: str, emissions, mask, transitions, start, end) -> None:
    """What the Triton kernels support; ``ValueError`` naming the field, the value and the limit otherwise."""
    if emissions.dim() != 3:
        raise ValueError(f"{op}: emissions must be (B, L, K), got shape {tuple(emissions.shape)}")
    B, L, K = emissions.shape
    if not 1 <= K <= MAX_TAGS:
        raise ValueError(triton_limit(op, emissions, transitions, start, end))
    for name, t, shape in (("transitions", transitions, (K, K)), ("start", start, (K,)), ("end", end, (K,))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {shape} for K={K}, got {tuple(t.shape)}")
    if mask is not None and tuple(mask.shape) != (B, L):
        raise ValueError(f"{op}: mask must have shape (B, L) = {(B, L)}, got {tuple(mask.shape)}")
    message = triton_limit(op, emissions, transitions, start, end)
    if message is not None:
        raise ValueError(message)
    tensors = [emissions, transitions, start, end] + ([mask] if mask is not None else [])
    if len({t.device for t in tensors}) != 1:
        raise ValueError(f"{op}: all inputs must be on one device, got {sorted({str(t.device) for t in tensors})}")
    check_triton_device(op, emissions)
