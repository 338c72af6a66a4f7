"""The S4D SSM of BiGS: the kernel, the initialisation and every form of the bidirectional op against oracles.

The oracles below are written from the definitions (a sum of powers taken by repeated products, the step-by-step
recurrence, an O(L²) convolution with explicit index arithmetic, numpy's eigh), so they share no code and no trick
(exp of l·Δ·A, FFT, Toeplitz matrices, chunking) with the op.
"""

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bizoo.kernels.ssm as ssm
from bizoo.kernels import dispatch
from bizoo.kernels.ssm import FORMS, bidirectional_ssm, fft_size, s4d_init, s4d_kernel, ssm_conv
from bizoo.kernels.ssm import reference

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


# ----------------------------------------------------------------------------------------------------------------
# Oracles
# ----------------------------------------------------------------------------------------------------------------


def numpy_params(log_step, A_re, A_im, C):
    """(Δ, A, C) as numpy float / complex128 with the clamp of A_re applied."""
    A = np.minimum(A_re.detach().double().numpy(), -1e-4) + 1j * A_im.detach().double().numpy()
    c = C[:, 0].detach().double().numpy() + 1j * C[:, 1].detach().double().numpy()
    return math.exp(float(log_step.reshape(()))), A, c


def brute_force_kernel(log_step, A_re, A_im, C, length):
    """K[l] = Re Σ_n C_n B̄_n Ā_n^l with Ā^l taken by repeated products, complex128."""
    step, A, c = numpy_params(log_step, A_re, A_im, C)
    a_bar = np.exp(step * A)
    b_bar = (np.exp(step * A) - 1) / A
    power = np.ones_like(a_bar)
    out = []
    for _ in range(length):
        out.append(np.sum(c * b_bar * power).real)
        power = power * a_bar
    return torch.tensor(out, dtype=torch.float64)


def step_by_step(u, params, d, reverse=False):
    """x_t = Ā x_{t∓1} + B̄ u_t, y_t = Re(C x_t) + d u_t, a Python loop over time in complex128. u (B, L, H)."""
    step, A, c = numpy_params(*params)
    a_bar, b_bar = np.exp(step * A), (np.exp(step * A) - 1) / A
    x_in = u.detach().double().numpy()
    B, L, H = x_in.shape
    state = np.zeros((B, H, len(A)), dtype=np.complex128)
    y = np.zeros((B, L, H))
    for t in reversed(range(L)) if reverse else range(L):
        state = a_bar * state + b_bar * x_in[:, t, :, None]
        y[:, t] = (state @ c).real + float(d.reshape(())) * x_in[:, t]
    return torch.from_numpy(y)


def direct(u, k, d, reverse=False, mask=None):
    """y[t] = Σ_{s≤t} k[t-s] u[s] (or Σ_{s≥t} k[s-t] u[s]) + d u[t], O(L²), in float64, zeros at padding."""
    u = u.detach().double()
    k = k.detach().double()
    if mask is not None:
        u = torch.where(mask.bool()[:, :, None], u, 0.0)
    B, L, H = u.shape
    y = torch.zeros(B, L, H, dtype=torch.float64)
    for t in range(L):
        for s in range(L):
            lag = s - t if reverse else t - s
            if lag >= 0:
                y[:, t] += k[lag] * u[:, s]
    y = y + float(d.reshape(())) * u
    if mask is not None:
        y = torch.where(mask.bool()[:, :, None], y, 0.0)
    return y


def hippo_numpy(N):
    """The original construction: eigh of S·(-i) with numpy (lower triangle), S the normal part of HiPPO-LegS."""
    P = np.sqrt(1 + 2 * np.arange(N))
    A = -(np.tril(P[:, None] * P[None, :]) - np.diag(np.arange(N)))
    p = np.sqrt(np.arange(N) + 0.5)
    S = A + p[:, None] * p[None, :]
    return np.mean(np.diagonal(S)), np.linalg.eigh(S * -1j)[0]


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def make_params(N=8, scaling="hippo", seed=0, dtype=torch.float64):
    p = s4d_init(N, scaling, torch.Generator().manual_seed(seed), dtype=dtype)
    return (p["log_step"], p["A_re"], p["A_im"], p["C"])


