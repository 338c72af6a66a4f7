"""``--do_predict`` in ``bizoo finetune-glue`` and ``bizoo finetune-ner``, as transformers' run_glue.py / run_ner.py
take it: after training, the final model predicts the test split and the command writes what the example script
writes (``predict_results_<task>.txt``; ``predictions.txt`` and ``predict_results.json``).

Each run trains a tiny model for a few steps on tiny local data. The files are checked for their format, row counts
and label names, and against an independent prediction: the saved output folder loaded with the Auto classes and run
on the test inputs one at a time (for a CRF, against a Viterbi decoding written here from the head's emissions and
transition scores). A missing test split, and the options that need --do_predict without it, are refused before
anything is written.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from bizoo.scripts import finetune_glue, finetune_ner
from bizoo.scripts.lib.data import read_conll
from bizoo.scripts.lib.results import read_results
from tests.scripts.conftest import call, conll_sentence, sentence, write_conll, write_jsonl, write_tsv

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
FAST = ["--max-steps", "3", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "10", "--max-length", "32"]
#: A tiny BiLSTM-CRF, its CRF reporting log-marginals: their argmax is posterior decoding, not the Viterbi path.
CRF = ["--model-name-or-path", "bilstm_crf", "--model-config", "word_embedding_size=16", "hidden_size=8",
       "crf_logits=log_marginals", "--word-dropout", "0", "--max-steps", "3", "--batch-size", "4",
       "--save-steps", "10", "--logging-steps", "1"]

GLUE_ROW = re.compile(r"(\d+)\t(.+)")
SCORE = re.compile(r"-?\d+\.\d{3}")


@pytest.fixture(scope="module")
def glue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SST-2, STS-B and MNLI in GLUE's layout, with test files as GLUE ships them: an ``index`` column, no labels."""
    root = tmp_path_factory.mktemp("glue")
    rng = random.Random(5)
    for split, n in (("train", 24), ("dev", 6)):
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"],
                  [[sentence(rng), str(rng.randint(0, 1))] for _ in range(n)])
        write_tsv(root / "STS-B" / f"{split}.tsv", ["index", "sentence1", "sentence2", "score"],
                  [[str(i), sentence(rng), sentence(rng), f"{rng.uniform(0, 5):.3f}"] for i in range(n)])
    write_tsv(root / "SST-2" / "test.tsv", ["index", "sentence"], [[str(i), sentence(rng)] for i in range(7)])
    write_tsv(root / "STS-B" / "test.tsv", ["index", "sentence1", "sentence2"],
              [[str(i), sentence(rng), sentence(rng)] for i in range(5)])
    labels = ["contradiction", "entailment", "neutral"]
    for split, n in (("train", 24), ("dev_matched", 5), ("dev_mismatched", 5)):
        write_tsv(root / "MNLI" / f"{split}.tsv", ["index", "sentence1", "sentence2", "gold_label"],
                  [[str(i), sentence(rng), sentence(rng), rng.choice(labels)] for i in range(n)])
    for split, n in (("test_matched", 6), ("test_mismatched", 5)):
        write_tsv(root / "MNLI" / f"{split}.tsv", ["index", "sentence1", "sentence2"],
                  [[str(i), sentence(rng), sentence(rng)] for i in range(n)])
    return root


