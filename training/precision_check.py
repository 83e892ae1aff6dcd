"""The precision check saved in ``sikap.json`` at training time: dev macro-F1 in fp32, int8 and bf16.

``classify --precision auto`` (:mod:`sikap.precision`) reads it to decide, without the dev set,
whether int8 is accurate enough for this model. Each precision scores the dev records through the
same Predictor path ``classify`` uses (lexical blend and thresholds included) on a copy of the
model, so the cost is one dev pass per precision (bf16 only where the CPU runs it natively).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from sikap import predict
from sikap.precision import MAX_LOSS
from sikap.quantize import FFN_DOWN_FP32
from sikap.training.data import Record

TASKS = ("topics", "stance")


def check_precisions(model, builder, meta: dict, dev: Sequence[Record], lexical=None, known: dict | None = None):
    """``{"fp32": {...}, "int8": {..., "loss": x}, ["bf16": ...], "dev_records": n}``, or None without dev.

    ``loss`` is the worst task's macro-F1 drop against fp32 (negative: the precision scored higher).
    ``known``: dev metrics already computed, by precision (``{"fp32": dev_metrics}``; saves a pass;
    the trainer's bf16 dev pass uses autocast over fp32 weights, close to classify's bf16 weights).
    """
    if not dev:
        return None
    known = known or {}
    base = _summary(known["fp32"]) if "fp32" in known else _score(model, builder, meta, dev, lexical, "fp32")
    out: dict = {"fp32": base, "dev_records": len(dev), "metric": "dev macro-F1, worst task"}
    others = ["int8"] + (["bf16"] if predict.cpu_supports_bf16() else [])
    for precision in others:
        try:
            if precision in known:
                scores = _summary(known[precision])
            else:
                scores = _score(model, builder, meta, dev, lexical, precision)
        except (RuntimeError, ValueError, NotImplementedError) as e:  # e.g. no quantized engine on this CPU
            out[precision] = {"error": f"{type(e).__name__}: {e}"[:300]}
            continue
        out[precision] = {**scores, "loss": _loss(base, scores)}
        if precision == "int8" and out["int8"]["loss"] > MAX_LOSS:  # the fallback: FFN down-projections fp32
            try:
                kept = _score(model, builder, meta, dev, lexical, "int8", keep_fp32=FFN_DOWN_FP32)
            except (RuntimeError, ValueError, NotImplementedError):
                continue
            if _loss(base, kept) < out["int8"]["loss"]:
                all_layers = out["int8"]["loss"]
                out["int8"] = {**kept, "loss": _loss(base, kept), "keep_fp32": list(FFN_DOWN_FP32)}
                out["int8"]["all_layers_loss"] = all_layers
    return out


def _loss(base: dict, scores: dict) -> float:
    drops = [base[k] - scores[k] for k in TASKS if k in base and k in scores]
    return round(max(drops), 4) if drops else 0.0


def _score(model, builder, meta: dict, dev: Sequence[Record], lexical, precision: str, keep_fp32=()) -> dict:
    """Dev macro-F1 per task at ``precision``, on a CPU copy of the model (int8/bf16 convert in place;
    int8 with the Linear layers ``keep_fp32`` names left in fp32)."""
    from sikap.predict import Predictor
    from sikap.quantize import quantize_int8
    from sikap.training.evaluate import score_predictions
    from sikap.training.trainer import predict_records

    twin = copy.deepcopy(model).cpu().float().eval()
    if precision == "int8":
        twin, precision = quantize_int8(twin, keep_fp32=keep_fp32), "fp32"  # converted: run as is
    predictor = Predictor(twin, builder, meta, precision=precision, lexical=lexical)
    return _summary(score_predictions(meta, dev, predict_records(predictor, dev)))


def _summary(metrics: dict) -> dict:
    return {k: round(metrics[k]["macro_f1"], 4) for k in TASKS if k in metrics}


def describe(check: dict | None) -> str:
    """One line for the training log."""
    if not check:
        return "precision check: skipped (no dev records)"
    parts = [f"fp32 {_fmt(check['fp32'])}"]
    for p in ("int8", "bf16"):
        if p in check:
            c = check[p]
            if "error" in c:
                parts.append(f"{p} {c['error']}")
            elif c.get("keep_fp32"):
                parts.append(
                    f"int8 with the FFN down-projections in fp32 {_fmt(c)} (loss {c['loss']:+.3f}; all layers in "
                    f"int8 lost {c['all_layers_loss']:+.3f})"
                )
            else:
                parts.append(f"{p} {_fmt(c)} (loss {c['loss']:+.3f})")
    return f"precision check on {check['dev_records']} dev records (macro-F1): " + "; ".join(parts)


def _fmt(scores: dict) -> str:
    return "/".join(f"{k} {scores[k]:.3f}" for k in TASKS if k in scores)
