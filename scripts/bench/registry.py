"""What `bizoo bench` measures, as data: one ``OpBenchmark`` per op benchmark and one ``ModelCase`` per model of
`bizoo bench models`. The code that measures them (harness.py, the target modules) reads these entries; adding a
method, a default or a ratio column is an edit here.

An ``OpBenchmark`` names its methods (method -> (backend, form) of the op, or the baseline's own "torch" backend),
the methods it always measures (its baseline: first, whatever --methods says), the methods it runs by default on
each device, its default grid (``grid``: the same on every device, the options' argparse defaults; ``grid_by_device``:
resolved when an option is left out), and its table: the ratio columns (``Ratio``: speedup_vs_<key>_<mode> = the
baseline's ms / the method's ms, > 1 faster than the baseline), extra columns and the shape columns of a row.

Standard library only: the child process of a CPU case imports this module without the package's __init__.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Ratio(NamedTuple):
    """A ratio column: speedup_vs_<key>_<mode> = ms of the method ``baseline`` / ms of the row's method."""

    baseline: str
    key: str
    label: str
    width: int


class Column(NamedTuple):
    """An extra column of a row: the row's ``key`` printed with ``fmt`` under ``label``."""

    key: str
    label: str
    width: int
    fmt: str


class ShapeColumn(NamedTuple):
    """A shape column, first in a row: the row's ``key`` under ``label``."""

    key: str
    label: str
    width: int


# The shape columns of bench lion and bench bigs: L and B.
LENGTH_BATCH = (ShapeColumn("length", "L", 6), ShapeColumn("batch", "B", 4))
# The agreement column of the ops measured against a reference on the same inputs (bigs, lstm, lstmp).
MAX_ABS_DIFF = (Column("max_abs_diff", "max|diff|", 10, ".1e"),)
DEVICES = ("cuda", "cpu")


@dataclass(frozen=True)
class OpBenchmark:
    """One op benchmark (the fields: the module docstring).

    ``module`` is the module of this package whose ``measure_case(case, report)`` and ``estimate_bytes(case, mode)``
    measure one case and estimate its peak for harness.py (a case's "op" names its ``OpBenchmark``); None for a
    benchmark that times its cases itself, in its own process (crf). ``deferred`` methods run after the others at
    every point of the grid (their first call compiles for minutes)."""

    name: str
    module: str | None
    methods: dict[str, tuple[str, str | None]]
    default_methods: dict[str, tuple[str, ...]]
    always: tuple[str, ...] = ()
    grid: dict = field(default_factory=dict)
    grid_by_device: dict[str, dict] = field(default_factory=dict)
    ratios: tuple[Ratio, ...] = ()
    extra: tuple[Column, ...] = ()
    shape: tuple[ShapeColumn, ...] = LENGTH_BATCH
    deferred: tuple[str, ...] = ()

    def __post_init__(self):
        for device, methods in self.default_methods.items():
            unknown = [m for m in methods if m not in self.methods]
            if device not in DEVICES or unknown:
                raise ValueError(f"OpBenchmark {self.name!r}: default methods on {device!r} must be among its "
                                 f"methods {list(self.methods)} on {DEVICES}, got {list(methods)}")
        for name in (*self.always, *(r.baseline for r in self.ratios), *self.deferred):
            if name not in self.methods and name not in self.always:
                raise ValueError(f"OpBenchmark {self.name!r}: {name!r} is not one of its methods {list(self.methods)}")

    def backend_form(self, method: str) -> tuple[str, str | None]:
        """(backend, form) of ``method``."""
        return self.methods[method]

    def chosen(self, named, device: str) -> list[str]:
        """The methods to measure: ``always`` first, then ``named`` (--methods; the device's defaults without it)
        that are methods of this benchmark, each once; the baselines of the ratio columns before the others."""
        picked = list(dict.fromkeys(named or self.default_methods[device]))
        methods = [*self.always, *(m for m in picked if m in self.methods and m not in self.always)]
        baselines = {r.baseline for r in self.ratios}
        return sorted(methods, key=lambda m: m not in baselines)  # stable: the order otherwise kept

    def defaults(self, device: str) -> dict:
        """The grid options' defaults on ``device``: ``grid`` and ``grid_by_device[device]``."""
        return {**self.grid, **self.grid_by_device.get(device, {})}


