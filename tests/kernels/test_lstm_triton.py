"""The fused Triton bidirectional LSTM(P) against torch.nn.LSTM and the step loop: outputs, final states, gradients.

On a CPU these run under Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is imported). Every output
and scratch buffer is filled with NaN first, so an element a kernel fails to write (or reads before writing) cannot
pass, and the tiles are 16 wide, so that H = 20 spans two cell tiles (the last one partial) and B = 17 two row
blocks. fp32 to 1e-5; bf16 needs a GPU.
"""

import os

import pytest
import torch

triton_lstm = pytest.importorskip("bizoo.kernels.lstm.triton_lstm", reason="triton is not installed")

from bizoo.kernels.lstm import bilstm  # noqa: E402
from tests.kernels.compiled_lstm import check_bilstm_ops, check_compiled_equals_eager, outputs_and_grads  # noqa: E402

ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(
    not (ON_GPU or INTERPRETED), reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1"
)
DEVICE = "cuda" if ON_GPU else "cpu"
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def nan_filled_small_tiles(monkeypatch):
    monkeypatch.setattr(triton_lstm, "DEBUG_FILL", float("nan"))
    monkeypatch.setattr(triton_lstm, "TILE", 16)


def make_case(B, L, I, H, P, layout, per_direction=False, state=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, 2, I, generator=g) if per_direction else torch.randn(B, L, I, generator=g)
    Pout = P or H
    leaves = {
        "x": x,
        "weight_ih": torch.randn(2, 4 * H, I, generator=g) * 0.4,
        "weight_hh": torch.randn(2, 4 * H, Pout, generator=g) * 0.4,
        "bias": torch.randn(2, 4 * H, generator=g) * 0.2,
        "weight_proj": torch.randn(2, Pout, H, generator=g) * 0.6 if P else None,
        "h0": torch.randn(2, B, Pout, generator=g) if state else None,
        "c0": torch.randn(2, B, H, generator=g) if state else None,
    }
    lengths = torch.randint(0, L + 1, (B,), generator=g)
    lengths[0] = L
    if B > 2:
        lengths[1] = 0  # a row without a real token
    mask = torch.arange(L)[None, :] < lengths[:, None]
    if layout == "left":
        mask = mask.flip(1)
    elif layout == "holes":
        mask = (torch.rand(B, L, generator=g) < 0.6) & (lengths > 0)[:, None]
    cotangents = (torch.randn(B, L, 2, Pout, generator=g), torch.randn(2, B, Pout, generator=g),
                  torch.randn(2, B, H, generator=g))
    return leaves, mask, cotangents


def run(leaves, mask, cotangents, backend, form="auto", **clips):
    """Outputs, final state and the gradients of every given input, on ``DEVICE``."""
    args = {k: (None if v is None else v.to(DEVICE).requires_grad_()) for k, v in leaves.items()}
    state = None if args["h0"] is None else (args["h0"], args["c0"])
    y, (h_n, c_n) = bilstm(args["x"], args["weight_ih"], args["weight_hh"], args["bias"], args["weight_proj"],
                           mask.to(DEVICE), state, backend=backend, form=form, **clips)
    loss = sum((a * b.to(DEVICE)).sum() for a, b in zip((y, h_n, c_n), cotangents))
    names = [k for k, v in args.items() if v is not None]
    grads = torch.autograd.grad(loss, [args[k] for k in names])
    return {"y": y, "h_n": h_n, "c_n": c_n, **{f"grad {k}": g for k, g in zip(names, grads)}}


def assert_same(got, want):
    for name in want:
        assert not got[name].isnan().any(), f"{name}: NaN (an element was not written)"
        torch.testing.assert_close(got[name].cpu(), want[name].cpu(), **TOL, msg=lambda m: f"{name}: {m}")


