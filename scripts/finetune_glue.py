"""Fine-tune a model on a GLUE task and report the task's official dev metrics.

The model is a checkpoint folder (e.g. from bizoo pretrain; its own tokenizer is used unless --tokenizer) or a
bizoo model type to train from scratch (e.g. lion: then --variant, --model-config and, unless --tokenizer, a
WordPiece tokenizer trained on the task's training sentences). All nine tasks: CoLA, SST-2, MRPC, QQP, STS-B
(regression), MNLI (scored on dev_matched and dev_mismatched), QNLI, RTE, WNLI, read from the original GLUE
TSV files (--data-dir: the GLUE folder holding <TASK>/train.tsv, or the task's folder) or from the Hub
(--from-hub, nyu-mll/glue). Any other text-classification dataset too, as transformers' run_glue.py takes it
(without --task): --train-file/--validation-file (CSV, TSV, JSON lines or parquet) or --dataset-name (a local
dataset folder or a Hub dataset id, read through datasets), its text in one or two columns (sentence1/sentence2,
sentence or text, or --text-columns) and its label in --label-column (class names, class ids or, for a
regression, float scores); scored by accuracy and macro F1 (regression: Pearson and Spearman).

Sentence pairs are encoded as tokenizer(sentence1, sentence2, truncation=True, max_length=--max-length) and
batches padded to their longest sequence. Checkpoints go to --output-dir every --save-steps steps (--resume
continues the newest); at the end the final model, its tokenizer, eval_results.json (metrics, wall times,
example and step counts), all_results.json (run_glue.py's flat record: train_*, eval_*, MNLI's mismatched eval_*_mm)
and a bizoo_results.json record (for bizoo export's model card) are written there.

run_glue.py's Hub and cache options work as there: --cache_dir (where Hub snapshots and datasets' files are cached),
--model_revision (of --model-name-or-path and --tokenizer), --token, --trust_remote_code, --overwrite_cache and
--ignore_mismatched_sizes (a checkpoint's head for other labels initialised anew).

--do_predict (run_glue.py's switch) then predicts the test split with the final model and writes what run_glue.py
writes: predict_results_<task>.txt (<task> as run_glue.py names it: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte,
wnli; MNLI also predict_results_mnli-mm.txt for test_mismatched; another dataset: predict_results.txt), a header
"index<TAB>prediction" and one row per test example in order, the index counting from 0 and the prediction the
class name (the model's id2label) or, for STS-B and any regression, the score with 3 decimals. The test split is
GLUE's test.tsv (MNLI: test_matched.tsv, test_mismatched.tsv) in --data-dir, the Hub's test split(s) (--from-hub),
--test-file (with --train-file) or a --dataset-name dataset's test split; --max-predict-samples N predicts its first N
examples. GLUE's test labels are hidden; when another dataset's test split has labels, its scores are reported
too and written to predict_results.json (prefixed predict_, as the Trainer names them).

As in run_glue.py and run_ner.py, once any of --do_train, --do_eval, --do_predict is given the command trains only
with --do_train: --do_eval or --do_predict alone evaluate (and predict with) the --model-name-or-path checkpoint as it
is, a checkpoint fine-tuned for the task (a model type, a checkpoint without the task's head or with other labels
is refused). Without any of them it trains, then evaluates.

Defaults are sized for a small model on a CPU: 3 epochs, batch 32, peak learning rate 1e-4 (linear decay,
6% warm-up), --max-length 128. With them a 2-layer, 128-wide LION trained from scratch (--model-config
hidden_size=128 num_hidden_layers=2 num_attention_heads=4 intermediate_size=512) takes about 6.5 minutes for
SST-2 on 2 CPU cores and reaches about 81% dev accuracy. For a pretrained base-size checkpoint use
--learning-rate 2e-5 to 5e-5.

examples:
  bizoo finetune-glue --model-name-or-path runs/lion-mlm --task rte --data-dir data/glue \\
      --output-dir runs/lion-rte
  bizoo finetune-glue --model-name-or-path lion --variant d --task sst2 --data-dir data/glue \\
      --model-config hidden_size=256 num_hidden_layers=4 num_attention_heads=4 intermediate_size=1024 \\
      --output-dir runs/lion-d-sst2
  bizoo finetune-glue --model-name-or-path runs/lion-mlm --train-file reviews_train.csv \\
      --validation-file reviews_dev.csv --text-columns review --label-column stars --output-dir runs/lion-reviews
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from .lib.command import CommandError, command_main, report
from .lib.data import GlueTask, glue_task, load_glue_from_hub, load_glue_split
from .lib.dataset_readers import (
    add_dataset_name_arguments,
    dataset_type,
    describe,
    load_splits,
    split_name,
    text_classification_data,
)
from .lib.finetuning import (
    PREDICT_RESULTS_FILE,
    PreparedModel,
    add_model_arguments,
    add_predict_arguments,
    announce_and_push,
    check_predict_options,
    describe_model,
    format_table,
    format_wall_times,
    predict_results,
    predict_test_split,
    prepare_model,
    run_in_two_phases,
    run_summary,
    save_final,
    train,
)
from .lib.metrics import glue_metrics, predicted, text_classification_metrics
from .lib.results import ALL_RESULTS_FILE, all_results, record_results
from .lib.sources import HubOptions, hub_options
from .lib.training import (
    add_training_arguments,
    bool_flag,
    check_best_model_metric,
    check_hub_options,
    check_training_arguments,
    first_samples,
    max_length_padding,
)

PROG = "bizoo finetune-glue"

logger = logging.getLogger(__name__)

# Training defaults: a small model on SST-2 trains in minutes on a 2-core CPU.
DEFAULT_MAX_STEPS = -1  # train for --epochs (3)
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 128

#: What GLUE's recorded metrics are (the model card's metric names): MRPC's and QQP's F1 is the positive class's.
GLUE_METRIC_NAMES = {"f1": "F1 (positive class)", "matthews_correlation": "Matthews correlation"}

#: What each task is, for the model card's ``task.name``.
TASK_NAMES = {
    "CoLA": "Linguistic acceptability",
    "SST-2": "Sentiment analysis",
    "MRPC": "Paraphrase detection",
    "QQP": "Paraphrase detection",
    "STS-B": "Semantic textual similarity",
    "MNLI": "Natural language inference",
    "QNLI": "Natural language inference",
    "RTE": "Natural language inference",
    "WNLI": "Natural language inference",
}


# ----------------------------------------------------------------------------------------------------------------
# Library
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetTask:
    """A text-classification dataset other than GLUE's nine tasks (read by ``lib.dataset_readers``), with the fields
    of ``GlueTask`` this command reads; scored by ``text_classification_metrics``."""

    name: str
    is_pair: bool
    is_regression: bool
    label_names: tuple[str, ...]  # empty for a regression
    dataset_type: str  # the model card's dataset type: the Hub id, or the file format
    eval_split_name: str = "validation"  # the evaluation split's name in the dataset
    eval_splits: tuple[str, ...] = ("dev",)
    test_splits: tuple[str, ...] = ("test",)  # what --do_predict predicts

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("pearson", "spearman") if self.is_regression else ("accuracy", "f1")

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))


def score(task: GlueTask | DatasetTask, predictions, labels) -> dict[str, float]:
    """The task's metrics: GLUE's official ones, or accuracy and macro F1 (Pearson, Spearman) for another dataset."""
    if isinstance(task, DatasetTask):
        return text_classification_metrics(predictions, labels, len(task.label_names))
    return glue_metrics(task.name, predictions, labels)


def load_dataset_task(args: argparse.Namespace,
                      predict: bool = False) -> tuple[DatasetTask, dict[str, list[dict[str, Any]]]]:
    """A dataset named by --dataset-name or --train-file/--validation-file, as a task and its "train"/"dev"
    examples; with ``predict`` (--do_predict) also its "test" examples (the dataset's test split or --test-file;
    ``label`` None in a split without labels)."""
    splits = load_splits(args.dataset_name, args.dataset_config_name, args.train_file, args.validation_file,
                         test=predict, test_file=args.test_file, hub=hub_options(args))
    data = text_classification_data(splits, args.text_columns, args.label_column or "label")
    name = describe(args.dataset_name, args.train_file)
    task = DatasetTask(name, data.is_pair, data.is_regression, data.label_names,
                       dataset_type(args.dataset_name, args.train_file), split_name(splits["validation"]))
    examples = {"train": data.splits["train"], "dev": data.splits["validation"]}
    if predict:
        examples["test"] = data.splits["test"]
    return task, examples


def test_splits(task: GlueTask | DatasetTask) -> tuple[str, ...]:
    """The split(s) --do_predict predicts: GLUE's "test" (MNLI: "test_matched", "test_mismatched"), another
    dataset's "test"."""
    if isinstance(task, DatasetTask):
        return task.test_splits
    return tuple(split for split in task.splits if split.startswith("test"))


