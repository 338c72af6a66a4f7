"""Backend selection shared by every op in ``bizoo.kernels``.

Each op exposes one function with ``backend="auto" | "triton" | "reference"``:

* ``"reference"`` is the plain PyTorch implementation in the op's ``reference.py`` (fp32, any device);
* ``"triton"`` is the op's fused Triton kernels (CUDA tensors, or any tensors under ``TRITON_INTERPRET=1``);
* ``"auto"`` picks ``"triton"`` when the tensors are on a CUDA device, Triton imports and the op has Triton
  kernels for these inputs, else ``"reference"``: what the kernels cannot take (a dtype, a size over their limit;
  each op's ``triton_limit``) the reference computes, since the user never asked for Triton. The environment
  variable ``BIZOO_KERNEL_BACKEND`` (``triton`` or ``reference``) overrides what ``"auto"`` picks; an explicit
  backend argument always wins.

A missing Triton is never an import error: it only removes the ``"triton"`` backend.
"""

from __future__ import annotations

import contextlib
import os

import torch

BACKENDS = ("auto", "triton", "reference")
ENV_VAR = "BIZOO_KERNEL_BACKEND"


_TRITON_IMPORTS: list[str] = []  # filled by the first call: "" where bizoo's Triton kernels import, else why not


def triton_unavailable_reason() -> str:
    """Why bizoo's Triton kernels do not import here ("" where they do): ``triton`` is absent (macOS, Windows, some
    CPU installs), or it cannot define kernels on this machine (releases before 3.4 without a GPU driver; see
    ``triton_utils``). Tried once; while torch.compile traces, the answer is a constant of the graph."""
    if not _TRITON_IMPORTS:
        try:
            from . import triton_utils  # noqa: F401
        except ImportError as err:
            _TRITON_IMPORTS.append(str(err) or type(err).__name__)
        else:
            _TRITON_IMPORTS.append("")
    return _TRITON_IMPORTS[0]


def triton_available() -> bool:
    """True where bizoo's Triton kernels import (see ``triton_unavailable_reason``)."""
    return not triton_unavailable_reason()


def tracing() -> bool:
    """True while torch.compile or torch.export trace (``torch.compiler.is_compiling()``). Every traced-only form in
    bizoo reads this switch or ``exporting()``, never torch's functions directly, so that a test forces a form by
    patching these names: dynamo recognises ``torch.compiler.is_compiling`` by identity in a table it builds once per
    process, and a test that patched torch's own function at that moment would break every later compile."""
    return torch.compiler.is_compiling()


def exporting() -> bool:
    """True while torch.export traces (``torch.compiler.is_exporting()``; also under ``torch.onnx.export``). Read
    through the function's flag where torch has one: before torch 2.12, dynamo folded ``is_exporting()`` to True under
    any ``torch.compile``, so that a compiled model took the export forms (the recursions as scans, whose gradients
    torch 2.11 gets wrong)."""
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    return torch.compiler.is_exporting() if flag is None else bool(flag)


def values_on_host(tensor: torch.Tensor) -> bool:
    """Whether reading ``tensor``'s values costs no wait for a device: it is on the CPU. The one switch every
    value-reading branch of bizoo asks (through ``reads_values``, and the models' input checks), so that a test
    patches this name to run, on a CPU, what runs for GPU tensors."""
    return tensor.device.type == "cpu"


def reads_values(tensor: torch.Tensor) -> bool:
    """Whether an op checks the *values* of its inputs (0/1 masks, finite scores, decays <= 0, tags in range): in eager
    mode on a CPU only. On a CUDA device each such check would be a host synchronisation on every call; while
    ``torch.compile`` or ``torch.export`` trace the op, a graph break (a data-dependent branch). Shapes, dtypes,
    devices and options are checked everywhere."""
    return values_on_host(tensor) and not tracing()


