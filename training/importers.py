"""Turn public Indonesian datasets into sikap JSONL records.

Each importer reads one file in the dataset's own format and yields records of the
form ``{"id", "title", "text", "topics"?, "stances"?, "meta"?}``. What cannot be used is
dropped and counted by reason in an :class:`ImportReport`, with a few row references per
reason, so nothing disappears silently. Row numbers are 1-based data rows in file order
(the header is not counted), which is also the order records are written in.

Supported kinds (see :class:`DatasetKind`):

- ``sib200``: SIB-200 TSV ``index_id, category, text`` -> single-label topic.
- ``id-stance``: the id_stance blog-article CSV (``;``, BOM, JSON-like paragraph list)
  -> stance toward one politician per article.
- ``indonlu-absa``: IndoNLU CASA / HoASA CSV -> one stance per aspect column.
- ``indonlu-smsa``: IndoNLU SmSA TSV ``text<TAB>label`` -> single-label topic.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import ftfy

from sikap.text import count_alias_mentions

STANCE_CLASSES = ("favor", "against", "neutral")
MAX_EXAMPLES = 5


class DatasetKind(str, Enum):
    """Dataset formats that :func:`import_dataset` understands."""

    sib200 = "sib200"
    id_stance = "id-stance"
    indonlu_absa = "indonlu-absa"
    indonlu_smsa = "indonlu-smsa"


class DatasetFormatError(ValueError):
    """The source file is not in the format the chosen kind expects."""


@dataclass
class ImportReport:
    """What an import read, wrote and dropped, and the labels it found.

    ``dropped`` counts whole rows that were not written; ``notes`` counts rows that were
    written but changed or only partly labeled (e.g. one aspect left unlabeled).
    ``examples`` maps every reason in either dict to a few row references.
    """

    kind: str
    source: Path
    out: Path
    read: int = 0
    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    topics: Counter[str] = field(default_factory=Counter)
    actors: Counter[str] = field(default_factory=Counter)
    stance_labels: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str, ref: str) -> None:
        """Count a row that is not written."""
        self._tally(self.dropped, reason, ref)

    def note(self, reason: str, ref: str) -> None:
        """Count a row that is written but changed or partly labeled."""
        self._tally(self.notes, reason, ref)

    def _tally(self, counts: dict[str, int], reason: str, ref: str) -> None:
        counts[reason] = counts.get(reason, 0) + 1
        refs = self.examples.setdefault(reason, [])
        if len(refs) < MAX_EXAMPLES:
            refs.append(ref)

    def count_record(self, record: dict) -> None:
        """Add a written record's labels to the inventory."""
        self.written += 1
        self.topics.update(record.get("topics", []))
        stances = record.get("stances", {})
        self.actors.update(stances.keys())
        self.stance_labels.update(stances.values())


def import_dataset(kind: str, source: Path, out: Path) -> ImportReport:
    """Read ``source`` as dataset ``kind`` and write sikap JSONL records to ``out``.

    ``source`` must be one file (e.g. ``train.tsv``), not a folder. The parent folder of
    ``out`` is created if needed and ``out`` is overwritten. Raises
    :class:`DatasetFormatError` when the file does not fit ``kind``.
    """
    kind = _check_kind(kind)
    source, out = Path(source), Path(out)
    _check_source(source)
    report = ImportReport(kind=kind.value, source=source, out=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write next to `out` and rename at the end, so a format error leaves no half-written file.
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as f:
            for record in _READERS[kind](source, report):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                report.count_record(record)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return report


def _check_kind(kind: str) -> DatasetKind:
    """Map a kind name to :class:`DatasetKind`, listing the choices when it is unknown."""
    try:
        return DatasetKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in DatasetKind)
        raise DatasetFormatError(f"unknown dataset kind '{kind}': choose one of {choices}") from None


