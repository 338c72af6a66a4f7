"""Pretrain a bizoo model with masked-LM (or ELMo with its biLM), on your text or on the bundled Shakespeare sample.

With no data argument it trains on the public-domain Shakespeare plays shipped inside the package, holding out
Macbeth for evaluation: it trains a WordPiece tokenizer, pretrains a small model for a few minutes on a CPU, then
saves model + tokenizer + model card, writes a loss-curve PNG and all_results.json (run_mlm.py's flat record:
train_*, eval_accuracy, eval_loss, perplexity), prints the held-out masked-token accuracy beside a
unigram baseline (always predicting the most frequent training token), and shows a few fill-mask predictions made
by `pipeline("fill-mask")` from the saved folder.

Sequences are packed to --max-length tokens inside each document (file) and never across documents; with
--line-by-line (run_mlm.py's --line_by_line) each non-empty line is one example instead, cut to --max-length, the
held-out text too.
Evaluation masks 15% of the held-out tokens (all replaced by [MASK], fixed by --seed; with --whole-word-mask 15% of the
words, all their pieces) and counts the exact hits.

--model-name-or-path CKPT (run_mlm.py's --model_name_or_path) continues pretraining a checkpoint, e.g. on text of
another domain: its model type, configuration (--model-config may change fields, such as dropout) and tokenizer are
kept, its masked-LM (biLM) head loaded or, if it has none, initialised; without it a new model is trained from
scratch (--model, --variant, --model-config, and a tokenizer trained on the text unless --tokenizer).

run_mlm.py's Hub and cache options work as there: --cache_dir (where Hub snapshots and datasets' files are cached),
--model_revision (of --model-name-or-path and --tokenizer), --token, --trust_remote_code and --overwrite_cache.

--text (run_mlm.py's --train_file) takes plain-text files, or one data file (.json/.jsonl, .csv, .tsv, .parquet) whose
--text-column holds the text, one document; --eval-text (--validation_file) likewise.

Models that read words and their characters (bilstm_crf, elmo) get a word+character tokenizer built from the training
words (the --vocab-size most frequent) instead of WordPiece; each block is a run of at most --max-length words
(<S> and </S> included for ELMo, whose tokenizer wraps every block in them), and a masked word's characters are
hidden too. --objective picks what is learnt: "mlm" (masked-LM, every model) or "bilm" (ELMo's native objective: a
forward LM predicts each next word and a backward LM each previous one; the model loads with
AutoModelForPreTraining); "auto" (the default) is "bilm" for elmo and "mlm" otherwise. A biLM run reports the
held-out forward and backward perplexities (full softmax) beside a unigram baseline's (the add-one smoothed
training word frequencies).

examples:
  bizoo pretrain --output-dir runs/lion                         # LION-S, shipped corpus, a few minutes
  bizoo pretrain --model lion --variant d --output-dir runs/lion-d --max-steps 2000
  bizoo pretrain --text corpus/*.txt --eval-text held_out.txt --model-config hidden_size=512 --output-dir runs/big
  bizoo pretrain --train_file train.jsonl --validation_file dev.jsonl --output-dir runs/jsonl  # run_mlm.py's spelling
  bizoo pretrain --model elmo --output-dir runs/elmo            # a small biLM: forward + backward LM
  bizoo pretrain --model-name-or-path runs/lion --text domain/*.txt --output-dir runs/lion-domain  # continued
  bizoo pretrain --model bilstm_crf --output-dir runs/bilstm    # masked-LM over words and their characters
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bizoo

from .lib.command import CommandError, command_main, listing, report, run_command
from .lib.data import read_text_files, shipped_corpus_files
from .lib.finetuning import resolve_model_source
from .lib.masking import EpochCallback, SeededExamples, SeededMaskingCollator, continuation_prefix, word_ids
from .lib.model_card import write_checkpoint_card
from .lib.model_defaults import model_defaults
from .lib.models import (
    BASELINES,
    MIN_VOCAB_SIZE,
    add_dtype_argument,
    build_wordchar_tokenizer,
    check_char_vocabulary,
    check_config_fields,
    check_mixed_precision,
    check_resume_dtype,
    config_fields,
    dtype_name,
    model_spec,
    note_stored_dtype,
    parse_model_config,
    pretrained_tokenizer,
    tokenizer_config_fields,
    variant_fields,
    weights_dtype,
)
from .lib.output_folders import check_output_dir, clear_previous_run, input_paths, staged_update
from .lib.results import ALL_RESULTS_FILE, all_results, record_results
from .lib.sources import HubOptions, hub_options
from .lib.dataset_readers import describe, is_data_file, load_splits, stream_text_lines
from .lib.dataset_readers import split_name as dataset_split_name
from .lib.streaming import MIN_BLOCK_LENGTH, StreamedBlocks, pack_blocks, sample_lines
from .lib.training import (
    Needed,
    OneValue,
    bool_flag,
    add_hub_arguments,
    add_training_arguments,
    build_on_first_process,
    check_in_turn,
    check_best_model_metric,
    check_hub_options,
    check_training_arguments,
    check_neftune,
    first_samples,
    input_checks_callback,
    max_length_padding,
    push_final_folder,
    resume_checkpoint,
    trainer_optimizers,
    training_arguments,
)
from .lib.wordpiece import train_wordpiece_tokenizer

PROG = "bizoo pretrain"

logger = logging.getLogger(__name__)

#: What the recorded held-out metrics are (the model card's metric names).
PRETRAINING_METRIC_NAMES = {
    "accuracy": "masked-token accuracy (held-out)", "perplexity": "masked-token perplexity (held-out)",
    "forward_perplexity": "forward LM perplexity (held-out)",
    "backward_perplexity": "backward LM perplexity (held-out)",
}
STREAM_BASELINE_BLOCKS = 2000  # with --stream, the unigram baseline counts tokens over the first blocks
# The small model of the default job: trains to a useful masked-LM in minutes on two CPU cores. A model type with a
# `pretrain_config` in lib/model_defaults.py (bilstm_crf, elmo) starts from that instead.
SMALL_MODEL = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
OBJECTIVES = ("auto", "mlm", "bilm")
DEFAULT_MODEL = "lion"  # --model without --model-name-or-path
DEFAULT_VOCAB_SIZE = 8000  # --vocab-size of a tokenizer trained here
#: What each objective's evaluation reports besides the loss (HeldOutAccuracy for mlm): --metric_for_best_model's
#: choices.
HELD_OUT_METRICS = {"mlm": ("accuracy",), "bilm": ()}
DEFAULT_EVAL_FRACTION = 0.05  # the share of the text held out without --eval-text (run_mlm.py's 5%)
FILL_MASK_EXAMPLES = (
    "To be, or not to [MASK], that is the question.",
    "O Romeo, Romeo! wherefore art thou [MASK]?",
    "Now is the winter of our [MASK].",
    "All the world's a [MASK].",
)


def comma_items(text: str) -> list[str]:
    """--config-overrides "hidden_size=64,num_hidden_layers=2" -> ["hidden_size=64", "num_hidden_layers=2"]."""
    return [item for item in text.split(",") if item.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", "--model-type", "--model_type", default=None,
        help=f"model type to pretrain: a bizoo model type, or the baseline {', '.join(BASELINES)} (transformers' "
        f"BertForMaskedLM, SDPA attention, the same small shape) (default: {DEFAULT_MODEL}; with "
        "--model-name-or-path, the checkpoint's)",
    )
    model.add_argument(
        "--model-name-or-path", "--model_name_or_path", default=None, metavar="CKPT",
        help="continue pretraining this checkpoint (a folder or a Hub model id): its model type, configuration and "
        "tokenizer; its masked-LM (biLM) head, or a new one if it has none",
    )
    model.add_argument(
        "--variant", default=None,
        help="named variant of the model, e.g. lit, d or s for LION (default: the model's default variant, s for LION)",
    )
    model.add_argument(
        "--model-config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="config fields to set (JSON values), e.g. hidden_size=512 num_hidden_layers=8; "
        f"unset fields default to a small model {SMALL_MODEL} (bilstm_crf: its config's defaults; elmo: a small "
        "biLM, 2 layers of 512 cells projected to 128)",
    )
    model.add_argument(
        "--config-overrides", "--config_overrides", dest="model_config", action="extend", type=comma_items,
        metavar="KEY=VALUE,...", help="run_mlm.py's spelling of --model-config: items separated by commas",
    )
    add_dtype_argument(model)
    model.add_argument(
        "--objective", choices=OBJECTIVES, default="auto",
        help="mlm: masked-LM (every model); bilm: ELMo's forward + backward language model; auto: bilm for elmo, "
        "mlm otherwise (default: %(default)s)",
    )
    model.add_argument(
        "--tokenizer", "--tokenizer-name", "--tokenizer_name", default=None, metavar="PATH",
        help="use this tokenizer instead of training one",
    )
    model.add_argument(
        "--vocab-size", type=int, default=None,
        help=f"vocabulary of the trained tokenizer (words for bilstm_crf and elmo) (default: {DEFAULT_VOCAB_SIZE})",
    )
    data = parser.add_argument_group("data (default: the Shakespeare sample shipped with bizoo)")
    source = data.add_mutually_exclusive_group()
    source.add_argument(
        "--text", "--train-file", "--train_file", nargs="+", default=None, metavar="FILE",
        help="plain-text training files, one document each; or one .json/.jsonl/.csv/.tsv/.parquet data file read "
        "through datasets (its --text-column)",
    )
    source.add_argument(
        "--dataset", "--dataset-name", "--dataset_name", default=None, metavar="NAME",
        help="a dataset read through `datasets`: a local dataset folder or a Hub dataset id [owner/]name[@revision]",
    )
    data.add_argument(
        "--dataset-config", "--dataset-config-name", "--dataset_config_name", default=None,
        help="the dataset's configuration name",
    )
    data.add_argument(
        "--text-column", "--text-column-name", "--text_column_name", default="text",
        help="the column of --dataset or of a data file holding text (default: %(default)s)",
    )
    data.add_argument(
        "--eval-text", "--validation-file", "--validation_file", nargs="+", default=None, metavar="FILE",
        help="held-out text files (default: Macbeth for the shipped corpus, the validation split of --dataset, else "
        "the last --eval-fraction of the data)",
    )
    data.add_argument(
        "--eval-fraction", type=float, default=None,
        help=f"share held out without --eval-text or a --dataset evaluation split (default: {DEFAULT_EVAL_FRACTION})",
    )
    data.add_argument(
        "--validation-split-percentage", "--validation_split_percentage", type=float, default=None, metavar="N",
        help="run_mlm.py's spelling of --eval-fraction, in percent (5 is --eval-fraction 0.05)",
    )
    data.add_argument(
        "--mlm-probability", "--mlm_probability", type=float, default=0.15, action=OneValue,
        help="share of tokens masked, with mlm (default: %(default)s, BERT's; LION's recipe uses 0.3)",
    )
    data.add_argument(
        "--stream", "--streaming", **bool_flag(
            help="(run_mlm.py's --streaming [BOOL]) read the --text files or --dataset lazily, a block at a time, "
            "pass after pass (new masks each pass) until --max-steps (corpora larger than memory; needs --max-steps, "
            "and --eval-text unless the dataset has a validation split; subword models with mlm; evaluates and saves "
            "by steps); the tokenizer is trained on the first --tokenizer-sample-mb of each",
        ),
    )
    data.add_argument(
        "--line-by-line", "--line_by_line", **bool_flag(
            help="run_mlm.py's --line_by_line: each non-empty line is one example ([CLS] line [SEP]), cut to "
            "--max-length, instead of blocks packed from the text; the held-out text is read line by line too "
            "(subword models, not with --stream)"),
    )
    data.add_argument(
        "--pad-to-max-length", "--pad_to_max_length", **bool_flag(
            help="run_mlm.py's --pad_to_max_length: pad every batch to --max-length instead of to its longest "
            "example (subword models with mlm, not with --stream); the same masks and, without dropout, the same "
            "numbers, bizoo's models not depending on padding"),
    )
    data.add_argument(
        "--tokenizer-sample-mb", type=float, default=50.0, metavar="MB",
        help="with --stream: megabytes of each file a new tokenizer is trained on (default: %(default)s)",
    )
    data.add_argument(
        "--whole-word-mask", action="store_true",
        help="mask whole words (all WordPiece pieces of a chosen word together) instead of single tokens, in "
        "training and in the held-out masks",
    )
    add_hub_arguments(parser)
    add_training_arguments(parser, max_steps=400, learning_rate=1e-3, batch_size=32, max_length=128)


def trainer_settings(args: argparse.Namespace, objective: str = "mlm") -> dict[str, dict]:
    """What this command sets in ``TrainingArguments`` (``training_arguments``' keywords): ``defaults`` the command
    line may change (the held-out evaluation every quarter of the steps), and ``fixed`` values the run needs.

    Every evaluation logs the held-out loss, and with masked-LM the masked-token accuracy too (``eval_accuracy``:
    ``HeldOutAccuracy``), each beside ``num_input_tokens_seen`` (the non-padding tokens trained on so far): the
    learning curve that ``training_log.json`` keeps and ``bizoo evaluate-all`` plots (--eval_on_start adds the
    untrained point)."""
    return dict(
        defaults=dict(
            eval_strategy="steps",
            # a quarter of the steps; for --epochs a share, which the Trainer takes of the steps it computes
            eval_steps=max(args.max_steps // 4, 1) if args.max_steps > 0 else 0.25,
            per_device_eval_batch_size=32 if objective == "bilm" else 64,  # the biLM's full softmax at every word
        ),
        fixed=dict(
            prediction_loss_only=objective != "mlm",  # masked-LM: the hits at masked positions too (HeldOutAccuracy)
            remove_unused_columns=False,  # the collators read mask_seed, which the model does not take
            # the learning curve's x axis: counted by lib.token_count.TokenCountingTrainer instead of the Trainer,
            # whose count reads the device back at every step
            include_num_input_tokens_seen=Needed("no", "the tokens trained on are counted and logged as "
                                                 "num_input_tokens_seen all the same, without a read at every step"),
        ),
    )


class HeldOutAccuracy:
    """Masked-token accuracy inside the Trainer's own evaluation pass (no second pass over the held-out blocks).

    ``preprocess(logits, labels)`` turns each batch's logits into a (B, L) tensor of the top predictions at the masked
    positions and -100 elsewhere, so that the Trainer's padding and concatenation across batches keep predictions
    aligned with labels; the logits may be dense (B, L, V) or the sparse (N, V) of the masked positions only, in
    row-major order (bizoo's masked-LM heads with ``labels``). ``__call__(EvalPrediction)`` is ``compute_metrics``:
    {"accuracy": hits / masked positions}."""

    @staticmethod
    def preprocess(logits, labels):
        if isinstance(logits, tuple):
            logits = logits[0]
        masked = labels != -100  # (B, L)
        top = logits.argmax(-1)  # (B, L) dense, or (N,) sparse
        predictions = torch.full_like(labels, -100)  # (B, L)
        predictions[masked] = top[masked] if top.dim() == 2 else top
        return predictions

    def __call__(self, prediction) -> dict:
        import numpy as np

        labels = np.asarray(prediction.label_ids)
        predictions = np.asarray(prediction.predictions)
        masked = labels != -100
        return {"accuracy": float((predictions[masked] == labels[masked]).mean()) if masked.any() else 0.0}


# ----------------------------------------------------------------------------------------------------------------
# Preparation: everything is checked before the output folder is created
# ----------------------------------------------------------------------------------------------------------------


def model_config_kwargs(args: argparse.Namespace, spec) -> dict:
    """The config fields of this run: small-model defaults (the model type's ``pretrain_config`` in
    ``lib.model_defaults``, else ``SMALL_MODEL``), then the variant's, then --model-config."""
    overrides = parse_model_config(args.model_config)
    check_config_fields(spec.config_class, overrides, f"model type {spec.model_type!r}")
    known = config_fields(spec.config_class)
    preset = model_defaults(spec.model_type).pretrain_config
    small = SMALL_MODEL if preset is None else preset
    defaults = {k: v for k, v in {**small, "max_position_embeddings": args.max_length}.items() if k in known}
    return {**defaults, **variant_fields(spec, args.variant), **overrides}


def bilm_model_types() -> list[str]:
    """The model types with a bidirectional-LM head: those whose config bizoo registered with
    ``AutoModelForPreTraining`` (ELMo's ``ElmoForBidirectionalLM``)."""
    from transformers import AutoModelForPreTraining

    mapping = AutoModelForPreTraining._model_mapping
    return sorted(name for name, spec in bizoo.MODEL_SPECS.items() if spec.config_class in mapping)


def stated_objective(args: argparse.Namespace) -> str:
    """The objective as the command line states it, before a checkpoint is read: --objective, or for "auto" the one
    --model's type (the default model's without --model) takes; "mlm" where a checkpoint's type decides, later. The
    training options are checked against it first (the biLM's evaluation scores its loss alone, so the flags that
    would keep a masked-LM run from scoring its predictions do not matter there)."""
    if args.objective != "auto":
        return args.objective
    if args.model_name_or_path is not None:
        return "mlm"
    return resolve_objective("auto", model_spec(args.model or DEFAULT_MODEL))


def resolve_objective(objective: str, spec) -> str:
    """"mlm" or "bilm": --objective, with "auto" meaning bilm for a model with a biLM head and mlm otherwise."""
    has_bilm = spec.model_type in bilm_model_types()
    if objective == "auto":
        return "bilm" if has_bilm else "mlm"
    if objective == "bilm" and not has_bilm:
        raise CommandError(
            f"--objective bilm: model type {spec.model_type!r} has no bidirectional-LM head (the models with one: "
            f"{bilm_model_types()}); use --objective mlm"
        )
    if objective not in ("mlm", "bilm"):
        raise CommandError(f"unknown --objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    return objective


def check_pretrain_arguments(args: argparse.Namespace) -> None:
    """The options of this command that need no model: ranges, files, and options that only apply with another;
    ``CommandError`` naming the option and what is allowed (``check_training_arguments`` does the common ones)."""
    if args.vocab_size is not None and args.vocab_size < MIN_VOCAB_SIZE:
        raise CommandError(f"--vocab-size must be at least {MIN_VOCAB_SIZE}, got {args.vocab_size}")
    if args.max_length < MIN_BLOCK_LENGTH + 2:
        raise CommandError(
            f"--max-length must be at least {MIN_BLOCK_LENGTH + 2} for pretraining (blocks of at least "
            f"{MIN_BLOCK_LENGTH} tokens besides the two boundary tokens), got {args.max_length}"
        )
    if not 0 < args.mlm_probability < 1:
        raise CommandError(f"--mlm-probability must be in (0, 1), got {args.mlm_probability}")
    held_out_fraction(args)
    if not 0 < args.tokenizer_sample_mb < math.inf:
        raise CommandError(f"--tokenizer-sample-mb must be a positive number, got {args.tokenizer_sample_mb}")
    if not args.dataset:
        if args.dataset_config is not None:
            raise CommandError("--dataset-config names a configuration of --dataset: pass --dataset too")
        if args.text_column != "text" and not any(map(is_data_file, args.text or ())):
            raise CommandError("--text-column names a column of --dataset or of a data file (.json, .csv, ...): "
                               "pass one of them too")
    for option, paths in (("--text", args.text), ("--eval-text", args.eval_text)):
        for path in paths or ():
            if not Path(path).is_file():
                what = "is a folder, not a file" if Path(path).is_dir() else "does not exist"
                raise CommandError(f"{option} {path!r} {what}")
        data = [path for path in paths or () if is_data_file(path)]
        if data and len(paths) > 1:
            raise CommandError(f"{option}: give one data file ({data[0]!r}) alone, or plain-text files only")
    text_data, eval_data = (bool(paths) and is_data_file(paths[0]) for paths in (args.text, args.eval_text))
    if eval_data and not text_data:
        raise CommandError(f"--eval-text {args.eval_text[0]!r} is a data file: it goes with a data file as --text "
                           "(held-out text beside plain-text files, --dataset or the shipped corpus is plain text)")
    if text_data and args.eval_text and not eval_data:
        raise CommandError(f"--text {args.text[0]!r} is a data file: give --eval-text as one too (or leave it out "
                           "to hold out --eval-fraction of it)")


def held_out_fraction(args: argparse.Namespace) -> float:
    """The share of the training text held out without --eval-text: --eval-fraction, or run_mlm.py's
    --validation-split-percentage / 100, or ``DEFAULT_EVAL_FRACTION``; ``CommandError`` outside (0, 1) or for both."""
    percentage = getattr(args, "validation_split_percentage", None)
    if percentage is not None:
        if args.eval_fraction is not None:
            raise CommandError(
                "--eval-fraction and --validation-split-percentage both give the held-out share: give one"
            )
        if not 0 < percentage < 100:
            raise CommandError(f"--validation-split-percentage must be in (0, 100), got {percentage:g}")
        return percentage / 100
    fraction = DEFAULT_EVAL_FRACTION if args.eval_fraction is None else args.eval_fraction
    if not 0 < fraction < 1:
        raise CommandError(f"--eval-fraction must be in (0, 1), got {fraction}")
    return fraction


def column_lines(split, column: str, source: str) -> list[str]:
    """The non-blank texts of ``column`` of a ``datasets`` split; ``CommandError`` for a missing column or a cell
    that is not text (naming ``source``, the row and the value)."""
    if column not in split.column_names:
        raise CommandError(f"--text-column {column!r} is not in {source}: {split.column_names}")
    lines = []
    for row, text in enumerate(split[column]):
        if text is not None and not isinstance(text, str):
            raise CommandError(f"{source}: --text-column {column!r} of row {row} is not text: {text!r}")
        if text and text.strip():
            lines.append(text.strip())
    if not lines:
        raise CommandError(f"{source}: --text-column {column!r} holds no text")
    return lines


def check_stream_arguments(args: argparse.Namespace, wordchar: bool, objective: str) -> None:
    """--stream reads --text files or --dataset lazily: it needs them, held-out text (files, or the dataset's
    validation split), a step budget, a subword masked-LM, and steps rather than epochs to evaluate, save and log
    by (``StreamedBlocks(endless=True)``: the Trainer sees one epoch)."""
    if not args.text and not args.dataset:
        raise CommandError("--stream reads --text files lazily (or --dataset): pass the training files with --text")
    if args.max_train_samples is not None:
        raise CommandError("--max-train-samples cuts a corpus read whole; a streamed run is as long as --max-steps")
    if any(map(is_data_file, [*(args.text or ()), *(args.eval_text or ())])):
        raise CommandError("--stream reads plain-text --text files; a data file (.json, .csv, ...) streams through "
                           "--dataset FOLDER (the folder holding it) with --text-column")
    if not args.eval_text and not args.dataset:
        raise CommandError("--stream needs --eval-text: a streamed corpus has no end to hold a part of out")
    if args.max_steps <= 0:
        raise CommandError("--stream needs --max-steps: the length of a streamed corpus is not known in advance")
    if wordchar or objective != "mlm":
        raise CommandError("--stream is for subword models with the mlm objective (not word+character models yet)")
    for name in ("eval_strategy", "save_strategy", "logging_strategy"):
        if getattr(args, name, None) == "epoch":
            raise CommandError(f"--{name} epoch: a streamed corpus is read pass after pass without end, so the "
                               "Trainer's one epoch is the whole run; give a number of steps (--eval_steps, "
                               "--save_steps, --logging_steps) with the strategy steps")


def load_texts(args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]], str]:
    """(training documents, held-out documents, corpus name); each document is a list of lines. Held out: --eval-text,
    else the evaluation split of --dataset (validation, dev, valid, val, or test where there is none: as --stream
    takes it; run_mlm.py takes a validation split), else the last ceil(--eval-fraction × lines) of every training
    document, its first line kept."""
    if args.dataset:
        splits = load_splits(args.dataset, args.dataset_config, option="--dataset", hub=hub_options(args))
        documents, name = [column_lines(splits["train"], args.text_column, args.dataset)], args.dataset
        if not args.eval_text and "validation" in splits:  # run_mlm.py's held-out text, and --stream's
            held = dataset_split_name(splits["validation"])
            if args.eval_fraction is not None or args.validation_split_percentage is not None:
                logger.warning(f"{PROG}: --dataset {args.dataset!r} has a {held!r} split, which is held out: "
                               "--eval-fraction / --validation-split-percentage go unused")
            source = f"{args.dataset} ({held})"
            return documents, [column_lines(splits["validation"], args.text_column, source)], name
    elif args.text and is_data_file(args.text[0]):  # run_mlm.py's --train_file / --validation_file
        splits = load_splits(train_file=args.text[0], validation_file=(args.eval_text or [None])[0],
                             hub=hub_options(args))
        documents, name = [column_lines(splits["train"], args.text_column, args.text[0])], describe(None, args.text[0])
        if args.eval_text:
            return documents, [column_lines(splits["validation"], args.text_column, args.eval_text[0])], name
    elif args.text:
        documents, name = [read_text_files([path]) for path in args.text], "custom text"
    else:
        documents = [read_text_files([path]) for path in shipped_corpus_files("train")]
        eval_files = args.eval_text or shipped_corpus_files("eval")
        held_out = [read_text_files([path]) for path in eval_files]
        return documents, held_out, "Shakespeare sample (bizoo)"
    if args.eval_text:
        return documents, [read_text_files([path]) for path in args.eval_text], name
    fraction = held_out_fraction(args)
    held_out = []
    for i, doc in enumerate(documents):  # the last ceil(fraction * lines) lines of every document, its first kept
        # less a hair: in floating point 90 * 0.3 may land above 27 (and 90 * (1 - 0.3) was 62.99..., 28 lines held
        # out, not 27), while a tiny share of a short document still holds out one line
        cut = max(1, len(doc) - math.ceil(len(doc) * fraction - 1e-9))
        documents[i], tail = doc[:cut], doc[cut:]
        if tail:
            held_out.append(tail)
    if not held_out:
        raise CommandError("the training text is too short to hold out an evaluation part; pass --eval-text")
    return documents, held_out, name


def pack(tokenizer, documents: list[list[str]], max_length: int, min_length: int = MIN_BLOCK_LENGTH) -> list[list[int]]:
    """Token blocks of at most ``max_length`` ([CLS] ... [SEP]) filled from one document at a time (``pack_blocks``,
    as ``--stream`` packs them)."""
    # verbose=False: a line longer than the model's length is cut into blocks here, not an error (transformers'
    # warning would say it "will result in indexing errors")
    token_lines = (tokenizer(lines, add_special_tokens=False, verbose=False)["input_ids"] for lines in documents)
    return list(pack_blocks(tokenizer, token_lines, max_length, min_length))


def line_examples(tokenizer, documents: list[list[str]], max_length: int) -> list[list[int]]:
    """--line-by-line: one example per non-blank line, [CLS] its tokens [SEP], cut to ``max_length`` tokens (as
    run_mlm.py's ``tokenizer(line, truncation=True, max_length=max_seq_length)``); a line without tokens is
    skipped."""
    lines = [line for lines in documents for line in lines if line.strip()]
    token_lines = tokenizer(lines, add_special_tokens=False, verbose=False)["input_ids"] if lines else []  # cut below
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return [[cls, *ids[: max_length - 2], sep] for ids in token_lines if ids]


def pack_words(
    tokenizer, documents: list[list[str]], max_length: int, min_length: int = MIN_BLOCK_LENGTH
) -> list[list[str]]:
    """Word blocks for a word+character tokenizer: runs of the words of one document at a time (split by the
    tokenizer's own pre-tokenizer), short enough that a block with the tokens the tokenizer adds (ELMo's <S> ... </S>)
    holds at most ``max_length`` tokens; a final run shorter than ``min_length`` words is dropped."""
    body = max_length - tokenizer.num_special_tokens_to_add()
    if body < 1:
        raise CommandError(f"--max-length {max_length} leaves no room for words besides the tokenizer's boundaries")
    split = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    blocks = []
    for lines in documents:
        stream = [word for line in lines for word, _ in split(line)]
        for start in range(0, len(stream), body):
            piece = stream[start : start + body]
            if len(piece) >= min_length:
                blocks.append(piece)
    return blocks


def encode_word_blocks(tokenizer, blocks: list[list[str]], chunk: int = 256) -> list[dict]:
    """``{"input_ids", "char_ids"}`` examples of word blocks (``is_split_into_words``: each word is one token);
    ``char_ids`` as a compact (words, max_word_length) integer array, which ``tokenizer.pad`` pads."""
    dtype = np.int16 if tokenizer.char_vocab_size <= np.iinfo(np.int16).max else np.int32
    examples = []
    for start in range(0, len(blocks), chunk):
        encoded = tokenizer(blocks[start : start + chunk], is_split_into_words=True)
        for ids, chars in zip(encoded["input_ids"], encoded["char_ids"]):
            examples.append({"input_ids": ids, "char_ids": np.asarray(chars, dtype=dtype)})
    return examples


def fixed_eval_masks(
    blocks: list[list[int]], tokenizer, probability: float, seed: int, char_ids: list | None = None,
    whole_word: bool = False,
) -> list[dict]:
    """Mask ``probability`` of the non-special tokens of every block with [MASK], reproducibly. With ``char_ids``
    (one (tokens, W) array per block, word+character models) a masked word's characters become [MASK]'s too. With
    ``whole_word`` (--whole-word-mask) ``probability`` of the words, each with all its WordPiece pieces, as training
    masks them (``lib.masking.mask_example``): a piece masked alone, its word's other pieces in view, would score an
    easier task than the one trained."""
    generator = torch.Generator().manual_seed(seed)
    mask_row = tokenizer.ids_to_char_ids([tokenizer.mask_token_id])[0] if char_ids is not None else None
    examples = []
    for number, ids in enumerate(blocks):
        ids_t = torch.tensor(ids)
        special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
        special = torch.tensor(special, dtype=torch.bool)
        chosen = torch.rand(len(ids), generator=generator) < probability  # (n,)
        word = torch.arange(len(ids))  # (n,) each token's word: its own, or with whole_word its pieces'
        if whole_word:
            word, starts = word_ids(tokenizer, ids, special)
            chosen = chosen[starts][word]  # each word drawn once, by its first token
        chosen &= ~special
        if not chosen.any() and not special.all():  # at least one target per block: its first (whole) word
            candidates = ~special & (starts if whole_word else True)  # (n,)
            first = int((candidates if candidates.any() else ~special).nonzero()[0])
            chosen = (word == word[first]) & ~special
        labels = torch.where(chosen, ids_t, torch.full_like(ids_t, -100))
        inputs = torch.where(chosen, torch.full_like(ids_t, tokenizer.mask_token_id), ids_t)
        example = {"input_ids": inputs.tolist(), "labels": labels.tolist()}
        if char_ids is not None:
            chars = np.array(char_ids[number], copy=True)  # (tokens, W)
            chars[chosen.numpy()] = mask_row[: chars.shape[1]]
            example["char_ids"] = chars
        examples.append(example)
    return examples


def unigram_baseline(
    train_blocks: list[list[int]], eval_examples: list[dict], special_ids: set[int]
) -> tuple[int, float]:
    """The most frequent non-special training token and its accuracy on the held-out masked positions."""
    counts = torch.bincount(torch.tensor([t for b in train_blocks for t in b if t not in special_ids]))
    best = int(counts.argmax())
    targets = torch.tensor([t for e in eval_examples for t in e["labels"] if t != -100])
    return best, float((targets == best).float().mean())


def unigram_perplexity(train_blocks: list[list[int]], eval_blocks: list[list[int]], vocab_size: int) -> float:
    """The perplexity of the training unigram distribution (add-one smoothed over the vocabulary) on the biLM's
    held-out targets: every word but each block's first (forward LM) and every word but its last (backward LM)."""
    counts = torch.bincount(torch.tensor([t for b in train_blocks for t in b]), minlength=vocab_size).double() + 1.0
    log_probs = (counts / counts.sum()).log()  # (V,)
    targets = torch.tensor([t for ids in eval_blocks for t in (*ids[1:], *ids[:-1])])
    return math.exp(float(-log_probs[targets].mean()))


def _model_inputs(model, batch) -> dict:
    """The tensors of a collated batch that the model reads, on the model's device."""
    keys = ("input_ids", "char_ids", "attention_mask", "labels")
    return {k: v.to(model.device) for k, v in batch.items() if k in keys}


@torch.no_grad()
def bilm_mean_nll(model, eval_examples: list[dict], collator, batch_size: int = 32) -> tuple[float, float]:
    """(forward, backward) mean negative log-likelihood per predicted word of a biLM over ``eval_examples``, with
    the full softmax (eval mode). Each block of n words has n - 1 targets per direction."""
    model.eval()
    sums, count = [0.0, 0.0], 0
    for start in range(0, len(eval_examples), batch_size):
        batch = _model_inputs(model, collator(eval_examples[start : start + batch_size]))
        out = model(**batch)
        targets = int(((batch["labels"] != -100).sum(1) - 1).clamp(min=0).sum())
        sums[0] += float(out.forward_loss) * targets
        sums[1] += float(out.backward_loss) * targets
        count += targets
    return sums[0] / max(count, 1), sums[1] / max(count, 1)


@torch.no_grad()
def masked_accuracy(model, eval_examples: list[dict], collator, batch_size: int = 64) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model's top prediction at the masked positions."""
    model.eval()
    hits = total = 0
    loss_sum = 0.0
    for start in range(0, len(eval_examples), batch_size):
        batch = _model_inputs(model, collator(eval_examples[start : start + batch_size]))
        out = model(**batch)
        targets = batch["labels"][batch["labels"] != -100]  # (N,), the order of the sparse logits
        logits = out.logits if out.logits.dim() == 2 else out.logits[batch["labels"] != -100]
        hits += int((logits.argmax(-1) == targets).sum())
        total += targets.numel()
        loss_sum += float(out.loss) * targets.numel()
    return hits / max(total, 1), loss_sum / max(total, 1)


#: Loss-curve labels per objective: (training curve, held-out curve, y axis).
CURVE_LABELS = {
    "mlm": (
        "training loss (80% [MASK], 10% random, 10% kept)", "held-out loss (all [MASK])", "masked-LM cross-entropy"
    ),
    "bilm": ("training loss", "held-out loss (full softmax)", "biLM cross-entropy (mean of forward and backward)"),
}


def plot_loss_curve(log_history: list[dict], path: Path, objective: str = "mlm") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_label, eval_label, y_label = CURVE_LABELS[objective]
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label=train_label)
    if evals:
        ax.plot(*zip(*evals), "o-", label=eval_label)
    ax.set_xlabel("step")
    ax.set_ylabel(y_label)
    ax.set_title("bizoo pretrain")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    return run_command(PROG, lambda: _pretrain(args))


