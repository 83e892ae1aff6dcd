"""Ablation of the encoder/lexical blend: scores of saved model dirs for several fixed encoder shares.

    python benchmarks/blend_grid.py runs/benchmarks/id-stance-fold1-s13 benchmarks/data/id-stance-fold1-test.jsonl ...

Arguments come in pairs (model dir, labeled file). For each pair the encoder and the lexical model (with
its dev-fitted temperature) are run once, then blended with shares 0, 0.25, 0.5, 0.75 and 1 and with the
share stored in the model dir (chosen on its dev split); thresholds and not_mentioned come from the model
dir as in `classify`. This reads the scored split for every share, so it is an ablation, not a way to pick
the share (the shipped rule picks it on dev).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def scores(model_dir: Path, data: Path) -> dict[str, dict[str, float]]:
    from sikap.calibration import apply_temperature
    from sikap.config import config_from_dict
    from sikap.inference.predict import ArticlePrediction, Predictor
    from sikap.lexical import blend
    from sikap.modeldir import load_model_dir
    from sikap.text import article_text
    from sikap.training.data import load_records
    from sikap.training.evaluate import score_predictions

    loaded = load_model_dir(model_dir)
    records = load_records(data, config_from_dict(loaded.meta["config"]))
    texts = [article_text(r.title, r.text) for r in records]
    enc = Predictor(loaded.model, loaded.builder, loaded.meta, precision="auto")
    tp, sp, mask = [], [], []
    for s in range(0, len(texts), 32):
        t_, s_, m_, _ = enc.probabilities(texts[s : s + 32], calibrated=False)  # temperatures apply to the blend
        tp.append(t_), sp.append(s_), mask.append(m_.numpy())
    tp = np.concatenate(tp) if tp[0] is not None else None
    sp = np.concatenate(sp) if sp[0] is not None else None
    mask = np.concatenate(mask)
    lex_t, lex_s = loaded.lexical.predict(texts, len(enc.actors))
    stored = loaded.meta.get("blend") or {}
    out = {}
    for w in (*GRID, "dev"):
        wt = stored.get("topics", 1.0) if w == "dev" else w
        ws = stored.get("stance", 1.0) if w == "dev" else w
        preds = []
        for i in range(len(texts)):
            t = (
                blend(tp[i], lex_t[i], wt)
                if tp is not None and lex_t is not None
                else (tp[i] if tp is not None else None)
            )
            if t is not None:
                t = apply_temperature(t, enc.temperature["topics"], multi_label=enc.multi_label)
            st, labels = [], []
            for k in range(len(enc.actors)):
                if sp is None or not mask[i, k]:
                    st.append(None), labels.append("not_mentioned")
                    continue
                p = blend(sp[i, k], lex_s[k][i], ws) if lex_s[k] is not None else sp[i, k]
                p = apply_temperature(p, enc.temperature["stance"], multi_label=False)
                st.append(p), labels.append(enc.classes[int(np.argmax(p))])
            preds.append(ArticlePrediction(t, enc.decide_topics(t) if t is not None else [], st, labels))
        m = score_predictions(loaded.meta, records, preds)
        out[str(w)] = {k: m[k]["macro_f1"] for k in ("topics", "stance") if k in m}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="+", help="MODEL_DIR DATA [MODEL_DIR DATA ...]")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if len(args.pairs) % 2:
        p.error("give MODEL_DIR DATA pairs")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = {}
    for d, f in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        rows[d] = scores(Path(d), Path(f))
        print(d, json.dumps(rows[d]), flush=True)
    heads = sorted({h for r in rows.values() for v in r.values() for h in v})
    for h in heads:
        cols = [str(w) for w in (*GRID, "dev")]
        print(f"\n{h}: mean over {len(rows)} model dirs")
        print("| encoder share | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        means = [statistics.mean(r[c][h] for r in rows.values()) for c in cols]
        print("| macro-F1 | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
