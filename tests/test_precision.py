"""`classify --precision auto`: bf16 where native, else int8 only if the training-time dev check allows it."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import synthetic_records, train_small_model, write_jsonl
from typer.testing import CliRunner

from sikap import predict
from sikap.cli import app
from sikap.precision import MAX_LOSS, choose_precision

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tiny_backbone, tmp_path_factory):
    return train_small_model(tiny_backbone, tmp_path_factory.mktemp("precision"), n=40, seed=3, max_steps=6)


def with_check(model_dir, tmp_path, check):
    """A copy of ``model_dir`` whose sikap.json carries ``check`` (None: the key removed, as in older dirs)."""
    out = tmp_path / "model"
    shutil.copytree(model_dir, out)  # tmp_path may not exist yet: copytree makes the parents
    meta = json.loads((out / "sikap.json").read_text())
    if check is None:
        meta.pop("precision_check")
    else:
        meta["precision_check"] = check
    (out / "sikap.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


def check(loss: float) -> dict:
    return {"fp32": {"topics": 0.9, "stance": 0.8}, "int8": {"topics": 0.9, "stance": 0.8 - loss, "loss": loss},
            "dev_records": 12}  # fmt: skip


def classify(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    r = synthetic_records(1, seed=8)[0]
    (folder / "a.txt").write_text(f"{r['title']}\n\n{r['text']}", encoding="utf-8")
    res = runner.invoke(app, ["classify", str(model), str(folder), "-o", str(tmp_path / "p.jsonl"), "--overwrite",
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return res.output


def test_training_records_the_check(model_dir):
    meta = json.loads((model_dir / "sikap.json").read_text())
    pc = meta["precision_check"]
    assert pc["dev_records"] == meta["data"]["dev"]["records"]
    for task in ("topics", "stance"):
        assert 0.0 <= pc["fp32"][task] <= 1.0 and 0.0 <= pc["int8"][task] <= 1.0
    worst = max(pc["fp32"][t] - pc["int8"][t] for t in ("topics", "stance"))
    assert pc["int8"]["loss"] == pytest.approx(worst, abs=1e-4)
    assert ("bf16" in pc) == predict.cpu_supports_bf16()


@pytest.mark.parametrize(
    ("bf16", "recorded", "expected", "why"),
    [
        (True, check(0.2), "bf16", "natively"),
        (False, check(0.003), "int8", "lost 0.003"),
        (False, check(0.2), "fp32", "would lose 0.200"),
        (False, None, "fp32", "no precision check"),
    ],
)
def test_auto_picks_by_cpu_and_recorded_check(monkeypatch, bf16, recorded, expected, why):
    monkeypatch.setattr(predict, "cpu_supports_bf16", lambda: bf16)
    meta = {"precision_check": recorded} if recorded else {}
    decision = choose_precision(meta)
    assert decision.precision == expected and why in decision.reason
    assert choose_precision(meta, "fp32").precision == "fp32"  # an explicit choice is kept


def test_the_threshold_is_inclusive(monkeypatch):
    monkeypatch.setattr(predict, "cpu_supports_bf16", lambda: False)
    assert choose_precision({"precision_check": check(MAX_LOSS)}).precision == "int8"
    assert choose_precision({"precision_check": check(MAX_LOSS + 0.001)}).precision == "fp32"


@pytest.mark.parametrize(
    ("bf16", "loss", "expected", "why"),
    [(False, 0.003, "int8", "lost 0.003"), (False, 0.2, "fp32", "would lose 0.200"), (True, 0.2, "bf16", "natively")],
)
def test_classify_prints_choice_and_reason(model_dir, tmp_path, monkeypatch, bf16, loss, expected, why):
    monkeypatch.setattr(predict, "cpu_supports_bf16", lambda: bf16)
    out = classify(with_check(model_dir, tmp_path, check(loss)), tmp_path)
    text = " ".join(out.split())  # rich wraps long lines
    assert f"precision: {expected} (" in text and why in text
    assert f"precision {expected});" in text  # and it ran at that precision


def test_old_model_dir_without_check_falls_back_to_fp32(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "cpu_supports_bf16", lambda: False)
    out = " ".join(classify(with_check(model_dir, tmp_path, None), tmp_path).split())
    assert "precision: fp32" in out and "no precision check" in out and "--precision int8" in out


def test_damaged_check_is_a_clear_error(model_dir, tmp_path):
    bad = with_check(model_dir, tmp_path, {"fp32": {"topics": "high"}, "dev_records": 3})
    res = runner.invoke(app, ["classify", str(bad), str(tmp_path), "-o", str(tmp_path / "p.jsonl"), "--no-progress"])
    assert res.exit_code == 1 and "precision_check.fp32.topics" in res.output


def test_evaluate_auto_decides_like_classify(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "cpu_supports_bf16", lambda: False)
    data = write_jsonl(tmp_path / "test.jsonl", synthetic_records(6, seed=12))
    for loss, expected in ((0.003, "int8"), (0.2, "fp32")):
        model = with_check(model_dir, tmp_path / str(loss), check(loss))
        res = runner.invoke(app, ["evaluate", str(model), str(data), "-o", str(tmp_path / "eval")])
        assert res.exit_code == 0, res.output
        assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["precision"] == expected


def test_a_process_restricted_to_avx2_kernels_has_no_native_bf16(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 (how a bf16 CPU measures the AVX2-only case) turns bf16 detection off."""
    import torch

    from sikap import predict

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert predict.cpu_supports_bf16()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not predict.cpu_supports_bf16()