def _pretrain(args: argparse.Namespace) -> int:
    """The run, step by step: check the options, read the corpus, build the tokenizer and the blocks, set up the
    objective, train, then (first process only) evaluate on the held-out blocks, save and report."""
    job = prepare_job(args)
    corpus = read_corpus(job)
    tokenizer, config = build_tokenizer(job, corpus)
    blocks = build_blocks(job, corpus, tokenizer)
    setup = objective_setup(job, tokenizer, blocks)
    trained = train_model(job, config, tokenizer, setup)
    if not trained.trainer.is_world_process_zero():  # a distributed run: the first process evaluates and saves
        return 0
    evaluation = evaluate_model(job, trained.model, setup)
    save_run(job, trained, tokenizer, corpus.name, evaluation)
    report_run(job, trained, tokenizer, setup, evaluation)
    repo = push_final_folder(trained.trainer, job.output_dir, trained.model, tokenizer)
    if repo is not None:
        report(f"  pushed to the Hub repository {repo}")
    return 0


@dataclass
class PretrainJob:
    """The checked settings of one run (``prepare_job``), read by every later step."""

    args: argparse.Namespace
    spec: Any  # the ModelSpec of --model
    objective: str  # "mlm" or "bilm"
    wordchar: bool  # the model reads words and their characters
    config_kwargs: dict  # the config fields besides the tokenizer's (model_config_kwargs); {} from a checkpoint
    output_dir: Path
    resume_from: str | None  # the checkpoint to continue from, or None
    started: float  # time.perf_counter() when the run began
    checkpoint: InitialCheckpoint | None = None  # --model-name-or-path

    @property
    def unit(self) -> str:
        """What a block counts: "words" or "tokens"."""
        return "words" if self.wordchar else "tokens"


