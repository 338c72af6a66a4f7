"""Evaluation metrics for GLUE and for entity tagging, implemented here from their definitions.

Why our own: the fine-tuning commands must report the official GLUE and CoNLL numbers without pulling
scikit-learn, scipy or seqeval into the runtime dependencies. Those libraries are the test oracles:
``tests/scripts/test_metrics.py`` checks every function here against them.

- Classification: ``accuracy``, ``f1_binary`` (positive class 1), ``matthews_corrcoef`` (binary and
  multi-class, 0.0 where undefined, like scikit-learn).
- Regression: ``pearson`` and ``spearman`` (average ranks for ties); NaN where undefined (a constant
  input, a NaN prediction), like scipy.
- ``f1_macro`` and ``text_classification_metrics``: macro F1, the mean F1 over the classes that occur in the labels
  or the predictions (scikit-learn's ``f1_score(average="macro")``).
- ``glue_metrics(task, predictions, labels)``: exactly the official metric names of a GLUE task; ``predicted``:
  the class ids or scores it reads from the Trainer's predictions.
- ``span_f1(true_tags, pred_tags)``: strict entity-level precision/recall/F1, equal to seqeval's
  ``classification_report(..., mode="strict")`` for IOB2, IOBES and BILOU tags.
- ``span_scheme(sentences)``, ``unchunked_tags(tags, scheme)``, ``chunk_openings(tags)`` and ``iob1_to_iob2(tags)``:
  the scheme ``span_f1`` reads, the tags it would ignore (an ill-formed chunk), whether chunks open with I- (IOB1)
  or B- (IOB2), and IOB1 tags rewritten as IOB2 (the same chunks), for checking gold tags before they are scored.
- ``conlleval_span_f1(true_tags, pred_tags)``: the same scores with chunks read as conlleval reads them (lenient:
  an ``I-X`` after ``O`` opens a chunk), equal to seqeval's default mode (no ``mode=``), which transformers'
  ``run_ner.py`` reports.
- ``token_accuracy(true_tags, pred_tags)``: the share of words tagged right, and per tag precision/recall/F1
  (part-of-speech tagging, whose tags are not spans).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import glue_task

# --------------------------------------------------------------------------------------------------
# Classification and regression
# --------------------------------------------------------------------------------------------------


def _paired(predictions: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as 1-D arrays of the same, non-zero length."""
    pred = np.asarray(predictions).reshape(-1)
    true = np.asarray(labels).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"{what}: {pred.size} predictions but {true.size} labels; they must be the same length")
    if pred.size == 0:
        raise ValueError(f"{what}: no predictions; expected at least one")
    return pred, true


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of predictions equal to their label."""
    pred, true = _paired(predictions, labels, "accuracy")
    return float(np.mean(pred == true))


def f1_binary(predictions: Any, labels: Any) -> float:
    """F1 of the positive class 1: ``2 TP / (2 TP + FP + FN)``; 0.0 when there is no positive at all."""
    pred, true = _paired(predictions, labels, "f1_binary")
    tp = int(np.sum((pred == 1) & (true == 1)))
    fp = int(np.sum((pred == 1) & (true != 1)))
    fn = int(np.sum((pred != 1) & (true == 1)))
    return 0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn)


def matthews_corrcoef(predictions: Any, labels: Any) -> float:
    """Matthews correlation coefficient, binary or multi-class (Gorodkin's R_K); 0.0 when undefined.

    With the confusion matrix C (rows: true class, columns: predicted class), t = row sums,
    p = column sums, c = trace and s = total::

        MCC = (c s - t.p) / sqrt((s^2 - p.p) (s^2 - t.t))

    which reduces to (TP TN - FP FN) / sqrt(...) for two classes. When either factor under the root is
    zero (one class only in the labels or in the predictions) it is defined as 0.0, as scikit-learn does.
    """
    pred, true = _paired(predictions, labels, "matthews_corrcoef")
    classes, codes = np.unique(np.concatenate([true, pred]), return_inverse=True)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (codes[: true.size], codes[true.size:]), 1.0)
    t = confusion.sum(axis=1)
    p = confusion.sum(axis=0)
    c = np.trace(confusion)
    s = confusion.sum()
    cov_tp = c * s - t @ p
    cov_pp = s * s - p @ p
    cov_tt = s * s - t @ t
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / math.sqrt(cov_tt * cov_pp))


def pearson(x: Any, y: Any) -> float:
    """Pearson's correlation coefficient; NaN when either input is constant or holds a NaN or an infinity
    (undefined), like scipy's ``pearsonr``.

    The non-finite check comes first: a NaN would otherwise survive to the final clamp to [-1, 1], where
    ``min(1.0, nan)`` is 1.0, scoring the NaN outputs of a diverged regression model a perfect correlation.
    """
    a, b = _paired(x, y, "pearson")
    if a.size < 2:
        raise ValueError(f"pearson: needs at least 2 values, got {a.size}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    a = a - np.mean(a)
    b = b - np.mean(b)
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    if norm_a == 0 or norm_b == 0:
        return float("nan")
    r = float(np.dot(a / norm_a, b / norm_b))
    return max(-1.0, min(1.0, r))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # Start index of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks, ties given their average rank.

    NaN when either input holds a NaN (NaN has no rank: sorting would rank each NaN apart, last, and give a finite
    score), as scipy's ``spearmanr`` propagates it; infinities rank as the largest or smallest values.
    """
    a, b = _paired(x, y, "spearman")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if np.isnan(a).any() or np.isnan(b).any():
        if a.size < 2:
            raise ValueError(f"spearman: needs at least 2 values, got {a.size}")
        return float("nan")
    return pearson(_average_ranks(a), _average_ranks(b))


def predicted(predictions: Any, regression: bool) -> np.ndarray:
    """(N,) predictions: the class ids of logits (N, K) (argmax) or of ids (N,); a regression's scores (N,) or
    (N, 1). A tuple whose first item is an array is the Trainer's ``(logits, *extra outputs)`` (a model that also
    returns hidden states or attentions): its logits are read, as transformers' run_glue.py reads them."""
    if isinstance(predictions, tuple) and predictions and isinstance(predictions[0], np.ndarray):
        predictions = predictions[0]
    pred = np.asarray(predictions)
    if not regression and pred.ndim == 2:
        pred = pred.argmax(axis=-1)
    return pred.reshape(-1)


def glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """The official metrics of a GLUE task, under their official names.

    CoLA: ``matthews_correlation``; MRPC and QQP: ``f1`` and ``accuracy``; STS-B: ``pearson`` and
    ``spearman``; the others: ``accuracy``. MNLI is scored once per evaluation split (matched and
    mismatched, see ``GlueTask.eval_splits``); the caller names the two results.

    ``predictions`` may be class ids or logits of shape (N, num_labels), which are arg-maxed; for STS-B,
    scores of shape (N,) or (N, 1).
    """
    spec = glue_task(task)
    pred = predicted(predictions, spec.is_regression)
    if spec.is_regression:
        funcs = {"pearson": pearson, "spearman": spearman}
    else:
        funcs = {"matthews_correlation": matthews_corrcoef, "f1": f1_binary, "accuracy": accuracy}
    return {name: funcs[name](pred, labels) for name in spec.metrics}


def f1_macro(predictions: Any, labels: Any) -> float:
    """Macro F1: the mean of each class's F1 (``2 TP / (2 TP + FP + FN)``) over the classes that occur in the labels
    or in the predictions, as scikit-learn's ``f1_score(labels, predictions, average="macro")``.

    A class that occurs in neither is left out of the mean (it has no F1 to average: scoring it 0.0 would lower the
    result for a class the data never named); a class that occurs in only one of them has F1 0.0.
    """
    pred, true = _paired(predictions, labels, "f1_macro")
    classes = np.unique(np.concatenate([true, pred]))
    scores = []
    for k in classes:
        tp = int(np.sum((pred == k) & (true == k)))
        wrong = int(np.sum((pred == k) != (true == k)))  # FP + FN
        scores.append(0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + wrong))
    return float(np.mean(scores))


