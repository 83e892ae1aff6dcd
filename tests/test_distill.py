"""`sikap distill`: a smaller student from a tiny teacher, its loss, and that it is an ordinary model dir."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.modeldir import load_model_dir
from sikap.training.distill import (
    DistillCollator,
    DistillExample,
    DistillTrainer,
    pick_layers,
    soft_loss,
    student_encoder,
)

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def workspace(tiny_backbone, tmp_path_factory):
    """A teacher trained on the synthetic task (encoder only: no lexical model deciding for it)."""
    root = tmp_path_factory.mktemp("distill")
    write_jsonl(root / "train.jsonl", synthetic_records(60, seed=4))
    unlabeled = [{"id": r["id"], "title": r["title"], "text": r["text"]} for r in synthetic_records(60, seed=9)]
    write_jsonl(root / "unlabeled.jsonl", unlabeled)
    cfg = tiny_config_dict(tiny_backbone, root / "train.jsonl", None, root / "teacher", epochs=8, lexical=False)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    invoke("train", root / "cfg.yaml", "--no-progress")
    return root


@pytest.fixture(scope="module")
def student(workspace):
    out = workspace / "student"
    res = invoke(
        "distill", workspace / "teacher", "--unlabeled", workspace / "unlabeled.jsonl", "-o", out, "--no-progress"
    )
    assert "distilled 2 -> 1 layers" in res.output
    return out


def test_pick_layers_evenly_spaced_first_and_last_kept():
    assert pick_layers(12, 4) == [0, 4, 7, 11]
    assert pick_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert pick_layers(2, 1) == [1]
    assert pick_layers(12, 12) == list(range(12))  # a same-size student (of an ensemble)
    for bad in (0, 13):
        with pytest.raises(ValueError, match="1 to 12 layers"):
            pick_layers(12, bad)


def test_student_encoder_copies_the_chosen_layers(tiny_backbone):
    from transformers import AutoModel

    teacher = AutoModel.from_pretrained(tiny_backbone)
    student = student_encoder(teacher, [1])
    assert student.config.num_hidden_layers == 1 and len(student.encoder.layer) == 1
    t, s = teacher.state_dict(), student.state_dict()
    key = "encoder.layer.{}.attention.self.query.weight"
    assert torch.equal(s[key.format(0)], t[key.format(1)])
    assert not torch.equal(s[key.format(0)], t[key.format(0)])
    assert torch.equal(s["embeddings.word_embeddings.weight"], t["embeddings.word_embeddings.weight"])


def test_soft_loss_matches_teacher_and_ignores_unmentioned_pairs():
    topics = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    stance = torch.randn(2, 2, 3)
    mask = torch.tensor([[True, False], [True, True]])
    out = {"topic_logits": topics, "stance_logits": stance, "stance_mask": mask}
    same = soft_loss(out, topics.clone(), stance.clone(), temperature=2.0, multi_label=False)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    other = stance.clone()
    other[0, 1] = torch.tensor([9.0, -9.0, 0.0])  # a pair the actor is not mentioned in: not_mentioned, no loss
    assert soft_loss(out, topics, other, temperature=2.0, multi_label=False).item() == pytest.approx(0.0, abs=1e-6)
    other[1, 0] = torch.tensor([9.0, -9.0, 0.0])  # a mentioned pair: the student is pulled toward the teacher
    assert soft_loss(out, topics, other, temperature=2.0, multi_label=False).item() > 0.1
    # multi-label topics: BCE against softened probabilities is smallest at the teacher's own logits
    at_teacher = soft_loss(out, topics, stance, temperature=2.0, multi_label=True)
    shifted = {**out, "topic_logits": topics + 1.0}
    assert soft_loss(shifted, topics, stance, temperature=2.0, multi_label=True) > at_teacher


def test_student_is_smaller_loads_and_classifies(workspace, student, tmp_path):
    teacher_cfg = json.loads((workspace / "teacher" / "config.json").read_text())
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1 < teacher_cfg["num_hidden_layers"] == 2
    meta = json.loads((student / "sikap.json").read_text())
    assert meta["distillation"]["student_layers"] == [1] and meta["distillation"]["teacher_layers"] == 2
    assert meta["data"]["unlabeled"]["records"] > 0 and meta["data"]["train"] is None
    assert meta["precision_check"]["fp32"] and "loss" in meta["precision_check"]["int8"]
    loaded = load_model_dir(student)
    assert sum(p.numel() for p in loaded.model.parameters()) < sum(
        p.numel() for p in load_model_dir(workspace / "teacher").model.parameters()
    )
    folder = tmp_path / "in"
    folder.mkdir()
    for i, r in enumerate(synthetic_records(4, seed=21)):
        (folder / f"{i}.txt").write_text(f"{r['title']}\n\n{r['text']}", encoding="utf-8")
    out = tmp_path / "p.jsonl"
    invoke("classify", student, folder, "-o", out, "--no-progress", "--precision", "fp32")
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 4 and all(r["error"] is None and r["topics"] for r in records)
    invoke("evaluate", student, workspace / "train.jsonl", "-o", tmp_path / "eval")
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_student_agrees_with_teacher_above_chance(workspace, student, tmp_path):
    """Topic and stance decisions on the training articles: agreement beyond what the label frequencies give."""
    outs = {}
    for name, model in (("teacher", workspace / "teacher"), ("student", student)):
        outs[name] = tmp_path / f"{name}.jsonl"
        invoke("classify", model, workspace / "train.jsonl", "-o", outs[name], "--no-progress", "--precision", "fp32")
    t, s = ([json.loads(x) for x in outs[n].read_text().splitlines()] for n in ("teacher", "student"))
    pairs = {
        "topics": [(a["topics"][0], b["topics"][0]) for a, b in zip(t, s, strict=True)],
        "stance": [
            (a["stances"][k]["label"], b["stances"][k]["label"])
            for a, b in zip(t, s, strict=True)
            for k in a["stances"]
            if a["stances"][k]["label"] != "not_mentioned"
        ],
    }
    for task, ps in pairs.items():
        agree = sum(x == y for x, y in ps) / len(ps)
        ct, cs = Counter(x for x, _ in ps), Counter(y for _, y in ps)
        chance = sum(ct[k] * cs[k] for k in ct) / len(ps) ** 2  # independent decisions, same frequencies
        assert len(ct) > 1, f"{task}: the teacher predicts one class only; the test says nothing"
        assert agree > chance + 0.2, (task, agree, chance)


def test_distill_with_labeled_records_mixes_them_in(workspace, tmp_path):
    out = tmp_path / "student"
    res = invoke(
        "distill",
        workspace / "teacher",
        "--unlabeled",
        workspace / "unlabeled.jsonl",
        "--train",
        workspace / "train.jsonl",
        "-o",
        out,
        "--set",
        "train.epochs=1",
        "--no-progress",
    )
    meta = json.loads((out / "sikap.json").read_text())
    n_dev = meta["data"]["dev"]["records"]
    # the teacher's dev split of train.jsonl is the dev set, so those records are kept out of training
    assert meta["data"]["dev"]["source"] == "the teacher's dev data"
    assert meta["data"]["train"]["records"] == 60 - n_dev and n_dev > 0
    assert f"{60 - n_dev} labeled articles" in res.output
    assert meta["config"]["train"]["epochs"] == 1


def test_hard_labels_add_to_the_soft_loss(workspace, tmp_path):
    """With labels, loss = soft + hard_weight * the model's own masked loss."""
    from sikap.inference.readers import iter_articles
    from sikap.training.dataset import encode_records
    from sikap.training.distill import read_unlabeled
    from sikap.training.trainer import make_trainer

    teacher = load_model_dir(workspace / "teacher")
    records = read_unlabeled(workspace / "train.jsonl", iter_articles)[:4]
    labeled = [json.loads(x) for x in (workspace / "train.jsonl").read_text().splitlines()[:4]]
    for r, raw in zip(records, labeled, strict=True):
        r.topics, r.stances = raw["topics"], raw["stances"]
    ex = encode_records(records, teacher.builder, teacher.meta)
    ex = [DistillExample(e.features, e.topic_labels, e.stance_labels, [0.0, 0.0, 0.0], [[0.0] * 3] * 2) for e in ex]
    batch = DistillCollator(0, 3, 2)(ex)
    teacher.model.train(False)
    from sikap.config import config_from_dict

    cfg = config_from_dict(teacher.meta["config"], [f"output_dir={tmp_path}"])
    losses = {}
    for w in (0.0, 0.5):
        trainer = make_trainer(
            cfg, teacher.model, teacher.meta, ex, ex, 0, False,
            trainer_cls=lambda **kw: DistillTrainer(temperature=2.0, hard_weight=w, multi_label=False, **kw),  # noqa: B023
        )  # fmt: skip
        losses[w] = trainer.compute_loss(teacher.model, batch).item()
    inputs = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
    hard = teacher.model(**inputs)["loss"].item()
    assert hard > 0
    assert losses[0.5] - losses[0.0] == pytest.approx(0.5 * hard, rel=1e-4)


