"""LION attention on its Triton schedules (parallel and chunk, ``backend="triton"``) against the reference, forward
and gradients. The op's math, reference forms and input checks are in ``test_lion_reference.py``.

* both schedules against the reference: every decay type and normalisation, padding on either side, holes and
  all-padding rows, rows whose sum is zero, lengths and chunk sizes, strong and weak decays over a long row, log λ
  at the extremes (λ → 0 down to -1e30, λ → 1) against the RNN form in fp64 (under the interpreter);
* the schedules' own contracts: padding contents never leak, the form ``auto`` picks by length, the model runs on
  them, unsupported inputs are clear errors, strided inputs, kernel launches, ``torch.library`` ops and
  ``torch.compile`` without graph breaks, fp16 (and bf16/fp16 on a GPU);
* a property test (hypothesis, derandomised): both schedules against the fp64 reference on random shapes and padding
  that holds NaN, forward and gradients.

On a CPU these run under Triton's interpreter (``TRITON_INTERPRET=1``, as CI sets it before triton is imported);
every output buffer is filled with NaN first, so an element a kernel fails to write cannot pass. bf16/fp16 checks
need a GPU (the interpreter's low-precision arithmetic is not the GPU's) and are skipped without one.
"""

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bizoo.kernels import lion as lion_op
from bizoo.kernels.lion import lion_attention
from tests.kernels.common import (
    KernelStandIn,
    close_fp32,
    examples,
    generator,
    needs_interpreter,
    value_and_grads,
)
from tests.kernels.lion_cases import STRONG, WEAK, check_forms_against_the_fp64_recurrence, extreme_inputs, lion_case

triton_op = pytest.importorskip("bizoo.kernels.lion.triton_op", reason="triton is not installed")

ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(
    not (ON_GPU or INTERPRETED), reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1"
)
DEVICE = "cuda" if ON_GPU else "cpu"
SCHEDULES = ("attention", "chunk")


@pytest.fixture(autouse=True)
def nan_filled_outputs(monkeypatch):
    monkeypatch.setattr(triton_op, "DEBUG_FILL", float("nan"))


