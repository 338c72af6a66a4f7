"""What the Triton files of every op share: the ``triton`` import, the launch switches, buffers, real ranges.

* ``triton``, ``tl``: imported here once, inside ``try`` (an op's ``triton_*.py`` imports them from here, so that a
  missing Triton is one ``ImportError``, which each op's ``__init__`` turns into an absent "triton" backend); so is
  a Triton that cannot define kernels on this machine (releases before 3.4 without a GPU driver).
* ``INTERPRETED`` (``TRITON_INTERPRET=1``: the kernels run in Triton's interpreter, on any device; the ops then take
  one small tile configuration, so that short test sequences span several tiles) and ``AUTOTUNE``
  (``BIZOO_TRITON_AUTOTUNE=0`` keeps the first configuration of each kernel: tests on a GPU compile once, not once
  per configuration); both read when the files are imported. ``autotune_configs`` and ``first_unless_autotuning``
  apply them to a kernel's candidate configurations.
* ``lanes(n)``: the register width of n columns; ``dot_precision(dtype)``: the ``input_precision`` of ``tl.dot``,
  which for fp32 follows torch's own setting for fp32 matrix products (``tf32_allowed()``), as ``torch.matmul`` does.
* ``buffer`` / ``filled``: output and scratch buffers, filled with an op's ``DEBUG_FILL`` where tests set one (NaN:
  an element a kernel fails to write cannot pass).
* ``real_ranges(mask, B, L, device)`` -> (B, 2) int32: each row's real positions [start, end), found on the device
  (no host sync); ``row_range(RANGES, b)``: the same pair read inside a kernel.
* ``explains_resources(op, advice)``: a launch function's Triton ``OutOfResources`` (a block needs more shared
  memory, registers or threads than the GPU gives one) re-raised as a ``RuntimeError`` naming the op and what to
  change. Built for sm_89 and sm_120 (99 KB of shared memory per block, as on sm_86: RTX 30/40/50, A10, L4, L40),
  LION's chunk backward in fp32 at chunk 64 and in bf16 at chunk 128 is refused (``bizoo bench kernel-build --arch
  89``); LION's chunk schedule then runs at a smaller chunk first (``triton_chunk.FITTED``). ``OutOfResources`` is
  Triton's class (an empty tuple, which ``except`` matches nothing with, where Triton keeps it elsewhere).
"""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError as err:  # the Triton backend is simply absent without triton
    raise ImportError("bizoo.kernels.triton_utils needs the `triton` package") from err

import functools
import os

import torch

try:
    from triton.runtime.errors import OutOfResources
except ImportError:  # a Triton that keeps it elsewhere: nothing is re-worded
    OutOfResources = ()


@triton.jit
def _probe(X):  # a kernel that is never launched: only decorated, by _check_kernels_can_be_defined
    tl.store(X, 0)


def _check_kernels_can_be_defined() -> None:
    """Raise ``ImportError`` where this Triton cannot define an autotuned kernel. Triton releases before 3.4 build the
    autotuner's benchmarker when a kernel is decorated, which needs a GPU driver: on a machine without one (under
    ``TRITON_INTERPRET=1`` too) every ``@triton.autotune`` raises ``RuntimeError: 0 active drivers`` at import, which
    would make ``import bizoo`` fail. As an ``ImportError`` it leaves the ops' "triton" backend absent, as without
    triton, and ``dispatch.triton_unavailable_reason()`` says why."""
    try:
        triton.autotune(configs=[triton.Config({})], key=[])(_probe)
    except RuntimeError as err:
        raise ImportError(
            f"triton {triton.__version__} cannot define kernels on this machine ({err}): Triton releases before 3.4 "
            "need a GPU driver for that; bizoo asks for triton>=3.7.1 (with torch>=2.12), which runs its kernels here "
            "under TRITON_INTERPRET=1"
        ) from err


_check_kernels_can_be_defined()

__all__ = [
    "triton", "tl", "INTERPRETED", "AUTOTUNE", "autotune_configs", "first_unless_autotuning", "lanes",
    "dot_precision", "tf32_allowed", "buffer", "filled", "real_ranges", "row_range", "explains_resources",
    "OutOfResources",
]

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# BIZOO_TRITON_AUTOTUNE=0 keeps the first configuration only (tests on a GPU: compile once, not once per config).
AUTOTUNE = os.environ.get("BIZOO_TRITON_AUTOTUNE", "1") != "0"


