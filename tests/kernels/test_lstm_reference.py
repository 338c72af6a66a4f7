"""The bidirectional LSTM(P) op on its PyTorch schedules ("loop", "native", "autograd") against independent oracles.

Oracles: ``torch.nn.LSTM(bidirectional=True)`` on packed sequences (outputs and final states, with and without
``proj_size``) and, for clipping, a row-by-row, step-by-step transcription of the equations written here; gradcheck
in fp64 for the step loops' gradients (the written-out backward of "loop" and autograd's through "autograd"); the
schedules against each other for gradients and padding layouts.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bizoo.kernels import dispatch
from bizoo.kernels.lstm import bilstm, input_gates, reading_orders

TOL = dict(atol=1e-5, rtol=1e-5)


def lstm_weights(m: torch.nn.LSTM):
    """The op's (2, …) weights from a one-layer bidirectional ``nn.LSTM``."""
    pair = lambda name: torch.stack([getattr(m, f"{name}_l0"), getattr(m, f"{name}_l0_reverse")])  # noqa: E731
    proj = pair("weight_hr") if m.proj_size else None
    return pair("weight_ih"), pair("weight_hh"), pair("bias_ih") + pair("bias_hh"), proj


def torch_packed(m, x, lengths, state=None):
    """nn.LSTM over packed right-padded rows: y (B, L, 2, P) (zeros at padding), h_n (2, B, P), c_n (2, B, H)."""
    B, L = x.shape[:2]
    packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = m(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
    out = out * (torch.arange(L)[None, :] < lengths[:, None])[..., None]
    return out.view(B, L, 2, -1), h_n, c_n


def clipped_oracle(x, w_ih, w_hh, b, w_p, mask, state, cell_clip, proj_clip):
    """Each row and direction alone, one real token at a time, in fp64: y (B, L, 2, P), h_n, c_n."""
    B, L = x.shape[:2]
    H, P = w_hh.shape[1] // 4, w_hh.shape[2]
    y = torch.zeros(B, L, 2, P, dtype=torch.float64)
    h_n, c_n = torch.zeros(2, B, P, dtype=torch.float64), torch.zeros(2, B, H, dtype=torch.float64)
    for d in range(2):
        for row in range(B):
            positions = [t for t in range(L) if mask[row, t]]
            if d == 1:
                positions = positions[::-1]
            h = state[0][d, row].double() if state else torch.zeros(P, dtype=torch.float64)
            c = state[1][d, row].double() if state else torch.zeros(H, dtype=torch.float64)
            for t in positions:
                inp = x[row, t] if x.dim() == 3 else x[row, t, d]
                z = w_ih[d].double() @ inp.double() + b[d].double() + w_hh[d].double() @ h
                i, f, g, o = z.split(H)
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                c = f * c + i * g
                if cell_clip is not None:
                    c = c.clamp(-cell_clip, cell_clip)
                h = o * torch.tanh(c)
                if w_p is not None:
                    h = w_p[d].double() @ h
                    if proj_clip is not None:
                        h = h.clamp(-proj_clip, proj_clip)
                y[row, t, d] = h
            h_n[d, row], c_n[d, row] = h, c
    return y, h_n, c_n


def random_lengths(B, L, generator):
    lengths = torch.randint(0, L + 1, (B,), generator=generator)
    lengths[0] = L
    return lengths


@pytest.mark.parametrize("form", ["loop", "native", "autograd"])
@pytest.mark.parametrize("proj_size", [0, 3])
def test_matches_torch_lstm_on_packed_rows(form, proj_size):
    torch.manual_seed(0)
    B, L, I, H = 5, 7, 4, 6
    m = torch.nn.LSTM(I, H, batch_first=True, bidirectional=True, proj_size=proj_size)
    x = torch.randn(B, L, I)
    lengths = random_lengths(B, L, torch.Generator().manual_seed(1))
    mask = torch.arange(L)[None, :] < lengths[:, None]
    P = proj_size or H
    state = (torch.randn(2, B, P), torch.randn(2, B, H))
    w_ih, w_hh, b, w_p = lstm_weights(m)
    y, (h_n, c_n) = bilstm(x, w_ih, w_hh, b, w_p, mask, state, backend="reference", form=form)
    ref_y, ref_h, ref_c = torch_packed(m, x, lengths, state)
    torch.testing.assert_close(y, ref_y, **TOL)
    full = lengths > 0  # packing needs one step per row: compare the final states of non-empty rows
    torch.testing.assert_close(h_n[:, full], ref_h[:, full], **TOL)
    torch.testing.assert_close(c_n[:, full], ref_c[:, full], **TOL)
    torch.testing.assert_close(h_n[:, ~full], state[0][:, ~full])  # an empty row keeps its initial state
    torch.testing.assert_close(c_n[:, ~full], state[1][:, ~full])


@pytest.mark.parametrize("form", ["loop", "autograd"])
@pytest.mark.parametrize("layout", ["right", "left", "holes"])
@pytest.mark.parametrize("clips", [(None, None), (0.7, None), (0.7, 0.3)])
def test_loops_with_projection_and_clipping_match_the_step_by_step_oracle(layout, clips, form):
    torch.manual_seed(1)
    B, L, I, H, P = 4, 6, 3, 5, 3
    x = torch.randn(B, L, 2, I)  # one input per direction, as in ELMo's stacks
    w_ih, w_hh, b, w_p = torch.randn(2, 4 * H, I), torch.randn(2, 4 * H, P), torch.randn(2, 4 * H), torch.randn(2, P, H)
    lengths = torch.tensor([6, 3, 0, 5])
    mask = torch.arange(L)[None, :] < lengths[:, None]
    if layout == "left":
        mask = mask.flip(1)
    elif layout == "holes":
        mask = torch.rand(B, L, generator=torch.Generator().manual_seed(2)) < 0.6
    state = (torch.randn(2, B, P), torch.randn(2, B, H))
    y, (h_n, c_n) = bilstm(x, w_ih, w_hh, b, w_p, mask, state, cell_clip=clips[0], proj_clip=clips[1],
                           backend="reference", form=form)
    ref = clipped_oracle(x, w_ih, w_hh, b, w_p, mask, state, *clips)
    for got, want in zip((y, h_n, c_n), ref):
        torch.testing.assert_close(got.double(), want, **TOL)
    if clips[0] is not None:  # the clip was reached, so this tested it
        assert (c_n.abs() == clips[0]).any()


@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("clips, projected", [((None, None), True), ((None, None), False), ((0.7, None), True),
                                              ((0.7, None), False), ((0.7, 0.3), True)])  # a projection clip needs one
def test_the_loop_in_inference_is_its_training_forward(clips, projected, with_state):
    """form "loop" keeps nothing for a backward pass when nothing asks for a gradient (inference): the same steps,
    so its outputs and final state equal, bit for bit, those of the forward pass that keeps them (inputs that require
    gradients), and of the same call under torch.no_grad."""
    torch.manual_seed(3)
    B, L, I, H = 4, 7, 3, 5
    P = 3 if projected else H
    leaves = [torch.randn(B, L, 2, I), torch.randn(2, 4 * H, I) * 2, torch.randn(2, 4 * H, P) * 2,
              torch.randn(2, 4 * H), torch.randn(2, P, H) * 2 if projected else None, torch.randn(2, B, P),
              torch.randn(2, B, H)]
    mask = torch.rand(B, L, generator=torch.Generator().manual_seed(6)) < 0.7
    mask[2] = False  # a row without real tokens

    def run(requires_grad):
        args = [t if t is None else t.clone().requires_grad_(requires_grad) for t in leaves]
        state = (args[5], args[6]) if with_state else None
        y, (h, c) = bilstm(*args[:5], mask, state, cell_clip=clips[0], proj_clip=clips[1], backend="reference",
                           form="loop")
        return y, h, c

    training = run(True)
    assert training[0].grad_fn is not None  # the forward pass that keeps what its backward reads
    inference = run(False)
    assert inference[0].grad_fn is None
    with torch.no_grad():
        no_grad = run(True)
    for got in (inference, no_grad):
        for a, b in zip(got, training):
            assert torch.equal(a, b.detach())
    if clips[0] is not None:  # the clip was reached
        assert (training[2].abs() == clips[0]).any()


@pytest.mark.parametrize("form", ["loop", "autograd"])
def test_loop_gradients_pass_gradcheck(form):
    torch.manual_seed(2)
    B, L, I, H, P = 2, 4, 2, 3, 2
    dd = dict(dtype=torch.float64, requires_grad=True)
    x = torch.randn(B, L, I, **dd)
    w_ih, w_hh, b = torch.randn(2, 4 * H, I, **dd), torch.randn(2, 4 * H, P, **dd), torch.randn(2, 4 * H, **dd)
    w_p = torch.randn(2, P, H, **dd)
    h0, c0 = torch.randn(2, B, P, **dd), torch.randn(2, B, H, **dd)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 0]])

    def f(*args):
        y, (h, c) = bilstm(*args[:5], mask, (args[5], args[6]), cell_clip=1.5, proj_clip=0.8, backend="reference",
                           form=form)
        return y, h, c

    assert torch.autograd.gradcheck(f, (x, w_ih, w_hh, b, w_p, h0, c0))


