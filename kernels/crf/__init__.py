r"""Linear-chain CRF: the public ops and their backend dispatch.

Every function takes ``emissions (B, L, K)``, ``mask (B, L)`` (bool or 0/1; None = every position real; right or
left padding, holes and empty rows are all fine), ``transitions (K, K)`` with ``transitions[i, j]`` the score of tag
i followed by tag j, ``start (K,)``, ``end (K,)`` (-inf entries ban a tag or a transition) and ``backend=``:

* ``crf_log_partition(...) -> (B,)``                       log Z, differentiable
* ``crf_log_likelihood(..., tags) -> (B,)``                log p(tags); -100 at a real position is marginalised
* ``crf_viterbi(...) -> (tags (B, L), scores (B,))``        the best path, -100 at padding
* ``crf_nbest(..., k) -> (tags (B, k, L), scores (B, k))``  the k best paths, best first
* ``crf_marginals(...) -> (B, L, K)``                      posteriors by forward-backward (differentiable on the
                                                             reference backend, which "auto" takes for a gradient)
* ``crf_max_marginals(...) -> (B, L, K)``                  best score through each tag; argmax = the Viterbi path

The math, the tie rule (lowest index), the edge cases (empty rows, banned paths) and the precision (fp32, fp64 kept)
are documented in ``reference.py``, the input checks (every backend's, and the Triton kernels' limits) in
``checks.py``. Nothing here calls ``.item()`` or syncs the device.

Backends:

* ``"reference"``: ``reference.py``, a loop over positions vectorised over the batch (autograd gradients);
* ``"scan"``: ``scan.py``, the same quantities by an associative scan, O(log L) Python steps, explicit backward;
  asked for by name on finite scores of a spread its exp-space arithmetic cannot hold (``SCAN_MAX_SPREAD``), the
  likelihood and the marginals raise ``ValueError`` where their values show it (a CPU in eager mode);
* ``"triton"``: ``triton_crf.py``, one launch per recursion with the transitions on-chip (CUDA, or the interpreter);
* ``"auto"``: Triton on CUDA where its kernels take the scores (up to ``MAX_TAGS`` tags, fp32, fp16 or bf16; the
  reference computes the rest: ``checks.triton_limit``); on a CPU the faster of reference and scan for the op, as
  measured with ``bizoo bench crf`` (``SCAN_MAX_TAGS`` below; for Viterbi and the max-marginals also rows × K³,
  ``SCAN_MAX_VITERBI_WORK``: the reference's packed eager schedules win from a few rows or tags on; for the
  likelihood and the marginals rows × K³ too, ``SCAN_MAX_LOG_PARTITION_WORK``), and the reference for scores whose
  spread the scan's exp-space arithmetic cannot hold exactly (``SCAN_MAX_SPREAD``). ``BIZOO_KERNEL_BACKEND``
  overrides "auto" as for every op. ``crf_marginals`` under "auto" takes the reference wherever a gradient is
  wanted: only the reference's marginals are differentiable.
  ``crf_nbest`` exists on the reference backend only (any backend name is accepted and runs it).
"""

from __future__ import annotations

import torch

from ..dispatch import reads_values, resolve_backend
from . import reference, scan
from .checks import IGNORE_INDEX, check_inputs, triton_limit

try:  # Triton is optional: without it the "triton" backend is simply absent
    from . import triton_crf
except ImportError:
    triton_crf = None

__all__ = [
    "crf_log_partition",
    "crf_log_likelihood",
    "crf_viterbi",
    "crf_nbest",
    "crf_marginals",
    "crf_max_marginals",
    "IGNORE_INDEX",
    "BACKENDS",
]

BACKENDS = ("auto", "reference", "scan", "triton")

# backend="auto" on a CPU, per op: the scan up to this many tags, the reference above. Measured on a 2-core AMD EPYC
# VM (`bizoo bench crf`, fp32, L = 128, B = 1 and 32, a quiet machine): the scan's O(L K³) work beats the reference's
# L Python steps at K = 9 (likelihood fwd+bwd 3.3-4.6x faster than the reference) and K = 17 (1.3-4.1x); at K = 45
# the reference is 1.2-5x faster. Viterbi and the max-marginals (the packed schedules): see SCAN_MAX_VITERBI_WORK.
SCAN_MAX_TAGS = {"log_partition": 24, "marginals": 24, "viterbi": 16, "max_marginals": 24}

