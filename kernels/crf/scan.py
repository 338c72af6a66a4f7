r"""Linear-chain CRF by an associative scan over positions: O(log L) Python steps instead of the reference's L.

The math and the legend (B batch, L length, K tags) are those of ``reference.py``; this schedule computes the same
quantities in a different order. In matrix form a row is a product of one K×K matrix per position,

    M_t[i, j] = T[i, j] + E[t, j]          a real position after the first,
    M_t[i, j] = start[j] + E[t, j]          the first real position (every row the same),
    M_t       = I  (0 on the diagonal, -inf elsewhere)   a padded position,

so that with u = (0, -inf, …, -inf) (row 0 picks the chain's beginning)

    α_t = u ⊗ M_0 ⊗ … ⊗ M_t,      β_t = M_{t+1} ⊗ … ⊗ M_{L-1} ⊗ end,      log Z = u ⊗ M_0 ⊗ … ⊗ M_{L-1} ⊗ end

in the log semiring (⊕ = log-sum-exp, ⊗ = +; (A ⊗ B)[i, j] = LSE_k(A[i, k] + B[k, j])) for the partition function
and the marginals, and in the max-plus semiring (⊕ = max) for Viterbi and the max-marginals. ⊗ is associative, so

* an **up-sweep** multiplies neighbours pairwise, level after level (L/2 + L/4 + … products, log₂ L levels), and
* two **down-sweeps** hand each block of a level the vector of everything before it (u ⊗ …, the prefix) and after
  it (… ⊗ end, the suffix): a block's left child inherits the prefix and its right child gets prefix ⊗ left
  child; a block's right child inherits the suffix and its left child gets right child ⊗ suffix. These are
  vector-matrix products (K² each), and they give α and β at every position at once.

Log semiring products run on BLAS: a matrix is kept as (P, c, s) with M[i, j] = s + log P[i, j] + c[j], P ≥ 0 of
maximum 1, c (K,) a column score in log space and s a scalar log scale. Then

    (P₁, c₁, s₁) ⊗ (P₂, c₂, s₂) = (P / m, c₂, s₁ + s₂ + max c₁ + log m),   P = (P₁ · diag(exp(c₁ - max c₁))) @ P₂,
    m = max P,

so the emissions between two blocks are folded in exactly in log space, and only the spread of one block's entries
around its maximum lives in exp space. The exp-space arithmetic runs in fp64 (also for fp32 inputs): an entry of a
block would have to lie more than ~700 nats below the block's maximum (fp32: ~87) and still matter for the result to
lose it. Max-plus products have no BLAS form: they are (…, K, K, K) sums and a max.

Gradients of log Z come from an explicit backward (no autograd graph over the scan): ∂log Z/∂E = the marginals,
∂log Z/∂start and ∂end = the marginals at the first and the last real position, and ∂log Z/∂T = the pairwise
marginals exp(α_{t'}[i] + T[i, j] + E[t, j] + β_t[j] - log Z) summed over the real positions t after the first
(t' the real position before t). That backward is first-order only: under ``create_graph=True`` its gradients
come back right, and differentiating them again (a gradient penalty, a Hessian-vector product) raises an error
naming the reference backend, which autograd differentiates twice (``dispatch.first_order_only``).
Viterbi backpointers come from the prefix vectors δ in one step, ψ_t[j] = argmax_i(δ_{t'}[i] + T[i, j]), and the
backtrace composes them as maps tag → tag by pointer doubling (log₂ L gathers). n-best lists stay on the reference.

Cost against the reference: O(L K³) work instead of O(L K²), in O(log L) Python steps instead of L: the schedule
wins for small K (``bizoo bench crf`` measures it; ``__init__.py`` records the crossover).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..dispatch import autocast_off, first_order_only
from .checks import IGNORE_INDEX, check_inputs
from .reference import first_and_last, log_likelihood_from, nudge_to_path, prepare

NEG = float("-inf")
WORK_DTYPE = torch.float64  # the exp-space arithmetic of fp32 inputs (module docstring)
# Tensors inside this module are tag-major and batch-last: vectors (K, L, N), matrices (K, K, L, N), N the rows.
# Every elementwise op then runs over long contiguous (L, N) rows: on a CPU this is ~10x faster than (N, L, K, K),
# whose innermost loops would be K long.
BROADCAST_MAX_TAGS = 16  # max-plus products: one (K, K, K, …) broadcast up to this K, a loop over k above it


def _safe_max(x: torch.Tensor) -> torch.Tensor:
    """max over dim 0 (kept), 0 where the whole slice is -inf: the shift of a max-shifted log-sum-exp."""
    m = x.amax(0, keepdim=True)
    return torch.where(m > NEG, m, 0.0)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """(K, n, N), (K, n, N) -> (K, 2n, N) with even[:, m] at 2m and odd[:, m] at 2m + 1."""
    K, n, N = even.shape
    return torch.stack([even, odd], 2).reshape(K, 2 * n, N)


class _Rows(NamedTuple):
    """What the mask says about each position, (L, N) each: real, the first real one, the real ones after the
    first, and kind = 0 padding / 1 first / 2 regular (the index of the position's leaf matrix)."""

    keep: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor
    regular: torch.Tensor
    kind: torch.Tensor

    @staticmethod
    def of(keep_bl: torch.Tensor) -> "_Rows":
        first, last = first_and_last(keep_bl)  # (B, L)
        keep, first, last = keep_bl.t().contiguous(), first.t().contiguous(), last.t().contiguous()
        regular = keep & ~first
        return _Rows(keep, first, last, regular, regular.long() * 2 + first.long())


def _select(table: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """table (3, K, K) of the padding / first / regular leaf -> (K, K, L, N) by each position's kind (a gather)."""
    _, K, _ = table.shape
    L, N = kind.shape
    flat = table.reshape(3, K * K).t()  # (K·K, 3)
    return flat.gather(1, kind.reshape(1, L * N).expand(K * K, L * N)).reshape(K, K, L, N)


def _column_scores(e, rows, start):
    """E at real positions, start + E at the first one, 0 at padding: (K, L, N), the c of every leaf."""
    return torch.where(rows.keep, e, 0.0) + torch.where(rows.first, start[:, None, None], 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Log semiring: matrices as (P, c, s) with M[i, j] = s + log P[i, j] + c[j]; P (K, K, n, N), c (K, n, N), s (n, N)
# ----------------------------------------------------------------------------------------------------------------


def _exp_transitions(T):
    """exp(T - max T) (K, K) and max T (a scalar; 0 when every transition is -inf)."""
    t_max = _safe_max(T.reshape(-1)).squeeze(0)
    return torch.exp(T - t_max), t_max


def _log_leaves(e, rows, T, start):
    """The per-position matrices M_t as (P, c, s); e (K, L, N)."""
    K = e.shape[0]
    exp_t, t_max = _exp_transitions(T)
    table = torch.stack([torch.eye(K, dtype=e.dtype, device=e.device), torch.ones_like(exp_t), exp_t])
    return _select(table, rows.kind), _column_scores(e, rows, start), torch.where(rows.regular, t_max, 0.0)


def _sum_product(A, B):
    """Σ_k A[i, k] B[k, j] over (K, K, n, N) stacks: (K, K, n, N)."""
    out = A[:, :1] * B[None, 0]
    for k in range(1, A.shape[1]):
        out.addcmul_(A[:, k : k + 1], B[None, k])
    return out


def _log_up_sweep(P, c, s):
    """Pairwise products level after level. Returns the levels, each padded to an even length with the identity
    (except the top, of length 1), as a list of (P, c, s)."""
    K, _, N = c.shape
    levels = []
    while True:
        n = c.shape[1]
        if n == 1:
            levels.append((P, c, s))
            return levels
        if n % 2:
            eye = torch.eye(K, dtype=c.dtype, device=c.device)[:, :, None, None].expand(K, K, 1, N)
            P, c, s = torch.cat([P, eye], 2), torch.cat([c, c.new_zeros(K, 1, N)], 1), torch.cat([s, s.new_zeros(1, N)])
        levels.append((P, c, s))
        c1 = c[:, 0::2]  # (K, n/2, N): the left factor's column scores, folded into the product
        shift = _safe_max(c1)  # (1, n/2, N)
        prod = _sum_product(P[:, :, 0::2] * torch.exp(c1 - shift), P[:, :, 1::2])  # (K, K, n/2, N)
        top = prod.amax((0, 1))  # (n/2, N)
        prod /= torch.where(top > 0, top, 1.0)
        s = s[0::2] + s[1::2] + shift[0] + torch.log(top)  # log 0 = -inf: no path through the block
        P, c = prod, c[:, 1::2]


def _log_vecmat(p, P, c, s):
    """p ⊗ M for log vectors p (K, n, N) and matrices (P, c, s): (K, n, N)."""
    shift = _safe_max(p)
    r = (torch.exp(p - shift).unsqueeze(1) * P).sum(0)  # Σ_i exp(p_i) P[i, j]
    return torch.log(r) + shift + c + s


def _log_matvec(P, c, s, v):
    """M ⊗ v for matrices (P, c, s) and log vectors v (K, n, N): (K, n, N)."""
    u = c + v
    shift = _safe_max(u)
    r = (P * torch.exp(u - shift).unsqueeze(0)).sum(1)  # Σ_j P[i, j] exp(c_j + v_j)
    return torch.log(r) + shift + s


def _log_down_sweeps(levels, end, L):
    """Exclusive prefixes u ⊗ M_0 ⊗ … ⊗ M_{t-1} and suffixes M_{t+1} ⊗ … ⊗ end at every leaf, (K, L, N) each."""
    K, _, N = levels[-1][1].shape
    prefix = levels[-1][1].new_full((K, 1, N), NEG)
    prefix[0] = 0.0  # u
    suffix = end[:, None, None].expand(K, 1, N)
    for P, c, s in reversed(levels[:-1]):
        n = c.shape[1]  # even
        prefix, suffix = prefix[:, : n // 2], suffix[:, : n // 2]
        prefix = _interleave(prefix, _log_vecmat(prefix, P[:, :, 0::2], c[:, 0::2], s[0::2]))
        suffix = _interleave(_log_matvec(P[:, :, 1::2], c[:, 1::2], s[1::2], suffix), suffix)
    return prefix[:, :L], suffix[:, :L]


def _log_top(levels, end, rows):
    """log Z = u ⊗ (the product of all) ⊗ end, 0 for an empty row: (N,)."""
    P, c, s = levels[-1]
    u = c[:, 0] + end[:, None]  # (K, N)
    shift = _safe_max(u)  # (1, N)
    total = torch.log((P[0, :, 0] * torch.exp(u - shift)).sum(0)) + shift[0] + s[0]
    return torch.where(rows.keep.any(0), total, 0.0)


def _alpha(prefix, e, rows, T, start):
    """Inclusive α_t = prefix_t ⊗ M_t from the exclusive prefixes (K, L, N)."""
    K, L, N = e.shape
    exp_t, t_max = _exp_transitions(T)
    shift = _safe_max(prefix)
    r = (exp_t.t() @ torch.exp(prefix - shift).reshape(K, L * N)).reshape(K, L, N)  # Σ_i exp(prefix_i) exp(T[i, j])
    step = torch.log(r) + shift + t_max + e
    return torch.where(rows.regular, step, torch.where(rows.first, start[:, None, None] + e, prefix))


def _log_forward_backward(e, rows, T, start, end):
    """log Z (N,), the exclusive prefixes, α and β (K, L, N)."""
    levels = _log_up_sweep(*_log_leaves(e, rows, T, start))
    log_z = _log_top(levels, end, rows)
    prefix, beta = _log_down_sweeps(levels, end, e.shape[1])
    return log_z, prefix, _alpha(prefix, e, rows, T, start), beta


def _posteriors(log_z, alpha, beta, rows):
    """exp(α + β - log Z) (K, L, N) at real positions of rows with a legal path, else 0; the row condition (N,) and
    log Z with 0 for the rows without a legal path."""
    ok_row = log_z > NEG
    z = torch.where(ok_row, log_z, 0.0)
    return torch.exp(torch.where(rows.keep & ok_row, alpha + beta - z, NEG)), ok_row, z


class _LogPartition(torch.autograd.Function):
    """(e (K, L, N), T, start, end, rows) in the work dtype -> log Z (N,), with an explicit backward."""

    @staticmethod
    def forward(ctx, e, T, start, end, rows):
        levels = _log_up_sweep(*_log_leaves(e, rows, T, start))
        log_z = _log_top(levels, end, rows)
        # the levels as saved tensors: freed after the backward, kept while a retained graph may run it again
        ctx.rows = rows
        ctx.save_for_backward(e, T, start, end, log_z, *(t for level in levels for t in level))
        return log_z

    @staticmethod
    @first_order_only("crf scan backend (log Z, log-likelihood)", "use backend='reference', whose gradients autograd "
                      "differentiates again")
    def backward(ctx, grad):
        e, T, start, end, log_z, *flat = ctx.saved_tensors
        levels, rows = [tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)], ctx.rows
        K, L, N = e.shape
        prefix, beta = _log_down_sweeps(levels, end, L)
        alpha = _alpha(prefix, e, rows, T, start)
        mu, ok_row, z = _posteriors(log_z, alpha, beta, rows)  # (K, L, N) = ∂log Z/∂E
        gmu = mu * grad
        d_t = d_start = d_end = None
        if ctx.needs_input_grad[1]:
            # Σ_t exp(prefix_t[i] + T[i, j] + E[t, j] + β_t[j] - log Z) over the real positions after the first, as
            # one product exp(T) ⊙ (A Bᵀ). B's exponent is clamped so that a banned transition (exp T = 0) never
            # meets an inf; the clamp binds only where the best predecessor i* has T[i*, j] < max T - clamp.
            live = rows.regular & ok_row  # (L, N)
            exp_t, t_max = _exp_transitions(T)
            shift = _safe_max(prefix)  # (1, L, N)
            A = torch.where(live, torch.exp(prefix - shift), 0.0) * grad  # (K, L, N)
            clamp = 600.0 if e.dtype == torch.float64 else 80.0
            B = torch.where(live, torch.exp((e + beta - z + shift + t_max).clamp(max=clamp)), 0.0)
            d_t = exp_t * (A.reshape(K, L * N) @ B.reshape(K, L * N).t())
        if ctx.needs_input_grad[2]:
            d_start = torch.where(rows.first, gmu, 0.0).sum((1, 2))
        if ctx.needs_input_grad[3]:
            d_end = torch.where(rows.last, gmu, 0.0).sum((1, 2))
        return gmu, d_t, d_start, d_end, None


# ----------------------------------------------------------------------------------------------------------------
# Max-plus semiring: plain log-space matrices (K, K, n, N)
# ----------------------------------------------------------------------------------------------------------------


def _eye(K, like):
    """The max-plus identity (K, K): 0 on the diagonal, -inf elsewhere."""
    return torch.full((K, K), NEG, dtype=like.dtype, device=like.device).fill_diagonal_(0.0)


def _max_leaves(e, rows, T, start):
    """M_t (K, K, L, N): T + E_t (regular), start + E_t in every row (first), the identity (padding)."""
    K = e.shape[0]
    table = torch.stack([_eye(K, e), torch.zeros_like(T), T])  # (3, K, K): the part that depends on i
    return _select(table, rows.kind) + _column_scores(e, rows, start)


def _max_product(A, B):
    """max_k A[i, k] + B[k, j] over (K, K, n, N) stacks: (K, K, n, N)."""
    K = A.shape[0]
    if K <= BROADCAST_MAX_TAGS:
        return (A.unsqueeze(2) + B.unsqueeze(0)).amax(1)  # (K_i, K_k, K_j, n, N) -> max over k
    out = A[:, :1] + B[None, 0]
    for k in range(1, K):
        torch.maximum(out, A[:, k : k + 1] + B[None, k], out=out)
    return out


def _max_up_sweep(M):
    K, _, _, N = M.shape
    levels = []
    while True:
        n = M.shape[2]
        if n == 1:
            levels.append(M)
            return levels
        if n % 2:
            M = torch.cat([M, _eye(K, M)[:, :, None, None].expand(K, K, 1, N)], 2)
        levels.append(M)
        M = _max_product(M[:, :, 0::2], M[:, :, 1::2])


def _max_down_sweeps(levels, end, L, want_suffix):
    """Exclusive max-plus prefixes (K, L, N) and, with ``want_suffix``, suffixes (the max-plus β)."""
    K, _, _, N = levels[-1].shape
    prefix = levels[-1].new_full((K, 1, N), NEG)
    prefix[0] = 0.0
    suffix = end[:, None, None].expand(K, 1, N)
    for M in reversed(levels[:-1]):
        n = M.shape[2]
        prefix = prefix[:, : n // 2]
        prefix = _interleave(prefix, (prefix.unsqueeze(1) + M[:, :, 0::2]).amax(0))
        if want_suffix:
            suffix = suffix[:, : n // 2]
            suffix = _interleave((M[:, :, 1::2] + suffix.unsqueeze(0)).amax(1), suffix)
    return prefix[:, :L], (suffix[:, :L] if want_suffix else None)


def _lowest_argmax(x, best):
    """The lowest index along dim 0 where ``x`` reaches ``best`` (its max over dim 0); faster than ``argmax(0)``."""
    ids = torch.arange(x.shape[0], dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(x == best, ids, float(x.shape[0])).amin(0).long()


def _backtrace(back, final, keep):
    """Tags (L, N) from the backpointer maps ``back`` (K, L, N) (tag at t -> tag at the previous real position,
    identity at padding) and the last tag ``final`` (N,), by pointer doubling: H_t = back_{t+1} ∘ … ∘ back_{L-1}."""
    K, L, N = back.shape
    ids = torch.arange(K, device=back.device)[:, None, None].expand(K, 1, N)
    H = torch.cat([back[:, 1:], ids], 1)  # H_t = back_{t+1} (one step), H_{L-1} = identity
    step = 1
    while step < L:
        H = torch.cat([H[:, :-step].gather(0, H[:, step:]), H[:, -step:]], 1)  # H_t ∘ H_{t+step}
        step *= 2
    tags = H.gather(0, final.view(1, 1, N).expand(1, L, N)).squeeze(0)  # (L, N)
    return torch.where(keep, tags, IGNORE_INDEX)


def _viterbi_from(prefix, e, rows, T, start, end):
    """(tags (L, N), scores (N,), δ (K, L, N)) from the exclusive max-plus prefixes (K, L, N)."""
    K, L, N = e.shape
    cand = prefix.unsqueeze(1) + T[:, :, None, None]  # (K_prev, K_next, L, N)
    best = cand.amax(0)  # (K, L, N)
    back = _lowest_argmax(cand, best)  # the lowest previous tag among ties
    delta = torch.where(rows.regular, best + e, torch.where(rows.first, start[:, None, None] + e, prefix))
    back = torch.where(rows.regular, back, torch.arange(K, device=e.device)[:, None, None])  # identity elsewhere
    final = delta[:, -1] + end[:, None]  # (K, N)
    score = final.amax(0)  # (N,)
    last = _lowest_argmax(final, score)  # the lowest final tag among ties
    score = torch.where(rows.keep.any(0), score, 0.0)
    return _backtrace(back, last, rows.keep), score, delta


def _max_sweeps(e, rows, T, start, end, want_suffix):
    levels = _max_up_sweep(_max_leaves(e, rows, T, start))
    return _max_down_sweeps(levels, end, e.shape[1], want_suffix)


# ----------------------------------------------------------------------------------------------------------------
# The quantities, on prepared tensors (see reference.prepare): e (B, L, K), keep (B, L)
# ----------------------------------------------------------------------------------------------------------------


def _tag_major(e):
    return e.permute(2, 1, 0).contiguous()  # (B, L, K) -> (K, L, B)


def _batch_major(x):
    return x.permute(2, 1, 0)  # (K, L, B) -> (B, L, K)


def _work_dtype(e):
    return torch.float64 if e.dtype == torch.float64 else WORK_DTYPE


def _log_partition(e, keep, T, start, end):
    if e.shape[1] == 0:  # no positions: log Z = 0 (still on the graph of e)
        return e.sum((1, 2))
    w = _work_dtype(e)
    log_z = _LogPartition.apply(_tag_major(e.to(w)), T.to(w), start.to(w), end.to(w), _Rows.of(keep))
    return log_z.to(e.dtype)


def _marginals(e, keep, T, start, end):
    B, L, K = e.shape
    if L == 0:
        return e.new_zeros(B, 0, K)
    w = _work_dtype(e)
    rows = _Rows.of(keep)
    log_z, _, alpha, beta = _log_forward_backward(_tag_major(e.to(w)), rows, T.to(w), start.to(w), end.to(w))
    return _batch_major(_posteriors(log_z, alpha, beta, rows)[0]).to(e.dtype)


def _viterbi(e, keep, T, start, end):
    B, L, K = e.shape
    if L == 0:
        return torch.full((B, 0), IGNORE_INDEX, dtype=torch.long, device=e.device), e.new_zeros(B)
    e, rows = _tag_major(e), _Rows.of(keep)
    prefix, _ = _max_sweeps(e, rows, T, start, end, want_suffix=False)
    tags, score, _ = _viterbi_from(prefix, e, rows, T, start, end)
    return tags.t().contiguous(), score


def _max_marginals(e, keep, T, start, end):
    B, L, K = e.shape
    if L == 0:
        return e.new_zeros(B, 0, K)
    e, rows = _tag_major(e), _Rows.of(keep)
    prefix, psi = _max_sweeps(e, rows, T, start, end, want_suffix=True)
    tags, _, delta = _viterbi_from(prefix, e, rows, T, start, end)
    return nudge_to_path(_batch_major(delta + psi), keep, tags.t())


# ----------------------------------------------------------------------------------------------------------------
# Public functions (the same signatures as the reference's)
# ----------------------------------------------------------------------------------------------------------------


def log_partition(emissions, mask, transitions, start, end) -> torch.Tensor:
    """log Z of each row (B,), differentiable (explicit backward)."""
    check_inputs("crf_log_partition", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        return _log_partition(*prepare(emissions, mask, transitions, start, end))


def log_likelihood(emissions, mask, transitions, start, end, tags) -> torch.Tensor:
    """log p(tags) of each row (B,), -100 tags at real positions marginalised; differentiable."""
    check_inputs("crf_log_likelihood", emissions, mask, transitions, start, end, tags=tags)
    with autocast_off(emissions.device):
        return log_likelihood_from(_log_partition, *prepare(emissions, mask, transitions, start, end), tags)


@torch.no_grad()
def viterbi(emissions, mask, transitions, start, end) -> tuple[torch.Tensor, torch.Tensor]:
    """(tags (B, L) int64 with -100 at padding, scores (B,))."""
    check_inputs("crf_viterbi", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        return _viterbi(*prepare(emissions, mask, transitions, start, end))


@torch.no_grad()
def marginals(emissions, mask, transitions, start, end) -> torch.Tensor:
    """Posterior tag probabilities (B, L, K), 0 at padding (not differentiable: use the reference for that)."""
    check_inputs("crf_marginals", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        return _marginals(*prepare(emissions, mask, transitions, start, end))


@torch.no_grad()
def max_marginals(emissions, mask, transitions, start, end) -> torch.Tensor:
    """Max-marginals (B, L, K), 0 at padding, argmax over K = the Viterbi tags."""
    check_inputs("crf_max_marginals", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        return _max_marginals(*prepare(emissions, mask, transitions, start, end))
