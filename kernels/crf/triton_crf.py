r"""The linear-chain CRF on Triton kernels: log partition (with a fused backward), marginals, Viterbi, max-marginals.

Legend: B batch, L length, K tags, KP = max(16, next power of two ≥ K) register lanes (lanes ≥ K are masked:
they hold -inf scores and are never stored to a (…, K) output). ``transitions[i, j]`` scores tag i followed by
tag j; ``start`` and ``end`` score the first and the last tag; ``emissions[b, t, k]`` scores tag k at position t.

The chain of row b runs over its real positions t_1 < … < t_n (``mask[b, t]`` true) in order; padding (left,
right or holes) is skipped. Forward (log-sum-exp, ``⊕``) and backward recursions over those positions:

    α_1[j] = start[j] + e_{t_1}[j]
    α_r[j] = LSE_i(α_{r-1}[i] + T[i, j]) + e_{t_r}[j]
    β_n[i] = end[i]
    β_r[i] = LSE_j(T[i, j] + e_{t_{r+1}}[j] + β_{r+1}[j])
    log Z  = LSE_j(α_n[j] + end[j])

    ∂log Z/∂e_{t_r}[k]  = exp(α_r[k] + β_r[k] - log Z)                               (posterior marginals)
    ∂log Z/∂T[i, j]     = Σ_{r>1} exp(α_{r-1}[i] + T[i, j] + e_{t_r}[j] + β_r[j] - log Z)   (pairwise marginals)
    ∂log Z/∂start, ∂end = the marginals at t_1 and at t_n

Viterbi and max-marginals are the same recursions in the max-plus semiring (δ, ψ for α, β), with backpointers
bp_r[j] = the lowest i maximising δ_{r-1}[i] + T[i, j]; the best final tag is the lowest j maximising
δ_n[j] + end[j], and the backtrace follows bp. The max-marginal of (t_r, k) is δ_r[k] + ψ_r[k] (the best score
of a path through k at t_r); an entry k ≠ y_r (the Viterbi tag) that reaches the path's value δ_r[y_r] + ψ_r[y_r]
is set one ulp below it, so that ``argmax`` over k equals the Viterbi tags (in a row without a legal path, where
every entry is -inf, the path's entry is set to the lowest finite fp32 value instead).

Empty rows: log Z = 0 (gradients 0), marginals and max-marginals 0, Viterbi tags all -100 and score 0. Outputs at
padding are 0 (tags -100). -inf in ``transitions``/``start``/``end``/``emissions`` (tag constraints) is allowed:
every log-sum-exp shifts by its maximum, taken as 0 when the whole column is -inf, every mask is a ``tl.where``
(never a product), and no NaN arises; a row whose log Z is -inf (every path banned) gets zero marginals.

Kernels (grid: one program per batch row; the K×K transitions and the K-vectors α/β/δ/ψ live in registers for the
whole sequence; each program walks its row's real range [first, last) only and writes zeros outside it):

* ``_forward_kernel``: the α recursion, storing α at every position of the range (holes carry the previous α),
  and log Z. One launch for the whole sequence.
* ``_backward_kernel``: the β recursion from the last real position down, writing ∂log Z/∂e (scaled by the
  incoming gradient; with scale 1 these are the marginals) and, with ``PAIR``, each row's pairwise-marginal sum
  (a (K, K) partial per row) and its start/end marginals; the partials are summed over the batch in torch
  (deterministic: no atomics).
* ``_viterbi_kernel``: the δ recursion with int8 backpointers (identity at holes, so the backtrace walks through
  them), then, after a barrier, the backtrace in the same program over tiles of BT positions (each tile of
  backpointers is loaded while the previous one is walked). Optionally stores δ for the max-marginals.
* ``_max_marginal_kernel``: the ψ recursion from the last real position down, δ + ψ, and the tie nudge towards
  the Viterbi tags.

All arithmetic is fp32 (half-precision emissions are upcast on load); log Z, marginals, max-marginals and scores
come back in fp32, gradients in the dtype of each input.

log Z and its gradients are registered with ``torch.library`` as custom ops with fake implementations and a
registered autograd, so that ``torch.compile`` puts the two kernels in its graph:

    bizoo::crf_log_partition_forward(Tensor emissions, Tensor keep, Tensor ranges, Tensor transitions,
                                     Tensor start, Tensor end) -> (Tensor log_z, Tensor alpha)
    bizoo::crf_log_partition_backward(Tensor grad, <the forward's six inputs>, Tensor alpha, Tensor log_z)
                                     -> (Tensor d_emissions, Tensor d_transitions, Tensor d_start, Tensor d_end)

Marginals, Viterbi and max-marginals are custom ops too, with fake implementations and no autograd; they take
the forward's six inputs (as ``_prepare`` makes them):

    bizoo::crf_marginals(<the six>) -> Tensor marginals                    (B, L, K) fp32
    bizoo::crf_viterbi(<the six>) -> (Tensor tags, Tensor score)           (B, L) int64, (B,) fp32
    bizoo::crf_max_marginals(<the six>) -> Tensor max_marginals            (B, L, K) fp32

Their public functions run them under ``torch.no_grad``, as before: the results never require a gradient. For
Viterbi and the max-marginals this is the reference backend's behaviour too (its ``viterbi`` and
``max_marginals`` are ``torch.no_grad``); the CRF head's max-marginal logits are for decoding (argmax) only, its
loss is the log-likelihood (``log_partition_triton``). The reference's ``marginals`` are differentiable, the
Triton (and scan) ones are not: use the reference backend for gradients of the marginals. An op called directly
with inputs that require a gradient raises on backward (torch's message: no autograd formula registered).
"""

