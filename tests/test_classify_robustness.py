"""classify never loses or duplicates an article: kill -9 mid-run then --resume; and no network use."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import synthetic_records, train_small_model
from typer.testing import CliRunner

from sikap.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def small_model(tiny_backbone, tmp_path_factory):
    return train_small_model(tiny_backbone, tmp_path_factory.mktemp("robust"))


@pytest.fixture(scope="module")
def many_articles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    for i, r in enumerate(synthetic_records(400, seed=21, long_every=7)):
        sub = folder / f"part{i % 5}"
        sub.mkdir(exist_ok=True)
        (sub / f"a{i:04d}.txt").write_text(f"{r['title']}\n{r['text']}", encoding="utf-8")
    (folder / "part0" / "broken.json").write_text("{not json", encoding="utf-8")
    lines = [json.dumps({"text": r["text"]}) for r in synthetic_records(20, seed=22)]
    lines.insert(5, "garbage line")
    (folder / "lines.jsonl").write_text("\n".join(lines), encoding="utf-8")
    return folder


def _cmd(model, folder, out):
    return [
        sys.executable,
        "-m",
        "sikap",
        "classify",
        str(model),
        str(folder),
        "-o",
        str(out),
        "--batch-articles",
        "4",
        "--no-progress",
        "--precision",
        "fp32",
    ]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _ids(path):
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_kill_9_then_resume_equals_an_uninterrupted_run(small_model, many_articles, tmp_path):
    ref = tmp_path / "ref.jsonl"
    subprocess.run(_cmd(small_model, many_articles, ref), check=True, env=_env(), capture_output=True)
    ref_text = ref.read_text(encoding="utf-8")
    assert len(ref_text.splitlines()) == 400 + 1 + 21  # txt files + broken json + jsonl lines (one bad)

    out = tmp_path / "out.jsonl"
    killed_at = 0
    for threshold in (20, 150, 300):  # kill three times at different points, resuming in between
        proc = subprocess.Popen(
            _cmd(small_model, many_articles, out) + (["--resume"] if out.exists() else []),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.stat().st_size and len(out.read_bytes().splitlines()) >= threshold:
                os.kill(proc.pid, signal.SIGKILL)
                killed_at += 1
                break
            time.sleep(0.005)
        proc.wait()
    assert killed_at >= 1, "the run finished before it could be killed; the test needs more articles"
    subprocess.run(_cmd(small_model, many_articles, out) + ["--resume"], check=True, env=_env(), capture_output=True)
    ids = _ids(out)
    assert len(ids) == len(set(ids))  # no duplicate
    assert out.read_text(encoding="utf-8") == ref_text  # nothing missing, same order, same numbers


def test_output_is_deterministic(small_model, many_articles, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (a, b):
        res = runner.invoke(
            app, ["classify", str(small_model), str(many_articles / "part1"), "-o", str(out), "--no-progress"]
        )
        assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()


def test_classify_makes_no_network_request(small_model, many_articles, tmp_path, monkeypatch):
    calls = []

    def refuse(self, *args, **kwargs):
        calls.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # classify must not even try
    out = tmp_path / "p.jsonl"
    res = runner.invoke(
        app, ["classify", str(small_model), str(many_articles / "part2"), "-o", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 80
    assert calls == []
