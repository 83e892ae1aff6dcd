"""Readers: every article in a folder yields exactly one record, whatever the folder holds."""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sikap.inference import readers
from sikap.inference.readers import (
    ArticleInput,
    ScanStats,
    decode_bytes,
    iter_articles,
    looks_binary,
    repair_text,
)

SEED = Path("/work/shared/examples/seed-article-nato.txt")
MAX_BYTES = 2000  # small, so the "huge" files of the fixture stay small

HTML = """<html><head><title>Rusia minta NATO jelaskan komitmen | Kabar</title></head><body>
<nav><a href="/">Beranda</a> <a href="/nasional">Nasional</a> NAVIGASI</nav>
<article><h1>Rusia minta NATO jelaskan komitmen</h1>
<p>Menteri Luar Negeri Rusia Sergei Lavrov mengatakan NATO telah bergerak lebih jauh ke timur
dan mendekati Ukraina, dalam wawancara dengan saluran Channel One pada hari Minggu.</p>
<p>"Mereka juga ingin menarik Ukraina ke sana," kata Lavrov seperti dikutip dari The Moscow
Times. Menurutnya keanggotaan Ukraina akan merusak hubungan Rusia dan NATO.</p></article>
<footer>Hak cipta 2022 KAKI-HALAMAN</footer></body></html>"""


