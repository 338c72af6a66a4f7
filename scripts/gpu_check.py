"""The one script to run on a machine with a GPU: environment, GPU tests, kernel and model benchmarks, one summary.

    python -m bizoo.scripts.gpu_check OUT_DIR [--quick] [--skip-tests] [--budget SECONDS]

The command on a GPU machine: `python -m pip install --no-deps --no-build-isolation -e . && python -m
bizoo.scripts.gpu_check OUT_DIR` (`python -m pip`: a bare `pip` may belong to another Python than torch's).

Steps, each in its own process with its own time limit, all of them within --budget (default 530 s, under 9
minutes); a step that fails or runs out of time is recorded and the next one runs:

1. the environment: Python, torch, CUDA, triton, transformers, bizoo, the GPU, the kernels' crossover constants;
2. `python -m pytest` of tests/reliability/test_gpu_edges.py (every model in fp16/bf16 autocast and with bad ids on
   CUDA) and the Triton kernel files tests/kernels/test_*_triton.py (compiled for the GPU against the reference in
   fp32, and their bf16/fp16 tests), with BIZOO_TRITON_AUTOTUNE=0, then tests/modeling/test_lion.py (output in
   OUT_DIR/gpu_tests.log; --skip-tests leaves it out);
3. `bizoo bench lion` in bf16 at L = 512, 2048, 8192 (OUT_DIR/bench_lion.{txt,json,png});
4. `bizoo bench lion-crossover` (OUT_DIR/bench_lion_crossover.{txt,json}): the values for
   TRITON_CHUNK_MIN_LENGTH (and REFERENCE_CHUNK_MIN_LENGTH on this GPU);
5. `bizoo bench lion-model` at L = 512 and 4096 (OUT_DIR/bench_lion_model.{txt,json});
6. `bizoo bench crf` (Triton and auto against pytorch-crf, B = 1 and 64, L = 128 and 512; OUT_DIR/bench_crf.*);
7. `bizoo bench lstm`: the fused bidirectional LSTM and torch.lstm against torch.nn.LSTM (cuDNN) in fp32 at
   B = 32, 128 × L = 128, 512 × H = 256, 512, and the original and small ELMo LSTMPs (B = 32, L = 20, 64) against
   the per-step loop (OUT_DIR/bench_lstm.{txt,json,png});
8. `bizoo bench bigs`: the BiGS SSM op against torch.fft in bf16, L = 512 ... 16384 (OUT_DIR/bench_bigs.*);
9. `bizoo bench bigs-model`: BiGS-large against BERT-large training tokens/s at L = 512 and 4096
   (OUT_DIR/bench_bigs_model.{txt,json}).

OUT_DIR/summary.md collects every table and each step's status (and is rewritten after each step, so an
interrupted run still leaves one). --quick runs fewer lengths and repeats: a smoke test. Without a CUDA device
the benchmark steps are recorded as "no CUDA device". The exit code is 0 whatever the steps did.

The project only needs to be installed (`python -m pip install --no-deps --no-build-isolation -e .`); no network is
used. The CRF step needs pytorch-crf, its baseline (a pure-Python wheel; the step is skipped without it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PROG = "python -m bizoo.scripts.gpu_check"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
LOG_TAIL_LINES = 40  # of the test log, in the summary
BENCH_MAX_LINES = 200  # of a benchmark's output, in the summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the logs, JSON, plots and summary.md")
    parser.add_argument("--quick", action="store_true", help="fewer lengths and repeats: a smoke test")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the GPU tests (pytest -m gpu)")
    parser.add_argument("--budget", type=float, default=530.0,
                        help="seconds for all the steps together (default: %(default)s)")


# ----------------------------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict:
    """What ran the checks: versions, the GPU (or "no CUDA device"), the CPU, the kernels' constants."""
    import torch

    from .bench import _cpu_name

    env = {
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "triton": _version("triton"),
        "transformers": _version("transformers"),
        "bizoo": _version("bizoo"),
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "(unset)"),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        memory = f"{props.total_memory / 2**30:.0f} GiB"
        env["gpu"] = f"{props.name}, {memory}, compute capability {props.major}.{props.minor}"
        env["gpu count"] = str(torch.cuda.device_count())
        if shutil.which("nvidia-smi"):
            try:
                smi = subprocess.run(
                    ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=20,
                )
                env["nvidia-smi"] = smi.stdout.strip().replace("\n", "; ") or smi.stderr.strip()
            except (OSError, subprocess.TimeoutExpired) as err:
                env["nvidia-smi"] = f"failed: {err}"
    else:
        env["gpu"] = "no CUDA device"
    try:
        from ..kernels import lion
        from ..kernels.dispatch import triton_available

        env["triton imports"] = str(triton_available())
        for name in ("TRITON_CHUNK_MIN_LENGTH", "REFERENCE_CHUNK_MIN_LENGTH"):
            env[f"bizoo.kernels.lion.{name}"] = str(getattr(lion, name, "not defined"))
    except Exception as err:  # noqa: BLE001 - the environment report never stops the check
        env["bizoo.kernels.lion"] = f"import failed: {type(err).__name__}: {err}"
    try:
        from ..kernels import lstm

        env["bizoo.kernels.lstm.TRITON_BEATS_CUDNN"] = str(getattr(lstm, "TRITON_BEATS_CUDNN", "not defined"))
    except Exception as err:  # noqa: BLE001
        env["bizoo.kernels.lstm"] = f"import failed: {type(err).__name__}: {err}"
    return env


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------


