"""Temperature scaling: metrics by hand, fitting on toy sets, storage in sikap.json, classify and evaluate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from typer.testing import CliRunner

from sikap.calibration import UNCERTAIN, apply_temperature, head_temperatures
from sikap.cli import app
from sikap.training.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability_bins,
)

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


# ---------------------------------------------------------------- pure functions


def test_ece_and_brier_by_hand():
    # two articles, both 0.9 sure of class 0; one is right: bin (0.8, 0.9] has confidence 0.9, frequency 0.5
    p = np.array([[0.9, 0.1], [0.9, 0.1]])
    y = np.array([0, 1])
    assert expected_calibration_error(p, y, multi_label=False) == pytest.approx(0.4)
    assert brier_score(p, y, multi_label=False) == pytest.approx(((0.01 + 0.01) + (0.81 + 0.81)) / 2)
    bins = reliability_bins(p, y, multi_label=False)
    assert bins["count"][8] == 2 and sum(bins["count"]) == 2
    assert bins["confidence"][8] == pytest.approx(0.9) and bins["frequency"][8] == pytest.approx(0.5)
    assert bins["confidence"][0] is None  # empty bins: JSON null, not NaN


def test_multi_label_ece_scores_every_article_topic_pair():
    # pairs at 0.2 (1 of 2 positive) and 0.8 (2 of 2 positive): |0.5-0.2|*2/4 + |1-0.8|*2/4
    p = np.array([[0.2, 0.8], [0.2, 0.8]])
    y = np.array([[1, 1], [0, 1]])
    assert expected_calibration_error(p, y, multi_label=True) == pytest.approx(0.3 * 0.5 + 0.2 * 0.5)
    assert brier_score(p, y, multi_label=True) == pytest.approx((0.64 + 0.04 + 0.04 + 0.04) / 4)


def test_apply_temperature_is_logit_scaling_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 4))
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    ez = np.exp(z / 2.5)
    assert np.allclose(apply_temperature(soft, 2.5, multi_label=False), ez / ez.sum(1, keepdims=True))
    assert np.allclose(apply_temperature(1 / (1 + np.exp(-z)), 0.5, multi_label=True), 1 / (1 + np.exp(-z / 0.5)))
    assert (apply_temperature(soft, 0.3, multi_label=False).argmax(1) == soft.argmax(1)).all()
    assert apply_temperature(soft, 1.0, multi_label=False) is soft


def _overconfident(n: int, seed: int, scale: float = 3.0):
    """A model whose logits are ``scale`` times the true ones: labels drawn from softmax(z), probs softmax(3z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.2, size=(n, 3))
    true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in true])
    e = np.exp(scale * z)
    return e / e.sum(1, keepdims=True), y


@pytest.mark.parametrize("scale", [3.0, 0.4])  # over- and under-confident
def test_fitted_temperature_lowers_ece_on_held_out_data(scale):
    p_dev, y_dev = _overconfident(600, seed=1, scale=scale)
    p_test, y_test = _overconfident(2000, seed=2, scale=scale)
    t = fit_temperature(p_dev, y_dev, multi_label=False)
    assert t == pytest.approx(scale, rel=0.25)  # recovers the distortion
    cal = apply_temperature(p_test, t, multi_label=False)
    before = expected_calibration_error(p_test, y_test, multi_label=False)
    after = expected_calibration_error(cal, y_test, multi_label=False)
    assert after < before / 2
    assert brier_score(cal, y_test, multi_label=False) < brier_score(p_test, y_test, multi_label=False)
    assert log_loss(cal, y_test, multi_label=False) < log_loss(p_test, y_test, multi_label=False)


def test_fitted_temperature_lowers_multi_label_ece():
    rng = np.random.default_rng(3)
    z = rng.normal(scale=1.5, size=(800, 4))
    y = (rng.random((800, 4)) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-4 * z))  # over-confident sigmoids
    t = fit_temperature(p[:400], y[:400], multi_label=True)
    assert t > 2
    cal = apply_temperature(p[400:], t, multi_label=True)
    assert expected_calibration_error(cal, y[400:], multi_label=True) < expected_calibration_error(
        p[400:], y[400:], multi_label=True
    )


def test_a_calibrated_model_keeps_temperature_near_one():
    p, y = _overconfident(3000, seed=4, scale=1.0)
    assert fit_temperature(p, y, multi_label=False) == pytest.approx(1.0, abs=0.15)


def test_old_meta_has_temperature_one():
    assert head_temperatures({"topics": {"names": ["a"]}, "stance": None}) == {"topics": 1.0, "stance": 1.0}


