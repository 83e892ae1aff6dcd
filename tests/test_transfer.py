"""Intermediate-task transfer: a sikap model directory as the backbone of a new model."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import synthetic_records, tiny_config_dict, write_jsonl

from sikap.config import config_from_dict
from sikap.modeldir import encoder_from_model_dir, load_model_dir, resolve_backbone_spec
from sikap.training.trainer import train


def test_a_model_dir_is_a_backbone(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("SIKAP_CACHE", str(tmp_path / "cache"))
    tr = write_jsonl(tmp_path / "train.jsonl", synthetic_records(40, seed=2))
    first = config_from_dict(tiny_config_dict(tiny_backbone, tr, None, tmp_path / "first", epochs=1))
    train(first, progress=False, log=lambda *_: None)
    exported = Path(resolve_backbone_spec(str(tmp_path / "first")))
    assert exported.is_relative_to(tmp_path / "cache")
    assert (exported / "config.json").is_file() and (exported / "tokenizer.json").is_file()
    assert encoder_from_model_dir(tmp_path / "first") == exported  # cached by content

    from transformers import AutoModel

    enc = AutoModel.from_pretrained(str(exported))
    ref = load_model_dir(tmp_path / "first").model.encoder
    for (name, a), (_, b) in zip(ref.state_dict().items(), enc.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # a second model trains from it
    second = config_from_dict(tiny_config_dict(tmp_path / "first", tr, None, tmp_path / "second", epochs=1))
    res = train(second, progress=False, log=lambda *_: None)
    assert res.steps > 0 and (tmp_path / "second" / "model.safetensors").is_file()
