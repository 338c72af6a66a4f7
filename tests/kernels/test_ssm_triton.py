"""The Triton bidirectional SSM (blocked Toeplitz kernels) against an oracle, forward and gradients.

On a CPU these run under Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is imported); every output
and partial buffer is filled with NaN first, so an element a kernel fails to write cannot pass. The oracle is
``bizoo.kernels.ssm.bidirectional_ssm(..., backend="reference")`` and, for fp64 gradients, a direct O(L²)
convolution written here. Under the interpreter the tiles are 16 × 16, so L = 37 spans three time tiles, the last
one partial. bf16/fp16 checks need a GPU.
"""

import os

import pytest
import torch

triton_ssm = pytest.importorskip("bizoo.kernels.ssm.triton_ssm", reason="triton is not installed")

from bizoo.kernels import triton_utils  # noqa: E402
from bizoo.kernels.ssm import bidirectional_ssm  # noqa: E402

ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(
    not (ON_GPU or INTERPRETED), reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1"
)
DEVICE = "cuda" if ON_GPU else "cpu"


@pytest.fixture(autouse=True)
def nan_filled_outputs(monkeypatch):
    monkeypatch.setattr(triton_ssm, "DEBUG_FILL", float("nan"))


# ----------------------------------------------------------------------------------------------------------------
# Oracles
# ----------------------------------------------------------------------------------------------------------------


def direct_ssm(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask=None):
    """The op written out as a sum over every pair (t, s) (fp64, differentiable): the fallback oracle."""
    L = u_fwd.shape[1]
    t = torch.arange(L, device=u_fwd.device)
    lag = t[:, None] - t[None, :]  # (L, L): t - s
    eye = (lag == 0).double()
    causal = torch.where(lag >= 0, k_fwd.double()[lag.clamp(min=0)], 0.0) + d_fwd.double().reshape(()) * eye
    anti = torch.where(lag <= 0, k_bwd.double()[(-lag).clamp(min=0)], 0.0) + d_bwd.double().reshape(()) * eye
    keep = None if attention_mask is None else (attention_mask != 0)[:, :, None]  # (B, L, 1)
    outputs = []
    for T, u in ((causal, u_fwd), (anti, u_bwd)):
        x = u.double() if keep is None else torch.where(keep, u.double(), 0.0)
        y = torch.einsum("ts,bsh->bth", T, x)  # (B, L, H)
        outputs.append((y if keep is None else torch.where(keep, y, 0.0)).to(u.dtype))
    return tuple(outputs)


def oracle(*args):
    """The reference backend's Toeplitz form (an L×L product, differentiable by autograd)."""
    return bidirectional_ssm(*args, form="toeplitz", backend="reference")


def relative_error(got, expected):
    got, expected = got.double().cpu(), expected.double().cpu()
    return ((got - expected).abs().max() / expected.abs().max().clamp(min=1e-12)).item()


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def make(B, L, H, *, dtype=torch.float32, seed=0):
    """(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd): a decaying random kernel, like an SSM's."""
    g = torch.Generator().manual_seed(seed)
    u_fwd, u_bwd = torch.randn(B, L, H, generator=g), torch.randn(B, L, H, generator=g)
    decay = torch.exp(-0.05 * torch.arange(L, dtype=torch.float32))
    k_fwd, k_bwd = torch.randn(L, generator=g) * decay, torch.randn(L, generator=g) * decay
    d_fwd, d_bwd = torch.randn(1, generator=g), torch.randn(1, generator=g)
    return (u_fwd.to(DEVICE, dtype), u_bwd.to(DEVICE, dtype),
            *(t.to(DEVICE) for t in (k_fwd, k_bwd, d_fwd, d_bwd)))


