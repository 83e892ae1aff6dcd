"""Validate the demo corpus in examples/demo/ and print its label counts.

Standard library only:

    python examples/check_demo.py              # checks examples/demo/{train,dev,test}.jsonl
    python examples/check_demo.py --dir PATH   # another folder with the same three files

Checks, per line: valid JSON object; non-empty string ``id``, ``title``, ``text``; ``id``
unique across all splits; ``topics`` a non-empty list of known topic names without
repeats; ``stances`` an object mapping known actor names to favor/against/neutral.
Against the text (title + blank line + body, as the model reads it): every actor in
``stances`` is mentioned through one of its aliases (case-insensitive, word boundaries,
through sikap.text.alias_pattern itself), and, since the demo corpus is labeled
exhaustively, every mentioned actor is labeled. Across splits: every topic and every
actor x class occurs in every split, and no text appears twice.

Also checks that examples/unlabeled/ shares no title or text with the labeled corpus.

Exit status 0 when everything passes, 1 otherwise (problems are listed as FILE:LINE: ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a clone without installing
from sikap.text import alias_pattern  # noqa: E402  (the one alias matcher; standard library only)

TOPICS = ["perluasan-nato", "perang-rusia-ukraina", "pemilu", "ekonomi", "kesehatan",
          "olahraga", "teknologi"]
CLASSES = ["favor", "against", "neutral"]
ACTORS = {
    "NATO": ["NATO", "Pakta Pertahanan Atlantik Utara", "aliansi Atlantik Utara"],
    "Rusia": ["Rusia", "Moskow", "Kremlin", "Putin", "Lavrov"],
    "Amerika Serikat": ["Amerika Serikat", "AS", "Washington", "Gedung Putih", "Biden"],
    "Ukraina": ["Ukraina", "Kyiv", "Kiev", "Zelensky"],
}
SPLITS = ["train", "dev", "test"]
WORDS = (80, 200)  # soft length range of the demo articles (warning only)


PATTERNS = {name: alias_pattern(tuple(aliases)) for name, aliases in ACTORS.items()}


def rel(path: Path | str) -> str:
    """A path relative to the working directory when it lies below it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def model_text(title: str, text: str) -> str:
    return f"{title.strip()}\n\n{text.strip()}"


def check_record(obj: object, where: str, errors: list[str], warnings: list[str]) -> dict | None:
    if not isinstance(obj, dict):
        errors.append(f"{where}: expected a JSON object, got {type(obj).__name__}")
        return None
    ok = True
    for field in ("id", "title", "text"):
        value = obj.get(field)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{where}: field '{field}' must be a non-empty string")
            ok = False
    extra = set(obj) - {"id", "title", "text", "topics", "stances"}
    if extra:
        warnings.append(f"{where}: unexpected fields {sorted(extra)}")
    topics = obj.get("topics")
    if not isinstance(topics, list) or not topics:
        errors.append(f"{where}: field 'topics' must be a non-empty list")
        ok = False
    else:
        for t in topics:
            if t not in TOPICS:
                errors.append(f"{where}: unknown topic {t!r}; expected one of {TOPICS}")
                ok = False
        if len(set(map(str, topics))) != len(topics):
            errors.append(f"{where}: repeated topic in {topics}")
            ok = False
    stances = obj.get("stances")
    if not isinstance(stances, dict):
        errors.append(f"{where}: field 'stances' must be an object (use {{}} when no actor is mentioned)")
        return None
    for actor, cls in stances.items():
        if actor not in ACTORS:
            errors.append(f"{where}: unknown actor {actor!r} in 'stances'; expected one of {list(ACTORS)}")
            ok = False
        if cls not in CLASSES:
            errors.append(f"{where}: stance {cls!r} for {actor!r} must be one of {CLASSES}")
            ok = False
    if not ok:
        return None
    full = model_text(obj["title"], obj["text"])
    for actor, pattern in PATTERNS.items():
        hits = [m.group(0) for m in pattern.finditer(full)]
        if actor in stances and not hits:
            errors.append(f"{where}: 'stances' labels {actor!r} but no alias of it occurs "
                          f"({', '.join(ACTORS[actor])}); drop the label or fix the text")
        if actor not in stances and hits:
            errors.append(f"{where}: {actor!r} is mentioned ({hits[0]!r}) but has no stance label; "
                          f"the demo corpus labels every mentioned actor")
    n_words = len(obj["text"].split())
    if not WORDS[0] <= n_words <= WORDS[1]:
        warnings.append(f"{where}: text has {n_words} words (demo articles aim for {WORDS[0]}-{WORDS[1]})")
    return obj


