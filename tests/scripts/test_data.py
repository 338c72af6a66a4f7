"""Tests for bizoo.scripts.lib.data: the GLUE table and TSV reader, the CoNLL reader, plain-text corpora.

Every reader is tested on small files written to tmp_path in the layout of the real ones. One slow test
reads the real data (``BIZOO_TEST_DATA``: tests/conftest.py's ``external_path``) when it is there and checks its
row counts.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from bizoo.scripts.lib import data
from tests.conftest import external_path
from bizoo.scripts.lib.data import (
    GLUE_TASKS,
    conll_label_list,
    glue_task,
    load_glue_from_hub,
    load_glue_split,
    read_conll,
    read_text_files,
    shipped_corpus_files,
)



def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def tsv(*rows: tuple[str, ...]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


# ---------------------------------------------------------------------------------------------- table


@pytest.mark.parametrize(
    "spelling, name",
    [("sst2", "SST-2"), ("SST-2", "SST-2"), ("sst-2", "SST-2"), ("sts-b", "STS-B"), ("stsb", "STS-B"),
     ("STSB", "STS-B"), ("cola", "CoLA"), (" MNLI ", "MNLI"), ("qnli", "QNLI"), ("Rte", "RTE"), ("wnli", "WNLI"),
     ("qqp", "QQP"), ("mrpc", "MRPC")],
)
def test_glue_task_names_are_forgiving(spelling: str, name: str) -> None:
    assert glue_task(spelling).name == name


def test_unknown_glue_task_lists_the_allowed_names() -> None:
    with pytest.raises(ValueError, match="unknown GLUE task 'squad'") as err:
        glue_task("squad")
    for name in GLUE_TASKS:
        assert name in str(err.value)


def test_glue_table_holds_the_official_facts() -> None:
    assert list(GLUE_TASKS) == ["CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI"]
    assert glue_task("cola").metrics == ("matthews_correlation",)
    assert glue_task("mrpc").metrics == glue_task("qqp").metrics == ("f1", "accuracy")
    assert glue_task("stsb").metrics == ("pearson", "spearman")
    for name in ("SST-2", "MNLI", "QNLI", "RTE", "WNLI"):
        assert GLUE_TASKS[name].metrics == ("accuracy",)
    mnli = glue_task("mnli")
    assert mnli.tsv_labels == ("contradiction", "entailment", "neutral")
    assert mnli.eval_splits == ("dev_matched", "dev_mismatched")
    assert set(mnli.splits.values()) >= {"train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"}
    assert glue_task("rte").tsv_labels == glue_task("qnli").tsv_labels == ("entailment", "not_entailment")
    stsb = glue_task("stsb")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.id2label == {}
    assert glue_task("mnli").num_labels == 3 and glue_task("cola").id2label == {0: "unacceptable", 1: "acceptable"}
    assert [t.is_pair for t in GLUE_TASKS.values()] == [False, False, True, True, True, True, True, True, True]
    assert {t.hub_config for t in GLUE_TASKS.values()} == {
        "cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert data.GLUE_HUB_DATASET == "nyu-mll/glue"


# ---------------------------------------------------------------------------------------------- GLUE TSVs


def test_cola_has_no_header_and_reads_by_position(tmp_path: Path) -> None:
    rows = tsv(("gj04", "1", "", "The sailors rode."), ("gj04", "0", "*", "Rode sailors the."))
    write(tmp_path / "CoLA" / "train.tsv", rows)
    assert load_glue_split("cola", tmp_path, "train") == [
        {"sentence1": "The sailors rode.", "label": 1},
        {"sentence1": "Rode sailors the.", "label": 0},
    ]


def test_cola_test_split_has_a_header_and_no_labels(tmp_path: Path) -> None:
    write(tmp_path / "CoLA" / "test.tsv", tsv(("index", "sentence"), ("0", "Bill whistled past the house.")))
    assert load_glue_split("CoLA", tmp_path, "test") == [{"sentence1": "Bill whistled past the house.", "label": None}]


def test_sst2_keeps_quotes_literally(tmp_path: Path) -> None:
    rows = tsv(("sentence", "label"), ('it \'s a "charming journey . ', "1"), ("bleak ", "0"))
    write(tmp_path / "SST-2" / "dev.tsv", rows)
    rows = load_glue_split("sst-2", tmp_path, "dev")
    assert rows == [{"sentence1": 'it \'s a "charming journey . ', "label": 1}, {"sentence1": "bleak ", "label": 0}]


def test_mrpc_starts_with_a_bom(tmp_path: Path) -> None:
    header = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    text = tsv(header, ("1", "11", "12", 'He said "no".', "He refused."))
    write(tmp_path / "MRPC" / "train.tsv", "\ufeff" + text)
    assert load_glue_split("mrpc", tmp_path, "train") == [
        {"sentence1": 'He said "no".', "sentence2": "He refused.", "label": 1}]


def test_stsb_score_is_the_last_column(tmp_path: Path) -> None:
    header = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score")
    row = ("0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane.", "An air plane.", "3.800")
    write(tmp_path / "STS-B" / "dev.tsv", tsv(header, row))
    expected = [{"sentence1": "A plane.", "sentence2": "An air plane.", "label": 3.8}]
    assert load_glue_split("stsb", tmp_path, "dev") == expected


@pytest.mark.parametrize("task, header", [("QNLI", ("index", "question", "sentence", "label")),
                                          ("RTE", ("index", "sentence1", "sentence2", "label"))])
def test_nli_string_labels(tmp_path: Path, task: str, header: tuple[str, ...]) -> None:
    write(tmp_path / task / "dev.tsv",
          tsv(header, ("0", "a?", "b.", "entailment"), ("1", "c?", "d.", "not_entailment")))
    rows = load_glue_split(task, tmp_path, "dev")
    assert rows == [{"sentence1": "a?", "sentence2": "b.", "label": 0},
                    {"sentence1": "c?", "sentence2": "d.", "label": 1}]


def test_mnli_layout_with_gold_label_last(tmp_path: Path) -> None:
    header = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "label2", "label3",
              "label4", "label5", "gold_label")
    row = ("0", "1", "1e", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)", "Premise.", "Hypothesis.",
           "neutral", "neutral", "entailment", "neutral", "neutral", "neutral")
    write(tmp_path / "MNLI" / "dev_mismatched.tsv", tsv(header, row))
    expected = [{"sentence1": "Premise.", "sentence2": "Hypothesis.", "label": 2}]
    assert load_glue_split("mnli", tmp_path, "dev_mismatched") == expected
    assert load_glue_split("mnli", tmp_path, "validation_mismatched") == expected
    with pytest.raises(ValueError, match="dev_matched, dev_mismatched"):
        load_glue_split("mnli", tmp_path, "dev")


def test_qqp_and_wnli_layouts(tmp_path: Path) -> None:
    write(tmp_path / "QQP" / "train.tsv",
          tsv(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"), ("7", "1", "2", "Why?", "How?", "1")))
    write(tmp_path / "WNLI" / "train.tsv", tsv(("index", "sentence1", "sentence2", "label"), ("0", "A.", "B.", "0")))
    assert load_glue_split("qqp", tmp_path, "train") == [{"sentence1": "Why?", "sentence2": "How?", "label": 1}]
    assert load_glue_split("wnli", tmp_path, "train") == [{"sentence1": "A.", "sentence2": "B.", "label": 0}]


def test_test_split_has_no_labels(tmp_path: Path) -> None:
    write(tmp_path / "RTE" / "test.tsv", tsv(("index", "sentence1", "sentence2"), ("0", "A.", "B.")))
    assert load_glue_split("rte", tmp_path, "test") == [{"sentence1": "A.", "sentence2": "B.", "label": None}]


def test_data_dir_may_be_the_task_folder_or_use_lower_case(tmp_path: Path) -> None:
    write(tmp_path / "rte" / "dev.tsv",
          tsv(("index", "sentence1", "sentence2", "label"), ("0", "A.", "B.", "entailment")))
    assert load_glue_split("RTE", tmp_path, "dev")[0]["label"] == 0
    assert load_glue_split("RTE", tmp_path / "rte", "validation")[0]["label"] == 0


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood\t1\n\nbad\t0\n")
    assert [r["label"] for r in load_glue_split("sst2", tmp_path, "train")] == [1, 0]


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_glue_split("rte", tmp_path / "nowhere", "dev")
    with pytest.raises(FileNotFoundError, match="RTE/ holding dev.tsv"):
        load_glue_split("rte", tmp_path, "dev")
    write(tmp_path / "RTE" / "train.tsv", tsv(("index", "sentence1", "sentence2", "label")))
    with pytest.raises(FileNotFoundError, match="dev.tsv"):
        load_glue_split("rte", tmp_path, "dev")


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split 'dve'.*train, dev, test"):
        load_glue_split("rte", tmp_path, "dve")


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    write(tmp_path / "RTE" / "dev.tsv", "")
    with pytest.raises(ValueError, match=r"dev.tsv is empty"):
        load_glue_split("rte", tmp_path, "dev")
    write(tmp_path / "RTE" / "dev.tsv", tsv(("index", "sentence1", "sentence2", "label")))
    with pytest.raises(ValueError, match="holds no examples"):
        load_glue_split("rte", tmp_path, "dev")
    write(tmp_path / "CoLA" / "dev.tsv", "")
    with pytest.raises(ValueError, match="holds no examples"):
        load_glue_split("cola", tmp_path, "dev")


def test_too_few_columns_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "RTE" / "dev.tsv",
          tsv(("index", "sentence1", "sentence2", "label"), ("0", "A.", "B.", "entailment"), ("1", "A.", "B.")))
    with pytest.raises(ValueError, match=r"dev.tsv, line 3: expected at least 4 tab-separated columns .* found 3"):
        load_glue_split("rte", tmp_path, "dev")
    write(tmp_path / "CoLA" / "train.tsv", tsv(("gj04", "1", "", "Fine."), ("gj04", "1")))
    with pytest.raises(ValueError, match=r"train.tsv, line 2: expected at least 4"):
        load_glue_split("cola", tmp_path, "train")


def test_unknown_label_names_line_and_allowed(tmp_path: Path) -> None:
    write(tmp_path / "RTE" / "dev.tsv", tsv(("index", "sentence1", "sentence2", "label"), ("0", "A.", "B.", "maybe")))
    with pytest.raises(ValueError, match=r"line 2: unknown RTE label 'maybe'; allowed: 'entailment', 'not_entailment'"):
        load_glue_split("rte", tmp_path, "dev")
    write(tmp_path / "SST-2" / "dev.tsv", tsv(("sentence", "label"), ("ok", "1"), ("bad", "2")))
    with pytest.raises(ValueError, match=r"line 3: unknown SST-2 label '2'"):
        load_glue_split("sst2", tmp_path, "dev")


@pytest.mark.parametrize("score", ["high", "5.5", "-0.1", "nan"])
def test_bad_stsb_score(tmp_path: Path, score: str) -> None:
    write(tmp_path / "STS-B" / "dev.tsv", tsv(("sentence1", "sentence2", "score"), ("A.", "B.", score)))
    with pytest.raises(ValueError, match=r"line 2: STS-B score .* is not a number between 0 and 5"):
        load_glue_split("stsb", tmp_path, "dev")


def test_header_missing_a_column(tmp_path: Path) -> None:
    write(tmp_path / "RTE" / "dev.tsv",
          tsv(("index", "premise", "sentence2", "label"), ("0", "A.", "B.", "entailment")))
    with pytest.raises(ValueError, match=r"line 1: the header lacks column\(s\) \['sentence1'\]"):
        load_glue_split("rte", tmp_path, "dev")


class FakeHubSplit(list):
    """Stands in for a datasets.Dataset: iterable rows plus ``features``."""

    def __init__(self, rows: list[dict], label_names: list[str] | None) -> None:
        super().__init__(rows)
        self.features = {"label": SimpleNamespace(names=label_names)}


def test_load_glue_from_hub_maps_hub_classes_to_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name, split, cache_dir=None):
        calls.append((path, name, split))
        rows = [{"premise": "P.", "hypothesis": "H.", "label": 0, "idx": 0},
                {"premise": "Q.", "hypothesis": "I.", "label": 2, "idx": 1},
                {"premise": "R.", "hypothesis": "J.", "label": -1, "idx": 2}]
        return FakeHubSplit(rows, ["entailment", "neutral", "contradiction"])  # the Hub's MNLI order

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_glue_from_hub("MNLI", "dev_matched")
    assert calls == [("nyu-mll/glue", "mnli", "validation_matched")]
    assert rows == [{"sentence1": "P.", "sentence2": "H.", "label": 1},  # entailment
                    {"sentence1": "Q.", "sentence2": "I.", "label": 0},  # contradiction
                    {"sentence1": "R.", "sentence2": "J.", "label": None}]


def test_load_glue_from_hub_regression_and_single_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def fake_load_dataset(path, name, split, cache_dir=None):
        if name == "stsb":
            return FakeHubSplit([{"sentence1": "A.", "sentence2": "B.", "label": 4.25, "idx": 0}], None)
        return FakeHubSplit([{"sentence": "Fine.", "label": 1, "idx": 0}], ["unacceptable", "acceptable"])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_glue_from_hub("sts-b", "validation") == [{"sentence1": "A.", "sentence2": "B.", "label": 4.25}]
    assert load_glue_from_hub("cola", "train") == [{"sentence1": "Fine.", "label": 1}]


# ---------------------------------------------------------------------------------------------- CoNLL

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

"""


