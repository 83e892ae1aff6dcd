"""`sikap ensemble`: pack 2-5 model dirs trained with the same config but different seeds into one model dir.

The result loads as one model (:class:`sikap.ensemble.EnsembleModel`: the mean of the members' window
logits per head). Its ``sikap.json`` is the first member's with, in place of the per-model tuning:

- ``topics.thresholds``, ``topics.temperature``, ``stance.temperature`` and the ``blend`` shares:
  the mean of the members' (a member without thresholds counts 0.5, the predictor's default);
- the lexical model: the first member's, its head temperatures the mean of the members'. Members
  trained on the same train file fit the same lexical weights (checked; a difference, e.g. from a
  seeded dev split of the train file, is reported and the first member's is used);
- ``ensemble``: the source dirs, seeds and each member's dev scores;
- ``dev_metrics`` and ``precision_check`` of the ensemble itself, measured on the config's dev file
  when it is still there and unchanged (none otherwise: ``--precision auto`` then keeps fp32 on
  CPUs without native bf16).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from sikap.ensemble import MAX_MEMBERS, MEMBERS_DIR, MIN_MEMBERS
from sikap.modelmeta import BACKBONE_CONFIG, META_FILE, WEIGHTS_FILE, ModelDirError, check_model_dir

# what must agree between members for their logits to mean the same thing
SAME_META = {
    "backbone": lambda m: m.get("backbone"),
    "topics": lambda m: m["topics"] and {k: m["topics"][k] for k in ("names", "multi_label")},
    "stance classes": lambda m: m["stance"] and m["stance"]["classes"],
    "actors": lambda m: m["stance"] and m["stance"]["actors"],
    "chunking": lambda m: m["chunking"],
    "lexical model (train.lexical)": lambda m: bool(m.get("lexical")),
}
PER_MODEL_KEYS = ("dev_metrics", "precision_check", "calibration", "training", "versions", "weights_dtype")


def check_members(dirs: list[Path]) -> list[dict]:
    """Each member's validated meta; ModelDirError naming the first difference that forbids an ensemble."""
    if not MIN_MEMBERS <= len(dirs) <= MAX_MEMBERS:
        raise ModelDirError(f"an ensemble takes {MIN_MEMBERS} to {MAX_MEMBERS} model dirs, got {len(dirs)}")
    seen = [d.resolve() for d in dirs]
    dupes = sorted({str(d) for d in seen if seen.count(d) > 1})
    if dupes:
        raise ModelDirError(f"{dupes[0]} is given twice; each member must be a different model dir")
    metas = [check_model_dir(d) for d in dirs]
    for d, m in zip(dirs, metas, strict=True):
        if m.get("ensemble"):
            raise ModelDirError(f"{d}: already an ensemble; give its member dirs instead")
        if not (d / WEIGHTS_FILE).is_file():
            raise ModelDirError(f"{d}: no {WEIGHTS_FILE} (a pickle checkpoint cannot be packed)")
    first = dirs[0]
    for d, m in zip(dirs[1:], metas[1:], strict=True):
        for what, get in SAME_META.items():
            if get(m) != get(metas[0]):
                raise ModelDirError(
                    f"{d} and {first} differ in {what} ({_short(get(m))} vs {_short(get(metas[0]))}); "
                    "an ensemble needs members trained with the same config except train.seed"
                )
        for f, what in ((BACKBONE_CONFIG, "backbone config"), ("tokenizer.json", "tokenizer")):
            if _digest(d / f) != _digest(first / f):
                raise ModelDirError(
                    f"{d} and {first} have a different {what} ({f}); an ensemble needs members of the same backbone"
                )
    return metas


def config_differences(metas: list[dict]) -> list[str]:
    """Training-config settings (besides train.seed and output_dir) on which members differ, dotted."""
    flat = [_flatten({k: v for k, v in (m.get("config") or {}).items() if k != "output_dir"}) for m in metas]
    keys = sorted(set().union(*flat) - {"train.seed"})
    return [k for k in keys if any(f.get(k) != flat[0].get(k) for f in flat[1:])]


