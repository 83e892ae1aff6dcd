"""Turn a folder of articles into records, one per article, never losing one.

Every article found under the root yields exactly one :class:`ArticleInput`: either
readable text (``error is None``) or an error with a reason that names the problem.
Per-file problems (unreadable, binary, malformed, vanished, symlink loops) become
error records; the iterator only raises when the root itself is missing.

Formats, chosen by extension (case-insensitive):

- ``.txt``: the first non-empty line is the title, the rest is the text.
- ``.md``: a leading ``# Heading`` (or front-matter ``title:``, or the first line) is the
  title; the body is the text with light markup removed (links, emphasis, headings).
- ``.json``: an object is one article (id = path); a list of objects is one article per
  element (id = ``path[INDEX]``, 0-based). The whole file must fit in ``max_bytes``,
  otherwise it yields one error record (a cut JSON document cannot be parsed).
- ``.jsonl``: one article per non-blank line, id = ``path:LINE`` (1-based). Lines are the
  bytes between ``b"\\n"`` separators (a ``\\r`` before it is JSON whitespace); a line is
  blank when it holds only ASCII whitespace. ``max_bytes`` applies to each line, not to
  the file, because JSONL is streamed: a corpus of a million articles stays whole, and
  one overlong line becomes one error record.
- ``.html``/``.htm``: main text extracted with trafilatura (no network), title from
  its metadata (og:title, <title>, <h1>).

Everything else is skipped and counted in ``ScanStats.skipped`` by extension, as are
hidden entries (names starting with ``.``, counted as ``"(hidden)"``), so ``.git`` and
macOS ``._*`` resource forks are never read as articles.

Text is decoded by :func:`decode_bytes` (BOM, UTF-8, legacy encodings) and repaired by
:func:`repair_text` (mojibake via ftfy). JSON is repaired per field *after* parsing,
because ftfy turns curly quotes into ``"``, which would break JSON strings.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer
import trafilatura

from sikap.inference.dates import DATE_FIELDS, date_from_fields, parse_date
from sikap.repair import _cp1252_char, repair_text  # noqa: F401  (repair_text: public here too)

ARTICLE_SUFFIXES = (".txt", ".md", ".json", ".jsonl", ".html", ".htm")
HIDDEN = "(hidden)"
EXCLUDED = "(output)"  # the run's own output and lock file, when they lie under the input folder

# looks_binary inspects this many leading bytes, as git does with its 8000-byte probe.
_BINARY_PROBE = 8192
# Share of control bytes above which a sample is binary; text has almost none.
_CONTROL_RATIO = 0.10
# Control bytes that plain text does contain: \t \n \v \f \r and ESC (ANSI colours).
_TEXT_CONTROLS = {9, 10, 11, 12, 13, 27}
_CONTROL_BYTES = bytes(b for b in range(32) if b not in _TEXT_CONTROLS) + b"\x7f"

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass
class ArticleInput:
    """One article read from the folder, or the reason it could not be read."""

    id: str  # stable: relative posix path; "path:LINE" for JSONL, "path[INDEX]" for JSON lists
    source: str  # relative posix path of the file
    line: int | None  # 1-based line number for JSONL records, else None
    title: str
    text: str
    error: str | None = None  # why the article can't be read (then title and text are "")
    warnings: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # format, encoding, truncated, user_id, index
    date: str | None = None  # publication date, ISO YYYY-MM-DD, when the input has one
    fields: dict = field(default_factory=dict)  # JSON fields kept as asked (keep_fields), e.g. outlet


@dataclass
class ScanStats:
    """Counts gathered while iterating; ``articles + errors`` is the number of records."""

    files: int = 0  # article files the walk handed to a reader (broken links, loops: errors only)
    articles: int = 0  # records without an error
    errors: int = 0  # error records (files, lines, elements, directories, links)
    skipped: Counter = field(default_factory=Counter)  # extension ("" if none) -> count


@dataclass(frozen=True)
class _Fields:
    """Which JSON fields hold the title, the text, the user's id and the date, and which to keep."""

    text: str
    title: str
    id: str | None
    dates: tuple[str, ...] = DATE_FIELDS  # the first one with a value is the publication date
    keep: tuple[str, ...] = ()  # copied into ArticleInput.fields (scalars only)


# ---------------------------------------------------------------------------
# Decoding and repair (pure functions)
# ---------------------------------------------------------------------------


