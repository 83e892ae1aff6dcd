"""Checkpoint averaging (`train.average_last`): which epochs, the running mean, and the saved weights."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from safetensors.torch import load_file
from typer.testing import CliRunner

from sikap.cli import app
from sikap.config import ConfigError, config_from_dict
from sikap.training.averaging import CheckpointAveraging, RunningAverage, averaging_epochs, trainable

runner = CliRunner()


def test_averaging_epochs_are_the_last_n():
    assert averaging_epochs(20, 5) == {16, 17, 18, 19, 20}
    assert averaging_epochs(2.5, 2) == {2, 3}  # the partial third epoch is the last one
    assert averaging_epochs(3, 10) == {1, 2, 3}
    assert averaging_epochs(4, 0) == set()


def test_running_average_is_the_mean():
    avg = RunningAverage()
    xs = [torch.randn(3, 2) for _ in range(4)]
    for x in xs:
        avg.add({"w": x.to(torch.bfloat16).to(torch.float32)})
    expect = torch.stack([x.to(torch.bfloat16).to(torch.float32) for x in xs]).mean(0)
    assert avg.count == 4
    torch.testing.assert_close(avg.mean["w"], expect)


def test_average_last_needs_select_last(tiny_backbone, tmp_path):
    raw = tiny_config_dict(tiny_backbone, tmp_path / "t.jsonl", None, tmp_path / "run", average_last=3)
    with pytest.raises(ConfigError, match="average_last"):
        config_from_dict(raw)
    raw["train"]["select"] = "last"
    assert config_from_dict(raw).train.average_last == 3


def test_saved_weights_are_the_mean_of_the_last_epochs(tiny_backbone, tmp_path, monkeypatch):
    # record the weights at every epoch end, independently of the running mean under test
    snapshots: list[dict[str, torch.Tensor]] = []
    original = CheckpointAveraging.on_epoch_end

    def spy(self, args, state, control, model=None, **kwargs):
        snapshots.append({n: p.detach().float().clone() for n, p in trainable(model).items()})
        return original(self, args, state, control, model=model, **kwargs)

    monkeypatch.setattr(CheckpointAveraging, "on_epoch_end", spy)
    tr = write_jsonl(tmp_path / "train.jsonl", synthetic_records(48, seed=3))
    raw = tiny_config_dict(tiny_backbone, tr, None, tmp_path / "run", epochs=3, select="last", average_last=2)
    raw["model"]["save_dtype"] = "float32"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["train", str(tmp_path / "cfg.yaml"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "averaged over epochs [2, 3]" in result.output
    assert len(snapshots) == 3
    _, e2, e3 = snapshots
    saved = load_file(tmp_path / "run" / "model.safetensors")
    moved = 0
    for name in e3:
        w = saved[name].float()
        torch.testing.assert_close(w, (e2[name] + e3[name]) / 2, rtol=1e-5, atol=1e-6)
        moved += not torch.equal(e2[name], e3[name])
    assert moved > 0  # the two epochs differ, so the mean is neither of them
    assert not all(torch.equal(saved[n].float(), e3[n]) for n in e3)
