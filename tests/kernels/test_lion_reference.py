"""LION attention (``bizoo.kernels.lion.lion_attention``): its math, its reference forms, its input checks and its
numerical edges, on the reference backend. The Triton schedules are in ``test_lion_triton.py``.

* the math: every form (attention, rnn, chunk) against a brute-force oracle, and against each other, forward and
  gradients, with padding on either side and holes; pad invariance, all-padding rows, rows whose sum is zero;
* input checks: a ``ValueError`` that names the argument and what is allowed, one test id per bad input; empty
  batches give an empty result (on every backend);
* numerical edges: log λ at the extremes (λ → 0: -20 to -1e30; λ → 1: 0, -1e-8) on every form against the RNN form
  in fp64, log λ = -inf refused, a query of zeros without 0/0 (also on the Triton schedules under the interpreter),
  L = 65,536 on the chunk form against the RNN form;
* a property test (hypothesis, derandomised): attention = rnn = chunk for any chunk size with gradients, on random
  shapes and padding layouts, and padding is invisible.

The oracle below is written from the definition of the mask (products of decays over real tokens only), with
explicit Python loops over positions, so it shares no code and no trick (prefix sums, chunking) with the op.
Tolerances of the numerical edges are relative to the largest magnitude of the compared tensor (``rel``).
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bizoo.kernels import lion as lion_op
from bizoo.kernels.lion import FORMS, lion_attention
from tests.kernels.common import (
    META,
    backends,
    close,
    examples,
    generator,
    needs_interpreter,
    rel,
    value_and_grads,
    with_ids,
)
from tests.kernels.lion_cases import STRONG, WEAK, check_forms_against_the_fp64_recurrence, extreme_inputs, lion_case

DECAYS = ("lit", "d", "s")


def brute_force(q, k, v, log_decay, mask, normalize):
    """y_i = Σ_j M_ij (q_i·k_j) v_j [/ Σ_j M_ij (q_i·k_j)] over the real tokens of each row, in float64."""
    B, H, L, _ = q.shape
    y = torch.zeros(B, H, L, v.shape[-1], dtype=torch.float64)
    for b in range(B):
        real = [t for t in range(L) if mask is None or mask[b, t]]
        for h in range(H):

            def a(t):
                if log_decay is None:
                    return 0.0
                return float(log_decay[h] if log_decay.dim() == 1 else log_decay[b, h, t])

            for i in real:
                num = torch.zeros(v.shape[-1], dtype=torch.float64)
                den = 0.0
                for j in real:
                    if j < i:  # λ_j ... λ_{i-1} over real tokens
                        log_m = sum(a(t) for t in real if j <= t < i)
                    elif j > i:  # λ_{i+1} ... λ_j over real tokens
                        log_m = sum(a(t) for t in real if i < t <= j)
                    else:
                        log_m = 0.0
                    w = math.exp(log_m) * float(q[b, h, i].double() @ k[b, h, j].double())
                    num += w * v[b, h, j].double()
                    den += w
                y[b, h, i] = num / den if normalize else num
    return y


def make_inputs(B, H, L, Dk, Dv, decay, dtype=torch.float64, seed=0, strong=False):
    g = torch.Generator().manual_seed(seed)
    # Positive q, k (as after the elu+1 / silu+0.5 feature maps) keep the row sums away from zero.
    q = torch.rand(B, H, L, Dk, generator=g, dtype=dtype) + 0.1
    k = torch.rand(B, H, L, Dk, generator=g, dtype=dtype) + 0.1
    v = torch.randn(B, H, L, Dv, generator=g, dtype=dtype)
    scale = 3.0 if strong else 0.5
    if decay == "lit":
        log_decay = None
    elif decay == "d":
        log_decay = -scale * torch.rand(H, generator=g, dtype=dtype)
    else:
        log_decay = -scale * torch.rand(B, H, L, generator=g, dtype=dtype)
    return q, k, v, log_decay


def padding_mask(B, L):
    """Row 0 right-padded, row 1 left-padded, row 2 with a hole, the rest full."""
    m = torch.ones(B, L, dtype=torch.long)
    m[0, L - 3 :] = 0
    if B > 1:
        m[1, :4] = 0
    if B > 2:
        m[2, L // 2] = 0
    return m


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("normalize", [True, False])
def test_forms_match_brute_force(form, decay, normalize):
    B, H, L = 3, 2, 13  # L is not a multiple of the chunk size below
    q, k, v, log_decay = make_inputs(B, H, L, 3, 4, decay)
    mask = padding_mask(B, L)
    expected = brute_force(q, k, v, log_decay, mask, normalize)
    got = lion_attention(q, k, v, log_decay, mask, form=form, chunk_size=4, normalize=normalize)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64, 100])
def test_chunk_form_any_chunk_size(chunk_size):
    q, k, v, log_decay = make_inputs(2, 3, 29, 4, 5, "s", strong=True)
    mask = padding_mask(2, 29)
    expected = lion_attention(q, k, v, log_decay, mask, form="attention")
    got = lion_attention(q, k, v, log_decay, mask, form="chunk", chunk_size=chunk_size)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("decay", DECAYS)
def test_forms_agree_in_fp32_with_padding(decay):
    """The issue's bar: the three forms equal to 1e-5 in fp32 on random inputs with padding."""
    B, H, L = 3, 4, 300
    q, k, v, log_decay = make_inputs(B, H, L, 16, 16, decay, dtype=torch.float32, seed=1)
    mask = padding_mask(B, L)
    outs = {form: lion_attention(q, k, v, log_decay, mask, form=form, chunk_size=64) for form in FORMS}
    for form in ("rnn", "chunk"):
        torch.testing.assert_close(outs[form], outs["attention"], rtol=1e-5, atol=1e-5)
    assert outs["chunk"].dtype == torch.float32


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("decay", DECAYS)
def test_gradients_match_attention_form(form, decay):
    B, H, L = 2, 2, 11
    q, k, v, log_decay = make_inputs(B, H, L, 3, 3, decay, seed=2)
    mask = padding_mask(B, L)
    leaves = [t.requires_grad_() for t in (q, k, v) + ((log_decay,) if log_decay is not None else ())]
    weights = torch.randn(B, H, L, 3, dtype=torch.float64)

    def grads(f):
        out = lion_attention(q, k, v, log_decay, mask, form=f, chunk_size=4)
        return torch.autograd.grad((out * weights).sum(), leaves)

    for got, expected in zip(grads(form), grads("attention")):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("form", FORMS)
