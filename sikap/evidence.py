"""Evidence: the passage of an article that drove a prediction, chosen from the window logits.

An article is read as windows; each window (topics) or each window that mentions an actor
(stance) gives item logits, and the article logit is their max or mean
(:mod:`sikap.aggregate`). The evidence for a predicted class is the item with the highest
*contribution* to the article logit of that class:

- ``max`` aggregation: the item's logit for the class; the chosen item is exactly the one
  that supplies the article's (max) logit.
- ``mean`` aggregation, independent classes (multi-label topics, sigmoid): the item's logit
  for the class, i.e. the largest term of the mean.
- ``mean`` aggregation, exclusive classes (stance, single-label topics, softmax): what decides
  the class is its margin over the runner-up class ``r`` (the article's best other class), and
  that margin is the mean of the items' margins ``logit[c] - logit[r]``; the item with the
  largest margin contributes most.

Attention pooling (``stance_pooling: attention``) weighs tokens *inside* a window; the item
logits already include it, so the choice between windows is the same rule. When the lexical
blend contributes to the probabilities, the evidence still comes from the encoder's windows
(the lexical model has no passages). Nothing here runs a model: the logits are the ones the
prediction computed (no second forward pass).

The record gives the chosen window as character offsets into the text the model read
(:func:`sikap.text.article_text`: title, a blank line, body) and a snippet of at most
``max_chars`` characters cut at whitespace word boundaries; for stance the snippet is
centred on the actor's alias inside that window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sikap.features import ArticleFeatures
from sikap.text import find_mentions

MAX_SNIPPET = 300
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Evidence:
    """A window of the article (``text[start:end]``) and a short snippet from it."""

    start: int
    end: int
    text: str

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text}


def contributions(items: np.ndarray, article: np.ndarray, cls: int, how: str, exclusive: bool) -> np.ndarray:
    """Each item's contribution to the article logit of class ``cls`` (see the module docstring).

    Args:
        items: (n, k) item logits of one article (or one article x actor).
        article: (k,) the aggregated logits.
        how: "max" or "mean", the aggregation that made ``article`` from ``items``.
        exclusive: softmax classes (True) or independent sigmoid classes (False).
    Returns:
        (n,) contributions.
    """
    items = np.asarray(items, dtype=float)
    if how == "max" or not exclusive or items.shape[1] < 2:
        return items[:, cls]
    others = np.asarray(article, dtype=float).copy()
    others[cls] = -np.inf
    runner_up = int(np.argmax(others))
    return items[:, cls] - items[:, runner_up]


def best_item(items: np.ndarray, article: np.ndarray, cls: int, how: str, exclusive: bool) -> int:
    """Index of the item with the highest contribution (the earliest one on ties)."""
    return int(np.argmax(contributions(items, article, cls, how, exclusive)))


def snippet_span(
    text: str, window: tuple[int, int], focus: tuple[int, int] | None = None, max_chars: int = MAX_SNIPPET
) -> tuple[int, int]:
    """Character span of a snippet of ``text`` inside ``window``, at most ``max_chars`` long.

    The snippet is made of whole whitespace-separated words: it starts at a word start and ends
    at a word end (a word that a window edge cuts is left out). It holds the words around
    ``focus`` (e.g. an alias mention; kept whole even where it crosses the window edge) and
    grows alternately left and right while it fits; without focus it starts at the window start.
    A window inside one word, or a focus word longer than ``max_chars``, is cut hard.
    """
    ws, we = window
    words = _words_around(text, ws, we) if focus is None else _words_around(text, min(ws, focus[0]), max(we, focus[1]))
    if focus is None:
        keep = [w for w in words if w[0] >= ws and w[1] <= we]
        core = [0] if keep else []
    else:
        fs, fe = focus
        keep = [w for w in words if (w[0] >= ws and w[1] <= we) or (w[0] < fe and w[1] > fs)]
        core = [i for i, w in enumerate(keep) if w[0] < fe and w[1] > fs]
    if not core:
        s = ws if focus is None else focus[0]
        return (s, min(we if focus is None else focus[1], s + max_chars))
    i, j = core[0], core[-1]
    if keep[j][1] - keep[i][0] > max_chars:
        s = keep[i][0] if focus is None else max(keep[i][0], focus[0])
        return (s, min(keep[j][1], s + max_chars))
    left_turn = focus is not None  # centred on a focus; else read on from the window start
    while True:
        left_ok = i > 0 and keep[j][1] - keep[i - 1][0] <= max_chars
        right_ok = j + 1 < len(keep) and keep[j + 1][1] - keep[i][0] <= max_chars
        if not (left_ok or right_ok):
            return (keep[i][0], keep[j][1])
        if left_ok and (left_turn or not right_ok):
            i -= 1
        else:
            j += 1
        left_turn = focus is not None and not left_turn


def _words_around(text: str, ws: int, we: int) -> list[tuple[int, int]]:
    """Whole whitespace-separated words overlapping [ws, we), as (start, end) spans."""
    while ws > 0 and not text[ws - 1].isspace():
        ws -= 1
    while we < len(text) and not text[we].isspace():
        we += 1
    return [m.span() for m in _WORD.finditer(text, ws, we)]


def clean(text: str) -> str:
    """Whitespace runs (line breaks included) as single spaces, for a one-line snippet."""
    return " ".join(text.split())


def make_evidence(
    text: str, window: tuple[int, int], aliases: Sequence[str] | None = None, max_chars: int = MAX_SNIPPET
) -> Evidence:
    """Evidence for one chosen window; with ``aliases`` (stance) the snippet holds the first mention."""
    focus = None
    if aliases:
        ws, we = window
        inside = [(s, e) for s, e in find_mentions(text, aliases) if s < we and e > ws]
        focus = inside[0] if inside else None
    s, e = snippet_span(text, window, focus, max_chars)
    return Evidence(min(window[0], s), max(window[1], e), clean(text[s:e]))


def article_evidence(
    text: str,
    feats: ArticleFeatures,
    *,
    topic_items: np.ndarray | None,
    topic_logits: np.ndarray | None,
    topics: Sequence[int],
    topic_how: str,
    topic_exclusive: bool,
    stance_items: dict[int, np.ndarray],
    stance_logits: np.ndarray | None,
    stances: dict[int, int],
    stance_how: str,
    aliases: Sequence[Sequence[str]],
    max_chars: int = MAX_SNIPPET,
) -> tuple[dict[int, Evidence], dict[int, Evidence]]:
    """Evidence per predicted topic and per mentioned actor of one article.

    ``topic_items`` (m, T) are the logits of the windows ``feats.topic`` (same order), ``topics``
    the predicted topic ids; ``stance_items[k]`` (n_k, C) the logits of ``feats.stance[k]``,
    ``stances`` maps a mentioned actor to its predicted class. Returns (topic id -> evidence,
    actor -> evidence).
    """
    spans = feats.char_spans
    t_out: dict[int, Evidence] = {}
    if topic_items is not None and len(feats.topic):
        for t in topics:
            i = best_item(topic_items, topic_logits, t, topic_how, topic_exclusive)
            t_out[t] = make_evidence(text, spans[feats.topic[i]], None, max_chars)
    s_out: dict[int, Evidence] = {}
    for k, c in stances.items():
        if k not in stance_items or not len(stance_items[k]):
            continue
        i = best_item(stance_items[k], stance_logits[k], c, stance_how, True)
        window = spans[feats.stance[k][i][0]]
        s_out[k] = make_evidence(text, window, aliases[k], max_chars)
    return t_out, s_out