def predict_file(task: GlueTask | DatasetTask, split: str) -> str:
    """The file run_glue.py writes a test split's predictions to: ``predict_results_<task>.txt`` with <task> the
    task's run_glue.py name (its Hub configuration: sst2, stsb, mnli ...; MNLI's test_mismatched "mnli-mm");
    ``predict_results.txt`` for another dataset (run_glue.py, without a task, writes "predict_results_None.txt")."""
    if isinstance(task, DatasetTask):
        return "predict_results.txt"
    name = f"{task.hub_config}-mm" if split.endswith("_mismatched") else task.hub_config
    return f"predict_results_{name}.txt"


def load_task_data(task: GlueTask, data_dir: str | None, from_hub: bool,
                   predict: bool = False, hub: HubOptions | None = None) -> dict[str, list[dict[str, Any]]]:
    """The training split and the evaluation split(s) of ``task``: ``{"train": [...], "dev": [...]}`` (MNLI:
    ``dev_matched`` and ``dev_mismatched``); with ``predict`` (--do_predict) also the test split(s)
    (``test_splits``), whose labels GLUE keeps hidden: their ``label`` is None. Raises ``CommandError`` for a
    missing test split (naming the file or Hub split looked for), a split without examples, or a training or
    evaluation split without labels. ``hub``: the Hub and cache options of --from-hub's ``load_dataset``
    (--cache_dir, --token, --overwrite_cache)."""
    splits: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", *task.eval_splits, *(test_splits(task) if predict else ())):
        test = split.startswith("test")
        if from_hub:
            try:
                examples = load_glue_from_hub(task.name, split, **(hub or HubOptions()).dataset_kwargs())
            except Exception as err:  # noqa: BLE001  (network, cache and dataset errors of many kinds)
                looked_for = f"--do_predict: the Hub's {hub_split_name(split)} split: " if test else ""
                raise CommandError(f"cannot read GLUE {task.name} {split} from the Hub ({looked_for}{err})") from None
        else:
            try:
                examples = load_glue_split(task.name, data_dir, split)
            except FileNotFoundError as err:
                if not test:
                    raise
                raise CommandError(f"--do_predict predicts GLUE {task.name}'s {split} split, but {err} (GLUE's "
                                   f"{task.splits[split]}, which run_glue.py predicts)") from None
        if not examples:
            raise CommandError(f"GLUE {task.name} {split} holds no examples")
        if test:  # hidden labels: None in the TSV files, -1 on the Hub (read as a score -1.0 for STS-B)
            examples = [{**example, "label": None} for example in examples]
        elif any(example["label"] is None for example in examples):
            raise CommandError(f"GLUE {task.name} {split} has unlabelled examples; it cannot be trained or scored on")
        splits[split] = examples
    return splits


