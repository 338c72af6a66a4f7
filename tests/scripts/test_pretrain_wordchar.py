"""`bizoo pretrain` for the models that read words and their characters: ELMo's biLM objective, masked-LM for ELMo
and BiLSTM-CRF, and the helpers that pack words and score the biLM."""

import json
import math

import numpy as np
import pytest
import torch

import bizoo
from bizoo.scripts import pretrain
from bizoo.scripts.lib.model_defaults import MODEL_DEFAULTS

TINY_MODEL_CONFIG = {
    "elmo": ["char_embedding_size=4", "char_filters=[[1,4],[2,8]]", "n_highway=1", "projection_size=8",
             "lstm_size=16", "num_hidden_layers=1"],
    "bilstm_crf": ["word_embedding_size=16", "char_embedding_size=8", "char_cnn_filters=6", "hidden_size=12",
                   "num_hidden_layers=1"],
}


@pytest.fixture
def corpus(tmp_path, sentences):
    """Two small training documents and one held-out document of generated sentences."""
    train = []
    for i in range(2):
        path = tmp_path / f"train{i}.txt"
        path.write_text("\n".join(sentences(40, seed=i)) + "\n")
        train.append(str(path))
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n".join(sentences(12, seed=7)) + "\n")
    return train, [str(held_out)]


def run_pretrain(corpus, out, model, *extra):
    train, held_out = corpus
    return pretrain.main(
        ["--model", model, "--text", *train, "--eval-text", *held_out, "--output-dir", str(out), "--batch-size", "4",
         "--max-length", "16", "--vocab-size", "120", "--logging-steps", "1", "--save-steps", "2",
         "--model-config", *TINY_MODEL_CONFIG[model], *extra]
    )


def test_pretrain_elmo_bilm_reports_perplexities_and_reloads(tmp_path, corpus, capsys):
    out = tmp_path / "elmo"
    assert run_pretrain(corpus, out, "elmo", "--max-steps", "2") == 0
    printed = capsys.readouterr().out
    assert "objective bilm" in printed
    for line in ("held-out forward perplexity", "held-out backward perplexity", "unigram baseline perplexity"):
        assert line in printed
    for name in ("config.json", "model.safetensors", "tokenizer.json", "loss_curve.png", "README.md"):
        assert (out / name).exists(), name
    assert "AutoModelForPreTraining" in (out / "README.md").read_text()

    results = json.loads((out / "bizoo_results.json").read_text())
    assert len(results) == 1
    metrics = results[0]["metrics"]
    assert set(metrics) == {"forward_perplexity", "backward_perplexity"}
    assert all(1 < value < 200 for value in metrics.values())
    # the generated text has ~45 words (+ <S> </S>): an untrained biLM and the unigram baseline sit near that
    assert 10 < results[0]["unigram_baseline_perplexity"] < 60
    flat = json.loads((out / "all_results.json").read_text())  # as run_mlm.py's, for the biLM
    assert {name: flat[f"eval_{name}"] for name in metrics} == metrics
    assert flat["eval_loss"] == results[0]["eval_loss"] and flat["eval_samples"] > 0 and "train_loss" in flat

    from transformers import AutoModelForPreTraining, AutoTokenizer

    model = AutoModelForPreTraining.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model) is bizoo.ElmoForBidirectionalLM and model.config.projection_size == 8
    assert isinstance(tokenizer, bizoo.WordCharTokenizerFast) and tokenizer.char_scheme == "bilm"
    assert model.config.vocab_size == len(tokenizer) and model.config.char_vocab_size == tokenizer.char_vocab_size
    batch = tokenizer(["the king ."], return_tensors="pt")
    assert batch["input_ids"][0, 0] == tokenizer.bos_token_id  # each block and text is a sentence in <S> ... </S>
    with torch.no_grad():
        output = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(output.forward_perplexity) and torch.isfinite(output.backward_perplexity)

    # --resume continues the biLM from the last checkpoint (step 2) up to the new --max-steps
    assert run_pretrain(corpus, out, "elmo", "--max-steps", "3", "--resume") == 0
    log = json.loads((out / "training_log.json").read_text())
    assert max(entry["step"] for entry in log) == 3