from __future__ import annotations

import torch

from .. import triton_utils
from ..dispatch import autocast_off, register_op
from ..triton_utils import autotune_configs, buffer, lanes, real_ranges, row_range, tl, triton
from .checks import MAX_TAGS, check_triton_inputs

__all__ = ["log_partition_triton", "marginals_triton", "viterbi_triton", "max_marginals_triton", "MAX_TAGS"]

IGNORE_TAG = -100
BT = 16  # positions per tile: zero-filling of padding, backtrace tiles
# Tests set a fill value (NaN) for every output and scratch buffer, so an element a kernel fails to write (or
# reads before writing) cannot pass.
DEBUG_FILL: float | None = None


# ----------------------------------------------------------------------------------------------------------------
# Launch settings: the recurrences are latency bound; the warps only have to hold the K×K register tiles.
# ----------------------------------------------------------------------------------------------------------------

_DEFAULT_WARPS = {16: 1, 32: 2, 64: 4, 128: 8}
_WARP_RANGE = {16: (1, 2), 32: (1, 4), 64: (2, 8), 128: (4, 16)}


def _configs():
    """Every warp count (the pruner keeps those that suit the tile); one warp under the interpreter."""
    configs = [triton.Config({}, num_warps=w) for w in (1, 2, 4, 8, 16)]
    return autotune_configs(configs, triton.Config({}, num_warps=1))


def _prune(configs, named_args, **kwargs):
    """Keep the warp counts that suit the register tile KP×KP (only the default one without autotuning)."""
    if triton_utils.INTERPRETED:
        return configs
    kp = kwargs.get("KP", named_args.get("KP"))
    if not triton_utils.AUTOTUNE:
        keep = [c for c in configs if c.num_warps == _DEFAULT_WARPS[kp]]
    else:
        lo, hi = _WARP_RANGE[kp]
        keep = [c for c in configs if lo <= c.num_warps <= hi]
    return keep or configs[:1]


def _autotune(fn):
    return triton.autotune(configs=_configs(), key=["KP"], prune_configs_by={"early_config_prune": _prune})(fn)


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _load_parameters(TRANS, START, END, K, KP: tl.constexpr):
    """TRANS as a (KP, KP) tile (row-major: tile[a, b] = TRANS[a·K + b]), start (KP,), end (KP,) in fp32, -inf
    outside the K×K block."""
    ii = tl.arange(0, KP)
    lane = ii < K
    trans = tl.load(TRANS + ii[:, None] * K + ii[None, :], mask=lane[:, None] & lane[None, :], other=float("-inf"))
    st = tl.load(START + ii, mask=lane, other=float("-inf"))
    en = tl.load(END + ii, mask=lane, other=float("-inf"))
    return trans.to(tl.float32), st.to(tl.float32), en.to(tl.float32)


@triton.jit
def _zero_padding(
    OUT, row, first, last, L, K, value: tl.constexpr, KP: tl.constexpr, BT: tl.constexpr, LANES: tl.constexpr
):
    """Write ``value`` at every position of the row outside [first, last) (LANES: a (…, K) output, else (…,))."""
    rr = tl.arange(0, BT)
    ii = tl.arange(0, KP)
    for t0 in range(0, first, BT):
        pos = t0 + rr
        ok = pos < first
        if LANES:
            tl.store(OUT + (row + pos)[:, None] * K + ii[None, :], tl.full((BT, KP), value, tl.float32),
                     mask=ok[:, None] & (ii[None, :] < K))
        else:
            tl.store(OUT + row + pos, tl.full((BT,), value, tl.int64), mask=ok)
    for t0 in range(last, L, BT):
        pos = t0 + rr
        ok = pos < L
        if LANES:
            tl.store(OUT + (row + pos)[:, None] * K + ii[None, :], tl.full((BT, KP), value, tl.float32),
                     mask=ok[:, None] & (ii[None, :] < K))
        else:
            tl.store(OUT + row + pos, tl.full((BT,), value, tl.int64), mask=ok)


