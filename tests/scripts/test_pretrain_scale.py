"""`bizoo pretrain` at scale: masks that belong to the examples, a 2-process DDP run equal to one process with twice
the batch, and a run killed with SIGKILL and resumed equal to one never interrupted."""

import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bizoo.scripts.lib.masking import SeededExamples, SeededMaskingCollator, mask_example, mask_seed
from tests.scripts.conftest import max_weight_difference, run_child, write_pretraining_corpus

TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


@pytest.fixture
def corpus(tmp_path, sentences, tokenizer):
    """A training file, a held-out file and a saved tokenizer (trained once: every run below uses the same)."""
    return write_pretraining_corpus(tmp_path, sentences, tokenizer, 200)


def pretrain_argv(corpus, out, batch_size, max_steps, *extra):
    train, held_out, tokenizer = corpus
    return ["--text", str(train), "--eval-text", str(held_out), "--tokenizer", str(tokenizer), "--output-dir", str(out),
            "--max-length", "16", "--batch-size", str(batch_size), "--max-steps", str(max_steps),
            "--logging-steps", "1", "--warmup-ratio", "0", "--model-config", *TINY, *extra]


def losses(folder: Path) -> list[tuple[int, float]]:
    log = json.loads((folder / "training_log.json").read_text())
    return [(entry["step"], entry["loss"]) for entry in log if "loss" in entry]


# ----------------------------------------------------------------------------------------------------------------
# Masks that belong to the examples
# ----------------------------------------------------------------------------------------------------------------


def test_masks_depend_on_seed_epoch_and_example_only(tokenizer, sentences):
    ids = [tokenizer(s)["input_ids"] for s in sentences(40, seed=3)]
    data = SeededExamples([{"input_ids": i} for i in ids], seed=7)
    collate = SeededMaskingCollator(tokenizer, 0.3)
    alone = [collate([data[i]]) for i in range(6)]
    together = collate([data[i] for i in (5, 3, 1, 0, 4, 2)])  # another batch, another order, more padding
    for row, i in enumerate((5, 3, 1, 0, 4, 2)):
        n = len(ids[i])
        assert together["input_ids"][row, :n].tolist() == alone[i]["input_ids"][0].tolist()
        assert together["labels"][row, :n].tolist() == alone[i]["labels"][0].tolist()
        assert (together["labels"][row, n:] == -100).all()
    data.set_epoch(1)  # a new epoch draws new masks
    assert any(collate([data[i]])["labels"].tolist() != alone[i]["labels"].tolist() for i in range(6))
    assert mask_seed(7, 0, 3) == mask_seed(7, 0, 3) != mask_seed(8, 0, 3)


def test_masking_rate_split_and_specials(tokenizer):
    ids = [tokenizer.cls_token_id] + list(range(5, 105)) * 20 + [tokenizer.sep_token_id]
    special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    inputs, labels = mask_example(ids, special, 123, tokenizer, 0.3, whole_word=False)
    inputs, labels = np.array(inputs), np.array(labels)
    chosen = labels != -100
    assert abs(chosen.mean() - 0.3) < 0.03
    assert not chosen[0] and not chosen[-1]  # never [CLS] / [SEP]
    assert (labels[chosen] == np.array(ids)[chosen]).all()
    masked = (inputs == tokenizer.mask_token_id) & chosen
    kept = (inputs == np.array(ids)) & chosen
    assert abs(masked.sum() / chosen.sum() - 0.8) < 0.05 and abs(kept.sum() / chosen.sum() - 0.1) < 0.05
    assert (inputs[~chosen] == np.array(ids)[~chosen]).all()


def test_whole_word_masking_takes_every_piece_of_a_word(tokenizer, sentences):
    text = " ".join(sentences(30, seed=4))
    ids = tokenizer(text)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert any(p.startswith("##") for p in pieces)  # the text has words of several pieces
    special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    _, labels = mask_example(ids, special, 5, tokenizer, 0.3, whole_word=True)
    chosen = [label != -100 for label in labels]
    assert any(chosen)
    for t in range(1, len(ids)):
        if pieces[t].startswith("##"):
            assert chosen[t] == chosen[t - 1], (pieces[t - 1], pieces[t])


