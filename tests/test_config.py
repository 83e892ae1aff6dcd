"""Config: dotted overrides, validation that reports every problem at once, defaults, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sikap.config import (
    DEFAULT_BACKBONE,
    Aggregation,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SHIPPED_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def minimal(**sections) -> dict:
    """The smallest valid raw config, with sections replaced or added."""
    raw = {"labels": {"topics": {"names": ["ekonomi", "olahraga"]}}, "data": {"train": "train.jsonl"}}
    raw.update(sections)
    return raw


def problems(excinfo: pytest.ExceptionInfo) -> list[str]:
    """The per-problem lines of a ConfigError (the first line is the summary)."""
    return str(excinfo.value).splitlines()[1:]


# ---------------------------------------------------------------- parse_override


@pytest.mark.parametrize(
    ("item", "keys", "value"),
    [
        ("train.epochs=2", ["train", "epochs"], 2),
        ("train.epochs=2.5", ["train", "epochs"], 2.5),
        ("train.learning_rate=3.0e-5", ["train", "learning_rate"], 3.0e-5),
        ("model.max_length=512", ["model", "max_length"], 512),
        ("train.class_weights=false", ["train", "class_weights"], False),
        ("train.class_weights=true", ["train", "class_weights"], True),
        ("labels.topics.names=[a,b]", ["labels", "topics", "names"], ["a", "b"]),
        ("labels.topics.names=[a, b, c]", ["labels", "topics", "names"], ["a", "b", "c"]),
        ("model.backbone=indolem/indobert", ["model", "backbone"], "indolem/indobert"),
        ("data.dev=null", ["data", "dev"], None),
        ("data.text_field=a=b", ["data", "text_field"], "a=b"),  # only the first '=' splits
        ("output_dir=runs/x", ["output_dir"], "runs/x"),
        (" train.seed = 7", ["train", "seed"], 7),
        ("data.title_field=", ["data", "title_field"], ""),
    ],
)
def test_parse_override_values(item, keys, value):
    got_keys, got_value = parse_override(item)
    assert got_keys == keys
    assert got_value == value
    assert type(got_value) is type(value)


@pytest.mark.parametrize("item", ["train.epochs", "train..x=1", "=1", ".x=1", "train.=1", "1train.x=2",
                                  "train x=1", "train.epochs-x=1"])
def test_parse_override_rejects_bad_keys(item):
    with pytest.raises(ConfigError, match="override") as excinfo:
        parse_override(item)
    assert repr(item) in str(excinfo.value)


def test_apply_overrides_merges_nested_and_creates_new_sections():
    raw = {"train": {"epochs": 1, "seed": 3}}
    out = apply_overrides(raw, ["train.epochs=4", "model.pooling=cls", "a.b.c=1"])
    assert out == {"train": {"epochs": 4, "seed": 3}, "model": {"pooling": "cls"}, "a": {"b": {"c": 1}}}
    assert raw == {"train": {"epochs": 1, "seed": 3}}, "the input must not be modified"


def test_apply_overrides_later_wins_and_none_is_no_op():
    assert apply_overrides({"x": 1}, None) == {"x": 1}
    assert apply_overrides({}, ["train.seed=1", "train.seed=2"]) == {"train": {"seed": 2}}


def test_apply_overrides_fills_a_null_section():
    assert apply_overrides({"train": None}, ["train.seed=5"]) == {"train": {"seed": 5}}


def test_apply_overrides_refuses_to_descend_into_a_value():
    with pytest.raises(ConfigError, match="'epochs' is not a section"):
        apply_overrides({"train": {"epochs": 1}}, ["train.epochs.x=2"])


def test_overrides_apply_before_validation():
    bad = minimal(train={"learning_rate": -1})
    with pytest.raises(ConfigError):
        config_from_dict(bad)
    cfg = config_from_dict(bad, ["train.learning_rate=1e-4"])
    assert cfg.train.learning_rate == pytest.approx(1e-4)


def test_yaml_1_1_exponent_without_dot_still_becomes_a_float():
    # PyYAML reads "1e-5" as a string; validation must still turn it into 1e-5
    cfg = config_from_dict(minimal(), ["train.learning_rate=1e-5"])
    assert isinstance(cfg.train.learning_rate, float)
    assert cfg.train.learning_rate == pytest.approx(1e-5)


def test_override_with_unknown_key_is_reported_with_its_path():
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(minimal(), ["train.lerning_rate=1e-4"])
    assert problems(excinfo) == [
        "train.lerning_rate: unknown key (check spelling; see the documented sections)"
    ]


# ---------------------------------------------------------------- validation


def test_defaults():
    cfg = config_from_dict(minimal(labels={"stance": {"actors": [{"name": "NATO"}]}}))
    assert cfg.model.backbone == DEFAULT_BACKBONE == "offline:multilingual-e5-small"
    assert cfg.labels.stance.classes == ["favor", "against", "neutral"]
    assert cfg.labels.stance.actors[0].aliases == []
    assert cfg.labels.topics is None
    assert cfg.model.topic_aggregation is Aggregation.auto
    assert cfg.model.stride < cfg.model.max_length // 2
    assert cfg.data.dev is None and 0 < cfg.data.dev_fraction < 1
    assert cfg.train.learning_rate > 0


def test_several_problems_reported_at_once():
    raw = minimal(
        labels={"topics": {"names": ["ekonomi", "ekonomi"]}},
        train={"learning_rate": -1, "lr": 3e-5},
    )
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(raw, source="my.yaml")
    msg = str(excinfo.value)
    assert msg.splitlines()[0] == "my.yaml: 3 problems"
    assert sorted(problems(excinfo)) == sorted([
        "labels.topics.names: duplicate topic name 'ekonomi'",
        "train.learning_rate: must be > 0",
        "train.lr: unknown key (check spelling; see the documented sections)",
    ])


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"model": {"max_lenght": 128}}, "model.max_lenght: unknown key"),
        ({"labels": {"topics": {"names": ["a"], "multilabel": True}}},
         "labels.topics.multilabel: unknown key"),
        ({"labels": {"stance": {"actors": [{"name": "A", "alias": ["a"]}]}}},
         "labels.stance.actors.0.alias: unknown key"),
        ({"trian": {"epochs": 1}}, "trian: unknown key"),
    ],
)
def test_unknown_keys_rejected_with_dotted_path(section, expected):
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(minimal(**section))
    assert any(line.startswith(expected) for line in problems(excinfo)), str(excinfo.value)


def test_not_mentioned_is_not_a_stance_class():
    raw = minimal(labels={"stance": {"classes": ["favor", "not_mentioned"], "actors": [{"name": "A"}]}})
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(raw)
    assert problems(excinfo) == [
        "labels.stance.classes: 'not_mentioned' is implied for unmentioned actors; do not list it"
    ]


def test_duplicate_actor_rejected():
    raw = minimal(labels={"stance": {"actors": [{"name": "A", "aliases": ["a"]}, {"name": "A"}]}})
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(raw)
    assert problems(excinfo) == ["labels.stance.actors: duplicate actor name 'A'"]


def test_empty_alias_rejected():
    raw = minimal(labels={"stance": {"actors": [{"name": "A", "aliases": ["a", " "]}]}})
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(raw)
    assert problems(excinfo) == ["labels.stance.actors.0.aliases: aliases must not be empty strings"]


@pytest.mark.parametrize(
    ("max_length", "stride", "ok"), [(128, 63, True), (128, 64, False), (128, 100, False), (256, 0, True)]
)
def test_stride_must_be_below_half_the_window(max_length, stride, ok):
    raw = minimal(model={"max_length": max_length, "stride": stride})
    if ok:
        assert config_from_dict(raw).model.stride == stride
    else:
        with pytest.raises(ConfigError) as excinfo:
            config_from_dict(raw)
        assert problems(excinfo) == [f"model: stride ({stride}) must be < max_length/2 ({max_length // 2})"]


def test_labels_need_at_least_one_task():
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(minimal(labels={}))
    assert problems(excinfo) == ["labels: configure at least one task: labels.topics or labels.stance"]


def test_missing_required_sections_are_named():
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict({})
    lines = problems(excinfo)
    assert {line.split(":")[0] for line in lines} == {"labels", "data"}


def test_bad_enum_and_pattern_values_are_rejected():
    raw = minimal(model={"pooling": "max", "topic_aggregation": "median"}, train={"precision": "fp16"})
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(raw)
    paths = {line.split(":")[0] for line in problems(excinfo)}
    assert paths == {"model.pooling", "model.topic_aggregation", "train.precision"}


def test_greater_or_equal_message_reads_well():
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict(minimal(train={"batch_size": 0}))
    assert problems(excinfo) == ["train.batch_size: must be >= 1"]


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="x.yaml: expected a mapping at the top level, got list"):
        config_from_dict(["a"], source="x.yaml")  # type: ignore[arg-type]


def test_config_to_dict_round_trips():
    cfg = config_from_dict(minimal(model={"topic_aggregation": "max"}))
    d = config_to_dict(cfg)
    assert d["model"]["topic_aggregation"] == "max"
    assert d["data"]["train"] == "train.jsonl"
    assert config_from_dict(d) == cfg


# ---------------------------------------------------------------- load_config


def test_load_config_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal(train={"epochs": 3})), encoding="utf-8")
    cfg = load_config(path, ["train.epochs=1", "model.max_length=512"])
    assert cfg.train.epochs == 1
    assert cfg.model.max_length == 512
    assert cfg.labels.topics.names == ["ekonomi", "olahraga"]


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML") as excinfo:
        load_config(bad)
    assert str(bad) in str(excinfo.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(empty)
    assert str(excinfo.value).startswith(f"{empty}: 2 problems")


def test_repo_ships_configs():
    assert SHIPPED_CONFIGS, f"no configs/*.yaml in {CONFIG_DIR}"


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[p.name for p in SHIPPED_CONFIGS])
def test_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.labels.topics is not None or cfg.labels.stance is not None
