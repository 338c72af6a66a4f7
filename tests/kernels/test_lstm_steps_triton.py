"""The step-wise Triton schedule of the bidirectional LSTM(P) (``triton_steps.py``, backend "triton", form "steps")
against the autograd loop (``reference.bilstm_loop``): outputs, final states and every gradient; its dispatch; its
custom ops under torch.library and torch.compile; on a GPU, the CUDA-graphed step loops against the plain ones.

On a CPU these run under Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is imported). Every output
and scratch buffer is filled with NaN first, so that an element a kernel fails to write (or reads before writing)
cannot pass, and the tiles are 4 rows × 16 columns: H = 20 spans two column tiles (the last one partial) and the 2B
rows of B = 5 three row tiles (the last one partial). fp32 to 1e-5, fp64 to 1e-9; weights are wide (std ≥ 0.5) and
the clips tight, so that both clips bite at a good share of the real steps (checked) and the gradients are of order 1.
"""

import os

import pytest
import torch

triton_steps = pytest.importorskip("bizoo.kernels.lstm.triton_steps", reason="triton is not installed")

import bizoo.kernels.lstm as op  # noqa: E402
from bizoo.kernels import dispatch  # noqa: E402
from bizoo.kernels.lstm import bilstm, input_gates, reading_orders, reference  # noqa: E402
from tests.kernels.compiled_lstm import check_bilstm_ops, check_compiled_equals_eager, outputs_and_grads  # noqa: E402

ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(
    not (ON_GPU or INTERPRETED), reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1"
)
DEVICE = "cuda" if ON_GPU else "cpu"
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-9, rtol=1e-9)}
NAMES = ("x", "weight_ih", "weight_hh", "bias", "weight_proj", "h0", "c0")


@pytest.fixture(autouse=True)
def nan_filled_small_tiles(monkeypatch):
    monkeypatch.setattr(triton_steps, "DEBUG_FILL", float("nan"))
    monkeypatch.setattr(triton_steps, "TILE_ROWS", 4)
    monkeypatch.setattr(triton_steps, "TILE_COLS", 16)


def make_case(B, L, I, H, P, layout, per_direction=True, state=True, dtype=torch.float32, seed=0):
    """Leaves (inputs of order 1, weights of std 0.5 to 0.8: the gates neither saturated nor near zero), a mask of
    ``layout`` (row 0 full, row 1 empty when B > 2) and cotangents of y, h_n and c_n."""
    g = torch.Generator().manual_seed(seed)
    Pout = P or H

    def randn(*shape, std=1.0):
        return (torch.randn(*shape, generator=g) * std).to(dtype)

    leaves = {
        "x": randn(B, L, 2, I) if per_direction else randn(B, L, I),
        "weight_ih": randn(2, 4 * H, I, std=0.6),
        "weight_hh": randn(2, 4 * H, Pout, std=0.5),
        "bias": randn(2, 4 * H, std=0.3),
        "weight_proj": randn(2, Pout, H, std=0.8) if P else None,
        "h0": randn(2, B, Pout) if state else None,
        "c0": randn(2, B, H) if state else None,
    }
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    if B > 2:
        lengths[1] = 0  # a row without a real token
    mask = torch.arange(L)[None, :] < lengths[:, None]
    if layout == "left":
        mask = mask.flip(1)
    elif layout == "holes":
        mask = (torch.rand(B, L, generator=g) < 0.6) & (lengths > 0)[:, None]
        mask[0] = True
    cotangents = (randn(B, L, 2, Pout), randn(2, B, Pout), randn(2, B, H))
    return leaves, mask, cotangents


def run(leaves, mask, cotangents, backend, form, wanted=(True, True, True), **clips):
    """Outputs, final state and the gradients of every given input (on ``DEVICE``) of the loss Σ out · cotangent over
    the ``wanted`` outputs (y, h_n, c_n)."""
    args = {k: (None if v is None else v.to(DEVICE).requires_grad_()) for k, v in leaves.items()}
    state = None if args["h0"] is None else (args["h0"], args["c0"])
    y, (h_n, c_n) = bilstm(args["x"], args["weight_ih"], args["weight_hh"], args["bias"], args["weight_proj"],
                           mask.to(DEVICE), state, backend=backend, form=form, **clips)
    loss = sum((a * b.to(DEVICE)).sum() for a, b, w in zip((y, h_n, c_n), cotangents, wanted) if w)
    names = [k for k in NAMES if args[k] is not None]
    grads = torch.autograd.grad(loss, [args[k] for k in names])
    return {"y": y, "h_n": h_n, "c_n": c_n, **{f"grad {k}": g for k, g in zip(names, grads)}}