# The likelihood (log_partition) under "auto" on a CPU: the scan also only while rows × K³ is at most this per
# intra-op thread (counting at most 2: SCAN_MAX_WORK), the reference above. Measured on a 2-core AMD EPYC VM
# (forward+backward, fp32, L = 128, right-padded batches, 11 interleaved rounds, median scan ms / reference ms), one
# thread: 0.96 at B·K³ = 47k (K = 9, B = 64), 1.00 at 70k (K = 13, B = 32), 0.86 at 111k (K = 24, B = 8), 1.22 at
# 157k (K = 17, B = 32), 2.24 at 442k; two threads: 0.89 at 157k, 1.24 at 314k (K = 17, B = 64), 1.34 at 442k
# (K = 24, B = 32).
# The marginals (forward-backward, no gradient) follow the same bound: measured alike (11 interleaved rounds after one
# warm-up, median scan ms / reference ms), one thread: 0.78 at 47k (K = 9, B = 64), 0.61 at 39k (K = 17, B = 8),
# 1.30 at 55k (K = 24, B = 4), 1.34 at 70k (K = 13, B = 32), 1.00 at 111k, 1.06 at 157k, 3.3 at 885k; two threads:
# 0.63 at 141k (K = 13, B = 64), 0.78 at 157k (K = 17, B = 32), 0.92 at 314k, 1.08 at 442k (K = 24, B = 32), 2.95 at
# 885k. The bound loses up to 1.3x with one thread between 55k and 80k and leaves up to 1.6x with two between 160k
# and 300k: a second thread speeds up the scan's large products, not the reference's small steps.
SCAN_MAX_LOG_PARTITION_WORK = 80000

# Viterbi and the max-marginals under "auto" on a CPU: the scan only up to SCAN_MAX_TAGS tags and while rows × K³ (its
# max-plus work per position; the reference's is rows × K² in a few small tensor ops) is at most SCAN_MAX_WORK's
# bound; the reference's packed eager schedules otherwise. Measured on a 2-core AMD EPYC VM against the eager
# schedules as they now are (rows padded to 32 or batch-major below 8 / 16; fp32, L = 128, 11 interleaved rounds,
# median scan ms / reference ms), Viterbi / max-marginals, one thread: 0.75 / 0.70 at 2.9k (K = 9, B = 4),
# 0.85 / 0.73 at 5.8k (K = 9, B = 8), 1.03 / 0.94 at 4.4k (K = 13, B = 2), 0.65 / 0.66 at 4.1k (K = 16, B = 1),
# 1.19 / 0.97 at 8k (K = 5, B = 64), 1.53 / 1.38 at 8.2k (K = 16, B = 2), 1.03 / 0.86 at 11.7k (K = 9, B = 16);
# two threads: 0.90 / 0.78 at 5.8k, 0.85 / 0.78 at 8k, 1.09 / 1.00 at 8.2k, 1.29 / 0.83 at 8.8k (K = 13, B = 4),
# 1.27 / 0.95 at 11.7k. `bizoo bench crf --tags 9 17 45 --batch-sizes 1 32 --lengths 128 --repeats 5` shows the
# choice.
SCAN_MAX_VITERBI_WORK = 6000

# The ops whose scan "auto" also bounds by rows × K³: (the bound with one intra-op thread, with two or more).
SCAN_MAX_WORK = {"log_partition": (SCAN_MAX_LOG_PARTITION_WORK, 2 * SCAN_MAX_LOG_PARTITION_WORK),
                 "marginals": (SCAN_MAX_LOG_PARTITION_WORK, 2 * SCAN_MAX_LOG_PARTITION_WORK),
                 "viterbi": (SCAN_MAX_VITERBI_WORK, 7000), "max_marginals": (SCAN_MAX_VITERBI_WORK, 12000)}


# The scan's log-semiring products run in exp space with one scale per block (``scan.py``): a path more than ~700
# nats below its block's best underflows. Scores whose spread could reach that go to the reference under "auto"
# (a trained tagger's scores span tens of nats; the scan was checked exact up to emissions of std 50 and
# transitions of std 20, and wrong from transitions of std 100).
SCAN_MAX_SPREAD = {"emissions": 400.0, "parameters": 200.0}


def _spread(x: torch.Tensor) -> float:
    """max - min of the finite entries of a CPU tensor (0 when none is finite)."""
    finite = x[torch.isfinite(x)]
    return float(finite.max() - finite.min()) if finite.numel() else 0.0


def _spreads(emissions, transitions, start, end) -> tuple[float, float]:
    """The spread of the emissions and that of the transitions, start and end scores together (CPU tensors)."""
    with torch.no_grad():
        parameters = torch.cat([transitions.detach().flatten(), start.detach().flatten(), end.detach().flatten()])
        return _spread(emissions.detach()), _spread(parameters.float())


