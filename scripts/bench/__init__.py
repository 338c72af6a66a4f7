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
(gradients to the input and every weight; the input projection W_ih x is part of every timing) on right-padded batches
(the first row L long, the others between L/2 and L), in two parts. Part `lstm`: against `torch.nn.LSTM(I, H,
bidirectional=True, batch_first=True)` called on the whole padded tensor as models commonly call it (`nn-lstm`, cuDNN
on a GPU; its backward direction reads a row's padding before its real tokens), at each B × H × L (on a GPU the grid B
= 32, 128 × H = 100, 200, 256, 512 × L = 32, 128, 512; I = H); the methods `triton` (the op's Triton schedule: per
step one batched product and one fused kernel), `native` (torch.lstm over each row's real tokens), `loop` (the
per-step PyTorch loop with its backward pass through time written out), `autograd-loop` (the same loop differentiated
by autograd) and `nn-lstm-packed` (the same module on packed sequences, when named). Part `lstmp`: ELMo's LSTM with a
projection and clipping at 3 (which torch.nn.LSTM cannot clip), at the sizes of the original (4096 cells projected to
512), medium (2048/256) and small (1024/128) models, B = 32, 128 and L = 20, 64, `triton` and `loop` against the
autograd loop and cuDNN's unclipped `nn.LSTM(proj_size=P)`. Each table gives median ms, peak memory, the speed-up over
the part's baseline (baseline ms / method ms) and each method's max abs difference from the fp32 autograd-loop
reference on the same inputs (nn-lstm only where it computes the same); part lstm ends with native ms / triton ms
(whether a Triton schedule would beat cuDNN for an unclipped LSTM). fp32 by default; time and memory are measured as
by `bench lion`; on a CPU the default grid is small (B = 32, H = 100, 256, L = 32, 128; ELMo small, B = 32, L = 20)
and triton runs only when named (Triton's interpreter, whose times mean nothing).

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

`bizoo bench kernel-build` times nothing: it builds every Triton kernel the ops launch for a GPU architecture
(--arch, default 90: H100, H200) on any machine, a GPU or none, through a Triton driver that builds each kernel
(PTX to cubin with the ptxas Triton ships) and launches nothing, and prints one row per build: the kernel, its
specialisation, warps, stages, registers, stack bytes (register spills) and shared memory, read from the cubin. A
build that fails, or a block that needs more shared memory or threads than the architecture has, fails the command
(exit code 1): what Triton's interpreter, which runs the kernels in the tests without a GPU, never checks.

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
  bizoo bench kernel-build --ops lion --all-configs # every LION kernel configuration built for sm_90, no GPU needed
"""

from __future__ import annotations

# The package: registry.py (what is measured, as data: each op benchmark's methods, defaults and ratio columns; the
# models of bench models), harness.py (timed runs, peak memory, a child process per CPU case, the grid), report.py
# (table lines, JSON, plots), one module per target (lion.py; lion_forms.py: lion-crossover and lion-forms; bigs.py;
# crf.py; lstm.py; training.py: lion-model and bigs-model; models.py), and gpu_check.py (`python -m
# bizoo.scripts.gpu_check`, which runs these benchmarks on a GPU).

import argparse

# Standard library only at module level in every module of this package (torch and our kernels inside functions):
# the child of each CPU case imports it without the package's __init__ (harness.CHILD_CODE).
from ..lib.command import command_main, run_command
from . import bigs, crf, kernel_build, lion, lion_forms, lstm, models, training
from .harness import check_common_arguments

PROG = "bizoo bench"

# `bizoo bench <target>`: (one-line help, the function adding its options, the function running it), in the order
# `bizoo bench --help` lists them. The full help of every target is this module's docstring.
TARGETS = {
    "lion": ("the LION op vs SDPA: forward and forward+backward time and memory", lion.add_arguments, lion.run),
    "lion-crossover": ("the length from which the chunk form beats the attention form",
                       lion_forms.add_crossover_arguments, lion_forms.run_crossover),
    "lion-model": ("masked-LM training tokens/s: LION-D vs BERT with SDPA", training.add_lion_model_arguments,
                   training.run_lion_model),
    "models": ("every model's training tokens/s and inference latency, eager vs torch.compile, vs its baseline "
               "(BERT, nn.LSTM + pytorch-crf)", models.add_arguments, models.run),
    "lion-forms": ("max difference of the rnn and chunk forms from the attention form",
                   lion_forms.add_forms_arguments, lion_forms.run_forms),
    "crf": ("CRF log-likelihood forward+backward and Viterbi decode vs pytorch-crf", crf.add_arguments, crf.run),
    "lstm": ("the bidirectional LSTM op vs torch.nn.LSTM (cuDNN), and ELMo's LSTMP vs the loop", lstm.add_arguments,
             lstm.run),
    "bigs": ("the BiGS bidirectional SSM op vs torch.fft: forward and forward+backward", bigs.add_arguments,
             bigs.run),
    "bigs-model": ("masked-LM training tokens/s: BiGS vs BERT with SDPA, large sizes",
                   training.add_bigs_model_arguments, training.run_bigs_model),
    "kernel-build": ("every Triton kernel built for a GPU architecture without a GPU: registers, spills, shared "
                     "memory", kernel_build.add_arguments, kernel_build.run),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="op", metavar="OP", required=True)
    for name, (summary, add_target_arguments, _) in TARGETS.items():
        target = sub.add_parser(name, help=summary, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        add_target_arguments(target)
        target.set_defaults(_parser=target)  # an unknown option is reported with this target's usage


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        check_common_arguments(args)
        return TARGETS[args.op][2](args)

    return run_command(f"{PROG} {args.op}", body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo bench`` and ``python -m bizoo.scripts.bench``."""
    return command_main(__name__, argv)