def looks_binary(data: bytes) -> bool:
    """True when ``data`` looks like a binary file rather than text.

    A UTF-16/32 byte-order mark means text. Otherwise a NUL byte, or more than 10% of
    control bytes, in the first 8 KiB means binary (UTF-16 without a BOM counts as
    binary; Windows always writes the BOM).
    """
    if any(data.startswith(bom) for bom, enc in _BOMS if enc != "utf-8"):
        return False
    probe = data[:_BINARY_PROBE]
    if b"\x00" in probe:
        return True
    controls = len(probe) - len(probe.translate(None, _CONTROL_BYTES))
    return bool(probe) and controls / len(probe) > _CONTROL_RATIO


def decode_bytes(data: bytes) -> tuple[str, list[str]]:
    """Decode file bytes to text, returning ``(text, warnings)``; never raises.

    Order: a byte-order mark decides (and is stripped); then strict UTF-8; then text that
    is mostly UTF-8 keeps UTF-8 and reads the stray bytes as cp1252; then charset-normalizer
    is trusted only when it finds a non-Latin script (Cyrillic, CJK, ...), since for
    Latin text it guesses among cp1250/mac_roman/... while Indonesian legacy files are
    cp1252; everything else is read as cp1252.
    """
    text, _, warnings = _decode(data)
    return text, warnings


def _decode(data: bytes) -> tuple[str, str, list[str]]:
    """Like :func:`decode_bytes`, also returning the encoding name used."""
    for bom, encoding in _BOMS:
        if data.startswith(bom) and encoding != "utf-8":
            return _decode_with_bom(data[len(bom):], encoding)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    escaped = data.decode("utf-8", "surrogateescape")
    n_bad = len(_ESCAPED_RE.findall(escaped))
    n_good = len(_VALID_NON_ASCII_RE.findall(escaped))
    if n_good >= n_bad:
        warning = f"decoded as UTF-8 with {n_bad} invalid byte(s) read as cp1252"
        return escaped.translate(_ESCAPED_TO_CP1252), "utf-8", [warning]
    detected = _detect_non_latin(data)
    if detected is not None:
        return detected[0], detected[1], [f"decoded as {detected[1]}"]
    return data.decode("latin-1").translate(_C1_TO_CP1252), "cp1252", ["decoded as cp1252"]


def _decode_with_bom(data: bytes, encoding: str) -> tuple[str, str, list[str]]:
    """Decode UTF-16/32 after its BOM, replacing broken code units (e.g. a truncated tail)."""
    text = data.decode(encoding, errors="replace")
    warnings = [f"decoded as {encoding} (byte-order mark)"]
    if "\ufffd" in text:
        warnings.append(f"{text.count(chr(0xFFFD))} invalid {encoding} sequence(s) replaced")
    return text, encoding, warnings


# surrogateescape turns each undecodable byte b into the lone surrogate U+DC00+b.
_ESCAPED_RE = re.compile("[\udc80-\udcff]")
_VALID_NON_ASCII_RE = re.compile("[^\x00-\x7f\udc80-\udcff]")
_ESCAPED_TO_CP1252 = {0xDC00 + b: _cp1252_char(b) for b in range(0x80, 0x100)}
_C1_TO_CP1252 = {b: _cp1252_char(b) for b in range(0x80, 0xA0)}

# Unicode blocks that carry no script: their presence says nothing about the encoding.
_NEUTRAL_BLOCKS = {
    "Basic Latin", "General Punctuation", "Currency Symbols", "Letterlike Symbols",
    "Spacing Modifier Letters", "Number Forms", "Box Drawing", "Block Elements",
    "Mathematical Operators", "Arrows", "Geometric Shapes", "Miscellaneous Symbols",
    "Control character",
}


_HIGH_RUN_RE = re.compile(rb"[\x80-\xff]+")


def _high_bytes_in_runs(data: bytes) -> bool:
    """True when most non-ASCII bytes sit next to another one, as in Cyrillic or CJK text.

    cp1252 Indonesian has isolated high bytes (a curly quote by a letter, an "é"), and on
    short samples the detector reads those as Cyrillic; so the detector is only asked
    when at least 8 high bytes are present and 80% of them come in runs.
    """
    runs = [len(run) for run in _HIGH_RUN_RE.findall(data[:65536])]
    total = sum(runs)
    return total >= 8 and sum(n for n in runs if n > 1) >= 0.8 * total


