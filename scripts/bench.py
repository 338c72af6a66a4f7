"""Benchmark bizoo's kernels and models against their baselines, measured in the same run.

`bizoo bench lion` times the LION attention op forward and forward+backward (median ms and peak memory) at each
length L with B·L tokens fixed, against PyTorch's softmax attention (SDPA, FlashAttention on a GPU where the dtype
allows) with the same shapes, and reports each method's speed-up over SDPA and over the reference chunk form
(baseline ms / method ms: > 1 means faster than the baseline). The methods: `sdpa`, `reference-attention` (the
O(L²) form), `reference-chunk`, `reference-rnn`, `reference-auto`, `triton-chunk`, `triton-parallel` (the tiled
form="attention" schedule), `triton-auto` (all of them `lion_attention` with attention_mask=None) and `fla-causal`
(fla-core's causal chunk kernel `fla.ops.simple_gla.chunk_simple_gla` on the same shapes, one direction: a
yardstick; its inputs are transposed to (B, L, H, D) once, outside the timed runs). On a GPU every case runs in
this process (warm-up runs, then CUDA events around each run, the L2 cache flushed before it outside the events;
peak = `torch.cuda.max_memory_allocated` above the inputs; out of memory is a row with status "oom"), and each row
gives the achieved bandwidth (the op's minimal memory traffic, `lion_traffic_bytes`, over the median time), that as
a percentage of the HBM peak (--hbm-gbs, or measured once per run as a large device-to-device copy) and the memory
floor (that traffic at the peak, in ms). On a CPU every case runs in its own child process, so that its peak memory
(the growth of the peak resident set) is its own, and a case whose estimated memory does not fit is not run.
Methods that cannot run here (Triton without a GPU, form "auto" before the dispatcher knows it, a kernel or
package that does not import) are rows with an "unavailable" status.

`bizoo bench lion-crossover` times the chunk and the attention forms of each backend forward+backward and prints
the smallest length from which the chunk form is faster: the value for `TRITON_CHUNK_MIN_LENGTH` and
`REFERENCE_CHUNK_MIN_LENGTH` in `bizoo.kernels.lion`, which `form="auto"` uses.

`bizoo bench lion-model` measures masked-LM training throughput (tokens/s of forward + backward + optimizer
step) of LION-D against `transformers.BertForMaskedLM` with SDPA attention, both at BERT-base size by default.

`bizoo bench lion-forms` checks that the forms agree: the max abs difference of the rnn and chunk forms from the
attention form, per decay type, in fp32, on random inputs with padding.

`bizoo bench crf` times the linear-chain CRF ops of `bizoo.kernels.crf` against pytorch-crf (`torchcrf.CRF`, a dev
dependency) on the same inputs and parameters, in this process, in fp32: the log-likelihood forward+backward (the sum
over the batch, gradients to the emissions and the CRF parameters) and the Viterbi decode (pytorch-crf's `decode`,
whose Python lists are part of its cost), at each B × K × L of the grid, on right-padded batches (the first row L
long, the others between L/2 and L). The methods are the backends `reference`, `scan`, `auto` and `triton` (on a CPU
only when named: it runs in Triton's interpreter, whose times mean nothing); on a GPU, warm-up runs then CUDA
events. Each op's table gives median ms and torchcrf ms / method ms (> 1: faster than pytorch-crf); the targets
follow: `auto` at least 2x at B = 32, K = 9, L = 128 and not slower at B = 1; on a GPU `triton` at B = 64, L = 128
at least 10x (likelihood) and 20x (Viterbi).

`bizoo bench lstm` times one bidirectional LSTM layer of `bizoo.kernels.lstm.bilstm` forward and forward+backward
(gradients to the input and every weight; the input projection W_ih x is part of every timing) on right-padded
batches (the first row L long, the others between L/2 and L), in two parts. Part `lstm`: against
`torch.nn.LSTM(I, H, bidirectional=True, batch_first=True)` called on the whole padded tensor as models commonly call
it (`nn-lstm`, cuDNN on a GPU; its backward direction reads a row's padding before its real tokens), at each
B × H × L (on a GPU the grid B = 32, 128 × H = 100, 200, 256, 512 × L = 32, 128, 512; I = H); the methods `triton`
(the fused kernel), `native` (torch.lstm over each row's real tokens), `loop` (the per-step PyTorch loop with its
backward pass through time written out), `autograd-loop` (the same loop differentiated by autograd) and
`nn-lstm-packed` (the same module on packed sequences, when named). Part `lstmp`: ELMo's LSTM with a projection and
clipping at 3 (which torch.nn.LSTM cannot clip), at the sizes of the original (4096 cells projected to 512), medium
(2048/256) and small (1024/128) models, B = 32, 128 and L = 20, 64, the fused kernel and `loop` against the
autograd loop. Each
table gives median ms, peak memory, the speed-up over the part's baseline (baseline ms / method ms) and each method's
max abs difference from the fp32 autograd-loop reference on the same inputs (nn-lstm only where it computes the same); part
lstm ends with native ms / triton ms, what `TRITON_BEATS_CUDNN` of `bizoo.kernels.lstm` records. fp32 by default;
time and memory are measured as by `bench lion`; on a CPU the default grid is small (B = 32, H = 100, 256, L = 32,
128; ELMo small, B = 32, L = 20) and triton runs only when named (Triton's interpreter, whose times mean nothing).

`bizoo bench bigs` times BiGS's bidirectional SSM op (`bizoo.kernels.ssm.bidirectional_ssm`: both directions,
the two kernels computed by `s4d_kernel` inside every call) forward and forward+backward (gradients to the inputs
and every SSM parameter), against `fft-baseline`: the convolution as the original BiGS code runs it with `torch.fft`
(rfft of the input and of the kernel with n = 2L, product, irfft, the first L values, + D u; the backward direction
flips the input, convolves and flips back), in fp32, as torch.fft runs under autocast. The methods:
`fft-baseline`, `reference-fft`, `reference-toeplitz`, `reference-recurrent` (from the SSM parameters, no kernels),
`reference-auto` and `triton`. The defaults: on a GPU, bf16 inputs, L = 128 ... 16384 with B·L = 16384 tokens; on a
CPU, fp32, B = 1 and L = 512, 4096, 16384 (the growth of time and memory with L: the FFT ~ L log L, the recurrence
~ L; `reference-toeplitz` (O(L²)) and `triton` (Triton's interpreter) run on a CPU only when named). Time and memory
are measured as by `bench lion` (CUDA events and max_memory_allocated on a GPU, one child process per case on a
CPU); each row also gives the method's max abs difference from the fp32 FFT baseline on the same inputs, and the
table is followed by the growth factors of time and memory from one length to the next, beside the growth of B·L
and of B·L·log L.

`bizoo bench bigs-model` measures masked-LM training throughput (as `lion-model`) of BiGS against
`transformers.BertForMaskedLM` with SDPA attention at the large sizes: BiGS as the released "large-512" model (23
layers × 1024, gate width 3072, N = 64) with max_position_embeddings = L, BERT-large (24 layers × 1024, 16 heads,
feed-forward 4096), at L = 128, 512, 4096 with B·L = 16384 tokens per step; --layers, --hidden and --heads shrink
both models for a CPU.

`bizoo bench models` measures every model, eager and under `torch.compile(fullgraph=True)` (inductor on a GPU,
aot_eager on a CPU): training tokens/s (forward + backward + AdamW step, B·L tokens per step) and inference latency
(median ms of one forward in eval mode under torch.no_grad, --latency-batch rows of L tokens, timed as `bench lion`
times: CUDA events on a GPU, perf_counter on a CPU), each against a baseline measured in the same run. LION and BiGS
are masked LMs of --layers x --hidden, against BERT (SDPA) of the same size; the BiLSTM-CRF is a tagger trained with
its CRF loss at Ma & Hovy's sizes (100-d words, a character CNN, --tagger-layers x --tagger-hidden units per
direction, --tags tags), against the same tagger written with torch.nn.LSTM (cuDNN on a GPU), a linear layer and
pytorch-crf, which runs eager only (dynamo refuses nn.LSTM); ELMo, a masked LM at --elmo-size, has no baseline. The
table gives compiled/eager ratios and each model's ratios to its baseline in both modes (> 1: faster), and on a GPU
whether a compiled training step runs under `torch.cuda.set_sync_debug_mode("error")`.

Every table states the machine, the dtype, the shapes and how many runs the median is of.

examples:
  bizoo bench lion                                     # GPU: bf16, L = 512 ... 16384, B·L = 32768, H = 12, D = 64
  bizoo bench lion --device cpu --lengths 1024 4096 --methods sdpa reference-chunk reference-attention
  bizoo bench lion --json lion.json --plot lion.png
  bizoo bench lion --methods sdpa triton-chunk fla-causal --hbm-gbs 4800
  bizoo bench lion-crossover --json crossover.json     # -> TRITON_CHUNK_MIN_LENGTH (GPU), REFERENCE_... (CPU)
  bizoo bench lion-model --lengths 512 4096            # LION-D vs BERT (SDPA) training tokens/s
  bizoo bench lion-model --device cpu --lengths 64 --tokens-per-step 256 --layers 1 --hidden 32 --heads 2
  bizoo bench lion-forms --lengths 1024                # max |rnn - attention|, |chunk - attention| per variant
  bizoo bench crf                                      # B 1 32 64 × K 9 17 45 × L 32 128 512, vs pytorch-crf
  bizoo bench crf --batch-sizes 32 --tags 9 --lengths 128 --methods auto scan --repeats 20 --json crf.json
  bizoo bench lstm                                     # vs torch.nn.LSTM (cuDNN); ELMo LSTMP vs the loop
  bizoo bench lstm --part lstm --batch-sizes 32 --hidden 200 --lengths 128 --methods native nn-lstm-packed
  bizoo bench lstm --part lstmp --elmo-sizes original --elmo-lengths 20 --json lstmp.json --plot lstmp.png
  bizoo bench bigs                                     # GPU: bf16, L = 128 ... 16384, B·L = 16384, H = 1024
  bizoo bench bigs --device cpu --json bigs.json       # fp32, B = 1, L = 512 4096 16384: time and memory growth
  bizoo bench bigs --lengths 1024 --batch 8 --methods fft-baseline reference-toeplitz reference-fft --channels 256
  bizoo bench bigs-model                               # BiGS-large vs BERT-large (SDPA), L = 128 512 4096
  bizoo bench bigs-model --device cpu --lengths 128 512 --tokens-per-step 1024 --layers 2 --hidden 256 --heads 4
  bizoo bench models --layers 4 --json models.json     # every model eager vs compiled, vs BERT and nn.LSTM + CRF
  bizoo bench models --device cpu --lengths 32 --tokens-per-step 128 --layers 1 --hidden 64 --heads 2 --elmo-size small
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Standard library only at module level (torch and our kernels inside functions): the child of each case imports this
# module without the package's __init__ (_CHILD_CODE).
from .lib.command import command_main, run_command
from .lib.machine import machine_name

PROG = "bizoo bench"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder that is the package `bizoo`

# method -> (backend, form) of `bizoo.kernels.lion.lion_attention`; "sdpa" is torch's softmax attention. The
# backend "fla" (fla-core's `chunk_simple_gla`, causal: one direction) is not lion_attention's: `_op_function`
# calls it.
LION_METHODS = {
    "reference-attention": ("reference", "attention"),
    "reference-chunk": ("reference", "chunk"),
    "reference-rnn": ("reference", "rnn"),
    "reference-auto": ("reference", "auto"),
    "triton-chunk": ("triton", "chunk"),
    "triton-parallel": ("triton", "attention"),
    "triton-auto": ("triton", "auto"),
    "fla-causal": ("fla", "causal-chunk"),
}
# The backends whose kernels are Triton's (on a CPU only in its interpreter).
TRITON_BACKENDS = ("triton", "fla")
# bench lion runs these after the other methods at every length: fla-core compiles and autotunes its kernels at
# the first call, about 25 s for the forward and 2 minutes for forward+backward on an H200 (a cold Triton cache).
DEFERRED_METHODS = ("fla-causal",)
METHODS = ("sdpa", *LION_METHODS)
DEFAULT_METHODS = {
    "cuda": ("sdpa", "reference-attention", "reference-chunk", "triton-chunk", "triton-parallel", "triton-auto"),
    # On a CPU Triton runs only in its interpreter (TRITON_INTERPRET=1), whose timings mean nothing: name the
    # triton-* methods in --methods to run them anyway (the tests do, on tiny shapes).
    "cpu": ("sdpa", "reference-attention", "reference-chunk"),
}
MODES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}  # JSON key -> column label
CROSSOVER_CONSTANTS = {"triton": "TRITON_CHUNK_MIN_LENGTH", "reference": "REFERENCE_CHUNK_MIN_LENGTH"}
# bench crf: the backends of `bizoo.kernels.crf`, each timed against pytorch-crf ("torchcrf", always measured).
CRF_METHODS = ("reference", "scan", "auto", "triton")
CRF_DEFAULT_METHODS = {"cuda": CRF_METHODS, "cpu": ("reference", "scan", "auto")}  # on a CPU: name triton to run it
CRF_OPS = {"likelihood": "log-likelihood, forward+backward", "viterbi": "Viterbi decode"}
# The speed-ups over pytorch-crf the CRF ops are built for: (B, K, L, method, {op: at least}, CUDA only); K None is
# every measured K.
CRF_TARGETS = (
    (32, 9, 128, "auto", {"likelihood": 2.0, "viterbi": 2.0}, False),
    (1, 9, 128, "auto", {"likelihood": 1.0, "viterbi": 1.0}, False),
    (64, None, 128, "triton", {"likelihood": 10.0, "viterbi": 20.0}, True),
)
# bench bigs: method -> (backend, form) of `bizoo.kernels.ssm.bidirectional_ssm`; "fft-baseline" is torch.fft as the
# original BiGS code calls it, the baseline of every ratio.
SSM_METHODS = {
    "reference-fft": ("reference", "fft"),
    "reference-toeplitz": ("reference", "toeplitz"),
    "reference-recurrent": ("reference", "recurrent"),
    "reference-auto": ("reference", "auto"),
    "triton": ("triton", "auto"),
}
BIGS_METHODS = ("fft-baseline", *SSM_METHODS)
BIGS_DEFAULT_METHODS = {
    "cuda": BIGS_METHODS,
    # On a CPU the O(L²) Toeplitz form takes minutes at L = 16384 (name it in --methods to run it), and Triton runs
    # only in its interpreter: its row says "unavailable" unless --methods names it.
    "cpu": ("fft-baseline", "reference-fft", "reference-recurrent", "reference-auto", "triton"),
}
BIGS_DEFAULT_LENGTHS = {"cuda": [128, 512, 4096, 16384], "cpu": [512, 4096, 16384]}
BIGS_DEFAULT_TOKENS = 16384  # on a GPU B·L is fixed; on a CPU B = 1, so that the time shows its growth with L
# bench lstm: method -> (backend, form) of `bizoo.kernels.lstm.bilstm`. "nn-lstm" is torch.nn.LSTM on the whole
# right-padded tensor (the baseline of part "lstm"), "nn-lstm-packed" the same module on packed sequences; part
# "lstmp" (ELMo's clipped LSTM with a projection, which torch.nn.LSTM cannot clip) times triton against "loop".
BILSTM_METHODS = {"triton": ("triton", "auto"), "native": ("reference", "native"), "loop": ("reference", "loop"),
                  "autograd-loop": ("reference", "autograd")}
NN_LSTM_METHODS = ("nn-lstm", "nn-lstm-packed")
LSTM_METHODS = (*NN_LSTM_METHODS, *BILSTM_METHODS)
# On a CPU the triton rows say "unavailable" unless --methods names triton (it then runs in Triton's interpreter).
LSTM_DEFAULT_METHODS = ("triton", "native", "loop")
LSTM_PARTS = ("lstm", "lstmp")
# ELMo's LSTMP sizes, (cells, projection) per direction: the original model (ElmoConfig's defaults) and the medium
# and small ones AllenNLP released; every one clips cells and projections at 3 and reads the token vector (I = P).
ELMO_SIZES = {"original": (4096, 512), "medium": (2048, 256), "small": (1024, 128)}
ELMO_CLIP = 3.0
LSTM_DEFAULT_GRID = {
    "cuda": {"batch_sizes": [32, 128], "lengths": [32, 128, 512], "hidden": [100, 200, 256, 512],
             "elmo_sizes": list(ELMO_SIZES), "elmo_batch_sizes": [32, 128], "elmo_lengths": [20, 64]},
    "cpu": {"batch_sizes": [32], "lengths": [32, 128], "hidden": [100, 256],
            "elmo_sizes": ["small"], "elmo_batch_sizes": [32], "elmo_lengths": [20]},
}
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


def _model_arguments(p: argparse.ArgumentParser, model: str, lengths: list[int], layers: int | None, hidden: int,
                     heads: int) -> None:
    """The arguments of a masked-LM training comparison of ``model`` against BERT (lion-model, bigs-model)."""
    _device_arguments(p)
    p.add_argument("--lengths", type=int, nargs="+", default=lengths, help="sequence lengths L (default: %(default)s)")
    p.add_argument("--tokens-per-step", type=int, default=16384,
                   help="tokens per step: B = tokens // L (default: %(default)s)")
    p.add_argument("--backend", choices=["auto", "triton", "reference"], default="auto",
                   help=f"{model} kernel_backend (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 5 on cuda, 2 on cpu)")
    p.add_argument("--warmup-steps", type=int, default=None, help="untimed steps first (default: 2 on cuda, 1 on cpu)")
    which = "BERT, LION and BiGS" if model == "each model" else "both models"  # bench models: not the LSTMs
    p.add_argument("--layers", type=int, default=layers,
                   help=f"layers of {which} (default: %s)" % (layers or "23 for BiGS, 24 for BERT, the large sizes"))
    p.add_argument("--hidden", type=int, default=hidden, help=f"hidden size of {which} (default: %(default)s)")
    with_heads = "BERT and LION" if model == "LION" else "BERT"  # BiGS has no attention
    p.add_argument("--heads", type=int, default=heads, help=f"attention heads of {with_heads} (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=30522, help="vocabulary (default: %(default)s, BERT's)")
    p.add_argument("--dense-logits", action="store_true",
                   help=f"{model} projects every position onto the vocabulary like BERT does (default: only the "
                        "masked positions, the config's sparse_prediction)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on cuda")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..configuration.configuration_bigs import BIGS_FORMS

    sub = parser.add_subparsers(dest="op", metavar="OP", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("lion", help="the LION op vs SDPA: forward and forward+backward time and memory",
                       description=__doc__, formatter_class=fmt)
    _op_arguments(p, [512, 1024, 2048, 4096, 8192, 16384], "timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=None, metavar="METHOD",
                   help=f"what to time, from {', '.join(METHODS)} (default on cuda: sdpa, reference-attention, "
                        "reference-chunk, triton-chunk, triton-parallel, triton-auto; on cpu: sdpa, "
                        "reference-attention, reference-chunk)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="fwd (no autograd) and/or fwdbwd (forward + backward) (default: both)")
    p.add_argument("--hbm-gbs", type=float, default=None, metavar="GB/S",
                   help="the memory bandwidth peak in GB/s (10⁹ bytes/s) for the %%HBM and floor columns (default on "
                        "cuda: measured once as a device-to-device copy; on cpu: none, the columns show '-')")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot time against length (log-log)")

    p = sub.add_parser("lion-crossover", help="the length from which the chunk form beats the attention form",
                       description=__doc__, formatter_class=fmt)
    _op_arguments(p, [128, 256, 512, 1024, 2048, 4096], "timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--backends", nargs="+", choices=["triton", "reference"], default=None,
                   help="backends to measure (default: triton on cuda, reference on cpu)")

    p = sub.add_parser("lion-model", help="masked-LM training tokens/s: LION-D vs BERT with SDPA",
                       description=__doc__, formatter_class=fmt)
    _model_arguments(p, "LION", [512, 4096], layers=12, hidden=768, heads=12)
    p.add_argument("--form", choices=["auto", "attention", "chunk", "rnn"], default="auto",
                   help="LION lion_form (default: %(default)s; chunk where 'auto' is not available yet)")
    p.add_argument("--intermediate", type=int, default=None, help="feed-forward size (default: 4 × hidden)")

    p = sub.add_parser("models", help="every model's training tokens/s and inference latency, eager vs torch.compile, "
                       "vs its baseline (BERT, nn.LSTM + pytorch-crf)", description=__doc__, formatter_class=fmt)
    _model_arguments(p, "each model", [512], layers=12, hidden=768, heads=12)
    p.add_argument("--models", nargs="+", choices=list(BENCH_MODELS), default=list(BENCH_MODELS), metavar="MODEL",
                   help=f"from {', '.join(BENCH_MODELS)} (default: all); each model's baseline runs too: bert-sdpa "
                        "for lion-d, lion-s and bigs, lstm-crf for bilstm-crf")
    p.add_argument("--compile-backend", default=None,
                   help="torch.compile backend (default: inductor on cuda, aot_eager on cpu)")
    p.add_argument("--latency-batch", type=int, default=1,
                   help="rows of L tokens per inference forward (default: %(default)s)")
    p.add_argument("--latency-runs", type=int, default=None,
                   help="timed inference forwards (default: 20 on cuda, 3 on cpu)")
    p.add_argument("--tagger-hidden", type=int, default=200,
                   help="bilstm-crf and lstm-crf: LSTM units per direction (default: %(default)s, Ma & Hovy's)")
    p.add_argument("--tagger-layers", type=int, default=1,
                   help="bilstm-crf and lstm-crf: stacked bidirectional LSTM layers (default: %(default)s)")
    p.add_argument("--tags", type=int, default=9,
                   help="bilstm-crf and lstm-crf: tags of the CRF (default: %(default)s, CoNLL-2003's BIO tags)")
    p.add_argument("--elmo-size", choices=list(ELMO_SIZES), default="original",
                   help="elmo: the released model whose LSTM sizes to take, original (4096 cells / 512), medium "
                        "(2048 / 256) or small (1024 / 128), 2 layers (default: %(default)s)")

    p = sub.add_parser("lion-forms", help="max difference of the rnn and chunk forms from the attention form",
                       description=__doc__, formatter_class=fmt)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024], help="sequence lengths L (default: %(default)s)")
    p.add_argument("--batch", type=int, default=2, help="batch size B, at least 2 (default: %(default)s)")
    p.add_argument("--heads", type=int, default=12, help="heads H (default: %(default)s)")
    p.add_argument("--head-dim", type=int, default=64, help="head size D (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunk form (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")

    p = sub.add_parser("crf", help="CRF log-likelihood forward+backward and Viterbi decode vs pytorch-crf",
                       description=__doc__, formatter_class=fmt)
    _device_arguments(p)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 64],
                   help="batch sizes B (default: %(default)s)")
    p.add_argument("--tags", type=int, nargs="+", default=[9, 17, 45], help="numbers of tags K (default: %(default)s)")
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512],
                   help="padded lengths L (default: %(default)s)")
    p.add_argument("--methods", nargs="+", choices=CRF_METHODS, default=None, metavar="METHOD",
                   help=f"backends of bizoo.kernels.crf to time, from {', '.join(CRF_METHODS)} (default on cuda: "
                        "all; on cpu: reference, scan, auto); pytorch-crf is always timed")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3 on cuda, 1 on cpu)")
    p.set_defaults(dtype="float32")  # CRF parameters and scores are fp32 (ARCHITECTURE.md §3): no --dtype

    p = sub.add_parser("lstm", help="the bidirectional LSTM op vs torch.nn.LSTM (cuDNN), and ELMo's LSTMP vs the loop",
                       description=__doc__, formatter_class=fmt)
    _device_arguments(p)
    p.add_argument("--part", choices=["lstm", "lstmp", "both"], default="both",
                   help="lstm: the LSTM against torch.nn.LSTM; lstmp: ELMo's clipped LSTMP against the per-step loop; "
                        "both (default: %(default)s)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help="part lstm: batch sizes B (default on cuda: 32 128; on cpu: 32)")
    p.add_argument("--lengths", type=int, nargs="+", default=None,
                   help="part lstm: padded lengths L (default on cuda: 32 128 512; on cpu: 32 128)")
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="part lstm: cells H per direction (default on cuda: 100 200 256 512; on cpu: 100 256)")
    p.add_argument("--input-size", type=int, default=None, help="part lstm: input features I (default: I = H)")
    p.add_argument("--elmo-sizes", nargs="+", choices=list(ELMO_SIZES), default=None, metavar="SIZE",
                   help="part lstmp: ELMo models, from original (4096 cells / 512), medium (2048 / 256), small "
                        "(1024 / 128) (default on cuda: all; on cpu: small)")
    p.add_argument("--elmo-batch-sizes", type=int, nargs="+", default=None,
                   help="part lstmp: batch sizes B (default on cuda: 32 128; on cpu: 32)")
    p.add_argument("--elmo-lengths", type=int, nargs="+", default=None,
                   help="part lstmp: padded lengths L (default on cuda: 20 64, bilm-tf trains on 20-token windows; "
                        "on cpu: 20)")
    p.add_argument("--methods", nargs="+", choices=LSTM_METHODS, default=None, metavar="METHOD",
                   help=f"what to time, from {', '.join(LSTM_METHODS)} (default: triton, native, loop; on cpu triton "
                        "is unavailable unless named); part lstm always times nn-lstm, its baseline; part lstmp times "
                        "autograd-loop, its baseline, and loop and triton when they are among the methods")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="input and weight dtype (default: %(default)s; bfloat16 for a GPU)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="fwd (no autograd) and/or fwdbwd (forward + backward) (default: both)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3 on cuda, 1 on cpu)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot the speed-ups over the baselines")

    p = sub.add_parser("bigs", help="the BiGS bidirectional SSM op vs torch.fft: forward and forward+backward",
                       description=__doc__, formatter_class=fmt)
    _device_arguments(p)
    p.add_argument("--lengths", type=int, nargs="+", default=None,
                   help="sequence lengths L (default on cuda: 128 512 4096 16384; on cpu: 512 4096 16384)")
    p.add_argument("--tokens", type=int, default=None,
                   help=f"tokens per batch: B = tokens // L, at least 1 (default on cuda: {BIGS_DEFAULT_TOKENS})")
    p.add_argument("--batch", type=int, default=None, help="a fixed batch size B (default on cpu: 1)")
    p.add_argument("--channels", type=int, default=1024,
                   help="channels H, the model's hidden size (default: %(default)s, BiGS-large)")
    p.add_argument("--state-size", type=int, default=64, help="SSM state size N (default: %(default)s, num_ssm)")
    p.add_argument("--chunk-size", type=int, default=128,
                   help="chunk length of the recurrent form (default: %(default)s)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="input dtype (default: bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--methods", nargs="+", choices=BIGS_METHODS, default=None, metavar="METHOD",
                   help=f"what to time, from {', '.join(BIGS_METHODS)} (default on cuda: all; on cpu: all but "
                        "reference-toeplitz, with triton unavailable unless named); fft-baseline is always timed")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   help="fwd (no autograd) and/or fwdbwd (forward + backward) (default: both)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: 10 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 3 on cuda, 1 on cpu)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot time against length (log-log)")

    p = sub.add_parser("bigs-model", help="masked-LM training tokens/s: BiGS vs BERT with SDPA, large sizes",
                       description=__doc__, formatter_class=fmt)
    _model_arguments(p, "BiGS", [128, 512, 4096], layers=None, hidden=1024, heads=16)
    p.add_argument("--form", choices=BIGS_FORMS, default="auto", help="BiGS bigs_form (default: %(default)s)")


# ----------------------------------------------------------------------------------------------------------------
# Machine, memory, small helpers
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

    backend, form = LION_METHODS[case["method"]]
    if backend == "fla":
        chunk_simple_gla = _fla_function()

        def fla():  # no scaling of q kᵀ, as LION; fla's default chunk of 64; o and the final state (None)
            return chunk_simple_gla(q, k, v, g=log_decay, scale=1.0)[0]

        return fla, None

    from ..kernels.lion import lion_attention

    def lion():
        return lion_attention(q, k, v, log_decay, None, form=form, chunk_size=case["chunk_size"], normalize=True,
                              backend=backend)

    return lion, None


L2_FLUSH_BYTES = 256 * MiB  # written before each timed run of bench lion on a GPU: over 4x the L2 of an H100/H200


def _time_runs(
    fn, leaves, backward: bool, dout, warmup: int, repeats: int, cuda: bool, cpu_memory: bool = True,
    flush_l2: bool = False,
) -> dict:
    """Median and min ms of ``repeats`` runs after ``warmup`` runs, and the peak memory of the timed runs above what
    was allocated before them: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the growth of the peak
    resident set (reset after the warm-up, which has paged in the code and kernels the runs need), unless
    ``cpu_memory`` is False (a process that runs many cases: the reset gives memory back that the first timed run
    then pays to fault in again). ``flush_l2`` (a GPU): before each timed run, outside its CUDA events, write a
    buffer of ``L2_FLUSH_BYTES``, so that no run finds its inputs in the L2 cache that the one before left there
    (the buffer is allocated before the peak is reset: it is not part of the peak)."""
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
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda") if cuda and flush_l2 else None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    elif cpu_memory:
        _reset_peak_rss()
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
    if cuda or cpu_memory:
        peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()
        result["peak_mib"] = max(peak - base, 0) / MiB
    return result


def _measure_modes(case: dict, report, leaves, timed, may_be_missing: bool, cuda: bool) -> None:
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
            result = {"status": ("unavailable: " if may_be_missing else "failed: ") + _short(err)}
        except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
            result = {"status": f"failed: {_short(err)}"}
        if result["status"] != "ok":
            if cuda:
                _release_cuda_memory()
            if mode == "fwd":
                failed = result
        report(mode, result)


def measure_case(case: dict, report) -> None:
    """Measure ``case`` (one method at one length) in each of ``case["modes"]``; ``report(mode, result)`` each
    (``_measure_modes``). A case of ``bench bigs`` or ``bench lstm`` (``case["op"]``) goes to ``measure_bigs_case``
    or ``measure_lstm_case``."""
    import torch

    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    if case.get("op") == "bigs":
        measure_bigs_case(case, report)
        return
    if case.get("op") == "lstm":
        measure_lstm_case(case, report)
        return
    device = torch.device(case["device"])
    cuda = device.type == "cuda"
    dtype = getattr(torch, case["dtype"])
    backend, form = LION_METHODS.get(case["method"], ("torch", "softmax"))
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
        return _time_runs(state["fn"], leaves, backward, dout, case["warmup"], case["repeats"], cuda, flush_l2=cuda)

    def timed(backward):
        try:
            return runs(backward)
        except RuntimeError as err:
            if state["note"] != "flash" or isinstance(err, torch.OutOfMemoryError):
                raise
            # FlashAttention refused these shapes: PyTorch's default SDPA choice instead.
            state["note"] = f"default (flash refused: {_short(err, 60)})"
            state["fn"] = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return runs(backward)

    def report_backend(mode, result):
        if state["note"] is not None:
            result["sdpa_backend"] = state["note"]
        report(mode, result)

    _measure_modes(case, report_backend, leaves, timed, may_be_missing, cuda)


def _child(case_json: str) -> None:
    """The child process of a CPU case: one JSON line per mode on stdout."""

    def report(mode, result):
        print(json.dumps({"mode": mode, **result}), flush=True)

    measure_case(json.loads(case_json), report)


# The child imports the kernels without running the package's __init__ (which imports transformers and registers
# the models, seconds per process): the kernels import only torch and triton (ARCHITECTURE.md §1, layering), so each case
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
    (measured: 2.3 GiB at B=1, H=12, L=4096), twice that with the backward pass; every other method is O(L).
    A case of ``bench bigs`` or ``bench lstm``: ``estimate_bigs_bytes`` or ``estimate_lstm_bytes``."""
    if case.get("op") == "bigs":
        return estimate_bigs_bytes(case, mode)
    if case.get("op") == "lstm":
        return estimate_lstm_bytes(case, mode)
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
    per_token = 16 if backend in TRITON_BACKENDS else 40
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


