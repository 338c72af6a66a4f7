"""LION attention: the input checks of the op (every backend) and the limits of its Triton kernels.

``check_inputs`` runs before any work on every backend: q, k, v 4-D tensors (B, H, L, D) of one floating dtype on
one device with matching (B, H, L) and Dk >= 1; ``log_decay`` None, (H,) or (B, H, L), finite and <= 0 at the real
positions; ``attention_mask`` (B, L) of 0/1; a known form and a positive int chunk size. ``check_triton_inputs``
adds what the Triton kernels support. Value checks run on a CPU in eager mode only (``dispatch.reads_values``).
Every error is a ``ValueError`` naming the argument, its value and what is allowed.
"""

from __future__ import annotations

import torch

from ..checks import check_mask_values, check_triton_device
from ..dispatch import reads_values

FORMS = ("attention", "rnn", "chunk")  # the forms of the op (``reference.py``)
SCHEDULES = ("attention", "chunk")  # the forms with Triton kernels: "attention" = the parallel (tiled) schedule
CHUNK_SIZES = (16, 32, 64, 128)  # the chunk sizes of the Triton chunk schedule
# Dk and Dv of the Triton kernels. At 256 no block of the chunk schedule fits even an H100's 227 KB of shared memory
# per block (bf16, chunk 64: the backward needs 320 KB), and every size above 128 is tiled as 256; at 128 the bf16
# chunk-64 backward needs 161 KB (sm_90 builds: `bizoo bench kernel-build`'s driver).
MAX_HEAD_DIM = 128


def check_inputs(q, k, v, log_decay, attention_mask, form, chunk_size) -> None:
    """Validate shapes, dtypes and options; raise ``ValueError`` naming the argument, its value and what is allowed."""
    _check_qkv(q, k, v)
    B, H, L, _ = q.shape
    if log_decay is not None:
        _check_log_decay(log_decay, attention_mask, q.device, B, H, L)
    if attention_mask is not None:
        _check_attention_mask(attention_mask, q.device, B, L)
    if form not in FORMS:
        raise ValueError(f"lion_attention: form must be one of {FORMS}, got {form!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"lion_attention: chunk_size must be a positive int, got {chunk_size!r}")


def _check_qkv(q, k, v) -> None:
    """q, k (B, H, L, Dk) and v (B, H, L, Dv): tensors of one floating dtype on q's device, Dk >= 1."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"lion_attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"lion_attention: {name} must have 4 dims (B, H, L, D), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"lion_attention: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"lion_attention: {name} is on {t.device} but q is on {q.device}")
    if len({q.dtype, k.dtype, v.dtype}) != 1:
        raise ValueError(
            f"lion_attention: q, k and v must have one dtype (every backend computes them together), got "
            f"{q.dtype}, {k.dtype}, {v.dtype}; cast q and k to v.dtype"
        )
    if k.shape != q.shape:
        raise ValueError(f"lion_attention: k must have the shape of q {tuple(q.shape)}, got {tuple(k.shape)}")
    if q.shape[-1] < 1:
        raise ValueError(f"lion_attention: q and k must have a head size Dk >= 1, got shape {tuple(q.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"lion_attention: v must be (B, H, L, Dv) with (B, H, L) = {tuple(q.shape[:3])}, got {tuple(v.shape)}"
        )


def _check_log_decay(log_decay, attention_mask, device, B: int, H: int, L: int) -> None:
    """log λ: a floating tensor on ``device`` of shape (H,) (LION-D) or (B, H, L) (LION-S); on a CPU in eager mode,
    finite and <= 0 at the real positions (what padded positions hold takes no part, so it is not checked)."""
    if not isinstance(log_decay, torch.Tensor) or not log_decay.is_floating_point():
        got = log_decay.dtype if isinstance(log_decay, torch.Tensor) else type(log_decay).__name__
        raise ValueError(f"lion_attention: log_decay must be None or a floating-point tensor, got {got}")
    if log_decay.device != device:
        raise ValueError(f"lion_attention: log_decay is on {log_decay.device} but q is on {device}")
    shape = tuple(log_decay.shape)  # compared by length first: no guard on the batch size when traced
    if not ((len(shape) == 1 and shape[0] == H) or (len(shape) == 3 and shape == (B, H, L))):
        raise ValueError(
            f"lion_attention: log_decay must be None (LIT), ({H},) (D: one per head) or ({B}, {H}, {L}) "
            f"(S: one per token and head), got shape {tuple(log_decay.shape)}"
        )
    if reads_values(log_decay):  # not on CUDA (a host sync per call) nor while compiling (a graph break)
        mask_fits = isinstance(attention_mask, torch.Tensor) and attention_mask.shape == (B, L)
        if log_decay.dim() == 3 and mask_fits and attention_mask.device == log_decay.device:
            # what padded positions hold takes no part, so it is not checked either
            log_decay = torch.where(attention_mask.to(torch.bool)[:, None, :], log_decay, 0.0)
        if not torch.isfinite(log_decay).all():
            raise ValueError("lion_attention: log_decay must be finite (log λ with λ in (0, 1])")
        if (log_decay > 0).any():
            raise ValueError(
                f"lion_attention: log_decay must be <= 0 (λ = exp(log_decay) in (0, 1]), "
                f"got a maximum of {log_decay.max().item():.4g}"
            )


def _check_attention_mask(attention_mask, device, B: int, L: int) -> None:
    """(B, L) on ``device``, bool, integer or float, holding 0/1 (values read on a CPU in eager mode)."""
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, L):
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
        raise ValueError(f"lion_attention: attention_mask must have shape (B, L) = ({B}, {L}), got {shape}")
    if attention_mask.device != device:
        raise ValueError(f"lion_attention: attention_mask is on {attention_mask.device} but q is on {device}")
    if attention_mask.is_complex():
        raise ValueError(
            f"lion_attention: attention_mask must be bool, integer or float 0/1, got {attention_mask.dtype}"
        )
    check_mask_values("lion_attention", attention_mask)


def triton_limit(q, k, v, form: str, chunk_size: int) -> str | None:
    """What the Triton kernels cannot do with these inputs (already accepted by ``check_inputs``), as the error's
    message, or None where they can; the device is not looked at (``check_triton_device``)."""
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or len({q.dtype, k.dtype, v.dtype}) != 1:
        return (
            f"lion_attention: backend='triton' takes q, k, v of one dtype among float32, float16 and bfloat16, got "
            f"{q.dtype}, {k.dtype}, {v.dtype}"
        )
    if max(q.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        return (
            f"lion_attention: backend='triton' supports head sizes up to {MAX_HEAD_DIM}, got Dk={q.shape[-1]}, "
            f"Dv={v.shape[-1]}; use backend='reference'"
        )
    if form not in SCHEDULES:
        return (
            f"lion_attention: backend='triton' has the forms {SCHEDULES} (and 'auto'); form={form!r} runs on "
            "backend='reference'"
        )
    if form == "chunk" and chunk_size not in CHUNK_SIZES:
        return f"lion_attention: backend='triton' needs chunk_size in {CHUNK_SIZES}, got {chunk_size}"
    return None


def check_triton_inputs(q, k, v, form: str, chunk_size: int) -> None:
    """What the Triton kernels support (on inputs ``check_inputs`` accepted); ``ValueError`` naming the limit."""
    check_triton_device("lion_attention", q)
    message = triton_limit(q, k, v, form, chunk_size)
    if message is not None:
        raise ValueError(message)
