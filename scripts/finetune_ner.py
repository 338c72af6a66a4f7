"""Fine-tune a tagger on CoNLL-format files and score it: named entity recognition (--task ner, the default),
chunking (--task chunk) or part-of-speech tagging (--task pos).

How each task is scored:

* ner, chunk: the tags mark spans (IOB2, IOBES or BILOU; the tags must follow one scheme). Strict span F1,
  precision and recall, overall and per type (seqeval's mode="strict": only well-formed chunks count), and beside
  them the same scores in seqeval's default mode (conlleval's lenient chunks, where an I-X after O opens a chunk:
  the numbers transformers' run_ner.py reports), each row with its own support (the gold chunks it reads).

Span tags are checked before training, so that no gold chunk is silently left out of the strict scores:

* IOB1 (many copies of CoNLL-2003: "EU I-ORG", "Peter I-PER Blackburn I-PER", B-X only between two adjacent X
  chunks; a file whose chunks open with I-X after O, another type or the sentence start, and never with B-X there)
  is read as IOB2: each I-X that opens a chunk becomes B-X, in the training and the evaluation sentences alike, with
  a warning naming the file. Why convert rather than refuse: the two spellings mark the same chunks (those conlleval
  reads in either, so the seqeval-default-mode scores do not change), CoNLL users expect the usual CoNLL-2003 copies
  to work (the other toolkits convert them too), and IOB2 is what the rest needs: strict scoring drops every chunk
  that opens with I-, and a CRF head (tag_scheme auto, read from the labels) takes a complete B/I label set for IOB2
  and would forbid the O -> I-X transitions IOB1 gold uses. So the model learns, predicts, is scored and is saved
  with IOB2 labels (its id2label), and the result record lists the files read so (iob1_read_as_iob2).
* Tags that open chunks both ways (I-X after O as in IOB1, and B-X after O as in IOB2) follow neither scheme and
  are refused, naming the first of each; so is an IOBES or BILOU tag outside every well-formed chunk (B-X I-X not
  closed by E-X/L-X, an I-X or E-X/L-X without its B-X), and the two files tagged in different schemes.
* pos: the tags are word classes, not spans: token accuracy, and precision/recall/F1 per tag. A CRF head learns
  every transition (tag_scheme "none"; another tag_scheme in --model-config is refused).

Files (--format, default auto: CoNLL-U for a file whose name ends in .conllu, else CoNLL columns):

* conll: one word per line, the word in the first column and its tag in the column of the --task, a blank line
  between sentences, -DOCSTART- lines skipped. ner reads the last column; CoNLL-2003's files (word POS chunk NER)
  give pos column 2 and chunk column 3, CoNLL-2000's (word POS chunk) pos column 2 and chunk the last, and a file of
  word and tag (2 columns) its one tag whatever the task. Other column counts for pos or chunk are refused, naming
  the file and the count, rather than read from a guessed column;
* conllu: Universal Dependencies' CoNLL-U, 10 tab-separated columns, # comment lines; multiword-token lines (1-2)
  and empty nodes (1.1) are skipped; the tag is the UPOS column (--conllu-tags upos, the default) or XPOS.

The labels are the tags of the training data ("O" first, then by type); an evaluation tag that never occurs in
training is an error (the model could never predict it): add such sentences to the training file or fix the tags.
Data without an evaluation file (CoNLL-2000 has none) holds out a share of the training sentences instead:
--validation-split-percentage N (as transformers' run_mlm.py names it; the same sentences for the same --seed); the
result record names that split "held-out part of train".

Words are tokenized with is_split_into_words=True; each word's tag is learned and predicted on its first
sub-token (the other sub-tokens and the special tokens are ignored), and scoring maps the predictions back to
words. Words cut off by --max-length, and words that produce no token (characters the tokenizer removes, such as
a no-break space), get no prediction: they count as predicted "O" for spans (their entities count as missed) and
as wrong for pos; the number of each kind is reported (eval_results.json: truncated_words, words_without_tokens).

The model is a checkpoint folder (its own tokenizer unless --tokenizer) or a bizoo model type to train from
scratch (e.g. lion, with --variant and --model-config; unless --tokenizer, a cased WordPiece tokenizer is trained
on the training sentences). Checkpoints go to --output-dir every --save-steps steps (--resume continues the
newest); at the end the final model, its tokenizer, eval_results.json, all_results.json (run_ner.py's flat record:
train_*, eval_*, predict_*) and a bizoo_results.json record are written there.

Defaults are sized for a small model on a CPU: 3 epochs, batch 32, peak learning rate 1e-4 (linear decay, 6%
warm-up), --max-length 128 sub-tokens; a bizoo model type trained from scratch takes its preset for the --task
when it has one (bilstm_crf: ner, chunk and pos). For a pretrained base-size checkpoint use --learning-rate 2e-5
to 5e-5.

Any dataset with a column of word lists and one of tags works too (--dataset-name: a local dataset folder, e.g.
parquet files, or a Hub dataset id [owner/]name[@revision], read through datasets as run_ner.py does; --tokens-column
and --tags-column; tags as ClassLabel ids or strings; each row's words and tags are lists, not text); it is scored on
its validation split (or dev, valid, val, test), or on a held-out part of train with --validation-split-percentage.
The tags column is, unless --tags-column names it, the task's as run_ner.py takes it: ner_tags for --task ner,
pos_tags for pos, chunk_tags for chunk (a CoNLL-2003 dataset with the three columns is tagged for the --task); a
dataset without it is refused, naming its columns (--tags-column names another).

run_ner.py's Hub and cache options work as there: --cache_dir (where Hub snapshots and datasets' files are cached),
--model_revision (of --model-name-or-path and --tokenizer), --token, --trust_remote_code, --overwrite_cache and
--ignore_mismatched_sizes (a checkpoint's head for other labels initialised anew).

--do_predict (run_ner.py's switch) then tags the test split with the final model (a CRF head: its Viterbi path) and
writes what run_ner.py writes: predictions.txt, one line per test sentence holding its predicted tags, one per word,
separated by spaces (a word cut off by --max-length: "O" for ner and chunk, "_" for pos); and when the test split
has tags, predict_results.json with its scores prefixed predict_ (as the Trainer's save_metrics names them:
predict_f1, predict_precision, ..., predict_loss, predict_samples), reported as the evaluation is. The test split:
test.txt in --data-dir (--test-file names another file in it), --test-file's path without --data-dir (run_ner.py's
--test_file: a CoNLL/CoNLL-U file, or a data file as --train-file is, its tags column optional), or a --dataset-name
dataset's test split (its tags column optional); --max-predict-samples N tags its first N sentences. Test tags are
checked as the evaluation tags are (one scheme, IOB1 read as IOB2, every tag seen in training).

As in run_glue.py and run_ner.py, once any of --do_train, --do_eval, --do_predict is given the command trains only
with --do_train: --do_eval or --do_predict alone evaluate (and predict with) the --model-name-or-path checkpoint as it
is, a checkpoint fine-tuned for the task (a model type, a checkpoint without the task's head or with other labels
is refused). Without any of them it trains, then evaluates.

Where the data comes from, one of:

* --data-dir DIR: CoNLL or CoNLL-U files in DIR, --train-file (default train.txt) and --eval-file (default
  valid.txt) naming them in it;
* --train-file PATH without --data-dir (run_ner.py's --train_file / --validation_file): the files' paths, with
  --validation-file (or --validation-split-percentage); a .json/.jsonl or .parquet file holds rows of word lists and
  tags (--tokens-column, --tags-column; a .csv or .tsv cell holds text, not a list of words, and is refused), any
  other file is read as CoNLL or CoNLL-U (--format);
* --dataset-name NAME.

examples:
  bizoo finetune-ner --model-name-or-path runs/lion-mlm --data-dir data/conll2003 \\
      --output-dir runs/lion-conll
  bizoo finetune-ner --model-name-or-path runs/lion-mlm --dataset-name eriktks/conll2003 --output-dir runs/lion-ner
  bizoo finetune-ner --task pos --model-name-or-path bilstm_crf --data-dir data/ud_english_ewt \\
      --train-file en_ewt-ud-train.conllu --eval-file en_ewt-ud-dev.conllu --output-dir runs/bilstm-crf-pos
  bizoo finetune-ner --task chunk --model-name-or-path bilstm_crf --data-dir data/conll2000 \\
      --validation-split-percentage 10 --output-dir runs/bilstm-crf-chunk
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .lib.command import CommandError, command_main, report
from .lib.data import (
    CONLLU_TAG_COLUMNS,
    TAGGED_FORMATS,
    conll_label_list,
    hold_out,
    read_tagged_file,
    tagged_file_format,
)
from .lib.dataset_readers import (
    add_dataset_name_arguments,
    dataset_type,
    describe,
    is_data_file,
    load_splits,
    split_name,
    token_classification_data,
)
from .lib.finetuning import (
    PREDICT_RESULTS_FILE,
    PreparedModel,
    add_model_arguments,
    add_predict_arguments,
    add_word_dropout_argument,
    announce_and_push,
    check_predict_options,
    describe_model,
    format_table,
    format_wall_times,
    inference_ignore_keys,
    predict_results,
    predict_test_split,
    prepare_model,
    run_in_two_phases,
    run_summary,
    save_final,
    train,
)
from .lib.metrics import (
    chunk_openings,
    conlleval_span_f1,
    iob1_to_iob2,
    span_f1,
    span_scheme,
    token_accuracy,
    unchunked_tags,
)
from .lib.models import parse_model_config
from .lib.results import ALL_RESULTS_FILE, all_results, record_results
from .lib.sources import hub_options
from .lib.training import (
    OneValue,
    add_training_arguments,
    bool_flag,
    check_hub_options,
    check_training_arguments,
    first_samples,
    max_length_padding,
)

PROG = "bizoo finetune-ner"

logger = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = -1  # train for --epochs (3)
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 128
DEFAULT_EVAL_FILE = "valid.txt"  # --eval-file in --data-dir unless given (None: not given)
DEFAULT_TRAIN_FILE = "train.txt"  # --train-file in --data-dir unless given
DEFAULT_TEST_FILE = "test.txt"  # --test-file in --data-dir unless given (--do_predict)
PREDICTIONS_FILE = "predictions.txt"  # --do_predict's tags, as run_ner.py names the file
#: The output fields the final evaluation and --do_predict gather beside the logits (``decoded_ids`` reads them): a
#: bizoo token head's ``predictions``, its decoding (a CRF's Viterbi path, whatever ``crf_logits`` says).
DECODED_OUTPUTS = ("predictions",)
#: What predictions.txt holds for a word cut off by --max-length (no prediction): "O" where tags are spans (as the
#: scores count it), "_" (CoNLL-U's empty field) for part-of-speech tags.
NO_PREDICTION = {True: "O", False: "_"}

Sentences = list[tuple[list[str], list[str]]]
#: A test split's sentences: the tags None in a split without them (predicted, not scored).
TestSentences = list[tuple[list[str], list[str] | None]]


@dataclass(frozen=True)
class TaggingTask:
    """One tagging task: its name in the model card, whether its tags mark spans (scored by span F1) or not
    (scored by token accuracy), and what one row of its report table is."""

    name: str
    spans: bool
    unit: str


TASKS = {
    "ner": TaggingTask("Named entity recognition", spans=True, unit="entity"),
    "chunk": TaggingTask("Chunking", spans=True, unit="chunk"),
    "pos": TaggingTask("Part-of-speech tagging", spans=False, unit="tag"),
}

#: What the evaluation of a span task reports (strict mode, then seqeval's default mode), and of pos: the names
#: --metric_for_best_model may take; the first is the main one.
SPAN_METRICS = ("f1", "precision", "recall", "conlleval_f1", "conlleval_precision", "conlleval_recall")
TOKEN_METRICS = ("accuracy",)

#: What the recorded tagging metrics are (the model card's metric names).
METRIC_NAMES = {
    "f1": "strict span F1 (micro)",
    "precision": "strict span precision",
    "recall": "strict span recall",
    "conlleval_f1": "span F1 (seqeval default mode)",
    "conlleval_precision": "span precision (seqeval default mode)",
    "conlleval_recall": "span recall (seqeval default mode)",
    "accuracy": "token accuracy",
}

#: The split name the record gives the evaluation sentences held out of the training data.
HELD_OUT_SPLIT = "held-out part of train"

#: A Universal Dependencies training file, e.g. en_ewt-ud-train.conllu: the treebank code (the Hub's
#: universal_dependencies configuration).
UD_TRAIN_FILE = re.compile(r"([a-z]{2,3}_[a-z0-9]+)-ud-train\.conllu", re.IGNORECASE)


def eval_metrics(task: str) -> tuple[str, ...]:
    """The metric names the evaluation of ``task`` reports (``SPAN_METRICS`` or ``TOKEN_METRICS``)."""
    return SPAN_METRICS if TASKS[task].spans else TOKEN_METRICS


def tagging_scores(task: str, gold: list[list[str]], predicted: list[list[str | None]]) -> dict[str, Any]:
    """The scores of ``task``: for spans ``span_f1``'s (strict) with ``conlleval_precision``, ``conlleval_recall``,
    ``conlleval_f1``, ``conlleval_support`` (the gold chunks read in that mode, more than the strict ``support``
    where a gold chunk is ill-formed) and ``conlleval_per_type`` (seqeval's default mode) beside them; for pos
    ``token_accuracy``'s. A predicted ``None`` (a word without a prediction) is "O" for spans and wrong for pos."""
    if not TASKS[task].spans:
        return token_accuracy(gold, predicted)
    predicted = [[tag if tag is not None else "O" for tag in tags] for tags in predicted]
    scores = span_f1(gold, predicted)
    lenient = conlleval_span_f1(gold, predicted)
    scores.update({f"conlleval_{name}": lenient[name] for name in ("precision", "recall", "f1", "support")})
    scores["conlleval_per_type"] = lenient["per_type"]
    return scores


# ----------------------------------------------------------------------------------------------------------------
# Library
# ----------------------------------------------------------------------------------------------------------------


def check_eval_tags(labels: list[str], sentences: Sentences, path: str | Path, read_as_iob2: bool = False) -> None:
    """``CommandError`` if ``sentences`` use a tag that is not in ``labels`` (the training tags); ``read_as_iob2``:
    the tags are those of IOB1 files read as IOB2, which the message says."""
    known = set(labels)
    unknown: dict[str, int] = {}
    for index, (_, tags) in enumerate(sentences):
        for tag in tags:
            if tag not in known:
                unknown.setdefault(tag, index)
    if unknown:
        found = ", ".join(f"{tag!r} (first in sentence {index + 1})" for tag, index in sorted(unknown.items()))
        converted = " (once IOB1 tags are read as IOB2: I-X opening a chunk as B-X)" if read_as_iob2 else ""
        raise CommandError(
            f"{path} uses tag(s) that never occur in the training file{converted}: {found}; the model could not "
            f"predict them. Training tags: {', '.join(labels)}"
        )


@dataclass
class TaggingData:
    """The sentences to train and evaluate on, checked.

    Attributes:
        train, eval: ``(words, tags)`` sentences.
        labels: the tags of the whole training data (held-out sentences included), in ``conll_label_list``'s order.
        train_name, eval_name: what errors and the report call them: the files, "<dataset>/<split>", or for a
            held-out split "<training data> (held-out N%, seed S)".
        dataset: the result record's ``dataset``: name, type (config), true split name.
        held_out: with --validation-split-percentage: {"percentage", "seed", "of"}, else None.
        read_as_iob2: the names of the IOB1 data read as IOB2 (``check_span_tags``).
        test, test_name: with --do_predict, the test sentences (tags None where the split has none) and what the
            report calls them; else None.
    """

    train: Sentences
    eval: Sentences
    labels: list[str]
    train_name: str
    eval_name: str
    dataset: dict[str, str]
    held_out: dict[str, Any] | None = None
    read_as_iob2: list[str] = field(default_factory=list)
    test: TestSentences | None = None
    test_name: str | None = None

    @property
    def test_tagged(self) -> bool:
        """Whether there is a test split with tags (scored, checked as the evaluation split is)."""
        return self.test is not None and all(tags is not None for _, tags in self.test)


def data_files(args: argparse.Namespace) -> bool:
    """Whether the data is --train-file (and --validation-file) as paths of data files read through ``datasets``
    (.json/.jsonl, .csv, .tsv, .parquet: rows of word lists and tags), as run_ner.py reads them."""
    return (args.data_dir is None and args.dataset_name is None and args.train_file is not None
            and is_data_file(args.train_file))


def _check_source_options(args: argparse.Namespace) -> None:
    """``CommandError`` without a data source, for options of another data source, and for a held-out split asked
    for beside an evaluation file."""
    percentage = args.validation_split_percentage
    if percentage is not None and not 0 < percentage < 100:
        raise CommandError(f"--validation-split-percentage must be in (0, 100), got {percentage:g}")
    if args.data_dir is None and args.dataset_name is None and args.train_file is None:
        raise CommandError("no data: give --data-dir (a folder of CoNLL files), --train-file with --validation-file "
                           "(the files' paths) or --dataset-name")
    conll_only = [option for option, value, default in (
        ("--format", args.format, "auto"), ("--conllu-tags", args.conllu_tags, None),
    ) if value != default]
    if args.dataset_name is not None:
        data_only = [option for option, value in (("--train-file", args.train_file), ("--eval-file", args.eval_file),
                                                  ("--test-file", args.test_file)) if value is not None] + conll_only
        if data_only:
            raise CommandError(f"{', '.join(data_only)}: options of files (CoNLL files in --data-dir, or the paths of "
                               "--train-file and --validation-file), not of --dataset-name, whose splits are read")
        return
    if args.test_file is not None and args.data_dir is None and is_data_file(args.test_file) != data_files(args):
        kinds = ("a data file (rows of word lists and tags)", "a CoNLL or CoNLL-U file")
        raise CommandError(f"--test-file {args.test_file!r} is {kinds[not is_data_file(args.test_file)]} but "
                           f"--train-file {args.train_file!r} {kinds[not data_files(args)]}: give both in one kind")
    if data_files(args):
        if conll_only:
            raise CommandError(f"{', '.join(conll_only)}: options of CoNLL files, not of --train-file "
                               f"{args.train_file!r} (rows of word lists and tags)")
        if args.dataset_config_name is not None:
            raise CommandError("--dataset-config-name: an option of --dataset-name, not of data files")
    else:
        given = [option for option, value, default in (
            ("--dataset-config-name", args.dataset_config_name, None),
            ("--tokens-column", args.tokens_column, "tokens"), ("--tags-column", args.tags_column, None),
        ) if value != default]
        if given:
            raise CommandError(f"{', '.join(given)}: options of --dataset-name or data files, not of CoNLL files")
    if percentage is not None and args.eval_file is not None:  # given, even as the default name
        raise CommandError(f"--eval-file {args.eval_file!r} and --validation-split-percentage {percentage:g} both "
                           "name the evaluation sentences: give one (--validation-split-percentage holds out a part "
                           "of --train-file; without it --eval-file is read, valid.txt in --data-dir unless given)")
    if args.data_dir is None and percentage is None and args.eval_file is None:
        raise CommandError(f"--train-file {args.train_file!r} without --data-dir: give the evaluation file's path "
                           "(--validation-file) or hold out a part of it (--validation-split-percentage N)")


def tags_column(args: argparse.Namespace, splits: dict[str, Any] | None = None) -> str:
    """The column of tags of a dataset or data files: --tags-column when given, else the task's, as run_ner.py takes
    it (``f"{task}_tags"``: ner_tags, pos_tags or chunk_tags), so that --task pos on a CoNLL-2003 dataset (tokens,
    pos_tags, chunk_tags, ner_tags) learns the part-of-speech tags, not the entities. With ``splits`` (from
    ``load_splits``), ``CommandError`` when the train split has no such column, naming its columns; run_ner.py would
    fall back to the second column, a guess that may be another task's tags."""
    if args.tags_column is not None:
        return args.tags_column
    column = f"{args.task}_tags"
    if splits is not None and column not in splits["train"].column_names:
        raise CommandError(f"--task {args.task} reads its tags from the column {column!r} (unless --tags-column "
                           f"names another), which the train split lacks: its columns are "
                           f"{splits['train'].column_names}; name the column of {args.task} tags with --tags-column")
    return column


def _held_out(train: Sentences, args: argparse.Namespace, of: str) -> tuple[Sentences, Sentences, dict[str, Any]]:
    """(kept, held out, what was held out) with --validation-split-percentage and --seed."""
    percentage = args.validation_split_percentage
    try:
        kept, held = hold_out(train, percentage, args.seed)
    except ValueError as err:
        raise CommandError(f"--validation-split-percentage {percentage:g}: {err}") from None
    return kept, held, {"percentage": percentage, "seed": args.seed, "of": of}


def load_sentences(args: argparse.Namespace, predict: bool = False) -> TaggingData:
    """The training and evaluation sentences from the files in --data-dir (CoNLL or CoNLL-U, as --format says) or
    from --dataset-name; the evaluation part held out of train with --validation-split-percentage. With ``predict``
    (--do_predict) also the test sentences (``with_test``)."""
    data = _load_sentences(args, predict)
    return with_test(data, args) if predict else data


def with_test(data: TaggingData, args: argparse.Namespace) -> TaggingData:
    """``data`` with the test sentences --do_predict tags: the dataset's or data files' "test" split (read by
    ``_load_sentences``: ``data.test`` is set), else the CoNLL file test.txt in --data-dir (--test-file names
    another) or --test-file's path. ``CommandError`` naming what was looked for when it is missing."""
    if data.test is not None:
        return data
    if args.data_dir is not None:
        name = args.test_file if args.test_file is not None else DEFAULT_TEST_FILE
        path = Path(args.data_dir) / name
        if not path.is_file():
            raise CommandError(f"--do_predict predicts the test split, but --data-dir {args.data_dir!r} holds no "
                               f"{name} (--test-file names another file in it)")
    else:
        if args.test_file is None:
            raise CommandError("--do_predict predicts the test split: give its path with --test-file (run_ner.py's "
                               "--test_file)")
        path = Path(args.test_file)
        if not path.is_file():
            raise CommandError(f"--test-file {args.test_file!r} does not exist or is not a file")
    test = read_tagged_file(path, tagged_file_format(path.name, args.format), args.conllu_tags or "upos", args.task)
    return replace(data, test=test, test_name=str(path))


def _load_sentences(args: argparse.Namespace, predict: bool) -> TaggingData:
    _check_source_options(args)
    percentage = args.validation_split_percentage
    if args.dataset_name is not None or data_files(args):
        if args.dataset_name is not None:
            splits = load_splits(args.dataset_name, args.dataset_config_name, test=predict, hub=hub_options(args))
            if percentage is None and "validation" not in splits:
                raise CommandError(f"--dataset-name {args.dataset_name!r} has no validation split (validation, "
                                   "dev, valid, val or test): hold out a part of train with "
                                   "--validation-split-percentage N")
            name = args.dataset_name
            train_name, dataset = f"{name}/train", {"name": name, "type": name}
        else:
            splits = load_splits(train_file=args.train_file, validation_file=args.eval_file, test=predict,
                                 test_file=args.test_file, hub=hub_options(args))
            name = describe(None, args.train_file)
            train_name, dataset = args.train_file, {"name": name, "type": dataset_type(None, args.train_file)}
        loaded = token_classification_data(splits, args.tokens_column, tags_column(args, splits),
                                           need_validation=percentage is None)
        test = {"test": loaded["test"], "test_name": f"{name} test" if args.dataset_name is not None
                else args.test_file} if predict else {}
        if percentage is None:
            split = split_name(splits["validation"])
            eval_name = f"{name} {split}" if args.dataset_name is not None else args.eval_file
            return TaggingData(loaded["train"], loaded["validation"], conll_label_list(loaded["train"]), train_name,
                               eval_name, {**dataset, "split": split}, **test)
        train, held, held_out = _held_out(loaded["train"], args, train_name)
        return TaggingData(train, held, conll_label_list(loaded["train"]), train_name,
                           f"{train_name} (held-out {percentage:g}%, seed {args.seed})",
                           {**dataset, "split": HELD_OUT_SPLIT}, held_out, **test)

    if args.data_dir is None:  # --train-file and --eval-file are paths of CoNLL files
        data_dir, train_file, eval_file = Path("."), args.train_file, args.eval_file
    else:
        data_dir = Path(args.data_dir)
        if not data_dir.is_dir():
            raise CommandError(f"--data-dir {str(data_dir)!r} does not exist or is not a folder")
        train_file = args.train_file if args.train_file is not None else DEFAULT_TRAIN_FILE
        eval_file = args.eval_file if args.eval_file is not None else DEFAULT_EVAL_FILE
    eval_option = "--eval-file" if args.data_dir is not None else "--validation-file"  # as a path: run_ner's name
    names = [("--train-file", train_file)] + ([(eval_option, eval_file)] if percentage is None else [])
    for option, name in names:
        if args.data_dir is None and not Path(name).is_file():
            raise CommandError(f"{option} {name!r} does not exist or is not a file")
        if args.data_dir is not None and not (data_dir / name).exists():
            raise CommandError(
                f"--data-dir {str(data_dir)!r} holds no {name} ({option}; CoNLL-2003: train.txt and valid.txt; "
                "without an evaluation file: --validation-split-percentage N)"
            )
    card_dir = data_dir if args.data_dir is not None else Path(train_file).resolve().parent
    card_eval = eval_file if eval_file is not None else DEFAULT_EVAL_FILE
    formats = {name: tagged_file_format(name, args.format) for _, name in names}
    if args.conllu_tags is not None and "conllu" not in formats.values():
        raise CommandError(f"--conllu-tags {args.conllu_tags} picks the tag column of CoNLL-U files, but "
                           f"{' and '.join(formats)} are read as CoNLL columns (the tag column by --task): name "
                           ".conllu files or give --format conllu")
    column = args.conllu_tags or "upos"
    read = {name: read_tagged_file(data_dir / name, fmt, column, args.task) for name, fmt in formats.items()}
    train_path = data_dir / train_file
    train = read[train_file]
    labels = conll_label_list(train)
    if percentage is None:
        return TaggingData(train, read[eval_file], labels, str(train_path), str(data_dir / eval_file),
                           dataset_card(card_dir, eval_file, train_file))
    train, held, held_out = _held_out(train, args, train_file)
    return TaggingData(train, held, labels, str(train_path),
                       f"{train_file} (held-out {percentage:g}%, seed {args.seed})",
                       {**dataset_card(card_dir, card_eval, train_file), "split": HELD_OUT_SPLIT}, held_out)


def _place(sentences: Sentences, index: int, position: int, numbered: bool = True) -> str:
    """Where a tag is, for an error: "sentence 3 ('Peter Blackburn'), word 2 'Blackburn' I-PER after B-PER";
    ``numbered`` False (a held-out part, whose order is not the file's): the sentence by its words only."""
    words, tags = sentences[index]
    start = " ".join(words[:6]) + (" ..." if len(words) > 6 else "")
    where = f"after {tags[position - 1]}" if position else "at the sentence start"
    sentence = f"sentence {index + 1} ({start!r})" if numbered else f"the sentence {start!r}"
    return f"{sentence}, word {position + 1} {words[position]!r} {tags[position]} {where}"


def check_span_tags(data: TaggingData, task: str) -> TaggingData:
    """The data of a span task (ner, chunk) with every gold chunk well formed, IOB1 read as IOB2 (the module
    docstring says why); ``CommandError`` for tags that are not spans, for tags that follow no scheme (chunks opened
    both by I-X and by B-X after O; an IOBES/BILOU tag outside every well-formed chunk), and for training and
    evaluation (or test) tags in different schemes. A tagged test split (--do_predict) is checked and converted as
    the evaluation split is; one without tags is left as it is.

    IOB1 is decided per file (for a held-out split: over the training data, both parts together): a file whose
    chunks open by I-X and never by B-X after O. Its sentences get ``iob1_to_iob2``, the labels are recomputed from
    the converted training sentences, and a warning names the file."""
    parts = {"train": data.train, "eval": data.eval, **({"test": data.test} if data.test_tagged else {})}
    names = {"train": data.train_name, "eval": data.eval_name, "test": data.test_name}
    schemes = {}
    for key, sentences in parts.items():
        try:
            schemes[key] = span_scheme([tags for _, tags in sentences])
        except ValueError as err:
            raise CommandError(f"{names[key]}: {err}; --task {task} scores spans (tags that are not spans, such as "
                               "part-of-speech tags: --task pos)") from None
    for key in [key for key in parts if key != "train"]:
        try:
            span_scheme([tags for _, tags in data.train + parts[key]])
        except ValueError:
            raise CommandError(f"{data.train_name} is tagged {schemes['train']} but {names[key]} "
                               f"{schemes[key]}: tag both in one scheme") from None
    try:
        scheme = span_scheme([tags for sentences in parts.values() for _, tags in sentences])
    except ValueError:  # each agrees with the training tags, not with each other
        tagged = ", ".join(f"{names[key]} {schemes[key]}" for key in parts)
        raise CommandError(f"the files are tagged in different schemes ({tagged}): tag them in one") from None

    numbered = data.held_out is None  # a held-out part's sentences are not numbered as in the file
    read_as_iob2 = []
    if scheme == "IOB2":
        groups = ([(data.train_name, ["train"]), (data.eval_name, ["eval"])] if data.held_out is None
                  else [(data.train_name, ["train", "eval"])])
        groups += [(data.test_name, ["test"])] if "test" in parts else []
        for name, keys in groups:
            sentences = [sentence for key in keys for sentence in parts[key]]
            opened: dict[str, list[tuple[int, int]]] = {"I": [], "B": []}
            for index, (_, tags) in enumerate(sentences):
                for position, prefix in chunk_openings(tags):
                    opened[prefix].append((index, position))
            if not opened["I"]:
                continue  # IOB2
            if opened["B"]:
                raise CommandError(
                    f"{name}: the tags follow neither IOB1 nor IOB2: {len(opened['I']):,} chunk(s) open with I-X, "
                    f"as in IOB1 (first: {_place(sentences, *opened['I'][0], numbered)}), and {len(opened['B']):,} "
                    f"with B-X after O, another type or the sentence start, as in IOB2 (first: "
                    f"{_place(sentences, *opened['B'][0], numbered)}); strict scoring would drop every chunk that "
                    "opens with I-X. Fix the tags: every chunk opens with B-X (IOB2), or with I-X and B-X only right "
                    "after a chunk of the same type (IOB1, read as IOB2)"
                )
            for key in keys:
                parts[key] = [(words, iob1_to_iob2(tags)) for words, tags in parts[key]]
            read_as_iob2.append(name)
            logger.warning(
                f"{name}: the tags are IOB1 ({len(opened['I']):,} chunks open with I-X after O, another type or the "
                f"sentence start, e.g. {_place(sentences, *opened['I'][0], numbered)}; B-X only between two adjacent "
                "chunks of one type), as in many CoNLL-2003 copies: read as IOB2 (each I-X that opens a chunk is "
                "B-X; the same chunks). The model learns, predicts and is scored with IOB2 tags"
            )

    for key in parts:
        name = names[key]
        for index, (_, tags) in enumerate(parts[key]):
            positions = unchunked_tags(tags, scheme)
            if positions:
                grammar = {"IOB2": "B-X I-X*", "IOBES": "S-X or B-X I-X* E-X", "BILOU": "U-X or B-X I-X* L-X"}
                raise CommandError(
                    f"{name}: {_place(parts[key], index, positions[0], numbered)} belongs to no well-formed {scheme} "
                    f"chunk ({grammar[scheme]}); strict scoring would leave it out. Fix the tags (every chunk "
                    f"{grammar[scheme]}, the same type throughout)"
                )
    if not read_as_iob2:
        return data
    training = parts["train"] + (parts["eval"] if data.held_out is not None else [])  # the labels' sentences
    return replace(data, train=parts["train"], eval=parts["eval"], labels=conll_label_list(training),
                   read_as_iob2=read_as_iob2, test=parts.get("test", data.test))


def eval_split(eval_file: str) -> str:
    """The split an evaluation file is: "test" for test*.txt (CoNLL-2003's testa/testb too) and UD's *-ud-test,
    "validation" for valid*/dev* and UD's *-ud-dev, else the file's stem."""
    stem = Path(eval_file).stem.lower()
    last = re.split(r"[-_.]", stem)[-1]  # en_ewt-ud-dev -> dev
    if stem.startswith("test") or last == "test":
        return "test"
    if stem.startswith(("valid", "dev")) or last in ("dev", "valid", "validation"):
        return "validation"
    return Path(eval_file).stem


def dataset_card(data_dir: Path, eval_file: str = "valid.txt", train_file: str = "train.txt") -> dict[str, str]:
    """The ``dataset`` of the result record: CoNLL-2003 or CoNLL-2000 for a folder of that name, Universal Dependencies
    (its treebank as the config) for UD's file names (en_ewt-ud-train.conllu), else the folder's name; the split the
    evaluation file is. The type of other local data is its format, "conll" or "conllu" (a model card lists a type
    that is not a local format as a Hub dataset: a folder's name is not one)."""
    name = data_dir.resolve().name
    split = eval_split(eval_file)
    known = {"conll2003": "CoNLL-2003", "conll2000": "CoNLL-2000"}
    key = name.lower().replace("-", "").replace("_", "")
    if key in known:
        return {"name": known[key], "type": key, "split": split}
    treebank = UD_TRAIN_FILE.fullmatch(Path(train_file).name)
    if treebank is not None:
        code = treebank[1].lower()
        return {"name": f"Universal Dependencies {code}", "type": "universal_dependencies", "config": code,
                "split": split}
    return {"name": name, "type": "conllu" if Path(train_file).suffix.lower() == ".conllu" else "conll", "split": split}


def task_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the task sets besides the labels: for pos, ``tag_scheme="none"`` (no transition is
    forbidden: part-of-speech tags are not spans), unless --model-config already says so; ``CommandError`` when
    --model-config names another tag_scheme for pos."""
    if TASKS[args.task].spans:
        return {}
    scheme = parse_model_config(args.model_config).get("tag_scheme")
    if scheme is None:
        return {"tag_scheme": "none"}
    if str(scheme).lower() != "none":
        raise CommandError(
            f"--task pos: --model-config tag_scheme={scheme} makes the CRF forbid the transitions of a span scheme, "
            "but part-of-speech tags are not spans; drop it (pos trains with tag_scheme none)"
        )
    return {}


def check_max_length(max_length: int, tokenizer) -> None:
    """``CommandError`` unless ``max_length`` sub-tokens hold a word beside the special tokens the tokenizer adds to
    every sentence (2 for WordPiece's [CLS] ... [SEP] and a word tokenizer's <S> ... </S>, 0 for a word tokenizer
    without sentence boundaries): a shorter one cuts off every word, and training learns nothing."""
    specials = tokenizer([[]], is_split_into_words=True)["input_ids"][0]
    if max_length < len(specials) + 1:
        names = " ".join(tokenizer.convert_ids_to_tokens(specials))
        raise CommandError(
            f"--max-length {max_length} leaves no room for a word: the tokenizer adds {len(specials)} special tokens "
            f"({names}) to every sentence, so every word would be cut off; use --max-length {len(specials) + 1} or "
            f"more (the longest sentence's sub-tokens and those, to keep every word; default {DEFAULT_MAX_LENGTH})"
        )


def continuation_ids(label2id: dict[str, int]) -> dict[int, int]:
    """The tag of a word's later sub-tokens under --label-all-tokens, by id: run_ner.py's rule, B-X becomes I-X where
    the label set has I-X; every other tag (I-X, O, a part of speech, B-X without an I-X) stays itself."""
    return {index: label2id.get("I-" + label[2:], index) if label.startswith("B-") else index
            for label, index in label2id.items()}


def encode_words(tokenizer, sentences: TestSentences, label2id: dict[str, int], max_length: int,
                 token_type_ids: bool = True, label_all_tokens: bool = False,
                 ) -> tuple[list[dict[str, Any]], list[list[int | None]]]:
    """Tokenize pre-split words; the tag goes on each word's first sub-token, -100 everywhere else (no ``labels`` at
    all for a sentence whose tags are None: an untagged test split). With ``label_all_tokens`` (--label-all-tokens)
    a word's later sub-tokens are labelled too, with ``continuation_ids``' tag (B-X continues as I-X); special
    tokens stay -100. Scores are read from the first sub-tokens either way (``word_predictions``).

    Returns the features and, per sentence, the position of each word's first sub-token (None for a word that
    was truncated away or produced no token).
    """
    kwargs = {} if token_type_ids else {"return_token_type_ids": False}
    continuation = continuation_ids(label2id)
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
            starts = word is not None and word != previous  # a word's first sub-token
            if starts:
                first[word] = position
            if word is None or tags is None or not (starts or label_all_tokens):
                labels.append(-100)
            else:
                tag = label2id[tags[word]]
                labels.append(tag if starts else continuation[tag])
            previous = word
        feature = {key: encoded[key][index] for key in keys}
        if tags is not None:
            feature["labels"] = labels
        features.append(feature)
        first_positions.append(first)
    return features, first_positions


def words_without_tokens(tokenizer, sentences: TestSentences, first_positions: list[list[int | None]]) -> int:
    """How many of the words without a first sub-token (None in ``first_positions``) produced no token at all (a
    word of no-break spaces, zero-width or control characters, which the tokenizer's normaliser removes), rather
    than being cut off by the maximum length: each such word tokenized alone. Both kinds get no prediction."""
    unplaced = [words[i] for (words, _), positions in zip(sentences, first_positions)
                for i, position in enumerate(positions) if position is None]
    if not unplaced:
        return 0
    alone = tokenizer([[word] for word in unplaced], is_split_into_words=True, add_special_tokens=False)
    return sum(not ids for ids in alone["input_ids"])


def _unplaced_report(cut: int, empty: int, max_length: int, shown: str, total: int | None = None) -> str:
    """The line that says which words got no prediction and why (``cut`` off by --max-length, ``empty``: no token)."""
    of = f" of {total:,}" if total is not None else ""
    parts = [f"{cut:,}{of} words were cut off by --max-length {max_length}"] if cut else []
    if empty:
        parts.append(f"{empty:,}{of if not cut else ''} words produced no token (only characters the tokenizer "
                     "removes, such as no-break or zero-width spaces)")
    return " and ".join(parts) + f": {shown}"


def decoded_ids(predictions) -> np.ndarray:
    """The tag ids a model predicts at each position, (N, L), from what ``Trainer.predict`` gathers: its outputs
    besides the loss, one array or a tuple of them in the output's order. A bizoo token classifier's ``predictions``
    output (N, L), integers (with a CRF head the Viterbi path, whatever ``crf_logits`` says; else the argmax) is taken
    as it is; without one (another model), the argmax of the logits (N, L, K)."""
    outputs = predictions if isinstance(predictions, tuple) else (predictions,)
    for output in outputs:
        output = np.asarray(output)
        if output.ndim == 2 and np.issubdtype(output.dtype, np.integer):
            return output  # (N, L), -100 past each sequence
    return np.asarray(outputs[0]).argmax(axis=-1)  # (N, L, K) -> (N, L)


def word_predictions(predicted: np.ndarray, first_positions: list[list[int | None]], id2label: dict[int, str],
                     missing: str | None = "O") -> list[list[str | None]]:
    """Per sentence, the tag predicted on each word's first sub-token (``missing`` for a word without one).
    ``predicted``: the tag ids (N, L) the model predicts (``decoded_ids``)."""
    return [
        [id2label[int(predicted[i, position])] if position is not None else missing for position in positions]
        for i, positions in enumerate(first_positions)
    ]


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument(
        "--task", choices=tuple(TASKS), default="ner", action=OneValue,
        help="what the tags are: ner (entities) and chunk (phrases) are spans, scored by strict span F1 and by "
        "seqeval's default mode beside it; pos (part of speech) tags words, scored by token accuracy "
        "(default: %(default)s)",
    )
    parser.add_argument(  # an option of its own, so that argparse's errors about --task name --task only
        "--task-name", "--task_name", dest="task", choices=tuple(TASKS), default=argparse.SUPPRESS, action=OneValue,
        help="run_ner.py's spelling of --task (giving both at different values is an error)",
    )
    parser.add_argument(
        "--return-entity-level-metrics", "--return_entity_level_metrics", **bool_flag(
            help="run_ner.py's option, accepted for its command lines: bizoo always reports the scores of each "
            "type (ner, chunk: precision, recall, f1 and support per entity type, as per_type in eval_results.json "
            "and in the table; pos: per tag, as per_tag), so it changes nothing"),
    )
    parser.add_argument(
        "--label-all-tokens", "--label_all_tokens", **bool_flag(
            help="run_ner.py's option: train on every sub-token of a word, not only its first, a B-X tag continued "
            "as I-X where the labels have I-X; the scores still read each word's first sub-token (run_ner.py scores "
            "every sub-token then). Word-level models (one token per word) have no later sub-tokens: it changes "
            "nothing for them"),
    )
    parser.add_argument(
        "--pad-to-max-length", "--pad_to_max_length", **bool_flag(
            help="run_ner.py's option: pad every sentence to --max-length instead of to the longest of its batch "
            "(slower; bizoo's models do not depend on padding: without dropout, the same scores; dropout masks are "
            "drawn over the padded shape, so a run with dropout draws others)"),
    )
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()  # or --train-file as a path: checked by _check_source_options
    source.add_argument("--data-dir", metavar="DIR", help="folder holding the CoNLL-format files")
    add_dataset_name_arguments(source, data, "a dataset with word lists and tags instead")
    data.add_argument(
        "--tokens-column", "--text-column-name", "--text_column_name", default="tokens", metavar="COLUMN",
        help="with --dataset-name or data files: the column of word lists, each row's a list (a CSV/TSV cell is text: "
        "give JSON lines, parquet or a dataset folder) (default: %(default)s)",
    )
    data.add_argument(
        "--tags-column", "--label-column-name", "--label_column_name", default=None, metavar="COLUMN",
        help="with --dataset-name or data files: the column of tags, ClassLabel ids or strings (default: the --task's, "
        "as run_ner.py takes it: ner_tags, pos_tags or chunk_tags)",
    )
    data.add_argument(
        "--train-file", "--train_file", default=None, metavar="FILE",  # None: not given (train.txt in --data-dir)
        help=f"training file: with --data-dir, a file in it (default: {DEFAULT_TRAIN_FILE}); without, its path "
        "(a CoNLL or CoNLL-U file, or a .json/.jsonl or .parquet file of word lists and tags; a .csv/.tsv cell is "
        "text, not a list of words)",
    )
    data.add_argument(
        "--eval-file", "--validation-file", "--validation_file", default=None, metavar="FILE",
        help="evaluation file: with --data-dir, a file in it (default: valid.txt), else its path; its tags must all "
        "occur in the training file; words cut off by --max-length are scored as predicted 'O' (pos: as wrong); "
        "not with --validation-split-percentage",
    )
    data.add_argument(
        "--format", choices=TAGGED_FORMATS, default="auto",
        help="how the files are read: conll (word first; the tag in the last column for --task ner, for pos and "
        "chunk the column of CoNLL-2003's word POS chunk NER or CoNLL-2000's word POS chunk, or of a word and tag "
        "file), conllu (Universal Dependencies' CoNLL-U), or auto: conllu for a file whose name ends in .conllu, "
        "conll otherwise (default: %(default)s)",
    )
    data.add_argument(
        "--conllu-tags", choices=tuple(CONLLU_TAG_COLUMNS), default=None,
        help="the CoNLL-U column the tags come from: upos (universal part of speech, column 4) or xpos (the "
        "treebank's own, column 5) (default: upos)",
    )
    data.add_argument(
        "--test-file", "--test_file", default=None, metavar="FILE",  # None: not given (test.txt in --data-dir)
        help=f"with --do_predict, the test file: with --data-dir, a file in it (default: {DEFAULT_TEST_FILE}); "
        "without, its path (as --train-file: CoNLL/CoNLL-U, or a data file whose tags column is optional); not with "
        "--dataset-name, whose test split is read",
    )
    data.add_argument(
        "--validation-split-percentage", "--validation_split_percentage", type=float, default=None, metavar="N",
        help="evaluate on N%% of the training sentences, held out of training (drawn with --seed), instead of "
        "--eval-file or the dataset's validation split: for data without an evaluation split, such as CoNLL-2000",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--word-vocabulary", choices=("checkpoint", "train"), default="checkpoint",
        help="the words a checkpoint's word table covers: its own (checkpoint), or the training words (train: a "
        "new word+character tokenizer over them, the checkpoint's vectors kept for the words it knew; for "
        "character ids that do not depend on the vocabulary, ELMo's; its tagger with tagger_word_features=true) "
        "(default: %(default)s)",
    )
    add_training_arguments(
        parser,
        max_steps=DEFAULT_MAX_STEPS,
        learning_rate=DEFAULT_LEARNING_RATE,
        batch_size=DEFAULT_BATCH_SIZE,
        max_length=DEFAULT_MAX_LENGTH,
        task="ner",
        task_option="task",  # the preset is the one of --task (ner, chunk or pos)
    )
    add_word_dropout_argument(parser)  # --word-dropout: lib.word_dropout, default the preset's
    add_predict_arguments(
        parser, f"tag the test split ({DEFAULT_TEST_FILE} in --data-dir, --test-file, or the dataset's test split) and "
        f"write {PREDICTIONS_FILE} as run_ner.py does: one line per sentence, its predicted tags (a CRF: the Viterbi "
        f"path) one per word, separated by spaces; a test split with tags is scored too ({PREDICT_RESULTS_FILE}, "
        "the scores prefixed predict_)",
    )


def _prepare(args: argparse.Namespace) -> tuple[TaggingData, dict[str, tuple], PreparedModel]:
    """Every check, in order: options, data, model, output folder, tokenizer, vocabulary; then the encoding.
    Writes nothing."""
    from transformers import AutoModelForTokenClassification

    check_training_arguments(args, metrics=eval_metrics(args.task))
    check_hub_options(args)
    predict = check_predict_options(args)
    extra_config = task_config(args)
    data = load_sentences(args, predict)
    if TASKS[args.task].spans:
        data = check_span_tags(data, args.task)  # one scheme, every gold chunk well formed; IOB1 read as IOB2
    check_eval_tags(data.labels, data.eval, data.eval_name, read_as_iob2=bool(data.read_as_iob2))
    if data.test_tagged:
        check_eval_tags(data.labels, data.test, data.test_name, read_as_iob2=bool(data.read_as_iob2))
    data = replace(data, train=first_samples(data.train, args, "train", "sentences"),
                   eval=first_samples(data.eval, args, "eval", "sentences"),  # the labels: of all of them
                   test=None if data.test is None else first_samples(data.test, args, "predict", "sentences"))
    id2label = dict(enumerate(data.labels))
    config = {"id2label": id2label, "label2id": {tag: i for i, tag in id2label.items()}, **extra_config}
    prepared = prepare_model(
        args,
        AutoModelForTokenClassification,
        config,
        lambda: [" ".join(words) for words, _ in data.train],
        need_fast_tokenizer=True,
        training_sentences=lambda: [words for words, _ in data.train],
    )
    check_max_length(args.max_length, prepared.tokenizer)
    token_types = getattr(prepared.model.config, "type_vocab_size", 1) != 0
    label2id = config["label2id"]
    # the test sentences with words (an empty row of a dataset's test split gets an empty line, no model call)
    test = [sentence for sentence in data.test or () if sentence[0]]
    encoded = {
        name: encode_words(prepared.tokenizer, sentences, label2id, args.max_length, token_types,
                           label_all_tokens=args.label_all_tokens)
        for name, sentences in (("train", data.train), ("eval", data.eval), ("test", test))
        if name != "test" or data.test is not None
    }
    return data, encoded, prepared


def _report_scores(task: str, scores: dict[str, Any]) -> None:
    """The score tables: strict spans overall, seqeval's default mode overall, strict spans per type; or token
    accuracy and the scores per tag."""
    unit = TASKS[task].unit
    if TASKS[task].spans:
        rows = [["overall, strict", scores["precision"], scores["recall"], scores["f1"], scores["support"]],
                ["overall, seqeval default mode", scores["conlleval_precision"], scores["conlleval_recall"],
                 scores["conlleval_f1"], scores["conlleval_support"]]]
        rows += [[kind, s["precision"], s["recall"], s["f1"], s["support"]] for kind, s in scores["per_type"].items()]
        report(format_table([f"{unit} (strict)", "precision", "recall", "f1", "support"], rows))
        return
    report(f"token accuracy {scores['accuracy']:.4f} ({scores['support']:,} words)")
    rows = [[tag, s["precision"], s["recall"], s["f1"], s["support"]] for tag, s in scores["per_tag"].items()]
    report(format_table([unit, "precision", "recall", "f1", "support"], rows))


def _train_and_report(args: argparse.Namespace, data: TaggingData, encoded: dict[str, tuple],
                      prepared: PreparedModel, started: float) -> int:
    from transformers import DataCollatorForTokenClassification

    task = TASKS[args.task]
    metrics = eval_metrics(args.task)
    tokenizer = prepared.tokenizer
    id2label = dict(enumerate(data.labels))
    train_features, _ = encoded["train"]
    eval_features, first_positions = encoded["eval"]
    n_words = sum(len(words) for words, _ in data.eval)
    unplaced = sum(position is None for positions in first_positions for position in positions)
    empty = words_without_tokens(tokenizer, data.eval, first_positions) if unplaced else 0
    truncated = unplaced - empty
    logger.info(
        f"{data.dataset['name'] if args.dataset_name is not None or data_files(args) else 'CoNLL'} "
        f"({task.name.lower()}): train "
        f"{len(data.train):,} sentences, eval {len(data.eval):,} sentences ({n_words:,} words; {data.eval_name}); "
        f"{len(data.labels)} labels: {', '.join(data.labels)}"
    )
    logger.info(describe_model(prepared))

    # (B, its longest sentence), or (B, --max-length) with --pad_to_max_length
    collator = DataCollatorForTokenClassification(tokenizer, **max_length_padding(args))
    gold = [tags for _, tags in data.eval]

    def scores_of(predictions) -> dict:
        """The task's scores of the evaluation split from the Trainer's predictions: during training
        (--eval_strategy, --metric_for_best_model) and at the end alike."""
        ids = decoded_ids(predictions)  # (N, L), -100 past each sequence; a CRF's Viterbi path
        # a word without a prediction: None ("O" for spans, wrong for pos)
        return tagging_scores(args.task, gold, word_predictions(ids, first_positions, id2label, missing=None))

    def compute_metrics(prediction) -> dict[str, float]:
        scores = scores_of(prediction.predictions)
        return {name: scores[name] for name in metrics}

    # every evaluation (during training, the final one, the test split) reads the model's own decoding
    # (``predictions``: a CRF's Viterbi path) gathered beside the logits
    trainer, train_output, train_seconds = train(
        args, prepared, train_features, collator, eval_dataset=eval_features, compute_metrics=compute_metrics,
        ignore_keys_for_eval=inference_ignore_keys(prepared.model, DECODED_OUTPUTS),
    )
    evaluated = trainer.predict(eval_features, ignore_keys=inference_ignore_keys(trainer.model, DECODED_OUTPUTS))
    scores = scores_of(evaluated.predictions)
    files, test_scores, predicted = (predict_test(args, trainer, data, encoded, id2label) if data.test is not None
                                     else ({}, None, None))
    evaluation = {**{name: scores[name] for name in metrics}, "loss": evaluated.metrics.get("test_loss")}
    files[ALL_RESULTS_FILE] = all_results(trainer, train_output, len(data.train), [("", evaluation, len(data.eval))],
                                          predicted)
    total_seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():  # a distributed run: the first process reports and saves
        return 0

    report()
    report(f"{data.eval_name} ({prepared.source.describe()})")
    _report_scores(args.task, scores)
    if unplaced:
        scored = "scored as 'O'" if task.spans else "scored as wrong"
        report(_unplaced_report(truncated, empty, args.max_length, scored, n_words))
    if data.test is not None:
        _report_test(args, data, tokenizer, encoded["test"][1], test_scores)
    report(format_wall_times(train_seconds, total_seconds, train_output.global_step))

    results = {
        "task": "token-classification",
        "tagging_task": args.task,
        "dataset": data.dataset["name"],
        "eval_file": data.eval_name,
        "eval_split": data.dataset["split"],
        **({"held_out": data.held_out} if data.held_out is not None else {}),
        **({"iob1_read_as_iob2": data.read_as_iob2} if data.read_as_iob2 else {}),
        "metrics": scores,
        "labels": data.labels,
        "num_train_examples": len(data.train),
        "num_eval_examples": len(data.eval),
        "num_eval_words": n_words,
        "truncated_words": truncated,
        **({"words_without_tokens": empty} if empty else {}),
        **({"test_file": data.test_name, "num_predict_examples": len(data.test)} if data.test is not None else {}),
        **({"predict_metrics": test_scores} if test_scores is not None else {}),
        **run_summary(args, prepared, train_output, train_seconds, total_seconds, trainer.args),
    }
    output_dir = save_final(prepared, results, trainer.state.log_history, files)
    record_results(
        output_dir,
        task={"type": "token-classification", "name": task.name},
        dataset=data.dataset,
        metrics={name: scores[name] for name in metrics},
        metric_names={name: METRIC_NAMES[name] for name in metrics},
    )
    if test_scores is not None:  # a test split with tags: the model card lists its scores beside the evaluation's
        record_results(
            output_dir,
            task={"type": "token-classification", "name": task.name},
            dataset={**data.dataset, "split": "test"},
            metrics={name: test_scores[name] for name in metrics},
            metric_names={name: METRIC_NAMES[name] for name in metrics},
        )
    announce_and_push(trainer, prepared, output_dir, list(files))
    return 0


def predict_test(args: argparse.Namespace, trainer, data: TaggingData, encoded: dict[str, tuple],
                 id2label: dict[int, str]) -> tuple[dict[str, str], dict[str, Any] | None, dict[str, Any] | None]:
    """--do_predict: tag the test sentences with the trained model. Returns the files to write (``PREDICTIONS_FILE``:
    one line per sentence, its tags one per word; with tags, ``PREDICT_RESULTS_FILE`` too), the scores of a test
    split with tags and what ``PREDICT_RESULTS_FILE`` holds (both None without tags)."""
    features, first_positions = encoded["test"]  # the sentences with words, in order
    output = predict_test_split(trainer, features, keep=DECODED_OUTPUTS) if features else None
    ids = decoded_ids(output.predictions) if output is not None else None  # (N, L); a CRF's Viterbi path
    predicted = iter(word_predictions(ids, first_positions, id2label, missing=None) if features else ())
    tags = [next(predicted) if words else [] for words, _ in data.test]  # an empty row: an empty line
    no_prediction = NO_PREDICTION[TASKS[args.task].spans]
    lines = [" ".join(tag if tag is not None else no_prediction for tag in sentence) for sentence in tags]
    files = {PREDICTIONS_FILE: "".join(f"{line}\n" for line in lines)}
    if not data.test_tagged:
        return files, None, None
    scores = tagging_scores(args.task, [gold for _, gold in data.test], tags)
    record = predict_results(output.metrics if output is not None else {}, scores, len(data.test))
    files[PREDICT_RESULTS_FILE] = json.dumps(record, indent=2) + "\n"
    return files, scores, record


def _report_test(args: argparse.Namespace, data: TaggingData, tokenizer, first_positions: list[list[int | None]],
                 scores: dict[str, Any] | None) -> None:
    """What --do_predict did: the test split's scores (when it has tags) or how many sentences were tagged, and the
    words without a prediction (cut off by --max-length, or without a token)."""
    report()
    if scores is not None:
        report(f"{data.test_name}, test (--do_predict)")
        _report_scores(args.task, scores)
    else:
        report(f"{data.test_name}: {len(data.test):,} test sentences tagged, without tags to score")
    unplaced = sum(position is None for positions in first_positions for position in positions)
    if unplaced:
        empty = words_without_tokens(tokenizer, data.test, first_positions)
        shown = NO_PREDICTION[TASKS[args.task].spans]
        report("test: " + _unplaced_report(unplaced - empty, empty, args.max_length,
                                           f"{PREDICTIONS_FILE} gives them {shown!r}"))


def run(args: argparse.Namespace) -> int:
    """Fine-tune and evaluate as ``args`` say; 0 on success, 2 on bad input (found before training starts)."""
    return run_in_two_phases(PROG, args, _prepare, _train_and_report)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo finetune-ner`` and ``python -m bizoo.scripts.finetune_ner``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
