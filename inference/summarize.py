"""`sikap summarize`: topics and stance over time (and per outlet) from a `classify` output.

One pass over a predictions JSONL gives a tidy table (one row per period, group, task, actor
and label, with counts and shares) that pandas and spreadsheets read as it is; the figures
and ``summary.md`` are drawn from that table alone.

Shares, per period and group:

- ``articles``: records that were classified or are error records (``share`` of all records);
- ``topic``: classified articles predicted with the topic, over the classified articles (with
  multi-label topics the shares of a period can add up to more than 1);
- ``stance``: articles with the label for the actor, over the classified articles
  (``share``, the four labels add up to 1), and for the stance classes also over the articles
  that mention the actor (``share_of_mentioned``), which separates how an outlet writes about an
  actor from how often it writes about it. The line plots and the shifts use the latter.

Records without a date are counted under the period ``undated`` (kept in the table and the topic
bars, left out of the lines over time and of the shifts).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sikap.inference.dates import UNDATED, Period, period_label, period_start, sort_periods

ALL = "all"  # the group of every record when no --group is asked for
NO_VALUE = "(none)"  # the group of records without the --group field
NOT_MENTIONED = "not_mentioned"
STANCE_ORDER = ("favor", "against", "neutral", NOT_MENTIONED)
SHIFT_LABELS = ("favor", "against")
COLUMNS = ["period", "group", "task", "actor", "label", "count", "total", "share", "mentioned", "share_of_mentioned"]


# ---------------------------------------------------------------- reading


class PredictionsError(ValueError):
    """The file is not a classify JSONL output."""


@dataclass
class Predictions:
    """The records of a predictions file, and its lines that are not records."""

    records: list[dict] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)  # 1-based numbers of lines that are not records
    bad_dates: list[str] = field(default_factory=list)  # ids whose "date" is not an ISO date (undated)

    @property
    def errors(self) -> int:
        return sum(r.get("error") is not None for r in self.records)


def read_predictions(path: Path) -> Predictions:
    """Read a ``classify`` JSONL output; a line that is not a record is counted, not fatal.

    A line is a record when it is a JSON object whose ``topics``, ``topic_probs`` and ``stances``
    (where present) have the types classify writes. Raises FileNotFoundError when the file is
    missing, and PredictionsError when no line at all is a record (a CSV output, another file).
    """
    out = Predictions()
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                rec = None
            if not _is_record(rec):
                out.bad_lines.append(number)
                continue
            if not _valid_date(rec.get("date")):
                out.bad_dates.append(str(rec.get("id", f"line {number}")))
                rec["date"] = None
            out.records.append(rec)
    if out.bad_lines and not out.records:
        raise PredictionsError(
            f"{path}: none of its {len(out.bad_lines)} lines is a classify record; summarize reads the JSONL "
            "output of `sikap classify` (-o predictions.jsonl)"
        )
    return out


def _is_record(rec: object) -> bool:
    """A JSON object shaped like a classify record: what summarize reads has the types it expects."""
    if not isinstance(rec, dict):
        return False
    topics, probs, stances = rec.get("topics", []), rec.get("topic_probs", {}), rec.get("stances", {})
    return (
        isinstance(topics, list)
        and all(isinstance(t, str) for t in topics)
        and isinstance(probs, dict)
        and isinstance(stances, dict)
        and all(isinstance(v, dict) and isinstance(v.get("label"), str) for v in stances.values())
        and all(isinstance(v.get("probs") or {}, dict) for v in stances.values())
    )


def _valid_date(value: object) -> bool:
    if value is None:
        return True
    try:
        dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def group_value(rec: dict, name: str | None) -> str:
    """The value of field ``name`` in a record: a top-level key (``source``), else one kept with
    ``classify --keep-field`` (``fields.NAME``), else a meta key; a dotted path (``meta.format``)
    is followed as written. Missing or empty: ``(none)``; no ``name``: ``all``.
    """
    if not name:
        return ALL
    if "." in name:
        value: object = rec
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    else:
        value = next(
            (d[name] for d in (rec, rec.get("fields"), rec.get("meta")) if isinstance(d, dict) and name in d), None
        )
    if value is None or value == "" or isinstance(value, (dict, list)):
        return NO_VALUE
    return str(value)


# ---------------------------------------------------------------- counting


def _label_sets(records: list[dict]) -> tuple[list[str], dict[str, list[str]]]:
    """Topic names and, per actor, the stance labels to count (all seen, standard order first)."""
    topics: dict[str, None] = {}
    actors: dict[str, set[str]] = {}
    for r in records:
        if r.get("error") is not None:
            continue
        topics.update(dict.fromkeys(r.get("topic_probs") or {}))
        topics.update(dict.fromkeys(r.get("topics") or []))
        for actor, s in (r.get("stances") or {}).items():
            seen = actors.setdefault(actor, set(STANCE_ORDER))
            seen.add(s.get("label"))
            seen.update(s.get("probs") or {})
    order = {lab: i for i, lab in enumerate(STANCE_ORDER)}

    def rank(label: str) -> tuple[int, str]:
        return order.get(label, len(order)), label

    stance = {a: sorted((x for x in seen if x), key=rank) for a, seen in actors.items()}
    return list(topics), stance


def count_table(records: list[dict], by: Period = Period.month, group: str | None = None) -> pd.DataFrame:
    """The tidy table: one row per (period, group, task, actor, label), zero counts included.

    Columns: ``period group task actor label count total share mentioned share_of_mentioned``
    (``actor`` is empty for topics and articles; the last two are empty except for stance classes).
    """
    topics, stance = _label_sets(records)
    cells: dict[tuple[str, str], Counter] = {}
    for r in records:
        key = (period_label(r.get("date"), by), group_value(r, group))
        cells.setdefault(key, Counter()).update(_record_counts(r))
    rows = []
    for period in sort_periods(p for p, _ in cells):
        for grp in sorted(g for p, g in cells if p == period):
            rows += _cell_rows(period, grp, cells[(period, grp)], topics, stance)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"count": "int64", "total": "int64", "mentioned": "Int64"})


def _record_counts(r: dict) -> Counter:
    """What one record adds to its cell, keyed by (task, actor, label)."""
    c = Counter()
    if r.get("error") is not None:
        c[("articles", "", "error")] += 1
        return c
    c[("articles", "", "classified")] += 1
    if "topics" in r or "topic_probs" in r:
        c[("topic-total", "", "")] += 1
        c.update(("topic", "", t) for t in r.get("topics") or [])
    for actor, s in (r.get("stances") or {}).items():
        c[("stance", actor, s.get("label"))] += 1
    return c


def _cell_rows(period: str, grp: str, c: Counter, topics: list[str], stance: dict[str, list[str]]) -> list[dict]:
    base = {"period": period, "group": grp}
    n_records = c[("articles", "", "classified")] + c[("articles", "", "error")]
    rows = [
        {
            **base,
            "task": "articles",
            "actor": "",
            "label": lab,
            "count": c[("articles", "", lab)],
            "total": n_records,
            "share": _share(c[("articles", "", lab)], n_records),
        }
        for lab in ("classified", "error")
    ]
    n_topic = c[("topic-total", "", "")]
    rows += [
        {
            **base,
            "task": "topic",
            "actor": "",
            "label": t,
            "count": c[("topic", "", t)],
            "total": n_topic,
            "share": _share(c[("topic", "", t)], n_topic),
        }
        for t in topics
    ]
    for actor, labels in stance.items():
        total = sum(c[("stance", actor, lab)] for lab in labels)
        mentioned = total - c[("stance", actor, NOT_MENTIONED)]
        for lab in labels:
            n = c[("stance", actor, lab)]
            of_mentioned = None if lab == NOT_MENTIONED else _share(n, mentioned)
            rows.append(
                {
                    **base,
                    "task": "stance",
                    "actor": actor,
                    "label": lab,
                    "count": n,
                    "total": total,
                    "share": _share(n, total),
                    "mentioned": mentioned,
                    "share_of_mentioned": of_mentioned,
                }
            )
    return rows


def _share(n: int, total: int) -> float | None:
    return round(n / total, 6) if total else None


# ---------------------------------------------------------------- shifts


def biggest_shifts(table: pd.DataFrame, *, min_articles: int = 5, top: int = 5) -> dict[str, pd.DataFrame]:
    """The largest period-to-period changes in share, per task (``stance``, ``topic``).

    Stance: the favor and against share of the articles mentioning the actor; topics: the share
    of the classified articles. Consecutive dated periods of the same group are compared, after
    dropping periods whose base (articles mentioning the actor; classified articles) is under
    ``min_articles``, so a swing of one article out of two does not top the list.
    Columns: ``group actor label from to share_from share_to change base_from base_to``.
    """
    dated = table[table["period"] != UNDATED]
    stance = dated[(dated["task"] == "stance") & dated["label"].isin(SHIFT_LABELS)]
    topic = dated[dated["task"] == "topic"]
    return {
        "stance": _shifts(stance, "share_of_mentioned", "mentioned", min_articles, top),
        "topic": _shifts(topic, "share", "total", min_articles, top),
    }


def _shifts(rows: pd.DataFrame, share: str, base: str, min_articles: int, top: int) -> pd.DataFrame:
    out = []
    for (grp, actor, label), series in rows.groupby(["group", "actor", "label"], sort=True):
        series = series[(series[base] >= min_articles) & series[share].notna()].sort_values("period")
        prev = None
        for cur in series.itertuples(index=False):
            if prev is not None:
                out.append(
                    {
                        "group": grp,
                        "actor": actor,
                        "label": label,
                        "from": prev.period,
                        "to": cur.period,
                        "share_from": getattr(prev, share),
                        "share_to": getattr(cur, share),
                        "change": round(getattr(cur, share) - getattr(prev, share), 6),
                        "base_from": getattr(prev, base),
                        "base_to": getattr(cur, base),
                    }
                )
            prev = cur
    cols = ["group", "actor", "label", "from", "to", "share_from", "share_to", "change", "base_from", "base_to"]
    frame = pd.DataFrame(out, columns=cols)
    if frame.empty:
        return frame
    order = frame["change"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].head(top).reset_index(drop=True)


# ---------------------------------------------------------------- figures

MAX_GROUPS_PLOTTED = 8  # lines per actor figure: the groups with the most articles


def plot_stance(table: pd.DataFrame, actor: str, by: Period, path: Path) -> list[str]:
    """Favor (solid, circles) and against (dashed, squares) share of the articles mentioning ``actor``.

    One colour per group (the largest ones, at most MAX_GROUPS_PLOTTED, that mention the actor in
    a dated period); returns the groups drawn. Undated records are not drawn; a period without an
    article mentioning the actor leaves a gap.
    """
    plt = _pyplot()
    rows = table[(table["task"] == "stance") & (table["actor"] == actor) & (table["period"] != UNDATED)]
    drawn = rows[rows["mentioned"] > 0]["group"].unique()
    groups = [g for g in _largest_groups(table) if g in drawn]
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for i, grp in enumerate(groups):
        for label, style in (("favor", "-o"), ("against", "--s")):
            series = rows[(rows["group"] == grp) & (rows["label"] == label)].sort_values("period")
            x = [period_start(p, by) for p in series["period"]]
            y = [float("nan") if pd.isna(v) else v for v in series["share_of_mentioned"]]
            ax.plot(x, y, style, color=f"C{i}", label=label if grp == ALL else f"{grp}: {label}")
    periods = sort_periods(rows["period"])
    if len(periods) <= 24:  # one tick per period, labelled as in summary.csv
        ax.set_xticks([period_start(p, by) for p in periods], periods)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(f"share of articles mentioning {actor}")
    ax.set_title(f"Stance toward {actor} by {by.value} (undated articles left out)")
    if groups:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    else:
        ax.text(0.5, 0.5, f"no dated article mentions {actor}", ha="center", transform=ax.transAxes)
    ax.tick_params(axis="x", labelrotation=45)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return groups


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_topics(table: pd.DataFrame, path: Path) -> None:
    """Stacked bars: articles per topic in each period (all groups summed), ``undated`` last."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    rows = table[table["task"] == "topic"]
    counts = rows.pivot_table(index="period", columns="label", values="count", aggfunc="sum", fill_value=0)
    counts = counts.reindex(index=sort_periods(counts.index), columns=list(dict.fromkeys(rows["label"])))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(counts) + 3), 4.5), layout="constrained")
    bottom = [0] * len(counts)
    for i, topic in enumerate(counts.columns):
        ax.bar(counts.index, counts[topic], bottom=bottom, label=topic, color=f"C{i % 10}")
        bottom = [b + v for b, v in zip(bottom, counts[topic], strict=True)]
    ax.set_ylabel("articles")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Topics per period")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    ax.tick_params(axis="x", labelrotation=45)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _largest_groups(table: pd.DataFrame) -> list[str]:
    arts = table[(table["task"] == "articles") & (table["label"] == "classified")]
    sizes = arts.groupby("group")["count"].sum().sort_values(ascending=False, kind="stable")
    return list(sizes.index[:MAX_GROUPS_PLOTTED])


