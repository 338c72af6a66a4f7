"""`bizoo bench lstm`: one bidirectional LSTM layer, forward and forward+backward, time, peak memory and agreement.

What it measures: ``bizoo.kernels.lstm.bilstm`` on right-padded batches (the first row L long, the others between
L/2 and L), gradients to the input and every weight, the input projection W_ih x part of every timing, in two parts
(``registry.LSTM`` and ``registry.LSTMP``):

* part "lstm", at each B × H × L (I = H): ``triton`` (the op's Triton schedule, form "steps": per step one batched
  cuBLAS product and one fused Triton kernel), ``native`` (torch.lstm over each
  row's real tokens), ``loop`` (the per-step PyTorch loop with its backward pass through time written out),
  ``autograd-loop`` (the same loop differentiated by autograd) and ``nn-lstm-packed`` (torch.nn.LSTM on packed
  sequences, when named).
  Baseline: ``torch.nn.LSTM(I, H, bidirectional=True, batch_first=True)`` on the whole padded tensor as models
  commonly call it (``nn-lstm``, cuDNN on a GPU; its backward direction reads a row's padding before its real
  tokens). The part ends with native ms / triton ms per (B, H): the floor a Triton schedule must reach (at least as
  fast as cuDNN at every L) before backend="auto" may take it for an unclipped LSTM (it takes cuDNN).
* part "lstmp", ELMo's LSTM with a projection and clipping at 3 (which torch.nn.LSTM cannot clip) at the sizes of
  the released models (``registry.ELMO_SIZES``): the step schedule (``triton``) and ``loop`` against the baseline
  ``autograd-loop`` and against the yardstick ``nn-lstm-proj``, torch.nn.LSTM(proj_size=P) without clipping (cuDNN
  on a GPU): what ``backend="auto"``'s choice for a clipped LSTMP on CUDA (``bizoo.kernels.lstm.auto_triton_form``)
  is to be set from.

Each row also gives the max abs difference from the fp32 autograd-loop reference on the same inputs (nn-lstm and
nn-lstm-proj only where they compute the same, nn-lstm-proj against the reference without clipping). Time and
memory: harness.py, one child process per case on a CPU.
"""

from __future__ import annotations

import argparse
import logging
import math
import warnings

from ..lib.command import report
from ..lib.machine import machine_name
from .harness import (
    L2_FLUSH_BYTES,
    add_device_arguments,
    add_fp32_products_argument,
    check_positive,
    fp32_note,
    measure_op_case,
    op_settings,
    padded_mask,
    peak_memory_note,
    resolve_device,
    run_grid,
    short,
    triton_missing,
    unavailable_methods,
)
from .registry import ELMO_CLIP, ELMO_SIZES, LSTM, LSTMP
from .report import MODES, plot_speedups, table_head, write_json

logger = logging.getLogger(__name__)

PARTS = {"lstm": LSTM, "lstmp": LSTMP}
METHODS = {**LSTM.methods, **LSTMP.methods}  # method -> (backend, form), the choices of --methods


def default_methods(device: str) -> list[str]:
    """The methods measured without --methods: both parts' defaults (each part keeps its own)."""
    return list(dict.fromkeys([*LSTM.default_methods[device], *LSTMP.default_methods[device]]))


def _on_devices(bench, key: str) -> str:
    """"default on cuda: ...; on cpu: ..." of a grid option of ``bench``, its values separated by spaces."""
    cuda, cpu = (" ".join(map(str, bench.defaults(d)[key])) for d in ("cuda", "cpu"))
    return f"default on cuda: {cuda}; on cpu: {cpu}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench lstm."""
    add_device_arguments(p)
    p.add_argument("--part", choices=[*PARTS, "both"], default="both",
                   help="lstm: the LSTM against torch.nn.LSTM; lstmp: ELMo's clipped LSTMP against the per-step loop; "
                        "both (default: %(default)s)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help=f"part lstm: batch sizes B ({_on_devices(LSTM, 'batch_sizes')})")
    p.add_argument("--lengths", type=int, nargs="+", default=None,
                   help=f"part lstm: padded lengths L ({_on_devices(LSTM, 'lengths')})")
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help=f"part lstm: cells H per direction ({_on_devices(LSTM, 'hidden')})")
    p.add_argument("--input-size", type=int, default=None, help="part lstm: input features I (default: I = H)")
    p.add_argument("--elmo-sizes", nargs="+", choices=list(ELMO_SIZES), default=None, metavar="SIZE",
                   help="part lstmp: ELMo models, from original (4096 cells / 512), medium (2048 / 256), small "
                        "(1024 / 128) (default on cuda: all; on cpu: small)")
    p.add_argument("--elmo-batch-sizes", type=int, nargs="+", default=None,
                   help=f"part lstmp: batch sizes B ({_on_devices(LSTMP, 'elmo_batch_sizes')})")
    p.add_argument("--elmo-lengths", type=int, nargs="+", default=None,
                   help="part lstmp: padded lengths L (default on cuda: 20 64, bilm-tf trains on 20-token windows; "
                        "on cpu: 20)")
    methods = list(METHODS)
    p.add_argument("--methods", nargs="+", choices=methods, default=None, metavar="METHOD",
                   help=f"what to time, from {', '.join(methods)} (default on cuda: "
                        f"{', '.join(default_methods('cuda'))}; on cpu: {', '.join(default_methods('cpu'))}, triton "
                        "unavailable unless named); part lstm always times nn-lstm, its baseline; part lstmp times "
                        "autograd-loop and nn-lstm-proj, its baselines, and triton and loop when they are among the "
                        "methods")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="input and weight dtype (default: %(default)s; bfloat16 for a GPU)")
    add_fp32_products_argument(p)
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="fwd (no autograd) and/or fwdbwd (forward + backward) (default: both)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3 on cuda, 1 on cpu)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot the speed-ups over the baselines")


