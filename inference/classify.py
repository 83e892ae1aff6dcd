"""`sikap classify`: a folder of articles -> exactly one output record per article.

Records are written in input order, appended and flushed (fsync) after every batch, so a
crash loses at most the batch in flight; ``resume=True`` drops a torn last record, skips the
ids already written and completes the file, giving the same result as an uninterrupted run.

:func:`open_output` does every check of the output before any model is loaded: it takes an
exclusive lock (``OUTPUT.lock``, flock) so two runs never write one file, refuses an output
that is the input or is not a classify output (``--overwrite`` never deletes an article), and
makes the output known to the folder walk so it is never read back as articles.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sikap.inference.readers import ArticleInput, ScanStats, iter_articles, printable
from sikap.predict import ArticlePrediction, Predictor
from sikap.text import article_text

# the first columns of every CSV output, and the keys of every JSONL record
RECORD_HEAD = ("id", "source", "line", "title", "error")


class OutputError(ValueError):
    """The output cannot be used as asked: it is the input, locked, damaged or not a classify output."""


class OutputExistsError(OutputError, FileExistsError):
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
    if predictor.evidence:
        _add_evidence(rec, pred, predictor)
    added = (predictor.meta.get("stance") or {}).get("added_actors")
    if added:
        rec["added_actors"] = list(added)  # scored through the model's actor-independent stance slot
    rec["n_tokens"], rec["n_windows"] = pred.n_tokens, pred.n_windows
    return rec


def _add_evidence(rec: dict, pred: ArticlePrediction, predictor: Predictor) -> None:
    """``topic_evidence`` per predicted topic; ``evidence`` in the stance entry of each mentioned actor."""
    if "topics" in rec:
        rec["topic_evidence"] = {t: e.as_dict() for t, e in (pred.topic_evidence or {}).items()}
    for a, e in zip(predictor.actors, pred.stance_evidence or [None] * len(predictor.actors), strict=True):
        if e is not None:
            rec["stances"][a]["evidence"] = e.as_dict()


def has_evidence(rec: dict) -> bool | None:
    """Whether a prediction record was written with evidence (None: cannot tell, nothing to show)."""
    stances = (rec.get("stances") or {}).values()
    if "topic_evidence" in rec or any("evidence" in s for s in stances):
        return True
    if "topics" in rec or any(s.get("probs") is not None for s in stances):
        return False
    return None


def error_record(art: ArticleInput) -> dict:
    rec = _base_record(art)
    rec["error"] = art.error
    return rec


def _base_record(art: ArticleInput) -> dict:
    rec = {"id": art.id, "source": art.source, "line": art.line, "title": art.title, "error": None}
    rec["date"] = art.date  # ISO YYYY-MM-DD or None (see sikap.inference.dates); read by `sikap summarize`
    if art.fields:
        rec["fields"] = art.fields  # input fields kept with --keep-field (e.g. an outlet to group by)
    if art.warnings:
        rec["warnings"] = list(art.warnings)
    if art.meta:
        rec["meta"] = art.meta
    return _valid_unicode(rec)


def _valid_unicode(value):
    """Strings made writable as UTF-8 (a lone surrogate would crash the write of the whole batch)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_valid_unicode(k): _valid_unicode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_unicode(v) for v in value]
    return value


# ---------------------------------------------------------------- writers


