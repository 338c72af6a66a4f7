"""The Triton linear-chain CRF kernels against an oracle and a brute-force enumeration, forward and gradients.

On a CPU these run under Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is imported); every output
and scratch buffer is filled with NaN first (integer ones with a sentinel), so an element a kernel fails to write, or
reads before writing, cannot pass. The oracle is ``bizoo.kernels.crf``'s reference backend once it exists, else an
fp64 dynamic programme written here (itself checked against the enumeration). bf16/fp16 checks need a GPU.
"""

import importlib
import itertools
import os

import pytest
import torch

triton_crf = pytest.importorskip("bizoo.kernels.crf.triton_crf", reason="triton is not installed")

ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = [
    pytest.mark.skipif(not (ON_GPU or INTERPRETED), reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1"),
    # log(0) = -inf is intended (a masked lane, a banned tag); numpy warns about it under the interpreter
    pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning"),
]
DEVICE = "cuda" if ON_GPU else "cpu"
NEG = float("-inf")


@pytest.fixture(autouse=True)
def nan_filled_outputs(monkeypatch):
    monkeypatch.setattr(triton_crf, "DEBUG_FILL", float("nan"))


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def padding_mask(L):
    """Six rows: full; right-padded; left-padded; left + hole + right; empty; one real position amid padding."""
    m = torch.ones(6, L, dtype=torch.bool)
    m[1, max(1, L - 2):] = False
    m[2, : min(2, L - 1)] = False
    if L >= 3:
        m[3, 0] = m[3, L // 2] = m[3, L - 1] = False
    m[4] = False
    m[5] = False
    m[5, L // 2] = True
    return m


def make(K, L, *, constrained=True, seed=0, dtype=torch.float32, integer=False):
    g = torch.Generator().manual_seed(seed)
    B = 6
    if integer:  # small integers: exact in any order of additions, many exact ties
        draw = lambda *s: torch.randint(0, 2, s, generator=g).float()  # noqa: E731
    else:
        draw = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    emissions, transitions, start, end = draw(B, L, K) * 2, draw(K, K), draw(K), draw(K)
    if constrained and K >= 2:
        transitions[0, 1] = NEG  # a banned transition
        transitions[K - 1, K - 1] = NEG
        start[K - 1] = NEG  # a banned start
        end[0] = NEG  # a banned end
    mask = padding_mask(L)
    return emissions.to(dtype).to(DEVICE), mask.to(DEVICE), transitions.to(DEVICE), start.to(DEVICE), end.to(DEVICE)


# ----------------------------------------------------------------------------------------------------------------
# Oracles
# ----------------------------------------------------------------------------------------------------------------


def _paths(emissions, mask, transitions, start, end, b):
    """All tag paths of row b over its real positions (fp64), with their scores: (P, n) tags, (P,) scores."""
    pos = mask[b].nonzero().flatten().tolist()
    K = emissions.shape[-1]
    paths = torch.tensor(list(itertools.product(range(K), repeat=len(pos))), dtype=torch.long).view(-1, len(pos))
    em = emissions[b, pos].double()  # (n, K)
    score = start.double()[paths[:, 0]] + end.double()[paths[:, -1]]
    score = score + em[torch.arange(len(pos)), paths].sum(1)
    if len(pos) > 1:
        score = score + transitions.double()[paths[:, :-1], paths[:, 1:]].sum(1)
    return pos, paths, score


def brute_force(emissions, mask, transitions, start, end):
    """log Z (differentiable, fp64), Viterbi tags and score (ties: the backtrace's rule), max-marginals (fp64).

    Enumerated on the CPU whatever the inputs' device (the gradients flow back through the copies)."""
    emissions, mask, transitions, start, end = (t.cpu() for t in (emissions, mask, transitions, start, end))
    B, L, K = emissions.shape
    log_z, tags, scores = [], torch.full((B, L), -100, dtype=torch.long), torch.zeros(B, dtype=torch.float64)
    max_marg = torch.zeros(B, L, K, dtype=torch.float64)
    for b in range(B):
        if not mask[b].any():
            log_z.append(emissions.new_zeros((), dtype=torch.float64))
            continue
        pos, paths, score = _paths(emissions, mask, transitions, start, end, b)
        log_z.append(torch.logsumexp(score, 0))
        score = score.detach()
        best = score.max()
        # the backtrace picks the lowest last tag, then the lowest previous tag, ...: the smallest reversed path
        winner = min(tuple(p) for p in paths[score == best].flip(1).tolist())[::-1]
        tags[b, pos] = torch.tensor(winner)
        scores[b] = best
        for r, t in enumerate(pos):
            for k in range(K):
                max_marg[b, t, k] = score[paths[:, r] == k].max()
    return torch.stack(log_z), tags, scores, max_marg


def dp_oracle(emissions, mask, transitions, start, end):
    """fp64 forward (log Z, differentiable) and max-plus recursions over the real positions, vectorised over rows."""
    em, T, s, e = emissions.double(), transitions.double(), start.double(), end.double()
    B, L, K = em.shape
    alpha = em.new_zeros(B, K)  # a finite dummy until a row starts (its gradient is then exactly 0)
    delta = em.new_zeros(B, K)
    started = torch.zeros(B, dtype=torch.bool, device=em.device)
    deltas, backs = [], []
    for t in range(L):
        m = mask[:, t]
        first = (m & ~started)[:, None]
        step = torch.logsumexp(alpha[:, :, None] + T, 1) + em[:, t]
        alpha = torch.where(first, s + em[:, t], torch.where(m[:, None], step, alpha))
        x = delta[:, :, None] + T  # (B, i, j)
        best = x.max(dim=1).values
        back = (x == best[:, None, :]).int().argmax(dim=1)  # the first (lowest) i among ties
        delta = torch.where(first, s + em[:, t], torch.where(m[:, None], best + em[:, t], delta))
        backs.append(torch.where(m[:, None] & ~first, back, torch.arange(K, device=em.device)))
        deltas.append(delta)
        started = started | m
    log_z = torch.where(started, torch.logsumexp(alpha + e, 1), 0.0)
    fin = delta + e
    score = fin.max(1).values
    y = (fin == score[:, None]).int().argmax(1)
    tags = torch.full((B, L), -100, dtype=torch.long, device=em.device)
    for t in reversed(range(L)):
        tags[:, t] = torch.where(mask[:, t], y, -100)
        y = backs[t].gather(1, y[:, None])[:, 0]
    psi = e.expand(B, K)
    max_marg = torch.zeros(B, L, K, dtype=torch.float64, device=em.device)
    for t in reversed(range(L)):
        m = mask[:, t][:, None]
        max_marg[:, t] = torch.where(m, deltas[t] + psi, 0.0)
        psi = torch.where(m, (T + (em[:, t] + psi)[:, None, :]).max(dim=2).values, psi)
    return log_z, tags, torch.where(started, score, 0.0), max_marg


def _reference_backend():
    """``bizoo.kernels.crf``'s functions with backend="reference", once that op exists; else None."""
    names = ("crf_log_partition", "crf_marginals", "crf_viterbi", "crf_max_marginals")
    try:
        op = importlib.import_module("bizoo.kernels.crf")
    except ImportError:
        return None
    if all(hasattr(op, n) for n in names):
        return {n: (lambda f: lambda *a: f(*a, backend="reference"))(getattr(op, n)) for n in names}
    try:  # the dispatcher is not there yet: the reference module itself
        ref = importlib.import_module("bizoo.kernels.crf.reference")
    except ImportError:
        return None
    plain = [n.removeprefix("crf_") for n in names]
    if all(hasattr(ref, n) for n in plain):
        return {n: getattr(ref, p) for n, p in zip(names, plain)}
    return None


REFERENCE = _reference_backend()


class Oracle:
    """log Z, marginals, Viterbi and max-marginals in high precision: the reference backend when it exists (fp32),
    the fp64 dynamic programme otherwise."""

    @staticmethod
    def log_partition(*args):
        if REFERENCE is not None:
            return REFERENCE["crf_log_partition"](*args)
        return dp_oracle(*args)[0]

    @staticmethod
    def marginals(emissions, mask, transitions, start, end):
        if REFERENCE is not None:
            return REFERENCE["crf_marginals"](emissions, mask, transitions, start, end)
        em = emissions.detach().double().requires_grad_()
        (grad,) = torch.autograd.grad(dp_oracle(em, mask, transitions, start, end)[0].sum(), em)
        return grad

    @staticmethod
    def viterbi(*args):
        if REFERENCE is not None:
            return REFERENCE["crf_viterbi"](*args)
        _, tags, score, _ = dp_oracle(*args)
        return tags, score

    @staticmethod
    def max_marginals(*args):
        if REFERENCE is not None:
            return REFERENCE["crf_max_marginals"](*args)
        return dp_oracle(*args)[3]


def close(got, expected, atol=2e-5, rtol=2e-5):
    torch.testing.assert_close(got.double().cpu(), expected.double().cpu(), atol=atol, rtol=rtol)


def check_max_marginals(mm, tags, expected, mask):
    """Values as expected (up to the tie nudge), argmax = the Viterbi tags at real positions, 0 at padding."""
    assert torch.isfinite(mm[~mask]).all() and (mm[~mask] == 0).all()
    close(mm, expected)
    real = mask.cpu()
    assert torch.equal(mm.argmax(-1).cpu()[real], tags.cpu()[real])


# ----------------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------------

SIZES = [(K, L) for K in (1, 3, 9, 17) for L in (1, 5, 33)]


@pytest.mark.parametrize("K, L", SIZES)
def test_log_partition_and_gradients(K, L):
    emissions, mask, transitions, start, end = make(K, L, seed=K * 100 + L)
    weights = torch.randn(emissions.shape[0], generator=torch.Generator().manual_seed(1)).to(DEVICE)

    def value_and_grads(fn):
        leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
        z = fn(leaves[0], mask, *leaves[1:])
        return z, torch.autograd.grad((z * weights).sum(), leaves)

    z, grads = value_and_grads(triton_crf.log_partition_triton)
    z_ref, grads_ref = value_and_grads(Oracle.log_partition)
    assert z.dtype == torch.float32 and z.shape == (6,)
    assert torch.isfinite(z).all()
    close(z, z_ref)
    assert (z[4] == 0).all()  # the empty row
    for name, g, e in zip(("emissions", "transitions", "start", "end"), grads, grads_ref):
        assert torch.isfinite(g).all(), name
        close(g, e, atol=5e-5, rtol=1e-4)
    assert (grads[0][~mask] == 0).all()  # no gradient to padding


@pytest.mark.parametrize("K, L", SIZES)
def test_marginals(K, L):
    args = make(K, L, seed=K * 100 + L + 1)
    got = triton_crf.marginals_triton(*args)
    assert got.shape == args[0].shape and got.dtype == torch.float32
    assert torch.isfinite(got).all()
    close(got, Oracle.marginals(*args))
    mask = args[1]
    assert (got[~mask] == 0).all()
    torch.testing.assert_close(got.sum(-1)[mask], torch.ones_like(got.sum(-1)[mask]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("K, L", SIZES)
def test_viterbi_and_max_marginals(K, L):
    args = make(K, L, seed=K * 100 + L + 2)
    tags, score = triton_crf.viterbi_triton(*args)
    tags_ref, score_ref = Oracle.viterbi(*args)
    assert tags.dtype == torch.int64 and tags.shape == args[1].shape and score.dtype == torch.float32
    assert torch.equal(tags.cpu(), tags_ref.cpu())
    close(score, score_ref)
    mask = args[1]
    assert (tags[~mask] == -100).all() and score[4] == 0
    mm = triton_crf.max_marginals_triton(*args)
    assert mm.shape == args[0].shape and mm.dtype == torch.float32
    mm_ref = Oracle.max_marginals(*args)
    check_max_marginals(mm, tags, mm_ref, mask)
    if REFERENCE is not None:  # max-plus in fp32 adds in the same order as the reference: bit for bit
        assert torch.equal(score.cpu(), score_ref.cpu()) and torch.equal(mm.cpu(), mm_ref.cpu())
    # the best max-marginal of every real position is the Viterbi score
    best = mm.max(-1).values
    close(torch.where(mask, best, 0.0), torch.where(mask, score[:, None].expand_as(best), 0.0))


@pytest.mark.parametrize("K, L", [(1, 1), (1, 5), (3, 1), (3, 5), (4, 5)])
@pytest.mark.parametrize("constrained", [False, True])
def test_all_kernels_match_brute_force(K, L, constrained):
    emissions, mask, transitions, start, end = make(K, L, constrained=constrained, seed=K + 10 * L)
    leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
    z = triton_crf.log_partition_triton(leaves[0], mask, *leaves[1:])
    grads = torch.autograd.grad(z.sum(), leaves)
    ref_leaves = [t.detach().double().requires_grad_() for t in (emissions, transitions, start, end)]
    z_bf, tags_bf, score_bf, mm_bf = brute_force(ref_leaves[0], mask, *ref_leaves[1:])
    grads_bf = torch.autograd.grad(z_bf.sum(), ref_leaves, allow_unused=True)
    grads_bf = [torch.zeros_like(r) if g is None else g for g, r in zip(grads_bf, ref_leaves)]  # L = 1: no transition
    close(z, z_bf)
    for g, e in zip(grads, grads_bf):
        close(g, e)
    close(triton_crf.marginals_triton(emissions, mask, transitions, start, end), grads_bf[0])
    tags, score = triton_crf.viterbi_triton(emissions, mask, transitions, start, end)
    assert torch.equal(tags.cpu(), tags_bf)
    close(score, score_bf)
    mm = triton_crf.max_marginals_triton(emissions, mask, transitions, start, end)
    check_max_marginals(mm, tags, mm_bf, mask)
    # and the fp64 dynamic programme used as the oracle without a reference backend agrees too
    z_dp, tags_dp, score_dp, mm_dp = dp_oracle(emissions, mask, transitions, start, end)
    close(z_dp, z_bf.detach(), atol=1e-12, rtol=1e-12)
    assert torch.equal(tags_dp.cpu(), tags_bf)
    close(mm_dp, mm_bf, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("K, L, seed", [(3, 5, 0), (4, 5, 1), (2, 5, 2), (3, 4, 3)])
def test_ties_go_to_the_lowest_tag(K, L, seed):
    """Scores in {0, 1}: exact in fp32 in any order, so many paths tie; Viterbi follows the lowest-index rule and
    the max-marginals' argmax still equals the Viterbi tags."""
    args = make(K, L, constrained=seed % 2 == 1, seed=seed, integer=True)
    _, tags_bf, score_bf, mm_bf = brute_force(*args)
    tags, score = triton_crf.viterbi_triton(*args)
    assert torch.equal(tags.cpu(), tags_bf)
    assert torch.equal(score.double().cpu(), score_bf)
    mm = triton_crf.max_marginals_triton(*args)
    mask = args[1]
    check_max_marginals(mm, tags, mm_bf, mask)
    # ties are nudged by exactly one ulp below the path's value, nothing else moves
    on_path = mm.gather(-1, tags.clamp(min=0)[..., None])[..., 0]
    exact = mm_bf.float().to(mm.device)
    nudged = torch.nextafter(on_path[..., None], torch.tensor(NEG, device=mm.device)).expand_as(mm)
    expected = torch.where((exact >= on_path[..., None]) & (mm != on_path[..., None]), nudged, exact)
    expected = torch.where(mask[..., None], expected, 0.0)
    assert torch.equal(mm, expected)
    if REFERENCE is not None:
        tags_ref, _ = REFERENCE["crf_viterbi"](*args)
        assert torch.equal(tags.cpu(), tags_ref.cpu())
        assert torch.equal(mm.argmax(-1)[mask].cpu(), REFERENCE["crf_max_marginals"](*args).argmax(-1)[mask].cpu())


def test_all_tied_scores():
    """Every score 0: every path ties; the Viterbi path is all tag 0 and every other max-marginal is one ulp down."""
    K, L = 5, 7
    emissions, mask = torch.zeros(6, L, K, device=DEVICE), padding_mask(L).to(DEVICE)
    zeros_kk, zeros_k = torch.zeros(K, K, device=DEVICE), torch.zeros(K, device=DEVICE)
    tags, score = triton_crf.viterbi_triton(emissions, mask, zeros_kk, zeros_k, zeros_k)
    assert torch.equal(tags, torch.where(mask, 0, -100))
    assert (score == 0).all()
    mm = triton_crf.max_marginals_triton(emissions, mask, zeros_kk, zeros_k, zeros_k)
    tiny = torch.nextafter(torch.tensor(0.0), torch.tensor(-1.0)).item()
    assert (mm[..., 0] == 0).all()
    assert (mm[..., 1:][mask] == tiny).all() and (mm[~mask] == 0).all()


def test_every_path_banned_gives_no_nan():
    """A row whose every path is banned: log Z = -inf there, marginals and gradients 0, no NaN anywhere; the other
    rows are unaffected."""
    K, L = 3, 5
    emissions, mask, transitions, start, end = make(K, L, constrained=False, seed=7)
    transitions = transitions.clone()
    transitions[2, :] = NEG  # nothing may follow tag 2
    start = start.clone()
    start[:2] = NEG  # every path starts with tag 2
    leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
    z = triton_crf.log_partition_triton(leaves[0], mask, *leaves[1:])
    one = mask.sum(1) == 1  # a chain of a single position can still start (and end) with tag 2
    assert torch.isneginf(z[mask.any(1) & ~one]).all() and torch.isfinite(z[~mask.any(1) | one]).all()
    finite = torch.isfinite(z)
    grads = torch.autograd.grad(z[finite].sum(), leaves)
    for g in grads:
        assert not torch.isnan(g).any()
    marg = triton_crf.marginals_triton(emissions, mask, transitions, start, end)
    assert not torch.isnan(marg).any()
    assert (marg[~finite] == 0).all()
    tags, score = triton_crf.viterbi_triton(emissions, mask, transitions, start, end)
    assert not torch.isnan(score).any() and torch.isneginf(score[~finite]).all()
    mm = triton_crf.max_marginals_triton(emissions, mask, transitions, start, end)
    assert not torch.isnan(mm).any()
    assert torch.equal(mm.argmax(-1)[mask], tags[mask])  # the path's entry is the lowest finite value
    if REFERENCE is not None:
        close(z, REFERENCE["crf_log_partition"](emissions, mask, transitions, start, end))
        close(marg, REFERENCE["crf_marginals"](emissions, mask, transitions, start, end))
        tags_ref, score_ref = REFERENCE["crf_viterbi"](emissions, mask, transitions, start, end)
        assert torch.equal(tags.cpu(), tags_ref.cpu()) and torch.equal(score.cpu(), score_ref.cpu())
        assert torch.equal(mm.cpu(), REFERENCE["crf_max_marginals"](emissions, mask, transitions, start, end).cpu())
        ref_leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
        z_ref = REFERENCE["crf_log_partition"](ref_leaves[0], mask, *ref_leaves[1:])
        for g, e in zip(grads, torch.autograd.grad(z_ref[finite].sum(), ref_leaves)):
            close(g, e)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN in discarded lanes
def test_padding_contents_never_leak():
    """NaN and ±inf at padded positions change nothing, and their gradients are 0."""
    K, L = 9, 12
    emissions, mask, transitions, start, end = make(K, L, seed=3)
    poisoned = emissions.clone()
    pad = ~mask
    poisoned[pad] = torch.tensor([float("nan"), float("inf"), NEG] * 3, device=DEVICE)[:K]
    for fn in (triton_crf.marginals_triton, triton_crf.max_marginals_triton):
        torch.testing.assert_close(fn(poisoned, mask, transitions, start, end),
                                   fn(emissions, mask, transitions, start, end), rtol=0, atol=0)
    tags, score = triton_crf.viterbi_triton(poisoned, mask, transitions, start, end)
    tags0, score0 = triton_crf.viterbi_triton(emissions, mask, transitions, start, end)
    assert torch.equal(tags, tags0) and torch.equal(score, score0)
    leaf = poisoned.clone().requires_grad_()
    z = triton_crf.log_partition_triton(leaf, mask, transitions, start, end)
    torch.testing.assert_close(z, triton_crf.log_partition_triton(emissions, mask, transitions, start, end),
                               rtol=0, atol=0)
    (g,) = torch.autograd.grad(z.sum(), leaf)
    assert torch.isfinite(g).all() and (g[pad] == 0).all()


def test_backward_is_deterministic():
    """The transition gradient is a sum of per-row partials in torch (no atomics): bitwise repeatable."""
    emissions, mask, transitions, start, end = make(9, 33, seed=5)
    grads = []
    for _ in range(2):
        leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
        z = triton_crf.log_partition_triton(leaves[0], mask, *leaves[1:])
        grads.append(torch.autograd.grad(z.sum(), leaves))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_empty_shapes():
    K = 4
    t, s = torch.randn(K, K, device=DEVICE), torch.randn(K, device=DEVICE)
    for B, L in ((2, 0), (0, 3)):
        em, mask = torch.randn(B, L, K, device=DEVICE), torch.ones(B, L, dtype=torch.bool, device=DEVICE)
        assert torch.equal(triton_crf.log_partition_triton(em, mask, t, s, s), torch.zeros(B, device=DEVICE))
        assert triton_crf.marginals_triton(em, mask, t, s, s).shape == (B, L, K)
        tags, score = triton_crf.viterbi_triton(em, mask, t, s, s)
        assert tags.shape == (B, L) and torch.equal(score, torch.zeros(B, device=DEVICE))
        assert triton_crf.max_marginals_triton(em, mask, t, s, s).shape == (B, L, K)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(K=129), r"1 to 128 tags, got K=129"),
        (dict(dtype=torch.float64), r"emissions in float32, float16 or bfloat16, got torch.float64"),
        (dict(trans_dtype=torch.float64), r"transitions in float32, float16 or bfloat16"),
        (dict(trans_shape=(3, 4)), r"transitions must have shape \(4, 4\)"),
        (dict(mask_shape=(2, 6)), r"mask must have shape \(B, L\)"),
    ],
)
def test_unsupported_inputs_are_clear_errors(change, message):
    K = change.get("K", 4)
    em = torch.randn(2, 5, K, dtype=change.get("dtype", torch.float32), device=DEVICE)
    trans_shape, trans_dtype = change.get("trans_shape", (K, K)), change.get("trans_dtype", torch.float32)
    trans = torch.randn(*trans_shape, dtype=trans_dtype, device=DEVICE)
    mask = torch.ones(*change.get("mask_shape", (2, 5)), dtype=torch.bool, device=DEVICE)
    s = torch.randn(K, device=DEVICE)
    for fn in (triton_crf.log_partition_triton, triton_crf.marginals_triton, triton_crf.viterbi_triton,
               triton_crf.max_marginals_triton):
        with pytest.raises(ValueError, match=message):
            fn(em, mask, trans, s, s)


def test_cpu_tensors_without_the_interpreter_are_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    em, mask, t, s = torch.randn(1, 3, 2), torch.ones(1, 3, dtype=torch.bool), torch.randn(2, 2), torch.randn(2)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        triton_crf.log_partition_triton(em, mask, t, s, s)


# ----------------------------------------------------------------------------------------------------------------
# torch.library: the log-partition custom ops, and torch.compile through them
# ----------------------------------------------------------------------------------------------------------------


def _op_inputs(K=5, L=7, seed=21):
    """The forward op's six inputs as ``log_partition_triton`` makes them (the six padding patterns, constraints)."""
    emissions, mask, transitions, start, end = make(K, L, seed=seed)
    emissions, keep, ranges, params = triton_crf._prepare(emissions, mask, transitions, start, end)
    return [emissions, keep, ranges, *params]


def test_log_partition_forward_op_passes_opcheck(monkeypatch):
    """``bizoo::crf_log_partition_forward``: schema, fake tensors (also with dynamic shapes), the autograd
    registration, and AOTAutograd's outputs and gradients equal to eager (torch.library.opcheck). The op's second
    output α is the backward's scratch, unspecified outside each row's real positions: filled with 0 here (not
    NaN), so that two runs compare equal."""
    monkeypatch.setattr(triton_crf, "DEBUG_FILL", 0.0)
    emissions, keep, ranges, transitions, start, end = _op_inputs()
    args = (emissions.requires_grad_(), keep, ranges, transitions.requires_grad_(), start.requires_grad_(),
            end.requires_grad_())
    torch.library.opcheck(torch.ops.bizoo.crf_log_partition_forward.default, args)


def test_log_partition_backward_op_passes_opcheck():
    """``bizoo::crf_log_partition_backward`` (every output written: NaN-filled buffers stay out of its results)."""
    inputs = _op_inputs()
    log_z, alpha = torch.ops.bizoo.crf_log_partition_forward(*inputs)
    grad = torch.randn(log_z.shape, generator=torch.Generator().manual_seed(22)).to(DEVICE)  # (B,)
    args = (grad, *inputs, alpha, log_z)
    torch.library.opcheck(torch.ops.bizoo.crf_log_partition_backward.default, args)
    d_em, d_t, d_start, d_end = torch.ops.bizoo.crf_log_partition_backward(*args)
    K = inputs[0].shape[-1]
    assert d_em.shape == inputs[0].shape and d_t.shape == (K, K) and d_start.shape == d_end.shape == (K,)
    assert all(torch.isfinite(t).all() for t in (d_em, d_t, d_start, d_end))


def test_log_likelihood_compiles_without_graph_breaks():
    """``torch.compile(fullgraph=True)`` of the log-likelihood on the Triton backend (the CRF head's loss: log Z of
    the gold-restricted and of the plain emissions in one call of the op): no graph break, the custom op in the
    graph, values and the four gradients equal to eager (bit for bit: the same kernels) and to the reference
    backend. The gold tags are the reference's Viterbi paths (legal under the constraints: a finite likelihood),
    with one real position per row marginalised (-100)."""
    from bizoo.kernels.crf import crf_log_likelihood, crf_viterbi

    K, L = 5, 7
    emissions, mask, transitions, start, end = make(K, L, seed=23)
    tags, _ = crf_viterbi(emissions, mask, transitions, start, end, backend="reference")  # (B, L)
    tags[:, 3] = -100
    weights = torch.randn(emissions.shape[0], generator=torch.Generator().manual_seed(24)).to(DEVICE)  # (B,)

    def f(emissions, transitions, start, end, mask, tags, backend="triton"):
        return crf_log_likelihood(emissions, mask, transitions, start, end, tags, backend=backend)  # (B,)

    explanation = torch._dynamo.explain(f)(emissions, transitions, start, end, mask, tags)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    targets = {str(n.target) for g in explanation.graphs for n in g.graph.nodes if n.op == "call_function"}
    assert "bizoo.crf_log_partition_forward" in targets, targets
    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)

    def value_and_grads(fn, **kwargs):
        leaves = [t.clone().requires_grad_() for t in (emissions, transitions, start, end)]
        log_likelihood = fn(*leaves, mask, tags, **kwargs)  # (B,)
        return log_likelihood, torch.autograd.grad((weights * log_likelihood).sum(), leaves)

    got, got_grads = value_and_grads(compiled)
    eager, eager_grads = value_and_grads(f)
    expected, expected_grads = value_and_grads(f, backend="reference")
    assert torch.isfinite(got).all() and got.abs().max() > 1e-1
    torch.testing.assert_close(got, eager, rtol=0, atol=0)
    close(got, expected)
    for name, g, e, r in zip(("emissions", "transitions", "start", "end"), got_grads, eager_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=0, atol=0, msg=name)
        assert r.abs().max() > 1e-2, name  # not vacuous: a sizeable gradient to compare
        close(g, r, atol=5e-5, rtol=1e-4)



# ----------------------------------------------------------------------------------------------------------------
# torch.library: marginals, Viterbi and max-marginals as custom ops (no autograd), and torch.compile through them
# ----------------------------------------------------------------------------------------------------------------

# op name -> its public function in triton_crf, and its outputs' (shape, dtype) for emissions (B, L, K)
DECODING_OPS = {
    "crf_marginals": ("marginals_triton", lambda B, L, K: [((B, L, K), torch.float32)]),
    "crf_viterbi": ("viterbi_triton", lambda B, L, K: [((B, L), torch.int64), ((B,), torch.float32)]),
    "crf_max_marginals": ("max_marginals_triton", lambda B, L, K: [((B, L, K), torch.float32)]),
}


@pytest.mark.parametrize("name", list(DECODING_OPS))
def test_decoding_op_passes_opcheck(name):
    """``bizoo::crf_marginals``, ``bizoo::crf_viterbi``, ``bizoo::crf_max_marginals``: schema, fake tensors (also
    with dynamic shapes) and AOTAutograd equal to eager (torch.library.opcheck; every output element written, so
    the NaN-filled buffers compare equal run to run); the outputs' shapes and dtypes as documented, and the public
    function's results are the op's. Inputs without a gradient: the ops have no autograd (module docstring)."""
    inputs = _op_inputs(K=4, L=5, seed=28)
    op = getattr(torch.ops.bizoo, name)
    torch.library.opcheck(op.default, tuple(inputs))
    out = op(*inputs)
    out = list(out) if isinstance(out, (tuple, list)) else [out]
    B, L, K = inputs[0].shape
    assert [(tuple(t.shape), t.dtype) for t in out] == DECODING_OPS[name][1](B, L, K)
    assert not any(torch.isnan(t).any() for t in out if t.is_floating_point())
    public, _ = DECODING_OPS[name]
    emissions, mask, transitions, start, end = make(4, 5, seed=28)  # what _op_inputs prepared
    expected = getattr(triton_crf, public)(emissions, mask, transitions, start, end)
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    for got, want in zip(out, expected):
        assert torch.equal(got, want)


def _explain_and_compile(f, args, op_names):
    """``torch._dynamo.explain`` of ``f(*args)``: no graph break and each ``bizoo.<op>`` of ``op_names`` in the
    graph; then ``f`` compiled (aot_eager, fullgraph)."""
    explanation = torch._dynamo.explain(f)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    targets = {str(n.target) for g in explanation.graphs for n in g.graph.nodes if n.op == "call_function"}
    for name in op_names:
        assert f"bizoo.{name}" in targets, targets
    torch._dynamo.reset()
    return torch.compile(f, backend="aot_eager", fullgraph=True)


@pytest.mark.parametrize("name", list(DECODING_OPS))
def test_decoding_function_compiles_without_graph_breaks(name):
    """``torch.compile(fullgraph=True)`` of ``bizoo.kernels.crf.<name>`` with backend="triton": no graph break, the
    custom op in the graph, results equal to eager (bit for bit: the same kernels) and to the reference backend.
    The emissions require a gradient, as in the CRF head: the results do not (as in eager mode, and on the
    reference backend for Viterbi and max-marginals). Scores of order 1 with tag constraints: the constrained
    reference differs from the unconstrained one, so the comparison sees the constraints."""
    import bizoo.kernels.crf as crf

    fn = getattr(crf, name)
    K, L = 5, 7
    emissions, mask, transitions, start, end = make(K, L, seed=25)
    free_transitions, free_start, free_end = make(K, L, constrained=False, seed=25)[2:]  # the same draws, no -inf
    leaf = emissions.clone().requires_grad_()

    def f(emissions, transitions, start, end, mask, backend="triton"):
        return fn(emissions, mask, transitions, start, end, backend=backend)

    def as_list(out):
        return list(out) if isinstance(out, tuple) else [out]

    compiled = _explain_and_compile(f, (leaf, transitions, start, end, mask), [name])
    got = as_list(compiled(leaf, transitions, start, end, mask))
    eager = as_list(f(leaf, transitions, start, end, mask))
    expected = as_list(f(emissions, transitions, start, end, mask, backend="reference"))
    unconstrained = as_list(f(emissions, free_transitions, free_start, free_end, mask, backend="reference"))
    assert not all(torch.equal(u, e) for u, e in zip(unconstrained, expected))  # the constraints matter
    for g, e, r in zip(got, eager, expected):
        assert not g.requires_grad
        assert g.dtype == e.dtype and g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=0, atol=0)
        if g.is_floating_point():
            close(g, r)
        else:
            assert torch.equal(g.cpu(), r.cpu())
    if name == "crf_marginals":
        marg = got[0]
        real = marg[mask]  # (N, K)
        assert (real.max(-1).values < 0.99).any() and (real > 0.05).sum() > real.shape[0]  # not one-hot
        firsts = mask.int().argmax(1)[mask.any(1)]  # the first real position of each non-empty row
        assert (marg[mask.any(1)].gather(1, firsts[:, None, None].expand(-1, 1, K))[..., K - 1] == 0).all()
    elif name == "crf_viterbi":
        tags = got[0]
        assert len(tags[mask].unique()) > 1 and torch.isfinite(got[1]).all()
    else:
        mm = got[0]
        assert torch.isneginf(mm[mask]).any()  # banned tags at real positions
        finite = mm[mask][torch.isfinite(mm[mask])]
        assert finite.max() - finite.min() > 1
        tags, _ = crf.crf_viterbi(emissions, mask, transitions, start, end, backend="reference")
        assert torch.equal(mm.argmax(-1)[mask].cpu(), tags[mask].cpu())


def test_crf_tagger_compiles_with_the_triton_backend(make_config):
    """A whole tiny LION tagger with ``use_crf=True, kernel_backend="triton"`` (the CRF head: max-marginal logits and
    the log-likelihood loss; LION's own Triton op) compiled with fullgraph: no graph break, the CRF ops in the
    graph, and the loss, logits, predictions and every parameter's gradient equal to eager. BIO labels (some
    transitions and starts banned: -inf logits), padding on both sides and a marginalised -100 label."""
    from transformers import AutoModelForTokenClassification

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    config = make_config(("lion", "s"), use_crf=True, kernel_backend="triton", num_hidden_layers=1,
                         num_labels=len(labels), id2label=dict(enumerate(labels)),
                         label2id={name: i for i, name in enumerate(labels)})
    model = AutoModelForTokenClassification.from_config(config).to(DEVICE).train()
    with torch.no_grad():  # trained-looking CRF parameters, not zeros
        for p in model.classifier.crf.parameters():
            p.normal_()
    ids = torch.randint(5, 120, (2, 8), generator=torch.Generator().manual_seed(27)).to(DEVICE)
    mask = torch.ones(2, 8, dtype=torch.long, device=DEVICE)
    mask[0, 6:] = 0  # right padding
    mask[1, :2] = 0  # left padding
    tags = torch.tensor([[1, 2, -100, 0, 3, 4, 0, 0], [0, 0, 1, 2, 0, -100, 4, 0]],
                        device=DEVICE).masked_fill(mask == 0, -100)

    def step(ids, mask, tags):
        out = model(input_ids=ids, attention_mask=mask, labels=tags)
        return out.loss, out.logits, out.predictions

    def run(fn):
        model.zero_grad(set_to_none=True)
        loss, logits, predictions = fn(ids, mask, tags)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return [loss, logits, predictions], grads

    compiled = _explain_and_compile(step, (ids, mask, tags), ["crf_max_marginals", "crf_log_partition_forward"])
    got, got_grads = run(compiled)
    eager, eager_grads = run(step)
    loss, logits, predictions = got
    assert torch.isfinite(loss) and loss > 0
    assert torch.isneginf(logits[mask.bool()]).any()  # the scheme's constraints reach the logits
    assert torch.equal(predictions, logits.argmax(-1).masked_fill(mask == 0, -100))
    for g, e in zip(got, eager):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    assert got_grads.keys() == eager_grads.keys() and len(got_grads) == len(list(model.parameters()))
    for name in eager_grads:
        torch.testing.assert_close(got_grads[name], eager_grads[name], rtol=0, atol=0, msg=name)
    for name in ("classifier.crf.transitions", "classifier.crf.start", "classifier.crf.end"):
        assert got_grads[name].abs().max() > 1e-3, name

@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="bf16/fp16 kernels are checked on a GPU only")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("K", [9, 64, 128])
def test_half_precision_emissions_on_gpu(dtype, K):
    """Half emissions are upcast on load: the results equal fp32 kernels on the upcast emissions; the emission
    gradient comes back in the emissions' dtype."""
    L = 300
    emissions, mask, transitions, start, end = make(K, L, seed=11, dtype=dtype)
    em32 = emissions.float()
    leaf = emissions.clone().requires_grad_()
    z = triton_crf.log_partition_triton(leaf, mask, transitions, start, end)
    z_ref = Oracle.log_partition(em32, mask, transitions, start, end)
    close(z, z_ref, atol=1e-3, rtol=1e-5)
    (g,) = torch.autograd.grad(z.sum(), leaf)
    assert g.dtype == dtype
    close(g.float(), Oracle.marginals(em32, mask, transitions, start, end), atol=1e-2, rtol=1e-2)
    tags, _ = triton_crf.viterbi_triton(emissions, mask, transitions, start, end)
    assert torch.equal(tags, triton_crf.viterbi_triton(em32, mask, transitions, start, end)[0])
    mm = triton_crf.max_marginals_triton(emissions, mask, transitions, start, end)
    assert torch.equal(mm, triton_crf.max_marginals_triton(em32, mask, transitions, start, end))
    assert torch.equal(mm.argmax(-1)[mask], tags[mask])
