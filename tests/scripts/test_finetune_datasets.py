"""``finetune-glue`` and ``finetune-ner`` on datasets that are not GLUE's TSVs or CoNLL files, read through 🤗
datasets as transformers' run_glue.py / run_ner.py read them: local CSV / JSON lines / parquet files, a local dataset
folder, and a Hub dataset id resolved from a local cache laid out as the Hub's (nothing reaches a hub)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from bizoo.scripts import finetune_glue, finetune_ner
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.dataset_readers import load_splits, text_classification_data, token_classification_data
from tests.scripts.conftest import call

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
FAST = ["--max-steps", "2", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "2", "--max-length", "32"]
STARS = ("one star", "three stars", "five stars")


def reviews(rng: random.Random, synthetic, n: int) -> list[dict]:
    return [{"review": synthetic.sentence(rng), "stars": rng.choice(STARS), "score": rng.uniform(0, 5)}
            for _ in range(n)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        datasets.Dataset.from_list(rows).to_csv(str(path), index=False)
    return path


def nli_parquet(folder: Path, synthetic) -> dict[str, Path]:
    """A pair task with a ClassLabel column, as parquet files named by split (how Hub datasets ship)."""
    rng = random.Random(3)
    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})
    files = {}
    for split, n in (("train", 24), ("validation", 8)):
        rows = {"sentence1": [synthetic.sentence(rng) for _ in range(n)],
                "sentence2": [synthetic.sentence(rng) for _ in range(n)], "label": [rng.randrange(3) for _ in range(n)]}
        files[f"{split}.parquet"] = folder / f"{split}.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(files[f"{split}.parquet"]))
    return files


def ner_parquet(folder: Path, synthetic) -> dict[str, Path]:
    rng = random.Random(4)
    names = ["O", "B-PER", "I-PER", "B-LOC"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    files = {}
    for split, n in (("train", 30), ("validation", 10)):
        sentences = [synthetic.conll_sentence(rng) for _ in range(n)]
        rows = {"tokens": [[w for w, _ in s] for s in sentences],
                "ner_tags": [[names.index(t) for _, t in s] for s in sentences]}
        folder.mkdir(parents=True, exist_ok=True)
        files[f"{split}.parquet"] = folder / f"{split}.parquet"
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(files[f"{split}.parquet"]))
    return files


# ---------------------------------------------------------------------------------------------- readers


def test_csv_string_labels_become_sorted_classes_and_unseen_labels_are_refused(tmp_path, synthetic):
    rng = random.Random(0)
    train = write_rows(tmp_path / "train.csv", reviews(rng, synthetic, 20))
    dev_rows = reviews(rng, synthetic, 6)
    dev = write_rows(tmp_path / "dev.csv", dev_rows)
    data = text_classification_data(load_splits(train_file=str(train), validation_file=str(dev)), ["review"], "stars")
    assert data.label_names == tuple(sorted(STARS)) and not data.is_regression and not data.is_pair
    assert [e["label"] for e in data.splits["validation"]] == [sorted(STARS).index(r["stars"]) for r in dev_rows]
    assert data.splits["validation"][0]["sentence1"] == dev_rows[0]["review"]
    scores = text_classification_data(load_splits(train_file=str(train), validation_file=str(dev)), ["review"],
                                       "score")
    assert scores.is_regression and scores.label_names == ()
    write_rows(tmp_path / "odd.csv", [{**dev_rows[0], "stars": "ten stars"}])
    with pytest.raises(CommandError, match=r"the validation split has labels never seen in training: \['ten stars'\]"):
        text_classification_data(load_splits(train_file=str(train), validation_file=str(tmp_path / "odd.csv")),
                                 ["review"], "stars")
    with pytest.raises(CommandError, match=r"--label-column 'rating' is not a column of the train split"):
        text_classification_data(load_splits(train_file=str(train), validation_file=str(dev)), ["review"], "rating")
    with pytest.raises(CommandError, match="no validation split"):
        text_classification_data(load_splits(train_file=str(train)), ["review"], "stars")
    with pytest.raises(CommandError, match="no text column found"):
        text_classification_data(load_splits(train_file=str(train), validation_file=str(dev)), None, "stars")
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(CommandError, match=r"--train-file '.*train\.txt': give a \.csv"):
        load_splits(train_file=str(tmp_path / "train.txt"))


def test_classlabel_names_and_a_hub_dataset_from_the_cache(tmp_path, synthetic, hub_cache):
    files = nli_parquet(tmp_path / "nli", synthetic)
    hub_cache("someone/tiny-nli", files, repo_type="dataset")
    for name in ("someone/tiny-nli", str(tmp_path / "nli")):
        data = text_classification_data(load_splits(name))
        assert data.text_columns == ("sentence1", "sentence2") and data.is_pair
        assert data.label_names == ("entailment", "neutral", "contradiction")
    with pytest.raises(CommandError, match="Hub dataset repository 'someone/absent' is not in the cache"):
        load_splits("someone/absent")


def test_token_classification_tags_from_classlabel_ids(tmp_path, synthetic):
    ner_parquet(tmp_path / "ner", synthetic)
    sentences = token_classification_data(load_splits(str(tmp_path / "ner")))
    words, tags = sentences["train"][0]
    assert len(words) == len(tags) and set(tags) <= {"O", "B-PER", "I-PER", "B-LOC"}
    write_rows(tmp_path / "bad" / "train.jsonl", [{"tokens": ["a", "b"], "ner_tags": ["O"]}])
    write_rows(tmp_path / "bad" / "validation.jsonl", [{"tokens": ["a"], "ner_tags": ["O"]}])
    with pytest.raises(CommandError, match="the train split's row 0 has 2 words but 1 tags"):
        token_classification_data(load_splits(str(tmp_path / "bad")))


# ---------------------------------------------------------------------------------------------- commands, end to end


def test_finetune_glue_on_csv_files_as_run_glue_takes_them(tmp_path, synthetic, capsys):
    rng = random.Random(1)
    train = write_rows(tmp_path / "train.csv", reviews(rng, synthetic, 20))
    dev = write_rows(tmp_path / "dev.csv", reviews(rng, synthetic, 6))
    out = tmp_path / "run"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--train_file", train, "--validation_file", dev,
                                     "--text-columns", "review", "--label-column", "stars", "--output-dir", out,
                                     *TINY, *FAST]) == 0
    printed = capsys.readouterr().out
    assert "train.csv: train 20, dev 6" in printed and "accuracy" in printed and "f1" in printed
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == dict(enumerate(sorted(STARS)))
    record = json.loads((out / "bizoo_results.json").read_text())[0]
    assert record["dataset"] == {"name": "train.csv", "type": "csv", "split": "validation"}
    assert set(record["metrics"]) == {"accuracy", "f1"}


def test_finetune_glue_regression_from_json_lines(tmp_path, synthetic):
    rng = random.Random(2)
    train = write_rows(tmp_path / "train.jsonl", reviews(rng, synthetic, 16))
    dev = write_rows(tmp_path / "dev.jsonl", reviews(rng, synthetic, 6))
    out = tmp_path / "run"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--train-file", train, "--validation-file", dev,
                                     "--text-columns", "review", "--label-column", "score", "--output-dir", out,
                                     *TINY, *FAST]) == 0
    assert AutoModelForSequenceClassification.from_pretrained(out).config.problem_type == "regression"
    assert set(json.loads((out / "eval_results.json").read_text())["metrics"]["dev"]) == {"pearson", "spearman"}


def test_finetune_glue_and_ner_on_hub_datasets(tmp_path, synthetic, hub_cache):
    hub_cache("someone/tiny-nli", nli_parquet(tmp_path / "nli", synthetic), repo_type="dataset")
    hub_cache("someone/tiny-ner", ner_parquet(tmp_path / "ner", synthetic), repo_type="dataset")
    out = tmp_path / "glue"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--dataset_name", "someone/tiny-nli",
                                     "--output-dir", out, *TINY, *FAST]) == 0
    assert AutoModelForSequenceClassification.from_pretrained(out).config.id2label[2] == "contradiction"
    out = tmp_path / "ner-run"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--dataset-name", "someone/tiny-ner",
                                    "--output-dir", out, *TINY, *FAST]) == 0
    config = AutoModelForTokenClassification.from_pretrained(out).config
    assert set(config.label2id) == {"O", "B-PER", "I-PER", "B-LOC"}
    record = json.loads((out / "bizoo_results.json").read_text())[0]
    assert record["dataset"]["type"] == "someone/tiny-ner" and "f1" in record["metrics"]


def test_finetune_ner_on_file_paths_as_run_ner_takes_them(tmp_path, synthetic, conll_dir, capsys):
    """run_ner.py's `--train_file train.json --validation_file dev.json` (rows of word lists and tag strings), and
    the same spellings with the paths of CoNLL files (no --data-dir): the model learns the files' labels and the record
    names the files."""
    rng = random.Random(5)
    rows = {split: [{"tokens": [w for w, _ in s], "ner_tags": [t for _, t in s]}
                    for s in (synthetic.conll_sentence(rng) for _ in range(n))] for split, n in (("train", 24),
                                                                                                 ("dev", 8))}
    rows["train"].append({"tokens": ["Oslo", "rocks"], "ner_tags": ["B-MISC", "O"]})  # a label CoNLL's files lack
    rows = {split: [{"words": row["tokens"], "tags": row["ner_tags"]} for row in part] for split, part in rows.items()}
    train, dev = (write_rows(tmp_path / "json" / f"{split}.jsonl", rows[split]) for split in ("train", "dev"))
    out = tmp_path / "json-run"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--train_file", train, "--validation_file", dev,
                                    "--text_column_name", "words", "--label_column_name", "tags",
                                    "--output-dir", out, *TINY, *FAST]) == 0
    assert "train.jsonl (named entity recognition): train 25 sentences, eval 8 sentences" in capsys.readouterr().out
    assert "B-MISC" in AutoModelForTokenClassification.from_pretrained(out).config.label2id
    record = json.loads((out / "bizoo_results.json").read_text())[0]
    assert record["dataset"] == {"name": "train.jsonl", "type": "jsonl", "split": "validation"}
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_file"] == str(dev) and results["num_train_examples"] == 25 and "f1" in results["metrics"]

    out = tmp_path / "conll-run"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--train_file", conll_dir / "train.txt",
                                    "--validation_file", conll_dir / "valid.txt", "--output-dir", out,
                                    *TINY, *FAST]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_file"] == str(conll_dir / "valid.txt") and results["num_eval_examples"] == 12
    assert results["dataset"] == conll_dir.name and results["eval_split"] == "validation"


@pytest.mark.parametrize("argv, message", [
    ([], "no data: give --data-dir (a folder of CoNLL files), --train-file with --validation-file"),
    (["--train-file", "{conll}/train.txt"], "without --data-dir: give the evaluation file's path (--validation-file)"),
    (["--train-file", "{conll}/train.txt", "--validation-file", "{conll}/nowhere.txt"],
     "--validation-file '{conll}/nowhere.txt' does not exist or is not a file"),
    (["--train-file", "t.jsonl", "--validation-file", "v.jsonl", "--format", "conll"],
     "--format: options of CoNLL files, not of --train-file 't.jsonl'"),
    (["--train-file", "t.jsonl", "--validation-file", "v.jsonl", "--dataset-config-name", "x"],
     "--dataset-config-name: an option of --dataset-name, not of data files"),
    (["--train-file", "{conll}/train.txt", "--validation-file", "{conll}/valid.txt", "--tokens-column", "words"],
     "--tokens-column: options of --dataset-name or data files, not of CoNLL files"),
])
def test_finetune_ner_refuses_incomplete_file_sources(tmp_path, capsys, conll_dir, argv, message):
    out = tmp_path / "run"
    argv = [a.format(conll=conll_dir) for a in argv]
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--output-dir", out, *argv]) == 2
    assert message.format(conll=conll_dir) in capsys.readouterr().err
    assert not out.exists()


def test_csv_and_tsv_files_are_not_read_with_one_delimiter(tmp_path, synthetic):
    """A .csv train file and a .tsv validation file: each needs its own delimiter, which one reader cannot give
    (the .tsv read with commas would be one column); refused naming both files."""
    rng = random.Random(6)
    train = write_rows(tmp_path / "train.csv", reviews(rng, synthetic, 8))
    dev = tmp_path / "dev.tsv"
    dev.write_text("review\tstars\n" + "".join(f"{synthetic.sentence(rng)}\t{rng.choice(STARS)}\n" for _ in range(4)))
    with pytest.raises(CommandError, match=r"must have the same format \(got .*train\.csv.* and .*dev\.tsv"):
        load_splits(train_file=str(train), validation_file=str(dev))


@pytest.mark.parametrize("argv, message", [
    (["--data-dir", "glue"], "--data-dir and --from-hub read a GLUE task: name it with --task"),
    (["--task", "rte", "--train-file", "t.csv"], "--task names a GLUE task"),
    (["--task", "rte", "--data-dir", "glue", "--label-column", "stars"], "--label-column: options of another dataset"),
    (["--task", "rte", "--data-dir", "glue", "--label-column", "label"], "--label-column: options of another dataset"),
    (["--dataset-name", "x/y", "--validation-file", "v.csv"], "--validation-file goes with --train-file"),
    (["--train-file", "nowhere.csv"], "--train-file 'nowhere.csv' does not exist"),
])
def test_finetune_glue_refuses_mixed_sources(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--output-dir", out, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_finetune_ner_refuses_conll_options_with_a_dataset(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--dataset-name", "x/y", "--eval-file", "test.txt", "--output-dir", out]
    assert call(finetune_ner.main, argv) == 2
    assert "--eval-file: options of files (CoNLL files in --data-dir" in capsys.readouterr().err
    argv = ["--model-name-or-path", "lion", "--data-dir", tmp_path, "--tags-column", "pos", "--output-dir", out]
    assert call(finetune_ner.main, argv) == 2
    assert "--tags-column: options of --dataset-name or data files" in capsys.readouterr().err


def test_the_recorded_split_is_the_one_evaluated_and_metrics_say_what_they_are(tmp_path, synthetic, conll_dir):
    rng = random.Random(7)
    folder = tmp_path / "reviews"
    write_rows(folder / "train.csv", reviews(rng, synthetic, 16))
    write_rows(folder / "test.csv", reviews(rng, synthetic, 6))  # no validation split: its test split is scored
    out = tmp_path / "glue"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--dataset-name", folder, "--text-columns",
                                     "review", "--label-column", "stars", "--output-dir", out, *TINY, *FAST]) == 0
    record = json.loads((out / "bizoo_results.json").read_text())[0]
    assert record["dataset"]["split"] == "test" and record["metric_names"] == {"f1": "macro F1"}
    out = tmp_path / "ner"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--data-dir", conll_dir, "--eval-file",
                                    "train.txt", "--output-dir", out, *TINY, *FAST]) == 0
    record = json.loads((out / "bizoo_results.json").read_text())[0]
    assert record["dataset"]["split"] == "train" and record["metric_names"]["f1"] == "strict span F1 (micro)"
