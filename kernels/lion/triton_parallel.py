r"""LION's parallel schedule in Triton: the masked attention matrix in tiles, never materialised (like FlashAttention).

This kernel computes the *generalised* LION product that the forward pass and all three gradient products of the
backward pass are instances of (see ``triton_op.py``). Per batch row and head, for rows i and columns j:

    log M_ij = P^α_i - P^α_j      (i >= j; P^α = exclusive prefix sums of α)
    log M_ij = Q^β_j - Q^β_i      (i <= j; Q^β = inclusive prefix sums of β)
    S_ij     = q_i·k_j + c_i e_j  (the rank-one term is optional)
    P_ij     = S_ij exp(log M_ij) for real columns j (ranges), 0 otherwise

    o_i   = Σ_j P_ij v_j,   den_i = Σ_j P_ij  (optional),
    ρF_i  = Σ_{j<i} P_ij (r_i·v_j),   ρB_i = Σ_{j>i} P_ij (r_i·v_j)  (optional; the diagonal left out)

LION itself is α = β = log λ; the transposed mask of the backward pass is α' = shift-left(β), β' = shift-right(α).
The prefix sums arrive as fp32 hi + lo parts of an fp64 sum, so that an entry log M_ij is exact to the rounding
of the entry itself even when the prefix sums are large (long sequences with strong decay).

Precision. Products accumulate in fp32. With half inputs, what is rounded to half for the tensor cores is scaled
per row by a power of two (exact: only the range moves) so that its largest |entry| lies in [2^14, 2^15), then
scaled back in fp32: the score tile P before P·v, by a running row maximum as FlashAttention's (at small q·k the
scores are fp16 subnormals, ~1e-6), and an fp32 operand among half ones (the backward's dO = dy/den, which exceeds
fp16's range where den is small) as it is loaded. den and ρ are sums of the fp32 tile, never of a rounded one.

Grid: (row tiles of BM, B·H). A row tile outside the row's real range [start, end) writes zeros and stops; the
column loop runs over the real range only, so padding costs no work beyond partial tiles.
"""

from __future__ import annotations

import torch

from ..triton_utils import (
    autotune_configs,
    buffer,
    dot_precision,
    explains_resources,
    first_unless_autotuning,
    lanes,
    row_range,
    tl,
    triton,
)
from .reference import split_hi_lo


def _configs():
    """Tile shapes and launch settings the autotuner chooses from on a GPU (per head sizes and flags). Under the
    interpreter one small tile, so that short test sequences still span several tiles."""
    shapes = [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2), (128, 64, 4, 3), (64, 32, 4, 2), (32, 64, 4, 2)]
    configs = [triton.Config({"BM": bm, "BN": bn}, num_warps=w, num_stages=st) for bm, bn, w, st in shapes]
    return first_unless_autotuning(autotune_configs(configs, triton.Config({"BM": 16, "BN": 16}, num_warps=1)))


# Half operands are scaled per row by powers of two (exact: only the range moves) so that their largest |entry| is in
# [_TOP, 2 _TOP): far from fp16's largest value (65504) and from its subnormals (below 6e-5 = 4e-9 _TOP). _TINY: the
# smallest scale used (rows below it are zeros, or values whose rounding to half cannot matter), so that _TOP / m
# never overflows fp32.
_TOP = tl.constexpr(16384.0)
_TINY = tl.constexpr(2.0 ** -100)


@triton.jit
def _pow2_floor(x):
    """The largest power of two <= x (x >= 0, fp32), at least ``_TINY``: x's exponent bits."""
    return tl.maximum((x.to(tl.int32, bitcast=True) & 0x7F800000).to(tl.float32, bitcast=True), _TINY)


@triton.jit
def _half_rows(x, dtype: tl.constexpr):
    """fp32 rows ``x`` of any magnitude (the backward's dO = dy/den) as ``dtype`` (half) rows times a power of two,
    their largest |entry| in [_TOP, 2 _TOP), and the factor that undoes it (fp32): rounded to half, no row overflows
    or sinks into subnormals (where x holds half values, as dy does without the normaliser, exactly)."""
    g = _pow2_floor(tl.max(tl.abs(x), axis=1)) * (1.0 / _TOP)  # (rows,) a power of two
    return (x * (1.0 / g)[:, None]).to(dtype), g