def test_int8_fallback_keeps_ffn_down_projections_in_fp32_when_all_int8_loses_too_much(monkeypatch):
    """The training-time check tries int8 with the FFN down-projections in fp32 when all-int8 loses > 0.01,
    records that variant when it loses less, and auto/classify then use it."""
    from sikap.quantize import FFN_DOWN_FP32
    from sikap.training import precision_check as pc

    calls = []

    def fake_score(model, builder, meta, dev, lexical, precision, keep_fp32=()):
        calls.append((precision, tuple(keep_fp32)))
        if precision == "int8":
            return {"topics": 0.88 if not keep_fp32 else 0.895, "stance": 0.8}
        return {"topics": 0.9, "stance": 0.8}

    monkeypatch.setattr(pc, "_score", fake_score)
    monkeypatch.setattr(pc.predict, "cpu_supports_bf16", lambda: False)
    out = pc.check_precisions(None, None, {}, ["r"] * 5)
    assert ("int8", tuple(FFN_DOWN_FP32)) in calls
    assert out["int8"]["keep_fp32"] == list(FFN_DOWN_FP32)
    assert out["int8"]["loss"] == pytest.approx(0.005) and out["int8"]["all_layers_loss"] == pytest.approx(0.02)
    assert "FFN down-projections in fp32" in pc.describe(out)
    monkeypatch.setattr(predict, "cpu_supports_bf16", lambda: False)
    decision = choose_precision({"precision_check": out})
    assert decision.precision == "int8" and "FFN down-projections in fp32" in decision.reason
    # all-int8 within the limit: no fallback tried
    calls.clear()
    monkeypatch.setattr(pc, "_score", lambda *a, keep_fp32=(), **k: {"topics": 0.9, "stance": 0.8})
    out = pc.check_precisions(None, None, {}, ["r"] * 5)
    assert "keep_fp32" not in out["int8"]


def test_predictor_int8_leaves_the_recorded_layers_in_fp32(model_dir):
    import torch

    from sikap.modeldir import load_model_dir
    from sikap.quantize import FFN_DOWN_FP32

    loaded = load_model_dir(model_dir)
    meta = {**loaded.meta, "precision_check": {**loaded.meta["precision_check"]}}
    meta["precision_check"]["int8"] = {**meta["precision_check"]["int8"], "keep_fp32": list(FFN_DOWN_FP32)}
    pred = predict.Predictor(loaded.model, loaded.builder, meta, precision="int8", lexical=loaded.lexical)
    kinds = {n: type(m) for n, m in pred.model.encoder.named_modules()}
    down = [n for n in kinds if n.endswith("output.dense") and ".attention." not in n]
    assert down and all(kinds[n] is torch.nn.Linear for n in down)  # kept fp32
    up = [n for n in kinds if n.endswith("intermediate.dense")]
    assert up and all(kinds[n] is not torch.nn.Linear for n in up)  # quantized (smoothed wrapper)
