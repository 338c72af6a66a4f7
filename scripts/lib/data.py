"""Readers for the data the command line trains and fine-tunes on: GLUE, CoNLL tagging files, plain text.

Why our own readers: the commands must work offline on the files a user already has (the original GLUE
TSVs, CoNLL-2003 style column files, plain-text corpora), and a bad file must fail with a message that
names the file, the line and what was expected, not with a ``KeyError`` three layers down in a trainer.

Three groups:

- **GLUE**: ``GLUE_TASKS`` is the table of the nine tasks (files, columns, labels, metrics, Hub names);
  ``glue_task`` looks a task up by a forgiving name ("sst2", "SST-2", "sts-b"); ``load_glue_split``
  reads the original GLUE TSV layout and ``load_glue_from_hub`` reads the same split from the Hugging
  Face Hub (``nyu-mll/glue``). Both return ``[{"sentence1": ..., "sentence2": ..., "label": ...}]`` with
  the label as a class id (an index into ``GlueTask.tsv_labels``), a float for STS-B, or ``None`` for the
  unlabelled test splits. ``sentence2`` is present only for the sentence-pair tasks.
- **Tagging files**: ``read_conll`` reads ``word ... tag`` column files (CoNLL-2003 NER, CoNLL-2000 chunking; the tag
  column the last, or the task's: ``conll_tag_column``) and ``read_conllu`` Universal Dependencies' CoNLL-U files
  (the UPOS or XPOS column) into ``(words, tags)`` sentences; ``read_tagged_file`` picks the reader by format or
  file suffix; ``conll_label_list`` gives the labels in a fixed order ("O" first, then by entity type);
  ``hold_out`` splits a held-out evaluation part off the training sentences, deterministically.
- **Plain text**: ``read_text_files`` returns the non-empty lines of text files and
  ``shipped_corpus_files`` lists the Shakespeare plays shipped with the package (``macbeth.txt`` is the
  held-out evaluation play).

Only the standard library is needed; ``datasets`` is imported by ``load_glue_from_hub`` alone.
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, os.PathLike]

# --------------------------------------------------------------------------------------------------
# GLUE
# --------------------------------------------------------------------------------------------------

#: The Hugging Face Hub dataset that ``load_glue_from_hub`` reads.
GLUE_HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its examples are in the TSV files, what its labels are, how it is scored.

    Columns are found by their header name (every GLUE file has a header except CoLA's train and dev
    files, which are read by position: ``source label _ sentence``).

    Attributes:
        name: the canonical name, also the folder name in the GLUE download (``"SST-2"``).
        splits: split name -> TSV file name (``"dev"`` -> ``"dev.tsv"``; MNLI has ``dev_matched`` and
            ``dev_mismatched``). Splits whose name starts with ``"test"`` have no labels.
        sentence1, sentence2: header names of the text column(s); ``sentence2`` is ``None`` for
            single-sentence tasks.
        label: header name of the label column (absent in test files).
        tsv_labels: the label strings as written in the TSV, in class-id order; empty for regression.
        label_names: human-readable names of the same classes (the Hub's ``ClassLabel`` names), for
            ``id2label``; empty for regression.
        is_regression: STS-B: the label is a similarity score in [0, 5].
        metrics: the official metric names, in the order GLUE reports them.
        eval_splits: the split(s) a model is evaluated on (MNLI: matched and mismatched).
        hub_config: config name in ``nyu-mll/glue``.
        hub_columns: Hub column names for sentence1 (and sentence2).
        positional_splits: splits whose files have no header, read by ``positions``.
        positions: (sentence1, sentence2 or None, label) column indices for ``positional_splits``.
    """

    name: str
    splits: dict[str, str]
    sentence1: str
    sentence2: str | None
    label: str
    tsv_labels: tuple[str, ...]
    label_names: tuple[str, ...]
    is_regression: bool
    metrics: tuple[str, ...]
    eval_splits: tuple[str, ...]
    hub_config: str
    hub_columns: tuple[str, ...]
    positional_splits: frozenset[str] = field(default_factory=frozenset)
    positions: tuple[int, int | None, int] | None = None

    @property
    def is_pair(self) -> bool:
        """Whether examples are sentence pairs."""
        return self.sentence2 is not None

    @property
    def num_labels(self) -> int:
        """Number of outputs a model needs: the number of classes, or 1 for regression."""
        return 1 if self.is_regression else len(self.tsv_labels)

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> readable name (empty for regression)."""
        return dict(enumerate(self.label_names))


_STANDARD_SPLITS = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            name="CoLA", splits=dict(_STANDARD_SPLITS), sentence1="sentence", sentence2=None, label="label",
            tsv_labels=_BINARY, label_names=("unacceptable", "acceptable"), is_regression=False,
            metrics=("matthews_correlation",), eval_splits=("dev",), hub_config="cola",
            hub_columns=("sentence",), positional_splits=frozenset({"train", "dev"}), positions=(3, None, 1),
        ),
        GlueTask(
            name="SST-2", splits=dict(_STANDARD_SPLITS), sentence1="sentence", sentence2=None, label="label",
            tsv_labels=_BINARY, label_names=("negative", "positive"), is_regression=False,
            metrics=("accuracy",), eval_splits=("dev",), hub_config="sst2", hub_columns=("sentence",),
        ),
        GlueTask(
            name="MRPC", splits=dict(_STANDARD_SPLITS), sentence1="#1 String", sentence2="#2 String",
            label="Quality", tsv_labels=_BINARY, label_names=("not_equivalent", "equivalent"),
            is_regression=False, metrics=("f1", "accuracy"), eval_splits=("dev",), hub_config="mrpc",
            hub_columns=("sentence1", "sentence2"),
        ),
        GlueTask(
            name="QQP", splits=dict(_STANDARD_SPLITS), sentence1="question1", sentence2="question2",
            label="is_duplicate", tsv_labels=_BINARY, label_names=("not_duplicate", "duplicate"),
            is_regression=False, metrics=("f1", "accuracy"), eval_splits=("dev",), hub_config="qqp",
            hub_columns=("question1", "question2"),
        ),
        GlueTask(
            name="STS-B", splits=dict(_STANDARD_SPLITS), sentence1="sentence1", sentence2="sentence2",
            label="score", tsv_labels=(), label_names=(), is_regression=True, metrics=("pearson", "spearman"),
            eval_splits=("dev",), hub_config="stsb", hub_columns=("sentence1", "sentence2"),
        ),
        GlueTask(
            name="MNLI",
            splits={
                "train": "train.tsv",
                "dev_matched": "dev_matched.tsv",
                "dev_mismatched": "dev_mismatched.tsv",
                "test_matched": "test_matched.tsv",
                "test_mismatched": "test_mismatched.tsv",
            },
            sentence1="sentence1", sentence2="sentence2", label="gold_label",
            tsv_labels=("contradiction", "entailment", "neutral"),
            label_names=("contradiction", "entailment", "neutral"), is_regression=False,
            metrics=("accuracy",), eval_splits=("dev_matched", "dev_mismatched"), hub_config="mnli",
            hub_columns=("premise", "hypothesis"),
        ),
        GlueTask(
            name="QNLI", splits=dict(_STANDARD_SPLITS), sentence1="question", sentence2="sentence", label="label",
            tsv_labels=_NLI2, label_names=_NLI2, is_regression=False, metrics=("accuracy",),
            eval_splits=("dev",), hub_config="qnli", hub_columns=("question", "sentence"),
        ),
        GlueTask(
            name="RTE", splits=dict(_STANDARD_SPLITS), sentence1="sentence1", sentence2="sentence2", label="label",
            tsv_labels=_NLI2, label_names=_NLI2, is_regression=False, metrics=("accuracy",),
            eval_splits=("dev",), hub_config="rte", hub_columns=("sentence1", "sentence2"),
        ),
        GlueTask(
            name="WNLI", splits=dict(_STANDARD_SPLITS), sentence1="sentence1", sentence2="sentence2", label="label",
            tsv_labels=_BINARY, label_names=("not_entailment", "entailment"), is_regression=False,
            metrics=("accuracy",), eval_splits=("dev",), hub_config="wnli", hub_columns=("sentence1", "sentence2"),
        ),
    )
}

# Hub split names -> ours, so both spellings are accepted everywhere.
_SPLIT_ALIASES = {
    "validation": "dev",
    "validation_matched": "dev_matched",
    "validation_mismatched": "dev_mismatched",
}


def _task_key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


_TASKS_BY_KEY = {_task_key(name): task for name, task in GLUE_TASKS.items()}


def glue_task(name: str) -> GlueTask:
    """The GLUE task called ``name``, case-insensitive, with or without hyphen ("sst2", "SST-2", "sts-b")."""
    task = _TASKS_BY_KEY.get(_task_key(str(name)))
    if task is None:
        allowed = ", ".join(GLUE_TASKS)
        raise ValueError(f"unknown GLUE task {name!r}; allowed (any case, hyphen optional): {allowed}")
    return task


def _normalise_split(task: GlueTask, split: str) -> str:
    key = _SPLIT_ALIASES.get(split.strip().lower(), split.strip().lower())
    if key not in task.splits:
        raise ValueError(f"unknown split {split!r} for GLUE task {task.name}; allowed: {', '.join(task.splits)}")
    return key


def _find_task_dir(task: GlueTask, data_dir: Path, filename: str) -> Path:
    """``data_dir`` may be the GLUE root (holding ``RTE/``) or the task's own folder."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"GLUE data folder {str(data_dir)!r} does not exist or is not a folder")
    candidates = [data_dir / task.name]
    candidates += sorted(p for p in data_dir.iterdir() if p.is_dir() and _task_key(p.name) == _task_key(task.name))
    for folder in candidates:
        if folder.is_dir():
            return folder
    if (data_dir / filename).is_file():
        return data_dir
    raise FileNotFoundError(
        f"no {task.name} data in {str(data_dir)!r}: expected a folder {task.name}/ holding {filename} "
        f"(or {filename} directly in that folder)"
    )


