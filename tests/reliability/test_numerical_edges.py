"""Numerical edges on the CPU (the Triton kernels under ``TRITON_INTERPRET=1``): the BiGS SSM and CRF ops, the models.

What is checked, and against what:

* LION models: the extremes of the decay reached through ``LionDecay`` (λ → 0, λ → 1, a mix, beyond) with the
  three forms agreeing, and the elu feature map keeping small queries. The LION op's own numerical edges (log λ
  from -1e30 to 0 on every form and backend, log λ = -inf, a query of zeros, L = 65,536) are with the rest of its
  specification in ``tests/kernels/test_lion_reference.py`` and ``tests/kernels/test_lion_triton.py``.
* BiGS (``bizoo.kernels.ssm``) with step sizes Δ from 1e-8 to 1e4: the FFT, Toeplitz and recurrent forms (and the
  Triton kernel) against an fp64 oracle written here from the definition, outputs and every gradient; a model
  whose configuration draws Δ = 1e-6 or 1e2.
* CRF (``bizoo.kernels.crf``): entirely masked rows and -inf constraints (banned transitions, starts, ends, a row
  whose every path is banned, a banned gold path) on the reference, scan and Triton backends, against a
  brute-force enumeration in fp64; what the loss is then (documented: log-likelihood -inf, the loss +inf, never
  NaN; the model's CRF head raises a ValueError naming the rows).
* bf16 autocast on the CPU: every registered model with its masked-LM and token-classification heads (softmax and
  CRF), forward and backward, finite and close to fp32.

Tolerances are relative to the largest magnitude of the compared tensor (``rel``, ``tests/kernels/common.py``)
unless stated otherwise.
"""

import itertools
import math

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForTokenClassification

import bizoo
from bizoo.kernels.crf import (
    IGNORE_INDEX,
    crf_log_likelihood,
    crf_log_partition,
    crf_marginals,
    crf_max_marginals,
    crf_viterbi,
)
from bizoo.kernels.ssm import bidirectional_ssm, s4d_init, s4d_kernel
from tests.kernels.common import TRITON_ON_CPU, needs_interpreter, rel
from tests.tiny_configs import TINY_CONFIGS

NEG = float("-inf")
V = 120  # vocabulary of the tiny models


# ================================================================================================================
# LION models: extreme decays and small queries
# ================================================================================================================


def _lion_model(variant, normalization="rowsum"):
    config = bizoo.get_spec("lion").config_class(
        **{**TINY_CONFIGS["lion"], "vocab_size": V, "lion_variant": variant,
           "normalization": normalization, "chunk_size": 8}
    )
    return AutoModel.from_config(config)


