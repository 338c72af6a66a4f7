r"""LION's chunk schedule on Triton: 2 launches forward, 3 backward, linear in L, no host work.

The math is ``reference.py``'s (the oracle). Per batch row and head, with a_t = log λ_t (floored at ``LOG_DECAY_MIN``,
0 at padding), chunks of C tokens, and inside chunk n the range sums (all direct sums of a, see "Precision")

    pre⁻_i = Σ_{m<i} a_m,  pre⁺_i = Σ_{m<=i} a_m,  suf⁺_i = Σ_{m>=i} a_m,  suf⁻_i = Σ_{m>i} a_m,  T_n = Σ_m a_m
    (m over chunk n only), and D_ij = Σ_{j<=m<i} a_m (i > j), Σ_{i<m<=j} a_m (i < j), 0 (i = j) = log M_ij,

the forward pass is

    S_n^→ = e^{T_{n-1}} S_{n-1}^→ + Σ_{j∈n-1} e^{suf⁺_j} k_j [v_j, 1]ᵀ          (all chunks before n; S_0^→ = 0)
    S_n^← = e^{T_{n+1}} S_{n+1}^← + Σ_{j∈n+1} e^{pre⁺_j} k_j [v_j, 1]ᵀ          (all chunks after n)
    [o_i, den_i] = Σ_{j∈n} (q_i·k_j) e^{D_ij} [v_j, 1] + e^{pre⁻_i} q_iᵀ S_n^→ + e^{suf⁻_i} q_iᵀ S_n^←
    y_i = o_i / den_i   (den_i = 1 where it is exactly 0 or i is padding; y_i = 0 at padding; normalize=False: o_i)

Launch 1, ``_scan_kernel``: both scans at once (the direction is a grid axis), storing every chunk's state before
it is updated: (B·H, 2, N, Dk, Dv) in bf16 for bf16 inputs (fp32 otherwise, or on request), the ones column (the
normaliser's states, (B·H, 2, N, Dk)) in fp32. The carried state stays fp32 in registers; only stored copies round.
Launch 2, ``_forward_kernel``: one program per chunk, the intra-chunk C×C product plus the two state terms, the
normaliser fused, y written in the dtype and strides of the output (the model's (B, L, H, D) layout: no copies).

Backward. With dO_i = dy_i / den_i and dden_i = -(dy_i·y_i)/den_i (0 for normalize=False, at padding and where den
was 0), dA_ij = dO_i·v_j + dden_i = [dO_i, dden_i]·[v_j, 1], and A_ij = M_ij (q_i·k_j):

    dq_i = Σ_j M_ij dA_ij k_j,   dk_j = Σ_i M_ij dA_ij q_i,   dv_j = Σ_i A_ij dO_i.

dq needs the forward states again; dk and dv need the gradient states, one scan each way over q_i [dO_i, dden_i]ᵀ:

    R_n^→ = e^{T_{n-1}} R_{n-1}^→ + Σ_{i∈n-1} e^{suf⁻_i} q_i [dO_i, dden_i]ᵀ     (queries before chunk n)
    R_n^← = e^{T_{n+1}} R_{n+1}^← + Σ_{i∈n+1} e^{pre⁻_i} q_i [dO_i, dden_i]ᵀ     (queries after chunk n)
    dk_j += e^{pre⁺_j} R_n^→ [v_j, 1] + e^{suf⁺_j} R_n^← [v_j, 1],
    dv_j += e^{pre⁺_j} R_n^→ᵀ k_j + e^{suf⁺_j} R_n^←ᵀ k_j.

The decay gradient: with W_ij = dA_ij A_ij, split into its causal part (i > j) and anti-causal part (i < j),

    ρ_t = Σ_{j<t} W_tj - Σ_{i>t} W_it,   σ_t = Σ_{i<t} W_it - Σ_{j>t} W_tj,   da_m = Σ_{t>m} ρ_t + Σ_{t>=m} σ_t

(ρ is the derivative with respect to the exclusive prefix sum P_t, σ to the inclusive one). Inside a chunk the row
and column sums of W are read off the C×C tile; from other chunks they are q_t·dq_t and k_t·dk_t of the state terms.

Launch 1, ``_scan_kernel`` again (gradient states, from q, dy, y and den: see "Half precision"). Launch 2,
``_backward_kernel``: per chunk, one C×C score tile shared by dq, dk and dv (as FlashAttention's backward), the
state terms, ρ and σ, and each chunk's partial decay gradient Σ_{t>m, t∈n} (ρ_t + σ_t) + σ_m with its chunk total.
Launch 3, ``_decay_grad_kernel``: adds the totals of the chunks to the right (one program per row, chunks last to
first) and writes da in the dtype of log λ, 0 at padding and below the floor.

Precision. Every exponent is a direct sum of the decays it spans: the C×C matrix D by masked cumulative sums along
a row (one reversed for the lower triangle), the vectors by scans of a (the exclusive ones of a read one position
over), and chunk totals; across chunks the decays are carried as factors e^{T}. Nothing large is subtracted: in fp32
a prefix sum that has passed one strong decay (log λ = -1e4) has lost every digit of the weak decays after it, so no
exponent here is a difference of prefix sums. Sums of same-sign terms round to C·eps of themselves.

Products accumulate in fp32; half inputs (and their stored states) multiply on tensor cores, fp32 inputs as torch's
fp32 matrix products do: IEEE unless torch allows TF32 (``triton_utils.dot_precision``).

Half precision: what is rounded to half for a product must be in fp16's range, and the normaliser's intermediates
need not be: den_i is as small as q_i (the op is invariant to the scale of q), so at q·k ~ 1e-6 the scores are fp16
subnormals, and at q·k ~ 1e-4 with dy ~ 50 (a GradScaler's loss) dO = dy/den is ~1e6, past 65504, while y and
every gradient are in range. So 1/den is never applied to a half operand in place but in fp32, to a factor whose
range it fixes:

* forward: den_i first (its state terms are vectors: cheap), then y_i = Σ_j (p_ij/den_i) v_j + (e^{pre⁻_i}/den_i)
  q_iᵀ S^→ + (e^{suf⁻_i}/den_i) q_iᵀ S^←: the scores are rounded as p/den (O(1) for any scale of q), not as p;
* backward: the products take dy (as given: in range) and e_i = den_i dden_i = -(dy_i·y_i), and 1/den_i goes
  in fp32 onto the rows of dA and dq, onto the scores before they are rounded for dv (A_ij/den_i: O(1)), and onto
  q before it is rounded for dk (q_i/den_i: O(1/|k|), in range wherever dk ~ |dy||v|/|k| is); the gradient scan
  folds it into q's fp32 weights: q_i [dO_i, dden_i]ᵀ = (q_i/den_i) [dy_i, e_i]ᵀ.

Without the normaliser there is no 1/den and the products take p, dy and q as they are. bf16 takes the same paths.

Blocks too large for a GPU: the blocks grow with the chunk, the head size and the dtype. Where a GPU refuses one
for its shared memory (Triton's ``OutOfResources``, raised before anything runs), the pass runs again at half the
chunk, down to ``MIN_CHUNK``, and later calls of that kind start there (``FITTED``): the outputs and gradients do not
depend on the chunk. A backward at another chunk than its forward's scans the forward states again at its own.

Padding: the mask is read in the kernels; padded positions read as k = v = 0 and a = 0 (masked loads: whatever they
hold, even NaN, is never read), their outputs and gradients are written as 0, and a chunk with no real token is
skipped after writing its zeros.
"""