def _write(root: Path, rel: str, data: bytes | str) -> Path:
    """Write a file under root, creating folders; str is written as UTF-8."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with one of each awkward case, plus a few good articles."""
    root = tmp_path / "articles"
    _write(root, "a_plain.txt", "Judul biasa\n\nIsi berita yang biasa.\n")
    _write(root, "empty.txt", b"")
    _write(root, "blank.txt", b"  \n\t\r\n   ")
    _write(root, "binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    cp1252 = "Judul lama\nMenteri berkata \u201ccaf\u00e9\u201d \u2013 na\u00efve."
    _write(root, "cp1252.txt", cp1252.encode("cp1252"))
    # UTF-8 of a cp1252 misreading of "don’t say “halo”", whose closing quote lost its last byte
    mojibake = "Judul rusak\ndon\u00e2\u20ac\u2122t say \u00e2\u20ac\u0153halo\u00e2\u20ac kata"
    _write(root, "mojibake.txt", mojibake)
    _write(root, "bom.txt", codecs.BOM_UTF8 + b"Judul BOM\nIsi dengan BOM.")
    _write(root, "huge.txt", "Judul besar\n" + "kata " * 2000)
    _write(root, "huge.json", json.dumps({"title": "besar", "text": "kata " * 1000}))
    _write(root, "bad.json", '{"title": "rusak", "text": ')
    _write(root, "notext.json", json.dumps({"title": "tanpa teks", "body": "isi di field lain"}))
    _write(root, "list.json", json.dumps([
        {"id": "u-1", "title": "Satu", "text": "isi satu"},
        "bukan objek",
        {"title": "Tiga", "text": "isi tiga"},
    ]))
    _write(root, "feed.jsonl", b"\n".join([
        json.dumps({"id": "k-1", "title": "Baris satu", "text": "isi satu"}).encode(),
        b"   ",
        b'{"title": "rusak", "text": "tanpa penutup"',
        json.dumps({"title": "Baris empat", "text": "isi empat"}).encode() + b"\r",
        json.dumps({"title": "Baris lima", "text": ""}).encode(),
        b"",
    ]))
    _write(root, "nested/deeper/story.md", "# Judul MD\n\nIsi **tebal** dan [tautan](http://x.id).\n")
    _write(root, "nested/note.txt", "Catatan\nIsi catatan.")
    _write(root, "page.html", HTML)
    _write(root, "image.png", b"\x89PNG\r\n")
    _write(root, "data.csv", "id,text\n1,halo\n")
    _write(root, ".hidden.txt", "Rahasia\nIsi.")
    _write(root, "loop/inner.txt", "Di dalam\nIsi di dalam folder loop.")
    os.symlink("..", root / "loop" / "again")
    os.symlink("nowhere.txt", root / "broken.txt")
    return root


EXPECTED_IDS = [
    "a_plain.txt", "bad.json", "binary.txt", "blank.txt", "bom.txt", "broken.txt", "cp1252.txt",
    "empty.txt", "feed.jsonl:1", "feed.jsonl:3", "feed.jsonl:4", "feed.jsonl:5", "huge.json", "huge.txt",
    "list.json[0]", "list.json[1]", "list.json[2]", "loop/again", "loop/inner.txt", "mojibake.txt",
    "nested/deeper/story.md", "nested/note.txt", "notext.json", "page.html",
]

EXPECTED_ERRORS = {
    "bad.json": "malformed JSON",
    "binary.txt": "binary file",
    "blank.txt": "whitespace-only file",
    "broken.txt": "broken symlink",
    "empty.txt": "empty file",
    "feed.jsonl:3": "malformed JSON on line 3",
    "feed.jsonl:5": "text field 'text' is empty",
    "huge.json": "file larger than max_bytes",
    "list.json[1]": "expected a JSON object, got a string",
    "loop/again": "symlink loop",
    "notext.json": "missing text field 'text'",
}


def _read(root: Path, **kwargs) -> tuple[list[ArticleInput], ScanStats]:
    """All records under root, with the stats."""
    stats = ScanStats()
    return list(iter_articles(root, max_bytes=MAX_BYTES, stats=stats, **kwargs)), stats


def test_folder_yields_exactly_the_expected_records(folder: Path) -> None:
    records, stats = _read(folder)
    assert [r.id for r in records] == EXPECTED_IDS
    errors = {r.id: r.error for r in records if r.error is not None}
    assert set(errors) == set(EXPECTED_ERRORS)
    for rid, reason in EXPECTED_ERRORS.items():
        assert reason in errors[rid], (rid, errors[rid])
    assert stats.articles + stats.errors == len(records)
    assert stats.errors == len(EXPECTED_ERRORS)
    assert stats.files == 17  # article files read; the broken link and the loop are errors only
    assert stats.skipped == Counter({".png": 1, ".csv": 1, readers.HIDDEN: 1})


def test_error_records_are_empty_and_good_records_have_text(folder: Path) -> None:
    for record in _read(folder)[0]:
        if record.error is None:
            assert record.text.strip(), record.id
        else:
            assert (record.title, record.text) == ("", ""), record.id


def test_order_is_deterministic(folder: Path) -> None:
    assert [r.id for r in _read(folder)[0]] == [r.id for r in _read(folder)[0]]


def _by_id(root: Path, **kwargs) -> dict[str, ArticleInput]:
    return {r.id: r for r in _read(root, **kwargs)[0]}


def test_text_formats_split_title_and_text(folder: Path) -> None:
    records = _by_id(folder)
    plain = records["a_plain.txt"]
    assert (plain.title, plain.text) == ("Judul biasa", "Isi berita yang biasa.")
    assert records["bom.txt"].title == "Judul BOM"
    md = records["nested/deeper/story.md"]
    assert (md.title, md.text) == ("Judul MD", "Isi tebal dan tautan.")


def test_encoding_mojibake_and_truncation_are_warned(folder: Path) -> None:
    records = _by_id(folder)
    cp = records["cp1252.txt"]
    assert "caf\u00e9" in cp.text and "na\u00efve" in cp.text
    assert cp.meta["encoding"] == "cp1252" and "decoded as cp1252" in cp.warnings
    moji = records["mojibake.txt"]
    assert moji.text == "don't say \"halo\" kata" and "repaired mojibake" in moji.warnings
    huge = records["huge.txt"]
    assert huge.meta["truncated"] is True and huge.error is None
    assert any(w.startswith("truncated from 10012 to 2000 bytes") for w in huge.warnings)


def test_json_and_jsonl_records(folder: Path) -> None:
    records = _by_id(folder)
    assert records["list.json[0]"].meta["user_id"] == "u-1"
    assert records["list.json[2]"].meta["index"] == 2
    first, fourth = records["feed.jsonl:1"], records["feed.jsonl:4"]
    assert (first.title, first.text, first.line) == ("Baris satu", "isi satu", 1)
    assert first.meta["user_id"] == "k-1"  # the user's id is kept, the record id stays path:LINE
    assert (fourth.title, fourth.text, fourth.source) == ("Baris empat", "isi empat", "feed.jsonl")


def test_configurable_field_names(folder: Path) -> None:
    record = _by_id(folder, text_field="body")["notext.json"]
    assert (record.error, record.title, record.text) == (None, "tanpa teks", "isi di field lain")


def test_html_main_text_without_navigation(folder: Path) -> None:
    page = _by_id(folder)["page.html"]
    assert page.error is None
    assert page.title.startswith("Rusia minta NATO jelaskan komitmen")
    assert "Lavrov" in page.text and "NAVIGASI" not in page.text and "KAKI-HALAMAN" not in page.text


def test_html_without_main_text_is_an_error(tmp_path: Path) -> None:
    html = "<html><head><title>x</title></head><body><script>1</script></body></html>"
    _write(tmp_path, "kosong.html", html)
    [record] = _read(tmp_path)[0]
    assert record.error == "no main text found"


def test_seed_article_mojibake_is_repaired() -> None:
    if not SEED.exists():
        pytest.skip("example article not available")
    [record] = list(iter_articles(SEED))
    assert record.id == "seed-article-nato.txt" and record.error is None
    assert "\u2020" not in record.text and "\u00e2\u20ac" not in record.text
    assert 'negara lainnya," kata Lavrov' in record.text
    assert "repaired mojibake" in record.warnings


def test_single_file_root_with_unsupported_type(tmp_path: Path) -> None:
    [record] = list(iter_articles(_write(tmp_path, "table.csv", "a,b\n")))
    assert record.id == "table.csv" and "unsupported file type '.csv'" in record.error


def test_missing_root_raises() -> None:
    with pytest.raises(FileNotFoundError):
        iter_articles(Path("/nonexistent/sikap-articles"))


def test_permission_denied_becomes_an_error_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "a.txt", "Judul\nIsi.")
    _write(tmp_path, "b.txt", "Judul\nIsi.")

    def denied(path, *args, **kwargs):
        if Path(path).name == "a.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(readers, "open", denied, raising=False)  # shadows the builtin in the module
    records = _read(tmp_path)[0]
    assert [(r.id, r.error) for r in records] == [
        ("a.txt", "cannot read file: Permission denied"),
        ("b.txt", None),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file_via_chmod(tmp_path: Path) -> None:
    path = _write(tmp_path, "locked.txt", "Judul\nIsi.")
    path.chmod(0)
    try:
        [record] = _read(tmp_path)[0]
    finally:
        path.chmod(0o644)
    assert "Permission denied" in record.error


def test_file_vanishing_between_listing_and_reading(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", "Judul\nIsi.")
    later = _write(tmp_path, "b.txt", "Judul\nIsi.")
    records = iter_articles(tmp_path)
    assert next(records).id == "a.txt"  # b.txt is listed by now, not yet read
    later.unlink()
    [record] = list(records)
    assert (record.id, record.error) == ("b.txt", "file vanished before it could be read")


def test_self_link_and_mutual_links_end(tmp_path: Path) -> None:
    os.symlink("self.txt", tmp_path / "self.txt")
    _write(tmp_path, "a/story.txt", "Judul\nIsi.")
    _write(tmp_path, "b/story.txt", "Judul\nIsi.")
    os.symlink("../b", tmp_path / "a" / "to_b")
    os.symlink("../a", tmp_path / "b" / "to_a")
    records = _read(tmp_path)[0]
    assert [(r.id, (r.error or "").split(":")[0]) for r in records] == [
        ("a/story.txt", ""),
        ("a/to_b/story.txt", ""),  # a link to a sibling is followed ...
        ("a/to_b/to_a", "symlink loop"),  # ... until it leads back to an ancestor
        ("b/story.txt", ""),
        ("b/to_a/story.txt", ""),
        ("b/to_a/to_b", "symlink loop"),
        ("self.txt", "symlink cannot be followed ('self.txt')"),
    ]


def test_unlistable_folder_becomes_one_error_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "a.txt", "Judul\nIsi.")
    _write(tmp_path, "sub/b.txt", "Judul\nIsi.")
    real_listdir = os.listdir

    def listdir(path):
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    records = _read(tmp_path)[0]
    assert [(r.id, r.error) for r in records] == [
        ("a.txt", None),
        ("sub", "cannot list directory: Permission denied"),
    ]


def test_fifo_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")  # reading it would block forever
    [record] = _read(tmp_path)[0]
    assert "not a regular file" in record.error


def test_jsonl_overlong_line_costs_only_that_line(tmp_path: Path) -> None:
    lines = [{"text": "pendek"}, {"text": "panjang " * 500}, {"text": "lagi"}]
    _write(tmp_path, "big.jsonl", "\n".join(map(json.dumps, lines)))
    records = _read(tmp_path)[0]
    assert [(r.id, r.error is None) for r in records] == [("big.jsonl:1", True), ("big.jsonl:2", False),
                                                            ("big.jsonl:3", True)]
    assert "line longer than max_bytes" in records[1].error


@pytest.mark.parametrize("data", [b"", b" \n\r\n"])
def test_jsonl_without_lines_yields_one_error(tmp_path: Path, data: bytes) -> None:
    _write(tmp_path, "none.jsonl", data)
    [record] = _read(tmp_path)[0]
    assert (record.id, record.error) == ("none.jsonl", "empty file (no non-blank lines)")


# --- pure functions -------------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [
    (b"", False),
    (b"Berita biasa.\n", False),
    ("Kata \u201cdia\u201d".encode(), False),
    (b"\x1b[1mtebal\x1b[0m\ttab\r\n", False),
    (b"a\x00b", True),
    (bytes(range(32)) * 4, True),
    ("Judul".encode("utf-16"), False),  # NUL bytes, but a BOM says UTF-16 text
])
def test_looks_binary(data: bytes, expected: bool) -> None:
    assert looks_binary(data) is expected


