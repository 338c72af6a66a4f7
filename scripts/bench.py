"""Benchmark bizoo's kernels and models against their baselines, measured in the same run.

`bizoo bench lion` times the LION attention op forward and forward+backward (median ms and peak memory) at each
length L with B·L tokens fixed, against PyTorch's softmax attention (SDPA, FlashAttention on a GPU where the dtype
allows) with the same shapes, and reports each method's speed-up over SDPA and over the reference chunk form
(baseline ms / method ms: > 1 means faster than the baseline). The methods: `sdpa`, `reference-attention` (the
O(L²) form), `reference-chunk`, `reference-rnn`, `reference-auto`, `triton-chunk`, `triton-parallel` (the tiled
form="attention" schedule) and `triton-auto`. On a GPU every case runs in this process (warm-up runs, then CUDA
events; peak = `torch.cuda.max_memory_allocated` above the inputs; out of memory is a row with status "oom").
On a CPU every case runs in its own child process, so that its peak memory (the growth of the peak resident set)
is its own, and a case whose estimated memory does not fit is not run. Methods that cannot run here (Triton
without a GPU, form "auto" before the dispatcher knows it) are rows with an "unavailable" status.

`bizoo bench lion-crossover` times the chunk and the attention forms of each backend forward+backward and prints
the smallest length from which the chunk form is faster: the value for `TRITON_CHUNK_MIN_LENGTH` and
`REFERENCE_CHUNK_MIN_LENGTH` in `bizoo.kernels.lion`, which `form="auto"` uses.

`bizoo bench lion-model` measures masked-LM training throughput (tokens/s of forward + backward + optimizer
step) of LION-D against `transformers.BertForMaskedLM` with SDPA attention, both at BERT-base size by default.

`bizoo bench lion-forms` checks that the forms agree: the max abs difference of the rnn and chunk forms from the
attention form, per decay type, in fp32, on random inputs with padding.

Every table states the machine, the dtype, the shapes and how many runs the median is of.

examples:
  bizoo bench lion                                     # GPU: bf16, L = 512 ... 16384, B·L = 32768, H = 12, D = 64
  bizoo bench lion --device cpu --lengths 1024 4096 --methods sdpa reference-chunk reference-attention
  bizoo bench lion --json lion.json --plot lion.png
  bizoo bench lion-crossover --json crossover.json     # -> TRITON_CHUNK_MIN_LENGTH (GPU), REFERENCE_... (CPU)
  bizoo bench lion-model --lengths 512 4096            # LION-D vs BERT (SDPA) training tokens/s
  bizoo bench lion-model --device cpu --lengths 64 --tokens-per-step 256 --layers 1 --hidden 32 --heads 2
  bizoo bench lion-forms --lengths 1024                # max |rnn - attention|, |chunk - attention| per variant
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROG = "bizoo bench"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder that is the package `bizoo`

# method -> (backend, form) of `bizoo.kernels.lion.lion_attention`; "sdpa" is torch's softmax attention.
LION_METHODS = {
    "reference-attention": ("reference", "attention"),
    "reference-chunk": ("reference", "chunk"),
    "reference-rnn": ("reference", "rnn"),
    "reference-auto": ("reference", "auto"),
    "triton-chunk": ("triton", "chunk"),
    "triton-parallel": ("triton", "attention"),
    "triton-auto": ("triton", "auto"),
}
METHODS = ("sdpa", *LION_METHODS)
DEFAULT_METHODS = {
    "cuda": ("sdpa", "reference-attention", "reference-chunk", "triton-chunk", "triton-parallel", "triton-auto"),
    # On a CPU Triton runs only in its interpreter (TRITON_INTERPRET=1), whose timings mean nothing: name the
    # triton-* methods in --methods to run them anyway (the tests do, on tiny shapes).
    "cpu": ("sdpa", "reference-attention", "reference-chunk"),
}
MODES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}  # JSON key -> column label
CROSSOVER_CONSTANTS = {"triton": "TRITON_CHUNK_MIN_LENGTH", "reference": "REFERENCE_CHUNK_MIN_LENGTH"}
MiB = 2**20


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


def _device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the rows as JSON (rewritten after each row)")


def _op_arguments(p: argparse.ArgumentParser, lengths: list[int], repeats_help: str) -> None:
    _device_arguments(p)
    p.add_argument("--lengths", type=int, nargs="+", default=lengths, help="sequence lengths L (default: %(default)s)")
    p.add_argument("--tokens", type=int, default=32768,
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="op", metavar="OP", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("lion", help="the LION op vs SDPA: forward and forward+backward time and memory",
                       description=__doc__, formatter_class=fmt)
    _op_arguments(p, [512, 1024, 2048, 4096, 8192, 16384], "timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=None, metavar="METHOD",
                   help="what to time (default on cuda: sdpa, reference-attention, reference-chunk, triton-chunk, "
                        "triton-parallel, triton-auto; on cpu: sdpa, reference-attention, reference-chunk)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="fwd (no autograd) and/or fwdbwd (forward + backward) (default: both)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot time against length (log-log)")

    p = sub.add_parser("lion-crossover", help="the length from which the chunk form beats the attention form",
                       description=__doc__, formatter_class=fmt)
    _op_arguments(p, [128, 256, 512, 1024, 2048, 4096], "timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--backends", nargs="+", choices=["triton", "reference"], default=None,
                   help="backends to measure (default: triton on cuda, reference on cpu)")

    p = sub.add_parser("lion-model", help="masked-LM training tokens/s: LION-D vs BERT with SDPA",
                       description=__doc__, formatter_class=fmt)
    _device_arguments(p)
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 4096],
                   help="sequence lengths L (default: %(default)s)")
    p.add_argument("--tokens-per-step", type=int, default=16384,
                   help="tokens per step: B = tokens // L (default: %(default)s)")
    p.add_argument("--backend", choices=["auto", "triton", "reference"], default="auto",
                   help="LION kernel_backend (default: %(default)s)")
    p.add_argument("--form", choices=["auto", "attention", "chunk", "rnn"], default="auto",
                   help="LION lion_form (default: %(default)s; chunk where 'auto' is not available yet)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 5 on cuda, 2 on cpu)")
    p.add_argument("--warmup-steps", type=int, default=None, help="untimed steps first (default: 2 on cuda, 1 on cpu)")
    p.add_argument("--layers", type=int, default=12, help="layers of both models (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=768, help="hidden size (default: %(default)s)")
    p.add_argument("--heads", type=int, default=12, help="attention heads (default: %(default)s)")
    p.add_argument("--intermediate", type=int, default=None, help="feed-forward size (default: 4 × hidden)")
    p.add_argument("--vocab-size", type=int, default=30522, help="vocabulary (default: %(default)s, BERT's)")
    p.add_argument("--dense-logits", action="store_true",
                   help="LION projects every position onto the vocabulary like BERT does (default: only the masked "
                        "positions, LION's sparse_prediction)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on cuda")

    p = sub.add_parser("lion-forms", help="max difference of the rnn and chunk forms from the attention form",
                       description=__doc__, formatter_class=fmt)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024], help="sequence lengths L (default: %(default)s)")
    p.add_argument("--batch", type=int, default=2, help="batch size B, at least 2 (default: %(default)s)")
    p.add_argument("--heads", type=int, default=12, help="heads H (default: %(default)s)")
    p.add_argument("--head-dim", type=int, default=64, help="head size D (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunk form (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")


# ----------------------------------------------------------------------------------------------------------------
# Machine, memory, small helpers
# ----------------------------------------------------------------------------------------------------------------


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


def machine_name(device: str) -> str:
    import torch

    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        memory = f"{props.total_memory / 2**30:.0f} GiB"
        return f"{props.name} ({memory}), CUDA {torch.version.cuda}, torch {torch.__version__}"
    return f"{_cpu_name()} ({torch.get_num_threads()} threads), torch {torch.__version__}"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Give freed heap memory back to the system (glibc's malloc_trim), then reset the process's peak resident set
    to its current size (Linux >= 4.0); False where the reset is not possible."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """The peak resident set (VmHWM, which ``_reset_peak_rss`` resets), else getrusage's lifetime maximum."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / MiB:.1f} MiB"