def _parse_label(task: GlueTask, raw: str, where: str) -> int | float:
    value = raw.strip()
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = float("nan")
        if not 0.0 <= score <= 5.0:  # also rejects NaN
            raise ValueError(f"{where}: {task.name} score {raw!r} is not a number between 0 and 5")
        return score
    if value not in task.tsv_labels:
        allowed = ", ".join(repr(label) for label in task.tsv_labels)
        raise ValueError(f"{where}: unknown {task.name} label {raw!r}; allowed: {allowed}")
    return task.tsv_labels.index(value)


def _column_indices(
    task: GlueTask, header: list[str], labelled: bool, path: Path
) -> tuple[int, int | None, int | None]:
    """Positions of sentence1, sentence2 and label, looked up by name in the header row."""
    wanted = [task.sentence1] + ([task.sentence2] if task.sentence2 else []) + ([task.label] if labelled else [])
    names = [name.strip() for name in header]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ValueError(
            f"{path}, line 1: the header lacks column(s) {missing}; a {task.name} file needs {wanted}, "
            f"found {names}"
        )
    s2 = names.index(task.sentence2) if task.sentence2 else None
    label = names.index(task.label) if labelled else None
    return names.index(task.sentence1), s2, label


def load_glue_split(task: str, data_dir: PathLike, split: str) -> list[dict[str, Any]]:
    """Read one split of a GLUE task from the original GLUE TSV files.

    Args:
        task: a task name accepted by ``glue_task`` ("rte", "SST-2", ...).
        data_dir: the GLUE folder holding one sub-folder per task (``glue/RTE/dev.tsv``), or the task's
            folder itself.
        split: "train", "dev" or "test" ("dev_matched", "dev_mismatched", ... for MNLI); the Hub spelling
            "validation" is accepted for "dev".

    Returns:
        One dict per example: ``sentence1``, ``sentence2`` (pair tasks only) and ``label``: the class id
        (index into ``tsv_labels``), a float for STS-B, ``None`` for test splits.

    Raises:
        FileNotFoundError: the folder or file is missing.
        ValueError: the task or split is unknown, the file is empty, a row has too few columns, the header
            lacks a column, or a label is not one of the task's labels (with file name and line number).
    """
    spec = glue_task(task)
    split_key = _normalise_split(spec, split)
    filename = spec.splits[split_key]
    path = _find_task_dir(spec, Path(data_dir), filename) / filename
    if not path.is_file():
        raise FileNotFoundError(f"GLUE {spec.name} {split_key} file {str(path)!r} does not exist")
    labelled = not split_key.startswith("test")

    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            if split_key in spec.positional_splits and spec.positions is not None:
                s1, s2, label = spec.positions
                if not labelled:
                    label = None
            else:
                header = next(reader, None)
                if header is None:
                    raise ValueError(f"{path} is empty: expected a header line and one {spec.name} example per line")
                s1, s2, label = _column_indices(spec, header, labelled, path)
            needed = 1 + max(i for i in (s1, s2, label) if i is not None)
            examples = [_glue_example(spec, row, (s1, s2, label), needed, f"{path}, line {reader.line_num}")
                        for row in reader if row]
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path} is not UTF-8 text ({err.reason}); GLUE files are UTF-8 tab-separated text"
            ) from None
    if not examples:
        raise ValueError(f"{path} holds no examples: expected one {spec.name} example per line")
    return examples