@triton.jit
def _lanes_if(lanes, cond):
    """``lanes & cond`` for a vector mask and a scalar condition. (Written so: Triton 3.9's interpreter turns
    ``vector & scalar`` of booleans into int32, which ``tl.load``/``tl.store`` then refuse as a mask.)"""
    return lanes & ((lanes.to(tl.int32) * 0 + cond.to(tl.int32)) != 0)


@triton.jit
def _safe_max(m):
    """The shift of a max-shifted log-sum-exp: the max, or 0 where it is -inf (an all -inf column)."""
    return tl.where(m == float("-inf"), 0.0, m)


@triton.jit
def _one_ulp_down(x):
    """The next fp32 value below x (-inf stays -inf)."""
    bits = x.to(tl.int32, bitcast=True)
    down = tl.where(x > 0, bits - 1, tl.where(x < 0, bits + 1, -2147483647))  # 0 -> -(smallest subnormal)
    return tl.where(x == float("-inf"), x, down.to(tl.float32, bitcast=True))


# ----------------------------------------------------------------------------------------------------------------
# Sum-product: log Z, marginals, gradients
# ----------------------------------------------------------------------------------------------------------------


@_autotune
@triton.jit
def _forward_kernel(
    E, MASK, RANGES, TRANS, START, END,  # (B, L, K), (B, L) uint8, (B, 2) int32, (K, K), (K,), (K,)
    ALPHA, LOGZ,  # (B, L, KP) fp32 scratch, (B,) fp32
    L, K,
    KP: tl.constexpr,
):
    b = tl.program_id(0)
    first, last = row_range(RANGES, b)
    live = first < last
    row = b.to(tl.int64) * L
    ii = tl.arange(0, KP)
    lane = ii < K
    trans, st, en = _load_parameters(TRANS, START, END, K, KP)

    e = tl.load(E + (row + first) * K + ii, mask=_lanes_if(lane, live), other=float("-inf")).to(tl.float32)
    alpha = st + e  # α at the first real position
    tl.store(ALPHA + (row + first) * KP + ii, alpha, mask=_lanes_if(ii < KP, live))
    # Software prefetch: the emissions and mask of step t are loaded during step t-1.
    nxt = first + 1
    e_next = tl.load(E + (row + nxt) * K + ii, mask=_lanes_if(lane, nxt < last), other=float("-inf"))
    m_next = tl.load(MASK + row + nxt, mask=nxt < last, other=0)
    for t in range(first + 1, last):
        e = e_next.to(tl.float32)
        m = m_next
        e_next = tl.load(E + (row + t + 1) * K + ii, mask=_lanes_if(lane, t + 1 < last), other=float("-inf"))
        m_next = tl.load(MASK + row + t + 1, mask=t + 1 < last, other=0)
        x = alpha[:, None] + trans  # (KP, KP): [i, j]
        shift = _safe_max(tl.max(x, axis=0))
        new = tl.log(tl.sum(tl.exp(x - shift[None, :]), axis=0)) + shift + e
        alpha = tl.where(m != 0, new, alpha)  # holes carry α
        tl.store(ALPHA + (row + t) * KP + ii, alpha)

    fin = alpha + en
    shift = _safe_max(tl.max(fin, axis=0))
    log_z = tl.log(tl.sum(tl.exp(fin - shift), axis=0)) + shift
    tl.store(LOGZ + b, tl.where(live, log_z, 0.0))