# ----------------------------------------------------------------------------------------------------------------
# One case: inputs, the call, agreement, its peak, whether it can run
# ----------------------------------------------------------------------------------------------------------------


def lstm_inputs(case: dict, device, dtype):
    """A right-padded batch (``padded_mask``) of inputs x (B, L, I), its mask, the weights of both directions
    (weight_ih (2, 4H, I), weight_hh (2, 4H, P), bias (2, 4H), weight_proj (2, P, H) or None), uniform in
    ±1/sqrt(H) as torch.nn.LSTM initialises them, and an output gradient (B, L, 2, P). Seeded: the same in every
    run and for every method."""
    import torch

    B, L, H, I = case["batch"], case["length"], case["hidden"], case["input_size"]
    P = case["projection"] or H
    g = torch.Generator(device="cpu").manual_seed(0)
    mask = padded_mask(B, L, g)  # (B, L)
    bound = 1 / math.sqrt(H)

    def uniform(*shape):
        return (torch.rand(*shape, generator=g) * 2 - 1) * bound

    x = torch.randn(B, L, I, generator=g)  # (B, L, I)
    weights = (uniform(2, 4 * H, I), uniform(2, 4 * H, P), uniform(2, 4 * H),
               uniform(2, P, H) if case["projection"] else None)
    dout = torch.randn(B, L, 2, P, generator=g)  # (B, L, 2, P)

    def to(t):
        return None if t is None else t.to(device, dtype)

    return to(x), mask.to(device), tuple(to(w) for w in weights), to(dout)


def nn_lstm_module(weights):
    """``torch.nn.LSTM(I, H, bidirectional=True, batch_first=True)`` (with ``proj_size=P`` when there is a projection)
    holding ``weights`` (its b_ih the bias, its b_hh zero: the same LSTM, unclipped)."""
    import torch

    weight_ih, weight_hh, bias, weight_proj = weights
    proj_size = 0 if weight_proj is None else weight_proj.shape[1]
    module = torch.nn.LSTM(weight_ih.shape[2], weight_hh.shape[1] // 4, bidirectional=True, batch_first=True,
                           proj_size=proj_size, device=weight_ih.device, dtype=weight_ih.dtype)
    with torch.no_grad():
        for d, suffix in enumerate(("l0", "l0_reverse")):
            getattr(module, f"weight_ih_{suffix}").copy_(weight_ih[d])
            getattr(module, f"weight_hh_{suffix}").copy_(weight_hh[d])
            getattr(module, f"bias_ih_{suffix}").copy_(bias[d])
            getattr(module, f"bias_hh_{suffix}").zero_()
            if proj_size:
                getattr(module, f"weight_hr_{suffix}").copy_(weight_proj[d])
    return module