def triton_missing(device: str) -> str | None:
    """None when Triton kernels can run on ``device`` here, else why not (on a CPU they need TRITON_INTERPRET=1)."""
    from ..kernels.dispatch import triton_available

    if not triton_available():
        return "the triton package does not import here"
    if device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return "no CUDA device (Triton runs on a CPU only under TRITON_INTERPRET=1)"
    return None


def probe(method: str, device: str, dtype: str) -> str | None:
    """None when ``method`` can run here, else why not (a tiny call; Triton on a CPU needs TRITON_INTERPRET=1).
    fla-causal, outside ``lion_attention``, first needs fla-core's ``chunk_simple_gla`` to import (the reason names
    the import error), and makes no tiny call."""
    if method == "sdpa":
        return None
    backend, form = LION_METHODS[method]
    if backend == "fla":
        try:
            _fla_function()
        except Exception as err:  # noqa: BLE001 - ImportError, or whatever else stops the import
            return f"fla-core (fla.ops.simple_gla) does not import: {_short(err)}"
    if backend in TRITON_BACKENDS and (why := triton_missing(device)) is not None:
        return why
    if backend == "fla":
        # No tiny call: fla's kernels take H and the sizes as compile-time constants, so a tiny call would compile
        # (and autotune) every kernel once more, tens of seconds; a failure of the real call is its row's status.
        return None
    import torch

    from ..kernels.lion import lion_attention

    x = torch.rand(1, 1, 32, 16, device=device).to(getattr(torch, dtype)) + 0.1  # (B, H, L, D)
    try:
        with torch.no_grad():
            lion_attention(x, x, x, None, form=form, chunk_size=16, backend=backend)
    except Exception as err:  # noqa: BLE001 - whatever stops the tiny call stops the real one
        return _short(err)
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


