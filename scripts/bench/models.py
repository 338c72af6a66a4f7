"""`bizoo bench models`: every model, eager and under ``torch.compile(fullgraph=True)``, training and inference.

What it measures, for each model of ``registry.MODELS`` named by --models (inductor on a GPU, aot_eager on a CPU;
dynamo's caches reset before each compiled run): training tokens/s (forward + backward + AdamW step, B·L tokens per
step: ``training.train_steps``) and inference latency (median ms of one forward in eval mode under torch.no_grad,
--latency-batch rows of L tokens: ``training.forward_latency``, CUDA events on a GPU, perf_counter on a CPU); on a
GPU also whether a training step, eager and compiled, runs under ``torch.cuda.set_sync_debug_mode("error")`` (no host
sync; an eager masked LM with ``sparse_prediction``, the default, reads the number of masked positions once a step).
LION and BiGS are masked LMs of --layers x --hidden; the BiLSTM-CRF is a tagger trained with its CRF loss at Ma &
Hovy's sizes (100-d words, a character CNN, --tagger-layers x --tagger-hidden units per direction, --tags tags);
ELMo is a masked LM at --elmo-size.

Against which baseline, measured in the same run whether --models names it or not: BERT (SDPA) of the same size for
LION and BiGS; for the BiLSTM-CRF the same tagger written with torch.nn.LSTM (cuDNN on a GPU), a linear layer and
pytorch-crf (``lstm_crf_baseline``), which runs eager only (dynamo refuses nn.LSTM); ELMo has none. The table gives
compiled/eager ratios and each model's ratios to its baseline in both modes (> 1: faster). No floor is computed.
"""

from __future__ import annotations

import argparse

from ..lib.command import report
from ..lib.machine import machine_name
from .harness import batch_for, check_positive, release_cuda_memory, resolve_device, short
from .registry import ELMO_SIZES, MODELS, model_order
from .report import write_json
from .training import add_model_arguments, bert_builder, forward_latency, model_settings, train_steps

