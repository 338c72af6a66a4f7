r"""LION attention on Triton kernels: the op behind ``backend="triton"``.

``form="chunk"`` runs ``triton_chunk.py`` (linear in L, its own docstring has the math), registered with
``torch.library`` as ``bizoo::lion_chunk_forward`` / ``bizoo::lion_chunk_backward`` (custom ops with fake
implementations and a registered autograd), so that ``torch.compile`` puts the kernels in its graph.

``form="attention"`` runs the tiled schedule of ``triton_parallel.py``, registered the same way as
``bizoo::lion_parallel_forward`` / ``bizoo::lion_parallel_backward``. Its kernel computes one generalised product, per
batch row and head,

    o_i = Σ_j S_ij M_ij v_j,   S_ij = q_i·k_j + c_i e_j,   M from decays α (forward part) and β (backward part)

with optional row sums den_i = Σ_j S_ij M_ij and directional dot products ρF_i = r_i·Σ_{j<i}(...),
ρB_i = r_i·Σ_{j>i}(...). The forward pass is the product with α = β = a (a = log λ, 0 at padding), giving the
numerator and, with the row-sum normaliser, the denominator. The backward pass is three more products of the
same kind, so every gradient runs on the same kernel:

    P = (Q Kᵀ) ⊙ M,  dP = dO Vᵀ + dden 1ᵀ
    dQ = (dP ⊙ M) K      product(q=dO, k=V, v=K, c=dden, e=1;  α=β=a)
    dK = (dP ⊙ M)ᵀ Q     product(q=V, k=dO, v=Q, c=1, e=dden;  α'=a shifted left, β'=a shifted right)
    dV = Pᵀ dO           product(q=K, k=Q, v=dO;                α', β' as for dK)

(Mᵀ is again such a mask: (Mᵀ)_ji = M_ij, with α'_m = a_{m+1} and β'_m = a_{m-1}.) The decay gradient follows
from W = dP ⊙ P: with P^α the exclusive and Q^β the inclusive prefix sums of a,

    ∂/∂P^α_t = Σ_{j<t} W_tj - Σ_{i>t} W_it,   ∂/∂Q^β_t = Σ_{i<t} W_it - Σ_{j>t} W_tj   (W_tt cancels in both),
    da_m = Σ_{t>m} ∂/∂P^α_t + Σ_{t>=m} ∂/∂Q^β_t,

and the row and column sums of W's two strict triangles are exactly the ρ outputs of the dQ and dK products
(with r = q and r = k), summed in fp32 from the same tiles (so that the sums that cancel in da cancel to fp32's
rounding, not half's).

Half precision: dO = dy/den is ~1e6 where den is small (q·k ~ 1e-4 and dy ~ 50, a GradScaler's loss is enough),
past fp16's range, while every gradient is in range: the backward hands it to the kernel in fp32, which rounds it
to half per row times a power of two (and the score tiles likewise: ``triton_parallel.py``).

Padding: keys and decays are zeroed at padding before the products (so padding takes no part and the
backward direction starts at each row's last real token), and each row's real range [start, end) is passed to
the kernel, which skips the tiles outside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..dispatch import autocast_off, register_op
from ..triton_utils import real_ranges
from .checks import check_triton_inputs
from .reference import log_decays, safe_row_sums
from .triton_chunk import chunk_backward, chunk_forward, states_dtype
from .triton_parallel import parallel_product

# Tests set a fill value (NaN) for every output buffer, so an element a kernel fails to write cannot pass.
DEBUG_FILL: float | None = None


def _product(*args, **kwargs):
    """``parallel_product`` with the tests' fill value for its output buffers."""
    return parallel_product(*args, fill=DEBUG_FILL, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# The chunk schedule as custom ops (torch.library): the forward, the backward, their fake versions, the autograd
# ----------------------------------------------------------------------------------------------------------------


def _chunk_forward_impl(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor | None, mask: torch.Tensor | None,
    chunk_size: int, normalize: bool, fp32_states: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """y (B, H, L, Dv), row sums (B, H, L), chunk states and their ones column (``triton_chunk.chunk_forward``)."""
    return chunk_forward(q, k, v, log_decay, mask, chunk_size=chunk_size, normalize=normalize,
                         fp32_states=fp32_states, fill=DEBUG_FILL)


def _chunk_forward_fake(q, k, v, log_decay, mask, chunk_size, normalize, fp32_states):
    B, H, L, DK = q.shape
    DV = v.shape[-1]
    N = -(-L // chunk_size)
    state_dtype = states_dtype(q.dtype, fp32_states)
    y = q.new_empty(B, L, H, DV, dtype=v.dtype).transpose(1, 2)  # (B, H, L, Dv) view of (B, L, H, Dv)
    den = q.new_empty((B, H, L) if normalize else (0,), dtype=torch.float32)
    states = q.new_empty(B * H, 2, N, DK, DV, dtype=state_dtype)
    z = q.new_empty((B * H, 2, N, DK) if normalize else (0,), dtype=torch.float32)
    return y, den, states, z


def _chunk_backward_impl(
    dy: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor | None,
    mask: torch.Tensor | None, y: torch.Tensor, den: torch.Tensor, states: torch.Tensor, z: torch.Tensor,
    chunk_size: int, normalize: bool, need_da: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv and da (B, H, L) (an empty tensor when not asked for) (``triton_chunk.chunk_backward``)."""
    dq, dk, dv, da = chunk_backward(dy, q, k, v, log_decay, mask, y, den, states, z, chunk_size=chunk_size,
                                    normalize=normalize, need_da=need_da, fill=DEBUG_FILL)
    return dq, dk, dv, (da if da is not None else q.new_empty(0, dtype=torch.float32))


def _chunk_backward_fake(dy, q, k, v, log_decay, mask, y, den, states, z, chunk_size, normalize, need_da):
    da_dtype = log_decay.dtype if (log_decay is not None and log_decay.dim() == 3) else torch.float32
    da = q.new_empty(q.shape[:3] if (need_da and log_decay is not None) else (0,), dtype=da_dtype)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), da


def _setup_context(ctx, inputs, output):
    q, k, v, log_decay, mask, chunk_size, normalize, _ = inputs
    y, den, states, z = output
    ctx.save_for_backward(q, k, v, log_decay, mask, y, den, states, z)
    ctx.chunk_size, ctx.normalize = chunk_size, normalize
    # den, states and z are the backward's inputs, never a loss's: no zero gradients made for them (3 launches)
    ctx.set_materialize_grads(False)


def _backward(ctx, dy, d_den, d_states, d_z):
    q, k, v, log_decay, mask, y, den, states, z = ctx.saved_tensors
    need_da = log_decay is not None and ctx.needs_input_grad[3]
    if dy is None:
        dy = torch.zeros_like(y)
    dq, dk, dv, da = torch.ops.bizoo.lion_chunk_backward(
        dy, q, k, v, log_decay, mask, y, den, states, z, ctx.chunk_size, ctx.normalize, need_da
    )
    if not need_da:
        da = None
    elif log_decay.dim() == 1:  # LION-D: one decay per head
        da = da.sum(dim=(0, 2)).to(log_decay.dtype)
    return dq, dk, dv, da, None, None, None, None


# ----------------------------------------------------------------------------------------------------------------
# The parallel schedule as custom ops: the forward product, the three backward products (module docstring), their
# fake versions, the autograd
# ----------------------------------------------------------------------------------------------------------------


def _parallel_forward_impl(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, ranges: torch.Tensor, normalize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The forward product with α = β = a: numerator and (with ``normalize``) row sums,

        num_i = Σ_j S_ij M_ij v_j,   den_i = Σ_j S_ij M_ij,   S_ij = q_i·k_j.

    q, k (B, H, L, Dk) and v (B, H, L, Dv), zero at padding; a (B, H, L) fp32 log-decays, 0 at padding; ranges
    (B, 2) int32 [start, end). Returns num (B, H, L, Dv) fp32 and den (B, H, L) fp32 (``(0,)`` without normalize).
    """
    num, den, _ = _product(q, k, v, a, a, ranges, rowsum=normalize)  # (B, H, L, Dv), (B, H, L) or None
    return num, (den if den is not None else q.new_empty(0, dtype=torch.float32))


def _parallel_forward_fake(q, k, v, a, ranges, normalize):
    B, H, L, _ = q.shape
    num = q.new_empty(B, H, L, v.shape[-1], dtype=torch.float32)  # (B, H, L, Dv)
    den = q.new_empty((B, H, L) if normalize else (0,), dtype=torch.float32)  # (B, H, L) or (0,)
    return num, den


def _parallel_backward_impl(
    d_num: torch.Tensor, d_den: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    a: torch.Tensor, ranges: torch.Tensor, need_da: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""dq, dk, dv (the dtypes of q, k, v) and da (B, H, L) fp32 (``(0,)`` unless ``need_da``) from the cotangents
    of num (B, H, L, Dv) and den (B, H, L) (None: no normaliser), as three products (module docstring):

        dQ = (dP ⊙ M) K,   dK = (dP ⊙ M)ᵀ Q,   dV = Pᵀ dO,   dP = dO Vᵀ + dden 1ᵀ,
        da_m = Σ_{t>m} ∂/∂P^α_t + Σ_{t>=m} ∂/∂Q^β_t   (from the ρ outputs of the dQ and dK products).
    """
    # (B, H, L, Dv) fp32, not rounded to q's dtype here: dO = dy/den exceeds fp16's range where den is small (the
    # gradients do not); the kernel rounds it to half per row, scaled by the row's largest entry (triton_parallel.py)
    d_num = d_num.float().contiguous()
    dden = d_den.float().contiguous() if d_den is not None else None  # (B, H, L) or None
    ones = torch.ones_like(a) if dden is not None else None  # (B, H, L): e = 1 (dQ), c = 1 (dK)
    left = F.pad(a[..., 1:], (0, 1))  # (B, H, L) α'_m = a_{m+1}
    right = F.pad(a[..., :-1], (1, 0))  # (B, H, L) β'_m = a_{m-1}

    dq, _, rho_q = _product(d_num, v, k, a, a, ranges, c=dden, e=ones, r=q if need_da else None)  # (B, H, L, Dk)
    dk, _, rho_k = _product(v, d_num, q, left, right, ranges, c=ones, e=dden, r=k if need_da else None)  # same
    dv, _, _ = _product(k, q, d_num, left, right, ranges)  # (B, H, L, Dv)

    if need_da:  # the ρ outputs leave out the diagonal W_tt, which cancels in both
        d_prefix_fwd = (rho_q[0] - rho_k[1]).double()  # (B, H, L) rows of W's lower part - its columns
        d_prefix_bwd = (rho_k[0] - rho_q[1]).double()  # (B, H, L) columns of W's upper part - its rows
        suffix = lambda x: x.flip(-1).cumsum(-1).flip(-1)  # noqa: E731  Σ_{t>=m}
        da = (suffix(d_prefix_fwd) - d_prefix_fwd + suffix(d_prefix_bwd)).float()  # (B, H, L)
    else:
        da = q.new_empty(0, dtype=torch.float32)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), da


def _parallel_backward_fake(d_num, d_den, q, k, v, a, ranges, need_da):
    da = q.new_empty(q.shape[:3] if need_da else (0,), dtype=torch.float32)  # (B, H, L) or (0,)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), da


def _parallel_setup_context(ctx, inputs, output):
    q, k, v, a, ranges, normalize = inputs
    ctx.save_for_backward(q, k, v, a, ranges)
    ctx.normalize = normalize
    # without the normaliser den is an empty placeholder: no zero gradient made for it
    ctx.set_materialize_grads(False)


def _parallel_backward(ctx, d_num, d_den):
    q, k, v, a, ranges = ctx.saved_tensors
    if d_num is None:  # only the row sums reach the loss
        d_num = q.new_zeros(*q.shape[:3], v.shape[-1], dtype=torch.float32)  # (B, H, L, Dv)
    need_da = ctx.needs_input_grad[3]
    dq, dk, dv, da = torch.ops.bizoo.lion_parallel_backward(
        d_num, d_den if ctx.normalize else None, q, k, v, a, ranges, need_da
    )
    return dq, dk, dv, (da if need_da else None), None, None


# The ops, once per process (dispatch.register_op): chunk schedule, parallel schedule.
register_op("lion_chunk_backward", _chunk_backward_impl, _chunk_backward_fake, backward_of="lion_attention")
register_op("lion_chunk_forward", _chunk_forward_impl, _chunk_forward_fake, backward=_backward,
            setup_context=_setup_context)
register_op("lion_parallel_backward", _parallel_backward_impl, _parallel_backward_fake,
            backward_of="lion_attention form='attention'")
register_op("lion_parallel_forward", _parallel_forward_impl, _parallel_forward_fake, backward=_parallel_backward,
            setup_context=_parallel_setup_context)


def lion_attention_triton(q, k, v, log_decay, attention_mask, *, form: str, chunk_size: int, normalize: bool,
                          fp32_states: bool = False):
    """The LION op (``reference.py`` states the math) on Triton kernels; inputs already checked.

    ``fp32_states`` stores the chunk schedule's states in fp32 even for bf16 inputs (default: bf16 for bf16
    inputs); the parallel schedule has no states."""
    check_triton_inputs(q, k, v, form, chunk_size)
    with autocast_off(q.device):
        if form == "chunk":
            y, _, _, _ = torch.ops.bizoo.lion_chunk_forward(
                q, k, v, log_decay, attention_mask, chunk_size, normalize, fp32_states
            )
            return y
        return _parallel_schedule(q, k, v, log_decay, attention_mask, normalize=normalize)


def _parallel_schedule(q, k, v, log_decay, attention_mask, *, normalize: bool):
    """The op on the parallel schedule: padding zeroed and the real ranges found in torch (traced as they are), the
    products in ``bizoo::lion_parallel_forward``, the normaliser and the zeros at padding in torch again."""
    B, H, L, _ = q.shape
    a = log_decays(log_decay, (B, H, L), torch.float32, q.device)  # (B, H, L)
    ranges = real_ranges(attention_mask, B, L, q.device)  # (B, 2) int32
    keep = None
    if attention_mask is not None:
        keep = attention_mask.to(device=q.device, dtype=torch.bool)
        # torch.where, not a product: whatever padded positions hold (even NaN) cannot leak into real ones
        q, k, v = (torch.where(keep[:, None, :, None], t, 0.0) for t in (q, k, v))
        a = torch.where(keep[:, None, :], a, 0.0)
    # num (B, H, L, Dv) fp32, den (B, H, L) fp32 (or (0,) without normalize)
    num, den = torch.ops.bizoo.lion_parallel_forward(q, k, v, a.contiguous(), ranges, normalize)
    out = num
    if normalize:
        out = num / safe_row_sums(den, None if keep is None else keep[:, None, :])[..., None]
    if keep is not None:
        out = torch.where(keep[:, None, :, None], out, 0.0)
    return out.to(v.dtype)