def task_config(task: GlueTask | DatasetTask) -> dict[str, Any]:
    """The configuration fields a task sets: the number of outputs, label names and the loss."""
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    id2label = task.id2label  # it sets num_labels too
    return {
        "id2label": id2label,
        "label2id": {name: index for index, name in id2label.items()},
        "problem_type": "single_label_classification",
    }


def training_texts(task: GlueTask, examples: list[dict[str, Any]]) -> list[str]:
    """Every sentence of ``examples`` (both sides of a pair): what a tokenizer trained from scratch reads."""
    texts = [example["sentence1"] for example in examples]
    if task.is_pair:
        texts += [example["sentence2"] for example in examples]
    return texts


def encode(task: GlueTask, tokenizer, examples: list[dict[str, Any]], max_length: int,
           token_type_ids: bool = True) -> list[dict[str, Any]]:
    """Tokenize ``examples`` (pairs as ``tokenizer(s1, s2)``), truncated to ``max_length``, with ``labels`` (none
    for an example whose label is None: an unlabelled test split)."""
    first = [example["sentence1"] for example in examples]
    second = [example["sentence2"] for example in examples] if task.is_pair else None
    kwargs = {} if token_type_ids else {"return_token_type_ids": False}
    encoded = tokenizer(first, second, truncation=True, max_length=max_length, **kwargs)
    keys = list(encoded.keys())
    features = []
    for index, example in enumerate(examples):
        feature = {key: encoded[key][index] for key in keys}
        if example["label"] is not None:
            feature["labels"] = float(example["label"]) if task.is_regression else int(example["label"])
        features.append(feature)
    return features