TAGGER_CHARS_PER_WORD = 8  # the taggers' char_ids; ELMo reads max_characters_per_token (50) per word, as bilm-tf


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of bench models."""
    add_model_arguments(p, "each model", [512], layers=12, hidden=768, heads=12)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="MODEL",
                   help=f"from {', '.join(MODELS)} (default: all); each model's baseline runs too: bert-sdpa "
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


# ----------------------------------------------------------------------------------------------------------------
# The models and the tagger baseline
# ----------------------------------------------------------------------------------------------------------------


def _tagger_config(args):
    """The BiLSTM-CRF tagger of bench models: --tagger-layers x --tagger-hidden units per direction, --tags tags with
    the CRF, --vocab-size words; the other sizes (100-d word embeddings, a character CNN of 30 filters over 30-d
    character embeddings, dropout 0.5) are BiLstmCrfConfig's defaults, Ma & Hovy's."""
    from ... import BiLstmCrfConfig

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
            mask = torch.ones(B, L, dtype=torch.bool, device=input_ids.device)  # (B, L): every word real
            if labels is None:
                return self.crf.decode(emissions, mask)  # B lists of L tags
            loss = -self.crf(emissions, labels, mask, reduction="mean")
            return TokenClassifierOutput(loss=loss, logits=emissions)

    return LstmCrfTagger()


def _model_builder(name: str, args):
    """length -> the model ``name`` at the sizes the arguments give, and its extra inputs (char_ids for the
    word+character models: a fixed function of each word id). BERT, LION and BiGS: masked LMs of --layers x --hidden
    (BERT: ``training.bert_builder``); ELMo: a masked LM at --elmo-size (``_elmo_config``); BiLSTM-CRF and its
    baseline: taggers (``_tagger_config``)."""
    case = MODELS[name]
    if case.model_type == "bert":
        return bert_builder(args, args.layers, 4 * args.hidden), None
    if case.model_type in ("bilstm_crf", "lstm_crf"):
        build, chars_per_word = _tagger_builder(args, baseline=case.model_type == "lstm_crf"), TAGGER_CHARS_PER_WORD
    elif case.model_type == "elmo":
        build, chars_per_word = _elmo_builder(args), _elmo_config(args).max_characters_per_token
    else:
        return _masked_lm_builder(case.model_type, case.overrides, args), None
    return build, _char_inputs(args.vocab_size, chars_per_word)


def _char_inputs(vocab_size: int, chars_per_word: int):
    """ids (B, L) -> {"char_ids": (B, L, chars_per_word)}: a fixed random spelling of each word id."""
    import torch

    table = torch.randint(5, 60, (vocab_size, chars_per_word), generator=torch.Generator().manual_seed(0))  # (V, C)

    def chars(ids):
        return {"char_ids": table[ids]}  # (B, L, C)

    return chars


def _masked_lm_builder(model_type: str, overrides: dict, args):
    """length -> a masked LM of ``model_type`` (LION, BiGS) with --layers x --hidden, --heads, feed-forward 4 x hidden
    where it has these fields, max_position_embeddings = L."""

    def build(length: int):
        from transformers import AutoModelForMaskedLM

        from ... import get_spec

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
    from ... import ElmoConfig

    cells, projection = ELMO_SIZES[args.elmo_size]
    return ElmoConfig(vocab_size=args.vocab_size, lstm_size=cells, projection_size=projection,
                      kernel_backend=args.backend, sparse_prediction=not args.dense_logits)


def _elmo_builder(args):
    def build(length: int):
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM.from_config(_elmo_config(args))

    return build


# ----------------------------------------------------------------------------------------------------------------
# One row: a model eager and compiled, training and inference; its ratios
# ----------------------------------------------------------------------------------------------------------------


def _attempt(measure) -> dict:
    """``measure()``, or a result whose status says why not: "oom" or "failed: ..." (the row records it, the
    benchmark goes on)."""
    import torch

    try:
        return measure()
    except torch.OutOfMemoryError:
        result = {"status": "oom"}
    except Exception as err:  # noqa: BLE001 - a benchmark row records any failure and goes on
        result = {"status": f"failed: {short(err)}"}
    release_cuda_memory()
    return result


def _value(result: dict | None, key: str) -> float | None:
    return result[key] if result and result.get("status") == "ok" else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom is not None else None


def models_ratios(row: dict, base: dict | None) -> None:
    """Set ``row["compiled_speedup"]`` (training: compiled tokens/s / eager tokens/s; latency: eager ms / compiled ms)
    and, against the row ``base`` of its baseline, ``row["vs_baseline"]``: per mode, the model's tokens/s / the
    baseline's and the baseline's ms / the model's (> 1: the model is faster). A baseline that is not compiled
    (``ModelCase.not_compiled``) gives its eager runs to the compiled ratios ("compiled_against": "eager"). None
    where a run did not happen or failed."""
    train, latency = row["train"], row["latency"]
    row["compiled_speedup"] = {
        "train": _ratio(_value(train["compiled"], "tokens_per_s"), _value(train["eager"], "tokens_per_s")),
        "latency": _ratio(_value(latency["eager"], "latency_ms"), _value(latency["compiled"], "latency_ms")),
    }
    if base is None:
        return
    against = "eager" if MODELS[base["model"]].not_compiled else "compiled"
    row["vs_baseline"] = {"compiled_against": against}
    for mode, base_mode in (("eager", "eager"), ("compiled", against)):
        row["vs_baseline"][f"train_{mode}"] = _ratio(_value(train[mode], "tokens_per_s"),
                                                     _value(base["train"][base_mode], "tokens_per_s"))
        row["vs_baseline"][f"latency_{mode}"] = _ratio(_value(base["latency"][base_mode], "latency_ms"),
                                                       _value(latency[mode], "latency_ms"))


def mlm_logits(name: str, dense_logits: bool) -> dict[str, str]:
    """What a masked LM of bench models projects onto the vocabulary in a training step, eager and compiled: BERT
    every position; bizoo's models with ``sparse_prediction`` (the default, off with --dense-logits) only the masked
    positions in eager mode, every position while torch.compile traces them (``heads.masked_lm_loss_and_logits``:
    the number of masked positions is a value a graph cannot depend on). So without --dense-logits, a bizoo model's
    eager training does less work than its compiled training and than BERT's."""
    sparse = MODELS[name].model_type != "bert" and not dense_logits
    return {"eager": "masked positions" if sparse else "every position", "compiled": "every position"}