def test_gradcheck(form):
    q, k, v, log_decay = make_inputs(1, 1, 6, 2, 2, "s", seed=3)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    fn = lambda q, k, v, a: lion_attention(q, k, v, a, mask, form=form, chunk_size=4)  # noqa: E731
    assert torch.autograd.gradcheck(fn, [t.requires_grad_() for t in (q, k, v, log_decay)])


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_invariance(form, side):
    """A sequence alone and the same sequence padded in a batch give the same outputs at its real positions."""
    H, L, pad = 2, 10, 5
    q, k, v, log_decay = make_inputs(1, H, L, 3, 3, "s", dtype=torch.float32, seed=4)
    alone = lion_attention(q, k, v, log_decay, form=form, chunk_size=4)

    def padded(t):
        z = torch.randn(*t.shape[:2], pad, *t.shape[3:], dtype=t.dtype) if t.dim() == 4 else -torch.rand(1, H, pad)
        return torch.cat([t, z], dim=2) if side == "right" else torch.cat([z, t], dim=2)

    mask = torch.ones(1, L + pad, dtype=torch.long)
    real = slice(0, L) if side == "right" else slice(pad, L + pad)
    mask[:, slice(L, L + pad) if side == "right" else slice(0, pad)] = 0
    out = lion_attention(padded(q), padded(k), padded(v), padded(log_decay), mask, form=form, chunk_size=4)
    torch.testing.assert_close(out[:, :, real], alone, rtol=1e-5, atol=1e-6)
    assert (out[:, :, mask[0] == 0] == 0).all()


