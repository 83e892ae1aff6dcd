"""Importers for public datasets: small hand-written samples with each file's quirks, the
CLI, and (when ../shared is present) the real files with their known counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sikap.cli_data import app
from sikap.training.importers import (
    DatasetFormatError,
    alias_coverage,
    import_dataset,
    read_jsonl,
    split_paragraphs,
    suggest_config,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ID_STANCE_CSV = "id-stance/dataset_stance_2_label_2018_building_by_rini.csv"

# Rows reproduce the real file: BOM, ';', trailing empty column, doubled quotes around a
# JSON list, Mac Roman mojibake, the `[ p1.  p2. ]` body format, a body in the title
# column, stray spaces/case in Tokoh, the 'againts' typo and 'no'.
ID_STANCE_SAMPLE = (
    "\ufeffTokoh;Event;Judul Artikel;Isi Artikel;stance final;\n"
    'ahok;Pilgub DKI 2016;Judul Satu;"[""Paragraf satu tentang Ahok."",'
    '""Saya \\""BENCI\\"" Basuki."",""¬† ""]";for;\n'
    "AHY  ;Pilpres 2019; Judul  Dua   ;[ Paragraf pertama AHY.  Kalimat dengan  spasi ganda.  ];againts;\n"
    'jokowi;Pilpres 2014;Judul Tiga;"[""Teks Jokowi.""]";no;\n'
    "Ridwan Kamil;Pilgub Jabar;[ Isi di kolom judul tentang Kang Emil. ];;against;\n"
    "ridwan  KAMIL;Pilgub Jabar;Judul Lima;;for;\n"
    'Prabowo;Pilpres 2014;Judul Enam;"[""‚ÄúHebat‚Äù kata Prabowo.""]";against;\n'
    'prabowo;Pilpres 2014;Judul Tujuh;"[""Teks.""]";maybe;\n'
)


def write(path: Path, text: str) -> Path:
    """Write ``text`` as UTF-8 bytes exactly (no newline translation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def records(path: Path) -> list[dict]:
    return list(read_jsonl(path))


# --- id-stance ----------------------------------------------------------------------------


@pytest.fixture
def id_stance(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "id_stance.csv", ID_STANCE_SAMPLE), tmp_path / "out" / "id.jsonl"


def test_id_stance_counts_and_reasons(id_stance: tuple[Path, Path]) -> None:
    src, out = id_stance
    report = import_dataset("id-stance", src, out)
    assert (report.read, report.written) == (7, 4)
    assert report.dropped == {
        "stance 'no' (neither for nor against)": 1,
        "empty text": 1,
        "stance 'maybe' is not for/against": 1,
    }
    assert report.examples["empty text"] == ["row 5"]
    assert report.notes["stance typo 'againts' read as against"] == 1
    assert report.notes["body found in the title column (moved to text)"] == 1
    assert report.examples["mojibake repaired (ftfy)"] == ["row 1", "row 6"]
    assert report.stance_labels == {"favor": 1, "against": 3}


def test_id_stance_records(id_stance: tuple[Path, Path]) -> None:
    src, out = id_stance
    import_dataset("id-stance", src, out)
    recs = records(out)
    assert [r["id"] for r in recs] == ["id-stance-1", "id-stance-2", "id-stance-4", "id-stance-6"]
    assert [r["stances"] for r in recs] == [
        {"Ahok": "favor"},
        {"AHY": "against"},
        {"Ridwan Kamil": "against"},
        {"Prabowo": "against"},
    ]
    assert recs[0]["text"] == 'Paragraf satu tentang Ahok.\n\nSaya "BENCI" Basuki.'
    assert recs[1]["text"] == "Paragraf pertama AHY.\n\nKalimat dengan spasi ganda."
    assert recs[1]["title"] == "Judul Dua"
    assert recs[2] == {
        "id": "id-stance-4",
        "title": "",
        "text": "Isi di kolom judul tentang Kang Emil.",
        "stances": {"Ridwan Kamil": "against"},
        "meta": {"event": "Pilgub Jabar", "row": 4},
    }
    assert recs[3]["text"] == '"Hebat" kata Prabowo.'


def test_split_paragraphs_formats() -> None:
    assert split_paragraphs('["a", "b"]') == (["a", "b"], "json list")
    assert split_paragraphs("[ Satu.  Dua  tiga. ]") == (["Satu.", "Dua  tiga."], "bracketed text")
    # Starts like JSON but is not: falls back to the double-space split.
    assert split_paragraphs('["a" "b".  c]')[1] == "bracketed text"
    assert split_paragraphs("Teks biasa.") == (["Teks biasa."], "plain text")


# --- sib200, smsa, absa -------------------------------------------------------------------


def test_sib200_quoting_and_empty_text(tmp_path: Path) -> None:
    src = write(
        tmp_path / "train.tsv",
        "index_id\tcategory\ttext\n431\tgeography\tTurki dikelilingi laut.\n"
        '1095\thealth\t"""Kata dia ""sangat"" tinggi."""\n7\tsports\t  \n',
    )
    report = import_dataset("sib200", src, tmp_path / "sib.jsonl")
    assert (report.read, report.written, report.dropped) == (3, 2, {"empty text": 1})
    recs = records(tmp_path / "sib.jsonl")
    assert recs[1] == {
        "id": "sib200-1095",
        "title": "",
        "text": '"Kata dia "sangat" tinggi."',
        "topics": ["health"],
    }
    assert suggest_config(report) == {"topics": {"multi_label": False, "names": ["geography", "health"]}}


def test_smsa(tmp_path: Path) -> None:
    src = write(
        tmp_path / "smsa" / "valid_preprocess.tsv",
        "enak sekali .\tpositive\n\tnegative\ntidak tahu\tbogus\nsatu kolom saja\nbiasa\tneutral\n",
    )
    report = import_dataset("indonlu-smsa", src, tmp_path / "smsa.jsonl")
    assert (report.read, report.written) == (5, 2)
    assert report.dropped == {
        "empty text": 1,
        "label 'bogus' is not one of positive, negative, neutral": 1,
        "not 2 tab-separated fields (text, label)": 1,
    }
    assert [r["id"] for r in records(tmp_path / "smsa.jsonl")] == ["smsa-valid-1", "smsa-valid-5"]
    assert suggest_config(report)["topics"]["names"] == ["neutral", "positive"]


def test_casa(tmp_path: Path) -> None:
    src = write(
        tmp_path / "train_preprocess.csv",
        'sentence,fuel,price\n"Irit, murah",positive,neutral\n,negative,neutral\nMahal,neutral,negative\n',
    )
    report = import_dataset("indonlu-absa", src, tmp_path / "casa.jsonl")
    assert (report.read, report.written, report.dropped) == (3, 2, {"empty text": 1})
    recs = records(tmp_path / "casa.jsonl")
    assert recs[0] == {
        "id": "casa-train-1",
        "title": "",
        "text": "Irit, murah",
        "stances": {"fuel": "favor", "price": "neutral"},
    }
    assert suggest_config(report) == {
        "stance": {
            "classes": ["favor", "against", "neutral"],
            "actors": [{"name": "fuel", "aliases": []}, {"name": "price", "aliases": []}],
        }
    }


def test_hoasa_unknown_label_leaves_aspect_unlabeled(tmp_path: Path) -> None:
    src = write(
        tmp_path / "valid_preprocess.csv",
        "review,ac,wifi\nkamar ok,neg_pos,pos\nsemua aneh,neg_pos,xx\nac dingin,pos,neut\n",
    )
    report = import_dataset("indonlu-absa", src, tmp_path / "hoasa.jsonl")
    assert (report.read, report.written) == (3, 2)
    assert report.dropped == {"no aspect has a usable label": 1}
    assert report.notes["unknown aspect label 'neg_pos' (aspect left unlabeled)"] == 2
    assert report.examples["unknown aspect label 'xx' (aspect left unlabeled)"] == ["row 2 (wifi)"]
    recs = records(tmp_path / "hoasa.jsonl")
    assert [(r["id"], r["stances"]) for r in recs] == [
        ("hoasa-valid-1", {"wifi": "favor"}),
        ("hoasa-valid-3", {"ac": "favor", "wifi": "neutral"}),
    ]
    assert report.actors == {"ac": 1, "wifi": 2}


# --- errors, config, alias coverage -------------------------------------------------------


def test_errors_name_the_file_and_fix(tmp_path: Path, id_stance: tuple[Path, Path]) -> None:
    src, _ = id_stance
    out = tmp_path / "never.jsonl"
    with pytest.raises(DatasetFormatError, match="is a folder; pass one file inside it"):
        import_dataset("sib200", tmp_path, out)
    with pytest.raises(DatasetFormatError, match=r"needs column\(s\) index_id, category, text"):
        import_dataset("sib200", src, out)
    with pytest.raises(DatasetFormatError, match="no text column"):
        import_dataset("indonlu-absa", src, out)
    with pytest.raises(DatasetFormatError, match="unknown dataset kind 'nope'"):
        import_dataset("nope", src, out)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_id_stance_config_and_alias_coverage(id_stance: tuple[Path, Path]) -> None:
    src, out = id_stance
    labels = suggest_config(import_dataset("id-stance", src, out))
    assert labels["stance"]["classes"] == ["favor", "against"]  # the data has no neutral
    actors = {a["name"]: a["aliases"] for a in labels["stance"]["actors"]}
    assert list(actors) == ["Ahok", "AHY", "Ridwan Kamil", "Prabowo"]
    assert actors["Ahok"][:2] == ["Ahok", "Basuki"]
    coverage = alias_coverage(records(out), labels["stance"]["actors"])
    assert coverage["Ahok"].occurrences["Basuki"] == 1
    assert coverage["Ahok"].articles_with["Ahok"] == 1
    # one matcher (sikap.text): "Kang Emil" is one mention, not also one of "Emil"
    assert coverage["Ridwan Kamil"].occurrences == {"Ridwan Kamil": 0, "Kang Emil": 1, "Emil": 0, "RK": 0}
    assert coverage["Prabowo"].unmatched == 0
    # "Bowo" must not match inside "Prabowo": aliases are whole words.
    assert coverage["Prabowo"].occurrences["Bowo"] == 0


def test_alias_coverage_reports_unmatched() -> None:
    recs = [
        {"id": "a", "title": "Tentang NATO", "text": "Pakta itu meluas.", "stances": {"NATO": "against"}},
        {"id": "b", "text": "nato, lagi.", "stances": {"NATO": "favor"}},
        {"id": "c", "text": "Tidak berlabel."},
    ]
    actors = [{"name": "NATO", "aliases": ["NATO"]}, {"name": "aspect", "aliases": []}]
    cov = alias_coverage(recs, actors)
    assert list(cov) == ["NATO"]
    assert (cov["NATO"].articles, cov["NATO"].unmatched, cov["NATO"].unmatched_ids) == (2, 1, ["a"])
    assert cov["NATO"].unmatched_fraction == 0.5
    assert alias_coverage(recs, actors, fields=("title", "text"))["NATO"].unmatched == 0


def test_alias_coverage_agrees_with_what_the_model_matches() -> None:
    """Issue 9: the importer's coverage report used its own regex (no whitespace folding)."""
    from sikap.text import find_mentions

    actors = [{"name": "Jokowi", "aliases": ["Joko Widodo", "Jokowi", "Widodo"]}]
    texts = ["Presiden Joko\nWidodo berkata.", "Pak  Widodo dan Jokowi.", "Jokowidodo bukan nama.", "Tidak ada."]
    recs = [{"id": str(i), "text": t, "stances": {"Jokowi": "favor"}} for i, t in enumerate(texts)]
    cov = alias_coverage(recs, actors)["Jokowi"]
    model_sees = [bool(find_mentions(t, actors[0]["aliases"])) for t in texts]
    assert cov.unmatched_ids == [r["id"] for r, seen in zip(recs, model_sees, strict=True) if not seen] == ["2", "3"]
    assert sum(cov.occurrences.values()) == sum(len(find_mentions(t, actors[0]["aliases"])) for t in texts) == 3
    assert cov.occurrences == {"Joko Widodo": 1, "Jokowi": 1, "Widodo": 1}


# --- CLI ----------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_import_prints_table_and_config(id_stance: tuple[Path, Path]) -> None:
    src, out = id_stance
    result = runner.invoke(app, ["import", "id-stance", str(src), "-o", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "stance 'no' (neither for nor against)" in result.output
    assert "row 3" in result.output
    assert "labels:" in result.output
    assert "aliases: [Ahok, Basuki, Basuki Tjahaja Purnama, BTP]" in result.output
    assert "Alias coverage" in result.output
    assert len(records(out)) == 4


def test_cli_no_print_config_and_errors(tmp_path: Path, id_stance: tuple[Path, Path]) -> None:
    src, out = id_stance
    args = ["import", "id-stance", str(src), "-o", str(out), "--no-print-config"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "labels:" not in result.output
    result = runner.invoke(app, ["import", "sib200", str(tmp_path), "-o", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "is a folder" in result.output
    result = runner.invoke(app, ["import", "bogus", str(src), "-o", str(out)])
    assert result.exit_code == 2


# --- the real files (skipped without ../shared/data) ---------------------------------------

REAL = [
    ("sib200", "sib-200-ind/train.tsv", 701, 701, 7),
    ("sib200", "sib-200-ind/dev.tsv", 99, 99, 7),
    ("indonlu-absa", "indonlu/casa_absa-prosa/train_preprocess.csv", 810, 810, 6),
    ("indonlu-absa", "indonlu/casa_absa-prosa/valid_preprocess.csv", 90, 90, 6),
    ("indonlu-absa", "indonlu/hoasa_absa-airy/train_preprocess.csv", 2283, 2283, 10),
    ("indonlu-absa", "indonlu/hoasa_absa-airy/valid_preprocess.csv", 285, 285, 10),
    ("indonlu-smsa", "indonlu/smsa_doc-sentiment-prosa/train_preprocess.tsv", 11000, 11000, 3),
    ("indonlu-smsa", "indonlu/smsa_doc-sentiment-prosa/valid_preprocess.tsv", 1260, 1260, 3),
]


def real_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} not present (needs ../shared/data next to the repository)")
    return path


@pytest.mark.parametrize(("kind", "relative", "read", "written", "n_labels"), REAL)
def test_real_files(tmp_path: Path, kind: str, relative: str, read: int, written: int, n_labels: int) -> None:
    report = import_dataset(kind, real_file(relative), tmp_path / "out.jsonl")
    assert (report.read, report.written, report.dropped) == (read, written, {})
    assert len(report.topics) + len(report.actors) == n_labels


def test_real_hoasa_neg_pos(tmp_path: Path) -> None:
    path = real_file("indonlu/hoasa_absa-airy/train_preprocess.csv")
    report = import_dataset("indonlu-absa", path, tmp_path / "out.jsonl")
    assert report.notes == {"unknown aspect label 'neg_pos' (aspect left unlabeled)": 9}


def test_real_id_stance(tmp_path: Path) -> None:
    out = tmp_path / "id.jsonl"
    report = import_dataset("id-stance", real_file(ID_STANCE_CSV), out)
    assert (report.read, report.written) == (337, 335)
    assert report.dropped == {"stance 'no' (neither for nor against)": 2}
    assert report.notes["stance typo 'againts' read as against"] == 9
    assert report.notes["body found in the title column (moved to text)"] == 1
    # README counts are per raw row; the two 'no' rows were one jokowi and one AHY.
    assert report.actors == {"Ahok": 155, "Jokowi": 58, "Ridwan Kamil": 46, "AHY": 42, "Prabowo": 34}
    assert report.stance_labels == {"favor": 213, "against": 122}
    recs = records(out)
    numbers = [int(r["id"].rsplit("-", 1)[1]) for r in recs]
    assert numbers == sorted(numbers) and len(set(numbers)) == 335
    assert all(len(r["text"]) > 500 and "¬†" not in r["text"] for r in recs)
    coverage = alias_coverage(recs, suggest_config(report)["stance"]["actors"])
    assert {name: c.unmatched for name, c in coverage.items()} == {
        "Ahok": 0,
        "Jokowi": 0,
        "AHY": 0,
        "Ridwan Kamil": 0,
        "Prabowo": 2,  # named only in the title
    }


def test_real_json_is_valid_utf8_lines(tmp_path: Path) -> None:
    out = tmp_path / "sib.jsonl"
    import_dataset("sib200", real_file("sib-200-ind/dev.tsv"), out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 99 and all(json.loads(line)["id"].startswith("sib200-") for line in lines)
