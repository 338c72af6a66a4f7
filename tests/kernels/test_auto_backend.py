"""``backend="auto"`` as on a GPU, for the ops whose Triton kernels have limits (the CRF: tags and dtypes; the SSM:
dtypes; LION's are in ``tests/modeling/test_lion_user.py``): what the kernels cannot take, the reference computes
(the user never asked for Triton); what they can, goes to Triton; asked for by name (``backend="triton"`` or
``BIZOO_KERNEL_BACKEND=triton``), Triton still says what it cannot do.

"As on a GPU": ``dispatch.triton_device`` answers True (CUDA with Triton) and ``dispatch.values_on_host`` False (no
value is read on the host), the Triton entry points replaced by stand-ins that record the call and compute with the
reference, or, for inputs beyond the kernels' limits, hand them to the real entry point, whose own checks raise
before any launch (under ``TRITON_INTERPRET=1``). No kernel runs: these tests check the choice.
"""

import os

import pytest
import torch

from bizoo.kernels import crf as crf_op
from bizoo.kernels import dispatch
from bizoo.kernels import ssm as ssm_op
from bizoo.kernels.crf import checks as crf_checks
from bizoo.kernels.crf import reference as crf_reference
from bizoo.kernels.ssm import checks as ssm_checks
from bizoo.kernels.ssm import reference as ssm_reference

pytestmark = pytest.mark.skipif(
    crf_op.triton_crf is None or ssm_op.bidirectional_ssm_triton is None
    or os.environ.get("TRITON_INTERPRET") != "1",
    reason="the Triton entry points' checks run on a CPU under TRITON_INTERPRET=1 only",
)
CRF_LIMIT = "backend='triton' (supports 1 to 128 tags|takes (emissions|transitions) in float32, float16 or bfloat16)"
SSM_LIMIT = "backend='triton' takes u_fwd and u_bwd of one dtype among float32, float16 and bfloat16"


@pytest.fixture
def on_gpu(monkeypatch):
    """The dispatch as on a CUDA device with Triton; returns the list of Triton entry points called."""
    monkeypatch.setattr(dispatch, "triton_device", lambda tensor: True)
    monkeypatch.setattr(dispatch, "values_on_host", lambda tensor: False)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    calls = []

    def crf_stand_in(name, op):
        real = getattr(crf_op.triton_crf, name)

        def run(emissions, mask, transitions, start, end):
            calls.append(name)
            if crf_checks.triton_limit(op, emissions, transitions, start, end) is not None:
                return real(emissions, mask, transitions, start, end)  # its own checks raise
            return getattr(crf_reference, name.removesuffix("_triton"))(emissions, mask, transitions, start, end)

        return run

    for name, op in (
        ("log_partition_triton", "crf_log_partition"),
        ("viterbi_triton", "crf_viterbi"),
        ("marginals_triton", "crf_marginals"),
        ("max_marginals_triton", "crf_max_marginals"),
    ):
        monkeypatch.setattr(crf_op.triton_crf, name, crf_stand_in(name, op))

    real_ssm = ssm_op.bidirectional_ssm_triton

    def ssm_stand_in(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask):
        calls.append("bidirectional_ssm_triton")
        if ssm_checks.triton_limit(u_fwd, u_bwd) is not None:
            return real_ssm(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask)  # its own checks raise
        return ssm_reference.bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask, form="fft")

    monkeypatch.setattr(ssm_op, "bidirectional_ssm_triton", ssm_stand_in)
    return calls


def crf_scores(K, dtype, B=2, L=5, parameters_dtype=None):
    g = torch.Generator().manual_seed(K)
    emissions = 3 * torch.randn(B, L, K, generator=g, dtype=dtype)
    transitions, start, end = (torch.randn(*shape, generator=g, dtype=parameters_dtype or dtype)
                               for shape in ((K, K), (K,), (K,)))
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 3:] = False
    tags = torch.randint(0, K, (B, L), generator=g)
    return emissions, mask, transitions, start, end, tags


CRF_OPS = {
    "log_partition": lambda s, backend: crf_op.crf_log_partition(*s[:5], backend=backend),
    "log_likelihood": lambda s, backend: crf_op.crf_log_likelihood(*s, backend=backend),
    "viterbi": lambda s, backend: crf_op.crf_viterbi(*s[:5], backend=backend),
    "marginals": lambda s, backend: crf_op.crf_marginals(*s[:5], backend=backend),
    "max_marginals": lambda s, backend: crf_op.crf_max_marginals(*s[:5], backend=backend),
}


@pytest.mark.parametrize("op", list(CRF_OPS))
@pytest.mark.parametrize("K, dtype, parameters_dtype", [(130, torch.float32, None), (5, torch.float64, None),
                                                        (5, torch.float32, torch.float64)],
                         ids=["130 tags", "fp64", "fp64 parameters"])
def test_auto_crf_computes_what_triton_cannot_on_the_reference(on_gpu, op, K, dtype, parameters_dtype, monkeypatch):
    scores = crf_scores(K, dtype, parameters_dtype=parameters_dtype)
    got = CRF_OPS[op](scores, "auto")
    assert on_gpu == []
    expected = CRF_OPS[op](scores, "reference")
    as_tuple = lambda x: x if isinstance(x, tuple) else (x,)  # noqa: E731
    for g, e in zip(as_tuple(got), as_tuple(expected)):
        assert g.dtype == e.dtype and torch.equal(g, e)
    # asked for by name, Triton says what it cannot do
    with pytest.raises(ValueError, match=CRF_LIMIT):
        CRF_OPS[op](scores, "triton")
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    with pytest.raises(ValueError, match=CRF_LIMIT):
        CRF_OPS[op](scores, "auto")


@pytest.mark.parametrize("op", list(CRF_OPS))
def test_auto_crf_takes_triton_where_it_can(on_gpu, op):
    scores = crf_scores(128, torch.float32)
    CRF_OPS[op](scores, "auto")
    expected = {"log_likelihood": "log_partition", "viterbi": "viterbi"}.get(op, op) + "_triton"
    assert on_gpu == [expected]


def ssm_inputs(dtype):
    g = torch.Generator().manual_seed(0)
    u_fwd, u_bwd = (torch.randn(2, 12, 3, generator=g, dtype=dtype) for _ in range(2))
    k_fwd, k_bwd = (torch.randn(12, generator=g, dtype=dtype) for _ in range(2))
    d = torch.ones((), dtype=dtype)
    return u_fwd, u_bwd, k_fwd, k_bwd, d, d


def test_auto_ssm_computes_fp64_on_the_reference(on_gpu, monkeypatch):
    args = ssm_inputs(torch.float64)
    got = ssm_op.bidirectional_ssm(*args)
    assert on_gpu == []
    expected = ssm_op.bidirectional_ssm(*args, backend="reference")
    assert all(g.dtype == torch.float64 and torch.equal(g, e) for g, e in zip(got, expected))
    with pytest.raises(ValueError, match=SSM_LIMIT):
        ssm_op.bidirectional_ssm(*args, backend="triton")
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    with pytest.raises(ValueError, match=SSM_LIMIT):
        ssm_op.bidirectional_ssm(*args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_auto_ssm_takes_triton_where_it_can(on_gpu, dtype):
    ssm_op.bidirectional_ssm(*ssm_inputs(dtype))
    assert on_gpu == ["bidirectional_ssm_triton"]


def test_the_switch_answers_for_the_device():
    """Unpatched, ``triton_device`` is True for CUDA tensors only (when Triton imports)."""
    assert dispatch.triton_device(torch.zeros(1)) is False
    assert dispatch.triton_device(torch.zeros(1, device="meta")) is False
