"""Bad input at the public boundary of the kernel ops and of the command line: each case is its own test id.

Kernel ops (``bidirectional_ssm``, ``ssm_conv``, ``s4d_kernel``, ``s4d_init``; the CRF ops and the tag-scheme
constraints; ``bilstm``): a ``ValueError`` whose message names the argument and what is allowed, raised by the input
checks; and empty batches, which each op answers with a defined empty result (the SSM refuses an empty sequence,
L = 0, as its kernel has no taps; B = 0 is fine). LION's bad inputs and empty batches are with the rest of its
specification, in ``tests/kernels/test_lion_reference.py``.

Commands (run in-process through their ``main(argv)``): exit code 2 and ``bizoo <command>: error: <what was wrong>``
on stderr, without a traceback, with nothing written, and without training a tokenizer, building a model, starting
a trainer, measuring or uploading (``past_the_checks`` turns each of those steps into a failure).

The bad inputs already covered by tests/kernels and tests/scripts are not repeated here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from bizoo.kernels import crf as crf_ops
from bizoo.kernels import lstm as lstm_ops
from bizoo.kernels import ssm as ssm_ops
from bizoo.kernels.crf import (
    crf_log_likelihood,
    crf_log_partition,
    crf_marginals,
    crf_max_marginals,
    crf_nbest,
    crf_viterbi,
)
from bizoo.kernels.crf.constraints import allowed_transitions, constraint_scores, detect_scheme, is_legal_path
from bizoo.kernels.lstm import bilstm
from bizoo.kernels.ssm import bidirectional_ssm, s4d_init, s4d_kernel, ssm_conv
from bizoo.scripts import (
    bench,
    evaluate_all,
    finetune_glue,
    finetune_ner,
    pretrain,
    push,
    train_tokenizer,
)
from bizoo.scripts.lib import finetuning
from tests.kernels.common import META, backends, with_ids


# ----------------------------------------------------------------------------------------------------------------
# BiGS SSM: bidirectional_ssm, ssm_conv, s4d_kernel, s4d_init
# ----------------------------------------------------------------------------------------------------------------


def _ssm_params(N=4, device=None):
    return (torch.zeros(1, device=device), torch.full((N,), -0.5), torch.arange(N, dtype=torch.float32),
            torch.ones(N, 2))


def _ssm_args(B=2, L=5, H=3, **change):
    args = dict(u_fwd=torch.rand(B, L, H), u_bwd=torch.rand(B, L, H), k_fwd=torch.rand(L), k_bwd=torch.rand(L),
                d_fwd=torch.ones(1), d_bwd=torch.ones(1))
    args.update(change)
    return args


BAD_SSM_INPUTS = [
    ("u-bwd-list", dict(u_bwd=[[0.0]]), r"bidirectional_ssm: u_bwd must have the shape of u_fwd \(2, 5, 3\), got list"),
    ("u-empty-sequence", dict(u_fwd=torch.rand(2, 0, 3), u_bwd=torch.rand(2, 0, 3), k_fwd=torch.rand(0),
                              k_bwd=torch.rand(0)), r"bidirectional_ssm: u_fwd must have a length L >= 1"),
    ("u-bwd-on-another-device", dict(u_bwd=torch.rand(2, 5, 3, device=META)),
     r"bidirectional_ssm: u_bwd is on meta but the inputs are on cpu"),
    ("k-fwd-on-another-device", dict(k_fwd=torch.rand(5, device=META)), r"bidirectional_ssm: k_fwd is on meta"),
    ("k-bwd-int", dict(k_bwd=torch.ones(5, dtype=torch.long)), r"bidirectional_ssm: k_bwd must be a floating-point"),
    ("d-fwd-int", dict(d_fwd=torch.ones(1, dtype=torch.long)), r"bidirectional_ssm: d_fwd must be a floating-point"),
    ("mask-on-another-device", dict(attention_mask=torch.ones(2, 5, device=META)),
     r"bidirectional_ssm: attention_mask is on meta"),
    ("mask-complex", dict(attention_mask=torch.ones(2, 5, dtype=torch.complex64)),
     r"bidirectional_ssm: attention_mask must be bool, integer or float 0/1"),
    ("mask-list", dict(attention_mask=[[1] * 5] * 2),
     r"bidirectional_ssm: attention_mask must be None or a tensor of shape \(B, L\) = \(2, 5\), got list"),
    ("chunk-size-float", dict(form="recurrent", recurrent_params=(_ssm_params(), _ssm_params()), chunk_size=8.0),
     r"bidirectional_ssm: chunk_size must be a positive int, got 8\.0"),
    ("recurrent-params-on-another-device",
     dict(form="recurrent", recurrent_params=(_ssm_params(device=META), _ssm_params())),
     r"bidirectional_ssm: recurrent_params\[0\] \(forward\) log_step is on meta"),
    ("form-none", dict(form=None),
     r"bidirectional_ssm: form must be one of \('fft', 'toeplitz', 'recurrent', 'auto'\)"),
    ("backend-none", dict(backend=None), r"bidirectional_ssm: backend must be one of"),
]


@pytest.mark.parametrize("change, match", with_ids(BAD_SSM_INPUTS))
def test_bad_ssm_input_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match="^" + match):
        bidirectional_ssm(**_ssm_args(**change))


BAD_SSM_PARTS = [
    ("ssm-conv-u-list", lambda: ssm_conv([1.0], torch.rand(5), torch.ones(1)),
     r"ssm_conv: u must be a tensor of shape \(B, L, H\), got list"),
    ("ssm-conv-k-too-short", lambda: ssm_conv(torch.rand(2, 5, 3), torch.rand(4), torch.ones(1), form="fft"),
     r"ssm_conv: k must have shape \(L,\) = \(5,\), got \(4,\)"),
    ("ssm-conv-recurrent-without-params", lambda: ssm_conv(torch.rand(2, 5, 3), None, torch.ones(1), form="recurrent"),
     r"ssm_conv: form='recurrent' needs the SSM parameters: pass params="),
    ("ssm-conv-chunk-size-0", lambda: ssm_conv(torch.rand(2, 5, 3), torch.rand(5), torch.ones(1), form="fft",
                                               chunk_size=0), r"ssm_conv: chunk_size must be a positive int, got 0"),
    ("ssm-conv-mask-shape", lambda: ssm_conv(torch.rand(2, 5, 3), torch.rand(5), torch.ones(1),
                                             torch.ones(5, 2), form="fft"),
     r"ssm_conv: attention_mask must be None or a tensor of shape \(B, L\) = \(2, 5\), got \(5, 2\)"),
    ("s4d-kernel-length-bool", lambda: s4d_kernel(*_ssm_params(), True), r"s4d_kernel: length must be a positive int"),
    ("s4d-kernel-log-step-shape", lambda: s4d_kernel(torch.zeros(2), *_ssm_params()[1:], 5),
     r"s4d_kernel: the parameters log_step must have shape \(\) or \(1,\), got \(2,\)"),
    ("s4d-kernel-c-shape", lambda: s4d_kernel(*_ssm_params()[:3], torch.ones(4, 3), 5),
     r"s4d_kernel: the parameters C must have shape \(N, 2\) = \(4, 2\)"),
    ("s4d-kernel-a-re-2-dims",
     lambda: s4d_kernel(torch.zeros(1), torch.zeros(4, 1), torch.zeros(4), torch.ones(4, 2), 5),
     r"s4d_kernel: the parameters A_re must be a tensor of shape \(N,\), got \(4, 1\)"),
    ("s4d-kernel-no-state", lambda: s4d_kernel(torch.zeros(1), torch.zeros(0), torch.zeros(0), torch.ones(0, 2), 5),
     r"s4d_kernel: the parameters needs a state size N >= 1"),
    ("s4d-kernel-on-another-device", lambda: s4d_kernel(*_ssm_params(device=META), 5),
     r"s4d_kernel: the parameters log_step is on meta but the inputs are on cpu"),
    ("s4d-init-dt-reversed", lambda: s4d_init(4, dt_min=0.1, dt_max=0.01), r"s4d_init: need 0 < dt_min <= dt_max"),
    ("s4d-init-n-negative", lambda: s4d_init(-2), r"s4d_init: N must be a positive int, got -2"),
]


@pytest.mark.parametrize("call, match", with_ids(BAD_SSM_PARTS))
def test_bad_ssm_part_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match="^" + match):
        call()


@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 5, 0)], ids=["B=0", "H=0"])
@pytest.mark.parametrize("form", ["fft", "toeplitz", "recurrent", "auto"])
@pytest.mark.parametrize("backend", backends(ssm_ops.bidirectional_ssm_triton is not None))
def test_ssm_empty_batch_is_an_empty_result(backend, form, shape):
    if backend == "triton" and form == "recurrent":
        pytest.skip("form='recurrent' runs on the reference backend only")
    B, L, H = shape
    params = (_ssm_params(), _ssm_params()) if form == "recurrent" else None
    y_fwd, y_bwd = bidirectional_ssm(**_ssm_args(B, L, H), attention_mask=torch.ones(B, L), form=form,
                                     backend=backend, recurrent_params=params)
    assert y_fwd.shape == y_bwd.shape == shape


# ----------------------------------------------------------------------------------------------------------------
# CRF: the six ops on every backend, and the tag-scheme constraints
# ----------------------------------------------------------------------------------------------------------------

CRF_BACKENDS = [b for b in crf_ops.BACKENDS if b != "triton" or crf_ops.triton_crf is not None]


def _crf_args(B=2, L=3, K=4, **change):
    args = dict(emissions=torch.randn(B, L, K), mask=None, transitions=torch.randn(K, K), start=torch.randn(K),
                end=torch.randn(K))
    args.update(change)
    return args


# (id, change, which ops: "all" (the six) or "likelihood" (tags), message)
BAD_CRF_INPUTS = [
    ("no-tags", dict(tags=None), "likelihood", r"tags must have shape \(B, L\) = \(2, 3\), got NoneType"),
    ("tags-list", dict(tags=[[0, 0, 0]] * 2), "likelihood", r"tags must have shape \(B, L\) = \(2, 3\), got list"),
    ("tags-on-another-device", dict(tags=torch.zeros(2, 3, dtype=torch.long, device=META)), "likelihood",
     r"tags are on meta but emissions are on cpu"),
    ("tags-bool", dict(tags=torch.zeros(2, 3, dtype=torch.bool)), "likelihood",
     r"tags must be an integer tensor, got torch\.bool"),
    ("tag-equal-to-k-at-a-real-position", dict(tags=torch.tensor([[0, 1, 2], [3, 0, 4]]),
                                               mask=torch.tensor([[1, 1, 0], [1, 1, 1]])),
     "likelihood", r"tags at real positions must be in \[0, 4\) or -100 \(unknown\), got 4 at \(batch 1, position 2\)"),
    ("tag-minus-2", dict(tags=torch.tensor([[0, 1, 2], [3, 0, -2]])), "likelihood",
     r"tags at real positions must be in \[0, 4\) or -100 \(unknown\), got -2"),
    ("emissions-without-tags", dict(emissions=torch.randn(2, 3, 0), transitions=torch.randn(0, 0),
                                    start=torch.randn(0), end=torch.randn(0)),
     "all", r"emissions must have at least one tag \(K >= 1\)"),
    ("emissions-4-dims", dict(emissions=torch.randn(2, 3, 4, 1)), "all", r"emissions must have 3 dims \(B, L, K\)"),
    ("emissions-complex", dict(emissions=torch.randn(2, 3, 4, dtype=torch.complex64)), "all",
     r"emissions must be a floating-point tensor"),
    ("transitions-3-dims", dict(transitions=torch.randn(1, 4, 4)), "all",
     r"transitions must have shape \(4, 4\) for K = 4 tags \(the last dim of emissions\), got \(1, 4, 4\)"),
    ("transitions-not-square", dict(transitions=torch.randn(4, 5)), "all", r"transitions must have shape \(4, 4\)"),
    ("transitions-list", dict(transitions=[[0.0] * 4] * 4), "all",
     r"transitions must be a torch\.Tensor of shape \(4, 4\), got list"),
    ("transitions-int", dict(transitions=torch.zeros(4, 4, dtype=torch.long)), "all",
     r"transitions must be a floating-point tensor"),
    ("transitions-on-another-device", dict(transitions=torch.randn(4, 4, device=META)), "all",
     r"transitions is on meta but emissions are on cpu"),
    ("end-on-another-device", dict(end=torch.randn(4, device=META)), "all", r"end is on meta but emissions are on cpu"),
    ("end-nan", dict(end=torch.tensor([0.0, float("nan"), 0.0, 0.0])), "all",
     r"end must hold finite scores or -inf \(a banned tag or transition\), got NaN or \+inf"),
    ("mask-on-another-device", dict(mask=torch.ones(2, 3, dtype=torch.bool, device=META)), "all",
     r"mask is on meta but emissions are on cpu"),
    ("mask-list", dict(mask=[[1, 1, 1]] * 2), "all", r"mask must have shape \(B, L\) = \(2, 3\), got list"),
    ("mask-complex", dict(mask=torch.ones(2, 3, dtype=torch.complex64)), "all",
     r"mask must be bool or integer \(1 = real position, 0 = padding\)"),
    ("mask-minus-1", dict(mask=torch.tensor([[1, 1, -1], [1, 0, 0]])), "all",
     r"mask must hold only 0 \(padding\) and 1 \(real position\)"),
]


def _crf_calls(which):
    tags = torch.zeros(2, 3, dtype=torch.long)
    calls = {
        "crf_log_partition": lambda a, t, backend: crf_log_partition(**a, backend=backend),
        "crf_log_likelihood": lambda a, t, backend: crf_log_likelihood(**a, tags=t, backend=backend),
        "crf_viterbi": lambda a, t, backend: crf_viterbi(**a, backend=backend),
        "crf_nbest": lambda a, t, backend: crf_nbest(**a, k=2, backend=backend),
        "crf_marginals": lambda a, t, backend: crf_marginals(**a, backend=backend),
        "crf_max_marginals": lambda a, t, backend: crf_max_marginals(**a, backend=backend),
    }
    if which == "likelihood":
        return {"crf_log_likelihood": calls["crf_log_likelihood"]}, tags
    return calls, tags


@pytest.mark.parametrize("backend", CRF_BACKENDS)
@pytest.mark.parametrize("change, which, match", with_ids(BAD_CRF_INPUTS))
def test_bad_crf_input_is_a_clear_error(change, which, match, backend):
    change = dict(change)
    calls, tags = _crf_calls(which)
    tags = change.pop("tags", tags)
    for op, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{op}: {match}"):
            call(_crf_args(**change), tags, backend)


BAD_CONSTRAINTS = [
    ("labels-repeated", lambda: allowed_transitions(["O", "B-PER", "I-PER", "B-PER"], "BIO"),
     r"allowed_transitions: labels must be distinct \(one per tag id\), got 'B-PER' at index 1 and index 3"),
    ("labels-repeated-scheme-none", lambda: allowed_transitions(["NN", "VB", "NN"], "none"),
     r"allowed_transitions: labels must be distinct"),
    ("labels-unhashable", lambda: detect_scheme(["O", ["B-PER"]]),
     r"detect_scheme: labels must be tag names, got \['B-PER'\] \(index 1\)"),
    ("labels-repeated-legal-path", lambda: is_legal_path([0, 1], ["O", "O"], "none"),
     r"is_legal_path: labels must be distinct"),
    ("constraints-not-square", lambda: constraint_scores(torch.ones(3, 4, dtype=torch.bool)),
     r"constraint_scores: allowed must be \(K, K\) \(transitions\) or \(K,\) \(start or end\), got shape \(3, 4\)"),
    ("constraints-3-dims", lambda: constraint_scores(torch.ones(2, 3, 3, dtype=torch.bool)),
     r"constraint_scores: allowed must be \(K, K\) .*got shape \(2, 3, 3\)"),
    ("constraints-scalar", lambda: constraint_scores(torch.tensor(True)),
     r"constraint_scores: allowed must be \(K, K\) .*got shape \(\)"),
]


@pytest.mark.parametrize("call, match", with_ids(BAD_CONSTRAINTS))
def test_bad_constraint_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match="^" + match):
        call()


@pytest.mark.parametrize("backend", CRF_BACKENDS)
@pytest.mark.parametrize("B, L", [(0, 3), (2, 0), (0, 0)], ids=["B=0", "L=0", "B=L=0"])
def test_crf_empty_batch_is_an_empty_result(B, L, backend):
    K = 4
    args = _crf_args(B, L, K, mask=torch.ones(B, L, dtype=torch.bool))
    args["emissions"].requires_grad_(True)
    log_z = crf_log_partition(**args, backend=backend)
    assert log_z.shape == (B,) and (log_z == 0).all()  # the empty path: log Z = 0
    likelihood = crf_log_likelihood(**args, tags=torch.zeros(B, L, dtype=torch.long), backend=backend)
    assert likelihood.shape == (B,) and (likelihood == 0).all()
    likelihood.sum().backward()
    assert args["emissions"].grad.shape == (B, L, K)
    tags, scores = crf_viterbi(**args, backend=backend)
    assert tags.shape == (B, L) and scores.shape == (B,)
    paths, path_scores = crf_nbest(**args, k=2, backend=backend)
    assert paths.shape == (B, 2, L) and path_scores.shape == (B, 2)
    assert crf_marginals(**args, backend=backend).shape == (B, L, K)
    assert crf_max_marginals(**args, backend=backend).shape == (B, L, K)


# ----------------------------------------------------------------------------------------------------------------
# LSTM: bilstm(x, weight_ih, weight_hh, bias, weight_proj, attention_mask, initial_state, *, cell_clip, proj_clip,
# final_state, backend, form)
# ----------------------------------------------------------------------------------------------------------------


def _lstm_args(**change):
    args = dict(x=torch.randn(2, 3, 3), weight_ih=torch.randn(2, 8, 3), weight_hh=torch.randn(2, 8, 2))
    args.update(change)
    return args


BAD_LSTM_INPUTS = [
    ("x-list", dict(x=[[0.0]]), r"x must be a tensor, got list"),
    ("x-4-dims-three-directions", dict(x=torch.randn(2, 3, 3, 3)),
     r"x must be \(batch, length, features\) or \(batch, length, 2, features\)"),
    ("x-complex", dict(x=torch.randn(2, 3, 3, dtype=torch.complex64)), r"x must be a floating-point tensor"),
    ("no-cells", dict(weight_ih=torch.randn(2, 0, 3), weight_hh=torch.randn(2, 0, 0)),
     r"weight_ih must have at least one cell \(4 rows per direction\), got \(2, 0, 3\)"),
    ("weight-ih-3-directions", dict(weight_ih=torch.randn(3, 8, 3)), r"weight_ih must be \(2, 4·cells, 3\)"),
    ("weight-hh-int", dict(weight_hh=torch.zeros(2, 8, 2, dtype=torch.long)),
     r"weight_hh must be a floating-point tensor on cpu, got torch\.int64"),
    ("weight-ih-on-another-device", dict(weight_ih=torch.randn(2, 8, 3, device=META)),
     r"weight_ih must be a floating-point tensor on cpu, got torch\.float32 on meta"),
    ("weight-ih-float64-x-float32", dict(weight_ih=torch.randn(2, 8, 3, dtype=torch.float64)),
     r"weight_ih must have the dtype of x \(torch\.float32\) outside torch\.autocast, got torch\.float64"),
    ("x-float64-weights-float32", dict(x=torch.randn(2, 3, 3, dtype=torch.float64)),
     r"weight_ih must have the dtype of x \(torch\.float64\)"),
    ("x-float16-weights-float32", dict(x=torch.randn(2, 3, 3).half()), r"weight_ih must have the dtype of x"),
    ("bias-float64", dict(bias=torch.zeros(2, 8, dtype=torch.float64)), r"bias must have the dtype of x"),
    ("bias-list", dict(bias=[0.0] * 8), r"bias must be a tensor or None, got list"),
    ("weight-proj-list", dict(weight_proj=[[1.0]]), r"weight_proj must be a tensor or None, got list"),
    ("mask-list", dict(attention_mask=[[1, 1, 1]] * 2), r"attention_mask must be a tensor or None, got list"),
    ("mask-on-another-device", dict(attention_mask=torch.ones(2, 3, device=META)),
     r"attention_mask must be on cpu, got meta"),
    ("mask-half", dict(attention_mask=torch.full((2, 3), 0.5)), r"attention_mask must hold only 0 \(padding\) and 1"),
    ("initial-state-int", dict(initial_state=(torch.zeros(2, 2, 2, dtype=torch.long), torch.zeros(2, 2, 2))),
     r"initial_state must hold floating-point tensors, got torch\.int64 and torch\.float32"),
    ("initial-state-float64", dict(initial_state=(torch.zeros(2, 2, 2).double(), torch.zeros(2, 2, 2).double())),
     r"initial_state must have the dtype of x \(torch\.float32\) outside torch\.autocast"),
    ("initial-state-on-another-device", dict(initial_state=(torch.zeros(2, 2, 2, device=META), torch.zeros(2, 2, 2))),
     r"initial_state must be on cpu"),
    ("initial-state-list-of-lists", dict(initial_state=([0.0], [0.0])),
     r"initial_state must be \(h_0 \(2, 2, 2\), c_0 \(2, 2, 2\)\), got \(list, list\)"),
    ("cell-clip-nan", dict(cell_clip=float("nan")), r"cell_clip must be a positive number or None, got nan"),
    ("cell-clip-bool", dict(cell_clip=True), r"cell_clip must be a positive number or None, got True"),
    ("cell-clip-string", dict(cell_clip="1"), r"cell_clip must be a positive number or None, got '1'"),
    ("proj-clip-0", dict(weight_hh=torch.randn(2, 8, 1), weight_proj=torch.randn(2, 1, 2), proj_clip=0.0),
     r"proj_clip must be a positive number or None, got 0\.0"),
    ("form-none", dict(form=None), r"form must be one of \('auto', 'loop', 'native', 'autograd'\), got None"),
    ("backend-none", dict(backend=None), r"backend must be one of \('auto', 'triton', 'reference'\), got None"),
]
if lstm_ops.bilstm_triton_steps is not None:
    BAD_LSTM_INPUTS.append(("triton-with-a-reference-form", dict(form="loop", backend="triton"),
                            r"form='loop' is a reference-backend form; backend='triton' takes form='auto'"))


@pytest.mark.parametrize("change, match", with_ids(BAD_LSTM_INPUTS))
def test_bad_lstm_input_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match=r"^bilstm: " + match):
        bilstm(**_lstm_args(**change))


def test_lstm_dtype_check_leaves_autocast_alone():
    """Under autocast the products run in the autocast dtype: bf16 inputs with fp32 weights are fine there."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = bilstm(**_lstm_args(x=torch.randn(2, 3, 3).bfloat16()), backend="reference")
    assert y.shape == (2, 3, 2, 2) and torch.isfinite(y.float()).all()


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)], ids=["B=0", "L=0"])
@pytest.mark.parametrize("backend, form", [("reference", "autograd")]
                         + ([("triton", "auto")] if lstm_ops.bilstm_triton_steps is not None else []))