# The ratio columns of bench lion: (baseline method, key in speedup_vs_<key>_<mode>, column label, width).
LION_RATIOS = (("sdpa", "sdpa", "sdpa", 12), ("reference-chunk", "reference_chunk", "chunk", 13))
DECAY_BYTES = 4  # log_decay is fp32 whatever the dtype of q, k, v


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
    _release_cuda_memory()
    return 2 * nbytes / (statistics.median(times) * 1e-3) / 1e9


def _flatten(row: dict, results: dict, modes) -> dict:
    for mode in modes:
        r = results.get(mode, {"status": "not run"})
        row[f"status_{mode}"] = r["status"]
        for key, out in (("median_ms", f"{mode}_ms"), ("min_ms", f"{mode}_min_ms"), ("peak_mib", f"{mode}_peak_mib")):
            if key in r:
                row[out] = r[key]
        for key in ("sdpa_backend", "max_abs_diff", "max_abs_output"):  # per case, not per mode
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


def add_ratios(rows: list[dict], modes, ratios=LION_RATIOS) -> None:
    """speedup_vs_<key>_<mode> = baseline ms / method ms at the same length (> 1: faster than the baseline), for
    each (baseline method, key, ...) of ``ratios``. ``_run_grid`` passes the rows of one grid point at a time."""
    for baseline, key, *_ in ratios:
        by_length = {r["length"]: r for r in rows if r["method"] == baseline}
        for r in rows:
            base = by_length.get(r["length"])
            for mode in modes:
                if base and f"{mode}_ms" in base and f"{mode}_ms" in r:
                    r[f"speedup_vs_{key}_{mode}"] = base[f"{mode}_ms"] / r[f"{mode}_ms"]


# The shape columns of a table row: (key, label, width). bench lion and bigs: L and B; bench lstm adds its sizes.
SHAPE_COLUMNS = (("length", "L", 6), ("batch", "B", 4))


def _format_row(r: dict, modes, ratios=LION_RATIOS, extra=(), shape=SHAPE_COLUMNS) -> str:
    """One table line: the ``shape`` columns, the method, ms and MiB per mode, the ratios, then the ``extra`` (key,
    label, width, format) columns, then the status where it is not "ok"."""

    def num(key, fmt):
        return format(r[key], fmt) if key in r else "-"

    cells = [f"{str(r[key]):>{width}}" for key, _, width in shape] + [f"{r['method']:<20}"]
    cells += [f"{num(f'{m}_ms', '.2f'):>10}" for m in modes]
    cells += [f"{num(f'{m}_peak_mib', '.0f'):>11}" for m in modes]
    for _, key, _, width in ratios:
        cells += [f"{num(f'speedup_vs_{key}_{m}', '.2f'):>{width}}" for m in modes]
    cells += [f"{num(key, fmt):>{width}}" for key, _, width, fmt in extra]
    return " ".join(cells) + ("" if r["status"] == "ok" else f"  {r['status']}")


def _table_head(modes, ratios=LION_RATIOS, extra=(), shape=SHAPE_COLUMNS) -> str:
    cells = [f"{label:>{width}}" for _, label, width in shape] + [f"{'method':<20}"]
    cells += [f"{MODES[m] + ' ms':>10}" for m in modes]
    cells += [f"{MODES[m] + ' MiB':>11}" for m in modes]
    for _, _, label, width in ratios:
        cells += [f"{label + '/' + MODES[m]:>{width}}" for m in modes]
    cells += [f"{label:>{width}}" for _, label, width, _ in extra]
    line = " ".join(cells) + "  status"
    return line + "\n" + "-" * len(line)


def _run_grid(grid, methods, describe, unavailable: dict, modes, ratios, extra, json_path, meta,
              shape=SHAPE_COLUMNS, prior_rows=(), derive=None) -> list[dict]:
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
            group.append(_flatten(row, results, modes))
            if derive is not None:
                derive(row)
            add_ratios(group, modes, ratios)
            rows.append(row)
            _write_json(json_path, {**meta, "rows": [*prior_rows, *rows]})
            if len(group) >= baselines:
                for done in group[printed:]:
                    print(_format_row(done, modes, ratios, extra, shape), flush=True)
                printed = len(group)
    return rows


def run_lion(args) -> int:
    device = _resolve_device(args)
    _check_positive(lengths=args.lengths, tokens=args.tokens, batch=args.batch, heads=args.heads,
                    head_dim=args.head_dim, chunk_size=args.chunk_size, repeats=args.repeats)
    if args.hbm_gbs is not None and not args.hbm_gbs > 0:
        raise ValueError(f"--hbm-gbs must be a bandwidth > 0 in GB/s, got {args.hbm_gbs}")
    settings = _settings(args, device)
    methods = list(dict.fromkeys(args.methods or DEFAULT_METHODS[device]))
    ratios = LION_RATIOS
    methods.sort(key=lambda m: m not in {r[0] for r in ratios})  # the baselines first
    modes = [m for m in MODES if m in args.modes]
    unavailable = {m: why for m in methods if (why := probe(m, device, settings["dtype"])) is not None}
    interpreted = device == "cpu" and any(LION_METHODS.get(m, ("",))[0] in TRITON_BACKENDS for m in methods)
    sdpa_note = "FlashAttention" if device == "cuda" and settings["dtype"] != "float32" else "PyTorch's default choice"
    if args.hbm_gbs is not None:
        peak, peak_source = args.hbm_gbs, "--hbm-gbs"
    elif device == "cuda":
        try:
            peak = measure_hbm_gbs()
            peak_source = "measured: a device-to-device copy of 1 GiB, bytes read + written / median time of 10"
        except RuntimeError as err:  # out of memory: the table without the peak's columns
            peak, peak_source = None, f"the copy that measures it failed: {_short(err)}"
            _release_cuda_memory()
    else:
        peak, peak_source = None, "none on a CPU (give --hbm-gbs): the %HBM and floor columns show '-'"
    print(_header(
        "LION attention op vs SDPA softmax attention (same shapes), forward and forward+backward",
        device, settings, args,
        f"\nSDPA backend: {sdpa_note}; peak memory: "
        + ("max_memory_allocated above the inputs" if device == "cuda"
           else "growth of the peak RSS, one process per case")
        + (f"; the L2 cache flushed before each timed run ({L2_FLUSH_BYTES // MiB} MiB written, not timed)"
           if device == "cuda" else "")
        + ("\nnote: triton-* and fla-* on a CPU run in Triton's interpreter: their times mean nothing"
           if interpreted else ""),
    ))
    print("sdpa/x, chunk/x: speed-up = SDPA (reference-chunk) ms / method ms, > 1 is faster than the baseline")
    print("GB/s: the op's minimal memory traffic (q, k, v, o; + o, dO, dq, dk, dv in fwd+bwd; + the decay and its "
          "gradient) / median time; %HBM: of the peak; floor: that traffic at the peak, ms")
    print(f"HBM peak used: {f'{peak:.0f} GB/s' if peak else '-'} ({peak_source})")
    extra = bandwidth_columns(modes)
    print(_table_head(modes, ratios, extra))
    meta = {
        "op": "lion", "machine": machine_name(device), "device": device, **settings, "tokens": args.tokens,
        "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay, "chunk_size": args.chunk_size,
        "modes": modes, "methods": methods, "hbm_gbs": peak, "hbm_gbs_source": peak_source,
        "l2_flush_bytes": L2_FLUSH_BYTES if device == "cuda" else 0,
        "traffic": "lion_traffic_bytes: fwd reads q, k, v and writes o; fwd+bwd adds reading q, k, v, o, dO and "
                   "writing dq, dk, dv; the fp32 decay read once (fwd) or twice plus its gradient (fwd+bwd)",
    }

    def describe(method, length, batch):
        backend, form = LION_METHODS.get(method, ("torch", "softmax"))
        row = {
            "method": method, "backend": backend, "form": form, "length": length, "batch": batch,
            "heads": args.heads, "head_dim": args.head_dim, "decay": args.decay, "dtype": settings["dtype"],
            "device": device,
        }
        return row, {**row, **settings, "modes": modes, "chunk_size": args.chunk_size, "threads": args.threads}

    grid = [(length, batch_for(length, args.tokens, args.batch)) for length in args.lengths]
    # The methods whose first call compiles for minutes (fla-causal) run after the others at every length, so that
    # a run stopped by a time limit has the others' rows; their rows get the ratios to the rows measured before.
    later = [m for m in methods if m in DEFERRED_METHODS and m not in unavailable and len(methods) > 1]
    rows = _run_grid(grid, [m for m in methods if m not in later], describe, unavailable, modes, ratios, extra,
                     args.json, meta, derive=lambda row: add_bandwidth(row, modes, peak))
    if later:
        print(f"{', '.join(later)}: after the other methods (the first call compiles for minutes)")

        def derive(row):
            add_bandwidth(row, modes, peak)
            add_ratios([r for r in rows if r["length"] == row["length"]] + [row], modes, ratios)

        rows += _run_grid(grid, later, describe, unavailable, modes, ratios, extra, args.json, meta,
                          prior_rows=rows, derive=derive)
    if args.plot:
        try:
            plot_times(rows, modes, args.plot, f"LION op vs SDPA, {meta['machine']}\n{settings['dtype']}, "
                       f"H={args.heads} D={args.head_dim} decay {args.decay}, median of {settings['repeats']}")
        except ImportError as err:  # the table and the JSON are the results; the plot is a view of them
            print(f"no plot: {_short(err)}")
    return 0


