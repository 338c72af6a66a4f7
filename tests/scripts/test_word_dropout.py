"""Word dropout (``scripts/lib/word_dropout.py``, finetune-ner's --word-dropout) and the checkpoint chosen on the
evaluation split (--best-checkpoint, or transformers' own flags) for the BiLSTM-CRF.

Word dropout: only words seen once in training become [UNK], at rate p, their characters, tags and mask kept; the
draws are a function of (seed, epoch, example) alone, new each epoch; the command applies it while training and
never while evaluating; a model that cannot use it is refused with exit code 2. Best checkpoint: on a tiny run
whose evaluation scores are made to fall after the first epoch, the model saved at the end holds the first epoch's
weights; --best-checkpoint sets exactly the fields transformers' flags set, and a preset can turn it on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import string
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import DataCollatorForTokenClassification

import bizoo
from bizoo.scripts import finetune_glue, finetune_ner, pretrain
from bizoo.scripts.lib import finetuning
from bizoo.scripts.lib.data import read_conll
from bizoo.scripts.lib.masking import EpochCallback, mask_seed
from bizoo.scripts.lib.model_defaults import MODEL_DEFAULTS
from bizoo.scripts.lib.training import check_training_arguments, resolve_training_defaults, training_values
from bizoo.scripts.lib.word_dropout import WordDropoutExamples, dropout_generator, drop_words, singleton_ids
from tests.tiny_configs import TINY_CONFIGS
from tests.scripts.conftest import call

FREQUENT = ["the", "in", "met", "Berlin", "Paris", "paris", "Anna"]  # "Paris"/"paris": one lowercased word, twice


def unique_words(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct capitalised letter strings that are none of ``FREQUENT`` (lowercased)."""
    words: set[str] = set()
    while len(words) < n:
        words.add(rng.choice(string.ascii_uppercase) + "".join(rng.choices(string.ascii_lowercase, k=7)))
    return sorted(words)