def test_lstm_empty_batch_is_an_empty_result(backend, form, shape):
    B, L = shape
    y, (h, c) = bilstm(**_lstm_args(x=torch.randn(B, L, 3)), attention_mask=torch.ones(B, L), backend=backend,
                       form=form)
    assert y.shape == (B, L, 2, 2) and h.shape == c.shape == (2, B, 2)
    assert (h == 0).all() and (c == 0).all()  # no step: the final state is the initial one


# ----------------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and bad inputs for the commands: {name: path}."""
    import bizoo

    root = tmp_path_factory.mktemp("inputs")
    paths = {}

    def write(name, content):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    binary = b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00" * 8
    paths["text"] = write("text.txt", "to be or not to be that is the question\n" * 20)
    paths["empty"] = write("empty.txt", "\n  \n")
    paths["binary"] = write("binary.txt", binary)
    paths["folder"] = root / "folder"
    paths["folder"].mkdir()
    paths["a_file"] = write("a_file", "not a folder")
    paths["missing"] = root / "missing.txt"
    paths["nowhere"] = root / "nowhere"
    sst2 = "sentence\tlabel\ngood movie\t1\nbad film\t0\n"
    write("glue/SST-2/train.tsv", sst2)
    write("glue/SST-2/dev.tsv", sst2)
    paths["glue"] = root / "glue"
    write("glue_without_tasks/README.txt", "the GLUE download went elsewhere")
    paths["glue_without_tasks"] = root / "glue_without_tasks"
    write("glue_without_train/SST-2/dev.tsv", sst2)
    paths["glue_without_train"] = root / "glue_without_train"
    write("glue_binary/SST-2/train.tsv", b"sentence\tlabel\n" + binary)
    write("glue_binary/SST-2/dev.tsv", sst2)
    paths["glue_binary"] = root / "glue_binary"
    conll = "-DOCSTART- -X- -X- O\n\nAnna NNP B-NP B-PER\nwent VBD B-VP O\n\nOslo NNP B-NP B-LOC\n"
    for folder, names in (("conll", ("train.txt", "valid.txt")), ("conll_without_train", ("valid.txt",)),
                          ("conll_without_valid", ("train.txt",))):
        for name in names:
            write(f"{folder}/{name}", conll)
        paths[folder] = root / folder
    write("conll_binary/train.txt", binary)
    write("conll_binary/valid.txt", conll)
    paths["conll_binary"] = root / "conll_binary"
    (root / "conll" / "a_folder").mkdir()
    checkpoint = root / "checkpoint"
    bizoo.LionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                     vocab_size=120).save_pretrained(checkpoint)
    paths["checkpoint"] = checkpoint
    return paths