@dataclass
class InitialCheckpoint:
    """--model-name-or-path: the checkpoint whose pretraining continues."""

    name: str  # as given: a folder or a Hub model id
    config: Any  # its configuration, --model-config's fields changed
    path: str  # its local folder (a Hub model's snapshot in the cache: --cache_dir, --model_revision, --token)
    hub: HubOptions  # the run's Hub options (--trust_remote_code for from_pretrained)


def initial_checkpoint(args: argparse.Namespace) -> InitialCheckpoint | None:
    """The checkpoint of --model-name-or-path with its configuration (--model-config's fields changed), read as the
    fine-tuning commands read theirs (``lib.finetuning.resolve_model_source``), or None; ``CommandError`` for one that
    does not load, a model type instead of a checkpoint, options that only a model trained from scratch takes, a
    --model of another type, a --model-config field the configuration lacks, and a --max-length beyond its position
    embeddings."""
    name = args.model_name_or_path
    if name is None:
        return None
    given = [option for option, value in (("--variant", args.variant), ("--vocab-size", args.vocab_size))
             if value is not None]
    if given:
        raise CommandError(f"{', '.join(given)}: options of a model trained from scratch; the checkpoint {name!r} "
                           "fixes its configuration and vocabulary")
    source = resolve_model_source(args, task_config={})
    if source.spec is not None:
        raise CommandError(f"--model-name-or-path {name!r} is a model type, not a checkpoint to continue: a new "
                           f"{name} model is --model {name}")
    config = source.config
    if args.model is not None and args.model != config.model_type:
        raise CommandError(f"--model {args.model!r}, but the checkpoint {name!r} is a {config.model_type!r} model: "
                           "drop --model")
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and args.max_length > positions:
        raise CommandError(f"--max-length {args.max_length} is beyond the checkpoint's max_position_embeddings "
                           f"({positions}): give --max-length {positions} or less")
    return InitialCheckpoint(name, config, source.path, source.hub)