# ---------------------------------------------------------------- through train, classify, evaluate


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    write_jsonl(root / "train.jsonl", synthetic_records(60, seed=4))
    for name, n, seed in (("dev", 30, 6), ("test", 20, 5)):
        recs = synthetic_records(n, seed=seed)
        for r in recs:
            r["id"] = f"{name}-{r['id']}"  # ids unique across splits
        write_jsonl(root / f"{name}.jsonl", recs)
    cfg = tiny_config_dict(tiny_backbone, root / "train.jsonl", root / "dev.jsonl", root / "run", epochs=2)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    invoke("train", root / "cfg.yaml", "--set", "train.max_steps=12", "--no-progress")
    articles = root / "articles"
    articles.mkdir()
    for i, r in enumerate(synthetic_records(10, seed=9)):
        (articles / f"a{i}.txt").write_text(f"{r['title']}\n\n{r['text']}", encoding="utf-8")
    return root


def _with_temperatures(src, dst, topics: float | None, stance: float | None):
    """A copy of a model dir with other (or, for None, no) head temperatures in sikap.json."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "sikap.json").read_text())
    for head, t in (("topics", topics), ("stance", stance)):
        meta[head].pop("temperature", None)
        if t is not None:
            meta[head]["temperature"] = t
    (dst / "sikap.json").write_text(json.dumps(meta), encoding="utf-8")
    return dst


def _classify(model_dir, articles, out, *extra):
    invoke("classify", model_dir, articles, "-o", out, "--no-progress", *extra)
    return {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}


def test_train_stores_a_temperature_per_head(trained):
    meta = json.loads((trained / "run" / "sikap.json").read_text())
    for head in ("topics", "stance"):
        t = meta[head]["temperature"]
        assert 0.05 <= t <= 20.0
        fit = meta["calibration"][head]
        assert fit["temperature"] == t and fit["n"] >= 10
        assert fit["dev_nll_after"] <= fit["dev_nll_before"] + 1e-5  # the fit never makes dev NLL worse


def test_classify_applies_the_stored_temperature(trained, tmp_path):
    base = _with_temperatures(trained / "run", tmp_path / "t1", None, None)  # an old dir: no temperature
    hot = _with_temperatures(trained / "run", tmp_path / "t4", 4.0, 0.5)
    raw = _classify(base, trained / "articles", tmp_path / "raw.jsonl")
    cal = _classify(hot, trained / "articles", tmp_path / "cal.jsonl")
    assert raw.keys() == cal.keys() and len(raw) == 10
    for i, r in raw.items():
        p0 = np.array(list(r["topic_probs"].values()))
        p1 = np.array(list(cal[i]["topic_probs"].values()))
        assert np.allclose(p1, apply_temperature(p0, 4.0, multi_label=False), atol=1e-4)
        assert r["topics"] == cal[i]["topics"]  # a temperature never changes the ranking
        for actor, s in r["stances"].items():
            c = cal[i]["stances"][actor]
            assert s["label"] == c["label"]
            if s["probs"] is not None:
                p0 = np.array(list(s["probs"].values()))
                assert np.allclose(list(c["probs"].values()), apply_temperature(p0, 0.5, multi_label=False), atol=1e-4)
    # the trained dir applies its own fitted temperatures
    meta = json.loads((trained / "run" / "sikap.json").read_text())
    own = _classify(trained / "run", trained / "articles", tmp_path / "own.jsonl")
    p0 = np.array([list(r["topic_probs"].values()) for r in raw.values()])
    t = meta["topics"]["temperature"]
    assert np.allclose(
        [list(own[i]["topic_probs"].values()) for i in raw], apply_temperature(p0, t, multi_label=False), atol=1e-4
    )


def test_min_confidence_labels_low_confidence_decisions_uncertain(trained, tmp_path):
    model = _with_temperatures(trained / "run", tmp_path / "t1", None, None)  # spread-out probabilities
    plain = _classify(model, trained / "articles", tmp_path / "plain.jsonl")
    tops = sorted(max(r["topic_probs"].values()) for r in plain.values())
    gap, k = max((tops[k + 1] - tops[k], k) for k in range(2, len(tops) - 3))  # a clear cut near the middle
    assert gap > 1e-4
    p = (tops[k] + tops[k + 1]) / 2
    expected = k + 1
    out = _classify(model, trained / "articles", tmp_path / "mc.jsonl", "--min-confidence", p)
    n_uncertain = 0
    for i, r in out.items():
        assert r["topic_probs"] == plain[i]["topic_probs"]  # probabilities kept
        if max(r["topic_probs"].values()) < p:
            assert r["topics"] == [UNCERTAIN]
            n_uncertain += 1
        else:
            assert r["topics"] == plain[i]["topics"]
        for actor, s in r["stances"].items():
            assert s["probs"] == plain[i]["stances"][actor]["probs"]
            if s["probs"] is None:
                assert s["label"] == "not_mentioned"
            elif max(s["probs"].values()) < p:
                assert s["label"] == UNCERTAIN
            else:
                assert s["label"] == plain[i]["stances"][actor]["label"]
    assert n_uncertain == expected


def test_min_confidence_leaves_multi_label_topics_alone(trained):
    from sikap.modeldir import load_model_dir
    from sikap.predict import Predictor

    loaded = load_model_dir(trained / "run")
    meta = {**loaded.meta, "topics": {**loaded.meta["topics"], "multi_label": True, "thresholds": None}}
    pred = Predictor(loaded.model, loaded.builder, meta, precision="fp32", min_confidence=0.99)
    assert pred.decide_topics(np.array([0.6, 0.1, 0.55])) == ["ekonomi", "pemilu"]
    single = Predictor(loaded.model, loaded.builder, loaded.meta, precision="fp32", min_confidence=0.99)
    assert single.decide_topics(np.array([0.6, 0.1, 0.3])) == [UNCERTAIN]
    assert single.decide_stance(np.array([0.5, 0.3, 0.2])) == UNCERTAIN
    assert single.decide_stance(None) == "not_mentioned"


def test_min_confidence_refuses_a_model_with_an_uncertain_label(trained, tmp_path):
    copy = _with_temperatures(trained / "run", tmp_path / "m", None, None)
    meta = json.loads((copy / "sikap.json").read_text())
    meta["topics"]["names"][0] = UNCERTAIN
    (copy / "sikap.json").write_text(json.dumps(meta), encoding="utf-8")
    res = runner.invoke(
        app,
        [
            "classify",
            str(copy),
            str(trained / "articles"),
            "-o",
            str(tmp_path / "x.jsonl"),
            "--min-confidence",
            "0.5",
            "--no-progress",
        ],
    )
    assert res.exit_code == 1 and "uncertain" in res.output


def test_evaluate_reports_calibration_before_and_after(trained, tmp_path):
    invoke("evaluate", trained / "run", trained / "test.jsonl", "-o", tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    meta = json.loads((trained / "run" / "sikap.json").read_text())
    cal = metrics["calibration"]
    for head in ("topics", "stance"):
        c = cal[head]
        for key in ("ece_before", "ece_after", "brier_before", "brier_after"):
            assert 0.0 <= c[key] <= 2.0
        assert c["temperature"] == meta[head]["temperature"]
        assert sum(c["reliability_before"]["count"]) == c["n"] == sum(c["reliability_after"]["count"])
    assert cal["topics"]["n"] == 20
    report = (tmp_path / "report.md").read_text()
    assert "## Calibration" in report and f"{cal['stance']['ece_after']:.4f}" in report


def test_evaluate_on_an_old_model_dir_reports_no_change(trained, tmp_path):
    old = _with_temperatures(trained / "run", tmp_path / "old", None, None)
    invoke("evaluate", old, trained / "test.jsonl", "-o", tmp_path / "eval")
    cal = json.loads((tmp_path / "eval" / "metrics.json").read_text())["calibration"]
    for head in ("topics", "stance"):
        assert cal[head]["temperature"] == 1.0
        assert cal[head]["ece_before"] == cal[head]["ece_after"]
        assert cal[head]["brier_before"] == cal[head]["brier_after"]


def test_multi_label_thresholds_are_tuned_on_calibrated_probabilities(tiny_backbone, tmp_path):
    from sikap.config import config_from_dict
    from sikap.modeldir import load_model_dir
    from sikap.predict import Predictor
    from sikap.training.data import load_records
    from sikap.training.dataset import label_arrays
    from sikap.training.metrics import tune_thresholds
    from sikap.training.trainer import predict_records, train

    write_jsonl(tmp_path / "train.jsonl", synthetic_records(48, seed=4))
    dev = synthetic_records(24, seed=6)
    for r in dev:
        r["id"] = f"dev-{r['id']}"
    write_jsonl(tmp_path / "dev.jsonl", dev)
    # encoder only: the saved model then gives exactly the dev probabilities the thresholds were tuned on
    raw = tiny_config_dict(
        tiny_backbone, tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "run", max_steps=8, lexical=False
    )
    raw["labels"]["topics"]["multi_label"] = True
    cfg = config_from_dict(raw)
    train(cfg, progress=False, log=lambda m: None)
    loaded = load_model_dir(tmp_path / "run")
    t = loaded.meta["topics"]["temperature"]
    assert t != 1.0 and loaded.meta["calibration"]["topics"]["n"] == 24
    preds = predict_records(
        Predictor(loaded.model, loaded.builder, loaded.meta, precision="fp32"),
        load_records(tmp_path / "dev.jsonl", cfg),
    )
    y, _ = label_arrays(load_records(tmp_path / "dev.jsonl", cfg), loaded.meta)
    calibrated = np.array([p.topic_probs for p in preds])
    assert np.allclose(calibrated, apply_temperature(np.array([p.raw_topic_probs for p in preds]), t, multi_label=True))
    names = loaded.meta["topics"]["names"]
    assert [loaded.meta["topics"]["thresholds"][n] for n in names] == tune_thresholds(calibrated, y)


def test_a_damaged_temperature_is_refused(trained, tmp_path):
    from sikap.modelmeta import ModelDirError, check_model_dir

    copy = _with_temperatures(trained / "run", tmp_path / "bad", 0.0, None)
    with pytest.raises(ModelDirError, match="topics.temperature"):
        check_model_dir(copy)
