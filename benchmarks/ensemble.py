"""Ablation: seed ensembles of saved model dirs (averaged probabilities) against their members.

    python benchmarks/ensemble.py --data benchmarks/data/demo-test.jsonl \
        runs/benchmarks/demo-s13,runs/benchmarks/demo-s1,runs/benchmarks/demo-s2

    python benchmarks/ensemble.py --folds 5 \
        --data 'benchmarks/data/id-stance-fold{k}-test.jsonl' \
        'runs/benchmarks/id-stance-fold{k}-s13,runs/benchmarks/id-stance-fold{k}-s1,runs/benchmarks/id-stance-fold{k}-s2'

A group is a comma-separated list of model dirs trained with the same config and different seeds. Each
member predicts as `classify` does (encoder blended with its lexical model by the share chosen on its own
dev split, its own tuned topic thresholds); the ensemble averages the members' blended probabilities
(topics and every actor's stance) and decides multi-label topics on the mean of the members' thresholds.
With ``--folds K`` the ``{k}`` in ``--data`` and in the group is replaced by 1..K and the figures are the
mean over folds. Nothing here is chosen on the scored split: the ensemble has no parameter of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np


def member_probs(model_dir: Path, texts: list[str]):
    """A member's blended topic probs (N, T), stance probs (N, A, C), mask (N, A), and its predictor."""
    from sikap.modeldir import load_model_dir
    from sikap.predict import Predictor

    loaded = load_model_dir(model_dir)
    pred = Predictor(loaded.model, loaded.builder, loaded.meta, precision="auto", lexical=loaded.lexical)
    tp, sp, mask = [], [], []
    for s in range(0, len(texts), 32):
        t_, s_, m_, _ = pred.probabilities(texts[s : s + 32])
        tp.append(t_), sp.append(s_), mask.append(m_.numpy())
    cat = lambda xs: np.concatenate(xs) if xs[0] is not None else None  # noqa: E731
    return cat(tp), cat(sp), np.concatenate(mask), pred, loaded.meta


def decide(pred, meta, tp, sp, mask, thresholds=None):
    from sikap.predict import NOT_MENTIONED, ArticlePrediction

    out = []
    saved = pred.thresholds
    if thresholds is not None:
        pred.thresholds = thresholds
    for i in range(mask.shape[0]):
        t = tp[i] if tp is not None else None
        st = [sp[i, k] if sp is not None and mask[i, k] else None for k in range(mask.shape[1])]
        labels = [pred.classes[int(np.argmax(p))] if p is not None else NOT_MENTIONED for p in st]
        out.append(ArticlePrediction(t, pred.decide_topics(t) if t is not None else [], st, labels))
    pred.thresholds = saved
    return out


def score_group(dirs: list[Path], data: Path) -> dict:
    from sikap.config import config_from_dict
    from sikap.modeldir import read_meta
    from sikap.text import article_text
    from sikap.training.data import load_records
    from sikap.training.evaluate import score_predictions

    meta0 = read_meta(dirs[0])
    records = load_records(data, config_from_dict(meta0["config"]))
    texts = [article_text(r.title, r.text) for r in records]
    members, tps, sps, ths = {}, [], [], []
    for d in dirs:
        tp, sp, mask, pred, meta = member_probs(d, texts)
        m = score_predictions(meta, records, decide(pred, meta, tp, sp, mask))
        members[str(d)] = {h: m[h]["macro_f1"] for h in ("topics", "stance") if h in m}
        tps.append(tp), sps.append(sp)
        ths.append(pred.thresholds)
    tp = np.mean(tps, axis=0) if tps[0] is not None else None
    sp = np.mean(sps, axis=0) if sps[0] is not None else None
    th = np.mean(ths, axis=0) if ths[0] is not None else None
    m = score_predictions(meta, records, decide(pred, meta, tp, sp, mask, th))
    ens = {h: m[h]["macro_f1"] for h in ("topics", "stance") if h in m}
    return {"members": members, "ensemble": ens}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("groups", nargs="+", help="comma-separated model dirs (one group = one ensemble)")
    p.add_argument("--data", required=True, help="labeled JSONL scored ({k} = fold number with --folds)")
    p.add_argument("--folds", type=int, default=0, help="replace {k} by 1..K and average over folds")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ks = list(range(1, args.folds + 1)) or [None]
    rows = {}
    for g in args.groups:
        for k in ks:
            fmt = (lambda s: s.replace("{k}", str(k))) if k is not None else (lambda s: s)  # noqa: B023
            dirs = [Path(fmt(d)) for d in g.split(",") if d]
            res = score_group(dirs, Path(fmt(args.data)))
            key = fmt(g)
            rows[key] = res
            print(key, json.dumps(res), flush=True)
    heads = sorted({h for r in rows.values() for h in r["ensemble"]})
    print(f"\nmean over {len(rows)} group(s)")
    print("| head | members, mean (min-max) | ensemble of the members |")
    print("|---|---|---|")
    for h in heads:
        per_seed = [statistics.mean(v[h] for v in r["members"].values()) for r in rows.values()]
        lo = statistics.mean(min(v[h] for v in r["members"].values()) for r in rows.values())
        hi = statistics.mean(max(v[h] for v in r["members"].values()) for r in rows.values())
        ens = statistics.mean(r["ensemble"][h] for r in rows.values())
        print(f"| {h} | {statistics.mean(per_seed):.3f} ({lo:.3f}-{hi:.3f}) | {ens:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