def make(B, H, L, Dk, Dv, decay, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(B, H, L, Dk, generator=g) + 0.1
    k = torch.rand(B, H, L, Dk, generator=g) + 0.1
    v = torch.randn(B, H, L, Dv, generator=g)
    log_decay = {"lit": None, "d": -scale * torch.rand(H, generator=g), "s": -scale * torch.rand(B, H, L, generator=g)}[decay]
    to = lambda t: None if t is None else t.to(DEVICE)  # noqa: E731
    return to(q.to(dtype)), to(k.to(dtype)), to(v.to(dtype)), to(log_decay)


def padding_mask(B, L):
    """Row 0 right-padded, row 1 left-padded, row 2 with a hole, row 3 all padding."""
    m = torch.ones(B, L, dtype=torch.long)
    m[0, L - 9 :] = 0
    m[1, :7] = 0
    m[2, L // 2] = 0
    if B > 3:
        m[3] = 0
    return m.to(DEVICE)


def run(q, k, v, log_decay, mask, form, normalize, backend, chunk_size=16):
    return lion_attention(q, k, v, log_decay, mask, form=form, chunk_size=chunk_size, normalize=normalize, backend=backend)


def relative_error(got, expected):
    return ((got.float() - expected.float()).abs().max() / expected.float().abs().max().clamp(min=1e-12)).item()


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("decay", ["lit", "d", "s"])
@pytest.mark.parametrize("normalize", [True, False])
def test_forward_and_gradients_match_the_reference(schedule, decay, normalize):
    # L = 45 is not a multiple of the chunk (16) or tile size; H = 3 and D = 24, 20 are not powers of two.
    B, H, L, Dk, Dv = 4, 3, 45, 24, 20
    q, k, v, log_decay = make(B, H, L, Dk, Dv, decay)
    mask = padding_mask(B, L)
    leaves = [q, k, v] + ([log_decay] if log_decay is not None else [])
    weights = torch.randn(B, H, L, Dv, generator=torch.Generator().manual_seed(1)).to(DEVICE)

    def forward_and_grads(backend, form):
        inputs = [t.clone().requires_grad_() for t in leaves]
        out = run(*inputs[:3], inputs[3] if log_decay is not None else None, mask, form, normalize, backend)
        return out, torch.autograd.grad((out * weights).sum(), inputs)

    expected, expected_grads = forward_and_grads("reference", "attention")
    got, got_grads = forward_and_grads("triton", schedule)
    assert torch.isfinite(got).all()
    assert relative_error(got, expected) < 1e-5
    for name, g, e in zip(("q", "k", "v", "log_decay"), got_grads, expected_grads):
        assert torch.isfinite(g).all(), name
        assert relative_error(g, e) < 2e-5, name
    assert (got[3] == 0).all() and (got[0, :, -9:] == 0).all()  # padding rows are exact zeros


def small_gpu(kernel, largest: int, chunks: list) -> KernelStandIn:
    """``kernel`` on a GPU whose shared memory refuses its blocks above chunk ``largest``: such a launch raises
    Triton's OutOfResources, as Triton does before anything runs; the others launch. ``chunks`` records the chunk of
    every launch tried."""

    def before(meta):
        chunks.append(meta["C"])
        if meta["C"] > largest:
            from triton.runtime.errors import OutOfResources

            raise OutOfResources(1000 * meta["C"], 101376, "shared memory")

    return KernelStandIn(kernel, before)


@pytest.mark.parametrize("refused", ["forward", "backward", "both"])
def test_a_chunk_a_gpu_refuses_runs_at_half_of_it(monkeypatch, refused):
    """A GPU with too little shared memory for a block at the requested chunk (sm_89 for bf16 at 128): the pass runs
    at half the chunk, warns once, remembers it for the next call, and computes what the reference computes, forward
    and every gradient; a backward at another chunk than its forward's scans the forward states again at its own."""
    from bizoo.kernels.lion import triton_chunk

    monkeypatch.setattr(triton_chunk, "FITTED", {})
    chunks = {"forward": [], "backward": []}
    for step, name in (("forward", "_forward_kernel"), ("backward", "_backward_kernel")):
        largest = 16 if refused in (step, "both") else 64
        monkeypatch.setattr(triton_chunk, name, small_gpu(getattr(triton_chunk, name), largest, chunks[step]))
    B, H, L, D = 3, 2, 70, 16  # 70 tokens: 2 chunks of 64, 5 of 16
    q, k, v, log_decay = make(B, H, L, D, D, "s", scale=2.0)
    mask = padding_mask(B, L)
    weights = torch.randn(B, H, L, D, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    leaves = [q, k, v, log_decay]

    def forward_and_grads(backend):
        inputs = [t.clone().requires_grad_() for t in leaves]
        out = run(*inputs, mask, "chunk", True, backend, chunk_size=64)
        return out, torch.autograd.grad((out * weights).sum(), inputs)

    expected, expected_grads = forward_and_grads("reference")
    with pytest.warns(UserWarning, match=r"at chunk_size=(64|32) needs more shared memory .* runs at chunk (32|16)"):
        got, got_grads = forward_and_grads("triton")
    close_fp32(got, expected)
    for g, e in zip(got_grads, expected_grads):
        close_fp32(g, e, tol=2e-5)
    # the forward's outputs, states included, have the shapes of the op's fake (what a compiled graph assumes)
    real = triton_op._chunk_forward_impl(q, k, v, log_decay, mask, 64, True, False)
    fake = triton_op._chunk_forward_fake(q, k, v, log_decay, mask, 64, True, False)
    assert [t.shape for t in real] == [t.shape for t in fake] and [t.dtype for t in real] == [t.dtype for t in fake]
    del chunks["forward"][-1]  # that call's launch
    tried = {step: list(chunks[step]) for step in chunks}
    assert tried["forward"] == ([64, 32, 16] if refused in ("forward", "both") else [64])
    assert tried["backward"] == ([64, 32, 16] if refused in ("backward", "both") else [64])
    # the next call starts at the chunk that fitted: nothing refused again
    for step in chunks:
        chunks[step].clear()
    again, _ = forward_and_grads("triton")
    assert torch.equal(again, got)
    assert chunks["forward"] == [16 if refused in ("forward", "both") else 64]
    assert chunks["backward"] == [16 if refused in ("backward", "both") else 64]


def test_a_chunk_no_gpu_can_hold_is_a_clear_error(monkeypatch):
    """Refused down to the smallest chunk: the error says what to change, with Triton's as its cause."""
    from bizoo.kernels.lion import triton_chunk

    monkeypatch.setattr(triton_chunk, "FITTED", {})
    monkeypatch.setattr(triton_chunk, "_forward_kernel", small_gpu(triton_chunk._forward_kernel, 8, []))
    q, k, v, log_decay = make(1, 2, 40, 16, 16, "s")
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match=(
            r"lion_attention: a Triton kernel needs more than this GPU gives one block .*\(chunk 16, the smallest, "
            r"was tried too\): use bf16 or fp16 inputs .* backend='reference'")):
        run(q, k, v, log_decay, None, "chunk", True, "triton", chunk_size=32)


@pytest.mark.parametrize("chunk_size", [16, 32, 64])
@pytest.mark.parametrize("L", [1, 16, 33, 100])
def test_chunk_schedule_lengths_and_chunk_sizes(chunk_size, L):
    q, k, v, log_decay = make(2, 2, L, 16, 16, "s", scale=2.0)
    expected = run(q, k, v, log_decay, None, "attention", True, "reference")
    got = run(q, k, v, log_decay, None, "chunk", True, "triton", chunk_size=chunk_size)
    assert relative_error(got, expected) < 1e-5


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_padding_contents_never_leak(schedule):
    """NaN and inf in padded q, k, v and decays change nothing: no value or state flows through padding."""
    B, H, L = 4, 2, 40
    q, k, v, log_decay = make(B, H, L, 16, 16, "s")
    mask = padding_mask(B, L)
    expected = run(q, k, v, log_decay, mask, schedule, True, "triton")
    pad = (mask == 0)[:, None, :]
    poisoned = [t.masked_fill(pad[..., None], float("nan")) for t in (q, k, v)]
    bad_decay = log_decay.masked_fill(pad, -float("inf"))
    leaves = [t.clone().requires_grad_() for t in poisoned + [bad_decay]]
    got = run(*leaves, mask, schedule, True, "triton")
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    grads = torch.autograd.grad(got.sum(), leaves)
    for g in grads:
        assert torch.isfinite(g).all()
        assert (g.masked_select(pad[..., None] if g.dim() == 4 else pad) == 0).all()


@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_a_real_row_summing_to_zero_gives_zeros_and_finite_gradients(schedule, with_mask):
    """q_i = 0 at real tokens (the first after left padding, the one after a hole, one inside a chunk): the row sum
    is exactly 0 and is taken as 1, so y_i = 0 and every gradient is finite, with or without a mask (the guard
    must hold in the masked paths of both schedules, forward and backward); the rest is the fp64 reference's."""
    B, H, L = 4, 2, 40
    q, k, v, log_decay = make(B, H, L, 16, 16, "s", seed=7)
    zero_rows = [(0, 5), (1, 7), (2, L // 2 + 1), (2, L - 1)]  # real in padding_mask's rows 0, 1, 2
    for b, t in zero_rows:
        q[b, :, t] = 0.0
    mask = padding_mask(B, L) if with_mask else None
    weights = torch.randn(B, H, L, 16, generator=torch.Generator().manual_seed(8)).to(DEVICE)  # the cotangent

    def output_and_grads(backend, dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v, log_decay)]
        form = schedule if backend == "triton" else "attention"
        out = run(*leaves, mask, form, True, backend)
        return out, torch.autograd.grad((out * weights.to(dtype)).sum(), leaves)

    got, got_grads = output_and_grads("triton", torch.float32)
    expected, expected_grads = output_and_grads("reference", torch.float64)
    assert torch.isfinite(got).all()
    for b, t in zero_rows:
        assert (got[b, :, t] == 0).all(), (b, t)
    assert relative_error(got, expected) < 1e-5
    for name, g, e in zip(("q", "k", "v", "log_decay"), got_grads, expected_grads):
        assert torch.isfinite(g).all(), name
        assert relative_error(g, e) < 2e-5, name
    assert got_grads[0][0, :, 5].abs().max() > 0.1  # q_i = 0 still has a gradient: through the numerator


def test_strong_and_weak_decays_over_a_long_row():
    """λ near 0 and near 1 in one call, over 300 tokens: the tile decay masks stay exact (no prefix-sum drift)."""
    B, H, L = 1, 2, 300
    q, k, v, _ = make(B, H, L, 16, 16, "lit")
    log_decay = torch.tensor([-8.0, -1e-4], device=DEVICE)
    expected = run(q, k, v, log_decay, None, "chunk", True, "reference")
    for schedule in SCHEDULES:
        got = run(q, k, v, log_decay, None, schedule, True, "triton", chunk_size=32)
        assert relative_error(got, expected) < 1e-5, schedule


def test_auto_form_picks_by_length(monkeypatch):
    calls = []
    real = triton_op.lion_attention_triton

    def spy(*args, **kwargs):
        calls.append(kwargs["form"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lion_op, "lion_attention_triton", spy)
    monkeypatch.setattr(lion_op, "TRITON_CHUNK_MIN_LENGTH", 32)
    for L in (31, 32):
        q, k, v, d = make(1, 1, L, 16, 16, "d")
        lion_attention(q, k, v, d, form="auto", backend="triton")
    assert calls == ["attention", "chunk"]


def test_model_runs_on_the_triton_backend(monkeypatch):
    import bizoo
    from transformers import AutoModelForMaskedLM

    from tests.tiny_configs import TINY_CONFIGS

    config = bizoo.LionConfig(**{**TINY_CONFIGS["lion"], "vocab_size": 50, "lion_variant": "s", "chunk_size": 16})
    model = AutoModelForMaskedLM.from_config(config).to(DEVICE)
    ids = torch.randint(5, 50, (2, 20), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0
    labels = ids.masked_fill(mask == 0, -100)

    def loss_and_grads():
        model.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss_ref, grads_ref = loss_and_grads()
    monkeypatch.setenv("BIZOO_KERNEL_BACKEND", "triton")
    for form in ("attention", "chunk", "auto"):
        model.config.lion_form = form
        loss, grads = loss_and_grads()
        torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
        for g, e in zip(grads, grads_ref):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(form="chunk", chunk_size=24), r"chunk_size in \(16, 32, 64, 128\)"),
        (dict(form="rnn"), "form='rnn' runs on backend='reference' only"),
        (dict(dtype=torch.float64), "float32, float16 and bfloat16"),
        (dict(head_dim=200), "head sizes up to 128"),
    ],
)
def test_unsupported_inputs_are_clear_errors(kwargs, message):
    dtype = kwargs.pop("dtype", torch.float32)
    D = kwargs.pop("head_dim", 16)
    q, k, v, _ = make(1, 1, 8, D, D, "lit", dtype=dtype)
    with pytest.raises(ValueError, match=message):
        lion_attention(q, k, v, backend="triton", **kwargs)


def test_cpu_tensors_without_the_interpreter_are_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q = torch.rand(1, 1, 8, 16)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        lion_attention(q, q, q, backend="triton")


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="bf16/fp16 kernels are checked on a GPU only")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_half_precision_on_gpu(dtype, schedule):
    B, H, L, D = 4, 4, 777, 64  # padding_mask: right, left, a hole, all padding
    q, k, v, log_decay = make(B, H, L, D, D, "s", dtype=dtype, scale=0.1)
    mask = padding_mask(B, L)
    ref_inputs = [t.float().requires_grad_() for t in (q, k, v)] + [log_decay.clone().requires_grad_()]
    leaves = [t.clone().requires_grad_() for t in (q, k, v)] + [log_decay.clone().requires_grad_()]
    expected = run(*ref_inputs, mask, "chunk", True, "reference", chunk_size=64)
    got = run(*leaves, mask, schedule, True, "triton", chunk_size=64)
    assert got.dtype == dtype
    assert relative_error(got, expected) < 2e-2
    w = torch.randn_like(expected)
    for g, e in zip(torch.autograd.grad((got.float() * w).sum(), leaves), torch.autograd.grad((expected * w).sum(), ref_inputs)):
        assert torch.isfinite(g).all() and relative_error(g, e) < 5e-2


# ----------------------------------------------------------------------------------------------------------------
# The chunk schedule's own contracts: strided inputs, every gradient at every chunk size, launches, torch.library
# ----------------------------------------------------------------------------------------------------------------


def _grads_against_reference(q, k, v, log_decay, mask, normalize, chunk_size, tolerance, **triton_kwargs):
    """Output and the gradients of q, k, v, log λ of the Triton chunk schedule against the fp64 attention form."""
    leaves = [t for t in (q, k, v, log_decay) if t is not None]
    weights = torch.randn(v.shape, generator=torch.Generator().manual_seed(3)).to(DEVICE)

    def forward_and_grads(backend, dtype):
        inputs = [t.detach().to(dtype).requires_grad_() for t in leaves]
        decay = inputs[3] if log_decay is not None else None
        if backend == "reference":
            out = lion_attention(*inputs[:3], decay, mask, form="attention", normalize=normalize, backend=backend)
        else:
            out = triton_op.lion_attention_triton(*inputs[:3], decay, mask, form="chunk", chunk_size=chunk_size,
                                                  normalize=normalize, **triton_kwargs)
        return out, torch.autograd.grad((out * weights.to(out.dtype)).sum(), inputs)

    expected, expected_grads = forward_and_grads("reference", torch.float64)
    got, got_grads = forward_and_grads("triton", q.dtype)
    assert relative_error(got, expected) < tolerance
    for name, g, e in zip(("q", "k", "v", "log_decay"), got_grads, expected_grads):
        assert torch.isfinite(g).all(), name
        assert relative_error(g, e) < tolerance, name
    return got, got_grads


@pytest.mark.parametrize("chunk_size", [16, 32, 64])
@pytest.mark.parametrize("decay", ["lit", "d", "s"])
def test_chunk_schedule_gradients_at_every_chunk_size(chunk_size, decay):
    """L = 70 spans several chunks at 16 and 32 and ends inside a chunk at each size; the decays are strong enough
    (log λ down to -2) that a state carried with the wrong factor is far off; padding on both sides and a hole."""
    B, H, L = 4, 2, 70
    q, k, v, log_decay = make(B, H, L, 16, 24, decay, scale=2.0, seed=chunk_size)
    for normalize in (True, False):
        _grads_against_reference(q, k, v, log_decay, padding_mask(B, L), normalize, chunk_size, 2e-5)


def test_chunk_schedule_reads_the_model_layout_without_copies():
    """q, k, v as the model hands them over ((B, L, H, D) buffers seen as (B, H, L, D)), a (B, L, H) decay seen as
    (B, H, L) and a bool mask: the same result as contiguous inputs, and y a view of a (B, L, H, Dv) buffer so that the
    model's transpose + reshape back costs nothing."""
    B, H, L, D = 3, 2, 40, 16
    q, k, v, log_decay = make(B, H, L, D, D, "s")
    mask = padding_mask(B, L).bool()
    as_model = lambda t: t.transpose(1, 2).contiguous().transpose(1, 2)  # noqa: E731
    strided = [as_model(t) for t in (q, k, v)] + [log_decay.transpose(1, 2).contiguous().transpose(1, 2)]
    assert not strided[0].is_contiguous()
    expected = triton_op.lion_attention_triton(q, k, v, log_decay, mask.long(), form="chunk", chunk_size=16,
                                               normalize=True)
    got = triton_op.lion_attention_triton(*strided, mask, form="chunk", chunk_size=16, normalize=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.transpose(1, 2).is_contiguous()  # (B, L, H, Dv) underneath


def test_chunk_schedule_gradients_through_strided_inputs_and_an_expanded_cotangent():
    B, H, L, D = 2, 2, 33, 16
    q, k, v, log_decay = make(B, H, L, D, D, "s")
    as_model = lambda t: t.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()  # noqa: E731
    plain = [t.clone().requires_grad_() for t in (q, k, v, log_decay)]
    strided = [as_model(t) for t in (q, k, v)] + [log_decay.clone().requires_grad_()]
    results = []
    for leaves in (plain, strided):
        out = triton_op.lion_attention_triton(*leaves, None, form="chunk", chunk_size=16, normalize=True)
        results.append(torch.autograd.grad(out.sum(), leaves))  # the cotangent: ones expanded, strides 0
    for g, e in zip(*results):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-7)


def test_chunk_schedule_launches_two_kernels_forward_and_three_backward(monkeypatch):
    from bizoo.kernels.lion import triton_chunk

    launches = []

    class Counted:  # kernel[grid](...) through the module's name, counted
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            launches.append(self.name)
            return self.kernel[grid]

    for name in ("_scan_kernel", "_forward_kernel", "_backward_kernel", "_decay_grad_kernel"):
        monkeypatch.setattr(triton_chunk, name, Counted(name, getattr(triton_chunk, name)))
    q, k, v, log_decay = make(3, 2, 40, 16, 16, "s")
    leaves = [t.requires_grad_() for t in (q, k, v, log_decay)]
    out = triton_op.lion_attention_triton(*leaves, padding_mask(3, 40), form="chunk", chunk_size=16, normalize=True)
    assert launches == ["_scan_kernel", "_forward_kernel"]
    launches.clear()
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):  # every other operation the backward runs
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with Ops() as ops:
        out.sum().backward()
    assert launches == ["_scan_kernel", "_backward_kernel", "_decay_grad_kernel"]
    fills = [name for name in ops.names if name.split(".")[0] in ("fill_", "zero_", "zeros", "zeros_like", "full")]
    assert fills == [], f"the backward fills tensors (extra launches on a GPU): {fills}"