def prepare_job(args: argparse.Namespace) -> PretrainJob:
    """The run's settings, every option checked (and the config's fields validated) before the output folder is
    created; ``CommandError`` on bad input."""
    started = time.perf_counter()
    stated = stated_objective(args)
    check_training_arguments(args, **trainer_settings(args, stated))
    check_pretrain_arguments(args)
    check_hub_options(args)
    checkpoint = initial_checkpoint(args)
    check_mixed_precision(args, checkpoint.config if checkpoint else None)
    spec = model_spec(args.model or (checkpoint.config.model_type if checkpoint else DEFAULT_MODEL))
    objective = resolve_objective(args.objective, spec)
    if objective != stated:  # a checkpoint's type decided it: its evaluation needs other settings
        check_training_arguments(args, **trainer_settings(args, objective))
    check_best_model_metric(args, HELD_OUT_METRICS[objective])
    wordchar = spec.tokenizer == "wordchar"
    if args.whole_word_mask and (objective != "mlm" or wordchar):
        raise CommandError(
            "--whole-word-mask masks all WordPiece pieces of a word together: it applies to subword models with "
            f"--objective mlm, not to {spec.model_type!r} with objective {objective!r}"
        )
    if objective == "bilm" and (getattr(args, "label_smoothing_factor", None) or 0) > 0:
        raise CommandError(
            "--label_smoothing_factor smooths the Trainer's softmax over one `logits` output; the biLM's loss is a "
            "forward and a backward LM's over their own logits (forward_logits, backward_logits), which the Trainer "
            "cannot smooth: train without it, or with --objective mlm"
        )
    check_neftune(args, spec.model_type)
    config_kwargs = {}
    if checkpoint is None:
        config_kwargs = model_config_kwargs(args, spec)
        spec.config_class(vocab_size=args.vocab_size or DEFAULT_VOCAB_SIZE, **config_kwargs)  # validates every field
    # every process checks the folder before the first one writes into it (a distributed run's shared tokenizer)
    output_dir = check_in_turn(
        lambda: check_output_dir(args.output_dir, args.overwrite, args.resume, input_paths(args), whole=False)
    )
    resume_from = resume_checkpoint(args, output_dir)
    if args.stream:
        check_stream_arguments(args, wordchar, objective)
    for option, given in (("--line-by-line", args.line_by_line), ("--pad-to-max-length", args.pad_to_max_length)):
        if given and (args.stream or wordchar or objective != "mlm"):
            raise CommandError(
                f"{option} applies to subword models with --objective mlm read whole, not to {spec.model_type!r} "
                f"with objective {objective!r}{' and --stream' if args.stream else ''}"
            )
    return PretrainJob(args, spec, objective, wordchar, config_kwargs, output_dir, resume_from, started, checkpoint)


