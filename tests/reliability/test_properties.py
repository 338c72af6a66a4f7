"""Property-based tests (hypothesis) of the BiGS SSM, CRF and BiLSTM ops and of every model, on random shapes,
lengths and padding layouts. LION attention's property tests are with the rest of its specification, in
``tests/kernels/test_lion_reference.py`` (its forms) and ``tests/kernels/test_lion_triton.py`` (its Triton schedules).

What is checked, on random inputs whose rows are right-padded, left-padded, full, all padding, or have holes:

* every op here: its forms and backends agree, forward and gradients (the BiGS SSM's fft / toeplitz / recurrent
  forms and Triton; the CRF's Triton kernels against the reference; the BiLSTM's loop / native / autograd forms and
  its Triton kernel, with projections, clipping and initial states);
* every op here: padding is invisible (a row alone equals the same row inside a padded batch at its real positions,
  whatever the padded positions hold), padded outputs are exact zeros, padded inputs get no gradient;
* every model (``model_case``): the encoder is pad-invariant, its forms (``lion_form``/``chunk_size``,
  ``bigs_form``) agree, ``kernel_backend="reference"`` and ``"triton"`` agree, outputs are finite; the CRF head
  decodes only paths that the tag scheme allows.

The Triton checks run on a GPU, or on the CPU under ``TRITON_INTERPRET=1`` (as CI runs them), with NaN-filled output
buffers; they are skipped otherwise. Every property uses ``derandomize=True`` and no example database, so a run is
deterministic; the number of examples of each property is its ``*_EXAMPLES`` constant below. The settings
(``examples``), the padding strategy (``masks``) and the comparisons (``close``, ``close_fp32``) are shared with the
kernel tests, in ``tests/kernels/common.py``.

Precision: the reference paths are checked in fp64 (every reference op keeps fp64), to 1e-9. The Triton kernels
compute in fp32; they are compared with ``close_fp32`` (see there for the tolerance).
"""

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModel, AutoModelForTokenClassification

from bizoo.kernels import crf as crf_ops
from bizoo.kernels import lion as lion_ops
from bizoo.kernels import lstm as lstm_ops
from bizoo.kernels import ssm as ssm_ops
from bizoo.kernels.crf import crf_log_likelihood, crf_log_partition, crf_marginals, crf_max_marginals, crf_viterbi
from bizoo.kernels.crf.constraints import allowed_transitions, constraint_scores, detect_scheme, is_legal_path
from bizoo.kernels.lstm import bilstm
from bizoo.kernels.ssm import bidirectional_ssm, s4d_init, s4d_kernel
from tests.crf_rules import scheme_rules
from tests.kernels.common import LAYOUTS, close, close_fp32, examples, generator, masks, poison, value_and_grads

# ----------------------------------------------------------------------------------------------------------------
# Settings, devices, tolerances
# ----------------------------------------------------------------------------------------------------------------

# Examples per property (the whole file runs in about a minute and a half on 2 CPU cores under TRITON_INTERPRET=1).
SSM_FORMS_EXAMPLES = 50
SSM_TRITON_EXAMPLES = 24
CRF_TRITON_EXAMPLES = 12
LSTM_SCHEDULES_EXAMPLES = 60
LSTM_TRITON_EXAMPLES = 14
MODEL_PAD_EXAMPLES = 15  # per model_case
MODEL_FORMS_EXAMPLES = 10  # per model_case
MODEL_BACKENDS_EXAMPLES = 3  # per model_case
MODEL_CRF_EXAMPLES = 12  # per model_case

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
TRITON_RUNS = (ON_GPU or os.environ.get("TRITON_INTERPRET") == "1") and None not in (
    lion_ops.lion_attention_triton, ssm_ops.bidirectional_ssm_triton, crf_ops.triton_crf, lstm_ops.bilstm_triton_steps
)
needs_triton = pytest.mark.skipif(
    not TRITON_RUNS, reason="the Triton kernels need triton and a CUDA device or TRITON_INTERPRET=1"
)
# exp(-inf) and log(0) are intended in the kernels (a banned tag, a masked lane); the interpreter's numpy warns
interpreter_warnings = pytest.mark.filterwarnings(
    "ignore:divide by zero encountered:RuntimeWarning",
    "ignore:invalid value encountered:RuntimeWarning",
    "ignore:overflow encountered:RuntimeWarning",
)


