"""`bizoo bench bigs`: BiGS's bidirectional SSM op, forward and forward+backward, time, peak memory and agreement.

What it measures: ``bizoo.kernels.ssm.bidirectional_ssm`` (both directions, the two kernels computed by
``s4d_kernel`` inside every call) in each method of ``registry.BIGS`` (reference-fft, reference-toeplitz,
reference-recurrent from the SSM parameters with no kernels, reference-auto, triton), with gradients to the inputs
and every SSM parameter, at each length L (on a GPU B·L fixed, on a CPU B = 1), timed as harness.py times every op.

Against which baseline: ``fft-baseline``, the convolution as the original BiGS code runs it with ``torch.fft`` (rfft
of the input and of the kernel with n = 2L, their product, irfft, the first L values, + D u; the backward direction
flips the input, convolves and flips back), in fp32 as torch.fft runs under autocast. Each row gives the speed-up
over it (> 1: faster) and the max abs difference of the method's outputs from it in fp32 on the same inputs.

The floor: none is computed; the growth factors of time and memory from one length to the next are printed beside
those of B·L (what work linear in L grows by: the recurrence) and of B·L·log L (the FFT).
"""

from __future__ import annotations

import argparse
import logging
import math

from ..lib.command import report
from ..lib.machine import machine_name
from .harness import (
    L2_FLUSH_BYTES,
    add_device_arguments,
    add_fp32_products_argument,
    batch_for,
    check_positive,
    fp32_note,
    measure_op_case,
    op_settings,
    peak_memory_note,
    resolve_device,
    run_grid,
    short,
    triton_missing,
    unavailable_methods,
)
from .registry import BIGS
from .report import MODES, plot_times, table_head, write_json

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench bigs."""
    add_device_arguments(p)
    cuda, cpu = BIGS.defaults("cuda"), BIGS.defaults("cpu")
    p.add_argument("--lengths", type=int, nargs="+", default=None,
                   help=f"sequence lengths L (default on cuda: {' '.join(map(str, cuda['lengths']))}; on cpu: "
                        f"{' '.join(map(str, cpu['lengths']))})")
    p.add_argument("--tokens", type=int, default=None,
                   help=f"tokens per batch: B = tokens // L, at least 1 (default on cuda: {cuda['tokens']})")
    p.add_argument("--batch", type=int, default=None, help=f"a fixed batch size B (default on cpu: {cpu['batch']})")
    p.add_argument("--channels", type=int, default=1024,
                   help="channels H, the model's hidden size (default: %(default)s, BiGS-large)")
    p.add_argument("--state-size", type=int, default=64, help="SSM state size N (default: %(default)s, num_ssm)")
    p.add_argument("--chunk-size", type=int, default=128,
                   help="chunk length of the recurrent form (default: %(default)s)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="input dtype (default: bfloat16 on cuda, float32 on cpu)")
    add_fp32_products_argument(p)
    methods = list(BIGS.methods)
    p.add_argument("--methods", nargs="+", choices=methods, default=None, metavar="METHOD",
                   help=f"what to time, from {', '.join(methods)} (default on cuda: all; on cpu: all but "
                        "reference-toeplitz, with triton unavailable unless named); fft-baseline is always timed")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="fwd (no autograd) and/or fwdbwd (forward + backward) (default: both)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3 on cuda, 1 on cpu)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot time against length (log-log)")


# ----------------------------------------------------------------------------------------------------------------
# One case: the baseline, inputs, the call, agreement, its peak, whether it can run
# ----------------------------------------------------------------------------------------------------------------


def fft_baseline(u, k, d, reverse: bool = False):
    """One direction of the SSM as the original BiGS code computes it with torch.fft, in fp32 (as torch.fft runs
    under autocast): in the (B, H, L) layout, the rfft of the input and of the kernel zero-padded to n = 2L, their
    product, the irfft, its first L values, + D u. The backward direction flips the input in time, convolves it
    causally and flips the result back.

    Shape: u (B, L, H), k (L,), d (1,) -> (B, L, H) in u's dtype.
    """
    import torch

    L = u.shape[1]
    x = u.float().transpose(1, 2)  # (B, H, L)
    if reverse:
        x = x.flip(-1)
    k_f = torch.fft.rfft(k.float(), n=2 * L)  # (L + 1,)
    x_f = torch.fft.rfft(x, n=2 * L)  # (B, H, L + 1)
    y = torch.fft.irfft(x_f * k_f, n=2 * L)[..., :L] + d.float() * x  # (B, H, L)
    if reverse:
        y = y.flip(-1)
    return y.transpose(1, 2).to(u.dtype)  # (B, L, H)


def bigs_inputs(case: dict, device, dtype):
    """Both directions' inputs (B, L, H) in ``dtype``, their SSM parameters (log_step, A_re, A_im, C, D) in fp32 as
    BiGS initialises them (``s4d_init``, "hippo"; D = 1) and the output gradients. Seeded: the same in every run."""
    import torch

    from ...kernels.ssm import s4d_init

    B, L, H = case["batch"], case["length"], case["channels"]
    g = torch.Generator(device="cpu").manual_seed(0)
    u = tuple(torch.randn(B, L, H, generator=g).to(device, dtype) for _ in range(2))  # u_fwd, u_bwd (B, L, H)
    dout = tuple(torch.randn(B, L, H, generator=g).to(device, dtype) for _ in range(2))  # (B, L, H) each
    params = []
    for _ in range(2):  # forward, backward
        init = s4d_init(case["state_size"], "hippo", generator=g, device=device)
        params.append((init["log_step"], init["A_re"], init["A_im"], init["C"], torch.ones(1, device=device)))
    return u, tuple(params), dout


def ssm_function(method: str, u, params, chunk_size: int):
    """A function that runs both directions once with ``method`` and returns (y_fwd, y_bwd). The kernels come from
    ``s4d_kernel`` inside every call (the recurrent form reads the SSM parameters instead: no kernels)."""
    from ...kernels.ssm import bidirectional_ssm, s4d_kernel

    (u_fwd, u_bwd), (p_fwd, p_bwd) = u, params
    L = u_fwd.shape[1]

    def kernels():
        return s4d_kernel(*p_fwd[:4], L), s4d_kernel(*p_bwd[:4], L)  # (L,) each

    if method == "fft-baseline":
        def baseline():
            k_fwd, k_bwd = kernels()
            return fft_baseline(u_fwd, k_fwd, p_fwd[4]), fft_baseline(u_bwd, k_bwd, p_bwd[4], reverse=True)

        return baseline
    backend, form = BIGS.backend_form(method)
    if form == "recurrent":
        return lambda: bidirectional_ssm(u_fwd, u_bwd, None, None, p_fwd[4], p_bwd[4], form=form, backend=backend,
                                         recurrent_params=(p_fwd[:4], p_bwd[:4]), chunk_size=chunk_size)

    def op():
        k_fwd, k_bwd = kernels()
        return bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, p_fwd[4], p_bwd[4], form=form, backend=backend,
                                 chunk_size=chunk_size)

    return op


def ssm_agreement(fn, u, params) -> dict:
    """The max abs difference of ``fn``'s outputs (both directions) from the FFT baseline in fp32 on the same inputs,
    and the largest output of the baseline (the scale of the difference)."""
    import torch

    from ...kernels.ssm import s4d_kernel

    diff = scale = 0.0
    with torch.no_grad():
        outputs = fn()
        for y, x, p, reverse in zip(outputs, u, params, (False, True)):
            base = fft_baseline(x.float(), s4d_kernel(*p[:4], x.shape[1]), p[4], reverse)  # (B, L, H)
            diff = max(diff, (y.float() - base).abs().max().item())
            scale = max(scale, base.abs().max().item())
    return {"max_abs_diff": diff, "max_abs_output": scale}


def measure_case(case: dict, report) -> None:
    """``harness.measure_op_case`` for the SSM op: gradients to both inputs and every SSM parameter; agreement with
    the fp32 FFT baseline."""
    method = case["method"]

    def build(device, dtype):
        u, params, dout = bigs_inputs(case, device, dtype)
        fn = ssm_function(method, u, params, case["chunk_size"])
        leaves = [*u, *(t for p in params for t in p)]
        return fn, leaves, dout, lambda: ssm_agreement(fn, u, params)

    backend, form = BIGS.backend_form(method)
    measure_op_case(case, report, build, may_be_missing=backend == "triton" or form == "auto")


def runs_form(method: str, length: int) -> str:
    """The form ``method`` runs at ``length`` ("auto" of the reference backend resolved as the dispatcher does; the
    Triton kernel is a blocked Toeplitz product whatever the form)."""
    backend, form = BIGS.backend_form(method)
    if backend == "triton":
        return "toeplitz (fused)"
    if backend == "reference" and form == "auto":
        from ...kernels.ssm import REFERENCE_FFT_MIN_LENGTH

        return "fft" if length >= REFERENCE_FFT_MIN_LENGTH else "toeplitz"
    return form


def estimate_bytes(case: dict, mode: str) -> int:
    """A rough peak of a CPU case of bench bigs, fp32 inside: ~24 (B, L, H) buffers (the inputs, their transposed
    copies and spectra of n = 2L, for both directions), twice that with the backward pass; the reference Toeplitz
    form adds its (L, L) matrices, two per direction."""
    B, L, H = case["batch"], case["length"], case["channels"]
    factor = 2 if mode == "fwdbwd" else 1
    need = 24 * B * L * H * 4 * factor
    if BIGS.backend_form(case["method"])[0] == "reference" and runs_form(case["method"], L) == "toeplitz":
        need += 4 * L * L * 4 * factor
    return need


def probe(method: str, device: str, dtype: str) -> str | None:
    """None when ``method`` can run here, else why not (a tiny call; Triton on a CPU needs TRITON_INTERPRET=1). No
    tiny call of triton on a GPU: its kernels autotune per (H, L), so a tiny call would compile and time every
    configuration at a shape the benchmark never runs; a failure of the real call is its row's status
    (``harness.measure_modes``: "unavailable" for a ValueError)."""
    if method == "fft-baseline":
        return None
    if BIGS.backend_form(method)[0] == "triton":
        if (why := triton_missing(device)) is not None:
            return why
        if device == "cuda":
            return None
    import torch

    tiny = {"batch": 1, "length": 32, "channels": 16, "state_size": 4}
    u, params, _ = bigs_inputs(tiny, torch.device(device), getattr(torch, dtype))
    try:
        with torch.no_grad():
            ssm_function(method, u, params, 16)()
    except Exception as err:  # noqa: BLE001 - whatever stops the tiny call stops the real one
        return short(err)
    return None


# ----------------------------------------------------------------------------------------------------------------
# Growth with L
# ----------------------------------------------------------------------------------------------------------------


def growth_factors(rows: list[dict], modes) -> list[dict]:
    """Per method, from each measured length to the next: the factors by which the median time and the peak memory
    grow, beside those of B·L (what linear work grows by) and of B·L·log2 L (work ~ L log L)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        own = sorted((r for r in rows if r["method"] == method), key=lambda r: r["length"])
        for a, b in zip(own, own[1:]):
            if not any(f"{mode}_ms" in a and f"{mode}_ms" in b for mode in modes):
                continue
            tokens_a, tokens_b = a["batch"] * a["length"], b["batch"] * b["length"]
            entry = {"method": method, "from_length": a["length"], "to_length": b["length"],
                     "tokens_factor": tokens_b / tokens_a}
            if a["length"] > 1:
                entry["tokens_log_factor"] = tokens_b * math.log2(b["length"]) / (tokens_a * math.log2(a["length"]))
            for mode in modes:
                if f"{mode}_ms" in a and f"{mode}_ms" in b:
                    entry[f"{mode}_time_factor"] = b[f"{mode}_ms"] / a[f"{mode}_ms"]
                if a.get(f"{mode}_peak_mib", 0) > 0 and f"{mode}_peak_mib" in b:
                    entry[f"{mode}_memory_factor"] = b[f"{mode}_peak_mib"] / a[f"{mode}_peak_mib"]
            out.append(entry)
    return out


