"""Seed ensembles: `sikap ensemble` packs model dirs into one that averages their logits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.ensemble import EnsembleModel
from sikap.features import flatten_features
from sikap.modeldir import build_model, load_model_dir
from sikap.predict import Predictor
from sikap.text import article_text

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    res = invoke(*args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def root(tiny_backbone, tmp_path_factory):
    """Two members (seeds 7 and 8) trained on the same train and dev files, and their ensemble."""
    root = tmp_path_factory.mktemp("ensemble")
    write_jsonl(root / "train.jsonl", synthetic_records(60, seed=4, long_every=6))
    write_jsonl(root / "dev.jsonl", [{**r, "id": f"d{r['id']}"} for r in synthetic_records(20, seed=6)])
    write_jsonl(root / "test.jsonl", [{**r, "id": f"t{r['id']}"} for r in synthetic_records(12, seed=5)])
    cfg = tiny_config_dict(tiny_backbone, root / "train.jsonl", root / "dev.jsonl", root / "m7", max_steps=10)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    for seed in (7, 8):
        ok(
            "train",
            root / "cfg.yaml",
            "--set",
            f"train.seed={seed}",
            "--set",
            f"output_dir={root}/m{seed}",
            "--no-progress",
        )
    res = ok("ensemble", root / "m7", root / "m8", "-o", root / "ens")
    assert "member 1" in res.output and "ensemble of 2" in res.output
    return root


def texts_of(path, n=6):
    return [article_text(r["title"], r["text"]) for r in map(json.loads, path.read_text().splitlines()[:n])]


def test_the_ensemble_dir_loads_with_both_members(root):
    ens = load_model_dir(root / "ens")
    assert isinstance(ens.model, EnsembleModel) and len(ens.model.members) == 2
    for member, src in zip(ens.model.members, ("m7", "m8"), strict=True):
        own = load_model_dir(root / src).model
        assert torch.equal(member.topic_head.weight, own.topic_head.weight)
    assert not torch.equal(ens.model.members[0].topic_head.weight, ens.model.members[1].topic_head.weight)
    meta = ens.meta
    assert [m["seed"] for m in meta["ensemble"]["members"]] == [7, 8]
    assert all(m["dev_metrics"]["stance"] is not None for m in meta["ensemble"]["members"])
    m7, m8 = (json.loads((root / d / "sikap.json").read_text()) for d in ("m7", "m8"))
    assert meta["stance"]["temperature"] == pytest.approx(
        (m7["stance"]["temperature"] + m8["stance"]["temperature"]) / 2, abs=1e-4
    )
    assert meta["blend"]["stance"] == pytest.approx((m7["blend"]["stance"] + m8["blend"]["stance"]) / 2)
    assert meta["dev_metrics"]["topics"]["n"] == 20 and meta["precision_check"]["dev_records"] == 20
    # a model dir without `ensemble` still loads as one model
    assert not isinstance(load_model_dir(root / "m7").model, EnsembleModel)


def test_logits_are_the_mean_of_the_members(root):
    """Through the model's forward (and the predictor's path): mean aggregation, so exactly the mean."""
    ens = load_model_dir(root / "ens")
    members = [load_model_dir(root / d) for d in ("m7", "m8")]
    feats = ens.builder.encode(texts_of(root / "test.jsonl"))
    batch = flatten_features(feats, ens.model.n_actors, ens.tokenizer.pad_token_id)
    batch["articles"] = torch.arange(len(feats))
    with torch.no_grad():
        out = ens.model(**batch)
        outs = [m.model(**batch) for m in members]
    for key in ("topic_logits", "stance_logits"):
        mean = torch.stack([o[key] for o in outs]).mean(0)
        assert torch.allclose(out[key], mean, atol=1e-5), key
        assert not torch.allclose(outs[0][key], outs[1][key], atol=1e-3)  # the members do differ
    pred = Predictor(ens.model, ens.builder, ens.meta, precision="fp32")
    topic, stance, mask, _ = pred.logits([""] * len(feats), feats)
    assert torch.allclose(topic, out["topic_logits"], atol=1e-5)
    assert torch.allclose(stance[mask], out["stance_logits"][mask], atol=1e-5)


def test_shared_mode_with_attention_averages_logits_and_token_shares(tiny_backbone, root):
    """The demo's stance mode: every item logit and token share is the members' mean."""
    from transformers import AutoModel

    meta = copy.deepcopy(load_model_dir(root / "m7").meta)
    meta["chunking"].update(stance_mode="shared", stance_pooling="attention", generic_actor=True)
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        m = build_model(AutoModel.from_pretrained(tiny_backbone), meta).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))  # distinct members, attention queries away from zero
        members.append(m)
    ens = EnsembleModel(members).eval()
    from sikap.modeldir import feature_builder, load_tokenizer

    builder = feature_builder(load_tokenizer(root / "m7"), meta)
    feats = builder.encode(texts_of(root / "test.jsonl"))
    batch = flatten_features(feats, ens.n_actors, 0)
    batch["articles"] = torch.arange(len(feats))
    with torch.no_grad():
        out, outs = ens(**batch), [m(**batch) for m in members]
        for key in ("topic_logits", "stance_logits"):
            assert torch.allclose(out[key], torch.stack([o[key] for o in outs]).mean(0), atol=1e-5), key
        hidden, _ = ens.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        args = (batch["stance_win"], batch["stance_actor"], batch["stance_positions"], batch["attention_mask"])
        shares = ens.stance_token_logits(hidden, *args)
        per = [
            m.stance_token_logits(
                m.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[0], *args
            )
            for m in members
        ]
        assert torch.allclose(shares, torch.stack(per).mean(0), atol=1e-5)


def test_classify_and_evaluate_work_on_the_ensemble(root, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, r in enumerate(synthetic_records(4, seed=9)):
        (folder / f"a{i}.txt").write_text(f"{r['title']}\n\n{r['text']}", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    ok("classify", root / "ens", folder, "-o", tmp_path / "p.jsonl", "--no-progress", "--precision", "fp32")
    recs = {r["id"]: r for r in map(json.loads, (tmp_path / "p.jsonl").read_text().splitlines())}
    assert set(recs) == {"a0.txt", "a1.txt", "a2.txt", "a3.txt", "empty.txt"}
    assert recs["empty.txt"]["error"]
    good = [r for r in recs.values() if not r.get("error")]
    assert all(r["topics"] and set(r["topic_evidence"]) == set(r["topics"]) for r in good)
    mentioned = [s for r in good for s in r["stances"].values() if s["label"] != "not_mentioned"]
    assert mentioned and all(s["evidence"]["text"] for s in mentioned)
    ok("evaluate", root / "ens", root / "test.jsonl", "-o", tmp_path / "ev")
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["data"]["records"] == 12 and 0.0 <= metrics["stance"]["macro_f1"] <= 1.0


def test_added_actor_and_int8_and_bf16_reach_every_member(root, tmp_path):
    from sikap.modeldir import add_actors

    ens = add_actors(load_model_dir(root / "ens"), [("Ukraina", ["Ukraina", "Kyiv"])])
    texts = ["Kyiv memuji langkah itu. " + texts_of(root / "test.jsonl", 1)[0]]
    for precision in ("int8", "bf16"):
        model = copy.deepcopy(ens.model)
        pred = Predictor(model, ens.builder, ens.meta, precision=precision)
        (p,) = pred.predict(texts)
        assert p.stance_probs[-1] is not None and p.stances[-1] in ens.meta["stance"]["classes"]
        for member in pred.model.members:
            if precision == "int8":
                from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

                modules = list(member.encoder.modules())
                assert any(isinstance(m, QuantizedLinear) for m in modules)
                assert not any(type(m) is torch.nn.Linear for m in modules)
            else:
                assert next(member.encoder.parameters()).dtype == torch.bfloat16


def test_a_distilled_student_starts_from_the_first_member(root, tmp_path):
    from sikap.training.distill import build_student

    ens = load_model_dir(root / "ens")
    student = build_student(ens, [1])
    assert torch.equal(student.topic_head.weight, ens.model.members[0].topic_head.weight)
    assert student.encoder.config.num_hidden_layers == 1
    # through the CLI: the student is an ordinary single model dir
    out = tmp_path / "student"
    ok(
        "distill",
        root / "ens",
        "--unlabeled",
        root / "test.jsonl",
        "-o",
        out,
        "--set",
        "train.max_steps=2",
        "--no-progress",
    )
    meta = json.loads((out / "sikap.json").read_text())
    assert "ensemble" not in meta and meta["distillation"]["teacher"] == str(root / "ens")
    assert not isinstance(load_model_dir(out).model, EnsembleModel)


def test_mismatched_or_too_few_members_are_refused(root, tmp_path):
    cfg = yaml.safe_load((root / "cfg.yaml").read_text())
    cfg["labels"]["stance"]["actors"][1]["aliases"].append("Kremlin")  # the same names, other aliases
    cfg["output_dir"] = str(tmp_path / "other-aliases")
    cfg["train"]["max_steps"] = 2
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    ok("train", tmp_path / "cfg.yaml", "--no-progress")
    res = invoke("ensemble", root / "m7", tmp_path / "other-aliases", "-o", tmp_path / "bad")
    assert res.exit_code == 1 and "differ in actors" in res.output and "train.seed" in res.output
    assert not (tmp_path / "bad").exists()
    res = invoke("ensemble", root / "m7", "-o", tmp_path / "bad")
    assert res.exit_code == 1 and "2 to 5" in res.output
    res = invoke("ensemble", root / "m7", root / "m7", "-o", tmp_path / "bad")
    assert res.exit_code == 1 and "given twice" in res.output
    res = invoke("ensemble", root / "ens", root / "m7", "-o", tmp_path / "bad")
    assert res.exit_code == 1 and "already an ensemble" in res.output


def test_the_ray_engine_gives_the_local_records(root, tmp_path):
    ray = pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    for i, r in enumerate(synthetic_records(6, seed=12)):
        (folder / f"a{i}.txt").write_text(f"{r['title']}\n\n{r['text']}", encoding="utf-8")
    common = ("--no-progress", "--precision", "fp32")
    ok("classify", root / "ens", folder, "-o", tmp_path / "local.jsonl", *common)
    ray.init(num_cpus=1, include_dashboard=False, logging_level="warning")
    try:
        ok("classify", root / "ens", folder, "-o", tmp_path / "ray.jsonl", *common, "--engine", "ray", "--workers", "1")
    finally:
        ray.shutdown()
    local, distributed = ((tmp_path / f).read_text().splitlines() for f in ("local.jsonl", "ray.jsonl"))
    assert len(local) == 6
    for a, b in zip(map(json.loads, local), map(json.loads, distributed), strict=True):
        assert a["id"] == b["id"] and a["topics"] == b["topics"]
        assert {k: s["label"] for k, s in a["stances"].items()} == {k: s["label"] for k, s in b["stances"].items()}
        assert all(abs(a["topic_probs"][n] - b["topic_probs"][n]) < 1e-5 for n in a["topic_probs"])


def test_a_missing_member_file_is_named_before_loading(root, tmp_path):
    import shutil

    from sikap.modelmeta import ModelDirError, check_model_dir

    broken = tmp_path / "ens"
    shutil.copytree(root / "ens", broken)
    (broken / "members" / "1" / "model.safetensors").unlink()
    with pytest.raises(ModelDirError, match="missing members/1/model.safetensors"):
        check_model_dir(broken)
    res = invoke("classify", broken, root / "test.jsonl", "-o", tmp_path / "p.jsonl", "--no-progress")
    assert res.exit_code != 0 and "members/1/model.safetensors" in res.output


def test_members_with_a_seeded_dev_split_pack_without_ensemble_dev_scores(root, tmp_path):
    """No dev file: each member's dev was a split of train seeded by its own seed, so no dev is clean."""
    cfg = yaml.safe_load((root / "cfg.yaml").read_text())
    del cfg["data"]["dev"]
    cfg["train"]["max_steps"] = 2
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    for seed in (1, 2):
        ok(
            "train",
            tmp_path / "cfg.yaml",
            "--set",
            f"train.seed={seed}",
            "--set",
            f"output_dir={tmp_path}/s{seed}",
            "--no-progress",
        )
    res = ok("ensemble", tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "ens")
    assert "seeded split" in " ".join(res.output.split())
    meta = json.loads((tmp_path / "ens" / "sikap.json").read_text())
    assert "dev_metrics" not in meta and "precision_check" not in meta
    assert load_model_dir(tmp_path / "ens").model.n_actors == 2
