"""The typed schema of ``sikap.json`` and the cheap checks of a model directory.

Everything here reads small files only (no torch, no weights), so ``classify`` can refuse a
damaged or foreign model directory in well under a second, before the model is loaded.
Unknown keys are kept (``extra="allow"``): newer training code may save more than this
schema names, and they travel through to the predictor unchanged. Older model directories
get their defaults in one place, :func:`fill_defaults`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

META_FILE = "sikap.json"
BACKBONE_CONFIG = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_FILES = ("pytorch_model.bin", "model.pt", "model.bin")
# a fast tokenizer needs its serialized pipeline and its config (special tokens, lower-casing)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# format versions this code reads; a newer one means the model was saved by a newer sikap
READABLE_FORMAT_VERSIONS = (1,)


class ModelDirError(ValueError):
    """A model directory is missing, incomplete, damaged or unsafe to load."""


class _Meta(BaseModel):
    model_config = ConfigDict(extra="allow")


def _unique(names: list[str], what: str) -> list[str]:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
    return names


class TopicsMeta(_Meta):
    names: list[str] = Field(..., min_length=1, description="Topic labels in head order.")
    multi_label: bool
    thresholds: dict[str, float] | None = Field(
        None, description="Per-topic decision thresholds tuned on dev (on the calibrated probabilities)."
    )
    temperature: float = Field(1.0, gt=0, description="Head temperature fitted on dev (sikap.calibration).")

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return _unique(v, "topic names")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        bad = {k: x for k, x in (v or {}).items() if not 0.0 <= x <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1], got {bad}")
        return v


class ActorMeta(_Meta):
    name: str = Field(..., min_length=1)
    aliases: list[str] = Field(default_factory=list, description="No aliases: present in every text.")


class StanceMeta(_Meta):
    classes: list[str] = Field(..., min_length=2, description="Stance classes in head order.")
    actors: list[ActorMeta] = Field(..., min_length=1)
    temperature: float = Field(1.0, gt=0, description="Head temperature fitted on dev (sikap.calibration).")

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str]) -> list[str]:
        return _unique(v, "stance classes")

    @field_validator("actors")
    @classmethod
    def _actors(cls, v: list[ActorMeta]) -> list[ActorMeta]:
        _unique([a.name for a in v], "actor names")
        return v


class ChunkingMeta(_Meta):
    max_length: int = Field(..., ge=16, le=8192, description="Tokens per window.")
    stride: int = Field(..., ge=0)
    max_chunks: int = Field(..., ge=1, description="0 windows would leave every article unread.")
    topic_aggregation: Literal["max", "mean"]
    stance_aggregation: Literal["max", "mean"]
    pooling: Literal["mean", "cls"]
    stance_mode: Literal["pair", "shared"]
    stance_pooling: Literal["attention", "mean"]

    @model_validator(mode="after")
    def _stride_fits(self) -> ChunkingMeta:
        if self.stride >= self.max_length:
            raise ValueError(f"stride ({self.stride}) must be smaller than max_length ({self.max_length})")
        return self


class PrecisionScores(_Meta):
    topics: float | None = Field(None, description="Dev topics macro-F1 at this precision.")
    stance: float | None = Field(None, description="Dev stance macro-F1 at this precision.")
    loss: float | None = Field(None, description="Worst task's macro-F1 drop against fp32 (not for fp32).")
    error: str | None = Field(None, description="Why this precision could not be scored.")
    keep_fp32: list[str] | None = Field(
        None, description="int8 only: Linear layers (regexes) kept in fp32 because quantizing all lost too much."
    )
    all_layers_loss: float | None = Field(None, description="int8 only, with keep_fp32: the loss with all in int8.")


class PrecisionCheckMeta(_Meta):
    """Dev scores per inference precision, measured at training time (``classify --precision auto``)."""

    fp32: PrecisionScores
    int8: PrecisionScores | None = None
    bf16: PrecisionScores | None = Field(None, description="Only where the training CPU runs bf16 natively.")
    dev_records: int = Field(..., ge=1)


class EnsembleMemberMeta(_Meta):
    weights: str = Field(..., min_length=1, description="The member's weights file, relative to the model dir.")
    source: str = Field("", description="The model dir it was packed from.")
    seed: int | None = None


class EnsembleMeta(_Meta):
    """A seed ensemble (``sikap ensemble``): members whose logits are averaged (sikap.ensemble)."""

    members: list[EnsembleMemberMeta] = Field(..., min_length=2, max_length=5)


class Int8CalibrationMeta(_Meta):
    """Per-channel activation maxima for smoothed int8 (sikap.quantize), measured at training time."""

    file: str = Field(..., min_length=1, description="The safetensors file, relative to the model dir.")
    articles: int | None = Field(None, ge=0, description="Training articles the maxima were taken over.")
    alpha: float | None = Field(None, gt=0, le=1, description="SmoothQuant migration strength.")


class SikapMeta(_Meta):
    """``sikap.json``: what a model predicts and how it reads an article."""

    format_version: int
    backbone: str = ""
    topics: TopicsMeta | None
    stance: StanceMeta | None
    chunking: ChunkingMeta
    precision_check: PrecisionCheckMeta | None = Field(None, description="Absent in dirs written before it.")
    ensemble: EnsembleMeta | None = Field(None, description="Only in seed ensembles (sikap ensemble).")
    int8_calibration: Int8CalibrationMeta | None = Field(None, description="Absent in dirs written before it.")

    @field_validator("format_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in READABLE_FORMAT_VERSIONS:
            newer = v > max(READABLE_FORMAT_VERSIONS)
            hint = "it was saved by a newer sikap; upgrade sikap" if newer else "not a version sikap ever wrote"
            raise ValueError(
                f"format_version {v} is not readable ({hint}); this sikap reads "
                f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}"
            )
        return v

    @model_validator(mode="after")
    def _some_task(self) -> SikapMeta:
        if self.topics is None and self.stance is None:
            raise ValueError("neither topics nor stance: the model predicts nothing")
        return self


def fill_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults for keys that older model directories do not have (the one place for them).

    - ``chunking.stance_mode``: ``pair`` (the only mode before shared mode existed);
    - ``chunking.stance_pooling``: ``mean`` (written before the attention option);
    - ``topics`` / ``stance``: absent means the task was not trained;
    - ``topics.temperature`` / ``stance.temperature``: 1, uncalibrated (field defaults in the schema).
    - ``precision_check``: none (written before it; ``classify --precision auto`` then keeps fp32 off bf16 CPUs).
    """
    out = dict(raw)
    out.setdefault("topics", None)
    out.setdefault("stance", None)
    out.setdefault("precision_check", None)
    if isinstance(out.get("chunking"), dict):
        chunking = dict(out["chunking"])
        chunking.setdefault("stance_mode", "pair")
        chunking.setdefault("stance_pooling", "mean")
        out["chunking"] = chunking
    return out