def autotune_configs(configs: list, interpreted) -> list:
    """A kernel's autotuning candidates: ``configs`` on a GPU, the one small ``interpreted`` configuration under the
    interpreter (whose cost grows with the tile size)."""
    return [interpreted] if INTERPRETED else configs


def first_unless_autotuning(configs: list) -> list:
    """``configs``, or only the first one with ``BIZOO_TRITON_AUTOTUNE=0``."""
    return configs if AUTOTUNE else configs[:1]


def lanes(n: int) -> int:
    """The register width of ``n`` columns (or tags): the next power of two, at least 16 (``tl.dot``'s minimum)."""
    return max(16, triton.next_power_of_2(n))


def tf32_allowed() -> bool:
    """Whether torch lets fp32 matrix products on CUDA run on TF32 tensor cores: ``torch.backends.cuda.matmul.
    fp32_precision == "tf32"``, which ``torch.backends.fp32_precision = "tf32"`` (transformers' ``--tf32``),
    ``torch.backends.cuda.matmul.allow_tf32 = True`` and ``torch.set_float32_matmul_precision("high")`` (or
    "medium") all set; off by default. Read at each launch, as cuBLAS reads it at each product."""
    return torch.backends.cuda.matmul.fp32_precision == "tf32"


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s ``input_precision`` for inputs of ``dtype``: for fp32 what torch's matrix products take, IEEE
    (exact, on the FMA units) unless ``tf32_allowed()``, then "tf32" (tensor cores: 10-bit mantissas, fp32 sums);
    "tf32" for half inputs (fp16, bf16: tensor cores whatever the setting).

    Built for sm_90, LION's fp32 kernels with IEEE products spill 5-19 KB per thread (``bizoo bench kernel-build``),
    with TF32 at most 2 KB: a model trained in fp32 on a GPU should allow TF32, as for any transformers model."""
    if dtype != torch.float32:
        return "tf32"
    return "tf32" if tf32_allowed() else "ieee"


def filled(t: torch.Tensor, fill: float | None, *, int_fill: int = -1) -> torch.Tensor:
    """``t`` filled in place with ``fill`` (integer tensors with ``int_fill``), or as it is when ``fill`` is None."""
    if fill is None:
        return t
    return t.fill_(fill if t.dtype.is_floating_point else int_fill)


def buffer(shape, dtype: torch.dtype, device, fill: float | None, *, int_fill: int = -1) -> torch.Tensor:
    """An output or scratch buffer: ``torch.empty``, or filled with ``fill`` (integer ones with ``int_fill``)."""
    return filled(torch.empty(shape, dtype=dtype, device=device), fill, int_fill=int_fill)


def real_ranges(mask: torch.Tensor | None, B: int, L: int, device) -> torch.Tensor:
    """(B, 2) int32 [start, end) of each row's real tokens (``mask`` != 0; [0, 0) for a row of padding only, [0, L)
    for every row without a mask), on ``device`` without a host sync."""
    if mask is None:  # made on the device: a tensor made from a list would be copied from the host with a sync
        starts = torch.zeros(B, dtype=torch.int32, device=device)  # (B,)
        return torch.stack([starts, torch.full_like(starts, L)], dim=1)  # (B, 2)
    keep = mask.to(device=device, dtype=torch.bool)  # (B, L)
    if L == 0:
        return torch.zeros(B, 2, dtype=torch.int32, device=device)
    has = keep.any(dim=1)  # (B,)
    start = keep.int().argmax(dim=1)  # (B,) the first real position
    end = L - keep.flip(1).int().argmax(dim=1)  # (B,) one past the last
    ranges = torch.stack([start, end], dim=1) * has[:, None]  # (B, 2)
    return ranges.to(torch.int32).contiguous()


@triton.jit
def row_range(RANGES, b):
    """[start, end) of row ``b`` from the (B, 2) int32 ``RANGES`` that ``real_ranges`` makes."""
    return tl.load(RANGES + 2 * b), tl.load(RANGES + 2 * b + 1)


def explains_resources(op: str, advice: str):
    """Decorate a function that launches kernels: Triton's ``OutOfResources`` from it (raised before the launch, so
    nothing ran) becomes a ``RuntimeError`` "<op>: ... on this GPU; <advice>", with Triton's error as its cause."""

    def decorate(fn):
        @functools.wraps(fn)
        def launch(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except OutOfResources as err:
                raise RuntimeError(f"{op}: a Triton kernel needs more than this GPU gives one block ({err}); "
                                   f"{advice}") from err

        return launch

    return decorate
