r"""The bidirectional LSTM(P) one step at a time on a GPU: per step one batched product and one fused Triton kernel.

The math is ``reference.py``'s (gate order i, f, g, o; optional projection W_p, cell and projection clipping).
Legend: B batch, L length, H cells, P outputs (P = H without a projection), G = 4H gate rows, d the direction
(0 forward, 1 backward), s a step of the direction's reading order (``reading_orders``), r = d·B + b a row of the
(2B) rows both directions stack. Every per-step buffer is laid out (2, B, L, F) in reading order (``gather_steps``),
so that step s of all rows is the strided matrix buf[:, :, s] (row stride L·F) a batched product reads directly.

Forward, for s = 0 … L-1 (both directions in every launch):

    z = a_s + h W_hhᵀ                     ``torch.baddbmm`` over the 2 directions: one cuBLAS call (tensor cores
                                          under TF32 or for half-precision products), a_s = (W_ih x + b) at step s
    ``_cell_forward``:  i, f, g, o = σ(z_i), σ(z_f), tanh(z_g), σ(z_o);   ĉ = f c + i g;   c ← clip(ĉ, ±cell_clip)
                        m = o tanh(c);   without a projection h ← m, y_s = m
    with a projection:  ĥ = m W_pᵀ  (``torch.bmm``),  then ``_proj_forward``: h ← clip(ĥ, ±proj_clip), y_s = h

Rows past their length (s ≥ n_b) keep their state and output 0, so the final state is the state after each row's last
real step. Saved for the backward pass (when one will follow): the activations [i, f, g, o], the unclipped cells ĉ,
m (with a projection, 0 past the length) and the unclipped projections ĥ (with proj_clip).

Backward, for s = L-1 … 0, with carries dh, dc (initially the final state's cotangents dh_n, dc_n); the carry dh a
row reads at step s is dh_n at its last real step (s = n_b - 1) and W_hhᵀ dz_{s+1} before it:

    ``_proj_backward`` (with a projection):  dĥ_s = (dy_s + dh) · [|ĥ_s| ≤ proj_clip],  0 past the length
                        dm = dĥ_s W_p  (``torch.bmm``)          without a projection dm = dy_s + dh
    ``_cell_backward``: dc' = (dc + dm · o (1 - tanh² c)) · [|ĉ| ≤ cell_clip]
                        dz_s = [dc' g · i(1-i);  dc' c_{s-1} · f(1-f);  dc' i · (1-g²);  dm tanh c · o(1-o)]  (0 past
                        the length),   dc ← dc' f  (real steps only)
    dh = dz_s W_hh      (``torch.bmm``; read by step s-1)

then the weight gradients as products over all steps at once: dW_hh[d] = Σ_s dz_sᵀ h_{s-1}, dW_p[d] = Σ_s dĥ_sᵀ m_s
(h_{s-1} is the previous output, or h_0), and d h_0, d c_0 are the carries left after step 0.

Arithmetic: fp32 for fp32 and half-precision inputs, fp64 for fp64 (so that the tests can compare to 1e-9). The
products follow torch's matmul settings: in fp32 they take TF32 tensor cores where
``torch.backends.cuda.matmul.allow_tf32`` (``torch.set_float32_matmul_precision("high")``) allows it.

CUDA graphs (``CUDA_GRAPHS``, off by default: a GPU-only test compares the graphed path with the ungraphed one, but
no GPU has run it or timed it yet; turn it on once that test passes and ``bizoo bench lstm`` shows it faster): with
the switch on and CUDA tensors, the step loop of each pass is captured once per key (shapes, dtype, device, clips and what is saved) into a
``torch.cuda.CUDAGraph`` over static buffers, and later calls copy their inputs into those buffers and replay it;
the results the caller keeps are copied out (a later replay overwrites the buffers). At most
``CUDA_GRAPH_CACHE_SIZE`` graphs are kept (least recently used dropped first: each holds a pass's buffers). Inside
someone else's stream capture (``torch.cuda.is_current_stream_capturing()``) the steps run ungraphed, into that
capture.

Both passes are ``torch.library`` custom ops, ``bizoo::bilstm_steps_forward`` and ``bizoo::bilstm_steps_backward``,
with fake implementations and a registered autograd, so that ``torch.compile(fullgraph=True)`` puts them in its graph.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from ..triton_utils import buffer, lanes, tl, triton
from .reference import gather_steps, scatter_steps
from .triton_ops import register_bilstm_ops

__all__ = ["bilstm_triton_steps", "CUDA_GRAPHS", "CUDA_GRAPH_CACHE_SIZE", "clear_cuda_graphs", "cuda_graph_count"]

# Capture the step loops in CUDA graphs (see the module docstring): off until a GPU run has timed it.
CUDA_GRAPHS = False
CUDA_GRAPH_CACHE_SIZE = 4
# Tests set a fill value (NaN) for every output and scratch buffer, so that an element a kernel fails to write (or
# reads before writing) cannot pass, and small tiles, so that tiny shapes span several of them.
DEBUG_FILL: float | None = None
TILE_ROWS: int | None = None
TILE_COLS: int | None = None


def _tiles(width: int) -> dict:
    """The tile of the elementwise kernels: BR of the 2B rows × BC of ``width`` columns."""
    rows = TILE_ROWS if TILE_ROWS is not None else 8
    cols = TILE_COLS if TILE_COLS is not None else min(128, lanes(width))
    return {"BR": rows, "BC": cols}


def _grid(rows: int, width: int, tiles: dict) -> tuple[int, int]:
    return triton.cdiv(rows, tiles["BR"]), triton.cdiv(width, tiles["BC"])


# ----------------------------------------------------------------------------------------------------------------
# The kernels: elementwise over a tile of (2B) rows × columns, one step s
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _tile(LENS, s, B, width, BR: tl.constexpr, BC: tl.constexpr):
    """This program's rows r (BR,) int64, columns (BC,), the in-bounds mask (BR, BC), whether step s is real for
    each row (BR,) and whether step s + 1 is (the carry dh then comes from step s + 1, else it is dh_n)."""
    r = tl.program_id(0) * BR + tl.arange(0, BR)  # (BR,) rows d·B + b
    cols = tl.program_id(1) * BC + tl.arange(0, BC)  # (BC,)
    r_ok = r < 2 * B
    n = tl.load(LENS + r % B, mask=r_ok, other=0)  # (BR,) real steps of the row
    ok = r_ok[:, None] & (cols < width)[None, :]  # (BR, BC)
    return r.to(tl.int64), cols, ok, r_ok & (s < n), r_ok & (s + 1 < n)


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit(do_not_specialize=["s"])  # one compiled kernel for every step
def _cell_forward(
    Z, C, HS, LENS, LIMITS, ACT, CR, M, Y,
    s, B, H, act_stride, cr_stride, m_stride, y_stride,
    PROJ: tl.constexpr, CLIP_C: tl.constexpr, SAVE: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr,
):
    """One step's cell update for every row, from z (2B, 4H) = a_s + h W_hhᵀ: the new cell into C (2B, H) and,
    without a projection, the new h into HS (2B, H) (real steps only); y_s = m (0 past the length) into Y, or into M
    for the projection; with SAVE the activations into ACT and the unclipped cell into CR. ACT, CR, M, Y point at
    step s of their buffers, rows ``*_stride`` apart."""
    r, cols, ok, active, _ = _tile(LENS, s, B, H, BR, BC)
    live = active[:, None] & ok  # (BR, BC)
    z = Z + r[:, None] * (4 * H) + cols[None, :]
    i = tl.sigmoid(tl.load(z, mask=ok, other=0.0))  # (BR, BC)
    f = tl.sigmoid(tl.load(z + H, mask=ok, other=0.0))
    g = _tanh(tl.load(z + 2 * H, mask=ok, other=0.0))
    o = tl.sigmoid(tl.load(z + 3 * H, mask=ok, other=0.0))
    c_ptr = C + r[:, None] * H + cols[None, :]
    c_raw = f * tl.load(c_ptr, mask=ok, other=0.0) + i * g  # (BR, BC) the unclipped cell ĉ
    c = c_raw
    if CLIP_C:
        clip = tl.load(LIMITS)
        c = tl.minimum(tl.maximum(c_raw, -clip), clip)
    m = o * _tanh(c)  # (BR, BC)
    tl.store(c_ptr, c, mask=live)  # rows past their length keep their cell
    if SAVE:
        act = ACT + r[:, None] * act_stride + cols[None, :]
        tl.store(act, i, mask=ok)
        tl.store(act + H, f, mask=ok)
        tl.store(act + 2 * H, g, mask=ok)
        tl.store(act + 3 * H, o, mask=ok)
        tl.store(CR + r[:, None] * cr_stride + cols[None, :], c_raw, mask=ok)
    out = tl.where(live, m, 0.0)
    if PROJ:
        tl.store(M + r[:, None] * m_stride + cols[None, :], out, mask=ok)
    else:
        tl.store(Y + r[:, None] * y_stride + cols[None, :], out, mask=ok)
        h_ptr = HS + r[:, None] * H + cols[None, :]
        tl.store(h_ptr, m, mask=live)  # rows past their length keep their h


@triton.jit(do_not_specialize=["s"])  # one compiled kernel for every step
def _proj_forward(
    HP, HS, LENS, LIMITS, HR, Y,
    s, B, P, hr_stride, y_stride,
    CLIP_P: tl.constexpr, SAVE: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr,
):
    """One step's projected output from ĥ (2B, P) = m W_pᵀ: h = clip(ĥ) into HS (real steps only) and y_s (0 past
    the length) into Y; with SAVE and CLIP_P the unclipped ĥ into HR. HR, Y point at step s of their buffers."""
    r, cols, ok, active, _ = _tile(LENS, s, B, P, BR, BC)
    live = active[:, None] & ok
    h = tl.load(HP + r[:, None] * P + cols[None, :], mask=ok, other=0.0)  # (BR, BC) ĥ
    if CLIP_P:
        if SAVE:
            tl.store(HR + r[:, None] * hr_stride + cols[None, :], h, mask=ok)
        clip = tl.load(LIMITS + 1)
        h = tl.minimum(tl.maximum(h, -clip), clip)
    tl.store(HS + r[:, None] * P + cols[None, :], h, mask=live)
    tl.store(Y + r[:, None] * y_stride + cols[None, :], tl.where(live, h, 0.0), mask=ok)


@triton.jit
def _carried(DY, DHREC, DHN, r, cols, ok, later, dy_stride, P):
    """dy_s + dh (BR, BC): the carry dh is W_hhᵀ dz_{s+1} (DHREC) where step s + 1 is real, else dh_n (DHN)."""
    dy = tl.load(DY + r[:, None] * dy_stride + cols[None, :], mask=ok, other=0.0)
    rec = tl.load(DHREC + r[:, None] * P + cols[None, :], mask=ok & later[:, None], other=0.0)
    fin = tl.load(DHN + r[:, None] * P + cols[None, :], mask=ok & ~later[:, None], other=0.0)
    return dy + tl.where(later[:, None], rec, fin)


@triton.jit(do_not_specialize=["s"])  # one compiled kernel for every step
def _proj_backward(
    DY, DHREC, DHN, HR, LENS, LIMITS, DHAT,
    s, B, P, dy_stride, hr_stride, dhat_stride,
    CLIP_P: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr,
):
    """dĥ_s = (dy_s + dh) · [|ĥ_s| ≤ proj_clip] (0 past the length) into DHAT; DY, HR, DHAT point at step s."""
    r, cols, ok, active, later = _tile(LENS, s, B, P, BR, BC)
    d = _carried(DY, DHREC, DHN, r, cols, ok, later, dy_stride, P)  # (BR, BC)
    if CLIP_P:
        h_raw = tl.load(HR + r[:, None] * hr_stride + cols[None, :], mask=ok, other=0.0)
        d = tl.where(tl.abs(h_raw) <= tl.load(LIMITS + 1), d, 0.0)
    tl.store(DHAT + r[:, None] * dhat_stride + cols[None, :], tl.where(active[:, None], d, 0.0), mask=ok)


@triton.jit(do_not_specialize=["s"])  # one compiled kernel for every step
def _cell_backward(
    DM, DY, DHREC, DHN, ACT, CR, CR_PREV, C0, DC, LENS, LIMITS, DZ,
    s, B, H, dy_stride, act_stride, cr_stride, dz_stride,
    PROJ: tl.constexpr, CLIP_C: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr,
):
    """One step's gate gradient dz_s (0 past the length) into DZ and the carry dc ← dc' f into DC (2B, H) (real steps
    only), from dm (2B, H) = dĥ_s W_p (DM) or, without a projection, dy_s + dh. ACT, CR, DY, DZ point at step s,
    CR_PREV at step s - 1 (read for s > 0; step 0 starts from c_0, C0)."""
    r, cols, ok, active, later = _tile(LENS, s, B, H, BR, BC)
    live = active[:, None] & ok
    if PROJ:
        dm = tl.load(DM + r[:, None] * H + cols[None, :], mask=ok, other=0.0)  # (BR, BC)
    else:
        dm = _carried(DY, DHREC, DHN, r, cols, ok, later, dy_stride, H)
    act = ACT + r[:, None] * act_stride + cols[None, :]
    i = tl.load(act, mask=ok, other=0.0)
    f = tl.load(act + H, mask=ok, other=0.0)
    g = tl.load(act + 2 * H, mask=ok, other=0.0)
    o = tl.load(act + 3 * H, mask=ok, other=0.0)
    c_raw = tl.load(CR + r[:, None] * cr_stride + cols[None, :], mask=ok, other=0.0)  # ĉ_s
    first = ((tl.zeros((BR,), dtype=tl.int32) + s) == 0)[:, None]  # (BR, 1) step 0 starts from c_0
    prev = tl.load(CR_PREV + r[:, None] * cr_stride + cols[None, :], mask=ok & ~first, other=0.0)  # ĉ_{s-1}
    c0 = tl.load(C0 + r[:, None] * H + cols[None, :], mask=ok & first, other=0.0)
    c = c_raw
    if CLIP_C:
        clip = tl.load(LIMITS)
        c = tl.minimum(tl.maximum(c_raw, -clip), clip)
        prev = tl.minimum(tl.maximum(prev, -clip), clip)
    c_prev = tl.where(first, c0, prev)  # (BR, BC) the cell step s started from
    tc = _tanh(c)
    dc_ptr = DC + r[:, None] * H + cols[None, :]
    dc = tl.load(dc_ptr, mask=ok, other=0.0) + dm * o * (1.0 - tc * tc)  # dc'
    if CLIP_C:
        dc = tl.where(tl.abs(c_raw) <= clip, dc, 0.0)
    tl.store(dc_ptr, dc * f, mask=live)  # rows past their length keep their carry
    dz = DZ + r[:, None] * dz_stride + cols[None, :]
    tl.store(dz, tl.where(live, dc * g * i * (1.0 - i), 0.0), mask=ok)
    tl.store(dz + H, tl.where(live, dc * c_prev * f * (1.0 - f), 0.0), mask=ok)
    tl.store(dz + 2 * H, tl.where(live, dc * i * (1.0 - g * g), 0.0), mask=ok)
    tl.store(dz + 3 * H, tl.where(live, dm * tc * o * (1.0 - o), 0.0), mask=ok)


# ----------------------------------------------------------------------------------------------------------------
# The step loops over workspaces (dicts of tensors): what a CUDA graph captures
# ----------------------------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _forward_workspace(B, L, H, P, dtype, device, proj, clip_p, save) -> dict:
    """The buffers of the forward loop: inputs a (2, B, L, 4H) in reading order, w_hh (2, 4H, P), w_p (2, P, H),
    lens (B,), limits (2,) = (cell_clip, proj_clip); the state h (2, B, P), c (2, B, H), updated in place; the outputs
    y (2, B, L, P) in reading order and, with ``save``, act (2, B, L, 4H), cr (2, B, L, H), m (2, B, L, H),
    hr (2, B, L, P); scratch z (2, B, 4H), hp (2, B, P), m (2, B, 1, H) when nothing is saved."""
    new = lambda *shape: buffer(shape, dtype, device, DEBUG_FILL)  # noqa: E731
    dummy = new(1)
    ws = {
        "a": new(2, B, L, 4 * H), "w_hh": new(2, 4 * H, P), "w_p": new(2, P, H) if proj else dummy,
        "lens": torch.zeros(B, dtype=torch.int32, device=device), "limits": new(2),
        "h": new(2, B, P), "c": new(2, B, H), "y": new(2, B, L, P), "z": new(2, B, 4 * H),
        "act": new(2, B, L, 4 * H) if save else dummy, "cr": new(2, B, L, H) if save else dummy,
        "m": new(2, B, L if save else 1, H) if proj else dummy, "hr": new(2, B, L, P) if save and clip_p else dummy,
        "hp": new(2, B, P) if proj else dummy,
    }
    return ws


def _forward_steps(ws: dict, proj: bool, clip_c: bool, clip_p: bool, save: bool) -> None:
    """The forward recurrence over ``ws`` (``_forward_workspace``), all L steps (steps past a row's length keep its
    state and write zeros)."""
    _, B, L, P = ws["y"].shape
    H = ws["c"].shape[2]
    w_hh_t = ws["w_hh"].transpose(1, 2)  # (2, P, 4H)
    w_p_t = ws["w_p"].transpose(1, 2) if proj else None  # (2, H, P)
    th, tp = _tiles(H), _tiles(P)
    act, cr, m, hr, y = ws["act"], ws["cr"], ws["m"], ws["hr"], ws["y"]
    at = lambda t, s: t[:, :, s] if t.dim() == 4 else t  # noqa: E731  step s of a saved buffer (a dummy as it is)
    stride = lambda t: t.stride(1) if t.dim() == 4 else 0  # noqa: E731
    for s in range(L):
        torch.baddbmm(ws["a"][:, :, s], ws["h"], w_hh_t, out=ws["z"])  # (2, B, 4H) = a_s + h W_hhᵀ
        m_s = at(m, s if save else 0)  # (2, B, H)
        _cell_forward[_grid(2 * B, H, th)](
            ws["z"], ws["c"], ws["h"], ws["lens"], ws["limits"], at(act, s), at(cr, s), m_s, at(y, s),
            s, B, H, stride(act), stride(cr), stride(m), y.stride(1),
            PROJ=proj, CLIP_C=clip_c, SAVE=save, **th,
        )
        if proj:
            torch.bmm(m_s, w_p_t, out=ws["hp"])  # (2, B, P) = m W_pᵀ, unclipped
            _proj_forward[_grid(2 * B, P, tp)](
                ws["hp"], ws["h"], ws["lens"], ws["limits"], at(hr, s), at(y, s),
                s, B, P, stride(hr), y.stride(1),
                CLIP_P=clip_p, SAVE=save, **tp,
            )


def _backward_workspace(B, L, H, P, dtype, device, proj, clip_p, saved=None) -> dict:
    """The buffers of the backward loop: inputs dy (2, B, L, P) in reading order, dh_n (2, B, P), act, cr, hr (with
    proj_clip) as the forward pass saved them (``saved``: those tensors themselves, else buffers to copy them into),
    c0 (2, B, H), w_hh, w_p, lens, limits; the carry dc (2, B, H), updated in place; the outputs dz (2, B, L, 4H) and
    dhat (2, B, L, P) in reading order; scratch dhrec (2, B, P), dm (2, B, H)."""
    new = lambda *shape: buffer(shape, dtype, device, DEBUG_FILL)  # noqa: E731
    dummy = new(1)
    if saved is None:
        saved = {"act": new(2, B, L, 4 * H), "cr": new(2, B, L, H), "hr": new(2, B, L, P) if clip_p else dummy}
    return {
        **saved, "dy": new(2, B, L, P), "dhn": new(2, B, P), "c0": new(2, B, H), "w_hh": new(2, 4 * H, P),
        "w_p": new(2, P, H) if proj else dummy, "lens": torch.zeros(B, dtype=torch.int32, device=device),
        "limits": new(2), "dc": new(2, B, H), "dz": new(2, B, L, 4 * H), "dhat": new(2, B, L, P) if proj else dummy,
        "dhrec": new(2, B, P), "dm": new(2, B, H) if proj else dummy,
    }


def _backward_steps(ws: dict, proj: bool, clip_c: bool, clip_p: bool) -> None:
    """The backward recurrence over ``ws`` (``_backward_workspace``), steps L-1 … 0; afterwards ws["dc"] holds d c_0
    and ws["dhrec"] W_hhᵀ dz_0 (d h_0 for every row with a real token)."""
    _, B, L, P = ws["dy"].shape
    H = ws["dc"].shape[2]
    th, tp = _tiles(H), _tiles(P)
    dy, act, cr, hr, dz, dhat = ws["dy"], ws["act"], ws["cr"], ws["hr"], ws["dz"], ws["dhat"]
    hr_s = lambda s: hr[:, :, s] if clip_p else hr  # noqa: E731  (a dummy without proj_clip)
    for s in reversed(range(L)):
        if proj:
            _proj_backward[_grid(2 * B, P, tp)](
                dy[:, :, s], ws["dhrec"], ws["dhn"], hr_s(s), ws["lens"], ws["limits"], dhat[:, :, s],
                s, B, P, dy.stride(1), hr.stride(1) if clip_p else 0, dhat.stride(1),
                CLIP_P=clip_p, **tp,
            )
            torch.bmm(dhat[:, :, s], ws["w_p"], out=ws["dm"])  # (2, B, H) = dĥ_s W_p
        _cell_backward[_grid(2 * B, H, th)](
            ws["dm"], dy[:, :, s], ws["dhrec"], ws["dhn"], act[:, :, s], cr[:, :, s], cr[:, :, max(s - 1, 0)],
            ws["c0"], ws["dc"], ws["lens"], ws["limits"], dz[:, :, s],
            s, B, H, dy.stride(1), act.stride(1), cr.stride(1), dz.stride(1),
            PROJ=proj, CLIP_C=clip_c, **th,
        )
        torch.bmm(dz[:, :, s], ws["w_hh"], out=ws["dhrec"])  # (2, B, P) = dz_s W_hh, the carry of step s - 1


# ----------------------------------------------------------------------------------------------------------------
# CUDA graphs: one per key, replayed on later calls
# ----------------------------------------------------------------------------------------------------------------

_GRAPHS: OrderedDict = OrderedDict()  # key -> (torch.cuda.CUDAGraph, workspace)


def _graphed(device: torch.device) -> bool:
    """Whether this call runs its step loop in a cached CUDA graph."""
    return CUDA_GRAPHS and device.type == "cuda" and not torch.cuda.is_current_stream_capturing()


def _run(key, make_workspace, fill, steps, graphed: bool) -> dict:
    """A workspace from ``make_workspace()`` filled by ``fill(ws)`` and run by ``steps(ws)``; with ``graphed``, the
    cached workspace of ``key`` and its captured graph replayed (the first call for a key runs the steps on a side
    stream, which compiles the kernels, then captures them for the later calls). The caller reads the results from
    the workspace and copies out what it keeps (a later call overwrites them)."""
    if not graphed:
        ws = make_workspace()
        fill(ws)
        steps(ws)
        return ws
    entry = _GRAPHS.get(key)
    if entry is not None:
        _GRAPHS.move_to_end(key)
        graph, ws = entry
        fill(ws)
        graph.replay()
        return ws
    ws = make_workspace()
    side = torch.cuda.Stream(device=ws["lens"].device)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # the warm-up run: this call's result
        fill(ws)
        steps(ws)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # recorded, not run: the buffers keep the warm-up's results
        steps(ws)
    _GRAPHS[key] = (graph, ws)
    while len(_GRAPHS) > max(CUDA_GRAPH_CACHE_SIZE, 0):
        _GRAPHS.popitem(last=False)
    return ws


def clear_cuda_graphs() -> None:
    """Drop every cached CUDA graph and its buffers."""
    _GRAPHS.clear()


def cuda_graph_count() -> int:
    """How many CUDA graphs (and their buffers) are cached."""
    return len(_GRAPHS)


# ----------------------------------------------------------------------------------------------------------------
# The passes as custom ops (torch.library), so that torch.compile puts them in its graph
# ----------------------------------------------------------------------------------------------------------------


def _limits(ws: dict, cell_clip, proj_clip) -> None:
    ws["limits"][0] = 0.0 if cell_clip is None else float(cell_clip)
    ws["limits"][1] = 0.0 if proj_clip is None else float(proj_clip)


def _forward_impl(
    gates: torch.Tensor, weight_hh: torch.Tensor, weight_proj: torch.Tensor | None, h0: torch.Tensor | None,
    c0: torch.Tensor | None, order: torch.Tensor, lengths: torch.Tensor, cell_clip: float | None,
    proj_clip: float | None, save: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The forward loop (module docstring). gates (B, L, 2, 4H) = W_ih x + b at the original positions,
    weight_hh (2, 4H, P), weight_proj (2, P, H) or None, h0 (2, B, P) / c0 (2, B, H) or None (zeros), order
    (2, B, L) and lengths (B,) from ``reading_orders``. Returns, in the compute dtype (fp64 for fp64 gates, else
    fp32): y (B, L, 2, P) (0 at padding), h_n (2, B, P), c_n (2, B, H) and, when ``save`` (else ``(0,)`` each), in
    reading order: the activations (2, B, L, 4H), the unclipped cells (2, B, L, H), m (2, B, L, H) with a
    projection, the unclipped projections (2, B, L, P) with proj_clip.
    """
    B, L, _, G = gates.shape
    H, P = G // 4, weight_hh.shape[2]
    dtype, dev = _compute_dtype(gates.dtype), gates.device
    proj, clip_c, clip_p = weight_proj is not None, cell_clip is not None, proj_clip is not None
    graphed = _graphed(dev)

    def fill(ws):
        gather_steps(gates.to(dtype), order, out=ws["a"])
        ws["w_hh"].copy_(weight_hh)
        if proj:
            ws["w_p"].copy_(weight_proj)
        ws["lens"].copy_(lengths)
        _limits(ws, cell_clip, proj_clip)
        ws["h"].copy_(h0) if h0 is not None else ws["h"].zero_()
        ws["c"].copy_(c0) if c0 is not None else ws["c"].zero_()

    key = ("forward", B, L, H, P, dtype, dev, proj, cell_clip, proj_clip, save)
    ws = _run(key, lambda: _forward_workspace(B, L, H, P, dtype, dev, proj, clip_p, save), fill,
              lambda w: _forward_steps(w, proj, clip_c, clip_p, save), graphed)
    copy = (lambda t: t.clone()) if graphed else (lambda t: t)  # noqa: E731  a graph's buffers are overwritten
    empty = lambda: gates.new_empty(0, dtype=dtype)  # noqa: E731  a placeholder of its own (outputs never alias)
    y = scatter_steps(ws["y"], order)  # (B, L, 2, P), a new tensor
    return (
        y, copy(ws["h"]), copy(ws["c"]),
        copy(ws["act"]) if save else empty(), copy(ws["cr"]) if save else empty(),
        copy(ws["m"]) if save and proj else empty(), copy(ws["hr"]) if save and clip_p else empty(),
    )