def text_classification_metrics(predictions: Any, labels: Any, num_classes: int) -> dict[str, float]:
    """Metrics of a text-classification dataset that is not GLUE: ``accuracy`` and ``f1`` (``f1_macro``: the mean
    F1 over the classes that occur in the labels or the predictions) from logits (N, K) or class ids; ``pearson``
    and ``spearman`` from scores (N,) or (N, 1) when ``num_classes`` is 0 (a regression)."""
    pred = predicted(predictions, regression=num_classes == 0)
    if num_classes == 0:
        return {"pearson": pearson(pred, labels), "spearman": spearman(pred, labels)}
    return {"accuracy": accuracy(pred, labels), "f1": f1_macro(pred, labels)}


# --------------------------------------------------------------------------------------------------
# Strict entity spans (seqeval mode="strict")
# --------------------------------------------------------------------------------------------------

# Per scheme: the prefixes allowed, the ones that begin an entity, continue it, and close it. A chunk is
# valid when it is  begin continue* close?  in the scheme's grammar:
#   IOB2:  B-X I-X*            (any B starts a chunk; it ends before anything that is not I-X)
#   IOBES: S-X | B-X I-X* E-X  (a chunk must be closed by E-X; S-X is a single-token chunk)
#   BILOU: U-X | B-X I-X* L-X  (IOBES with L for E and U for S)
_SCHEMES = {
    "IOB2": {"allowed": "BIO", "single": "", "end": ""},
    "IOBES": {"allowed": "BIOES", "single": "S", "end": "E"},
    "BILOU": {"allowed": "BILOU", "single": "U", "end": "L"},
}
_SCHEME_ALIASES = {
    "IOB2": "IOB2", "BIO": "IOB2", "IOBES": "IOBES", "BIOES": "IOBES", "BILOU": "BILOU", "BIOUL": "BILOU"
}


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-LOC"`` -> ``("B", "LOC")``; ``"O"`` -> ``("O", "")``."""
    return tag[:1], tag[1:].strip("-")


