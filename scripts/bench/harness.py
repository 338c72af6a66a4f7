"""How `bizoo bench` measures an op: timed runs, peak memory, one child process per CPU case, the grid of cases.

A case is a dict: its "op" (a name of ``registry.OPS``), "method", "device", "dtype", "modes" ("fwd" and/or
"fwdbwd"), "warmup", "repeats", "threads" and the op's shapes. ``run_case`` measures it and returns mode -> result,
a result being {"status": "ok", "median_ms", "min_ms", "peak_mib", ...} or {"status": why not}:

* on a GPU, in this process: ``warmup`` untimed runs, then CUDA events around each of ``repeats`` runs, the L2 cache
  flushed before each outside them (bench lion and every op checked against a reference: ``measure_op_case``); the
  peak is ``torch.cuda.max_memory_allocated`` above what was allocated before the timed runs;
* on a CPU, in a child process per case (``CHILD_CODE``: the package without its __init__, so each child starts in
  the time torch takes to import), so that its peak (the growth of the peak resident set) is its own; a mode whose
  estimated peak (the op module's ``estimate_bytes``) does not fit in 85% of the free memory is not run.

What the op runs comes from the op's module (``registry.OpBenchmark.module``): ``measure_case(case, report)``, which
builds the inputs and calls ``measure_modes`` or ``measure_op_case`` here. Nothing here is a baseline or a floor:
each op module times its baseline as one of the methods, and ``add_ratios`` divides by it.

Standard library only at module level (torch inside the functions): the child imports this module.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..lib.command import report
from .registry import OPS
from .report import MODES, format_row, write_json

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that is the package `bizoo`
MiB = 2**20
L2_FLUSH_BYTES = 256 * MiB  # written before each timed run of an op on a GPU: over 4x the L2 of an H100/H200


# A CPU case's peak where /proc/self/clear_refs cannot reset the peak resident set: the process's lifetime peak
# (torch's import, the warm-up runs) would be taken for the timed runs' growth, so none is reported.
PEAK_NOT_RESET = "peak not measured: the peak RSS could not be reset here (/proc/self/clear_refs)"


def peak_memory_note(cuda: bool) -> str:
    """What an op benchmark's peak memory is, and (on a GPU) that the L2 cache is flushed before each timed run."""
    if not cuda:
        return "growth of the peak RSS, one process per case"
    return (f"max_memory_allocated above the inputs; the L2 cache flushed before each timed run "
            f"({L2_FLUSH_BYTES // MiB} MiB written, not timed)")


# ----------------------------------------------------------------------------------------------------------------
# Options, devices, settings
# ----------------------------------------------------------------------------------------------------------------


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the rows as JSON (rewritten after each row)")


def add_fp32_products_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tf32", action="store_true",
                   help="fp32 inputs: every matrix product on TF32 tensor cores, cuBLAS's, cuDNN's and bizoo's "
                        "kernels' alike (torch.backends.fp32_precision = 'tf32', as transformers' --tf32); without it "
                        "every one in IEEE fp32, cuDNN's RNNs included (torch's own default lets those take TF32 and "
                        "not cuBLAS): like for like either way")


def fp32_products(args, cuda: bool) -> str:
    """On a GPU, apply ``--tf32`` (where the benchmark has it) to this process's torch and return the setting, "tf32"
    or "ieee": one precision for every fp32 product of every method, so that no method is faster for multiplying with
    fewer bits. (Torch's defaults differ per library: cuDNN's RNNs take TF32, cuBLAS and bizoo's Triton kernels, which
    follow ``torch.backends.cuda.matmul``, do not.) On a CPU every product is IEEE: "ieee", torch left as it is."""
    import torch

    if not hasattr(args, "tf32"):
        return "torch's defaults"
    if not cuda:
        return "ieee"
    precision = "tf32" if args.tf32 else "ieee"
    torch.backends.fp32_precision = precision  # cuBLAS, cuDNN (RNNs and convolutions) and what follows them
    return precision