def assert_same(got, want, dtype):
    for name in want:
        assert got[name].dtype == want[name].dtype == dtype, name
        assert not got[name].isnan().any(), f"{name}: NaN (an element was not written)"
        torch.testing.assert_close(got[name].cpu(), want[name].cpu(), **TOL[dtype], msg=lambda m: f"{name}: {m}")


def clipped_shares(leaves, mask, cell_clip, proj_clip):
    """The shares of real steps whose cells / projections the clips change, from the forward op's saved unclipped
    values (the op's outputs are checked against the oracle by the same test)."""
    t = {k: (None if v is None else v.to(DEVICE)) for k, v in leaves.items()}
    B, L = mask.shape
    order, lengths = reading_orders(mask.to(DEVICE), B, L, DEVICE)
    gates = input_gates(t["x"], t["weight_ih"], t["bias"])
    out = torch.ops.bizoo.bilstm_steps_forward(gates, t["weight_hh"], t["weight_proj"], t["h0"], t["c0"], order,
                                               lengths, cell_clip, proj_clip, True)
    cell, h_raw = out[4].cpu(), out[6].cpu()  # (2, B, L, H), (2, B, L, P) in reading order
    real = (torch.arange(L)[None, :] < lengths.cpu()[:, None])[None, :, :, None]  # (1, B, L, 1)

    def share(v, clip):  # of the real steps' elements (both directions)
        return ((v.abs() > clip) & real).sum().item() / (real & (v == v)).sum().item()

    return share(cell, cell_clip), (share(h_raw, proj_clip) if proj_clip is not None else None)