def measure_model(name: str, args, length: int, batch: int, device: str, timing: dict, backend: str) -> dict:
    """One row of bench models: ``name`` trained (``training.train_steps``: B·L tokens per step) and run for inference
    (``training.forward_latency``: --latency-batch rows of L tokens), each eager then under
    ``torch.compile(fullgraph=True, backend=backend)`` (dynamo's caches reset before each compiled run; each
    training also runs one step under ``torch.cuda.set_sync_debug_mode("error")`` on CUDA). Each run's result has its
    own status; the row's is the first that is not "ok" (a model that is not compiled: no failure)."""
    import torch

    case = MODELS[name]
    build, chars = _model_builder(name, args)
    tags = args.tags if case.tagger else None
    steps, runs, amp = timing["steps"], timing["runs"], timing["amp"]

    def train(wrap=None):
        warmup = timing["compiled_warmup" if wrap else "warmup"]
        return train_steps(build, length, batch, args.vocab_size, device, steps, warmup, amp, chars, wrap=wrap,
                           sync_check=True, tags=tags)

    def latency(wrap=None):
        warmup = timing["compiled_warmup" if wrap else "warmup"]
        return forward_latency(build, length, args.latency_batch, args.vocab_size, device, runs, warmup, amp, chars,
                               wrap=wrap)

    def compiled(model):
        return torch.compile(model, fullgraph=True, backend=backend)

    row = {"model": name, "task": "tagging (CRF)" if tags else "masked LM", "baseline": case.baseline,
           "length": length, "batch": batch, "latency_batch": args.latency_batch,
           "train": {"eager": _attempt(train)}, "latency": {"eager": _attempt(latency)}}
    if not tags:
        row["train_logits"] = mlm_logits(name, args.dense_logits)
    if case.not_compiled:
        row["train"]["compiled"] = row["latency"]["compiled"] = {"status": case.not_compiled}
    else:
        torch._dynamo.reset()
        row["train"]["compiled"] = _attempt(lambda: train(compiled))
        torch._dynamo.reset()
        row["latency"]["compiled"] = _attempt(lambda: latency(compiled))
        torch._dynamo.reset()
    counted = [row[part][mode] for part in ("train", "latency") for mode in ("eager", "compiled")
               if mode == "eager" or not case.not_compiled]
    row["status"] = next((r["status"] for r in counted if r["status"] != "ok"), "ok")
    return row


# ----------------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------------

# bench models' table after L, B and the model: (label, width, what the cell shows); the group each belongs to.
MODELS_COLUMNS = (
    ("baseline", 10, "baseline"),
    ("eager", 10, "train eager"), ("compiled", 10, "train compiled"), ("c/e", 7, "train speedup"),
    ("vs base", 8, "train vs eager"), ("c vs base", 10, "train vs compiled"),
    ("eager", 9, "latency eager"), ("compiled", 9, "latency compiled"), ("e/c", 7, "latency speedup"),
    ("vs base", 8, "latency vs eager"), ("c vs base", 10, "latency vs compiled"),
)
MODELS_GROUPS = ((1, 6), (6, 11))  # the training and the inference columns: (first, end) in MODELS_COLUMNS


