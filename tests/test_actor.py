"""`classify --actor`: stance toward actors the model was not trained on, and the generic actor slot."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import synthetic_records, tiny_config_dict, write_jsonl
from typer.testing import CliRunner

from sikap.cli import app
from sikap.modeldir import ModelDirError, add_actors, load_model_dir, parse_actor_spec

runner = CliRunner()


def test_parse_actor_spec():
    assert parse_actor_spec("Prabowo=Prabowo, Prabowo Subianto,Bowo") == (
        "Prabowo",
        ["Prabowo", "Prabowo Subianto", "Bowo"],
    )
    assert parse_actor_spec(" harga ") == ("harga", [])
    for bad in ("=x", "", "A=", "A=x,,y"):
        with pytest.raises(ValueError, match="--actor"):
            parse_actor_spec(bad)


def _nato_only(records):
    for r in records:
        r["stances"] = {k: v for k, v in r["stances"].items() if k == "NATO"}
    return records


@pytest.fixture(scope="module", params=["shared", "pair"])
def nato_model(request, tiny_backbone, tmp_path_factory):
    """A model trained with NATO as its only actor (the records also mention Rusia)."""
    root = tmp_path_factory.mktemp(f"actor-{request.param}")
    tr = write_jsonl(root / "train.jsonl", _nato_only(synthetic_records(80, seed=2)))
    raw = tiny_config_dict(tiny_backbone, tr, None, root / "run", epochs=2)
    raw["model"]["stance_mode"] = request.param
    raw["labels"]["stance"]["actors"] = [{"name": "NATO", "aliases": ["NATO", "aliansi"]}]
    (root / "cfg.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["train", str(root / "cfg.yaml"), "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "run", request.param


def _articles(folder):
    folder.mkdir()
    (folder / "rusia.txt").write_text("judul\n\nmedia mengecam Moskow dan pelatih", encoding="utf-8")
    (folder / "none.txt").write_text("judul\n\ninflasi rupiah ekspor pasar", encoding="utf-8")
    return folder


def test_added_actor_appears_in_every_record(nato_model, tmp_path):
    model_dir, _ = nato_model
    out = tmp_path / "p.jsonl"
    args = [
        "classify",
        str(model_dir),
        str(_articles(tmp_path / "in")),
        "-o",
        str(out),
        "--no-progress",
        "--actor",
        "Rusia=Rusia,Moskow",
        "--actor",
        "harga",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    recs = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert set(recs) == {"rusia.txt", "none.txt"}
    for r in recs.values():
        assert list(r["stances"]) == ["NATO", "Rusia", "harga"]
        assert r["added_actors"] == ["Rusia", "harga"]
        assert r["stances"]["harga"]["label"] in ("favor", "against", "neutral")  # no aliases: always present
    rusia = recs["rusia.txt"]["stances"]["Rusia"]
    assert rusia["label"] in ("favor", "against", "neutral")
    assert abs(sum(rusia["probs"].values()) - 1.0) < 1e-4
    assert recs["none.txt"]["stances"]["Rusia"] == {"label": "not_mentioned", "probs": None}
    # CSV gets the columns too
    csv_out = tmp_path / "p.csv"
    result = runner.invoke(app, [*args[:4], str(csv_out), *args[5:]])
    assert result.exit_code == 0, result.output
    header = csv_out.read_text(encoding="utf-8").splitlines()[0]
    assert "stance:Rusia" in header and "stance:harga:favor" in header


def test_added_actor_does_not_change_trained_actors(nato_model, tmp_path):
    model_dir, _ = nato_model
    plain, added = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    folder = _articles(tmp_path / "in")
    for out, extra in ((plain, []), (added, ["--actor", "Rusia=Rusia,Moskow"])):
        result = runner.invoke(
            app,
            ["classify", str(model_dir), str(folder), "-o", str(out), "--no-progress", "--precision", "fp32", *extra],
        )
        assert result.exit_code == 0, result.output
    a = [json.loads(x) for x in plain.read_text(encoding="utf-8").splitlines()]
    b = [json.loads(x) for x in added.read_text(encoding="utf-8").splitlines()]
    for x, y in zip(a, b, strict=True):
        assert x["stances"]["NATO"] == y["stances"]["NATO"] and x["topic_probs"] == y["topic_probs"]


def test_known_actor_name_is_refused_before_loading(nato_model, tmp_path):
    model_dir, _ = nato_model
    result = runner.invoke(
        app,
        [
            "classify",
            str(model_dir),
            str(_articles(tmp_path / "in")),
            "-o",
            str(tmp_path / "p.jsonl"),
            "--actor",
            "NATO=NATO",
        ],
    )
    assert result.exit_code != 0
    assert "already knows" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.jsonl").exists()
    result = runner.invoke(
        app, ["classify", str(model_dir), str(tmp_path / "in"), "-o", str(tmp_path / "q.jsonl"), "--actor", "X=a,,b"]
    )
    assert result.exit_code != 0 and "empty alias" in result.output


def test_add_actors_checks(nato_model):
    model_dir, mode = nato_model
    loaded = load_model_dir(model_dir)
    with pytest.raises(ModelDirError, match="twice"):
        add_actors(loaded, [("A", []), ("A", ["a"])])
    more = add_actors(loaded, [("Rusia", ["Rusia"])])
    assert [a["name"] for a in more.meta["stance"]["actors"]] == ["NATO", "Rusia"]
    assert more.meta["stance"]["n_trained_actors"] == 1
    assert loaded.model.generic_slot == (1 if mode == "shared" else 0)


def test_shared_model_without_generic_slot_cannot_add_actors(tiny_backbone, tmp_path):
    tr = write_jsonl(tmp_path / "train.jsonl", _nato_only(synthetic_records(30, seed=2)))
    raw = tiny_config_dict(tiny_backbone, tr, None, tmp_path / "run", epochs=1)
    raw["model"].update(stance_mode="shared", generic_actor=False)
    raw["labels"]["stance"]["actors"] = [{"name": "NATO", "aliases": ["NATO"]}]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert runner.invoke(app, ["train", str(tmp_path / "cfg.yaml"), "--no-progress"]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "classify",
            str(tmp_path / "run"),
            str(_articles(tmp_path / "in")),
            "-o",
            str(tmp_path / "p.jsonl"),
            "--actor",
            "Rusia=Rusia",
        ],
    )
    assert result.exit_code != 0 and "actor-independent" in result.output


def test_generic_slot_is_trained_on_every_actor(tiny_backbone):
    """The generic slot's head rows get gradient from the labeled items of the real actors."""
    from transformers import AutoModel

    from sikap.model import SikapModel

    torch.manual_seed(0)
    m = SikapModel(
        AutoModel.from_pretrained(str(tiny_backbone)),
        n_topics=0,
        n_actors=2,
        n_classes=3,
        topic_multi_label=False,
        topic_agg="mean",
        stance_agg="mean",
        stance_mode="shared",
        stance_pooling="attention",
        generic_actor=True,
    )
    assert m.stance_head.out_features == 3 * 3 and m.actor_query.shape[0] == 3
    m.train()
    ids = torch.randint(5, 50, (2, 10))
    pos = torch.zeros(2, 10, dtype=torch.bool)
    pos[:, 3] = True
    out = m(
        articles=torch.zeros(2),
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        token_type_ids=torch.zeros_like(ids),
        stance_win=torch.tensor([0, 1]),
        stance_group=torch.tensor([0, 3]),
        stance_actor=torch.tensor([0, 1]),
        stance_positions=pos,
        stance_labels=torch.tensor([[0, -100], [-100, 2]]),
    )
    out["loss"].backward()
    grad = m.stance_head.weight.grad.view(3, 3, -1)
    assert grad[2].abs().sum() > 0  # the generic slot (index n_actors) learned from both actors' items