def plan(out: Path, quick: bool) -> list[dict]:
    """The steps: name, command, time limit, whether it needs CUDA, its log file and how much of it to summarise."""
    py = sys.executable
    bench = [py, "-m", "bizoo.scripts.bench"]
    lion = [*bench, "lion", "--dtype", "bfloat16", "--json", str(out / "bench_lion.json"),
            "--plot", str(out / "bench_lion.png")]
    crossover = [*bench, "lion-crossover", "--json", str(out / "bench_lion_crossover.json")]
    model = [*bench, "lion-model", "--json", str(out / "bench_lion_model.json")]
    crf = [*bench, "crf", "--methods", "triton", "auto", "--batch-sizes", "1", "64", "--lengths", "128", "512",
           "--json", str(out / "bench_crf.json")]
    # The grid; the per-step loop runs as the baseline of the ELMo LSTMP part only (on the LSTM grid, at
    # L = 512, it would take most of the step's time).
    lstm = [*bench, "lstm", "--methods", "triton", "native", "--repeats", "5", "--warmup", "2",
            "--json", str(out / "bench_lstm.json"), "--plot", str(out / "bench_lstm.png")]
    # The kernel files compiled for the GPU (the *_reference tests are device-independent and run in CI), the
    # models in half precision on CUDA, LION's model tests; the GPU-only tests first.
    tests = ["tests/reliability/test_gpu_edges.py", "tests/kernels/test_ssm_triton.py",
             "tests/kernels/test_lion_triton.py", "tests/kernels/test_lstm_triton.py",
             "tests/kernels/test_crf_triton.py", "tests/modeling/test_lion.py"]
    bigs = [*bench, "bigs", "--json", str(out / "bench_bigs.json"), "--plot", str(out / "bench_bigs.png")]
    bigs_model = [*bench, "bigs-model", "--json", str(out / "bench_bigs_model.json")]
    if quick:
        lion += ["--lengths", "1024", "4096", "--repeats", "3", "--warmup", "2"]
        crossover += ["--lengths", "256", "1024", "4096", "--repeats", "3", "--warmup", "2"]
        model += ["--lengths", "512", "--steps", "3", "--warmup-steps", "1"]
        lstm += ["--batch-sizes", "32", "--lengths", "128", "--hidden", "256", "512", "--elmo-sizes", "original",
                 "--elmo-batch-sizes", "32"]
        bigs += ["--lengths", "512", "4096", "--repeats", "3", "--warmup", "2"]
        bigs_model += ["--lengths", "512", "--steps", "3", "--warmup-steps", "1"]
    else:
        # Sized from a first H200 run, where the default grids outran every step's limit.
        lion += ["--lengths", "512", "2048", "8192"]
        crossover += ["--backends", "triton", "reference"]
        model += ["--lengths", "512", "4096"]
        lstm += ["--batch-sizes", "32", "128", "--lengths", "128", "512", "--hidden", "256", "512",
                 "--elmo-sizes", "original", "small", "--elmo-batch-sizes", "32", "--elmo-lengths", "20", "64"]
        bigs += ["--lengths", "512", "4096", "16384"]
        bigs_model += ["--lengths", "512", "4096", "--steps", "3", "--warmup-steps", "1"]
    return [
        # The kernel tests on the real GPU (fp32 against the reference, and the bf16/fp16 ones marked gpu), compiled
        # with one configuration each (BIZOO_TRITON_AUTOTUNE=0), plus every other test marked gpu.
        {"name": "GPU tests (Triton kernel files, models in half precision on CUDA)", "key": "gpu_tests",
         "needs_cuda": False,
         "tests": True, "env": {"BIZOO_TRITON_AUTOTUNE": "0"},
         "command": [py, "-m", "pytest", "-q", "-rfE", "--tb=short", *tests, "-p", "no:cacheprovider"],
         "log": out / "gpu_tests.log", "timeout": 200, "tail": LOG_TAIL_LINES},
        {"name": "bench lion", "key": "bench_lion", "needs_cuda": True, "command": lion,
         "log": out / "bench_lion.txt", "timeout": 55 if quick else 60, "tail": BENCH_MAX_LINES},
        {"name": "bench lion-crossover", "key": "bench_lion_crossover", "needs_cuda": True, "command": crossover,
         "log": out / "bench_lion_crossover.txt", "timeout": 40, "tail": BENCH_MAX_LINES},
        {"name": "bench lion-model", "key": "bench_lion_model", "needs_cuda": True, "command": model,
         "log": out / "bench_lion_model.txt", "timeout": 55 if quick else 60, "tail": BENCH_MAX_LINES},
        {"name": "bench crf", "key": "bench_crf", "needs_cuda": True, "command": crf,
         "log": out / "bench_crf.txt", "timeout": 25, "needs": "torchcrf", "tail": BENCH_MAX_LINES},
        {"name": "bench lstm", "key": "bench_lstm", "needs_cuda": True, "command": lstm,
         "log": out / "bench_lstm.txt", "timeout": 45, "tail": BENCH_MAX_LINES},
        # The SSM op autotunes its Triton kernels (compiled once: bigs-model finds them in Triton's cache).
        {"name": "bench bigs", "key": "bench_bigs", "needs_cuda": True, "command": bigs,
         "log": out / "bench_bigs.txt", "timeout": 50, "tail": BENCH_MAX_LINES},
        {"name": "bench bigs-model", "key": "bench_bigs_model", "needs_cuda": True, "command": bigs_model,
         "log": out / "bench_bigs_model.txt", "timeout": 50, "tail": BENCH_MAX_LINES},
    ]