@triton.autotune(configs=_configs(), key=["DK", "DV", "HAS_RANK1", "ROWSUM", "HAS_R", "HALF", "SCALE_ROWS"])
@triton.jit
def _parallel_kernel(
    Q, K, V, C, E, R,  # inputs; C, E (rank-one term) and R (for ρ) may be dummies
    PA_HI, PA_LO, QB_HI, QB_LO,  # (B·H, L) fp32 prefix sums of α (exclusive) and β (inclusive)
    RANGES,  # (B, 2) int32: [start, end) of the real positions of each batch row
    O, DEN, RHO_F, RHO_B,  # outputs: (B·H, L, Dv) fp32, (B·H, L) fp32 x3
    H, L, DK, DV,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_RANK1: tl.constexpr, ROWSUM: tl.constexpr, HAS_R: tl.constexpr, PRECISION: tl.constexpr,
    HALF: tl.constexpr, SCALE_ROWS: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    start, end = row_range(RANGES, b)

    rows = pid_m * BM + tl.arange(0, BM)  # (BM,)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    row_ok = rows < L
    seq = pid_bh.to(tl.int64) * L  # first position of this (b, h) row

    o_ptrs = O + (seq + rows)[:, None] * DV + dv[None, :]
    o_mask = row_ok[:, None] & (dv[None, :] < DV)
    tile_start = pid_m * BM
    if (tile_start >= end) | (tile_start + BM <= start):  # the whole row tile is padding
        tl.store(o_ptrs, tl.zeros((BM, BV), dtype=tl.float32), mask=o_mask)
        if ROWSUM:
            tl.store(DEN + seq + rows, tl.zeros((BM,), dtype=tl.float32), mask=row_ok)
        if HAS_R:
            tl.store(RHO_F + seq + rows, tl.zeros((BM,), dtype=tl.float32), mask=row_ok)
            tl.store(RHO_B + seq + rows, tl.zeros((BM,), dtype=tl.float32), mask=row_ok)
        return

    q = tl.load(Q + (seq + rows)[:, None] * DK + dk[None, :], mask=row_ok[:, None] & (dk[None, :] < DK), other=0.0)
    if SCALE_ROWS == 1:  # fp32 q (the backward's dO): S_ij = g_i (q̂_i·k_j) + c_i e_j
        q, g_q = _half_rows(q, K.dtype.element_ty)
    pa_hi_i = tl.load(PA_HI + seq + rows, mask=row_ok, other=0.0)
    pa_lo_i = tl.load(PA_LO + seq + rows, mask=row_ok, other=0.0)
    qb_hi_i = tl.load(QB_HI + seq + rows, mask=row_ok, other=0.0)
    qb_lo_i = tl.load(QB_LO + seq + rows, mask=row_ok, other=0.0)
    if HAS_RANK1:
        c = tl.load(C + seq + rows, mask=row_ok, other=0.0)

    if HAS_R:
        r = tl.load(R + (seq + rows)[:, None] * DV + dv[None, :], mask=row_ok[:, None] & (dv[None, :] < DV),
                    other=0.0).to(V.dtype.element_ty)
    acc = tl.zeros((BM, BV), dtype=tl.float32)  # Σ_j P_ij v_j (half inputs: in units of m_i / _TOP)
    den = tl.zeros((BM,), dtype=tl.float32)
    rho_f = tl.zeros((BM,), dtype=tl.float32)
    rho_b = tl.zeros((BM,), dtype=tl.float32)
    # half inputs: a power of two <= the largest |P_ij| so far (for dO as v: |P_ij u_j|), at least _TINY
    m = tl.zeros((BM,), dtype=tl.float32) + _TINY

    for n in range((start // BN) * BN, end, BN):
        cols = n + tl.arange(0, BN)  # (BN,)
        col_ok = (cols >= start) & (cols < end)
        k = tl.load(K + (seq + cols)[:, None] * DK + dk[None, :], mask=col_ok[:, None] & (dk[None, :] < DK), other=0.0)
        v = tl.load(V + (seq + cols)[:, None] * DV + dv[None, :], mask=col_ok[:, None] & (dv[None, :] < DV), other=0.0)
        if SCALE_ROWS == 2:  # fp32 k (the backward's dO): S_ij = (q_i·k̂_j) h_j + c_i e_j
            k, h_k = _half_rows(k, Q.dtype.element_ty)
        if SCALE_ROWS == 3:  # fp32 v (the backward's dO): P_ij v_j = (P_ij u_j) v̂_j
            v, u_v = _half_rows(v, Q.dtype.element_ty)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # (BM, BN) fp32
        if SCALE_ROWS == 1:
            s = s * g_q[:, None]
        if SCALE_ROWS == 2:
            s = s * h_k[None, :]
        if HAS_RANK1:
            e = tl.load(E + seq + cols, mask=col_ok, other=0.0)
            s += c[:, None] * e[None, :]
        pa_hi_j = tl.load(PA_HI + seq + cols, mask=col_ok, other=0.0)
        pa_lo_j = tl.load(PA_LO + seq + cols, mask=col_ok, other=0.0)
        qb_hi_j = tl.load(QB_HI + seq + cols, mask=col_ok, other=0.0)
        qb_lo_j = tl.load(QB_LO + seq + cols, mask=col_ok, other=0.0)
        lower = rows[:, None] >= cols[None, :]
        fwd = (pa_hi_i[:, None] - pa_hi_j[None, :]) + (pa_lo_i[:, None] - pa_lo_j[None, :])
        bwd = (qb_hi_j[None, :] - qb_hi_i[:, None]) + (qb_lo_j[None, :] - qb_lo_i[:, None])
        log_m = tl.where(lower, fwd, bwd)
        p = tl.where(col_ok[None, :], s * tl.exp(tl.minimum(log_m, 0.0)), 0.0)  # entries are <= 0 up to rounding
        if ROWSUM:
            den += tl.sum(p, axis=1)
        if SCALE_ROWS == 3:
            p = p * u_v[None, :]  # the weights of the scaled rows v̂_j
        if HAS_R:  # ρ from the fp32 tile, Σ_j P_ij (r_i·v_j) off the diagonal: P's rounding to half stays out
            rv = p * tl.dot(r, tl.trans(v), input_precision=PRECISION)
            rho_f += tl.sum(tl.where(rows[:, None] > cols[None, :], rv, 0.0), axis=1)
            rho_b += tl.sum(tl.where(rows[:, None] < cols[None, :], rv, 0.0), axis=1)
        if HALF:  # p rounds to half times _TOP / m_i (a power of two; as FlashAttention's running max): neither an
            # overflow (the backward's dO ~ dy/den) nor subnormals (scores ~1e-6 at small q·k), at any row scale
            m_new = tl.maximum(m, _pow2_floor(tl.max(tl.abs(p), axis=1)))
            acc = acc * (m / m_new)[:, None]  # exact
            p = p * ((1.0 / m_new) * _TOP)[:, None]
            m = m_new
        acc += tl.dot(p.to(v.dtype), v, input_precision=PRECISION)

    if HALF:  # back to the scale of P (exact)
        acc = acc * (m * (1.0 / _TOP))[:, None]
    tl.store(o_ptrs, acc, mask=o_mask)
    if ROWSUM:
        tl.store(DEN + seq + rows, den, mask=row_ok)
    if HAS_R:
        tl.store(RHO_F + seq + rows, rho_f, mask=row_ok)
        tl.store(RHO_B + seq + rows, rho_b, mask=row_ok)


def _prefix_parts(x: torch.Tensor, inclusive: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """fp64 prefix sums of ``x`` (..., L) split into fp32 hi + lo parts."""
    s = x.double().cumsum(-1)
    if not inclusive:
        s = s - x.double()
    hi, lo = split_hi_lo(s)
    return hi.contiguous(), lo.contiguous()


@explains_resources("lion_attention", "form='attention' tiles the whole L x L product; use form='chunk' or "
                    "backend='reference'")
def parallel_product(q, k, v, alpha, beta, ranges, *, c=None, e=None, rowsum=False, r=None, fill=None):
    """The generalised LION product (module docstring) with the parallel schedule.

    Args: q, k (B, H, L, Dk) and v (B, H, L, Dv) in the compute dtype, but for at most one of them in fp32 among
    half ones (the backward's dO: rounded to half in the kernel, per row times a power of two); alpha, beta
    (B, H, L) fp32 log-decays; ranges (B, 2) int32; c, e (B, H, L) fp32 or None; r (B, H, L, Dv) or None.
    Returns o (B, H, L, Dv) fp32, den (B, H, L) fp32 or None, (ρF, ρB) (B, H, L) fp32 or None.
    """
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    BK, BV = lanes(DK), lanes(DV)
    halves = [t.dtype for t in (q, k, v) if t.dtype in (torch.float16, torch.bfloat16)]
    compute = halves[0] if halves else torch.float32  # the dtype of the products' operands
    # an fp32 operand among half ones (the backward's dO, which can exceed fp16's range): scaled per row to half
    odd = [i + 1 for i, t in enumerate((q, k, v)) if t.dtype != compute]
    if len(odd) > 1 or any(t.dtype not in (compute, torch.float32) for t in (q, k, v)):
        raise ValueError(f"parallel_product: q, k, v in {q.dtype}, {k.dtype}, {v.dtype}: one dtype, or one fp32")
    scale_rows = odd[0] if odd else 0  # 1: q, 2: k, 3: v
    dev = q.device
    o = buffer((B, H, L, DV), torch.float32, dev, fill)
    den = buffer((B, H, L), torch.float32, dev, fill) if rowsum else o
    rho_f = buffer((B, H, L), torch.float32, dev, fill) if r is not None else o
    rho_b = buffer((B, H, L), torch.float32, dev, fill) if r is not None else o
    pa_hi, pa_lo = _prefix_parts(alpha, inclusive=False)
    qb_hi, qb_lo = _prefix_parts(beta, inclusive=True)
    dummy = pa_hi
    precision = dot_precision(compute)
    grid = lambda meta: (triton.cdiv(L, meta["BM"]), B * H)  # noqa: E731
    _parallel_kernel[grid](
        q.contiguous(), k.contiguous(), v.contiguous(),
        c.contiguous() if c is not None else dummy, e.contiguous() if e is not None else dummy,
        r.contiguous() if r is not None else v,
        pa_hi, pa_lo, qb_hi, qb_lo, ranges, o, den, rho_f, rho_b,
        H, L, DK, DV,
        BK=BK, BV=BV,
        HAS_RANK1=c is not None, ROWSUM=rowsum, HAS_R=r is not None, PRECISION=precision,
        HALF=compute != torch.float32, SCALE_ROWS=scale_rows,
    )
    return o, (den if rowsum else None), ((rho_f, rho_b) if r is not None else None)
