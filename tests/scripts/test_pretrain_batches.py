"""What `bizoo pretrain` holds out and trains on, against what run_mlm.py takes: a dataset's validation split is the
held-out text, --validation_split_percentage holds out exactly its share of the lines, and --whole-word-mask masks the
held-out words as it masks the training words."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from bizoo.scripts import pretrain
from bizoo.scripts.lib.masking import word_starts


def parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    return parser.parse_args([*argv, "--output-dir", "unused"])


@pytest.fixture
def dataset_folder(tmp_path):
    """A text dataset (one row per line, column "text") with a train and a validation split."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("".join(f"training line {i}\n" for i in range(40)))
    (folder / "validation.txt").write_text("held out one\nheld out two\n")
    return folder


def test_a_datasets_validation_split_is_the_held_out_text_read_whole_as_streamed(dataset_folder, tmp_path):
    """run_mlm.py evaluates on the dataset's validation split, and so does --stream: read whole, the run held out the
    last 5% of the train split instead, trained on 95% of it, and never read the validation split. --eval-text
    comes first; without a validation split the end of the train split is held out."""
    train, held_out, name = pretrain.load_texts(parsed(["--dataset", str(dataset_folder)]))
    assert train == [[f"training line {i}" for i in range(40)]]  # the whole train split
    assert held_out == [["held out one", "held out two"]]
    assert name == str(dataset_folder)
    eval_file = tmp_path / "eval.txt"
    eval_file.write_text("given held-out text\n")
    train, held_out, _ = pretrain.load_texts(parsed(["--dataset", str(dataset_folder), "--eval-text", str(eval_file)]))
    assert len(train[0]) == 40 and held_out == [["given held-out text"]]
    (dataset_folder / "validation.txt").unlink()
    train, held_out, _ = pretrain.load_texts(parsed(["--dataset", str(dataset_folder),
                                                     "--validation_split_percentage", "10"]))
    assert train == [[f"training line {i}" for i in range(36)]]
    assert held_out == [[f"training line {i}" for i in range(36, 40)]]


@pytest.mark.parametrize("percentage, lines, held", [(30, 90, 27), (7, 500, 35), (30, 170, 51)])
def test_validation_split_percentage_holds_out_its_share_of_the_lines(tmp_path, percentage, lines, held):
    """--validation_split_percentage N holds out ceil(N% of the lines) of each file, the last ones, and trains on
    the others: 30% of 90 lines is 27 (in floating point 90 * (1 - 0.3) is 62.99..., which held out 28)."""
    text = tmp_path / "train.txt"
    text.write_text("".join(f"line {i}\n" for i in range(lines)))
    train, held_out, _ = pretrain.load_texts(parsed(["--text", str(text), "--validation_split_percentage",
                                                     str(percentage)]))
    assert held_out == [[f"line {i}" for i in range(lines - held, lines)]]
    assert train == [[f"line {i}" for i in range(lines - held)]]


def test_whole_word_masking_masks_the_held_out_words_whole_at_its_rate(tokenizer, sentences):
    """With --whole-word-mask the training batches mask words, all their pieces together; the held-out masks took
    single pieces (a word's other pieces left in view: an easier task than the one trained, and not run_mlm.py's,
    whose evaluation masks with the training collator). Now each held-out word is chosen with --mlm-probability, all
    its pieces with it; without the option the masks are the single-token ones they were."""
    blocks = pretrain.pack(tokenizer, [sentences(400, seed=8)], 32)
    job = SimpleNamespace(objective="mlm", wordchar=False, args=SimpleNamespace(
        mlm_probability=0.3, seed=5, stream=False, whole_word_mask=True, pad_to_max_length=False, max_length=32))
    held_out = [{"input_ids": ids} for ids in blocks]
    setup = pretrain.objective_setup(job, tokenizer, pretrain.Blocks(held_out[:4], held_out, blocks[:4], blocks))
    words = chosen_words = 0
    split_words = 0
    for ids, example in zip(blocks, setup.eval_examples):
        starts = word_starts(tokenizer, ids).tolist()
        chosen = [label != -100 for label in example["labels"]]
        assert [t for t, c in enumerate(chosen) if c] == [t for t, i in enumerate(example["input_ids"])
                                                           if i == tokenizer.mask_token_id]
        for t in range(2, len(ids) - 1):  # (a block's first piece may continue a word of the block before)
            if not starts[t]:  # a piece continuing a word: masked with the piece before it
                assert chosen[t] == chosen[t - 1], tokenizer.convert_ids_to_tokens(ids[t - 1 : t + 1])
                split_words += 1
        words += sum(starts[1:-1])
        chosen_words += sum(c for c, s in zip(chosen[1:-1], starts[1:-1]) if s)
    assert split_words > 100  # the text has many words of several pieces
    assert abs(chosen_words / words - 0.3) < 0.03, chosen_words / words
    job.args.whole_word_mask = False
    single = pretrain.objective_setup(job, tokenizer, pretrain.Blocks(held_out[:4], held_out, blocks[:4], blocks))
    assert [e["labels"] for e in single.eval_examples] == [
        e["labels"] for e in pretrain.fixed_eval_masks(blocks, tokenizer, 0.3, 5)]