def lstm_function(method: str, x, mask, weights, clip: float | None):
    """A function that runs one bidirectional layer with ``method`` and returns y (B, L, 2, P), and the tensors its
    backward pass differentiates (x and every weight). The input projection W_ih x is part of every method's call;
    bizoo's ``bilstm`` returns the outputs only (final_state=False, what a tagger or the biLM reads)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from ...kernels.lstm import bilstm

    B, L = x.shape[:2]
    backend, form = METHODS[method]
    if backend == "torch":  # torch.nn.LSTM, on the padded tensor or packed; nn-lstm-proj with the projection
        module = nn_lstm_module(weights if method == "nn-lstm-proj" else (*weights[:3], None))
        leaves = [x, *module.parameters()]
        if method == "nn-lstm-proj" and not x.is_cuda:  # ATen's own loop runs it, as it says at every call
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        if method in ("nn-lstm", "nn-lstm-proj"):
            return (lambda: module(x)[0].view(B, L, 2, -1)), leaves

        def packed():  # the lengths come from the mask in every call, as in a model
            seq = pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(module(seq)[0], batch_first=True, total_length=L)[0].view(B, L, 2, -1)

        return packed, leaves
    weight_ih, weight_hh, bias, weight_proj = weights

    def op():
        return bilstm(x, weight_ih, weight_hh, bias, weight_proj, mask, cell_clip=clip,
                      proj_clip=clip if weight_proj is not None else None, final_state=False, backend=backend,
                      form=form)[0]

    return op, [x, *(w for w in weights if w is not None)]


def lstm_agreement(method: str, fn, x, mask, weights, clip: float | None) -> dict:
    """The max abs difference of ``fn``'s outputs from the fp32 loop reference on the same inputs, and the largest
    output of the reference (the scale of the difference). nn-lstm and nn-lstm-proj read the padding of a row before
    its real tokens in the backward direction: they are compared where they compute the same, the forward direction
    at the real tokens and the backward direction in the rows without padding; nn-lstm-proj, which cannot clip, with
    the reference without clipping."""
    import torch

    from ...kernels.lstm import bilstm

    if method == "nn-lstm-proj":
        clip = None
    with torch.no_grad():
        y = fn().float()  # (B, L, 2, P)
        ref = bilstm(x.float(), *(None if w is None else w.float() for w in weights), mask, cell_clip=clip,
                     proj_clip=clip if weights[3] is not None else None, final_state=False, backend="reference",
                     form="autograd")[0]
    compared = torch.ones(y.shape[:3], dtype=torch.bool, device=y.device)  # (B, L, 2)
    if method in ("nn-lstm", "nn-lstm-proj"):
        compared = torch.stack([mask, mask.all(1, keepdim=True).expand_as(mask)], dim=-1)  # (B, L, 2)
    return {"max_abs_diff": (y - ref).abs()[compared].max().item(), "max_abs_output": ref.abs().max().item()}


def measure_case(case: dict, report) -> None:
    """``harness.measure_op_case`` for one bidirectional LSTM layer: gradients to x and every weight; agreement with
    the fp32 loop reference."""
    method = case["method"]

    def build(device, dtype):
        x, mask, weights, dout = lstm_inputs(case, device, dtype)
        fn, leaves = lstm_function(method, x, mask, weights, case["clip"])
        return fn, leaves, dout, lambda: lstm_agreement(method, fn, x, mask, weights, case["clip"])

    measure_op_case(case, report, build, may_be_missing=METHODS[method][0] == "triton")


def estimate_bytes(case: dict, mode: str) -> int:
    """A rough peak of a CPU case of bench lstm, fp32 inside: the inputs and outputs, and what a step keeps for the
    backward pass, ~16 (B, 2, 4H) gate-sized buffers per step (the loop's autograd graph; cuDNN and the native form
    keep fewer); the weights and their gradients."""
    B, L, H, I = case["batch"], case["length"], case["hidden"], case["input_size"]
    P = case["projection"] or H
    per_step = 16 if mode == "fwdbwd" else 2
    weights = 2 * 4 * H * (I + P + 1) + 2 * P * H
    return 4 * (B * L * (I + 4 * P) + per_step * B * L * 2 * 4 * H + 2 * weights)


def probe(method: str, device: str, dtype: str) -> str | None:
    """None when ``method`` can run here, else why not (a tiny call; Triton on a CPU needs TRITON_INTERPRET=1). No
    tiny call of the Triton methods on a GPU: it would compile their kernels at a size (H = 16) the benchmark never
    runs; a failure of the real call is its row's status (``harness.measure_modes``: "unavailable" for a
    ValueError)."""
    backend, _ = METHODS[method]
    if backend == "torch":
        return None
    if backend == "triton":
        if (why := triton_missing(device)) is not None:
            return why
        if device == "cuda":
            return None
    import torch

    tiny = {"batch": 2, "length": 3, "hidden": 16, "input_size": 16, "projection": None}
    x, mask, weights, _ = lstm_inputs(tiny, torch.device(device), getattr(torch, dtype))
    try:
        lstm_function(method, x, mask, weights, None)[0]()
    except Exception as err:  # noqa: BLE001 - whatever stops the tiny call stops the real one
        return short(err)
    return None


def triton_vs_native(rows: list[dict]) -> list[dict]:
    """Per (B, H) of part "lstm": native ms / triton ms forward+backward at each L, and whether the Triton schedule
    is at least as fast as torch.lstm (cuDNN on a GPU) at every L: what backend="auto" would need to take it for an
    unclipped LSTM."""
    times = {(r["method"], r["batch"], r["hidden"], r["length"]): r.get("fwdbwd_ms") for r in rows
             if r["part"] == "lstm"}
    out = []
    for batch, hidden in dict.fromkeys((b, h) for (_, b, h, _) in times):
        lengths = sorted({L for (m, b, h, L) in times if (b, h) == (batch, hidden)})
        ratios = {}
        for length in lengths:
            triton, native = times.get(("triton", batch, hidden, length)), times.get(("native", batch, hidden, length))
            if triton and native:
                ratios[length] = native / triton
        if ratios:
            out.append({"batch": batch, "hidden": hidden, "native_over_triton_fwdbwd": ratios,
                        "triton_at_least_as_fast": len(ratios) == len(lengths) and min(ratios.values()) >= 1.0})
    return out


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def run(args) -> int:
    device = resolve_device(args)
    cuda = device == "cuda"
    defaults = {**LSTM.defaults(device), **LSTMP.defaults(device)}
    grid_args = {name: getattr(args, name) or default for name, default in defaults.items()}
    parts = tuple(PARTS) if args.part == "both" else (args.part,)
    check_positive(batch_sizes=grid_args["batch_sizes"], lengths=grid_args["lengths"], hidden=grid_args["hidden"],
                   input_size=args.input_size, elmo_batch_sizes=grid_args["elmo_batch_sizes"],
                   elmo_lengths=grid_args["elmo_lengths"], repeats=args.repeats)
    settings = op_settings(args, device)
    methods = list(dict.fromkeys(args.methods or default_methods(device)))
    modes = [m for m in MODES if m in args.modes]
    unavailable = unavailable_methods(methods, args.methods, device, settings["dtype"], probe)
    interpreted = not cuda and any(METHODS[m][0] == "triton" and m not in unavailable for m in methods)
    machine = machine_name(device)
    import torch

    compared = {"lstm": "vs torch.nn.LSTM", "lstmp": "ELMo's clipped LSTMP vs the per-step PyTorch loop"}
    report(f"Bidirectional LSTM layer (bizoo.kernels.lstm.bilstm) {', and '.join(compared[p] for p in parts)}, "
          "forward and forward+backward")
    report(f"machine: {machine}" + (f", cuDNN {torch.backends.cudnn.version()}" if cuda else ""))
    report(f"dtype: {settings['dtype']}{fp32_note(settings)}; right-padded batches: the first row L long, the others "
          "between L/2 and L "
          "(seed 0), the same for every method")
    report("every timing includes the input projection W_ih x and both directions; backward: gradients to x and "
          "every weight; bizoo's bilstm returns the outputs only (final_state=False)")
    report("methods: triton (the Triton schedule: per step one batched cuBLAS product and one fused Triton kernel), "
          "native (torch.lstm per direction over its real tokens first: cuDNN on a GPU), loop "
          "(one step at a time in PyTorch, its backward pass written out), autograd-loop (the same steps "
          "differentiated by autograd), nn-lstm-packed (torch.nn.LSTM on pack_padded_sequence, "
          "the lengths read from the mask in every call), nn-lstm-proj (part lstmp: torch.nn.LSTM(proj_size=P), "
          "unclipped)")
    report("peak memory: " + peak_memory_note(cuda)
          + ("\nnote: triton on a CPU runs in Triton's interpreter: its times mean nothing" if interpreted else ""))
    report(f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)"
          + ("; CUDA events" if cuda else ""))
    report("max|diff|: the largest difference of the outputs from the fp32 autograd-loop reference on the same inputs")
    meta = {"op": "lstm", "machine": machine, "device": device, **settings, "parts": list(parts), "modes": modes,
            "methods": methods, "input_size": args.input_size, **grid_args, "elmo_clip": ELMO_CLIP,
            "l2_flush_bytes": L2_FLUSH_BYTES if cuda else 0}
    if cuda:
        meta["cudnn"] = torch.backends.cudnn.version()
    rows: list[dict] = []

    def measure(part, grid, describe_point):
        bench = PARTS[part]
        report(table_head(modes, bench.ratios, bench.extra, bench.shape))
        rows.extend(run_grid(grid, bench.chosen(methods, device), describe_point, unavailable, modes, bench.ratios,
                             bench.extra, args.json, meta, bench.shape, rows))

    def describe(part, method, batch, length, hidden, input_size, projection, clip, **row):
        """The row's fields and the case to run (``harness.run_grid``)."""
        backend, form = PARTS[part].backend_form(method)
        row = {"part": part, **row, "method": method, "backend": backend, "form": form, "batch": batch,
               "length": length, "hidden": hidden, "input_size": input_size, "projection": projection, "clip": clip,
               "dtype": settings["dtype"], "device": device}
        return row, {**row, "op": LSTM.name, **settings, "modes": modes, "threads": args.threads}

    if "lstm" in parts:
        report("\nLSTM: torch.nn.LSTM(I, H, bidirectional=True, batch_first=True) on the whole padded tensor (nn-lstm, "
              "the baseline), as models commonly call it: its backward direction reads a row's padding before its "
              "real tokens, so it is compared with the reference only where that does not matter")
        report(f"shapes: B in {grid_args['batch_sizes']}, H in {grid_args['hidden']} cells per direction, "
              f"L in {grid_args['lengths']}, I = {args.input_size or 'H'} input features")
        report("nn/x: speed-up = nn-lstm ms / method ms, > 1 is faster than torch.nn.LSTM")
        grid = [(B, L, H) for B in grid_args["batch_sizes"] for H in grid_args["hidden"] for L in grid_args["lengths"]]
        measure("lstm", grid, lambda method, B, L, H: describe(
            "lstm", method, B, L, H, args.input_size or H, None, None))
    if "lstmp" in parts:
        report(f"\nLSTMP (ELMo): cells projected to P, I = P, cell_clip = proj_clip = {ELMO_CLIP:g}; torch.nn.LSTM "
              "cannot clip: the baseline is the per-step PyTorch loop differentiated by autograd (autograd-loop); "
              "loop: the same steps with the backward pass through time written out; the yardstick nn-lstm-proj: "
              "torch.nn.LSTM(I, H, proj_size=P, bidirectional=True) on the whole padded tensor without clipping "
              "(cuDNN on a GPU; not the same op, compared with the unclipped reference)")
        sizes = ", ".join(f"{name} {ELMO_SIZES[name][0]}/{ELMO_SIZES[name][1]}" for name in grid_args["elmo_sizes"])
        report(f"shapes: {sizes} (cells/P); B in {grid_args['elmo_batch_sizes']}, L in {grid_args['elmo_lengths']}")
        report("loop/x: speed-up = autograd-loop ms / method ms, > 1 is faster than the autograd loop; nnP/x = "
              "nn-lstm-proj ms / method ms, ≥ 0.67 is within 1.5x of the unclipped nn.LSTM")
        grid = [(name, B, L) for name in grid_args["elmo_sizes"] for B in grid_args["elmo_batch_sizes"]
                for L in grid_args["elmo_lengths"]]
        measure("lstmp", grid, lambda method, name, B, L: describe(
            "lstmp", method, B, L, ELMO_SIZES[name][0], ELMO_SIZES[name][1], ELMO_SIZES[name][1],
            None if method == "nn-lstm-proj" else ELMO_CLIP, elmo=name))
    comparison = triton_vs_native(rows)
    if comparison:
        report("\ntriton vs native (torch.lstm; cuDNN on a GPU), forward+backward: native ms / triton ms at each L; "
              "backend='auto' keeps cuDNN for an unclipped LSTM unless triton is at least as fast at every L")
        for c in comparison:
            ratios = ", ".join(f"L={L} {x:.2f}" for L, x in c["native_over_triton_fwdbwd"].items())
            verdict = "at least as fast at every L" if c["triton_at_least_as_fast"] else "not at every L"
            report(f"  B={c['batch']} H={c['hidden']}: {ratios}: {verdict}")
    write_json(args.json, {**meta, "rows": rows, "triton_vs_native": comparison})
    if args.plot:
        plots = [(title, [r for r in rows if r["part"] == part], *PARTS[part].ratios[0][:2])
                 for part, title in (("lstm", "vs torch.nn.LSTM"), ("lstmp", "ELMo LSTMP vs the loop"))
                 if part in parts]
        try:
            plot_speedups(plots, modes, args.plot, f"bidirectional LSTM, {machine}\n{settings['dtype']}, median of "
                          f"{settings['repeats']}")
        except ImportError as err:  # the table and the JSON are the results; the plot is a view of them
            logger.warning(f"no plot: {short(err)}")
    return 0