QUOTED = "halo \u201cdunia\u201d dan \u201ckata\u201d lagi \u201cya\u201d \u2013 \u201ctidak\u201d"
RUSSIAN = "\u041c\u043e\u0441\u043a\u0432\u0430 \u0438 \u041d\u0410\u0422\u041e"  # "Moskwa dan NATO"


@pytest.mark.parametrize(("data", "text", "warning"), [
    (b"halo", "halo", None),
    (codecs.BOM_UTF8 + b"halo", "halo", None),
    ("halo \u201cdunia\u201d".encode("cp1252"), "halo \u201cdunia\u201d", "decoded as cp1252"),
    ("caf\u00e9".encode("latin-1"), "caf\u00e9", "decoded as cp1252"),
    ("Judul \u00e9".encode("utf-16"), "Judul \u00e9", "decoded as utf-16-le (byte-order mark)"),
    ("\u201cok\u201d".encode() + b" \x93x\x94", "\u201cok\u201d \u201cx\u201d",
     "decoded as UTF-8 with 2 invalid byte(s) read as cp1252"),
    (RUSSIAN.encode("cp1251"), RUSSIAN, "decoded as cp1251"),
    (QUOTED.encode("cp1252"), QUOTED, "decoded as cp1252"),  # the detector alone says Cyrillic
])
def test_decode_bytes(data: bytes, text: str, warning: str | None) -> None:
    decoded, warnings = decode_bytes(data)
    assert decoded == text
    assert warnings == ([warning] if warning else [])