@pytest.fixture(scope="module", autouse=True)
def nan_filled_triton_buffers():
    """Every Triton output and scratch buffer starts as NaN, so an element a kernel fails to write cannot pass; the
    LSTM step kernels use 16-wide tiles, so that a cell count above 16 spans two tiles."""
    if not TRITON_RUNS:
        yield
        return
    patch = pytest.MonkeyPatch()
    from bizoo.kernels.crf import triton_crf
    from bizoo.kernels.lion import triton_op
    from bizoo.kernels.lstm import triton_steps
    from bizoo.kernels.ssm import triton_ssm

    for module in (triton_op, triton_ssm, triton_crf, triton_steps):
        patch.setattr(module, "DEBUG_FILL", float("nan"))
    patch.setattr(triton_steps, "TILE_COLS", 16)
    yield
    patch.undo()


# ----------------------------------------------------------------------------------------------------------------
# The BiGS SSM
# ----------------------------------------------------------------------------------------------------------------


def ssm_case(data, *, B, L, H, N, dtype):
    """Inputs (u_fwd, u_bwd with NaN at padding), skips, the SSM parameters (log_step, A_re, A_im, C) of both
    directions (an S4D initialisation with the damping A_re scaled at random), the mask."""
    g = generator(data)
    mask = data.draw(masks(B, L), label="mask")
    params = []
    for _ in range(2):
        scaling = data.draw(st.sampled_from(ssm_ops.SCALINGS), label="scaling")
        p = s4d_init(N, scaling, g, dtype=torch.float64)
        damping = torch.rand(N, generator=g, dtype=torch.float64) * 2 + 0.1
        params.append(tuple(t.to(dtype) for t in (p["log_step"], p["A_re"] * damping, p["A_im"], p["C"])))
    u = [poison(torch.randn(B, L, H, generator=g, dtype=torch.float64), ~mask).to(dtype) for _ in range(2)]
    d = [torch.randn(1, generator=g, dtype=torch.float64).to(dtype) for _ in range(2)]
    return u, d, params, mask


@examples(SSM_FORMS_EXAMPLES)
@given(data=st.data())
def test_ssm_forms_agree_with_gradients_and_holes_read_as_zeros(data):
    """fft = toeplitz = recurrent (any chunk size), forward and gradients w.r.t. the inputs, the skips and the SSM
    parameters (the kernels are functions of them), with holes and all-padding rows; a row equals the op over its
    span from first to last real token alone, holes read as zero inputs (the documented rule), and padding is
    invisible and gets no gradient."""
    B, L, H, N = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 20)), data.draw(st.integers(1, 3)), 4
    chunk_size = data.draw(st.integers(1, L + 3), label="chunk_size")
    u, d, params, mask = ssm_case(data, B=B, L=L, H=H, N=N, dtype=torch.float64)
    leaves = [*u, *d, *params[0], *params[1]]
    cotangents = [torch.randn(B, L, H, generator=generator(data), dtype=torch.float64) for _ in range(2)]

    def op(form, m=mask, chunk=chunk_size):
        def fn(u_f, u_b, d_f, d_b, *p):
            pf, pb = tuple(p[:4]), tuple(p[4:])
            length = u_f.shape[1]
            k_f, k_b = (None, None) if form == "recurrent" else (s4d_kernel(*pf, length), s4d_kernel(*pb, length))
            return bidirectional_ssm(u_f, u_b, k_f, k_b, d_f, d_b, m, form=form, backend="reference",
                                     recurrent_params=(pf, pb), chunk_size=chunk)
        return fn

    want, want_grads = value_and_grads(op("toeplitz"), leaves, cotangents)
    for y in want:
        assert torch.isfinite(y).all() and (y[~mask] == 0).all()
    for g in want_grads[:2]:
        assert torch.isfinite(g).all() and (g[~mask] == 0).all()
    for form in ("fft", "recurrent"):
        got, grads = value_and_grads(op(form), leaves, cotangents)
        for y, e in zip(got, want):
            close(y, e)
        for g, e in zip(grads, want_grads):
            close(g, e)

    form = data.draw(st.sampled_from(ssm_ops.FORMS), label="form of the rows alone")
    for b in range(B):
        pos = mask[b].nonzero().flatten()
        if len(pos) == 0:
            continue
        span = slice(int(pos[0]), int(pos[-1]) + 1)
        zeroed = [torch.where(mask[b : b + 1, span, None], x[b : b + 1, span], 0.0) for x in u]
        alone = op(form, m=None)(*zeroed, *d, *params[0], *params[1])
        real = mask[b, span]
        for y, a in zip(want, alone):
            close(y[b, span][real], a[0][real])