def _lion_model_forms(model, ids, mask):
    """last_hidden_state and the parameter gradients of ⟨it, a fixed random tensor⟩, for each form, on the same
    weights (not of its sum: the sum of a LayerNorm's outputs hardly depends on its inputs)."""
    results = {}
    cotangent = torch.randn(ids.shape + (model.config.hidden_size,), generator=torch.Generator().manual_seed(2))
    for form in ("attention", "rnn", "chunk"):
        model.config.lion_form = form
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        (out * cotangent).sum().backward()
        results[form] = (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    return results


@pytest.mark.parametrize("normalization", ["rowsum", "none"])
@pytest.mark.parametrize("extreme", ["zero", "one", "mixed", "beyond"])
def test_lion_model_reaches_extreme_decays_and_its_forms_agree(extreme, normalization):
    """LionDecay turns a pre-activation z into log λ = log σ(-z): z = +1e4 gives log λ = -1e4 (λ → 0), z = -1e4 gives
    log λ = -0 (λ = 1 to fp32), weights of 1e4 give a mix of both from token to token, z = 1e30 gives log λ = -1e30.
    The model reaches them with large enough weights; its three forms must then still agree (the same math as the
    kernel tests) and every gradient stay finite. Tolerance 1e-4 of the largest hidden value, and 1e-4 of the
    largest gradient entry over all parameters for every gradient: two layers of the kernel's 1e-5 through the
    feed-forward blocks and LayerNorms. (Relative to each parameter's own largest gradient would compare noise:
    with λ → 0 and the row-sum normaliser y_i = v_i, and the gradients of q and k are rounding noise.)"""
    torch.manual_seed(0)
    model = _lion_model("s", normalization)
    with torch.no_grad():
        for layer in model.layers:
            decay = layer.mixer.decay
            decay.weight.zero_()
            decay.bias.fill_({"zero": 1e4, "one": -1e4, "mixed": 0.0, "beyond": 1e30}[extreme])
            if extreme == "mixed":
                decay.weight.normal_(0.0, 1e4, generator=torch.Generator().manual_seed(1))
    ids = torch.randint(5, V, (2, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 14:] = 0
    first = model.layers[0]
    log_decay = first.mixer.decay(first.mixer_layer_norm(model.embeddings(ids, None, None, mask)))  # (B, H, L)
    assert torch.isfinite(log_decay).all() and (log_decay <= 0).all()
    if extreme in ("zero", "mixed", "beyond"):
        assert log_decay.min() <= -1e3  # λ = 0 to every dtype
    if extreme in ("one", "mixed"):
        assert log_decay.max() >= -1e-6  # λ = 1 to fp32
    results = _lion_model_forms(model, ids, mask)
    reference, reference_grads = results["rnn"]
    scale = max(g.abs().max().item() for g in reference_grads.values())
    for form, (out, grads) in results.items():
        assert torch.isfinite(out).all(), form
        for name, g in grads.items():
            assert torch.isfinite(g).all(), f"{form}: non-finite gradient in {name}"
        assert rel(out, reference) < 1e-4, form
        assert grads.keys() == reference_grads.keys()
        errors = {name: (g - reference_grads[name]).abs().max().item() / scale for name, g in grads.items()}
        assert max(errors.values()) < 1e-4, (form, max(errors.items(), key=lambda item: item[1]))


def test_lion_elu_feature_map_keeps_small_queries():
    """elu(x) + 1 is exp(x) for x <= 0. Formed as (exp(x) - 1) + 1 it is exactly 0 in fp32 from x ≈ -17 on, and a
    query of zeros made the row-sum normaliser 0/0 (NaN). With every query pre-activation negative, q = exp(Wh + b)
    and the row-sum normaliser is invariant to the scale of q_i: a bias of -30 and one of -60 (q scaled by e^-30,
    still a normal fp32 number) must give the same outputs. Below x ≈ -103 exp(x) underflows to 0 in fp32 and only
    finiteness is left (the op's zero row sum)."""
    outputs = {}
    for bias in (0.0, -30.0, -60.0, -120.0):
        torch.manual_seed(0)
        model = _lion_model("lit")
        with torch.no_grad():
            for layer in model.layers:
                layer.mixer.q_proj.weight.mul_(0.1)  # pre-activations within a few hundredths of the bias
                layer.mixer.q_proj.bias.fill_(bias)
        ids = torch.randint(5, V, (2, 20), generator=torch.Generator().manual_seed(0))
        out = model(input_ids=ids).last_hidden_state
        out.sum().backward()
        assert torch.isfinite(out).all(), bias
        for name, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), f"bias {bias}: non-finite gradient in {name}"
        outputs[bias] = out.detach()
    assert rel(outputs[-60.0], outputs[-30.0]) < 1e-5


# ================================================================================================================
# BiGS: extreme step sizes
# ================================================================================================================

STEPS = [1e-8, 1e-6, 1e2, 1e4]  # the config allows any Δ > 0; the initialisation draws Δ in [0.01, 1] by default
SSM_PARTS = ("log_step", "A_re", "A_im", "C")


def _exact_kernel_and_jacobian(log_step, A_re, A_im, C, L):
    """K[l] = Re Σ_n C_n B̄_n Ā_n^l with B̄ = (e^{ΔA} - 1)/A, Ā^l = e^{lΔA}, and its derivatives, in 40-digit
    arithmetic (mpmath), straight from the definition; returned in fp64. The derivatives by hand:

        ∂(C B̄ Ā^l)/∂A = C (B̄' + l Δ B̄) Ā^l,  B̄' = (Δ A e^{ΔA} - (e^{ΔA} - 1))/A²   (holomorphic in A)
        ∂(C B̄ Ā^l)/∂Δ = C (e^{ΔA} + l A B̄) Ā^l,  and ∂/∂log Δ = Δ ∂/∂Δ

    and a real parameter x of a holomorphic f gives ∂Re f/∂A_re = Re f', ∂Re f/∂A_im = -Im f' (C likewise). At
    Δ = 1e-8, B̄' cancels ~9 of the 40 digits."""
    import mpmath

    N = A_re.shape[0]
    assert (A_re < -1e-4).all()  # the op clamps A_re at -1e-4; the initialisations stay well below
    K = [mpmath.mpf(0)] * L
    J_step = [mpmath.mpf(0)] * L
    J_re, J_im = torch.zeros(L, N, dtype=torch.float64), torch.zeros(L, N, dtype=torch.float64)
    J_c = torch.zeros(L, N, 2, dtype=torch.float64)
    with mpmath.workdps(40):
        dt = mpmath.exp(mpmath.mpf(log_step.item()))
        for n in range(N):
            A = mpmath.mpc(A_re[n].item(), A_im[n].item())
            c = mpmath.mpc(C[n, 0].item(), C[n, 1].item())
            e1 = mpmath.exp(dt * A)
            b = (e1 - 1) / A
            b_prime = (dt * A * e1 - (e1 - 1)) / A**2
            for l in range(L):
                p = mpmath.exp(l * dt * A)
                K[l] += (c * b * p).real
                f_a = c * (b_prime + l * dt * b) * p
                J_re[l, n], J_im[l, n] = float(f_a.real), float(-f_a.imag)
                J_c[l, n, 0], J_c[l, n, 1] = float((b * p).real), float(-(b * p).imag)
                J_step[l] += (dt * c * (e1 + l * A * b) * p).real
    as_tensor = lambda values: torch.tensor([float(x) for x in values], dtype=torch.float64)  # noqa: E731
    return as_tensor(K), (as_tensor(J_step), J_re, J_im, J_c)


class _ExactKernel(torch.autograd.Function):
    """The S4D kernel (L,) of fp64 parameters from ``_exact_kernel_and_jacobian``, with its exact Jacobian."""

    @staticmethod
    def forward(ctx, log_step, A_re, A_im, C, L):
        K, jacobian = _exact_kernel_and_jacobian(log_step, A_re, A_im, C, L)
        ctx.save_for_backward(*jacobian)
        return K

    @staticmethod
    def backward(ctx, grad):
        J_step, J_re, J_im, J_c = ctx.saved_tensors
        return (grad @ J_step).reshape(1), grad @ J_re, grad @ J_im, torch.einsum("l,lnc->nc", grad, J_c), None


def _ssm_oracle(u_f, u_b, params_f, params_b, d, mask):
    """Causal and anti-causal convolutions in fp64, by explicit Toeplitz matrices of the exact kernels."""
    L = u_f.shape[1]
    lags = torch.arange(L)[:, None] - torch.arange(L)[None, :]  # t - s
    keep = mask.bool()[:, :, None]
    outs = []
    for u, params, sign in ((u_f, params_f, 1), (u_b, params_b, -1)):
        k = _ExactKernel.apply(*params, L)
        toeplitz = torch.where(sign * lags >= 0, k[(sign * lags).clamp(min=0)], 0.0)  # T[t, s] = k[±(t - s)]
        x = torch.where(keep, u, 0.0)
        outs.append(torch.where(keep, toeplitz @ x + d * x, 0.0))
    return outs


def _ssm_problem(step, scaling, seed=0):
    """Both directions' parameters (s4d_init, then log Δ = log ``step``) and inputs, in fp64 but holding values that
    fp32 represents exactly, so that the fp32 forms and the oracle see the same numbers."""
    g = torch.Generator().manual_seed(seed)
    exact32 = lambda t: t.float().double()  # noqa: E731
    params = []
    for _ in range(2):
        p = s4d_init(8, scaling, generator=g, dtype=torch.float64)
        p["log_step"] = torch.full((1,), math.log(step), dtype=torch.float64)
        params.append(tuple(exact32(p[name]) for name in SSM_PARTS))
    u_f, u_b = exact32(torch.randn(2, 2, 40, 3, generator=g, dtype=torch.float64))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 31:] = 0
    return u_f, u_b, params, mask