def plot_times(rows: list[dict], modes, path: str, title: str, xlabel: str = "sequence length L (B·L fixed)") -> None:
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
        ax.set_xlabel(xlabel)
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


def _bert_builder(args, layers: int, intermediate: int):
    """length -> a ``transformers.BertForMaskedLM`` with SDPA attention, of the sizes the arguments give."""

    def build(length: int):
        from transformers import BertConfig, BertForMaskedLM

        config = BertConfig(hidden_size=args.hidden, num_hidden_layers=layers, num_attention_heads=args.heads,
                            intermediate_size=intermediate, max_position_embeddings=length,
                            vocab_size=args.vocab_size, attn_implementation="sdpa")
        return BertForMaskedLM(config)

    return build


def _model_inputs(length: int, batch: int, vocab_size: int, device: str, extra_inputs=None, labels: bool = True,
                  tags: int | None = None) -> dict:
    """A seeded batch of B rows of L real tokens on ``device``: ``input_ids`` (B, L), ``extra_inputs(ids)`` (the
    char_ids of a word+character model) and, with ``labels``, masked-LM labels (15% of the positions, the first of
    each row among them) or, for a tagger (``tags`` = K), a tag in [0, K) at every position."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(5, vocab_size, (batch, length), generator=g)  # (B, L)
    inputs = {"input_ids": ids, **(extra_inputs(ids) if extra_inputs else {})}
    if labels and tags:
        inputs["labels"] = torch.randint(0, tags, (batch, length), generator=g)  # (B, L)
    elif labels:
        chosen = torch.rand(batch, length, generator=g) < 0.15
        chosen[:, 0] = True  # at least one label per row
        inputs["labels"] = torch.where(chosen, ids, torch.full_like(ids, -100))  # (B, L): 15% of the positions
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def _train_steps(build, length: int, batch: int, vocab_size: int, device: str, steps: int, warmup: int,
                 amp: bool, extra_inputs=None, wrap=None, sync_check: bool = False, tags: int | None = None) -> dict:
    """Build the model (``build(length)``) and time optimizer steps; everything it allocates dies with this frame.
    ``extra_inputs(ids)``: more keyword inputs (a word+character model's char_ids); ``wrap(model)``: what runs the
    steps (``torch.compile``); ``sync_check``: after the timed steps, one more under
    ``torch.cuda.set_sync_debug_mode("error")`` (CUDA only), its outcome as ``host_sync``: "ok" or the error;
    ``tags``: train a tagger on K tags instead of a masked LM (``_model_inputs``)."""
    import torch

    cuda = device == "cuda"
    torch.manual_seed(0)
    model = build(length).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    inputs = _model_inputs(length, batch, vocab_size, device, extra_inputs, tags=tags)
    runner = wrap(model) if wrap else model

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            loss = runner(**inputs).loss
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
    result = {"status": "ok", "model_class": type(model).__name__, "parameters": params, "step_ms": median * 1e3,
              "tokens_per_s": batch * length / median}
    if cuda:
        result["peak_mib"] = torch.cuda.max_memory_allocated() / MiB
    if sync_check and cuda:
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
            result["host_sync"] = "ok"
        except RuntimeError as err:
            result["host_sync"] = f"failed: {_short(err, 100)}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result


def _forward_latency(build, length: int, batch: int, vocab_size: int, device: str, runs: int, warmup: int, amp: bool,
                     extra_inputs=None, wrap=None) -> dict:
    """Build the model (``build(length)``) in eval mode and time one forward pass without labels on a batch of B rows
    of L tokens (``_model_inputs``) with ``_time_runs`` (CUDA events on a GPU, perf_counter on a CPU; under
    ``torch.no_grad``): ``latency_ms`` the median of ``runs`` after ``warmup`` untimed ones (a compiled model compiles
    in them), ``min_ms``. ``wrap(model)``: what runs the forward (``torch.compile``)."""
    import torch

    torch.manual_seed(0)
    model = build(length).to(device).eval()
    inputs = _model_inputs(length, batch, vocab_size, device, extra_inputs, labels=False)
    runner = wrap(model) if wrap else model

    def forward():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            return runner(**inputs)

    timed = _time_runs(forward, [], False, None, warmup, runs, device == "cuda", cpu_memory=False)
    return {"status": "ok", "model_class": type(model).__name__, "latency_ms": timed["median_ms"],
            "min_ms": timed["min_ms"]}


def _model_settings(args, device: str) -> dict:
    """Steps, warm-up steps, autocast and its description for a training comparison, after checking the sizes."""
    _check_positive(lengths=args.lengths, tokens_per_step=args.tokens_per_step, steps=args.steps, layers=args.layers,
                    hidden=args.hidden, heads=args.heads, intermediate=getattr(args, "intermediate", None),
                    vocab_size=args.vocab_size)
    if args.warmup_steps is not None and args.warmup_steps < 0:
        raise ValueError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    if args.hidden % args.heads:
        raise ValueError(f"--hidden ({args.hidden}) must be a multiple of --heads ({args.heads})")
    cuda = device == "cuda"
    amp = cuda and not args.no_amp
    return {
        "steps": args.steps or (5 if cuda else 2),
        "warmup_steps": args.warmup_steps if args.warmup_steps is not None else (2 if cuda else 1),
        "amp": amp,
        "precision": "bf16 autocast, fp32 weights" if amp else "fp32",
    }


def compare_models(args, device: str, settings: dict, models: dict, name: str, header: list[str], meta: dict) -> int:
    """Masked-LM training throughput of ``models`` (model name -> ``build(length)``; BERT, "bert-sdpa", first, the
    other the contender, called ``name`` in the text) at each of ``args.lengths`` with B·L = ``args.tokens_per_step``;
    prints the ``header`` lines and a table, writes the rows to ``args.json``. The contender's row gets
    ``speedup_vs_bert`` = its tokens/s / BERT's."""
    import torch

    steps, warmup = settings["steps"], settings["warmup_steps"]
    print(f"Masked-LM training throughput (forward + backward + AdamW step), {name} vs BERT (SDPA attention)")
    print(f"machine: {machine_name(device)}")
    for line in header:
        print(line)
    print(f"median of {steps} steps after {warmup} warm-up step(s)")
    ratio_label = f"{name}/BERT"
    head = (f"{'L':>6} {'B':>4} {'model':<10} {'params':>8} {'step ms':>9} {'tokens/s':>10} {'peak MiB':>9} "
            f"{ratio_label:>10}")
    print(head + "\n" + "-" * len(head))
    meta = {"op": meta["op"], "machine": machine_name(device), "device": device,
            "precision": settings["precision"], **meta, "vocab_size": args.vocab_size,
            "tokens_per_step": args.tokens_per_step, "steps": steps, "warmup_steps": warmup}
    rows = []
    for length in args.lengths:
        batch = batch_for(length, args.tokens_per_step)
        group = {}
        for model, build in models.items():
            try:
                result = _train_steps(build, length, batch, args.vocab_size, device, steps, warmup, settings["amp"])
            except torch.OutOfMemoryError:
                result = {"status": "oom"}
            except Exception as err:  # noqa: BLE001 - a row records the failure
                result = {"status": f"failed: {_short(err)}"}
            _release_cuda_memory()
            group[model] = {"model": model, "length": length, "batch": batch, **result}
        bert, *others = group.values()
        for other in others:
            if "tokens_per_s" in bert and "tokens_per_s" in other:
                other["speedup_vs_bert"] = other["tokens_per_s"] / bert["tokens_per_s"]
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
    print(f"{ratio_label}: {name} tokens/s / BERT tokens/s (> 1: {name} trains faster)")
    return 0


def run_model(args) -> int:
    device = _resolve_device(args)
    settings = _model_settings(args, device)
    form, note = _model_form(args, device)
    intermediate = args.intermediate or 4 * args.hidden

    def lion(length: int):
        from .. import LionConfig, LionForMaskedLM

        config = LionConfig(lion_variant="d", kernel_backend=args.backend, lion_form=form,
                            sparse_prediction=not args.dense_logits, hidden_size=args.hidden,
                            num_hidden_layers=args.layers, num_attention_heads=args.heads,
                            intermediate_size=intermediate, max_position_embeddings=length, vocab_size=args.vocab_size)
        return LionForMaskedLM(config)

    header = [
        f"dtype: {settings['precision']}; shapes: {args.layers} layers x {args.hidden}, {args.heads} heads, "
        f"feed-forward {intermediate}, vocabulary {args.vocab_size}; B·L = {args.tokens_per_step} tokens per step "
        "(B = tokens // L); 15% of the positions labelled",
        f"LION: lion_variant='d', lion_form={form!r}, kernel_backend={args.backend!r}, "
        f"{'dense' if args.dense_logits else 'sparse (masked positions only)'} MLM logits"
        + (f"\nnote: {note}" if note else "") + "; BERT: full MLM logits",
    ]
    meta = {"op": "lion-model", "layers": args.layers, "hidden": args.hidden, "heads": args.heads,
            "intermediate": intermediate, "lion_form": form, "kernel_backend": args.backend, "note": note}
    models = {"bert-sdpa": _bert_builder(args, args.layers, intermediate), "lion-d": lion}
    return compare_models(args, device, settings, models, "LION", header, meta)


# ----------------------------------------------------------------------------------------------------------------
# bench bigs
# ----------------------------------------------------------------------------------------------------------------

# The ratio column (as bench lion's) and the agreement column of bench bigs.
BIGS_RATIOS = (("fft-baseline", "fft_baseline", "base", 13),)
BIGS_EXTRA = (("max_abs_diff", "max|diff|", 10, ".1e"),)


def fft_baseline(u, k, d, reverse: bool = False):
    """One direction of the SSM as the original BiGS code computes it with torch.fft, in fp32 (as torch.fft runs
    under autocast): in the (B, H, L) layout, the rfft of the input and of the kernel zero-padded to n = 2L, their
    product, the irfft, its first L values, + D u. The backward direction flips the input in time, convolves it
    causally and flips the result back.

    Shape: u (B, L, H), k (L,), d (1,) -> (B, L, H) in u's dtype.
    """
    import torch

    L = u.shape[1]
    x = u.float().transpose(1, 2)  # (B, H, L)
    if reverse:
        x = x.flip(-1)
    k_f = torch.fft.rfft(k.float(), n=2 * L)  # (L + 1,)
    x_f = torch.fft.rfft(x, n=2 * L)  # (B, H, L + 1)
    y = torch.fft.irfft(x_f * k_f, n=2 * L)[..., :L] + d.float() * x  # (B, H, L)
    if reverse:
        y = y.flip(-1)
    return y.transpose(1, 2).to(u.dtype)  # (B, L, H)


def bigs_inputs(case: dict, device, dtype):
    """Both directions' inputs (B, L, H) in ``dtype``, their SSM parameters (log_step, A_re, A_im, C, D) in fp32 as
    BiGS initialises them (``s4d_init``, "hippo"; D = 1) and the output gradients. Seeded: the same in every run."""
    import torch

    from ..kernels.ssm import s4d_init

    B, L, H = case["batch"], case["length"], case["channels"]
    g = torch.Generator(device="cpu").manual_seed(0)
    u = tuple(torch.randn(B, L, H, generator=g).to(device, dtype) for _ in range(2))  # u_fwd, u_bwd (B, L, H)
    dout = tuple(torch.randn(B, L, H, generator=g).to(device, dtype) for _ in range(2))  # (B, L, H) each
    params = []
    for _ in range(2):  # forward, backward
        init = s4d_init(case["state_size"], "hippo", generator=g, device=device)
        params.append((init["log_step"], init["A_re"], init["A_im"], init["C"], torch.ones(1, device=device)))
    return u, tuple(params), dout


def ssm_function(method: str, u, params, chunk_size: int):
    """A function that runs both directions once with ``method`` and returns (y_fwd, y_bwd). The kernels come from
    ``s4d_kernel`` inside every call (the recurrent form reads the SSM parameters instead: no kernels)."""
    from ..kernels.ssm import bidirectional_ssm, s4d_kernel

    (u_fwd, u_bwd), (p_fwd, p_bwd) = u, params
    L = u_fwd.shape[1]

    def kernels():
        return s4d_kernel(*p_fwd[:4], L), s4d_kernel(*p_bwd[:4], L)  # (L,) each

    if method == "fft-baseline":
        def baseline():
            k_fwd, k_bwd = kernels()
            return fft_baseline(u_fwd, k_fwd, p_fwd[4]), fft_baseline(u_bwd, k_bwd, p_bwd[4], reverse=True)

        return baseline
    backend, form = SSM_METHODS[method]
    if form == "recurrent":
        return lambda: bidirectional_ssm(u_fwd, u_bwd, None, None, p_fwd[4], p_bwd[4], form=form, backend=backend,
                                         recurrent_params=(p_fwd[:4], p_bwd[:4]), chunk_size=chunk_size)

    def op():
        k_fwd, k_bwd = kernels()
        return bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, p_fwd[4], p_bwd[4], form=form, backend=backend,
                                 chunk_size=chunk_size)

    return op


def ssm_agreement(fn, u, params) -> dict:
    """The max abs difference of ``fn``'s outputs (both directions) from the FFT baseline in fp32 on the same inputs,
    and the largest output of the baseline (the scale of the difference)."""
    import torch

    from ..kernels.ssm import s4d_kernel

    diff = scale = 0.0
    with torch.no_grad():
        outputs = fn()
        for y, x, p, reverse in zip(outputs, u, params, (False, True)):
            base = fft_baseline(x.float(), s4d_kernel(*p[:4], x.shape[1]), p[4], reverse)  # (B, L, H)
            diff = max(diff, (y.float() - base).abs().max().item())
            scale = max(scale, base.abs().max().item())
    return {"max_abs_diff": diff, "max_abs_output": scale}


def measure_op_case(case: dict, report, build, may_be_missing: bool) -> None:
    """``measure_case`` for an op: ``build(device, dtype) -> (fn, leaves, dout, agreement)``; each mode timed by
    ``_time_runs`` (gradients to every leaf), each result with ``agreement()``: the outputs' agreement with the
    op's baseline, checked once, before timing."""
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
        result = _time_runs(fn, leaves, backward, dout, case["warmup"], case["repeats"], cuda)
        return {**result, **checked}

    _measure_modes(case, report, leaves, timed, may_be_missing, cuda)


