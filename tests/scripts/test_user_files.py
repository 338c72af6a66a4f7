"""The readers of ``lib.data``, ``lib.dataset_readers`` and ``lib.streaming`` on data files as users bring them to
the training commands: TSV files whose texts hold quotes, files that start with a byte-order mark, CoNLL words that
hold a no-break space, class names written with a space around them, and text that is not UTF-8 (an error naming
the file and the line, wherever the byte is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bizoo.scripts import train_tokenizer
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.data import read_conll, read_conllu, read_text_files
from bizoo.scripts.lib.dataset_readers import load_splits, text_classification_data
from bizoo.scripts.lib.streaming import StreamedBlocks, sample_lines
from tests.scripts.conftest import call

BOM = "\ufeff"


def write(path: Path, text: str | bytes, encoding: str = "utf-8") -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding=encoding, newline="")
    return path


def read(train: Path, validation: Path, **kwargs):
    return text_classification_data(load_splits(train_file=str(train), validation_file=str(validation)), **kwargs)


# ------------------------------------------------------------------------------------------------------ TSV files


def test_a_tsv_file_has_no_quoting_rows_are_never_merged(tmp_path):
    """A TSV text that starts with a quote and never closes it took the next rows into its text (read with CSV
    quoting: six rows read as four, their labels gone, no error); one quoted at its start lost its quotes. A TSV file
    is read as GLUE's are (``load_glue_split``, QUOTE_NONE): every row one example, its quotes text."""
    rows = [("\"Great movie", "pos"), ("awful", "neg"), ("fine", "pos"), ("He said \"wow\"", "pos"),
            ("\"Quoted\" at the start", "neg"), ("it is 5\" long", "neg")]
    train = write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows))
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\n\"open\" door\tpos\nshut\tneg\n")
    data = read(train, dev)
    assert [(e["sentence1"], data.label_names[e["label"]]) for e in data.splits["train"]] == rows
    assert [e["sentence1"] for e in data.splits["validation"]] == ["\"open\" door", "shut"]


def test_a_tsv_row_with_a_tab_too_many_is_an_error_naming_the_line(tmp_path):
    """Without quoting a tab inside a text is a column too many: an error naming the file and the line, not a
    row read wrong."""
    train = write(tmp_path / "train.tsv", "sentence\tlabel\ngood\tpos\nbad\ttab\tneg\n")
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\nfine\tpos\n")
    with pytest.raises(CommandError, match=r"--train-file '.*train\.tsv' does not read as csv: .*line 3, saw 3"):
        load_splits(train_file=str(train), validation_file=str(dev))


def test_a_csv_file_keeps_its_quoting(tmp_path):
    """CSV quoting is unchanged: a quoted cell may hold the delimiter, a line break and doubled quotes."""
    train = write(tmp_path / "train.csv", "text,label\n\"a, b\",pos\n\"two\nlines\",neg\n\"say \"\"hi\"\"\",pos\n")
    data = read(train, train)
    assert [e["sentence1"] for e in data.splits["train"]] == ["a, b", "two\nlines", "say \"hi\""]


# -------------------------------------------------------------------------------------------------- class names


def test_class_names_that_differ_only_in_spaces_are_an_error(tmp_path):
    """"pos" and "pos " (a cell written with a space after the comma) were two classes, the model trained on four
    classes for two; refused naming both spellings and where they are."""
    train = write(tmp_path / "train.csv", "text,label\ngood,pos\nbad,neg\nfine,pos \ndull, neg\n")
    dev = write(tmp_path / "dev.csv", "text,label\ngreat,pos\nawful,neg\n")
    with pytest.raises(CommandError, match=r"'label' spells one class two ways, 'pos' \(the train split's row 0\) "
                                           r"and 'pos ' \(the train split's row 2\)"):
        read(train, dev)
    only_dev = write(tmp_path / "train2.csv", "text,label\ngood,pos\nbad,neg\n")
    spaced_dev = write(tmp_path / "dev2.csv", "text,label\ngreat,pos\nawful,neg \n")
    with pytest.raises(CommandError, match=r"'neg' \(the train split's row 1\) and 'neg ' \(the validation split's "
                                           r"row 1\)"):
        read(only_dev, spaced_dev)
    # one spelling throughout, spaces or not, is one class each
    same = write(tmp_path / "same.csv", "text,label\ngood, pos\nbad, neg\n")
    assert read(same, same).label_names == (" neg", " pos")


# ------------------------------------------------------------------------------------------------- CoNLL files


def test_conll_file_with_a_byte_order_mark(tmp_path):
    """A CoNLL file saved with a BOM (Windows editors) made its "-DOCSTART-" line a one-word training sentence
    ("\\ufeff-DOCSTART-" tagged O); the BOM is dropped, as ``read_conllu`` and the GLUE reader drop it."""
    text = "-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n\r\nPeter NNP B-NP B-PER\r\n"
    assert read_conll(write(tmp_path / "bom.txt", BOM + text)) == [(["EU", "rejects"], ["B-ORG", "O"]),
                                                                   (["Peter"], ["B-PER"])]
    plain = write(tmp_path / "plain.txt", BOM + "Paris B-LOC\nrocks O\n")  # no -DOCSTART-: the first word unchanged
    assert read_conll(plain) == [(["Paris", "rocks"], ["B-LOC", "O"])]


