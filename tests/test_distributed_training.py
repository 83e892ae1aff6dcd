"""`torchrun --nproc_per_node 2 -m sikap train`: DDP on CPU (gloo) gives one model dir, scored like one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.config import load_config
from sikap.training.distributed import ddp_backend, resolve_device

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(root, backbone, name, batch_size):
    cfg = tiny_config_dict(
        backbone, root / "train.jsonl", root / "dev.jsonl", root / name, epochs=4, batch_size=batch_size, lexical=False
    )
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_two_cpu_processes_train_like_one_with_the_same_global_batch(tiny_backbone, tmp_path):
    records = synthetic_records(160, seed=5)
    write_jsonl(tmp_path / "train.jsonl", records[:128])
    write_jsonl(tmp_path / "dev.jsonl", records[128:])

    single = write_config(tmp_path, tiny_backbone, "single", batch_size=8)
    res = runner.invoke(app, ["train", str(single), "--no-progress"])
    assert res.exit_code == 0, res.output

    ddp = write_config(tmp_path, tiny_backbone, "ddp", batch_size=4)  # 4 per process x 2 processes = 8
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "sikap",
        "train",
        str(ddp),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("model saved to") == 1  # rank 0 reports, once
    assert proc.stdout.count("data: 128 train, 32 dev records") == 1

    one = json.loads((tmp_path / "single" / "sikap.json").read_text())
    two = json.loads((tmp_path / "ddp" / "sikap.json").read_text())
    assert two["training"]["processes"] == 2 and one["training"]["processes"] == 1
    assert two["training"]["steps"] == one["training"]["steps"] == 64  # 128 records / global batch 8 x 4 epochs
    assert not (tmp_path / "ddp" / "checkpoints").exists()
    a, b = one["dev_metrics"], two["dev_metrics"]
    assert abs(a["score"] - b["score"]) <= 0.1, (a["score"], b["score"])
    assert abs(a["stance"]["macro_f1"] - b["stance"]["macro_f1"]) <= 0.1, (a["stance"], b["stance"])


def test_device_setting(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="no GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert ddp_backend("cuda") is None  # one process: no process group
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (ddp_backend("cpu"), ddp_backend("cuda")) == ("gloo", "nccl")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, tmp_path / "t.jsonl", None, tmp_path / "o")))
    assert load_config(cfg, ["train.device=cpu"]).train.device.value == "cpu"
    with pytest.raises(ValueError, match="device"):
        load_config(cfg, ["train.device=tpu"])


def test_python_dash_m_sikap_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "sikap", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("sikap ")