def autocast_off(device: torch.device):
    """``torch.autocast(device.type, enabled=False)``: the precision-critical parts of an op (fp32 scans, log-space
    sums) run in the dtypes they chose, whatever autocast region the caller is in. On the meta device (tensors
    without values, with which a caller infers shapes) a null context: torch.autocast refuses that device type."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def triton_device(tensor: torch.Tensor) -> bool:
    """Whether ``"auto"`` offers Triton for tensors where ``tensor`` is: on a CUDA device, with Triton importable.
    The one switch of that choice, so that a test patches this name to have "auto" choose on a CPU (under
    ``TRITON_INTERPRET=1``) as it does on a GPU."""
    return tensor.is_cuda and triton_available()


def resolve_backend(backend: str, tensor: torch.Tensor, *, op: str, has_triton: bool, limit: str | None = None) -> str:
    """Turn a user's ``backend`` argument into ``"triton"`` or ``"reference"`` for ``op``.

    ``has_triton`` says whether ``op`` (in the form asked for) has Triton kernels at all; ``limit`` why they cannot
    take these inputs (the message of the op's Triton checks), or None. ``"auto"`` takes the reference for either;
    asked for by name (``backend="triton"``, or ``BIZOO_KERNEL_BACKEND=triton``), Triton runs and its checks say what
    it cannot do. Raises ``ValueError`` for an unknown backend, or a ``"triton"`` that cannot run, naming who asked
    for it (the argument, or ``"auto"`` with ``BIZOO_KERNEL_BACKEND=triton``), the reason and the fix.
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    from_env = False  # whether Triton was asked for by the environment variable, for the errors below
    if backend == "auto":
        override = os.environ.get(ENV_VAR, "").strip().lower()
        if override and override != "auto":
            if override not in ("triton", "reference"):
                raise ValueError(
                    f"{op}: environment variable {ENV_VAR} must be 'triton', 'reference' or 'auto', got {override!r}"
                )
            backend = override
            from_env = True
        else:
            use_triton = has_triton and limit is None and triton_device(tensor)
            return "triton" if use_triton else "reference"
    if backend == "triton":
        asked = f"backend='auto' with the environment variable {ENV_VAR}=triton" if from_env else "backend='triton'"
        fix = f"unset {ENV_VAR} or set it to 'reference'" if from_env else "use backend='reference' or 'auto'"
        if not triton_available():  # first: an op's Triton entry point is absent then too
            raise ValueError(f"{op}: {asked} needs Triton kernels, which do not import here "
                             f"({triton_unavailable_reason()}); {fix}")
        if not has_triton:
            raise ValueError(f"{op}: {asked} asks for Triton kernels, which this op (or this form of it) does not "
                             f"have; {fix}")
    return backend


def _twice_message(op: str, fix: str) -> str:
    return f"{op}: its backward is written out and cannot be differentiated again (double backward, " \
           f"create_graph=True); {fix}"


class _NotDifferentiable(torch.autograd.Function):
    """The identity on a gradient that a hand-written backward computed, with a backward that raises: what
    ``first_order_only`` puts on the gradients it returns under ``create_graph=True``."""

    @staticmethod
    def forward(ctx, grad, anchor, message):
        ctx.message = message
        return grad.clone()

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError(ctx.message)


def first_order_only(op: str, fix: str):
    """Decorate the ``backward`` of an ``autograd.Function`` whose gradient formulas are written out (no autograd
    graph over the forward's intermediates): a second differentiation through them cannot be right.

    Without ``create_graph`` the backward runs as it is. With it (grad mode on inside the backward), the backward
    runs under ``torch.no_grad()`` (the first-order gradients are the same) and each gradient it returns is wrapped in
    a node whose backward raises ``RuntimeError`` naming ``op`` and ``fix``: a double backward (a gradient penalty,
    a Hessian-vector product) is a clear error, never a silently partial second derivative. (torch's
    ``once_differentiable`` does this only when the incoming gradients require grad; under
    ``autograd.grad(y.sum(), x, create_graph=True)`` they do not, and the gradient came back as a constant.)
    """
    message = _twice_message(op, fix)

    def decorate(backward):
        def wrapper(ctx, *grads):
            if not torch.is_grad_enabled():
                return backward(ctx, *grads)
            with torch.no_grad():
                results = backward(ctx, *grads)
            anchor = torch.zeros((), requires_grad=True)  # makes each wrapped gradient require grad, whatever it is

            def wrap(g):
                return _NotDifferentiable.apply(g, anchor, message) if isinstance(g, torch.Tensor) else g

            return tuple(map(wrap, results)) if isinstance(results, tuple) else wrap(results)

        wrapper.__doc__, wrapper.__name__ = backward.__doc__, backward.__name__
        return wrapper

    return decorate


def op_registered(name: str) -> bool:
    """Whether the custom op ``bizoo::<name>`` exists already. Each ``triton_*.py`` registers its ops only if not: a
    second import of the file under another package name (as test collectors do) leaves the first registration."""
    try:
        getattr(torch.ops.bizoo, name)
        return True
    except (AttributeError, RuntimeError):
        return False


TWICE_FIX = "use backend='reference', whose gradients autograd differentiates twice"


def register_op(name: str, impl, fake, *, backward=None, setup_context=None, backward_of: str | None = None) -> None:
    """The custom op ``bizoo::<name>`` (``impl`` on real tensors, ``fake`` on fake ones: shapes and dtypes only) and,
    with ``backward``, its autograd formula; nothing if it exists already (``op_registered``).

    ``backward_of`` marks a written-out backward op (the public op's name): its autograd formula raises the
    ``first_order_only`` error, so a double backward through a Triton kernel (create_graph=True, then a second
    ``backward``) says which op cannot do it and what can, instead of torch's "no autograd formula was registered"."""
    if op_registered(name):
        return
    op = torch.library.custom_op(f"bizoo::{name}", impl, mutates_args=())
    op.register_fake(fake)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
    if backward_of is not None:
        message = _twice_message(f"{backward_of} (backend='triton')", TWICE_FIX)

        def raise_twice(ctx, *grads):
            raise RuntimeError(message)

        op.register_autograd(raise_twice, setup_context=lambda ctx, inputs, output: None)
