"""What every op shares: the input checks of ``bizoo.kernels.checks`` and the Triton helpers of
``bizoo.kernels.triton_utils`` (real ranges, debug-filled buffers, tile widths, the autotuning switches).

Each op's own tests cover these helpers through its kernels; here each is pinned down on its own, on tiny inputs.
The Triton helpers need the ``triton`` package; ``row_range`` runs in a kernel (a GPU or ``TRITON_INTERPRET=1``).
"""

import os

import pytest
import torch

from bizoo.kernels import checks, dispatch
from tests.kernels.common import KernelStandIn

try:
    from bizoo.kernels import triton_utils
except ImportError:  # the helpers exist only with triton
    triton_utils = None

needs_triton = pytest.mark.skipif(triton_utils is None, reason="triton is not installed")
ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if ON_GPU else "cpu"

# Rows: right padding, left padding, holes, padding only, no padding.
MASK = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
RANGES = [[0, 3], [2, 4], [1, 4], [0, 0], [0, 5]]


# ----------------------------------------------------------------------------------------------------------------
# bizoo.kernels.checks
# ----------------------------------------------------------------------------------------------------------------


def test_shape_of_names_a_shape_or_a_type():
    assert checks.shape_of(torch.zeros(2, 3)) == "(2, 3)"
    assert checks.shape_of(torch.zeros(4)) == "(4,)"
    assert checks.shape_of([1, 2]) == "list" and checks.shape_of(None) == "NoneType"


def test_mask_values_are_read_in_eager_mode_on_a_cpu_only(monkeypatch):
    checks.check_mask_values("op", MASK)  # 0/1 integers
    checks.check_mask_values("op", MASK.float())
    checks.check_mask_values("op", torch.tensor([[True, False]]))
    for bad in (torch.tensor([[0, 2]]), torch.tensor([[0.5, 1.0]]), torch.tensor([[-1, 1]])):
        with pytest.raises(ValueError, match=r"^op: attention_mask must hold only 0 \(padding\) and 1 \(real token\)$"):
            checks.check_mask_values("op", bad)
    monkeypatch.setattr(dispatch, "tracing", lambda: True)  # traced: no value is read (a graph break)
    checks.check_mask_values("op", torch.tensor([[0, 2]]))


