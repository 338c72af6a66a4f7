"""Fine-tune a model for named entity recognition (or any BIO/IOBES tagging) on CoNLL-format files and report
strict span F1, precision and recall, overall and per entity type.

Files: one word per line, the word in the first column and its tag in the last (CoNLL-2003: word POS chunk NER),
a blank line between sentences, -DOCSTART- lines skipped. The labels are the tags of the training file ("O"
first, then by entity type); an evaluation tag that never occurs in training is an error (the model could never
predict it): add such sentences to the training file or fix the tags.

Words are tokenized with is_split_into_words=True; each word's tag is learned and predicted on its first
sub-token (the other sub-tokens and the special tokens are ignored), and scoring maps the predictions back to
words. Words cut off by --max-length get no prediction and count as predicted "O" (their entities count as
missed); the number of such words is reported.

The model is a checkpoint folder (its own tokenizer unless --tokenizer) or a bizoo model type to train from
scratch (e.g. lion, with --variant and --model-config; unless --tokenizer, a cased WordPiece tokenizer is trained
on the training sentences). Checkpoints go to --output-dir every --save-steps steps (--resume continues the
newest); at the end the final model, its tokenizer, eval_results.json and a bizoo_results.json record are
written there.

Defaults are sized for a small model on a CPU: 3 epochs, batch 32, peak learning rate 1e-4 (linear decay, 6%
warm-up), --max-length 128 sub-tokens. For a pretrained base-size checkpoint use --learning-rate 2e-5 to 5e-5.

Any dataset with a column of word lists and one of tags works too (--dataset-name: a local dataset folder, e.g.
parquet files, or a Hub dataset id owner/name[@revision], read through datasets as run_ner.py does; --tokens-column
and --tags-column, default tokens and ner_tags; tags as ClassLabel ids or strings); it is scored on its validation
split (or dev, valid, val, test).

examples:
  bizoo finetune-ner --model-name-or-path runs/lion-mlm --data-dir data/conll2003 \\
      --output-dir runs/lion-conll
  bizoo finetune-ner --model-name-or-path runs/lion-mlm --dataset-name eriktks/conll2003 --output-dir runs/lion-ner
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .lib.command import CommandError, command_main, report
from .lib.data import conll_label_list, read_conll
from .lib.dataset_readers import add_dataset_name_arguments, load_splits, split_name, token_classification_data
from .lib.finetuning import (
    PreparedModel,
    add_model_arguments,
    announce_and_push,
    describe_model,
    format_table,
    format_wall_times,
    prepare_model,
    run_in_two_phases,
    run_summary,
    save_final,
    train,
)
from .lib.metrics import span_f1
from .lib.results import record_results
from .lib.training import add_training_arguments, check_training_arguments

PROG = "bizoo finetune-ner"

logger = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = -1  # train for --epochs (3)
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 128

Sentences = list[tuple[list[str], list[str]]]

#: What the evaluation reports (overall strict span scores): the names --metric_for_best_model may take.
EVAL_METRICS = ("f1", "precision", "recall")


# ----------------------------------------------------------------------------------------------------------------
# Library
# ----------------------------------------------------------------------------------------------------------------


def check_eval_tags(labels: list[str], sentences: Sentences, path: Path) -> None:
    """``CommandError`` if ``sentences`` use a tag that is not in ``labels`` (the training tags)."""
    known = set(labels)
    unknown: dict[str, int] = {}
    for index, (_, tags) in enumerate(sentences):
        for tag in tags:
            if tag not in known:
                unknown.setdefault(tag, index)
    if unknown:
        found = ", ".join(f"{tag!r} (first in sentence {index + 1})" for tag, index in sorted(unknown.items()))
        raise CommandError(
            f"{path} uses tag(s) that never occur in the training file: {found}; the model could not predict them. "
            f"Training tags: {', '.join(labels)}"
        )


def load_sentences(args: argparse.Namespace) -> tuple[dict[str, Sentences], Path, Path]:
    """{"train", "eval"} sentences from the CoNLL files in --data-dir or from --dataset-name, and the names the
    errors give them (the files, or "<dataset>/train" and "<dataset>/validation")."""
    if args.dataset_name is not None:
        data_only = [option for option, value, default in (
            ("--train-file", args.train_file, "train.txt"), ("--eval-file", args.eval_file, "valid.txt"),
        ) if value != default]
        if data_only:
            raise CommandError(f"{', '.join(data_only)} name CoNLL files in --data-dir, not splits of --dataset-name")
        splits = load_splits(args.dataset_name, args.dataset_config_name)
        loaded = token_classification_data(splits, args.tokens_column, args.tags_column)
        name = Path(args.dataset_name)
        return {"train": loaded["train"], "eval": loaded["validation"]}, name / "train", name / split_name(
            splits["validation"])
    given = [option for option, value, default in (
        ("--dataset-config-name", args.dataset_config_name, None), ("--tokens-column", args.tokens_column, "tokens"),
        ("--tags-column", args.tags_column, "ner_tags"),
    ) if value != default]
    if given:
        raise CommandError(f"{', '.join(given)}: options of --dataset-name, not of CoNLL files")
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise CommandError(f"--data-dir {str(data_dir)!r} does not exist or is not a folder")
    train_path, eval_path = data_dir / args.train_file, data_dir / args.eval_file
    for option, name, path in (("--train-file", args.train_file, train_path),
                               ("--eval-file", args.eval_file, eval_path)):
        if not path.exists():
            raise CommandError(
                f"--data-dir {str(data_dir)!r} holds no {name} ({option}; CoNLL-2003: train.txt and valid.txt)"
            )
    return {"train": read_conll(train_path), "eval": read_conll(eval_path)}, train_path, eval_path


#: What the recorded tagging metrics are (the model card's metric names).
METRIC_NAMES = {"f1": "strict span F1 (micro)", "precision": "strict span precision", "recall": "strict span recall"}


def eval_split(eval_file: str) -> str:
    """The split an evaluation file is: "test" for test*.txt (CoNLL-2003's testa/testb too), "validation" for
    valid*/dev*, else the file's stem."""
    stem = Path(eval_file).stem.lower()
    if stem.startswith("test"):
        return "test"
    if stem.startswith(("valid", "dev")):
        return "validation"
    return Path(eval_file).stem


def dataset_card(data_dir: Path, eval_file: str = "valid.txt") -> dict[str, str]:
    """The ``dataset`` of the result record: CoNLL-2003 for a folder of that name, else the folder's name; the split
    the evaluation file is."""
    name = data_dir.resolve().name
    split = eval_split(eval_file)
    if name.lower().replace("-", "").replace("_", "") == "conll2003":
        return {"name": "CoNLL-2003", "type": "conll2003", "split": split}
    return {"name": name, "type": name, "split": split}


def encode_words(tokenizer, sentences: Sentences, label2id: dict[str, int], max_length: int,
                 token_type_ids: bool = True) -> tuple[list[dict[str, Any]], list[list[int | None]]]:
    """Tokenize pre-split words; the tag goes on each word's first sub-token, -100 everywhere else.

    Returns the features and, per sentence, the position of each word's first sub-token (None for a word that
    was truncated away or produced no token).
    """
    kwargs = {} if token_type_ids else {"return_token_type_ids": False}
    encoded = tokenizer(
        [words for words, _ in sentences], is_split_into_words=True, truncation=True, max_length=max_length, **kwargs
    )
    keys = list(encoded.keys())
    features, first_positions = [], []
    for index, (words, tags) in enumerate(sentences):
        labels: list[int] = []
        first: list[int | None] = [None] * len(words)
        previous = None
        for position, word in enumerate(encoded.word_ids(index)):
            if word is None or word == previous:
                labels.append(-100)
            else:
                labels.append(label2id[tags[word]])
                first[word] = position
            previous = word
        feature = {key: encoded[key][index] for key in keys}
        feature["labels"] = labels
        features.append(feature)
        first_positions.append(first)
    return features, first_positions


def word_predictions(logits: np.ndarray, first_positions: list[list[int | None]],
                     id2label: dict[int, str]) -> list[list[str]]:
    """Per sentence, the tag predicted on each word's first sub-token ("O" for a word without one)."""
    predicted = np.asarray(logits).argmax(axis=-1)  # (N, L)
    return [
        [id2label[int(predicted[i, position])] if position is not None else "O" for position in positions]
        for i, positions in enumerate(first_positions)
    ]


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", metavar="DIR", help="folder holding the CoNLL-format files")
    add_dataset_name_arguments(source, data, "a dataset with word lists and tags instead")
    data.add_argument(
        "--tokens-column", default="tokens", metavar="COLUMN",
        help="with --dataset-name: the column of word lists (default: %(default)s)",
    )
    data.add_argument(
        "--tags-column", default="ner_tags", metavar="COLUMN",
        help="with --dataset-name: the column of tags, ClassLabel ids or strings (default: %(default)s)",
    )
    data.add_argument(
        "--train-file", default="train.txt", metavar="FILE",
        help="training file, relative to --data-dir (default: %(default)s)",
    )
    data.add_argument(
        "--eval-file", default="valid.txt", metavar="FILE",
        help="evaluation file, relative to --data-dir; its tags must all occur in the training file; words cut "
        "off by --max-length are scored as predicted 'O' (default: %(default)s)",
    )
    add_model_arguments(parser)
    add_training_arguments(
        parser,
        max_steps=DEFAULT_MAX_STEPS,
        learning_rate=DEFAULT_LEARNING_RATE,
        batch_size=DEFAULT_BATCH_SIZE,
        max_length=DEFAULT_MAX_LENGTH,
        task="ner",
    )


def _prepare(
    args: argparse.Namespace,
) -> tuple[dict[str, Sentences], list[str], dict[str, tuple], tuple[str, dict[str, str]], PreparedModel]:
    """Every check, in order: options, data, model, output folder, tokenizer, vocabulary; then the encoding.
    Writes nothing."""
    from transformers import AutoModelForTokenClassification

    check_training_arguments(args, metrics=EVAL_METRICS)
    splits, train_path, eval_path = load_sentences(args)
    labels = conll_label_list(splits["train"])
    check_eval_tags(labels, splits["eval"], eval_path)
    for path, sentences in ((train_path, splits["train"]), (eval_path, splits["eval"])):
        try:
            tags = [tags for _, tags in sentences]
            span_f1(tags, tags)  # the tags must follow one scheme (IOB2, IOBES or BILOU)
        except ValueError as err:
            raise CommandError(f"{path}: {err}") from None
    id2label = dict(enumerate(labels))
    config = {"id2label": id2label, "label2id": {tag: i for i, tag in id2label.items()}}  # id2label sets num_labels
    prepared = prepare_model(
        args,
        AutoModelForTokenClassification,
        config,
        lambda: [" ".join(words) for words, _ in splits["train"]],
        need_fast_tokenizer=True,
        training_sentences=lambda: [words for words, _ in splits["train"]],
    )
    token_types = getattr(prepared.model.config, "type_vocab_size", 1) != 0
    label2id = config["label2id"]
    encoded = {
        name: encode_words(prepared.tokenizer, sentences, label2id, args.max_length, token_types)
        for name, sentences in splits.items()
    }
    return splits, labels, encoded, evaluated_split(args, eval_path), prepared


def evaluated_split(args: argparse.Namespace, eval_path: Path) -> tuple[str, dict[str, str]]:
    """What the evaluation scores, as the report names it (the CoNLL file, or "<dataset> <split>"), and as the
    result record's ``dataset`` (name, type, true split name)."""
    if args.dataset_name is not None:
        split = eval_path.name
        return f"{args.dataset_name} {split}", {"name": args.dataset_name, "type": args.dataset_name, "split": split}
    return args.eval_file, dataset_card(Path(args.data_dir), args.eval_file)


def _train_and_report(args: argparse.Namespace, splits: dict[str, Sentences], labels: list[str],
                      encoded: dict[str, tuple], evaluated: tuple[str, dict[str, str]], prepared: PreparedModel,
                      started: float) -> int:
    from transformers import DataCollatorForTokenClassification

    tokenizer = prepared.tokenizer
    id2label = dict(enumerate(labels))
    train_features, _ = encoded["train"]
    eval_features, first_positions = encoded["eval"]
    n_words = sum(len(words) for words, _ in splits["eval"])
    truncated = sum(position is None for positions in first_positions for position in positions)
    logger.info(
        f"{'CoNLL' if args.dataset_name is None else args.dataset_name}: train {len(splits['train']):,} sentences, "
        f"eval {len(splits['eval']):,} sentences "
        f"({n_words:,} words); {len(labels)} labels: {', '.join(labels)}"
    )
    logger.info(describe_model(prepared))

    collator = DataCollatorForTokenClassification(tokenizer)
    gold = [tags for _, tags in splits["eval"]]

    def span_scores(predictions) -> dict:
        """Span F1 of the evaluation split from the Trainer's predictions: during training (--eval_strategy,
        --metric_for_best_model) and at the end alike."""
        logits = predictions[0] if isinstance(predictions, tuple) else predictions  # (N, L, K), -100 past each batch
        return span_f1(gold, word_predictions(logits, first_positions, id2label))  # a CRF's argmax: its Viterbi path

    def compute_metrics(prediction) -> dict[str, float]:
        scores = span_scores(prediction.predictions)
        return {name: scores[name] for name in EVAL_METRICS}

    trainer, train_output, train_seconds = train(args, prepared, train_features, collator, eval_dataset=eval_features,
                                                 compute_metrics=compute_metrics)

    scores = span_scores(trainer.predict(eval_features).predictions)
    total_seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():  # a distributed run: the first process reports and saves
        return 0

    rows = [["overall", scores["precision"], scores["recall"], scores["f1"], scores["support"]]]
    rows += [[kind, s["precision"], s["recall"], s["f1"], s["support"]] for kind, s in scores["per_type"].items()]
    report()
    evaluated, dataset = evaluated
    report(f"{evaluated} ({prepared.source.describe()})")
    report(format_table(["entity", "precision", "recall", "f1", "support"], rows))
    if truncated:
        report(f"{truncated:,} of {n_words:,} words were cut off by --max-length {args.max_length} and scored as 'O'")
    report(format_wall_times(train_seconds, total_seconds, train_output.global_step))

    results = {
        "task": "token-classification",
        "dataset": dataset["name"],
        "eval_file": evaluated,
        "metrics": scores,
        "labels": labels,
        "num_train_examples": len(splits["train"]),
        "num_eval_examples": len(splits["eval"]),
        "num_eval_words": n_words,
        "truncated_words": truncated,
        **run_summary(args, prepared, train_output, train_seconds, total_seconds),
    }
    output_dir = save_final(prepared, results, trainer.state.log_history)
    record_results(
        output_dir,
        task={"type": "token-classification", "name": "Named entity recognition"},
        dataset=dataset,
        metrics={"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"]},
        metric_names=METRIC_NAMES,
    )
    announce_and_push(trainer, prepared, output_dir)
    return 0


def run(args: argparse.Namespace) -> int:
    """Fine-tune and evaluate as ``args`` say; 0 on success, 2 on bad input (found before training starts)."""
    return run_in_two_phases(PROG, args, _prepare, _train_and_report)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo finetune-ner`` and ``python -m bizoo.scripts.finetune_ner``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
