"""`bizoo bench lion`: the LION attention op, forward and forward+backward, time and peak memory.

What it measures: ``bizoo.kernels.lion.lion_attention`` (attention_mask=None) in each method of ``registry.LION``
(the backends and forms: reference-attention, the O(L²) form; reference-chunk/-rnn/-auto; triton-chunk,
triton-parallel (the tiled form="attention" schedule), triton-auto) at each length L with B·L tokens fixed, and
fla-core's causal chunk kernel ``chunk_simple_gla`` on the same shapes (``fla-causal``, one direction: a yardstick;
its inputs are transposed to (B, L, H, D) once, outside the timed runs, and it runs after the other methods at every
length: its first call compiles for minutes).

Against which baseline: PyTorch's softmax attention on the same shapes (``sdpa``: FlashAttention on a GPU where the
dtype allows, PyTorch's default choice otherwise) and the reference chunk form; each row's speed-up is the
baseline's ms / the method's ms (> 1: faster than the baseline).

The floor: the op's minimal memory traffic (``lion_traffic_bytes``: every input read once, every output written
once) at the GPU's HBM peak (--hbm-gbs, or a device-to-device copy measured once per run). Each row gives the
achieved GB/s, that as a percentage of the peak, and the floor in ms: no kernel of this op is faster. On a CPU
there is no peak and those columns show '-'.

Methods that cannot run here (Triton without a GPU, form "auto" before the dispatcher knows it, a kernel or package
that does not import) are rows with an "unavailable" status. The timing itself: harness.py.
"""

from __future__ import annotations

import argparse
import logging
import statistics

from ..lib.command import report
from ..lib.machine import machine_name
from .harness import (
    L2_FLUSH_BYTES,
    add_device_arguments,
    add_fp32_products_argument,
    add_ratios,
    batch_for,
    check_positive,
    fp32_note,
    measure_modes,
    op_settings,
    peak_memory_note,
    release_cuda_memory,
    resolve_device,
    run_grid,
    short,
    time_runs,
    triton_missing,
)
from .registry import LION
from .report import MODES, plot_times, table_head

logger = logging.getLogger(__name__)

# The backends whose kernels are Triton's (on a CPU only in its interpreter).
TRITON_BACKENDS = ("triton", "fla")
# The crossover constant of `bizoo.kernels.lion` that form="auto" of each backend reads (bench lion-crossover).
CROSSOVER_CONSTANTS = {"triton": "TRITON_CHUNK_MIN_LENGTH", "reference": "REFERENCE_CHUNK_MIN_LENGTH"}
DECAY_BYTES = 4  # log_decay is fp32 whatever the dtype of q, k, v