def _short(err: BaseException, limit: int = 160) -> str:
    text = str(err).strip().splitlines()
    text = text[0] if text else ""
    return f"{type(err).__name__}: {text[:limit]}"


def _release_cuda_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, path)


def _resolve_device(args) -> str:
    """``--device`` or the default; raises ValueError (exit code 2) for a device that is not there."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    return device


def _check_positive(**values) -> None:
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        if any(v is not None and v < 1 for v in items):
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def batch_for(length: int, tokens: int, batch: int | None = None) -> int:
    """B = tokens // L (at least 1), unless a batch size is given."""
    return batch if batch else max(1, tokens // length)


def lion_constant(name: str):
    """The current value of a crossover constant of ``bizoo.kernels.lion`` (None when it does not exist)."""
    from ..kernels import lion

    return getattr(lion, name, None)


# ----------------------------------------------------------------------------------------------------------------
# One op case: inputs, the call, the timing (in this process on a GPU, in a child process on a CPU)
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


def _op_function(case: dict, q, k, v, log_decay):
    """A function that runs the case's method once and returns its output; and a note (the SDPA backend)."""
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

    from ..kernels.lion import lion_attention

    backend, form = LION_METHODS[case["method"]]

    def lion():
        return lion_attention(q, k, v, log_decay, form=form, chunk_size=case["chunk_size"], backend=backend)

    return lion, None


def _time_runs(fn, leaves, backward: bool, dout, warmup: int, repeats: int, cuda: bool) -> dict:
    """Median and min ms of ``repeats`` runs after ``warmup`` runs, and the peak memory of the timed runs above what
    was allocated before them: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the growth of the peak
    resident set (reset after the warm-up, which has paged in the code and kernels the runs need)."""
    import torch

    def once():
        for t in leaves:
            t.grad = None
        if backward:
            fn().backward(dout)
        else:
            with torch.no_grad():
                fn()

    for _ in range(warmup):
        once()
    for t in leaves:
        t.grad = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _reset_peak_rss()
        base = _rss_bytes()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            once()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            once()
            times.append((time.perf_counter() - start) * 1e3)
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()
    return {"status": "ok", "median_ms": statistics.median(times), "min_ms": min(times),
            "peak_mib": max(peak - base, 0) / MiB}


def measure_case(case: dict, report) -> None:
    """Measure ``case`` (one method at one length) in each of ``case["modes"]``; ``report(mode, result)`` each.

    A mode that cannot run is reported with a status instead of times: "oom" (CUDA out of memory), "unavailable:
    ..." (a ValueError from a Triton or "auto" method: the backend or form is not there) or "failed: ...".
    """
    import torch

    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    cuda = device.type == "cuda"
    dtype = getattr(torch, case["dtype"])
    may_be_missing = case["method"] != "sdpa" and (
        LION_METHODS[case["method"]][0] == "triton" or LION_METHODS[case["method"]][1] == "auto"
    )
    try:
        q, k, v, log_decay, dout = _inputs(case, device, dtype)
    except torch.OutOfMemoryError:
        for mode in case["modes"]:
            report(mode, {"status": "oom"})
        return
    fn, note = _op_function(case, q, k, v, log_decay)
    leaves = [q, k, v] + ([log_decay] if log_decay is not None else [])
    failed = None  # a forward that fails makes the backward fail the same way
    for mode in case["modes"]:
        if failed is not None:
            report(mode, failed)
            continue
        backward = mode == "fwdbwd"
        for t in leaves:
            t.requires_grad_(backward)
        try:
            try:
                result = _time_runs(fn, leaves, backward, dout, case["warmup"], case["repeats"], cuda)
            except RuntimeError as err:
                if note != "flash" or isinstance(err, torch.OutOfMemoryError):
                    raise
                # FlashAttention refused these shapes: PyTorch's default SDPA choice instead.
                note = f"default (flash refused: {_short(err, 60)})"
                fn = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
                result = _time_runs(fn, leaves, backward, dout, case["warmup"], case["repeats"], cuda)
        except torch.OutOfMemoryError:
            result = {"status": "oom"}
        except ValueError as err:
            result = {"status": ("unavailable: " if may_be_missing else "failed: ") + _short(err)}
        except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
            result = {"status": f"failed: {_short(err)}"}
        if result["status"] != "ok":
            if cuda:
                _release_cuda_memory()
            if mode == "fwd":
                failed = result
        if note is not None:
            result["sdpa_backend"] = note
        report(mode, result)


def _child(case_json: str) -> None:
    """The child process of a CPU case: one JSON line per mode on stdout."""

    def report(mode, result):
        print(json.dumps({"mode": mode, **result}), flush=True)

    measure_case(json.loads(case_json), report)


# The child imports the kernels without running the package's __init__ (which imports transformers and registers
# the models, seconds per process): the kernels import only torch and triton (DESIGN.md §1, layering), so each case
# starts in the time torch takes to import.
_CHILD_CODE = (
    "import sys, types\n"
    "package = types.ModuleType('bizoo')\n"
    "package.__path__ = [sys.argv[1]]\n"
    "sys.modules['bizoo'] = package\n"
    "from bizoo.scripts.bench import _child\n"
    "_child(sys.argv[2])\n"
)


def estimate_bytes(case: dict, mode: str) -> int:
    """A rough peak of a CPU case, fp32 inside: the O(L²) attention form holds ~3 (B, H, L, L) buffers at once
    (measured: 2.3 GiB at B=1, H=12, L=4096), twice that with the backward pass; every other method is O(L)."""
    B, H, L, D = case["batch"], case["heads"], case["length"], case["head_dim"]
    factor = 2 if mode == "fwdbwd" else 1
    if case["method"] == "sdpa":
        return 16 * B * H * L * D * 4 * factor
    backend, form = LION_METHODS[case["method"]]
    if form == "auto":
        crossover = lion_constant(CROSSOVER_CONSTANTS[backend])
        form = "chunk" if crossover is None or L >= crossover else "attention"
    if form == "attention" and backend == "reference":
        return 3 * B * H * L * L * 4 * factor
    per_token = 16 if backend == "triton" else 40
    return per_token * B * H * L * D * 4 * factor


def run_case_in_child(case: dict) -> dict:
    """Run ``case`` in a child process, skipping the modes whose estimated memory does not fit; mode -> result."""
    available = _available_bytes()
    results, modes = {}, []
    for mode in case["modes"]:
        need = estimate_bytes(case, mode)
        if available is not None and need > 0.85 * available:
            results[mode] = {"status": f"not run: needs ~{_size(need)}, {_size(available)} free"}
        else:
            modes.append(mode)
    if not modes:
        return results
    child = subprocess.run(
        [sys.executable, "-c", _CHILD_CODE, str(PACKAGE_ROOT), json.dumps({**case, "modes": modes})],
        capture_output=True,
        text=True,
    )
    for line in child.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            results[result.pop("mode")] = result
    if child.returncode != 0:
        if child.returncode < 0:
            reason = f"killed by signal {-child.returncode} (out of memory?)"
        else:
            lines = child.stderr.strip().splitlines()
            reason = lines[-1][:200] if lines else f"exit code {child.returncode}"
        for mode in modes:
            results.setdefault(mode, {"status": f"failed: {reason}"})
    return results


def run_case(case: dict) -> dict:
    """mode -> result for one case: in this process on a GPU, in a child process on a CPU."""
    if case["device"] != "cuda":
        return run_case_in_child(case)
    results = {}
    measure_case(case, results.__setitem__)
    _release_cuda_memory()
    return results


def probe(method: str, device: str, dtype: str) -> str | None:
    """None when ``method`` can run here, else why not (a tiny call; Triton on a CPU needs TRITON_INTERPRET=1)."""
    if method == "sdpa":
        return None
    backend, form = LION_METHODS[method]
    if backend == "triton":
        from ..kernels.dispatch import triton_available

        if not triton_available():
            return "the triton package does not import here"
        if device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            return "no CUDA device (Triton runs on a CPU only under TRITON_INTERPRET=1)"
    import torch

    from ..kernels.lion import lion_attention

    x = torch.rand(1, 1, 32, 16, device=device).to(getattr(torch, dtype)) + 0.1  # (B, H, L, D)
    try:
        with torch.no_grad():
            lion_attention(x, x, x, None, form=form, chunk_size=16, backend=backend)
    except Exception as err:  # noqa: BLE001 - whatever stops the tiny call stops the real one
        return _short(err)
    return None


def _settings(args, device: str) -> dict:
    cuda = device == "cuda"
    return {
        "dtype": args.dtype or ("bfloat16" if cuda else "float32"),
        "repeats": args.repeats or (10 if cuda else 3),
        "warmup": args.warmup if args.warmup is not None else (3 if cuda else 1),
    }


def _header(title: str, device: str, settings: dict, args, extra: str = "") -> str:
    shapes = (
        f"B = {args.batch}" if args.batch else f"B·L = {args.tokens} tokens (B = tokens // L)"
    ) + f", H = {args.heads}, D = {args.head_dim}, decay {args.decay}, chunk size {args.chunk_size}"
    return (
        f"{title}\nmachine: {machine_name(device)}\ndtype: {settings['dtype']}; shapes: {shapes}{extra}\n"
        f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)"
    )