def test_read_conll(tmp_path: Path) -> None:
    sentences = read_conll(write(tmp_path / "train.txt", CONLL))
    assert sentences == [
        (["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
    ]


def test_read_conll_tabs_crlf_no_trailing_blank_and_extra_blank_lines(tmp_path: Path) -> None:
    text = "a\tX\tB-LOC\r\nb\tX\tO\r\n\r\n\r\n-DOCSTART-\tO\r\nc d\tI-PER"
    assert read_conll(write(tmp_path / "x.txt", text)) == [(["a", "b"], ["B-LOC", "O"]), (["c"], ["I-PER"])]


def test_read_conll_two_columns(tmp_path: Path) -> None:
    assert read_conll(write(tmp_path / "x.txt", "Paris B-LOC\nrocks O\n")) == [(["Paris", "rocks"], ["B-LOC", "O"])]


def test_read_conll_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_conll(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="holds no sentences"):
        read_conll(write(tmp_path / "empty.txt", ""))
    with pytest.raises(ValueError, match="holds no sentences"):
        read_conll(write(tmp_path / "docstart.txt", "-DOCSTART- -X- -X- O\n\n\n"))
    with pytest.raises(ValueError, match=r"one.txt, line 3: expected at least 2 .* found 1: 'lonely'"):
        read_conll(write(tmp_path / "one.txt", "a B-LOC\n\nlonely\n"))
    with pytest.raises(ValueError, match="is a folder"):
        read_conll(tmp_path)


def test_conll_label_list_order() -> None:
    sentences = [(["w"] * 5, ["I-PER", "B-MISC", "O", "B-LOC", "I-LOC"]), (["w"] * 3, ["B-PER", "I-MISC", "B-ORG"])]
    assert conll_label_list(sentences) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "B-PER", "I-PER"]
    iobes = [(["w"] * 5, ["S-LOC", "E-LOC", "I-LOC", "B-LOC", "O"])]
    assert conll_label_list(iobes) == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    assert conll_label_list([(["w", "w"], ["NN", "DT"])]) == ["DT", "NN"]  # no "O" when none is seen


# ---------------------------------------------------------------------------------------------- plain text


def test_read_text_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "  first line  \n\n\t\nsecond\r\n")
    b = write(tmp_path / "b.txt", "third")
    assert read_text_files([a, b]) == ["first line", "second", "third"]
    assert read_text_files(str(b)) == ["third"]


