r"""The PREVIOUS chunk schedule of LION in Triton, kept only so that `bizoo bench lion` can compare it with the new one
(`triton_chunk.py`); linear in L, two launches per product (chunk states, then outputs), prefix sums on the host.

It computes the same generalised product as ``triton_parallel.py`` (see its docstring: decays α for the forward
part, β for the backward part, an optional rank-one score term c_i e_j, optional row sums and directional dot
products ρF/ρB), split at chunk boundaries. With chunks of C tokens, local prefix sums inside chunk n
(p^α exclusive, s^β inclusive) and chunk totals T^α_n, T^β_n:

    F_n = exp(T^α_{n-1}) F_{n-1} + Σ_{j∈n-1} exp(T^α_{n-1} - p^α_j) [k_j; e_j] v_jᵀ     (everything before n)
    G_n = exp(T^β_{n+1}) G_{n+1} + Σ_{j∈n+1} exp(s^β_j)             [k_j; e_j] v_jᵀ     (everything after n)
    o_i = intra_i + exp(p^α_i) [q_i; c_i]ᵀ F_n + exp(T^β_n - s^β_i) [q_i; c_i]ᵀ G_n     (i ∈ n)

where intra_i is the masked C×C attention inside chunk n; the row sums carry the same recurrences with v ≡ 1.

Precision: the local prefix sums are taken in fp64 before the launches (``chunk_prefix_sums``), and every exponent
the kernels take (T - p_j, s_j, p_i, T - s_i, the chunk totals) arrives rounded once to fp32; the C×C differences
p_i - p_j and s_j - s_i are formed from fp32 hi + lo parts, as in the parallel schedule. A cumulative sum in fp32
inside the kernel would lose every digit of the weak decays that follow one strong decay (log λ = -1e4 next to
log λ = -0.1 gave relative errors of up to 3e-3 on the outputs).

Launch 1 (``_states_kernel``, grid B·H × Dk blocks × Dv blocks): the forward scan then the backward scan over the
chunks of the row's real range, storing F_n and G_n in fp32. Launch 2 (``_output_kernel``, grid chunks × B·H):
intra-chunk attention plus the two state terms. Chunks outside a row's real range are neither scanned nor
computed (their outputs are written as zeros): padding costs no work beyond partial chunks.
"""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError as err:  # the Triton backend is simply absent without triton
    raise ImportError("bizoo.kernels.lion.triton_chunk needs the `triton` package") from err

import os

import torch

from .reference import split_hi_lo

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# BIZOO_TRITON_AUTOTUNE=0 keeps the first configuration only (tests on a GPU: compile once, not once per config).
AUTOTUNE = os.environ.get("BIZOO_TRITON_AUTOTUNE", "1") != "0"


def _state_configs():
    """State-tile sizes and launch settings for the sequential scans (smaller tiles: more programs in flight)."""
    if INTERPRETED:
        return [triton.Config({"BK": 16, "BV": 16}, num_warps=1)]
    configs = [
        triton.Config({"BK": bk, "BV": bv}, num_warps=w, num_stages=st)
        for bk, bv, w, st in [(32, 32, 2, 2), (32, 64, 4, 2), (64, 64, 4, 2), (64, 64, 8, 3), (32, 32, 4, 3)]
    ]
    return configs if AUTOTUNE else configs[:1]


def _output_configs():
    if INTERPRETED:
        return [triton.Config({}, num_warps=1)]
    configs = [triton.Config({}, num_warps=w, num_stages=st) for w, st in [(4, 2), (4, 3), (8, 2), (2, 2)]]
    return configs if AUTOTUNE else configs[:1]


