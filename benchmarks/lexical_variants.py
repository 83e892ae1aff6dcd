"""Ablation: variants of the bag-of-words model on id-stance, 5-fold CV (the folds of benchmarks/accuracy.py).

    python benchmarks/lexical_variants.py --data-root ../shared/data

TF-IDF (word 1-2 + char 2-5) + LinearSVC (the baseline of accuracy.py), the same features with logistic
regression, the features augmented per target (one copy of every feature per politician, "frustratingly
easy" domain adaptation: what is favor for one target's supporters can be against for another), and one
classifier per target. C by 3-fold CV on each training part; macro-F1 on each scored fold. The text is
title + body (accuracy.py's baseline reads the same records through sikap's article text, hence its
slightly different baseline figure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.accuracy import TASKS, _fit_svc, _tfidf, cv_folds, import_task, read_jsonl  # noqa: E402


def augment(x, tgt, targets):
    """[x, x * 1(target = t) for each t]: shared weights plus per-target corrections."""
    return sp.hstack([x] + [x.multiply((tgt == k).astype(float)[:, None]).tocsr() for k in targets]).tocsr()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    rows = read_jsonl(import_task(TASKS["id-stance"], args.data_root, print)["all"])
    folds = cv_folds(rows)
    texts = np.array([(r.get("title") or "") + "\n" + (r.get("text") or "") for r in rows])
    tgt = np.array([next(iter(r["stances"])) for r in rows])
    y = np.array([next(iter(r["stances"].values())) for r in rows])
    targets = sorted(set(tgt))

    def svc(tr, te):
        v = _tfidf()
        m, _ = _fit_svc(v.fit_transform(texts[tr]), y[tr])
        return m.predict(v.transform(texts[te]))

    def logreg(tr, te):
        v = _tfidf()
        lr = LogisticRegression(class_weight="balanced", max_iter=3000)
        cv = StratifiedKFold(3, shuffle=True, random_state=0)
        g = GridSearchCV(lr, {"C": [1, 3, 10, 30, 100]}, scoring="f1_macro", cv=cv, n_jobs=1)
        g.fit(v.fit_transform(texts[tr]), y[tr])
        return g.best_estimator_.predict(v.transform(texts[te]))

    def svc_augmented(tr, te):
        v = _tfidf()
        m, _ = _fit_svc(augment(v.fit_transform(texts[tr]), tgt[tr], targets), y[tr])
        return m.predict(augment(v.transform(texts[te]), tgt[te], targets))

    def per_target(tr, te):
        out = np.empty(len(te), dtype=object)
        for k in targets:
            a, b = tr[tgt[tr] == k], np.where(tgt[te] == k)[0]
            if len(b):
                v = _tfidf()
                m, _ = _fit_svc(v.fit_transform(texts[a]), y[a])
                out[b] = m.predict(v.transform(texts[te[b]]))
        return out

    print("| variant | mean macro-F1 | folds 1-5 |\n|---|---|---|")
    for name, fn in [
        ("TF-IDF + LinearSVC (baseline)", svc),
        ("TF-IDF + logistic regression", logreg),
        ("TF-IDF + LinearSVC, features augmented per target", svc_augmented),
        ("one TF-IDF + LinearSVC per target", per_target),
    ]:
        s = [f1_score(y[te], fn(np.array(tr), np.array(te)), average="macro") for tr, te in folds]
        print(f"| {name} | {np.mean(s):.3f} | {' / '.join(f'{v:.3f}' for v in s)} |", flush=True)


if __name__ == "__main__":
    main()