@_autotune
@triton.jit
def _backward_kernel(
    E, MASK, RANGES, TRANS_T, START, END, ALPHA, LOGZ, GRAD,  # TRANS_T: the transposed transitions (K, K)
    DE,  # (B, L, K): GRAD[b] * marginals (in the dtype of DE)
    DT_T, DSTART, DEND,  # (B, K, K) transposed, (B, K), (B, K): fp32 per-row partials (PAIR only)
    L, K,
    KP: tl.constexpr, BT: tl.constexpr, PAIR: tl.constexpr,
):
    b = tl.program_id(0)
    first, last = row_range(RANGES, b)
    live = first < last
    row = b.to(tl.int64) * L
    ii = tl.arange(0, KP)
    lane = ii < K
    # The tile is indexed [j, i] = T[i, j] (the next tag j first): the reductions over j then leave vectors over i
    # in the tile's cheap layout (Triton spreads the contiguous second dim over the threads of a warp).
    trans_t, st, en = _load_parameters(TRANS_T, START, END, K, KP)
    g = tl.load(GRAD + b).to(tl.float32)
    log_z = tl.load(LOGZ + b)
    log_z = _safe_max(log_z)  # every path banned: log Z = -inf, and every α + β is -inf too -> marginals 0

    _zero_padding(DE, row, first, last, L, K, 0.0, KP, BT, True)

    beta = en
    acc = tl.zeros((KP, KP), dtype=tl.float32)  # Σ_t pairwise marginals, [j, i]
    marg = tl.zeros((KP,), dtype=tl.float32)
    t_last = last - 1
    alpha = tl.load(ALPHA + (row + t_last) * KP + ii, mask=_lanes_if(ii < KP, live), other=float("-inf"))
    marg_last = tl.exp(alpha + en - log_z)
    # Software prefetch: what step t needs is loaded during step t+1.
    m_next = tl.load(MASK + row + t_last, mask=live, other=0)
    e_next = tl.load(E + (row + t_last) * K + ii, mask=_lanes_if(lane, live), other=float("-inf"))
    a_next = tl.load(ALPHA + (row + t_last - 1) * KP + ii, mask=_lanes_if(ii < KP, t_last > first),
                     other=float("-inf"))
    for i in range(0, last - first):
        t = last - 1 - i
        m = m_next != 0
        e = e_next.to(tl.float32)
        alpha_prev = a_next  # α at t - 1 (holes carry α: the previous real position's)
        m_next = tl.load(MASK + row + t - 1, mask=t - 1 >= first, other=0)
        e_next = tl.load(E + (row + t - 1) * K + ii, mask=_lanes_if(lane, t - 1 >= first), other=float("-inf"))
        a_next = tl.load(ALPHA + (row + t - 2) * KP + ii, mask=_lanes_if(ii < KP, t - 2 >= first),
                         other=float("-inf"))
        cur = tl.exp(alpha + beta - log_z)  # the marginals at t (α + β <= log Z)
        tl.store(DE + (row + t) * K + ii, tl.where(m, g * cur, 0.0), mask=lane)
        marg = tl.where(m, cur, marg)
        # β one real position earlier: β'[i] = LSE_j(T[i, j] + e_t[j] + β[j])
        x = trans_t + (e + beta)[:, None]  # (KP, KP): [j, i]
        col_max = tl.max(x, axis=0)  # over j
        shift = _safe_max(col_max)
        p = tl.exp(x - shift[None, :])  # <= 1
        step = m & (t > first)
        if PAIR:
            # pairwise marginal exp(α_prev[i] + x[j, i] - log Z) = p[j, i] · exp(α_prev[i] + shift[i] - log Z),
            # the second factor <= 1 (shift[i] <= β'[i]); 0 where x[:, i] is all -inf.
            scale = tl.exp(tl.where(col_max == float("-inf"), float("-inf"), alpha_prev + shift - log_z))
            acc += tl.where(step, p * scale[None, :], 0.0)
        beta = tl.where(step, tl.log(tl.sum(p, axis=0)) + shift, beta)
        alpha = alpha_prev

    if PAIR:
        kk = lane[:, None] & lane[None, :]
        tl.store(DT_T + b.to(tl.int64) * K * K + ii[:, None] * K + ii[None, :], g * acc, mask=kk)  # [j, i]
        tl.store(DSTART + b.to(tl.int64) * K + ii, g * marg, mask=lane)  # the marginals at the first position
        tl.store(DEND + b.to(tl.int64) * K + ii, g * marg_last, mask=lane)


# ----------------------------------------------------------------------------------------------------------------
# Max-product: Viterbi and max-marginals
# ----------------------------------------------------------------------------------------------------------------


