"""LION as a user of the paper meets it: decay initialisations at any head count, the backend "auto" on inputs the
Triton kernels do not take, and the forms against an fp64 oracle of the mask at long lengths and extreme decays."""

import pytest
import torch

import bizoo.kernels.lion as lion_op
from bizoo.kernels import dispatch
from bizoo import LionConfig, LionModel
from bizoo.kernels.lion import checks, reference


@pytest.mark.parametrize("variant", ["d", "s"])
def test_retnet_initialisation_is_finite_for_many_heads(variant):
    # 64 heads: λ_h = 1 - 2^(-5-h) rounds to 1 in fp64 from h = 49 on, whose logit is +inf
    config = LionConfig(
        vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=64, intermediate_size=64,
        lion_variant=variant, decay_init="retnet",
    )
    decay = LionModel(config).layers[0].mixer.decay
    logits = decay.logits if variant == "d" else -decay.bias
    assert torch.isfinite(logits).all(), logits[-16:]
    assert (logits.diff() > 0).all()  # ever longer range
    expected = (1 - 2.0 ** (-5 - torch.arange(48, dtype=torch.float64))).float()  # RetNet's λ_h, representable
    torch.testing.assert_close(torch.sigmoid(logits[:48].double()).float(), expected)


def fake_cuda(monkeypatch, calls):
    """Make the op's dispatch behave as on a GPU with Triton (``dispatch.triton_device``), the Triton op a stand-in
    that records the call and raises as the kernels' own checks do."""

    def triton(q, k, v, log_decay, attention_mask, *, form, chunk_size, normalize):
        calls.append((form, chunk_size))
        message = checks.triton_limit(q, k, v, form, chunk_size)
        if message is not None:
            raise ValueError(message)
        return reference.lion_attention(
            q, k, v, log_decay, attention_mask, form=form, chunk_size=chunk_size, normalize=normalize
        )

    monkeypatch.setattr(dispatch, "triton_device", lambda tensor: True)
    monkeypatch.setattr(lion_op, "lion_attention_triton", triton)
    monkeypatch.delenv("BIZOO_KERNEL_BACKEND", raising=False)


@pytest.mark.parametrize(
    "form, chunk_size, length, head_dim, dtype",
    [
        ("chunk", 8, 40, 8, torch.float32),  # the chunk sizes the Triton chunk schedule lacks
        ("auto", 100, 300, 8, torch.float32),  # "auto" takes the chunk form from 256 on
        ("chunk", 64, 20, 256, torch.float32),  # head sizes above 128 (256: no GPU holds the blocks)
        ("auto", 64, 20, 8, torch.float64),  # fp64
    ],
)
def test_auto_backend_computes_what_triton_cannot_on_the_reference(monkeypatch, form, chunk_size, length, head_dim,
                                                                    dtype):
    calls = []
    fake_cuda(monkeypatch, calls)
    g = torch.Generator().manual_seed(0)
    q, k = (torch.rand(1, 2, length, head_dim, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(1, 2, length, head_dim, generator=g, dtype=dtype)
    log_decay = -torch.rand(1, 2, length, generator=g, dtype=dtype)
    got = lion_op.lion_attention(q, k, v, log_decay, form=form, chunk_size=chunk_size, backend="auto")
    assert calls == []
    expected = reference.lion_attention(q, k, v, log_decay, form="attention")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # asked for by name, Triton still says what it cannot do
    with pytest.raises(ValueError, match="backend='triton'"):
        lion_op.lion_attention(q, k, v, log_decay, form=form, chunk_size=chunk_size, backend="triton")
    monkeypatch.setenv("BIZOO_KERNEL_BACKEND", "triton")
    with pytest.raises(ValueError, match="backend='triton'"):
        lion_op.lion_attention(q, k, v, log_decay, form=form, chunk_size=chunk_size, backend="auto")


def test_auto_backend_still_takes_triton_where_it_can(monkeypatch):
    calls = []
    fake_cuda(monkeypatch, calls)
    q, k, v = (torch.rand(1, 2, 300, 8) for _ in range(3))
    lion_op.lion_attention(q, k, v, None, form="auto", chunk_size=64, backend="auto")
    lion_op.lion_attention(q[:, :, :20], k[:, :, :20], v[:, :, :20], None, form="auto", chunk_size=100)
    assert calls == [("chunk", 64), ("attention", 100)]  # below the crossover the chunk size does not matter


def oracle(q, k, v, a, keep, normalize):
    """y by the mask's definition, fp64, each sequence with its padding removed."""
    B, H, L, _ = q.shape
    out = torch.zeros(B, H, L, v.shape[-1], dtype=torch.float64)
    for b in range(B):
        idx = torch.nonzero(keep[b]).flatten()
        n = len(idx)
        for h in range(H):
            lam = a[b, h, idx].double().exp()
            M = torch.ones(n, n, dtype=torch.float64)
            for i in range(n):
                for j in range(n):
                    if i > j:
                        M[i, j] = lam[j:i].prod()
                    elif i < j:
                        M[i, j] = lam[i + 1 : j + 1].prod()
            S = (q[b, h, idx].double() @ k[b, h, idx].double().T) * M
            y = S @ v[b, h, idx].double()
            out[b, h, idx] = y / S.sum(-1, keepdim=True) if normalize else y
    return out


@pytest.mark.parametrize("normalize", [True, False])
def test_forms_agree_with_the_mask_at_long_lengths_and_extreme_decays(normalize):
    g = torch.Generator().manual_seed(1)
    B, H, L, D = 1, 1, 260, 4
    q, k = (3 * torch.rand(B, H, L, D, generator=g) for _ in range(2))
    v = 5 * torch.randn(B, H, L, D, generator=g)
    strong = torch.rand(B, H, L, generator=g) < 0.05
    a = torch.where(strong, -1e4 * torch.rand(B, H, L, generator=g), -1e-5 * torch.rand(B, H, L, generator=g))
    keep = torch.ones(B, L, dtype=torch.bool)
    keep[0, :7] = False  # left padding
    keep[0, 100:113] = False  # a hole
    expected = oracle(q, k, v, a, keep, normalize)
    assert expected.abs().max() > 1.0
    for form, chunk_size in (("attention", 64), ("rnn", 64), ("chunk", 1), ("chunk", 16), ("chunk", 64)):
        got = lion_op.lion_attention(q, k, v, a, keep.long(), form=form, chunk_size=chunk_size, normalize=normalize)
        torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
