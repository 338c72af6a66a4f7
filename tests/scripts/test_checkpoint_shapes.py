"""--model-config on a checkpoint: fields that resize its weights are refused before anything is written (pretrain's
load raised transformers' RuntimeError with a traceback; the fine-tuning commands blamed the task's head), fields that
change no weight (dropout, fewer layers: transformers' loading report lists the weights left unused) go through."""

from pathlib import Path

import pytest
import torch

import bizoo
from bizoo.scripts import finetune_glue, pretrain
from bizoo.scripts.lib.models import changed_weight_shapes, saved_weight_shapes
from tests.scripts.conftest import call
from tests.tiny_configs import TINY_CONFIGS

FAST = ["--max-steps", "1", "--batch-size", "4", "--max-length", "32", "--logging-steps", "1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A tiny LionForMaskedLM with two layers and its tokenizer, saved."""
    config = bizoo.get_spec("lion").config_class(**{**TINY_CONFIGS["lion"], "num_hidden_layers": 2},
                                                 vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "lion-mlm"
    bizoo.LionForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_changed_weight_shapes_reads_the_headers_against_a_meta_model(checkpoint) -> None:
    from transformers import AutoConfig

    hidden = TINY_CONFIGS["lion"]["hidden_size"]
    wider = AutoConfig.from_pretrained(checkpoint, hidden_size=2 * hidden)
    changed = changed_weight_shapes(str(checkpoint), wider)
    assert f"lion.embeddings.word_embeddings.weight (120, {hidden}) -> (120, {2 * hidden})" in changed
    assert all(name.startswith("lion.") for name in changed)  # the base model's weights, under the head's prefix
    assert changed_weight_shapes(str(checkpoint), AutoConfig.from_pretrained(checkpoint, hidden_dropout_prob=0.3)) == []
    assert changed_weight_shapes(str(checkpoint), AutoConfig.from_pretrained(checkpoint, num_hidden_layers=1)) == []
    assert changed_weight_shapes(str(checkpoint.parent), wider) == []  # no safetensors file: the load says why


def test_saved_weight_shapes_are_the_checkpoints_and_count_its_parameters(checkpoint) -> None:
    from safetensors.torch import load_file

    from bizoo.scripts.evaluate_all import count_parameters

    weights = load_file(checkpoint / "model.safetensors")  # every tensor read: the oracle
    assert saved_weight_shapes(checkpoint) == {name: tuple(tensor.shape) for name, tensor in weights.items()}
    assert count_parameters(checkpoint) == sum(tensor.numel() for tensor in weights.values())
    assert saved_weight_shapes(checkpoint.parent) == {} and count_parameters(checkpoint.parent) is None


def test_pretrain_refuses_fields_that_resize_a_checkpoint(checkpoint, tmp_path, sentences, capsys) -> None:
    text = tmp_path / "text.txt"
    text.write_text("\n".join(sentences(60, seed=1)) + "\n")
    base = ["--text", text, "--model-name-or-path", checkpoint, *FAST]
    output = tmp_path / "wider"
    assert call(pretrain.main, [*base, "--output-dir", output, "--model-config", "hidden_size=64"]) == 2
    err = capsys.readouterr().err
    assert "--model-config hidden_size=64 changes the shapes of the weights of the checkpoint" in err
    assert "lion.embeddings.word_embeddings.weight" in err and "Traceback" not in err
    assert not output.exists()

    output = tmp_path / "shallower"  # fewer layers and another dropout resize nothing: the run goes on
    assert call(pretrain.main, [*base, "--output-dir", output, "--model-config", "num_hidden_layers=1",
                                "hidden_dropout_prob=0.2"]) == 0
    assert (output / "model.safetensors").is_file()


def test_finetuning_refuses_them_unless_mismatched_sizes_are_reinitialised(checkpoint, glue_dir, tmp_path,
                                                                           capsys) -> None:
    base = ["--model-name-or-path", checkpoint, "--task", "sst2", "--data-dir", glue_dir, *FAST,
            "--model-config", "intermediate_size=48"]
    output = tmp_path / "refused"
    assert call(finetune_glue.main, [*base, "--output-dir", output]) == 2
    err = capsys.readouterr().err
    assert "--model-config intermediate_size=48 changes the shapes" in err and "feed_forward.up.weight" in err
    assert "or give --ignore_mismatched_sizes to initialise them anew" in err and not output.exists()
    assert call(finetune_glue.main, [*base, "--output-dir", tmp_path / "anew", "--ignore_mismatched_sizes"]) == 0
