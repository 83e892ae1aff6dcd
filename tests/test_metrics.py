"""Metrics and thresholds on small examples whose expected values are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sikap.training.metrics import f_avg, headline_score, stance_metrics, topic_metrics, tune_thresholds

CLASSES = ["favor", "against", "neutral"]

# ---------------------------------------------------------------- topics


def test_topic_metrics_by_hand():
    y_true = [[1, 0], [1, 1], [0, 1], [0, 1]]
    y_pred = [[1, 0], [0, 1], [1, 1], [0, 1]]
    m = topic_metrics(np.array(y_true), np.array(y_pred), ["a", "b"])
    # a: true 1,1,0,0 / pred 1,0,1,0 -> TP 1, FP 1, FN 1 -> P = R = F1 = 1/2, support 2
    assert m["per_label"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    # b: perfect on 3 positives
    assert m["per_label"]["b"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}
    assert m["macro_f1"] == pytest.approx((0.5 + 1.0) / 2)
    # micro: TP 4, FP 1, FN 1 -> P = R = 4/5
    assert m["micro_f1"] == pytest.approx(0.8)
    assert m["exact_match"] == pytest.approx(2 / 4)  # rows 0 and 3
    assert m["n"] == 4


def test_topic_without_support_or_predictions_scores_zero_without_warning_values():
    m = topic_metrics(np.array([[1, 0], [1, 0]]), np.array([[1, 0], [1, 0]]), ["a", "b"])
    assert m["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["micro_f1"] == pytest.approx(1.0)
    assert m["exact_match"] == 1.0


def test_topic_metrics_single_topic():
    m = topic_metrics(np.array([[1], [0], [1], [1]]), np.array([[1], [1], [0], [1]]), ["only"])
    # TP 2, FP 1, FN 1 -> P = R = F1 = 2/3, support 3
    expected = {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    assert m["per_label"]["only"] == pytest.approx(expected)
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["micro_f1"] == pytest.approx(2 / 3)
    assert m["n"] == 4


# ---------------------------------------------------------------- stance


def test_f_avg_is_mean_of_favor_and_against_f1():
    gold = ["favor", "favor", "favor", "against", "against", "neutral", "neutral"]
    pred = ["favor", "favor", "against", "against", "neutral", "favor", "neutral"]
    # favor: TP 2, FP 1 (idx 5), FN 1 (idx 2) -> 2/3 ; against: TP 1, FP 1 (idx 2), FN 1 (idx 4) -> 1/2
    assert f_avg(gold, pred) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_f_avg_ignores_neutral():
    assert f_avg(["favor", "neutral"], ["favor", "favor"]) == pytest.approx((2 / 3 + 0.0) / 2)
    assert f_avg(["neutral", "neutral"], ["neutral", "neutral"]) == 0.0


GOLD = [
    ["favor", None, None],
    ["against", "neutral", None],
    [None, "favor", None],
    ["neutral", None, None],
]
PRED = [
    ["favor", "against", "neutral"],
    ["not_mentioned", "neutral", "favor"],
    ["favor", "against", "neutral"],
    ["neutral", "favor", "neutral"],
]
ACTORS = ["NATO", "Rusia", "AS"]


def test_stance_metrics_overall_by_hand():
    m = stance_metrics(GOLD, PRED, ACTORS, CLASSES)
    # labeled pairs: NATO (favor,favor) (against,not_mentioned) (neutral,neutral); Rusia (neutral,neutral)
    # (favor,against). Unlabeled (None) pairs are skipped whatever was predicted.
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion"]["labels"] == ["favor", "against", "neutral", "not_mentioned"]
    assert m["confusion"]["matrix"] == [
        [1, 1, 0, 0],  # favor -> favor (NATO), against (Rusia)
        [0, 0, 0, 1],  # against -> not_mentioned: a miss, in its own column
        [0, 0, 2, 0],
        [0, 0, 0, 0],
    ]
    # favor: TP 1, FN 1, FP 0 -> 2/3 ; against: TP 0 -> 0 ; neutral: perfect -> 1
    assert m["per_class"]["favor"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["against"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["neutral"]["f1"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["f_avg"] == pytest.approx((2 / 3 + 0) / 2)


def test_stance_metrics_per_actor():
    m = stance_metrics(GOLD, PRED, ACTORS, CLASSES)
    assert set(m["per_actor"]) == {"NATO", "Rusia"}  # AS has no labeled pair
    nato, rusia = m["per_actor"]["NATO"], m["per_actor"]["Rusia"]
    assert nato["n"] == 3 and rusia["n"] == 2
    assert nato["accuracy"] == pytest.approx(2 / 3)
    assert nato["per_class"]["against"]["recall"] == 0.0  # the not_mentioned prediction is an error
    assert nato["confusion"]["matrix"][1] == [0, 0, 0, 1]
    assert nato["macro_f1"] == pytest.approx((1 + 0 + 1) / 3)
    assert rusia["accuracy"] == pytest.approx(1 / 2)
    assert rusia["macro_f1"] == pytest.approx((0 + 0 + 1) / 3)
    assert rusia["f_avg"] == 0.0


def test_stance_metrics_no_labels():
    m = stance_metrics([[None, None]], [["favor", "against"]], ["A", "B"], CLASSES)
    assert m == {"n": 0, "per_actor": {}}


def test_stance_metrics_without_favor_against_has_no_f_avg():
    m = stance_metrics([["pro"], ["kontra"]], [["pro"], ["pro"]], ["A"], ["pro", "kontra"])
    assert "f_avg" not in m
    assert m["accuracy"] == 0.5
    # pro: TP 1, FP 1 -> 2/3 ; kontra: 0
    assert m["macro_f1"] == pytest.approx(1 / 3)


def test_stance_metrics_rows_must_match():
    with pytest.raises(ValueError):
        stance_metrics([["favor"]], [["favor"], ["against"]], ["A"], CLASSES)


# ---------------------------------------------------------------- thresholds


def test_tune_thresholds_separates_a_separable_topic():
    probs = np.array([[0.90, 0.20], [0.86, 0.25], [0.68, 0.10], [0.60, 0.05], [0.30, 0.08]])
    y = np.array([[1, 1], [1, 1], [0, 0], [0, 0], [0, 0]])
    th = tune_thresholds(probs, y)
    # topic 0: any threshold in (0.68, 0.86] is perfect: grid 0.70..0.85, closest to 0.5 is 0.70
    # topic 1: perfect in (0.10, 0.20]: grid 0.15, 0.20, closest to 0.5 is 0.20
    assert th == pytest.approx([0.70, 0.20])
    for t in range(2):
        pred = probs[:, t] >= th[t]
        assert (pred == y[:, t].astype(bool)).all(), "F1 1.0 on dev"


def test_tune_thresholds_ties_go_to_the_default():
    probs = np.array([[0.99], [0.01]])
    y = np.array([[1], [0]])
    assert tune_thresholds(probs, y) == [0.5]
    assert tune_thresholds(probs, y, default=0.3) == [pytest.approx(0.3)]
    assert tune_thresholds(probs, y, grid=[0.1, 0.45, 0.9]) == [pytest.approx(0.45)]


def test_tune_thresholds_no_positive_keeps_default():
    probs = np.array([[0.9, 0.9], [0.1, 0.2]])
    y = np.array([[0, 1], [0, 0]])
    # a grid without the default: only the "nothing to tune" rule can return 0.4
    th = tune_thresholds(probs, y, grid=[0.1, 0.9], default=0.4)
    assert th[0] == 0.4
    assert th[1] == pytest.approx(0.9)  # >= 0.1 gives F1 2/3, >= 0.9 gives 1


def test_tune_thresholds_returns_plain_floats():
    th = tune_thresholds(np.array([[0.7], [0.2]]), np.array([[1], [0]]))
    assert all(type(t) is float for t in th)


# ---------------------------------------------------------------- headline


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"topics": {"macro_f1": 0.6}, "stance": {"macro_f1": 0.8}}, 0.7),
        ({"topics": {"macro_f1": 0.6}}, 0.6),
        ({"stance": {"macro_f1": 0.4}}, 0.4),
        ({"topics": {"macro_f1": 0.6}, "stance": {"n": 0}}, 0.6),
        ({}, 0.0),
    ],
)
def test_headline_score(metrics, expected):
    assert headline_score(metrics) == pytest.approx(expected)
