r"""Linear-chain CRF: the reference math in plain PyTorch (fp32; fp64 stays fp64). The oracle of every other path.

Legend: B batch, L length (positions, padding included), K tags, k paths of the n-best list, n = the number of
real positions of a row. ``E = emissions`` (B, L, K), ``T = transitions`` (K, K) with ``T[i, j]`` the score of
tag i followed by tag j, ``start``/``end`` (K,) the scores of the first and the last tag.

The chain of a row runs over its real positions t_1 < … < t_n (``mask`` true) in order: padding on the right or
the left, holes, a padded first position are all skipped, so the tags on the two sides of a hole are adjacent in
the chain. The score of a tag path y = (y_1, …, y_n) is

    s(y) = start[y_1] + Σ_{r=1..n} E[t_r, y_r] + Σ_{r=2..n} T[y_{r-1}, y_r] + end[y_n]

and the CRF is p(y) = exp s(y) / Z with the partition function Z = Σ_y exp s(y).

Forward algorithm (log space; LSE = log Σ exp; α_r[j] = log-sum of the scores of all prefixes ending in j at t_r):

    α_1[j] = start[j] + E[t_1, j]
    α_r[j] = LSE_i(α_{r-1}[i] + T[i, j]) + E[t_r, j]                        r = 2 … n
    log Z  = LSE_j(α_n[j] + end[j])

Backward algorithm (β_r[i] = log-sum of the scores of all suffixes after tag i at t_r, the end included):

    β_n[i] = end[i]
    β_r[i] = LSE_j(T[i, j] + E[t_{r+1}, j] + β_{r+1}[j])                    r = n-1 … 1

Marginals (forward-backward): p(y_r = j) = exp(α_r[j] + β_r[j] - log Z). They are also ∂log Z/∂E[t_r, j].

Viterbi (the same forward recursion in the max-plus semiring, with backpointers):

    δ_1[j] = start[j] + E[t_1, j]
    δ_r[j] = max_i(δ_{r-1}[i] + T[i, j]) + E[t_r, j],    ψ_r[j] = argmax_i(δ_{r-1}[i] + T[i, j])
    y_n = argmax_j(δ_n[j] + end[j]),  y_{r-1} = ψ_r[y_r] (the backtrace),  best score = max_j(δ_n[j] + end[j])

Every argmax takes the lowest tag index among equal values (deterministic ties).

Max-marginals: with the backward recursion in max-plus (β^max), μ_r[j] = δ_r[j] + β^max_r[j] is the best score of
a path through tag j at t_r. Its maximum over j is the Viterbi score, reached at the Viterbi tag y_r; where several
paths tie, an entry j ≠ y_r equal to (or, by rounding, above) the path's value μ_r[y_r] is set one ulp below it,
so that ``argmax_j μ_r[j] = y_r`` at every real position. (A row with no legal path has μ = -inf everywhere; its
Viterbi entries then hold the lowest finite value instead, so argmax still returns the Viterbi tags.)

N-best (list Viterbi): δ_r[j, q], q = 0 … k-1, are the k best scores of prefixes ending in j at t_r, best first;
at each step the K·k candidates δ_{r-1}[i, q'] + T[i, j] are sorted (a stable sort: among equal scores the lowest
(i, q') comes first) and the k best kept with their backpointers (i, q'); the final k come from the K·k values
δ_n[j, q] + end[j]. Entry 0 is the Viterbi path. A row with fewer than k paths (K^n < k, or paths banned by -inf
scores) reports the missing ones as all -100 with score -inf: a path of score -inf does not count as a path.

Partial annotation: ``tags`` holds -100 at a real position whose tag is unknown. The log-likelihood is

    log Σ_{y agreeing with the known tags} exp s(y) - log Z = log Z(Ẽ) - log Z(E)

with Ẽ = E where the tag is allowed (the known tag, or any tag at an unknown position) and -inf elsewhere.

Padding in matrix form: with M_r[i, j] = T[i, j] + E[t_r, j], log Z = start ⊗ M … ⊗ end in the log semiring; a
padded position contributes the identity matrix (0 on the diagonal, -inf elsewhere). ``scan.py`` computes the same
quantities from these matrices with an associative scan.

Edge cases: an empty row (all padding) has log Z = 0, log-likelihood 0, Viterbi tags all -100 and score 0,
marginals and max-marginals 0 (the n-best list: the empty path with score 0, then missing paths). Outputs at
padding are 0 (tags -100). -inf entries of ``transitions``/``start``/``end`` (tag constraints) are allowed:
nothing becomes NaN, and gradients are finite. A row with no legal path (every path scores -inf) has log Z = -inf,
log-likelihood -inf, marginals 0 and Viterbi score -inf (its tags then follow the tie rule); a gold path that is
banned gives log-likelihood -inf.

Precision: fp32 (fp64 when any input is fp64; half precision is upcast) with autocast disabled; the results come
back in that dtype. Gradients come from autograd (the log-sum-exp below has a NaN-free backward for all -inf
columns).

Eager Viterbi (``_viterbi_packed``; what a CPU runs under "auto" above a few tags, ``__init__.py``): each row's
real positions are packed to the front (a stable sort of the mask), so every row starts at r = 1 and the loop over
r = 2 … N (N the longest row) has no padding to carry: per position one add into a preallocated (K, K, B) buffer
(T[i, j] + δ_{r-1}[i] at [j, i, b]), one max over the previous tag i, one add of E, writing δ_r (N, K, B) in place
(tag-major, batch-last, the batch padded to a multiple of 32 rows: whole vectors along the rows; from 2 to 7 rows
batch-major instead, (B, K, K): ``BATCH_LAST_MIN_ROWS``). No backpointer tensor is kept: the backtrace recomputes
the one entry it needs, y_{r-1} = ψ_r[y_r] = argmax_i(δ_{r-1}[i] + T[i, y_r]), a K-vector per row and position
(three small ops), after δ is shifted right, batch-major, so that every row ends at N (y_N = argmax_j(δ_n[j] +
end[j])) and the argmax runs along contiguous memory. Nothing is allocated inside either loop. The additions and
the argmaxes are those above, so tags and scores are identical to the step functions' (which traced graphs run) bit
for bit, ties included. N is read from the mask on a CPU; elsewhere N = L (no host sync), the extra positions of a
shorter row being never read.
The eager max-marginals (``_max_marginals_packed``) run that δ and β^max (over the packed positions shifted right
so that every row ends at N, its max over the outer dim too, T transposed): together while the sums are small,
three ops per position for both recursions on a (2, K, K, B) pair of sums (T and its transpose side by side), else
one after the other (``PAIRED_MAX_SUMS``); μ equals the step functions' bit for bit.

Traced graphs: while torch.export traces (``torch.compiler.is_exporting()``, e.g. for ``torch.onnx.export``), the
forward, backward and Viterbi recursions and the backtrace run their same step functions as
``torch._higher_order_ops.scan`` over the positions (one ONNX Scan each, whatever the length: a Python loop would be
unrolled for the traced length), and the log-sum-exp is written with plain ops (``_logsumexp_plain``). While
torch.compile traces (``dispatch.tracing()``), Viterbi runs the step functions position by position, with
backpointers, as a Python loop (the packed schedule's length and in-place buffers are for eager mode).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import dispatch
from ..dispatch import autocast_off, reads_values
from .checks import IGNORE_INDEX, check_inputs


# ----------------------------------------------------------------------------------------------------------------
# Preparation (shared by every schedule of the op; the input checks: ``checks.py``)
# ----------------------------------------------------------------------------------------------------------------


def accumulation_dtype(*tensors) -> torch.dtype:
    """fp64 when any input is fp64, else fp32 (half precision is upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def prepare(emissions, mask, transitions, start, end):
    """The inputs in the accumulation dtype and the mask as bool (B, L) on the emissions' device."""
    acc = accumulation_dtype(emissions, transitions, start, end)
    B, L, _ = emissions.shape
    if mask is None:
        keep = torch.ones(B, L, dtype=torch.bool, device=emissions.device)
    else:
        keep = mask.to(device=emissions.device, dtype=torch.bool)
    return emissions.to(acc), keep, transitions.to(acc), start.to(acc), end.to(acc)


def restrict_emissions(emissions, keep, tags):
    """Ẽ: the emissions with -inf at every tag that disagrees with a known tag (``tags`` != -100) at a real position.

    A tag outside [0, K) at a real position allows no tag (on the GPU, where it is not checked): the row's
    log-likelihood is then -inf.
    """
    K = emissions.shape[-1]
    tags = tags.to(emissions.device)
    allowed = tags.unsqueeze(-1) == torch.arange(K, device=emissions.device)  # (B, L, K)
    allowed = allowed | ((tags == IGNORE_INDEX) | ~keep).unsqueeze(-1)  # unknown tag or padding: anything goes
    return torch.where(allowed, emissions, float("-inf"))


def gold_path_score(e, keep, T, start, end, tags):
    """s(y) (B,) of paths whose every real position has a known tag: emissions, transitions between consecutive
    real positions (across holes), start and end. A banned step (-inf) gives -inf. ``tags`` may be of any integer
    dtype (the checks accept any): they index as int64."""
    B, L, _ = e.shape
    if L == 0:
        return e.new_zeros(B)
    y = torch.where(keep, tags.to(device=e.device, dtype=torch.long), 0)  # (B, L) int64; anything at padding
    emitted = e.gather(2, y.unsqueeze(-1)).squeeze(-1)  # (B, L)
    positions = torch.arange(L, device=e.device).expand(B, L)  # (B, L)
    latest = torch.where(keep, positions, -1).cummax(1).values  # (B, L) the last real position <= t
    previous = torch.cat([latest.new_full((B, 1), -1), latest[:, :-1]], dim=1)  # the last real position < t
    has_previous = keep & (previous >= 0)
    stepped = T[y.gather(1, previous.clamp(min=0)), y]  # (B, L) T[y_prev, y_t]
    first, last = first_and_last(keep)
    zero = e.new_zeros(())
    return (
        torch.where(keep, emitted, zero).sum(1)
        + torch.where(has_previous, stepped, zero).sum(1)
        + torch.where(first, start[y], zero).sum(1)
        + torch.where(last, end[y], zero).sum(1)
    )


def log_likelihood_from(log_partition_fn, e, keep, T, st, en, tags):
    """log p(tags) with ``log_partition_fn(e, keep, T, start, end)``: on a CPU, when every real position has a
    known tag, the gold path's score minus log Z (one partition function); otherwise (partial labels, or a device
    where checking would cost a sync) log Z(Ẽ) - log Z(E), both in one batched call."""
    B = e.shape[0]
    if reads_values(e) and not bool(((tags.to(keep.device) == IGNORE_INDEX) & keep).any()):
        return likelihood_from_partitions(gold_path_score(e, keep, T, st, en, tags), log_partition_fn(e, keep, T, st, en))
    both = log_partition_fn(torch.cat([restrict_emissions(e, keep, tags), e]), keep.repeat(2, 1), T, st, en)
    return likelihood_from_partitions(both[:B], both[B:])


def first_and_last(keep):
    """(B, L) bool masks of each row's first and last real position."""
    count = keep.long().cumsum(1)  # (B, L) real positions so far
    first = keep & (count == 1)
    last = keep & (count == count[:, -1:])
    return first, last


def likelihood_from_partitions(numerator, denominator):
    """log Z(Ẽ) - log Z(E); -inf (not NaN) for a row whose log Z is -inf."""
    return torch.where(denominator > float("-inf"), numerator - denominator, float("-inf"))


# ----------------------------------------------------------------------------------------------------------------
# A log-sum-exp whose backward is NaN-free when a whole column is -inf
# ----------------------------------------------------------------------------------------------------------------


class _LogSumExp(torch.autograd.Function):
    """torch.logsumexp, with the gradient 0 (not NaN) for an all -inf column: its softmax is taken as 0."""

    @staticmethod
    def forward(ctx, x, dim):
        out = torch.logsumexp(x, dim)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        out = torch.where(out > float("-inf"), out, 0.0).unsqueeze(ctx.dim)  # an all -inf column: exp(-inf) = 0
        return grad.unsqueeze(ctx.dim) * torch.exp(x - out), None


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    if dispatch.exporting():
        return _logsumexp_plain(x, dim)
    return _LogSumExp.apply(x, dim)


def _logsumexp_plain(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The same log-sum-exp from plain ops, its autograd backward NaN-free for an all -inf column too: what an
    exported graph runs (torch.export mishandles a scan whose body calls an autograd.Function once there are two).

        m = max(x) (0 if -inf, no gradient),  s = Σ exp(x - m),  LSE = log s + m  (-inf where s = 0)
    """
    top = x.amax(dim, keepdim=True).detach()
    top = torch.where(top > float("-inf"), top, 0.0)  # an all -inf column: exp(-inf - 0) = 0
    total = torch.exp(x - top).sum(dim)
    positive = total > 0
    out = torch.log(torch.where(positive, total, 1.0)) + top.squeeze(dim)  # log of 1, not of 0, where s = 0
    return torch.where(positive, out, float("-inf"))


def _maximum(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.amax(dim)


# ----------------------------------------------------------------------------------------------------------------
# The recursions. Each takes prepared tensors: e (B, L, K), keep (B, L) bool, T (K, K), start (K,), end (K,).
# ----------------------------------------------------------------------------------------------------------------


def _scan_steps(step, carry, xs, reverse: bool = False):
    """``step(carry, x) -> (carry, y)`` over dim 0 of ``xs`` as ``torch._higher_order_ops.scan``: what the recursions
    run while torch.export traces, one ONNX Scan whose number of steps follows the length (a Python loop would be
    unrolled for the traced length). Returns (the last carry, the y stacked on dim 0), entry t of the stack made from
    x_t whether or not the scan runs in ``reverse``.

    ``step`` must close over tensors that do not alias one another (``_closed_over``); its ``y`` is cloned, since a
    scan's outputs must not alias its carry.
    """
    from torch._higher_order_ops.scan import scan

    def body(carry, x):
        carry, y = step(carry, x)
        return carry, y.clone()

    if not torch.is_grad_enabled():  # Viterbi, max-marginals: no autograd through the scan (nor integer outputs)
        carry, xs = torch.utils._pytree.tree_map(torch.Tensor.detach, (carry, xs))
    return scan(body, carry, xs, reverse=reverse)


def _plain(reduce):
    """The reduction a scan's step calls: ``_logsumexp_plain`` for ``logsumexp`` (chosen here, outside the traced
    body), ``_maximum`` as it is."""
    return _logsumexp_plain if reduce is logsumexp else reduce


def _closed_over(*tensors):
    """Copies of the tensors a scan's step reads (detached where no gradient is taken): they must not alias."""
    return tuple(t.clone() if torch.is_grad_enabled() else t.detach().clone() for t in tensors)


def _before_and_after(keep):
    """(started, ended) (B, L, 1) bool: whether a row has a real position before t, and none after t."""
    count = keep.long().cumsum(1)  # (B, L) real positions up to t
    started = count - keep.long() > 0
    ended = count == count[:, -1:]
    return started[:, :, None], ended[:, :, None]


def _by_position(*tensors):
    """The inputs of a scan over positions: each (B, L, ...) -> (L, B, ...)."""
    return tuple(t.movedim(1, 0) for t in tensors)


def _forward_step(T, start, reduce):
    """One step of the forward recursion: α (B, K), (E[t] (B, K), keep[t] (B, 1), started[t] (B, 1)) -> α after
    position t (padding carries α on; a row's first real position starts from ``start``), twice (carry, output)."""

    def step(alpha, x):
        e_t, m, started = x
        nxt = torch.where(started, reduce(alpha.unsqueeze(2) + T, 1), start) + e_t  # over the previous tag i of T[i, j]
        alpha = torch.where(m, nxt, alpha)
        return alpha, alpha

    return step


def forward_scores(e, keep, T, start, reduce):
    """α (``reduce=logsumexp``) or δ (``reduce=max``) at every position (B, L, K), carried through padding."""
    B, L, K = e.shape
    alpha = e.new_zeros(B, K)  # read only once a row has started
    started, _ = _before_and_after(keep)
    xs = e, keep[:, :, None], started
    if dispatch.exporting():
        step = _forward_step(*_closed_over(T, start), _plain(reduce))
        _, out = _scan_steps(step, alpha, _by_position(*xs))
        return out.movedim(0, 1)  # (B, L, K)
    step = _forward_step(T, start, reduce)
    out = []
    for t in range(L):
        alpha, _ = step(alpha, tuple(x[:, t] for x in xs))
        out.append(alpha)
    return torch.stack(out, 1) if out else e.new_zeros(B, 0, K)


def _backward_step(T, end, reduce):
    """One step of the backward recursion, right to left: E[t'] + β_{t'} of the next real position t' (B, K),
    (E[t], keep[t], ended[t]: no real position after t) -> that sum for the position before t, and β at t."""

    def step(after, x):
        e_t, m, ended = x
        beta = torch.where(ended, end, reduce(T + after.unsqueeze(1), 2))  # over the next tag j of T[i, j]
        return torch.where(m, e_t + beta, after), beta

    return step


def backward_scores(e, keep, T, end, reduce):
    """β (``reduce=logsumexp``) or β^max (``reduce=max``) at every position (B, L, K)."""
    B, L, K = e.shape
    after = e.new_zeros(B, K)
    _, ended = _before_and_after(keep)
    xs = e, keep[:, :, None], ended
    if dispatch.exporting():
        step = _backward_step(*_closed_over(T, end), _plain(reduce))
        _, out = _scan_steps(step, after, _by_position(*xs), reverse=True)
        return out.movedim(0, 1)  # (B, L, K)
    step = _backward_step(T, end, reduce)
    out = [None] * L
    for t in range(L - 1, -1, -1):
        after, out[t] = step(after, tuple(x[:, t] for x in xs))
    return torch.stack(out, 1) if out else e.new_zeros(B, 0, K)


def _final(scores, keep, end, reduce):
    """reduce_j(α_n[j] + end[j]), 0 for an empty row: the last entry of ``scores`` carries α_n through padding."""
    B, L, K = scores.shape
    if L == 0:
        return scores.new_zeros(B)
    total = reduce(scores[:, -1] + end, 1)  # (B,)
    return torch.where(keep.any(1), total, 0.0)


def _log_partition(e, keep, T, start, end):
    if e.shape[1] == 0:  # no positions: log Z = 0 (still on the graph of e)
        return e.sum((1, 2))
    return _final(forward_scores(e, keep, T, start, logsumexp), keep, end, logsumexp)


def _viterbi_step(T, start, ids):
    """One step of Viterbi's forward pass: δ (B, K), (E[t], keep[t], started[t]) -> δ after position t, and the
    backpointers ψ_t (B, K) (the identity at padding and at a row's first real position)."""

    def step(delta, x):
        e_t, m, started = x
        cand = delta.unsqueeze(2) + T  # (B, K_prev, K_next)
        bp = cand.argmax(1)  # (B, K): the lowest previous tag among ties
        best = cand.gather(1, bp.unsqueeze(1)).squeeze(1)
        nxt = torch.where(started, best, start) + e_t
        return torch.where(m, nxt, delta), torch.where(started & m, bp, ids)

    return step


def _backtrace_step(cur, x):
    """One step of the backtrace, right to left: the tag at position t (B,), (ψ_t (B, K), keep[t] (B,)) -> the tag
    at the previous position, and the output at t (-100 at padding)."""
    backpointers, m = x
    return backpointers.gather(1, cur[:, None]).squeeze(1), torch.where(m, cur, IGNORE_INDEX)


def _viterbi(e, keep, T, start, end):
    """(tags (B, L) int64 with -100 at padding, best scores (B,)): ``_viterbi_packed`` in eager mode, the step
    functions while torch.compile or torch.export trace (the same numbers: the same additions, the same ties)."""
    if dispatch.tracing() or dispatch.exporting():
        return _viterbi_steps(e, keep, T, start, end)
    return _viterbi_packed(e, keep, T, start, end)


def _packing_order(keep, length):
    """(B, length): the positions of each row, its real ones first and in order (a stable sort of the mask); a
    ``length`` at least each row's number of real positions keeps them all."""
    return torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :length]  # (B, length)