def _slug(name: str) -> str:
    return re.sub(r"[^\w]+", "-", name.lower()).strip("-") or "actor"


# ---------------------------------------------------------------- the whole job


@dataclass
class SummaryResult:
    out_dir: Path
    csv: Path
    markdown: Path
    figures: list[Path]
    records: int
    classified: int
    errors: int
    undated: int  # classified articles without a date
    bad_lines: list[int]


def summarize(
    predictions: Path,
    out_dir: Path,
    *,
    by: Period = Period.month,
    group: str | None = None,
    min_articles: int = 5,
    top: int = 5,
) -> SummaryResult:
    """Write ``summary.csv``, ``summary.md``, ``topics.png`` and ``stance-ACTOR.png`` to ``out_dir``."""
    preds = read_predictions(predictions)
    table = count_table(preds.records, by, group)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "summary.csv"
    table.to_csv(csv_path, index=False)
    figures = _write_figures(table, by, out_dir)
    classified = [r for r in preds.records if r.get("error") is None]
    result = SummaryResult(
        out_dir,
        csv_path,
        out_dir / "summary.md",
        figures,
        len(preds.records),
        len(classified),
        preds.errors,
        sum(not r.get("date") for r in classified),
        preds.bad_lines,
    )
    shifts = biggest_shifts(table, min_articles=min_articles, top=top)
    text = summary_markdown(
        result,
        table,
        shifts,
        predictions=predictions,
        by=by,
        group=group,
        min_articles=min_articles,
        bad_dates=preds.bad_dates,
    )
    result.markdown.write_text(text, encoding="utf-8")
    return result