@pytest.mark.parametrize("clips", [(None, None), (0.6, 0.4)])
def test_the_written_out_backward_equals_autograd(clips):
    """form "loop" (its own backward pass through time) against "autograd" on one batch: gradients of everything."""
    torch.manual_seed(4)
    B, L, I, H, P = 4, 6, 3, 5, 3
    leaves = [torch.randn(B, L, 2, I), torch.randn(2, 4 * H, I), torch.randn(2, 4 * H, P), torch.randn(2, 4 * H),
              torch.randn(2, P, H), torch.randn(2, B, P), torch.randn(2, B, H)]
    mask = torch.rand(B, L, generator=torch.Generator().manual_seed(5)) < 0.7
    mask[2] = False  # a row without real tokens
    cot = [torch.randn(B, L, 2, P), torch.randn(2, B, P), torch.randn(2, B, H)]
    grads = []
    for form in ("loop", "autograd"):
        args = [t.clone().requires_grad_() for t in leaves]
        y, (h, c) = bilstm(*args[:5], mask, (args[5], args[6]), cell_clip=clips[0], proj_clip=clips[1],
                           backend="reference", form=form)
        loss = sum((a * b).sum() for a, b in zip((y, h, c), cot))
        grads.append(torch.autograd.grad(loss, args))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("form", ["loop", "auto"])
