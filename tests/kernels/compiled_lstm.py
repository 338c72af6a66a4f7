"""What the LSTM op's Triton test files share: a schedule under torch.compile(fullgraph=True) against eager."""

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
