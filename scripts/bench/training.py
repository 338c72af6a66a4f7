"""`bizoo bench lion-model` and `bizoo bench bigs-model`: masked-LM training throughput of a whole model against BERT;
and the timing of whole models that `bizoo bench models` shares (``train_steps``, ``forward_latency``).

What it measures: tokens/s of optimizer steps (forward + backward + AdamW step, B·L = --tokens-per-step tokens per
step, 15% of the positions labelled; the median of --steps after --warmup-steps untimed ones, wall clock around
each step, synchronised on a GPU; bf16 autocast on a GPU unless --no-amp), and the peak memory on a GPU:

* lion-model: LION-D (``lion_variant='d'``) at BERT-base size by default (12 layers x 768, 12 heads);
* bigs-model: BiGS as the released "large-512" model (23 layers x 1024, gate width 3072, N = 64) with
  max_position_embeddings = L, at L = 128, 512, 4096; --layers, --hidden and --heads shrink both models for a CPU.

Against which baseline: ``transformers.BertForMaskedLM`` with SDPA attention of the same width (BERT-base, or
BERT-large: 24 layers, 16 heads, feed-forward 4096), measured in the same run at every L; the contender's row gives
its tokens/s / BERT's (> 1: it trains faster). No floor is computed: the ratio to BERT is the result.
"""

from __future__ import annotations

import argparse
import statistics
import time

from ..lib.command import report
from ..lib.machine import machine_name
from .harness import (
    MiB,
    add_device_arguments,
    batch_for,
    check_positive,
    release_cuda_memory,
    resolve_device,
    short,
    time_runs,
)
from .lion import triton_tuning
from .report import write_json

# The token ids of a benchmark batch are drawn from FIRST_TOKEN_ID to V - 1: the ids below are the special tokens
# ([PAD], [UNK], [CLS], [SEP], [MASK] in BERT's vocabulary), so --vocab-size must be above it.
FIRST_TOKEN_ID = 5
BIGS_PRESET = "large-512"  # the BiGS shape of bench bigs-model (max_position_embeddings set to each L)
BERT_LARGE_LAYERS = 24


def add_model_arguments(p: argparse.ArgumentParser, model: str, lengths: list[int], layers: int | None, hidden: int,
                        heads: int) -> None:
    """The arguments of a masked-LM training comparison of ``model`` against BERT (lion-model, bigs-model, and the
    sizes of bench models)."""
    add_device_arguments(p)
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


def add_lion_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench lion-model."""
    add_model_arguments(p, "LION", [512, 4096], layers=12, hidden=768, heads=12)
    p.add_argument("--form", choices=["auto", "attention", "chunk", "rnn"], default="auto",
                   help="LION lion_form (default: %(default)s; chunk where 'auto' is not available yet)")
    p.add_argument("--intermediate", type=int, default=None, help="feed-forward size (default: 4 × hidden)")


def add_bigs_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench bigs-model."""
    from ...configuration.configuration_bigs import BIGS_FORMS

    add_model_arguments(p, "BiGS", [128, 512, 4096], layers=None, hidden=1024, heads=16)
    p.add_argument("--form", choices=BIGS_FORMS, default="auto", help="BiGS bigs_form (default: %(default)s)")


# ----------------------------------------------------------------------------------------------------------------
# Timing a whole model: training steps, an inference forward
# ----------------------------------------------------------------------------------------------------------------