class JsonlWriter:
    suffix = ".jsonl"

    def __init__(self, path: Path, predictor: Predictor):
        self.path = path
        self.predictor = predictor

    @staticmethod
    def done_ids(path: Path) -> tuple[list[str], dict | None]:
        """Ids already written and the first prediction record; a torn last line is cut off first."""
        _truncate_at(path, _last_newline(path.read_bytes()))
        ids, sample = [], None
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    ids.append(rec["id"])
                except (ValueError, KeyError, TypeError):
                    raise OutputError(
                        f"{path} line {n} is not a classify record (edited or damaged); remove that line, "
                        "or start again with --overwrite"
                    ) from None
                if sample is None and rec.get("error") is None:
                    sample = rec
        return ids, sample

    def check_compatible(self, sample: dict | None) -> None:
        """The records already written came from a model with the same topics and actors."""
        if sample is None:
            return
        p = self.predictor
        topics = sorted(sample.get("topic_probs") or {}) if "topic_probs" in sample else None
        actors = sorted(sample.get("stances") or {}) if "stances" in sample else None
        want_topics = sorted(p.topic_names) if p.topic_names else None
        want_actors = sorted(p.actors) if p.actors else None
        if (topics, actors) != (want_topics, want_actors):
            raise OutputError(
                f"{self.path} was written by a model with other labels (topics {topics}, actors {actors}; "
                f"this model: {want_topics}, {want_actors}); resume it with that model or choose another -o"
            )
        written = has_evidence(sample)
        if written is not None and written != p.evidence:
            flag = "without --no-evidence" if written else "with --no-evidence"
            raise OutputError(f"{self.path} was written {flag}; resume it {flag} too, or choose another -o")

    def format(self, records: list[dict]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


class CsvWriter:
    """Flat columns: topic probabilities as ``topic:<name>``, stances as ``stance:<actor>`` (+ class probs);
    with evidence, the snippets as ``evidence:topic:<name>`` and ``evidence:stance:<actor>``."""

    suffix = ".csv"

    def __init__(self, path: Path, predictor: Predictor):
        self.path = path
        self.columns = ["id", "source", "line", "title", "error", "warnings", "date", "topics"]
        self.columns += [f"topic:{n}" for n in predictor.topic_names]
        for a in predictor.actors:
            self.columns += [f"stance:{a}"] + [f"stance:{a}:{c}" for c in predictor.classes]
        if predictor.evidence:
            self.columns += [f"evidence:topic:{n}" for n in predictor.topic_names]
            self.columns += [f"evidence:stance:{a}" for a in predictor.actors]

    @staticmethod
    def done_ids(path: Path) -> tuple[list[str], list[str]]:
        """Ids already written and the header; a torn last record is cut off first.

        The cut is at the last line end outside quotes: a crash inside a quoted multi-line
        title leaves an open quote, and cutting at its last newline would swallow what follows.
        """
        _truncate_at(path, _last_csv_record_end(path.read_bytes()))
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        header = rows[0] if rows else []
        for n, row in enumerate(rows[1:], 2):
            if len(row) != len(header):
                raise OutputError(
                    f"{path} record {n} has {len(row)} fields, the header {len(header)} (edited or damaged); "
                    "start again with --overwrite"
                )
        return [row[0] for row in rows[1:]], header

    def check_compatible(self, header: list[str]) -> None:
        if header and header != self.columns:
            evidence = any(h.startswith("evidence:") for h in header)
            if evidence != any(h.startswith("evidence:") for h in self.columns):
                flag = "without --no-evidence" if evidence else "with --no-evidence"
                raise OutputError(f"{self.path} was written {flag}; resume it {flag} too, or choose another -o")
            raise OutputError(
                f"{self.path} has other columns than this model writes (written by another model?); "
                "resume it with that model or choose another -o"
            )

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
        row["date"] = r.get("date")
        row["topics"] = "|".join(r.get("topics") or [])
        row.update({f"topic:{n}": p for n, p in (r.get("topic_probs") or {}).items()})
        for a, s in (r.get("stances") or {}).items():
            row[f"stance:{a}"] = s["label"]
            row.update({f"stance:{a}:{c}": p for c, p in (s["probs"] or {}).items()})
            if s.get("evidence"):
                row[f"evidence:stance:{a}"] = s["evidence"]["text"]
        row.update({f"evidence:topic:{t}": e["text"] for t, e in (r.get("topic_evidence") or {}).items()})
        return row


def _last_newline(data: bytes) -> int:
    """Length of ``data`` up to its last newline (a crash can leave a half-written last line)."""
    return data.rfind(b"\n") + 1


def _last_csv_record_end(data: bytes) -> int:
    """Length of ``data`` up to the last newline outside a quoted field.

    The csv module doubles quotes inside quoted fields, so a newline ends a record exactly
    when the number of quote characters before it is even.
    """
    end, quotes, pos = 0, 0, 0
    for line in data.split(b"\n")[:-1]:
        pos += len(line) + 1
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            end = pos
    return end


def _truncate_at(path: Path, end: int) -> None:
    if end != path.stat().st_size:
        with path.open("rb+") as f:
            f.truncate(end)


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # disk full, removed drive: the run cannot go on, and --resume completes it
        raise OutputError(f"cannot write {path}: {e.strerror or e}; fix that and run again with --resume") from None


# ---------------------------------------------------------------- the output file


class OutputLock:
    """An exclusive flock on ``OUTPUT.lock`` held for the whole run.

    The lock file is removed on release while still locked; a run that opened the old file
    meanwhile notices that the path now names another file and locks that one instead. After
    kill -9 the file stays, unlocked, and the next run takes it.
    """

    def __init__(self, output: Path):
        self.output = output
        self.path = output.with_name(output.name + ".lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        while self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"cannot create the lock file {self.path}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise OutputError(f"cannot lock {self.path}: {e.strerror or e} (does this filesystem "
                                      "support locks?); write the output to a local disk") from None
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise OutputError(
                    f"{self.output} is being written by another sikap classify (pid {holder}, lock {self.path}); "
                    "wait for it to finish, or choose another -o"
                ) from None
            if self._names(fd):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
            else:
                os.close(fd)

    def _names(self, fd: int) -> bool:
        """True when the lock path still names the file ``fd`` locked (not unlinked meanwhile)."""
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def key(self) -> tuple[int, int]:
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


@dataclass
class OutputTarget:
    """A locked, checked output file: the ids already in it and files the walk must not read."""

    path: Path
    fmt: str
    lock: OutputLock
    done: set[str] = field(default_factory=set)
    existing: object = None  # JSONL: the first prediction record; CSV: the header (model check)
    exclude: frozenset = frozenset()
    created: bool = False

    def close(self) -> None:
        """Release the lock; an output this run created but never wrote to is removed."""
        if self.created and self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()
        self.lock.release()

    def __enter__(self) -> OutputTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_inputs(inputs: Path) -> None:
    """The input folder (or file) can be read; per-file problems become error records later."""
    inputs = Path(inputs)
    if not inputs.exists():
        raise OutputError(f"{inputs}: no such file or folder")
    if not os.access(inputs, os.R_OK | (os.X_OK if inputs.is_dir() else 0)):
        raise OutputError(f"{inputs}: permission denied; sikap needs to read it")


def open_output(inputs: Path, output: Path, *, fmt: str = "jsonl", resume: bool = False,
                overwrite: bool = False) -> OutputTarget:
    """Check and lock ``output`` for a run over ``inputs``; no model is needed (fails in a second).

    Raises OutputError (or OutputExistsError) with a one-line reason and the fix.
    """
    inputs, output = Path(inputs), Path(output)
    if resume and overwrite:
        raise OutputError("--resume and --overwrite exclude each other")
    if output.is_dir():
        raise OutputError(f"{output} is a folder; -o names the output file, e.g. {output / 'predictions.jsonl'}")
    if inputs.is_file() and output.exists() and os.path.samefile(inputs, output):
        raise OutputError(f"{output} is the input file; write the predictions to another file")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder of {output}: {e.strerror or e}") from None
    lock = OutputLock(output)
    lock.acquire()
    try:
        target = OutputTarget(output, fmt, lock, created=not output.exists())
        _take_over_existing(target, inputs, resume=resume, overwrite=overwrite)
        output.touch()  # from now on the walk can recognise the output by its inode
        st = output.stat()
        target.exclude = frozenset({(st.st_dev, st.st_ino), lock.key()})
    except BaseException:
        lock.release()
        raise
    return target


def _take_over_existing(target: OutputTarget, inputs: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, empty or read back an existing output file."""
    path = target.path
    if not path.exists() or path.stat().st_size == 0:
        return
    if not (resume or overwrite):
        raise OutputExistsError(f"{path} exists; pass --resume to complete it or --overwrite to replace it")
    kind = sniff_output(path)
    if kind is None:
        inside = _is_within(path, inputs)
        raise OutputError(
            f"{path} exists and is not a sikap classify output"
            + (" (it is an article file under the input folder)" if inside else "")
            + f"; --{'resume' if resume else 'overwrite'} only continues or replaces a file classify wrote, "
            "so choose another -o"
        )
    if kind != target.fmt:
        raise OutputError(f"{path} holds {kind} records, not {target.fmt}; pass --format {kind} or another -o")
    if overwrite:
        with path.open("wb"):
            pass
        return
    reader = CsvWriter if kind == "csv" else JsonlWriter
    try:
        ids, target.existing = reader.done_ids(path)
    except UnicodeDecodeError as e:
        raise OutputError(
            f"{path}: not UTF-8 at byte {e.start} (edited or damaged); start again with --overwrite"
        ) from None
    target.done = set(ids)


def sniff_output(path: Path) -> str | None:
    """"csv" or "jsonl" when ``path`` starts the way classify writes its output, else None."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
    first, newline, _ = head.partition(b"\n")
    first = first.rstrip(b"\r")
    csv_head = ",".join(RECORD_HEAD).encode()
    if first.startswith(csv_head) or (not newline and csv_head.startswith(first)):
        return "csv"
    try:
        rec = json.loads(first)
    except ValueError:  # a torn first record (crash during the first write)
        torn = not newline and first.startswith(b'{"id": ') and b'"source": ' in first
        return "jsonl" if torn else None
    return "jsonl" if isinstance(rec, dict) and all(k in rec for k in RECORD_HEAD) else None


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


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
    target: OutputTarget | None = None,
) -> ClassifySummary:
    """Classify every article under ``inputs`` into ``output`` (JSONL or CSV).

    ``target``: an output already checked and locked by :func:`open_output` (the CLI does that
    before loading the model); without it the output is opened here. Either way the lock is
    released at the end.
    """
    target = target or open_output(inputs, output, fmt=fmt, resume=resume, overwrite=overwrite)
    with target:
        return _classify_into(predictor, inputs, target, batch_articles, reader_options, on_progress)


def _classify_into(predictor, inputs, target: OutputTarget, batch_articles, reader_options, on_progress):
    output, done = target.path, target.done
    writer = (CsvWriter if target.fmt == "csv" else JsonlWriter)(output, predictor)
    if done:
        writer.check_compatible(target.existing)
    summary = ClassifySummary(output=output, resumed=len(done))
    stats = ScanStats()
    start = time.perf_counter()
    articles = iter_articles(inputs, stats=stats, exclude=target.exclude, **(reader_options or {}))
    todo = (a for a in articles if a.id not in done)
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