def _resolve_scheme(scheme: str, sentences: Sequence[Sequence[str]]) -> str:
    if scheme.lower() != "auto":
        name = _SCHEME_ALIASES.get(scheme.upper())
        if name is None:
            allowed = ", ".join(map(repr, ["auto", *_SCHEME_ALIASES]))
            raise ValueError(f"unknown tagging scheme {scheme!r}; allowed: {allowed}")
        return name
    prefixes = {tag[:1] for tags in sentences for tag in tags}
    if prefixes & set("ES") and prefixes & set("LU"):
        raise ValueError("tags mix IOBES (E-, S-) and BILOU (L-, U-) prefixes; pass scheme= explicitly")
    if prefixes & set("ES"):
        return "IOBES"
    if prefixes & set("LU"):
        return "BILOU"
    return "IOB2"


def _entities(tags: Sequence[str], scheme: str, sentence: int) -> set[tuple[int, int, int, str]]:
    """Strict chunks of one sentence as ``(sentence, start, end, type)`` with ``end`` exclusive."""
    rules = _SCHEMES[scheme]
    parsed = [_split_tag(tag) for tag in tags]
    for tag, (prefix, _) in zip(tags, parsed):
        if not prefix or prefix not in rules["allowed"]:
            allowed = ", ".join(rules["allowed"])
            raise ValueError(f"tag {tag!r} is not allowed in the {scheme} scheme (prefixes {allowed})")
    found = set()
    i, n = 0, len(parsed)
    while i < n:
        prefix, kind = parsed[i]
        if prefix == rules["single"] and prefix:
            found.add((sentence, i, i + 1, kind))
            i += 1
            continue
        if prefix != "B":
            i += 1
            continue
        # Extend over I-kind (and, for closing schemes, a final E-kind / L-kind).
        j = i + 1
        closed = not rules["end"]  # IOB2 chunks need no closing tag
        while j < n and parsed[j][1] == kind and parsed[j][0] in ("I", rules["end"]):
            j += 1
            if parsed[j - 1][0] == rules["end"]:
                closed = True
                break
        if closed:
            found.add((sentence, i, j, kind))
        i = j
    return found