# bench lion: `bizoo.kernels.lion.lion_attention` (backend, form); "sdpa" is torch's softmax attention, "fla-causal"
# fla-core's causal chunk kernel `chunk_simple_gla` (one direction: a yardstick).
LION = OpBenchmark(
    name="lion",
    module="lion",
    methods={
        "sdpa": ("torch", "softmax"),
        "reference-attention": ("reference", "attention"),
        "reference-chunk": ("reference", "chunk"),
        "reference-rnn": ("reference", "rnn"),
        "reference-auto": ("reference", "auto"),
        "triton-chunk": ("triton", "chunk"),
        "triton-parallel": ("triton", "attention"),
        "triton-auto": ("triton", "auto"),
        "fla-causal": ("fla", "causal-chunk"),
    },
    default_methods={
        "cuda": ("sdpa", "reference-attention", "reference-chunk", "triton-chunk", "triton-parallel", "triton-auto"),
        # On a CPU Triton runs only in its interpreter (TRITON_INTERPRET=1), whose timings mean nothing: name the
        # triton-* methods in --methods to run them anyway (the tests do, on tiny shapes).
        "cpu": ("sdpa", "reference-attention", "reference-chunk"),
    },
    grid={"lengths": [512, 1024, 2048, 4096, 8192, 16384], "tokens": 32768},
    ratios=(Ratio("sdpa", "sdpa", "sdpa", 12), Ratio("reference-chunk", "reference_chunk", "chunk", 13)),
    # fla-core compiles and autotunes its kernels at the first call: about 25 s for the forward and 2 minutes for
    # forward+backward on an H200 (a cold Triton cache).
    deferred=("fla-causal",),
)

# bench crf: the backends of `bizoo.kernels.crf`, each against pytorch-crf ("torchcrf"), always measured.
CRF = OpBenchmark(
    name="crf",
    module=None,  # crf.py times both ops in its own process (no peak memory, no child process)
    methods={"reference": ("reference", None), "scan": ("scan", None), "auto": ("auto", None),
             "triton": ("triton", None)},
    default_methods={"cuda": ("reference", "scan", "auto", "triton"),
                     "cpu": ("reference", "scan", "auto")},  # on a CPU: name triton to run it (the interpreter)
    always=("torchcrf",),
    grid={"batch_sizes": [1, 32, 64], "tags": [9, 17, 45], "lengths": [32, 128, 512]},
    ratios=(Ratio("torchcrf", "torchcrf", "x", 6),),
)

# bench bigs: `bizoo.kernels.ssm.bidirectional_ssm` (backend, form); "fft-baseline" is torch.fft as the original BiGS
# code calls it, the baseline of every ratio.
BIGS = OpBenchmark(
    name="bigs",
    module="bigs",
    methods={
        "fft-baseline": ("torch", "fft"),
        "reference-fft": ("reference", "fft"),
        "reference-toeplitz": ("reference", "toeplitz"),
        "reference-recurrent": ("reference", "recurrent"),
        "reference-auto": ("reference", "auto"),
        "triton": ("triton", "auto"),
    },
    default_methods={
        "cuda": ("fft-baseline", "reference-fft", "reference-toeplitz", "reference-recurrent", "reference-auto",
                 "triton"),
        # On a CPU the O(L²) Toeplitz form takes minutes at L = 16384 (name it in --methods to run it), and Triton
        # runs only in its interpreter: its row says "unavailable" unless --methods names it.
        "cpu": ("fft-baseline", "reference-fft", "reference-recurrent", "reference-auto", "triton"),
    },
    always=("fft-baseline",),
    # On a GPU B·L is fixed; on a CPU B = 1, so that the time shows its growth with L.
    grid_by_device={"cuda": {"lengths": [128, 512, 4096, 16384], "tokens": 16384},
                    "cpu": {"lengths": [512, 4096, 16384], "batch": 1}},
    ratios=(Ratio("fft-baseline", "fft_baseline", "base", 13),),
    extra=MAX_ABS_DIFF,
)

# ELMo's LSTMP sizes, (cells, projection) per direction: the original model (ElmoConfig's defaults) and the medium
# and small ones AllenNLP released; every one clips cells and projections at 3 and reads the token vector (I = P).
ELMO_SIZES = {"original": (4096, 512), "medium": (2048, 256), "small": (1024, 128)}
ELMO_CLIP = 3.0

# bench lstm, part "lstm": `bizoo.kernels.lstm.bilstm` (backend, form) against torch.nn.LSTM on the whole
# right-padded tensor ("nn-lstm"); "nn-lstm-packed" is the same module on packed sequences. "triton" is the op's
# Triton schedule (form "steps": one batched product and one fused kernel per step). Its methods and LSTMP's are the
# choices of --methods of bench lstm.
LSTM = OpBenchmark(
    name="lstm",
    module="lstm",
    methods={
        "nn-lstm": ("torch", "nn.LSTM"),
        "nn-lstm-packed": ("torch", "nn.LSTM packed"),
        "triton": ("triton", "steps"),
        "native": ("reference", "native"),
        "loop": ("reference", "loop"),
        "autograd-loop": ("reference", "autograd"),
    },
    # On a CPU the triton row says "unavailable" unless --methods names triton (it then runs in the interpreter).
    default_methods={"cuda": ("triton", "native", "loop"), "cpu": ("triton", "native", "loop")},
    always=("nn-lstm",),
    grid_by_device={"cuda": {"batch_sizes": [32, 128], "lengths": [32, 128, 512], "hidden": [100, 200, 256, 512]},
                    "cpu": {"batch_sizes": [32], "lengths": [32, 128], "hidden": [100, 256]}},
    ratios=(Ratio("nn-lstm", "nn_lstm", "nn", 11),),
    extra=MAX_ABS_DIFF,
    shape=(ShapeColumn("batch", "B", 4), ShapeColumn("hidden", "H", 5), ShapeColumn("length", "L", 5)),
)