def test_chunk_schedule_is_a_torch_library_op():
    """Registered custom ops with fake implementations and an autograd formula (torch.library.opcheck: schema, fake
    tensors, autograd registration), so torch.compile puts the kernels into its graph."""
    q, k, v, log_decay = make(3, 2, 20, 16, 16, "s")
    mask = padding_mask(3, 20)
    args = (q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), log_decay.requires_grad_(), mask, 16, True,
            False)
    torch.library.opcheck(torch.ops.bizoo.lion_chunk_forward.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_chunk_schedule_compiles_without_graph_breaks():
    q, k, v, log_decay = make(3, 2, 24, 16, 16, "d")
    mask = padding_mask(3, 24)

    def f(q, k, v, a):
        return triton_op.lion_attention_triton(q, k, v, a, mask, form="chunk", chunk_size=16, normalize=True)

    explanation = torch._dynamo.explain(f)(q, k, v, log_decay)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (q, k, v, log_decay)]
    expected_leaves = [t.clone().requires_grad_() for t in (q, k, v, log_decay)]
    got = compiled(*leaves)
    expected = f(*expected_leaves)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for g, e in zip(torch.autograd.grad(got.sum(), leaves), torch.autograd.grad(expected.sum(), expected_leaves)):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_fp16_inputs_under_the_interpreter():
    """fp16 q, k, v (fp32 states, fp32 accumulation): output and gradients within fp16's precision of fp64."""
    B, H, L = 3, 2, 40
    q, k, v, log_decay = make(B, H, L, 16, 16, "s", scale=0.5)
    got, grads = _grads_against_reference(q.half(), k.half(), v.half(), log_decay, padding_mask(B, L), True, 16,
                                          1e-2)
    assert got.dtype == torch.float16 and [g.dtype for g in grads] == [torch.float16] * 4


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="Triton's interpreter multiplies bf16 matrices wrongly (tl.dot): GPU only")
@pytest.mark.parametrize("fp32_states", [False, True])
def test_bf16_inputs_with_bf16_or_fp32_states(fp32_states):
    """bf16 inputs: states stored in bf16 by default, fp32 on request; both within bf16's precision of fp64."""
    B, H, L = 2, 2, 64
    q, k, v, log_decay = make(B, H, L, 16, 16, "s", scale=0.2)
    _grads_against_reference(q.bfloat16(), k.bfloat16(), v.bfloat16(), log_decay, None, True, 16, 3e-2,
                             fp32_states=fp32_states)