@dataclass
class Corpus:
    """The text of a run: documents as lists of lines."""

    documents: list[list[str]]  # training text (with --stream only the tokenizer's sample)
    held_out: list[list[str]]
    name: str  # what the model card calls the data
    sources: list | None = None  # with --stream: the --text paths or the dataset's line stream, read lazily


def read_corpus(job: PretrainJob) -> Corpus:
    """The training and held-out text: read whole (``load_texts``), or with --stream a sample of each source for the
    tokenizer and the held-out text (--eval-text, else the dataset's validation split) read whole."""
    args = job.args
    if not args.stream:
        return Corpus(*load_texts(args))
    sources, name = args.text, "custom text (streamed)"
    if args.dataset:
        sources = [stream_text_lines(args.dataset, args.dataset_config, args.text_column, hub=hub_options(args))]
        name = f"{args.dataset} (streamed)"
    documents = sample_lines(sources, int(args.tokenizer_sample_mb * 2**20))  # the tokenizer's text only
    if args.eval_text:
        held_out = [read_text_files([path]) for path in args.eval_text]
    else:  # the dataset's validation split, read whole
        held_out = [list(stream_text_lines(args.dataset, args.dataset_config, args.text_column, "validation",
                                           hub=hub_options(args)))]
    return Corpus(documents, held_out, name, sources)