@_autotune
@triton.jit
def _viterbi_kernel(
    E, MASK, RANGES, TRANS, START, END,
    BP,  # (B, L, KP) int8 scratch: backpointers
    DELTA,  # (B, L, KP) fp32 scratch (STORE_DELTA only)
    TAGS, SCORE,  # (B, L) int64, (B,) fp32
    L, K,
    KP: tl.constexpr, BT: tl.constexpr, STORE_DELTA: tl.constexpr,
):
    b = tl.program_id(0)
    first, last = row_range(RANGES, b)
    live = first < last
    row = b.to(tl.int64) * L
    ii = tl.arange(0, KP)
    lane = ii < K
    trans, st, en = _load_parameters(TRANS, START, END, K, KP)

    _zero_padding(TAGS, row, first, last, L, K, -100, KP, BT, False)

    e = tl.load(E + (row + first) * K + ii, mask=_lanes_if(lane, live), other=float("-inf")).to(tl.float32)
    delta = st + e
    if STORE_DELTA:
        tl.store(DELTA + (row + first) * KP + ii, delta, mask=_lanes_if(ii < KP, live))
    nxt = first + 1
    e_next = tl.load(E + (row + nxt) * K + ii, mask=_lanes_if(lane, nxt < last), other=float("-inf"))
    m_next = tl.load(MASK + row + nxt, mask=nxt < last, other=0)
    for t in range(first + 1, last):
        e = e_next.to(tl.float32)
        m = m_next != 0
        e_next = tl.load(E + (row + t + 1) * K + ii, mask=_lanes_if(lane, t + 1 < last), other=float("-inf"))
        m_next = tl.load(MASK + row + t + 1, mask=t + 1 < last, other=0)
        x = delta[:, None] + trans  # (KP, KP): [i, j]
        best = tl.max(x, axis=0)
        arg = tl.min(tl.where(x == best[None, :], ii[:, None], KP), axis=0)  # the lowest i among ties
        delta = tl.where(m, best + e, delta)
        tl.store(BP + (row + t) * KP + ii, tl.where(m, arg, ii).to(tl.int8))  # identity at holes
        if STORE_DELTA:
            tl.store(DELTA + (row + t) * KP + ii, delta)

    fin = delta + en
    score = tl.max(fin, axis=0)
    y = tl.min(tl.where(fin == score, ii, KP), axis=0)  # the lowest final tag among ties
    tl.store(SCORE + b, tl.where(live, score, 0.0))

    tl.debug_barrier()  # the backpointers written above by every thread of this program are visible below
    # Backtrace, BT positions per tile, from last - 1 down to first; tile j+1 is loaded while tile j is walked.
    rr = tl.arange(0, BT)
    pos = last - 1 - rr
    tile = tl.load(BP + (row + pos)[:, None] * KP + ii[None, :], mask=(pos > first)[:, None], other=0).to(tl.int32)
    for t0 in range(0, last - first, BT):
        pos = last - 1 - t0 - rr  # (BT,) descending
        inside = pos >= first
        mt = tl.load(MASK + row + pos, mask=inside, other=0) != 0
        pos_next = pos - BT
        tile_next = tl.load(BP + (row + pos_next)[:, None] * KP + ii[None, :], mask=(pos_next > first)[:, None],
                            other=0).to(tl.int32)
        tags = tl.full((BT,), -100, tl.int64)
        for j in tl.static_range(BT):
            tags = tl.where((rr == j) & mt, y.to(tl.int64), tags)
            back = tl.sum(tl.sum(tl.where((rr[:, None] == j) & (ii[None, :] == y), tile, 0), axis=1), axis=0)
            y = tl.where(last - 1 - t0 - j > first, back, y)  # no step back from the first real position
        tl.store(TAGS + row + pos, tags, mask=inside)
        tile = tile_next


@_autotune
@triton.jit
def _max_marginal_kernel(
    E, MASK, RANGES, TRANS_T, START, END, DELTA, TAGS,  # TRANS_T: the transposed transitions (K, K)
    MM,  # (B, L, K) fp32
    L, K,
    KP: tl.constexpr, BT: tl.constexpr,
):
    b = tl.program_id(0)
    first, last = row_range(RANGES, b)
    row = b.to(tl.int64) * L
    ii = tl.arange(0, KP)
    lane = ii < K
    trans_t, st, en = _load_parameters(TRANS_T, START, END, K, KP)  # [j, i], as in the backward kernel

    _zero_padding(MM, row, first, last, L, K, 0.0, KP, BT, True)

    psi = en
    t_last = last - 1
    live = first < last
    m_next = tl.load(MASK + row + t_last, mask=live, other=0)
    e_next = tl.load(E + (row + t_last) * K + ii, mask=_lanes_if(lane, live), other=float("-inf"))
    d_next = tl.load(DELTA + (row + t_last) * KP + ii, mask=_lanes_if(ii < KP, live), other=float("-inf"))
    y_next = tl.load(TAGS + row + t_last, mask=live, other=-100)
    for i in range(0, last - first):
        t = last - 1 - i
        m = m_next != 0
        e = e_next.to(tl.float32)
        delta = d_next
        y = y_next
        ok = t - 1 >= first
        m_next = tl.load(MASK + row + t - 1, mask=ok, other=0)
        e_next = tl.load(E + (row + t - 1) * K + ii, mask=_lanes_if(lane, ok), other=float("-inf"))
        d_next = tl.load(DELTA + (row + t - 1) * KP + ii, mask=_lanes_if(ii < KP, ok), other=float("-inf"))
        y_next = tl.load(TAGS + row + t - 1, mask=ok, other=-100)
        mm = delta + psi
        on_path = ii == y
        value = tl.max(tl.where(on_path, mm, float("-inf")), axis=0)  # the Viterbi path's entry at t
        mm = tl.where((~on_path) & (mm >= value), _one_ulp_down(value), mm)
        # no legal path (value -inf): the path's entry becomes the lowest finite value, so argmax still finds it
        mm = tl.where(_lanes_if(on_path, value == float("-inf")), -3.4028234663852886e38, mm)
        tl.store(MM + (row + t) * K + ii, tl.where(m, mm, 0.0), mask=lane)
        # ψ one real position earlier: ψ'[i] = max_j(T[i, j] + e_t[j] + ψ[j])
        psi_prev = tl.max(trans_t + (e + psi)[:, None], axis=0)
        psi = tl.where(m & (t > first), psi_prev, psi)