def hub_split_name(split: str) -> str:
    """Our split name -> the Hub's ("dev" -> "validation", "dev_matched" -> "validation_matched")."""
    return split.replace("dev", "validation")


def predicted_values(task: GlueTask | DatasetTask, logits, id2label: dict[int, str]) -> list[str | float]:
    """What each example is predicted (``metrics.predicted``, as the scores read it): the class name of the argmax,
    or for a regression the score."""
    values = predicted(logits, task.is_regression)  # (N,)
    if task.is_regression:
        return [float(value) for value in values]
    return [id2label[int(index)] for index in values]


def predictions_text(values: list[str | float]) -> str:
    """run_glue.py's predict_results file: "index<TAB>prediction", then one row per example (a score with 3
    decimals)."""
    rows = [f"{index}\t{value:.3f}" if isinstance(value, float) else f"{index}\t{value}"
            for index, value in enumerate(values)]
    return "".join(f"{row}\n" for row in ["index\tprediction", *rows])


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--task", "--task_name", "--task-name",
        help="GLUE task: CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE or WNLI (any case, hyphen optional); "
        "without it, another dataset given by --train-file or --dataset-name",
    )
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data-dir", metavar="DIR",
        help="the GLUE folder holding <TASK>/train.tsv and dev.tsv (or the task's own folder)",
    )
    source.add_argument(
        "--from-hub", action="store_true", help="read the task from the Hugging Face Hub (nyu-mll/glue)"
    )
    source.add_argument(
        "--train-file", "--train_file", metavar="FILE",
        help="another dataset's training examples: a CSV, TSV, JSON (lines) or parquet file",
    )
    data.add_argument(
        "--test-file", "--test_file", metavar="FILE",
        help="with --train-file and --do_predict: the test examples (the same format; labels optional)",
    )
    add_dataset_name_arguments(source, data, "another dataset")
    data.add_argument(
        "--validation-file", "--validation_file", metavar="FILE", help="with --train-file: the evaluation examples"
    )
    data.add_argument(
        "--text-columns", nargs="+", metavar="COLUMN",
        help="another dataset's text column(s), one or a pair (default: sentence1 [sentence2], sentence or text)",
    )
    data.add_argument(
        "--label-column", metavar="COLUMN",
        help="another dataset's label column: class names, class ids or float scores (default: label)",
    )
    data.add_argument(
        "--pad-to-max-length", "--pad_to_max_length", **bool_flag(
            help="run_glue.py's option: pad every example to --max-length instead of to the longest of its batch "
            "(slower; bizoo's models do not depend on padding: without dropout, the same scores; dropout masks are "
            "drawn over the padded shape, so a run with dropout draws others). run_glue.py pads by default "
            "(--pad_to_max_length false: per batch); bizoo pads per batch unless it is given"),
    )
    data.add_argument("--no-pad-to-max-length", "--no_pad_to_max_length", dest="pad_to_max_length",
                      action="store_false", default=argparse.SUPPRESS,
                      help="run_glue.py's --pad_to_max_length false: pad to the longest example of each batch")
    add_model_arguments(parser)
    add_training_arguments(
        parser,
        max_steps=DEFAULT_MAX_STEPS,
        learning_rate=DEFAULT_LEARNING_RATE,
        batch_size=DEFAULT_BATCH_SIZE,
        max_length=DEFAULT_MAX_LENGTH,
        task="glue",
    )
    add_predict_arguments(
        parser, "predict the test split (GLUE: test.tsv, MNLI test_matched.tsv and test_mismatched.tsv; --from-hub: "
        "the Hub's test split(s); --test-file; --dataset-name: its test split) and write predict_results_<task>.txt "
        "(MNLI also predict_results_mnli-mm.txt; another dataset: predict_results.txt) as run_glue.py does: "
        "index<TAB>prediction, the class name or the score (3 decimals); a test split with labels is scored too "
        "(predict_results.json)",
    )


