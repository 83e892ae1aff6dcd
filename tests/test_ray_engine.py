"""`classify --engine ray`: the same records, in the same order, as the local engine; resume; no Ray, clear message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import synthetic_records, train_small_model
from typer.testing import CliRunner

from sikap.cli import app
from sikap.inference.ray_engine import Plan, plan_workers

ray = pytest.importorskip("ray")  # the test extra installs it; CI runs these
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_instance():
    """One small local instance for the module (the engine joins it and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tiny_backbone, tmp_path_factory):
    return train_small_model(tiny_backbone, tmp_path_factory.mktemp("ray-model"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The robustness suite's folder, smaller, plus the inputs the readers turn into error records."""
    folder = tmp_path_factory.mktemp("hostile")
    for i, r in enumerate(synthetic_records(36, seed=21, long_every=7)):
        sub = folder / f"part{i % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"a{i:04d}.txt").write_text(f"{r['title']}\n{r['text']}", encoding="utf-8")
    (folder / "part0" / "broken.json").write_text("{not json", encoding="utf-8")
    lines = [json.dumps({"text": r["text"]}) for r in synthetic_records(20, seed=22)]
    lines.insert(5, "garbage line")
    lines.insert(9, json.dumps({"title": "no text"}))
    lines.insert(12, '{"text": "lone \\ud800 surrogate NATO"}')
    (folder / "lines.jsonl").write_text("\n".join(lines), encoding="utf-8")
    (folder / "part1" / "binary.txt").write_bytes(bytes(range(256)) * 4)
    latin1 = "Berita\nRusia menolak perluasan NATO, kata menteri à Moskow".encode("latin-1")
    (folder / "part1" / "latin1.txt").write_bytes(latin1)
    (folder / "part2" / "empty.txt").write_bytes(b"")
    (folder / "part2" / "picture.png").write_bytes(b"\x89PNG")
    (folder / os.fsdecode(b"caf\xe9.txt")).write_text("Judul\nNATO dan Rusia bertemu", encoding="utf-8")
    os.symlink(folder / "nowhere.txt", folder / "part2" / "dangling.txt")
    return folder


def classify(model, inputs, out, *extra):
    args = ["classify", str(model), str(inputs), "-o", str(out), "--no-progress", "--precision", "fp32", *extra]
    return runner.invoke(app, [str(a) for a in args])


def records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_same_records(got, want, tol=1e-5):
    """Same ids, errors, labels and order; probabilities within ``tol``."""
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), g["id"]
        for k in g:
            if k == "topic_probs":
                assert g[k].keys() == w[k].keys()
                assert all(abs(g[k][n] - w[k][n]) <= tol for n in g[k]), g["id"]
            elif k == "stances":
                for actor, s in g[k].items():
                    assert s["label"] == w[k][actor]["label"], (g["id"], actor)
                    if s["probs"] is None or w[k][actor]["probs"] is None:
                        assert s["probs"] == w[k][actor]["probs"]
                    else:
                        assert all(abs(p - w[k][actor]["probs"][c]) <= tol for c, p in s["probs"].items())
            else:
                assert g[k] == w[k], (g["id"], k)


def test_ray_output_equals_local_output_on_hostile_input(ray_instance, model, hostile, tmp_path):
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    res = classify(model, hostile, local, "--batch-articles", "8")
    assert res.exit_code == 0, res.output
    res = classify(model, hostile, distributed, "--batch-articles", "8", "--engine", "ray", "--workers", "2")
    assert res.exit_code == 0, res.output
    assert "2 Ray workers" in res.output
    want, got = records(local), records(distributed)
    assert sum(r["error"] is not None for r in want) >= 5  # the hostile inputs became error records
    assert sum(r["error"] is None for r in want) >= 50
    assert_same_records(got, want)


def test_ray_resume_completes_a_partial_output_without_redoing_it(ray_instance, model, hostile, tmp_path):
    ref = tmp_path / "ref.jsonl"
    assert classify(model, hostile, ref).exit_code == 0
    want = records(ref)
    lines = ref.read_text(encoding="utf-8").splitlines(keepends=True)
    done = [json.loads(line) for line in lines[:20]]
    marked = next(r for r in done if r["error"] is None)
    marked["n_tokens"] = -1  # a value no prediction makes: it survives only if the record is not redone
    out = tmp_path / "out.jsonl"
    torn = lines[20][: len(lines[20]) // 2]  # the driver was killed during a write
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done) + torn, encoding="utf-8")

    res = classify(model, hostile, out, "--engine", "ray", "--workers", "1", "--resume")
    assert res.exit_code == 0, res.output
    assert "20 already done" in res.output
    got = records(out)
    kept = next(r for r in got if r["id"] == marked["id"])
    assert kept["n_tokens"] == -1
    kept["n_tokens"] = next(r for r in want if r["id"] == marked["id"])["n_tokens"]
    assert_same_records(got, want)


def test_missing_ray_says_how_to_install_it(model, hostile, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    out = tmp_path / "p.jsonl"
    res = classify(model, hostile, out, "--engine", "ray")
    assert res.exit_code == 1
    assert 'pip install "sikap[ray]"' in " ".join(res.output.split())
    assert not out.exists()  # refused before anything was written
    assert classify(model, hostile, out).exit_code == 0  # the local engine never imports ray


@pytest.mark.parametrize(
    ("cpus", "gpus", "workers", "threads", "plan"),
    [
        (2, 0, 2, None, Plan(2, 1, 0.0)),  # --workers 2 on a 2-core machine
        (16, 0, None, None, Plan(4, 4, 0.0)),  # a model copy per 4 cores, not per core
        (2, 0, None, None, Plan(1, 2, 0.0)),
        (16, 0, 4, None, Plan(4, 4, 0.0)),
        (16, 0, None, 4, Plan(4, 4, 0.0)),
        (32, 4, None, None, Plan(4, 8, 1.0)),  # one actor per GPU
        (32, 2, 4, 2, Plan(4, 2, 0.5)),  # more actors than GPUs share them
    ],
)
def test_plan_workers(cpus, gpus, workers, threads, plan):
    assert plan_workers(cpus, gpus, workers, threads) == plan


def test_driver_killed_mid_run_then_resume_equals_the_local_output(ray_instance, model, tmp_path):
    """kill -9 of a driver that joined the cluster (--address), then --resume: nothing lost, nothing twice."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, r in enumerate(synthetic_records(200, seed=23)):
        (folder / f"a{i:04d}.txt").write_text(f"{r['title']}\n{r['text']}", encoding="utf-8")
    ref = tmp_path / "ref.jsonl"
    assert classify(model, folder, ref, "--batch-articles", "4").exit_code == 0

    out = tmp_path / "out.jsonl"
    address = ray.get_runtime_context().gcs_address  # the module's instance outlives the killed driver
    cmd = [
        sys.executable,
        "-m",
        "sikap",
        "classify",
        str(model),
        str(folder),
        "-o",
        str(out),
        "--no-progress",
        "--precision",
        "fp32",
        "--batch-articles",
        "4",
        "--engine",
        "ray",
        "--address",
        address,
        "--workers",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed, deadline = False, time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait()
    assert killed, "the run finished before it could be killed"
    written = len(out.read_text(encoding="utf-8").splitlines())
    assert 0 < written < 200

    res = classify(model, folder, out, "--batch-articles", "4", "--engine", "ray", "--workers", "1", "--resume")
    assert res.exit_code == 0, res.output
    got = records(out)
    assert len({r["id"] for r in got}) == len(got) == 200
    assert_same_records(got, records(ref))