def _forward_fake(gates, weight_hh, weight_proj, h0, c0, order, lengths, cell_clip, proj_clip, save):
    B, L, _, G = gates.shape
    H, P = G // 4, weight_hh.shape[2]
    new = lambda *shape: gates.new_empty(shape, dtype=_compute_dtype(gates.dtype))  # noqa: E731
    kept = lambda keep, *shape: new(*shape) if keep else new(0)  # noqa: E731
    return (
        new(B, L, 2, P),  # y
        new(2, B, P),  # h_n
        new(2, B, H),  # c_n
        kept(save, 2, B, L, G),  # activations
        kept(save, 2, B, L, H),  # unclipped cells
        kept(save and weight_proj is not None, 2, B, L, H),  # m
        kept(save and proj_clip is not None, 2, B, L, P),  # unclipped projections
    )


def _backward_impl(
    dy: torch.Tensor | None, dh_n: torch.Tensor | None, dc_n: torch.Tensor | None, y: torch.Tensor,
    act: torch.Tensor, cell: torch.Tensor, m: torch.Tensor, h_raw: torch.Tensor, weight_hh: torch.Tensor,
    weight_proj: torch.Tensor | None, h0: torch.Tensor | None, c0: torch.Tensor | None, order: torch.Tensor,
    lengths: torch.Tensor, cell_clip: float | None, proj_clip: float | None, need_weight_hh: bool,
    need_weight_proj: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The backward loop (module docstring), then the weight gradients as products over all steps:

        dW_hh[d] = Σ_s dz_sᵀ h_{s-1},   dW_p[d] = Σ_s dĥ_sᵀ m_s.

    dy (B, L, 2, P), dh_n (2, B, P), dc_n (2, B, H): the cotangents (None: zeros); y … h_raw: the forward op's
    outputs. Returns, in the compute dtype: d_gates (B, L, 2, 4H) (0 at padding), dW_hh (2, 4H, P) and dW_p (2, P, H)
    (``(0,)`` unless asked for), d h_0 (2, B, P), d c_0 (2, B, H).
    """
    B, L, _, P = y.shape
    G = weight_hh.shape[1]
    H = G // 4
    dtype, dev = y.dtype, y.device
    proj, clip_c, clip_p = weight_proj is not None, cell_clip is not None, proj_clip is not None
    graphed = _graphed(dev)

    def fill(ws):
        gather_steps(dy.to(dtype), order, out=ws["dy"]) if dy is not None else ws["dy"].zero_()
        ws["dhn"].copy_(dh_n) if dh_n is not None else ws["dhn"].zero_()
        ws["dc"].copy_(dc_n) if dc_n is not None else ws["dc"].zero_()
        ws["c0"].copy_(c0) if c0 is not None else ws["c0"].zero_()
        ws["w_hh"].copy_(weight_hh)
        if proj:
            ws["w_p"].copy_(weight_proj)
        ws["lens"].copy_(lengths)
        _limits(ws, cell_clip, proj_clip)

    def make():  # ungraphed, the loop reads the saved tensors themselves; a graph its own copies of them
        saved = None if graphed else {"act": act, "cr": cell, "hr": h_raw if clip_p else act}  # hr: a dummy
        return _backward_workspace(B, L, H, P, dtype, dev, proj, clip_p, saved)

    def fill_saved(ws):
        fill(ws)
        if graphed:
            ws["act"].copy_(act)
            ws["cr"].copy_(cell)
            if clip_p:
                ws["hr"].copy_(h_raw)

    key = ("backward", B, L, H, P, dtype, dev, proj, cell_clip, proj_clip)
    ws = _run(key, make, fill_saved, lambda w: _backward_steps(w, proj, clip_c, clip_p), graphed)
    dz = ws["dz"]  # (2, B, L, 4H) in reading order
    d_gates = scatter_steps(dz, order)  # (B, L, 2, 4H), a new tensor
    real = (lengths > 0)[None, :, None]  # (1, B, 1) rows with a step: their d h_0 is W_hhᵀ dz_0
    d_h0 = torch.where(real, ws["dhrec"], ws["dhn"])  # (2, B, P)
    d_c0 = ws["dc"].clone() if graphed else ws["dc"]  # (2, B, H)
    d_whh, d_wp = y.new_empty(0), y.new_empty(0)  # placeholders of their own (outputs never alias)
    if need_weight_hh:
        h = gather_steps(y, order)  # (2, B, L, P) each step's output in reading order (0 past the length)
        first = y.new_zeros(2, B, 1, P) if h0 is None else h0.to(dtype)[:, :, None]  # (2, B, 1, P)
        h_prev = torch.cat([first, h[:, :, :-1]], dim=2)  # (2, B, L, P) the h each step started from
        d_whh = torch.bmm(dz.reshape(2, B * L, G).transpose(1, 2), h_prev.reshape(2, B * L, P))  # (2, 4H, P)
    if proj and need_weight_proj:
        dhat = ws["dhat"].reshape(2, B * L, P)
        d_wp = torch.bmm(dhat.transpose(1, 2), m.reshape(2, B * L, H))  # (2, P, H)
    return d_gates, d_whh, d_wp, d_h0, d_c0


# The ops, once per process (``triton_ops.register_bilstm_ops``): bizoo::bilstm_steps_forward / _backward.
_call = register_bilstm_ops("bilstm_steps", _forward_impl, _forward_fake, _backward_impl)


def bilstm_triton_steps(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip):
    """gates (B, L, 2, 4H) = W_ih x + b, weights as in ``reference.py``, order/lengths from ``reading_orders`` ->
    y (B, L, 2, P), (h_n (2, B, P), c_n (2, B, H)) in the dtype of gates; differentiable in gates, weights and the
    initial state (``bizoo::bilstm_steps_forward``). B and L must be positive (``bilstm`` answers empty inputs
    itself)."""
    return _call(gates, weight_hh, weight_proj, order, lengths, initial_state, cell_clip, proj_clip)
