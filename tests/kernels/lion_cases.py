"""Inputs and checks of the LION attention op that its reference tests (``test_lion_reference.py``) and its Triton
tests (``test_lion_triton.py``) share.

* extreme decays: ``STRONG`` (λ → 0) and ``WEAK`` (λ → 1) values of log λ, ``extreme_inputs`` that place them, and
  ``check_forms_against_the_fp64_recurrence``: every given form, both normalisations, fp32, against the RNN form
  in fp64, values and the gradients of q, k, v and log λ;
* property tests: ``lion_case`` draws q, k, v, log λ, a padding mask and the normalisation, with NaN at padding.

Not a test module (its name does not start with ``test_``); imported as ``tests.kernels.lion_cases``.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from bizoo.kernels.lion import lion_attention
from tests.kernels.common import generator, masks, poison, rel

# ----------------------------------------------------------------------------------------------------------------
# Extreme decays
# ----------------------------------------------------------------------------------------------------------------

# λ → 0 (a strong decay cuts the sequence) and λ → 1 (no decay: the LIT limit).
STRONG = {"-20": -20.0, "-80": -80.0, "-1e4": -1e4, "-1e30": -1e30}
WEAK = {"0": 0.0, "-1e-8": -1e-8}


def extreme_inputs(B, H, L, D, value, seed=0):
    """Positive q, k (as after the elu+1 / silu+0.5 feature maps), v ~ N(0, 1), and LION-S log-decays (B, H, L).

    A strong ``value`` goes to 30 % of the tokens, the others drawing log λ ~ U(-0.5, 0): spans of ordinary decays
    right after an extreme one are exactly where a prefix sum that has absorbed the extreme one loses every digit.
    Row 1 (if any) holds the extreme value everywhere. A weak ``value`` (λ → 1) is used at every token.
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(B, H, L, D, generator=g) + 0.1  # (B, H, L, D)
    k = torch.rand(B, H, L, D, generator=g) + 0.1  # (B, H, L, D)
    v = torch.randn(B, H, L, D, generator=g)  # (B, H, L, D)
    if value > -1:  # λ → 1
        return q, k, v, torch.full((B, H, L), value)
    ordinary = -0.5 * torch.rand(B, H, L, generator=g)  # (B, H, L)
    a = torch.where(torch.rand(B, H, L, generator=g) < 0.3, torch.tensor(value), ordinary)  # (B, H, L)
    if B > 1:
        a[1] = value
    return q, k, v, a


def run_with_gradients(tensors, mask, *, form, normalize, backend, cotangent):
    """The op's output and the gradients of ⟨output, cotangent⟩ w.r.t. q, k, v and log λ."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y = lion_attention(*leaves, mask, form=form, chunk_size=16, normalize=normalize, backend=backend)
    (y * cotangent.to(y.dtype)).sum().backward()
    return y.detach(), [t.grad for t in leaves]


def check_forms_against_the_fp64_recurrence(tensors, mask, forms, backend, tolerance=1e-5):
    """Every form, both normalisations, fp32, against the RNN form in fp64, values and gradients."""
    cotangent = torch.randn(tensors[2].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for normalize in (True, False):
        oracle, oracle_grads = run_with_gradients(
            [t.double() for t in tensors], mask, form="rnn", normalize=normalize, backend="reference",
            cotangent=cotangent,
        )
        for form in forms:
            y, grads = run_with_gradients(tensors, mask, form=form, normalize=normalize, backend=backend,
                                          cotangent=cotangent)
            assert torch.isfinite(y).all(), (form, normalize)
            for name, g in zip("qkva", grads):
                assert torch.isfinite(g).all(), f"{form}, normalize={normalize}: non-finite d{name}"
            errors = [rel(y, oracle)] + [rel(g, e) for g, e in zip(grads, oracle_grads)]
            assert max(errors) < tolerance, f"{form}, normalize={normalize}: output, dq, dk, dv, da errors {errors}"


# ----------------------------------------------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------------------------------------------


def lion_case(data, *, B, H, L, Dk, Dv, dtype, decay=None):
    """q, k, v, log_decay (None, (H,) or (B, H, L) for ``decay`` "lit", "d", "s", drawn if None), mask, normalize;
    padded positions of q, k, v and of a per-token decay hold NaN (the op promises they cannot leak)."""
    g = generator(data)
    if decay is None:
        decay = data.draw(st.sampled_from(("lit", "d", "s")), label="decay")
    normalize = data.draw(st.booleans(), label="normalize")
    strength = data.draw(st.sampled_from((0.02, 0.7, 6.0)), label="decay strength")
    mask = data.draw(masks(B, L), label="mask")
    if normalize:  # positive q, k (as after the feature maps) keep the row sums away from zero
        q = torch.rand(B, H, L, Dk, generator=g, dtype=torch.float64) + 0.1
        k = torch.rand(B, H, L, Dk, generator=g, dtype=torch.float64) + 0.1
    else:
        q = torch.randn(B, H, L, Dk, generator=g, dtype=torch.float64)
        k = torch.randn(B, H, L, Dk, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, L, Dv, generator=g, dtype=torch.float64)
    log_decay = {
        "lit": None,
        "d": -strength * torch.rand(H, generator=g, dtype=torch.float64),
        "s": -strength * torch.rand(B, H, L, generator=g, dtype=torch.float64),
    }[decay]
    pad = ~mask[:, None, :]  # (B, 1, L)
    q, k, v = (poison(t, pad) for t in (q, k, v))
    if decay == "s":
        log_decay = poison(log_decay, pad)
    to = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    return to(q), to(k), to(v), to(log_decay), mask, normalize