@pytest.fixture(scope="module")
def conll(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conll")
    rng = random.Random(6)
    for name, n in (("train.txt", 32), ("valid.txt", 6), ("test.txt", 9)):
        write_conll(root / name, [conll_sentence(rng) for _ in range(n)])
    return root


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_predictions(path: Path) -> list[tuple[int, str]]:
    """run_glue.py's file: the header, then ``index<TAB>prediction`` rows."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "index\tprediction"
    rows = [GLUE_ROW.fullmatch(line) for line in lines[1:]]
    assert all(rows), lines
    return [(int(row[1]), row[2]) for row in rows]


def model_outputs(folder: Path, auto_class, inputs: list, **kwargs) -> list:
    """The saved model of ``folder`` on each input alone (no padding): its outputs and encoding."""
    model = auto_class.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    results = []
    for item in inputs:
        encoding = tokenizer(*item, return_tensors="pt", truncation=True, **kwargs)
        with torch.no_grad():
            results.append((model(**encoding), encoding))
    return results


# ---------------------------------------------------------------------------------------------- finetune-glue


def test_glue_writes_run_glues_predict_results_with_the_class_names(glue: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue, "--output-dir", output,
            *TINY, *FAST, "--do_train", "--do_predict"]
    assert call(finetune_glue.main, argv) == 0
    printed = capsys.readouterr().out
    assert "test: 7 examples predicted, without labels to score" in printed
    assert "predict_results_sst2.txt" in printed  # the files saved

    rows = read_predictions(output / "predict_results_sst2.txt")
    assert [index for index, _ in rows] == list(range(7))  # every test example, in order
    assert {label for _, label in rows} <= {"negative", "positive"}  # the class names, not ids
    test = read_tsv(glue / "SST-2" / "test.tsv")
    expected = []
    for out, _ in model_outputs(output, AutoModelForSequenceClassification, [(row["sentence"],) for row in test],
                                max_length=32):
        expected.append(["negative", "positive"][int(out.logits.argmax(-1))])
    assert [label for _, label in rows] == expected
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert results["num_predict_examples"] == {"test": 7}
    assert not (output / "predict_results.json").exists()  # GLUE's test labels are hidden: nothing to score
    assert [entry["dataset"]["split"] for entry in read_results(output)] == ["validation"]  # nor to record


def test_glue_regression_scores_have_three_decimals(glue: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--task", "STS-B", "--data-dir", glue, "--output-dir", output,
            *TINY, *FAST, "--do_train", "--do_predict"]
    assert call(finetune_glue.main, argv) == 0
    rows = read_predictions(output / "predict_results_stsb.txt")
    assert [index for index, _ in rows] == list(range(5))
    assert all(SCORE.fullmatch(value) for _, value in rows), rows
    test = read_tsv(glue / "STS-B" / "test.tsv")
    outputs = model_outputs(output, AutoModelForSequenceClassification,
                            [(row["sentence1"], row["sentence2"]) for row in test], max_length=32)
    for (_, value), (out, _) in zip(rows, outputs):
        assert abs(float(value) - float(out.logits[0, 0])) <= 5e-4 + 1e-5  # rounded to 3 decimals


def test_glue_mnli_predicts_matched_and_mismatched_and_max_predict_samples_cuts_both(glue: Path,
                                                                                     tmp_path: Path) -> None:
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--task", "mnli", "--data-dir", glue, "--output-dir", output,
            *TINY, *FAST, "--do_train", "--do_predict", "--max_predict_samples", "4"]
    assert call(finetune_glue.main, argv) == 0
    names = ["contradiction", "entailment", "neutral"]
    for file, split in (("predict_results_mnli.txt", "test_matched"), ("predict_results_mnli-mm.txt",
                                                                       "test_mismatched")):
        rows = read_predictions(output / file)
        assert [index for index, _ in rows] == [0, 1, 2, 3]  # the first 4 of 6 and of 5
        test = read_tsv(glue / "MNLI" / f"{split}.tsv")[:4]
        outputs = model_outputs(output, AutoModelForSequenceClassification,
                                [(row["sentence1"], row["sentence2"]) for row in test], max_length=32)
        assert [label for _, label in rows] == [names[int(out.logits.argmax(-1))] for out, _ in outputs]
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert results["num_predict_examples"] == {"test_matched": 4, "test_mismatched": 4}
    # all_results.json as run_glue.py writes it: flat numbers, MNLI's mismatched split with the suffix _mm
    flat = json.loads((output / "all_results.json").read_text(encoding="utf-8"))
    assert flat["eval_accuracy"] == results["metrics"]["dev_matched"]["accuracy"]
    assert flat["eval_accuracy_mm"] == results["metrics"]["dev_mismatched"]["accuracy"]
    assert flat["eval_samples"] == 5 and flat["eval_samples_mm"] == 5 and flat["train_samples"] == 24
    assert flat["train_loss"] == pytest.approx(results["train_loss"]) and flat["epoch"] > 0
    assert flat["eval_loss"] > 0 and flat["eval_loss_mm"] > 0 and flat["eval_loss"] != flat["eval_loss_mm"]
    assert {"train_runtime", "train_samples_per_second"} <= set(flat)


def test_glue_from_hub_predicts_the_hub_test_split_whose_scores_are_hidden(glue: Path, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """--from-hub: the Hub's test split, whose STS-B rows carry the score -1.0 (its mark of a hidden label): predicted,
    never scored against those -1s."""
    from bizoo.scripts.lib.data import load_glue_split

    asked = []

    def fake_hub(task: str, split: str):
        asked.append(split)
        examples = load_glue_split(task, glue, split)
        return [{**example, "label": -1.0} for example in examples] if split == "test" else examples

    monkeypatch.setattr(finetune_glue, "load_glue_from_hub", fake_hub)
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--task", "stsb", "--from-hub", "--output-dir", output, *TINY, *FAST,
            "--do_train", "--do_predict"]
    assert call(finetune_glue.main, argv) == 0
    assert asked == ["train", "dev", "test"]
    assert len(read_predictions(output / "predict_results_stsb.txt")) == 5
    assert not (output / "predict_results.json").exists()
    assert "predict_metrics" not in json.loads((output / "eval_results.json").read_text(encoding="utf-8"))


def test_glue_from_hub_without_the_test_split_names_it(tmp_path: Path, monkeypatch, capsys) -> None:
    def fake_hub(task: str, split: str):
        if split.startswith("test"):
            raise ValueError(f"Unknown split {split!r}. Should be one of ['train', 'validation'].")
        return [{"sentence1": "good film", "label": index % 2} for index in range(4)]

    monkeypatch.setattr(finetune_glue, "load_glue_from_hub", fake_hub)
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--task", "sst2", "--from-hub", "--output-dir", output, "--do_train",
            "--do_predict"]
    assert call(finetune_glue.main, argv) == 2
    err = capsys.readouterr().err
    assert "cannot read GLUE SST-2 test from the Hub (--do_predict: the Hub's test split: Unknown split" in err, err
    assert not output.exists()


def test_glue_data_files_with_a_labelled_test_file_are_scored_too(tmp_path: Path, capsys) -> None:
    """run_glue.py's --test_file: predicted as the GLUE test split is; with labels, scored as the evaluation is, the
    scores in predict_results.json prefixed predict_."""
    rng = random.Random(7)
    stars = ["one star", "three stars", "five stars"]

    def rows(n: int) -> list[dict]:
        return [{"review": sentence(rng), "stars": rng.choice(stars)} for _ in range(n)]

    train = write_jsonl(tmp_path / "train.jsonl", rows(24))
    dev = write_jsonl(tmp_path / "dev.jsonl", rows(6))
    test_rows = rows(9)
    test = write_jsonl(tmp_path / "test.jsonl", test_rows)
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--train_file", train, "--validation_file", dev, "--test_file", test,
            "--text-columns", "review", "--label-column", "stars", "--output-dir", output, *TINY, *FAST,
            "--do_train", "--do_predict", "--max_predict_samples", "8"]
    assert call(finetune_glue.main, argv) == 0
    printed = capsys.readouterr().out

    rows_written = read_predictions(output / "predict_results.txt")
    outputs = model_outputs(output, AutoModelForSequenceClassification, [(row["review"],) for row in test_rows[:8]],
                            max_length=32)
    classes = sorted(stars)  # run_glue.py's classes: the sorted training labels
    predicted = [classes[int(out.logits.argmax(-1))] for out, _ in outputs]
    assert [label for _, label in rows_written] == predicted
    gold = [row["stars"] for row in test_rows[:8]]
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / 8
    results = json.loads((output / "predict_results.json").read_text(encoding="utf-8"))
    assert results["predict_samples"] == 8
    assert results["predict_accuracy"] == pytest.approx(accuracy)
    assert {"predict_f1", "predict_loss", "predict_runtime"} <= set(results)
    assert re.search(rf"^test\s+8\s+{results['predict_accuracy']:.4f}\s", printed, re.MULTILINE), printed
    # the model card's record: the test split's scores beside the evaluation's, under the same metric names
    records = {entry["dataset"]["split"]: entry for entry in read_results(output)}
    assert set(records) == {"validation", "test"}
    assert records["test"]["metrics"]["accuracy"] == pytest.approx(accuracy)
    assert set(records["test"]["metrics"]) == set(records["validation"]["metrics"])


def test_glue_dataset_test_split_with_the_hubs_unlabelled_marker_is_predicted_not_scored(tmp_path: Path) -> None:
    """A dataset folder whose test split's ClassLabel is -1 throughout (as the Hub's GLUE test splits are)."""
    rng = random.Random(8)
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    folder = tmp_path / "data"
    folder.mkdir()
    for split, n in (("train", 20), ("validation", 6), ("test", 5)):
        labels = [-1] * n if split == "test" else [rng.randint(0, 1) for _ in range(n)]
        datasets.Dataset.from_dict({"sentence": [sentence(rng) for _ in range(n)], "label": labels},
                                   features=features).to_parquet(str(folder / f"{split}.parquet"))
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--dataset-name", folder, "--output-dir", output, *TINY, *FAST,
            "--do_train", "--do_predict"]
    assert call(finetune_glue.main, argv) == 0
    rows = read_predictions(output / "predict_results.txt")
    assert len(rows) == 5 and {label for _, label in rows} <= {"negative", "positive"}
    assert not (output / "predict_results.json").exists()


# ---------------------------------------------------------------------------------------------- finetune-ner


def expected_tags(folder: Path, sentences: list[list[str]], max_length: int | None = None) -> list[list[str]]:
    """Each sentence's tags from the saved model's ``predictions`` output (the Viterbi path of a CRF head) at each
    word's first sub-token; "O" for a word cut off by ``max_length``."""
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tags = []
    for words in sentences:
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
        encoding = tokenizer(words, is_split_into_words=True, return_tensors="pt", **kwargs)
        with torch.no_grad():
            path = model(**encoding).predictions[0]  # (L,)
        first: dict[int, int] = {}
        for position, word in enumerate(encoding.word_ids(0)):
            if word is not None and word not in first:
                first[word] = position
        tags.append([model.config.id2label[int(path[first[i]])] if i in first else "O" for i in range(len(words))])
    return tags