def _detect_non_latin(data: bytes) -> tuple[str, str] | None:
    """``(text, encoding)`` when charset-normalizer finds a non-Latin script, else None."""
    if not _high_bytes_in_runs(data):
        return None
    try:
        best = charset_normalizer.from_bytes(data).best()
        if best is None or b"sikap".decode(best.encoding, errors="replace") != "sikap":
            return None  # not ASCII-compatible (UTF-16 without BOM, EBCDIC): not a plausible guess
        scripts = [a for a in best.alphabets if "Latin" not in a and a not in _NEUTRAL_BLOCKS]
        return (str(best), best.encoding) if scripts else None
    except Exception:  # the detector is a heuristic; a failure must not lose the article
        return None


def _cut_at_char_boundary(data: bytes) -> bytes:
    """Drop an incomplete UTF-8 sequence left at the end of a truncated read."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: keep it only if its whole sequence fits
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if needed <= back else data[:-back]
    return data


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates become ``\\xNN`` / ``\\uNNNN`` escapes.

    A file name that is not valid UTF-8 (a byte ``\\xff`` from an old Windows disk) comes from
    the OS with the byte as surrogate U+DCFF; a JSON string may hold ``"\\ud800"``. Neither can
    be written as UTF-8, so names and ids show the byte instead (``berita-\\xff.txt``),
    the same way on every run so ``--resume`` recognises them.
    """
    if not _SURROGATE_RE.search(text):
        return text

    def escape(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"\\u{c:04x}"

    return _SURROGATE_RE.sub(escape, text)


def _error(rid: str, source: str, reason: str, *, line: int | None = None,
           warnings: list[str] | None = None, meta: dict | None = None) -> ArticleInput:
    """An error record: empty title and text, with the reason."""
    return ArticleInput(rid, source, line, "", "", error=reason,
                        warnings=list(warnings or []), meta=dict(meta or {}))


def _dedupe(items: Iterable[str]) -> list[str]:
    """Keep the first of each repeated warning, in order."""
    return list(dict.fromkeys(items))


def _split_title(text: str) -> tuple[str, str, list[str]]:
    """First non-empty line as title, the rest as text; a lone line becomes the text."""
    lines = text.strip().split("\n", 1)
    title = lines[0].strip()
    body = lines[1].strip() if len(lines) > 1 else ""
    if not body:
        return "", title, ["only one line: read as text without a title"]
    return title, body, []


# ---------------------------------------------------------------------------
# Per-format readers: one file -> its records
# ---------------------------------------------------------------------------


@dataclass
class _File:
    """A file to read: where it is, its id, and what the read found."""

    rel: str
    path: Path
    size: int
    fields: _Fields
    max_bytes: int
    data: bytes = b""
    truncated: bool = False

    def meta(self, fmt: str, **extra: object) -> dict:
        """Meta common to every record of this file."""
        meta = {"format": fmt, **extra}
        if self.truncated:
            meta["truncated"] = True
        return meta

    def truncation_warnings(self) -> list[str]:
        """The warning a truncated read carries, if any."""
        if not self.truncated:
            return []
        size = self.size if self.size > self.max_bytes else f"more than {self.max_bytes}"
        return [f"truncated from {size} to {len(self.data)} bytes (max_bytes={self.max_bytes})"]


def _read_prefix(file: _File) -> None:
    """Read at most ``max_bytes`` into ``file.data``; raises OSError."""
    with open(file.path, "rb") as handle:
        data = handle.read(file.max_bytes + 1)
    file.truncated = len(data) > file.max_bytes
    file.data = _cut_at_char_boundary(data[: file.max_bytes]) if file.truncated else data


def _decoded_text(file: _File) -> tuple[str, str, list[str]] | str:
    """Checks shared by whole-file formats: ``(text, encoding, warnings)`` or an error reason."""
    if not file.data:
        return "empty file"
    if looks_binary(file.data):
        return "binary file (NUL bytes or control characters); not an article"
    text, encoding, warnings = _decode(file.data)
    if not text:
        return "empty file"
    if not text.strip():
        return "whitespace-only file"
    return text, encoding, file.truncation_warnings() + warnings


def _read_plain(file: _File, fmt: str, parse: Callable[[str], tuple[str, str, list[str]]]
                ) -> Iterator[ArticleInput]:
    """Shared path of .txt and .md: decode, repair, split into title and text."""
    decoded = _decoded_text(file)
    if isinstance(decoded, str):
        yield _error(file.rel, file.rel, decoded, warnings=file.truncation_warnings(),
                     meta=file.meta(fmt))
        return
    text, encoding, warnings = decoded
    text, repair_warnings = repair_text(text)
    title, body, split_warnings = parse(text)
    if not body.strip():  # only control characters, a stray BOM or bare markup, which cleaning removes
        yield _error(file.rel, file.rel, "no text left after cleaning (only invisible characters or markup)",
                     warnings=warnings, meta=file.meta(fmt, encoding=encoding))
        return
    yield ArticleInput(file.rel, file.rel, None, title, body,
                       warnings=_dedupe(warnings + repair_warnings + split_warnings),
                       meta=file.meta(fmt, encoding=encoding))


def _read_txt(file: _File) -> Iterator[ArticleInput]:
    """A .txt file: first non-empty line is the title."""
    _read_prefix(file)
    return _read_plain(file, "txt", _split_title)


def _read_md(file: _File) -> Iterator[ArticleInput]:
    """A .md file: heading or front-matter title, body with light markup removed."""
    _read_prefix(file)
    return _read_plain(file, "md", _parse_markdown)


_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
_FRONT_TITLE_RE = re.compile(r"^title:\s*(.+?)\s*$", re.M)
_ATX_HEADING_RE = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
_SETEXT_RE = re.compile(r"\A[ \t]*(=+|-+)[ \t]*(?:\n|\Z)")
_MD_MARKUP = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # link -> its text
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M), r"\1"),  # heading marks
    (re.compile(r"^[ \t]*>[ \t]?", re.M), ""),  # blockquote marks
    (re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.M), ""),  # horizontal rules
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code
)


