"""Scoring predictions against gold records, and the `sikap evaluate` report (metrics.json, report.md,
report.html and PNG figures beside them; see sikap.training.report)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sikap.model import IGNORE
from sikap.training.dataset import label_arrays
from sikap.training.metrics import headline_score, stance_metrics, topic_metrics


def score_arrays(
    meta: dict,
    y_topics: np.ndarray | None,
    topic_pred: np.ndarray | None,
    gold_stance: Sequence[Sequence[str | None]],
    pred_stance: Sequence[Sequence[str]],
) -> dict:
    """Topic and stance metrics from gold and predicted labels (unlabeled rows/pairs skipped)."""
    out: dict = {}
    topics, stance = meta.get("topics"), meta.get("stance")
    if topics and y_topics is not None and topic_pred is not None:
        labeled = y_topics[:, 0] != IGNORE
        if labeled.any():
            out["topics"] = topic_metrics(y_topics[labeled], topic_pred[labeled], topics["names"])
    if stance:
        actors = [a["name"] for a in stance["actors"]]
        s = stance_metrics(gold_stance, pred_stance, actors, stance["classes"])
        if s.get("n"):
            out["stance"] = s
    out["score"] = headline_score(out)
    return out


def score_predictions(meta: dict, records, preds) -> dict:
    """Metrics for Predictor outputs on labeled records."""
    y_topics, gold_stance = label_arrays(records, meta)
    topic_pred = None
    if meta.get("topics"):
        names = meta["topics"]["names"]
        topic_pred = np.array([[float(n in p.topics) for n in names] for p in preds]).reshape(-1, len(names))
    return score_arrays(meta, y_topics, topic_pred, gold_stance, [p.stances for p in preds])


def evaluate_model_dir(
    model_dir: Path,
    data_path: Path,
    out_dir: Path | None = None,
    *,
    batch_size: int = 16,
    precision: str = "auto",
    progress: bool = True,
) -> dict:
    """Score a saved model on a labeled file; writes metrics.json, report.md, report.html and the
    figures into ``out_dir``. Calibration (ECE, Brier) is reported before and after the model's
    head temperatures."""
    from sikap.config import config_from_dict
    from sikap.modeldir import load_model_dir
    from sikap.precision import choose_precision
    from sikap.predict import Predictor
    from sikap.training.calibration import calibration_report
    from sikap.training.data import load_records
    from sikap.training.report import report_html, topic_indicators, write_figures
    from sikap.training.trainer import predict_records

    loaded = load_model_dir(model_dir)
    cfg = config_from_dict(loaded.meta["config"])
    records = load_records(Path(data_path), cfg)
    predictor = Predictor(
        loaded.model,
        loaded.builder,
        loaded.meta,
        batch_size=batch_size,
        precision=choose_precision(loaded.meta, precision).precision,  # auto: as classify decides
        lexical=loaded.lexical,
    )
    preds = predict_records(predictor, records, progress=progress)
    metrics = score_predictions(loaded.meta, records, preds)
    metrics["calibration"] = calibration_report(loaded.meta, records, preds)
    metrics["data"] = {"path": str(data_path), "records": len(records)}
    metrics["precision"] = predictor.precision
    out_dir = Path(out_dir) if out_dir else Path(model_dir) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    figures = write_figures(out_dir, metrics, loaded.meta, topic_indicators(loaded.meta, records, preds))
    title = f"{model_dir} on {data_path}"
    md = report_markdown(metrics, title=title, figures=figures)
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    (out_dir / "report.html").write_text(report_html(md, out_dir, title=f"sikap: {title}"), encoding="utf-8")
    return metrics


def report_markdown(metrics: dict, title: str, figures: dict[str, str] | None = None) -> str:
    """A readable Markdown report: tables per topic, per actor, per class, confusion matrices,
    calibration, and links to the ``figures`` (``{name: file}`` beside the report)."""
    from sikap.training.report import calibration_markdown, figures_markdown
    lines = [f"# Evaluation: {title}", ""]
    if "topics" in metrics:
        t = metrics["topics"]
        lines += [
            f"## Topics (n={t['n']})",
            "",
            f"macro-F1 **{t['macro_f1']:.3f}**, micro-F1 {t['micro_f1']:.3f}",
            "",
            "| topic | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
            for n, v in t["per_label"].items()
        ]
        lines.append("")
    if "stance" in metrics:
        s = metrics["stance"]
        fa = f", F_avg {s['f_avg']:.3f}" if "f_avg" in s else ""
        lines += [
            f"## Stance (n={s['n']} labeled article-actor pairs)",
            "",
            f"macro-F1 **{s['macro_f1']:.3f}**{fa}",
            "",
            "| actor | n | macro-F1 | F_avg | accuracy |",
            "|---|---|---|---|---|",
        ]
        for a, v in s["per_actor"].items():
            lines.append(
                f"| {a} | {v['n']} | {v['macro_f1']:.3f} | {v.get('f_avg', float('nan')):.3f} | {v['accuracy']:.3f} |"
            )
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [
            f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
            for c, v in s["per_class"].items()
        ]
        lines += ["", "Confusion matrix (rows gold, columns predicted):", "", _confusion_md(s["confusion"]), ""]
    lines += calibration_markdown(metrics.get("calibration"))
    lines += figures_markdown(figures or {})
    return "\n".join(lines)


def _confusion_md(cm: dict) -> str:
    labels = cm["labels"]
    rows = ["| gold \\ pred | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    rows += [f"| {g} | " + " | ".join(str(x) for x in row) + " |" for g, row in zip(labels, cm["matrix"], strict=True)]
    return "\n".join(rows)
