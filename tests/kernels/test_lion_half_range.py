"""LION's Triton schedules (chunk and attention) with fp16 inputs at the edges of fp16's range, against the reference
in fp64: the kernels multiply half-precision operands on tensor cores, and what they round to half must stay in
range even where the op's intermediates do not.

* small scores with a large upstream gradient (q, k ~ 0.01, dy ~ 50, as a GradScaler-scaled loss gives): the row
  sums (den) are ~1e-4 and dO = dy/den is ~1e6, past fp16's largest value (65504), while every gradient is in range;
  the kernels once rounded dO to fp16 and returned NaN for dq, dk and dv;
* tiny scores in the forward pass (q, k ~ 1e-3: q·k ~ 1e-6, an fp16 subnormal): the output is invariant to the scale
  of q, but the kernels once rounded the unnormalised scores to fp16 before the score-value product (5 % error);
* the decay gradient of LION-D (one decay per head: a sum of per-token terms that cancel) on the attention schedule,
  whose row and column sums of W were once taken from a score tile rounded to half.

Under ``TRITON_INTERPRET=1`` on a CPU (fp16 only: the interpreter multiplies bf16 matrices wrongly) or on a GPU.
Every output buffer is filled with NaN first, so an element a kernel fails to write cannot pass.
"""

import os

import pytest
import torch

from bizoo.kernels.lion import lion_attention
from tests.kernels.common import rel

triton_op = pytest.importorskip("bizoo.kernels.lion.triton_op", reason="triton is not installed")

ON_GPU = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(
    not (ON_GPU or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1",
)
DEVICE = "cuda" if ON_GPU else "cpu"
SCHEDULES = ("chunk", "attention")


@pytest.fixture(autouse=True)
def nan_filled_outputs(monkeypatch):
    monkeypatch.setattr(triton_op, "DEBUG_FILL", float("nan"))


def small_inputs(decay, scale, seed=0, B=2, H=1, L=37, D=4):
    """fp16 q, k ~ U(scale/5, 6 scale/5) (positive, as after a feature map), v ~ N(0, 1), log λ (fp32) for
    ``decay`` "lit", "d" or "s", and a mask: row 0 full, row 1 left-padded. L = 37 spans three chunks (and tiles)
    of 16."""
    g = torch.Generator().manual_seed(seed)
    q = (torch.rand(B, H, L, D, generator=g) * scale + scale / 5).half()
    k = (torch.rand(B, H, L, D, generator=g) * scale + scale / 5).half()
    v = torch.randn(B, H, L, D, generator=g).half()
    log_decay = {"lit": None, "d": -2 * torch.rand(H, generator=g), "s": -2 * torch.rand(B, H, L, generator=g)}[decay]
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, :5] = 0
    to = lambda t: None if t is None else t.to(DEVICE)  # noqa: E731
    return to(q), to(k), to(v), to(log_decay), to(mask)


def output_and_grads(q, k, v, log_decay, mask, cotangent, *, backend, form, normalize, dtype=None):
    """The op's output and the gradients of ⟨output, cotangent⟩ with respect to q, k, v (and log λ), inputs cast to
    ``dtype`` (fp64 for the oracle) or as given."""
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in (q, k, v, log_decay) if t is not None]
    decay = leaves[3] if log_decay is not None else None
    y = lion_attention(*leaves[:3], decay, mask, form=form, chunk_size=16, normalize=normalize, backend=backend)
    y.backward(cotangent.to(y.dtype))
    return y.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("decay", ["lit", "d", "s"])