@needs_triton
@interpreter_warnings
@examples(SSM_TRITON_EXAMPLES)
@given(data=st.data())
def test_ssm_triton_matches_the_reference(data):
    """The fused Triton SSM against the fp64 reference, forward and the gradients of all six inputs, on random
    shapes (several time and channel tiles) and padding (holes, all-padding rows) that holds NaN."""
    B, L, H = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 40)), data.draw(st.integers(1, 20))
    u, d, params, mask = ssm_case(data, B=B, L=L, H=H, N=4, dtype=torch.float32)
    k = [s4d_kernel(*p, L) for p in params]  # (L,) each
    cotangents = [torch.randn(B, L, H, generator=generator(data)) for _ in range(2)]

    def op(backend):
        def fn(u_f, u_b, k_f, k_b, d_f, d_b):
            m = mask.to(u_f.device)
            return bidirectional_ssm(u_f, u_b, k_f, k_b, d_f, d_b, m, form="toeplitz" if backend == "reference"
                                     else "auto", backend=backend)
        return fn

    leaves = [*u, *k, *d]
    want, want_grads = value_and_grads(op("reference"), [t.double() for t in leaves], cotangents)
    got, grads = value_and_grads(op("triton"), [t.to(DEVICE) for t in leaves], cotangents)
    for y, e in zip(got, want):
        assert y.dtype == torch.float32 and torch.isfinite(y).all()
        close_fp32(y, e)
        assert (y.cpu()[~mask] == 0).all()
    for name, g, e in zip(("u_fwd", "u_bwd", "k_fwd", "k_bwd", "d_fwd", "d_bwd"), grads, want_grads):
        assert torch.isfinite(g).all(), name
        close_fp32(g, e, 2e-5)


# ----------------------------------------------------------------------------------------------------------------
# The CRF
# ----------------------------------------------------------------------------------------------------------------

LABEL_SETS = {
    "BIO": ("O", "B-PER", "I-PER", "B-LOC", "I-LOC"),
    "IOBES": ("O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC"),
    "BILOU": ("O", "B-ORG", "I-ORG", "L-ORG", "U-ORG"),
}


