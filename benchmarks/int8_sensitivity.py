"""Why does int8 cost accuracy? Dev macro-F1 and probability drift per quantization variant.

    python benchmarks/int8_sensitivity.py runs/demo --data examples/demo/dev.jsonl

Each variant quantizes a different set of the encoder's Linear layers (dynamic int8, per-channel
weights, per-tensor activation scales computed on the fly, as ``--precision int8`` does) on a fresh fp32
copy of the model, predicts the records through the same Predictor path as ``classify`` (lexical blend,
thresholds and head temperatures included), and reports macro-F1 per task next to fp32, plus the drift of
the article probabilities from fp32 (mean absolute difference over topics and mentioned actors' classes:
a smooth measure where F1 on a few dozen articles moves in steps). Variants:

- ``all``: every Linear layer (today's int8).
- ``all, batch 1``: the same, one window per forward pass: no padding shares the activation scale.
- ``only G`` / ``all but G`` for each group G of layer types (attention q/k/v, attention output,
  FFN up-projection, FFN down-projection).
- ``all, smoothed``: SmoothQuant scales (sikap.quantize) from ``--calibrate-on`` articles, alpha 0.5
  and sikap's default.
- ``all but layer i's FFN down`` for each layer i (``--per-layer``), and ``all but FFN down in the
  first/last k layers``.

Nothing is chosen on the scored split here: pass the dev file.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from sikap.quantize import FFN_DOWN_FP32

GROUPS = {
    "attn-qkv": r"attention\.self\.(query|key|value)",
    "attn-out": r"attention\.output\.dense",
    "ffn-up": r"intermediate\.dense",
    "ffn-down": FFN_DOWN_FP32[0],  # the layers int8's fallback keeps in fp32
}


def run(model_dir: Path, data: Path, per_layer: bool, calib: Path | None) -> list[dict]:
    import torch

    from sikap.config import config_from_dict
    from sikap.modeldir import load_model_dir
    from sikap.predict import Predictor
    from sikap.quantize import CALIBRATION_ARTICLES, SMOOTH_ALPHA, calibrate, int8_targets, quantize_int8
    from sikap.text import article_text
    from sikap.training.data import load_records
    from sikap.training.evaluate import score_predictions
    from sikap.training.trainer import predict_records

    loaded = load_model_dir(model_dir)
    meta = loaded.meta
    cfg = config_from_dict(meta["config"], None, source=str(model_dir / "sikap.json"))
    records = load_records(data, cfg)
    base_model = loaded.model.float().eval()
    names = int8_targets(base_model.encoder)
    n_layers = base_model.encoder.config.num_hidden_layers

    def predict(model, precision: str, batch_size: int = 16):
        pred = Predictor(
            model, loaded.builder, meta, precision=precision, lexical=loaded.lexical, batch_size=batch_size
        )
        start = time.perf_counter()
        out = predict_records(pred, records)
        return out, time.perf_counter() - start

    def vector(preds) -> np.ndarray:
        parts = []
        for p in preds:
            if p.topic_probs is not None:
                parts.append(np.asarray(p.topic_probs, dtype=np.float64))
            parts += [np.asarray(s, dtype=np.float64) for s in p.stance_probs if s is not None]
        return np.concatenate(parts) if parts else np.zeros(0)

    def summary(preds) -> dict:
        m = score_predictions(meta, records, preds)
        return {k: round(m[k]["macro_f1"], 4) for k in ("topics", "stance") if k in m}

    torch.manual_seed(0)
    ref, secs = predict(copy.deepcopy(base_model), "fp32")
    ref_v = vector(ref)
    rows = [{"variant": "fp32", "quantized": 0, **summary(ref), "drift": 0.0, "seconds": round(secs, 2)}]
    print(json.dumps(rows[-1]), flush=True)

    def add(label: str, keep: list[str], batch_size: int = 16, calibration=None, alpha: float = 0.5):
        model = quantize_int8(copy.deepcopy(base_model), keep, calibration=calibration or {}, alpha=alpha)
        preds, secs = predict(model, "fp32", batch_size)  # already quantized: no second conversion
        n_q = len(int8_targets(base_model.encoder, keep))
        drift = float(np.mean(np.abs(vector(preds) - ref_v)))
        row = {"variant": label, "quantized": n_q, **summary(preds), "drift": round(drift, 5)}
        row["seconds"] = round(secs, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)

    add("all", [])
    if calib is not None:
        texts = [article_text(r.title, r.text) for r in load_records(calib, cfg)][:CALIBRATION_ARTICLES]
        scales = calibrate(base_model, loaded.builder, meta, texts)
        for alpha in sorted({0.5, SMOOTH_ALPHA}):
            label = f"all, smoothed (alpha {alpha}; {len(texts)} calibration articles)"
            add(label, [], calibration=scales, alpha=alpha)
        add(f"all but ffn-down, smoothed (alpha {SMOOTH_ALPHA})", [GROUPS["ffn-down"]], calibration=scales)
    add("all, batch 1", [], batch_size=1)
    for g, pat in GROUPS.items():
        add(f"only {g}", [v for k, v in GROUPS.items() if k != g])
        add(f"all but {g}", [pat])
    if per_layer:
        for i in range(n_layers):
            add(f"all but layer {i} ffn-down", [rf"layer\.{i}\.output\.dense"])
    for k in (1, 2, 3):
        first = "|".join(str(i) for i in range(k))
        last = "|".join(str(i) for i in range(n_layers - k, n_layers))
        add(f"all but ffn-down of first {k}", [rf"layer\.({first})\.output\.dense"])
        add(f"all but ffn-down of last {k}", [rf"layer\.({last})\.output\.dense"])
    print(f"{len(names)} Linear layers in the encoder", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="labeled JSONL to score (the model's dev file)")
    ap.add_argument("--per-layer", action="store_true", help="also one variant per layer's FFN down-projection")
    ap.add_argument(
        "--calibrate-on", type=Path, help="labeled JSONL (the training file) for the smoothed variants' maxima"
    )
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = run(args.model_dir, args.data, args.per_layer, args.calibrate_on)
    print("\n| variant | Linear layers in int8 | topics | stance | prob. drift from fp32 | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['quantized']} | {r.get('topics', '')} | {r.get('stance', '')} "
            f"| {r['drift']:.4f} | {r['seconds']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