#: The eager schedules' layout, per op: batch-major ((B, K, K) sums, the max over the last dim) from 2 rows up to
#: this many, tag-major and batch-last ((K, K, B') sums, the max over the middle dim, B' the batch padded to a
#: multiple of ``ROW_MULTIPLE`` rows) from this many on and for one row. Measured on a 2-core AMD EPYC VM (L = 128,
#: interleaved medians; batch-last from 8 / 16 rows on): one thread, K = 45: Viterbi 2.18 / 2.75 ms at B = 8,
#: 2.30 / 3.61 at B = 12; the max-marginals 5.46 / 3.79 at B = 8, 6.33 / 5.51 at B = 16 (two threads: 5.01 / 5.94);
#: batch-major against unpadded batch-last at B = 2 / 4: the max-marginals 2.03 / 2.78 ms against 3.74 / 4.89.
BATCH_LAST_MIN_ROWS = {"viterbi": 8, "max_marginals": 16}
#: One (K, K, B') sum and its max over the middle dim, K = 45, one thread: 9.3 µs at B' = 32, 56 µs at B' = 16
#: (part vectors); a max over the outer dim instead runs whole vectors from B' = 16 on but 2.5-3x slower with two
#: threads (30 against 12 µs at B' = 32, 46 against 17 at 64), whose halves of the sums then cross cores.
ROW_MULTIPLE = 32