def test_the_written_out_backward_refuses_a_double_backward(form):
    """Under create_graph=True form "loop" (what "auto" runs for a clipped LSTMP on a CPU) gives the first-order
    gradients of "autograd"; differentiating them again (a gradient penalty on the input) is a clear error, not the
    second derivative of the few saved tensors autograd could follow (the weights only, not the saved gates)."""
    torch.manual_seed(6)
    B, L, I, H, P = 2, 4, 3, 4, 3
    leaves = [torch.randn(B, L, I), torch.randn(2, 4 * H, I), torch.randn(2, 4 * H, P), torch.randn(2, 4 * H),
              torch.randn(2, P, H)]
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    grads = {}
    for name in (form, "autograd"):
        x, *weights = [t.clone().requires_grad_() for t in leaves]
        y, _ = bilstm(x, *weights, mask, cell_clip=2.0, proj_clip=1.0, backend="reference", form=name)
        (grads[name],) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        penalty = grads[name].square().sum()
        if name == "autograd":
            penalty.backward()  # autograd's double backward: the weights get a second-order gradient
            assert weights[1].grad.abs().sum() > 0
        else:
            with pytest.raises(RuntimeError, match=r"bilstm form='loop'.*double backward.*form='autograd'"):
                penalty.backward()
    torch.testing.assert_close(grads[form], grads["autograd"], **TOL)


def test_native_and_loop_agree_in_gradients():
    torch.manual_seed(3)
    B, L, I, H, P = 3, 5, 4, 6, 4
    leaves = [torch.randn(B, L, I), torch.randn(2, 4 * H, I), torch.randn(2, 4 * H, P), torch.randn(2, 4 * H),
              torch.randn(2, P, H), torch.randn(2, B, P), torch.randn(2, B, H)]
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 0], [1, 0, 1, 0, 1]])
    cot = [torch.randn(B, L, 2, P), torch.randn(2, B, P), torch.randn(2, B, H)]
    grads = []
    for form in ("loop", "native"):
        args = [t.clone().requires_grad_() for t in leaves]
        y, (h, c) = bilstm(*args[:5], mask, (args[5], args[6]), backend="reference", form=form)
        loss = sum((a * b).sum() for a, b in zip((y, h, c), cot))
        grads.append(torch.autograd.grad(loss, args))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **TOL)


