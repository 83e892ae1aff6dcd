"""What classify guarantees around the readers: output paths, file names, model dirs, locking, resume.

Each test is a regression test for one point of issue 9 (or a further case found with it).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import synthetic_records, train_small_model, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.inference.classify import OutputError, OutputLock, open_output
from sikap.modelmeta import ModelDirError, check_model_dir, fill_defaults, parse_meta, read_meta

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tiny_backbone, tmp_path_factory):
    return train_small_model(tiny_backbone, tmp_path_factory.mktemp("guarantees"))


def articles(folder, n=6, seed=31):
    folder.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(synthetic_records(n, seed=seed)):
        (folder / f"a{i}.txt").write_text(f"{r['title']}\n{r['text']}", encoding="utf-8")
    return folder


def classify(model, inputs, out, *extra):
    args = ["classify", str(model), str(inputs), "-o", str(out), "--no-progress", "--precision", "fp32", *extra]
    return runner.invoke(app, [str(a) for a in args])


def ids(path):
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def one_line_error(res, *fragments):
    """A run that cannot start: non-zero exit, a short message naming the problem, no traceback."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, (KeyError, TypeError, ValueError))
    text = "".join(res.output.split())  # rich wraps long lines at the console width
    for f in fragments:
        assert "".join(f.split()) in text, res.output


# ---------------------------------------------------------------- 1. output inside the input folder


def test_output_inside_input_folder_is_not_read_back(model, tmp_path):
    folder = articles(tmp_path / "in")
    for out in (folder / "sub" / "preds.jsonl", folder / "preds.jsonl"):
        res = classify(model, folder, out)
        assert res.exit_code == 0, res.output
        assert sorted(ids(out)) == [f"a{i}.txt" for i in range(6)]
        res = classify(model, folder, out, "--resume")  # the output is not an article either
        assert res.exit_code == 0, res.output
        assert len(ids(out)) == 6 and "6 already done" in res.output
    assert not list(folder.rglob("*.lock"))  # the lock file goes when the run ends


def test_output_that_is_the_input_file_is_refused(model, tmp_path):
    src = write_jsonl(tmp_path / "arts.jsonl", [{"text": r["text"]} for r in synthetic_records(3)])
    before = src.read_bytes()
    for extra in ((), ("--resume",), ("--overwrite",)):
        one_line_error(classify(model, src, src, *extra))
    assert src.read_bytes() == before


# ---------------------------------------------------------------- 2. file names that are not UTF-8


@pytest.mark.skipif(sys.platform == "darwin", reason="APFS refuses names that are not UTF-8")
def test_non_utf8_file_name_gets_an_escaped_id_and_resumes(model, tmp_path):
    folder = articles(tmp_path / "in", n=3)
    r = synthetic_records(1, seed=40)[0]
    raw = os.fsencode(str(folder)) + b"/berita-\xff.txt"
    with open(raw, "wb") as f:
        f.write(f"{r['title']}\n{r['text']}".encode())
    out = tmp_path / "p.jsonl"
    res = classify(model, folder, out, "--batch-articles", "1")
    assert res.exit_code == 0, res.output
    got = ids(out)
    assert "berita-\\xff.txt" in got and len(got) == 4
    out.write_text("".join(out.read_text(encoding="utf-8").splitlines(keepends=True)[:2]), encoding="utf-8")
    res = classify(model, folder, out, "--resume")
    assert res.exit_code == 0, res.output
    assert sorted(ids(out)) == sorted(got)


