"""The one script to run on a machine with a GPU: environment, GPU tests, kernel and model benchmarks, one summary.

    python -m bizoo.scripts.gpu_check OUT_DIR [--quick] [--skip-tests] [--budget SECONDS] [--steps NAME,NAME,...]

The command on a GPU machine: `python -m pip install --no-deps --no-build-isolation -e . && python -m
bizoo.scripts.gpu_check OUT_DIR` (`python -m pip`: a bare `pip` may belong to another Python than torch's).

Steps, each in its own process with its own time limit, all of them within --budget (default 530 s, under 9
minutes); a step that fails or runs out of time is recorded (with its partial output) and the next one runs. With
--steps, the limits of the steps chosen grow, never shrink, to share the budget less 30 s among those that run (a
step skipped, e.g. by --skip-tests, leaves its share to the others). Without --steps, these (their --steps names in
brackets):

1. [env] the environment: Python, torch, CUDA, triton, transformers, bizoo, the GPU, the kernels' crossover
   constants;
2. [gpu-tests] `python -m pytest` of tests/reliability/test_gpu_edges.py (every model in fp16/bf16 autocast, with
   bad ids on CUDA, an eager training step of each head and pretrain's Trainer steps between logs under
   set_sync_debug_mode("error")) and the Triton kernel files tests/kernels/test_*_triton.py (compiled for the GPU
   against the reference in fp32, and their bf16/fp16 tests), with BIZOO_TRITON_AUTOTUNE=0, then
   tests/modeling/test_lion.py (output in OUT_DIR/gpu_tests.log; --skip-tests leaves it out);
3. [bench-lion-default] `bizoo bench lion` in bf16 at L = 512, 2048, 8192, the bizoo kernels with their first
   configuration as in bench-lion (BIZOO_TRITON_AUTOTUNE=0 unless the caller sets it)
   (OUT_DIR/bench_lion.{txt,json,png});
4. [bench-lion-crossover] `bizoo bench lion-crossover` (OUT_DIR/bench_lion_crossover.{txt,json}): the values for
   TRITON_CHUNK_MIN_LENGTH (and REFERENCE_CHUNK_MIN_LENGTH on this GPU), the Triton kernels with their first
   configuration as in bench-lion (BIZOO_TRITON_AUTOTUNE=0 unless the caller sets it: autotuning at six lengths
   outlasts the step's limit);
5. [lion-model] `bizoo bench lion-model` at L = 512 and 4096 (OUT_DIR/bench_lion_model.{txt,json});
6. [bench-crf] `bizoo bench crf` (Triton and auto against pytorch-crf, B = 1 and 64, K = 9, L = 128 and 512, 5 runs
   after 2 warm-ups; OUT_DIR/bench_crf.*): pytorch-crf's decode reads each tag back with `.item()`, B·L host syncs
   per call (about half a second at B = 64, L = 512), so the grid is the targets' K only;
7. [bench-lstm] `bizoo bench lstm`: the LSTM op's Triton schedule (one cuBLAS product and one fused kernel per
   step) and torch.lstm against torch.nn.LSTM (cuDNN) in fp32 at B = 32, 128 × L = 128, 512 ×
   H = 256, 512, and the original and small ELMo LSTMPs (B = 32, L = 20, 64) against the autograd loop and cuDNN's
   unclipped nn.LSTM(proj_size=P) (OUT_DIR/bench_lstm.{txt,json,png}), every fp32 product IEEE (cuDNN's RNNs too,
   which torch lets take TF32 by default: like for like); with `--steps recurrent` (or bench-lstm-tf32) also the
   original ELMo LSTMP again with every product on TF32 (`--tf32`, OUT_DIR/bench_lstm_tf32.{txt,json});
8. [bench-bigs] `bizoo bench bigs`: the BiGS SSM op against torch.fft in bf16, L = 512 ... 16384
   (OUT_DIR/bench_bigs.*);
9. [bench-bigs-model] `bizoo bench bigs-model`: BiGS-large against BERT-large training tokens/s at L = 512 and 4096
   (OUT_DIR/bench_bigs_model.{txt,json}).

`--steps recurrent` runs env, gpu-tests, steps 6 to 9 and bench-lstm-tf32 alone (the recurrent ops: CRF, LSTM/LSTMP,
SSM), their limits grown to share the budget.

The LION steps, run only when --steps names them (`--steps lion` is env, lion-tests, lion-launches, lion-states,
bench-lion, bench-lion-crossover and lion-model; their time limits add up to 500 s, the whole run stays under 8.5
minutes):

- [lion-tests] `python -m pytest -q` of tests/kernels/test_lion_triton.py, tests/kernels/test_lion_reference.py and
  tests/modeling/test_lion.py with BIZOO_TRITON_AUTOTUNE=0, every test run (no -x) (OUT_DIR/lion_tests.log, and
  the JUnit XML OUT_DIR/lion_tests.xml);
- [lion-launches] the GPU kernels one call of the op launches (`lion_attention`, backend 'triton', form 'chunk',
  B = 8, H = 12, L = 4096, D = 64, bf16, decays s and lit), counted with torch.profiler after warm-up calls
  (compilation, and autotuning where it is on, done): per forward (with inputs that require gradients, as in
  training) and per backward, with their names; and whether a forward+backward synchronises with the host (run
  under `torch.cuda.set_sync_debug_mode("error")`: ok / failed); with BIZOO_TRITON_AUTOTUNE=0 unless set (a
  configuration changes no launch). OUT_DIR/lion_launches.{txt,json} and the chrome trace of one forward and one
  forward+backward of each, OUT_DIR/lion_trace.json;
- [compile-models] (`--steps compile`) `bizoo bench models --layers 4`: every model's training tokens/s and inference
  latency (batch 1), bf16, L = 512, eager against torch.compile(fullgraph=True) (inductor), with the baselines: BERT
  (SDPA) of LION's and BiGS's size (4 layers of BERT-base width), and for the BiLSTM-CRF tagger (1 layer x 200, 9
  tags, its CRF loss) torch.nn.LSTM (cuDNN) + pytorch-crf; ELMo at the original's size; and whether a compiled
  training step runs under `torch.cuda.set_sync_debug_mode("error")` (OUT_DIR/compile_models.{txt,json});
- [lion-states] the accuracy of the Triton chunk form with bf16 chunk states against fp32 ones
  (`lion_attention_triton(..., fp32_states=False / True)`), bf16 inputs, B·L = 32768, H = 12, D = 64, chunk 64,
  L = 512, 4096, 16384, decays s (log λ = -0.1·U(0, 1)) and lit: max|x - ref| / max|ref| of the output and of the
  gradients of q, k, v and log_decay (a random cotangent), the reference being the reference backend's chunk form
  on fp32 copies of the inputs on the GPU (OUT_DIR/lion_states.{txt,json}; "unavailable" before the op takes
  fp32_states);
- [bench-lion] `bizoo bench lion` in bf16, B·L = 32768, H = 12, D = 64, chunk 64, L = 512 ... 16384, the methods
  sdpa, triton-chunk, triton-parallel and fla-causal (after the others: it compiles for minutes), fwd and fwd+bwd,
  10 runs after 2 warm-ups, once with decay s and once with decay lit (two processes:
  OUT_DIR/bench_lion_s.{txt,json,png}, OUT_DIR/bench_lion_lit.*); fla-causal needs fla-core installed (unavailable
  otherwise). The time goes to compiling, not to the runs: the bizoo kernels run with their first configuration
  (BIZOO_TRITON_AUTOTUNE=0) unless the caller sets BIZOO_TRITON_AUTOTUNE=1 (then run bench-lion on its own:
  autotuning took ~145 s for decay s without fla on a cold H200);
- [bench-lion-crossover] as step 4;
- [lion-model] as step 5.

`--steps fp32` (not in `--steps lion`, whose budget is spent) runs LION's precision checks:
[lion-half-tests] `python -m pytest -q` of tests/kernels/test_lion_half_range.py on the GPU (the Triton kernels on
fp16/bf16 inputs of tiny scores and large upstream gradients against the fp64 reference; OUT_DIR/lion_half_tests.log)
with BIZOO_TRITON_AUTOTUNE=0; then [bench-lion-fp32]: `bizoo bench lion` on fp32 inputs (a model trained without
autocast), decay s, L = 512 and 4096, SDPA, the reference chunk form (cuBLAS) and the Triton chunk schedule, once
with IEEE products (torch's default; the Triton kernels spill 5-19 KB per thread then) and once with TF32 (`--tf32`)
(OUT_DIR/bench_lion_fp32_{ieee,tf32}.{txt,json}).

OUT_DIR/summary.md collects every table and each step's status (and is written before the first step, when each
starts ("running") and after it, so an interrupted run still leaves one). Interrupted by Ctrl-C or SIGTERM (e.g.
`timeout 590 python -m ...`), the check stops the running step's processes (each step runs in its own process group,
which a terminal's Ctrl-C does not reach), records it as interrupted with its partial output and the steps after it
as not run, and exits with 128 + the signal's number (130, 143). --quick runs fewer lengths and repeats: a smoke
test. Without a CUDA device the benchmark steps are recorded as "no CUDA device", and the test steps run on the
CPU, their status saying that the tests needing a GPU skipped themselves. Otherwise the exit code is 0 whatever the
steps did (2 for bad options, such as an unknown step name).

The project only needs to be installed (`python -m pip install --no-deps --no-build-isolation -e .`); no network is
used. The CRF step needs pytorch-crf, its baseline (a pure-Python wheel; the step is skipped without it); the
fla-causal rows of bench-lion need fla-core (and einops), e.g. installed from carried wheels with `python -m pip
install --no-index --no-deps --target DIR WHEEL` and PYTHONPATH=DIR.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# Standard library only at module level (torch and our kernels inside functions): lion-launches and lion-states import
# this module in a child process without the package's __init__ (_PART_CODE).
from ..lib.command import command_main, report, run_command
from ..lib.machine import cpu_name
from .harness import PACKAGE_ROOT, PACKAGE_STUB, short

# Run as `python -m bizoo.scripts.gpu_check` (scripts/gpu_check.py, the name it is documented and scripted under, runs
# this module), or as `python -m bizoo.scripts.bench.gpu_check`.
PROG = "python -m bizoo.scripts.gpu_check"
logger = logging.getLogger(__name__)
DEFAULT_BUDGET = 530.0  # seconds for all the steps (--budget): under 9 minutes
LOG_TAIL_LINES = 40  # of the test log, in the summary
BENCH_MAX_LINES = 200  # of a benchmark's output, in the summary

# The --steps names: "env" (the environment report) and the "step" of each entry of ``plan``, in the order they run.
STEP_NAMES = ("env", "gpu-tests", "lion-tests", "lion-launches", "lion-states", "bench-lion", "bench-lion-default",
              "bench-lion-crossover", "lion-model", "lion-half-tests", "bench-lion-fp32", "compile-models", "bench-crf",
              "bench-lstm", "bench-lstm-tf32", "bench-bigs", "bench-bigs-model")
DEFAULT_STEPS = ("env", "gpu-tests", "bench-lion-default", "bench-lion-crossover", "lion-model", "bench-crf",
                 "bench-lstm", "bench-bigs", "bench-bigs-model")
# --steps shorthands: a name that stands for several steps.
STEP_GROUPS = {"lion": ("env", "lion-tests", "lion-launches", "lion-states", "bench-lion", "bench-lion-crossover",
                        "lion-model"),
               "compile": ("env", "compile-models"),
               "fp32": ("env", "lion-half-tests", "bench-lion-fp32"),
               "recurrent": ("env", "gpu-tests", "bench-crf", "bench-lstm", "bench-lstm-tf32", "bench-bigs",
                             "bench-bigs-model")}
LION_TESTS = ["tests/kernels/test_lion_triton.py", "tests/kernels/test_lion_reference.py",
              "tests/modeling/test_lion.py"]
# bench-lion: the methods compared, and the lengths at B·L = 32768 tokens.
BENCH_LION_METHODS = ["sdpa", "triton-chunk", "triton-parallel", "fla-causal"]
BENCH_LION_LENGTHS = ["512", "1024", "2048", "4096", "8192", "16384"]
# bench-lion's environment unless the caller sets it: the bizoo kernels with their first configuration. On an H200
# with a cold Triton cache, autotuning took 17-27 s per kernel set at the first length and ~10 s more at each new
# length for the chunk schedule (decay s: ~145 s for the bizoo methods alone, more than bench-lion's share of
# --steps lion); fla-core autotunes anyway (its forward ~25 s to compile, its forward+backward ~2 minutes). Set
# BIZOO_TRITON_AUTOTUNE=1 for tuned kernels, with fewer steps (the limits then grow to share the budget).
BENCH_LION_ENV = {"BIZOO_TRITON_AUTOTUNE": "0"}


def parse_steps(text: str | None) -> list[str]:
    """The step names of ``--steps`` (a comma list of STEP_NAMES and STEP_GROUPS shorthands), each once, in the
    order they run; DEFAULT_STEPS without it. ``ValueError`` (exit code 2) naming an unknown or empty name."""
    if text is None:
        return list(DEFAULT_STEPS)
    chosen = set()
    for name in (part.strip() for part in text.split(",")):
        if name in STEP_GROUPS:
            chosen.update(STEP_GROUPS[name])
        elif name in STEP_NAMES:
            chosen.add(name)
        else:
            what = f"unknown step {name!r}" if name else "an empty step name"
            known = ", ".join([*STEP_NAMES, *STEP_GROUPS])
            raise ValueError(f"--steps {text!r}: {what}; the steps are {known} (comma-separated)")
    return [name for name in STEP_NAMES if name in chosen]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for the logs, JSON, plots and summary.md")
    parser.add_argument("--quick", action="store_true", help="fewer lengths and repeats: a smoke test")
    parser.add_argument("--skip-tests", action="store_true",
                        help="do not run the test steps (gpu-tests, lion-tests)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help="seconds for all the steps together (default: %(default)s)")
    parser.add_argument("--steps", default=None, metavar="NAME,NAME,...",
                        help=f"only these steps, comma-separated, from {', '.join(STEP_NAMES)}; "
                             + "; ".join(f"'{group}' stands for {', '.join(names)}"
                                         for group, names in STEP_GROUPS.items())
                             + f" (default: {', '.join(DEFAULT_STEPS)})")


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

    env = {
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
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
        from ...kernels import lion
        from ...kernels.dispatch import triton_available

        env["triton imports"] = str(triton_available())
        for name in ("TRITON_CHUNK_MIN_LENGTH", "REFERENCE_CHUNK_MIN_LENGTH"):
            env[f"bizoo.kernels.lion.{name}"] = str(getattr(lion, name, "not defined"))
    except Exception as err:  # noqa: BLE001 - the environment report never stops the check
        env["bizoo.kernels.lion"] = f"import failed: {type(err).__name__}: {err}"
    return env


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------


# A LION step that runs a function of this module (lion_launches, lion_states) in a child process: the kernels
# are imported without the package's __init__ (transformers and the models: seconds), as bench's CPU cases do. Its
# status lines are logged as a command's are (lib/command.py), into the step's log.
_PART_CODE = PACKAGE_STUB + (
    "from bizoo.scripts.bench import gpu_check\n"
    "from bizoo.scripts.lib.command import DEFAULT_LEVEL, command_logging\n"
    "with command_logging(gpu_check.PROG, DEFAULT_LEVEL, libraries=False):\n"
    "    code = getattr(gpu_check, sys.argv[2])(sys.argv[3], quick=sys.argv[4] == 'quick')\n"
    "sys.exit(code)\n"
)


def _part_command(function: str, out: Path, quick: bool) -> list[str]:
    return [sys.executable, "-c", _PART_CODE, str(PACKAGE_ROOT), function, str(out), "quick" if quick else "full"]


def plan(out: Path, quick: bool, steps=DEFAULT_STEPS) -> list[dict]:
    """The entries of the ``steps`` named (STEP_NAMES; bench-lion is two entries, one per decay), in the order they
    run: name, --steps name ("step"), key, command (and how the summary shows it, "shown"), time limit, whether it
    needs CUDA, its log file and how much of it to summarise."""
    py = sys.executable
    bench = [py, "-m", "bizoo.scripts.bench"]
    lion = [*bench, "lion", "--dtype", "bfloat16", "--json", str(out / "bench_lion.json"),
            "--plot", str(out / "bench_lion.png")]
    crossover = [*bench, "lion-crossover", "--json", str(out / "bench_lion_crossover.json")]
    model = [*bench, "lion-model", "--json", str(out / "bench_lion_model.json")]
    # K = 9 only (the targets' K, CoNLL-2003's tags) and 5 runs: pytorch-crf's decode, the baseline of the Viterbi
    # and max-marginal tables (timed once for both), syncs with the host at every tag it reads back (B·L per call).
    crf = [*bench, "crf", "--methods", "triton", "auto", "--batch-sizes", "1", "64", "--tags", "9", "--lengths", "128",
           "512", "--repeats", "5", "--warmup", "2", "--json", str(out / "bench_crf.json")]
    # The grid: the Triton schedule (triton) and torch.lstm against torch.nn.LSTM (cuDNN); on ELMo's LSTMPs
    # also against the autograd loop and the unclipped nn.LSTM(proj_size=P), both always measured. The per-step loop
    # is left out (at L = 512 it takes minutes).
    lstm = [*bench, "lstm", "--methods", "triton", "native", "--repeats", "5", "--warmup", "2",
            "--json", str(out / "bench_lstm.json"), "--plot", str(out / "bench_lstm.png")]
    # fp32 like for like: without --tf32 every product IEEE (cuDNN's RNNs included, which torch lets take TF32 by
    # default), with it every product TF32: the ELMo part (ELMo trains in fp32) both ways.
    lstm_tf32 = [*bench, "lstm", "--part", "lstmp", "--methods", "triton", "--tf32", "--repeats", "5", "--warmup", "2",
                 "--json", str(out / "bench_lstm_tf32.json")]
    # LION on fp32 inputs (a model trained without autocast): IEEE products (torch's default) and TF32 (--tf32), the
    # Triton chunk schedule against the reference chunk form on cuBLAS and SDPA, each at the same precision.
    lion_fp32 = {
        precision: [*bench, "lion", "--dtype", "float32", "--decay", "s", "--lengths", "512", "4096",
                    "--methods", "sdpa", "reference-chunk", "triton-chunk", "--repeats", "5", "--warmup", "2",
                    "--json", str(out / f"bench_lion_fp32_{precision}.json"),
                    *(["--tf32"] if precision == "tf32" else [])]
        for precision in ("ieee", "tf32")
    }
    # The kernel files compiled for the GPU (the *_reference tests are device-independent and run in CI), the
    # models in half precision on CUDA, LION's model tests; the GPU-only tests first.
    tests = ["tests/reliability/test_gpu_edges.py", "tests/kernels/test_ssm_triton.py",
             "tests/kernels/test_lion_triton.py", "tests/kernels/test_lstm_steps_triton.py",
             "tests/kernels/test_crf_triton.py", "tests/modeling/test_lion.py"]
    bigs = [*bench, "bigs", "--json", str(out / "bench_bigs.json"), "--plot", str(out / "bench_bigs.png")]
    # 4 layers of BERT-base width: inductor compiles each model in about a minute
    models = [*bench, "models", "--layers", "4", "--json", str(out / "compile_models.json"),
              *(["--tokens-per-step", "8192", "--steps", "4"] if quick else [])]
    bigs_model = [*bench, "bigs-model", "--json", str(out / "bench_bigs_model.json")]
    lion_tests = [py, "-m", "pytest", "-q", "-rfE", "--tb=short", *LION_TESTS, "-p", "no:cacheprovider",
                  "--junitxml", str(out / "lion_tests.xml")]
    # bench-lion: fla-causal compiles its kernels once per decay; the runs themselves take milliseconds.
    lion_decays = {
        decay: [*bench, "lion", "--dtype", "bfloat16", "--tokens", "32768", "--heads", "12", "--head-dim", "64",
                "--chunk-size", "64", "--decay", decay, "--methods", *BENCH_LION_METHODS, "--modes", "fwd", "fwdbwd",
                "--json", str(out / f"bench_lion_{decay}.json"), "--plot", str(out / f"bench_lion_{decay}.png")]
        for decay in ("s", "lit")
    }
    if quick:
        lion += ["--lengths", "1024", "4096", "--repeats", "3", "--warmup", "2"]
        crossover += ["--lengths", "256", "1024", "4096", "--repeats", "3", "--warmup", "2"]
        model += ["--lengths", "512", "--steps", "3", "--warmup-steps", "1"]
        lstm += ["--batch-sizes", "32", "--lengths", "128", "--hidden", "256", "512", "--elmo-sizes", "original",
                 "--elmo-batch-sizes", "32"]
        lstm_tf32 += ["--elmo-sizes", "original", "--elmo-batch-sizes", "32"]
        bigs += ["--lengths", "512", "4096", "--repeats", "3", "--warmup", "2"]
        bigs_model += ["--lengths", "512", "--steps", "3", "--warmup-steps", "1"]
        for command in lion_decays.values():
            command += ["--lengths", "1024", "4096", "--repeats", "3", "--warmup", "2"]
    else:
        # Sized from a first H200 run, where the default grids outran every step's limit.
        lion += ["--lengths", "512", "2048", "8192"]
        crossover += ["--backends", "triton", "reference"]
        model += ["--lengths", "512", "4096"]
        lstm += ["--batch-sizes", "32", "128", "--lengths", "128", "512", "--hidden", "256", "512",
                 "--elmo-sizes", "original", "small", "--elmo-batch-sizes", "32", "--elmo-lengths", "20", "64"]
        lstm_tf32 += ["--elmo-sizes", "original", "--elmo-batch-sizes", "32", "--elmo-lengths", "20", "64"]
        bigs += ["--lengths", "512", "4096", "16384"]
        bigs_model += ["--lengths", "512", "4096", "--steps", "3", "--warmup-steps", "1"]
        for command in lion_decays.values():
            command += ["--lengths", *BENCH_LION_LENGTHS, "--repeats", "10", "--warmup", "2"]
    entries = [
        # The kernel tests on the real GPU (fp32 against the reference, and the bf16/fp16 ones marked gpu), compiled
        # with one configuration each (BIZOO_TRITON_AUTOTUNE=0), plus every other test marked gpu.
        {"name": "GPU tests (Triton kernel files, models in half precision on CUDA)", "step": "gpu-tests",
         "key": "gpu_tests", "needs_cuda": False,
         "tests": True, "env": {"BIZOO_TRITON_AUTOTUNE": "0"},
         "command": [py, "-m", "pytest", "-q", "-rfE", "--tb=short", *tests, "-p", "no:cacheprovider"],
         "log": out / "gpu_tests.log", "timeout": 195, "tail": LOG_TAIL_LINES},
        # The LION steps (--steps lion): their limits add up to 500 s with bench-lion-crossover's and lion-model's;
        # with the environment report the run stays under 8.5 minutes. Measured on an H200 with a cold Triton cache:
        # lion-launches 20 s of work, lion-states 50 s; bench-lion is compile-bound (see BENCH_LION_ENV): decay lit
        # has fla's forward+backward. Those lion-launches and bench-lion runs also compiled and ran a second, older
        # chunk schedule, since removed: 40 s of their limits then went to bench-lion-crossover.
        {"name": "LION tests (Triton kernels, reference, model) on the GPU", "step": "lion-tests", "key": "lion_tests",
         "needs_cuda": False, "tests": True, "env": {"BIZOO_TRITON_AUTOTUNE": "0"}, "command": lion_tests,
         "log": out / "lion_tests.log", "timeout": 80 if quick else 90, "tail": LOG_TAIL_LINES},
        # The launches and syncs of a call do not depend on the kernels' configurations: one each, compiled once.
        {"name": "LION kernel launches and host syncs", "step": "lion-launches", "key": "lion_launches",
         "needs_cuda": True, "env_default": {"BIZOO_TRITON_AUTOTUNE": "0"},
         "command": _part_command("lion_launches", out, quick),
         "shown": f"lion_launches({str(out)!r}) of {__name__}", "log": out / "lion_launches.txt",
         "timeout": 25, "tail": BENCH_MAX_LINES},
        # Accuracy only: one configuration per kernel (compiled once, the same as lion-tests', from Triton's cache).
        {"name": "LION bf16 chunk states against fp32 states", "step": "lion-states", "key": "lion_states",
         "needs_cuda": True, "env": {"BIZOO_TRITON_AUTOTUNE": "0"},
         "command": _part_command("lion_states", out, quick),
         "shown": f"lion_states({str(out)!r}) of {__name__}", "log": out / "lion_states.txt",
         "timeout": 40 if quick else 55, "tail": BENCH_MAX_LINES},
        *({"name": f"bench lion, decay {decay}: the chunk schedule, the parallel schedule, SDPA, fla's causal chunk",
           "step": "bench-lion", "key": f"bench_lion_{decay}", "needs_cuda": True, "env_default": BENCH_LION_ENV,
           "command": command, "log": out / f"bench_lion_{decay}.txt",
           "timeout": (60 if decay == "s" else 80) if quick else (90 if decay == "s" else 140),
           "tail": BENCH_MAX_LINES}
          for decay, command in lion_decays.items()),
        # The bizoo kernels with their first configuration, as bench-lion's (BENCH_LION_ENV): autotuning triton-chunk
        # and triton-parallel at three lengths takes longer than the whole limit on a cold Triton cache.
        {"name": "bench lion", "step": "bench-lion-default", "key": "bench_lion", "needs_cuda": True, "command": lion,
         "env_default": BENCH_LION_ENV, "log": out / "bench_lion.txt", "timeout": 55 if quick else 60,
         "tail": BENCH_MAX_LINES},
        # The kernels with their first configuration too (BENCH_LION_ENV): the chunk schedule retunes at every new
        # power-of-two length, six of them here (~10 s each after 17-27 s at the first), over the step's limit.
        {"name": "bench lion-crossover", "step": "bench-lion-crossover", "key": "bench_lion_crossover",
         "needs_cuda": True, "command": crossover, "env_default": BENCH_LION_ENV,
         "log": out / "bench_lion_crossover.txt", "timeout": 40, "tail": BENCH_MAX_LINES},
        {"name": "bench lion-model", "step": "lion-model", "key": "bench_lion_model", "needs_cuda": True,
         "command": model, "log": out / "bench_lion_model.txt", "timeout": 55 if quick else 60,
         "tail": BENCH_MAX_LINES},
        # Not in --steps lion (its budget is spent): --steps fp32. The half-precision range tests compile the fp16
        # and bf16 kernels once each (untuned); each bench compiles the fp32 kernels once (untuned).
        {"name": "LION half-precision range tests on the GPU", "step": "lion-half-tests", "key": "lion_half_tests",
         "needs_cuda": False, "tests": True, "env": {"BIZOO_TRITON_AUTOTUNE": "0"},
         "command": [py, "-m", "pytest", "-q", "-rfE", "--tb=short", "tests/kernels/test_lion_half_range.py",
                     "-p", "no:cacheprovider"],
         "log": out / "lion_half_tests.log", "timeout": 60, "tail": LOG_TAIL_LINES},
        *({"name": f"bench lion, fp32 inputs, {precision.upper()} products", "step": "bench-lion-fp32",
           "key": f"bench_lion_fp32_{precision}", "needs_cuda": True, "env_default": BENCH_LION_ENV,
           "command": command, "log": out / f"bench_lion_fp32_{precision}.txt", "timeout": 60,
           "tail": BENCH_MAX_LINES}
          for precision, command in lion_fp32.items()),
        # torch.compile on the GPU (run with --steps compile): inductor compiles each model's training step and its
        # inference forward, ~1 minute a model (an estimate: not yet run on a GPU).
        {"name": "bench models: eager vs torch.compile training and inference, vs baselines, and host syncs",
         "step": "compile-models",
         "key": "compile_models", "needs_cuda": True, "command": models, "log": out / "compile_models.txt",
         "timeout": 300 if quick else 480, "tail": BENCH_MAX_LINES},
        {"name": "bench crf", "step": "bench-crf", "key": "bench_crf", "needs_cuda": True, "command": crf,
         "log": out / "bench_crf.txt", "timeout": 30, "needs": "torchcrf", "tail": BENCH_MAX_LINES},
        {"name": "bench lstm", "step": "bench-lstm", "key": "bench_lstm", "needs_cuda": True, "command": lstm,
         "log": out / "bench_lstm.txt", "timeout": 45, "tail": BENCH_MAX_LINES},
        {"name": "bench lstm, ELMo's LSTMP with TF32 products (cuDNN's and bizoo's)", "step": "bench-lstm-tf32",
         "key": "bench_lstm_tf32", "needs_cuda": True, "command": lstm_tf32, "log": out / "bench_lstm_tf32.txt",
         "timeout": 35, "tail": BENCH_MAX_LINES},
        # The SSM op autotunes its Triton kernels (compiled once: bigs-model finds them in Triton's cache).
        {"name": "bench bigs", "step": "bench-bigs", "key": "bench_bigs", "needs_cuda": True, "command": bigs,
         "log": out / "bench_bigs.txt", "timeout": 50, "tail": BENCH_MAX_LINES},
        {"name": "bench bigs-model", "step": "bench-bigs-model", "key": "bench_bigs_model", "needs_cuda": True,
         "command": bigs_model, "log": out / "bench_bigs_model.txt", "timeout": 50, "tail": BENCH_MAX_LINES},
    ]
    return [entry for entry in entries if entry["step"] in steps]


# ----------------------------------------------------------------------------------------------------------------
# LION steps that run a function of this module in a child process (_PART_CODE): lion-launches, lion-states
# ----------------------------------------------------------------------------------------------------------------


def lion_inputs(B: int, H: int, L: int, D: int, decay: str, device, seed: int = 0):
    """q, k (U(0, 1) + 0.1: positive, as after LION's feature map), v and a cotangent dy (N(0, 1)), each (B, H, L, D)
    in bf16; log_decay (B, H, L) fp32 with log λ = -0.1·U(0, 1) for decay 's', None for 'lit'."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    q = (torch.rand(B, H, L, D, generator=g, device=device) + 0.1).to(torch.bfloat16)  # (B, H, L, D)
    k = (torch.rand(B, H, L, D, generator=g, device=device) + 0.1).to(torch.bfloat16)  # (B, H, L, D)
    v = torch.randn(B, H, L, D, generator=g, device=device).to(torch.bfloat16)  # (B, H, L, D)
    dy = torch.randn(B, H, L, D, generator=g, device=device).to(torch.bfloat16)  # (B, H, L, D)
    log_decay = -0.1 * torch.rand(B, H, L, generator=g, device=device) if decay == "s" else None  # (B, H, L)
    return q, k, v, log_decay, dy


def _lion_ops() -> dict:
    """name -> op(q, k, v, log_decay) of the Triton chunk form: lion_attention, backend 'triton', form 'chunk',
    chunk 64."""
    from ...kernels.lion import lion_attention

    return {"lion_attention(backend='triton', form='chunk')": lambda q, k, v, a: lion_attention(
        q, k, v, a, None, form="chunk", chunk_size=64, normalize=True, backend="triton")}


def gpu_kernels(fn) -> list[str]:
    """The names of the GPU activities (kernels, memcpy, memset) that ``fn()`` launches, in launch order, from a
    torch.profiler session around it (synchronised before the session ends)."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = sorted((e for e in prof.events() if e.device_type == DeviceType.CUDA), key=lambda e: e.time_range.start)
    return [e.name for e in events]


def _launch_counts(names: list[str]) -> dict:
    """kernels (the count and each name with its count) and the memcpy/memset activities among ``names``."""
    kernels = [n for n in names if not n.startswith(("Memcpy", "Memset"))]
    by_name = {}
    for n in kernels:
        by_name[n] = by_name.get(n, 0) + 1
    return {"kernels": len(kernels), "names": by_name, "memcpy_memset": len(names) - len(kernels)}


def lion_launches(out_dir: str, quick: bool = False) -> int:
    """Step lion-launches: the GPU kernels one forward and one backward of the Triton chunk form launch at B = 8,
    H = 12, L = 4096, D = 64, bf16, decays s and lit, after two warm-up forward+backward calls (autotuning and
    compilation done), counted in torch.profiler sessions: the forward with inputs that require gradients (as in
    training), the backward of an output computed outside the session. A forward+backward then runs under
    ``torch.cuda.set_sync_debug_mode("error")``: "ok", or "failed" with the synchronising call's error. The chrome
    trace of one forward and one forward+backward of each op goes to OUT_DIR/lion_trace.json, the counts to
    OUT_DIR/lion_launches.json, written before the trace is taken (its "trace": the file, or why it failed). ``quick``
    changes nothing (one shape). Exit code 1 without a CUDA device, or where a row or the trace failed."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    out = Path(out_dir)
    if not torch.cuda.is_available():
        report("lion-launches: no CUDA device")
        return 1
    B, H, L, D = 8, 12, 4096, 64
    ops = _lion_ops()
    report(f"GPU kernel launches per call, B = {B}, H = {H}, L = {L}, D = {D}, bf16, chunk 64, after 2 warm-up "
          "forward+backward calls; forward with inputs requiring gradients; host sync: a forward+backward under "
          'torch.cuda.set_sync_debug_mode("error")')
    rows, cases = [], []
    for decay in ("s", "lit"):
        q, k, v, log_decay, dy = lion_inputs(B, H, L, D, decay, "cuda")
        leaves = [t for t in (q, k, v, log_decay) if t is not None]
        for t in leaves:
            t.requires_grad_(True)
        for name, op in ops.items():
            row = {"op": name, "decay": decay}
            rows.append(row)

            def call(op=op, inputs=(q, k, v, log_decay)):  # this decay's inputs, also when the trace calls it
                return op(*inputs)

            def forward_backward(call=call, leaves=leaves, dy=dy):
                for t in leaves:
                    t.grad = None  # no accumulation kernels in what is counted
                call().backward(dy)

            begin = time.monotonic()
            try:
                for _ in range(2):
                    forward_backward()
                torch.cuda.synchronize()
                logger.info(f"[{name}, decay {decay}: warm-up done in {time.monotonic() - begin:.0f} s]")
                row["forward"] = _launch_counts(gpu_kernels(call))
                y = call()
                for t in leaves:
                    t.grad = None
                row["backward"] = _launch_counts(gpu_kernels(lambda: y.backward(dy)))
                del y
                cases.append((f"{name}, decay {decay}", call, forward_backward))
            except Exception as err:  # noqa: BLE001 - a row with the reason, then the next op
                row["status"] = f"failed: {short(err, 200)}"
                continue
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                forward_backward()
                row["host_sync"] = "ok"
            except Exception as err:  # noqa: BLE001 - RuntimeError from a synchronising call, or whatever it was
                row["host_sync"] = f"failed: {short(err, 200)}"
            finally:
                torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize()
            row["status"] = "ok"
            logger.info(f"[{name}, decay {decay}: counted, host sync {row['host_sync']}, "
                        f"{time.monotonic() - begin:.0f} s]")
    head = f"{'op':<48} {'decay':<5} {'fwd kernels':>11} {'bwd kernels':>11} {'memcpy/set':>10}  host sync"
    report(head + "\n" + "-" * len(head))
    for r in rows:
        if r["status"] != "ok":
            report(f"{r['op']:<48} {r['decay']:<5} {'-':>11} {'-':>11} {'-':>10}  {r['status']}")
            continue
        other = r["forward"]["memcpy_memset"] + r["backward"]["memcpy_memset"]
        report(f"{r['op']:<48} {r['decay']:<5} {r['forward']['kernels']:>11} {r['backward']['kernels']:>11} "
              f"{other:>10}  {r['host_sync']}")
    for r in rows:
        for part in ("forward", "backward"):
            if part in r:
                names = ", ".join(f"{count}x {n}" for n, count in r[part]["names"].items())
                report(f"{r['op']}, decay {r['decay']}, {part}: {names}")
    record = {"B": B, "H": H, "L": L, "D": D, "dtype": "bfloat16", "chunk_size": 64, "trace": "not written yet",
              "rows": rows}

    def write_record():
        (out / "lion_launches.json").write_text(json.dumps(record, indent=1) + "\n")

    write_record()  # the counts first: a trace that fails (or runs out of time) leaves them
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for label, call, forward_backward in cases:
                with record_function(f"{label}: forward"):
                    call()
                torch.cuda.synchronize()
                with record_function(f"{label}: forward+backward"):
                    forward_backward()
                torch.cuda.synchronize()
        prof.export_chrome_trace(str(out / "lion_trace.json"))
        record["trace"] = "lion_trace.json"
        report(f"trace: {out / 'lion_trace.json'}")
    except Exception as err:  # noqa: BLE001 - the counts are written; the trace's failure is said and recorded
        record["trace"] = f"failed: {short(err, 200)}"
        report(f"trace: {record['trace']}")
    write_record()
    if record["trace"] != "lion_trace.json":
        return 1
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def relative_error(x, ref) -> float:
    """max|x - ref| / max|ref|, in fp32 (inf where ref is all zeros and x is not)."""
    diff = (x.float() - ref.float()).abs().max().item()
    scale = ref.float().abs().max().item()
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def lion_states(out_dir: str, quick: bool = False) -> int:
    """Step lion-states: the accuracy of the Triton chunk form (``lion_attention_triton``, chunk 64) with bf16 chunk
    states (fp32_states=False) and fp32 ones (True), bf16 inputs (``lion_inputs``), B·L = 32768, H = 12, D = 64,
    L = 512, 4096, 16384 (``quick``: 512, 4096), decays s and lit: the relative error max|x - ref| / max|ref| of the
    output and of the gradients of q, k, v and log_decay for a random cotangent, the reference being the reference
    backend's chunk form on fp32 copies of the inputs on the GPU (TF32 off). A table, and
    OUT_DIR/lion_states.json; "unavailable" (exit code 0) where the op takes no fp32_states."""
    import inspect

    import torch

    from ...kernels.lion import lion_attention
    from ...kernels.lion.triton_op import lion_attention_triton

    out = Path(out_dir)
    record = {"tokens": 32768, "H": 12, "D": 64, "chunk_size": 64, "dtype": "bfloat16", "rows": []}
    if "fp32_states" not in inspect.signature(lion_attention_triton).parameters:
        record["status"] = "unavailable: lion_attention_triton takes no fp32_states keyword"
        report(f"lion-states: {record['status']}")
        (out / "lion_states.json").write_text(json.dumps(record, indent=1) + "\n")
        return 0
    if not torch.cuda.is_available():
        report("lion-states: no CUDA device")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    H, D, tokens = 12, 64, 32768
    lengths = (512, 4096) if quick else (512, 4096, 16384)
    parts = ("out", "dq", "dk", "dv", "dlog_decay")
    report(f"bf16 chunk states vs fp32 chunk states: max|x - ref| / max|ref|, ref = the reference chunk form in fp32 "
          f"on the GPU; bf16 inputs, B·L = {tokens}, H = {H}, D = {D}, chunk 64")
    head = f"{'decay':<5} {'L':>6} {'B':>4} {'states':<6} " + " ".join(f"{p:>10}" for p in parts)
    report(head + "\n" + "-" * len(head))
    failed = False
    for decay in ("s", "lit"):
        for L in lengths:
            B = max(1, tokens // L)
            q, k, v, log_decay, dy = lion_inputs(B, H, L, D, decay, "cuda")
            inputs = [t for t in (q, k, v, log_decay) if t is not None]

            def grads(fn, leaves):
                leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
                y = fn(*leaves)
                y.backward(dy.to(y.dtype))
                return [y.detach(), *(t.grad for t in leaves)]

            def op(q, k, v, a=None, **kwargs):
                return lion_attention_triton(q, k, v, a, None, form="chunk", chunk_size=64, normalize=True, **kwargs)

            try:  # a reference that fails (out of memory, say) fails this length's rows, not the whole step
                ref, ref_error = grads(lambda q, k, v, a=None: lion_attention(q, k, v, a, None, form="chunk",
                                                                              chunk_size=64, normalize=True,
                                                                              backend="reference"),
                                       [t.float() for t in inputs]), None
            except Exception as err:  # noqa: BLE001 - the rows say why
                ref, ref_error = None, err
            for fp32_states in (False, True):
                row = {"decay": decay, "L": L, "B": B, "states": "fp32" if fp32_states else "bf16"}
                try:
                    if ref_error is not None:
                        raise RuntimeError(f"the fp32 reference failed: {short(ref_error, 150)}")
                    got = grads(lambda *t: op(*t, fp32_states=fp32_states), inputs)
                    row.update({p: relative_error(x, r) for p, x, r in zip(parts, got, ref)})
                    row["status"] = "ok"
                except Exception as err:  # noqa: BLE001 - a row with the reason, then the next case
                    row["status"] = f"failed: {short(err, 200)}"
                    failed = True
                record["rows"].append(row)
                cells = " ".join(f"{row[p]:>10.2e}" if p in row else f"{'-':>10}" for p in parts)
                status = "" if row["status"] == "ok" else f"  {row['status']}"
                report(f"{decay:<5} {L:>6} {B:>4} {row['states']:<6} {cells}{status}")
                (out / "lion_states.json").write_text(json.dumps(record, indent=1) + "\n")
            del ref, inputs, q, k, v, log_decay, dy
            torch.cuda.empty_cache()
    return 1 if failed else 0


class Interrupted(BaseException):
    """A signal that ends the check (SIGTERM: ``timeout``, a job scheduler, ``kill``), raised in the main thread by
    the handler ``check`` installs, as Ctrl-C raises KeyboardInterrupt (and like it not an ``Exception``, which the
    steps' error handling catches): the running step is stopped and the summary written before the check exits
    with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(proc: subprocess.Popen) -> None:
    """Kill the step's process group (the step and whatever it started) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_step(command: list[str], log: Path, timeout: float, env: dict) -> str:
    """Run ``command`` in the package root with its output in ``log``; "ok", "failed (exit code N)" or "timeout".

    The step runs in its own process group, so that on a timeout it and whatever it started are stopped. That group
    is out of reach of the signals sent to the check's own (Ctrl-C in a terminal): whatever interrupts the wait
    (KeyboardInterrupt, ``Interrupted``) stops the step too, then is raised again, so that no step outlives the
    check and keeps the GPU busy."""
    with open(log, "w") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        proc = subprocess.Popen(
            command, stdout=f, stderr=subprocess.STDOUT, cwd=PACKAGE_ROOT, env=env, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            f.write(f"\n[gpu_check: stopped after the step's time limit of {timeout:.0f} s]\n")
            return f"timeout after {timeout:.0f} s (partial output kept)"
        except BaseException as err:
            _stop(proc)
            f.write(f"\n[gpu_check: stopped, the check was interrupted ({err!r})]\n")
            raise
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


def _shown(step: dict) -> str:
    """The step's command as the summary shows it (python as its file name), after the variables the step sets."""
    variables = step.get("applied_env", {**step.get("env_default", {}), **step.get("env", {})})
    command = step.get("shown") or " ".join(Path(c).name if c == sys.executable else c for c in step["command"])
    return "".join(f"{k}={v} " for k, v in variables.items()) + command


def skip_reason(step: dict, skip_tests: bool, cuda: bool) -> str | None:
    """Why ``step`` does not run here (its status), None when it runs: a test step under --skip-tests or without
    tests/, a step that needs CUDA without it, one whose baseline package (its "needs") is not installed."""
    if step.get("tests") and skip_tests:
        return "skipped: --skip-tests"
    if step.get("tests") and not (PACKAGE_ROOT / "tests").is_dir():
        return f"skipped: no tests/ folder in {PACKAGE_ROOT}"
    if step["needs_cuda"] and not cuda:
        return "skipped: no CUDA device"
    if step.get("needs") and importlib.util.find_spec(step["needs"]) is None:
        return f"skipped: {step['needs']} is not installed (carry its wheel: it is the baseline)"
    return None


def step_limits(steps: list[dict], budget: float, chosen: bool) -> None:
    """Each step's "limit": its timeout; with --steps (``chosen``) the timeouts scaled up, never down, so that the
    ``steps`` share the budget less 30 s (the environment report, the processes' start-ups): bench-lion alone
    gets about 500 s instead of 260 s. ``check`` passes the steps that will run (``skip_reason``), so that a step
    skipped, e.g. lion-tests under --skip-tests, leaves its share to the others."""
    total = sum(s["timeout"] for s in steps) or 1.0
    scale = max(1.0, (budget - 30) / total) if chosen else 1.0
    for s in steps:
        s["limit"] = s["timeout"] * scale


def write_summary(out: Path, env: dict, steps: list[dict], quick: bool, started: float, options: str = "") -> None:
    lines = [
        "# bizoo GPU check",
        "",
        f"{'quick' if quick else 'full'} run, {time.monotonic() - started:.0f} s elapsed; "
        f"`{PROG} {out}{' --quick' if quick else ''}{options}`",
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
                  f"command: `{_shown(s)}`"]
        if s.get("seconds") is not None:
            lines += ["", "```", _tail(s["log"], s["tail"]), "```"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    record = {
        "quick": quick, "environment": env,
        "steps": [{"name": s["name"], "step": s["step"], "key": s["key"], "status": s.get("status"),
                   "seconds": s.get("seconds"), "log": s["log"].name} for s in steps],
    }
    (out / "summary.json").write_text(json.dumps(record, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    return run_command(PROG, lambda: check(args))


def _options(args: argparse.Namespace, names: list[str]) -> str:
    """The options of the run besides OUT_DIR and --quick, as the summary's command line shows them."""
    options = " --skip-tests" if args.skip_tests else ""
    if args.budget != DEFAULT_BUDGET:
        options += f" --budget {args.budget:g}"
    return options + (f" --steps {','.join(names)}" if args.steps is not None else "")


def _on_sigterm():
    """Make SIGTERM raise ``Interrupted`` in the main thread; the handler it replaces (None off the main thread,
    where signal handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Interrupted(signum)

    return signal.signal(signal.SIGTERM, handler)


def check(args: argparse.Namespace) -> int:
    """The check: the environment (step env), then each step of ``plan`` that --steps selects (``run_steps``);
    summary.md, written before the first step, as each starts and after it. Interrupted (Ctrl-C, SIGTERM): the
    running step stopped (``run_step``) and recorded as interrupted with its partial output, the steps after it as
    not run, the summary written; the exit code is then 128 + the signal's number (130, 143)."""
    started = time.monotonic()
    names = parse_steps(args.steps)
    if not (math.isfinite(args.budget) and args.budget > 0):
        raise ValueError(f"--budget must be a number of seconds > 0 (default {DEFAULT_BUDGET:g}), got {args.budget}")
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    options = _options(args, names)
    env: dict = {"environment": "interrupted before it was collected"}
    steps: list[dict] = []
    previous = _on_sigterm()
    try:
        run_steps(args, names, out, options, started, env, steps)
        return 0
    except (KeyboardInterrupt, Interrupted) as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        for step in steps:
            if step.get("status") == "running":
                step["seconds"] = time.monotonic() - step["began"]
                step["status"] = f"interrupted by {name} after {step['seconds']:.0f} s (partial output kept)"
            elif "status" not in step:
                step["status"] = f"not run: the check was interrupted by {name}"
        write_summary(out, env, steps, args.quick, started, options)
        logger.warning(f"interrupted by {name}: the summary so far is {out / 'summary.md'}")
        return 128 + signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_steps(args, names: list[str], out: Path, options: str, started: float, env: dict, steps: list[dict]) -> None:
    """The environment report (into ``env``) and each step of the plan (appended to ``steps``, each given its
    status as it goes: what ``check`` reads when it is interrupted), in order."""
    try:
        import torch

        cuda = torch.cuda.is_available()
        collected = environment() if "env" in names else {"environment": "not collected (--steps without env)"}
    except Exception as err:  # noqa: BLE001 - record and go on: the summary is the product
        cuda, collected = False, {"environment": f"failed: {type(err).__name__}: {err}"}
    env.clear()
    env.update(collected)
    for key, value in env.items():
        logger.info(f"{key}: {value}")
    (out / "environment.txt").write_text("".join(f"{k}: {v}\n" for k, v in env.items()))
    steps.extend(plan(out, args.quick, names))
    for step in steps:  # known before any step runs: the budget is shared by the steps that will run
        if (why := skip_reason(step, args.skip_tests, cuda)) is not None:
            step["status"] = why
    step_limits([s for s in steps if "status" not in s], args.budget, args.steps is not None)
    step_env = _step_env(cuda)
    write_summary(out, env, steps, args.quick, started, options)  # a run stopped in its first step leaves one
    for step in steps:
        remaining = args.budget - (time.monotonic() - started)
        if "status" in step:
            pass  # skipped (skip_reason)
        elif remaining < 20:
            step["status"] = f"skipped: the time budget of {args.budget:.0f} s is spent"
        else:
            logger.info(f"[gpu_check] {step['name']} (limit {min(step['limit'], remaining):.0f} s) ...")
            begin = step["began"] = time.monotonic()
            step["status"] = "running"  # what a summary written while it runs (or after a kill -9) says
            write_summary(out, env, steps, args.quick, started, options)
            try:
                # "env_default": unless the caller's environment sets it; "env": always.
                applied = {k: step_env.get(k, v) for k, v in step.get("env_default", {}).items()}
                step["applied_env"] = {**applied, **step.get("env", {})}
                child_env = {**step_env, **step["applied_env"]}  # not `env`: that is the report in the summary
                step["status"] = run_step(step["command"], step["log"], min(step["limit"], remaining), child_env)
                if step.get("tests") and not cuda:  # it ran, but not what it is for: say so beside "ok"
                    step["status"] += " (no CUDA device: the tests that need one skipped themselves; see the log)"
            except Exception as err:  # noqa: BLE001
                step["status"] = f"failed to start: {type(err).__name__}: {err}"
            step["seconds"] = time.monotonic() - begin
        logger.info(f"[gpu_check] {step['name']}: {step['status']}")
        write_summary(out, env, steps, args.quick, started, options)
    write_summary(out, env, steps, args.quick, started, options)
    report(f"[gpu_check] summary: {out / 'summary.md'} ({time.monotonic() - started:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bizoo.scripts.gpu_check``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
