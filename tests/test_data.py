"""Training records: reading JSONL/CSV/Parquet, validation messages, split and fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_records, write_jsonl

from sikap.config import config_from_dict
from sikap.training.data import (
    DataError,
    Record,
    check_data_files,
    fingerprint,
    load_records,
    parse_records,
    read_rows,
    split_train_dev,
)

TOPICS = ["ekonomi", "olahraga", "pemilu"]


def make_cfg(*, multi_label: bool = True, stance: bool = True, **sections):
    labels = {"topics": {"multi_label": multi_label, "names": TOPICS}}
    if stance:
        labels["stance"] = {"actors": [{"name": "NATO", "aliases": ["NATO", "aliansi"]}, {"name": "Rusia"}]}
    raw = {"labels": labels, "data": {"train": "train.jsonl"}}
    raw.update(sections)
    return config_from_dict(raw)


def problem_lines(excinfo: pytest.ExceptionInfo) -> list[str]:
    return str(excinfo.value).splitlines()[1:]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rec(**kw) -> str:
    base = {"id": "x", "title": "judul", "text": "teks berita"}
    base.update(kw)
    return json.dumps(base)


# ---------------------------------------------------------------- reading


def test_jsonl_round_trip(tmp_path):
    rows = synthetic_records(6, seed=3)
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    records = load_records(path, make_cfg())
    assert [r.id for r in records] == [r["id"] for r in rows]
    for r, raw in zip(records, rows, strict=True):
        assert r.text == raw["text"] and r.title == raw["title"]
        assert r.topics == raw["topics"]
        assert r.stances == raw["stances"]
    assert records[2].where == f"{path} line 3"


def test_jsonl_blank_lines_and_bom_are_fine(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\ufeff" + rec(id="a") + "\n\n   \n" + rec(id="b") + "\n", encoding="utf-8")
    records = load_records(path, make_cfg())
    assert [r.id for r in records] == ["a", "b"]
    assert records[1].where == f"{path} line 4"  # physical line, blank lines counted


def test_csv_lists_and_json_objects(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({
        "id": ["a", "b", "c", "d"],
        "title": ["t1", "t2", "t3", ""],
        "text": ["satu", "dua", "tiga", "empat"],
        "topics": ["ekonomi|pemilu", '["olahraga"]', "ekonomi; olahraga", ""],
        "stances": ['{"NATO": "favor"}', "", '{"Rusia": "against"}', "{}"],
    }).to_csv(path, index=False)
    records = load_records(path, make_cfg())
    assert [r.topics for r in records] == [["ekonomi", "pemilu"], ["olahraga"], ["ekonomi", "olahraga"], None]
    assert [r.stances for r in records] == [{"NATO": "favor"}, {}, {"Rusia": "against"}, {}]
    assert records[3].title == ""
    # rows are numbered like the file's lines: the header is line 1, the first record line 2
    assert [r.where for r in records] == [f"{path} row {i}" for i in (2, 3, 4, 5)]


def test_tsv(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("id\ttext\ttopics\na\tsatu, dua\tekonomi\n", encoding="utf-8")
    (r,) = load_records(path, make_cfg())
    assert (r.id, r.text, r.topics) == ("a", "satu, dua", ["ekonomi"])


def test_parquet_lists_and_structs(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({
        "id": ["a", "b"],
        "title": ["t", "t"],
        "text": ["satu", "dua"],
        "topics": [["ekonomi", "pemilu"], None],
        "stances": [{"NATO": "favor"}, {"Rusia": "not_mentioned"}],
    }).to_parquet(path)
    records = load_records(path, make_cfg())
    assert records[0].topics == ["ekonomi", "pemilu"]
    assert records[0].stances == {"NATO": "favor"}  # Arrow's null for the absent Rusia key is "unlabeled"
    assert records[1].topics is None
    assert records[1].stances == {"Rusia": "not_mentioned"}
    assert records[1].where == f"{path} row 2"


def test_csv_cells_are_read_as_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,text,topics\n007,satu,1\n7,dua,2\n", encoding="utf-8")
    cfg = config_from_dict({"labels": {"topics": {"names": ["1", "2"]}}, "data": {"train": "t.csv"}})
    records = load_records(path, cfg)
    assert [r.id for r in records] == ["007", "7"]
    assert [r.topics for r in records] == [["1"], ["2"]]


def test_missing_labels_mean_unlabeled(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [rec(id="a"), rec(id="b", topics=None, stances=None)])
    records = load_records(path, make_cfg())
    assert all(r.topics is None and r.stances == {} for r in records)


def test_not_mentioned_is_accepted_and_null_stance_is_unlabeled(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [rec(stances={"NATO": "not_mentioned", "Rusia": None})])
    (r,) = load_records(path, make_cfg())
    assert r.stances == {"NATO": "not_mentioned"}


def test_labels_of_an_unconfigured_task_are_ignored(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [rec(topics=["whatever"], stances={"NATO": "favor"})])
    cfg = config_from_dict({"labels": {"stance": {"actors": [{"name": "NATO"}]}}, "data": {"train": "x"}})
    (r,) = load_records(path, cfg)
    assert r.topics is None and r.stances == {"NATO": "favor"}


def test_custom_field_names(tmp_path):
    row = {"doc": 5, "judul": "J", "isi": "teks", "label": ["pemilu"]}
    path = write_lines(tmp_path / "t.jsonl", [json.dumps(row)])
    cfg = make_cfg(data={"train": "x", "id_field": "doc", "title_field": "judul", "text_field": "isi",
                         "topics_field": "label"})
    (r,) = load_records(path, cfg)
    assert (r.id, r.title, r.text, r.topics) == ("5", "J", "teks", ["pemilu"])


def test_missing_id_falls_back_to_location(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [json.dumps({"text": "a"}), json.dumps({"text": "b"})])
    records = load_records(path, make_cfg())
    assert len({r.id for r in records}) == 2
    assert all("line" in r.id for r in records)


# ---------------------------------------------------------------- errors


def single_problem(tmp_path, line: str, cfg=None) -> str:
    path = write_lines(tmp_path / "t.jsonl", [rec(id="ok"), line])
    with pytest.raises(DataError) as excinfo:
        load_records(path, cfg or make_cfg())
    lines = problem_lines(excinfo)
    assert str(excinfo.value).splitlines()[0] == "1 problem in the training data:"
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path} line 2: "), lines[0]
    return lines[0]


def test_invalid_json_line(tmp_path):
    msg = single_problem(tmp_path, '{"id": "b", "text": ')
    assert "invalid JSON" in msg and "fix or remove the line" in msg


def test_empty_text(tmp_path):
    msg = single_problem(tmp_path, rec(id="b", text="   "))
    assert "field 'text' is empty or missing" in msg


def test_unknown_topic(tmp_path):
    msg = single_problem(tmp_path, rec(id="b", topics=["ekonomi", "politik"]))
    assert "field 'topics'" in msg
    assert "topic 'politik' is not one of ekonomi, olahraga, pemilu" in msg
    assert "labels.topics.names" in msg  # the fix


def test_unknown_stance_label(tmp_path):
    msg = single_problem(tmp_path, rec(id="b", stances={"NATO": "agianst"}))
    assert "field 'stances': stance 'agianst' for actor 'NATO' is not one of favor, against, neutral" in msg


def test_actor_not_in_config(tmp_path):
    msg = single_problem(tmp_path, rec(id="b", stances={"Nato": "favor"}))
    assert "actor 'Nato' is not in the config" in msg
    assert "NATO, Rusia" in msg


def test_duplicate_id(tmp_path):
    msg = single_problem(tmp_path, rec(id="ok"))
    assert "field 'id': duplicate id 'ok'" in msg
    assert "line 1" in msg  # where it was first seen


def test_single_label_with_two_topics(tmp_path):
    msg = single_problem(tmp_path, rec(id="b", topics=["ekonomi", "pemilu"]), make_cfg(multi_label=False))
    assert "single-label topics need exactly one topic, got 2" in msg
    assert "multi_label: true" in msg


def test_topics_of_wrong_type(tmp_path):
    msg = single_problem(tmp_path, rec(id="b", topics={"a": 1}))
    assert "field 'topics' must be a list of topic names" in msg


def test_not_an_object(tmp_path):
    msg = single_problem(tmp_path, "[1, 2]")
    assert "expected a JSON object, got list" in msg


def test_several_problems_reported_together(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [
        rec(id="a"),
        rec(id="b", text=""),
        rec(id="c", topics=["politik"], stances={"NATO": "agianst"}),
        "",
        rec(id="a"),
    ])
    with pytest.raises(DataError) as excinfo:
        load_records(path, make_cfg())
    lines = problem_lines(excinfo)
    assert str(excinfo.value).splitlines()[0] == "4 problems in the training data:"
    assert [line.split(": ")[0] for line in lines] == [
        f"{path} line 2", f"{path} line 3", f"{path} line 3", f"{path} line 5"
    ]


def test_invalid_json_lines_reported_together(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", ["{bad", rec(id="a"), "also bad"])
    with pytest.raises(DataError) as excinfo:
        read_rows(path)
    assert [line.split(": ")[0] for line in problem_lines(excinfo)] == [f"{path} line 1", f"{path} line 3"]


def test_csv_errors_name_the_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,text,topics,stances\na,satu,ekonomi,\nb,dua,ekonomi,"{""NATO"": ""agianst""}"\n',
                    encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        load_records(path, make_cfg())
    (line,) = problem_lines(excinfo)
    assert line.startswith(f"{path} row 3: field 'stances': stance 'agianst'")


def test_many_problems_are_capped(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [rec(id=str(i), text="") for i in range(40)])
    with pytest.raises(DataError) as excinfo:
        load_records(path, make_cfg())
    text = str(excinfo.value)
    assert text.splitlines()[0] == "40 problems in the training data:"
    assert text.splitlines()[-1] == "... and 10 more"


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_rows(tmp_path / "nope.jsonl")
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported format '.xlsx'"):
        read_rows(odd)


def test_parse_records_directly():
    cfg = make_cfg()
    rows = [("mem 1", {"id": 1, "text": "a", "topics": "pemilu"}), ("mem 2", {"id": 2, "text": "b"})]
    records = parse_records(rows, cfg.data, cfg.labels)
    assert records == [
        Record("1", "", "a", ["pemilu"], {}, "mem 1"),
        Record("2", "", "b", None, {}, "mem 2"),
    ]


# ---------------------------------------------------------------- split and fingerprint


def topic_records(counts: dict[str, int]) -> list[Record]:
    out = []
    for topic, n in counts.items():
        out += [Record(f"{topic}{i}", "", f"teks {i}", [topic]) for i in range(n)]
    return out


def split(records, *, seed: int, dev_fraction: float = 0.2):
    cfg = make_cfg(stance=False, train={"seed": seed}, data={"train": "x", "dev_fraction": dev_fraction})
    return split_train_dev(records, cfg)


def ids(records) -> set[str]:
    return {r.id for r in records}


def test_split_is_seeded():
    records = topic_records({"ekonomi": 20, "olahraga": 5, "pemilu": 5})
    a_train, a_dev = split(records, seed=1)
    b_train, b_dev = split(records, seed=1)
    c_train, c_dev = split(records, seed=2)
    assert [r.id for r in a_dev] == [r.id for r in b_dev]
    assert [r.id for r in a_train] == [r.id for r in b_train]
    assert ids(a_dev) != ids(c_dev)


@pytest.mark.parametrize(
    ("n", "fraction", "n_dev"), [(30, 0.2, 6), (40, 0.25, 10), (7, 0.15, 1), (3, 0.1, 1)]
)
def test_split_sizes_follow_dev_fraction_without_overlap(n, fraction, n_dev):
    records = topic_records({"ekonomi": n})
    train, dev = split(records, seed=0, dev_fraction=fraction)
    assert len(dev) == n_dev
    assert len(train) == n - n_dev
    assert not ids(train) & ids(dev)
    assert ids(train) | ids(dev) == ids(records)


def test_split_is_stratified():
    # unstratified, olahraga (5 of 30) would miss a 6-record dev set in ~30% of seeds
    records = topic_records({"ekonomi": 20, "olahraga": 5, "pemilu": 5})
    for seed in range(10):
        train, dev = split(records, seed=seed)
        assert Counter(r.topics[0] for r in dev) == {"ekonomi": 4, "olahraga": 1, "pemilu": 1}
        assert {r.topics[0] for r in train} == set(TOPICS)


def test_split_with_stances_and_unlabeled(tmp_path):
    rows = synthetic_records(40, seed=5)
    for r in rows[:6]:
        del r["topics"]
        r["stances"] = {}
    cfg = make_cfg(data={"train": "x", "dev_fraction": 0.25})
    records = load_records(write_jsonl(tmp_path / "t.jsonl", rows), cfg)
    train, dev = split_train_dev(records, cfg)
    assert len(dev) == 10 and len(train) == 30
    assert not ids(train) & ids(dev)


def test_fingerprint_matches_hashlib(tmp_path):
    path = tmp_path / "t.jsonl"
    # about 3 MB, so the file is read in several 1 MiB blocks
    payload = ("".join(rec(id=str(i)) + "\n" for i in range(2000))).encode() * 30
    path.write_bytes(payload)
    fp = fingerprint(path)
    assert fp == {"path": str(path), "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    path.write_bytes(payload + b"\n")
    assert fingerprint(path)["sha256"] != fp["sha256"]


# ---------------------------------------------------------------- every problem of every file at once


def test_a_broken_json_line_does_not_hide_the_other_problems(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", ["{bad", rec(id="a", stances={"NATO": "agianst"}), rec(id="b", text="")])
    with pytest.raises(DataError) as excinfo:
        load_records(path, make_cfg())
    lines = problem_lines(excinfo)
    assert [line.split(": ")[0] for line in lines] == [f"{path} line 1", f"{path} line 2", f"{path} line 3"]
    assert "invalid JSON" in lines[0] and "stance 'agianst'" in lines[1] and "field 'text'" in lines[2]


def test_non_utf8_data_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(rec(id="a").encode() + b'\n{"id": "b", "text": "caf\xe9"}\n')  # cp1252 e-acute
    with pytest.raises(DataError) as excinfo:
        load_records(path, make_cfg())
    (line,) = problem_lines(excinfo)
    assert line.startswith(f"{path} line 2: not valid UTF-8 (byte 0xe9 at column ")
    csv_path = tmp_path / "t.csv"
    csv_path.write_bytes(b"id,text\na,satu\nb,caf\xe9\n")
    with pytest.raises(DataError, match=r"t.csv line 3: not valid UTF-8 \(byte 0xe9"):
        load_records(csv_path, make_cfg())


def test_unparsable_csv_and_empty_file_are_problems_not_tracebacks(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: no records"):
        load_records(empty, make_cfg())
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot be read as parquet"):
        load_records(bad, make_cfg())


def _config_with(tmp_path, train, dev=None, test=None):
    data = {"train": str(train)}
    data.update({k: str(v) for k, v in (("dev", dev), ("test", test)) if v is not None})
    return make_cfg(data=data)


def test_check_data_files_reports_every_file_at_once(tmp_path):
    train = write_lines(tmp_path / "train.jsonl", [rec(id="a"), "{bad"])
    dev = write_lines(tmp_path / "dev.jsonl", [rec(id="d", topics=["politik"]), rec(id="a")])
    test = tmp_path / "test.jsonl"  # named but missing
    with pytest.raises(DataError) as excinfo:
        check_data_files(_config_with(tmp_path, train, dev, test))
    where = [line.split(": ")[0] for line in problem_lines(excinfo)]
    assert where == [f"{train} line 2", f"{dev} line 1", f"{dev} line 2", str(test)]
    assert "also in the train file" in problem_lines(excinfo)[2]
    good = check_data_files(_config_with(tmp_path, write_lines(tmp_path / "ok.jsonl", [rec(id="a")])))
    assert [r.id for r in good["train"]] == ["a"]


def test_check_config_reads_the_data_files(tmp_path):
    from typer.testing import CliRunner

    from sikap.cli import app

    train = write_lines(tmp_path / "train.jsonl", [rec(id="a", stances={"NATO": "agianst"})])
    dev = write_lines(tmp_path / "dev.jsonl", ["{bad"])
    cfg = {"labels": {"topics": {"names": TOPICS}, "stance": {"actors": [{"name": "NATO"}]}},
           "data": {"train": str(train), "dev": str(dev)}}
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))
    res = CliRunner().invoke(app, ["check-config", str(tmp_path / "c.yaml")])
    assert res.exit_code == 1
    text = "".join(res.output.split())
    assert "2problemsinthetrainingdata" in text and "stance'agianst'" in text and "dev.jsonlline1" in text
    write_lines(dev, [rec(id="d")])
    write_lines(train, [rec(id="a")])
    res = CliRunner().invoke(app, ["check-config", str(tmp_path / "c.yaml")])
    assert res.exit_code == 0, res.output
    assert "train 1 records, dev 1 records" in res.output
