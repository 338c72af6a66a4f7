"""The bidirectional LSTM(P): the input checks of the op, before any work on every backend.

x (B, L, I) or (B, L, 2, I) floating; weight_ih (2, 4H, I), weight_hh (2, 4H, P), bias (2, 4H) or None, weight_proj
(2, P, H) with 1 <= P <= H or None, all floating on x's device and (outside ``torch.autocast``) of x's dtype;
attention_mask (B, L) of 0/1 on x's device; initial_state (h_0 (2, B, P), c_0 (2, B, H)) or None; cell_clip and
proj_clip positive numbers or None (proj_clip only with a projection). Mask values are read on a CPU in eager mode
only (``dispatch.reads_values``). Every error is a ``ValueError`` naming the argument, its value and what is allowed.
"""

from __future__ import annotations

import torch

from ..checks import check_mask_values, shape_of


def check_inputs(op, x, weight_ih, weight_hh, bias, weight_proj, attention_mask, initial_state, cell_clip, proj_clip):
    """Validate shapes, dtypes, devices and clips before any work; raise ``ValueError`` naming what is wrong and what
    is allowed. Returns (B, L, H, P)."""
    for name, t in (("x", x), ("weight_ih", weight_ih), ("weight_hh", weight_hh)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    for name, t in (("bias", bias), ("weight_proj", weight_proj), ("attention_mask", attention_mask)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a tensor or None, got {type(t).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{op}: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() not in (3, 4) or (x.dim() == 4 and x.shape[2] != 2):
        raise ValueError(
            f"{op}: x must be (batch, length, features) or (batch, length, 2, features) (one input per direction), "
            f"got {shape_of(x)}"
        )
    B, L = x.shape[0], x.shape[1]
    H, P = _check_weights(op, x, weight_ih, weight_hh, bias, weight_proj)
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (B, L):
            raise ValueError(f"{op}: attention_mask must be (batch, length) = {(B, L)}, got {shape_of(attention_mask)}")
        if attention_mask.device != x.device:
            raise ValueError(f"{op}: attention_mask must be on {x.device}, got {attention_mask.device}")
        check_mask_values(op, attention_mask)
    if initial_state is not None:
        _check_initial_state(op, x, initial_state, B, H, P)
    for name, clip in (("cell_clip", cell_clip), ("proj_clip", proj_clip)):
        number = isinstance(clip, (int, float)) and not isinstance(clip, bool)
        if clip is not None and not (number and clip > 0 and clip == clip):
            raise ValueError(f"{op}: {name} must be a positive number or None, got {clip!r}")
    if proj_clip is not None and weight_proj is None:
        raise ValueError(f"{op}: proj_clip needs a projection (weight_proj); without one there is nothing to clip")
    return B, L, H, P


def _one_dtype(x) -> bool:
    """Whether every tensor must have x's dtype: outside ``torch.autocast`` (under it the products run in the
    autocast dtype whatever the inputs hold; the meta device has no autocast)."""
    return x.is_meta or not torch.is_autocast_enabled(x.device.type)


def _check_weights(op, x, weight_ih, weight_hh, bias, weight_proj) -> tuple[int, int]:
    """The weights' shapes for x's I features, their devices and dtypes; returns (H cells, P outputs)."""
    I = x.shape[-1]  # noqa: E741
    if weight_ih.dim() != 3 or weight_ih.shape[0] != 2 or weight_ih.shape[1] % 4 or weight_ih.shape[2] != I:
        raise ValueError(
            f"{op}: weight_ih must be (2, 4·cells, {I}) for inputs of {I} features, got {shape_of(weight_ih)}"
        )
    H = weight_ih.shape[1] // 4
    if H < 1:
        raise ValueError(
            f"{op}: weight_ih must have at least one cell (4 rows per direction), got {shape_of(weight_ih)}"
        )
    P = H if weight_proj is None else (weight_proj.shape[1] if weight_proj.dim() == 3 else -1)
    if weight_proj is not None and (weight_proj.dim() != 3 or tuple(weight_proj.shape) != (2, P, H) or P > H or P < 1):
        raise ValueError(
            f"{op}: weight_proj must be (2, outputs, {H}) with 1 ≤ outputs ≤ {H} cells, got {shape_of(weight_proj)}"
        )
    if tuple(weight_hh.shape) != (2, 4 * H, P):
        raise ValueError(f"{op}: weight_hh must be (2, {4 * H}, {P}) (2, 4·cells, outputs), got {shape_of(weight_hh)}")
    if bias is not None and tuple(bias.shape) != (2, 4 * H):
        raise ValueError(f"{op}: bias must be (2, {4 * H}) or None, got {shape_of(bias)}")
    one_dtype = _one_dtype(x)
    for name, t in (("weight_ih", weight_ih), ("weight_hh", weight_hh), ("bias", bias), ("weight_proj", weight_proj)):
        if t is not None and (t.device != x.device or not t.is_floating_point()):
            raise ValueError(f"{op}: {name} must be a floating-point tensor on {x.device}, got {t.dtype} on {t.device}")
        if t is not None and one_dtype and t.dtype != x.dtype:
            raise ValueError(
                f"{op}: {name} must have the dtype of x ({x.dtype}) outside torch.autocast, got {t.dtype}"
            )
    return H, P


def _check_initial_state(op, x, initial_state, B: int, H: int, P: int) -> None:
    """(h_0 (2, B, P), c_0 (2, B, H)): floating tensors on x's device, of x's dtype outside ``torch.autocast``."""
    if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
        raise ValueError(f"{op}: initial_state must be (h_0, c_0), got {type(initial_state).__name__}")
    h0, c0 = initial_state
    if shape_of(h0) != str((2, B, P)) or shape_of(c0) != str((2, B, H)):
        raise ValueError(
            f"{op}: initial_state must be (h_0 (2, {B}, {P}), c_0 (2, {B}, {H})), got ({shape_of(h0)}, {shape_of(c0)})"
        )
    if h0.device != x.device or c0.device != x.device:
        raise ValueError(f"{op}: initial_state must be on {x.device}")
    if not (h0.is_floating_point() and c0.is_floating_point()):
        raise ValueError(f"{op}: initial_state must hold floating-point tensors, got {h0.dtype} and {c0.dtype}")
    if _one_dtype(x) and (h0.dtype != x.dtype or c0.dtype != x.dtype):
        raise ValueError(
            f"{op}: initial_state must have the dtype of x ({x.dtype}) outside torch.autocast, got {h0.dtype} "
            f"and {c0.dtype}"
        )
