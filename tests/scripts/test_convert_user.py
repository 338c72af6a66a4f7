"""Tests for ``bizoo convert-elmo`` and ``bizoo convert-bigs`` on the file variants a user's released checkpoints come
in: a bilm-tf vocabulary saved with a byte-order mark or with characters str.splitlines takes for line ends, a folder
of the released ELMo files under their own names (elmo_..._options.json), and BiGS weights holding NaN or infinite
values. The ELMo tests that convert read the bilm-tf fixture (BIZOO_TEST_DATA/fixtures/elmo; skipped without it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from bizoo.scripts.cli import main as cli_main
from bizoo.scripts.convert_elmo import read_vocabulary, source_files
from bizoo.scripts.lib.command import CommandError
from tests.conftest import external_path

from tests.scripts import test_convert_bigs as bigs_files


def elmo_fixture() -> Path:
    pytest.importorskip("h5py", reason="convert-elmo reads HDF5 with h5py (pip install bizoo[elmo])")
    return external_path("fixtures", "elmo", "lm_weights.hdf5").parent


# ----------------------------------------------------------------------------------------------------------------
# ELMo: the vocabulary file
# ----------------------------------------------------------------------------------------------------------------


def test_vocabulary_with_a_byte_order_mark_and_crlf_line_ends(tmp_path):
    """A BOM is not part of the first word: <S> on the first line is still <S>, and a first plain word is that
    word, not "\\ufeff" + word (which the tokenizer would never match)."""
    specials_first = tmp_path / "specials_first.txt"
    specials_first.write_bytes("\ufeff<S>\r\n</S>\r\n<UNK>\r\nthe\r\ncat\r\n".encode("utf-8"))
    assert read_vocabulary(specials_first) == ["the", "cat"]
    word_first = tmp_path / "word_first.txt"
    word_first.write_bytes("\ufeffthe\n<S>\n</S>\n<UNK>\ncat\n".encode("utf-8"))
    assert read_vocabulary(word_first) == ["the", "cat"]


def test_vocabulary_lines_end_where_bilm_tf_ends_them(tmp_path):
    """bilm-tf's Vocabulary iterates over the file's lines (\\n, \\r\\n, \\r): a word holding U+2028, U+0085 or a
    form feed is one word, as there, not two (which here made "a" repeat and refused a valid file)."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<S>\n</S>\n<UNK>\na\u2028b\nc\x85d\ne\x0cf\na\nb\n", encoding="utf-8", newline="")
    assert read_vocabulary(vocab) == ["a\u2028b", "c\x85d", "e\x0cf", "a", "b"]
    # line numbers in an error are the file's own
    vocab.write_text("<S>\n</S>\n<UNK>\nx\u2028y\nz\nz\n", encoding="utf-8", newline="")
    with pytest.raises(CommandError, match=r"line 6 repeats 'z' \(first on line 5\)"):
        read_vocabulary(vocab)


def test_converted_tokenizer_reads_a_vocabulary_with_a_byte_order_mark(tmp_path):
    fixture = elmo_fixture()
    words = (fixture / "vocab_test.txt").read_text(encoding="utf-8").splitlines()
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(("\ufeff" + "\r\n".join(words) + "\r\n").encode("utf-8"))
    out = tmp_path / "out"
    code = cli_main([
        "convert-elmo", "--options", str(fixture / "options.json"), "--weights", str(fixture / "lm_weights.hdf5"),
        "--vocab", str(vocab), "--output-dir", str(out),
    ])
    assert code == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    plain = [w for w in words if w not in ("<S>", "</S>", "<UNK>")]
    assert len(tokenizer) == 5 + len(plain)
    assert tokenizer.convert_ids_to_tokens(5) == plain[0]
    assert tokenizer([[plain[0]]], is_split_into_words=True)["input_ids"][0] == [3, 5, 4]  # not [UNK]


# ----------------------------------------------------------------------------------------------------------------
# ELMo: --source with the released files' names
# ----------------------------------------------------------------------------------------------------------------

RELEASED = "elmo_2x4096_512_2048cnn_2xhighway"


def test_source_finds_the_released_options_file(tmp_path):
    (tmp_path / f"{RELEASED}_options.json").write_text("{}")
    (tmp_path / f"{RELEASED}_weights.hdf5").write_bytes(b"w")
    assert source_files(str(tmp_path), None, None, None) == (
        str(tmp_path / f"{RELEASED}_options.json"), str(tmp_path / f"{RELEASED}_weights.hdf5"), None,
    )
    (tmp_path / "options.json").write_text("{}")  # options.json, when there, is the default
    assert source_files(str(tmp_path), None, None, None)[0] == str(tmp_path / "options.json")
    (tmp_path / "options.json").unlink()
    (tmp_path / f"{RELEASED}_5.5B_options.json").write_text("{}")
    with pytest.raises(CommandError, match=r"holds no options.json and 2 \*options.json files .*name the options"):
        source_files(str(tmp_path), None, None, None)
    assert source_files(str(tmp_path), f"{RELEASED}_options.json", None, None)[0] == str(
        tmp_path / f"{RELEASED}_options.json"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "w.hdf5").write_bytes(b"w")
    with pytest.raises(CommandError, match=r"holds no options.json and 0 \*options.json files \(none\)"):
        source_files(str(empty), None, None, None)


def test_converts_a_folder_of_the_released_files_under_their_names(tmp_path):
    fixture = elmo_fixture()
    folder = tmp_path / "elmo-original"
    folder.mkdir()
    shutil.copyfile(fixture / "options.json", folder / f"{RELEASED}_options.json")
    shutil.copyfile(fixture / "lm_weights.hdf5", folder / f"{RELEASED}_weights.hdf5")
    out = tmp_path / "out"
    assert cli_main(["convert-elmo", "--source", str(folder), "--output-dir", str(out)]) == 0
    reference = tmp_path / "reference"
    code = cli_main([
        "convert-elmo", "--options", str(fixture / "options.json"), "--weights", str(fixture / "lm_weights.hdf5"),
        "--output-dir", str(reference),
    ])
    assert code == 0
    got, want = AutoModel.from_pretrained(out).state_dict(), AutoModel.from_pretrained(reference).state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("word_embeddings"))


# ----------------------------------------------------------------------------------------------------------------
# BiGS: non-finite weights
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour, value", [("torch", float("nan")), ("flax", float("inf"))])
def test_bigs_weights_with_non_finite_values_are_refused(tmp_path, capsys, flavour, value):
    if flavour == "torch":
        state = bigs_files.torch_state("mlm")
        state["bigs.encoder.layer.1.dv.weight"][3, 2] = value
        bigs_files.write_torch(tmp_path / "src", state)
        name = "bigs.encoder.layer.1.dv.weight"
    else:
        tree = bigs_files.flax_params("mlm")
        tree["s4_bert"]["encoder"]["layer"]["0"]["bs4"]["log_step"][0] = value
        bigs_files.write_flax(tmp_path / "src", tree)
        name = "s4_bert/encoder/layer/0/bs4/log_step"
    assert cli_main(["convert-bigs", str(tmp_path / "src"), str(tmp_path / "dst")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo convert-bigs: error: ") and f"{name} holds NaN or infinite values" in err, err
    assert not (tmp_path / "dst").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dst")]