def _check_source(source: Path) -> None:
    """Require one existing file; for a folder, name the files it holds."""
    if source.is_dir():
        files = sorted(p.name for p in source.iterdir() if p.is_file())
        hint = f", e.g. {source / files[-1]} (it holds: {', '.join(files)})" if files else ""
        raise DatasetFormatError(f"{source} is a folder; pass one file inside it{hint}")
    if not source.is_file():
        raise DatasetFormatError(f"{source} does not exist; check the path")


# --- reading delimited files -------------------------------------------------------------


def _rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(row_number, fields)`` for every row; a UTF-8 BOM is removed.

    Quoting follows the CSV convention (a field starting with ``"`` is quoted, ``""`` is a
    literal quote): SIB-200's TSV relies on it, and it is what pandas does upstream.
    """
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            # Blank lines are not rows (csv yields [] for them).
            yield from enumerate((fields for fields in reader if fields), start=0)
        except csv.Error as e:
            raise DatasetFormatError(
                f"{path} line {reader.line_num}: cannot parse as '{delimiter}'-separated text ({e}); "
                "check the file kind and that quotes are balanced"
            ) from None
        except UnicodeDecodeError as e:
            raise DatasetFormatError(f"{path}: not UTF-8 text ({e}); re-save the file as UTF-8") from None


def _header_rows(
    path: Path, delimiter: str, required: Iterable[str], report: ImportReport
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(row_number, {lower-cased column: value})`` for the data rows of a file with a header.

    Columns with an empty name (a trailing delimiter) are ignored. Rows with too few fields
    are dropped, and so are rows whose extra fields carry text.
    """
    rows = _rows(path, delimiter)
    _, header = next(rows, (0, []))
    names = [h.strip().lower() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise DatasetFormatError(
            f"{path}: kind '{report.kind}' needs column(s) {', '.join(missing)} in the header row, "
            f"found {', '.join(h for h in names if h) or 'none'}; check that KIND matches the file"
        )
    for n, fields in rows:
        report.read += 1
        if len(fields) < len(names) and any(names[len(fields) :]):
            report.drop(f"too few fields (expected {len(names)})", f"row {n}")
            continue
        if any(v.strip() for v in fields[len(names) :]):
            report.drop(f"too many fields (expected {len(names)})", f"row {n}")
            continue
        yield n, {name: value for name, value in zip(names, fields, strict=False) if name}


def _id_part(path: Path) -> str:
    """A short split name for ids from a file name: ``train_preprocess.csv`` -> ``train``."""
    # IndoNLU names every file <split>_preprocess.*; the suffix adds nothing to an id.
    stem = re.sub(r"_preprocess$", "", path.stem)
    return re.sub(r"[^0-9A-Za-z]+", "-", stem).strip("-").lower() or "data"


def _clean(text: str) -> str:
    """Strip and collapse runs of whitespace to one space."""
    return " ".join(text.split())


# --- sib200 -------------------------------------------------------------------------------


def read_sib200(path: Path, report: ImportReport) -> Iterator[dict]:
    """SIB-200 TSV ``index_id, category, text`` -> ``topics: [category]``, id ``sib200-<index_id>``."""
    for n, row in _header_rows(path, "\t", ("index_id", "category", "text"), report):
        text, category, index_id = row["text"].strip(), row["category"].strip(), row["index_id"].strip()
        if not text:
            report.drop("empty text", f"row {n}")
        elif not category:
            report.drop("empty category", f"row {n}")
        elif not index_id:
            report.drop("empty index_id", f"row {n}")
        else:
            yield {"id": f"sib200-{index_id}", "title": "", "text": text, "topics": [category]}


# --- indonlu-smsa -------------------------------------------------------------------------

SMSA_LABELS = ("positive", "negative", "neutral")


def read_smsa(path: Path, report: ImportReport) -> Iterator[dict]:
    """IndoNLU SmSA TSV without header, ``text<TAB>label`` -> ``topics: [label]``."""
    prefix = f"smsa-{_id_part(path)}"
    for n, fields in _rows(path, "\t"):
        n += 1  # no header: the first line is data row 1
        report.read += 1
        if len(fields) != 2:
            report.drop("not 2 tab-separated fields (text, label)", f"row {n}")
            continue
        text, label = fields[0].strip(), fields[1].strip().lower()
        if not text:
            report.drop("empty text", f"row {n}")
        elif label not in SMSA_LABELS:
            report.drop(f"label '{label}' is not one of {', '.join(SMSA_LABELS)}", f"row {n}")
        else:
            yield {"id": f"{prefix}-{n}", "title": "", "text": text, "topics": [label]}


# --- indonlu-absa -------------------------------------------------------------------------

# IndoNLU CASA writes positive/negative/neutral, HoASA pos/neg/neut.
ABSA_LABELS = {
    "positive": "favor",
    "pos": "favor",
    "negative": "against",
    "neg": "against",
    "neutral": "neutral",
    "neut": "neutral",
}
# The text column tells the two IndoNLU aspect datasets apart.
ABSA_TEXT_COLUMNS = {"sentence": "casa", "review": "hoasa"}


def read_absa(path: Path, report: ImportReport) -> Iterator[dict]:
    """IndoNLU CASA/HoASA CSV -> one stance per aspect column (aspects are the actors).

    An unknown label (HoASA has a few ``neg_pos``) leaves that aspect unlabeled for the
    row; the row is dropped only when no aspect is left.
    """
    text_col = _absa_text_column(path)
    prefix = f"{ABSA_TEXT_COLUMNS[text_col]}-{_id_part(path)}"
    for n, row in _header_rows(path, ",", (text_col,), report):
        text = row.pop(text_col).strip()
        if not text:
            report.drop("empty text", f"row {n}")
            continue
        stances = _absa_stances(row, n, report)
        if not stances:
            report.drop("no aspect has a usable label", f"row {n}")
            continue
        yield {"id": f"{prefix}-{n}", "title": "", "text": text, "stances": stances}


def _absa_text_column(path: Path) -> str:
    """Find the text column (``sentence`` or ``review``) in the header."""
    rows = _rows(path, ",")
    try:
        _, header = next(rows, (0, []))
    finally:
        rows.close()  # close the file now rather than at garbage collection
    names = [h.strip().lower() for h in header]
    for name in ABSA_TEXT_COLUMNS:
        if name in names:
            return name
    raise DatasetFormatError(
        f"{path}: no text column; expected one of {', '.join(ABSA_TEXT_COLUMNS)} in the header, "
        f"found {', '.join(names)}. Is this an IndoNLU CASA/HoASA file?"
    )


def _absa_stances(aspects: dict[str, str], n: int, report: ImportReport) -> dict[str, str]:
    """Map each aspect's label to a stance class, noting labels that cannot be mapped."""
    stances = {}
    for aspect, value in aspects.items():
        label = value.strip().lower()
        if label in ABSA_LABELS:
            stances[aspect] = ABSA_LABELS[label]
        elif not label:
            report.note("empty aspect label (aspect left unlabeled)", f"row {n} ({aspect})")
        else:
            report.note(f"unknown aspect label '{label}' (aspect left unlabeled)", f"row {n} ({aspect})")
    return stances


# --- id-stance ----------------------------------------------------------------------------

# Display form for each target; the file spells them "ahok", "AHY  ", "Ridwan Kamil", ...
ID_STANCE_TARGETS = {
    "ahok": "Ahok",
    "jokowi": "Jokowi",
    "ridwan kamil": "Ridwan Kamil",
    "ahy": "AHY",
    "prabowo": "Prabowo",
}
# Names the articles use for each target (checked against the bodies, see alias_coverage).
ID_STANCE_ALIASES = {
    "Ahok": ["Ahok", "Basuki", "Basuki Tjahaja Purnama", "BTP"],
    "Jokowi": ["Jokowi", "Joko Widodo"],
    "Ridwan Kamil": ["Ridwan Kamil", "Emil", "Kang Emil", "RK"],
    "AHY": ["AHY", "Agus Harimurti", "Agus Harimurti Yudhoyono", "Agus Yudhoyono"],
    "Prabowo": ["Prabowo", "Prabowo Subianto", "Bowo"],
}
ID_STANCE_LABELS = {"for": "favor", "against": "against", "againts": "against"}
ID_STANCE_COLUMNS = ("tokoh", "event", "judul artikel", "isi artikel", "stance final")


def read_id_stance(path: Path, report: ImportReport) -> Iterator[dict]:
    """id_stance CSV -> ``stances: {<target>: favor|against}``, id ``id-stance-<row>``.

    Rows labeled ``no`` (neither for nor against) are dropped. File order is kept because
    the published benchmark folds over rows in that order.
    """
    for n, row in _header_rows(path, ";", ID_STANCE_COLUMNS, report):
        record = _id_stance_record(n, row, report)
        if record is not None:
            yield record


def _id_stance_record(n: int, row: dict[str, str], report: ImportReport) -> dict | None:
    """Build one record, or count why the row is dropped and return None."""
    ref = f"row {n}"
    label = _id_stance_label(row["stance final"], ref, report)
    target = _id_stance_target(row["tokoh"], ref, report) if label else None
    if label is None or target is None:
        return None
    title, body = row["judul artikel"], row["isi artikel"]
    if not body.strip() and title.strip().startswith("["):
        # One row has its body in the title column and an empty body column.
        title, body = "", title
        report.note("body found in the title column (moved to text)", ref)
    text = _id_stance_body(body, ref, report)
    if not text:
        report.drop("empty text", ref)
        return None
    return {
        "id": f"id-stance-{n}",
        "title": _clean(ftfy.fix_text(title)),
        "text": text,
        "stances": {target: label},
        "meta": {"event": _clean(row["event"]), "row": n},
    }


def _id_stance_label(value: str, ref: str, report: ImportReport) -> str | None:
    """Map ``stance final`` to a stance class; ``no`` and unknown labels drop the row."""
    raw = value.strip().lower()
    if raw == "no":
        report.drop("stance 'no' (neither for nor against)", ref)
        return None
    if raw not in ID_STANCE_LABELS:
        report.drop(f"stance '{raw}' is not for/against", ref)
        return None
    if raw == "againts":
        report.note("stance typo 'againts' read as against", ref)
    return ID_STANCE_LABELS[raw]


def _id_stance_target(value: str, ref: str, report: ImportReport) -> str | None:
    """Normalize ``Tokoh`` to its display form; an unknown name is kept as written."""
    name = _clean(value)
    if not name:
        report.drop("empty Tokoh (target)", ref)
        return None
    if name.lower() not in ID_STANCE_TARGETS:
        report.note(f"unknown Tokoh '{name}' (kept as written)", ref)
        return name
    return ID_STANCE_TARGETS[name.lower()]


def _id_stance_body(raw: str, ref: str, report: ImportReport) -> str:
    """Parse ``Isi Artikel`` into paragraphs joined by a blank line.

    Most rows hold a JSON list of strings (CSV quoting doubles the quotes, which the csv
    module undoes). Later rows hold ``[ text ]`` with paragraphs separated by two spaces.
    Text is repaired with ftfy: the scrape decoded UTF-8 as Mac Roman (``‚Äú`` for a quote,
    ``¬†`` for a no-break space).
    """
    paragraphs, how = split_paragraphs(raw)
    if how != "json list" and raw.strip():
        report.note(f"body is {how}, not a JSON list (split on double spaces)", ref)
    fixed = [ftfy.fix_text(p) for p in paragraphs]
    if fixed != paragraphs:
        report.note("mojibake repaired (ftfy)", ref)
    # Keep paragraphs with at least one letter or digit: drops "¬†", "***" and "." fillers.
    return "\n\n".join(_clean(p) for p in fixed if re.search(r"\w", p))


def split_paragraphs(raw: str) -> tuple[list[str], str]:
    """Split an id_stance body into paragraphs; also return which format it was in.

    Formats: ``"json list"`` (``["p1","p2"]``), ``"bracketed text"`` (``[ p1.  p2. ]``)
    and ``"plain text"`` (anything else, kept whole apart from the double-space split).
    """
    s = raw.strip()
    if s.startswith("["):
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value, "json list"
        s, how = s[1:].removesuffix("]").strip(), "bracketed text"
    else:
        how = "plain text"
    # Two or more spaces after a sentence end mark a paragraph break; a double space
    # inside a sentence (left by removed links or italics) does not.
    return re.split(r"(?<=[.!?\"'])\s{2,}", s), how


# --- suggested config ---------------------------------------------------------------------


def suggest_config(report: ImportReport) -> dict:
    """The ``labels:`` section of a config for the imported data.

    Topic names come sorted; stance classes are those seen, in the order favor, against,
    neutral (id-stance has no neutral). id-stance targets get the aliases in
    ``ID_STANCE_ALIASES``; ABSA aspects get none, so they count as present in every text.
    """
    labels: dict = {}
    if report.topics:
        labels["topics"] = {"multi_label": False, "names": sorted(report.topics)}
    if report.actors:
        classes = [c for c in STANCE_CLASSES if report.stance_labels[c]]
        labels["stance"] = {"classes": classes, "actors": [_actor_entry(report, a) for a in report.actors]}
    return labels


def _actor_entry(report: ImportReport, name: str) -> dict:
    """One ``actors`` entry: the name and its aliases for this dataset kind."""
    if report.kind == DatasetKind.id_stance.value:
        return {"name": name, "aliases": list(ID_STANCE_ALIASES.get(name, [name]))}
    return {"name": name, "aliases": []}


# --- alias coverage -----------------------------------------------------------------------


@dataclass
class AliasCoverage:
    """How well an actor's aliases find it in the texts labeled for it."""

    actor: str
    articles: int = 0
    unmatched: int = 0
    articles_with: dict[str, int] = field(default_factory=dict)
    occurrences: dict[str, int] = field(default_factory=dict)
    unmatched_ids: list[str] = field(default_factory=list)

    @property
    def unmatched_fraction(self) -> float:
        """Share of labeled articles in which no alias occurs."""
        return self.unmatched / self.articles if self.articles else 0.0


def alias_coverage(
    records: Iterable[dict], actors: list[dict], fields: tuple[str, ...] = ("text",)
) -> dict[str, AliasCoverage]:
    """Count, per actor with aliases, how often each alias occurs in ``fields`` of the
    records labeled for that actor, and which records no alias matches.

    ``actors`` is the ``labels.stance.actors`` list of a config (see :func:`suggest_config`).
    Matching is the model's own (:func:`sikap.text.count_alias_mentions`): an article counts as
    matched exactly when training and classify find the actor in it.
    """
    aliases = {a["name"]: a["aliases"] for a in actors if a["aliases"]}
    coverage = {name: AliasCoverage(name) for name in aliases}
    for record in records:
        for name in record.get("stances", {}):
            if name in aliases:
                text = "\n".join(record.get(f) or "" for f in fields)
                _add_coverage(coverage[name], aliases[name], record["id"], text)
    return coverage


def _add_coverage(cov: AliasCoverage, aliases: list[str], rid: str, text: str) -> None:
    """Add one record's alias matches to ``cov``."""
    cov.articles += 1
    hits = count_alias_mentions(text, aliases)
    for alias, k in hits.items():
        cov.occurrences[alias] = cov.occurrences.get(alias, 0) + k
        cov.articles_with[alias] = cov.articles_with.get(alias, 0) + (k > 0)
    if not any(hits.values()):
        cov.unmatched += 1
        cov.unmatched_ids.append(rid)


def read_jsonl(path: Path) -> Iterator[dict]:
    """Yield the records of a JSONL file written by :func:`import_dataset`."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


_READERS = {
    DatasetKind.sib200: read_sib200,
    DatasetKind.id_stance: read_id_stance,
    DatasetKind.indonlu_absa: read_absa,
    DatasetKind.indonlu_smsa: read_smsa,
}