def _parse_markdown(text: str) -> tuple[str, str, list[str]]:
    """Title from front matter or the first line (a ``#`` heading or not), body de-marked."""
    title = ""
    front = _FRONT_MATTER_RE.match(text)
    if front:
        match = _FRONT_TITLE_RE.search(front.group(1))
        title = match.group(1).strip("'\"") if match else ""
        text = text[front.end():]
    if not title:
        title, text, warnings = _split_title(text)
        if not title:  # a lone line is the text; strip its markup too
            return "", _strip_markdown(text), warnings
        heading = _ATX_HEADING_RE.match(title)
        title = heading.group(1) if heading else title
        text = _SETEXT_RE.sub("", text, count=1)  # "Title\n=====" underline
    body = _strip_markdown(text).strip()
    title = _strip_markdown(title).strip()
    if not body:
        return "", title, ["only a title: read as text"]
    return title, body, []


def _strip_markdown(text: str) -> str:
    """Remove simple markdown markup, keeping the words."""
    for pattern, replacement in _MD_MARKUP:
        text = pattern.sub(replacement, text)
    return text


def _read_html(file: _File) -> Iterator[ArticleInput]:
    """An .html file: main text by trafilatura, title from its metadata."""
    _read_prefix(file)
    decoded = _decoded_text(file)
    meta = file.meta("html")
    if isinstance(decoded, str):
        yield _error(file.rel, file.rel, decoded, warnings=file.truncation_warnings(), meta=meta)
        return
    html, encoding, warnings = decoded
    meta["encoding"] = encoding
    try:
        doc = trafilatura.bare_extraction(html, include_comments=False, with_metadata=True)
    except Exception as exc:  # lxml/trafilatura on hostile markup; keep the record
        yield _error(file.rel, file.rel, f"HTML extraction failed: {type(exc).__name__}: {exc}",
                     warnings=warnings, meta=meta)
        return
    text, text_warnings = repair_text((getattr(doc, "text", None) or "").strip())
    if not text.strip():
        yield _error(file.rel, file.rel, "no main text found", warnings=warnings, meta=meta)
        return
    title, title_warnings = repair_text((getattr(doc, "title", None) or "").strip())
    first, _, rest = text.partition("\n")
    if title and first.strip() == title and rest.strip():
        text = rest.strip()  # trafilatura repeats the <h1> headline as the first line
    yield ArticleInput(file.rel, file.rel, None, title, text,
                       warnings=_dedupe(warnings + text_warnings + title_warnings), meta=meta,
                       date=parse_date(getattr(doc, "date", None)))  # htmldate: meta tags, JSON-LD, URL


