r"""LION attention on Triton kernels: the autograd function and the op behind ``backend="triton"``.

Both Triton schedules (``triton_parallel.py``: tiled like FlashAttention; ``triton_chunk.py``: linear in L)
compute one generalised product, per batch row and head,

    o_i = Σ_j S_ij M_ij v_j,   S_ij = q_i·k_j + c_i e_j,   M from decays α (forward part) and β (backward part)

with optional row sums den_i = Σ_j S_ij M_ij and directional dot products ρF_i = r_i·Σ_{j<=i}(...),
ρB_i = r_i·Σ_{j>i}(...). The forward pass is the product with α = β = a (a = log λ, 0 at padding), giving the
numerator and, with the row-sum normaliser, the denominator. The backward pass is three more products of the
same kind, so every gradient runs on the same two kernels:

    P = (Q Kᵀ) ⊙ M,  dP = dO Vᵀ + dden 1ᵀ
    dQ = (dP ⊙ M) K      product(q=dO, k=V, v=K, c=dden, e=1;  α=β=a)
    dK = (dP ⊙ M)ᵀ Q     product(q=V, k=dO, v=Q, c=1, e=dden;  α'=a shifted left, β'=a shifted right)
    dV = Pᵀ dO           product(q=K, k=Q, v=dO;                α', β' as for dK)

(Mᵀ is again such a mask: (Mᵀ)_ji = M_ij, with α'_m = a_{m+1} and β'_m = a_{m-1}.) The decay gradient follows
from W = dP ⊙ P: with P^α the exclusive and Q^β the inclusive prefix sums of a,

    ∂/∂P^α_t = Σ_{j<=t} W_tj - Σ_{i>=t} W_it,   ∂/∂Q^β_t = Σ_{i<=t} W_it - Σ_{j>=t} W_tj,
    da_m = Σ_{t>m} ∂/∂P^α_t + Σ_{t>=m} ∂/∂Q^β_t,

and the row and column sums of W's two triangles are exactly the ρ outputs of the dQ and dK products (with
r = q and r = k), less the diagonal W_tt counted twice.

Padding: keys and decays are zeroed at padding before the products (so padding takes no part and the
backward direction starts at each row's last real token), and each row's real range [start, end) is passed to
the kernels, which skip the tiles and chunks outside it.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .reference import log_decays, safe_row_sums
from .triton_chunk import chunk_product
from .triton_parallel import parallel_product

SCHEDULES = ("attention", "chunk")  # "attention" = the parallel (tiled) schedule
CHUNK_SIZES = (16, 32, 64, 128)
MAX_HEAD_DIM = 256
# Tests set a fill value (NaN) for every output buffer, so an element a kernel fails to write cannot pass.
DEBUG_FILL: float | None = None


def _product(schedule, chunk_size, *args, **kwargs):
    if schedule == "chunk":
        return chunk_product(*args, chunk_size=chunk_size, fill=DEBUG_FILL, **kwargs)
    return parallel_product(*args, fill=DEBUG_FILL, **kwargs)


def real_ranges(attention_mask: torch.Tensor | None, B: int, L: int, device) -> torch.Tensor:
    """(B, 2) int32 [start, end) of each row's real tokens ([0, 0) for an all-padding row); no host sync."""
    if attention_mask is None:
        return torch.tensor([0, L], dtype=torch.int32, device=device).repeat(B, 1)
    keep = attention_mask.to(device=device, dtype=torch.bool)
    has = keep.any(dim=1)
    first = keep.int().argmax(dim=1)
    end = L - keep.flip(1).int().argmax(dim=1)
    ranges = torch.stack([first, end], dim=1) * has[:, None]
    return ranges.to(torch.int32).contiguous()