def make_inputs(B, L, H, dtype=torch.float64, seed=0, N=8):
    """Inputs, kernels, skips and the SSM parameters of both directions (kernels from the parameters)."""
    g = torch.Generator().manual_seed(seed)
    params = (make_params(N, "hippo", seed, dtype), make_params(N, "inv", seed + 1, dtype))
    u_fwd = torch.randn(B, L, H, generator=g, dtype=dtype)
    u_bwd = torch.randn(B, L, H, generator=g, dtype=dtype)
    k_fwd, k_bwd = (s4d_kernel(*p, L) for p in params)
    d_fwd, d_bwd = torch.randn(1, generator=g, dtype=dtype), torch.randn(1, generator=g, dtype=dtype)
    return (u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd), params


def run(args, mask=None, form="fft", params=None, chunk_size=4):
    return bidirectional_ssm(
        *args, mask, form=form, backend="reference", recurrent_params=params, chunk_size=chunk_size
    )


def padded_mask(lengths, L, side):
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for b, n in enumerate(lengths):
        if side == "right":
            mask[b, :n] = 1
        else:
            mask[b, L - n :] = 1
    return mask


# ----------------------------------------------------------------------------------------------------------------
# s4d_kernel
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scaling", ["hippo", "lin", "inv"])
def test_kernel_matches_brute_force_fp64(scaling):
    log_step, A_re, A_im, C = make_params(16, scaling, seed=3)
    A_re = A_re.clone()
    A_re[:3] = torch.tensor([0.7, -1e-6, -2.0], dtype=torch.float64)  # clamped, clamped, kept
    k = s4d_kernel(log_step, A_re, A_im, C, 300)
    assert k.dtype == torch.float64 and k.shape == (300,)
    torch.testing.assert_close(k, brute_force_kernel(log_step, A_re, A_im, C, 300), rtol=1e-10, atol=1e-10)


def test_kernel_is_the_impulse_response_of_the_recurrence():
    params = make_params(8, "lin", seed=1)
    u = torch.zeros(1, 40, 1, dtype=torch.float64)
    u[0, 0, 0] = 1.0
    response = step_by_step(u, params, torch.zeros(1))[0, :, 0]
    torch.testing.assert_close(s4d_kernel(*params, 40), response, rtol=1e-10, atol=1e-12)


def test_kernel_dtypes_and_fp32_precision():
    params64 = make_params(64, "hippo", seed=2)
    k64 = s4d_kernel(*params64, 2048)
    k32 = s4d_kernel(*(p.float() for p in params64), 2048)
    kbf = s4d_kernel(*(p.bfloat16() for p in params64), 16)
    assert k32.dtype == torch.float32 and kbf.dtype == torch.float32
    torch.testing.assert_close(k32.double(), k64, rtol=0, atol=2e-5 * k64.abs().max().item())


def test_kernel_of_a_slow_undamped_mode_keeps_its_digits():
    """|Δ A| ≪ 1: exp(ΔA) - 1 would cancel; expm1 keeps B̄ ≈ Δ to fp32 precision."""
    log_step = torch.tensor([math.log(1e-3)])
    A_re, A_im = torch.tensor([-1e-4]), torch.tensor([1e-3])
    C = torch.tensor([[1.0, 0.0]])
    k32 = s4d_kernel(log_step, A_re, A_im, C, 8)
    k64 = brute_force_kernel(log_step, A_re, A_im, C, 8)
    torch.testing.assert_close(k32.double(), k64, rtol=2e-6, atol=0)


def test_kernel_gradcheck():
    log_step, A_re, A_im, C = (p.clone().requires_grad_() for p in make_params(4, "lin", seed=5))
    assert torch.autograd.gradcheck(lambda *p: s4d_kernel(*p, 12), (log_step, A_re, A_im, C))


# ----------------------------------------------------------------------------------------------------------------
# s4d_init
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("N", [1, 7, 64])
def test_init_hippo_matches_the_original_construction(N):
    p = s4d_init(N, "hippo", dtype=torch.float64)
    mean_diag, eig = hippo_numpy(N)
    assert mean_diag == pytest.approx(-0.5)
    assert torch.equal(p["A_re"], torch.full((N,), -0.5, dtype=torch.float64))
    np.testing.assert_allclose(p["A_im"].numpy(), eig, rtol=0, atol=1e-9 * max(1.0, np.abs(eig).max()))
    assert bool((p["A_im"][1:] >= p["A_im"][:-1]).all())  # ascending


