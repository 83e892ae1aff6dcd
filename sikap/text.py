"""Pure text logic shared by training and inference: alias matching and window layout.

Nothing here touches a model; every function takes and returns plain Python values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache


def _alias_parts(aliases: Sequence[str]) -> list[str]:
    """Distinct non-blank aliases, longest first (the order of the alternation)."""
    return sorted(dict.fromkeys(a.strip() for a in aliases if a.strip()), key=len, reverse=True)


@lru_cache(maxsize=1024)
def alias_pattern(aliases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any alias on word boundaries (None when no aliases).

    Longer aliases come first so "Amerika Serikat" wins over "Amerika"; inner whitespace
    matches any run of whitespace so line breaks inside a name still count. Group ``a<i>``
    is the i-th alias of :func:`_alias_parts`, so a match tells which alias it was.
    This is the only alias matcher: training, classify and the importers' coverage use it.
    """
    parts = _alias_parts(aliases)
    if not parts:
        return None
    alts = "|".join(f"(?P<a{i}>" + r"\s+".join(re.escape(w) for w in a.split()) + ")" for i, a in enumerate(parts))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def find_mentions(text: str, aliases: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of every alias occurrence in ``text``.

    An actor without aliases is present everywhere: the whole text is one mention.
    """
    pattern = alias_pattern(tuple(aliases))
    if pattern is None:
        return [(0, len(text))]
    return [m.span() for m in pattern.finditer(text)]


def count_alias_mentions(text: str, aliases: Sequence[str]) -> dict[str, int]:
    """Per alias (stripped), how many of the mentions :func:`find_mentions` finds it accounts for.

    A text with "Kang Emil" counts one mention of "Kang Emil" and none of "Emil", as the
    model sees one mention there.
    """
    parts = _alias_parts(aliases)
    counts = dict.fromkeys(parts, 0)
    pattern = alias_pattern(tuple(aliases))
    if pattern is not None:
        for m in pattern.finditer(text):
            counts[parts[int(m.lastgroup[1:])]] += 1
    return counts


def window_spans(n_tokens: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Token spans [start, end) of sliding windows of ``size`` tokens overlapping by ``stride``.

    Always at least one window, so an empty text still gets a (empty) window; the last
    window is shifted left to end exactly at the text end instead of being a short tail.
    """
    if size <= 0:
        raise ValueError(f"window size must be > 0, got {size}")
    if stride < 0:
        raise ValueError(f"stride must be >= 0, got {stride}")
    if stride >= size:
        raise ValueError(f"stride ({stride}) must be smaller than the window size ({size})")
    if n_tokens <= size:
        return [(0, n_tokens)]
    step = size - stride
    starts = list(range(0, n_tokens - size, step)) + [n_tokens - size]
    return [(s, s + size) for s in starts]


def spread_select(indices: Sequence[int], k: int) -> list[int]:
    """Keep at most ``k`` of ``indices``, evenly spread so the first and last survive."""
    n = len(indices)
    if n <= k:
        return list(indices)
    if k == 1:
        return [indices[0]]
    picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [indices[p] for p in picks]


def char_range(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> tuple[int, int]:
    """Character range covered by tokens ``span`` given per-token (start, end) offsets."""
    start, end = span
    if end <= start:
        return (0, 0)
    return (offsets[start][0], offsets[end - 1][1])


def windows_with_mentions(char_ranges: Sequence[tuple[int, int]], mentions: Sequence[tuple[int, int]]) -> list[int]:
    """Indices of windows whose character range overlaps at least one mention span."""
    hits = []
    for i, (ws, we) in enumerate(char_ranges):
        if any(ms < we and me > ws for ms, me in mentions):
            hits.append(i)
    return hits


def article_text(title: str | None, text: str | None) -> str:
    """The text the model reads: title and body separated by a blank line."""
    title = (title or "").strip()
    text = (text or "").strip()
    return f"{title}\n\n{text}" if title and text else title or text