def measure_bigs_case(case: dict, report) -> None:
    """``measure_op_case`` for the SSM op: gradients to both inputs and every SSM parameter; agreement with the fp32
    FFT baseline."""
    method = case["method"]

    def build(device, dtype):
        u, params, dout = bigs_inputs(case, device, dtype)
        fn = ssm_function(method, u, params, case["chunk_size"])
        leaves = [*u, *(t for p in params for t in p)]
        return fn, leaves, dout, lambda: ssm_agreement(fn, u, params)

    backend, form = SSM_METHODS.get(method, ("torch", "fft"))
    measure_op_case(case, report, build, may_be_missing=backend == "triton" or form == "auto")


def _bigs_form(method: str, length: int) -> str:
    """The form ``method`` runs at ``length`` ("auto" of the reference backend resolved as the dispatcher does; the
    Triton kernel is a blocked Toeplitz product whatever the form)."""
    backend, form = SSM_METHODS.get(method, ("torch", "fft"))
    if backend == "triton":
        return "toeplitz (fused)"
    if backend == "reference" and form == "auto":
        from ..kernels.ssm import REFERENCE_FFT_MIN_LENGTH

        return "fft" if length >= REFERENCE_FFT_MIN_LENGTH else "toeplitz"
    return form


def estimate_bigs_bytes(case: dict, mode: str) -> int:
    """A rough peak of a CPU case of bench bigs, fp32 inside: ~24 (B, L, H) buffers (the inputs, their transposed
    copies and spectra of n = 2L, for both directions), twice that with the backward pass; the reference Toeplitz
    form adds its (L, L) matrices, two per direction."""
    B, L, H = case["batch"], case["length"], case["channels"]
    factor = 2 if mode == "fwdbwd" else 1
    need = 24 * B * L * H * 4 * factor
    if SSM_METHODS.get(case["method"], ("torch",))[0] == "reference" and _bigs_form(case["method"], L) == "toeplitz":
        need += 4 * L * L * 4 * factor
    return need


def bigs_probe(method: str, device: str, dtype: str) -> str | None:
    """None when ``method`` can run here, else why not (a tiny call; Triton on a CPU needs TRITON_INTERPRET=1)."""
    if method == "fft-baseline":
        return None
    if SSM_METHODS[method][0] == "triton" and (why := triton_missing(device)) is not None:
        return why
    import torch

    tiny = {"batch": 1, "length": 32, "channels": 16, "state_size": 4}
    u, params, _ = bigs_inputs(tiny, torch.device(device), getattr(torch, dtype))
    try:
        with torch.no_grad():
            ssm_function(method, u, params, 16)()
    except Exception as err:  # noqa: BLE001 - whatever stops the tiny call stops the real one
        return _short(err)
    return None


def growth_factors(rows: list[dict], modes) -> list[dict]:
    """Per method, from each measured length to the next: the factors by which the median time and the peak memory
    grow, beside those of B·L (what linear work grows by) and of B·L·log2 L (work ~ L log L)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        own = sorted((r for r in rows if r["method"] == method), key=lambda r: r["length"])
        for a, b in zip(own, own[1:]):
            if not any(f"{mode}_ms" in a and f"{mode}_ms" in b for mode in modes):
                continue
            tokens_a, tokens_b = a["batch"] * a["length"], b["batch"] * b["length"]
            entry = {"method": method, "from_length": a["length"], "to_length": b["length"],
                     "tokens_factor": tokens_b / tokens_a}
            if a["length"] > 1:
                entry["tokens_log_factor"] = tokens_b * math.log2(b["length"]) / (tokens_a * math.log2(a["length"]))
            for mode in modes:
                if f"{mode}_ms" in a and f"{mode}_ms" in b:
                    entry[f"{mode}_time_factor"] = b[f"{mode}_ms"] / a[f"{mode}_ms"]
                if a.get(f"{mode}_peak_mib", 0) > 0 and f"{mode}_peak_mib" in b:
                    entry[f"{mode}_memory_factor"] = b[f"{mode}_peak_mib"] / a[f"{mode}_peak_mib"]
            out.append(entry)
    return out


def _print_growth(entries: list[dict], modes) -> None:
    print("\ngrowth from one length to the next (quotients; B·L x and B·L·log L x: what work linear in L and work "
          "~ L log L grow by)")
    cells = [f"{'method':<20}", f"{'L -> L':>14}", f"{'B·L x':>7}", f"{'B·L·log L x':>12}"]
    cells += [f"{MODES[m] + ' ms x':>13}" for m in modes] + [f"{MODES[m] + ' MiB x':>14}" for m in modes]
    head = " ".join(cells)
    print(head + "\n" + "-" * len(head))
    for e in entries:
        def num(key, width):
            return f"{e[key]:>{width}.2f}" if key in e else f"{'-':>{width}}"

        cells = [f"{e['method']:<20}", f"{str(e['from_length']) + ' -> ' + str(e['to_length']):>14}",
                 num("tokens_factor", 7), num("tokens_log_factor", 12)]
        cells += [num(f"{m}_time_factor", 13) for m in modes] + [num(f"{m}_memory_factor", 14) for m in modes]
        print(" ".join(cells))


def run_bigs(args) -> int:
    device = _resolve_device(args)
    cuda = device == "cuda"
    lengths = args.lengths or BIGS_DEFAULT_LENGTHS[device]
    _check_positive(lengths=lengths, tokens=args.tokens, batch=args.batch, channels=args.channels,
                    state_size=args.state_size, chunk_size=args.chunk_size, repeats=args.repeats)
    if args.tokens and args.batch:
        raise ValueError(f"--tokens ({args.tokens}) and --batch ({args.batch}) exclude each other: B = tokens // L, "
                         "or B fixed")
    tokens = args.tokens or (BIGS_DEFAULT_TOKENS if cuda and not args.batch else None)
    batch = args.batch or (None if tokens else 1)
    settings = _settings(args, device)
    methods = list(dict.fromkeys(["fft-baseline", *(args.methods or BIGS_DEFAULT_METHODS[device])]))
    modes = [m for m in MODES if m in args.modes]
    unavailable = unavailable_methods(methods, args.methods, device, settings["dtype"], bigs_probe)
    interpreted = device == "cpu" and "triton" in methods and "triton" not in unavailable
    from ..kernels.ssm import REFERENCE_FFT_MIN_LENGTH

    shapes = f"B = {batch} (fixed)" if batch else f"B·L = {tokens} tokens (B = tokens // L)"
    print("BiGS bidirectional SSM op (both directions, kernels from s4d_kernel in every call) vs the torch.fft "
          "baseline of the original code, forward and forward+backward")
    print(f"machine: {machine_name(device)}")
    print(f"dtype: {settings['dtype']} inputs, fp32 SSM parameters; shapes: {shapes}, H = {args.channels} channels, "
          f"N = {args.state_size}, no padding\nreference-recurrent: from the SSM parameters (no kernels), chunks of "
          f"{args.chunk_size}; reference-auto: toeplitz below L = {REFERENCE_FFT_MIN_LENGTH}, fft from it")
    print("peak memory: " + ("max_memory_allocated above the inputs" if cuda
                             else "growth of the peak RSS, one process per case")
          + ("\nnote: triton on a CPU runs in Triton's interpreter: its times mean nothing" if interpreted else ""))
    print(f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)")
    print("base/x: speed-up = fft-baseline ms / method ms, > 1 is faster than the baseline; max|diff|: the largest "
          "difference of the outputs from the fp32 fft baseline on the same inputs")
    print(_table_head(modes, BIGS_RATIOS, BIGS_EXTRA))
    meta = {"op": "bigs", "machine": machine_name(device), "device": device, **settings, "tokens": tokens,
            "batch": batch, "channels": args.channels, "state_size": args.state_size, "chunk_size": args.chunk_size,
            "reference_fft_min_length": REFERENCE_FFT_MIN_LENGTH, "modes": modes, "methods": methods}

    def describe(method, length, batch_size):
        backend, form = SSM_METHODS.get(method, ("torch", "fft"))
        row = {"method": method, "backend": backend, "form": form, "runs_form": _bigs_form(method, length),
               "length": length, "batch": batch_size, "channels": args.channels, "state_size": args.state_size,
               "dtype": settings["dtype"], "device": device}
        return row, {**row, "op": "bigs", **settings, "modes": modes, "chunk_size": args.chunk_size,
                     "threads": args.threads}

    grid = [(length, batch_for(length, tokens or 1, batch)) for length in lengths]
    rows = _run_grid(grid, methods, describe, unavailable, modes, BIGS_RATIOS, BIGS_EXTRA, args.json, meta)
    growth = growth_factors(rows, modes)
    if len(lengths) > 1:
        _print_growth(growth, modes)
    _write_json(args.json, {**meta, "rows": rows, "growth": growth})
    if args.plot:
        try:
            plot_times(rows, modes, args.plot, f"BiGS SSM op vs torch.fft, {meta['machine']}\n{settings['dtype']}, "
                       f"H={args.channels} N={args.state_size}, median of {settings['repeats']}",
                       xlabel="sequence length L " + ("(B fixed)" if batch else "(B·L fixed)"))
        except ImportError as err:  # the table and the JSON are the results; the plot is a view of them
            print(f"no plot: {_short(err)}")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench bigs-model
# ----------------------------------------------------------------------------------------------------------------

BIGS_PRESET = "large-512"  # the BiGS shape of bench bigs-model (max_position_embeddings set to each L)
BERT_LARGE_LAYERS = 24


def run_bigs_model(args) -> int:
    device = _resolve_device(args)
    settings = _model_settings(args, device)
    from ..configuration.configuration_bigs import PRESETS

    preset = PRESETS[BIGS_PRESET]
    bigs_layers = args.layers or preset["num_hidden_layers"]
    bert_layers = args.layers or BERT_LARGE_LAYERS
    # The large models' proportions at any width: the BiGS gate 3 × hidden (3072 at 1024), BERT's feed-forward 4 ×.
    gate = preset["intermediate_size"] * args.hidden // preset["hidden_size"]
    feed_forward = 4 * args.hidden

    def bigs(length: int):
        from .. import BiGSConfig, BiGSForMaskedLM

        config = BiGSConfig.from_preset(
            BIGS_PRESET, max_position_embeddings=length, hidden_size=args.hidden, num_hidden_layers=bigs_layers,
            intermediate_size=gate, vocab_size=args.vocab_size, bigs_form=args.form, kernel_backend=args.backend,
            sparse_prediction=not args.dense_logits,
        )
        return BiGSForMaskedLM(config)

    header = [
        f"dtype: {settings['precision']}; vocabulary {args.vocab_size}; B·L = {args.tokens_per_step} tokens per step "
        "(B = tokens // L); 15% of the positions labelled",
        f"BiGS: preset {BIGS_PRESET!r} shape, {bigs_layers} layers x {args.hidden}, gate {gate}, N = "
        f"{preset['num_ssm']}, max_position_embeddings = L, bigs_form={args.form!r}, kernel_backend={args.backend!r}, "
        f"{'dense' if args.dense_logits else 'sparse (masked positions only)'} MLM logits",
        f"BERT: {bert_layers} layers x {args.hidden}, {args.heads} heads, feed-forward {feed_forward}, SDPA "
        "attention, full MLM logits",
    ]
    meta = {"op": "bigs-model", "preset": BIGS_PRESET, "hidden": args.hidden, "bigs_layers": bigs_layers,
            "bigs_intermediate": gate, "num_ssm": preset["num_ssm"], "bigs_form": args.form,
            "kernel_backend": args.backend, "bert_layers": bert_layers, "bert_heads": args.heads,
            "bert_intermediate": feed_forward}
    models = {"bert-sdpa": _bert_builder(args, bert_layers, feed_forward), "bigs": bigs}
    return compare_models(args, device, settings, models, "BiGS", header, meta)


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
    if args.batch < 2:
        raise ValueError(f"--batch must be >= 2 (a right- and a left-padded row), got {args.batch}")
    B = args.batch
    print(f"LION forms vs the attention form, reference backend, fp32, B={B} (right- and left-padded) "
          f"H={args.heads} D={args.head_dim}, chunk size {args.chunk_size}; machine: {machine_name('cpu')}")
    print(f"{'L':>7} {'decay':>6} {'form':>6} {'max |diff|':>12} {'max |y|':>9}")
    rows = [r for L in args.lengths for r in form_agreement(L, B, args.heads, args.head_dim, args.chunk_size)]
    for r in rows:
        print(f"{r['length']:>7} {r['decay']:>6} {r['form']:>6} {r['max_abs_diff']:>12.2e} {r['max_abs_output']:>9.3f}")
    _write_json(args.json, {"op": "lion-forms", "rows": rows})
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench crf
# ----------------------------------------------------------------------------------------------------------------


def padded_mask(batch: int, length: int, generator):
    """The (B, L) bool mask of a right-padded batch as a model sees it: the first row ``length`` long (the batch is
    padded to its longest row), the others drawn uniformly between length/2 and length with ``generator``."""
    import torch

    lengths = torch.randint((length + 1) // 2, length + 1, (batch,), generator=generator)  # (B,)
    lengths[0] = length
    return torch.arange(length) < lengths[:, None]  # (B, L)


def crf_inputs(batch: int, tags: int, length: int, device: str):
    """A right-padded batch as a tagger sees it (``padded_mask``); emissions, gold tags (valid at padding too:
    pytorch-crf reads them) and a ``torchcrf.CRF`` whose parameters every method uses. Seeded: the same inputs in
    every run."""
    import torch
    from torchcrf import CRF

    g = torch.Generator(device="cpu").manual_seed(0)
    mask = padded_mask(batch, length, g)  # (B, L); the first position is real (pytorch-crf needs it)
    emissions = torch.randn(batch, length, tags, generator=g)  # (B, L, K)
    gold = torch.randint(0, tags, (batch, length), generator=g)  # (B, L)
    crf = CRF(tags, batch_first=True)
    with torch.no_grad():
        for param in crf.parameters():  # transitions (K, K), start_transitions (K,), end_transitions (K,)
            param.uniform_(-0.1, 0.1, generator=g)
    return emissions.to(device), mask.to(device), gold.to(device), crf.to(device)


def crf_function(op: str, method: str, emissions, mask, gold, crf):
    """A function that runs ``op`` once with ``method`` ("torchcrf" or a backend of ``bizoo.kernels.crf``) and the
    tensors whose gradients it computes. The likelihood returns the sum over the batch, differentiable w.r.t. the
    emissions and the CRF parameters; Viterbi returns the paths (pytorch-crf: Python lists, its real output)."""
    from ..kernels.crf import crf_log_likelihood, crf_viterbi

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
    return (lambda: crf_viterbi(e, mask, T, start, end, backend=method)), [e]


def crf_resolved_backend(op: str, method: str, emissions, crf) -> str:
    """What ``method`` runs for ``op`` on these inputs: "auto" resolved by the op's own dispatch (the likelihood
    dispatches as log_partition and also looks at the CRF parameters; Viterbi at the emissions only)."""
    if method != "auto":
        return method
    from ..kernels import crf as ops

    if op == "viterbi":
        return ops._backend("viterbi", "auto", emissions)
    return ops._backend("log_partition", "auto", emissions, crf.transitions, crf.start_transitions,
                        crf.end_transitions)


def measure_crf(op: str, method: str, inputs, settings: dict, cuda: bool) -> dict:
    """Median and min ms of ``op`` with ``method`` (``_time_runs``: warm-up runs, CUDA events on a GPU, where the
    peak memory above the inputs comes too); a result with a status instead where it cannot run ("oom",
    "unavailable: ..." for triton/auto, "failed: ...")."""
    import torch

    try:
        fn, leaves = crf_function(op, method, *inputs)
        dout = torch.ones((), device=inputs[0].device)  # d(sum of log-likelihoods)
        result = _time_runs(fn, leaves, op == "likelihood", dout, settings["warmup"], settings["repeats"], cuda,
                            cpu_memory=False)
    except torch.OutOfMemoryError:
        result = {"status": "oom"}
    except ValueError as err:
        result = {"status": ("unavailable: " if method in ("triton", "auto") else "failed: ") + _short(err)}
    except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
        result = {"status": f"failed: {_short(err)}"}
    if cuda:
        _release_cuda_memory()
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


def _crf_table_head(methods) -> str:
    cells = [f"{'B':>4}", f"{'K':>4}", f"{'L':>5}", f"{'torchcrf ms':>11}"]
    for m in methods:
        cells += [f"{m + ' ms':>{max(10, len(m) + 3)}}", f"{'x':>6}"]
    line = " ".join(cells) + "  auto runs"
    return line + "\n" + "-" * len(line)


def _crf_format(group: dict, methods) -> str:
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


def run_crf(args) -> int:
    device = _resolve_device(args)
    _check_positive(batch_sizes=args.batch_sizes, tags=args.tags, lengths=args.lengths, repeats=args.repeats)
    try:
        import torchcrf  # noqa: F401
    except ImportError as err:
        raise ValueError(
            f"the baseline pytorch-crf does not import ({_short(err, 80)}): install it with `pip install pytorch-crf` "
            "(it is in bizoo's dev extra)"
        ) from None
    cuda = device == "cuda"
    settings = _settings(args, device)
    methods = list(dict.fromkeys(args.methods or CRF_DEFAULT_METHODS[device]))
    why = triton_missing(device) if "triton" in methods else None
    unavailable = {"triton": why} if why is not None else {}
    shapes = [(B, K, L) for B in args.batch_sizes for K in args.tags for L in args.lengths]
    machine = machine_name(device)
    print("Linear-chain CRF ops vs pytorch-crf (torchcrf.CRF, batch_first) on the same inputs and parameters")
    print(f"machine: {machine}")
    print(f"dtype: float32; shapes: B in {args.batch_sizes}, K in {args.tags}, L in {args.lengths}; right-padded "
          "batches: the first row L long, the others between L/2 and L (seed 0)")
    print(f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)"
          + ("; CUDA events" if cuda else ""))
    if device == "cpu" and "triton" in methods and "triton" not in unavailable:
        print("note: triton on a CPU runs in Triton's interpreter: its times mean nothing")
    for method, why in unavailable.items():
        print(f"{method}: unavailable: {why}")
    print("x: speed-up = torchcrf ms / method ms, > 1 is faster than pytorch-crf; auto runs: the backend "
          "backend='auto' picks")
    meta = {"op": "crf", "machine": machine, "device": device, **settings, "methods": methods,
            "batch_sizes": args.batch_sizes, "tags": args.tags, "lengths": args.lengths}
    rows: list[dict] = []
    for op, title in CRF_OPS.items():
        print(f"\n{title}" + (" (sum over the batch; gradients to the emissions and the CRF parameters)"
                              if op == "likelihood" else " (pytorch-crf: its decode, which returns Python lists)"))
        print(_crf_table_head(methods))
        for batch, tags, length in shapes:
            inputs = crf_inputs(batch, tags, length, device)
            group = {}
            for method in ["torchcrf", *methods]:
                row = {"op": op, "method": method, "backend": crf_resolved_backend(op, method, inputs[0], inputs[3]),
                       "batch": batch, "tags": tags, "length": length, "real_positions": int(inputs[1].sum()),
                       "dtype": "float32", "device": device}
                if method in unavailable:
                    row["status"] = f"unavailable: {unavailable[method]}"
                else:
                    row.update(measure_crf(op, method, inputs, settings, cuda))
                group[method] = row
            base = group["torchcrf"].get("median_ms")
            for row in group.values():
                if base is not None and "median_ms" in row:
                    row["speedup_vs_torchcrf"] = base / row["median_ms"]
            rows += group.values()
            print(_crf_format(group, methods), flush=True)
            _write_json(args.json, {**meta, "rows": rows})
    targets = crf_targets(rows, cuda)
    print("\ntargets (speed-up over pytorch-crf):")
    for t in targets:
        shape = f"B={t['batch']} K={t['tags'] if t['tags'] is not None else 'any'} L={t['length']}"
        got = f"{t['speedup']:.2f}x, " if t.get("speedup") is not None else ""
        print(f"  {shape:<17} {t['method']:<7} {t['op']:<11} >= {t['target']:g}x: {got}{t['status']}")
    _write_json(args.json, {**meta, "rows": rows, "targets": targets})
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench lstm
# ----------------------------------------------------------------------------------------------------------------

# The ratio column of each part (as bench lion's), the agreement column and the shape columns.
LSTM_RATIOS = {"lstm": (("nn-lstm", "nn_lstm", "nn", 11),), "lstmp": (("autograd-loop", "loop", "loop", 13),)}
LSTM_EXTRA = (("max_abs_diff", "max|diff|", 10, ".1e"),)
LSTM_SHAPES = {
    "lstm": (("batch", "B", 4), ("hidden", "H", 5), ("length", "L", 5)),
    "lstmp": (("elmo", "ELMo", 8), ("hidden", "cells", 5), ("projection", "P", 4), ("batch", "B", 4),
              ("length", "L", 4)),
}


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
    """``torch.nn.LSTM(I, H, bidirectional=True, batch_first=True)`` holding ``weights`` (its b_ih the bias, its
    b_hh zero: the same LSTM)."""
    import torch

    weight_ih, weight_hh, bias, _ = weights
    module = torch.nn.LSTM(weight_ih.shape[2], weight_hh.shape[1] // 4, bidirectional=True, batch_first=True,
                           device=weight_ih.device, dtype=weight_ih.dtype)
    with torch.no_grad():
        for d, suffix in enumerate(("l0", "l0_reverse")):
            getattr(module, f"weight_ih_{suffix}").copy_(weight_ih[d])
            getattr(module, f"weight_hh_{suffix}").copy_(weight_hh[d])
            getattr(module, f"bias_ih_{suffix}").copy_(bias[d])
            getattr(module, f"bias_hh_{suffix}").zero_()
    return module


def lstm_function(method: str, x, mask, weights, clip: float | None):
    """A function that runs one bidirectional layer with ``method`` and returns y (B, L, 2, P), and the tensors its
    backward pass differentiates (x and every weight). The input projection W_ih x is part of every method's call;
    bizoo's ``bilstm`` returns the outputs only (final_state=False, what a tagger or the biLM reads)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from ..kernels.lstm import bilstm

    B, L = x.shape[:2]
    if method in NN_LSTM_METHODS:
        module = nn_lstm_module(weights)
        leaves = [x, *module.parameters()]
        if method == "nn-lstm":
            return (lambda: module(x)[0].view(B, L, 2, -1)), leaves

        def packed():  # the lengths come from the mask in every call, as in a model
            seq = pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(module(seq)[0], batch_first=True, total_length=L)[0].view(B, L, 2, -1)

        return packed, leaves
    backend, form = BILSTM_METHODS[method]
    weight_ih, weight_hh, bias, weight_proj = weights

    def op():
        return bilstm(x, weight_ih, weight_hh, bias, weight_proj, mask, cell_clip=clip,
                      proj_clip=clip if weight_proj is not None else None, final_state=False, backend=backend,
                      form=form)[0]

    return op, [x, *(w for w in weights if w is not None)]


