"""A checkpoint fine-tuned on a task's labels, fine-tuned again: its label order, and label smoothing of a regression.

* A checkpoint whose labels are the task's in another order (an SST-2 model saved with ``{0: positive, 1: negative}``,
  a CoNLL tagger in another tag order) predicts what it predicted: its head's rows (a CRF's transitions, start and
  end scores too) are reordered to the task's order, so the run, its predictions files and the saved model are those
  of the same checkpoint saved in the task's order. The task's configuration put over the checkpoint's rows renamed
  every prediction (SST-2: each one flipped).
* A checkpoint with another label set is warned about, naming both sets, and the task's order is kept; a pretrained
  encoder (transformers' generic ``LABEL_0`` ...) is not warned about.
* --label_smoothing_factor with a regression (STS-B) is refused before anything is written.

Each fine-tuning run takes one step at a learning rate of 1e-12: the model predicts what the checkpoint predicts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

import bizoo
from bizoo.scripts import finetune_glue, finetune_ner
from tests.scripts.conftest import call, conll_sentence, sentence, write_conll, write_tsv
from tests.tiny_configs import TINY_CONFIGS

STILL = ["--max-steps", "1", "--learning-rate", "1e-12", "--warmup_steps", "0", "--batch-size", "8",
         "--max-length", "32", "--save-steps", "100", "--do_train", "--do_predict"]
SST2 = ("negative", "positive")  # the task's order
NER = ("O", "B-LOC", "B-PER", "I-PER")  # finetune-ner's order for these tags: "O", then by type


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, synthetic) -> Path:
    from bizoo.scripts.lib.wordpiece import train_wordpiece_tokenizer

    rng = random.Random(3)
    words = synthetic.WORDS + synthetic.NAMES + synthetic.PLACES + synthetic.FILLER
    texts = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(200)]
    folder = tmp_path_factory.mktemp("tokenizer")
    train_wordpiece_tokenizer(texts, vocab_size=120, min_frequency=1, model_max_length=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("glue")
    rng = random.Random(4)
    for split, n in (("train", 8), ("dev", 16)):
        rows = [[text, str(int("good" in text))] for text in (sentence(rng) for _ in range(n))]
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], rows)
    write_tsv(root / "SST-2" / "test.tsv", ["index", "sentence"], [[str(i), sentence(rng)] for i in range(16)])
    for split in ("train", "dev"):
        rows = [[str(i), sentence(rng), sentence(rng), f"{rng.uniform(0, 5):.3f}"] for i in range(8)]
        write_tsv(root / "STS-B" / f"{split}.tsv", ["index", "sentence1", "sentence2", "score"], rows)
    return root


@pytest.fixture(scope="module")
def conll_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conll")
    rng = random.Random(5)
    for name, n in (("train", 8), ("valid", 16), ("test", 16)):
        write_conll(root / f"{name}.txt", [conll_sentence(rng) for _ in range(n)])
    return root


def save_checkpoint(folder: Path, tokenizer_dir: Path, model_class, labels: tuple[str, ...], order: tuple[str, ...],
                    **fields) -> Path:
    """A tiny LION fine-tuned (random weights, seeded) for ``labels``, saved with its labels in ``order``: the same
    function whatever ``order``, its head's rows (and a CRF's) permuted to it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = bizoo.LionConfig(**TINY_CONFIGS["lion"], vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                              id2label=dict(enumerate(labels)), **fields)
    torch.manual_seed(1)  # a head that predicts both SST-2 classes on these sentences
    model = model_class(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "classifier" in name or "crf" in name:  # a head that predicts other labels than its neighbours
                parameter.normal_(0.0, 1.0 if parameter.dim() > 1 or "crf" in name else 0.01)
    state = model.state_dict()
    rows = torch.tensor([labels.index(label) for label in order])
    config.id2label = dict(enumerate(order))
    config.label2id = {label: i for i, label in enumerate(order)}
    saved = model_class(config)
    for key, tensor in state.items():
        for axis, size in enumerate(tensor.shape):
            if size == len(labels) and ("classifier" in key or "crf" in key):
                tensor = tensor.index_select(axis, rows)
        state[key] = tensor
    saved.load_state_dict(state)
    saved.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def saved_labels(output: Path) -> list[str]:
    id2label = AutoConfig.from_pretrained(output).id2label
    return [id2label[i] for i in range(len(id2label))]


def max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


def test_glue_checkpoint_with_the_labels_in_another_order_predicts_what_it_predicted(
        tmp_path: Path, tokenizer_dir: Path, sst2_dir: Path, capsys: pytest.CaptureFixture) -> None:
    model_class = bizoo.LionForSequenceClassification
    runs = {}
    for order in (SST2, SST2[::-1]):
        checkpoint = save_checkpoint(tmp_path / "-".join(order), tokenizer_dir, model_class, SST2, order)
        output = tmp_path / f"out-{'-'.join(order)}"
        argv = ["--model-name-or-path", checkpoint, "--task", "sst2", "--data-dir", sst2_dir, "--output-dir", output]
        assert call(finetune_glue.main, [*argv, *STILL]) == 0
        runs[order] = output
    same, reversed_ = runs[SST2], runs[SST2[::-1]]
    predictions = (same / "predict_results_sst2.txt").read_text()
    assert set(predictions.split()[3::2]) == set(SST2)  # both classes predicted: a flip would show
    assert (reversed_ / "predict_results_sst2.txt").read_text() == predictions
    scores = [json.loads((run / "eval_results.json").read_text())["metrics"] for run in (same, reversed_)]
    assert scores[0] == scores[1]
    assert saved_labels(reversed_) == saved_labels(same) == list(SST2)
    assert max_weight_difference(same, reversed_) < 1e-6  # the same model, saved in the task's order
    log = "".join(capsys.readouterr())
    assert ("was fine-tuned on this task's labels in another order (positive, negative); its head "
            "(classifier.out_proj.weight, classifier.out_proj.bias) is reordered to the task's order" in log)


def test_ner_crf_checkpoint_with_the_tags_in_another_order_predicts_what_it_predicted(
        tmp_path: Path, tokenizer_dir: Path, conll_dir: Path) -> None:
    model_class = bizoo.LionForTokenClassification
    shuffled = ("B-PER", "O", "I-PER", "B-LOC")  # e.g. a dataset's ClassLabel order
    runs = {}
    for order in (NER, shuffled):
        checkpoint = save_checkpoint(tmp_path / "-".join(order), tokenizer_dir, model_class, NER, order,
                                     use_crf=True)
        output = tmp_path / f"out-{'-'.join(order)}"
        argv = ["--model-name-or-path", checkpoint, "--data-dir", conll_dir, "--output-dir", output]
        assert call(finetune_ner.main, [*argv, *STILL]) == 0
        runs[order] = output
    same, other = runs[NER], runs[shuffled]
    predictions = (same / "predictions.txt").read_text()
    assert {"B-PER", "B-LOC"} <= set(predictions.split())
    assert (other / "predictions.txt").read_text() == predictions
    scores = [json.loads((run / "eval_results.json").read_text())["metrics"] for run in (same, other)]
    assert scores[0] == scores[1]
    assert saved_labels(other) == saved_labels(same) == list(NER)
    assert max_weight_difference(same, other) < 1e-6  # the CRF's transitions, start and end scores reordered too


def test_a_checkpoint_with_other_labels_is_warned_about_and_the_task_order_kept(
        tmp_path: Path, tokenizer_dir: Path, sst2_dir: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = save_checkpoint(tmp_path / "ckpt", tokenizer_dir, bizoo.LionForSequenceClassification,
                                 ("yes", "no"), ("yes", "no"))
    output = tmp_path / "out"
    argv = ["--model-name-or-path", checkpoint, "--task", "sst2", "--data-dir", sst2_dir, "--output-dir", output]
    assert call(finetune_glue.main, [*argv, *STILL]) == 0
    assert ("was fine-tuned with the labels no, yes, which are not this task's labels (negative, positive): the "
            "checkpoint's labels are ignored" in "".join(capsys.readouterr()))
    assert saved_labels(output) == list(SST2)
    assert {line.split("\t")[1] for line in (output / "predict_results_sst2.txt").read_text().splitlines()[1:]} <= \
        set(SST2)

    # a pretrained encoder: transformers' generic labels, nothing to say
    encoder = tmp_path / "encoder"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = bizoo.LionConfig(**TINY_CONFIGS["lion"], vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    bizoo.LionForMaskedLM(config).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    argv = ["--model-name-or-path", encoder, "--task", "sst2", "--data-dir", sst2_dir, "--output-dir", tmp_path / "o2"]
    assert call(finetune_glue.main, [*argv, *STILL]) == 0
    assert "was fine-tuned with the labels" not in "".join(capsys.readouterr())
    assert saved_labels(tmp_path / "o2") == list(SST2)


def test_label_smoothing_of_a_regression_is_refused_before_anything_is_written(
        tmp_path: Path, sst2_dir: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--task", "stsb", "--data-dir", sst2_dir, "--output-dir", output,
            "--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4",
            "intermediate_size=64", "--max-steps", "1", "--label_smoothing_factor", "0.1"]
    assert call(finetune_glue.main, argv) == 2
    assert ("--label_smoothing_factor smooths a softmax over the classes of each example's label; this task is a "
            "regression" in capsys.readouterr().err)
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