def _glue_example(task: GlueTask, row: list[str], columns: tuple[int, int | None, int | None], needed: int,
                  where: str) -> dict[str, Any]:
    if len(row) < needed:
        raise ValueError(
            f"{where}: expected at least {needed} tab-separated columns for {task.name}, found {len(row)}"
        )
    s1, s2, label = columns
    example: dict[str, Any] = {"sentence1": row[s1]}
    if s2 is not None:
        example["sentence2"] = row[s2]
    example["label"] = None if label is None else _parse_label(task, row[label], where)
    return example


def load_glue_from_hub(task: str, split: str, cache_dir: PathLike | None = None, **load_kwargs) -> list[dict[str, Any]]:
    """Read one split of a GLUE task from the Hugging Face Hub (``nyu-mll/glue``), as ``load_glue_split`` does.
    ``load_kwargs``: more keywords of ``datasets.load_dataset`` (the Hub options' ``HubOptions.dataset_kwargs``:
    the token, --overwrite_cache's download mode).

    Hub split names ("validation", "validation_matched") and ours ("dev", "dev_matched") are both accepted.
    Class ids are mapped through the Hub's label names, so they agree with ``load_glue_split`` (the Hub
    orders MNLI's classes differently from the GLUE TSVs). Unlabelled rows (label -1) get ``None``.
    """
    import datasets  # heavy; only this function needs it

    spec = glue_task(task)
    split_key = _normalise_split(spec, split)
    hub_split = split_key.replace("dev", "validation")
    if cache_dir is not None:
        load_kwargs["cache_dir"] = str(cache_dir)
    data = datasets.load_dataset(GLUE_HUB_DATASET, spec.hub_config, split=hub_split, **load_kwargs)
    label_feature = data.features.get("label") if getattr(data, "features", None) is not None else None
    hub_names = list(getattr(label_feature, "names", None) or [])
    examples = []
    for row in data:
        example: dict[str, Any] = {"sentence1": row[spec.hub_columns[0]]}
        if spec.is_pair:
            example["sentence2"] = row[spec.hub_columns[1]]
        example["label"] = _hub_label(spec, row.get("label"), hub_names)
        examples.append(example)
    return examples