@pytest.fixture
def past_the_checks(monkeypatch):
    """Every step after the argument checks fails the test: a case that gets there lacks a check, and must not train a
    tokenizer, build a model, train, run the evaluation runs, measure or upload first."""

    def reached(*args, **kwargs):
        raise AssertionError("the command got past its argument checks")

    import transformers

    monkeypatch.setattr(pretrain, "build_on_first_process", reached)  # trains the tokenizer
    monkeypatch.setattr(finetuning, "build_on_first_process", reached)
    monkeypatch.setattr(finetuning, "load_model", reached)
    monkeypatch.setattr(transformers.Trainer, "train", reached)
    monkeypatch.setattr(evaluate_all, "evaluate_model", reached)
    monkeypatch.setattr(push, "HfApi", reached)
    import importlib
    import pkgutil

    import bizoo.scripts.bench as bench_package

    # every name that measures, in every module of the bench package (modules import them from each other by name)
    measuring = ("run_case_in_child", "measure_case", "time_runs", "form_agreement", "train_steps", "forward_latency")
    for info in pkgutil.iter_modules(bench_package.__path__):
        if info.name == "__main__":  # runs the command when imported
            continue
        module = importlib.import_module(f"{bench_package.__name__}.{info.name}")
        for name in measuring:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, reached)