def lstm_agreement(method: str, fn, x, mask, weights, clip: float | None) -> dict:
    """The max abs difference of ``fn``'s outputs from the fp32 loop reference on the same inputs, and the largest
    output of the reference (the scale of the difference). nn-lstm reads the padding of a row before its real tokens
    in the backward direction: it is compared where it computes the same, the forward direction at the real tokens
    and the backward direction in the rows without padding."""
    import torch

    from ..kernels.lstm import bilstm

    with torch.no_grad():
        y = fn().float()  # (B, L, 2, P)
        ref = bilstm(x.float(), *(None if w is None else w.float() for w in weights), mask, cell_clip=clip,
                     proj_clip=clip if weights[3] is not None else None, final_state=False, backend="reference",
                     form="autograd")[0]
    compared = torch.ones(y.shape[:3], dtype=torch.bool, device=y.device)  # (B, L, 2)
    if method == "nn-lstm":
        compared = torch.stack([mask, mask.all(1, keepdim=True).expand_as(mask)], dim=-1)
    return {"max_abs_diff": (y - ref).abs()[compared].max().item(), "max_abs_output": ref.abs().max().item()}


def measure_lstm_case(case: dict, report) -> None:
    """``measure_op_case`` for one bidirectional LSTM layer: gradients to x and every weight; agreement with the fp32
    loop reference."""
    method = case["method"]

    def build(device, dtype):
        x, mask, weights, dout = lstm_inputs(case, device, dtype)
        fn, leaves = lstm_function(method, x, mask, weights, case["clip"])
        return fn, leaves, dout, lambda: lstm_agreement(method, fn, x, mask, weights, case["clip"])

    measure_op_case(case, report, build, may_be_missing=method == "triton")


def estimate_lstm_bytes(case: dict, mode: str) -> int:
    """A rough peak of a CPU case of bench lstm, fp32 inside: the inputs and outputs, and what a step keeps for the
    backward pass, ~16 (B, 2, 4H) gate-sized buffers per step (the loop's autograd graph; cuDNN and the native form
    keep fewer); the weights and their gradients."""
    B, L, H, I = case["batch"], case["length"], case["hidden"], case["input_size"]
    P = case["projection"] or H
    per_step = 16 if mode == "fwdbwd" else 2
    weights = 2 * 4 * H * (I + P + 1) + 2 * P * H
    return 4 * (B * L * (I + 4 * P) + per_step * B * L * 2 * 4 * H + 2 * weights)


def lstm_probe(method: str, device: str, dtype: str) -> str | None:
    """None when ``method`` can run here, else why not (a tiny call; Triton on a CPU needs TRITON_INTERPRET=1)."""
    if method in NN_LSTM_METHODS:
        return None
    if BILSTM_METHODS[method][0] == "triton" and (why := triton_missing(device)) is not None:
        return why
    import torch

    tiny = {"batch": 2, "length": 3, "hidden": 16, "input_size": 16, "projection": None}
    x, mask, weights, _ = lstm_inputs(tiny, torch.device(device), getattr(torch, dtype))
    try:
        lstm_function(method, x, mask, weights, None)[0]()
    except Exception as err:  # noqa: BLE001 - whatever stops the tiny call stops the real one
        return _short(err)
    return None


def triton_vs_native(rows: list[dict]) -> list[dict]:
    """Per (B, H) of part "lstm": native ms / triton ms forward+backward at each L, and whether the fused kernel is at
    least as fast as torch.lstm (cuDNN on a GPU) at every L: what ``TRITON_BEATS_CUDNN`` of ``bizoo.kernels.lstm``
    records for backend="auto"."""
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


