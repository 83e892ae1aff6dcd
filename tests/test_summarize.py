"""`sikap summarize`: counts and shares per period and group, shifts, figures, and dates kept by classify.

The expected numbers in these tests were counted by hand from PREDICTIONS below.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import synthetic_records, train_small_model, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.inference.dates import Period
from sikap.inference.summarize import biggest_shifts, count_table, group_value, read_predictions, summarize

runner = CliRunner()

TOPICS = {"ekonomi": 0.0, "pemilu": 0.0, "olahraga": 0.0}  # olahraga is never predicted: its counts are 0


def _pred(rid, date, outlet, topics, nato, rusia):
    def stance(label):
        probs = None if label == "not_mentioned" else {"favor": 0.2, "against": 0.2, "neutral": 0.2, label: 0.6}
        return {"label": label, "probs": probs}

    rec = {"id": rid, "source": f"{outlet or 'x'}/{rid}.json", "line": None, "title": rid, "error": None}
    rec |= {"date": date, "topics": topics, "topic_probs": TOPICS}
    rec |= {"stances": {"NATO": stance(nato), "Rusia": stance(rusia)}, "n_tokens": 10, "n_windows": 1}
    if outlet:
        rec["fields"] = {"outlet": outlet}
    return rec


PREDICTIONS = [
    _pred("k1", "2024-01-03", "kompas", ["ekonomi"], "favor", "not_mentioned"),
    _pred("k2", "2024-01-15", "kompas", ["pemilu"], "against", "against"),
    _pred("d1", "2024-01-31", "detik", ["ekonomi", "pemilu"], "favor", "neutral"),
    _pred("k3", "2024-02-01", "kompas", ["ekonomi"], "against", "not_mentioned"),
    _pred("d2", "2024-02-29", "detik", [], "not_mentioned", "favor"),
    {
        "id": "bad.json",
        "source": "bad.json",
        "line": None,
        "title": "",
        "error": "malformed JSON",
        "date": "2024-02-10",
    },
    _pred("u1", None, "kompas", ["pemilu"], "neutral", "against"),
]


@pytest.fixture
def predictions(tmp_path):
    path = tmp_path / "predictions.jsonl"
    lines = [json.dumps(r) for r in PREDICTIONS]
    lines.insert(7, "{torn record")  # line 8: not a record
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(table, period, task, label, actor="", group="all"):
    rows = table[
        (table["period"] == period)
        & (table["group"] == group)
        & (table["task"] == task)
        & (table["label"] == label)
        & (table["actor"] == actor)
    ]
    assert len(rows) == 1, (period, group, task, actor, label)
    return rows.iloc[0]


def test_counts_and_shares_by_month(predictions):
    preds = read_predictions(predictions)
    assert len(preds.records) == 7 and preds.errors == 1 and preds.bad_lines == [8]
    table = count_table(preds.records, Period.month)
    assert list(dict.fromkeys(table["period"])) == ["2024-01", "2024-02", "undated"]
    jan, feb = "2024-01", "2024-02"
    assert _row(table, jan, "articles", "classified")[["count", "total"]].tolist() == [3, 3]
    assert _row(table, feb, "articles", "error")[["count", "total"]].tolist() == [1, 3]  # the error record, dated
    assert _row(table, "undated", "articles", "classified")["count"] == 1
    # topics: k1 ekonomi, k2 pemilu, d1 both -> 2 of 3 each in January; k3 ekonomi, d2 none in February
    assert _row(table, jan, "topic", "ekonomi")[["count", "total", "share"]].tolist() == [2, 3, pytest.approx(2 / 3)]
    assert _row(table, jan, "topic", "pemilu")["count"] == 2
    assert _row(table, feb, "topic", "ekonomi")[["count", "total", "share"]].tolist() == [1, 2, 0.5]
    assert _row(table, feb, "topic", "olahraga")[["count", "share"]].tolist() == [0, 0.0]
    # NATO in January: favor k1 d1, against k2 -> 3 mentioning
    fav = _row(table, jan, "stance", "favor", "NATO")
    assert fav[["count", "total", "mentioned"]].tolist() == [2, 3, 3]
    assert fav["share_of_mentioned"] == pytest.approx(2 / 3)
    # Rusia in January: not mentioned in k1, against k2, neutral d1
    against = _row(table, jan, "stance", "against", "Rusia")
    assert against[["count", "total", "mentioned", "share", "share_of_mentioned"]].tolist() == [
        1, 3, 2, pytest.approx(1 / 3), 0.5,
    ]  # fmt: skip
    nm = _row(table, jan, "stance", "not_mentioned", "Rusia")
    assert nm["count"] == 1 and nm["share_of_mentioned"] != nm["share_of_mentioned"]  # NaN: not a share of mentions
    # February: NATO against k3, not mentioned d2
    assert _row(table, feb, "stance", "against", "NATO")[["count", "mentioned", "share_of_mentioned"]].tolist() == [
        1, 1, 1.0,
    ]  # fmt: skip
    # every label of every actor adds up to the classified articles of the period
    stance = table[table["task"] == "stance"].groupby(["period", "actor"])["count"].sum()
    assert stance[("2024-01", "NATO")] == 3 and stance[("2024-02", "Rusia")] == 2 and stance[("undated", "NATO")] == 1


def test_week_and_day_labels(predictions):
    records = read_predictions(predictions).records
    weeks = count_table(records, Period.week)
    # 2024-01-03 W01, 01-15 W03, 01-31 and 02-01 W05, 02-10 (error) W06, 02-29 W09
    assert list(dict.fromkeys(weeks["period"])) == [
        "2024-W01",
        "2024-W03",
        "2024-W05",
        "2024-W06",
        "2024-W09",
        "undated",
    ]
    assert _row(weeks, "2024-W05", "articles", "classified")["count"] == 2
    days = count_table(records, Period.day)
    assert "2024-02-29" in set(days["period"]) and _row(days, "2024-01-31", "topic", "pemilu")["count"] == 1


def test_group_by_a_kept_field_and_by_source(predictions):
    records = read_predictions(predictions).records
    table = count_table(records, Period.month, group="outlet")
    assert set(zip(table["period"], table["group"], strict=True)) == {
        ("2024-01", "kompas"), ("2024-01", "detik"), ("2024-02", "kompas"), ("2024-02", "detik"),
        ("2024-02", "(none)"), ("undated", "kompas"),
    }  # fmt: skip
    assert _row(table, "2024-01", "stance", "against", "NATO", group="kompas")["count"] == 1
    assert _row(table, "2024-01", "stance", "favor", "NATO", group="kompas")["share_of_mentioned"] == 0.5
    assert _row(table, "2024-02", "articles", "error", group="(none)")["count"] == 1
    assert group_value(records[0], "source") == "kompas/k1.json"
    assert group_value(records[0], "fields.outlet") == "kompas"
    assert group_value(records[0], "nope") == "(none)"


def test_biggest_shifts_between_periods(predictions):
    table = count_table(read_predictions(predictions).records, Period.month)
    shifts = biggest_shifts(table, min_articles=1, top=10)
    stance = {(s.actor, s.label): s.change for s in shifts["stance"].itertuples()}
    # NATO favor 2/3 -> 0/1, against 1/3 -> 1/1; Rusia favor 0/2 -> 1/1, against 1/2 -> 0/1
    assert stance == pytest.approx(
        {("NATO", "favor"): -2 / 3, ("NATO", "against"): 2 / 3, ("Rusia", "favor"): 1.0, ("Rusia", "against"): -0.5},
        abs=1e-6,
    )
    assert shifts["stance"].iloc[0][["actor", "label", "from", "to"]].tolist() == [
        "Rusia",
        "favor",
        "2024-01",
        "2024-02",
    ]
    # topics: pemilu 2/3 -> 0/2 is the largest
    assert shifts["topic"].iloc[0][["label", "change"]].tolist() == ["pemilu", pytest.approx(-2 / 3, abs=1e-6)]
    # with at least 2 mentioning articles, February (1 each) drops out: no stance shift; topic bases are 3 and 2
    strict = biggest_shifts(table, min_articles=2)
    assert strict["stance"].empty and len(strict["topic"]) == 3


def test_summarize_writes_table_figures_and_summary(predictions, tmp_path):
    out = tmp_path / "summary"
    result = summarize(predictions, out, by=Period.month, min_articles=1)
    assert (result.records, result.classified, result.errors, result.undated, result.bad_lines) == (7, 6, 1, 1, [8])
    import pandas as pd

    back = pd.read_csv(out / "summary.csv")
    assert list(back.columns[:6]) == ["period", "group", "task", "actor", "label", "count"]
    assert len(back) == 3 * (2 + 3 + 2 * 4)  # periods x (articles + topics + actors x labels)
    for name in ("topics.png", "stance-nato.png", "stance-rusia.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 5000
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "7 records: 6 classified, 1 error record" in md
    assert "Not classify records, skipped: 1 line (8)" in md
    assert "1 of 6 classified articles had no date" in md
    assert "| Rusia | favor | 2024-01 → 2024-02 | 0% → 100% | +100 pts | 2 → 1 |" in md
    assert "| pemilu | 2024-01 → 2024-02 | 67% → 0% | -67 pts | 3 → 2 |" in md


def test_cli_summarize_by_week_with_group(predictions, tmp_path):
    out = tmp_path / "weekly"
    res = runner.invoke(app, ["summarize", str(predictions), "-o", str(out), "--by", "week", "--group", "outlet"])
    assert res.exit_code == 0, res.output
    assert "7 records" in res.output and "1 without a date" in res.output and "summary.md" in res.output
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "By week, grouped by `outlet`" in md and "| 2024-W05 | 2 | 0 |" in md
    missing = runner.invoke(app, ["summarize", str(tmp_path / "nope.jsonl"), "-o", str(out)])
    assert missing.exit_code != 0


def test_undated_only_predictions_are_summarized_without_lines(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [_pred("a", None, None, ["ekonomi"], "favor", "against")])
    result = summarize(path, tmp_path / "out")
    assert result.undated == 1 and [f.name for f in result.figures] == ["topics.png"]
    assert "No shift to report" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")


def test_records_of_the_wrong_shape_are_skipped_and_a_csv_is_refused(tmp_path):
    lines = [
        json.dumps(_pred("a", "2024-01-02", None, ["ekonomi"], "favor", "against")),
        json.dumps({"id": "b", "error": None, "stances": {"NATO": "favor"}}),  # a stance is an object
        json.dumps({"id": "c", "error": None, "topics": "ekonomi"}),  # topics is a list
        json.dumps({"id": "d", "error": None, "date": "2024-13-01", "topics": ["ekonomi"]}),  # month 13
        "[1, 2]",
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    preds = read_predictions(path)
    assert [r["id"] for r in preds.records] == ["a", "d"] and preds.bad_lines == [2, 3, 5]
    assert preds.bad_dates == ["d"] and preds.records[1]["date"] is None
    md = (summarize(path, tmp_path / "out").markdown).read_text(encoding="utf-8")
    assert "skipped: 3 lines (2, 3, 5)" in md and "counted as undated: 1 record (d)" in md

    (tmp_path / "p.csv").write_text("id,source,line,title,error\na.txt,a.txt,,a,\n", encoding="utf-8")
    res = runner.invoke(app, ["summarize", str(tmp_path / "p.csv"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "JSONLoutput" in "".join(res.output.split()) and "Traceback" not in res.output

    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    assert summarize(tmp_path / "empty.jsonl", tmp_path / "e").records == 0


# ---------------------------------------------------------------- classify keeps the date


@pytest.fixture(scope="module")
def model(tiny_backbone, tmp_path_factory):
    return train_small_model(tiny_backbone, tmp_path_factory.mktemp("dates"))


def _classify(model, inputs, out, *extra):
    args = ["classify", model, inputs, "-o", out, "--no-progress", "--precision", "fp32", "--overwrite", *extra]
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return out


def test_classify_keeps_dates_from_jsonl_and_html(model, tmp_path):
    docs = synthetic_records(5, seed=9)
    lines = [
        {"text": docs[0]["text"], "tanggal": "3 Januari 2024", "outlet": "kompas"},
        {"text": docs[1]["text"], "published": "2024-02-05T08:00:00+07:00", "outlet": "detik"},
        {"text": docs[2]["text"], "waktu": "7 Maret 2024", "outlet": "kompas"},
        {"text": "", "date": "2024-01-09"},  # an error record (no text)
    ]
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", lines)
    meta = '<meta property="article:published_time" content="2022-03-08T14:20:00+07:00">'
    body = "".join(f"<p>{docs[3]['text']} kalimat nomor {i} di paragraf ini.</p>" for i in range(3))
    (folder / "b.html").write_text(
        f"<html><head><title>b</title>{meta}</head><body><article>{body}</article></body></html>"
    )
    (folder / "c.txt").write_text(f"judul\n{docs[4]['text']}", encoding="utf-8")

    out = _classify(model, folder, tmp_path / "p.jsonl", "--keep-field", "outlet")
    recs = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert {k: r["date"] for k, r in recs.items()} == {
        "a.jsonl:1": "2024-01-03", "a.jsonl:2": "2024-02-05", "a.jsonl:3": None, "a.jsonl:4": None,
        "b.html": "2022-03-08", "c.txt": None,
    }  # fmt: skip
    assert recs["a.jsonl:1"]["fields"] == {"outlet": "kompas"} and "fields" not in recs["b.html"]
    assert recs["a.jsonl:4"]["error"] is not None

    named = _classify(model, folder / "a.jsonl", tmp_path / "q.csv", "--date-field", "waktu")
    with named.open(encoding="utf-8", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert [rows[f"a.jsonl:{i}"]["date"] for i in (1, 2, 3)] == ["", "", "2024-03-07"]

    res = runner.invoke(app, ["summarize", str(tmp_path / "p.jsonl"), "-o", str(tmp_path / "s"), "--group", "outlet"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "s" / "summary.md").read_text(encoding="utf-8")
    assert "6 records: 5 classified, 1 error record" in md and "2 of 5 classified articles had no date" in md
    assert "| 2022-03 | 1 | 0 |" in md and "| undated | 2 | 1 |" in md