def build_tokenizer(job: PretrainJob, corpus: Corpus):
    """(tokenizer, model config): the checkpoint's tokenizer when resuming, else --tokenizer, else
    --model-name-or-path's, else one trained on the training text (WordPiece, or words + characters); the config of
    --model-name-or-path, or a new one; ``CommandError`` if the tokenizer does not suit the model."""
    from transformers import AutoTokenizer

    args, spec = job.args, job.spec
    vocab_size = args.vocab_size or DEFAULT_VOCAB_SIZE

    def new_tokenizer():
        lines = [line for doc in corpus.documents for line in doc]
        if job.wordchar:
            return build_wordchar_tokenizer(spec, lines, vocab_size, model_max_length=args.max_length)
        return train_wordpiece_tokenizer(lines, vocab_size=vocab_size, model_max_length=args.max_length)

    hub = hub_options(args)
    if job.resume_from:
        tokenizer = pretrained_tokenizer(job.resume_from, "the checkpoint to resume", hub)
    elif args.tokenizer:
        tokenizer = pretrained_tokenizer(args.tokenizer, "--tokenizer", hub)
    elif job.checkpoint is not None:
        tokenizer = pretrained_tokenizer(job.checkpoint.path, "--model-name-or-path", hub)
    else:  # trained here; in a distributed run by the first process, for all of them
        tokenizer = build_on_first_process(
            new_tokenizer, job.output_dir / ".tokenizer-shared", lambda t, path: t.save_pretrained(path),
            AutoTokenizer.from_pretrained,
        )
    if job.wordchar and not hasattr(tokenizer, "ids_to_char_ids"):
        raise CommandError(
            f"{spec.model_type!r} reads words and their characters: its tokenizer must be a "
            "bizoo.WordCharTokenizerFast, "
            f"got {type(tokenizer).__name__}"
        )
    if job.objective == "mlm" and tokenizer.mask_token_id is None:
        raise CommandError("the tokenizer has no mask token; masked-LM needs one")
    if args.whole_word_mask:
        try:
            continuation_prefix(tokenizer)
        except ValueError as err:
            raise CommandError(f"--whole-word-mask: {err}") from None
    if job.checkpoint is not None:
        config = job.checkpoint.config
        if len(tokenizer) > config.vocab_size:
            raise CommandError(f"the tokenizer has {len(tokenizer)} {job.unit} but the checkpoint "
                               f"{job.checkpoint.name!r} has embeddings for {config.vocab_size}")
        check_char_vocabulary(config, tokenizer, f"the checkpoint {job.checkpoint.name!r}'s")
        what = f"{spec.model_type} from {job.checkpoint.name}"
    else:
        config = spec.config_class(**tokenizer_config_fields(spec, tokenizer), **job.config_kwargs)
        variant = args.variant or model_defaults(spec.model_type).default_variant
        what = f"{spec.model_type}{' ' + variant if variant else ''}"
    logger.info(f"{PROG}: {what} on {corpus.name}, objective {job.objective}: tokenizer of {len(tokenizer)} {job.unit}")
    return tokenizer, config


