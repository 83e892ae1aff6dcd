"""Records -> model examples (windows + masked labels) and the batch collator for the Trainer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sikap.features import ArticleFeatures, FeatureBuilder, flatten_features
from sikap.model import IGNORE
from sikap.text import article_text
from sikap.training.data import Record


@dataclass
class Example:
    features: ArticleFeatures
    topic_labels: list[float] | None  # multi-hot, None = unlabeled
    stance_labels: list[int]  # class index per actor, IGNORE = unlabeled


def label_arrays(records: Sequence[Record], meta: dict) -> tuple[np.ndarray | None, list[list[str | None]]]:
    """Gold topics as a multi-hot matrix (rows of IGNORE when unlabeled) and gold stance per actor."""
    topics, stance = meta.get("topics"), meta.get("stance")
    y_topics = None
    if topics:
        names = topics["names"]
        y_topics = np.full((len(records), len(names)), IGNORE, dtype=float)
        for i, r in enumerate(records):
            if r.topics is not None:
                y_topics[i] = [float(n in r.topics) for n in names]
    actors = [a["name"] for a in stance["actors"]] if stance else []
    y_stance = [[r.stances.get(a) for a in actors] for r in records]
    return y_topics, y_stance


def encode_records(records: Sequence[Record], builder: FeatureBuilder, meta: dict, chunk: int = 256) -> list[Example]:
    """Tokenize and window every record; labels become tensors-to-be with IGNORE for missing ones."""
    y_topics, y_stance = label_arrays(records, meta)
    classes = (meta.get("stance") or {}).get("classes", [])
    out = []
    for s in range(0, len(records), chunk):
        part = records[s : s + chunk]
        feats = builder.encode([article_text(r.title, r.text) for r in part])
        for j, f in enumerate(feats):
            i = s + j
            topic = None if y_topics is None or y_topics[i, 0] == IGNORE else y_topics[i].tolist()
            stance = [classes.index(g) if g in classes else IGNORE for g in y_stance[i]]
            out.append(Example(f, topic, stance))
    return out


class ArticleCollator:
    """Flattens the windows of a batch of articles into padded tensors with group indices."""

    def __init__(self, pad_id: int, n_topics: int, n_actors: int):
        self.pad_id, self.n_topics, self.n_actors = pad_id, n_topics, n_actors

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        b = len(examples)
        batch = {"articles": torch.arange(b)}
        batch.update(flatten_features([e.features for e in examples], self.n_actors, self.pad_id))
        if self.n_topics:
            labels = [e.topic_labels if e.topic_labels is not None else [IGNORE] * self.n_topics for e in examples]
            batch["topic_labels"] = torch.tensor(labels, dtype=torch.float)
        if self.n_actors:
            batch["stance_labels"] = torch.tensor([e.stance_labels for e in examples], dtype=torch.long)
        return batch


def class_weights(counts: Counter, labels: Sequence, cap: float = 10.0) -> torch.Tensor:
    """Inverse-frequency weights ``n / (k * count)``, capped; unseen classes get the cap."""
    n = sum(counts[c] for c in labels)
    k = len(labels)
    w = [min(cap, n / (k * counts[c])) if counts[c] else cap for c in labels]
    return torch.tensor(w, dtype=torch.float)


def topic_pos_weight(y: np.ndarray, cap: float = 10.0) -> torch.Tensor:
    """BCE pos_weight per topic: negatives/positives over labeled rows, in [1, cap]."""
    rows = y[y[:, 0] != IGNORE]
    pos = rows.sum(0)
    neg = len(rows) - pos
    return torch.tensor(np.clip(neg / np.maximum(pos, 1), 1.0, cap), dtype=torch.float)