from __future__ import annotations

import warnings

import torch

from ..triton_utils import (
    INTERPRETED,
    OutOfResources,
    autotune_configs,
    buffer,
    dot_precision,
    explains_resources,
    filled,
    first_unless_autotuning,
    lanes,
    tl,
    triton,
)
from .reference import LOG_DECAY_MIN

_LOG_DECAY_MIN = tl.constexpr(LOG_DECAY_MIN)  # a global the kernels may read
MIN_CHUNK = 16  # the smallest chunk (tl.dot's smallest tile) a pass falls back to where a GPU refuses a larger one
# The largest chunk each pass fits on a GPU, per ``_fit_key`` (step, device, dtypes, head sizes, precision): set when
# a launch at a larger one was refused for its shared memory (sm_86/89/120 give a block 99 KB: LION's bf16 backward at
# chunk 128 needs 148 KB, its fp32 one with TF32 at chunk 64 112 KB), so that later calls start there.
FITTED: dict[tuple, int] = {}
# Autotuning keys: the length and B·H in powers of two, so a new length does not retune unless its bucket is new.
TUNING_KEY = ["DK", "DV", "C", "LB", "BHB"]


def _configs(choices):
    """Autotuning candidates (meta-parameters, warps, stages); the interpreter runs one, with 16-wide tiles."""
    configs = [triton.Config(meta, num_warps=w, num_stages=s) for meta, w, s in choices]
    interpreted = triton.Config({key: 16 for key in choices[0][0]}, num_warps=1)
    return first_unless_autotuning(autotune_configs(configs, interpreted))


SCAN_CONFIGS = _configs([({"BK": 32}, 4, 2), ({"BK": 64}, 4, 2), ({"BK": 32}, 4, 3), ({"BK": 16}, 2, 2)])
FORWARD_CONFIGS = _configs([({}, 4, 1), ({}, 8, 1), ({}, 4, 2)])
BACKWARD_CONFIGS = _configs([({}, 8, 1), ({}, 4, 1), ({}, 8, 2)])


# ----------------------------------------------------------------------------------------------------------------
# Pieces every kernel shares
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _decays_at(A, a_base, sal, MASK, m_base, sml, pos, ok, HAS_DECAY: tl.constexpr, HAS_MASK: tl.constexpr):
    """keep: ``ok`` and a real token at ``pos``; a (fp32): log λ there, floored, 0 where not kept (never read)."""
    keep = ok
    if HAS_MASK:
        keep = keep & (tl.load(MASK + m_base + pos * sml, mask=keep, other=0) != 0)
    if HAS_DECAY:
        a = tl.load(A + a_base + pos * sal, mask=keep, other=0.0).to(tl.float32)
        a = tl.maximum(a, _LOG_DECAY_MIN)
    else:
        a = pos.to(tl.float32) * 0.0
    return keep, a


@triton.jit
def _chunk_decays(A, a_base, sal, MASK, m_base, sml, pos, L, HAS_DECAY: tl.constexpr, HAS_MASK: tl.constexpr):
    """keep (C,) bool: the real positions among ``pos``; a (C,) fp32: log λ floored, 0 at padding and past L."""
    return _decays_at(A, a_base, sal, MASK, m_base, sml, pos, pos < L, HAS_DECAY, HAS_MASK)


@triton.jit
def _chunk_program(A, sab, sah, sal, MASK, smb, sml, H, L, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                   HAS_DECAY: tl.constexpr, HAS_MASK: tl.constexpr):
    """What a program of the grid (chunks, B·H) works on: its chunk n, row bh = (b, h), the positions ``pos`` (and
    which are inside L and real), the key and value columns, and the chunk's log-decays."""
    n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    t = tl.arange(0, C)
    pos = n * C + t
    keep, a = _chunk_decays(A, b * sab + h * sah, sal, MASK, b * smb, sml, pos, L, HAS_DECAY, HAS_MASK)
    return n, bh, b, h, t, tl.arange(0, BK), tl.arange(0, BV), pos, pos < L, keep, a