def test_read_text_files_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no text files given"):
        read_text_files([])
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_text_files([tmp_path / "nope.txt"])
    with pytest.raises(ValueError, match=r"blank.txt is empty"):
        read_text_files([write(tmp_path / "blank.txt", " \n\n \t\n")])
    with pytest.raises(ValueError, match=r"latin.txt is not UTF-8"):
        read_text_files([write(tmp_path / "latin.txt", "café\n", encoding="latin-1")])


def test_shipped_corpus_files() -> None:
    eval_files = shipped_corpus_files("eval")
    train_files = shipped_corpus_files("train")
    assert [f.name for f in eval_files] == ["macbeth.txt"]
    assert train_files == shipped_corpus_files()
    assert len(train_files) >= 5 and "macbeth.txt" not in {f.name for f in train_files}
    assert all(f.is_file() and f.stat().st_size > 0 for f in eval_files + train_files)
    assert train_files == sorted(train_files)
    with pytest.raises(ValueError, match="unknown corpus split 'test'"):
        shipped_corpus_files("test")


# ---------------------------------------------------------------------------------------------- real data

GLUE_COUNTS = {
    ("CoLA", "train"): 8551, ("CoLA", "dev"): 1043,
    ("SST-2", "train"): 67349, ("SST-2", "dev"): 872,
    ("MRPC", "train"): 3668, ("MRPC", "dev"): 408,
    ("STS-B", "train"): 5749, ("STS-B", "dev"): 1500,
    ("RTE", "train"): 2490, ("RTE", "dev"): 277,
    ("QNLI", "dev"): 5463,
}
CONLL_COUNTS = {"train.txt": (14041, 203621), "valid.txt": (3250, 51362)}


@pytest.mark.slow
def test_real_data_row_counts() -> None:
    glue = external_path("data", "glue")
    seen = set()
    for folder in sorted(p for p in glue.iterdir() if p.is_dir()):
        task = glue_task(folder.name)
        for split, filename in task.splits.items():
            if (folder / filename).is_file():
                rows = load_glue_split(task.name, glue, split)
                seen.add((task.name, split))
                if (task.name, split) in GLUE_COUNTS:
                    assert len(rows) == GLUE_COUNTS[task.name, split], (task.name, split)
                if task.is_regression:
                    assert all(0.0 <= r["label"] <= 5.0 for r in rows)
                elif not split.startswith("test"):
                    assert {r["label"] for r in rows} == set(range(task.num_labels))
    assert seen >= set(GLUE_COUNTS), sorted(set(GLUE_COUNTS) - seen)
    conll = external_path("data", "conll2003")
    for filename, (n_sentences, n_tokens) in CONLL_COUNTS.items():
        sentences = read_conll(conll / filename)
        assert len(sentences) == n_sentences
        assert sum(len(words) for words, _ in sentences) == n_tokens
        assert all(len(words) == len(tags) for words, tags in sentences)
        assert conll_label_list(sentences) == [
            "O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