def test_init_lin_and_inv():
    N = 10
    n = np.arange(N)
    lin, inv = s4d_init(N, "lin", dtype=torch.float64), s4d_init(N, "inv", dtype=torch.float64)
    np.testing.assert_allclose(lin["A_im"].numpy(), np.pi * n, rtol=1e-15)
    np.testing.assert_allclose(inv["A_im"].numpy(), N / np.pi * (N / (2 * n + 1) - 1), rtol=1e-14, atol=1e-14)
    assert bool((lin["A_re"] == -0.5).all()) and bool((inv["A_re"] == -0.5).all())


def test_init_random_parts_shapes_dtypes_and_determinism():
    a = s4d_init(4096, "lin", torch.Generator().manual_seed(0))
    b = s4d_init(4096, "lin", torch.Generator().manual_seed(0))
    shapes = {k: tuple(v.shape) for k, v in a.items()}
    assert shapes == {"A_re": (4096,), "A_im": (4096,), "C": (4096, 2), "log_step": (1,)}
    assert all(v.dtype == torch.float32 for v in a.values())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["C"].std()) == pytest.approx(math.sqrt(0.5), rel=0.05)
    steps = torch.stack([s4d_init(2, "lin", torch.Generator().manual_seed(s))["log_step"] for s in range(200)])
    assert float(steps.min()) >= math.log(0.01) and float(steps.max()) <= 0.0
    assert float(steps.max() - steps.min()) > 0.8 * math.log(100)  # spread over the whole range


# ----------------------------------------------------------------------------------------------------------------
# The forms of the bidirectional op
# ----------------------------------------------------------------------------------------------------------------


def test_fft_size():
    for n in range(1, 300):
        m = fft_size(n)
        smooth = lambda x: x == 1 or any(x % p == 0 and smooth(x // p) for p in (2, 3, 5))  # noqa: E731
        assert m >= n and smooth(m)
        assert not any(smooth(x) for x in range(n, m))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form", FORMS)
def test_forms_match_direct_convolution(form, dtype):
    args, params = make_inputs(2, 37, 3, dtype=dtype)
    y_fwd, y_bwd = run(args, form=form, params=params)
    assert y_fwd.dtype == dtype and y_bwd.dtype == dtype
    u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd = args
    tol = TOL[dtype]
    torch.testing.assert_close(y_fwd.double(), direct(u_fwd, k_fwd, d_fwd), rtol=tol, atol=tol)
    torch.testing.assert_close(y_bwd.double(), direct(u_bwd, k_bwd, d_bwd, reverse=True), rtol=tol, atol=tol)


@pytest.mark.parametrize("form", FORMS)
def test_non_contiguous_inputs(form):
    args, params = make_inputs(2, 300, 3)  # 300 > the default chunk size: several chunks
    strided = tuple(u.transpose(1, 2).contiguous().transpose(1, 2) for u in args[:2]) + args[2:]
    assert not strided[0].is_contiguous()
    for y, want in zip(bidirectional_ssm(*strided, form=form, recurrent_params=params), run(args, form="toeplitz")):
        assert y.is_contiguous()
        torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 37, 64])
def test_recurrent_form_is_the_recurrence(chunk_size):
    args, params = make_inputs(2, 37, 2)
    y_fwd, y_bwd = run(args[:2] + (None, None) + args[4:], form="recurrent", params=params, chunk_size=chunk_size)
    torch.testing.assert_close(y_fwd, step_by_step(args[0], params[0], args[4]), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_bwd, step_by_step(args[1], params[1], args[5], reverse=True), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_anticausal_direction_is_flip_conv_flip(form):
    (u, _, k, _, d, _), (p, _) = make_inputs(2, 23, 3)
    _, y_bwd = run((u, u, k, k, d, d), form=form, params=(p, p))
    y_flip, _ = run((u.flip(1), u, k, k, d, d), form=form, params=(p, p))
    torch.testing.assert_close(y_bwd, y_flip.flip(1), rtol=1e-12, atol=1e-12)
    single = ssm_conv(u, k, d, reverse=True, form=form, params=p, chunk_size=4)
    torch.testing.assert_close(single, y_bwd, rtol=0, atol=0)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("form", FORMS)
def test_padding_gives_each_row_its_alone_result(form, side):
    L, lengths = 19, [19, 11, 1, 6]
    args, params = make_inputs(len(lengths), L, 3, dtype=torch.float32)
    mask = padded_mask(lengths, L, side)
    poisoned = tuple(torch.where(mask.bool()[:, :, None], u, float("nan")) for u in args[:2]) + args[2:]
    y_fwd, y_bwd = run(poisoned, mask, form=form, params=params)
    for b, n in enumerate(lengths):
        real = slice(0, n) if side == "right" else slice(L - n, L)
        alone = run(tuple(u[b : b + 1, real] for u in args[:2]) + tuple(k[:n] for k in args[2:4]) + args[4:],
                    form=form, params=params)
        for y, y_alone in zip((y_fwd, y_bwd), alone):
            torch.testing.assert_close(y[b : b + 1, real], y_alone, rtol=1e-5, atol=1e-5)
            assert bool((y[b, mask[b] == 0] == 0).all())


def test_mask_dtypes_and_holes():
    args, params = make_inputs(2, 9, 2)
    mask = torch.tensor([[1, 1, 0, 1, 1, 1, 0, 0, 1], [0, 1, 1, 1, 1, 1, 1, 1, 0]])
    expected = (direct(args[0], args[2], args[4], mask=mask), direct(args[1], args[3], args[5], True, mask))
    for m in (mask, mask.bool(), mask.float()):
        for form in FORMS:
            for y, want in zip(run(args, m, form=form, params=params), expected):
                torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", ["fft", "toeplitz"])
def test_gradcheck_forms(form):
    args, _ = make_inputs(2, 6, 2)
    args = tuple(t.clone().requires_grad_() for t in args)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]])
    assert torch.autograd.gradcheck(lambda *a: run(a, mask, form=form), args)


