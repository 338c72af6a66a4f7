"""`bizoo bench crf`: the linear-chain CRF ops, log-likelihood forward+backward and Viterbi decode.

What it measures: the ops of ``bizoo.kernels.crf`` in each backend of ``registry.CRF`` (reference, scan, auto and
triton; on a CPU triton only when named: it runs in Triton's interpreter, whose times mean nothing), in this process,
in fp32, at each B × K × L of the grid, on right-padded batches (the first row L long, the others between L/2 and
L): the log-likelihood forward+backward (the sum over the batch, gradients to the emissions and the CRF parameters),
the Viterbi decode, and the max-marginals (what a CRF head computes to decode: its logits, whose argmax is the
Viterbi path). "auto" rows name the backend the op's dispatch picked.

Against which baseline: pytorch-crf (``torchcrf.CRF``, a dev dependency) on the same inputs and parameters: its
log-likelihood, and its ``decode`` (for Viterbi and the max-marginals alike), whose Python lists are part of its
cost. Its decode is timed once per shape, in the Viterbi table, and that timing is the baseline of the max-marginals
too (the same call on the same inputs, in the same run): its backtrace reads each tag back with ``.item()``, B·L
host syncs per call on a GPU (about half a second at B = 64, L = 512), which would otherwise be paid twice. Each row
gives torchcrf ms / method ms (> 1: faster than pytorch-crf).

The floor: the speed-ups the ops are built for (``CRF_TARGETS``), printed after the tables as met or not: ``auto``
at least 2x at B = 32, K = 9, L = 128 and not slower at B = 1; on a GPU ``triton`` at B = 64, L = 128 at least 10x
(likelihood) and 20x (Viterbi).
"""

from __future__ import annotations

import argparse

from ..lib.command import report
from ..lib.machine import machine_name
from .harness import (
    add_device_arguments,
    check_positive,
    op_settings,
    padded_mask,
    release_cuda_memory,
    resolve_device,
    short,
    time_runs,
    triton_missing,
)
from .registry import CRF
from .report import write_json

CRF_OPS = {"likelihood": "log-likelihood, forward+backward", "viterbi": "Viterbi decode",
           "max_marginals": "max-marginals (a CRF head's decode)"}
