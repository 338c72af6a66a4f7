"""What the LSTM op's Triton test files share: a schedule under torch.compile(fullgraph=True) against eager, and its
custom ops through torch.library.opcheck."""

import torch


def outputs_and_grads(fn, inputs, cotangents, names, **kwargs) -> dict:
    """``fn(*inputs, **kwargs)``'s outputs (y, h_n, c_n) and the gradients of <outputs, cotangents> with respect to
    every input (named ``names``), computed on fresh leaf copies of ``inputs``."""
    args = [t.clone().requires_grad_() for t in inputs]
    outs = fn(*args, **kwargs)
    loss = sum((a * b.to(a.device)).sum() for a, b in zip(outs, cotangents))
    return {**dict(zip(("y", "h_n", "c_n"), outs)),
            **{f"grad {k}": g for k, g in zip(names, torch.autograd.grad(loss, args))}}


def check_compiled_equals_eager(f, inputs, cotangents, names) -> dict:
    """``f`` compiles with no graph break (torch._dynamo.explain) and, compiled (aot_eager, fullgraph), gives exactly
    eager's outputs and gradients. Returns them, for the caller's comparison with an oracle."""
    explanation = torch._dynamo.explain(f)(*inputs)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    got = outputs_and_grads(compiled, inputs, cotangents, names)
    eager = outputs_and_grads(f, inputs, cotangents, names)
    for name in eager:
        torch.testing.assert_close(got[name], eager[name], rtol=0, atol=0, msg=lambda m: f"{name}: {m}")
    return got


def check_bilstm_ops(name: str, leaves: dict, mask, cotangents, clips: dict, device) -> None:
    """``bizoo::<name>_forward`` and ``_backward`` pass torch.library.opcheck: schema, fake tensors against the real
    outputs, the forward's autograd registration and AOT autograd with dynamic shapes against eager (saving for a
    backward pass), the forward without saving, the backward with and without the weight gradients. ``leaves``: x,
    weight_ih, weight_hh, bias, weight_proj, h0, c0 (CPU tensors, moved to ``device``)."""
    from bizoo.kernels.lstm import input_gates, reading_orders

    t = {k: v.to(device) for k, v in leaves.items()}
    B, L = mask.shape
    order, lengths = reading_orders(mask.to(device), B, L, device)  # (2, B, L), (B,)
    gates = input_gates(t["x"], t["weight_ih"], t["bias"])  # (B, L, 2, 4H)
    inputs = [gates, t["weight_hh"], t["weight_proj"], t["h0"], t["c0"]]  # the differentiable ones
    clip = (clips["cell_clip"], clips["proj_clip"])
    forward = getattr(torch.ops.bizoo, f"{name}_forward").default
    torch.library.opcheck(forward, (*[w.detach().requires_grad_() for w in inputs], order, lengths, *clip, True),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration",
                                      "test_aot_dispatch_dynamic"))
    torch.library.opcheck(forward, (*[w.detach() for w in inputs], order, lengths, None, None, False),
                          test_utils=("test_schema", "test_faketensor"))
    y, _, _, act, cell, m, h_raw = forward(*[w.detach() for w in inputs], order, lengths, *clip, True)
    dy, dh_n, dc_n = (c.to(device) for c in cotangents)
    for need in (True, False):
        torch.library.opcheck(
            getattr(torch.ops.bizoo, f"{name}_backward").default,
            (dy, dh_n, dc_n, y, act, cell, m, h_raw, *[w.detach() for w in inputs[1:]], order, lengths, *clip,
             need, need),
            test_utils=("test_schema", "test_faketensor"),
        )