@needs_triton
@interpreter_warnings
@examples(CRF_TRITON_EXAMPLES)
@given(data=st.data())
def test_crf_triton_matches_the_reference(data):
    """The Triton CRF kernels against the reference on random B, L, K, padding (holes, all-padding rows), Gaussian
    or integer (tied) scores and no / random / tag-scheme constraints: log Z and the likelihood's gradients, the
    Viterbi path (bit for bit) and score, the marginals and max-marginals; exact zeros / -100 at padding."""
    B, L = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8))
    constraints = data.draw(st.sampled_from(("none", "random", "scheme")), label="constraints")
    if constraints == "scheme":
        labels = data.draw(st.permutations(LABEL_SETS[data.draw(st.sampled_from(sorted(LABEL_SETS)))]))
        K = len(labels)
    else:
        K = data.draw(st.integers(1, 18), label="K")
    mask = data.draw(masks(B, L), label="mask")
    g = generator(data)
    if data.draw(st.booleans(), label="integer scores"):
        sample = lambda *shape: torch.randint(-1, 2, shape, generator=g).float()  # noqa: E731
    else:
        sample = lambda *shape: torch.randn(*shape, generator=g) * 2  # noqa: E731
    emissions, transitions, start, end = sample(B, L, K), sample(K, K), sample(K), sample(K)
    emissions = torch.where(mask[..., None], emissions, torch.randn(B, L, K, generator=g) * 1e3)  # loud padding
    if constraints == "scheme":
        biases = [constraint_scores(a) for a in allowed_transitions(list(labels), detect_scheme(list(labels)))]
        transitions, start, end = transitions + biases[0], start + biases[1], end + biases[2]
    elif constraints == "random":  # ban some transitions, starts and ends; the all-zeros path stays legal
        banned = torch.rand(K, K, generator=g) < 0.3
        banned[0, 0] = False
        transitions = transitions.masked_fill(banned, float("-inf"))
        start = start.masked_fill((torch.rand(K, generator=g) < 0.3) & (torch.arange(K) > 0), float("-inf"))
        end = end.masked_fill((torch.rand(K, generator=g) < 0.3) & (torch.arange(K) > 0), float("-inf"))
    args = (emissions, mask, transitions, start, end)
    on_device = [t.to(DEVICE) for t in args]

    tags, score = crf_viterbi(*args, backend="reference")
    got_tags, got_score = crf_viterbi(*on_device, backend="triton")
    assert torch.equal(got_tags.cpu(), tags) and (tags[~mask] == -100).all()
    close_fp32(got_score, score)
    for op in (crf_marginals, crf_max_marginals):
        want, got = op(*args, backend="reference"), op(*on_device, backend="triton")
        assert not got.isnan().any(), op.__name__  # -inf: a tag that no allowed path passes through
        close_fp32(got, want)
        assert (got.cpu()[~mask] == 0).all(), op.__name__
    mm = crf_max_marginals(*on_device, backend="triton").cpu()
    assert torch.equal(mm.argmax(-1)[mask], tags[mask])

    gold = tags.masked_fill((torch.rand(B, L, generator=g) < 0.3) & mask, -100)  # a legal path, partly unknown
    cotangents = [torch.randn(B, generator=g)]

    def likelihood(backend, device):
        def fn(e, t, s, n):
            return crf_log_likelihood(e, mask.to(device), t, s, n, gold.to(device), backend=backend)
        return fn

    leaves = [emissions, transitions, start, end]
    (want,), want_grads = value_and_grads(likelihood("reference", "cpu"), leaves, cotangents)
    (got,), grads = value_and_grads(likelihood("triton", DEVICE), [t.to(DEVICE) for t in leaves], cotangents)
    close_fp32(got, want)
    close_fp32(crf_log_partition(*on_device, backend="triton"), crf_log_partition(*args, backend="reference"))
    for name, gr, e in zip(("emissions", "transitions", "start", "end"), grads, want_grads):
        assert torch.isfinite(gr).all(), name
        close_fp32(gr, e, 2e-5)
    assert (grads[0].cpu()[~mask] == 0).all()


# ----------------------------------------------------------------------------------------------------------------
# The BiLSTM
# ----------------------------------------------------------------------------------------------------------------


LSTM_FEATURES = ("drawn", "projection-clips-state")