def fp32_note(settings: dict) -> str:
    """"; fp32 products: IEEE" (or TF32) for a table of fp32 inputs, "" for half inputs (tensor cores either way)."""
    if settings["dtype"] != "float32":
        return ""
    return f"; fp32 products: {'TF32' if settings['fp32_products'] == 'tf32' else 'IEEE'} (--tf32)"


def check_common_arguments(args: argparse.Namespace) -> None:
    """The options several benchmarks share, checked before anything is measured: ``ValueError`` (exit code 2)
    naming the option and what is allowed."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1 (or left out for torch's default), got {threads}")
    for option in ("warmup", "warmup_steps"):
        value = getattr(args, option, None)
        if value is not None and value < 0:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 0, got {value}")
    for option in ("json", "plot"):
        path = getattr(args, option, None)
        if path is None:
            continue
        folder = Path(path).parent
        if not str(path).strip() or Path(path).is_dir():
            raise ValueError(f"--{option} must name a file to write, got {path!r}")
        if not folder.is_dir():
            raise ValueError(f"--{option} {path!r}: its folder {str(folder)!r} does not exist")


def resolve_device(args) -> str:
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


def check_positive(**values) -> None:
    """``ValueError`` naming the option (``--batch-sizes`` for ``batch_sizes``) for a value or list item below 1."""
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        if any(v is not None and v < 1 for v in items):
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def op_settings(args, device: str) -> dict:
    """dtype, repeats and warm-up runs of an op benchmark (the options, else the device's defaults), and the precision
    of fp32 products (``fp32_products``, applied to torch here)."""
    cuda = device == "cuda"
    return {
        "dtype": args.dtype or ("bfloat16" if cuda else "float32"),
        "repeats": args.repeats or (10 if cuda else 3),
        "warmup": args.warmup if args.warmup is not None else (3 if cuda else 1),
        "fp32_products": fp32_products(args, cuda),  # applied here (on a GPU), before anything is measured
    }


def batch_for(length: int, tokens: int, batch: int | None = None) -> int:
    """B = tokens // L (at least 1), unless a batch size is given."""
    return batch if batch else max(1, tokens // length)


def triton_missing(device: str) -> str | None:
    """None when Triton kernels can run on ``device`` here, else why not (on a CPU they need TRITON_INTERPRET=1)."""
    from ...kernels.dispatch import triton_available

    if not triton_available():
        return "the triton package does not import here"
    if device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return "no CUDA device (Triton runs on a CPU only under TRITON_INTERPRET=1)"
    return None


def unavailable_methods(methods, named, device: str, dtype: str, probe_fn) -> dict[str, str]:
    """Why each of ``methods`` cannot run here (``probe_fn(method, device, dtype)``); on a CPU triton also unless
    ``named`` (--methods) names it, as it would run in Triton's interpreter."""
    unavailable = {}
    if device != "cuda" and "triton" in methods and "triton" not in (named or ()):
        unavailable["triton"] = "no CUDA device (name triton in --methods to run it in Triton's interpreter)"
    for method in methods:
        if method not in unavailable and (why := probe_fn(method, device, dtype)) is not None:
            unavailable[method] = why
    return unavailable


# ----------------------------------------------------------------------------------------------------------------
# Memory and small helpers
# ----------------------------------------------------------------------------------------------------------------


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


def available_bytes() -> int | None:
    """The memory available to a new process (MemAvailable), None where /proc/meminfo does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def size(n: float) -> str:
    """``n`` bytes in MiB or GiB, one decimal."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / MiB:.1f} MiB"


def short(err: BaseException, limit: int = 160) -> str:
    """The error's type and the first ``limit`` characters of its first line: a row's status."""
    text = str(err).strip().splitlines()
    text = text[0] if text else ""
    return f"{type(err).__name__}: {text[:limit]}"


def padded_mask(batch: int, length: int, generator):
    """The (B, L) bool mask of a right-padded batch as a model sees it: the first row ``length`` long (the batch is
    padded to its longest row), the others drawn uniformly between length/2 and length with ``generator``."""
    import torch

    lengths = torch.randint((length + 1) // 2, length + 1, (batch,), generator=generator)  # (B,)
    lengths[0] = length
    return torch.arange(length) < lengths[:, None]  # (B, L)


def release_cuda_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# Timing one case
# ----------------------------------------------------------------------------------------------------------------


def time_runs(
    fn, leaves, backward: bool, dout, warmup: int, repeats: int, cuda: bool, cpu_memory: bool = True,
    flush_l2: bool = False,
) -> dict:
    """Median and min ms of ``repeats`` runs after ``warmup`` runs, and the peak memory of the timed runs above what
    was allocated before them: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the growth of the peak
    resident set (reset after the warm-up, which has paged in the code and kernels the runs need), unless
    ``cpu_memory`` is False (a process that runs many cases: the reset gives memory back that the first timed run
    then pays to fault in again); where the peak resident set cannot be reset, no peak but ``peak_note`` (why).
    ``flush_l2`` (a GPU): before each timed run, outside its CUDA events, write a buffer of ``L2_FLUSH_BYTES``, so
    that no run finds its inputs in the L2 cache that the one before left there (the buffer is allocated before the
    peak is reset: it is not part of the peak)."""
    import torch

    def once():
        for t in leaves:
            t.grad = None
        if backward:
            torch.autograd.backward(fn(), dout)  # an output and its gradient, or tuples of them
        else:
            with torch.no_grad():
                fn()

    for _ in range(warmup):
        once()
    for t in leaves:
        t.grad = None
    cpu_peak_reset = False
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda") if cuda and flush_l2 else None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    elif cpu_memory:
        cpu_peak_reset = _reset_peak_rss()  # without it VmHWM is the process's lifetime peak, not the runs'
        base = _rss_bytes()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            if flush is not None:
                flush.zero_()  # after the last run's end event, before this one's start: not timed
            start.record()
            once()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            start = time.perf_counter()
            once()
            times.append((time.perf_counter() - start) * 1e3)
    result = {"status": "ok", "median_ms": statistics.median(times), "min_ms": min(times)}
    if cuda or cpu_peak_reset:
        peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()
        result["peak_mib"] = max(peak - base, 0) / MiB
    elif cpu_memory:
        result["peak_note"] = PEAK_NOT_RESET
    return result


def measure_modes(case: dict, report, leaves, timed, may_be_missing: bool, cuda: bool) -> None:
    """``report(mode, timed(backward))`` for each of ``case["modes"]``, the ``leaves`` requiring gradients in
    forward+backward only. A mode that cannot run is reported with a status instead of times: "oom" (CUDA out of
    memory), "unavailable: ..." (a ValueError from a method that ``may_be_missing``: a Triton backend or an "auto"
    form that is not there) or "failed: ..."; a forward that fails makes the backward fail the same way."""
    import torch

    failed = None
    for mode in case["modes"]:
        if failed is not None:
            report(mode, failed)
            continue
        backward = mode == "fwdbwd"
        for t in leaves:
            t.requires_grad_(backward)
        try:
            result = timed(backward)
        except torch.OutOfMemoryError:
            result = {"status": "oom"}
        except ValueError as err:
            result = {"status": ("unavailable: " if may_be_missing else "failed: ") + short(err)}
        except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
            result = {"status": f"failed: {short(err)}"}
        if result["status"] != "ok":
            if cuda:
                release_cuda_memory()
            if mode == "fwd":
                failed = result
        report(mode, result)


def measure_op_case(case: dict, report, build, may_be_missing: bool) -> None:
    """``measure_modes`` for an op checked against a reference: ``build(device, dtype) -> (fn, leaves, dout,
    agreement)``; each mode timed by ``time_runs`` (gradients to every leaf; on a GPU the L2 cache flushed before
    each timed run, as bench lion's), each result with ``agreement()``: the outputs' agreement with the op's
    reference, checked once, before timing."""
    import torch

    device = torch.device(case["device"])
    cuda = device.type == "cuda"
    try:
        fn, leaves, dout, agreement = build(device, getattr(torch, case["dtype"]))
    except torch.OutOfMemoryError:
        for mode in case["modes"]:
            report(mode, {"status": "oom"})
        return
    checked: dict = {}

    def timed(backward):
        if not checked:
            checked.update(agreement())
        result = time_runs(fn, leaves, backward, dout, case["warmup"], case["repeats"], cuda, flush_l2=cuda)
        return {**result, **checked}

    measure_modes(case, report, leaves, timed, may_be_missing, cuda)


def op_module(case: dict):
    """The module of this package that measures ``case`` (its op's ``registry.OpBenchmark.module``)."""
    op = case.get("op")
    measured = [name for name, bench in OPS.items() if bench.module is not None]
    if op not in measured:
        raise ValueError(f"a case's op must be one of {measured} (the op benchmarks the harness runs), got {op!r}")
    return importlib.import_module(f"{__package__}.{OPS[op].module}")


def measure_case(case: dict, report) -> None:
    """Measure ``case`` (one method at one point of the grid) in each of ``case["modes"]`` with its op module's
    ``measure_case``; ``report(mode, result)`` each."""
    if case.get("threads"):
        import torch

        torch.set_num_threads(case["threads"])
    op_module(case).measure_case(case, report)


def estimate_bytes(case: dict, mode: str) -> int:
    """A rough peak of a CPU case in ``mode``: its op module's ``estimate_bytes``."""
    return op_module(case).estimate_bytes(case, mode)


# ----------------------------------------------------------------------------------------------------------------
# Where a case runs: this process (GPU) or a child process (CPU)
# ----------------------------------------------------------------------------------------------------------------


def child(case_json: str) -> None:
    """The child process of a CPU case: one JSON line per mode on stdout."""

    def send(mode, result):
        report(json.dumps({"mode": mode, **result}))

    measure_case(json.loads(case_json), send)


# The child imports the kernels without running the package's __init__ (which imports transformers and registers
# the models, seconds per process): the kernels import only torch and triton (ARCHITECTURE.md §1, layering), so each
# case starts in the time torch takes to import.
# The start of a child's code (``python -c CODE PACKAGE_ROOT ...``): the package `bizoo` as an empty module over
# PACKAGE_ROOT, so that the child imports what it names without the package's __init__ (transformers and the models:
# seconds). harness's CPU cases, gpu_check's LION parts and kernel-build's builds start with it.
PACKAGE_STUB = (
    "import sys, types\n"
    "package = types.ModuleType('bizoo')\n"
    "package.__path__ = [sys.argv[1]]\n"
    "sys.modules['bizoo'] = package\n"
)
CHILD_CODE = PACKAGE_STUB + "from bizoo.scripts.bench.harness import child\nchild(sys.argv[2])\n"


def run_case_in_child(case: dict) -> dict:
    """Run ``case`` in a child process, skipping the modes whose estimated memory does not fit; mode -> result."""
    available = available_bytes()
    results, modes = {}, []
    for mode in case["modes"]:
        need = estimate_bytes(case, mode)
        if available is not None and need > 0.85 * available:
            results[mode] = {"status": f"not run: needs ~{size(need)}, {size(available)} free"}
        else:
            modes.append(mode)
    if not modes:
        return results
    process = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, str(PACKAGE_ROOT), json.dumps({**case, "modes": modes})],
        capture_output=True,
        text=True,
    )
    for line in process.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            results[result.pop("mode")] = result
    if process.returncode != 0:
        if process.returncode < 0:
            reason = f"killed by signal {-process.returncode} (out of memory?)"
        else:
            lines = process.stderr.strip().splitlines()
            reason = lines[-1][:200] if lines else f"exit code {process.returncode}"
        for mode in modes:
            results.setdefault(mode, {"status": f"failed: {reason}"})
    return results


def run_case(case: dict) -> dict:
    """mode -> result for one case: in this process on a GPU, in a child process on a CPU. On a GPU an error outside
    the timed runs (which ``measure_modes`` records), e.g. while the inputs are built or after an earlier kernel left
    a CUDA error behind, is the status of the modes not yet reported ("oom" or "failed: ..."), as a child's failure
    is on a CPU: the grid goes on and the table keeps its row."""
    if case["device"] != "cuda":
        return run_case_in_child(case)
    import torch

    results = {}
    try:
        measure_case(case, results.__setitem__)
    except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
        status = "oom" if isinstance(err, torch.OutOfMemoryError) else f"failed: {short(err)}"
        for mode in case["modes"]:
            results.setdefault(mode, {"status": status})
    try:
        release_cuda_memory()
    except RuntimeError:  # a CUDA error the device keeps: each case after this one records it as its own
        pass
    return results


# ----------------------------------------------------------------------------------------------------------------
# Rows: a case's results as one row, the ratios, the grid
# ----------------------------------------------------------------------------------------------------------------


def flatten(row: dict, results: dict, modes) -> dict:
    """Add ``results`` (mode -> result) to ``row``: status_<mode>, <mode>_ms, <mode>_min_ms, <mode>_peak_mib, the
    per-case keys (sdpa_backend, max_abs_diff, max_abs_output) and the row's status (every mode's, or each one)."""
    for mode in modes:
        r = results.get(mode, {"status": "not run"})
        row[f"status_{mode}"] = r["status"]
        for key, out in (("median_ms", f"{mode}_ms"), ("min_ms", f"{mode}_min_ms"), ("peak_mib", f"{mode}_peak_mib")):
            if key in r:
                row[out] = r[key]
        for key in ("sdpa_backend", "max_abs_diff", "max_abs_output", "peak_note"):  # per case, not per mode
            if key in r:
                row[key] = r[key]
    statuses = [row[f"status_{m}"] for m in modes]
    if all(s == "ok" for s in statuses):
        row["status"] = "ok"
    elif len(set(statuses)) == 1:
        row["status"] = statuses[0]
    else:
        row["status"] = "; ".join(f"{MODES[m]}: {s}" for m, s in zip(modes, statuses))
    return row


def add_ratios(rows: list[dict], modes, ratios) -> None:
    """speedup_vs_<key>_<mode> = baseline ms / method ms at the same length (> 1: faster than the baseline), for
    each ``registry.Ratio`` of ``ratios``. ``run_grid`` passes the rows of one grid point at a time."""
    for baseline, key, *_ in ratios:
        by_length = {r["length"]: r for r in rows if r["method"] == baseline}
        for r in rows:
            base = by_length.get(r["length"])
            for mode in modes:
                if base and f"{mode}_ms" in base and f"{mode}_ms" in r:
                    r[f"speedup_vs_{key}_{mode}"] = base[f"{mode}_ms"] / r[f"{mode}_ms"]


def run_grid(grid, methods, describe, unavailable: dict, modes, ratios, extra, json_path, meta, shape,
             prior_rows=(), derive=None) -> list[dict]:
    """Measure every method at each point of ``grid`` ((length, batch) for bench lion and bigs) with ``run_case``
    (in this process on a GPU, a child process per case on a CPU) and print each point's rows as soon as they and
    the baselines (the methods of ``ratios``, which come first in ``methods``) are measured; the rows, also written
    to ``json_path`` after each, after the ``prior_rows`` of the same command. ``describe(method, *point)`` -> (the
    row's fields, the case to run); ``derive(row)``, when given, adds columns to a measured row."""
    baselines = sum(m in {b for b, *_ in ratios} for m in methods)
    rows: list[dict] = []
    for point in grid:
        group, printed = [], 0  # this point's rows
        for method in methods:
            row, case = describe(method, *point)
            if method in unavailable:
                results = {m: {"status": f"unavailable: {unavailable[method]}"} for m in modes}
            else:
                results = run_case(case)
            group.append(flatten(row, results, modes))
            if derive is not None:
                derive(row)
            add_ratios(group, modes, ratios)
            rows.append(row)
            write_json(json_path, {**meta, "rows": [*prior_rows, *rows]})
            if len(group) >= baselines:
                for done in group[printed:]:
                    report(format_row(done, modes, ratios, extra, shape))
                printed = len(group)
    return rows