CASES = {
    # name: (B, L, I, H, P, layout, per_direction, state, clips)
    "lstm right-padded": (3, 5, 4, 20, None, "right", False, False, {}),
    "lstm two row blocks, holes, initial state": (17, 4, 6, 20, None, "holes", False, True, {}),
    "lstmp left-padded": (4, 5, 3, 20, 12, "left", True, True, {}),
    "lstmp clipped": (5, 6, 5, 20, 12, "holes", True, True, dict(cell_clip=0.8, proj_clip=0.3)),
    "lstm cell clip only": (3, 4, 4, 16, None, "right", False, False, dict(cell_clip=0.5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_gradients_match_the_autograd_loop(case):
    B, L, I, H, P, layout, per_direction, state, clips = CASES[case]
    leaves, mask, cot = make_case(B, L, I, H, P, layout, per_direction, state)
    want = run(leaves, mask, cot, "reference", "autograd", **clips)
    got = run(leaves, mask, cot, "triton", **clips)
    assert_same(got, want)
    assert (got["y"].cpu()[~mask] == 0).all()
    if clips:  # the clips change the result, so the kernels' clipping and its gradient mask were exercised
        unclipped = run(leaves, mask, cot, "reference", "autograd")
        assert (unclipped["y"] - want["y"]).abs().max() > 1e-3
        assert (unclipped["grad weight_hh"] - want["grad weight_hh"]).abs().max() > 1e-3


def test_matches_torch_lstm_bidirectional():
    torch.manual_seed(0)
    B, L, I, H = 5, 6, 7, 24
    m = torch.nn.LSTM(I, H, batch_first=True, bidirectional=True)
    x = torch.randn(B, L, I, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1, 6])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h_ref, c_ref) = m(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
    cot = torch.randn(B, L, 2 * H)
    ref_grads = torch.autograd.grad((out * cot).sum(), [x, m.weight_hh_l0, m.weight_ih_l0_reverse])

    pair = lambda n: torch.stack([getattr(m, f"{n}_l0"), getattr(m, f"{n}_l0_reverse")])  # noqa: E731
    w_ih, w_hh = pair("weight_ih").detach().requires_grad_(), pair("weight_hh").detach().requires_grad_()
    bias = (pair("bias_ih") + pair("bias_hh")).detach()
    mask = torch.arange(L)[None, :] < lengths[:, None]
    xd = x.detach().to(DEVICE).requires_grad_()
    y, (h_n, c_n) = bilstm(xd, w_ih.to(DEVICE), w_hh.to(DEVICE), bias.to(DEVICE), None, mask.to(DEVICE),
                           backend="triton")
    torch.testing.assert_close(y.cpu().reshape(B, L, 2 * H), out.detach(), **TOL)
    torch.testing.assert_close(h_n.cpu(), h_ref.detach(), **TOL)
    torch.testing.assert_close(c_n.cpu(), c_ref.detach(), **TOL)
    grads = torch.autograd.grad((y.reshape(B, L, 2 * H) * cot.to(DEVICE)).sum(), [xd, w_hh, w_ih])
    torch.testing.assert_close(grads[0].cpu(), ref_grads[0], **TOL)
    torch.testing.assert_close(grads[1].cpu()[0], ref_grads[1], **TOL)
    torch.testing.assert_close(grads[2].cpu()[1], ref_grads[2], **TOL)


def test_inference_without_saved_activations_gives_the_same_outputs():
    leaves, mask, _ = make_case(4, 5, 3, 20, 12, "right", state=True, seed=3)
    args = {k: (None if v is None else v.to(DEVICE)) for k, v in leaves.items()}
    kwargs = dict(cell_clip=1.0, proj_clip=0.5)
    with torch.no_grad():
        y, (h, c) = bilstm(*[args[k] for k in ("x", "weight_ih", "weight_hh", "bias", "weight_proj")], mask.to(DEVICE),
                           (args["h0"], args["c0"]), backend="triton", **kwargs)
        y_ref, (h_ref, c_ref) = bilstm(*[args[k] for k in ("x", "weight_ih", "weight_hh", "bias", "weight_proj")],
                                       mask.to(DEVICE), (args["h0"], args["c0"]), backend="reference", **kwargs)
    for a, b in ((y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, **TOL)


def test_auto_takes_the_kernel_for_clipped_lstmp_on_cuda_only(monkeypatch):
    import bizoo.kernels.lstm as op

    calls = []
    monkeypatch.setattr(op, "bilstm_triton", lambda *a: calls.append("triton") or triton_lstm.bilstm_triton(*a))
    steps = op.bilstm_triton_steps
    monkeypatch.setattr(op, "bilstm_triton_steps", lambda *a: calls.append("steps") or steps(*a))
    monkeypatch.delenv("BIZOO_KERNEL_BACKEND", raising=False)
    leaves, mask, _ = make_case(2, 3, 3, 16, 8, "right", per_direction=True)
    args = [leaves[k].to(DEVICE) for k in ("x", "weight_ih", "weight_hh", "bias", "weight_proj")]
    op.bilstm(*args, mask.to(DEVICE), cell_clip=1.0, proj_clip=1.0)
    assert calls == (["steps"] if ON_GPU else [])  # on CUDA the step schedule (kernels/lstm, form "steps")
    calls.clear()
    op.bilstm(*args, mask.to(DEVICE))  # unclipped: cuDNN unless measured slower
    assert calls == []


@pytest.mark.skipif(not ON_GPU, reason="bf16 is checked on a GPU only (the interpreter is wrong for bf16)")
def test_bf16_inputs_on_gpu_stay_close_to_fp32():
    leaves, mask, cot = make_case(32, 64, 64, 128, 64, "right", per_direction=True, state=False, seed=5)
    want = run(leaves, mask, cot, "reference", "autograd", cell_clip=3.0, proj_clip=3.0)
    low = {k: (None if v is None else v.bfloat16()) for k, v in leaves.items()}
    got = run(low, mask, cot, "triton", cell_clip=3.0, proj_clip=3.0)
    assert got["y"].dtype == torch.bfloat16
    torch.testing.assert_close(got["y"].float().cpu(), want["y"].cpu(), atol=3e-2, rtol=3e-2)


# ----------------------------------------------------------------------------------------------------------------
# torch.library: the ops, and torch.compile of the public entry point
# ----------------------------------------------------------------------------------------------------------------

CLIPS = dict(cell_clip=1.5, proj_clip=0.8)


def wide_case(seed=7):
    """An LSTMP with initial state and holes, weights of std 0.5 and inputs of order 1: gates neither saturated nor
    near zero, clips that bite in places (checked in the compile test)."""
    B, L, I, H, P = 5, 6, 5, 20, 12
    leaves, mask, cot = make_case(B, L, I, H, P, "holes", per_direction=True, state=True, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    for name in ("weight_ih", "weight_hh", "weight_proj"):
        leaves[name] = torch.randn(leaves[name].shape, generator=g) * 0.5
    return leaves, mask, cot


def test_ops_are_torch_library_ops(monkeypatch):
    """Both ops pass torch.library.opcheck (schema, fake tensors against the real outputs, autograd registration),
    so torch.compile puts the kernels into its graph; the forward op also through AOT autograd with dynamic shapes
    against eager (which, unlike test_autograd_registration, fails without a registered autograd formula), and
    without saving for a backward pass; the backward op with and without the weight gradients."""
    leaves, mask, cot = wide_case()
    # The saved activations are left unwritten at padding (never read there): zeros, not NaN, in the buffers, so
    # that test_aot_dispatch_dynamic can compare them with eager's. Every other test keeps the NaN fill.
    monkeypatch.setattr(triton_lstm, "DEBUG_FILL", 0.0)
    check_bilstm_ops("bilstm", leaves, mask, cot, CLIPS, DEVICE)


def test_compiles_without_graph_breaks():
    """``bilstm(..., backend="triton")`` under torch.compile(fullgraph=True): no graph break; outputs, final state
    and every gradient equal to eager and within 1e-5 of the autograd loop."""
    leaves, mask, cot = wide_case()
    names = list(leaves)  # x, weight_ih, weight_hh, bias, weight_proj, h0, c0
    mask = mask.to(DEVICE)

    def f(x, weight_ih, weight_hh, bias, weight_proj, h0, c0, backend="triton", form="auto", clips=CLIPS):
        y, (h_n, c_n) = bilstm(x, weight_ih, weight_hh, bias, weight_proj, mask, (h0, c0), backend=backend,
                               form=form, **clips)
        return y, h_n, c_n

    inputs = [leaves[k].to(DEVICE) for k in names]
    got = check_compiled_equals_eager(f, inputs, cot, names)
    want = outputs_and_grads(f, inputs, cot, names, backend="reference", form="autograd")
    for name in want:
        assert want[name].abs().max() > 0.1, name  # of order 1: the comparison is not vacuous
    assert_same(got, want)
    unclipped = f(*inputs, backend="reference", form="autograd", clips={})
    assert (unclipped[0] - want["y"]).abs().max() > 1e-2  # the clips bite
