r"""The bidirectional SSM convolution on Triton kernels: a blocked Toeplitz product, forward and backward.

Legend: B batch, L length, H channels; u_f, u_b (B, L, H) inputs of the forward (causal) and the backward
(anti-causal) direction, k_f, k_b (L,) real kernels and d_f, d_b scalar skips shared by every channel. Per channel:

    y_f[t] = Σ_{s ≤ t} k_f[t - s] u_f[s] + d_f u_f[t]          (causal)
    y_b[t] = Σ_{s ≥ t} k_b[s - t] u_b[s] + d_b u_b[t]          (anti-causal, on the unflipped sequence)

i.e. y_f = T_f u_f and y_b = T_b u_b with the Toeplitz matrices T_f[t, s] = k_f[t - s] (s ≤ t), T_b[t, s] =
k_b[s - t] (s ≥ t), whose diagonals carry k[0] + d. With an ``attention_mask``, padded inputs count as zero and the
outputs at padding are 0; a shift of the real tokens shifts the outputs with them (right or left padding).

Forward (``_toeplitz_kernel``; grid (⌈L/BT⌉ time tiles, ⌈H/BH⌉ channel tiles, B)): the program of output tile
[t0, t0 + BT) × channel tile [h0, h0 + BH) runs over the input tiles [s0, s0 + BT) of the real range of its row,
first s0 ≤ t0 (causal), then s0 ≥ t0 (anti-causal). For each pair it gathers the BT × BT Toeplitz block
T[t, s] = k[|t - s|] straight from k (an L-vector that stays in L1: no L × L matrix is ever stored), adds d on
the diagonal, casts it to the inputs' dtype and multiplies it with the (BT × BH) input tile by ``tl.dot``,
accumulating in fp32. The blocks above (causal) or below (anti-causal) the diagonal are zero and are skipped, so
every program makes ⌈L/BT⌉ + 1 block products: both directions together are balanced across the grid. Output
tiles that hold padding only are written as zeros; input tiles outside the row's real range are skipped.

Backward (the same two kernels, no atomics):

    ∂/∂u_f = T_fᵀ g_f: an anti-causal product of g_f with k_f (+ d_f g_f);  ∂/∂u_b = T_bᵀ g_b: a causal one
             -> ``_toeplitz_kernel`` with the two directions' slots swapped.
    ∂/∂k_f[l] = Σ_{b,h,t} g_f[t] u_f[t - l],   ∂/∂k_b[l] = Σ_{b,h,t} u_b[t] g_b[t - l]
    ∂/∂d = ∂/∂k[0]    (the skip sits on the diagonal of T, lag 0)

The kernel gradient is a sum along the diagonals of the Gram matrix P = X Yᵀ (X = g_f, Y = u_f for the
forward direction; X = u_b, Y = g_b for the backward one): ∂k[l] = Σ_{i - j = l} P[i, j], a reduction over the
channels that runs on tensor cores. ``_lag_gram_kernel`` (grid (2 directions × ⌈L/BT⌉ block diagonals, B,
channel groups)): the program of block diagonal δ accumulates the (BT × BT) Gram blocks P[ti, ti - δ] of its
row and channel group over every ti (all of them have the same lags δ·BT + i - j), then sums the block's
diagonals once (``tl.gather`` skews it) into the lags [(δ-1)·BT, (δ+1)·BT); it writes its two halves into two
per-program partial buffers and torch sums the partials over rows, groups and halves: deterministic.

Work: both kernels make O(B·H·L²) multiply-adds (the forward ≈ B·H·L²·(1 + BT/L), each backward kernel about as
much), all of it in tile products: the short- and medium-length schedule of the op; an FFT is O(B·H·L log L).

Tiles: BT (time; the Toeplitz blocks are BT × BT) and BH (channels) are autotuned per (H, L rounded up to a power of
two, mask or not, precision) among a few sm_90 configurations (``BIZOO_TRITON_AUTOTUNE=0`` keeps the first one);
the interpreter runs 16 × 16 tiles.

Precision: every product accumulates in fp32; fp32 inputs multiply as torch's fp32 matrix products do, in IEEE fp32
(FMA) unless torch allows TF32 (``triton_utils.dot_precision``: then on tensor cores), half inputs (fp16, bf16) on
tensor cores with the Toeplitz block (k, and k[0] + d) rounded once to the inputs' dtype. Outputs and
input gradients come back in the inputs' dtype, kernel and skip gradients in fp32.

The forward and the backward are registered with ``torch.library`` as custom ops with fake implementations and a
registered autograd, so that ``torch.compile`` puts the kernels in its graph:

    bizoo::ssm_toeplitz_forward(Tensor u_f, Tensor u_b, Tensor k_f, Tensor k_b, Tensor d_f, Tensor d_b,
                                Tensor? keep, Tensor? ranges) -> (Tensor y_f, Tensor y_b)
    bizoo::ssm_toeplitz_backward(Tensor g_f, Tensor g_b, <the forward's eight inputs>, bool need_u, bool need_k)
                                -> (Tensor du_f, Tensor du_b, Tensor dk)         dk (2, L): rows k_f, k_b; ∂d = dk[:, 0]
"""