@dataclass
class Blocks:
    """The text as examples of at most --max-length tokens (words for word+character models)."""

    train_examples: Any  # list of {"input_ids"[, "char_ids"]}, or StreamedBlocks with --stream
    held_out_examples: list[dict]
    train_ids: list[list[int]]  # the training blocks' ids (with --stream the first STREAM_BASELINE_BLOCKS)
    held_out_ids: list[list[int]]


def build_blocks(job: PretrainJob, corpus: Corpus, tokenizer) -> Blocks:
    """The training and held-out blocks (``pack``, ``pack_words`` or ``StreamedBlocks``); ``CommandError`` if either
    side has none."""
    args = job.args
    if job.wordchar:  # blocks of words; each example carries input_ids and char_ids
        train_examples = encode_word_blocks(tokenizer, pack_words(tokenizer, corpus.documents, args.max_length))
        held_out_examples = encode_word_blocks(tokenizer, pack_words(tokenizer, corpus.held_out, args.max_length))
    elif args.stream:  # blocks packed as the files are read; the unigram baseline from the first ones
        train_examples = StreamedBlocks(corpus.sources, tokenizer, args.max_length, args.seed, endless=True)
        held_out_examples = [{"input_ids": ids} for ids in pack(tokenizer, corpus.held_out, args.max_length)]
        train_ids = list(itertools.islice(train_examples.blocks(), STREAM_BASELINE_BLOCKS))
    else:  # blocks packed from each document, or (--line-by-line) a line each, training and held-out alike
        examples_of = line_examples if args.line_by_line else pack
        train_examples = [{"input_ids": ids} for ids in examples_of(tokenizer, corpus.documents, args.max_length)]
        held_out_examples = [{"input_ids": ids} for ids in examples_of(tokenizer, corpus.held_out, args.max_length)]
    if not args.stream:
        train_examples = first_samples(train_examples, args, "train", "blocks")
        train_ids = [e["input_ids"] for e in train_examples]
    held_out_examples = first_samples(held_out_examples, args, "eval", "blocks")
    if not train_ids or not held_out_examples:
        raise CommandError(f"not enough text: {len(train_ids)} training and {len(held_out_examples)} held-out blocks")
    count = "streamed" if args.stream else str(len(train_examples))
    logger.info(
        f"{PROG}: {count} training and {len(held_out_examples)} held-out blocks of <= {args.max_length} {job.unit}"
    )
    return Blocks(train_examples, held_out_examples, train_ids, [e["input_ids"] for e in held_out_examples])


@dataclass
class ObjectiveSetup:
    """What the objective decides: the model class, the datasets and collators the Trainer gets, and the baseline
    the held-out result is set beside."""

    auto_class: Any  # AutoModelForMaskedLM or AutoModelForPreTraining
    train_dataset: Any
    eval_examples: list[dict]  # the held-out blocks (with their fixed masks for mlm)
    data_collator: Any
    eval_collator: Any
    callbacks: list
    baseline: float  # the unigram baseline's accuracy (mlm) or perplexity (bilm)
    baseline_token: int | None = None  # mlm: the token the unigram baseline always predicts


def objective_setup(job: PretrainJob, tokenizer, blocks: Blocks) -> ObjectiveSetup:
    """The Trainer's inputs for --objective: biLM batches, or masked-LM with seeded training masks and fixed
    held-out masks; and the unigram baseline on the held-out blocks."""
    from transformers import AutoModelForMaskedLM, AutoModelForPreTraining, DataCollatorForTokenClassification

    args = job.args
    if job.objective == "bilm":
        collator = BiLMCollator(tokenizer)
        baseline_perplexity = unigram_perplexity(blocks.train_ids, blocks.held_out_ids, len(tokenizer))
        return ObjectiveSetup(
            AutoModelForPreTraining, blocks.train_examples, blocks.held_out_examples, collator, collator, [],
            baseline_perplexity,
        )
    chars = [e["char_ids"] for e in blocks.held_out_examples] if job.wordchar else None
    eval_examples = fixed_eval_masks(blocks.held_out_ids, tokenizer, args.mlm_probability, args.seed, chars,
                                     whole_word=args.whole_word_mask)
    special_ids = set(tokenizer.all_special_ids)
    baseline_token, baseline_accuracy = unigram_baseline(blocks.train_ids, eval_examples, special_ids)
    # pads labels with -100; --pad-to-max-length: every batch (B, --max-length), else (B, its longest example)
    eval_collator = DataCollatorForTokenClassification(tokenizer, **max_length_padding(args))
    # Each example masked by its own generator, seeded by (seed, epoch, index): the same masks on any number of
    # processes and across a resume (scripts/lib/masking.py).
    train_dataset = blocks.train_examples if args.stream else SeededExamples(blocks.train_examples, args.seed)
    masking = SeededMaskingCollator(tokenizer, args.mlm_probability, whole_word=args.whole_word_mask,
                                    padding=max_length_padding(args))
    return ObjectiveSetup(
        AutoModelForMaskedLM, train_dataset, eval_examples, _TrainEvalCollator(masking, eval_collator), eval_collator,
        [EpochCallback(train_dataset)], baseline_accuracy, baseline_token,
    )


@dataclass
class Trained:
    """The outcome of training."""

    trainer: Any  # the transformers Trainer (its state holds the log history)
    model: Any
    train_seconds: float
    output: Any  # the Trainer's TrainOutput (global_step; its metrics: train_loss, train_runtime, ...)
    train_samples: int | None  # training blocks; None when streamed

    @property
    def steps(self) -> int:
        """The optimizer steps taken (global_step)."""
        return self.output.global_step


def train_model(job: PretrainJob, config, tokenizer, setup: ObjectiveSetup) -> Trained:
    """A new model of ``config`` (seeded by --seed), or --model-name-or-path's (a head it lacks new, seeded), trained
    by a Trainer with this command's TrainingArguments, from the resumed checkpoint if any."""
    from .lib.token_count import TokenCountingTrainer

    args = job.args
    torch.manual_seed(args.seed)
    baseline = {"attn_implementation": "sdpa"} if job.spec.model_type in BASELINES else {}  # BERT: SDPA attention
    if job.checkpoint is None:
        model = setup.auto_class.from_config(config, **baseline, **weights_dtype(args.dtype, built=True))
    else:
        stored = config.dtype  # the checkpoint's (from_pretrained sets the config's to the dtype it loads in)
        model, loading = setup.auto_class.from_pretrained(job.checkpoint.path, config=config,
                                                          trust_remote_code=job.checkpoint.hub.trust_remote_code,
                                                          output_loading_info=True, **baseline,
                                                          **weights_dtype(args.dtype))
        note_stored_dtype(job.checkpoint.name, stored, model)
        if loading["missing_keys"]:
            logger.warning(f"{job.checkpoint.name} has no {type(model).__name__} weights "
                           f"{listing(sorted(loading['missing_keys']), 4)}: newly initialised")
    if job.resume_from:
        check_resume_dtype(model, job.resume_from)
    held = "" if model.dtype == torch.float32 else f", {dtype_name(model.dtype)} weights"
    logger.info(
        f"{PROG}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{config.num_hidden_layers} layers{held}"
    )
    training_args = training_arguments(args, job.output_dir, model, **trainer_settings(args, job.objective))
    held_out_metrics = {}
    if job.objective == "mlm":
        accuracy = HeldOutAccuracy()
        held_out_metrics = dict(compute_metrics=accuracy, preprocess_logits_for_metrics=accuracy.preprocess)
    trainer = TokenCountingTrainer(
        model=model,
        args=training_args,
        train_dataset=setup.train_dataset,
        eval_dataset=setup.eval_examples,
        data_collator=setup.data_collator,
        processing_class=tokenizer,
        optimizers=trainer_optimizers(model, args, training_args),
        callbacks=[*setup.callbacks, input_checks_callback()],  # a bad input's error raised by the phase's end
        **held_out_metrics,
    )
    if args.overwrite:  # the previous run's checkpoints and results go; nothing else of the folder
        clear_previous_run(job.output_dir, input_paths(args))
    train_start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=job.resume_from)
    samples = len(setup.train_dataset) if hasattr(setup.train_dataset, "__len__") else None
    return Trained(trainer, model, time.perf_counter() - train_start, result, samples)