def _read_json(file: _File) -> Iterator[ArticleInput]:
    """A .json file: an object is one article, a list of objects one per element."""
    meta = file.meta("json")
    if file.size > file.max_bytes:
        yield _too_big(file, file.size, meta)
        return
    _read_prefix(file)
    if file.truncated:  # st_size lied (e.g. a growing file): a cut document cannot parse
        yield _too_big(file, None, meta)
        return
    decoded = _decoded_text(file)
    if isinstance(decoded, str):
        yield _error(file.rel, file.rel, decoded, meta=meta)
        return
    text, meta["encoding"], warnings = decoded
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        yield _error(file.rel, file.rel, f"malformed JSON: {_json_reason(exc)}", warnings=warnings, meta=meta)
        return
    yield from _json_records(value, file, warnings, meta)


def _too_big(file: _File, size: int | None, meta: dict) -> ArticleInput:
    """Error record for a JSON file over ``max_bytes``, which cannot be parsed in part."""
    size_text = f"{size} bytes" if size is not None else f"more than {file.max_bytes} bytes"
    reason = (f"file larger than max_bytes ({size_text} > {file.max_bytes}); raise max_bytes "
              f"or store the articles as .jsonl, one per line")
    return _error(file.rel, file.rel, reason, meta={**meta, "truncated": True})


def _json_reason(exc: Exception) -> str:
    """A short reason for a JSON parse failure, with the position when known."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _json_records(value: object, file: _File, warnings: list[str], meta: dict) -> Iterator[ArticleInput]:
    """Records for a parsed .json document (an object, or a list of objects)."""
    if isinstance(value, dict):
        yield _record_from_object(value, file.rel, file.rel, None, file.fields, warnings, meta)
    elif isinstance(value, list):
        if not value:
            yield _error(file.rel, file.rel, "JSON list is empty: no articles", warnings=warnings, meta=meta)
        for index, element in enumerate(value):
            rid = f"{file.rel}[{index}]"
            yield _record_from_object(element, rid, file.rel, None, file.fields, warnings,
                                      {**meta, "index": index})
    else:
        reason = (f"JSON top level is {_json_type(value)}; expected an object with "
                  f"'{file.fields.text}' or a list of such objects")
        yield _error(file.rel, file.rel, reason, warnings=warnings, meta=meta)


def _json_type(value: object) -> str:
    """JSON's name for a parsed value's type, for error messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _record_from_object(obj: object, rid: str, source: str, line: int | None, fields: _Fields,
                        warnings: list[str], meta: dict) -> ArticleInput:
    """One record from a JSON object, or an error naming the missing or bad field."""
    meta = dict(meta)
    if not isinstance(obj, dict):
        return _error(rid, source, f"expected a JSON object, got {_json_type(obj)}", line=line,
                      warnings=warnings, meta=meta)
    user_id = obj.get(fields.id) if fields.id else None
    if isinstance(user_id, (str, int, float)) and not isinstance(user_id, bool):
        meta["user_id"] = printable(str(user_id))
    raw_text = obj.get(fields.text)
    if not isinstance(raw_text, str) or not raw_text.strip():
        return _error(rid, source, _text_field_problem(obj, fields.text), line=line,
                      warnings=warnings, meta=meta)
    text, text_warnings = repair_text(raw_text.strip())
    raw_title = obj.get(fields.title)
    title_warnings = []
    if raw_title is not None and not isinstance(raw_title, str):
        title_warnings = [f"field '{fields.title}' is {_json_type(raw_title)}, not a string; ignored"]
        raw_title = None
    title, title_repairs = repair_text((raw_title or "").strip())
    if not text.strip():  # repair removed everything (e.g. only control characters)
        return _error(rid, source, f"field '{fields.text}' is empty after cleaning", line=line,
                      warnings=warnings, meta=meta)
    date, date_warnings = date_from_fields(obj, fields.dates)
    all_warnings = _dedupe(warnings + text_warnings + title_repairs + title_warnings + date_warnings)
    return ArticleInput(rid, source, line, title, text, warnings=all_warnings, meta=meta, date=date,
                        fields=_kept_fields(obj, fields.keep))


def _kept_fields(obj: dict, names: tuple[str, ...]) -> dict:
    """The asked-for fields of ``obj`` that hold a string, number or boolean (others are left out)."""
    kept = {}
    for name in names:
        value = obj.get(name)
        if isinstance(value, str):
            kept[name] = printable(value)
        elif isinstance(value, (int, float, bool)):
            kept[name] = value
    return kept


def _text_field_problem(obj: dict, name: str) -> str:
    """Why an object's text field is unusable, naming the field and the fix."""
    if name not in obj:
        present = ", ".join(sorted(map(str, obj))[:10]) or "none"
        return f"missing text field '{name}' (fields present: {present}); set text_field to the right name"
    value = obj[name]
    if not isinstance(value, str):
        return f"text field '{name}' is {_json_type(value)}, expected a string"
    return f"text field '{name}' is empty"


