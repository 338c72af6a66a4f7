"""The training commands with ``--torch_compile``: a compiled run trains, evaluates and predicts as the eager run
does and saves the same clean weights, and data a compiled model could not check (its value checks are off while
traced) is refused before training.

``aot_eager`` traces the model as Inductor does (the value checks are off) without compiling C++, which keeps the
tests fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification

import bizoo
from bizoo.scripts import finetune_ner, pretrain
from tests.scripts.conftest import call, max_weight_difference, write_conll

COMPILED = ["--torch_compile", "True", "--torch_compile_backend", "aot_eager"]
#: A tiny BiLSTM-CRF without dropout (compiled dropout draws other random numbers than eager dropout).
CRF = ["--model-name-or-path", "bilstm_crf", "--word-dropout", "0", "--model-config", "word_embedding_size=16",
       "char_embedding_size=8", "char_cnn_filters=6", "hidden_size=12", "num_hidden_layers=1", "embedding_dropout=0",
       "hidden_dropout_prob=0"]
FAST = ["--max-steps", "3", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "10", "--max-length", "32",
        "--seed", "0"]


def losses(output: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((output / "training_log.json").read_text()) if "loss" in entry]


def metrics(output: Path) -> dict:
    results = json.loads((output / "eval_results.json").read_text())
    return {"eval": results["metrics"], "predict": results["predict_metrics"]}


def test_a_compiled_crf_tagger_trains_and_decodes_as_the_eager_one(conll_dir: Path, tmp_path: Path) -> None:
    """finetune-ner --do_predict, eager and compiled: the same losses, metrics and Viterbi predictions, and the
    compiled run's weights saved under the model's own names (no ``_orig_mod.``), which reload."""
    write_conll(conll_dir / "test.txt", [[("Anna", "B-PER"), ("went", "O"), ("to", "O"), ("Rome", "B-LOC")]] * 3)
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    base = ["--data-dir", conll_dir, *CRF, *FAST, "--do_train", "--do_predict"]
    assert call(finetune_ner.main, [*base, "--output-dir", eager]) == 0
    assert call(finetune_ner.main, [*base, *COMPILED, "--output-dir", compiled]) == 0

    assert losses(compiled) == pytest.approx(losses(eager), abs=1e-5)
    assert json.dumps(metrics(compiled), sort_keys=True) == json.dumps(metrics(eager), sort_keys=True)
    assert (compiled / "predictions.txt").read_text() == (eager / "predictions.txt").read_text()
    assert not [key for key in load_file(compiled / "model.safetensors") if "_orig_mod" in key]
    assert max_weight_difference(eager, compiled) < 1e-6
    model = AutoModelForTokenClassification.from_pretrained(compiled)
    assert type(model) is bizoo.BiLstmCrfForTokenClassification and model.config.use_crf


@pytest.fixture
def small_char_table(tmp_path: Path):
    """A BiLSTM-CRF checkpoint whose character table holds its own tokenizer's ids (a word table with room to
    spare), a tokenizer of other characters (more ids, fewer words than the table) and CoNLL files written in them."""
    from bizoo.scripts.lib.models import build_wordchar_tokenizer

    spec = bizoo.get_spec("bilstm_crf")
    own = build_wordchar_tokenizer(spec, [["the", "a", "the"]])
    other_words = ["Zürich", "Ægir", "Øst", "Ñu", "Québec", "Śląsk", "中", "日", "Ω", "Ж"]
    other = build_wordchar_tokenizer(spec, [other_words] * 3)
    assert other.char_vocab_size > own.char_vocab_size
    config = spec.config_class(vocab_size=len(own) + len(other), char_vocab_size=own.char_vocab_size,
                               pad_token_id=own.pad_token_id, unk_token_id=own.unk_token_id,
                               word_embedding_size=8, hidden_size=8, num_hidden_layers=1)
    checkpoint = tmp_path / "ckpt"
    bizoo.BiLstmCrfForMaskedLM(config).save_pretrained(checkpoint)
    own.save_pretrained(checkpoint)
    other.save_pretrained(tmp_path / "other")
    sentences = [[(word, "B-LOC" if i % 2 else "O") for i, word in enumerate(other_words[j:j + 4])] for j in range(6)]
    write_conll(tmp_path / "data" / "train.txt", sentences)
    write_conll(tmp_path / "data" / "valid.txt", sentences[:2])
    (tmp_path / "text.txt").write_text("\n".join(" ".join(other_words[j:j + 4]) for j in range(6)) + "\n")
    return checkpoint, tmp_path / "other", tmp_path


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_a_tokenizer_with_more_characters_than_the_checkpoint_is_refused(small_char_table, compiled, capsys) -> None:
    """--tokenizer with character ids outside the checkpoint's character table: exit code 2 before training, with a
    message that says so (compiled, training went on into a bare ``IndexError``; eager, bizoo's ``ValueError`` came
    from the first training step), in fine-tuning and continued pretraining."""
    checkpoint, tokenizer, root = small_char_table
    extra = COMPILED if compiled else []
    argv = ["--model-name-or-path", checkpoint, "--tokenizer", tokenizer, "--data-dir", root / "data",
            "--output-dir", root / "ner", "--max-steps", "1", "--batch-size", "2", *extra]
    assert call(finetune_ner.main, argv) == 2
    assert "character table has" in capsys.readouterr().err
    assert not (root / "ner").exists()

    argv = ["--model-name-or-path", checkpoint, "--tokenizer", tokenizer, "--text", root / "text.txt",
            "--eval-text", root / "text.txt", "--output-dir", root / "mlm", "--max-steps", "1", "--batch-size", "2",
            *extra]
    assert call(pretrain.main, argv) == 2
    assert "character table has" in capsys.readouterr().err
    assert not (root / "mlm").exists()
