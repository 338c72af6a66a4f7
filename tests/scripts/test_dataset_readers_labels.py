"""``lib.dataset_readers`` on the data files of ``finetune-glue --train-file/--validation-file``: integer labels are
the training split's values (as run_glue.py takes them, no phantom classes), every split's labels are checked before
training, a file that does not read is named with the reader's own error, and CSV cells that pandas would take for
missing values or numbers are text (or an error naming the row and the value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bizoo.scripts import finetune_glue
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.dataset_readers import load_splits, text_classification_data
from tests.scripts.conftest import call as exit_code

TEXTS = ["a good film", "a bad plot", "the actor was fine", "dull story", "great scene", "not quite a movie"]


def write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def labelled(path: Path, labels: list, texts: list[str] = TEXTS, sep: str = ",") -> str:
    rows = [f"text{sep}label", *(f"{texts[i % len(texts)]}{sep}{label}" for i, label in enumerate(labels))]
    return write(path, "\n".join(rows) + "\n")


def read(train: str, validation: str, **kwargs):
    return text_classification_data(load_splits(train_file=train, validation_file=validation), **kwargs)


def call(argv) -> int:
    return exit_code(finetune_glue.main, argv)


# ------------------------------------------------------------------------------------------- integer labels


def test_integer_labels_are_the_training_values_named_by_themselves(tmp_path):
    """Stars 1..5: five classes with ids 0..4 named "1".."5" (no class "0")."""
    train = labelled(tmp_path / "train.csv", [1, 2, 3, 4, 5, 5, 3, 1])
    dev = labelled(tmp_path / "dev.csv", [5, 1, 3])
    data = read(train, dev)
    assert data.label_names == ("1", "2", "3", "4", "5") and not data.is_regression
    assert [e["label"] for e in data.splits["train"]] == [0, 1, 2, 3, 4, 4, 2, 0]
    assert [e["label"] for e in data.splits["validation"]] == [4, 0, 2]
    task = finetune_glue.DatasetTask("stars", False, False, data.label_names, "csv")
    config = finetune_glue.task_config(task)
    assert config["id2label"] == {0: "1", 1: "2", 2: "3", 3: "4", 4: "5"}
    assert config["label2id"] == {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4}
    # sparse ids keep their values as names; 0..n-1 stays as it was
    sparse = read(labelled(tmp_path / "sparse.csv", [10, 20, 40, 10]), labelled(tmp_path / "sdev.csv", [40, 20]))
    assert sparse.label_names == ("10", "20", "40")
    assert [e["label"] for e in sparse.splits["validation"]] == [2, 1]
    plain = read(labelled(tmp_path / "plain.csv", [0, 1, 2, 1]), labelled(tmp_path / "pdev.csv", [2, 0]))
    assert plain.label_names == ("0", "1", "2") and [e["label"] for e in plain.splits["validation"]] == [2, 0]


def test_a_validation_integer_label_never_seen_in_training_is_refused_before_training(tmp_path, capsys):
    train = labelled(tmp_path / "train.csv", [0, 1, 0, 1, 1, 0])
    dev = labelled(tmp_path / "dev.csv", [1, 2, 0, 7])
    with pytest.raises(CommandError, match=r"the validation split has labels never seen in training: \[2, 7\] "
                                           r"\(the train split's classes are \[0, 1\]\)"):
        read(train, dev)
    with pytest.raises(CommandError, match=r"the validation split's 'label' holds negative ids .*: -1"):
        read(train, labelled(tmp_path / "neg.csv", [1, -1]))
    out = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--train-file", train, "--validation-file", dev, "--output-dir", out]
    assert call(argv) == 2
    assert "the validation split has labels never seen in training: [2, 7]" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------- unreadable files


def test_a_file_that_does_not_read_is_named_with_the_readers_error(tmp_path):
    good = labelled(tmp_path / "train.csv", ["pos", "neg"])
    empty = write(tmp_path / "dev.csv", "")
    with pytest.raises(CommandError) as caught:
        load_splits(train_file=good, validation_file=empty)
    message = str(caught.value)
    assert message.startswith(f"--validation-file {empty!r} does not read as csv: EmptyDataError: ")
    assert "--train-file" not in message and "An error occurred while generating" not in message
    latin = write(tmp_path / "latin.csv", "text,label\n".encode() + "très bon film,pos\n".encode("latin-1"))
    with pytest.raises(CommandError, match=rf"^--train-file {latin!r} does not read as csv: UnicodeDecodeError: "
                                           r"'utf-8' codec can't decode .*save the file as UTF-8"):
        load_splits(train_file=latin, validation_file=labelled(tmp_path / "ok.csv", ["pos"]))
    with pytest.raises(CommandError, match=rf"^--train-file {latin!r} does not read as csv: UnicodeDecodeError"):
        load_splits(train_file=latin)


# ------------------------------------------------------------------------------------------------ CSV cells


def test_csv_cells_pandas_takes_for_missing_values_stay_text(tmp_path):
    texts = ["None", "NA", "null", "nan", "42", "N/A", "a good film"]
    for sep, suffix in ((",", "csv"), ("\t", "tsv")):
        train = labelled(tmp_path / f"train.{suffix}", [0, 1, 0, 1, 0, 1, 1], texts, sep)
        dev = labelled(tmp_path / f"dev.{suffix}", [1, 0, 1], ["null", "None", "fine"], sep)
        data = read(train, dev)
        assert [e["sentence1"] for e in data.splits["train"]] == texts
        assert [e["sentence1"] for e in data.splits["validation"]] == ["null", "None", "fine"]
        assert [e["label"] for e in data.splits["train"]] == [0, 1, 0, 1, 0, 1, 1]


def test_a_text_cell_that_is_not_text_is_named_by_row_and_value(tmp_path):
    train = labelled(tmp_path / "train.csv", [0, 1, 0, 1])
    numbers = labelled(tmp_path / "numbers.csv", [0, 1, 1], ["7", "42", "1"])  # the whole column reads as numbers
    assert [e["sentence1"] for e in read(train, numbers).splits["validation"]] == ["7", "42", "1"]  # cast to train's
    with pytest.raises(CommandError, match=r"the train split's 'text' holds the number 7 at row 0 \(and 2 more "
                                           r"rows\), not text"):
        read(numbers, numbers)
    with pytest.raises(CommandError, match=r"each read alone but not together as csv: ArrowInvalid: .* type int64"):
        read(numbers, train)
    blank = write(tmp_path / "blank.csv", "text,label\na good film,0\n,1\nfine,0\n")
    with pytest.raises(CommandError, match=r"the validation split's 'text' holds nothing \(an empty cell\) at row 1, "
                                           r"not text: give every example its text$"):
        read(train, blank)


def test_missing_value_markers_among_numeric_labels_are_missing_labels(tmp_path):
    train = labelled(tmp_path / "train.csv", [0, 1, "NA", 1])
    dev = labelled(tmp_path / "dev.csv", [0, 1])
    with pytest.raises(CommandError, match=r"the train split has examples without a 'label': row 2 holds 'NA'"):
        read(train, dev)
    with pytest.raises(CommandError, match=r"the train split has examples without a 'label': row 0 holds 'null'"):
        read(labelled(tmp_path / "t1.csv", ["null", 0.5, 1]), labelled(tmp_path / "d1.csv", [0.2]))  # a regression
    # the validation file is read with the train file's types: a marker there fails the cast, naming the value
    with pytest.raises(CommandError, match=r"each read alone but not together as csv: ArrowInvalid: .*'null'.* "
                                           r"\(the validation file is read with the train file's column types"):
        read(labelled(tmp_path / "t2.csv", [0, 1, 1]), labelled(tmp_path / "d2.csv", [1, "null"]))
    with pytest.raises(CommandError, match=r"the train split has examples without a 'label'"):
        read(labelled(tmp_path / "t3.csv", [0, "", 1]), dev)  # an empty cell, as before
    # class names, one of them "None": classes, not missing labels
    names = read(labelled(tmp_path / "t4.csv", ["None", "toxic", "None"]), labelled(tmp_path / "d4.csv", ["toxic"]))
    assert names.label_names == ("None", "toxic")