def lstm_case(data, *, max_cells, features="drawn"):
    """Inputs of ``bilstm`` (fp64), the mask, the clips and the cotangents of (y, h_n, c_n).

    ``features="drawn"`` draws whether there is a projection, which clips and an initial state; in a few dozen
    derandomized examples hypothesis rarely draws all three (the projection clip hardly ever), so
    ``"projection-clips-state"`` always has a projection, both clips and an initial state."""
    full = features == "projection-clips-state"
    B, L, I = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    H = data.draw(st.integers(1, max_cells), label="cells")
    P = data.draw(st.integers(1, H) if full else st.one_of(st.none(), st.integers(1, H)), label="projection")
    per_direction = data.draw(st.booleans(), label="one input per direction")
    state = full or data.draw(st.booleans(), label="initial state")
    clips = "both" if full else data.draw(st.sampled_from(("none", "cell", "both") if P else ("none", "cell")),
                                          label="clips")
    mask = data.draw(masks(B, L), label="mask")
    g = generator(data)
    f64 = dict(generator=g, dtype=torch.float64)
    Pout = P or H
    x = torch.randn(B, L, 2, I, **f64) if per_direction else torch.randn(B, L, I, **f64)
    leaves = {
        "x": poison(x, ~mask, 1e3),  # loud padding
        "weight_ih": torch.randn(2, 4 * H, I, **f64) * 0.5,
        "weight_hh": torch.randn(2, 4 * H, Pout, **f64) * 0.5,
        "bias": torch.randn(2, 4 * H, **f64) * 0.3,
        "weight_proj": torch.randn(2, Pout, H, **f64) * 0.7 if P else None,
        "h0": torch.randn(2, B, Pout, **f64) if state else None,
        "c0": torch.randn(2, B, H, **f64) if state else None,
    }
    clip = {"none": {}, "cell": dict(cell_clip=0.6), "both": dict(cell_clip=0.8, proj_clip=0.4)}[clips]
    cotangents = [torch.randn(B, L, 2, Pout, **f64), torch.randn(2, B, Pout, **f64), torch.randn(2, B, H, **f64)]
    return leaves, mask, clip, cotangents


def run_lstm(leaves, mask, clip, cotangents, backend, form="auto", dtype=torch.float64, device="cpu"):
    names = [n for n, t in leaves.items() if t is not None]

    def fn(*tensors):
        given_ = dict(zip(names, tensors))
        args = {n: given_.get(n) for n in leaves}
        state = None if args["h0"] is None else (args["h0"], args["c0"])
        y, (h_n, c_n) = bilstm(args["x"], args["weight_ih"], args["weight_hh"], args["bias"], args["weight_proj"],
                               mask.to(device), state, backend=backend, form=form, **clip)
        return y, h_n, c_n

    outs, grads = value_and_grads(fn, [leaves[n].to(device, dtype) for n in names], cotangents)
    return outs, dict(zip(names, grads))


@pytest.mark.parametrize("features", LSTM_FEATURES)
@examples(LSTM_SCHEDULES_EXAMPLES)
@given(data=st.data())
def test_lstm_schedules_agree_and_padding_is_invisible(features, data):
    """loop = native = autograd (fp64) on random shapes, paddings, initial states, projections and clips, outputs,
    final states and the gradients of every input; a row alone (with its initial state) = the row in the batch;
    padding gets zeros and no gradient; a row without tokens ends in its initial state."""
    leaves, mask, clip, cotangents = lstm_case(data, max_cells=6, features=features)
    want, want_grads = run_lstm(leaves, mask, clip, cotangents, "reference", "autograd")
    forms = ["loop"]
    proj = leaves["weight_proj"]
    if not clip and (proj is None or proj.shape[1] < proj.shape[2]):
        forms.append("native")  # torch.lstm: no clipping, a projection only to fewer outputs than cells
    for form in forms:
        got, grads = run_lstm(leaves, mask, clip, cotangents, "reference", form)
        for a, b in zip(got, want):
            close(a, b)
        for name in want_grads:
            close(grads[name], want_grads[name])
    y, h_n, c_n = want
    assert all(torch.isfinite(t).all() for t in want)
    assert (y[~mask] == 0).all() and (want_grads["x"][~mask] == 0).all()

    form = data.draw(st.sampled_from(forms), label="form of the rows alone")
    for b in range(mask.shape[0]):
        pos = mask[b].nonzero().flatten()
        state = None if leaves["h0"] is None else (leaves["h0"][:, b : b + 1], leaves["c0"][:, b : b + 1])
        if len(pos) == 0:
            h_0 = torch.zeros_like(h_n[:, b]) if state is None else state[0][:, 0]
            c_0 = torch.zeros_like(c_n[:, b]) if state is None else state[1][:, 0]
            close(h_n[:, b], h_0)
            close(c_n[:, b], c_0)
            continue
        alone, (h1, c1) = bilstm(leaves["x"][b : b + 1, pos], leaves["weight_ih"], leaves["weight_hh"],
                                 leaves["bias"], leaves["weight_proj"], None, state, backend="reference", form=form,
                                 **clip)
        close(y[b, pos], alone[0])
        close(h_n[:, b], h1[:, 0])
        close(c_n[:, b], c1[:, 0])