def _ssm_gradients(u_f, u_b, params, mask, run):
    """Outputs, and the gradients of a fixed linear functional of them w.r.t. u_f, u_b and both directions'
    parameters."""
    leaves = [u_f.clone().requires_grad_(), u_b.clone().requires_grad_()]
    leaves += [t.clone().requires_grad_() for p in params for t in p]
    y_f, y_b = run(leaves[0], leaves[1], tuple(leaves[2:6]), tuple(leaves[6:10]))
    w = torch.randn((2,) + tuple(y_f.shape), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ((y_f * w[0].to(y_f.dtype)).sum() + (y_b * w[1].to(y_b.dtype)).sum()).backward()
    names = ["u_f", "u_b"] + [f"{part}_{side}" for side in ("fwd", "bwd") for part in SSM_PARTS]
    return (y_f.detach(), y_b.detach()), dict(zip(names, (t.grad for t in leaves)))


@pytest.mark.parametrize("scaling", ["hippo", "inv"])
@pytest.mark.parametrize("step", STEPS, ids=[f"dt={s:g}" for s in STEPS])
def test_bigs_ssm_extreme_steps_every_form_matches_the_fp64_definition(step, scaling):
    """y_fwd = T_f u_f + d u_f and y_bwd = T_bᵀ u_b + d u_b with T[t, s] = K[t - s]: the FFT form evaluates the same
    convolution by the convolution theorem (zero-padded, no wrap-around), the Toeplitz form as a matmul, the
    recurrent form runs x_t = Ā x_{t-1} + B̄ u_t, y_t = Re(C x_t), whose impulse response is K. All three (and the
    Triton kernel under the interpreter), in fp32, against the definition evaluated in 40 digits, outputs and the
    gradients of every input and SSM parameter.

    Δ = 1e-8: B̄ = (e^{ΔA} - 1)/A ≈ Δ; its derivative in A is Δ²/2 + ..., which the quotient rule forms as the
    difference of two terms of size Δ/|A| (a relative error of order 1 in fp32 before the fix: the series of
    (e^z - 1)/z is now summed for |z| < 0.1). Δ = 1e2 and 1e4: every mode dies within one step, K[0] = Re Σ C B̄ with
    B̄ ≈ -1/A; the derivative in log Δ is Δ e^{ΔA} ~ e^{-50}, which torch's expm1 backward (expm1(z) + 1) returned
    as rounding noise 1e15 times too large.

    Tolerances: outputs 5e-5 of the largest: at Δ = 1e4 the kernel is K[0] = Re Σ_n C_n B̄_n alone, and for the
    backward direction here its 8 terms of size ~1 cancel to 2e-3, so fp32 keeps ~5 digits of it (measured
    1.3e-5; 3e-7 elsewhere). Every gradient 1e-4 of its own largest entry (measured up to 2.7e-5: the log Δ
    gradient at Δ = 1e2 is ~1e-20, itself a cancelling sum of fp32 products). Before the fix: the A gradients off by
    56 % at Δ = 1e-8 and 1 % at 1e-6, the log Δ gradient at Δ = 1e2 by factors of 3 to 6e14.
    """
    u_f, u_b, params, mask = _ssm_problem(step, scaling)
    d = torch.tensor([0.0], dtype=torch.float64)  # no skip: the convolution alone is compared
    (o_f, o_b), expected = _ssm_gradients(
        u_f, u_b, params, mask, lambda a, b, pf, pb: _ssm_oracle(a, b, pf, pb, d, mask)
    )

    def run(form, backend):
        def apply(a, b, pf, pb):
            pf32, pb32 = tuple(t.float() for t in pf), tuple(t.float() for t in pb)
            k_f, k_b = s4d_kernel(*pf32, 40), s4d_kernel(*pb32, 40)
            return bidirectional_ssm(
                a.float(), b.float(), k_f, k_b, d.float(), d.float(), mask, form=form, backend=backend,
                recurrent_params=(pf32, pb32) if form == "recurrent" else None, chunk_size=16,
            )
        return apply

    runs = [("fft", "reference"), ("toeplitz", "reference"), ("recurrent", "reference")]
    if TRITON_ON_CPU:
        runs.append(("toeplitz", "triton"))
    for form, backend in runs:
        (y_f, y_b), grads = _ssm_gradients(u_f, u_b, params, mask, run(form, backend))
        assert torch.isfinite(y_f).all() and torch.isfinite(y_b).all(), (form, backend)
        assert rel(y_f, o_f) < 5e-5 and rel(y_b, o_b) < 5e-5, (form, backend, rel(y_f, o_f), rel(y_b, o_b))
        for name, g in grads.items():
            assert torch.isfinite(g).all(), f"{form}/{backend}: non-finite gradient of {name}"
            assert rel(g, expected[name]) < 1e-4, f"{form}/{backend}: {name} off by {rel(g, expected[name]):.1e}"


@pytest.mark.parametrize("step", [1e-6, 1e2], ids=["dt=1e-6", "dt=1e2"])
def test_bigs_model_with_extreme_steps(step):
    """A BiGS configuration whose initialisation draws Δ = ``step`` exactly (ssm_dt_min = ssm_dt_max), beyond the
    default [0.01, 1]: the masked-LM forward and backward are finite, and the convolution and recurrent variants
    (the same weights, one config switch) agree, since both compute the same SSM (the kernel test above)."""
    spec = bizoo.get_spec("bigs")
    config = spec.config_class(**{**TINY_CONFIGS["bigs"], "vocab_size": V, "ssm_dt_min": step, "ssm_dt_max": step})
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config)
    steps = torch.stack([p.exp() for n, p in model.named_parameters() if n.endswith("log_step")])
    assert torch.allclose(steps, torch.full_like(steps, step), rtol=1e-5)
    ids = torch.randint(5, V, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 24, dtype=torch.long)
    mask[1, 17:] = 0
    labels = torch.where(mask.bool(), ids, -100)
    results = {}
    for form in ("conv", "recurrent"):
        model.config.bigs_form = form
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all(), form
        for name, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), f"{form}: non-finite gradient in {name}"
        results[form] = out.logits.detach()
    assert rel(results["recurrent"], results["conv"]) < 1e-4