CASES = {
    # name: (B, L, I, H, P, layout, dtype, clips)
    "lstmp clipped, holes": (5, 5, 4, 20, 12, "holes", torch.float32, dict(cell_clip=0.8, proj_clip=0.3)),
    "lstmp clipped, left-padded, fp64": (3, 4, 3, 20, 12, "left", torch.float64, dict(cell_clip=0.8, proj_clip=0.3)),
    "square lstmp clipped, right-padded": (5, 4, 3, 20, 20, "right", torch.float32, dict(cell_clip=0.8,
                                                                                        proj_clip=0.5)),
    "lstm cell clip, holes, fp64": (6, 4, 3, 20, None, "holes", torch.float64, dict(cell_clip=0.6)),
    "lstmp unclipped, right-padded": (3, 4, 3, 20, 12, "right", torch.float32, {}),
    "lstm unclipped, left-padded": (5, 4, 3, 20, None, "left", torch.float32, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_every_gradient_match_the_autograd_loop(case):
    B, L, I, H, P, layout, dtype, clips = CASES[case]
    leaves, mask, cot = make_case(B, L, I, H, P, layout, dtype=dtype, seed=len(case))
    want = run(leaves, mask, cot, "reference", "autograd", **clips)
    got = run(leaves, mask, cot, "triton", "steps", **clips)
    assert_same(got, want, dtype)
    assert (got["y"].cpu()[~mask] == 0).all()  # zeros at padding
    for name in want:  # of order 1 (not vacuous), the weights' and the initial state's included
        assert want[name].abs().max() > 0.05, name
    if clips:  # the clips bite at a fair share of the real steps, so the clipping and its gradient mask are exercised
        cells, projections = clipped_shares(leaves, mask, clips.get("cell_clip"), clips.get("proj_clip"))
        assert 0.1 < cells < 0.9, cells
        assert projections is None or 0.1 < projections < 0.9, projections


@pytest.mark.parametrize("wanted", [(True, False, False), (False, False, True), (False, True, False)],
                         ids=["y only", "c_n only", "h_n only"])
def test_gradients_of_some_outputs_only(wanted):
    """The backward op with missing cotangents (None: zeros), a clipped LSTMP."""
    clips = dict(cell_clip=0.8, proj_clip=0.3)
    leaves, mask, cot = make_case(5, 4, 3, 20, 12, "right", seed=11)
    want = run(leaves, mask, cot, "reference", "autograd", wanted, **clips)
    got = run(leaves, mask, cot, "triton", "steps", wanted, **clips)
    assert_same(got, want, torch.float32)


def test_padding_contents_reach_no_output_and_no_gradient():
    """NaN at the padded positions of x: the outputs and every gradient (W_ih's too, formed from x at every
    position) are those of zeros there."""
    clips = dict(cell_clip=0.8, proj_clip=0.3)
    leaves, mask, cot = make_case(5, 4, 3, 20, 12, "holes", seed=13)
    zeroed = dict(leaves, x=torch.where(mask[:, :, None, None], leaves["x"], 0.0))
    poisoned = dict(leaves, x=torch.where(mask[:, :, None, None], leaves["x"], float("nan")))
    assert_same(run(poisoned, mask, cot, "triton", "steps", **clips),
                run(zeroed, mask, cot, "triton", "steps", **clips), torch.float32)


def test_inference_without_saved_activations_and_without_final_state():
    """No gradient: the forward op keeps nothing for a backward pass, and gives the same outputs."""
    leaves, mask, _ = make_case(5, 4, 3, 20, 12, "holes", seed=3)
    args = [None if leaves[k] is None else leaves[k].to(DEVICE) for k in NAMES]
    clips = dict(cell_clip=0.8, proj_clip=0.3)
    with torch.no_grad():
        got = bilstm(*args[:5], mask.to(DEVICE), tuple(args[5:]), backend="triton", form="steps", **clips)
        want = bilstm(*args[:5], mask.to(DEVICE), tuple(args[5:]), backend="reference", form="autograd", **clips)
        y, final = bilstm(*args[:5], mask.to(DEVICE), tuple(args[5:]), backend="triton", form="steps",
                          final_state=False, **clips)
    pairs = {"y": (got[0], want[0]), "h_n": (got[1][0], want[1][0]), "c_n": (got[1][1], want[1][1]),
             "y without final state": (y, want[0])}
    for name, (a, b) in pairs.items():
        torch.testing.assert_close(a, b, **TOL[torch.float32], msg=lambda m: f"{name}: {m}")
    assert final is None


def test_half_precision_inputs_compute_in_fp32():
    """bf16 inputs: the op computes in fp32 and answers in bf16 (the values are checked on a GPU only: the interpreter
    multiplies bf16 matrices wrongly, and a CPU bf16 reference is no closer)."""
    leaves, mask, cot = make_case(3, 3, 3, 16, 8, "right", seed=5)
    low = {k: (None if v is None else v.bfloat16()) for k, v in leaves.items()}
    got = run(low, mask, cot, "triton", "steps", cell_clip=1.0, proj_clip=1.0)
    want = run(leaves, mask, cot, "reference", "autograd", cell_clip=1.0, proj_clip=1.0)
    assert got["y"].dtype == got["grad weight_hh"].dtype == torch.bfloat16
    torch.testing.assert_close(got["y"].float().cpu(), want["y"].cpu(), atol=5e-2, rtol=5e-2)


# ----------------------------------------------------------------------------------------------------------------
# Dispatch: which schedule a call takes
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch):
    """The schedules ``bilstm`` calls, by name, each still computing its result."""
    calls = []
    for name in ("bilstm_triton_steps", "bilstm_stepwise", "bilstm_native", "bilstm_loop"):
        real = getattr(op, name)
        monkeypatch.setattr(op, name, lambda *a, _n=name, _f=real, **k: calls.append(_n) or _f(*a, **k))
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    return calls


def small_args(P, square=False):
    leaves, mask, _ = make_case(2, 3, 3, 16, 16 if square else P, "right", seed=2)
    return [None if leaves[k] is None else leaves[k].to(DEVICE) for k in NAMES[:5]], mask.to(DEVICE)


@pytest.mark.parametrize(
    "P, square, clips, expected",
    [
        (8, False, dict(cell_clip=1.0, proj_clip=1.0), "bilstm_triton_steps"),  # ELMo's clipped LSTMP
        (None, False, dict(cell_clip=1.0), "bilstm_triton_steps"),  # a clipped LSTM
        (16, True, {}, "bilstm_triton_steps"),  # a square projection: torch.lstm cannot
        (8, False, {}, "bilstm_native"),  # cuDNN's LSTMP
        (None, False, {}, "bilstm_native"),  # cuDNN
    ],
    ids=["clipped lstmp", "clipped lstm", "square lstmp", "lstmp", "lstm"],
)
def test_auto_on_cuda_takes_the_steps_schedule_for_what_cudnn_cannot_run(monkeypatch, recorded, P, square, clips,
                                                                         expected):
    """backend="auto" as on CUDA tensors (``dispatch.triton_device`` answering as it does for them)."""
    monkeypatch.setattr(dispatch, "triton_device", lambda tensor: True)
    args, mask = small_args(P, square)
    op.bilstm(*args, mask, **clips)
    assert recorded == [expected]


def test_auto_on_this_device(recorded):
    """backend="auto" for a clipped LSTMP: the steps schedule on CUDA, the loop elsewhere."""
    args, mask = small_args(8)
    op.bilstm(*args, mask, cell_clip=1.0, proj_clip=1.0)
    assert recorded == (["bilstm_triton_steps"] if ON_GPU else ["bilstm_stepwise"])


@pytest.mark.parametrize(
    "backend, form, expected",
    [("triton", "auto", "bilstm_triton_steps"), ("triton", "steps", "bilstm_triton_steps"),
     ("auto", "steps", "bilstm_triton_steps"), ("auto", "loop", "bilstm_stepwise"),
     ("auto", "autograd", "bilstm_loop")],
)
def test_forms_name_their_schedule(recorded, backend, form, expected):
    args, mask = small_args(8)
    op.bilstm(*args, mask, cell_clip=1.0, proj_clip=1.0, backend=backend, form=form)
    assert recorded == [expected]


@pytest.mark.parametrize(
    "backend, form, match",
    [("reference", "steps", r"form='steps' is a Triton schedule; backend='reference' takes form='auto', 'loop'"),
     ("triton", "loop", r"form='loop' is a reference-backend form; backend='triton' takes form='auto' or 'steps'"),
     ("triton", "fused", r"form must be one of \('auto', 'loop', 'native', 'autograd'\), got 'fused' "
                         r"\(backend='triton': one of \('auto', 'steps'\)\)")],
)
def test_a_form_of_the_other_backend_is_a_clear_error(backend, form, match):
    args, mask = small_args(8)
    with pytest.raises(ValueError, match="^bilstm: " + match):
        bilstm(*args, mask, cell_clip=1.0, backend=backend, form=form)


@pytest.mark.parametrize("backend, form", [("triton", "auto"), ("triton", "steps"), ("auto", "steps")])
def test_cpu_tensors_without_the_interpreter_are_a_clear_error(monkeypatch, recorded, backend, form):
    """As every op's Triton backend: a ValueError that names the fix, before any schedule runs (not Triton's own
    error about its drivers from inside a launch)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    leaves, mask, _ = make_case(2, 3, 3, 16, 8, "right", seed=2)
    args = [leaves[k] for k in NAMES[:5]]  # on the CPU
    with pytest.raises(ValueError, match=r"^bilstm: backend='triton' needs CUDA tensors \(or TRITON_INTERPRET=1"):
        bilstm(*args, mask, cell_clip=1.0, backend=backend, form=form)
    assert recorded == []


def test_exporting_runs_one_scan_whatever_the_form(monkeypatch, recorded):
    """While torch.export traces, form "steps" too runs ``reference.bilstm_scan`` (an exported graph of any length)."""
    scans = []
    real = reference.bilstm_scan
    monkeypatch.setattr(reference, "bilstm_scan", lambda *a: scans.append(1) or real(*a))
    monkeypatch.setattr(dispatch, "exporting", lambda: True)
    args, mask = small_args(8)
    y, _ = bilstm(*args, mask, cell_clip=1.0, proj_clip=1.0, backend="triton", form="steps")
    assert scans == [1] and recorded == []
    monkeypatch.setattr(dispatch, "exporting", lambda: False)
    torch.testing.assert_close(y, bilstm(*args, mask, cell_clip=1.0, proj_clip=1.0, backend="triton",
                                         form="steps")[0], **TOL[torch.float32])


# ----------------------------------------------------------------------------------------------------------------
# torch.library: the ops, and torch.compile of the public entry point
# ----------------------------------------------------------------------------------------------------------------

CLIPS = dict(cell_clip=0.8, proj_clip=0.3)


def test_ops_are_torch_library_ops():
    """Both ops pass torch.library.opcheck (schema, fake tensors against the real outputs, the autograd registration,
    and the forward op through AOT autograd with dynamic shapes against eager), with and without saving for a
    backward pass and with and without the weight gradients. The buffers stay NaN-filled: the kernels write every
    element of every output, the saved activations past a row's length included."""
    leaves, mask, cot = make_case(3, 3, 3, 20, 12, "holes", seed=7)
    check_bilstm_ops("bilstm_steps", leaves, mask, cot, CLIPS, DEVICE)


def test_compiles_without_graph_breaks():
    """``bilstm(..., backend="triton", form="steps")`` under torch.compile(fullgraph=True): no graph break; outputs,
    final state and every gradient equal to eager and within 1e-5 of the autograd loop."""
    leaves, mask, cot = make_case(3, 4, 3, 20, 12, "holes", seed=8)
    mask = mask.to(DEVICE)

    def f(x, weight_ih, weight_hh, bias, weight_proj, h0, c0, backend="triton", form="steps"):
        y, (h_n, c_n) = bilstm(x, weight_ih, weight_hh, bias, weight_proj, mask, (h0, c0), backend=backend,
                               form=form, **CLIPS)
        return y, h_n, c_n

    inputs = [leaves[k].to(DEVICE) for k in NAMES]
    got = check_compiled_equals_eager(f, inputs, cot, NAMES)
    assert_same(got, outputs_and_grads(f, inputs, cot, NAMES, backend="reference", form="autograd"), torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# CUDA graphs (GPU only)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a CUDA device")
def test_cuda_graphed_steps_match_the_plain_ones(monkeypatch):
    """With ``CUDA_GRAPHS`` on, the first call of a shape captures, later ones replay: equal to the ungraphed loop
    (and the autograd loop) for different inputs of one shape, with two forward passes before their backward passes
    (each keeps its own saved tensors), with and without a projection; at most ``CUDA_GRAPH_CACHE_SIZE`` graphs."""
    monkeypatch.setattr(triton_steps, "DEBUG_FILL", None)
    monkeypatch.setattr(triton_steps, "TILE_ROWS", None)
    monkeypatch.setattr(triton_steps, "TILE_COLS", None)
    triton_steps.clear_cuda_graphs()
    cases = [make_case(6, 9, 16, 64, P, "holes", seed=seed) for P in (32, None) for seed in (20, 21)]
    clips = dict(cell_clip=0.8, proj_clip=0.3)

    def both(cases, graphed):
        monkeypatch.setattr(triton_steps, "CUDA_GRAPHS", graphed)
        runs = []
        for leaves, mask, cot in cases:  # every forward pass first, then the backward passes
            args = {k: (None if v is None else v.to(DEVICE).requires_grad_()) for k, v in leaves.items()}
            kw = clips if leaves["weight_proj"] is not None else dict(cell_clip=0.8)
            y, (h_n, c_n) = bilstm(*[args[k] for k in NAMES[:5]], mask.to(DEVICE), (args["h0"], args["c0"]),
                                   backend="triton", form="steps", **kw)
            runs.append((args, (y, h_n, c_n), cot))
        results = []
        for args, outs, cot in runs:
            names = [k for k in NAMES if args[k] is not None]
            loss = sum((a * b.to(DEVICE)).sum() for a, b in zip(outs, cot))
            grads = torch.autograd.grad(loss, [args[k] for k in names])
            results.append({**dict(zip(("y", "h_n", "c_n"), outs)), **dict(zip(names, grads))})
        return results

    plain = both(cases, False)
    assert triton_steps.cuda_graph_count() == 0
    for attempt in range(2):  # the first captures (and runs ungraphed on a side stream), the second replays
        graphed = both(cases, True)
        assert triton_steps.cuda_graph_count() == 4  # forward and backward, with and without a projection
        for got, want in zip(graphed, plain):
            for name in want:
                torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-6,
                                           msg=lambda m: f"{name} (call {attempt}): {m}")
    leaves, mask, cot = cases[0]
    want = run(leaves, mask, cot, "reference", "autograd", **clips)
    for name, value in want.items():
        key = name.removeprefix("grad ")
        torch.testing.assert_close(plain[0][key], value, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    monkeypatch.setattr(triton_steps, "CUDA_GRAPH_CACHE_SIZE", 1)
    both(cases[:1], True)
    assert triton_steps.cuda_graph_count() == 1
    triton_steps.clear_cuda_graphs()