@needs_triton
@pytest.mark.parametrize("features", LSTM_FEATURES)
@examples(LSTM_TRITON_EXAMPLES)
@given(data=st.data())
def test_lstm_triton_matches_the_autograd_loop(features, data):
    """The Triton BiLSTM(P) (the step schedule, fp32) against the autograd loop (fp64) on random shapes (up to two
    cell tiles), paddings, initial states, projections and clips: outputs, final states and every gradient."""
    leaves, mask, clip, cotangents = lstm_case(data, max_cells=20, features=features)
    want, want_grads = run_lstm(leaves, mask, clip, cotangents, "reference", "autograd")
    got, grads = run_lstm(leaves, mask, clip, cotangents, "triton", dtype=torch.float32, device=DEVICE)
    for name, a, b in zip(("y", "h_n", "c_n"), got, want):
        assert a.dtype == torch.float32 and torch.isfinite(a).all(), name
        close_fp32(a, b)
    assert (got[0].cpu()[~mask] == 0).all()
    for name in want_grads:
        assert torch.isfinite(grads[name]).all(), name
        close_fp32(grads[name], want_grads[name], 2e-5)


# ----------------------------------------------------------------------------------------------------------------
# Every model
# ----------------------------------------------------------------------------------------------------------------

V = 120  # the vocabulary of the tiny configurations


def holes_are_invisible(model_type: str) -> bool:
    """BiGS reads a hole inside a sequence as a zero input that keeps the sequence's length (``kernels/ssm``); every
    other model skips it, so only right and left padding are invisible there."""
    return model_type != "bigs"


@st.composite
def model_batches(draw, model_type, max_rows=3, max_length=12):
    """(ids (B, L) with random ids at padding too, mask (B, L) long)."""
    B, L = draw(st.integers(1, max_rows)), draw(st.integers(1, max_length))
    layouts = LAYOUTS if holes_are_invisible(model_type) else ("full", "right", "left", "empty")
    mask = draw(masks(B, L, layouts))
    ids = torch.tensor(draw(st.lists(st.integers(5, V - 1), min_size=B * L, max_size=B * L))).view(B, L)
    return ids, mask.long()


def build(model_case, make_config, data, auto=AutoModel, **overrides):
    """A model of the tiny configuration with random weights (on the reference kernels unless overridden)."""
    torch.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="weights seed"))
    # initializer_range 0.2: weights wide enough that every layer mixes far above rounding
    overrides = {"kernel_backend": "reference", "initializer_range": 0.2, **overrides}
    return auto.from_config(make_config(model_case, vocab_size=V, **overrides)).eval()


def alternative_forms(model_type: str, length: int, data) -> list[dict]:
    """The config overrides that select each equivalent form of a model (the first is the oracle)."""
    if model_type == "lion":
        chunk = data.draw(st.integers(1, length + 4), label="chunk_size")
        return [dict(lion_form="attention"), dict(lion_form="rnn"), dict(lion_form="chunk", chunk_size=chunk)]
    if model_type == "bigs":
        return [dict(bigs_form="toeplitz"), dict(bigs_form="fft"), dict(bigs_form="recurrent")]
    return []