def _write_figures(table: pd.DataFrame, by: Period, out_dir: Path) -> list[Path]:
    figures = []
    if (table["task"] == "topic").any():
        figures.append(out_dir / "topics.png")
        plot_topics(table, figures[-1])
    dated = table[table["period"] != UNDATED]
    slugs: Counter = Counter()
    for actor in dict.fromkeys(table.loc[table["task"] == "stance", "actor"]):
        if dated.empty:
            break  # nothing to draw over time
        slug = _slug(actor)
        slugs[slug] += 1
        name = f"stance-{slug}.png" if slugs[slug] == 1 else f"stance-{slug}-{slugs[slug]}.png"
        figures.append(out_dir / name)
        plot_stance(table, actor, by, figures[-1])
    return figures


# ---------------------------------------------------------------- summary.md

MAX_PERIOD_ROWS = 36


def summary_markdown(
    result: SummaryResult,
    table: pd.DataFrame,
    shifts: dict[str, pd.DataFrame],
    *,
    predictions: Path,
    by: Period,
    group: str | None,
    min_articles: int,
    bad_dates: list[str] = (),
) -> str:
    """The short report: what was read, articles per period, the biggest shifts, the files."""
    grouped = f", grouped by `{group}`" if group else ""
    lines = [
        f"# Coverage over time: {predictions.name}",
        "",
        f"By {by.value}{grouped}. {_n(result.records, 'record')}: {result.classified} classified, "
        f"{_n(result.errors, 'error record')} (counted as task `articles`, label `error`).",
    ]
    if result.bad_lines:
        shown = ", ".join(map(str, result.bad_lines[:10])) + (" ..." if len(result.bad_lines) > 10 else "")
        lines.append(f"Not classify records, skipped: {_n(len(result.bad_lines), 'line')} ({shown}).")
    if bad_dates:
        lines.append(
            f"A `date` that is not YYYY-MM-DD, counted as undated: {_n(len(bad_dates), 'record')} "
            f"({', '.join(bad_dates[:5])}{' ...' if len(bad_dates) > 5 else ''})."
        )
    if result.undated:
        lines.append(
            f"{result.undated} of {result.classified} classified articles had no date: they are "
            f"counted under `{UNDATED}`, and left out of the lines over time and of the shifts."
        )
    lines += ["", *_period_table(table)]
    lines += [
        "",
        "## Biggest shifts in stance",
        "",
        f"Favor and against share of the articles that mention the actor, between consecutive "
        f"periods with at least {_n(min_articles, 'such article')}.",
        "",
    ]
    lines += _shift_table(shifts["stance"], "mentioning", with_actor=True, grouped=bool(group))
    lines += [
        "",
        "## Biggest shifts in topics",
        "",
        f"Share of the classified articles, between consecutive periods with at least {min_articles}.",
        "",
    ]
    lines += _shift_table(shifts["topic"], "classified", with_actor=False, grouped=bool(group))
    lines += ["", "## Files", "", f"- `{result.csv.name}`: counts and shares per period, group, task, actor and label"]
    lines += [f"- `{f.name}`" for f in result.figures]
    return "\n".join(lines) + "\n"