def _read_jsonl(file: _File) -> Iterator[ArticleInput]:
    """A .jsonl file, streamed: one record per non-blank line, ``max_bytes`` per line."""
    meta = file.meta("jsonl")
    records = 0
    number = 0
    with open(file.path, "rb") as handle:  # failing to open is a file-level error (see _read_found)
        try:
            for number, line, too_long in _jsonl_lines(handle, file.max_bytes):
                records += 1
                rid = f"{file.rel}:{number}"
                if too_long:
                    reason = f"line longer than max_bytes ({file.max_bytes}); raise max_bytes to read it"
                    yield _error(rid, file.rel, reason, line=number, meta={**meta, "truncated": True})
                else:
                    yield _jsonl_record(line, rid, file, number, meta)
        except OSError as exc:  # a read failing mid-file: the lines before it were yielded
            records += 1
            reason = f"read failed after line {number}: {exc.strerror or exc}; the rest was not read"
            yield _error(f"{file.rel}:{number + 1}", file.rel, reason, line=number + 1, meta=meta)
    if not records:
        yield _error(file.rel, file.rel, "empty file (no non-blank lines)", meta=meta)


def _jsonl_lines(handle, max_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number, bytes, too_long)`` for each non-blank line; blank ones only count.

    A line is what lies between ``b"\\n"`` separators. A line over ``max_bytes`` is read
    through in 1 MiB chunks without keeping it, so memory stays bounded.
    """
    number = 0
    while True:
        limit = max_bytes + 1 + (len(codecs.BOM_UTF8) if number == 0 else 0)  # a BOM is not content
        line = handle.readline(limit)
        if not line:
            return
        number += 1
        ended = line.endswith(b"\n") or len(line) < limit  # the whole line was read
        content = line[:-1] if line.endswith(b"\n") else line
        if number == 1 and content.startswith(codecs.BOM_UTF8):
            content = content[len(codecs.BOM_UTF8):]
        if ended and len(content) <= max_bytes:
            if content.strip():
                yield number, content, False
            continue
        blank = not content.strip()
        while not ended:
            chunk = handle.readline(1 << 20)
            blank = blank and not chunk.strip()
            ended = not chunk or chunk.endswith(b"\n")
        if not blank:
            yield number, b"", True


def _jsonl_record(line: bytes, rid: str, file: _File, number: int, meta: dict) -> ArticleInput:
    """One record from one JSONL line, or an error naming the line's problem."""
    if looks_binary(line):
        return _error(rid, file.rel, f"binary data on line {number}, not JSON", line=number, meta=meta)
    text, encoding, warnings = _decode(line)
    meta = {**meta, "encoding": encoding}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _error(rid, file.rel, f"malformed JSON on line {number}: {_json_reason(exc)}",
                      line=number, warnings=warnings, meta=meta)
    return _record_from_object(value, rid, file.rel, number, file.fields, warnings, meta)


_READERS: dict[str, Callable[[_File], Iterator[ArticleInput]]] = {
    ".txt": _read_txt, ".md": _read_md, ".json": _read_json, ".jsonl": _read_jsonl,
    ".html": _read_html, ".htm": _read_html,
}


# ---------------------------------------------------------------------------
# Walking the folder
# ---------------------------------------------------------------------------


@dataclass
class _Found:
    """An article file found by the walk."""

    rel: str
    path: Path
    size: int


def _suffix(name: str) -> str:
    """Lower-cased extension, "" if none (``.bashrc``-style names have none)."""
    return Path(name).suffix.lower()


def _walk(root: Path, stats: ScanStats, exclude: frozenset = frozenset()) -> Iterator[_Found | ArticleInput]:
    """Article files under ``root`` in sorted order, or error records for links and folders.

    Depth-first with names sorted by code point, so the order is that of the sorted
    path components. Directory symlinks are followed; one pointing back to a directory
    on its own path (same device and inode, i.e. same real path) is a loop and becomes
    an error record. An explicit stack keeps deep trees clear of the recursion limit.
    Files whose (device, inode) is in ``exclude`` are skipped and counted as ``"(output)"``.
    """
    root_stat = os.stat(root)
    stack = [(_list_dir(root, "", stats), "", {(root_stat.st_dev, root_stat.st_ino): "."})]
    while stack:
        entries, prefix, ancestors = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if isinstance(entry, ArticleInput):
            yield entry
            continue
        rel, path = prefix + printable(entry), Path(root, prefix, entry)
        item = _classify(rel, path, stats, exclude)
        if isinstance(item, os.stat_result):  # a directory, maybe through a symlink
            key = (item.st_dev, item.st_ino)
            if key in ancestors:
                yield _error(rel, rel, f"symlink loop: '{rel}' points back to '{ancestors[key]}' "
                                       f"({printable(os.path.realpath(path))}); not followed")
            else:
                stack.append((_list_dir(path, rel + "/", stats), rel + "/", {**ancestors, key: rel}))
        elif item is not None:
            yield item