@examples(MODEL_PAD_EXAMPLES)
@given(data=st.data())
def test_model_encoder_is_pad_invariant(model_case, make_config, make_inputs, data):
    """Random batch, length and padding (right, left, holes where the model skips them, all-padding rows, random ids
    at padding): each row's encoder output at its real positions equals the row alone (fp64); outputs finite."""
    ids, mask = data.draw(model_batches(model_case[0]), label="batch")
    model = build(model_case, make_config, data).double()
    with torch.no_grad():
        out = model(**make_inputs(model_case, ids, mask)).last_hidden_state
        assert torch.isfinite(out).all()
        for b in range(ids.shape[0]):
            real = mask[b].bool()
            if not real.any():
                continue
            alone = model(**make_inputs(model_case, ids[b : b + 1, real])).last_hidden_state
            close(out[b, real], alone[0])


@examples(MODEL_FORMS_EXAMPLES)
@given(data=st.data())
def test_model_forms_agree(model_case, make_config, make_inputs, data):
    """The forms a model's config can pick (LION: attention / rnn / chunk with a random chunk size; BiGS: toeplitz /
    fft / recurrent) give the same encoder outputs and hidden states (fp64) on a random padded batch."""
    ids, mask = data.draw(model_batches(model_case[0]), label="batch")
    forms = alternative_forms(model_case[0], ids.shape[1], data)
    if not forms:
        pytest.skip(f"{model_case[0]} has one form per backend (its backends: test_model_backends_agree)")
    model = build(model_case, make_config, data).double()
    inputs = make_inputs(model_case, ids, mask)
    outputs = []
    with torch.no_grad():
        for overrides in forms:
            for key, value in overrides.items():
                setattr(model.config, key, value)
            outputs.append(model(**inputs, output_hidden_states=True).hidden_states)
    for states in outputs[1:]:
        for got, want in zip(states, outputs[0]):
            assert torch.isfinite(got).all()
            close(got, want)


@needs_triton
@interpreter_warnings
@examples(MODEL_BACKENDS_EXAMPLES)
@given(data=st.data())
def test_model_backends_agree(model_case, make_config, make_inputs, data):
    """``kernel_backend="triton"`` (every op of the model on its Triton kernels: LION, SSM, LSTM, and the CRF head)
    against ``"reference"`` with the same weights, on a small random padded batch: hidden states, CRF logits and
    the predictions wherever the reference's best tag leads by a clear margin (fp32)."""
    ids, mask = data.draw(model_batches(model_case[0], max_rows=2, max_length=10), label="batch")
    labels = LABEL_SETS["BIO"]
    model = build(model_case, make_config, data, AutoModelForTokenClassification, use_crf=True,
                  num_labels=len(labels), id2label=dict(enumerate(labels)),
                  label2id={name: i for i, name in enumerate(labels)})
    inputs = make_inputs(model_case, ids, mask)
    with torch.no_grad():
        want = model(**inputs, output_hidden_states=True)
        if model_case[0] == "lion":
            model.config.lion_form = data.draw(st.sampled_from(("attention", "chunk")), label="lion_form")
            model.config.chunk_size = data.draw(st.sampled_from((16, 32)), label="chunk_size")
        if model_case[0] == "bigs":
            model.config.bigs_form = "conv"  # the Triton SSM is the convolution; the recurrence is reference-only
        model.config.kernel_backend = "triton"
        model.to(DEVICE)
        got = model(**{k: v.to(DEVICE) for k, v in inputs.items()}, output_hidden_states=True)
    for g, w in zip(got.hidden_states, want.hidden_states):
        assert torch.isfinite(g).all()
        # fp32 through two layers: the kernels' rounding (see close_fp32) passes through LayerNorms and the
        # feed-forward layers, which keep it at the same relative size here; 1e-5 is the contract's bar (ARCHITECTURE.md §3)
        close_fp32(g, w, 1e-5)
    close_fp32(got.logits, want.logits, 1e-5)
    top2 = want.logits.topk(min(2, len(labels)), dim=-1).values
    clear = mask.bool() & (top2[..., 0] - top2[..., -1] > 1e-2)
    assert torch.equal(got.predictions.cpu()[clear], want.predictions[clear])
    assert (got.predictions.cpu()[mask == 0] == -100).all()