# ================================================================================================================
# CRF: masked rows and -inf constraints
# ================================================================================================================

CRF_BACKENDS = ["reference", "scan", pytest.param("triton", marks=needs_interpreter)]


def _crf_problem(banned_everything=False):
    """B = 5 rows, L = 6, K = 4. Row 0: every position masked. Row 1: full. Row 2: left padding and a hole. Row 3:
    every tag's emission at one position -inf, so every path is banned. Row 4: right padding. Shared constraints:
    2 → 1 and 3 → 3 banned, no path starts with tag 2 or ends with tag 1 (legal paths remain in rows 1, 2, 4);
    ``banned_everything``: every transition banned (only rows of one real position would keep a path)."""
    g = torch.Generator().manual_seed(0)
    B, L, K = 5, 6, 4
    emissions = 3 * torch.randn(B, L, K, generator=g)
    transitions, start, end = torch.randn(K, K, generator=g), torch.randn(K, generator=g), torch.randn(K, generator=g)
    transitions[2, 1] = transitions[3, 3] = NEG
    start[2] = end[1] = NEG
    if banned_everything:
        transitions = torch.full((K, K), NEG)
    emissions[3, 2, :] = NEG
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0] = False
    mask[2, :2] = False
    mask[2, 4] = False
    mask[4, 4:] = False
    return emissions, mask, transitions, start, end


