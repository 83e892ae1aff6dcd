"""Training records: read JSONL/CSV/Parquet, validate against the config, split, fingerprint.

Every problem names the file, the line (or row), the field and the fix, and all problems
are reported at once.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sikap.config import NOT_MENTIONED, Config, DataSection, LabelsSection
from sikap.repair import repair_text

MAX_REPORTED = 30


class DataError(ValueError):
    """Training data is invalid; the message lists every problem found."""


@dataclass
class Record:
    """One labeled article. ``topics`` None = unlabeled for topics; ``stances`` holds labeled actors only."""

    id: str
    title: str
    text: str
    topics: list[str] | None = None
    stances: dict[str, str] = field(default_factory=dict)
    where: str = ""  # "file line N" for messages


# ---------------------------------------------------------------- reading


def read_rows(path: Path) -> list[tuple[str, Any]]:
    """(location, raw row) pairs from a JSONL, CSV or Parquet file; DataError listing every unreadable line."""
    rows, problems = scan_rows(path)
    if problems:
        raise DataError(_join(problems))
    return rows


def scan_rows(path: Path) -> tuple[list[tuple[str, Any]], list[str]]:
    """The readable rows of a data file and one problem per unreadable line (never raises).

    JSONL is parsed line by line so a broken line is reported with its number while the
    other lines are still read and validated; CSV and Parquet go through pandas/``datasets``.
    """
    path = Path(path)
    if not path.is_file():
        return [], [f"{path}: file not found" + (" (it is a folder)" if path.is_dir() else "")]
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        rows, problems = _read_jsonl(path)
    elif suffix in {".csv", ".tsv", ".parquet", ".pq"}:
        rows, problems = _read_tabular(path, suffix)
    else:
        return [], [f"{path}: unsupported format {suffix!r}; use .jsonl, .csv, .tsv or .parquet"]
    if not rows and not problems:
        problems.append(f"{path}: no records; the file is empty")
    return rows, problems


def _read_jsonl(path: Path) -> tuple[list[tuple[str, Any]], list[str]]:
    rows, problems = [], []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(_not_utf8(path, n, raw, e))
                continue
            if not line.strip():
                continue
            try:
                rows.append((f"{path} line {n}", json.loads(line)))
            except (json.JSONDecodeError, RecursionError) as e:
                why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                problems.append(f"{path} line {n}: invalid JSON ({why}); fix or remove the line")
    return rows, problems


def _not_utf8(path: Path, n: int, raw: bytes, e: UnicodeDecodeError) -> str:
    return f"{path} line {n}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); re-save as UTF-8"


def _utf8_problems(path: Path) -> list[str]:
    """One problem per line of ``path`` that is not valid UTF-8."""
    problems = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(_not_utf8(path, n, raw, e))
    return problems


def _read_tabular(path: Path, suffix: str) -> tuple[list[tuple[str, Any]], list[str]]:
    from datasets import Dataset

    try:
        if suffix in {".parquet", ".pq"}:
            ds = Dataset.from_parquet(str(path))
            first = 0
        else:
            import pandas as pd

            problems = _utf8_problems(path)
            if problems:
                return [], problems
            # every cell as text: ids like "007" and topic names like "1" must not be type-guessed
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
            ds = Dataset.from_pandas(frame, preserve_index=False)
            first = 1  # header line
    except Exception as e:  # pandas ParserError / EmptyDataError, pyarrow errors: the file cannot be parsed
        reason = " ".join(str(e).split()) or type(e).__name__
        return [], [f"{path}: cannot be read as {suffix.lstrip('.')} ({reason}); check quoting and the separator"]
    return [(f"{path} row {i + 1 + first}", row) for i, row in enumerate(ds.to_list())], []


def _parse_list(value: Any) -> Any:
    """CSV cells carry lists as JSON (``["a","b"]``) or separated by ``|`` or ``;``."""
    if not isinstance(value, str):
        return value
    v = value.strip()
    if not v:
        return None
    if v.startswith("["):
        return json.loads(v)
    sep = "|" if "|" in v else ";"
    return [p.strip() for p in v.split(sep) if p.strip()]


def _parse_object(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value.strip() else None
    return value


# ---------------------------------------------------------------- validation


def parse_records(rows: list[tuple[str, Any]], data: DataSection, labels: LabelsSection) -> list[Record]:
    """Validate raw rows into Records, collecting every problem before raising."""
    records, problems = validate_rows(rows, data, labels)
    if problems:
        raise DataError(_join(problems))
    return records


def validate_rows(
    rows: list[tuple[str, Any]], data: DataSection, labels: LabelsSection
) -> tuple[list[Record], list[str]]:
    """The valid Records among ``rows`` and one problem per invalid field (never raises)."""
    records, problems = [], []
    seen: dict[str, str] = {}
    for where, row in rows:
        rec, errs = _parse_row(where, row, data, labels)
        problems.extend(errs)
        if rec is None:
            continue
        if rec.id in seen:
            problems.append(
                f"{where}: field '{data.id_field}': duplicate id {rec.id!r} (first seen at {seen[rec.id]}); "
                "ids must be unique"
            )
            continue
        seen[rec.id] = where
        records.append(rec)
    return records, problems


def _parse_row(where: str, row: Any, data: DataSection, labels: LabelsSection) -> tuple[Record | None, list[str]]:
    if not isinstance(row, dict):
        return None, [f"{where}: expected a JSON object, got {type(row).__name__}"]
    errs: list[str] = []
    text = row.get(data.text_field)
    if not isinstance(text, str) or not text.strip():
        errs.append(f"{where}: field '{data.text_field}' is empty or missing; every record needs article text")
    raw_id = row.get(data.id_field)
    rid = str(raw_id) if raw_id not in (None, "") else where.replace(" ", "-")
    title = row.get(data.title_field) or ""
    topics = _validate_topics(where, row.get(data.topics_field), data, labels, errs)
    stances = _validate_stances(where, row.get(data.stances_field), data, labels, errs)
    if errs:
        return None, errs
    # the same repair (mojibake, quotes, NFC) that classify applies to articles it reads
    return Record(rid, repair_text(str(title))[0], repair_text(text)[0], topics, stances, where), []


def _validate_topics(where, value, data: DataSection, labels: LabelsSection, errs: list[str]) -> list[str] | None:
    fname = data.topics_field
    try:
        value = _parse_list(value)
    except json.JSONDecodeError:
        errs.append(f"{where}: field '{fname}' is not a JSON list")
        return None
    if value is None:
        return None
    if labels.topics is None:
        return None  # topics are not a task in this config: ignore them
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        errs.append(f"{where}: field '{fname}' must be a list of topic names, got {value!r}")
        return None
    allowed = labels.topics.names
    for t in value:
        if t not in allowed:
            errs.append(
                f"{where}: field '{fname}': topic {t!r} is not one of {', '.join(allowed)}; "
                "fix the label or add it to labels.topics.names"
            )
    if not labels.topics.multi_label and len(value) != 1:
        errs.append(
            f"{where}: field '{fname}': single-label topics need exactly one topic, got {len(value)}; "
            "set labels.topics.multi_label: true for several"
        )
    return list(value)


def _validate_stances(where, value, data: DataSection, labels: LabelsSection, errs: list[str]) -> dict[str, str]:
    fname = data.stances_field
    try:
        value = _parse_object(value)
    except json.JSONDecodeError:
        errs.append(f"{where}: field '{fname}' is not a JSON object")
        return {}
    if value is None or labels.stance is None:
        return {}
    if not isinstance(value, dict):
        errs.append(f"{where}: field '{fname}' must be an object mapping actor to stance, got {value!r}")
        return {}
    actors = [a.name for a in labels.stance.actors]
    classes = labels.stance.classes
    out = {}
    for actor, label in value.items():
        if label is None:
            continue  # e.g. Arrow filling absent keys: unlabeled
        if actor not in actors:
            errs.append(
                f"{where}: field '{fname}': actor {actor!r} is not in the config "
                f"(labels.stance.actors: {', '.join(actors)}); add it or fix the name"
            )
        elif label != NOT_MENTIONED and label not in classes:
            errs.append(
                f"{where}: field '{fname}': stance {label!r} for actor {actor!r} is not one of "
                f"{', '.join(classes)} (or {NOT_MENTIONED})"
            )
        else:
            out[actor] = label
    return out


def _join(problems: list[str]) -> str:
    head = f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in the training data:"
    shown = problems[:MAX_REPORTED]
    more = [f"... and {len(problems) - MAX_REPORTED} more"] if len(problems) > MAX_REPORTED else []
    return "\n".join([head, *shown, *more])


def load_records(path: Path, cfg: Config) -> list[Record]:
    """Read and validate one data file; DataError lists unreadable lines and invalid fields together."""
    rows, problems = scan_rows(path)
    records, invalid = validate_rows(rows, cfg.data, cfg.labels)
    if problems or invalid:
        raise DataError(_join(problems + invalid))
    return records


def check_data_files(cfg: Config) -> dict[str, list[Record]]:
    """Read and validate every data file the config names (train, dev, test), reporting every
    problem of every file at once; an id in two splits is a problem too (it leaks into the scores).

    Returns the records per split. This is what ``sikap check-config`` and ``sikap train`` run first.
    """
    splits = {name: getattr(cfg.data, name) for name in ("train", "dev", "test") if getattr(cfg.data, name)}
    out, problems, first_seen = {}, [], {}
    for name, path in splits.items():
        rows, unreadable = scan_rows(path)
        records, invalid = validate_rows(rows, cfg.data, cfg.labels)
        problems += unreadable + invalid
        for rec in records:
            if rec.id in first_seen and first_seen[rec.id][0] != name:
                problems.append(
                    f"{rec.where}: field '{cfg.data.id_field}': id {rec.id!r} is also in the {first_seen[rec.id][0]} "
                    f"file ({first_seen[rec.id][1]}); a record in two splits inflates the scores, keep it in one"
                )
            first_seen.setdefault(rec.id, (name, rec.where))
        out[name] = records
    if problems:
        raise DataError(_join(problems))
    return out


# ---------------------------------------------------------------- split and fingerprint


def stratify_key(rec: Record, cfg: Config) -> str:
    """A coarse label signature for stratified splitting: first topic plus first labeled stance."""
    parts = []
    if rec.topics:
        parts.append(sorted(rec.topics)[0])
    if cfg.labels.stance:
        for actor in cfg.labels.stance.actors:
            if actor.name in rec.stances:
                parts.append(f"{actor.name}={rec.stances[actor.name]}")
                break
    return "|".join(parts) or "-"


def split_train_dev(records: list[Record], cfg: Config) -> tuple[list[Record], list[Record]]:
    """Seeded stratified split of ``records`` into train and dev (rare signatures pooled)."""
    from sklearn.model_selection import train_test_split

    keys = [stratify_key(r, cfg) for r in records]
    counts = Counter(keys)
    keys = [k if counts[k] >= 2 else "rare" for k in keys]
    n_dev = max(1, round(len(records) * cfg.data.dev_fraction))
    stratify = keys if Counter(keys).most_common()[-1][1] >= 2 and n_dev >= len(set(keys)) else None
    train, dev = train_test_split(
        records, test_size=n_dev, random_state=cfg.train.seed, shuffle=True, stratify=stratify
    )
    return list(train), list(dev)


def fingerprint(path: Path) -> dict[str, Any]:
    """sha256 and size of a data file, saved with the model for provenance."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "sha256": h.hexdigest(), "bytes": Path(path).stat().st_size}