def _cells(row: dict) -> dict[str, str]:
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


def _table_head(latency_batch: int) -> str:
    lead = f"{'L':>6} {'B':>4} {'model':<11}"
    labels = [f"{label:>{width}}" for label, width, _ in MODELS_COLUMNS]
    titles = ("training tokens/s", f"inference ms, batch {latency_batch}")
    groups = ""
    for title, (first, end) in zip(titles, MODELS_GROUPS):
        start = len(lead) + sum(len(cell) + 1 for cell in labels[:first])
        width = sum(len(cell) + 1 for cell in labels[first:end])
        groups = groups.ljust(start) + " " + f" {title} ".center(width - 1, "-")
    line = " ".join([lead, *labels]) + "  sync e/c"
    return f"{groups}\n{line}\n{'-' * len(line)}"


def _line(row: dict) -> str:
    """A table line of bench models, then a line per run that failed (with its status)."""
    cells = _cells(row)
    lead = f"{row['length']:>6} {row['batch']:>4} {row['model']:<11}"
    body = " ".join(f"{cells[key]:>{width}}" for _, width, key in MODELS_COLUMNS)
    syncs = {mode: row["train"][mode].get("host_sync", "-") for mode in ("eager", "compiled")}
    lines = [f"{lead} {body}  " + "/".join(sync.split(":")[0].replace("failed", "fail") for sync in syncs.values())]
    for part in ("train", "latency"):
        for mode, result in row[part].items():
            if result["status"] != "ok" and not (mode == "compiled" and MODELS[row["model"]].not_compiled):
                lines.append(f"{'':>12} {row['model']} {part} {mode}: {result['status']}")
    for mode, sync in syncs.items():
        if sync.startswith("failed"):
            lines.append(f"{'':>12} {row['model']} train {mode} host sync {sync}")
    return "\n".join(lines)