def span_f1(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], scheme: str = "auto"
) -> dict[str, Any]:
    """Strict entity-level precision, recall and F1, as seqeval's ``mode="strict"`` computes them.

    A predicted entity counts only if the same type spans exactly the same tokens in the gold tags, and
    only valid chunks of the scheme are entities (in IOB2, an ``I-X`` that does not continue a ``B-X``
    or ``I-X`` starts nothing; in IOBES a ``B-X I-X`` without its ``E-X`` is no entity).

    Args:
        true_tags, pred_tags: one tag list per sentence, same shapes.
        scheme: "IOB2" (alias "BIO"), "IOBES" ("BIOES"), "BILOU" ("BIOUL"), or "auto": IOBES when a tag has
            an E-/S- prefix, BILOU for L-/U-, else IOB2.

    Returns:
        ``{"precision", "recall", "f1"}`` micro-averaged over all entities, ``"support"`` (the number of gold
        entities) and ``"per_type"``: ``{"LOC": {"precision", "recall", "f1", "support"}, ...}`` for every
        type found in the gold or predicted tags, sorted by name. A ratio with a zero denominator is 0.0.
    """
    _check_paired_sentences(true_tags, pred_tags, "span_f1")
    name = _resolve_scheme(scheme, list(true_tags) + list(pred_tags))
    gold_entities = set().union(*(_entities(tags, name, i) for i, tags in enumerate(true_tags)))
    pred_entities = set().union(*(_entities(tags, name, i) for i, tags in enumerate(pred_tags)))
    return _span_scores(gold_entities, pred_entities)


def span_scheme(sentences: Sequence[Sequence[str]], scheme: str = "auto") -> str:
    """The scheme ``span_f1`` reads the tag lists ``sentences`` in: "IOB2", "IOBES" or "BILOU" (``scheme`` "auto":
    from the prefixes, as ``span_f1`` picks it). ``ValueError``, as ``span_f1`` raises it, for a tag whose prefix the
    scheme does not allow (a part-of-speech tag, say) and for IOBES and BILOU prefixes mixed."""
    name = _resolve_scheme(scheme, sentences)
    for index, tags in enumerate(sentences):
        _entities(tags, name, index)
    return name


def unchunked_tags(tags: Sequence[str], scheme: str) -> list[int]:
    """The positions in one sentence's ``tags`` of the tags other than O that belong to no strict chunk of
    ``scheme`` ("IOB2", "IOBES", "BILOU", an alias, or "auto": from this sentence's prefixes; name the file's scheme,
    which ``span_scheme`` gives): the tags ``span_f1`` ignores. Empty when the sentence is well formed.

    In IOB2 that is an ``I-X`` that continues no X chunk (first in the sentence, or after O or another type: an IOB1
    chunk's opening); in IOBES (BILOU alike) also each tag of a chunk that its grammar leaves open or never opened:
    ``B-X I-X`` not closed by ``E-X``, an ``I-X`` or ``E-X`` without its ``B-X``.
    """
    name = _resolve_scheme(scheme, [tags])
    covered = {i for _, start, end, _ in _entities(tags, name, 0) for i in range(start, end)}
    return [i for i, tag in enumerate(tags) if tag != "O" and i not in covered]


