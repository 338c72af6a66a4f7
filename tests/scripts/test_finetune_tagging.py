"""``bizoo finetune-ner`` beyond named entities: part-of-speech tagging (--task pos) and chunking (--task chunk).

The CoNLL-U reader (comments, multiword tokens, empty nodes, UPOS or XPOS), the held-out evaluation split
(--validation-split-percentage: deterministic, disjoint, sized), the format chosen by option or suffix, the dataset
the record names, tiny end-to-end runs of pos and chunk writing records with the right metric names, and bad input
(exit code 2 before anything is written). Every file is written here; nothing reads the network.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from transformers import AutoConfig

from bizoo.scripts import finetune_ner
from bizoo.scripts.lib.data import hold_out, read_conll, read_conllu, read_tagged_file, tagged_file_format
from bizoo.scripts.lib.model_defaults import MODEL_DEFAULTS
from tests.scripts.conftest import call as exit_code

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
FAST = ["--max-steps", "2", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "2", "--max-length", "32"]


def call(argv) -> int:
    return exit_code(finetune_ner.main, argv)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- CoNLL-U

# Two sentences in UD's layout: comments, a multiword token (1-2 "Don't" = Do + n't), an empty node (3.1), XPOS.
CONLLU = """# newdoc id = d1
# sent_id = s1
# text = Don't go home.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t3:conj\tCopyOf=3
4\thome\thome\tADV\tNN\t_\t3\tadvmod\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = s2
1\tCats\tcat\tNOUN\tNNS\t_\t2\tnsubj\t_\t_
2\tsleep\tsleep\tVERB\tVBP\t_\t0\troot\t_\t_
"""


def test_conllu_reads_words_and_upos_or_xpos(tmp_path: Path) -> None:
    path = tmp_path / "tiny.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    upos = read_conllu(path)
    # the multiword token's surface form and the empty node are no words; comments are no sentences
    assert upos == [(["Do", "n't", "go", "home", "."], ["AUX", "PART", "VERB", "ADV", "PUNCT"]),
                    (["Cats", "sleep"], ["NOUN", "VERB"])]
    assert read_conllu(path, "xpos") == [(["Do", "n't", "go", "home", "."], ["VBP", "RB", "VB", "NN", "."]),
                                         (["Cats", "sleep"], ["NNS", "VBP"])]
    assert read_tagged_file(path) == upos  # .conllu: CoNLL-U by its suffix
    crlf = tmp_path / "crlf.conllu"
    crlf.write_bytes(CONLLU.replace("\n", "\r\n").encode("utf-8"))
    assert read_conllu(crlf) == upos
    bom = tmp_path / "bom.conllu"  # a byte-order mark before the first comment
    bom.write_bytes(b"\xef\xbb\xbf" + CONLLU.encode("utf-8"))
    assert read_conllu(bom) == upos


def test_the_format_comes_from_the_option_or_the_suffix(tmp_path: Path) -> None:
    assert tagged_file_format("a/en_ewt-ud-dev.conllu") == "conllu"
    assert tagged_file_format("a/DEV.CONLLU") == "conllu"
    assert tagged_file_format("train.txt") == "conll"
    assert tagged_file_format("train.txt", "conllu") == "conllu"
    assert tagged_file_format("x.conllu", "conll") == "conll"
    path = tmp_path / "ud.txt"  # CoNLL-U content in a .txt file: read as CoNLL-U when told
    path.write_text(CONLLU, encoding="utf-8")
    assert read_tagged_file(path, "conllu", "xpos")[1] == (["Cats", "sleep"], ["NNS", "VBP"])
    chunks = tmp_path / "train.txt"  # CoNLL-2000: word POS chunk, the tag in the last column
    chunks.write_text("He PRP B-NP\nreckons VBZ B-VP\n\nthe DT B-NP\ncurrent JJ I-NP\n", encoding="utf-8")
    assert read_tagged_file(chunks) == read_conll(chunks) == [(["He", "reckons"], ["B-NP", "B-VP"]),
                                                              (["the", "current"], ["B-NP", "I-NP"])]
    with pytest.raises(ValueError, match="unknown tagging-file format 'conllx'"):
        tagged_file_format("x.conllu", "conllx")


@pytest.mark.parametrize("text, column, message", [
    ("1\tCats\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n", "xpos",
     r"line 1: the XPOS column \(column 5\) of word 'Cats' is empty \('_'\): this file has no XPOS tags"),
    ("# c\n1\tCats\tcat\t_\tNNS\t_\t0\troot\t_\t_\n", "upos", r"line 2: the UPOS column \(column 4\)"),
    ("1 Cats cat NOUN NNS _ 0 root _ _\n", "upos", r"line 1: expected 10 tab-separated CoNLL-U columns .* found 1"),
    ("1\tCats\tcat\tNOUN\tNNS\t_\t0\troot\t_\n", "upos", r"expected 10 tab-separated CoNLL-U columns .* found 9"),
    ("x\tCats\tcat\tNOUN\tNNS\t_\t0\troot\t_\t_\n", "upos", r"ID 'x' is not a word index"),
    ("# only a comment\n\n", "upos", r"holds no sentences"),
])
def test_conllu_bad_files_name_the_line(tmp_path: Path, text: str, column: str, message: str) -> None:
    path = tmp_path / "bad.conllu"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_conllu(path, column)


def test_conllu_unknown_column_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CoNLL-U tag column 'lemma'; allowed: upos, xpos"):
        read_conllu(tmp_path / "x.conllu", "lemma")
    with pytest.raises(FileNotFoundError, match="CoNLL-U file .* does not exist"):
        read_conllu(tmp_path / "x.conllu")


# ---------------------------------------------------------------------------------------------- held-out split


@pytest.mark.parametrize("n, percentage, size",
                         [(100, 10, 10), (9, 10, 1), (5, 50, 3), (7, 50, 4), (3, 34, 1), (50, 98, 49)])
def test_hold_out_is_deterministic_disjoint_and_sized(n: int, percentage: float, size: int) -> None:
    items = [f"s{i}" for i in range(n)]
    kept, held = hold_out(items, percentage, seed=3)
    assert len(held) == size and len(kept) == n - size
    assert set(kept).isdisjoint(held) and sorted(kept + held) == sorted(items)
    assert kept == [item for item in items if item in kept] and held == [item for item in items if item in held]
    assert hold_out(items, percentage, seed=3) == (kept, held)  # the same seed: the same split
    if size < n - 1:  # another seed draws others (with these sizes, one of a few seeds does)
        assert any(hold_out(items, percentage, seed=s)[1] != held for s in range(4, 8))


@pytest.mark.parametrize("n, percentage, message", [
    (10, 0, r"must be in \(0, 100\), got 0"), (10, 100, r"in \(0, 100\)"), (10, -5, r"in \(0, 100\)"),
    (4, 10, "10% of 4 sentences is 0: nothing to evaluate on"), (3, 90, "90% of 3 sentences is 3: nothing to train on"),
    (50, 99, "99% of 50 sentences is 50"),
])
def test_hold_out_refuses_empty_parts(n: int, percentage: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hold_out(list(range(n)), percentage, seed=0)


# ---------------------------------------------------------------------------------------------- the record's dataset


def test_dataset_card_names_the_data_and_its_true_split(tmp_path: Path) -> None:
    card = finetune_ner.dataset_card
    assert card(tmp_path / "conll2000") == {"name": "CoNLL-2000", "type": "conll2000", "split": "validation"}
    assert card(tmp_path / "ud", "en_ewt-ud-dev.conllu", "en_ewt-ud-train.conllu") == {
        "name": "Universal Dependencies en_ewt", "type": "universal_dependencies", "config": "en_ewt",
        "split": "validation"}
    assert card(tmp_path / "ud", "en_ewt-ud-test.conllu", "en_ewt-ud-train.conllu")["split"] == "test"
    assert card(tmp_path / "mine", "held.txt") == {"name": "mine", "type": "conll", "split": "held"}
    assert card(tmp_path / "mine", "dev.conllu", "train.conllu")["type"] == "conllu"  # a local format, no Hub id
    assert finetune_ner.eval_split("testb.txt") == "test" and finetune_ner.eval_split("dev.conllu") == "validation"
    assert finetune_ner.eval_split("en_gum-ud-train.conllu") == "en_gum-ud-train"


# ---------------------------------------------------------------------------------------------- end to end

WORD_CLASSES = {"DET": "the a this".split(), "NOUN": "cat dog king sword".split(), "VERB": "sees bites holds".split(),
                "ADJ": "old red".split()}
XPOS = {"DET": "DT", "ADJ": "JJ", "NOUN": "NN", "VERB": "VBZ"}


def conllu_sentence(rng: random.Random, number: int) -> str:
    lines = [f"# sent_id = {number}", f"# text = made up {number}"]
    index = 0
    for upos in ("DET", "ADJ", "NOUN", "VERB", "DET", "NOUN")[: rng.randint(3, 6)]:
        index += 1
        word = rng.choice(WORD_CLASSES[upos])
        if upos == "VERB" and rng.random() < 0.3:  # a multiword token line before its words
            lines.append(f"{index}-{index + 1}\t{word}n't\t_\t_\t_\t_\t_\t_\t_\t_")
            lines.append(f"{index}\t{word}\t{word}\tVERB\tVBZ\t_\t0\troot\t_\t_")
            index += 1
            lines.append(f"{index}\tn't\tnot\tPART\tRB\t_\t{index - 1}\tadvmod\t_\t_")
            continue
        lines.append(f"{index}\t{word}\t{word}\t{upos}\t{XPOS[upos]}\t_\t0\tdep\t_\t_")
    return "\n".join(lines) + "\n\n"


@pytest.fixture(scope="module")
def ud_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny treebank in UD's file names (en_tiny-ud-train.conllu, en_tiny-ud-dev.conllu)."""
    root = tmp_path_factory.mktemp("ud")
    rng = random.Random(5)
    (root / "en_tiny-ud-train.conllu").write_text("".join(conllu_sentence(rng, i) for i in range(30)), "utf-8")
    (root / "en_tiny-ud-dev.conllu").write_text("".join(conllu_sentence(rng, i) for i in range(8)), "utf-8")
    return root


