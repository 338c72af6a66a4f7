"""``bizoo pretrain --model-name-or-path CKPT`` (run_mlm.py's --model_name_or_path): pretraining continues from a
checkpoint, with its model type, configuration, tokenizer and weights; a head the checkpoint lacks is new; options
that only a model trained from scratch takes are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer

from bizoo.scripts import pretrain
from tests.conftest import generated_sentences

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
FAST = ["--max-steps", "1", "--batch-size", "4", "--max-length", "32"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A LION masked LM pretrained here on one text, with a dropout the continued run must keep."""
    folder = tmp_path_factory.mktemp("continue")
    text = folder / "first.txt"
    text.write_text("\n".join(generated_sentences(80, seed=1)) + "\n")
    out = folder / "first"
    # trained away from its initialisation (no warm-up step at learning rate 0), which a new model would repeat
    assert pretrain.main(["--text", str(text), "--output-dir", str(out), "--vocab-size", "150", *FAST,
                          "--learning-rate", "1e-2", "--warmup-ratio", "0", *TINY, "hidden_dropout_prob=0.25"]) == 0
    return out


def domain_text(tmp_path: Path, sentences) -> Path:
    text = tmp_path / "domain.txt"
    text.write_text("\n".join(sentences(60, seed=9)) + "\n")
    return text


def test_pretraining_continues_from_the_checkpoint(checkpoint, tmp_path, sentences, capsys):
    out = tmp_path / "second"
    # a learning rate too small to move a weight: what is saved is what was loaded
    assert pretrain.main(["--model_name_or_path", str(checkpoint), "--text", str(domain_text(tmp_path, sentences)),
                          "--output-dir", str(out), *FAST, "--learning-rate", "1e-30", "--warmup-ratio", "0"]) == 0
    assert f"lion from {checkpoint} on custom text" in capsys.readouterr().out
    before, after = load_file(checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-12, rtol=0) for k in before)
    assert AutoConfig.from_pretrained(out).hidden_dropout_prob == 0.25 == AutoConfig.from_pretrained(
        checkpoint).hidden_dropout_prob
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(checkpoint).get_vocab()
    record = json.loads((out / "bizoo_results.json").read_text())[0]
    assert record["initialised_from"] == str(checkpoint)


def test_a_head_the_checkpoint_lacks_is_new_and_named(checkpoint, tmp_path, sentences, capsys):
    """A bare encoder (no masked-LM head): the encoder's weights are the checkpoint's, the head is initialised and
    the warning names it; --model-config changes a field of the checkpoint's configuration."""
    from transformers import AutoModel

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(checkpoint).save_pretrained(bare)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(bare)
    out = tmp_path / "second"
    assert pretrain.main(["--model-name-or-path", str(bare), "--text", str(domain_text(tmp_path, sentences)),
                          "--output-dir", str(out), *FAST, "--learning-rate", "1e-30", "--warmup-ratio", "0",
                          "--model-config", "hidden_dropout_prob=0.0"]) == 0
    assert "has no LionForMaskedLM weights" in capsys.readouterr().err
    encoder, after = load_file(bare / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.allclose(encoder[k], after[f"lion.{k}"], atol=1e-12, rtol=0) for k in encoder)
    assert AutoConfig.from_pretrained(out).hidden_dropout_prob == 0.0


@pytest.mark.parametrize("argv, message", [
    (["--variant", "d"], "--variant: options of a model trained from scratch"),
    (["--vocab-size", "300"], "--vocab-size: options of a model trained from scratch"),
    (["--model", "bigs"], "--model 'bigs', but the checkpoint"),
    (["--max-length", "64"], "--max-length 64 is beyond the checkpoint's max_position_embeddings (32)"),
    (["--model-config", "no_such_field=1"], "no_such_field"),
])
def test_options_of_a_new_model_are_refused(checkpoint, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert pretrain.main(["--model-name-or-path", str(checkpoint), "--output-dir", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_what_is_no_checkpoint_is_refused(tmp_path, capsys):
    assert pretrain.main(["--model-name-or-path", str(tmp_path), "--output-dir", str(tmp_path / "run")]) == 2
    assert f"--model-name-or-path {str(tmp_path)!r} is neither a bizoo model type" in capsys.readouterr().err
    assert pretrain.main(["--model-name-or-path", "bigs", "--output-dir", str(tmp_path / "run")]) == 2
    assert "'bigs' is a model type, not a checkpoint to continue: a new bigs model is --model bigs" in (
        capsys.readouterr().err)