# ----------------------------------------------------------------------------------------------------------------
# bench lion
# ----------------------------------------------------------------------------------------------------------------


def _flatten(row: dict, results: dict, modes) -> dict:
    for mode in modes:
        r = results.get(mode, {"status": "not run"})
        row[f"status_{mode}"] = r["status"]
        for key, out in (("median_ms", f"{mode}_ms"), ("min_ms", f"{mode}_min_ms"), ("peak_mib", f"{mode}_peak_mib")):
            if key in r:
                row[out] = r[key]
        if "sdpa_backend" in r:
            row["sdpa_backend"] = r["sdpa_backend"]
    statuses = [row[f"status_{m}"] for m in modes]
    if all(s == "ok" for s in statuses):
        row["status"] = "ok"
    elif len(set(statuses)) == 1:
        row["status"] = statuses[0]
    else:
        row["status"] = "; ".join(f"{MODES[m]}: {s}" for m, s in zip(modes, statuses))
    return row


def add_ratios(rows: list[dict], modes) -> None:
    """speedup_vs_<baseline>_<mode> = baseline ms / method ms at the same length (> 1: faster than the baseline)."""
    for baseline, key in (("sdpa", "sdpa"), ("reference-chunk", "reference_chunk")):
        by_length = {r["length"]: r for r in rows if r["method"] == baseline}
        for r in rows:
            base = by_length.get(r["length"])
            for mode in modes:
                if base and f"{mode}_ms" in base and f"{mode}_ms" in r:
                    r[f"speedup_vs_{key}_{mode}"] = base[f"{mode}_ms"] / r[f"{mode}_ms"]


