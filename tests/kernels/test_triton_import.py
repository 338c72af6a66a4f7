"""Where Triton cannot run bizoo's kernels, ``import bizoo`` still works and every op runs its reference; where it
can, the Triton backend is really there (so that the Triton tests cannot skip for a broken import).

Triton releases before 3.4 build an autotuner's benchmarker when a kernel is decorated, which needs a GPU driver: on a
machine without one, every ``@triton.autotune`` raises ``RuntimeError: 0 active drivers`` (seen with torch 2.7.1 and
its triton 3.3.1 on a CPU machine, where ``import bizoo`` failed with it). The first test reproduces that failure
with the installed Triton by making ``triton.autotune`` raise it, in a fresh interpreter.
"""

import os
import subprocess
import sys

import pytest

from bizoo.kernels import crf, dispatch, lion, lstm, ssm

try:
    import triton
except ImportError:
    triton = None

needs_triton = pytest.mark.skipif(triton is None, reason="triton is not installed")

OLD_TRITON_ON_A_CPU = r"""
import triton

def autotune(*args, **kwargs):  # what Triton < 3.4 does without a GPU driver
    raise RuntimeError("0 active drivers ([]). There should only be one.")

triton.autotune = autotune

import torch
from transformers import AutoModel

import bizoo
from bizoo.kernels import crf, dispatch, lion, lstm, ssm
from bizoo.kernels.lion import lion_attention

assert (lion.lion_attention_triton, ssm.bidirectional_ssm_triton, crf.triton_crf, lstm.bilstm_triton_steps) == (
    None, None, None, None)
assert not dispatch.triton_available()
q, k, v = (torch.randn(1, 2, 5, 4, generator=torch.Generator().manual_seed(i)) for i in range(3))  # (B, H, L, D)
dispatch.triton_device = lambda tensor: True  # "auto" as on a GPU: it takes the reference all the same
torch.testing.assert_close(lion_attention(q, k, v), lion_attention(q, k, v, backend="reference"))
try:
    lion_attention(q, k, v, backend="triton")
except ValueError as err:
    print("REFUSED:", err)
config = bizoo.LionConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=16)
out = AutoModel.from_config(config)(input_ids=torch.tensor([[5, 6, 7, 0]]), attention_mask=torch.tensor([[1, 1, 1, 0]]))
print("MODEL:", tuple(out.last_hidden_state.shape))
"""


@needs_triton
def test_a_triton_that_cannot_define_kernels_leaves_the_reference_backend():
    env = dict(os.environ)
    env.pop(dispatch.ENV_VAR, None)
    run = subprocess.run([sys.executable, "-c", OLD_TRITON_ON_A_CPU], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "MODEL: (1, 4, 16)" in run.stdout, run.stdout
    refused = [line for line in run.stdout.splitlines() if line.startswith("REFUSED:")]
    assert refused == [
        "REFUSED: lion_attention: backend='triton' needs Triton kernels, which do not import here (triton "
        f"{triton.__version__} cannot define kernels on this machine (0 active drivers ([]). There should only be "
        "one.): Triton releases before 3.4 need a GPU driver for that; bizoo asks for triton>=3.7.1 (with "
        "torch>=2.12), which runs its kernels here under TRITON_INTERPRET=1); use backend='reference' or 'auto'"
    ], run.stdout


@needs_triton
def test_the_triton_kernels_import_with_a_current_triton():
    """With Triton 3.4 or newer (setup.py asks for 3.7.1), or on a GPU, every op has its Triton backend: a failing
    import is an error here, not a reason for the Triton tests to skip."""
    major, minor = (int(part) for part in triton.__version__.split(".")[:2])
    import torch

    if (major, minor) < (3, 4) and not torch.cuda.is_available():
        pytest.skip(f"triton {triton.__version__} cannot define kernels without a GPU driver")
    assert dispatch.triton_unavailable_reason() == ""
    assert None not in (lion.lion_attention_triton, ssm.bidirectional_ssm_triton, crf.triton_crf,
                        lstm.bilstm_triton_steps)