@triton.jit
def _range_sums(A, a_base, sal, MASK, m_base, sml, pos, a, L,
                C: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_MASK: tl.constexpr):
    """pre⁻, pre⁺, suf⁺, suf⁻ (C,) and the total of one chunk's log-decays ``a`` (at ``pos``), each a direct sum:
    the inclusive ones are scans of a, the exclusive ones scans of a read one position over (within the chunk)."""
    t = tl.arange(0, C)
    if HAS_DECAY:
        _, before = _decays_at(A, a_base, sal, MASK, m_base, sml, pos - 1, (t > 0) & (pos - 1 < L), HAS_DECAY,
                               HAS_MASK)  # a_{i-1}, 0 at the chunk's start
        _, after = _decays_at(A, a_base, sal, MASK, m_base, sml, pos + 1, (t < C - 1) & (pos + 1 < L), HAS_DECAY,
                              HAS_MASK)  # a_{i+1}, 0 at the chunk's end
        pre_ex = tl.cumsum(before, axis=0)
        pre_in = tl.cumsum(a, axis=0)
        suf_in = tl.cumsum(a, axis=0, reverse=True)
        suf_ex = tl.cumsum(after, axis=0, reverse=True)
        return pre_ex, pre_in, suf_in, suf_ex, tl.sum(a, axis=0)
    zero = a * 0.0
    return zero, zero, zero, zero, tl.sum(zero, axis=0)


@triton.jit
def _decay_matrix(a, C: tl.constexpr):
    """e^{D} (C, C): D_ij = Σ_{j<=m<i} a_m below the diagonal, Σ_{i<m<=j} a_m above it, 0 on it; row-wise cumsums."""
    t = tl.arange(0, C)
    row = t[:, None]
    col = t[None, :]
    tile = tl.broadcast_to(a[None, :], (C, C))  # tile[i, m] = a_m
    lower = tl.cumsum(tl.where(col < row, tile, 0.0), axis=1, reverse=True)  # [i, j] = Σ_{m>=j, m<i} a_m
    upper = tl.cumsum(tl.where(col > row, tile, 0.0), axis=1)  # [i, j] = Σ_{m<=j, m>i} a_m
    return tl.exp(tl.where(col <= row, lower, upper))


@triton.jit
def _load_rows(X, base, sl, sd, pos, keep, cols, ncols):
    """X[base + pos·sl + cols·sd] as (C, len(cols)), 0 where a row is padding or a column is past ``ncols``."""
    return tl.load(X + base + pos[:, None] * sl + cols[None, :] * sd,
                   mask=keep[:, None] & (cols[None, :] < ncols), other=0.0)


@triton.jit
def _state_product(x, s, S_IN_INPUT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, STATE_PRECISION: tl.constexpr):
    """x (C, ·) times a stored state s, in the inputs' precision when the states are stored in their dtype."""
    if S_IN_INPUT_DTYPE:
        return tl.dot(x, s.to(x.dtype), input_precision=PRECISION)
    return tl.dot(x.to(tl.float32), s.to(tl.float32), input_precision=STATE_PRECISION)


# ----------------------------------------------------------------------------------------------------------------
# Launch 1 (forward and backward): the chunk-state scans, both directions at once
# ----------------------------------------------------------------------------------------------------------------


