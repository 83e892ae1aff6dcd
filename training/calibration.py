"""Fitting head temperatures on dev, and calibration metrics (ECE, Brier, reliability bins).

The metric functions are pure (numpy in, floats/dicts out). Conventions for a head's arrays:

- softmax heads (stance, single-label topics): ``probs`` (n, C), ``y`` (n,) class indices;
  scored on the top label: confidence ``max p``, correct ``argmax p == y``;
- multi-label topics: ``probs`` and ``y`` (n, T), 0/1 gold; every (article, topic) pair is one
  binary event, scored on the positive probability ``p`` against ``y``.

How temperatures apply to the blended probabilities is told in :mod:`sikap.calibration`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sikap.calibration import apply_temperature
from sikap.config import NOT_MENTIONED
from sikap.model import IGNORE
from sikap.training.dataset import label_arrays

N_BINS = 10
T_BOUNDS = (0.05, 20.0)
PRIOR_SIGMA = 0.5  # of the normal prior on log T (see fit_temperature)
MIN_DEV_EXAMPLES = 10  # fewer labeled dev examples for a head: keep T = 1 (nothing to fit on)


# ---------------------------------------------------------------- metrics


def _events(probs: np.ndarray, y: np.ndarray, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) pairs: top label for softmax heads, every label for multi-label."""
    probs = np.asarray(probs, dtype=np.float64)
    if multi_label:
        return probs.ravel(), np.asarray(y, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=int)
    return probs.max(axis=1), (probs.argmax(axis=1) == y).astype(np.float64)


def reliability_bins(probs: np.ndarray, y: np.ndarray, *, multi_label: bool, n_bins: int = N_BINS) -> dict:
    """Equal-width confidence bins on [0, 1]: mean confidence, observed frequency and count per bin
    (bins without examples: None for confidence and frequency, count 0; JSON-ready)."""
    count, conf_sum, hit_sum = _bin_sums(probs, y, multi_label, n_bins)

    def mean(x: np.ndarray) -> list[float | None]:
        return [round(float(v) / c, 5) if c else None for v, c in zip(x, count, strict=True)]

    return {
        "edges": np.round(np.linspace(0.0, 1.0, n_bins + 1), 5).tolist(),
        "confidence": mean(conf_sum),
        "frequency": mean(hit_sum),
        "count": count.tolist(),
    }


