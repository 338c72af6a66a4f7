"""Tests for bizoo.scripts.lib.metrics against independent oracles.

scikit-learn (matthews_corrcoef, f1_score, accuracy_score, precision_recall_fscore_support), scipy (pearsonr,
spearmanr) and seqeval (strict IOB2 / IOBES / BILOU classification reports, and its default conlleval-style mode)
are test-only dependencies: the implementations under test use none of them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from seqeval.metrics import classification_report
from seqeval.scheme import BILOU, IOB1, IOB2, IOBES, Entities
from sklearn import metrics as skm

from bizoo.scripts.lib.metrics import (
    accuracy,
    chunk_openings,
    conlleval_span_f1,
    f1_binary,
    f1_macro,
    glue_metrics,
    iob1_to_iob2,
    matthews_corrcoef,
    pearson,
    spearman,
    span_f1,
    span_scheme,
    text_classification_metrics,
    token_accuracy,
    unchunked_tags,
)

SEEDS = range(40)


def close(ours: float, theirs: float) -> bool:
    if math.isnan(theirs):
        return math.isnan(ours)
    return ours == pytest.approx(float(theirs), abs=1e-12)


# ---------------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 60)), int(rng.integers(2, 5))
    labels, preds = rng.integers(0, k, n), rng.integers(0, k, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert close(matthews_corrcoef(preds, labels), skm.matthews_corrcoef(labels, preds))
        assert close(accuracy(preds, labels), skm.accuracy_score(labels, preds))
        binary_labels, binary_preds = labels % 2, preds % 2
        assert close(f1_binary(binary_preds, binary_labels), skm.f1_score(binary_labels, binary_preds, zero_division=0))
        assert close(matthews_corrcoef(binary_preds, binary_labels), skm.matthews_corrcoef(binary_labels, binary_preds))


@pytest.mark.parametrize("seed", range(20))
def test_macro_f1_and_the_custom_dataset_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 60)), int(rng.integers(2, 6))
    labels, logits = rng.integers(0, k, n), rng.normal(size=(n, k))
    if seed % 2:  # a class the labels never name and the model never predicts
        labels, logits = np.minimum(labels, k - 2), np.concatenate([logits[:, :-1], np.full((n, 1), -np.inf)], 1)
    preds = logits.argmax(-1)
    # scikit-learn's own rule: the mean over the classes in the labels or the predictions
    macro = skm.f1_score(labels, preds, average="macro", zero_division=0)
    assert close(f1_macro(preds, labels), macro)
    assert text_classification_metrics(logits, labels, k) == pytest.approx(
        {"accuracy": skm.accuracy_score(labels, preds), "f1": macro}, abs=1e-12)
    scores, gold = rng.normal(size=(n, 1)), rng.normal(size=n)
    if n > 2:
        got = text_classification_metrics(scores, gold, 0)
        assert close(got["pearson"], stats.pearsonr(scores[:, 0], gold)[0])
        assert close(got["spearman"], stats.spearmanr(scores[:, 0], gold)[0])


def brute_force_macro_f1(labels: list[int], preds: list[int]) -> float:
    """Macro F1 from its definition: per class of labels | preds, F1 = 2PR / (P + R) from counted pairs."""
    scores = []
    for k in sorted(set(labels) | set(preds)):
        pairs = list(zip(labels, preds))
        tp = sum(1 for t, p in pairs if t == k and p == k)
        predicted, actual = sum(1 for _, p in pairs if p == k), sum(1 for t, _ in pairs if t == k)
        precision, recall = (tp / predicted if predicted else 0.0), (tp / actual if actual else 0.0)
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


@pytest.mark.parametrize(
    "labels, preds, num_classes, expected",
    [
        ([0, 0, 1], [0, 0, 1], 5, 1.0),  # classes 2, 3, 4 occur nowhere: not averaged (it was 2/5)
        ([0, 1, 0, 1], [0, 1, 1, 1], 3, (2 / 3 + 4 / 5) / 2),  # class 2 absent: the mean over 0 and 1
        ([2, 2, 2], [2, 2, 0], 4, (0.0 + 0.8) / 2),  # class 0 only predicted: F1 0.0, averaged
        ([3, 3], [3, 3], 4, 1.0),  # one class present
    ],
)
def test_macro_f1_averages_over_the_classes_present(labels: list[int], preds: list[int], num_classes: int,
                                                    expected: float) -> None:
    assert f1_macro(preds, labels) == pytest.approx(expected, abs=1e-12)
    assert close(f1_macro(preds, labels), brute_force_macro_f1(labels, preds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert close(f1_macro(preds, labels), skm.f1_score(labels, preds, average="macro"))
    logits = np.eye(num_classes)[preds]  # (N, K) one-hot: argmax = preds
    assert text_classification_metrics(logits, labels, num_classes)["f1"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_macro_f1_matches_the_brute_force_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 30)), int(rng.integers(2, 8))
    drawn = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)  # often not all of the k classes
    labels, preds = rng.choice(drawn, n).tolist(), rng.choice(drawn, n).tolist()
    assert close(f1_macro(preds, labels), brute_force_macro_f1(labels, preds))


@pytest.mark.parametrize(
    "labels, preds",
    [
        ([1, 1, 1, 1], [1, 1, 1, 1]),  # one class everywhere: MCC undefined -> 0
        ([0, 1, 0, 1], [1, 1, 1, 1]),  # constant predictions
        ([0, 0, 0, 0], [0, 1, 0, 1]),  # constant labels
        ([0, 1, 0, 1], [0, 1, 0, 1]),  # perfect
        ([0, 1, 0, 1], [1, 0, 1, 0]),  # perfectly wrong
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # no positive at all: F1 = 0
        ([2, 0, 1, 2, 1], [2, 1, 1, 0, 1]),  # multi-class
        ([3, 7, 7, 3], [7, 7, 3, 3]),  # arbitrary class ids
    ],
)
def test_classification_edge_cases(labels: list[int], preds: list[int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert close(matthews_corrcoef(preds, labels), skm.matthews_corrcoef(labels, preds))
        if set(labels) | set(preds) <= {0, 1}:
            assert close(f1_binary(preds, labels), skm.f1_score(labels, preds, zero_division=0))


def test_classification_input_errors() -> None:
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        matthews_corrcoef([], [])


# ---------------------------------------------------------------------------------------------- correlation


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 80))
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    ties = rng.integers(0, 4, n).astype(float)  # many ties
    for a, b in ((x, y), (x, ties), (ties, ties[::-1].copy())):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert close(pearson(a, b), stats.pearsonr(a, b).statistic)
            assert close(spearman(a, b), stats.spearmanr(a, b).statistic)


def test_correlation_edge_cases() -> None:
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert pearson([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 5], [1, 3, 3, 4]) == pytest.approx(stats.spearmanr([1, 2, 2, 5], [1, 3, 3, 4]).statistic)
    assert math.isnan(pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))  # constant input: undefined, as scipy
    assert math.isnan(spearman([1.0, 2.0, 3.0], [5, 5, 5]))
    with pytest.raises(ValueError, match="at least 2 values"):
        pearson([1.0], [2.0])


# ---------------------------------------------------------------------------------------------- GLUE


def test_glue_metrics_use_the_official_names() -> None:
    labels = [0, 1, 1, 0, 1]
    preds = [0, 1, 0, 0, 1]
    assert set(glue_metrics("cola", preds, labels)) == {"matthews_correlation"}
    assert list(glue_metrics("MRPC", preds, labels)) == ["f1", "accuracy"]
    assert list(glue_metrics("qqp", preds, labels)) == ["f1", "accuracy"]
    for task in ("sst2", "SST-2", "mnli", "qnli", "rte", "wnli"):
        assert list(glue_metrics(task, preds, labels)) == ["accuracy"]
    scores = glue_metrics("sts-b", [0.5, 2.0, 3.5, 4.0], [1.0, 2.5, 3.0, 5.0])
    assert list(scores) == ["pearson", "spearman"] and scores["spearman"] == pytest.approx(1.0)
    mrpc = glue_metrics("mrpc", preds, labels)
    assert mrpc == {"f1": pytest.approx(skm.f1_score(labels, preds)), "accuracy": pytest.approx(0.8)}
    assert all(type(v) is float for v in mrpc.values())


def test_glue_metrics_accept_logits() -> None:
    logits = np.array([[2.0, -1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0]])
    assert glue_metrics("mnli", logits, [0, 1, 1]) == {"accuracy": pytest.approx(2 / 3)}
    assert glue_metrics("stsb", np.array([[1.0], [2.0], [3.0]]), [1.0, 2.0, 4.0])["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown GLUE task"):
        glue_metrics("imdb", [0], [0])


# ---------------------------------------------------------------------------------------------- spans

# Our result keys and seqeval's.
KEYS = (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"), ("support", "support"))
ORACLE_SCHEMES = {"IOB2": (IOB2, "BI"), "IOBES": (IOBES, "BIES"), "BILOU": (BILOU, "BILU")}


def seqeval_report(true: list[list[str]], pred: list[list[str]], scheme: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classification_report(true, pred, mode="strict", scheme=ORACLE_SCHEMES[scheme][0],
                                     output_dict=True, zero_division=0)


def assert_matches_seqeval(true: list[list[str]], pred: list[list[str]], scheme: str, ours: dict) -> None:
    report = seqeval_report(true, pred, scheme)
    types = set(report) - {"micro avg", "macro avg", "weighted avg"}
    assert set(ours["per_type"]) == types
    for kind in types:
        for key, oracle_key in KEYS:
            assert close(ours["per_type"][kind][key], report[kind][oracle_key]), (kind, key)
    for key, oracle_key in KEYS:
        assert close(ours[key], report["micro avg"][oracle_key]), key


def random_tags(rng: np.random.Generator, n: int, prefixes: str) -> list[str]:
    return ["O" if rng.random() < 0.4 else f"{rng.choice(list(prefixes))}-{rng.choice(['LOC', 'PER', 'ORG'])}"
            for _ in range(n)]


@pytest.mark.parametrize("scheme", list(ORACLE_SCHEMES))
@pytest.mark.parametrize("seed", SEEDS)
def test_span_f1_matches_seqeval_strict_on_random_tags(scheme: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    prefixes = ORACLE_SCHEMES[scheme][1]
    lengths = rng.integers(0, 15, int(rng.integers(1, 8)))
    true = [random_tags(rng, n, prefixes) for n in lengths]
    pred = [random_tags(rng, n, prefixes) if rng.random() < 0.7 else list(t) for n, t in zip(lengths, true)]
    assert_matches_seqeval(true, pred, scheme, span_f1(true, pred, scheme=scheme))
    if scheme == "IOB2":
        assert span_f1(true, pred) == span_f1(true, pred, scheme="IOB2")  # "auto" picks IOB2 for B-/I- tags


@pytest.mark.parametrize(
    "true, pred",
    [
        # An I- that continues nothing starts no entity in strict mode.
        ([["O", "I-PER", "I-PER", "O"]], [["O", "B-PER", "I-PER", "O"]]),
        ([["B-LOC", "I-PER", "O"]], [["B-LOC", "I-LOC", "O"]]),
        ([["B-LOC", "I-LOC", "B-LOC"]], [["B-LOC", "I-LOC", "I-LOC"]]),
        # Entities at the sentence ends, adjacent entities of the same type.
        ([["B-ORG", "B-ORG", "I-ORG"]], [["B-ORG", "I-ORG", "I-ORG"]]),
        # Nothing predicted; nothing to find.
        ([["B-PER", "O"], ["O"]], [["O", "O"], ["O"]]),
        ([["O", "O"]], [["B-MISC", "O"]]),
        # Empty sentences.
        ([[], ["B-LOC"]], [[], ["B-LOC"]]),
    ],
)
def test_span_f1_iob2_edge_cases(true: list[list[str]], pred: list[list[str]]) -> None:
    assert_matches_seqeval(true, pred, "IOB2", span_f1(true, pred))


def test_span_f1_hand_checked_values() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    result = span_f1(true, pred)
    # gold: PER(0-2), LOC(3); the leading I-ORG is no entity. predicted: PER(0-2), ORG(3), ORG(0).
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 2)
    assert result["f1"] == pytest.approx(0.4) and result["support"] == 2
    assert result["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }


def test_span_f1_no_entities_at_all() -> None:
    result = span_f1([["O", "O"]], [["O", "O"]])
    assert result == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "per_type": {}}


@pytest.mark.parametrize(
    "true, pred",
    [
        ([["B-LOC", "I-LOC", "E-LOC", "O"]], [["B-LOC", "I-LOC", "O", "O"]]),  # unclosed B...I is no entity
        ([["S-PER", "B-LOC", "E-LOC"]], [["B-PER", "B-LOC", "E-LOC"]]),
        ([["B-LOC", "E-LOC", "E-LOC"]], [["E-LOC", "I-LOC", "S-LOC"]]),
        ([["B-ORG", "I-PER", "E-ORG"]], [["B-ORG", "I-ORG", "E-ORG"]]),
    ],
)
def test_span_f1_iobes_detected_and_strict(true: list[list[str]], pred: list[list[str]]) -> None:
    assert_matches_seqeval(true, pred, "IOBES", span_f1(true, pred))  # scheme="auto" finds IOBES


def test_span_f1_errors() -> None:
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        span_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted"):
        span_f1([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="unknown tagging scheme 'IOB1'"):
        span_f1([["O"]], [["O"]], scheme="IOB1")
    with pytest.raises(ValueError, match="tag 'E-LOC' is not allowed in the IOB2 scheme"):
        span_f1([["E-LOC"]], [["O"]], scheme="IOB2")
    with pytest.raises(ValueError, match="tag 'X-LOC' is not allowed"):
        span_f1([["X-LOC"]], [["O"]])
    with pytest.raises(ValueError, match="mix IOBES"):
        span_f1([["S-LOC"]], [["U-LOC"]])


# ---------------------------------------------------------------------------------------------- IOB1, chunks


def random_iob1(rng: np.random.Generator, n: int) -> list[str]:
    """Valid IOB1 tags: a chunk opens with I-X, or with B-X right after a chunk of the same type X."""
    tags: list[str] = []
    previous = None  # the type of the previous token's chunk
    while len(tags) < n:
        if rng.random() < 0.35:
            tags.append("O")
            previous = None
            continue
        kind = str(rng.choice(["LOC", "PER"]))
        size = int(rng.integers(1, 4))
        tags += ["B-" + kind if kind == previous else "I-" + kind] + ["I-" + kind] * (size - 1)
        previous = kind
    return tags[:n]


def seqeval_strict_iob1(true: list[list[str]], pred: list[list[str]]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classification_report(true, pred, mode="strict", scheme=IOB1, output_dict=True, zero_division=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_iob1_read_as_iob2_scores_as_seqeval_scores_iob1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 15, int(rng.integers(1, 8)))
    true = [random_iob1(rng, n) for n in lengths]
    pred = [random_iob1(rng, n) if rng.random() < 0.7 else list(t) for n, t in zip(lengths, true)]
    true2, pred2 = [iob1_to_iob2(t) for t in true], [iob1_to_iob2(t) for t in pred]
    # IOB1's chunks open by I- only (B- right after a chunk of its type is no opening); IOB2's by B- only
    assert all(prefix == "I" for tags in true for _, prefix in chunk_openings(tags))
    assert all(prefix == "B" for tags in true2 for _, prefix in chunk_openings(tags))
    assert all(unchunked_tags(tags, "IOB2") == [] for tags in true2)  # every tag in a strict chunk
    assert [iob1_to_iob2(t) for t in true2] == true2  # IOB2 passes unchanged
    # strict IOB2 scores of the converted tags = seqeval's strict IOB1 scores of the originals
    ours, report = span_f1(true2, pred2), seqeval_strict_iob1(true, pred)
    types = set(report) - {"micro avg", "macro avg", "weighted avg"}
    assert set(ours["per_type"]) == types
    for key, oracle_key in KEYS:
        assert close(ours[key], report["micro avg"][oracle_key]), key
    # the same chunks in either spelling, as conlleval reads them, and strict IOB2 keeps them all after conversion
    assert conlleval_span_f1(true, pred) == conlleval_span_f1(true2, pred2) == span_f1(true2, pred2)


def test_iob1_to_iob2_hand_checked() -> None:
    assert iob1_to_iob2(["I-ORG", "O", "I-MISC", "O"]) == ["B-ORG", "O", "B-MISC", "O"]
    assert iob1_to_iob2(["I-PER", "I-PER"]) == ["B-PER", "I-PER"]
    assert iob1_to_iob2(["I-PER", "B-PER", "I-LOC", "I-LOC"]) == ["B-PER", "B-PER", "B-LOC", "I-LOC"]
    assert iob1_to_iob2(["I", "O", "I"]) == ["B", "O", "B"]  # untyped chunks
    assert iob1_to_iob2([]) == []
    assert chunk_openings(["I-ORG", "B-ORG", "O", "B-PER", "I-PER", "I-LOC"]) == [(0, "I"), (3, "B"), (5, "I")]
    # the strict score of IOB1 gold read as IOB2 counts all 5 entities (4 of 5 were dropped as IOB1)
    gold = [["I-ORG", "O", "I-MISC", "O"], ["I-PER", "I-PER"], ["I-PER", "B-PER"]]
    assert span_f1(gold, gold)["support"] == 1
    converted = [iob1_to_iob2(tags) for tags in gold]
    assert span_f1(converted, converted)["support"] == 5 == conlleval_span_f1(gold, gold)["support"]


def seqeval_covered(tags: list[str], scheme: str) -> set[int]:
    """The positions inside seqeval's strict entities of one sentence."""
    entities = Entities([tags], ORACLE_SCHEMES[scheme][0]).entities[0]
    return {i for entity in entities for i in range(entity.start, entity.end)}


