"""End to end through the CLI: train -> evaluate -> classify a mixed folder with broken files."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tiny_backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    write_jsonl(root / "train.jsonl", synthetic_records(60, seed=4, long_every=6))
    write_jsonl(root / "test.jsonl", synthetic_records(15, seed=5))
    cfg = tiny_config_dict(tiny_backbone, root / "train.jsonl", None, root / "run", epochs=2)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return root


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def model_dir(workspace):
    invoke(
        "train", workspace / "cfg.yaml", "--set", "train.max_steps=12", "--set", "train.eval_steps=6", "--no-progress"
    )
    return workspace / "run"


def make_articles(folder):
    docs = synthetic_records(6, seed=11)
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "a.txt").write_text(f"{docs[0]['title']}\n\n{docs[0]['text']}", encoding="utf-8")
    (folder / "sub" / "b.md").write_text(f"# {docs[1]['title']}\n\n{docs[1]['text']}", encoding="utf-8")
    (folder / "sub" / "c.json").write_text(json.dumps({"title": "c", "text": docs[2]["text"]}), encoding="utf-8")
    lines = [
        json.dumps({"id": "x", "title": "d", "text": docs[3]["text"]}),
        "{broken json",
        json.dumps({"title": "e", "text": docs[4]["text"]}),
    ]
    (folder / "sub" / "deeper" / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "f.html").write_text(
        "<html><head><title>f</title></head><body><nav><a href='/'>Beranda</a></nav><article>"
        + "".join(f"<p>{docs[5]['text']} kalimat nomor {i} untuk paragraf panjang.</p>" for i in range(4))
        + "</article><footer>Hak cipta</footer></body></html>",
        encoding="utf-8",
    )
    (folder / "empty.txt").write_text("", encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    return {
        "a.txt",
        "sub/b.md",
        "sub/c.json",
        "sub/deeper/d.jsonl:1",
        "sub/deeper/d.jsonl:2",
        "sub/deeper/d.jsonl:3",
        "f.html",
        "empty.txt",
    }


def test_train_writes_a_model_dir(model_dir):
    meta = json.loads((model_dir / "sikap.json").read_text())
    assert meta["training"]["steps"] == 12
    assert meta["data"]["dev"]["split_of"] == "train"  # no dev file: seeded split


def test_evaluate_writes_metrics_and_report(model_dir, workspace, tmp_path):
    res = invoke("evaluate", model_dir, workspace / "test.jsonl", "-o", tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["topics"]["macro_f1"] <= 1.0
    assert {"f_avg", "per_actor", "confusion"} <= set(metrics["stance"])
    assert metrics["data"]["records"] == 15
    assert "Confusion matrix" in (tmp_path / "report.md").read_text()
    assert "macro" in res.output


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_classify_one_record_per_article(model_dir, tmp_path, fmt):
    folder = tmp_path / "articles"
    folder.mkdir()
    expected = make_articles(folder)
    out = tmp_path / f"preds.{fmt}"
    res = invoke("classify", model_dir, folder, "-o", out, "--no-progress")
    if fmt == "csv":
        import csv

        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        assert {r["id"] for r in rows} == expected and len(rows) == len(expected)
        return
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(expected) and {r["id"] for r in records} == expected
    errors = {r["id"]: r["error"] for r in records if r["error"]}
    assert set(errors) == {"empty.txt", "sub/deeper/d.jsonl:2"}
    for r in records:
        if r["error"]:
            continue
        probs = r["topic_probs"]
        assert all(0.0 <= p <= 1.0 for p in probs.values()) and abs(sum(probs.values()) - 1) < 1e-4  # single-label
        assert r["topics"] == [max(probs, key=probs.get)]
        for actor, s in r["stances"].items():
            assert actor in {"NATO", "Rusia"}
            if s["label"] != "not_mentioned":
                assert abs(sum(s["probs"].values()) - 1) < 1e-4 and s["label"] == max(s["probs"], key=s["probs"].get)
    assert "8 articles" in res.output and "2 errors" in res.output


def test_classify_refuses_to_clobber_and_resumes(model_dir, tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    make_articles(folder)
    out = tmp_path / "p.jsonl"
    invoke("classify", model_dir, folder, "-o", out, "--no-progress")
    full = out.read_text(encoding="utf-8")
    again = runner.invoke(app, ["classify", str(model_dir), str(folder), "-o", str(out), "--no-progress"])
    assert again.exit_code == 1 and "--resume" in again.output
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:20], encoding="utf-8")  # a crash mid-write
    invoke("classify", model_dir, folder, "-o", out, "--resume", "--no-progress")
    assert out.read_text(encoding="utf-8") == full


def test_bad_config_reports_every_problem(workspace):
    res = runner.invoke(
        app, ["train", str(workspace / "cfg.yaml"), "--set", "train.learning_rate=-1", "--set", "train.epocs=3"]
    )
    assert res.exit_code == 1
    assert "train.learning_rate" in res.output and "train.epocs" in res.output


def test_bad_training_data_names_file_line_and_field(workspace, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"id": "1", "text": "teks", "topics": ["ekonomi"], "stances": {"NATO": "agianst"}}) + "\n",
        encoding="utf-8",
    )
    res = runner.invoke(app, ["train", str(workspace / "cfg.yaml"), "--set", f"data.train={bad}"])
    assert res.exit_code == 1
    assert "bad.jsonl line 1" in res.output and "agianst" in res.output and "stances" in res.output


def test_help_lists_the_commands():
    res = invoke("--help")
    for cmd in ("train", "evaluate", "classify", "backbone", "data"):
        assert cmd in res.output


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_classify_other_precisions_agree_with_fp32(model_dir, tmp_path, precision):
    folder = tmp_path / "articles"
    folder.mkdir()
    make_articles(folder)
    outs = {}
    for p in ("fp32", precision):
        outs[p] = tmp_path / f"{p}.jsonl"
        invoke("classify", model_dir, folder, "-o", outs[p], "--precision", p, "--no-progress")
    ref = [json.loads(x) for x in outs["fp32"].read_text().splitlines()]
    got = [json.loads(x) for x in outs[precision].read_text().splitlines()]
    assert [r["id"] for r in ref] == [r["id"] for r in got]
    for a, b in zip(ref, got, strict=True):
        if a["error"]:
            continue
        diff = max(abs(a["topic_probs"][k] - b["topic_probs"][k]) for k in a["topic_probs"])
        assert diff < 0.05, (precision, diff)


def test_unreachable_hub_backbone_is_a_clear_error(workspace):
    res = runner.invoke(
        app, ["train", str(workspace / "cfg.yaml"), "--set", "model.backbone=indobenchmark/indobert-base-p1"]
    )
    assert res.exit_code == 1
    assert "offline:multilingual-e5-small" in res.output


def test_demo_command_trains_and_classifies(workspace, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("judul\n\nmedia mendukung NATO inflasi rupiah", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    res = invoke(
        "demo",
        "--config",
        workspace / "cfg.yaml",
        "--inputs",
        folder,
        "--output",
        out,
        "--set",
        f"output_dir={tmp_path / 'run'}",
        "--set",
        "train.max_steps=3",
    )
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in recs] == ["a.txt"] and recs[0]["error"] is None
    summary = tmp_path / "summary" / "summary.md"  # the demo ends with `sikap summarize` next to the predictions
    assert "1 of 1 classified articles had no date" in summary.read_text(encoding="utf-8")
    assert "summary.md" in "".join(res.output.split())