@pytest.mark.parametrize("model_type", ["elmo", "bilstm_crf"])
def test_pretrain_wordchar_models_with_masked_lm(tmp_path, corpus, capsys, model_type):
    out = tmp_path / model_type
    assert run_pretrain(corpus, out, model_type, "--objective", "mlm", "--max-steps", "1", "--save-steps", "5") == 0
    printed = capsys.readouterr().out
    assert "objective mlm" in printed and "held-out masked-token accuracy" in printed and "->" in printed
    results = json.loads((out / "bizoo_results.json").read_text())
    assert results[0]["task"]["type"] == "fill-mask" and 0 <= results[0]["metrics"]["accuracy"] <= 1

    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(out)
    assert type(model) is bizoo.get_spec(model_type).models["AutoModelForMaskedLM"]


def test_pretrain_config_presets():
    import argparse

    elmo = bizoo.get_spec("elmo")
    args = argparse.Namespace(model_config=[], max_length=128, variant=None)
    fields = pretrain.model_config_kwargs(args, elmo)
    assert fields == MODEL_DEFAULTS["elmo"].pretrain_config  # no Transformer-shaped SMALL_MODEL fields
    config = bizoo.ElmoConfig(vocab_size=8000, **fields)
    assert (config.lstm_size, config.projection_size, config.num_hidden_layers) == (512, 128, 2)
    bilstm = bizoo.get_spec("bilstm_crf")
    assert pretrain.model_config_kwargs(args, bilstm) == {"char_encoder": "cnn"}  # the config's defaults + variant
    lion = pretrain.model_config_kwargs(args, bizoo.get_spec("lion"))
    assert lion["hidden_size"] == pretrain.SMALL_MODEL["hidden_size"]
    assert pretrain.resolve_objective("auto", elmo) == "bilm" and pretrain.resolve_objective("auto", bilstm) == "mlm"


def test_word_blocks_stay_inside_documents_and_fit_max_length():
    tokenizer = bizoo.WordCharTokenizerFast.from_words(
        ["a b c d e f g h ,"], char_scheme="bilm", add_sentence_boundaries=True
    )
    documents = [["a b c", "d e"], ["f g h, i"]]
    blocks = pretrain.pack_words(tokenizer, documents, max_length=5, min_length=1)
    # 3 words + <S> </S> = 5 tokens; "h," splits as the tokenizer would split it
    assert blocks == [["a", "b", "c"], ["d", "e"], ["f", "g", "h"], [",", "i"]]
    examples = pretrain.encode_word_blocks(tokenizer, blocks)
    first = examples[0]["input_ids"]
    assert first[0] == tokenizer.bos_token_id and first[-1] == tokenizer.eos_token_id
    assert all(len(e["input_ids"]) <= 5 and e["char_ids"].shape == (len(e["input_ids"]), 50) for e in examples)
    unknown = examples[3]
    assert unknown["input_ids"][2] == tokenizer.unk_token_id  # "i" is not in the vocabulary ...
    assert unknown["char_ids"][2].tolist() == tokenizer.word_to_char_ids("i")  # ... but keeps its characters

    # held-out masks hide a masked word's characters behind [MASK]'s
    ids = [e["input_ids"] for e in examples]
    masked = pretrain.fixed_eval_masks(ids, tokenizer, 0.5, seed=0, char_ids=[e["char_ids"] for e in examples])
    mask_row = tokenizer.ids_to_char_ids([tokenizer.mask_token_id])[0]
    for example, original in zip(masked, examples):
        chosen = np.array(example["labels"]) != -100
        assert chosen.any() and not chosen[0] and not chosen[-1]  # never <S> or </S>
        assert (example["char_ids"][chosen] == mask_row).all()
        assert (example["char_ids"][~chosen] == original["char_ids"][~chosen]).all()

    # the biLM batches: labels are the word ids, -100 at padding
    batch = pretrain.BiLMCollator(tokenizer)(examples[:2])
    assert batch["char_ids"].shape == (2, 5, 50)
    assert batch["labels"][1].tolist() == examples[1]["input_ids"] + [-100]


def test_unigram_perplexity_is_add_one_smoothed_on_both_directions_targets():
    train = [[3, 5, 5, 4]]  # counts over a vocabulary of 6: 3:1, 4:1, 5:2, others 0 -> +1 each, total 10
    held_out = [[3, 5, 4]]  # forward targets 5, 4; backward targets 3, 5
    p = {3: 2 / 10, 4: 2 / 10, 5: 3 / 10}
    expected = math.exp(-(math.log(p[5]) + math.log(p[4]) + math.log(p[3]) + math.log(p[5])) / 4)
    assert pretrain.unigram_perplexity(train, held_out, vocab_size=6) == pytest.approx(expected)