# ----------------------------------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------------------------------


def _prepare(emissions, mask, transitions, start, end):
    """Contiguous kernel inputs: mask as uint8 (B, L), the real range [first, last) of each row as (B, 2) int32
    (no host sync), fp32 parameters (the casts are differentiable, outside the autograd function)."""
    B, L, K = emissions.shape
    if mask is None:
        keep = torch.ones(B, L, dtype=torch.bool, device=emissions.device)
    else:
        keep = mask if mask.dtype == torch.bool else mask != 0
    keep = keep.contiguous()
    ranges = real_ranges(keep, B, L, emissions.device)  # (B, 2) int32
    params = [p.float().contiguous() for p in (transitions, start, end)]
    return emissions.contiguous(), keep.view(torch.uint8), ranges, params


def _forward(emissions, keep, ranges, trans, start, end):
    B, L, K = emissions.shape
    KP = lanes(K)
    alpha = buffer((B, L, KP), torch.float32, emissions.device, DEBUG_FILL)
    log_z = buffer((B,), torch.float32, emissions.device, DEBUG_FILL)
    if L == 0:
        log_z.zero_()
    elif B > 0:
        _forward_kernel[(B,)](emissions, keep, ranges, trans, start, end, alpha, log_z, L, K, KP=KP)
    return alpha, log_z


def _backward(emissions, keep, ranges, trans, start, end, alpha, log_z, grad, pair: bool, grad_dtype):
    B, L, K = emissions.shape
    KP = lanes(K)
    dev = emissions.device
    d_em = buffer((B, L, K), grad_dtype, dev, DEBUG_FILL)
    d_t = buffer((B, K, K), torch.float32, dev, DEBUG_FILL) if pair else d_em
    d_start = buffer((B, K), torch.float32, dev, DEBUG_FILL) if pair else d_em
    d_end = buffer((B, K), torch.float32, dev, DEBUG_FILL) if pair else d_em
    if L == 0:
        for buf in (d_em, d_t, d_start, d_end):
            buf.zero_()
    elif B > 0:
        _backward_kernel[(B,)](
            emissions, keep, ranges, trans.t().contiguous(), start, end, alpha, log_z, grad,
            d_em, d_t, d_start, d_end, L, K, KP=KP, BT=BT, PAIR=pair,
        )
    return d_em, d_t.transpose(1, 2), d_start, d_end


def _viterbi(emissions, keep, ranges, trans, st, en, store_delta: bool):
    B, L, K = emissions.shape
    KP = lanes(K)
    dev = emissions.device
    bp = buffer((B, L, KP), torch.int8, dev, DEBUG_FILL)
    delta = buffer((B, L, KP) if store_delta else (1,), torch.float32, dev, DEBUG_FILL)
    tags = buffer((B, L), torch.int64, dev, DEBUG_FILL, int_fill=-7)
    score = buffer((B,), torch.float32, dev, DEBUG_FILL)
    if L == 0:
        score.zero_()
    elif B > 0:
        _viterbi_kernel[(B,)](
            emissions, keep, ranges, trans, st, en, bp, delta, tags, score, L, K, KP=KP, BT=BT, STORE_DELTA=store_delta
        )
    return tags, score, delta


# ----------------------------------------------------------------------------------------------------------------
# log Z as custom ops (torch.library): the forward, the backward, their fake versions, the autograd
# ----------------------------------------------------------------------------------------------------------------