def ensemble_meta(dirs: list[Path], metas: list[dict]) -> dict:
    """The ensemble's sikap.json (before its own dev scores): the first member's, tuning averaged."""
    meta = {k: v for k, v in metas[0].items() if k not in PER_MODEL_KEYS}
    if meta["topics"]:
        names = meta["topics"]["names"]
        if any((m["topics"] or {}).get("thresholds") for m in metas):
            meta["topics"] = {
                **meta["topics"],
                "thresholds": {
                    n: round(float(np.mean([(m["topics"]["thresholds"] or {}).get(n, 0.5) for m in metas])), 4)
                    for n in names
                },
            }
    for head in ("topics", "stance"):
        if meta[head]:
            t = np.mean([m[head].get("temperature", 1.0) for m in metas])
            meta[head] = {**meta[head], "temperature": round(float(t), 4)}
    if metas[0].get("blend"):
        shares = {h: float(np.mean([(m.get("blend") or {}).get(h, 1.0) for m in metas])) for h in ("topics", "stance")}
        meta["blend"] = {**shares, "chosen_by": "mean of the members' shares (each chosen on dev by log-loss)"}
    meta["ensemble"] = {
        "combine": "mean of the members' window logits per head",
        "members": [
            {
                "source": str(d),
                "seed": (m.get("config") or {}).get("train", {}).get("seed"),
                "weights": WEIGHTS_FILE if i == 0 else f"{MEMBERS_DIR}/{i}/{WEIGHTS_FILE}",
                "dev_metrics": {
                    h: (m.get("dev_metrics") or {}).get(h, {}).get("macro_f1") for h in ("topics", "stance")
                },
            }
            for i, (d, m) in enumerate(zip(dirs, metas, strict=True))
        ],
    }
    return meta


def ensemble_lexical(dirs: list[Path], log=print):
    """The first member's lexical model, its temperatures the members' mean; and whether all were identical."""
    from sikap.lexical import set_temperature
    from sikap.modeldir import load_lexical

    models = [load_lexical(d) for d in dirs]
    first = models[0]
    same = all(_same_weights(first, m) for m in models[1:])
    if not same:
        log(
            "note: the members' lexical models differ (train.seed also shuffles its cross-validation folds, "
            f"so the regularization chosen can differ); the ensemble uses the first member's ({dirs[0]})"
        )
    for head in ("topics", "stance"):
        temps = [_temperature(m, head) for m in models]
        if temps[0] is not None:
            set_temperature(first, head, float(np.mean([t for t in temps if t is not None])))
    return first, same


def pack_ensemble(dirs: list[Path], out: Path, log=print) -> dict:
    """Write the ensemble of ``dirs`` to ``out``; returns its sikap.json."""
    dirs, out = [Path(d) for d in dirs], Path(out)
    metas = check_members(dirs)
    if out.resolve() in [d.resolve() for d in dirs]:
        raise ModelDirError(f"-o {out}: is one of the members; write the ensemble to a new directory")
    diff = config_differences(metas)
    if diff:
        log(f"note: the members' training configs also differ in {', '.join(diff)} (besides train.seed)")
    meta = ensemble_meta(dirs, metas)
    lexical = None
    if metas[0].get("lexical"):
        lexical, same = ensemble_lexical(dirs, log)
        meta["ensemble"]["lexical_identical"] = same
    if out.exists() and any(out.iterdir()):
        if not (out / META_FILE).is_file():
            raise ModelDirError(f"-o {out}: exists and is not a model dir; give a new or empty directory")
        shutil.rmtree(out)  # an earlier ensemble or model dir written there: replaced
    elif out.exists():
        out.rmdir()
    out.mkdir(parents=True)
    for f in dirs[0].iterdir():  # backbone config, tokenizer files, the first member's weights
        if f.is_file() and f.name not in (META_FILE, "lexical.json", "lexical.safetensors"):
            shutil.copy2(f, out / f.name)
    for i, d in enumerate(dirs[1:], start=1):
        (out / MEMBERS_DIR / str(i)).mkdir(parents=True)
        shutil.copy2(d / WEIGHTS_FILE, out / MEMBERS_DIR / str(i) / WEIGHTS_FILE)
    if lexical is not None:
        lexical.save(out)
    meta["weights_dtype"] = metas[0].get("weights_dtype", "float32")
    _write_meta(out, meta)
    meta.update(dev_scores(out, meta, log))
    _write_meta(out, meta)
    return meta


