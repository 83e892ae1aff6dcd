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
``max_chars`` characters cut at whitespace word boundaries; for stance the snippet holds one
of the actor's mentions inside that window. Where the item logits decompose over tokens (mean
pooling and a linear head: each token's term of the pooled vector times the head weight; in
shared mode with attention pooling, attention weight x token term), the snippet is the run of
words with the largest total share of the same contribution; otherwise ([CLS] pooling) it
reads from the window start, or around the first mention.
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
TokenScores = tuple[np.ndarray, np.ndarray]  # (character start of each token, its score)


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
    runner_up = _runner_up(article, cls, how, exclusive)
    return items[:, cls] - (items[:, runner_up] if runner_up is not None else 0.0)


def best_item(items: np.ndarray, article: np.ndarray, cls: int, how: str, exclusive: bool) -> int:
    """Index of the item with the highest contribution (the earliest one on ties)."""
    return int(np.argmax(contributions(items, article, cls, how, exclusive)))


def snippet_span(
    text: str,
    window: tuple[int, int],
    focus: tuple[int, int] | None = None,
    max_chars: int = MAX_SNIPPET,
    token_scores: TokenScores | None = None,
) -> tuple[int, int]:
    """Character span of a snippet of ``text`` inside ``window``, at most ``max_chars`` long.

    The snippet is made of whole whitespace-separated words: it starts at a word start and ends
    at a word end (a word that a window edge cuts is left out). It holds the words of ``focus``
    (e.g. an alias mention; kept whole even where it crosses the window edge). With
    ``token_scores`` it is the run of words, as long as fits, with the highest total score;
    without, it grows alternately left and right of the focus, or reads on from the window start.
    A window inside one word, or a focus word longer than ``max_chars``, is cut hard.
    """
    return _snippet(text, window, focus, max_chars, token_scores)[0]


def _snippet(text, window, focus, max_chars, token_scores) -> tuple[tuple[int, int], float]:
    """:func:`snippet_span` and the total token score inside it (0 without scores)."""
    ws, we = window
    words = _words_around(text, ws, we) if focus is None else _words_around(text, min(ws, focus[0]), max(we, focus[1]))
    if focus is None:
        keep = [w for w in words if w[0] >= ws and w[1] <= we]
        core = (0, 0) if keep else None
    else:
        fs, fe = focus
        keep = [w for w in words if (w[0] >= ws and w[1] <= we) or (w[0] < fe and w[1] > fs)]
        inside = [i for i, w in enumerate(keep) if w[0] < fe and w[1] > fs]
        core = (inside[0], inside[-1]) if inside else None
    if core is None:
        s = ws if focus is None else focus[0]
        return (s, min(we if focus is None else focus[1], s + max_chars)), 0.0
    i, j = core
    if keep[j][1] - keep[i][0] > max_chars:
        s = keep[i][0] if focus is None else max(keep[i][0], focus[0])
        return (s, min(keep[j][1], s + max_chars)), 0.0
    if token_scores is not None:
        return _best_run(keep, word_scores(keep, token_scores), max_chars, core if focus else None)
    return _grow(keep, i, j, max_chars, centred=focus is not None), 0.0


def _grow(words: list[tuple[int, int]], i: int, j: int, max_chars: int, centred: bool) -> tuple[int, int]:
    """Widen words[i..j] one word at a time (alternately left and right when ``centred``) while it fits."""
    left_turn = centred
    while True:
        left_ok = i > 0 and words[j][1] - words[i - 1][0] <= max_chars
        right_ok = j + 1 < len(words) and words[j + 1][1] - words[i][0] <= max_chars
        if not (left_ok or right_ok):
            return (words[i][0], words[j][1])
        if left_ok and (left_turn or not right_ok):
            i -= 1
        else:
            j += 1
        left_turn = centred and not left_turn


def word_scores(words: Sequence[tuple[int, int]], token_scores: TokenScores) -> np.ndarray:
    """(n_words,) sum of the scores of the tokens that start inside each word (tokens never cross
    whitespace, so each token belongs to at most one word)."""
    starts = np.array([w[0] for w in words])
    ends = np.array([w[1] for w in words])
    out = np.zeros(len(words))
    tok_start, scores = np.asarray(token_scores[0]), np.asarray(token_scores[1], dtype=float)
    if len(words) and len(scores):
        at = np.searchsorted(starts, tok_start, side="right") - 1
        ok = (at >= 0) & (tok_start < ends[np.clip(at, 0, None)])
        np.add.at(out, at[ok], scores[ok])
    return out