def _log_partition_forward_impl(
    emissions: torch.Tensor, keep: torch.Tensor, ranges: torch.Tensor, transitions: torch.Tensor,
    start: torch.Tensor, end: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log Z (B,) fp32 and the forward variables α (B, L, KP) fp32 (what the backward reads: -inf in the lanes ≥ K,
    unspecified at the positions outside each row's real range [first, last)), by the α recursion of the module
    docstring.

    emissions (B, L, K); keep (B, L) uint8; ranges (B, 2) int32 [first, last); transitions (K, K), start, end (K,)
    fp32."""
    emissions = emissions.contiguous()  # (B, L, K)
    params = [p.contiguous() for p in (transitions, start, end)]  # (K, K), (K,), (K,)
    alpha, log_z = _forward(emissions, keep.contiguous(), ranges.contiguous(), *params)
    return log_z, alpha


def _log_partition_forward_fake(emissions, keep, ranges, transitions, start, end):
    B, L, K = emissions.shape
    log_z = emissions.new_empty(B, dtype=torch.float32)  # (B,)
    alpha = emissions.new_empty(B, L, lanes(K), dtype=torch.float32)  # (B, L, KP)
    return log_z, alpha


def _log_partition_backward_impl(
    grad: torch.Tensor, emissions: torch.Tensor, keep: torch.Tensor, ranges: torch.Tensor, transitions: torch.Tensor,
    start: torch.Tensor, end: torch.Tensor, alpha: torch.Tensor, log_z: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of Σ_b grad[b] log Z_b (module docstring) by the β recursion:

        ∂/∂emissions[b, t, k] = grad[b] p_b(y_t = k)                  (B, L, K) in the dtype of emissions
        ∂/∂transitions[i, j]  = Σ_b grad[b] Σ_{r>1} p_b(y_{t_{r-1}} = i, y_{t_r} = j)      (K, K) fp32
        ∂/∂start, ∂/∂end      = Σ_b grad[b] p_b(y_{t_1} = ·), Σ_b grad[b] p_b(y_{t_n} = ·)   (K,) fp32 each

    The sums over b run in torch on per-row partials (deterministic, no atomics)."""
    emissions = emissions.contiguous()  # (B, L, K)
    params = [p.contiguous() for p in (transitions, start, end)]
    d_em, d_t, d_start, d_end = _backward(
        emissions, keep.contiguous(), ranges.contiguous(), *params, alpha.contiguous(), log_z.contiguous(),
        grad.float().contiguous(), pair=True, grad_dtype=emissions.dtype,
    )  # (B, L, K), (B, K, K), (B, K), (B, K)
    return d_em, d_t.sum(0), d_start.sum(0), d_end.sum(0)


def _log_partition_backward_fake(grad, emissions, keep, ranges, transitions, start, end, alpha, log_z):
    K = emissions.shape[-1]
    d_em = emissions.new_empty(emissions.shape)  # (B, L, K), the dtype of emissions
    d_t = emissions.new_empty(K, K, dtype=torch.float32)
    return d_em, d_t, emissions.new_empty(K, dtype=torch.float32), emissions.new_empty(K, dtype=torch.float32)


def _log_partition_setup_context(ctx, inputs, output):
    emissions, keep, ranges, transitions, start, end = inputs
    log_z, alpha = output
    ctx.save_for_backward(emissions, keep, ranges, transitions, start, end, alpha, log_z)
    ctx.mark_non_differentiable(alpha)  # the backward's input, never a loss's
    ctx.set_materialize_grads(False)


def _log_partition_backward(ctx, grad, _d_alpha):
    emissions, keep, ranges, transitions, start, end, alpha, log_z = ctx.saved_tensors
    if grad is None:
        return (None,) * 6
    d_em, d_t, d_start, d_end = torch.ops.bizoo.crf_log_partition_backward(
        grad, emissions, keep, ranges, transitions, start, end, alpha, log_z
    )
    return d_em, None, None, d_t, d_start, d_end


# ----------------------------------------------------------------------------------------------------------------
# Marginals, Viterbi and max-marginals as custom ops: no autograd (see the module docstring)
# ----------------------------------------------------------------------------------------------------------------


def _kernel_inputs(emissions, keep, ranges, transitions, start, end):
    """The six op inputs made contiguous (no copy when they already are)."""
    return [t.contiguous() for t in (emissions, keep, ranges, transitions, start, end)]


def _marginals_impl(
    emissions: torch.Tensor, keep: torch.Tensor, ranges: torch.Tensor, transitions: torch.Tensor,
    start: torch.Tensor, end: torch.Tensor,
) -> torch.Tensor:
    """Posterior marginals p(y_t = k) (B, L, K) fp32, 0 outside each row's real positions: the α recursion, then
    the β recursion with an incoming gradient of 1 and no pairwise partials (``PAIR=False``).

    emissions (B, L, K); keep (B, L) uint8; ranges (B, 2) int32 [first, last); transitions (K, K), start, end (K,)
    fp32 (as ``_prepare`` makes them)."""
    emissions, keep, ranges, trans, st, en = _kernel_inputs(emissions, keep, ranges, transitions, start, end)
    alpha, log_z = _forward(emissions, keep, ranges, trans, st, en)  # (B, L, KP), (B,)
    ones = torch.ones(emissions.shape[0], dtype=torch.float32, device=emissions.device)  # (B,)
    d_em, *_ = _backward(emissions, keep, ranges, trans, st, en, alpha, log_z, ones, pair=False,
                         grad_dtype=torch.float32)
    return d_em  # (B, L, K)


def _marginals_fake(emissions, keep, ranges, transitions, start, end):
    return emissions.new_empty(emissions.shape, dtype=torch.float32)  # (B, L, K) fp32


def _viterbi_impl(
    emissions: torch.Tensor, keep: torch.Tensor, ranges: torch.Tensor, transitions: torch.Tensor,
    start: torch.Tensor, end: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best path (tags (B, L) int64, -100 outside each row's real positions) and its score (B,) fp32, 0 for an
    empty row; ties go to the lowest tag. Inputs as for ``_marginals_impl``."""
    tags, score, _ = _viterbi(*_kernel_inputs(emissions, keep, ranges, transitions, start, end), store_delta=False)
    return tags, score


def _viterbi_fake(emissions, keep, ranges, transitions, start, end):
    B, L, _ = emissions.shape
    return emissions.new_empty(B, L, dtype=torch.int64), emissions.new_empty(B, dtype=torch.float32)


def _max_marginals_impl(
    emissions: torch.Tensor, keep: torch.Tensor, ranges: torch.Tensor, transitions: torch.Tensor,
    start: torch.Tensor, end: torch.Tensor,
) -> torch.Tensor:
    """Max-marginals (B, L, K) fp32, 0 outside each row's real positions, ties with the Viterbi path's entry one
    ulp below it: the δ recursion and backtrace (``_viterbi_kernel`` storing δ), then the ψ recursion
    (``_max_marginal_kernel``). Inputs as for ``_marginals_impl``."""
    emissions, keep, ranges, trans, st, en = _kernel_inputs(emissions, keep, ranges, transitions, start, end)
    B, L, K = emissions.shape
    tags, _, delta = _viterbi(emissions, keep, ranges, trans, st, en, store_delta=True)  # (B, L), (B, L, KP)
    mm = buffer((B, L, K), torch.float32, emissions.device, DEBUG_FILL)
    if B > 0 and L > 0:
        _max_marginal_kernel[(B,)](
            emissions, keep, ranges, trans.t().contiguous(), st, en, delta, tags, mm, L, K, KP=lanes(K), BT=BT
        )
    return mm


def _max_marginals_fake(emissions, keep, ranges, transitions, start, end):
    return emissions.new_empty(emissions.shape, dtype=torch.float32)  # (B, L, K) fp32


# The ops, once per process (dispatch.register_op): the log-partition with its autograd; the decoders without (as
# their references, they are not differentiable).
register_op("crf_log_partition_backward", _log_partition_backward_impl, _log_partition_backward_fake,
            backward_of="crf_log_partition / crf_log_likelihood")
register_op("crf_log_partition_forward", _log_partition_forward_impl, _log_partition_forward_fake,
            backward=_log_partition_backward, setup_context=_log_partition_setup_context)
register_op("crf_marginals", _marginals_impl, _marginals_fake)
register_op("crf_viterbi", _viterbi_impl, _viterbi_fake)
register_op("crf_max_marginals", _max_marginals_impl, _max_marginals_fake)


def log_partition_triton(emissions, mask, transitions, start, end) -> torch.Tensor:
    """log Z of each row (B,) fp32, differentiable w.r.t. emissions, transitions, start and end (module docstring);
    the kernels run through ``torch.ops.bizoo.crf_log_partition_forward`` (and its backward)."""
    check_triton_inputs("crf_log_partition", emissions, mask, transitions, start, end)
    with autocast_off(emissions.device):
        emissions, keep, ranges, (trans, st, en) = _prepare(emissions, mask, transitions, start, end)
        log_z, _ = torch.ops.bizoo.crf_log_partition_forward(emissions, keep, ranges, trans, st, en)  # (B,)
        return log_z


@torch.no_grad()
def marginals_triton(emissions, mask, transitions, start, end) -> torch.Tensor:
    """Posterior marginals p(y_t = k) (B, L, K) fp32, 0 at padding (the forward-backward algorithm, through
    ``torch.ops.bizoo.crf_marginals``; no autograd)."""
    check_triton_inputs("crf_marginals", emissions, mask, transitions, start, end)
    emissions, keep, ranges, (trans, st, en) = _prepare(emissions, mask, transitions, start, end)
    return torch.ops.bizoo.crf_marginals(emissions, keep, ranges, trans, st, en)


@torch.no_grad()
def viterbi_triton(emissions, mask, transitions, start, end) -> tuple[torch.Tensor, torch.Tensor]:
    """The best path (tags (B, L) int64, -100 at padding) and its score (B,) fp32; ties go to the lowest tag
    (through ``torch.ops.bizoo.crf_viterbi``)."""
    check_triton_inputs("crf_viterbi", emissions, mask, transitions, start, end)
    emissions, keep, ranges, (trans, st, en) = _prepare(emissions, mask, transitions, start, end)
    return torch.ops.bizoo.crf_viterbi(emissions, keep, ranges, trans, st, en)


@torch.no_grad()
def max_marginals_triton(emissions, mask, transitions, start, end) -> torch.Tensor:
    """Max-marginals (B, L, K) fp32: the best score of a path through tag k at position t, 0 at padding, with
    entries that tie the Viterbi path's value one ulp below it (``argmax`` = the Viterbi tags); through
    ``torch.ops.bizoo.crf_max_marginals``, no autograd."""
    check_triton_inputs("crf_max_marginals", emissions, mask, transitions, start, end)
    emissions, keep, ranges, (trans, st, en) = _prepare(emissions, mask, transitions, start, end)
    return torch.ops.bizoo.crf_max_marginals(emissions, keep, ranges, trans, st, en)