def dev_scores(out: Path, meta: dict, log=print) -> dict:
    """``dev_metrics`` and ``precision_check`` of the packed ensemble on the config's dev file, or {}."""
    from sikap.config import config_from_dict
    from sikap.modeldir import load_model_dir
    from sikap.predict import Predictor, resolve_precision
    from sikap.training.data import DataError
    from sikap.training.evaluate import score_predictions
    from sikap.training.precision_check import check_precisions, describe
    from sikap.training.trainer import load_splits, predict_records

    data = meta.get("data") or {}
    if "config" not in meta:
        return {}
    if "split_of" in (data.get("dev") or {}):
        log("note: no dev scores for the ensemble: the members' dev records were a seeded split of the train file")
        return {}
    cfg = config_from_dict(meta["config"], source=f"{out / META_FILE} config")
    try:
        train, dev, info = load_splits(cfg)
    except (OSError, DataError) as e:
        log(f"note: no dev scores for the ensemble: its data cannot be read ({str(e).splitlines()[0][:200]})")
        return {}
    changed = [n for n in ("train", "dev") if (data.get(n) or {}).get("sha256") != info[n].get("sha256")]
    if changed or not dev:
        log(f"note: no dev scores for the ensemble: the {' and '.join(changed) or 'dev'} data changed since training")
        return {}
    loaded = load_model_dir(out)
    lexical = loaded.lexical and train_only_lexical(train, cfg.train.seed, loaded.meta, loaded.lexical)
    pred = Predictor(loaded.model, loaded.builder, loaded.meta, precision=resolve_precision("auto"), lexical=lexical)
    dev_metrics = score_predictions(loaded.meta, dev, predict_records(pred, dev))
    known = {pred.precision: dev_metrics}
    check = check_precisions(loaded.model, loaded.builder, loaded.meta, dev, lexical, known=known)
    log(describe(check))
    return {"dev_metrics": dev_metrics, "precision_check": check}


def train_only_lexical(train: list, seed: int, meta: dict, saved):
    """The lexical model as the members had it when scoring dev: fit on the train records only (the saved
    one was refit on train + dev, which would inflate the dev scores), with the saved temperatures."""
    from sikap.lexical import set_temperature
    from sikap.training.lexical import fit_lexical

    model = fit_lexical(train, meta, seed=seed)
    if model is None:
        return saved
    for head in ("topics", "stance"):
        t = _temperature(saved, head)
        if t is not None:
            set_temperature(model, head, t)
    return model


def _write_meta(out: Path, meta: dict) -> None:
    from sikap.modeldir import library_versions

    meta = {**meta, "versions": library_versions()}
    (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


def _same_weights(a, b) -> bool:
    heads = lambda m: [m.topics, m.generic, *(m.stance.get(k) for k in sorted(m.stance))]  # noqa: E731
    ha, hb = heads(a), heads(b)
    if sorted(a.stance) != sorted(b.stance) or [h is None for h in ha] != [h is None for h in hb]:
        return False
    vocab = lambda m: [v.vocabulary_ for _, _, v in m.vectorizers]  # noqa: E731
    same = lambda x, y: x is None or (x.coef.shape == y.coef.shape and np.allclose(x.coef, y.coef, atol=1e-6))  # noqa: E731
    return vocab(a) == vocab(b) and all(same(x, y) for x, y in zip(ha, hb, strict=True))


def _temperature(model, head: str) -> float | None:
    heads = [model.topics] if head == "topics" else [*model.stance.values(), model.generic]
    temps = [h.temperature for h in heads if h is not None]
    return float(np.mean(temps)) if temps else None


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(x) -> str:
    s = json.dumps(x, ensure_ascii=False)
    return s if len(s) <= 120 else s[:117] + "..."