@pytest.mark.parametrize("form", FORMS)
def test_all_padding_row_gives_zeros_and_finite_gradients(form):
    q, k, v, log_decay = make_inputs(2, 1, 5, 2, 2, "s", seed=5)
    q.requires_grad_()
    mask = torch.tensor([[0, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    out = lion_attention(q, k, v, log_decay, mask, form=form, chunk_size=2)
    assert (out[0] == 0).all()
    (g,) = torch.autograd.grad(out.sum(), [q])
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("form", FORMS)
def test_a_real_row_summing_to_zero_gives_zeros_and_finite_gradients(form, with_mask):
    """q_i = 0 at a real token: its row sum is exactly 0, so the normaliser divides by 1 (y_i = 0), with or without
    a mask (the guard must hold in both paths); the other rows are untouched (brute force)."""
    q, k, v, log_decay = make_inputs(2, 1, 5, 2, 2, "s", seed=9)
    q[:, :, 1] = 0.0  # a real token in both rows
    q.requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]) if with_mask else None
    out = lion_attention(q, k, v, log_decay, mask, form=form, chunk_size=2)
    assert torch.isfinite(out).all()
    assert (out[:, :, 1] == 0).all()
    others = [0, 2, 3]
    expected = brute_force(q.detach(), k, v, log_decay, mask, True)
    torch.testing.assert_close(out[:, :, others].detach(), expected[:, :, others], rtol=1e-9, atol=1e-9)
    (g,) = torch.autograd.grad(out.sum(), [q])
    assert torch.isfinite(g).all()


def test_bidirectional():
    q, k, v, log_decay = make_inputs(1, 1, 8, 2, 2, "d", seed=6)
    base = lion_attention(q, k, v, log_decay)
    v2 = v.clone()
    v2[:, :, -1] += 1.0
    assert not torch.allclose(lion_attention(q, k, v2, log_decay)[:, :, 0], base[:, :, 0])


def test_strong_decay_is_finite_and_forms_agree():
    """λ close to 0 (log λ = -30) and close to 1 (log λ = -1e-6): no overflow, no NaN."""
    q, k, v, _ = make_inputs(1, 2, 70, 4, 4, "lit", dtype=torch.float32, seed=7)
    log_decay = torch.tensor([-30.0, -1e-6])
    ref = lion_attention(q, k, v, log_decay, form="attention")
    for form in ("rnn", "chunk"):
        out = lion_attention(q, k, v, log_decay, form=form, chunk_size=16)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_autocast_bf16_on_cpu_accumulates_in_fp32():
    q, k, v, log_decay = make_inputs(1, 2, 33, 8, 8, "s", dtype=torch.float32, seed=8)
    ref = lion_attention(q, k, v, log_decay)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lion_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), log_decay)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(q=torch.rand(2, 3, 4)), "q must have 4 dims"),
        (dict(k=torch.rand(2, 3, 5, 3)), "k must have the shape of q"),
        (dict(v=torch.rand(2, 3, 4, 4)), "v must be"),
        (dict(q=torch.ones(2, 3, 5, 4, dtype=torch.long)), "floating-point"),
        (dict(log_decay=-torch.rand(4)), "log_decay must be None"),
        (dict(log_decay=torch.full((3,), 0.5)), "log_decay must be <= 0"),
        (dict(log_decay=torch.tensor([-1.0, float("nan"), -1.0])), "finite"),
        (dict(attention_mask=torch.ones(2, 4)), "attention_mask must have shape"),
        (dict(attention_mask=torch.full((2, 5), 2)), r"only 0 \(padding\) and 1"),
        (dict(form="parallel"), "form must be one of"),
        (dict(chunk_size=0), "chunk_size must be a positive int"),
        (dict(backend="cuda"), "backend must be one of"),
        (dict(form="rnn", backend="triton"), "backend='"),
    ],
)
def test_bad_inputs_are_clear_errors(change, message):
    args = dict(q=torch.rand(2, 3, 5, 4), k=torch.rand(2, 3, 5, 4), v=torch.rand(2, 3, 5, 6), log_decay=None)
    args.update({key: val for key, val in change.items() if key in args})
    options = {key: val for key, val in change.items() if key not in args}
    with pytest.raises(ValueError, match=message):
        lion_attention(args["q"], args["k"], args["v"], args["log_decay"], **options)