@pytest.mark.parametrize(("text", "expected", "mojibake"), [
    ("teks biasa", "teks biasa", False),
    ("kata \u201cdia\u201d", 'kata "dia"', False),  # ftfy straightens quotes; not mojibake
    ("don\u00e2\u20ac\u2122t", "don't", True),
    ("\u00e2\u20ac\u0153halo\u00e2\u20ac kata", '"halo" kata', True),  # closing quote lost its 0x9D
    ("lainnya,\u2020kata", 'lainnya," kata', True),  # ... and ftfy read the space as NBSP
    ("caf\u00c3\u00a9", "caf\u00e9", True),
])
def test_repair_text(text: str, expected: str, mojibake: bool) -> None:
    assert repair_text(text) == (expected, ["repaired mojibake"] if mojibake else [])


@pytest.mark.parametrize("data", ["h\u00e9".encode(), "\u201c".encode(), "\U0001f600".encode()])
def test_truncation_never_splits_a_character(data: bytes) -> None:
    for cut in range(len(data) + 1):
        cut_data = b"ab" + data[:cut]
        kept = readers._cut_at_char_boundary(cut_data)
        assert ("ab" + data.decode()).startswith(kept.decode("utf-8"))
        assert len(cut_data) - len(kept) < 4


# --- properties ------------------------------------------------------------------------