def test_lone_surrogates_in_json_fields_are_written(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.jsonl").write_text('{"id": "u\\ud800", "title": "t\\udcff", "text": "berita \\ud800 biasa"}\n')
    out = tmp_path / "p.jsonl"
    res = classify(model, folder, out)
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["error"] is None and rec["meta"]["user_id"] == "u\\ud800"


# ---------------------------------------------------------------- 3. tokenizer files missing


def test_model_dir_without_tokenizer_files_is_refused(model, tmp_path):
    broken = tmp_path / "m"
    shutil.copytree(model, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (broken / name).unlink(missing_ok=True)
    res = classify(broken, articles(tmp_path / "in", n=2), tmp_path / "p.jsonl")
    one_line_error(res, "missing tokenizer.json, tokenizer_config.json")
    assert not (tmp_path / "p.jsonl").exists()


def test_tokenizer_of_another_model_is_refused(model, tmp_path):
    from transformers import AutoTokenizer

    broken = tmp_path / "m"
    shutil.copytree(model, broken)
    tok = AutoTokenizer.from_pretrained(str(model))
    tok.add_tokens([f"kata{i}" for i in range(500)])  # more ids than the embedding has rows
    tok.save_pretrained(broken)
    one_line_error(classify(broken, articles(tmp_path / "in", n=2), tmp_path / "p.jsonl"), "tokenizer has")


# ---------------------------------------------------------------- 4. CSV resume after a torn quoted field


def test_csv_resume_after_a_crash_inside_a_quoted_multiline_field(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    docs = synthetic_records(5, seed=33)
    for i, r in enumerate(docs):  # titles with line breaks are quoted multi-line CSV fields
        (folder / f"d{i}.json").write_text(json.dumps({"title": f"baris satu\nbaris dua {i}", "text": r["text"]}))
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    assert classify(model, folder, ref).exit_code == 0
    data = ref.read_bytes()
    cut = data.index(b"baris satu\nbaris dua 3") + len(b"baris satu\n")  # crash inside record 4's title
    out.write_bytes(data[:cut])
    res = classify(model, folder, out, "--resume")
    assert res.exit_code == 0, res.output
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"d{i}.json" for i in range(5)]
    assert out.read_bytes() == data


# ---------------------------------------------------------------- 5. two processes, one output


def test_second_writer_of_the_same_output_is_refused(model, tmp_path):
    folder = articles(tmp_path / "in", n=2)
    out = tmp_path / "p.jsonl"
    holder = OutputLock(out)
    holder.acquire()  # what a running classify holds; a separate open file conflicts even in-process
    try:
        res = classify(model, folder, out)
        one_line_error(res, "is being written by another sikap classify", f"pid {os.getpid()}")
    finally:
        holder.release()
    assert classify(model, folder, out).exit_code == 0
    assert len(ids(out)) == 2


def test_second_process_is_refused_before_loading_the_model(model, tmp_path):
    folder = articles(tmp_path / "in", n=2)
    out = tmp_path / "p.jsonl"
    with open_output(folder, out):
        proc = subprocess.run(
            [sys.executable, "-m", "sikap", "classify", str(model), str(folder), "-o", str(out), "--no-progress"],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    assert proc.returncode == 1 and "being written by another" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stale_lock_file_after_kill_does_not_block(model, tmp_path):
    folder = articles(tmp_path / "in", n=2)
    out = tmp_path / "p.jsonl"
    (tmp_path / "p.jsonl.lock").write_text("12345\n")  # left by a run killed with -9: not locked
    assert classify(model, folder, out).exit_code == 0


# ---------------------------------------------------------------- 6. --overwrite never deletes an input


def test_overwrite_pointing_at_an_input_file_is_refused(model, tmp_path):
    folder = articles(tmp_path / "in", n=2)
    lines = write_jsonl(folder / "lines.jsonl", [{"text": r["text"]} for r in synthetic_records(3, seed=9)])
    before = lines.read_bytes()
    for flag in ("--overwrite", "--resume"):
        one_line_error(classify(model, folder, lines, flag), "not a sikap classify output", "input folder")
    assert lines.read_bytes() == before


def test_overwrite_replaces_only_a_classify_output(model, tmp_path):
    folder = articles(tmp_path / "in", n=2)
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"important": true}\n')
    one_line_error(classify(model, folder, notes, "--overwrite"), "not a sikap classify output")
    out = tmp_path / "p.jsonl"
    assert classify(model, folder, out).exit_code == 0
    assert classify(model, folder, out, "--overwrite").exit_code == 0
    assert len(ids(out)) == 2


# ---------------------------------------------------------------- 7. damaged model dirs


def _damaged(model, tmp_path, name, content):
    d = tmp_path / "m"
    shutil.copytree(model, d)
    if content is None:
        (d / name).unlink()
    else:
        (d / name).write_bytes(content)
    return d


def _meta_with(model, **changes):
    meta = json.loads((model / "sikap.json").read_text())
    for dotted, value in changes.items():
        node, *path = dotted.split("__")
        target = meta
        for p in [node, *path][:-1]:
            target = target[p]
        if value is ...:
            del target[[node, *path][-1]]
        else:
            target[[node, *path][-1]] = value
    return json.dumps(meta).encode()


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("sikap.json", b'{"format_version": 1, "topics": ', "invalid JSON"),
        ("sikap.json", b"[1, 2]", "expected a JSON object"),
        ("sikap.json", b"\xff\xfe{", "not UTF-8"),
        ("config.json", b"{not json", "config.json: invalid JSON"),
        ("config.json", b"{}", "no model_type"),
        ("config.json", None, "missing config.json"),
        ("model.safetensors", b"\x00" * 100, "model.safetensors: damaged"),
        ("model.safetensors", None, "missing model.safetensors"),
        ("tokenizer.json", b"{broken", "tokenizer files cannot be read"),
    ],
)
def test_damaged_model_dir_gives_a_message_naming_the_file(model, tmp_path, name, content, fragment):
    d = _damaged(model, tmp_path, name, content)
    out = tmp_path / "p.jsonl"
    one_line_error(classify(d, articles(tmp_path / "in", n=2), out), fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"chunking__max_chunks": 0}, "chunking.max_chunks: must be >= 1"),
        ({"format_version": 2}, "format_version 2 is not readable (it was saved by a newer sikap"),
        ({"format_version": ...}, "format_version: Field required"),
        ({"topics__names": "ekonomi"}, "topics.names"),
        ({"stance__actors": [{"name": "NATO"}, {"name": "NATO"}]}, "duplicate actor names: NATO"),
        ({"chunking__stride": 64}, "stride (64) must be smaller than max_length (64)"),
        ({"chunking__max_length": 4096}, "exceeds the backbone's max_position_embeddings (128)"),
        ({"topics__thresholds": {"ekonomi": 3}}, "thresholds must lie in [0, 1]"),
        ({"stance__classes": ["favor", "against"]}, "weights do not match sikap.json"),
    ],
)
def test_invalid_sikap_json_is_refused_with_the_field(model, tmp_path, changes, fragment):
    d = _damaged(model, tmp_path, "sikap.json", _meta_with(model, **changes))
    one_line_error(classify(d, articles(tmp_path / "in", n=2), tmp_path / "p.jsonl"), fragment)