@triton.autotune(configs=_state_configs(), key=["DK", "DV", "C", "HAS_RANK1", "ROWSUM"])
@triton.jit
def _states_kernel(
    K, V, E, RA, SB, TA, TB, RANGES,  # RA, SB (B·H, L): T^α - p^α, s^β; TA, TB (B·H, N): chunk totals
    F, G, FZ, GZ, FE, GE, FEZ, GEZ,  # states: (B·H, N, Dk, Dv), (B·H, N, Dk), (B·H, N, Dv), (B·H, N)
    H, L, N, DK, DV,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_RANK1: tl.constexpr, ROWSUM: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_v = tl.program_id(2)
    b = pid_bh // H
    start = tl.load(RANGES + 2 * b)
    end = tl.load(RANGES + 2 * b + 1)
    seq = pid_bh.to(tl.int64) * L
    state_row = pid_bh.to(tl.int64) * N

    t = tl.arange(0, C)
    dk = pid_k * BK + tl.arange(0, BK)
    dv = pid_v * BV + tl.arange(0, BV)
    k_ok = dk < DK
    v_ok = dv < DV
    own_z = pid_v == 0  # one program per Dk block writes the key-sum states
    own_e = pid_k == 0  # one program per Dv block writes the rank-one states
    f_ptrs = F + (state_row * DK + dk[:, None]) * DV + dv[None, :]  # chunk 0
    g_ptrs = G + (state_row * DK + dk[:, None]) * DV + dv[None, :]
    kv_mask = k_ok[:, None] & v_ok[None, :]

    first = start // C
    last = (end + C - 1) // C  # one past the last chunk holding a real position

    state = tl.zeros((BK, BV), dtype=tl.float32)
    z = tl.zeros((BK,), dtype=tl.float32)
    se = tl.zeros((BV,), dtype=tl.float32)
    sez = tl.zeros((1,), dtype=tl.float32)
    for n in range(first, last):  # forward scan: store F_n, then add chunk n
        tl.store(f_ptrs + n * DK * DV, state, mask=kv_mask)
        if ROWSUM and own_z:
            tl.store(FZ + (state_row + n) * DK + dk, z, mask=k_ok)
        if HAS_RANK1 and own_e:
            tl.store(FE + (state_row + n) * DV + dv, se, mask=v_ok)
            if ROWSUM and own_z:
                tl.store(FEZ + state_row + n + tl.arange(0, 1), sez)
        pos = n * C + t
        ok = (pos >= start) & (pos < end)
        w = tl.exp(tl.load(RA + seq + pos, mask=ok, other=0.0))  # exp(T - p_j), <= 1
        k = tl.load(K + (seq + pos)[:, None] * DK + dk[None, :], mask=ok[:, None] & k_ok[None, :], other=0.0)
        v = tl.load(V + (seq + pos)[:, None] * DV + dv[None, :], mask=ok[:, None] & v_ok[None, :], other=0.0)
        kw = (k.to(tl.float32) * w[:, None]).to(v.dtype)
        decay = tl.exp(tl.load(TA + state_row + n))
        state = decay * state + tl.dot(tl.trans(kw), v, input_precision=PRECISION)
        if ROWSUM:
            z = decay * z + tl.sum(k.to(tl.float32) * w[:, None], axis=0)
        if HAS_RANK1:
            e = tl.load(E + seq + pos, mask=ok, other=0.0)
            se = decay * se + tl.sum((e * w)[:, None] * v.to(tl.float32), axis=0)
            if ROWSUM:
                sez = decay * sez + tl.sum(e * w, axis=0)

    state = tl.zeros((BK, BV), dtype=tl.float32)
    z = tl.zeros((BK,), dtype=tl.float32)
    se = tl.zeros((BV,), dtype=tl.float32)
    sez = tl.zeros((1,), dtype=tl.float32)
    for i in range(first, last):  # backward scan: store G_n, then add chunk n
        n = last - 1 - (i - first)
        tl.store(g_ptrs + n * DK * DV, state, mask=kv_mask)
        if ROWSUM and own_z:
            tl.store(GZ + (state_row + n) * DK + dk, z, mask=k_ok)
        if HAS_RANK1 and own_e:
            tl.store(GE + (state_row + n) * DV + dv, se, mask=v_ok)
            if ROWSUM and own_z:
                tl.store(GEZ + state_row + n + tl.arange(0, 1), sez)
        pos = n * C + t
        ok = (pos >= start) & (pos < end)
        w = tl.exp(tl.load(SB + seq + pos, mask=ok, other=0.0))  # exp(s_j), <= 1
        k = tl.load(K + (seq + pos)[:, None] * DK + dk[None, :], mask=ok[:, None] & k_ok[None, :], other=0.0)
        v = tl.load(V + (seq + pos)[:, None] * DV + dv[None, :], mask=ok[:, None] & v_ok[None, :], other=0.0)
        kw = (k.to(tl.float32) * w[:, None]).to(v.dtype)
        decay = tl.exp(tl.load(TB + state_row + n))
        state = decay * state + tl.dot(tl.trans(kw), v, input_precision=PRECISION)
        if ROWSUM:
            z = decay * z + tl.sum(k.to(tl.float32) * w[:, None], axis=0)
        if HAS_RANK1:
            e = tl.load(E + seq + pos, mask=ok, other=0.0)
            se = decay * se + tl.sum((e * w)[:, None] * v.to(tl.float32), axis=0)
            if ROWSUM:
                sez = decay * sez + tl.sum(e * w, axis=0)


@triton.autotune(configs=_output_configs(), key=["DK", "DV", "C", "HAS_RANK1", "ROWSUM", "HAS_R"])
@triton.jit
def _output_kernel(
    Q, K, V, C_, E, R, RANGES,
    PA_HI, PA_LO, SB_HI, SB_LO, RB,  # (B·H, L) fp32: p^α and s^β as hi + lo parts, T^β - s^β
    F, G, FZ, GZ, FE, GE, FEZ, GEZ,
    O, DEN, RHO_F, RHO_B,
    H, L, N, DK, DV,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    HAS_RANK1: tl.constexpr, ROWSUM: tl.constexpr, HAS_R: tl.constexpr, PRECISION: tl.constexpr,
):
    n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    start = tl.load(RANGES + 2 * b)
    end = tl.load(RANGES + 2 * b + 1)
    seq = pid_bh.to(tl.int64) * L
    state = pid_bh.to(tl.int64) * N + n

    t = tl.arange(0, C)
    pos = n * C + t
    in_seq = pos < L
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    o_ptrs = O + (seq + pos)[:, None] * DV + dv[None, :]
    o_mask = in_seq[:, None] & (dv[None, :] < DV)
    if (n * C >= end) | (n * C + C <= start):  # a chunk of padding only
        tl.store(o_ptrs, tl.zeros((C, BV), dtype=tl.float32), mask=o_mask)
        if ROWSUM:
            tl.store(DEN + seq + pos, tl.zeros((C,), dtype=tl.float32), mask=in_seq)
        if HAS_R:
            tl.store(RHO_F + seq + pos, tl.zeros((C,), dtype=tl.float32), mask=in_seq)
            tl.store(RHO_B + seq + pos, tl.zeros((C,), dtype=tl.float32), mask=in_seq)
        return

    ok = (pos >= start) & (pos < end)
    q = tl.load(Q + (seq + pos)[:, None] * DK + dk[None, :], mask=in_seq[:, None] & (dk[None, :] < DK), other=0.0)
    k = tl.load(K + (seq + pos)[:, None] * DK + dk[None, :], mask=ok[:, None] & (dk[None, :] < DK), other=0.0)
    v = tl.load(V + (seq + pos)[:, None] * DV + dv[None, :], mask=ok[:, None] & (dv[None, :] < DV), other=0.0)
    pa_hi = tl.load(PA_HI + seq + pos, mask=in_seq, other=0.0)  # exclusive, local
    pa_lo = tl.load(PA_LO + seq + pos, mask=in_seq, other=0.0)
    sb_hi = tl.load(SB_HI + seq + pos, mask=in_seq, other=0.0)  # inclusive, local
    sb_lo = tl.load(SB_LO + seq + pos, mask=in_seq, other=0.0)

    # Inside the chunk: the masked C×C attention.
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION)  # (C, C)
    if HAS_RANK1:
        c = tl.load(C_ + seq + pos, mask=in_seq, other=0.0)
        e = tl.load(E + seq + pos, mask=ok, other=0.0)
        s += c[:, None] * e[None, :]
    lower = t[:, None] >= t[None, :]
    fwd = (pa_hi[:, None] - pa_hi[None, :]) + (pa_lo[:, None] - pa_lo[None, :])  # p_i - p_j
    bwd = (sb_hi[None, :] - sb_hi[:, None]) + (sb_lo[None, :] - sb_lo[:, None])  # s_j - s_i
    log_m = tl.where(lower, fwd, bwd)
    p = tl.where(ok[None, :], s * tl.exp(tl.minimum(log_m, 0.0)), 0.0)
    if HAS_R:  # the two directions apart (for ρF, ρB)
        acc_f = tl.dot(tl.where(lower, p, 0.0).to(v.dtype), v, input_precision=PRECISION)  # (C, BV)
        acc_b = tl.dot(tl.where(lower, 0.0, p).to(v.dtype), v, input_precision=PRECISION)
    else:
        acc_f = tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        acc_b = tl.zeros((C, BV), dtype=tl.float32)

    # Across chunks: the forward state F_n and the backward state G_n.
    kv = (state * DK + dk[:, None]) * DV + dv[None, :]
    kv_mask = (dk[:, None] < DK) & (dv[None, :] < DV)
    f = tl.load(F + kv, mask=kv_mask, other=0.0)
    g = tl.load(G + kv, mask=kv_mask, other=0.0)
    wf = tl.exp(pa_hi)  # exp(p_i)
    wb = tl.exp(tl.load(RB + seq + pos, mask=in_seq, other=0.0))  # exp(T - s_i)
    acc_f += wf[:, None] * tl.dot(q, f.to(q.dtype), input_precision=PRECISION)
    acc_b += wb[:, None] * tl.dot(q, g.to(q.dtype), input_precision=PRECISION)
    if HAS_RANK1:
        fe = tl.load(FE + state * DV + dv, mask=dv < DV, other=0.0)
        ge = tl.load(GE + state * DV + dv, mask=dv < DV, other=0.0)
        acc_f += (wf * c)[:, None] * fe[None, :]
        acc_b += (wb * c)[:, None] * ge[None, :]
    tl.store(o_ptrs, acc_f + acc_b, mask=o_mask)

    if ROWSUM:
        fz = tl.load(FZ + state * DK + dk, mask=dk < DK, other=0.0)
        gz = tl.load(GZ + state * DK + dk, mask=dk < DK, other=0.0)
        qf = q.to(tl.float32)
        den = tl.sum(p, axis=1) + wf * tl.sum(qf * fz[None, :], axis=1) + wb * tl.sum(qf * gz[None, :], axis=1)
        if HAS_RANK1:
            den += c * (wf * tl.load(FEZ + state) + wb * tl.load(GEZ + state))
        tl.store(DEN + seq + pos, den, mask=in_seq)
    if HAS_R:
        r = tl.load(R + (seq + pos)[:, None] * DV + dv[None, :], mask=o_mask, other=0.0).to(tl.float32)
        tl.store(RHO_F + seq + pos, tl.sum(r * acc_f, axis=1), mask=in_seq)
        tl.store(RHO_B + seq + pos, tl.sum(r * acc_b, axis=1), mask=in_seq)