# The decoding ops, whose baseline is the same pytorch-crf call (its decode): timed once per shape, in the first.
DECODE_OPS = ("viterbi", "max_marginals")
# The speed-ups over pytorch-crf the CRF ops are built for: (B, K, L, method, {op: at least}, CUDA only); K None is
# every measured K.
CRF_TARGETS = (
    (32, 9, 128, "auto", {"likelihood": 2.0, "viterbi": 2.0}, False),
    (1, 9, 128, "auto", {"likelihood": 1.0, "viterbi": 1.0}, False),
    (64, None, 128, "triton", {"likelihood": 10.0, "viterbi": 20.0}, True),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench crf."""
    add_device_arguments(p)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=CRF.grid["batch_sizes"],
                   help="batch sizes B (default: %(default)s)")
    p.add_argument("--tags", type=int, nargs="+", default=CRF.grid["tags"],
                   help="numbers of tags K (default: %(default)s)")
    p.add_argument("--lengths", type=int, nargs="+", default=CRF.grid["lengths"],
                   help="padded lengths L (default: %(default)s)")
    methods = list(CRF.methods)
    p.add_argument("--methods", nargs="+", choices=methods, default=None, metavar="METHOD",
                   help=f"backends of bizoo.kernels.crf to time, from {', '.join(methods)} (default on cuda: "
                        f"all; on cpu: {', '.join(CRF.default_methods['cpu'])}); pytorch-crf is always timed")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3 on cuda, 1 on cpu)")
    p.set_defaults(dtype="float32")  # CRF parameters and scores are fp32 (ARCHITECTURE.md §3): no --dtype


def crf_inputs(batch: int, tags: int, length: int, device: str):
    """A right-padded batch as a tagger sees it (``padded_mask``); emissions, gold tags (valid at padding too:
    pytorch-crf reads them) and a ``torchcrf.CRF`` whose parameters every method uses. Seeded: the same inputs in
    every run."""
    import torch
    from torchcrf import CRF as TorchCRF

    g = torch.Generator(device="cpu").manual_seed(0)
    mask = padded_mask(batch, length, g)  # (B, L); the first position is real (pytorch-crf needs it)
    emissions = torch.randn(batch, length, tags, generator=g)  # (B, L, K)
    gold = torch.randint(0, tags, (batch, length), generator=g)  # (B, L)
    crf = TorchCRF(tags, batch_first=True)
    with torch.no_grad():
        for param in crf.parameters():  # transitions (K, K), start_transitions (K,), end_transitions (K,)
            param.uniform_(-0.1, 0.1, generator=g)
    return emissions.to(device), mask.to(device), gold.to(device), crf.to(device)


def crf_function(op: str, method: str, emissions, mask, gold, crf):
    """A function that runs ``op`` once with ``method`` ("torchcrf" or a backend of ``bizoo.kernels.crf``) and the
    tensors whose gradients it computes. The likelihood returns the sum over the batch, differentiable w.r.t. the
    emissions and the CRF parameters; Viterbi returns the paths (pytorch-crf: Python lists, its real output)."""
    from ...kernels.crf import crf_log_likelihood, crf_max_marginals, crf_viterbi

    grad = op == "likelihood"
    e = emissions.detach().requires_grad_(grad)  # (B, L, K)
    if method == "torchcrf":
        if grad:
            return (lambda: crf(e, gold, mask, reduction="sum")), [e, *crf.parameters()]
        return (lambda: crf.decode(e, mask)), [e]
    T, start, end = (p.detach().requires_grad_(grad) for p in (crf.transitions, crf.start_transitions,
                                                                crf.end_transitions))
    if grad:
        return (lambda: crf_log_likelihood(e, mask, T, start, end, gold, backend=method).sum()), [e, T, start, end]
    decode = crf_viterbi if op == "viterbi" else crf_max_marginals
    return (lambda: decode(e, mask, T, start, end, backend=method)), [e]


def crf_resolved_backend(op: str, method: str, emissions, crf) -> str:
    """What ``method`` runs for ``op`` on these inputs: "auto" resolved by the op's own dispatch (the likelihood
    dispatches as log_partition)."""
    if method != "auto":
        return method
    from ...kernels import crf as ops

    dispatched = op if op in ("viterbi", "max_marginals") else "log_partition"
    return ops._backend(dispatched, "auto", emissions, crf.transitions, crf.start_transitions, crf.end_transitions)


def measure_crf(op: str, method: str, inputs, settings: dict, cuda: bool) -> dict:
    """Median and min ms of ``op`` with ``method`` (``harness.time_runs``: warm-up runs, CUDA events on a GPU, where
    the peak memory above the inputs comes too); a result with a status instead where it cannot run ("oom",
    "unavailable: ..." for triton/auto, "failed: ...")."""
    import torch

    try:
        fn, leaves = crf_function(op, method, *inputs)
        dout = torch.ones((), device=inputs[0].device)  # d(sum of log-likelihoods)
        result = time_runs(fn, leaves, op == "likelihood", dout, settings["warmup"], settings["repeats"], cuda,
                           cpu_memory=False)
    except torch.OutOfMemoryError:
        result = {"status": "oom"}
    except ValueError as err:
        result = {"status": ("unavailable: " if method in ("triton", "auto") else "failed: ") + short(err)}
    except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
        result = {"status": f"failed: {short(err)}"}
    if cuda:
        release_cuda_memory()
    return result


def crf_targets(rows: list[dict], cuda: bool) -> list[dict]:
    """The measured speed-ups at the shapes of ``CRF_TARGETS``, each with its target and whether it is met."""
    out = []
    for batch, tags, length, method, least, cuda_only in CRF_TARGETS:
        for op, target in least.items():
            found = [r for r in rows if (r["op"], r["method"], r["batch"], r["length"]) == (op, method, batch, length)
                     and tags in (None, r["tags"])]
            entry = {"op": op, "method": method, "batch": batch, "tags": tags, "length": length, "target": target}
            if cuda_only and not cuda:
                out.append({**entry, "status": "GPU only"})
                continue
            if not found:
                out.append({**entry, "status": "not measured (shape or method not in this run)"})
            for r in found:
                ratio = r.get("speedup_vs_torchcrf")
                status = r["status"] if ratio is None else ("met" if ratio >= target else "NOT met")
                out.append({**entry, "tags": r["tags"], "speedup": ratio, "status": status})
    return out


def _table_head(methods) -> str:
    cells = [f"{'B':>4}", f"{'K':>4}", f"{'L':>5}", f"{'torchcrf ms':>11}"]
    for m in methods:
        cells += [f"{m + ' ms':>{max(10, len(m) + 3)}}", f"{'x':>6}"]
    line = " ".join(cells) + "  auto runs"
    return line + "\n" + "-" * len(line)


def _format(group: dict, methods) -> str:
    """One table line: a shape's rows, method -> row."""
    base = group["torchcrf"]
    cells = [f"{base['batch']:>4}", f"{base['tags']:>4}", f"{base['length']:>5}"]
    cells.append(f"{base['median_ms']:>11.2f}" if "median_ms" in base else f"{'-':>11}")
    notes = [f"torchcrf: {base['status']}"] if base["status"] != "ok" else []
    for m in methods:
        r = group[m]
        ms = f"{r['median_ms']:.2f}" if "median_ms" in r else "-"
        ratio = f"{r['speedup_vs_torchcrf']:.2f}" if "speedup_vs_torchcrf" in r else "-"
        cells += [f"{ms:>{max(10, len(m) + 3)}}", f"{ratio:>6}"]
        if r["status"] != "ok" and not r["status"].startswith("unavailable"):
            notes.append(f"{m}: {r['status']}")
    resolved = group["auto"]["backend"] if "auto" in group else "-"
    return (" ".join(cells) + f"  {resolved:<9}" + ("  " + "; ".join(notes) if notes else "")).rstrip()


