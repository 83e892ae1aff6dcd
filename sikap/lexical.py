"""The lexical side of a sikap model: TF-IDF n-grams + linear classifiers, stored without pickle.

A bag of words is strong on long opinion articles (BENCHMARKS.md: TF-IDF + a linear model beat
the encoder on id-stance), so a sikap model carries one beside the encoder and blends the two
probability estimates (``meta["blend"]``: the encoder's share per head, chosen on dev).

Stored in the model directory as ``lexical.json`` (vectorizer settings, vocabularies in index
order, head layout) and ``lexical.safetensors`` (idf vectors, coefficients, intercepts). Loading
rebuilds scikit-learn ``TfidfVectorizer`` objects from those arrays; nothing is unpickled.
Fitting lives in ``sikap.training.lexical``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LEXICAL_JSON = "lexical.json"
LEXICAL_WEIGHTS = "lexical.safetensors"
LEXICAL_VERSION = 1

# word 1-2-grams + character 2-5-grams inside word boundaries, sublinear tf: the benchmark baseline's features
VECTORIZERS: dict[str, dict[str, Any]] = {
    "word": {"analyzer": "word", "ngram_range": [1, 2], "min_df": 1, "max_features": 100_000},
    "char": {"analyzer": "char_wb", "ngram_range": [2, 5], "min_df": 2, "max_features": 100_000},
}


def make_vectorizer(params: dict[str, Any]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer=params["analyzer"],
        ngram_range=tuple(params["ngram_range"]),
        min_df=params.get("min_df", 1),
        max_features=params.get("max_features"),
        sublinear_tf=True,
        lowercase=True,
        dtype=np.float32,
    )


@dataclass
class LinearHead:
    """Scores ``x @ coef.T + intercept``; ``kind`` "softmax" (rows = classes) or "sigmoid" (rows = labels,
    or one row for a binary task whose positive class is ``classes[1]``)."""

    classes: list[str]
    coef: np.ndarray  # (rows, n_features)
    intercept: np.ndarray  # (rows,)
    kind: str = "softmax"
    temperature: float = 1.0  # scores are divided by it (fitted on dev: balanced LR is under-confident)

    def proba(self, x) -> np.ndarray:
        """(n, len(classes)) probabilities for a sparse (n, n_features) matrix."""
        z = (np.asarray(x @ self.coef.T, dtype=np.float64) + self.intercept) / self.temperature
        if self.kind == "softmax":
            if z.shape[1] == 1:  # binary: one row scores the second class
                p1 = _sigmoid(z[:, 0])
                return np.stack([1 - p1, p1], axis=1)
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        return _sigmoid(z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@dataclass
class LexicalModel:
    """TF-IDF features + a topic head, one stance head per trained actor and a generic stance head.

    ``topics`` gives probabilities in the model's topic order; ``stance[k]`` in its class order for
    actor ``k`` (absent: too few labels to fit one); ``generic`` serves actors added at classify time.
    """

    vectorizers: list[tuple[str, dict[str, Any], Any]]  # (name, params, fitted TfidfVectorizer)
    topics: LinearHead | None = None
    stance: dict[int, LinearHead] = field(default_factory=dict)
    generic: LinearHead | None = None
    n_trained_actors: int = 0

    def transform(self, texts: Sequence[str]):
        from scipy.sparse import hstack

        return hstack([v.transform(texts) for _, _, v in self.vectorizers], format="csr", dtype=np.float32)

    def predict(self, texts: Sequence[str], n_actors: int) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
        """Topic probabilities (B, T) and, per actor index < ``n_actors`` (trained first, then added
        ones), stance probabilities (B, C) or None where no lexical head applies."""
        x = self.transform(texts)
        topics = self.topics.proba(x) if self.topics is not None else None
        generic = None
        stance: list[np.ndarray | None] = []
        for k in range(n_actors):
            head = self.stance.get(k)
            if head is None and k >= self.n_trained_actors and self.generic is not None:
                if generic is None:
                    generic = self.generic.proba(x)
                stance.append(generic)
            else:
                stance.append(head.proba(x) if head is not None else None)
        return topics, stance

    # ------------------------------------------------------------ storage

    def save(self, out_dir: Path) -> None:
        from safetensors.numpy import save_file

        out_dir = Path(out_dir)
        arrays: dict[str, np.ndarray] = {}
        vecs = []
        for name, params, v in self.vectorizers:
            vocab = [""] * len(v.vocabulary_)
            for term, i in v.vocabulary_.items():
                vocab[i] = term
            vecs.append({"name": name, "params": params, "vocabulary": vocab})
            arrays[f"idf.{name}"] = np.asarray(v.idf_, dtype=np.float32)

        def head(key: str, h: LinearHead | None):
            if h is None:
                return None
            arrays[f"{key}.coef"] = np.ascontiguousarray(h.coef, dtype=np.float32)
            arrays[f"{key}.intercept"] = np.asarray(h.intercept, dtype=np.float32)
            return {"key": key, "classes": h.classes, "kind": h.kind, "temperature": h.temperature}

        doc = {
            "format_version": LEXICAL_VERSION,
            "vectorizers": vecs,
            "n_trained_actors": self.n_trained_actors,
            "topics": head("topics", self.topics),
            "stance": {str(k): head(f"stance.{k}", h) for k, h in sorted(self.stance.items())},
            "generic": head("generic", self.generic),
        }
        save_file(arrays, str(out_dir / LEXICAL_WEIGHTS))
        (out_dir / LEXICAL_JSON).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, model_dir: Path) -> LexicalModel:
        """Rebuild from ``lexical.json`` + ``lexical.safetensors``; ValueError names what is wrong."""
        from safetensors.numpy import load_file

        model_dir = Path(model_dir)
        try:
            doc = json.loads((model_dir / LEXICAL_JSON).read_text(encoding="utf-8"))
            arrays = load_file(str(model_dir / LEXICAL_WEIGHTS))
        except Exception as e:  # OSError, JSONDecodeError, SafetensorError (not a ValueError)
            raise ValueError(
                f"{model_dir}: cannot read the lexical model ({LEXICAL_JSON}, {LEXICAL_WEIGHTS}): {e}"
            ) from e
        try:
            if doc.get("format_version") != LEXICAL_VERSION:
                raise ValueError(f"format_version {doc.get('format_version')!r}, expected {LEXICAL_VERSION}")
            vectorizers = []
            n_features = 0
            for spec in doc["vectorizers"]:
                v = make_vectorizer(spec["params"])
                v.vocabulary_ = {t: i for i, t in enumerate(spec["vocabulary"])}
                v.fixed_vocabulary_ = True
                idf = arrays[f"idf.{spec['name']}"].astype(np.float64)
                if len(idf) != len(v.vocabulary_):
                    raise ValueError(
                        f"vectorizer {spec['name']!r}: {len(idf)} idf values for {len(v.vocabulary_)} terms"
                    )
                v.idf_ = idf
                vectorizers.append((spec["name"], spec["params"], v))
                n_features += len(idf)

            def head(h):
                if h is None:
                    return None
                coef = arrays[f"{h['key']}.coef"].astype(np.float64)
                if coef.ndim != 2 or coef.shape[1] != n_features:
                    raise ValueError(
                        f"head {h['key']!r}: coefficients of shape {coef.shape}, expected (*, {n_features})"
                    )
                return LinearHead(
                    list(h["classes"]),
                    coef,
                    arrays[f"{h['key']}.intercept"].astype(np.float64),
                    h["kind"],
                    float(h.get("temperature", 1.0)),
                )

            return cls(
                vectorizers=vectorizers,
                topics=head(doc.get("topics")),
                stance={int(k): head(h) for k, h in (doc.get("stance") or {}).items() if h is not None},
                generic=head(doc.get("generic")),
                n_trained_actors=int(doc.get("n_trained_actors", 0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{model_dir}: damaged lexical model ({LEXICAL_JSON}): {e}") from e


def set_temperature(model: LexicalModel, head: str, t: float) -> None:
    """Set the temperature of the topic head (``head="topics"``) or of every stance head (``"stance"``)."""
    heads = [model.topics] if head == "topics" else [*model.stance.values(), model.generic]
    for h in heads:
        if h is not None:
            h.temperature = float(t)


def blend(neural: np.ndarray, lexical: np.ndarray | None, weight: float) -> np.ndarray:
    """``weight`` * encoder probabilities + (1 - weight) * lexical probabilities (weight 1: encoder only)."""
    if lexical is None or weight >= 1.0:
        return neural
    return weight * neural + (1.0 - weight) * lexical