def chunk_openings(tags: Sequence[str]) -> list[tuple[int, str]]:
    """Where the chunks of one sentence's IOB tags (B-, I-, O) open when read as conlleval reads them, and by which
    prefix: ``(position, "I")`` for an ``I-X`` first in the sentence or after O or a tag of another type (IOB1's
    opening, which strict IOB2 drops), ``(position, "B")`` for a ``B-X`` there (IOB2's opening). A ``B-X`` right
    after an X tag opens a chunk too, but is neither: both schemes mark two adjacent X chunks so.

    IOB1 tags have openings by "I" only, IOB2 tags by "B" only; tags with both follow neither scheme.
    """
    starts = sorted(start for _, start, _, _ in _conlleval_chunks(tags, 0))
    kind = lambda i: None if i < 0 or tags[i] == "O" else _split_tag(tags[i])[1]  # noqa: E731
    return [(start, _split_tag(tags[start])[0]) for start in starts if kind(start - 1) != kind(start)]


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """One sentence's IOB1 tags as IOB2: an ``I-X`` that opens a chunk (first in the sentence, or after O or a tag of
    another type) becomes ``B-X``; every other tag is kept (IOB1's ``B-X``, between two adjacent X chunks, already
    opens the second one). The chunks are the same, those conlleval reads in either spelling (``conlleval_span_f1``
    scores both alike), and IOB2 tags pass unchanged."""
    opened_by_i = {position for position, prefix in chunk_openings(tags) if prefix == "I"}
    return ["B" + tag[1:] if position in opened_by_i else tag for position, tag in enumerate(tags)]


def _check_paired_sentences(true_tags: Sequence[Sequence[Any]], pred_tags: Sequence[Sequence[Any]],
                            what: str) -> None:
    """``ValueError`` unless there are as many predicted sentences as gold ones, each with as many tags."""
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{what}: {len(true_tags)} gold sentences but {len(pred_tags)} predicted sentences")
    for index, (gold, pred) in enumerate(zip(true_tags, pred_tags)):
        if len(gold) != len(pred):
            raise ValueError(f"{what}: sentence {index} has {len(gold)} gold tags but {len(pred)} predicted tags")


def _span_scores(gold_entities: set[tuple[int, int, int, str]],
                 pred_entities: set[tuple[int, int, int, str]]) -> dict[str, Any]:
    """Micro precision/recall/F1 and support of predicted against gold ``(sentence, start, end, type)`` chunks,
    and the same per type (sorted by name)."""
    correct = gold_entities & pred_entities

    per_type = {}
    for kind in sorted({e[3] for e in gold_entities | pred_entities}):
        n_gold = sum(1 for e in gold_entities if e[3] == kind)
        n_pred = sum(1 for e in pred_entities if e[3] == kind)
        n_correct = sum(1 for e in correct if e[3] == kind)
        per_type[kind] = {**_prf(n_correct, n_pred, n_gold), "support": n_gold}
    return {**_prf(len(correct), len(pred_entities), len(gold_entities)), "support": len(gold_entities),
            "per_type": per_type}


def _prf(n_correct: int, n_pred: int, n_gold: int) -> dict[str, float]:
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------------------------------
# Lenient chunks (conlleval, seqeval's default mode)
# --------------------------------------------------------------------------------------------------

#: Each chunk prefix read as conlleval reads it: BILOU's L (last) and U (unit) are IOBES's E and S.
_CONLLEVAL_PREFIX = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}