def bert_builder(args, layers: int, intermediate: int):
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
    ids = torch.randint(FIRST_TOKEN_ID, vocab_size, (batch, length), generator=g)  # (B, L)
    inputs = {"input_ids": ids, **(extra_inputs(ids) if extra_inputs else {})}
    if labels and tags:
        inputs["labels"] = torch.randint(0, tags, (batch, length), generator=g)  # (B, L)
    elif labels:
        chosen = torch.rand(batch, length, generator=g) < 0.15
        chosen[:, 0] = True  # at least one label per row
        inputs["labels"] = torch.where(chosen, ids, torch.full_like(ids, -100))  # (B, L): 15% of the positions
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def train_steps(build, length: int, batch: int, vocab_size: int, device: str, steps: int, warmup: int,
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
            result["host_sync"] = f"failed: {short(err, 100)}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result


def forward_latency(build, length: int, batch: int, vocab_size: int, device: str, runs: int, warmup: int, amp: bool,
                    extra_inputs=None, wrap=None) -> dict:
    """Build the model (``build(length)``) in eval mode and time one forward pass without labels on a batch of B rows
    of L tokens (``_model_inputs``) with ``harness.time_runs`` (CUDA events on a GPU, perf_counter on a CPU; under
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

    timed = time_runs(forward, [], False, None, warmup, runs, device == "cuda", cpu_memory=False)
    return {"status": "ok", "model_class": type(model).__name__, "latency_ms": timed["median_ms"],
            "min_ms": timed["min_ms"]}


def model_settings(args, device: str) -> dict:
    """Steps, warm-up steps, autocast and its description for a training comparison, after checking the sizes."""
    check_positive(lengths=args.lengths, tokens_per_step=args.tokens_per_step, steps=args.steps, layers=args.layers,
                   hidden=args.hidden, heads=args.heads, intermediate=getattr(args, "intermediate", None),
                   vocab_size=args.vocab_size)
    if args.vocab_size <= FIRST_TOKEN_ID:
        raise ValueError(f"--vocab-size must be > {FIRST_TOKEN_ID} (the token ids are drawn from {FIRST_TOKEN_ID} to "
                         f"V - 1, above the special ids), got {args.vocab_size}")
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


# ----------------------------------------------------------------------------------------------------------------
# A model against BERT: the table
# ----------------------------------------------------------------------------------------------------------------


def compare_models(args, device: str, settings: dict, models: dict, name: str, header: list[str], meta: dict) -> int:
    """Masked-LM training throughput of ``models`` (model name -> ``build(length)``; BERT, "bert-sdpa", first, the
    other the contender, called ``name`` in the text) at each of ``args.lengths`` with B·L = ``args.tokens_per_step``;
    prints the ``header`` lines and a table, writes the rows to ``args.json``. The contender's row gets
    ``speedup_vs_bert`` = its tokens/s / BERT's."""
    import torch

    steps, warmup = settings["steps"], settings["warmup_steps"]
    report(f"Masked-LM training throughput (forward + backward + AdamW step), {name} vs BERT (SDPA attention)")
    report(f"machine: {machine_name(device)}")
    for line in header:
        report(line)
    report(f"median of {steps} steps after {warmup} warm-up step(s)")
    ratio_label = f"{name}/BERT"
    head = (f"{'L':>6} {'B':>4} {'model':<10} {'params':>8} {'step ms':>9} {'tokens/s':>10} {'peak MiB':>9} "
            f"{ratio_label:>10}")
    report(head + "\n" + "-" * len(head))
    meta = {"op": meta["op"], "machine": machine_name(device), "device": device,
            "precision": settings["precision"], **meta, "vocab_size": args.vocab_size,
            "tokens_per_step": args.tokens_per_step, "steps": steps, "warmup_steps": warmup}
    rows = []
    for length in args.lengths:
        batch = batch_for(length, args.tokens_per_step)
        group = {}
        for model, build in models.items():
            try:
                result = train_steps(build, length, batch, args.vocab_size, device, steps, warmup, settings["amp"])
            except torch.OutOfMemoryError:
                result = {"status": "oom"}
            except Exception as err:  # noqa: BLE001 - a row records the failure
                result = {"status": f"failed: {short(err)}"}
            release_cuda_memory()
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
            report(" ".join(cells))
        rows += list(group.values())
        write_json(args.json, {**meta, "rows": rows})
    report(f"{ratio_label}: {name} tokens/s / BERT tokens/s (> 1: {name} trains faster)")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# bench lion-model, bench bigs-model
# ----------------------------------------------------------------------------------------------------------------


def _lion_form(args) -> tuple[str, str | None]:
    """The lion_form to use and a note: "auto" falls back to "chunk" where the config or the op lacks it. The op is
    asked with a tiny call of its reference backend on a CPU (form "auto" is the dispatcher's, whatever the backend):
    on a GPU a tiny call would compile (and autotune) Triton kernels at a shape the benchmark never runs."""
    if args.form != "auto":
        return args.form, None
    from ... import LionConfig

    try:
        LionConfig(lion_form="auto")
    except ValueError as err:
        return "chunk", f"lion_form='auto' not accepted by LionConfig ({short(err, 100)}): chunk instead"
    import torch

    from ...kernels.lion import lion_attention

    x = torch.rand(1, 1, 32, 16) + 0.1  # (B, H, L, D)
    try:
        lion_attention(x, x, x, None, form="auto", backend="reference")
    except Exception as err:  # noqa: BLE001
        return "chunk", f"form='auto' not available in the op ({short(err, 100)}): chunk instead"
    return "auto", None


def run_lion_model(args) -> int:
    device = resolve_device(args)
    settings = model_settings(args, device)
    form, note = _lion_form(args)
    intermediate = args.intermediate or 4 * args.hidden

    def lion(length: int):
        from ... import LionConfig, LionForMaskedLM

        config = LionConfig(lion_variant="d", kernel_backend=args.backend, lion_form=form,
                            sparse_prediction=not args.dense_logits, hidden_size=args.hidden,
                            num_hidden_layers=args.layers, num_attention_heads=args.heads,
                            intermediate_size=intermediate, max_position_embeddings=length, vocab_size=args.vocab_size)
        return LionForMaskedLM(config)

    autotune, tuning = triton_tuning()
    triton = device == "cuda" and args.backend != "reference"  # LION's kernels are Triton's there
    header = [
        f"dtype: {settings['precision']}; shapes: {args.layers} layers x {args.hidden}, {args.heads} heads, "
        f"feed-forward {intermediate}, vocabulary {args.vocab_size}; B·L = {args.tokens_per_step} tokens per step "
        "(B = tokens // L); 15% of the positions labelled",
        f"LION: lion_variant='d', lion_form={form!r}, kernel_backend={args.backend!r}, "
        f"{'dense' if args.dense_logits else 'sparse (masked positions only)'} MLM logits"
        + (f"\nnote: {note}" if note else "") + "; BERT: full MLM logits"
        + (f"\nLION's Triton kernels: {tuning}" if triton else ""),
    ]
    meta = {"op": "lion-model", "layers": args.layers, "hidden": args.hidden, "heads": args.heads,
            "intermediate": intermediate, "lion_form": form, "kernel_backend": args.backend, "note": note,
            "triton_autotune": autotune if triton else None}
    models = {"bert-sdpa": bert_builder(args, args.layers, intermediate), "lion-d": lion}
    return compare_models(args, device, settings, models, "LION", header, meta)


def run_bigs_model(args) -> int:
    device = resolve_device(args)
    settings = model_settings(args, device)
    from ...configuration.configuration_bigs import PRESETS

    preset = PRESETS[BIGS_PRESET]
    bigs_layers = args.layers or preset["num_hidden_layers"]
    bert_layers = args.layers or BERT_LARGE_LAYERS
    # The large models' proportions at any width: the BiGS gate 3 × hidden (3072 at 1024), BERT's feed-forward 4 ×.
    gate = preset["intermediate_size"] * args.hidden // preset["hidden_size"]
    feed_forward = 4 * args.hidden

    def bigs(length: int):
        from ... import BiGSConfig, BiGSForMaskedLM

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
    models = {"bert-sdpa": bert_builder(args, bert_layers, feed_forward), "bigs": bigs}
    return compare_models(args, device, settings, models, "BiGS", header, meta)