# ----------------------------------------------------------------------------------------------------------------
# The parallel schedule through torch.library: the ops, and torch.compile of the public entry point
# ----------------------------------------------------------------------------------------------------------------


def _parallel_op_inputs(B, H, L, decay, seed=0):
    """Inputs of ``bizoo::lion_parallel_forward`` as ``lion_attention_triton`` prepares them: q, k, v zero and
    log-decays 0 at padding, each row's real range."""
    q, k, v, log_decay = make(B, H, L, 16, 8, decay, seed=seed)
    mask = padding_mask(B, L)
    keep = mask.bool()
    a = torch.where(keep[:, None, :], lion_op.reference.log_decays(log_decay, (B, H, L), torch.float32, DEVICE), 0.0)
    q, k, v = (torch.where(keep[:, None, :, None], t, 0.0) for t in (q, k, v))
    return q, k, v, a.contiguous(), triton_op.real_ranges(mask, B, L, DEVICE)


@pytest.mark.parametrize("normalize", [True, False])
def test_parallel_schedule_is_a_torch_library_op(normalize):
    """Both ops pass torch.library.opcheck (schema, fake tensors against the real outputs, autograd registration),
    so torch.compile puts the kernels into its graph; the forward op also through AOT autograd with dynamic shapes
    against eager (which, unlike test_autograd_registration, fails without a registered autograd formula)."""
    q, k, v, a, ranges = _parallel_op_inputs(4, 2, 20, "s")
    leaves = [t.requires_grad_() for t in (q, k, v, a)]
    torch.library.opcheck(torch.ops.bizoo.lion_parallel_forward.default, (*leaves, ranges, normalize),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration",
                                      "test_aot_dispatch_dynamic"))
    g = torch.Generator().manual_seed(2)
    d_num = torch.randn(*q.shape[:3], v.shape[-1], generator=g).to(DEVICE)  # (B, H, L, Dv)
    d_den = torch.randn(q.shape[:3], generator=g).to(DEVICE) if normalize else None  # (B, H, L)
    plain = [t.detach() for t in leaves]
    for need_da in (True, False):
        torch.library.opcheck(torch.ops.bizoo.lion_parallel_backward.default,
                              (d_num, d_den, *plain, ranges, need_da), test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("decay, normalize", [("s", True), ("d", False)])
def test_parallel_schedule_compiles_without_graph_breaks(decay, normalize):
    """``lion_attention(form="attention", backend="triton")`` under torch.compile(fullgraph=True): no graph break,
    outputs and the gradients of q, k, v, log λ equal to eager and within 2e-5 of the fp64 reference. Order-1
    inputs, a random cotangent, padding on both sides, a hole and an all-padding row."""
    B, H, L = 4, 2, 24
    q, k, v, log_decay = make(B, H, L, 16, 8, decay, seed=5)
    mask = padding_mask(B, L)
    weights = torch.randn(B, H, L, 8, generator=torch.Generator().manual_seed(6)).to(DEVICE)  # the cotangent

    def f(q, k, v, log_decay, backend="triton"):
        return lion_attention(q, k, v, log_decay, mask, form="attention", normalize=normalize, backend=backend)

    explanation = torch._dynamo.explain(f)(q, k, v, log_decay)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)

    def output_and_grads(fn, dtype=torch.float32, **kwargs):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v, log_decay)]
        out = fn(*leaves, **kwargs)
        return out, torch.autograd.grad((out * weights.to(dtype)).sum(), leaves)

    got, got_grads = output_and_grads(compiled)
    eager, eager_grads = output_and_grads(f)
    expected, expected_grads = output_and_grads(f, torch.float64, backend="reference")
    torch.testing.assert_close(got, eager, rtol=0, atol=0)
    assert relative_error(got, expected) < 2e-5
    for name, g, e, r in zip(("q", "k", "v", "log_decay"), got_grads, eager_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=0, atol=0, msg=lambda m: f"{name}: {m}")
        assert r.abs().max() > 0.1, name  # a gradient of order 1: the comparison is not vacuous
        assert relative_error(g, r) < 2e-5, name


