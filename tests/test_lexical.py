"""The lexical model (TF-IDF + logistic regression): fitting, blending, storage without pickle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import ACTORS, TOPIC_WORDS, synthetic_records, tiny_config_dict, write_jsonl

from sikap.calibration import apply_temperature, head_temperatures
from sikap.config import config_from_dict
from sikap.inference.predict import Predictor
from sikap.lexical import LEXICAL_JSON, LEXICAL_WEIGHTS, LexicalModel
from sikap.modeldir import ModelDirError, load_model_dir, meta_from_config
from sikap.training.data import load_records
from sikap.training.lexical import choose_weight, fit_lexical
from sikap.training.trainer import train


def _meta_and_records(tmp_path, n=120, seed=2, multi_label=False):
    tr = write_jsonl(tmp_path / "train.jsonl", synthetic_records(n, seed=seed))
    raw = tiny_config_dict(tmp_path, tr, None, tmp_path / "run")
    raw["labels"]["topics"]["multi_label"] = multi_label
    cfg = config_from_dict(raw)
    return meta_from_config(cfg), load_records(tr, cfg), cfg


@pytest.mark.parametrize("multi_label", [False, True])
def test_lexical_model_learns_keywords_and_round_trips(tmp_path, multi_label):
    meta, records, cfg = _meta_and_records(tmp_path, multi_label=multi_label)
    lex = fit_lexical(records, meta, seed=0)
    assert lex is not None and lex.topics is not None and set(lex.stance) == {0, 1} and lex.generic is not None
    test = load_records(write_jsonl(tmp_path / "test.jsonl", synthetic_records(60, seed=5)), cfg)
    texts = [r.text for r in test]
    topics, stance = lex.predict(texts, n_actors=2)
    names = meta["topics"]["names"]
    acc = np.mean([names[int(np.argmax(p))] == r.topics[0] for p, r in zip(topics, test, strict=True)])
    assert acc > 0.9  # topic keywords are a bag-of-words task
    if not multi_label:
        assert np.allclose(topics.sum(1), 1.0)
    assert stance[0].shape == (60, 3) and np.allclose(stance[0].sum(1), 1.0)

    lex.save(tmp_path)
    back = LexicalModel.load(tmp_path)
    t2, s2 = back.predict(texts, n_actors=2)
    assert np.allclose(topics, t2, atol=1e-6)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(stance, s2, strict=True))
    # nothing is pickled: the files are JSON and safetensors
    json.loads((tmp_path / LEXICAL_JSON).read_text(encoding="utf-8"))
    assert (tmp_path / LEXICAL_WEIGHTS).read_bytes()[8:9] == b"{"  # safetensors header


def test_added_actors_use_the_generic_head(tmp_path):
    meta, records, _ = _meta_and_records(tmp_path)
    lex = fit_lexical(records, meta, seed=0)
    texts = ["media mendukung Rusia", "media mengecam NATO"]
    _, stance = lex.predict(texts, n_actors=3)  # actor 2 was not trained
    assert np.allclose(stance[2], lex.generic.proba(lex.transform(texts)))


def test_choose_weight_prefers_the_better_side():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=200)
    good = np.full((200, 3), 0.05)
    good[np.arange(200), y] = 0.9
    noise = rng.dirichlet(np.ones(3), size=200)
    assert choose_weight(good, noise, y, multi_label=False)[0] >= 0.8
    assert choose_weight(noise, good, y, multi_label=False)[0] <= 0.2
    yml = (rng.random((200, 4)) < 0.3).astype(float)
    assert choose_weight(np.clip(yml, 0.05, 0.95), rng.random((200, 4)), yml, multi_label=True)[0] >= 0.8


def test_damaged_lexical_files_are_refused_with_the_file_named(tmp_path):
    meta, records, _ = _meta_and_records(tmp_path)
    fit_lexical(records, meta, seed=0).save(tmp_path)
    doc = json.loads((tmp_path / LEXICAL_JSON).read_text(encoding="utf-8"))
    doc["vectorizers"][0]["vocabulary"] = doc["vectorizers"][0]["vocabulary"][:-3]
    (tmp_path / LEXICAL_JSON).write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match=LEXICAL_JSON):
        LexicalModel.load(tmp_path)
    (tmp_path / LEXICAL_WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="lexical"):
        LexicalModel.load(tmp_path)


@pytest.fixture(scope="module")
def trained_lexical(tiny_backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("lex")
    tr = write_jsonl(root / "train.jsonl", synthetic_records(120, seed=2))
    dev = write_jsonl(root / "dev.jsonl", synthetic_records(40, seed=3))
    cfg = config_from_dict(tiny_config_dict(tiny_backbone, tr, dev, root / "run", epochs=1))
    logs: list[str] = []
    result = train(cfg, progress=False, log=logs.append)
    return result, logs


def test_training_saves_the_lexical_model_and_the_blend(trained_lexical, tmp_path):
    result, logs = trained_lexical
    files = {p.name for p in result.output_dir.iterdir()}
    assert {LEXICAL_JSON, LEXICAL_WEIGHTS} <= files
    loaded = load_model_dir(result.output_dir)
    assert loaded.lexical is not None and loaded.meta["lexical"] is True
    blend = loaded.meta["blend"]
    assert 0.0 <= blend["topics"] <= 1.0 and 0.0 <= blend["stance"] <= 1.0 and blend["dev_log_loss"]["stance"]
    assert any(line.startswith("blend:") for line in logs)
    # one epoch on a random tiny encoder is weak: the keyword-driven lexical model must get a share
    assert blend["topics"] < 1.0
    # save -> copy -> load: identical blended predictions
    copy = tmp_path / "copy"
    shutil.copytree(result.output_dir, copy)
    other = load_model_dir(copy)
    texts = [r["text"] for r in synthetic_records(10, seed=9)]
    pa = Predictor(loaded.model, loaded.builder, loaded.meta, precision="fp32", lexical=loaded.lexical).predict(texts)
    pb = Predictor(other.model, other.builder, other.meta, precision="fp32", lexical=other.lexical).predict(texts)
    for x, y in zip(pa, pb, strict=True):
        assert np.array_equal(x.topic_probs, y.topic_probs) and x.stances == y.stances


def test_blend_weight_zero_gives_the_lexical_probabilities(trained_lexical):
    result, _ = trained_lexical
    loaded = load_model_dir(result.output_dir)
    meta = {**loaded.meta, "blend": {"topics": 0.0, "stance": 0.0}}
    texts = [r["text"] for r in synthetic_records(8, seed=11)]
    pred = Predictor(loaded.model, loaded.builder, meta, precision="fp32", lexical=loaded.lexical).predict(texts)
    lex_t, lex_s = loaded.lexical.predict(texts, len(ACTORS))
    # the blend itself (before the head temperatures), then the calibrated probabilities classify reports
    temps = head_temperatures(meta)
    assert np.allclose([p.raw_topic_probs for p in pred], lex_t, atol=1e-6)
    cal_t = apply_temperature(lex_t, temps["topics"], multi_label=False)
    assert np.allclose([p.topic_probs for p in pred], cal_t, atol=1e-6)
    for i, p in enumerate(pred):
        for k, sp in enumerate(p.raw_stance_probs):
            if sp is not None:
                assert np.allclose(sp, lex_s[k][i], atol=1e-6)
                cal = apply_temperature(lex_s[k][i], temps["stance"], multi_label=False)
                assert np.allclose(p.stance_probs[k], cal, atol=1e-6)
    assert len(TOPIC_WORDS) == len(pred[0].topic_probs)


def test_lexical_files_missing_from_a_model_dir_are_an_error(trained_lexical, tmp_path):
    result, _ = trained_lexical
    copy = tmp_path / "copy"
    shutil.copytree(result.output_dir, copy)
    (copy / LEXICAL_WEIGHTS).unlink()
    with pytest.raises(ModelDirError, match="lexical"):
        load_model_dir(copy)


def test_temperature_sharpens_an_under_confident_model_and_is_saved(tmp_path):
    from sikap.lexical import set_temperature
    from sikap.training.lexical import choose_temperature, rescale

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=300)
    p = np.full((300, 3), 0.3)
    p[np.arange(300), y] = 0.4  # right but timid
    t = choose_temperature(p, y, multi_label=False)
    assert t < 0.5
    sharp = rescale(p, t, multi_label=False)
    assert np.allclose(sharp.sum(1), 1.0) and sharp[np.arange(300), y].mean() > 0.9
    assert np.allclose(rescale(p, 1.0, multi_label=False), p / p.sum(1, keepdims=True))

    meta, records, _ = _meta_and_records(tmp_path)
    lex = fit_lexical(records, meta, seed=0)
    texts = [r.text for r in records[:5]]
    before = lex.predict(texts, 2)[1][0]
    set_temperature(lex, "stance", 0.25)
    after = lex.predict(texts, 2)[1][0]
    assert np.all(after.max(1) >= before.max(1) - 1e-9)
    lex.save(tmp_path)
    assert np.allclose(LexicalModel.load(tmp_path).predict(texts, 2)[1][0], after)