def _best_run(words, scores: np.ndarray, max_chars: int, must: tuple[int, int] | None):
    """The maximal run of words (longest that fits from its first word) with the highest total score.

    ``must``: the run has to cover words must[0]..must[1]. Returns ((start, end), score); ties go
    to the earliest run.
    """
    starts = np.array([w[0] for w in words])
    ends = np.array([w[1] for w in words])
    prefix = np.concatenate([[0.0], np.cumsum(scores)])
    # for each first word i: the last word j that still fits (ends[j] - starts[i] <= max_chars)
    last = np.searchsorted(ends, starts + max_chars, side="right") - 1
    first = np.arange(len(words))
    total = prefix[last + 1] - prefix[first]
    ok = last >= first
    if must is not None:
        ok &= (first <= must[0]) & (last >= must[1])
    if not ok.any():  # cannot happen for a focus that fits, kept for safety
        lo, hi = must if must is not None else (0, 0)
        return (words[lo][0], words[hi][1]), float(prefix[hi + 1] - prefix[lo])
    total = np.where(ok, total, -np.inf)
    i = int(np.argmax(total))
    return (int(starts[i]), int(ends[last[i]])), float(total[i])


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
    text: str,
    window: tuple[int, int],
    aliases: Sequence[str] | None = None,
    max_chars: int = MAX_SNIPPET,
    token_scores: TokenScores | None = None,
) -> Evidence:
    """Evidence for one chosen window.

    With ``aliases`` (stance) the snippet holds a mention of the actor inside the window: with
    ``token_scores`` the mention whose best snippet scores highest, else the first one.
    """
    focus_options: list[tuple[int, int] | None] = [None]
    if aliases:
        ws, we = window
        inside = [(s, e) for s, e in find_mentions(text, aliases) if s < we and e > ws]
        focus_options = (inside if token_scores is not None else inside[:1]) or [None]
    best = max((_snippet(text, window, f, max_chars, token_scores) for f in focus_options), key=lambda r: r[1])
    (s, e) = best[0]
    return Evidence(min(window[0], s), max(window[1], e), clean(text[s:e]))


def item_token_scores(
    feats: ArticleFeatures, window: int, shares: np.ndarray | None, cls: int, runner_up: int | None
) -> TokenScores | None:
    """The window's text tokens as (character starts, scores): each token's share of the logit of
    ``cls`` (minus its share of ``runner_up``'s logit for exclusive classes under mean aggregation).

    ``shares`` (L, k) are the item's token shares (special tokens and the actor name included;
    only the window's text tokens are kept).
    """
    if shares is None or feats.offsets is None:
        return None
    at, ts, te = feats.token_spans[window]
    col = shares[:, cls] - (shares[:, runner_up] if runner_up is not None else 0.0)
    return feats.offsets[ts:te, 0], col[at : at + te - ts]


def _runner_up(article: np.ndarray, cls: int, how: str, exclusive: bool) -> int | None:
    """The class whose margin the contribution is measured against (None: the plain logit)."""
    if how == "max" or not exclusive or len(article) < 2:
        return None
    others = np.asarray(article, dtype=float).copy()
    others[cls] = -np.inf
    return int(np.argmax(others))


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
    topic_tokens: Sequence[np.ndarray | None] | None = None,
    stance_tokens: dict[int, Sequence[np.ndarray | None]] | None = None,
    max_chars: int = MAX_SNIPPET,
) -> tuple[dict[int, Evidence], dict[int, Evidence]]:
    """Evidence per predicted topic and per mentioned actor of one article.

    ``topic_items`` (m, T) are the logits of the windows ``feats.topic`` (same order), ``topics``
    the predicted topic ids; ``stance_items[k]`` (n_k, C) the logits of ``feats.stance[k]``,
    ``stances`` maps a mentioned actor to its predicted class. ``topic_tokens`` /
    ``stance_tokens[k]``: per item, the (L, k) token shares of its logits (or None), used to
    place the snippet inside the window. Returns (topic id -> evidence, actor -> evidence).
    """
    spans = feats.char_spans
    t_out: dict[int, Evidence] = {}
    if topic_items is not None and len(feats.topic):
        for t in topics:
            i = best_item(topic_items, topic_logits, t, topic_how, topic_exclusive)
            w = feats.topic[i]
            shares = topic_tokens[i] if topic_tokens is not None else None
            r = _runner_up(topic_logits, t, topic_how, topic_exclusive)
            t_out[t] = make_evidence(text, spans[w], None, max_chars, item_token_scores(feats, w, shares, t, r))
    s_out: dict[int, Evidence] = {}
    for k, c in stances.items():
        if k not in stance_items or not len(stance_items[k]):
            continue
        i = best_item(stance_items[k], stance_logits[k], c, stance_how, True)
        w = feats.stance[k][i][0]
        shares = stance_tokens[k][i] if stance_tokens is not None else None
        scores = item_token_scores(feats, w, shares, c, _runner_up(stance_logits[k], c, stance_how, True))
        s_out[k] = make_evidence(text, spans[w], aliases[k], max_chars, scores)
    return t_out, s_out