def plot_speedups(parts: list[tuple[str, list[dict], str]], modes, path: str, title: str) -> None:
    """The speed-up over each part's baseline at every shape (log scale; 1: as fast), one line per method; one panel
    per part and mode. ``parts``: (title, rows, baseline method, key of the ratio: speedup_vs_<key>_<mode>)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(parts), len(modes), figsize=(6.5 * len(modes), 4.2 * len(parts)), squeeze=False)
    def shape(r):
        return (f"{r['elmo']} " if r["part"] == "lstmp" else f"H{r['hidden']} ") + f"B{r['batch']} L{r['length']}"

    for panels, (part_title, rows, baseline, key) in zip(axes, parts):
        labels = list(dict.fromkeys(shape(r) for r in rows))
        for ax, mode in zip(panels, modes):
            for method in dict.fromkeys(r["method"] for r in rows if r["method"] != baseline):
                points = [(labels.index(shape(r)), r[f"speedup_vs_{key}_{mode}"])
                          for r in rows if r["method"] == method and f"speedup_vs_{key}_{mode}" in r]
                if points:
                    ax.plot(*zip(*points), "o-", label=method)
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(labels)), labels, rotation=70, fontsize=6)
            ax.set_ylabel(f"speed-up: {baseline} ms / method ms")
            ax.set_title(f"{part_title}, {MODES[mode]}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no method timed besides the baseline", ha="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_lstm(args) -> int:
    device = _resolve_device(args)
    cuda = device == "cuda"
    defaults = LSTM_DEFAULT_GRID[device]
    grid_args = {name: getattr(args, name) or default for name, default in defaults.items()}
    parts = LSTM_PARTS if args.part == "both" else (args.part,)
    _check_positive(batch_sizes=grid_args["batch_sizes"], lengths=grid_args["lengths"], hidden=grid_args["hidden"],
                    input_size=args.input_size, elmo_batch_sizes=grid_args["elmo_batch_sizes"],
                    elmo_lengths=grid_args["elmo_lengths"], repeats=args.repeats)
    settings = _settings(args, device)
    methods = list(dict.fromkeys(args.methods or LSTM_DEFAULT_METHODS))
    modes = [m for m in MODES if m in args.modes]
    unavailable = unavailable_methods(methods, args.methods, device, settings["dtype"], lstm_probe)
    interpreted = not cuda and "triton" in methods and "triton" not in unavailable
    machine = machine_name(device)
    import torch

    compared = {"lstm": "vs torch.nn.LSTM", "lstmp": "ELMo's clipped LSTMP vs the per-step PyTorch loop"}
    print(f"Bidirectional LSTM layer (bizoo.kernels.lstm.bilstm) {', and '.join(compared[p] for p in parts)}, "
          "forward and forward+backward")
    print(f"machine: {machine}" + (f", cuDNN {torch.backends.cudnn.version()}" if cuda else ""))
    print(f"dtype: {settings['dtype']}; right-padded batches: the first row L long, the others between L/2 and L "
          "(seed 0), the same for every method")
    print("every timing includes the input projection W_ih x and both directions; backward: gradients to x and "
          "every weight; bizoo's bilstm returns the outputs only (final_state=False)")
    print("methods: triton (the fused kernel), native (torch.lstm per direction over its real tokens first: cuDNN on "
          "a GPU), loop (one step at a time in PyTorch, its backward pass written out), autograd-loop (the same steps "
          "differentiated by autograd), nn-lstm-packed (torch.nn.LSTM on pack_padded_sequence, "
          "the lengths read from the mask in every call)")
    print("peak memory: " + ("max_memory_allocated above the inputs" if cuda
                             else "growth of the peak RSS, one process per case")
          + ("\nnote: triton on a CPU runs in Triton's interpreter: its times mean nothing" if interpreted else ""))
    print(f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)"
          + ("; CUDA events" if cuda else ""))
    print("max|diff|: the largest difference of the outputs from the fp32 autograd-loop reference on the same inputs")
    meta = {"op": "lstm", "machine": machine, "device": device, **settings, "parts": list(parts), "modes": modes,
            "methods": methods, "input_size": args.input_size, **grid_args, "elmo_clip": ELMO_CLIP}
    if cuda:
        meta["cudnn"] = torch.backends.cudnn.version()
    rows: list[dict] = []

    def measure(part, part_methods, grid, describe_point):
        ratios, shape = LSTM_RATIOS[part], LSTM_SHAPES[part]
        print(_table_head(modes, ratios, LSTM_EXTRA, shape))
        rows.extend(_run_grid(grid, part_methods, describe_point, unavailable, modes, ratios, LSTM_EXTRA, args.json,
                              meta, shape, rows))

    def describe(part, method, batch, length, hidden, input_size, projection, clip, **row):
        """The row's fields and the case to run (``_run_grid``)."""
        backend, form = BILSTM_METHODS.get(method, ("torch", "nn.LSTM" + (" packed" if "packed" in method else "")))
        row = {"part": part, **row, "method": method, "backend": backend, "form": form, "batch": batch,
               "length": length, "hidden": hidden, "input_size": input_size, "projection": projection, "clip": clip,
               "dtype": settings["dtype"], "device": device}
        return row, {**row, "op": "lstm", **settings, "modes": modes, "threads": args.threads}

    if "lstm" in parts:
        part_methods = ["nn-lstm", *(m for m in methods if m != "nn-lstm")]
        print("\nLSTM: torch.nn.LSTM(I, H, bidirectional=True, batch_first=True) on the whole padded tensor (nn-lstm, "
              "the baseline), as models commonly call it: its backward direction reads a row's padding before its "
              "real tokens, so it is compared with the reference only where that does not matter")
        print(f"shapes: B in {grid_args['batch_sizes']}, H in {grid_args['hidden']} cells per direction, "
              f"L in {grid_args['lengths']}, I = {args.input_size or 'H'} input features")
        print("nn/x: speed-up = nn-lstm ms / method ms, > 1 is faster than torch.nn.LSTM")
        grid = [(B, L, H) for B in grid_args["batch_sizes"] for H in grid_args["hidden"] for L in grid_args["lengths"]]
        measure("lstm", part_methods, grid, lambda method, B, L, H: describe(
            "lstm", method, B, L, H, args.input_size or H, None, None))
    if "lstmp" in parts:
        part_methods = ["autograd-loop", *(m for m in methods if m in ("loop", "triton"))]
        print(f"\nLSTMP (ELMo): cells projected to P, I = P, cell_clip = proj_clip = {ELMO_CLIP:g}; torch.nn.LSTM "
              "cannot clip: the baseline is the per-step PyTorch loop differentiated by autograd (autograd-loop); "
              "loop: the same steps with the backward pass through time written out")
        sizes = ", ".join(f"{name} {ELMO_SIZES[name][0]}/{ELMO_SIZES[name][1]}" for name in grid_args["elmo_sizes"])
        print(f"shapes: {sizes} (cells/P); B in {grid_args['elmo_batch_sizes']}, L in {grid_args['elmo_lengths']}")
        print("loop/x: speed-up = autograd-loop ms / method ms, > 1 is faster than the autograd loop")
        grid = [(name, B, L) for name in grid_args["elmo_sizes"] for B in grid_args["elmo_batch_sizes"]
                for L in grid_args["elmo_lengths"]]
        measure("lstmp", part_methods, grid, lambda method, name, B, L: describe(
            "lstmp", method, B, L, ELMO_SIZES[name][0], ELMO_SIZES[name][1], ELMO_SIZES[name][1], ELMO_CLIP,
            elmo=name))
    comparison = triton_vs_native(rows)
    if comparison:
        print("\ntriton vs native (torch.lstm; cuDNN on a GPU), forward+backward: native ms / triton ms at each L; "
              "backend='auto' takes triton for an unclipped LSTM only where TRITON_BEATS_CUDNN says so")
        for c in comparison:
            ratios = ", ".join(f"L={L} {x:.2f}" for L, x in c["native_over_triton_fwdbwd"].items())
            verdict = "at least as fast at every L" if c["triton_at_least_as_fast"] else "not at every L"
            print(f"  B={c['batch']} H={c['hidden']}: {ratios}: {verdict}")
    _write_json(args.json, {**meta, "rows": rows, "triton_vs_native": comparison})
    if args.plot:
        plots = [(title, [r for r in rows if r["part"] == part], *LSTM_RATIOS[part][0][:2])
                 for part, title in (("lstm", "vs torch.nn.LSTM"), ("lstmp", "ELMo LSTMP vs the loop"))
                 if part in parts]
        try:
            plot_speedups(plots, modes, args.plot, f"bidirectional LSTM, {machine}\n{settings['dtype']}, median of "
                          f"{settings['repeats']}")
        except ImportError as err:  # the table and the JSON are the results; the plot is a view of them
            print(f"no plot: {_short(err)}")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench models: every model, eager against torch.compile
# ----------------------------------------------------------------------------------------------------------------

# bench models: name -> (model type, config overrides). "bert-sdpa" (transformers' BertForMaskedLM with SDPA) and
# "lstm-crf" (torch.nn.LSTM + pytorch-crf, `lstm_crf_baseline`) are the baselines, not bizoo's models.
BENCH_MODELS = {
    "bert-sdpa": ("bert", {}),
    "lion-d": ("lion", {"lion_variant": "d"}),
    "lion-s": ("lion", {"lion_variant": "s"}),
    "bigs": ("bigs", {}),
    "lstm-crf": ("lstm_crf", {}),
    "bilstm-crf": ("bilstm_crf", {}),
    "elmo": ("elmo", {}),
}
# Each bizoo model's baseline, measured in the same run whether --models names it or not. ELMo has none: its LSTM
# clips its cells and has a projection, which torch.nn.LSTM cannot clip (`bench lstm --part lstmp` times that op
# against the per-step loop instead).
BENCH_BASELINES = {"lion-d": "bert-sdpa", "lion-s": "bert-sdpa", "bigs": "bert-sdpa", "bilstm-crf": "lstm-crf"}
# Trained as taggers (a tag per token, the CRF's loss); the others as masked LMs.
BENCH_TAGGERS = ("lstm-crf", "bilstm-crf")
# Timed eager only, as it is used, with the reason: dynamo refuses to trace a torch.nn.LSTM ("Attempted to wrap RNN,
# GRU, or LSTM", an error under fullgraph=True), and pytorch-crf's decode reads each tag back with .item().
BENCH_NOT_COMPILED = {"lstm-crf": "not compiled: dynamo refuses torch.nn.LSTM, pytorch-crf's decode calls .item()"}
TAGGER_CHARS_PER_WORD = 8  # the taggers' char_ids; ELMo reads max_characters_per_token (50) per word, as bilm-tf


def bench_model_order(chosen) -> list[str]:
    """The models of ``--models`` with their baselines, in BENCH_MODELS' order (a baseline before its models)."""
    wanted = set(chosen) | {BENCH_BASELINES[name] for name in chosen if name in BENCH_BASELINES}
    return [name for name in BENCH_MODELS if name in wanted]


def _tagger_config(args):
    """The BiLSTM-CRF tagger of bench models: --tagger-layers x --tagger-hidden units per direction, --tags tags with
    the CRF, --vocab-size words; the other sizes (100-d word embeddings, a character CNN of 30 filters over 30-d
    character embeddings, dropout 0.5) are BiLstmCrfConfig's defaults, Ma & Hovy's."""
    from .. import BiLstmCrfConfig

    return BiLstmCrfConfig(vocab_size=args.vocab_size, hidden_size=args.tagger_hidden,
                           num_hidden_layers=args.tagger_layers, num_labels=args.tags, use_crf=True,
                           kernel_backend=args.backend)


