"""Edges of what the training commands share (``scripts/lib/masking.py``, ``streaming.py``, ``training.py``) and how
`bizoo pretrain` uses them:

* a streamed corpus shorter than the run: pass after pass in one endless stream, new masks each pass, and a run
  resumed in a later pass equal to the uninterrupted one;
* data-loader workers: each streamed block read once, not once per worker; persistent workers mask every epoch with
  that epoch's masks, not the first's;
* --epochs / --num_train_epochs without --max-steps train for the epochs (pretrain's default is a step budget), and
  the held-out evaluation then runs every quarter of the steps as with --max-steps;
* whole-word masking with a tokenizer whose pieces mark no word boundary (BPE, SentencePiece) is refused, not
  silently done piece by piece;
* packing a very long line (a document without line breaks) takes time linear in its length.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from bizoo.scripts import pretrain
from bizoo.scripts.lib.masking import SeededExamples, SeededMaskingCollator, mask_seed, word_starts
from bizoo.scripts.lib.streaming import StreamedBlocks, pack_blocks
from tests.scripts.conftest import call, write_pretraining_corpus

TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


@pytest.fixture
def corpus(tmp_path, sentences, tokenizer):
    """A short training file (36 blocks of <= 16 tokens: 4.5 batches of 8), a held-out file, a saved tokenizer."""
    return write_pretraining_corpus(tmp_path, sentences, tokenizer, 30)


def pretrain_argv(corpus, out, *extra):
    train, held_out, tokenizer = corpus
    return ["--text", str(train), "--eval-text", str(held_out), "--tokenizer", str(tokenizer), "--output-dir", str(out),
            "--max-length", "16", "--batch-size", "8", "--logging-steps", "1", "--warmup-ratio", "0",
            "--model-config", *TINY, *extra]


def logged(folder: Path) -> list[tuple]:
    """(step, loss, tokens trained on) of every training log entry."""
    log = json.loads((folder / "training_log.json").read_text())
    return [(e["step"], e["loss"], e["num_input_tokens_seen"]) for e in log if "loss" in e]


def parse_pretrain(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bizoo pretrain")
    pretrain.add_arguments(parser)
    return parser.parse_args(["--output-dir", "out", *argv])


# ----------------------------------------------------------------------------------------------------------------
# A streamed corpus read more than once
# ----------------------------------------------------------------------------------------------------------------


def test_an_endless_stream_repeats_the_blocks_with_the_next_epochs_masks(tmp_path, tokenizer, sentences):
    text = tmp_path / "doc.txt"
    text.write_text("\n".join(sentences(30, seed=4)) + "\n")
    once = StreamedBlocks([text], tokenizer, max_length=16, seed=5)
    first = list(once)
    n = len(first)
    assert n > 4 and [e["mask_seed"] for e in first] == [mask_seed(5, 0, i) for i in range(n)]  # one pass, then ends
    endless = StreamedBlocks([text], tokenizer, max_length=16, seed=5, endless=True)
    endless.set_epoch(2)  # a resumed run's first epoch
    three = list(itertools.islice(endless, 3 * n))
    for k in range(3):
        passed = three[k * n : (k + 1) * n]
        assert [e["input_ids"] for e in passed] == [e["input_ids"] for e in first]
        assert [e["mask_seed"] for e in passed] == [mask_seed(5, 2 + k, i) for i in range(n)]


def test_an_endless_stream_of_nothing_is_an_error_not_a_hang(tmp_path, tokenizer):
    short = tmp_path / "short.txt"
    short.write_text("the king .\n")  # fewer tokens than a block's minimum
    with pytest.raises(ValueError, match="hold no block of at least 8 tokens"):
        next(iter(StreamedBlocks([short], tokenizer, max_length=16, seed=0, endless=True)))


def test_a_streamed_run_resumed_after_the_corpus_wrapped_ends_as_the_uninterrupted_one(tmp_path, corpus):
    """12 steps over a stream of 4.5 batches: checkpoint-8 is in the second pass. Resumed from it, the run used to
    skip 8 batches of the first pass (the Trainer's epoch was the stream's pass), run out of stream, and begin the
    next pass from its start: other batches, other weights."""
    common = ["--stream", "--max-steps", "12", "--save-steps", "4", "--eval_strategy", "no"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert pretrain.main(pretrain_argv(corpus, whole, *common)) == 0
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-8", resumed / "checkpoint-8")
    assert pretrain.main(pretrain_argv(corpus, resumed, *common, "--resume")) == 0
    uninterrupted, continued = logged(whole), logged(resumed)
    assert [s for s, _, _ in continued] == [s for s, _, _ in uninterrupted] == list(range(1, 13))
    assert [t for _, _, t in continued] == [t for _, _, t in uninterrupted]  # the same blocks, token for token
    assert [l for _, l, _ in continued] == pytest.approx([l for _, l, _ in uninterrupted], abs=1e-6)
    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


@pytest.mark.parametrize("name", ["eval_strategy", "save_strategy", "logging_strategy"])
def test_a_streamed_run_counts_in_steps_not_epochs(tmp_path, corpus, capsys, name):
    """The Trainer's one epoch of an endless stream is the whole run: "evaluate every epoch" would evaluate once, at
    the end; it is refused with what to give instead."""
    argv = pretrain_argv(corpus, tmp_path / "out", "--stream", "--max-steps", "2", f"--{name}", "epoch")
    assert pretrain.main(argv) == 2
    assert f"--{name} epoch: a streamed corpus is read pass after pass without end" in capsys.readouterr().err


def test_a_long_line_is_packed_into_its_consecutive_slices(tokenizer):
    """One line of a million tokens, split over two lines of input: the blocks are its consecutive slices. (The
    packing cuts a line's whole blocks at once, O(n); cutting one block at a time re-copied the rest of the line,
    O(n^2 / block), about 12 s here. No time is asserted: a shared machine's timings are no test.)"""
    line = list(range(5, 5 + 1_000_000))
    blocks = list(pack_blocks(tokenizer, [[line[:10], line[10:]]], max_length=128))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert blocks == [[cls, *line[i : i + 126], sep] for i in range(0, len(line), 126)]  # the last, 64 tokens, kept


# ----------------------------------------------------------------------------------------------------------------
# Data-loader workers
# ----------------------------------------------------------------------------------------------------------------


def test_stream_workers_read_each_block_once(tmp_path, tokenizer, sentences):
    text = tmp_path / "doc.txt"
    text.write_text("\n".join(sentences(30, seed=6)) + "\n")
    alone = [(tuple(e["input_ids"]), e["mask_seed"]) for e in StreamedBlocks([text], tokenizer, 16, seed=1)]
    loader = DataLoader(StreamedBlocks([text], tokenizer, 16, seed=1), batch_size=4, num_workers=2,
                        collate_fn=list)
    with_workers = [(tuple(e["input_ids"]), e["mask_seed"]) for batch in loader for e in batch]
    assert sorted(with_workers) == sorted(alone)  # every block once, with its own mask seed

    endless = DataLoader(StreamedBlocks([text], tokenizer, 16, seed=1, endless=True), batch_size=4, num_workers=2,
                         collate_fn=list)
    two_passes = [e["mask_seed"] for batch in itertools.islice(endless, len(alone) // 2) for e in batch]
    assert len(set(two_passes)) == len(two_passes)  # no block of a pass twice


def test_persistent_workers_mask_each_epoch_with_its_own_masks():
    """--dataloader_persistent_workers: the workers keep the dataset copy they started with; the epoch set in the
    main process must still reach it (it used to stay 0: the same masks every epoch)."""
    data = SeededExamples([{"input_ids": [2, 5 + i, 3]} for i in range(6)], seed=11)
    loader = DataLoader(data, batch_size=2, num_workers=1, persistent_workers=True, collate_fn=list)
    for epoch in range(3):
        data.set_epoch(epoch)
        seeds = [e["mask_seed"] for batch in loader for e in batch]
        assert seeds == [mask_seed(11, epoch, i) for i in range(6)], epoch


# ----------------------------------------------------------------------------------------------------------------
# Epochs instead of steps
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, max_steps", [
    ([], 400),
    (["--num_train_epochs", "2"], -1),
    (["--epochs", "2"], -1),
    (["--epochs", "2", "--max-steps", "5"], 5),
    (["--max_steps", "5", "--num-train-epochs", "2"], 5),
    (["--max-steps", "-1", "--epochs", "2"], -1),
])
def test_epochs_without_max_steps_train_for_the_epochs(argv, max_steps):
    """transformers' max_steps > 0 overrides the epochs: with pretrain's default of 400 steps, run_mlm.py's
    --num_train_epochs 2 used to train 400 steps (66 epochs of a small corpus) without a word."""
    assert parse_pretrain(*argv).max_steps == max_steps


def test_an_epoch_run_trains_its_epochs_and_evaluates_every_quarter(tmp_path, corpus):
    out = tmp_path / "out"
    assert pretrain.main(pretrain_argv(corpus, out, "--num_train_epochs", "2")) == 0
    log = json.loads((out / "training_log.json").read_text())
    steps = max(e["step"] for e in log)
    assert log[-1]["epoch"] == pytest.approx(2.0) and steps == 2 * 5  # 36 blocks: 5 batches of 8 an epoch
    # every ceil(10 / 4) = 3 steps, and at the end (it used to be every 500: no point of the curve before the end)
    assert [e["step"] for e in log if "eval_loss" in e] == [3, 6, 9, 10]


# ----------------------------------------------------------------------------------------------------------------
# Whole-word masking needs word boundaries
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def sentencepiece_like(sentences):
    """A BPE tokenizer with SentencePiece's Metaspace ("▁" starts a word; a continuation carries no mark)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend.train_from_iterator(sentences(400), trainers.BpeTrainer(vocab_size=60, special_tokens=specials))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def test_whole_word_masking_refuses_pieces_without_word_boundaries(sentencepiece_like, tokenizer):
    ids = sentencepiece_like("the kingdom of silver", add_special_tokens=False)["input_ids"]
    assert len(ids) > 4  # words split into pieces, which whole-word masking would have taken for words
    with pytest.raises(ValueError, match="is a BPE model, whose pieces mark none"):
        SeededMaskingCollator(sentencepiece_like, 0.15, whole_word=True)
    with pytest.raises(ValueError, match="is a BPE model"):
        word_starts(sentencepiece_like, ids)
    SeededMaskingCollator(sentencepiece_like, 0.15)  # single tokens: fine
    wordpiece = tokenizer("the kingdom", add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(wordpiece)
    assert word_starts(tokenizer, wordpiece).tolist() == [not p.startswith("##") for p in pieces]


def test_pretrain_refuses_whole_word_masking_with_such_a_tokenizer(tmp_path, corpus, sentencepiece_like, capsys):
    sentencepiece_like.save_pretrained(tmp_path / "sp")
    train, held_out, _ = corpus
    argv = pretrain_argv((train, held_out, tmp_path / "sp"), tmp_path / "out", "--max-steps", "1",
                         "--whole-word-mask")
    assert pretrain.main(argv) == 2
    assert "--whole-word-mask: whole-word masking finds words by the continuation prefix" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# The input checks read at the end of each phase (lib.training.input_checks_callback)
# ----------------------------------------------------------------------------------------------------------------


def test_the_commands_read_the_input_checks_at_the_end_of_each_phase(glue_dir, sentences, tmp_path, monkeypatch):
    """finetune-glue (through lib.finetuning.train) and pretrain: ``bizoo.wait_for_input_checks`` runs when training
    ends, after each evaluation and after each prediction, so a bad value read later (a GPU input) in the last
    batches is raised by the command, not lost (tests/reliability/test_read_later_edges.py shows the raising)."""
    import bizoo
    from bizoo.scripts import finetune_glue

    waits = []
    monkeypatch.setattr(bizoo, "wait_for_input_checks", lambda: waits.append(1))
    tiny = ["--model-config", *TINY]
    assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir,
                                     "--output-dir", tmp_path / "glue", "--max-steps", "2", "--batch-size", "4",
                                     "--max-length", "32", *tiny]) == 0
    assert len(waits) >= 2  # the end of training, the final evaluation
    waits.clear()
    text = tmp_path / "text.txt"
    text.write_text("\n".join(sentences(40, seed=4)) + "\n")
    assert call(pretrain.main, ["--text", text, "--eval-text", text, "--output-dir", tmp_path / "mlm",
                                "--max-steps", "2", "--batch-size", "4", "--max-length", "16", "--vocab-size",
                                "120", *tiny]) == 0
    assert len(waits) >= 2  # the end of training, the held-out evaluation
