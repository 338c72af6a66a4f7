"""load_word_vectors: GloVe and word2vec text files written here, each of Lample's fallbacks, the seeded random rows,
and clear errors for bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from bizoo.scripts.lib.word_vectors import WordVectorsReport, candidate_forms, load_word_vectors

VECTORS = {
    "Paris": [1.0, 2.0, 3.0],
    "london": [4.0, 5.0, 6.0],
    "0000": [7.0, 8.0, 9.0],
    "u.s.a-00": [-1.0, -2.0, -3.0],
    "the": [0.5, 0.25, -0.5],
    "The": [9.0, 9.0, 9.0],
    "city\u00a0hall": [0.0, 1.0, 0.0],  # a word with a no-break space, as in GloVe 840B
}
VOCAB = {"[PAD]": 0, "[UNK]": 1, "Paris": 2, "London": 3, "1996": 4, "U.S.A-12": 5, "the": 6, "Berlin": 7,
         "city\u00a0hall": 8}


def write_vectors(path: Path, vectors: dict, header: bool) -> Path:
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    lines += [" ".join([word, *(f"{v:g}" for v in values)]) for word, values in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("header", [False, True], ids=["glove", "word2vec"])
def test_each_fallback_and_the_report(tmp_path, header):
    path = write_vectors(tmp_path / "vectors.txt", VECTORS, header)
    vectors, report = load_word_vectors(path, VOCAB, dim=3, padding_idx=0)
    assert vectors.shape == (9, 3) and vectors.dtype == torch.float32
    assert vectors[2].tolist() == [1, 2, 3]  # exact
    assert vectors[3].tolist() == [4, 5, 6]  # London -> london
    assert vectors[4].tolist() == [7, 8, 9]  # 1996 -> 0000
    assert vectors[5].tolist() == [-1, -2, -3]  # U.S.A-12 -> u.s.a-00
    assert vectors[6].tolist() == [0.5, 0.25, -0.5]  # exact wins over "The"
    assert vectors[8].tolist() == [0, 1, 0]
    assert vectors[0].tolist() == [0, 0, 0]  # padding
    assert (report.exact, report.lowercase, report.digits, report.lowercase_digits) == (3, 1, 1, 1)
    assert report.found == 6 and report.missing_words == ["[PAD]", "[UNK]", "Berlin"] and report.missing == 3
    assert report.coverage == pytest.approx(6 / 9)
    assert report.file_vectors == 7 and report.dim == 3
    assert report.header == ((7, 3) if header else None)
    assert "6 of 9 words found (66.67%): 3 exact, 1 lowercase, 1 digits, 1 lowercase+digits" in str(report)


def test_random_rows_are_seeded_and_scaled(tmp_path):
    path = write_vectors(tmp_path / "v.txt", VECTORS, header=False)
    first, report = load_word_vectors(path, VOCAB)
    again, _ = load_word_vectors(path, VOCAB)
    other, _ = load_word_vectors(path, VOCAB, seed=1)
    assert torch.equal(first, again)
    assert not torch.equal(first[[1, 7]], other[[1, 7]]) and torch.equal(first[2:7], other[2:7])
    found = torch.tensor([VECTORS[w] for w in ("Paris", "london", "0000", "u.s.a-00", "the", "city\u00a0hall")])
    assert report.random_std == pytest.approx(found.double().std(unbiased=False).item(), rel=1e-6)
    expected = torch.randn(9, 3, generator=torch.Generator().manual_seed(0)) * report.random_std
    assert torch.allclose(first[7], expected[7]) and torch.allclose(first[0], expected[0])  # no padding_idx here


def test_nothing_found_uses_unit_scale(tmp_path):
    path = write_vectors(tmp_path / "v.txt", {"x": [1.0, 2.0, 3.0, 4.0]}, header=False)
    vectors, report = load_word_vectors(path, {"a": 0, "b": 1})
    assert report.found == 0 and report.random_std == pytest.approx(0.5)
    assert vectors.shape == (2, 4)


def test_compressed_file_duplicates_and_blank_lines(tmp_path):
    path = tmp_path / "v.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("paris 1 1\n\nparis 2 2\nberlin 3 3 \n")  # a trailing space, as word2vec's C tool writes
    vectors, report = load_word_vectors(path, {"Paris": 0, "berlin": 1})
    assert vectors.tolist() == [[1, 1], [3, 3]] and report.duplicates == 1 and report.file_vectors == 2


def test_candidate_forms():
    assert candidate_forms("Paris") == [("exact", "Paris"), ("lowercase", "paris")]
    assert candidate_forms("A1") == [("exact", "A1"), ("lowercase", "a1"), ("digits", "A0"), ("lowercase_digits", "a0")]
    assert candidate_forms("x") == [("exact", "x")]
    assert isinstance(WordVectorsReport("p", 3, 1), WordVectorsReport)


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        ("", {}, "has no word vectors (the file is empty)"),
        ("2 3\n", {}, "has no word vectors (the file is empty but for its header)"),
        ("a 1 2 3\nb 1 2\n", {}, "line 2: 'b' has 2 values, but the first vector has 3: inconsistent dimensions"),
        ("2 3\na 1 2 3\nb 1 2 3 4\n", {}, "line 3: 'b' has 4 values, but the header has 3"),
        ("3 2\na 1 2\nb 1 2\n", {}, "the header announces 3 vectors but the file has 2"),
        ("a 1 2 3\n", {"dim": 4}, "dim mismatch: ", ),
        ("a 1 x 3\n", {}, "line 1: a value of 'a' is not a number"),
        ("a\n", {}, "line 1: the word 'a' has no values"),
        ("a 1 2\n", {"dim": 0}, "dim must be a positive integer or None, got 0"),
        ("a 1 2\n", {"padding_idx": 5}, "padding_idx must be None or an id from 0 to 1, got 5"),
    ],
)
def test_bad_files(tmp_path, content, kwargs, message):
    path = tmp_path / "v.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_word_vectors(path, {"a": 0, "b": 1}, **kwargs)
    assert message in str(info.value)


def test_missing_binary_and_bad_vocab(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_word_vectors(tmp_path / "nope.txt", {"a": 0})
    with pytest.raises(ValueError, match="is a folder"):
        load_word_vectors(tmp_path, {"a": 0})
    binary = tmp_path / "v.bin"
    binary.write_bytes(b"2 3\na \xff\xfe\x00\x01\x80\x81")
    with pytest.raises(ValueError, match="not a UTF-8 text file .* binary word2vec files are not supported"):
        load_word_vectors(binary, {"a": 0})
    text = write_vectors(tmp_path / "v.txt", {"a": [1.0]}, header=False)
    with pytest.raises(ValueError, match="vocab ids must be the integers 0..1"):
        load_word_vectors(text, {"a": 0, "b": 2})
    with pytest.raises(ValueError, match="non-empty dict"):
        load_word_vectors(text, {})