def sample_split(name: str) -> str:
    """Which --max-*-samples option cuts the split ``name``: "train", "predict" (a test split) or "eval"."""
    return "train" if name == "train" else "predict" if name.startswith("test") else "eval"


def _prepare(args: argparse.Namespace) -> tuple[GlueTask | DatasetTask, dict[str, list], dict[str, list],
                                                PreparedModel]:
    """Every check, in order: options, data, model, output folder, tokenizer, vocabulary; then the encoding.
    Writes nothing."""
    from transformers import AutoModelForSequenceClassification

    check_training_arguments(args)
    check_hub_options(args)
    predict = check_predict_options(args)
    glue = args.data_dir is not None or args.from_hub
    if glue != (args.task is not None):
        raise CommandError(
            "--data-dir and --from-hub read a GLUE task: name it with --task" if glue else
            "--task names a GLUE task (read with --data-dir or --from-hub); another dataset (--train-file or "
            "--dataset-name) goes without --task"
        )
    given = [option for option, value in (
        ("--validation-file", args.validation_file), ("--dataset-config-name", args.dataset_config_name),
        ("--text-columns", args.text_columns), ("--label-column", args.label_column),
        ("--test-file", args.test_file),
    ) if value is not None]
    if glue and given:
        raise CommandError(f"{', '.join(given)}: options of another dataset, not of a GLUE task")
    for option, value in (("--validation-file", args.validation_file), ("--test-file", args.test_file)):
        if value is not None and args.train_file is None:
            raise CommandError(f"{option} goes with --train-file (a --dataset-name dataset's own splits are read)")
    if args.dataset_config_name is not None and args.dataset_name is None:
        raise CommandError("--dataset-config-name goes with --dataset-name")
    if glue:
        task = glue_task(args.task)
        splits = load_task_data(task, args.data_dir, args.from_hub, predict, hub_options(args))
    else:
        task, splits = load_dataset_task(args, predict)
    splits = {name: first_samples(examples, args, sample_split(name), f"{name} examples")
              for name, examples in splits.items()}
    check_best_model_metric(args, task.metrics)
    prepared = prepare_model(
        args,
        AutoModelForSequenceClassification,
        task_config(task),
        lambda: training_texts(task, splits["train"]),
        sentence_pairs=task.is_pair,
    )
    token_types = getattr(prepared.model.config, "type_vocab_size", 1) != 0
    encoded = {
        name: encode(task, prepared.tokenizer, examples, args.max_length, token_types)
        for name, examples in splits.items()
    }
    return task, splits, encoded, prepared