@triton.autotune(configs=SCAN_CONFIGS, key=TUNING_KEY + ["GRAD", "ROWSUM"])
@triton.jit
def _scan_kernel(
    X, sxb, sxh, sxl, sxd,  # forward: k; backward: q   (B, H, L, Dk)
    Y, syb, syh, syl, syd,  # forward: v; backward: dy  (B, H, L, Dv)
    O, sob, soh, sol, sod,  # backward with the normaliser: the output y (for dden)
    DEN,  # (B·H, L) fp32 row sums (backward with the normaliser)
    A, sab, sah, sal, MASK, smb, sml,
    S, Z,  # (B·H, 2, N, Dk, Dv), (B·H, 2, N, Dk): the state before each chunk, per direction
    H, L, N, DK, DV, LB, BHB,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    GRAD: tl.constexpr, ROWSUM: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_k = tl.program_id(0)
    bh = tl.program_id(1)
    d = tl.program_id(2)  # 0: left to right (S^→, R^→), 1: right to left (S^←, R^←)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    t = tl.arange(0, C)
    dk = pid_k * BK + tl.arange(0, BK)
    dv = tl.arange(0, BV)
    k_ok = dk < DK
    x_base = b * sxb + h * sxh
    y_base = b * syb + h * syh
    o_base = b * sob + h * soh
    a_base = b * sab + h * sah
    m_base = b * smb
    s_row = (bh.to(tl.int64) * 2 + d) * N
    s_ptrs = S + (s_row * DK + dk[:, None]) * DV + dv[None, :]
    s_mask = k_ok[:, None] & (dv[None, :] < DV)
    z_ptrs = Z + s_row * DK + dk

    state = tl.zeros((BK, BV), dtype=tl.float32)
    z = tl.zeros((BK,), dtype=tl.float32)
    for i in range(0, N):
        n = i + d * (N - 1 - 2 * i)
        tl.store(s_ptrs + n * DK * DV, state.to(S.dtype.element_ty), mask=s_mask)
        if ROWSUM:
            tl.store(z_ptrs + n * DK, z, mask=k_ok)
        pos = n * C + t
        keep, a = _chunk_decays(A, a_base, sal, MASK, m_base, sml, pos, L, HAS_DECAY, HAS_MASK)
        pre_ex, pre_in, suf_in, suf_ex, total = _range_sums(A, a_base, sal, MASK, m_base, sml, pos, a, L, C,
                                                            HAS_DECAY, HAS_MASK)
        if GRAD:  # queries before (after) chunk n see its keys through the decays after (before) themselves
            w = tl.exp(tl.where(d == 0, suf_ex, pre_ex))
        else:  # keys before (after) chunk n reach it through the decays from themselves on (up to themselves)
            w = tl.exp(tl.where(d == 0, suf_in, pre_in))
        x = _load_rows(X, x_base, sxl, sxd, pos, keep, dk, DK)  # (C, BK)
        y = _load_rows(Y, y_base, syl, syd, pos, keep, dv, DV)  # (C, BV)
        c = tl.where(keep, 1.0, 0.0)  # the ones column (forward)
        if GRAD:
            if ROWSUM:  # q_i [dO_i, dden_i]ᵀ = (q_i / den_i) [dy_i, -(dy_i·y_i)]ᵀ: 1/den goes with q (fp32 weight)
                den = tl.load(DEN + bh.to(tl.int64) * L + pos, mask=keep, other=1.0)
                ok = keep & (den != 0.0)
                w = w / tl.where(ok, den, 1.0)
                out = _load_rows(O, o_base, sol, sod, pos, keep, dv, DV).to(tl.float32)
                c = tl.where(ok, -tl.sum(y.to(tl.float32) * out, axis=1), 0.0)  # den_i dden_i
            y = y.to(X.dtype.element_ty)  # dy as given: in range, unlike dO = dy/den (den can be tiny)
        xw = x.to(tl.float32) * w[:, None]  # rounded to half below only after every scaling
        decay = tl.exp(total)
        state = decay * state + tl.dot(tl.trans(xw.to(X.dtype.element_ty)), y, input_precision=PRECISION)
        if ROWSUM:
            z = decay * z + tl.sum(xw * c[:, None], axis=0)


# ----------------------------------------------------------------------------------------------------------------
# Launch 2 (forward): outputs and row sums
# ----------------------------------------------------------------------------------------------------------------


@triton.autotune(configs=FORWARD_CONFIGS, key=TUNING_KEY + ["ROWSUM"])
@triton.jit
def _forward_kernel(
    Q, sqb, sqh, sql, sqd, K, skb, skh, skl, skd, V, svb, svh, svl, svd,
    A, sab, sah, sal, MASK, smb, sml,
    S, Z, OUT, sob, soh, sol, sod, DEN,
    H, L, N, DK, DV, LB, BHB,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    ROWSUM: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_MASK: tl.constexpr,
    S_IN_INPUT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, STATE_PRECISION: tl.constexpr,
):
    n, bh, b, h, t, dk, dv, pos, inside, keep, a = _chunk_program(A, sab, sah, sal, MASK, smb, sml, H, L, C, BK, BV,
                                                                   HAS_DECAY, HAS_MASK)
    out_ptrs = OUT + b * sob + h * soh + pos[:, None] * sol + dv[None, :] * sod
    out_mask = inside[:, None] & (dv[None, :] < DV)
    den_ptrs = DEN + bh.to(tl.int64) * L + pos
    if tl.sum(keep.to(tl.int32), axis=0) == 0:  # a chunk of padding only
        tl.store(out_ptrs, tl.zeros((C, BV), dtype=tl.float32).to(OUT.dtype.element_ty), mask=out_mask)
        if ROWSUM:
            tl.store(den_ptrs, tl.zeros((C,), dtype=tl.float32), mask=inside)
        return

    q = _load_rows(Q, b * sqb + h * sqh, sql, sqd, pos, keep, dk, DK)  # (C, BK)
    k = _load_rows(K, b * skb + h * skh, skl, skd, pos, keep, dk, DK)  # (C, BK)
    v = _load_rows(V, b * svb + h * svh, svl, svd, pos, keep, dv, DV)  # (C, BV)
    p = tl.dot(q, tl.trans(k), input_precision=PRECISION) * _decay_matrix(a, C)  # (C, C): (q_i·k_j) M_ij

    pre_ex, pre_in, suf_in, suf_ex, total = _range_sums(A, b * sab + h * sah, sal, MASK, b * smb, sml, pos, a, L,
                                                        C, HAS_DECAY, HAS_MASK)
    w_left = tl.exp(pre_ex)  # e^{pre⁻_i}: from the chunk's start to i
    w_right = tl.exp(suf_ex)  # e^{suf⁻_i}: from i to the chunk's end
    s_at = (bh.to(tl.int64) * 2 * N + n) * DK  # forward state of chunk n; the backward one is N chunks on
    if ROWSUM:  # den first (the ones column's states are vectors: cheap), so that p is scaled before its rounding
        qf = q.to(tl.float32)
        z_left = tl.load(Z + s_at + dk, mask=dk < DK, other=0.0)
        z_right = tl.load(Z + s_at + N * DK + dk, mask=dk < DK, other=0.0)
        den = tl.sum(p, axis=1) + w_left * tl.sum(qf * z_left[None, :], axis=1) \
            + w_right * tl.sum(qf * z_right[None, :], axis=1)
        tl.store(den_ptrs, den, mask=inside)
        inv = 1.0 / tl.where(keep & (den != 0.0), den, 1.0)
        # y_i = Σ_j (p_ij / den_i) v_j + (e^{pre⁻_i} / den_i) q_iᵀ S^→ + (e^{suf⁻_i} / den_i) q_iᵀ S^←: the scores
        # are rounded to half as p/den (O(1) whatever the scale of q), not as p (an fp16 subnormal at small q·k)
        p = p * inv[:, None]
        w_left = w_left * inv
        w_right = w_right * inv
    o = tl.dot(p.to(v.dtype), v, input_precision=PRECISION)  # (C, BV)
    s_ptrs = S + (s_at + dk[:, None]) * DV + dv[None, :]
    s_mask = (dk[:, None] < DK) & (dv[None, :] < DV)
    s_left = tl.load(s_ptrs, mask=s_mask, other=0.0)  # (BK, BV)
    s_right = tl.load(s_ptrs + N * DK * DV, mask=s_mask, other=0.0)
    o += w_left[:, None] * _state_product(q, s_left, S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    o += w_right[:, None] * _state_product(q, s_right, S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    o = tl.where(keep[:, None], o, 0.0)
    tl.store(out_ptrs, o.to(OUT.dtype.element_ty), mask=out_mask)


# ----------------------------------------------------------------------------------------------------------------
# Launches 2 and 3 (backward): dq, dk, dv and the decay gradient
# ----------------------------------------------------------------------------------------------------------------


@triton.autotune(configs=BACKWARD_CONFIGS, key=TUNING_KEY + ["ROWSUM", "NEED_DA"])
@triton.jit
def _backward_kernel(
    Q, sqb, sqh, sql, sqd, K, skb, skh, skl, skd, V, svb, svh, svl, svd,
    DY, syb, syh, syl, syd, O, sob, soh, sol, sod, DEN,
    A, sab, sah, sal, MASK, smb, sml,
    S, Z, R, RZ,  # forward states (S^→, S^←) and gradient states (R^→, R^←), each (B·H, 2, N, ·)
    DQ, gqb, gqh, gql, gqd, DK_, gkb, gkh, gkl, gkd, DV_, gvb, gvh, gvl, gvd,  # the gradients, own strides
    DA_PART, DA_TOTAL,  # (B·H, L), (B·H, N) fp32: each chunk's part of da and its total
    H, L, N, DK, DV, LB, BHB,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    ROWSUM: tl.constexpr, NEED_DA: tl.constexpr, HAS_DECAY: tl.constexpr, HAS_MASK: tl.constexpr,
    S_IN_INPUT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, STATE_PRECISION: tl.constexpr,
):
    n, bh, b, h, t, dk, dv, pos, inside, keep, a = _chunk_program(A, sab, sah, sal, MASK, smb, sml, H, L, C, BK, BV,
                                                                   HAS_DECAY, HAS_MASK)
    q_ptrs = DQ + b * gqb + h * gqh + pos[:, None] * gql + dk[None, :] * gqd
    k_ptrs = DK_ + b * gkb + h * gkh + pos[:, None] * gkl + dk[None, :] * gkd
    v_ptrs = DV_ + b * gvb + h * gvh + pos[:, None] * gvl + dv[None, :] * gvd
    k_mask = inside[:, None] & (dk[None, :] < DK)
    v_mask = inside[:, None] & (dv[None, :] < DV)
    if tl.sum(keep.to(tl.int32), axis=0) == 0:  # a chunk of padding only
        zk = tl.zeros((C, BK), dtype=tl.float32)
        tl.store(q_ptrs, zk.to(DQ.dtype.element_ty), mask=k_mask)
        tl.store(k_ptrs, zk.to(DK_.dtype.element_ty), mask=k_mask)
        tl.store(v_ptrs, tl.zeros((C, BV), dtype=tl.float32).to(DV_.dtype.element_ty), mask=v_mask)
        if NEED_DA:
            tl.store(DA_PART + bh.to(tl.int64) * L + pos, tl.zeros((C,), dtype=tl.float32), mask=inside)
            tl.store(DA_TOTAL + bh.to(tl.int64) * N + n, 0.0)
        return

    q = _load_rows(Q, b * sqb + h * sqh, sql, sqd, pos, keep, dk, DK)  # (C, BK)
    k = _load_rows(K, b * skb + h * skh, skl, skd, pos, keep, dk, DK)  # (C, BK)
    v = _load_rows(V, b * svb + h * svh, svl, svd, pos, keep, dv, DV)  # (C, BV)
    dy = _load_rows(DY, b * syb + h * syh, syl, syd, pos, keep, dv, DV).to(v.dtype)  # (C, BV) as given: in range
    # With the normaliser, dO_i = dy_i / den_i and dden_i = -(dy_i·y_i) / den_i: their half-precision products would
    # overflow where den is small (dO ~ 1e6 at q·k ~ 1e-4 and dy ~ 50, a GradScaler's loss), while the gradients
    # are in range. So the products take dy and e_i = den_i dden_i = -(dy_i·y_i), and 1/den_i is applied in fp32:
    # to their rows (dA, dq) or to what the row index is summed against (the scores for dv, q for dk).
    if ROWSUM:
        den = tl.load(DEN + bh.to(tl.int64) * L + pos, mask=keep, other=1.0)
        ok = keep & (den != 0.0)
        inv = 1.0 / tl.where(ok, den, 1.0)  # (C,)
        y = _load_rows(O, b * sob + h * soh, sol, sod, pos, keep, dv, DV).to(tl.float32)
        e = tl.where(ok, -tl.sum(dy.to(tl.float32) * y, axis=1), 0.0)  # (C,) den_i dden_i
    else:
        e = tl.zeros((C,), dtype=tl.float32)

    # Inside the chunk: one score tile for dq, dk and dv. Ordered so that few C×C tiles are alive at once (the
    # decay gradient's sums first, then each tile's last use): the kernel is register-bound.
    decay = _decay_matrix(a, C)  # (C, C) M_ij
    p = tl.dot(q, tl.trans(k), input_precision=PRECISION) * decay  # A_ij
    dp = tl.dot(dy, tl.trans(v), input_precision=PRECISION) + e[:, None]  # den_i dA_ij (dA_ij without normaliser)
    if NEED_DA:
        w = dp * p
        if ROWSUM:
            w = w * inv[:, None]  # dA_ij A_ij
        row = t[:, None]
        col = t[None, :]
        w_low = tl.where(col < row, w, 0.0)
        w_up = tl.where(col > row, w, 0.0)
        rho = tl.sum(w_low, axis=1) - tl.sum(w_low, axis=0)
        sigma = tl.sum(w_up, axis=0) - tl.sum(w_up, axis=1)
    ds = dp * decay  # den_i dA_ij M_ij: in range where dA M is not
    qs = q
    if ROWSUM:
        p = p * inv[:, None]  # A_ij / den_i: O(1) whatever the scale of q
        qs = (q.to(tl.float32) * inv[:, None]).to(q.dtype)  # q_i / den_i: O(1/|k|), as dk is O(|dy| |v| / |k|)
    dval = tl.dot(tl.trans(p).to(dy.dtype), dy, input_precision=PRECISION)  # (C, BV) Σ_i (A_ij / den_i) dy_i
    dq = tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)  # (C, BK) den_i dq_i
    dkey = tl.dot(tl.trans(ds).to(q.dtype), qs, input_precision=PRECISION)  # (C, BK) Σ_i den_i dA_ij M_ij q_i/den_i

    # From the other chunks: the forward states (for dq) and the gradient states (for dk and dv; their scan has put
    # 1/den into q already).
    pre_ex, pre_in, suf_in, suf_ex, total = _range_sums(A, b * sab + h * sah, sal, MASK, b * smb, sml, pos, a, L,
                                                        C, HAS_DECAY, HAS_MASK)
    s_at = (bh.to(tl.int64) * 2 * N + n) * DK
    s_ptrs = (s_at + dk[:, None]) * DV + dv[None, :]
    s_mask = (dk[:, None] < DK) & (dv[None, :] < DV)
    z_mask = dk < DK
    # dq from keys before (S^→) and after (S^←) the chunk: e^{pre⁻_i} (S dO_i + z dden_i), e^{suf⁻_i} (...), as
    # e^{pre⁻_i} / den_i (S dy_i + z e_i) and e^{suf⁻_i} / den_i (...)
    s_left = tl.load(S + s_ptrs, mask=s_mask, other=0.0)
    dq_left = _state_product(dy, tl.trans(s_left), S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    s_right = tl.load(S + s_ptrs + N * DK * DV, mask=s_mask, other=0.0)
    dq_right = _state_product(dy, tl.trans(s_right), S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    w_left = tl.exp(pre_ex)
    w_right = tl.exp(suf_ex)
    if ROWSUM:
        dq_left += e[:, None] * tl.load(Z + s_at + dk, mask=z_mask, other=0.0)[None, :]
        dq_right += e[:, None] * tl.load(Z + s_at + N * DK + dk, mask=z_mask, other=0.0)[None, :]
        dq = dq * inv[:, None]
        w_left = w_left * inv
        w_right = w_right * inv
    dq_left = w_left[:, None] * dq_left
    dq_right = w_right[:, None] * dq_right
    # dk, dv from queries before (R^→: reach key j through e^{pre⁺_j}) and after (R^←: e^{suf⁺_j}) the chunk
    r_left = tl.load(R + s_ptrs, mask=s_mask, other=0.0)
    r_right = tl.load(R + s_ptrs + N * DK * DV, mask=s_mask, other=0.0)
    dk_left = _state_product(v, tl.trans(r_left), S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    dk_right = _state_product(v, tl.trans(r_right), S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    if ROWSUM:
        dk_left += tl.load(RZ + s_at + dk, mask=z_mask, other=0.0)[None, :]
        dk_right += tl.load(RZ + s_at + N * DK + dk, mask=z_mask, other=0.0)[None, :]
    w_in_left = tl.exp(pre_in)
    w_in_right = tl.exp(suf_in)
    dk_left = w_in_left[:, None] * dk_left
    dk_right = w_in_right[:, None] * dk_right
    dval += w_in_left[:, None] * _state_product(k, r_left, S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    dval += w_in_right[:, None] * _state_product(k, r_right, S_IN_INPUT_DTYPE, PRECISION, STATE_PRECISION)
    dq += dq_left + dq_right
    dkey += dk_left + dk_right

    real = keep[:, None]
    tl.store(q_ptrs, tl.where(real, dq, 0.0).to(DQ.dtype.element_ty), mask=k_mask)
    tl.store(k_ptrs, tl.where(real, dkey, 0.0).to(DK_.dtype.element_ty), mask=k_mask)
    tl.store(v_ptrs, tl.where(real, dval, 0.0).to(DV_.dtype.element_ty), mask=v_mask)
    if NEED_DA:
        qf = q.to(tl.float32)
        kf = k.to(tl.float32)
        # causal: rows of W from earlier chunks' keys, minus columns from later chunks' queries; anti-causal: the
        # columns from earlier queries minus the rows from later keys
        rho += tl.sum(qf * dq_left, axis=1) - tl.sum(kf * dk_right, axis=1)
        sigma += tl.sum(kf * dk_left, axis=1) - tl.sum(qf * dq_right, axis=1)
        g = rho + sigma
        later = tl.where(t[None, :] > t[:, None], tl.broadcast_to(g[None, :], (C, C)), 0.0)
        tl.store(DA_PART + bh.to(tl.int64) * L + pos, tl.sum(later, axis=1) + sigma, mask=inside)
        tl.store(DA_TOTAL + bh.to(tl.int64) * N + n, tl.sum(g, axis=0))


@triton.jit
def _decay_grad_kernel(
    DA_PART, DA_TOTAL, A, sab, sah, sal, MASK, smb, sml, DA, sdb, sdh, sdl,
    H, L, N, C: tl.constexpr, HAS_MASK: tl.constexpr,
):
    """da_m = (its chunk's part) + Σ of the totals of the chunks after it; 0 at padding and below the floor."""
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    t = tl.arange(0, C)
    carry = tl.sum(tl.zeros((C,), dtype=tl.float32), axis=0)
    for i in range(0, N):
        n = N - 1 - i
        pos = n * C + t
        keep = pos < L
        if HAS_MASK:
            keep = keep & (tl.load(MASK + b * smb + pos * sml, mask=keep, other=0) != 0)
        raw = tl.load(A + b * sab + h * sah + pos * sal, mask=keep, other=0.0).to(tl.float32)
        part = tl.load(DA_PART + bh.to(tl.int64) * L + pos, mask=keep, other=0.0)
        da = tl.where(keep & (raw >= _LOG_DECAY_MIN), part + carry, 0.0)
        tl.store(DA + b * sdb + h * sdh + pos * sdl, da.to(DA.dtype.element_ty), mask=pos < L)
        carry += tl.load(DA_TOTAL + bh.to(tl.int64) * N + n)


# ----------------------------------------------------------------------------------------------------------------
# Host side: allocation and launches (no host synchronisation, no copies of the inputs)
# ----------------------------------------------------------------------------------------------------------------


def _strides4(x):
    return x.stride(0), x.stride(1), x.stride(2), x.stride(3)


def _decay_view(log_decay, B, H, L):
    """log λ as a (B, H, L) view (strides 0 where broadcast); a 1-element dummy for LIT."""
    if log_decay is None:
        return None
    if log_decay.dim() == 1:
        return log_decay.view(1, H, 1).expand(B, H, L)
    return log_decay


def _mask_view(mask):
    """The padding mask as something the kernels can load (bool viewed as uint8: no copy)."""
    if mask is None:
        return None
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def states_dtype(dtype: torch.dtype, fp32_states: bool) -> torch.dtype:
    """The dtype the chunk states are stored in: bf16 for bf16 inputs unless ``fp32_states``, fp32 otherwise (fp16
    states could overflow: a state sums up to L key-value products)."""
    return torch.bfloat16 if (dtype == torch.bfloat16 and not fp32_states) else torch.float32


def _common(q, v, log_decay, mask, chunk_size, fp32_states):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    C = chunk_size
    N = triton.cdiv(L, C)
    a = _decay_view(log_decay, B, H, L)
    m = _mask_view(mask)
    dummy = q  # any pointer for an absent input (never read: its flag is off)
    a_args = (a, *a.stride()) if a is not None else (dummy, 0, 0, 0)
    m_args = (m, m.stride(0), m.stride(1)) if m is not None else (dummy, 0, 0)
    half = q.dtype in (torch.float16, torch.bfloat16)
    state_dtype = states_dtype(q.dtype, fp32_states)
    precision = dot_precision(q.dtype)
    meta = dict(
        H=H, L=L, N=N, DK=DK, DV=DV, LB=triton.next_power_of_2(L), BHB=triton.next_power_of_2(B * H),
        C=C, HAS_DECAY=a is not None, HAS_MASK=m is not None, PRECISION=precision,
    )
    # fp32 states times half inputs cast to fp32: TF32 (the half inputs carry no more bits); fp32 inputs: as theirs
    flags = dict(S_IN_INPUT_DTYPE=state_dtype == q.dtype, STATE_PRECISION="tf32" if half else precision)
    return B, H, L, DK, DV, N, a, a_args, m_args, state_dtype, meta, flags


_TOO_LARGE = ("the chunk schedule's blocks grow with chunk_size and the head size, and are larger for fp32 inputs "
              f"(chunk {MIN_CHUNK}, the smallest, was tried too): use bf16 or fp16 inputs (e.g. autocast), smaller "
              "heads, or backend='reference'")


def _fit_key(step: str, q, v, state_dtype) -> tuple:
    """What a block's shared memory depends on, but the chunk: the step, the device, dtypes, head sizes, precision."""
    return step, q.device, q.dtype, q.shape[-1], v.shape[-1], state_dtype, dot_precision(q.dtype)


def _refused(key: tuple, chunk: int, err) -> int:
    """The next chunk to try after the GPU refused ``chunk`` for ``key`` (half of it; remembered for later calls), or
    ``err`` raised again below ``MIN_CHUNK``."""
    if chunk // 2 < MIN_CHUNK:
        raise err
    FITTED[key] = chunk // 2
    warnings.warn(f"lion_attention: the Triton chunk schedule's {key[0]} at chunk_size={chunk} needs more shared "
                  f"memory than this GPU gives one block ({err}); it runs at chunk {chunk // 2} instead, the same "
                  "math", stacklevel=4)
    return chunk // 2


def _state_scan(q, k, v, common: tuple, *, normalize: bool, fill):
    """Launch 1 of the forward: the states before each chunk (B·H, 2, N, Dk, Dv) and their ones column (B·H, 2, N, Dk)
    fp32 (or (0,) without the normaliser), at the chunk size of ``common`` (``_common``'s answer)."""
    B, H, L, DK, DV, N, a, a_args, m_args, state_dtype, meta, _ = common
    states = buffer((B * H, 2, N, DK, DV), state_dtype, q.device, fill)
    z = buffer((B * H, 2, N, DK) if normalize else (0,), torch.float32, q.device, fill)
    scan_grid = lambda cfg: (triton.cdiv(DK, cfg["BK"]), B * H, 2)  # noqa: E731
    _scan_kernel[scan_grid](
        k, *_strides4(k), v, *_strides4(v), v, 0, 0, 0, 0, q, *a_args, *m_args, states, z if normalize else states,
        BV=lanes(DV), GRAD=False, ROWSUM=normalize, **meta,
    )
    return states, z


def _forward_at(q, k, v, log_decay, mask, *, chunk: int, normalize: bool, fp32_states: bool, fill):
    """The forward pass at chunk size ``chunk`` (``chunk_forward``)."""
    common = _common(q, v, log_decay, mask, chunk, fp32_states)
    B, H, L, DK, DV, N, a, a_args, m_args, state_dtype, meta, flags = common
    states, z = _state_scan(q, k, v, common, normalize=normalize, fill=fill)
    y = buffer((B, L, H, DV), v.dtype, q.device, fill).transpose(1, 2)  # (B, H, L, Dv) view
    den = buffer((B, H, L) if normalize else (0,), torch.float32, q.device, fill)
    _forward_kernel[(N, B * H)](
        q, *_strides4(q), k, *_strides4(k), v, *_strides4(v), *a_args, *m_args,
        states, z if normalize else states, y, *_strides4(y), den if normalize else y,
        BK=lanes(DK), BV=lanes(DV), ROWSUM=normalize, **meta, **flags,
    )
    return y, den, states, z


@explains_resources("lion_attention", _TOO_LARGE)
def chunk_forward(q, k, v, log_decay, mask, *, chunk_size: int, normalize: bool, fp32_states: bool = False,
                  fill: float | None = None):
    """The forward pass: y (B, H, L, Dv) in v's dtype (a view of a (B, L, H, Dv) buffer), den (B, H, L) fp32 (empty
    without the normaliser), the states (B·H, 2, N, Dk, Dv) and their ones column (B·H, 2, N, Dk) fp32 (or empty).

    Inputs are read through their strides; ``log_decay`` None, (H,) or (B, H, L); ``mask`` (B, L) or None. Where the
    GPU's shared memory refuses a block at ``chunk_size``, the pass runs at half of it (down to ``MIN_CHUNK``; the
    outputs do not depend on the chunk) and returns the states at ``chunk_size`` all the same (every coarse chunk's
    boundary is a fine one's), and later calls start there (``FITTED``)."""
    key = _fit_key("forward", q, v, states_dtype(q.dtype, fp32_states))
    chunk = min(chunk_size, FITTED.get(key, chunk_size))
    while True:
        try:
            y, den, states, z = _forward_at(q, k, v, log_decay, mask, chunk=chunk, normalize=normalize,
                                            fp32_states=fp32_states, fill=fill)
            break
        except OutOfResources as err:  # raised before the launch: nothing ran
            chunk = _refused(key, chunk, err)
    if chunk != chunk_size:  # the states at chunk_size, as the op's fake (and so a compiled graph) has them
        states, z = _coarser_states(states, z, q.shape[2], chunk, chunk_size, normalize)
    return y, den, states, z


def _coarser_states(states, z, L: int, chunk: int, coarse: int, normalize: bool):
    """The states before each chunk of ``coarse`` tokens from those of the ``chunk``-token chunks (``coarse`` a
    multiple of ``chunk``, r = coarse / chunk): chunk n of the coarse ones starts where fine chunk n·r does (the
    left-to-right state, everything before it), and ends where fine chunk (n+1)·r - 1 does (the right-to-left state,
    everything after it; past the last fine chunk nothing is after either: its state, zeros, is the last one's)."""
    r, N, fine = coarse // chunk, triton.cdiv(L, coarse), states.shape[2]
    n = torch.arange(N, device=states.device)  # (N,)
    left = n * r  # (N,)
    right = torch.clamp((n + 1) * r - 1, max=fine - 1)  # (N,)
    pick = lambda x: torch.stack([x[:, 0].index_select(1, left), x[:, 1].index_select(1, right)], dim=1)  # noqa: E731
    return pick(states), (pick(z) if normalize else z)  # (B·H, 2, N, Dk, Dv), (B·H, 2, N, Dk)


def _backward_at(dy, q, k, v, log_decay, mask, y, den, states, z, *, chunk: int, normalize: bool, need_da: bool,
                 fill):
    """The backward pass at chunk size ``chunk``, ``states`` and ``z`` the forward's at that chunk
    (``chunk_backward``)."""
    fp32_states = states.dtype == torch.float32
    B, H, L, DK, DV, N, a, a_args, m_args, state_dtype, meta, flags = _common(q, v, log_decay, mask, chunk,
                                                                            fp32_states)
    dev = q.device
    BV, BK_FULL = lanes(DV), lanes(DK)
    need_da = need_da and a is not None
    grad_states = filled(torch.empty_like(states), fill)
    grad_z = filled(torch.empty_like(z), fill) if normalize else states
    scan_grid = lambda cfg: (triton.cdiv(DK, cfg["BK"]), B * H, 2)  # noqa: E731
    _scan_kernel[scan_grid](
        q, *_strides4(q), dy, *_strides4(dy), y, *_strides4(y), den if normalize else q, *a_args, *m_args,
        grad_states, grad_z, BV=BV, GRAD=True, ROWSUM=normalize, **meta,
    )
    dq = filled(torch.empty_like(q), fill)
    dk = filled(torch.empty_like(k), fill)
    dv = filled(torch.empty_like(v), fill)
    da_part = buffer((B * H, L) if need_da else (0,), torch.float32, dev, fill)
    da_total = buffer((B * H, N) if need_da else (0,), torch.float32, dev, fill)
    _backward_kernel[(N, B * H)](
        q, *_strides4(q), k, *_strides4(k), v, *_strides4(v), dy, *_strides4(dy), y, *_strides4(y),
        den if normalize else q, *a_args, *m_args, states, z if normalize else states, grad_states, grad_z,
        dq, *_strides4(dq), dk, *_strides4(dk), dv, *_strides4(dv),
        da_part if need_da else q, da_total if need_da else q,
        BK=BK_FULL, BV=BV, ROWSUM=normalize, NEED_DA=need_da, **meta, **flags,
    )
    if not need_da:
        return dq, dk, dv, None
    # an (H,) decay is summed over B and L by the caller: in fp32
    da_dtype = log_decay.dtype if log_decay.dim() == 3 else torch.float32
    da = buffer((B, H, L), da_dtype, dev, fill)
    _decay_grad_kernel[(B * H,)](
        da_part, da_total, *a_args, *m_args, da, *da.stride(), H, L, N, C=chunk, HAS_MASK=mask is not None,
        num_warps=1 if INTERPRETED else 4,
    )
    return dq, dk, dv, da


@explains_resources("lion_attention", _TOO_LARGE)
def chunk_backward(dy, q, k, v, log_decay, mask, y, den, states, z, *, chunk_size: int, normalize: bool,
                   need_da: bool, fill: float | None = None):
    """dq, dk, dv (in the dtypes and strides of q, k, v) and da (B, H, L) in log λ's dtype (None unless ``need_da``
    and there is a decay; for an (H,) decay the caller sums it over B and L).

    Runs at ``chunk_size`` or, as ``chunk_forward``, at half of it where the GPU refuses a block; where the forward
    ran at another chunk than this pass (its states' N says so: two power-of-two chunks of one length give the same
    N only when both cover it whole, and then the states are zeros either way), the forward states are scanned again
    at this pass's chunk (one launch)."""
    fp32_states = states.dtype == torch.float32
    key = _fit_key("backward", q, v, states.dtype)
    chunk = min(chunk_size, FITTED.get(key, chunk_size))
    L = q.shape[2]
    while True:
        if states.shape[2] != triton.cdiv(L, chunk):
            states, z = _state_scan(q, k, v, _common(q, v, log_decay, mask, chunk, fp32_states),
                                    normalize=normalize, fill=fill)
        try:
            return _backward_at(dy, q, k, v, log_decay, mask, y, den, states, z, chunk=chunk, normalize=normalize,
                                need_da=need_da, fill=fill)
        except OutOfResources as err:  # raised before the launch: nothing ran
            chunk = _refused(key, chunk, err)
