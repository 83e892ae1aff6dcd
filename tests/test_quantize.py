"""Smoothed int8 (sikap.quantize): exact in fp32, closer to fp32 than plain int8 where inputs have
outlier channels, calibrated at training time, and saved/loaded with the model dir."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import synthetic_records, train_small_model
from typer.testing import CliRunner

from sikap.modeldir import ModelDirError, load_model_dir
from sikap.predict import Predictor
from sikap.quantize import (
    INT8_CALIBRATION,
    SmoothedInput,
    int8_targets,
    quantize_int8,
    smoothing_scale,
)

runner = CliRunner()


class Wrap(torch.nn.Module):
    """Stands in for a SikapModel: ``member_models`` sees one member with an ``encoder``."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


def outlier_inputs(n: int = 256, d: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[:, 3] *= 40.0  # one channel 40x the others, as the FFN down-projection's input has in e5-small
    return x


def test_smoothing_is_exact_in_fp32():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = outlier_inputs()
    ref = lin(x)
    s = smoothing_scale(x.abs().amax(0), lin.weight, 0.85)
    smoothed = copy.deepcopy(lin)
    with torch.no_grad():
        smoothed.weight.mul_(s)
    out = SmoothedInput(1.0 / s, smoothed)(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_smoothed_int8_is_closer_to_fp32_than_plain_int8():
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(64, 32))
    x = outlier_inputs()
    ref = enc(x)
    plain = quantize_int8(Wrap(copy.deepcopy(enc)), calibration={})
    cal = {"0/0": x.abs().amax(0)}
    smooth = quantize_int8(Wrap(copy.deepcopy(enc)), calibration=cal, alpha=0.85)
    assert isinstance(smooth.encoder[0], SmoothedInput)
    err_plain = (plain.encoder(x) - ref).abs().mean().item()
    err_smooth = (smooth.encoder(x) - ref).abs().mean().item()
    assert err_smooth < 0.5 * err_plain, (err_smooth, err_plain)


def test_keep_fp32_leaves_named_layers_unquantized():
    enc = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    assert int8_targets(enc) == ["0", "2"]
    assert int8_targets(enc, [r"^2$"]) == ["0"]
    q = quantize_int8(Wrap(enc), [r"^2$"], calibration={})
    assert type(q.encoder[2]) is torch.nn.Linear
    assert type(q.encoder[0]) is not torch.nn.Linear  # a dynamic quantized Linear


@pytest.fixture(scope="module")
def model_dir(tiny_backbone, tmp_path_factory):
    return train_small_model(tiny_backbone, tmp_path_factory.mktemp("quantize"), n=40, seed=3, max_steps=6)


def test_training_saves_calibration_for_every_encoder_linear(model_dir):
    meta = json.loads((model_dir / "sikap.json").read_text())
    info = meta["int8_calibration"]
    assert info["file"] == INT8_CALIBRATION and info["articles"] > 0 and 0 < info["alpha"] <= 1
    loaded = load_model_dir(model_dir)
    cal = loaded.model.int8_calibration
    names = int8_targets(loaded.model.encoder)
    assert sorted(cal) == sorted(f"0/{n}" for n in names)
    for n in names:
        v = cal[f"0/{n}"]
        assert v.shape == (loaded.model.encoder.get_submodule(n).in_features,)
        assert torch.all(v >= 0) and torch.any(v > 0)


def _probs(loaded, texts, precision):
    pred = Predictor(copy.deepcopy(loaded.model), loaded.builder, loaded.meta, precision=precision,
                     lexical=loaded.lexical)  # fmt: skip
    t, s, m, _ = pred.probabilities(texts)
    return np.concatenate([t.ravel(), s[m.numpy().astype(bool)].ravel()])


def test_int8_predictions_round_trip_and_use_the_calibration(model_dir):
    texts = [f"{r['title']}\n\n{r['text']}" for r in synthetic_records(6, seed=11)]
    first, second = load_model_dir(model_dir), load_model_dir(model_dir)
    a, b = _probs(first, texts, "int8"), _probs(second, texts, "int8")
    np.testing.assert_array_equal(a, b)  # save -> load -> identical int8 predictions
    q = quantize_int8(copy.deepcopy(first.model))
    assert any(isinstance(m, SmoothedInput) for m in q.encoder.modules())


def test_damaged_or_missing_calibration_is_a_model_dir_error(model_dir, tmp_path):
    import shutil

    out = tmp_path / "m"
    shutil.copytree(model_dir, out)
    (out / INT8_CALIBRATION).write_bytes(b"not safetensors")
    with pytest.raises(ModelDirError, match="int8 calibration"):
        load_model_dir(out)
    (out / INT8_CALIBRATION).unlink()
    with pytest.raises(ModelDirError, match="missing"):
        load_model_dir(out)


def test_round_to_saved_dtype_is_the_saved_weights():
    """After training, weights are rounded to save_dtype in place before anything is measured on them,
    so dev scores, thresholds, calibration and the precision check describe the saved model."""
    from sikap.modeldir import round_to_saved_dtype

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.LayerNorm(8))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    round_to_saved_dtype(m, "float16")
    for k, v in m.state_dict().items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, before[k].half().float(), rtol=0, atol=0)
    assert any(not torch.equal(m.state_dict()[k], before[k]) for k in before)  # something was rounded
    again = {k: v.clone() for k, v in m.state_dict().items()}
    round_to_saved_dtype(m, "float16")  # idempotent: saving changes nothing more
    assert all(torch.equal(m.state_dict()[k], again[k]) for k in again)
    round_to_saved_dtype(m, "float32")
    assert all(torch.equal(m.state_dict()[k], again[k]) for k in again)