def _brute_force(emissions, mask, transitions, start, end):
    """fp64 enumeration of every tag path over each row's real positions: log Z, the best score, the marginals."""
    B, L, K = emissions.shape
    e, T, s, t_end = (x.double() for x in (emissions, transitions, start, end))
    log_z, best, marginals = torch.zeros(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64), []
    for b in range(B):
        real = mask[b].nonzero().flatten().tolist()
        marg = torch.zeros(L, K, dtype=torch.float64)
        if real:
            paths = torch.tensor(list(itertools.product(range(K), repeat=len(real))))  # (K^n, n)
            score = s[paths[:, 0]] + t_end[paths[:, -1]] + e[b, real][torch.arange(len(real)), paths].sum(1)
            if len(real) > 1:
                score = score + T[paths[:, :-1], paths[:, 1:]].sum(1)
            log_z[b], best[b] = torch.logsumexp(score, 0), score.max()
            if log_z[b] > NEG:
                p = torch.exp(score - log_z[b])
                for r, t in enumerate(real):
                    marg[t] = torch.zeros(K, dtype=torch.float64).index_add(0, paths[:, r], p)
        marginals.append(marg)
    return log_z, best, torch.stack(marginals)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
@pytest.mark.parametrize("banned_everything", [False, True], ids=["some-banned", "all-transitions-banned"])
@pytest.mark.parametrize("backend", CRF_BACKENDS)
def test_crf_masked_rows_and_banned_paths(backend, banned_everything):
    """log Z = log Σ_y exp s(y) over the paths y of a row's real positions, s(y) = -inf for a path using a banned
    step. Documented edges (``bizoo/kernels/crf/reference.py``): an entirely masked row has log Z = 0 (one empty
    path of score 0), Viterbi tags all -100 with score 0, marginals 0, log-likelihood 0; a row without a legal path
    has log Z = -inf, Viterbi score -inf, marginals 0; a banned gold path has log-likelihood -inf, so the loss
    -log p is +inf (never NaN), and every gradient stays finite (a -inf row contributes 0). Every backend against
    the fp64 enumeration: log Z and the best score to 1e-5 of their magnitude (fp32 log-sum-exp over 6 steps),
    the marginals to 1e-5 absolute (probabilities)."""
    emissions, mask, transitions, start, end = args = _crf_problem(banned_everything)
    log_z_bf, best_bf, marginals_bf = _brute_force(*args)
    empty = ~mask.any(1)
    dead = best_bf == NEG

    leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
    log_z = crf_log_partition(leaves[0], mask, *leaves[1:], backend=backend)
    assert not log_z.isnan().any() and torch.equal(log_z.isneginf(), dead)
    assert (log_z[empty] == 0).all()
    assert torch.allclose(log_z[~dead].double(), log_z_bf[~dead], rtol=1e-5, atol=1e-5)
    log_z.sum().backward()  # -inf rows included: their gradient is 0, not NaN
    for t in leaves:
        assert torch.isfinite(t.grad).all()
    assert (leaves[0].grad[empty | dead] == 0).all()
    assert torch.allclose(leaves[0].grad.double(), marginals_bf, atol=1e-5)  # ∂ log Z / ∂E = the marginals

    tags, score = crf_viterbi(*args, backend=backend)
    assert not score.isnan().any() and torch.equal(score.isneginf(), dead) and (score[empty] == 0).all()
    assert torch.allclose(score[~dead].double(), best_bf[~dead], rtol=1e-5, atol=1e-5)
    assert (tags[~mask] == IGNORE_INDEX).all() and (tags[mask] >= 0).all()

    marginals = crf_marginals(*args, backend=backend)
    assert not marginals.isnan().any() and (marginals[empty | dead] == 0).all()
    assert torch.allclose(marginals.double(), marginals_bf, atol=1e-5)

    max_marginals = crf_max_marginals(*args, backend=backend)
    assert not max_marginals.isnan().any() and (max_marginals[~mask] == 0).all()
    assert torch.equal(max_marginals.argmax(-1)[mask], tags[mask])

    # The gold paths: the Viterbi path of each live row (legal), then a path through the banned 3 → 3 everywhere.
    for gold, banned in ((torch.where(dead[:, None], 0, tags), False), (torch.full_like(tags, 3), True)):
        gold = torch.where(mask, gold.clamp(min=0), IGNORE_INDEX)
        leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
        log_likelihood = crf_log_likelihood(leaves[0], mask, *leaves[1:], gold, backend=backend)
        assert not log_likelihood.isnan().any() and (log_likelihood[empty] == 0).all()
        if banned:
            assert (log_likelihood[~empty] == NEG).all()
        else:
            assert torch.equal(log_likelihood.isneginf(), dead)
            live = ~dead & ~empty
            expected = best_bf[live] - log_z_bf[live]
            assert torch.allclose(log_likelihood[live].double(), expected, rtol=1e-5, atol=1e-5)
        loss = -log_likelihood.sum()
        assert loss == float("inf")  # row 3 has no legal path: its gold path is banned too
        loss.backward()
        for t in leaves:
            assert torch.isfinite(t.grad).all()