def test_word_char_examples_take_their_replacements_characters(sentences):
    import bizoo

    wordchar_tokenizer = bizoo.WordCharTokenizerFast.from_words(sentences(), model_max_length=64)
    encoded = wordchar_tokenizer(sentences(4, seed=5))
    examples = [{"input_ids": i, "char_ids": np.asarray(c)} for i, c in zip(encoded["input_ids"], encoded["char_ids"])]
    data = SeededExamples(examples, seed=1)
    batch = SeededMaskingCollator(wordchar_tokenizer, 0.5)([data[i] for i in range(len(data))])
    changed = (batch["labels"] != -100) & (batch["input_ids"] != batch["labels"])
    assert changed.any()
    for b, t in changed.nonzero().tolist():
        row = wordchar_tokenizer.ids_to_char_ids([int(batch["input_ids"][b, t])])[0]
        assert batch["char_ids"][b, t, : len(row)].tolist() == row


def test_the_collator_says_what_is_missing(tokenizer):
    with pytest.raises(ValueError, match="carry no mask_seed"):
        SeededMaskingCollator(tokenizer)([{"input_ids": [2, 7, 3]}])
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        SeededMaskingCollator(tokenizer, 1.5)


# ----------------------------------------------------------------------------------------------------------------
# Several processes, and a run that dies
# ----------------------------------------------------------------------------------------------------------------


CUDA_FOR_FSDP = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason="FSDP shards over GPUs (accelerate runs DDP on a CPU)")


