"""``bizoo finetune-ner --task pos|chunk`` reads the tags of its task, not the entities.

A dataset laid out as the Hub's conll2003 (tokens, pos_tags, chunk_tags, ner_tags, all ClassLabel) gives each task
its own column (``f"{task}_tags"``, as transformers' run_ner.py takes it) unless --tags-column names another; a
dataset without the task's column is refused, naming its columns. A CoNLL-2003 text file (word POS chunk NER) gives
pos column 2, chunk column 3 and ner the last; a "word tag" file its one tag whatever the task; CoNLL-2000's word POS
chunk its part of speech in column 2 and its chunk tags last; a layout whose column is not known for the task (5
columns) is refused rather than read from a guessed column. A words or tags cell holding text (every CSV cell, a JSON string) is refused, naming the
column and the row, instead of being read character by character. Every file is written here; nothing reads the
network.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import datasets
import pytest
from transformers import AutoConfig

from bizoo.scripts import finetune_ner
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.data import conll_tag_column, read_conll, read_tagged_file
from bizoo.scripts.lib.dataset_readers import load_splits, token_classification_data
from tests.scripts.conftest import call, write_jsonl

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]

# word, POS, chunk, NER: CoNLL-2003's four columns
WORDS = {
    "Anna": ("NNP", "B-NP", "B-PER"), "Paris": ("NNP", "B-NP", "B-LOC"), "visited": ("VBD", "B-VP", "O"),
    "with": ("IN", "B-PP", "O"), "the": ("DT", "B-NP", "O"), "old": ("JJ", "I-NP", "O"), "king": ("NN", "I-NP", "O"),
    ".": (".", "O", "O"),
}
SENTENCES = ["Anna visited Paris .", "the old king visited Paris with Anna .", "Anna visited the king .",
             "the king visited Anna with the old king ."]
POS = sorted({pos for pos, _, _ in WORDS.values()})
CHUNK = sorted({chunk for _, chunk, _ in WORDS.values()})
NER = sorted({ner for _, _, ner in WORDS.values()})
LABELS = {"pos": set(POS), "chunk": set(CHUNK), "ner": set(NER)}
COLUMN = {"pos": 0, "chunk": 1, "ner": 2}  # the tag's index in WORDS' values


def sentences(seed: int, n: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.choice(SENTENCES).split() for _ in range(n)]


def write_conll(path: Path, split: list[list[str]], columns: int = 4) -> Path:
    """``split`` as CoNLL lines: 4 columns word POS chunk NER (CoNLL-2003), 3 word POS chunk (CoNLL-2000), 2 word
    NER."""
    fields = {4: (0, 1, 2), 3: (0, 1), 2: (2,)}[columns]
    lines = ["-DOCSTART- -X- -X- O", ""] if columns == 4 else []
    for words in split:
        lines += [" ".join([word, *(WORDS[word][i] for i in fields)]) for word in words] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def conll2003(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as the Hub's conll2003 (data/<split>-00000-of-00001.parquet), the four columns ClassLabel
    sequences but the words."""
    root = tmp_path_factory.mktemp("c03")
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "pos_tags": datasets.Sequence(datasets.ClassLabel(names=POS)),
        "chunk_tags": datasets.Sequence(datasets.ClassLabel(names=CHUNK)),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NER)),
    })
    (root / "data").mkdir()
    for seed, (split, n) in enumerate((("train", 24), ("validation", 8), ("test", 6))):
        rows = sentences(seed, n)
        columns = {"tokens": rows}
        for task, names in (("pos", POS), ("chunk", CHUNK), ("ner", NER)):
            columns[f"{task}_tags"] = [[names.index(WORDS[w][COLUMN[task]]) for w in words] for words in rows]
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="module")
def conll_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CoNLL-2003 text files (word POS chunk NER): train.txt and valid.txt."""
    root = tmp_path_factory.mktemp("conll2003")
    write_conll(root / "train.txt", sentences(0, 24))
    write_conll(root / "valid.txt", sentences(1, 8))
    return root


def parsed(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=finetune_ner.PROG)
    finetune_ner.add_arguments(parser)
    return parser.parse_args(["--model-name-or-path", "lion", "--output-dir", "unused", *[str(a) for a in argv]])


# ---------------------------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("task", ["ner", "pos", "chunk"])
def test_a_conll2003_dataset_gives_each_task_its_own_column(conll2003: Path, task: str) -> None:
    args = parsed("--task_name", task, "--dataset_name", conll2003)
    assert finetune_ner.tags_column(args) == f"{task}_tags"
    data = finetune_ner.load_sentences(args, predict=True)
    assert set(data.labels) == LABELS[task]
    for part in (data.train, data.eval, data.test):
        for words, tags in part:
            assert tags == [WORDS[word][COLUMN[task]] for word in words]


def test_an_explicit_tags_column_wins_over_the_tasks(conll2003: Path) -> None:
    args = parsed("--task", "pos", "--dataset-name", conll2003, "--label_column_name", "chunk_tags")
    assert finetune_ner.tags_column(args) == "chunk_tags"
    assert set(finetune_ner.load_sentences(args).labels) == LABELS["chunk"]


def test_data_files_take_the_tasks_column_too(tmp_path: Path) -> None:
    def rows(split: list[list[str]]) -> list[dict]:
        return [{"tokens": words, **{f"{task}_tags": [WORDS[w][COLUMN[task]] for w in words] for task in COLUMN}}
                for words in split]

    train = write_jsonl(tmp_path / "train.jsonl", rows(sentences(0, 12)))
    dev = write_jsonl(tmp_path / "dev.jsonl", rows(sentences(1, 4)))
    for task in ("pos", "chunk", "ner"):
        args = parsed("--task", task, "--train_file", train, "--validation_file", dev)
        assert set(finetune_ner.load_sentences(args).labels) == LABELS[task]


def test_a_dataset_without_the_tasks_column_is_refused_naming_its_columns(tmp_path: Path, capsys) -> None:
    """--task pos on tokens and ner_tags only: refused (run_ner.py would take the second column, the entities)."""
    rows = [{"tokens": words, "ner_tags": [WORDS[w][2] for w in words]} for words in sentences(0, 8)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    dev = write_jsonl(tmp_path / "dev.jsonl", rows[:3])
    with pytest.raises(CommandError, match=r"--task pos reads its tags from the column 'pos_tags' \(unless "
                                           r"--tags-column names another\), which the train split lacks: its columns "
                                           r"are \['tokens', 'ner_tags'\]; name the column of pos tags with "
                                           r"--tags-column"):
        finetune_ner.load_sentences(parsed("--task", "pos", "--train-file", train, "--validation-file", dev))
    out = tmp_path / "out"
    assert call(finetune_ner.main, ["--task", "chunk", "--model-name-or-path", "lion", "--train-file", train,
                                    "--validation-file", dev, "--output-dir", out, *TINY, "--max_steps", "1"]) == 2
    assert "--task chunk reads its tags from the column 'chunk_tags'" in capsys.readouterr().err
    assert not out.exists()
    # the entities are still there for ner, or for any task that names their column
    assert set(finetune_ner.load_sentences(parsed("--train-file", train, "--validation-file", dev)).labels) == \
        LABELS["ner"]


def test_the_tags_column_is_an_option_of_datasets_only(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--data-dir", tmp_path, "--tags-column", "ner_tags", "--output-dir", out]
    assert call(finetune_ner.main, argv) == 2  # even at the old default's value: it was given
    assert "--tags-column: options of --dataset-name or data files" in capsys.readouterr().err


def test_finetune_ner_task_name_pos_on_a_conll2003_dataset_learns_pos_tags(conll2003: Path, tmp_path: Path,
                                                                           capsys) -> None:
    """run_ner.py's ``--task_name pos --dataset_name conll2003``, end to end: the model's labels, its per-tag
    scores and the report are the part-of-speech tags."""
    out = tmp_path / "pos"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--task_name", "pos", "--dataset_name", conll2003,
                                    "--output_dir", out, *TINY, "--max_steps", "1", "--batch-size", "8",
                                    "--max-length", "32", "--save-steps", "1"]) == 0
    printed = capsys.readouterr().out
    assert "part-of-speech tagging" in printed.lower() and "B-PER" not in printed
    assert set(AutoConfig.from_pretrained(out).label2id) == LABELS["pos"]
    results = json.loads((out / "eval_results.json").read_text(encoding="utf-8"))
    assert results["tagging_task"] == "pos" and set(results["metrics"]["per_tag"]) <= LABELS["pos"]


# ---------------------------------------------------------------------------------------------- CoNLL files


def test_a_conll2003_file_gives_each_task_its_column(tmp_path: Path) -> None:
    path = write_conll(tmp_path / "train.txt", sentences(0, 6))
    words = [w for w, _ in read_conll(path)]
    for task in ("pos", "chunk", "ner"):
        assert read_conll(path, task) == [(w, [WORDS[word][COLUMN[task]] for word in w]) for w in words]
        assert read_tagged_file(path, "conll", task=task) == read_conll(path, task)
    assert read_conll(path) == read_conll(path, "ner")  # no task: the last column, as before
    assert [conll_tag_column(task, 4) for task in ("pos", "chunk", "ner")] == [1, 2, 3]


def test_a_word_tag_file_has_one_tag_whatever_the_task(tmp_path: Path) -> None:
    path = write_conll(tmp_path / "two.txt", sentences(0, 4), columns=2)
    expected = read_conll(path)
    assert all(tags == [WORDS[w][2] for w in words] for words, tags in expected)
    for task in ("pos", "chunk", "ner"):
        assert read_conll(path, task) == expected


def test_a_conll2000_file_gives_pos_column_2_and_chunk_its_last_column(tmp_path: Path) -> None:
    path = write_conll(tmp_path / "conll2000.txt", sentences(0, 4), columns=3)
    assert all(tags == [WORDS[w][1] for w in words] for words, tags in read_conll(path, "chunk"))
    assert read_conll(path, "chunk") == read_conll(path) == read_conll(path, "ner")
    assert all(tags == [WORDS[w][0] for w in words] for words, tags in read_conll(path, "pos"))
    five = tmp_path / "five.txt"
    five.write_text("Anna NNP B-NP B-PER x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"five\.txt: its word lines have 5 columns, and which of them holds "
                                         r"the pos tags is not known .*4 columns \(CoNLL-2003's word POS chunk NER\): "
                                         r"column 2.*keep only the word and its pos tag \(2 columns\)"):
        read_conll(five, "pos")


@pytest.mark.parametrize("text, task, message", [
    ("a b c d e\n", "chunk", r"its word lines have 5 columns, and which of them holds the chunk tags is not known"),
    ("Anna NNP B-NP B-PER\nvisited VBD B-VP\n", "pos",
     r"line 2: 3 columns where line 1 has 4: 'visited VBD B-VP'; the pos tags are read from one column \(column 2\)"),
])
def test_a_conll_file_whose_task_column_is_unclear_is_refused(tmp_path: Path, text: str, task: str,
                                                              message: str) -> None:
    path = tmp_path / "odd.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_conll(path, task)
    read_conll(path, "ner")  # ner reads the last column of every line, as before
    with pytest.raises(ValueError, match="unknown tagging task 'srl'; allowed: ner, pos, chunk"):
        read_conll(path, "srl")


@pytest.mark.parametrize("task", ["pos", "chunk", "ner"])
def test_finetune_ner_on_conll2003_files_reads_the_tasks_column(conll_files: Path, task: str) -> None:
    data = finetune_ner.load_sentences(parsed("--task", task, "--data-dir", conll_files))
    assert set(data.labels) == LABELS[task]
    path_args = parsed("--task", task, "--train_file", conll_files / "train.txt",
                       "--validation_file", conll_files / "valid.txt")
    assert finetune_ner.load_sentences(path_args).eval == data.eval


def test_finetune_ner_pos_on_a_five_column_file_fails_before_anything_is_written(tmp_path: Path, capsys) -> None:
    for name, seed, n in (("train.txt", 0, 8), ("valid.txt", 1, 4)):
        path = write_conll(tmp_path / "data" / name, sentences(seed, n), columns=4)
        path.write_text("\n".join(line + " x" if line.strip() and not line.startswith("-DOCSTART-") else line
                                  for line in path.read_text(encoding="utf-8").split("\n")), encoding="utf-8")
    out = tmp_path / "out"
    assert call(finetune_ner.main, ["--task", "pos", "--model-name-or-path", "lion", "--data-dir", tmp_path / "data",
                                    "--output-dir", out, *TINY, "--max_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "bizoo finetune-ner: error: " in err and "train.txt: its word lines have 5 columns" in err, err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- text cells


def test_csv_tokens_are_refused_not_read_as_characters(tmp_path: Path, capsys) -> None:
    rows = [{"tokens": " ".join(words), "ner_tags": " ".join(WORDS[w][2] for w in words)} for words in sentences(0, 6)]
    for name, part in (("train.csv", rows), ("dev.csv", rows[:2])):
        datasets.Dataset.from_list(part).to_csv(str(tmp_path / name), index=False)
    splits = load_splits(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"))
    with pytest.raises(CommandError, match=r"the train split's 'tokens' holds text at row 0 \('.*'\), not a list of "
                                           r"words: give each row its words as a list, e\.g\. .*\(a CSV or TSV cell "
                                           r"can only hold text: give the data as JSON lines, parquet or a "
                                           r"Hub/datasets folder\)"):
        token_classification_data(splits)
    out = tmp_path / "out"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--train_file", tmp_path / "train.csv",
                                    "--validation_file", tmp_path / "dev.csv", "--output-dir", out, *TINY,
                                    "--max_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "'tokens' holds text at row 0" in err and "words but" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("bad_split, rows, column", [
    # words and tags as text of equal length: once read character by character without an error
    ("train", [{"tokens": "a b", "ner_tags": "O O"}] * 4, "tokens"),
    ("validation", [{"tokens": ["x", "y", "z"], "ner_tags": "O O"}] * 2, "ner_tags"),
    ("test", [{"tokens": "Anna visited"}] * 2, "tokens"),  # an untagged test split: predicted only, still words
])
def test_a_text_cell_in_json_lines_is_refused_naming_the_column_and_row(tmp_path: Path, bad_split: str,
                                                                        rows: list[dict], column: str) -> None:
    """A JSON lines file whose tokens (or tags) are strings: refused for each split, the test split's too."""
    good = [{"tokens": words, "ner_tags": [WORDS[w][2] for w in words]} for words in sentences(0, 4)]
    test = [{"tokens": row["tokens"]} for row in good]
    parts = {"train": good, "validation": good[:2], "test": test, bad_split: rows}
    splits = {split: datasets.Dataset.from_list(part) for split, part in parts.items()}
    whole = write_jsonl(tmp_path / f"{bad_split}.jsonl", rows)  # a whole file of such rows reads so too
    assert load_splits(train_file=str(whole))["train"][column] == [row[column] for row in rows]
    what = "words" if column == "tokens" else "tags"
    with pytest.raises(CommandError, match=rf"the {bad_split} split's '{column}' holds text at row 0 "
                                           rf"\('.*'\), not a list of {what}: give each row its {what} as a list"):
        token_classification_data(splits)
