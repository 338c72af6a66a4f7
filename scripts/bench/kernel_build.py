"""`bizoo bench kernel-build`: build every Triton kernel for a GPU architecture on a machine without one.

Triton's interpreter (``TRITON_INTERPRET=1``, what the test suite runs the kernels on without a GPU) executes a
kernel's Python with NumPy: it never lowers the kernel to machine code, so what only the compiler refuses (a dot
whose operands it cannot lay out, a block too large for shared memory, a type the target lacks, a construct one
Triton release compiles and another does not) first shows on a GPU. This tool shows it on any machine: it runs each
op's public functions (forward and backward) on small CPU tensors with a compile-only Triton driver installed, which
answers Triton's questions about the device as a GPU of ``--arch`` would (the target, 227 KB of shared memory per
block on sm_90, 65,536 registers per multiprocessor), builds each kernel the call launches, PTX to cubin with the
``ptxas`` Triton ships, and launches nothing. The outputs are therefore never computed; only the builds are checked.

Each built kernel is a row: the op, the kernel, its specialisation (the constexpr arguments), warps and pipeline
stages, the registers per thread, the stack (register spills and local arrays, bytes per thread) and shared memory
per block read from the cubin (Triton's ``cuobjdump --dump-resource-usage``), and the threads per block that many
registers allow (a block whose warps need more registers than a multiprocessor has cannot launch). The driver hands
Triton the architecture's shared memory per block and those threads, and Triton refuses the launch as it would on
the GPU: a row fails where the build raises or Triton refuses it and the op has no smaller block to run (exit code 1
when any row fails); a refusal the op recovers from (LION's chunk schedule halves its chunk) is a "refused" row.

The cases are a covering set of what the models, the tests and the benchmarks launch: each op in fp32, fp16 and bf16,
with and without padding, at a length that is a multiple of the tiles and one that is not, every decay of LION with and
without the normaliser, both of its schedules (chunk, at each chunk size, and the tiled attention form) and fp32 chunk
states, fp32 inputs with IEEE products (torch's default) and with TF32 allowed (where the user allows it for fp32 matrix
products, LION's and the SSM's products take it too); the CRF's likelihood (forward and backward), Viterbi,
max-marginals and marginals at 9 and 45 tags; the LSTM's steps with and without projection and clipping (ELMo's original
sizes among them); BiGS's SSM op. By default each kernel is built in the configuration the tests and benchmarks run
(``BIZOO_TRITON_AUTOTUNE=0``: the first); ``--all-configs`` builds every configuration the autotuner would try.

The builds run in a child process without ``TRITON_INTERPRET`` (under it Triton makes interpreted kernels, which
build nothing) and with Triton's cache: a kernel built before by the same Triton is read back, not rebuilt.

examples:
  bizoo bench kernel-build                          # every op, sm_90 (H100, H200), the first configurations
  bizoo bench kernel-build --ops lion --all-configs --json lion_build.json
  bizoo bench kernel-build --arch 89                # L4, L40, RTX 4090: 99 KB of shared memory per block
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..lib.command import report
from .harness import PACKAGE_ROOT, PACKAGE_STUB
OPS = ("lion", "crf", "lstm", "ssm")
# Shared memory a block may use (the opt-in maximum, bytes) on each architecture --arch accepts; 64K 32-bit
# registers per multiprocessor on all of them.
MAX_SHARED = {80: 166_912, 86: 101_376, 89: 101_376, 90: 232_448, 100: 232_448, 120: 101_376}
REGISTERS_PER_SM = 65_536


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", type=int, default=90, choices=sorted(MAX_SHARED),
                   help="compute capability to build for, as one number (default: %(default)s, Hopper)")
    p.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS), help="ops to build (default: all)")
    p.add_argument("--all-configs", action="store_true",
                   help="every autotune configuration (default: the first, what BIZOO_TRITON_AUTOTUNE=0 runs)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")


def triton_tools() -> Path:
    """The folder of the CUDA tools Triton's Linux x86-64 wheels ship (ptxas, cuobjdump)."""
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def max_threads(registers: int, warp_size: int = 32) -> int:
    """Threads per block that ``registers`` per thread allow: registers go to warps in units of 256 (8 per thread),
    and a block's warps share one multiprocessor's 65,536 (at most 1024 threads)."""
    per_warp = -(-max(registers, 1) // 8) * 8 * warp_size
    return min(1024, REGISTERS_PER_SM // per_warp * warp_size)


def resource_usage(text: str) -> dict:
    """REG, STACK, SHARED and LOCAL of the one function in ``cuobjdump --dump-resource-usage`` output."""
    usage = {}
    for line in text.splitlines():
        for field in line.split():
            name, _, value = field.partition(":")
            if name in ("REG", "STACK", "SHARED", "LOCAL") and value.isdigit():
                usage[name.lower()] = int(value)
    return usage


# ----------------------------------------------------------------------------------------------------------------
# The child: a compile-only driver, and the cases
# ----------------------------------------------------------------------------------------------------------------


_LOADED = object()  # the "module" of a built kernel: not None, so Triton loads each kernel once


class _Utils:
    """The driver's ``utils``: "loading" a cubin reads its resources and checks the launch limits instead."""

    def __init__(self, arch: int, rows: list):
        self.arch, self.rows = arch, rows

    def get_device_properties(self, device) -> dict:
        return {"max_shared_mem": MAX_SHARED[self.arch], "multiprocessor_count": 132, "max_num_regs": REGISTERS_PER_SM,
                "warpSize": 32, "sm_clock_rate": 1_980_000, "mem_clock_rate": 2_619_000, "mem_bus_width": 5120}

    def load_binary(self, name, cubin, shared, device):
        import tempfile

        tool = triton_tools() / "cuobjdump"
        with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
            file.write(cubin)
            file.flush()
            out = subprocess.run([str(tool), "--dump-resource-usage", file.name], capture_output=True, text=True)
        usage = resource_usage(out.stdout)
        usage["static_shared"] = usage.pop("shared", 0)  # beside Triton's dynamic shared memory (metadata.shared)
        threads = max_threads(usage.get("reg", 0))
        self.rows[-1].update(usage, max_threads=threads)
        return _LOADED, None, usage.get("reg", 0), usage.get("local", 0), threads

    def unload_module(self, module) -> None:
        pass


class CompileOnlyDriver:
    """A Triton driver for a GPU that is not there: the target of ``arch``, device 0, stream 0; kernels are built
    (Triton's compiler, the ptxas it ships) and "launched" as no-ops; an autotuner's benchmark launches each
    configuration once (building it) and times them all equal."""

    def __init__(self, arch: int, rows: list):
        self.arch, self.rows, self.utils = arch, rows, _Utils(arch, rows)

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", self.arch, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device=None) -> int:
        return 0

    def get_active_torch_device(self):
        import torch

        return torch.device("cpu")

    def get_benchmarker(self):
        def bench(fn, quantiles=None, **_):
            fn()
            return [1.0] * len(quantiles) if quantiles else 1.0

        return bench

    def launcher_cls(self, src, metadata):
        """Called once per built kernel, before its cubin is "loaded": a row for it, and a launcher that does
        nothing."""
        self.rows.append({"kernel": getattr(metadata, "name", "?"), "constants": _constants(src),
                          "num_warps": metadata.num_warps, "num_stages": metadata.num_stages,
                          "shared": metadata.shared, "status": "built"})
        return lambda *args, **kwargs: None


def _constants(src) -> str:
    """The constexpr arguments of a build, as name=value (Triton's ASTSource: ``fn.arg_names`` and ``constants``
    keyed by argument path); "" where this Triton keeps them otherwise."""
    try:
        names = src.fn.arg_names
        pointers = sorted({t[1:] for t in src.signature.values() if isinstance(t, str) and t.startswith("*")})
        parts = [f"ptr={','.join(pointers)}"] if pointers else []
        for key, value in sorted(src.constants.items(), key=lambda kv: str(kv[0])):
            index = key[0] if isinstance(key, tuple) else key
            name = names[index] if isinstance(index, int) else str(index)
            if name.isupper():  # the kernels' meta-parameters (upper case), not arguments specialised as 1
                parts.append(f"{name}={getattr(value, '__name__', value)}")
        return " ".join(parts)
    except Exception:  # noqa: BLE001 - a label only: a Triton that keeps them elsewhere gets none
        return ""


def _with_tf32(torch, fn):
    """``fn`` run with TF32 allowed for fp32 matrix products (torch's setting, which ``dot_precision`` follows)."""

    def run():
        with torch.backends.flags(fp32_precision="tf32"):
            fn()

    return run


def _lion_cases(torch):
    from bizoo.kernels.lion import lion_attention
    from bizoo.kernels.lion.triton_op import lion_attention_triton

    def call(dtype, decay, normalize, masked, length, form, chunk=64, transposed=False, fp32_states=False):
        B, H, D = 2, 2, 64
        shape = (B, length, H, D) if transposed else (B, H, length, D)
        q, k, v = (torch.randn(shape, dtype=dtype) for _ in range(3))
        if transposed:  # the models' layout: (B, L, H, D) storage read as (B, H, L, D)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        log_decay = {"lit": None, "d": -torch.rand(H), "s": -torch.rand(B, H, length)}[decay]
        mask = None
        if masked:
            mask = torch.ones(B, length, dtype=torch.long)
            mask[1, length // 2:] = 0
        for t in (q, k, v) if log_decay is None else (q, k, v, log_decay):
            t.requires_grad_()  # every gradient kernel is built
        if fp32_states:
            y = lion_attention_triton(q, k, v, log_decay, mask, form=form, chunk_size=chunk, normalize=normalize,
                                      fp32_states=True)
        else:
            y = lion_attention(q, k, v, log_decay, mask, form=form, chunk_size=chunk, normalize=normalize,
                               backend="triton")
        y.float().sum().backward()

    cases = []
    for i, (dtype, decay, form) in enumerate((d, a, f) for d in (torch.float32, torch.float16, torch.bfloat16)
                                             for a in ("lit", "d", "s") for f in ("chunk", "attention")):
        length = (256, 100)[i % 2 == 1 and form == "chunk" or i % 3 == 0]
        options = dict(dtype=dtype, decay=decay, normalize=i % 4 != 3, masked=i % 2 == 0, length=length, form=form,
                       transposed=i % 3 == 1)
        cases.append((f"lion {form} {str(dtype)[6:]} decay {decay} L={length} "
                      f"normalize={options['normalize']} mask={options['masked']} "
                      f"layout={'BLHD' if options['transposed'] else 'BHLD'}", lambda o=options: call(**o)))
    for chunk in (16, 32, 128):
        cases.append((f"lion chunk bfloat16 decay s L=256 chunk {chunk}",
                      lambda c=chunk: call(torch.bfloat16, "s", True, True, 256, "chunk", chunk=c)))
    cases.append(("lion chunk bfloat16 decay s L=256 fp32 states",
                  lambda: call(torch.bfloat16, "s", True, True, 256, "chunk", transposed=True, fp32_states=True)))
    for decay, form in (("s", "chunk"), ("d", "attention")):
        cases.append((f"lion {form} float32 TF32 allowed decay {decay} L=256 mask=True layout=BLHD",
                      _with_tf32(torch, lambda a=(decay, form): call(torch.float32, a[0], True, True, 256, a[1],
                                                                      transposed=True))))
    return cases


def _crf_cases(torch):
    from bizoo.kernels.crf import crf_log_likelihood, crf_marginals, crf_max_marginals, crf_viterbi

    def call(what, dtype, K, length, masked):
        B = 3
        emissions = torch.randn(B, length, K, dtype=dtype, requires_grad=what == "likelihood")
        transitions, start, end = (torch.randn(*shape, dtype=dtype, requires_grad=what == "likelihood")
                                   for shape in ((K, K), (K,), (K,)))
        mask = None
        if masked:
            mask = torch.ones(B, length, dtype=torch.bool)
            mask[1, length // 2:] = False
            mask[2, :3] = False  # left padding
        if what == "likelihood":
            tags = torch.randint(0, K, (B, length))
            likelihood = crf_log_likelihood(emissions, mask, transitions, start, end, tags, backend="triton")
            likelihood.float().sum().backward()
        elif what == "viterbi":
            crf_viterbi(emissions, mask, transitions, start, end, backend="triton")
        elif what == "max-marginals":
            crf_max_marginals(emissions, mask, transitions, start, end, backend="triton")
        else:
            crf_marginals(emissions, mask, transitions, start, end, backend="triton")

    cases = []
    for i, (what, dtype, K) in enumerate((w, d, k) for w in ("likelihood", "viterbi", "max-marginals", "marginals")
                                         for d in (torch.float32, torch.bfloat16, torch.float16) for k in (9, 45)):
        length, masked = (32, 17)[i % 2], i % 3 != 2
        cases.append((f"crf {what} {str(dtype)[6:]} K={K} L={length} mask={masked}",
                      lambda a=(what, dtype, K, length, masked): call(*a)))
    return cases


def _lstm_cases(torch):
    from bizoo.kernels.lstm import bilstm

    def call(dtype, I, H, P, clip, masked, length, initial):
        B = 3
        x = torch.randn(B, length, I, dtype=dtype, requires_grad=True)
        weight_ih = (torch.randn(2, 4 * H, I, dtype=dtype) / I**0.5).requires_grad_()
        weight_hh = (torch.randn(2, 4 * H, P or H, dtype=dtype) / H**0.5).requires_grad_()
        bias = torch.zeros(2, 4 * H, dtype=dtype, requires_grad=True)
        weight_proj = (torch.randn(2, P, H, dtype=dtype) / H**0.5).requires_grad_() if P else None
        mask = None
        if masked:
            mask = torch.ones(B, length, dtype=torch.long)
            mask[1, length // 2:] = 0
        state = None
        if initial:
            state = (torch.zeros(2, B, P or H, dtype=dtype, requires_grad=True),
                     torch.zeros(2, B, H, dtype=dtype, requires_grad=True))
        y, _ = bilstm(x, weight_ih, weight_hh, bias, weight_proj, mask, state, cell_clip=clip,
                      proj_clip=clip if P else None, backend="triton", form="steps")
        y.float().sum().backward()

    shapes = [  # (I, H, P, clip): taggers' BiLSTMs, ELMo's clipped LSTMPs (small, original)
        (100, 100, None, None), (256, 256, None, None), (128, 1024, 128, 3.0), (512, 4096, 512, 3.0),
        (64, 200, None, 3.0), (32, 64, 16, None),
    ]
    cases = []
    for i, (I, H, P, clip) in enumerate(shapes):
        for dtype in (torch.float32, torch.bfloat16):
            length = (20, 7)[i % 2]
            options = dict(dtype=dtype, I=I, H=H, P=P, clip=clip, masked=i % 2 == 0, length=length, initial=i == 5)
            cases.append((f"lstm {str(dtype)[6:]} I={I} H={H} P={P} clip={clip} L={length} mask={options['masked']}",
                          lambda o=options: call(**o)))
    return cases


def _ssm_cases(torch):
    from bizoo.kernels.ssm import bidirectional_ssm

    def call(dtype, length, masked, Hc):
        B = 2
        u_fwd, u_bwd = (torch.randn(B, length, Hc, dtype=dtype, requires_grad=True) for _ in range(2))
        k_fwd, k_bwd = (torch.randn(length, requires_grad=True) for _ in range(2))  # (L,): one kernel, all channels
        d_fwd, d_bwd = (torch.randn((), requires_grad=True) for _ in range(2))
        mask = None
        if masked:
            mask = torch.ones(B, length, dtype=torch.long)
            mask[1, length // 2:] = 0
        y_fwd, y_bwd = bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, d_fwd, d_bwd, mask, backend="triton")
        (y_fwd.float().sum() + y_bwd.float().sum()).backward()

    # the autotuner's pruner keeps the tiles that fit the channels: 256 takes the large ones, 40 (not 16-aligned) the
    # small ones
    cases = [(f"ssm {str(dtype)[6:]} L={length} channels={Hc} mask={masked}",
              lambda a=(dtype, length, masked, Hc): call(*a))
             for dtype in (torch.float32, torch.float16, torch.bfloat16)
             for length, masked, Hc in ((512, False, 256), (512, True, 256), (100, True, 40))]
    return cases + [(f"ssm float32 TF32 allowed L={length} channels={Hc} mask=True",
                     _with_tf32(torch, lambda a=(length, Hc): call(torch.float32, a[0], True, a[1])))
                    for length, Hc in ((512, 256), (100, 40))]


CASES = {"lion": _lion_cases, "crf": _crf_cases, "lstm": _lstm_cases, "ssm": _ssm_cases}


def child(options_json: str) -> None:
    """Build the kernels of the chosen ops' cases; one JSON line per built kernel or failed case on stdout."""
    import torch
    from triton.runtime import driver

    options = json.loads(options_json)
    rows: list = []
    driver.set_active(CompileOnlyDriver(options["arch"], rows))
    for op in options["ops"]:  # the kernels are defined now, without TRITON_INTERPRET: built, not interpreted
        importlib.import_module(f"bizoo.kernels.{op}")
    # the ops accept CPU tensors for backend="triton" only under TRITON_INTERPRET=1, read at each call
    os.environ["TRITON_INTERPRET"] = "1"
    torch.manual_seed(0)
    for op in options["ops"]:
        for name, run_case in CASES[op](torch):
            start = len(rows)
            try:
                run_case()
                error = None
            except Exception as err:  # noqa: BLE001 - a failed build is this tool's finding, reported as a row
                error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            for row in settle(rows[start:], op, name, error):
                report(json.dumps(row))


def settle(built: list[dict], op: str, case: str, error: str | None) -> list[dict]:
    """The rows of one case's builds, each with its op, case and status: "built"; "refused" where Triton refused to
    load it (its launch check: more shared memory than the architecture gives a block; no resources were read) and
    the case went on (the op ran a smaller block); "failed: <error>" for the refused build the case ended on, or a row
    of its own (kernel "-") where the case failed otherwise (a build, a block's threads, the case itself)."""
    for row in built:
        row.update(op=op, case=case)
        if "reg" not in row:
            row["status"] = "refused"
    if error is not None:
        if built and built[-1]["status"] == "refused":
            built[-1]["status"] = f"failed: {error}"
        else:
            built.append({"op": op, "case": case, "kernel": "-", "status": f"failed: {error}"})
    return built


CHILD_CODE = PACKAGE_STUB + "from bizoo.scripts.bench.kernel_build import child\nchild(sys.argv[2])\n"


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def build(arch: int, ops: list[str], all_configs: bool) -> tuple[list[dict], str]:
    """Run the builds in a child process; (its rows, its stderr when it ended badly, else "")."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["BIZOO_TRITON_AUTOTUNE"] = "1" if all_configs else "0"
    process = subprocess.run(
        [sys.executable, "-c", CHILD_CODE, str(PACKAGE_ROOT), json.dumps({"arch": arch, "ops": ops})],
        capture_output=True, text=True, env=env,
    )
    rows = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    return rows, (process.stderr.strip()[-2000:] if process.returncode != 0 else "")


def table(rows: list[dict]) -> list[str]:
    """One line per distinct build (the same kernel built for several cases is listed once, with its first case)."""
    lines = [f"{'op':<5} {'kernel':<22} {'warps':>5} {'stages':>6} {'regs':>4} {'stack B':>7} {'smem KB':>7}  "
             f"{'status':<8} specialisation / case"]
    seen = set()
    for row in rows:
        key = (row["op"], row["kernel"], row.get("constants"), row.get("num_warps"), row.get("num_stages"),
               row["status"], row["case"] if row["kernel"] == "-" else None)
        if key in seen:
            continue
        seen.add(key)
        if row["kernel"] == "-":
            lines.append(f"{row['op']:<5} {'-':<22} {'':>5} {'':>6} {'':>4} {'':>7} {'':>7}  {row['status']} "
                         f"({row['case']})")
            continue
        smem = (row.get("shared", 0) + row.get("static_shared", 0)) / 1024
        lines.append(f"{row['op']:<5} {row['kernel']:<22} {row['num_warps']:>5} {row['num_stages']:>6} "
                     f"{row.get('reg', '?'):>4} {row.get('stack', '?'):>7} {smem:>7.1f}  {row['status']:<8} "
                     f"{row.get('constants', '')} ({row['case']})")
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        import triton
    except ImportError as err:
        raise ValueError(f"kernel-build needs Triton ({err})") from None
    tools = triton_tools()
    missing = [name for name in ("ptxas", "cuobjdump") if not (tools / name).exists()]
    if missing:
        raise ValueError(f"kernel-build needs the {' and '.join(missing)} that Triton's Linux x86-64 wheels ship in "
                         f"{tools}; this Triton has none")
    started = time.perf_counter()
    rows, stderr = build(args.arch, args.ops, args.all_configs)
    seconds = time.perf_counter() - started
    report(f"Triton {triton.__version__} kernels built for sm_{args.arch} without a GPU "
           f"({'every autotune configuration' if args.all_configs else 'the first configuration of each kernel'}), "
           f"ops {', '.join(args.ops)}: {len(rows)} builds in {seconds:.0f} s")
    for line in table(rows):
        report(line)
    failed = [row for row in rows if row["status"].startswith("failed")]
    refused = sorted({f"{row['op']} {row['kernel']} {row.get('constants', '')}".strip()
                      for row in rows if row["status"] == "refused"})
    spilling = sorted({(row["op"], row["kernel"]) for row in rows if row.get("stack", 0) > 0})
    report(f"failed: {len(failed)}; refused by this GPU's limits, the op running a smaller block instead (LION's chunk "
           f"schedule halves its chunk): {len(refused)}{''.join(chr(10) + '  ' + r for r in refused)}")
    report(f"kernels with a stack (register spills or local arrays): "
           f"{', '.join(f'{op} {kernel}' for op, kernel in spilling) or 'none'}")
    if stderr:
        report(f"the build process ended with an error:\n{stderr}")
    if args.json:
        Path(args.json).write_text(json.dumps({"arch": args.arch, "triton": triton.__version__, "rows": rows},
                                              indent=1))
    return 1 if failed or stderr else 0