def test_reading_orders_and_input_gates():
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]])
    order, lengths = reading_orders(mask, 2, 5, "cpu")
    assert lengths.tolist() == [3, 2]
    assert order[0].tolist() == [[1, 2, 4, 0, 3], [0, 1, 2, 3, 4]]
    assert order[1].tolist() == [[4, 2, 1, 0, 3], [1, 0, 2, 3, 4]]
    x = torch.randn(2, 5, 3)
    w, b = torch.randn(2, 8, 3), torch.randn(2, 8)
    shared = input_gates(x, w, b)  # (B, L, 2, 4H)
    split = input_gates(torch.stack([x, x], dim=2), w, b)
    torch.testing.assert_close(shared, split, **TOL)
    torch.testing.assert_close(shared[:, :, 1], x @ w[1].T + b[1], **TOL)


def test_steps_gathered_into_reading_order_and_scattered_back():
    """``gather_steps`` / ``scatter_steps`` against their definition, element by element (holes, left padding, an
    empty row): out[d, b, s] = values[b, order[d, b, s], d] and back; both results contiguous, and the gradient of
    each is the other's move."""
    from bizoo.kernels.lstm.reference import gather_steps, scatter_steps

    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 1]])
    B, L, F = 4, 5, 3
    order, _ = reading_orders(mask, B, L, "cpu")
    values = torch.randn(B, L, 2, F, requires_grad=True)
    steps = gather_steps(values, order)  # (2, B, L, F)
    expected = torch.stack([torch.stack([values[b, order[d, b]][:, d] for b in range(B)]) for d in range(2)])
    assert torch.equal(steps, expected) and steps.is_contiguous()
    into = torch.full_like(steps, float("nan"))  # a preallocated buffer (the Triton step schedule's)
    assert gather_steps(values.detach(), order, out=into) is into and torch.equal(into, expected)
    back = scatter_steps(steps, order)  # (B, L, 2, F)
    assert torch.equal(back, values) and back.is_contiguous()
    cotangent = torch.randn(2, B, L, F)
    (grad,) = torch.autograd.grad(steps, values, cotangent)
    assert torch.equal(grad, scatter_steps(cotangent, order))


@settings(max_examples=25, deadline=None, database=None, derandomize=True)
@given(
    B=st.integers(1, 4), L=st.integers(1, 7), H=st.integers(1, 5), proj=st.booleans(),
    side=st.sampled_from(["right", "left", "holes"]), seed=st.integers(0, 2**16),
)
def test_pad_invariance_and_schedules_agree(B, L, H, proj, side, seed):
    """A row's outputs do not depend on its padding or its batch-mates, and both schedules agree."""
    g = torch.Generator().manual_seed(seed)
    proj = proj and H > 1  # torch.lstm projects only to fewer outputs than cells
    I, P = 3, (H - 1 if proj else H)
    x = torch.randn(B, L, I, generator=g)
    w_ih, w_hh = torch.randn(2, 4 * H, I, generator=g), torch.randn(2, 4 * H, P, generator=g)
    b = torch.randn(2, 4 * H, generator=g)
    w_p = torch.randn(2, P, H, generator=g) if proj else None
    if side == "holes":
        mask = torch.rand(B, L, generator=g) < 0.6
    else:
        lengths = torch.randint(0, L + 1, (B,), generator=g)
        mask = torch.arange(L)[None, :] < lengths[:, None]
        mask = mask.flip(1) if side == "left" else mask
    y_loop, (h_loop, c_loop) = bilstm(x, w_ih, w_hh, b, w_p, mask, backend="reference", form="loop")
    y_nat, (h_nat, c_nat) = bilstm(x, w_ih, w_hh, b, w_p, mask, backend="reference", form="native")
    for a, c in ((y_loop, y_nat), (h_loop, h_nat), (c_loop, c_nat)):
        torch.testing.assert_close(a, c, **TOL)
    assert (y_loop[~mask] == 0).all()
    for row in range(B):  # alone, unpadded
        real = mask[row]
        alone, (h1, c1) = bilstm(x[row : row + 1, real], w_ih, w_hh, b, w_p, backend="reference", form="loop")
        torch.testing.assert_close(alone[0], y_loop[row, real], **TOL)
        torch.testing.assert_close(h1[:, 0], h_loop[:, row], **TOL)
        torch.testing.assert_close(c1[:, 0], c_loop[:, row], **TOL)