def _train_and_report(args: argparse.Namespace, task: GlueTask | DatasetTask, splits: dict[str, list],
                      encoded: dict[str, list],
                      prepared: PreparedModel, started: float) -> int:
    from transformers import DataCollatorWithPadding

    tokenizer = prepared.tokenizer
    title = f"GLUE {task.name}" if isinstance(task, GlueTask) else task.name
    logger.info(f"{title}: " + ", ".join(f"{name} {len(examples):,}" for name, examples in splits.items()))
    logger.info(describe_model(prepared))

    collator = DataCollatorWithPadding(tokenizer, **max_length_padding(args))  # (B, longest) or (B, --max-length)
    # Evaluation during training (--eval_strategy) and the best checkpoint (--metric_for_best_model): on the first
    # evaluation split (MNLI: dev_matched), scored as the final evaluation is.
    trainer, train_output, train_seconds = train(
        args, prepared, encoded["train"], collator, eval_dataset=encoded[task.eval_splits[0]],
        compute_metrics=lambda prediction: score(task, prediction.predictions, prediction.label_ids),
    )

    metrics: dict[str, dict[str, float]] = {}
    losses: dict[str, float] = {}
    for split in task.eval_splits:
        output = trainer.predict(encoded[split])
        labels = [example["label"] for example in splits[split]]
        metrics[split] = score(task, output.predictions, labels)
        losses[split] = output.metrics.get("test_loss")
    # --do_predict: the final model on the test split(s), as run_glue.py predicts them; scored where labelled
    id2label = prepared.model.config.id2label
    files: dict[str, str] = {}
    predict_metrics: dict[str, dict[str, Any]] = {}  # predict_results.json's, prefixed
    test_scores: dict[str, dict[str, Any]] = {}  # the same scores as the evaluation's, for bizoo_results.json
    for split in [name for name in test_splits(task) if name in encoded]:
        output = predict_test_split(trainer, encoded[split])
        files[predict_file(task, split)] = predictions_text(predicted_values(task, output.predictions, id2label))
        labels = [example["label"] for example in splits[split]]
        if all(label is not None for label in labels):
            test_scores[split] = score(task, output.predictions, labels)
            predict_metrics[split] = predict_results(output.metrics, test_scores[split], len(labels))
    if predict_metrics:  # one labelled test split: another dataset's (GLUE's test labels are hidden)
        files[PREDICT_RESULTS_FILE] = json.dumps(next(iter(predict_metrics.values())), indent=2) + "\n"
    evaluations = [("_mm" if split.endswith("_mismatched") else "", {**metrics[split], "loss": losses[split]},
                    len(splits[split])) for split in task.eval_splits]  # run_glue.py's names, MNLI's "_mm"
    files[ALL_RESULTS_FILE] = all_results(trainer, train_output, len(splits["train"]), evaluations,
                                          next(iter(predict_metrics.values()), None))
    total_seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():  # a distributed run: the first process reports and saves
        return 0

    rows = [[split, len(splits[split]), *(metrics[split][name] for name in task.metrics)] for split in task.eval_splits]
    rows += [[split, len(splits[split]), *(scores[f"predict_{name}"] for name in task.metrics)]
             for split, scores in predict_metrics.items()]
    report()
    report(f"{title} ({prepared.source.describe()})")
    report(format_table(["split", "examples", *task.metrics], rows))
    for split in [name for name in test_splits(task) if name in encoded and name not in predict_metrics]:
        report(f"{split}: {len(splits[split]):,} examples predicted, without labels to score")
    report(format_wall_times(train_seconds, total_seconds, train_output.global_step))

    results = {
        "task": task.name,
        "metrics": metrics,
        "num_train_examples": len(splits["train"]),
        "num_eval_examples": {split: len(splits[split]) for split in task.eval_splits},
        **({"num_predict_examples": {split: len(splits[split]) for split in test_splits(task) if split in splits}}
           if files else {}),
        **({"predict_metrics": predict_metrics} if predict_metrics else {}),
        **run_summary(args, prepared, train_output, train_seconds, total_seconds, trainer.args),
    }
    output_dir = save_final(prepared, results, trainer.state.log_history, files)
    for split in task.eval_splits:
        if isinstance(task, GlueTask):
            dataset = {"name": f"GLUE {task.name}", "type": "nyu-mll/glue", "config": task.hub_config,
                       "split": hub_split_name(split)}
        else:
            dataset = {"name": task.name, "type": task.dataset_type, "split": task.eval_split_name}
        record_results(
            output_dir,
            task={"type": "text-classification", "name": TASK_NAMES.get(task.name, "Text classification")},
            dataset=dataset,
            metrics=metrics[split],
            metric_names={"f1": "macro F1"} if isinstance(task, DatasetTask) else GLUE_METRIC_NAMES,
        )
    for split, scores in test_scores.items():  # a labelled test split: in the model card beside the evaluation
        record_results(
            output_dir,
            task={"type": "text-classification", "name": TASK_NAMES.get(task.name, "Text classification")},
            dataset={"name": task.name, "type": task.dataset_type, "split": split},
            metrics=scores,
            metric_names={"f1": "macro F1"} if isinstance(task, DatasetTask) else GLUE_METRIC_NAMES,
        )
    announce_and_push(trainer, prepared, output_dir, list(files))
    return 0


def run(args: argparse.Namespace) -> int:
    """Fine-tune and evaluate as ``args`` say; 0 on success, 2 on bad input (found before training starts)."""
    return run_in_two_phases(PROG, args, _prepare, _train_and_report)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo finetune-glue`` and ``python -m bizoo.scripts.finetune_glue``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