# ----------------------------------------------------------------------------------------------------------------
# Log λ at the extremes (λ → 0 and λ → 1), against the fp64 recurrence
# ----------------------------------------------------------------------------------------------------------------


@needs_interpreter
def test_lion_extreme_decays_on_triton():
    """The Triton schedules (parallel and chunk, under the interpreter) against the fp64 recurrence, one batch row per
    extreme value, both normalisations, values and gradients (the same math and tolerance as the reference test:
    the chunk schedule forms its exponents from fp64 local prefix sums, the parallel one from fp64 hi + lo parts)."""
    values = list(STRONG.values()) + list(WEAK.values())
    rows = [extreme_inputs(1, 1, 33, 4, value, seed=i) for i, value in enumerate(values)]
    rows[0][3][0, 0, :16] = -1e4  # a block of strong decays only (there y_i = v_i when normalised)
    tensors = [torch.cat(parts) for parts in zip(*rows)]  # (6, 1, 33, ·)
    mask = torch.ones(len(values), 33, dtype=torch.long)
    mask[2, :4] = 0
    mask[4, 20:] = 0
    check_forms_against_the_fp64_recurrence(tensors, mask, ("attention", "chunk"), "triton")


# ----------------------------------------------------------------------------------------------------------------
# Property test (hypothesis): both schedules against the fp64 reference
# ----------------------------------------------------------------------------------------------------------------