def _conlleval_chunks(tags: Sequence[str], sentence: int) -> set[tuple[int, int, int, str]]:
    """Chunks of one sentence as conlleval reads them, ``(sentence, start, end, type)`` with ``end`` exclusive.

    Every tag but O belongs to a chunk. With (p, x) the prefix and type of a tag and (p', x') those of the tag
    before it (O for the first, whose type is none), a chunk boundary lies before the tag when

        p' in {E, S}  or  p in {B, S, O}  or  x != x'

    and a tag that is not O opens a new chunk at a boundary, or when no chunk is open (after O); otherwise it
    continues the open chunk. So an I-X after O or after another type opens a chunk (strict mode drops it), B-X I-Y
    is two chunks, and an IOBES chunk left unclosed (B-X I-X O) still counts.
    """
    found = set()
    start, kind = None, ""  # the open chunk
    previous_prefix = "O"
    for i, tag in enumerate(tags):
        if tag == "O":
            prefix, this_kind = "O", ""
        else:
            prefix, this_kind = _split_tag(tag)
            if prefix not in _CONLLEVAL_PREFIX:
                raise ValueError(f"tag {tag!r} is neither O nor a chunk tag (prefixes B, I, E, S, L, U)")
            prefix = _CONLLEVAL_PREFIX[prefix]
        boundary = previous_prefix in "ES" or prefix in "BSO" or this_kind != kind
        if start is not None and boundary:
            found.add((sentence, start, i, kind))
            start = None
        if prefix != "O" and start is None:
            start = i
        kind = this_kind if prefix != "O" else ""
        previous_prefix = prefix
    if start is not None:
        found.add((sentence, start, len(tags), kind))
    return found


def conlleval_span_f1(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level precision, recall and F1 with chunks read as conlleval reads them (``_conlleval_chunks``): the
    numbers of seqeval's default mode (``classification_report(true, pred)``, no ``mode=``), which transformers'
    ``run_ner.py`` reports. Lenient where ``span_f1`` is strict: ill-formed sequences still make chunks. One
    difference from seqeval: BILOU's L- and U- prefixes are read as IOBES's E- and S- (seqeval's default mode knows
    only B, I, E, S), so a BILOU tagging gets the same chunks as its IOBES spelling.

    Arguments and result as ``span_f1`` (no ``scheme``: every prefix has one reading).
    """
    _check_paired_sentences(true_tags, pred_tags, "conlleval_span_f1")
    gold = set().union(*(_conlleval_chunks(tags, i) for i, tags in enumerate(true_tags)))
    pred = set().union(*(_conlleval_chunks(tags, i) for i, tags in enumerate(pred_tags)))
    return _span_scores(gold, pred)


# --------------------------------------------------------------------------------------------------
# Tokens (part-of-speech tagging)
# --------------------------------------------------------------------------------------------------


def token_accuracy(true_tags: Sequence[Sequence[str]],
                   pred_tags: Sequence[Sequence[str | None]]) -> dict[str, Any]:
    """Token accuracy: the share of words whose predicted tag equals the gold tag, over all sentences.

    A prediction of ``None`` (a word that got none, e.g. cut off by the maximum length) counts as wrong.

    Returns:
        ``{"accuracy", "support"}`` (the number of words) and ``"per_tag"``: ``{tag: {"precision", "recall",
        "f1", "support"}}`` for every tag in the gold or predicted tags, sorted; precision over the words predicted
        as the tag, recall over the words whose gold tag it is (its support). A ratio with a zero denominator is
        0.0; ``ValueError`` when there are no words at all.
    """
    _check_paired_sentences(true_tags, pred_tags, "token_accuracy")
    gold = [tag for tags in true_tags for tag in tags]
    pred = [tag for tags in pred_tags for tag in tags]
    if not gold:
        raise ValueError("token_accuracy: no words; expected at least one")
    n_gold, n_pred = Counter(gold), Counter(p for p in pred if p is not None)
    n_correct = Counter(g for g, p in zip(gold, pred) if g == p)
    per_tag = {tag: {**_prf(n_correct[tag], n_pred[tag], n_gold[tag]), "support": n_gold[tag]}
               for tag in sorted(n_gold.keys() | n_pred.keys())}
    return {"accuracy": sum(n_correct.values()) / len(gold), "support": len(gold), "per_tag": per_tag}
