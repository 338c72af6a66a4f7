"""Tests for ``bizoo finetune-glue`` and ``bizoo finetune-ner``: end-to-end runs on small synthetic files in the
layout of the real ones (from scratch and from a checkpoint folder, resumed, overwritten), the saved model and
tokenizer reload with the Auto classes, the results files hold the official metric names, and every bad input
fails with exit code 2 and a clear message before any folder is created.

One slow test fine-tunes a few steps on the real SST-2 files (``BIZOO_TEST_DATA``) when present.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

import bizoo
from bizoo.scripts import finetune_glue, finetune_ner
from bizoo.scripts.lib.data import GLUE_TASKS, conll_label_list, load_glue_split, read_conll
from bizoo.scripts.lib.finetuning import format_table
from bizoo.scripts.lib.models import parse_model_config
from bizoo.scripts.finetune_ner import decoded_ids, encode_words, word_predictions, words_without_tokens
from tests.tiny_configs import TINY_CONFIGS
from tests.conftest import external_path
from tests.scripts.conftest import call


TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
FAST = ["--max-steps", "3", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "2", "--max-length", "32"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, synthetic) -> Path:
    """A tiny pretrained-style checkpoint: LionForMaskedLM (max_position_embeddings=64) and its own tokenizer."""
    from bizoo.scripts.lib.wordpiece import train_wordpiece_tokenizer

    rng = random.Random(2)
    words = synthetic.NAMES + synthetic.PLACES + ["castle", "sword", "crown"]
    texts = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(200)]
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=100, min_frequency=1, model_max_length=64)
    spec = bizoo.get_spec("lion")
    config = spec.config_class(**TINY_CONFIGS["lion"], vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "lion-mlm"
    bizoo.LionForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def glue_args(glue_dir: Path, task: str, output: Path, *extra: str) -> list:
    return ["--model-name-or-path", "lion", "--task", task, "--data-dir", glue_dir, "--output-dir", output,
            *TINY, *FAST, *extra]


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def leftovers(output: Path) -> list[str]:
    """The output folder and any staging sibling of it."""
    found = output.parent.iterdir()
    return sorted(p.name for p in found if p.name == output.name or p.name.startswith(f".{output.name}."))


# ---------------------------------------------------------------------------------------------- GLUE, end to end


@pytest.mark.parametrize("task", ["SST-2", "RTE", "STS-B", "MNLI"])
def test_glue_from_scratch(glue_dir: Path, tmp_path: Path, task: str, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "run"
    assert call(finetune_glue.main, glue_args(glue_dir, task.lower(), output)) == 0
    printed = capsys.readouterr().out
    spec = GLUE_TASKS[task]
    for name in spec.metrics:
        assert name in printed  # the metrics table
    assert "wall time: training" in printed

    model = AutoModelForSequenceClassification.from_pretrained(output)
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert isinstance(model, bizoo.LionForSequenceClassification)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert model.config.num_labels == spec.num_labels
    if spec.is_regression:
        assert model.config.problem_type == "regression"
    else:
        assert model.config.id2label == dict(enumerate(spec.label_names))
    batch = tokenizer("good movie", "a plot" if spec.is_pair else None, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (1, spec.num_labels)

    results = read_json(output / "eval_results.json")
    assert results["task"] == task
    assert set(results["metrics"]) == set(spec.eval_splits)
    for split in spec.eval_splits:
        assert list(results["metrics"][split]) == list(spec.metrics)
    assert results["steps"] == 3 and results["from_scratch"] is True
    assert results["num_train_examples"] == (30 if task == "MNLI" else 40)
    assert results["train_seconds"] <= results["total_seconds"]

    records = read_json(output / "bizoo_results.json")
    assert [r["dataset"]["split"] for r in records] == [s.replace("dev", "validation") for s in spec.eval_splits]
    for record in records:
        assert record["task"]["type"] == "text-classification"
        assert record["dataset"]["name"] == f"GLUE {task}"
        assert record["dataset"]["type"] == "nyu-mll/glue" and record["dataset"]["config"] == spec.hub_config
        assert list(record["metrics"]) == list(spec.metrics)
    assert any("loss" in entry for entry in read_json(output / "training_log.json"))
    assert (output / "checkpoint-2").is_dir()
    assert leftovers(output) == ["run"]  # no staging folder left beside it


def test_glue_resume_continues_from_last_checkpoint(glue_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    args = glue_args(glue_dir, "sst2", output)
    assert call(finetune_glue.main, [*args, "--max-steps", "2"]) == 0
    first_vocab = AutoTokenizer.from_pretrained(output).get_vocab()
    assert call(finetune_glue.main, [*args, "--max-steps", "4", "--resume"]) == 0
    assert read_json(output / "eval_results.json")["steps"] == 4
    assert read_json(output / "checkpoint-4" / "trainer_state.json")["global_step"] == 4
    assert AutoTokenizer.from_pretrained(output).get_vocab() == first_vocab  # the run's tokenizer, not a new one
    assert len(read_json(output / "bizoo_results.json")) == 2  # one record per evaluation


def test_glue_resume_refuses_a_different_model(glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "run"
    assert call(finetune_glue.main, glue_args(glue_dir, "sst2", output, "--max-steps", "2")) == 0
    before = sorted(p.name for p in output.iterdir())
    capsys.readouterr()
    args = glue_args(glue_dir, "sst2", output, "--max-steps", "4", "--resume", "--model-config", "hidden_size=64")
    assert call(finetune_glue.main, args) == 2
    assert "was trained with hidden_size=32" in capsys.readouterr().err
    assert sorted(p.name for p in output.iterdir()) == before


def test_glue_overwrite_replaces_the_previous_run_and_nothing_else(glue_dir: Path, tmp_path: Path) -> None:
    """--overwrite (run_glue's --overwrite_output_dir) removes what a previous run wrote, so its checkpoints and
    results never mix with the new run's, and keeps the folder's other files."""
    output = tmp_path / "run"
    (output / "checkpoint-9").mkdir(parents=True)  # a longer previous run: --resume would pick it
    (output / "bizoo_results.json").write_text('[{"old": 1}]')
    (output / "notes.txt").write_text("mine")
    (output / "data").mkdir()
    assert call(finetune_glue.main, glue_args(glue_dir, "sst2", output, "--overwrite_output_dir")) == 0
    assert not (output / "checkpoint-9").exists()
    assert "old" not in (output / "bizoo_results.json").read_text()
    assert (output / "notes.txt").read_text() == "mine" and (output / "data").is_dir()
    assert (output / "model.safetensors").is_file()


def test_glue_with_dataloader_drop_last_scores_every_example(glue_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    assert call(finetune_glue.main, glue_args(glue_dir, "sst2", output, "--dataloader_drop_last")) == 0
    assert read_json(output / "eval_results.json")["steps"] == 3


def test_glue_overwrite_refuses_to_delete_an_input_or_the_working_folder(
        glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "run"
    assert call(finetune_glue.main, glue_args(glue_dir, "sst2", output)) == 0
    before = sorted(p.name for p in output.iterdir())
    capsys.readouterr()
    # fine-tuning the previous run's checkpoint into the same folder would delete it
    args = ["--model-name-or-path", output / "checkpoint-2", "--task", "sst2", "--data-dir", glue_dir,
            "--output-dir", output, *FAST, "--overwrite"]
    assert call(finetune_glue.main, args) == 2
    assert "--overwrite would delete" in capsys.readouterr().err
    # the working folder: its README.md, config.json ... are not a run's
    monkeypatch.chdir(output)
    assert call(finetune_glue.main, glue_args(glue_dir, "sst2", Path("."), "--overwrite")) == 2
    assert "which is (or holds) the working folder" in capsys.readouterr().err
    assert sorted(p.name for p in output.iterdir()) == before


def test_glue_from_checkpoint_uses_its_tokenizer(glue_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    args = ["--model-name-or-path", checkpoint, "--task", "rte", "--data-dir", glue_dir, "--output-dir", output,
            *FAST, "--learning-rate", "1e-6", "--model-config", "classifier_dropout=0.0"]
    assert call(finetune_glue.main, args) == 0
    assert AutoTokenizer.from_pretrained(output).get_vocab() == AutoTokenizer.from_pretrained(checkpoint).get_vocab()
    model = AutoModelForSequenceClassification.from_pretrained(output)
    pretrained = bizoo.LionForMaskedLM.from_pretrained(checkpoint)
    assert model.config.num_hidden_layers == pretrained.config.num_hidden_layers == 2
    assert model.config.classifier_dropout == 0.0
    # The encoder starts from the checkpoint's weights (3 tiny steps move them very little).
    torch.testing.assert_close(
        model.lion.embeddings.word_embeddings.weight, pretrained.lion.embeddings.word_embeddings.weight,
        atol=1e-3, rtol=0,
    )
    assert read_json(output / "eval_results.json")["from_scratch"] is False


def test_glue_from_hub_reads_the_hub_splits(glue_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def fake_hub(task: str, split: str):
        asked.append((task, split))
        return load_glue_split(task, glue_dir, split)

    monkeypatch.setattr(finetune_glue, "load_glue_from_hub", fake_hub)
    output = tmp_path / "run"
    args = ["--model-name-or-path", "lion", "--task", "rte", "--from-hub", "--output-dir", output, *TINY, *FAST]
    assert call(finetune_glue.main, args) == 0
    assert asked == [("RTE", "train"), ("RTE", "dev")]
    assert read_json(output / "bizoo_results.json")[0]["dataset"]["config"] == "rte"


def test_glue_from_hub_unreachable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    def offline(task: str, split: str):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(finetune_glue, "load_glue_from_hub", offline)
    output = tmp_path / "run"
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--task", "rte", "--from-hub",
                                     "--output-dir", output]) == 2
    assert "cannot read GLUE RTE train from the Hub" in capsys.readouterr().err
    assert leftovers(output) == []


# ---------------------------------------------------------------------------------------------- NER, end to end


def test_ner_from_scratch(conll_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "run"
    args = ["--model-name-or-path", "lion", "--data-dir", conll_dir, "--output-dir", output, *TINY, *FAST,
            "--variant", "d"]
    assert call(finetune_ner.main, args) == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "PER" in printed and "LOC" in printed

    labels = conll_label_list(read_conll(conll_dir / "train.txt"))
    assert labels == ["O", "B-LOC", "B-PER", "I-PER"]
    model = AutoModelForTokenClassification.from_pretrained(output)
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert isinstance(model, bizoo.LionForTokenClassification)
    assert model.config.lion_variant == "d"
    assert model.config.id2label == dict(enumerate(labels))
    batch = tokenizer(["Anna", "went", "to", "Oslo"], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape[-1] == len(labels)

    results = read_json(output / "eval_results.json")
    assert {"f1", "precision", "recall", "per_type"} <= set(results["metrics"])
    assert set(results["metrics"]["per_type"]) <= {"PER", "LOC"}
    assert results["steps"] == 3 and results["num_eval_examples"] == 12
    records = read_json(output / "bizoo_results.json")
    assert len(records) == 1
    assert records[0]["task"] == {"type": "token-classification", "name": "Named entity recognition"}
    assert records[0]["dataset"]["split"] == "validation"
    assert set(records[0]["metrics"]) == {"f1", "precision", "recall",  # strict, and seqeval's default mode
                                          "conlleval_f1", "conlleval_precision", "conlleval_recall"}


def test_ner_bilstm_crf_from_scratch_with_word_vectors(conll_dir: Path, tmp_path: Path, synthetic,
                                                       capsys: pytest.CaptureFixture) -> None:
    """bilstm_crf from scratch: a word+character tokenizer built from the training words, the model's training
    preset where no option is given, pretrained vectors in the word embeddings, CRF decoding in the evaluation."""
    vectors = tmp_path / "vectors.txt"
    lines = [f"{word.lower()} " + " ".join(f"{0.01 * (i + j):.2f}" for j in range(16)) for i, word in
             enumerate(synthetic.NAMES + synthetic.PLACES)]
    vectors.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "run"
    args = ["--model-name-or-path", "bilstm_crf", "--data-dir", conll_dir, "--output-dir", output,
            "--model-config", "word_embedding_size=16", "hidden_size=8", "--word-vectors", vectors,
            "--max-steps", "3", "--batch-size", "4", "--save-steps", "2", "--logging-steps", "1"]
    assert call(finetune_ner.main, args) == 0
    printed = capsys.readouterr().out
    assert "word+character tokenizer" in printed and "overall" in printed
    assert "9 of" in printed  # the vectors report: the 9 names and places found (lowercased)
    model = AutoModelForTokenClassification.from_pretrained(output)
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert isinstance(model, bizoo.BiLstmCrfForTokenClassification) and model.config.use_crf
    assert isinstance(tokenizer, bizoo.WordCharTokenizerFast)
    assert model.config.char_vocab_size == tokenizer.char_vocab_size
    row = tokenizer.convert_tokens_to_ids("anna")
    expected = torch.tensor([0.01 * j for j in range(16)])
    # the pretrained row, moved by at most 3 Adam steps of the preset's learning rate (2e-3)
    torch.testing.assert_close(model.get_input_embeddings().weight[row], expected, rtol=0, atol=1e-2)
    results = read_json(output / "eval_results.json")
    assert results["steps"] == 3 and {"f1", "precision", "recall"} <= set(results["metrics"])


def test_glue_pairs_with_a_word_char_model_mark_where_each_text_ends(glue_dir: Path, tmp_path: Path, capsys) -> None:
    """The BiLSTM-CRF has no token types, and its tokenizer put nothing between the texts of a pair: "the king" +
    "and the queen" read as "the king and" + "the queen". Built here for a pair task, its tokenizer wraps each text
    in <S> ... </S>; for a single-text task it stays as the model type's preset says; a ready tokenizer without the
    boundaries is warned about."""
    output = tmp_path / "rte"
    args = ["--model-name-or-path", "bilstm_crf", "--task", "rte", "--data-dir", glue_dir, "--output-dir", output,
            "--model-config", "word_embedding_size=8", "hidden_size=8", *FAST]
    assert call(finetune_glue.main, args) == 0
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert tokenizer.add_sentence_boundaries
    assert tokenizer("the king", "and the queen")["input_ids"] != tokenizer("the king and", "the queen")["input_ids"]
    single = tmp_path / "sst2"
    args[3], args[7] = "sst2", single
    assert call(finetune_glue.main, args) == 0
    assert not AutoTokenizer.from_pretrained(single).add_sentence_boundaries
    capsys.readouterr()
    args[3], args[7], args[1] = "rte", tmp_path / "rte-from-sst2", single
    assert call(finetune_glue.main, [*args[:8], *FAST]) == 0
    assert "puts nothing between them (add_sentence_boundaries=False)" in capsys.readouterr().err


def test_a_bilstm_crf_takes_its_char_scheme_from_the_tokenizer() -> None:
    """A BiLSTM-CRF built for a "bilm" tokenizer (ELMo's character ids: 261 pads inside a word) must know it, or its
    character encoders read the padding as characters; ELMo's config has no such field (its ids are always bilm)."""
    from bizoo.scripts.lib.models import RESERVED_FIELDS, tokenizer_config_fields

    bilm = bizoo.WordCharTokenizerFast.from_words([["the", "king"]], char_scheme="bilm")
    fields = tokenizer_config_fields(bizoo.get_spec("bilstm_crf"), bilm)
    assert fields["char_scheme"] == "bilm"
    assert bizoo.BiLstmCrfConfig(**fields).pad_char_id == 261
    assert "char_scheme" not in tokenizer_config_fields(bizoo.get_spec("elmo"), bilm)
    assert "char_scheme" in RESERVED_FIELDS
    # the standalone tokenizer module spells the schemes in its own terms: they agree with the configuration's
    from bizoo.configuration.common import BILM_PAD_CHAR_ID, CHAR_SCHEMES
    from bizoo.modeling import tokenization_wordchar

    assert tokenization_wordchar.CHAR_SCHEMES == CHAR_SCHEMES and tokenization_wordchar.BILM_PAD + 1 == BILM_PAD_CHAR_ID


def test_training_presets_fill_only_the_options_not_given() -> None:
    import argparse

    from bizoo.scripts.lib.finetuning import add_word_dropout_argument
    from bizoo.scripts.lib.model_defaults import MODEL_DEFAULTS
    from bizoo.scripts.lib.training import add_training_arguments, resolve_training_defaults

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-name-or-path")
    add_training_arguments(parser, max_steps=-1, learning_rate=1e-4, batch_size=32, max_length=128, task="ner")
    add_word_dropout_argument(parser)  # the NER preset sets it (finetune-ner's option)
    preset = MODEL_DEFAULTS["bilstm_crf"].training_defaults["ner"]
    args = parser.parse_args(["--output-dir", "x", "--model-name-or-path", "bilstm_crf", "--batch-size", "7"])
    taken = resolve_training_defaults(args)
    assert args.batch_size == 7 and args.learning_rate == preset["learning_rate"] and args.epochs == preset["epochs"]
    assert "batch_size" not in taken and taken["group_by_length"] is True
    args = parser.parse_args(["--output-dir", "x", "--model-name-or-path", "lion"])
    assert resolve_training_defaults(args) == {} and args.learning_rate == 1e-4 and args.group_by_length is False
    assert "model's own preset" in parser.format_help()


def test_ner_labels_on_first_sub_token_and_truncated_words_are_o(tokenizer) -> None:
    # With the conftest tokenizer "kingdom" is king ##d ##o ##m, and "moonstar" no longer fits in 8 tokens.
    sentences = [(["kingdom", "the", "queen", "moonstar"], ["B-LOC", "O", "B-PER", "B-ORG"]), (["night"], ["O"])]
    label2id = {"O": 0, "B-LOC": 1, "B-PER": 2, "B-ORG": 3}
    features, first = encode_words(tokenizer, sentences, label2id, max_length=8)
    assert tokenizer.convert_ids_to_tokens(features[0]["input_ids"]) == [
        "[CLS]", "king", "##d", "##o", "##m", "the", "queen", "[SEP]"]
    assert features[0]["labels"] == [-100, 1, -100, -100, -100, 0, 2, -100]
    assert first == [[1, 5, 6, None], [1]]
    assert features[1]["labels"] == [-100, 0, -100]

    logits = torch.zeros(2, 8, 4)
    logits[:, :, 3] = 1.0  # every position predicts B-ORG ...
    logits[0, 5, 0] = 2.0  # ... but "the"
    predicted = word_predictions(decoded_ids(logits.numpy()), first, {v: k for k, v in label2id.items()})
    assert predicted == [["B-ORG", "O", "B-ORG", "O"], ["B-ORG"]]  # the truncated word counts as "O"


def test_label_all_tokens_labels_later_sub_tokens_as_run_ner_does(tokenizer) -> None:
    """--label-all-tokens: "kingdom" (king ##d ##o ##m) tagged B-LOC trains on B-LOC, I-LOC, I-LOC, I-LOC; a B- tag
    without an I- in the labels (B-ORG) and every other tag continue as themselves; special tokens, a test split
    without tags and the first sub-token positions (what is scored) are as without the flag."""
    sentences = [(["kingdom", "the", "kingdom"], ["B-LOC", "O", "B-ORG"]), (["kingdom"], ["I-LOC"])]
    label2id = {"O": 0, "B-LOC": 1, "I-LOC": 2, "B-ORG": 3}
    assert finetune_ner.continuation_ids(label2id) == {0: 0, 1: 2, 2: 2, 3: 3}
    plain, first = encode_words(tokenizer, sentences, label2id, max_length=32)
    every, first_all = encode_words(tokenizer, sentences, label2id, max_length=32, label_all_tokens=True)
    assert tokenizer.convert_ids_to_tokens(every[0]["input_ids"]) == [
        "[CLS]", "king", "##d", "##o", "##m", "the", "king", "##d", "##o", "##m", "[SEP]"]
    assert plain[0]["labels"] == [-100, 1, -100, -100, -100, 0, 3, -100, -100, -100, -100]
    assert every[0]["labels"] == [-100, 1, 2, 2, 2, 0, 3, 3, 3, 3, -100]
    assert every[1]["labels"] == [-100, 2, 2, 2, 2, -100]
    assert first_all == first == [[1, 5, 6], [1]]
    untagged, first_test = encode_words(tokenizer, [(["kingdom", "the"], None)], label2id, 32, label_all_tokens=True)
    assert "labels" not in untagged[0] and first_test == [[1, 5]]


def test_label_all_tokens_reaches_the_training_features(conll_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """run_ner.py's spelling on the command line: the training and evaluation features carry the later sub-tokens'
    labels (none of them -100 between a word's first sub-token and the next word's)."""
    seen = {}

    def stop(args, prepared, train_dataset, collator, eval_dataset=None, **options):
        seen["train"], seen["eval"], seen["tokenizer"] = train_dataset, eval_dataset, prepared.tokenizer
        raise SystemExit(0)

    monkeypatch.setattr(finetune_ner, "train", stop)
    base = ["--model-name-or-path", "lion", "--data-dir", conll_dir, *TINY, *FAST, "--vocab-size", "100"]
    for flag, labelled in (([], False), (["--label_all_tokens"], True)):
        with pytest.raises(SystemExit):
            finetune_ner.main([*map(str, base), "--output-dir", str(tmp_path / f"run{labelled}"), *flag])
        for name in ("train", "eval"):
            pieces = [label for feature in seen[name] for token, label in zip(
                seen["tokenizer"].convert_ids_to_tokens(feature["input_ids"]), feature["labels"]
            ) if token.startswith("##")]
            assert pieces, name  # the small vocabulary splits words
            assert all(label != -100 for label in pieces) if labelled else all(label == -100 for label in pieces)


def test_words_without_a_token_are_told_apart_from_words_cut_off(tokenizer) -> None:
    """A word of characters the tokenizer removes (a no-break space, a zero-width space) has no first sub-token, as
    a word cut off by the maximum length has not: the report named every such word "cut off by --max-length"."""
    sentences = [(["the", "\u00a0", "queen", "\u200b", "kingdom", "moonstar"], ["O"] * 6), (["night"], ["O"])]
    _, first = encode_words(tokenizer, sentences, {"O": 0}, max_length=8)
    assert first == [[1, None, 2, None, 3, None], [1]]  # [CLS] the queen king ##d ##o ##m [SEP]: moonstar cut
    assert words_without_tokens(tokenizer, sentences, first) == 2
    assert words_without_tokens(tokenizer, sentences[1:], first[1:]) == 0
    line = finetune_ner._unplaced_report(1, 2, 8, "scored as 'O'", 7)
    assert line == ("1 of 7 words were cut off by --max-length 8 and 2 words produced no token (only characters the "
                    "tokenizer removes, such as no-break or zero-width spaces): scored as 'O'")
    assert finetune_ner._unplaced_report(0, 2, 8, "x", 7).startswith("2 of 7 words produced no token")


# ---------------------------------------------------------------------------------------------- bad input


def _bad_glue_cases(glue_dir: Path, checkpoint: Path, big_tokenizer: Path, empty: Path) -> dict[str, tuple[list, str]]:
    base = ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir, *FAST]
    return {
        "unknown task": (["--model-name-or-path", "lion", "--task", "sst3", "--data-dir", glue_dir],
                         "unknown GLUE task 'sst3'"),
        "no data source": (["--model-name-or-path", "lion", "--task", "sst2"], "--data-dir"),
        "missing data folder": ([*base[:4], "--data-dir", glue_dir / "nowhere"], "does not exist"),
        "empty train file": ([*base[:4], "--data-dir", empty], "is empty"),
        "unknown model type": (["--model-name-or-path", "gpt9", *base[2:]], "neither a bizoo model type"),
        "unknown variant": (
            [*base, "--variant", "x"], "unknown --variant 'x' for model type 'lion'; allowed: lit, d, s"),
        "unknown config field": (
            [*base, "--model-config", "hiden_size=32"], "unknown --model-config field 'hiden_size'"),
        "reserved config field": ([*base, "--model-config", "vocab_size=10"], "cannot set 'vocab_size'"),
        "bad config value": ([*base, "--model-config", "hidden_size=30"], "hidden_size"),
        "malformed config": ([*base, "--model-config", "hidden_size"], "KEY=VALUE"),
        "variant of a checkpoint": (["--model-name-or-path", checkpoint, *base[2:], "--variant", "d"],
                                    "--variant applies only"),
        "longer than positions": (["--model-name-or-path", checkpoint, *base[2:], "--max-length", "128"],
                                  "max_position_embeddings=64"),
        "tokenizer larger than vocabulary": (
            ["--model-name-or-path", checkpoint, *base[2:], "--tokenizer", big_tokenizer], "the tokenizer has"),
        "resume without checkpoint": ([*base, "--resume"], "no checkpoint-N folder"),
        "bad step count": ([*base, "--max-steps", "0"], "--max-steps"),
    }


BAD_GLUE = list(_bad_glue_cases(Path(), Path(), Path(), Path()))


@pytest.fixture(scope="module")
def big_tokenizer(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.add_tokens([f"extra{i}" for i in range(50)])
    folder = tmp_path_factory.mktemp("big") / "tok"
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("case", BAD_GLUE)
def test_glue_bad_input_fails_before_anything_is_written(
    case: str, glue_dir: Path, checkpoint: Path, big_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    synthetic,
) -> None:
    empty = tmp_path / "glue-empty"
    synthetic.write_tsv(empty / "SST-2" / "dev.tsv", ["sentence", "label"], [["fine", "1"]])
    (empty / "SST-2" / "train.tsv").write_text("", encoding="utf-8")
    argv, message = _bad_glue_cases(glue_dir, checkpoint, big_tokenizer, empty)[case]
    output = tmp_path / "out"
    assert call(finetune_glue.main, [*argv, "--output-dir", output]) == 2
    err = capsys.readouterr().err
    assert "bizoo finetune-glue: error: " in err
    assert message in err
    assert leftovers(output) == []


def test_glue_refuses_a_non_empty_output_folder(glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("keep")
    assert call(finetune_glue.main, glue_args(glue_dir, "sst2", output)) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in output.iterdir()] == ["keep.txt"]


NER_BAD = ["no data dir", "empty train file", "unknown eval tag", "mixed schemes", "unknown model"]


@pytest.mark.parametrize("case", NER_BAD)
def test_ner_bad_input_fails_before_anything_is_written(
    case: str, conll_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.txt").write_text("Anna NNP B-NP B-PER\nwent VBD B-VP O\n", encoding="utf-8")
    (bad / "valid.txt").write_text("Oslo NNP B-NP B-LOC\n", encoding="utf-8")
    (bad / "empty.txt").write_text("\n-DOCSTART- -X- -X- O\n\n", encoding="utf-8")
    (bad / "mixed.txt").write_text("Anna NNP B-NP S-PER\nBert NNP B-NP L-PER\n", encoding="utf-8")
    base = ["--model-name-or-path", "lion", "--data-dir", bad, *TINY, *FAST]
    argv, message = {
        "no data dir": (["--model-name-or-path", "lion"], "--data-dir"),
        "empty train file": ([*base, "--train-file", "empty.txt"], "holds no sentences"),
        "unknown eval tag": (base, "'B-LOC' (first in sentence 1)"),
        "mixed schemes": ([*base, "--train-file", "mixed.txt", "--eval-file", "mixed.txt"], "mix IOBES"),
        "unknown model": (["--model-name-or-path", "nope", "--data-dir", conll_dir], "neither a bizoo model type"),
    }[case]
    output = tmp_path / "out"
    assert call(finetune_ner.main, [*argv, "--output-dir", output]) == 2
    err = capsys.readouterr().err
    assert "bizoo finetune-ner: error: " in err and message in err
    assert leftovers(output) == []


# ---------------------------------------------------------------------------------------------- helpers and help


def test_parse_model_config_reads_json_values() -> None:
    values = parse_model_config(["hidden_size=256", "hidden_act=gelu", "qkv_bias=false", "classifier_dropout=null",
                                 "hidden_dropout_prob=0.1", "tie_word_embeddings=True"])
    assert values == {"hidden_size": 256, "hidden_act": "gelu", "qkv_bias": False, "classifier_dropout": None,
                      "hidden_dropout_prob": 0.1, "tie_word_embeddings": True}


def test_format_table_aligns_columns() -> None:
    table = format_table(["split", "accuracy"], [["dev", 0.5], ["dev_mismatched", 0.25]])
    assert table.splitlines() == ["split           accuracy", "dev               0.5000", "dev_mismatched    0.2500"]


@pytest.mark.parametrize("module", [finetune_glue, finetune_ner])
def test_help_describes_the_command(module, capsys: pytest.CaptureFixture) -> None:
    assert call(module.main, ["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {module.PROG}")
    assert "example" in text and "--model-config" in text and "--resume" in text


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_sst2_real_data_few_steps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    glue = external_path("data", "glue", "SST-2", "train.tsv").parents[1]
    output = tmp_path / "sst2"
    args = ["--model-name-or-path", "lion", "--task", "SST-2", "--data-dir", glue, "--output-dir", output, *TINY,
            "--max-steps", "10", "--batch-size", "16", "--save-steps", "10", "--logging-steps", "5"]
    assert call(finetune_glue.main, args) == 0
    results = read_json(output / "eval_results.json")
    assert results["num_train_examples"] == 67_349 and results["num_eval_examples"] == {"dev": 872}
    assert 0.0 <= results["metrics"]["dev"]["accuracy"] <= 1.0
    assert "accuracy" in capsys.readouterr().out