def _list_dir(path: Path, prefix: str, stats: ScanStats) -> Iterator[str | ArticleInput]:
    """Sorted names in a directory (hidden ones counted and dropped), or one error record."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        if not prefix:  # the root itself: not a per-file problem
            raise
        rel = prefix.rstrip("/")
        return iter([_error(rel, rel, f"cannot list directory: {exc.strerror or exc}")])
    visible = [name for name in names if not name.startswith(".")]
    if len(visible) < len(names):
        stats.skipped[HIDDEN] += len(names) - len(visible)
    return iter(visible)


def _classify(rel: str, path: Path, stats: ScanStats,
              exclude: frozenset = frozenset()) -> os.stat_result | _Found | ArticleInput | None:
    """A directory's stat, an article file, an error record, or None (skipped and counted)."""
    suffix = _suffix(path.name)
    wanted = suffix in _READERS
    try:
        st = os.stat(path)
    except OSError as exc:
        return _stat_failure(rel, path, exc, wanted, stats, suffix)
    if stat.S_ISDIR(st.st_mode):
        return st
    if (st.st_dev, st.st_ino) in exclude:
        stats.skipped[EXCLUDED] += 1
        return None
    if not wanted:
        stats.skipped[suffix] += 1
        return None
    if not stat.S_ISREG(st.st_mode):  # reading a FIFO would block forever
        return _error(rel, rel, "not a regular file (FIFO, socket or device); not read")
    return _Found(rel, path, st.st_size)


def _stat_failure(rel: str, path: Path, exc: OSError, wanted: bool, stats: ScanStats,
                  suffix: str) -> ArticleInput | None:
    """Error record for an entry that cannot be stat'ed (broken link, loop, vanished).

    A broken symlink without an extension is reported too: it may have been a folder.
    """
    link = path.is_symlink()
    if not (wanted or (link and not suffix)):
        stats.skipped[suffix] += 1
        return None
    if link:
        target = _readlink(path)
        if isinstance(exc, FileNotFoundError):
            return _error(rel, rel, f"broken symlink: target '{target}' does not exist")
        return _error(rel, rel, f"symlink cannot be followed ('{target}'): {exc.strerror or exc}")
    if isinstance(exc, FileNotFoundError):
        return _error(rel, rel, "file vanished before it could be read")
    return _error(rel, rel, f"cannot read file: {exc.strerror or exc}")


def _readlink(path: Path) -> str:
    """A symlink's target as written, or "?" if it vanished meanwhile."""
    try:
        return printable(os.readlink(path))
    except OSError:
        return "?"


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------