def test_triton_device_needs_cuda_or_the_interpreter(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    checks.check_triton_device("op", cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    needs = r"^op: backend='triton' needs CUDA tensors \(or TRITON_INTERPRET=1 .*; the tensors are on cpu;"
    with pytest.raises(ValueError, match=needs):
        checks.check_triton_device("op", cpu)
    if ON_GPU:
        checks.check_triton_device("op", cpu.cuda())


def test_a_triton_backend_that_cannot_run_names_who_asked_for_it(monkeypatch):
    """backend='triton' for an op (or a form) without Triton kernels: the fix is another argument; the same asked by
    BIZOO_KERNEL_BACKEND under backend='auto': the fix is the variable, not the argument the caller already gave."""
    cpu = torch.zeros(1)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    with pytest.raises(ValueError, match=r"^op: backend='triton' asks for Triton kernels, which this op \(or this "
                                         r"form of it\) does not have; use backend='reference' or 'auto'$"):
        dispatch.resolve_backend("triton", cpu, op="op", has_triton=False)
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    with pytest.raises(ValueError, match=r"^op: backend='auto' with the environment variable BIZOO_KERNEL_BACKEND="
                                         r"triton asks for Triton kernels, .*; unset BIZOO_KERNEL_BACKEND or set it to "
                                         r"'reference'$"):
        dispatch.resolve_backend("auto", cpu, op="op", has_triton=False)
    assert dispatch.resolve_backend("reference", cpu, op="op", has_triton=False) == "reference"  # the argument wins


class _Cube(torch.autograd.Function):
    """x³ with its derivative written out from a saved x² (no graph to x), as the ops' hand-written backwards are."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x * x)
        return x * x * x

    @staticmethod
    @dispatch.first_order_only("cube", "use the autograd form")
    def backward(ctx, grad):
        (square,) = ctx.saved_tensors
        return 3 * square * grad


def test_first_order_only_keeps_first_order_gradients_and_refuses_a_second():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    (plain,) = torch.autograd.grad(_Cube.apply(x).sum(), x)
    assert not plain.requires_grad  # without create_graph: the backward as it is
    (graphed,) = torch.autograd.grad(_Cube.apply(x).sum(), x, create_graph=True)
    torch.testing.assert_close(graphed, plain)
    torch.testing.assert_close(plain, 3 * x.detach() ** 2)
    assert graphed.requires_grad  # so that a loss built on it cannot silently drop its part
    with pytest.raises(RuntimeError, match=r"cube: its backward is written out .*double backward.*use the autograd"):
        (graphed.sum() + x.sum()).backward()


def _triton_ops_for_a_double_backward():
    """Each Triton op with a written-out backward op, as a function of one leaf x -> a scalar (small shapes)."""
    from bizoo.kernels.crf import crf_log_partition
    from bizoo.kernels.lion import lion_attention
    from bizoo.kernels.lstm import bilstm
    from bizoo.kernels.ssm import bidirectional_ssm

    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    qk, v = r(1, 16, 2, 16), r(1, 16, 2, 16)
    crf = r(3, 3), r(3), r(3)
    ssm_k, ssm_d = r(4), r(())
    w_ih, w_hh = r(2, 12, 3), torch.stack([r(12, 3) / 3] * 2)
    return {
        "lion chunk": (r(1, 16, 2, 16), lambda x: lion_attention(x, qk, v, backend="triton", chunk_size=16)),
        "lion attention": (r(1, 16, 2, 16), lambda x: lion_attention(x, qk, v, form="attention", backend="triton")),
        "crf": (r(2, 5, 3), lambda x: crf_log_partition(x, torch.ones(2, 5, dtype=torch.bool), *crf, backend="triton")),
        "ssm": (r(2, 4, 6), lambda x: bidirectional_ssm(x, x.flip(-1), ssm_k, ssm_k, ssm_d, ssm_d,
                                                        backend="triton")[0]),
        "bilstm steps": (r(2, 5, 3), lambda x: bilstm(x, w_ih, w_hh, backend="triton", form="steps")[0]),
    }


@needs_triton
@pytest.mark.parametrize("name", ["lion chunk", "lion attention", "crf", "ssm", "bilstm steps"])
def test_a_double_backward_through_a_triton_op_is_a_clear_error(name):
    """The Triton ops' backward ops (dispatch.register_op backward_of=...) keep the first-order gradients under
    create_graph=True and refuse a second differentiation naming the op and the backend that can do it (torch's own
    message said only that no autograd formula was registered for bizoo.<op>_backward)."""
    x, f = _triton_ops_for_a_double_backward()[name]
    x.requires_grad_(True)
    (plain,) = torch.autograd.grad(f(x).square().sum(), x)
    (graphed,) = torch.autograd.grad(f(x).square().sum(), x, create_graph=True)
    torch.testing.assert_close(graphed, plain)
    with pytest.raises(RuntimeError, match=r"\(backend='triton'\): its backward is written out .* backend='reference'"):
        graphed.sum().backward()


# ----------------------------------------------------------------------------------------------------------------
# bizoo.kernels.triton_utils
# ----------------------------------------------------------------------------------------------------------------


@needs_triton
def test_real_ranges_of_every_padding_pattern():
    B, L = MASK.shape
    for mask in (MASK, MASK.bool(), MASK.float(), MASK != 0):
        ranges = triton_utils.real_ranges(mask, B, L, "cpu")
        assert ranges.dtype == torch.int32 and ranges.is_contiguous() and ranges.tolist() == RANGES
    assert triton_utils.real_ranges(None, 3, 7, "cpu").tolist() == [[0, 7]] * 3
    assert triton_utils.real_ranges(torch.zeros(2, 0), 2, 0, "cpu").tolist() == [[0, 0]] * 2  # no positions
    assert triton_utils.real_ranges(torch.zeros(0, 4), 0, 4, "cpu").shape == (0, 2)  # no rows


@needs_triton
def test_buffers_are_filled_only_when_asked():
    nan = triton_utils.buffer((2, 3), torch.float32, "cpu", float("nan"))
    assert nan.shape == (2, 3) and nan.dtype == torch.float32 and nan.isnan().all()
    ints = triton_utils.buffer((4,), torch.int8, "cpu", float("nan"), int_fill=-7)
    assert ints.dtype == torch.int8 and (ints == -7).all()
    assert (triton_utils.buffer((3,), torch.int64, "cpu", 0.0) == -1).all()  # integers take int_fill (-1)
    plain = triton_utils.buffer((5, 2), torch.float16, "cpu", None)
    assert plain.shape == (5, 2) and plain.dtype == torch.float16
    values = torch.arange(3.0)
    assert triton_utils.filled(values, None) is values and values.tolist() == [0.0, 1.0, 2.0]  # untouched
    transposed = torch.empty(3, 4).t()
    like = triton_utils.filled(torch.empty_like(transposed), 0.5)  # the strides of empty_like are kept
    assert like.stride() == transposed.stride() and (like == 0.5).all()


@needs_triton
def test_tile_widths_and_dot_precision(monkeypatch):
    assert [triton_utils.lanes(n) for n in (1, 15, 16, 17, 64, 100)] == [16, 16, 16, 32, 64, 128]
    monkeypatch.setattr(triton_utils, "tf32_allowed", lambda: False)
    assert triton_utils.dot_precision(torch.float32) == "ieee"
    assert triton_utils.dot_precision(torch.float16) == triton_utils.dot_precision(torch.bfloat16) == "tf32"
    monkeypatch.setattr(triton_utils, "tf32_allowed", lambda: True)
    assert triton_utils.dot_precision(torch.float32) == "tf32"
    assert triton_utils.dot_precision(torch.float16) == triton_utils.dot_precision(torch.bfloat16) == "tf32"


# The ways a user allows TF32 for fp32 matrix products, or takes it back, each with whether torch's own products then
# take TF32; in two processes, one per family of settings: torch refuses its legacy flags once the newer settings
# were used in a process. transformers' --tf32 (enable_tf32) sets the newer ones.
_TF32_SWITCHES = {
    "legacy": [
        ("pass", False),
        ("torch.backends.cuda.matmul.allow_tf32 = True", True),
        ("torch.backends.cuda.matmul.allow_tf32 = False", False),
        ("torch.set_float32_matmul_precision('high')", True),
        ("torch.set_float32_matmul_precision('highest')", False),
        ("torch.set_float32_matmul_precision('medium')", True),
    ],
    "newer": [
        ("torch.backends.cuda.matmul.fp32_precision = 'tf32'", True),
        ("torch.backends.cuda.matmul.fp32_precision = 'none'", False),
        ("torch.backends.fp32_precision = 'tf32'", True),
        ("torch.backends.cuda.matmul.fp32_precision = 'ieee'", False),
        ("torch.backends.cuda.matmul.fp32_precision = 'none'; torch.backends.fp32_precision = 'none'", False),
        ("transformers.utils.import_utils.enable_tf32(True)", True),
        ("transformers.utils.import_utils.enable_tf32(False)", False),
    ],
}


@needs_triton
@pytest.mark.parametrize("family", list(_TF32_SWITCHES))
def test_fp32_products_follow_torchs_tf32_setting(family):
    """``dot_precision(torch.float32)`` is "tf32" exactly where torch's own fp32 matrix products take TF32, after
    each setting in turn (half inputs: "tf32" always)."""
    import subprocess
    import sys

    steps = _TF32_SWITCHES[family]
    code = "\n".join(["import torch, transformers.utils.import_utils", "from bizoo.kernels import triton_utils",
                       *(f"{statement}\nprint(triton_utils.dot_precision(torch.float32), "
                         "triton_utils.dot_precision(torch.bfloat16))" for statement, _ in steps)])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = [f"{'tf32' if tf32 else 'ieee'} tf32" for _, tf32 in steps]
    assert done.stdout.strip().splitlines() == expected, list(zip([s for s, _ in steps], done.stdout.splitlines()))


@needs_triton
@pytest.mark.skipif(not (ON_GPU or INTERPRETED), reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1")
@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_op_launches_its_products_at_the_chosen_precision(monkeypatch, tf32, dtype):
    """LION's chunk and tiled schedules and the SSM launch each product kernel, forward and backward, with
    ``dot_precision``'s answer for their inputs: IEEE for fp32 unless TF32 is allowed, TF32 for bf16 always."""
    from bizoo.kernels.lion import lion_attention, triton_chunk, triton_parallel
    from bizoo.kernels.ssm import bidirectional_ssm, triton_ssm

    monkeypatch.setattr(triton_utils, "tf32_allowed", lambda: tf32)
    seen = {}
    for module, names in ((triton_chunk, ("_scan_kernel", "_forward_kernel", "_backward_kernel")),
                          (triton_parallel, ("_parallel_kernel",)),
                          (triton_ssm, ("_toeplitz_kernel", "_lag_gram_kernel"))):
        for name in names:  # each launch's PRECISION (and STATE_PRECISION where it has one)
            record = lambda meta, out=seen.setdefault(name, []): out.extend(  # noqa: E731
                meta[key] for key in ("PRECISION", "STATE_PRECISION") if key in meta)
            monkeypatch.setattr(module, name, KernelStandIn(getattr(module, name), record))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 20, 16, generator=g).to(DEVICE, dtype).requires_grad_() for _ in range(3))
    log_decay = -torch.rand(2, generator=g).to(DEVICE)
    for form in ("chunk", "attention"):
        y = lion_attention(q, k, v, log_decay, form=form, backend="triton", chunk_size=16)
        y.float().sum().backward()
    u = torch.randn(1, 20, 16, generator=g).to(DEVICE, dtype).requires_grad_()
    kernel = torch.randn(20, generator=g, device=DEVICE, requires_grad=True)
    skip = torch.randn((), device=DEVICE, requires_grad=True)
    y_f, y_b = bidirectional_ssm(u, u.flip(1), kernel, kernel, skip, skip, backend="triton")
    (y_f.float().sum() + y_b.float().sum()).backward()

    expected = "tf32" if (tf32 or dtype != torch.float32) else "ieee"
    counts = {name: len(precisions) for name, precisions in seen.items()}  # launches (x2 with a state precision)
    assert counts == {"_scan_kernel": 2, "_forward_kernel": 2, "_backward_kernel": 2, "_parallel_kernel": 4,
                      "_toeplitz_kernel": 2, "_lag_gram_kernel": 1}
    assert {p for precisions in seen.values() for p in precisions} == {expected}, seen