def _hub_label(task: GlueTask, value: Any, hub_names: list[str]) -> int | float | None:
    if value is None:
        return None
    if task.is_regression:
        return float(value)
    if int(value) < 0:  # the Hub marks unlabelled test rows with -1
        return None
    name = hub_names[int(value)] if hub_names else task.label_names[int(value)]
    if name not in task.label_names:
        raise ValueError(f"Hub label {name!r} of {task.name} is not one of {list(task.label_names)}")
    return task.label_names.index(name)


# --------------------------------------------------------------------------------------------------
# CoNLL column files
# --------------------------------------------------------------------------------------------------


def _existing_file(path: PathLike, what: str = "text file") -> Path:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{what} {str(file)!r} does not exist")
    if not file.is_file():
        raise ValueError(f"{what} {str(file)!r} is a folder, not a file")
    return file


def _line_breaks(data: bytes) -> int:
    """The line breaks in ``data`` as universal newlines count them: \\n, \\r\\n and a lone \\r."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def not_utf8_error(path: PathLike, expected: str = "") -> ValueError:
    """The ``ValueError`` for a file that does not decode as UTF-8: it names the file, the line (counted as universal
    newlines count them), the byte of that line and the bytes that do not decode, found by reading the file again
    in binary a line at a time (a UnicodeDecodeError's offset is into the chunk the decoder was given, not into the
    file). ``expected``: what the file should have been, appended ("; expected a CoNLL text file")."""
    file = Path(path)
    line = 1
    with open(file, "rb") as f:
        for raw in f:  # a \n byte is never part of a UTF-8 sequence: every piece decodes alone
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                before = raw[: err.start]
                start = max(before.rfind(b"\n"), before.rfind(b"\r")) + 1  # where the (universal) line starts
                bad = raw[err.start : err.end]
                return ValueError(f"{file} is not UTF-8 text: line {line + _line_breaks(before)}, byte "
                                  f"{err.start - start + 1} of the line, {bad!r} ({err.reason}); save the file as "
                                  f"UTF-8{expected}")
            line += _line_breaks(raw)
    return ValueError(f"{file} is not UTF-8 text; save the file as UTF-8{expected}")  # it decoded this time


#: What separates the columns of a CoNLL line: runs of ASCII spaces and tabs. Not ``str.split()``'s whitespace,
#: which is Unicode's too: a word holding a no-break space ("10\u00a0000"), an ideographic space or U+0085 would be
#: cut in two (its first part kept as the word, the rest taken for columns).
_CONLL_SEPARATORS = re.compile(r"[ \t\r\n\x0b\x0c]+")


def _conll_columns(line: str) -> list[str]:
    return [column for column in _CONLL_SEPARATORS.split(line) if column]


#: The tagging tasks whose column ``read_conll`` can pick (``task``), and the column (0-based) each takes by the
#: number of columns of the file's word lines. NER tags are the last column of every layout (CoNLL-2003's word POS
#: chunk NER, CoNLL-2002's word NER or word POS NER): "ner" maps to None, the last column, whatever the count. A
#: "word tag" file (2 columns) holds its one tag whatever the task; CoNLL-2000's word POS chunk (3 columns) part of
#: speech in column 2 (as CoNLL-2002's Dutch word POS NER) and chunks last; CoNLL-2003's word POS chunk NER (4
#: columns) part of speech in column 2 and chunks in column 3. Another count for pos or chunk is not guessed.
CONLL_TASK_COLUMNS: dict[str, dict[int, int] | None] = {
    "ner": None,
    "pos": {2: 1, 3: 1, 4: 1},
    "chunk": {2: 1, 3: 2, 4: 2},
}
#: What each layout of ``CONLL_TASK_COLUMNS`` is, for errors.
_CONLL_LAYOUTS = {2: "word tag", 3: "CoNLL-2000's word POS chunk", 4: "CoNLL-2003's word POS chunk NER"}


def conll_tag_column(task: str, columns: int, file: PathLike | None = None) -> int:
    """The column (0-based) that holds ``task``'s tags in a CoNLL file whose word lines have ``columns`` columns
    (``CONLL_TASK_COLUMNS``): the last for ner; for pos and chunk the column of the layouts known, else a
    ``ValueError`` naming ``file``, the column count and what to do. ``ValueError`` for an unknown task too."""
    if task not in CONLL_TASK_COLUMNS:
        raise ValueError(f"unknown tagging task {task!r}; allowed: {', '.join(CONLL_TASK_COLUMNS)}")
    layouts = CONLL_TASK_COLUMNS[task]
    if layouts is None:
        return columns - 1
    if columns not in layouts:
        known = "; ".join(f"{count} columns ({_CONLL_LAYOUTS[count]}): column {index + 1}"
                          for count, index in layouts.items())
        raise ValueError(
            f"{file}: its word lines have {columns} columns, and which of them holds the {task} tags is not known "
            f"(the {task} tags are read from {known}); write the file in one of these layouts, e.g. keep only the "
            f"word and its {task} tag (2 columns)"
        )
    return layouts[columns]


def read_conll(path: PathLike, task: str | None = None) -> list[tuple[list[str], list[str]]]:
    """Read a CoNLL-style tagging file into ``(words, tags)`` sentences.

    Format: one token per line, columns separated by ASCII spaces or tabs (a no-break or other Unicode space is
    part of the word), the word in the first column and the tag in the LAST (``EU NNP B-NP B-ORG``); a blank line
    (whitespace only) ends a sentence; ``-DOCSTART-`` lines are skipped. A missing final blank line, Windows or old
    Mac line endings and a leading byte-order mark are fine.

    ``task`` ("ner", "chunk" or "pos") picks the tag column by the task instead (``conll_tag_column``): ner the
    last; pos column 2 and chunk column 3 of a CoNLL-2003 file (word POS chunk NER), pos column 2 and chunk the last
    of a CoNLL-2000 file (word POS chunk), the only tag of a "word tag" file. For pos and chunk every word line must
    have the column count of the first (a ``ValueError`` naming the line), and a count of no known layout for the
    task (5 columns) is a ``ValueError`` naming the file and the count rather than a guess.
    """
    if task is not None and task not in CONLL_TASK_COLUMNS:
        raise ValueError(f"unknown tagging task {task!r}; allowed: {', '.join(CONLL_TASK_COLUMNS)}")
    by_position = task is not None and CONLL_TASK_COLUMNS[task] is not None  # pos, chunk: one column count
    file = _existing_file(path, "CoNLL file")
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    layout: tuple[int, int, int] | None = None  # (column count, tag column, line number) of the first word line
    try:
        with open(file, encoding="utf-8-sig") as f:  # a leading BOM dropped; universal newlines: \r\n read as \n
            for number, line in enumerate(f, start=1):
                columns = _conll_columns(line) if line.strip() else []
                if not columns or columns[0] == "-DOCSTART-":
                    if words:
                        sentences.append((words, tags))
                        words, tags = [], []
                    continue
                if len(columns) < 2:
                    raise ValueError(
                        f"{file}, line {number}: expected at least 2 whitespace-separated columns (word ... tag), "
                        f"found 1: {line.rstrip()!r}"
                    )
                tag = -1
                if by_position:
                    if layout is None:
                        layout = (len(columns), conll_tag_column(task, len(columns), file), number)
                    elif len(columns) != layout[0]:
                        raise ValueError(
                            f"{file}, line {number}: {len(columns)} columns where line {layout[2]} has {layout[0]}: "
                            f"{line.rstrip()!r}; the {task} tags are read from one column (column {layout[1] + 1}), "
                            "so every word line needs the same columns"
                        )
                    tag = layout[1]
                words.append(columns[0])
                tags.append(columns[tag])
    except UnicodeDecodeError:
        raise not_utf8_error(file, "; expected a CoNLL text file") from None
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{file} holds no sentences: expected 'word ... tag' lines with blank lines between sentences")
    return sentences


#: The tag columns of a CoNLL-U word line (0-based): universal part of speech, language-specific part of speech.
CONLLU_TAG_COLUMNS = {"upos": 3, "xpos": 4}
#: The tagging-file formats ``read_tagged_file`` reads; "auto" picks CoNLL-U for a ``.conllu`` file.
TAGGED_FORMATS = ("auto", "conll", "conllu")

_CONLLU_WORD_ID = re.compile(r"[1-9][0-9]*")  # a syntactic word; "1-2" is a multiword token, "1.1" an empty node
_CONLLU_SKIPPED_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*|[0-9]+\.[1-9][0-9]*")


def read_conllu(path: PathLike, tag_column: str = "upos") -> list[tuple[list[str], list[str]]]:
    """Read a CoNLL-U file (Universal Dependencies) into ``(words, tags)`` sentences.

    Format: one line per word with 10 tab-separated columns ``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``;
    ``#`` lines are comments (sentence ids, text); a blank line ends a sentence. The words are the FORMs of the
    syntactic words (ID an integer); multiword-token lines (ID ``1-2``: the surface form "don't" whose words follow
    as their own lines) and empty nodes (ID ``8.1``, enhanced dependencies only) are skipped. The tag is the UPOS
    column (``tag_column="upos"``) or the XPOS column (``"xpos"``); ``_`` there (the column left empty, as some
    treebanks do for XPOS) is an error naming the line.
    """
    if tag_column not in CONLLU_TAG_COLUMNS:
        raise ValueError(f"unknown CoNLL-U tag column {tag_column!r}; allowed: {', '.join(CONLLU_TAG_COLUMNS)}")
    column = CONLLU_TAG_COLUMNS[tag_column]
    file = _existing_file(path, "CoNLL-U file")
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    try:
        with open(file, encoding="utf-8-sig") as f:  # a leading BOM dropped; universal newlines: \r\n read as \n
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\n")
                if not line.strip():
                    if words:
                        sentences.append((words, tags))
                        words, tags = [], []
                    continue
                if line.startswith("#"):
                    continue
                fields = line.split("\t")
                where = f"{file}, line {number}"
                if len(fields) != 10:
                    raise ValueError(
                        f"{where}: expected 10 tab-separated CoNLL-U columns (ID FORM LEMMA UPOS XPOS FEATS HEAD "
                        f"DEPREL DEPS MISC), found {len(fields)}: {line!r}"
                    )
                if _CONLLU_SKIPPED_ID.fullmatch(fields[0]):
                    continue
                if not _CONLLU_WORD_ID.fullmatch(fields[0]):
                    raise ValueError(f"{where}: ID {fields[0]!r} is not a word index (1, 2, ...), a multiword "
                                     "range (1-2) or an empty node (1.1)")
                tag = fields[column]
                if tag in ("", "_"):
                    other = "xpos" if tag_column == "upos" else "upos"
                    raise ValueError(
                        f"{where}: the {tag_column.upper()} column (column {column + 1}) of word {fields[1]!r} is "
                        f"empty ({tag!r}): this file has no {tag_column.upper()} tags; read the {other.upper()} "
                        "column instead"
                    )
                if not fields[1]:
                    raise ValueError(f"{where}: word {fields[0]} has an empty FORM (column 2)")
                words.append(fields[1])
                tags.append(tag)
    except UnicodeDecodeError:
        raise not_utf8_error(file, "; expected a CoNLL-U text file") from None
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{file} holds no sentences: expected CoNLL-U word lines (10 tab-separated columns) with "
                         "blank lines between sentences")
    return sentences


def tagged_file_format(path: PathLike, file_format: str = "auto") -> str:
    """The format a tagging file is read in: ``file_format`` itself, or for "auto" "conllu" when the file name ends
    in ``.conllu`` (any case), else "conll"."""
    if file_format not in TAGGED_FORMATS:
        raise ValueError(f"unknown tagging-file format {file_format!r}; allowed: {', '.join(TAGGED_FORMATS)}")
    if file_format == "auto":
        return "conllu" if Path(path).suffix.lower() == ".conllu" else "conll"
    return file_format


def read_tagged_file(path: PathLike, file_format: str = "auto", tag_column: str = "upos",
                     task: str | None = None) -> list[tuple[list[str], list[str]]]:
    """``(words, tags)`` sentences of a tagging file: ``read_conllu(path, tag_column)`` for the CoNLL-U format,
    ``read_conll(path, task)`` for CoNLL columns (the tag in the last column, or in ``task``'s column: ``read_conll``);
    the format as ``tagged_file_format`` says."""
    if tagged_file_format(path, file_format) == "conllu":
        return read_conllu(path, tag_column)
    return read_conll(path, task)


def hold_out(items: Sequence, percentage: float, seed: int) -> tuple[list, list]:
    """Split ``items`` into (kept, held out): ``percentage`` % of ``len(items)``, rounded half up, items drawn at
    random with ``random.Random(seed)`` are held out (the same ones for the same seed, length and percentage); both
    parts keep the items' order. ``ValueError`` unless 0 < percentage < 100 and both parts get at least one item."""
    if not 0 < percentage < 100:
        raise ValueError(f"the held-out percentage must be in (0, 100), got {percentage:g}")
    n = len(items)
    size = int(n * percentage / 100 + 0.5)
    if not 0 < size < n:
        nothing = "nothing to evaluate on" if size == 0 else "nothing to train on"
        raise ValueError(f"{percentage:g}% of {n} sentences is {size}: {nothing}; both parts need at least one "
                         "sentence")
    chosen = set(random.Random(seed).sample(range(n), size))
    kept = [item for i, item in enumerate(items) if i not in chosen]
    held = [item for i, item in enumerate(items) if i in chosen]
    return kept, held

# Order of the prefixes within one entity type: IOB2 (B, I), IOBES (B, I, E, S), BILOU (B, I, L, U).
_PREFIX_ORDER = {"B": 0, "I": 1, "E": 2, "L": 2, "S": 3, "U": 3}


def _label_sort_key(label: str) -> tuple[str, int, str]:
    prefix, sep, entity = label.partition("-")
    if sep and len(prefix) == 1:
        return entity, _PREFIX_ORDER.get(prefix, len(_PREFIX_ORDER)), prefix
    return label, -1, ""  # a tag without a prefix (a POS tag, say) sorts by itself


def conll_label_list(sentences: Iterable[tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """The distinct tags of ``sentences``, deterministic: "O" first, then by entity type, then prefix.

    Example: ``["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]``.
    """
    seen = {tag for _, tags in sentences for tag in tags}
    rest = sorted(seen - {"O"}, key=_label_sort_key)
    return (["O"] if "O" in seen else []) + rest


# --------------------------------------------------------------------------------------------------
# Plain text
# --------------------------------------------------------------------------------------------------

#: The shipped corpus (public-domain Shakespeare) and the play held out for evaluation.
CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus" / "shakespeare"  # scripts/corpus, shipped as package data
EVAL_PLAY = "macbeth.txt"


def read_text_files(paths: PathLike | Iterable[PathLike]) -> list[str]:
    """The non-empty lines of the given UTF-8 text files, whitespace stripped, in file order; a byte-order mark
    at the start of a file is not text (dropped).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` when no path is given, a file holds
    no text or is not valid UTF-8 (``not_utf8_error``: naming the file, the line and the bytes).
    """
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not files:
        raise ValueError("no text files given: expected at least one path")
    lines: list[str] = []
    for file in map(_existing_file, files):
        try:
            text = file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise not_utf8_error(file) from None
        found = [line.strip() for line in text.splitlines() if line.strip()]
        if not found:
            raise ValueError(f"{file} is empty: expected at least one non-blank line of text")
        lines.extend(found)
    return lines


def shipped_corpus_files(split: str = "train") -> list[Path]:
    """The shipped Shakespeare files: "eval" is ``macbeth.txt`` alone (held out), "train" all the others."""
    if split not in ("train", "eval"):
        raise ValueError(f"unknown corpus split {split!r}; allowed: 'train', 'eval'")
    files = sorted(CORPUS_DIR.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"the shipped corpus is missing: no .txt files in {str(CORPUS_DIR)!r}")
    chosen = [f for f in files if (f.name == EVAL_PLAY) == (split == "eval")]
    if not chosen:
        raise FileNotFoundError(f"the shipped corpus in {str(CORPUS_DIR)!r} has no {split} files")
    return chosen
