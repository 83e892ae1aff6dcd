"""Publication dates of articles (read from a record field or HTML metadata, normalized to ISO),
and the periods `sikap summarize` groups them by.

Dates are parsed by dateparser (Indonesian and English month and day names, ISO 8601, Unix
timestamps), with day-month-year order for ambiguous numeric dates (``03/01/2024`` is 3 January,
as Indonesian papers write it). A date must name its day, month and year: ``Mei 2024`` or
``2024`` is not a publication date, and relative phrases (``kemarin``, ``2 jam lalu``) are
refused, because they depend on when the page was scraped rather than when it was written.
The time of day is dropped as written: ``2024-01-03T23:30:00+07:00`` is 2024-01-03, the date
in the outlet's own zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from enum import Enum
from functools import lru_cache

UNDATED = "undated"  # the period of an article without a date

# JSON/JSONL fields read for the publication date, in this order, when no --date-field is named
DATE_FIELDS = ("date", "published", "tanggal")

# the longest value handed to the parser: a date, not an article body
_MAX_DATE_CHARS = 100

_SETTINGS = {
    "DATE_ORDER": "DMY",
    "REQUIRE_PARTS": ["day", "month", "year"],
    # no "relative-time": "kemarin" would be parsed against today's clock
    "PARSERS": ["timestamp", "custom-formats", "absolute-time"],
    "RETURN_AS_TIMEZONE_AWARE": False,
}


@lru_cache(maxsize=1)
def _parser():
    """One dateparser instance for Indonesian and English (its language data loads once)."""
    from dateparser.date import DateDataParser

    return DateDataParser(languages=["id", "en"], settings=_SETTINGS)


def parse_date(value: object) -> str | None:
    """``value`` (a string, or a number read as a Unix timestamp) as ``YYYY-MM-DD``, or None.

    None, empty strings, booleans and anything that is not a full calendar date give None.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        value = str(int(value))
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _MAX_DATE_CHARS:
        return None
    return _parse_text(value)


@lru_cache(maxsize=4096)  # a corpus repeats its dates: one parse per distinct string
def _parse_text(value: str) -> str | None:
    try:  # ISO 8601 (most feeds and JSON-LD): the standard library, 1000x faster than dateparser
        return dt.datetime.fromisoformat(value).date().isoformat()
    except ValueError:
        pass
    try:
        data = _parser().get_date_data(value)
    except (ValueError, OverflowError, OSError):  # dateparser on odd input (huge timestamps, ...)
        return None
    when = data.date_obj if data is not None else None
    return when.date().isoformat() if isinstance(when, dt.datetime) else None


def date_from_fields(obj: Mapping, fields: Iterable[str]) -> tuple[str | None, list[str]]:
    """The first field of ``fields`` present in ``obj`` with a value, parsed: ``(date, warnings)``.

    A field that is present but cannot be read as a date gives a warning naming it and its
    value, and the next field is tried; no field at all gives ``(None, [])``.
    """
    warnings = []
    for name in fields:
        value = obj.get(name)
        if value is None or value == "":
            continue
        date = parse_date(value)
        if date is not None:
            return date, warnings
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        warnings.append(f"field '{name}' value {shown} is not a full date (day, month and year); article left undated")
    return None, warnings


# ---------------------------------------------------------------- periods


class Period(str, Enum):
    month = "month"
    week = "week"
    day = "day"


def period_label(date: str | None, by: Period) -> str:
    """``YYYY-MM``, ISO week ``YYYY-Www`` or ``YYYY-MM-DD`` for an ISO date; ``undated`` for None.

    The ISO week belongs to the ISO year: 2024-12-30 is in 2025-W01.
    """
    if not date:
        return UNDATED
    day = dt.date.fromisoformat(date)
    if by == Period.month:
        return f"{day.year:04d}-{day.month:02d}"
    if by == Period.week:
        year, week, _ = day.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return day.isoformat()


def period_start(label: str, by: Period) -> dt.date | None:
    """The first day of a period label (a week starts on Monday); None for ``undated``."""
    if label == UNDATED:
        return None
    if by == Period.month:
        return dt.date.fromisoformat(label + "-01")
    if by == Period.week:
        year, week = label.split("-W")
        return dt.date.fromisocalendar(int(year), int(week), 1)
    return dt.date.fromisoformat(label)


def sort_periods(labels: Iterable[str]) -> list[str]:
    """Chronological (the labels sort as text), ``undated`` last."""
    labels = set(labels)
    return sorted(labels - {UNDATED}) + ([UNDATED] if UNDATED in labels else [])