def run(args) -> int:
    """Every model of ``--models`` and its baseline (``ModelCase.baseline``): training tokens/s and inference
    latency, each eager and under ``torch.compile(fullgraph=True)`` (``measure_model``), the ratios of compiled to
    eager and of each model to its baseline in the same mode (``models_ratios``), at each of --lengths; one table
    line per model as it is measured, the rows as JSON (--json, rewritten after each row)."""
    device = resolve_device(args)
    settings = model_settings(args, device)
    check_positive(tagger_hidden=args.tagger_hidden, tagger_layers=args.tagger_layers, tags=args.tags,
                   latency_batch=args.latency_batch, latency_runs=args.latency_runs)
    cuda = device == "cuda"
    # A compiled model's warm-up compiles it, and its second call may compile once more: the first call fills a
    # cache that the first graph's guards read (the CRF head's tag constraints), so at least 2 warm-up runs.
    timing = {"steps": settings["steps"], "warmup": settings["warmup_steps"],
              "compiled_warmup": max(settings["warmup_steps"], 2), "runs": args.latency_runs or (20 if cuda else 3),
              "amp": settings["amp"]}
    backend = args.compile_backend or ("inductor" if cuda else "aot_eager")
    names = model_order(args.models)
    baselines = {name: MODELS[name].baseline for name in MODELS if MODELS[name].baseline}  # model -> its baseline
    tagger = _tagger_config(args)
    cells, projection = ELMO_SIZES[args.elmo_size]
    report(f"bench models: training tokens/s and inference latency, eager vs torch.compile(fullgraph=True, "
          f"backend={backend!r})")
    report(f"machine: {machine_name(device)}")
    warmups = f"after {timing['warmup']} (compiled: {timing['compiled_warmup']}) untimed"
    report(f"precision: {settings['precision']}; training: B·L = {args.tokens_per_step} tokens per step (B = tokens // "
          f"L), forward + backward + AdamW, median of {timing['steps']} steps {warmups}; inference: "
          f"{args.latency_batch} x L tokens, one forward in eval mode under torch.no_grad, median of {timing['runs']} "
          f"{warmups}")
    report(f"masked LMs (15% of the positions labelled), vocabulary {args.vocab_size}: bert-sdpa, lion-*, bigs "
          f"{args.layers} layers x {args.hidden}, {args.heads} heads, feed-forward {4 * args.hidden}, kernel_backend "
          f"{args.backend!r}; elmo {args.elmo_size} ({cells} cells projected to {projection}, 2 layers, "
          f"{_elmo_config(args).max_characters_per_token} characters per word)")
    if args.dense_logits:
        report("MLM logits: every model projects every position onto the vocabulary, eager and compiled "
               "(--dense-logits: the same work in every column)")
    else:
        report("MLM logits: lion-*, bigs and elmo (sparse_prediction) project only the masked positions onto the "
               "vocabulary in eager training, every position when compiled (a traced graph cannot depend on their "
               "number); bert-sdpa every position: their train c/e and vs base compare different work "
               "(--dense-logits: the same work)")
    report(f"taggers (a tag per word, {args.tags} tags, the CRF's loss), vocabulary {args.vocab_size}: bilstm-crf "
          f"(bizoo) and lstm-crf (torch.nn.LSTM + linear + pytorch-crf), {tagger.num_hidden_layers} layer(s) x "
          f"{tagger.hidden_size} per direction over {tagger.word_embedding_size}-d words + a character CNN of "
          f"{tagger.char_cnn_filters} filters ({TAGGER_CHARS_PER_WORD} characters per word)")
    report(_table_head(args.latency_batch))
    meta = {"op": "models", "machine": machine_name(device), "device": device, "backend": backend,
            "precision": settings["precision"], "vocab_size": args.vocab_size,
            "tokens_per_step": args.tokens_per_step, "steps": timing["steps"], "warmup": timing["warmup"],
            "compiled_warmup": timing["compiled_warmup"], "latency_runs": timing["runs"],
            "latency_batch": args.latency_batch, "layers": args.layers, "hidden": args.hidden, "heads": args.heads,
            "elmo_size": args.elmo_size, "tags": args.tags, "tagger_hidden": tagger.hidden_size,
            "tagger_layers": tagger.num_hidden_layers, "sparse_prediction": not args.dense_logits,
            "baselines": {name: base for name, base in baselines.items() if name in names}}
    rows = []
    for length in args.lengths:
        batch = batch_for(length, args.tokens_per_step)
        measured = {}  # name -> row at this length: the baselines' runs for the ratios
        for name in names:
            row = measure_model(name, args, length, batch, device, timing, backend)
            models_ratios(row, measured.get(MODELS[name].baseline))
            measured[name] = row
            rows.append(row)
            report(_line(row))
            write_json(args.json, {**meta, "rows": rows})
    models_of = {}  # baseline -> the models measured against it
    for name, base in baselines.items():
        if name in names:
            models_of.setdefault(base, []).append(name)
    summary = "; ".join(f"{base} for {', '.join(models)}" for base, models in models_of.items()) or "none"
    report("medians. c/e: compiled tokens/s / eager tokens/s, e/c: eager ms / compiled ms (> 1: compiling is faster)")
    report("vs base, c vs base: eager and compiled against the baseline in the same mode, tokens/s / the baseline's "
          f"and the baseline's ms / ms (> 1: the bizoo model is faster); baselines: {summary}"
          + ("; elmo has none" if "elmo" in names else ""))
    for name, base in baselines.items():
        if name in names and MODELS[base].not_compiled:
            report(f"{base} is {MODELS[base].not_compiled}: the c vs base of {name} is over {base}'s eager runs")
    if cuda:
        report('sync e/c: an eager and a compiled training step under torch.cuda.set_sync_debug_mode("error") ("ok": no '
               "host sync; an eager masked LM with sparse_prediction reads its number of masked positions: one sync)")
    return 0