def tagged_sentences(n: int, singletons_per_sentence: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Sentences "Anna met <X> in Berlin the Paris <Y> in Berlin the paris ... <Z>" where every <X>, <Y> occurs once
    in all of them (B-PER) and each <Z> twice (two sentences share it)."""
    rng = random.Random(seed)
    words_needed = n * singletons_per_sentence + (n + 1) // 2
    rare = unique_words(rng, words_needed)
    once, twice = iter(rare[: n * singletons_per_sentence]), rare[n * singletons_per_sentence:]
    sentences = []
    for index in range(n):
        words, tags = ["Anna", "met"], ["B-PER", "O"]
        for _ in range(singletons_per_sentence):
            words += [next(once), "in", "Berlin", "the", "Paris" if index % 2 else "paris"]
            tags += ["B-PER", "O", "B-LOC", "O", "B-LOC"]
        sentences.append((words + [twice[index // 2]], tags + ["B-LOC"]))
    return sentences


def expected_singletons(sentences) -> set[str]:
    """The test's own count: lowercased words (the bilstm_crf tokenizer's lookup) seen once."""
    counts = Counter(word.lower() for words, _ in sentences for word in words)
    return {word for word, count in counts.items() if count == 1}


@pytest.fixture(scope="module")
def encoded():
    """A word+character tokenizer built from the training words (the bilstm_crf preset's options) and the encoded
    training features, with labels."""
    sentences = tagged_sentences(200, 5, seed=0)  # 1000 singletons, each once
    tokenizer = bizoo.WordCharTokenizerFast.from_words([w for w, _ in sentences], lowercase=True, digits_to_zero=True)
    label2id = {"O": 0, "B-PER": 1, "B-LOC": 2}
    encoding = tokenizer([words for words, _ in sentences], is_split_into_words=True)  # one token per word
    features = [{"input_ids": encoding["input_ids"][i], "char_ids": encoding["char_ids"][i],
                 "attention_mask": encoding["attention_mask"][i], "labels": [label2id[tag] for tag in tags]}
                for i, (_, tags) in enumerate(sentences)]
    singletons = {tokenizer.convert_tokens_to_ids(word) for word in expected_singletons(sentences)}
    return SimpleNamespace(sentences=sentences, tokenizer=tokenizer, features=features, singletons=singletons)


def dropout_dataset(encoded, probability: float, seed: int = 0) -> WordDropoutExamples:
    tokenizer = encoded.tokenizer
    return WordDropoutExamples(encoded.features, tokenizer.unk_token_id, tokenizer.all_special_ids, probability, seed)


def all_ids(dataset) -> list[list[int]]:
    return [list(dataset[index]["input_ids"]) for index in range(len(dataset))]


# ---------------------------------------------------------------------------------------------- the replacement


def test_singletons_are_the_ids_seen_once_without_special_ids() -> None:
    examples = [{"input_ids": [0, 5, 6, 7, 7]}, {"input_ids": [5, 8, 1, 9]}, {"input_ids": [2, 3]}]
    assert singleton_ids(examples, special_ids=[0, 1, 2, 3]).tolist() == [6, 8, 9]
    assert singleton_ids([], special_ids=[0]).tolist() == []


def test_the_singletons_counted_are_the_training_words_seen_once(encoded) -> None:
    """Counted by vocabulary id, i.e. after lowercasing: "Paris" and "paris" are one frequent word; a word seen
    twice is no singleton."""
    dataset = dropout_dataset(encoded, 0.5)
    assert set(dataset.singletons.tolist()) == encoded.singletons and len(encoded.singletons) == 1000
    assert encoded.tokenizer.convert_tokens_to_ids("paris") not in encoded.singletons
    twice = encoded.sentences[0][0][-1]
    assert twice == encoded.sentences[1][0][-1] and encoded.tokenizer.convert_tokens_to_ids(twice.lower()) > 1


@pytest.mark.parametrize("probability", [0.5, 0.2, 1.0, 0.0])
def test_only_singletons_become_unk_at_rate_p_and_everything_else_stays(encoded, probability: float) -> None:
    """Singleton positions become [UNK] at rate p (1000 of them: 5 standard deviations); every other position, and
    the characters, tags and masks of every position, are the example's own."""
    dataset = dropout_dataset(encoded, probability, seed=3)
    unk = encoded.tokenizer.unk_token_id
    replaced = kept = 0
    for index, original in enumerate(encoded.features):
        dropped = dataset[index]
        assert {key: value for key, value in dropped.items() if key != "input_ids"} == {
            key: value for key, value in original.items() if key != "input_ids"}  # char_ids, labels, attention_mask
        for before, after in zip(original["input_ids"], dropped["input_ids"], strict=True):
            if before in encoded.singletons:
                replaced += after == unk
                kept += after == before
                assert after in (unk, before)
            else:
                assert after == before
    assert replaced + kept == 1000
    assert abs(replaced / 1000 - probability) <= 5 * (probability * (1 - probability) / 1000) ** 0.5


def test_a_collated_batch_keeps_the_characters_of_the_replaced_words(encoded) -> None:
    """Through the command's collator: [UNK] where singletons were, the characters of the original words."""
    collator = DataCollatorForTokenClassification(encoded.tokenizer)
    dataset = dropout_dataset(encoded, 1.0)
    dropped = collator([dataset[index] for index in range(4)])
    original = collator(encoded.features[:4])
    torch.testing.assert_close(dropped["char_ids"], original["char_ids"], rtol=0, atol=0)
    torch.testing.assert_close(dropped["labels"], original["labels"], rtol=0, atol=0)
    singleton = torch.isin(original["input_ids"], torch.tensor(sorted(encoded.singletons)))  # (B, L)
    assert singleton.sum() == 20
    assert (dropped["input_ids"][singleton] == encoded.tokenizer.unk_token_id).all()
    assert (dropped["input_ids"][~singleton] == original["input_ids"][~singleton]).all()
    assert (dropped["char_ids"][singleton] != 0).any(dim=-1).all()  # real characters, not an empty row


def test_the_draws_depend_on_seed_epoch_and_example_only(encoded) -> None:
    """The same (seed, epoch, index) gives the same replacements whatever was read before (another order, another
    dataset object: a resumed run); another epoch or seed gives other ones."""
    first = dropout_dataset(encoded, 0.5, seed=7)
    epoch0 = all_ids(first)
    again = dropout_dataset(encoded, 0.5, seed=7)
    order = list(range(len(again)))
    random.Random(1).shuffle(order)
    assert {index: list(again[index]["input_ids"]) for index in order} == dict(enumerate(epoch0))
    first.set_epoch(1)
    epoch1 = all_ids(first)
    differ = sum(a != b for a, b in zip(epoch0, epoch1))
    assert differ > 150  # of 200 examples with 5 singletons each: all 5 draws agree with probability 1/32
    first.set_epoch(0)
    assert all_ids(first) == epoch0
    other_seed = all_ids(dropout_dataset(encoded, 0.5, seed=8))
    assert sum(a != b for a, b in zip(epoch0, other_seed)) > 150


def test_the_generator_is_seeded_by_its_three_numbers_and_not_as_the_masks_are() -> None:
    draws = {key: dropout_generator(*key).random(4).tolist() for key in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]}
    assert len({tuple(d) for d in draws.values()}) == 4
    assert dropout_generator(0, 0, 0).random(4).tolist() == draws[(0, 0, 0)]
    assert dropout_generator(-5, 0, 0).random(1).tolist() == dropout_generator(-5, 0, 0).random(1).tolist()
    masks = np.random.default_rng(mask_seed(0, 0, 0)).random(4).tolist()
    assert masks != draws[(0, 0, 0)]