def lstm_crf_baseline(config):
    r"""The BiLSTM-CRF as it is commonly written with torch and pytorch-crf, at the sizes of ``config`` (a
    ``BiLstmCrfConfig`` with the character CNN): x_t = Dropout([E_word[w_t] ; max_c conv(E_char[chars of w_t])]),
    h = ``torch.nn.LSTM(bidirectional=True)`` layers over the whole batch (cuDNN on a GPU),
    emissions = W Dropout(h) + b, and ``torchcrf.CRF``: with labels the loss is its negative log-likelihood (mean
    over the rows), without them the output is its Viterbi ``decode`` (Python lists). The baseline of bench models'
    bilstm-crf row.

    Shape: input_ids (B, L), char_ids (B, L, C), labels (B, L) -> loss, emissions (B, L, K).
    """
    import torch
    from torch import nn
    from torchcrf import CRF
    from transformers.modeling_outputs import TokenClassifierOutput

    class LstmCrfTagger(nn.Module):
        def __init__(self):
            super().__init__()
            c = config
            self.words = nn.Embedding(c.vocab_size, c.word_embedding_size, padding_idx=c.pad_token_id)
            self.chars = nn.Embedding(c.char_vocab_size, c.char_embedding_size, padding_idx=0)
            self.char_cnn = nn.Conv1d(c.char_embedding_size, c.char_cnn_filters, c.char_cnn_width,
                                      padding=c.char_cnn_width // 2)
            self.embedding_dropout = nn.Dropout(c.embedding_dropout)
            self.lstm = nn.LSTM(c.word_embedding_size + c.char_cnn_filters, c.hidden_size,
                                num_layers=c.num_hidden_layers, bidirectional=True, batch_first=True,
                                dropout=c.hidden_dropout_prob if c.num_hidden_layers > 1 else 0.0)
            self.hidden_dropout = nn.Dropout(c.hidden_dropout_prob)
            self.emissions = nn.Linear(2 * c.hidden_size, c.num_labels)
            self.crf = CRF(c.num_labels, batch_first=True)

        def forward(self, input_ids, char_ids, labels=None):
            B, L, C = char_ids.shape
            chars = self.chars(char_ids.reshape(B * L, C)).transpose(1, 2)  # (B·L, E_c, C)
            chars = self.char_cnn(chars).amax(dim=2).reshape(B, L, -1)  # (B, L, F)
            x = self.embedding_dropout(torch.cat([self.words(input_ids), chars], dim=-1))  # (B, L, E + F)
            hidden, _ = self.lstm(x)  # (B, L, 2H)
            emissions = self.emissions(self.hidden_dropout(hidden)).float()  # (B, L, K), the CRF in fp32
            mask = torch.ones(B, L, dtype=torch.bool, device=input_ids.device)  # every word real
            if labels is None:
                return self.crf.decode(emissions, mask)  # B lists of L tags
            loss = -self.crf(emissions, labels, mask, reduction="mean")
            return TokenClassifierOutput(loss=loss, logits=emissions)

    return LstmCrfTagger()


def _bench_model_builder(name: str, args):
    """length -> the model ``name`` at the sizes the arguments give, and its extra inputs (char_ids for the
    word+character models: a fixed function of each word id). BERT, LION and BiGS: masked LMs of --layers x --hidden
    (BERT: ``_bert_builder``); ELMo: a masked LM at --elmo-size (``_elmo_config``); BiLSTM-CRF and its baseline:
    taggers (``_tagger_config``)."""
    model_type, overrides = BENCH_MODELS[name]
    if model_type == "bert":
        return _bert_builder(args, args.layers, 4 * args.hidden), None
    if model_type in ("bilstm_crf", "lstm_crf"):
        build, chars_per_word = _tagger_builder(args, baseline=model_type == "lstm_crf"), TAGGER_CHARS_PER_WORD
    elif model_type == "elmo":
        build, chars_per_word = _elmo_builder(args), _elmo_config(args).max_characters_per_token
    else:
        return _masked_lm_builder(model_type, overrides, args), None
    return build, _char_inputs(args.vocab_size, chars_per_word)


def _char_inputs(vocab_size: int, chars_per_word: int):
    """ids (B, L) -> {"char_ids": (B, L, chars_per_word)}: a fixed random spelling of each word id."""
    import torch

    table = torch.randint(5, 60, (vocab_size, chars_per_word), generator=torch.Generator().manual_seed(0))

    def chars(ids):
        return {"char_ids": table[ids]}  # (B, L, C)

    return chars


def _masked_lm_builder(model_type: str, overrides: dict, args):
    """length -> a masked LM of ``model_type`` (LION, BiGS) with --layers x --hidden, --heads, feed-forward 4 x hidden
    where it has these fields, max_position_embeddings = L."""

    def build(length: int):
        from transformers import AutoModelForMaskedLM

        from .. import get_spec

        spec = get_spec(model_type)
        fields = spec.config_class().to_dict()
        sizes = {"hidden_size": args.hidden, "num_hidden_layers": args.layers, "vocab_size": args.vocab_size,
                 "num_attention_heads": args.heads, "intermediate_size": 4 * args.hidden,
                 "max_position_embeddings": length, "kernel_backend": args.backend,
                 "sparse_prediction": not args.dense_logits}
        sizes = {key: value for key, value in sizes.items() if key in fields}  # the fields this model has
        return AutoModelForMaskedLM.from_config(spec.config_class(**sizes, **overrides))

    return build


def _tagger_builder(args, baseline: bool):
    """length -> bizoo's BiLSTM-CRF tagger (``_tagger_config``), or with ``baseline`` the same sizes written with
    torch.nn.LSTM and pytorch-crf (``lstm_crf_baseline``)."""

    def build(length: int):
        from transformers import AutoModelForTokenClassification

        config = _tagger_config(args)
        return lstm_crf_baseline(config) if baseline else AutoModelForTokenClassification.from_config(config)

    return build


def _elmo_config(args):
    """ELMo at --elmo-size: the cells and projection of that released model, 2 layers, --vocab-size words."""
    from .. import ElmoConfig

    cells, projection = ELMO_SIZES[args.elmo_size]
    return ElmoConfig(vocab_size=args.vocab_size, lstm_size=cells, projection_size=projection,
                      kernel_backend=args.backend, sparse_prediction=not args.dense_logits)


def _elmo_builder(args):
    def build(length: int):
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM.from_config(_elmo_config(args))

    return build


def _attempt(measure) -> dict:
    """``measure()``, or a result whose status says why not: "oom" or "failed: ..." (the row records it, the
    benchmark goes on)."""
    import torch

    try:
        return measure()
    except torch.OutOfMemoryError:
        result = {"status": "oom"}
    except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
        result = {"status": f"failed: {_short(err)}"}
    _release_cuda_memory()
    return result


def _value(result: dict | None, key: str) -> float | None:
    return result[key] if result and result.get("status") == "ok" else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom is not None else None


def models_ratios(row: dict, base: dict | None) -> None:
    """Set ``row["compiled_speedup"]`` (training: compiled tokens/s / eager tokens/s; latency: eager ms / compiled ms)
    and, against the row ``base`` of its baseline, ``row["vs_baseline"]``: per mode, the model's tokens/s / the
    baseline's and the baseline's ms / the model's (> 1: the model is faster). A baseline that is not compiled
    (BENCH_NOT_COMPILED) gives its eager runs to the compiled ratios ("compiled_against": "eager"). None where a
    run did not happen or failed."""
    train, latency = row["train"], row["latency"]
    row["compiled_speedup"] = {
        "train": _ratio(_value(train["compiled"], "tokens_per_s"), _value(train["eager"], "tokens_per_s")),
        "latency": _ratio(_value(latency["eager"], "latency_ms"), _value(latency["compiled"], "latency_ms")),
    }
    if base is None:
        return
    against = "eager" if base["model"] in BENCH_NOT_COMPILED else "compiled"
    row["vs_baseline"] = {"compiled_against": against}
    for mode, base_mode in (("eager", "eager"), ("compiled", against)):
        row["vs_baseline"][f"train_{mode}"] = _ratio(_value(train[mode], "tokens_per_s"),
                                                     _value(base["train"][base_mode], "tokens_per_s"))
        row["vs_baseline"][f"latency_{mode}"] = _ratio(_value(base["latency"][base_mode], "latency_ms"),
                                                       _value(latency[mode], "latency_ms"))


def measure_bench_model(name: str, args, length: int, batch: int, device: str, timing: dict, backend: str) -> dict:
    """One row of bench models: ``name`` trained (``_train_steps``: B·L tokens per step) and run for inference
    (``_forward_latency``: --latency-batch rows of L tokens), each eager then under ``torch.compile(fullgraph=True,
    backend=backend)`` (dynamo's caches reset before each compiled run; the compiled training also runs one step under
    ``torch.cuda.set_sync_debug_mode("error")`` on CUDA). Each run's result has its own status; the row's is the first
    that is not "ok" (a model BENCH_NOT_COMPILED is not compiled: that is no failure)."""
    import torch

    build, chars = _bench_model_builder(name, args)
    tags = args.tags if name in BENCH_TAGGERS else None
    steps, runs, amp = timing["steps"], timing["runs"], timing["amp"]

    def train(wrap=None):
        warmup = timing["compiled_warmup" if wrap else "warmup"]
        return _train_steps(build, length, batch, args.vocab_size, device, steps, warmup, amp, chars, wrap=wrap,
                            sync_check=wrap is not None, tags=tags)

    def latency(wrap=None):
        warmup = timing["compiled_warmup" if wrap else "warmup"]
        return _forward_latency(build, length, args.latency_batch, args.vocab_size, device, runs, warmup, amp, chars,
                                wrap=wrap)

    def compiled(model):
        return torch.compile(model, fullgraph=True, backend=backend)

    row = {"model": name, "task": "tagging (CRF)" if tags else "masked LM", "baseline": BENCH_BASELINES.get(name),
           "length": length, "batch": batch, "latency_batch": args.latency_batch,
           "train": {"eager": _attempt(train)}, "latency": {"eager": _attempt(latency)}}
    if name in BENCH_NOT_COMPILED:
        row["train"]["compiled"] = row["latency"]["compiled"] = {"status": BENCH_NOT_COMPILED[name]}
    else:
        torch._dynamo.reset()
        row["train"]["compiled"] = _attempt(lambda: train(compiled))
        torch._dynamo.reset()
        row["latency"]["compiled"] = _attempt(lambda: latency(compiled))
        torch._dynamo.reset()
    counted = [row[part][mode] for part in ("train", "latency") for mode in ("eager", "compiled")
               if mode == "eager" or name not in BENCH_NOT_COMPILED]
    row["status"] = next((r["status"] for r in counted if r["status"] != "ok"), "ok")
    return row


# bench models' table after L, B and the model: (label, width, what the cell shows); the group each belongs to.
MODELS_COLUMNS = (
    ("baseline", 10, "baseline"),
    ("eager", 10, "train eager"), ("compiled", 10, "train compiled"), ("c/e", 7, "train speedup"),
    ("vs base", 8, "train vs eager"), ("c vs base", 10, "train vs compiled"),
    ("eager", 9, "latency eager"), ("compiled", 9, "latency compiled"), ("e/c", 7, "latency speedup"),
    ("vs base", 8, "latency vs eager"), ("c vs base", 10, "latency vs compiled"),
)
MODELS_GROUPS = ((1, 6), (6, 11))  # the training and the inference columns: (first, end) in MODELS_COLUMNS


def _models_cells(row: dict) -> dict[str, str]:
    """The table's cells of one row of bench models, by MODELS_COLUMNS' third field; "-" for what did not run."""

    def num(value, fmt, suffix=""):
        return "-" if value is None else format(value, fmt) + suffix

    train, latency, vs = row["train"], row["latency"], row.get("vs_baseline", {})
    speedup = row["compiled_speedup"]
    return {
        "baseline": row["baseline"] or "-",
        "train eager": num(_value(train["eager"], "tokens_per_s"), ",.0f"),
        "train compiled": num(_value(train["compiled"], "tokens_per_s"), ",.0f"),
        "train speedup": num(speedup["train"], ".2f", "x"),
        "train vs eager": num(vs.get("train_eager"), ".2f", "x"),
        "train vs compiled": num(vs.get("train_compiled"), ".2f", "x"),
        "latency eager": num(_value(latency["eager"], "latency_ms"), ".2f"),
        "latency compiled": num(_value(latency["compiled"], "latency_ms"), ".2f"),
        "latency speedup": num(speedup["latency"], ".2f", "x"),
        "latency vs eager": num(vs.get("latency_eager"), ".2f", "x"),
        "latency vs compiled": num(vs.get("latency_compiled"), ".2f", "x"),
    }


def _models_table_head(latency_batch: int) -> str:
    lead = f"{'L':>6} {'B':>4} {'model':<11}"
    labels = [f"{label:>{width}}" for label, width, _ in MODELS_COLUMNS]
    titles = ("training tokens/s", f"inference ms, batch {latency_batch}")
    groups = ""
    for title, (first, end) in zip(titles, MODELS_GROUPS):
        start = len(lead) + sum(len(cell) + 1 for cell in labels[:first])
        width = sum(len(cell) + 1 for cell in labels[first:end])
        groups = groups.ljust(start) + " " + f" {title} ".center(width - 1, "-")
    line = " ".join([lead, *labels]) + "  sync"
    return f"{groups}\n{line}\n{'-' * len(line)}"


def _models_line(row: dict) -> str:
    """A table line of bench models, then a line per run that failed (with its status)."""
    cells = _models_cells(row)
    lead = f"{row['length']:>6} {row['batch']:>4} {row['model']:<11}"
    body = " ".join(f"{cells[key]:>{width}}" for _, width, key in MODELS_COLUMNS)
    lines = [f"{lead} {body}  {row['train']['compiled'].get('host_sync', '-')}"]
    for part in ("train", "latency"):
        for mode, result in row[part].items():
            if result["status"] != "ok" and not (mode == "compiled" and row["model"] in BENCH_NOT_COMPILED):
                lines.append(f"{'':>12} {row['model']} {part} {mode}: {result['status']}")
    return "\n".join(lines)


def run_models(args) -> int:
    """Every model of ``--models`` and its baseline (BENCH_BASELINES): training tokens/s and inference latency, each
    eager and under ``torch.compile(fullgraph=True)`` (``measure_bench_model``), the ratios of compiled to eager and
    of each model to its baseline in the same mode (``models_ratios``), at each of --lengths; one table line per
    model as it is measured, the rows as JSON (--json, rewritten after each row)."""
    device = _resolve_device(args)
    settings = _model_settings(args, device)
    _check_positive(tagger_hidden=args.tagger_hidden, tagger_layers=args.tagger_layers, tags=args.tags,
                    latency_batch=args.latency_batch, latency_runs=args.latency_runs)
    cuda = device == "cuda"
    # A compiled model's warm-up compiles it, and its second call may compile once more: the first call fills a
    # cache that the first graph's guards read (the CRF head's tag constraints), so at least 2 warm-up runs.
    timing = {"steps": settings["steps"], "warmup": settings["warmup_steps"],
              "compiled_warmup": max(settings["warmup_steps"], 2), "runs": args.latency_runs or (20 if cuda else 3),
              "amp": settings["amp"]}
    backend = args.compile_backend or ("inductor" if cuda else "aot_eager")
    names = bench_model_order(args.models)
    tagger = _tagger_config(args)
    cells, projection = ELMO_SIZES[args.elmo_size]
    print(f"bench models: training tokens/s and inference latency, eager vs torch.compile(fullgraph=True, "
          f"backend={backend!r})")
    print(f"machine: {machine_name(device)}")
    warmups = f"after {timing['warmup']} (compiled: {timing['compiled_warmup']}) untimed"
    print(f"precision: {settings['precision']}; training: B·L = {args.tokens_per_step} tokens per step (B = tokens // "
          f"L), forward + backward + AdamW, median of {timing['steps']} steps {warmups}; inference: "
          f"{args.latency_batch} x L tokens, one forward in eval mode under torch.no_grad, median of {timing['runs']} "
          f"{warmups}")
    print(f"masked LMs (15% of the positions labelled), vocabulary {args.vocab_size}: bert-sdpa, lion-*, bigs "
          f"{args.layers} layers x {args.hidden}, {args.heads} heads, feed-forward {4 * args.hidden}, kernel_backend "
          f"{args.backend!r}; elmo {args.elmo_size} ({cells} cells projected to {projection}, 2 layers, "
          f"{_elmo_config(args).max_characters_per_token} characters per word)")
    print(f"taggers (a tag per word, {args.tags} tags, the CRF's loss), vocabulary {args.vocab_size}: bilstm-crf "
          f"(bizoo) and lstm-crf (torch.nn.LSTM + linear + pytorch-crf), {tagger.num_hidden_layers} layer(s) x "
          f"{tagger.hidden_size} per direction over {tagger.word_embedding_size}-d words + a character CNN of "
          f"{tagger.char_cnn_filters} filters ({TAGGER_CHARS_PER_WORD} characters per word)")
    print(_models_table_head(args.latency_batch))
    meta = {"op": "models", "machine": machine_name(device), "device": device, "backend": backend,
            "precision": settings["precision"], "vocab_size": args.vocab_size,
            "tokens_per_step": args.tokens_per_step, "steps": timing["steps"], "warmup": timing["warmup"],
            "compiled_warmup": timing["compiled_warmup"], "latency_runs": timing["runs"],
            "latency_batch": args.latency_batch, "layers": args.layers, "hidden": args.hidden, "heads": args.heads,
            "elmo_size": args.elmo_size, "tags": args.tags, "tagger_hidden": tagger.hidden_size,
            "tagger_layers": tagger.num_hidden_layers,
            "baselines": {name: base for name, base in BENCH_BASELINES.items() if name in names}}
    rows = []
    for length in args.lengths:
        batch = batch_for(length, args.tokens_per_step)
        measured = {}  # name -> row at this length: the baselines' runs for the ratios
        for name in names:
            row = measure_bench_model(name, args, length, batch, device, timing, backend)
            models_ratios(row, measured.get(BENCH_BASELINES.get(name)))
            measured[name] = row
            rows.append(row)
            print(_models_line(row), flush=True)
            _write_json(args.json, {**meta, "rows": rows})
    models_of = {}  # baseline -> the models measured against it
    for name, base in BENCH_BASELINES.items():
        if name in names:
            models_of.setdefault(base, []).append(name)
    baselines = "; ".join(f"{base} for {', '.join(models)}" for base, models in models_of.items()) or "none"
    print("medians. c/e: compiled tokens/s / eager tokens/s, e/c: eager ms / compiled ms (> 1: compiling is faster)")
    print("vs base, c vs base: eager and compiled against the baseline in the same mode, tokens/s / the baseline's "
          f"and the baseline's ms / ms (> 1: the bizoo model is faster); baselines: {baselines}"
          + ("; elmo has none" if "elmo" in names else ""))
    for name, base in BENCH_BASELINES.items():
        if name in names and base in BENCH_NOT_COMPILED:
            print(f"{base} is {BENCH_NOT_COMPILED[base]}: the c vs base of {name} is over {base}'s eager runs")
    if cuda:
        print('sync: a compiled training step under torch.cuda.set_sync_debug_mode("error") ("ok": no host sync)')
    return 0


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------

RUNNERS = {"lion": run_lion, "lion-crossover": run_crossover, "lion-model": run_model, "lion-forms": run_forms,
           "crf": run_crf, "lstm": run_lstm, "bigs": run_bigs, "bigs-model": run_bigs_model, "models": run_models}


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


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        check_common_arguments(args)
        return RUNNERS[args.op](args)

    return run_command(f"{PROG} {args.op}", body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo bench`` and ``python -m bizoo.scripts.bench``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