def padding_mask(kind, B, L):
    """None, or (B, L) long: "right" / "left" pads every other row; "mixed": right, left, a hole + all padding."""
    if kind == "none":
        return None
    m = torch.ones(B, L, dtype=torch.long)
    if kind == "right":
        m[0, L - min(L - 1, 19):] = 0  # 19 pads: whole tiles of padding at L = 37
    elif kind == "left":
        m[0, : min(L - 1, 18)] = 0
    else:
        m[0, L - min(L - 1, 5):] = 0
        m[1, : min(L - 1, 17)] = 0
        if B > 2:
            m[2] = 0  # a row of padding only
        if L > 2:
            m[1, L - 2] = 0  # and a hole
    return m.to(DEVICE)


def value_and_grads(fn, inputs, mask, weights):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y_fwd, y_bwd = fn(*leaves, mask)
    loss = (y_fwd.double() * weights[0]).sum() + (y_bwd.double() * weights[1]).sum()
    return (y_fwd, y_bwd), torch.autograd.grad(loss, leaves)


NAMES = ("u_fwd", "u_bwd", "k_fwd", "k_bwd", "d_fwd", "d_bwd")


# ----------------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "mixed"])
@pytest.mark.parametrize("L", [1, 16, 37])
def test_forward_matches_the_oracle(mask_kind, L):
    B, H = 3, 12  # H = 12: a partial channel tile
    inputs = make(B, L, H, seed=L)
    mask = padding_mask(mask_kind, B, L)
    y_fwd, y_bwd = triton_ssm.bidirectional_ssm_triton(*inputs, mask)
    e_fwd, e_bwd = oracle(*inputs, mask)
    for got, expected in ((y_fwd, e_fwd), (y_bwd, e_bwd)):
        assert got.shape == (B, L, H) and got.dtype == torch.float32
        assert torch.isfinite(got).all()
        assert relative_error(got, expected) < 1e-5
        if mask is not None:
            assert (got[mask == 0] == 0).all()  # exact zeros at padding