def test_ner_writes_run_ners_predictions_and_scores_a_tagged_test_file(conll: Path, tmp_path: Path, capsys) -> None:
    """test.txt in --data-dir: one line per sentence, one tag per word (the words --max-length cuts off: "O"), and
    predict_results.json with seqeval's strict scores prefixed predict_."""
    from seqeval import metrics as seqeval_metrics  # a test extra: an oracle, never skipped
    from seqeval.scheme import IOB2

    output = tmp_path / "run"
    max_length = 7  # [CLS] [SEP] and 5 sub-tokens: some words of the longer sentences are cut off
    argv = ["--model-name-or-path", "lion", "--data-dir", conll, "--output-dir", output, *TINY, *FAST,
            "--max-length", max_length, "--do_train", "--do_predict"]
    assert call(finetune_ner.main, argv) == 0
    printed = capsys.readouterr().out
    assert "test.txt, test (--do_predict)" in printed

    test = read_conll(conll / "test.txt")
    lines = (output / "predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(test) == 9
    written = [line.split(" ") for line in lines]
    assert [len(tags) for tags in written] == [len(words) for words, _ in test]  # one tag per word
    assert {tag for tags in written for tag in tags} <= {"O", "B-LOC", "B-PER", "I-PER"}
    assert written == expected_tags(output, [words for words, _ in test], max_length)

    results = json.loads((output / "predict_results.json").read_text(encoding="utf-8"))
    gold = [tags for _, tags in test]
    strict = {"mode": "strict", "scheme": IOB2}
    assert results["predict_f1"] == pytest.approx(seqeval_metrics.f1_score(gold, written, **strict))
    assert results["predict_precision"] == pytest.approx(seqeval_metrics.precision_score(gold, written, **strict))
    assert results["predict_conlleval_f1"] == pytest.approx(seqeval_metrics.f1_score(gold, written))
    assert results["predict_samples"] == 9 and "predict_loss" in results
    eval_results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert eval_results["num_predict_examples"] == 9
    assert eval_results["predict_metrics"]["f1"] == pytest.approx(results["predict_f1"])
    records = {entry["dataset"]["split"]: entry for entry in read_results(output)}  # the model card's record
    assert set(records) == {"validation", "test"}
    assert records["test"]["metrics"]["f1"] == pytest.approx(results["predict_f1"])
    assert set(records["test"]["metrics"]) == set(records["validation"]["metrics"])
    flat = json.loads((output / "all_results.json").read_text(encoding="utf-8"))  # as run_ner.py's
    assert {name: flat[name] for name in results} == results  # predict_results.json's numbers, as they are
    assert flat["eval_f1"] == eval_results["metrics"]["f1"] and flat["eval_samples"] == 6
    assert flat["train_samples"] == 32 and "eval_loss" in flat and "train_loss" in flat


def viterbi(emissions: np.ndarray, transitions: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[int]:
    """argmax_y start[y_1] + sum_t e_t[y_t] + sum_t T[y_{t-1}, y_t] + end[y_n], by dynamic programming."""
    score = start + emissions[0]  # (K,)
    back = []
    for emission in emissions[1:]:
        candidates = score[:, None] + transitions  # (K previous, K next)
        back.append(candidates.argmax(axis=0))
        score = candidates.max(axis=0) + emission
    path = [int((score + end).argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


def test_ner_crf_predictions_are_the_viterbi_path(conll: Path, tmp_path: Path) -> None:
    """A CRF head whose logits are log-marginals: predictions.txt holds the Viterbi path (checked against a
    decoding of the saved model's emissions and constrained transitions), not the argmax of the logits."""
    output = tmp_path / "run"
    assert call(finetune_ner.main, [*CRF, "--data-dir", conll, "--output-dir", output, "--do_train", "--do_predict",
                                    "--max_predict_samples", "6"]) == 0
    written = [line.split(" ") for line in (output / "predictions.txt").read_text(encoding="utf-8").splitlines()]
    test = read_conll(conll / "test.txt")[:6]
    assert [len(tags) for tags in written] == [len(words) for words, _ in test]

    decoded, posterior = crf_decodings(output, [words for words, _ in test])
    assert written == decoded
    assert decoded != posterior  # the two decodings differ here, so the test tells them apart

    # the evaluation decodes the same way: its score is the Viterbi path's
    from seqeval import metrics as seqeval_metrics  # a test extra: an oracle, never skipped
    valid = read_conll(conll / "valid.txt")
    decoded, posterior = crf_decodings(output, [words for words, _ in valid])
    gold = [tags for _, tags in valid]
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert results["metrics"]["conlleval_f1"] == pytest.approx(seqeval_metrics.f1_score(gold, decoded))
    assert seqeval_metrics.f1_score(gold, decoded) != pytest.approx(seqeval_metrics.f1_score(gold, posterior))


def crf_decodings(folder: Path, sentences: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """Each sentence's tags by the saved CRF model: the Viterbi path (``viterbi`` on the head's emissions and its
    constrained transition, start and end scores) and the argmax of its logits, at each word."""
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    head = model.classifier
    emissions: list[torch.Tensor] = []
    hook = head.classifier.register_forward_hook(lambda module, args, out: emissions.append(out.detach()))
    transitions, start, end = (t.detach().numpy() for t in head.crf_parameters(torch.device("cpu")))
    decoded, posterior = [], []
    for words in sentences:
        encoding = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**encoding).logits[0]  # (L, K): log-marginals
        path = viterbi(emissions[-1][0].float().numpy(), transitions, start, end)  # every real position
        positions = [encoding.word_ids(0).index(i) for i in range(len(words))]
        decoded.append([model.config.id2label[path[p]] for p in positions])
        posterior.append([model.config.id2label[int(logits[p].argmax())] for p in positions])
    hook.remove()
    return decoded, posterior


def test_ner_dataset_test_split_without_tags_keeps_every_row(tmp_path: Path) -> None:
    """run_ner.py's --dataset_name: the test split without a tags column (and an empty row) is tagged, one line per
    row, and not scored."""
    rng = random.Random(9)
    names = ["O", "B-PER", "I-PER", "B-LOC"]
    folder = tmp_path / "data"
    folder.mkdir()
    tagged = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    for split, n in (("train", 24), ("validation", 6)):
        sentences = [conll_sentence(rng) for _ in range(n)]
        datasets.Dataset.from_dict({"tokens": [[w for w, _ in s] for s in sentences],
                                    "ner_tags": [[names.index(t) for _, t in s] for s in sentences]},
                                   features=tagged).to_parquet(str(folder / f"{split}.parquet"))
    test = [[w for w, _ in conll_sentence(rng)] for _ in range(4)]
    test.insert(2, [])  # an empty row: an empty line
    datasets.Dataset.from_dict({"tokens": test}).to_parquet(str(folder / "test.parquet"))
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--dataset-name", folder, "--output-dir", output, *TINY, *FAST,
            "--do_train", "--do_predict"]
    assert call(finetune_ner.main, argv) == 0
    lines = (output / "predictions.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines[:-1]) == 5 and lines[2] == ""
    written = [line.split(" ") if line else [] for line in lines[:-1]]
    expected = iter(expected_tags(output, [words for words in test if words], 32))
    assert written == [next(expected) if words else [] for words in test]
    assert not (output / "predict_results.json").exists()


# ---------------------------------------------------------------------------------------------- refusals


def refusal_cases(glue: Path, conll: Path, tmp_path: Path) -> dict[str, tuple]:
    no_test, glue_no_test = tmp_path / "no-test", tmp_path / "glue-no-test"
    (glue_no_test / "SST-2").mkdir(parents=True, exist_ok=True)
    no_test.mkdir(exist_ok=True)
    for name in ("train.txt", "valid.txt"):
        (no_test / name).write_text((conll / name).read_text(encoding="utf-8"), encoding="utf-8")
    for name in ("train.tsv", "dev.tsv"):
        (glue_no_test / "SST-2" / name).write_text((glue / "SST-2" / name).read_text(encoding="utf-8"),
                                                   encoding="utf-8")
    rng = random.Random(10)
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": sentence(rng), "label": i % 2} for i in range(8)])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"text": sentence(rng), "label": i % 2} for i in range(4)])
    dataset = tmp_path / "dataset"
    dataset.mkdir(exist_ok=True)
    for split in ("train", "validation"):
        datasets.Dataset.from_dict({"text": [sentence(rng) for _ in range(4)], "label": [0, 1, 0, 1]}).to_parquet(
            str(dataset / f"{split}.parquet"))
    glue_task = ["--model-name-or-path", "lion", "--data-dir", glue]
    files = ["--model-name-or-path", "lion", "--train-file", train, "--validation-file", dev]
    return {
        "a GLUE folder without test.tsv": (
            finetune_glue, ["--model-name-or-path", "lion", "--data-dir", glue_no_test, "--task", "sst2",
                            "--do_train", "--do_predict"],
            f"--do_predict predicts GLUE SST-2's test split, but GLUE SST-2 test file "
            f"{str(glue_no_test / 'SST-2' / 'test.tsv')!r} does not exist"),
        "data files without --test-file": (
            finetune_glue, [*files, "--do_train", "--do_predict"],
            "--do_predict predicts the test split, but no --test-file was given"),
        "a dataset without a test split": (
            finetune_glue, ["--model-name-or-path", "lion", "--dataset-name", dataset, "--do_train", "--do_predict"],
            "has no 'test' split (it has train, validation)"),
        "--test-file without --do_predict": (
            finetune_glue, [*files, "--test-file", dev], "--test-file: for the test split --do_predict predicts"),
        "--max_predict_samples without --do_predict": (
            finetune_glue, [*glue_task, "--task", "sst2", "--max_predict_samples", "3"],
            "--max-predict-samples: for the test split --do_predict predicts"),
        "--max_predict_samples 0": (
            finetune_glue, [*glue_task, "--task", "sst2", "--do_train", "--do_predict", "--max_predict_samples", "0"],
            "--max-predict-samples must be >= 1, got 0"),
        "--test-file with a GLUE task": (
            finetune_glue, [*glue_task, "--task", "sst2", "--do_train", "--do_predict", "--test-file", dev],
            "--test-file: options of another dataset, not of a GLUE task"),
        "a CoNLL folder without test.txt": (
            finetune_ner, ["--model-name-or-path", "lion", "--data-dir", no_test, "--do_train", "--do_predict"],
            f"--do_predict predicts the test split, but --data-dir {str(no_test)!r} holds no test.txt"),
        "CoNLL paths without --test-file": (
            finetune_ner, ["--model-name-or-path", "lion", "--train-file", conll / "train.txt", "--validation-file",
                           conll / "valid.txt", "--do_train", "--do_predict"],
            "--do_predict predicts the test split: give its path with --test-file"),
        "--test-file with --dataset-name": (
            finetune_ner, ["--model-name-or-path", "lion", "--dataset-name", dataset, "--test-file", dev,
                           "--do_train", "--do_predict"], "--test-file: options of files"),
        "ner --test-file without --do_predict": (
            finetune_ner, ["--model-name-or-path", "lion", "--data-dir", conll, "--test-file", "test.txt"],
            "--test-file: for the test split --do_predict predicts"),
    }


CASES = ["a GLUE folder without test.tsv", "data files without --test-file", "a dataset without a test split",
         "--test-file without --do_predict", "--max_predict_samples without --do_predict", "--max_predict_samples 0",
         "--test-file with a GLUE task", "a CoNLL folder without test.txt", "CoNLL paths without --test-file",
         "--test-file with --dataset-name", "ner --test-file without --do_predict"]


@pytest.mark.parametrize("case", CASES)
def test_refusals_name_what_is_missing_before_anything_is_written(case: str, glue: Path, conll: Path,
                                                                  tmp_path: Path, capsys) -> None:
    command, argv, message = refusal_cases(glue, conll, tmp_path)[case]
    output = tmp_path / "out"
    assert call(command.main, [*argv, *TINY, *FAST, "--output-dir", output]) == 2
    err = capsys.readouterr().err
    assert f"{command.PROG}: error: " in err and message in err, err
    assert not output.exists()


# ------------------------------------------------------------------------------- --do_eval / --do_predict alone


@pytest.mark.parametrize("command", ["finetune-glue", "finetune-ner"])
def test_do_predict_without_do_train_evaluates_the_checkpoint_as_it_is(command, glue: Path, conll: Path,
                                                                        tmp_path: Path, capsys) -> None:
    """run_glue.py / run_ner.py train only with --do_train: --do_eval or --do_predict alone evaluate and predict with
    the checkpoint given. bizoo trained it again (3 epochs from the checkpoint: other weights, other scores). The
    fine-tuned folder evaluated alone scores and predicts exactly as its own run did, its weights unchanged."""
    from tests.scripts.conftest import max_weight_difference

    if command == "finetune-glue":
        main, data = finetune_glue.main, ["--task", "sst2", "--data-dir", glue, "--max-length", "32"]
        trained_argv, predictions = ["--model-name-or-path", "lion", *TINY, *FAST], "predict_results_sst2.txt"
    else:
        main, data, trained_argv, predictions = finetune_ner.main, ["--data-dir", conll], CRF, "predictions.txt"
    trained, alone, evaluated = tmp_path / "trained", tmp_path / "alone", tmp_path / "evaluated"
    assert call(main, [*trained_argv, *data, "--output-dir", trained, "--do_train", "--do_predict"]) == 0
    capsys.readouterr()
    assert call(main, ["--model-name-or-path", trained, *data, "--output-dir", alone, "--do_predict"]) == 0
    assert "is evaluated as it is, without training" in capsys.readouterr().out
    assert (alone / predictions).read_text() == (trained / predictions).read_text()
    results = [json.loads((folder / "eval_results.json").read_text()) for folder in (trained, alone)]
    assert results[1]["metrics"] == results[0]["metrics"]
    assert results[0]["steps"] == 3 and results[1]["steps"] == 0 and results[1]["train_loss"] is None
    assert max_weight_difference(trained, alone) == 0
    assert not list(alone.glob("checkpoint-*"))
    assert call(main, ["--model-name-or-path", trained, *data, "--output-dir", evaluated, "--do_eval"]) == 0
    assert json.loads((evaluated / "eval_results.json").read_text())["metrics"] == results[0]["metrics"]
    assert not (evaluated / predictions).exists()
    flat = [json.loads((folder / "all_results.json").read_text()) for folder in (trained, evaluated)]
    assert "train_loss" in flat[0] and "epoch" in flat[0]  # run_*.py's record: no train_* nor epoch untrained
    assert flat[1] == {name: value for name, value in flat[0].items() if name.startswith("eval_")}


def test_do_eval_alone_refuses_what_it_could_only_evaluate_untrained(glue: Path, checkpoint: Path, tmp_path: Path,
                                                                     capsys) -> None:
    """A model type (a new model), a pretrained checkpoint without the task's head (random weights), and a checkpoint
    fine-tuned on other labels would be scored untrained: refused before anything is written, naming --do_train."""
    sst2 = tmp_path / "sst2"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", *TINY, *FAST, "--task", "sst2", "--data-dir",
                                     glue, "--output-dir", sst2]) == 0
    output = tmp_path / "out"
    for model, task, message in (
        ("lion", "sst2", "'lion' is a model type: a new, untrained model; give --do_train to train it"),
        (checkpoint, "sst2", "has no LionForSequenceClassification weights classifier.dense.bias, "
                             "classifier.dense.weight, classifier.out_proj.bias and 1 more"),
        (sst2, "mnli", "was fine-tuned with the labels negative, positive, not this task's (contradiction, "
                       "entailment, neutral); give --do_train to fine-tune it on this task"),
    ):
        capsys.readouterr()
        assert call(finetune_glue.main, ["--model-name-or-path", model, "--task", task, "--data-dir", glue,
                                         "--output-dir", output, "--do_eval"]) == 2
        assert message in capsys.readouterr().err
        assert not output.exists()


@pytest.mark.parametrize("module", [finetune_glue, finetune_ner])
def test_help_says_what_do_predict_writes(module, capsys) -> None:
    assert call(module.main, ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-predict-samples" in text and "--test-file" in text
    written = "predict_results_<task>.txt" if module is finetune_glue else "predictions.txt"
    assert "after the evaluation, " in text and written in text
    assert "without --do_train, the checkpoint as it is" in text


def test_ner_evaluation_during_training_reads_the_viterbi_path(conll: Path, tmp_path: Path) -> None:
    """--eval_strategy steps: the evaluation during training (what --best-checkpoint and --metric_for_best_model
    choose by) decodes as the final one does. Its last evaluation, at the last step, scores the final weights: the
    same F1 as the final evaluation, the Viterbi path's (the argmax of the log-marginals scores differently here)."""
    output = tmp_path / "run"
    assert call(finetune_ner.main, [*CRF, "--data-dir", conll, "--output-dir", output,
                                    "--eval_strategy", "steps", "--eval_steps", "3"]) == 0
    log = json.loads((output / "training_log.json").read_text(encoding="utf-8"))
    during = [entry for entry in log if "eval_conlleval_f1" in entry]
    assert [entry["step"] for entry in during] == [3]
    final = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))["metrics"]["conlleval_f1"]
    assert during[-1]["eval_conlleval_f1"] == pytest.approx(final)
    from seqeval import metrics as seqeval_metrics  # a test extra: an oracle, never skipped
    valid = read_conll(conll / "valid.txt")
    decoded, posterior = crf_decodings(output, [words for words, _ in valid])
    gold = [tags for _, tags in valid]
    assert final == pytest.approx(seqeval_metrics.f1_score(gold, decoded))
    assert final != pytest.approx(seqeval_metrics.f1_score(gold, posterior))