@pytest.mark.parametrize("scheme", list(ORACLE_SCHEMES))
@pytest.mark.parametrize("seed", range(20))
def test_unchunked_tags_are_those_outside_seqevals_strict_entities(scheme: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in rng.integers(0, 12, 10):
        tags = random_tags(rng, int(n), ORACLE_SCHEMES[scheme][1])
        expected = [i for i, tag in enumerate(tags) if tag != "O" and i not in seqeval_covered(tags, scheme)]
        assert unchunked_tags(tags, scheme) == expected, tags


def test_unchunked_tags_and_span_scheme_hand_checked() -> None:
    assert unchunked_tags(["B-LOC", "I-LOC", "O"], "IOBES") == [0, 1]  # B... without E
    assert unchunked_tags(["O", "E-LOC", "S-PER"], "IOBES") == [1]  # E without B
    assert unchunked_tags(["B-LOC", "U-PER", "L-PER"], "BILOU") == [0, 2]
    assert unchunked_tags(["O", "I-PER", "B-PER"], "IOB2") == [1]  # I-X after O
    assert unchunked_tags(["B-PER", "I-PER", "O", "S-LOC"], "auto") == [0, 1]  # auto: IOBES from these tags
    assert span_scheme([["B-PER", "O"], ["S-LOC"]]) == "IOBES"
    assert span_scheme([["B-PER", "I-PER"], []]) == "IOB2" and span_scheme([["U-PER"]]) == "BILOU"
    with pytest.raises(ValueError, match="tag 'NOUN' is not allowed in the IOB2 scheme"):
        span_scheme([["O"], ["NOUN"]])
    with pytest.raises(ValueError, match="mix IOBES"):
        span_scheme([["S-LOC"], ["U-LOC"]])


# ---------------------------------------------------------------------------------------------- lenient spans


def seqeval_default_report(true: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval's default mode (no ``mode=``): conlleval's chunks, what run_ner.py reports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classification_report(true, pred, output_dict=True, zero_division=0)


def assert_matches_seqeval_default(true: list[list[str]], pred: list[list[str]], ours: dict) -> None:
    report = seqeval_default_report(true, pred)
    types = set(report) - {"micro avg", "macro avg", "weighted avg"}
    assert set(ours["per_type"]) == types
    for kind in types:
        for key, oracle_key in KEYS:
            assert close(ours["per_type"][kind][key], report[kind][oracle_key]), (kind, key)
    for key, oracle_key in KEYS:
        assert close(ours[key], report["micro avg"][oracle_key]), key


@pytest.mark.parametrize("prefixes", ["BI", "BIES"])
@pytest.mark.parametrize("seed", SEEDS)
def test_conlleval_span_f1_matches_seqeval_default_mode_on_random_tags(prefixes: str, seed: int) -> None:
    """Random prefixes make every ill-formed sequence there is: I- after O, I-/E- after another type, E- after E-,
    an IOBES chunk never closed; some predictions are the gold tags with a few tags changed."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 15, int(rng.integers(1, 8)))
    true = [random_tags(rng, n, prefixes) for n in lengths]
    pred = []
    for n, gold in zip(lengths, true):
        if rng.random() < 0.5:
            pred.append(random_tags(rng, n, prefixes))
        else:
            changed = random_tags(rng, n, prefixes)
            pred.append([c if rng.random() < 0.2 else g for g, c in zip(gold, changed)])
    assert_matches_seqeval_default(true, pred, conlleval_span_f1(true, pred))


@pytest.mark.parametrize(
    "true, pred",
    [
        # I- after O opens a chunk (strict mode drops it); a type change inside a chunk splits it.
        ([["O", "I-PER", "I-PER", "O"]], [["O", "B-PER", "I-PER", "O"]]),
        ([["B-LOC", "I-PER", "O"]], [["B-LOC", "I-LOC", "O"]]),
        ([["I-LOC", "I-LOC", "B-LOC", "I-LOC"]], [["B-LOC", "I-LOC", "I-LOC", "I-LOC"]]),
        # IOBES: an unclosed chunk still counts; E- after E- and I- after S- open new chunks.
        ([["B-LOC", "I-LOC", "O"]], [["B-LOC", "I-LOC", "E-LOC"]]),
        ([["E-LOC", "E-LOC", "S-PER", "I-PER"]], [["B-LOC", "E-LOC", "S-PER", "E-PER"]]),
        # Chunks at the ends of sentences do not run into the next sentence.
        ([["B-ORG", "I-ORG"], ["I-ORG", "O"]], [["B-ORG", "I-ORG"], ["B-ORG", "O"]]),
        ([[], ["O"]], [[], ["B-MISC"]]),
    ],
)
def test_conlleval_span_f1_edge_cases(true: list[list[str]], pred: list[list[str]]) -> None:
    assert_matches_seqeval_default(true, pred, conlleval_span_f1(true, pred))


def test_conlleval_span_f1_hand_checked_and_beside_strict() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    lenient = conlleval_span_f1(true, pred)
    # gold: PER(0-2), LOC(3), and ORG(0) of the second sentence (its I-ORG opens a chunk);
    # predicted: PER(0-2), ORG(3), ORG(0)
    assert lenient["support"] == 3 and lenient["precision"] == pytest.approx(2 / 3)
    assert lenient["recall"] == pytest.approx(2 / 3)
    assert lenient["per_type"]["ORG"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert span_f1(true, pred)["support"] == 2  # strict: the leading I-ORG is no entity


def test_conlleval_span_f1_reads_bilou_as_iobes() -> None:
    """L- and U- are E- and S- (seqeval's default mode knows only B, I, E, S): checked on the IOBES spelling."""
    rng = np.random.default_rng(0)
    to_iobes = str.maketrans({"L": "E", "U": "S"})
    for _ in range(30):
        lengths = rng.integers(0, 12, 4)
        true = [random_tags(rng, n, "BILU") for n in lengths]
        pred = [random_tags(rng, n, "BILU") for n in lengths]
        ours = conlleval_span_f1(true, pred)
        spelled = [[[tag[0].translate(to_iobes) + tag[1:] for tag in tags] for tags in side] for side in (true, pred)]
        assert ours == conlleval_span_f1(*spelled)
        assert_matches_seqeval_default(*spelled, ours)
    assert conlleval_span_f1([["U-PER", "U-PER"]], [["B-PER", "L-PER"]])["per_type"]["PER"]["support"] == 2


def test_conlleval_span_f1_errors() -> None:
    with pytest.raises(ValueError, match="conlleval_span_f1: 2 gold sentences but 1 predicted"):
        conlleval_span_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="conlleval_span_f1: sentence 0 has 1 gold tags but 2 predicted"):
        conlleval_span_f1([["O"]], [["O", "O"]])
    with pytest.raises(ValueError, match="tag 'NOUN' is neither O nor a chunk tag"):
        conlleval_span_f1([["NOUN"]], [["O"]])


# ---------------------------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("seed", range(20))
def test_token_accuracy_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tags = ["NOUN", "VERB", "DET", "ADJ", "PUNCT"][: int(rng.integers(2, 6))]
    lengths = rng.integers(0, 10, int(rng.integers(1, 6)))
    lengths[0] = max(lengths[0], 1)
    true = [list(rng.choice(tags, n)) for n in lengths]
    pred = [[g if rng.random() < 0.6 else str(rng.choice(tags)) for g in gold] for gold in true]
    flat_true, flat_pred = sum(true, []), sum(pred, [])
    ours = token_accuracy(true, pred)
    assert close(ours["accuracy"], skm.accuracy_score(flat_true, flat_pred)) and ours["support"] == len(flat_true)
    labels = sorted(set(flat_true) | set(flat_pred))
    assert list(ours["per_tag"]) == labels
    p, r, f, support = skm.precision_recall_fscore_support(flat_true, flat_pred, labels=labels, zero_division=0)
    for i, tag in enumerate(labels):
        scores = ours["per_tag"][tag]
        assert close(scores["precision"], p[i]) and close(scores["recall"], r[i]) and close(scores["f1"], f[i])
        assert scores["support"] == support[i]


def test_token_accuracy_counts_a_missing_prediction_as_wrong() -> None:
    result = token_accuracy([["DET", "NOUN"], ["VERB"]], [["DET", None], ["NOUN"]])
    assert result["accuracy"] == pytest.approx(1 / 3) and result["support"] == 3
    assert result["per_tag"]["NOUN"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert set(result["per_tag"]) == {"DET", "NOUN", "VERB"}
    with pytest.raises(ValueError, match="token_accuracy: no words"):
        token_accuracy([[]], [[]])
    with pytest.raises(ValueError, match="token_accuracy: sentence 0 has 2 gold tags but 1 predicted"):
        token_accuracy([["A", "B"]], [["A"]])