COMMANDS = {
    "pretrain": pretrain.main,
    "finetune-glue": finetune_glue.main,
    "finetune-ner": finetune_ner.main,
    "train-tokenizer": train_tokenizer.main,
    "evaluate-all": evaluate_all.main,
    "push": push.main,
    "bench": bench.main,
}

# Short corpora instead of the shipped one, where reading it would only cost time.
TEXT = ["--text", "{text}", "--eval-text", "{text}"]
GLUE = ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", "{glue}"]
NER = ["--model-name-or-path", "lion", "--data-dir", "{conll}"]

# (id, command, argv ("{name}" is a path of the `files` fixture, "{out}" a new folder), what stderr must say)
BAD_COMMAND_LINES = [
    # bizoo pretrain
    ("pretrain-missing-eval-text", "pretrain", ["--eval-text", "{missing}"],
     r"--eval-text '.*missing\.txt' does not exist"),
    ("pretrain-text-is-a-folder", "pretrain", ["--text", "{folder}"], r"--text '.*folder' is a folder, not a file"),
    ("pretrain-binary-text", "pretrain", ["--text", "{binary}"], r"binary\.txt is not UTF-8 text"),
    ("pretrain-binary-eval-text", "pretrain", [*TEXT[:2], "--eval-text", "{binary}"], r"binary\.txt is not UTF-8 text"),
    ("pretrain-empty-eval-text", "pretrain", [*TEXT[:2], "--eval-text", "{empty}"], r"empty\.txt is empty"),
    ("pretrain-batch-size-0", "pretrain", ["--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    ("pretrain-batch-size-negative", "pretrain", ["--batch-size", "-3"], r"--batch-size must be >= 1, got -3"),
    ("pretrain-batch-size-not-a-number", "pretrain", ["--batch-size", "many"], r"--batch-size: invalid int value"),
    ("pretrain-max-steps-negative", "pretrain", ["--max-steps", "-5"],
     r"--max-steps must be a positive number of steps or -1"),
    ("pretrain-epochs-0", "pretrain", ["--max-steps", "-1", "--epochs", "0"], r"--epochs must be > 0, got 0\.0"),
    ("pretrain-epochs-inf", "pretrain", ["--max-steps", "-1", "--epochs", "inf"], r"--epochs must be a finite number"),
    ("pretrain-max-length-0", "pretrain", ["--max-length", "0"], r"--max-length must be >= 1, got 0"),
    ("pretrain-max-length-too-short", "pretrain", ["--max-length", "5"],
     r"--max-length must be at least 10 for pretraining .*got 5"),
    ("pretrain-accumulation-0", "pretrain", ["--gradient-accumulation-steps", "0"],
     r"--gradient-accumulation-steps must be >= 1"),
    ("pretrain-logging-steps-0", "pretrain", ["--logging-steps", "0"], r"--logging-steps must be >= 1"),
    ("pretrain-save-steps-negative", "pretrain", ["--save-steps", "-1"], r"--save-steps must be >= 1"),
    ("pretrain-learning-rate-0", "pretrain", ["--learning-rate", "0"], r"--learning-rate must be > 0"),
    ("pretrain-learning-rate-inf", "pretrain", ["--learning-rate", "inf"], r"--learning-rate must be a finite number"),
    ("pretrain-warmup-ratio-1", "pretrain", ["--warmup-ratio", "1"], r"--warmup-ratio must be in \[0, 1\), got 1\.0"),
    ("pretrain-weight-decay-negative", "pretrain", ["--weight-decay", "-0.1"], r"--weight-decay must be >= 0"),
    ("pretrain-max-grad-norm-negative", "pretrain", ["--max-grad-norm", "-1"], r"--max-grad-norm must be >= 0"),
    ("pretrain-mlm-probability-0", "pretrain", ["--mlm-probability", "0"], r"--mlm-probability must be in \(0, 1\)"),
    ("pretrain-mlm-probability-nan", "pretrain", ["--mlm-probability", "nan"],
     r"--mlm-probability must be in \(0, 1\), got nan"),
    ("pretrain-eval-fraction-0", "pretrain", ["--eval-fraction", "0"],
     r"--eval-fraction must be in \(0, 1\), got 0\.0"),
    ("pretrain-vocab-size-0", "pretrain", ["--vocab-size", "0"], r"--vocab-size must be at least 100, got 0"),
    ("pretrain-tokenizer-sample-mb-0", "pretrain", ["--tokenizer-sample-mb", "0"],
     r"--tokenizer-sample-mb must be a positive number"),
    ("pretrain-missing-tokenizer", "pretrain", [*TEXT, "--tokenizer", "{nowhere}"],
     r"cannot load a tokenizer from --tokenizer '.*nowhere'"),
    ("pretrain-unknown-objective", "pretrain", ["--objective", "clm"], r"--objective: invalid choice: 'clm'"),
    ("pretrain-unknown-bigs-variant", "pretrain", ["--model", "bigs", "--variant", "s"],
     r"unknown --variant 's' for model type 'bigs'; allowed: "),
    ("pretrain-model-config-without-value", "pretrain", ["--model-config", "hidden_size"],
     r"--model-config expects KEY=VALUE items"),
    ("pretrain-model-config-negative-size", "pretrain", ["--model-config", "hidden_size=-1"],
     r"LionConfig: hidden_size must be an int >= 1, got -1"),
    ("pretrain-stream-without-text", "pretrain", ["--stream"], r"--stream reads --text files lazily"),
    ("pretrain-stream-without-eval-text", "pretrain", ["--stream", "--text", "{text}"], r"--stream needs --eval-text"),
    ("pretrain-stream-without-max-steps", "pretrain", ["--stream", *TEXT, "--max-steps", "-1"],
     r"--stream needs --max-steps"),
    ("pretrain-stream-word-model", "pretrain", ["--stream", *TEXT, "--model", "elmo"],
     r"--stream is for subword models with the mlm objective"),
    ("pretrain-text-and-dataset", "pretrain", ["--text", "{text}", "--dataset", "wikitext"],
     r"argument --dataset/--dataset-name/--dataset_name: not allowed with argument --text/--train-file/--train_file"),
    ("pretrain-dataset-config-without-dataset", "pretrain", ["--dataset-config", "wikitext-2-raw-v1"],
     r"--dataset-config names a configuration of --dataset: pass --dataset too"),
    ("pretrain-text-column-without-dataset", "pretrain", ["--text-column", "body"],
     r"--text-column names a column of --dataset or of a data file \(\.json, \.csv, \.\.\.\): pass one of them too"),
    ("pretrain-whole-word-mask-bilm", "pretrain", ["--model", "elmo", "--whole-word-mask"],
     r"--whole-word-mask .* applies to subword models with --objective mlm, not to 'elmo' with objective 'bilm'"),
    ("pretrain-whole-word-mask-word-model", "pretrain", ["--model", "bilstm_crf", "--whole-word-mask"],
     r"--whole-word-mask .*not to 'bilstm_crf' with objective 'mlm'"),
    ("pretrain-resume-and-overwrite", "pretrain", ["--resume", "--overwrite"],
     r"--resume continues a run and --overwrite removes the previous run from --output-dir: pass only one"),
    ("pretrain-resume-from-checkpoint-and-overwrite", "pretrain", ["--resume_from_checkpoint", "{a_file}",
                                                                   "--overwrite"],
     r"--resume_from_checkpoint continues a run and --overwrite removes the previous run from --output-dir"),
    ("pretrain-output-dir-is-a-file", "pretrain", ["--output-dir", "{a_file}"],
     r"output folder '.*a_file' is an existing file, not a folder"),
    ("pretrain-output-dir-empty", "pretrain", ["--output-dir", ""], r"--output-dir must name a folder"),
    # bizoo finetune-glue
    ("glue-data-dir-is-a-file", "finetune-glue", [*GLUE[:4], "--data-dir", "{a_file}"],
     r"GLUE data folder '.*a_file' does not exist or is not a folder"),
    ("glue-folder-without-any-task", "finetune-glue", [*GLUE[:4], "--data-dir", "{glue_without_tasks}"],
     r"no SST-2 data in '.*glue_without_tasks': expected a folder SST-2/ holding train\.tsv"),
    ("glue-task-without-train-file", "finetune-glue", [*GLUE[:4], "--data-dir", "{glue_without_train}"],
     r"GLUE SST-2 train file '.*train\.tsv' does not exist"),
    ("glue-binary-train-file", "finetune-glue", [*GLUE[:4], "--data-dir", "{glue_binary}"],
     r"train\.tsv is not UTF-8 text"),
    ("glue-data-dir-and-hub", "finetune-glue", [*GLUE, "--from-hub"],
     r"argument --from-hub: not allowed with argument --data-dir"),
    ("glue-batch-size-0", "finetune-glue", [*GLUE, "--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    ("glue-max-length-negative", "finetune-glue", [*GLUE, "--max-length", "-8"], r"--max-length must be >= 1"),
    ("glue-epochs-0", "finetune-glue", [*GLUE, "--epochs", "0"], r"--epochs must be > 0"),
    ("glue-learning-rate-nan", "finetune-glue", [*GLUE, "--learning-rate", "nan"], r"--learning-rate must be a finite"),
    ("glue-warmup-ratio-negative", "finetune-glue", [*GLUE, "--warmup-ratio", "-0.5"], r"--warmup-ratio must be in"),
    ("glue-vocab-size-0", "finetune-glue", [*GLUE, "--vocab-size", "0"], r"--vocab-size must be at least 100, got 0"),
    ("glue-vocab-size-and-tokenizer", "finetune-glue", [*GLUE, "--vocab-size", "500", "--tokenizer", "{nowhere}"],
     r"--vocab-size sizes a tokenizer built from the training text, --tokenizer names a ready one: pass only one"),
    ("glue-vocab-size-for-a-checkpoint", "finetune-glue",
     ["--model-name-or-path", "{checkpoint}", *GLUE[2:], "--vocab-size", "500"],
     r"--vocab-size sizes the tokenizer built for a model trained from scratch; the checkpoint '.*checkpoint'"),
    ("glue-word-vectors-for-a-checkpoint", "finetune-glue",
     ["--model-name-or-path", "{checkpoint}", *GLUE[2:], "--word-vectors", "{text}"],
     r"--word-vectors initialises a model trained from scratch"),
    ("glue-missing-word-vectors", "finetune-glue", [*GLUE, "--word-vectors", "{missing}"],
     r"--word-vectors '.*missing\.txt' does not exist or is not a file"),
    ("glue-missing-tokenizer", "finetune-glue", [*GLUE, "--tokenizer", "{nowhere}"],
     r"cannot load a tokenizer from --tokenizer '.*nowhere'"),
    ("glue-checkpoint-folder-without-config", "finetune-glue", ["--model-name-or-path", "{folder}", *GLUE[2:]],
     r"--model-name-or-path '.*folder' is neither a bizoo model type .* nor a checkpoint folder"),
    ("glue-unknown-bigs-variant", "finetune-glue", ["--model-name-or-path", "bigs", *GLUE[2:], "--variant", "x"],
     r"unknown --variant 'x' for model type 'bigs'"),
    ("glue-resume-and-overwrite", "finetune-glue", [*GLUE, "--resume", "--overwrite"], r"pass only one"),
    ("glue-output-dir-is-a-file", "finetune-glue", [*GLUE, "--output-dir", "{a_file}"],
     r"output folder '.*a_file' is an existing file"),
    ("glue-output-dir-under-a-file", "finetune-glue", [*GLUE, "--output-dir", "{a_file}/run"],
     r"output folder '.*a_file/run' cannot be made: '.*a_file' is a file, not a folder"),
    # bizoo finetune-ner
    ("ner-folder-without-train", "finetune-ner", [*NER[:2], "--data-dir", "{conll_without_train}"],
     r"--data-dir '.*conll_without_train' holds no train\.txt \(--train-file"),
    ("ner-folder-without-valid", "finetune-ner", [*NER[:2], "--data-dir", "{conll_without_valid}"],
     r"--data-dir '.*conll_without_valid' holds no valid\.txt \(--eval-file"),
    ("ner-missing-data-dir", "finetune-ner", [*NER[:2], "--data-dir", "{nowhere}"],
     r"--data-dir '.*nowhere' does not exist or is not a folder"),
    ("ner-binary-train-file", "finetune-ner", [*NER[:2], "--data-dir", "{conll_binary}"],
     r"train\.txt is not UTF-8 text"),
    ("ner-eval-file-is-a-folder", "finetune-ner", [*NER, "--eval-file", "a_folder"],
     r"CoNLL file '.*a_folder' is a folder, not a file"),
    ("ner-accumulation-0", "finetune-ner", [*NER, "--gradient-accumulation-steps", "0"],
     r"--gradient-accumulation-steps must be >= 1"),
    ("ner-max-steps-negative", "finetune-ner", [*NER, "--max-steps", "-2"], r"--max-steps must be a positive number"),
    ("ner-vocab-size-too-small", "finetune-ner", [*NER, "--vocab-size", "50"], r"--vocab-size must be at least 100"),
    ("ner-missing-word-vectors", "finetune-ner", [*NER, "--word-vectors", "{missing}"],
     r"--word-vectors '.*missing\.txt' does not exist"),
    ("ner-output-dir-is-a-file", "finetune-ner", [*NER, "--output-dir", "{a_file}"],
     r"output folder '.*a_file' is an existing file"),
    # bizoo train-tokenizer (its output is --output-dir too)
    ("tokenizer-binary-file", "train-tokenizer", ["{binary}"], r"binary\.txt is not UTF-8 text"),
    ("tokenizer-folder-as-file", "train-tokenizer", ["{folder}"], r"text file '.*folder' is a folder, not a file"),
    ("tokenizer-no-files", "train-tokenizer", [], r"the following arguments are required: FILE"),
    ("tokenizer-vocab-size-negative", "train-tokenizer", ["{text}", "--vocab-size", "-1"],
     r"vocab_size must be an integer from 6 to 1,000,000, got -1"),
    # bizoo evaluate-all
    ("evaluate-glue-dir-without-any-task", "evaluate-all", ["--glue-dir", "{glue_without_tasks}"],
     r"--glue-dir '.*glue_without_tasks' holds no GLUE task to run"),
    ("evaluate-glue-task-without-train", "evaluate-all", ["--glue-dir", "{glue_without_train}"],
     r"holds no GLUE task to run \(without a train\.tsv and a dev file: SST-2\)"),
    ("evaluate-missing-glue-dir", "evaluate-all", ["--glue-dir", "{nowhere}"],
     r"--glue-dir '.*nowhere' is not a folder"),
    ("evaluate-unknown-task", "evaluate-all", ["--glue-dir", "{glue}", "--tasks", "squad"],
     r"unknown GLUE task 'squad'; allowed"),
    ("evaluate-tasks-without-glue-dir", "evaluate-all", ["--conll-dir", "{conll}", "--tasks", "sst2"],
     r"--tasks picks GLUE tasks of --glue-dir: pass --glue-dir too"),
    ("evaluate-conll-dir-without-train", "evaluate-all", ["--conll-dir", "{conll_without_train}"],
     r"--conll-dir '.*conll_without_train' holds no train\.txt"),
    ("evaluate-conll-dir-without-valid", "evaluate-all", ["--conll-dir", "{conll_without_valid}"],
     r"--conll-dir '.*conll_without_valid' holds no valid\.txt"),
    ("evaluate-missing-conll-dir", "evaluate-all", ["--conll-dir", "{nowhere}"],
     r"--conll-dir '.*nowhere' does not exist or is not a folder"),
    ("evaluate-output-dir-is-a-file", "evaluate-all", ["--conll-dir", "{conll}", "--output-dir", "{a_file}"],
     r"--output-dir '.*a_file' must be a folder \(new or existing\), not a file"),
    ("evaluate-finetune-steps-0", "evaluate-all", ["--conll-dir", "{conll}", "--finetune-steps", "0"],
     r"--finetune-steps must be at least 1, got 0"),
    ("evaluate-batch-size-negative", "evaluate-all", ["--conll-dir", "{conll}", "--batch-size", "-1"],
     r"--batch-size must be at least 1"),
    ("evaluate-max-length-0", "evaluate-all", ["--conll-dir", "{conll}", "--max-length", "0"],
     r"--max-length must be at least 1"),
    ("evaluate-finetune-epochs-0", "evaluate-all", ["--conll-dir", "{conll}", "--finetune-epochs", "SST-2=0"],
     r"--finetune-epochs expects TASK=X or X with X > 0, got 'SST-2=0'"),
    ("evaluate-finetune-epochs-not-a-number", "evaluate-all", ["--conll-dir", "{conll}", "--finetune-epochs", "many"],
     r"--finetune-epochs expects TASK=X or X with X > 0, got 'many'"),
    ("evaluate-finetune-epochs-unknown-task", "evaluate-all", ["--conll-dir", "{conll}", "--finetune-epochs",
                                                              "squad=2"], r"unknown GLUE task 'squad'; allowed"),
    ("evaluate-eval-steps-0", "evaluate-all", ["--conll-dir", "{conll}", "--eval-steps", "0"],
     r"--eval-steps must be at least 1, got 0"),
    ("evaluate-missing-text", "evaluate-all", ["--conll-dir", "{conll}", "--text", "{missing}"],
     r"--text '.*missing\.txt' is not a file"),
    ("evaluate-unknown-model", "evaluate-all", ["--conll-dir", "{conll}", "--models", "gpt2"],
     r"argument --models: invalid choice: 'gpt2'"),
    # bizoo push
    ("push-folder-is-a-file", "push", ["{a_file}", "--repo-id", "my-org/lion"],
     r"export folder '.*a_file' is a file, not a folder"),
    ("push-without-repo-id", "push", ["{folder}"], r"the following arguments are required: --repo-id"),
    # bizoo bench
    ("bench-threads-0", "bench", ["lion", "--device", "cpu", "--threads", "0"],
     r"--threads must be >= 1 \(or left out for torch's default\), got 0"),
    ("bench-threads-negative", "bench", ["crf", "--device", "cpu", "--threads", "-2"], r"--threads must be >= 1"),
    ("bench-lion-warmup-negative", "bench", ["lion", "--device", "cpu", "--warmup", "-1"], r"--warmup must be >= 0"),
    ("bench-crossover-warmup-negative", "bench", ["lion-crossover", "--device", "cpu", "--warmup", "-3"],
     r"--warmup must be >= 0, got -3"),
    ("bench-lion-heads-0", "bench", ["lion", "--device", "cpu", "--heads", "0"], r"--heads must be >= 1"),
    ("bench-lion-chunk-size-negative", "bench", ["lion", "--device", "cpu", "--chunk-size", "-64"],
     r"--chunk-size must be >= 1"),
    ("bench-forms-batch-1", "bench", ["lion-forms", "--batch", "1"],
     r"--batch must be >= 2 \(a right- and a left-padded row\), got 1"),
    ("bench-forms-lengths-0", "bench", ["lion-forms", "--lengths", "64", "0"], r"--lengths must be >= 1"),
    ("bench-model-steps-0", "bench", ["lion-model", "--device", "cpu", "--steps", "0"], r"--steps must be >= 1"),
    ("bench-json-in-a-missing-folder", "bench", ["lion", "--device", "cpu", "--json", "{nowhere}/rows.json"],
     r"--json '.*rows\.json': its folder '.*nowhere' does not exist"),
    ("bench-plot-is-a-folder", "bench", ["lstm", "--device", "cpu", "--plot", "{folder}"],
     r"--plot must name a file to write"),
    ("bench-bigs-state-size-0", "bench", ["bigs", "--device", "cpu", "--state-size", "0"],
     r"--state-size must be >= 1"),
    ("bench-unknown-op", "bench", ["attention"], r"invalid choice: 'attention'"),
]

NO_OUTPUT_DIR = {"push", "bench"}  # the commands without --output-dir


def _prog(command: str, argv: list[str]) -> str:
    if command == "bench" and argv and argv[0] in bench.TARGETS:
        return f"bizoo bench {argv[0]}"
    return f"bizoo {command}"


@pytest.mark.parametrize("command, argv, match", with_ids(BAD_COMMAND_LINES))
def test_bad_command_line_is_a_usage_error(command, argv, match, files, past_the_checks, tmp_path, capsys):
    out = tmp_path / "out"
    paths = {name: str(path) for name, path in files.items()}
    argv = [arg.format(out=out, **paths) for arg in argv]
    if command not in NO_OUTPUT_DIR and "--output-dir" not in argv:
        argv += ["--output-dir", str(out)]
    before = sorted(Path(files["text"]).parent.rglob("*"))
    try:
        code = COMMANDS[command](argv)
    except SystemExit as exit_:  # argparse's own usage errors exit from parse_args
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{_prog(command, argv)}: error: " in err, err
    assert "Traceback" not in err, err
    assert re.search(match, err), err
    assert not out.exists(), "a refused command wrote its output folder"
    assert sorted(Path(files["text"]).parent.rglob("*")) == before, "a refused command wrote beside its inputs"
