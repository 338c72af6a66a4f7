r"""The diagonal state-space model (S4D) of BiGS: the reference math in plain PyTorch (fp32; fp64 stays fp64).

Gu et al. 2022, "On the Parameterization and Initialization of Diagonal State Space Models" (S4D);
Wang et al. 2022, "Pretraining Without Attention" (BiGS). The oracle of every other path.

Legend: B batch, L length (padding included), H channels (the SSM runs on each channel alone; all channels of one
direction share its kernel), N state size, T chunk size of the recurrent form, F = n/2 + 1 frequencies of an FFT
of size n.

The SSM of one direction. Parameters: ``A_re``, ``A_im`` (N,), ``C`` (N, 2) (real and imaginary parts),
``log_step`` (1,) and the skip ``d`` (1,). With

    A_n = min(A_re_n, -1e-4) + i A_im_n        (the real part is clamped: the state always decays)
    Δ   = exp(log_step)
    Ā_n = exp(Δ A_n),   B̄_n = (exp(Δ A_n) - 1) / A_n      (zero-order hold, B = 1)
    C_n = C[n, 0] + i C[n, 1]

the recurrence over a channel's inputs u_t (x_t ∈ ℂ^N, x_{-1} = 0)

    x_t = Ā ⊙ x_{t-1} + B̄ u_t,        y_t = Re(Σ_n C_n x_t[n]) + d u_t

unrolls into a causal convolution with the real kernel K (``s4d_kernel``):

    K[l] = Re(Σ_n C_n B̄_n Ā_n^l),   l = 0 … L-1,        y[t] = Σ_{s≤t} K[t-s] u[s] + d u[t].

Ā^l is evaluated as exp(l Δ A) (the exponent formed directly, never by repeated products) and exp(Δ A) - 1 with
``expm1``, so a nearly undamped, slowly turning mode (|Δ A| ≪ 1) loses no digits. The gradients keep theirs too
(``discretize``): for |Δ A| < 0.1, B̄ = Δ φ(ΔA) with φ(z) = (e^z - 1)/z = Σ_m z^m/(m+1)! summed as a series, whose
derivative Δ² φ'(ΔA) autograd forms without the cancellation of Δ e^{ΔA}/A - (e^{ΔA} - 1)/A² (a relative error
of order 1 at Δ = 1e-8 in fp32); and the derivative of expm1 is taken as e^z itself, not as expm1(z) + 1 (which is
rounding noise, not ~e^{-50}, for a step so large that the mode dies within one step).

The bidirectional op (``bidirectional_ssm``) runs two such SSMs: a causal one over ``u_fwd`` and an anti-causal
one over ``u_bwd``, each with its own kernel and skip, over the same (unflipped) time axis:

    y_fwd[t] = Σ_{s≤t} k_fwd[t-s] u_fwd[s] + d_fwd u_fwd[t]
    y_bwd[t] = Σ_{s≥t} k_bwd[s-t] u_bwd[s] + d_bwd u_bwd[t]

i.e. y_bwd = flip(causal(flip(u_bwd), k_bwd)): the backward SSM read right to left, computed here without flipping
anything.

Padding. Positions with ``attention_mask == 0`` are read as zero inputs, and their outputs are 0. As the kernel
depends on the distance only, a right- or left-padded sequence gets at its real tokens exactly what it gets alone:
the backward direction starts at the last real token. (A hole inside a sequence counts as zero inputs, keeping
its length.)

The forms of the one op (``form=``), equal up to rounding:

* ``"toeplitz"``: the (L, L) lower-triangular Toeplitz matrix T[t, s] = k[t-s] and one matmul over the B·H
  columns; the anti-causal direction multiplies by Tᵀ. O(L² B H) time, O(L²) extra memory: fast for short L.
* ``"fft"``: the convolution theorem with zero padding to n ≥ 2L (no wrap-around). Causal: irfft(rfft(k) ⊙
  rfft(u)); anti-causal, a correlation: irfft(conj(rfft(k)) ⊙ rfft(u)). O(B H L log L) time.
* ``"recurrent"``: the recurrence itself, from the SSM parameters rather than the kernel, in chunks of T steps.
  Inside a chunk, the T×T Toeplitz matrix of K[0 … T-1]; across chunks, the states carried in closed form
  (causal shown; the anti-causal direction runs the chunks backwards with the exponents mirrored):

      e_c        = Σ_{j<T} B̄ Ā^{T-1-j} u_{cT+j}              (what chunk c adds to the state at its end)
      x_c        = Ā^T x_{c-1} + e_c                          (a loop over the L/T chunks)
      y_{cT+i}  += Re(Σ_n C_n Ā_n^{i+1} x_{c-1}[n])           (the state entering chunk c)

  O(B H L (T + N)) time and O(B H L N / T) memory for the states: linear in L. ``chunk_size=1`` is the plain
  step-by-step recurrence.

All forms compute in fp32 (fp64 for fp64 inputs; half precision is upcast) with autocast disabled, and return each
output in the dtype of its input. Gradients come from autograd.

Traced graphs (section "Real arithmetic"): while torch.compile or torch.export trace, the kernel and the recurrent
form carry complex numbers as pairs of real tensors (ONNX has no complex dtype) and the Toeplitz matrix is a gather
(unfold would fix the length); while torch.export traces, the recurrent form is the plain recurrence as one scan over
the positions (``recurrent_form_real``). The same values to rounding.

Initialisation (``s4d_init``): log Δ ~ U(log 0.01, log 1); C ~ N(0, 1/2) for the real and the imaginary parts; and
by ``scaling``: "lin": A = -1/2 + iπn; "inv": A = -1/2 + i (N/π)(N/(2n+1) - 1); "hippo": the diagonal of the normal
part of HiPPO-LegS, S = -(tril(P Pᵀ) - diag(n)) + p pᵀ with P_n = √(2n+1), p_n = √(n+1/2): A_re = mean(diag S) =
-1/2 and A_im = the eigenvalues of the Hermitian matrix -i S (ascending), n = 0 … N-1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import dispatch
from ..dispatch import autocast_off
from .checks import FORMS, check_conv_inputs, check_init_args, check_inputs, check_kernel_args

A_RE_MAX = -1e-4  # the clamp of the real part of A


# ----------------------------------------------------------------------------------------------------------------
# The S4D kernel and its initialisation
# ----------------------------------------------------------------------------------------------------------------


def _real_dtype(*tensors) -> torch.dtype:
    """fp64 if any tensor is fp64, else fp32 (half precision is upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


class _Expm1(torch.autograd.Function):
    """expm1 whose derivative is exp(z), exact to rounding (torch's backward forms expm1(z) + 1, which cancels)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.expm1(z)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * torch.exp(z).conj()  # holomorphic: the conjugate derivative (PyTorch's complex convention)


PHI_SERIES_RADIUS = 0.1  # |Δ A| below which φ(z) = (e^z - 1)/z is summed as its series (9 terms: error < 3e-16)


def _phi_series(z):
    """φ(z) = Σ_{m=0}^{8} z^m / (m+1)!, Horner's rule; for |z| < 0.1 the truncation is below fp64 rounding."""
    out = torch.full_like(z, 1.0 / math.factorial(9))
    for m in range(7, -1, -1):
        out = out * z + 1.0 / math.factorial(m + 1)
    return out


def discretize(log_step, A_re, A_im, dtype):
    """Zero-order hold in ``dtype``: (Δ·A (N,) complex, B̄ (N,) complex), so that Ā = exp(Δ·A).

    B̄ = (exp(ΔA) - 1)/A, formed as Δ φ(ΔA) by its series for |ΔA| < 0.1 and with an exact expm1 derivative above
    (module docstring): values and gradients exact to rounding from Δ = 1e-8 to Δ = 1e4.
    """
    A = torch.complex(A_re.to(dtype).clamp(max=A_RE_MAX), A_im.to(dtype))  # (N,)
    step = log_step.to(dtype).exp().reshape(())  # Δ
    step_A = step * A  # (N,) Δ·A
    small = step_A.abs() < PHI_SERIES_RADIUS
    series = step * _phi_series(torch.where(small, step_A, 0.0))  # the unused branch sees 0: nothing overflows
    direct = _Expm1.apply(step_A) / A  # Re(ΔA) < 0: exp never overflows
    return step_A, torch.where(small, series, direct)  # B̄


def _powers(step_A, exponents):
    """Ā^l = exp(l·Δ·A) for every l in ``exponents`` (P,) and every mode: (P, N) complex."""
    return torch.exp(exponents.to(step_A.real.dtype)[:, None] * step_A[None, :])


def s4d_kernel(log_step, A_re, A_im, C, length: int) -> torch.Tensor:
    """The convolution kernel K[l] = Re(Σ_n C_n B̄_n Ā_n^l), l = 0 … length-1 (see the module docstring).

    Args:
        log_step: () or (1,), log Δ.
        A_re, A_im: (N,), the real part (clamped at -1e-4) and the imaginary part of A.
        C: (N, 2), the real and imaginary parts of C.
        length: L, the number of taps.

    Returns:
        (L,) real, fp32 (fp64 when any parameter is fp64); differentiable w.r.t. every parameter.
    """
    check_kernel_args("s4d_kernel", log_step, A_re, A_im, C, length)
    dtype = _real_dtype(log_step, A_re, A_im, C)
    with autocast_off(A_re.device):
        if dispatch.tracing():  # traced: no complex tensors (ONNX has none), see "Real arithmetic"
            return _kernel_real(log_step, A_re, A_im, C, length, dtype)
        step_A, b_bar = discretize(log_step, A_re, A_im, dtype)  # (N,), (N,)
        weight = torch.complex(C[:, 0].to(dtype), C[:, 1].to(dtype)) * b_bar  # (N,) C_n B̄_n
        vandermonde = _powers(step_A, torch.arange(length, device=A_re.device))  # (L, N) Ā_n^l
        return (vandermonde @ weight).real  # (L,)


# ----------------------------------------------------------------------------------------------------------------
# Real arithmetic: the kernel and the recurrent form without complex tensors, for traced graphs
# ----------------------------------------------------------------------------------------------------------------
# ONNX (so torch.onnx.export, and onnxruntime) has no complex dtype. While torch.compile or torch.export trace the
# op, the kernel and the recurrent form carry each complex number z = a + ib as a pair (a, b) of real tensors:
#
#     e^z       = e^a (cos b, sin b)
#     e^z - 1   = (expm1(a) cos b - 2 sin²(b/2),  e^a sin b)      (e^a cos b - 1 rewritten: no cancellation when
#                                                                   |z| is small, as expm1 of the complex form)
#     z w       = (a c - b d,  a d + b c)                          for w = c + id
#     z / w     = ((a c + b d),  (b c - a d)) / (c² + d²)
#
# and φ(z) by the same Horner steps in pairs. Eager mode keeps the complex tensors; the two agree to rounding
# (``s4d_kernel_real`` against ``s4d_kernel``, ``recurrent_form_real`` against ``recurrent_form``:
# tests/kernels/test_ssm_reference.py).


def _cmul(z, w):
    """(a + ib)(c + id) on pairs of real tensors (broadcasting): (ac - bd, ad + bc)."""
    return z[0] * w[0] - z[1] * w[1], z[0] * w[1] + z[1] * w[0]


def _phi_series_real(zr, zi):
    """``_phi_series`` on z = zr + i zi, as a pair: Horner's steps out ← out·z + 1/(m+1)!."""
    out_r, out_i = torch.full_like(zr, 1.0 / math.factorial(9)), torch.zeros_like(zr)
    for m in range(7, -1, -1):
        out_r, out_i = _cmul((out_r, out_i), (zr, zi))
        out_r = out_r + 1.0 / math.factorial(m + 1)
    return out_r, out_i


def discretize_real(log_step, A_re, A_im, dtype):
    """``discretize`` in real arithmetic: ((Δ·A)_re, (Δ·A)_im), (B̄_re, B̄_im), each (N,) in ``dtype``.

    B̄ = Δ φ(ΔA) for |ΔA| < 0.1, else (e^{ΔA} - 1)/A with e^{ΔA} - 1 as in the section's comment (the expm1 of the
    real part with the exact derivative e^a).
    """
    a_re = A_re.to(dtype).clamp(max=A_RE_MAX)  # (N,)
    a_im = A_im.to(dtype)  # (N,)
    step = log_step.to(dtype).exp().reshape(())  # Δ
    z_re, z_im = step * a_re, step * a_im  # (N,) Δ·A
    small = z_re.square() + z_im.square() < PHI_SERIES_RADIUS**2  # |ΔA| < 0.1 (ONNX has no hypot)
    zero = torch.zeros_like(z_re)
    series = _phi_series_real(torch.where(small, z_re, zero), torch.where(small, z_im, zero))  # unused: sees 0
    expm1_re = _Expm1.apply(z_re) * torch.cos(z_im) - 2.0 * torch.sin(0.5 * z_im).square()  # (N,) Re(e^z - 1)
    expm1_im = torch.exp(z_re) * torch.sin(z_im)  # (N,) Im(e^z - 1)
    norm = a_re.square() + a_im.square()  # |A|² >= 1e-8: the clamp keeps A away from 0
    direct_re = (expm1_re * a_re + expm1_im * a_im) / norm
    direct_im = (expm1_im * a_re - expm1_re * a_im) / norm
    b_bar = torch.where(small, step * series[0], direct_re), torch.where(small, step * series[1], direct_im)
    return (z_re, z_im), b_bar


def _powers_real(step_A, exponents):
    """``_powers`` as a pair: Ā^l = e^{l a} (cos l b, sin l b) for Δ·A = a + ib and each l of ``exponents`` (P,):
    (P, N) each."""
    lag = exponents.to(step_A[0].dtype)[:, None]  # (P, 1)
    magnitude = torch.exp(lag * step_A[0][None, :])  # (P, N)
    angle = lag * step_A[1][None, :]  # (P, N)
    return magnitude * torch.cos(angle), magnitude * torch.sin(angle)


def _kernel_real(log_step, A_re, A_im, C, length, dtype):
    """K[l] = Re(Σ_n C_n B̄_n Ā_n^l) = Σ_n (Re Ā^l Re w - Im Ā^l Im w)_n with w = C B̄: (L,) in ``dtype``."""
    step_A, b_bar = discretize_real(log_step, A_re, A_im, dtype)  # pairs of (N,)
    weight = _cmul((C[:, 0].to(dtype), C[:, 1].to(dtype)), b_bar)  # pair of (N,): C_n B̄_n
    power_re, power_im = _powers_real(step_A, torch.arange(length, device=A_re.device))  # (L, N) each
    return power_re @ weight[0] - power_im @ weight[1]  # (L,)


def s4d_kernel_real(log_step, A_re, A_im, C, length: int) -> torch.Tensor:
    """``s4d_kernel`` computed without complex tensors (what a traced graph runs, see "Real arithmetic"); the same
    arguments and result, equal to rounding."""
    check_kernel_args("s4d_kernel_real", log_step, A_re, A_im, C, length)
    with autocast_off(A_re.device):
        return _kernel_real(log_step, A_re, A_im, C, length, _real_dtype(log_step, A_re, A_im, C))


def hippo_imag(N: int) -> torch.Tensor:
    """The imaginary parts of the diagonal HiPPO-LegS initialisation: eigenvalues of -i S, ascending, fp64 (N,)."""
    n = torch.arange(N, dtype=torch.float64)
    P = (2 * n + 1).sqrt()  # (N,)
    p = (n + 0.5).sqrt()  # (N,)
    S = -(torch.outer(P, P).tril() - torch.diag(n)) + torch.outer(p, p)  # (N, N), normal; diagonal all -1/2
    # -i S = -i (S - diag S) + (i/2) I: a Hermitian matrix (S - diag S is skew-symmetric) plus a shift of every
    # eigenvalue by i/2. The original's eigh reads the lower triangle and drops the imaginary diagonal, i.e. it
    # diagonalises the Hermitian part; so do we, built from the lower triangle so that it is exactly Hermitian.
    lower = S.tril(-1)
    hermitian = -1j * (lower - lower.T).to(torch.complex128)  # (N, N)
    return torch.linalg.eigvalsh(hermitian)  # (N,) ascending


def s4d_init(
    N: int,
    scaling: str = "hippo",
    generator: torch.Generator | None = None,
    *,
    dt_min: float = 0.01,
    dt_max: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> dict:
    """Initial S4D parameters of one direction (see the module docstring).

    Returns:
        {"A_re": (N,), "A_im": (N,), "C": (N, 2), "log_step": (1,)} in ``dtype`` on ``device``; C and log_step are
        drawn (on the CPU) from ``generator``, A is deterministic.
    """
    check_init_args(N, scaling, dt_min, dt_max)
    n = torch.arange(N, dtype=torch.float64)
    if scaling == "lin":
        A_im = math.pi * n
    elif scaling == "inv":
        A_im = (N / math.pi) * (N / (2 * n + 1) - 1)
    else:
        A_im = hippo_imag(N)
    A_re = torch.full((N,), -0.5, dtype=torch.float64)  # = mean(diag S) for "hippo"
    C = torch.randn(N, 2, generator=generator, dtype=torch.float64) * math.sqrt(0.5)
    log_step = torch.rand(1, generator=generator, dtype=torch.float64) * math.log(dt_max / dt_min) + math.log(dt_min)
    out = {"A_re": A_re, "A_im": A_im, "C": C, "log_step": log_step}
    return {key: val.to(dtype=dtype, device=device) for key, val in out.items()}


# ----------------------------------------------------------------------------------------------------------------
# The forms. Each takes u (B, L, H) in the compute dtype with zeros at padding, and returns the convolution part
# (B, L, H) (without the skip d·u).
# ----------------------------------------------------------------------------------------------------------------


def fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: a size every FFT library handles fast."""
    best = 1 << max(n - 1, 0).bit_length()
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            f = f35
            while f < n:
                f *= 2
            best = min(best, f)
            f35 *= 3
        f5 *= 5
    return best


def toeplitz(k: torch.Tensor) -> torch.Tensor:
    """The lower-triangular Toeplitz matrix T[t, s] = k[t-s] (t >= s), 0 above the diagonal: (L, L)."""
    L = k.shape[0]
    if dispatch.tracing():  # traced: unfold fixes L in the graph; a gather by t - s keeps it symbolic
        positions = torch.arange(L, device=k.device)  # (L,)
        lag = positions[:, None] - positions[None, :]  # (L, L) t - s
        return torch.where(lag >= 0, k[lag.clamp(min=0)], 0.0)  # (L, L)
    hankel = F.pad(k, (L - 1, 0)).unfold(0, L, 1)  # (L, L) view: hankel[i, j] = k[i + j - (L-1)], 0 when < 0
    return hankel.flip(1)  # T[t, s] = hankel[t, L-1-s] = k[t - s]


def toeplitz_form(u, k, reverse: bool):
    """y = T u (causal) or Tᵀ u (anti-causal), one matmul over the B·H columns."""
    T = toeplitz(k)  # (L, L)
    return (T.mT if reverse else T) @ u  # (L, L) @ (B, L, H) -> (B, L, H)


def fft_form(u, k, reverse: bool):
    """Convolution (causal) or correlation (anti-causal) by FFT, zero-padded so that nothing wraps around."""
    if u.numel() == 0:  # B or H is 0: an FFT of nothing is an error in some FFT libraries (MKL)
        return toeplitz_form(u, k, reverse)
    L = u.shape[1]
    n = fft_size(2 * L)
    # FFTs along the contiguous axis of a (B, H, L) copy: forward+backward measured 15-50 % faster on a CPU than
    # strided FFTs over dim 1, the transposes included.
    U = torch.fft.rfft(u.transpose(1, 2).contiguous(), n=n)  # (B, H, F)
    K = torch.fft.rfft(k, n=n)  # (F,)
    if reverse:
        K = K.conj()  # Σ_m k[m] u[t+m]: a correlation
    return torch.fft.irfft(U * K, n=n)[..., :L].transpose(1, 2)  # (B, L, H)


def _into_chunks(u: torch.Tensor, chunk_size: int):
    """u (B, L, H) -> (u as (B, nc, T, H) with zeros after the end, T = min(chunk_size, L), nc, positions (T,) inside
    a chunk). The zero inputs at the end are invisible to both directions."""
    B, L, H = u.shape
    T = min(chunk_size, L)
    n_chunks = -(-L // T)
    if n_chunks * T != L:
        u = F.pad(u, (0, 0, 0, n_chunks * T - L))
    return u.reshape(B, n_chunks, T, H), T, n_chunks, torch.arange(T, device=u.device)


def recurrent_form(u, params, reverse: bool, chunk_size: int):
    """The recurrence from the SSM parameters, in chunks of T steps (see the module docstring)."""
    if dispatch.tracing():  # traced: no complex tensors (ONNX has none)
        return recurrent_form_real(u, params, reverse, chunk_size)
    B, L, H = u.shape
    log_step, A_re, A_im, C = params
    step_A, b_bar = discretize(log_step, A_re, A_im, u.dtype)  # (N,), (N,)
    c = torch.complex(C[:, 0].to(u.dtype), C[:, 1].to(u.dtype))  # (N,)
    N = step_A.shape[0]
    u, T, n_chunks, j = _into_chunks(u, chunk_size)  # (B, nc, T, H), chunk length, nc, (T,) position in a chunk

    # Inside each chunk: the kernel's first T taps as a Toeplitz matrix.
    kernel = (_powers(step_A, j) @ (c * b_bar)).real  # (T,) K[0 … T-1]
    inner = toeplitz(kernel)  # (T, T)
    y = (inner.mT if reverse else inner) @ u  # (B, nc, T, H)
    if n_chunks == 1:
        return y.view(B, T, H)[:, :L]

    # Causal: input j reaches the state at the chunk's end after T-1-j steps; the state entering the chunk reaches
    # output i after i+1 steps. Anti-causal: the chunk's start after j steps; output i after T-i steps.
    to_state = b_bar[:, None] * _powers(step_A, j if reverse else T - 1 - j).T  # (N, T)
    from_state = c[None, :] * _powers(step_A, T - j if reverse else j + 1)  # (T, N)

    added = torch.cat([to_state.real, to_state.imag]) @ u  # (B, nc, 2N, H): real matmul, re and im stacked
    added = torch.complex(added[:, :, :N], added[:, :, N:])  # (B, nc, N, H)
    decay = torch.exp(T * step_A)[:, None]  # (N, 1) Ā^T
    added = added.unbind(1)  # nc × (B, N, H); one unbind, not nc selects (each select's backward is a full tensor)
    state = torch.zeros_like(added[0])  # (B, N, H)
    entering = [None] * n_chunks
    for chunk in range(n_chunks - 1, -1, -1) if reverse else range(n_chunks):
        entering[chunk] = state
        state = decay * state + added[chunk]
    states = torch.stack(entering, dim=1)  # (B, nc, N, H)
    states = torch.cat([states.real, states.imag], dim=2)  # (B, nc, 2N, H)
    readout = torch.cat([from_state.real, -from_state.imag], dim=1)  # (T, 2N): Re(c x) = c_re x_re - c_im x_im
    y = y + readout @ states  # (B, nc, T, H)
    return y.reshape(B, n_chunks * T, H)[:, :L]


def recurrent_form_real(u, params, reverse: bool, chunk_size: int):
    """``recurrent_form`` in real arithmetic (the pairs of "Real arithmetic"): what a traced graph runs.

    Under torch.compile: the same chunks, closed forms and loop over the chunks as ``recurrent_form``. While
    torch.export traces (e.g. for ONNX, with a length that stays symbolic), the plain recurrence of the module
    docstring, one step per position, as ``torch._higher_order_ops.scan`` (one ONNX Scan whatever the length;
    ``chunk_size`` is not used): splitting a symbolic length into chunks makes the exporter fix the number of chunks,
    and so the length.
    """
    B, L, H = u.shape
    log_step, A_re, A_im, C = params
    step_A, b_bar = discretize_real(log_step, A_re, A_im, u.dtype)  # pairs of (N,)
    c = C[:, 0].to(u.dtype), C[:, 1].to(u.dtype)  # pair of (N,)
    N = step_A[0].shape[0]
    if dispatch.exporting():
        return _recurrence_scan(u, step_A, b_bar, c, reverse)
    u, T, n_chunks, j = _into_chunks(u, chunk_size)  # (B, nc, T, H), chunk length, nc, (T,) position in a chunk

    # Inside each chunk: K[0 … T-1] as a Toeplitz matrix.
    power_re, power_im = _powers_real(step_A, j)  # (T, N) each
    weight = _cmul(c, b_bar)  # pair of (N,): C_n B̄_n
    inner = toeplitz(power_re @ weight[0] - power_im @ weight[1])  # (T, T)
    y = (inner.mT if reverse else inner) @ u  # (B, nc, T, H)
    if n_chunks == 1:
        return y.view(B, T, H)[:, :L]

    # Across chunks, as ``recurrent_form``: what each chunk adds to the state, carried by Ā^T, read out inside the
    # next chunk (causal shown in the module docstring; anti-causal mirrored).
    to_powers = _powers_real(step_A, j if reverse else T - 1 - j)  # (T, N) each
    to_state = _cmul((b_bar[0][:, None], b_bar[1][:, None]), (to_powers[0].T, to_powers[1].T))  # (N, T) each
    from_state = _cmul((c[0][None, :], c[1][None, :]), _powers_real(step_A, T - j if reverse else j + 1))  # (T, N)
    added = torch.cat(to_state) @ u  # (B, nc, 2N, H): re and im stacked
    added_re, added_im = added[:, :, :N].unbind(1), added[:, :, N:].unbind(1)  # nc × (B, N, H) each
    decay = _powers_real(step_A, torch.full((1,), T, device=u.device))  # pair of (1, N): Ā^T
    decay = decay[0].reshape(N, 1), decay[1].reshape(N, 1)  # (N, 1) each
    state = (u.new_zeros(B, N, H), u.new_zeros(B, N, H))
    entering = [None] * n_chunks
    for chunk in range(n_chunks - 1, -1, -1) if reverse else range(n_chunks):
        entering[chunk] = torch.cat(state, dim=1)  # (B, 2N, H) re and im stacked
        state = _cmul(decay, state)
        state = state[0] + added_re[chunk], state[1] + added_im[chunk]
    states = torch.stack(entering, dim=1)  # (B, nc, 2N, H)
    readout = torch.cat([from_state[0], -from_state[1]], dim=1)  # (T, 2N): Re(c x) = c_re x_re - c_im x_im
    y = y + readout @ states  # (B, nc, T, H)
    return y.reshape(B, n_chunks * T, H)[:, :L]


def _recurrence_scan(u, step_A, b_bar, c, reverse: bool):
    """x_t = Ā x_{t∓1} + B̄ u_t, y_t = Re(Σ_n C_n x_t[n]) over the positions of u (B, L, H) as one scan (reversed
    for the anti-causal direction), in pairs: step_A, b_bar, c pairs of (N,). Returns (B, L, H).

    The step reads one (6, N) tensor of coefficients and the state is laid out (B, H, N): the tensors a scan's body
    closes over must not alias one another (C's columns would) and get symbolic sizes, among which a broadcast
    size-1 dimension would not trace.
    """
    from torch._higher_order_ops.scan import scan

    B, _, H = u.shape
    N = step_A[0].shape[0]
    decay = _powers_real(step_A, torch.ones(1, device=u.device))  # Ā: pair of (1, N)
    coefficients = torch.stack([decay[0].reshape(N), decay[1].reshape(N), *b_bar, *c])  # (6, N): Ā, B̄, C (re, im)

    def step(state, u_t):
        """state: pair of (B, H, N), u_t (B, H) -> (the next state, y_t (B, H))."""
        decay_re, decay_im, gain_re, gain_im, read_re, read_im = coefficients.unbind(0)  # (N,) each
        state_re, state_im = _cmul((decay_re, decay_im), state)  # (B, H, N) each: Ā x
        state_re = state_re + gain_re * u_t[..., None]  # + B̄ u_t
        state_im = state_im + gain_im * u_t[..., None]
        y_t = (read_re * state_re - read_im * state_im).sum(-1)  # (B, H): Re(C x)
        return (state_re, state_im), y_t

    zero = u.new_zeros(B, H, N)
    _, y = scan(step, (zero, zero.clone()), u.movedim(1, 0), reverse=reverse)  # (L, B, H), y[t] at position t
    return y.movedim(0, 1)  # (B, L, H)


# ----------------------------------------------------------------------------------------------------------------
# The ops
# ----------------------------------------------------------------------------------------------------------------


def _direction(u, k, d, keep, form, params, reverse, chunk_size):
    """One direction in the compute dtype: conv(u masked) + d u, zeros at padding, cast back to u's dtype."""
    dtype = torch.promote_types(u.dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
    x = u.to(dtype)
    if keep is not None:
        x = torch.where(keep, x, 0.0)  # torch.where, not a product: NaN at padding cannot leak
    if form == "fft":
        y = fft_form(x, k.to(dtype), reverse)
    elif form == "toeplitz":
        y = toeplitz_form(x, k.to(dtype), reverse)
    else:
        y = recurrent_form(x, tuple(p.to(dtype) for p in params), reverse, chunk_size)
    y = y + d.to(dtype).reshape(()) * x  # (B, L, H)
    if keep is not None:
        y = torch.where(keep, y, 0.0)
    return y.to(u.dtype).contiguous()


def _keep(attention_mask):
    return None if attention_mask is None else attention_mask.to(torch.bool)[:, :, None]  # (B, L, 1)


def ssm_conv(
    u, k, d, attention_mask=None, *, reverse: bool = False, form: str = "fft", params=None, chunk_size: int = 128
) -> torch.Tensor:
    """One direction: y[t] = Σ_{s≤t} k[t-s] u[s] + d u[t], or Σ_{s≥t} k[s-t] u[s] + d u[t] with ``reverse``.

    Args:
        u: (B, L, H). k: (L,) (may be None for form="recurrent"). d: () or (1,).
        attention_mask: (B, L), 1 for real tokens and 0 for padding, or None.
        form: "fft", "toeplitz" or "recurrent" (then ``params=(log_step, A_re, A_im, C)``).
        chunk_size: T of the recurrent form.

    Returns:
        (B, L, H) in the dtype of ``u``; zeros at padded positions.
    """
    check_conv_inputs(u, k, d, attention_mask, form, params, chunk_size)
    with autocast_off(u.device):
        return _direction(u, k, d, _keep(attention_mask), form, params, reverse, chunk_size)


def bidirectional_ssm(
    u_fwd,
    u_bwd,
    k_fwd,
    k_bwd,
    d_fwd,
    d_bwd,
    attention_mask=None,
    *,
    form: str = "fft",
    recurrent_params=None,
    chunk_size: int = 128,
):
    """The causal SSM over ``u_fwd`` and the anti-causal SSM over ``u_bwd`` (see the module docstring).

    Args:
        u_fwd, u_bwd: (B, L, H), the inputs of the two directions (same time axis, nothing flipped).
        k_fwd, k_bwd: (L,), their kernels (``s4d_kernel``); may be None for form="recurrent".
        d_fwd, d_bwd: () or (1,), their skips.
        attention_mask: (B, L), 1 for real tokens and 0 for padding, or None.
        form: "fft", "toeplitz" or "recurrent".
        recurrent_params: ((log_step, A_re, A_im, C) forward, (…) backward), for form="recurrent".
        chunk_size: T of the recurrent form.

    Returns:
        (y_fwd, y_bwd), each (B, L, H) in the dtype of its input; zeros at padded positions.
    """
    check_inputs(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask, form, recurrent_params, chunk_size)
    if form == "auto":
        raise ValueError(f"bidirectional_ssm: form must be one of {FORMS} here (the dispatcher resolves 'auto')")
    params_fwd, params_bwd = recurrent_params if recurrent_params is not None else (None, None)
    keep = _keep(attention_mask)
    with autocast_off(u_fwd.device):
        y_fwd = _direction(u_fwd, k_fwd, d_fwd, keep, form, params_fwd, False, chunk_size)
        y_bwd = _direction(u_bwd, k_bwd, d_bwd, keep, form, params_bwd, True, chunk_size)
    return y_fwd, y_bwd