def padding_poisoned_and_zeroed(seed=3):
    """Leaves of a small LSTM with a mask (right and left padding, a hole, an empty row), x once with NaN and inf at
    the padded positions and once with zeros there, and the cotangents of y, h_n and c_n."""
    g = torch.Generator().manual_seed(seed)
    B, L, I, H = 4, 5, 3, 4
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:], mask[1, :2], mask[2, 2], mask[3] = False, False, False, False
    x = torch.randn(B, L, I, generator=g)
    poison = torch.tensor([float("nan"), float("inf"), -float("inf")]).repeat(B * L)[: B * L].view(B, L, 1)
    leaves = (torch.randn(2, 4 * H, I, generator=g), torch.randn(2, 4 * H, H, generator=g),
              torch.randn(2, 4 * H, generator=g), torch.randn(2, B, H, generator=g), torch.randn(2, B, H, generator=g))
    cotangents = (torch.randn(B, L, 2, H, generator=g), torch.randn(2, B, H, generator=g),
                  torch.randn(2, B, H, generator=g))
    return torch.where(mask[..., None], x, poison), torch.where(mask[..., None], x, 0.0), leaves, mask, cotangents


def outputs_and_gradients(x, leaves, mask, cotangents, final_state, **kwargs):
    """y, h_n, c_n (when asked for) and the gradients of x and of every leaf."""
    x = x.clone().requires_grad_()
    leaves = [t.clone().requires_grad_() for t in leaves]
    w_ih, w_hh, b, h0, c0 = leaves
    y, final = bilstm(x, w_ih, w_hh, b, None, mask, (h0, c0), final_state=final_state, **kwargs)
    outs = (y, *final) if final_state else (y,)
    loss = sum((out * cot).sum() for out, cot in zip(outs, cotangents))
    return [*outs, *torch.autograd.grad(loss, [x, *leaves])]


@pytest.mark.parametrize("final_state", [True, False])
@pytest.mark.parametrize("form", ["loop", "native", "autograd"])
def test_padding_contents_reach_no_output_and_no_gradient(form, final_state):
    """NaN and inf at the padded positions of x: outputs and every gradient those of zeros there (all forms compute
    W_ih x at every position, and torch.lstm runs on over the padding after a row's real steps)."""
    poisoned, zeroed, leaves, mask, cotangents = padding_poisoned_and_zeroed()
    got = outputs_and_gradients(poisoned, leaves, mask, cotangents, final_state, backend="reference", form=form)
    want = outputs_and_gradients(zeroed, leaves, mask, cotangents, final_state, backend="reference", form=form)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **TOL)


def test_empty_inputs():
    w_ih, w_hh = torch.randn(2, 8, 3), torch.randn(2, 8, 2)
    for form in ("loop", "native"):
        y, (h, c) = bilstm(torch.randn(2, 0, 3), w_ih, w_hh, form=form, backend="reference")
        assert y.shape == (2, 0, 2, 2) and (h == 0).all() and (c == 0).all()
        y, (h, c) = bilstm(torch.randn(0, 4, 3), w_ih, w_hh, form=form, backend="reference")
        assert y.shape == (0, 4, 2, 2) and h.shape == (2, 0, 2)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x=torch.randn(2, 3)), r"x must be \(batch, length, features\)"),
        (dict(x=torch.randint(0, 3, (2, 3, 3))), r"x must be a floating-point tensor"),
        (dict(weight_ih=torch.randn(2, 8, 4)), r"weight_ih must be \(2, 4·cells, 3\)"),
        (dict(weight_ih=torch.randn(2, 7, 3)), r"weight_ih must be"),
        (dict(weight_hh=torch.randn(2, 8, 3)), r"weight_hh must be \(2, 8, 2\)"),
        (dict(bias=torch.randn(8)), r"bias must be \(2, 8\)"),
        (dict(weight_proj=torch.randn(2, 3, 2)), r"weight_proj must be \(2, outputs, 2\)"),
        (dict(attention_mask=torch.ones(2, 4)), r"attention_mask must be \(batch, length\) = \(2, 3\)"),
        (dict(attention_mask=torch.full((2, 3), 2)), r"attention_mask must hold only 0"),
        (dict(initial_state=(torch.zeros(2, 2, 2),)), r"initial_state must be \(h_0, c_0\)"),
        (dict(initial_state=(torch.zeros(2, 2, 3), torch.zeros(2, 2, 2))), r"initial_state must be \(h_0 \(2, 2, 2\)"),
        (dict(cell_clip=-1.0), r"cell_clip must be a positive number"),
        (dict(proj_clip=1.0), r"proj_clip needs a projection"),
        (dict(form="cudnn"), r"form must be one of"),
        (dict(weight_hh=torch.randn(2, 8, 2), weight_proj=torch.randn(2, 2, 2), form="native"), r"fewer outputs"),
        (dict(cell_clip=1.0, form="native"), r"form='native' \(torch.lstm\) cannot clip"),
        (dict(backend="fast"), r"backend must be one of"),
    ],
)
def test_bad_inputs_are_clear_errors(change, message):
    args = dict(x=torch.randn(2, 3, 3), weight_ih=torch.randn(2, 8, 3), weight_hh=torch.randn(2, 8, 2))
    args.update(change)
    with pytest.raises(ValueError, match=message):
        bilstm(**args)


