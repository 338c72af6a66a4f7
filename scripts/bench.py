"""Benchmark bizoo's kernels against their baselines, measured in the same run.

`bizoo bench lion-forms` checks that the forms agree: the max abs difference of the rnn and chunk forms from the
attention form, per decay type, in fp32, on random inputs with padding.

`bizoo bench lion` times the LION attention op in each form against the O(L²) attention form (the baseline) at
each sequence length, forward or forward+backward, and reports the median time, the peak memory and the ratio
baseline / form (> 1: faster than the baseline). Every measurement runs in a fresh child process so that its peak
memory is its own: on a CPU the growth of the peak resident set size over the process's size before the call;
on a GPU `torch.cuda.max_memory_allocated`. A case whose estimated memory exceeds what the machine has free is
not run and is reported as such (with the estimate).

examples:
  bizoo bench lion                                   # CPU: chunk vs attention at L = 1024, 4096, 16384
  bizoo bench lion-forms --lengths 1024              # max |rnn - attention|, |chunk - attention| per variant
  bizoo bench lion --lengths 512 2048 --forms chunk rnn attention --mode backward --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PROG = "bizoo bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("op", choices=["lion", "lion-forms"], help="what to measure")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384], help="sequence lengths L")
    parser.add_argument("--batch", type=int, default=1, help="batch size B (default: %(default)s)")
    parser.add_argument("--heads", type=int, default=12, help="heads H (default: %(default)s)")
    parser.add_argument("--head-dim", type=int, default=64, help="head size D (default: %(default)s)")
    parser.add_argument("--decay", choices=["lit", "d", "s"], default="s", help="decay type (default: %(default)s)")
    parser.add_argument("--forms", nargs="+", default=["chunk", "attention"], help="forms to time; attention is the baseline")
    parser.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunk form (default: %(default)s)")
    parser.add_argument("--backend", default="auto", help="kernel backend: auto, reference or triton (default: %(default)s)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--mode", choices=["forward", "backward"], default="forward", help="forward, or forward+backward")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case, after one warm-up (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--plot", default=None, metavar="PNG", help="also plot time against length")


# ----------------------------------------------------------------------------------------------------------------
# One measurement (runs in a child process)
# ----------------------------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(case: dict) -> dict:
    """Time one (form, length) case; returns median/min seconds and peak memory in bytes."""
    import resource

    import torch

    from ..kernels.lion import lion_attention

    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    dtype = getattr(torch, case["dtype"])
    B, H, L, D = case["batch"], case["heads"], case["length"], case["head_dim"]
    g = torch.Generator(device="cpu").manual_seed(0)
    q = (torch.rand(B, H, L, D, generator=g) + 0.1).to(device, dtype)
    k = (torch.rand(B, H, L, D, generator=g) + 0.1).to(device, dtype)
    v = torch.randn(B, H, L, D, generator=g).to(device, dtype)
    log_decay = {
        "lit": None,
        "d": -torch.rand(H, generator=g).to(device) * 0.1,
        "s": -torch.rand(B, H, L, generator=g).to(device) * 0.1,
    }[case["decay"]]
    backward = case["mode"] == "backward"
    leaves = [q, k, v] + ([log_decay] if log_decay is not None else [])
    if backward:
        for t in leaves:
            t.requires_grad_(True)

    def call():
        with torch.set_grad_enabled(backward):
            out = lion_attention(
                q, k, v, log_decay, form=case["form"], chunk_size=case["chunk_size"], backend=case["backend"]
            )
            if backward:
                out.float().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    call()  # warm-up (and, on a CPU, the peak)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    times = []
    for _ in range(case["repeats"]):
        for t in leaves:
            t.grad = None
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "peak_bytes": max(peak, 0)}


def _child() -> None:
    case = json.loads(sys.argv[1])
    print(json.dumps(measure(case)))


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def estimate_bytes(case: dict) -> int:
    """A rough peak for the case: the attention form holds ~3 (B, H, L, L) fp32 buffers at once (measured: 2.3 GiB
    at B=1, H=12, L=4096), twice that with the backward pass; the other forms are O(L)."""
    B, H, L, D = case["batch"], case["heads"], case["length"], case["head_dim"]
    if case["form"] == "attention":
        return 3 * B * H * L * L * 4 * (2 if case["mode"] == "backward" else 1)
    return 40 * B * H * L * D * 4


def run_case(case: dict) -> dict:
    """Run ``case`` in a child process (skip it when it cannot fit in memory)."""
    row = {k: case[k] for k in ("form", "length", "batch", "heads", "head_dim", "decay", "mode", "dtype", "device")}
    available = _available_bytes() if case["device"] == "cpu" else None
    need = estimate_bytes(case)
    if available is not None and need > 0.85 * available:
        return {**row, "status": f"not run: needs ~{need / 2**30:.0f} GiB, {available / 2**30:.0f} GiB free"}
    child = subprocess.run(
        [sys.executable, "-c", "from bizoo.scripts.bench import _child; _child()", json.dumps(case)],
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        reason = "killed (out of memory?)" if child.returncode < 0 else child.stderr.strip().splitlines()[-1:]
        return {**row, "status": f"failed: {reason}"}
    return {**row, "status": "ok", **json.loads(child.stdout.strip().splitlines()[-1])}


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def form_agreement(length: int, batch: int, heads: int, head_dim: int, chunk_size: int) -> list[dict]:
    """Max abs difference of each form from the attention form, per decay type, fp32, right/left padded rows."""
    import torch

    from ..kernels.lion import lion_attention

    g = torch.Generator().manual_seed(0)
    B = max(batch, 2)
    q = torch.rand(B, heads, length, head_dim, generator=g) + 0.1
    k = torch.rand(B, heads, length, head_dim, generator=g) + 0.1
    v = torch.randn(B, heads, length, head_dim, generator=g)
    mask = torch.ones(B, length, dtype=torch.long)
    mask[0, length - length // 8 :] = 0  # right padding
    mask[1, : length // 8] = 0  # left padding
    decays = {"lit": None, "d": -torch.rand(heads, generator=g), "s": -torch.rand(B, heads, length, generator=g)}
    rows = []
    for decay, log_decay in decays.items():
        with torch.no_grad():
            outs = {f: lion_attention(q, k, v, log_decay, mask, form=f, chunk_size=chunk_size) for f in ("attention", "rnn", "chunk")}
        scale = outs["attention"].abs().max().item()
        for form in ("rnn", "chunk"):
            diff = (outs[form] - outs["attention"]).abs().max().item()
            rows.append({"decay": decay, "length": length, "form": form, "max_abs_diff": diff, "max_abs_output": scale})
    return rows


def run(args: argparse.Namespace) -> int:
    import torch

    if args.op == "lion-forms":
        print(f"LION forms vs the attention form, fp32, B=2 (right- and left-padded) H={args.heads} D={args.head_dim}")
        print(f"{'L':>7} {'decay':>6} {'form':>6} {'max |diff|':>12} {'max |y|':>9}")
        rows = [r for L in args.lengths for r in form_agreement(L, args.batch, args.heads, args.head_dim, args.chunk_size)]
        for r in rows:
            print(f"{r['length']:>7} {r['decay']:>6} {r['form']:>6} {r['max_abs_diff']:>12.2e} {r['max_abs_output']:>9.3f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows}, f, indent=1)
        return 0

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        print(f"{PROG}: error: --device must be cpu or cuda, got {device!r}", file=sys.stderr)
        return 2
    if device == "cuda" and not torch.cuda.is_available():
        print(f"{PROG}: error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    bad_forms = sorted(set(args.forms) - {"attention", "rnn", "chunk"})
    if bad_forms or min(args.lengths) < 1 or args.repeats < 1:
        print(f"{PROG}: error: forms must be attention/rnn/chunk, lengths and --repeats >= 1", file=sys.stderr)
        return 2
    machine = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
    threads = args.threads or torch.get_num_threads()
    print(
        f"LION attention, {args.mode}, B={args.batch} H={args.heads} D={args.head_dim} decay={args.decay} "
        f"{args.dtype}, {device} ({machine}, {threads} threads), median of {args.repeats}"
    )
    rows = []
    header = f"{'L':>7} {'form':>10} {'median ms':>10} {'peak MiB':>10} {'attention/form':>15}"
    print(header)
    print("-" * len(header))
    forms = sorted(args.forms, key=lambda f: f != "attention")  # the baseline first
    for length in args.lengths:
        baseline = None
        for form in forms:
            case = dict(
                form=form, length=length, batch=args.batch, heads=args.heads, head_dim=args.head_dim,
                decay=args.decay, mode=args.mode, dtype=args.dtype, device=device, chunk_size=args.chunk_size,
                backend=args.backend, repeats=args.repeats, threads=args.threads,
            )
            row = run_case(case)
            if row["status"] == "ok" and form == "attention":
                baseline = row["median_s"]
            if row["status"] == "ok" and baseline is not None:
                row["speedup_vs_attention"] = baseline / row["median_s"]
            rows.append(row)
            if row["status"] == "ok":
                ratio = f"{row['speedup_vs_attention']:.1f}x" if "speedup_vs_attention" in row else "n/a"
                print(f"{length:>7} {form:>10} {row['median_s'] * 1e3:>10.1f} {row['peak_bytes'] / 2**20:>10.0f} {ratio:>15}")
            else:
                print(f"{length:>7} {form:>10}   {row['status']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "threads": threads, "rows": rows}, f, indent=1)
    if args.plot:
        _plot(rows, args.plot, f"LION {args.mode}, B={args.batch} H={args.heads} D={args.head_dim}, {machine}")
    return 0


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows, with the core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def _plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for form in sorted({r["form"] for r in rows}):
        points = [(r["length"], r["median_s"] * 1e3) for r in rows if r["form"] == form and r["status"] == "ok"]
        if points:
            ax.plot(*zip(*points), "o-", label=form)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("median time (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo bench`` and ``python -m bizoo.scripts.bench``."""
    from .common import command_main

    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
