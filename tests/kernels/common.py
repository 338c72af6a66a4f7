"""What the tests of several kernel ops share (and the reliability tests that still check several ops at once).

* cases as tables: ``with_ids`` turns ``(id, *values)`` rows into ``pytest.param``s, ``backends`` lists the backends
  an op runs on here, ``META`` is a second device on any machine (so device checks run without a GPU);
* where the Triton kernels run on a CPU: ``TRITON_ON_CPU`` / ``needs_interpreter`` (triton installed and
  ``TRITON_INTERPRET=1``);
* comparisons: ``rel`` (relative to the largest magnitude), ``close`` (fp64 against fp64), ``close_fp32`` (a Triton
  result against an oracle);
* property tests (hypothesis): ``examples`` (deterministic settings), ``masks`` over the padding ``LAYOUTS``,
  ``generator`` (a torch generator seeded by hypothesis), ``poison`` (a value at the padded positions) and
  ``value_and_grads`` (outputs and the gradients of Σ ⟨output, cotangent⟩).

Not a test module (its name does not start with ``test_``); imported as ``tests.kernels.common``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bizoo.kernels import dispatch

HAS_TRITON = dispatch.triton_available()  # bizoo's Triton kernels import here

# ----------------------------------------------------------------------------------------------------------------
# Cases, backends, devices
# ----------------------------------------------------------------------------------------------------------------

META = torch.device("meta")  # a second device on any machine: the device checks run without a GPU

TRITON_ON_CPU = HAS_TRITON and os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(
    not TRITON_ON_CPU, reason="the Triton kernels run on the CPU under TRITON_INTERPRET=1 only"
)


def with_ids(cases):
    """``(id, *values)`` rows as ``pytest.param(*values, id=id)``: each case is its own test id."""
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


def backends(has_triton: bool) -> list[str]:
    """The backends an op runs on here: the reference, and Triton where its kernels import."""
    return ["reference", "triton"] if has_triton else ["reference"]


# ----------------------------------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------------------------------

REF_TOL = 1e-9  # fp64 against fp64: the forms differ only in the order of additions


def rel(got, expected) -> float:
    """max |got - expected| / max |expected| (computed in fp64; the scale is 1 for an all-zero expected)."""
    got, expected = got.double(), expected.double()
    scale = expected.abs().max().item()
    return (got - expected).abs().max().item() / (scale if scale > 0 else 1.0)


def close(got, want, tol=REF_TOL):
    """Equal to ``tol`` (absolute and relative), elementwise, in fp64."""
    torch.testing.assert_close(got.double().cpu(), want.double().cpu(), rtol=tol, atol=tol)


def close_fp32(got, want, tol=1e-5):
    """A Triton result (fp32) against an fp64/fp32 oracle: |got - want| <= tol·|want| + tol·max(1, max|want|).

    The kernels accumulate in fp32 in another order than the oracle (tiles, chunks, scans): each result is a sum
    whose terms are as large as the largest entry, so its rounding error is a few fp32 ulps (6e-8) of that entry
    times the number of terms added; on these small shapes that stays well under 1e-5 of the largest entry (the bar
    the fixed-shape Triton tests use). Gradients, one more product deep, get ``tol=2e-5``."""
    got, want = got.double().cpu(), want.double().cpu()
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)


# ----------------------------------------------------------------------------------------------------------------
# Property tests: settings and strategies
# ----------------------------------------------------------------------------------------------------------------


def examples(n: int):
    """Deterministic hypothesis settings. The fixtures these tests take (``make_config``, ``make_inputs``) return pure
    functions, so sharing them between examples is safe."""
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


LAYOUTS = ("full", "right", "left", "holes", "empty")


@st.composite
def masks(draw, B, L, layouts=LAYOUTS):
    """(B, L) bool: each row full, right-padded, left-padded, with holes (any pattern) or all padding."""
    rows = []
    for _ in range(B):
        kind = draw(st.sampled_from(layouts))
        if kind == "holes":
            rows.append(draw(st.lists(st.booleans(), min_size=L, max_size=L)))
            continue
        n = {"full": L, "empty": 0}.get(kind)
        n = draw(st.integers(1, L)) if n is None else n
        row = [t < n for t in range(L)]
        rows.append(row[::-1] if kind == "left" else row)
    return torch.tensor(rows, dtype=torch.bool).reshape(B, L)


def generator(data):
    return torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1), label="seed"))


def poison(t, pad, value=float("nan")):
    """``t`` with ``value`` at the padded positions ``pad`` (broadcast over the trailing dimensions)."""
    while pad.dim() < t.dim():
        pad = pad[..., None]
    return t.masked_fill(pad, value)


def value_and_grads(fn, leaves, cotangents):
    """fn(*leaves) as a tuple of tensors, and the gradients of Σ <output, cotangent> w.r.t. every leaf."""
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    outs = fn(*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    loss = sum((o.double() * c.to(o.device).double()).sum() for o, c in zip(outs, cotangents))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves))
    return tuple(o.detach() for o in outs), grads


class KernelStandIn:
    """Stands in for a Triton kernel (``kernel[grid](*args, **meta)``): calls ``before(meta)`` with each launch's
    meta-parameters (to record them, or to raise as a GPU would), then launches the kernel."""

    def __init__(self, kernel, before):
        self.kernel, self.before = kernel, before

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def call(*args, **meta):
            self.before(meta)
            return launch(*args, **meta)

        return call
