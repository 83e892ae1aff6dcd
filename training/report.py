"""Figures and the self-contained HTML page of `sikap evaluate` (matplotlib, Agg backend: no display).

Figures, written next to ``report.md`` and linked from it:

- ``confusion_topics.png``: the topic confusion matrix (single-label), or one 2x2 matrix per topic
  as scikit-learn's ``multilabel_confusion_matrix`` (multi-label);
- ``confusion_stance.png``: a stance confusion matrix per actor, ``not_mentioned`` included as a
  prediction (a labeled pair whose actor no alias finds);
- ``reliability.png``: a reliability diagram per head, before and after the head temperature;
- ``f1.png``: per-label F1 bars (topics; stance classes; stance macro-F1 per actor).

``report.html`` is ``report.md`` rendered (markdown-it, tables on) with every figure inlined as a
base64 data URI, so the one file opens in a browser anywhere.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sikap.model import IGNORE
from sikap.training.dataset import label_arrays

FIGURES = {
    "confusion_topics": "Topic confusion matrix",
    "confusion_stance": "Stance confusion matrix per actor",
    "reliability": "Reliability diagram before and after calibration",
    "f1": "F1 per label",
}
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed; set before pyplot is imported anywhere in this process
    import matplotlib.pyplot as plt

    return plt


def topic_indicators(meta: dict, records: Sequence, preds: Sequence) -> tuple[np.ndarray, np.ndarray] | None:
    """Gold and predicted (n, T) 0/1 topic matrices over the articles with topic labels."""
    topics = meta.get("topics")
    if not topics:
        return None
    names = topics["names"]
    y, _ = label_arrays(records, meta)
    rows = [i for i in range(len(records)) if y[i, 0] != IGNORE]
    if not rows:
        return None
    pred = np.array([[float(n in preds[i].topics) for n in names] for i in rows]).reshape(-1, len(names))
    return y[rows].astype(int), pred.astype(int)


def write_figures(out_dir: Path, metrics: dict, meta: dict, topic_arrays=None) -> dict[str, str]:
    """Write the PNG figures that the metrics allow; returns ``{figure name: file name}``."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    made: dict[str, str] = {}
    drawers = {
        "confusion_topics": lambda: _topic_confusion(plt, meta, topic_arrays) if topic_arrays else None,
        "confusion_stance": lambda: _stance_confusion(plt, metrics.get("stance")),
        "reliability": lambda: _reliability(plt, metrics.get("calibration") or {}),
        "f1": lambda: _f1_bars(plt, metrics),
    }
    for name, draw in drawers.items():
        fig = draw()
        if fig is None:
            continue
        fig.savefig(out_dir / f"{name}.png", dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        made[name] = f"{name}.png"
    return made


def _grid(plt, n: int, size: float = 3.2, max_cols: int = 4):
    cols = min(n, max_cols)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def _matrix(ax, cm: np.ndarray, labels: Sequence[str], title: str) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    ConfusionMatrixDisplay(np.asarray(cm), display_labels=list(labels)).plot(
        ax=ax, colorbar=False, cmap="Blues", xticks_rotation=45
    )
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")


def _topic_confusion(plt, meta: dict, arrays):
    from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix

    y_true, y_pred = arrays
    names = meta["topics"]["names"]
    if not meta["topics"]["multi_label"]:
        size = max(4.0, 0.7 * len(names) + 2)
        fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
        idx = list(range(len(names)))
        cm = confusion_matrix(y_true.argmax(1), y_pred.argmax(1), labels=idx)
        _matrix(ax, cm, names, f"topics (n={len(y_true)})")
        return fig
    cms = multilabel_confusion_matrix(y_true, y_pred)  # (T, 2, 2): [[tn, fp], [fn, tp]]
    fig, axes = _grid(plt, len(names))
    for ax, name, cm in zip(axes, names, cms, strict=True):
        _matrix(ax, cm, ["no", "yes"], name)
    return fig


def _stance_confusion(plt, stance: dict | None):
    per_actor = (stance or {}).get("per_actor") or {}
    actors = [a for a, v in per_actor.items() if v.get("confusion")]
    if not actors:
        return None
    labels = per_actor[actors[0]]["confusion"]["labels"]
    fig, axes = _grid(plt, len(actors), size=max(3.6, 0.8 * len(labels) + 1.2), max_cols=3)
    for ax, a in zip(axes, actors, strict=True):
        cm = per_actor[a]["confusion"]
        _matrix(ax, cm["matrix"], cm["labels"], f"{a} (n={per_actor[a]['n']})")
    return fig


def _reliability(plt, calibration: dict):
    heads = [h for h in ("topics", "stance") if h in calibration]
    if not heads:
        return None
    fig, axes = _grid(plt, len(heads), size=4.2)
    for ax, h in zip(axes, heads, strict=True):
        c = calibration[h]
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
        for key, style, label in (
            ("reliability_before", "o-", f"before (ECE {c['ece_before']:.3f})"),
            ("reliability_after", "s-", f"after, T={c['temperature']:.2f} (ECE {c['ece_after']:.3f})"),
        ):
            pts = [(x, y) for x, y in zip(c[key]["confidence"], c[key]["frequency"], strict=True) if x is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, ms=4, label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="observed frequency")
        ax.set_title(f"{h} (n={c['n']})")
        ax.legend(loc="upper left", fontsize=8)
    return fig


def _f1_bars(plt, metrics: dict):
    panels = []
    if "topics" in metrics:
        panels.append(("topics", {n: v["f1"] for n, v in metrics["topics"]["per_label"].items()}))
    if "stance" in metrics:
        s = metrics["stance"]
        panels.append(("stance classes", {c: v["f1"] for c, v in s["per_class"].items()}))
        if s.get("per_actor"):
            panels.append(("stance macro-F1 per actor", {a: v["macro_f1"] for a, v in s["per_actor"].items()}))
    if not panels:
        return None
    fig, axes = _grid(plt, len(panels), size=4.2, max_cols=3)
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.barh(list(values), list(values.values()), color="tab:blue")
        ax.set(xlim=(0, 1), title=title, xlabel="F1")
        ax.invert_yaxis()
        for y, v in enumerate(values.values()):
            inside = v > 0.8  # the value at the bar's end, inside it (white) when there is no room after it
            ax.text(
                v - 0.02 if inside else v + 0.02,
                y,
                f"{v:.2f}",
                va="center",
                ha="right" if inside else "left",
                color="white" if inside else "black",
                fontsize=8,
            )
    return fig


# ---------------------------------------------------------------- markdown and html


def calibration_markdown(calibration: dict | None) -> list[str]:
    """The calibration table of report.md."""
    heads = [h for h in ("topics", "stance") if h in (calibration or {})]
    if not heads:
        return []
    lines = [
        f"## Calibration ({calibration['n_bins']}-bin ECE, Brier score; temperature fitted on dev)",
        "",
        "| head | temperature | n | ECE before | ECE after | Brier before | Brier after |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in heads:
        c = calibration[h]
        lines.append(
            f"| {h} | {c['temperature']:.3f} | {c['n']} | {c['ece_before']:.4f} | {c['ece_after']:.4f} "
            f"| {c['brier_before']:.4f} | {c['brier_after']:.4f} |"
        )
    return [*lines, ""]


def figures_markdown(figures: dict[str, str]) -> list[str]:
    """Figure links of report.md (files beside it)."""
    if not figures:
        return []
    lines = ["## Figures", ""]
    for name, file in figures.items():
        lines += [f"### {FIGURES[name]}", "", f"![{FIGURES[name]}]({file})", ""]
    return lines


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}img{max-width:100%}"
)


def report_html(markdown: str, folder: Path, title: str = "sikap evaluation") -> str:
    """``markdown`` as one HTML page, every local image from ``folder`` inlined as base64."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)

    def inline(m: re.Match) -> str:
        path = Path(folder) / html.unescape(m.group(1))
        if not path.is_file():
            return m.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode("ascii")}"'

    body = re.sub(r'src="([^":]+\.png)"', inline, body)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n{body}</body></html>\n"
    )
