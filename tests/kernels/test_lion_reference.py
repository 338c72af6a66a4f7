"""LION attention: every form of the reference against a brute-force oracle, and against each other.

The oracle below is written from the definition of the mask (products of decays over real tokens only), with
explicit Python loops over positions, so it shares no code and no trick (prefix sums, chunking) with the op.
"""

import math

import pytest
import torch

from bizoo.kernels.lion import FORMS, lion_attention

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