def test_env_var_overrides_auto(monkeypatch):
    q, k, v, _ = make_inputs(1, 1, 4, 2, 2, "lit")
    monkeypatch.setenv("BIZOO_KERNEL_BACKEND", "reference")
    lion_attention(q, k, v)
    monkeypatch.setenv("BIZOO_KERNEL_BACKEND", "fast")
    with pytest.raises(ValueError, match="BIZOO_KERNEL_BACKEND"):
        lion_attention(q, k, v)


def test_env_var_triton_with_the_rnn_form_names_the_variable(monkeypatch):
    """form='rnn' has no Triton schedule: with BIZOO_KERNEL_BACKEND=triton (and backend 'auto', the default, as a
    model passes it) the error names the variable to change, not the backend argument the caller already left."""
    q, k, v, _ = make_inputs(1, 1, 4, 2, 2, "lit")
    monkeypatch.setenv("BIZOO_KERNEL_BACKEND", "triton")
    with pytest.raises(ValueError, match=r"^lion_attention: backend='auto' with the environment variable "
                                         r"BIZOO_KERNEL_BACKEND=triton .*; unset BIZOO_KERNEL_BACKEND"):
        lion_attention(q, k, v, form="rnn")


# ----------------------------------------------------------------------------------------------------------------
# Input checks: lion_attention(q, k, v, log_decay, attention_mask, *, form, chunk_size, normalize, backend)
# ----------------------------------------------------------------------------------------------------------------


def _lion_args(**change):
    args = dict(q=torch.rand(2, 3, 5, 4), k=torch.rand(2, 3, 5, 4), v=torch.rand(2, 3, 5, 6), log_decay=None,
                attention_mask=None)
    args.update(change)
    return args


BAD_LION_INPUTS = [
    ("q-list", dict(q=[[1.0]]), r"q must be a torch\.Tensor, got list"),
    ("q-list-form-auto", dict(q=[[1.0]], form="auto"), r"q must be a torch\.Tensor, got list"),
    ("k-none", dict(k=None), r"k must be a torch\.Tensor, got NoneType"),
    ("v-5-dims", dict(v=torch.rand(2, 3, 5, 6, 1)), r"v must have 4 dims \(B, H, L, D\)"),
    ("v-other-length", dict(v=torch.rand(2, 3, 7, 6)), r"v must be \(B, H, L, Dv\) with \(B, H, L\) = \(2, 3, 5\)"),
    ("head-size-0", dict(q=torch.rand(2, 3, 5, 0), k=torch.rand(2, 3, 5, 0)), r"q and k must have a head size Dk >= 1"),
    ("q-complex", dict(q=torch.rand(2, 3, 5, 4, dtype=torch.complex64)), r"q must be a floating-point tensor"),
    ("k-float64-q-float32", dict(k=torch.rand(2, 3, 5, 4, dtype=torch.float64)),
     r"q, k and v must have one dtype .*got torch\.float32, torch\.float64, torch\.float32"),
    ("v-float16-q-float32", dict(v=torch.rand(2, 3, 5, 6).half()), r"q, k and v must have one dtype"),
    ("k-on-another-device", dict(k=torch.rand(2, 3, 5, 4, device=META)), r"k is on meta but q is on cpu"),
    ("log-decay-on-another-device", dict(log_decay=torch.zeros(3, device=META)), r"log_decay is on meta but q"),
    ("log-decay-s-on-another-device", dict(log_decay=torch.zeros(2, 3, 5, device=META),
                                           attention_mask=torch.ones(2, 5)), r"log_decay is on meta but q"),
    ("log-decay-int", dict(log_decay=torch.zeros(3, dtype=torch.long)),
     r"log_decay must be None or a floating-point tensor, got torch\.int64"),
    ("log-decay-list", dict(log_decay=[0.0, 0.0, 0.0]), r"log_decay must be None or a floating-point tensor, got list"),
    ("log-decay-minus-inf", dict(log_decay=torch.tensor([-1.0, float("-inf"), -1.0])), r"log_decay must be finite"),
    ("mask-on-another-device", dict(attention_mask=torch.ones(2, 5, device=META)), r"attention_mask is on meta"),
    ("mask-list", dict(attention_mask=[[1] * 5] * 2), r"attention_mask must have shape \(B, L\) = \(2, 5\)"),
    ("mask-3-dims", dict(attention_mask=torch.ones(2, 1, 5)), r"attention_mask must have shape \(B, L\) = \(2, 5\)"),
    ("mask-complex", dict(attention_mask=torch.ones(2, 5, dtype=torch.complex64)),
     r"attention_mask must be bool, integer or float 0/1, got torch\.complex64"),
    ("mask-half", dict(attention_mask=torch.full((2, 5), 0.5)), r"attention_mask must hold only 0 \(padding\) and 1"),
    ("chunk-size-negative", dict(chunk_size=-16), r"chunk_size must be a positive int, got -16"),
    ("chunk-size-float", dict(chunk_size=16.0), r"chunk_size must be a positive int, got 16\.0"),
    ("chunk-size-bool", dict(chunk_size=True), r"chunk_size must be a positive int, got True"),
    ("form-none", dict(form=None), r"form must be one of \('attention', 'rnn', 'chunk', 'auto'\), got None"),
    ("backend-none", dict(backend=None), r"backend must be one of \('auto', 'triton', 'reference'\), got None"),
    ("normalize-string", dict(normalize="yes"), r"normalize must be True or False, got 'yes'"),
]


