"""`bizoo finetune-glue` and `bizoo finetune-ner` under `torchrun --nproc_per_node 2` (gloo on the CPU): the run ends,
the first process alone writes the output folder, the evaluation and test scores are those of the saved model
evaluating the split on one process (the examples the distributed sampler repeats to fill the last batch scored
once), the predictions files hold one line per example in the input's order, and 2 processes with batch b train as
one process with batch 2b."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from bizoo.scripts.finetune_ner import tagging_scores
from bizoo.scripts.lib.data import read_conll
from tests.scripts.conftest import conll_sentence, max_weight_difference, run_child, sentence, write_conll, write_jsonl

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TINY_LION = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4",
             "intermediate_size=64", "hidden_dropout_prob=0"]
#: An evaluation batch of 3 per process: 7 evaluation and 9 test examples fill no last batch of both processes, so the
#: sampler repeats examples there.
EVAL_BATCH = ["--per_device_eval_batch_size", "3"]

#: finetune-glue whose second process reads its data files slower than the first (a slower disk, a busier core), so
#: that it reaches its checks after the first has gone on. (The processes meet when the first TrainingArguments is
#: built, before the data is read: a process delayed before that would delay the others with it.)
SLOW_SECOND_PROCESS = """
import os, sys, time
from bizoo.scripts import finetune_glue

read = finetune_glue.load_splits

def read_slowly(*args, **kwargs):
    if os.environ.get("RANK") == "1":
        time.sleep({seconds})
    return read(*args, **kwargs)

finetune_glue.load_splits = read_slowly
sys.exit(finetune_glue.main(sys.argv[1:]))
"""


def torchrun(command: str, argv) -> subprocess.CompletedProcess:
    return run_child([*TORCHRUN, "-m", f"bizoo.scripts.{command}", *argv])


@pytest.fixture(scope="module")
def conll(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CoNLL files of 32 training, 7 evaluation and 9 test sentences of several lengths."""
    root = tmp_path_factory.mktemp("conll")
    rng = random.Random(11)
    for name, n in (("train.txt", 32), ("valid.txt", 7), ("test.txt", 9)):
        write_conll(root / name, [conll_sentence(rng) for _ in range(n)])
    return root


def tags_alone(folder: Path, sentences: list[list[str]]) -> list[list[str]]:
    """Each sentence tagged alone (no batch, no padding, one process) by the saved model's ``predictions`` (a CRF
    head: the Viterbi path), read at each word's first sub-token."""
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tagged = []
    for words in sentences:
        encoding = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            path = model(**encoding).predictions[0]  # (L,)
        first = {}
        for position, word in enumerate(encoding.word_ids(0)):
            if word is not None and word not in first:
                first[word] = position
        tagged.append([model.config.id2label[int(path[first[i]])] for i in range(len(words))])
    return tagged


def saved_once(done: subprocess.CompletedProcess, folder: Path) -> None:
    """The first process alone reported the save, and nothing the run shares between processes is left behind."""
    assert done.stdout.count(f"to {folder}") == 1, done.stdout[-3000:]
    assert not [entry.name for entry in folder.iterdir() if entry.name.startswith(".")]


@pytest.mark.slow
def test_ner_crf_preset_scores_and_predicts_as_its_saved_model_on_one_process(tmp_path, conll):
    """The BiLSTM-CRF preset (group_by_length, word dropout 0.5) with --best-checkpoint and --do_predict on a tagged
    test file: the evaluation's and the test's span F1 are those of the saved model tagging each sentence alone, and
    predictions.txt has one line per test sentence, in order. (transformers groups the evaluation batches by length
    too on several processes: the predictions came back in another order and were read at another sentence's
    words.)"""
    output = tmp_path / "run"
    done = torchrun("finetune_ner", [
        "--model-name-or-path", "bilstm_crf", "--model-config", "word_embedding_size=16", "hidden_size=8",
        "--data-dir", conll, "--output-dir", output, "--max-steps", "8", "--batch-size", "4", "--logging-steps", "4",
        "--best-checkpoint", "--eval_strategy", "steps", "--eval_steps", "4", "--save_strategy", "steps",
        "--save-steps", "4", *EVAL_BATCH, "--do_train", "--do_predict"])
    assert done.returncode == 0, done.stderr[-3000:]
    saved_once(done, output)

    valid, test = read_conll(conll / "valid.txt"), read_conll(conll / "test.txt")
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    alone = tagging_scores("ner", [tags for _, tags in valid], tags_alone(output, [words for words, _ in valid]))
    assert results["metrics"]["f1"] == pytest.approx(alone["f1"])
    assert results["metrics"]["support"] == alone["support"]

    lines = (output / "predictions.txt").read_text(encoding="utf-8").splitlines()
    expected = tags_alone(output, [words for words, _ in test])
    assert [line.split(" ") for line in lines] == expected
    predicted = json.loads((output / "predict_results.json").read_text(encoding="utf-8"))
    alone = tagging_scores("ner", [tags for _, tags in test], expected)
    assert predicted["predict_f1"] == pytest.approx(alone["f1"]) and predicted["predict_samples"] == len(test) == 9


