"""``bizoo finetune-ner``'s checks of its input and its score table.

IOB1 files (many CoNLL-2003 copies) are read as IOB2, in training and evaluation, so that the strict span scores
count every gold chunk; tags that open chunks both ways, and IOBES/BILOU tags outside every well-formed chunk, are
refused; the seqeval-default-mode row of the table has its own support; an --eval-file given beside
--validation-split-percentage is refused even when it names the default file; a --max-length that leaves no room
for a word beside the tokenizer's special tokens is refused. Every file is written here; nothing reads the network.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import bizoo
from bizoo.scripts import finetune_ner
from bizoo.scripts.finetune_ner import TaggingData
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.data import conll_label_list
from bizoo.scripts.lib.wordpiece import train_wordpiece_tokenizer
from tests.scripts.conftest import call as exit_code

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
FAST = ["--max-steps", "2", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "2", "--max-length", "32"]

# CoNLL-2003 as many copies spell it: IOB1, B- only between two adjacent chunks of one type (Mary after John).
IOB1_SENTENCES = [
    [("EU", "I-ORG"), ("rejects", "O"), ("German", "I-MISC"), ("call", "O")],
    [("Peter", "I-PER"), ("Blackburn", "I-PER")],
    [("John", "I-PER"), ("Mary", "B-PER")],
]
#: The gold chunks of the IOB1 sentences: ORG, MISC, PER (Peter Blackburn), PER (John), PER (Mary).
IOB1_CHUNKS = 5


def call(argv) -> int:
    return exit_code(finetune_ner.main, argv)


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{w} NNP {t}\n" for w, t in s) + "\n" for s in sentences), encoding="utf-8")


def data_of(train: list[list[tuple[str, str]]], eval: list[list[tuple[str, str]]] | None = None,
            held_out: bool = False) -> TaggingData:
    """TaggingData as load_sentences makes it: the labels from the training sentences (with a held-out part: both)."""

    def pairs(sentences):
        return [([w for w, _ in s], [t for _, t in s]) for s in sentences]

    eval = train if eval is None else eval
    labels = conll_label_list(pairs(train) + (pairs(eval) if held_out else []))
    return TaggingData(pairs(train), pairs(eval), labels, "train.txt",
                       "train.txt (held-out 20%, seed 42)" if held_out else "valid.txt",
                       {"name": "x", "type": "x", "split": "validation"},
                       {"percentage": 20.0, "seed": 42, "of": "train.txt"} if held_out else None)


# ---------------------------------------------------------------------------------------------- IOB1, end to end


def test_iob1_files_are_read_as_iob2_and_every_gold_chunk_is_scored(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "conll2003"
    write_conll(data / "train.txt", IOB1_SENTENCES * 5)
    write_conll(data / "valid.txt", IOB1_SENTENCES)
    output = tmp_path / "out"
    assert call(["--model-name-or-path", "lion", "--data-dir", data, "--output-dir", output, *TINY, *FAST]) == 0
    captured = capsys.readouterr()
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    # every gold chunk is counted by the strict scorer (it counted 1 of 5); the model's labels are IOB2
    assert results["metrics"]["support"] == IOB1_CHUNKS, results["metrics"]
    assert results["metrics"]["conlleval_support"] == IOB1_CHUNKS
    assert results["labels"] == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    for name in ("train.txt", "valid.txt"):
        assert f"{data / name}: the tags are IOB1" in captured.err, captured.err
    assert "read as IOB2" in captured.err
    assert results["iob1_read_as_iob2"] == [str(data / "train.txt"), str(data / "valid.txt")]
    config = json.loads((output / "config.json").read_text(encoding="utf-8"))
    assert sorted(config["id2label"].values()) == sorted(results["labels"])
    assert "overall, strict" in captured.out


# ---------------------------------------------------------------------------------------------- check_span_tags


def test_check_span_tags_reads_iob1_as_iob2_in_both_files() -> None:
    checked = finetune_ner.check_span_tags(data_of(IOB1_SENTENCES, IOB1_SENTENCES[1:]), "ner")
    assert [tags for _, tags in checked.train] == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"],
                                                   ["B-PER", "B-PER"]]
    assert [tags for _, tags in checked.eval] == [["B-PER", "I-PER"], ["B-PER", "B-PER"]]
    assert checked.labels == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert checked.read_as_iob2 == ["train.txt", "valid.txt"]
    assert [words for words, _ in checked.train] == [words for words, _ in data_of(IOB1_SENTENCES).train]


def test_check_span_tags_keeps_iob2_iobes_and_bilou_as_they_are() -> None:
    for sentences in ([[("Anna", "B-PER"), ("Bert", "I-PER"), ("went", "O")], [("Oslo", "B-LOC"), ("Rome", "B-LOC")]],
                      [[("Anna", "B-PER"), ("Bert", "E-PER"), ("Oslo", "S-LOC")]],
                      [[("Anna", "B-PER"), ("Bert", "L-PER"), ("Oslo", "U-LOC")]],
                      [[("went", "O")]]):
        data = data_of(sentences)
        assert finetune_ner.check_span_tags(data, "ner") is data


def test_check_span_tags_decides_iob1_over_both_parts_of_a_held_out_split() -> None:
    # the held-out part alone has no I- opening; the training data as a whole is IOB1: both parts are converted
    data = data_of(IOB1_SENTENCES[:2], [[("Anna", "O"), ("John", "I-PER"), ("Mary", "B-PER")]], held_out=True)
    checked = finetune_ner.check_span_tags(data, "ner")
    assert checked.read_as_iob2 == ["train.txt"]
    assert [tags for _, tags in checked.eval] == [["O", "B-PER", "B-PER"]]
    assert checked.labels == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]


BAD_TAGS = {
    "iob1 and iob2 openings": (
        [[("EU", "I-ORG"), ("rejects", "O")], [("Anna", "B-PER"), ("went", "O")]], None,
        "train.txt: the tags follow neither IOB1 nor IOB2: 1 chunk(s) open with I-X, as in IOB1 (first: sentence 1 "
        "('EU rejects'), word 1 'EU' I-ORG at the sentence start), and 1 with B-X after O, another type or the "
        "sentence start, as in IOB2 (first: sentence 2 ('Anna went'), word 1 'Anna' B-PER at the sentence start)"),
    "iobes chunk not closed": (
        [[("Anna", "S-PER")], [("New", "B-LOC"), ("York", "E-LOC")]], [[("New", "B-LOC"), ("York", "I-LOC")]],
        "valid.txt: sentence 1 ('New York'), word 1 'New' B-LOC at the sentence start belongs to no well-formed "
        "IOBES chunk (S-X or B-X I-X* E-X)"),
    "iobes I without B": (
        [[("Anna", "S-PER"), ("went", "O"), ("York", "I-LOC"), ("x", "E-LOC")]], None,
        "train.txt: sentence 1 ('Anna went York x'), word 3 'York' I-LOC after O belongs to no well-formed IOBES"),
    "bilou chunk not closed": (
        [[("Anna", "U-PER"), ("New", "B-LOC"), ("York", "I-LOC")]], None,
        "word 2 'New' B-LOC after U-PER belongs to no well-formed BILOU chunk (U-X or B-X I-X* L-X)"),
    "two schemes": (
        [[("Anna", "S-PER")]], [[("Anna", "U-PER")]], "train.txt is tagged IOBES but valid.txt BILOU"),
    "not spans": (
        [[("Anna", "NOUN")]], None, "train.txt: tag 'NOUN' is not allowed in the IOB2 scheme"),
}


@pytest.mark.parametrize("case", list(BAD_TAGS))
def test_check_span_tags_refuses_tags_that_would_be_mis_scored(case: str) -> None:
    train, eval, message = BAD_TAGS[case]
    with pytest.raises(CommandError) as raised:
        finetune_ner.check_span_tags(data_of(train, eval), "ner")
    assert message in str(raised.value), str(raised.value)


def test_bad_span_tags_fail_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    write_conll(data / "train.txt", [[("Anna", "S-PER")], [("New", "B-LOC"), ("Big", "I-LOC"), ("York", "E-LOC"),
                                                           ("is", "O")]])
    write_conll(data / "valid.txt", [[("New", "B-LOC"), ("York", "I-LOC"), ("is", "O")]])  # LOC never closed
    output = tmp_path / "out"
    assert call(["--model-name-or-path", "lion", "--data-dir", data, "--output-dir", output, *TINY, *FAST]) == 2
    err = capsys.readouterr().err
    assert "bizoo finetune-ner: error: " in err and "belongs to no well-formed IOBES chunk" in err, err
    assert not output.exists()


def test_an_eval_tag_unknown_after_the_conversion_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    write_conll(data / "train.txt", [[("EU", "I-ORG"), ("rejects", "O")]])  # read as B-ORG O
    write_conll(data / "valid.txt", [[("European", "I-ORG"), ("Union", "I-ORG")]])  # B-ORG I-ORG
    output = tmp_path / "out"
    assert call(["--model-name-or-path", "lion", "--data-dir", data, "--output-dir", output, *TINY, *FAST]) == 2
    err = capsys.readouterr().err
    assert "never occur in the training file (once IOB1 tags are read as IOB2" in err and "'I-ORG'" in err, err
    assert not output.exists()


# ---------------------------------------------------------------------------------------------- the score table


def test_the_seqeval_default_mode_row_has_its_own_support(capsys: pytest.CaptureFixture) -> None:
    gold = [["I-PER", "I-PER", "O", "B-LOC"]]  # strict: LOC only; seqeval's default mode: PER and LOC
    scores = finetune_ner.tagging_scores("ner", gold, [["B-PER", "I-PER", "O", "B-LOC"]])
    assert scores["support"] == 1 and scores["conlleval_support"] == 2
    finetune_ner._report_scores("ner", scores)
    rows = {line.split("  ")[0].strip(): line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["overall, strict"][-1] == "1"
    assert rows["overall, seqeval default mode"][-1] == "2"


# ---------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("eval_file", ["valid.txt", "other.txt"])
def test_an_eval_file_beside_a_held_out_split_is_refused(eval_file: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    write_conll(data / "train.txt", [[("Anna", "B-PER")], [("went", "O")]] * 5)
    write_conll(data / eval_file, [[("Anna", "B-PER")]])
    output = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--data-dir", data, "--output-dir", output, *TINY, *FAST,
            "--validation-split-percentage", "20", "--eval-file", eval_file]
    assert call(argv) == 2
    err = capsys.readouterr().err
    assert f"--eval-file '{eval_file}' and --validation-split-percentage 20 both name the evaluation sentences" in err
    assert not output.exists()


def test_an_eval_file_named_beside_a_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--dataset-name", "x/y", "--eval-file", "valid.txt", "--output-dir", output]
    assert call(argv) == 2
    assert "--eval-file: options of files (CoNLL files in --data-dir" in capsys.readouterr().err
    assert not output.exists()


def test_the_default_eval_file_is_valid_txt() -> None:
    parser = argparse.ArgumentParser()
    finetune_ner.add_arguments(parser)
    args = parser.parse_args(["--model-name-or-path", "lion", "--data-dir", "d", "--output-dir", "o"])
    assert args.eval_file is None  # not given: valid.txt, read by load_sentences
    assert finetune_ner.DEFAULT_EVAL_FILE == "valid.txt"
    assert "(default: valid.txt)" in " ".join(parser.format_help().split())


@pytest.mark.parametrize("max_length", [1, 2])
def test_a_max_length_without_room_for_a_word_is_refused(max_length: int, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    write_conll(data / "train.txt", [[("Anna", "B-PER"), ("went", "O")]] * 4)
    write_conll(data / "valid.txt", [[("Anna", "B-PER")]])
    output = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--data-dir", data, "--output-dir", output, *TINY, *FAST,
            "--max-length", max_length]
    assert call(argv) == 2
    err = capsys.readouterr().err
    assert (f"--max-length {max_length} leaves no room for a word: the tokenizer adds 2 special tokens ([CLS] [SEP])"
            in err and "use --max-length 3 or more" in err), err
    assert not output.exists()


def test_the_shortest_max_length_is_one_word_beside_the_special_tokens() -> None:
    wordpiece = train_wordpiece_tokenizer(["Anna went to Oslo"], vocab_size=100, model_max_length=128)
    bounded = bizoo.WordCharTokenizerFast.from_words([["Anna", "went"]], add_sentence_boundaries=True)
    plain = bizoo.WordCharTokenizerFast.from_words([["Anna", "went"]])
    for tokenizer, shortest in ((wordpiece, 3), (bounded, 3), (plain, 1)):
        finetune_ner.check_max_length(shortest, tokenizer)
        encoded = tokenizer([["Anna", "went"]], is_split_into_words=True, truncation=True, max_length=shortest)
        assert 0 in encoded.word_ids(0)  # the first word keeps its first sub-token
        if shortest > 1:
            with pytest.raises(CommandError, match=f"use --max-length {shortest} or more"):
                finetune_ner.check_max_length(shortest - 1, tokenizer)
    with pytest.raises(CommandError, match=r"adds 2 special tokens \(<S> </S>\)"):
        finetune_ner.check_max_length(2, bounded)