from __future__ import annotations

import torch

from .. import triton_utils
from ..dispatch import autocast_off, register_op
from ..triton_utils import (
    autotune_configs,
    buffer,
    dot_precision,
    explains_resources,
    first_unless_autotuning,
    real_ranges,
    row_range,
    tl,
    triton,
)
from .checks import DTYPES, check_triton_inputs

__all__ = ["bidirectional_ssm_triton", "DTYPES"]

# Tests set a fill value (NaN) for every output and partial buffer, so an element a kernel fails to write cannot pass.
DEBUG_FILL: float | None = None


# ----------------------------------------------------------------------------------------------------------------
# Launch settings
# ----------------------------------------------------------------------------------------------------------------

# (BT, BH, num_warps, num_stages) for half (fp16/bf16: tensor-core) and fp32 (IEEE FMA: both operands in registers,
# smaller tiles; the same tiles with TF32, 4-byte operands either way) inputs; the first one is the default without
# autotuning. Chosen from sm_90 builds: none exceeds the shared memory of an H100 (fp32 with TF32 the most: 193 KB), and
# without a padding mask none spills registers; with a mask the 128-row and some 64-row tiles spill 16-592 bytes per
# thread (`bizoo bench kernel-build --ops ssm --all-configs`), the defaults none.
_CONV_CONFIGS = {
    "half": [(64, 128, 8, 2), (64, 64, 4, 2), (64, 128, 8, 3), (64, 256, 8, 2), (128, 64, 8, 2), (32, 64, 4, 3)],
    "fp32": [(64, 128, 8, 2), (32, 64, 4, 3), (32, 32, 2, 3)],
}
_GRAM_CONFIGS = {
    "half": [(64, 128, 8, 3), (64, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (32, 64, 4, 4)],
    "fp32": [(64, 128, 8, 3), (64, 64, 4, 3), (32, 64, 4, 4)],
}
# Channels per program of the kernel-gradient kernel come in multiples of this (a multiple of every BH above).
GROUP_ALIGN = 16 if triton_utils.INTERPRETED else 128
# The partial buffers' length: L rounded up to a multiple of this (a multiple of every BT).
PARTIAL_ALIGN = 16 if triton_utils.INTERPRETED else 128
TARGET_PROGRAMS = 1024  # enough programs in the kernel-gradient grid to fill the GPU several times


def _configs(tables):
    """Every configuration of the tables (the pruner picks the ones of a call's precision); under the interpreter
    one of 16 × 16 tiles."""
    settings = dict.fromkeys(entry for table in tables.values() for entry in table)  # the union, in order
    configs = [triton.Config({"BT": bt, "BH": bh}, num_warps=w, num_stages=st) for bt, bh, w, st in settings]
    return autotune_configs(configs, triton.Config({"BT": 16, "BH": 16}, num_warps=1))


def _settings(config):
    return (config.kwargs["BT"], config.kwargs["BH"], config.num_warps, config.num_stages)


def _pruner(tables):
    def prune(configs, named_args, **kwargs):
        """The configurations for the inputs' dtype (fp32 whatever its precision: 4-byte operands) whose tiles are not
        much larger than the problem (the smallest one if none is); only the first one without autotuning."""
        if triton_utils.INTERPRETED:
            return configs
        inputs = named_args["U_C"] if "U_C" in named_args else named_args["X_C"]
        table = tables["fp32" if inputs.dtype == torch.float32 else "half"]
        own = sorted((c for c in configs if _settings(c) in table), key=lambda c: table.index(_settings(c)))
        if named_args["H"] % 16:  # rows not 16-aligned: unvectorised loads, one address each; small tiles first
            own.sort(key=lambda c: c.kwargs["BT"] * c.kwargs["BH"])
        lb = kwargs.get("LB", named_args.get("LB"))
        hb = triton.next_power_of_2(named_args["H"])
        keep = [c for c in own if c.kwargs["BT"] <= max(32, lb) and c.kwargs["BH"] <= max(32, hb)]
        keep = keep or [min(own, key=lambda c: c.kwargs["BT"] * c.kwargs["BH"])]
        return first_unless_autotuning(keep)

    return prune


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _toeplitz_block(KER, dskip, lag, L):
    """The (BT, BT) block k[lag] (0 where lag < 0 or lag ≥ L) plus d on lag 0, in fp32."""
    ok = (lag >= 0) & (lag < L)
    block = tl.load(KER + lag, mask=ok, other=0.0)
    return block + tl.where(lag == 0, dskip, 0.0)


@triton.autotune(configs=_configs(_CONV_CONFIGS), key=["H", "LB", "HAS_MASK", "PRECISION"],
                 prune_configs_by={"early_config_prune": _pruner(_CONV_CONFIGS)})
@triton.jit
def _toeplitz_kernel(
    U_C, U_A,  # (B, L, H): the inputs of the causal and of the anti-causal product (one dtype)
    K_C, K_A,  # (L,) fp32 kernels
    D_C, D_A,  # (1,) fp32 skips
    MASK, RANGES,  # (B, L) uint8 keep-mask, (B, 2) int32 [start, end) of each row's real tokens (HAS_MASK only)
    Y_C, Y_A,  # (B, L, H) outputs, in the inputs' dtype
    L, H, LB,  # LB = next power of two ≥ L: the autotuning key
    BT: tl.constexpr, BH: tl.constexpr, HAS_MASK: tl.constexpr, PRECISION: tl.constexpr,
):
    ti = tl.program_id(0)
    hj = tl.program_id(1)
    b = tl.program_id(2)
    t0 = ti * BT
    r = tl.arange(0, BT)
    h = hj * BH + tl.arange(0, BH)
    h_ok = h < H
    row = b.to(tl.int64) * L
    t = t0 + r  # (BT,) output positions
    t_ok = t < L
    y_offs = (row + t)[:, None] * H + h[None, :]  # (BT, BH)
    y_mask = t_ok[:, None] & h_ok[None, :]
    if HAS_MASK:
        start, end = row_range(RANGES, b)
        keep_t = tl.load(MASK + row + t, mask=t_ok, other=0) != 0
    else:
        start = 0
        end = L
    if (t0 >= end) | (t0 + BT <= start):  # a tile of padding only
        zeros = tl.zeros((BT, BH), dtype=tl.float32)
        tl.store(Y_C + y_offs, zeros.to(Y_C.dtype.element_ty), mask=y_mask)
        tl.store(Y_A + y_offs, zeros.to(Y_A.dtype.element_ty), mask=y_mask)
        return
    first = start // BT  # the row's first and one past its last tile holding a real token
    stop = (end + BT - 1) // BT
    i_minus_j = r[:, None] - r[None, :]  # (BT, BT): t - s inside a block pair, less (ti - si)·BT

    # Causal: input tiles si ≤ ti, T[t, s] = k_c[t - s].
    d_c = tl.load(D_C)
    acc = tl.zeros((BT, BH), dtype=tl.float32)
    for si in range(first, ti + 1):
        s = si * BT + r
        s_ok = s < L
        if HAS_MASK:
            s_ok = s_ok & (tl.load(MASK + row + s, mask=s_ok, other=0) != 0)
        u = tl.load(U_C + (row + s)[:, None] * H + h[None, :], mask=s_ok[:, None] & h_ok[None, :], other=0.0)
        block = _toeplitz_block(K_C, d_c, (ti - si) * BT + i_minus_j, L)  # (BT, BT) fp32
        acc = tl.dot(block.to(u.dtype), u, acc, input_precision=PRECISION)
    if HAS_MASK:
        acc = tl.where(keep_t[:, None], acc, 0.0)
    tl.store(Y_C + y_offs, acc.to(Y_C.dtype.element_ty), mask=y_mask)

    # Anti-causal: input tiles si ≥ ti, T[t, s] = k_a[s - t].
    d_a = tl.load(D_A)
    acc = tl.zeros((BT, BH), dtype=tl.float32)
    for si in range(ti, stop):
        s = si * BT + r
        s_ok = s < L
        if HAS_MASK:
            s_ok = s_ok & (tl.load(MASK + row + s, mask=s_ok, other=0) != 0)
        u = tl.load(U_A + (row + s)[:, None] * H + h[None, :], mask=s_ok[:, None] & h_ok[None, :], other=0.0)
        block = _toeplitz_block(K_A, d_a, (si - ti) * BT - i_minus_j, L)
        acc = tl.dot(block.to(u.dtype), u, acc, input_precision=PRECISION)
    if HAS_MASK:
        acc = tl.where(keep_t[:, None], acc, 0.0)
    tl.store(Y_A + y_offs, acc.to(Y_A.dtype.element_ty), mask=y_mask)


@triton.autotune(configs=_configs(_GRAM_CONFIGS), key=["H", "LB", "HAS_MASK", "HG", "PRECISION"],
                 prune_configs_by={"early_config_prune": _pruner(_GRAM_CONFIGS)})
@triton.jit
def _lag_gram_kernel(
    X_C, Y_C, X_A, Y_A,  # (B, L, H): causal pair (X = grad y_f, Y = u_f), anti-causal pair (X = u_b, Y = grad y_b)
    MASK, RANGES,  # as in _toeplitz_kernel
    PART,  # (2 halves, 2 directions, B·G, LP) fp32: per-program lag partials
    L, H, G, HG, LP, LB,  # G channel groups of HG channels each; LP ≥ ⌈L/BT⌉·BT
    BT: tl.constexpr, BH: tl.constexpr, HAS_MASK: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    b = tl.program_id(1)
    g = tl.program_id(2)
    nt = tl.cdiv(L, BT)
    direction = pid // nt
    delta = pid % nt  # the block diagonal: pairs of row tile ti and column tile ti - delta
    if direction == 0:
        x_base = X_C
        y_base = Y_C
    else:
        x_base = X_A
        y_base = Y_A
    row = b.to(tl.int64) * L
    r = tl.arange(0, BT)
    if HAS_MASK:
        start, end = row_range(RANGES, b)
    else:
        start = 0
        end = L
    first = start // BT
    stop = (end + BT - 1) // BT
    h_lo = g * HG
    h_hi = tl.minimum(h_lo + HG, H)

    # P_δ = Σ_ti X[ti-tile] Y[(ti - δ)-tile]ᵀ over this row and channel group: entry (i, j) has lag δ·BT + i - j.
    acc = tl.zeros((BT, BT), dtype=tl.float32)
    for ti in range(first + delta, stop):
        p = ti * BT + r
        q = (ti - delta) * BT + r
        p_ok = p < L
        q_ok = q < L
        if HAS_MASK:
            p_ok = p_ok & (tl.load(MASK + row + p, mask=p_ok, other=0) != 0)
            q_ok = q_ok & (tl.load(MASK + row + q, mask=q_ok, other=0) != 0)
        for h0 in range(h_lo, h_hi, BH):
            h = h0 + tl.arange(0, BH)
            h_ok = h < H
            x = tl.load(x_base + (row + p)[:, None] * H + h[None, :], mask=p_ok[:, None] & h_ok[None, :], other=0.0)
            y = tl.load(y_base + (row + q)[:, None] * H + h[None, :], mask=q_ok[:, None] & h_ok[None, :], other=0.0)
            acc = tl.dot(x, tl.trans(y), acc, input_precision=PRECISION)

    # Diagonal sums of the block, skewed by a gather along the columns:
    #   upper[c] = Σ_i P[i, i - c]       (lag δ·BT + c,       c ∈ [0, BT))
    #   lower[c] = Σ_i P[i, i + BT - c]  (lag (δ - 1)·BT + c, c ∈ [1, BT))
    up_col = r[:, None] - r[None, :]  # (BT, BT) [i, c]
    up_ok = up_col >= 0
    upper = tl.sum(tl.where(up_ok, tl.gather(acc, tl.where(up_ok, up_col, 0), axis=1), 0.0), axis=0)
    lo_col = up_col + BT
    lo_ok = lo_col < BT
    lower = tl.sum(tl.where(lo_ok, tl.gather(acc, tl.where(lo_ok, lo_col, 0), axis=1), 0.0), axis=0)

    slot = (direction * tl.num_programs(1) * G + b * G + g).to(tl.int64) * LP  # (direction, b·G + g) row
    half = 2 * tl.num_programs(1).to(tl.int64) * G * LP  # the offset of the lower halves
    tl.store(PART + slot + delta * BT + r, upper)
    # Lag tile δ - 1 gets the lower half; block diagonal 0's lower half (negative lags) is dropped, and its program
    # writes the zeros of the last tile's lower half instead (no block diagonal ⌈L/BT⌉ exists to write it).
    low_tile = tl.where(delta == 0, nt - 1, delta - 1)
    tl.store(PART + half + slot + low_tile * BT + r, tl.where(delta == 0, 0.0, lower))


# ----------------------------------------------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------------------------------------------


_TOO_LARGE = ("with BIZOO_TRITON_AUTOTUNE=0 the first tile runs whatever the GPU (its fp32 kernel-gradient tile needs "
              "128 KB of shared memory, more than the 99 KB of sm_86/89/120 GPUs): leave autotuning on, the default, "
              "so that tiles this GPU cannot hold are skipped, or use backend='reference'")


@explains_resources("bidirectional_ssm", _TOO_LARGE)
def _toeplitz(u_c, u_a, k_c, k_a, d_c, d_a, keep, ranges):
    """(causal product of u_c with k_c, d_c; anti-causal product of u_a with k_a, d_a), both (B, L, H), one launch."""
    B, L, H = u_c.shape
    y_c = buffer((B, L, H), u_c.dtype, u_c.device, DEBUG_FILL)
    y_a = buffer((B, L, H), u_c.dtype, u_c.device, DEBUG_FILL)
    if y_c.numel() == 0:
        return y_c, y_a
    grid = lambda meta: (triton.cdiv(L, meta["BT"]), triton.cdiv(H, meta["BH"]), B)  # noqa: E731
    has_mask = keep is not None
    _toeplitz_kernel[grid](
        u_c, u_a, k_c, k_a, d_c, d_a, keep if has_mask else k_c, ranges if has_mask else k_c, y_c, y_a,
        L, H, triton.next_power_of_2(L), HAS_MASK=has_mask, PRECISION=dot_precision(u_c.dtype),
    )
    return y_c, y_a


def _channel_groups(B: int, L: int, H: int) -> int:
    """How many channel groups the kernel-gradient grid splits H into: enough programs, whole BH tiles per group."""
    programs = 2 * triton.cdiv(L, 64) * max(B, 1)
    groups = max(1, min(triton.cdiv(H, GROUP_ALIGN), triton.cdiv(TARGET_PROGRAMS, programs)))
    return groups


@explains_resources("bidirectional_ssm", _TOO_LARGE)
def _lag_gram(x_c, y_c, x_a, y_a, keep, ranges, groups: int | None = None):
    """(2, L) fp32: row 0 = Σ_{b,h,t} x_c[t] y_c[t - l], row 1 = Σ_{b,h,t} x_a[t] y_a[t - l]."""
    B, L, H = x_c.shape
    dev = x_c.device
    if B == 0 or H == 0:
        return torch.zeros(2, L, dtype=torch.float32, device=dev)
    groups = groups or _channel_groups(B, L, H)
    per_group = triton.cdiv(triton.cdiv(H, groups), GROUP_ALIGN) * GROUP_ALIGN
    groups = triton.cdiv(H, per_group)
    lp = triton.cdiv(L, PARTIAL_ALIGN) * PARTIAL_ALIGN
    part = buffer((2, 2, B * groups, lp), torch.float32, dev, DEBUG_FILL)
    grid = lambda meta: (2 * triton.cdiv(L, meta["BT"]), B, groups)  # noqa: E731
    has_mask = keep is not None
    _lag_gram_kernel[grid](
        x_c, y_c, x_a, y_a, keep if has_mask else x_c, ranges if has_mask else x_c, part,
        L, H, groups, per_group, lp, triton.next_power_of_2(L), HAS_MASK=has_mask,
        PRECISION=dot_precision(x_c.dtype),
    )
    part = part[..., :L]  # lags ≥ L (the last tile's tail) are dropped before anything reads them
    return (part[0] + part[1]).sum(1)  # per-program partials summed in torch: deterministic


# ----------------------------------------------------------------------------------------------------------------
# The op as custom ops (torch.library): the forward, the backward, their fake versions, the autograd
# ----------------------------------------------------------------------------------------------------------------


def _ssm_forward_impl(
    u_f: torch.Tensor, u_b: torch.Tensor, k_f: torch.Tensor, k_b: torch.Tensor, d_f: torch.Tensor, d_b: torch.Tensor,
    keep: torch.Tensor | None, ranges: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y_f, y_b) (B, L, H) in the dtype of u: y_f = T_f u_f (causal), y_b = T_b u_b (anti-causal), one launch.

    u_f, u_b (B, L, H); k_f, k_b (L,) fp32; d_f, d_b (1,) fp32; keep (B, L) uint8 and ranges (B, 2) int32, or both
    None (no padding)."""
    u_f, u_b = u_f.contiguous(), u_b.contiguous()  # (B, L, H): no copy when already contiguous
    return _toeplitz(u_f, u_b, k_f.contiguous(), k_b.contiguous(), d_f, d_b, keep, ranges)


def _ssm_forward_fake(u_f, u_b, k_f, k_b, d_f, d_b, keep, ranges):
    return u_f.new_empty(u_f.shape), u_f.new_empty(u_f.shape)  # (B, L, H) each, contiguous, the dtype of u


def _ssm_backward_impl(
    g_f: torch.Tensor, g_b: torch.Tensor, u_f: torch.Tensor, u_b: torch.Tensor, k_f: torch.Tensor,
    k_b: torch.Tensor, d_f: torch.Tensor, d_b: torch.Tensor, keep: torch.Tensor | None, ranges: torch.Tensor | None,
    need_u: bool, need_k: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(∂/∂u_f, ∂/∂u_b) (B, L, H) in the dtype of u and ∂/∂(k_f, k_b) (2, L) fp32, from the output gradients g_f, g_b
    (B, L, H) in the dtype of u (module docstring):

        ∂/∂u_f = T_fᵀ g_f (anti-causal),  ∂/∂u_b = T_bᵀ g_b (causal)      (need_u; else two empty tensors)
        ∂/∂k_f[l] = Σ_{b,h,t} g_f[t] u_f[t - l],  ∂/∂k_b[l] = Σ_{b,h,t} u_b[t] g_b[t - l]   (need_k; else empty)

    The skips' gradients are lag 0 of the kernels' (∂/∂d = ∂/∂k[0]): the autograd formula reads them there."""
    g_f, g_b, u_f, u_b = (t.contiguous() for t in (g_f, g_b, u_f, u_b))  # (B, L, H)
    k_f, k_b = k_f.contiguous(), k_b.contiguous()  # (L,)
    du_f, du_b = u_f.new_empty(0), u_f.new_empty(0)  # two outputs: never one tensor twice
    dk = u_f.new_empty(0, dtype=torch.float32)
    if need_u:
        # Tᵀ of a causal Toeplitz matrix is anti-causal and vice versa: the same kernel, slots swapped.
        du_b, du_f = _toeplitz(g_b, g_f, k_b, k_f, d_b, d_f, keep, ranges)  # (B, L, H) each
    if need_k:
        dk = _lag_gram(g_f, u_f, u_b, g_b, keep, ranges)  # (2, L)
    return du_f, du_b, dk


def _ssm_backward_fake(g_f, g_b, u_f, u_b, k_f, k_b, d_f, d_b, keep, ranges, need_u, need_k):
    du_shape = u_f.shape if need_u else (0,)
    dk = u_f.new_empty((2, u_f.shape[1]) if need_k else (0,), dtype=torch.float32)  # (2, L) or (0,)
    return u_f.new_empty(du_shape), u_f.new_empty(du_shape), dk


def _ssm_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)  # u_f, u_b, k_f, k_b, d_f, d_b, keep, ranges
    # an unused output's gradient stays None (one zero-filled buffer made below only if the other one is used)
    ctx.set_materialize_grads(False)


def _ssm_backward(ctx, g_f, g_b):
    u_f, u_b, k_f, k_b, d_f, d_b, keep, ranges = ctx.saved_tensors
    need = ctx.needs_input_grad
    need_u, need_k = need[0] or need[1], any(need[2:6])
    if (g_f is None and g_b is None) or not (need_u or need_k):
        return (None,) * 8
    g_f = torch.zeros_like(u_f) if g_f is None else g_f.to(u_f.dtype)  # (B, L, H)
    g_b = torch.zeros_like(u_b) if g_b is None else g_b.to(u_b.dtype)  # (B, L, H)
    du_f, du_b, dk = torch.ops.bizoo.ssm_toeplitz_backward(
        g_f, g_b, u_f, u_b, k_f, k_b, d_f, d_b, keep, ranges, need_u, need_k
    )
    if not need_u:
        du_f = du_b = None
    dk_f = dk_b = dd_f = dd_b = None
    if need_k:
        dk_f, dk_b = dk[0], dk[1]  # (L,) each
        dd_f, dd_b = dk[0, :1].clone(), dk[1, :1].clone()  # (1,): d sits on lag 0; own storage, not a view of dk
    return du_f, du_b, dk_f, dk_b, dd_f, dd_b, None, None


# The ops, once per process (dispatch.register_op).
register_op("ssm_toeplitz_backward", _ssm_backward_impl, _ssm_backward_fake, backward_of="bidirectional_ssm")
register_op("ssm_toeplitz_forward", _ssm_forward_impl, _ssm_forward_fake, backward=_ssm_backward,
            setup_context=_ssm_setup_context)


def _mask_and_ranges(attention_mask, B: int, L: int, device):
    """The keep-mask as contiguous uint8 (B, L) and each row's real range [start, end) as (B, 2) int32 ([0, 0) for
    a row of padding only), without a host sync; (None, None) without a mask."""
    if attention_mask is None:
        return None, None
    keep = attention_mask.to(device=device) != 0  # (B, L)
    return keep.contiguous().view(torch.uint8), real_ranges(keep, B, L, device)


def bidirectional_ssm_triton(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask=None, *, form="auto",
                             recurrent_params=None):
    """The bidirectional SSM (the module docstring states the math) on Triton kernels: (y_fwd, y_bwd) (B, L, H) in
    the dtype of u, differentiable w.r.t. u_fwd, u_bwd, k_fwd, k_bwd, d_fwd and d_bwd.

    ``form`` and ``recurrent_params`` are accepted for the signature of the op and ignored: this backend always
    evaluates the convolution form (a blocked Toeplitz product), which equals the recurrent form in exact
    arithmetic.
    """
    del form, recurrent_params  # the same math; see the docstring
    check_triton_inputs(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, attention_mask)
    B, L, _ = u_fwd.shape
    with autocast_off(u_fwd.device):
        # fp32 parameters: the casts are differentiable and sit outside the autograd function
        k_f, k_b = k_fwd.float().contiguous(), k_bwd.float().contiguous()  # (L,)
        d_f, d_b = d_fwd.float().reshape(1), d_bwd.float().reshape(1)  # (1,)
        keep, ranges = _mask_and_ranges(attention_mask, B, L, u_fwd.device)
        u_f, u_b = u_fwd.contiguous(), u_bwd.contiguous()  # (B, L, H): saved for the backward as they are
        return torch.ops.bizoo.ssm_toeplitz_forward(u_f, u_b, k_f, k_b, d_f, d_b, keep, ranges)