@needs_triton
def test_autotuning_switches(monkeypatch):
    configs = ["a", "b", "c"]
    monkeypatch.setattr(triton_utils, "INTERPRETED", True)
    assert triton_utils.autotune_configs(configs, "small") == ["small"]
    monkeypatch.setattr(triton_utils, "INTERPRETED", False)
    assert triton_utils.autotune_configs(configs, "small") == configs
    monkeypatch.setattr(triton_utils, "AUTOTUNE", True)
    assert triton_utils.first_unless_autotuning(configs) == configs
    monkeypatch.setattr(triton_utils, "AUTOTUNE", False)
    assert triton_utils.first_unless_autotuning(configs) == ["a"]


if triton_utils is not None:
    tl, row_range = triton_utils.tl, triton_utils.row_range

    @triton_utils.triton.jit
    def _swap_pairs(RANGES, OUT):
        """OUT[b] = (end, start) of row b, read with ``row_range``."""
        b = tl.program_id(0)
        start, end = row_range(RANGES, b)
        tl.store(OUT + 2 * b, end)
        tl.store(OUT + 2 * b + 1, start)


@needs_triton
@pytest.mark.skipif(not (ON_GPU or INTERPRETED), reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1")
def test_row_range_reads_each_rows_pair_in_a_kernel():
    B, L = MASK.shape
    ranges = triton_utils.real_ranges(MASK.to(DEVICE), B, L, DEVICE)  # (B, 2) int32
    out = torch.full((B, 2), -1, dtype=torch.int32, device=DEVICE)
    _swap_pairs[(B,)](ranges, out)
    assert out.flip(1).tolist() == RANGES


def test_exporting_is_true_under_torch_export_only():
    """``dispatch.exporting()`` (which takes the export forms: the recursions as scans) answers False in eager mode and
    under ``torch.compile``, True under ``torch.export``. (Before torch 2.12 dynamo folded
    ``torch.compiler.is_exporting()`` to True under any compile: on torch 2.11 the compiled call gave 11.0 here,
    and compiled BiLSTM-CRF and BiGS models took the scans and got wrong gradients.)"""

    class Switches(torch.nn.Module):
        def forward(self, x):
            return x + float(dispatch.exporting()) + 10.0 * float(dispatch.tracing())

    model, x = Switches(), torch.zeros(1)
    assert model(x).item() == 0.0
    torch._dynamo.reset()
    assert torch.compile(model, backend="aot_eager", fullgraph=True)(x).item() == 10.0
    assert torch.export.export(model, (x,)).module()(x).item() == 11.0