def chunk_prefix_sums(alpha, beta, ranges, chunk_size: int):
    """The exponents of the chunk schedule from fp64 local prefix sums (module docstring, "Precision").

    alpha, beta (B, H, L) log-decays; ranges (B, 2) [start, end) of the real positions (outside them both count as 0,
    as the kernels read them). Returns fp32 tensors (B·H, L): p^α hi, p^α lo, T^α - p^α, s^β hi, s^β lo, T^β - s^β,
    and (B·H, N): T^α, T^β.
    """
    B, H, L = alpha.shape
    C = chunk_size
    N = triton.cdiv(L, C)
    pos = torch.arange(L, device=alpha.device)
    ok = ((pos >= ranges[:, :1]) & (pos < ranges[:, 1:]))[:, None, :]  # (B, 1, L)

    def local(x, inclusive):  # (B·H, N·C) fp64 local prefix sums and (B·H, N) chunk totals
        x = torch.where(ok, x.double(), 0.0).reshape(B * H, L)
        x = torch.nn.functional.pad(x, (0, N * C - L)).view(B * H, N, C)
        s = x.cumsum(-1)
        total = s[..., -1:]
        s = s if inclusive else s - x
        return s, total

    def split(s):  # fp32 hi + lo parts of fp64 sums, back to (B·H, L)
        return tuple(part.view(B * H, -1)[:, :L].contiguous() for part in split_hi_lo(s))

    pa, ta = local(alpha, inclusive=False)
    sb, tb = local(beta, inclusive=True)
    rest = lambda s, t: (t - s).float().view(B * H, -1)[:, :L].contiguous()  # noqa: E731
    return (*split(pa), rest(pa, ta), *split(sb), rest(sb, tb),
            ta[..., 0].float().contiguous(), tb[..., 0].float().contiguous())