def _bin_sums(probs, y, multi_label: bool, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: number of events, sum of confidences, sum of outcomes."""
    conf, hit = _events(probs, y, multi_label)
    # bin i holds (i/n, (i+1)/n]; a confidence of exactly 0 goes to the first bin
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    return (
        np.bincount(idx, minlength=n_bins),
        np.bincount(idx, weights=conf, minlength=n_bins),
        np.bincount(idx, weights=hit, minlength=n_bins),
    )


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, *, multi_label: bool, n_bins: int = N_BINS) -> float:
    """ECE (Guo et al. 2017): sum over bins of (bin share) * |observed frequency - mean confidence|."""
    count, conf_sum, hit_sum = _bin_sums(probs, y, multi_label, n_bins)
    if count.sum() == 0:
        return 0.0
    # count * |mean frequency - mean confidence| = |sum of outcomes - sum of confidences| per bin
    return float(np.abs(hit_sum - conf_sum).sum() / count.sum())


def brier_score(probs: np.ndarray, y: np.ndarray, *, multi_label: bool) -> float:
    """Mean squared error of the probabilities: per article summed over classes (softmax heads,
    range 0-2, Brier's original form), per (article, topic) pair for multi-label topics (0-1)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    if multi_label:
        return float(np.mean((probs - np.asarray(y, dtype=np.float64)) ** 2))
    onehot = np.eye(probs.shape[1])[np.asarray(y, dtype=int)]
    return float(np.mean(((probs - onehot) ** 2).sum(axis=1)))


def log_loss(probs: np.ndarray, y: np.ndarray, *, multi_label: bool) -> float:
    """Mean negative log-likelihood (binary cross-entropy per pair for multi-label)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    if multi_label:
        y = np.asarray(y, dtype=np.float64)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(y, dtype=int)])))


def fit_temperature(
    probs: np.ndarray, y: np.ndarray, *, multi_label: bool, bounds=T_BOUNDS, prior_sigma: float = PRIOR_SIGMA
) -> float:
    """Temperature scaling (Guo et al. 2017): the ``T`` in ``bounds`` minimizing the summed log-loss
    of ``apply_temperature(probs, T)`` plus a weak normal prior on ``log T`` (mean 0, ``prior_sigma``).

    The prior matters only for small dev sets: when the model ranks every dev example right, each
    smaller ``T`` lowers the log-loss and plain maximum likelihood drives ``T`` to 0 (probabilities
    of exactly 0 and 1); with it, 30 perfectly ranked examples end at ~0.93 confidence, while on a
    few hundred examples the data decide. A bounded 1-d search over ``log T``.
    """
    from scipy.optimize import minimize_scalar

    n = np.asarray(y).size  # events: articles, or (article, topic) pairs for multi-label

    def objective(log_t: float) -> float:
        cal = apply_temperature(probs, float(np.exp(log_t)), multi_label=multi_label)
        return n * log_loss(cal, y, multi_label=multi_label) + log_t**2 / (2 * prior_sigma**2)

    res = minimize_scalar(objective, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return round(float(np.exp(res.x)), 4)


# ---------------------------------------------------------------- arrays from predictions


def head_arrays(meta: dict, records: Sequence, preds: Sequence, *, calibrated: bool = True) -> dict:
    """Per head, the (probs, y) arrays of the labeled examples in ``preds`` (Predictor outputs).

    Topics: labeled articles. Stance: labeled (article, actor) pairs whose actor is mentioned
    (not_mentioned pairs have no probabilities). ``calibrated=False`` takes the probabilities
    before the head temperature.
    """
    out: dict = {}
    topics, stance = meta.get("topics"), meta.get("stance")
    y_topics, gold = label_arrays(records, meta)
    if topics:
        rows = [i for i in range(len(preds)) if y_topics[i, 0] != IGNORE and preds[i].topic_probs is not None]
        if rows:
            probs = np.array([_topic_probs(preds[i], calibrated) for i in rows])
            y = y_topics[rows]
            out["topics"] = (probs, y if topics["multi_label"] else y.argmax(1))
    if stance:
        classes = stance["classes"]
        probs, y = [], []
        for i, p in enumerate(preds):
            sp = p.stance_probs if calibrated or p.raw_stance_probs is None else p.raw_stance_probs
            for k, g in enumerate(gold[i]):
                if g in classes and g != NOT_MENTIONED and sp[k] is not None:
                    probs.append(sp[k]), y.append(classes.index(g))
        if y:
            out["stance"] = (np.array(probs), np.array(y))
    return out


def _topic_probs(pred, calibrated: bool) -> np.ndarray:
    return pred.topic_probs if calibrated or pred.raw_topic_probs is None else pred.raw_topic_probs


def _multi_label(meta: dict, head: str) -> bool:
    return head == "topics" and bool(meta["topics"]["multi_label"])


# ---------------------------------------------------------------- fit after training, report in evaluate


def fit_calibration(meta: dict, records: Sequence, preds: Sequence) -> dict:
    """Fit a temperature per head on dev predictions (made with ``T = 1``) and return the meta with
    ``topics.temperature``, ``stance.temperature`` and a ``calibration`` record of the fit.

    ``preds`` are recalibrated in place (probabilities only: the labels' ranking cannot change), so
    per-topic thresholds tuned on them afterwards are tuned on calibrated probabilities.
    """
    meta = dict(meta)
    record: dict = {"fitted_on": "dev", "method": "temperature scaling of the blended probabilities"}
    for head, (probs, y) in head_arrays(meta, records, preds, calibrated=False).items():
        ml = _multi_label(meta, head)
        t = fit_temperature(probs, y, multi_label=ml) if len(y) >= MIN_DEV_EXAMPLES else 1.0
        cal = apply_temperature(probs, t, multi_label=ml)
        record[head] = {
            "temperature": t,
            "n": int(len(y)),
            "dev_nll_before": round(log_loss(probs, y, multi_label=ml), 5),
            "dev_nll_after": round(log_loss(cal, y, multi_label=ml), 5),
            "dev_ece_before": round(expected_calibration_error(probs, y, multi_label=ml), 5),
            "dev_ece_after": round(expected_calibration_error(cal, y, multi_label=ml), 5),
        }
        if len(y) < MIN_DEV_EXAMPLES:
            record[head]["note"] = f"fewer than {MIN_DEV_EXAMPLES} labeled dev examples: not fitted"
        meta[head] = {**meta[head], "temperature": t}
        _recalibrate(preds, head, t, ml)
    meta["calibration"] = record
    return meta


def _recalibrate(preds: Sequence, head: str, t: float, multi_label: bool) -> None:
    """Each prediction's probabilities before any temperature, rescaled by ``t``."""
    for p in preds:
        if head == "topics" and p.topic_probs is not None:
            p.raw_topic_probs = raw = p.raw_topic_probs if p.raw_topic_probs is not None else p.topic_probs
            p.topic_probs = apply_temperature(raw, t, multi_label=multi_label)
        elif head == "stance":
            p.raw_stance_probs = raw = list(p.raw_stance_probs if p.raw_stance_probs is not None else p.stance_probs)
            p.stance_probs = [None if s is None else apply_temperature(s, t, multi_label=False) for s in raw]


def calibration_report(meta: dict, records: Sequence, preds: Sequence, *, n_bins: int = N_BINS) -> dict:
    """``metrics.json``'s ``calibration`` block: per head the temperature, n, ECE and Brier score
    before and after calibration, and the reliability bins behind the diagram."""
    out: dict = {"n_bins": n_bins}
    before = head_arrays(meta, records, preds, calibrated=False)
    after = head_arrays(meta, records, preds, calibrated=True)
    for head, (p0, y) in before.items():
        p1 = after[head][0]
        ml = _multi_label(meta, head)
        out[head] = {
            "temperature": float((meta.get(head) or {}).get("temperature") or 1.0),
            "n": int(len(y)),
            "ece_before": round(expected_calibration_error(p0, y, multi_label=ml, n_bins=n_bins), 5),
            "ece_after": round(expected_calibration_error(p1, y, multi_label=ml, n_bins=n_bins), 5),
            "brier_before": round(brier_score(p0, y, multi_label=ml), 5),
            "brier_after": round(brier_score(p1, y, multi_label=ml), 5),
            "reliability_before": reliability_bins(p0, y, multi_label=ml, n_bins=n_bins),
            "reliability_after": reliability_bins(p1, y, multi_label=ml, n_bins=n_bins),
        }
    return out