# Examples of the property (derandomised, no example database: a run is deterministic).
LION_TRITON_EXAMPLES = 24


@examples(LION_TRITON_EXAMPLES)
@given(data=st.data())
def test_lion_triton_matches_the_reference(data):
    """The Triton schedules (parallel and chunk, chunk sizes 16 and 32) against the fp64 reference, forward and
    gradients of q, k, v and the decays, on random shapes (head sizes not powers of two, several chunks) and padding
    that holds NaN."""
    B, H, L = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 40))
    Dk, Dv = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    schedule = data.draw(st.sampled_from(("attention", "chunk")), label="schedule")
    chunk_size = data.draw(st.sampled_from((16, 32)), label="chunk_size")
    q, k, v, log_decay, mask, normalize = lion_case(data, B=B, H=H, L=L, Dk=Dk, Dv=Dv, dtype=torch.float32)
    leaves = [q, k, v] + ([log_decay] if log_decay is not None else [])
    cotangent = torch.randn(B, H, L, Dv, generator=generator(data))

    def fn(backend, form):
        def call(q, k, v, *decay):
            return lion_attention(q, k, v, decay[0] if decay else None, mask.to(q.device), form=form,
                                  chunk_size=chunk_size, normalize=normalize, backend=backend)
        return call

    (want,), want_grads = value_and_grads(fn("reference", "attention"), [t.double() for t in leaves], [cotangent])
    (got,), grads = value_and_grads(fn("triton", schedule), [t.to(DEVICE) for t in leaves], [cotangent])
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    close_fp32(got, want)
    assert (got.cpu()[~mask[:, None, :].expand(B, H, L)] == 0).all()
    for name, g, e in zip(("q", "k", "v", "log_decay"), grads, want_grads):
        assert torch.isfinite(g).all(), name
        close_fp32(g, e, 2e-5)
