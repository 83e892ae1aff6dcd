"""Pure text logic: alias matching, sliding windows, evenly spread selection, char ranges."""

from __future__ import annotations

import math

import pytest

from sikap.text import (
    article_text,
    char_range,
    find_mentions,
    spread_select,
    window_spans,
    windows_with_mentions,
)

# ---------------------------------------------------------------- find_mentions


def matched(text: str, aliases: list[str]) -> list[str]:
    return [text[s:e] for s, e in find_mentions(text, aliases)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NATO menolak", ["NATO"]),
        ("kata nato, lalu", ["nato"]),
        ("aliansi (NATO) hari ini", ["NATO"]),
        ("Nato.", ["Nato"]),
        ("NATO-Rusia", ["NATO"]),  # a hyphen is not a word character
        ("NATOnya menolak", []),  # suffix glued on: a different word
        ("antiNATO", []),
        ("NATO_x", []),  # underscore is a word character
        ("NATO dan nato", ["NATO", "nato"]),
        ("", []),
    ],
)
def test_find_mentions_word_boundaries_and_case(text, expected):
    assert matched(text, ["NATO"]) == expected


def test_find_mentions_returns_character_spans():
    text = "Kemarin NATO dan Rusia"
    assert find_mentions(text, ["nato"]) == [(8, 12)]
    assert find_mentions(text, ["Rusia", "NATO"]) == [(8, 12), (17, 22)]


def test_multiword_alias_across_line_break_and_spaces():
    text = "Pemerintah Amerika\nSerikat dan amerika   serikat"
    assert matched(text, ["Amerika Serikat"]) == ["Amerika\nSerikat", "amerika   serikat"]


def test_longest_alias_wins_whatever_the_order():
    text = "Amerika Serikat dan Amerika"
    for aliases in (["Amerika", "Amerika Serikat"], ["Amerika Serikat", "Amerika"]):
        assert find_mentions(text, aliases) == [(0, 15), (20, 27)]


def test_alias_regex_characters_are_literal():
    assert matched("kata A.S. hari", ["A.S."]) == ["A.S."]
    assert matched("kata AXSX hari", ["A.S."]) == []
    assert matched("C++ bagus", ["C++"]) == ["C++"]


def test_no_aliases_means_the_whole_text():
    assert find_mentions("apa saja", []) == [(0, 8)]
    assert find_mentions("", []) == [(0, 0)]


# ---------------------------------------------------------------- window_spans


def covered(spans):
    return sorted({i for s, e in spans for i in range(s, e)})


@pytest.mark.parametrize(("n", "size", "stride"), [(10, 4, 1), (100, 30, 10), (61, 30, 10), (31, 30, 0),
                                                   (1000, 126, 64), (50, 7, 6), (12, 5, 2)])
def test_window_spans_cover_every_token(n, size, stride):
    spans = window_spans(n, size, stride)
    assert covered(spans) == list(range(n))
    assert all(e - s == size for s, e in spans), "every window of a long text is full"
    assert spans[0][0] == 0 and spans[-1][1] == n
    step = size - stride
    # count by hand: one window at 0, then one per `step` until the rest fits in the last window
    assert len(spans) == math.ceil((n - size) / step) + 1
    # consecutive windows overlap by exactly `stride`, except the last, shifted to end at n
    for (_, e0), (s1, _) in zip(spans[:-2], spans[1:-1], strict=True):
        assert e0 - s1 == stride
    if len(spans) >= 2:
        assert stride <= spans[-2][1] - spans[-1][0] < size