class LionTritonFunction(torch.autograd.Function):
    """(q, k, v, a) -> (numerator (B, H, L, Dv) fp32, row sums (B, H, L) fp32) on Triton kernels."""

    @staticmethod
    def forward(ctx, q, k, v, a, ranges, normalize: bool, schedule: str, chunk_size: int):
        o, den, _ = _product(schedule, chunk_size, q, k, v, a, a, ranges, rowsum=normalize)
        ctx.save_for_backward(q, k, v, a, ranges)
        ctx.normalize, ctx.schedule, ctx.chunk_size = normalize, schedule, chunk_size
        return o, (den if den is not None else o.new_zeros(q.shape[:3]))

    @staticmethod
    def backward(ctx, d_o, d_den):
        q, k, v, a, ranges = ctx.saved_tensors
        run = lambda *args, **kw: _product(ctx.schedule, ctx.chunk_size, *args, **kw)  # noqa: E731
        d_o = d_o.to(q.dtype).contiguous()
        dden = d_den.float().contiguous() if (ctx.normalize and d_den is not None) else None
        ones = torch.ones_like(a) if dden is not None else None
        need_da = ctx.needs_input_grad[3]
        left = F.pad(a[..., 1:], (0, 1))  # α'_m = a_{m+1}
        right = F.pad(a[..., :-1], (1, 0))  # β'_m = a_{m-1}

        dq, _, rho_q = run(d_o, v, k, a, a, ranges, c=dden, e=ones, r=q if need_da else None)
        dk, _, rho_k = run(v, d_o, q, left, right, ranges, c=ones, e=dden, r=k if need_da else None)
        dv, _, _ = run(k, q, d_o, left, right, ranges)

        da = None
        if need_da:
            dp_diag = (d_o.float() * v.float()).sum(-1)  # dP_tt
            if dden is not None:
                dp_diag = dp_diag + dden
            w_diag = dp_diag * (q.float() * k.float()).sum(-1)  # W_tt = dP_tt P_tt
            d_prefix_fwd = (rho_q[0] - rho_k[1] - w_diag).double()  # rows of W's lower part - its columns
            d_prefix_bwd = (rho_k[0] - rho_q[1] - w_diag).double()  # columns of W's upper part - its rows
            suffix = lambda x: x.flip(-1).cumsum(-1).flip(-1)  # noqa: E731  Σ_{t>=m}
            da = (suffix(d_prefix_fwd) - d_prefix_fwd + suffix(d_prefix_bwd)).float()
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), da, None, None, None, None


def check_triton_inputs(q, k, v, form: str, chunk_size: int) -> None:
    """What the Triton kernels support; ``ValueError`` naming the limit otherwise."""
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            "lion_attention: backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run the kernels on the "
            f"CPU, slowly); the tensors are on {q.device}; use backend='reference' or 'auto'"
        )
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or len({q.dtype, k.dtype, v.dtype}) != 1:
        raise ValueError(
            f"lion_attention: backend='triton' takes q, k, v of one dtype among float32, float16 and bfloat16, got "
            f"{q.dtype}, {k.dtype}, {v.dtype}"
        )
    if max(q.shape[-1], v.shape[-1]) > MAX_HEAD_DIM:
        raise ValueError(
            f"lion_attention: backend='triton' supports head sizes up to {MAX_HEAD_DIM}, got Dk={q.shape[-1]}, "
            f"Dv={v.shape[-1]}; use backend='reference'"
        )
    if form not in SCHEDULES:
        raise ValueError(
            f"lion_attention: backend='triton' has the forms {SCHEDULES} (and 'auto'); form={form!r} runs on "
            "backend='reference'"
        )
    if form == "chunk" and chunk_size not in CHUNK_SIZES:
        raise ValueError(f"lion_attention: backend='triton' needs chunk_size in {CHUNK_SIZES}, got {chunk_size}")


def lion_attention_triton(q, k, v, log_decay, attention_mask, *, form: str, chunk_size: int, normalize: bool):
    """The LION op (``reference.py`` states the math) on Triton kernels; inputs already checked."""
    check_triton_inputs(q, k, v, form, chunk_size)
    B, H, L, _ = q.shape
    with torch.autocast(device_type=q.device.type, enabled=False):
        a = log_decays(log_decay, (B, H, L), torch.float32, q.device)  # (B, H, L)
        ranges = real_ranges(attention_mask, B, L, q.device)
        keep = None
        if attention_mask is not None:
            keep = attention_mask.to(device=q.device, dtype=torch.bool)
            # torch.where, not a product: whatever padded positions hold (even NaN) cannot leak into real ones
            q, k, v = (torch.where(keep[:, None, :, None], t, 0.0) for t in (q, k, v))
            a = torch.where(keep[:, None, :], a, 0.0)
        num, den = LionTritonFunction.apply(q, k, v, a.contiguous(), ranges, normalize, form, chunk_size)
        out = num
        if normalize:
            out = num / safe_row_sums(den, None if keep is None else keep[:, None, :])[..., None]
        if keep is not None:
            out = torch.where(keep[:, None, :, None], out, 0.0)
        return out.to(v.dtype)