@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "mixed"])
def test_gradients_match_autograd_through_the_oracle(mask_kind):
    B, L, H = 3, 37, 12
    inputs = make(B, L, H, seed=1)
    mask = padding_mask(mask_kind, B, L)
    weights = torch.randn(2, B, L, H, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(DEVICE)
    _, grads = value_and_grads(triton_ssm.bidirectional_ssm_triton, inputs, mask, weights)
    _, expected = value_and_grads(oracle, inputs, mask, weights)
    for name, g, e, leaf in zip(NAMES, grads, expected, inputs):
        assert g.shape == leaf.shape and g.dtype == leaf.dtype, name
        assert torch.isfinite(g).all(), name
        assert relative_error(g, e) < 1e-5, name
    if mask is not None:
        for g in grads[:2]:
            assert (g[mask == 0] == 0).all()  # no gradient to padded inputs


def test_padding_invariance():
    """A sequence alone and right- or left-padded in a batch: the same outputs and input gradients at its tokens."""
    n, pad, H = 21, 13, 8
    u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd = make(1, n + pad, H, seed=3)
    k_short = (k_fwd[:n], k_bwd[:n])
    alone_inputs = [u_fwd[:, :n], u_bwd[:, :n], *k_short, d_fwd, d_bwd]
    weights = torch.randn(2, 1, n, H, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(DEVICE)
    alone, alone_grads = value_and_grads(triton_ssm.bidirectional_ssm_triton, alone_inputs, None, weights)
    for side in ("right", "left"):
        real = slice(0, n) if side == "right" else slice(pad, n + pad)
        mask = torch.zeros(1, n + pad, dtype=torch.long, device=DEVICE)
        mask[:, real] = 1
        u = [torch.randn(1, n + pad, H, device=DEVICE) for _ in range(2)]  # padding holds noise
        u[0][:, real], u[1][:, real] = u_fwd[:, :n], u_bwd[:, :n]
        w = torch.zeros(2, 1, n + pad, H, dtype=torch.float64, device=DEVICE)
        w[:, :, real] = weights
        padded, grads = value_and_grads(triton_ssm.bidirectional_ssm_triton, [*u, k_fwd, k_bwd, d_fwd, d_bwd], mask, w)
        for got, expected in zip(padded, alone):
            torch.testing.assert_close(got[:, real], expected, rtol=1e-5, atol=1e-5)
        for got, expected in zip(grads[:2], alone_grads[:2]):
            torch.testing.assert_close(got[:, real], expected, rtol=1e-5, atol=1e-5)
        for got, expected in zip(grads[2:4], alone_grads[2:4]):  # lags ≥ n never meet a pair of real tokens
            torch.testing.assert_close(got[:n], expected, rtol=1e-5, atol=1e-5)
            assert (got[n:] == 0).all()
        for got, expected in zip(grads[4:], alone_grads[4:]):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN in masked-off lanes
def test_padding_contents_never_leak():
    """NaN and ±inf at padded inputs change nothing, and their gradients are 0."""
    B, L, H = 3, 37, 12
    inputs = make(B, L, H, seed=5)
    mask = padding_mask("mixed", B, L)
    pad = (mask == 0)[:, :, None]
    poison = torch.tensor([float("nan"), float("inf"), -float("inf")], device=DEVICE).repeat(H // 3)
    poisoned = [torch.where(pad, poison, u) for u in inputs[:2]] + list(inputs[2:])
    expected = triton_ssm.bidirectional_ssm_triton(*inputs, mask)
    leaves = [t.clone().requires_grad_() for t in poisoned]
    got = triton_ssm.bidirectional_ssm_triton(*leaves, mask)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    grads = torch.autograd.grad(got[0].sum() + got[1].sum(), leaves)
    for g in grads:
        assert torch.isfinite(g).all()
    for g in grads[:2]:
        assert (g.masked_select(pad) == 0).all()


def test_kernel_gradient_over_several_channel_groups():
    """More channels than one group (GROUP_ALIGN): per-group partials, summed in torch, equal one group's sum."""
    B, L, H = 2, 20, 36
    inputs = make(B, L, H, seed=6)
    mask = padding_mask("mixed", B, L)
    g_fwd, g_bwd = torch.randn(2, B, L, H, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    keep, ranges = triton_ssm._mask_and_ranges(mask, B, L, DEVICE)
    u_fwd, u_bwd = inputs[:2]
    one = triton_ssm._lag_gram(g_fwd, u_fwd, u_bwd, g_bwd, keep, ranges, groups=1)
    several = triton_ssm._lag_gram(g_fwd, u_fwd, u_bwd, g_bwd, keep, ranges, groups=3)
    torch.testing.assert_close(several, one, rtol=1e-5, atol=1e-5)
    weights = torch.stack([g_fwd, g_bwd]).double()
    _, expected = value_and_grads(oracle, inputs, mask, weights)
    assert relative_error(several[0], expected[2]) < 1e-5 and relative_error(several[1], expected[3]) < 1e-5


def test_backward_is_deterministic():
    """Kernel and skip gradients are sums of per-program partials in torch (no atomics): bitwise repeatable."""
    inputs = make(3, 37, 12, seed=8)
    mask = padding_mask("mixed", 3, 37)
    weights = torch.randn(2, 3, 37, 12, generator=torch.Generator().manual_seed(9), dtype=torch.float64).to(DEVICE)
    runs = [value_and_grads(triton_ssm.bidirectional_ssm_triton, inputs, mask, weights)[1] for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_one_output_only_and_scalar_skips():
    """Only y_fwd used (y_bwd's gradient is None); skips of shape () get gradients of shape ()."""
    u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd = make(2, 19, 5, seed=10)
    leaves = [t.clone().requires_grad_() for t in (u_fwd, u_bwd, k_fwd, k_bwd, d_fwd[0], d_bwd[0])]
    y_fwd, _ = triton_ssm.bidirectional_ssm_triton(*leaves)
    grads = torch.autograd.grad(y_fwd.sum(), leaves)
    ref_leaves = [t.clone().requires_grad_() for t in (u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd)]
    expected = torch.autograd.grad(oracle(*ref_leaves)[0].sum(), ref_leaves, allow_unused=True)
    assert grads[4].shape == () and grads[5].shape == ()
    for name, g, e in zip(NAMES, grads, expected):
        e = torch.zeros_like(g) if e is None else e.reshape(g.shape)
        torch.testing.assert_close(g.double().cpu(), e.double().cpu(), rtol=1e-5, atol=1e-5, msg=name)


def test_strided_inputs_and_form_arguments():
    """Non-contiguous inputs are copied; ``form`` and ``recurrent_params`` do not change the result."""
    u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd = make(2, 23, 6, seed=11)
    u_fwd_t = u_fwd.transpose(0, 1).contiguous().transpose(0, 1)  # (B, L, H) with strides of (L, B, H)
    assert not u_fwd_t.is_contiguous()
    expected = oracle(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, None)
    for form in ("auto", "fft", "toeplitz"):
        got = triton_ssm.bidirectional_ssm_triton(u_fwd_t, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, form=form)
        for a, b in zip(got, expected):
            assert relative_error(a, b) < 1e-5


def test_the_dispatcher_runs_this_kernel():
    inputs = make(2, 21, 7, seed=12)
    mask = padding_mask("mixed", 2, 21)
    got = bidirectional_ssm(*inputs, mask, backend="triton")
    expected = triton_ssm.bidirectional_ssm_triton(*inputs, mask)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_empty_batch_and_channels():
    for B, H in ((0, 4), (2, 0)):
        inputs = [t.requires_grad_() for t in make(B, 5, H)]
        y_fwd, y_bwd = triton_ssm.bidirectional_ssm_triton(*inputs)
        assert y_fwd.shape == y_bwd.shape == (B, 5, H)
        grads = torch.autograd.grad(y_fwd.sum() + y_bwd.sum(), inputs)
        assert all((g == 0).all() for g in grads)


def _bad(change):
    u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd = make(2, 6, 3)
    args = dict(u_fwd=u_fwd, u_bwd=u_bwd, k_fwd=k_fwd, k_bwd=k_bwd, d_fwd=d_fwd, d_bwd=d_bwd, attention_mask=None)
    args.update(change(args))
    return args


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: dict(u_fwd=a["u_fwd"].double(), u_bwd=a["u_bwd"].double()),
         r"u_fwd and u_bwd of one dtype among float32, float16 and bfloat16, got torch.float64"),
        (lambda a: dict(u_bwd=a["u_bwd"].half()), r"one dtype among float32, float16 and bfloat16"),
        (lambda a: dict(u_fwd=a["u_fwd"][0]), r"u_fwd must be \(B, L, H\), got shape \(6, 3\)"),
        (lambda a: dict(u_bwd=a["u_bwd"][:, :5]), r"u_bwd must have the shape of u_fwd \(2, 6, 3\)"),
        (lambda a: dict(u_fwd=a["u_fwd"][:, :0], u_bwd=a["u_bwd"][:, :0]), r"at least 1, got L=0"),
        (lambda a: dict(k_fwd=a["k_fwd"][:5]), r"k_fwd must have shape \(L,\) = \(6,\), got \(5,\)"),
        (lambda a: dict(k_bwd=a["k_bwd"].to(torch.int64)), r"k_bwd must be a real floating-point tensor"),
        (lambda a: dict(d_bwd=torch.ones(2, device=DEVICE)), r"d_bwd must have shape \(\) or \(1,\)"),
        (lambda a: dict(attention_mask=torch.ones(2, 5, device=DEVICE)), r"attention_mask must have shape \(B, L\)"),
        (lambda a: dict(k_fwd="kernel"), r"k_fwd must be a torch.Tensor, got str"),
    ],
)
def test_unsupported_inputs_are_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        triton_ssm.bidirectional_ssm_triton(**_bad(change))


def test_cpu_tensors_without_the_interpreter_are_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    args = [t.cpu() for t in make(1, 4, 2)]
    with pytest.raises(ValueError, match=r"needs CUDA tensors \(or TRITON_INTERPRET=1"):
        triton_ssm.bidirectional_ssm_triton(*args)


def test_autotune_pruning(monkeypatch):
    """The GPU configurations (listed even without a GPU): per dtype (fp32 takes its tables with IEEE and with TF32
    products alike: its operands are 4 bytes either way), tiles no larger than the problem needs, one configuration
    without autotuning, small tiles first for rows that are not 16-aligned."""
    monkeypatch.setattr(triton_utils, "INTERPRETED", False)
    for tables, first_input in ((triton_ssm._CONV_CONFIGS, "U_C"), (triton_ssm._GRAM_CONFIGS, "X_C")):
        configs, prune = triton_ssm._configs(tables), triton_ssm._pruner(tables)

        def args(dtype, **sizes):
            return {first_input: torch.empty(0, dtype=dtype), **sizes}

        for dtype, precision, table in ((torch.bfloat16, "tf32", tables["half"]),
                                        (torch.float16, "tf32", tables["half"]),
                                        (torch.float32, "ieee", tables["fp32"]),
                                        (torch.float32, "tf32", tables["fp32"])):
            kept = [triton_ssm._settings(c)
                    for c in prune(configs, args(dtype, H=1024, LB=4096), PRECISION=precision)]
            assert kept == table
            small = prune(configs, args(dtype, H=16, LB=16), PRECISION=precision)
            assert all(c.kwargs["BT"] <= 32 and c.kwargs["BH"] <= 64 for c in small) and len(small) >= 1
        monkeypatch.setattr(triton_utils, "AUTOTUNE", False)
        (first,) = prune(configs, args(torch.bfloat16, H=1024, LB=512), PRECISION="tf32")
        assert triton_ssm._settings(first) == tables["half"][0]
        (first,) = prune(configs, args(torch.bfloat16, H=200, LB=512), PRECISION="tf32")
        assert first.kwargs["BT"] * first.kwargs["BH"] == min(bt * bh for bt, bh, _, _ in tables["half"])
        monkeypatch.setattr(triton_utils, "AUTOTUNE", True)


# ----------------------------------------------------------------------------------------------------------------
# torch.library: the custom ops, and torch.compile through them
# ----------------------------------------------------------------------------------------------------------------


def _op_inputs(mask_kind, B=2, L=20, H=5, seed=14):
    """The forward op's eight inputs as ``bidirectional_ssm_triton`` makes them (L = 20: two time tiles)."""
    u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd = make(B, L, H, seed=seed)
    keep, ranges = triton_ssm._mask_and_ranges(padding_mask(mask_kind, B, L), B, L, DEVICE)
    return [u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, keep, ranges]


@pytest.mark.parametrize("mask_kind", ["none", "mixed"])
def test_forward_op_passes_opcheck(mask_kind):
    """``bizoo::ssm_toeplitz_forward``: schema, fake tensors (shapes, dtypes, strides, also with dynamic shapes),
    the autograd registration, and AOTAutograd's outputs and gradients equal to eager (torch.library.opcheck)."""
    inputs = _op_inputs(mask_kind)
    args = [t.requires_grad_() for t in inputs[:6]] + inputs[6:]
    torch.library.opcheck(torch.ops.bizoo.ssm_toeplitz_forward.default, tuple(args))


@pytest.mark.parametrize("need_u, need_k", [(True, True), (True, False), (False, True)])
def test_backward_op_passes_opcheck(need_u, need_k):
    """``bizoo::ssm_toeplitz_backward`` with each pair of gradients asked for (the others come back empty)."""
    inputs = _op_inputs("mixed")
    g_fwd, g_bwd = torch.randn(2, *inputs[0].shape, generator=torch.Generator().manual_seed(15)).to(DEVICE)
    args = (g_fwd, g_bwd, *inputs, need_u, need_k)
    torch.library.opcheck(torch.ops.bizoo.ssm_toeplitz_backward.default, args)
    du_fwd, du_bwd, dk = torch.ops.bizoo.ssm_toeplitz_backward(*args)
    assert du_fwd.shape == du_bwd.shape == (inputs[0].shape if need_u else (0,))
    assert dk.shape == ((2, inputs[0].shape[1]) if need_k else (0,)) and dk.dtype == torch.float32


@pytest.mark.parametrize("mask_kind", ["none", "mixed"])
def test_compiles_without_graph_breaks_and_equals_eager_and_the_reference(mask_kind):
    """``torch.compile(fullgraph=True)`` of the dispatcher on the Triton backend: no graph break, the custom op in
    the graph, outputs and the six gradients equal to eager (bit for bit: the same kernels) and to the reference."""
    B, L, H = 3, 24, 8  # two time tiles, the second one partial
    inputs = make(B, L, H, seed=16)
    mask = padding_mask(mask_kind, B, L)
    weights = torch.randn(2, B, L, H, generator=torch.Generator().manual_seed(17), dtype=torch.float64).to(DEVICE)

    def f(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask):
        return bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask, backend="triton")

    explanation = torch._dynamo.explain(f)(*inputs, mask)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    targets = {str(n.target) for g in explanation.graphs for n in g.graph.nodes if n.op == "call_function"}
    assert "bizoo.ssm_toeplitz_forward" in targets, targets
    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    got, got_grads = value_and_grads(compiled, inputs, mask, weights)
    eager, eager_grads = value_and_grads(f, inputs, mask, weights)
    expected, expected_grads = value_and_grads(oracle, inputs, mask, weights)
    for g, e, r in zip(got, eager, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
        assert relative_error(g, r) < 1e-5
    for name, g, e, r in zip(NAMES, got_grads, eager_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=0, atol=0, msg=name)
        assert r.abs().max() > 1e-2, name  # not vacuous: a sizeable gradient to compare
        assert relative_error(g, r) < 1e-5, name


# ----------------------------------------------------------------------------------------------------------------
# GPU only: half precision, lengths that reach the large autotuned tiles
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="fp32 at long lengths is checked on a GPU only (the interpreter is slow)")
@pytest.mark.parametrize("L", [129, 777])
def test_fp32_long_rows_on_gpu(L):
    B, H = 3, 200
    inputs = make(B, L, H, seed=13)
    mask = padding_mask("mixed", B, L)
    weights = torch.randn(2, B, L, H, generator=torch.Generator().manual_seed(14), dtype=torch.float64).to(DEVICE)
    got, grads = value_and_grads(triton_ssm.bidirectional_ssm_triton, inputs, mask, weights)
    expected, expected_grads = value_and_grads(direct_ssm, inputs, mask, weights)  # fp64
    for a, b in zip(got, expected):
        assert relative_error(a, b) < 2e-5
    for name, g, e in zip(NAMES, grads, expected_grads):  # k, d: sums of B·H·L products
        assert relative_error(g, e) < 2e-5, name


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="bf16/fp16 kernels are checked on a GPU only")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("L", [40, 512])
def test_half_precision_on_gpu(dtype, L):
    """Half inputs: fp32 accumulation, outputs and input gradients in the inputs' dtype, within half rounding of
    the fp64 result on the same (rounded) inputs."""
    B, H = 2, 256
    inputs = make(B, L, H, dtype=dtype, seed=15)
    mask = padding_mask("mixed", B, L)
    weights = torch.randn(2, B, L, H, generator=torch.Generator().manual_seed(16), dtype=torch.float64).to(DEVICE)
    got, grads = value_and_grads(triton_ssm.bidirectional_ssm_triton, inputs, mask, weights)
    as64 = [t.double() for t in inputs]
    expected, expected_grads = value_and_grads(direct_ssm, as64, mask, weights)
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    for a, b in zip(got, expected):
        assert a.dtype == dtype and relative_error(a, b) < tol
        assert (a[mask == 0] == 0).all()
    for name, g, e, leaf in zip(NAMES, grads, expected_grads, inputs):
        assert g.dtype == leaf.dtype, name
        assert relative_error(g, e) < tol, name