def _n(count: int, noun: str) -> str:
    """``1 record``, ``2 records``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _period_table(table: pd.DataFrame) -> list[str]:
    arts = table[table["task"] == "articles"].pivot_table(
        index="period", columns="label", values="count", aggfunc="sum", fill_value=0
    )
    periods = sort_periods(arts.index)
    rows = ["| period | classified | errors |", "|---|---:|---:|"]
    for p in periods[:MAX_PERIOD_ROWS]:
        rows.append(f"| {p} | {arts.at[p, 'classified']} | {arts.at[p, 'error']} |")
    if len(periods) > MAX_PERIOD_ROWS:
        rows.append(f"| ... {len(periods) - MAX_PERIOD_ROWS} more periods in summary.csv | | |")
    return rows


def _shift_table(shifts: pd.DataFrame, base: str, *, with_actor: bool, grouped: bool) -> list[str]:
    if shifts.empty:
        return ["No shift to report: fewer than two periods reach the minimum."]
    head = (["actor", "stance"] if with_actor else ["topic"]) + (["group"] if grouped else [])
    rows = [
        "| " + " | ".join(head + ["periods", "share", "change", f"articles {base}"]) + " |",
        "|" + "---|" * (len(head) + 2) + "---:|---:|",
    ]
    for s in shifts.itertuples(index=False):
        cells = ([s.actor] if with_actor else []) + [s.label] + ([s.group] if grouped else [])
        cells += [
            f"{s[3]} → {s[4]}",
            f"{s.share_from:.0%} → {s.share_to:.0%}",
            f"{100 * s.change:+.0f} pts",
            f"{s.base_from} → {s.base_to}",
        ]
        rows.append("| " + " | ".join(map(str, cells)) + " |")
    return rows