def _format_row(r: dict, modes) -> str:
    def num(key, fmt):
        return format(r[key], fmt) if key in r else "-"

    cells = [f"{r['length']:>6}", f"{r['batch']:>4}", f"{r['method']:<20}"]
    cells += [f"{num(f'{m}_ms', '.2f'):>10}" for m in modes]
    cells += [f"{num(f'{m}_peak_mib', '.0f'):>11}" for m in modes]
    for key, width in (("sdpa", 12), ("reference_chunk", 13)):
        cells += [f"{num(f'speedup_vs_{key}_{m}', '.2f'):>{width}}" for m in modes]
    return " ".join(cells) + ("" if r["status"] == "ok" else f"  {r['status']}")


def _table_head(modes) -> str:
    cells = [f"{'L':>6}", f"{'B':>4}", f"{'method':<20}"]
    cells += [f"{MODES[m] + ' ms':>10}" for m in modes]
    cells += [f"{MODES[m] + ' MiB':>11}" for m in modes]
    cells += [f"{'sdpa/' + MODES[m]:>12}" for m in modes]
    cells += [f"{'chunk/' + MODES[m]:>13}" for m in modes]
    line = " ".join(cells) + "  status"
    return line + "\n" + "-" * len(line)


def run_lion(args) -> int:
    device = _resolve_device(args)
    _check_positive(lengths=args.lengths, tokens=args.tokens, batch=args.batch, heads=args.heads,
                    head_dim=args.head_dim, chunk_size=args.chunk_size, repeats=args.repeats)
    settings = _settings(args, device)
    methods = list(dict.fromkeys(args.methods or DEFAULT_METHODS[device]))
    methods.sort(key=lambda m: m not in ("sdpa", "reference-chunk"))  # the baselines first
    baselines = sum(m in ("sdpa", "reference-chunk") for m in methods)
    modes = [m for m in MODES if m in args.modes]
    unavailable = {m: why for m in methods if (why := probe(m, device, settings["dtype"])) is not None}
    interpreted = device == "cpu" and any(LION_METHODS.get(m, ("",))[0] == "triton" for m in methods)
    sdpa_note = "FlashAttention" if device == "cuda" and settings["dtype"] != "float32" else "PyTorch's default choice"
    print(_header(
        "LION attention op vs SDPA softmax attention (same shapes), forward and forward+backward",
        device, settings, args,
        f"\nSDPA backend: {sdpa_note}; peak memory: "
        + ("max_memory_allocated above the inputs" if device == "cuda"
           else "growth of the peak RSS, one process per case")
        + ("\nnote: triton-* on a CPU run in Triton's interpreter: their times mean nothing" if interpreted else ""),
    ))
    print("sdpa/x, chunk/x: speed-up = SDPA (reference-chunk) ms / method ms, > 1 is faster than the baseline")
    print(_table_head(modes))
    meta = {
        "op": "lion", "machine": machine_name(device), "device": device, **settings, "tokens": args.tokens,
        "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay, "chunk_size": args.chunk_size,
        "modes": modes, "methods": methods,
    }
    rows: list[dict] = []
    for length in args.lengths:
        batch = batch_for(length, args.tokens, args.batch)
        group, printed = [], 0  # this length's rows: printed as soon as they and the baselines are measured
        for method in methods:
            backend, form = LION_METHODS.get(method, ("torch", "softmax"))
            row = {
                "method": method, "backend": backend, "form": form, "length": length, "batch": batch,
                "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay, "dtype": settings["dtype"],
                "device": device,
            }
            if method in unavailable:
                results = {m: {"status": f"unavailable: {unavailable[method]}"} for m in modes}
            else:
                case = {**row, **settings, "modes": modes, "chunk_size": args.chunk_size, "threads": args.threads}
                results = run_case(case)
            group.append(_flatten(row, results, modes))
            add_ratios(group, modes)
            rows.append(row)
            _write_json(args.json, {**meta, "rows": rows})
            if len(group) >= baselines:
                for done in group[printed:]:
                    print(_format_row(done, modes), flush=True)
                printed = len(group)
    if args.plot:
        try:
            plot_lion(rows, modes, args.plot, f"LION op vs SDPA, {meta['machine']}\n{settings['dtype']}, "
                      f"H={args.heads} D={args.head_dim} decay {args.decay}, median of {settings['repeats']}")
        except ImportError as err:  # the table and the JSON are the results; the plot is a view of them
            print(f"no plot: {_short(err)}")
    return 0