@examples(MODEL_CRF_EXAMPLES)
@given(data=st.data())
def test_model_crf_head_decodes_only_legal_paths(model_case, make_config, make_inputs, data):
    """Every encoder with the CRF head (``use_crf=True``; BiLSTM-CRF's default), a random tag set of BIO, IOBES or
    BILOU in a random order, loud random emissions and CRF scores (so that the unconstrained best path is often
    illegal), random padding: the predictions are legal paths, -100 at padding, argmax of the logits, the
    constrained Viterbi path of the emissions, and the same for a row alone."""
    scheme = data.draw(st.sampled_from(sorted(LABEL_SETS)), label="scheme")
    labels = list(data.draw(st.permutations(LABEL_SETS[scheme]), label="labels"))
    tag_scheme = data.draw(st.sampled_from(("auto", scheme)), label="tag_scheme")
    ids, mask = data.draw(model_batches(model_case[0]), label="batch")
    model = build(model_case, make_config, data, AutoModelForTokenClassification, use_crf=True,
                  num_labels=len(labels), id2label=dict(enumerate(labels)),
                  label2id={name: i for i, name in enumerate(labels)}, tag_scheme=tag_scheme).double()
    head = model.classifier if hasattr(model, "classifier") else model.head
    g = generator(data)
    with torch.no_grad():
        head.classifier.weight.copy_(torch.randn(head.classifier.weight.shape, generator=g) * 3)
        for p in (head.crf.transitions, head.crf.start, head.crf.end):
            p.copy_(torch.randn(p.shape, generator=g) * 3)
    captured = {}
    hook = head.classifier.register_forward_hook(lambda m, i, o: captured.__setitem__("emissions", o.float()))
    try:
        with torch.no_grad():
            out = model(**make_inputs(model_case, ids, mask))
            emissions = captured["emissions"]
            alone = {}
            for b in range(ids.shape[0]):
                real = mask[b].bool()
                if real.any():
                    alone[b] = model(**make_inputs(model_case, ids[b : b + 1, real])).predictions[0]
    finally:
        hook.remove()
    keep = mask.bool()
    predictions = out.predictions
    assert torch.equal(predictions == -100, ~keep)
    assert torch.equal(out.logits.argmax(-1)[keep], predictions[keep])
    assert not out.logits.isnan().any()  # -inf is right for a tag no legal path passes through (I-X first)
    assert torch.isfinite(out.logits[keep].max(-1).values).all()  # the best path's score
    # the oracle: the head's raw scores with the scheme's rules as written in tests/crf_rules.py (not the head's own
    # constrained parameters), decoded by the reference Viterbi
    may_start, may_follow, may_end = scheme_rules(labels, scheme)
    ban = lambda allowed: 0.0 if allowed else float("-inf")  # noqa: E731
    transitions = head.crf.transitions.double() + torch.tensor([[ban(may_follow(a, b)) for b in labels] for a in labels],
                                                               dtype=torch.float64)
    start = head.crf.start.double() + torch.tensor([ban(may_start(a)) for a in labels], dtype=torch.float64)
    end = head.crf.end.double() + torch.tensor([ban(may_end(a)) for a in labels], dtype=torch.float64)
    path, _ = crf_viterbi(emissions.double(), keep, transitions, start, end, backend="reference")
    assert torch.equal(predictions, path)
    for b in range(ids.shape[0]):
        tags = predictions[b][keep[b]].tolist()
        names = [labels[t] for t in tags]
        assert is_legal_path(tags, labels, scheme), (labels, names)
        assert may_start(names[0]) and may_end(names[-1]) if names else True, names
        assert all(may_follow(a, b) for a, b in zip(names, names[1:])), names
        if b in alone:
            assert torch.equal(alone[b], predictions[b][keep[b]])