def run_step(command: list[str], log: Path, timeout: float, env: dict) -> str:
    """Run ``command`` in the package root with its output in ``log``; "ok", "failed (exit code N)" or "timeout".

    The step runs in its own process group, so that on a timeout it and whatever it started are stopped."""
    with open(log, "w") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        proc = subprocess.Popen(
            command, stdout=f, stderr=subprocess.STDOUT, cwd=PACKAGE_ROOT, env=env, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            f.write(f"\n[gpu_check: stopped after the step's time limit of {timeout:.0f} s]\n")
            return f"timeout after {timeout:.0f} s (partial output kept)"
    return "ok" if code == 0 else f"failed (exit code {code})"


def _step_env(cuda: bool) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if cuda:
        env.pop("TRITON_INTERPRET", None)  # the real kernels on the GPU, not the interpreter
    return env


# ----------------------------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------------------------


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output)"
    if len(text) > lines:
        text = [f"... ({len(text) - lines} earlier lines in {path.name})", *text[-lines:]]
    return "\n".join(text)


def write_summary(out: Path, env: dict, steps: list[dict], quick: bool, started: float) -> None:
    lines = [
        "# bizoo GPU check",
        "",
        f"{'quick' if quick else 'full'} run, {time.monotonic() - started:.0f} s elapsed; "
        f"`{PROG} {out}{' --quick' if quick else ''}`",
        "",
        "## Environment",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {str(v).replace('|', '/')} |" for k, v in env.items()),
        "",
        "## Steps",
        "",
        "| step | status | seconds | output |",
        "|---|---|---|---|",
    ]
    for s in steps:
        seconds = f"{s['seconds']:.0f}" if s.get("seconds") is not None else "-"
        lines.append(f"| {s['name']} | {s.get('status', 'not run yet')} | {seconds} | {s['log'].name} |")
    for s in steps:
        lines += ["", f"## {s['name']}", "", f"status: **{s.get('status', 'not run yet')}**", "",
                  f"command: `{' '.join(Path(c).name if c == sys.executable else c for c in s['command'])}`"]
        if s.get("seconds") is not None:
            lines += ["", "```", _tail(s["log"], s["tail"]), "```"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    record = {
        "quick": quick, "environment": env,
        "steps": [{"name": s["name"], "key": s["key"], "status": s.get("status"), "seconds": s.get("seconds"),
                   "log": s["log"].name} for s in steps],
    }
    (out / "summary.json").write_text(json.dumps(record, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        import torch

        cuda = torch.cuda.is_available()
        env = environment()
    except Exception as err:  # noqa: BLE001 - record and go on: the summary is the product
        cuda, env = False, {"environment": f"failed: {type(err).__name__}: {err}"}
    for key, value in env.items():
        print(f"{key}: {value}", flush=True)
    (out / "environment.txt").write_text("".join(f"{k}: {v}\n" for k, v in env.items()))
    steps = plan(out, args.quick)
    step_env = _step_env(cuda)
    for step in steps:
        remaining = args.budget - (time.monotonic() - started)
        if step.get("tests") and args.skip_tests:
            step["status"] = "skipped: --skip-tests"
        elif step.get("tests") and not (PACKAGE_ROOT / "tests").is_dir():
            step["status"] = f"skipped: no tests/ folder in {PACKAGE_ROOT}"
        elif step["needs_cuda"] and not cuda:
            step["status"] = "skipped: no CUDA device"
        elif step.get("needs") and importlib.util.find_spec(step["needs"]) is None:
            step["status"] = f"skipped: {step['needs']} is not installed (carry its wheel: it is the baseline)"
        elif remaining < 20:
            step["status"] = f"skipped: the time budget of {args.budget:.0f} s is spent"
        else:
            print(f"[gpu_check] {step['name']} (limit {min(step['timeout'], remaining):.0f} s) ...", flush=True)
            begin = time.monotonic()
            try:
                env = {**step_env, **step.get("env", {})}
                step["status"] = run_step(step["command"], step["log"], min(step["timeout"], remaining), env)
            except Exception as err:  # noqa: BLE001
                step["status"] = f"failed to start: {type(err).__name__}: {err}"
            step["seconds"] = time.monotonic() - begin
        print(f"[gpu_check] {step['name']}: {step['status']}", flush=True)
        write_summary(out, env, steps, args.quick, started)
    write_summary(out, env, steps, args.quick, started)
    print(f"[gpu_check] summary: {out / 'summary.md'} ({time.monotonic() - started:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bizoo.scripts.gpu_check``."""
    from .common import command_main

    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
