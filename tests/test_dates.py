"""Publication dates: parsing (dateparser), the fields and HTML metadata the readers take them from."""

from __future__ import annotations

import json

import pytest

from sikap.inference.dates import (
    UNDATED,
    Period,
    date_from_fields,
    parse_date,
    period_label,
    period_start,
    sort_periods,
)
from sikap.inference.readers import iter_articles


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3 Januari 2024", "2024-01-03"),
        ("Senin, 3 Januari 2024 14:05 WIB", "2024-01-03"),
        ("12 Agustus 2023", "2023-08-12"),
        ("5 Okt 2022", "2022-10-05"),
        ("Jumat, 21 Juni 2024", "2024-06-21"),
        ("Rabu (19/1/2022)", "2022-01-19"),
        ("03/01/2024", "2024-01-03"),  # day first, as Indonesian papers write it
        ("2024-01-03", "2024-01-03"),
        ("2024-01-03T23:30:00+07:00", "2024-01-03"),  # the outlet's own day, not converted to UTC
        ("March 5, 2023", "2023-03-05"),
        (1718971200, "2024-06-21"),  # a Unix timestamp (12:00 UTC, the same day in every zone)
    ],
)
def test_dates_are_parsed_to_iso(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "bukan tanggal",
        "Mei 2024",
        "2024",
        "kemarin",
        "2 jam lalu",
        "31 Februari 2024",
        True,
        [1],
        "x" * 500,
    ],
)
def test_non_dates_and_partial_or_relative_dates_give_none(value):
    assert parse_date(value) is None


def test_first_field_with_a_date_wins_and_a_bad_one_is_named():
    assert date_from_fields(
        {"published": "2024-02-05", "tanggal": "3 Januari 2024"}, ("date", "published", "tanggal")
    ) == (
        "2024-02-05",
        [],
    )
    date, warnings = date_from_fields({"date": "besok pagi", "tanggal": "3 Januari 2024"}, ("date", "tanggal"))
    assert date == "2024-01-03"
    assert len(warnings) == 1 and "'date'" in warnings[0] and "besok pagi" in warnings[0]
    assert date_from_fields({"text": "x"}, ("date",)) == (None, [])


@pytest.mark.parametrize(
    ("date", "by", "label"),
    [
        ("2024-01-03", Period.month, "2024-01"),
        ("2024-01-03", Period.week, "2024-W01"),
        ("2024-01-03", Period.day, "2024-01-03"),
        ("2024-12-30", Period.week, "2025-W01"),  # ISO week of the next ISO year
        ("2021-01-01", Period.week, "2020-W53"),
        (None, Period.week, UNDATED),
    ],
)
def test_period_labels(date, by, label):
    assert period_label(date, by) == label


def test_period_starts_and_order():
    assert str(period_start("2024-W05", Period.week)) == "2024-01-29"  # a Monday
    assert str(period_start("2024-02", Period.month)) == "2024-02-01"
    assert period_start(UNDATED, Period.day) is None
    assert sort_periods(["undated", "2024-10", "2024-02", "2023-12"]) == ["2023-12", "2024-02", "2024-10", "undated"]


def _by_id(root, **options):
    return {a.id: a for a in iter_articles(root, **options)}


def test_jsonl_records_get_the_date_from_date_published_or_tanggal(tmp_path):
    lines = [
        {"text": "satu", "date": "2024-01-03"},
        {"text": "dua", "published": "2024-02-05T08:00:00+07:00"},
        {"text": "tiga", "tanggal": "3 Januari 2024"},
        {"text": "empat", "waktu": "4 Januari 2024"},
        {"text": "lima", "tanggal": "entah kapan"},
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    arts = _by_id(tmp_path)
    assert [arts[f"a.jsonl:{i}"].date for i in range(1, 6)] == ["2024-01-03", "2024-02-05", "2024-01-03", None, None]
    assert any("entah kapan" in w for w in arts["a.jsonl:5"].warnings)  # a bad date is said, not dropped silently
    other = _by_id(tmp_path, date_fields=("waktu",))
    assert [other[f"a.jsonl:{i}"].date for i in range(1, 6)] == [None, None, None, "2024-01-04", None]


def test_kept_fields_are_copied_and_objects_are_not(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps({"text": "isi", "outlet": "kompas", "rank": 3, "tags": ["a"]}), encoding="utf-8"
    )
    art = _by_id(tmp_path, keep_fields=("outlet", "rank", "tags", "missing"))["a.json"]
    assert art.fields == {"outlet": "kompas", "rank": 3}


PAGE = """<html lang="id"><head><title>Judul berita</title>
{meta}
</head><body><article><h1>Judul berita</h1>
<p>Pemerintah mengumumkan kebijakan baru untuk harga pangan yang berlaku bagi seluruh pasar tradisional.</p>
<p>Para pedagang menyambut kebijakan itu dan meminta pengawasan yang ketat di lapangan setiap hari.</p>
</article></body></html>"""


def test_html_date_comes_from_its_metadata(tmp_path):
    meta = '<meta property="article:published_time" content="2022-03-08T14:20:00+07:00">'
    (tmp_path / "dated.html").write_text(PAGE.format(meta=meta), encoding="utf-8")
    (tmp_path / "undated.html").write_text(PAGE.format(meta=""), encoding="utf-8")
    (tmp_path / "note.txt").write_text("judul\nisi tanpa tanggal", encoding="utf-8")
    arts = _by_id(tmp_path)
    assert arts["dated.html"].date == "2022-03-08"
    assert arts["undated.html"].date is None and arts["note.txt"].date is None