def _scan_is_exact(emissions, transitions, start, end) -> bool:
    """Whether the scan's exp-space arithmetic cannot underflow on these scores (CPU tensors: no device sync)."""
    spread_emissions, spread_parameters = _spreads(emissions, transitions, start, end)
    return spread_emissions <= SCAN_MAX_SPREAD["emissions"] and spread_parameters <= SCAN_MAX_SPREAD["parameters"]


# The ops of the log semiring (sums of exponentials), whose scan needs scores of a bounded spread; the others take
# maxima, exact at any spread.
LOG_SEMIRING = ("log_partition", "marginals")


def _checked_scan(op: str, backend: str, result: torch.Tensor, emissions, mask, transitions, start, end
                  ) -> torch.Tensor:
    """The scan's log Z, likelihood (B,) or marginals (B, L, K), or ``ValueError`` where its exp-space arithmetic
    visibly lost the scores' range: finite scores (no banned tag or transition) and yet a log Z that is not finite,
    or marginals that do not sum to 1 at a real position. Checked only for the scan asked for by name ("auto" has
    checked the spread before choosing it: ``SCAN_MAX_SPREAD``) and where the values may be read (a CPU in eager
    mode)."""
    if backend != "scan" or not reads_values(result):
        return result
    with torch.no_grad():
        scores = (emissions, transitions, start, end)
        if not all(torch.isfinite(t).all() for t in scores):
            return result  # -inf bans a path: a log Z of -inf or a row of zero marginals may be right
        if op == "marginals":
            real = torch.ones(result.shape[:2], dtype=torch.bool) if mask is None else mask.bool().cpu()
            lost = ((result.sum(-1) - 1).abs() > 1e-3) & real  # (B, L)
        else:
            lost = ~torch.isfinite(result)
        if bool(lost.any()):
            spread_emissions, spread_parameters = _spreads(emissions, transitions, start, end)
            raise ValueError(
                f"crf_{op}: backend='scan' computes sums of exponentials in exp space and lost these scores' range "
                f"(emissions spanning {spread_emissions:.4g} nats, transitions, start and end "
                f"{spread_parameters:.4g}; exact up to about {SCAN_MAX_SPREAD['emissions']:g} and "
                f"{SCAN_MAX_SPREAD['parameters']:g}): use backend='reference' or 'auto', which takes the reference for "
                "such scores"
            )
    return result