def add_op_arguments(p: argparse.ArgumentParser, lengths: list[int], repeats_help: str) -> None:
    """The options of a LION op benchmark (bench lion, bench lion-crossover): device, shapes, dtype, runs."""
    add_device_arguments(p)
    p.add_argument("--lengths", type=int, nargs="+", default=lengths, help="sequence lengths L (default: %(default)s)")
    p.add_argument("--tokens", type=int, default=LION.grid["tokens"],
                   help="tokens per batch: B = tokens // L, at least 1 (default: %(default)s)")
    p.add_argument("--batch", type=int, default=None, help="a fixed batch size B instead of tokens // L")
    p.add_argument("--heads", type=int, default=12, help="heads H (default: %(default)s)")
    p.add_argument("--head-dim", type=int, default=64, help="head size D (default: %(default)s)")
    p.add_argument("--decay", choices=["lit", "d", "s"], default="s", help="LION decay type (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunk forms (default: %(default)s)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="input dtype (default: bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--repeats", type=int, default=None, help=repeats_help)
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3 on cuda, 1 on cpu)")
    add_fp32_products_argument(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench lion."""
    add_op_arguments(p, LION.grid["lengths"], "timed runs per case (default: 10 on cuda, 3 on cpu)")
    methods = list(LION.methods)
    p.add_argument("--methods", nargs="+", choices=methods, default=None, metavar="METHOD",
                   help=f"what to time, from {', '.join(methods)} (default on cuda: "
                        f"{', '.join(LION.default_methods['cuda'])}; on cpu: {', '.join(LION.default_methods['cpu'])})")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="fwd (no autograd) and/or fwdbwd (forward + backward) (default: both)")
    p.add_argument("--hbm-gbs", type=float, default=None, metavar="GB/S",
                   help="the memory bandwidth peak in GB/s (10⁹ bytes/s) for the %%HBM and floor columns (default on "
                        "cuda: measured once as a device-to-device copy; on cpu: none, the columns show '-')")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot time against length (log-log)")


def lion_constant(name: str):
    """The current value of a crossover constant of ``bizoo.kernels.lion`` (None when it does not exist)."""
    from ...kernels import lion

    return getattr(lion, name, None)


def triton_tuning() -> tuple[bool, str]:
    """Whether the bizoo Triton kernels autotune in this process (``triton_utils.AUTOTUNE``: off with
    BIZOO_TRITON_AUTOTUNE=0), and the note a table of their timings states."""
    from ...kernels.triton_utils import AUTOTUNE as autotune

    return autotune, "autotuned" if autotune else "each kernel's first configuration (BIZOO_TRITON_AUTOTUNE=0)"


def header(title: str, device: str, settings: dict, args, extra: str = "") -> str:
    """The lines above a LION op table: the title, the machine, dtype and shapes, the runs."""
    shapes = (
        f"B = {args.batch}" if args.batch else f"B·L = {args.tokens} tokens (B = tokens // L)"
    ) + f", H = {args.heads}, D = {args.head_dim}, decay {args.decay}, chunk size {args.chunk_size}"
    return (
        f"{title}\nmachine: {machine_name(device)}\ndtype: {settings['dtype']}{fp32_note(settings)}; shapes: "
        f"{shapes}{extra}\n"
        f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)"
    )


# ----------------------------------------------------------------------------------------------------------------
# One case: inputs, the call, its peak, whether it can run
# ----------------------------------------------------------------------------------------------------------------


def _inputs(case: dict, device, dtype):
    """q, k (positive, as after a feature map), v, log_decay (per --decay) and an output gradient."""
    import torch

    B, H, L, D = case["batch"], case["heads"], case["length"], case["head_dim"]
    g = torch.Generator(device="cpu").manual_seed(0)
    q = (torch.rand(B, H, L, D, generator=g) + 0.1).to(device, dtype)  # (B, H, L, D)
    k = (torch.rand(B, H, L, D, generator=g) + 0.1).to(device, dtype)  # (B, H, L, D)
    v = torch.randn(B, H, L, D, generator=g).to(device, dtype)  # (B, H, L, D)
    dout = torch.randn(B, H, L, D, generator=g).to(device, dtype)  # (B, H, L, D)
    log_decay = None
    if case["method"] != "sdpa":
        log_decay = {
            "lit": None,
            "d": -torch.rand(H, generator=g) * 0.1,  # (H,)
            "s": -torch.rand(B, H, L, generator=g) * 0.1,  # (B, H, L)
        }[case["decay"]]
        log_decay = log_decay.to(device) if log_decay is not None else None
    return q, k, v, log_decay, dout


def fla_inputs(q, k, v, log_decay, dout):
    """The inputs of a (B, H, L, D) case in fla-core's layout: q, k, v and dout (B, L, H, D) contiguous, and the
    gate g (B, L, H) fp32 (log λ of each head and position: the (B, H, L) decay of 's' transposed, the (H,) decay of
    'd' broadcast to every position; None for 'lit'). Done once per case, outside the timed runs."""
    import torch

    B, H, L, _ = q.shape
    q, k, v, dout = (t.transpose(1, 2).contiguous() for t in (q, k, v, dout))  # (B, L, H, D) each
    g = None
    if log_decay is not None and log_decay.dim() == 1:  # (H,)
        g = log_decay.to(torch.float32).expand(B, L, H).contiguous()  # (B, L, H)
    elif log_decay is not None:  # (B, H, L)
        g = log_decay.to(torch.float32).transpose(1, 2).contiguous()  # (B, L, H)
    return q, k, v, g, dout


def _fla_function():
    """fla-core's causal chunk kernel, ``chunk_simple_gla``; ImportError where fla-core does not import."""
    from fla.ops.simple_gla import chunk_simple_gla

    return chunk_simple_gla


def fla_backward_refusal() -> str | None:
    """Why fla-core would refuse the backward of a gated chunk_simple_gla (g given: decays s and d) here, else None.
    fla-core 0.6 raises for Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs without tilelang (wrong gradients from its
    chunk_bwd_dqkwg, its issue #640), after compiling and autotuning the backward kernels before that one (over a
    minute on an H200): the same test, made first, saves that time. None where fla-core's flags are not there."""
    import importlib.util

    try:
        import triton
        from fla.utils import IS_NVIDIA_HOPPER, TRITON_ABOVE_3_4_0, TRITON_ABOVE_3_7_1
    except ImportError:
        return None
    refused = IS_NVIDIA_HOPPER and TRITON_ABOVE_3_4_0 and not TRITON_ABOVE_3_7_1
    if refused and importlib.util.find_spec("tilelang") is None:
        return (f"fla-core refuses the gated backward on a Hopper GPU with Triton {triton.__version__} (>= 3.4.0, "
                "< 3.7.1: wrong gradients, fla issue #640; Triton >= 3.7.1 or tilelang lift it)")
    return None


def _op_function(case: dict, q, k, v, log_decay):
    """A function that runs the case's method once and returns its output; and a note (the SDPA backend). The
    inputs of fla-causal are in its layout already (``fla_inputs``): its function returns o (B, L, H, D)."""
    import torch

    if case["method"] == "sdpa":
        sdpa = torch.nn.functional.scaled_dot_product_attention
        if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def flash():
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return sdpa(q, k, v)

            return flash, "flash"
        return (lambda: sdpa(q, k, v)), "default"

    backend, form = LION.backend_form(case["method"])
    if backend == "fla":
        chunk_simple_gla = _fla_function()

        def fla():  # no scaling of q kᵀ, as LION; fla's default chunk of 64; o and the final state (None)
            return chunk_simple_gla(q, k, v, g=log_decay, scale=1.0)[0]

        return fla, None

    from ...kernels.lion import lion_attention

    def lion():
        return lion_attention(q, k, v, log_decay, None, form=form, chunk_size=case["chunk_size"], normalize=True,
                              backend=backend)

    return lion, None


def measure_case(case: dict, report) -> None:
    """Measure ``case`` (one method at one length) in each of ``case["modes"]``; ``report(mode, result)`` each
    (``harness.measure_modes``); on a GPU the L2 cache is flushed before each timed run, and a case FlashAttention
    refuses falls back to PyTorch's default SDPA (its row says so)."""
    import torch

    device = torch.device(case["device"])
    cuda = device.type == "cuda"
    dtype = getattr(torch, case["dtype"])
    backend, form = LION.backend_form(case["method"])
    may_be_missing = backend in TRITON_BACKENDS or form == "auto"
    try:
        q, k, v, log_decay, dout = _inputs(case, device, dtype)
        if backend == "fla":
            q, k, v, log_decay, dout = fla_inputs(q, k, v, log_decay, dout)
    except torch.OutOfMemoryError:
        for mode in case["modes"]:
            report(mode, {"status": "oom"})
        return
    if backend == "fla" and log_decay is not None and "fwdbwd" in case["modes"]:
        if (why := fla_backward_refusal()) is not None:
            report("fwdbwd", {"status": f"unavailable: {why}"})
            case = {**case, "modes": [m for m in case["modes"] if m != "fwdbwd"]}
    fn, note = _op_function(case, q, k, v, log_decay)
    state = {"fn": fn, "note": note}
    leaves = [q, k, v] + ([log_decay] if log_decay is not None else [])

    def runs(backward):
        return time_runs(state["fn"], leaves, backward, dout, case["warmup"], case["repeats"], cuda, flush_l2=cuda)

    def timed(backward):
        try:
            return runs(backward)
        except RuntimeError as err:
            if state["note"] != "flash" or isinstance(err, torch.OutOfMemoryError):
                raise
            # FlashAttention refused these shapes: PyTorch's default SDPA choice instead.
            state["note"] = f"default (flash refused: {short(err, 60)})"
            state["fn"] = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return runs(backward)

    def report_backend(mode, result):
        if state["note"] is not None:
            result["sdpa_backend"] = state["note"]
        report(mode, result)

    measure_modes(case, report_backend, leaves, timed, may_be_missing, cuda)


def estimate_bytes(case: dict, mode: str) -> int:
    """A rough peak of a CPU case, fp32 inside: the O(L²) attention form holds ~3 (B, H, L, L) buffers at once
    (measured: 2.3 GiB at B=1, H=12, L=4096), twice that with the backward pass; every other method is O(L)."""
    B, H, L, D = case["batch"], case["heads"], case["length"], case["head_dim"]
    factor = 2 if mode == "fwdbwd" else 1
    if case["method"] == "sdpa":
        return 16 * B * H * L * D * 4 * factor
    backend, form = LION.backend_form(case["method"])
    if form == "auto":
        crossover = lion_constant(CROSSOVER_CONSTANTS[backend])
        form = "chunk" if crossover is None or L >= crossover else "attention"
    if form == "attention" and backend == "reference":
        return 3 * B * H * L * L * 4 * factor
    per_token = 16 if backend in TRITON_BACKENDS else 40
    return per_token * B * H * L * D * 4 * factor


def probe(method: str, device: str, dtype: str) -> str | None:
    """None when ``method`` can run here, else why not (a tiny call; Triton on a CPU needs TRITON_INTERPRET=1).
    fla-causal, outside ``lion_attention``, first needs fla-core's ``chunk_simple_gla`` to import (the reason names
    the import error), and makes no tiny call; nor do the triton-* methods on a GPU, where the tiny call would compile
    (and autotune) their kernels at shapes the benchmark never runs: a failure of the real call is the row's status
    (``harness.measure_modes``: "unavailable" for a ValueError of a Triton method)."""
    if method == "sdpa":
        return None
    backend, form = LION.backend_form(method)
    if backend == "fla":
        try:
            _fla_function()
        except Exception as err:  # noqa: BLE001 - ImportError, or whatever else stops the import
            return f"fla-core (fla.ops.simple_gla) does not import: {short(err)}"
    if backend in TRITON_BACKENDS and (why := triton_missing(device)) is not None:
        return why
    if backend == "fla" or (backend == "triton" and device == "cuda"):
        # No tiny call: the kernels take the sizes as compile-time constants (and autotune per shape), so a tiny call
        # would compile every kernel once more, seconds to tens of seconds; a failure of the real call is its row's
        # status.
        return None
    import torch

    from ...kernels.lion import lion_attention

    x = torch.rand(1, 1, 32, 16, device=device).to(getattr(torch, dtype)) + 0.1  # (B, H, L, D)
    try:
        with torch.no_grad():
            lion_attention(x, x, x, None, form=form, chunk_size=16, backend=backend)
    except Exception as err:  # noqa: BLE001 - whatever stops the tiny call stops the real one
        return short(err)
    return None


# ----------------------------------------------------------------------------------------------------------------
# The floor: the op's minimal memory traffic at the HBM peak
# ----------------------------------------------------------------------------------------------------------------


def lion_traffic_bytes(row: dict, mode: str) -> int:
    """The op's minimal memory traffic in bytes at ``row``'s shapes (batch B, heads H, length L, head_dim D,
    dtype, decay, method): every tensor the op takes read once and every tensor it returns written once, the memory
    floor of a kernel that keeps everything else on chip. With N = B·H·L, e the element size of the dtype (2 for
    bf16) and Dk = Dv = D:

        fwd:      read q, k, v, write o                                     e·N·(2·Dk + 2·Dv)    = 4·e·N·D
        fwd+bwd:  the forward, then read q, k, v, o, dO, write dq, dk, dv   e·N·(6·Dk + 6·Dv)    = 12·e·N·D

    plus the decay in fp32 (4 bytes a value; N values for decay 's', H for 'd', none for 'lit'): read once by the
    forward; by forward+backward read twice (the backward reads it again) and its gradient written once, 3 times
    its size. SDPA (method "sdpa") has no decay. For example B = 1, H = 2, L = 4, D = 8 in bf16 with decay 's'
    (N = 8): fwd 4·2·8·8 + 4·8 = 544 bytes, fwd+bwd 12·2·8·8 + 3·4·8 = 1632 bytes."""
    B, H, L, D = row["batch"], row["heads"], row["length"], row["head_dim"]
    e = {"float32": 4, "bfloat16": 2, "float16": 2}[row["dtype"]]
    n = B * H * L
    decay = 0 if row["method"] == "sdpa" else {"lit": 0, "d": H, "s": n}[row["decay"]]
    if mode == "fwd":
        return e * n * 4 * D + DECAY_BYTES * decay
    if mode == "fwdbwd":
        return e * n * 12 * D + 3 * DECAY_BYTES * decay
    raise ValueError(f"lion_traffic_bytes: mode must be one of {list(MODES)}, got {mode!r}")


def add_bandwidth(row: dict, modes, peak_gbs: float | None) -> None:
    """Per mode: <mode>_bytes (``lion_traffic_bytes``); <mode>_gbs, the achieved bandwidth, bytes / median time in
    GB/s (10⁹ bytes/s); with a peak bandwidth ``peak_gbs``: <mode>_floor_ms = bytes / peak (the time of the traffic
    at the peak, in ms: no kernel of this op is faster) and <mode>_hbm_pct = 100 · GB/s / peak."""
    for mode in modes:
        nbytes = lion_traffic_bytes(row, mode)
        row[f"{mode}_bytes"] = nbytes
        if peak_gbs:
            row[f"{mode}_floor_ms"] = nbytes / (peak_gbs * 1e9) * 1e3
        if f"{mode}_ms" in row:
            row[f"{mode}_gbs"] = nbytes / (row[f"{mode}_ms"] * 1e-3) / 1e9
            if peak_gbs:
                row[f"{mode}_hbm_pct"] = 100 * row[f"{mode}_gbs"] / peak_gbs


def bandwidth_columns(modes) -> tuple:
    """The extra (key, label, width, format) columns of bench lion: GB/s, %HBM, floor ms, each per mode."""
    return (
        *((f"{m}_gbs", f"{MODES[m]} GB/s", 12, ".1f") for m in modes),
        *((f"{m}_hbm_pct", f"{MODES[m]} %HBM", 12, ".0f") for m in modes),
        *((f"{m}_floor_ms", f"{MODES[m]} floor", 13, ".3f") for m in modes),
    )


def measure_hbm_gbs(nbytes: int = 2**30, repeats: int = 10) -> float:
    """The memory bandwidth this GPU reaches, in GB/s (10⁹ bytes/s): a device-to-device copy of ``nbytes`` reads
    and writes 2·nbytes; over the median time (CUDA events) of ``repeats`` copies after 2 warm-up copies."""
    import torch

    src = torch.ones(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del src, dst
    release_cuda_memory()
    return 2 * nbytes / (statistics.median(times) * 1e-3) / 1e9


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def run(args) -> int:
    device = resolve_device(args)
    check_positive(lengths=args.lengths, tokens=args.tokens, batch=args.batch, heads=args.heads,
                   head_dim=args.head_dim, chunk_size=args.chunk_size, repeats=args.repeats)
    if args.hbm_gbs is not None and not args.hbm_gbs > 0:
        raise ValueError(f"--hbm-gbs must be a bandwidth > 0 in GB/s, got {args.hbm_gbs}")
    settings = op_settings(args, device)
    methods = LION.chosen(args.methods, device)  # the baselines first
    ratios = LION.ratios
    modes = [m for m in MODES if m in args.modes]
    unavailable = {m: why for m in methods if (why := probe(m, device, settings["dtype"])) is not None}
    interpreted = device == "cpu" and any(LION.backend_form(m)[0] in TRITON_BACKENDS for m in methods)
    autotune, tuning = triton_tuning()  # the table says which
    tuned = any(LION.backend_form(m)[0] == "triton" for m in methods) and device == "cuda"
    sdpa_note = "FlashAttention" if device == "cuda" and settings["dtype"] != "float32" else "PyTorch's default choice"
    if args.hbm_gbs is not None:
        peak, peak_source = args.hbm_gbs, "--hbm-gbs"
    elif device == "cuda":
        try:
            peak = measure_hbm_gbs()
            peak_source = "measured: a device-to-device copy of 1 GiB, bytes read + written / median time of 10"
        except RuntimeError as err:  # out of memory: the table without the peak's columns
            peak, peak_source = None, f"the copy that measures it failed: {short(err)}"
            release_cuda_memory()
    else:
        peak, peak_source = None, "none on a CPU (give --hbm-gbs): the %HBM and floor columns show '-'"
    report(header(
        "LION attention op vs SDPA softmax attention (same shapes), forward and forward+backward",
        device, settings, args,
        f"\nSDPA backend: {sdpa_note}; peak memory: {peak_memory_note(device == 'cuda')}"
        + ("\nnote: triton-* and fla-* on a CPU run in Triton's interpreter: their times mean nothing"
           if interpreted else "")
        + (f"\ntriton-*: {tuning}" if tuned else ""),
    ))
    report("sdpa/x, chunk/x: speed-up = SDPA (reference-chunk) ms / method ms, > 1 is faster than the baseline")
    report("GB/s: the op's minimal memory traffic (q, k, v, o; + o, dO, dq, dk, dv in fwd+bwd; + the decay and its "
          "gradient) / median time; %HBM: of the peak; floor: that traffic at the peak, ms")
    report(f"HBM peak used: {f'{peak:.0f} GB/s' if peak else '-'} ({peak_source})")
    extra = bandwidth_columns(modes)
    report(table_head(modes, ratios, extra, LION.shape))
    meta = {
        "op": "lion", "machine": machine_name(device), "device": device, **settings, "tokens": args.tokens,
        "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay, "chunk_size": args.chunk_size,
        "modes": modes, "methods": methods, "hbm_gbs": peak, "hbm_gbs_source": peak_source,
        "l2_flush_bytes": L2_FLUSH_BYTES if device == "cuda" else 0, "triton_autotune": autotune,
        "traffic": "lion_traffic_bytes: fwd reads q, k, v and writes o; fwd+bwd adds reading q, k, v, o, dO and "
                   "writing dq, dk, dv; the fp32 decay read once (fwd) or twice plus its gradient (fwd+bwd)",
    }

    def describe(method, length, batch):
        backend, form = LION.backend_form(method)
        row = {
            "method": method, "backend": backend, "form": form, "length": length, "batch": batch,
            "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay, "dtype": settings["dtype"],
            "device": device,
        }
        return row, {**row, "op": LION.name, **settings, "modes": modes, "chunk_size": args.chunk_size,
                     "threads": args.threads}

    grid = [(length, batch_for(length, args.tokens, args.batch)) for length in args.lengths]
    # The methods whose first call compiles for minutes (fla-causal) run after the others at every length, so that
    # a run stopped by a time limit has the others' rows; their rows get the ratios to the rows measured before.
    later = [m for m in methods if m in LION.deferred and m not in unavailable and len(methods) > 1]
    rows = run_grid(grid, [m for m in methods if m not in later], describe, unavailable, modes, ratios, extra,
                    args.json, meta, LION.shape, derive=lambda row: add_bandwidth(row, modes, peak))
    if later:
        logger.info(f"{', '.join(later)}: after the other methods (the first call compiles for minutes)")

        def derive(row):
            add_bandwidth(row, modes, peak)
            add_ratios([r for r in rows if r["length"] == row["length"]] + [row], modes, ratios)

        rows += run_grid(grid, later, describe, unavailable, modes, ratios, extra, args.json, meta, LION.shape,
                         prior_rows=rows, derive=derive)
    if args.plot:
        try:
            plot_times(rows, modes, args.plot, f"LION op vs SDPA, {meta['machine']}\n{settings['dtype']}, "
                       f"H={args.heads} D={args.head_dim} decay {args.decay}, median of {settings['repeats']}",
                       xlabel="sequence length L " + (f"(B = {args.batch} fixed)" if args.batch else "(B·L fixed)"))
        except ImportError as err:  # the table and the JSON are the results; the plot is a view of them
            logger.warning(f"no plot: {short(err)}")
    return 0
