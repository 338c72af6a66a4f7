"""The S4D SSM of BiGS: the input checks of its ops (every backend) and the limits of its Triton kernels.

* ``check_ssm_params``: one direction's SSM parameters ``(log_step, A_re, A_im, C)``: () or (1,), (N,), (N,), (N, 2);
* ``check_kernel_args``, ``check_init_args``: the arguments of ``s4d_kernel`` and ``s4d_init``;
* ``check_conv_inputs`` (``ssm_conv``) and ``check_inputs`` (``bidirectional_ssm``): u (B, L, H) with L >= 1,
  kernels (L,), skips () or (1,), an ``attention_mask`` (B, L) of 0/1, the form and its options;
* ``check_triton_inputs``: what the Triton kernels support.

Every tensor is floating-point and on the inputs' device; mask values are read on a CPU in eager mode only
(``dispatch.reads_values``). Every error is a ``ValueError`` naming the argument, its value and what is allowed.
"""

from __future__ import annotations

import torch

from ..checks import check_mask_values, check_triton_device, has_shape, shape_of

FORMS = ("fft", "toeplitz", "recurrent")  # the forms of the reference backend (``reference.py``)
SCALINGS = ("hippo", "lin", "inv")  # the initialisations of A (``s4d_init``)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # the input dtypes of the Triton kernels


def _check_float_tensor(op: str, name: str, t, shapes: tuple, allowed, device=None) -> None:
    """``allowed``: the shapes in words, or a function giving them: text is formed only for an error (a size
    formatted while ``torch.compile`` traces with dynamic shapes is read as a constant from then on)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor of shape {_text(allowed)}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    if not has_shape(t, *shapes):
        raise ValueError(f"{op}: {name} must have shape {_text(allowed)}, got {tuple(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device} but the inputs are on {device}")


def _text(allowed) -> str:
    return allowed() if callable(allowed) else allowed


def _what(value) -> str:
    """What ``value`` is, for error messages: its type's name, and for a tuple or list its number of items."""
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return type(value).__name__


def check_ssm_params(op: str, name: str, params, device=None) -> int:
    """Validate one direction's ``(log_step, A_re, A_im, C)``; return N."""
    if not isinstance(params, (tuple, list)) or len(params) != 4:
        raise ValueError(f"{op}: {name} must be a tuple (log_step, A_re, A_im, C), got {_what(params)}")
    log_step, A_re, A_im, C = params
    if not isinstance(A_re, torch.Tensor) or A_re.dim() != 1:
        raise ValueError(f"{op}: {name} A_re must be a tensor of shape (N,), got {shape_of(A_re)}")
    N = A_re.shape[0]
    for part, t, shapes, allowed in (
        ("log_step", log_step, ((), (1,)), "() or (1,)"),
        ("A_re", A_re, ((N,),), lambda: f"(N,) = ({N},)"),
        ("A_im", A_im, ((N,),), lambda: f"(N,) = ({N},), like A_re"),
        ("C", C, ((N, 2),), lambda: f"(N, 2) = ({N}, 2) (real, imaginary)"),
    ):
        _check_float_tensor(op, f"{name} {part}", t, shapes, allowed, device)
    if N < 1:
        raise ValueError(f"{op}: {name} needs a state size N >= 1, got A_re of shape {tuple(A_re.shape)}")
    return N


def check_kernel_args(op: str, log_step, A_re, A_im, C, length) -> None:
    """The SSM parameters of ``s4d_kernel`` (on A_re's device) and a positive int ``length`` (a SymInt when
    traced)."""
    check_ssm_params(op, "the parameters", (log_step, A_re, A_im, C), device=A_re.device)
    if isinstance(length, bool) or not isinstance(length, (int, torch.SymInt)) or length < 1:
        raise ValueError(f"{op}: length must be a positive int, got {length!r}")


def check_init_args(N, scaling, dt_min, dt_max) -> None:
    """``s4d_init``: a positive int state size, a known scaling, 0 < dt_min <= dt_max."""
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise ValueError(f"s4d_init: N must be a positive int, got {N!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"s4d_init: scaling must be one of {SCALINGS}, got {scaling!r}")
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"s4d_init: need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")


def check_direction(op, suffix, u, k, d, *, device=None, need_kernel=True) -> None:
    """Validate one direction: u (B, L, H), k (L,) (or None when not needed), d () or (1,)."""
    if not isinstance(u, torch.Tensor) or u.dim() != 3:
        raise ValueError(f"{op}: u{suffix} must be a tensor of shape (B, L, H), got {shape_of(u)}")
    if not u.is_floating_point():
        raise ValueError(f"{op}: u{suffix} must be a floating-point tensor, got {u.dtype}")
    if u.shape[1] < 1:
        raise ValueError(f"{op}: u{suffix} must have a length L >= 1, got shape {tuple(u.shape)}")
    L = u.shape[1]
    device = u.device if device is None else device
    if u.device != device:
        raise ValueError(f"{op}: u{suffix} is on {u.device} but the inputs are on {device}")
    if k is not None or need_kernel:
        _check_float_tensor(op, f"k{suffix}", k, ((L,),), lambda: f"(L,) = ({L},)", device)
    _check_float_tensor(op, f"d{suffix}", d, ((), (1,)), "() or (1,) (one skip for all channels)", device)


def check_mask(op: str, attention_mask, B: int, L: int, device) -> None:
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, L):
        raise ValueError(
            f"{op}: attention_mask must be None or a tensor of shape (B, L) = ({B}, {L}), "
            f"got {shape_of(attention_mask)}"
        )
    if attention_mask.device != device:
        raise ValueError(f"{op}: attention_mask is on {attention_mask.device} but the inputs are on {device}")
    if attention_mask.is_complex():
        raise ValueError(f"{op}: attention_mask must be bool, integer or float 0/1, got {attention_mask.dtype}")
    check_mask_values(op, attention_mask)