@dataclass
class Evaluation:
    """The held-out results: ``metrics`` (rounded, the model card's), ``extra`` recorded beside them, the card's
    ``task``, and the unrounded masked-LM numbers the report prints."""

    metrics: dict
    extra: dict
    task: dict
    accuracy: float | None = None  # mlm only
    eval_loss: float | None = None  # mlm only
    samples: int = 0  # held-out blocks

    def run_script_metrics(self) -> dict:
        """The evaluation as run_mlm.py's ``all_results.json`` names it (``eval_`` prefixed by ``all_results``):
        accuracy and loss (mlm), or the forward and backward perplexities and their mean loss (bilm)."""
        if self.accuracy is None:
            return {**self.metrics, "loss": self.extra["eval_loss"]}
        return {"accuracy": self.accuracy, "loss": self.eval_loss}


def perplexity(nll: float) -> float:
    """exp(mean negative log-likelihood), capped at exp(50) (an untrained model's loss may overflow it)."""
    return math.exp(min(nll, 50))


def evaluate_model(job: PretrainJob, model, setup: ObjectiveSetup) -> Evaluation:
    """The trained model on the held-out blocks: forward and backward perplexities (bilm), or masked-token accuracy
    and perplexity (mlm), beside the unigram baseline."""
    if job.objective == "bilm":
        forward_nll, backward_nll = bilm_mean_nll(model, setup.eval_examples, setup.eval_collator)
        metrics = {
            "forward_perplexity": round(perplexity(forward_nll), 2),
            "backward_perplexity": round(perplexity(backward_nll), 2),
        }
        extra = {
            "unigram_baseline_perplexity": round(setup.baseline, 2),
            "eval_loss": round(0.5 * (forward_nll + backward_nll), 4),
        }
        task = {"type": "text-generation", "name": "Bidirectional language modeling (forward and backward LM)"}
        return Evaluation(metrics, extra, task, samples=len(setup.eval_examples))
    accuracy, eval_loss = masked_accuracy(model, setup.eval_examples, setup.eval_collator)
    metrics = {"accuracy": round(accuracy, 4), "perplexity": round(perplexity(eval_loss), 2)}
    extra = {"unigram_baseline_accuracy": round(setup.baseline, 4), "eval_loss": round(eval_loss, 4)}
    task = {"type": "fill-mask", "name": "Masked language modeling"}
    return Evaluation(metrics, extra, task, accuracy, eval_loss, len(setup.eval_examples))


def save_run(job: PretrainJob, trained: Trained, tokenizer, corpus_name: str, evaluation: Evaluation) -> None:
    """Writes the output folder whole (model, tokenizer, loss curve, training log), then its results and model
    card."""
    log_history = trained.trainer.state.log_history
    with staged_update(job.output_dir) as staging:
        trained.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        plot_loss_curve(log_history, staging / "loss_curve.png", job.objective)
        (staging / "training_log.json").write_text(json.dumps(log_history, indent=1) + "\n")
        held_out = evaluation.run_script_metrics()
        (staging / ALL_RESULTS_FILE).write_text(all_results(
            trained.trainer, trained.output, trained.train_samples, [("", held_out, evaluation.samples)],
            extra={"perplexity": perplexity(held_out["loss"])}))  # run_mlm.py's exp(eval_loss)
    record_results(
        job.output_dir,
        task=evaluation.task,
        dataset={"name": corpus_name, "type": "text", "split": "held-out"},
        metrics=evaluation.metrics,
        metric_names=PRETRAINING_METRIC_NAMES,
        **evaluation.extra,
        steps=trained.steps,
        train_seconds=round(trained.train_seconds, 1),
        **({"initialised_from": job.checkpoint.name} if job.checkpoint is not None else {}),
    )
    write_checkpoint_card(job.output_dir, trained.model, tokenizer)


def report_run(job: PretrainJob, trained: Trained, tokenizer, setup: ObjectiveSetup, evaluation: Evaluation) -> None:
    """Reports the time taken, the held-out results beside the baseline, and (mlm) fill-mask examples from the
    saved folder."""
    elapsed = time.perf_counter() - job.started
    report(f"\n{PROG}: done in {elapsed:.0f} s ({trained.train_seconds:.0f} s training, {trained.steps} steps)")
    metrics, extra = evaluation.metrics, evaluation.extra
    if job.objective == "bilm":
        report(f"  held-out forward perplexity   {metrics['forward_perplexity']}")
        report(f"  held-out backward perplexity  {metrics['backward_perplexity']}")
        report(f"  unigram baseline perplexity   {extra['unigram_baseline_perplexity']}")
    else:
        report(f"  held-out masked-token accuracy  {evaluation.accuracy:.4f}")
        token = tokenizer.convert_ids_to_tokens(setup.baseline_token)
        report(f"  unigram baseline (always {token!r})  {setup.baseline:.4f}")
        report(f"  held-out loss {evaluation.eval_loss:.3f}, perplexity {metrics['perplexity']}")
        report_fill_mask_examples(job.output_dir, tokenizer)
    report(f"  saved to {job.output_dir} (model, tokenizer, README.md, loss_curve.png)")


def report_fill_mask_examples(folder: Path, tokenizer) -> None:
    """A few predictions of ``pipeline("fill-mask")`` loaded from the saved folder (those that fit --max-length: a
    model with position embeddings, such as BERT, reads no more)."""
    from transformers import pipeline

    fill = pipeline("fill-mask", model=str(folder), device="cpu", top_k=3)
    report("  fill-mask from the saved folder:")
    for text in FILL_MASK_EXAMPLES:
        text = text.replace("[MASK]", tokenizer.mask_token)
        if len(tokenizer(text)["input_ids"]) > tokenizer.model_max_length:
            continue
        guesses = ", ".join(f"{p['token_str']} ({p['score']:.2f})" for p in fill(text))
        report(f"    {text}  ->  {guesses}")


class BiLMCollator:
    """Batches for the biLM: ``input_ids`` and ``char_ids`` padded on the right (``tokenizer.pad``), ``labels`` =
    the word ids with -100 at padding (the forward LM predicts every word but the first, the backward LM every word
    but the last). On the right whatever ``tokenizer.padding_side`` says: the Trainer counts ``labels[..., 1:]`` as
    the words predicted (``num_items_in_batch``), which they are only when every row starts at position 0 (the model
    refuses a count that is not: ``modeling_elmo.check_trainer_count``)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, examples: list[dict]) -> dict:
        features = [{k: e[k] for k in ("input_ids", "char_ids") if k in e} for e in examples]
        batch = self.tokenizer.pad(features, padding=True, padding_side="right", return_tensors="pt")
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # (B, L)
        return batch


class _TrainEvalCollator:
    """Random masking for training batches; the fixed masks of the held-out set for evaluation batches."""

    def __init__(self, train_collator, eval_collator):
        self.train_collator, self.eval_collator = train_collator, eval_collator

    def __call__(self, examples):
        if "labels" in examples[0]:
            return self.eval_collator(examples)
        return self.train_collator(examples)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo pretrain`` and ``python -m bizoo.scripts.pretrain``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
