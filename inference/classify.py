"""`sikap classify`: a folder of articles -> exactly one output record per article.

Records are written in input order, appended and flushed (fsync) after every batch, so a
crash loses at most the batch in flight; ``resume=True`` drops a torn last line, skips the
ids already written and completes the file, giving the same result as an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sikap.inference.predict import ArticlePrediction, Predictor
from sikap.inference.readers import ArticleInput, ScanStats, iter_articles
from sikap.text import article_text


class OutputExistsError(FileExistsError):
    """The output file exists and neither resume nor overwrite was asked for."""


@dataclass
class ClassifySummary:
    articles: int = 0  # records written in this run (predictions + errors)
    predicted: int = 0
    errors: int = 0
    resumed: int = 0  # records already present from an earlier run
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    output: Path | None = None

    @property
    def rate(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------- records


def prediction_record(art: ArticleInput, pred: ArticlePrediction, predictor: Predictor) -> dict:
    """The output record of a classified article (JSON-ready, probabilities rounded to 6 places)."""
    rec = _base_record(art)
    if pred.topic_probs is not None:
        rec["topics"] = pred.topics
        rec["topic_probs"] = {
            n: round(float(p), 6) for n, p in zip(predictor.topic_names, pred.topic_probs, strict=True)
        }
    if predictor.actors:
        rec["stances"] = {
            a: {
                "label": lab,
                "probs": None
                if p is None
                else {c: round(float(x), 6) for c, x in zip(predictor.classes, p, strict=True)},
            }
            for a, lab, p in zip(predictor.actors, pred.stances, pred.stance_probs, strict=True)
        }
    rec["n_tokens"], rec["n_windows"] = pred.n_tokens, pred.n_windows
    return rec


def error_record(art: ArticleInput) -> dict:
    rec = _base_record(art)
    rec["error"] = art.error
    return rec


def _base_record(art: ArticleInput) -> dict:
    rec = {"id": art.id, "source": art.source, "line": art.line, "title": art.title, "error": None}
    if art.warnings:
        rec["warnings"] = list(art.warnings)
    if art.meta:
        rec["meta"] = art.meta
    return rec


# ---------------------------------------------------------------- writers


class JsonlWriter:
    suffix = ".jsonl"

    def __init__(self, path: Path, predictor: Predictor):
        self.path = path

    def done_ids(self) -> list[str]:
        """Ids already written; a torn last line (crash mid-write) is cut off first."""
        _truncate_torn_tail(self.path)
        ids = []
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    ids.append(json.loads(line)["id"])
        return ids

    def format(self, records: list[dict]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


class CsvWriter:
    """Flat columns: topic probabilities as ``topic:<name>``, stances as ``stance:<actor>`` (+ class probs)."""

    suffix = ".csv"

    def __init__(self, path: Path, predictor: Predictor):
        self.path = path
        self.columns = ["id", "source", "line", "title", "error", "warnings", "topics"]
        self.columns += [f"topic:{n}" for n in predictor.topic_names]
        for a in predictor.actors:
            self.columns += [f"stance:{a}"] + [f"stance:{a}:{c}" for c in predictor.classes]

    def done_ids(self) -> list[str]:
        _truncate_torn_tail(self.path)
        with self.path.open(encoding="utf-8", newline="") as f:
            return [row["id"] for row in csv.DictReader(f)]

    def format(self, records: list[dict]) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        if not self.path.exists() or self.path.stat().st_size == 0:
            w.writeheader()
        for r in records:
            w.writerow(self.flatten(r))
        return buf.getvalue()

    @staticmethod
    def flatten(r: dict) -> dict:
        row = {k: r.get(k) for k in ("id", "source", "line", "title", "error")}
        row["warnings"] = "; ".join(r.get("warnings", []))
        row["topics"] = "|".join(r.get("topics") or [])
        row.update({f"topic:{n}": p for n, p in (r.get("topic_probs") or {}).items()})
        for a, s in (r.get("stances") or {}).items():
            row[f"stance:{a}"] = s["label"]
            row.update({f"stance:{a}:{c}": p for c, p in (s["probs"] or {}).items()})
        return row


def _truncate_torn_tail(path: Path) -> None:
    """Cut the file back to its last newline (a crash can leave a half-written last record)."""
    with path.open("rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------- the loop


def batched(items: Iterable[ArticleInput], n: int) -> Iterator[list[ArticleInput]]:
    batch: list[ArticleInput] = []
    for it in items:
        batch.append(it)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare_batch(batch: list[ArticleInput], predictor: Predictor) -> tuple[list[ArticleInput], list, list]:
    """Tokenize and window the readable articles of a batch (runs ahead of the model in a thread)."""
    good = [a for a in batch if a.error is None]
    texts = [article_text(a.title, a.text) for a in good]
    return batch, texts, predictor.features(texts) if texts else []


def prefetch(items: Iterator, depth: int = 1) -> Iterator:
    """Yield from ``items`` while a background thread computes the next ``depth`` ones.

    Reading files and tokenizing (Rust, releases the GIL) then overlaps the model's forward pass.
    """
    from concurrent.futures import ThreadPoolExecutor

    sentinel = object()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(next, items, sentinel) for _ in range(depth)]
        while True:
            item = pending.pop(0).result()
            if item is sentinel:
                return
            pending.append(pool.submit(next, items, sentinel))
            yield item


def classify_batch(prepared: tuple[list[ArticleInput], list, list], predictor: Predictor) -> list[dict]:
    """Records for a batch in input order: predictions for readable articles, error records otherwise."""
    batch, texts, feats = prepared
    good = [a for a in batch if a.error is None]
    preds = predictor.predict(texts, feats)
    by_id = {a.id: p for a, p in zip(good, preds, strict=True)}
    return [error_record(a) if a.error is not None else prediction_record(a, by_id[a.id], predictor) for a in batch]


def classify_folder(
    predictor: Predictor,
    inputs: Path,
    output: Path,
    *,
    fmt: str = "jsonl",
    resume: bool = False,
    overwrite: bool = False,
    batch_articles: int = 32,
    reader_options: dict | None = None,
    on_progress=None,
) -> ClassifySummary:
    """Classify every article under ``inputs`` into ``output`` (JSONL or CSV)."""
    writer = (CsvWriter if fmt == "csv" else JsonlWriter)(output, predictor)
    summary = ClassifySummary(output=output)
    done: set[str] = set()
    if output.exists() and output.stat().st_size > 0:
        if resume:
            done = set(writer.done_ids())
            summary.resumed = len(done)
        elif overwrite:
            output.unlink()
        else:
            raise OutputExistsError(f"{output} exists; pass --resume to complete it or --overwrite to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    stats = ScanStats()
    start = time.perf_counter()
    todo = (a for a in iter_articles(inputs, stats=stats, **(reader_options or {})) if a.id not in done)
    for prepared in prefetch(prepare_batch(b, predictor) for b in batched(todo, batch_articles)):
        records = classify_batch(prepared, predictor)
        _append(output, writer.format(records))
        n_err = sum(r["error"] is not None for r in records)
        summary.errors += n_err
        summary.predicted += len(records) - n_err
        summary.articles += len(records)
        if on_progress:
            on_progress(len(records))
    summary.seconds = time.perf_counter() - start
    summary.skipped = dict(stats.skipped)
    return summary