# bench lstm, part "lstmp": ELMo's clipped LSTM with a projection (which torch.nn.LSTM cannot clip): the step
# schedule and the loop with its backward pass written out against the loop differentiated by autograd, and
# against the yardstick "nn-lstm-proj": torch.nn.LSTM(proj_size=P) (cuDNN on a GPU) on the whole padded tensor,
# without clipping (not the same op: the speed a clipped LSTMP should approach). Its cases are bench lstm's (module
# "lstm").
LSTMP = OpBenchmark(
    name="lstmp",
    module="lstm",
    methods={**{name: LSTM.methods[name] for name in ("triton", "loop", "autograd-loop")},
             "nn-lstm-proj": ("torch", "nn.LSTM proj_size")},
    default_methods={"cuda": ("triton", "loop"), "cpu": ("triton", "loop")},
    always=("autograd-loop", "nn-lstm-proj"),
    grid_by_device={"cuda": {"elmo_sizes": list(ELMO_SIZES), "elmo_batch_sizes": [32, 128], "elmo_lengths": [20, 64]},
                    "cpu": {"elmo_sizes": ["small"], "elmo_batch_sizes": [32], "elmo_lengths": [20]}},
    ratios=(Ratio("autograd-loop", "loop", "loop", 13), Ratio("nn-lstm-proj", "nn_lstm_proj", "nnP", 12)),
    extra=MAX_ABS_DIFF,
    shape=(ShapeColumn("elmo", "ELMo", 8), ShapeColumn("hidden", "cells", 5), ShapeColumn("projection", "P", 4),
           ShapeColumn("batch", "B", 4), ShapeColumn("length", "L", 4)),
)

#: The op benchmarks by name; a case's "op" is one of these names.
OPS = {bench.name: bench for bench in (LION, CRF, BIGS, LSTM, LSTMP)}


@dataclass(frozen=True)
class ModelCase:
    """A model of `bizoo bench models`: its model type and config overrides, the model it is measured against in the
    same run (``baseline``: None for a baseline or a model without one), whether it is trained as a tagger (a tag per
    token, the CRF's loss) or as a masked LM, and why it is not compiled (None: it is)."""

    name: str
    model_type: str
    overrides: dict = field(default_factory=dict)
    baseline: str | None = None
    tagger: bool = False
    not_compiled: str | None = None


# "bert-sdpa" (transformers' BertForMaskedLM with SDPA) and "lstm-crf" (torch.nn.LSTM + pytorch-crf) are the
# baselines, not bizoo's models. ELMo has none: its LSTM clips its cells and has a projection, which torch.nn.LSTM
# cannot clip (`bench lstm --part lstmp` times that op against the per-step loop instead). lstm-crf runs eager only,
# as it is used: dynamo refuses to trace a torch.nn.LSTM ("Attempted to wrap RNN, GRU, or LSTM", an error under
# fullgraph=True), and pytorch-crf's decode reads each tag back with .item().
MODELS = {case.name: case for case in (
    ModelCase("bert-sdpa", "bert"),
    ModelCase("lion-d", "lion", {"lion_variant": "d"}, baseline="bert-sdpa"),
    ModelCase("lion-s", "lion", {"lion_variant": "s"}, baseline="bert-sdpa"),
    ModelCase("bigs", "bigs", baseline="bert-sdpa"),
    ModelCase("lstm-crf", "lstm_crf", tagger=True,
              not_compiled="not compiled: dynamo refuses torch.nn.LSTM, pytorch-crf's decode calls .item()"),
    ModelCase("bilstm-crf", "bilstm_crf", baseline="lstm-crf", tagger=True),
    ModelCase("elmo", "elmo"),
)}


def model_order(chosen) -> list[str]:
    """The models of ``--models`` with their baselines, in MODELS' order (a baseline before its models)."""
    wanted = set(chosen) | {MODELS[name].baseline for name in chosen if MODELS[name].baseline}
    return [name for name in MODELS if name in wanted]
