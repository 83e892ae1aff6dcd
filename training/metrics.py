"""Pure metric and threshold functions (numpy in, plain dicts out), built on scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from sikap.config import NOT_MENTIONED


def topic_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> dict:
    """Per-topic precision/recall/F1/support plus macro and micro F1.

    Counted per column from true/false positives, so one topic is still scored as a topic
    (scikit-learn would read a single indicator column as a binary target with two classes).

    Args:
        y_true, y_pred: (n_articles, n_topics) 0/1 indicator matrices.
    """
    y_true = np.asarray(y_true, dtype=int).reshape(-1, len(names)).astype(bool)
    y_pred = np.asarray(y_pred, dtype=int).reshape(-1, len(names)).astype(bool)
    tp = (y_true & y_pred).sum(0)
    fp = (~y_true & y_pred).sum(0)
    fn = (y_true & ~y_pred).sum(0)
    p, r, f = _prf(tp, fp, fn)
    per_label = {
        n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(tp[i] + fn[i])}
        for i, n in enumerate(names)
    }
    micro = _prf(tp.sum(), fp.sum(), fn.sum())[2]
    return {
        "n": int(y_true.shape[0]),
        "macro_f1": float(np.mean(f)) if len(names) else 0.0,
        "micro_f1": float(micro),
        "exact_match": float(np.mean(np.all(y_true == y_pred, axis=1))) if len(y_true) else 0.0,
        "per_label": per_label,
    }


def _prf(tp, fp, fn):
    """Precision, recall, F1 from counts (0 where undefined, as scikit-learn's zero_division=0)."""
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    p = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    r = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    f = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    return p, r, f


def f_avg(gold: Sequence[str], pred: Sequence[str], favor: str = "favor", against: str = "against") -> float:
    """SemEval-2016 stance metric: the mean of the F1 of the favor and against classes."""
    f = f1_score(gold, pred, labels=[favor, against], average=None, zero_division=0)
    return float(np.mean(f))


def stance_metrics(
    gold: Sequence[Sequence[str | None]],
    pred: Sequence[Sequence[str]],
    actors: Sequence[str],
    classes: Sequence[str],
) -> dict:
    """Per-actor and overall stance scores over the (article, actor) pairs that carry a gold label.

    A prediction of ``not_mentioned`` for a labeled pair counts as a miss (it appears as its
    own column of the confusion matrix). Macro-F1 averages over ``classes``; F_avg is the
    favor/against mean when both classes exist.
    """
    pairs_by_actor: dict[str, tuple[list[str], list[str]]] = {a: ([], []) for a in actors}
    for g_row, p_row in zip(gold, pred, strict=True):
        for a, g, p in zip(actors, g_row, p_row, strict=True):
            if g is not None and g != NOT_MENTIONED:
                pairs_by_actor[a][0].append(g)
                pairs_by_actor[a][1].append(p)
    all_g = [g for a in actors for g in pairs_by_actor[a][0]]
    all_p = [p for a in actors for p in pairs_by_actor[a][1]]
    out = _stance_block(all_g, all_p, classes)
    out["per_actor"] = {a: _stance_block(*pairs_by_actor[a], classes) for a in actors if pairs_by_actor[a][0]}
    return out


def _stance_block(gold: list[str], pred: list[str], classes: Sequence[str]) -> dict:
    classes = list(classes)
    if not gold:
        return {"n": 0}
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=classes, average=None, zero_division=0)
    cm_labels = classes + [NOT_MENTIONED]
    block = {
        "n": len(gold),
        "macro_f1": float(f1_score(gold, pred, labels=classes, average="macro", zero_division=0)),
        "accuracy": float(np.mean([g == q for g, q in zip(gold, pred, strict=True)])),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion": {"labels": cm_labels, "matrix": confusion_matrix(gold, pred, labels=cm_labels).tolist()},
    }
    if "favor" in classes and "against" in classes:
        block["f_avg"] = f_avg(gold, pred)
    return block


def tune_thresholds(
    probs: np.ndarray, y_true: np.ndarray, grid: Sequence[float] | None = None, default: float = 0.5
) -> list[float]:
    """Per-topic decision threshold maximising that topic's F1 on dev.

    Ties go to the threshold closest to ``default``; a topic with no positive example keeps
    ``default`` (nothing to tune on).
    """
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true, dtype=int)
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if grid is None else np.asarray(grid)
    out = []
    for t in range(probs.shape[1]):
        if y_true[:, t].sum() == 0:
            out.append(default)
            continue
        scores = [f1_score(y_true[:, t], probs[:, t] >= g, zero_division=0) for g in grid]
        best = max(scores)
        candidates = [g for g, s in zip(grid, scores, strict=True) if s >= best - 1e-12]
        out.append(float(min(candidates, key=lambda g: abs(g - default))))
    return out


def headline_score(metrics: dict) -> float:
    """One number to early-stop on: the mean of topic macro-F1 and stance macro-F1 (those present)."""
    parts = [metrics[k]["macro_f1"] for k in ("topics", "stance") if k in metrics and "macro_f1" in metrics[k]]
    return float(np.mean(parts)) if parts else 0.0