def test_gradcheck_recurrent_form_through_the_parameters():
    args, params = make_inputs(1, 7, 2, N=3)
    leaves = tuple(t.clone().requires_grad_() for t in args[:2] + args[4:] + params[0] + params[1])

    def f(u_fwd, u_bwd, d_fwd, d_bwd, *p):
        return run((u_fwd, u_bwd, None, None, d_fwd, d_bwd), form="recurrent", params=(p[:4], p[4:]), chunk_size=3)

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("form", FORMS)
def test_half_precision_inputs_are_computed_in_fp32(form, dtype):
    args, params = make_inputs(2, 50, 4, dtype=torch.float32)
    half = tuple(u.to(dtype) for u in args[:2]) + args[2:]
    y_half = run(half, form=form, params=params)
    y_ref = run(tuple(u.float() for u in half[:2]) + args[2:], form=form, params=params)
    for y, want in zip(y_half, y_ref):
        assert y.dtype == dtype
        torch.testing.assert_close(y, want.to(dtype))  # fp32 compute, one rounding at the end


def test_autocast_does_not_lower_the_precision():
    args, _ = make_inputs(2, 40, 3, dtype=torch.float32)
    plain = run(args, form="toeplitz")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = run(args, form="toeplitz")
    for a, b in zip(plain, inside):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_auto_form_follows_the_crossover(monkeypatch):
    calls = []
    for name in ("fft_form", "toeplitz_form"):
        original = getattr(reference, name)
        monkeypatch.setattr(reference, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    crossover = ssm.REFERENCE_FFT_MIN_LENGTH
    for L, expected in ((crossover - 1, "toeplitz_form"), (crossover, "fft_form")):
        calls.clear()
        args, _ = make_inputs(1, L, 1)
        bidirectional_ssm(*args, backend="reference")
        assert calls == [expected, expected]


# ----------------------------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------------------------


def _bad_calls():
    (u, ub, k, kb, d, db), params = make_inputs(2, 5, 3)
    ok = dict(u_fwd=u, u_bwd=ub, k_fwd=k, k_bwd=kb, d_fwd=d, d_bwd=db)
    return [
        (dict(ok, u_fwd=u[0]), "u_fwd must be a tensor of shape (B, L, H)"),
        (dict(ok, u_fwd=u.long()), "u_fwd must be a floating-point"),
        (dict(ok, u_bwd=ub[:, :4]), "u_bwd must have the shape of u_fwd"),
        (dict(ok, k_fwd=k[:4]), "k_fwd must have shape (L,) = (5,)"),
        (dict(ok, k_bwd=None), "k_bwd must be a torch.Tensor"),
        (dict(ok, d_bwd=torch.ones(3, dtype=torch.float64)), "d_bwd must have shape () or (1,)"),
        (dict(ok, attention_mask=torch.ones(2, 4)), "attention_mask must be None or a tensor of shape (B, L) = (2, 5)"),
        (dict(ok, attention_mask=torch.full((2, 5), 2)), "attention_mask must hold only 0"),
        (dict(ok, form="conv"), "form must be one of"),
        (dict(ok, backend="cuda"), "backend must be one of"),
        (dict(ok, form="recurrent"), "form='recurrent' needs the SSM parameters"),
        (dict(ok, form="recurrent", recurrent_params=params, chunk_size=0), "chunk_size must be a positive int"),
        (dict(ok, form="recurrent", recurrent_params=params[0]), "recurrent_params must be a pair"),
        # a sequence of the wrong length is named by its length, not only by its type
        (dict(ok, form="recurrent", recurrent_params=params[0]), "backward), got a tuple of 4 items"),
        (dict(ok, form="recurrent", recurrent_params=(params[0], params[1][:3])), "recurrent_params[1] (backward)"),
        (
            dict(ok, form="recurrent", recurrent_params=(params[0], params[1][:3])),
            "(log_step, A_re, A_im, C), got a tuple of 3 items",
        ),
        (
            dict(ok, form="recurrent", recurrent_params=(params[0], params[1][:3] + (torch.ones(8, 3),))),
            "C must have shape (N, 2) = (8, 2)",
        ),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_inputs_raise_value_errors_naming_the_argument(case):
    kwargs, message = _bad_calls()[case]
    with pytest.raises(ValueError, match=r"^bidirectional_ssm: .*" + re.escape(message)):
        bidirectional_ssm(**kwargs)


def test_bad_kernel_and_init_arguments():
    params = make_params(4)
    with pytest.raises(ValueError, match="s4d_kernel: length must be a positive int, got 0"):
        s4d_kernel(*params, 0)
    with pytest.raises(ValueError, match=r"s4d_kernel: the parameters A_im must have shape \(N,\) = \(4,\)"):
        s4d_kernel(params[0], params[1], params[2][:3], params[3], 5)
    with pytest.raises(ValueError, match="s4d_init: scaling must be one of .*got 'legs'"):
        s4d_init(4, "legs")
    with pytest.raises(ValueError, match="s4d_init: N must be a positive int, got 0"):
        s4d_init(0)
    with pytest.raises(ValueError, match="ssm_conv: form must be one of"):
        ssm_conv(torch.ones(1, 2, 1), torch.ones(2), torch.ones(1), form="direct")


def test_triton_backend_without_a_kernel_is_a_clear_error():
    args, params = make_inputs(1, 4, 1)
    if ssm.bidirectional_ssm_triton is None:
        with pytest.raises(ValueError, match="backend='triton'"):
            bidirectional_ssm(*args, backend="triton")
    else:
        with pytest.raises(ValueError, match="form='recurrent' runs on backend='reference' only"):
            bidirectional_ssm(*args, form="recurrent", backend="triton", recurrent_params=params)


# ----------------------------------------------------------------------------------------------------------------
# Property: random shapes and padding, every form agrees with the direct convolution
# ----------------------------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    B=st.integers(1, 3),
    L=st.integers(1, 24),
    H=st.integers(1, 3),
    side=st.sampled_from(["none", "right", "left"]),
    chunk_size=st.integers(1, 8),
    data=st.data(),
)
def test_property_all_forms_agree(B, L, H, side, chunk_size, data):
    seed = data.draw(st.integers(0, 2**16))
    args, params = make_inputs(B, L, H, seed=seed, N=4)
    mask = None
    if side != "none":
        lengths = data.draw(st.lists(st.integers(0, L), min_size=B, max_size=B))
        mask = padded_mask(lengths, L, side)
    expected = (direct(args[0], args[2], args[4], mask=mask), direct(args[1], args[3], args[5], True, mask))
    for form in FORMS:
        for y, want in zip(run(args, mask, form=form, params=params, chunk_size=chunk_size), expected):
            torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------------------------
# Real arithmetic: what a traced graph runs (torch.compile, torch.export and so ONNX, which has no complex dtype)
# ----------------------------------------------------------------------------------------------------------------


def wide_params(N, seed, dtype, log_step):
    """S4D parameters far from the initialisation, so that the comparisons are not vacuous: real parts in (-4, 0]
    and two above the clamp, imaginary parts ~ N(0, 30²) and one almost 0, C ~ N(0, 2²)."""
    g = torch.Generator().manual_seed(seed)
    A_re = torch.rand(N, generator=g, dtype=dtype) * -4.0
    A_re[:2] = torch.tensor([0.5, -1e-6])  # both clamped to -1e-4
    A_im = torch.randn(N, generator=g, dtype=dtype) * 30.0
    A_im[2] = 1e-3
    C = torch.randn(N, 2, generator=g, dtype=dtype) * 2.0
    return torch.tensor([log_step], dtype=dtype), A_re, A_im, C


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("log_step", [-9.0, -3.5, -1.0, 1.5])
def test_real_arithmetic_kernel_equals_the_complex_one(dtype, log_step):
    """``s4d_kernel_real`` (pairs of real tensors: e^z = e^a (cos b, sin b), e^z - 1 without cancellation, complex
    products and quotients written out) against the complex ``s4d_kernel``, over steps that take only the series of
    B̄, only expm1, or both."""
    params = wide_params(16, 0, dtype, log_step)
    step_A = math.exp(log_step) * torch.complex(params[1].clamp(max=-1e-4), params[2])
    small = step_A.abs() < reference.PHI_SERIES_RADIUS
    assert {-9.0: small.all(), -3.5: small.any() and not small.all(), 1.5: not small.any()}.get(log_step, True)
    k_complex = s4d_kernel(*params, 300)
    k_real = reference.s4d_kernel_real(*params, 300)
    scale = k_complex.abs().max().item()
    assert k_real.dtype == dtype and k_real.shape == (300,) and scale > 0  # compared relative to the scale
    torch.testing.assert_close(k_real, k_complex, rtol=0, atol=(2e-6 if dtype == torch.float32 else 1e-13) * scale)


def test_real_arithmetic_kernel_has_the_complex_gradients():
    """A traced training step differentiates the real form: its gradients are the complex form's (fp64)."""
    params = wide_params(12, 1, torch.float64, -3.5)
    weights = torch.randn(200, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for kernel in (s4d_kernel, reference.s4d_kernel_real):
        leaves = [p.clone().requires_grad_() for p in params]
        grads.append(torch.autograd.grad((kernel(*leaves, 200) * weights).sum(), leaves))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * want.abs().max().item())


def test_traced_kernel_and_toeplitz_take_their_traced_forms(monkeypatch):
    """While torch.compile or torch.export trace (``torch.compiler.is_compiling()``), ``s4d_kernel`` runs in real
    arithmetic and the Toeplitz matrix is a gather by t - s (unfold would fix the length in the graph): same values."""
    params = wide_params(16, 3, torch.float64, -1.0)
    k_eager = s4d_kernel(*params, 40)
    t_eager = reference.toeplitz(k_eager)
    calls = []
    kernel_real = reference._kernel_real
    monkeypatch.setattr(reference, "_kernel_real", lambda *a: calls.append(a) or kernel_real(*a))
    monkeypatch.setattr(dispatch, "tracing", lambda: True)
    torch.testing.assert_close(s4d_kernel(*params, 40), k_eager, rtol=0, atol=1e-13 * k_eager.abs().max().item())
    assert len(calls) == 1
    assert torch.equal(reference.toeplitz(k_eager), t_eager)
    assert torch.equal(reference.toeplitz(k_eager[:1]), t_eager[:1, :1])


@pytest.mark.parametrize("exporting", [False, True], ids=["compiling-chunks", "exporting-scan"])
@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_real_arithmetic_recurrence_equals_the_complex_one(monkeypatch, exporting, chunk_size):
    """``recurrent_form_real``: under torch.compile the chunked recurrence in pairs, while exporting one scan over
    the positions; both equal the complex ``recurrent_form`` in each direction, padding included."""
    args, _ = make_inputs(2, 37, 3)
    params = wide_params(8, 4, torch.float64, -2.0), wide_params(8, 5, torch.float64, -0.5)
    mask = padded_mask([37, 20], 37, "left")
    want = run(args[:2] + (None, None) + args[4:], mask, form="recurrent", params=params, chunk_size=chunk_size)
    monkeypatch.setattr(dispatch, "tracing", lambda: True)
    monkeypatch.setattr(dispatch, "exporting", lambda: exporting)
    calls = []
    real = reference.recurrent_form_real
    monkeypatch.setattr(reference, "recurrent_form_real", lambda *a: calls.append(a) or real(*a))
    got = run(args[:2] + (None, None) + args[4:], mask, form="recurrent", params=params, chunk_size=chunk_size)
    assert len(calls) == 2  # both directions took the real form
    for y, expected in zip(got, want):
        scale = expected.abs().max().item()
        assert scale > 1.0
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-12 * scale)
