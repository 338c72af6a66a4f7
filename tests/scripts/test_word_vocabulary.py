"""finetune-ner --word-vocabulary train: a checkpoint's word table replaced by one over the task's training words,
the vectors of the words the checkpoint knew kept (ELMo's tagger with word features: Peters et al.'s word vectors
over the task's words); refused where the character ids would change or nothing reads word vectors."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

import bizoo
from bizoo.scripts import finetune_ner
from tests.tiny_configs import TINY_CONFIGS
from tests.scripts.conftest import call as exit_code

TAGGER = ["--model-config", "tagger_word_features=true", "tagger_char_cnn_filters=4"]


def call(argv) -> int:
    return exit_code(finetune_ner.main, argv)


def conll_words(conll_dir):
    return [line.split()[0] for line in (conll_dir / "train.txt").read_text().splitlines()
            if line.strip() and not line.startswith("-DOCSTART-")]


@pytest.fixture
def elmo_bilm(tmp_path, conll_dir):
    """A tiny ELMo biLM whose vocabulary holds every other training word of ``conll_dir`` and words of its own."""
    words = sorted(set(conll_words(conll_dir)))
    known = words[::2] + ["Elsinore", "Dunsinane"]
    tokenizer = bizoo.WordCharTokenizerFast.from_words([known], char_scheme="bilm", add_sentence_boundaries=True)
    torch.manual_seed(0)
    config = bizoo.ElmoConfig(**TINY_CONFIGS["elmo"], vocab_size=len(tokenizer))
    bizoo.ElmoForBidirectionalLM(config).save_pretrained(tmp_path / "bilm")
    tokenizer.save_pretrained(tmp_path / "bilm")
    return tmp_path / "bilm", tokenizer


def test_the_word_table_covers_the_training_words_and_keeps_the_checkpoints_vectors(tmp_path, conll_dir, elmo_bilm):
    folder, old = elmo_bilm
    out = tmp_path / "tagger"
    argv = ["--model-name-or-path", folder, "--data-dir", conll_dir, "--output-dir", out, *TAGGER,
            "--word-vocabulary", "train", "--max-steps", "1", "--learning-rate", "1e-12", "--batch-size", "4"]
    assert call(argv) == 0
    new = AutoTokenizer.from_pretrained(out)
    train_words = set(conll_words(conll_dir))
    assert all(new.convert_tokens_to_ids(w) != new.unk_token_id for w in train_words)  # every training word
    assert new.char_scheme == "bilm" and new.add_sentence_boundaries  # the checkpoint's character ids
    before = load_file(folder / "model.safetensors")["elmo.word_embeddings.weight"]  # (V_old, E)
    after = load_file(out / "model.safetensors")["elmo.word_embeddings.weight"]  # (V_new, E)
    assert after.shape[0] == len(new) and json.loads((out / "config.json").read_text())["vocab_size"] == len(new)
    old_vocab = old.get_vocab()
    shared = [w for w in train_words if w in old_vocab]
    fresh = [w for w in train_words if w not in old_vocab]
    assert shared and fresh
    for word in shared:  # a learning rate of 1e-12: the rows as loaded
        torch.testing.assert_close(after[new.convert_tokens_to_ids(word)], before[old_vocab[word]], rtol=0, atol=1e-9)
    for word in fresh:  # a new row, not some other word's
        row = after[new.convert_tokens_to_ids(word)]
        assert not any(torch.equal(row, before[i]) for i in range(before.shape[0]))


@pytest.mark.parametrize("case, message", [
    ("scratch", "a model trained from scratch ('bilstm_crf') already has that one"),
    ("no-word-features", "reads no word vectors (ELMo's tagger: --model-config tagger_word_features=true)"),
    ("vocab-characters", "character ids come from its own character vocabulary (char_scheme 'vocab')"),
])
def test_refused_where_it_cannot_work_before_anything_is_written(tmp_path, conll_dir, elmo_bilm, capsys, case,
                                                                 message):
    folder, _ = elmo_bilm
    model, extra = str(folder), TAGGER
    if case == "scratch":
        model, extra = "bilstm_crf", []
    elif case == "no-word-features":
        extra = []
    elif case == "vocab-characters":  # a word+character checkpoint whose character ids are its own vocabulary's
        tokenizer = bizoo.WordCharTokenizerFast.from_words([conll_words(conll_dir)])
        config = bizoo.BiLstmCrfConfig(**TINY_CONFIGS["bilstm_crf"], vocab_size=len(tokenizer),
                                       char_vocab_size=tokenizer.char_vocab_size)
        bizoo.BiLstmCrfForMaskedLM(config).save_pretrained(tmp_path / "bilstm")
        tokenizer.save_pretrained(tmp_path / "bilstm")
        model, extra = str(tmp_path / "bilstm"), []
    out = tmp_path / "out"
    argv = ["--model-name-or-path", model, "--data-dir", conll_dir, "--output-dir", out, *extra,
            "--word-vocabulary", "train", "--max-steps", "1"]
    assert call(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