def test_conll_word_with_a_unicode_space_is_one_word(tmp_path):
    """Columns are separated by ASCII spaces and tabs: a word holding a no-break space ("10 000" as French writes
    it), a thin or ideographic space or U+0085 was cut in two, its first part kept as the word and the rest lost."""
    words = ["10\u00a0000", "2\u2009500", "東京\u3000都", "a\x85b", "euros"]
    tags = ["B-MONEY", "I-MONEY", "B-LOC", "O", "I-MONEY"]
    lines = [f"{word} X {tag}" for word, tag in zip(words, tags)]
    lines[1] = lines[1].replace(" ", "\t")  # a tab-separated line among space-separated ones
    path = write(tmp_path / "x.txt", "-DOCSTART- O\n\n" + "\n".join(lines) + "\n\n\u00a0\nnext  \t O\n")
    assert read_conll(path) == [(words, tags), (["next"], ["O"])]  # a line of spaces only ends a sentence


def test_conll_lone_cr_line_endings_and_no_final_newline(tmp_path):
    path = write(tmp_path / "mac.txt", "a\tB-LOC\rb\tO\r\rc\tI-PER")
    assert read_conll(path) == [(["a", "b"], ["B-LOC", "O"]), (["c"], ["I-PER"])]


# ------------------------------------------------------------------------------------------ text that is not UTF-8


LATIN = "first line\r\nsecond line\n\ncaf\u00e9 au lait\n".encode("latin-1")


@pytest.mark.parametrize("reader", [
    lambda path: read_text_files([path]),
    lambda path: read_conll(path),
    lambda path: read_conllu(path),
    lambda path: sample_lines([path], 1 << 20),
], ids=["text", "conll", "conllu", "stream-sample"])
def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path, reader):
    """The error names the file, the line (4: CRLF and blank lines counted), the byte of that line and the bytes;
    read_text_files said only "byte 33" of the file, the stream a bare UnicodeDecodeError without the file."""
    path = write(tmp_path / "latin.txt", LATIN)
    with pytest.raises(ValueError, match=r"latin\.txt is not UTF-8 text: line 4, byte 4 of the line, b'\\xe9' "
                                         r"\(invalid continuation byte\); save the file as UTF-8"):
        reader(path)


def test_a_streamed_file_not_utf8_far_from_its_start_names_file_and_line(tmp_path, tokenizer):
    """``pretrain --stream`` reads a file while it trains: a bad byte past the tokenizer's sample came out of the
    data loader as a bare UnicodeDecodeError (no file, no line), whose position is into the decoder's chunk; now a
    ValueError naming the file and the line. Lone CR line endings count as line breaks."""
    lines = [f"line {i} of the corpus with a few words" for i in range(5000)]
    lines[4321] = "caf\u00e9"
    data = "\r".join(lines[:4321]).encode() + b"\r" + "\n".join(lines[4321:]).encode("latin-1")
    path = write(tmp_path / "big.txt", data)
    assert len(sample_lines([path], 100)[0]) < 10  # the sample reads only the first lines: no error there
    blocks = StreamedBlocks([path], tokenizer, max_length=64, seed=0)
    with pytest.raises(ValueError, match=r"big\.txt is not UTF-8 text: line 4322, byte 4 of the line, b'\\xe9'"):
        for _ in blocks:
            pass


# ------------------------------------------------------------------------------------------ byte-order marks


def test_text_files_drop_a_byte_order_mark(tmp_path, tokenizer):
    """A BOM is not text: the first line of a corpus kept it ("\\ufeffThe"), a new word for a word-level vocabulary
    and a character no other line has; in memory and streamed alike."""
    path = write(tmp_path / "bom.txt", "The first line\r\nthe second\n", encoding="utf-8-sig")
    assert read_text_files([path]) == ["The first line", "the second"]
    assert sample_lines([path], 1 << 20) == [["The first line", "the second"]]
    assert path.read_bytes().startswith(BOM.encode())  # what the test wrote


def test_train_tokenizer_on_a_latin1_corpus_names_the_line(tmp_path, capsys):
    corpus = write(tmp_path / "corpus.txt", LATIN)
    assert call(train_tokenizer.main, [corpus, "--output-dir", tmp_path / "tok", "--vocab-size", "100"]) == 2
    assert "corpus.txt is not UTF-8 text: line 4, byte 4 of the line" in capsys.readouterr().err
    assert not (tmp_path / "tok").exists()


# ------------------------------------------------------------------------------------------------- text columns


def test_a_text_column_left_unread_is_warned_about(tmp_path, monkeypatch):
    """question,sentence,label (QNLI's columns): run_glue.py pairs the first two columns, bizoo reads "sentence"
    alone; that choice was silent, a pair task trained on half its text. Now a warning names the unread column and
    --text-columns; a file whose only text is the chosen column (other columns numbers) warns nothing."""
    from bizoo.scripts.lib import dataset_readers

    warnings: list[str] = []
    monkeypatch.setattr(dataset_readers.logger, "warning", warnings.append)
    qnli = write(tmp_path / "qnli.csv", "question,sentence,label\nwho?,Anna did.,yes\nwhere?,It rains.,no\n")
    data = read(qnli, qnli)
    assert data.text_columns == ("sentence",) and len(warnings) == 1
    assert "'sentence' alone: the other text column(s) ['question'] are not read" in warnings[0]
    assert "--text-columns A B" in warnings[0]
    warnings.clear()
    assert read(qnli, qnli, text_columns=["question", "sentence"]).is_pair and not warnings  # named: as asked
    plain = write(tmp_path / "plain.csv", "idx,sentence,label\n0,good,pos\n1,bad,neg\n")
    assert read(plain, plain).text_columns == ("sentence",) and not warnings