def test_distill_without_any_dev_holds_out_teacher_labeled_articles(workspace, tmp_path):
    meta_path = workspace / "teacher" / "sikap.json"
    meta = json.loads(meta_path.read_text())
    moved = dict(meta)
    moved["config"] = {**meta["config"], "data": {**meta["config"]["data"], "train": str(tmp_path / "gone.jsonl")}}
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    for f in (workspace / "teacher").iterdir():
        if f.is_file():
            (teacher / f.name).write_bytes(f.read_bytes())
    (teacher / "sikap.json").write_text(json.dumps(moved), encoding="utf-8")
    res = invoke(
        "distill", teacher, "--unlabeled", workspace / "unlabeled.jsonl", "-o", tmp_path / "s", "--no-progress"
    )
    out = json.loads((tmp_path / "s" / "sikap.json").read_text())
    assert out["data"]["dev"]["source"] == "held-out articles labeled by the teacher"
    assert out["data"]["dev"]["records"] == 6 and out["data"]["unlabeled"]["records"] == 54
    assert "cannot be read" in res.output  # the note says why


def test_distill_refuses_a_student_bigger_than_the_teacher(workspace, tmp_path):
    res = runner.invoke(
        app,
        ["distill", str(workspace / "teacher"), "--unlabeled", str(workspace / "unlabeled.jsonl"), "-o",
         str(tmp_path / "s"), "--layers", "3", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 1 and "1 to 2 layers" in res.output


def quick_student(teacher, unlabeled, out, *options):
    """`sikap distill` for one epoch with extra ``options``; the CLI result."""
    return invoke(
        "distill", teacher, "--unlabeled", unlabeled, "-o", out, *options, "--set", "train.epochs=1", "--no-progress"
    )


def test_distill_same_size_student_keeps_every_layer(workspace, tmp_path):
    out = tmp_path / "s"
    res = quick_student(workspace / "teacher", workspace / "unlabeled.jsonl", out, "--layers", 2)
    assert "distilled 2 -> 2 layers" in res.output
    meta = json.loads((out / "sikap.json").read_text())
    assert meta["distillation"]["student_layers"] == [0, 1]
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2


def test_lexical_part_and_blend_are_the_teachers(tiny_backbone, workspace, tmp_path):
    cfg = tiny_config_dict(tiny_backbone, workspace / "train.jsonl", None, tmp_path / "teacher", max_steps=6)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    invoke("train", tmp_path / "cfg.yaml", "--no-progress")
    res = invoke(
        "distill", tmp_path / "teacher", "--unlabeled", workspace / "unlabeled.jsonl", "-o", tmp_path / "s",
        "--set", "train.max_steps=3", "--no-progress",
    )  # fmt: skip
    teacher, student = load_model_dir(tmp_path / "teacher"), load_model_dir(tmp_path / "s")
    assert student.lexical is not None and student.meta["blend"] == teacher.meta["blend"]
    texts = ["media mendukung NATO inflasi rupiah", "pelatih menolak Rusia gol"]
    for a, b in zip(teacher.lexical.predict(texts, 2), student.lexical.predict(texts, 2), strict=True):
        assert a is not None and b is not None
        assert all(torch.allclose(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(a, b, strict=True))
    # the teacher's lexical model was refit on its dev records: the student says its dev scores are optimistic
    assert student.meta["distillation"]["dev_seen_by_lexical"] is True and "optimistic" in " ".join(res.output.split())
    assert student.meta["topics"]["thresholds"] == teacher.meta["topics"]["thresholds"]


def test_generic_slot_is_distilled_too():
    stance = torch.randn(2, 2, 3)
    mask = torch.ones(2, 2, dtype=torch.bool)
    out = {"stance_logits": stance, "stance_mask": mask}
    base = soft_loss(out, None, stance, temperature=2.0, multi_label=False)
    with_slot = soft_loss({**out, "generic_stance_logits": -stance}, None, stance, temperature=2.0, multi_label=False)
    assert base.item() == pytest.approx(0.0, abs=1e-6) and with_slot.item() > 0.1


def test_shared_mode_student_scores_added_actors(tiny_backbone, workspace, tmp_path):
    cfg = tiny_config_dict(tiny_backbone, workspace / "train.jsonl", None, tmp_path / "teacher", max_steps=4)
    cfg["model"].update(stance_mode="shared", generic_actor=True)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    invoke("train", tmp_path / "cfg.yaml", "--no-progress")
    student = tmp_path / "s"
    invoke(
        "distill", tmp_path / "teacher", "--unlabeled", workspace / "unlabeled.jsonl", "-o", student,
        "--set", "train.max_steps=3", "--no-progress",
    )  # fmt: skip
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("judul\n\nmedia mendukung Ukraina dan NATO", encoding="utf-8")
    out = tmp_path / "p.jsonl"
    invoke("classify", student, folder, "-o", out, "--actor", "Ukraina=Ukraina", "--no-progress")
    rec = json.loads(out.read_text().splitlines()[0])
    assert rec["stances"]["Ukraina"]["label"] in {"favor", "against", "neutral"}


def test_stitched_pairs_join_two_distinct_articles_reproducibly():
    from sikap.training.data import Record
    from sikap.training.distill import stitched_pairs

    pool = [Record(id=f"a{i}", title=f"T{i}", text=f"body {i}", where=f"line {i}") for i in range(5)]
    pairs = stitched_pairs(pool, 8, seed=3)
    assert len(pairs) == 8 and pairs == stitched_pairs(pool, 8, seed=3)
    for p in pairs:
        left, right = p.id.split(":", 1)[1].split("+")
        assert left != right
        i, j = int(left[1:]), int(right[1:])
        assert p.text.index(f"body {i}") < p.text.index(f"body {j}")  # both whole, in order
        assert p.topics is None and not p.stances  # labeled by the teacher only
    assert stitched_pairs(pool[:1], 5, seed=0) == [] and stitched_pairs(pool, 0, seed=0) == []


def test_distill_augment_adds_stitched_pairs(workspace, tmp_path):
    out = tmp_path / "student"
    res = quick_student(workspace / "teacher", workspace / "unlabeled.jsonl", out, "--augment", 12)
    assert "+ 12 stitched pairs" in res.output
    meta = json.loads((out / "sikap.json").read_text())
    assert meta["distillation"]["stitched_pairs"] == 12
    assert meta["int8_calibration"]["articles"] > 0


def test_distill_a_stance_only_teacher(tiny_backbone, workspace, tmp_path):
    """No topics task (as CASA/HoASA): the student is made and saved (a lexical teacher, so the
    dev-threshold branch that reads the topic settings runs)."""
    cfg = tiny_config_dict(tiny_backbone, workspace / "train.jsonl", None, tmp_path / "teacher", max_steps=4)
    del cfg["labels"]["topics"]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    invoke("train", tmp_path / "cfg.yaml", "--no-progress")
    out = tmp_path / "s"
    quick_student(tmp_path / "teacher", workspace / "unlabeled.jsonl", out, "--train", workspace / "train.jsonl")
    meta = json.loads((out / "sikap.json").read_text())
    assert meta["topics"] is None and meta["stance"] and meta["dev_metrics"]["stance"]