def test_window_spans_exact_layout():
    # size 4, stride 1 -> step 3. n=10: starts 0, 3, then the last window ends at 10 (start 6, which
    # happens to be on the grid). n=11: starts 0, 3, 6, then 7..11 shifted left (overlap 3 > stride)
    assert window_spans(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert window_spans(11, 4, 1) == [(0, 4), (3, 7), (6, 10), (7, 11)]


@pytest.mark.parametrize("n", [1, 5, 30])
def test_short_text_is_one_window(n):
    assert window_spans(n, 30, 10) == [(0, n)]


def test_empty_text_is_one_empty_window():
    assert window_spans(0, 30, 10) == [(0, 0)]


@pytest.mark.parametrize(("size", "stride"), [(0, 0), (-3, 0), (5, 5), (5, 9)])
def test_window_spans_invalid_arguments(size, stride):
    with pytest.raises(ValueError):
        window_spans(20, size, stride)


def test_window_spans_negative_stride_rejected():
    with pytest.raises(ValueError):
        window_spans(10, 3, -1)


# ---------------------------------------------------------------- spread_select


@pytest.mark.parametrize(("n", "k"), [(10, 3), (10, 4), (9, 5), (100, 8), (8, 7), (6, 2), (17, 6)])
def test_spread_select_keeps_ends_and_spreads_evenly(n, k):
    items = [10 * i for i in range(n)]
    got = spread_select(items, k)
    assert len(got) == k
    assert got[0] == items[0] and got[-1] == items[-1]
    assert got == sorted(got) and len(set(got)) == k and set(got) <= set(items)
    positions = [items.index(g) for g in got]
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
    ideal = (n - 1) / (k - 1)
    assert max(gaps) - min(gaps) <= 1
    assert all(math.floor(ideal) <= g <= math.ceil(ideal) for g in gaps)


def test_spread_select_examples():
    assert spread_select(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread_select(list(range(5)), 3) == [0, 2, 4]


@pytest.mark.parametrize("k", [5, 6, 100])
def test_spread_select_returns_all_when_k_covers_them(k):
    assert spread_select([3, 7, 8, 20, 21], k) == [3, 7, 8, 20, 21]


def test_spread_select_k_one_keeps_the_first():
    assert spread_select([4, 5, 6], 1) == [4]


def test_spread_select_accepts_a_range():
    assert spread_select(range(7), 3) == [0, 3, 6]


# ---------------------------------------------------------------- char ranges and mentions


def test_char_range():
    offsets = [(0, 3), (4, 8), (9, 12), (12, 13)]
    assert char_range(offsets, (0, 2)) == (0, 8)
    assert char_range(offsets, (1, 4)) == (4, 13)
    assert char_range(offsets, (2, 3)) == (9, 12)
    assert char_range(offsets, (0, 0)) == (0, 0)
    assert char_range([], (0, 0)) == (0, 0)


def test_windows_with_mentions_uses_half_open_overlap():
    ranges = [(0, 10), (8, 20), (18, 30)]
    assert windows_with_mentions(ranges, [(9, 12)]) == [0, 1]
    assert windows_with_mentions(ranges, [(10, 12)]) == [1]  # touches window 0's end only
    assert windows_with_mentions(ranges, [(25, 27), (0, 1)]) == [0, 2]
    assert windows_with_mentions(ranges, [(30, 35)]) == []
    assert windows_with_mentions(ranges, []) == []


def test_mentions_to_windows_end_to_end():
    text = "aaa NATO bbb ccc ddd eee Nato"
    # whitespace tokens with offsets, computed by hand
    offsets = [(0, 3), (4, 8), (9, 12), (13, 16), (17, 20), (21, 24), (25, 29)]
    spans = window_spans(len(offsets), 3, 1)  # (0,3) (2,5) (4,7)
    ranges = [char_range(offsets, sp) for sp in spans]
    assert ranges == [(0, 12), (9, 20), (17, 29)]
    assert windows_with_mentions(ranges, find_mentions(text, ["NATO"])) == [0, 2]


# ---------------------------------------------------------------- article_text


@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        ("Judul", "Isi berita.", "Judul\n\nIsi berita."),
        ("  Judul \n", "\n Isi ", "Judul\n\nIsi"),
        ("", "Isi", "Isi"),
        (None, "Isi", "Isi"),
        ("Judul", None, "Judul"),
        ("Judul", "   ", "Judul"),
        (None, None, ""),
    ],
)
def test_article_text(title, text, expected):
    assert article_text(title, text) == expected


def test_count_alias_mentions_attributes_each_mention_once():
    from sikap.text import count_alias_mentions

    text = "Kang Emil bertemu EMIL; kang\temil lagi. Emilia bukan."
    assert count_alias_mentions(text, ["Emil", "Kang Emil", " Emil "]) == {"Kang Emil": 2, "Emil": 1}
    aliases = ["Emil", "Kang Emil"]
    assert sum(count_alias_mentions(text, aliases).values()) == len(find_mentions(text, aliases))
    assert count_alias_mentions(text, []) == {}
