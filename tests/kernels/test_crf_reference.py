"""The linear-chain CRF's pure-PyTorch schedules (``reference`` and ``scan``) against the definition.

The oracle enumerates every tag path of every row in fp64 and reads each quantity off the list, so it shares no
recursion with the ops. Beside it: parity with pytorch-crf (the de-facto baseline), exact ties, -inf constraints,
gradients (gradcheck and ∂log Z/∂E = marginals), input validation, half precision, and a property test that the two
schedules agree and that padding (either side, holes) never changes a row's results.
"""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bizoo.kernels import dispatch
from bizoo.kernels.crf import (
    crf_log_likelihood,
    crf_log_partition,
    crf_marginals,
    crf_max_marginals,
    crf_nbest,
    crf_viterbi,
)

BACKENDS = ("reference", "scan")
NEG = float("-inf")
IGNORE = -100


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def row_masks(L):
    """(7, L) bool, L >= 4: full; right-padded; left-padded; a hole in the middle; left pad + hole + right pad;
    empty; a single real position amid padding."""
    m = torch.ones(7, L, dtype=torch.bool)
    m[1, L - 2 :] = False
    m[2, :2] = False
    m[3, L // 2] = False
    m[4, 0] = m[4, L // 2] = m[4, L - 1] = False
    m[5] = False
    m[6] = False
    m[6, L // 2] = True
    return m


def constrain(transitions, start, end):
    """Ban a few transitions, a start and an end in place; the all-zeros path always stays legal."""
    K = transitions.shape[0]
    if K >= 2:
        transitions[K - 1, 0] = NEG
        start[K - 1] = NEG
    if K >= 3:
        transitions[1, 1] = NEG
        end[1] = NEG


def make(K, L, *, seed=0, dtype=torch.float64, constrained=False, integer=False, mask=None):
    """emissions (B, L, K), mask (B, L), transitions (K, K), start (K,), end (K,); B = 7 rows of ``row_masks``
    unless ``mask`` is given. ``integer``: scores in {0, 1, 2}, exact in any order of additions (many ties)."""
    g = torch.Generator().manual_seed(seed)
    mask = row_masks(L) if mask is None else mask
    B = mask.shape[0]
    if integer:
        draw = lambda *shape: torch.randint(0, 3, shape, generator=g).to(dtype)  # noqa: E731
    else:
        draw = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    emissions, transitions, start, end = draw(B, L, K), draw(K, K), draw(K), draw(K)
    if constrained:
        constrain(transitions, start, end)
    return emissions, mask, transitions, start, end


def random_tags(mask, K, *, seed, unknown=0.0, pad=IGNORE):
    """Tags (B, L) in [0, K) at real positions, a fraction ``unknown`` of them -100, ``pad`` at padding."""
    g = torch.Generator().manual_seed(seed)
    tags = torch.randint(0, K, mask.shape, generator=g)
    tags = torch.where(torch.rand(mask.shape, generator=g) < unknown, IGNORE, tags)
    return torch.where(mask, tags, pad)


def close(got, expected, tol=1e-9):
    """Equal up to ``tol`` (absolute and relative), infinities included."""
    torch.testing.assert_close(got.double(), expected.double(), atol=tol, rtol=tol)


def leaves_of(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


# ----------------------------------------------------------------------------------------------------------------
# The oracle: every path of a row, enumerated
# ----------------------------------------------------------------------------------------------------------------


def enumerate_row(emissions, mask, transitions, start, end, b):
    """Row b's real positions (n,), all K^n tag paths (P, n) over them and their scores s(y) (P,), in fp64."""
    pos = mask[b].nonzero().flatten()
    n, K = len(pos), emissions.shape[-1]
    if n == 0:  # one path, the empty one, of score 0
        return pos, torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, dtype=torch.float64)
    paths = torch.tensor(list(itertools.product(range(K), repeat=n)), dtype=torch.long)  # (P, n)
    em = emissions[b, pos].detach().double()  # (n, K)
    T, s, e = (x.detach().double() for x in (transitions, start, end))
    score = s[paths[:, 0]] + em[torch.arange(n), paths].sum(1) + e[paths[:, -1]]
    score = score + T[paths[:, :-1], paths[:, 1:]].sum(1)  # (P,)
    return pos, paths, score


def ranked(paths, score):
    """Indices of the legal paths (score > -inf), best first; equal scores ordered by the reversed path
    (the lowest last tag first, then the lowest tag before it, ...: what a lowest-index backtrace picks)."""
    legal = [p for p in range(len(score)) if score[p] > NEG]
    return sorted(legal, key=lambda p: (-float(score[p]), paths[p].flip(0).tolist()))


def brute_force(emissions, mask, transitions, start, end):
    """log Z (B,), Viterbi tags (B, L) and scores (B,), marginals and max-marginals (B, L, K), in fp64.

    A row without a legal path gets Viterbi score -inf and tags -100 here (its tags are checked elsewhere)."""
    B, L, K = emissions.shape
    log_z, best = torch.zeros(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
    tags = torch.full((B, L), IGNORE, dtype=torch.long)
    marg = torch.zeros(B, L, K, dtype=torch.float64)
    max_marg = torch.zeros(B, L, K, dtype=torch.float64)
    for b in range(B):
        pos, paths, score = enumerate_row(emissions, mask, transitions, start, end, b)
        if len(pos) == 0:
            continue
        log_z[b], best[b] = torch.logsumexp(score, 0), score.max()
        order = ranked(paths, score)
        if order:
            tags[b, pos] = paths[order[0]]
        for r, t in enumerate(pos.tolist()):
            for j in range(K):
                through = paths[:, r] == j
                max_marg[b, t, j] = score[through].max()
                if log_z[b] > NEG:
                    marg[b, t, j] = torch.exp(score[through] - log_z[b]).sum()
    return log_z, tags, best, marg, max_marg


def brute_log_likelihood(emissions, mask, transitions, start, end, tags):
    """log Σ_{y agreeing with the known tags} exp s(y) - log Z per row, fp64; -inf where log Z is -inf."""
    out = []
    for b in range(emissions.shape[0]):
        pos, paths, score = enumerate_row(emissions, mask, transitions, start, end, b)
        gold = tags[b, pos]  # (n,)
        agree = ((paths == gold) | (gold == IGNORE)).all(1)  # (P,)
        log_z = torch.logsumexp(score, 0)
        out.append(torch.logsumexp(score[agree], 0) - log_z if log_z > NEG else torch.tensor(NEG).double())
    return torch.stack(out)


def brute_nbest(emissions, mask, transitions, start, end, k):
    """(tags (B, k, L), scores (B, k)): the first k of ``ranked``; missing paths all -100 with score -inf."""
    B, L, _ = emissions.shape
    tags = torch.full((B, k, L), IGNORE, dtype=torch.long)
    scores = torch.full((B, k), NEG, dtype=torch.float64)
    for b in range(B):
        pos, paths, score = enumerate_row(emissions, mask, transitions, start, end, b)
        for q, p in enumerate(ranked(paths, score)[:k]):
            tags[b, q, pos] = paths[p]
            scores[b, q] = score[p]
    return tags, scores


def expected_max_marginals(exact, tags, mask):
    """The max-marginals the ops promise from the exact ones (B, L, K) and the Viterbi tags: on the path its value
    (the lowest finite value where it is -inf), an entry off the path that reaches it one ulp below, 0 at padding."""
    K = exact.shape[-1]
    on_path = tags.clamp(min=0)[..., None] == torch.arange(K)  # (B, L, K)
    value = exact.gather(-1, tags.clamp(min=0)[..., None])  # (B, L, 1)
    below = torch.nextafter(value, torch.full_like(value, NEG))
    floor = torch.where(value > NEG, value, torch.finfo(exact.dtype).min)
    out = torch.where(on_path, floor, torch.where(exact >= value, below, exact))
    return torch.where(mask[..., None], out, 0.0)


def check_max_marginals(mm, tags, mask, exact, tol=1e-9):
    close(mm, expected_max_marginals(exact.to(mm.dtype), tags, mask), tol)
    assert torch.equal(mm.argmax(-1)[mask], tags[mask])
    assert (mm[~mask] == 0).all()


# ----------------------------------------------------------------------------------------------------------------
# 1. Brute force, fp64
# ----------------------------------------------------------------------------------------------------------------

SIZES = [(1, 4), (2, 5), (3, 6), (4, 4), (5, 5)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("K, L", SIZES)
def test_matches_brute_force(K, L, constrained, backend):
    args = make(K, L, seed=10 * K + L, constrained=constrained)
    mask = args[1]
    log_z, tags_bf, best, marg, max_marg = brute_force(*args)

    z = crf_log_partition(*args, backend=backend)
    assert z.dtype == torch.float64 and z.shape == (7,)
    close(z, log_z)
    assert z[5] == 0  # the empty row

    tags, score = crf_viterbi(*args, backend=backend)
    assert tags.dtype == torch.int64 and tags.shape == mask.shape and score.dtype == torch.float64
    assert torch.equal(tags, tags_bf)
    close(score, best)
    assert (tags[~mask] == IGNORE).all() and score[5] == 0

    got = crf_marginals(*args, backend=backend)
    assert got.dtype == torch.float64
    close(got, marg)
    close(got.sum(-1)[mask], torch.ones(int(mask.sum()), dtype=torch.float64))

    check_max_marginals(crf_max_marginals(*args, backend=backend), tags, mask, max_marg)
    # the best path through a tag at a real position is at most the best path; equality on the Viterbi tag
    close(torch.where(mask, max_marg.amax(-1), 0.0), torch.where(mask, best[:, None], 0.0))

    for unknown, pad in ((0.0, IGNORE), (0.5, 0)):  # full tags; partial tags (-100 at real positions)
        gold = random_tags(mask, K, seed=K + L, unknown=unknown, pad=pad)
        ll = crf_log_likelihood(*args, gold, backend=backend)
        assert ll.dtype == torch.float64
        close(ll, brute_log_likelihood(*args, gold))
        assert ll[5] == 0
    # the Viterbi path's likelihood is its score minus log Z; all tags unknown marginalise to log p = 0
    close(crf_log_likelihood(*args, tags_bf, backend=backend), best - log_z)
    close(crf_log_likelihood(*args, torch.full_like(tags_bf, IGNORE), backend=backend), torch.zeros(7).double())


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("K, L", [(1, 4), (2, 4), (3, 5), (5, 4)])
@pytest.mark.parametrize("k", [1, 3, 40])
def test_nbest_matches_brute_force(K, L, k, constrained):
    """k = 40 exceeds the number of paths of the short rows (and of every row for K <= 2): those are -100 / -inf."""
    args = make(K, L, seed=K * L + k, constrained=constrained)
    tags, scores = crf_nbest(*args, k)
    assert tags.shape == (7, k, L) and scores.shape == (7, k) and scores.dtype == torch.float64
    tags_bf, scores_bf = brute_nbest(*args, k)
    assert torch.equal(tags, tags_bf)
    close(scores, scores_bf)
    # best first, entry 0 is the Viterbi path, the empty row has one path (the empty one) of score 0
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    viterbi_tags, viterbi_score = crf_viterbi(*args, backend="reference")
    assert torch.equal(tags[:, 0], viterbi_tags) and torch.equal(scores[:, 0], viterbi_score)
    assert scores[5, 0] == 0 and (scores[5, 1:] == NEG).all() and (tags[5] == IGNORE).all()
    if k > K:  # the single-position row has only K paths
        assert (scores[6, K:] == NEG).all() and (tags[6, K:] == IGNORE).all()


def test_nbest_runs_on_reference_whatever_the_backend():
    args = make(3, 4, seed=1)
    expected = crf_nbest(*args, 4, backend="reference")
    for backend in ("auto", "scan", "triton"):
        got = crf_nbest(*args, 4, backend=backend)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# ----------------------------------------------------------------------------------------------------------------
# 2. Parity with pytorch-crf
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B, K, L", [(1, 1, 1), (1, 4, 7), (5, 3, 9), (8, 9, 16), (3, 17, 5)])
def test_matches_pytorch_crf(B, K, L, backend):
    torchcrf = pytest.importorskip("torchcrf")
    g = torch.Generator().manual_seed(B * 100 + K * 10 + L)
    crf = torchcrf.CRF(K, batch_first=True)
    with torch.no_grad():  # larger than its default init, so the comparison is not dominated by emissions
        for p in (crf.transitions, crf.start_transitions, crf.end_transitions):
            p.copy_(torch.randn(p.shape, generator=g))
    emissions = torch.randn(B, L, K, generator=g) * 2
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    mask = torch.arange(L) < lengths[:, None]  # (B, L) right-padded, the first position real (pytorch-crf needs it)
    gold = torch.randint(0, K, (B, L), generator=g)

    em_theirs = emissions.clone().requires_grad_()
    ll_theirs = crf(em_theirs, gold, mask, reduction="none")
    ll_theirs.sum().backward()

    em, T, s, e = leaves_of(emissions, crf.transitions, crf.start_transitions, crf.end_transitions)
    ll = crf_log_likelihood(em, mask, T, s, e, torch.where(mask, gold, IGNORE), backend=backend)
    assert ll.dtype == torch.float32
    torch.testing.assert_close(ll, ll_theirs.detach(), atol=1e-4, rtol=1e-5)
    ll.sum().backward()
    for ours, theirs in ((em, em_theirs), (T, crf.transitions), (s, crf.start_transitions), (e, crf.end_transitions)):
        expected = torch.zeros_like(ours) if theirs.grad is None else theirs.grad  # L = 1: no transition used
        torch.testing.assert_close(ours.grad, expected, atol=1e-4, rtol=1e-4)

    params = [p.detach() for p in (crf.transitions, crf.start_transitions, crf.end_transitions)]
    tags, _ = crf_viterbi(emissions, mask, *params, backend=backend)
    decoded = crf.decode(emissions, mask)
    for b in range(B):
        assert tags[b, : lengths[b]].tolist() == decoded[b]
        assert (tags[b, lengths[b] :] == IGNORE).all()


# ----------------------------------------------------------------------------------------------------------------
# 3. Exact ties
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("K, L, seed", [(2, 5, 0), (3, 5, 1), (3, 6, 2), (4, 4, 3), (5, 4, 4)])
@pytest.mark.parametrize("constrained", [False, True])
def test_ties_go_to_the_lowest_index(K, L, seed, constrained):
    """Scores in {0, 1, 2} (fp32, exact in any order of additions): many paths tie. The Viterbi path is the one a
    lowest-index backtrace picks, the same on every backend and every call; max-marginals keep argmax = Viterbi."""
    args = make(K, L, seed=seed, dtype=torch.float32, integer=True, constrained=constrained)
    mask = args[1]
    _, tags_bf, best, _, max_marg = brute_force(*args)
    results = [crf_viterbi(*args, backend=backend) for backend in BACKENDS for _ in range(2)]
    for tags, score in results:
        assert torch.equal(tags, tags_bf)
        assert torch.equal(score.double(), best)
    for backend in BACKENDS:
        mm = crf_max_marginals(*args, backend=backend)
        check_max_marginals(mm, tags_bf, mask, max_marg, tol=0)
        assert torch.equal(mm, crf_max_marginals(*args, backend=backend))
    # the n-best list orders equal scores the same way, and k = 1 is the Viterbi path
    nb_tags, nb_scores = crf_nbest(*args, 6)
    bf_tags, bf_scores = brute_nbest(*args, 6)
    assert torch.equal(nb_tags, bf_tags) and torch.equal(nb_scores.double(), bf_scores)


def test_all_equal_scores_give_tag_zero():
    """Every path ties: the Viterbi path is all zeros, and every max-marginal off it is one ulp below."""
    args = make(4, 5, dtype=torch.float32, integer=True)
    emissions, mask, transitions, start, end = (torch.zeros_like(t) if t.is_floating_point() else t for t in args)
    for backend in BACKENDS:
        tags, score = crf_viterbi(emissions, mask, transitions, start, end, backend=backend)
        assert torch.equal(tags, torch.where(mask, 0, IGNORE)) and (score == 0).all()
        mm = crf_max_marginals(emissions, mask, transitions, start, end, backend=backend)
        assert (mm[..., 0][mask] == 0).all()
        assert (mm[..., 1:][mask] == torch.nextafter(torch.tensor(0.0), torch.tensor(-1.0))).all()


# ----------------------------------------------------------------------------------------------------------------
# 4. -inf constraints
# ----------------------------------------------------------------------------------------------------------------


def staircase(dtype=torch.float64):
    """K = 3 with the only legal moves start -> 0 -> 1 -> 2 -> 2 ... -> end: rows with fewer than 3 real positions
    have no legal path, longer ones exactly one (0, 1, 2, 2, ...). Rows of ``row_masks(6)`` (real positions
    6, 4, 4, 5, 3, 0, 1) plus one with 2 real positions around a hole."""
    L, K = 6, 3
    mask = torch.cat([row_masks(L), torch.tensor([[0, 1, 0, 1, 0, 0]], dtype=torch.bool)])
    g = torch.Generator().manual_seed(0)
    emissions = torch.randn(8, L, K, generator=g, dtype=dtype)
    transitions = torch.full((K, K), NEG, dtype=dtype)
    transitions[0, 1], transitions[1, 2], transitions[2, 2] = 0.5, -0.3, 0.2
    start = torch.tensor([0.1, NEG, NEG], dtype=dtype)
    end = torch.tensor([NEG, NEG, 0.7], dtype=dtype)
    return emissions, mask, transitions, start, end


@pytest.mark.parametrize("backend", BACKENDS)
def test_banned_paths_give_no_nan(backend):
    args = staircase()
    emissions, mask, transitions, start, end = args
    n = mask.sum(1)
    dead = (n > 0) & (n < 3)  # rows with real positions but no legal path
    only = torch.where(mask, (mask.cumsum(1) - 1).clamp(max=2), IGNORE)  # the one legal path (0, 1, 2, 2, ...)

    log_z = crf_log_partition(*args, backend=backend)
    assert not log_z.isnan().any()
    assert (log_z[dead] == NEG).all() and log_z[n == 0] == 0
    close(log_z, brute_force(*args)[0])

    tags, score = crf_viterbi(*args, backend=backend)
    assert not score.isnan().any() and (score[dead] == NEG).all()
    assert torch.equal(tags[~dead], only[~dead]) and (tags[mask] >= 0).all() and (tags[~mask] == IGNORE).all()
    close(score[~dead], log_z[~dead])  # one legal path: it is the whole partition function
    ref_tags, _ = crf_viterbi(*args, backend="reference")
    assert torch.equal(tags, ref_tags)  # the rows without a legal path too

    marg = crf_marginals(*args, backend=backend)
    assert not marg.isnan().any() and (marg[dead] == 0).all()
    one_hot = (only.clamp(min=0)[..., None] == torch.arange(3)) & mask[..., None]
    close(marg[~dead], one_hot[~dead].double())

    mm = crf_max_marginals(*args, backend=backend)
    assert not mm.isnan().any()
    assert torch.equal(mm.argmax(-1)[mask], tags[mask])
    on_path = mm.gather(-1, tags.clamp(min=0)[..., None])[..., 0]  # (B, L)
    assert (on_path[dead[:, None] & mask] == torch.finfo(mm.dtype).min).all()

    nb_tags, nb_scores = crf_nbest(*args, 2, backend=backend)  # at most one path per row
    alive = ~dead & (n > 0)
    assert torch.equal(nb_tags[alive, 0], only[alive])
    close(nb_scores[alive, 0], score[alive])
    assert (nb_scores[dead] == NEG).all() and (nb_tags[dead] == IGNORE).all()
    assert (nb_scores[:, 1] == NEG).all() and (nb_tags[:, 1] == IGNORE).all()

    gold = torch.where(mask, 0, IGNORE)  # all zeros: banned in every row with a real position
    for tags_in, expected in ((only, torch.where(dead, NEG, 0.0)), (gold, torch.where(n > 0, NEG, 0.0))):
        ll = crf_log_likelihood(*args, tags_in, backend=backend)
        assert not ll.isnan().any()
        close(ll, expected.double())

    # gradients: finite everywhere, 0 on banned transitions, ∂log Z/∂E = the marginals
    for loss in ("log_partition", "log_likelihood"):
        em, T, s, e = leaves_of(emissions, transitions, start, end)
        if loss == "log_partition":
            out = crf_log_partition(em, mask, T, s, e, backend=backend)
        else:
            out = crf_log_likelihood(em, mask, T, s, e, torch.where(mask, only, IGNORE), backend=backend)
        out.sum().backward()
        for grad in (em.grad, T.grad, s.grad, e.grad):
            assert torch.isfinite(grad).all(), loss
        assert (T.grad[transitions == NEG] == 0).all() and (s.grad[1:] == 0).all() and (e.grad[:2] == 0).all()
        if loss == "log_partition":
            close(em.grad, marg)
        else:  # a one-path model: the gold path is certain, nothing to learn
            close(em.grad, torch.zeros_like(em.grad))


def test_banned_paths_marginals_backward_is_finite():
    """The reference's marginals are differentiable; their backward stays NaN-free under -inf constraints."""
    emissions, mask, transitions, start, end = staircase()
    em, T, s, e = leaves_of(emissions, transitions, start, end)
    weights = torch.randn(emissions.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (crf_marginals(em, mask, T, s, e, backend="reference") * weights).sum().backward()
    for grad in (em.grad, T.grad, s.grad, e.grad):
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_transition_banned(backend):
    """Only rows with one real position have legal paths; the rest are -inf without NaN, gradients included."""
    emissions, mask, _, start, end = make(3, 5, seed=4)
    transitions = torch.full((3, 3), NEG, dtype=torch.float64)
    em, T, s, e = leaves_of(emissions, transitions, start, end)
    log_z = crf_log_partition(em, mask, T, s, e, backend=backend)
    n = mask.sum(1)
    assert torch.equal(log_z.isneginf(), n > 1)
    log_z.sum().backward()
    assert torch.isfinite(em.grad).all() and torch.isfinite(T.grad).all() and (T.grad == 0).all()
    assert not crf_max_marginals(emissions, mask, transitions, start, end, backend=backend).isnan().any()


@pytest.mark.parametrize("penalty", [NEG, -1e4])
def test_scan_matches_reference_at_large_scores(penalty):
    """fp32 at the scale of a badly trained tagger (emissions ~ 50, transitions ~ 20) with BIO-style constraints,
    as -inf or as a large finite penalty, and a tag that can never be followed or end a path: the scan's rescaled
    exp-space products still agree with the reference, values and gradients."""
    B, L, K = 6, 40, 9
    g = torch.Generator().manual_seed(5)
    emissions = torch.randn(B, L, K, generator=g) * 50
    transitions, start, end = torch.randn(K, K, generator=g) * 20, torch.randn(K, generator=g) * 20, torch.randn(K)
    for j in range(1, K, 2):  # an I- tag (odd j) only after its B- (j + 1) or itself
        allowed = {j, min(j + 1, K - 1)}
        transitions[[i for i in range(K) if i not in allowed], j] = penalty
        start[j] = penalty
    transitions[K - 1, :], end[K - 1] = penalty, penalty  # a dead end
    mask = torch.arange(L) < torch.tensor([L, 33, 17, 5, 1, 0])[:, None]
    tags, _ = crf_viterbi(emissions, mask, transitions, start, end, backend="reference")
    results = {}
    for backend in BACKENDS:
        leaves = leaves_of(emissions, transitions, start, end)
        ll = crf_log_likelihood(leaves[0], mask, *leaves[1:], torch.where(tags == 0, IGNORE, tags), backend=backend)
        grads = torch.autograd.grad(ll.sum(), leaves)
        results[backend] = (crf_log_partition(emissions, mask, transitions, start, end, backend=backend), ll,
                            crf_marginals(emissions, mask, transitions, start, end, backend=backend), *grads)
        assert torch.equal(crf_viterbi(emissions, mask, transitions, start, end, backend=backend)[0], tags)
    for got, expected in zip(results["scan"], results["reference"]):
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_forms_and_no_positions(backend):
    """An integer 0/1 mask and mask=None mean the same as the bool mask; L = 0 gives empty rows."""
    emissions, mask, transitions, start, end = make(3, 5, seed=8, constrained=True)
    expected = all_results((emissions, mask, transitions, start, end), backend)
    for form in (mask.long(), mask.to(torch.uint8), mask.int()):
        got = all_results((emissions, form, transitions, start, end), backend)
        for name in expected:
            assert torch.equal(got[name], expected[name]), name
    full = all_results((emissions, None, transitions, start, end), backend)
    ones = all_results((emissions, torch.ones_like(mask), transitions, start, end), backend)
    for name in full:
        assert torch.equal(full[name], ones[name]), name

    none = all_results((emissions[:, :0], mask[:, :0], transitions, start, end), backend)
    assert (none["log_z"] == 0).all() and (none["score"] == 0).all() and none["tags"].shape == (7, 0)
    assert none["marginals"].shape == none["max_marginals"].shape == (7, 0, 3)
    ll = crf_log_likelihood(emissions[:, :0], None, transitions, start, end, mask.long()[:, :0], backend=backend)
    assert (ll == 0).all()
    nb_tags, nb_scores = crf_nbest(emissions[:, :0], None, transitions, start, end, 2, backend=backend)
    assert nb_tags.shape == (7, 2, 0) and (nb_scores[:, 0] == 0).all() and (nb_scores[:, 1] == NEG).all()


# ----------------------------------------------------------------------------------------------------------------
# 5. Gradients
# ----------------------------------------------------------------------------------------------------------------


def small_fp64(constrained):
    """B = 4 (full, right-padded, left pad + hole, empty), L = 4, K = 3, fp64."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    return make(3, 4, seed=7, mask=mask, constrained=constrained)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constrained", [False, True])
def test_gradcheck_log_partition(backend, constrained):
    emissions, mask, transitions, start, end = small_fp64(constrained)
    fn = lambda em, T, s, e: crf_log_partition(em, mask, T, s, e, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves_of(emissions, transitions, start, end))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constrained", [False, True])
def test_gradcheck_log_likelihood(backend, constrained):
    emissions, mask, transitions, start, end = small_fp64(constrained)
    gold = torch.where(mask, 0, IGNORE)  # the all-zeros path is legal under the constraints
    gold[0, 2] = IGNORE  # and one unknown tag
    fn = lambda em, T, s, e: crf_log_likelihood(em, mask, T, s, e, gold, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves_of(emissions, transitions, start, end))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_of_log_partition_is_the_marginals(backend):
    args = make(4, 6, seed=11, constrained=True)
    emissions, mask = args[0], args[1]
    em = emissions.clone().requires_grad_()
    (grad,) = torch.autograd.grad(crf_log_partition(em, *args[1:], backend=backend).sum(), em)
    for other in BACKENDS:
        close(grad, crf_marginals(*args, backend=other))
    assert (grad[~mask] == 0).all()


def test_backends_agree_on_all_gradients():
    args = make(5, 9, seed=12, constrained=True)
    gold = random_tags(args[1], 5, seed=1, unknown=0.3)
    gold = torch.where(gold == 4, 0, gold)  # keep the gold paths legal: never the banned 4 -> 0
    grads = []
    for backend in BACKENDS:
        leaves = leaves_of(args[0], *args[2:])
        ll = crf_log_likelihood(leaves[0], args[1], *leaves[1:], gold, backend=backend)
        grads.append(torch.autograd.grad(ll.sum(), leaves))
    for a, b in zip(*grads):
        close(a, b)


def test_scan_gradients_under_create_graph_and_a_clear_error_for_a_double_backward():
    """Under create_graph=True the scan's written-out backward gives the reference's first-order gradients (also
    through "auto", which takes the scan for these few tags); differentiating them again (a penalty on the input
    gradient) is a clear error naming the reference, never a gradient that silently lacks the penalty's part."""
    args = make(3, 5, seed=13, constrained=True)
    gold = torch.where(args[1], 0, IGNORE)  # the all-zeros path is legal under the constraints
    first = {}
    for backend in ("reference", "scan", "auto"):
        leaves = leaves_of(args[0], *args[2:])
        nll = -crf_log_likelihood(leaves[0], args[1], *leaves[1:], gold, backend=backend).sum()
        (first[backend],) = torch.autograd.grad(nll, leaves[0], create_graph=True)  # (B, L, K)
        loss = nll + first[backend].square().sum()
        if backend == "reference":
            loss.backward()  # autograd's double backward: the transitions get the penalty's part too
            assert torch.isfinite(leaves[1].grad).all()
        else:
            with pytest.raises(RuntimeError, match=r"crf scan backend.*double backward.*backend='reference'"):
                loss.backward()
    close(first["scan"], first["reference"])
    close(first["auto"], first["reference"])


@pytest.mark.parametrize("env", [None, "triton"])
def test_auto_marginals_keep_the_gradient_of_the_reference(env, monkeypatch):
    """The reference's marginals are differentiable and the scan's (or Triton's) are not: "auto", which takes the
    scan for a few tags on a CPU, returns the reference's marginals with their gradient when one is wanted (also when
    BIZOO_KERNEL_BACKEND asks for Triton), never a silently detached tensor; without one it keeps its choice."""
    if env is not None:
        if not dispatch.triton_available():
            pytest.skip("BIZOO_KERNEL_BACKEND=triton needs the triton package")
        monkeypatch.setenv("BIZOO_KERNEL_BACKEND", env)
    emissions, mask, transitions, start, end = make(3, 5, seed=14)
    weights = torch.randn(emissions.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = {}
    for backend in ("reference", "auto"):
        leaves = leaves_of(emissions, transitions)
        marginals = crf_marginals(leaves[0], mask, leaves[1], start, end, backend=backend)
        assert marginals.requires_grad, backend
        grads[backend] = torch.autograd.grad((marginals * weights).sum(), leaves)
    for a, b in zip(grads["auto"], grads["reference"]):
        close(a, b)
    if env is None:  # nothing requires grad: the scan's values, as before
        close(crf_marginals(emissions, mask, transitions, start, end, backend="auto"),
              crf_marginals(emissions, mask, transitions, start, end, backend="scan"), tol=0)


# ----------------------------------------------------------------------------------------------------------------
# 6. Input validation
# ----------------------------------------------------------------------------------------------------------------


def _good():
    """Valid inputs, B = 2, L = 3, K = 4, fp32: emissions, mask, transitions, start, end, tags."""
    K = 4
    return dict(
        emissions=torch.randn(2, 3, K),
        mask=torch.ones(2, 3, dtype=torch.bool),
        transitions=torch.randn(K, K),
        start=torch.randn(K),
        end=torch.randn(K),
        tags=torch.zeros(2, 3, dtype=torch.long),
    )


def _bad(name):
    """``_good()`` with one input spoiled as ``name`` says: (kwargs, the expected message)."""
    K = 4
    kw = _good()
    spoil = {
        "emissions 2 dims": ("emissions", torch.randn(3, K), r"emissions must have 3 dims"),
        "emissions int": ("emissions", torch.zeros(2, 3, K, dtype=torch.long), r"emissions must be a floating"),
        "emissions list": ("emissions", [[0.0]], r"emissions must be a torch.Tensor"),
        "transitions K": ("transitions", torch.randn(K + 1, K + 1), r"transitions must have shape \(4, 4\)"),
        "start K": ("start", torch.randn(K - 1), r"start must have shape \(4,\)"),
        "end 2 dims": ("end", torch.randn(1, K), r"end must have shape \(4,\)"),
        "mask shape": ("mask", torch.ones(2, 4, dtype=torch.bool), r"mask must have shape \(B, L\) = \(2, 3\)"),
        "mask values": ("mask", torch.tensor([[1, 2, 1], [1, 1, 0]]), r"mask must hold only 0 .* and 1"),
        "mask float": ("mask", torch.ones(2, 3), r"mask must be bool or integer"),
        "tags too big": ("tags", torch.tensor([[0, 4, 0], [0, 0, 0]]), r"tags at real positions must be in \[0, 4\)"),
        "tags negative": ("tags", torch.tensor([[0, 0, 0], [0, -1, 0]]), r"got -1 at \(batch 1, position 1\)"),
        "tags shape": ("tags", torch.zeros(2, 2, dtype=torch.long), r"tags must have shape"),
        "tags float": ("tags", torch.zeros(2, 3), r"tags must be an integer tensor"),
        "transitions NaN": ("transitions", torch.full((K, K), float("nan")), r"transitions must hold finite scores"),
        "start +inf": ("start", torch.tensor([0.0, float("inf"), 0.0, 0.0]), r"start must hold finite scores"),
    }[name]
    kw[spoil[0]] = spoil[1]
    return kw, spoil[2]


BAD = [
    "emissions 2 dims",
    "emissions int",
    "emissions list",
    "transitions K",
    "start K",
    "end 2 dims",
    "mask shape",
    "mask values",
    "mask float",
    "transitions NaN",
    "start +inf",
]
BAD_TAGS = ["tags too big", "tags negative", "tags shape", "tags float"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", BAD)
def test_bad_inputs(name, backend):
    kw, message = _bad(name)
    tags = kw.pop("tags")
    args = tuple(kw.values())
    for op in (crf_log_partition, crf_viterbi, crf_marginals, crf_max_marginals):
        with pytest.raises(ValueError, match=message):
            op(*args, backend=backend)
    with pytest.raises(ValueError, match=message):
        crf_log_likelihood(*args, tags, backend=backend)
    with pytest.raises(ValueError, match=message):
        crf_nbest(*args, 2, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", BAD_TAGS)
def test_bad_tags(name, backend):
    kw, message = _bad(name)
    with pytest.raises(ValueError, match=message):
        crf_log_likelihood(*kw.values(), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8])
def test_tags_of_any_integer_dtype(dtype, backend):
    """The checks take tags of any integer dtype: the likelihood is that of the same tags as int64, fully labelled
    (the gold path's score) and partially labelled (-100, where the dtype holds it)."""
    emissions, mask, transitions, start, end = make(4, 5, seed=3)
    for unknown in (0.0, 0.3):
        if unknown and dtype == torch.uint8:
            continue  # -100 does not fit
        tags = random_tags(mask, 4, seed=4, unknown=unknown, pad=0 if dtype == torch.uint8 else IGNORE)
        want = crf_log_likelihood(emissions, mask, transitions, start, end, tags, backend=backend)
        got = crf_log_likelihood(emissions, mask, transitions, start, end, tags.to(dtype), backend=backend)
        close(got, want, tol=0)


def test_tags_at_padding_are_not_checked():
    kw, _ = _bad("tags too big")
    kw["mask"] = torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool)  # the bad tag sits at padding
    ll = crf_log_likelihood(*kw.values(), backend="reference")
    assert torch.isfinite(ll).all()


@pytest.mark.parametrize("k", [0, -1, 2.0, True, None])
def test_bad_k(k):
    kw = _good()
    kw.pop("tags")
    with pytest.raises(ValueError, match=r"k must be a positive int"):
        crf_nbest(*kw.values(), k)


ALL_OPS = [
    (crf_log_partition, ()),
    (crf_viterbi, ()),
    (crf_marginals, ()),
    (crf_max_marginals, ()),
    (crf_nbest, (2,)),
    (crf_log_likelihood, (torch.zeros(2, 3, dtype=torch.long),)),
]


@pytest.mark.parametrize("op, extra", ALL_OPS)
def test_unknown_backend(op, extra):
    kw = _good()
    kw.pop("tags")
    with pytest.raises(ValueError, match=r"backend must be one of .*'reference'.*got 'cuda'"):
        op(*kw.values(), *extra, backend="cuda")


# ----------------------------------------------------------------------------------------------------------------
# 7. Half precision and autocast
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_emissions_give_fp32(half, backend):
    emissions, mask, transitions, start, end = make(5, 7, seed=21, dtype=torch.float32, constrained=True)
    tags = random_tags(mask, 5, seed=2, unknown=0.3).clamp(max=3)  # never the banned 4 -> 0
    low = emissions.to(half)
    up = low.float()  # what the op computes with: the half values, upcast exactly

    def run(em):
        return {
            "log_z": crf_log_partition(em, mask, transitions, start, end, backend=backend),
            "ll": crf_log_likelihood(em, mask, transitions, start, end, tags, backend=backend),
            "viterbi": crf_viterbi(em, mask, transitions, start, end, backend=backend)[1],
            "marginals": crf_marginals(em, mask, transitions, start, end, backend=backend),
            "max_marginals": crf_max_marginals(em, mask, transitions, start, end, backend=backend),
        }

    got, exact, full = run(low), run(up), run(emissions)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = run(low)
    coarse = 5e-2 if half == torch.bfloat16 else 5e-3
    for name in got:
        assert got[name].dtype == torch.float32 and autocast[name].dtype == torch.float32, name
        torch.testing.assert_close(got[name], exact[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(autocast[name], exact[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[name], full[name], atol=coarse * 10, rtol=coarse)
    # gradients flow back to the half emissions in their own dtype
    em = low.clone().requires_grad_()
    crf_log_partition(em, mask, transitions, start, end, backend=backend).sum().backward()
    assert em.grad.dtype == half and torch.isfinite(em.grad.float()).all()


def test_autocast_does_not_lower_fp32_parameters():
    """Under autocast with fp32 inputs the ops still compute and return fp32."""
    args = make(4, 6, seed=22, dtype=torch.float32)
    plain = crf_log_partition(*args, backend="reference")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for backend in BACKENDS:
            z = crf_log_partition(*args, backend=backend)
            assert z.dtype == torch.float32
            torch.testing.assert_close(z, plain, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# 8. Properties: the two schedules agree; padding never matters
# ----------------------------------------------------------------------------------------------------------------


@st.composite
def crf_problems(draw):
    """Random B, L, K; each row right- or left-padded (or both), with up to two holes; fp64 Gaussian scores or
    fp32 integer scores (exact ties); optional -inf constraints; extra padding to add on either side."""
    B, L, K = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 6))
    rows = []
    for _ in range(B):
        left = draw(st.integers(0, L))
        right = draw(st.integers(0, L - left))
        row = [left <= t < L - right for t in range(L)]
        for hole in draw(st.lists(st.integers(0, L - 1), max_size=2)):
            row[hole] = False
        rows.append(row)
    integer = draw(st.booleans())
    args = make(
        K,
        L,
        seed=draw(st.integers(0, 2**31 - 1)),
        dtype=torch.float32 if integer else torch.float64,
        integer=integer,
        constrained=draw(st.booleans()),
        mask=torch.tensor(rows, dtype=torch.bool).reshape(B, L),
    )
    return args, (draw(st.integers(0, 3)), draw(st.integers(0, 3)))


def all_results(args, backend):
    tags, score = crf_viterbi(*args, backend=backend)
    return {
        "log_z": crf_log_partition(*args, backend=backend),
        "tags": tags,
        "score": score,
        "marginals": crf_marginals(*args, backend=backend),
        "max_marginals": crf_max_marginals(*args, backend=backend),
    }


def pad(args, left, right, seed):
    """The same rows with ``left``/``right`` extra padded positions holding large random emissions."""
    emissions, mask, transitions, start, end = args
    B, _, K = emissions.shape
    g = torch.Generator().manual_seed(seed)
    noise = lambda n: (torch.randn(B, n, K, generator=g, dtype=torch.float64) * 50).to(emissions.dtype)  # noqa: E731
    off = lambda n: torch.zeros(B, n, dtype=torch.bool)  # noqa: E731
    emissions = torch.cat([noise(left), emissions, noise(right)], 1)
    return emissions, torch.cat([off(left), mask, off(right)], 1), transitions, start, end


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(crf_problems())
def test_schedules_agree_and_padding_is_invisible(problem):
    args, (left, right) = problem
    mask = args[1]
    tol = 1e-9 if args[0].dtype == torch.float64 else 1e-5
    results = {backend: all_results(args, backend) for backend in BACKENDS}
    ref, other = results["reference"], results["scan"]
    close(other["log_z"], ref["log_z"], tol)
    assert torch.equal(other["tags"], ref["tags"])
    close(other["score"], ref["score"], tol)
    close(other["marginals"], ref["marginals"], tol)
    close(other["max_marginals"], ref["max_marginals"], tol)
    for res in results.values():
        assert torch.equal(res["max_marginals"].argmax(-1)[mask], res["tags"][mask])
        assert not any(v.isnan().any() for v in res.values() if v.is_floating_point())

    padded = pad(args, left, right, seed=left * 4 + right)
    L = mask.shape[1]
    for backend, res in results.items():
        more = all_results(padded, backend)
        close(more["log_z"], res["log_z"], tol)
        close(more["score"], res["score"], tol)
        for name in ("tags", "marginals", "max_marginals"):
            inner = more[name][:, left : left + L]
            assert (more[name][:, :left] == (IGNORE if name == "tags" else 0)).all()
            assert (more[name][:, left + L :] == (IGNORE if name == "tags" else 0)).all()
            if name == "tags":
                assert torch.equal(inner, res[name])
            else:
                close(inner, res[name], tol)
        # and a row alone, its real positions packed together, gives the same numbers at those positions
        for b in range(mask.shape[0]):
            pos = mask[b].nonzero().flatten()
            alone = (args[0][b : b + 1, pos], None, *args[2:])
            single = all_results(alone, backend)
            close(single["log_z"], res["log_z"][b : b + 1], tol)
            assert torch.equal(single["tags"][0], res["tags"][b, pos])
            close(single["marginals"][0], res["marginals"][b, pos], tol)
            close(single["max_marginals"][0], res["max_marginals"][b, pos], tol)


def test_auto_sends_scores_of_a_large_spread_to_the_reference():
    """The scan's exp-space products underflow past ~700 nats; "auto" on a CPU must not pick it there."""
    from bizoo.kernels import crf

    g = torch.Generator().manual_seed(0)
    e = torch.randn(3, 12, 5, generator=g)
    T, start, end = torch.randn(5, 5, generator=g) * 300, torch.zeros(5), torch.zeros(5)
    T[0, 2] = float("-inf")
    assert crf._backend("log_partition", "auto", e, T, start, end) == "reference"
    assert crf._backend("log_partition", "auto", e, T / 300, start, end) == "scan"
    expected = crf.crf_log_partition(e, None, T, start, end, backend="reference")
    torch.testing.assert_close(crf.crf_log_partition(e, None, T, start, end), expected)
    with pytest.raises(ValueError, match="emissions"):
        crf.crf_log_partition([[0.0]], None, T, start, end)


@pytest.mark.parametrize("op", ["crf_log_partition", "crf_log_likelihood", "crf_marginals"])
def test_scan_by_name_refuses_scores_of_a_spread_it_cannot_hold(op):
    """backend="scan" by name on finite scores spanning thousands of nats: its exp-space log Z is -inf and its
    marginals zero (std 1000 below), so a clear error instead; a large finite penalty (BIO constraints as -1e4),
    max-plus ops (exact at any spread) and small spreads still run on the scan."""
    from bizoo.kernels import crf
    from bizoo.kernels.crf import scan

    g = torch.Generator().manual_seed(1)
    e = torch.randn(3, 40, 5, generator=g, dtype=torch.float64) * 100
    T, start, end = (torch.randn(*shape, generator=g, dtype=torch.float64) * 1000 for shape in ((5, 5), (5,), (5,)))
    tags = torch.zeros(3, 40, dtype=torch.long)
    extra = (tags,) if op == "crf_log_likelihood" else ()
    mask = torch.arange(40) < torch.tensor([40, 20, 1])[:, None]
    assert torch.isinf(scan.log_partition(e, mask, T, start, end)[:2]).all()  # what the scan itself gives
    assert (scan.marginals(e, mask, T, start, end)[:2] == 0).all()
    with pytest.raises(ValueError, match=r"backend='scan'.*lost.*range.*backend='reference'"):
        getattr(crf, op)(e, mask, T, start, end, *extra, backend="scan")
    best, _ = crf.crf_viterbi(e, mask, T, start, end, backend="scan")
    assert torch.equal(best, crf.crf_viterbi(e, mask, T, start, end, backend="reference")[0])
    for small in ((e / 100, mask, T / 1000, start / 1000, end / 1000),
                  (e / 100, mask, torch.where(T > 0, -1e4, T / 1000), start / 1000, end / 1000)):
        torch.testing.assert_close(getattr(crf, op)(*small, *extra, backend="scan"),
                                   getattr(crf, op)(*small, *extra, backend="reference"))


# ----------------------------------------------------------------------------------------------------------------
# 9. The eager Viterbi (rows packed, the backtrace along the path) against the steps traced graphs run
# ----------------------------------------------------------------------------------------------------------------


def assorted_masks(B, L, seed):
    """(B, L) bool, B >= 4: a full row, an empty one, a single real position, then rows with random left and right
    padding and up to three holes (every row a different length where L allows)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[0] = True
    mask[2, L // 2] = True
    for b in range(3, B):
        left, right = (int(torch.randint(0, max(L // 3, 1), (1,), generator=g)) for _ in range(2))
        mask[b, left : L - right] = True
        mask[b, torch.randint(0, L, (3,), generator=g)] = False
    return mask


def wide_problem(B, K, L, *, seed, integer, constrained):
    """Scores far from the small init (so that the path depends on transitions): fp64 Gaussian emissions of std 3
    and transitions of std 2, or fp32 scores in {0, 1, 2} (exact ties); -inf constraints optional."""
    args = make(K, L, seed=seed, dtype=torch.float32 if integer else torch.float64, integer=integer,
                constrained=constrained, mask=assorted_masks(B, L, seed))
    if integer:
        return args
    emissions, mask, transitions, start, end = args
    return emissions * 3, mask, transitions * 2, start, end


VITERBI_CASES = [  # B, K, L
    (12, 1, 9), (12, 3, 6), (12, 9, 40), (12, 45, 40), (5, 45, 1),
]


#: The eager schedules' layouts: (``BATCH_LAST_MIN_ROWS``, ``ROW_MULTIPLE``) forcing each whatever the batch.
LAYOUTS = {"batch-last padded": (0, 32), "batch-last": (0, 1), "batch-major": (10**9, 32)}


def test_eager_layout_by_op_and_rows():
    """The eager schedules lay the packed scores out batch-major from 2 rows up to ``BATCH_LAST_MIN_ROWS`` of the op
    (8 for Viterbi, 16 for the max-marginals), batch-last above and for one row, the rows then padded with zeros to
    a multiple of 32."""
    from bizoo.kernels.crf import reference

    def packing(B, op, e=None):
        e = torch.randn(B, 7, 5) if e is None else e
        return reference._pack(e, torch.ones(B, 7, dtype=torch.bool), op)

    layouts = {(op, B): (packing(B, op).batch_last, tuple(packing(B, op).packed.shape))
               for op in ("viterbi", "max_marginals") for B in (1, 2, 7, 8, 15, 16, 33)}
    assert layouts == {
        ("viterbi", 1): (True, (7, 5, 1)), ("viterbi", 2): (False, (7, 2, 5)), ("viterbi", 7): (False, (7, 7, 5)),
        ("viterbi", 8): (True, (7, 5, 32)), ("viterbi", 15): (True, (7, 5, 32)), ("viterbi", 16): (True, (7, 5, 32)),
        ("viterbi", 33): (True, (7, 5, 64)), ("max_marginals", 1): (True, (7, 5, 1)),
        ("max_marginals", 2): (False, (7, 2, 5)), ("max_marginals", 7): (False, (7, 7, 5)),
        ("max_marginals", 8): (False, (7, 8, 5)), ("max_marginals", 15): (False, (7, 15, 5)),
        ("max_marginals", 16): (True, (7, 5, 32)), ("max_marginals", 33): (True, (7, 5, 64))}
    for op in ("viterbi", "max_marginals"):  # stored contiguous: the sums' strides follow the layout
        assert all(packing(B, op).packed.is_contiguous() for B in (1, 2, 7, 8, 16, 32, 33))
    e = torch.randn(8, 7, 5)
    for op in ("viterbi", "max_marginals"):  # (N, K, B) views of the real rows, padded or not
        laid_out = packing(8, op, e)
        assert torch.equal(laid_out.tag_major(laid_out.packed), e.permute(1, 2, 0))
    assert (packing(8, "viterbi", e).packed[:, :, 8:] == 0).all()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("B, K, L", VITERBI_CASES)
def test_eager_viterbi_is_the_traced_steps(B, K, L, integer, constrained, layout, monkeypatch):
    """Eager mode packs each row's real positions and recomputes the backpointers along the path only; traced
    graphs step through every position with all backpointers. Tags and scores are identical (ties, holes, left
    padding, empty rows, rows without a legal path), with the packed length read on a CPU or, as on a GPU, the
    whole length, in every layout of the max-plus sums; the brute force agrees where it is small enough."""
    from bizoo.kernels import dispatch
    from bizoo.kernels.crf import reference

    batch_last_from, multiple = LAYOUTS[layout]
    monkeypatch.setattr(reference, "BATCH_LAST_MIN_ROWS", dict.fromkeys(reference.BATCH_LAST_MIN_ROWS, batch_last_from))
    monkeypatch.setattr(reference, "ROW_MULTIPLE", multiple)
    args = wide_problem(B, K, L, seed=B + K + L, integer=integer, constrained=constrained)
    if constrained and K >= 3:  # a tag no path can end in or go on from
        args[2][2, :], args[4][2] = NEG, NEG
    if constrained and args[1][3].any():  # row 3 without a legal path: every tag banned at a real position
        args[0][3, args[1][3].nonzero()[-1]] = NEG
    eager = crf_viterbi(*args, backend="reference")
    with monkeypatch.context() as m:  # no host read of the lengths: the packed schedule over all L positions
        m.setattr(reference, "reads_values", lambda tensor: False)
        unread = crf_viterbi(*args, backend="reference")
    with monkeypatch.context() as m:
        m.setattr(dispatch, "tracing", lambda: True)
        steps = crf_viterbi(*args, backend="reference")
    for tags, score in (eager, unread):
        assert torch.equal(tags, steps[0]) and torch.equal(score, steps[1])
    assert (eager[0][~args[1]] == IGNORE).all() and (eager[0][args[1]] >= 0).all() and eager[1][1] == 0
    assert not constrained or not args[1][3].any() or eager[1][3] == NEG
    if K ** L <= 1000:
        _, tags_bf, best, _, _ = brute_force(*args)
        legal = best > NEG
        assert torch.equal(eager[0][legal], tags_bf[legal])
        close(eager[1], best, 1e-5 if integer else 1e-9)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("B, K, L", VITERBI_CASES)
def test_eager_max_marginals_are_the_step_functions(B, K, L, integer, constrained, paired, layout, monkeypatch):
    """Eager mode runs the max-marginals on the packed schedule (δ and β^max paired or in two passes, β
    right-aligned over each row's real positions); the step functions run over every position. Identical numbers,
    on the same problems as the Viterbi test above (ties, holes, left padding, empty rows, a row without a legal
    path), with the packed length read on a CPU or not, in every schedule and layout; argmax is the Viterbi path."""
    from bizoo.kernels.crf import reference

    monkeypatch.setattr(reference, "PAIRED_MAX_SUMS", 10**9 if paired else 0)
    batch_last_from, multiple = LAYOUTS[layout]
    monkeypatch.setattr(reference, "BATCH_LAST_MIN_ROWS", dict.fromkeys(reference.BATCH_LAST_MIN_ROWS, batch_last_from))
    monkeypatch.setattr(reference, "ROW_MULTIPLE", multiple)
    args = wide_problem(B, K, L, seed=B + K + L, integer=integer, constrained=constrained)
    if constrained and K >= 3:
        args[2][2, :], args[4][2] = NEG, NEG
    if constrained and args[1][3].any():
        args[0][3, args[1][3].nonzero()[-1]] = NEG
    eager = crf_max_marginals(*args, backend="reference")
    with monkeypatch.context() as m:  # no host read of the lengths: the packed schedule over all L positions
        m.setattr(reference, "reads_values", lambda tensor: False)
        unread = crf_max_marginals(*args, backend="reference")
    steps = reference._max_marginals_steps(*reference.prepare(*args))
    assert torch.equal(eager, steps) and torch.equal(unread, steps)
    tags, _ = crf_viterbi(*args, backend="reference")
    mask = args[1]
    assert torch.equal(eager.argmax(-1)[mask], tags[mask]) and (eager[~mask] == 0).all()


@pytest.mark.parametrize("op", ["viterbi", "max_marginals"])
def test_auto_viterbi_takes_the_scan_for_small_batches_of_few_tags_only(op):
    """The packed reference beats the scan from a few rows or tags on (``SCAN_MAX_WORK``: 6000 rows × K³ with one
    thread; with two or more 7000 for Viterbi, 12000 for the max-marginals): "auto" keeps the scan for one row of 9
    or 16 tags, not for 32 rows of 9 tags nor one row of 17 (Viterbi; 24 for the max-marginals); a second thread
    lets the max-marginals take twice the work, Viterbi hardly more; the likelihood keeps its own rule."""
    from bizoo.kernels import crf

    def chosen(B, K, op=op):
        return crf._backend(op, "auto", torch.zeros(B, 128, K), torch.zeros(K, K), torch.zeros(K), torch.zeros(K))

    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 8):
            torch.set_num_threads(n)
            assert [chosen(1, 9), chosen(1, 16), chosen(4, 9)] == ["scan"] * 3
            too_many = 17 if op == "viterbi" else 25  # tags: past SCAN_MAX_TAGS
            assert [chosen(32, 9), chosen(1, too_many), chosen(1, 45)] == ["reference"] * 3
            assert [chosen(32, 9, "log_partition"), chosen(1, 24, "log_partition")] == ["scan"] * 2
            # 2 × 16³ = 8192 and 16 × 9³ = 11664: over the budget of one thread, within that of two (or more) for the
            # max-marginals only; 64 × 5³ = 8000 the same; 8 × 9³ = 5832 within every budget
            twice = "reference" if n == 1 or op == "viterbi" else "scan"
            assert [chosen(2, 16), chosen(16, 9), chosen(64, 5)] == [twice] * 3
            assert chosen(8, 9) == "scan"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("op", ["log_partition", "marginals"])
def test_auto_likelihood_takes_the_scan_up_to_its_own_work_bound(op):
    """The scan of the likelihood and of the marginals beats the reference up to ``SCAN_MAX_LOG_PARTITION_WORK`` rows
    × K³ per thread (two at most): 32 rows of 9 tags and one row of 24 always, 32 rows of 17 with a second thread
    only, 64 of 17 never; past 24 tags never."""
    from bizoo.kernels import crf

    def chosen(B, K):
        return crf._backend(op, "auto", torch.zeros(B, 128, K), torch.zeros(K, K), torch.zeros(K), torch.zeros(K))

    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 8):
            torch.set_num_threads(n)
            assert [chosen(32, 9), chosen(1, 24), chosen(64, 9)] == ["scan"] * 3
            assert [chosen(64, 17), chosen(32, 24), chosen(1, 25)] == ["reference"] * 3
            assert chosen(32, 17) == ("reference" if n == 1 else "scan")  # 157k: over 80k, within 160k
    finally:
        torch.set_num_threads(threads)
