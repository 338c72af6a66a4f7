"""Tests for ``bizoo train-tokenizer``: the trained tokenizer reloads with AutoTokenizer and behaves like
BERT's (special ids, pair templates, offsets, padding, truncation), the output folder appears only when
everything succeeded, and bad input fails with exit code 2 before anything is written."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from bizoo.scripts import train_tokenizer
from bizoo.scripts.lib.wordpiece import MAX_VOCAB_SIZE, SPECIAL_TOKENS, minimum_vocab_size, train_wordpiece_tokenizer
from bizoo.scripts.train_tokenizer import main

WORDS = ("the king queen castle sword Dagger night morning speaks walked softly loudly over under "
         "Scotland England forest battle crown thane witches prophecy blood hands sleep").split()


def generated_lines(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + rng.choice([".", "!", "?", ","])
            for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("corpus")
    lines = generated_lines()
    first, second = folder / "a.txt", folder / "b.txt"
    first.write_text("\n".join(lines[:150]) + "\n\n", encoding="utf-8")
    second.write_text("\r\n".join(lines[150:]), encoding="utf-8")
    return [first, second]


@pytest.fixture(scope="module")
def saved(corpus: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("out") / "tok"
    args = [*map(str, corpus), "--output-dir", str(output), "--vocab-size", "120", "--model-max-length", "12"]
    assert main(args) == 0
    return output


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_reloads_with_special_token_ids(saved: Path) -> None:
    tok = AutoTokenizer.from_pretrained(saved)
    assert tok.is_fast
    ids = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id]
    assert ids == [0, 1, 2, 3, 4]
    assert [tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token] == list(SPECIAL_TOKENS)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(SPECIAL_TOKENS)
    assert tok.model_max_length == 12
    assert len(tok) <= 120
    assert any(token.startswith("##") for token in tok.get_vocab())
    assert sorted(p.name for p in saved.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert siblings(saved) == ["tok"]  # no temporary folder left beside it


def test_single_and_pair_encoding(saved: Path) -> None:
    tok = AutoTokenizer.from_pretrained(saved)
    single = tok("the king speaks")
    assert single["input_ids"][0] == 2 and single["input_ids"][-1] == 3
    assert set(single["token_type_ids"]) == {0}
    pair = tok("the king", "the queen")
    ids, types = pair["input_ids"], pair["token_type_ids"]
    first_sep = ids.index(3)
    assert ids[0] == 2 and ids[-1] == 3 and ids.count(3) == 2
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    assert tok.decode(pair["input_ids"], skip_special_tokens=True) == "the king the queen"


def test_offsets_mask_and_case(saved: Path) -> None:
    tok = AutoTokenizer.from_pretrained(saved)
    text = "Dagger walked, softly."
    enc = tok(text, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    assert offsets[0] == (0, 0) and offsets[-1] == (0, 0)
    pieces = [text[start:end] for start, end in offsets[1:-1]]
    assert "".join(pieces) == text.replace(" ", "")
    assert tok.tokenize("Dagger")[0].startswith("D")  # cased by default
    masked = tok(f"the {tok.mask_token} speaks")["input_ids"]
    assert masked.count(tok.mask_token_id) == 1
    assert tok.convert_tokens_to_ids("[MASK]") == 4


def test_padding_and_truncation(saved: Path) -> None:
    tok = AutoTokenizer.from_pretrained(saved)
    batch = tok(["the king", "the queen walked softly over the castle"], padding=True)
    lengths = [sum(mask) for mask in batch["attention_mask"]]
    assert len(batch["input_ids"][0]) == len(batch["input_ids"][1]) == max(lengths)
    assert batch["input_ids"][0][lengths[0]:] == [0] * (max(lengths) - lengths[0])  # right padding with [PAD]
    long = tok(" ".join(["castle"] * 40), truncation=True)["input_ids"]
    assert len(long) == 12 and long[-1] == 3
    pair = tok(" ".join(["king"] * 20), " ".join(["queen"] * 20), truncation=True, padding="max_length")
    assert len(pair["input_ids"]) == 12 and pair["input_ids"].count(3) == 2


def test_library_function_on_texts_and_lowercase() -> None:
    lines = generated_lines(200, seed=1)
    tok = train_wordpiece_tokenizer(lines, vocab_size=80, lowercase=True, min_frequency=1, model_max_length=64)
    assert tok.model_max_length == 64
    assert all(token == token.lower() for token in tok.get_vocab() if token not in SPECIAL_TOKENS)
    assert tok.tokenize("DAGGER") == tok.tokenize("dagger")
    assert tok("Crown")["input_ids"][:1] == [2]


def test_the_same_texts_give_the_same_vocabulary_ids_included() -> None:
    """The `tokenizers` trainer alone numbers its "##" pieces in hash-map order and breaks ties between equally
    frequent merges by those numbers: on this text, 6 trainings in one process gave 6 different vocabularies. Here
    every training gives the same one, and the "##" pieces reserved for it stay ordinary vocabulary entries."""
    shipped = Path(train_tokenizer.__file__).parent / "corpus" / "shakespeare" / "hamlet.txt"
    lines = shipped.read_text(encoding="utf-8").splitlines()[:400]
    vocabularies = [train_wordpiece_tokenizer(lines, vocab_size=600).get_vocab() for _ in range(4)]
    assert all(vocabulary == vocabularies[0] for vocabulary in vocabularies[1:])
    tokenizer = train_wordpiece_tokenizer(lines, vocab_size=600)
    assert len(tokenizer) == 600
    assert sorted(tokenizer.backend_tokenizer.get_added_tokens_decoder()) == list(range(len(SPECIAL_TOKENS)))
    assert "##e" in tokenizer.get_vocab()
    pieces = tokenizer.tokenize("ere ##e")  # "##e" in raw text is text (#, #, e), not the piece "##e"
    assert pieces[-1] == "e" and pieces.count("##e") == 1 and tokenizer.decode(tokenizer("ere")["input_ids"],
                                                                              skip_special_tokens=True) == "ere"


def test_vocab_size_at_the_minimum_is_exact() -> None:
    lines = generated_lines(100, seed=2)
    needed = minimum_vocab_size(lines)
    assert len(train_wordpiece_tokenizer(lines, vocab_size=needed)) == needed
    with pytest.raises(ValueError, match=f"vocab_size {needed - 1} is too small.*need {needed}"):
        train_wordpiece_tokenizer(lines, vocab_size=needed - 1)


def test_library_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training text"):
        train_wordpiece_tokenizer(["", "  "])
    with pytest.raises(TypeError, match="not a mix"):
        train_wordpiece_tokenizer([tmp_path / "a.txt", "text"])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_wordpiece_tokenizer(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="min_frequency must be an integer >= 1, got 0"):
        train_wordpiece_tokenizer(["a b"], min_frequency=0)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d, c: [str(d / "missing.txt")], "missing.txt' does not exist"),
        (lambda d, c: [str(d / "empty.txt")], "empty.txt is empty"),
        (lambda d, c: [*map(str, c), "--vocab-size", "10"], "vocab_size 10 is too small"),
        (lambda d, c: [*map(str, c), "--vocab-size", str(MAX_VOCAB_SIZE + 1)],
         "vocab_size must be an integer from 6 to 1,000,000"),
        (lambda d, c: [*map(str, c), "--min-frequency", "0"], "min_frequency must be"),
        (lambda d, c: [*map(str, c), "--model-max-length", "0"], "model_max_length must be"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, corpus: list[Path], capsys: pytest.CaptureFixture[str],
                                              make_args, message: str) -> None:
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    output = tmp_path / "out" / "tok"
    code, err = run_cli([*make_args(tmp_path, corpus), "--output-dir", str(output)], capsys)
    assert code == 2
    assert err.startswith("bizoo train-tokenizer: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_existing_output_dir(tmp_path: Path, corpus: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "tok"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    code, err = run_cli([str(corpus[0]), "--output-dir", str(output), "--vocab-size", "100"], capsys)
    assert code == 2 and "already exists and is not empty" in err and "--overwrite" in err
    assert sorted(p.name for p in output.iterdir()) == ["keep.txt"]

    code, _ = run_cli([str(corpus[0]), "--output-dir", str(output), "--vocab-size", "100", "--overwrite"], capsys)
    assert code == 0
    assert sorted(p.name for p in output.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert siblings(output) == ["tok"]

    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert run_cli([str(corpus[0]), "--output-dir", str(empty), "--vocab-size", "100"], capsys)[0] == 0
    assert (empty / "tokenizer.json").is_file()

    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, err = run_cli([str(corpus[0]), "--output-dir", str(a_file), "--vocab-size", "100"], capsys)
    assert code == 2 and "is an existing file" in err


def test_failed_save_leaves_nothing_half_written(
    tmp_path: Path, corpus: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import PreTrainedTokenizerFast

    written: list[Path] = []

    def broken_save(self, save_directory, *args, **kwargs):
        written.append(Path(save_directory))
        (Path(save_directory) / "tokenizer.json").write_text("{partial")
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", broken_save)
    output = tmp_path / "tok"
    assert main([str(corpus[0]), "--output-dir", str(output), "--vocab-size", "100"]) == 2
    # It wrote into a temporary sibling folder, not into the output folder, and cleaned it up.
    assert len(written) == 1 and written[0].parent == tmp_path and written[0].name.startswith(".tok.tmp-")
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_help_and_module_entry_point() -> None:
    parser_help = subprocess.run(
        [sys.executable, "-m", "bizoo.scripts.train_tokenizer", "--help"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120,
    )
    assert parser_help.returncode == 0, parser_help.stderr
    out = parser_help.stdout
    assert out.startswith("usage: bizoo train-tokenizer")
    for option in ("--output-dir", "--vocab-size", "--lowercase", "--min-frequency", "--model-max-length"):
        assert option in out
    assert train_tokenizer.__doc__.splitlines()[0] in out


def test_help_text_matches_the_command() -> None:
    """The description (the module docstring, shown by --help) names only options the command has, and states
    what the training does: the same files and options give the same vocabulary in every run (checked in a second
    process, where the tokenizers library's hash maps are seeded differently)."""
    import argparse
    import re

    parser = argparse.ArgumentParser()
    train_tokenizer.add_arguments(parser)
    known = {option for action in parser._actions for option in action.option_strings}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", train_tokenizer.__doc__))
    assert named and named <= known, f"the help names options the command lacks: {sorted(named - known)}"
    assert "not bit-for-bit reproducible" not in train_tokenizer.__doc__ and "deterministic" in train_tokenizer.__doc__

    lines = generated_lines(120, seed=3)
    script = (
        "import json, sys\nfrom bizoo.scripts.lib.wordpiece import train_wordpiece_tokenizer\n"
        "print(json.dumps(train_wordpiece_tokenizer(json.loads(sys.stdin.read()), vocab_size=90).get_vocab()))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(lines), capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert other.returncode == 0, other.stderr
    here = train_wordpiece_tokenizer(lines, vocab_size=90).get_vocab()
    assert json.loads(other.stdout.strip().splitlines()[-1]) == here