def _backend(op: str, backend: str, emissions, transitions, start, end) -> str:
    """``"reference"``, ``"scan"`` or ``"triton"`` for ``op`` (see the module docstring)."""
    if backend == "scan":
        return "scan"
    if backend not in BACKENDS:
        raise ValueError(f"crf_{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(emissions, torch.Tensor) or emissions.dim() != 3:
        return "reference" if backend == "auto" else backend  # its input checks name what is wrong
    has_triton = triton_crf is not None
    limit = triton_limit(f"crf_{op}", emissions, transitions, start, end) if has_triton else None
    chosen = resolve_backend(backend, emissions, op=f"crf_{op}", has_triton=has_triton, limit=limit)
    # the scan only where the scores' values may be read (on a CPU, in eager mode): whether it is exact depends on them
    if backend == "auto" and chosen == "reference" and reads_values(emissions) and emissions.is_floating_point():
        # scores on another device (or not tensors) go to the reference, whose input checks name what is wrong
        tensors = (transitions, start, end)
        if not all(isinstance(t, torch.Tensor) and t.device == emissions.device for t in tensors):
            return chosen
        B, _, K = emissions.shape
        work = SCAN_MAX_WORK.get(op)
        small = K <= SCAN_MAX_TAGS[op] and (work is None or B * K**3 <= work[torch.get_num_threads() > 1])
        if small and (op not in LOG_SEMIRING or _scan_is_exact(emissions, *tensors)):
            return "scan"
    return chosen


def crf_log_partition(emissions, mask, transitions, start, end, *, backend: str = "auto") -> torch.Tensor:
    """log Z of each row (B,); differentiable w.r.t. emissions, transitions, start and end."""
    chosen = _backend("log_partition", backend, emissions, transitions, start, end)
    if chosen == "triton":
        check_inputs("crf_log_partition", emissions, mask, transitions, start, end)
        return triton_crf.log_partition_triton(emissions, mask, transitions, start, end)
    if chosen == "scan":
        log_z = scan.log_partition(emissions, mask, transitions, start, end)  # (B,)
        return _checked_scan("log_partition", backend, log_z, emissions, mask, transitions, start, end)
    return reference.log_partition(emissions, mask, transitions, start, end)


def crf_log_likelihood(emissions, mask, transitions, start, end, tags, *, backend: str = "auto") -> torch.Tensor:
    """log p(tags | emissions) of each row (B,); a -100 tag at a real position is marginalised; differentiable."""
    chosen = _backend("log_partition", backend, emissions, transitions, start, end)
    if chosen == "scan":
        likelihood = scan.log_likelihood(emissions, mask, transitions, start, end, tags)  # (B,)
        return _checked_scan("log_likelihood", backend, likelihood, emissions, mask, transitions, start, end)
    if chosen == "reference":
        return reference.log_likelihood(emissions, mask, transitions, start, end, tags)
    check_inputs("crf_log_likelihood", emissions, mask, transitions, start, end, tags=tags)
    B, L, _ = emissions.shape
    keep = torch.ones(B, L, dtype=torch.bool, device=emissions.device) if mask is None else mask.bool()
    restricted = reference.restrict_emissions(emissions, keep, tags)  # (B, L, K), -inf off the gold tags
    both = triton_crf.log_partition_triton(  # numerator and denominator in one launch
        torch.cat([restricted, emissions]), keep.repeat(2, 1), transitions, start, end
    )
    return reference.likelihood_from_partitions(both[:B], both[B:])


def crf_viterbi(emissions, mask, transitions, start, end, *, backend: str = "auto"):
    """(tags (B, L) int64 with -100 at padding, scores (B,)): the best path of each row, lowest-index ties."""
    chosen = _backend("viterbi", backend, emissions, transitions, start, end)
    if chosen == "triton":
        check_inputs("crf_viterbi", emissions, mask, transitions, start, end)
        return triton_crf.viterbi_triton(emissions, mask, transitions, start, end)
    return (scan if chosen == "scan" else reference).viterbi(emissions, mask, transitions, start, end)


def crf_nbest(emissions, mask, transitions, start, end, k: int, *, backend: str = "auto"):
    """(tags (B, k, L), scores (B, k)): the k best paths of each row, best first; missing paths are all -100 with
    score -inf. Runs on the reference backend whatever ``backend`` says (after checking that it is a known one)."""
    if backend not in BACKENDS:
        raise ValueError(f"crf_nbest: backend must be one of {BACKENDS}, got {backend!r}")
    return reference.nbest(emissions, mask, transitions, start, end, k)


def _wants_gradient(*tensors) -> bool:
    """Whether autograd would record an op on ``tensors``: grad mode is on and one of them requires grad."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def crf_marginals(emissions, mask, transitions, start, end, *, backend: str = "auto") -> torch.Tensor:
    """Posterior tag probabilities p(y_t = k) (B, L, K), 0 at padding.

    Differentiable on the reference backend (autograd through its forward-backward); the scan and Triton backends
    compute them without a graph. So where a gradient is wanted (grad mode on and an input that requires grad),
    "auto" takes the reference whatever the device, the sizes and ``BIZOO_KERNEL_BACKEND`` say: its result is the
    reference's, gradient included, never a silently detached tensor. An explicit ``backend="scan"`` or
    ``"triton"`` gives the values without a gradient.
    """
    chosen = _backend("marginals", backend, emissions, transitions, start, end)
    if backend == "auto" and _wants_gradient(emissions, transitions, start, end):
        chosen = "reference"
    if chosen == "triton":
        check_inputs("crf_marginals", emissions, mask, transitions, start, end)
        return triton_crf.marginals_triton(emissions, mask, transitions, start, end)
    if chosen == "scan":
        marginals = scan.marginals(emissions, mask, transitions, start, end)  # (B, L, K)
        return _checked_scan("marginals", backend, marginals, emissions, mask, transitions, start, end)
    return reference.marginals(emissions, mask, transitions, start, end)


def crf_max_marginals(emissions, mask, transitions, start, end, *, backend: str = "auto") -> torch.Tensor:
    """Max-marginals (B, L, K): the best score of a path through tag k at position t; 0 at padding;
    ``argmax(-1)`` is the Viterbi path at every real position."""
    chosen = _backend("max_marginals", backend, emissions, transitions, start, end)
    if chosen == "triton":
        check_inputs("crf_max_marginals", emissions, mask, transitions, start, end)
        return triton_crf.max_marginals_triton(emissions, mask, transitions, start, end)
    return (scan if chosen == "scan" else reference).max_marginals(emissions, mask, transitions, start, end)