@pytest.mark.parametrize("change, match", with_ids(BAD_LION_INPUTS))
def test_bad_lion_input_is_a_clear_error(change, match):
    args = _lion_args(**{key: value for key, value in change.items() if key in _lion_args()})
    options = {key: value for key, value in change.items() if key not in args}
    with pytest.raises(ValueError, match=r"^lion_attention: " + match):
        lion_attention(args["q"], args["k"], args["v"], args["log_decay"], args["attention_mask"], **options)


@pytest.mark.parametrize("shape", [(0, 3, 5), (2, 3, 0), (0, 3, 0)], ids=["B=0", "L=0", "B=L=0"])
@pytest.mark.parametrize("form", ["attention", "chunk", "rnn", "auto"])
@pytest.mark.parametrize("backend", backends(lion_op.lion_attention_triton is not None))
def test_lion_empty_batch_is_an_empty_result(backend, form, shape):
    if backend == "triton" and form == "rnn":
        pytest.skip("form='rnn' runs on the reference backend only")
    B, H, L = shape
    q = torch.rand(B, H, L, 4, requires_grad=True)
    k, v = torch.rand(B, H, L, 4), torch.rand(B, H, L, 6)
    out = lion_attention(q, k, v, -torch.rand(H), torch.ones(B, L), form=form, chunk_size=16, backend=backend)
    assert out.shape == (B, H, L, 6) and out.dtype == v.dtype
    out.sum().backward()
    assert q.grad.shape == q.shape


# ----------------------------------------------------------------------------------------------------------------
# Numerical edges: decays at the extremes, a query of zeros, a long row
# ----------------------------------------------------------------------------------------------------------------


