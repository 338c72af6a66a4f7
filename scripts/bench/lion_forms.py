"""`bizoo bench lion-crossover` and `bizoo bench lion-forms`: LION's forms against each other.

lion-crossover measures the chunk and the attention forms of each backend (triton: triton-chunk against
triton-parallel; reference: reference-chunk against reference-attention), forward+backward, at each length, each
case in this process (timing only), and prints the smallest length from which the chunk form is faster at every
longer measured length (or where the attention form does not fit in memory): the value for
``TRITON_CHUNK_MIN_LENGTH`` and ``REFERENCE_CHUNK_MIN_LENGTH`` of ``bizoo.kernels.lion``, which form="auto" reads,
printed beside the current value. The baseline of each length is the attention form at the same shapes
(attention ms / chunk ms).

lion-forms checks that the forms compute the same op: the max abs difference of the rnn and chunk forms from the
attention form (the baseline), per decay type, reference backend, fp32, on random inputs with a right- and a
left-padded row. The floor is fp32 rounding: differences of ~1e-6 relative to the largest output.
"""

from __future__ import annotations

import argparse

from ..lib.command import report
from ..lib.machine import machine_name
from .harness import (
    available_bytes,
    batch_for,
    check_positive,
    measure_case,
    op_settings,
    release_cuda_memory,
    resolve_device,
    size,
)
from .lion import CROSSOVER_CONSTANTS, add_op_arguments, estimate_bytes, header, lion_constant, probe, triton_tuning
from .registry import LION
from .report import write_json

CROSSOVER_LENGTHS = [128, 256, 512, 1024, 2048, 4096]  # bench lion-crossover's default lengths


def add_crossover_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench lion-crossover."""
    add_op_arguments(p, CROSSOVER_LENGTHS, "timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--backends", nargs="+", choices=["triton", "reference"], default=None,
                   help="backends to measure (default: triton on cuda, reference on cpu)")


def add_forms_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench lion-forms."""
    p.add_argument("--lengths", type=int, nargs="+", default=[1024], help="sequence lengths L (default: %(default)s)")
    p.add_argument("--batch", type=int, default=2, help="batch size B, at least 2 (default: %(default)s)")
    p.add_argument("--heads", type=int, default=12, help="heads H (default: %(default)s)")
    p.add_argument("--head-dim", type=int, default=64, help="head size D (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunk form (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")


# ----------------------------------------------------------------------------------------------------------------
# bench lion-crossover
# ----------------------------------------------------------------------------------------------------------------


def crossover_length(points: list[tuple[int, bool]]) -> int | None:
    """The smallest L from which the chunk form wins at every measured length (None: it does not win at the
    longest). ``points``: (L, chunk wins) sorted by L."""
    found = None
    for length, wins in reversed(points):
        if not wins:
            break
        found = length
    return found