@pytest.fixture(scope="module")
def chunk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CoNLL-2000 folder: word POS chunk, a training file only."""
    root = tmp_path_factory.mktemp("data") / "conll2000"  # the folder's name names the dataset
    root.mkdir()
    rng = random.Random(6)
    sentences = []
    for _ in range(40):
        lines = []
        for _ in range(rng.randint(1, 3)):
            lines += [f"{rng.choice(WORD_CLASSES['DET'])} DT B-NP", f"{rng.choice(WORD_CLASSES['NOUN'])} NN I-NP",
                      f"{rng.choice(WORD_CLASSES['VERB'])} VBZ B-VP"]
        sentences.append("\n".join(lines))
    (root / "train.txt").write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
    return root


def test_pos_from_scratch_on_conllu_scores_token_accuracy(ud_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "pos"
    args = ["--task", "pos", "--model-name-or-path", "lion", "--data-dir", ud_dir, "--train-file",
            "en_tiny-ud-train.conllu", "--eval-file", "en_tiny-ud-dev.conllu", "--output-dir", output, *TINY, *FAST]
    assert call(args) == 0
    printed = capsys.readouterr().out
    assert "token accuracy" in printed and "PART" in printed and "strict" not in printed
    config = AutoConfig.from_pretrained(output)
    assert set(config.label2id) == {"DET", "ADJ", "NOUN", "VERB", "PART"}
    assert config.tag_scheme == "none"
    results = read_json(output / "eval_results.json")
    assert results["tagging_task"] == "pos" and 0.0 <= results["metrics"]["accuracy"] <= 1.0
    assert set(results["metrics"]["per_tag"]) <= set(config.label2id)
    assert results["metrics"]["support"] == results["num_eval_words"]
    [record] = read_json(output / "bizoo_results.json")
    assert record["task"] == {"type": "token-classification", "name": "Part-of-speech tagging"}
    assert record["dataset"] == {"name": "Universal Dependencies en_tiny", "type": "universal_dependencies",
                                 "config": "en_tiny", "split": "validation"}
    assert set(record["metrics"]) == {"accuracy"} and record["metric_names"] == {"accuracy": "token accuracy"}


def test_pos_xpos_with_a_crf_trains_without_span_constraints(ud_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    presets = MODEL_DEFAULTS["bilstm_crf"].training_defaults
    monkeypatch.setitem(presets, "pos", {**presets["pos"], "learning_rate": 3e-3})  # told apart from ner's
    output = tmp_path / "xpos"
    args = ["--task", "pos", "--conllu-tags", "xpos", "--model-name-or-path", "bilstm_crf", "--data-dir", ud_dir,
            "--train-file", "en_tiny-ud-train.conllu", "--eval-file", "en_tiny-ud-dev.conllu", "--output-dir",
            output, "--model-config", "word_embedding_size=8", "hidden_size=8", *FAST]
    assert call(args) == 0
    config = AutoConfig.from_pretrained(output)
    assert config.use_crf and config.tag_scheme == "none"
    assert set(config.label2id) == {"DT", "JJ", "NN", "VBZ", "RB"}  # the XPOS column of the fixture
    results = read_json(output / "eval_results.json")
    assert results["learning_rate"] == 3e-3  # the pos preset, where no option is given


def test_chunk_from_scratch_with_a_held_out_split(chunk_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "chunk"
    args = ["--task", "chunk", "--model-name-or-path", "lion", "--data-dir", chunk_dir,
            "--validation-split-percentage", "25", "--seed", "3", "--output-dir", output, *TINY, *FAST]
    assert call(args) == 0
    printed = capsys.readouterr().out
    assert "overall, strict" in printed and "overall, seqeval default mode" in printed and "NP" in printed
    assert "train.txt (held-out 25%, seed 3)" in printed
    results = read_json(output / "eval_results.json")
    assert results["num_train_examples"] == 30 and results["num_eval_examples"] == 10
    assert results["held_out"] == {"percentage": 25.0, "seed": 3, "of": "train.txt"}
    kept, held = hold_out(read_conll(chunk_dir / "train.txt"), 25, seed=3)
    assert results["num_eval_words"] == sum(len(words) for words, _ in held)  # the same sentences, drawn with --seed
    [record] = read_json(output / "bizoo_results.json")
    assert record["task"] == {"type": "token-classification", "name": "Chunking"}
    assert record["dataset"] == {"name": "CoNLL-2000", "type": "conll2000", "split": "held-out part of train"}
    assert record["metric_names"] == {
        "f1": "strict span F1 (micro)", "precision": "strict span precision", "recall": "strict span recall",
        "conlleval_f1": "span F1 (seqeval default mode)",
        "conlleval_precision": "span precision (seqeval default mode)",
        "conlleval_recall": "span recall (seqeval default mode)"}
    assert set(record["metrics"]) == set(record["metric_names"])
    assert record["metrics"]["conlleval_f1"] == results["metrics"]["conlleval_f1"]
    assert set(results["metrics"]["conlleval_per_type"]) <= {"NP", "VP"}


def test_tagging_scores_per_task() -> None:
    gold = [["B-NP", "I-NP", "O", "B-VP"]]
    predicted = [["O", "I-NP", "O", None]]  # I-NP after O: no chunk when strict, NP(1) in seqeval's default mode
    scores = finetune_ner.tagging_scores("chunk", gold, predicted)
    assert scores["f1"] == 0.0 and scores["support"] == 2
    assert scores["conlleval_precision"] == 0.0 and scores["conlleval_recall"] == 0.0
    predicted = [["B-NP", "I-NP", "O", None]]
    scores = finetune_ner.tagging_scores("ner", gold, predicted)
    assert scores["precision"] == 1.0 and scores["recall"] == 0.5 and scores["conlleval_recall"] == 0.5
    gold = [["I-NP", "I-NP", "O"]]  # no chunk when strict, NP(0-2) in seqeval's default mode
    scores = finetune_ner.tagging_scores("chunk", gold, [["I-NP", "I-NP", None]])
    assert scores["support"] == 0 and scores["f1"] == 0.0 and scores["conlleval_f1"] == 1.0
    assert scores["conlleval_per_type"] == {"NP": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}
    scores = finetune_ner.tagging_scores("pos", [["DET", "NOUN", "VERB"]], [["DET", "VERB", None]])
    assert scores["accuracy"] == pytest.approx(1 / 3) and scores["per_tag"]["VERB"]["precision"] == 0.0
    assert finetune_ner.eval_metrics("pos") == ("accuracy",) and finetune_ner.eval_metrics("chunk")[0] == "f1"


# ---------------------------------------------------------------------------------------------- bad input

BAD = ["unknown task", "conllu without xpos", "pos with a span scheme", "chunk with pos tags",
       "conllu tags of a conll file", "held out and eval file", "held out too small", "percentage out of range"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_fails_before_anything_is_written(case: str, ud_dir: Path, chunk_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.conllu").write_text("1\tCats\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    (bad / "valid.conllu").write_text("1\tDogs\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    (bad / "tiny.txt").write_text("Cats NNS B-NP\n\nDogs NNS B-NP\n", encoding="utf-8")
    ud = ["--data-dir", ud_dir, "--train-file", "en_tiny-ud-train.conllu", "--eval-file", "en_tiny-ud-dev.conllu"]
    base = ["--model-name-or-path", "lion", *TINY, *FAST]
    argv, message = {
        "unknown task": (["--task", "srl", *ud], "argument --task: invalid choice: 'srl'"),
        "conllu without xpos": (["--task", "pos", "--conllu-tags", "xpos", "--data-dir", bad, "--train-file",
                                 "train.conllu", "--eval-file", "valid.conllu"],
                                "the XPOS column (column 5) of word 'Cats' is empty"),
        "pos with a span scheme": (["--task", "pos", *ud, "--model-config", "tag_scheme=BIO"],
                                   "--task pos: --model-config tag_scheme=BIO"),
        "chunk with pos tags": (["--task", "chunk", *ud],
                                "tag 'DET' is not allowed in the IOB2 scheme (prefixes B, I, O); --task chunk scores "
                                "spans (tags that are not spans, such as part-of-speech tags: --task pos)"),
        "conllu tags of a conll file": (["--data-dir", chunk_dir, "--validation-split-percentage", "10",
                                         "--conllu-tags", "upos"], "--conllu-tags upos picks the tag column"),
        "held out and eval file": (["--data-dir", bad, "--train-file", "tiny.txt", "--eval-file", "tiny.txt",
                                    "--validation-split-percentage", "50"], "both name the evaluation sentences"),
        "held out too small": (["--data-dir", bad, "--train-file", "tiny.txt", "--validation-split-percentage", "10"],
                               "--validation-split-percentage 10: 10% of 2 sentences is 0: nothing to evaluate on"),
        "percentage out of range": (["--data-dir", chunk_dir, "--validation-split-percentage", "100"],
                                    "--validation-split-percentage must be in (0, 100), got 100"),
    }[case]
    output = tmp_path / "out"
    assert call([*base, *argv, "--output-dir", output]) == 2
    err = capsys.readouterr().err
    assert "bizoo finetune-ner: error: " in err or case == "unknown task", err
    assert message in err, err
    assert not output.exists()


def test_a_dataset_without_validation_split_holds_out_part_of_train(tmp_path: Path, synthetic,
                                                                    capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "tagged"
    folder.mkdir()
    rng = random.Random(4)
    rows = [{"tokens": [word for word, _ in sentence], "ner_tags": [tag for _, tag in sentence]}
            for sentence in (synthetic.conll_sentence(rng) for _ in range(20))]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    output = tmp_path / "out"
    argv = ["--model-name-or-path", "lion", "--dataset-name", folder, "--output-dir", output, *TINY, *FAST]
    assert call(argv) == 2
    err = capsys.readouterr().err
    assert "has no validation split" in err and "hold out a part of train with --validation-split-percentage" in err
    assert not output.exists()
    assert call([*argv, "--validation-split-percentage", "20"]) == 0
    results = read_json(output / "eval_results.json")
    assert results["num_train_examples"] == 16 and results["num_eval_examples"] == 4
    [record] = read_json(output / "bizoo_results.json")
    assert record["dataset"]["split"] == "held-out part of train"
