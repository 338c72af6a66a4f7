"""``lib.metrics`` against scipy on the inputs a diverged or collapsed model produces: NaN and infinite predictions
(fp16 overflow, an exploding regression head) and constant ones. scipy propagates a NaN into a NaN correlation; a
metric that turns it into a number would score a broken STS-B model as a good one."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from bizoo.scripts.lib.metrics import glue_metrics, pearson, spearman, text_classification_metrics


def scipy_pearson(x, y) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).statistic)


def scipy_spearman(x, y) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).statistic)


def same(ours: float, theirs: float) -> bool:
    if math.isnan(theirs):
        return math.isnan(ours)
    return ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_correlations_match_scipy_with_nan_and_infinite_predictions(seed: int) -> None:
    """Predictions with a NaN or ±inf here and there (and labels without): Pearson is NaN for either, as scipy's;
    Spearman is NaN for a NaN and ranks an infinity as the largest or smallest value, as scipy's."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 40))
    labels = rng.uniform(0, 5, n)
    predictions = labels + rng.normal(0, 1, n)
    bad = rng.choice(n, size=int(rng.integers(1, n)), replace=False)
    predictions[bad] = rng.choice([np.nan, np.inf, -np.inf], size=bad.size)
    assert same(pearson(predictions, labels), scipy_pearson(predictions, labels))
    assert same(spearman(predictions, labels), scipy_spearman(predictions, labels))
    assert same(pearson(labels, predictions), scipy_pearson(labels, predictions))
    assert same(spearman(labels, predictions), scipy_spearman(labels, predictions))


def test_a_diverged_sts_b_model_scores_nan_not_a_perfect_correlation() -> None:
    """All-NaN scores (a regression head that diverged): undefined, not 1.0, for STS-B and another regression."""
    labels = [0.5, 2.0, 3.5, 4.0, 1.0]
    nan_scores = np.full((5, 1), np.nan)  # (N, 1), as the Trainer returns them
    for scores in (glue_metrics("stsb", nan_scores, labels), text_classification_metrics(nan_scores, labels, 0)):
        assert set(scores) == {"pearson", "spearman"}
        assert all(math.isnan(value) for value in scores.values()), scores
    one_nan = [0.4, 2.1, np.nan, 4.2, 0.9]  # otherwise nearly perfect
    assert math.isnan(pearson(one_nan, labels)) and math.isnan(spearman(one_nan, labels))
    assert math.isnan(spearman(labels, one_nan))  # a NaN in the labels alike


def test_correlations_of_constant_and_tiny_inputs_match_scipy() -> None:
    labels = [1.0, 2.0, 3.0, 4.0]
    for constant in ([2.5] * 4, [0.0] * 4, [1e-30] * 4):
        assert same(pearson(constant, labels), scipy_pearson(constant, labels))
        assert same(spearman(constant, labels), scipy_spearman(constant, labels))
    with pytest.raises(ValueError, match="spearman: needs at least 2 values, got 1"):
        spearman([np.nan], [1.0])
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        spearman([1.0], [1.0])


def test_glue_metrics_read_the_logits_of_the_trainers_tuple() -> None:
    """A model that also returns hidden states gives the Trainer's compute_metrics ``(logits, hidden_states)``:
    scored on the logits, as run_glue.py scores them, not a numpy error about an inhomogeneous array."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3))
    hidden = (rng.normal(size=(6, 5, 8)), rng.normal(size=(6, 5, 8)))
    labels = [0, 1, 2, 1, 0, 2]
    assert glue_metrics("mnli", (logits, hidden), labels) == glue_metrics("mnli", logits, labels)
    scores = rng.normal(size=(6, 1))
    assert glue_metrics("stsb", (scores, hidden), labels) == glue_metrics("stsb", scores, labels)
    assert text_classification_metrics((logits, hidden), labels, 3) == text_classification_metrics(logits, labels, 3)
    assert glue_metrics("rte", (0, 1, 1), [0, 1, 0])["accuracy"] == pytest.approx(2 / 3)  # a tuple of class ids