def run_crossover(args) -> int:
    device = resolve_device(args)
    check_positive(lengths=args.lengths, tokens=args.tokens, batch=args.batch, heads=args.heads,
                   head_dim=args.head_dim, chunk_size=args.chunk_size, repeats=args.repeats)
    settings = op_settings(args, device)
    backends = list(dict.fromkeys(args.backends or (["triton"] if device == "cuda" else ["reference"])))
    lengths = sorted(set(args.lengths))
    interpreted = device == "cpu" and "triton" in backends
    # Whether the Triton kernels were autotuned moves the crossover: the table and the JSON say which ran.
    autotune, tuning = triton_tuning()
    report(header("LION chunk form vs attention form, forward+backward: where does chunk start to win?",
                 device, settings, args,
                 ("\nnote: triton on a CPU runs in Triton's interpreter: its times mean nothing" if interpreted else "")
                 + (f"\ntriton: {tuning}" if device == "cuda" and "triton" in backends else "")))
    meta = {"op": "lion-crossover", "machine": machine_name(device), "device": device, **settings,
            "tokens": args.tokens, "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay,
            "chunk_size": args.chunk_size, "backends": backends, "triton_autotune": autotune}
    rows, summary = [], {}
    head = f"{'backend':<10} {'L':>6} {'B':>5} {'chunk ms':>10} {'attention ms':>13} {'attn/chunk':>10}  faster"
    report(head + "\n" + "-" * len(head))
    for backend in backends:
        methods = {"chunk": f"{backend}-chunk",
                   "attention": "triton-parallel" if backend == "triton" else "reference-attention"}
        why = next((w for m in methods.values() if (w := probe(m, device, settings["dtype"])) is not None), None)
        points = []
        for length in lengths:
            batch = batch_for(length, args.tokens, args.batch)
            row = {"backend": backend, "length": length, "batch": batch}
            for form, method in methods.items():
                case = {"op": LION.name, "method": method, "length": length, "batch": batch, "heads": args.heads,
                        "head_dim": args.head_dim, "decay": args.decay, "dtype": settings["dtype"], "device": device,
                        **settings, "modes": ["fwdbwd"], "chunk_size": args.chunk_size, "threads": args.threads}
                available = available_bytes() if device == "cpu" else None
                need = estimate_bytes(case, "fwdbwd")
                if why is not None:
                    result = {"status": f"unavailable: {why}"}
                elif available is not None and need > 0.85 * available:
                    result = {"status": f"not run: needs ~{size(need)}, {size(available)} free"}
                else:  # timing only: in this process on either device
                    out = {}
                    measure_case(case, out.__setitem__)
                    result = out["fwdbwd"]
                    release_cuda_memory()
                row[f"{form}_status"] = result["status"]
                if "median_ms" in result:
                    row[f"{form}_ms"] = result["median_ms"]
            out_of_memory = row["attention_status"] == "oom" or row["attention_status"].startswith("not run")
            if "chunk_ms" in row and ("attention_ms" in row or out_of_memory):
                # Chunk wins where it is faster, or where the attention form does not fit in memory.
                row["chunk_faster"] = row["chunk_ms"] < row["attention_ms"] if "attention_ms" in row else True
                points.append((length, row["chunk_faster"]))
                if "attention_ms" in row:
                    row["attention_over_chunk"] = row["attention_ms"] / row["chunk_ms"]
            rows.append(row)
            cells = [f"{row[k]:.2f}" if k in row else "-" for k in ("chunk_ms", "attention_ms", "attention_over_chunk")]
            faster = {True: "chunk", False: "attention"}.get(row.get("chunk_faster"), "-")
            status = "" if row["chunk_status"] == row["attention_status"] == "ok" else (
                f"  chunk: {row['chunk_status']}; attention: {row['attention_status']}"
                if row["chunk_status"] != row["attention_status"] else f"  {row['chunk_status']}")
            report(f"{backend:<10} {length:>6} {batch:>5} {cells[0]:>10} {cells[1]:>13} {cells[2]:>10}  "
                  f"{faster}{status}")
            write_json(args.json, {**meta, "rows": rows, "crossover": summary})
        constant = CROSSOVER_CONSTANTS[backend]
        summary[backend] = s = {
            "constant": constant,
            "measured": crossover_length(points) if points else None,
            "current": lion_constant(constant),
            "measured_lengths": [p[0] for p in points],
        }
        if not s["measured_lengths"]:
            text = "not measured (the chunk form did not run)"
        elif s["measured"] is None:
            text = f"the chunk form is not faster at L = {s['measured_lengths'][-1]}: a value above it"
        elif s["measured"] == s["measured_lengths"][0]:
            text = f"<= {s['measured']} (the chunk form wins at every measured length)"
        else:
            text = f"{s['measured']} (the chunk form wins at every measured L >= {s['measured']})"
        report(f"=> {constant} ({backend} on {device}): measured {text}; current value {s['current']}")
    write_json(args.json, {**meta, "rows": rows, "crossover": summary})
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench lion-forms
# ----------------------------------------------------------------------------------------------------------------


def form_agreement(length: int, batch: int, heads: int, head_dim: int, chunk_size: int) -> list[dict]:
    """Max abs difference of each form from the attention form, per decay type, fp32, right/left padded rows."""
    import torch

    from ...kernels.lion import lion_attention

    g = torch.Generator().manual_seed(0)
    B = max(batch, 2)
    q = torch.rand(B, heads, length, head_dim, generator=g) + 0.1  # (B, H, L, D)
    k = torch.rand(B, heads, length, head_dim, generator=g) + 0.1  # (B, H, L, D)
    v = torch.randn(B, heads, length, head_dim, generator=g)  # (B, H, L, D)
    mask = torch.ones(B, length, dtype=torch.long)  # (B, L)
    mask[0, length - length // 8 :] = 0  # right padding
    mask[1, : length // 8] = 0  # left padding
    decays = {"lit": None, "d": -torch.rand(heads, generator=g), "s": -torch.rand(B, heads, length, generator=g)}
    rows = []
    for decay, log_decay in decays.items():
        with torch.no_grad():
            outs = {
                f: lion_attention(q, k, v, log_decay, mask, form=f, chunk_size=chunk_size, backend="reference")
                for f in ("attention", "rnn", "chunk")
            }
        scale = outs["attention"].abs().max().item()
        for form in ("rnn", "chunk"):
            diff = (outs[form] - outs["attention"]).abs().max().item()
            rows.append({"decay": decay, "length": length, "form": form, "max_abs_diff": diff, "max_abs_output": scale})
    return rows


def run_forms(args) -> int:
    check_positive(lengths=args.lengths, heads=args.heads, head_dim=args.head_dim, chunk_size=args.chunk_size)
    if args.batch < 2:
        raise ValueError(f"--batch must be >= 2 (a right- and a left-padded row), got {args.batch}")
    B = args.batch
    report(f"LION forms vs the attention form, reference backend, fp32, B={B} (right- and left-padded) "
          f"H={args.heads} D={args.head_dim}, chunk size {args.chunk_size}; machine: {machine_name('cpu')}")
    report(f"{'L':>7} {'decay':>6} {'form':>6} {'max |diff|':>12} {'max |y|':>9}")
    rows = [r for L in args.lengths for r in form_agreement(L, B, args.heads, args.head_dim, args.chunk_size)]
    for r in rows:
        report(f"{r['length']:>7} {r['decay']:>6} {r['form']:>6} {r['max_abs_diff']:>12.2e} {r['max_abs_output']:>9.3f}")
    write_json(args.json, {"op": "lion-forms", "rows": rows})
    return 0