def test_meta_keeps_unknown_keys_and_fills_defaults_for_old_dirs(model):
    raw = json.loads((model / "sikap.json").read_text())
    raw["lexical"] = {"weight": 0.3}
    raw["chunking"]["generic_actor"] = True
    del raw["chunking"]["stance_pooling"], raw["chunking"]["stance_mode"]
    meta = parse_meta(raw)
    assert meta["lexical"] == {"weight": 0.3} and meta["chunking"]["generic_actor"] is True
    assert (meta["chunking"]["stance_mode"], meta["chunking"]["stance_pooling"]) == ("pair", "mean")
    assert fill_defaults({"format_version": 1})["topics"] is None
    assert read_meta(model)["topics"]["names"] == check_model_dir(model)["topics"]["names"]


def test_modeldir_format_version_is_readable():
    from sikap.modeldir import FORMAT_VERSION
    from sikap.modelmeta import READABLE_FORMAT_VERSIONS

    assert FORMAT_VERSION in READABLE_FORMAT_VERSIONS


def test_user_errors_are_found_before_the_model_loads(model, tmp_path, monkeypatch):
    import sikap.modeldir

    def no_load(*a, **k):
        raise AssertionError("the model must not be loaded for a user error")

    monkeypatch.setattr(sikap.modeldir, "load_model_dir", no_load)
    folder = articles(tmp_path / "in", n=1)
    (tmp_path / "p.jsonl").write_text("x\n")
    one_line_error(classify(model, folder, tmp_path / "p.jsonl"), "exists; pass --resume")
    one_line_error(classify(model, folder, tmp_path / "p.jsonl", "--resume"), "not a sikap classify output")
    with open_output(folder, tmp_path / "q.jsonl"):
        one_line_error(classify(model, folder, tmp_path / "q.jsonl"), "being written by another")


# ---------------------------------------------------------------- further cases


def test_resume_with_another_models_output_is_refused(model, tmp_path):
    folder = articles(tmp_path / "in", n=3)
    out = tmp_path / "p.jsonl"
    assert classify(model, folder, out).exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[0])
    rec["topic_probs"] = {"lain": 1.0}
    out.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    one_line_error(classify(model, folder, out, "--resume"), "written by a model with other labels")


def test_damaged_line_in_the_middle_of_an_output_stops_resume(model, tmp_path):
    folder = articles(tmp_path / "in", n=3)
    out = tmp_path / "p.jsonl"
    assert classify(model, folder, out).exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text(lines[0] + "{garbage\n" + lines[1], encoding="utf-8")
    one_line_error(classify(model, folder, out, "--resume"), "line 2 is not a classify record")


def test_torn_first_record_resumes(model, tmp_path):
    folder = articles(tmp_path / "in", n=3)
    ref, out = tmp_path / "ref.jsonl", tmp_path / "p.jsonl"
    assert classify(model, folder, ref).exit_code == 0
    out.write_bytes(ref.read_bytes()[:40])  # crash during the first write: no complete line
    assert classify(model, folder, out, "--resume").exit_code == 0
    assert out.read_bytes() == ref.read_bytes()


def test_format_mismatch_on_resume_is_refused(model, tmp_path):
    folder = articles(tmp_path / "in", n=2)
    out = tmp_path / "p.jsonl"
    assert classify(model, folder, out).exit_code == 0
    one_line_error(classify(model, folder, out, "--resume", "--format", "csv"), "holds jsonl records")


def test_output_folder_that_is_a_file_is_a_clear_error(model, tmp_path):
    (tmp_path / "f").write_text("x")
    one_line_error(classify(model, articles(tmp_path / "in", n=1), tmp_path / "f" / "p.jsonl"), "cannot create")


def test_unwritable_output_folder_is_a_clear_error(model, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        one_line_error(classify(model, articles(tmp_path / "in", n=1), ro / "p.jsonl"), "lock file")
    finally:
        ro.chmod(0o700)


def test_open_output_refuses_resume_with_overwrite(tmp_path):
    with pytest.raises(OutputError, match="exclude each other"):
        open_output(tmp_path, tmp_path / "p.jsonl", resume=True, overwrite=True)


def test_model_dir_errors_are_model_dir_errors(tmp_path):
    with pytest.raises(ModelDirError, match="no such model directory"):
        read_meta(tmp_path / "nope")