class _Packing(NamedTuple):
    """Each row's real positions first (``_pack``), in the layout of the max-plus sums."""

    order: torch.Tensor  # (B, N) the positions of each row, its real ones first
    n: torch.Tensor  # (B,) real positions per row
    packed: torch.Tensor  # E[t_r], zero after a row's n: (N, K, B') batch-last (zero padding rows) or (N, B, K)
    batch_last: bool

    def per_tag(self, v: torch.Tensor) -> torch.Tensor:
        """A (K,) vector shaped to add to one position's (K, B') or (B, K) slice."""
        return v[:, None] if self.batch_last else v

    def operands(self, M: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(M shaped for the sums M[o, i] + x[i] over every output tag o and reduced tag i, the dim of x to unsqueeze
        for them, the dim the max over i runs over): (K_o, K_i, 1) + (1, K_i, B') -> (K_o, K_i, B'), max over the
        middle dim (the output dim outer, so that threads splitting it keep their own rows: a max over the outer dim
        runs 2.5-3x slower with two threads; and B' a multiple of 32, whole vectors), or (1, K_o, K_i) + (B, 1, K_i)
        -> (B, K_o, K_i), max over the last."""
        return (M[:, :, None], 0, 1) if self.batch_last else (M[None], 1, 2)

    def sums(self) -> torch.Tensor:
        """An empty buffer for the max-plus sums of one position: (K, K, B') batch-last, (B, K, K) batch-major."""
        _, first, second = self.packed.shape
        return self.packed.new_empty((first, first, second) if self.batch_last else (first, second, second))

    def tag_major(self, x: torch.Tensor) -> torch.Tensor:
        """A (N, K, B) view of ``x`` (N, ...) stored in this packing's layout, without the padding rows."""
        return x[:, :, : self.order.shape[0]] if self.batch_last else x.transpose(1, 2)


def _pack(e, keep, op: str) -> _Packing | None:
    """Each row's real positions first (``_Packing``), laid out for ``op`` (``BATCH_LAST_MIN_ROWS``); None when no row
    has any."""
    B, L, K = e.shape
    if B == 0 or L == 0:
        return None
    n = keep.sum(1)  # (B,) real positions per row
    # N, the longest row's length where reading it is free (a CPU); else every position (no host sync)
    length = int(n.max()) if reads_values(e) else L
    if length == 0:
        return None
    order = _packing_order(keep, length)  # (B, N)
    packed = e.gather(1, order.unsqueeze(2).expand(B, length, K))  # (B, N, K): E[t_r] at r < n, padding after
    if 1 < B < BATCH_LAST_MIN_ROWS[op]:
        return _Packing(order, n, packed.transpose(0, 1).contiguous(), False)  # (N, B, K)
    rows = B if B == 1 else -(-B // ROW_MULTIPLE) * ROW_MULTIPLE  # B'
    stored = torch.nn.functional.pad(packed.permute(1, 2, 0), (0, rows - B))  # (N, K, B'); a view when B' = B
    return _Packing(order, n, stored.contiguous(), True)


def _forward_pass(packing: _Packing, T, start) -> torch.Tensor:
    """δ over the packed positions, in the packing's layout: per position one sum δ_{r-1}[i] + T[i, j] into a
    preallocated buffer, one max over i, one add of E[r]."""
    packed = packing.packed
    into, x_dim, over = packing.operands(T.t())  # T[i, j] at [j, i]
    delta = torch.empty_like(packed)  # δ_r (N, K, B') or (N, B, K)
    torch.add(packed[0], packing.per_tag(start), out=delta[0])  # δ_1 = start + E[t_1]
    previous = delta.unsqueeze(1 + x_dim).unbind(0)  # (1, K, B') or (B, 1, K)
    cand = packing.sums()  # T[i, j] + δ_{r-1}[i] at [j, i] (K_j, K_i, B') or [b, j, i]
    steps, emitted = delta.unbind(0), packed.unbind(0)  # views, made once
    for r in range(1, packed.shape[0]):
        torch.add(into, previous[r - 1], out=cand)
        torch.amax(cand, over, out=steps[r])  # max over the previous tag i
        steps[r].add_(emitted[r])
    return delta


def _right_aligned(n: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(source (N, B), index (B, N)) for rows of ``n`` real positions packed into N = ``length``: packed entry
    ``source[s, b]`` sits at s when every row is shifted right to end at N - 1 (s < N - n_b, before the row, reads
    anything), and packed entry r < n_b of row b at ``index[b, r]``."""
    device = n.device
    shift = length - n  # (B,)
    positions = torch.arange(length, device=device)  # (N,)
    source = (positions[:, None] - shift).clamp(min=0)  # (N, B)
    index = (shift[:, None] + positions).clamp(max=length - 1)  # (B, N)
    return source, index


def _packed_backtrace(packing: _Packing, delta, T, end, L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tags (B, L) with -100 at padding, best scores (B,)) from δ over the packed positions (in ``packing``'s
    layout): a backtrace that recomputes ψ_r[y_r] along the path (module docstring, "Eager Viterbi")."""
    order, n = packing.order, packing.n
    delta = packing.tag_major(delta)  # (N, K, B); entries at r >= n of a row are never read
    length, K, B = delta.shape
    device = delta.device
    # the final scores at each row's last real position n - 1 (B, K)
    rows = torch.arange(B, device=device)
    final = delta.permute(2, 0, 1)[rows, (n - 1).clamp(min=0)] + end  # (B, K)
    last = final.argmax(1)  # (B,) the lowest final tag among ties
    score = torch.where(n > 0, final.gather(1, last[:, None]).squeeze(1), 0.0)
    # right-align δ, batch-major, so that every row's path ends at N - 1: aligned[s, b] = δ_{s - (N - n_b)}[:, b]
    source, index = _right_aligned(n, length)
    aligned = delta.permute(0, 2, 1).gather(0, source.unsqueeze(2).expand(length, B, K))  # (N, B, K)
    # backtrace: y_{r-1} = ψ_r[y_r] = argmax_i(δ_{r-1}[i] + T[i, y_r]) (the lowest i among ties); batch-major, so
    # that the argmax runs along contiguous memory
    path = torch.empty(length, B, dtype=torch.long, device=device)  # right-aligned tags (N, B)
    path[length - 1] = last
    path_steps, aligned_steps = path.unbind(0), aligned.unbind(0)
    into = T.t().contiguous()[None]  # (1, K_next, K_prev): T[:, j] at [0, j] (a middle-dim select is the fast one)
    selected = torch.empty(1, B, K, dtype=delta.dtype, device=device)
    column = selected[0]  # (B, K): T[i, y_r] + δ_{r-1}[i] of each row
    for s in range(length - 1, 0, -1):
        torch.index_select(into, 1, path_steps[s], out=selected)  # T[:, y_r] of each row
        column.add_(aligned_steps[s - 1])
        torch.argmax(column, 1, out=path_steps[s - 1])
    # back to the rows' positions: packed entry r < n of row b is path[N - n_b + r, b], written at order[b, r]
    positions = torch.arange(length, device=device)  # (N,)
    packed_tags = torch.where(positions < n[:, None], path.t().gather(1, index), IGNORE_INDEX)  # (B, N)
    tags = torch.full((B, L), IGNORE_INDEX, dtype=torch.long, device=device)
    return tags.scatter_(1, order, packed_tags), score


def _viterbi_packed(e, keep, T, start, end):
    """Viterbi in eager mode, as few tensor ops per position as the recursion allows (module docstring, "Eager
    Viterbi"): δ over each row's packed real positions, then a backtrace that recomputes ψ_r[y_r] along the path.
    Every add and every argmax is the one ``_viterbi_steps`` makes, so tags and scores are identical to it."""
    B, L, _ = e.shape
    packing = _pack(e, keep, "viterbi")
    if packing is None:
        return torch.full((B, L), IGNORE_INDEX, dtype=torch.long, device=e.device), e.new_zeros(B)
    return _packed_backtrace(packing, _forward_pass(packing, T, start), T, end, L)


def _viterbi_steps(e, keep, T, start, end):
    """(tags (B, L) int64 with -100 at padding, best scores (B,)) by the step functions over every position, as
    traced graphs run them (a ``torch._higher_order_ops.scan`` while exporting)."""
    B, L, K = e.shape
    ids = torch.arange(K, device=e.device)
    delta = e.new_zeros(B, K)
    started, _ = _before_and_after(keep)
    xs = e, keep[:, :, None], started
    exporting = dispatch.exporting()
    if exporting:
        delta, backpointers = _scan_steps(_viterbi_step(*_closed_over(T, start), ids), delta, _by_position(*xs))
    else:
        step = _viterbi_step(T, start, ids)
        backpointers = []
        for t in range(L):
            delta, bp = step(delta, tuple(x[:, t] for x in xs))
            backpointers.append(bp)
    tags = torch.full((B, L), IGNORE_INDEX, dtype=torch.long, device=e.device)
    if L == 0:
        return tags, e.new_zeros(B)
    final = delta + end  # (B, K)
    cur = final.argmax(1)  # (B,) the lowest final tag among ties
    score = torch.where(keep.any(1), final.gather(1, cur[:, None]).squeeze(1), 0.0)
    if exporting:  # backpointers (L, B, K)
        _, tags = _scan_steps(_backtrace_step, cur, (backpointers, keep.t()), reverse=True)  # (L, B)
        return tags.t(), score
    for t in range(L - 1, -1, -1):
        cur, tags[:, t] = _backtrace_step(cur, (backpointers[t], keep[:, t]))
    return tags, score


def _nbest(e, keep, T, start, end, k):
    """(tags (B, k, L) with -100 at padding and for missing paths, scores (B, k) with -inf for missing paths)."""
    B, L, K = e.shape
    neg = float("-inf")
    slots = torch.arange(K * k, device=e.device).view(K, k)  # flat (tag, rank) ids; the identity backpointers
    delta = e.new_full((B, K, k), neg)  # (B, K, k) the k best prefix scores ending in each tag, best first
    delta[:, :, 0] = 0.0
    started = torch.zeros(B, 1, 1, dtype=torch.bool, device=e.device)
    first = torch.cat([start[None, :, None].expand(B, K, 1), e.new_full((B, K, k - 1), neg)], 2)  # (B, K, k)
    backpointers = []  # (B, K, k) flat index i·k + q' of the previous (tag, rank)
    for t in range(L):
        m = keep[:, t, None, None]  # (B, 1, 1)
        cand = (delta.unsqueeze(3) + T[:, None, :]).reshape(B, K * k, K)  # (B, (i, q'), j)
        vals, idx = torch.sort(cand, dim=1, descending=True, stable=True)  # ties: the lowest (i, q') first
        vals, idx = vals[:, :k].transpose(1, 2), idx[:, :k].transpose(1, 2)  # (B, K, k): K·k >= k candidates
        nxt = torch.where(started, vals, first) + e[:, t, :, None]
        backpointers.append(torch.where(started & m, idx, slots))
        delta = torch.where(m, nxt, delta)
        started = started | m
    final = (delta + end[None, :, None]).reshape(B, K * k)  # (B, (j, q))
    scores, cur = torch.sort(final, dim=1, descending=True, stable=True)
    scores, cur = scores[:, :k], cur[:, :k]  # (B, k)
    nonempty = keep.any(1, keepdim=True)  # (B, 1)
    empty_scores = torch.full((k,), neg, dtype=e.dtype, device=e.device)
    empty_scores[0] = 0.0  # an empty row has exactly one path, the empty one
    scores = torch.where(nonempty, scores, empty_scores)
    tags = torch.full((B, k, L), IGNORE_INDEX, dtype=torch.long, device=e.device)
    present = scores > neg  # (B, k)
    for t in range(L - 1, -1, -1):
        tags[:, :, t] = torch.where(keep[:, t, None] & present, cur // k, IGNORE_INDEX)
        cur = backpointers[t].reshape(B, K * k).gather(1, cur)
    return tags, scores


def _marginals(e, keep, T, start, end):
    alpha = forward_scores(e, keep, T, start, logsumexp)
    beta = backward_scores(e, keep, T, end, logsumexp)
    log_z = _final(alpha, keep, end, logsumexp)  # (B,)
    ok = (keep & (log_z > float("-inf")).unsqueeze(1)).unsqueeze(2)  # (B, L, 1): no legal path -> marginals 0
    # -inf (not a masked exp) where not ok: padding may hold large α + β, whose exp would overflow in the backward
    return torch.exp(torch.where(ok, alpha + beta - log_z[:, None, None], float("-inf")))


def nudge_to_path(mm, keep, path):
    """Set the non-path entries of the max-marginals ``mm`` (B, L, K) that reach the path's value one ulp below it,
    the path's entries of a row without a legal path to the lowest finite value, and padding to 0."""
    K = mm.shape[-1]
    path = torch.where(keep, path, 0).unsqueeze(-1)  # (B, L, 1)
    on_path = path == torch.arange(K, device=mm.device)  # (B, L, K)
    value = mm.gather(-1, path)  # (B, L, 1) the Viterbi path's entry
    if dispatch.tracing():  # traced (ONNX has no nextafter): strictly below, within two ulps
        eps, tiny = torch.finfo(value.dtype).eps, torch.finfo(value.dtype).tiny
        below = torch.where(value > 0, value * (1 - eps), value * (1 + eps))
        below = torch.where(value == 0, torch.full_like(value, -tiny), below)
    else:
        below = torch.nextafter(value, torch.full_like(value, float("-inf")))
    value = torch.where(value > float("-inf"), value, torch.finfo(mm.dtype).min)
    mm = torch.where(on_path, value, torch.minimum(mm, below))
    return torch.where(keep.unsqueeze(-1), mm, 0.0)


def _max_marginals(e, keep, T, start, end):
    """μ = δ + β^max (B, L, K), nudged so that its argmax is the Viterbi path: ``_max_marginals_packed`` in eager
    mode, the step functions while torch.compile or torch.export trace (the same sums and maxima)."""
    if dispatch.tracing() or dispatch.exporting():
        return _max_marginals_steps(e, keep, T, start, end)
    return _max_marginals_packed(e, keep, T, start, end)


def _max_marginals_steps(e, keep, T, start, end):
    """The max-marginals from the step functions over every position (what traced graphs run)."""
    delta = forward_scores(e, keep, T, start, _maximum)
    psi = backward_scores(e, keep, T, end, _maximum)
    path, _ = _viterbi(e, keep, T, start, end)
    return nudge_to_path(delta + psi, keep, path)


#: The eager max-marginals run δ and β^max as one paired recursion (``_paired_passes``) while K² × rows (padded) is
#: at most this per intra-op thread (two at most), as two (``_two_passes``) above, where the pair's (2, K, K, B')
#: sums save fewer launches than they cost in cache. Measured on a 2-core AMD EPYC VM (L = 128, 15 interleaved
#: rounds, median paired ms / two-pass ms), one thread: 0.77 at K² B' = 2k (K = 45, B = 1), 0.80 at 8k, 0.87 at 9k
#: (K = 17, B = 32), 0.91-0.93 at 18k-35k, 1.02 at 37k (K = 17, B = 128), 0.96-1.01 at 65k (K = 45, B = 24-32),
#: 1.04 at K = 9, B = 256 (21k); two threads: 0.77-0.81 up to 65k, 0.90 at 37k, 1.06 at K = 9, B = 256.
PAIRED_MAX_SUMS = 36000


def _two_passes(packing: _Packing, emitted, T, start, end) -> tuple[torch.Tensor, torch.Tensor]:
    """(δ packed, β^max right-aligned), in the packing's layout: the forward pass, then β over the right-aligned
    positions, three ops per position, β_{s-1}[i] = max_j(T[i, j] + (E[s, j] + β_s[j])), the max running over the
    dim the forward pass's does (T transposed)."""
    delta = _forward_pass(packing, T, start)
    into, x_dim, over = packing.operands(T)  # T[i, j] at [i, j]
    beta = torch.empty_like(emitted)  # β^max, right-aligned
    beta[-1] = packing.per_tag(end)
    after = torch.empty_like(emitted[0])  # E[s] + β_s, (K, B') or (B, K)
    after_j = after.unsqueeze(x_dim)  # (1, K, B') or (B, 1, K)
    cand = packing.sums()  # T[i, j] + (E[s] + β_s)[j] at [i, j] (K_i, K_j, B') or [b, i, j]
    steps, emitted_steps = beta.unbind(0), emitted.unbind(0)  # views, made once
    for s in range(emitted.shape[0] - 1, 0, -1):
        torch.add(emitted_steps[s], steps[s], out=after)
        torch.add(into, after_j, out=cand)
        torch.amax(cand, over, out=steps[s - 1])  # max over the next tag j
    return delta, beta


def _paired_passes(packing: _Packing, emitted, T, start, end) -> tuple[torch.Tensor, torch.Tensor]:
    """(δ packed, β^max right-aligned), in the packing's layout, the two recursions run together, three tensor ops
    per position for both:

        δ_k[j] = max_i(δ_{k-1}[i] + T[i, j]) + E[k, j]
        β_{N-1-k}[i] = max_j((E[N-k, j] + β_{N-k}[j]) + T[i, j])

    as one sum of a pair (T and its transpose side by side), one max and one add of the emissions: the additions
    and maxima of ``_forward_pass`` and ``_two_passes``."""
    packed = packing.packed
    length = packed.shape[0]
    # state_k = (δ_k, E[N-1-k] + β_{N-1-k}): the forward pass at packed position k, the backward one at right-aligned
    # position N-1-k; (N, 2, K, B') or (N, 2, B, K)
    state = packed.new_empty(length, 2, *packed.shape[1:])
    torch.add(packed[0], packing.per_tag(start), out=state[0, 0])  # δ_0 = E[0] + start
    torch.add(emitted[-1], packing.per_tag(end), out=state[0, 1])  # E[N-1] + β_{N-1}, β_{N-1} = end
    maxima = packed.new_empty(length - 1, *state.shape[1:])  # (max_i(δ + T), β_{N-1-k}) at step k
    added = torch.stack((packed[1:], emitted[:-1].flip(0)), 1)  # E[k] and E[N-1-k] at step k
    forward_into, x_dim, over = packing.operands(T.t())  # T[i, j] at [j, i]
    pair = torch.stack((forward_into, packing.operands(T)[0]))  # and T[i, j] at [i, j]
    previous = state.unsqueeze(2 + x_dim).unbind(0)  # (2, 1, K, B') or (2, B, 1, K)
    cand = torch.stack((packing.sums(), packing.sums()))  # T[i, j] + δ[i] at [0, j, i]; + (E + β)[j] at [1, i, j]
    states, maxima_steps, added_steps = state.unbind(0), maxima.unbind(0), added.unbind(0)  # views, made once
    for k in range(1, length):
        torch.add(pair, previous[k - 1], out=cand)
        torch.amax(cand, 1 + over, out=maxima_steps[k - 1])  # over the previous tag i, and over the next tag j
        torch.add(maxima_steps[k - 1], added_steps[k - 1], out=states[k])
    beta = torch.cat((maxima[:, 1].flip(0), packing.per_tag(end).expand_as(state[0, 1])[None]))  # right-aligned
    return state[:, 0], beta


def _max_marginals_packed(e, keep, T, start, end):
    """The max-marginals in eager mode, on the packed schedule of the eager Viterbi (module docstring): δ over the
    packed positions and β^max over them right-aligned (every row ending at N - 1, so that β_{N-1} = end for all),
    paired or in two passes (``PAIRED_MAX_SUMS``); μ = δ + β is identical to ``_max_marginals_steps``' (the same
    additions and maxima), and the path comes from ``_packed_backtrace`` on that δ."""
    B, L, K = e.shape
    packing = _pack(e, keep, "max_marginals")
    if packing is None:
        return e.new_zeros(B, L, K)
    order, n, packed, batch_last = packing
    length, rows = packed.shape[0], packed.shape[2] if batch_last else B
    source, index = _right_aligned(torch.nn.functional.pad(n, (0, rows - B)), length)  # (N, B'), (B', N)
    at = source.unsqueeze(1).expand(length, K, rows) if batch_last else source.unsqueeze(2).expand(length, B, K)
    emitted = packed.gather(0, at)  # E, right-aligned, in the packed layout
    paired = K * K * rows <= PAIRED_MAX_SUMS * min(torch.get_num_threads(), 2)
    delta, beta = (_paired_passes if paired else _two_passes)(packing, emitted, T, start, end)
    mu = packing.tag_major(delta.gather(0, at) + beta).permute(2, 0, 1)  # (B, N, K) right-aligned
    mu = mu.gather(1, index[:B].unsqueeze(2).expand(B, length, K))  # (B, N, K) packed: entry r < n at r
    mm = e.new_zeros(B, L, K).scatter_(1, order.unsqueeze(2).expand(B, length, K), mu)  # (B, L, K)
    path, _ = _packed_backtrace(packing, delta, T, end, L)
    return nudge_to_path(mm, keep, path)


# ----------------------------------------------------------------------------------------------------------------
# Public functions: validate, upcast, disable autocast
# ----------------------------------------------------------------------------------------------------------------


def log_partition(emissions, mask, transitions, start, end) -> torch.Tensor:
    """log Z of each row (B,); differentiable w.r.t. emissions, transitions, start and end."""
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
    """(tags (B, L) int64 with -100 at padding, scores (B,)): the best path of each row."""
    check_inputs("crf_viterbi", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        return _viterbi(*prepare(emissions, mask, transitions, start, end))


@torch.no_grad()
def nbest(emissions, mask, transitions, start, end, k) -> tuple[torch.Tensor, torch.Tensor]:
    """(tags (B, k, L), scores (B, k)): the k best paths of each row, best first (see the module docstring)."""
    check_inputs("crf_nbest", emissions, mask, transitions, start, end, k=k)
    with autocast_off(emissions.device):
        return _nbest(*prepare(emissions, mask, transitions, start, end), k)


def marginals(emissions, mask, transitions, start, end) -> torch.Tensor:
    """Posterior tag probabilities (B, L, K) by forward-backward, 0 at padding; differentiable."""
    check_inputs("crf_marginals", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        return _marginals(*prepare(emissions, mask, transitions, start, end))


@torch.no_grad()
def max_marginals(emissions, mask, transitions, start, end) -> torch.Tensor:
    """Max-marginals (B, L, K), 0 at padding, with argmax over K equal to the Viterbi tags."""
    check_inputs("crf_max_marginals", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        return _max_marginals(*prepare(emissions, mask, transitions, start, end))