def check_form(op: str, form, chunk_size, params, name: str) -> None:
    if form not in FORMS:
        raise ValueError(f"{op}: form must be one of {FORMS}, got {form!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")
    if form == "recurrent" and params is None:
        raise ValueError(
            f"{op}: form='recurrent' needs the SSM parameters: pass {name}=(log_step, A_re, A_im, C)"
            + (" for each direction" if name == "recurrent_params" else "")
        )


def check_conv_inputs(u, k, d, attention_mask, form, params, chunk_size) -> None:
    """Validate ``ssm_conv``'s arguments (one direction; ``params`` for form="recurrent")."""
    op = "ssm_conv"
    check_form(op, form, chunk_size, params, "params")
    check_direction(op, "", u, k, d, need_kernel=form != "recurrent")
    if params is not None:
        check_ssm_params(op, "params", params, device=u.device)
    check_mask(op, attention_mask, u.shape[0], u.shape[1], u.device)


def check_inputs(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask, form, recurrent_params, chunk_size):
    """Validate the bidirectional op's arguments; raise ``ValueError`` naming the argument, its value and what is
    allowed. ``form`` may be "auto" here (the kernels are then needed)."""
    op = "bidirectional_ssm"
    if form != "auto":
        check_form(op, form, chunk_size, recurrent_params, "recurrent_params")
    need_kernel = form != "recurrent"
    check_direction(op, "_fwd", u_fwd, k_fwd, d_fwd, need_kernel=need_kernel)
    if not isinstance(u_bwd, torch.Tensor) or tuple(u_bwd.shape) != tuple(u_fwd.shape):
        raise ValueError(
            f"bidirectional_ssm: u_bwd must have the shape of u_fwd {tuple(u_fwd.shape)}, got {shape_of(u_bwd)}"
        )
    check_direction(op, "_bwd", u_bwd, k_bwd, d_bwd, device=u_fwd.device, need_kernel=need_kernel)
    if recurrent_params is not None:
        if not isinstance(recurrent_params, (tuple, list)) or len(recurrent_params) != 2:
            raise ValueError(
                "bidirectional_ssm: recurrent_params must be a pair ((log_step, A_re, A_im, C) forward, "
                f"(log_step, A_re, A_im, C) backward), got {_what(recurrent_params)}"
            )
        for name, params in zip(("recurrent_params[0] (forward)", "recurrent_params[1] (backward)"), recurrent_params):
            check_ssm_params(op, name, params, device=u_fwd.device)
    check_mask(op, attention_mask, u_fwd.shape[0], u_fwd.shape[1], u_fwd.device)


def triton_limit(u_fwd, u_bwd) -> str | None:
    """What the Triton kernels cannot take among inputs ``check_inputs`` accepted (a dtype outside ``DTYPES``, or two
    dtypes), as the error's message, or None where they can: ``backend="auto"`` then takes the reference."""
    if u_fwd.dtype not in DTYPES or u_bwd.dtype != u_fwd.dtype:
        return (
            f"bidirectional_ssm: backend='triton' takes u_fwd and u_bwd of one dtype among float32, float16 and "
            f"bfloat16, got {u_fwd.dtype} and {u_bwd.dtype}; use backend='reference'"
        )
    return None


def check_triton_inputs(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask) -> None:
    """What the Triton kernels support; ``ValueError`` naming the field, the value and what is allowed otherwise."""
    op = "bidirectional_ssm"
    tensors = {"u_fwd": u_fwd, "u_bwd": u_bwd, "k_fwd": k_fwd, "k_bwd": k_bwd, "d_fwd": d_fwd, "d_bwd": d_bwd}
    if attention_mask is not None:
        tensors["attention_mask"] = attention_mask
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if u_fwd.dim() != 3:
        raise ValueError(f"{op}: u_fwd must be (B, L, H), got shape {tuple(u_fwd.shape)}")
    if u_bwd.shape != u_fwd.shape:
        raise ValueError(f"{op}: u_bwd must have the shape of u_fwd {tuple(u_fwd.shape)}, got {tuple(u_bwd.shape)}")
    B, L, _ = u_fwd.shape
    if L < 1:
        raise ValueError(f"{op}: the sequence length L must be at least 1, got L={L}")
    message = triton_limit(u_fwd, u_bwd)
    if message is not None:
        raise ValueError(message)
    for name in ("k_fwd", "k_bwd"):
        t = tensors[name]
        if not has_shape(t, (L,)):
            raise ValueError(f"{op}: {name} must have shape (L,) = ({L},), got {tuple(t.shape)}")
    for name in ("d_fwd", "d_bwd"):
        t = tensors[name]
        if not has_shape(t, (), (1,)):
            raise ValueError(
                f"{op}: {name} must have shape () or (1,) (one skip for all channels), got {tuple(t.shape)}"
            )
    for name in ("k_fwd", "k_bwd", "d_fwd", "d_bwd"):
        t = tensors[name]
        if not t.dtype.is_floating_point:
            raise ValueError(f"{op}: {name} must be a real floating-point tensor (float32 preferred), got {t.dtype}")
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (B, L):
            raise ValueError(
                f"{op}: attention_mask must have shape (B, L) = {(B, L)}, got {tuple(attention_mask.shape)}"
            )
        if attention_mask.is_complex():
            raise ValueError(f"{op}: attention_mask must hold 0/1 values (bool, integer or float), got complex")
    devices = {str(t.device) for t in tensors.values()}
    if len(devices) != 1:
        raise ValueError(f"{op}: all inputs must be on one device, got {sorted(devices)}")
    check_triton_device(op, u_fwd)