def _print_growth(entries: list[dict], modes) -> None:
    report("\ngrowth from one length to the next (quotients; B·L x and B·L·log L x: what work linear in L and work "
          "~ L log L grow by)")
    cells = [f"{'method':<20}", f"{'L -> L':>14}", f"{'B·L x':>7}", f"{'B·L·log L x':>12}"]
    cells += [f"{MODES[m] + ' ms x':>13}" for m in modes] + [f"{MODES[m] + ' MiB x':>14}" for m in modes]
    head = " ".join(cells)
    report(head + "\n" + "-" * len(head))
    for e in entries:
        def num(key, width):
            return f"{e[key]:>{width}.2f}" if key in e else f"{'-':>{width}}"

        cells = [f"{e['method']:<20}", f"{str(e['from_length']) + ' -> ' + str(e['to_length']):>14}",
                 num("tokens_factor", 7), num("tokens_log_factor", 12)]
        cells += [num(f"{m}_time_factor", 13) for m in modes] + [num(f"{m}_memory_factor", 14) for m in modes]
        report(" ".join(cells))


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def run(args) -> int:
    device = resolve_device(args)
    cuda = device == "cuda"
    defaults = BIGS.defaults(device)
    lengths = args.lengths or defaults["lengths"]
    check_positive(lengths=lengths, tokens=args.tokens, batch=args.batch, channels=args.channels,
                   state_size=args.state_size, chunk_size=args.chunk_size, repeats=args.repeats)
    if args.tokens and args.batch:
        raise ValueError(f"--tokens ({args.tokens}) and --batch ({args.batch}) exclude each other: B = tokens // L, "
                         "or B fixed")
    # The device's default: B·L fixed (a GPU) or B fixed (a CPU), unless --tokens or --batch says which.
    tokens = args.tokens or (defaults.get("tokens") if not args.batch else None)
    batch = args.batch or (None if tokens else defaults.get("batch", 1))
    settings = op_settings(args, device)
    methods = BIGS.chosen(args.methods, device)
    modes = [m for m in MODES if m in args.modes]
    unavailable = unavailable_methods(methods, args.methods, device, settings["dtype"], probe)
    interpreted = device == "cpu" and "triton" in methods and "triton" not in unavailable
    from ...kernels.ssm import REFERENCE_FFT_MIN_LENGTH

    shapes = f"B = {batch} (fixed)" if batch else f"B·L = {tokens} tokens (B = tokens // L)"
    report("BiGS bidirectional SSM op (both directions, kernels from s4d_kernel in every call) vs the torch.fft "
          "baseline of the original code, forward and forward+backward")
    report(f"machine: {machine_name(device)}")
    report(f"dtype: {settings['dtype']} inputs{fp32_note(settings)}, fp32 SSM parameters; shapes: {shapes}, "
          f"H = {args.channels} channels, "
          f"N = {args.state_size}, no padding\nreference-recurrent: from the SSM parameters (no kernels), chunks of "
          f"{args.chunk_size}; reference-auto: toeplitz below L = {REFERENCE_FFT_MIN_LENGTH}, fft from it")
    report("peak memory: " + peak_memory_note(cuda)
          + ("\nnote: triton on a CPU runs in Triton's interpreter: its times mean nothing" if interpreted else ""))
    report(f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)")
    report("base/x: speed-up = fft-baseline ms / method ms, > 1 is faster than the baseline; max|diff|: the largest "
          "difference of the outputs from the fp32 fft baseline on the same inputs")
    report(table_head(modes, BIGS.ratios, BIGS.extra, BIGS.shape))
    meta = {"op": "bigs", "machine": machine_name(device), "device": device, **settings, "tokens": tokens,
            "batch": batch, "channels": args.channels, "state_size": args.state_size, "chunk_size": args.chunk_size,
            "reference_fft_min_length": REFERENCE_FFT_MIN_LENGTH, "modes": modes, "methods": methods,
            "l2_flush_bytes": L2_FLUSH_BYTES if cuda else 0}

    def describe(method, length, batch_size):
        backend, form = BIGS.backend_form(method)
        row = {"method": method, "backend": backend, "form": form, "runs_form": runs_form(method, length),
               "length": length, "batch": batch_size, "channels": args.channels, "state_size": args.state_size,
               "dtype": settings["dtype"], "device": device}
        return row, {**row, "op": BIGS.name, **settings, "modes": modes, "chunk_size": args.chunk_size,
                     "threads": args.threads}

    grid = [(length, batch_for(length, tokens or 1, batch)) for length in lengths]
    rows = run_grid(grid, methods, describe, unavailable, modes, BIGS.ratios, BIGS.extra, args.json, meta,
                    BIGS.shape)
    growth = growth_factors(rows, modes)
    if len(lengths) > 1:
        _print_growth(growth, modes)
    write_json(args.json, {**meta, "rows": rows, "growth": growth})
    if args.plot:
        try:
            plot_times(rows, modes, args.plot, f"BiGS SSM op vs torch.fft, {meta['machine']}\n{settings['dtype']}, "
                       f"H={args.channels} N={args.state_size}, median of {settings['repeats']}",
                       xlabel="sequence length L " + ("(B fixed)" if batch else "(B·L fixed)"))
        except ImportError as err:  # the table and the JSON are the results; the plot is a view of them
            logger.warning(f"no plot: {short(err)}")
    return 0