def test_drop_words_replaces_only_the_given_ids() -> None:
    out = drop_words([4, 9, 4, 9], np.array([9]), unk_id=1, probability=1.0, generator=dropout_generator(0, 0, 0))
    assert out == [4, 1, 4, 1]
    out = drop_words([4, 9, 4, 9], np.array([9]), unk_id=1, probability=0.0, generator=dropout_generator(0, 0, 0))
    assert out == [4, 9, 4, 9]


def test_the_epoch_callback_tells_the_dataset_which_epoch_runs(encoded) -> None:
    """The Trainer's state.epoch at the start of an epoch: 2 - rounding after two epochs, 1.5 when a run resumes in
    the middle of the second one."""
    dataset = dropout_dataset(encoded, 0.5)
    callback = EpochCallback(dataset)
    for state_epoch, expected in [(0.0, 0), (2 - 1e-12, 2), (1.5, 1)]:
        callback.on_epoch_begin(None, SimpleNamespace(epoch=state_epoch), None)
        assert dataset.epoch == expected


@pytest.mark.parametrize("bad, message", [
    (dict(probability=1.5), "probability must be in [0, 1], got 1.5"),
    (dict(probability=float("nan")), "probability must be in [0, 1], got nan"),
    (dict(unk_id=None), "unk_id must be a token id (int), got None"),
])
def test_the_dataset_refuses_bad_arguments(encoded, bad: dict, message: str) -> None:
    kwargs = dict(examples=encoded.features[:2], unk_id=1, special_ids=[0], probability=0.5, seed=0) | bad
    with pytest.raises(ValueError) as err:
        WordDropoutExamples(**kwargs)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------- the command

BILSTM = ["--model-config", *(f"{key}={json.dumps(value)}" for key, value in TINY_CONFIGS["bilstm_crf"].items())]
ELMO = ["--model-config", *(f"{key}={json.dumps(value)}" for key, value in TINY_CONFIGS["elmo"].items())]
LION = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