_PIECES = [b"\n", b"\r", b"\r\n", b" ", b"{}", b"[]", b'{"text": "isi"}', b'{"title": 1, "text": "a"}',
           codecs.BOM_UTF8, b"\xff", b"\x00", b"\xe2\x80", b"\x93", b"<p>", b"</p>", b"\\u0000", b'"']
RANDOM_BYTES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(_PIECES), max_size=40).map(b"".join),
)
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _nonblank_lines(data: bytes) -> list[int]:
    """1-based numbers of the non-blank lines, as the JSONL reader defines them."""
    lines = data.split(b"\n")
    if lines[0].startswith(codecs.BOM_UTF8):
        lines[0] = lines[0][len(codecs.BOM_UTF8):]
    return [number for number, line in enumerate(lines, 1) if line.strip()]


def _records_for(name: str, data: bytes, max_bytes: int = 5_000_000) -> list[ArticleInput]:
    """Records for one file holding ``data``, read through a folder walk."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, name).write_bytes(data)
        records = list(iter_articles(Path(tmp), max_bytes=max_bytes))
    for record in records:
        assert record.error is not None or record.text.strip()
    return records


@FAST
@given(data=RANDOM_BYTES, suffix=st.sampled_from([".txt", ".md", ".html"]))
def test_random_bytes_in_text_files_yield_one_record(data: bytes, suffix: str) -> None:
    assert [r.id for r in _records_for("x" + suffix, data)] == ["x" + suffix]


@FAST
@given(data=RANDOM_BYTES)
def test_random_bytes_in_json_yield_at_least_one_record(data: bytes) -> None:
    assert len(_records_for("x.json", data)) >= 1


@FAST
@given(data=RANDOM_BYTES, max_bytes=st.sampled_from([1, 5, 40, 5_000_000]))
def test_random_bytes_in_jsonl_yield_one_record_per_nonblank_line(data: bytes, max_bytes: int) -> None:
    records = _records_for("x.jsonl", data, max_bytes)
    expected = _nonblank_lines(data)
    if expected:
        assert [r.line for r in records] == expected
        assert [r.id for r in records] == [f"x.jsonl:{n}" for n in expected]
    else:
        assert [r.id for r in records] == ["x.jsonl"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["text", "title", "id", "x"]) | st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)


@FAST
@given(value=JSON_VALUES)
def test_random_json_values_never_raise(value: object) -> None:
    records = _records_for("x.json", json.dumps(value).encode())
    expected = len(value) if isinstance(value, list) and value else 1
    assert len(records) == expected
    if isinstance(value, dict) and isinstance(value.get("text"), str) and value["text"].strip():
        assert records[0].error is None or "empty after cleaning" in records[0].error
