"""--dtype (run_mlm.py's; transformers 4's --torch_dtype): the dtype of the weights a training command trains.

transformers 5's ``from_pretrained`` loads a checkpoint in the dtype it is stored in, so a checkpoint pushed in
bfloat16 was fine-tuned with bfloat16 weights, whose small AdamW updates mostly round away. The commands now train
float32 weights unless --dtype says otherwise (auto: as stored), a --resume keeps the dtype its checkpoint was trained
in, and float16 weights with --fp16 (whose gradient scaler refuses float16 gradients on a GPU) are refused before
anything is written."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bizoo
from bizoo.scripts import finetune_glue, pretrain
from tests.scripts.conftest import call
from tests.tiny_configs import TINY_CONFIGS

FAST = ["--max-steps", "2", "--batch-size", "4", "--max-length", "32", "--logging-steps", "1"]


def saved_dtypes(folder: Path) -> set[torch.dtype]:
    """The dtypes of the floating-point weights saved in ``folder``, but LION's decay parameters (which the model
    keeps in float32 whatever its dtype: ``_keep_in_fp32_modules_strict``)."""
    weights = load_file(folder / "model.safetensors")
    return {tensor.dtype for name, tensor in weights.items() if tensor.is_floating_point() and "decay" not in name}


def save_checkpoint(folder: Path, tokenizer, dtype: torch.dtype) -> Path:
    config = bizoo.get_spec("lion").config_class(**TINY_CONFIGS["lion"], vocab_size=len(tokenizer),
                                                 pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    bizoo.LionForMaskedLM(config).to(dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A tiny LionForMaskedLM stored in bfloat16, with its tokenizer."""
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lion-bf16", tokenizer, torch.bfloat16)


def test_fine_tuning_a_bfloat16_checkpoint_trains_float32_weights_unless_asked(bf16_checkpoint, glue_dir, tmp_path,
                                                                               capsys) -> None:
    base = ["--model-name-or-path", bf16_checkpoint, "--task", "sst2", "--data-dir", glue_dir, *FAST,
            "--learning-rate", "2e-5"]
    assert call(finetune_glue.main, [*base, "--output-dir", tmp_path / "default"]) == 0
    assert saved_dtypes(tmp_path / "default") == {torch.float32}
    assert "stores its weights in bfloat16: they are trained in float32 (--dtype auto: as stored)" in (
        capsys.readouterr().out)
    stored = load_file(bf16_checkpoint / "model.safetensors")

    def share_moved(output: Path) -> float:
        """The share of the backbone's layer weights (elements) that training changed."""
        trained = load_file(output / "model.safetensors")
        layers = [name for name in stored if name.startswith("lion.layers") and "decay" not in name]
        moved = sum(int((trained[name].float() != stored[name].float()).sum()) for name in layers)
        return moved / sum(stored[name].numel() for name in layers)

    assert share_moved(tmp_path / "default") > 0.99

    for spelling in (["--dtype", "auto"], ["--torch_dtype", "bfloat16"]):  # as stored; or asked for by name
        output = tmp_path / spelling[0].strip("-")
        assert call(finetune_glue.main, [*base, "--output-dir", output, *spelling]) == 0
        assert saved_dtypes(output) == {torch.bfloat16}
    assert share_moved(tmp_path / "dtype") < 0.5  # bfloat16 weights: most of AdamW's updates rounded away (0.21)

    # --resume goes on in the dtype its checkpoint was trained in
    resumed = [*base, "--output-dir", tmp_path / "dtype", "--max-steps", "3", "--resume"]
    capsys.readouterr()
    assert call(finetune_glue.main, resumed) == 2
    err = capsys.readouterr().err
    assert "was trained with bfloat16 weights, but these options give float32 ones; resume with the first run's " \
           "--dtype (--dtype bfloat16" in err
    assert not (tmp_path / "dtype" / "checkpoint-3").exists()
    assert call(finetune_glue.main, [*resumed, "--dtype", "bfloat16"]) == 0
    assert saved_dtypes(tmp_path / "dtype") == {torch.bfloat16}


def test_pretrain_builds_or_loads_the_weights_in_the_dtype_asked(bf16_checkpoint, tmp_path, sentences) -> None:
    text = tmp_path / "text.txt"
    text.write_text("\n".join(sentences(60, seed=1)) + "\n")
    base = ["--text", text, *FAST]
    assert call(pretrain.main, [*base, "--model-name-or-path", bf16_checkpoint, "--output-dir", tmp_path / "on"]) == 0
    assert saved_dtypes(tmp_path / "on") == {torch.float32}  # continued pretraining: float32 unless asked
    scratch = [*base, "--model", "lion", "--model-config", *(f"{k}={v}" for k, v in TINY_CONFIGS["lion"].items()),
               "--vocab-size", "200", "--output-dir", tmp_path / "scratch"]
    assert call(pretrain.main, [*scratch, "--dtype", "bfloat16"]) == 0
    assert saved_dtypes(tmp_path / "scratch") == {torch.bfloat16}
    assert call(pretrain.main, [*scratch, "--max-steps", "3", "--resume"]) == 2  # float32 now: refused
    assert not (tmp_path / "scratch" / "checkpoint-3").exists()


def test_float16_weights_with_fp16_are_refused_before_anything_is_written(glue_dir, tmp_path, tokenizer,
                                                                          capsys) -> None:
    fp16_checkpoint = save_checkpoint(tmp_path / "lion-fp16", tokenizer, torch.float16)
    glue = ["--task", "sst2", "--data-dir", glue_dir, *FAST, "--fp16", "--output-dir", tmp_path / "out"]
    assert call(finetune_glue.main, ["--model-name-or-path", fp16_checkpoint, *glue, "--dtype", "auto"]) == 2
    assert "--fp16 with --dtype auto (the checkpoint stores float16): --fp16 is mixed precision on float32 " \
           "weights" in capsys.readouterr().err
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", *glue, "--dtype", "float16"]) == 2
    assert "--fp16 with --dtype float16" in capsys.readouterr().err
    assert call(pretrain.main, ["--model-name-or-path", fp16_checkpoint, "--dtype", "float16", "--fp16",
                                "--output-dir", tmp_path / "out"]) == 2
    assert "--fp16 with --dtype float16" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
