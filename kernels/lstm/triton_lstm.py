r"""The bidirectional LSTM(P) on Triton kernels: one persistent launch per pass, both directions at once.

The math is ``reference.py``'s (gate order i, f, g, o; optional projection W_p, cell and projection clipping).
Legend: B batch, L length, H cells, P outputs (P = H without a projection), G = 4H gate rows, d the direction
(0 forward, 1 backward), s a step of the direction's reading order, t = order[d, b, s] its position.

Forward (``_forward_kernel``; grid (⌈B/BB⌉, 2): one program per block of BB rows and per direction, walking all
of the block's steps in one launch; the input gates a = W_ih x + b of every step come in precomputed by one matrix
product):

    z = a[b, t, d] + W_hh[d] h_{s-1}            per tile of BH cells: the four gate tiles, K-tiled over P
    c_s = clip(σ(z_f) c_{s-1} + σ(z_i) tanh(z_g))      m_s = σ(z_o) tanh(c_s)
    h_s = clip(W_p[d] m_s)  (or m_s)            after a barrier, per tile of BP outputs, K-tiled over H

The state lives in small scratch buffers (h double-buffered by the parity of s, c and m single), visible to the
whole program after each barrier; rows past their length keep their state (the final state is then the state
after the last real step). For the backward pass it saves the gate activations (B, L, 2, G), the unclipped cells,
m (with a projection) and the unclipped projections (with proj_clip), all fp32.

Backward (``_backward_kernel``, same grid, steps from last to first), with carries dh, dc from the later step
(initially the gradients of the final state):

    dĥ = (dy_t + dh) · [|ĥ| ≤ proj_clip]                     ĥ the unclipped output  (stored: ``grad_proj``)
    dm = W_p[d]ᵀ dĥ  (or dĥ)
    dc' = (dc + dm · o (1 - tanh² c)) · [|ĉ| ≤ cell_clip]     ĉ the unclipped cell
    dz = [dc' g · i(1-i);  dc' c_{s-1} · f(1-f);  dc' i · (1-g²);  dm tanh c · o(1-o)]   (stored: the gates' grad)
    dc ← dc' f,   dh ← W_hh[d]ᵀ dz                           (after a barrier; dz read back from its output)

The weight gradients are then two batched matrix products in torch over all steps (deterministic, no atomics):
dW_hh[d] = Σ dz_s h_{s-1}ᵀ, dW_p[d] = Σ dĥ_s m_sᵀ; the carries left at the first step are the initial state's.

Every output at padding is written as 0 by the kernels (so tests can fill buffers with NaN). Arithmetic is fp32;
the matrix products take ``torch.backends.cuda.matmul.allow_tf32``'s precision on a GPU (IEEE fp32 by default).
The recurrent weights are re-read tile by tile every step: they stay in L1/L2, not in registers.

Both passes are ``torch.library`` custom ops, ``bizoo::bilstm_forward`` and ``bizoo::bilstm_backward``, with fake
implementations and a registered autograd, so that ``torch.compile(fullgraph=True)`` puts them in its graph.
"""

from __future__ import annotations

import torch

from ..triton_utils import buffer, lanes, tl, triton
from .reference import gather_steps
from .triton_ops import register_bilstm_ops

__all__ = ["bilstm_triton"]

BB = 16  # rows per program (tl.dot needs ≥ 16)
# Tests set a fill value (NaN) for every output and scratch buffer, so an element a kernel fails to write (or
# reads before writing) cannot pass; and small tiles, so that several tiles run at small sizes.
DEBUG_FILL: float | None = None
TILE: int | None = None


def _tile(n: int) -> int:
    if TILE is not None:
        return TILE
    return min(64, lanes(n))


@triton.jit
def _row_ptrs(base, rows, t, d, L, width):
    """Offsets (BB,) of (row, position t, direction d) in a (B, L, 2, width) tensor, in int64."""
    return base + ((rows.to(tl.int64) * L + t) * 2 + d) * width


