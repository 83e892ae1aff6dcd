"""Fitting the lexical model (TF-IDF + logistic regression) and choosing how it blends with the encoder.

The heads are scikit-learn ``LogisticRegression`` models (balanced class weights, C picked by
3-fold cross-validation on the training records only); their coefficients are copied into
:class:`sikap.lexical.LinearHead` so the model directory stores arrays, not pickles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sikap.calibration import apply_temperature
from sikap.lexical import VECTORIZERS, LexicalModel, LinearHead, make_vectorizer
from sikap.text import article_text
from sikap.training.data import Record

C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)


def _fit_lr(x, y: np.ndarray, seed: int):
    """LogisticRegression with C chosen by stratified 3-fold CV macro-F1 (fewer folds for rare classes)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    lr = LogisticRegression(class_weight="balanced", max_iter=2000, C=10.0)
    _, counts = np.unique(y, return_counts=True)
    n_cv = int(min(3, counts.min()))
    if n_cv < 2:
        return lr.fit(x, y)
    grid = GridSearchCV(
        lr, {"C": list(C_GRID)}, scoring="f1_macro", cv=StratifiedKFold(n_cv, shuffle=True, random_state=seed)
    )
    return grid.fit(x, y).best_estimator_


def _softmax_head(clf, classes: Sequence[str]) -> LinearHead:
    """A LinearHead in the model's class order from a fitted multi-class / binary LogisticRegression.

    Classes the training data never showed get a very low score."""
    fitted = [str(c) for c in clf.classes_]
    coef, intercept = np.asarray(clf.coef_), np.asarray(clf.intercept_)
    if len(fitted) == 2:  # one row scoring fitted[1]: expand to two rows (-z/2, z/2) = same softmax
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    rows = np.zeros((len(classes), coef.shape[1]))
    bias = np.full(len(classes), -30.0)
    for i, c in enumerate(classes):
        if c in fitted:
            rows[i], bias[i] = coef[fitted.index(c)], intercept[fitted.index(c)]
    return LinearHead(list(classes), rows, bias, "softmax")


def fit_lexical(records: Sequence[Record], meta: dict, *, seed: int = 0) -> LexicalModel | None:
    """Fit TF-IDF on the records' texts and a head per labeled task; None when nothing can be fitted."""
    texts = [article_text(r.title, r.text) for r in records]
    if len(texts) < 4:
        return None
    vectorizers = []
    for name, params in VECTORIZERS.items():
        v = make_vectorizer(params)
        try:
            v.fit(texts)
        except ValueError:  # empty vocabulary (e.g. min_df on a tiny corpus)
            continue
        vectorizers.append((name, params, v))
    if not vectorizers:
        return None
    model = LexicalModel(vectorizers)
    x = model.transform(texts)
    topics, stance = meta.get("topics"), meta.get("stance")
    if topics:
        idx = [i for i, r in enumerate(records) if r.topics is not None]
        names = topics["names"]
        if topics["multi_label"]:
            coef, bias = np.zeros((len(names), x.shape[1])), np.full(len(names), -30.0)
            for j, n in enumerate(names):
                y = np.array([int(n in records[i].topics) for i in idx])
                if len(set(y)) == 2:
                    clf = _fit_lr(x[idx], y, seed)
                    coef[j], bias[j] = clf.coef_[0], clf.intercept_[0]
            model.topics = LinearHead(list(names), coef, bias, "sigmoid")
        else:
            y = np.array([records[i].topics[0] for i in idx if records[i].topics])
            keep = [i for i in idx if records[i].topics]
            if len(set(y)) >= 2:
                model.topics = _softmax_head(_fit_lr(x[keep], y, seed), names)
    if stance:
        classes = stance["classes"]
        actors = [a["name"] for a in stance["actors"]]
        model.n_trained_actors = len(actors)
        pooled_i, pooled_y = [], []
        for k, a in enumerate(actors):
            idx = [i for i, r in enumerate(records) if r.stances.get(a) in classes]
            y = np.array([records[i].stances[a] for i in idx])
            pooled_i += idx
            pooled_y += list(y)
            if len(set(y)) >= 2:
                model.stance[k] = _softmax_head(_fit_lr(x[idx], y, seed), classes)
        if len(set(pooled_y)) >= 2:  # actor-independent: for actors added at classify time
            model.generic = _softmax_head(_fit_lr(x[pooled_i], np.array(pooled_y), seed), classes)
    return model


# ---------------------------------------------------------------- blending


WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))))


def _bce(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


TEMPERATURES = tuple(round(float(t), 4) for t in np.geomspace(0.02, 2.0, 31))


def rescale(p: np.ndarray, t: float, *, multi_label: bool) -> np.ndarray:
    """Probabilities whose scores (logits, recovered from ``p``) are divided by ``t``."""
    return apply_temperature(p, t, multi_label=multi_label)


def choose_temperature(p: np.ndarray, y: np.ndarray, *, multi_label: bool) -> float:
    """Temperature scaling (Guo et al. 2017) on dev: the t that minimizes the log-loss of ``rescale(p, t)``."""
    loss = _bce if multi_label else _nll
    return min(TEMPERATURES, key=lambda t: (loss(rescale(p, t, multi_label=multi_label), y), abs(t - 1.0)))


def choose_weight(neural: np.ndarray, lexical: np.ndarray, y: np.ndarray, *, multi_label: bool) -> tuple[float, dict]:
    """The encoder's share w in ``w * neural + (1 - w) * lexical`` minimizing dev log-loss.

    ``y``: class indices (softmax heads) or a multi-hot matrix (multi-label topics). Log-loss, not
    macro-F1: on a few dozen dev articles F1 moves in steps of one article, log-loss smoothly.
    Returns the weight and the loss per weight.
    """
    losses = {}
    for w in WEIGHTS:
        p = w * neural + (1 - w) * lexical
        losses[w] = _bce(p, y) if multi_label else _nll(p, y)
    best = min(losses, key=lambda w: (round(losses[w], 6), -w))
    return float(best), {str(w): round(v, 5) for w, v in losses.items()}