def extreme_mask(B, L):
    """Row 0 full, row 1 right-padded, row 2 left-padded with a hole, the rest full."""
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, L - 5 :] = 0
    mask[2, :3] = 0
    mask[2, L // 2] = 0
    return mask


@pytest.mark.parametrize("value", list(STRONG.values()) + list(WEAK.values()), ids=list(STRONG) + list(WEAK))
def test_lion_extreme_decays_every_form_matches_the_fp64_recurrence(value):
    """The three forms compute one function: y_i = Σ_j M_ij (q_i·k_j) v_j [/ Σ_j M_ij (q_i·k_j)] with
    M_ij = ∏ λ over the tokens between j and i. The RNN form multiplies the decays one step at a time; the attention
    and chunk forms take log M_ij as a difference of prefix sums of log λ, which is the same number as long as each
    difference is rounded once (fp64 sums, hi + lo parts). Below log λ = -1000 every product holding that decay is 0
    in every dtype, so the op's floor at -1000 changes nothing, and its gradient is 0 either way.

    Tolerance 1e-5 of the largest magnitude, for values and every gradient: fp32 sums of at most 37 terms round to
    37·6e-8 ≈ 2e-6 of the largest term. (Before the fix, a prefix sum in fp32 past a log λ of -1e4 gave errors of
    2e-4 to 4e-3, and -1e30 errors of order 1.)
    """
    tensors = extreme_inputs(3, 2, 37, 4, value)
    check_forms_against_the_fp64_recurrence(tensors, extreme_mask(3, 37), ("attention", "rnn", "chunk"), "reference")


def test_lion_minus_infinity_is_a_clear_error():
    """log λ = -inf (λ = 0) is outside the documented domain log λ in (-inf, 0]: a ValueError, not NaN."""
    q, k, v, a = extreme_inputs(2, 2, 8, 4, -20.0)
    a[0, 0, 3] = float("-inf")
    for form in ("attention", "rnn", "chunk"):
        with pytest.raises(ValueError, match="log_decay"):
            lion_attention(q, k, v, a, form=form, backend="reference")


@pytest.mark.parametrize(
    "backend", ["reference", pytest.param("triton", marks=needs_interpreter)]
)
def test_lion_zero_query_gives_no_zero_by_zero(backend):
    """A query of zeros (a feature map that underflowed) has the row sum Σ_j M_ij (q_i·k_j) = 0: the op takes it as 1,
    so the row gives its numerator, 0, and finite gradients, instead of 0/0. The other rows are untouched: they
    equal the fp64 result with the zero query's row removed from the comparison (rows are independent)."""
    q, k, v, a = extreme_inputs(1, 2, 16, 4, -0.3)
    q[0, :, 5] = 0.0
    forms = ("attention", "chunk") if backend == "triton" else ("attention", "rnn", "chunk")
    expected = lion_attention(q.double(), k.double(), v.double(), a.double(), form="rnn", backend="reference")
    for form in forms:
        leaves = [t.clone().requires_grad_() for t in (q, k, v, a)]
        y = lion_attention(*leaves, form=form, chunk_size=16, backend=backend)
        assert torch.isfinite(y).all() and (y[0, :, 5] == 0).all(), form
        keep = torch.ones(16, dtype=torch.bool)
        keep[5] = False
        assert rel(y[:, :, keep], expected[:, :, keep]) < 1e-5, form
        y.sum().backward()
        for t in leaves:
            assert torch.isfinite(t.grad).all(), form


def test_lion_long_sequence_chunk_form_matches_the_rnn_form():
    """L = 65,536 in fp32: the chunk form (C = 64, 1024 chunks) against the RNN form, for the LIT (λ = 1), D
    (log λ = -1e-4 per head: a memory of ~1e4 tokens) and S (log λ = -0.5 u⁴, u ~ U(0, 1): mostly weak decays) decays,
    both normalisations. Both forms compute the same sums (the chunk form regroups them by chunks; see
    ``bizoo/kernels/lion/reference.py``), in a different order.

    Tolerance 1e-3 of the largest output: the RNN form adds into a state for up to 65,536 steps in fp32, whose
    rounding error is bounded by L·eps ≈ 4e-3 relative (measured: up to 1.2e-4 with the D decay unnormalised);
    the chunk form is also held to 2e-5 of an fp64 run of itself (its errors: sums of 64 terms inside a chunk and a
    scan over 1024 chunk states, ≤ 1024·eps ≈ 6e-5; measured 1.6e-6).

    The RNN form runs once (one Python step per token): its three heads carry the three decays as LION-S log λ
    (B, H, L) (LIT ≡ log λ = 0 and D ≡ one constant per head, which is what the op makes of None and (H,)), and a
    ones column appended to v gives the row sums beside the numerator (what the op does for normalize=True).
    """
    L, D = 65_536, 2
    g = torch.Generator().manual_seed(0)
    q = torch.rand(1, 3, L, D, generator=g) + 0.1
    k = torch.rand(1, 3, L, D, generator=g) + 0.1
    v = torch.randn(1, 3, L, D, generator=g)
    d_decay = torch.tensor([-1e-4])  # (H,) for one head
    s_decay = -0.5 * torch.rand(1, 1, L, generator=g) ** 4  # (B, H, L) for one head
    per_head = torch.cat([torch.zeros(1, 1, L), d_decay.expand(1, 1, L), s_decay], dim=1)  # (1, 3, L)
    v1 = torch.cat([v, torch.ones(1, 3, L, 1)], dim=-1)
    rnn = lion_attention(q, k, v1, per_head, form="rnn", normalize=False, backend="reference")  # (1, 3, L, D + 1)
    rnn_by_normalize = {False: rnn[..., :D], True: rnn[..., :D] / rnn[..., D:]}
    for head, (name, log_decay) in enumerate((("lit", None), ("d", d_decay), ("s", s_decay))):
        qh, kh, vh = (t[:, head : head + 1] for t in (q, k, v))  # (1, 1, L, D): the head that carries this decay
        for normalize in (True, False):
            chunk = lion_attention(qh, kh, vh, log_decay, form="chunk", chunk_size=64, normalize=normalize)
            exact = lion_attention(
                qh.double(), kh.double(), vh.double(), None if log_decay is None else log_decay.double(),
                form="chunk", chunk_size=64, normalize=normalize,
            )
            rnn_head = rnn_by_normalize[normalize][:, head : head + 1]
            assert torch.isfinite(chunk).all() and torch.isfinite(rnn_head).all()
            assert rel(chunk, rnn_head) < 1e-3, (name, normalize, rel(chunk, rnn_head))
            assert rel(chunk, exact) < 2e-5, (name, normalize, rel(chunk, exact))


# ----------------------------------------------------------------------------------------------------------------
# Property test (hypothesis): the forms agree and padding is invisible
# ----------------------------------------------------------------------------------------------------------------


# Examples of the property (derandomised, no example database: a run is deterministic).
LION_FORMS_EXAMPLES = 60


@examples(LION_FORMS_EXAMPLES)
@given(data=st.data())
def test_lion_forms_agree_with_gradients_and_padding_is_invisible(data):
    """attention = rnn = chunk (any chunk size: 1, not dividing L, larger than L), forward and gradients, for the
    three decay types (each example checks all three) and both normalisations; a row alone = the row in a padded
    batch; zeros at padding."""
    B, H, L = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 16))
    Dk, Dv = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    chunk_size = data.draw(st.integers(1, L + 6), label="chunk_size")
    for decay in ("lit", "d", "s"):
        case = lion_case(data, B=B, H=H, L=L, Dk=Dk, Dv=Dv, dtype=torch.float64, decay=decay)
        check_lion_forms(data, *case, chunk_size=chunk_size)