def iter_articles(root: Path, *, text_field: str = "text", title_field: str = "title",
                  id_field: str | None = "id", max_bytes: int = 5_000_000,
                  stats: ScanStats | None = None,
                  exclude: Iterable[tuple[int, int]] = (), date_fields: Iterable[str] = DATE_FIELDS,
                  keep_fields: Iterable[str] = ()) -> Iterator[ArticleInput]:
    """Yield one record per article under ``root`` (a folder, or a single file).

    Records come in sorted path order and are deterministic. ``text_field``,
    ``title_field`` and ``id_field`` name the JSON fields (the user's id goes to
    ``meta["user_id"]``; record ids are always path-based so they stay stable).
    ``max_bytes`` caps what is read per file (per line for JSONL). ``stats``, if given,
    is filled while iterating. ``exclude`` holds (st_dev, st_ino) pairs of files never to read
    (classify's own output). ``date_fields`` name the JSON fields read for the publication date
    (the first with a value; HTML dates come from trafilatura), ``keep_fields`` those copied into
    ``ArticleInput.fields`` (an outlet, a section). Raises FileNotFoundError at once if ``root`` is missing;
    every per-file problem becomes an error record instead of an exception.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    fields = _Fields(text=text_field, title=title_field, id=id_field, dates=tuple(date_fields),
                     keep=tuple(keep_fields))
    stats = stats if stats is not None else ScanStats()
    return _iter_records(root, fields, max_bytes, stats, frozenset(exclude))


def _iter_records(root: Path, fields: _Fields, max_bytes: int, stats: ScanStats,
                  exclude: frozenset) -> Iterator[ArticleInput]:
    """The generator behind :func:`iter_articles`, counting into ``stats``."""
    for record in _iter_all(root, fields, max_bytes, stats, exclude):
        if record.error is None:
            stats.articles += 1
        else:
            stats.errors += 1
        yield record


def _iter_all(root: Path, fields: _Fields, max_bytes: int, stats: ScanStats,
              exclude: frozenset) -> Iterator[ArticleInput]:
    """Records from the walk (or from the single file), before counting."""
    for item in iter_sources(root, stats=stats, exclude=exclude):
        if isinstance(item, ArticleInput):
            yield item
        else:
            yield from _read_found(item, fields, max_bytes)


def iter_sources(root: Path, *, stats: ScanStats | None = None,
                 exclude: Iterable[tuple[int, int]] = ()) -> Iterator[_Found | ArticleInput]:
    """The walk alone, in the order of :func:`iter_articles`: files to read, or error records.

    A distributed engine lists on the driver and reads each file with :func:`read_source`
    on a worker; chaining the two gives exactly the records of :func:`iter_articles`.
    """
    root, stats, exclude = Path(root), stats if stats is not None else ScanStats(), frozenset(exclude)
    found: Iterable[_Found | ArticleInput] = _walk(root, stats, exclude) if root.is_dir() else [_single_file(root)]
    for item in found:
        if isinstance(item, ArticleInput):
            yield item
        elif _is_classify_output(item.path):
            stats.skipped[EXCLUDED] += 1
        else:
            stats.files += 1
            yield item


def read_source(found: _Found, *, text_field: str = "text", title_field: str = "title",
                id_field: str | None = "id", max_bytes: int = 5_000_000,
                date_fields: Iterable[str] = DATE_FIELDS, keep_fields: Iterable[str] = ()) -> Iterator[ArticleInput]:
    """The records of one file from :func:`iter_sources` (every failure an error record); the options as
    in :func:`iter_articles`."""
    fields = _Fields(text=text_field, title=title_field, id=id_field, dates=tuple(date_fields),
                     keep=tuple(keep_fields))
    yield from _read_found(found, fields, max_bytes)


_OUTPUT_KEYS = ("id", "source", "line", "title", "error")


def _is_classify_output(path: Path) -> bool:
    """A JSONL file whose first line is a record ``sikap classify`` wrote (an earlier run's output).

    Reading it as articles would classify predictions; it is skipped and counted as "(output)".
    """
    if _suffix(path.name) != ".jsonl":
        return False
    try:
        with open(path, "rb") as handle:
            first = json.loads(handle.readline(1 << 16))
    except (OSError, ValueError, RecursionError):
        return False
    return (isinstance(first, dict) and all(k in first for k in _OUTPUT_KEYS)
            and ("n_windows" in first or first.get("error") is not None))


def _single_file(path: Path) -> _Found | ArticleInput:
    """A root that is one file; an unsupported extension is an error, since it was asked for."""
    name = printable(path.name)
    if _suffix(name) not in _READERS:
        supported = " ".join(ARTICLE_SUFFIXES)
        reason = f"unsupported file type '{_suffix(name) or name}'; expected one of {supported}"
        return _error(name, name, reason)
    try:
        return _Found(name, path, os.stat(path).st_size)
    except OSError as exc:
        return _error(name, name, f"cannot read file: {exc.strerror or exc}")


def _read_found(found: _Found, fields: _Fields, max_bytes: int) -> Iterator[ArticleInput]:
    """Run the reader for one file, turning any failure into an error record."""
    file = _File(found.rel, found.path, found.size, fields, max_bytes)
    reader = _READERS[_suffix(found.path.name)]
    try:
        yield from reader(file)
    except FileNotFoundError:
        yield _error(file.rel, file.rel, "file vanished before it could be read")
    except OSError as exc:
        yield _error(file.rel, file.rel, f"cannot read file: {exc.strerror or exc}")
    except Exception as exc:  # last resort: a bug here must cost one record, not the batch
        yield _error(file.rel, file.rel, f"internal error while reading: {type(exc).__name__}: {exc}")