# ----------------------------------------------------------------------------------------------------------------
# The scan: what a graph traced by torch.export (and so ONNX) runs, for any length
# ----------------------------------------------------------------------------------------------------------------


def scan_inputs(clipped: bool, seed=5):
    """Inputs of ``bilstm`` with wide weights (the gates saturate and the clips bite), padding right, left and in
    holes, an empty row, and an initial state."""
    g = torch.Generator().manual_seed(seed)
    B, L, I, H, P = 4, 9, 3, 5, (3 if clipped else 5)
    x = torch.randn(B, L, 2, I, generator=g, dtype=torch.float64)
    w_ih, w_hh = torch.randn(2, 4 * H, I, generator=g).double(), torch.randn(2, 4 * H, P, generator=g).double()
    b = torch.randn(2, 4 * H, generator=g).double()
    w_p = torch.randn(2, P, H, generator=g).double() if clipped else None
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 6:], mask[1, :3], mask[2, 2:4], mask[3] = False, False, False, False
    state = torch.randn(2, B, P, generator=g).double(), torch.randn(2, B, H, generator=g).double()
    clips = dict(cell_clip=0.6, proj_clip=0.5) if clipped else {}
    return (x, w_ih, w_hh, b, w_p, mask, state), clips


@pytest.mark.parametrize("clipped", [False, True], ids=["lstm", "clipped-lstmp"])
def test_scan_runs_the_steps_of_the_loop(clipped):
    """``bilstm_scan`` (the loop's step function run by torch's scan) gives the loop's outputs and final states."""
    from bizoo.kernels.lstm import reference

    (x, w_ih, w_hh, b, w_p, mask, state), clips = scan_inputs(clipped)
    order, lengths = reading_orders(mask, *mask.shape, "cpu")
    gates = input_gates(x, w_ih, b)
    args = (gates, w_hh, w_p, order, lengths, state, clips.get("cell_clip"), clips.get("proj_clip"))
    y_loop, (h_loop, c_loop) = reference.bilstm_loop(*args)
    y_scan, (h_scan, c_scan) = reference.bilstm_scan(*args)
    assert y_loop.abs().max() > 0.3 and (not clipped or c_loop[:, :3].abs().max() == 0.6)  # clips reached
    for got, want in ((y_scan, y_loop), (h_scan, h_loop), (c_scan, c_loop)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form, clipped", [("native", False), ("autograd", False), ("autograd", True), ("auto", True)],
                         ids=["native-lstm", "autograd-lstm", "autograd-clipped-lstmp", "stepwise-clipped-lstmp"])
def test_while_exporting_the_reference_forms_run_the_scan(monkeypatch, form, clipped):
    """While torch.export traces, the native form (torch.lstm would be unrolled for the traced length or keep it in
    its traced output shape; it cannot clip) and the autograd form run ``bilstm_scan``: the eager results, final
    states included."""
    from bizoo.kernels.lstm import reference

    inputs, clips = scan_inputs(clipped, seed=6)
    want = bilstm(*inputs, backend="reference", form=form, **clips)
    calls = []
    scan = reference.bilstm_scan
    spy = lambda *a: calls.append(a) or scan(*a)  # noqa: E731
    monkeypatch.setattr(reference, "bilstm_scan", spy)
    monkeypatch.setattr(dispatch, "exporting", lambda: True)
    got = bilstm(*inputs, backend="reference", form=form, **clips)
    assert len(calls) == 1
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