def check_lion_forms(data, q, k, v, log_decay, mask, normalize, *, chunk_size):
    B, H, L, Dv = *q.shape[:3], v.shape[-1]
    leaves = [q, k, v] + ([log_decay] if log_decay is not None else [])
    cotangent = torch.randn(B, H, L, Dv, generator=generator(data), dtype=torch.float64)

    def run(form, chunk=chunk_size):
        def fn(q, k, v, *decay):
            return lion_attention(q, k, v, decay[0] if decay else None, mask, form=form, chunk_size=chunk,
                                  normalize=normalize, backend="reference")
        return value_and_grads(fn, leaves, [cotangent])

    (want,), want_grads = run("attention")
    assert want.dtype == torch.float64 and torch.isfinite(want).all()
    assert (want[~mask[:, None, :].expand(B, H, L)] == 0).all()  # exact zeros at padding
    for form in ("rnn", "chunk"):
        (got,), grads = run(form)
        close(got, want)
        for name, g, e in zip(("q", "k", "v", "log_decay"), grads, want_grads):
            assert torch.isfinite(g).all(), (form, name)
            close(g, e)
    pad = ~mask[:, None, :]
    for g in want_grads[:3]:
        assert (g.masked_select(pad[..., None]) == 0).all()  # padded inputs get no gradient
    if log_decay is not None and log_decay.dim() == 3:
        assert (want_grads[3].masked_select(pad) == 0).all()

    form = data.draw(st.sampled_from(FORMS), label="form of the rows alone")
    for b in range(B):
        pos = mask[b].nonzero().flatten()
        if len(pos) == 0:
            continue
        one = [t[b : b + 1, :, pos] for t in (q, k, v)]
        decay = log_decay if log_decay is None or log_decay.dim() == 1 else log_decay[b : b + 1, :, pos]
        alone = lion_attention(*one, decay, form=form, chunk_size=chunk_size, normalize=normalize,
                               backend="reference")
        close(want[b, :, pos], alone[0])
