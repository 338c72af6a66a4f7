r"""LION: bidirectional linear attention with decay, the reference math in plain PyTorch (fp32).

Afzal et al. 2025, "Linear Attention for Efficient Bidirectional Sequence Modeling".

Legend: B batch, H heads, L length, Dk query/key size, Dv value size, C chunk size, N = ceil(L / C) chunks.

Per batch row and head, with per-token decays λ_t = exp(a_t) ∈ (0, 1], a_t = ``log_decay`` ≤ 0, the mask is

    M_ij = ∏_{m=j}^{i-1} λ_m     for i > j   (forward, causal part)
    M_ij = 1                     for i = j
    M_ij = ∏_{m=i+1}^{j} λ_m     for i < j   (backward, anti-causal part)

i.e. the product of the decays from the source token j (inclusive) up to the target token i (exclusive), and

    y_i = Σ_j M_ij (q_i·k_j) v_j  /  Σ_j M_ij (q_i·k_j)           (``normalize=True``: the row-sum normaliser)
    y_i = Σ_j M_ij (q_i·k_j) v_j                                   (``normalize=False``)

A row sum of exactly 0 (a query that is all zeros, e.g. a feature map that underflowed) is taken as 1, so that the
row gives its numerator (0 for non-negative features) instead of 0/0; row sums that are merely small are divided
by as they are (the quotient is invariant to the scale of q_i).

The three decay types: ``log_decay=None`` (LION-LIT, all λ = 1), ``(H,)`` (LION-D, one λ per head) and
``(B, H, L)`` (LION-S, one λ per token and head). q and k arrive with the feature map already applied.

Padding. Positions with ``attention_mask == 0`` take no part: their keys and values are not read and their decays
are 1, so the result at every real position equals that of the same sequence with the padding removed (right
padding, left padding or holes alike; in particular the backward direction starts at each sequence's last real
token). Outputs at padded positions are 0.

Log space. With the exclusive prefix sum P_t = Σ_{m<t} a_m and the inclusive one Q_t = P_t + a_t,

    log M_ij = P_i - P_j   (i ≥ j),        log M_ij = Q_j - Q_i   (i ≤ j),

both ≤ 0, so every ``exp`` taken below is of a non-positive number. Every such difference is formed from prefix
sums taken in fp64 (split into fp32 hi + lo parts where a whole L×L or C×C matrix of them is built) and rounded
once: in fp32, a prefix sum that has passed one strong decay (log λ = -1e4) has lost every digit of the weak decays
after it, and the entries of M that matter are exactly those spans of weak decays.

Extreme decays. log λ below ``LOG_DECAY_MIN`` = -1000 is raised to it: exp(-1000) is 0 in every floating-point
format (fp64 underflows below -745), so every entry of M that holds such a decay is 0 before and after, and the
gradient is 0 either way; what the floor buys is prefix sums that stay exact in fp64 (|P| <= 1000 L) where a log λ
of -1e30 would swamp every other decay in the row. log λ = -inf (λ = 0) is rejected by the input checks.

The three forms of the one op (``form=``), equal up to rounding:

* ``"attention"``: the full masked L×L matrix, O(L² D) time and O(L²) memory. The oracle.
* ``"rnn"``: a forward and a backward recurrence over Dk×Dv states, the diagonal counted once,

      S^F_i = λ_{i-1} S^F_{i-1} + k_i v_iᵀ,     S^B_i = λ_{i+1} S^B_{i+1} + k_i v_iᵀ,
      y_i   = q_iᵀ (S^F_i + S^B_i) - (q_i·k_i) v_i        (the normaliser: the same with v ≡ 1).

  O(L D²) work but L sequential steps (a Python loop here): the form for streaming, not for speed.
* ``"chunk"``: linear in L. Split the sequence into N chunks of C tokens; inside a chunk, the masked C×C attention
  with local prefix sums p (exclusive) and s (inclusive), T_n = Σ_{t∈n} a_t; across chunks, a forward and a backward
  scan over chunk states:

      F_n = λ^{T_{n-1}} F_{n-1} + Σ_{j∈n-1} exp(T_{n-1} - p_j) k_j v_jᵀ          (everything before chunk n)
      G_n = λ^{T_{n+1}} G_{n+1} + Σ_{j∈n+1} exp(s_j) k_j v_jᵀ                    (everything after chunk n)
      y_i = intra_i + exp(p_i) q_iᵀ F_n + exp(T_n - s_i) q_iᵀ G_n                (i ∈ chunk n)

  O(L C D + L D²) time, O(L C + N D²) memory. (The authors' "chunk" code still builds L×C slices of the full
  mask for every chunk, i.e. O(L²) work; this one does not.)

All three accumulate in fp32 (fp64 when given fp64) with autocast disabled and return the dtype of ``v``.
"""