def read_split(path: Path, errors: list[str], warnings: list[str]) -> list[dict]:
    records = []
    if not path.is_file():
        errors.append(f"{rel(path)}: missing")
        return records
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            where = f"{rel(path)}:{n}"
            if not line.strip():
                errors.append(f"{where}: empty line")
                continue
            try:
                obj = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            rec = check_record(obj, where, errors, warnings)
            if rec is not None:
                records.append({**rec, "_where": where})
    return records


def unlabeled_texts(root: Path) -> list[tuple[str, str]]:
    """(path, raw file content) for every file below ``root``, whatever its format."""
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        raw = p.read_text(encoding="utf-8")
        out.append((rel(p), raw))
    return out


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=here / "demo", help="folder with train/dev/test.jsonl")
    ap.add_argument("--unlabeled", type=Path, default=here / "unlabeled",
                    help="folder of unlabeled articles to check for overlap (skipped if missing)")
    args = ap.parse_args(argv)

    errors: list[str] = []
    warnings: list[str] = []
    data = {s: read_split(args.dir / f"{s}.jsonl", errors, warnings) for s in SPLITS}

    seen_ids: dict[str, str] = {}
    seen_text: dict[str, str] = {}
    for s in SPLITS:
        for r in data[s]:
            if r["id"] in seen_ids:
                errors.append(f"{r['_where']}: id {r['id']!r} already used at {seen_ids[r['id']]}")
            seen_ids.setdefault(r["id"], r["_where"])
            key = " ".join(r["text"].split()).lower()
            if key in seen_text:
                errors.append(f"{r['_where']}: same text as {seen_text[key]}")
            seen_text.setdefault(key, r["_where"])

    topic_counts = {s: Counter(t for r in data[s] for t in r["topics"]) for s in SPLITS}
    stance_counts = {s: Counter((a, c) for r in data[s] for a, c in r["stances"].items()) for s in SPLITS}
    for s in SPLITS:
        if not data[s]:
            continue
        for t in TOPICS:
            if not topic_counts[s][t]:
                errors.append(f"{rel(args.dir / (s + '.jsonl'))}: topic {t!r} never occurs in this split")
        for a in ACTORS:
            for c in CLASSES:
                if not stance_counts[s][(a, c)]:
                    errors.append(f"{rel(args.dir / (s + '.jsonl'))}: {a} x {c} never occurs in this split")

    if args.unlabeled.is_dir():
        titles = {r["title"].strip().lower(): r["_where"] for s in SPLITS for r in data[s]}
        for where, raw in unlabeled_texts(args.unlabeled):
            low = " ".join(raw.split()).lower()
            for title, src in titles.items():
                if len(title) > 25 and title in low:
                    errors.append(f"{where}: contains the title of labeled article {src}")
            for text, src in seen_text.items():
                if text[:200] in low:
                    errors.append(f"{where}: contains the text of labeled article {src}")

    # ---- report -----------------------------------------------------------------------
    n = {s: len(data[s]) for s in SPLITS}
    total = sum(n.values())
    print(f"articles: {total} (" + ", ".join(f"{s} {n[s]}" for s in SPLITS) + ")")
    words = [len(r["text"].split()) for s in SPLITS for r in data[s]]
    if words:
        print(f"words per text: min {min(words)}, mean {sum(words) / len(words):.0f}, max {max(words)}")
    multi = sum(len(r["topics"]) > 1 for s in SPLITS for r in data[s])
    with_actor = sum(bool(r["stances"]) for s in SPLITS for r in data[s])
    print(f"articles with 2+ topics: {multi}; articles mentioning at least one actor: {with_actor}")
    head = f"{'':36s}" + "".join(f"{s:>7s}" for s in SPLITS) + f"{'total':>7s}"
    print("\ntopics")
    print(head)
    for t in TOPICS:
        row = [topic_counts[s][t] for s in SPLITS]
        print(f"  {t:34s}" + "".join(f"{v:7d}" for v in row) + f"{sum(row):7d}")
    print("\nstance (actor x class)")
    print(head)
    for a in ACTORS:
        for c in CLASSES:
            row = [stance_counts[s][(a, c)] for s in SPLITS]
            print(f"  {a + ' ' + c:34s}" + "".join(f"{v:7d}" for v in row) + f"{sum(row):7d}")
        row = [n[s] - sum(stance_counts[s][(a, c)] for c in CLASSES) for s in SPLITS]
        print(f"  {a + ' (not mentioned)':34s}" + "".join(f"{v:7d}" for v in row) + f"{sum(row):7d}")

    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"\nFAILED: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print("\nOK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