def test_crf_head_rejects_a_banned_gold_path_and_takes_masked_rows(make_inputs):
    """The model's CRF head (BIO constraints: I-X may not follow O): a label sequence the scheme bans has probability
    0 and an infinite loss, which the head reports as a ValueError naming the rows (documented in
    ``modeling/heads.py``) rather than training on inf. Rows of padding only add nothing to the loss; the loss and
    the gradients stay finite."""
    spec = bizoo.get_spec("bilstm_crf")
    labels_of = {0: "O", 1: "B-X", 2: "I-X"}
    config = spec.config_class(
        **{**TINY_CONFIGS["bilstm_crf"], "vocab_size": V, "num_labels": 3, "id2label": labels_of, "tag_scheme": "BIO"}
    )
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config)
    ids = torch.randint(5, V, (3, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[2, 3:] = 0
    inputs = make_inputs(("bilstm_crf", "cnn"), ids, mask)
    legal = torch.tensor([[1, 2, 2, 0, 1, 2], [0, 0, 1, 0, 0, 0], [1, 2, 0, -100, -100, -100]])
    out = model(**inputs, labels=legal)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    banned = legal.clone()
    banned[1, 1] = 2  # O, I-X: banned in BIO
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        model(**inputs, labels=banned)


# ================================================================================================================
# bf16 autocast on the CPU
# ================================================================================================================


@pytest.mark.parametrize("head", ["masked_lm", "token", "token_crf"])
def test_bf16_autocast_on_cpu_is_finite_and_close_to_fp32(model_case, make_config, make_inputs, head):
    """Every model under ``torch.autocast("cpu", dtype=torch.bfloat16)``: the linear layers run in bf16, the
    kernels accumulate in fp32 and the decay, SSM and CRF parameters stay fp32. The loss, the logits and every
    gradient must be finite and close to the fp32 run of the same weights.

    Tolerances: bf16 keeps 8 significant bits, a relative rounding of 2^-9 ≈ 2e-3 per operation; through two layers
    (projections, feature maps, kernels, norms, the head) the errors add to about 1e-2 (measured: logits up to
    8e-3 of their largest magnitude, gradients up to 1e-2 in relative norm). Allowed: the loss within 2e-2
    (relative, the loss is ~log V at initialisation), the logits within 5e-2 of their largest magnitude, the
    gradients within 5e-2 in relative Frobenius norm over all parameters.
    """
    overrides = {"num_labels": 5, "use_crf": head == "token_crf"} if head != "masked_lm" else {}
    config = make_config(model_case, vocab_size=V, **overrides)
    torch.manual_seed(0)
    auto = AutoModelForMaskedLM if head == "masked_lm" else AutoModelForTokenClassification
    model = auto.from_config(config).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (3, 24), generator=g)
    mask = torch.ones(3, 24, dtype=torch.long)
    mask[1, 17:] = 0
    inputs = make_inputs(model_case, ids, mask)
    if head == "masked_lm":
        labels = torch.full_like(ids, -100)
        labels[:, ::4] = ids[:, ::4]
    elif head == "token":
        labels = torch.randint(0, 5, ids.shape, generator=g)
    else:
        labels = torch.zeros_like(ids)  # "auto" tag scheme on LABEL_0..4: no constraints, any path is legal
    labels = labels.masked_fill(mask == 0, -100)

    def run():
        model.zero_grad()
        out = model(**inputs, labels=labels)
        out.loss.backward()
        grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.loss.detach().float(), out.logits.detach().float(), grads

    loss32, logits32, grads32 = run()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, logits16, grads16 = run()
    assert torch.isfinite(loss16) and torch.isfinite(logits16).all()
    for name, grad in grads16.items():
        assert torch.isfinite(grad).all(), f"non-finite gradient in {name}"
    assert abs(loss16 - loss32).item() < 2e-2 * max(1.0, loss32.item())
    assert rel(logits16, logits32) < 5e-2
    assert grads16.keys() == grads32.keys()
    diff = math.sqrt(sum((grads16[n] - grads32[n]).double().square().sum().item() for n in grads32))
    norm = math.sqrt(sum(grads32[n].double().square().sum().item() for n in grads32))
    assert diff < 5e-2 * norm, f"gradients differ by {diff / norm:.2e} in relative norm"