from __future__ import annotations

import torch

from ..dispatch import autocast_off
from .checks import check_inputs

LOG_DECAY_MIN = -1000.0  # the floor of log λ (module docstring): exp of it underflows to 0 in every dtype


# ----------------------------------------------------------------------------------------------------------------
# The common preparation of every form (the input checks: ``checks.py``)
# ----------------------------------------------------------------------------------------------------------------


def log_decays(log_decay, shape, dtype, device) -> torch.Tensor:
    """log λ as a (B, H, L) tensor of ``dtype``: 0 for None (LIT), broadcast from (H,) (D) or as given (S), raised
    to ``LOG_DECAY_MIN`` (exact: exp of it is 0 in every dtype; module docstring, "Extreme decays")."""
    B, H, L = shape
    if log_decay is None:
        return torch.zeros(B, H, L, dtype=dtype, device=device)  # (B, H, L)
    a = log_decay.to(dtype)
    if a.dim() == 1:
        a = a.view(1, H, 1).expand(B, H, L)  # (B, H, L)
    return a.clamp(min=LOG_DECAY_MIN)


def safe_row_sums(den: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The row sums to divide by: 1 where a row is padding (``keep`` False) or sums to exactly 0 (module docstring),
    so that neither the value nor the gradient is 0/0."""
    ok = den != 0 if keep is None else (den != 0) & keep
    return torch.where(ok, den, torch.ones_like(den))


def split_hi_lo(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """fp64 ``x`` as hi + lo parts of ``dtype`` (hi = x rounded, lo = the rest rounded): differences of such parts
    are exact to the rounding of the difference itself, not of the (possibly large) prefix sums (module docstring)."""
    hi = x.to(dtype)
    return hi, (x - hi.double()).to(dtype)


def _prepare(q, k, v, log_decay, attention_mask, normalize):
    """fp32 (fp64 for fp64 input) copies with padding neutralised, and the ones column that carries the normaliser.

    Returns q, k (B, H, L, Dk); v (B, H, L, Dv [+1]); a (B, H, L) with a = 0 at padding; mask (B, 1, L, 1) or None.
    """
    acc = torch.promote_types(v.dtype, torch.float32)  # fp32, or fp64 for fp64 inputs (tight oracle tests)
    q, k, v = q.to(acc), k.to(acc), v.to(acc)
    a = log_decays(log_decay, q.shape[:3], acc, q.device)  # (B, H, L)
    mask = None
    if attention_mask is not None:
        keep = attention_mask.to(device=q.device, dtype=torch.bool)  # (B, L)
        mask = keep[:, None, :, None]  # (B, 1, L, 1)
        # torch.where, not a product: whatever the padded positions hold (even NaN) cannot leak.
        q, k, v = (torch.where(mask, t, 0.0) for t in (q, k, v))  # padded keys contribute nothing ...
        a = torch.where(keep[:, None, :], a, 0.0)  # ... and decay nothing: λ = 1 at padding
    if normalize:
        v = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)  # (B, H, L, Dv+1): last column -> denominator
    return q, k, v, a, mask


def _finish(out, mask, normalize, dtype):
    """Divide by the normaliser column (if any), zero padded rows, cast back."""
    if normalize:
        num, den = out[..., :-1], out[..., -1:]  # (B, H, L, Dv), (B, H, L, 1)
        out = num / safe_row_sums(den, mask)
    if mask is not None:
        out = torch.where(mask, out, 0.0)
    return out.to(dtype)


def _decay_matrix_log(a):
    """log M for one block of log-decays ``a`` (..., T) -> (..., T, T), entries <= 0, in the dtype of ``a``.

    P_i - P_j for i >= j and Q_j - Q_i for i <= j. Both prefix sums are taken in fp64 and split into hi + lo parts
    of the dtype of ``a`` before subtracting, so an entry is exact to the rounding of the entry itself, not of the
    (possibly large) prefix sums: over thousands of tokens a plain fp32 P_i - P_j loses 1e-4, and after one strong
    decay (a = -1e4) every digit of the weak ones. (Forming Q_j - Q_i as (a_j - a_i) - (P_i - P_j) is no better:
    a_j - a_i rounds to the ulp of the strong decay.)
    """
    T = a.shape[-1]
    q = a.double().cumsum(-1)  # Q, inclusive prefix sums, fp64
    p = q - a.double()  # P, exclusive prefix sums, fp64

    def diff(x):  # x_i - x_j (..., T, T) from the hi + lo parts of the fp64 prefix sums x
        hi, lo = split_hi_lo(x, a.dtype)
        return (hi[..., :, None] - hi[..., None, :]) + (lo[..., :, None] - lo[..., None, :])

    lower = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()  # i >= j
    return torch.where(lower, diff(p), -diff(q))  # P_i - P_j below the diagonal, Q_j - Q_i above


# ----------------------------------------------------------------------------------------------------------------
# The three forms. Each takes prepared fp32 tensors (see _prepare) and returns (B, H, L, Dv[+1]).
# ----------------------------------------------------------------------------------------------------------------


def masked_scores(q, k, a):
    """The full masked L×L matrix (q kᵀ) ⊙ M (B, H, L, L) of prepared tensors (``_prepare``)."""
    return (q @ k.transpose(-1, -2)) * _decay_matrix_log(a).exp()  # (B, H, L, L)


def attention_form(q, k, v, a):
    """The full masked L×L matrix: y = ((q kᵀ) ⊙ M) v."""
    return masked_scores(q, k, a) @ v  # (B, H, L, Dv)


def rnn_form(q, k, v, a):
    """Forward and backward recurrences over (Dk, Dv) states; the diagonal is counted once."""
    B, H, L, Dk = q.shape
    lam = a.exp()  # (B, H, L)
    state = q.new_zeros(B, H, Dk, v.shape[-1])  # (B, H, Dk, Dv)
    fwd = []
    for t in range(L):
        if t > 0:
            state = lam[:, :, t - 1, None, None] * state
        state = state + k[:, :, t, :, None] * v[:, :, t, None, :]  # += k_t v_tᵀ
        fwd.append(torch.einsum("bhd,bhde->bhe", q[:, :, t], state))
    state = torch.zeros_like(state)
    bwd = [None] * L
    for t in range(L - 1, -1, -1):
        if t < L - 1:
            state = lam[:, :, t + 1, None, None] * state
        state = state + k[:, :, t, :, None] * v[:, :, t, None, :]
        bwd[t] = torch.einsum("bhd,bhde->bhe", q[:, :, t], state)
    diag = (q * k).sum(-1, keepdim=True) * v  # (B, H, L, Dv): counted in both directions
    return torch.stack(fwd, dim=2) + torch.stack(bwd, dim=2) - diag


def chunk_form(q, k, v, a, chunk_size):
    """Masked attention inside chunks of C tokens plus a forward and a backward scan over chunk states."""
    B, H, L, Dk = q.shape
    Dv = v.shape[-1]
    C = min(chunk_size, L)
    pad = (-L) % C
    if pad:  # padded tail: k = 0 and a = 0, i.e. invisible pass-through positions
        q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        a = torch.nn.functional.pad(a, (0, pad))
    N = (L + pad) // C
    q = q.view(B, H, N, C, Dk)
    k = k.view(B, H, N, C, Dk)
    v = v.view(B, H, N, C, Dv)
    a = a.view(B, H, N, C)

    # Local prefix sums in fp64, each difference rounded once (module docstring, "Log space").
    s64 = a.double().cumsum(-1)  # local inclusive prefix sums s (B, H, N, C)
    p64 = s64 - a.double()  # local exclusive prefix sums p
    total64 = s64[..., -1:]  # T_n, log decay across the whole chunk (B, H, N, 1)
    p, s = p64.to(a.dtype), s64.to(a.dtype)
    total = total64[..., 0].to(a.dtype)  # (B, H, N)

    # Inside each chunk: the masked C×C attention.
    decay = _decay_matrix_log(a).exp()  # (B, H, N, C, C)
    out = ((q @ k.transpose(-1, -2)) * decay) @ v  # (B, H, N, C, Dv)

    # What each chunk hands to the chunks after it (decayed to the next chunk's start) and before it (decayed to
    # the previous chunk's end).
    to_next = (k * (total64 - p64).to(a.dtype).exp()[..., None]).transpose(-1, -2) @ v  # (B, H, N, Dk, Dv)
    to_prev = (k * s.exp()[..., None]).transpose(-1, -2) @ v  # (B, H, N, Dk, Dv)
    chunk_decay = total.exp()  # (B, H, N)

    zero = q.new_zeros(B, H, Dk, Dv)
    fwd_states = [zero]  # F_0 = 0; F_n = λ^{T_{n-1}} F_{n-1} + to_next_{n-1}
    for n in range(1, N):
        fwd_states.append(chunk_decay[:, :, n - 1, None, None] * fwd_states[-1] + to_next[:, :, n - 1])
    bwd_states = [zero]  # G_{N-1} = 0; G_n = λ^{T_{n+1}} G_{n+1} + to_prev_{n+1}
    for n in range(N - 2, -1, -1):
        bwd_states.append(chunk_decay[:, :, n + 1, None, None] * bwd_states[-1] + to_prev[:, :, n + 1])
    F = torch.stack(fwd_states, dim=2)  # (B, H, N, Dk, Dv)
    G = torch.stack(bwd_states[::-1], dim=2)  # (B, H, N, Dk, Dv)

    after = (total64 - s64).to(a.dtype)  # T_n - s_i: the decay from token i to the chunk's end
    out = out + p.exp()[..., None] * (q @ F) + after.exp()[..., None] * (q @ G)
    return out.reshape(B, H, N * C, Dv)[:, :, :L]


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    log_decay: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    normalize: bool = True,
) -> torch.Tensor:
    """The L×L weights A that ``lion_attention`` applies to v, materialised: ``lion_attention(q, k, v, ...) = A v``
    for every v and every form (what a model returns as ``attentions``).

        A_ij = M_ij (q_i·k_j) / Σ_l M_il (q_i·k_l)      (``normalize=True``; a row sum of exactly 0 taken as 1)
        A_ij = M_ij (q_i·k_j)                            (``normalize=False``: the unnormalised scores)

    Built as the attention form builds it (the same preparation, fp32 accumulation, log M from fp64 prefix sums), in
    O(B H L²) memory, differentiable. Padding takes no part, as in the op: a padded key's column and a padded
    query's row are 0, so a real row sums to 1 under ``normalize=True`` with non-negative features.

    Args:
        q, k: (B, H, L, Dk), feature map already applied.
        log_decay: None (LIT), (H,) (D) or (B, H, L) (S); values <= 0.
        attention_mask: (B, L), 1 for real tokens and 0 for padding, or None.
        normalize: divide each row by its sum Σ_j M_ij (q_i·k_j).

    Returns:
        (B, H, L, L) in the dtype of ``q``; query i along dim 2, key j along dim 3.
    """
    if not isinstance(normalize, bool):
        raise ValueError(f"attention_weights: normalize must be True or False, got {normalize!r}")
    check_inputs(q, k, q, log_decay, attention_mask, "attention", 1)  # v's checks: none beyond q's (B, H, L)
    with autocast_off(q.device):
        no_values = q[..., :0]  # (B, H, L, 0): _prepare's v, not needed here
        qf, kf, _, a, mask = _prepare(q, k, no_values, log_decay, attention_mask, normalize=False)
        weights = masked_scores(qf, kf, a)  # (B, H, L, L); 0 at padded rows and columns
        if normalize:
            weights = weights / safe_row_sums(weights.sum(-1, keepdim=True), mask)  # (B, H, L, L)
        return weights.to(q.dtype)


def lion_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    form: str = "chunk",
    chunk_size: int = 64,
    normalize: bool = True,
) -> torch.Tensor:
    """LION attention, reference implementation (see the module docstring for the math).

    Args:
        q, k: (B, H, L, Dk), feature map already applied.
        v: (B, H, L, Dv).
        log_decay: None (LIT), (H,) (D) or (B, H, L) (S); values <= 0.
        attention_mask: (B, L), 1 for real tokens and 0 for padding, or None.
        form: "attention", "rnn" or "chunk".
        chunk_size: chunk length C of the chunk form.
        normalize: divide by the row sums Σ_j M_ij (q_i·k_j).

    Returns:
        (B, H, L, Dv) in the dtype of ``v``; zeros at padded positions.
    """
    check_inputs(q, k, v, log_decay, attention_mask, form, chunk_size)
    with autocast_off(q.device):
        qf, kf, vf, a, mask = _prepare(q, k, v, log_decay, attention_mask, normalize)
        if form == "attention":
            out = attention_form(qf, kf, vf, a)
        elif form == "rnn":
            out = rnn_form(qf, kf, vf, a)
        else:
            out = chunk_form(qf, kf, vf, a, chunk_size)
        return _finish(out, mask, normalize, v.dtype)