@triton.jit
def _program_rows(LENS, BLOCK_STEPS, B, BB: tl.constexpr):
    """This program's rows (BB,), which exist, their real steps, and the block's most steps."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)  # (BB,)
    row_ok = rows < B
    n = tl.load(LENS + rows, mask=row_ok, other=0)  # (BB,) real steps per row
    return rows, row_ok, n, tl.load(BLOCK_STEPS + tl.program_id(0))


@triton.jit
def _position(ORDER, d, rows, ok, B, L, s):
    """(BB,) the positions of step s of direction d (``reading_orders``) where ``ok``, else 0."""
    return tl.load(ORDER + (d * B + rows) * L + s, mask=ok, other=0)


@triton.jit
def _rows_times(X, x_ok, W, k_stride, n_stride, K, ns, n_ok, BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                PRECISION: tl.constexpr):
    """(BB, BN) fp32: Σ_{k<K} X[row, k] W[k, n] for the columns ``ns`` (BN,), K-tiled by BK. X (BB,) row pointers
    into scratch (read volatile: other programs' rows and this step's writes), rows where not ``x_ok`` read as 0;
    W[k, n] at ``W + k·k_stride + n·n_stride``."""
    acc = tl.zeros((BB, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)  # (BK,)
        k_ok = ks < K
        xk = tl.load(X[:, None] + ks[None, :], mask=x_ok[:, None] & k_ok[None, :], other=0.0, volatile=True)
        w = tl.load(W + ks[:, None] * k_stride + ns[None, :] * n_stride, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc += tl.dot(xk, w.to(tl.float32), input_precision=PRECISION)
    return acc


@triton.jit
def _zero_row(T, rows, t, d, L, width, ok, BB: tl.constexpr, BW: tl.constexpr):
    """Zeros at T[row, t, d, :width] of a (B, L, 2, width) tensor for the rows where ``ok``, BW columns at a time."""
    row = _row_ptrs(T, rows, t, d, L, width)
    for k0 in range(0, width, BW):
        ks = k0 + tl.arange(0, BW)
        zero = tl.zeros((BB, BW), dtype=tl.float32)
        tl.store(row[:, None] + ks[None, :], zero, mask=ok[:, None] & (ks < width)[None, :])


@triton.jit
def _forward_kernel(
    A, WHH, WP, ORDER, LENS, BLOCK_STEPS, BLOCK_MIN,
    Y, ACT, CR, MM, HR, HBUF, CBUF, MBUF, HN,
    B, L, H, P, cell_clip, proj_clip,
    PROJ: tl.constexpr, CLIP_C: tl.constexpr, CLIP_P: tl.constexpr, SAVE: tl.constexpr,
    BB: tl.constexpr, BH: tl.constexpr, BP: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    d = tl.program_id(1)
    G = 4 * H
    rows, row_ok, n, steps = _program_rows(LENS, BLOCK_STEPS, B, BB)
    w_hh = WHH + d * G * P
    w_p = WP + d * P * H
    c_row = CBUF + (d * B + rows.to(tl.int64)) * H  # (BB,)
    m_row = MBUF + (d * B + rows.to(tl.int64)) * H
    for s in range(0, steps):
        active = row_ok & (s < n)  # (BB,)
        t = _position(ORDER, d, rows, row_ok, B, L, s)  # (BB,) positions of this step
        rd = s % 2
        h_rd = HBUF + ((rd * 2 + d) * B + rows.to(tl.int64)) * P  # (BB,) h_{s-1}
        h_wr = HBUF + (((1 - rd) * 2 + d) * B + rows.to(tl.int64)) * P  # (BB,) h_s
        a_row = _row_ptrs(A, rows, t, d, L, G)
        for j0 in range(0, H, BH):
            cols = j0 + tl.arange(0, BH)  # (BH,)
            col_ok = cols < H
            live = active[:, None] & col_ok[None, :]  # (BB, BH)
            ptr = a_row[:, None] + cols[None, :]
            zi = tl.load(ptr, mask=live, other=0.0).to(tl.float32)  # (BB, BH) input gates
            zf = tl.load(ptr + H, mask=live, other=0.0).to(tl.float32)
            zg = tl.load(ptr + 2 * H, mask=live, other=0.0).to(tl.float32)
            zo = tl.load(ptr + 3 * H, mask=live, other=0.0).to(tl.float32)
            for k0 in range(0, P, BK):
                ks = k0 + tl.arange(0, BK)  # (BK,)
                k_ok = ks < P
                hp = tl.load(h_rd[:, None] + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0,
                             volatile=True)  # (BB, BK)
                w = w_hh + cols[None, :] * P + ks[:, None]  # (BK, BH): W_hh[gate·H + col, k]
                wm = k_ok[:, None] & col_ok[None, :]
                zi += tl.dot(hp, tl.load(w, mask=wm, other=0.0).to(tl.float32), input_precision=PRECISION)
                zf += tl.dot(hp, tl.load(w + H * P, mask=wm, other=0.0).to(tl.float32), input_precision=PRECISION)
                zg += tl.dot(hp, tl.load(w + 2 * H * P, mask=wm, other=0.0).to(tl.float32), input_precision=PRECISION)
                zo += tl.dot(hp, tl.load(w + 3 * H * P, mask=wm, other=0.0).to(tl.float32), input_precision=PRECISION)
            i = tl.sigmoid(zi)
            f = tl.sigmoid(zf)
            g = 2.0 * tl.sigmoid(2.0 * zg) - 1.0  # tanh
            o = tl.sigmoid(zo)
            keep = row_ok[:, None] & col_ok[None, :]
            c_ptr = c_row[:, None] + cols[None, :]
            c = f * tl.load(c_ptr, mask=keep, other=0.0, volatile=True) + i * g  # (BB, BH) unclipped cell
            if SAVE:
                act = _row_ptrs(ACT, rows, t, d, L, G)[:, None] + cols[None, :]
                tl.store(act, i, mask=live)
                tl.store(act + H, f, mask=live)
                tl.store(act + 2 * H, g, mask=live)
                tl.store(act + 3 * H, o, mask=live)
                tl.store(_row_ptrs(CR, rows, t, d, L, H)[:, None] + cols[None, :], c, mask=live)
            if CLIP_C:
                c = tl.minimum(tl.maximum(c, -cell_clip), cell_clip)
            m = o * (2.0 * tl.sigmoid(2.0 * c) - 1.0)  # (BB, BH) o ⊙ tanh(c)
            tl.store(c_ptr, c, mask=live)
            if PROJ:
                tl.store(m_row[:, None] + cols[None, :], m, mask=live)
                if SAVE:
                    tl.store(_row_ptrs(MM, rows, t, d, L, H)[:, None] + cols[None, :], m, mask=live)
            else:
                tl.store(_row_ptrs(Y, rows, t, d, L, P)[:, None] + cols[None, :], m, mask=live)
                prev = tl.load(h_rd[:, None] + cols[None, :], mask=keep, other=0.0, volatile=True)
                tl.store(h_wr[:, None] + cols[None, :], tl.where(active[:, None], m, prev), mask=keep)
        if PROJ:
            tl.debug_barrier()  # m_s complete
            for p0 in range(0, P, BP):
                ps = p0 + tl.arange(0, BP)  # (BP,)
                p_ok = ps < P
                acc = _rows_times(m_row, row_ok, w_p, 1, H, H, ps, p_ok, BB, BP, BK, PRECISION)  # W_p m, unclipped
                live = active[:, None] & p_ok[None, :]
                if CLIP_P:
                    if SAVE:
                        tl.store(_row_ptrs(HR, rows, t, d, L, P)[:, None] + ps[None, :], acc, mask=live)
                    acc = tl.minimum(tl.maximum(acc, -proj_clip), proj_clip)
                tl.store(_row_ptrs(Y, rows, t, d, L, P)[:, None] + ps[None, :], acc, mask=live)
                keep = row_ok[:, None] & p_ok[None, :]
                prev = tl.load(h_rd[:, None] + ps[None, :], mask=keep, other=0.0, volatile=True)
                tl.store(h_wr[:, None] + ps[None, :], tl.where(active[:, None], acc, prev), mask=keep)
        tl.debug_barrier()  # h_s, c_s complete before the next step reads them
    # The final state (in the parity the last step wrote) and zeros at every padding position.
    h_fin = HBUF + (((steps % 2) * 2 + d) * B + rows.to(tl.int64)) * P
    for p0 in range(0, P, BP):
        ps = p0 + tl.arange(0, BP)
        keep = row_ok[:, None] & (ps < P)[None, :]
        h = tl.load(h_fin[:, None] + ps[None, :], mask=keep, other=0.0, volatile=True)
        tl.store(HN + (d * B + rows.to(tl.int64))[:, None] * P + ps[None, :], h, mask=keep)
    for s in range(tl.load(BLOCK_MIN + pid), L):
        pad = row_ok & (s >= n)
        t = _position(ORDER, d, rows, row_ok, B, L, s)
        _zero_row(Y, rows, t, d, L, P, pad, BB, BP)
        if PROJ and SAVE:  # m at padding meets a zero gradient in the torch product for dW_p: keep it finite
            _zero_row(MM, rows, t, d, L, H, pad, BB, BH)


@triton.jit
def _backward_kernel(
    DY, ACT, CR, HR, WHH, WP, ORDER, LENS, BLOCK_STEPS, BLOCK_MIN, C0,
    DG, DHR, DHBUF, DCBUF,
    B, L, H, P, cell_clip, proj_clip,
    PROJ: tl.constexpr, CLIP_C: tl.constexpr, CLIP_P: tl.constexpr,
    BB: tl.constexpr, BH: tl.constexpr, BP: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    d = tl.program_id(1)
    G = 4 * H
    rows, row_ok, n, steps = _program_rows(LENS, BLOCK_STEPS, B, BB)
    w_hh = WHH + d * G * P
    w_p = WP + d * P * H
    dh_row = DHBUF + (d * B + rows.to(tl.int64)) * P  # (BB,) the carry dh
    dc_row = DCBUF + (d * B + rows.to(tl.int64)) * H  # (BB,) the carry dc
    c0_row = C0 + (d * B + rows.to(tl.int64)) * H
    for r in range(0, steps):
        s = steps - 1 - r
        active = row_ok & (s < n)  # (BB,)
        t = _position(ORDER, d, rows, row_ok, B, L, s)  # (BB,)
        has_prev = (tl.zeros((BB,), dtype=tl.int32) + s) > 0  # (BB,) a step before this one (else the initial state)
        t_prev = _position(ORDER, d, rows, row_ok & has_prev, B, L, s - 1)
        dy_row = _row_ptrs(DY, rows, t, d, L, P)
        dhr_row = _row_ptrs(DHR, rows, t, d, L, P)
        if PROJ:
            for p0 in range(0, P, BP):
                ps = p0 + tl.arange(0, BP)
                live = active[:, None] & (ps < P)[None, :]
                dh = tl.load(dy_row[:, None] + ps[None, :], mask=live, other=0.0).to(tl.float32)
                dh += tl.load(dh_row[:, None] + ps[None, :], mask=live, other=0.0, volatile=True)
                if CLIP_P:
                    hr = tl.load(_row_ptrs(HR, rows, t, d, L, P)[:, None] + ps[None, :], mask=live, other=0.0)
                    dh = tl.where(tl.abs(hr) <= proj_clip, dh, 0.0)
                tl.store(dhr_row[:, None] + ps[None, :], dh, mask=live)
            tl.debug_barrier()  # dĥ complete
        act = _row_ptrs(ACT, rows, t, d, L, G)
        dg_row = _row_ptrs(DG, rows, t, d, L, G)
        for j0 in range(0, H, BH):
            cols = j0 + tl.arange(0, BH)  # (BH,)
            col_ok = cols < H
            live = active[:, None] & col_ok[None, :]  # (BB, BH)
            if PROJ:
                dm = _rows_times(dhr_row, active, w_p, H, 1, P, cols, col_ok, BB, BH, BK, PRECISION)  # W_pᵀ dĥ
            else:
                dm = tl.load(dy_row[:, None] + cols[None, :], mask=live, other=0.0).to(tl.float32)
                dm += tl.load(dh_row[:, None] + cols[None, :], mask=live, other=0.0, volatile=True)
            ptr = act[:, None] + cols[None, :]
            i = tl.load(ptr, mask=live, other=0.0)
            f = tl.load(ptr + H, mask=live, other=0.0)
            g = tl.load(ptr + 2 * H, mask=live, other=0.0)
            o = tl.load(ptr + 3 * H, mask=live, other=0.0)
            c_raw = tl.load(_row_ptrs(CR, rows, t, d, L, H)[:, None] + cols[None, :], mask=live, other=0.0)
            prev_raw = tl.load(_row_ptrs(CR, rows, t_prev, d, L, H)[:, None] + cols[None, :],
                               mask=live & has_prev[:, None], other=0.0)
            c0 = tl.load(c0_row[:, None] + cols[None, :], mask=live & ~has_prev[:, None], other=0.0)
            c = c_raw
            if CLIP_C:
                c = tl.minimum(tl.maximum(c_raw, -cell_clip), cell_clip)
                prev_raw = tl.minimum(tl.maximum(prev_raw, -cell_clip), cell_clip)
            c_prev = tl.where(has_prev[:, None], prev_raw, c0)  # (BB, BH)
            tc = 2.0 * tl.sigmoid(2.0 * c) - 1.0  # tanh(c)
            dc_ptr = dc_row[:, None] + cols[None, :]
            dc = tl.load(dc_ptr, mask=live, other=0.0, volatile=True) + dm * o * (1.0 - tc * tc)
            if CLIP_C:
                dc = tl.where(tl.abs(c_raw) <= cell_clip, dc, 0.0)
            tl.store(dc_ptr, dc * f, mask=live)
            g_ptr = dg_row[:, None] + cols[None, :]
            tl.store(g_ptr, dc * g * i * (1.0 - i), mask=live)
            tl.store(g_ptr + H, dc * c_prev * f * (1.0 - f), mask=live)
            tl.store(g_ptr + 2 * H, dc * i * (1.0 - g * g), mask=live)
            tl.store(g_ptr + 3 * H, dm * tc * o * (1.0 - o), mask=live)
        tl.debug_barrier()  # dz complete
        for p0 in range(0, P, BP):
            ps = p0 + tl.arange(0, BP)
            p_ok = ps < P
            acc = _rows_times(dg_row, active, w_hh, P, 1, G, ps, p_ok, BB, BP, BK, PRECISION)  # (BB, BP) W_hhᵀ dz
            tl.store(dh_row[:, None] + ps[None, :], acc, mask=active[:, None] & p_ok[None, :])
        tl.debug_barrier()  # the carries complete before the earlier step reads them
    for s in range(tl.load(BLOCK_MIN + pid), L):  # zeros at every padding position
        pad = row_ok & (s >= n)
        t = _position(ORDER, d, rows, row_ok, B, L, s)
        _zero_row(DG, rows, t, d, L, G, pad, BB, BK)
        if PROJ:
            _zero_row(DHR, rows, t, d, L, P, pad, BB, BP)


# ----------------------------------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------------------------------


def _precision(device) -> str:
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def _block_ranges(lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block of BB rows: the most real steps (the recurrence's length) and the fewest (where padding starts)."""
    blocks = -(-lengths.shape[0] // BB)
    padded = torch.nn.functional.pad(lengths, (0, blocks * BB - lengths.shape[0]), value=-1).view(blocks, BB)
    top = padded.amax(1).to(torch.int32)  # (blocks,)
    low = torch.where(padded < 0, padded.amax(1, keepdim=True), padded).amin(1).to(torch.int32)  # (blocks,)
    return top.contiguous(), low.contiguous()


def _tiles(H: int, P: int) -> dict:
    return {"BB": BB, "BH": _tile(H), "BP": _tile(P), "BK": _tile(min(H, P))}


# ----------------------------------------------------------------------------------------------------------------
# The kernels as custom ops (torch.library), so that torch.compile puts them in its graph: the forward pass, the
# backward pass, their fake versions, the autograd
# ----------------------------------------------------------------------------------------------------------------


def _forward_impl(
    gates: torch.Tensor, weight_hh: torch.Tensor, weight_proj: torch.Tensor | None, h0: torch.Tensor | None,
    c0: torch.Tensor | None, order: torch.Tensor, lengths: torch.Tensor, cell_clip: float | None,
    proj_clip: float | None, save: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The forward kernel (module docstring): for each direction d and step s at position t = order[d, b, s],

        z = a[b, t, d] + W_hh[d] h_{s-1},   c_s = clip(σ(z_f) c_{s-1} + σ(z_i) tanh(z_g)),
        m_s = σ(z_o) tanh(c_s),              h_s = clip(W_p[d] m_s)  (or m_s),   y[b, t, d] = h_s.

    gates (B, L, 2, 4H), weight_hh (2, 4H, P), weight_proj (2, P, H) or None, h0 (2, B, P) / c0 (2, B, H) or None
    (zeros), order (2, B, L) and lengths (B,) from ``reading_orders``. Returns, all fp32: y (B, L, 2, P), h_n
    (2, B, P), c_n (2, B, H) and what the backward pass reads when ``save`` (else ``(0,)`` each): the gate
    activations (B, L, 2, 4H), the unclipped cells (B, L, 2, H), m (B, L, 2, H) with a projection, the unclipped
    projections (B, L, 2, P) with proj_clip.
    """
    B, L, _, G = gates.shape
    H, P = G // 4, weight_hh.shape[2]
    dev = gates.device
    proj, clip_c, clip_p = weight_proj is not None, cell_clip is not None, proj_clip is not None
    gates = gates.contiguous()  # (B, L, 2, 4H)
    w_hh = weight_hh.float().contiguous()  # (2, 4H, P)
    w_p = weight_proj.float().contiguous() if proj else w_hh  # (2, P, H); a dummy pointer without a projection
    order32 = order.to(torch.int32).contiguous()  # (2, B, L)
    lens32 = lengths.to(torch.int32).contiguous()  # (B,)
    steps, low = _block_ranges(lens32)  # (blocks,) each
    y = buffer((B, L, 2, P), torch.float32, dev, DEBUG_FILL)
    dummy = y
    act = buffer((B, L, 2, G), torch.float32, dev, DEBUG_FILL) if save else dummy
    cr = buffer((B, L, 2, H), torch.float32, dev, DEBUG_FILL) if save else dummy
    mm = buffer((B, L, 2, H), torch.float32, dev, DEBUG_FILL) if save and proj else dummy
    hr = buffer((B, L, 2, P), torch.float32, dev, DEBUG_FILL) if save and clip_p else dummy
    hbuf = buffer((2, 2, B, P), torch.float32, dev, DEBUG_FILL)  # h_{s-1} / h_s by the parity of s
    hbuf[0] = 0.0 if h0 is None else h0.float()
    cbuf = torch.zeros(2, B, H, device=dev) if c0 is None else c0.float().clone().contiguous()  # (2, B, H) -> c_n
    mbuf = buffer((2, B, H), torch.float32, dev, DEBUG_FILL) if proj else dummy
    hn = buffer((2, B, P), torch.float32, dev, DEBUG_FILL)
    grid = (steps.shape[0], 2)
    _forward_kernel[grid](
        gates, w_hh, w_p, order32, lens32, steps, low,
        y, act, cr, mm, hr, hbuf, cbuf, mbuf, hn,
        B, L, H, P, float(cell_clip or 0.0), float(proj_clip or 0.0),
        PROJ=proj, CLIP_C=clip_c, CLIP_P=clip_p, SAVE=save, PRECISION=_precision(dev), **_tiles(H, P),
        num_warps=4,
    )
    kept = lambda t, keep: t if keep else y.new_empty(0)  # noqa: E731  a placeholder of its own (outputs never alias)
    return y, hn, cbuf, kept(act, save), kept(cr, save), kept(mm, save and proj), kept(hr, save and clip_p)


def _forward_fake(gates, weight_hh, weight_proj, h0, c0, order, lengths, cell_clip, proj_clip, save):
    B, L, _, G = gates.shape
    H, P = G // 4, weight_hh.shape[2]
    new = lambda *shape: gates.new_empty(shape, dtype=torch.float32)  # noqa: E731
    kept = lambda keep, *shape: new(*shape) if keep else new(0)  # noqa: E731
    return (
        new(B, L, 2, P),  # y
        new(2, B, P),  # h_n
        new(2, B, H),  # c_n
        kept(save, B, L, 2, G),  # gate activations
        kept(save, B, L, 2, H),  # unclipped cells
        kept(save and weight_proj is not None, B, L, 2, H),  # m
        kept(save and proj_clip is not None, B, L, 2, P),  # unclipped projections
    )


def _backward_impl(
    dy: torch.Tensor | None, dh_n: torch.Tensor | None, dc_n: torch.Tensor | None, y: torch.Tensor,
    act: torch.Tensor, cell: torch.Tensor, m: torch.Tensor, h_raw: torch.Tensor, weight_hh: torch.Tensor,
    weight_proj: torch.Tensor | None, h0: torch.Tensor | None, c0: torch.Tensor | None, order: torch.Tensor,
    lengths: torch.Tensor, cell_clip: float | None, proj_clip: float | None, need_weight_hh: bool,
    need_weight_proj: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The backward kernel (module docstring; steps last to first, carries dh, dc from dh_n, dc_n), then the weight
    gradients as two products over all steps in torch:

        dW_hh[d] = Σ_s dz_s h_{s-1}ᵀ,   dW_p[d] = Σ_s dĥ_s m_sᵀ.

    dy (B, L, 2, P), dh_n (2, B, P), dc_n (2, B, H): the cotangents (None: zeros); y ... h_raw: the forward op's
    outputs. Returns, all fp32: d_gates (B, L, 2, 4H), dW_hh (2, 4H, P) and dW_p (2, P, H) (``(0,)`` unless asked
    for), the carries at the first step = d h_0 (2, B, P), d c_0 (2, B, H).
    """
    B, L, _, P = y.shape
    H = weight_hh.shape[1] // 4
    dev = y.device
    proj, clip_c, clip_p = weight_proj is not None, cell_clip is not None, proj_clip is not None
    w_hh = weight_hh.float().contiguous()  # (2, 4H, P)
    w_p = weight_proj.float().contiguous() if proj else w_hh  # (2, P, H) or a dummy
    order32 = order.to(torch.int32).contiguous()  # (2, B, L)
    lens32 = lengths.to(torch.int32).contiguous()  # (B,)
    steps, low = _block_ranges(lens32)  # (blocks,) each
    dy = torch.zeros_like(y) if dy is None else dy.float().contiguous()  # (B, L, 2, P)
    dhbuf = torch.zeros(2, B, P, device=dev) if dh_n is None else dh_n.float().clone().contiguous()  # -> d h_0
    dcbuf = torch.zeros(2, B, H, device=dev) if dc_n is None else dc_n.float().clone().contiguous()  # -> d c_0
    c0f = torch.zeros(2, B, H, device=dev) if c0 is None else c0.float().contiguous()  # (2, B, H)
    dg = buffer((B, L, 2, 4 * H), torch.float32, dev, DEBUG_FILL)  # dz at the original positions
    dhr = buffer((B, L, 2, P), torch.float32, dev, DEBUG_FILL) if proj else dg  # dĥ
    _backward_kernel[(steps.shape[0], 2)](
        dy, act, cell, h_raw, w_hh, w_p, order32, lens32, steps, low, c0f,
        dg, dhr, dhbuf, dcbuf,
        B, L, H, P, float(cell_clip or 0.0), float(proj_clip or 0.0),
        PROJ=proj, CLIP_C=clip_c, CLIP_P=clip_p, PRECISION=_precision(dev), **_tiles(H, P),
        num_warps=4,
    )
    grad_whh, grad_wp = y.new_empty(0), y.new_empty(0)  # placeholders of their own (outputs never alias)
    if need_weight_hh:
        order = order32.long()
        dz = gather_steps(dg, order)  # (2, B, L, 4H) in reading order
        h = gather_steps(y, order)  # (2, B, L, P)
        first = torch.zeros(2, B, 1, P, device=dev) if h0 is None else h0.float()[:, :, None]  # (2, B, 1, P)
        h_prev = torch.cat([first, h[:, :, :-1]], dim=2)  # (2, B, L, P) the state each step started from
        grad_whh = torch.einsum("dblg,dblp->dgp", dz, h_prev)  # (2, 4H, P)
    if proj and need_weight_proj:
        grad_wp = torch.einsum("bldp,bldh->dph", dhr, m)  # (2, P, H)
    return dg, grad_whh, grad_wp, dhbuf, dcbuf


# The ops, once per process (``triton_ops.register_bilstm_ops``): bizoo::bilstm_forward / _backward.
_call = register_bilstm_ops("bilstm", _forward_impl, _forward_fake, _backward_impl)


def bilstm_triton(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip):
    """gates (B, L, 2, 4H) = W_ih x + b, weights as in ``reference.py``, order/lengths from ``reading_orders`` ->
    y (B, L, 2, P), (h_n (2, B, P), c_n (2, B, H)) in the dtype of gates; differentiable in gates, weights and the
    initial state (``bizoo::bilstm_forward``). B and L must be positive (``bilstm`` answers empty inputs itself)."""
    return _call(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip)
