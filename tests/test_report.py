"""Figures and report.html of `sikap evaluate`: files, sizes, contents, and a headless-browser render."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.predict import ArticlePrediction
from sikap.training.data import Record
from sikap.training.report import FIGURES, report_html, topic_indicators, write_figures

PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _png_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def evaluated(tiny_backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    write_jsonl(root / "train.jsonl", synthetic_records(48, seed=4))
    test = synthetic_records(15, seed=5)
    for r in test:
        r["id"] = f"test-{r['id']}"
    write_jsonl(root / "test.jsonl", test)
    cfg = tiny_config_dict(tiny_backbone, root / "train.jsonl", None, root / "run")
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    for args in (
        ["train", root / "cfg.yaml", "--set", "train.max_steps=8", "--no-progress"],
        ["evaluate", root / "run", root / "test.jsonl", "-o", root / "eval"],
    ):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output + repr(res.exception)
    assert "report.html" in res.output
    return root / "eval"


def test_evaluate_writes_figures_linked_from_report_md(evaluated):
    md = (evaluated / "report.md").read_text(encoding="utf-8")
    for name in FIGURES:
        png = evaluated / f"{name}.png"
        assert png.read_bytes()[:8] == PNG
        assert 5_000 < png.stat().st_size < 1_000_000  # a drawn figure, not an empty canvas or a poster
        w, h = _png_size(png)
        assert 200 < w < 3000 and 200 < h < 3000
        assert f"]({name}.png)" in md


def test_report_html_is_self_contained(evaluated):
    page = (evaluated / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "Calibration" in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURES)
    inlined = {base64.b64decode(b) for b in images}
    assert inlined == {(evaluated / f"{n}.png").read_bytes() for n in FIGURES}
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from elsewhere
    assert sum(len(b) for b in images) < (evaluated / "report.html").stat().st_size < 5_000_000


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_browser() is None, reason="no chromium installed (Debian: apt-get install chromium)")
def test_report_html_renders_in_a_headless_browser(evaluated, tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"  # alone in a folder: it must not need the PNGs beside it
    shutil.copy(evaluated / "report.html", page)
    shot = tmp_path / "shot.png"
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1200,4000",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the confusion matrices' dark blue cells appear only if the inlined figures were decoded and drawn
    blue = (rgb[..., 2] > 100) & (rgb[..., 2] - rgb[..., 0] > 80)
    assert blue.sum() > 2_000


def _record(i: int, topics: list[str]) -> Record:
    return Record(id=f"r{i}", title="", text="x", topics=topics)


def test_multi_label_topics_get_one_2x2_matrix_per_topic(tmp_path):
    names = ["a", "b", "c"]
    meta = {"topics": {"names": names, "multi_label": True}, "stance": None}
    gold = [["a"], ["a", "b"], [], ["c"]]
    guess = [["a"], ["b"], ["c"], ["c", "a"]]
    records = [_record(i, g) for i, g in enumerate(gold)]
    preds = [ArticlePrediction(np.full(3, 0.5), g, [], []) for g in guess]
    y_true, y_pred = topic_indicators(meta, records, preds)
    assert y_true.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert y_pred.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]]
    metrics = {"topics": {"per_label": {n: {"f1": 0.5} for n in names}}}
    made = write_figures(tmp_path, metrics, meta, (y_true, y_pred))
    assert set(made) == {"confusion_topics", "f1"}  # no stance, no calibration block: no such figures
    w, h = _png_size(tmp_path / "confusion_topics.png")
    assert w > 2 * h  # three matrices side by side


def test_report_html_leaves_missing_images_alone(tmp_path):
    page = report_html("# t\n\n![x](missing.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", tmp_path)
    assert 'src="missing.png"' in page and "<td>1</td>" in page


def test_demo_ends_with_the_report_location(evaluated, tmp_path):
    root = evaluated.parent
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("judul\n\nmedia mendukung NATO inflasi rupiah", encoding="utf-8")
    sets = [f"output_dir={tmp_path / 'run'}", f"data.test={root / 'test.jsonl'}", "train.max_steps=3"]
    args = ["demo", "--config", root / "cfg.yaml", "--inputs", folder, "--output", tmp_path / "p.jsonl"]
    res = runner.invoke(app, [str(a) for a in args] + [x for s in sets for x in ("--set", s)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = tmp_path / "run" / "eval" / "report.html"
    assert report.is_file()
    assert res.output.strip().splitlines()[-1] == f"evaluation report: {report}"
