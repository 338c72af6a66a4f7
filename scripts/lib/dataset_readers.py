"""Any dataset through 🤗 ``datasets``: the text-classification and token-classification data of the fine-tuning
commands when it is not GLUE's TSV files or CoNLL files, and the text of ``bizoo pretrain --dataset``.

Where the data comes from (``load_splits``), as transformers' ``run_glue.py``/``run_ner.py`` take it:

* ``--train-file`` / ``--validation-file``: local CSV, TSV, JSON (JSON lines too) or parquet files, one row per
  example (the format from the extension). CSV/TSV cells are typed by pandas, with only an empty cell missing: a
  text "None", "NA", "null" or "nan" stays text (``CSV_OPTIONS``). A TSV file has no quoting, as GLUE's: a ``"`` is
  text, and a text holding a tab or a line break must come as CSV or JSON lines (``TSV_OPTIONS``);
* ``--dataset-name``: a local dataset folder (data files ``load_dataset`` recognises) or a Hub dataset repository
  ``[owner/]name[@revision]``, fetched with ``snapshot_download`` into the Hub's cache (``lib.sources``; under
  ``HF_HUB_OFFLINE=1`` the cache only) and loaded from there; ``--dataset-config-name`` picks a configuration.

The Hub and cache options (``lib.sources.HubOptions``, ``hub=``): --cache_dir is where a Hub dataset's snapshot is
cached and where ``datasets`` writes its Arrow files, --token the Hub token, --overwrite_cache prepares the data files
again instead of reading the cached Arrow files.

Splits: "train", and for evaluation "validation" (also named "dev", "valid" or "val"; "test" when there is no
validation split); with ``test=True`` (--do_predict) also "test": the dataset's test split, or ``--test-file``.
A test split may go without labels (no label column, or every label missing or -1, the Hub's mark of an unlabelled
row): its examples then have ``label`` None (tags None). Rows are read as plain examples:

* text classification (``text_classification_data``): one or two text columns (``sentence1``/``sentence2`` when
  present, else ``sentence`` or ``text``, or the ones named) and a label column (``label``). A ``ClassLabel`` column
  gives the class names; string or integer labels are, as run_glue.py takes them, the sorted values of the train
  split as ids 0..n-1, named by the values (stars 1..5: ids 0..4 named "1".."5", no class "0"); float labels make
  a regression (scored by Pearson and Spearman correlation);
* token classification (``token_classification_data``): a column of word lists (``tokens``) and one of tags
  (``ner_tags``, or the column named: ``finetune-ner`` takes its task's, ``pos_tags`` for pos): ``ClassLabel`` ids
  (mapped to their names) or tag strings, each row's a list. A cell of text ("EU rejects German", as every CSV/TSV
  cell is) is refused, naming the column and the row, rather than read as a list of characters.

Every problem is a ``CommandError``, raised before any training, naming the option, the split and the column: a
missing file, split or column, a file that does not read (naming that file and the reader's error), an empty split,
labels of different kinds or missing ("NA" among numbers too), a label of any split never seen in training (naming
the split and the labels), class names that differ only in the spaces around them ("pos" and "pos "), a text cell
that is not text (naming the row, from 0, and the value), a cell of words or tags that is text, not a list (naming
the row), rows whose words and tags differ in number. A text column of the train split left unread by the default
columns (``question`` beside ``sentence``) is a warning.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .command import CommandError
from .sources import HubOptions, resolve_source

logger = logging.getLogger(__name__)

#: File extension -> the ``datasets`` builder that reads it.
FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
#: How the CSV/TSV files are read (pandas ``read_csv`` options through the ``csv`` builder's config): only an empty
#: cell is missing, so a text that reads "None", "NA", "null" or "nan" stays that text (pandas' default would make
#: it a missing value).
CSV_OPTIONS = {"keep_default_na": False, "na_values": [""]}
#: A TSV file besides: tab-separated, and no quoting (``csv.QUOTE_NONE``), as GLUE's TSV files and their readers
#: (``lib.data.load_glue_split``, the Hub's GLUE loader) take it: a ``"`` is a character of the text. Read with CSV
#: quoting, a text starting with ``"`` lost its quotes, and one without a closing quote took the rows after it into
#: its text up to the next quote before a tab (rows, and their labels, gone without an error).
TSV_OPTIONS = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
#: Names a dataset's evaluation split may have, in order of preference.
EVAL_SPLITS = ("validation", "dev", "valid", "val", "test")


def add_dataset_name_arguments(source, data, what: str) -> None:
    """``--dataset-name`` (into the mutually exclusive ``source`` group) and ``--dataset-config-name`` (into ``data``),
    in both spellings, as run_glue.py / run_ner.py take them; ``what`` says what the dataset holds."""
    source.add_argument(
        "--dataset-name", "--dataset_name", metavar="NAME",
        help=f"{what}: a local dataset folder or a Hub dataset id [owner/]name[@revision]",
    )
    data.add_argument(
        "--dataset-config-name", "--dataset_config_name", metavar="NAME", help="with --dataset-name: its configuration"
    )


def load_splits(dataset_name: str | None = None, dataset_config: str | None = None, train_file: str | None = None,
                validation_file: str | None = None, *, streaming: bool = False,
                option: str = "--dataset-name", test: bool = False, test_file: str | None = None,
                hub: HubOptions | None = None) -> dict[str, Any]:
    """``{"train": ..., "validation": ...}`` (``datasets.Dataset``, or ``IterableDataset`` when ``streaming``) from
    a dataset name or data files (module docstring); "validation" is absent when the source has no such split.
    ``option`` names the dataset's option in errors. With ``test`` (or a ``test_file``, read with the other files)
    also ``"test"``: the dataset's "test" split or the file; ``CommandError`` naming what was looked for when there is
    none. ``hub``: the Hub and cache options (module docstring)."""
    import datasets

    hub = hub or HubOptions()
    load_kwargs = hub.dataset_kwargs()
    if streaming:  # nothing is prepared or cached: read as the stream goes
        load_kwargs.pop("download_mode", None)
    if dataset_name is not None:
        folder = resolve_source(dataset_name, option, repo_type="dataset", cache_dir=hub.cache_dir, token=hub.token)
        try:
            loaded = datasets.load_dataset(str(folder), dataset_config, streaming=streaming, **load_kwargs)
        except (ValueError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as err:
            raise CommandError(f"{option} {dataset_name!r} does not load with datasets: {err}") from None
        source = f"{option} {dataset_name!r}"
    else:
        if train_file is None:
            raise CommandError("give --dataset-name, or --train-file (and --validation-file)")
        files = {"train": train_file, **({"validation": validation_file} if validation_file else {}),
                 **({"test": test_file} if test_file else {})}
        suffixes = set()
        for option, path in (("--train-file", train_file), ("--validation-file", validation_file),
                             ("--test-file", test_file)):
            if path is None:
                continue
            if not Path(path).is_file():
                raise CommandError(f"{option} {path!r} does not exist")
            suffix = Path(path).suffix.lower()
            if suffix not in FILE_BUILDERS:
                raise CommandError(f"{option} {path!r}: give a {', '.join(FILE_BUILDERS)} file")
            suffixes.add(".tsv" if suffix == ".tsv" else FILE_BUILDERS[suffix])  # one delimiter reads both files
        if len(suffixes) > 1:
            named = " and ".join(repr(path) for path in files.values())
            raise CommandError(f"--train-file, --validation-file and --test-file must have the same format (got "
                               f"{named}; .json and .jsonl are one format, .csv and .tsv two)")
        kind = suffixes.pop()
        builder = FILE_BUILDERS.get(kind, kind)
        options = {**CSV_OPTIONS, **(TSV_OPTIONS if kind == ".tsv" else {})} if builder == "csv" else {}
        try:
            loaded = datasets.load_dataset(builder, data_files=files, streaming=streaming, **options, **load_kwargs)
        except (ValueError, datasets.exceptions.DatasetGenerationError) as err:
            raise _unreadable(builder, files, options, err) from None
        source = f"--train-file {train_file!r}"
    if "train" not in loaded:
        raise CommandError(f"{source} has no 'train' split (it has {', '.join(loaded) or 'none'})")
    splits = {"train": loaded["train"]}
    evaluation = next((name for name in EVAL_SPLITS if name in loaded), None)
    if evaluation is not None:
        splits["validation"] = loaded[evaluation]
    if test or test_file:
        if "test" not in loaded:
            looked_for = (f"{source} has no 'test' split (it has {', '.join(loaded)})" if dataset_name is not None
                          else "no --test-file was given (run_glue.py / run_ner.py's --test_file)")
            raise CommandError(f"--do_predict predicts the test split, but {looked_for}")
        splits["test"] = loaded["test"]
    return splits


def _unreadable(builder: str, files: dict[str, str], options: dict[str, Any], err: Exception) -> CommandError:
    """The error for data files ``load_dataset`` failed on: it names the file that does not read, found by reading
    each file alone (streamed, nothing cached; the validation file first, as it is the smaller), and the
    underlying cause (``datasets`` wraps it in "An error occurred while generating the dataset"). When every file
    reads alone (the validation split is cast to the train split's column types, which can fail), it names both
    with the error ``load_dataset`` gave."""
    import datasets

    options_of = {"train": "--train-file", "validation": "--validation-file", "test": "--test-file"}
    for split in sorted(files, key=lambda split: split == "train"):
        try:
            for _ in datasets.load_dataset(builder, data_files={split: files[split]}, split=split, streaming=True,
                                           **options):
                pass
        except Exception as failure:  # noqa: BLE001  (whatever the reader raises is the file's problem)
            cause = _unwrapped(failure)
            return CommandError(f"{options_of[split]} {files[split]!r} does not read as {builder}: "
                                f"{_cause(cause)}{_advice(cause)}")
    cause = _unwrapped(err)
    if len(files) == 1:
        return CommandError(f"--train-file {files['train']!r} does not read as {builder}: {_cause(cause)}"
                            f"{_advice(cause)}")
    named = " and ".join(f"{options_of[split]} {path!r}" for split, path in files.items())
    return CommandError(f"{named} each read alone but not together as {builder}: {_cause(cause)} (the validation "
                        "file is read with the train file's column types, and so is a test file: a column of numbers "
                        "in one must hold numbers, or empty cells, in the other)")


def _unwrapped(err: BaseException) -> BaseException:
    """The error under ``datasets``' DatasetGenerationError (which says only "An error occurred ...")."""
    import datasets

    wrapped = isinstance(err, datasets.exceptions.DatasetGenerationError) and err.__cause__ is not None
    return err.__cause__ if wrapped else err


def _cause(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _advice(err: BaseException) -> str:
    if isinstance(err, UnicodeDecodeError):
        return " (save the file as UTF-8)"
    return " (is the file complete, with a header row, in the format its extension says?)"


def split_name(split) -> str:
    """The name a split has in its dataset ("validation", "dev", "test", ...), for reports and model cards."""
    return str(getattr(split, "split", None) or "validation")


def _column(split, name: str, option: str, split_name: str):
    if name not in split.column_names:
        raise CommandError(f"{option} {name!r} is not a column of the {split_name} split: {split.column_names}")
    return split[name]


@dataclass
class TextClassificationData:
    """Examples ({"sentence1", ["sentence2",] "label"}) per split, and what the labels are."""

    splits: dict[str, list[dict[str, Any]]]
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...]  # empty for a regression
    is_regression: bool

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


def default_text_columns(columns: list[str]) -> tuple[str, ...]:
    """``sentence1``/``sentence2`` when present, else ``sentence``, ``text`` (as ``run_glue.py`` looks for them)."""
    if "sentence1" in columns:
        return ("sentence1", "sentence2") if "sentence2" in columns else ("sentence1",)
    for name in ("sentence", "text"):
        if name in columns:
            return (name,)
    raise CommandError(f"no text column found (sentence1/sentence2, sentence, text) in {columns}: name it with "
                       "--text-columns")


def text_classification_data(splits: dict[str, Any], text_columns: list[str] | None = None,
                             label_column: str = "label") -> TextClassificationData:
    """The examples of ``splits`` (from ``load_splits``) and their classes (module docstring)."""
    import datasets

    if "validation" not in splits:
        raise CommandError("the dataset has no validation split (validation, dev, valid, val or test): give one "
                           "with --validation-file")
    train = splits["train"]
    columns = tuple(text_columns) if text_columns else default_text_columns(train.column_names)
    if not 1 <= len(columns) <= 2:
        raise CommandError(f"--text-columns names one or two columns, got {len(columns)}")
    unused = [name for name, feature in train.features.items() if name not in columns and name != label_column
              and isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")]
    if not text_columns and len(columns) == 1 and unused:
        logger.warning(f"the text of each example is its {columns[0]!r} alone: the other text column(s) {unused} are "
                       "not read (run_glue.py would pair the first two columns besides the label); for sentence "
                       "pairs name both with --text-columns A B")
    feature = train.features.get(label_column)
    labelled = {name: split for name, split in splits.items() if name != "test" or has_labels(split, label_column)}
    raw = {name: list(_column(split, label_column, "--label-column", name)) for name, split in labelled.items()}
    for name, values in raw.items():
        if not values:
            raise CommandError(f"the {name} split holds no examples")
        if any(value is None for value in values):
            raise CommandError(f"the {name} split has examples without a {label_column!r}")
    if isinstance(feature, datasets.ClassLabel):
        names, regression = tuple(feature.names), False
        for name, values in raw.items():
            if any(not 0 <= value < len(names) for value in values):
                raise CommandError(f"the {name} split has {label_column!r} ids outside 0..{len(names) - 1} "
                                   "(unlabelled rows, e.g. -1, cannot be trained or scored on)")
        labels = raw
    else:
        _refuse_missing_markers(raw, label_column)
        kinds = {type(value) for values in raw.values() for value in values}
        if kinds <= {int, bool}:
            raw = {name: [int(value) for value in values] for name, values in raw.items()}
            for name, values in raw.items():
                if min(values) < 0:
                    raise CommandError(f"the {name} split's {label_column!r} holds negative ids (unlabelled rows?): "
                                       f"{min(values)}; give every example its class")
            classes = sorted(set(raw["train"]))
            names, regression = tuple(str(value) for value in classes), False
            labels = _class_ids(raw, classes)
        elif kinds <= {int, float}:
            names, regression = (), True
            labels = {name: [float(value) for value in values] for name, values in raw.items()}
        elif kinds == {str}:
            _refuse_spacing_variants(raw, label_column)
            classes = sorted(set(raw["train"]))
            names, regression = tuple(classes), False
            labels = _class_ids(raw, classes)
        else:
            raise CommandError(f"{label_column!r} mixes kinds of labels ({sorted(k.__name__ for k in kinds)}): "
                               "give class names, class ids or scores")
        if not regression and len(names) < 2:
            raise CommandError(f"{label_column!r} has a single class in training: nothing to learn")
    examples = {}
    for name, split in splits.items():
        texts = [list(_column(split, column, "--text-columns", name)) for column in columns]
        for column, values in zip(columns, texts):
            bad = [row for row, value in enumerate(values) if not isinstance(value, str)]
            if bad:
                row, value = bad[0], values[bad[0]]
                number = isinstance(value, (int, float))
                what = ("nothing (an empty cell)" if value is None else f"the number {value!r}" if number else
                        f"{value!r} ({type(value).__name__})")
                more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
                why = (" (a CSV column whose cells are all numbers reads as numbers: give such texts as a JSON lines "
                       "file)") if number else ""
                raise CommandError(f"the {name} split's {column!r} holds {what} at row {row}{more}, not text: give "
                                   f"every example its text{why}")
        split_labels = labels[name] if name in labels else [None] * len(texts[0])  # an unlabelled test split
        if not split_labels:
            raise CommandError(f"the {name} split holds no examples")
        examples[name] = [
            {**{f"sentence{i + 1}": values[row] for i, values in enumerate(texts)}, "label": split_labels[row]}
            for row in range(len(split_labels))
        ]
    return TextClassificationData(examples, columns, names, regression)


def has_labels(split, column: str) -> bool:
    """Whether a test split has labels in ``column``: the column exists and some value is neither missing nor -1 (the
    Hub's mark of an unlabelled row, as GLUE's test splits have). One without is predicted, not scored."""
    if column not in split.column_names:
        return False
    return any(value is not None and value != -1 and value != "" for value in split[column])


def _class_ids(raw: dict[str, list], classes: list) -> dict[str, list[int]]:
    """Every split's labels as ids into ``classes`` (the sorted labels of the train split, as run_glue.py takes
    them); a label of another split that training never saw is a ``CommandError`` naming the split and the labels,
    raised before any training (a model cannot score a class it has no output for)."""
    index = {label: i for i, label in enumerate(classes)}
    labels = {}
    for name, values in raw.items():
        unseen = sorted(set(values) - set(index))
        if unseen:
            shown = classes if len(classes) <= 10 else [*classes[:10], "..."]
            raise CommandError(f"the {name} split has labels never seen in training: {unseen[:5]}"
                               f"{' ...' if len(unseen) > 5 else ''} (the train split's classes are {shown}): add "
                               f"examples of them to the training data or leave them out of the {name} split")
        labels[name] = [index[value] for value in values]
    return labels


#: The cells pandas reads as missing by default (``read_csv``'s ``na_values``): a label column of numbers holding
#: one of these had a missing label (``CSV_OPTIONS`` keeps them as text, so that texts holding them stay text).
MISSING_MARKERS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                             "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def _refuse_missing_markers(raw: dict[str, list], label_column: str) -> None:
    """A label column whose values are all numbers but some "NA", "null", "None" ... (``MISSING_MARKERS``) has
    examples without a label: a ``CommandError`` naming the split, the row and the value (not a class "NA")."""
    values = [value for values in raw.values() for value in values]
    markers = [isinstance(value, str) and value.strip() in MISSING_MARKERS for value in values]
    if not any(markers) or all(markers):
        return
    if not all(marker or _is_number(value) for marker, value in zip(markers, values)):
        return  # class names, one of which may well be "None"
    for name, split_values in raw.items():
        for row, value in enumerate(split_values):
            if isinstance(value, str) and value.strip() in MISSING_MARKERS:
                raise CommandError(f"the {name} split has examples without a {label_column!r}: row {row} holds "
                                   f"{value!r} among numbers; give every example its label")


def _refuse_spacing_variants(raw: dict[str, list[str]], label_column: str) -> None:
    """Class names that differ only in the spaces around them ("pos" and "pos ", a cell written with a space after
    the delimiter) would be two classes: a ``CommandError`` naming both spellings and where the second one first is
    (split and row), before any training."""
    first: dict[str, tuple[str, str, int]] = {}  # stripped name -> (spelling, split, row) where it was first seen
    for name, values in raw.items():
        for row, value in enumerate(values):
            seen = first.setdefault(value.strip(), (value, name, row))
            if seen[0] != value:
                raise CommandError(
                    f"{label_column!r} spells one class two ways, {seen[0]!r} (the {seen[1]} split's row {seen[2]}) "
                    f"and {value!r} (the {name} split's row {row}): they would be two classes; write every label "
                    "without spaces around it"
                )


def _is_number(value) -> bool:
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


#: What a row's list of words or tags looks like, for errors.
LIST_EXAMPLES = {"words": '["EU", "rejects", "German"]', "tags": '["B-ORG", "O", "B-MISC"]'}


def _listed(value, column: str, split_name: str, row: int, what: str):
    """A word or tag cell ``value`` as read: a ``CommandError`` naming the split, the column and the row when it is
    text (a CSV/TSV cell, or a JSON string "EU rejects German"), which would otherwise be read character by
    character (a misleading count of words and tags, or a model trained on characters when the counts agree)."""
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise CommandError(
            f"the {split_name} split's {column!r} holds text at row {row} ({shown!r}), not a list of {what}: give each "
            f"row its {what} as a list, e.g. {LIST_EXAMPLES[what]} (a CSV or TSV cell can only hold text: "
            "give the data as JSON lines, parquet or a Hub/datasets folder)"
        )
    return value


def token_classification_data(splits: dict[str, Any], tokens_column: str = "tokens", tags_column: str = "ner_tags",
                              need_validation: bool = True) -> dict[str, list[tuple[list[str], list[str]]]]:
    """``{split: [(words, tags), ...]}`` with tag names (``ClassLabel`` ids mapped through the feature's names).
    Without ``need_validation`` (the caller holds a part of train out) "validation" is not read. A "test" split keeps
    its empty rows (one prediction line per row) and may have no tags column (its tags are then None). A words or
    tags cell holding text rather than a list is a ``CommandError`` naming the column and the row."""
    import datasets

    if not need_validation:
        splits = {name: split for name, split in splits.items() if name != "validation"}
    elif "validation" not in splits:
        raise CommandError("the dataset has no validation split (validation, dev, valid, val or test)")
    feature = splits["train"].features.get(tags_column)
    inner = getattr(feature, "feature", None)  # Sequence(ClassLabel) or List(ClassLabel)
    names = inner.names if isinstance(inner, datasets.ClassLabel) else None
    out = {}
    for name, split in splits.items():
        words = _column(split, tokens_column, "--tokens-column", name)
        if name == "test" and (tags_column not in split.column_names
                               or all(tags is None for tags in split[tags_column])):
            # predicted, not scored: tags None (a test file read beside tagged ones has None cells)
            out[name] = [(list(_listed(w, tokens_column, name, row, "words")), None)  # every row, empty ones too:
                         for row, w in enumerate(words)]  # one prediction line each
            if not out[name]:
                raise CommandError(f"the {name} split holds no sentences")
            continue
        tags = _column(split, tags_column, "--tags-column", name)
        sentences = []
        for row, (w, t) in enumerate(zip(words, tags)):
            w = _listed(w, tokens_column, name, row, "words")
            if t is None:
                raise CommandError(f"the {name} split's row {row} has no {tags_column!r}: give every row its tags")
            t = _listed(t, tags_column, name, row, "tags")
            if len(w) != len(t):
                raise CommandError(f"the {name} split's row {row} has {len(w)} words but {len(t)} tags")
            if names is not None:
                t = [names[i] for i in t]
            elif any(not isinstance(tag, str) for tag in t):
                raise CommandError(f"{tags_column!r} holds ids without names (not a ClassLabel): give tag strings or "
                                   "a ClassLabel feature")
            if w or name == "test":  # a test row is kept even when empty: one prediction line per row
                sentences.append((list(w), list(t)))
        if not any(w for w, _ in sentences):
            raise CommandError(f"the {name} split holds no sentences")
        out[name] = sentences
    return out


def stream_text_lines(dataset_name: str, dataset_config: str | None, text_column: str, split: str = "train",
                      hub: HubOptions | None = None):
    """The non-empty text lines of one split of a dataset read with ``streaming=True`` (nothing held in memory),
    re-iterable: each ``iter()`` reads the split again from its start (``pretrain --dataset --stream``); ``hub``: the
    Hub and cache options."""
    splits = load_splits(dataset_name, dataset_config, streaming=True, option="--dataset", hub=hub)
    if split not in splits:
        raise CommandError(f"--dataset {dataset_name!r} has no {split} split (validation, dev, valid, val or test): "
                           "give held-out text with --eval-text")
    stream = splits[split]
    columns = getattr(stream, "column_names", None)
    if columns is not None and text_column not in columns:
        raise CommandError(f"--text-column {text_column!r} is not in {dataset_name}: {columns}")

    class Lines:
        def __iter__(self):
            for row in stream:
                text = row[text_column]
                for line in (text or "").splitlines():
                    if line.strip():
                        yield line.strip()

    return Lines()


def describe(dataset_name: str | None, train_file: str | None) -> str:
    """The dataset's name for reports and model cards: the Hub id, or the training file's name."""
    return dataset_name if dataset_name is not None else os.path.basename(train_file or "")


def dataset_type(dataset_name: str | None, train_file: str | None) -> str:
    """The result record's dataset type: the dataset's name, or the data file's format (its extension, lower case:
    a model card lists no local format as a Hub dataset)."""
    return dataset_name if dataset_name is not None else Path(train_file or "").suffix[1:].lower() or "file"


def is_data_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a data file ``load_splits`` reads (rows of a table): an extension of ``FILE_BUILDERS``."""
    return Path(path).suffix.lower() in FILE_BUILDERS