def write_conll(path: Path, sentences) -> None:
    lines = []
    for words, tags in sentences:
        lines += [f"{word} NNP B-NP {tag}" for word, tag in zip(words, tags)] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 training sentences with 2 singletons each; 8 evaluation sentences made of training words, singletons
    included (so an evaluation that dropped words would show it)."""
    root = tmp_path_factory.mktemp("conll")
    train = tagged_sentences(16, 2, seed=5)
    write_conll(root / "train.txt", train)
    evaluation = []
    for words, tags in train[:8]:
        evaluation.append((words[:5] + words[2:3], tags[:5] + tags[2:3]))
    write_conll(root / "valid.txt", evaluation)
    return root


def ner_args(data_dir: Path, output: Path, model: str, *extra) -> list:
    config = {"bilstm_crf": BILSTM, "elmo": ELMO, "lion": LION}[model]
    return ["--model-name-or-path", model, "--data-dir", data_dir, "--output-dir", output, *config,
            "--batch-size", "8", "--max-length", "32", "--logging-steps", "1", *extra]


def parsed_ner(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    finetune_ner.add_arguments(parser)
    return parser.parse_args(["--data-dir", "x", "--output-dir", "out", *argv])


@pytest.mark.parametrize("model, extra, message", [
    ("lion", ["--word-dropout", "0.5"], "needs a model that reads words and their characters (bilstm_crf); this one "
                                        "reads sub-words"),
    ("elmo", ["--word-dropout", "0.5"], "ElmoForTokenClassification reads the characters only"),
    ("bilstm_crf", ["--word-dropout", "1.5"], "--word-dropout must be a probability in [0, 1] (0 = off), got 1.5"),
    ("bilstm_crf", ["--word-dropout", "nan"], "got nan"),
])
def test_word_dropout_that_cannot_work_is_refused_before_anything_is_written(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, extra: list, message: str,
) -> None:
    output = tmp_path / "out"
    assert call(finetune_ner.main, ner_args(data_dir, output, model, "--max-steps", "1", *extra)) == 2
    err = capsys.readouterr().err
    assert "bizoo finetune-ner: error: " in err and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_word_dropout_comes_from_the_preset_or_the_command_line(monkeypatch) -> None:
    assert parsed_ner("--model-name-or-path", "bilstm_crf").word_dropout is None  # unset: the preset may fill it
    args = parsed_ner("--model-name-or-path", "bilstm_crf")
    resolve_training_defaults(args)
    assert args.word_dropout == 0.5 and args.best_checkpoint is False  # the NER preset's singleton replacement
    args = parsed_ner("--model-name-or-path", "bilstm_crf", "--task", "pos")
    resolve_training_defaults(args)
    assert args.word_dropout == 0.0  # the POS preset: none (measured without it)
    defaults = MODEL_DEFAULTS["bilstm_crf"]
    ner = {**defaults.training_defaults["ner"], "word_dropout": 0.5, "best_checkpoint": True}
    monkeypatch.setitem(MODEL_DEFAULTS, "bilstm_crf", dataclasses.replace(
        defaults, training_defaults={**defaults.training_defaults, "ner": ner}))
    args = parsed_ner("--model-name-or-path", "bilstm_crf")
    taken = resolve_training_defaults(args)
    assert (args.word_dropout, args.best_checkpoint) == (0.5, True) and taken["word_dropout"] == 0.5
    args = parsed_ner("--model-name-or-path", "bilstm_crf", "--word-dropout", "0", "--no-best-checkpoint")
    resolve_training_defaults(args)
    assert (args.word_dropout, args.best_checkpoint) == (0.0, False)
    args = parsed_ner("--model-name-or-path", "some/checkpoint")  # a checkpoint: no preset
    resolve_training_defaults(args)
    assert (args.word_dropout, args.best_checkpoint) == (0.0, False)


def test_only_finetune_ner_has_word_dropout_and_a_preset_for_another_command_is_an_error(monkeypatch) -> None:
    parser = argparse.ArgumentParser()
    finetune_glue.add_arguments(parser)
    args = parser.parse_args(["--model-name-or-path", "bilstm_crf", "--task", "sst2", "--data-dir", "x",
                              "--output-dir", "out"])
    resolve_training_defaults(args)
    assert not hasattr(args, "word_dropout") and args.best_checkpoint is False
    defaults = MODEL_DEFAULTS["bilstm_crf"]
    glue = {**defaults.training_defaults["glue"], "word_dropout": 0.5}
    monkeypatch.setitem(MODEL_DEFAULTS, "bilstm_crf", dataclasses.replace(
        defaults, training_defaults={**defaults.training_defaults, "glue": glue}))
    args = parser.parse_args(["--model-name-or-path", "bilstm_crf", "--task", "sst2", "--data-dir", "x",
                              "--output-dir", "out"])
    with pytest.raises(ValueError, match="the 'glue' preset of 'bilstm_crf' .* sets word_dropout, which this command"):
        resolve_training_defaults(args)
    with pytest.raises(SystemExit):
        pretrain_parser = argparse.ArgumentParser()
        pretrain.add_arguments(pretrain_parser)
        pretrain_parser.parse_args(["--output-dir", "out", "--best-checkpoint"])


def test_the_command_drops_words_while_training_and_never_while_evaluating(
    data_dir: Path, tmp_path: Path, monkeypatch,
) -> None:
    """p = 1: no training batch holds a singleton; every evaluation, during training and at the end, reads its own
    words, singletons included; characters are the words' own in both. Each epoch tells the examples which it is
    (new draws)."""
    seen: list[tuple[bool, torch.Tensor, torch.Tensor]] = []
    epochs: list[int] = []

    class Watched(WordDropoutExamples):
        def set_epoch(self, epoch: int) -> None:
            epochs.append(epoch)
            super().set_epoch(epoch)

    monkeypatch.setattr(finetuning, "WordDropoutExamples", Watched)
    original_load = finetuning.load_model

    def load_and_watch(*args, **kwargs):
        model = original_load(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(
                (module.training, kwargs["input_ids"].clone(), kwargs["char_ids"].clone())),
            with_kwargs=True)
        return model

    monkeypatch.setattr(finetuning, "load_model", load_and_watch)
    output = tmp_path / "run"
    assert call(finetune_ner.main, ner_args(data_dir, output, "bilstm_crf", "--epochs", "2", "--word-dropout", "1",
                                            "--save-steps", "100", "--eval_strategy", "epoch")) == 0
    tokenizer = bizoo.WordCharTokenizerFast.from_pretrained(output)
    train = read_conll(data_dir / "train.txt")
    singletons = torch.tensor([tokenizer.convert_tokens_to_ids(w) for w in expected_singletons(train)])
    assert len(singletons) == 32
    training = [(ids, chars) for is_training, ids, chars in seen if is_training]
    evaluating = [(ids, chars) for is_training, ids, chars in seen if not is_training]
    assert len(training) == 4 and evaluating
    assert set(epochs) == {0, 1} and epochs == sorted(epochs)  # told by our callback and by accelerate's loader
    unk = tokenizer.unk_token_id
    for ids, chars in training:
        assert not torch.isin(ids, singletons).any() and (ids == unk).sum() == 16  # 8 sentences x 2 singletons
        assert (chars[ids == unk] != 0).any(dim=-1).all()  # the replaced words' characters
    assert len(evaluating) == 3  # after each epoch (--eval_strategy epoch) and the final evaluation
    for ids, _ in evaluating:  # 8 sentences, each with one training singleton twice
        assert torch.isin(ids, singletons).sum() == 16 and not (ids == unk).any()
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert results["word_dropout"] == 1.0 and results["best_checkpoint"] is False


# ---------------------------------------------------------------------------------------------- best checkpoint

FLAGS = ["--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end",
         "--metric_for_best_model", "f1"]
BEST_FIELDS = ("eval_strategy", "save_strategy", "load_best_model_at_end", "metric_for_best_model",
               "greater_is_better")


def arguments_of(*argv: str) -> dict:
    args = parsed_ner("--model-name-or-path", "bilstm_crf", *argv)
    check_training_arguments(args, metrics=("f1", "precision", "recall"))  # the NER task's
    values = training_values(args, "out")
    from transformers import TrainingArguments

    made = TrainingArguments(**values)
    return {name: getattr(made, name) for name in BEST_FIELDS}


def test_best_checkpoint_sets_what_transformers_flags_set() -> None:
    """--best-checkpoint is the four flags with the command's main metric (f1, higher is better); a field given on
    the command line wins; off, evaluation stays off."""
    flags = arguments_of(*FLAGS)
    assert flags == dict(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                         metric_for_best_model="f1", greater_is_better=True)
    assert arguments_of("--best-checkpoint") == flags
    assert arguments_of("--best-checkpoint", "--metric_for_best_model", "precision")["metric_for_best_model"] \
        == "precision"
    off = arguments_of()
    assert off["eval_strategy"] == "no" and not off["load_best_model_at_end"]


def test_best_checkpoint_of_finetune_glue_selects_by_the_task_metric() -> None:
    parser = argparse.ArgumentParser()
    finetune_glue.add_arguments(parser)
    args = parser.parse_args(["--model-name-or-path", "bilstm_crf", "--task", "cola", "--data-dir", "x",
                              "--output-dir", "out", "--best-checkpoint"])
    check_training_arguments(args)
    from bizoo.scripts.lib.training import check_best_model_metric

    check_best_model_metric(args, ("matthews_correlation",))  # what finetune-glue does once it knows the task
    assert training_values(args, "out")["metric_for_best_model"] == "matthews_correlation"


@pytest.mark.parametrize("how", ["preset", "flags"])
def test_the_best_epoch_is_the_model_saved(data_dir: Path, tmp_path: Path, monkeypatch, how: str) -> None:
    """Three epochs of 2 steps, the evaluation's f1 made to fall after the first (0.9, 0.5, 0.2): the final model is
    checkpoint-2's weights, not the last epoch's (checkpoint-6), and the final evaluation scores those weights."""
    forced = [0.9, 0.5, 0.2]  # the evaluations during training; the final one (trainer.predict) is left as it is
    calls = []
    original_train = finetune_ner.train

    def train_with_falling_scores(args, prepared, train_dataset, collator, eval_dataset=None, compute_metrics=None,
                                  **options):
        def falling(prediction):
            calls.append(prediction)
            scores = compute_metrics(prediction)
            return {**scores, "f1": forced[len(calls) - 1]} if len(calls) <= len(forced) else scores

        return original_train(args, prepared, train_dataset, collator, eval_dataset=eval_dataset,
                              compute_metrics=falling, **options)

    monkeypatch.setattr(finetune_ner, "train", train_with_falling_scores)
    extra = ["--epochs", "3"]
    if how == "preset":
        defaults = MODEL_DEFAULTS["bilstm_crf"]
        ner = {**defaults.training_defaults["ner"], "best_checkpoint": True}
        monkeypatch.setitem(MODEL_DEFAULTS, "bilstm_crf", dataclasses.replace(
            defaults, training_defaults={**defaults.training_defaults, "ner": ner}))
    else:
        extra += FLAGS
    output = tmp_path / "run"
    assert call(finetune_ner.main, ner_args(data_dir, output, "bilstm_crf", *extra)) == 0
    state = json.loads((output / "checkpoint-6" / "trainer_state.json").read_text(encoding="utf-8"))
    scores = [(entry["epoch"], entry["eval_f1"]) for entry in state["log_history"] if "eval_f1" in entry]
    assert scores == [(1, 0.9), (2, 0.5), (3, 0.2)]
    assert Path(state["best_model_checkpoint"]).name == "checkpoint-2" and state["best_metric"] == 0.9
    final = load_file(output / "model.safetensors")
    best = load_file(output / "checkpoint-2" / "model.safetensors")
    last = load_file(output / "checkpoint-6" / "model.safetensors")
    assert final.keys() == best.keys() == last.keys()
    assert all(torch.equal(final[name], best[name]) for name in final)
    assert not all(torch.equal(final[name], last[name]) for name in final)
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert results["steps"] == 6 and results["best_checkpoint"] is (how == "preset")


def test_persistent_workers_draw_each_epochs_word_dropout() -> None:
    """--dataloader_persistent_workers with --word-dropout: the workers keep the dataset copy they started with, and
    still draw each epoch's replacements (the epoch set in the main process reaches them), as the dataset itself
    gives them in the main process; the epochs' draws differ."""
    from torch.utils.data import DataLoader

    examples = [{"input_ids": [2, 10 + i, 30 + i, 3]} for i in range(8)]  # every word a singleton
    data = WordDropoutExamples(examples, unk_id=1, special_ids=[0, 2, 3], probability=0.5, seed=7)
    loader = DataLoader(data, batch_size=4, num_workers=1, persistent_workers=True, collate_fn=list)
    seen = []
    for epoch in range(3):
        data.set_epoch(epoch)
        drawn = [example["input_ids"] for batch in loader for example in batch]
        assert drawn == [data[i]["input_ids"] for i in range(len(data))], epoch
        seen.append(drawn)
    assert seen[0] != seen[1] != seen[2]