def chunk_product(q, k, v, alpha, beta, ranges, *, c=None, e=None, rowsum=False, r=None, chunk_size=64, fill=None):
    """The generalised LION product (see ``triton_parallel.py``) with the chunk schedule; same arguments and
    returns as ``parallel_product``, plus ``chunk_size`` (a power of two from 16 to 128)."""
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    C = chunk_size
    N = triton.cdiv(L, C)
    BK_FULL = max(16, triton.next_power_of_2(DK))
    BV_FULL = max(16, triton.next_power_of_2(DV))
    dev = q.device
    f32 = dict(device=dev, dtype=torch.float32)
    zeros = lambda *s: torch.zeros(s, **f32)  # noqa: E731  (states of skipped chunks are never read)
    empty = (lambda *s: torch.full(s, fill, **f32)) if fill is not None else (lambda *s: torch.empty(s, **f32))
    F, G = zeros(B * H, N, DK, DV), zeros(B * H, N, DK, DV)
    FZ, GZ = (zeros(B * H, N, DK), zeros(B * H, N, DK)) if rowsum else (F, G)
    FE, GE = (zeros(B * H, N, DV), zeros(B * H, N, DV)) if c is not None else (F, G)
    FEZ, GEZ = (zeros(B * H, N), zeros(B * H, N)) if (c is not None and rowsum) else (F, G)
    o = empty(B, H, L, DV)
    den = empty(B, H, L) if rowsum else o
    rho_f = empty(B, H, L) if r is not None else o
    rho_b = empty(B, H, L) if r is not None else o
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    pa_hi, pa_lo, ra, sb_hi, sb_lo, rb, ta, tb = chunk_prefix_sums(alpha, beta, ranges, C)
    cc = c.float().contiguous() if c is not None else pa_hi
    ee = e.float().contiguous() if e is not None else pa_hi
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    flags = dict(HAS_RANK1=c is not None, ROWSUM=rowsum, PRECISION=precision)
    state_grid = lambda meta: (B * H, triton.cdiv(DK, meta["BK"]), triton.cdiv(DV, meta["BV"]))  # noqa: E731
    _states_kernel[state_grid](
        k, v, ee, ra, sb_hi, ta, tb, ranges, F, G, FZ, GZ, FE, GE, FEZ, GEZ,
        H, L, N, DK, DV, C=C, **flags,
    )
    _output_kernel[(N, B * H)](
        q, k, v, cc, ee, r.contiguous() if r is not None else v, ranges, pa_hi, pa_lo, sb_hi, sb_lo, rb,
        F, G, FZ, GZ, FE, GE, FEZ, GEZ, o, den, rho_f, rho_b,
        H, L, N, DK, DV, C=C, BK=BK_FULL, BV=BV_FULL, HAS_R=r is not None, **flags,
    )
    return o, (den if rowsum else None), ((rho_f, rho_b) if r is not None else None)
