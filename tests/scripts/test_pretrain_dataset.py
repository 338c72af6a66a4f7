"""``bizoo pretrain --dataset``: a local dataset folder or a Hub dataset id (from a local cache laid out as the Hub's),
loaded whole or, with ``--stream``, read with ``datasets``' ``streaming=True`` into the same packing as streamed
files."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from bizoo.scripts import pretrain
from bizoo.scripts.lib.dataset_readers import load_splits, stream_text_lines
from bizoo.scripts.lib.streaming import StreamedBlocks

TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


@pytest.fixture
def text_dataset(tmp_path, sentences) -> dict[str, Path]:
    """A text dataset as data files named by split (the "text" builder: one row per line, column "text")."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(sentences(120, seed=5)) + "\n\n")
    (folder / "validation.txt").write_text("\n".join(sentences(10, seed=6)) + "\n")
    return {p.name: p for p in folder.iterdir()}


def test_streamed_dataset_blocks_equal_the_in_memory_packing_of_its_lines(text_dataset, tokenizer):
    folder = str(next(iter(text_dataset.values())).parent)
    assert isinstance(load_splits(folder, streaming=True)["train"], datasets.IterableDataset)
    lines = stream_text_lines(folder, None, "text")
    want = text_dataset["train.txt"].read_text().split()
    assert " ".join(lines).split() == want and " ".join(lines).split() == want  # re-iterable, blank lines dropped
    streamed = StreamedBlocks([lines], tokenizer, max_length=16, seed=3, chunk_lines=7)
    document = [line for line in text_dataset["train.txt"].read_text().splitlines() if line.strip()]
    assert list(streamed.blocks()) == pretrain.pack(tokenizer, [document], 16)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_pretrain_on_a_hub_dataset(tmp_path, text_dataset, hub_cache, tokenizer, capsys, stream):
    hub_cache("someone/tiny-corpus", text_dataset, repo_type="dataset")
    tokenizer.save_pretrained(tmp_path / "tok")
    out = tmp_path / "out"
    argv = ["--dataset", "someone/tiny-corpus", "--tokenizer", str(tmp_path / "tok"), "--output-dir", str(out),
            "--max-length", "16", "--batch-size", "4", "--max-steps", "2", "--model-config", *TINY]
    assert pretrain.main([*argv, *(["--stream"] if stream else [])]) == 0
    printed = capsys.readouterr().out
    assert ("someone/tiny-corpus (streamed)" if stream else "on someone/tiny-corpus") in printed
    assert (out / "model.safetensors").is_file()


def test_a_streamed_dataset_without_a_validation_split_needs_eval_text(tmp_path, text_dataset, hub_cache, capsys):
    hub_cache("someone/train-only", {"train.txt": text_dataset["train.txt"]}, repo_type="dataset")
    argv = ["--dataset", "someone/train-only", "--stream", "--output-dir", str(tmp_path / "o"), "--max-steps", "2",
            "--vocab-size", "120", "--model-config", *TINY]
    assert pretrain.main(argv) == 2
    assert "has no validation split" in capsys.readouterr().err
    assert pretrain.main(["--dataset", "someone/absent", "--output-dir", str(tmp_path / "o")]) == 2
    assert "--dataset 'someone/absent' is not a local path" in capsys.readouterr().err