def parse_meta(raw: Any, source: str = META_FILE) -> dict[str, Any]:
    """Validate raw ``sikap.json`` content (older dirs filled in); every problem in one ModelDirError.

    Returns a plain dict, extra keys included, as the model-building code expects.
    """
    if not isinstance(raw, dict):
        raise ModelDirError(f"{source}: expected a JSON object, got {type(raw).__name__}; the file is damaged")
    try:
        meta = SikapMeta.model_validate(fill_defaults(raw))
    except ValidationError as err:
        from sikap.config import format_validation_error

        n = err.error_count()
        raise ModelDirError(
            f"{source}: {n} problem{'s' if n > 1 else ''} (damaged, edited or not written by sikap train):\n"
            + format_validation_error(err)
        ) from None
    return meta.model_dump()


def read_meta(model_dir: Path | str) -> dict[str, Any]:
    """Read and validate ``MODEL_DIR/sikap.json``."""
    path = Path(model_dir) / META_FILE
    if not Path(model_dir).is_dir():
        raise ModelDirError(f"{model_dir}: no such model directory")
    if not path.is_file():
        raise ModelDirError(f"{model_dir}: not a sikap model directory (no {META_FILE}); train one with `sikap train`")
    return parse_meta(_read_json(path), str(path))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ModelDirError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); the file is damaged") from None
    except json.JSONDecodeError as e:
        raise ModelDirError(
            f"{path}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno}); the file is damaged or truncated"
        ) from None
    except OSError as e:
        raise ModelDirError(f"{path}: cannot read ({e.strerror or e})") from None


def check_model_dir(model_dir: Path | str, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Every check that needs no weights: sikap.json, config.json, tokenizer and weight files.

    Returns the validated meta. Raises :class:`ModelDirError` naming the file and the fix.
    """
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    missing = [f for f in (BACKBONE_CONFIG, *TOKENIZER_FILES) if not (model_dir / f).is_file()]
    if not (model_dir / WEIGHTS_FILE).is_file() and not any((model_dir / p).is_file() for p in PICKLE_FILES):
        missing.append(WEIGHTS_FILE)
    members = (meta.get("ensemble") or {}).get("members") or []
    missing += [m["weights"] for m in members[1:] if not (model_dir / m["weights"]).is_file()]
    if missing:
        raise ModelDirError(
            f"{model_dir}: incomplete model directory, missing {', '.join(missing)}; copy the whole "
            "directory that `sikap train` (or `sikap ensemble`) wrote"
        )
    backbone = _read_json(model_dir / BACKBONE_CONFIG)
    if not isinstance(backbone, dict) or "model_type" not in backbone:
        raise ModelDirError(f"{model_dir / BACKBONE_CONFIG}: not a transformers model config (no model_type)")
    limit = backbone.get("max_position_embeddings")
    if isinstance(limit, int) and meta["chunking"]["max_length"] > limit:
        raise ModelDirError(
            f"{model_dir / META_FILE}: chunking.max_length {meta['chunking']['max_length']} exceeds the "
            f"backbone's max_position_embeddings ({limit}) in {BACKBONE_CONFIG}"
        )
    _read_json(model_dir / TOKENIZER_FILES[1])  # a damaged tokenizer_config.json fails here, by name
    return meta