@pytest.mark.parametrize("sharding", [[], pytest.param(["--fsdp"], marks=CUDA_FOR_FSDP)], ids=["ddp", "fsdp"])
def test_two_processes_equal_one_process_with_twice_the_batch(tmp_path, corpus, sharding):
    """torchrun --nproc_per_node 2 (gloo on the CPU), batch 4 per process, against one process with batch 8: the same
    data order, masks and loss normalisation (tokens counted over both processes), so the same weights; with DDP
    and, on GPUs, with FSDP (each of the 2 layers one shard unit)."""
    extra = ["hidden_dropout_prob=0", "num_hidden_layers=2"]  # dropout draws from each process's own stream
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "bizoo.scripts.pretrain", *sharding]
    done = run_child([*torchrun, *pretrain_argv(corpus, ddp, 4, 3, *extra)])
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_child([sys.executable, "-m", "bizoo.scripts.pretrain", *pretrain_argv(corpus, single, 8, 3, *extra)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_weight_difference(ddp, single) < 1e-5
    ddp_losses, single_losses = losses(ddp), losses(single)
    assert [s for s, _ in ddp_losses] == [1, 2, 3]
    assert np.allclose([l for _, l in ddp_losses], [l for _, l in single_losses], atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without CUDA")
def test_fsdp_without_cuda_is_refused_not_silently_replaced_by_ddp(tmp_path, corpus):
    """accelerate drops an FSDP plugin on a CPU and wraps the model in DDP: --fsdp must say so, not train unsharded."""
    done = run_child([sys.executable, "-m", "bizoo.scripts.pretrain", "--fsdp",
                      *pretrain_argv(corpus, tmp_path / "o", 4, 1)])
    assert done.returncode == 2, done.stderr[-3000:]
    assert "--fsdp shards the model over GPUs" in done.stderr
    assert not (tmp_path / "o").exists()


KILL_AFTER_CHECKPOINT = """
import os, signal, sys
import transformers

save = transformers.Trainer._save_checkpoint

def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    if self.state.global_step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no atexit: as a crash or an OOM killer would

transformers.Trainer._save_checkpoint = save_then_die
from bizoo.scripts import pretrain
sys.exit(pretrain.main(sys.argv[1:]))
"""


def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights_and_losses(tmp_path, corpus):
    """Dropout on: the resumed run must also restore the random state. Killed with SIGKILL right after checkpoint-4
    of 6 steps, then `--resume`: the weights and every step's loss equal the uninterrupted run's."""
    common = ["--save-steps", "2"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_child([sys.executable, "-m", "bizoo.scripts.pretrain", *pretrain_argv(corpus, whole, 4, 6, *common)])
    assert done.returncode == 0, done.stderr[-3000:]

    killer = tmp_path / "kill_after_checkpoint.py"
    killer.write_text(KILL_AFTER_CHECKPOINT.format(step=4))
    done = run_child([sys.executable, str(killer), *pretrain_argv(corpus, broken, 4, 6, *common)])
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert (broken / "checkpoint-4").is_dir() and not (broken / "model.safetensors").exists()

    done = run_child([sys.executable, "-m", "bizoo.scripts.pretrain", *pretrain_argv(corpus, broken, 4, 6, *common),
                      "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_weight_difference(whole, broken) < 1e-6
    resumed, uninterrupted = losses(broken), losses(whole)
    assert [s for s, _ in resumed] == [s for s, _ in uninterrupted] == [1, 2, 3, 4, 5, 6]
    assert [l for _, l in resumed] == pytest.approx([l for _, l in uninterrupted], abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# A corpus larger than it is wise to hold in memory
# ----------------------------------------------------------------------------------------------------------------

PEAK_MEMORY = """
import resource, sys
from bizoo.scripts import pretrain
code = pretrain.main(sys.argv[1:])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def write_corpus(path: Path, size: int, sentences) -> None:
    """``size`` bytes of generated sentences (a 1 MB piece written again and again)."""
    piece = ("\n".join(sentences(20000, seed=9)) + "\n").encode()
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            handle.write(piece)
            written += len(piece)


def test_streamed_blocks_equal_the_in_memory_packing(tmp_path, tokenizer, sentences):
    from bizoo.scripts.pretrain import pack
    from bizoo.scripts.lib.streaming import StreamedBlocks

    files = []
    for i in range(2):  # two documents: no block crosses from one to the other
        files.append(tmp_path / f"doc{i}.txt")
        files[-1].write_text("\n".join(sentences(60, seed=i)) + "\n")
    documents = [f.read_text().splitlines() for f in files]
    streamed = StreamedBlocks(files, tokenizer, max_length=16, seed=3, chunk_lines=7)
    assert list(streamed.blocks()) == pack(tokenizer, documents, 16)
    first = [e["mask_seed"] for e in streamed]
    streamed.set_epoch(1)
    assert [e["mask_seed"] for e in streamed] != first


@pytest.mark.slow
def test_streaming_a_500_mb_corpus_keeps_peak_memory_as_for_a_1_mb_one(tmp_path, corpus, sentences):
    """The corpus is never held in memory: the peak RSS of a streamed run over 500 MB exceeds that of the same run
    over 1 MB by less than 256 MB. (Not an absolute bound: the process's own size depends on the torch build; a
    CUDA build of torch 2.12 on a CPU peaked at 2.05 GB where the CPU build stays well under 2 GB.)"""
    script = tmp_path / "peak.py"
    script.write_text(PEAK_MEMORY)
    _, held_out, _ = corpus
    peaks = {}
    for size in (2**20, 500 * 2**20):
        text = tmp_path / f"corpus-{size}.txt"
        write_corpus(text, size, sentences)
        argv = ["--stream", "--text", str(text), "--eval-text", str(held_out), "--output-dir",
                str(tmp_path / f"out-{size}"), "--max-length", "32", "--batch-size", "8", "--max-steps", "3",
                "--vocab-size", "120", "--tokenizer-sample-mb", "1", "--model-config", *TINY]
        done = run_child([sys.executable, str(script), *argv], timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "streamed training" in done.stdout
        peaks[size] = int(done.stdout.split("PEAK_RSS_KB")[1].split()[0]) * 1024  # bytes
        text.unlink()  # 500 MB of disk back at once
    small, big = peaks[2**20], peaks[500 * 2**20]
    assert big - small < 256 * 2**20, f"peak RSS {big / 2**30:.2f} GB for 500 MB, {small / 2**30:.2f} GB for 1 MB"


def test_stream_needs_its_arguments(tmp_path, corpus, capsys):
    from bizoo.scripts import pretrain

    train, held_out, _ = corpus
    base = ["--stream", "--output-dir", str(tmp_path / "o"), "--max-steps", "2"]
    cases = [
        (["--eval-text", str(held_out)], "pass the training files with --text"),
        (["--text", str(train)], "--stream needs --eval-text"),
        (["--text", str(train), "--eval-text", str(held_out), "--model", "elmo"], "subword models"),
    ]
    for extra, message in cases:
        assert pretrain.main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert pretrain.main(["--stream", "--text", str(train), "--eval-text", str(held_out), "--output-dir",
                          str(tmp_path / "o"), "--max-steps", "-1"]) == 2
    assert "--stream needs --max-steps" in capsys.readouterr().err
