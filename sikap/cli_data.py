"""``sikap data ...``: import public datasets into sikap JSONL records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sikap.training.importers import (
    DatasetFormatError,
    DatasetKind,
    ImportReport,
    alias_coverage,
    import_dataset,
    read_jsonl,
    suggest_config,
)

app = typer.Typer(help="Prepare data: import public Indonesian datasets as sikap JSONL records.")


@app.callback()
def main() -> None:
    """Prepare data: import public Indonesian datasets as sikap JSONL records."""
    # An explicit callback keeps `import` a named sub-command even while it is the only one.


@app.command("import")
def import_command(
    kind: Annotated[DatasetKind, typer.Argument(help="Dataset format of SOURCE.", show_default=False)],
    source: Annotated[
        Path, typer.Argument(exists=True, help="One file of the dataset, e.g. train.tsv.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False, help="JSONL file to write (overwritten).")],
    print_config: Annotated[
        bool,
        typer.Option("--print-config/--no-print-config", help="Print the labels: section for a config."),
    ] = True,
) -> None:
    """Convert SOURCE (a file of dataset KIND) into sikap JSONL records and report what was dropped."""
    console = Console()
    try:
        report = import_dataset(kind.value, source, out)
    except DatasetFormatError as e:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(1) from None
    console.print(report_table(report))
    if print_config:
        labels = suggest_config(report)
        print_alias_coverage(console, report, labels)
        console.print("\nSuggested config section:", style="bold")
        # markup off: YAML lists look like rich markup ([favor, against]).
        console.print(config_yaml(labels), markup=False, highlight=False)


def report_table(report: ImportReport) -> Table:
    """A table of rows read, written and dropped (with reasons and example rows)."""
    table = Table(title=f"{report.kind}: {report.source} -> {report.out}", title_justify="left")
    table.add_column("what")
    table.add_column("rows", justify="right")
    table.add_column("examples")
    table.add_row("read", str(report.read), "")
    table.add_row("written", str(report.written), "")
    for title, counts in (("dropped", report.dropped), ("kept, note", report.notes)):
        for reason, n in counts.items():
            examples = ", ".join(report.examples.get(reason, []))
            table.add_row(f"{title}: {escape(reason)}", str(n), escape(examples))
    return table


def print_alias_coverage(console: Console, report: ImportReport, labels: dict) -> None:
    """Show how often each suggested alias occurs in the texts labeled for its actor."""
    actors = labels.get("stance", {}).get("actors", [])
    coverage = alias_coverage(read_jsonl(report.out), actors)
    if not coverage:
        return
    table = Table(title="Alias coverage (whole words, any case, in text)", title_justify="left")
    for column in ("actor", "articles", "no alias found", "alias: articles with it / occurrences"):
        table.add_column(column)
    for cov in coverage.values():
        found = ", ".join(f"{a}: {cov.articles_with[a]}/{cov.occurrences[a]}" for a in cov.occurrences)
        missing = f"{cov.unmatched} ({cov.unmatched_fraction:.0%})"
        table.add_row(escape(cov.actor), str(cov.articles), missing, escape(found))
    console.print(table)


def config_yaml(labels: dict) -> str:
    """The suggested ``labels:`` section as YAML, lists of names on one line."""
    return yaml.safe_dump({"labels": labels}, sort_keys=False, allow_unicode=True, default_flow_style=None)
