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
    repo = "tiny-corpus" if stream else "someone/tiny-corpus"  # also a legacy id without an owner ("wikitext")
    hub_cache(repo, text_dataset, repo_type="dataset")
    tokenizer.save_pretrained(tmp_path / "tok")
    out = tmp_path / "out"
    argv = ["--dataset", repo, "--tokenizer", str(tmp_path / "tok"), "--output-dir", str(out),
            "--max-length", "16", "--batch-size", "4", "--max-steps", "2", "--model-config", *TINY]
    assert pretrain.main([*argv, *(["--stream"] if stream else [])]) == 0
    printed = capsys.readouterr().out
    assert (f"{repo} (streamed)" if stream else f"on {repo}") in printed
    assert (out / "model.safetensors").is_file()


def test_a_streamed_dataset_without_a_validation_split_needs_eval_text(tmp_path, text_dataset, hub_cache, capsys):
    hub_cache("someone/train-only", {"train.txt": text_dataset["train.txt"]}, repo_type="dataset")
    argv = ["--dataset", "someone/train-only", "--stream", "--output-dir", str(tmp_path / "o"), "--max-steps", "2",
            "--vocab-size", "120", "--model-config", *TINY]
    assert pretrain.main(argv) == 2
    assert "has no validation split" in capsys.readouterr().err
    assert pretrain.main(["--dataset", "someone/absent", "--output-dir", str(tmp_path / "o")]) == 2
    assert "--dataset 'someone/absent' is not a local path" in capsys.readouterr().err


def parsed(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    return parser.parse_args(argv)


def test_pretrain_on_data_files_as_run_mlm_takes_them(tmp_path, sentences, tokenizer, capsys):
    """run_mlm.py's `--train_file train.jsonl --validation_file dev.jsonl`: the rows' text column is the corpus and
    the held-out text (not the JSON read as plain text); a CSV's column is named by --text-column."""
    import json

    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    for path, n, seed in ((train, 60, 5), (dev, 8, 6)):
        path.write_text("".join(json.dumps({"id": i, "text": s}) + "\n" for i, s in enumerate(sentences(n, seed=seed))))
    tokenizer.save_pretrained(tmp_path / "tok")
    common = ["--tokenizer", str(tmp_path / "tok"), "--max-length", "16", "--batch-size", "4", "--max-steps", "2",
              "--model-config", *TINY]
    args = parsed(["--train_file", str(train), "--validation_file", str(dev),
                                               "--output-dir", str(tmp_path / "x")])
    documents, held_out, name = pretrain.load_texts(args)
    assert documents == [sentences(60, seed=5)] and held_out == [sentences(8, seed=6)] and name == "train.jsonl"
    out = tmp_path / "out"
    assert pretrain.main(["--train_file", str(train), "--validation_file", str(dev), "--output-dir", str(out),
                          *common]) == 0
    assert "on train.jsonl" in capsys.readouterr().out and (out / "model.safetensors").is_file()

    table = tmp_path / "table.csv"
    datasets.Dataset.from_dict({"sentence": sentences(40, seed=7)}).to_csv(str(table), index=False)
    args = parsed(["--train-file", str(table), "--text-column", "sentence",
                                               "--output-dir", str(tmp_path / "y")])
    documents, held_out, _ = pretrain.load_texts(args)
    assert [*documents[0], *held_out[0]] == sentences(40, seed=7) and held_out[0]


@pytest.mark.parametrize("argv, message", [
    (["--text", "{train}", "{text}"], "--text: give one data file ("),
    (["--text", "{train}", "--eval-text", "{text}"], "is a data file: give --eval-text as one too"),
    (["--text", "{text}", "--eval-text", "{train}"], "is a data file: it goes with a data file as --text"),
    (["--eval-text", "{train}"], "is a data file: it goes with a data file as --text"),
    (["--text", "{train}", "--text-column", "body"], "--text-column 'body' is not in"),
    (["--text", "{text}", "--text-column", "body"], "--text-column names a column of --dataset or of a data file"),
    (["--text", "{train}", "--eval-text", "{train}", "--stream", "--max-steps", "2"],
     "--stream reads plain-text --text files"),
])
def test_data_files_that_cannot_be_read_as_asked_are_refused(tmp_path, sentences, capsys, argv, message):
    train, text = tmp_path / "train.jsonl", tmp_path / "plain.txt"
    train.write_text('{"text": "a line"}\n{"text": "another"}\n')
    text.write_text("\n".join(sentences(5, seed=1)) + "\n")
    argv = [a.format(train=train, text=text) for a in argv]
    out = tmp_path / "out"
    assert pretrain.main([*argv, "--output-dir", str(out), "--vocab-size", "120", "--model-config", *TINY]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_run_mlm_spellings_mean_what_they_mean_in_run_mlm(tmp_path):
    """run_mlm.py's data and model options are taken with its meaning: the same namespace as bizoo's spellings;
    --validation_split_percentage 10 holds out the share --eval-fraction 0.1 does, --config_overrides is split at
    its commas."""
    theirs = parsed(["--output_dir", "o", "--model_type", "bigs", "--tokenizer_name", "tok", "--dataset_name", "d/x",
                     "--dataset_config_name", "c", "--text_column_name", "body", "--validation_split_percentage", "10",
                     "--config_overrides", "hidden_size=64,num_hidden_layers=2"])
    ours = parsed(["--output-dir", "o", "--model", "bigs", "--tokenizer", "tok", "--dataset", "d/x", "--dataset-config",
                   "c", "--text-column", "body", "--eval-fraction", "0.1", "--model-config", "hidden_size=64",
                   "num_hidden_layers=2"])
    for name in ("model", "tokenizer", "dataset", "dataset_config", "text_column", "model_config"):
        assert getattr(theirs, name) == getattr(ours, name), name
    assert pretrain.held_out_fraction(theirs) == pretrain.held_out_fraction(ours) == 0.1
    assert pretrain.held_out_fraction(parsed(["--output-dir", "o"])) == pretrain.DEFAULT_EVAL_FRACTION == 0.05
    with pytest.raises(pretrain.CommandError, match="--eval-fraction and --validation-split-percentage both"):
        pretrain.held_out_fraction(parsed(["--output-dir", "o", "--eval-fraction", "0.1",
                                           "--validation_split_percentage", "10"]))
    with pytest.raises(pretrain.CommandError, match=r"--validation-split-percentage must be in \(0, 100\), got 100"):
        pretrain.held_out_fraction(parsed(["--output-dir", "o", "--validation_split_percentage", "100"]))