def plot_lion(rows: list[dict], modes, path: str, title: str) -> None:
    """Time against L, log-log, one line per method; one panel per mode (forward, forward+backward)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for method in dict.fromkeys(r["method"] for r in rows):
            points = [(r["length"], r[f"{mode}_ms"]) for r in rows if r["method"] == method and f"{mode}_ms" in r]
            if points:
                ax.plot(*zip(*points), "o-", label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L (B·L fixed)")
        ax.set_ylabel("median time (ms)")
        ax.set_title(MODES[mode])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    device = _resolve_device(args)
    _check_positive(lengths=args.lengths, tokens=args.tokens, batch=args.batch, heads=args.heads,
                    head_dim=args.head_dim, chunk_size=args.chunk_size, repeats=args.repeats)
    settings = _settings(args, device)
    backends = list(dict.fromkeys(args.backends or (["triton"] if device == "cuda" else ["reference"])))
    lengths = sorted(set(args.lengths))
    interpreted = device == "cpu" and "triton" in backends
    print(_header("LION chunk form vs attention form, forward+backward: where does chunk start to win?",
                  device, settings, args,
                  "\nnote: triton on a CPU runs in Triton's interpreter: its times mean nothing"
                  if interpreted else ""))
    meta = {"op": "lion-crossover", "machine": machine_name(device), "device": device, **settings,
            "tokens": args.tokens, "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay,
            "chunk_size": args.chunk_size}
    rows, summary = [], {}
    head = f"{'backend':<10} {'L':>6} {'B':>5} {'chunk ms':>10} {'attention ms':>13} {'attn/chunk':>10}  faster"
    print(head + "\n" + "-" * len(head))
    for backend in backends:
        methods = {"chunk": f"{backend}-chunk",
                   "attention": "triton-parallel" if backend == "triton" else "reference-attention"}
        why = next((w for m in methods.values() if (w := probe(m, device, settings["dtype"])) is not None), None)
        points = []
        for length in lengths:
            batch = batch_for(length, args.tokens, args.batch)
            row = {"backend": backend, "length": length, "batch": batch}
            for form, method in methods.items():
                case = {"method": method, "length": length, "batch": batch, "heads": args.heads,
                        "head_dim": args.head_dim, "decay": args.decay, "dtype": settings["dtype"], "device": device,
                        **settings, "modes": ["fwdbwd"], "chunk_size": args.chunk_size, "threads": args.threads}
                available = _available_bytes() if device == "cpu" else None
                need = estimate_bytes(case, "fwdbwd")
                if why is not None:
                    result = {"status": f"unavailable: {why}"}
                elif available is not None and need > 0.85 * available:
                    result = {"status": f"not run: needs ~{_size(need)}, {_size(available)} free"}
                else:  # timing only: in this process on either device
                    out = {}
                    measure_case(case, out.__setitem__)
                    result = out["fwdbwd"]
                    _release_cuda_memory()
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
            print(f"{backend:<10} {length:>6} {batch:>5} {cells[0]:>10} {cells[1]:>13} {cells[2]:>10}  "
                  f"{faster}{status}", flush=True)
            _write_json(args.json, {**meta, "rows": rows, "crossover": summary})
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
        print(f"=> {constant} ({backend} on {device}): measured {text}; current value {s['current']}", flush=True)
    _write_json(args.json, {**meta, "rows": rows, "crossover": summary})
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench lion-model
# ----------------------------------------------------------------------------------------------------------------


def _model_form(args, device: str) -> tuple[str, str | None]:
    """The lion_form to use and a note: "auto" falls back to "chunk" where the config or the op lacks it."""
    if args.form != "auto":
        return args.form, None
    from .. import LionConfig

    try:
        LionConfig(lion_form="auto")
    except ValueError as err:
        return "chunk", f"lion_form='auto' not accepted by LionConfig ({_short(err, 100)}): chunk instead"
    import torch

    from ..kernels.lion import lion_attention

    x = torch.rand(1, 1, 32, 16, device=device) + 0.1
    try:
        lion_attention(x, x, x, None, form="auto", backend=args.backend)
    except Exception as err:  # noqa: BLE001
        return "chunk", f"form='auto' not available in the op ({_short(err, 100)}): chunk instead"
    return "auto", None


def _build_model(name: str, args, length: int, form: str):
    from transformers import BertConfig, BertForMaskedLM

    from .. import LionConfig, LionForMaskedLM

    sizes = dict(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                 intermediate_size=args.intermediate or 4 * args.hidden, max_position_embeddings=length,
                 vocab_size=args.vocab_size)
    if name == "bert-sdpa":
        return BertForMaskedLM(BertConfig(**sizes, attn_implementation="sdpa"))
    config = LionConfig(lion_variant="d", kernel_backend=args.backend, lion_form=form,
                        sparse_prediction=not args.dense_logits, **sizes)
    return LionForMaskedLM(config)


def _train_steps(name: str, args, length: int, batch: int, form: str, device: str, steps: int, warmup: int) -> dict:
    """Build the model and time optimizer steps; everything it allocates dies with this frame."""
    import torch

    cuda = device == "cuda"
    torch.manual_seed(0)
    model = _build_model(name, args, length, form).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(5, args.vocab_size, (batch, length), generator=g)  # (B, L)
    chosen = torch.rand(batch, length, generator=g) < 0.15
    chosen[:, 0] = True  # at least one label per row
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))  # (B, L): 15% of the positions
    ids, labels = ids.to(device), labels.to(device)
    amp = cuda and not args.no_amp

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {"status": "ok", "parameters": params, "step_ms": median * 1e3, "tokens_per_s": batch * length / median}
    if cuda:
        result["peak_mib"] = torch.cuda.max_memory_allocated() / MiB
    return result


def run_model(args) -> int:
    import torch

    device = _resolve_device(args)
    _check_positive(lengths=args.lengths, tokens_per_step=args.tokens_per_step, steps=args.steps, layers=args.layers,
                    hidden=args.hidden, heads=args.heads, intermediate=args.intermediate, vocab_size=args.vocab_size)
    if args.hidden % args.heads:
        raise ValueError(f"--hidden ({args.hidden}) must be a multiple of --heads ({args.heads})")
    cuda = device == "cuda"
    steps = args.steps or (5 if cuda else 2)
    warmup = args.warmup_steps if args.warmup_steps is not None else (2 if cuda else 1)
    form, note = _model_form(args, device)
    precision = "bf16 autocast, fp32 weights" if cuda and not args.no_amp else "fp32"
    intermediate = args.intermediate or 4 * args.hidden
    print("Masked-LM training throughput (forward + backward + AdamW step), LION-D vs BERT (SDPA attention)")
    print(f"machine: {machine_name(device)}")
    print(f"dtype: {precision}; shapes: {args.layers} layers x {args.hidden}, {args.heads} heads, feed-forward "
          f"{intermediate}, vocabulary {args.vocab_size}; B·L = {args.tokens_per_step} tokens per step "
          f"(B = tokens // L); 15% of the positions labelled")
    print(f"LION: lion_variant='d', lion_form={form!r}, kernel_backend={args.backend!r}, "
          f"{'dense' if args.dense_logits else 'sparse (masked positions only)'} MLM logits"
          + (f"\nnote: {note}" if note else "") + "; BERT: full MLM logits")
    print(f"median of {steps} steps after {warmup} warm-up step(s)")
    head = (f"{'L':>6} {'B':>4} {'model':<10} {'params':>8} {'step ms':>9} {'tokens/s':>10} {'peak MiB':>9} "
            f"{'LION/BERT':>10}")
    print(head + "\n" + "-" * len(head))
    meta = {"op": "lion-model", "machine": machine_name(device), "device": device, "precision": precision,
            "layers": args.layers, "hidden": args.hidden, "heads": args.heads, "intermediate": intermediate,
            "vocab_size": args.vocab_size, "tokens_per_step": args.tokens_per_step, "steps": steps,
            "warmup_steps": warmup, "lion_form": form, "kernel_backend": args.backend, "note": note}
    rows = []
    for length in args.lengths:
        batch = batch_for(length, args.tokens_per_step)
        group = {}
        for name in ("bert-sdpa", "lion-d"):
            try:
                result = _train_steps(name, args, length, batch, form, device, steps, warmup)
            except torch.OutOfMemoryError:
                result = {"status": "oom"}
            except Exception as err:  # noqa: BLE001 - a row records the failure
                result = {"status": f"failed: {_short(err)}"}
            _release_cuda_memory()
            group[name] = {"model": name, "length": length, "batch": batch, **result}
        bert, lion = group["bert-sdpa"], group["lion-d"]
        if "tokens_per_s" in bert and "tokens_per_s" in lion:
            lion["speedup_vs_bert"] = lion["tokens_per_s"] / bert["tokens_per_s"]
        for r in group.values():
            cells = [f"{length:>6}", f"{batch:>4}", f"{r['model']:<10}"]
            if r["status"] == "ok":
                peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "-"
                ratio = f"{r['speedup_vs_bert']:.2f}" if "speedup_vs_bert" in r else "-"
                count = r["parameters"]
                params = f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}k"
                cells += [f"{params:>8}", f"{r['step_ms']:>9.1f}", f"{r['tokens_per_s']:>10.0f}",
                          f"{peak:>9}", f"{ratio:>10}"]
            else:
                cells.append(f"  {r['status']}")
            print(" ".join(cells), flush=True)
        rows += list(group.values())
        _write_json(args.json, {**meta, "rows": rows})
    print("LION/BERT: LION tokens/s / BERT tokens/s (> 1: LION trains faster)")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench lion-forms
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
    _check_positive(lengths=args.lengths, heads=args.heads, head_dim=args.head_dim, chunk_size=args.chunk_size)
    B = max(args.batch, 2)
    print(f"LION forms vs the attention form, reference backend, fp32, B={B} (right- and left-padded) "
          f"H={args.heads} D={args.head_dim}, chunk size {args.chunk_size}; machine: {machine_name('cpu')}")
    print(f"{'L':>7} {'decay':>6} {'form':>6} {'max |diff|':>12} {'max |y|':>9}")
    rows = [r for L in args.lengths for r in form_agreement(L, B, args.heads, args.head_dim, args.chunk_size)]
    for r in rows:
        print(f"{r['length']:>7} {r['decay']:>6} {r['form']:>6} {r['max_abs_diff']:>12.2e} {r['max_abs_output']:>9.3f}")
    _write_json(args.json, {"op": "lion-forms", "rows": rows})
    return 0


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------

RUNNERS = {"lion": run_lion, "lion-crossover": run_crossover, "lion-model": run_model, "lion-forms": run_forms}


def run(args: argparse.Namespace) -> int:
    from .common import run_command

    return run_command(f"{PROG} {args.op}", lambda: RUNNERS[args.op](args))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo bench`` and ``python -m bizoo.scripts.bench``."""
    from .common import command_main

    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