@pytest.mark.parametrize("normalize", [True, False])
def test_small_scores_with_a_large_upstream_gradient(schedule, decay, normalize):
    """q, k ~ 0.01 and dy ~ 50: every gradient finite and within fp16's precision of the fp64 reference's (relative
    to its largest entry). normalize=False has no 1/den (dq, dk, dv were right before): it guards the rescaling,
    and the attention schedule's LION-D decay gradient (once off by 5e-4 of its terms, 4e-2 of itself)."""
    q, k, v, log_decay, mask = small_inputs(decay, scale=0.01)
    g = torch.Generator().manual_seed(1)
    dy = (50 * torch.randn(v.shape, generator=g)).half().to(DEVICE)  # (B, H, L, D), in fp16's range
    _, expected = output_and_grads(q, k, v, log_decay, mask, dy, backend="reference", form="attention",
                                   normalize=normalize, dtype=torch.float64)
    _, got = output_and_grads(q, k, v, log_decay, mask, dy, backend="triton", form=schedule, normalize=normalize)
    for name, gr, e in zip("qkv", got, expected):
        assert torch.isfinite(e).all(), f"the reference's d{name}"
        assert torch.isfinite(gr).all(), f"non-finite d{name}"
        assert rel(gr, e) < 1e-2, f"d{name}: relative error {rel(gr, e):.2e}"
    if decay == "lit":
        return
    assert torch.isfinite(got[3]).all(), "non-finite dlog_decay"
    if decay == "s":
        assert rel(got[3], expected[3]) < 1e-2, f"dlog_decay: relative error {rel(got[3], expected[3]):.2e}"
        return
    # LION-D: the gradient of one decay per head is a sum over B and L of per-token terms that cancel (here to ~1 %
    # of their sum of magnitudes): its error is measured against that sum, the per-token terms being those of the
    # same decay given per token (B, H, L)
    per_token = log_decay.view(1, -1, 1).expand(*v.shape[:3])  # (B, H, L)
    _, expected_s = output_and_grads(q, k, v, per_token, mask, dy, backend="reference", form="attention",
                                     normalize=normalize, dtype=torch.float64)
    scale = expected_s[3].abs().sum(dim=(0, 2))  # (H,)
    error = ((got[3].double() - expected[3]).abs() / scale).max().item()
    # attention: W's row and column sums in fp32 from the same tiles (2e-7 here; 5e-4 when they were sums of a tile
    # rounded to half); chunk: its states are sums of half-rounded products, read once as rows and once as columns
    # of W (1e-4 here, on a GPU also TF32's rounding of the states)
    tolerance = 3e-4 if schedule == "attention" else 1e-3
    assert error < tolerance, f"dlog_decay: error {error:.2e} of the sum of its per-token terms' magnitudes"


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("decay", ["lit", "d", "s"])
def test_tiny_scores_forward(schedule, decay):
    """q, k ~ 1e-3 (scores ~1e-6, fp16 subnormals): the normalised output within ~1e-3 of the fp64 reference (the
    fp16 output itself rounds to 5e-4); the unnormalised scores were once rounded to fp16 (5e-2)."""
    q, k, v, log_decay, mask = small_inputs(decay, scale=1e-3)
    expected = lion_attention(q.double(), k.double(), v.double(), None if log_decay is None else log_decay.double(),
                              mask, form="attention", backend="reference")
    got = lion_attention(q, k, v, log_decay, mask, form=schedule, chunk_size=16, backend="triton")
    assert got.dtype == torch.float16
    assert rel(got, expected) < 2e-3, f"relative error {rel(got, expected):.2e}"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_output_is_invariant_to_the_scale_of_q(schedule):
    """normalize=True: q and 1024 q (both in fp16's range) give the same output to fp16's precision, gradients of
    k and v included (dq scales by 1/1024: a power of two, exact in fp16)."""
    q, k, v, log_decay, mask = small_inputs("s", scale=1e-3)
    dy = torch.randn(v.shape, generator=torch.Generator().manual_seed(2)).half().to(DEVICE)
    y_small, (dq_small, *rest_small) = output_and_grads(q, k, v, log_decay, mask, dy, backend="triton",
                                                        form=schedule, normalize=True)
    y_large, (dq_large, *rest_large) = output_and_grads((q.float() * 1024).half(), k, v, log_decay, mask, dy,
                                                        backend="triton", form=schedule, normalize=True)
    assert rel(y_small, y_large) < 2e-3, f"y: {rel(y_small, y_large):.2e}"
    assert rel(dq_small.float() / 1024, dq_large) < 1e-2, f"dq: {rel(dq_small.float() / 1024, dq_large):.2e}"
    for name, a, b in zip("kva", rest_small, rest_large):
        assert rel(a, b) < 1e-2, f"d{name}: {rel(a, b):.2e}"