def test_a_tiny_share_of_a_short_document_still_holds_out_a_line(tmp_path):
    """ceil(share × lines) with share 1e-7 of 3 lines is 1: held out, not 0 (which left nothing to evaluate)."""
    import argparse

    from bizoo.scripts import pretrain

    path = tmp_path / "doc.txt"
    path.write_text("one line\ntwo line\nthree line\n")
    args = argparse.Namespace(dataset=None, text=[str(path)], eval_text=None, eval_fraction=1e-7,
                              validation_split_percentage=None)
    train, held_out, _ = pretrain.load_texts(args)
    assert train == [["one line", "two line"]] and held_out == [["three line"]]


def test_a_block_that_drew_no_target_masks_its_first_whole_word(tokenizer, sentences):
    """At a tiny --mlm-probability every block gets one target anyway: with --whole-word-mask its first whole word
    (every piece of it), not the continuation pieces a block may open with (the tail of a word cut by the packing)."""
    blocks = pretrain.pack(tokenizer, [sentences(400, seed=8)], 32)
    examples = pretrain.fixed_eval_masks(blocks, tokenizer, 1e-9, 5, whole_word=True)
    opened_mid_word = 0
    for ids, example in zip(blocks, examples):
        starts = word_starts(tokenizer, ids).tolist()
        special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
        chosen = [t for t, label in enumerate(example["labels"]) if label != -100]
        first = next(t for t in range(len(ids)) if starts[t] and not special[t])
        end = next((t for t in range(first + 1, len(ids)) if starts[t] or special[t]), len(ids))
        assert chosen == list(range(first, end)), tokenizer.convert_ids_to_tokens(ids[: end + 1])
        opened_mid_word += not starts[1]
    assert opened_mid_word > 5  # the case the rule is for


def test_lines_longer_than_the_model_are_packed_without_transformers_indexing_warning(tmp_path):
    """A corpus of one document per line (400 tokens each, the model 32 long) is what block packing is for: the
    tokenizer must not warn that the lines "will result in indexing errors" (it did, once per run, for pack, --stream
    and --line-by-line alike)."""
    from bizoo.scripts.lib.streaming import StreamedBlocks
    from bizoo.scripts.lib.wordpiece import train_wordpiece_tokenizer

    words = "the king rode to the castle and the queen sang of old wars".split()
    lines = [" ".join(words[(i + j) % len(words)] for j in range(400)) for i in range(4)]
    warned = "sequence-length-is-longer-than-the-specified-maximum"
    for run in ("pack", "stream", "line-by-line"):
        tokenizer = train_wordpiece_tokenizer(lines, vocab_size=100, min_frequency=1, model_max_length=32)
        if run == "pack":
            blocks = pretrain.pack(tokenizer, [lines], 32)
        elif run == "stream":
            (tmp_path / "long.txt").write_text("\n".join(lines) + "\n")
            blocks = [b["input_ids"] for b in StreamedBlocks([tmp_path / "long.txt"], tokenizer, 32, seed=0,
                                                              chunk_lines=3)]  # a whole chunk, then the rest
        else:
            blocks = pretrain.line_examples(tokenizer, [lines], 32)
        assert blocks and all(len(block) <= 32 for block in blocks), run
        assert not tokenizer.deprecation_warnings.get(warned), run
        tokenizer(lines[0])  # the check can fail: a plain call of the same tokenizer does warn
        assert tokenizer.deprecation_warnings.get(warned), run