def run(args) -> int:
    device = resolve_device(args)
    check_positive(batch_sizes=args.batch_sizes, tags=args.tags, lengths=args.lengths, repeats=args.repeats)
    try:
        import torchcrf  # noqa: F401
    except ImportError as err:
        raise ValueError(
            f"the baseline pytorch-crf does not import ({short(err, 80)}): install it with `pip install pytorch-crf` "
            "(it is in bizoo's dev extra)"
        ) from None
    cuda = device == "cuda"
    settings = op_settings(args, device)
    measured = CRF.chosen(args.methods, device)  # torchcrf first
    methods = [m for m in measured if m not in CRF.always]
    why = triton_missing(device) if "triton" in methods else None
    unavailable = {"triton": why} if why is not None else {}
    shapes = [(B, K, L) for B in args.batch_sizes for K in args.tags for L in args.lengths]
    machine = machine_name(device)
    report("Linear-chain CRF ops vs pytorch-crf (torchcrf.CRF, batch_first) on the same inputs and parameters")
    report(f"machine: {machine}")
    report(f"dtype: float32; shapes: B in {args.batch_sizes}, K in {args.tags}, L in {args.lengths}; right-padded "
          "batches: the first row L long, the others between L/2 and L (seed 0)")
    report(f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)"
          + ("; CUDA events" if cuda else ""))
    if device == "cpu" and "triton" in methods and "triton" not in unavailable:
        report("note: triton on a CPU runs in Triton's interpreter: its times mean nothing")
    for method, reason in unavailable.items():
        report(f"{method}: unavailable: {reason}")
    report("x: speed-up = torchcrf ms / method ms, > 1 is faster than pytorch-crf; auto runs: the backend "
          "backend='auto' picks")
    meta = {"op": "crf", "machine": machine, "device": device, **settings, "methods": methods,
            "batch_sizes": args.batch_sizes, "tags": args.tags, "lengths": args.lengths}
    rows: list[dict] = []
    decodes: dict = {}  # (B, K, L) -> pytorch-crf's decode timed in the first decoding op: the baseline of both
    for op, title in CRF_OPS.items():
        if op == "likelihood":
            note = " (sum over the batch; gradients to the emissions and the CRF parameters)"
        else:
            note = " (pytorch-crf: its decode, which returns Python lists" + (
                ")" if op == DECODE_OPS[0] else f"; its time from the {CRF_OPS[DECODE_OPS[0]]} table)")
        report(f"\n{title}{note}")
        report(_table_head(methods))
        for batch, tags, length in shapes:
            inputs = crf_inputs(batch, tags, length, device)
            group = {}
            for method in measured:
                row = {"op": op, "method": method, "backend": crf_resolved_backend(op, method, inputs[0], inputs[3]),
                       "batch": batch, "tags": tags, "length": length, "real_positions": int(inputs[1].sum()),
                       "dtype": "float32", "device": device}
                shape = (batch, tags, length)
                if method in unavailable:
                    row["status"] = f"unavailable: {unavailable[method]}"
                elif method == "torchcrf" and op in DECODE_OPS and shape in decodes:
                    row.update(decodes[shape], timed_in=DECODE_OPS[0])  # the same decode, timed once
                else:
                    row.update(measure_crf(op, method, inputs, settings, cuda))
                    if method == "torchcrf" and op in DECODE_OPS:
                        decodes[shape] = {key: row[key] for key in ("status", "median_ms", "min_ms", "peak_mib")
                                          if key in row}
                group[method] = row
            base = group["torchcrf"].get("median_ms")
            for row in group.values():
                if base is not None and "median_ms" in row:
                    row["speedup_vs_torchcrf"] = base / row["median_ms"]
            rows += group.values()
            report(_format(group, methods))
            write_json(args.json, {**meta, "rows": rows})
    targets = crf_targets(rows, cuda)
    report("\ntargets (speed-up over pytorch-crf):")
    for t in targets:
        shape = f"B={t['batch']} K={t['tags'] if t['tags'] is not None else 'any'} L={t['length']}"
        got = f"{t['speedup']:.2f}x, " if t.get("speedup") is not None else ""
        report(f"  {shape:<17} {t['method']:<7} {t['op']:<11} >= {t['target']:g}x: {got}{t['status']}")
    write_json(args.json, {**meta, "rows": rows, "targets": targets})
    return 0