@pytest.mark.slow
def test_glue_data_files_predict_every_test_example_once_in_order(tmp_path):
    """A regression task of data files, --group-by-length, a labelled test file of 9 examples: predict_results.txt
    has the saved model's score of each example alone, in the file's order (a regression's scores differ from one
    example to the next, so an order changed shows), and the evaluation's and the test's Pearson are theirs."""
    rng = random.Random(12)
    rows = {name: [{"sentence": sentence(rng), "label": round(rng.uniform(0, 5), 3)} for _ in range(n)]
            for name, n in (("train", 24), ("dev", 7), ("test", 9))}
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", split) for name, split in rows.items()}
    output = tmp_path / "run"
    done = torchrun("finetune_glue", [
        "--model-name-or-path", "lion", "--train-file", files["train"], "--validation-file", files["dev"],
        "--test-file", files["test"], "--output-dir", output, *TINY_LION, "--max-steps", "3", "--batch-size", "4",
        "--max-length", "32", "--group-by-length", *EVAL_BATCH, "--do_train", "--do_predict"])
    assert done.returncode == 0, done.stderr[-3000:]
    saved_once(done, output)

    model = AutoModelForSequenceClassification.from_pretrained(output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)

    def scores_alone(split: str) -> np.ndarray:
        scores = []
        for row in rows[split]:
            with torch.no_grad():
                scores.append(float(model(**tokenizer(row["sentence"], return_tensors="pt")).logits[0, 0]))
        return np.array(scores)

    lines = (output / "predict_results.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "index\tprediction" and [line.split("\t")[0] for line in lines[1:]] == [str(i) for i in range(9)]
    written = np.array([float(line.split("\t")[1]) for line in lines[1:]])
    test_scores = scores_alone("test")
    assert np.abs(written - test_scores).max() < 1e-3  # 3 decimals
    assert len(set(np.round(test_scores, 3))) > 1  # the scores tell the examples apart

    def pearson(scores: np.ndarray, split: str) -> float:
        return float(np.corrcoef(scores, [row["label"] for row in rows[split]])[0, 1])

    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert results["metrics"]["dev"]["pearson"] == pytest.approx(pearson(scores_alone("dev"), "dev"), abs=1e-5)
    predicted = json.loads((output / "predict_results.json").read_text(encoding="utf-8"))
    assert predicted["predict_pearson"] == pytest.approx(pearson(test_scores, "test"), abs=1e-5)
    assert predicted["predict_samples"] == 9


@pytest.mark.slow
def test_a_process_that_checks_the_output_folder_later_finds_it_as_the_first_did(tmp_path):
    """A tokenizer trained from scratch is built by the first process and shared through the output folder: a second
    process checking that folder after the first has started writing in it refused it as not empty (and the first,
    left waiting, died and left its shared tokenizer there). Every process checks before any writes. Then a folder
    that IS taken is refused by every process with the same message and exit code 2."""
    rng = random.Random(13)
    rows = [{"sentence": sentence(rng), "label": rng.choice(["yes", "no"])} for _ in range(16)]
    train, dev = write_jsonl(tmp_path / "train.jsonl", rows[:12]), write_jsonl(tmp_path / "dev.jsonl", rows[12:])
    script = tmp_path / "slow_second_process.py"
    script.write_text(SLOW_SECOND_PROCESS.format(seconds=4))
    output = tmp_path / "run"
    argv = ["--model-name-or-path", "lion", "--train-file", train, "--validation-file", dev, "--output-dir", output,
            *TINY_LION, "--max-steps", "1", "--batch-size", "4", "--max-length", "32"]
    done = run_child([*TORCHRUN, script, *argv])
    assert done.returncode == 0, done.stderr[-3000:]
    saved_once(done, output)
    assert (output / "model.safetensors").is_file() and (output / "tokenizer.json").is_file()

    done = run_child([*TORCHRUN, script, *argv])  # the folder holds a run now: refused, before anything is written
    assert done.returncode != 0
    refusal = f"bizoo finetune-glue: error: output folder '{output}' already exists and is not empty"
    assert done.stderr.count(refusal) == 2, done.stderr[-3000:]
    assert "exitcode  : 2" in done.stderr and "Connection closed" not in done.stderr


def losses(folder: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((folder / "training_log.json").read_text()) if "loss" in entry]


@pytest.mark.slow
def test_two_processes_with_accumulation_train_as_one_process_with_the_whole_batch(tmp_path, conll, tokenizer):
    """LION tagging without dropout: 2 processes x batch 2 x 2 accumulated steps against 1 process x batch 8 (the
    same order, and the loss normalised by the labelled tokens of all of them): the same weights, logged losses and
    train_loss (3 steps, logged every 2: the last step's loss is not logged, and it was the first process's share
    alone), and eval_results.json records the same total batch of each step, as transformers' model cards give it."""
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    common = ["--model-name-or-path", "lion", "--data-dir", conll, "--tokenizer", tmp_path / "tokenizer",
              *TINY_LION, "--max-steps", "3", "--logging-steps", "2", "--warmup-ratio", "0", "--max-length", "32"]
    two, one = tmp_path / "two", tmp_path / "one"
    done = torchrun("finetune_ner", [*common, "--output-dir", two, "--per_device_train_batch_size", "2",
                                     "--gradient_accumulation_steps", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_child([sys.executable, "-m", "bizoo.scripts.finetune_ner", *common, "--output-dir", one,
                      "--batch-size", "8"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_weight_difference(two, one) < 1e-5
    assert np.allclose(losses(two), losses(one), atol=1e-5) and len(losses(one)) == 1  # logged at step 2
    records = [json.loads((folder / "eval_results.json").read_text()) for folder in (two, one)]
    # the mean loss of the 3 steps, step 3's (after the last logging step) that of both processes
    assert records[0]["train_loss"] == pytest.approx(records[1]["train_loss"], abs=1e-5)
    assert [(r["batch_size"], r["gradient_accumulation_steps"], r["processes"]) for r in records] == [(2, 2, 2),
                                                                                                      (8, 1, 1)]
    assert records[0]["total_batch_size"] == records[1]["total_batch_size"] == 8
    assert records[0]["metrics"]["f1"] == pytest.approx(records[1]["metrics"]["f1"])


@pytest.mark.slow
def test_word_dropout_draws_the_same_replacements_on_two_processes_as_on_one(tmp_path, conll):
    """The BiLSTM-CRF preset (group_by_length, --word-dropout 0.5) without the model's own dropout, over 2 epochs of
    training sentences that each hold a word seen once: 2 processes x batch 4 end with the weights and losses of 1
    process x batch 8, since the replacements are drawn per (seed, epoch, example), never per process."""
    rng = random.Random(14)
    # 32 singletons, of letters (the preset's tokenizer maps every digit to 0)
    sentences = [conll_sentence(rng) + [(f"x{chr(97 + index // 26)}{chr(97 + index % 26)}", "O")]
                 for index in range(32)]
    data = tmp_path / "data"
    write_conll(data / "train.txt", sentences)
    (data / "valid.txt").write_text((conll / "valid.txt").read_text(encoding="utf-8"), encoding="utf-8")
    common = ["--model-name-or-path", "bilstm_crf", "--model-config", "word_embedding_size=16", "hidden_size=8",
              "embedding_dropout=0", "hidden_dropout_prob=0", "--data-dir", data, "--word-dropout", "0.5",
              "--max-steps", "6", "--logging-steps", "1", "--warmup-ratio", "0"]
    two, one = tmp_path / "two", tmp_path / "one"
    done = torchrun("finetune_ner", [*common, "--output-dir", two, "--batch-size", "4"])
    assert done.returncode == 0, done.stderr[-3000:]
    singletons = re.search(r"word dropout: (\d+) words seen once", done.stdout)
    assert singletons and int(singletons[1]) >= 32, done.stdout[-3000:]
    done = run_child([sys.executable, "-m", "bizoo.scripts.finetune_ner", *common, "--output-dir", one,
                      "--batch-size", "8"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_weight_difference(two, one) < 1e-5
    assert np.allclose(losses(two), losses(one), atol=1e-5) and len(losses(one)) == 6  # epochs 1 and 2
